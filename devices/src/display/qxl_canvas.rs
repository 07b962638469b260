//! The software canvas a QXL surface is drawn on: xRGB pixels on the host,
//! with QXL's drawing rules (bbox, clip rectangles, ROP descriptors) and the
//! changed region kept for the display model. Every coordinate comes from the
//! guest, so everything is clipped to the canvas first, in i64, and nothing
//! indexes outside `pixels`.

use super::qxl::QxlRect;
use std::sync::Arc;

use display_types::{BitsCopy, BlendMode, Draw, Frame, ImageBlend, ImageCopy, Rect, SolidFill};

/// `SPICE_ROPD_*` bits of a ROP descriptor.
pub mod ropd {
    pub const INVERS_SRC: u16 = 1 << 0;
    pub const INVERS_BRUSH: u16 = 1 << 1;
    pub const INVERS_DEST: u16 = 1 << 2;
    pub const OP_PUT: u16 = 1 << 3;
    pub const OP_OR: u16 = 1 << 4;
    pub const OP_AND: u16 = 1 << 5;
    pub const OP_XOR: u16 = 1 << 6;
    pub const OP_BLACKNESS: u16 = 1 << 7;
    pub const OP_WHITENESS: u16 = 1 << 8;
    pub const OP_INVERS: u16 = 1 << 9;
    pub const INVERS_RES: u16 = 1 << 10;
}

/// Largest surface side (QEMU's modes stop at 8192; spice-server at 16384).
pub const MAX_SIDE: u32 = 16384;
/// Dirty rectangles kept before they are merged into their bounding box.
const MAX_DIRTY: usize = 64;
/// Forwardable draws kept between two refreshes; past this they are sent as
/// images instead (a guest drawing faster than the display is looked at).
const MAX_DRAWS: usize = 256;

const RGB: u32 = 0x00ff_ffff;

/// `s` combined with `d` (colours 0x00RRGGBB) by ROP descriptor `desc` as
/// spice-common's canvas resolves a descriptor to one rop: `s_bit` and
/// `d_bit` are the descriptor's INVERS_* bits that invert this drawable's rop
/// source and destination (INVERS_SRC for a copied image, INVERS_BRUSH for a
/// brush; the others are ignored), PUT wins over OR, AND, XOR, which win over
/// BLACKNESS, WHITENESS and INVERS (these three ignore INVERS_RES), and a
/// descriptor with no op (drivers send 0 for PUT too) copies `s` uninverted.
pub fn apply_rop(desc: u16, s_bit: u16, d_bit: u16, s: u32, d: u32) -> u32 {
    let si = if desc & s_bit != 0 { !s } else { s };
    let di = if desc & d_bit != 0 { !d } else { d };
    let res = |r: u32| {
        if desc & ropd::INVERS_RES != 0 {
            !r
        } else {
            r
        }
    };
    let r = if desc & ropd::OP_PUT != 0 {
        res(si)
    } else if desc & ropd::OP_OR != 0 {
        res(si | di)
    } else if desc & ropd::OP_AND != 0 {
        res(si & di)
    } else if desc & ropd::OP_XOR != 0 {
        res(si ^ di)
    } else if desc & ropd::OP_BLACKNESS != 0 {
        0
    } else if desc & ropd::OP_WHITENESS != 0 {
        RGB
    } else if desc & ropd::OP_INVERS != 0 {
        !d
    } else {
        s
    };
    r & RGB
}

/// A drawing region in canvas pixels (half-open, clipped, non-empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

impl Area {
    fn width(&self) -> u32 {
        self.right - self.left
    }
    fn height(&self) -> u32 {
        self.bottom - self.top
    }
    fn rect(&self) -> Rect {
        Rect::new(self.left, self.top, self.width(), self.height())
    }
}

/// A surface's pixels.
#[derive(Clone, Debug, Default)]
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u32>,
    dirty: Vec<Rect>,
    /// Solid fills and image copies since the last `take_draws`, in drawing
    /// order: a frontend forwards these as draws, so they are not in `dirty`.
    draws: Vec<Draw>,
}

impl Canvas {
    /// A black canvas; None if a side is 0 or too large.
    pub fn new(width: u32, height: u32) -> Option<Self> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return None;
        }
        Some(Self {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
            dirty: Vec::new(),
            draws: Vec::new(),
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Pixel at (x, y), None outside.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.pixels
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }

    /// Row `y` from column `x`, `len` pixels (clipped).
    pub fn row(&self, y: u32, x: u32, len: u32) -> &[u32] {
        if y >= self.height || x >= self.width {
            return &[];
        }
        let start = y as usize * self.width as usize + x as usize;
        let end = start + (len.min(self.width - x)) as usize;
        self.pixels.get(start..end).unwrap_or(&[])
    }

    /// The regions changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<Rect> {
        std::mem::take(&mut self.dirty)
    }

    /// The draws painted by `fill_solid` and `copy_image` since the last
    /// call, oldest first. A frontend that sends these and then images of
    /// `take_dirty`'s regions (drawn from the newest pixels) ends with the
    /// canvas's picture.
    pub fn take_draws(&mut self) -> Vec<Draw> {
        std::mem::take(&mut self.draws)
    }

    /// Overpaint `a` with `color` (0x00RRGGBB) and report it as a draw, not
    /// as a dirty region.
    pub fn fill_solid(&mut self, a: Area, color: u32) {
        let color = color & RGB;
        self.paint_unmarked(a, |_, _, _| Some(color));
        self.push_draw(Draw::Fill(SolidFill {
            rect: a.rect(),
            color,
        }));
    }

    /// Overpaint `a` with `image`'s pixels from (`src_x`, `src_y`), 1:1, and
    /// report it as a draw. The caller keeps the source inside the image.
    pub fn copy_image(&mut self, a: Area, image: &Arc<Frame>, src_x: u32, src_y: u32) {
        // Row by row: the part of each row that is on the canvas and in the
        // image (a video frame is 49k pixels a time).
        let (w, iw) = (self.width as usize, image.width as usize);
        let n = (a.right.min(self.width).saturating_sub(a.left) as usize)
            .min(iw.saturating_sub(src_x as usize));
        for y in a.top..a.bottom.min(self.height) {
            let sy = src_y as usize + (y - a.top) as usize;
            if sy >= image.height as usize {
                break;
            }
            let (s0, d0) = (sy * iw + src_x as usize, y as usize * w + a.left as usize);
            let (Some(src), Some(dst)) = (
                image.pixels.get(s0..s0 + n),
                self.pixels.get_mut(d0..d0 + n),
            ) else {
                break;
            };
            for (d, s) in dst.iter_mut().zip(src) {
                *d = s & RGB;
            }
        }
        self.push_draw(Draw::Copy(ImageCopy {
            rect: a.rect(),
            src_x,
            src_y,
            image: image.clone(),
        }));
    }

    /// Blend `image`'s pixels from (`src_x`, `src_y`) over `a`, 1:1, as
    /// `mode` says, and report it as a draw. The caller keeps the source
    /// inside the image.
    pub fn blend_image(
        &mut self,
        a: Area,
        image: &Arc<Frame>,
        src_x: u32,
        src_y: u32,
        mode: BlendMode,
    ) {
        self.paint_unmarked(a, |x, y, old| {
            let (sx, sy) = (src_x + (x - a.left), src_y + (y - a.top));
            (sx < image.width && sy < image.height)
                .then(|| mode.apply(image.pixel(sx, sy), old & RGB))
        });
        self.push_draw(Draw::Blend(ImageBlend {
            copy: ImageCopy {
                rect: a.rect(),
                src_x,
                src_y,
                image: image.clone(),
            },
            mode,
        }));
    }

    /// COPY_BITS of the canvas area at (`src_x`, `src_y`) onto `a`, reported
    /// as a draw when a frontend that replays the draws in order, before the
    /// dirty regions, reads a current source: the source lies in the canvas
    /// and no dirty region (pixels the frontend gets only after every draw)
    /// touches it. Otherwise `a` is drawn and marked dirty.
    pub fn copy_bits(&mut self, a: Area, src_x: i64, src_y: i64) {
        let source = u32::try_from(src_x)
            .ok()
            .zip(u32::try_from(src_y).ok())
            .map(|(x, y)| Rect::new(x, y, a.width(), a.height()))
            .filter(|s| {
                s.right() <= u64::from(self.width)
                    && s.bottom() <= u64::from(self.height)
                    && !self.dirty.iter().any(|d| d.intersects(s))
            });
        let Some(source) = source else {
            self.copy_within(a, src_x, src_y);
            return;
        };
        let copy = BitsCopy {
            rect: a.rect(),
            src_x: source.x,
            src_y: source.y,
        };
        let mut frame = Frame {
            width: self.width,
            height: self.height,
            pixels: std::mem::take(&mut self.pixels),
        };
        Draw::CopyBits(copy).paint(&mut frame);
        self.pixels = frame.pixels;
        self.push_draw(Draw::CopyBits(copy));
    }

    /// Too many draws between two refreshes turn into dirty regions, which
    /// the frontend sends as images.
    fn push_draw(&mut self, d: Draw) {
        self.draws.push(d);
        if self.draws.len() > MAX_DRAWS {
            for d in std::mem::take(&mut self.draws) {
                self.mark_rect(*d.rect());
            }
        }
    }

    fn mark(&mut self, a: Area) {
        self.mark_rect(a.rect());
    }

    fn mark_rect(&mut self, r: Rect) {
        if self.dirty.iter().any(|d| d.contains(&r)) {
            return;
        }
        self.dirty.push(r);
        if self.dirty.len() > MAX_DIRTY {
            let all = self
                .dirty
                .iter()
                .skip(1)
                .fold(self.dirty[0], |acc, d| acc.bounding(d));
            self.dirty = vec![all];
        }
    }

    /// `r` (guest coordinates) within the canvas.
    pub fn clip_rect(&self, r: &QxlRect) -> Option<Area> {
        let c = |v: i32, max: u32| i64::from(v).clamp(0, i64::from(max)) as u32;
        let a = Area {
            left: c(r.left, self.width),
            top: c(r.top, self.height),
            right: c(r.right, self.width),
            bottom: c(r.bottom, self.height),
        };
        (a.left < a.right && a.top < a.bottom).then_some(a)
    }

    /// The areas a drawable touches: its bbox, cut by each clip rectangle.
    pub fn areas(&self, bbox: &QxlRect, clip: Option<&[QxlRect]>) -> Vec<Area> {
        let Some(b) = self.clip_rect(bbox) else {
            return Vec::new();
        };
        match clip {
            None => vec![b],
            Some(rects) => rects
                .iter()
                .filter_map(|r| {
                    let c = self.clip_rect(r)?;
                    let a = Area {
                        left: c.left.max(b.left),
                        top: c.top.max(b.top),
                        right: c.right.min(b.right),
                        bottom: c.bottom.min(b.bottom),
                    };
                    (a.left < a.right && a.top < a.bottom).then_some(a)
                })
                .collect(),
        }
    }

    /// Set each pixel of `a` to `f(x, y, old)`; None leaves it.
    pub fn paint(&mut self, a: Area, f: impl FnMut(u32, u32, u32) -> Option<u32>) {
        self.paint_unmarked(a, f);
        self.mark(a);
    }

    /// Set pixel (x, y) to `f(old)` (None leaves it) without marking it
    /// changed: a caller touching scattered pixels of an area (a line, a
    /// glyph) marks the area once with [`Canvas::mark_area`].
    pub fn update(&mut self, x: u32, y: u32, f: impl FnOnce(u32) -> Option<u32>) {
        if x >= self.width || y >= self.height {
            return;
        }
        let i = y as usize * self.width as usize + x as usize;
        if let Some(p) = self.pixels.get_mut(i) {
            if let Some(v) = f(*p) {
                *p = v & RGB;
            }
        }
    }

    /// Report `a` as changed.
    pub fn mark_area(&mut self, a: Area) {
        self.mark(a);
    }

    fn paint_unmarked(&mut self, a: Area, mut f: impl FnMut(u32, u32, u32) -> Option<u32>) {
        let w = self.width as usize;
        for y in a.top..a.bottom.min(self.height) {
            let start = y as usize * w;
            let Some(row) = self.pixels.get_mut(start..start + w) else {
                return;
            };
            for x in a.left..a.right.min(self.width) {
                let p = &mut row[x as usize];
                if let Some(v) = f(x, y, *p) {
                    *p = v & RGB;
                }
            }
        }
    }

    /// Copy the canvas region `src` (top-left) to `dst` (what COPY_BITS does);
    /// overlapping regions move as a whole.
    pub fn copy_within(&mut self, dst: Area, src_x: i64, src_y: i64) {
        let (w, h) = (dst.width(), dst.height());
        let mut tmp = Vec::with_capacity(w as usize * h as usize);
        for dy in 0..h {
            for dx in 0..w {
                let (sx, sy) = (src_x + i64::from(dx), src_y + i64::from(dy));
                let p = u32::try_from(sx)
                    .ok()
                    .zip(u32::try_from(sy).ok())
                    .and_then(|(x, y)| self.pixel(x, y));
                tmp.push(p);
            }
        }
        self.paint(dst, |x, y, _| {
            tmp.get(((y - dst.top) * w + (x - dst.left)) as usize)
                .copied()
                .flatten()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(left: i32, top: i32, right: i32, bottom: i32) -> QxlRect {
        QxlRect {
            top,
            left,
            bottom,
            right,
        }
    }

    #[test]
    fn clipping_and_painting() {
        let mut c = Canvas::new(8, 4).unwrap();
        assert!(Canvas::new(0, 4).is_none());
        assert!(Canvas::new(MAX_SIDE + 1, 4).is_none());
        // A bbox hanging off every edge is cut to the canvas.
        let areas = c.areas(&r(-5, -5, 100, 100), None);
        assert_eq!(
            areas,
            vec![Area {
                left: 0,
                top: 0,
                right: 8,
                bottom: 4
            }]
        );
        // Clip rects cut the bbox; empty and inverted ones vanish.
        let clip = [
            r(1, 1, 3, 2),
            r(5, 0, 4, 4),
            r(i32::MIN, i32::MIN, i32::MAX, 1),
        ];
        let areas = c.areas(&r(0, 0, 6, 4), Some(&clip));
        assert_eq!(
            areas,
            vec![
                Area {
                    left: 1,
                    top: 1,
                    right: 3,
                    bottom: 2
                },
                Area {
                    left: 0,
                    top: 0,
                    right: 6,
                    bottom: 1
                }
            ]
        );
        for a in areas {
            c.paint(a, |_, _, _| Some(0xff12_3456));
        }
        assert_eq!(c.pixel(2, 1), Some(0x12_3456), "alpha dropped");
        assert_eq!(c.pixel(3, 1), Some(0));
        assert_eq!(c.pixel(9, 1), None);
        assert_eq!(c.take_dirty().len(), 2);
        assert!(c.take_dirty().is_empty());
        // COPY_BITS: scroll up by one row, overlapping.
        c.copy_within(
            Area {
                left: 0,
                top: 0,
                right: 8,
                bottom: 3,
            },
            0,
            1,
        );
        assert_eq!(c.pixel(2, 0), Some(0x12_3456));
        assert_eq!(c.pixel(2, 1), Some(0));
        // A source partly outside leaves those pixels alone.
        c.copy_within(
            Area {
                left: 0,
                top: 0,
                right: 8,
                bottom: 4,
            },
            -4,
            0,
        );
        assert_eq!(c.pixel(2, 0), Some(0x12_3456));
        assert_eq!(c.pixel(6, 0), Some(0x12_3456));
    }

    #[test]
    fn solid_fills_are_reported_apart_from_dirty_regions() {
        let mut c = Canvas::new(8, 4).unwrap();
        let a = c.clip_rect(&r(1, 1, 3, 3)).unwrap();
        c.fill_solid(a, 0xff12_3456);
        assert_eq!(c.pixel(2, 2), Some(0x12_3456));
        assert_eq!(c.pixel(3, 3), Some(0));
        assert!(c.take_dirty().is_empty());
        let fill = SolidFill {
            rect: Rect::new(1, 1, 2, 2),
            color: 0x12_3456,
        };
        assert_eq!(c.take_draws(), vec![Draw::Fill(fill)]);
        assert!(c.take_draws().is_empty());
        // Past MAX_DRAWS between two takes, the draws become dirty regions.
        for _ in 0..=MAX_DRAWS {
            c.fill_solid(a, 1);
        }
        assert!(c.take_draws().is_empty());
        assert_eq!(c.take_dirty(), vec![Rect::new(1, 1, 2, 2)]);
    }

    #[test]
    fn image_copies_are_painted_and_reported_as_draws() {
        let mut c = Canvas::new(8, 4).unwrap();
        let image = Arc::new(Frame {
            width: 3,
            height: 2,
            pixels: vec![0xff00_0001, 2, 3, 4, 5, 6],
        });
        let a = c.clip_rect(&r(4, 2, 6, 4)).unwrap();
        c.copy_image(a, &image, 1, 0);
        assert_eq!(c.row(2, 4, 3), &[2, 3, 0]);
        assert_eq!(c.row(3, 4, 3), &[5, 6, 0]);
        assert!(c.take_dirty().is_empty());
        let copy = ImageCopy {
            rect: Rect::new(4, 2, 2, 2),
            src_x: 1,
            src_y: 0,
            image,
        };
        assert_eq!(c.take_draws(), vec![Draw::Copy(copy)]);
    }

    #[test]
    fn blends_paint_and_are_reported_as_draws() {
        let mut c = Canvas::new(4, 1).unwrap();
        let all = c.clip_rect(&r(0, 0, 4, 1)).unwrap();
        c.paint(all, |_, _, _| Some(0x0000_00ff));
        c.take_dirty();
        let image = Arc::new(Frame {
            width: 4,
            height: 1,
            pixels: vec![0x0000_ff00, 0x00ff_0000, 0x0000_ff00, 0x00ff_0000],
        });
        let key = BlendMode::Transparent(0x0000_ff00);
        c.blend_image(all, &image, 0, 0, key);
        assert_eq!(c.row(0, 0, 4), &[0xff, 0x00ff_0000, 0xff, 0x00ff_0000]);
        c.blend_image(all, &image, 0, 0, BlendMode::Alpha(0x80));
        assert_eq!(c.row(0, 0, 2), &[0x0000_807f, 0x00ff_0000]);
        assert!(c.take_dirty().is_empty());
        let draws = c.take_draws();
        assert_eq!(draws.len(), 2);
        assert!(
            matches!(&draws[0], Draw::Blend(b) if b.mode == key && b.copy.rect == Rect::new(0, 0, 4, 1))
        );
    }

    #[test]
    fn copy_bits_is_forwarded_only_from_a_clean_source_inside_the_canvas() {
        let mut c = Canvas::new(8, 6).unwrap();
        let all = c.clip_rect(&r(0, 0, 8, 6)).unwrap();
        c.paint(all, |x, y, _| Some(y * 8 + x));
        c.take_dirty();
        // Scroll rows 2..6 up by two: forwarded, painted as a whole.
        let dst = c.clip_rect(&r(0, 0, 8, 4)).unwrap();
        c.copy_bits(dst, 0, 2);
        assert_eq!(c.row(0, 0, 8), &[16, 17, 18, 19, 20, 21, 22, 23]);
        assert_eq!(c.row(3, 0, 2), &[40, 41]);
        assert!(c.take_dirty().is_empty());
        let bits = BitsCopy {
            rect: Rect::new(0, 0, 8, 4),
            src_x: 0,
            src_y: 2,
        };
        assert_eq!(c.take_draws(), vec![Draw::CopyBits(bits)]);
        // A dirty region the frontend gets after the draws touches the
        // source: drawn here and sent as pixels.
        c.paint(c.clip_rect(&r(7, 5, 8, 6)).unwrap(), |_, _, _| Some(99));
        c.copy_bits(c.clip_rect(&r(0, 0, 8, 2)).unwrap(), 0, 4);
        assert!(c.take_draws().is_empty());
        assert_eq!(c.row(1, 6, 2), &[46, 99]);
        assert_eq!(
            c.take_dirty(),
            vec![Rect::new(7, 5, 1, 1), Rect::new(0, 0, 8, 2)]
        );
        // A source hanging off the canvas: drawn, dirty.
        c.copy_bits(c.clip_rect(&r(0, 0, 4, 4)).unwrap(), 5, 0);
        c.copy_bits(c.clip_rect(&r(4, 0, 8, 4)).unwrap(), -1, 0);
        assert!(c.take_draws().is_empty());
        assert_eq!(c.take_dirty().len(), 2);
    }

    #[test]
    fn rops() {
        use ropd::{INVERS_BRUSH as B, INVERS_DEST as D, INVERS_SRC as S};
        assert_eq!(apply_rop(ropd::OP_PUT, S, D, 0x123456, 0xffffff), 0x123456);
        assert_eq!(apply_rop(0, S, D, 0x123456, 0xffffff), 0x123456);
        assert_eq!(apply_rop(ropd::OP_XOR, S, D, 0x00ff00, 0x0f0f0f), 0x0ff00f);
        assert_eq!(apply_rop(ropd::OP_AND, B, D, 0x00ff00, 0x0f0f0f), 0x000f00);
        assert_eq!(
            apply_rop(ropd::OP_OR | ropd::INVERS_RES, S, D, 0, 0x0f0f0f),
            0xf0f0f0
        );
        assert_eq!(apply_rop(ropd::OP_PUT | S, S, D, 0, 0), 0xffffff);
        // Only the drawable's own source bit inverts it.
        assert_eq!(apply_rop(ropd::OP_PUT | B, S, D, 0, 0), 0);
        assert_eq!(apply_rop(ropd::OP_PUT | B, B, D, 0, 0), 0xffffff);
        assert_eq!(apply_rop(ropd::OP_INVERS, S, D, 0, 0x00ff00), 0xff00ff);
        assert_eq!(apply_rop(ropd::OP_BLACKNESS, S, D, 5, 5), 0);
        assert_eq!(apply_rop(ropd::OP_WHITENESS, S, D, 5, 5), 0xffffff);
    }
}
