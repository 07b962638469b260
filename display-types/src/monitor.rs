//! Monitor layouts: which heads a display has and where they sit on the virtual
//! desktop. A guest states one (QXL monitors config, virtio-gpu scanouts), a
//! client asks for one (SPICE MONITORS_CONFIG from a resized window), and a
//! frontend reports one (SPICE display channels, one per head).

use crate::Rect;

/// At most this many heads, as spice-server bounds a client's monitors config
/// (and far more than QXL's 16 or virtio-gpu's 16 scanouts).
pub const MAX_MONITORS: usize = 256;

/// One head: its id and the rectangle of the desktop it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Monitor {
    pub id: u32,
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

/// The heads of a display, in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorLayout {
    monitors: Vec<Monitor>,
}

impl MonitorLayout {
    /// One head showing a `width` x `height` frame at the origin.
    pub fn single(width: u32, height: u32) -> MonitorLayout {
        MonitorLayout {
            monitors: vec![Monitor {
                id: 0,
                x: 0,
                y: 0,
                width,
                height,
            }],
        }
    }

    /// A layout from untrusted input (a guest or a client): None if it has more
    /// than [`MAX_MONITORS`] heads, an empty head, or two heads with one id.
    /// Heads are sorted by id.
    pub fn new(mut monitors: Vec<Monitor>) -> Option<MonitorLayout> {
        if monitors.len() > MAX_MONITORS || monitors.iter().any(|m| m.width == 0 || m.height == 0) {
            return None;
        }
        monitors.sort_by_key(|m| m.id);
        if monitors.windows(2).any(|w| w[0].id == w[1].id) {
            return None;
        }
        Some(MonitorLayout { monitors })
    }

    pub fn monitors(&self) -> &[Monitor] {
        &self.monitors
    }

    /// The desktop rectangle covering every head, with its top-left corner moved
    /// to the origin (a layout may start at negative coordinates): the size a
    /// single surface needs to show them all. None for an empty layout.
    pub fn bounding_size(&self) -> Option<(u32, u32)> {
        let first = self.monitors.first()?;
        let (mut left, mut top) = (i64::from(first.x), i64::from(first.y));
        let (mut right, mut bottom) = (left, top);
        for m in &self.monitors {
            left = left.min(i64::from(m.x));
            top = top.min(i64::from(m.y));
            right = right.max(i64::from(m.x) + i64::from(m.width));
            bottom = bottom.max(i64::from(m.y) + i64::from(m.height));
        }
        let clamp = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
        Some((clamp(right - left), clamp(bottom - top)))
    }

    /// A head's area in its own frame's pixels (the frame shows exactly that head).
    pub fn frame_rect(&self, id: u32) -> Option<Rect> {
        self.monitors
            .iter()
            .find(|m| m.id == id)
            .map(|m| Rect::full(m.width, m.height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u32, x: i32, y: i32, width: u32, height: u32) -> Monitor {
        Monitor {
            id,
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn layouts_from_untrusted_input() {
        let l = MonitorLayout::new(vec![m(1, 1024, 0, 800, 600), m(0, 0, 0, 1024, 768)]).unwrap();
        assert_eq!(l.monitors()[0].id, 0);
        assert_eq!(l.bounding_size(), Some((1824, 768)));
        assert_eq!(l.frame_rect(1), Some(Rect::full(800, 600)));
        assert_eq!(l.frame_rect(7), None);
        // Negative origins (a head left of the primary).
        let l = MonitorLayout::new(vec![m(0, 0, 0, 640, 480), m(1, -640, 100, 640, 480)]).unwrap();
        assert_eq!(l.bounding_size(), Some((1280, 580)));
        assert!(MonitorLayout::new(vec![m(0, 0, 0, 0, 480)]).is_none());
        assert!(MonitorLayout::new(vec![m(3, 0, 0, 1, 1), m(3, 5, 5, 1, 1)]).is_none());
        let many = (0..=MAX_MONITORS as u32)
            .map(|i| m(i, 0, 0, 1, 1))
            .collect();
        assert!(MonitorLayout::new(many).is_none());
        assert_eq!(MonitorLayout::default().bounding_size(), None);
        assert_eq!(
            MonitorLayout::single(800, 600).monitors(),
            &[m(0, 0, 0, 800, 600)]
        );
    }
}
