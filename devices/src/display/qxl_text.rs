//! TEXT as spice-common's sw canvas draws it: the back area filled with the
//! back brush (only when the fore mode is OP_PUT; any other mode with a back
//! area draws nothing), then the glyphs made into one alpha mask (1-bit
//! glyphs as 0/255, 4-bit as nibble << 4, 8-bit as is, overlapping glyphs
//! taking the larger alpha, rows stored bottom row first) and the fore brush
//! composited OVER through it with pixman's 8-bit rounding. A pattern fore
//! brush is tiled from the glyphs' bounding box, as the canvas's composite
//! of the brush at the mask's origin does.

use display_types::alpha_over;

use super::qxl::QxlRect;
use super::qxl_canvas::{ropd, Area, Canvas};
use super::qxl_parse_ops::{Glyph, GlyphString};
use super::qxl_rop3::BrushPaint;

pub(super) struct TextPaint {
    pub string: GlyphString,
    pub back_area: QxlRect,
    pub fore: BrushPaint,
    pub back: BrushPaint,
    pub fore_mode: u16,
}

/// The glyphs' bounding box (left, top, right, bottom), None without glyphs.
fn glyph_bounds(glyphs: &[Glyph]) -> Option<(i64, i64, i64, i64)> {
    glyphs.iter().fold(None, |acc, g| {
        let (l, t) = (i64::from(g.x), i64::from(g.y));
        let (r, b) = (l + i64::from(g.width), t + i64::from(g.height));
        Some(match acc {
            None => (l, t, r, b),
            Some((l0, t0, r0, b0)) => (l0.min(l), t0.min(t), r0.max(r), b0.max(b)),
        })
    })
}

/// Alpha of pixel (`gx`, `gy`) of a glyph (gy counted from its top), as
/// the canvas computes it before storing: in `int`, so the low nibble of a
/// 4-bit pair is `byte << 4`, which exceeds 255 whenever the high nibble is
/// set; the canvas's MAX then always takes it and the store truncates it
/// (a later glyph's odd pixel overwrites an earlier one's). Kept as is so
/// overlapping glyphs come out as they do in spice-server.
fn glyph_alpha(g: &Glyph, bpp: u8, gx: usize, gy: usize) -> u32 {
    let row = (usize::from(g.width) * usize::from(bpp)).div_ceil(8);
    let Some(r) = usize::from(g.height).checked_sub(gy + 1) else {
        return 0;
    };
    let line = g.data.get(r * row..(r + 1) * row).unwrap_or(&[]);
    match bpp {
        1 => line
            .get(gx / 8)
            .map_or(0, |b| if b >> (7 - gx % 8) & 1 != 0 { 255 } else { 0 }),
        4 => line.get(gx / 2).map_or(0, |&b| {
            if gx.is_multiple_of(2) {
                u32::from(b & 0xf0)
            } else {
                u32::from(b) << 4
            }
        }),
        _ => line.get(gx).map_or(0, |&b| u32::from(b)),
    }
}

pub(super) fn paint_text(canvas: &mut Canvas, a: Area, t: &TextPaint) {
    let back = &t.back_area;
    if back.left < back.right && back.top < back.bottom {
        if t.fore_mode != ropd::OP_PUT {
            return;
        }
        if let Some(b) = canvas.clip_rect(back) {
            let r = Area {
                left: b.left.max(a.left),
                top: b.top.max(a.top),
                right: b.right.min(a.right),
                bottom: b.bottom.min(a.bottom),
            };
            if r.left < r.right && r.top < r.bottom {
                canvas.paint(r, |x, y, _| t.back.at(i64::from(x), i64::from(y)));
            }
        }
    }
    if t.fore.is_none() {
        return;
    }
    let Some((ul, ut, ur, ub)) = glyph_bounds(&t.string.glyphs) else {
        return;
    };
    // The part of the area the glyphs cover.
    let (l, tp) = (ul.max(i64::from(a.left)), ut.max(i64::from(a.top)));
    let (r, b) = (ur.min(i64::from(a.right)), ub.min(i64::from(a.bottom)));
    if l >= r || tp >= b {
        return;
    }
    let (w, h) = ((r - l) as usize, (b - tp) as usize);
    let mut mask = vec![0u8; w * h];
    for g in &t.string.glyphs {
        let (gl, gt) = (i64::from(g.x), i64::from(g.y));
        let x0 = l.max(gl);
        let x1 = r.min(gl + i64::from(g.width));
        let y0 = tp.max(gt);
        let y1 = b.min(gt + i64::from(g.height));
        for y in y0..y1 {
            for x in x0..x1 {
                let v = glyph_alpha(g, t.string.bpp, (x - gl) as usize, (y - gt) as usize);
                let m = &mut mask[(y - tp) as usize * w + (x - l) as usize];
                *m = u32::from(*m).max(v) as u8;
            }
        }
    }
    let area = Area {
        left: l as u32,
        top: tp as u32,
        right: r as u32,
        bottom: b as u32,
    };
    canvas.paint(area, |x, y, old| {
        let m = u32::from(mask[(i64::from(y) - tp) as usize * w + (i64::from(x) - l) as usize]);
        if m == 0 {
            return None;
        }
        let s = t.fore.at(i64::from(x) - ul, i64::from(y) - ut)?;
        // The brush is opaque: OVER through the glyph mask's alpha.
        Some(alpha_over(s | 0xff00_0000, old, m as u8))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(left: i32, top: i32, right: i32, bottom: i32) -> QxlRect {
        QxlRect {
            top,
            left,
            bottom,
            right,
        }
    }

    fn all(c: &Canvas) -> Area {
        c.clip_rect(&rect(0, 0, c.width() as i32, c.height() as i32))
            .unwrap()
    }

    #[test]
    fn one_bit_glyphs_rows_bottom_up_msb_first() {
        let mut c = Canvas::new(6, 3).unwrap();
        // A 3x2 glyph at (1, 1): bottom row first in memory.
        let g = Glyph {
            x: 1,
            y: 1,
            width: 3,
            height: 2,
            data: vec![0b1010_0000, 0b0110_0000],
        };
        let t = TextPaint {
            string: GlyphString {
                bpp: 1,
                glyphs: vec![g],
            },
            back_area: rect(0, 0, 6, 1),
            fore: BrushPaint::Solid(0xffffff),
            back: BrushPaint::Solid(0x0000ff),
            fore_mode: ropd::OP_PUT,
        };
        let a = all(&c);
        paint_text(&mut c, a, &t);
        let w = 0xffffff;
        assert_eq!(c.row(0, 0, 6), &[0xff; 6]);
        assert_eq!(c.row(1, 0, 6), &[0, 0, w, w, 0, 0]);
        assert_eq!(c.row(2, 0, 6), &[0, w, 0, w, 0, 0]);
        // Any fore mode but PUT with a back area draws nothing at all.
        let mut c2 = Canvas::new(6, 3).unwrap();
        let t2 = TextPaint {
            fore_mode: ropd::OP_XOR,
            ..t
        };
        let a = all(&c2);
        paint_text(&mut c2, a, &t2);
        assert_eq!(c2.row(0, 0, 6), &[0; 6]);
    }

    #[test]
    fn four_and_eight_bit_glyphs_blend_with_pixman_rounding() {
        let mut c = Canvas::new(3, 1).unwrap();
        c.paint(all(&c), |_, _, _| Some(0x00_0000ff));
        let g4 = Glyph {
            x: 0,
            y: 0,
            width: 3,
            height: 1,
            data: vec![0xf8, 0x00],
        };
        let g8 = Glyph {
            x: 2,
            y: 0,
            width: 1,
            height: 1,
            data: vec![0x80],
        };
        let t = TextPaint {
            string: GlyphString {
                bpp: 4,
                glyphs: vec![g4],
            },
            back_area: rect(0, 0, 0, 0),
            fore: BrushPaint::Solid(0xff0000),
            back: BrushPaint::None,
            fore_mode: ropd::OP_PUT,
        };
        let a = all(&c);
        paint_text(&mut c, a, &t);
        // 0xf0: red 240, blue 255*15/255 rounded = 15. 0x80: red 128, blue 127.
        assert_eq!(c.row(0, 0, 3), &[0xf0_000f, 0x80_007f, 0x00_00ff]);
        let t8 = TextPaint {
            string: GlyphString {
                bpp: 8,
                glyphs: vec![g8],
            },
            ..t
        };
        let a = all(&c);
        paint_text(&mut c, a, &t8);
        assert_eq!(c.pixel(2, 0), Some(0x80_007f));
    }

    #[test]
    fn overlapping_four_bit_glyphs_keep_the_canvas_quirk() {
        // Two 2x1 4-bit glyphs on the same pixels: the even pixel takes the
        // larger alpha, the odd one the later glyph's whenever that byte's
        // high nibble is set (0x3 over 0x9 here), else the larger.
        let mut c = Canvas::new(2, 1).unwrap();
        let g = |b: u8| Glyph {
            x: 0,
            y: 0,
            width: 2,
            height: 1,
            data: vec![b],
        };
        let t = TextPaint {
            string: GlyphString {
                bpp: 4,
                glyphs: vec![g(0x99), g(0x13)],
            },
            back_area: rect(0, 0, 0, 0),
            fore: BrushPaint::Solid(0xffffff),
            back: BrushPaint::None,
            fore_mode: ropd::OP_PUT,
        };
        let a = all(&c);
        paint_text(&mut c, a, &t);
        assert_eq!(c.row(0, 0, 2), &[0x90_9090, 0x30_3030]);
        let mut c = Canvas::new(2, 1).unwrap();
        let t = TextPaint {
            string: GlyphString {
                bpp: 4,
                glyphs: vec![g(0x99), g(0x03)],
            },
            ..t
        };
        paint_text(&mut c, a, &t);
        assert_eq!(c.row(0, 0, 2), &[0x90_9090, 0x90_9090]);
    }

    #[test]
    fn glyphs_out_of_bounds_and_short_rasters_are_clipped() {
        let mut c = Canvas::new(4, 4).unwrap();
        let far = Glyph {
            x: i32::MAX - 2,
            y: i32::MIN,
            width: u16::MAX,
            height: u16::MAX,
            data: vec![0xff; 4],
        };
        let short = Glyph {
            x: -2,
            y: -3,
            width: 8,
            height: 8,
            data: vec![0xff; 3],
        };
        let t = TextPaint {
            string: GlyphString {
                bpp: 1,
                glyphs: vec![far, short],
            },
            back_area: rect(0, 0, 0, 0),
            fore: BrushPaint::Solid(0xffffff),
            back: BrushPaint::None,
            fore_mode: ropd::OP_PUT,
        };
        let a = all(&c);
        paint_text(&mut c, a, &t);
        // The short glyph's three bytes are its bottom three rows (y 4, 3
        // and 2); its other rows have no raster and stay clear.
        assert_eq!(c.row(0, 0, 4), &[0; 4]);
        assert_eq!(c.row(1, 0, 4), &[0; 4]);
        assert_eq!(c.row(2, 0, 4), &[0xffffff; 4]);
        assert_eq!(c.row(3, 0, 4), &[0xffffff; 4]);
    }
}
