//! End-to-end: a USB stick redirected into the VM and read by a guest that
//! drives the xHCI controller as xhci-hcd and usb-storage do
//! (images/guests/programs/src/bin/xhci-storage/). The stick is the
//! in-repo usbredir test peer's bulk-only mass-storage device
//! (`usbredir::peer::storage`), run by this test:
//!
//! * QEMU: `-device qemu-xhci -chardev socket,... -device usb-redir`, the
//!   peer on the chardev's TCP socket;
//! * spicebox: the peer over SPICE usbredir channel 0, linked by the in-repo
//!   SPICE test client.
//!
//! Both guests must print the same `storage ...` lines, and those must match
//! what the peer's disk holds (vendor, capacity, FNV-1a of the sectors read,
//! the sense of a read past the end).
//!
//! The same guest, given the peer's boot keyboard instead, drives it as
//! usbhid does (interrupt IN endpoint, SET_IDLE, SET_PROTOCOL, SET_REPORT,
//! queued interrupt TDs); the peer types a known text and both VMMs' guests
//! must print the same reports and decode the text.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use images::TestImage;
use spice::client::{link_channel_id, ClientOptions};
use spice::Listen;
use spicebox_tests::usb_peer::{vmc_read, vmc_write, Scenario, RUN, STEP, USBREDIR};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};
use usbredir::peer::storage::{fnv1a32, MassStorage, SECTOR_SIZE, STORAGE_PRODUCT, STORAGE_VENDOR};
use usbredir::peer::{HostPeer, Keyboard, KEYBOARD_REPORT_DESCRIPTOR};

const SECTORS: u32 = 64;
/// The peer's socket reads wait this long (storage and HID need no pacing).
const POLL: Duration = Duration::from_millis(20);

/// The lines the guest must print for the peer's disk.
fn expected_lines() -> Vec<String> {
    let disk = MassStorage::new(SECTORS);
    let disk = disk.disk();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    vec![
        format!(
            "storage inquiry type=0 removable=1 vendor=\"{}\" product=\"{}\" revision=\"0001\"",
            text(STORAGE_VENDOR),
            text(STORAGE_PRODUCT)
        ),
        format!("storage capacity blocks={SECTORS} block_size={SECTOR_SIZE}"),
        format!(
            "storage read lba=0 count=16 fnv={:08x} first=\"LBA 00000000\"",
            fnv1a32(&disk[..16 * SECTOR_SIZE])
        ),
        format!(
            "storage read lba=40 count=1 fnv={:08x} first=\"LBA 00000028\"",
            fnv1a32(&disk[40 * SECTOR_SIZE..41 * SECTOR_SIZE])
        ),
        "storage sense key=5 asc=21 ascq=00".to_string(),
    ]
}

fn storage_lines(serial: &str) -> Vec<String> {
    serial
        .lines()
        .filter(|l| l.starts_with("storage "))
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn xhci_storage_guest_reads_the_redirected_stick_on_qemu_and_spicebox() {
    let dir = TempDir::new("xhci-storage");
    let expected = expected_lines();
    let mut outputs = Vec::new();
    for name in ["qemu", "spicebox"] {
        let disk = dir.join(&format!("xhci-storage-{name}.img"));
        images::write_image(TestImage::XhciStorage.bytes(), &disk).unwrap();
        let scenario = Scenario {
            device: MassStorage::new(SECTORS),
            poll: POLL,
            tick: |_: &mut HostPeer<MassStorage>| {},
            during: |_: &mut SpiceboxVm, _: Option<(&Listen, u32)>| {},
        };
        let (serial, run) = if name == "qemu" {
            scenario.run_qemu(&disk)
        } else {
            scenario.run_spicebox(spicebox!(), &disk)
        };
        eprintln!("{name}:\n{serial}");
        assert_eq!(storage_lines(&serial), expected, "{name}:\n{serial}");
        assert!(serial.contains("usb device 1d6b:0104"), "{name}:\n{serial}");
        // INQUIRY, TEST UNIT READY, READ CAPACITY, 3 READs, REQUEST SENSE,
        // tagged 1 to 7 (QEMU's SeaBIOS, bios-256k.bin, drives the stick
        // with its own tags before the guest starts).
        let tags = &run.peer.device.tags;
        assert!(
            tags.ends_with(&[1, 2, 3, 4, 5, 6, 7]),
            "{name}: CBW tags {tags:?}"
        );
        outputs.push(storage_lines(&serial));
    }
    assert_eq!(
        outputs[0], outputs[1],
        "QEMU and spicebox read different bytes"
    );
}

/// What the peer's keyboard types once the guest has queued its interrupt
/// TDs: "Hi USB 42" and Enter, each key pressed and released.
const TYPED: &str = "Hi USB 42";
/// Time between reports, as a typist's (well under the VMMs' report buffers).
const KEY_GAP: Duration = Duration::from_millis(30);

/// Boot-protocol reports (modifiers, reserved, six usages) for `text` and Enter.
fn key_reports(text: &str) -> VecDeque<[u8; 8]> {
    let mut reports = VecDeque::new();
    for c in text.chars().chain(['\n']) {
        let (modifiers, usage) = match c {
            'a'..='z' => (0, 0x04 + (c as u8 - b'a')),
            'A'..='Z' => (0x02, 0x04 + (c as u8 - b'A')),
            '1'..='9' => (0, 0x1e + (c as u8 - b'1')),
            '0' => (0, 0x27),
            ' ' => (0, 0x2c),
            '\n' => (0, 0x28),
            _ => panic!("no key for {c:?}"),
        };
        reports.push_back([modifiers, 0, usage, 0, 0, 0, 0, 0]);
        reports.push_back([0; 8]);
    }
    reports
}

/// While the guest polls for reports, a second keyboard is plugged into
/// SPICE usbredir channel 1 and unplugged: the guest sees both port changes
/// and keeps ticking (the first keyboard's reports follow).
fn plug_and_unplug(vm: &mut SpiceboxVm, listen: &Listen, session: u32) {
    let (mut s, _) = link_channel_id(
        listen,
        session,
        USBREDIR,
        1,
        vec![],
        &ClientOptions::default(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut peer = HostPeer::new(Keyboard::default());
    let (mut buf, mut pending) = (vec![0u8; 64 * 1024], Vec::new());
    let mut pump_until = |peer: &mut HostPeer<Keyboard>, vm: &SpiceboxVm, what: &str| {
        let deadline = Instant::now() + STEP;
        while !vm.serial_text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?}:\n{}\n{}",
                vm.serial_text(),
                vm.stderr_text()
            );
            let out = peer.take_output();
            if !out.is_empty() {
                vmc_write(&mut s, &out).unwrap();
            }
            let got = vmc_read(&mut s, &mut buf, &mut pending).expect("channel 1 open");
            peer.received(&got)
                .expect("spicebox's usbredir packets parse");
        }
    };
    pump_until(&mut peer, vm, "connected=1");
    peer.disconnect().unwrap();
    pump_until(&mut peer, vm, "connected=0");
    let ticks = vm.serial_text().matches("hid tick").count();
    vm.wait_for_count("hid tick", ticks + 2, STEP);
}

fn hid_lines(serial: &str) -> Vec<String> {
    serial
        .lines()
        .filter(|l| l.starts_with("hid report") || l.starts_with("hid typed"))
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn xhci_guest_receives_the_redirected_keyboards_reports_on_qemu_and_spicebox() {
    let dir = TempDir::new("xhci-hid");
    let reports = key_reports(TYPED);
    let mut outputs = Vec::new();
    for name in ["qemu", "spicebox"] {
        let disk = dir.join(&format!("xhci-hid-{name}.img"));
        images::write_image(TestImage::XhciStorage.bytes(), &disk).unwrap();
        // The peer types once the guest says its TDs are queued (and the
        // VMM has had time to start interrupt receiving).
        let ready = Arc::new(AtomicBool::new(false));
        let mut pending = reports.clone();
        let mut next = Instant::now();
        let typist = ready.clone();
        let scenario = Scenario {
            device: Keyboard::default(),
            poll: POLL,
            tick: move |peer: &mut HostPeer<Keyboard>| {
                if !typist.load(Ordering::SeqCst) || Instant::now() < next {
                    return;
                }
                if let Some(report) = pending.front() {
                    if peer.report(0x81, report).expect("report encodes") {
                        pending.pop_front();
                        next = Instant::now() + KEY_GAP;
                    }
                }
            },
            during: |vm: &mut SpiceboxVm, spice: Option<(&Listen, u32)>| {
                vm.wait_for("hid ready", RUN);
                if let Some((listen, session)) = spice {
                    plug_and_unplug(vm, listen, session);
                }
                std::thread::sleep(Duration::from_millis(200));
                ready.store(true, Ordering::SeqCst);
            },
        };
        let (serial, run) = if name == "qemu" {
            scenario.run_qemu(&disk)
        } else {
            scenario.run_spicebox(spicebox!(), &disk)
        };
        eprintln!("{name}:\n{serial}");
        assert!(serial.contains("usb device 1d6b:0101"), "{name}:\n{serial}");
        if name == "spicebox" {
            let plugs = ["connected=1", "connected=0"].map(|c| serial.find(c));
            assert!(
                matches!(plugs, [Some(a), Some(b)] if a < b),
                "the guest saw no plug and unplug:\n{serial}"
            );
        }
        let lines = hid_lines(&serial);
        let fnv = usbredir::peer::storage::fnv1a32(&KEYBOARD_REPORT_DESCRIPTOR);
        let mut expected = vec![format!("hid report-descriptor fnv={fnv:08x}")];
        expected.extend(reports.iter().map(|r| {
            let hex: Vec<String> = r.iter().map(|b| format!("{b:02x}")).collect();
            format!("hid report {}", hex.join(" "))
        }));
        expected.push(format!("hid typed \"{TYPED}\" reports={}", reports.len()));
        assert_eq!(lines, expected, "{name}:\n{serial}");
        // SET_REPORT: the guest turned Num Lock on.
        assert_eq!(
            run.peer.device.leds.last(),
            Some(&1),
            "{name}: LEDs {:?}",
            run.peer.device.leds
        );
        outputs.push(lines);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "QEMU and spicebox saw different reports"
    );
}

/// Sectors of the benchmark's stick: the guest reads all 16 MiB of it.
const BENCH_STICK_SECTORS: u32 = 32 * 1024;
/// What the benchmark's keyboard types (74 reports with the Enter).
const BENCH_TYPED: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

/// One VMM's benchmark numbers: MB/s (guest-timed) and report latencies.
struct BenchRun {
    mb_per_s: f64,
    latencies_ms: Vec<f64>,
    /// The peer's view of each storage transfer's VMM + guest share (µs).
    turnarounds_us: Vec<f64>,
}

fn bench_one(name: &str, dir: &TempDir) -> BenchRun {
    let disk = dir.join(&format!("bench-{name}.img"));
    images::write_image(TestImage::XhciStorage.bytes(), &disk).unwrap();
    let storage = Scenario {
        device: MassStorage::new(BENCH_STICK_SECTORS),
        poll: POLL,
        tick: |_: &mut HostPeer<MassStorage>| {},
        during: |_: &mut SpiceboxVm, _: Option<(&Listen, u32)>| {},
    };
    let (serial, run) = if name == "qemu" {
        storage.run_qemu(&disk)
    } else {
        storage.run_spicebox(spicebox!(), &disk)
    };
    // Turnaround by the reply before it: after the CBW's (26 bytes), the
    // data's (64 KiB + headers) and the CSW's (39).
    {
        let mut by: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
        for (len, d) in &run.turnarounds {
            by.entry(*len).or_default().push(d.as_secs_f64() * 1e6);
        }
        for (len, mut v) in by {
            if v.len() > 10 {
                v.sort_by(f64::total_cmp);
                println!(
                    "{name}: turnaround after a {len}-byte reply: n={} median {:.0} µs p90 {:.0} µs",
                    v.len(),
                    percentile(&v, 0.5),
                    percentile(&v, 0.9)
                );
            }
        }
    }
    let turnarounds_us = run
        .turnarounds
        .iter()
        .map(|(_, d)| d.as_secs_f64() * 1e6)
        .collect();
    let line = serial
        .lines()
        .find(|l| l.starts_with("storage bench "))
        .unwrap_or_else(|| panic!("{name}: no bench line:\n{serial}"));
    let mb_per_s: f64 = line
        .split(' ')
        .find_map(|w| w.strip_prefix("mb_per_s="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line}"));

    // HID: the peer stamps each report as it writes it; the test stamps the
    // guest's `hid report` line as the VMM's serial output reaches it. The
    // difference is report delivery plus the serial path out, measured on
    // one clock (the host's).
    let reports = key_reports(BENCH_TYPED);
    let count = reports.len();
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ready = Arc::new(AtomicBool::new(false));
    let mut seen = Vec::new();
    let mut arrived = Vec::new();
    let (typist, stamps) = (ready.clone(), sent.clone());
    let mut pending = reports.clone();
    let mut next = Instant::now();
    let hid = Scenario {
        device: Keyboard::default(),
        poll: POLL,
        tick: move |peer: &mut HostPeer<Keyboard>| {
            if !typist.load(Ordering::SeqCst) || Instant::now() < next {
                return;
            }
            if let Some(report) = pending.front() {
                if peer.report(0x81, report).expect("report encodes") {
                    stamps.lock().unwrap().push(Instant::now());
                    pending.pop_front();
                    next = Instant::now() + KEY_GAP;
                }
            }
        },
        during: |vm: &mut SpiceboxVm, _: Option<(&Listen, u32)>| {
            vm.wait_for("hid ready", RUN);
            std::thread::sleep(Duration::from_millis(200));
            ready.store(true, Ordering::SeqCst);
            for i in 1..=count {
                vm.wait_for_count("hid report ", i, STEP);
                seen.push(Instant::now());
            }
            let text = vm.serial_text();
            for (at, marker) in text.match_indices("hid report ") {
                arrived.extend(vm.serial_arrival(at + marker.len()));
            }
        },
    };
    let (serial, _) = if name == "qemu" {
        hid.run_qemu(&disk)
    } else {
        hid.run_spicebox(spicebox!(), &disk)
    };
    let expected: Vec<String> = reports
        .iter()
        .map(|r| {
            let hex: Vec<String> = r.iter().map(|b| format!("{b:02x}")).collect();
            format!("hid report {}", hex.join(" "))
        })
        .collect();
    let got: Vec<String> = hid_lines(&serial)
        .into_iter()
        .filter(|l| l.starts_with("hid report "))
        .collect();
    assert_eq!(got, expected, "{name}: reports lost or changed");
    let sent = sent.lock().unwrap();
    if let Ok(path) = std::env::var("SPICEBOX_BENCH_STDERR") {
        write_hid_stamps(&format!("{path}.{name}.hid"), &sent, &seen, &arrived);
    }
    let latencies_ms = sent
        .iter()
        .zip(&seen)
        .map(|(s, r)| r.duration_since(*s).as_secs_f64() * 1000.0)
        .collect();
    BenchRun {
        mb_per_s,
        latencies_ms,
        turnarounds_us,
    }
}

/// Profiling: per report, when the peer wrote it, when the test saw the
/// guest's line and when that line's bytes reached the host (the serial
/// reader thread), as wall-clock µs like the VMM's log timestamps:
/// `sent S seen R arrived A`, one line each (scripts/bench_usb_hid.py).
fn write_hid_stamps(path: &str, sent: &[Instant], seen: &[Instant], arrived: &[Instant]) {
    use std::io::Write as _;
    let (now, wall) = (Instant::now(), std::time::SystemTime::now());
    let us = |t: &Instant| {
        let at = wall - now.duration_since(*t);
        at.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros()
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    for ((s, r), a) in sent.iter().zip(seen).zip(arrived) {
        writeln!(f, "sent {} seen {} arrived {}", us(s), us(r), us(a)).unwrap();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Benchmark, not a test: `scripts/bench_usb` runs it (SPICEBOX_BENCH_RUNS
/// runs per VMM, default 3). The same guest and peer on QEMU's usb-redir and
/// spicebox's SPICE usbredir channel: mass-storage read rate and HID report
/// latency.
#[test]
#[ignore = "benchmark: scripts/bench_usb"]
fn bench_usb() {
    let runs: usize = std::env::var("SPICEBOX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = TempDir::new("bench-usb");
    // SPICEBOX_BENCH_ONLY=qemu|spicebox: one VMM (profiling).
    let only = std::env::var("SPICEBOX_BENCH_ONLY").ok();
    let names: Vec<&str> = ["qemu", "spicebox"]
        .into_iter()
        .filter(|n| only.as_deref().is_none_or(|o| o == *n))
        .collect();
    // (rates, latencies, turnarounds) per VMM. The VMMs take turns run by
    // run, so a host that gets busier or quieter midway (2 shared cores)
    // weighs on both alike.
    let mut results: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); names.len()];
    for _ in 0..runs {
        for (name, (rates, latencies, turnarounds)) in names.iter().zip(&mut results) {
            let run = bench_one(name, &dir);
            rates.push(run.mb_per_s);
            latencies.extend(run.latencies_ms);
            turnarounds.extend(run.turnarounds_us);
        }
    }
    let mut rows = Vec::new();
    for (name, (mut rates, mut latencies, mut turnarounds)) in names.into_iter().zip(results) {
        rates.sort_by(f64::total_cmp);
        latencies.sort_by(f64::total_cmp);
        turnarounds.sort_by(f64::total_cmp);
        rows.push((name, rates, latencies, turnarounds));
    }
    println!();
    println!(
        "USB redirection, {runs} run(s) per VMM: 16 MiB READ(10) x 64 KiB (MB/s, guest TSC); storage transfer turnaround seen by the peer (its reply written -> the next request read: VMM + guest, µs); HID report -> guest's serial line (ms, host clock)"
    );
    println!(
        "| VMM      | read MB/s (median, min-max) | turnaround µs median | p90   | HID latency ms median | p90   | max   | reports |"
    );
    println!("|----------|-----------------------------|----------------------|-------|-----------------------|-------|-------|---------|");
    for (name, rates, lat, turn) in rows {
        let rate = format!(
            "{:.1} ({:.1}-{:.1})",
            percentile(&rates, 0.5),
            rates[0],
            rates[rates.len() - 1]
        );
        println!(
            "| {name:<8} | {rate:<27} | {:>20.0} | {:>5.0} | {:>21.2} | {:>5.2} | {:>5.2} | {:>7} |",
            percentile(&turn, 0.5),
            percentile(&turn, 0.9),
            percentile(&lat, 0.5),
            percentile(&lat, 0.9),
            lat[lat.len() - 1],
            lat.len()
        );
    }
}
