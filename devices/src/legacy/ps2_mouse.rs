//! A PS/2 mouse behind the i8042 AUX port, with the IntelliMouse wheel extension.
//!
//! Host motion is accumulated and sent as 3-byte packets (4 with the wheel once the
//! guest has unlocked IntelliMouse mode), only while the guest has enabled reporting.
//! Motion that does not fit in the bounded queue stays accumulated and goes out as
//! the guest reads, so a slow guest sees fewer, larger packets rather than lost motion.

use std::collections::VecDeque;

use tracing::debug;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;

/// Room for four packets. Like the keyboard's, this stays at 16 bytes so that
/// Linux's i8042_flush() (at most 16 reads) can always empty the controller.
const QUEUE_CAP: usize = 16;
/// Bound on accumulated motion: more than this is not worth replaying.
const ACC_LIMIT: i32 = 4096;

/// Sample rates that switch a mouse into IntelliMouse (wheel) mode, ID 3.
const INTELLIMOUSE_KNOCK: [u8; 3] = [200, 100, 80];

pub struct Ps2Mouse {
    out: VecDeque<u8>,
    /// A command waiting for its argument byte (E8 resolution, F3 sample rate).
    pending: Option<u8>,
    /// 0 for a plain mouse, 3 once the IntelliMouse sequence was seen.
    id: u8,
    last_rates: [u8; 3],
    rate: u8,
    resolution: u8,
    scaling_2to1: bool,
    remote: bool,
    wrap: bool,
    enabled: bool,
    buttons: u8,
    dx: i32,
    dy: i32,
    dz: i32,
    /// Something happened that no packet has reported yet.
    dirty: bool,
    last_sent: u8,
}

impl Default for Ps2Mouse {
    fn default() -> Self {
        Self::new()
    }
}

impl Ps2Mouse {
    pub fn new() -> Self {
        Self {
            out: VecDeque::with_capacity(QUEUE_CAP),
            pending: None,
            id: 0,
            last_rates: [0; 3],
            rate: 100,
            resolution: 2,
            scaling_2to1: false,
            remote: false,
            wrap: false,
            enabled: false,
            buttons: 0,
            dx: 0,
            dy: 0,
            dz: 0,
            dirty: false,
            last_sent: 0,
        }
    }

    /// The next byte for the controller. Reading makes room for held-back motion.
    pub fn pop(&mut self) -> Option<u8> {
        let b = self.out.pop_front()?;
        self.last_sent = b;
        self.stream();
        Some(b)
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.out.len() + bytes.len() > QUEUE_CAP {
            debug!(?bytes, "PS/2 mouse buffer full, dropping");
            return;
        }
        self.out.extend(bytes);
    }

    /// Reset parameters (F6, FF). The IntelliMouse ID survives F6 as on real mice.
    fn defaults(&mut self) {
        self.rate = 100;
        self.resolution = 2;
        self.scaling_2to1 = false;
        self.remote = false;
        self.enabled = false;
        self.forget_motion();
    }

    fn forget_motion(&mut self) {
        self.dx = 0;
        self.dy = 0;
        self.dz = 0;
        self.dirty = false;
    }

    /// A byte the guest sent through controller command 0xD4.
    pub fn write(&mut self, byte: u8) {
        if let Some(cmd) = self.pending.take() {
            self.argument(cmd, byte);
            return;
        }
        if self.wrap && byte != 0xec && byte != 0xff {
            self.push(&[byte]);
            return;
        }
        // A mouse drops whatever it had not sent yet when a command arrives.
        self.out.clear();
        match byte {
            0xe6 | 0xe7 => {
                self.scaling_2to1 = byte == 0xe7;
                self.push(&[ACK]);
            }
            0xe8 | 0xf3 => {
                self.pending = Some(byte);
                self.push(&[ACK]);
            }
            0xe9 => {
                let status = (self.remote as u8) << 6
                    | (self.enabled as u8) << 5
                    | (self.scaling_2to1 as u8) << 4
                    | (self.buttons & 1) << 2 // left
                    | (self.buttons & 4) >> 1 // middle
                    | (self.buttons & 2) >> 1; // right
                let (res, rate) = (self.resolution, self.rate);
                self.push(&[ACK, status, res, rate]);
            }
            0xea | 0xf0 => {
                self.remote = byte == 0xf0;
                self.forget_motion();
                self.push(&[ACK]);
            }
            0xeb => {
                self.push(&[ACK]);
                let (p, n) = self.packet();
                self.push(&p[..n]);
            }
            0xec | 0xee => {
                self.wrap = byte == 0xee;
                self.push(&[ACK]);
            }
            0xf2 => {
                let id = self.id;
                self.push(&[ACK, id]);
            }
            0xf4 => {
                self.enabled = true;
                self.push(&[ACK]);
            }
            0xf5 => {
                self.enabled = false;
                self.forget_motion();
                self.push(&[ACK]);
            }
            0xf6 => {
                self.defaults();
                self.push(&[ACK]);
            }
            0xfe => {
                let b = self.last_sent;
                self.push(&[b]);
            }
            0xff => {
                self.defaults();
                self.wrap = false;
                self.id = 0;
                self.push(&[ACK, BAT_OK, 0x00]);
            }
            _ => {
                debug!(byte, "unknown PS/2 mouse command");
                self.push(&[RESEND]);
            }
        }
    }

    fn argument(&mut self, cmd: u8, arg: u8) {
        if cmd == 0xf3 {
            self.rate = arg;
            self.last_rates = [self.last_rates[1], self.last_rates[2], arg];
            if self.last_rates == INTELLIMOUSE_KNOCK {
                self.id = 3;
            }
        } else {
            self.resolution = arg;
        }
        self.push(&[ACK]);
    }

    /// The buttons held now (bit 0 left, 1 right, 2 middle), whoever pressed them.
    pub fn buttons(&self) -> u8 {
        self.buttons
    }

    /// Host motion. `dx` positive = right, `dy` positive = **down** (screen
    /// convention; negated here because PS/2 counts up as positive), `dz` positive
    /// = wheel towards the user (as on the wire). `buttons`: bit 0 left, bit 1
    /// right, bit 2 middle (the PS/2 packet order). Ignored unless the guest
    /// enabled reporting.
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        if !self.enabled || self.wrap {
            return;
        }
        let acc = |a: i32, d: i32| a.saturating_add(d).clamp(-ACC_LIMIT, ACC_LIMIT);
        self.dx = acc(self.dx, dx);
        self.dy = acc(self.dy, dy.saturating_neg());
        if self.id == 3 {
            self.dz = acc(self.dz, dz);
        }
        self.buttons = buttons & 7;
        self.dirty = true;
        self.stream();
    }

    /// Send what is accumulated, as many packets as fit, in stream mode.
    fn stream(&mut self) {
        let len = if self.id == 3 { 4 } else { 3 };
        while self.dirty && !self.remote && self.out.len() + len <= QUEUE_CAP {
            let (p, n) = self.packet();
            self.out.extend(&p[..n]);
        }
    }

    /// One packet of at most 9-bit motion; the rest stays accumulated.
    fn packet(&mut self) -> ([u8; 4], usize) {
        let dx = self.dx.clamp(-256, 255);
        let dy = self.dy.clamp(-256, 255);
        let dz = self.dz.clamp(-8, 7);
        self.dx -= dx;
        self.dy -= dy;
        self.dz -= dz;
        self.dirty = self.dx != 0 || self.dy != 0 || self.dz != 0;
        let b0 = 0x08 | self.buttons | ((dx < 0) as u8) << 4 | ((dy < 0) as u8) << 5;
        let n = if self.id == 3 { 4 } else { 3 };
        ([b0, dx as u8, dy as u8, dz as u8], n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(m: &mut Ps2Mouse) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(b) = m.pop() {
            v.push(b);
            assert!(v.len() < 10_000);
        }
        v
    }

    fn cmd(m: &mut Ps2Mouse, bytes: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        for &b in bytes {
            m.write(b);
            got.extend(drain(m));
        }
        got
    }

    #[test]
    fn linux_psmouse_probe_reset_and_intellimouse() {
        let mut m = Ps2Mouse::new();
        assert_eq!(cmd(&mut m, &[0xff]), [ACK, BAT_OK, 0x00]);
        assert_eq!(cmd(&mut m, &[0xf2]), [ACK, 0x00]);
        assert_eq!(cmd(&mut m, &[0xf3, 200, 0xf3, 100, 0xf3, 80]), [ACK; 6]);
        assert_eq!(cmd(&mut m, &[0xf2]), [ACK, 0x03]);
        // The Explorer knock (200, 200, 80) leaves it an IntelliMouse.
        cmd(&mut m, &[0xf3, 200, 0xf3, 200, 0xf3, 80]);
        assert_eq!(cmd(&mut m, &[0xf2]), [ACK, 0x03]);
        assert_eq!(cmd(&mut m, &[0xe8, 0x03, 0xe6, 0xea]), [ACK; 4]);
        assert_eq!(cmd(&mut m, &[0xe9]), [ACK, 0x00, 0x03, 80]);
        assert_eq!(
            cmd(&mut m, &[0xe7, 0xf4, 0xe9]),
            [ACK, ACK, ACK, 0x30, 0x03, 80]
        );
        assert_eq!(cmd(&mut m, &[0xff]), [ACK, BAT_OK, 0x00]);
        assert_eq!(cmd(&mut m, &[0xf2]), [ACK, 0x00]);
        assert_eq!(cmd(&mut m, &[0x42]), [RESEND]);
        assert_eq!(cmd(&mut m, &[0xfe]), [RESEND]);
    }

    #[test]
    fn packets_only_when_enabled() {
        let mut m = Ps2Mouse::new();
        m.mouse_event(5, 5, 0, 1);
        assert!(drain(&mut m).is_empty());
        cmd(&mut m, &[0xf4]);
        // Right 5, down 3 (PS/2: y = -3), left button.
        m.mouse_event(5, 3, 0, 1);
        assert_eq!(drain(&mut m), [0x08 | 0x01 | 0x20, 5, 0xfd]);
        m.mouse_event(-2, -4, 0, 0);
        assert_eq!(drain(&mut m), [0x08 | 0x10, 0xfe, 4]);
        cmd(&mut m, &[0xf5]);
        m.mouse_event(1, 1, 0, 0);
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn wheel_packets_and_clamping() {
        let mut m = Ps2Mouse::new();
        cmd(&mut m, &[0xf3, 200, 0xf3, 100, 0xf3, 80, 0xf4]);
        m.mouse_event(0, 0, 1, 4);
        assert_eq!(drain(&mut m), [0x08 | 0x04, 0, 0, 1]);
        // 300 right is sent as 255 then 45: 9-bit clamp, remainder carried.
        m.mouse_event(300, -300, -1, 0);
        assert_eq!(drain(&mut m), [0x08, 255, 255, 0xff, 0x08, 45, 45, 0]);
    }

    #[test]
    fn backlog_is_bounded_and_motion_preserved() {
        let mut m = Ps2Mouse::new();
        cmd(&mut m, &[0xf4]);
        for _ in 0..1000 {
            m.mouse_event(1, 0, 0, 0);
        }
        assert!(m.out.len() <= QUEUE_CAP);
        let out = drain(&mut m);
        let total: i32 = out.chunks(3).map(|p| p[1] as i32).sum();
        assert_eq!(total, 1000);
        m.mouse_event(i32::MAX, i32::MIN, i32::MAX, 0xff);
        assert!(m.dx <= ACC_LIMIT && m.dy <= ACC_LIMIT);
        assert!(drain(&mut m).len() <= 3 * (2 * ACC_LIMIT as usize / 255 + 2));
    }

    #[test]
    fn remote_mode_and_wrap() {
        let mut m = Ps2Mouse::new();
        cmd(&mut m, &[0xf4, 0xf0]);
        m.mouse_event(7, 0, 0, 2);
        assert!(drain(&mut m).is_empty());
        assert_eq!(cmd(&mut m, &[0xeb]), [ACK, 0x08 | 0x02, 7, 0]);
        assert_eq!(
            cmd(&mut m, &[0xee, 0x12, 0x34, 0xec]),
            [ACK, 0x12, 0x34, ACK]
        );
    }
}
