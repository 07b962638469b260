//! COPY_BITS: screen-to-screen copies reach the client as copies, and the
//! client's picture stays exact when a copy's source is not current there.

use super::*;
use crate::{BitsCopy, Draw};

/// Paints `r` of `f` with a pattern seeded by `seed` (what a guest redraws).
fn paint(f: &mut Frame, r: Rect, seed: u32) {
    for y in r.y..r.y + r.height {
        for x in r.x..r.x + r.width {
            f.pixels[(y * f.width + x) as usize] = (x * 3 + y * 5 + seed * 0x1_0101) & 0x00ff_ffff;
        }
    }
}

/// The copy as the device did it, and its draw.
fn copy(f: &mut Frame, rect: Rect, src_x: u32, src_y: u32) -> Draw {
    let d = Draw::CopyBits(BitsCopy { rect, src_x, src_y });
    d.paint(f);
    d
}

/// A window dragged right and down a step at a time: each step is a
/// COPY_BITS of the window plus an image of the strips it left, not an
/// image of the window.
#[test]
fn window_drags_go_as_copy_bits() {
    let (server, _) = start(None);
    let mut s = picture(200, 150, 4);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    let base = c.state().draw_copies;
    let (w, h) = (60, 40);
    for i in 0..10u32 {
        let (x, y) = (10 + i * 4, 20 + i * 2);
        let d = copy(&mut s, Rect::new(x + 4, y + 2, w, h), x, y);
        // The uncovered L: a column strip and a row strip.
        let left = Rect::new(x, y, 4, h);
        let top = Rect::new(x, y, w, 2);
        paint(&mut s, left, i);
        paint(&mut s, top, i);
        server.update(&s, &[left, top], &[d]);
        wait_surface(&c, &s);
    }
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!(st.copy_bits, 10);
    assert!(
        st.draw_copies - base <= 20,
        "only the strips go as images: {}",
        st.draw_copies - base
    );
}

/// Copies whose sources the client does not have yet (dirty rectangles not
/// sent because the link is slow and the ack window full) must not be
/// copied on the client: the picture ends exact however the updates and
/// the sending interleave.
#[test]
fn copy_bits_stay_exact_over_a_slow_link() {
    let mut s = picture(160, 120, 6);
    let (server, c) = lossless_behind_slow_link(&s, 4e6);
    for i in 0..200u32 {
        // A changed area that some copies read soon after, and a scroll of
        // a band through it.
        let dirty = Rect::new((i * 37) % 120, (i * 23) % 90, 40, 30);
        paint(&mut s, dirty, i);
        let band = Rect::new(0, (i * 11) % 60, 160, 60);
        let d = copy(&mut s, Rect::new(band.x, band.y, 160, 59), 0, band.y + 1);
        let dirty2 = Rect::new((i * 13) % 140, 100, 20, 20);
        paint(&mut s, dirty2, i + 1000);
        server.update(&s, &[dirty], &[]);
        server.update(&s, &[dirty2], &[d]);
        if i % 50 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    wait_surface(&c, &s);
    // Nothing still on its way undoes it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!(st.surface.as_ref().unwrap().pixels, s.pixels);
}

/// A copy of an area whose new pixels were reported just before, in an
/// earlier update the client has not been sent yet: the copy's destination
/// reaches the client as pixels, never as a copy of the old ones.
#[test]
fn a_copy_of_pixels_not_yet_sent_goes_as_pixels() {
    let (server, _) = start(None);
    let mut s = picture(200, 120, 7);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    for i in 0..8u32 {
        let changed = Rect::new(i * 24, 0, 16, 16);
        paint(&mut s, changed, i);
        server.update(&s, &[changed], &[]);
        let d = copy(&mut s, Rect::new(i * 24, 100, 16, 16), i * 24, 0);
        server.update(&s, &[], &[d]);
    }
    wait_surface(&c, &s);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!(st.surface.as_ref().unwrap().pixels, s.pixels);
}
