//! Isochronous mode: the test peer's isochronous source (vendor interface
//! ff/49/01, IN and OUT isochronous endpoints) driven as xhci-hcd and a
//! streaming class driver do it (`xhci_queue_isoc_tx`): URBs of one TD per
//! service interval, each TD a single Isoch TRB with SIA (qemu-xhci has no
//! Contiguous Frame ID capability), ISP and IOC, BEI on all but the URB's
//! last TD; URBs resubmitted as they complete so the ring never runs dry.
//!
//! Every non-empty IN packet must carry a larger sequence number than the
//! one before, the size the peer gives that number and its contents.
//! Empty packets (nothing buffered yet) and numbers skipped (the VMM's
//! bounded buffer dropped them) are counted, not failures. Then OUT packets
//! go the other way and the test checks what the peer got.

use alloc::vec;
use alloc::vec::Vec;

use guest_rt::mem::Dma;
use guest_rt::{check, fail, println, time, OrFail};

use crate::xhci::{
    dci, descriptors, Device, EndpointConfig, Ring, Xhci, CC_SHORT_PACKET, CC_SUCCESS, IOC, ISP,
    TRB_TRANSFER_EVENT,
};

const TRB_ISOCH: u32 = 5;
const TRB_STOP_ENDPOINT: u32 = 15;
const SIA: u32 = 1 << 31;
const BEI: u32 = 1 << 9;
const CC_RING_UNDERRUN: u32 = 14;
const CC_RING_OVERRUN: u32 = 15;
const CC_MISSED_SERVICE: u32 = 23;

/// Non-empty IN packets to check.
pub const PACKETS: u32 = 500;
/// OUT packets sent.
pub const OUT_PACKETS: u32 = 16;
const URBS: usize = 4;
const TDS_PER_URB: usize = 8;
/// TD buffer stride.
const STRIDE: u64 = 1024;
/// Give up after this many IN TDs (empty ones included).
const MAX_TDS: u32 = 40 * PACKETS;

pub fn is_iso_source(d: &[u8]) -> bool {
    d[5] == 0xff && d[6] == 0x49 && d[7] == 0x01
}

/// Packet `seq`'s size and byte at `offset`, as the peer makes them
/// (`usbredir::peer::iso`).
fn packet_size(seq: u32) -> usize {
    176 + 4 * (seq % 5) as usize
}

fn payload_byte(seq: u32, offset: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(offset as u8)
}

struct Endpoint {
    address: u8,
    max_packet: u32,
    /// xHCI Interval (xhci_get_endpoint_interval): 2^n microframes.
    interval: u32,
}

fn endpoint(config: &[u8], is_in: bool, speed: u32) -> Endpoint {
    let d = descriptors(config)
        .find(|d| d[1] == 5 && d.len() >= 7 && d[3] & 3 == 1 && (d[2] & 0x80 != 0) == is_in)
        .or_fail("iso-endpoint");
    let b_interval = u32::from(d[6]).clamp(1, 16);
    Endpoint {
        address: d[2],
        max_packet: u32::from(u16::from_le_bytes([d[4], d[5]]) & 0x7ff),
        // Full/low speed: 2^(bInterval-1) frames; high speed: microframes.
        interval: if speed >= 3 {
            b_interval - 1
        } else {
            b_interval + 2
        },
    }
}

/// Queues one URB's TDs; returns their TRB addresses.
fn queue_urb(ring: &mut Ring, bufs: &Dma, urb: usize, length: u32) -> [u64; TDS_PER_URB] {
    let mut addrs = [0u64; TDS_PER_URB];
    for (i, addr) in addrs.iter_mut().enumerate() {
        let buf = bufs.addr() + (urb * TDS_PER_URB + i) as u64 * STRIDE;
        let bei = if i + 1 < TDS_PER_URB { BEI } else { 0 };
        // One packet: TBC 0, TLBPC 0 (xhci-hcd's count for USB 2).
        *addr = ring.push(buf, length, TRB_ISOCH << 10 | SIA | ISP | IOC | bei);
    }
    addrs
}

#[derive(Default)]
struct InStats {
    packets: u32,
    first: Option<u32>,
    last: u32,
    gaps: u32,
    empty: u32,
    missed: u32,
    tds: u32,
}

impl InStats {
    fn packet(&mut self, data: &[u8]) {
        if data.is_empty() {
            self.empty += 1;
            return;
        }
        check!(data.len() >= 4, "iso-size", "{} bytes", data.len());
        let seq = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        check!(
            data.len() == packet_size(seq),
            "iso-size",
            "packet {seq}: {} bytes, not {}",
            data.len(),
            packet_size(seq)
        );
        let bad = (4..data.len()).find(|&i| data[i] != payload_byte(seq, i));
        check!(bad.is_none(), "iso-payload", "packet {seq} byte {bad:?}");
        if let Some(_first) = self.first {
            check!(
                seq > self.last,
                "iso-order",
                "packet {seq} after {}",
                self.last
            );
            self.gaps += seq - self.last - 1;
        } else {
            self.first = Some(seq);
        }
        self.last = seq;
        self.packets += 1;
    }
}

fn stop_endpoint(xhci: &mut Xhci, dev: &Device, address: u8) {
    xhci.command(
        0,
        TRB_STOP_ENDPOINT << 10 | u32::from(dci(address)) << 16 | u32::from(dev.slot) << 24,
        "stop-endpoint",
    );
}

pub fn run(xhci: &mut Xhci, dev: &mut Device, config: &[u8]) {
    let input = endpoint(config, true, dev.speed);
    let output = endpoint(config, false, dev.speed);
    let mut in_ring = Ring::new();
    let mut out_ring = Ring::new();
    let ep = |e: &Endpoint, ep_type, ring: &Ring| EndpointConfig {
        address: e.address,
        ep_type,
        max_packet: e.max_packet,
        interval: e.interval,
        average_trb: e.max_packet,
        ring: ring.buf.addr(),
    };
    dev.configure(xhci, &[ep(&input, 5, &in_ring), ep(&output, 1, &out_ring)]);
    dev.control(xhci, [0, 9, config[5], 0, 0, 0, 0, 0], "set-configuration");
    println!(
        "iso endpoints in={:#04x} out={:#04x} max_packet={} interval={}",
        input.address, output.address, input.max_packet, input.interval
    );

    // IN: URBS URBs in flight, each resubmitted when its last TD completes.
    let bufs = Dma::new(URBS as u64 * TDS_PER_URB as u64 * STRIDE);
    let mut tds: Vec<(u64, usize, usize)> = Vec::new();
    let mut left = [0usize; URBS];
    for (urb, l) in left.iter_mut().enumerate() {
        let addrs = queue_urb(&mut in_ring, &bufs, urb, input.max_packet);
        tds.extend(addrs.iter().enumerate().map(|(i, &a)| (a, urb, i)));
        *l = TDS_PER_URB;
    }
    // The TDs take one 1 ms interval each: the test compares TDs and time.
    let clock = time::Stopwatch::start();
    dev.doorbell(xhci, dci(input.address));
    let mut stats = InStats::default();
    let mut data = vec![0u8; input.max_packet as usize];
    while left.iter().any(|&l| l > 0) {
        let e = xhci.wait_event(TRB_TRANSFER_EVENT, "iso-in");
        check!(
            e.slot() == dev.slot,
            "iso-in",
            "event for slot {}",
            e.slot()
        );
        let code = e.code();
        if matches!(code, CC_RING_UNDERRUN | CC_RING_OVERRUN) {
            continue;
        }
        let Some(at) = tds.iter().position(|t| t.0 == e.parameter) else {
            fail!("iso-in", "event {code} for unknown TRB {:#x}", e.parameter);
        };
        let (_, urb, i) = tds.swap_remove(at);
        let length = match code {
            CC_SUCCESS => input.max_packet,
            CC_SHORT_PACKET => input.max_packet.saturating_sub(e.status & 0xff_ffff),
            CC_MISSED_SERVICE => {
                stats.missed += 1;
                0
            }
            code => fail!("iso-in", "completion code {code}"),
        };
        stats.tds += 1;
        check!(
            stats.tds < MAX_TDS,
            "iso-in",
            "{} TDs, {} packets",
            stats.tds,
            stats.packets
        );
        let got = &mut data[..length as usize];
        bufs.copy_to((urb * TDS_PER_URB + i) as u64 * STRIDE, got);
        stats.packet(got);
        left[urb] -= 1;
        if left[urb] == 0 && stats.packets < PACKETS {
            let addrs = queue_urb(&mut in_ring, &bufs, urb, input.max_packet);
            tds.extend(addrs.iter().enumerate().map(|(i, &a)| (a, urb, i)));
            left[urb] = TDS_PER_URB;
            dev.doorbell(xhci, dci(input.address));
        }
    }
    let ms = clock.elapsed_ns() / 1_000_000;
    // usb_kill_urb / endpoint disable: the stream ends.
    stop_endpoint(xhci, dev, input.address);
    println!(
        "iso in ms={ms} tds={} packets={} first={} last={} gaps={} empty={} missed={}",
        stats.tds,
        stats.packets,
        stats.first.unwrap_or(0),
        stats.last,
        stats.gaps,
        stats.empty,
        stats.missed
    );
    check!(
        stats.packets >= PACKETS,
        "iso-in",
        "{} packets",
        stats.packets
    );

    // OUT: numbered packets of the peer's sizes, one TD each.
    let mut sent = 0usize;
    let mut pending = Vec::new();
    for seq in 0..OUT_PACKETS {
        let len = packet_size(seq);
        let mut p: Vec<u8> = (0..len).map(|i| payload_byte(seq, i)).collect();
        p[..4].copy_from_slice(&seq.to_le_bytes());
        let at = u64::from(seq) * STRIDE;
        bufs.copy_from(at, &p);
        pending.push(out_ring.push(bufs.addr() + at, len as u32, TRB_ISOCH << 10 | SIA | IOC));
        sent += len;
    }
    dev.doorbell(xhci, dci(output.address));
    for trb in pending {
        let e = xhci.wait_event(TRB_TRANSFER_EVENT, "iso-out");
        check!(
            e.parameter == trb,
            "iso-out",
            "event for {:#x}",
            e.parameter
        );
        check!(
            e.code() == CC_SUCCESS,
            "iso-out",
            "completion code {}",
            e.code()
        );
    }
    stop_endpoint(xhci, dev, output.address);
    println!("iso out packets={OUT_PACKETS} bytes={sent}");
    println!("iso summary ok packets>={PACKETS} sizes=ok order=ok payload=ok out={OUT_PACKETS}");
}
