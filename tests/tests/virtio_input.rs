//! End-to-end: a virtio keyboard and a virtio tablet driven as Linux's
//! virtio_input.c drives them (images/guests/programs/src/bin/virtio-input.rs),
//! on spicebox and on QEMU (`-device virtio-keyboard-pci -device
//! virtio-tablet-pci`) in the same test: the config probe, MSI-X bring-up,
//! the status queue's Caps Lock; then keys and absolute motion injected with
//! QMP (`send-key`, `input-send-event` abs and btn) must reach the guest as the
//! same evdev events on both, `query-mice` must show the tablet as the
//! current absolute mouse, and on spicebox a SPICE client must see the guest's
//! Caps Lock, be offered client mouse mode and reach the tablet and the
//! keyboard.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use images::TestImage;
use serde_json::{json, Value};
use spice::client::{ClientOptions, TestClient};
use spice::Listen;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::screen::Frame;
use spicebox_tests::tools::{free_port, qemu_guest, require_tool};
use spicebox_tests::xvfb::{Guard, Xvfb};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(20);

fn qemu(disk: &Path, qmp: &Path) -> Command {
    let mut cmd = qemu_guest(disk);
    cmd.args([
        "-device",
        "virtio-keyboard-pci",
        "-device",
        "virtio-tablet-pci",
    ])
    .arg("-qmp")
    .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    cmd
}

/// The guest's complete event lines (`event <device> <type> <code> <value>`) so far.
/// A line still arriving (no `\n` yet, perhaps its `\r` already) is left for the next look.
fn events(vm: &SpiceboxVm) -> Vec<String> {
    let text = vm.serial_text();
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    complete
        .lines()
        .filter_map(|l| l.strip_prefix("event "))
        .map(str::to_owned)
        .collect()
}

/// Waits until the guest has printed `want` after the `seen` events before.
fn expect_events(vm: &SpiceboxVm, seen: &mut usize, want: &[&str], what: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let all = events(vm);
        if all.len() >= *seen + want.len() {
            assert_eq!(
                &all[*seen..*seen + want.len()],
                want,
                "{what}\n{}",
                vm.serial_text()
            );
            *seen += want.len();
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: waited for {want:?}\n--- serial ---\n{}\n--- stderr ---\n{}",
            vm.serial_text(),
            vm.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_key(qmp: &mut Qmp, key: &str) {
    qmp.execute(
        "send-key",
        json!({"keys": [{"type": "qcode", "data": key}], "hold-time": 50}),
    );
}

fn ev(kind: &str, data: Value) -> Value {
    json!({"type": kind, "data": data})
}

/// The SPICE part, spicebox only: the guest's Caps Lock at INPUTS_INIT,
/// client mouse mode offered and taken, a click at the screen's far corner and
/// a key, as the guest sees them.
fn spice_client(vm: &SpiceboxVm, port: u16, seen: &mut usize) {
    use spice::proto::{button_mask, main_msgc, MOUSE_MODE_CLIENT};
    let c = TestClient::connect(
        &Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
        ClientOptions::default(),
    )
    .expect("TestClient::connect");
    c.wait(STEP, |s| s.inputs_init.is_some() && s.surface.is_some())
        .expect("no INPUTS_INIT or picture");
    assert_eq!(
        c.state().inputs_init,
        Some(4),
        "the guest's Caps Lock (status queue) reaches the client"
    );
    let supported = match c.state().main_init {
        Some(spice::client::decode::ServerMsg::MainInit {
            supported_mouse_modes,
            ..
        }) => supported_mouse_modes,
        ref other => panic!("no MAIN_INIT: {other:?}"),
    };
    assert_eq!(supported, 3, "client mouse mode offered with the tablet up");
    c.send_main(
        main_msgc::MOUSE_MODE_REQUEST,
        &MOUSE_MODE_CLIENT.to_le_bytes(),
    )
    .unwrap();
    c.wait(STEP, |s| s.mouse_mode == Some((3, MOUSE_MODE_CLIENT)))
        .expect("client mouse mode");
    let (w, h) = {
        let s = c.state();
        let f = s.surface.as_ref().unwrap();
        (f.width, f.height)
    };
    // The bottom-right pixel is the tablet's maximum on both axes.
    c.position(w - 1, h - 1, button_mask::LEFT, 0).unwrap();
    c.position(w - 1, h - 1, 0, 0).unwrap();
    expect_events(
        vm,
        seen,
        &[
            "tablet 3 0 32767",
            "tablet 3 1 32767",
            "tablet 1 272 1",
            "tablet 0 0 0",
            "tablet 1 272 0",
            "tablet 0 0 0",
        ],
        "SPICE client-mode click",
    );
    // Set-1 'a' down and up.
    c.key_down(0x1e).unwrap();
    c.key_up(0x9e).unwrap();
    expect_events(
        vm,
        seen,
        &[
            "keyboard 1 30 1",
            "keyboard 0 0 0",
            "keyboard 1 30 0",
            "keyboard 0 0 0",
        ],
        "SPICE key",
    );
}

#[test]
fn virtio_keyboard_and_tablet_as_linux_drives_them_on_spicebox_and_qemu() {
    let dir = TempDir::new("virtio-input");
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let disk = dir.join(&format!("virtio-input-{name}.img"));
        images::write_image(TestImage::VirtioInput.bytes(), &disk).unwrap();
        let sock = dir.join(&format!("{name}.qmp"));
        let port = free_port();
        let mut vm = if qemu_run {
            SpiceboxVm::start_command(qemu(&disk, &sock))
        } else {
            let control = format!("unix:{}", sock.display());
            let spice = format!("127.0.0.1:{port}");
            SpiceboxVm::start(
                spicebox!(),
                &[
                    disk.to_str().unwrap(),
                    "-m",
                    "512M",
                    "--control",
                    &control,
                    "--spice",
                    &spice,
                    "--disable-ticketing",
                ],
            )
        };
        vm.wait_for(images::VIRTIO_INPUT_READY_MARKER, BOOT);
        let serial = vm.serial_text();
        for device in [
            "input name=\"QEMU Virtio Keyboard\" serial_len=0 ids=0006:0627:0001:0001 props=0 ev=0x120002",
            "input name=\"QEMU Virtio Tablet\" serial_len=0 ids=0006:0627:0003:0002 props=0 ev=0xe keys=",
        ] {
            assert!(serial.contains(device), "{name}: no {device:?}\n{serial}");
        }
        let mut qmp = Qmp::connect(&sock, Duration::from_secs(10));
        let mice = qmp.execute("query-mice", json!({}));
        let tablet = mice
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "QEMU Virtio Tablet")
            .unwrap_or_else(|| panic!("{name}: no tablet in {mice}"));
        assert_eq!(tablet["absolute"], true, "{name}: {mice}");
        assert_eq!(tablet["current"], true, "{name}: {mice}");

        let mut seen = 0;
        send_key(&mut qmp, "a");
        expect_events(
            &vm,
            &mut seen,
            &[
                "keyboard 1 30 1",
                "keyboard 0 0 0",
                "keyboard 1 30 0",
                "keyboard 0 0 0",
            ],
            name,
        );
        qmp.execute(
            "input-send-event",
            json!({"events": [
                ev("abs", json!({"axis": "x", "value": 1000})),
                ev("abs", json!({"axis": "y", "value": 2000})),
                ev("btn", json!({"down": true, "button": "left"})),
            ]}),
        );
        qmp.execute(
            "input-send-event",
            json!({"events": [ev("btn", json!({"down": false, "button": "left"}))]}),
        );
        expect_events(
            &vm,
            &mut seen,
            &[
                "tablet 3 0 1000",
                "tablet 3 1 2000",
                "tablet 1 272 1",
                "tablet 0 0 0",
                "tablet 1 272 0",
                "tablet 0 0 0",
            ],
            name,
        );
        if !qemu_run {
            spice_client(&vm, port, &mut seen);
        }
        send_key(&mut qmp, "q");
        vm.wait_for(images::VIRTIO_INPUT_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::VIRTIO_INPUT_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        assert!(serial.contains("input-done "), "{name}:\n{serial}");
    }
}

// ---------------------------------------------------------------------------
// remote-viewer under Xvfb: client mouse mode, clicks at the clicked pixel

/// A click as the tablet reported it: the absolute position at the press,
/// with the release seen after it.
struct Click {
    abs_x: u32,
    abs_y: u32,
}

/// Waits for a left press and release among the events after `seen`, and
/// returns the tablet's absolute position at the press. No relative motion
/// may show up: in client mouse mode the pointer is absolute only.
fn wait_click(vm: &SpiceboxVm, seen: &mut usize, what: &str) -> Click {
    let deadline = Instant::now() + STEP;
    loop {
        let all = events(vm);
        let new = &all[*seen..];
        assert!(
            !new.iter().any(|e| e.starts_with("tablet 2 ")),
            "{what}: relative motion on the tablet: {new:?}"
        );
        let press = new.iter().position(|e| e == "tablet 1 272 1");
        let release = press.and_then(|p| {
            new[p..]
                .iter()
                .position(|e| e == "tablet 1 272 0")
                .map(|r| p + r)
        });
        if let (Some(press), Some(release)) = (press, release) {
            let last = |axis: &str| {
                new[..press]
                    .iter()
                    .rev()
                    .find_map(|e| e.strip_prefix(axis))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{what}: no {axis:?} before the press: {new:?}"))
            };
            let click = Click {
                abs_x: last("tablet 3 0 "),
                abs_y: last("tablet 3 1 "),
            };
            *seen += release + 1;
            return click;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no press and release from the viewer's click: {new:?}\n--- serial ---\n{}",
            vm.serial_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The root-window offset of the guest's picture inside the viewer's window:
/// the one place where the X screen shows the guest's screendump pixel for
/// pixel (the VGA cursor may blink in between, hence a few misses allowed).
fn find_picture(screen: &Frame, guest: &Frame) -> Vec<(u32, u32)> {
    const MISSES: usize = 64;
    let lit: Vec<(u32, u32)> = (0..guest.height)
        .flat_map(|y| (0..guest.width).map(move |x| (x, y)))
        .filter(|&(x, y)| guest.pixel(x, y) & 0xff_ffff != 0)
        .collect();
    assert!(
        lit.len() > 100,
        "the guest's screen is blank; nothing to find it by"
    );
    let probes: Vec<(u32, u32)> = lit.iter().step_by(lit.len() / 50).copied().collect();
    let mut found = Vec::new();
    if screen.width < guest.width || screen.height < guest.height {
        return found;
    }
    for oy in 0..=screen.height - guest.height {
        for ox in 0..=screen.width - guest.width {
            let same = |&(x, y): &(u32, u32)| {
                screen.pixel(ox + x, oy + y) & 0xff_ffff == guest.pixel(x, y) & 0xff_ffff
            };
            if probes.iter().filter(|p| !same(p)).count() > 2 {
                continue;
            }
            let misses = (0..guest.height)
                .flat_map(|y| (0..guest.width).map(move |x| (x, y)))
                .filter(|p| !same(p))
                .take(MISSES + 1)
                .count();
            if misses <= MISSES {
                found.push((ox, oy));
            }
        }
    }
    found
}

/// Where the viewer shows the guest's screen: (x, y) of its top-left pixel
/// on the X screen, and the guest screen's size.
fn locate_guest(x: &Xvfb, qmp: &mut Qmp, dir: &TempDir, name: &str) -> (u32, u32, u32, u32) {
    require_tool("import", "imagemagick");
    let dump = dir.join(&format!("{name}-guest.ppm"));
    let shot = dir.join(&format!("{name}-xscreen.ppm"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        qmp.execute(
            "screendump",
            json!({"filename": dump.to_str().unwrap(), "format": "ppm"}),
        );
        let guest = spicebox_tests::screen::load(&dump);
        let mut cmd = Command::new("import");
        cmd.args(["-display", &x.display, "-window", "root", "-depth", "8"])
            .arg(format!("ppm:{}", shot.display()));
        let out = spicebox_tests::tools::run_timeout(cmd, Duration::from_secs(30));
        assert!(out.status.success(), "import: {out:?}");
        let screen = spicebox_tests::screen::load(&shot);
        let found = find_picture(&screen, &guest);
        if let [(ox, oy)] = found[..] {
            return (ox, oy, guest.width, guest.height);
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the guest's {}x{} screen is not shown 1:1 once on the X screen \
             (matches at {found:?}); see {} and {}",
            guest.width,
            guest.height,
            dump.display(),
            shot.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// remote-viewer on `port`, titled `title`; returns it and its window id.
fn remote_viewer(x: &Xvfb, dir: &TempDir, port: u16, title: &str) -> (Guard, String) {
    require_tool("remote-viewer", "virt-viewer");
    let mut cmd = Command::new("remote-viewer");
    cmd.args(["--title", title])
        .arg(format!("spice://127.0.0.1:{port}"))
        .env("DISPLAY", &x.display)
        .env("GDK_BACKEND", "x11")
        .env("NO_AT_BRIDGE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join(&format!("{title}.log"))).unwrap(),
        ));
    let mut viewer = Guard::spawn(cmd, "remote-viewer");
    let found = x.xdotool(&["search", "--sync", "--name", title]);
    let win = found
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no remote-viewer window: {found:?}"))
        .to_string();
    viewer.check_alive();
    (viewer, win)
}

/// The real-client check: remote-viewer under Xvfb is in client
/// mouse mode (no pointer grab on click, no relative motion) and a click at a
/// pixel of the guest's picture in its window reaches the virtio tablet as
/// absolute values that map back to that pixel of the guest's screen, with
/// the button's press and release — on spicebox and on QEMU alike.
#[test]
fn remote_viewer_click_reaches_the_tablet_at_the_clicked_pixel_on_spicebox_and_qemu() {
    let dir = TempDir::new("virtio-input-viewer");
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let disk = dir.join(&format!("virtio-input-{name}.img"));
        images::write_image(TestImage::VirtioInput.bytes(), &disk).unwrap();
        let sock = dir.join(&format!("{name}.qmp"));
        let port = free_port();
        let mut vm = if qemu_run {
            let mut cmd = qemu(&disk, &sock);
            cmd.arg("-spice")
                .arg(format!("port={port},addr=127.0.0.1,disable-ticketing=on"));
            SpiceboxVm::start_command(cmd)
        } else {
            let control = format!("unix:{}", sock.display());
            let spice = format!("127.0.0.1:{port}");
            SpiceboxVm::start(
                spicebox!(),
                &[
                    disk.to_str().unwrap(),
                    "-m",
                    "512M",
                    "--control",
                    &control,
                    "--spice",
                    &spice,
                    "--disable-ticketing",
                ],
            )
        };
        vm.wait_for(images::VIRTIO_INPUT_READY_MARKER, BOOT);
        let mut qmp = Qmp::connect(&sock, Duration::from_secs(10));
        let x = Xvfb::start();
        let title = format!("viewer-{name}");
        let (mut viewer, win) = remote_viewer(&x, &dir, port, &title);
        let (ox, oy, gw, gh) = locate_guest(&x, &mut qmp, &dir, name);
        eprintln!("{name}: the guest's {gw}x{gh} screen is at ({ox}, {oy}) on the X screen");
        let mut seen = events(&vm).len();
        for (gx, gy) in [(gw / 4, gh / 3), (gw * 3 / 4 + 7, gh * 2 / 3 + 5)] {
            let what = format!("{name}: click at guest pixel ({gx}, {gy})");
            let (sx, sy) = ((ox + gx).to_string(), (oy + gy).to_string());
            x.xdotool(&["mousemove", "--sync", &sx, &sy]);
            x.xdotool(&["click", "1"]);
            let click = wait_click(&vm, &mut seen, &what);
            // The tablet's 0..=32767 spans the screen: spicebox scales by
            // width - 1 (the far pixel is the maximum), QEMU by width, so the
            // value maps back to the pixel within one either way.
            let back_x = f64::from(click.abs_x) * f64::from(gw) / 32767.0;
            let back_y = f64::from(click.abs_y) * f64::from(gh) / 32767.0;
            assert!(
                (back_x - f64::from(gx)).abs() <= 1.0 && (back_y - f64::from(gy)).abs() <= 1.0,
                "{what}: the tablet got ({}, {}) = pixel ({back_x:.1}, {back_y:.1})",
                click.abs_x,
                click.abs_y
            );
            eprintln!(
                "{what}: tablet ({}, {}) = pixel ({back_x:.1}, {back_y:.1})",
                click.abs_x, click.abs_y
            );
            // In server mouse mode remote-viewer grabs the pointer on a click
            // and says so in its title.
            let title_now = x.xdotool(&["getwindowname", &win]);
            assert!(
                !title_now.contains("release"),
                "{what}: the viewer grabbed the pointer (server mouse mode): {title_now:?}"
            );
        }
        viewer.check_alive();
        drop(viewer);
        drop(x);
        send_key(&mut qmp, "q");
        vm.wait_for(images::VIRTIO_INPUT_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
    }
}
