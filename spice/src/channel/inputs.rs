//! INPUTS channel: keys (KEY_DOWN/KEY_UP/KEY_SCANCODE byte streams decoded back into
//! set-1 scancodes), server-mode mouse, lock-key sync both ways, and the
//! MOUSE_MOTION_ACK every 4 motion messages that keeps the client's pointer moving.

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

impl ScancodeDecoder {
    pub fn byte(&mut self, b: u8, sink: &dyn InputSink) {
        let pressed = b & 0x80 == 0;
        self.state = match self.state {
            Prefix::None => match b {
                0xe0 => Prefix::E0,
                0xe1 => Prefix::E1,
                _ => {
                    let code = b & 0x7f;
                    if let Some((bit, _)) = LOCKS.iter().find(|(_, sc)| *sc == code) {
                        if pressed {
                            self.locks_held |= bit;
                        } else {
                            self.locks_held &= !bit;
                        }
                    }
                    sink.key(code as u16, pressed);
                    Prefix::None
                }
            },
            Prefix::E0 => {
                sink.key(0xe000 | (b & 0x7f) as u16, pressed);
                Prefix::None
            }
            Prefix::E1 => Prefix::E1Second(pressed),
            Prefix::E1Second(p) => {
                sink.key(0xe11d, p);
                Prefix::None
            }
        };
    }
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
    let mut sent_leds = (*leds_rx.borrow_and_update()).unwrap_or_else(|| sink.leds()) & 7;
    conn.send(inputs_msg::INIT, &modifiers_body(sent_leds))
        .await?;
    reg.initialized();
    let mut keys = ScancodeDecoder::default();
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
            if now != sent_leds {
                sent_leds = now;
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
                    keys.byte(b, &*sink);
                }
            }
            inputs_msgc::KEY_SCANCODE => {
                for b in r.rest() {
                    keys.byte(*b, &*sink);
                }
            }
            inputs_msgc::KEY_MODIFIERS => {
                let want = r.u16().ok_or_else(short)? as u8;
                let have = sink.leds();
                for (bit, sc) in LOCKS {
                    if keys.locks_held & bit == 0 && (want ^ have) & bit != 0 {
                        sink.key(sc as u16, true);
                        sink.key(sc as u16, false);
                    }
                }
            }
            inputs_msgc::MOUSE_MOTION | inputs_msgc::MOUSE_POSITION => {
                if t == inputs_msgc::MOUSE_MOTION {
                    let dx = r.i32().ok_or_else(short)?;
                    let dy = r.i32().ok_or_else(short)?;
                    let state = r.u16().ok_or_else(short)?;
                    sink.mouse(dx, dy, 0, ps2_buttons(state));
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
                sink.mouse(0, 0, dz, ps2_buttons(state));
            }
            inputs_msgc::MOUSE_RELEASE => {
                r.u8().ok_or_else(short)?;
                let state = r.u16().ok_or_else(short)?;
                sink.mouse(0, 0, 0, ps2_buttons(state));
            }
            _ => tracing::debug!(msg_type = t, "ignoring unknown inputs message"),
        }
    }
}
