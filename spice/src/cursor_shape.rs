//! The default pointer: a small white arrow with a black outline, as an ALPHA cursor
//! (B,G,R,A bytes per pixel). In server mouse mode the client hides its own pointer,
//! so without this the user would see none.

pub const WIDTH: u16 = 12;
pub const HEIGHT: u16 = 19;

/// Is (x, y) inside the arrow: a triangle with a short tail.
fn inside(x: i32, y: i32) -> bool {
    let head = y < 13 && x <= y && x <= 12 - y / 2 + 4 - 4;
    let tail = (12..19).contains(&y) && (y - 12) / 2 + 4 <= x && x <= (y - 12) / 2 + 6;
    (0..WIDTH as i32).contains(&x) && (head || tail)
}

/// Pixels, row-major, B,G,R,A.
pub fn arrow() -> Vec<u8> {
    let mut out = Vec::with_capacity(WIDTH as usize * HEIGHT as usize * 4);
    for y in 0..HEIGHT as i32 {
        for x in 0..WIDTH as i32 {
            let px: [u8; 4] = if !inside(x, y) {
                [0, 0, 0, 0]
            } else if [(-1, 0), (1, 0), (0, -1), (0, 1)]
                .iter()
                .all(|(dx, dy)| inside(x + dx, y + dy))
            {
                [255, 255, 255, 255]
            } else {
                [0, 0, 0, 255]
            };
            out.extend_from_slice(&px);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn arrow_has_outline_and_fill() {
        let a = super::arrow();
        assert_eq!(a.len(), 12 * 19 * 4);
        let opaque = a.chunks(4).filter(|p| p[3] == 255).count();
        let white = a.chunks(4).filter(|p| p == &[255, 255, 255, 255]).count();
        assert!(opaque > 40 && white > 10, "opaque {opaque} white {white}");
        // The hot spot (0,0) is drawn.
        assert_eq!(a[3], 255);
    }
}
