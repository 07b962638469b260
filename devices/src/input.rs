//! What input devices offer an input router: a keyboard, a relative pointer (PS/2
//! or virtio mouse), an absolute pointer (a USB or virtio tablet), and the LED
//! state a guest sets on its keyboard. The device models implement them; the VMM's
//! router drives them from every input source (SPICE, QMP) and listens for LEDs.

use std::sync::{Mutex, MutexGuard};

use crate::legacy::i8042::I8042;

/// Pointer buttons as bits of a button state: PS/2 order for the first three.
pub mod buttons {
    pub const LEFT: u8 = 1;
    pub const RIGHT: u8 = 2;
    pub const MIDDLE: u8 = 4;
    pub const SIDE: u8 = 8;
    pub const EXTRA: u8 = 16;
}

/// Absolute positions run from 0 to this on each axis (QEMU's INPUT_EVENT_ABS_MAX;
/// what USB and virtio tablets report to the guest).
pub const ABS_MAX: u32 = 0x7fff;

pub trait Keyboard: Send + Sync {
    /// A key press or release as a PC set-1 code: 0xE0xx for extended keys,
    /// 0xE11D for Pause.
    fn key(&self, xt_scancode: u16, pressed: bool);
    /// Whether the guest's driver takes events now (a virtio keyboard only once
    /// its driver is up; PS/2 always).
    fn active(&self) -> bool {
        true
    }
}

pub trait RelativePointer: Send + Sync {
    /// Motion (dy positive = down), wheel (dz positive = towards the user) and the
    /// whole button state ([`buttons`]).
    fn motion(&self, dx: i32, dy: i32, dz: i32, buttons: u8);
    /// The buttons it last reported held.
    fn buttons(&self) -> u8;
}

pub trait AbsolutePointer: Send + Sync {
    /// Position 0..=[`ABS_MAX`] on each axis, wheel and buttons as for
    /// [`RelativePointer::motion`].
    fn position(&self, x: u32, y: u32, dz: i32, buttons: u8);
    /// Whether the guest's driver takes events now.
    fn active(&self) -> bool {
        true
    }
}

/// Told whenever the guest changes its keyboard LEDs (bit 0 scroll, 1 num, 2 caps).
/// Called from the vCPU thread with the keyboard's lock held: it must only record
/// or forward, never call back into the keyboard.
pub trait LedListener: Send + Sync {
    fn leds_changed(&self, leds: u8);
}

fn lock(m: &Mutex<I8042>) -> MutexGuard<'_, I8042> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The i8042's PS/2 keyboard.
impl Keyboard for Mutex<I8042> {
    fn key(&self, xt_scancode: u16, pressed: bool) {
        lock(self).key_event(xt_scancode, pressed);
    }
}

/// The i8042's PS/2 mouse (three buttons; side and extra are not reported).
impl RelativePointer for Mutex<I8042> {
    fn motion(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        lock(self).mouse_event(dx, dy, dz, buttons & 7);
    }
    fn buttons(&self) -> u8 {
        lock(self).mouse_buttons()
    }
}
