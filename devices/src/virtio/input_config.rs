//! What a virtio-input device says about itself (its config space), and the
//! translation of the machine's key codes (PC set 1) into Linux input codes.
//!
//! The config space is `struct virtio_input_config`: the driver writes `select`
//! and `subsel`, then reads `size` and up to 128 bytes of data. Linux's
//! `virtio_input.c` probes ID_NAME, ID_SERIAL, ID_DEVIDS, PROP_BITS, then
//! EV_BITS for every event type and ABS_INFO for every axis it found; an
//! unsupported combination answers size 0. The values are QEMU's for its
//! virtio-keyboard and virtio-tablet (wheel-axis variant), so a guest sees the
//! same devices under either VMM.

use virtio_bindings::virtio_input::{
    virtio_input_config_select_VIRTIO_INPUT_CFG_ABS_INFO as CFG_ABS_INFO,
    virtio_input_config_select_VIRTIO_INPUT_CFG_EV_BITS as CFG_EV_BITS,
    virtio_input_config_select_VIRTIO_INPUT_CFG_ID_DEVIDS as CFG_ID_DEVIDS,
    virtio_input_config_select_VIRTIO_INPUT_CFG_ID_NAME as CFG_ID_NAME,
};

use crate::input::ABS_MAX;

/// Linux input event types and codes (uapi `input-event-codes.h`).
pub mod ev {
    pub const SYN: u16 = 0x00;
    pub const KEY: u16 = 0x01;
    pub const REL: u16 = 0x02;
    pub const ABS: u16 = 0x03;
    pub const LED: u16 = 0x11;
    pub const REP: u16 = 0x14;
    pub const SYN_REPORT: u16 = 0;
    pub const ABS_X: u16 = 0;
    pub const ABS_Y: u16 = 1;
    pub const REL_WHEEL: u16 = 8;
    pub const BTN_LEFT: u16 = 0x110;
    pub const BTN_RIGHT: u16 = 0x111;
    pub const BTN_MIDDLE: u16 = 0x112;
    pub const BTN_SIDE: u16 = 0x113;
    pub const BTN_EXTRA: u16 = 0x114;
    pub const LED_NUML: u16 = 0;
    pub const LED_CAPSL: u16 = 1;
    pub const LED_SCROLLL: u16 = 2;
    pub const KEY_PAUSE: u16 = 119;
}

/// Offset of the data union in `struct virtio_input_config`.
pub const DATA_OFFSET: usize = 8;
/// Size of the data union.
pub const DATA_LEN: usize = 128;
/// The whole config structure.
pub const CONFIG_LEN: usize = DATA_OFFSET + DATA_LEN;

const BUS_VIRTUAL: u16 = 0x06;
/// QEMU's vendor id for its USB and virtio HID devices.
const VENDOR: u16 = 0x0627;

/// Which device this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Keyboard,
    Tablet,
}

impl InputKind {
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Keyboard => "QEMU Virtio Keyboard",
            InputKind::Tablet => "QEMU Virtio Tablet",
        }
    }

    /// (product, version) of ID_DEVIDS.
    fn ids(self) -> (u16, u16) {
        match self {
            InputKind::Keyboard => (0x0001, 0x0001),
            InputKind::Tablet => (0x0003, 0x0002),
        }
    }

    /// The codes this device reports for event type `ev_type`.
    fn codes(self, ev_type: u16) -> Vec<u16> {
        match (self, ev_type) {
            (InputKind::Keyboard, ev::KEY) => {
                let mut codes: Vec<u16> = (0..0x80).filter_map(plain_key).collect();
                codes.extend(EXTENDED.iter().map(|&(_, k)| k));
                codes.push(ev::KEY_PAUSE);
                codes
            }
            // EV_REP present with no codes: the guest does the auto-repeat.
            (InputKind::Keyboard, ev::REP) => Vec::new(),
            (InputKind::Keyboard, ev::LED) => vec![ev::LED_NUML, ev::LED_CAPSL, ev::LED_SCROLLL],
            (InputKind::Tablet, ev::KEY) => vec![
                ev::BTN_LEFT,
                ev::BTN_RIGHT,
                ev::BTN_MIDDLE,
                ev::BTN_SIDE,
                ev::BTN_EXTRA,
            ],
            (InputKind::Tablet, ev::REL) => vec![ev::REL_WHEEL],
            (InputKind::Tablet, ev::ABS) => vec![ev::ABS_X, ev::ABS_Y],
            _ => Vec::new(),
        }
    }

    /// Whether EV_BITS for `ev_type` answers at all (EV_REP does, with no bits).
    fn has_type(self, ev_type: u16) -> bool {
        matches!(
            (self, ev_type),
            (InputKind::Keyboard, ev::KEY | ev::REP | ev::LED)
                | (InputKind::Tablet, ev::KEY | ev::REL | ev::ABS)
        )
    }

    /// The answer to (select, subsel): the data bytes, whose length is `size`.
    /// Empty for what the device does not have (ID_SERIAL and PROP_BITS
    /// included, as QEMU's devices have neither).
    pub fn query(self, select: u8, subsel: u8) -> Vec<u8> {
        match u32::from(select) {
            CFG_ID_NAME if subsel == 0 => self.name().as_bytes().to_vec(),
            CFG_ID_DEVIDS if subsel == 0 => {
                let (product, version) = self.ids();
                [BUS_VIRTUAL, VENDOR, product, version]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            }
            CFG_EV_BITS if self.has_type(subsel.into()) => {
                let codes = self.codes(subsel.into());
                let bytes = codes.iter().map(|&c| usize::from(c) / 8 + 1).max();
                let mut bitmap = vec![0u8; bytes.unwrap_or(0)];
                for c in codes {
                    bitmap[usize::from(c) / 8] |= 1 << (c % 8);
                }
                // EV_REP with no codes still answers: one zero byte, as QEMU.
                if bitmap.is_empty() {
                    bitmap.push(0);
                }
                bitmap
            }
            CFG_ABS_INFO if self == InputKind::Tablet && u16::from(subsel) <= ev::ABS_Y => {
                // min, max, fuzz, flat, res
                [0, ABS_MAX, 0, 0, 0]
                    .iter()
                    .flat_map(|v: &u32| v.to_le_bytes())
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Set-1 codes 0x01..=0x7f without prefix → Linux key codes. Up to F10 and the
/// keypad they are the same numbers; the rest are listed.
fn plain_key(code: u16) -> Option<u16> {
    Some(match code {
        0x01..=0x53 => code,
        0x54 => 99,                       // Alt+PrintScreen: SysRq
        0x56 => 86,                       // 102nd key
        0x57 => 87,                       // F11
        0x58 => 88,                       // F12
        0x59 => 117,                      // keypad =
        0x5d..=0x5f => code - 0x5d + 183, // F13..F15
        0x64..=0x6a => code - 0x64 + 186, // F16..F22
        0x6b => 193,                      // F23
        0x70 => 93,                       // Katakana/Hiragana
        0x73 => 89,                       // Ro
        0x76 => 194,                      // F24
        0x79 => 92,                       // Henkan
        0x7b => 94,                       // Muhenkan
        0x7d => 124,                      // Yen
        0x7e => 121,                      // keypad comma
        _ => return None,
    })
}

/// 0xE0-prefixed set-1 codes → Linux key codes.
const EXTENDED: &[(u8, u16)] = &[
    (0x10, 165), // previous song
    (0x19, 163), // next song
    (0x1c, 96),  // keypad Enter
    (0x1d, 97),  // right Ctrl
    (0x20, 113), // mute
    (0x21, 140), // calculator
    (0x22, 164), // play/pause
    (0x24, 166), // stop
    (0x2e, 114), // volume down
    (0x30, 115), // volume up
    (0x32, 172), // WWW home
    (0x35, 98),  // keypad /
    (0x37, 99),  // PrintScreen (SysRq)
    (0x38, 100), // right Alt
    (0x46, 119), // Ctrl+Break: Pause
    (0x47, 102), // Home
    (0x48, 103), // Up
    (0x49, 104), // PageUp
    (0x4b, 105), // Left
    (0x4d, 106), // Right
    (0x4f, 107), // End
    (0x50, 108), // Down
    (0x51, 109), // PageDown
    (0x52, 110), // Insert
    (0x53, 111), // Delete
    (0x5b, 125), // left Meta
    (0x5c, 126), // right Meta
    (0x5d, 127), // Compose (menu)
    (0x5e, 116), // power
    (0x5f, 142), // sleep
    (0x63, 143), // wake up
];

/// A PC set-1 code as the input router gives it (0xE0xx extended, 0xE11D Pause)
/// → a Linux key code; None for codes no key has.
pub fn linux_key(xt_scancode: u16) -> Option<u16> {
    match xt_scancode {
        0xe11d => Some(ev::KEY_PAUSE),
        0x0001..=0x007f => plain_key(xt_scancode),
        0xe000..=0xe0ff => {
            let low = (xt_scancode & 0x7f) as u8;
            EXTENDED.iter().find(|&&(c, _)| c == low).map(|&(_, k)| k)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bit(bitmap: &[u8], code: u16) -> bool {
        bitmap
            .get(usize::from(code) / 8)
            .is_some_and(|b| b & (1 << (code % 8)) != 0)
    }

    #[test]
    fn keyboard_answers_like_qemus() {
        let k = InputKind::Keyboard;
        assert_eq!(k.query(1, 0), b"QEMU Virtio Keyboard");
        assert_eq!(k.query(2, 0), b"", "no serial, as QEMU by default");
        assert_eq!(k.query(3, 0), [6, 0, 0x27, 6, 1, 0, 1, 0]);
        assert_eq!(k.query(0x10, 0), b"", "no properties");
        let keys = k.query(0x11, ev::KEY as u8);
        for code in [1, 30, 88, 96, 103, 111, 125, 119] {
            assert!(bit(&keys, code), "key {code}");
        }
        assert!(!bit(&keys, ev::BTN_LEFT));
        assert_eq!(k.query(0x11, ev::REP as u8), [0]);
        assert_eq!(k.query(0x11, ev::LED as u8), [0b111]);
        assert_eq!(k.query(0x11, ev::ABS as u8), b"");
        assert_eq!(k.query(0x12, 0), b"");
        // Every code the map produces is advertised.
        for sc in (0..0x80).chain(0xe000..0xe080).chain([0xe11d]) {
            if let Some(code) = linux_key(sc) {
                assert!(bit(&keys, code), "{sc:#x} -> {code}");
            }
        }
    }

    #[test]
    fn tablet_answers_like_qemus() {
        let t = InputKind::Tablet;
        assert_eq!(t.query(1, 0), b"QEMU Virtio Tablet");
        assert_eq!(t.query(3, 0), [6, 0, 0x27, 6, 3, 0, 2, 0]);
        let keys = t.query(0x11, ev::KEY as u8);
        assert_eq!(keys.len(), 0x114 / 8 + 1);
        assert!(bit(&keys, ev::BTN_LEFT) && bit(&keys, ev::BTN_EXTRA));
        assert_eq!(t.query(0x11, ev::REL as u8), [0, 1]);
        assert_eq!(t.query(0x11, ev::ABS as u8), [3]);
        assert_eq!(t.query(0x11, ev::LED as u8), b"");
        let abs = t.query(0x12, 1);
        assert_eq!(abs.len(), 20);
        assert_eq!(&abs[4..8], &0x7fffu32.to_le_bytes());
        assert_eq!(t.query(0x12, 2), b"");
        assert_eq!(t.query(0xff, 0xff), b"");
    }

    #[test]
    fn scancodes_map_to_linux_keys() {
        assert_eq!(linux_key(0x1e), Some(30)); // A
        assert_eq!(linux_key(0x9e), None, "a release code is not a key");
        assert_eq!(linux_key(0xe048), Some(103)); // Up
        assert_eq!(linux_key(0xe01d), Some(97));
        assert_eq!(linux_key(0xe11d), Some(119));
        assert_eq!(linux_key(0), None);
        assert_eq!(linux_key(0xe0ff), None);
        assert_eq!(linux_key(0x1234), None);
    }
}
