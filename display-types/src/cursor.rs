//! Pointer images: what a guest defines (QXL cursor commands, virtio-gpu cursor
//! updates) and what a frontend shows (SPICE CURSOR_SET / CURSOR_INIT).

/// Largest cursor accepted, as spice-server's and QXL's limits (larger guest
/// shapes are refused rather than allocated).
pub const MAX_CURSOR_SIDE: u16 = 512;

/// A pointer image: `pixels[y * width + x]` = 0xAARRGGBB (straight alpha), the
/// hot spot (the pixel that points) at (`hot_x`, `hot_y`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CursorShape {
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    pub pixels: Vec<u32>,
}

impl CursorShape {
    /// Size within bounds, hot spot inside, and exactly `width * height` pixels.
    pub fn is_valid(&self) -> bool {
        (1..=MAX_CURSOR_SIDE).contains(&self.width)
            && (1..=MAX_CURSOR_SIDE).contains(&self.height)
            && self.hot_x < self.width
            && self.hot_y < self.height
            && self.pixels.len() == usize::from(self.width) * usize::from(self.height)
    }

    /// B, G, R, A bytes per pixel (ARGB32 little-endian), as SPICE's ALPHA cursor
    /// type and most cursor formats carry it.
    pub fn bgra_bytes(&self) -> Vec<u8> {
        self.pixels.iter().flat_map(|p| p.to_le_bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_and_bytes() {
        let c = CursorShape {
            width: 2,
            height: 1,
            hot_x: 1,
            hot_y: 0,
            pixels: vec![0xff11_2233, 0x0000_0000],
        };
        assert!(c.is_valid());
        assert_eq!(c.bgra_bytes(), vec![0x33, 0x22, 0x11, 0xff, 0, 0, 0, 0]);
        let outside = CursorShape {
            hot_x: 2,
            ..c.clone()
        };
        assert!(!outside.is_valid());
        let short = CursorShape {
            pixels: vec![0],
            ..c.clone()
        };
        assert!(!short.is_valid());
        let huge = CursorShape {
            width: MAX_CURSOR_SIDE + 1,
            ..c
        };
        assert!(!huge.is_valid());
        assert!(!CursorShape::default().is_valid());
    }
}
