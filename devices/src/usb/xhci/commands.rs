//! The command ring: Enable/Disable Slot, Address Device, Configure Endpoint,
//! Evaluate Context, Reset/Stop Endpoint, Set TR Dequeue, Reset Device, No-Op.
//! Every command gets one Command Completion event; a command with impossible
//! contexts fails with a completion code, never more.

use tracing::warn;

use super::context::*;
use super::controller::{Xhci, MAX_SLOTS};
use super::isoch::{is_isoch, IsochParams};
use super::trb::{cc, trb_type as tt, Ring, Trb};

/// Commands run per `process` call; the rest wait for the next round, so a
/// guest filling the ring cannot hold the worker.
const COMMANDS_PER_ROUND: usize = 256;

impl Xhci {
    pub(super) fn run_commands(&mut self) {
        for _ in 0..COMMANDS_PER_ROUND {
            if !self.cmd_running {
                return;
            }
            let (addr, trb) = match self.cmd_ring.peek(&self.mem) {
                Ok(Some(next)) => next,
                Ok(None) => return,
                Err(e) => {
                    warn!(?e, "xhci: command ring unreadable; stopped");
                    self.cmd_running = false;
                    return;
                }
            };
            self.cmd_ring.advance();
            let (code, slot) = self.command(&trb);
            let event = Trb {
                parameter: addr,
                status: u32::from(code) << 24,
                control: tt::COMMAND_COMPLETION << 10 | u32::from(slot) << 24,
            };
            self.post_event(0, event);
        }
        self.cmd_pending = true;
    }

    fn command(&mut self, trb: &Trb) -> (u8, u8) {
        let slot_id = trb.slot_id();
        let ty = trb.trb_type();
        if ty == tt::ENABLE_SLOT {
            return match self.slots.iter().position(|s| !s.enabled) {
                Some(i) => {
                    self.slots[i].enabled = true;
                    (cc::SUCCESS, i as u8 + 1)
                }
                None => (cc::NO_SLOTS, 0),
            };
        }
        if ty == tt::NOOP_COMMAND {
            return (cc::SUCCESS, 0);
        }
        let valid_slot = (1..=MAX_SLOTS as u8).contains(&slot_id);
        if !matches!(
            ty,
            tt::DISABLE_SLOT
                | tt::ADDRESS_DEVICE
                | tt::CONFIGURE_ENDPOINT
                | tt::EVALUATE_CONTEXT
                | tt::RESET_ENDPOINT
                | tt::STOP_ENDPOINT
                | tt::SET_TR_DEQUEUE
                | tt::RESET_DEVICE
        ) {
            warn!(ty, "xhci: unsupported command");
            return (cc::TRB_ERROR, slot_id);
        }
        if !valid_slot || !self.slots[usize::from(slot_id) - 1].enabled {
            return (cc::SLOT_NOT_ENABLED, slot_id);
        }
        let dci = ((trb.control >> 16) & 0x1f) as u8;
        let code = match ty {
            tt::DISABLE_SLOT => {
                self.release_slot(slot_id);
                cc::SUCCESS
            }
            tt::ADDRESS_DEVICE => {
                self.address_device(slot_id, trb.parameter & !0xf, trb.control & 1 << 9 != 0)
            }
            tt::CONFIGURE_ENDPOINT => {
                self.configure_endpoint(slot_id, trb.parameter & !0xf, trb.control & 1 << 9 != 0)
            }
            tt::EVALUATE_CONTEXT => self.evaluate_context(slot_id, trb.parameter & !0xf),
            tt::RESET_ENDPOINT => self.endpoint_transition(slot_id, dci, &[EP_HALTED], EP_STOPPED),
            tt::STOP_ENDPOINT => {
                self.cancel_inflight(slot_id, dci);
                self.endpoint_transition(slot_id, dci, &[EP_RUNNING], EP_STOPPED)
            }
            tt::SET_TR_DEQUEUE => self.set_tr_dequeue(slot_id, dci, trb.parameter),
            _ => self.reset_device(slot_id),
        };
        (code, slot_id)
    }

    pub(super) fn release_slot(&mut self, slot_id: u8) {
        for dci in 1..32 {
            self.cancel_inflight(slot_id, dci);
        }
        if let Some(slot) = self.slots.get_mut(usize::from(slot_id).wrapping_sub(1)) {
            *slot = Default::default();
        }
    }

    /// Slot context dw3 state and address in the output context.
    fn write_slot_state(&self, out: u64, mut slot_ctx: Ctx, state: u32, address: u32) -> bool {
        slot_ctx[3] = state << 27 | (address & 0xff);
        write_ctx(&self.mem, out, &slot_ctx)
    }

    fn address_device(&mut self, slot_id: u8, input: u64, bsr: bool) -> u8 {
        let (Some(ictl), Some(islot), Some(iep0)) = (
            read_ctx(&self.mem, input),
            read_ctx(&self.mem, input + CTX_SIZE),
            read_ctx(&self.mem, input + 2 * CTX_SIZE),
        ) else {
            return cc::TRB_ERROR;
        };
        if ictl[0] != 0 || ictl[1] & 3 != 3 {
            return cc::TRB_ERROR;
        }
        let port_number = ((islot[1] >> 16) & 0xff) as usize;
        let Some(index) = port_number.checked_sub(1).filter(|&i| i < self.ports.len()) else {
            return cc::TRB_ERROR;
        };
        if self.ports[index].device.is_none() {
            return cc::TRB_ERROR;
        }
        let Some(out) = self.dcbaa_entry(slot_id) else {
            return cc::TRB_ERROR;
        };
        let (state, address) = if bsr {
            (SLOT_DEFAULT, 0)
        } else {
            (SLOT_ADDRESSED, u32::from(slot_id))
        };
        let mut ep0 = iep0;
        ep0[0] = (ep0[0] & !7) | u32::from(EP_RUNNING);
        let (dequeue, cycle) = ep_dequeue(&iep0);
        if !self.write_slot_state(out, islot, state, address)
            || !write_ctx(&self.mem, out + CTX_SIZE, &ep0)
        {
            return cc::TRB_ERROR;
        }
        let slot = &mut self.slots[usize::from(slot_id) - 1];
        slot.port = Some(index);
        slot.eps[1] = super::controller::Endpoint {
            state: EP_RUNNING,
            ep_type: 4,
            ring: Ring::new(dequeue, cycle),
            ..Default::default()
        };
        cc::SUCCESS
    }

    fn configure_endpoint(&mut self, slot_id: u8, input: u64, deconfigure: bool) -> u8 {
        let Some(out) = self.dcbaa_entry(slot_id) else {
            return cc::TRB_ERROR;
        };
        let Some(oslot) = read_ctx(&self.mem, out) else {
            return cc::TRB_ERROR;
        };
        let state = oslot[3] >> 27;
        if state != SLOT_ADDRESSED && state != SLOT_CONFIGURED {
            return cc::CONTEXT_STATE;
        }
        let (drop, add, islot) = if deconfigure {
            (!3u32, 0, oslot)
        } else {
            let (Some(ictl), Some(islot)) = (
                read_ctx(&self.mem, input),
                read_ctx(&self.mem, input + CTX_SIZE),
            ) else {
                return cc::TRB_ERROR;
            };
            (ictl[0], ictl[1], islot)
        };
        if drop & 3 != 0 || add & 2 != 0 {
            return cc::TRB_ERROR;
        }
        // Check every added context before changing anything.
        let mut added = Vec::new();
        for dci in 2..32u8 {
            if add & 1 << dci == 0 {
                continue;
            }
            let Some(ctx) = read_ctx(&self.mem, input + CTX_SIZE * (u64::from(dci) + 1)) else {
                return cc::TRB_ERROR;
            };
            let ty = ep_type(&ctx);
            // The type must match the DCI's direction (odd DCIs are IN, types 5-7).
            if ty == 0 || ty == 4 || (ty >= 5) != (dci % 2 == 1) {
                return cc::PARAMETER;
            }
            if is_isoch(ty) && IsochParams::from_ctx(&ctx).is_none() {
                warn!(
                    slot_id,
                    dci, "xhci: isochronous endpoint with an Interval over 15"
                );
                return cc::PARAMETER;
            }
            added.push((dci, ctx));
        }
        for dci in 2..32u8 {
            if drop & 1 << dci != 0 {
                self.cancel_inflight(slot_id, dci);
                self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)] = Default::default();
                let mut ctx =
                    read_ctx(&self.mem, out + CTX_SIZE * u64::from(dci)).unwrap_or_default();
                ctx[0] &= !7;
                write_ctx(&self.mem, out + CTX_SIZE * u64::from(dci), &ctx);
            }
        }
        for (dci, mut ctx) in added {
            self.cancel_inflight(slot_id, dci);
            let (dequeue, cycle) = ep_dequeue(&ctx);
            ctx[0] = (ctx[0] & !7) | u32::from(EP_RUNNING);
            write_ctx(&self.mem, out + CTX_SIZE * u64::from(dci), &ctx);
            self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)] =
                super::controller::Endpoint {
                    state: EP_RUNNING,
                    ep_type: ep_type(&ctx),
                    ring: Ring::new(dequeue, cycle),
                    iso_params: IsochParams::from_ctx(&ctx).unwrap_or_default(),
                    ..Default::default()
                };
        }
        let any = self.slots[usize::from(slot_id) - 1].eps[2..]
            .iter()
            .any(|e| e.state != EP_DISABLED);
        let mut new_slot = oslot;
        // Context Entries come from the input slot context.
        new_slot[0] = (oslot[0] & !(0x1f << 27)) | (islot[0] & 0x1f << 27);
        let address = oslot[3] & 0xff;
        self.write_slot_state(
            out,
            new_slot,
            if any { SLOT_CONFIGURED } else { SLOT_ADDRESSED },
            address,
        );
        cc::SUCCESS
    }

    fn evaluate_context(&mut self, slot_id: u8, input: u64) -> u8 {
        let Some(out) = self.dcbaa_entry(slot_id) else {
            return cc::TRB_ERROR;
        };
        let (Some(ictl), Some(islot), Some(iep0), Some(mut oslot), Some(mut oep0)) = (
            read_ctx(&self.mem, input),
            read_ctx(&self.mem, input + CTX_SIZE),
            read_ctx(&self.mem, input + 2 * CTX_SIZE),
            read_ctx(&self.mem, out),
            read_ctx(&self.mem, out + CTX_SIZE),
        ) else {
            return cc::TRB_ERROR;
        };
        if ictl[1] & 1 != 0 {
            // Max Exit Latency and Interrupter Target.
            oslot[1] = (oslot[1] & !0xffff) | (islot[1] & 0xffff);
            oslot[2] = (oslot[2] & !(0x3ff << 22)) | (islot[2] & 0x3ff << 22);
            write_ctx(&self.mem, out, &oslot);
        }
        if ictl[1] & 2 != 0 {
            // EP0 Max Packet Size (after the first 8 bytes of the descriptor).
            oep0[1] = (oep0[1] & 0xffff) | (iep0[1] & 0xffff_0000);
            write_ctx(&self.mem, out + CTX_SIZE, &oep0);
        }
        cc::SUCCESS
    }

    /// Writes an endpoint's state and TR dequeue to its output context.
    pub(super) fn write_back_endpoint(&self, slot_id: u8, dci: u8) {
        let Some(out) = self.dcbaa_entry(slot_id) else {
            return;
        };
        let at = out + CTX_SIZE * u64::from(dci);
        let Some(mut ctx) = read_ctx(&self.mem, at) else {
            return;
        };
        let ep = &self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)];
        ctx[0] = (ctx[0] & !7) | u32::from(ep.state);
        let ring = ep.inflight.as_ref().map_or(ep.ring, |td| td.start);
        set_ep_dequeue(&mut ctx, ring.dequeue, ring.cycle);
        write_ctx(&self.mem, at, &ctx);
    }

    fn endpoint_transition(&mut self, slot_id: u8, dci: u8, from: &[u8], to: u8) -> u8 {
        if !(1..32).contains(&dci) {
            return cc::TRB_ERROR;
        }
        let ep = &mut self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)];
        if !from.contains(&ep.state) {
            return cc::CONTEXT_STATE;
        }
        ep.state = to;
        self.write_back_endpoint(slot_id, dci);
        cc::SUCCESS
    }

    fn set_tr_dequeue(&mut self, slot_id: u8, dci: u8, parameter: u64) -> u8 {
        if !(1..32).contains(&dci) {
            return cc::TRB_ERROR;
        }
        let ep = &mut self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)];
        if ep.state != EP_STOPPED && ep.state != EP_ERROR {
            return cc::CONTEXT_STATE;
        }
        ep.ring = Ring::new(parameter & !0xf, parameter & 1 != 0);
        self.write_back_endpoint(slot_id, dci);
        cc::SUCCESS
    }

    fn reset_device(&mut self, slot_id: u8) -> u8 {
        let Some(out) = self.dcbaa_entry(slot_id) else {
            return cc::TRB_ERROR;
        };
        let Some(oslot) = read_ctx(&self.mem, out) else {
            return cc::TRB_ERROR;
        };
        if oslot[3] >> 27 == SLOT_DEFAULT || oslot[3] >> 27 == SLOT_DISABLED {
            return cc::CONTEXT_STATE;
        }
        for dci in 2..32u8 {
            self.cancel_inflight(slot_id, dci);
            self.slots[usize::from(slot_id) - 1].eps[usize::from(dci)] = Default::default();
            let at = out + CTX_SIZE * u64::from(dci);
            if let Some(mut ctx) = read_ctx(&self.mem, at) {
                ctx[0] &= !7;
                write_ctx(&self.mem, at, &ctx);
            }
        }
        let mut slot = oslot;
        slot[0] &= !(0x1f << 27);
        slot[0] |= 1 << 27;
        self.write_slot_state(out, slot, SLOT_DEFAULT, 0);
        if let Some(dev) = self.slots[usize::from(slot_id) - 1]
            .port
            .and_then(|p| self.ports.get_mut(p))
            .and_then(|p| p.device.as_mut())
        {
            dev.deconfigure();
        }
        cc::SUCCESS
    }
}
