//! INPUTS channel: keys (KEY_DOWN/KEY_UP/KEY_SCANCODE byte streams decoded back into
//! set-1 scancodes), server-mode mouse, lock-key sync both ways, and the
//! MOUSE_MOTION_ACK every 4 motion messages that keeps the client's pointer moving.
//! When the channel ends, keys and buttons still held are released in the guest.

use std::sync::Arc;
use std::time::Duration;

use super::conn::{violation, Conn};
use super::{next_message, End, Next};
use crate::proto::{button, button_mask, inputs_msg, inputs_msgc, INPUT_MOTION_ACK_BUNCH};
use crate::server::{Registration, Shared};
use crate::wire::Reader;
use crate::InputSink;

/// How often the guest LEDs are polled through `InputSink::leds`.
const LED_POLL: Duration = Duration::from_millis(100);

const SCROLL_LOCK: u8 = 0x46;
const NUM_LOCK: u8 = 0x45;
const CAPS_LOCK: u8 = 0x3a;
/// (SPICE modifier bit = PS/2 LED bit, scancode)
const LOCKS: [(u8, u8); 3] = [(1, SCROLL_LOCK), (2, NUM_LOCK), (4, CAPS_LOCK)];

/// Turns the scancode byte stream back into keys. State survives across messages:
/// spice-gtk sends Pause as KEY_DOWN [E1 1D] then KEY_DOWN [45].
#[derive(Default)]
pub struct ScancodeDecoder {
    state: Prefix,
    /// Lock keys currently held (spice-server does not toggle those on KEY_MODIFIERS).
    pub locks_held: u8,
    /// Keys the guest was told are down, by set-1 code (bit `code & 0x7f`): plain
    /// keys and 0xE0-prefixed ones. Pause (E1) has no release and is not tracked,
    /// as in spice-server.
    held: u128,
    held_e0: u128,
}

#[derive(Default, Clone, Copy)]
enum Prefix {
    #[default]
    None,
    E0,
    E1,
    /// E1 1D/9D seen; the next byte (45/C5) completes Pause.
    E1Second(bool),
}

fn track(set: &mut u128, code: u8, pressed: bool) {
    let bit = 1u128 << (code & 0x7f);
    if pressed {
        *set |= bit;
    } else {
        *set &= !bit;
    }
}

impl ScancodeDecoder {
    /// Feeds one byte. Returns the LED bits of lock keys that went down just now
    /// (not auto-repeats), i.e. the locks this byte toggles in the guest.
    pub fn byte(&mut self, b: u8, sink: &dyn InputSink) -> u8 {
        let pressed = b & 0x80 == 0;
        let mut toggled = 0;
        self.state = match self.state {
            Prefix::None => match b {
                0xe0 => Prefix::E0,
                0xe1 => Prefix::E1,
                _ => {
                    let code = b & 0x7f;
                    if let Some((bit, _)) = LOCKS.iter().find(|(_, sc)| *sc == code) {
                        if pressed {
                            if self.locks_held & bit == 0 {
                                toggled |= bit;
                            }
                            self.locks_held |= bit;
                        } else {
                            self.locks_held &= !bit;
                        }
                    }
                    track(&mut self.held, code, pressed);
                    sink.key(code as u16, pressed);
                    Prefix::None
                }
            },
            Prefix::E0 => {
                track(&mut self.held_e0, b, pressed);
                sink.key(0xe000 | (b & 0x7f) as u16, pressed);
                Prefix::None
            }
            Prefix::E1 => Prefix::E1Second(pressed),
            Prefix::E1Second(p) => {
                sink.key(0xe11d, p);
                Prefix::None
            }
        };
        toggled
    }

    /// Releases every key the guest still sees held (spice-server's release_keys).
    pub fn release_all(&mut self, sink: &dyn InputSink) {
        for (set, prefix) in [(&mut self.held, 0u16), (&mut self.held_e0, 0xe000)] {
            for code in 0..128u16 {
                if *set & 1 << code != 0 {
                    sink.key(prefix | code, false);
                }
            }
            *set = 0;
        }
        self.locks_held = 0;
        self.state = Prefix::None;
    }
}

/// The input state this channel gave the guest. Dropped when the channel task ends,
/// for whatever reason (client closed, session replaced, error, server stopped), it
/// releases held keys and buttons so nothing stays stuck in the guest.
struct Guest {
    sink: Arc<dyn InputSink>,
    keys: ScancodeDecoder,
    /// PS/2 buttons last sent.
    buttons: u8,
}

impl Guest {
    fn key_byte(&mut self, b: u8) -> u8 {
        self.keys.byte(b, &*self.sink)
    }

    fn mouse(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.buttons = buttons;
        self.sink.mouse(dx, dy, dz, buttons);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.keys.release_all(&*self.sink);
        if self.buttons != 0 {
            self.sink.mouse(0, 0, 0, 0);
        }
    }
}

/// Lock-key state, as PS/2 LED bits.
struct Leds {
    /// Last state the guest reported (poll of `InputSink::leds`, `set_keyboard_leds`).
    reported: u8,
    /// What the guest has, as far as we know: `reported`, plus the lock toggles sent
    /// since, which the guest's LEDs may not show yet. KEY_MODIFIERS requests are
    /// compared with this, so two requests in a row do not toggle a lock twice.
    assumed: u8,
    /// Last state sent to the client.
    sent: u8,
}

/// SPICE button mask (left 1, middle 2, right 4) → PS/2 (left 1, right 2, middle 4).
pub fn ps2_buttons(state: u16) -> u8 {
    let mut b = 0;
    if state & button_mask::LEFT != 0 {
        b |= 1;
    }
    if state & button_mask::RIGHT != 0 {
        b |= 2;
    }
    if state & button_mask::MIDDLE != 0 {
        b |= 4;
    }
    b
}

fn modifiers_body(leds: u8) -> [u8; 2] {
    (leds as u16 & 7).to_le_bytes()
}

pub async fn run(shared: &Arc<Shared>, conn: &mut Conn, reg: &Registration) -> Result<(), End> {
    let sink = shared.input.clone();
    let mut leds_rx = shared.leds.subscribe();
    let initial = (*leds_rx.borrow_and_update()).unwrap_or_else(|| sink.leds()) & 7;
    let mut leds = Leds {
        reported: initial,
        assumed: initial,
        sent: initial,
    };
    conn.send(inputs_msg::INIT, &modifiers_body(initial))
        .await?;
    reg.initialized();
    let mut guest = Guest {
        sink: sink.clone(),
        keys: ScancodeDecoder::default(),
        buttons: 0,
    };
    let mut motions: u32 = 0;
    let mut poll = tokio::time::interval(LED_POLL);
    let mut led_update: Option<u8> = None;
    loop {
        let next = tokio::select! {
            n = next_message(conn) => Some(n?),
            _ = poll.tick() => {
                led_update = Some(sink.leds() & 7);
                None
            }
            r = leds_rx.changed() => {
                if r.is_ok() {
                    led_update = *leds_rx.borrow_and_update();
                }
                None
            }
        };
        if let Some(now) = led_update.take() {
            if now != leds.reported {
                // The guest caught up (or changed its locks itself).
                leds.reported = now;
                leds.assumed = now;
            }
            if now != leds.sent {
                leds.sent = now;
                conn.send(inputs_msg::KEY_MODIFIERS, &modifiers_body(now))
                    .await?;
            }
        }
        let Some(next) = next else { continue };
        let (t, body) = match next {
            Next::Msg(t, b) => (t, b),
            Next::Base => continue,
            Next::Closed => return Ok(()),
        };
        let mut r = Reader::new(&body);
        let short = || violation(format!("malformed inputs message {t}"));
        match t {
            inputs_msgc::KEY_DOWN | inputs_msgc::KEY_UP => {
                let code = r.u32().ok_or_else(short)?;
                // Bytes in order until a zero byte, at most 4 (spice-server).
                for b in code.to_le_bytes().into_iter().take_while(|b| *b != 0) {
                    leds.assumed ^= guest.key_byte(b);
                }
            }
            inputs_msgc::KEY_SCANCODE => {
                for b in r.rest() {
                    leds.assumed ^= guest.key_byte(*b);
                }
            }
            inputs_msgc::KEY_MODIFIERS => {
                let want = r.u16().ok_or_else(short)? as u8;
                for (bit, sc) in LOCKS {
                    if guest.keys.locks_held & bit == 0 && (want ^ leds.assumed) & bit != 0 {
                        sink.key(sc as u16, true);
                        sink.key(sc as u16, false);
                        leds.assumed ^= bit;
                    }
                }
            }
            inputs_msgc::MOUSE_MOTION | inputs_msgc::MOUSE_POSITION => {
                if t == inputs_msgc::MOUSE_MOTION {
                    let dx = r.i32().ok_or_else(short)?;
                    let dy = r.i32().ok_or_else(short)?;
                    let state = r.u16().ok_or_else(short)?;
                    guest.mouse(dx, dy, 0, ps2_buttons(state));
                }
                // MOUSE_POSITION (client mode) is never offered; it still counts for acks.
                motions += 1;
                if motions == INPUT_MOTION_ACK_BUNCH {
                    motions = 0;
                    conn.send(inputs_msg::MOUSE_MOTION_ACK, &[]).await?;
                }
            }
            inputs_msgc::MOUSE_PRESS => {
                let b = r.u8().ok_or_else(short)?;
                let state = r.u16().ok_or_else(short)?;
                let dz = match b {
                    button::UP => -1,
                    button::DOWN => 1,
                    _ => 0,
                };
                guest.mouse(0, 0, dz, ps2_buttons(state));
            }
            inputs_msgc::MOUSE_RELEASE => {
                r.u8().ok_or_else(short)?;
                let state = r.u16().ok_or_else(short)?;
                guest.mouse(0, 0, 0, ps2_buttons(state));
            }
            _ => tracing::debug!(msg_type = t, "ignoring unknown inputs message"),
        }
    }
}
