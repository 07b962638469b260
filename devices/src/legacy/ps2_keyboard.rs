//! A PS/2 (MF2) keyboard as the i8042 sees it: bytes in (commands), bytes out.
//!
//! Keys come from the host as PC XT (set 1) codes, which is what SPICE sends. Like a
//! real keyboard this one speaks scan code set 2 by default; the i8042 translates
//! back to set 1 when its command byte asks for it (`translate_to_set1`), so such a
//! guest sees exactly the host's XT code.

use std::collections::VecDeque;

use tracing::debug;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;
/// Set 2 break prefix; the i8042 folds it into bit 7 when translating.
pub const BREAK_PREFIX: u8 = 0xf0;

/// A real keyboard buffers 16 bytes. Linux's i8042_flush() gives up (and declares
/// "no controller") after reading 16 bytes, so the keyboard must never hold more
/// than 15 besides the one in the controller's output buffer.
const QUEUE_CAP: usize = 15;

/// The i8042's set 2 → set 1 translation for bytes below 0x80 (a fixed table in
/// the controller's ROM). Entries at indices that are no key still translate to
/// something on real controllers; they are kept so command replies match too
/// (e.g. the scan-set query reply 2 comes out as 0x41).
#[rustfmt::skip]
const SET2_TO_SET1: [u8; 128] = [
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, // 0x00
    0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59, // 0x08
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, // 0x10
    0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b, // 0x18
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, // 0x20
    0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d, // 0x28
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, // 0x30
    0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f, // 0x38
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, // 0x40
    0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61, // 0x48
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, // 0x50
    0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76, // 0x58
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, // 0x60
    0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f, // 0x68
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, // 0x70
    0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54, // 0x78
];

/// Set 1 → set 2, the inverse of the controller table.
const SET1_TO_SET2: [u8; 128] = invert();

const fn invert() -> [u8; 128] {
    let mut inv = [0u8; 128];
    let mut i = 1;
    while i < 128 {
        inv[SET2_TO_SET1[i] as usize] = i as u8;
        i += 1;
    }
    // The two keys whose set 2 codes are above 0x7f; the table's entries at 0x02
    // and 0x7f that also give 0x41/0x54 are not keys.
    inv[0x41] = 0x83; // F7
    inv[0x54] = 0x84; // Alt+SysRq
    inv
}

/// What the i8042 makes of a keyboard byte with translation on (break prefixes
/// are handled by the caller).
pub fn translate_to_set1(b: u8) -> u8 {
    match b {
        0x00..=0x7f => SET2_TO_SET1[b as usize],
        0x83 => 0x41,
        0x84 => 0x54,
        _ => b,
    }
}

/// Pause has no break code and a sequence of its own; as a u16 XT code it is 0xE11D
/// (the start of its set 1 sequence E1 1D 45 E1 9D C5).
pub const XT_PAUSE: u16 = 0xe11d;

pub struct Ps2Keyboard {
    out: VecDeque<u8>,
    /// A command waiting for its argument byte (ED, F0, F3).
    pending: Option<u8>,
    scanning: bool,
    /// 1, 2 or 3. Set 3 keys are sent as set 2 (no guest we target uses set 3).
    set: u8,
    leds: u8,
    last_sent: u8,
}

impl Default for Ps2Keyboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Ps2Keyboard {
    pub fn new() -> Self {
        Self {
            out: VecDeque::with_capacity(QUEUE_CAP),
            pending: None,
            scanning: true,
            set: 2,
            leds: 0,
            last_sent: 0,
        }
    }

    /// The last LED byte the guest sent with ED (bit 0 scroll, 1 num, 2 caps lock).
    pub fn leds(&self) -> u8 {
        self.leds
    }

    /// The next byte for the controller.
    pub fn pop(&mut self) -> Option<u8> {
        let b = self.out.pop_front()?;
        self.last_sent = b;
        Some(b)
    }

    /// Queue a whole message or nothing: a key half in the queue would desync the guest.
    fn push(&mut self, bytes: &[u8]) -> bool {
        if self.out.len() + bytes.len() > QUEUE_CAP {
            debug!(?bytes, "PS/2 keyboard buffer full, dropping");
            return false;
        }
        self.out.extend(bytes);
        true
    }

    fn defaults(&mut self) {
        // As QEMU does: F5/F6 also restore set 2 and clear the LEDs.
        self.set = 2;
        self.leds = 0;
    }

    /// A byte the guest sent to the keyboard (port 0x60 with no controller command pending).
    pub fn write(&mut self, byte: u8) {
        // Arguments are below 0x80; a command byte in their place starts a new command.
        if let Some(cmd) = self.pending.take() {
            if byte < 0x80 {
                self.argument(cmd, byte);
                return;
            }
        }
        // A keyboard drops whatever it had not sent yet when a command arrives.
        self.out.clear();
        match byte {
            0xed | 0xf0 | 0xf3 => {
                self.pending = Some(byte);
                self.push(&[ACK]);
            }
            0xee => {
                self.push(&[0xee]);
            }
            // MF2 keyboard ID; the controller turns 0x83 into 0x41 when translating.
            0xf2 => {
                self.push(&[ACK, 0xab, 0x83]);
            }
            0xf4 => {
                self.scanning = true;
                self.push(&[ACK]);
            }
            0xf5 => {
                self.defaults();
                self.scanning = false;
                self.push(&[ACK]);
            }
            0xf6 => {
                self.defaults();
                self.scanning = true;
                self.push(&[ACK]);
            }
            // Set 3 key-type commands: accepted and ignored.
            0xf7..=0xfd => {
                self.push(&[ACK]);
            }
            0xfe => {
                let b = self.last_sent;
                self.push(&[b]);
            }
            0xff => {
                self.defaults();
                self.scanning = true;
                self.push(&[ACK, BAT_OK]);
            }
            _ => {
                debug!(byte, "unknown PS/2 keyboard command");
                self.push(&[RESEND]);
            }
        }
    }

    fn argument(&mut self, cmd: u8, arg: u8) {
        match cmd {
            0xed => {
                self.leds = arg;
                self.push(&[ACK]);
            }
            0xf0 => match arg {
                0 => {
                    let set = self.set;
                    self.push(&[ACK, set]);
                }
                1..=3 => {
                    self.set = arg;
                    self.push(&[ACK]);
                }
                _ => {
                    self.push(&[RESEND]);
                }
            },
            // Typematic rate: the host repeats keys itself.
            _ => {
                self.push(&[ACK]);
            }
        }
    }

    /// A host key press or release. `xt` is the set 1 make code, 0xE0xx for
    /// extended keys, `XT_PAUSE` for Pause. Bit 7 of the code is ignored (release
    /// is `pressed == false`). Dropped while scanning is disabled or the buffer is full.
    pub fn key_event(&mut self, xt: u16, pressed: bool) {
        if !self.scanning {
            return;
        }
        if xt == XT_PAUSE {
            if pressed {
                if self.set == 1 {
                    self.push(&[0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]);
                } else {
                    self.push(&[0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77]);
                }
            }
            return;
        }
        let code = (xt & 0x7f) as u8;
        let extended = match xt >> 8 {
            0 => false,
            0xe0 => true,
            _ => {
                debug!(xt, "unsupported XT scancode");
                return;
            }
        };
        if code == 0 {
            return;
        }
        let mut seq = [0u8; 3];
        let mut n = 0;
        if extended {
            seq[n] = 0xe0;
            n += 1;
        }
        if self.set == 1 {
            seq[n] = if pressed { code } else { code | 0x80 };
            n += 1;
        } else {
            if !pressed {
                seq[n] = BREAK_PREFIX;
                n += 1;
            }
            seq[n] = SET1_TO_SET2[code as usize];
            n += 1;
        }
        self.push(&seq[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(k: &mut Ps2Keyboard) -> Vec<u8> {
        std::iter::from_fn(|| k.pop()).collect()
    }

    #[test]
    fn tables_are_inverse_for_every_key() {
        for s1 in 1u8..0x80 {
            let s2 = SET1_TO_SET2[s1 as usize];
            assert_ne!(s2, 0, "set 1 code {s1:#x} has no set 2 code");
            assert_eq!(translate_to_set1(s2), s1, "set 1 code {s1:#x}");
        }
        // Known set 2 codes: A, left ctrl, F7, Esc.
        assert_eq!(SET1_TO_SET2[0x1e], 0x1c);
        assert_eq!(SET1_TO_SET2[0x1d], 0x14);
        assert_eq!(SET1_TO_SET2[0x41], 0x83);
        assert_eq!(SET1_TO_SET2[0x01], 0x76);
        // Replies pass through translation unchanged, except the ID byte.
        for b in [0xfa, 0xaa, 0xee, 0xfe, 0xab, 0xe0, 0xe1] {
            assert_eq!(translate_to_set1(b), b);
        }
        assert_eq!(translate_to_set1(0x83), 0x41);
    }

    #[test]
    fn seabios_init_sequence() {
        let mut k = Ps2Keyboard::new();
        k.write(0xff);
        assert_eq!(drain(&mut k), [ACK, BAT_OK]);
        k.write(0xf5);
        assert_eq!(drain(&mut k), [ACK]);
        k.key_event(0x1e, true);
        assert!(drain(&mut k).is_empty(), "scanning disabled");
        k.write(0xf0);
        k.write(0x02);
        assert_eq!(drain(&mut k), [ACK, ACK]);
        k.write(0xf4);
        assert_eq!(drain(&mut k), [ACK]);
    }

    #[test]
    fn linux_atkbd_probe_and_activate() {
        let mut k = Ps2Keyboard::new();
        k.write(0xf2);
        assert_eq!(drain(&mut k), [ACK, 0xab, 0x83]);
        k.write(0xed);
        k.write(0x02); // num lock
        assert_eq!(drain(&mut k), [ACK, ACK]);
        assert_eq!(k.leds(), 0x02);
        k.write(0xf3);
        k.write(0x20);
        assert_eq!(drain(&mut k), [ACK, ACK]);
        k.write(0xee);
        assert_eq!(drain(&mut k), [0xee]);
        k.write(0xf0);
        k.write(0x00);
        assert_eq!(drain(&mut k), [ACK, ACK, 2]);
        k.write(0x12);
        assert_eq!(drain(&mut k), [RESEND]);
        k.write(0xfe);
        assert_eq!(drain(&mut k), [RESEND]);
    }

    #[test]
    fn command_in_argument_position_starts_a_new_command() {
        let mut k = Ps2Keyboard::new();
        k.write(0xed);
        k.write(0xf2);
        // The new command also discards the unread ACK of ED.
        assert_eq!(drain(&mut k), [ACK, 0xab, 0x83]);
        assert_eq!(k.leds(), 0);
    }

    #[test]
    fn keys_in_set_2_and_set_1() {
        let mut k = Ps2Keyboard::new();
        k.key_event(0x1e, true);
        k.key_event(0x1e, false);
        k.key_event(0xe01d, true);
        k.key_event(0xe01d, false);
        assert_eq!(
            drain(&mut k),
            [0x1c, 0xf0, 0x1c, 0xe0, 0x14, 0xe0, 0xf0, 0x14]
        );
        k.key_event(XT_PAUSE, true);
        k.key_event(XT_PAUSE, false);
        assert_eq!(
            drain(&mut k),
            [0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77]
        );
        k.write(0xf0);
        k.write(0x01);
        drain(&mut k);
        k.key_event(0xe01d, true);
        k.key_event(0xe09d, false);
        assert_eq!(drain(&mut k), [0xe0, 0x1d, 0xe0, 0x9d]);
        k.key_event(0x1234, true);
        k.key_event(0, true);
        assert!(drain(&mut k).is_empty());
    }

    #[test]
    fn queue_is_bounded_and_keeps_whole_keys() {
        let mut k = Ps2Keyboard::new();
        for _ in 0..100 {
            k.key_event(0xe01d, false); // 3 bytes each
        }
        let out = drain(&mut k);
        assert_eq!(out.len(), 15);
        assert!(out.chunks(3).all(|c| c == [0xe0, 0xf0, 0x14]));
    }
}
