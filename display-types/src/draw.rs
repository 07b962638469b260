//! Drawing operations a display device reports instead of the pixels they
//! produced, so a frontend can forward the operation itself (a SPICE
//! DRAW_FILL or DRAW_COPY of a cacheable image) rather than an image of the
//! changed area. Fills and image copies are plain overpaints: the result does
//! not depend on what was there, so replaying them in order and then sending
//! images of whatever else changed (from the newest pixels) always ends with
//! the device's picture. A [`BitsCopy`] (screen-to-screen copy) is the
//! exception: it reads the surface, so it is only right where the reader's
//! source area is current when it is replayed; whoever reports or forwards
//! one must make sure of that (or send its area as pixels instead). An
//! [`ImageBlend`] reads the pixels under it too, but only its own area: a
//! replay over stale pixels there is made right by the images of whatever
//! else changed, which always follow the draws and cover the stale part.

use std::sync::Arc;

use crate::{Frame, Rect, SolidFill};

/// `rect` overpainted with the pixels of `image` from (`src_x`, `src_y`),
/// 1:1 (a QXL DRAW_COPY of a bitmap with OP_PUT and no mask or scaling).
/// The image is shared: the guest redraws the same bitmap often, and each
/// client's copy of the draw holds the one picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageCopy {
    pub rect: Rect,
    pub src_x: u32,
    pub src_y: u32,
    pub image: Arc<Frame>,
}

impl ImageCopy {
    /// The part of the copy inside a `width` x `height` surface whose source
    /// lies inside the image; None when nothing is left.
    pub fn clip(&self, width: u32, height: u32) -> Option<ImageCopy> {
        // Where the image ends, in surface coordinates.
        let img_right = u64::from(self.rect.x) + u64::from(self.image.width)
            - u64::from(self.src_x.min(self.image.width));
        let img_bottom = u64::from(self.rect.y) + u64::from(self.image.height)
            - u64::from(self.src_y.min(self.image.height));
        let right = self.rect.right().min(img_right).min(u64::from(width));
        let bottom = self.rect.bottom().min(img_bottom).min(u64::from(height));
        if right <= u64::from(self.rect.x) || bottom <= u64::from(self.rect.y) {
            return None;
        }
        Some(ImageCopy {
            rect: Rect::new(
                self.rect.x,
                self.rect.y,
                (right - u64::from(self.rect.x)) as u32,
                (bottom - u64::from(self.rect.y)) as u32,
            ),
            ..self.clone()
        })
    }
}

/// `rect` overpainted with the surface's own pixels from the same-sized area
/// whose top-left is (`src_x`, `src_y`), read before any is written (a QXL
/// COPY_BITS, a SPICE DRAW_COPY_BITS: window drags and scrolling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitsCopy {
    pub rect: Rect,
    pub src_x: u32,
    pub src_y: u32,
}

impl BitsCopy {
    /// The area read.
    pub fn source(&self) -> Rect {
        Rect::new(self.src_x, self.src_y, self.rect.width, self.rect.height)
    }

    /// The part of the copy whose destination and source both lie inside a
    /// `width` x `height` surface; None when nothing is left.
    pub fn clip(&self, width: u32, height: u32) -> Option<BitsCopy> {
        if self.src_x >= width || self.src_y >= height {
            return None;
        }
        let rect = self.rect.clip(width, height)?;
        let w = rect.width.min(width - self.src_x);
        let h = rect.height.min(height - self.src_y);
        (w > 0 && h > 0).then_some(BitsCopy {
            rect: Rect::new(rect.x, rect.y, w, h),
            ..*self
        })
    }
}

/// How a blended image meets the pixels under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlendMode {
    /// Pixels of this colour (0x00RRGGBB) leave the surface as it was (a
    /// QXL/SPICE DRAW_TRANSPARENT).
    Transparent(u32),
    /// The image laid over the surface with this constant opacity (a
    /// QXL/SPICE DRAW_ALPHA_BLEND of an image with no alpha of its own).
    Alpha(u8),
    /// The image's own (premultiplied) alpha, times this constant opacity:
    /// a DRAW_ALPHA_BLEND with SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA. The
    /// image's pixels are 0xAARRGGBB and must reach a client with their
    /// alpha (an RGBA image).
    SourceAlpha(u8),
    /// The image (premultiplied 0xAARRGGBB) composited OVER the surface: a
    /// QXL/SPICE DRAW_COMPOSITE with operator OVER and no mask, transform
    /// or repeat (the same pixels as `SourceAlpha(255)`, another message).
    Over,
}

/// An [`ImageCopy`] blended with the surface instead of overpainting it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageBlend {
    pub copy: ImageCopy,
    pub mode: BlendMode,
}

impl BlendMode {
    /// The pixel `src` blended over `dst` (both 0x00RRGGBB, but `src` is
    /// premultiplied 0xAARRGGBB with `SourceAlpha`).
    pub fn apply(self, src: u32, dst: u32) -> u32 {
        match self {
            BlendMode::Transparent(key) if src & 0x00ff_ffff == key & 0x00ff_ffff => dst,
            BlendMode::Transparent(_) => src & 0x00ff_ffff,
            BlendMode::Alpha(a) => alpha_over(src | 0xff00_0000, dst, a),
            BlendMode::SourceAlpha(a) => alpha_over(src, dst, a),
            BlendMode::Over => alpha_over(src, dst, 0xff),
        }
    }

    /// Whether the blended image's pixels carry alpha.
    pub fn source_alpha(self) -> bool {
        matches!(self, BlendMode::SourceAlpha(_) | BlendMode::Over)
    }
}

/// pixman's MUL_UN8: `a * b / 255` for 8-bit values, rounded as pixman does.
pub fn mul_un8(a: u32, b: u32) -> u32 {
    let t = a * b + 0x80;
    ((t >> 8) + t) >> 8
}

/// `src` (premultiplied 0xAARRGGBB) laid over `dst` (0x00RRGGBB) with the
/// constant opacity `alpha`, with pixman's rounding (x*y/255 as
/// t = x*y + 128, (t + t/256) / 256): the OVER a SPICE client's canvas
/// composites with, so a forwarded blend ends with the same pixels on the
/// client as on the server.
pub fn alpha_over(src: u32, dst: u32, alpha: u8) -> u32 {
    let mul = mul_un8;
    let a = u32::from(alpha);
    let keep = 255 - mul(src >> 24, a);
    let channel = |shift: u32| {
        let s = mul((src >> shift) & 0xff, a);
        (s + mul((dst >> shift) & 0xff, keep)).min(255) << shift
    };
    channel(16) | channel(8) | channel(0)
}

/// One forwarded draw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Draw {
    Fill(SolidFill),
    Copy(ImageCopy),
    CopyBits(BitsCopy),
    Blend(ImageBlend),
}

impl Draw {
    /// The area the draw paints.
    pub fn rect(&self) -> &Rect {
        match self {
            Draw::Fill(f) => &f.rect,
            Draw::Copy(c) => &c.rect,
            Draw::CopyBits(b) => &b.rect,
            Draw::Blend(b) => &b.copy.rect,
        }
    }

    /// The draw cut to a `width` x `height` surface (and a copy to its
    /// image); None when nothing is left.
    pub fn clip(&self, width: u32, height: u32) -> Option<Draw> {
        match self {
            Draw::Fill(f) => Some(Draw::Fill(SolidFill {
                rect: f.rect.clip(width, height)?,
                color: f.color,
            })),
            Draw::Copy(c) => c.clip(width, height).map(Draw::Copy),
            Draw::CopyBits(b) => b.clip(width, height).map(Draw::CopyBits),
            Draw::Blend(b) => b
                .copy
                .clip(width, height)
                .map(|copy| Draw::Blend(ImageBlend { copy, mode: b.mode })),
        }
    }

    /// Paint the draw on `frame` (clipped to it and to the image).
    pub fn paint(&self, frame: &mut Frame) {
        let Some(d) = self.clip(frame.width, frame.height) else {
            return;
        };
        if let Draw::CopyBits(b) = d {
            b.paint(frame);
            return;
        }
        let stride = frame.width as usize;
        let r = *d.rect();
        for dy in 0..r.height {
            let start = (r.y + dy) as usize * stride + r.x as usize;
            let Some(row) = frame.pixels.get_mut(start..start + r.width as usize) else {
                return;
            };
            match &d {
                Draw::Fill(f) => row.fill(f.color & 0x00ff_ffff),
                Draw::Copy(c) => {
                    let src = c.image.row(c.src_y + dy, c.src_x, r.width);
                    if src.len() == row.len() {
                        for (to, from) in row.iter_mut().zip(src) {
                            *to = from & 0x00ff_ffff;
                        }
                    }
                }
                Draw::Blend(b) => {
                    let c = &b.copy;
                    let src = c.image.row(c.src_y + dy, c.src_x, r.width);
                    if src.len() == row.len() {
                        for (to, from) in row.iter_mut().zip(src) {
                            *to = b.mode.apply(*from, *to & 0x00ff_ffff);
                        }
                    }
                }
                Draw::CopyBits(_) => {}
            }
        }
    }
}

impl BitsCopy {
    /// Paint an already clipped copy: rows are taken in the order that never
    /// reads a row already written (bottom up when moving down), and within
    /// a row `copy_within` moves the pixels as a whole.
    fn paint(&self, frame: &mut Frame) {
        let stride = frame.width as usize;
        let (r, w) = (self.rect, self.rect.width as usize);
        let row = |dy: u32| {
            (
                (self.src_y + dy) as usize * stride + self.src_x as usize,
                (r.y + dy) as usize * stride + r.x as usize,
            )
        };
        let mut one = |dy: u32| {
            let (from, to) = row(dy);
            if from + w <= frame.pixels.len() && to + w <= frame.pixels.len() {
                frame.pixels.copy_within(from..from + w, to);
            }
        };
        if r.y > self.src_y {
            (0..r.height).rev().for_each(&mut one);
        } else {
            (0..r.height).for_each(&mut one);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blends_follow_pixman_and_the_colour_key() {
        // Opaque and clear ends are exact.
        assert_eq!(alpha_over(0xff12_3456, 0x00ab_cdef, 255), 0x0012_3456);
        assert_eq!(alpha_over(0xff12_3456, 0x00ab_cdef, 0), 0x00ab_cdef);
        // Half: red 0x80 at 0x80 is 0x40; blue 0xff kept at 0x7f is 0x7f.
        assert_eq!(alpha_over(0xff80_0000, 0x0000_00ff, 0x80), 0x0040_007f);
        // A premultiplied source with its own alpha lets more through.
        assert_eq!(alpha_over(0x8080_0000, 0x0000_00ff, 0xff), 0x0080_007f);
        let key = BlendMode::Transparent(0x00_ff00);
        assert_eq!(key.apply(0xff00_ff00, 0x0011_2233), 0x0011_2233);
        assert_eq!(key.apply(0xff00_ff01, 0x0011_2233), 0x0000_ff01);
        // The source's own alpha counts only with SourceAlpha: half-clear
        // premultiplied red over blue keeps half the blue.
        let own = BlendMode::SourceAlpha(0xff);
        assert_eq!(own.apply(0x8080_0000, 0x0000_00ff), 0x0080_007f);
        assert_eq!(
            BlendMode::Alpha(0xff).apply(0x8080_0000, 0x0000_00ff),
            0x0080_0000
        );
        assert_eq!(
            BlendMode::SourceAlpha(0x80).apply(0x8080_0000, 0xff),
            0x0040_00bf
        );
        assert!(own.source_alpha() && !BlendMode::Alpha(1).source_alpha());
        assert_eq!(
            BlendMode::Over.apply(0x8080_0000, 0xff),
            own.apply(0x8080_0000, 0xff)
        );
        let mut f = Frame {
            width: 2,
            height: 1,
            pixels: vec![0x0000_00ff, 0x0000_00ff],
        };
        Draw::Blend(ImageBlend {
            copy: ImageCopy {
                rect: Rect::new(0, 0, 2, 1),
                src_x: 0,
                src_y: 0,
                image: Arc::new(Frame {
                    width: 2,
                    height: 1,
                    pixels: vec![0x0000_ff00, 0x00ff_0000],
                }),
            },
            mode: key,
        })
        .paint(&mut f);
        assert_eq!(f.pixels, [0x0000_00ff, 0x00ff_0000]);
    }

    fn image(w: u32, h: u32) -> Arc<Frame> {
        Arc::new(Frame {
            width: w,
            height: h,
            pixels: (1..=w * h).collect(),
        })
    }

    #[test]
    fn a_copy_is_cut_to_the_surface_and_to_its_image() {
        let c = ImageCopy {
            rect: Rect::new(6, 2, 10, 10),
            src_x: 1,
            src_y: 2,
            image: image(4, 5),
        };
        // The image has 3 columns and 3 rows left from (1, 2).
        assert_eq!(c.clip(100, 100).unwrap().rect, Rect::new(6, 2, 3, 3));
        assert_eq!(c.clip(8, 4).unwrap().rect, Rect::new(6, 2, 2, 2));
        assert!(c.clip(6, 100).is_none());
        let outside = ImageCopy {
            src_x: 9,
            ..c.clone()
        };
        assert!(outside.clip(100, 100).is_none());
    }

    #[test]
    fn painting_a_copy_and_a_fill() {
        let mut f = Frame::new(4, 3);
        let copy = Draw::Copy(ImageCopy {
            rect: Rect::new(1, 1, 3, 3),
            src_x: 1,
            src_y: 0,
            image: image(3, 2),
        });
        copy.paint(&mut f);
        assert_eq!(f.pixels, vec![0, 0, 0, 0, 0, 2, 3, 0, 0, 5, 6, 0]);
        Draw::Fill(SolidFill {
            rect: Rect::new(3, 0, 9, 1),
            color: 0xff00_0007,
        })
        .paint(&mut f);
        assert_eq!(&f.pixels[..4], &[0, 0, 0, 7]);
    }

    /// The copy against a per-pixel reference that reads everything first.
    #[test]
    fn copy_bits_moves_overlapping_areas_as_a_whole() {
        let (w, h) = (7u32, 6u32);
        let start = Frame {
            width: w,
            height: h,
            pixels: (0..w * h).collect(),
        };
        for (x, y, sx, sy) in [
            (1, 1, 0, 0),
            (0, 0, 1, 1),
            (2, 0, 0, 0),
            (0, 3, 0, 0),
            (0, 0, 0, 2),
            (3, 1, 3, 1),
        ] {
            let b = BitsCopy {
                rect: Rect::new(x, y, 4, 3),
                src_x: sx,
                src_y: sy,
            };
            let mut f = start.clone();
            Draw::CopyBits(b).paint(&mut f);
            let mut want = start.clone();
            for dy in 0..3 {
                for dx in 0..4 {
                    want.pixels[((y + dy) * w + x + dx) as usize] = start.pixel(sx + dx, sy + dy);
                }
            }
            assert_eq!(f, want, "{b:?}");
        }
    }

    #[test]
    fn copy_bits_is_cut_to_where_source_and_destination_fit() {
        let b = BitsCopy {
            rect: Rect::new(2, 1, 10, 10),
            src_x: 5,
            src_y: 0,
        };
        // Destination fits 6x7 of 8x8; the source only 3 columns.
        assert_eq!(b.clip(8, 8).unwrap().rect, Rect::new(2, 1, 3, 8 - 1));
        assert!(b.clip(5, 8).is_none());
        assert!(b.clip(8, 1).is_none());
        assert_eq!(b.source(), Rect::new(5, 0, 10, 10));
    }
}
