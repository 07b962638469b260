//! The default pointer: a small white arrow with a black outline. In server mouse
//! mode the client hides its own pointer, so without this the user would see none.

use crate::CursorShape;

const WIDTH: u16 = 12;
const HEIGHT: u16 = 19;

/// Is (x, y) inside the arrow: a triangle with a short tail.
fn inside(x: i32, y: i32) -> bool {
    let head = y < 13 && x <= y && x <= 12 - y / 2 + 4 - 4;
    let tail = (12..19).contains(&y) && (y - 12) / 2 + 4 <= x && x <= (y - 12) / 2 + 6;
    (0..WIDTH as i32).contains(&x) && (head || tail)
}

/// The arrow, hot spot at its tip (0, 0).
pub fn arrow() -> CursorShape {
    let mut pixels = Vec::with_capacity(WIDTH as usize * HEIGHT as usize);
    for y in 0..HEIGHT as i32 {
        for x in 0..WIDTH as i32 {
            pixels.push(if !inside(x, y) {
                0
            } else if [(-1, 0), (1, 0), (0, -1), (0, 1)]
                .iter()
                .all(|(dx, dy)| inside(x + dx, y + dy))
            {
                0xffff_ffff
            } else {
                0xff00_0000
            });
        }
    }
    CursorShape {
        width: WIDTH,
        height: HEIGHT,
        hot_x: 0,
        hot_y: 0,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn arrow_has_outline_and_fill() {
        let a = super::arrow();
        assert!(a.is_valid());
        assert_eq!((a.width, a.height), (12, 19));
        let opaque = a.pixels.iter().filter(|p| *p >> 24 == 0xff).count();
        let white = a.pixels.iter().filter(|p| **p == 0xffff_ffff).count();
        assert!(opaque > 40 && white > 10, "opaque {opaque} white {white}");
        // The hot spot (0,0) is drawn.
        assert_eq!(a.pixels[0] >> 24, 0xff);
    }
}
