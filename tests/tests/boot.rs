//! End-to-end: the real binary boots images built from this repo through SeaBIOS
//! under KVM, and we watch COM1.

use std::time::Duration;

use images::TestImage;
use spicebox_tests::{run_cli, spicebox, SpiceboxVm, TempDir};

/// SeaBIOS reaches a boot sector in ~4 s here; leave room for a loaded machine.
const BOOT: Duration = Duration::from_secs(90);

fn raw_image(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    images::write_image(bytes, &p).expect("write image");
    p.to_string_lossy().into_owned()
}

fn qemu_img(args: &[&str]) {
    let st = std::process::Command::new("qemu-img")
        .args(args)
        .status()
        .expect("qemu-img (package qemu-utils) must be installed");
    assert!(st.success(), "qemu-img {args:?} failed");
}

#[test]
fn demo_disk_boots_echoes_serial_input_and_powers_off() {
    let mut vm = SpiceboxVm::start(spicebox!(), &[]);
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    vm.send(b"hello");
    vm.wait_for("hello", Duration::from_secs(20));
    vm.send(b"p");
    vm.wait_for(images::DEMO_POWEROFF_MARKER, Duration::from_secs(20));
    let st = vm.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "power-off must exit 0, got {st}");
}

#[test]
fn guest_power_off_exits_zero() {
    let dir = TempDir::new("poweroff");
    let disk = raw_image(&dir, "poweroff.img", TestImage::PowerOff.bytes());
    let mut vm = SpiceboxVm::start(spicebox!(), &[&disk, "-m", "256M"]);
    vm.wait_for(images::POWEROFF_TEST_MARKER, BOOT);
    let st = vm.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "power-off must exit 0, got {st}");
}

#[test]
fn qcow2_disk_boots() {
    let dir = TempDir::new("qcow2boot");
    let raw = raw_image(&dir, "poweroff.img", TestImage::PowerOff.bytes());
    let q = dir.join("poweroff.qcow2").to_string_lossy().into_owned();
    qemu_img(&["convert", "-q", "-f", "raw", "-O", "qcow2", &raw, &q]);
    let mut vm = SpiceboxVm::start(spicebox!(), &[&q]);
    vm.wait_for(images::POWEROFF_TEST_MARKER, BOOT);
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn cf9_i8042_and_triple_fault_resets_reboot_in_place() {
    let dir = TempDir::new("reset");
    let disk = raw_image(&dir, "reset.img", TestImage::Reset.bytes());
    let mut vm = SpiceboxVm::start(spicebox!(), &[&disk, "-m", "256M"]);
    vm.wait_for(images::RESET_DONE_MARKER, BOOT * 3);
    let out = vm.serial_text();
    for n in 1..=images::RESET_BOOTS {
        assert_eq!(
            out.matches(&images::reset_boot_marker(n)).count(),
            1,
            "boot {n} must happen exactly once:\n{out}"
        );
    }
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
}

fn sector_2048(path: &str) -> Vec<u8> {
    let data = std::fs::read(path).expect("read disk");
    let at = images::VIRTIO_TEST_SECTOR as usize * images::SECTOR_SIZE;
    data[at..at + images::SECTOR_SIZE].to_vec()
}

fn assert_virtio_pattern(sector: &[u8]) {
    assert!(
        sector == images::virtio_expected_sector(),
        "sector 2048 does not hold what the guest wrote"
    );
}

#[test]
fn virtio_blk_write_and_flush_reach_raw_file() {
    let dir = TempDir::new("vblk-raw");
    let disk = raw_image(&dir, "vblk.img", TestImage::VirtioBlk.bytes());
    assert!(sector_2048(&disk) != images::virtio_expected_sector());
    let mut vm = SpiceboxVm::start(spicebox!(), &[&disk, "-m", "256M"]);
    vm.wait_for(images::VIRTIO_OK_MARKER, BOOT);
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
    assert_virtio_pattern(&sector_2048(&disk));
}

#[test]
fn virtio_blk_write_and_flush_reach_qcow2_file() {
    let dir = TempDir::new("vblk-qcow2");
    let raw = raw_image(&dir, "vblk.img", TestImage::VirtioBlk.bytes());
    let q = dir.join("vblk.qcow2").to_string_lossy().into_owned();
    qemu_img(&["convert", "-q", "-f", "raw", "-O", "qcow2", &raw, &q]);
    let mut vm = SpiceboxVm::start(spicebox!(), &[&q, "-m", "256M"]);
    vm.wait_for(images::VIRTIO_OK_MARKER, BOOT);
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
    let back = dir.join("back.raw").to_string_lossy().into_owned();
    qemu_img(&["convert", "-q", "-f", "qcow2", "-O", "raw", &q, &back]);
    assert_virtio_pattern(&sector_2048(&back));
}

#[test]
fn read_only_disk_refuses_guest_writes() {
    let dir = TempDir::new("vblk-ro");
    let disk = raw_image(&dir, "vblk.img", TestImage::VirtioBlk.bytes());
    let before = std::fs::read(&disk).unwrap();
    let mut vm = SpiceboxVm::start(spicebox!(), &[&disk, "--read-only", "-m", "256M"]);
    vm.wait_for(images::VIRTIO_FAIL_MARKER_PREFIX, BOOT);
    // Ctrl-C in a terminal: ends cleanly like SIGTERM.
    vm.signal(libc::SIGINT);
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
    assert!(
        std::fs::read(&disk).unwrap() == before,
        "read-only disk changed"
    );
}

#[test]
fn sigterm_stops_cleanly_and_smp_boots() {
    let mut vm = SpiceboxVm::start(spicebox!(), &["--smp", "2", "-m", "512M"]);
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "SIGTERM must end cleanly, got {st}");
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = TempDir::new("cli");
    let bad_qcow2 = dir.join("bad.qcow2").to_string_lossy().into_owned();
    let small_bios = dir.join("small-bios.bin").to_string_lossy().into_owned();
    std::fs::write(&small_bios, [0u8; 4096]).unwrap();
    std::fs::write(&bad_qcow2, b"QFI\xfb\x00\x00\x00\x09garbage").unwrap();
    // An overlay naming a backing file: refused unless asked for, so a guest cannot
    // plant a header that makes us open an arbitrary host file.
    let base = raw_image(&dir, "base.img", TestImage::PowerOff.bytes());
    let overlay = dir.join("overlay.qcow2").to_string_lossy().into_owned();
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", &base, "-F", "raw", &overlay,
    ]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["run".into(), "/nonexistent/disk.img".into()],
            "/nonexistent/disk.img",
        ),
        (
            vec!["run".into(), "-m".into(), "lots".into()],
            "memory size",
        ),
        (
            vec![
                "run".into(),
                "--bios".into(),
                "/nonexistent/bios.bin".into(),
            ],
            "/nonexistent/bios.bin",
        ),
        (
            vec!["run".into(), dir.path().to_string_lossy().into()],
            "disk",
        ),
        (
            vec!["run".into(), "--serial".into(), "tcp:1".into()],
            "serial",
        ),
        (vec!["run".into(), "-m".into(), "1M".into()], "memory"),
        (vec!["run".into(), bad_qcow2.clone()], "qcow2"),
        // --bios is really read: a file of the wrong size is refused.
        (
            vec!["run".into(), "--bios".into(), small_bios.clone()],
            "64 KiB",
        ),
        (vec!["run".into(), overlay.clone()], "Backing file"),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (st, err) = run_cli(spicebox!(), &args);
        assert!(!st.success(), "{args:?} must fail");
        assert!(
            err.contains(needle),
            "{args:?}: error should mention {needle:?}, got: {err}"
        );
        let lines = err.lines().filter(|l| !l.trim().is_empty()).count();
        assert!(lines <= 2, "{args:?}: error should be short, got:\n{err}");
        assert!(
            !err.contains("booting"),
            "{args:?}: failed before booting:\n{err}"
        );
    }
}
