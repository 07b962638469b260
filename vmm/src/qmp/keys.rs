//! QEMU key names (`QKeyCode`, qapi/ui.json) to PC XT scancodes (set 1), the
//! input of `I8042::key_event`: the byte, or 0xE0xx for E0-prefixed keys.
//! Values follow the "AT set1" column of QEMU's keycodemapdb, which is what
//! QEMU's own PS/2 keyboard sends.

// Pause/Break has no make/break pair; the keyboard model sends its E1 sequence.
use devices::legacy::ps2_keyboard::XT_PAUSE;

/// Every QKeyCode name; `None` for keys a PS/2 keyboard in set 1 cannot send
/// (QEMU drops those too).
const QCODES: &[(&str, Option<u16>)] = &[
    ("unmapped", None),
    ("pause", Some(XT_PAUSE)),
    ("ro", Some(0x73)),
    ("kp_comma", Some(0x7e)),
    ("kp_equals", Some(0x59)),
    ("power", Some(0xe05e)),
    ("hiragana", Some(0x77)),
    ("henkan", Some(0x79)),
    ("yen", Some(0x7d)),
    ("sleep", Some(0xe05f)),
    ("wake", Some(0xe063)),
    ("audionext", Some(0xe019)),
    ("audioprev", Some(0xe010)),
    ("audiostop", Some(0xe024)),
    ("audioplay", Some(0xe022)),
    ("audiomute", Some(0xe020)),
    ("volumeup", Some(0xe030)),
    ("volumedown", Some(0xe02e)),
    ("mediaselect", Some(0xe06d)),
    ("mail", Some(0xe06c)),
    ("calculator", Some(0xe021)),
    ("computer", Some(0xe06b)),
    ("ac_home", Some(0xe032)),
    ("ac_back", Some(0xe06a)),
    ("ac_forward", Some(0xe069)),
    ("ac_refresh", Some(0xe067)),
    ("ac_bookmarks", Some(0xe066)),
    ("muhenkan", Some(0x7b)),
    ("katakanahiragana", Some(0x70)),
    // The single-byte Korean keys (0xF1/0xF2) have no set 1 make/break form.
    ("lang1", None),
    ("lang2", None),
    ("lang3", None),
    ("lang4", None),
    ("lang5", None),
    ("f13", Some(0x5d)),
    ("f14", Some(0x5e)),
    ("f15", Some(0x5f)),
    ("f16", Some(0x55)),
    ("f17", Some(0xe003)),
    ("f18", Some(0xe077)),
    ("f19", Some(0xe004)),
    ("f20", Some(0x5a)),
    ("f21", Some(0x74)),
    ("f22", Some(0xe079)),
    ("f23", Some(0x6d)),
    ("f24", Some(0x6f)),
    ("shift", Some(0x2a)),
    ("shift_r", Some(0x36)),
    ("alt", Some(0x38)),
    ("alt_r", Some(0xe038)),
    ("ctrl", Some(0x1d)),
    ("ctrl_r", Some(0xe01d)),
    ("menu", Some(0xe01e)),
    ("esc", Some(0x01)),
    ("1", Some(0x02)),
    ("2", Some(0x03)),
    ("3", Some(0x04)),
    ("4", Some(0x05)),
    ("5", Some(0x06)),
    ("6", Some(0x07)),
    ("7", Some(0x08)),
    ("8", Some(0x09)),
    ("9", Some(0x0a)),
    ("0", Some(0x0b)),
    ("minus", Some(0x0c)),
    ("equal", Some(0x0d)),
    ("backspace", Some(0x0e)),
    ("tab", Some(0x0f)),
    ("q", Some(0x10)),
    ("w", Some(0x11)),
    ("e", Some(0x12)),
    ("r", Some(0x13)),
    ("t", Some(0x14)),
    ("y", Some(0x15)),
    ("u", Some(0x16)),
    ("i", Some(0x17)),
    ("o", Some(0x18)),
    ("p", Some(0x19)),
    ("bracket_left", Some(0x1a)),
    ("bracket_right", Some(0x1b)),
    ("ret", Some(0x1c)),
    ("a", Some(0x1e)),
    ("s", Some(0x1f)),
    ("d", Some(0x20)),
    ("f", Some(0x21)),
    ("g", Some(0x22)),
    ("h", Some(0x23)),
    ("j", Some(0x24)),
    ("k", Some(0x25)),
    ("l", Some(0x26)),
    ("semicolon", Some(0x27)),
    ("apostrophe", Some(0x28)),
    ("grave_accent", Some(0x29)),
    ("backslash", Some(0x2b)),
    ("z", Some(0x2c)),
    ("x", Some(0x2d)),
    ("c", Some(0x2e)),
    ("v", Some(0x2f)),
    ("b", Some(0x30)),
    ("n", Some(0x31)),
    ("m", Some(0x32)),
    ("comma", Some(0x33)),
    ("dot", Some(0x34)),
    ("slash", Some(0x35)),
    ("asterisk", Some(0x37)),
    ("spc", Some(0x39)),
    ("caps_lock", Some(0x3a)),
    ("f1", Some(0x3b)),
    ("f2", Some(0x3c)),
    ("f3", Some(0x3d)),
    ("f4", Some(0x3e)),
    ("f5", Some(0x3f)),
    ("f6", Some(0x40)),
    ("f7", Some(0x41)),
    ("f8", Some(0x42)),
    ("f9", Some(0x43)),
    ("f10", Some(0x44)),
    ("num_lock", Some(0x45)),
    ("scroll_lock", Some(0x46)),
    ("kp_divide", Some(0xe035)),
    ("kp_multiply", Some(0x37)),
    ("kp_subtract", Some(0x4a)),
    ("kp_add", Some(0x4e)),
    ("kp_enter", Some(0xe01c)),
    ("kp_decimal", Some(0x53)),
    ("sysrq", Some(0x54)),
    ("kp_0", Some(0x52)),
    ("kp_1", Some(0x4f)),
    ("kp_2", Some(0x50)),
    ("kp_3", Some(0x51)),
    ("kp_4", Some(0x4b)),
    ("kp_5", Some(0x4c)),
    ("kp_6", Some(0x4d)),
    ("kp_7", Some(0x47)),
    ("kp_8", Some(0x48)),
    ("kp_9", Some(0x49)),
    ("less", Some(0x56)),
    ("f11", Some(0x57)),
    ("f12", Some(0x58)),
    // Print Screen as the key itself (E0 37), without the fake shift QEMU adds.
    ("print", Some(0xe037)),
    ("home", Some(0xe047)),
    ("pgup", Some(0xe049)),
    ("pgdn", Some(0xe051)),
    ("end", Some(0xe04f)),
    ("left", Some(0xe04b)),
    ("up", Some(0xe048)),
    ("down", Some(0xe050)),
    ("right", Some(0xe04d)),
    ("insert", Some(0xe052)),
    ("delete", Some(0xe053)),
    ("stop", Some(0xe068)),
    ("again", Some(0xe005)),
    ("props", Some(0xe006)),
    ("undo", Some(0xe007)),
    ("front", Some(0xe00c)),
    ("copy", Some(0xe078)),
    ("open", Some(0x64)),
    ("paste", Some(0x65)),
    ("find", Some(0xe041)),
    ("cut", Some(0xe03c)),
    ("lf", Some(0x5b)),
    ("help", Some(0xe075)),
    ("meta_l", Some(0xe05b)),
    ("meta_r", Some(0xe05c)),
    ("compose", Some(0xe05d)),
];

/// The scancode of a QKeyCode name: `Err` for a name QEMU does not know,
/// `Ok(None)` for a known key this keyboard cannot send.
pub fn qcode(name: &str) -> Result<Option<u16>, ()> {
    QCODES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .ok_or(())
}

/// A QEMU "number" key: set 1 with 0x80 standing for the E0 prefix (QEMU's
/// "qnum"); 0xC6 is Pause.
pub fn qnum(n: i64) -> Option<u16> {
    match n {
        0xc6 => Some(XT_PAUSE),
        1..=0x7f => Some(n as u16),
        0x80..=0xff => Some(0xe000 | (n as u16 & 0x7f)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_keys() {
        assert_eq!(qcode("a"), Ok(Some(0x1e)));
        assert_eq!(qcode("ret"), Ok(Some(0x1c)));
        assert_eq!(qcode("kp_enter"), Ok(Some(0xe01c)));
        assert_eq!(qcode("ctrl_r"), Ok(Some(0xe01d)));
        assert_eq!(qcode("pause"), Ok(Some(XT_PAUSE)));
        assert_eq!(qcode("lang1"), Ok(None));
        assert_eq!(qcode("A"), Err(()), "names are case-sensitive, as in QEMU");
        assert_eq!(qnum(30), Some(0x1e));
        assert_eq!(qnum(0x9c), Some(0xe01c));
        assert_eq!(qnum(0xc6), Some(XT_PAUSE));
        assert_eq!(qnum(0x100), None);
        assert_eq!(qnum(-1), None);
    }

    #[test]
    fn table_is_consistent() {
        // No name twice; every plain code fits 7 bits and every extended one
        // is an E0 code, since that is all the keyboard model accepts.
        for (i, (n, c)) in QCODES.iter().enumerate() {
            assert!(!QCODES[..i].iter().any(|(m, _)| m == n), "{n} twice");
            if let Some(c) = c {
                let ok = *c == XT_PAUSE || (*c < 0x80 && *c > 0) || (c >> 8 == 0xe0);
                assert!(ok, "{n}: {c:#x}");
            }
        }
        // The letters and digits map as on a US keyboard's set 1.
        let row = ["q", "w", "e", "r", "t", "y", "u", "i", "o", "p"];
        for (k, name) in row.iter().enumerate() {
            assert_eq!(qcode(name), Ok(Some(0x10 + k as u16)));
        }
    }
}
