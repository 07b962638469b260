//! The `o` mode of qxl-native: the drawables Windows' QXL display drivers
//! send besides fills and copies, in the lower part of the screen: ROP3
//! (pattern and solid brushes, with a QMask), a FILL through an inverted
//! QMask, STROKE (a closed polyline, a Bézier, an XOR line over them), TEXT
//! (1-bit glyphs on a back area, 4-bit anti-aliased glyphs) and COMPOSITE
//! (OVER of a premultiplied ARGB gradient). The host compares QEMU's and
//! spicebox's screendumps of the result.

use alloc::vec::Vec;

use super::{bytes_of_rect, chunk, Card, Rect, DRAW_FILL, IO_FLUSH_SURFACES_ASYNC, ROPD_OP_PUT};

const DRAW_ROP3: u8 = 9;
const DRAW_STROKE: u8 = 10;
const DRAW_TEXT: u8 = 11;
const DRAW_COMPOSITE: u8 = 14;
const ROPD_OP_XOR: u16 = 1 << 6;
const PATH_BEGIN: u32 = 1;
const PATH_END: u32 = 2;
const PATH_CLOSE: u32 = 8;
const PATH_BEZIER: u32 = 16;

pub(super) fn solid(color: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0] = 1;
    b[4..8].copy_from_slice(&color.to_le_bytes());
    b
}

fn qmask(c: &Card, invert: bool, pos: (i32, i32), bitmap: u64) -> Vec<u8> {
    let mut m = Vec::new();
    m.push(u8::from(invert));
    m.extend_from_slice(&pos.0.to_le_bytes());
    m.extend_from_slice(&pos.1.to_le_bytes());
    m.extend_from_slice(&c.phys(bitmap).to_le_bytes());
    m
}

/// A 1-bit (bit 0 leftmost) mask `w` x `h`: set where `on` says.
fn mask(c: &mut Card, w: u32, h: u32, on: impl Fn(u32, u32) -> bool) -> u64 {
    let stride = w.div_ceil(8);
    let mut px = Vec::new();
    for y in 0..h {
        for bx in 0..stride {
            let mut b = 0u8;
            for bit in 0..8 {
                let x = bx * 8 + bit;
                if x < w && on(x, y) {
                    b |= 1 << bit;
                }
            }
            px.push(b);
        }
    }
    c.image(1, w, h, stride, &px, &[])
}

pub(super) fn bitmap32(
    c: &mut Card,
    format: u8,
    w: u32,
    h: u32,
    pixel: impl Fn(u32, u32) -> u32,
) -> u64 {
    let mut px = Vec::new();
    for y in 0..h {
        for x in 0..w {
            px.extend_from_slice(&pixel(x, y).to_le_bytes());
        }
    }
    c.image(format, w, h, w * 4, &px, &[])
}

fn rop3(c: &mut Card, bbox: Rect, src: u64, brush: &[u8], code: u8, m: &[u8]) {
    let mut u = Vec::new();
    u.extend_from_slice(&c.phys(src).to_le_bytes());
    u.extend_from_slice(&bytes_of_rect((0, 0, bbox.2 - bbox.0, bbox.3 - bbox.1)));
    u.extend_from_slice(brush);
    u.push(code);
    u.push(0); // scale mode
    u.extend_from_slice(m);
    c.draw(DRAW_ROP3, bbox, None, &u, "rop3");
}

/// A QXLPath of (flags, points in whole pixels).
fn path(c: &mut Card, segs: &[(u32, &[(i32, i32)])]) -> u64 {
    let mut data = Vec::new();
    for (flags, pts) in segs {
        data.extend_from_slice(&flags.to_le_bytes());
        data.extend_from_slice(&(pts.len() as u32).to_le_bytes());
        for (x, y) in *pts {
            data.extend_from_slice(&(x << 4).to_le_bytes());
            data.extend_from_slice(&(y << 4).to_le_bytes());
        }
    }
    let mut p = Vec::new();
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend(chunk(&data, 0));
    c.put(&p)
}

fn stroke(c: &mut Card, bbox: Rect, path: u64, color: u32, mode: u16) {
    let mut u = Vec::new();
    u.extend_from_slice(&c.phys(path).to_le_bytes());
    u.extend_from_slice(&[0; 20]); // QXLLineAttr: solid, cosmetic
    u.extend_from_slice(&solid(color));
    u.extend_from_slice(&mode.to_le_bytes());
    u.extend_from_slice(&ROPD_OP_PUT.to_le_bytes());
    c.draw(DRAW_STROKE, bbox, None, &u, "stroke");
}

/// A QXLString of glyphs (x, y, w, h, rows bottom row first).
fn string(c: &mut Card, flags: u16, glyphs: &[(i32, i32, u16, u16, Vec<u8>)]) -> u64 {
    let mut data = Vec::new();
    for (x, y, w, h, rows) in glyphs {
        data.extend_from_slice(&x.to_le_bytes());
        data.extend_from_slice(&y.to_le_bytes());
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(&w.to_le_bytes());
        data.extend_from_slice(&h.to_le_bytes());
        data.extend_from_slice(rows);
    }
    let mut s = Vec::new();
    s.extend_from_slice(&(data.len() as u32).to_le_bytes());
    s.extend_from_slice(&(glyphs.len() as u16).to_le_bytes());
    s.extend_from_slice(&flags.to_le_bytes());
    s.extend(chunk(&data, 0));
    c.put(&s)
}

fn text(c: &mut Card, bbox: Rect, s: u64, back: Rect, fore: u32, back_color: u32) {
    let mut u = Vec::new();
    u.extend_from_slice(&c.phys(s).to_le_bytes());
    u.extend_from_slice(&bytes_of_rect(back));
    u.extend_from_slice(&solid(fore));
    u.extend_from_slice(&solid(back_color));
    u.extend_from_slice(&ROPD_OP_PUT.to_le_bytes());
    u.extend_from_slice(&ROPD_OP_PUT.to_le_bytes());
    c.draw(DRAW_TEXT, bbox, None, &u, "text");
}

/// A 1-bit glyph `w` x `h` from a pattern function, rows bottom-up, MSB
/// leftmost.
fn glyph1(w: u16, h: u16, on: impl Fn(u16, u16) -> bool) -> Vec<u8> {
    let stride = w.div_ceil(8);
    let mut rows = Vec::new();
    for y in (0..h).rev() {
        for bx in 0..stride {
            let mut b = 0u8;
            for bit in 0..8 {
                let x = bx * 8 + bit;
                if x < w && on(x, y) {
                    b |= 0x80 >> bit;
                }
            }
            rows.push(b);
        }
    }
    rows
}

pub(super) fn draw(c: &mut Card) {
    let y0 = 300;
    // ROP3 0xb8 (PSDPxax: S ? D : P per bit) with an 8x8 checker pattern
    // over a gradient source.
    let src = bitmap32(c, 8, 96, 48, |x, y| (x * 2) << 16 | (y * 5) << 8 | 0x40);
    let pat = bitmap32(c, 8, 8, 8, |x, y| {
        if (x / 2 + y / 2) % 2 == 0 {
            0x00ff_ff00
        } else {
            0x0000_80ff
        }
    });
    let mut brush = [0u8; 20];
    brush[0] = 2;
    brush[4..12].copy_from_slice(&c.phys(pat).to_le_bytes());
    brush[12..16].copy_from_slice(&3i32.to_le_bytes());
    brush[16..20].copy_from_slice(&5i32.to_le_bytes());
    rop3(c, (16, y0, 112, y0 + 48), src, &brush, 0xb8, &[0; 17]);
    // ROP3 0x96 (P ^ S ^ D) with a solid brush through a diagonal QMask.
    let m = mask(c, 100, 52, |x, y| (x + y) % 7 < 4);
    let mq = qmask(c, false, (2, 1), m);
    rop3(
        c,
        (128, y0, 224, y0 + 48),
        src,
        &solid(0x0033_cc66),
        0x96,
        &mq,
    );
    // FILL through an inverted QMask (a ring shape).
    let ring = mask(c, 64, 48, |x, y| {
        let (dx, dy) = (x as i32 - 32, y as i32 - 24);
        let r = dx * dx + dy * dy;
        (100..400).contains(&r)
    });
    let mut fill = Vec::new();
    fill.extend_from_slice(&solid(0x00c0_2060));
    fill.extend_from_slice(&ROPD_OP_PUT.to_le_bytes());
    fill.extend(qmask(c, true, (0, 0), ring));
    c.draw(
        DRAW_FILL,
        (240, y0, 304, y0 + 48),
        None,
        &fill,
        "masked-fill",
    );

    // STROKE: a closed star-ish polyline, a Bézier, then an XOR line.
    let star = path(
        c,
        &[
            (PATH_BEGIN, &[(330, 300), (400, 340), (320, 330)]),
            (PATH_END | PATH_CLOSE, &[(390, 296), (360, 346)]),
        ],
    );
    stroke(c, (310, 290, 410, 350), star, 0x00ff_ffff, ROPD_OP_PUT);
    let curve = path(
        c,
        &[(
            PATH_BEGIN | PATH_BEZIER | PATH_END,
            &[(420, 340), (440, 280), (500, 360), (530, 300)],
        )],
    );
    stroke(c, (410, 280, 540, 365), curve, 0x00ff_8000, ROPD_OP_PUT);
    let cross = path(c, &[(PATH_BEGIN | PATH_END, &[(300, 320), (540, 330)])]);
    stroke(c, (300, 310, 540, 340), cross, 0x00ff_ffff, ROPD_OP_XOR);

    // TEXT: 1-bit glyphs on a back area, then 4-bit anti-aliased ones.
    let y1 = 370;
    let g1 = [
        (
            20,
            y1,
            10u16,
            12u16,
            glyph1(10, 12, |x, y| x == 0 || y == 0 || x == y),
        ),
        (34, y1 + 2, 9, 10, glyph1(9, 10, |x, y| (x + y) % 3 == 0)),
        (
            46,
            y1 - 1,
            12,
            14,
            glyph1(12, 14, |x, y| x % 4 == 1 || y == 13),
        ),
    ];
    let s1 = string(c, 1, &g1);
    text(
        c,
        (16, y1 - 4, 64, y1 + 16),
        s1,
        (16, y1 - 4, 64, y1 + 16),
        0x0010_1010,
        0x00f0_e0c0,
    );
    let a4 = |w: u16, h: u16| {
        let stride = usize::from(w).div_ceil(2);
        let mut rows = Vec::new();
        for y in (0..h).rev() {
            for bx in 0..stride {
                let hi = ((bx * 2) as u16 + y) % 16;
                let lo = ((bx * 2 + 1) as u16 + y * 3) % 16;
                rows.push((hi as u8) << 4 | lo as u8);
            }
        }
        rows
    };
    let g4 = [
        (80, y1, 15u16, 12u16, a4(15, 12)),
        (90, y1 + 4, 8, 8, a4(8, 8)),
    ];
    let s4 = string(c, 2, &g4);
    text(
        c,
        (76, y1 - 4, 112, y1 + 16),
        s4,
        (0, 0, 0, 0),
        0x0020_40ff,
        0,
    );

    // COMPOSITE: OVER of a premultiplied ARGB gradient (alpha across x).
    let argb = bitmap32(c, 9, 64, 32, |x, y| {
        let a = x * 4;
        let r = (y * 8).min(255) * a / 255;
        let g = 0x80 * a / 255;
        a << 24 | r << 16 | g << 8
    });
    let mut u = Vec::new();
    u.extend_from_slice(&3u32.to_le_bytes()); // OVER, nearest, no repeat
    u.extend_from_slice(&c.phys(argb).to_le_bytes());
    u.extend_from_slice(&[0; 24]); // no transform, no mask
    u.extend_from_slice(&[0; 8]); // origins
    c.draw(
        DRAW_COMPOSITE,
        (140, y1, 204, y1 + 32),
        None,
        &u,
        "composite",
    );

    c.async_io(IO_FLUSH_SURFACES_ASYNC, 0, "ops-flush");
}
