//! The xHCI controller's state and registers (BAR 0 as QEMU's qemu-xhci lays it
//! out): capability registers at 0, operational at 0x40 (ports at 0x440),
//! runtime at 0x1000, doorbells at 0x2000; the MSI-X table (0x3000) and PBA
//! (0x3800) are served by `PciInterrupt` before accesses get here.
//!
//! Register accesses only record work: a doorbell marks the command ring or an
//! endpoint pending and returns true, and the owner calls [`Xhci::process`]
//! (on the vCPU, or the worker for what is left) to walk rings, run commands,
//! submit transfers and collect completions. Commands live in `commands.rs`, transfers
//! in `transfer.rs`.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, warn};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::interrupter::{Interrupter, Posted, ERDP_EHB, IMAN_IE, IMAN_IP};
use super::isoch::{IsochParams, IsochState};
use super::port::{Port, PORTS, USB2_PORTS, USB3_PORTS};
use super::trb::{cc, trb_type, Ring, Trb};
use crate::pci::PciInterrupt;
use crate::usb::UsbDevice;

pub const MAX_SLOTS: usize = 64;
pub const MAX_INTRS: usize = 16;
pub const BAR_SIZE: u64 = 0x4000;
pub const OP_BASE: u64 = 0x40;
pub const PORT_BASE: u64 = 0x440;
pub const RUNTIME_BASE: u64 = 0x1000;
pub const DOORBELL_BASE: u64 = 0x2000;
pub const MSIX_TABLE: u64 = 0x3000;
pub const MSIX_PBA: u64 = 0x3800;

pub const USBCMD_RS: u32 = 1 << 0;
pub const USBCMD_HCRST: u32 = 1 << 1;
pub const USBCMD_INTE: u32 = 1 << 2;
pub const USBSTS_HCH: u32 = 1 << 0;
pub const USBSTS_EINT: u32 = 1 << 3;
pub const USBSTS_PCD: u32 = 1 << 4;
/// RW1C bits of USBSTS: HSE, EINT, PCD, SRE.
const USBSTS_RW1C: u32 = (1 << 2) | USBSTS_EINT | USBSTS_PCD | (1 << 10);
const CRCR_RCS: u64 = 1 << 0;
const CRCR_CS: u64 = 1 << 1;
const CRCR_CA: u64 = 1 << 2;
const CRCR_CRR: u64 = 1 << 3;

/// How the controller interrupts: MSI-X vector = interrupter, else INTx for
/// interrupter 0. `PciInterrupt` is the real one; tests record.
pub trait XhciInterrupt: Send + Sync {
    fn messages_enabled(&self) -> bool;
    fn notify(&self, vector: u16);
    fn set_intx(&self, level: bool);
}

impl XhciInterrupt for PciInterrupt {
    fn messages_enabled(&self) -> bool {
        self.msix_enabled()
    }
    fn notify(&self, vector: u16) {
        PciInterrupt::notify(self, vector)
    }
    fn set_intx(&self, level: bool) {
        PciInterrupt::set_intx(self, level)
    }
}

#[derive(Default)]
pub(super) struct Endpoint {
    pub state: u8,
    pub ep_type: u8,
    pub ring: Ring,
    pub inflight: Option<super::transfer::Td>,
    /// Isochronous endpoints: the context's interval and sizes, the schedule.
    pub iso_params: IsochParams,
    pub iso: IsochState,
}

#[derive(Default)]
pub(super) struct Slot {
    pub enabled: bool,
    /// Index into `ports` once addressed.
    pub port: Option<usize>,
    pub eps: [Endpoint; 32],
}

#[derive(Clone, Copy)]
enum Clock {
    Real(Instant),
    Manual(u64),
}

pub struct Xhci {
    pub(super) mem: GuestMemoryMmap<()>,
    pub(super) irq: Arc<dyn XhciInterrupt>,
    pub(super) usbcmd: u32,
    pub(super) usbsts: u32,
    dnctrl: u32,
    config: u32,
    crcr_low: u32,
    crcr_high: u32,
    pub(super) cmd_ring: Ring,
    pub(super) cmd_running: bool,
    dcbaap: u64,
    pub(super) intrs: Vec<Interrupter>,
    pub(super) ports: Vec<Port>,
    pub(super) slots: Vec<Slot>,
    pub(super) cmd_pending: bool,
    /// Per slot (index slot id - 1), a bit per DCI rung since the last `process`.
    pub(super) ep_pending: Vec<u32>,
    pub(super) next_id: u64,
    clock: Clock,
    /// Isochronous endpoints with a TD waiting for its interval.
    pub(super) iso_eps: Vec<(u8, u8)>,
    waker: Option<Arc<EventFd>>,
}

impl Xhci {
    pub fn new(mem: GuestMemoryMmap<()>, irq: Arc<dyn XhciInterrupt>) -> Xhci {
        let mut x = Xhci {
            mem,
            irq,
            usbcmd: 0,
            usbsts: USBSTS_HCH,
            dnctrl: 0,
            config: 0,
            crcr_low: 0,
            crcr_high: 0,
            cmd_ring: Ring::default(),
            cmd_running: false,
            dcbaap: 0,
            intrs: (0..MAX_INTRS).map(|_| Interrupter::default()).collect(),
            ports: (0..PORTS).map(Port::new).collect(),
            slots: (0..MAX_SLOTS).map(|_| Slot::default()).collect(),
            cmd_pending: false,
            ep_pending: vec![0; MAX_SLOTS],
            next_id: 1,
            clock: Clock::Real(Instant::now()),
            iso_eps: Vec::new(),
            waker: None,
        };
        x.reset();
        x
    }

    /// HCRST and machine reset: registers, slots and rings to power-on; devices
    /// stay attached to their ports.
    pub fn reset(&mut self) {
        for slot_id in 1..=MAX_SLOTS as u8 {
            self.release_slot(slot_id);
        }
        self.usbcmd = 0;
        self.usbsts = USBSTS_HCH;
        self.dnctrl = 0;
        self.config = 0;
        self.crcr_low = 0;
        self.crcr_high = 0;
        self.cmd_ring = Ring::default();
        self.cmd_running = false;
        self.dcbaap = 0;
        self.intrs.iter_mut().for_each(Interrupter::reset);
        for port in &mut self.ports {
            port.power_on();
        }
        self.cmd_pending = false;
        self.ep_pending.fill(0);
        self.iso_eps.clear();
        self.update_intx();
    }

    pub(super) fn running(&self) -> bool {
        self.usbcmd & USBCMD_RS != 0
    }

    pub(super) fn dcbaa_entry(&self, slot_id: u8) -> Option<u64> {
        super::context::read_u64(&self.mem, self.dcbaap.checked_add(8 * u64::from(slot_id))?)
            .map(|a| a & !0x3f)
            .filter(|&a| a != 0)
    }

    /// Attach a device to a free root port of its speed; its port number.
    pub fn attach(&mut self, mut device: Box<dyn UsbDevice>) -> Option<u8> {
        let speed = device.speed();
        if let Some(w) = &self.waker {
            device.set_waker(w.clone());
        }
        let index = self
            .ports
            .iter()
            .position(|p| p.device.is_none() && p.fits(speed))?;
        self.ports[index].attach(device);
        self.port_changed(index);
        Some(self.ports[index].number)
    }

    /// Detach the device on port `number`; its transfers are dropped.
    pub fn detach(&mut self, number: u8) -> Option<Box<dyn UsbDevice>> {
        let index = usize::from(number)
            .checked_sub(1)
            .filter(|&i| i < self.ports.len())?;
        for slot_id in 1..=MAX_SLOTS as u8 {
            if self.slots[usize::from(slot_id) - 1].port != Some(index) {
                continue;
            }
            // While the device is still on the port: its requests are
            // cancelled and the isochronous streams it runs for the guest
            // end (a usbredir peer still holding the device is told to stop
            // streaming, as a Stop Endpoint would). Not completed, each ring
            // (and so the context the driver reads) is back at its TD.
            for dci in 1..32 {
                self.cancel_inflight(slot_id, dci);
            }
        }
        let dev = self.ports[index].detach();
        self.port_changed(index);
        dev
    }

    /// PORTSC of port `number` (1-based).
    pub fn portsc(&self, number: u8) -> Option<u32> {
        self.ports
            .get(usize::from(number).checked_sub(1)?)
            .map(|p| p.portsc)
    }

    fn port_changed(&mut self, index: usize) {
        self.usbsts |= USBSTS_PCD;
        if !self.running() {
            return;
        }
        let number = u64::from(self.ports[index].number);
        self.post_event(
            0,
            Trb {
                parameter: number << 24,
                status: u32::from(cc::SUCCESS) << 24,
                control: trb_type::PORT_STATUS_CHANGE << 10,
            },
        );
    }

    /// Write `event` on interrupter `target`'s ring and interrupt (QEMU's
    /// coalescing: no new message while EHB says the guest is still handling).
    pub(super) fn post_event(&mut self, target: usize, event: Trb) {
        self.post_event_bei(target, event, false);
    }

    /// `post_event`, or with `block` (a TRB's BEI) only the event, no interrupt.
    pub(super) fn post_event_bei(&mut self, target: usize, event: Trb, block: bool) {
        let target = if target < self.intrs.len() { target } else { 0 };
        if self.intrs[target].post(&self.mem, event) == Posted::Dropped || block {
            return;
        }
        self.raise(target);
    }

    /// MFINDEX unwrapped: microframes since the controller was created.
    pub(super) fn mf_now(&self) -> u64 {
        match self.clock {
            Clock::Real(start) => (start.elapsed().as_nanos() / 125_000) as u64,
            Clock::Manual(mf) => mf,
        }
    }

    /// MFINDEX restarts at 0 and stands still until `advance_clock` moves
    /// it (unit tests and fuzzing of isochronous scheduling).
    pub fn use_manual_clock(&mut self) {
        self.clock = Clock::Manual(0);
    }

    /// Moves a manual clock on by `microframes`.
    pub fn advance_clock(&mut self, microframes: u64) {
        if let Clock::Manual(mf) = &mut self.clock {
            *mf = mf.saturating_add(microframes);
        }
    }

    fn raise(&mut self, target: usize) {
        let intr = &mut self.intrs[target];
        let busy = intr.erdp & ERDP_EHB != 0;
        intr.erdp |= ERDP_EHB;
        intr.iman |= IMAN_IP;
        self.usbsts |= USBSTS_EINT;
        if !busy
            && intr.iman & IMAN_IE != 0
            && self.usbcmd & USBCMD_INTE != 0
            && self.irq.messages_enabled()
        {
            self.irq.notify(target as u16);
            self.intrs[target].iman &= !IMAN_IP;
        }
        self.update_intx();
    }

    fn update_intx(&self) {
        let i = &self.intrs[0];
        let level =
            i.iman & IMAN_IP != 0 && i.iman & IMAN_IE != 0 && self.usbcmd & USBCMD_INTE != 0;
        self.irq.set_intx(level);
    }

    fn capability(&self, offset: u64) -> u32 {
        match offset {
            0x00 => 0x0100_0000 | OP_BASE as u32, // HCIVERSION 1.0, CAPLENGTH
            0x04 => (PORTS as u32) << 24 | (MAX_INTRS as u32) << 8 | MAX_SLOTS as u32,
            0x08 => 4 << 4 | 0xf, // ERST Max 2^4, IST 15 (frames), no scratchpads
            0x0c => 0,
            0x10 => (0x20 / 4) << 16 | 1, // xECP at 0x20, AC64
            0x14 => DOORBELL_BASE as u32,
            0x18 => RUNTIME_BASE as u32,
            0x1c => 0,
            // Supported Protocol: USB 2.0 ports 1-4, next capability 4 dwords on.
            0x20 => 0x0200_0402,
            0x24 | 0x34 => 0x2042_5355, // "USB "
            0x28 => (USB2_PORTS as u32) << 8 | 1,
            // USB 3.0 ports 5-8, the last capability.
            0x30 => 0x0300_0002,
            0x38 => (USB3_PORTS as u32) << 8 | (USB2_PORTS as u32 + 1),
            _ => 0,
        }
    }

    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match data.len() {
            8 => u64::from(self.read_dword(offset)) | u64::from(self.read_dword(offset + 4)) << 32,
            1 | 2 | 4 => u64::from(self.read_dword(offset & !3) >> ((offset & 3) * 8)),
            _ => u64::MAX,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(8);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn read_dword(&mut self, offset: u64) -> u32 {
        match offset {
            0..OP_BASE => self.capability(offset),
            PORT_BASE..RUNTIME_BASE => {
                let rel = offset - PORT_BASE;
                match (self.ports.get((rel / 16) as usize), rel % 16) {
                    (Some(p), 0) => p.portsc,
                    _ => 0,
                }
            }
            OP_BASE..PORT_BASE => match offset - OP_BASE {
                0x00 => self.usbcmd,
                0x04 => self.usbsts,
                0x08 => 1, // 4 KiB pages
                0x14 => self.dnctrl,
                // CRCR reads 0 except CRR.
                0x18 => u32::from(self.cmd_running) * CRCR_CRR as u32,
                0x30 => self.dcbaap as u32,
                0x34 => (self.dcbaap >> 32) as u32,
                0x38 => self.config,
                _ => 0,
            },
            RUNTIME_BASE..DOORBELL_BASE => {
                let rel = offset - RUNTIME_BASE;
                if rel == 0 {
                    // MFINDEX: 125 µs microframes, 14 bits.
                    return (self.mf_now() & 0x3fff) as u32;
                }
                let Some(intr) = rel
                    .checked_sub(0x20)
                    .and_then(|r| self.intrs.get((r / 32) as usize))
                else {
                    return 0;
                };
                match rel % 32 {
                    0x00 => intr.iman,
                    0x04 => intr.imod,
                    0x08 => intr.erstsz,
                    0x10 => intr.erstba as u32,
                    0x14 => (intr.erstba >> 32) as u32,
                    0x18 => intr.erdp as u32,
                    0x1c => (intr.erdp >> 32) as u32,
                    _ => 0,
                }
            }
            _ => 0, // doorbells read 0
        }
    }

    /// A guest write. True: work is pending for the worker (`process`).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> bool {
        match data.len() {
            4 => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.write_dword(offset, v)
            }
            8 => {
                let lo = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                let hi = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
                let a = self.write_dword(offset, lo);
                self.write_dword(offset + 4, hi) || a
            }
            n => {
                debug!(offset, n, "xhci: sub-dword register write ignored");
                false
            }
        }
    }

    fn write_dword(&mut self, offset: u64, v: u32) -> bool {
        match offset {
            OP_BASE..PORT_BASE => self.write_operational(offset - OP_BASE, v),
            PORT_BASE..RUNTIME_BASE => {
                let rel = offset - PORT_BASE;
                let index = (rel / 16) as usize;
                if rel.is_multiple_of(16) && index < self.ports.len() && self.ports[index].write(v)
                {
                    self.port_changed(index);
                }
                false
            }
            RUNTIME_BASE..DOORBELL_BASE => {
                self.write_runtime(offset - RUNTIME_BASE, v);
                false
            }
            DOORBELL_BASE..MSIX_TABLE => self.doorbell(((offset - DOORBELL_BASE) / 4) as usize, v),
            _ => false,
        }
    }

    fn write_operational(&mut self, reg: u64, v: u32) -> bool {
        match reg {
            0x00 => {
                if v & USBCMD_HCRST != 0 {
                    self.reset();
                    return false;
                }
                let was_running = self.running();
                self.usbcmd = v & 0x3f0d; // RS INTE HSEE EWE... (HCRST, LHCRST self-clear)
                if self.running() {
                    self.usbsts &= !USBSTS_HCH;
                } else {
                    self.usbsts |= USBSTS_HCH;
                    self.cmd_running = false;
                }
                self.update_intx();
                // Devices attached while halted are announced once running.
                if self.running() && !was_running {
                    for i in 0..self.ports.len() {
                        if self.ports[i].portsc & super::port::CHANGE_BITS != 0 {
                            self.port_changed(i);
                        }
                    }
                }
            }
            0x04 => {
                self.usbsts &= !(v & USBSTS_RW1C);
                self.update_intx();
            }
            0x14 => self.dnctrl = v & 0xffff,
            0x18 => {
                self.crcr_low = v;
                let v64 = u64::from(v);
                if self.cmd_running {
                    if v64 & (CRCR_CS | CRCR_CA) != 0 {
                        self.stop_command_ring(v64 & CRCR_CA != 0);
                    }
                } else {
                    self.load_crcr();
                }
            }
            0x1c => {
                self.crcr_high = v;
                if !self.cmd_running {
                    self.load_crcr();
                }
            }
            0x30 => self.dcbaap = (self.dcbaap & !0xffff_ffff) | u64::from(v & !0x3f),
            0x34 => self.dcbaap = (self.dcbaap & 0xffff_ffff) | u64::from(v) << 32,
            0x38 => self.config = v & 0x3ff,
            _ => {}
        }
        false
    }

    fn load_crcr(&mut self) {
        let v = u64::from(self.crcr_low) | u64::from(self.crcr_high) << 32;
        self.cmd_ring = Ring::new(v & !0x3f, v & CRCR_RCS != 0);
    }

    fn stop_command_ring(&mut self, abort: bool) {
        self.cmd_running = false;
        debug!(abort, "xhci: command ring stopped");
        let event = Trb {
            parameter: self.cmd_ring.dequeue,
            status: u32::from(cc::COMMAND_RING_STOPPED) << 24,
            control: trb_type::COMMAND_COMPLETION << 10,
        };
        self.post_event(0, event);
    }

    fn write_runtime(&mut self, rel: u64, v: u32) {
        let Some(index) = rel
            .checked_sub(0x20)
            .map(|r| (r / 32) as usize)
            .filter(|&i| i < MAX_INTRS)
        else {
            return;
        };
        let intr = &mut self.intrs[index];
        match rel % 32 {
            0x00 => {
                if v & IMAN_IP != 0 {
                    intr.iman &= !IMAN_IP;
                }
                intr.iman = (intr.iman & !IMAN_IE) | (v & IMAN_IE);
                self.update_intx();
            }
            0x04 => intr.imod = v,
            0x08 => intr.erstsz = v & 0xffff,
            0x10 => intr.erstba = (intr.erstba & !0xffff_ffff) | u64::from(v & !0x3f),
            0x14 => {
                intr.erstba = (intr.erstba & 0xffff_ffff) | u64::from(v) << 32;
                intr.load_segment_table(&self.mem);
            }
            0x18 => {
                let value = (intr.erdp & !0xffff_ffff) | u64::from(v);
                if intr.write_erdp(value) && intr.iman & IMAN_IE != 0 {
                    // Events the guest has not seen yet: interrupt again.
                    self.raise(index);
                }
            }
            0x1c => {
                let keep = intr.erdp & 0xffff_ffff;
                intr.erdp = keep | u64::from(v) << 32;
            }
            _ => {}
        }
    }

    fn doorbell(&mut self, index: usize, v: u32) -> bool {
        if !self.running() {
            return false;
        }
        if index == 0 {
            if v & 0xff == 0 {
                self.cmd_running = true;
                self.cmd_pending = true;
                return true;
            }
            return false;
        }
        let target = v & 0xff;
        match self.ep_pending.get_mut(index - 1) {
            Some(bits) if (1..=31).contains(&target) => {
                *bits |= 1 << target;
                true
            }
            _ => {
                warn!(
                    index,
                    target, "xhci: doorbell for an invalid slot or endpoint"
                );
                false
            }
        }
    }

    /// The worker's step: commands, rung endpoints, device completions.
    pub fn process(&mut self) {
        if !self.running() {
            return;
        }
        if std::mem::take(&mut self.cmd_pending) {
            self.run_commands();
        }
        self.collect_completions();
        for slot_index in 0..MAX_SLOTS {
            let mut bits = std::mem::take(&mut self.ep_pending[slot_index]);
            while bits != 0 {
                let dci = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                self.kick_endpoint(slot_index as u8 + 1, dci);
            }
        }
        self.serve_isoch();
    }

    /// Only the devices' completions (see `XhciHandle::collect`).
    pub fn collect(&mut self) {
        if self.running() {
            self.collect_completions();
        }
    }

    /// The eventfd devices write when they have completions (the worker's kick).
    pub fn set_waker(&mut self, waker: Arc<EventFd>) {
        for port in &mut self.ports {
            if let Some(dev) = port.device.as_mut() {
                dev.set_waker(waker.clone());
            }
        }
        self.waker = Some(waker);
    }

    /// Whether any endpoint still has work (the worker runs `process` again).
    pub fn has_pending(&self) -> bool {
        self.cmd_pending || self.ep_pending.iter().any(|&b| b != 0)
    }
}
