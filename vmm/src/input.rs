//! The input router: one path from every input source (SPICE clients, QMP) to the
//! guest's input devices, and the guest's keyboard LEDs back out.
//!
//! It models the devices a guest may have: the PS/2 keyboard and mouse, and
//! optionally a virtio keyboard and a virtio tablet (absolute pointer). Keys go
//! to the virtio keyboard while its driver runs and to PS/2 otherwise, as QEMU
//! activates a virtio-input handler at DRIVER_OK (so the firmware and a guest
//! without the driver keep their keyboard); `virtio_only` sends them to the
//! virtio keyboard regardless. A key is released on the device that saw it
//! pressed. Absolute input goes to the tablet; it counts as usable (client
//! mouse mode) while its driver runs, and whoever subscribed is told when that
//! changes. The router tracks what each source holds: the guest sees the union
//! of every source's buttons (a QMP move does not undo a SPICE client's held
//! click), and a source that goes away can have its keys and buttons released
//! without touching the others'. LED changes are pushed by the keyboards (as a
//! [`LedListener`]) and forwarded to whoever subscribed (the SPICE server), so
//! nobody polls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use devices::input::{AbsolutePointer, Keyboard, LedListener, RelativePointer, ABS_MAX};

/// Who sent an input event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Spice,
    Qmp,
}

const SOURCES: usize = 2;

impl Source {
    fn index(self) -> usize {
        match self {
            Source::Spice => 0,
            Source::Qmp => 1,
        }
    }
}

/// Absolute input was sent while the machine has no absolute pointer.
#[derive(Debug, PartialEq, Eq)]
pub struct NoAbsolutePointer;

/// The input devices a machine has.
pub struct InputDevices {
    pub ps2_keyboard: Arc<dyn Keyboard>,
    pub ps2_mouse: Arc<dyn RelativePointer>,
    pub virtio_keyboard: Option<Arc<dyn Keyboard>>,
    pub tablet: Option<Arc<dyn AbsolutePointer>>,
    /// Input for the virtio devices goes to them even while their driver is
    /// not running (`--input virtio`): PS/2 gets no keys.
    pub virtio_only: bool,
}

/// A pointing device, as QMP `query-mice` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MouseInfo {
    pub name: &'static str,
    pub index: u32,
    /// The one that moves with pointer input now.
    pub current: bool,
    pub absolute: bool,
}

#[derive(Default)]
struct Held {
    keys: BTreeSet<u16>,
    buttons: u8,
}

struct State {
    held: [Held; SOURCES],
    /// The absolute pointer's position, kept per axis (QMP may move one axis).
    position: (u32, u32),
    /// Keys held down, and whether the virtio keyboard (true) or PS/2 got the press.
    pressed_on: BTreeMap<u16, bool>,
}

type Callback = Box<dyn Fn(u8) + Send + Sync>;

pub struct InputRouter {
    devices: InputDevices,
    /// Held while an event reaches its device, so events of different sources
    /// reach the devices in one order.
    state: Mutex<State>,
    leds: AtomicU8,
    /// Never locked together with `state` (the keyboard calls `leds_changed` with
    /// its own lock held, which `state`'s holders take after it).
    led_listeners: Mutex<Vec<Callback>>,
    /// Told `has_absolute()` (as 0/1) when it may have changed.
    absolute_listeners: Mutex<Vec<Callback>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl InputRouter {
    /// A router for PS/2 devices and, optionally, an absolute pointer.
    #[cfg(test)]
    pub fn new(
        keyboard: Arc<dyn Keyboard>,
        relative: Arc<dyn RelativePointer>,
        absolute: Option<Arc<dyn AbsolutePointer>>,
    ) -> Arc<InputRouter> {
        Self::with_devices(InputDevices {
            ps2_keyboard: keyboard,
            ps2_mouse: relative,
            virtio_keyboard: None,
            tablet: absolute,
            virtio_only: false,
        })
    }

    pub fn with_devices(devices: InputDevices) -> Arc<InputRouter> {
        Arc::new(InputRouter {
            devices,
            state: Mutex::new(State {
                held: Default::default(),
                position: (ABS_MAX / 2, ABS_MAX / 2),
                pressed_on: BTreeMap::new(),
            }),
            leds: AtomicU8::new(0),
            led_listeners: Mutex::new(Vec::new()),
            absolute_listeners: Mutex::new(Vec::new()),
        })
    }

    /// Whether absolute input reaches a pointer now: a tablet whose driver runs
    /// (or any tablet with `virtio_only`). What SPICE's client mouse mode needs.
    pub fn has_absolute(&self) -> bool {
        self.devices
            .tablet
            .as_ref()
            .is_some_and(|t| self.devices.virtio_only || t.active())
    }

    /// Whether the machine has a tablet at all (QMP takes `abs` events then).
    pub fn has_tablet(&self) -> bool {
        self.devices.tablet.is_some()
    }

    /// The pointing devices, the current one first (as QEMU lists them).
    pub fn mice(&self) -> Vec<MouseInfo> {
        let abs = self.has_absolute();
        let mut mice = vec![MouseInfo {
            name: "QEMU PS/2 Mouse",
            index: 0,
            current: !abs,
            absolute: false,
        }];
        if self.has_tablet() {
            let tablet = MouseInfo {
                name: "QEMU Virtio Tablet",
                index: 1,
                current: abs,
                absolute: true,
            };
            mice.insert(usize::from(!abs), tablet);
        }
        mice
    }

    /// The keyboard a press goes to now: true for the virtio one.
    fn virtio_keys(&self) -> bool {
        self.devices
            .virtio_keyboard
            .as_ref()
            .is_some_and(|k| self.devices.virtio_only || k.active())
    }

    fn keyboard(&self, virtio: bool) -> &Arc<dyn Keyboard> {
        match (&self.devices.virtio_keyboard, virtio) {
            (Some(k), true) => k,
            _ => &self.devices.ps2_keyboard,
        }
    }

    /// A key press or release (PC set-1 code, 0xE0xx extended, 0xE11D Pause).
    /// Repeated presses pass through: they are the typematic repeat.
    pub fn key(&self, src: Source, xt_scancode: u16, pressed: bool) {
        let mut st = lock(&self.state);
        let virtio = if pressed {
            st.held[src.index()].keys.insert(xt_scancode);
            let v = self.virtio_keys();
            st.pressed_on.insert(xt_scancode, v);
            v
        } else {
            st.held[src.index()].keys.remove(&xt_scancode);
            st.pressed_on
                .remove(&xt_scancode)
                .unwrap_or_else(|| self.virtio_keys())
        };
        self.keyboard(virtio).key(xt_scancode, pressed);
    }

    fn all_buttons(st: &State) -> u8 {
        st.held.iter().fold(0, |b, h| b | h.buttons)
    }

    /// Relative motion with `src`'s whole button state; the guest sees every
    /// source's buttons together.
    pub fn relative(&self, src: Source, dx: i32, dy: i32, dz: i32, buttons: u8) {
        let mut st = lock(&self.state);
        st.held[src.index()].buttons = buttons;
        self.devices
            .ps2_mouse
            .motion(dx, dy, dz, Self::all_buttons(&st));
    }

    /// An absolute position (0..=ABS_MAX; an axis not given keeps its value) with
    /// `src`'s whole button state. Reaches the tablet only while its driver runs.
    pub fn absolute(
        &self,
        src: Source,
        x: Option<u32>,
        y: Option<u32>,
        dz: i32,
        buttons: u8,
    ) -> Result<(), NoAbsolutePointer> {
        let tablet = self.devices.tablet.as_ref().ok_or(NoAbsolutePointer)?;
        let mut st = lock(&self.state);
        st.held[src.index()].buttons = buttons;
        if let Some(x) = x {
            st.position.0 = x.min(ABS_MAX);
        }
        if let Some(y) = y {
            st.position.1 = y.min(ABS_MAX);
        }
        let (x, y) = st.position;
        tablet.position(x, y, dz, Self::all_buttons(&st));
        Ok(())
    }

    /// The buttons `src` holds.
    pub fn buttons(&self, src: Source) -> u8 {
        lock(&self.state).held[src.index()].buttons
    }

    /// Releases every key and button `src` still holds (its client went away);
    /// other sources' keys and buttons stay held.
    pub fn release_all(&self, src: Source) {
        let mut st = lock(&self.state);
        let held = std::mem::take(&mut st.held[src.index()]);
        for &k in held.keys.iter().rev() {
            let virtio = st
                .pressed_on
                .remove(&k)
                .unwrap_or_else(|| self.virtio_keys());
            self.keyboard(virtio).key(k, false);
        }
        if held.buttons != 0 {
            let buttons = Self::all_buttons(&st);
            self.devices.ps2_mouse.motion(0, 0, 0, buttons);
            if let Some(t) = &self.devices.tablet {
                let (x, y) = st.position;
                t.position(x, y, 0, buttons);
            }
        }
    }

    /// The keyboard LEDs as the guest last set them (bit 0 scroll, 1 num, 2 caps).
    pub fn leds(&self) -> u8 {
        self.leds.load(Ordering::SeqCst)
    }

    /// Calls `f` with the new LED state whenever the guest changes it.
    pub fn on_leds(&self, f: impl Fn(u8) + Send + Sync + 'static) {
        lock(&self.led_listeners).push(Box::new(f));
    }

    /// Calls `f` with `has_absolute()` whenever the tablet's driver starts or
    /// stops. Called with a device's lock held: only record or forward.
    pub fn on_absolute_change(&self, f: impl Fn(bool) + Send + Sync + 'static) {
        lock(&self.absolute_listeners).push(Box::new(move |v| f(v != 0)));
    }

    /// The tablet's driver started or stopped (the tablet's hook calls this).
    pub fn absolute_changed(&self) {
        let now = u8::from(self.has_absolute());
        for f in lock(&self.absolute_listeners).iter() {
            f(now);
        }
    }
}

impl LedListener for InputRouter {
    fn leds_changed(&self, leds: u8) {
        self.leds.store(leds, Ordering::SeqCst);
        for f in lock(&self.led_listeners).iter() {
            f(leds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::interrupt::NoIrq;
    use devices::legacy::i8042::I8042;
    use devices::{BusDevice, VmRequest, VmRequests};

    struct NoRequests;
    impl VmRequests for NoRequests {
        fn request(&self, _: VmRequest) {}
    }

    /// The machine's devices: a real i8042, and a tablet that records.
    struct Rig {
        i8042: Arc<Mutex<I8042>>,
        tablet: Arc<Tablet>,
        router: Arc<InputRouter>,
    }

    #[derive(Default)]
    struct Tablet(Mutex<Vec<(u32, u32, i32, u8)>>);
    impl AbsolutePointer for Tablet {
        fn position(&self, x: u32, y: u32, dz: i32, buttons: u8) {
            self.0.lock().unwrap().push((x, y, dz, buttons));
        }
    }

    fn rig(with_tablet: bool) -> Rig {
        let i8042 = Arc::new(Mutex::new(I8042::new(
            Arc::new(NoIrq),
            Arc::new(NoIrq),
            Arc::new(NoRequests),
        )));
        let tablet = Arc::new(Tablet::default());
        let router = InputRouter::new(
            i8042.clone(),
            i8042.clone(),
            with_tablet.then(|| tablet.clone() as Arc<dyn AbsolutePointer>),
        );
        i8042.lock().unwrap().set_led_listener(router.clone());
        let mut r = Rig {
            i8042,
            tablet,
            router,
        };
        // As a guest driver does: mouse reporting on, keyboard untranslated (set 2
        // is fine: we only count bytes and read the mouse's packets).
        r.put_aux(0xf4);
        r.drain();
        r
    }

    impl Rig {
        fn port_write(&mut self, port: u64, v: u8) {
            self.i8042.lock().unwrap().write(0x60, port, &[v]);
        }
        fn put_aux(&mut self, v: u8) {
            self.port_write(4, 0xd4);
            self.port_write(0, v);
        }
        /// (keyboard bytes, mouse bytes) waiting in the controller.
        fn drain(&mut self) -> (Vec<u8>, Vec<u8>) {
            let (mut k, mut m) = (Vec::new(), Vec::new());
            loop {
                let mut st = [0u8];
                self.i8042.lock().unwrap().read(0x60, 4, &mut st);
                if st[0] & 1 == 0 {
                    return (k, m);
                }
                let mut b = [0u8];
                self.i8042.lock().unwrap().read(0x60, 0, &mut b);
                if st[0] & 0x20 != 0 { &mut m } else { &mut k }.push(b[0]);
            }
        }
    }

    #[test]
    fn spice_and_qmp_reach_the_same_devices_in_order() {
        let mut r = rig(false);
        r.router.key(Source::Spice, 0x1e, true);
        r.router.key(Source::Qmp, 0x30, true);
        r.router.key(Source::Qmp, 0x30, false);
        r.router.key(Source::Spice, 0x1e, false);
        // Set 2 (no translation after the BIOS-less power-on): A = 1C, B = 32.
        assert_eq!(r.drain().0, vec![0x1c, 0x32, 0xf0, 0x32, 0xf0, 0x1c]);
    }

    #[test]
    fn buttons_of_every_source_are_merged() {
        let mut r = rig(false);
        // A SPICE client holds the left button; a QMP move must not release it.
        r.router.relative(Source::Spice, 0, 0, 0, 1);
        r.router
            .relative(Source::Qmp, 5, 0, 0, r.router.buttons(Source::Qmp));
        r.router.relative(Source::Qmp, 0, 0, 0, 2);
        let packets = r.drain().1;
        // Byte 0 of each 3-byte packet: bit 3 always, then the buttons.
        let states: Vec<u8> = packets.chunks(3).map(|p| p[0] & 7).collect();
        assert_eq!(states, vec![1, 1, 3]);
        assert_eq!(r.router.buttons(Source::Spice), 1);
        assert_eq!(r.router.buttons(Source::Qmp), 2);
        assert_eq!(r.i8042.lock().unwrap().mouse_buttons(), 3);
        // The SPICE client goes away: its button and keys are released, QMP's stay.
        r.router.key(Source::Spice, 0x1e, true);
        r.router.key(Source::Spice, 0xe01d, true);
        r.router.key(Source::Qmp, 0x30, true);
        r.drain();
        r.router.release_all(Source::Spice);
        let (keys, mouse) = r.drain();
        // Right Ctrl (E0 14) then A (1C) released; B (32) still down.
        assert_eq!(keys, vec![0xe0, 0xf0, 0x14, 0xf0, 0x1c]);
        assert_eq!(mouse[0] & 7, 2);
        r.router.release_all(Source::Spice);
        assert_eq!(r.drain(), (vec![], vec![]));
    }

    #[test]
    fn absolute_needs_a_tablet_and_keeps_axes() {
        let r = rig(false);
        assert!(!r.router.has_absolute());
        assert_eq!(
            r.router.absolute(Source::Qmp, Some(1), None, 0, 0),
            Err(NoAbsolutePointer)
        );
        let r = rig(true);
        assert!(r.router.has_absolute());
        r.router
            .absolute(Source::Spice, Some(100), Some(200), 0, 1)
            .unwrap();
        r.router
            .absolute(Source::Qmp, None, Some(u32::MAX), -1, 2)
            .unwrap();
        assert_eq!(
            *r.tablet.0.lock().unwrap(),
            vec![(100, 200, 0, 1), (100, ABS_MAX, -1, 3)]
        );
    }

    #[test]
    fn guest_led_changes_are_pushed() {
        let mut r = rig(false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        r.router.on_leds(move |l| s.lock().unwrap().push(l));
        // The guest's driver sets Caps Lock: ED 04.
        r.port_write(0, 0xed);
        r.port_write(0, 0x04);
        assert_eq!(*seen.lock().unwrap(), vec![4]);
        assert_eq!(r.router.leds(), 4);
    }

    /// A virtio device whose driver can be started and stopped.
    #[derive(Default)]
    struct Virtio {
        on: std::sync::atomic::AtomicBool,
        log: Mutex<Vec<String>>,
    }
    impl Virtio {
        fn set(&self, on: bool) {
            self.on.store(on, Ordering::SeqCst);
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.log.lock().unwrap())
        }
    }
    impl Keyboard for Virtio {
        fn key(&self, sc: u16, pressed: bool) {
            self.log
                .lock()
                .unwrap()
                .push(format!("key {sc:#x} {pressed}"));
        }
        fn active(&self) -> bool {
            self.on.load(Ordering::SeqCst)
        }
    }
    impl AbsolutePointer for Virtio {
        fn position(&self, x: u32, y: u32, dz: i32, buttons: u8) {
            self.log
                .lock()
                .unwrap()
                .push(format!("abs {x} {y} {dz} {buttons}"));
        }
        fn active(&self) -> bool {
            self.on.load(Ordering::SeqCst)
        }
    }

    fn virtio_rig(virtio_only: bool) -> (Rig, Arc<Virtio>, Arc<Virtio>) {
        let mut r = rig(false);
        let (kbd, tab) = (Arc::new(Virtio::default()), Arc::new(Virtio::default()));
        r.router = InputRouter::with_devices(InputDevices {
            ps2_keyboard: r.i8042.clone(),
            ps2_mouse: r.i8042.clone(),
            virtio_keyboard: Some(kbd.clone()),
            tablet: Some(tab.clone()),
            virtio_only,
        });
        (r, kbd, tab)
    }

    #[test]
    fn keys_follow_the_virtio_driver_and_release_where_pressed() {
        let (mut r, kbd, tab) = virtio_rig(false);
        // No driver yet (firmware, early boot): PS/2 gets the keys.
        r.router.key(Source::Spice, 0x1e, true);
        assert_eq!(r.drain().0, vec![0x1c]);
        kbd.set(true);
        r.router.key(Source::Qmp, 0x30, true);
        // Released on PS/2, where it went down, though virtio runs now.
        r.router.key(Source::Spice, 0x1e, false);
        assert_eq!(r.drain().0, vec![0xf0, 0x1c]);
        assert_eq!(kbd.take(), ["key 0x30 true"]);
        kbd.set(false);
        r.router.release_all(Source::Qmp);
        assert_eq!(kbd.take(), ["key 0x30 false"]);
        assert_eq!(r.drain().0, Vec::<u8>::new());
        // The tablet counts once its driver runs; the listeners hear of it.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        r.router
            .on_absolute_change(move |a| s.lock().unwrap().push(a));
        assert!(r.router.has_tablet() && !r.router.has_absolute());
        assert_eq!(r.router.mice()[0].name, "QEMU PS/2 Mouse");
        assert!(r.router.mice()[0].current);
        tab.set(true);
        r.router.absolute_changed();
        assert!(r.router.has_absolute());
        let mice = r.router.mice();
        assert_eq!(
            (mice[0].name, mice[0].current),
            ("QEMU Virtio Tablet", true)
        );
        assert_eq!((mice[1].name, mice[1].current), ("QEMU PS/2 Mouse", false));
        assert_eq!(*seen.lock().unwrap(), [true]);
        // A client holding a tablet button goes away: the tablet hears the release.
        r.router
            .absolute(Source::Spice, Some(10), Some(20), 0, 1)
            .unwrap();
        r.router.release_all(Source::Spice);
        assert_eq!(tab.take(), ["abs 10 20 0 1", "abs 10 20 0 0"]);
    }

    #[test]
    fn virtio_only_sends_everything_to_virtio() {
        let (mut r, kbd, _tab) = virtio_rig(true);
        r.router.key(Source::Spice, 0x1e, true);
        assert_eq!(kbd.take(), ["key 0x1e true"]);
        assert_eq!(r.drain().0, Vec::<u8>::new());
        assert!(r.router.has_absolute());
    }
}
