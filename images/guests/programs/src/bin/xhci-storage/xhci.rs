//! The controller side shared by the guest's modes: rings, the event ring,
//! commands, root ports, and one device's slot with its EP0 control
//! transfers and Normal-TRB transfers, as xhci-hcd does them.

use alloc::vec::Vec;
use core::time::Duration;

use guest_rt::mem::Dma;
use guest_rt::mmio::Mmio;
use guest_rt::{check, fail, println, time, OrFail};

pub const WAIT: Duration = Duration::from_secs(10);
/// How long to wait for the test to attach the device.
const ATTACH_WAIT: Duration = Duration::from_secs(120);
/// TRBs per ring (one page), the last a Link TRB back to the start.
const RING_TRBS: u64 = 256;

// TRB types and fields.
pub const TRB_NORMAL: u32 = 1;
const TRB_SETUP: u32 = 2;
const TRB_DATA: u32 = 3;
const TRB_STATUS: u32 = 4;
const TRB_LINK: u32 = 6;
const TRB_ENABLE_SLOT: u32 = 9;
const TRB_ADDRESS_DEVICE: u32 = 11;
const TRB_CONFIGURE_EP: u32 = 12;
pub const TRB_TRANSFER_EVENT: u32 = 32;
const TRB_COMMAND_COMPLETION: u32 = 33;
pub const TRB_PORT_STATUS_CHANGE: u32 = 34;
const CYCLE: u32 = 1;
const TOGGLE_CYCLE: u32 = 1 << 1;
pub const ISP: u32 = 1 << 2;
pub const IOC: u32 = 1 << 5;
const IDT: u32 = 1 << 6;
const DIR_IN: u32 = 1 << 16;
pub const CC_SUCCESS: u32 = 1;
pub const CC_SHORT_PACKET: u32 = 13;

// Operational registers.
const USBCMD: u64 = 0x00;
const USBSTS: u64 = 0x04;
const CRCR: u64 = 0x18;
const DCBAAP: u64 = 0x30;
const CONFIG: u64 = 0x38;
const CMD_RUN: u32 = 1;
const CMD_HCRST: u32 = 1 << 1;
const STS_HCH: u32 = 1;
const STS_CNR: u32 = 1 << 11;

// PORTSC.
const PORT_CCS: u32 = 1;
const PORT_PED: u32 = 1 << 1;
const PORT_PR: u32 = 1 << 4;
const PORT_PRC: u32 = 1 << 21;
/// Read-only and read/write-preserve bits (Linux's XHCI_PORT_RO | XHCI_PORT_RWS):
/// writing back only these changes nothing.
const PORT_NEUTRAL: u32 =
    1 | (1 << 3) | (0xf << 10) | (1 << 30) | (0xf << 5) | (1 << 9) | (3 << 14) | (7 << 25);
/// The change bits (RW1C), CSC through CEC.
const PORT_CHANGES: u32 = 0x7f << 17;

/// A producer ring (command or transfer): TRBs with a Link at the end.
pub struct Ring {
    pub buf: Dma,
    index: u64,
    cycle: u32,
}

impl Ring {
    pub fn new() -> Ring {
        let buf = Dma::new(RING_TRBS * 16);
        let link = (RING_TRBS - 1) * 16;
        buf.write::<u64>(link, buf.addr());
        buf.write::<u32>(link + 8, 0);
        Ring {
            buf,
            index: 0,
            cycle: 1,
        }
    }

    /// Queue a TRB; returns its address.
    pub fn push(&mut self, parameter: u64, status: u32, control: u32) -> u64 {
        let at = self.index * 16;
        self.buf.write::<u64>(at, parameter);
        self.buf.write::<u32>(at + 8, status);
        // The cycle bit last: it hands the TRB to the controller.
        self.buf
            .write::<u32>(at + 12, (control & !CYCLE) | self.cycle);
        let addr = self.buf.addr() + at;
        self.index += 1;
        if self.index == RING_TRBS - 1 {
            let link = (RING_TRBS - 1) * 16;
            self.buf
                .write::<u32>(link + 12, TRB_LINK << 10 | TOGGLE_CYCLE | self.cycle);
            self.index = 0;
            self.cycle ^= 1;
        }
        addr
    }
}

#[derive(Clone, Copy)]
pub struct Event {
    pub parameter: u64,
    pub status: u32,
    pub control: u32,
}

impl Event {
    pub fn kind(&self) -> u32 {
        (self.control >> 10) & 0x3f
    }
    pub fn code(&self) -> u32 {
        self.status >> 24
    }
    pub fn slot(&self) -> u8 {
        (self.control >> 24) as u8
    }
}

pub struct Xhci {
    op: Mmio,
    ports: Mmio,
    interrupter: Mmio,
    doorbells: Mmio,
    pub context_size: u64,
    commands: Ring,
    events: Dma,
    event_index: u64,
    event_cycle: u32,
    pub dcbaa: Dma,
}

impl Xhci {
    pub fn init(regs: Mmio) -> Xhci {
        let caplength = u64::from(regs.read8(0));
        let hcsparams1 = regs.read32(0x04);
        let hcsparams2 = regs.read32(0x08);
        let hccparams1 = regs.read32(0x10);
        let dboff = u64::from(regs.read32(0x14) & !3);
        let rtsoff = u64::from(regs.read32(0x18) & !0x1f);
        let max_slots = hcsparams1 & 0xff;
        let max_ports = u64::from(hcsparams1 >> 24);
        let scratchpads = (hcsparams2 >> 27) | ((hcsparams2 >> 21) & 0x1f) << 5;
        check!(
            scratchpads == 0,
            "scratchpad",
            "{scratchpads} buffers wanted"
        );
        check!(
            max_slots > 0 && max_ports > 0,
            "hcsparams",
            "{hcsparams1:#x}"
        );
        let op = regs.slice(caplength, 0x400 + max_ports * 0x10);
        let xhci = Xhci {
            ports: op.slice(0x400, max_ports * 0x10),
            op,
            interrupter: regs.slice(rtsoff + 0x20, 0x20),
            doorbells: regs.slice(dboff, 256 * 4),
            context_size: if hccparams1 & (1 << 2) != 0 { 64 } else { 32 },
            commands: Ring::new(),
            events: Dma::new(RING_TRBS * 16),
            event_index: 0,
            event_cycle: 1,
            dcbaa: Dma::new(256 * 8),
        };
        // xhci_halt, xhci_reset.
        xhci.op.write32(USBCMD, xhci.op.read32(USBCMD) & !CMD_RUN);
        let halted = time::wait_until(WAIT, || xhci.op.read32(USBSTS) & STS_HCH != 0);
        check!(halted, "halt", "usbsts {:#x}", xhci.op.read32(USBSTS));
        xhci.op.write32(USBCMD, CMD_HCRST);
        let reset = time::wait_until(WAIT, || {
            xhci.op.read32(USBCMD) & CMD_HCRST == 0 && xhci.op.read32(USBSTS) & STS_CNR == 0
        });
        check!(reset, "hcrst", "usbsts {:#x}", xhci.op.read32(USBSTS));
        // xhci_mem_init.
        xhci.op.write32(CONFIG, max_slots.min(16));
        xhci.op.write64(DCBAAP, xhci.dcbaa.addr());
        xhci.op.write64(CRCR, xhci.commands.buf.addr() | 1);
        let erst = Dma::new(64);
        erst.write::<u64>(0, xhci.events.addr());
        erst.write::<u32>(8, RING_TRBS as u32);
        xhci.interrupter.write32(0x08, 1); // ERSTSZ
        xhci.interrupter.write64(0x18, xhci.events.addr()); // ERDP
                                                            // ERSTBA (Dma memory is never freed, so the table outlives `erst`).
        xhci.interrupter.write64(0x10, erst.addr());
        // xhci_run (polling: INTE and IMAN.IE stay clear).
        xhci.op.write32(USBCMD, CMD_RUN);
        let running = time::wait_until(WAIT, || xhci.op.read32(USBSTS) & STS_HCH == 0);
        check!(running, "run", "usbsts {:#x}", xhci.op.read32(USBSTS));
        println!(
            "xhci caplength={caplength:#x} slots={max_slots} ports={max_ports} context={}",
            xhci.context_size
        );
        xhci
    }

    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = time::Deadline::after(timeout);
        loop {
            let at = self.event_index * 16;
            let control = self.events.read::<u32>(at + 12);
            if control & CYCLE == self.event_cycle {
                let event = Event {
                    parameter: self.events.read::<u64>(at),
                    status: self.events.read::<u32>(at + 8),
                    control,
                };
                self.event_index += 1;
                if self.event_index == RING_TRBS {
                    self.event_index = 0;
                    self.event_cycle ^= 1;
                }
                // Advance ERDP and clear EHB (RW1C, bit 3).
                let erdp = self.events.addr() + self.event_index * 16;
                self.interrupter.write64(0x18, erdp | 1 << 3);
                return Some(event);
            }
            if deadline.passed() {
                return None;
            }
        }
    }

    /// The next event of `kind` (others, such as port status changes, are
    /// skipped), or a failure at `step`.
    pub fn wait_event(&mut self, kind: u32, step: &str) -> Event {
        loop {
            let e = self.next_event(WAIT).or_fail(step);
            if e.kind() == kind {
                return e;
            }
        }
    }

    pub fn command(&mut self, parameter: u64, control: u32, step: &str) -> Event {
        let trb = self.commands.push(parameter, 0, control);
        self.doorbells.write32(0, 0);
        let e = self.wait_event(TRB_COMMAND_COMPLETION, step);
        check!(
            e.parameter == trb,
            step,
            "completion for {:#x}",
            e.parameter
        );
        check!(e.code() == CC_SUCCESS, step, "completion code {}", e.code());
        e
    }

    /// After a Port Status Change event for `port` (1-based): clears the
    /// port's change bits (so the next change raises a new event, as the hub
    /// driver's clear_port_feature does) and returns PORTSC.
    pub fn acknowledge_port(&self, port: u8) -> u32 {
        let count = self.ports.len() / 0x10;
        let i = u64::from(port.saturating_sub(1));
        if port == 0 || i >= count {
            return 0;
        }
        let portsc = self.ports.read32(i * 0x10);
        self.ports
            .write32(i * 0x10, (portsc & PORT_NEUTRAL) | (portsc & PORT_CHANGES));
        portsc
    }

    /// Waits for a connected port, resets it; returns (port number, speed).
    pub fn connected_port(&mut self) -> (u8, u32) {
        let count = self.ports.len() / 0x10;
        let mut found = None;
        let attached = time::wait_until(ATTACH_WAIT, || {
            found = (0..count).find(|&i| self.ports.read32(i * 0x10) & PORT_CCS != 0);
            found.is_some()
        });
        check!(attached, "attach", "no device on any of {count} ports");
        let i = found.or_fail("attach");
        let portsc = self.ports.read32(i * 0x10);
        // USB 3 ports enable on their own; USB 2 ones need a reset.
        if portsc & PORT_PED == 0 {
            self.ports
                .write32(i * 0x10, (portsc & PORT_NEUTRAL) | PORT_PR);
            let done = time::wait_until(WAIT, || {
                let v = self.ports.read32(i * 0x10);
                v & PORT_PRC != 0 && v & PORT_PR == 0
            });
            check!(
                done,
                "port-reset",
                "portsc {:#x}",
                self.ports.read32(i * 0x10)
            );
        }
        let portsc = self.ports.read32(i * 0x10);
        check!(portsc & PORT_PED != 0, "port-enable", "portsc {portsc:#x}");
        self.ports
            .write32(i * 0x10, (portsc & PORT_NEUTRAL) | (portsc & PORT_CHANGES));
        (i as u8 + 1, (portsc >> 10) & 0xf)
    }
}

/// Device context index of an endpoint address.
pub fn dci(endpoint: u8) -> u8 {
    (endpoint & 0x0f) * 2 + u8::from(endpoint & 0x80 != 0)
}

/// An endpoint to add with Configure Endpoint.
pub struct EndpointConfig {
    pub address: u8,
    /// xHCI endpoint type: 1 isoch OUT, 2 bulk OUT, 5 isoch IN, 6 bulk IN,
    /// 7 interrupt IN.
    pub ep_type: u32,
    pub max_packet: u32,
    /// The Interval field (2^n × 125 µs); 0 for bulk.
    pub interval: u32,
    pub average_trb: u32,
    pub ring: u64,
}

/// One addressed device: its slot, contexts, EP0 ring and a data buffer.
pub struct Device {
    pub slot: u8,
    pub port: u8,
    pub speed: u32,
    input: Dma,
    output: Dma,
    ep0: Ring,
    pub buf: Dma,
}

impl Device {
    /// `xhci_alloc_dev` + `xhci_address_device`: Enable Slot, then Address
    /// Device with the slot and EP0 contexts.
    pub fn address(xhci: &mut Xhci, port: u8, speed: u32) -> Device {
        let e = xhci.command(0, TRB_ENABLE_SLOT << 10, "enable-slot");
        let slot = e.slot();
        check!(slot != 0, "enable-slot", "slot 0");
        let output = Dma::new(32 * xhci.context_size);
        xhci.dcbaa.write::<u64>(u64::from(slot) * 8, output.addr());
        let dev = Device {
            slot,
            port,
            speed,
            input: Dma::new(33 * xhci.context_size),
            output,
            ep0: Ring::new(),
            buf: Dma::new(64 * 1024),
        };
        // EP0's max packet from the speed (8 low/full until the descriptor
        // says more, 64 high, 512 super).
        let mps: u32 = match speed {
            3 => 64,
            4.. => 512,
            _ => 8,
        };
        dev.ctx(xhci, 0, 1, 0b11);
        dev.ctx(xhci, 1, 0, 1 << 27 | speed << 20);
        dev.ctx(xhci, 1, 1, u32::from(port) << 16);
        dev.ctx(xhci, 2, 1, mps << 16 | 4 << 3 | 3 << 1);
        let ep0 = dev.ep0.buf.addr();
        dev.ctx(xhci, 2, 2, ep0 as u32 | 1);
        dev.ctx(xhci, 2, 3, (ep0 >> 32) as u32);
        dev.ctx(xhci, 2, 4, 8);
        xhci.command(
            dev.input.addr(),
            TRB_ADDRESS_DEVICE << 10 | u32::from(slot) << 24,
            "address",
        );
        let state = dev.slot_state();
        check!(state == 2, "address", "slot state {state}");
        dev
    }

    fn slot_state(&self) -> u32 {
        self.output.read::<u32>(12) >> 27
    }

    /// Context `index` (0 input control, 1 slot, 2 EP0, ...) of the input context.
    fn ctx(&self, xhci: &Xhci, index: u64, dword: u64, v: u32) {
        self.input
            .write::<u32>(index * xhci.context_size + dword * 4, v);
    }

    pub fn doorbell(&self, xhci: &Xhci, target: u8) {
        xhci.doorbells
            .write32(u64::from(self.slot) * 4, u32::from(target));
    }

    /// Configure Endpoint (`usb_hcd_alloc_bandwidth`) adding `endpoints`.
    pub fn configure(&self, xhci: &mut Xhci, endpoints: &[EndpointConfig]) {
        for i in 0..33 * xhci.context_size / 4 {
            self.input.write::<u32>(i * 4, 0);
        }
        let add = endpoints.iter().fold(1, |m, e| m | 1 << dci(e.address));
        let last = endpoints.iter().map(|e| dci(e.address)).max().unwrap_or(1);
        self.ctx(xhci, 0, 1, add);
        self.ctx(xhci, 1, 0, u32::from(last) << 27 | self.speed << 20);
        self.ctx(xhci, 1, 1, u32::from(self.port) << 16);
        for e in endpoints {
            let index = u64::from(dci(e.address)) + 1;
            self.ctx(xhci, index, 0, e.interval << 16);
            // Error Count 3, but 0 for isochronous endpoints (no retries).
            let cerr = if e.ep_type == 1 || e.ep_type == 5 {
                0
            } else {
                3
            };
            self.ctx(
                xhci,
                index,
                1,
                e.max_packet << 16 | e.ep_type << 3 | cerr << 1,
            );
            self.ctx(xhci, index, 2, e.ring as u32 | 1);
            self.ctx(xhci, index, 3, (e.ring >> 32) as u32);
            // Max ESIT payload (periodic endpoints) and average TRB length.
            let esit = if e.interval != 0 { e.max_packet } else { 0 };
            self.ctx(xhci, index, 4, esit << 16 | e.average_trb);
        }
        xhci.command(
            self.input.addr(),
            TRB_CONFIGURE_EP << 10 | u32::from(self.slot) << 24,
            "configure-endpoint",
        );
        let state = self.slot_state();
        check!(state == 3, "configure-endpoint", "slot state {state}");
    }

    /// A control transfer on EP0: Setup (IDT), Data (ISP), Status (IOC).
    /// Returns the bytes the device sent for IN requests; OUT data is taken
    /// from the start of `buf`.
    pub fn control(&mut self, xhci: &mut Xhci, setup: [u8; 8], step: &str) -> Vec<u8> {
        let length = u32::from(u16::from_le_bytes([setup[6], setup[7]]));
        let is_in = setup[0] & 0x80 != 0;
        let trt = match (length, is_in) {
            (0, _) => 0,
            (_, false) => 2,
            (_, true) => 3,
        };
        self.ep0.push(
            u64::from_le_bytes(setup),
            8,
            TRB_SETUP << 10 | IDT | trt << 16,
        );
        if length > 0 {
            let dir = if is_in { DIR_IN } else { 0 };
            self.ep0
                .push(self.buf.addr(), length, TRB_DATA << 10 | ISP | dir);
        }
        // The status stage goes the other way (IN when there is no data).
        let dir = if length > 0 && is_in { 0 } else { DIR_IN };
        let status = self.ep0.push(0, 0, TRB_STATUS << 10 | IOC | dir);
        self.doorbell(xhci, 1);
        let mut residue = 0;
        loop {
            let e = xhci.wait_event(TRB_TRANSFER_EVENT, step);
            check!(e.slot() == self.slot, step, "event for slot {}", e.slot());
            match e.code() {
                CC_SHORT_PACKET => residue = e.status & 0xff_ffff,
                CC_SUCCESS if e.parameter == status => break,
                CC_SUCCESS => {}
                code => fail!(step, "completion code {code}"),
            }
        }
        if !is_in {
            return Vec::new();
        }
        let got = length.saturating_sub(residue) as usize;
        let mut data = alloc::vec![0u8; got];
        self.buf.copy_to(0, &mut data);
        data
    }

    /// One TD of a Normal TRB (ISP, IOC) from/to `buf`'s start on
    /// `endpoint`'s ring; returns the bytes moved.
    pub fn transfer(
        &self,
        xhci: &mut Xhci,
        endpoint: u8,
        ring: &mut Ring,
        length: u32,
        step: &str,
    ) -> u32 {
        let trb = ring.push(self.buf.addr(), length, TRB_NORMAL << 10 | ISP | IOC);
        self.doorbell(xhci, dci(endpoint));
        let e = xhci.wait_event(TRB_TRANSFER_EVENT, step);
        check!(e.parameter == trb, step, "event for {:#x}", e.parameter);
        match e.code() {
            CC_SUCCESS => length,
            CC_SHORT_PACKET => length.saturating_sub(e.status & 0xff_ffff),
            code => fail!(step, "completion code {code}"),
        }
    }
}

/// The standard requests' setup packets.
pub fn get_descriptor(kind: u8, index: u8, length: u16) -> [u8; 8] {
    let [l0, l1] = length.to_le_bytes();
    [0x80, 6, index, kind, 0, 0, l0, l1]
}

/// The descriptors of a configuration, one slice each.
pub fn descriptors(config: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    core::iter::from_fn(move || {
        if at + 2 > config.len() || config[at] < 2 {
            return None;
        }
        let d = &config[at..(at + usize::from(config[at])).min(config.len())];
        at += usize::from(config[at]);
        Some(d)
    })
}
