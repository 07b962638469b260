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

use std::time::{Duration, Instant};

use images::TestImage;
use spice::Listen;
use spicebox_tests::usb_peer::Scenario;
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};
use usbredir::peer::iso::{iso_packet, IsoSource, ISO_IN, ISO_OUT};
use usbredir::peer::HostPeer;

/// The peer's socket reads wait this long: packets leave within a frame
/// or two of being due.
const POLL: Duration = Duration::from_millis(1);
/// Packets the peer sends at most in one go after a stall.
const MAX_BURST: usize = 64;
const PACKETS: u32 = 500;
const OUT_PACKETS: usize = 16;

/// The peer's tick: the IN packets that came due while the VMM has the
/// stream started.
fn send_due_packets(peer: &mut HostPeer<IsoSource>) {
    if peer.iso_streaming(ISO_IN) {
        for p in peer.device.due(Instant::now(), MAX_BURST) {
            peer.iso_packet(ISO_IN, &p).expect("iso packet encodes");
        }
    }
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
        let scenario = Scenario {
            device: IsoSource::default(),
            poll: POLL,
            tick: send_due_packets,
            during: |_: &mut SpiceboxVm, _: Option<(&Listen, u32)>| {},
        };
        let (serial, run) = if name == "qemu" {
            scenario.run_qemu(&disk)
        } else {
            scenario.run_spicebox(spicebox!(), &disk)
        };
        let peer = run.peer;
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
