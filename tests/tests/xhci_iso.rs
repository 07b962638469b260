//! End-to-end: isochronous transfers through a redirected device. The
//! xhci-storage guest (images/guests/programs/src/bin/xhci-storage/iso.rs)
//! finds the test peer's isochronous source (`usbredir::peer::iso`) and
//! queues isochronous URBs as xhci-hcd does; the peer streams numbered
//! packets, one per 1 ms frame of the host's clock, once the VMM starts the
//! iso stream. Then the guest sends numbered OUT packets.
//!
//! * QEMU: `-device qemu-xhci -chardev socket,... -device usb-redir`, the
//!   peer on the chardev's TCP socket;
//! * spicebox: the peer over SPICE usbredir channel 0, linked by the in-repo
//!   SPICE test client.
//!
//! On both, the guest must check 500 non-empty packets (increasing numbers,
//! the peer's sizes and contents) and the peer must receive the 16 OUT
//! packets intact. Packets a VMM dropped (its bounded buffer) show as gaps
//! in the numbers; they are printed, not failures.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use images::TestImage;
use spice::client::{link_channel_id, AnyStream, ClientOptions, TestClient};
use spice::Listen;
use spicebox_tests::tools::{free_port, require_tool};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};
use usbredir::peer::iso::{iso_packet, IsoSource, ISO_IN, ISO_OUT};
use usbredir::peer::HostPeer;

const RUN: Duration = Duration::from_secs(150);
const STEP: Duration = Duration::from_secs(30);
const USBREDIR: u8 = 9;
const MAIN_ATTACH_CHANNELS: u16 = 104;
const SPICEVMC_DATA: u16 = 101;
/// The peer's socket reads wait this long: packets leave within a frame
/// or two of being due.
const POLL: Duration = Duration::from_millis(1);
/// Packets the peer sends at most in one go after a stall.
const MAX_BURST: usize = 64;
const PACKETS: u32 = 500;
const OUT_PACKETS: usize = 16;

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Runs the peer until `stop` or the connection closes: streams IN packets
/// as they come due while the VMM has the stream started.
fn pump(
    mut read: impl FnMut() -> Option<Vec<u8>>,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
    stop: &AtomicBool,
) -> HostPeer<IsoSource> {
    let mut peer = HostPeer::new(IsoSource::default());
    let deadline = Instant::now() + RUN + STEP;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if peer.iso_streaming(ISO_IN) {
            for p in peer.device.due(Instant::now(), MAX_BURST) {
                peer.iso_packet(ISO_IN, &p).expect("iso packet encodes");
            }
        }
        let out = peer.take_output();
        if !out.is_empty() && write(&out).is_err() {
            break;
        }
        match read() {
            Some(bytes) => peer
                .received(&bytes)
                .expect("the VMM's usbredir packets parse"),
            None => break,
        }
    }
    peer
}

fn finish(mut vm: SpiceboxVm, name: &str) -> String {
    vm.wait_for(images::XHCI_STORAGE_OK_MARKER, RUN);
    assert!(vm.wait_exit(STEP).success(), "{name}");
    let serial = vm.serial_text();
    assert!(
        !serial.contains(images::XHCI_STORAGE_FAIL_MARKER_PREFIX),
        "{name}:\n{serial}\n{}",
        vm.stderr_text()
    );
    serial
}

fn run_qemu(disk: &std::path::Path) -> (String, HostPeer<IsoSource>) {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-enable-kvm", "-machine", "pc", "-m", "512M", "-nodefaults"])
        .args(["-vga", "qxl", "-display", "none", "-serial", "stdio"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args(["-global", "virtio-blk-pci.disable-legacy=on", "-no-reboot"])
        .args(["-device", "qemu-xhci,id=xhci"])
        .arg("-chardev")
        .arg(format!("socket,id=usbredir0,host=127.0.0.1,port={port}"))
        .args(["-device", "usb-redir,chardev=usbredir0,bus=xhci.0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let peer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let mut sock = loop {
                match listener.accept() {
                    Ok((sock, _)) => break sock,
                    Err(e) if is_timeout(&e) && !stop.load(Ordering::SeqCst) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("QEMU did not connect its usb-redir chardev: {e}"),
                }
            };
            sock.set_nonblocking(false).unwrap();
            sock.set_read_timeout(Some(POLL)).unwrap();
            let mut writer = sock.try_clone().unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            pump(
                || match sock.read(&mut buf) {
                    Ok(0) => None,
                    Ok(n) => Some(buf[..n].to_vec()),
                    Err(e) if is_timeout(&e) => Some(Vec::new()),
                    Err(_) => None,
                },
                |b| writer.write_all(b),
                &stop,
            )
        })
    };
    let _stop = StopOnDrop(stop);
    let serial = finish(SpiceboxVm::start_command(cmd), "qemu");
    (serial, peer.join().expect("peer thread"))
}

/// SPICEVMC_DATA messages (mini header) in: their usbredir bytes (empty on
/// timeout), None once closed.
fn vmc_read(s: &mut AnyStream, buf: &mut [u8], pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    match s.read(buf) {
        Ok(0) => return None,
        Ok(n) => pending.extend_from_slice(&buf[..n]),
        Err(e) if is_timeout(&e) => {}
        Err(_) => return None,
    }
    let mut out = Vec::new();
    while pending.len() >= 6 {
        let kind = u16::from_le_bytes([pending[0], pending[1]]);
        let size = u32::from_le_bytes([pending[2], pending[3], pending[4], pending[5]]) as usize;
        if pending.len() < 6 + size {
            break;
        }
        assert_eq!(kind, SPICEVMC_DATA, "plain DATA without the LZ4 cap");
        out.extend_from_slice(&pending[6..6 + size]);
        pending.drain(..6 + size);
    }
    Some(out)
}

fn vmc_write(s: &mut AnyStream, b: &[u8]) -> std::io::Result<()> {
    let mut m = SPICEVMC_DATA.to_le_bytes().to_vec();
    m.extend((b.len() as u32).to_le_bytes());
    m.extend_from_slice(b);
    s.write_all(&m)
}

fn run_spicebox(disk: &std::path::Path) -> (String, HostPeer<IsoSource>) {
    let port = free_port();
    let mut cmd = Command::new(spicebox!());
    cmd.args(["run", "--serial", "stdio", "--disable-ticketing", "--spice"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(disk)
        .args(["-m", "512M"]);
    cmd.env("SPICEBOX_LOG", "warn,spicebox=info");
    let vm = SpiceboxVm::start_command(cmd);
    let listen = Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    let deadline = Instant::now() + STEP;
    let client = loop {
        match TestClient::connect(
            &listen,
            ClientOptions {
                channels: vec![],
                ..ClientOptions::default()
            },
        ) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("SPICE connect: {e}\n{}", vm.stderr_text()),
        }
    };
    client.send_main(MAIN_ATTACH_CHANNELS, &[]).unwrap();
    client.wait(STEP, |s| s.channels_list.is_some()).unwrap();
    let session = client.state().session_id;
    let (mut s, linked) = link_channel_id(
        &listen,
        session,
        USBREDIR,
        0,
        vec![],
        &ClientOptions::default(),
    )
    .unwrap();
    assert!(linked.mini_header());
    s.set_read_timeout(Some(POLL)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let peer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut writer = s.try_clone().unwrap();
            pump(
                || vmc_read(&mut s, &mut buf, &mut pending),
                |b| vmc_write(&mut writer, b),
                &stop,
            )
        })
    };
    let _stop = StopOnDrop(stop);
    let serial = finish(vm, "spicebox");
    client.close();
    (serial, peer.join().expect("peer thread"))
}

/// `key=value` of the guest's `iso in` line.
fn field(line: &str, key: &str) -> u32 {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[test]
fn xhci_guest_streams_isochronous_packets_on_qemu_and_spicebox() {
    let dir = TempDir::new("xhci-iso");
    let mut summaries = Vec::new();
    for name in ["qemu", "spicebox"] {
        let disk = dir.join(&format!("xhci-iso-{name}.img"));
        images::write_image(TestImage::XhciStorage.bytes(), &disk).unwrap();
        let (serial, peer) = if name == "qemu" {
            run_qemu(&disk)
        } else {
            run_spicebox(&disk)
        };
        eprintln!("{name}:\n{serial}");
        assert!(serial.contains("usb device 1d6b:0105"), "{name}:\n{serial}");
        let line = serial
            .lines()
            .find(|l| l.starts_with("iso in "))
            .unwrap_or_else(|| panic!("{name}: no iso in line:\n{serial}"));
        let (packets, first, last, gaps) = (
            field(line, "packets"),
            field(line, "first"),
            field(line, "last"),
            field(line, "gaps"),
        );
        assert!(packets >= PACKETS, "{name}: {line}");
        // One TD per 1 ms interval: the guest's TDs took about as many ms
        // (URBS x TDS_PER_URB = 32 TDs are queued ahead; the first are
        // served at once).
        let (ms, tds) = (field(line, "ms"), field(line, "tds"));
        assert!(
            tds <= ms + 40 && tds * 10 >= ms * 7,
            "{name}: {tds} TDs in {ms} ms: not one per interval"
        );
        assert_eq!(last - first + 1, packets + gaps, "{name}: {line}");
        assert!(
            last < peer.device.next_seq,
            "{name}: packet {last} was never sent ({} were)",
            peer.device.next_seq
        );
        println!("{name}: {line}; peer sent {} packets", peer.device.next_seq);
        // The VMM started both streams; the peer got every OUT packet.
        let started: Vec<u8> = peer.iso_starts.iter().map(|s| s.0).collect();
        assert!(
            started.contains(&ISO_IN) && started.contains(&ISO_OUT),
            "{name}: streams started {:?}",
            peer.iso_starts
        );
        let expected: Vec<Vec<u8>> = (0..OUT_PACKETS as u32).map(iso_packet).collect();
        assert_eq!(peer.device.received, expected, "{name}: OUT packets");
        // Stop Endpoint ended the streams (QEMU's usb-redir does it too).
        assert_eq!(peer.iso_stops, [ISO_IN, ISO_OUT], "{name}");
        let summary: Vec<String> = serial
            .lines()
            .filter(|l| l.starts_with("iso summary") || l.starts_with("iso out"))
            .map(|l| l.trim_end().to_string())
            .collect();
        assert_eq!(summary.len(), 2, "{name}:\n{serial}");
        summaries.push(summary);
    }
    assert_eq!(summaries[0], summaries[1], "QEMU and spicebox differ");
}
