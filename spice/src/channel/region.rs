//! A display client's pending dirty region: a few rectangles, merged, never growing
//! without bound. Past `MAX_RECTS` it collapses to the bounding box, which trades a
//! bigger redraw for a fixed cost per client.

use crate::Rect;

pub const MAX_RECTS: usize = 16;

#[derive(Default, Debug)]
pub struct Region {
    rects: Vec<Rect>,
}

fn right(r: &Rect) -> u64 {
    r.x as u64 + r.width as u64
}
fn bottom(r: &Rect) -> u64 {
    r.y as u64 + r.height as u64
}

fn contains(a: &Rect, b: &Rect) -> bool {
    a.x <= b.x && a.y <= b.y && right(a) >= right(b) && bottom(a) >= bottom(b)
}

pub fn bounding(a: &Rect, b: &Rect) -> Rect {
    let x = a.x.min(b.x);
    let y = a.y.min(b.y);
    Rect {
        x,
        y,
        width: (right(a).max(right(b)) - x as u64) as u32,
        height: (bottom(a).max(bottom(b)) - y as u64) as u32,
    }
}

/// Clips to a `w` x `h` surface; None if nothing is left.
pub fn clip(r: &Rect, w: u32, h: u32) -> Option<Rect> {
    if r.x >= w || r.y >= h || r.width == 0 || r.height == 0 {
        return None;
    }
    Some(Rect {
        x: r.x,
        y: r.y,
        width: (right(r).min(w as u64) - r.x as u64) as u32,
        height: (bottom(r).min(h as u64) - r.y as u64) as u32,
    })
}

impl Region {
    pub fn add(&mut self, r: Rect) {
        if r.width == 0 || r.height == 0 || self.rects.iter().any(|e| contains(e, &r)) {
            return;
        }
        self.rects.retain(|e| !contains(&r, e));
        self.rects.push(r);
        if self.rects.len() > MAX_RECTS {
            let bb = self
                .rects
                .iter()
                .skip(1)
                .fold(self.rects[0], |acc, e| bounding(&acc, e));
            self.rects = vec![bb];
        }
    }

    pub fn take(&mut self) -> Vec<Rect> {
        std::mem::take(&mut self.rects)
    }

    pub fn clear(&mut self) {
        self.rects.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: u32, y: u32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn merges_contained_and_caps_count() {
        let mut g = Region::default();
        g.add(r(0, 0, 10, 10));
        g.add(r(2, 2, 3, 3));
        assert_eq!(g.len(), 1);
        g.add(r(0, 0, 20, 20));
        assert_eq!(g.take(), vec![r(0, 0, 20, 20)]);
        for i in 0..100 {
            g.add(r(i * 30, i, 5, 5));
        }
        assert!(g.len() <= MAX_RECTS);
        let all = g.take();
        for i in 0..100 {
            assert!(all.iter().any(|e| contains(e, &r(i * 30, i, 5, 5))));
        }
    }

    #[test]
    fn clipping() {
        assert_eq!(clip(&r(5, 5, 100, 100), 10, 8), Some(r(5, 5, 5, 3)));
        assert_eq!(clip(&r(10, 0, 1, 1), 10, 8), None);
        assert_eq!(clip(&r(u32::MAX, 0, u32::MAX, 1), 10, 8), None);
        assert_eq!(
            clip(&r(0, 0, u32::MAX, u32::MAX), 10, 8),
            Some(r(0, 0, 10, 8))
        );
    }
}
