//! A SPICE server with no VM behind it: serves a still test picture and prints the
//! keys clients send. For trying transports and clients by hand:
//!
//! ```sh
//! cargo run -p spice --example serve_picture -- 127.0.0.1:5930 [TLS-HOST:PORT X509-DIR] [--sasl USERS]
//! ```
//! The password is "pw" (none with --sasl).

use std::sync::Arc;

use spice::port::{InputPort, LedNotifier};

struct Print;
impl InputPort for Print {
    fn key(&self, sc: u16, pressed: bool) {
        println!("key {sc:#x} {}", if pressed { "down" } else { "up" });
    }
    fn relative(&self, _: i32, _: i32, _: i32, _: u8) {}
    fn absolute(&self, _: u8, _: u32, _: u32, _: i32, _: u8) {}
    fn has_absolute(&self) -> bool {
        false
    }
    fn leds(&self) -> u8 {
        0
    }
    fn attach(&self, _: LedNotifier) {}
    fn detached(&self) {}
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = args.first().map_or("127.0.0.1:5930", String::as_str);
    let mut transport = spice::TransportConfig::default();
    if let (Some(tls), Some(dir)) = (args.get(1), args.get(2)) {
        if !tls.starts_with("--") {
            transport.tls = Some(spice::TlsListen {
                listen: tls.parse().expect("TLS HOST:PORT"),
                x509_dir: dir.into(),
            });
        }
    }
    let sasl = args.iter().position(|a| a == "--sasl");
    if let Some(i) = sasl {
        let users = spice::sasl::Users::load(args[i + 1].as_ref()).expect("users file");
        transport.sasl = Some(Arc::new(users));
    }
    let server = spice::SpiceServer::start(
        spice::Config {
            listen: spice::Listen::Tcp(listen.parse().expect("HOST:PORT")),
            password: sasl.is_none().then(|| "pw".to_string()),
            force_raw_images: false,
            playback_compression: true,
            jpeg: Default::default(),
            streaming_video: Default::default(),
            transport,
        },
        spice::Ports {
            display_heads: 1,
            input: Some(Arc::new(Print)),
            agent: None,
            streams: Vec::new(),
            ..Default::default()
        },
    )
    .expect("start");
    let (w, h) = (640u32, 480u32);
    let pixels: Vec<u32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| ((x * 255 / w) << 16) | ((y * 255 / h) << 8) | 0x40))
        .collect();
    let frame = spice::Frame {
        width: w,
        height: h,
        pixels,
    };
    server.update(&frame, &[spice::Rect::full(w, h)], &[]);
    println!(
        "listening on {:?}, TLS {:?}",
        server.local_addr(),
        server.tls_addr()
    );
    loop {
        std::thread::park();
    }
}
