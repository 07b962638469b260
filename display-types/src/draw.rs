//! Drawing operations a display device reports instead of the pixels they
//! produced, so a frontend can forward the operation itself (a SPICE
//! DRAW_FILL or DRAW_COPY of a cacheable image) rather than an image of the
//! changed area. Each is a plain overpaint: the result does not depend on
//! what was there, so replaying them in order and then sending images of
//! whatever else changed (from the newest pixels) always ends with the
//! device's picture.

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

/// One forwarded draw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Draw {
    Fill(SolidFill),
    Copy(ImageCopy),
}

impl Draw {
    /// The area the draw paints.
    pub fn rect(&self) -> &Rect {
        match self {
            Draw::Fill(f) => &f.rect,
            Draw::Copy(c) => &c.rect,
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
        }
    }

    /// Paint the draw on `frame` (clipped to it and to the image).
    pub fn paint(&self, frame: &mut Frame) {
        let Some(d) = self.clip(frame.width, frame.height) else {
            return;
        };
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
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
