//! JPEG through the server to the test client (which decodes it with
//! jpeg-decoder): photo-like copies go lossy under `JpegMode::Always`, within
//! a PSNR bound; UI copies and the flat screen stay exact; a lossy copy is
//! cached (CACHE_ME) and drawn again from the cache.

use super::*;
use crate::image::samples::{desktop_text, photo};
use crate::proto::IMAGE_TYPE_JPEG;
use crate::{Draw, ImageCopy, JpegMode};

fn frame(width: u32, height: u32, pixels: Vec<u32>) -> Frame {
    Frame {
        width,
        height,
        pixels,
    }
}

fn start_jpeg(mode: JpegMode) -> SpiceServer {
    let rec = Arc::new(Recorder::default());
    let config = Config {
        jpeg: mode,
        ..config(None)
    };
    SpiceServer::start(config, ports(&rec)).unwrap()
}

/// PSNR (dB) of `got` against `want` over the pixels where `inside` holds.
pub(super) fn psnr(
    got: &[u32],
    want: &[u32],
    width: u32,
    inside: impl Fn(u32, u32) -> bool,
) -> f64 {
    let (mut sum, mut n) = (0f64, 0u64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (x, y) = (i as u32 % width, i as u32 / width);
        if !inside(x, y) {
            continue;
        }
        for s in [0, 8, 16] {
            let d = f64::from((g >> s) & 0xff) - f64::from((w >> s) & 0xff);
            sum += d * d;
        }
        n += 3;
    }
    let mse = sum / n.max(1) as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// What the client ended with.
struct Seen {
    errors: Vec<String>,
    image_types: Vec<u8>,
    lossy_pixmaps: usize,
    cache_hits: u64,
}

/// Copies `images` one by one onto their places; returns what the client
/// saw and its picture.
fn run(mode: JpegMode, s: &mut Frame, copies: &[ImageCopy]) -> (Seen, Vec<u32>) {
    let server = start_jpeg(mode);
    server.update(s, &[full(s)], &[]);
    let c = TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap();
    wait_surface(&c, s);
    let before = c.state().draw_copies;
    for (i, copy) in copies.iter().enumerate() {
        Draw::Copy(copy.clone()).paint(s);
        server.update(s, &[], &[Draw::Copy(copy.clone())]);
        c.wait(T, |st| st.draw_copies > before + i as u64)
            .unwrap_or_else(|e| panic!("copy {i} never arrived: {e}"));
    }
    let st = c.state();
    let px = st.surface.as_ref().unwrap().pixels.clone();
    let seen = Seen {
        errors: st.errors.iter().map(|e| format!("{e:?}")).collect(),
        image_types: st.image_types.clone(),
        lossy_pixmaps: st.lossy_pixmaps.len(),
        cache_hits: st.cache_hits,
    };
    (seen, px)
}

#[test]
fn photo_copies_go_jpeg_and_ui_stays_exact() {
    let (w, h) = (320, 200);
    let mut s = frame(w, h, vec![0x00ee_eeee; (w * h) as usize]);
    let pic = Arc::new(frame(96, 64, photo(96, 64, 1)));
    let text = Arc::new(frame(96, 64, desktop_text(96, 64, 2)));
    let at = |x, y, image: &Arc<Frame>| ImageCopy {
        rect: Rect::new(x, y, 96, 64),
        src_x: 0,
        src_y: 0,
        image: image.clone(),
    };
    // The photo three times (plain, CACHE_ME, FROM_CACHE), the text twice.
    let copies = [
        at(0, 0, &pic),
        at(100, 0, &pic),
        at(200, 0, &pic),
        at(0, 100, &text),
        at(100, 100, &text),
        at(200, 100, &text),
    ];
    let in_photo = |x: u32, y: u32| y < 64 && x % 100 < 96 && x < 296;
    let (st, got) = run(JpegMode::Always, &mut s, &copies);
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    let q = psnr(&got, &s.pixels, w, in_photo);
    assert!(q > 30.0 && q.is_finite(), "photo copies at {q:.1} dB");
    let wrong = (0..w * h)
        .filter(|i| !in_photo(i % w, i / w) && got[*i as usize] != s.pixels[*i as usize])
        .count();
    assert_eq!(wrong, 0, "pixels outside the photos differ");
    let jpegs = st
        .image_types
        .iter()
        .filter(|t| **t == IMAGE_TYPE_JPEG)
        .count();
    assert_eq!(
        jpegs, 2,
        "the photo as JPEG, then with CACHE_ME: {:?}",
        st.image_types
    );
    assert_eq!(st.lossy_pixmaps, 1, "the photo's cached copy is lossy");
    assert!(
        st.cache_hits >= 2,
        "third photo and text copies from the cache"
    );

    // Never: all exact, no JPEG.
    let mut s = frame(w, h, vec![0x00ee_eeee; (w * h) as usize]);
    let (st, got) = run(JpegMode::Never, &mut s, &copies);
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!(got, s.pixels);
    assert!(!st.image_types.contains(&IMAGE_TYPE_JPEG));
    // Auto on a fast local link: lossless too.
    let mut s = frame(w, h, vec![0x00ee_eeee; (w * h) as usize]);
    let (st, got) = run(JpegMode::Auto, &mut s, &copies);
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!(got, s.pixels);
    assert!(!st.image_types.contains(&IMAGE_TYPE_JPEG));
}

/// The display channel's link estimate, as `clients()` reports it.
pub fn display_stats(server: &SpiceServer) -> crate::ChannelStats {
    server
        .clients()
        .into_iter()
        .find(|c| c.channel_type == crate::proto::channel::DISPLAY)
        .and_then(|c| c.stats)
        .expect("a display channel with stats")
}

/// The display channel's stats once it has a link estimate (the session's
/// net test runs on MAIN; the display adopts its result when it comes).
pub fn display_estimate(server: &SpiceServer) -> crate::ChannelStats {
    let deadline = std::time::Instant::now() + T;
    loop {
        let d = display_stats(server);
        if d.bandwidth_bps.is_some() && d.latency.is_some() {
            return d;
        }
        assert!(std::time::Instant::now() < deadline, "no estimate: {d:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Auto: a client behind a slow link (the test client's simulated 2 Mbit/s)
/// is found slow by the net test at connect, so photo copies go JPEG (and
/// the cache records the lossy copy); once the link is fast, the acks of
/// the next big updates say so (the idle link's net test would too, but
/// only a minute later), and the photo must be exact again: the cached
/// lossy copy is replaced (CACHE_REPLACE_ME) and hits are lossless.
#[test]
fn auto_goes_lossy_on_a_slow_link_and_replaces_lossy_copies_after() {
    lossy_then_exact(true);
}

/// The same for a client without COMPOSITE (spice-html5, which ignores
/// CACHE_REPLACE_ME): the lossy copy is invalidated and cached anew.
#[test]
fn a_client_without_composite_gets_lossy_copies_invalidated_not_replaced() {
    lossy_then_exact(false);
}

fn lossy_then_exact(composite: bool) {
    use crate::channel::link_meter::SLOW_BPS;
    use std::time::Instant;
    let (w, h) = (320, 200);
    let server = start_jpeg(JpegMode::Auto);
    let mut s = frame(w, h, vec![0x00ee_eeee; (w * h) as usize]);
    server.update(&s, &[full(&s)], &[]);
    let opts = ClientOptions {
        link_bps: Some(2e6),
        composite,
        ..ClientOptions::default()
    };
    let c = TestClient::connect(&server.local_addr(), opts).unwrap();
    wait_surface(&c, &s);
    let slow = display_estimate(&server);
    let bps = slow.bandwidth_bps.expect("estimated") as f64;
    assert!(bps > 1.5e6 && bps < 2.5e6, "{slow:?}");
    assert!(slow.latency.is_some(), "{slow:?}");

    let pic = Arc::new(frame(96, 64, photo(96, 64, 3)));
    let copy = |x: u32, s: &mut Frame, c: &TestClient| {
        let before = c.state().draw_copies;
        let cp = ImageCopy {
            rect: Rect::new(x, 0, 96, 64),
            src_x: 0,
            src_y: 0,
            image: pic.clone(),
        };
        Draw::Copy(cp.clone()).paint(s);
        server.update(s, &[], &[Draw::Copy(cp)]);
        c.wait(T, |st| st.draw_copies > before).unwrap();
    };
    copy(0, &mut s, &c);
    copy(100, &mut s, &c);
    {
        let st = c.state();
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        let jpegs = st
            .image_types
            .iter()
            .filter(|t| **t == IMAGE_TYPE_JPEG)
            .count();
        assert_eq!(
            jpegs, 2,
            "slow link: the photo went JPEG: {:?}",
            st.image_types
        );
        assert_eq!(st.lossy_pixmaps.len(), 1);
    }
    assert_eq!(display_stats(&server).codecs[3], ("jpeg", 2));
    // The link gets fast; updates big enough to be measured (noise below
    // the copies, which nothing compresses) show it.
    c.set_link_bps(None);
    let deadline = Instant::now() + T;
    let below = Rect::new(0, 64, w, h - 64);
    let mut seed = 1u32;
    while display_stats(&server).bandwidth_bps.unwrap_or(0) as f64 <= SLOW_BPS {
        assert!(Instant::now() < deadline, "{:?}", display_stats(&server));
        for y in below.y..h {
            for x in 0..w {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                s.pixels[(y * w + x) as usize] = seed >> 8;
            }
        }
        // As fast as the server can send: a rate the link is not asked
        // for is not measured.
        server.update(&s, &[below], &[]);
        std::thread::sleep(Duration::from_millis(5));
    }
    // Copies made now must arrive exact: wait for their pixels (the draw
    // count alone may move with a noise image still on its way).
    let exact_copy = |x: u32, s: &mut Frame, c: &TestClient| {
        let cp = ImageCopy {
            rect: Rect::new(x, 0, 96, 64),
            src_x: 0,
            src_y: 0,
            image: pic.clone(),
        };
        Draw::Copy(cp.clone()).paint(s);
        server.update(s, &[], &[Draw::Copy(cp)]);
        let want = s.clone();
        let at = |f: &[u32], px: u32, py: u32| f[(py * w + px) as usize];
        let arrived = c.wait(T, |st| {
            st.surface.as_ref().is_some_and(|f| {
                (0..64)
                    .all(|y| (x..x + 96).all(|px| at(&f.pixels, px, y) == at(&want.pixels, px, y)))
            })
        });
        assert!(arrived.is_ok(), "the copy at x={x} did not arrive exact");
    };
    exact_copy(200, &mut s, &c);
    exact_copy(0, &mut s, &c);
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!(
        st.cache_replaces,
        u64::from(composite),
        "the lossy copy was replaced"
    );
    assert!(st.lossy_pixmaps.is_empty());
    let got = &st.surface.as_ref().unwrap().pixels;
    // The copies after the link got fast are exact; the one at x=100 stays lossy.
    let exact = |x: u32, y: u32| y < 64 && (x < 96 || (200..296).contains(&x));
    let lossy = |x: u32, y: u32| y < 64 && (100..196).contains(&x);
    assert_eq!(psnr(got, &s.pixels, w, exact), f64::INFINITY);
    let q = psnr(got, &s.pixels, w, lossy);
    assert!(q > 30.0 && q.is_finite(), "{q:.1} dB");
}
