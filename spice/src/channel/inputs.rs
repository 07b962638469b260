//! INPUTS channel: keys (KEY_DOWN/KEY_UP/KEY_SCANCODE byte streams decoded back into
//! set-1 scancodes), relative motion (server mouse mode) and absolute positions
//! (client mouse mode, when the input port has an absolute pointer), lock-key
//! sync both ways (the guest's LEDs are pushed through the port's
//! [`LedNotifier`](crate::port::LedNotifier), never polled), and the
//! MOUSE_MOTION_ACK every 4 motion messages that keeps the client's pointer moving.
//! When the channel ends, keys and buttons still held are released in the guest.

use std::sync::Arc;

use tokio::sync::watch;

use super::conn::violation;
use super::display::DisplayChannel;
use super::{next_message, ChannelKind, ChannelTask, End, Link, Next};
use crate::port::{buttons, InputPort, LedNotifier, ABS_MAX};
use crate::proto::{
    button, button_mask, channel as ch, inputs_msg, inputs_msgc, INPUTS_CAP_KEY_SCANCODE,
    INPUT_MOTION_ACK_BUNCH,
};
use crate::wire::Reader;

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
    pub fn byte(&mut self, b: u8, sink: &dyn InputPort) -> u8 {
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
    pub fn release_all(&mut self, sink: &dyn InputPort) {
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
    sink: Arc<dyn InputPort>,
    keys: ScancodeDecoder,
    /// Buttons last sent.
    buttons: u8,
    /// The last absolute position (head, x, y) while the client sends positions
    /// (client mouse mode); None while it sends relative motion. Buttons and the
    /// wheel go to the pointer that moves.
    position: Option<(u8, u32, u32)>,
}

impl Guest {
    fn key_byte(&mut self, b: u8) -> u8 {
        self.keys.byte(b, &*self.sink)
    }

    fn relative(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.buttons = buttons;
        self.position = None;
        self.sink.relative(dx, dy, dz, buttons);
    }

    fn absolute(&mut self, head: u8, x: u32, y: u32, buttons: u8) {
        self.buttons = buttons;
        self.position = Some((head, x, y));
        self.sink.absolute(head, x, y, 0, buttons);
    }

    /// A button or wheel change, on whichever pointer is in use.
    fn buttons(&mut self, dz: i32, buttons: u8) {
        self.buttons = buttons;
        match self.position {
            Some((head, x, y)) => self.sink.absolute(head, x, y, dz, buttons),
            None => self.sink.relative(0, 0, dz, buttons),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.keys.release_all(&*self.sink);
        if self.buttons != 0 {
            self.buttons(0, 0);
        }
        self.sink.detached();
    }
}

/// Lock-key state, as LED bits.
struct Leds {
    /// Last state the guest reported (at connect, then pushed).
    reported: u8,
    /// What the guest has, as far as we know: `reported`, plus the lock toggles sent
    /// since, which the guest's LEDs may not show yet. KEY_MODIFIERS requests are
    /// compared with this, so two requests in a row do not toggle a lock twice.
    assumed: u8,
    /// Last state sent to the client.
    sent: u8,
}

/// SPICE button mask (left 1, middle 2, right 4, side 32, extra 64) → the port's
/// [`buttons`] (PS/2 order: left 1, right 2, middle 4; side 8, extra 16). The
/// wheel bits (up 8, down 16) are not buttons: they become `dz`.
pub fn port_buttons(state: u16) -> u8 {
    [
        (button_mask::LEFT, buttons::LEFT),
        (button_mask::RIGHT, buttons::RIGHT),
        (button_mask::MIDDLE, buttons::MIDDLE),
        (button_mask::SIDE, buttons::SIDE),
        (button_mask::EXTRA, buttons::EXTRA),
    ]
    .iter()
    .filter(|(spice, _)| state & spice != 0)
    .fold(0, |b, (_, port)| b | port)
}

fn modifiers_body(leds: u8) -> [u8; 2] {
    (leds as u16 & 7).to_le_bytes()
}

/// Pixel `p` of a `size`-pixel axis → 0..=ABS_MAX (the last pixel is ABS_MAX).
fn scale(p: u32, size: u32) -> u32 {
    let last = u64::from(size.max(2) - 1);
    (u64::from(p).min(last) * u64::from(ABS_MAX) / last) as u32
}

/// The inputs kind: its port, and the LED state the port pushes.
pub struct InputsChannel {
    port: Arc<dyn InputPort>,
    /// The notifier's channel, kept here too so channels keep working whatever
    /// the port does with its notifier.
    leds: Arc<watch::Sender<u8>>,
    /// Head sizes, to scale client-mode positions.
    display: Option<Arc<DisplayChannel>>,
}

impl InputsChannel {
    pub fn new(port: Arc<dyn InputPort>, display: Option<Arc<DisplayChannel>>) -> Self {
        let leds = Arc::new(watch::channel(port.leds() & 7).0);
        port.attach(LedNotifier(leds.clone()));
        InputsChannel {
            port,
            leds,
            display,
        }
    }
}

impl ChannelKind for InputsChannel {
    fn channel_type(&self) -> u8 {
        ch::INPUTS
    }
    fn name(&self) -> &'static str {
        "inputs"
    }
    fn caps(&self) -> Vec<u32> {
        vec![1 << INPUTS_CAP_KEY_SCANCODE]
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(self.serve(link))
    }
}

impl InputsChannel {
    async fn serve(&self, link: Link<'_>) -> Result<(), End> {
        let conn = link.conn;
        let sink = self.port.clone();
        // Subscribe (the pushed value counts as seen) before reading the port,
        // so a change pushed in between still wakes us below.
        let mut leds_rx = self.leds.subscribe();
        let initial = sink.leds() & 7;
        let mut leds = Leds {
            reported: initial,
            assumed: initial,
            sent: initial,
        };
        conn.send(inputs_msg::INIT, &modifiers_body(initial))
            .await?;
        link.reg.initialized();
        let mut guest = Guest {
            sink: sink.clone(),
            keys: ScancodeDecoder::default(),
            buttons: 0,
            position: None,
        };
        let mut motions: u32 = 0;
        loop {
            let next = tokio::select! {
                n = next_message(conn) => n?,
                r = leds_rx.changed() => {
                    if r.is_err() {
                        // Cannot happen: this kind holds the sender.
                        return Ok(());
                    }
                    let now = *leds_rx.borrow_and_update();
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
                    continue;
                }
            };
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
                        guest.relative(dx, dy, 0, port_buttons(state));
                    } else {
                        let x = r.u32().ok_or_else(short)?;
                        let y = r.u32().ok_or_else(short)?;
                        let state = r.u16().ok_or_else(short)?;
                        let head = r.u8().ok_or_else(short)?;
                        let size = self.display.as_ref().and_then(|d| d.size(head));
                        match size {
                            Some((w, h)) if sink.has_absolute() => {
                                guest.absolute(head, scale(x, w), scale(y, h), port_buttons(state));
                            }
                            // Client mode was never offered, or the head has no
                            // picture: there is nothing to point at.
                            _ => tracing::debug!(head, "absolute position dropped"),
                        }
                    }
                    // Both count for the client's motion window.
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
                    guest.buttons(dz, port_buttons(state));
                }
                inputs_msgc::MOUSE_RELEASE => {
                    r.u8().ok_or_else(short)?;
                    let state = r.u16().ok_or_else(short)?;
                    guest.buttons(0, port_buttons(state));
                }
                _ => tracing::debug!(msg_type = t, "ignoring unknown inputs message"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_and_scaling() {
        assert_eq!(port_buttons(button_mask::LEFT | button_mask::RIGHT), 3);
        assert_eq!(port_buttons(button_mask::MIDDLE), buttons::MIDDLE);
        assert_eq!(port_buttons(button_mask::UP | button_mask::DOWN), 0);
        assert_eq!(
            port_buttons(button_mask::SIDE | button_mask::EXTRA),
            buttons::SIDE | buttons::EXTRA
        );
        assert_eq!(scale(0, 1024), 0);
        assert_eq!(scale(1023, 1024), ABS_MAX);
        assert_eq!(scale(5000, 1024), ABS_MAX);
        assert_eq!(scale(512, 1025), ABS_MAX / 2);
        assert_eq!(scale(0, 1), 0);
        assert_eq!(scale(u32::MAX, 0), ABS_MAX);
    }
}
