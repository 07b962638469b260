//! Isochronous endpoints (xHCI 4.11.2.5, 4.14.2, 6.4.1.3) as Linux xhci-hcd
//! drives them: each TD is one Endpoint Service Interval's worth (ESIT), an
//! Isoch TRB first, then Normal or Event Data TRBs. A TD is served in its
//! interval: the next one after the previous TD (SIA, "as soon as
//! possible", what xhci-hcd asks for without the Contiguous Frame ID
//! capability), or the 1 ms frame its Frame ID names. A Frame ID already
//! gone is a Missed Service Error; nothing waits for it.
//!
//! Time is MFINDEX's: 125 µs microframes since the controller was created.
//! A TD fetched before its interval stays the endpoint's in-flight TD with
//! a due microframe; the worker's timer (`Xhci::next_isoch_due`) wakes it.
//! The device is asked for the data at the due time (a redirected device
//! answers from its stream buffer at once), so a guest that queues many TDs
//! gets one packet per interval, as from real hardware.
//!
//! A running stream whose ring is still empty a whole interval after the
//! microframe its next TD was due at has run dry (xHCI 4.10.3.1): one Ring
//! Overrun (IN) or Ring Underrun (OUT) Transfer Event, TRB Pointer 0, which
//! xhci-hcd takes as "nothing queued" (and the end of a skip after a Missed
//! Service). The endpoint stays Running and idle; the guest's next TD starts
//! a new stream at the next interval boundary.
//!
//! Malformed TDs (a first TRB that is not an Isoch TRB, stray TRB types,
//! more data than the endpoint can move in one interval) get a TRB Error
//! event and halt the endpoint. Transaction errors do not halt an
//! isochronous endpoint: the TD completes with the error and the stream goes
//! on.

use std::time::Duration;

use tracing::{debug, warn};

use super::context::{Ctx, EP_RUNNING};
use super::controller::{Endpoint, Xhci};
use super::transfer::{Fetch, Td, TDS_PER_ROUND};
use super::trb::{cc, trb_type as tt, Trb, BEI, CHAIN, IDT, IOC, ISP};
use crate::usb::{UsbCompletion, UsbStatus};

/// One MFINDEX tick.
pub const MICROFRAME: Duration = Duration::from_micros(125);
/// How far ahead a Frame ID may name a frame (xHCI 4.11.2.5: under 895
/// ms); any other value names a frame that has already gone by.
const FRAME_ID_AHEAD: u64 = 895;

pub fn is_isoch(ep_type: u8) -> bool {
    ep_type == 1 || ep_type == 5
}

/// The fields of an Isoch TRB, read from our copy of it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsochTrb {
    pub length: u32,
    /// TD Size (the TRB's packets left in the TD).
    pub td_size: u8,
    pub interrupter: u16,
    /// Transfer Burst Count and Last Burst Packet Count (SuperSpeed bursts;
    /// for USB 2 devices xhci-hcd puts the packet count - 1 in TLBPC).
    pub tbc: u8,
    pub tlbpc: u8,
    /// 11-bit frame number (1 ms frames), meaningful without SIA.
    pub frame_id: u16,
    /// Start Isoch ASAP.
    pub sia: bool,
    pub isp: bool,
    pub ioc: bool,
    pub idt: bool,
    pub bei: bool,
    pub chain: bool,
}

impl IsochTrb {
    /// None unless `trb` is an Isoch TRB.
    pub fn parse(trb: &Trb) -> Option<IsochTrb> {
        if trb.trb_type() != tt::ISOCH {
            return None;
        }
        let c = trb.control;
        Some(IsochTrb {
            length: trb.status & 0x1_ffff,
            td_size: ((trb.status >> 17) & 0x1f) as u8,
            interrupter: (trb.status >> 22) as u16,
            tbc: ((c >> 7) & 3) as u8,
            tlbpc: ((c >> 16) & 0xf) as u8,
            frame_id: ((c >> 20) & 0x7ff) as u16,
            sia: c & 1 << 31 != 0,
            isp: c & ISP != 0,
            ioc: c & IOC != 0,
            idt: c & IDT != 0,
            bei: c & BEI != 0,
            chain: c & CHAIN != 0,
        })
    }
}

/// What an isochronous endpoint's context says about its service interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsochParams {
    /// 2^Interval microframes.
    pub interval_mf: u32,
    /// The most one interval can move: Max Packet Size × (Max Burst + 1) ×
    /// (Mult + 1).
    pub max_esit: u32,
    pub max_packet: u32,
    pub max_burst: u32,
}

impl IsochParams {
    /// From an endpoint context; an Interval over 15 is impossible.
    pub fn from_ctx(ctx: &Ctx) -> Option<IsochParams> {
        let interval = (ctx[0] >> 16) & 0xff;
        if interval > 15 {
            return None;
        }
        let mult = (ctx[0] >> 8) & 3;
        let max_burst = (ctx[1] >> 8) & 0xff;
        let max_packet = ctx[1] >> 16;
        Some(IsochParams {
            interval_mf: 1 << interval,
            max_esit: max_packet * (max_burst + 1) * (mult + 1),
            max_packet,
            max_burst,
        })
    }
}

/// An isochronous endpoint's schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsochState {
    /// The microframe the next SIA TD continues the stream at.
    pub next_mf: Option<u64>,
    /// When the in-flight TD is to be served (None: it is with the device).
    pub due: Option<u64>,
    /// The interrupter the stream's latest TD named (for a ring-empty event).
    pub target: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    Due(u64),
    Missed,
}

/// When a TD whose Isoch TRB is `first` is served: `now` is MFINDEX
/// (unwrapped), `next` where the stream left off.
pub fn schedule(first: &IsochTrb, now: u64, interval_mf: u32, next: Option<u64>) -> Schedule {
    let interval = u64::from(interval_mf.max(1));
    if first.sia {
        // Continue the stream unless it ran dry more than an interval ago;
        // then start at the next interval boundary.
        return match next {
            Some(n) if n.saturating_add(interval) >= now => Schedule::Due(n),
            _ => Schedule::Due(now.div_ceil(interval).saturating_mul(interval)),
        };
    }
    let frame = now >> 3;
    let ahead = (u64::from(first.frame_id).wrapping_sub(frame)) & 0x7ff;
    if ahead > FRAME_ID_AHEAD {
        return Schedule::Missed;
    }
    let start = (frame + ahead) << 3;
    // Intervals under a frame: the TDs of one frame follow each other.
    match next {
        Some(n) if n > start && n < start + 8 => Schedule::Due(n),
        _ => Schedule::Due(start),
    }
}

/// Checks a whole TD before anything of it is used.
fn check_td(td: &Td, params: &IsochParams, is_in: bool) -> Result<IsochTrb, &'static str> {
    let first = IsochTrb::parse(&td.trbs[0].1).ok_or("the first TRB is not an Isoch TRB")?;
    let mut length = u64::from(first.length);
    for (_, trb) in &td.trbs[1..] {
        match trb.trb_type() {
            tt::NORMAL => length += u64::from(trb.transfer_length()),
            tt::EVENT_DATA | tt::NOOP => {}
            _ => return Err("a TRB type an isochronous TD cannot hold"),
        }
    }
    if is_in && td.trbs.iter().any(|(_, t)| t.has(IDT)) {
        return Err("immediate data on an IN endpoint");
    }
    if length > u64::from(params.max_esit) {
        return Err("more data than one service interval moves");
    }
    // xhci-hcd's TBC/TLBPC: bursts and last-burst packets; only logged
    // when they disagree with the length (bandwidth is not modelled).
    let packets = length.div_ceil(u64::from(params.max_packet.max(1))).max(1);
    let burst = u64::from(params.max_burst) + 1;
    let tlbpc_usb2 = packets - 1;
    let (tbc, tlbpc) = ((packets - 1) / burst, (packets - 1) % burst);
    if u64::from(first.tlbpc) != tlbpc_usb2
        && (u64::from(first.tbc), u64::from(first.tlbpc)) != (tbc, tlbpc)
    {
        debug!(
            tbc = first.tbc,
            tlbpc = first.tlbpc,
            packets,
            "xhci: isoch TD's burst counts do not match its length"
        );
    }
    Ok(first)
}

/// When a running stream with an empty ring has run dry: its next TD's
/// microframe plus one interval (`schedule` continues the stream up to then).
fn dry_at(ep: &Endpoint) -> Option<u64> {
    if ep.inflight.is_some() {
        return None;
    }
    let interval = u64::from(ep.iso_params.interval_mf.max(1));
    ep.iso.next_mf.map(|n| n.saturating_add(interval))
}

/// When the worker must look at a watched endpoint: its waiting TD's due
/// microframe, or when its stream runs dry.
fn wake_at(ep: &Endpoint) -> Option<u64> {
    ep.iso.due.or_else(|| dry_at(ep))
}

impl Xhci {
    /// Fetch, schedule and serve an isochronous endpoint's TDs: those due
    /// now are served, the first one not yet due waits in flight.
    pub(super) fn kick_isoch(&mut self, slot_id: u8, dci: u8) {
        let (s, d) = (usize::from(slot_id) - 1, usize::from(dci));
        for _ in 0..TDS_PER_ROUND {
            let now = self.mf_now();
            let ep = &mut self.slots[s].eps[d];
            if ep.state != EP_RUNNING {
                return;
            }
            if ep.inflight.is_some() {
                match ep.iso.due {
                    Some(due) if due <= now => {
                        ep.iso.due = None;
                        if let Some(td) = ep.inflight.take() {
                            if !self.serve_isoch_td(slot_id, dci, td) {
                                return;
                            }
                        }
                        continue;
                    }
                    Some(_) => {
                        self.watch_isoch(slot_id, dci);
                        return;
                    }
                    // With the device; its completion kicks the endpoint.
                    None => return,
                }
            }
            let td = match self.fetch_td(slot_id, dci) {
                Fetch::Td(td) => td,
                Fetch::Incomplete => return self.isoch_ring_empty(slot_id, dci, now),
                Fetch::Failed => return,
            };
            let ep = &self.slots[s].eps[d];
            let first = match check_td(&td, &ep.iso_params, dci % 2 == 1) {
                Ok(first) => first,
                Err(why) => {
                    warn!(
                        slot_id,
                        dci, "xhci: malformed isochronous TD ({why}); endpoint halted"
                    );
                    let (addr, trb) = td.trbs[0];
                    self.transfer_event(slot_id, dci, &trb, addr, cc::TRB_ERROR, 0, false);
                    self.halt(slot_id, dci);
                    return;
                }
            };
            let interval = ep.iso_params.interval_mf;
            match schedule(&first, now, interval, ep.iso.next_mf) {
                Schedule::Due(due) => {
                    let ep = &mut self.slots[s].eps[d];
                    ep.iso.next_mf = Some(due.saturating_add(u64::from(interval)));
                    ep.iso.due = Some(due);
                    ep.iso.target = td.trbs[0].1.interrupter_target();
                    ep.inflight = Some(td);
                }
                Schedule::Missed => {
                    debug!(
                        slot_id,
                        dci,
                        frame_id = first.frame_id,
                        now,
                        "xhci: isochronous TD's frame has passed"
                    );
                    let (last, trb) = td.trbs[td.trbs.len() - 1];
                    self.transfer_event(
                        slot_id,
                        dci,
                        &trb,
                        last,
                        cc::MISSED_SERVICE,
                        trb.transfer_length(),
                        false,
                    );
                }
            }
        }
        // More TDs may wait: come back next round.
        if let Some(bits) = self.ep_pending.get_mut(usize::from(slot_id) - 1) {
            *bits |= 1 << dci;
        }
    }

    /// Nothing on the ring and nothing in flight: once the stream's next
    /// interval has fully gone by, it has run dry (one event); until then
    /// the timer watches for that moment.
    fn isoch_ring_empty(&mut self, slot_id: u8, dci: u8, now: u64) {
        let ep = &mut self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)];
        let Some(dry) = dry_at(ep) else {
            return;
        };
        if now < dry {
            self.watch_isoch(slot_id, dci);
            return;
        }
        ep.iso.next_mf = None;
        let target = ep.iso.target;
        let code = if dci % 2 == 1 {
            cc::RING_OVERRUN
        } else {
            cc::RING_UNDERRUN
        };
        debug!(slot_id, dci, code, "xhci: isochronous ring ran dry");
        let event = self.transfer_trb(slot_id, dci, 0, code, 0, false);
        self.post_event(target, event);
    }

    fn watch_isoch(&mut self, slot_id: u8, dci: u8) {
        if !self.iso_eps.contains(&(slot_id, dci)) {
            self.iso_eps.push((slot_id, dci));
        }
    }

    /// Hand a due TD to its device. False: it stays in flight with the device.
    fn serve_isoch_td(&mut self, slot_id: u8, dci: u8, mut td: Td) -> bool {
        let (s, d) = (usize::from(slot_id) - 1, usize::from(dci));
        let ep_type = self.slots[s].eps[d].ep_type;
        let request = match self.build_request(dci, ep_type, &mut td) {
            Ok(r) => r,
            Err(code) => {
                warn!(
                    slot_id,
                    dci, code, "xhci: isochronous TD unusable; endpoint halted"
                );
                let (addr, trb) = td.trbs[0];
                self.transfer_event(slot_id, dci, &trb, addr, code, 0, false);
                self.halt(slot_id, dci);
                return false;
            }
        };
        let port = self.slots[s].port;
        let device = port
            .and_then(|p| self.ports.get_mut(p))
            .and_then(|p| p.device.as_mut());
        let done = match device {
            Some(device) => device.submit(request),
            None => Some(UsbCompletion {
                id: td.id,
                status: UsbStatus::Error,
                data: Vec::new(),
                actual: 0,
            }),
        };
        match done {
            Some(done) => {
                self.finish_isoch(slot_id, dci, td, done);
                true
            }
            None => {
                self.slots[s].eps[d].inflight = Some(td);
                false
            }
        }
    }

    /// Events of a served TD: a transaction error on its last TRB (the
    /// endpoint keeps running); a short packet once, where it happened (when
    /// that TRB asks with ISP or IOC, else on the last TRB if it has IOC);
    /// success on each TRB with IOC; Event Data TRBs with IOC report the
    /// bytes moved so far. BEI TRBs' events raise no interrupt.
    pub(super) fn finish_isoch(&mut self, slot_id: u8, dci: u8, td: Td, done: UsbCompletion) {
        let code = match done.status {
            UsbStatus::Success => cc::SUCCESS,
            UsbStatus::Stall | UsbStatus::Error => cc::USB_TRANSACTION_ERROR,
            UsbStatus::Cancelled => return,
        };
        let actual = self.deliver(slot_id, dci, &td, &done, code == cc::SUCCESS);
        let (last_addr, last) = td.trbs[td.trbs.len() - 1];
        if code != cc::SUCCESS {
            let residual = last.transfer_length();
            self.transfer_event(slot_id, dci, &last, last_addr, code, residual, false);
            return;
        }
        let mut left = actual;
        let mut transferred = 0u32;
        let mut short = false;
        for (addr, trb) in &td.trbs {
            match trb.trb_type() {
                tt::EVENT_DATA if trb.has(IOC) => {
                    let code = if short { cc::SHORT_PACKET } else { cc::SUCCESS };
                    let event =
                        self.transfer_trb(slot_id, dci, trb.parameter, code, transferred, true);
                    self.post_event_bei(trb.interrupter_target(), event, trb.has(BEI));
                }
                tt::ISOCH | tt::NORMAL => {
                    if short {
                        continue;
                    }
                    let len = trb.transfer_length();
                    let chunk = len.min(left);
                    left -= chunk;
                    transferred += chunk;
                    if chunk < len {
                        short = true;
                        if trb.has(ISP) || trb.has(IOC) {
                            self.transfer_event(
                                slot_id,
                                dci,
                                trb,
                                *addr,
                                cc::SHORT_PACKET,
                                len - chunk,
                                false,
                            );
                            return;
                        }
                        if last.has(IOC) {
                            let residual = if *addr == last_addr {
                                len - chunk
                            } else {
                                last.transfer_length()
                            };
                            self.transfer_event(
                                slot_id,
                                dci,
                                &last,
                                last_addr,
                                cc::SHORT_PACKET,
                                residual,
                                false,
                            );
                            return;
                        }
                    } else if trb.has(IOC) {
                        self.transfer_event(slot_id, dci, trb, *addr, cc::SUCCESS, 0, false);
                    }
                }
                _ if trb.has(IOC) && !short => {
                    self.transfer_event(slot_id, dci, trb, *addr, cc::SUCCESS, 0, false)
                }
                _ => {}
            }
        }
    }

    /// Serve the TDs that came due (the worker's timer, and every round).
    pub(super) fn serve_isoch(&mut self) {
        for (slot_id, dci) in std::mem::take(&mut self.iso_eps) {
            let ep = &self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)];
            if wake_at(ep).is_some() {
                self.kick_isoch(slot_id, dci);
            }
        }
    }

    /// How long until the next isochronous TD is due (the worker's timer).
    pub fn next_isoch_due(&self) -> Option<Duration> {
        let now = self.mf_now();
        self.iso_eps
            .iter()
            .filter_map(|&(s, d)| wake_at(&self.slots[usize::from(s) - 1].eps[usize::from(d)]))
            .min()
            .map(|due| MICROFRAME * due.saturating_sub(now).min(u64::from(u32::MAX)) as u32)
    }
}
