//! End-to-end tests of the server against the in-crate test client (no KVM).

mod display;
mod flow;
mod handshake;
mod inputs;
mod limits;
mod sessions;
mod transport;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{ClientOptions, TestClient};
use crate::{Config, InputSink, Listen, Rect, SpiceServer, Surface};

pub const T: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Key(u16, bool),
    Mouse(i32, i32, i32, u8),
}

/// Records input; `leds` is settable to play the guest keyboard.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Input>>,
    pub leds: Mutex<u8>,
}

impl Recorder {
    pub fn take(&self) -> Vec<Input> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
    /// Waits until at least `n` events were recorded, then returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<Input> {
        let deadline = std::time::Instant::now() + T;
        while self.events.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.take()
    }
}

impl InputSink for Recorder {
    fn key(&self, sc: u16, pressed: bool) {
        self.events.lock().unwrap().push(Input::Key(sc, pressed));
    }
    fn mouse(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.events
            .lock()
            .unwrap()
            .push(Input::Mouse(dx, dy, dz, buttons));
    }
    fn leds(&self) -> u8 {
        *self.leds.lock().unwrap()
    }
}

pub fn start(password: Option<&str>) -> (SpiceServer, Arc<Recorder>) {
    start_with(password, false)
}

pub fn start_with(password: Option<&str>, force_raw: bool) -> (SpiceServer, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = SpiceServer::start(
        Config {
            listen: Listen::Tcp(addr),
            password: password.map(str::to_string),
            force_raw_images: force_raw,
            transport: Default::default(),
        },
        rec.clone(),
    )
    .unwrap();
    (server, rec)
}

pub fn opts(password: &str) -> ClientOptions {
    ClientOptions {
        password: password.to_string(),
        ..ClientOptions::default()
    }
}

pub fn connect(server: &SpiceServer) -> TestClient {
    TestClient::connect(&server.local_addr(), ClientOptions::default()).unwrap()
}

/// A picture with structure (compresses) and detail (every pixel differs from its
/// neighbours somewhere), seeded so different frames differ.
pub fn picture(width: u32, height: u32, seed: u32) -> Arc<Surface> {
    let pixels: Vec<u32> = (0..height)
        .flat_map(|y| {
            (0..width).map(move |x| {
                let band = ((x / 16 + y / 16 + seed) % 7) * 0x242424;
                (band ^ (x.wrapping_mul(7) + y.wrapping_mul(13) + seed * 101)) & 0x00ff_ffff
            })
        })
        .collect();
    Arc::new(Surface {
        width,
        height,
        pixels: pixels.into(),
    })
}

pub fn full(s: &Surface) -> Rect {
    Rect {
        x: 0,
        y: 0,
        width: s.width,
        height: s.height,
    }
}

/// Waits until the client's surface equals `s`.
pub fn wait_surface(c: &TestClient, s: &Surface) {
    c.wait(T, |st| {
        st.surface.as_ref().is_some_and(|cs| {
            cs.width == s.width && cs.height == s.height && cs.pixels[..] == s.pixels[..]
        })
    })
    .unwrap_or_else(|e| panic!("client surface never matched: {e}"));
}
