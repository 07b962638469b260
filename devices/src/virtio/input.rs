//! virtio-input (device type 18): a keyboard or a tablet, as QEMU's
//! virtio-keyboard-pci and virtio-tablet-pci.
//!
//! Two queues: the event queue, where the driver posts 8-byte device-writable
//! buffers that we fill with `virtio_input_event {le16 type, le16 code, le32
//! value}`, and the status queue, where the driver writes events back to us
//! (EV_LED when the guest changes its keyboard LEDs).
//!
//! Input reaches the device through a handle ([`VirtioKeyboard`],
//! [`VirtioTablet`]) that the input router holds: it queues events (a report
//! ends in SYN_REPORT) and wakes the worker, never touching guest memory or the
//! device's lock, so a SPICE task or QMP thread never waits for the guest. The
//! worker fills the guest's buffers in order; events wait (up to
//! `MAX_PENDING`) while the guest has posted none. Events sent while the driver
//! is not running are dropped, as on QEMU.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{debug, warn};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_INPUT;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{next_chain, queue_needs_interrupt, ActivateContext};
use super::device::{VirtioDevice, VirtioInterrupt};
pub use super::input_config::InputKind;
use super::input_config::{ev, linux_key, CONFIG_LEN, DATA_LEN, DATA_OFFSET};
use crate::input::{buttons, AbsolutePointer, Keyboard, LedListener};
use crate::worker::{Token, Worker, WorkerEvents, WorkerHandler};
use crate::{Error, Result};

/// QEMU's queue size for both queues.
pub const QUEUE_SIZE: u16 = 64;
const EVENT_QUEUE: usize = 0;
const STATUS_QUEUE: usize = 1;
/// PCI class: input device, other (QEMU's for virtio-input).
const PCI_CLASS_INPUT_OTHER: u32 = 0x098000;
const EVENT_LEN: usize = 8;
/// Events held while the guest has no buffers posted: a few hundred reports.
/// Past that a new report is dropped whole, with a log line.
pub const MAX_PENDING: usize = 1024;

type Event = [u8; EVENT_LEN];

fn event(ev_type: u16, code: u16, value: i32) -> Event {
    let mut e = [0u8; EVENT_LEN];
    e[0..2].copy_from_slice(&ev_type.to_le_bytes());
    e[2..4].copy_from_slice(&code.to_le_bytes());
    e[4..8].copy_from_slice(&value.to_le_bytes());
    e
}

const SYN: Event = [0; EVENT_LEN];

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type ActiveCallback = Box<dyn Fn(bool) + Send + Sync>;

/// What the device, its worker and its handle share.
struct Shared {
    pending: Mutex<Pending>,
    /// Written when events are queued; the worker waits on it.
    wake: EventFd,
    /// The driver is running (DRIVER_OK with the event queue enabled).
    active: AtomicBool,
    /// LEDs as the guest last set them (bit 0 scroll, 1 num, 2 caps).
    leds: AtomicU8,
    led_listener: Mutex<Option<Arc<dyn LedListener>>>,
    on_active: Mutex<Vec<ActiveCallback>>,
}

#[derive(Default)]
struct Pending {
    events: VecDeque<Event>,
    /// A report was dropped for want of room; logged once until there is room.
    overflowed: bool,
}

impl Shared {
    fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: EventFd::new(EFD_NONBLOCK)
                .map_err(|e| Error::Worker(format!("virtio-input eventfd: {e}")))?,
            active: AtomicBool::new(false),
            leds: AtomicU8::new(0),
            led_listener: Mutex::new(None),
            on_active: Mutex::new(Vec::new()),
        }))
    }

    /// Queue one report (events + SYN_REPORT) for the guest.
    fn send(&self, events: &[Event]) {
        if events.is_empty() || !self.active.load(Ordering::Acquire) {
            return;
        }
        {
            let mut p = lock(&self.pending);
            if p.events.len() + events.len() + 1 > MAX_PENDING {
                if !p.overflowed {
                    warn!("virtio-input: guest takes no events; dropping input");
                    p.overflowed = true;
                }
                return;
            }
            p.overflowed = false;
            p.events.extend(events.iter().copied());
            p.events.push_back(SYN);
        }
        if let Err(e) = self.wake.write(1) {
            warn!("virtio-input: wake: {e}");
        }
    }

    fn set_active(&self, active: bool) {
        if self.active.swap(active, Ordering::AcqRel) != active {
            if !active {
                lock(&self.pending).events.clear();
            }
            for f in lock(&self.on_active).iter() {
                f(active);
            }
        }
    }

    /// An event the guest wrote to the status queue.
    fn status(&self, ev_type: u16, code: u16, value: u32) {
        let bit = match (ev_type, code) {
            (ev::LED, ev::LED_SCROLLL) => 1,
            (ev::LED, ev::LED_NUML) => 2,
            (ev::LED, ev::LED_CAPSL) => 4,
            _ => {
                debug!(ev_type, code, "virtio-input: status event ignored");
                return;
            }
        };
        let old = self.leds.load(Ordering::Acquire);
        let new = if value != 0 { old | bit } else { old & !bit };
        self.leds.store(new, Ordering::Release);
        if new != old {
            if let Some(l) = lock(&self.led_listener).as_ref() {
                l.leds_changed(new);
            }
        }
    }
}

/// Methods both handles have.
macro_rules! handle_common {
    () => {
        /// Whether the guest's driver is running (it takes events).
        pub fn is_active(&self) -> bool {
            self.shared.active.load(Ordering::Acquire)
        }

        /// Calls `f` whenever the driver starts (true) or stops (false). Called
        /// from the vCPU thread with the device's lock held: only record or
        /// forward.
        pub fn on_active_change(&self, f: impl Fn(bool) + Send + Sync + 'static) {
            lock(&self.shared.on_active).push(Box::new(f));
        }
    };
}

/// The input router's side of a virtio keyboard.
pub struct VirtioKeyboard {
    shared: Arc<Shared>,
}

impl VirtioKeyboard {
    handle_common!();

    /// Who hears about the guest's LED changes (from the status queue).
    pub fn set_led_listener(&self, l: Arc<dyn LedListener>) {
        *lock(&self.shared.led_listener) = Some(l);
    }
}

impl Keyboard for VirtioKeyboard {
    fn key(&self, xt_scancode: u16, pressed: bool) {
        match linux_key(xt_scancode) {
            Some(code) => self.shared.send(&[event(ev::KEY, code, pressed.into())]),
            None => debug!("virtio-keyboard: no key for scancode {xt_scancode:#x}"),
        }
    }

    fn active(&self) -> bool {
        self.is_active()
    }
}

/// The input router's side of a virtio tablet.
pub struct VirtioTablet {
    shared: Arc<Shared>,
    /// What the guest was last told, so only changes are sent.
    last: Mutex<TabletState>,
}

#[derive(Default)]
struct TabletState {
    /// None: nothing sent since the driver started.
    position: Option<(i32, i32)>,
    buttons: u8,
}

impl VirtioTablet {
    handle_common!();
}

const BUTTON_CODES: [(u8, u16); 5] = [
    (buttons::LEFT, ev::BTN_LEFT),
    (buttons::RIGHT, ev::BTN_RIGHT),
    (buttons::MIDDLE, ev::BTN_MIDDLE),
    (buttons::SIDE, ev::BTN_SIDE),
    (buttons::EXTRA, ev::BTN_EXTRA),
];

impl AbsolutePointer for VirtioTablet {
    /// Sends the axes and buttons that changed (a guest that just started
    /// gets both axes), as QEMU sends only what an input event carries.
    fn position(&self, x: u32, y: u32, dz: i32, buttons: u8) {
        let mut last = lock(&self.last);
        if !self.shared.active.load(Ordering::Acquire) {
            // Dropped; the next driver starts from nothing known.
            *last = TabletState::default();
            return;
        }
        let x = x.min(crate::input::ABS_MAX) as i32;
        let y = y.min(crate::input::ABS_MAX) as i32;
        let mut events = Vec::new();
        if last.position.is_none_or(|(lx, _)| lx != x) {
            events.push(event(ev::ABS, ev::ABS_X, x));
        }
        if last.position.is_none_or(|(_, ly)| ly != y) {
            events.push(event(ev::ABS, ev::ABS_Y, y));
        }
        for (bit, code) in BUTTON_CODES {
            if (buttons ^ last.buttons) & bit != 0 {
                events.push(event(ev::KEY, code, i32::from(buttons & bit != 0)));
            }
        }
        if dz != 0 {
            // dz counts towards the user; REL_WHEEL counts away from them.
            events.push(event(ev::REL, ev::REL_WHEEL, dz.saturating_neg()));
        }
        self.shared.send(&events);
        *last = TabletState {
            position: Some((x, y)),
            buttons,
        };
    }

    fn active(&self) -> bool {
        self.is_active()
    }
}

/// What the worker owns while the driver runs.
struct InputWorker {
    shared: Arc<Shared>,
    mem: GuestMemoryMmap<()>,
    eventq: Queue,
    statusq: Option<Queue>,
    kicks: Vec<Arc<EventFd>>,
    interrupt: Arc<VirtioInterrupt>,
}

const EVENT_KICK: Token = 0;
const STATUS_KICK: Token = 1;
const WAKE: Token = 2;

impl InputWorker {
    /// Fill the guest's event buffers with pending events, in order.
    fn deliver(&mut self) -> Result<()> {
        let Self {
            shared,
            mem,
            eventq,
            interrupt,
            ..
        } = self;
        let mut used = false;
        loop {
            let Some(ev) = lock(&shared.pending).events.front().copied() else {
                break;
            };
            let Some(chain) = next_chain(eventq, mem)? else {
                break; // no buffers: the events wait for the next kick
            };
            let head = chain.head_index();
            let first: Option<Descriptor> = chain.clone().next();
            let written = match first {
                Some(d) if d.is_write_only() && d.len() as usize >= EVENT_LEN => {
                    mem.write_slice(&ev, d.addr()).is_ok()
                }
                _ => false,
            };
            if written {
                lock(&shared.pending).events.pop_front();
            } else {
                warn!("virtio-input: event buffer at head {head} unusable; returned empty");
            }
            eventq.add_used(&*mem, head, if written { EVENT_LEN as u32 } else { 0 })?;
            used = true;
        }
        if used && queue_needs_interrupt(eventq, mem)? {
            interrupt.signal_used_queue(EVENT_QUEUE);
        }
        Ok(())
    }

    /// Take what the guest wrote to the status queue.
    fn status(&mut self) -> Result<()> {
        let Some(statusq) = self.statusq.as_mut() else {
            return Ok(());
        };
        let mem = &self.mem;
        let mut used = false;
        while let Some(chain) = next_chain(statusq, mem)? {
            let head = chain.head_index();
            let first: Option<Descriptor> = chain.clone().next();
            let mut raw = [0u8; EVENT_LEN];
            match first {
                Some(d) if !d.is_write_only() && d.len() as usize >= EVENT_LEN => {
                    if mem.read_slice(&mut raw, d.addr()).is_ok() {
                        let t = u16::from_le_bytes([raw[0], raw[1]]);
                        let c = u16::from_le_bytes([raw[2], raw[3]]);
                        let v = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
                        self.shared.status(t, c, v);
                    } else {
                        warn!("virtio-input: status buffer at head {head} outside guest memory");
                    }
                }
                _ => warn!("virtio-input: status buffer at head {head} malformed; ignored"),
            }
            statusq.add_used(mem, head, 0)?;
            used = true;
        }
        if used && queue_needs_interrupt(statusq, mem)? {
            self.interrupt.signal_used_queue(STATUS_QUEUE);
        }
        Ok(())
    }
}

impl WorkerHandler for InputWorker {
    fn register(&mut self, events: &WorkerEvents) -> std::io::Result<()> {
        events.add(&*self.kicks[EVENT_QUEUE], EVENT_KICK)?;
        if self.statusq.is_some() {
            events.add(&*self.kicks[STATUS_QUEUE], STATUS_KICK)?;
        }
        events.add(&self.shared.wake, WAKE)
    }

    fn handle(&mut self, token: Token, _events: &WorkerEvents) {
        let fd: &EventFd = match token {
            EVENT_KICK => &self.kicks[EVENT_QUEUE],
            STATUS_KICK => &self.kicks[STATUS_QUEUE],
            _ => &self.shared.wake,
        };
        let _ = fd.read();
        if self.interrupt.needs_reset() || !self.interrupt.dma_enabled() {
            debug!("virtio-input: event while the device cannot run ignored");
            return;
        }
        let r = match token {
            STATUS_KICK => self.status(),
            _ => self.deliver(),
        };
        if let Err(e) = r {
            self.interrupt
                .signal_needs_reset(&format!("virtio-input queue: {e}"));
        }
    }
}

/// A virtio keyboard or tablet. Put it behind `VirtioPciDevice`; give its
/// handle to the input router.
pub struct VirtioInput {
    kind: InputKind,
    shared: Arc<Shared>,
    select: u8,
    subsel: u8,
    /// The answer to (select, subsel), at most DATA_LEN bytes.
    answer: Vec<u8>,
    worker: Option<Worker<InputWorker>>,
    name: String,
}

impl VirtioInput {
    fn new(kind: InputKind) -> Result<Self> {
        Ok(VirtioInput {
            kind,
            shared: Shared::new()?,
            select: 0,
            subsel: 0,
            answer: Vec::new(),
            worker: None,
            name: match kind {
                InputKind::Keyboard => "virtio-kbd".into(),
                InputKind::Tablet => "virtio-tablet".into(),
            },
        })
    }

    /// A keyboard and the handle the input router sends keys through.
    pub fn keyboard() -> Result<(Self, Arc<VirtioKeyboard>)> {
        let dev = Self::new(InputKind::Keyboard)?;
        let handle = Arc::new(VirtioKeyboard {
            shared: dev.shared.clone(),
        });
        Ok((dev, handle))
    }

    /// A tablet (absolute pointer) and the handle the router moves it with.
    pub fn tablet() -> Result<(Self, Arc<VirtioTablet>)> {
        let dev = Self::new(InputKind::Tablet)?;
        let handle = Arc::new(VirtioTablet {
            shared: dev.shared.clone(),
            last: Mutex::new(TabletState::default()),
        });
        Ok((dev, handle))
    }

    pub fn kind(&self) -> InputKind {
        self.kind
    }

    /// Name the worker thread (15 bytes show in `ps`), e.g. after the PCI slot.
    pub fn set_thread_name(&mut self, name: &str) {
        self.name = name.to_owned();
    }

    fn config_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        c[0] = self.select;
        c[1] = self.subsel;
        c[2] = self.answer.len() as u8;
        c[DATA_OFFSET..DATA_OFFSET + self.answer.len()].copy_from_slice(&self.answer);
        c
    }

    fn stop_worker(&mut self) {
        self.shared.set_active(false);
        if let Some(w) = self.worker.take() {
            w.stop();
        }
    }
}

impl VirtioDevice for VirtioInput {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_INPUT
    }

    fn pci_class(&self) -> u32 {
        PCI_CLASS_INPUT_OTHER
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, _features: u64) {}

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let c = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|a| c.get(a)).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only select (byte 0) and subsel (byte 1) are the driver's.
        let mut changed = false;
        for (i, &b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(0) => self.select = b,
                Some(1) => self.subsel = b,
                _ => {
                    debug!("virtio-input: config write at {offset:#x} ignored");
                    continue;
                }
            }
            changed = true;
        }
        if changed {
            let mut a = self.kind.query(self.select, self.subsel);
            a.truncate(DATA_LEN);
            self.answer = a;
        }
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<()> {
        let mut queues = ctx.queues.into_iter();
        let (Some(eventq), Some(statusq)) = (queues.next(), queues.next()) else {
            return Err(Error::BadRequest("virtio-input needs two queues"));
        };
        if !eventq.ready() {
            debug!("virtio-input: DRIVER_OK without the event queue; events dropped");
            return Ok(());
        }
        let worker = InputWorker {
            shared: self.shared.clone(),
            mem: ctx.mem,
            eventq,
            statusq: statusq.ready().then_some(statusq),
            kicks: ctx.kicks,
            interrupt: ctx.interrupt,
        };
        self.worker = Some(Worker::spawn(&self.name, worker)?);
        self.shared.set_active(true);
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
        self.select = 0;
        self.subsel = 0;
        self.answer.clear();
    }

    fn pause(&mut self) {
        if let Some(w) = &self.worker {
            w.pause();
        }
    }

    fn resume(&mut self) {
        if let Some(w) = &self.worker {
            w.resume();
        }
    }
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
