//! virtio-input driven as Linux's virtio_input.c drives it: config probing,
//! event buffers posted up front, the status queue for LEDs.

use super::*;
use crate::pci::PciDevice;
use crate::virtio::pci::testing::{TestDriver, TestQueue};
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use vm_memory::GuestAddress;

const EVENT_BUFS: u64 = 0x40000;
const STATUS_BUF: u64 = 0x50000;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;

/// The config read Linux's `virtio_input_cfg_select` + reads do.
fn probe(d: &mut TestDriver<VirtioInput>, select: u8, subsel: u8) -> Vec<u8> {
    d.device_cfg_write(0, 1, select.into());
    d.device_cfg_write(1, 1, subsel.into());
    let size = d.device_cfg_read(2, 1) as usize;
    (0..size)
        .map(|i| d.device_cfg_read(8 + i as u64, 1) as u8)
        .collect()
}

struct Rig {
    d: TestDriver<VirtioInput>,
    eventq: TestQueue,
    statusq: TestQueue,
    /// Event buffers posted so far (descriptor i at EVENT_BUFS + 8 * i).
    posted: u16,
}

impl Rig {
    fn new(dev: VirtioInput) -> Rig {
        Rig::new_on(TestDriver::new(dev))
    }

    /// Driver bring-up (again) on a device.
    fn new_on(mut d: TestDriver<VirtioInput>) -> Rig {
        d.negotiate(1 << VIRTIO_F_VERSION_1);
        let eventq = d.setup_queue(0, 64, 0x10000);
        let statusq = d.setup_queue(1, 64, 0x20000);
        d.driver_ok();
        assert_eq!(d.status() & 0x40, 0, "no NEEDS_RESET");
        Rig {
            d,
            eventq,
            statusq,
            posted: 0,
        }
    }

    /// Post `n` 8-byte buffers, as virtinput_fill_evt does, and kick.
    fn post(&mut self, n: u16) {
        for _ in 0..n {
            let i = self.posted % 64;
            let addr = EVENT_BUFS + 8 * u64::from(i);
            self.eventq.write_desc(&self.d.mem, i, addr, 8, WRITE, 0);
            self.eventq.push_avail(&self.d.mem, i);
            self.posted += 1;
        }
        self.d.notify(&self.eventq);
    }

    /// Events the device returned, as (type, code, value).
    fn events(&mut self) -> Vec<(u16, u16, i32)> {
        self.d.sync();
        let mut out = Vec::new();
        while let Some((id, len)) = self.eventq.pop_used(&self.d.mem) {
            assert_eq!(len, 8);
            let mut raw = [0u8; 8];
            let at = GuestAddress(EVENT_BUFS + 8 * u64::from(id));
            self.d.mem.read_slice(&mut raw, at).unwrap();
            out.push((
                u16::from_le_bytes([raw[0], raw[1]]),
                u16::from_le_bytes([raw[2], raw[3]]),
                i32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
            ));
        }
        out
    }

    /// The guest writes one event to the status queue (virtinput_status).
    fn status(&mut self, t: u16, c: u16, v: u32) {
        let mut raw = [0u8; 8];
        raw[0..2].copy_from_slice(&t.to_le_bytes());
        raw[2..4].copy_from_slice(&c.to_le_bytes());
        raw[4..8].copy_from_slice(&v.to_le_bytes());
        self.d
            .mem
            .write_slice(&raw, GuestAddress(STATUS_BUF))
            .unwrap();
        self.statusq
            .add_chain(&self.d.mem, &[(STATUS_BUF, 8, false)]);
        self.d.notify(&self.statusq);
        assert_eq!(self.statusq.pop_used(&self.d.mem), Some((0, 0)));
    }
}

#[test]
fn config_probe_as_linux_does_it() {
    let (kbd, _) = VirtioInput::keyboard().unwrap();
    let mut d = TestDriver::new(kbd);
    assert_eq!(d.device_features(), 1 << VIRTIO_F_VERSION_1);
    assert_eq!(d.common_read(0x12, 2), 2, "eventq and statusq");
    assert_eq!(probe(&mut d, 1, 0), b"QEMU Virtio Keyboard");
    assert_eq!(probe(&mut d, 2, 0), b"");
    assert_eq!(probe(&mut d, 3, 0), [6, 0, 0x27, 6, 1, 0, 1, 0]);
    assert_eq!(probe(&mut d, 0x10, 0), b"");
    assert_eq!(probe(&mut d, 0x11, ev::LED as u8), [7]);
    // Linux probes every EV type; most answer nothing.
    let types: Vec<u8> = (0..0x20u8)
        .filter(|&t| !probe(&mut d, 0x11, t).is_empty())
        .collect();
    assert_eq!(types, [ev::KEY as u8, ev::LED as u8, ev::REP as u8]);
    // Writes past subsel and to size are ignored; odd widths work.
    d.device_cfg_write(2, 1, 0x55);
    d.device_cfg_write(0x40, 4, 0xffff_ffff);
    d.device_cfg_write(0, 2, 0x0001);
    assert_eq!(d.device_cfg_read(2, 1), 20);
    assert_eq!(
        d.device_cfg_read(8, 4),
        u64::from(u32::from_le_bytes(*b"QEMU"))
    );
    assert_eq!(d.device_cfg_read(0x1000 - 4, 4), 0);

    let (tablet, _) = VirtioInput::tablet().unwrap();
    let mut d = TestDriver::new(tablet);
    assert_eq!(probe(&mut d, 1, 0), b"QEMU Virtio Tablet");
    assert_eq!(probe(&mut d, 0x11, ev::ABS as u8), [3]);
    let x = probe(&mut d, 0x12, 0);
    assert_eq!(x[4..8], 0x7fffu32.to_le_bytes());
    assert_eq!(d.dev.config().u16_at(2), 0x1052);
}

#[test]
fn keys_reach_the_event_queue_after_driver_ok() {
    let (kbd, handle) = VirtioInput::keyboard().unwrap();
    // Before the driver runs, keys go nowhere (QEMU drops them too).
    handle.key(0x1e, true);
    assert!(!handle.is_active());
    let started = Arc::new(Mutex::new(Vec::new()));
    let s = started.clone();
    handle.on_active_change(move |a| s.lock().unwrap().push(a));
    let mut r = Rig::new(kbd);
    assert!(handle.is_active());
    assert_eq!(*started.lock().unwrap(), [true]);
    r.post(8);
    assert_eq!(r.events(), []);
    handle.key(0x1e, true);
    handle.key(0xe048, true);
    handle.key(0xe048, false);
    handle.key(0x7f, true); // no key: nothing sent
    assert_eq!(
        r.events(),
        [
            (ev::KEY, 30, 1),
            (ev::SYN, 0, 0),
            (ev::KEY, 103, 1),
            (ev::SYN, 0, 0),
            (ev::KEY, 103, 0),
            (ev::SYN, 0, 0),
        ]
    );
    assert!(r.d.line.is_high(), "INTx without MSI-X");
    // Out of buffers (2 left): the rest waits for the next ones.
    handle.key(0x1e, false);
    handle.key(0x30, true);
    assert_eq!(r.events(), [(ev::KEY, 30, 0), (ev::SYN, 0, 0)]);
    r.post(4);
    assert_eq!(r.events(), [(ev::KEY, 48, 1), (ev::SYN, 0, 0)]);
    // A driver reset stops it; what was pending is gone.
    handle.key(0x30, false);
    handle.key(0x30, true);
    r.d.set_status(0);
    assert!(!handle.is_active());
    assert_eq!(*started.lock().unwrap(), [true, false]);
}

#[test]
fn tablet_reports_positions_buttons_and_wheel() {
    let (tablet, handle) = VirtioInput::tablet().unwrap();
    let mut r = Rig::new(tablet);
    r.post(16);
    handle.position(100, 0x7fff, 0, buttons::LEFT);
    handle.position(200, 300, 1, buttons::LEFT);
    handle.position(u32::MAX, 0, -2, 0);
    // Only what changed: a click where the pointer is.
    handle.position(u32::MAX, 0, 0, buttons::RIGHT);
    handle.position(u32::MAX, 0, 0, buttons::RIGHT);
    assert_eq!(
        r.events(),
        [
            (ev::ABS, ev::ABS_X, 100),
            (ev::ABS, ev::ABS_Y, 0x7fff),
            (ev::KEY, ev::BTN_LEFT, 1),
            (ev::SYN, 0, 0),
            (ev::ABS, ev::ABS_X, 200),
            (ev::ABS, ev::ABS_Y, 300),
            (ev::REL, ev::REL_WHEEL, -1),
            (ev::SYN, 0, 0),
            (ev::ABS, ev::ABS_X, 0x7fff),
            (ev::ABS, ev::ABS_Y, 0),
            (ev::KEY, ev::BTN_LEFT, 0),
            (ev::REL, ev::REL_WHEEL, 2),
            (ev::SYN, 0, 0),
            (ev::KEY, ev::BTN_RIGHT, 1),
            (ev::SYN, 0, 0),
        ]
    );
    // A restarted driver is told the whole position again.
    r.d.set_status(0);
    handle.position(5, 6, 0, 0);
    let mut r = Rig::new_on(r.d);
    r.post(4);
    handle.position(5, 6, 0, 0);
    assert_eq!(
        r.events(),
        [
            (ev::ABS, ev::ABS_X, 5),
            (ev::ABS, ev::ABS_Y, 6),
            (ev::SYN, 0, 0)
        ]
    );
}

#[test]
fn msix_vectors_interrupt_per_queue() {
    let (kbd, handle) = VirtioInput::keyboard().unwrap();
    let mut d = TestDriver::new(kbd);
    d.negotiate(1 << VIRTIO_F_VERSION_1);
    d.enable_msix();
    d.common_write(0x10, 2, 0);
    let mut q = d.setup_queue(0, 64, 0x10000);
    d.common_write(0x1a, 2, 1);
    let _statusq = d.setup_queue(1, 64, 0x20000);
    d.common_write(0x1a, 2, 2);
    d.driver_ok();
    for v in 0..3 {
        d.msix_mask(v, false);
    }
    q.write_desc(&d.mem, 0, EVENT_BUFS, 8, WRITE, 0);
    q.push_avail(&d.mem, 0);
    q.write_desc(&d.mem, 1, EVENT_BUFS + 8, 8, WRITE, 0);
    q.push_avail(&d.mem, 1);
    d.notify(&q);
    handle.key(0x1c, true);
    d.sync();
    assert_eq!(q.pop_used(&d.mem), Some((0, 8)));
    assert_eq!(q.pop_used(&d.mem), Some((1, 8)));
    assert!(!d.fired(1).is_empty());
    assert!(d.fired(2).is_empty());
}

#[derive(Default)]
struct Leds(Mutex<Vec<u8>>);
impl LedListener for Leds {
    fn leds_changed(&self, leds: u8) {
        self.0.lock().unwrap().push(leds);
    }
}

#[test]
fn status_queue_leds_reach_the_listener() {
    let (kbd, handle) = VirtioInput::keyboard().unwrap();
    let leds = Arc::new(Leds::default());
    handle.set_led_listener(leds.clone());
    let mut r = Rig::new(kbd);
    // Linux's input core sends EV_LED then EV_SYN for a Caps Lock change.
    r.status(ev::LED, ev::LED_CAPSL, 1);
    r.status(ev::SYN, 0, 0);
    r.status(ev::LED, ev::LED_NUML, 1);
    r.status(ev::LED, ev::LED_NUML, 1); // no change, no call
    r.status(ev::LED, ev::LED_CAPSL, 0);
    r.status(ev::LED, 9, 1); // an LED we do not have
    assert_eq!(*leds.0.lock().unwrap(), [4, 6, 2]);
}

#[test]
fn hostile_buffers_are_returned_empty() {
    let (kbd, handle) = VirtioInput::keyboard().unwrap();
    let mut r = Rig::new(kbd);
    // Too short, device-readable, and outside guest memory: each is given back
    // with length 0 and the event goes into the next good buffer.
    let mem = r.d.mem.clone();
    r.eventq.write_desc(&mem, 0, EVENT_BUFS, 4, WRITE, 0);
    r.eventq.push_avail(&mem, 0);
    r.eventq.write_desc(&mem, 1, EVENT_BUFS, 8, 0, 0);
    r.eventq.push_avail(&mem, 1);
    r.eventq.write_desc(&mem, 2, 0xffff_fff0_0000, 8, WRITE, 0);
    r.eventq.push_avail(&mem, 2);
    r.eventq.write_desc(&mem, 3, EVENT_BUFS + 24, 8, WRITE, 0);
    r.eventq.push_avail(&mem, 3);
    r.d.notify(&r.eventq);
    handle.key(0x10, true);
    r.d.sync();
    let used: Vec<_> = std::iter::from_fn(|| r.eventq.pop_used(&mem)).collect();
    assert_eq!(used, [(0, 0), (1, 0), (2, 0), (3, 8)]);
    // The SYN waits for a buffer; a flood with none posted stays bounded.
    for _ in 0..MAX_PENDING {
        handle.key(0x10, true);
    }
    assert!(r.d.dev.device().shared.pending.lock().unwrap().events.len() <= MAX_PENDING);
    // Status queue garbage: a write-only buffer, a short one.
    r.statusq.add_chain(&mem, &[(STATUS_BUF, 8, true)]);
    r.d.notify(&r.statusq);
    r.statusq.add_chain(&mem, &[(STATUS_BUF, 2, false)]);
    r.d.notify(&r.statusq);
    assert_eq!(r.statusq.pop_used(&mem), Some((0, 0)));
    assert_eq!(r.statusq.pop_used(&mem), Some((0, 0)));
    assert_eq!(r.d.status() & 0x40, 0, "still running");
    // A broken avail index is a broken ring: NEEDS_RESET.
    mem.write_obj(200u16, GuestAddress(r.eventq.avail + 2))
        .unwrap();
    r.d.notify(&r.eventq);
    assert_ne!(r.d.status() & 0x40, 0);
}
