//! COMPOSITE as spice-common's canvas draws it with pixman_image_composite32:
//! the Porter-Duff operators (CLEAR to SATURATE) on premultiplied ARGB with
//! pixman's 8-bit rounding, an optional mask (unified or component alpha),
//! the four repeat modes and affine transforms sampled nearest (a BILINEAR
//! filter is sampled nearest too: the one place this differs from pixman).
//! The blend-mode operators (MULTIPLY to HSL_LUMINOSITY) are in
//! [`super::qxl_blend_modes`] (pixman's 8-bit ones) and
//! [`super::qxl_blend_float`] (its float ones); the rest (DISJOINT,
//! CONJOINT) are refused.
//!
//! The destination is the surface as the canvas reads it for a composite:
//! xRGB with alpha 0xff.

use display_types::mul_un8;

use super::qxl::QxlRect;
use super::qxl_blend_float::{blend_float, is_float_mode};
use super::qxl_blend_modes::{blend, is_blend_mode};
use super::qxl_canvas::{Area, Canvas};
use super::qxl_draw::Source;
use super::qxl_parse_ops::Transform;

/// pixman_op_t values the canvas passes through (QXL_OP_*).
pub mod op {
    pub const CLEAR: u8 = 0x00;
    pub const SRC: u8 = 0x01;
    pub const DST: u8 = 0x02;
    pub const OVER: u8 = 0x03;
    pub const OVER_REVERSE: u8 = 0x04;
    pub const IN: u8 = 0x05;
    pub const IN_REVERSE: u8 = 0x06;
    pub const OUT: u8 = 0x07;
    pub const OUT_REVERSE: u8 = 0x08;
    pub const ATOP: u8 = 0x09;
    pub const ATOP_REVERSE: u8 = 0x0a;
    pub const XOR: u8 = 0x0b;
    pub const ADD: u8 = 0x0c;
    pub const SATURATE: u8 = 0x0d;
}

/// One operand: an image, its transform, repeat mode and origin.
pub(super) struct Operand {
    pub image: Source,
    pub transform: Option<Transform>,
    pub repeat: u8,
    pub origin: (i16, i16),
}

pub(super) struct CompositePaint {
    pub op: u8,
    pub src: Operand,
    pub mask: Option<Operand>,
    pub component_alpha: bool,
}

impl CompositePaint {
    /// Does this paint know the operator?
    pub(super) fn supported(op: u8) -> bool {
        op <= op::SATURATE || is_blend_mode(op) || is_float_mode(op)
    }
}

/// Coordinate `v` of an image `len` long under repeat mode `repeat`
/// (pixman: NONE, NORMAL, PAD, REFLECT); None is transparent.
fn repeat(v: i64, len: i64, repeat: u8) -> Option<i64> {
    if len <= 0 {
        return None;
    }
    match repeat {
        1 => Some(v.rem_euclid(len)),
        2 => Some(v.clamp(0, len - 1)),
        3 => {
            let m = v.rem_euclid(2 * len);
            Some(if m >= len { 2 * len - 1 - m } else { m })
        }
        _ => (0..len).contains(&v).then_some(v),
    }
}

impl Operand {
    /// Premultiplied ARGB the operand shows at composite pixel (i, j).
    fn at(&self, i: i64, j: i64) -> u32 {
        let (x, y) = (i + i64::from(self.origin.0), j + i64::from(self.origin.1));
        let (x, y) = match &self.transform {
            None => (x, y),
            Some(t) => {
                // Pixel centres in 16.16, transformed, sampled nearest as
                // pixman does (the centre minus one unit, floored).
                let (px, py) = ((x << 16) + 0x8000, (y << 16) + 0x8000);
                let t: Vec<i64> = t.iter().map(|v| i64::from(*v)).collect();
                let tx = ((i128::from(t[0]) * i128::from(px) + i128::from(t[1]) * i128::from(py))
                    >> 16) as i64
                    + t[2];
                let ty = ((i128::from(t[3]) * i128::from(px) + i128::from(t[4]) * i128::from(py))
                    >> 16) as i64
                    + t[5];
                ((tx - 1) >> 16, (ty - 1) >> 16)
            }
        };
        let (w, h) = self.image.size();
        let (Some(x), Some(y)) = (repeat(x, w, self.repeat), repeat(y, h, self.repeat)) else {
            return 0;
        };
        self.image.get(x, y).unwrap_or(0)
    }
}

/// The source's and destination's factors (Fa, Fb) of a Porter-Duff
/// operator for source alpha `sa` and destination alpha `da`.
fn factors(op: u8, sa: u32, da: u32) -> (u32, u32) {
    match op {
        op::CLEAR => (0, 0),
        op::SRC => (255, 0),
        op::DST => (0, 255),
        op::OVER => (255, 255 - sa),
        op::OVER_REVERSE => (255 - da, 255),
        op::IN => (da, 0),
        op::IN_REVERSE => (0, sa),
        op::OUT => (255 - da, 0),
        op::OUT_REVERSE => (0, 255 - sa),
        op::ATOP => (da, 255 - sa),
        op::ATOP_REVERSE => (255 - da, sa),
        op::XOR => (255 - da, 255 - sa),
        op::ADD => (255, 255),
        // SATURATE: the source scaled down to fit the room the destination
        // leaves (pixman's DIV_UN8).
        _ => {
            let room = 255 - da;
            let fa = if sa > room {
                (room * 255 + sa / 2) / sa
            } else {
                255
            };
            (fa, 255)
        }
    }
}

/// `s` (premultiplied ARGB) through mask `m` onto `d`.
fn combine(op: u8, s: u32, m: Option<u32>, component_alpha: bool, d: u32) -> u32 {
    if is_blend_mode(op) {
        return blend(op, s, m, component_alpha, d);
    }
    if is_float_mode(op) {
        return blend_float(op, s, m, component_alpha, d);
    }
    let ch = |v: u32, sh: u32| (v >> sh) & 0xff;
    let sa = ch(s, 24);
    let da = 0xff;
    let mut out = 0;
    for sh in [16, 8, 0, 24] {
        let mc = match m {
            None => 255,
            Some(m) if component_alpha && sh != 24 => ch(m, sh),
            Some(m) => ch(m, 24),
        };
        let sc = mul_un8(ch(s, sh), mc);
        let sac = mul_un8(sa, mc);
        let dc = if sh == 24 { da } else { ch(d, sh) };
        let (fa, fb) = factors(op, sac, da);
        let v = (mul_un8(sc, fa) + mul_un8(dc, fb)).min(255);
        out |= v << sh;
    }
    out & 0x00ff_ffff
}

pub(super) fn paint_composite(canvas: &mut Canvas, a: Area, bbox: &QxlRect, c: &CompositePaint) {
    canvas.paint(a, |x, y, old| {
        let i = i64::from(x) - i64::from(bbox.left);
        let j = i64::from(y) - i64::from(bbox.top);
        let s = c.src.at(i, j);
        let m = c.mask.as_ref().map(|m| m.at(i, j));
        Some(combine(c.op, s, m, c.component_alpha, old))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::qxl_parse::{bitmap_fmt, Bitmap};

    fn argb(w: u32, h: u32, px: &[u32]) -> Source {
        Source::Bitmap(Bitmap {
            format: bitmap_fmt::RGBA,
            width: w,
            height: h,
            stride: w as usize * 4,
            palette: Vec::new(),
            data: px.iter().flat_map(|p| p.to_le_bytes()).collect(),
        })
    }

    #[test]
    fn porter_duff_with_pixman_rounding() {
        let d = 0x00_40_80_c0;
        // Half-transparent premultiplied red.
        let s = 0x80_80_00_00;
        assert_eq!(combine(op::OVER, s, None, false, d), 0xa0_40_60);
        assert_eq!(combine(op::SRC, s, None, false, d), 0x80_00_00);
        assert_eq!(combine(op::CLEAR, s, None, false, d), 0);
        assert_eq!(combine(op::DST, s, None, false, d), d);
        // The destination is opaque: IN keeps the source, OUT drops it.
        assert_eq!(combine(op::IN, s, None, false, d), 0x80_00_00);
        assert_eq!(combine(op::OUT, s, None, false, d), 0);
        assert_eq!(combine(op::ATOP, s, None, false, d), 0xa0_40_60);
        assert_eq!(combine(op::ADD, s, None, false, d), 0xc0_80_c0);
        assert_eq!(combine(op::OVER_REVERSE, s, None, false, d), d);
        assert_eq!(combine(op::SATURATE, s, None, false, d), d);
        // A mask of alpha 0x80 halves the source first.
        let half = combine(op::OVER, 0xff_ff_00_00, Some(0x80_00_00_00), false, 0);
        assert_eq!(half, 0x80_00_00);
        // Component alpha: each channel its own mask.
        let ca = combine(op::OVER, 0xff_ff_ff_ff, Some(0xff_ff_00_80), true, 0);
        assert_eq!(ca, 0xff_00_80);
    }

    #[test]
    fn repeats_and_transforms_sample_like_pixman() {
        assert_eq!(repeat(5, 4, 0), None);
        assert_eq!(repeat(5, 4, 1), Some(1));
        assert_eq!(repeat(-1, 4, 1), Some(3));
        assert_eq!(repeat(9, 4, 2), Some(3));
        assert_eq!(repeat(-3, 4, 2), Some(0));
        assert_eq!(repeat(4, 4, 3), Some(3));
        assert_eq!(repeat(-1, 4, 3), Some(0));
        assert_eq!(repeat(0, 0, 1), None);
        let img = argb(2, 1, &[0xff00_0001, 0xff00_0002]);
        let mut o = Operand {
            image: img,
            transform: None,
            repeat: 1,
            origin: (1, 0),
        };
        assert_eq!(o.at(0, 0), 0xff00_0002);
        // Scale by 2 (each source pixel covers two destination pixels).
        o.transform = Some([0x8000, 0, 0, 0, 0x8000, 0]);
        o.origin = (0, 0);
        let v: Vec<u32> = (0..4).map(|i| o.at(i, 0) & 0xff).collect();
        assert_eq!(v, vec![1, 1, 2, 2]);
        // Hostile transforms cannot overflow or index outside.
        o.transform = Some([i32::MAX, i32::MIN, i32::MAX, i32::MIN, i32::MAX, i32::MIN]);
        o.repeat = 0;
        let _ = o.at(i64::from(i32::MAX), i64::from(i32::MIN));
    }

    #[test]
    fn composite_paints_relative_to_the_bbox() {
        let mut c = Canvas::new(4, 1).unwrap();
        let p = CompositePaint {
            op: op::SRC,
            src: Operand {
                image: argb(2, 1, &[0xff00_00aa, 0xff00_00bb]),
                transform: None,
                repeat: 0,
                origin: (0, 0),
            },
            mask: None,
            component_alpha: false,
        };
        let bbox = QxlRect {
            top: 0,
            left: 1,
            bottom: 1,
            right: 4,
        };
        let a = c.clip_rect(&bbox).unwrap();
        paint_composite(&mut c, a, &bbox, &p);
        // Outside the source (repeat NONE) SRC writes transparent black.
        assert_eq!(c.row(0, 0, 4), &[0, 0xaa, 0xbb, 0]);
    }
}
