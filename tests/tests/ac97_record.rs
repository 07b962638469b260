//! End-to-end: the microphone. The ac97-record guest (images/guests/programs/
//! src/bin/ac97-record.rs) captures from an AC97's PCM in at 44.1 kHz the way
//! snd-intel8x0 does, for 8 s, checks the card delivered it at real time and
//! reports the dominant frequency and power of the last 2 s; a real SPICE
//! client (spice-gtk's SpiceClientGLib record channel, tests/py/
//! spice_record.py) sends a 1 kHz tone at the rate RECORD START asks for. On
//! spicebox and on QEMU (`-device AC97,audiodev=snd0 -audiodev spice`) in the
//! same test: the guest hears 1000 ± 1 Hz, loud and clear (the client sends
//! Opus to both). Then spicebox once
//! more with no client: the guest records silence, still at real time.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use images::TestImage;
use spicebox_tests::tools::{free_port, qemu_guest, require_spice_client_glib, run_timeout};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT_AND_RECORD: Duration = Duration::from_secs(120);
const TONE_HZ: f64 = 1000.0;
/// The client's amplitude: 12000 of 32767, so a mean square of 7.2e7.
const AMPLITUDE: &str = "12000";

fn qemu(disk: &Path, port: u16) -> Command {
    let mut cmd = qemu_guest(disk);
    cmd.args([
        "-device",
        "AC97,audiodev=snd0",
        "-audiodev",
        "spice,id=snd0",
    ])
    .arg("-spice")
    .arg(format!("port={port},addr=127.0.0.1,disable-ticketing=on"));
    cmd
}

fn microphone(port: u16) -> Command {
    require_spice_client_glib();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/py/spice_record.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--hz", &TONE_HZ.to_string(), "--amplitude", AMPLITUDE])
        .args(["--timeout", "100"]);
    cmd
}

/// The `key=value` word in `line`, as a number.
fn num(line: &str, key: &str) -> f64 {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {line:?}"))
}

/// `text` without terminal colour sequences (ESC [ ... m).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The guest's report: `ac97-record ...` after its success marker's run.
fn guest_report(vm: &mut SpiceboxVm, name: &str) -> String {
    vm.wait_for(images::AC97_RECORD_OK_MARKER, BOOT_AND_RECORD);
    assert!(vm.wait_exit(Duration::from_secs(60)).success(), "{name}");
    let serial = vm.serial_text();
    assert!(
        !serial.contains(images::AC97_RECORD_FAIL_MARKER_PREFIX),
        "{name}:\n{serial}"
    );
    let line = serial
        .lines()
        .find(|l| l.starts_with("ac97-record "))
        .unwrap_or_else(|| panic!("{name}: no report:\n{serial}"));
    // Real time, never faster (the guest checks it too).
    let rate = num(line, "rate");
    assert!(
        (44_100.0 * 0.98..=44_100.0 * 1.005).contains(&rate),
        "{name}: guest captured {rate} frames/s: {line}"
    );
    line.to_owned()
}

#[test]
fn ac97_records_a_spice_clients_tone_on_spicebox_and_qemu() {
    let dir = TempDir::new("ac97-record");
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let disk = dir.join(&format!("ac97-record-{name}.img"));
        images::write_image(TestImage::Ac97Record.bytes(), &disk).unwrap();
        let port = free_port();
        let mut vm = if qemu_run {
            SpiceboxVm::start_command(qemu(&disk, port))
        } else {
            // The record channel's debug lines say which mode the client chose.
            let mut cmd = Command::new(spicebox!());
            cmd.args([
                "run",
                "--serial",
                "stdio",
                disk.to_str().unwrap(),
                "-m",
                "512M",
            ])
            .args([
                "--spice",
                &format!("127.0.0.1:{port}"),
                "--disable-ticketing",
            ])
            .env("SPICEBOX_LOG", "warn,spice::channel::record=debug");
            SpiceboxVm::start_command(cmd)
        };
        let client = {
            let cmd = microphone(port);
            std::thread::spawn(move || run_timeout(cmd, Duration::from_secs(130)))
        };
        let guest = guest_report(&mut vm, name);
        let out: Output = client.join().expect("client thread");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: client {stdout}\n{stderr}");
        let summary = stdout
            .lines()
            .find(|l| l.starts_with("record "))
            .unwrap_or_else(|| panic!("{name}: client said {stdout}\n{stderr}"));
        eprintln!("{name}: guest {guest}\n{name}: client {summary}");

        // The server asked for S16 stereo at 48 kHz, then stopped with the guest.
        assert_eq!(num(summary, "rate"), 48_000.0, "{name}: {summary}");
        assert_eq!(num(summary, "channels"), 2.0, "{name}: {summary}");
        assert_eq!(num(summary, "starts"), 1.0, "{name}: {summary}");
        assert!(num(summary, "frames") > 48_000.0 * 4.0, "{name}: {summary}");

        if !qemu_run {
            // spice-gtk encodes Opus when the server offers it, as with QEMU.
            let log = strip_ansi(&vm.stderr_text());
            assert!(
                log.lines()
                    .any(|l| l.contains("record: client's mode") && l.contains("mode=3")),
                "spicebox: the client did not send Opus:\n{log}"
            );
        }
        let hz = num(&guest, "dominant_mhz") / 1000.0;
        assert!(
            (hz - TONE_HZ).abs() <= 1.0,
            "{name}: the guest heard {hz} Hz: {guest}"
        );
        assert!(
            num(&guest, "prominence") > 100.0,
            "{name}: not a clean tone: {guest}"
        );
        // 12000 peak is a mean square of 7.2e7: within 3 dB of it.
        let power = num(&guest, "power");
        assert!(
            (3.6e7..=1.44e8).contains(&power),
            "{name}: the tone's power {power}: {guest}"
        );
    }

    // Nobody speaking: the card records silence, at real time.
    let disk = dir.join("ac97-record-alone.img");
    images::write_image(TestImage::Ac97Record.bytes(), &disk).unwrap();
    let mut vm = SpiceboxVm::start(spicebox!(), &[disk.to_str().unwrap(), "-m", "512M"]);
    let guest = guest_report(&mut vm, "spicebox without a client");
    eprintln!("spicebox without a client: guest {guest}");
    assert_eq!(num(&guest, "power"), 0.0, "not silence: {guest}");
    assert_eq!(num(&guest, "dominant_mhz"), 0.0, "not silence: {guest}");
}
