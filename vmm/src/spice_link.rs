//! The SPICE server in the machine: client input into the PS/2 devices, the
//! display model's frames out to clients, and the URI a user connects to.
//! (QMP's view of the server is in `qmp/spice_link.rs`.)

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use devices::display::{Frame, Update};
use devices::legacy::i8042::I8042;
use spice::{InputSink, SpiceServer, Surface};

use crate::display::Frontend;

/// Client keys and mouse go to the i8042's keyboard and mouse ports, exactly
/// like a local PS/2 keyboard and mouse.
pub struct Ps2Input(pub Arc<Mutex<I8042>>);

impl Ps2Input {
    fn i8042(&self) -> std::sync::MutexGuard<'_, I8042> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InputSink for Ps2Input {
    fn key(&self, xt_scancode: u16, pressed: bool) {
        self.i8042().key_event(xt_scancode, pressed);
    }
    fn mouse(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.i8042().mouse_event(dx, dy, dz, buttons);
    }
    fn leds(&self) -> u8 {
        self.i8042().leds()
    }
}

/// Frames from the display model to the server's clients.
pub struct SpiceFrontend(pub Arc<SpiceServer>);

impl Frontend for SpiceFrontend {
    fn show(&self, frame: &Frame, update: &Update) {
        if frame.width == 0 || frame.height == 0 {
            return;
        }
        let surface = Arc::new(Surface {
            width: frame.width,
            height: frame.height,
            pixels: Arc::from(frame.pixels.as_slice()),
        });
        let rects: Vec<spice::Rect> = update
            .rects
            .iter()
            .map(|r| spice::Rect {
                x: r.x,
                y: r.y,
                width: r.width,
                height: r.height,
            })
            .collect();
        self.0.update(surface, &rects);
    }
}

/// A password for the printed URI when the user gave none: 16 characters
/// from a 62-letter alphabet (95 bits), like a notebook server's token.
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The URI a user pastes into remote-viewer, with the password if one is set.
pub fn uri(listen: &spice::Listen, password: Option<&str>) -> String {
    let base = match listen {
        spice::Listen::Tcp(a) => match a.ip() {
            IpAddr::V6(ip) => format!("spice://[{ip}]:{}", a.port()),
            IpAddr::V4(ip) => format!("spice://{ip}:{}", a.port()),
        },
        spice::Listen::Unix(p) => format!("spice+unix://{}", p.display()),
    };
    match password {
        Some(pw) => format!("{base}?password={pw}"),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_differ_and_fit_a_uri() {
        let (a, b) = (generate_password(), generate_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        let l = spice::Listen::Tcp("127.0.0.1:5930".parse().unwrap());
        assert_eq!(
            uri(&l, Some(&a)),
            format!("spice://127.0.0.1:5930?password={a}")
        );
        assert_eq!(uri(&l, None), "spice://127.0.0.1:5930");
        let u = spice::Listen::Unix("/tmp/s.sock".into());
        assert_eq!(uri(&u, None), "spice+unix:///tmp/s.sock");
    }
}
