//! Display: the client's copy of the surface follows update(), resizes, and a still
//! server sends nothing.

use super::*;
use crate::proto::{IMAGE_TYPE_BITMAP, IMAGE_TYPE_GLZ_RGB, IMAGE_TYPE_LZ4, IMAGE_TYPE_LZ_RGB};
use std::sync::Arc;

use crate::client::ClientOptions;
use crate::{Draw, ImageCopy, SolidFill};

#[test]
fn initial_full_update_then_partial_updates() {
    let (server, _) = start(None);
    let s1 = picture(200, 150, 1);
    server.update(&s1, &[full(&s1)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s1);
    c.wait(T, |s| s.marks == 1 && s.surface_creates == 1)
        .unwrap();
    // Partial: every pixel changes, but only two rectangles are reported. The
    // client must end up with the new pixels inside them and the old ones
    // everywhere else: a DRAW_COPY reaching outside the dirty rectangles would
    // bring new pixels there.
    let r1 = Rect {
        x: 10,
        y: 20,
        width: 30,
        height: 5,
    };
    let r2 = Rect {
        x: 150,
        y: 100,
        width: 50,
        height: 50,
    };
    let inside = |x: u32, y: u32| {
        [r1, r2]
            .iter()
            .any(|r| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height)
    };
    let s2 = Frame {
        width: 200,
        height: 150,
        pixels: s1.pixels.iter().map(|p| p ^ 0x00ff_ffff).collect(),
    };
    let expect = Frame {
        width: 200,
        height: 150,
        pixels: (0..150u32)
            .flat_map(|y| (0..200u32).map(move |x| (x, y)))
            .map(|(x, y)| {
                let i = (y * 200 + x) as usize;
                if inside(x, y) {
                    s2.pixels[i]
                } else {
                    s1.pixels[i]
                }
            })
            .collect(),
    };
    let before = c.state().draw_copies;
    server.update(&s2, &[r1, r2], &[]);
    wait_surface(&c, &expect);
    // Nothing else arrives later either.
    std::thread::sleep(Duration::from_millis(300));
    wait_surface(&c, &expect);
    let st = c.state();
    assert!(
        st.draw_copies - before <= 2,
        "only the dirty rectangles are sent"
    );
    assert_eq!(st.surface_creates, 1);
    assert!(st.errors.is_empty());
}

#[test]
fn resize_recreates_the_primary_surface() {
    let (server, _) = start(None);
    let a = picture(100, 80, 3);
    server.update(&a, &[full(&a)], &[]);
    let c = connect(&server);
    wait_surface(&c, &a);
    let b = picture(320, 200, 4);
    // Dirty rectangles of a resize are irrelevant: the whole new surface is sent.
    server.update(&b, &[], &[]);
    wait_surface(&c, &b);
    c.wait(T, |s| {
        s.surface_destroys == 1 && s.surface_creates == 2 && s.marks == 2
    })
    .unwrap();
    let small = picture(17, 9, 5);
    server.update(&small, &[full(&small)], &[]);
    wait_surface(&c, &small);
}

#[test]
fn client_connecting_before_the_first_frame_gets_it() {
    let (server, _) = start(None);
    let c = connect(&server);
    c.wait(T, |s| s.cursor_init.is_some()).unwrap();
    assert!(c.state().surface.is_none());
    let s = picture(64, 64, 9);
    server.update(&s, &[full(&s)], &[]);
    wait_surface(&c, &s);
}

#[test]
fn still_server_sends_no_draw_copy() {
    let (server, _) = start(None);
    let s = picture(128, 96, 2);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    c.wait(T, |s| s.marks == 1).unwrap();
    let n = c.state().draw_copies;
    // Updates with nothing dirty, and none at all.
    server.update(&s, &[], &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.state().draw_copies, n);
    assert_eq!(c.state().draw_copies, 1);
}

#[test]
fn out_of_bounds_and_empty_dirty_rects_are_clipped() {
    let (server, _) = start(None);
    let s = picture(50, 40, 6);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    let s2 = picture(50, 40, 7);
    server.update(
        &s2,
        &[
            Rect {
                x: 0,
                y: 0,
                width: 0,
                height: 10,
            },
            Rect {
                x: 60,
                y: 0,
                width: 10,
                height: 10,
            },
            Rect {
                x: 0,
                y: 0,
                width: u32::MAX,
                height: u32::MAX,
            },
        ],
        &[],
    );
    wait_surface(&c, &s2);
}

#[test]
fn many_small_rects_fall_back_to_fewer_draws() {
    let (server, _) = start(None);
    let s = picture(400, 300, 1);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    let before = c.state().draw_copies;
    // 300 small rectangles and no full one; only they change, so whatever the
    // server merges them into, the client must end up with exactly `s2`.
    let rects: Vec<Rect> = (0..300)
        .map(|i| Rect {
            x: (i * 13) % 390,
            y: (i * 7) % 290,
            width: 10,
            height: 10,
        })
        .collect();
    let mut px = s.pixels.to_vec();
    for r in &rects {
        for y in r.y..r.y + r.height {
            for x in r.x..r.x + r.width {
                px[(y * 400 + x) as usize] = 0x00ff_ffff ^ s.pixels[(y * 400 + x) as usize];
            }
        }
    }
    let s2 = Frame {
        width: 400,
        height: 300,
        pixels: px,
    };
    server.update(&s2, &rects, &[]);
    wait_surface(&c, &s2);
    let st = c.state();
    assert!(
        st.draw_copies - before <= 16,
        "{} draws for 300 small rectangles",
        st.draw_copies - before
    );
    assert!(st.errors.is_empty());
}

#[test]
fn image_encodings_follow_client_caps_and_config() {
    let s = picture(256, 128, 11);
    // An LZ4 client gets LZ4 only where LZ did poorly (over half the raw size)
    // and LZ4 came out smaller.
    let lz_len = crate::image::lz_rgb32(s.width, s.height, &s.pixels).len();
    let lz4_len = crate::image::lz4_rgb32(s.width, s.height, &s.pixels).len();
    let raw_len = s.pixels.len() * 4;
    // GLZ (the default, auto_glz) where the client announces a window; the
    // first image has nothing earlier to copy from.
    let glz_len = crate::image::GlzDictionary::new(1 << 20)
        .and_then(|mut d| d.encode(0, s.width, s.height, &s.pixels))
        .map(|i| i.data.len())
        .unwrap();
    let lossless = |glz: bool, lz4: bool| {
        let first = if glz { glz_len } else { lz_len };
        if lz4 && first * 2 > raw_len && lz4_len < first {
            IMAGE_TYPE_LZ4
        } else if glz {
            IMAGE_TYPE_GLZ_RGB
        } else {
            IMAGE_TYPE_LZ_RGB
        }
    };
    for (lz4, window, force_raw, expect) in [
        (true, 0, false, lossless(false, true)),
        (false, 0, false, IMAGE_TYPE_LZ_RGB),
        (true, 1 << 20, false, lossless(true, true)),
        (false, 1 << 20, false, IMAGE_TYPE_GLZ_RGB),
        (true, 1 << 20, true, IMAGE_TYPE_BITMAP),
    ] {
        let (server, _) = start_with(None, force_raw);
        server.update(&s, &[full(&s)], &[]);
        let c = TestClient::connect(
            &server.local_addr(),
            ClientOptions {
                lz4,
                glz_window: window,
                ..ClientOptions::default()
            },
        )
        .unwrap();
        wait_surface(&c, &s);
        assert_eq!(
            c.state().image_types,
            vec![expect],
            "lz4 {lz4} window {window} raw {force_raw}"
        );
    }
}

#[test]
fn resize_back_to_the_old_size_redraws() {
    // A (100x80) → B (320x200) → A2 (100x80) faster than the display task runs
    // (`channel::display` unit tests pin that interleaving down); whatever the
    // task sees, the client must end with A2.
    let (server, _) = start(None);
    let a = picture(100, 80, 3);
    server.update(&a, &[full(&a)], &[]);
    let c = connect(&server);
    wait_surface(&c, &a);
    for i in 0..20 {
        let b = picture(320, 200, 100 + i);
        let a2 = picture(100, 80, 200 + i);
        server.update(&b, &[], &[]);
        server.update(&a2, &[full(&a2)], &[]);
        wait_surface(&c, &a2);
    }
    assert!(c.state().errors.is_empty());
}

#[test]
fn malformed_surfaces_are_dropped_and_the_display_goes_on() {
    let (server, _) = start(None);
    let bad = |width, height, len| Frame {
        width,
        height,
        pixels: vec![0x00ff_0000; len],
    };
    // Before any client: dropped, so the first client does not get it.
    server.update(&bad(64, 64, 10), &[], &[]);
    let c = connect(&server);
    c.wait(T, |s| s.cursor_init.is_some()).unwrap();
    let s = picture(64, 48, 1);
    server.update(&s, &[full(&s)], &[]);
    wait_surface(&c, &s);
    // Too few pixels, too many, nothing at all, a size that does not fit a usize
    // product on 32-bit hosts: the client keeps the last good frame.
    server.update(&bad(64, 48, 64 * 48 - 1), &[full(&s)], &[]);
    server.update(&bad(64, 48, 64 * 48 + 1), &[full(&s)], &[]);
    server.update(&bad(0, 0, 0), &[], &[]);
    server.update(&bad(u32::MAX, u32::MAX, 4), &[], &[]);
    server.update(&bad(200, 100, 64 * 48), &[], &[]);
    let s2 = picture(64, 48, 2);
    server.update(&s2, &[full(&s2)], &[]);
    wait_surface(&c, &s2);
    let st = c.state();
    assert_eq!(st.surface_creates, 1);
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert!(st.closed.is_empty(), "{:?}", st.closed);
}

#[test]
fn guest_cursor_reaches_the_cursor_channel() {
    use crate::client::decode::ServerMsg;
    use crate::proto::cursor_msg;
    use crate::CursorUpdate;
    let (server, _) = start(None);
    let s1 = picture(64, 48, 1);
    server.update(&s1, &[full(&s1)], &[]);
    // Defined before the client connects: CURSOR_INIT carries it.
    let shape = crate::CursorShape {
        width: 4,
        height: 2,
        hot_x: 1,
        hot_y: 1,
        pixels: (0..8).map(|i| 0xff00_0000 | i).collect(),
    };
    server.cursor_update(
        0,
        CursorUpdate::Set {
            shape: shape.clone(),
            x: 5,
            y: 6,
            visible: true,
        },
    );
    let c = connect(&server);
    c.wait(T, |s| {
        matches!(
            s.cursor_init,
            Some(ServerMsg::CursorInit {
                visible: true,
                width: 4,
                height: 2
            })
        )
    })
    .unwrap();
    server.cursor_update(0, CursorUpdate::Move { x: 30, y: 20 });
    c.wait(T, |s| {
        s.cursor.contains(&ServerMsg::CursorMove { x: 30, y: 20 })
    })
    .unwrap();
    server.cursor_update(0, CursorUpdate::Hide);
    c.wait(T, |s| {
        s.cursor.contains(&ServerMsg::CursorOther(cursor_msg::HIDE))
    })
    .unwrap();
    // Shown again by a move: the shape is sent again with the new position.
    server.cursor_update(0, CursorUpdate::Move { x: 1, y: 2 });
    c.wait(T, |s| {
        s.cursor.iter().any(|m| {
            *m == ServerMsg::CursorSet {
                x: 1,
                y: 2,
                visible: true,
                width: 4,
                height: 2,
                first_pixel: 0xff00_0000,
            }
        })
    })
    .unwrap();
    // An invalid shape (hot spot outside) is ignored; a reset brings the arrow.
    server.cursor_update(
        0,
        CursorUpdate::Set {
            shape: crate::CursorShape { hot_x: 9, ..shape },
            x: 0,
            y: 0,
            visible: true,
        },
    );
    server.cursor_update(0, CursorUpdate::Reset);
    c.wait(T, |s| {
        s.cursor
            .iter()
            .filter(|m| matches!(m, ServerMsg::CursorSet { .. }))
            .count()
            == 2
            && matches!(s.cursor.last(), Some(ServerMsg::CursorSet { x: 0, y: 0, width, .. }) if *width != 4)
    })
    .unwrap();
    assert!(c.state().errors.is_empty(), "{:?}", c.state().errors);
}

/// Solid fills reach the client as DRAW_FILLs, not images, and a region drawn
/// over a fill later (a dirty rectangle) ends with the newer pixels.
#[test]
fn fills_are_forwarded_as_draw_fills_in_order() {
    let (server, _) = start(None);
    let mut s = picture(120, 90, 11);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    let copies = c.state().draw_copies;
    let paint = |f: &mut Frame, r: Rect, color: u32| {
        for y in r.y..r.y + r.height {
            for x in r.x..r.x + r.width {
                f.pixels[(y * f.width + x) as usize] = color;
            }
        }
    };
    let a = SolidFill {
        rect: Rect::new(10, 10, 50, 40),
        color: 0x00aa_5500,
    };
    let b = SolidFill {
        rect: Rect::new(30, 20, 60, 60),
        color: 0x0000_77ff,
    };
    paint(&mut s, a.rect, a.color);
    paint(&mut s, b.rect, b.color);
    server.update(&s, &[], &[Draw::Fill(a), Draw::Fill(b)]);
    wait_surface(&c, &s);
    let st = c.state();
    assert_eq!(st.draw_fills, 2);
    assert_eq!(st.draw_copies, copies, "a forwarded fill sends no image");
    drop(st);
    // Fill, then something else drawn over part of it, in one update: the
    // fill first, then the image of the newest pixels.
    let f = SolidFill {
        rect: Rect::new(0, 0, 100, 50),
        color: 0x0012_3456,
    };
    paint(&mut s, f.rect, f.color);
    let over = Rect::new(40, 30, 20, 40);
    paint(&mut s, over, 0x00ff_ffff);
    server.update(&s, &[over], &[Draw::Fill(f)]);
    wait_surface(&c, &s);
    let st = c.state();
    assert_eq!(st.draw_fills, 3);
    assert!(st.errors.is_empty(), "{:?}", st.errors);
}

/// Copies `image` from (sx, sy) onto `r` of `f`, as the device did.
fn paint_copy(f: &mut Frame, c: &ImageCopy) {
    Draw::Copy(c.clone()).paint(f);
}

/// A bitmap the guest copies again and again reaches the client as pixels
/// once, with CACHE_ME the second time, and as FROM_CACHE after that; the
/// client's picture is right throughout, including copies of a part of it.
#[test]
fn repeated_image_copies_come_from_the_client_cache() {
    let (server, _) = start(None);
    let mut s = picture(160, 120, 3);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    let sprite = Arc::new(picture(24, 16, 9));
    for i in 0..6u32 {
        let copy = ImageCopy {
            rect: Rect::new(10 + i * 20, 5 + i * 15, 24, 16),
            src_x: 0,
            src_y: 0,
            image: sprite.clone(),
        };
        paint_copy(&mut s, &copy);
        server.update(&s, &[], &[Draw::Copy(copy)]);
        wait_surface(&c, &s);
    }
    // Part of the sprite: that part is sent (spice-html5 ignores src_area,
    // so images are never sent with an offset into them).
    let part = ImageCopy {
        rect: Rect::new(100, 2, 20, 12),
        src_x: 4,
        src_y: 4,
        image: sprite.clone(),
    };
    paint_copy(&mut s, &part);
    server.update(&s, &[], &[Draw::Copy(part)]);
    wait_surface(&c, &s);
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!(st.pixmaps.len(), 1, "the sprite is cached once");
    assert_eq!(st.cache_hits, 4, "copies 3 to 6 come from the cache");
}

/// A small cache: the least recently used image is invalidated before a new
/// one takes its room, and the client never draws an image it does not hold.
#[test]
fn a_full_pixmap_cache_evicts_with_inval_list() {
    let (server, _) = start(None);
    let mut s = picture(200, 100, 5);
    server.update(&s, &[full(&s)], &[]);
    let opts = ClientOptions {
        pixmap_cache: 2000,
        ..ClientOptions::default()
    };
    let c = TestClient::connect(&server.local_addr(), opts).unwrap();
    wait_surface(&c, &s);
    // Four 30x30 sprites (900 pixels each); the cache holds two.
    let sprites: Vec<Arc<Frame>> = (0..4).map(|i| Arc::new(picture(30, 30, 40 + i))).collect();
    for round in 0..3u32 {
        for (i, img) in sprites.iter().enumerate() {
            let copy = ImageCopy {
                rect: Rect::new(i as u32 * 40 + round, round * 30, 30, 30),
                src_x: 0,
                src_y: 0,
                image: img.clone(),
            };
            paint_copy(&mut s, &copy);
            server.update(&s, &[], &[Draw::Copy(copy)]);
            wait_surface(&c, &s);
        }
    }
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert!(
        st.pixmaps.len() <= 2,
        "cache over budget: {}",
        st.pixmaps.len()
    );
    let held: u64 = st.pixmaps.values().map(|(w, h, _)| u64::from(w * h)).sum();
    assert!(held <= 2000);
}

/// A dirty rectangle whose pixels come back (a blinking cursor's two
/// pictures) is cached too.
#[test]
fn repeated_dirty_rectangles_are_cached() {
    let (server, _) = start(None);
    let a = picture(64, 48, 1);
    let mut b = a.clone();
    let r = Rect::new(8, 8, 8, 16);
    for y in r.y..r.y + r.height {
        for x in r.x..r.x + r.width {
            b.pixels[(y * 64 + x) as usize] = 0x00ff_ffff;
        }
    }
    server.update(&a, &[full(&a)], &[]);
    let c = connect(&server);
    wait_surface(&c, &a);
    for i in 0..6 {
        let f = if i % 2 == 0 { &b } else { &a };
        server.update(f, &[r], &[]);
        wait_surface(&c, f);
    }
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    // Each picture: plain, CACHE_ME, then from the cache.
    assert_eq!(st.cache_hits, 2);
}

/// One drawable cut by two clip rectangles, drawn three times: each part is
/// sent as its own image of its box's size, cached the second time, and
/// drawn from the cache the third.
#[test]
fn clipped_parts_of_a_copy_are_sent_and_cached_as_parts() {
    let (server, _) = start(None);
    let mut s = picture(100, 80, 2);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    let img = Arc::new(picture(40, 20, 8));
    let parts = [
        ImageCopy {
            rect: Rect::new(10, 10, 25, 20),
            src_x: 0,
            src_y: 0,
            image: img.clone(),
        },
        ImageCopy {
            rect: Rect::new(37, 10, 13, 20),
            src_x: 27,
            src_y: 0,
            image: img.clone(),
        },
    ];
    for round in 0..3 {
        // Something else in between, so each round changes the picture.
        let other = SolidFill {
            rect: Rect::new(10, 10, 40, 20),
            color: round,
        };
        Draw::Fill(other).paint(&mut s);
        for p in &parts {
            paint_copy(&mut s, p);
        }
        let mut draws = vec![Draw::Fill(other)];
        draws.extend(parts.clone().map(Draw::Copy));
        server.update(&s, &[], &draws);
        wait_surface(&c, &s);
    }
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!((st.pixmaps.len(), st.cache_hits), (2, 2));
}

#[test]
fn glz_updates_copy_from_earlier_images_and_decode_exactly() {
    let (server, _) = start(None);
    let mut s = Frame {
        width: 320,
        height: 200,
        pixels: crate::image::samples::desktop_text(320, 200, 3),
    };
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    let display_bytes = || {
        server
            .clients()
            .iter()
            .filter(|c| c.channel_type == crate::proto::channel::DISPLAY)
            .filter_map(|c| c.stats.as_ref().map(|s| s.bytes_sent))
            .sum::<u64>()
    };
    let first = display_bytes();
    // Scrolled by 10 rows, five times, each a full update: every image
    // copies most of itself from the one before.
    for _ in 0..5 {
        s.pixels.rotate_left(10 * 320);
        server.update(&s, &[full(&s)], &[]);
        wait_surface(&c, &s);
    }
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!(st.image_types, vec![IMAGE_TYPE_GLZ_RGB; 6]);
    // The client holds the images the server may still copy from.
    assert_eq!(st.glz.ids(), (0..6).collect::<Vec<u64>>());
    let scrolls = display_bytes() - first;
    // On average a scroll is under a third of the first picture (as SPICE
    // LZ each would be about as big as it).
    assert!(
        scrolls * 3 < first * 5,
        "5 scrolls {scrolls} B, first {first} B"
    );
}
