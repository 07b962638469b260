//! virtio-input: a keyboard and a tablet driven as Linux's virtio_input.c
//! drives them, on the modern transport (1af4:1052).
//!
//! 1. Probe (`virtinput_probe`): for every 1af4:1052 function, the config
//!    selectors ID_NAME, ID_SERIAL, ID_DEVIDS, PROP_BITS, EV_BITS for each
//!    event type Linux asks about (and EV_REP), ABS_INFO for each absolute
//!    axis found. Prints `input <name> ...` with what it found; checks the
//!    keyboard has keys, LEDs and EV_REP, the tablet buttons, a wheel and
//!    ABS_X/ABS_Y of 0..=0x7fff.
//! 2. Bring-up (`virtinput_init_vqs`, `vp_find_vqs_msix`): VERSION_1, MSI-X
//!    with a vector for config changes and one per queue (or one shared by
//!    both queues when the table has two entries, Linux's second try),
//!    DRIVER_OK, then the event queue filled with 8-byte buffers
//!    (`virtinput_fill_evt`).
//! 3. The keyboard's LEDs: an EV_LED / EV_SYN pair on the status queue, as
//!    `virtinput_status` sends when the guest turns Caps Lock on; the device
//!    must hand the buffers back.
//! 4. Prints `SPICEBOX-VIRTIO-INPUT-READY` and reports every event as
//!    `event <keyboard|tablet> <type> <code> <value>` (giving each buffer
//!    back, as `virtinput_recv_events`), until Q is released on the keyboard.
//!
//! Prints `input-done kbd_events=<n> tablet_events=<n> irqs=<n>` and
//! `SPICEBOX-VIRTIO-INPUT-OK`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use guest_rt::irq::{self, lapic};
use guest_rt::mem::Dma;
use guest_rt::msix::Msix;
use guest_rt::virtio::{self, VirtioPci, Virtqueue};
use guest_rt::{check, fail, println, time, OrFail};

guest_rt::guest!("VIRTIO-INPUT", main);

const CFG_ID_NAME: u8 = 0x01;
const CFG_ID_SERIAL: u8 = 0x02;
const CFG_ID_DEVIDS: u8 = 0x03;
const CFG_PROP_BITS: u8 = 0x10;
const CFG_EV_BITS: u8 = 0x11;
const CFG_ABS_INFO: u8 = 0x12;

const EV_SYN: u16 = 0x00;
const EV_KEY: u16 = 0x01;
const EV_REL: u16 = 0x02;
const EV_ABS: u16 = 0x03;
const EV_MSC: u16 = 0x04;
const EV_SW: u16 = 0x05;
const EV_LED: u16 = 0x11;
const EV_SND: u16 = 0x12;
const EV_REP: u16 = 0x14;
const KEY_A: u16 = 30;
const KEY_Q: u16 = 16;
const BTN_LEFT: u16 = 0x110;
const REL_WHEEL: u16 = 8;
const LED_CAPSL: u16 = 1;

const QUEUE_SIZE: u16 = 64;
const EVENT_LEN: u64 = 8;
/// Each device's MSI-X entries: config changes, event queue, status queue
/// (which shares the event queue's with only two entries).
const ENTRY_CONFIG: u16 = 0;
const ENTRY_EVENT: u16 = 1;
const ENTRY_STATUS: u16 = 2;
const WAIT: Duration = Duration::from_secs(5);
/// How long the guest waits for the test's input.
const INPUT_WAIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Keyboard,
    Tablet,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Keyboard => "keyboard",
            Kind::Tablet => "tablet",
        }
    }
}

/// The answer to (select, subsel), as `virtinput_cfg_select` reads it.
fn cfg_select(dev: &VirtioPci, select: u8, subsel: u8) -> Vec<u8> {
    let c = dev.device_cfg();
    c.write8(0, select);
    c.write8(1, subsel);
    let size = u64::from(c.read8(2)).min(128);
    (0..size).map(|i| c.read8(8 + i)).collect()
}

fn has_bit(bitmap: &[u8], bit: u16) -> bool {
    bitmap
        .get(usize::from(bit / 8))
        .is_some_and(|b| b & (1 << (bit % 8)) != 0)
}

fn count_bits(bitmap: &[u8]) -> u32 {
    bitmap.iter().map(|b| b.count_ones()).sum()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Step 1 for one device: what kind it is, checked and printed.
fn probe(dev: &VirtioPci) -> Kind {
    let name = cfg_select(dev, CFG_ID_NAME, 0);
    let name = core::str::from_utf8(&name).or_fail("id-name");
    let name = name.trim_end_matches('\0');
    let serial = cfg_select(dev, CFG_ID_SERIAL, 0);
    let ids = cfg_select(dev, CFG_ID_DEVIDS, 0);
    check!(ids.len() >= 8, "id-devids", "size {}", ids.len());
    let props = cfg_select(dev, CFG_PROP_BITS, 0);
    let mut ev_types = 0u32;
    let mut bits: [Vec<u8>; 0x20] = Default::default();
    for t in [EV_KEY, EV_REL, EV_ABS, EV_MSC, EV_SW, EV_LED, EV_SND] {
        bits[usize::from(t)] = cfg_select(dev, CFG_EV_BITS, t as u8);
        if !bits[usize::from(t)].is_empty() {
            ev_types |= 1 << t;
        }
    }
    if !cfg_select(dev, CFG_EV_BITS, EV_REP as u8).is_empty() {
        ev_types |= 1 << EV_REP;
    }
    // ABS_INFO for every axis the device has.
    let mut abs_max = Vec::new();
    for axis in 0..(bits[usize::from(EV_ABS)].len() * 8) as u16 {
        if has_bit(&bits[usize::from(EV_ABS)], axis) {
            let info = cfg_select(dev, CFG_ABS_INFO, axis as u8);
            check!(
                info.len() >= 20,
                "abs-info",
                "axis {axis} size {}",
                info.len()
            );
            check!(u32_at(&info, 0) == 0, "abs-info", "axis {axis} min");
            abs_max.push(u32_at(&info, 4));
        }
    }
    let keys = count_bits(&bits[usize::from(EV_KEY)]);
    println!(
        "input name=\"{name}\" serial_len={} ids={:04x}:{:04x}:{:04x}:{:04x} props={} ev={ev_types:#x} keys={keys} leds={} abs_max={:?}",
        serial.len(),
        u16_at(&ids, 0),
        u16_at(&ids, 2),
        u16_at(&ids, 4),
        u16_at(&ids, 6),
        count_bits(&props),
        count_bits(&bits[usize::from(EV_LED)]),
        abs_max,
    );
    match name {
        "QEMU Virtio Keyboard" => {
            check!(
                has_bit(&bits[usize::from(EV_KEY)], KEY_A) && keys > 80,
                "keyboard-keys",
                "{keys} keys"
            );
            check!(
                ev_types & (1 << EV_REP) != 0,
                "keyboard-rep",
                "ev {ev_types:#x}"
            );
            check!(
                has_bit(&bits[usize::from(EV_LED)], LED_CAPSL),
                "keyboard-leds"
            );
            Kind::Keyboard
        }
        "QEMU Virtio Tablet" => {
            check!(
                has_bit(&bits[usize::from(EV_KEY)], BTN_LEFT),
                "tablet-buttons"
            );
            check!(
                has_bit(&bits[usize::from(EV_REL)], REL_WHEEL),
                "tablet-wheel"
            );
            check!(abs_max == [0x7fff, 0x7fff], "tablet-abs", "{abs_max:?}");
            Kind::Tablet
        }
        other => fail!("id-name", "unknown device {other:?}"),
    }
}

/// A device brought up as virtio_input.c does.
struct Input {
    kind: Kind,
    dev: VirtioPci,
    _msix: Msix,
    vector: u8,
    eventq: Virtqueue,
    statusq: Virtqueue,
    /// QUEUE_SIZE event buffers; buffer i at 8 * i.
    events: Dma,
    /// Head → buffer index, for the buffers in flight.
    head_buf: Vec<u16>,
    received: u32,
}

impl Input {
    /// Step 2. `vector`: this device's first CPU vector (config; +1 events,
    /// +2 status).
    fn bring_up(dev: VirtioPci, kind: Kind, apic: u8, vector: u8) -> Input {
        dev.negotiate(virtio::F_VERSION_1).or_fail("features");
        check!(dev.num_queues() == 2, "num-queues", "{}", dev.num_queues());
        let msix = Msix::find(dev.function).or_fail("msix-cap");
        // vp_find_vqs_msix: a vector per queue if the table has room (spicebox
        // sizes it so), else one shared by the queues (QEMU's 2 vectors).
        let per_queue = msix.vectors() >= 3;
        check!(msix.vectors() >= 2, "msix-size", "{}", msix.vectors());
        let status_entry = if per_queue { ENTRY_STATUS } else { ENTRY_EVENT };
        msix.enable_masked();
        for entry in 0..msix.vectors().min(3) {
            msix.program(entry, irq::msi_message(apic, vector + entry as u8));
        }
        msix.set_function_mask(false);
        check!(
            dev.set_config_vector(ENTRY_CONFIG) == ENTRY_CONFIG,
            "config-vector"
        );
        let eventq = dev.setup_queue(0, QUEUE_SIZE).or_fail("eventq");
        check!(
            dev.set_queue_vector(0, ENTRY_EVENT) == ENTRY_EVENT,
            "eventq-vector"
        );
        let statusq = dev.setup_queue(1, QUEUE_SIZE).or_fail("statusq");
        check!(
            dev.set_queue_vector(1, status_entry) == status_entry,
            "statusq-vector"
        );
        dev.enable_queue(&eventq);
        dev.enable_queue(&statusq);
        dev.driver_ok();
        for entry in [ENTRY_CONFIG, ENTRY_EVENT, status_entry] {
            msix.mask(entry, false);
        }
        println!(
            "input-msix {} vectors={} per_queue={per_queue}",
            kind.label(),
            msix.vectors()
        );
        let mut input = Input {
            kind,
            events: Dma::new(EVENT_LEN * u64::from(eventq.size)),
            head_buf: alloc::vec![0; usize::from(eventq.size)],
            dev,
            _msix: msix,
            vector,
            eventq,
            statusq,
            received: 0,
        };
        for i in 0..input.eventq.size {
            input.post(i);
        }
        if input.eventq.publish() {
            input.dev.notify(&input.eventq);
        }
        input
    }

    /// Give event buffer `i` to the device (not yet published).
    fn post(&mut self, i: u16) {
        let addr = self.events.addr() + EVENT_LEN * u64::from(i);
        let head = self
            .eventq
            .add(&[(addr, EVENT_LEN as u32, true)])
            .or_fail("eventq-full");
        self.head_buf[usize::from(head)] = i;
    }

    /// Step 3: EV_LED Caps Lock on, then EV_SYN, on the status queue.
    fn set_caps_lock(&mut self) {
        let buf = Dma::new(16);
        for (i, (t, c, v)) in [(EV_LED, LED_CAPSL, 1u32), (EV_SYN, 0, 0)]
            .into_iter()
            .enumerate()
        {
            let at = 8 * i as u64;
            buf.write::<u16>(at, t);
            buf.write::<u16>(at + 2, c);
            buf.write::<u32>(at + 4, v);
            self.statusq
                .add(&[(buf.addr() + at, EVENT_LEN as u32, false)])
                .or_fail("statusq-full");
        }
        if self.statusq.publish() {
            self.dev.notify(&self.statusq);
        }
        let mut done = 0;
        let all = time::wait_until(WAIT, || {
            while self.statusq.pop_used().is_some() {
                done += 1;
            }
            done == 2
        });
        check!(all, "status-used", "{done} of 2 status buffers returned");
    }

    /// Report and requeue every event the device has returned; true once Q
    /// was released (on the keyboard).
    fn drain(&mut self) -> bool {
        let mut quit = false;
        let mut any = false;
        while let Some((head, len)) = self.eventq.pop_used() {
            check!(len == EVENT_LEN as u32, "event-len", "used len {len}");
            let i = self.head_buf[usize::from(head)];
            let at = EVENT_LEN * u64::from(i);
            let t = self.events.read::<u16>(at);
            let c = self.events.read::<u16>(at + 2);
            let v = self.events.read::<i32>(at + 4);
            println!("event {} {t} {c} {v}", self.kind.label());
            self.received += 1;
            if self.kind == Kind::Keyboard && t == EV_KEY && c == KEY_Q && v == 0 {
                quit = true;
            }
            self.post(i);
            any = true;
        }
        if any && self.eventq.publish() {
            self.dev.notify(&self.eventq);
        }
        quit
    }

    fn irqs(&self) -> u64 {
        irq::count(self.vector + 1)
    }
}

fn main() {
    let apic = lapic::id();
    lapic::enable();
    irq::enable();
    let devices = VirtioPci::find_all(virtio::INPUT_DEVICE_ID);
    check!(
        devices.len() == 2,
        "pci-scan",
        "{} virtio-input devices",
        devices.len()
    );
    let mut inputs = Vec::new();
    for (n, dev) in devices.into_iter().enumerate() {
        let kind = probe(&dev);
        inputs.push(Input::bring_up(dev, kind, apic, 0x50 + 4 * n as u8));
    }
    check!(
        inputs.iter().any(|i| i.kind == Kind::Keyboard)
            && inputs.iter().any(|i| i.kind == Kind::Tablet),
        "kinds",
        "want one keyboard and one tablet"
    );
    for i in inputs.iter_mut().filter(|i| i.kind == Kind::Keyboard) {
        i.set_caps_lock();
    }
    println!("SPICEBOX-VIRTIO-INPUT-READY");
    let deadline = time::Deadline::after(INPUT_WAIT);
    let mut quit = false;
    while !quit {
        for i in inputs.iter_mut() {
            quit |= i.drain();
        }
        check!(
            !deadline.passed(),
            "input-wait",
            "no Q release within {INPUT_WAIT:?}"
        );
        core::hint::spin_loop();
    }
    let count = |k: Kind| -> u32 {
        inputs
            .iter()
            .filter(|i| i.kind == k)
            .map(|i| i.received)
            .sum()
    };
    let irqs: u64 = inputs.iter().map(Input::irqs).sum();
    check!(irqs > 0, "event-irq", "no MSI-X interrupt for events");
    println!(
        "input-done kbd_events={} tablet_events={} irqs={irqs}",
        count(Kind::Keyboard),
        count(Kind::Tablet)
    );
    for i in &inputs {
        i.dev.reset();
    }
}
