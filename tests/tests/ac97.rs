//! End-to-end: sound. The ac97-play guest (images/guests/programs/src/bin/
//! ac97-play.rs) plays a 440 Hz tone at 44.1 kHz on an AC97 the way
//! snd-intel8x0 does, interrupt per period, for 32 s, and checks that the card
//! consumed it at real time; a real SPICE client (spice-gtk's SpiceClientGLib
//! playback channel, tests/py/spice_playback.py) records the stream. On
//! spicebox and on QEMU (`-device AC97,audiodev=snd0 -audiodev spice`) in the
//! same test: the guest's measured rate within 2% (never faster), the
//! client's recording a 440 Hz tone at 48 kHz that arrives at 48000 frames a
//! second of wall time (within 2%), sent as Opus (the client announces it);
//! the client's min-latency (the audio it is told to keep buffered) is
//! spice-gtk's 200 ms default on both servers: spice-server sends no
//! PLAYBACK LATENCY without video streams, and neither does spicebox.
//! spicebox a second time with `--spice-playback-compression off`: the same
//! checks on the raw stream.
//! Then spicebox once more with no client:
//! the guest's stream still runs at real time.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use images::TestImage;
use spicebox_tests::audio::{dominant, recorder};
use spicebox_tests::tools::{free_port, qemu_guest, run_timeout};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT_AND_PLAY: Duration = Duration::from_secs(150);
/// Seconds of playback the client measures (after 2 s to settle).
const RECORD_SECONDS: &str = "10";

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

/// The `key=value` word in `line`.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .trim()
}

fn num(line: &str, key: &str) -> f64 {
    field(line, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {line:?}"))
}

fn guest_line(serial: &str) -> &str {
    serial
        .lines()
        .find(|l| l.starts_with("ac97 "))
        .unwrap_or_else(|| panic!("no summary line:\n{serial}"))
}

#[test]
fn ac97_tone_reaches_a_spice_client_on_spicebox_and_qemu() {
    let dir = TempDir::new("ac97");
    // (name, QEMU?, Opus?): spicebox once more with playback compression
    // off, so the same client gets the raw stream.
    for (name, qemu_run, opus) in [
        ("qemu", true, true),
        ("spicebox", false, true),
        ("spicebox-raw", false, false),
    ] {
        let disk = dir.join(&format!("ac97-play-{name}.img"));
        images::write_image(TestImage::Ac97Play.bytes(), &disk).unwrap();
        let port = free_port();
        let mut vm = if qemu_run {
            SpiceboxVm::start_command(qemu(&disk, port))
        } else {
            let spice = format!("127.0.0.1:{port}");
            let args = [disk.to_str().unwrap(), "-m", "512M", "--spice", &spice];
            let compression = if opus { "on" } else { "off" };
            let more = [
                "--disable-ticketing",
                "--spice-playback-compression",
                compression,
            ];
            SpiceboxVm::start(spicebox!(), &[&args[..], &more[..]].concat())
        };
        let pcm_path = dir.join(&format!("{name}.raw"));
        let client = {
            let cmd = recorder(port, &pcm_path, RECORD_SECONDS);
            std::thread::spawn(move || run_timeout(cmd, Duration::from_secs(150)))
        };
        vm.wait_for(images::AC97_PLAY_OK_MARKER, BOOT_AND_PLAY);
        assert!(vm.wait_exit(Duration::from_secs(60)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::AC97_PLAY_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        let guest = guest_line(&serial).to_owned();
        let out: Output = client.join().expect("recorder thread");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: client {stdout}\n{stderr}");
        let summary = stdout
            .lines()
            .find(|l| l.starts_with("playback "))
            .unwrap_or_else(|| panic!("{name}: client said {stdout}\n{stderr}"));

        // What the client was told, and what it received against its clock.
        assert_eq!(num(summary, "rate"), 48_000.0, "{name}: {summary}");
        assert_eq!(num(summary, "channels"), 2.0, "{name}: {summary}");
        let frames = num(summary, "window_bytes") / 4.0;
        let seconds = num(summary, "window_seconds");
        let client_rate = frames / seconds;
        let pcm: Vec<i16> = std::fs::read(&pcm_path)
            .unwrap()
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        // Past the first second: the stream has settled.
        let (hz, prominence) = dominant(&pcm[96_000.min(pcm.len())..], 48_000.0);
        eprintln!(
            "{name}: guest {guest}; client {client_rate:.0} frames/s over {seconds:.1} s, \
             dominant {hz:.2} Hz ({prominence:.0}x the band)"
        );
        let guest_rate = num(&guest.replace("ac97 ", "x "), "rate");
        assert!(
            (44_100.0 * 0.98..=44_100.0 * 1.005).contains(&guest_rate),
            "{name}: guest rate {guest_rate}"
        );
        assert!(
            (client_rate - 48_000.0).abs() <= 48_000.0 * 0.02,
            "{name}: client received {client_rate:.0} frames/s: {summary}"
        );
        assert!((hz - 440.0).abs() <= 2.0, "{name}: dominant {hz} Hz");
        // spice-gtk announces Opus, so both servers send Opus: a tenth of
        // the 192,000 bytes a second raw PCM takes (plus 10 bytes of header
        // and stamp a 10 ms frame), which is what goes with compression off.
        let wire_rate = num(summary, "wire_bytes") / (num(summary, "bytes") / 192_000.0);
        eprintln!("{name}: {wire_rate:.0} bytes/s on the wire");
        if opus {
            assert!(wire_rate < 60_000.0, "{name}: not Opus: {summary}");
        } else {
            assert!(
                (192_000.0..200_000.0).contains(&wire_rate),
                "{name}: not raw: {summary}"
            );
        }
        assert!(prominence > 100.0, "{name}: not a tone ({prominence}x)");
        let min_latency = num(summary, "min_latency");
        eprintln!("{name}: client min-latency {min_latency} ms");
        assert_eq!(min_latency, 200.0, "{name}: PLAYBACK LATENCY: {summary}");
    }

    // Nobody listening: the card still consumes the guest's buffers at the
    // stream's rate (the guest checks it, and fails on an underrun).
    let disk = dir.join("ac97-play-alone.img");
    images::write_image(TestImage::Ac97Play.bytes(), &disk).unwrap();
    let mut vm = SpiceboxVm::start(spicebox!(), &[disk.to_str().unwrap(), "-m", "512M"]);
    vm.wait_for(images::AC97_PLAY_OK_MARKER, BOOT_AND_PLAY);
    assert!(vm.wait_exit(Duration::from_secs(60)).success());
    let serial = vm.serial_text();
    let guest = guest_line(&serial);
    eprintln!("spicebox without a client: guest {guest}");
    let guest_rate = num(&guest.replace("ac97 ", "x "), "rate");
    assert!(
        (44_100.0 * 0.98..=44_100.0 * 1.005).contains(&guest_rate),
        "without a client: guest rate {guest_rate}"
    );
}
