//! The i8042 keyboard controller: ports 0x60 (data) and 0x64 (status / command),
//! a PS/2 keyboard on its first port and a PS/2 mouse on the AUX port.
//!
//! One byte at a time is visible in the output buffer; it comes from the
//! controller itself (command replies), the keyboard (translated to set 1 when the
//! command byte says so) or the mouse. IRQ1 / IRQ12 are high while the buffer holds
//! a keyboard / mouse byte and the command byte enables that interrupt, and drop
//! when the guest reads it, so each byte is a fresh edge on the ISA pin.

use std::collections::VecDeque;
use std::sync::Arc;

use tracing::debug;

use super::ps2_keyboard::{translate_to_set1, Ps2Keyboard, BREAK_PREFIX};
use super::ps2_mouse::Ps2Mouse;
use crate::input::LedListener;
use crate::interrupt::LevelTracker;
use crate::{BusDevice, IrqLine, Reset, VmRequest, VmRequests};

/// Register with this base and length; offsets 0 (0x60) and 4 (0x64) are decoded.
pub const BASE: u64 = 0x60;
pub const LEN: u64 = 5;
/// The keyboard (port 1) and mouse (port 2) ISA IRQs.
pub const KEYBOARD_IRQ: u8 = 1;
pub const MOUSE_IRQ: u8 = 12;
const DATA: u64 = 0;
const STATUS_CMD: u64 = 4;

// Status register.
const STS_OBF: u8 = 0x01;
const STS_SYS: u8 = 0x04;
const STS_CMD: u8 = 0x08;
const STS_UNLOCKED: u8 = 0x10;
const STS_AUX: u8 = 0x20;

// Command byte (CTR).
const CTR_KBDINT: u8 = 0x01;
const CTR_AUXINT: u8 = 0x02;
const CTR_SYS: u8 = 0x04;
const CTR_KBDDIS: u8 = 0x10;
const CTR_AUXDIS: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;

// Output port (0xD0/0xD1).
const OUT_RESET_N: u8 = 0x01;
const OUT_A20: u8 = 0x02;
const OUT_OBF: u8 = 0x10;
const OUT_AUX_OBF: u8 = 0x20;

/// Controller replies waiting behind the output buffer: a handful at most, since
/// each command produces one; the bound only matters to a guest spamming commands.
const CTRL_QUEUE_CAP: usize = 8;

/// Power-on command byte, as QEMU has it: both interrupts on, no translation. The
/// BIOS sets its own; a directly booted Linux then drives the keyboard in set 2.
const CTR_POWER_ON: u8 = CTR_KBDINT | CTR_AUXINT;

#[derive(Clone, Copy)]
struct OutByte {
    value: u8,
    aux: bool,
}

pub struct I8042 {
    /// The controller's 32 bytes of RAM (0x20-0x3F read, 0x60-0x7F write); byte 0 is the CTR.
    ram: [u8; 32],
    obf: Option<OutByte>,
    /// What a read of 0x60 with an empty buffer returns: the last byte read.
    last_read: u8,
    ctrl_out: VecDeque<OutByte>,
    /// A command waiting for its data byte on port 0x60.
    pending: Option<u8>,
    /// Status bit 2: set by self-test or by writing the CTR with SYS.
    sys: bool,
    /// Status bit 3: the last write went to 0x64.
    last_was_cmd: bool,
    /// Translation met a set 2 break prefix; the next byte gets bit 7.
    xlate_break: bool,
    outport: u8,
    kbd: Ps2Keyboard,
    mouse: Ps2Mouse,
    kbd_irq: LevelTracker,
    aux_irq: LevelTracker,
    requests: Arc<dyn VmRequests>,
    /// Told when the guest changes the keyboard LEDs, and the state it was last told.
    led_listener: Option<Arc<dyn LedListener>>,
    told_leds: u8,
}

impl I8042 {
    /// `kbd_irq` is IRQ1, `aux_irq` IRQ12; resets (0xFE, output port bit 0) go to `requests`.
    pub fn new(
        kbd_irq: Arc<dyn IrqLine>,
        aux_irq: Arc<dyn IrqLine>,
        requests: Arc<dyn VmRequests>,
    ) -> Self {
        Self::power_on(
            LevelTracker::new(kbd_irq),
            LevelTracker::new(aux_irq),
            requests,
        )
    }

    /// Power-on state driving the given pins (which keep their last levels).
    fn power_on(
        kbd_irq: LevelTracker,
        aux_irq: LevelTracker,
        requests: Arc<dyn VmRequests>,
    ) -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CTR_POWER_ON;
        Self {
            ram,
            obf: None,
            last_read: 0,
            ctrl_out: VecDeque::with_capacity(CTRL_QUEUE_CAP),
            pending: None,
            sys: false,
            last_was_cmd: true,
            xlate_break: false,
            outport: OUT_RESET_N | OUT_A20,
            kbd: Ps2Keyboard::new(),
            mouse: Ps2Mouse::new(),
            kbd_irq,
            aux_irq,
            requests,
            led_listener: None,
            told_leds: 0,
        }
    }

    /// Pushes every change of the keyboard LEDs the guest makes (command 0xED,
    /// and the resets that clear them) to `listener`, so nobody needs to poll.
    pub fn set_led_listener(&mut self, listener: Arc<dyn LedListener>) {
        self.told_leds = self.kbd.leds();
        self.led_listener = Some(listener);
    }

    fn tell_leds(&mut self) {
        let leds = self.kbd.leds();
        if leds != self.told_leds {
            self.told_leds = leds;
            if let Some(l) = &self.led_listener {
                l.leds_changed(leds);
            }
        }
    }

    /// Host key press/release, as a PC XT (set 1) code; 0xE0xx for extended keys,
    /// 0xE11D for Pause. See `Ps2Keyboard::key_event`.
    pub fn key_event(&mut self, xt_scancode: u16, pressed: bool) {
        self.kbd.key_event(xt_scancode, pressed);
        self.refill();
    }

    /// Host mouse motion: dx right, dy **down** (screen convention), dz towards the
    /// user; buttons bit 0 left, 1 right, 2 middle. See `Ps2Mouse::mouse_event`.
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.mouse.mouse_event(dx, dy, dz, buttons);
        self.refill();
    }

    /// The mouse buttons held now (bit 0 left, 1 right, 2 middle), from every
    /// input source (SPICE, QMP), so each can press or release one without
    /// undoing the others.
    pub fn mouse_buttons(&self) -> u8 {
        self.mouse.buttons()
    }

    /// The last LED byte the guest sent to the keyboard (bit 0 scroll, 1 num, 2 caps).
    pub fn leds(&self) -> u8 {
        self.kbd.leds()
    }

    fn ctr(&self) -> u8 {
        self.ram[0]
    }

    fn set_ctr(&mut self, v: u8) {
        self.ram[0] = v;
    }

    fn reply(&mut self, value: u8, aux: bool) {
        if self.ctrl_out.len() >= CTRL_QUEUE_CAP {
            debug!(value, "i8042 reply queue full, dropping");
            return;
        }
        self.ctrl_out.push_back(OutByte { value, aux });
    }

    /// Load the output buffer if it is empty, then drive the IRQ lines.
    fn refill(&mut self) {
        if self.obf.is_none() {
            self.obf = self.next_byte();
        }
        self.update_irqs();
    }

    fn next_byte(&mut self) -> Option<OutByte> {
        if let Some(b) = self.ctrl_out.pop_front() {
            return Some(b);
        }
        // A disabled port (clock inhibited) keeps its device's bytes in the device.
        if self.ctr() & CTR_KBDDIS == 0 {
            while let Some(b) = self.kbd.pop() {
                if self.ctr() & CTR_XLATE == 0 {
                    return Some(OutByte {
                        value: b,
                        aux: false,
                    });
                }
                if b == BREAK_PREFIX {
                    self.xlate_break = true;
                    continue;
                }
                let mut value = translate_to_set1(b);
                if std::mem::take(&mut self.xlate_break) {
                    value |= 0x80;
                }
                return Some(OutByte { value, aux: false });
            }
        }
        if self.ctr() & CTR_AUXDIS == 0 {
            if let Some(value) = self.mouse.pop() {
                return Some(OutByte { value, aux: true });
            }
        }
        None
    }

    fn update_irqs(&mut self) {
        let (kbd, aux) = match self.obf {
            Some(b) if b.aux => (false, self.ctr() & CTR_AUXINT != 0),
            Some(_) => (self.ctr() & CTR_KBDINT != 0, false),
            None => (false, false),
        };
        self.kbd_irq.set(kbd);
        self.aux_irq.set(aux);
    }

    fn status(&self) -> u8 {
        let mut s = STS_UNLOCKED;
        if let Some(b) = self.obf {
            s |= STS_OBF;
            if b.aux {
                s |= STS_AUX;
            }
        }
        if self.sys {
            s |= STS_SYS;
        }
        if self.last_was_cmd {
            s |= STS_CMD;
        }
        s
    }

    fn read_data(&mut self) -> u8 {
        if let Some(b) = self.obf.take() {
            self.last_read = b.value;
            // Lower the line first so that a following byte makes a new edge.
            self.update_irqs();
            self.refill();
        }
        self.last_read
    }

    fn write_command(&mut self, cmd: u8) {
        self.last_was_cmd = true;
        // A new command abandons one still waiting for its data byte.
        self.pending = None;
        match cmd {
            0x20..=0x3f => self.reply(self.ram[(cmd - 0x20) as usize], false),
            0x60..=0x7f | 0xd1..=0xd4 => self.pending = Some(cmd),
            0xa7 => self.set_ctr(self.ctr() | CTR_AUXDIS),
            0xa8 => self.set_ctr(self.ctr() & !CTR_AUXDIS),
            0xa9 | 0xab => self.reply(0x00, false), // interface tests pass
            0xaa => {
                self.sys = true;
                self.reply(0x55, false);
            }
            0xad => self.set_ctr(self.ctr() | CTR_KBDDIS),
            0xae => self.set_ctr(self.ctr() & !CTR_KBDDIS),
            0xc0 => self.reply(0x80, false), // input port: keyboard not inhibited
            0xd0 => {
                let mut v = self.outport & !(OUT_OBF | OUT_AUX_OBF);
                match self.obf {
                    Some(b) if b.aux => v |= OUT_AUX_OBF,
                    Some(_) => v |= OUT_OBF,
                    None => {}
                }
                self.reply(v, false);
            }
            0xdd => self.outport &= !OUT_A20,
            0xdf => self.outport |= OUT_A20,
            // Pulse output port bits 0-3 low for the bits that are 0 in the
            // command; bit 0 is the CPU reset line.
            0xf0..=0xff => {
                if cmd & 1 == 0 {
                    self.requests.request(VmRequest::Reset);
                }
            }
            _ => debug!(cmd, "unknown i8042 command"),
        }
        self.refill();
    }

    fn write_data(&mut self, v: u8) {
        self.last_was_cmd = false;
        match self.pending.take() {
            Some(c @ 0x60..=0x7f) => {
                self.ram[(c - 0x60) as usize] = v;
                if c == 0x60 {
                    self.sys = v & CTR_SYS != 0;
                }
            }
            Some(0xd1) => {
                self.outport = v;
                if v & OUT_RESET_N == 0 {
                    self.requests.request(VmRequest::Reset);
                }
            }
            Some(0xd2) => self.reply(v, false),
            Some(0xd3) => self.reply(v, true),
            Some(_) => {
                // 0xD4. Talking to a port re-enables its clock (QEMU does the same).
                self.set_ctr(self.ctr() & !CTR_AUXDIS);
                self.mouse.write(v);
            }
            None => {
                self.set_ctr(self.ctr() & !CTR_KBDDIS);
                self.kbd.write(v);
            }
        }
        self.refill();
    }
}

impl Reset for I8042 {
    /// Machine reset: controller, keyboard and mouse back to power-on state.
    fn reset(&mut self) {
        // The pins carry their levels over, so update_irqs() lowers lines that
        // were high.
        let kbd_irq = std::mem::take(&mut self.kbd_irq);
        let aux_irq = std::mem::take(&mut self.aux_irq);
        let (listener, told) = (self.led_listener.take(), self.told_leds);
        *self = Self::power_on(kbd_irq, aux_irq, self.requests.clone());
        self.led_listener = listener;
        self.told_leds = told;
        self.tell_leds();
        self.update_irqs();
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset.checked_add(i as u64) {
                Some(DATA) => self.read_data(),
                Some(STATUS_CMD) => self.status(),
                _ => {
                    debug!(offset, "i8042 read of an undecoded port");
                    0xff
                }
            };
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(DATA) => self.write_data(b),
                Some(STATUS_CMD) => self.write_command(b),
                _ => debug!(offset, "i8042 write to an undecoded port"),
            }
        }
        self.tell_leds();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::{RecordingLine, RecordingRequests};

    struct Rig {
        dev: I8042,
        kbd: Arc<RecordingLine>,
        aux: Arc<RecordingLine>,
        req: Arc<RecordingRequests>,
    }

    fn rig() -> Rig {
        let kbd = Arc::new(RecordingLine::default());
        let aux = Arc::new(RecordingLine::default());
        let req = Arc::new(RecordingRequests::default());
        let dev = I8042::new(kbd.clone(), aux.clone(), req.clone());
        Rig { dev, kbd, aux, req }
    }

    impl Rig {
        fn status(&mut self) -> u8 {
            let mut b = [0];
            self.dev.read(BASE, STATUS_CMD, &mut b);
            b[0]
        }
        fn data(&mut self) -> u8 {
            let mut b = [0];
            self.dev.read(BASE, DATA, &mut b);
            b[0]
        }
        fn cmd(&mut self, c: u8) {
            self.dev.write(BASE, STATUS_CMD, &[c]);
        }
        fn put(&mut self, v: u8) {
            self.dev.write(BASE, DATA, &[v]);
        }
        /// Read everything pending, as (byte, from AUX).
        fn drain(&mut self) -> Vec<(u8, bool)> {
            let mut v = Vec::new();
            while self.status() & STS_OBF != 0 {
                let aux = self.status() & STS_AUX != 0;
                v.push((self.data(), aux));
                assert!(v.len() <= 64, "output never drains");
            }
            v
        }
        fn kbd_bytes(&mut self) -> Vec<u8> {
            self.drain()
                .into_iter()
                .map(|(b, aux)| {
                    assert!(!aux);
                    b
                })
                .collect()
        }
    }

    /// The SeaBIOS ps2port.c keyboard setup, step by step.
    fn seabios_setup(r: &mut Rig) {
        assert!(r.drain().is_empty());
        r.cmd(0xaa);
        assert_eq!(r.kbd_bytes(), [0x55]);
        assert_ne!(r.status() & STS_SYS, 0);
        r.cmd(0xab);
        assert_eq!(r.kbd_bytes(), [0x00]);
        // __ps2_command: CTR with both ports disabled, then the keyboard enabled.
        let base_ctr = CTR_KBDDIS | CTR_AUXDIS;
        for (c, args) in [(0xffu8, &[][..]), (0xf5, &[]), (0xf0, &[0x02])] {
            r.cmd(0x60);
            r.put(base_ctr);
            r.cmd(0x60);
            r.put(base_ctr & !CTR_KBDDIS);
            r.put(c);
            let mut got = r.kbd_bytes();
            for &a in args {
                r.put(a);
                got.extend(r.kbd_bytes());
            }
            let want: &[u8] = match c {
                0xff => &[0xfa, 0xaa],
                0xf0 => &[0xfa, 0xfa],
                _ => &[0xfa],
            };
            assert_eq!(got, want, "command {c:#x}");
        }
        let ctr = CTR_AUXDIS | CTR_XLATE | CTR_KBDINT;
        r.cmd(0x60);
        r.put(ctr);
        r.put(0xf4);
        assert_eq!(r.kbd_bytes(), [0xfa]);
        r.cmd(0x20);
        assert_eq!(r.kbd_bytes(), [ctr]);
    }

    #[test]
    fn seabios_keyboard_setup_then_translated_keys() {
        let mut r = rig();
        seabios_setup(&mut r);
        let edges_before = r.kbd.rising_edges();
        r.dev.key_event(0x1e, true);
        assert!(r.kbd.is_high(), "IRQ1 raised for a key");
        assert_eq!(r.kbd_bytes(), [0x1e]);
        assert!(!r.kbd.is_high(), "IRQ1 dropped once read");
        r.dev.key_event(0x1e, false);
        r.dev.key_event(0xe01d, true);
        r.dev.key_event(0xe01d, false);
        assert_eq!(r.kbd_bytes(), [0x9e, 0xe0, 0x1d, 0xe0, 0x9d]);
        // One edge per byte: the line falls on each read, rises for the next byte.
        assert_eq!(r.kbd.rising_edges() - edges_before, 6);
        // The keyboard ID reads as AB 41 through translation.
        r.put(0xf2);
        assert_eq!(r.kbd_bytes(), [0xfa, 0xab, 0x41]);
        assert!(r.aux.levels.lock().unwrap().is_empty());
    }

    #[test]
    fn untranslated_keys_are_set_2() {
        let mut r = rig();
        r.dev.key_event(0xe01d, true);
        r.dev.key_event(0xe01d, false);
        assert_eq!(r.kbd_bytes(), [0xe0, 0x14, 0xe0, 0xf0, 0x14]);
        r.put(0xf2);
        assert_eq!(r.kbd_bytes(), [0xfa, 0xab, 0x83]);
    }

    /// Linux i8042.c: self-test, CTR read/write, AUX loopback and bit tests, the
    /// IRQ12 delivery test, then psmouse through 0xD4.
    #[test]
    fn linux_i8042_probe_and_psmouse() {
        let mut r = rig();
        r.cmd(0xaa);
        assert_eq!(r.kbd_bytes(), [0x55]);
        r.cmd(0x20);
        let ctr = r.kbd_bytes()[0];
        assert_eq!(ctr, CTR_POWER_ON);
        let ctr = (ctr | CTR_KBDDIS) & !CTR_KBDINT & !CTR_AUXINT;
        r.cmd(0x60);
        r.put(ctr);
        // i8042_check_aux: loopback must come back as AUX data.
        r.cmd(0xd3);
        r.put(0x5a);
        assert_eq!(r.drain(), [(0x5a, true)]);
        // Not a MUX: the third loopback byte comes back unchanged.
        for b in [0xf0, 0x56, 0xa4] {
            r.cmd(0xd3);
            r.put(b);
            assert_eq!(r.drain(), [(b, true)]);
        }
        r.cmd(0xa7);
        r.cmd(0x20);
        assert_ne!(r.kbd_bytes()[0] & CTR_AUXDIS, 0);
        r.cmd(0xa8);
        r.cmd(0x20);
        assert_eq!(r.kbd_bytes()[0] & CTR_AUXDIS, 0);
        r.cmd(0xa9);
        assert_eq!(r.kbd_bytes(), [0x00]);
        // IRQ delivery test: AUXINT on, loopback 0xA5 arrives on IRQ12.
        r.cmd(0x60);
        r.put((ctr | CTR_AUXINT) & !CTR_AUXDIS);
        r.cmd(0xd3);
        r.put(0xa5);
        assert!(r.aux.is_high());
        assert!(!r.kbd.is_high());
        assert_eq!(r.drain(), [(0xa5, true)]);
        assert!(!r.aux.is_high());
        // psmouse: reset, ID, IntelliMouse knock, enable, then a packet.
        let mouse = |r: &mut Rig, b: u8| {
            r.cmd(0xd4);
            r.put(b);
            r.drain()
        };
        let aux = |v: &[u8]| v.iter().map(|&b| (b, true)).collect::<Vec<_>>();
        assert_eq!(mouse(&mut r, 0xff), aux(&[0xfa, 0xaa, 0x00]));
        assert_eq!(mouse(&mut r, 0xf2), aux(&[0xfa, 0x00]));
        for rate in [200, 100, 80] {
            assert_eq!(mouse(&mut r, 0xf3), aux(&[0xfa]));
            assert_eq!(mouse(&mut r, rate), aux(&[0xfa]));
        }
        assert_eq!(mouse(&mut r, 0xf2), aux(&[0xfa, 0x03]));
        assert_eq!(mouse(&mut r, 0xf4), aux(&[0xfa]));
        r.dev.mouse_event(3, -2, 1, 0b010);
        assert!(r.aux.is_high());
        assert_eq!(r.drain(), aux(&[0x0a, 3, 2, 1]));
    }

    #[test]
    fn disabled_ports_hold_their_bytes() {
        let mut r = rig();
        r.cmd(0xad);
        r.dev.key_event(0x1e, true);
        assert_eq!(r.status() & STS_OBF, 0);
        r.cmd(0xae);
        assert_eq!(r.kbd_bytes(), [0x1c]);
        // Mouse data waits while AUX is disabled.
        r.cmd(0xd4);
        r.put(0xf4);
        assert_eq!(r.drain(), [(0xfa, true)]);
        r.cmd(0xa7);
        r.dev.mouse_event(1, 0, 0, 0);
        assert!(r.drain().is_empty());
        r.cmd(0xa8);
        assert_eq!(r.drain(), [(0x08, true), (1, true), (0, true)]);
    }

    #[test]
    fn interrupt_masks_follow_the_command_byte() {
        let mut r = rig();
        r.cmd(0x60);
        r.put(0x00);
        r.dev.key_event(0x1e, true);
        assert!(!r.kbd.is_high());
        r.cmd(0x60);
        r.put(CTR_KBDINT);
        assert!(
            r.kbd.is_high(),
            "enabling KBDINT with a byte waiting raises IRQ1"
        );
        assert_eq!(r.kbd_bytes(), [0x1c]);
    }

    #[test]
    fn resets() {
        let mut r = rig();
        r.cmd(0xfe);
        r.cmd(0xff); // pulse nothing
        r.cmd(0xf1); // bit 0 set: no reset
        r.cmd(0xf0);
        // A20 via the output port, bit 0 kept high: no reset.
        r.cmd(0xd1);
        r.put(0xdf);
        r.cmd(0xd0);
        // Bits 4/5 mirror the output buffer, which was empty when D0 ran.
        assert_eq!(r.kbd_bytes(), [0xcf]);
        r.cmd(0xd1);
        r.put(0x00);
        let reqs = r.req.requests.lock().unwrap().clone();
        assert_eq!(reqs, [VmRequest::Reset; 3]);
    }

    #[test]
    fn loopback_and_empty_reads() {
        let mut r = rig();
        r.cmd(0xd2);
        r.put(0x42);
        assert_eq!(r.status() & (STS_OBF | STS_AUX), STS_OBF);
        assert_eq!(r.data(), 0x42);
        // An empty buffer repeats the last byte.
        assert_eq!(r.data(), 0x42);
        assert_eq!(r.status() & STS_CMD, 0);
        r.cmd(0xa9);
        assert_ne!(r.status() & STS_CMD, 0);
        r.drain();
    }

    #[test]
    fn machine_reset_restores_power_on_state_and_lowers_lines() {
        let mut r = rig();
        r.dev.key_event(0x1e, true);
        assert!(r.kbd.is_high());
        r.dev.reset();
        assert!(!r.kbd.is_high());
        assert!(r.drain().is_empty());
        r.cmd(0x20);
        assert_eq!(r.kbd_bytes(), [CTR_POWER_ON]);
        assert_eq!(r.dev.leds(), 0);
    }

    #[test]
    fn leds_from_the_guest() {
        let mut r = rig();
        r.put(0xed);
        r.put(0x05);
        assert_eq!(r.kbd_bytes(), [0xfa, 0xfa]);
        assert_eq!(r.dev.leds(), 0x05);
    }

    #[test]
    fn led_changes_are_pushed_to_the_listener() {
        use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
        /// (changes told, last state told)
        #[derive(Default)]
        struct Count(AtomicUsize, AtomicU8);
        impl LedListener for Count {
            fn leds_changed(&self, leds: u8) {
                self.0.fetch_add(1, Ordering::SeqCst);
                self.1.store(leds, Ordering::SeqCst);
            }
        }
        let mut r = rig();
        let l = Arc::new(Count::default());
        r.dev.set_led_listener(l.clone());
        // The guest's ED command, as Linux's atkbd sends it.
        r.put(0xed);
        assert_eq!(
            l.0.load(Ordering::SeqCst),
            0,
            "no change before the argument"
        );
        r.put(0x04);
        assert_eq!(l.1.load(Ordering::SeqCst), 4);
        // The same state again is no change.
        r.put(0xed);
        r.put(0x04);
        assert_eq!(l.0.load(Ordering::SeqCst), 1);
        // A keyboard reset (FF) clears them; so does a machine reset.
        r.put(0xed);
        r.put(0x02);
        r.put(0xff);
        assert_eq!(l.0.load(Ordering::SeqCst), 3);
        assert_eq!(l.1.load(Ordering::SeqCst), 0);
        r.put(0xed);
        r.put(0x01);
        r.dev.reset();
        assert_eq!(l.0.load(Ordering::SeqCst), 5);
        assert_eq!(l.1.load(Ordering::SeqCst), 0);
        // The listener survives the reset.
        r.put(0xed);
        r.put(0x07);
        assert_eq!(l.1.load(Ordering::SeqCst), 7);
        r.drain();
    }

    #[test]
    fn mouse_buttons_are_shared_by_every_input_source() {
        let mut r = rig();
        r.cmd(0xd4); // next byte to the mouse:
        r.put(0xf4); // enable reporting
                     // One source presses right, another moves: the held state is the
                     // device's, so the second source can keep it held.
        r.dev.mouse_event(0, 0, 0, 0b010);
        assert_eq!(r.dev.mouse_buttons(), 0b010);
        let held = r.dev.mouse_buttons();
        r.dev.mouse_event(5, 0, 0, held | 0b001);
        assert_eq!(r.dev.mouse_buttons(), 0b011);
        r.dev.mouse_event(0, 0, 0, 0);
        assert_eq!(r.dev.mouse_buttons(), 0);
    }

    #[test]
    fn hostile_access_patterns() {
        let mut r = rig();
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut buf = [0u8; 8];
        for _ in 0..50_000 {
            let v = next();
            let off = [0u64, 1, 2, 3, 4, 5, 0xffff][(v % 7) as usize];
            let w = [1usize, 2, 4, 8][((v >> 3) % 4) as usize];
            buf.fill((v >> 8) as u8);
            // Never pulse reset so that the rest keeps being exercised.
            if off == STATUS_CMD && buf[0] >= 0xf0 {
                buf[0] = 0xff;
            }
            if v & 0x8000_0000 != 0 {
                r.dev.read(BASE, off, &mut buf[..w]);
            } else {
                r.dev.write(BASE, off, &buf[..w]);
            }
            if v % 5 == 0 {
                r.dev.key_event((v >> 16) as u16, v & 1 == 0);
                r.dev
                    .mouse_event(v as i32, (v >> 1) as i32, (v >> 2) as i32, v as u8);
            }
            assert!(r.dev.ctrl_out.len() <= CTRL_QUEUE_CAP);
        }
    }
}
