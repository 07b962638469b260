//! End-to-end: lossy images where they pay. The qxl-native test guest
//! animates a smooth-gradient sprite (photo-like) over a flat background
//! with solid fills (UI-like). With `--spice-jpeg always` spicebox sends the
//! sprite as JPEG: the picture a SpiceClientGLib client that watched the
//! animation ends with must match the lossless picture within a PSNR bound
//! on the sprite, exactly everywhere else; a spicy-screenshot taken after
//! (the whole screen, not photo-like) is exact; tshark decodes the session
//! without a malformed packet. QEMU with `jpeg-wan-compression=always` runs
//! the same guest and must meet the same bounds.
//!
//! With `auto` (both servers) the choice follows the link: a client behind a
//! 2 Mbit/s, 50 ms proxy (`SlowLink`) is measured slow and gets the sprite
//! lossy, a local one gets it exact; spicebox's QMP `query-spice` shows the
//! display channel's traffic, latency, link verdict and images per codec.

use std::time::Duration;

use images::qxl_scene;
use serde_json::json;
use spicebox_tests::glib_client::LiveGlibClient;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::qxl_native::{self, Boot};
use spicebox_tests::screen::{self, Frame};
use spicebox_tests::slow_link::SlowLink;
use spicebox_tests::tools::{require_spice_client_glib, spicy_screenshot};
use spicebox_tests::tshark::Capture;
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const STEP: Duration = Duration::from_secs(30);
/// Lowest PSNR (dB) of the lossy areas: quality-85 JPEG of smooth
/// gradients is well above 35 dB; a broken encoder or wrong colour order is
/// far below 20.
const MIN_PSNR: f64 = 30.0;

/// The qxl-native guest with `--spice-jpeg always` (QEMU:
/// `jpeg-wan-compression=always`), up to its READY marker.
fn boot(dir: &TempDir, name: &str, qemu: bool) -> (SpiceboxVm, u16) {
    let how = Boot {
        qemu,
        jpeg: Some("always"),
        control: None,
        streaming: None,
    };
    qxl_native::boot(spicebox!(), dir, name, how)
}

fn finish(mut vm: SpiceboxVm, name: &str) {
    vm.send(b"q");
    vm.wait_for(images::QXL_NATIVE_OK_MARKER, STEP);
    assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
}

/// The guest's animation (qxl-native.rs `animate`, ANIM_FRAMES frames):
/// each frame erases the sprite (the 32-bit gradient bitmap) with a
/// background fill, copies it a few pixels on along a bouncing path, and
/// fills a bar. Returns the final picture and the sprite's final place.
fn animated_scene() -> (Frame, (i32, i32, i32, i32)) {
    use qxl_scene::*;
    const FRAMES: u32 = 300;
    let (w, h) = (WIDTH as i32, HEIGHT as i32);
    let mut f = Frame::new(WIDTH, HEIGHT);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            f.pixels[(y * WIDTH + x) as usize] = expected(x, y);
        }
    }
    let put = |f: &mut Frame, r: (i32, i32, i32, i32), px: &dyn Fn(i32, i32) -> u32| {
        for y in r.1.max(0)..r.3.min(h) {
            for x in r.0.max(0)..r.2.min(w) {
                f.pixels[(y * w + x) as usize] = px(x, y);
            }
        }
    };
    let (sw, sh) = (B32_W as i32, B32_H as i32);
    let (mut x, mut y, mut dx, mut dy) = (0i32, 240i32, 6i32, 4i32);
    for frame in 0..FRAMES {
        let old = (x, y, x + sw, y + sh);
        if x + dx < 0 || x + dx + sw > w {
            dx = -dx;
        }
        if y + dy < 0 || y + dy + sh > h {
            dy = -dy;
        }
        (x, y) = (x + dx, y + dy);
        put(&mut f, old, &|_, _| BACKGROUND);
        let (sx, sy) = (x, y);
        put(&mut f, (x, y, x + sw, y + sh), &|px, py| {
            bitmap32((px - sx) as u32, (py - sy) as u32)
        });
        let bar = (frame as i32 * 2) % (w - 64);
        let color = (frame * 0x0001_0307) & 0xff_ffff;
        put(&mut f, (bar, h - 24, bar + 64, h - 8), &|_, _| color);
    }
    (f, (x, y, x + sw, y + sh))
}

/// SpiceClientGLib connected while the guest animates: the picture it ends
/// with.
fn watch_animation(dir: &TempDir, name: &str, vm: &mut SpiceboxVm, port: u16) -> Frame {
    let client = LiveGlibClient::connect(port, dir.join(&format!("live-{name}.ppm")), name);
    vm.send(b"a");
    vm.wait_for(images::QXL_ANIM_DONE_MARKER, Duration::from_secs(60));
    // Let the last draws reach the client, then take its picture.
    std::thread::sleep(Duration::from_secs(1));
    client.picture()
}

#[test]
fn jpeg_always_keeps_photos_within_psnr_and_the_rest_exact_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let dir = TempDir::new("spice-jpeg");
    let (want, sprite) = animated_scene();
    let mut verdicts = Vec::new();
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let (mut vm, port) = boot(&dir, name, qemu_run);
        let capture = (!qemu_run).then(|| Capture::start(&dir, port, "jpeg"));
        let live = watch_animation(&dir, name, &mut vm, port);
        let v = screen::judge_box(&live, &want, sprite);
        eprintln!("{name}: live client {v:?}");
        assert_eq!(v.outside_wrong, 0, "{name}: lossless areas differ");
        assert!(v.psnr >= MIN_PSNR, "{name}: the sprite at {:.1} dB", v.psnr);
        if let Some(mut c) = capture {
            c.stop();
            c.assert_well_formed(&c.opened_streams());
            let decoded = c.read("spice", true);
            assert!(
                decoded.contains("DRAW_COPY"),
                "no DRAW_COPY in the capture:\n{decoded}"
            );
        }
        // A client connecting now gets the picture again: spicebox sends the
        // whole screen, which is not photo-like, losslessly; spice-server
        // sends its drawables again (the sprite lossy).
        let fresh = dir.join(&format!("fresh-{name}.ppm"));
        let r = spicy_screenshot(port, None, &fresh);
        assert!(r.status.success(), "{name}: spicy-screenshot");
        let f = screen::judge_box(&screen::load(&fresh), &want, sprite);
        eprintln!("{name}: fresh client {f:?}");
        assert_eq!(f.outside_wrong, 0, "{name}: fresh client");
        assert!(f.psnr >= MIN_PSNR, "{name}: fresh client");
        if !qemu_run {
            assert_eq!(f.inside_wrong, 0, "spicebox: the full screen went lossy");
        }
        finish(vm, name);
        verdicts.push(v);
    }
    // spicebox really went lossy (else this test proves nothing).
    assert!(
        verdicts[1].inside_wrong > 0,
        "spicebox sent the sprite losslessly under --spice-jpeg always"
    );
}

/// Where the guest's blends (`b`, qxl-native.rs `blends`) draw: all of
/// them, and the two ALPHA_BLENDs of its 64x48 RGBA bitmap (a smooth
/// gradient, premultiplied, its alpha running from clear to opaque), at
/// (230, 130) and (250, 150). Boxes are (left, top, right, bottom).
const BLENDS: (i32, i32, i32, i32) = (136, 100, 464, 248);
const RGBA_BLENDS: (i32, i32, i32, i32) = (230, 130, 314, 198);

/// With `--spice-jpeg always` (QEMU: `jpeg-wan-compression=always`) the
/// guest's blends reach a SpiceClientGLib client within the PSNR bound of
/// the server's own picture (QMP screendump) and exact outside them, tshark
/// finding nothing malformed. The RGBA bitmap's two ALPHA_BLENDs go as
/// JPEG_ALPHA from both servers (spice-server, the reference, does so too),
/// lossy only there: the colour-keyed TRANSPARENT and the constant-opacity
/// blends of the checkered bitmap (not photo-like) stay exact. spicebox's
/// query-spice counts them under `jpeg-alpha`.
#[test]
fn jpeg_always_sends_rgba_blends_as_jpeg_alpha_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let dir = TempDir::new("spice-jpeg-alpha");
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let sock = dir.join(&format!("qmp-{name}.sock"));
        let how = Boot {
            qemu: qemu_run,
            jpeg: Some("always"),
            control: Some(sock.as_path()),
            streaming: None,
        };
        let (mut vm, port) = qxl_native::boot(spicebox!(), &dir, name, how);
        let mut capture = Capture::start(&dir, port, &format!("alpha-{name}"));
        let client = LiveGlibClient::connect(port, dir.join(&format!("blends-{name}.ppm")), name);
        vm.send(b"b");
        vm.wait_for(images::QXL_BLEND_DONE_MARKER, Duration::from_secs(60));
        std::thread::sleep(Duration::from_secs(1));
        let mut qmp = Qmp::connect(&sock, Duration::from_secs(10));
        let entry = (!qemu_run).then(|| qmp.display_channel());
        let live = client.picture();
        capture.stop();
        let out = dir.join(&format!("screendump-{name}.ppm"));
        qmp.execute("screendump", json!({"filename": out.to_str().unwrap()}));
        let want = screen::load(&out);
        let all = screen::judge_box(&live, &want, BLENDS);
        let rgba = screen::judge_box(&live, &want, RGBA_BLENDS);
        // Image types as sent (108: JPEG_ALPHA), and the blends that carry one.
        let types = capture.values("spice.image_type", "spice.image_type");
        let jpeg_alpha = types.iter().filter(|t| *t == "108").count();
        let blends = capture.read("spice.image_type == 108", true);
        eprintln!("{name}: blends {all:?}, RGBA blends {rgba:?}, image types sent {types:?}");
        if let Some(e) = &entry {
            eprintln!("{name}: query-spice display channel {e}");
        }
        capture.assert_well_formed(&capture.opened_streams());
        assert_eq!(
            all.outside_wrong, 0,
            "{name}: the client differs from the screendump outside the blends"
        );
        assert!(all.psnr >= MIN_PSNR, "{name}: blends at {:.1} dB", all.psnr);
        assert_eq!(
            rgba.outside_wrong, 0,
            "{name}: lossy outside the RGBA blends"
        );
        assert!(
            rgba.inside_wrong > 0,
            "{name}: the RGBA blends stayed exact"
        );
        assert!(
            rgba.psnr >= MIN_PSNR,
            "{name}: RGBA blends at {:.1} dB",
            rgba.psnr
        );
        assert_eq!(jpeg_alpha, 2, "{name}: image types {types:?}");
        assert!(blends.contains("DRAW_ALPHA_BLEND"), "{name}:\n{blends}");
        if let Some(e) = entry {
            assert_eq!(e["images"]["jpeg-alpha"], 2, "spicebox: {e}");
        }
        finish(vm, name);
    }
}

/// The slow link of the auto test: 2 Mbit/s, 50 ms each way.
const SLOW_BPS: f64 = 2e6;
const SLOW_DELAY: Duration = Duration::from_millis(50);

/// The qxl-native guest with `--spice-jpeg auto` (QEMU:
/// `jpeg-wan-compression=auto`); spicebox with QMP.
fn boot_auto(dir: &TempDir, name: &str, qemu: bool) -> (SpiceboxVm, u16, Option<Qmp>) {
    let sock = dir.join(&format!("qmp-{name}.sock"));
    let how = Boot {
        qemu,
        jpeg: Some("auto"),
        control: (!qemu).then_some(sock.as_path()),
        streaming: None,
    };
    let (vm, port) = qxl_native::boot(spicebox!(), dir, name, how);
    let qmp = (!qemu).then(|| Qmp::connect(&sock, Duration::from_secs(10)));
    (vm, port, qmp)
}

#[test]
fn jpeg_auto_follows_the_link_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let dir = TempDir::new("spice-jpeg-auto");
    let (want, sprite) = animated_scene();
    for qemu_run in [true, false] {
        for slow in [false, true] {
            let server = if qemu_run { "qemu" } else { "spicebox" };
            let link = if slow { "slow" } else { "local" };
            let name = format!("{server}-{link}");
            let (mut vm, port, mut qmp) = boot_auto(&dir, &name, qemu_run);
            let proxy = slow.then(|| SlowLink::start(port, SLOW_BPS, SLOW_DELAY));
            let client_port = proxy.as_ref().map_or(port, |p| p.port);
            let path = dir.join(&format!("live-{name}.ppm"));
            let client = LiveGlibClient::connect(client_port, path, &name);
            vm.send(b"a");
            vm.wait_for(images::QXL_ANIM_DONE_MARKER, Duration::from_secs(60));
            // Let the last draws cross the link.
            std::thread::sleep(Duration::from_secs(if slow { 4 } else { 1 }));
            let entry = qmp.as_mut().map(Qmp::display_channel);
            let live = client.picture();
            let v = screen::judge_box(&live, &want, sprite);
            eprintln!("{name}: {v:?}");
            if let Some(e) = &entry {
                eprintln!("{name}: query-spice display channel {e}");
            }
            if let Some(p) = &proxy {
                eprintln!("{name}: {} bytes through the slow link", p.bytes_down());
            }
            assert_eq!(v.outside_wrong, 0, "{name}: lossless areas differ");
            if slow {
                assert!(
                    v.inside_wrong > 0,
                    "{name}: the sprite stayed exact on a slow link"
                );
                assert!(v.psnr >= MIN_PSNR, "{name}: the sprite at {:.1} dB", v.psnr);
            } else {
                assert_eq!(
                    v.inside_wrong, 0,
                    "{name}: the sprite went lossy on a local link"
                );
            }
            if let Some(e) = entry {
                assert!(e["bytes-sent"].as_u64().unwrap() > 10_000, "{name}: {e}");
                assert!(e["draws"].as_u64().unwrap() > 0, "{name}: {e}");
                let latency = e["latency-ms"].as_f64().expect("a latency");
                let bps = e["bandwidth-bps"].as_f64().expect("a bandwidth");
                let jpegs = e["images"]["jpeg"].as_u64().unwrap();
                if slow {
                    assert_eq!(e["link"], "slow", "{name}: {e}");
                    assert!(latency >= 100.0, "{name}: {e}");
                    assert!(bps > 0.5 * SLOW_BPS && bps < 1.5 * SLOW_BPS, "{name}: {e}");
                    assert!(jpegs > 0, "{name}: {e}");
                } else {
                    assert_eq!(e["link"], "fast", "{name}: {e}");
                    assert!(latency < 50.0, "{name}: {e}");
                    assert_eq!(jpegs, 0, "{name}: {e}");
                }
            }
            finish(vm, &name);
        }
    }
}
