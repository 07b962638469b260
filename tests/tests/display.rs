//! The QXL card's VGA/VBE side end to end: what the guest draws is what the
//! display model renders, read through QMP `screendump` as a user would.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::screen::{self, differences, Frame};
use spicebox_tests::tools::require_tool;
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(60);

fn start(dir: &TempDir) -> (SpiceboxVm, Qmp) {
    let sock = dir.join("qmp.sock");
    let control = format!("unix:{}", sock.display());
    let mut vm = SpiceboxVm::start(spicebox!(), &["--control", &control]);
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    let qmp = Qmp::connect(&sock, Duration::from_secs(10));
    (vm, qmp)
}

fn screendump(qmp: &mut Qmp, path: &Path) -> Frame {
    qmp.execute(
        "screendump",
        json!({"filename": path.to_str().unwrap(), "format": "png"}),
    );
    screen::load(path)
}

fn text_of(frame: &Frame) -> Vec<String> {
    assert_eq!(
        (frame.width, frame.height),
        (720, 400),
        "80x25 text at 9x16"
    );
    screen::text_rows(frame, &screen::system_vga_font())
}

#[test]
fn text_screen_shows_the_bios_and_demo_banners() {
    let dir = TempDir::new("display-text");
    let (_vm, mut qmp) = start(&dir);
    let rows = text_of(&screendump(&mut qmp, &dir.join("boot.png")));
    let all = rows.join("\n");
    assert!(
        rows.iter().any(|r| r.starts_with("SeaBIOS (version")),
        "SeaBIOS banner missing:\n{all}"
    );
    assert!(
        rows.iter().any(|r| r.trim_end() == images::DEMO_BANNER),
        "demo banner missing:\n{all}"
    );
}

#[test]
fn graphics_scene_renders_pixel_exact_and_text_comes_back() {
    let dir = TempDir::new("display-scene");
    let (mut vm, mut qmp) = start(&dir);
    vm.send(&[images::DEMO_GRAPHICS_KEY]);
    vm.wait_for(images::DEMO_GRAPHICS_MARKER, Duration::from_secs(30));
    let f = screendump(&mut qmp, &dir.join("scene.png"));
    assert_eq!((f.width, f.height), (1024, 768));
    let mut wrong = 0;
    for y in 0..f.height {
        for x in 0..f.width {
            if f.pixel(x, y) != images::demo_scene_pixel(x, y) {
                wrong += 1;
                assert!(
                    wrong > 5,
                    "({x}, {y}) is {:06x}, the scene has {:06x}",
                    f.pixel(x, y),
                    images::demo_scene_pixel(x, y)
                );
            }
        }
    }
    assert_eq!(wrong, 0);

    vm.send(&[images::DEMO_TEXT_KEY]);
    vm.wait_for(images::DEMO_TEXT_MARKER, Duration::from_secs(30));
    let rows = text_of(&screendump(&mut qmp, &dir.join("text.png")));
    assert_eq!(rows[0].trim_end(), images::DEMO_BANNER, "{rows:#?}");
    assert!(rows[2..].iter().all(|r| r.trim().is_empty()), "{rows:#?}");
}

/// QEMU with the same image, the same VGA BIOS and the same key presses, as
/// the reference picture.
fn qemu_screen(dir: &TempDir, disk: &Path, key: u8, marker: &str) -> Frame {
    let sock = dir.join("qemu-qmp.sock");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-enable-kvm", "-M", "pc", "-m", "1G", "-nodefaults"])
        .args(["-vga", "qxl", "-display", "none", "-serial", "stdio"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()));
    let mut vm = SpiceboxVm::start_command(cmd);
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    vm.send(&[key]);
    vm.wait_for(marker, Duration::from_secs(30));
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(10));
    let out = dir.join("qemu.ppm");
    qmp.execute("screendump", json!({"filename": out.to_str().unwrap()}));
    screen::load(&out)
}

fn spicebox_screen(dir: &TempDir, disk: &Path, key: u8, marker: &str) -> Frame {
    let sock = dir.join("qmp.sock");
    let control = format!("unix:{}", sock.display());
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &[disk.to_str().unwrap(), "--control", &control],
    );
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    vm.send(&[key]);
    vm.wait_for(marker, Duration::from_secs(30));
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(10));
    screendump(&mut qmp, &dir.join("ours.png"))
}

#[test]
fn text_and_graphics_match_qemu_pixel_for_pixel() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let dir = TempDir::new("display-qemu");
    let disk = dir.join("demo.img");
    images::write_image(images::demo_disk(), &disk).unwrap();
    for (key, marker, skip) in [
        // After 't' the screen holds the banner and the cursor, which blinks
        // on its own clock in each VMM: its cell (column 0, row 1) is skipped.
        (
            images::DEMO_TEXT_KEY,
            images::DEMO_TEXT_MARKER,
            Some((0, 16, 9, 16)),
        ),
        (
            images::DEMO_GRAPHICS_KEY,
            images::DEMO_GRAPHICS_MARKER,
            None,
        ),
    ] {
        let theirs = qemu_screen(&dir, &disk, key, marker);
        let ours = spicebox_screen(&dir, &disk, key, marker);
        assert_eq!((ours.width, ours.height), (theirs.width, theirs.height));
        let diff = differences(&ours, &theirs, skip);
        assert!(
            diff.is_empty(),
            "{} pixels differ after {:?}, first at {:?}: ours {:06x}, QEMU {:06x}",
            diff.len(),
            key as char,
            diff[0],
            ours.pixel(diff[0].0, diff[0].1),
            theirs.pixel(diff[0].0, diff[0].1)
        );
    }
}
