//! Rectangles of a frame. Edges are computed in u64, so no rectangle, however
//! hostile its fields, overflows.

/// A region of a frame, in pixels: columns `x..x + width`, rows `y..y + height`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    /// The whole of a `width` x `height` frame.
    pub const fn full(width: u32, height: u32) -> Rect {
        Rect::new(0, 0, width, height)
    }

    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// One past the last column.
    pub fn right(&self) -> u64 {
        u64::from(self.x) + u64::from(self.width)
    }

    /// One past the last row.
    pub fn bottom(&self) -> u64 {
        u64::from(self.y) + u64::from(self.height)
    }

    pub fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Does `self` cover all of `other`?
    pub fn contains(&self, other: &Rect) -> bool {
        self.x <= other.x
            && self.y <= other.y
            && self.right() >= other.right()
            && self.bottom() >= other.bottom()
    }

    /// Do the two share at least one pixel?
    pub fn intersects(&self, other: &Rect) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && u64::from(self.x) < other.right()
            && u64::from(other.x) < self.right()
            && u64::from(self.y) < other.bottom()
            && u64::from(other.y) < self.bottom()
    }

    /// The smallest rectangle covering both.
    pub fn bounding(&self, other: &Rect) -> Rect {
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        // Both edges are at most 2 * u32::MAX away from x; clamp into u32.
        let width = (self.right().max(other.right()) - u64::from(x)).min(u64::from(u32::MAX));
        let height = (self.bottom().max(other.bottom()) - u64::from(y)).min(u64::from(u32::MAX));
        Rect::new(x, y, width as u32, height as u32)
    }

    /// The part inside a `width` x `height` frame; None if nothing is left.
    pub fn clip(&self, width: u32, height: u32) -> Option<Rect> {
        if self.x >= width || self.y >= height || self.is_empty() {
            return None;
        }
        Some(Rect::new(
            self.x,
            self.y,
            (self.right().min(u64::from(width)) - u64::from(self.x)) as u32,
            (self.bottom().min(u64::from(height)) - u64::from(self.y)) as u32,
        ))
    }
}

/// A rectangle painted one solid color over whatever was there (a QXL
/// DRAW_FILL with a solid brush and plain overpaint). A display device
/// reports these next to its dirty rectangles so a frontend can forward the
/// fill itself instead of the pixels it produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SolidFill {
    pub rect: Rect,
    /// 0x00RRGGBB.
    pub color: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect::new(x, y, w, h)
    }

    #[test]
    fn clipping() {
        assert_eq!(r(5, 5, 100, 100).clip(10, 8), Some(r(5, 5, 5, 3)));
        assert_eq!(r(10, 0, 1, 1).clip(10, 8), None);
        assert_eq!(r(0, 0, 0, 5).clip(10, 8), None);
        assert_eq!(r(u32::MAX, 0, u32::MAX, 1).clip(10, 8), None);
        assert_eq!(
            r(0, 0, u32::MAX, u32::MAX).clip(10, 8),
            Some(r(0, 0, 10, 8))
        );
    }

    #[test]
    fn containment_and_bounding() {
        assert!(r(0, 0, 10, 10).contains(&r(2, 2, 3, 3)));
        assert!(r(0, 0, 10, 10).contains(&r(0, 0, 10, 10)));
        assert!(!r(0, 0, 10, 10).contains(&r(5, 5, 10, 1)));
        assert_eq!(r(0, 0, 2, 2).bounding(&r(5, 6, 1, 1)), r(0, 0, 6, 7));
        assert_eq!(r(4, 4, 2, 2).bounding(&r(1, 1, 1, 1)), r(1, 1, 5, 5));
        // Hostile edges saturate instead of wrapping.
        let huge = r(u32::MAX, u32::MAX, u32::MAX, u32::MAX);
        assert_eq!(r(0, 0, 1, 1).bounding(&huge), r(0, 0, u32::MAX, u32::MAX));
        assert_eq!(huge.area(), u64::from(u32::MAX) * u64::from(u32::MAX));
        assert_eq!(Rect::full(3, 4), r(0, 0, 3, 4));
        assert!(Rect::default().is_empty());
    }
}
