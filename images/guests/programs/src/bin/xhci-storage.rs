//! xhci-storage: a USB stick behind an xHCI controller (qemu-xhci, 1b36:000d),
//! driven the way Linux's xhci-hcd, the USB core and usb-storage do, by
//! polling the event ring (no interrupts; everything runs at CPL 3).
//!
//! 1. `xhci_halt`/`xhci_reset`/`xhci_mem_init`/`xhci_run`: halt, HCRST, wait
//!    for CNR to clear, MaxSlotsEn, DCBAA, command ring (RCS 1), one event
//!    ring segment on interrupter 0, RS.
//! 2. Root hub: wait for a connected port (the test attaches the device over
//!    usbredir after boot), port reset (PR until PRC, PED), change bits
//!    cleared the way `xhci_port_state_to_neutral` keeps the others.
//! 3. `xhci_alloc_dev`/`xhci_address_device`: Enable Slot, Address Device
//!    with slot and EP0 contexts; `usb_new_device`: GET_DESCRIPTOR device,
//!    configuration (9 bytes, then all), Configure Endpoint for the bulk
//!    endpoints (`usb_hcd_alloc_bandwidth`), then SET_CONFIGURATION.
//! 4. usb-storage (`usb_stor_Bulk_max_lun`, `usb_stor_Bulk_transport`):
//!    GET_MAX_LUN, then CBW / data / CSW for INQUIRY, TEST UNIT READY, READ
//!    CAPACITY(10), READ(10) of known sectors, a READ(10) past the end and
//!    the REQUEST SENSE that explains it.
//!
//! Prints `storage ...` lines (vendor, product, capacity, an FNV-1a 32 of
//! the sectors read, the sense) and `SPICEBOX-XHCI-STORAGE-OK`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use guest_rt::mem::Dma;
use guest_rt::mmio::Mmio;
use guest_rt::{check, fail, pci, println, time, OrFail};

guest_rt::guest!("XHCI-STORAGE", main);

const WAIT: Duration = Duration::from_secs(10);
/// How long to wait for the test to attach the device.
const ATTACH_WAIT: Duration = Duration::from_secs(120);
/// TRBs per ring (one page), the last a Link TRB back to the start.
const RING_TRBS: u64 = 256;

// TRB types and fields.
const TRB_NORMAL: u32 = 1;
const TRB_SETUP: u32 = 2;
const TRB_DATA: u32 = 3;
const TRB_STATUS: u32 = 4;
const TRB_LINK: u32 = 6;
const TRB_ENABLE_SLOT: u32 = 9;
const TRB_ADDRESS_DEVICE: u32 = 11;
const TRB_CONFIGURE_EP: u32 = 12;
const TRB_TRANSFER_EVENT: u32 = 32;
const TRB_COMMAND_COMPLETION: u32 = 33;
const CYCLE: u32 = 1;
const TOGGLE_CYCLE: u32 = 1 << 1;
const ISP: u32 = 1 << 2;
const IOC: u32 = 1 << 5;
const IDT: u32 = 1 << 6;
const DIR_IN: u32 = 1 << 16;
const CC_SUCCESS: u32 = 1;
const CC_SHORT_PACKET: u32 = 13;

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

const SECTOR: usize = 512;
/// Sectors read with one READ(10): LBA 0 onward.
const READ_SECTORS: u16 = 16;
/// A second READ(10), of one sector further in.
const FAR_LBA: u32 = 40;

/// A producer ring (command or transfer): TRBs with a Link at the end.
struct Ring {
    buf: Dma,
    index: u64,
    cycle: u32,
}

impl Ring {
    fn new() -> Ring {
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
    fn push(&mut self, parameter: u64, status: u32, control: u32) -> u64 {
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
struct Event {
    parameter: u64,
    status: u32,
    control: u32,
}

impl Event {
    fn kind(&self) -> u32 {
        (self.control >> 10) & 0x3f
    }
    fn code(&self) -> u32 {
        self.status >> 24
    }
    fn slot(&self) -> u8 {
        (self.control >> 24) as u8
    }
}

struct Xhci {
    op: Mmio,
    ports: Mmio,
    interrupter: Mmio,
    doorbells: Mmio,
    context_size: u64,
    commands: Ring,
    events: Dma,
    event_index: u64,
    event_cycle: u32,
    dcbaa: Dma,
}

impl Xhci {
    fn init(regs: Mmio) -> Xhci {
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

    fn next_event(&mut self, timeout: Duration) -> Option<Event> {
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
    fn wait_event(&mut self, kind: u32, step: &str) -> Event {
        loop {
            let e = self.next_event(WAIT).or_fail(step);
            if e.kind() == kind {
                return e;
            }
        }
    }

    fn command(&mut self, parameter: u64, control: u32, step: &str) -> Event {
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

    /// Waits for a connected port, resets it; returns (port number, speed).
    fn connected_port(&mut self) -> (u8, u32) {
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

/// One device: its slot, contexts and rings.
struct Device {
    slot: u8,
    input: Dma,
    ep0: Ring,
    bulk_in: (u8, Ring),
    bulk_out: (u8, Ring),
    buf: Dma,
}

/// Device context index of an endpoint address.
fn dci(endpoint: u8) -> u8 {
    (endpoint & 0x0f) * 2 + u8::from(endpoint & 0x80 != 0)
}

impl Device {
    /// Context `index` (0 input control, 1 slot, 2 EP0, ...) of the input context.
    fn ctx(&self, xhci: &Xhci, index: u64, dword: u64, v: u32) {
        self.input
            .write::<u32>(index * xhci.context_size + dword * 4, v);
    }

    fn doorbell(&self, xhci: &Xhci, target: u8) {
        xhci.doorbells
            .write32(u64::from(self.slot) * 4, u32::from(target));
    }

    /// A control transfer on EP0: Setup (IDT), Data (ISP), Status (IOC).
    /// Returns the bytes the device sent for IN requests.
    fn control(&mut self, xhci: &mut Xhci, setup: [u8; 8], step: &str) -> Vec<u8> {
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
        let got = length.saturating_sub(residue) as usize;
        let mut data = alloc::vec![0u8; got];
        self.buf.copy_to(0, &mut data);
        data
    }

    /// One bulk TD (a Normal TRB with ISP and IOC); returns the bytes moved.
    fn bulk(&mut self, xhci: &mut Xhci, is_in: bool, length: u32, step: &str) -> u32 {
        let (endpoint, ring) = if is_in {
            (self.bulk_in.0, &mut self.bulk_in.1)
        } else {
            (self.bulk_out.0, &mut self.bulk_out.1)
        };
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

    /// Bulk-only transport: CBW, data in (if `length` > 0), CSW. Returns
    /// the data and the CSW status.
    fn scsi(
        &mut self,
        xhci: &mut Xhci,
        tag: u32,
        cdb: &[u8],
        length: u32,
        step: &str,
    ) -> (Vec<u8>, u8) {
        let mut cbw = [0u8; 31];
        cbw[..4].copy_from_slice(b"USBC");
        cbw[4..8].copy_from_slice(&tag.to_le_bytes());
        cbw[8..12].copy_from_slice(&length.to_le_bytes());
        cbw[12] = 0x80;
        cbw[14] = cdb.len() as u8;
        cbw[15..15 + cdb.len()].copy_from_slice(cdb);
        self.buf.copy_from(0, &cbw);
        let sent = self.bulk(xhci, false, 31, step);
        check!(sent == 31, step, "CBW: {sent} bytes sent");
        let mut data = Vec::new();
        if length > 0 {
            let got = self.bulk(xhci, true, length, step) as usize;
            data.resize(got, 0);
            self.buf.copy_to(0, &mut data);
        }
        let got = self.bulk(xhci, true, 13, step);
        let mut csw = [0u8; 13];
        self.buf.copy_to(0, &mut csw);
        check!(got == 13 && &csw[..4] == b"USBS", step, "CSW {csw:02x?}");
        let csw_tag = u32::from_le_bytes([csw[4], csw[5], csw[6], csw[7]]);
        check!(csw_tag == tag, step, "CSW tag {csw_tag} for {tag}");
        (data, csw[12])
    }
}

fn text(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '.'
            }
        })
        .collect()
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn main() {
    let f = pci::find(0x1b36, 0x000d).or_fail("pci-scan");
    f.enable();
    let bar = f.bars().find(|b| !b.is_io()).or_fail("bar");
    if bar.addr >= 1 << 32 {
        guest_rt::mem::map(bar.addr, bar.size);
    }
    let mut xhci = Xhci::init(bar.mmio());

    let (port, speed) = xhci.connected_port();
    println!("xhci port={port} speed={speed}");
    let e = xhci.command(0, TRB_ENABLE_SLOT << 10, "enable-slot");
    let slot = e.slot();
    check!(slot != 0, "enable-slot", "slot 0");
    let output = Dma::new(32 * xhci.context_size);
    xhci.dcbaa.write::<u64>(u64::from(slot) * 8, output.addr());

    let mut dev = Device {
        slot,
        input: Dma::new(33 * xhci.context_size),
        ep0: Ring::new(),
        bulk_in: (0, Ring::new()),
        bulk_out: (0, Ring::new()),
        buf: Dma::new(64 * 1024),
    };
    // Address Device: add slot and EP0; EP0's max packet from the speed
    // (8 low/full until the descriptor says more, 64 high, 512 super).
    let mps: u32 = match speed {
        3 => 64,
        4.. => 512,
        _ => 8,
    };
    dev.ctx(&xhci, 0, 1, 0b11);
    dev.ctx(&xhci, 1, 0, 1 << 27 | speed << 20);
    dev.ctx(&xhci, 1, 1, u32::from(port) << 16);
    dev.ctx(&xhci, 2, 1, mps << 16 | 4 << 3 | 3 << 1);
    let ep0 = dev.ep0.buf.addr();
    dev.ctx(&xhci, 2, 2, ep0 as u32 | 1);
    dev.ctx(&xhci, 2, 3, (ep0 >> 32) as u32);
    dev.ctx(&xhci, 2, 4, 8);
    let input = dev.input.addr();
    xhci.command(
        input,
        TRB_ADDRESS_DEVICE << 10 | u32::from(slot) << 24,
        "address",
    );
    let state = output.read::<u32>(12) >> 27;
    check!(state == 2, "address", "slot state {state}");

    let get_descriptor = |kind: u8, length: u16| {
        let [l0, l1] = length.to_le_bytes();
        [0x80, 6, 0, kind, 0, 0, l0, l1]
    };
    let d = dev.control(&mut xhci, get_descriptor(1, 18), "device-descriptor");
    check!(d.len() == 18 && d[1] == 1, "device-descriptor", "{d:02x?}");
    let vendor = u16::from_le_bytes([d[8], d[9]]);
    let product = u16::from_le_bytes([d[10], d[11]]);
    println!(
        "usb device {vendor:04x}:{product:04x} usb={:x}.{:02x} ep0={}",
        d[3], d[2], d[7]
    );
    let c = dev.control(&mut xhci, get_descriptor(2, 9), "config-descriptor");
    check!(c.len() == 9 && c[1] == 2, "config-descriptor", "{c:02x?}");
    let total = u16::from_le_bytes([c[2], c[3]]).min(1024);
    let config_value = c[5];
    let c = dev.control(&mut xhci, get_descriptor(2, total), "config-descriptor");
    check!(
        c.len() == usize::from(total),
        "config-descriptor",
        "{} of {total}",
        c.len()
    );
    // Walk the descriptors: the mass-storage interface and its bulk endpoints.
    let mut at = 0;
    let mut storage = false;
    let mut mps_in = 0u32;
    let mut mps_out = 0u32;
    while at + 2 <= c.len() && c[at] >= 2 {
        let d = &c[at..(at + usize::from(c[at])).min(c.len())];
        match (d[1], d.len()) {
            (4, 9..) => storage = (d[5], d[6], d[7]) == (8, 6, 0x50),
            (5, 7..) if storage && d[3] & 3 == 2 => {
                let mps = u32::from(u16::from_le_bytes([d[4], d[5]]) & 0x7ff);
                if d[2] & 0x80 != 0 {
                    dev.bulk_in.0 = d[2];
                    mps_in = mps;
                } else {
                    dev.bulk_out.0 = d[2];
                    mps_out = mps;
                }
            }
            _ => {}
        }
        at += usize::from(c[at]);
    }
    check!(
        dev.bulk_in.0 != 0 && dev.bulk_out.0 != 0,
        "bulk-endpoints",
        "{c:02x?}"
    );
    println!(
        "usb storage interface bulk_in={:#04x}/{mps_in} bulk_out={:#04x}/{mps_out}",
        dev.bulk_in.0, dev.bulk_out.0
    );

    // Configure Endpoint (usb_hcd_alloc_bandwidth), then SET_CONFIGURATION.
    for i in 0..33 * xhci.context_size / 4 {
        dev.input.write::<u32>(i * 4, 0);
    }
    let (dci_in, dci_out) = (dci(dev.bulk_in.0), dci(dev.bulk_out.0));
    dev.ctx(&xhci, 0, 1, 1 | 1 << dci_in | 1 << dci_out);
    dev.ctx(
        &xhci,
        1,
        0,
        u32::from(dci_in.max(dci_out)) << 27 | speed << 20,
    );
    dev.ctx(&xhci, 1, 1, u32::from(port) << 16);
    for (dci, ep_type, mps, ring) in [
        (dci_in, 6, mps_in, dev.bulk_in.1.buf.addr()),
        (dci_out, 2, mps_out, dev.bulk_out.1.buf.addr()),
    ] {
        let index = u64::from(dci) + 1;
        dev.ctx(&xhci, index, 1, mps << 16 | ep_type << 3 | 3 << 1);
        dev.ctx(&xhci, index, 2, ring as u32 | 1);
        dev.ctx(&xhci, index, 3, (ring >> 32) as u32);
        dev.ctx(&xhci, index, 4, 3072);
    }
    xhci.command(
        input,
        TRB_CONFIGURE_EP << 10 | u32::from(slot) << 24,
        "configure-endpoint",
    );
    let state = output.read::<u32>(12) >> 27;
    check!(state == 3, "configure-endpoint", "slot state {state}");
    dev.control(
        &mut xhci,
        [0, 9, config_value, 0, 0, 0, 0, 0],
        "set-configuration",
    );

    // usb-storage: GET_MAX_LUN, then SCSI over bulk-only transport.
    let lun = dev.control(&mut xhci, [0xa1, 0xfe, 0, 0, 0, 0, 1, 0], "max-lun");
    check!(lun.len() == 1, "max-lun", "{lun:02x?}");
    let (inquiry, status) = dev.scsi(&mut xhci, 1, &[0x12, 0, 0, 0, 36, 0], 36, "inquiry");
    check!(
        status == 0 && inquiry.len() == 36,
        "inquiry",
        "status {status} len {}",
        inquiry.len()
    );
    println!(
        "storage inquiry type={} removable={} vendor=\"{}\" product=\"{}\" revision=\"{}\"",
        inquiry[0] & 0x1f,
        inquiry[1] >> 7,
        text(&inquiry[8..16]),
        text(&inquiry[16..32]),
        text(&inquiry[32..36])
    );
    let (_, status) = dev.scsi(&mut xhci, 2, &[0; 6], 0, "test-unit-ready");
    check!(status == 0, "test-unit-ready", "status {status}");
    let (cap, status) = dev.scsi(
        &mut xhci,
        3,
        &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        8,
        "read-capacity",
    );
    check!(
        status == 0 && cap.len() == 8,
        "read-capacity",
        "status {status}"
    );
    let last = u32::from_be_bytes([cap[0], cap[1], cap[2], cap[3]]);
    let block = u32::from_be_bytes([cap[4], cap[5], cap[6], cap[7]]);
    println!(
        "storage capacity blocks={} block_size={block}",
        u64::from(last) + 1
    );
    check!(
        block as usize == SECTOR && last >= FAR_LBA,
        "read-capacity",
        "{cap:02x?}"
    );

    let read10 = |lba: u32, count: u16| {
        let [a, b, c, d] = lba.to_be_bytes();
        let [e, f] = count.to_be_bytes();
        [0x28, 0, a, b, c, d, 0, e, f, 0]
    };
    let length = u32::from(READ_SECTORS) * SECTOR as u32;
    let (data, status) = dev.scsi(&mut xhci, 4, &read10(0, READ_SECTORS), length, "read10");
    check!(
        status == 0 && data.len() == length as usize,
        "read10",
        "status {status} len {}",
        data.len()
    );
    println!(
        "storage read lba=0 count={READ_SECTORS} fnv={:08x} first=\"{}\"",
        fnv1a32(&data),
        text(&data[..12])
    );
    let (data, status) = dev.scsi(
        &mut xhci,
        5,
        &read10(FAR_LBA, 1),
        SECTOR as u32,
        "read10-far",
    );
    check!(
        status == 0 && data.len() == SECTOR,
        "read10-far",
        "status {status}"
    );
    println!(
        "storage read lba={FAR_LBA} count=1 fnv={:08x} first=\"{}\"",
        fnv1a32(&data),
        text(&data[..12])
    );
    // Past the end: the command fails, REQUEST SENSE says why.
    let (data, status) = dev.scsi(
        &mut xhci,
        6,
        &read10(last + 1, 1),
        SECTOR as u32,
        "read10-end",
    );
    check!(
        status == 1,
        "read10-end",
        "status {status} with {} bytes",
        data.len()
    );
    let (sense, status) = dev.scsi(&mut xhci, 7, &[0x03, 0, 0, 0, 18, 0], 18, "request-sense");
    check!(
        status == 0 && sense.len() >= 14,
        "request-sense",
        "status {status}"
    );
    println!(
        "storage sense key={:x} asc={:02x} ascq={:02x}",
        sense[2] & 0xf,
        sense[12],
        sense[13]
    );
}
