//! The controller driven as Linux xhci-hcd drives it: halt/reset/run, the
//! command ring (enable slot, address device, configure endpoint, evaluate
//! context, stop/reset endpoint, set TR dequeue), port connect and reset, control
//! and bulk TDs with short packets and IDT, asynchronous interrupt transfers,
//! event ring wrap, interrupts, and hostile rings and contexts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::context::*;
use super::controller::*;
use super::port;
use super::trb::{cc, trb_type as tt, Trb, BEI, CHAIN, CYCLE, IDT, IOC, TOGGLE_CYCLE};
use crate::usb::{
    SetupPacket, TransferKind, UsbCompletion, UsbDevice, UsbRequest, UsbSpeed, UsbStatus,
};

const MEM: usize = 0x100000;
const DCBAA: u64 = 0x1000;
const CMD_RING: u64 = 0x2000;
const ERST: u64 = 0x3000;
const EVENTS: u64 = 0x4000;
const EVENT_TRBS: u32 = 16;
const OUT_CTX: u64 = 0x6000;
const IN_CTX: u64 = 0x7000;
const EP0_RING: u64 = 0x8000;
const BULK_IN_RING: u64 = 0x9000;
const BULK_OUT_RING: u64 = 0xa000;
const INT_RING: u64 = 0xb000;
const BUF: u64 = 0x10000;
const CMD_TRBS: u64 = 64;

#[derive(Default)]
struct Irqs {
    msix: Mutex<Vec<u16>>,
    intx: Mutex<bool>,
    messages: Mutex<bool>,
}

impl XhciInterrupt for Irqs {
    fn messages_enabled(&self) -> bool {
        *self.messages.lock().unwrap()
    }
    fn notify(&self, vector: u16) {
        self.msix.lock().unwrap().push(vector);
    }
    fn set_intx(&self, level: bool) {
        *self.intx.lock().unwrap() = level;
    }
}

/// A high-speed test device: descriptors on EP0, a bulk IN endpoint 0x81 that
/// answers with `bulk_in` data, bulk OUT 0x02 that records, and an interrupt IN
/// endpoint 0x83 that completes later.
#[derive(Default)]
struct DeviceLog {
    requests: Vec<UsbRequest>,
    bulk_in: VecDeque<Vec<u8>>,
    stall_next: bool,
    pending: Vec<u64>,
    completions: Vec<UsbCompletion>,
    cancelled: Vec<u64>,
    resets: usize,
    /// Isochronous IN 0x84's packets, one per request (empty when none).
    iso_in: VecDeque<Vec<u8>>,
    stopped_endpoints: Vec<u8>,
}

struct TestDevice(Arc<Mutex<DeviceLog>>);

const DEVICE_DESCRIPTOR: [u8; 18] = [
    18, 1, 0, 2, 0, 0, 0, 64, 0xf4, 0x46, 0x01, 0x00, 0, 1, 1, 2, 3, 1,
];

impl UsbDevice for TestDevice {
    fn speed(&self) -> UsbSpeed {
        UsbSpeed::High
    }
    fn submit(&mut self, r: UsbRequest) -> Option<UsbCompletion> {
        let mut log = self.0.lock().unwrap();
        log.requests.push(r.clone());
        let ok = |data: Vec<u8>, actual| {
            Some(UsbCompletion {
                id: r.id,
                status: UsbStatus::Success,
                data,
                actual,
            })
        };
        if std::mem::take(&mut log.stall_next) {
            return Some(UsbCompletion {
                id: r.id,
                status: UsbStatus::Stall,
                data: vec![],
                actual: 0,
            });
        }
        match (r.kind, r.endpoint) {
            (TransferKind::Control(s), _) if s.request == 6 => ok(
                DEVICE_DESCRIPTOR[..usize::from(s.length).min(18)].to_vec(),
                0,
            ),
            (TransferKind::Control(_), _) => ok(vec![], 0),
            (TransferKind::Bulk, 0x81) => ok(log.bulk_in.pop_front().unwrap_or_default(), 0),
            (TransferKind::Bulk, 0x02) => ok(vec![], r.data.len() as u32),
            (TransferKind::Isochronous, 0x84) => ok(log.iso_in.pop_front().unwrap_or_default(), 0),
            (TransferKind::Isochronous, 0x05) => ok(vec![], r.data.len() as u32),
            (TransferKind::Interrupt, 0x83) => {
                log.pending.push(r.id);
                None
            }
            _ => Some(UsbCompletion {
                id: r.id,
                status: UsbStatus::Error,
                data: vec![],
                actual: 0,
            }),
        }
    }
    fn take_completions(&mut self) -> Vec<UsbCompletion> {
        std::mem::take(&mut self.0.lock().unwrap().completions)
    }
    fn cancel(&mut self, id: u64) {
        self.0.lock().unwrap().cancelled.push(id);
    }
    fn reset(&mut self) {
        self.0.lock().unwrap().resets += 1;
    }
    fn endpoint_stopped(&mut self, endpoint: u8) {
        self.0.lock().unwrap().stopped_endpoints.push(endpoint);
    }
}

pub(super) struct Driver {
    mem: GuestMemoryMmap<()>,
    hc: Xhci,
    irq: Arc<Irqs>,
    cmd_enqueue: u64,
    cmd_cycle: bool,
    ev_dequeue: u64,
    ev_cycle: bool,
    log: Arc<Mutex<DeviceLog>>,
    rings: Vec<(u64, u64)>,
}

fn put(mem: &GuestMemoryMmap<()>, addr: u64, trb: Trb) {
    mem.write_slice(&trb.to_bytes(), GuestAddress(addr))
        .unwrap();
}

fn read_trb(mem: &GuestMemoryMmap<()>, addr: u64) -> Trb {
    Trb::read(mem, addr).unwrap()
}

impl Driver {
    fn new() -> Driver {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
        let irq = Arc::new(Irqs::default());
        let hc = Xhci::new(mem.clone(), irq.clone());
        Driver {
            mem,
            hc,
            irq,
            cmd_enqueue: CMD_RING,
            cmd_cycle: true,
            ev_dequeue: EVENTS,
            ev_cycle: true,
            log: Arc::default(),
            rings: Vec::new(),
        }
    }

    fn r32(&mut self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.hc.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn w32(&mut self, offset: u64, v: u32) {
        if self.hc.write(offset, &v.to_le_bytes()) {
            self.hc.process();
        }
    }

    fn w64(&mut self, offset: u64, v: u64) {
        // lo_hi_writeq, as xhci_write_64.
        self.w32(offset, v as u32);
        self.w32(offset + 4, (v >> 32) as u32);
    }

    /// xhci_init/xhci_run: reset, wait CNR, program, run with interrupts on.
    fn start(&mut self) {
        self.w32(OP_BASE, USBCMD_HCRST);
        assert_eq!(self.r32(OP_BASE) & USBCMD_HCRST, 0);
        assert_eq!(self.r32(OP_BASE + 4) & (1 << 11), 0, "CNR");
        self.w32(OP_BASE + 0x38, MAX_SLOTS as u32);
        self.w64(OP_BASE + 0x30, DCBAA);
        // Command ring with a link back to the start.
        put(
            &self.mem,
            CMD_RING + (CMD_TRBS - 1) * 16,
            Trb {
                parameter: CMD_RING,
                status: 0,
                control: tt::LINK << 10 | TOGGLE_CYCLE,
            },
        );
        self.w64(OP_BASE + 0x18, CMD_RING | 1);
        self.mem.write_obj(EVENTS, GuestAddress(ERST)).unwrap();
        self.mem
            .write_obj(EVENT_TRBS, GuestAddress(ERST + 8))
            .unwrap();
        let intr0 = RUNTIME_BASE + 0x20;
        self.w32(intr0 + 0x08, 1);
        self.w64(intr0 + 0x10, ERST);
        self.w64(intr0 + 0x18, EVENTS);
        self.w32(intr0, 0x2); // IMAN.IE
        self.w32(OP_BASE, USBCMD_RS | USBCMD_INTE);
        assert_eq!(self.r32(OP_BASE + 4) & USBSTS_HCH, 0);
    }

    /// The next event, consumed as xhci_handle_event does (ERDP with EHB).
    fn event(&mut self) -> Option<Trb> {
        let trb = read_trb(&self.mem, self.ev_dequeue);
        if trb.cycle() != self.ev_cycle {
            return None;
        }
        self.ev_dequeue += 16;
        if self.ev_dequeue == EVENTS + u64::from(EVENT_TRBS) * 16 {
            self.ev_dequeue = EVENTS;
            self.ev_cycle = !self.ev_cycle;
        }
        let erdp = RUNTIME_BASE + 0x20 + 0x18;
        self.w64(erdp, self.ev_dequeue | 1 << 3);
        Some(trb)
    }

    fn events(&mut self) -> Vec<Trb> {
        std::iter::from_fn(|| self.event()).collect()
    }

    fn command(&mut self, mut trb: Trb) -> Trb {
        trb.control = (trb.control & !CYCLE) | u32::from(self.cmd_cycle);
        put(&self.mem, self.cmd_enqueue, trb);
        let at = self.cmd_enqueue;
        self.cmd_enqueue += 16;
        if self.cmd_enqueue == CMD_RING + (CMD_TRBS - 1) * 16 {
            let link = Trb {
                parameter: CMD_RING,
                status: 0,
                control: tt::LINK << 10 | TOGGLE_CYCLE | u32::from(self.cmd_cycle),
            };
            put(&self.mem, self.cmd_enqueue, link);
            self.cmd_enqueue = CMD_RING;
            self.cmd_cycle = !self.cmd_cycle;
        }
        self.w32(DOORBELL_BASE, 0);
        let ev = self.event().expect("command completion");
        assert_eq!(ev.trb_type(), tt::COMMAND_COMPLETION);
        assert_eq!(ev.parameter, at);
        ev
    }

    fn connect(&mut self) -> u8 {
        let device = Box::new(TestDevice(self.log.clone()));
        let port = self.connect_device(device);
        assert_eq!(self.log.lock().unwrap().resets, 1);
        port
    }

    fn connect_device(&mut self, device: Box<dyn UsbDevice>) -> u8 {
        let port = self.hc.attach(device).unwrap();
        let ev = self.event().expect("port status change");
        assert_eq!(
            (ev.trb_type(), ev.parameter >> 24),
            (tt::PORT_STATUS_CHANGE, u64::from(port))
        );
        let portsc_at = PORT_BASE + 16 * (u64::from(port) - 1);
        let sc = self.r32(portsc_at);
        assert_eq!(
            sc & (port::CCS | port::CSC | port::PED),
            port::CCS | port::CSC
        );
        // hub_port_reset: clear CSC, set PR, wait for PRC.
        self.w32(portsc_at, port::PP | port::CSC);
        self.w32(portsc_at, port::PP | port::PR);
        let ev = self.event().expect("reset change");
        assert_eq!(ev.trb_type(), tt::PORT_STATUS_CHANGE);
        assert_eq!(
            self.r32(portsc_at) & (port::PED | port::PRC),
            port::PED | port::PRC
        );
        self.w32(portsc_at, port::PP | port::PRC);
        port
    }

    fn ctx(&self, addr: u64) -> Ctx {
        read_ctx(&self.mem, addr).unwrap()
    }

    fn set_ctx(&self, addr: u64, ctx: Ctx) {
        write_ctx(&self.mem, addr, &ctx);
    }

    /// Enable Slot + Address Device, as xhci_alloc_dev / xhci_setup_device.
    fn address(&mut self, port: u8) -> u8 {
        let ev = self.command(Trb {
            control: tt::ENABLE_SLOT << 10,
            ..Trb::default()
        });
        assert_eq!((ev.status >> 24) as u8, cc::SUCCESS);
        let slot = ev.slot_id();
        self.mem
            .write_obj(OUT_CTX, GuestAddress(DCBAA + 8 * u64::from(slot)))
            .unwrap();
        self.set_ctx(IN_CTX, [0, 3, 0, 0, 0, 0, 0, 0]);
        self.set_ctx(
            IN_CTX + 32,
            [1 << 27 | 3 << 20, u32::from(port) << 16, 0, 0, 0, 0, 0, 0],
        );
        self.set_ctx(
            IN_CTX + 64,
            [
                0,
                3 << 1 | 4 << 3 | 64 << 16,
                EP0_RING as u32 | 1,
                0,
                8,
                0,
                0,
                0,
            ],
        );
        self.rings.push((EP0_RING, EP0_RING));
        let ev = self.command(Trb {
            parameter: IN_CTX,
            status: 0,
            control: tt::ADDRESS_DEVICE << 10 | u32::from(slot) << 24,
        });
        assert_eq!((ev.status >> 24) as u8, cc::SUCCESS);
        let out = self.ctx(OUT_CTX);
        assert_eq!(
            (out[3] >> 27, out[3] & 0xff),
            (SLOT_ADDRESSED, u32::from(slot))
        );
        assert_eq!(self.ctx(OUT_CTX + 32)[0] & 7, u32::from(EP_RUNNING));
        slot
    }

    /// Queue TRBs (cycle 1) on a transfer ring at its enqueue pointer.
    fn queue(&mut self, ring: u64, trbs: &[Trb]) -> Vec<u64> {
        let entry = self
            .rings
            .iter_mut()
            .find(|r| r.0 == ring)
            .expect("known ring");
        let mut addrs = Vec::new();
        for t in trbs {
            let mut t = *t;
            t.control |= CYCLE;
            put(&self.mem, entry.1, t);
            addrs.push(entry.1);
            entry.1 += 16;
        }
        addrs
    }

    fn ring_doorbell(&mut self, slot: u8, dci: u32) {
        self.w32(DOORBELL_BASE + 4 * u64::from(slot), dci);
    }

    fn get_descriptor(&mut self, slot: u8, length: u16) -> Vec<Trb> {
        let setup = 0x80u64 | 6 << 8 | 0x0100 << 16 | u64::from(length) << 48;
        self.queue(
            EP0_RING,
            &[
                Trb {
                    parameter: setup,
                    status: 8,
                    control: tt::SETUP << 10 | IDT | 3 << 16,
                },
                Trb {
                    parameter: BUF,
                    status: u32::from(length),
                    control: tt::DATA << 10 | 1 << 16 | 1 << 2,
                },
                Trb {
                    parameter: 0,
                    status: 0,
                    control: tt::STATUS << 10 | IOC,
                },
            ],
        );
        self.ring_doorbell(slot, 1);
        self.events()
    }

    /// Configure bulk IN 0x81 (DCI 3), bulk OUT 0x02 (DCI 4), interrupt IN 0x83 (DCI 7).
    fn configure(&mut self, slot: u8) {
        self.set_ctx(IN_CTX, [0, 1 | 1 << 3 | 1 << 4 | 1 << 7, 0, 0, 0, 0, 0, 0]);
        self.set_ctx(IN_CTX + 32, [7 << 27 | 3 << 20, 0, 0, 0, 0, 0, 0, 0]);
        let ep = |ty: u32, ring: u64| {
            [
                0,
                3 << 1 | ty << 3 | 512 << 16,
                ring as u32 | 1,
                0,
                0,
                0,
                0,
                0,
            ]
        };
        self.set_ctx(IN_CTX + 32 * 4, ep(6, BULK_IN_RING));
        self.set_ctx(IN_CTX + 32 * 5, ep(2, BULK_OUT_RING));
        self.set_ctx(IN_CTX + 32 * 8, ep(7, INT_RING));
        for r in [BULK_IN_RING, BULK_OUT_RING, INT_RING] {
            self.rings.push((r, r));
        }
        let ev = self.command(Trb {
            parameter: IN_CTX,
            status: 0,
            control: tt::CONFIGURE_ENDPOINT << 10 | u32::from(slot) << 24,
        });
        assert_eq!((ev.status >> 24) as u8, cc::SUCCESS);
        assert_eq!(self.ctx(OUT_CTX)[3] >> 27, SLOT_CONFIGURED);
        assert_eq!(self.ctx(OUT_CTX + 32 * 3)[0] & 7, u32::from(EP_RUNNING));
    }
}

fn code(ev: &Trb) -> u8 {
    (ev.status >> 24) as u8
}

mod hostile;
mod isoch;
mod pci;
mod redir;
mod transfers;
