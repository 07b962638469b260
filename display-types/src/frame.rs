//! A picture: what the display model renders and what a frontend copies from.

use crate::Rect;

/// A rendered picture: `pixels[y * width + x]` = 0x00RRGGBB.
///
/// Every constructor here keeps `pixels.len() == width * height`; the fields are
/// public for the renderers, and the readers below stay panic-free (black outside)
/// even for a frame whose fields disagree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
}

impl Frame {
    /// A black `width` x `height` frame.
    pub fn new(width: u32, height: u32) -> Frame {
        Frame {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
        }
    }

    /// Take the size `width` x `height`. Pixel contents are left as they were
    /// (a frame of unchanged size is not cleared), so a renderer that calls this
    /// writes every pixel of the frame.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.pixels.resize(width as usize * height as usize, 0);
    }

    /// Is `pixels` exactly `width * height` long (and the frame non-empty)?
    pub fn is_well_formed(&self) -> bool {
        self.width > 0
            && self.height > 0
            && (self.width as usize).checked_mul(self.height as usize) == Some(self.pixels.len())
    }

    /// Pixel at (x, y), 0 outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        if x >= self.width || y >= self.height {
            return 0;
        }
        let i = y as usize * self.width as usize + x as usize;
        self.pixels.get(i).copied().unwrap_or(0)
    }

    /// Row `y`'s pixels in columns `x..x + width`, clipped to the frame and to
    /// `pixels` (empty if nothing of it exists).
    pub fn row(&self, y: u32, x: u32, width: u32) -> &[u32] {
        if y >= self.height || x >= self.width {
            return &[];
        }
        let stride = self.width as usize;
        let start = y as usize * stride + x as usize;
        let end = start + (width as usize).min(stride - x as usize);
        self.pixels
            .get(start..end.min(self.pixels.len()))
            .unwrap_or(&[])
    }

    /// Copies `r` (clipped to both frames, which must have the same size) from
    /// `src` into `self`: how a frontend keeps its copy of a frame current with
    /// only the changed pixels.
    pub fn copy_rect_from(&mut self, src: &Frame, r: &Rect) {
        if (self.width, self.height) != (src.width, src.height) {
            return;
        }
        let Some(r) = r.clip(self.width, self.height) else {
            return;
        };
        let stride = self.width as usize;
        for y in r.y..r.y + r.height {
            let from = src.row(y, r.x, r.width);
            let start = y as usize * stride + r.x as usize;
            if let Some(to) = self.pixels.get_mut(start..start + from.len()) {
                to.copy_from_slice(from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(w: u32, h: u32) -> Frame {
        Frame {
            width: w,
            height: h,
            pixels: (0..w * h).collect(),
        }
    }

    #[test]
    fn pixels_rows_and_bounds() {
        let f = numbered(4, 3);
        assert!(f.is_well_formed());
        assert_eq!(f.pixel(1, 2), 9);
        assert_eq!(f.pixel(4, 0), 0);
        assert_eq!(f.row(1, 1, 2), &[5, 6]);
        assert_eq!(f.row(1, 3, 10), &[7]);
        assert!(f.row(3, 0, 1).is_empty());
        // Fields that disagree with the pixel buffer read as missing, not a panic.
        let bad = Frame {
            width: 4,
            height: 3,
            pixels: vec![1; 5],
        };
        assert!(!bad.is_well_formed());
        assert_eq!(bad.pixel(3, 2), 0);
        assert_eq!(bad.row(1, 0, 4), &[1]);
        assert!(!Frame::new(0, 5).is_well_formed());
    }

    #[test]
    fn copy_rect_copies_only_the_rect() {
        let src = numbered(5, 4);
        let mut dst = Frame::new(5, 4);
        dst.copy_rect_from(&src, &Rect::new(1, 1, 2, 2));
        let expect: Vec<u32> = (0..20)
            .map(|i| {
                let (x, y) = (i % 5, i / 5);
                if (1..3).contains(&x) && (1..3).contains(&y) {
                    i
                } else {
                    0
                }
            })
            .collect();
        assert_eq!(dst.pixels, expect);
        // Clipped at the edges; a size mismatch copies nothing.
        dst.copy_rect_from(&src, &Rect::new(4, 3, 100, 100));
        assert_eq!(dst.pixel(4, 3), 19);
        let mut other = Frame::new(2, 2);
        other.copy_rect_from(&src, &Rect::full(2, 2));
        assert_eq!(other.pixels, vec![0; 4]);
    }

    #[test]
    fn resize_keeps_pixels_it_can() {
        let mut f = numbered(2, 2);
        f.resize(2, 3);
        assert_eq!(f.pixels, vec![0, 1, 2, 3, 0, 0]);
        assert!(f.is_well_formed());
    }
}
