//! Drawing a parsed drawable on a surface's canvas: where each destination
//! pixel's source is (the source area scaled onto the bbox, 1:1 when the
//! sizes agree), and how it combines (ROP descriptors, transparent colour,
//! alpha), as spice-server's software canvas does for the operations here.

use std::sync::Arc;

use display_types::{alpha_over, BlendMode, Frame};

use super::qxl::QxlRect;
use super::qxl_canvas::{apply_rop, Area, Canvas};
use super::qxl_parse::Bitmap;

/// A drawable's source pixels.
pub(super) enum Source {
    Bitmap(Bitmap),
    Canvas(Canvas),
}

impl Source {
    /// 0xAARRGGBB at (x, y) of the source, None outside.
    pub(super) fn get(&self, x: i64, y: i64) -> Option<u32> {
        let (x, y) = (u32::try_from(x).ok()?, u32::try_from(y).ok()?);
        match self {
            Source::Bitmap(b) => b.pixel(x, y),
            Source::Canvas(c) => c.pixel(x, y).map(|p| p | 0xff00_0000),
        }
    }

    pub(super) fn size(&self) -> (i64, i64) {
        match self {
            Source::Bitmap(b) => (i64::from(b.width), i64::from(b.height)),
            Source::Canvas(c) => (i64::from(c.width()), i64::from(c.height())),
        }
    }
}

pub(super) enum Paint {
    Copy(Source, QxlRect, u16, Option<u32>),
    Alpha(Source, QxlRect, u8, bool),
    Solid(u32, u16),
    Pattern(Source, i32, i32, u16),
    Invert,
    CopyBits(i32, i32),
}

/// Where the source pixel for destination (x, y) is: `src_area` is scaled
/// onto `bbox` (nearest neighbour; 1:1 when the sizes agree).
fn src_coord(v: u32, dst0: i32, dst_len: i64, src0: i32, src_len: i64) -> i64 {
    let d = i64::from(v) - i64::from(dst0);
    if dst_len == src_len || dst_len <= 0 {
        i64::from(src0) + d
    } else {
        i64::from(src0) + d * src_len / dst_len
    }
}

pub(super) fn paint(canvas: &mut Canvas, a: Area, bbox: &QxlRect, op: &Paint) {
    let bw = i64::from(bbox.right) - i64::from(bbox.left);
    let bh = i64::from(bbox.bottom) - i64::from(bbox.top);
    let area_len = |r: &QxlRect| {
        (
            i64::from(r.right) - i64::from(r.left),
            i64::from(r.bottom) - i64::from(r.top),
        )
    };
    match op {
        Paint::Copy(src, sa, rop, transparent) => {
            let (sw, sh) = area_len(sa);
            canvas.paint(a, |x, y, old| {
                let sx = src_coord(x, bbox.left, bw, sa.left, sw);
                let sy = src_coord(y, bbox.top, bh, sa.top, sh);
                let p = src.get(sx, sy)? & 0x00ff_ffff;
                if *transparent == Some(p) {
                    return None;
                }
                Some(apply_rop(*rop, p, old))
            });
        }
        Paint::Alpha(src, sa, alpha, has_alpha) => {
            let (sw, sh) = area_len(sa);
            canvas.paint(a, |x, y, old| {
                let sx = src_coord(x, bbox.left, bw, sa.left, sw);
                let sy = src_coord(y, bbox.top, bh, sa.top, sh);
                // A source with alpha is premultiplied (as pixman takes it in
                // the clients' canvases); one without is opaque.
                let p = src.get(sx, sy)?;
                let p = if *has_alpha { p } else { p | 0xff00_0000 };
                Some(alpha_over(p, old, *alpha))
            });
        }
        Paint::Solid(color, rop) => canvas.paint(a, |_, _, old| Some(apply_rop(*rop, *color, old))),
        Paint::Pattern(src, px, py, rop) => {
            let (pw, ph) = src.size();
            if pw == 0 || ph == 0 {
                return;
            }
            canvas.paint(a, |x, y, old| {
                let sx = (i64::from(x) - i64::from(*px)).rem_euclid(pw);
                let sy = (i64::from(y) - i64::from(*py)).rem_euclid(ph);
                let p = src.get(sx, sy)? & 0x00ff_ffff;
                Some(apply_rop(*rop, p, old))
            });
        }
        Paint::Invert => canvas.paint(a, |_, _, old| Some(!old)),
        Paint::CopyBits(sx, sy) => {
            // The bbox's top-left comes from (sx, sy); this area is offset alike.
            let src_x = i64::from(*sx) + i64::from(a.left) - i64::from(bbox.left);
            let src_y = i64::from(*sy) + i64::from(a.top) - i64::from(bbox.top);
            canvas.copy_within(a, src_x, src_y);
        }
    }
}

/// A draw of the primary the frontend can forward as it is.
pub(super) enum Forward {
    Fill(u32),
    /// The bitmap, and where in it the bbox's top-left pixel comes from.
    Copy(Arc<Frame>, u32, u32),
    /// A bitmap blended 1:1 (TRANSPARENT, or ALPHA_BLEND of an image with no
    /// alpha channel), like `Copy`.
    Blend(Arc<Frame>, u32, u32, BlendMode),
    /// A COPY_BITS drawn in one area (no clip, or one clip rectangle): the
    /// canvas forwards it when the frontend's source pixels can be current.
    CopyBits(i32, i32),
}

/// Where a copy of `src_area` of `b` onto `bbox` starts in the bitmap, if
/// the copy is 1:1, its bbox starts inside the surface (so areas cut from it
/// map into the source by their offset) and the source lies in the bitmap.
/// Anything else (scaling, sources hanging outside) is drawn as pixels.
pub(super) fn forwardable_copy(b: &Bitmap, sa: &QxlRect, bbox: &QxlRect) -> Option<(u32, u32)> {
    let w = i64::from(sa.right) - i64::from(sa.left);
    let h = i64::from(sa.bottom) - i64::from(sa.top);
    let same_size = w == i64::from(bbox.right) - i64::from(bbox.left)
        && h == i64::from(bbox.bottom) - i64::from(bbox.top);
    let inside = sa.left >= 0
        && sa.top >= 0
        && bbox.left >= 0
        && bbox.top >= 0
        && i64::from(sa.right) <= i64::from(b.width)
        && i64::from(sa.bottom) <= i64::from(b.height);
    (same_size && w > 0 && h > 0 && inside).then_some((sa.left as u32, sa.top as u32))
}

/// The bitmap's pixels as a picture (0x00RRGGBB, top-down).
pub(super) fn bitmap_frame(b: &Bitmap) -> Arc<Frame> {
    let mut pixels = Vec::with_capacity(b.width as usize * b.height as usize);
    for y in 0..b.height {
        pixels.extend((0..b.width).map(|x| b.pixel(x, y).unwrap_or(0) & 0x00ff_ffff));
    }
    Arc::new(Frame {
        width: b.width,
        height: b.height,
        pixels,
    })
}
