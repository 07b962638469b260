//! Isochronous endpoints as xhci-hcd queues them (xhci_queue_isoc_tx): one
//! Isoch TRB per TD with ISP and IOC, BEI on all but the URB's last TD, SIA
//! (no Contiguous Frame ID capability); a manual MFINDEX clock.

use super::*;
use crate::usb::xhci::isoch::{schedule, IsochTrb, Schedule, MICROFRAME};
use crate::usb::xhci::trb::{BEI, ISP};

const ISO_IN_RING: u64 = 0xc000;
const ISO_OUT_RING: u64 = 0xd000;
const SIA: u32 = 1 << 31;
/// Interval 3: 2^3 microframes, 1 ms (a full-speed bInterval 1).
const INTERVAL: u64 = 8;

fn isoch(len: u32, control: u32) -> Trb {
    Trb {
        parameter: BUF,
        status: len,
        control: tt::ISOCH << 10 | ISP | control,
    }
}

/// A running controller with the test device configured, plus isochronous IN
/// 0x84 (DCI 9) and OUT 0x05 (DCI 10), 1024 bytes, interval 3.
fn iso_driver() -> (Driver, u8) {
    let (d, slot, _) = iso_driver_port();
    (d, slot)
}

/// `iso_driver`, and the root port the device is on.
fn iso_driver_port() -> (Driver, u8, u8) {
    let mut d = Driver::new();
    d.hc.use_manual_clock();
    d.start();
    let port = d.connect();
    let slot = d.address(port);
    d.configure(slot);
    d.set_ctx(IN_CTX, [0, 1 | 1 << 9 | 1 << 10, 0, 0, 0, 0, 0, 0]);
    d.set_ctx(IN_CTX + 32, [10 << 27 | 3 << 20, 0, 0, 0, 0, 0, 0, 0]);
    let ep = |ty: u32, ring: u64| {
        [
            3 << 16,
            ty << 3 | 1024 << 16,
            ring as u32 | 1,
            0,
            1024 << 16 | 1024,
            0,
            0,
            0,
        ]
    };
    d.set_ctx(IN_CTX + 32 * 10, ep(5, ISO_IN_RING));
    d.set_ctx(IN_CTX + 32 * 11, ep(1, ISO_OUT_RING));
    d.rings.push((ISO_IN_RING, ISO_IN_RING));
    d.rings.push((ISO_OUT_RING, ISO_OUT_RING));
    let ev = d.command(Trb {
        parameter: IN_CTX,
        status: 0,
        control: tt::CONFIGURE_ENDPOINT << 10 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    (d, slot, port)
}

fn tick(d: &mut Driver, microframes: u64) -> Vec<Trb> {
    d.hc.advance_clock(microframes);
    d.hc.process();
    d.events()
}

fn mfindex(d: &mut Driver) -> u32 {
    d.r32(RUNTIME_BASE)
}

#[test]
fn isoch_trb_fields_parse() {
    let t = Trb {
        parameter: 0,
        status: 192 | 3 << 17 | 5 << 22,
        control: tt::ISOCH << 10 | 2 << 7 | BEI | IOC | ISP | 7 << 16 | 0x123 << 20 | SIA,
    };
    let p = IsochTrb::parse(&t).unwrap();
    assert_eq!(
        (
            p.length,
            p.td_size,
            p.interrupter,
            p.tbc,
            p.tlbpc,
            p.frame_id
        ),
        (192, 3, 5, 2, 7, 0x123)
    );
    assert!(p.sia && p.bei && p.ioc && p.isp && !p.idt && !p.chain);
    assert!(IsochTrb::parse(&Trb {
        control: tt::NORMAL << 10,
        ..t
    })
    .is_none());
}

#[test]
fn schedule_sia_frame_id_and_wrap() {
    let sia = IsochTrb::parse(&isoch(0, SIA)).unwrap();
    // A new stream starts at the next interval boundary...
    assert_eq!(schedule(&sia, 13, 8, None), Schedule::Due(16));
    // ...and continues back to back, even when the worker is a little late.
    assert_eq!(schedule(&sia, 20, 8, Some(24)), Schedule::Due(24));
    assert_eq!(schedule(&sia, 30, 8, Some(24)), Schedule::Due(24));
    // A stream that ran dry for over an interval starts over.
    assert_eq!(schedule(&sia, 100, 8, Some(24)), Schedule::Due(104));
    let frame = |id: u32| IsochTrb::parse(&isoch(0, id << 20)).unwrap();
    // Frame 5 while in frame 2 (microframe 17): microframe 40.
    assert_eq!(schedule(&frame(5), 17, 8, None), Schedule::Due(40));
    // Frame IDs are 11 bits: frame 2047 + 3 wraps to 2.
    assert_eq!(
        schedule(&frame(2), 2047 * 8 + 1, 8, None),
        Schedule::Due(2050 * 8)
    );
    // A frame that has passed, or one over 895 ms ahead: missed.
    assert_eq!(schedule(&frame(1), 17, 8, None), Schedule::Missed);
    assert_eq!(schedule(&frame(2 + 900), 17, 8, None), Schedule::Missed);
    // Sub-frame intervals: the TDs of one frame follow each other.
    assert_eq!(schedule(&frame(5), 17, 1, Some(41)), Schedule::Due(41));
}

#[test]
fn in_tds_are_served_one_per_interval_with_short_packets() {
    let (mut d, slot) = iso_driver();
    d.log.lock().unwrap().iso_in = [vec![1; 1024], vec![2; 600], vec![3; 1024], vec![]]
        .into_iter()
        .collect();
    let msix_before = d.irq.msix.lock().unwrap().len();
    *d.irq.messages.lock().unwrap() = true;
    // One URB of 4 TDs: BEI on all but the last.
    let addrs = d.queue(
        ISO_IN_RING,
        &[
            isoch(1024, SIA | IOC | BEI),
            isoch(1024, SIA | IOC | BEI),
            isoch(1024, SIA | IOC | BEI),
            isoch(1024, SIA | IOC),
        ],
    );
    d.ring_doorbell(slot, 9);
    // MFINDEX 0: the first TD's interval is now.
    let evs = d.events();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!((evs[0].parameter, code(&evs[0])), (addrs[0], cc::SUCCESS));
    assert_eq!((evs[0].control >> 16) & 0x1f, 9);
    assert_eq!(d.hc.next_isoch_due(), Some(MICROFRAME * INTERVAL as u32));
    assert!(
        tick(&mut d, INTERVAL - 1).is_empty(),
        "not before its interval"
    );
    let evs = tick(&mut d, 1);
    assert_eq!(mfindex(&mut d), INTERVAL as u32);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].parameter, code(&evs[0]), evs[0].status & 0xff_ffff),
        (addrs[1], cc::SHORT_PACKET, 1024 - 600)
    );
    let mut got = [0u8; 1024];
    d.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert_eq!(
        (got[0], got[599], got[600]),
        (2, 2, 1),
        "short data in place"
    );
    let msix = d.irq.msix.lock().unwrap().len() - msix_before;
    assert_eq!(msix, 0, "BEI: no interrupt for the URB's first TDs");
    // Two intervals at once (a late worker): both TDs, in order.
    let evs = tick(&mut d, 2 * INTERVAL);
    let seen: Vec<_> = evs.iter().map(|e| (e.parameter, code(e))).collect();
    assert_eq!(
        seen,
        [(addrs[2], cc::SUCCESS), (addrs[3], cc::SHORT_PACKET)]
    );
    assert_eq!(evs[1].status & 0xff_ffff, 1024, "an empty packet");
    let msix = d.irq.msix.lock().unwrap().len() - msix_before;
    assert!(msix >= 1, "the URB's last TD interrupts");
    // The ring is empty; the worker looks again when the stream would run
    // dry: the next TD's interval (4) plus one, from MFINDEX 3 intervals.
    assert_eq!(
        d.hc.next_isoch_due(),
        Some(MICROFRAME * 2 * INTERVAL as u32)
    );
    let requests = d
        .log
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.kind == TransferKind::Isochronous)
        .count();
    assert_eq!(requests, 4);
}

#[test]
fn frame_id_tds_wait_for_their_frame_or_are_missed() {
    let (mut d, slot) = iso_driver();
    tick(&mut d, 8 * 100 + 3); // frame 100
    let addrs = d.queue(
        ISO_IN_RING,
        &[isoch(1024, 99 << 20 | IOC), isoch(1024, 102 << 20 | IOC)],
    );
    d.ring_doorbell(slot, 9);
    let evs = d.events();
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].parameter, code(&evs[0])),
        (addrs[0], cc::MISSED_SERVICE)
    );
    assert!(tick(&mut d, 8 + 4).is_empty(), "frame 101");
    let evs = tick(&mut d, 1);
    assert_eq!(
        (evs[0].parameter, code(&evs[0])),
        (addrs[1], cc::SHORT_PACKET)
    );
    let isoch_requests = d
        .log
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.kind == TransferKind::Isochronous)
        .count();
    assert_eq!(isoch_requests, 1, "the missed TD never reached the device");
}

#[test]
fn out_tds_carry_their_data_and_errors_do_not_halt() {
    let (mut d, slot) = iso_driver();
    d.mem.write_slice(&[7u8; 100], GuestAddress(BUF)).unwrap();
    // A TD of an Isoch TRB chained to a Normal TRB.
    let addrs = d.queue(
        ISO_OUT_RING,
        &[
            isoch(100, SIA | CHAIN),
            Trb {
                parameter: BUF,
                status: 50,
                control: tt::NORMAL << 10 | IOC,
            },
        ],
    );
    d.ring_doorbell(slot, 10);
    let evs = d.events();
    assert_eq!((evs[0].parameter, code(&evs[0])), (addrs[1], cc::SUCCESS));
    let last = d.log.lock().unwrap().requests.last().cloned().unwrap();
    assert_eq!(
        (last.endpoint, last.kind, last.data.len()),
        (0x05, TransferKind::Isochronous, 150)
    );
    // A transaction error: reported on the TD's last TRB, the endpoint runs on.
    d.log.lock().unwrap().stall_next = true;
    let addrs = d.queue(ISO_OUT_RING, &[isoch(10, SIA | IOC), isoch(10, SIA | IOC)]);
    d.ring_doorbell(slot, 10);
    let mut evs = d.events();
    evs.extend(tick(&mut d, INTERVAL));
    evs.extend(tick(&mut d, INTERVAL));
    let seen: Vec<_> = evs.iter().map(|e| (e.parameter, code(e))).collect();
    assert_eq!(
        seen,
        [
            (addrs[0], cc::USB_TRANSACTION_ERROR),
            (addrs[1], cc::SUCCESS)
        ]
    );
    assert_eq!(d.ctx(OUT_CTX + 32 * 10)[0] & 7, u32::from(EP_RUNNING));
}

#[test]
fn malformed_isoch_tds_halt_the_endpoint() {
    let (mut d, slot) = iso_driver();
    // A Normal TRB first.
    let addrs = d.queue(
        ISO_IN_RING,
        &[Trb {
            parameter: BUF,
            status: 8,
            control: tt::NORMAL << 10 | IOC,
        }],
    );
    d.ring_doorbell(slot, 9);
    let evs = d.events();
    assert_eq!((evs[0].parameter, code(&evs[0])), (addrs[0], cc::TRB_ERROR));
    assert_eq!(d.ctx(OUT_CTX + 32 * 9)[0] & 7, u32::from(EP_HALTED));
    // Reset Endpoint, Set TR Dequeue past it; then more than one interval's data.
    let ev = d.command(Trb {
        control: tt::RESET_ENDPOINT << 10 | 9 << 16 | u32::from(slot) << 24,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    let next = addrs[0] + 16;
    let ev = d.command(Trb {
        parameter: next | 1,
        status: 0,
        control: tt::SET_TR_DEQUEUE << 10 | 9 << 16 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    let addrs = d.queue(ISO_IN_RING, &[isoch(2048, SIA | IOC)]);
    d.ring_doorbell(slot, 9);
    let evs = d.events();
    assert_eq!((evs[0].parameter, code(&evs[0])), (addrs[0], cc::TRB_ERROR));
    assert_eq!(d.ctx(OUT_CTX + 32 * 9)[0] & 7, u32::from(EP_HALTED));
    let isoch_requests = d
        .log
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.kind == TransferKind::Isochronous)
        .count();
    assert_eq!(isoch_requests, 0);
    // An Interval over 15 is refused at Configure Endpoint.
    d.set_ctx(IN_CTX, [1 << 9, 1 | 1 << 9, 0, 0, 0, 0, 0, 0]);
    let mut ep = d.ctx(IN_CTX + 32 * 10);
    ep[0] = 16 << 16;
    d.set_ctx(IN_CTX + 32 * 10, ep);
    let ev = d.command(Trb {
        parameter: IN_CTX,
        status: 0,
        control: tt::CONFIGURE_ENDPOINT << 10 | u32::from(slot) << 24,
    });
    assert_eq!(code(&ev), cc::PARAMETER);
}

#[test]
fn stop_endpoint_rewinds_a_waiting_td_and_ends_the_stream() {
    let (mut d, slot) = iso_driver();
    let addrs = d.queue(
        ISO_IN_RING,
        &[isoch(1024, SIA | IOC), isoch(1024, SIA | IOC)],
    );
    d.ring_doorbell(slot, 9);
    assert_eq!(d.events().len(), 1);
    // The second TD waits for its interval; Stop Endpoint.
    let ev = d.command(Trb {
        control: tt::STOP_ENDPOINT << 10 | 9 << 16 | u32::from(slot) << 24,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    let ctx = d.ctx(OUT_CTX + 32 * 9);
    assert_eq!(ctx[0] & 7, u32::from(EP_STOPPED));
    assert_eq!(
        u64::from(ctx[2]) & !0xf,
        addrs[1],
        "dequeue back at the waiting TD"
    );
    assert_eq!(d.log.lock().unwrap().stopped_endpoints, [0x84]);
    assert!(tick(&mut d, 10 * INTERVAL).is_empty());
    assert_eq!(d.hc.next_isoch_due(), None);
    // A doorbell restarts it: a new stream, at once.
    d.ring_doorbell(slot, 9);
    let evs = d.events();
    assert_eq!(
        (evs[0].parameter, code(&evs[0])),
        (addrs[1], cc::SHORT_PACKET)
    );
}

/// A stream running on 0x84 (its first TD served, the second waiting for
/// its interval).
fn streaming(d: &mut Driver, slot: u8) {
    d.queue(
        ISO_IN_RING,
        &[isoch(1024, SIA | IOC), isoch(1024, SIA | IOC)],
    );
    d.ring_doorbell(slot, 9);
    assert_eq!(d.events().len(), 1);
    assert!(d.hc.next_isoch_due().is_some());
    assert!(d.log.lock().unwrap().stopped_endpoints.is_empty());
}

#[test]
fn disable_slot_ends_the_streams() {
    let (mut d, slot) = iso_driver();
    streaming(&mut d, slot);
    let ev = d.command(Trb {
        control: tt::DISABLE_SLOT << 10 | u32::from(slot) << 24,
        ..Trb::default()
    });
    assert_eq!(code(&ev), cc::SUCCESS);
    // Both isochronous endpoints (IN 0x84 streaming, OUT 0x05 idle) are
    // told; the device sends STOP_ISO_STREAM for the streams it runs.
    let mut stopped = d.log.lock().unwrap().stopped_endpoints.clone();
    stopped.sort_unstable();
    assert_eq!(stopped, [0x05, 0x84]);
    assert_eq!(d.hc.next_isoch_due(), None);
    assert!(tick(&mut d, 10 * INTERVAL).is_empty());
}

#[test]
fn detaching_a_streaming_device_ends_its_streams_first() {
    let (mut d, slot, port) = iso_driver_port();
    streaming(&mut d, slot);
    let log = d.log.clone();
    let dev = d.hc.detach(port);
    assert!(dev.is_some());
    let mut stopped = log.lock().unwrap().stopped_endpoints.clone();
    stopped.sort_unstable();
    assert_eq!(stopped, [0x05, 0x84], "told while still on the port");
    assert_eq!(d.hc.next_isoch_due(), None);
    // The waiting TD is not completed: no event, and nothing after.
    assert!(tick(&mut d, 10 * INTERVAL)
        .iter()
        .all(|e| (e.control >> 10) & 0x3f != tt::TRANSFER_EVENT));
}

/// Ring Overrun / Underrun: one event (TRB Pointer 0, the endpoint's ID)
/// once a running stream's ring stays empty through the interval after its
/// next TD's; the endpoint stays Running and idle.
fn runs_dry(dci: u32, code_expected: u8) {
    let (mut d, slot) = iso_driver();
    let ring = if dci == 9 { ISO_IN_RING } else { ISO_OUT_RING };
    d.queue(ring, &[isoch(64, SIA | IOC)]);
    d.ring_doorbell(slot, dci);
    assert_eq!(d.events().len(), 1, "served at MFINDEX 0");
    // The next TD would be due at 1 interval; it may still come until 2.
    assert!(tick(&mut d, 2 * INTERVAL - 1).is_empty());
    let evs = tick(&mut d, 1);
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(
        (evs[0].parameter, code(&evs[0]), evs[0].trb_type()),
        (0, code_expected, tt::TRANSFER_EVENT)
    );
    assert_eq!((evs[0].control >> 16) & 0x1f, dci);
    assert_eq!(evs[0].slot_id(), slot);
    // Once: idle, no timer, no more events.
    assert_eq!(d.hc.next_isoch_due(), None);
    assert!(tick(&mut d, 10 * INTERVAL).is_empty());
    let ctx = d.ctx(OUT_CTX + 32 * dci as u64);
    assert_eq!(ctx[0] & 7, u32::from(EP_RUNNING));
    // A new TD starts a new stream at the next interval boundary.
    let now = u64::from(mfindex(&mut d));
    tick(&mut d, INTERVAL / 2);
    let addrs = d.queue(ring, &[isoch(64, SIA | IOC)]);
    d.ring_doorbell(slot, dci);
    assert!(d.events().is_empty(), "not mid-interval");
    let at = u64::from(mfindex(&mut d));
    assert!(tick(&mut d, now + INTERVAL - at - 1).is_empty());
    let evs = tick(&mut d, 1);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].parameter, addrs[0]);
}

#[test]
fn an_empty_in_ring_at_the_service_interval_is_a_ring_overrun() {
    runs_dry(9, cc::RING_OVERRUN);
}

#[test]
fn an_empty_out_ring_at_the_service_interval_is_a_ring_underrun() {
    runs_dry(10, cc::RING_UNDERRUN);
}

#[test]
fn a_td_queued_within_the_interval_continues_the_stream_without_an_event() {
    let (mut d, slot) = iso_driver();
    d.queue(ISO_IN_RING, &[isoch(1024, SIA | IOC)]);
    d.ring_doorbell(slot, 9);
    assert_eq!(d.events().len(), 1);
    // Late, but within the interval after the one it was due in.
    assert!(tick(&mut d, INTERVAL + INTERVAL / 2).is_empty());
    let addrs = d.queue(ISO_IN_RING, &[isoch(1024, SIA | IOC)]);
    d.ring_doorbell(slot, 9);
    let evs = d.events();
    assert_eq!(
        evs.iter()
            .map(|e| (e.parameter, code(e)))
            .collect::<Vec<_>>(),
        [(addrs[0], cc::SHORT_PACKET)],
        "served at once, no overrun"
    );
}
