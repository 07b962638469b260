//! ROP3 (ternary raster operations over pattern, source and destination, as
//! Windows' GDI numbers them) and the brush a ROP3, STROKE or TEXT paints
//! with, as spice-common's rop3.c and canvas_base.c apply them.

use super::qxl::QxlRect;
use super::qxl_canvas::{apply_rop, ropd, Area, Canvas};
use super::qxl_draw::{src_coord, Source};

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

/// An OPAQUE drawable: `src_area` of `src` copied onto the bbox (scaled
/// nearest when the sizes differ), then the brush drawn over it with the
/// descriptor `rop`, the brush as the rop's source (inverted by
/// INVERS_BRUSH) and the copied image as its destination (inverted by
/// INVERS_SRC), as canvas_draw_opaque does.
pub(super) struct OpaquePaint {
    pub src: Source,
    pub src_area: QxlRect,
    pub brush: BrushPaint,
    pub rop: u16,
}

pub(super) fn paint_opaque(canvas: &mut Canvas, a: Area, bbox: &QxlRect, o: &OpaquePaint) {
    let len = |lo: i32, hi: i32| i64::from(hi) - i64::from(lo);
    let (bw, bh) = (len(bbox.left, bbox.right), len(bbox.top, bbox.bottom));
    let (sw, sh) = (
        len(o.src_area.left, o.src_area.right),
        len(o.src_area.top, o.src_area.bottom),
    );
    canvas.paint(a, |x, y, old| {
        let sx = src_coord(x, bbox.left, bw, o.src_area.left, sw);
        let sy = src_coord(y, bbox.top, bh, o.src_area.top, sh);
        // Outside the source nothing is copied: the brush meets the old pixel.
        let img = o.src.get(sx, sy).map_or(old, |p| p & 0x00ff_ffff);
        // An empty pattern tile leaves the copied image.
        let Some(b) = o.brush.at(i64::from(x), i64::from(y)) else {
            return Some(img);
        };
        Some(apply_rop(
            o.rop,
            ropd::INVERS_BRUSH,
            ropd::INVERS_SRC,
            b,
            img,
        ))
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

    #[test]
    fn rop_descriptors_resolve_as_the_canvas_does() {
        use ropd::*;
        let (s, d) = (0x00f0_f00fu32, 0x00cc_33ccu32);
        let b = INVERS_BRUSH;
        let i = INVERS_SRC;
        assert_eq!(apply_rop(OP_PUT, b, i, s, d), s);
        assert_eq!(apply_rop(OP_PUT | INVERS_BRUSH, b, i, s, d), !s & 0xff_ffff);
        // INVERS_DEST is not an input of this drawable: ignored.
        assert_eq!(apply_rop(OP_OR | INVERS_DEST, b, i, s, d), s | d);
        assert_eq!(apply_rop(OP_AND | INVERS_SRC, b, i, s, d), s & !d);
        assert_eq!(
            apply_rop(OP_XOR | INVERS_RES, b, i, s, d),
            !(s ^ d) & 0xff_ffff
        );
        assert_eq!(
            apply_rop(OP_OR | INVERS_BRUSH | INVERS_SRC | INVERS_RES, b, i, s, d),
            s & d
        );
        // PUT wins over the other ops; INVERS_RES does not touch WHITENESS.
        assert_eq!(apply_rop(OP_PUT | OP_XOR, b, i, s, d), s);
        assert_eq!(apply_rop(OP_WHITENESS | INVERS_RES, b, i, s, d), 0xff_ffff);
        assert_eq!(apply_rop(OP_BLACKNESS, b, i, s, d), 0);
        assert_eq!(
            apply_rop(OP_INVERS | INVERS_SRC, b, i, s, d),
            !d & 0xff_ffff
        );
        assert_eq!(apply_rop(0, b, i, s, d), s);
        assert_eq!(apply_rop(INVERS_BRUSH, b, i, s, d), s);
    }

    #[test]
    fn opaque_copies_then_applies_the_brush() {
        let mut c = Canvas::new(4, 1).unwrap();
        let bbox = QxlRect {
            top: 0,
            left: 0,
            bottom: 1,
            right: 4,
        };
        let all = c.clip_rect(&bbox).unwrap();
        c.paint(all, |_, _, _| Some(0x0011_2233));
        let mut src = Canvas::new(3, 1).unwrap();
        let sa = src.clip_rect(&bbox).unwrap();
        src.paint(sa, |x, _, _| Some(0x0000_00f0 | x << 16));
        let mut tile = Canvas::new(2, 1).unwrap();
        let ta = tile.clip_rect(&bbox).unwrap();
        tile.paint(ta, |x, _, _| Some(if x == 0 { 0x0f } else { 0xff_0000 }));
        let mut o = OpaquePaint {
            src: Source::Canvas(src),
            src_area: QxlRect { right: 4, ..bbox },
            brush: BrushPaint::Pattern(Source::Canvas(tile), 1, 0),
            rop: ropd::OP_OR,
        };
        paint_opaque(&mut c, all, &bbox, &o);
        // x=3 lies outside the 3-wide source: the brush meets the old pixel.
        assert_eq!(
            c.row(0, 0, 4),
            &[0xff_00f0, 0x01_00ff, 0xff_00f0, 0x11_223f]
        );
        o.brush = BrushPaint::None;
        o.rop = ropd::OP_PUT;
        paint_opaque(&mut c, all, &bbox, &o);
        assert_eq!(c.row(0, 0, 4), &[0; 4]);
        o.brush = BrushPaint::Solid(0x00ff_00ff);
        o.rop = ropd::OP_AND | ropd::INVERS_SRC;
        c.paint(all, |_, _, _| Some(0));
        paint_opaque(&mut c, all, &bbox, &o);
        // Brush AND the inverted image (0x0?00f0 -> 0xf?ff0f).
        assert_eq!(c.row(0, 0, 4)[..3], [0xff_000f, 0xfe_000f, 0xfd_000f]);
    }
}
