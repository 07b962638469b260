//! A display client's pending dirty region: a few rectangles, merged, never growing
//! without bound. Past `MAX_RECTS` it collapses to the bounding box, which trades a
//! bigger redraw for a fixed cost per client.

use crate::Rect;

pub const MAX_RECTS: usize = 16;

#[derive(Default, Debug)]
pub struct Region {
    rects: Vec<Rect>,
}

impl Region {
    pub fn add(&mut self, r: Rect) {
        if r.is_empty() || self.rects.iter().any(|e| e.contains(&r)) {
            return;
        }
        self.rects.retain(|e| !r.contains(e));
        self.rects.push(r);
        if self.rects.len() > MAX_RECTS {
            let bb = self
                .rects
                .iter()
                .skip(1)
                .fold(self.rects[0], |acc, e| acc.bounding(e));
            self.rects = vec![bb];
        }
    }

    /// Does any rectangle share a pixel with `r`?
    pub fn touches(&self, r: &Rect) -> bool {
        self.rects.iter().any(|e| e.intersects(r))
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
        Rect::new(x, y, width, height)
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
            assert!(all.iter().any(|e| e.contains(&r(i * 30, i, 5, 5))));
        }
    }
}
