//! ROP3, STROKE, TEXT, COMPOSITE and QMask drawables pushed through the
//! command ring as a Windows-style driver builds them, checked pixel by pixel
//! against values worked out by hand from spice-common's canvas rules, and
//! hostile versions of each (dropped and still released, nothing drawn).

use super::*;

/// A QXLQMask: flags, pos, bitmap.
fn qmask(invert: bool, x: i32, y: i32, bitmap: u64) -> Vec<u8> {
    let mut m = vec![u8::from(invert)];
    m.extend_from_slice(&x.to_le_bytes());
    m.extend_from_slice(&y.to_le_bytes());
    m.extend_from_slice(&bitmap.to_le_bytes());
    m
}

/// A top-down 1-bit (LE: bit 0 leftmost) mask bitmap, no palette.
fn mask_image(g: &mut Guest, w: u32, rows: &[u8]) -> u64 {
    let data = g.put(&chunk(rows, 0));
    let mut img = vec![0u8; 48];
    img[18] = 1; // 1BIT_LE
    img[19] = 4; // TOP_DOWN
    img[20..24].copy_from_slice(&w.to_le_bytes());
    img[24..28].copy_from_slice(&(rows.len() as u32).to_le_bytes());
    img[28..32].copy_from_slice(&1u32.to_le_bytes());
    img[40..48].copy_from_slice(&data.to_le_bytes());
    g.put(&img)
}

fn solid(color: u32) -> Vec<u8> {
    let mut b = 1u32.to_le_bytes().to_vec();
    b.extend_from_slice(&color.to_le_bytes());
    b.extend_from_slice(&[0; 12]);
    b
}

fn pattern(image: u64, x: i32, y: i32) -> Vec<u8> {
    let mut b = 2u32.to_le_bytes().to_vec();
    b.extend_from_slice(&image.to_le_bytes());
    b.extend_from_slice(&x.to_le_bytes());
    b.extend_from_slice(&y.to_le_bytes());
    b
}

const PUT: u16 = 1 << 3;

fn frame(g: &Guest) -> Screen {
    let mut screen = Screen::new();
    screen.refresh(&g.q, FbDirty::Unknown, Instant::now());
    screen
}

/// Run `drawables` (id, union, kind, bbox) and return the screen.
fn run(g: &mut Guest, drawables: &[(u64, u8, [u8; 16], Vec<u8>)]) -> Screen {
    let mut ids = Vec::new();
    for (id, kind, bbox, u) in drawables {
        let d = g.put(&drawable(*id, *kind, *bbox, None, u));
        ids.push((*id, d));
        g.push_cmd(d, 1);
    }
    g.settle();
    let mut got = g.collect_releases(&ids);
    got.sort();
    let mut want: Vec<u64> = ids.iter().map(|(i, _)| *i).collect();
    want.sort();
    assert_eq!(got, want, "every drawable released");
    frame(g)
}

#[test]
fn rop3_with_pattern_brush_and_mask() {
    let mut g = Guest::new();
    g.init();
    // Destination: 0x0f0f0f everywhere in the bbox first.
    let mut fill = solid(0x000f_0f0f);
    fill.extend_from_slice(&PUT.to_le_bytes());
    // Source 4x2: x*0x40 in red; pattern 2x1: 0x0000ff, 0x00ff00.
    let src = bitmap_image(&mut g, 4, 2, |x, _| (x * 0x40) << 16);
    let pat = bitmap_image(&mut g, 2, 1, |x, _| if x == 0 { 0xff } else { 0xff00 });
    // Mask: column 2 of row 0 cut out (bit set = drawn).
    let m = mask_image(&mut g, 4, &[0b1011, 0b1111]);
    let mut u = src.to_le_bytes().to_vec();
    u.extend_from_slice(&rect(0, 0, 4, 2));
    u.extend_from_slice(&pattern(pat, 1, 0));
    u.push(0xe2); // DSPDxax: (P ^ D) & S ^ D = S ? P : D per bit
    u.push(0);
    u.extend(qmask(false, 0, 0, m));
    let s = run(
        &mut g,
        &[
            (1, 1, rect(10, 10, 14, 12), fill),
            (2, 9, rect(10, 10, 14, 12), u),
        ],
    );
    let f = s.frame();
    let d = 0x0f_0f0fu32;
    // The pattern (pos 1, 0) shows its pixel (x - 1) mod 2 at column x.
    let p = |x: u32| {
        if (x - 1).is_multiple_of(2) {
            0xffu32
        } else {
            0xff00
        }
    };
    for y in 10..12 {
        for x in 10..14 {
            let sv = ((x - 10) * 0x40) << 16;
            let want = if x == 12 && y == 10 {
                d
            } else {
                ((p(x) ^ d) & sv) ^ d
            };
            assert_eq!(f.pixel(x, y), want, "({x},{y})");
        }
    }
    // No brush at all: the rop reads colour 0 for the pattern.
    let src = bitmap_image(&mut g, 1, 1, |_, _| 0x123456);
    let mut u = src.to_le_bytes().to_vec();
    u.extend_from_slice(&rect(0, 0, 1, 1));
    u.extend_from_slice(&[0; 20]);
    u.push(0xfc); // PSo: P | S
    u.push(0);
    u.extend(qmask(false, 0, 0, 0));
    let s = run(&mut g, &[(3, 9, rect(0, 0, 1, 1), u)]);
    assert_eq!(s.frame().pixel(0, 0), 0x123456);
}

/// OPAQUE copies its source, then draws its brush over it with the rop: the
/// brush is the rop's source (INVERS_BRUSH inverts it) and the copied image
/// its destination (INVERS_SRC inverts that), as canvas_draw_opaque does.
#[test]
fn opaque_applies_its_brush_over_the_copy() {
    let mut g = Guest::new();
    g.init();
    let mut fill = solid(0x000f_0f0f);
    fill.extend_from_slice(&PUT.to_le_bytes());
    let src = bitmap_image(&mut g, 4, 2, |x, _| (x * 0x40) << 16 | 0x80);
    let pat = bitmap_image(&mut g, 2, 1, |x, _| if x == 0 { 0xff } else { 0xff00 });
    let opaque = |brush: &[u8], rop: u16| {
        let mut u = src.to_le_bytes().to_vec();
        u.extend_from_slice(&rect(0, 0, 4, 2));
        u.extend_from_slice(brush);
        u.extend_from_slice(&rop.to_le_bytes());
        u.push(0); // scale mode
        u.extend(qmask(false, 0, 0, 0));
        u
    };
    // Pattern AND the inverted source.
    let and_not = opaque(&pattern(pat, 1, 0), (1 << 5) | 1);
    let s = run(
        &mut g,
        &[
            (1, 1, rect(9, 10, 15, 12), fill.clone()),
            (2, 2, rect(10, 10, 14, 12), and_not),
        ],
    );
    let f = s.frame();
    let p = |x: u32| {
        if (x - 1).is_multiple_of(2) {
            0xffu32
        } else {
            0xff00
        }
    };
    for y in 10..12 {
        for x in 10..14 {
            let sv = ((x - 10) * 0x40) << 16 | 0x80;
            assert_eq!(f.pixel(x, y), p(x) & !sv & 0xff_ffff, "({x},{y})");
        }
    }
    assert_eq!(f.pixel(9, 10), 0x0f_0f0f, "outside the bbox");
    // No brush with PUT: the canvas puts colour 0 over the copy.
    let s = run(
        &mut g,
        &[(3, 2, rect(10, 10, 14, 12), opaque(&[0; 20], PUT))],
    );
    assert_eq!(s.frame().pixel(11, 11), 0);
    // A hostile brush type: the drawable is dropped (and still released).
    let mut bad = [0u8; 20];
    bad[0] = 9;
    let s = run(
        &mut g,
        &[
            (4, 1, rect(10, 10, 14, 12), fill),
            (5, 2, rect(10, 10, 14, 12), opaque(&bad, PUT)),
        ],
    );
    assert_eq!(s.frame().pixel(11, 11), 0x0f_0f0f);
}

#[test]
fn fills_and_copies_obey_their_mask() {
    let mut g = Guest::new();
    g.init();
    // Mask 3x1 at pos (1, 0) of a 4x1 bitmap 0b0110 (bits 1, 2), inverted:
    // dest x0 ↔ mask x1 (set → not drawn), x1 ↔ x2 (set), x2 ↔ x3 (clear →
    // drawn), x3 ↔ x4 (outside the mask → never drawn).
    let m = mask_image(&mut g, 4, &[0b0110]);
    let mut fill = solid(0x00ff_0000);
    fill.extend_from_slice(&PUT.to_le_bytes());
    fill.extend(qmask(true, 1, 0, m));
    let s = run(&mut g, &[(1, 1, rect(0, 0, 4, 1), fill)]);
    let f = s.frame();
    assert_eq!(
        [f.pixel(0, 0), f.pixel(1, 0), f.pixel(2, 0), f.pixel(3, 0)],
        [0, 0, 0xff_0000, 0]
    );
    // A masked copy is drawn as pixels (not forwarded as a copy).
    let img = bitmap_image(&mut g, 4, 1, |x, _| x + 1);
    let m = mask_image(&mut g, 4, &[0b1001]);
    let mut u = copy_union(img, 4, 1);
    u.push(0); // scale mode
    u.extend(qmask(false, 0, 0, m));
    let s = run(&mut g, &[(2, 3, rect(0, 1, 4, 2), u)]);
    let f = s.frame();
    assert_eq!(
        [f.pixel(0, 1), f.pixel(1, 1), f.pixel(2, 1), f.pixel(3, 1)],
        [1, 0, 0, 4]
    );
}

/// A QXLPath of (flags, points in 28.4).
fn path(g: &mut Guest, segs: &[(u32, &[(i32, i32)])]) -> u64 {
    let mut data = Vec::new();
    for (flags, pts) in segs {
        data.extend_from_slice(&flags.to_le_bytes());
        data.extend_from_slice(&(pts.len() as u32).to_le_bytes());
        for (x, y) in *pts {
            data.extend_from_slice(&x.to_le_bytes());
            data.extend_from_slice(&y.to_le_bytes());
        }
    }
    let mut p = (data.len() as u32).to_le_bytes().to_vec();
    p.extend(chunk(&data, 0));
    g.put(&p)
}

fn stroke_union(path: u64, brush: &[u8], fore_mode: u16) -> Vec<u8> {
    let mut u = path.to_le_bytes().to_vec();
    u.extend_from_slice(&[0; 20]); // line attr: not styled
    u.extend_from_slice(brush);
    u.extend_from_slice(&fore_mode.to_le_bytes());
    u.extend_from_slice(&PUT.to_le_bytes());
    u
}

#[test]
fn stroke_draws_cosmetic_lines_without_their_last_pixel() {
    let mut g = Guest::new();
    g.init();
    // (2,2) → (6,4) → (6,7), then close back to (2,2); coordinates 28.4.
    let p = path(&mut g, &[(1, &[(32, 32), (96, 64)]), (2 | 8, &[(96, 112)])]);
    let s = run(
        &mut g,
        &[(
            1,
            10,
            rect(0, 0, 64, 48),
            stroke_union(p, &solid(0xffffff), PUT),
        )],
    );
    let f = s.frame();
    let lit: Vec<(u32, u32)> = (0..48)
        .flat_map(|y| (0..64).map(move |x| (x, y)))
        .filter(|&(x, y)| f.pixel(x, y) != 0)
        .collect();
    // (2,2)→(6,4): x-major, no bias: the tie at x=3 (y 2.5) rounds down
    // the screen: (2,2) (3,3) (4,3) (5,4). (6,4)→(6,7): (6,4) (6,5) (6,6).
    // (6,7)→(2,2): y-major, x and y decreasing (biased): from (6,7) up to
    // y=3.
    let mut want = vec![(2, 2), (3, 3), (4, 3), (5, 4), (6, 4), (6, 5), (6, 6)];
    let mut back = Vec::new();
    let (adx, ady) = (4i64, 5i64);
    let e0 = -ady - 1;
    for k in 0..ady {
        let m = (e0 + 2 * adx * k).div_euclid(2 * ady) + 1;
        back.push(((6 - m) as u32, (7 - k) as u32));
    }
    want.extend(back);
    want.sort_by_key(|&(x, y)| (y, x));
    want.dedup();
    assert_eq!(lit, want);
    // XOR over the same stroke: every pixel goes black but (3,3), which the
    // first and last lines both draw (each line is filled on its own, as
    // miZeroLine's per-segment spans are), so it is XORed twice.
    let s = run(
        &mut g,
        &[(
            2,
            10,
            rect(0, 0, 64, 48),
            stroke_union(p, &solid(0xffffff), 1 << 6),
        )],
    );
    let f = s.frame();
    let lit: Vec<(u32, u32)> = (0..48)
        .flat_map(|y| (0..64).map(move |x| (x, y)))
        .filter(|&(x, y)| f.pixel(x, y) != 0)
        .collect();
    assert_eq!(lit, [(3, 3)]);
}

/// A QXLString of 1-bit glyphs (x, y, w, h, rows bottom-up).
fn string(g: &mut Guest, flags: u16, glyphs: &[(i32, i32, u16, u16, &[u8])], length: u16) -> u64 {
    let mut data = Vec::new();
    for (x, y, w, h, rows) in glyphs {
        data.extend_from_slice(&x.to_le_bytes());
        data.extend_from_slice(&y.to_le_bytes());
        data.extend_from_slice(&[0; 8]); // glyph origin 0
        data.extend_from_slice(&w.to_le_bytes());
        data.extend_from_slice(&h.to_le_bytes());
        data.extend_from_slice(rows);
    }
    let mut s = (data.len() as u32).to_le_bytes().to_vec();
    s.extend_from_slice(&length.to_le_bytes());
    s.extend_from_slice(&flags.to_le_bytes());
    s.extend(chunk(&data, 0));
    g.put(&s)
}

fn text_union(str_addr: u64, back: [u8; 16], fore: &[u8], back_brush: &[u8]) -> Vec<u8> {
    let mut u = str_addr.to_le_bytes().to_vec();
    u.extend_from_slice(&back);
    u.extend_from_slice(fore);
    u.extend_from_slice(back_brush);
    u.extend_from_slice(&PUT.to_le_bytes());
    u.extend_from_slice(&PUT.to_le_bytes());
    u
}

#[test]
fn text_fills_the_back_area_then_the_glyphs() {
    let mut g = Guest::new();
    g.init();
    // Two 2x2 glyphs: "top-left + bottom-right" and a full block.
    let s = string(
        &mut g,
        1,
        &[(4, 4, 2, 2, &[0x40, 0x80]), (7, 4, 2, 2, &[0xc0, 0xc0])],
        2,
    );
    let u = text_union(s, rect(3, 3, 10, 7), &solid(0x00ff00), &solid(0x000040));
    let sc = run(&mut g, &[(1, 11, rect(3, 3, 10, 7), u)]);
    let f = sc.frame();
    let (gr, bk) = (0x00ff00, 0x000040);
    assert_eq!(f.pixel(3, 3), bk);
    assert_eq!(f.pixel(4, 4), gr);
    assert_eq!(f.pixel(5, 4), bk);
    assert_eq!(f.pixel(4, 5), bk);
    assert_eq!(f.pixel(5, 5), gr);
    assert_eq!(f.pixel(6, 4), bk);
    for (x, y) in [(7, 4), (8, 4), (7, 5), (8, 5)] {
        assert_eq!(f.pixel(x, y), gr);
    }
    assert_eq!(f.pixel(9, 6), bk);
    assert_eq!(f.pixel(10, 6), 0, "outside the bbox");
}

#[test]
fn composite_over_with_an_alpha_source() {
    let mut g = Guest::new();
    g.init();
    let mut fill = solid(0x0000_00ff);
    fill.extend_from_slice(&PUT.to_le_bytes());
    // 2x1 premultiplied ARGB: opaque red, half-transparent green.
    let mut src = vec![0u8; 48];
    let px: Vec<u8> = [0xffff_0000u32, 0x8000_8000]
        .iter()
        .flat_map(|p| p.to_le_bytes())
        .collect();
    let data = g.put(&chunk(&px, 0));
    src[18] = 9; // RGBA
    src[19] = 4;
    src[20] = 2;
    src[24] = 1;
    src[28] = 8;
    src[40..48].copy_from_slice(&data.to_le_bytes());
    let src = g.put(&src);
    let mut u = 3u32.to_le_bytes().to_vec(); // OVER, nearest, no repeat
    u.extend_from_slice(&src.to_le_bytes());
    u.extend_from_slice(&[0; 24]); // no transform, no mask
    u.extend_from_slice(&[0; 8]); // origins
    let s = run(
        &mut g,
        &[(1, 1, rect(0, 0, 3, 1), fill), (2, 14, rect(0, 0, 3, 1), u)],
    );
    let f = s.frame();
    // Green: 0x80 + 0 = 0x80; blue 0xff * 0x7f / 0xff = 0x7f.
    assert_eq!(
        [f.pixel(0, 0), f.pixel(1, 0), f.pixel(2, 0)],
        [0xff0000, 0x00807f, 0xff]
    );
}

#[test]
fn hostile_rop3_stroke_text_composite_are_dropped_and_released() {
    let mut g = Guest::new();
    g.init();
    // A path whose segment claims u32::MAX points.
    let mut data = 1u32.to_le_bytes().to_vec();
    data.extend_from_slice(&u32::MAX.to_le_bytes());
    data.extend_from_slice(&[0; 16]);
    let mut p = (data.len() as u32).to_le_bytes().to_vec();
    p.extend(chunk(&data, 0));
    let huge = g.put(&p);
    // A path whose data size is beyond the bound.
    let mut p = u32::MAX.to_le_bytes().to_vec();
    p.extend(chunk(&[0; 8], 0));
    let too_big = g.put(&p);
    // A path whose chunk chain loops.
    let at = g.next;
    let mut p = 64u32.to_le_bytes().to_vec();
    p.extend(chunk(&[0; 16], main_phys(at + 4)));
    let looped = g.put(&p);
    // Strings: glyph raster past the end, glyph count disagreeing, no
    // raster flag.
    let past = string(&mut g, 1, &[(0, 0, 64, 64, &[0xff; 8])], 1);
    let miscount = string(&mut g, 1, &[(0, 0, 8, 1, &[0xff])], 2);
    let vector = string(&mut g, 0, &[(0, 0, 8, 1, &[0xff])], 1);
    // A mask that is not 1-bit.
    let not_mask = bitmap_image(&mut g, 2, 2, |_, _| 0xffffff);
    let mut fill = solid(0xffffff);
    fill.extend_from_slice(&PUT.to_le_bytes());
    fill.extend(qmask(false, 0, 0, not_mask));
    // A ROP3 whose source is outside every slot.
    let mut rop3 = (5u64 << 56).to_le_bytes().to_vec();
    rop3.extend_from_slice(&rect(0, 0, 4, 4));
    rop3.extend_from_slice(&solid(0xffffff));
    rop3.push(0xcc);
    let b = rect(0, 0, 64, 48);
    let white = solid(0xffffff);
    let s = run(
        &mut g,
        &[
            (1, 10, b, stroke_union(huge, &white, PUT)),
            (2, 10, b, stroke_union(too_big, &white, PUT)),
            (3, 10, b, stroke_union(looped, &white, PUT)),
            (4, 11, b, text_union(past, rect(0, 0, 0, 0), &white, &white)),
            (
                5,
                11,
                b,
                text_union(miscount, rect(0, 0, 0, 0), &white, &white),
            ),
            (
                6,
                11,
                b,
                text_union(vector, rect(0, 0, 0, 0), &white, &white),
            ),
            (7, 1, b, fill),
            (8, 9, b, rop3),
        ],
    );
    assert!(s.frame().pixels.iter().all(|&p| p == 0));
}

#[test]
fn cursor_trail_is_forwarded_and_released() {
    let mut g = Guest::new();
    g.init();
    let sink = Arc::new(Cursors::default());
    g.q.set_cursor_sink(sink.clone());
    let mut trail = 41u64.to_le_bytes().to_vec();
    trail.push(3); // TRAIL
    trail.extend_from_slice(&6u16.to_le_bytes());
    trail.extend_from_slice(&25u16.to_le_bytes());
    trail.resize(150, 0);
    let trail = g.put(&trail);
    g.push(ram_off::CURSOR_RING, io::NOTIFY_CURSOR, trail, 3);
    g.settle();
    assert_eq!(
        sink.0.lock().unwrap().clone(),
        [CursorEvent::Trail {
            length: 6,
            frequency: 25
        }]
    );
    assert_eq!(g.collect_releases(&[(41, trail)]), [41]);
}

/// A `w`x1 top-down bitmap of `format` (RGBA or 32BIT) holding `pixels`.
fn row_bitmap(g: &mut Guest, format: u8, pixels: &[u32]) -> u64 {
    let px: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    let data = g.put(&chunk(&px, 0));
    let w = pixels.len() as u32;
    let mut img = vec![0u8; 48];
    img[18] = format;
    img[19] = 4; // TOP_DOWN
    img[20..24].copy_from_slice(&w.to_le_bytes());
    img[24..28].copy_from_slice(&1u32.to_le_bytes());
    img[28..32].copy_from_slice(&(w * 4).to_le_bytes());
    img[40..48].copy_from_slice(&data.to_le_bytes());
    g.put(&img)
}

/// An ALPHA_BLEND union: alpha_flags, alpha, src_bitmap, src_area.
fn alpha_blend(flags: u16, alpha: u8, src: u64, w: i32) -> Vec<u8> {
    let mut u = flags.to_le_bytes().to_vec();
    u.push(alpha);
    u.extend_from_slice(&src.to_le_bytes());
    u.extend_from_slice(&rect(0, 0, w, 1));
    u
}

/// ALPHA_BLEND of an RGBA bitmap with SRC_SURFACE_HAS_ALPHA is forwarded
/// with the bitmap's alpha (SourceAlpha); the flag on a format without alpha,
/// or an RGBA bitmap without the flag, blends it as opaque, as the clients
/// do, and is forwarded without alpha.
#[test]
fn alpha_blends_keep_the_source_alpha_only_where_it_counts() {
    use display_types::BlendMode;
    let mut g = Guest::new();
    g.init();
    let mut screen = Screen::new();
    let t = Instant::now();
    screen.refresh(&g.q, FbDirty::Unknown, t);
    let mut fill = solid(0x0000_00ff);
    fill.extend_from_slice(&PUT.to_le_bytes());
    // Premultiplied: half-clear red, clear, opaque green.
    let argb = [0x8080_0000, 0, 0xff00_ff00];
    let rgba = row_bitmap(&mut g, 9, &argb);
    let xrgb = row_bitmap(&mut g, 8, &argb);
    let cases = [
        (alpha_blend(2, 0xff, rgba, 3), BlendMode::SourceAlpha(0xff)),
        (alpha_blend(2, 0x80, xrgb, 3), BlendMode::Alpha(0x80)),
        (alpha_blend(0, 0xff, rgba, 3), BlendMode::Alpha(0xff)),
    ];
    let mut ids = Vec::new();
    for (i, (u, _)) in cases.iter().enumerate() {
        let y = i as i32;
        let f = g.put(&drawable(
            10 + i as u64,
            1,
            rect(0, y, 3, y + 1),
            None,
            &fill,
        ));
        let d = g.put(&drawable(20 + i as u64, 13, rect(0, y, 3, y + 1), None, u));
        ids.extend([(10 + i as u64, f), (20 + i as u64, d)]);
        g.push_cmd(f, 1);
        g.push_cmd(d, 1);
    }
    g.settle();
    assert_eq!(g.collect_releases(&ids).len(), 6);
    let u = screen.refresh(&g.q, FbDirty::Unknown, t);
    let blends: Vec<_> = u
        .draws
        .iter()
        .filter_map(|d| match d {
            Draw::Blend(b) => Some((b.mode, b.copy.rect, b.copy.image.pixels.clone())),
            _ => None,
        })
        .collect();
    let opaque: Vec<u32> = argb.iter().map(|p| p & 0x00ff_ffff).collect();
    assert_eq!(
        blends,
        [
            (cases[0].1, Rect::new(0, 0, 3, 1), argb.to_vec()),
            (cases[1].1, Rect::new(0, 1, 3, 1), opaque.clone()),
            (cases[2].1, Rect::new(0, 2, 3, 1), opaque),
        ]
    );
    let f = screen.frame();
    let row = |y| [f.pixel(0, y), f.pixel(1, y), f.pixel(2, y)];
    // Red 0x80 kept, blue 0xff * 0x7f / 0xff; the clear pixel leaves blue.
    assert_eq!(row(0), [0x0080_007f, 0xff, 0xff00]);
    // Opaque at 0x80: red 0x40 and blue 0x7f; black 0 and blue 0x7f.
    assert_eq!(row(1), [0x0040_007f, 0x7f, 0x0000_807f]);
    assert_eq!(row(2), [0x0080_0000, 0, 0xff00]);
}

/// COMPOSITE OVER of an RGBA bitmap covering the bbox (origin 1) is
/// forwarded as an Over blend of its pixels from there; with repeat, or a
/// source that does not cover the bbox, it is drawn as pixels only.
#[test]
fn plain_composite_over_is_forwarded() {
    use display_types::BlendMode;
    let mut g = Guest::new();
    g.init();
    let mut screen = Screen::new();
    let t = Instant::now();
    screen.refresh(&g.q, FbDirty::Unknown, t);
    let argb = [0xff00_00ff, 0x8080_0000, 0, 0xff00_ff00];
    let src = row_bitmap(&mut g, 9, &argb);
    let composite = |flags: u32, x: i16| {
        let mut u = flags.to_le_bytes().to_vec();
        u.extend_from_slice(&src.to_le_bytes());
        u.extend_from_slice(&[0; 24]); // no transforms, no mask
        u.extend_from_slice(&x.to_le_bytes());
        u.extend_from_slice(&[0; 6]);
        u
    };
    let ids = [
        (
            1,
            g.put(&drawable(1, 14, rect(0, 0, 3, 1), None, &composite(3, 1))),
        ),
        // Repeat NORMAL, and a source one pixel short of the bbox.
        (
            2,
            g.put(&drawable(
                2,
                14,
                rect(0, 1, 3, 2),
                None,
                &composite(3 | 1 << 14, 1),
            )),
        ),
        (
            3,
            g.put(&drawable(3, 14, rect(0, 2, 4, 3), None, &composite(3, 1))),
        ),
    ];
    for (_, d) in ids {
        g.push_cmd(d, 1);
    }
    g.settle();
    assert_eq!(g.collect_releases(&ids).len(), 3);
    let u = screen.refresh(&g.q, FbDirty::Unknown, t);
    let blends: Vec<_> = u
        .draws
        .iter()
        .filter_map(|d| match d {
            Draw::Blend(b) => Some((
                b.mode,
                b.copy.rect,
                b.copy.src_x,
                b.copy.image.pixels.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        blends,
        [(BlendMode::Over, Rect::new(0, 0, 3, 1), 1, argb.to_vec())]
    );
    let f = screen.frame();
    assert_eq!(
        [f.pixel(0, 0), f.pixel(1, 0), f.pixel(2, 0)],
        [0x0080_0000, 0, 0xff00]
    );
    assert_eq!(f.pixel(3, 2), 0, "past the source: transparent over black");
}
