//! Drawing a parsed drawable on a surface's canvas: where each destination
//! pixel's source is (the source area scaled onto the bbox, 1:1 when the
//! sizes agree), and how it combines (ROP descriptors, transparent colour,
//! alpha), as spice-server's software canvas does for the operations here.

use std::sync::Arc;

use display_types::{alpha_over, BlendMode, Frame};

use super::qxl::QxlRect;
use super::qxl_canvas::{apply_rop, ropd, Area, Canvas};
use tracing::debug;

use super::qxl_composite::{paint_composite, CompositePaint, Operand};
use super::qxl_parse::{bitmap_fmt, Bitmap, Brush, DrawOp, Image};
use super::qxl_parse_ops::{QMask, LINE_FLAGS_STYLED};
use super::qxl_rop3::{paint_opaque, paint_rop3, BrushPaint, OpaquePaint, Rop3Paint};
use super::qxl_stroke::{flatten, paint_stroke, StrokePaint};
use super::qxl_text::{paint_text, TextPaint};

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
    Rop3(Box<Rop3Paint>),
    Opaque(Box<OpaquePaint>),
    Stroke(Box<StrokePaint>),
    Text(Box<TextPaint>),
    Composite(Box<CompositePaint>),
}

/// Where the source pixel for destination (x, y) is: `src_area` is scaled
/// onto `bbox` (nearest neighbour; 1:1 when the sizes agree).
pub(super) fn src_coord(v: u32, dst0: i32, dst_len: i64, src0: i32, src_len: i64) -> i64 {
    let d = i64::from(v) - i64::from(dst0);
    if dst_len == src_len || dst_len <= 0 {
        i64::from(src0) + d
    } else {
        i64::from(src0) + d * src_len / dst_len
    }
}

/// Draw `op` on area `a` of the canvas; with a QMask, only the pixels the
/// mask lets through change (the rest are put back afterwards, which keeps
/// every operation's own drawing code mask-free).
pub(super) fn paint(
    canvas: &mut Canvas,
    a: Area,
    bbox: &QxlRect,
    op: &Paint,
    mask: Option<&QMask>,
) {
    let Some(mask) = mask else {
        paint_unmasked(canvas, a, bbox, op);
        return;
    };
    let w = a.right - a.left;
    let mut saved = Vec::with_capacity(w as usize * (a.bottom - a.top) as usize);
    for y in a.top..a.bottom {
        saved.extend_from_slice(canvas.row(y, a.left, w));
    }
    paint_unmasked(canvas, a, bbox, op);
    canvas.paint(a, |x, y, _| {
        if mask.allows(x, y, bbox.left, bbox.top) {
            return None;
        }
        saved
            .get(((y - a.top) * w + (x - a.left)) as usize)
            .copied()
    });
}

fn paint_unmasked(canvas: &mut Canvas, a: Area, bbox: &QxlRect, op: &Paint) {
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
                Some(apply_rop(*rop, ropd::INVERS_SRC, ropd::INVERS_DEST, p, old))
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
        Paint::Solid(color, rop) => canvas.paint(a, |_, _, old| {
            Some(apply_rop(
                *rop,
                ropd::INVERS_BRUSH,
                ropd::INVERS_DEST,
                *color,
                old,
            ))
        }),
        Paint::Pattern(src, px, py, rop) => {
            let (pw, ph) = src.size();
            if pw == 0 || ph == 0 {
                return;
            }
            canvas.paint(a, |x, y, old| {
                let sx = (i64::from(x) - i64::from(*px)).rem_euclid(pw);
                let sy = (i64::from(y) - i64::from(*py)).rem_euclid(ph);
                let p = src.get(sx, sy)? & 0x00ff_ffff;
                Some(apply_rop(
                    *rop,
                    ropd::INVERS_BRUSH,
                    ropd::INVERS_DEST,
                    p,
                    old,
                ))
            });
        }
        Paint::Invert => canvas.paint(a, |_, _, old| Some(!old)),
        Paint::CopyBits(sx, sy) => {
            // The bbox's top-left comes from (sx, sy); this area is offset alike.
            let src_x = i64::from(*sx) + i64::from(a.left) - i64::from(bbox.left);
            let src_y = i64::from(*sy) + i64::from(a.top) - i64::from(bbox.top);
            canvas.copy_within(a, src_x, src_y);
        }
        Paint::Rop3(r) => paint_rop3(canvas, a, bbox, r),
        Paint::Opaque(o) => paint_opaque(canvas, a, bbox, o),
        Paint::Stroke(s) => paint_stroke(canvas, a, s),
        Paint::Text(t) => paint_text(canvas, a, t),
        Paint::Composite(c) => paint_composite(canvas, a, bbox, c),
    }
}

/// A draw of the primary the frontend can forward as it is.
pub(super) enum Forward {
    Fill(u32),
    /// The bitmap, and where in it the bbox's top-left pixel comes from.
    Copy(Arc<Frame>, u32, u32),
    /// A bitmap blended 1:1 (TRANSPARENT or ALPHA_BLEND), like `Copy`.
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

/// The RGBA bitmap of a COMPOSITE the clients draw as spicebox's canvas
/// does, and where in it the bbox's top-left pixel comes from: OVER, no
/// mask, no transform, no repeat, and the source, shifted by its origin,
/// covering the bbox (what it does not cover would be transparent, a case
/// left to images).
pub(super) fn forwardable_over<'a>(
    c: &'a CompositePaint,
    bbox: &QxlRect,
) -> Option<(&'a Bitmap, u32, u32)> {
    let simple = c.op == super::qxl_composite::op::OVER
        && c.mask.is_none()
        && c.src.transform.is_none()
        && c.src.repeat == 0;
    let Source::Bitmap(b) = &c.src.image else {
        return None;
    };
    if !simple || b.format != bitmap_fmt::RGBA {
        return None;
    }
    let (ox, oy) = (i32::from(c.src.origin.0), i32::from(c.src.origin.1));
    let sa = QxlRect {
        left: ox,
        top: oy,
        right: ox.checked_add(bbox.right.checked_sub(bbox.left)?)?,
        bottom: oy.checked_add(bbox.bottom.checked_sub(bbox.top)?)?,
    };
    forwardable_copy(b, &sa, bbox).map(|(x, y)| (b, x, y))
}

/// The bitmap's pixels as a picture (0x00RRGGBB, top-down).
pub(super) fn bitmap_frame(b: &Bitmap) -> Arc<Frame> {
    frame_of(b, 0x00ff_ffff)
}

/// The bitmap's pixels with their alpha (0xAARRGGBB, premultiplied as the
/// guest gave them; 0xff for formats without alpha).
pub(super) fn bitmap_frame_alpha(b: &Bitmap) -> Arc<Frame> {
    frame_of(b, 0xffff_ffff)
}

fn frame_of(b: &Bitmap, mask: u32) -> Arc<Frame> {
    let mut pixels = Vec::with_capacity(b.width as usize * b.height as usize);
    // 32-bit rows convert whole (a video frame is 49k pixels a time);
    // others, and a row the data does not hold, pixel by pixel.
    let opaque = match b.format {
        bitmap_fmt::THIRTY_TWO_BIT => Some(0xff00_0000),
        bitmap_fmt::RGBA => Some(0),
        _ => None,
    };
    let row_bytes = b.width as usize * 4;
    for y in 0..b.height {
        let start = y as usize * b.stride;
        match (opaque, b.data.get(start..start + row_bytes)) {
            (Some(alpha), Some(row)) => pixels.extend(
                row.chunks_exact(4)
                    .map(|p| (u32::from_le_bytes([p[0], p[1], p[2], p[3]]) | alpha) & mask),
            ),
            _ => pixels.extend((0..b.width).map(|x| b.pixel(x, y).unwrap_or(0) & mask)),
        }
    }
    Arc::new(Frame {
        width: b.width,
        height: b.height,
        pixels,
    })
}

/// What drawing `op` takes, its images resolved by `source` (None: nothing
/// to draw, or an image that is missing).
pub(super) fn paint_for(op: &DrawOp, source: &dyn Fn(&Image) -> Option<Source>) -> Option<Paint> {
    let brush = |b: &Brush| -> Option<BrushPaint> {
        Some(match b {
            Brush::None => BrushPaint::None,
            Brush::Solid(c) => BrushPaint::Solid(*c),
            Brush::Pattern { image, x, y } => BrushPaint::Pattern(source(image)?, *x, *y),
        })
    };
    Some(match op {
        DrawOp::Copy { src, src_area, rop } => Paint::Copy(source(src)?, *src_area, *rop, None),
        DrawOp::Opaque {
            src,
            src_area,
            brush: b,
            rop,
        } => Paint::Opaque(Box::new(OpaquePaint {
            src: source(src)?,
            src_area: *src_area,
            brush: brush(b)?,
            rop: *rop,
        })),
        DrawOp::Transparent {
            src,
            src_area,
            src_color,
        } => Paint::Copy(source(src)?, *src_area, 0, Some(*src_color)),
        DrawOp::AlphaBlend {
            src,
            src_area,
            alpha,
            src_has_alpha,
        } => Paint::Alpha(source(src)?, *src_area, *alpha, *src_has_alpha),
        DrawOp::Fill { brush, rop } => match brush {
            Brush::None => return None,
            Brush::Solid(c) => Paint::Solid(*c, *rop),
            Brush::Pattern { image, x, y } => Paint::Pattern(source(image)?, *x, *y, *rop),
        },
        DrawOp::Blackness => Paint::Solid(0, 0),
        DrawOp::Whiteness => Paint::Solid(0xff_ffff, 0),
        DrawOp::Invers => Paint::Invert,
        DrawOp::CopyBits { src_x, src_y } => Paint::CopyBits(*src_x, *src_y),
        DrawOp::Nop => return None,
        DrawOp::Rop3(r) => Paint::Rop3(Box::new(Rop3Paint {
            src: source(&r.src)?,
            src_area: r.src_area,
            brush: brush(&r.brush)?,
            code: r.rop3,
        })),
        DrawOp::Stroke(s) => Paint::Stroke(Box::new(StrokePaint {
            lines: flatten(&s.path),
            dashes: if s.attr.flags & LINE_FLAGS_STYLED != 0 {
                StrokePaint::dashes(s.attr.flags, &s.attr.style)
            } else {
                None
            },
            brush: brush(&s.brush)?,
            rop: s.fore_mode,
        })),
        DrawOp::Text(t) => Paint::Text(Box::new(TextPaint {
            string: t.string.clone(),
            back_area: t.back_area,
            fore: brush(&t.fore_brush)?,
            back: brush(&t.back_brush)?,
            fore_mode: t.fore_mode,
        })),
        DrawOp::Composite(c) => {
            if !CompositePaint::supported(c.op()) {
                debug!("qxl: composite operator {:#x} not rendered", c.op());
                return None;
            }
            let operand = |img: &Image, transform, repeat, origin| -> Option<Operand> {
                Some(Operand {
                    image: source(img)?,
                    transform,
                    repeat,
                    origin,
                })
            };
            let mask = match &c.mask {
                Some(m) => Some(operand(
                    m,
                    c.mask_transform,
                    c.mask_repeat(),
                    c.mask_origin,
                )?),
                None => None,
            };
            Paint::Composite(Box::new(CompositePaint {
                op: c.op(),
                src: operand(&c.src, c.src_transform, c.src_repeat(), c.src_origin)?,
                mask,
                component_alpha: c.component_alpha(),
            }))
        }
    })
}

/// Draw `d` on `canvas` alone (no other surfaces: a surface source reads
/// this canvas as it was before): what the fuzz targets render with.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn draw_drawable(canvas: &mut Canvas, d: &super::qxl_parse::Drawable) {
    let before = canvas.clone();
    let source = |img: &Image| -> Option<Source> {
        match img {
            Image::Bitmap(b) => Some(Source::Bitmap(b.clone())),
            Image::Surface(_) => Some(Source::Canvas(before.clone())),
        }
    };
    let Some(op) = paint_for(&d.op, &source) else {
        return;
    };
    for a in canvas.areas(&d.bbox, d.clip.as_deref()) {
        paint(canvas, a, &d.bbox, &op, d.mask.as_ref());
    }
}
