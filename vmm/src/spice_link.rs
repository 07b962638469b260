//! The SPICE server in the machine: its ports (client input into the input
//! router, the guest's LEDs pushed back), the display model's frames out to
//! clients, and the URI a user connects to. (QMP's view of the server is in
//! `qmp/spice_link.rs`.)

use std::net::IpAddr;
use std::sync::Arc;

use devices::display::{Frame, Update};
use spice::port::{InputPort, LedNotifier};
use spice::SpiceServer;

use crate::display::Frontend;
use crate::input::{InputRouter, Source};

/// The SPICE server's input port: client input enters the router as
/// `Source::Spice`, the same path QMP's takes, and the router's LED changes are
/// pushed to the server. (The port's button bits and absolute range are the
/// devices' own: PS/2 order, 0..=0x7fff.)
pub struct SpiceInput(pub Arc<InputRouter>);

impl InputPort for SpiceInput {
    fn key(&self, xt_scancode: u16, pressed: bool) {
        self.0.key(Source::Spice, xt_scancode, pressed);
    }
    fn relative(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.0.relative(Source::Spice, dx, dy, dz, buttons);
    }
    fn absolute(&self, _head: u8, x: u32, y: u32, dz: i32, buttons: u8) {
        // One head: the tablet spans it. The server offers client mouse mode
        // only when `has_absolute`, so this cannot fail.
        let _ = self
            .0
            .absolute(Source::Spice, Some(x), Some(y), dz, buttons);
    }
    fn has_absolute(&self) -> bool {
        self.0.has_absolute()
    }
    fn leds(&self) -> u8 {
        self.0.leds()
    }
    fn attach(&self, notifier: LedNotifier) {
        self.0.on_leds(move |leds| notifier.set(leds));
    }
    fn detached(&self) {
        // The channel released what it decoded; this also catches what it does
        // not track (Pause) and anything pressed through it by other means.
        self.0.release_all(Source::Spice);
    }
}

/// Frames from the display model to the server's clients: the frame is lent,
/// and the server copies only the changed rectangles' pixels.
pub struct SpiceFrontend(pub Arc<SpiceServer>);

impl Frontend for SpiceFrontend {
    fn show(&self, frame: &Frame, update: &Update) {
        if frame.width == 0 || frame.height == 0 {
            return;
        }
        self.0.update(frame, &update.rects);
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
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use devices::interrupt::NoIrq;
    use devices::legacy::i8042::I8042;
    use devices::{BusDevice, VmRequest, VmRequests};
    use spice::client::{ClientOptions, TestClient};
    use spice::proto::channel as ch;

    struct NoRequests;
    impl VmRequests for NoRequests {
        fn request(&self, _: VmRequest) {}
    }

    /// Keyboard bytes waiting in the controller, read as the guest reads them.
    fn drain(i8042: &Mutex<I8042>) -> Vec<u8> {
        let mut k = i8042.lock().unwrap();
        let mut got = Vec::new();
        loop {
            let mut st = [0u8];
            k.read(0x60, 4, &mut st);
            if st[0] & 1 == 0 {
                return got;
            }
            let mut b = [0u8];
            k.read(0x60, 0, &mut b);
            got.push(b[0]);
        }
    }

    /// The keyboard side as the builder wires it (i8042 → router → SPICE server),
    /// driven at the i8042's ports as a guest driver drives them.
    #[test]
    fn guest_leds_reach_a_spice_client_pushed_and_keys_come_back() {
        let i8042 = Arc::new(Mutex::new(I8042::new(
            Arc::new(NoIrq),
            Arc::new(NoIrq),
            Arc::new(NoRequests),
        )));
        let router = InputRouter::new(i8042.clone(), i8042.clone(), None);
        i8042.lock().unwrap().set_led_listener(router.clone());
        let server = SpiceServer::start(
            spice::Config {
                listen: spice::Listen::Tcp("127.0.0.1:0".parse().unwrap()),
                password: None,
                force_raw_images: false,
            },
            spice::Ports {
                input: Some(Arc::new(SpiceInput(router.clone()))),
                ..spice::Ports::default()
            },
        )
        .unwrap();
        // No display port, no display channel.
        assert_eq!(server.channels(), vec![(ch::INPUTS, 0)]);
        let c = TestClient::connect(
            &server.local_addr(),
            ClientOptions {
                channels: vec![ch::INPUTS],
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let t = Duration::from_secs(20);
        c.wait(t, |s| s.inputs_init == Some(0)).unwrap();
        // The guest's keyboard driver turns Num Lock on (ED 02): the i8042 pushes
        // it through the router to the server, which tells the client.
        {
            let mut k = i8042.lock().unwrap();
            k.write(0x60, 0, &[0xed]);
            k.write(0x60, 0, &[0x02]);
        }
        c.wait(t, |s| s.modifiers.last() == Some(&2)).unwrap();
        // A key from the client arrives at the same keyboard QMP types on.
        drain(&i8042);
        c.key_scancode(&[0x1e, 0x9e]).unwrap();
        let deadline = Instant::now() + t;
        let mut got = Vec::new();
        while got.len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            got.extend(drain(&i8042));
        }
        // Set 2 (untranslated): A make 1C, break F0 1C.
        assert_eq!(got, vec![0x1c, 0xf0, 0x1c]);
    }

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
