//! End-to-end: QXL native mode as Linux's qxl driver drives it
//! (images/guests/programs/src/bin/qxl-native.rs: memslots, an async primary
//! surface, drawables on the command ring, the cursor ring, releases), on
//! spicebox and on QEMU (`-vga qxl -spice`) in the same test. Real clients
//! must see the same on both: spicy-screenshot exactly the picture of
//! images::qxl_scene, spice-gtk's cursor channel (SpiceClientGLib,
//! tests/py/spice_cursor.py) the guest's cursor shape.

use std::process::Command;
use std::time::Duration;

use images::qxl_scene;
use serde_json::json;
use spicebox_tests::glib_client::LiveGlibClient;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::qxl_native::{self, Boot};
use spicebox_tests::screen::{self, Frame};
use spicebox_tests::tools::{require_spice_client_glib, run_timeout, spicy_screenshot};
use spicebox_tests::tshark::Capture;
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

/// The tests here boot two VMs each, one after the other; run side by side
/// (cargo's test threads) they starve each other's emulated guest code.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The qxl-native guest booted on QEMU or spicebox, SPICE on a free port,
/// up to its READY marker (the scene drawn).
fn boot(dir: &TempDir, name: &str, qemu: bool) -> (SpiceboxVm, u16) {
    let how = Boot {
        qemu,
        jpeg: None,
        control: None,
        streaming: None,
    };
    qxl_native::boot(spicebox!(), dir, name, how)
}

/// Any byte but `a`/`f` ends the guest: its OK marker, then a clean exit.
fn finish(mut vm: SpiceboxVm, name: &str) {
    vm.send(b"q");
    vm.wait_for(images::QXL_NATIVE_OK_MARKER, Duration::from_secs(30));
    assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
}

fn expected() -> Frame {
    let (w, h) = (qxl_scene::WIDTH, qxl_scene::HEIGHT);
    let mut f = Frame::new(w, h);
    for y in 0..h {
        for x in 0..w {
            f.pixels[(y * w + x) as usize] = qxl_scene::expected(x, y);
        }
    }
    f
}

/// spicy-screenshot until it shows the scene's size (a client connecting
/// right after the guest's last command may still see an older surface).
fn screenshot(dir: &TempDir, name: &str, port: u16) -> Frame {
    let out = dir.join(&format!("{name}.ppm"));
    let mut last = None;
    for _ in 0..20 {
        let r = spicy_screenshot(port, None, &out);
        if r.status.success() && out.exists() {
            let f = screen::load(&out);
            if (f.width, f.height) == (qxl_scene::WIDTH, qxl_scene::HEIGHT)
                && screen::differences(&f, &expected(), None).is_empty()
            {
                return f;
            }
            last = Some(f);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    last.unwrap_or_else(|| panic!("{name}: spicy-screenshot never produced a picture"))
}

/// Panics unless `a` and `b` (`what`: which pictures) are the same picture.
fn assert_same(a: &Frame, b: &Frame, what: &str) {
    assert_eq!((a.width, a.height), (b.width, b.height), "{what}: sizes");
    let diff = screen::differences(a, b, None);
    if let Some(&(x, y)) = diff.first() {
        panic!(
            "{what}: {} pixels differ, first at ({x}, {y}): {:06x} vs {:06x}",
            diff.len(),
            a.pixel(x, y),
            b.pixel(x, y)
        );
    }
}

/// Panics unless the picture a client watching all along (`live`) got equals
/// what a client connecting now gets (spicy-screenshot).
fn assert_live_equals_fresh(dir: &TempDir, name: &str, port: u16, live: &Frame) {
    let out = dir.join(&format!("fresh-{name}.ppm"));
    let r = spicy_screenshot(port, None, &out);
    assert!(r.status.success(), "{name}: spicy-screenshot");
    let what = format!("{name}: live client vs a fresh one");
    assert_same(live, &screen::load(&out), &what);
}

/// The cursor shape SpiceClientGLib's cursor channel reports.
fn client_cursor(port: u16) -> String {
    require_spice_client_glib();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/py/spice_cursor.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    let r = run_timeout(cmd, Duration::from_secs(60));
    assert!(
        r.status.success(),
        "spice_cursor.py: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).trim().to_owned()
}

#[test]
fn qxl_native_scene_through_spicy_on_spicebox_and_qemu() {
    let _one = one_at_a_time();
    let dir = TempDir::new("qxl-native");
    let want = expected();
    let mut cursors = Vec::new();
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let (vm, port) = boot(&dir, name, qemu_run);
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::QXL_NATIVE_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        let got = screenshot(&dir, name, port);
        assert_eq!((got.width, got.height), (want.width, want.height), "{name}");
        let diff = screen::differences(&got, &want, None);
        assert!(
            diff.is_empty(),
            "{name}: {} pixels differ from the scene, first at {:?}: got {:06x}, want {:06x}",
            diff.len(),
            diff[0],
            got.pixel(diff[0].0, diff[0].1),
            want.pixel(diff[0].0, diff[0].1)
        );
        // The same client must see the same shape from both (its pixel bytes'
        // CRC included), and it is the guest's.
        let cursor = client_cursor(port);
        let side = qxl_scene::CURSOR_SIDE;
        assert!(
            cursor.starts_with(&format!("cursor {side}x{side} hot=0,0 ")),
            "{name}: {cursor}"
        );
        cursors.push(cursor);
        finish(vm, name);
    }
    assert_eq!(cursors[0], cursors[1], "cursor on QEMU vs spicebox");
}

/// A real client connected while the guest animates (moving bitmap copies
/// and fills, which spicebox forwards as draws with the sprite from the
/// client's pixmap cache), then drags the sprite (COPY_BITS), ends with exactly the picture a client connecting
/// afterwards gets, on spicebox and on QEMU, and both VMMs' pictures agree.
#[test]
fn qxl_animation_seen_live_equals_a_fresh_client_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let _one = one_at_a_time();
    let dir = TempDir::new("qxl-anim-live");
    let mut finals = Vec::new();
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let (mut vm, port) = boot(&dir, name, qemu_run);
        let client = LiveGlibClient::connect(port, dir.join(&format!("live-{name}.ppm")), name);
        vm.send(b"a");
        vm.wait_for(images::QXL_ANIM_DONE_MARKER, Duration::from_secs(60));
        // Then the drag: the sprite moved by screen-to-screen COPY_BITS
        // (spicebox forwards them as COPY_BITS when the client's source is
        // current) and the uncovered strips filled.
        vm.send(b"d");
        let done = images::QXL_ANIM_DONE_MARKER;
        vm.wait_for_count(done, 2, Duration::from_secs(60));
        // Let the last draws reach the live client, then take both pictures.
        std::thread::sleep(Duration::from_secs(1));
        let live = client.picture();
        assert_live_equals_fresh(&dir, name, port, &live);
        finish(vm, name);
        finals.push(live);
    }
    assert_same(
        &finals[0],
        &finals[1],
        "QEMU vs spicebox after the animation",
    );
}

/// The drawables Windows' QXL drivers use besides fills and copies (the
/// guest's `o` mode: ROP3 with pattern and solid brushes and a QMask, a FILL
/// through an inverted QMask, STROKE polylines and a Bézier with PUT and XOR,
/// TEXT with 1- and 4-bit glyphs, COMPOSITE OVER of an ARGB gradient, OPAQUE
/// with pattern and solid brushes under AND and inverted-OR rops, COMPOSITE
/// in all fifteen PDF blend modes), read back with QMP screendump: QEMU's spice-server renders them with
/// spice-common's canvas, spicebox with its own, and the two pictures must be
/// equal pixel for pixel (no tolerance: the blend modes pixman computes in
/// f32 are computed in the same f32 operations).
#[test]
fn qxl_rop3_stroke_text_composite_equal_qemu_by_screendump() {
    let _one = one_at_a_time();
    let dir = TempDir::new("qxl-ops");
    let mut shots = Vec::new();
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let sock = dir.join(&format!("qmp-{name}.sock"));
        let how = Boot {
            qemu: qemu_run,
            control: Some(&sock),
            ..Boot::default()
        };
        let (mut vm, _port) = qxl_native::boot(spicebox!(), &dir, name, how);
        vm.send(b"o");
        vm.wait_for(images::QXL_OPS_DONE_MARKER, Duration::from_secs(60));
        let mut qmp = Qmp::connect(&sock, Duration::from_secs(10));
        let out = dir.join(&format!("ops-{name}.ppm"));
        qmp.execute("screendump", json!({"filename": out.to_str().unwrap()}));
        let f = screen::load(&out);
        assert_eq!((f.width, f.height), (qxl_scene::WIDTH, qxl_scene::HEIGHT));
        // Drawn at all: the inverted-mask fill's centre, the stroke's first
        // point, the 1-bit text's back area.
        assert_eq!(f.pixel(272, 324), 0xc0_2060, "{name}: masked fill");
        assert_eq!(f.pixel(330, 300), 0xff_ffff, "{name}: stroke");
        assert_eq!(f.pixel(16, 366), 0xf0_e0c0, "{name}: text back area");
        // OPAQUE: the source pixel (0x1040a0) ANDed with the pattern brush
        // (0x3fff8f there), then another ORing the inverted solid brush
        // with the inverted source; a plain copy would leave 0x1040a0.
        assert_eq!(f.pixel(20, 420), 0x10_4080, "{name}: opaque, pattern AND");
        assert_eq!(f.pixel(92, 420), 0xef_ffdf, "{name}: opaque, inverted OR");
        // MULTIPLY's opaque right edge: 0x150075 times (0xff, 0xea, 0x80).
        assert_eq!(f.pixel(203, 412), 0x15_003b, "{name}: multiply");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::QXL_NATIVE_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        finish(vm, name);
        shots.push(f);
    }
    assert_same(&shots[0], &shots[1], "QEMU vs spicebox");
}

/// Blends as Xorg's and Windows' qxl drivers draw them (a colour-keyed
/// TRANSPARENT and ALPHA_BLENDs of a bitmap over the scene and over each
/// other, and ALPHA_BLENDs of an RGBA bitmap with its own alpha): spice-gtk
/// gets them as DRAW_TRANSPARENT / DRAW_ALPHA_BLEND from both servers
/// (tshark decodes them, nothing malformed; from spicebox the per-pixel ones
/// carry an LZ RGBA image), its picture equals a fresh client's and the
/// server's QMP screendump, and both VMMs' pictures agree exactly (spicebox
/// blends with pixman's rounding, as spice-server's canvas and spice-gtk do).
#[test]
fn qxl_blends_reach_spice_gtk_as_blends_on_spicebox_and_qemu() {
    let finals = watched_by_spice_gtk(
        "blends",
        b"b",
        images::QXL_BLEND_DONE_MARKER,
        |capture, name, qemu_run| {
            capture.assert_well_formed(&capture.opened_streams());
            let decoded = capture.read("spice", true);
            for msg in ["DRAW_TRANSPARENT", "DRAW_ALPHA_BLEND"] {
                assert!(decoded.contains(msg), "{name}: no {msg} in the capture");
            }
            if !qemu_run {
                // LZ type 9 (RGBA): the source's alpha travels with the blend.
                let rgba = capture.read("spice.LZ_RGB_type == 9", true);
                assert!(
                    rgba.contains("DRAW_ALPHA_BLEND"),
                    "{name}: no DRAW_ALPHA_BLEND with an RGBA image:\n{rgba}"
                );
            }
        },
    );
    for (name, live) in ["qemu", "spicebox"].iter().zip(&finals) {
        // The blends changed the scene where they were drawn.
        let changed = screen::differences(live, &expected(), None);
        assert!(
            changed
                .iter()
                .all(|&(x, y)| (136..464).contains(&x) && (100..248).contains(&y)),
            "{name}: pixels changed outside the blends"
        );
        assert!(
            changed.len() > 4000,
            "{name}: only {} pixels blended",
            changed.len()
        );
    }
    assert_same(&finals[0], &finals[1], "QEMU vs spicebox after the blends");
}

/// Boots QEMU, then spicebox, each with a live spice-gtk client and a tshark
/// capture, has the guest draw `key` until `marker`, lets `check` judge the
/// capture, and asserts the client's picture equals a fresh client's and the
/// QMP screendump. Returns both pictures (QEMU's first).
fn watched_by_spice_gtk(
    what: &str,
    key: &[u8],
    marker: &str,
    check: impl Fn(&mut Capture, &str, bool),
) -> Vec<Frame> {
    require_spice_client_glib();
    let _one = one_at_a_time();
    let dir = TempDir::new(&format!("qxl-{what}"));
    let mut finals = Vec::new();
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let sock = dir.join(&format!("qmp-{name}.sock"));
        let how = Boot {
            qemu: qemu_run,
            control: Some(&sock),
            ..Boot::default()
        };
        let (mut vm, port) = qxl_native::boot(spicebox!(), &dir, name, how);
        let mut capture = Capture::start(&dir, port, &format!("{what}-{name}"));
        let client = LiveGlibClient::connect(port, dir.join(&format!("live-{name}.ppm")), name);
        vm.send(key);
        vm.wait_for(marker, Duration::from_secs(60));
        std::thread::sleep(Duration::from_secs(1));
        let live = client.picture();
        capture.stop();
        check(&mut capture, name, qemu_run);
        assert_live_equals_fresh(&dir, name, port, &live);
        let mut qmp = Qmp::connect(&sock, Duration::from_secs(10));
        let out = dir.join(&format!("{what}-{name}.ppm"));
        qmp.execute("screendump", json!({"filename": out.to_str().unwrap()}));
        assert_same(
            &live,
            &screen::load(&out),
            &format!("{name}: client vs screendump"),
        );
        finish(vm, name);
        finals.push(live);
    }
    finals
}

/// Cursor shapes through the cursor cache: a spice-gtk client (SpiceClientGLib,
/// tests/py/spice_cursor_cycle.py) follows the guest as it alternates two
/// cursor shapes ('c'). Each shape must cross the wire once, every repeat come
/// from spice-gtk's cache as the same picture, so the cursor channel carries
/// about two shapes' worth of bytes rather than 25. On QEMU too (its
/// spice-server caches by the guest's unique ids, 1 and 2 here): the same
/// client must see the same sequence of pictures from both.
#[test]
fn alternating_cursor_shapes_come_from_spice_gtk_cache_on_spicebox_and_qemu() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let _one = one_at_a_time();
    require_spice_client_glib();
    let dir = TempDir::new("qxl-cursor-cache");
    let side = qxl_scene::CURSOR_SIDE;
    let shape_bytes = u64::from(side * side * 4);
    let shapes = 1 + qxl_scene::CURSOR_CYCLE_SETS as usize;
    let mut runs = Vec::new();
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let (mut vm, port) = boot(&dir, name, qemu_run);
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/py/spice_cursor_cycle.py"
        );
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--shapes", &shapes.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spice_cursor_cycle.py");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        // The client holds the scene's shape (CURSOR_INIT): now the cycle.
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        lines.push(first.trim().to_owned());
        vm.send(b"c");
        vm.wait_for(images::QXL_CURSORS_DONE_MARKER, Duration::from_secs(60));
        for l in out.lines() {
            lines.push(l.unwrap());
        }
        assert!(child.wait().unwrap().success(), "{name}: {lines:?}");
        let bytes: u64 = lines
            .pop()
            .and_then(|l| l.strip_prefix("cursor-bytes ")?.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no byte count in {lines:?}"));
        eprintln!("{name}: cursor channel read {bytes} bytes for {shapes} shapes");
        assert_eq!(lines.len(), shapes, "{name}: {lines:?}");
        // Two distinct pictures, alternating, both the guest's size.
        assert!(
            lines[0].starts_with(&format!("cursor {side}x{side} hot=0,0 ")),
            "{name}: {lines:?}"
        );
        assert_ne!(lines[0], lines[1], "{name}");
        for (n, l) in lines.iter().enumerate() {
            assert_eq!(l, &lines[n % 2], "{name}: shape {n}");
        }
        // Two shapes in full, the other 23 as headers: far below three.
        assert!(
            bytes < 3 * shape_bytes,
            "{name}: {bytes} bytes on the cursor channel for {shapes} shapes of {shape_bytes}"
        );
        runs.push((lines, bytes));
        finish(vm, name);
    }
    assert_eq!(runs[0].0, runs[1].0, "shapes on QEMU vs spicebox");
}

/// The guest's `o` drawables watched by spice-gtk: spicebox forwards the
/// COMPOSITE OVER of an ARGB gradient as DRAW_COMPOSITE (tshark decodes it,
/// nothing malformed; the rest goes as images; QEMU's messages are not
/// checked by type), and on both servers the
/// client's picture equals a fresh client's and the QMP screendump, and the
/// two VMMs' pictures agree exactly.
#[test]
fn qxl_composite_reaches_spice_gtk_as_draw_composite_on_spicebox_and_qemu() {
    let finals = watched_by_spice_gtk(
        "composite",
        b"o",
        images::QXL_OPS_DONE_MARKER,
        |capture, name, qemu_run| {
            if !qemu_run {
                // Not on QEMU: it forwards the ROP3 as DRAW_ROP3, on which
                // tshark's SPICE dissector trips over itself (a dissector bug
                // it reports, not a malformed message).
                capture.assert_well_formed(&capture.opened_streams());
                let decoded = capture.read("spice", true);
                assert!(
                    decoded.contains("DRAW_COMPOSITE"),
                    "{name}: no DRAW_COMPOSITE in the capture"
                );
            }
        },
    );
    assert_same(
        &finals[0],
        &finals[1],
        "QEMU vs spicebox after the drawables",
    );
}
