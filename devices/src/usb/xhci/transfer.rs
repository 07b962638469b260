//! Transfers: a TD (one Normal chain, or a control transfer's Setup, Data and
//! Status stages) is taken from the endpoint's ring, turned into a
//! [`UsbRequest`], and completed with Transfer Events when the device answers.
//! One TD per endpoint is in flight at a time.
//!
//! Events follow xhci-hcd's expectations: a short packet is reported once, on
//! the TRB where it happened (the TD ends there, except for control transfers,
//! whose Status stage still completes); an error is reported on the first data
//! TRB and halts the endpoint.

use tracing::{debug, warn};
use vm_memory::{Bytes, GuestAddress};

use super::context::{EP_HALTED, EP_RUNNING};
use super::controller::Xhci;
use super::isoch::is_isoch;
use super::trb::{cc, trb_type as tt, Ring, Trb, BEI, CHAIN, IDT, IOC};
use crate::usb::{SetupPacket, TransferKind, UsbCompletion, UsbRequest, UsbStatus};

/// TRBs one TD may have (Linux splits at 64 KiB per TRB; a TD of a few MiB).
const MAX_TD_TRBS: usize = 256;
/// Bytes one TD may move (the usbredir limit is the same order).
pub const MAX_TD_BYTES: u64 = 4 * 1024 * 1024;
/// TDs completed per endpoint per `process` round.
pub(super) const TDS_PER_ROUND: usize = 64;

pub(crate) struct Td {
    /// Where the TD starts on the ring (the dequeue pointer while it is in flight).
    pub start: Ring,
    pub trbs: Vec<(u64, Trb)>,
    pub id: u64,
    pub is_in: bool,
    pub requested: u32,
}

pub(super) enum Fetch {
    Td(Td),
    /// The guest has not finished writing the TD.
    Incomplete,
    /// A malformed ring or TD: already reported.
    Failed,
}

fn is_data(trb: &Trb) -> bool {
    matches!(trb.trb_type(), tt::NORMAL | tt::DATA | tt::ISOCH)
}

impl Xhci {
    pub(super) fn fetch_td(&mut self, slot_id: u8, dci: u8) -> Fetch {
        let ep = &self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)];
        let start = ep.ring;
        let mut ring = ep.ring;
        let mut trbs = Vec::new();
        loop {
            let next = match ring.peek(&self.mem) {
                Ok(Some(next)) => next,
                Ok(None) => return Fetch::Incomplete,
                Err(e) => {
                    warn!(
                        slot_id,
                        dci,
                        ?e,
                        "xhci: transfer ring unreadable; endpoint halted"
                    );
                    self.halt(slot_id, dci);
                    return Fetch::Failed;
                }
            };
            ring.advance();
            trbs.push(next);
            let trb = next.1;
            let control_td = trbs[0].1.trb_type() == tt::SETUP;
            let last = if control_td {
                trb.trb_type() == tt::STATUS
            } else {
                !trb.has(CHAIN)
            };
            if last {
                break;
            }
            if trbs.len() >= MAX_TD_TRBS {
                warn!(
                    slot_id,
                    dci, "xhci: TD longer than {MAX_TD_TRBS} TRBs; endpoint halted"
                );
                self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)].ring = ring;
                self.transfer_event(slot_id, dci, &trb, next.0, cc::TRB_ERROR, 0, false);
                self.halt(slot_id, dci);
                return Fetch::Failed;
            }
        }
        self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)].ring = ring;
        let id = self.next_id;
        self.next_id += 1;
        Fetch::Td(Td {
            start,
            trbs,
            id,
            is_in: false,
            requested: 0,
        })
    }

    pub(super) fn halt(&mut self, slot_id: u8, dci: u8) {
        self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)].state = EP_HALTED;
        self.write_back_endpoint(slot_id, dci);
    }

    /// A Transfer Event for `trb` (at `addr`, or the Event Data TRB's
    /// parameter), on the interrupter the TRB names.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn transfer_event(
        &mut self,
        slot_id: u8,
        dci: u8,
        trb: &Trb,
        addr: u64,
        code: u8,
        residual: u32,
        event_data: bool,
    ) {
        let event = self.transfer_trb(slot_id, dci, addr, code, residual, event_data);
        // BEI (Normal, Isoch and Event Data TRBs) holds back the interrupt of
        // a completion; an error still interrupts, the driver must act on it.
        let completion = matches!(code, cc::SUCCESS | cc::SHORT_PACKET | cc::MISSED_SERVICE);
        let may_block = matches!(trb.trb_type(), tt::NORMAL | tt::ISOCH | tt::EVENT_DATA);
        let block = completion && may_block && trb.has(BEI);
        self.post_event_bei(trb.interrupter_target(), event, block);
    }

    pub(super) fn transfer_trb(
        &self,
        slot_id: u8,
        dci: u8,
        addr: u64,
        code: u8,
        residual: u32,
        event_data: bool,
    ) -> Trb {
        Trb {
            parameter: addr,
            status: u32::from(code) << 24 | (residual & 0xff_ffff),
            control: tt::TRANSFER_EVENT << 10
                | u32::from(dci) << 16
                | u32::from(slot_id) << 24
                | u32::from(event_data) << 2,
        }
    }

    /// Turn a TD into a request: the endpoint address, kind, OUT data gathered
    /// from guest memory (each buffer read once) and the IN length.
    pub(super) fn build_request(
        &self,
        dci: u8,
        ep_type: u8,
        td: &mut Td,
    ) -> Result<UsbRequest, u8> {
        let first = td.trbs[0].1;
        let (kind, endpoint) = if first.trb_type() == tt::SETUP {
            if !first.has(IDT) || first.transfer_length() != 8 {
                return Err(cc::TRB_ERROR);
            }
            let setup = SetupPacket::from_u64(first.parameter);
            (
                TransferKind::Control(setup),
                if setup.is_in() { 0x80 } else { 0 },
            )
        } else {
            let number = dci / 2;
            let is_in = dci % 2 == 1;
            let kind = match ep_type {
                2 | 6 => TransferKind::Bulk,
                3 | 7 => TransferKind::Interrupt,
                1 | 5 => TransferKind::Isochronous,
                _ => return Err(cc::TRB_ERROR), // stray control TRBs
            };
            (kind, number | if is_in { 0x80 } else { 0 })
        };
        let is_in = endpoint & 0x80 != 0;
        let mut length: u64 = 0;
        let mut data = Vec::new();
        for (_, trb) in td.trbs.iter().filter(|(_, t)| is_data(t)) {
            let len = trb.transfer_length();
            length += u64::from(len);
            if length > MAX_TD_BYTES {
                return Err(cc::TRB_ERROR);
            }
            if is_in {
                continue;
            }
            if trb.has(IDT) {
                let bytes = trb.parameter.to_le_bytes();
                data.extend_from_slice(&bytes[..(len as usize).min(8)]);
            } else {
                let at = data.len();
                data.resize(at + len as usize, 0);
                if self
                    .mem
                    .read_slice(&mut data[at..], GuestAddress(trb.parameter))
                    .is_err()
                {
                    return Err(cc::DATA_BUFFER_ERROR);
                }
            }
        }
        td.is_in = is_in;
        td.requested = length as u32;
        Ok(UsbRequest {
            id: td.id,
            endpoint,
            kind,
            data,
            length: length as u32,
        })
    }

    /// Start TDs on a rung endpoint until one stays in flight or the ring is empty.
    pub(super) fn kick_endpoint(&mut self, slot_id: u8, dci: u8) {
        for _ in 0..TDS_PER_ROUND {
            let Some(slot) = self.slots.get_mut(usize::from(slot_id).wrapping_sub(1)) else {
                return;
            };
            let port = slot.port;
            let enabled = slot.enabled;
            let Some(ep) = slot.eps.get_mut(usize::from(dci)) else {
                return;
            };
            if !enabled || (ep.inflight.is_some() && !is_isoch(ep.ep_type)) {
                return;
            }
            // A doorbell restarts a stopped endpoint; a halted one stays halted.
            match ep.state {
                EP_RUNNING => {}
                super::context::EP_STOPPED => {
                    ep.state = EP_RUNNING;
                    self.write_back_endpoint(slot_id, dci);
                }
                _ => return,
            }
            let ep_type = self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)].ep_type;
            if is_isoch(ep_type) {
                self.kick_isoch(slot_id, dci);
                return;
            }
            let mut td = match self.fetch_td(slot_id, dci) {
                Fetch::Td(td) => td,
                Fetch::Incomplete | Fetch::Failed => return,
            };
            let request = match self.build_request(dci, ep_type, &mut td) {
                Ok(r) => r,
                Err(code) => {
                    debug!(slot_id, dci, code, "xhci: TD refused");
                    let (addr, trb) = td.trbs[td.trbs.len() - 1];
                    self.transfer_event(slot_id, dci, &trb, addr, code, 0, false);
                    continue;
                }
            };
            let device = port
                .and_then(|p| self.ports.get_mut(p))
                .and_then(|p| p.device.as_mut());
            let Some(device) = device else {
                // The device is gone: the transaction fails.
                self.finish_td(
                    slot_id,
                    dci,
                    td,
                    UsbCompletion {
                        id: 0,
                        status: UsbStatus::Error,
                        data: vec![],
                        actual: 0,
                    },
                );
                continue;
            };
            tracing::debug!(target: "usbtime", "submit");
            match device.submit(request) {
                Some(done) => self.finish_td(slot_id, dci, td, done),
                None => {
                    self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)].inflight = Some(td);
                    return;
                }
            }
        }
        // More TDs may wait: come back next round.
        if let Some(bits) = self.ep_pending.get_mut(usize::from(slot_id) - 1) {
            *bits |= 1 << dci;
        }
    }

    pub(super) fn cancel_inflight(&mut self, slot_id: u8, dci: u8) {
        let Some(slot) = self.slots.get_mut(usize::from(slot_id).wrapping_sub(1)) else {
            return;
        };
        let Some(ep) = slot.eps.get_mut(usize::from(dci)) else {
            return;
        };
        let iso = is_isoch(ep.ep_type);
        ep.iso = Default::default();
        let td = ep.inflight.take();
        if td.is_none() && !iso {
            return;
        }
        if let Some(td) = &td {
            // The TD was not completed: the ring resumes at its start.
            ep.ring = td.start;
        }
        if let Some(dev) = slot
            .port
            .and_then(|p| self.ports.get_mut(p))
            .and_then(|p| p.device.as_mut())
        {
            if let Some(td) = td {
                dev.cancel(td.id);
            }
            if iso {
                // A stream the device runs for the endpoint ends with it.
                dev.endpoint_stopped((dci / 2) | if dci % 2 == 1 { 0x80 } else { 0 });
            }
        }
    }

    /// Completions from asynchronous devices, matched to their in-flight TDs.
    pub(super) fn collect_completions(&mut self) {
        for port in 0..self.ports.len() {
            let Some(dev) = self.ports[port].device.as_mut() else {
                continue;
            };
            for done in dev.take_completions() {
                let found = self.slots.iter().enumerate().find_map(|(s, slot)| {
                    let dci = slot
                        .eps
                        .iter()
                        .position(|e| e.inflight.as_ref().is_some_and(|td| td.id == done.id))?;
                    (slot.port == Some(port)).then_some((s as u8 + 1, dci as u8))
                });
                let Some((slot_id, dci)) = found else {
                    debug!(
                        id = done.id,
                        "xhci: completion for a cancelled transfer dropped"
                    );
                    continue;
                };
                let td = self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)]
                    .inflight
                    .take();
                if let Some(td) = td {
                    self.finish_td(slot_id, dci, td, done);
                    tracing::debug!(target: "usbtime", "finished");
                    self.kick_endpoint(slot_id, dci);
                }
            }
        }
    }

    /// IN data to the guest's buffers, in TRB order (when `write`); the
    /// bytes the TD moved.
    pub(super) fn deliver(
        &self,
        slot_id: u8,
        dci: u8,
        td: &Td,
        done: &UsbCompletion,
        write: bool,
    ) -> u32 {
        let actual = if td.is_in {
            done.data.len().min(td.requested as usize) as u32
        } else {
            done.actual.min(td.requested)
        };
        if td.is_in && write {
            let mut offset = 0usize;
            for (_, trb) in td.trbs.iter().filter(|(_, t)| is_data(t) && !t.has(IDT)) {
                let end = (offset + trb.transfer_length() as usize).min(actual as usize);
                if end <= offset {
                    break;
                }
                if self
                    .mem
                    .write_slice(&done.data[offset..end], GuestAddress(trb.parameter))
                    .is_err()
                {
                    warn!(slot_id, dci, "xhci: IN buffer outside guest memory");
                }
                offset = end;
            }
        }
        actual
    }

    fn finish_td(&mut self, slot_id: u8, dci: u8, td: Td, done: UsbCompletion) {
        if is_isoch(self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)].ep_type) {
            return self.finish_isoch(slot_id, dci, td, done);
        }
        let code = match done.status {
            UsbStatus::Success => cc::SUCCESS,
            UsbStatus::Stall => cc::STALL,
            UsbStatus::Error => cc::USB_TRANSACTION_ERROR,
            UsbStatus::Cancelled => return,
        };
        let actual = self.deliver(slot_id, dci, &td, &done, code == cc::SUCCESS);
        let control = td.trbs[0].1.trb_type() == tt::SETUP;
        let last = td.trbs.len() - 1;
        let mut left = actual;
        let mut transferred = 0u32;
        let mut short = false;
        for (i, (addr, trb)) in td.trbs.iter().enumerate() {
            if code != cc::SUCCESS {
                if is_data(trb) || i == last {
                    self.transfer_event(
                        slot_id,
                        dci,
                        trb,
                        *addr,
                        code,
                        trb.transfer_length(),
                        false,
                    );
                    self.halt(slot_id, dci);
                    return;
                }
                continue;
            }
            match trb.trb_type() {
                tt::EVENT_DATA if trb.has(IOC) => {
                    let code = if short { cc::SHORT_PACKET } else { cc::SUCCESS };
                    self.transfer_event(slot_id, dci, trb, trb.parameter, code, transferred, true);
                }
                _ if is_data(trb) => {
                    if short {
                        continue;
                    }
                    let len = trb.transfer_length();
                    let chunk = len.min(left);
                    left -= chunk;
                    transferred += chunk;
                    if chunk < len {
                        short = true;
                        self.transfer_event(
                            slot_id,
                            dci,
                            trb,
                            *addr,
                            cc::SHORT_PACKET,
                            len - chunk,
                            false,
                        );
                        if !control {
                            return;
                        }
                    } else if trb.has(IOC) {
                        self.transfer_event(slot_id, dci, trb, *addr, cc::SUCCESS, 0, false);
                    }
                }
                _ if trb.has(IOC) => {
                    self.transfer_event(slot_id, dci, trb, *addr, cc::SUCCESS, 0, false)
                }
                _ => {}
            }
        }
    }
}
