//! End-to-end: platform details a user relies on — SMP and large memory as
//! SeaBIOS sees them (through its debug log), and COM1 on a unix socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use images::TestImage;
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(90);

/// A fresh copy of the image that prints its marker and powers off.
fn poweroff_disk(dir: &TempDir) -> std::path::PathBuf {
    let disk = dir.join("poweroff.img");
    images::write_image(TestImage::PowerOff.bytes(), &disk).unwrap();
    disk
}

#[test]
fn seabios_sees_all_cpus_and_ram_above_4g() {
    let dir = TempDir::new("platform");
    let disk = poweroff_disk(&dir);
    let log = dir.join("bios.log");
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &[
            disk.to_str().unwrap(),
            "--smp",
            "2",
            "-m",
            "5G",
            "--bios-log",
            log.to_str().unwrap(),
        ],
    );
    vm.wait_for(images::POWEROFF_TEST_MARKER, BOOT);
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
    let log = std::fs::read_to_string(&log).expect("BIOS log written");
    assert!(log.contains("Running on KVM"), "KVM not detected:\n{log}");
    assert!(
        log.contains("Found 2 cpu(s)"),
        "SeaBIOS must wake both CPUs:\n{log}"
    );
    // 5 GiB: 3 GiB below the PCI hole, 2 GiB from 4 GiB up.
    // (SeaBIOS keeps the last few pages below 3 GiB for itself.)
    assert!(
        log.contains("0000000000100000 - 00000000bff") && log.contains(" - 00000000c0000000 = "),
        "low RAM must end at 3 GiB:\n{log}"
    );
    assert!(
        log.contains("0000000100000000 - 0000000180000000 = 1 RAM"),
        "RAM above 4 GiB missing:\n{log}"
    );
    assert!(log.contains("found virtio-blk at 00:03.0"), "{log}");
}

#[test]
fn serial_on_a_unix_socket_carries_both_directions() {
    let dir = TempDir::new("unixserial");
    let sock = dir.join("com1.sock");
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &["--serial", &format!("unix:{}", sock.display())],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match UnixStream::connect(&sock) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("serial socket never appeared: {e}"),
        }
    };
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut sent = false;
    while start.elapsed() < BOOT {
        let mut buf = [0u8; 256];
        if let Ok(n) = conn.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&seen);
        // Output from before we connected is dropped, so the banner may be missed;
        // input waits in the UART, so typing early is fine.
        if !sent && (text.contains(images::DEMO_READY_MARKER) || start.elapsed().as_secs() > 10) {
            conn.write_all(b"xyzzy").unwrap();
            sent = true;
        }
        if sent && text.contains("xyzzy") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.contains("xyzzy"), "no echo over the socket: {text:?}");
    conn.write_all(&[images::DEMO_POWER_OFF_KEY]).unwrap();
    assert!(vm.wait_exit(Duration::from_secs(30)).success());
    assert!(vm.serial_text().is_empty(), "stdio must be unused");
}

#[test]
fn qxl_vga_option_rom_runs_and_sets_text_mode() {
    let dir = TempDir::new("qxlrom");
    let disk = poweroff_disk(&dir);
    let log = dir.join("bios.log");
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &[
            disk.to_str().unwrap(),
            "--vga",
            "qxl",
            "--bios-log",
            log.to_str().unwrap(),
        ],
    );
    vm.wait_for(images::POWEROFF_TEST_MARKER, BOOT);
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
    let log = std::fs::read_to_string(&log).expect("BIOS log written");
    // SeaBIOS found the QXL device as primary VGA, ran vgabios-qxl from its
    // expansion ROM BAR, and the VGA BIOS programmed mode 3 through our ports.
    for needle in [
        "Using 00:02.0 for primary VGA",
        "Start SeaVGABIOS",
        "set VGA mode 3",
    ] {
        assert!(log.contains(needle), "missing {needle:?}:\n{log}");
    }
}

#[test]
fn serial_to_a_file_with_an_explicit_bios() {
    let dir = TempDir::new("serialfile");
    let disk = poweroff_disk(&dir);
    let out = dir.join("com1.txt");
    // A copy, so the boot cannot succeed through the default path by accident.
    let bios = dir.join("my-bios.bin");
    std::fs::copy("/usr/share/seabios/bios-256k.bin", &bios).expect("seabios installed");
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &[
            disk.to_str().unwrap(),
            "--serial",
            &format!("file:{}", out.display()),
            "--bios",
            bios.to_str().unwrap(),
        ],
    );
    assert!(vm.wait_exit(BOOT).success(), "{}", vm.stderr_text());
    let text = std::fs::read_to_string(&out).expect("serial file written");
    assert!(text.contains(images::POWEROFF_TEST_MARKER), "{text:?}");
    assert!(vm.serial_text().is_empty(), "stdout must stay unused");
}
