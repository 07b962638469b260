//! End-to-end tests of the server against the in-crate test client (no KVM).

mod agent;
mod blend;
mod copy_bits;
mod cursor;
mod display;
mod flow;
mod handshake;
mod inputs;
mod jpeg;
mod jpeg_alpha;
mod limits;
mod link;
mod playback;
mod record;
mod registration;
mod sessions;
mod transport;
mod usbredir;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{ClientOptions, TestClient};
use crate::port::{AbsoluteNotifier, InputPort, LedNotifier};
use crate::{Config, Frame, Listen, Ports, Rect, SpiceServer};

pub const T: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Key(u16, bool),
    Mouse(i32, i32, i32, u8),
    /// head, x, y, dz, buttons
    Abs(u8, u32, u32, i32, u8),
}

/// Records input and plays the guest keyboard's LEDs: `leds` is what the port
/// reports when asked, `push_leds` what the guest pushes.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Input>>,
    pub leds: Mutex<u8>,
    /// How often the server asked for the LEDs (once per INPUTS channel: never polled).
    pub led_reads: std::sync::atomic::AtomicUsize,
    pub notifier: Mutex<Option<LedNotifier>>,
    /// Offer an absolute pointer.
    pub absolute: bool,
    /// An absolute pointer that came later (`set_absolute`).
    pub absolute_now: std::sync::atomic::AtomicBool,
    pub abs_notifier: Mutex<Option<AbsoluteNotifier>>,
    /// INPUTS channels that ended.
    pub detached: std::sync::atomic::AtomicUsize,
}

impl Recorder {
    /// The guest changes its LEDs: what a keyboard device reports and pushes.
    pub fn push_leds(&self, leds: u8) {
        *self.leds.lock().unwrap() = leds;
        self.notifier
            .lock()
            .unwrap()
            .as_ref()
            .expect("the server attached the port")
            .set(leds);
    }
    /// A tablet's driver starts or stops: what the VM side pushes.
    pub fn set_absolute(&self, on: bool) {
        self.absolute_now
            .store(on, std::sync::atomic::Ordering::SeqCst);
        self.abs_notifier
            .lock()
            .unwrap()
            .as_ref()
            .expect("the server attached the port")
            .set(on);
    }
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

impl InputPort for Recorder {
    fn key(&self, sc: u16, pressed: bool) {
        self.events.lock().unwrap().push(Input::Key(sc, pressed));
    }
    fn relative(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.events
            .lock()
            .unwrap()
            .push(Input::Mouse(dx, dy, dz, buttons));
    }
    fn absolute(&self, head: u8, x: u32, y: u32, dz: i32, buttons: u8) {
        assert!(
            self.has_absolute(),
            "absolute input without an absolute pointer"
        );
        self.events
            .lock()
            .unwrap()
            .push(Input::Abs(head, x, y, dz, buttons));
    }
    fn has_absolute(&self) -> bool {
        self.absolute || self.absolute_now.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn attach_absolute(&self, notifier: AbsoluteNotifier) {
        *self.abs_notifier.lock().unwrap() = Some(notifier);
    }
    fn leds(&self) -> u8 {
        self.led_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *self.leds.lock().unwrap()
    }
    fn attach(&self, notifier: LedNotifier) {
        *self.notifier.lock().unwrap() = Some(notifier);
    }
    fn detached(&self) {
        self.detached
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub fn config(password: Option<&str>) -> Config {
    Config {
        listen: Listen::Tcp("127.0.0.1:0".parse::<SocketAddr>().unwrap()),
        password: password.map(str::to_string),
        force_raw_images: false,
        playback_compression: true,
        jpeg: Default::default(),
        streaming_video: Default::default(),
        images: Default::default(),
        transport: Default::default(),
    }
}

/// One display head and the recorder as input: the machine spicebox builds.
pub fn ports(rec: &Arc<Recorder>) -> Ports {
    Ports {
        display_heads: 1,
        input: Some(rec.clone()),
        ..Ports::default()
    }
}

pub fn start(password: Option<&str>) -> (SpiceServer, Arc<Recorder>) {
    start_with(password, false)
}

/// A lossless server (so a picture can be compared exactly) showing `s`, and
/// a client behind a simulated link of `bps` that has got it.
pub fn lossless_behind_slow_link(s: &Frame, bps: f64) -> (SpiceServer, TestClient) {
    let rec = Arc::new(Recorder::default());
    let config = Config {
        jpeg: crate::JpegMode::Never,
        ..config(None)
    };
    let server = SpiceServer::start(config, ports(&rec)).unwrap();
    server.update(s, &[full(s)], &[]);
    let opts = crate::client::ClientOptions {
        link_bps: Some(bps),
        ..crate::client::ClientOptions::default()
    };
    let c = TestClient::connect(&server.local_addr(), opts).unwrap();
    wait_surface(&c, s);
    (server, c)
}

pub fn start_with(password: Option<&str>, force_raw: bool) -> (SpiceServer, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let server = SpiceServer::start(
        Config {
            force_raw_images: force_raw,
            playback_compression: true,
            jpeg: Default::default(),
            images: Default::default(),
            ..config(password)
        },
        ports(&rec),
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
pub fn picture(width: u32, height: u32, seed: u32) -> Frame {
    let pixels: Vec<u32> = (0..height)
        .flat_map(|y| {
            (0..width).map(move |x| {
                let band = ((x / 16 + y / 16 + seed) % 7) * 0x242424;
                (band ^ (x.wrapping_mul(7) + y.wrapping_mul(13) + seed * 101)) & 0x00ff_ffff
            })
        })
        .collect();
    Frame {
        width,
        height,
        pixels,
    }
}

pub fn full(s: &Frame) -> Rect {
    Rect::full(s.width, s.height)
}

/// Waits until the client's surface equals `s`.
pub fn wait_surface(c: &TestClient, s: &Frame) {
    c.wait(T, |st| {
        st.surface.as_ref().is_some_and(|cs| {
            cs.width == s.width && cs.height == s.height && cs.pixels[..] == s.pixels[..]
        })
    })
    .unwrap_or_else(|e| panic!("client surface never matched: {e}"));
}
