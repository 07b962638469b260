//! ROP3 (ternary raster operations over pattern, source and destination, as
//! Windows' GDI numbers them) and the brush a ROP3, STROKE or TEXT paints
//! with, as spice-common's rop3.c and canvas_base.c apply them.

use super::qxl::QxlRect;
use super::qxl_canvas::{Area, Canvas};
use super::qxl_draw::Source;

/// The ternary rop `code` applied bitwise: result bit i of each pixel is bit
/// (p << 2 | s << 1 | d) of `code`, so PATCOPY is 0xf0, SRCCOPY 0xcc and
/// the destination itself 0xaa (rop3.c derives its 256 formulas from the
/// same p = 0xf0, s = 0xcc, d = 0xaa).
pub(super) fn rop3(code: u8, p: u32, s: u32, d: u32) -> u32 {
    let mut r = 0;
    for i in 0..8 {
        if code >> i & 1 != 0 {
            let pm = if i & 4 != 0 { p } else { !p };
            let sm = if i & 2 != 0 { s } else { !s };
            let dm = if i & 1 != 0 { d } else { !d };
            r |= pm & sm & dm;
        }
    }
    r
}

/// A brush resolved to pixels.
pub(super) enum BrushPaint {
    /// No brush: what the canvas paints for one is colour 0.
    None,
    Solid(u32),
    /// A tile repeated from the canvas origin, shifted by (x, y).
    Pattern(Source, i32, i32),
}

impl BrushPaint {
    /// The brush's xRGB at (x, y) relative to the tiling origin; None for an
    /// empty pattern.
    pub(super) fn at(&self, x: i64, y: i64) -> Option<u32> {
        match self {
            BrushPaint::None => Some(0),
            BrushPaint::Solid(c) => Some(c & 0x00ff_ffff),
            BrushPaint::Pattern(src, px, py) => {
                let (w, h) = src.size();
                if w <= 0 || h <= 0 {
                    return None;
                }
                let sx = (x - i64::from(*px)).rem_euclid(w);
                let sy = (y - i64::from(*py)).rem_euclid(h);
                src.get(sx, sy).map(|p| p & 0x00ff_ffff)
            }
        }
    }

    pub(super) fn is_none(&self) -> bool {
        matches!(self, BrushPaint::None)
    }
}

/// A ROP3 drawable: `src_area` of `src` (scaled to the bbox, nearest
/// neighbour, when the sizes differ) combined with the brush and the
/// destination by `code`.
pub(super) struct Rop3Paint {
    pub src: Source,
    pub src_area: QxlRect,
    pub brush: BrushPaint,
    pub code: u8,
}

pub(super) fn paint_rop3(canvas: &mut Canvas, a: Area, bbox: &QxlRect, r: &Rop3Paint) {
    let len = |lo: i32, hi: i32| i64::from(hi) - i64::from(lo);
    let (bw, bh) = (len(bbox.left, bbox.right), len(bbox.top, bbox.bottom));
    let (sw, sh) = (
        len(r.src_area.left, r.src_area.right),
        len(r.src_area.top, r.src_area.bottom),
    );
    let coord = |v: u32, d0: i32, dl: i64, s0: i32, sl: i64| {
        let d = i64::from(v) - i64::from(d0);
        if dl == sl || dl <= 0 {
            i64::from(s0) + d
        } else {
            i64::from(s0) + d * sl / dl
        }
    };
    canvas.paint(a, |x, y, old| {
        let sx = coord(x, bbox.left, bw, r.src_area.left, sw);
        let sy = coord(y, bbox.top, bh, r.src_area.top, sh);
        let s = r.src.get(sx, sy)?;
        let p = r.brush.at(i64::from(x), i64::from(y))?;
        Some(rop3(r.code, p, s, old))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rop3_codes_match_their_gdi_formulas() {
        let (p, s, d) = (0x00f0_f0f0u32, 0x00cc_cc00u32, 0x00aa_00aau32);
        for code in 0..=255u8 {
            // The defining property: on the canonical inputs the result's
            // low byte is the code itself.
            assert_eq!(rop3(code, 0xf0, 0xcc, 0xaa) & 0xff, u32::from(code));
        }
        assert_eq!(rop3(0xcc, p, s, d), s, "SRCCOPY");
        assert_eq!(rop3(0xf0, p, s, d), p, "PATCOPY");
        assert_eq!(rop3(0xaa, p, s, d), d, "D");
        assert_eq!(rop3(0x66, p, s, d), s ^ d, "SRCINVERT");
        assert_eq!(rop3(0x88, p, s, d), s & d, "SRCAND");
        assert_eq!(rop3(0xee, p, s, d), s | d, "SRCPAINT");
        assert_eq!(rop3(0x5a, p, s, d), p ^ d, "PATINVERT");
        assert_eq!(rop3(0x55, p, s, d), !d, "DSTINVERT");
        assert_eq!(rop3(0xb8, p, s, d), ((p ^ d) & s) ^ p, "PSDPxax");
        assert_eq!(rop3(0xe2, p, s, d), ((p ^ d) & s) ^ d, "DSPDxax");
        assert_eq!(rop3(0x00, p, s, d), 0);
        assert_eq!(rop3(0xff, p, s, d), u32::MAX);
        // rop3.c's 0x16: (~(P & S) & D) ^ S ^ P.
        assert_eq!(rop3(0x16, p, s, d), (!(p & s) & d) ^ s ^ p);
    }

    #[test]
    fn brushes_tile_from_the_pattern_offset() {
        let mut c = Canvas::new(2, 2).unwrap();
        let all = c.clip_rect(&QxlRect {
            top: 0,
            left: 0,
            bottom: 2,
            right: 2,
        });
        c.paint(all.unwrap(), |x, y, _| Some(y * 2 + x + 1));
        let b = BrushPaint::Pattern(Source::Canvas(c), 1, 0);
        assert_eq!(b.at(1, 0), Some(1));
        assert_eq!(b.at(0, 0), Some(2));
        assert_eq!(b.at(-1, 3), Some(3));
        assert_eq!(BrushPaint::None.at(5, 5), Some(0));
        assert_eq!(BrushPaint::Solid(0xff12_3456).at(0, 0), Some(0x12_3456));
    }
}
