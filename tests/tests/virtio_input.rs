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
use std::process::Command;
use std::time::{Duration, Instant};

use images::TestImage;
use serde_json::{json, Value};
use spice::client::{ClientOptions, TestClient};
use spice::Listen;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::tools::{free_port, require_tool};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(20);

fn qemu(disk: &Path, qmp: &Path) -> Command {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-enable-kvm", "-machine", "pc", "-m", "512M", "-nodefaults"])
        .args(["-vga", "qxl", "-display", "none", "-serial", "stdio"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args(["-global", "virtio-blk-pci.disable-legacy=on", "-no-reboot"])
        .args([
            "-device",
            "virtio-keyboard-pci",
            "-device",
            "virtio-tablet-pci",
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    cmd
}

/// The guest's event lines (`event <device> <type> <code> <value>`) so far.
fn events(vm: &SpiceboxVm) -> Vec<String> {
    vm.serial_text()
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
