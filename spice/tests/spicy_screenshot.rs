//! Interop with a real client: spice-gtk's `spicy-screenshot` (Debian package
//! `spice-client-gtk`) connects with a password, receives the primary surface and
//! writes it as a PPM, which must equal the served Surface pixel for pixel.
//! Fails loudly (does not skip) when the tool is missing.

use std::process::Command;
use std::time::{Duration, Instant};

use spice::{Config, Frame, Listen, Ports, Rect, SpiceServer};

/// Binary PPM (P6, maxval 255) → 0x00RRGGBB pixels.
fn parse_ppm(data: &[u8]) -> (u32, u32, Vec<u32>) {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while data[i].is_ascii_whitespace() {
            i += 1;
        }
        if data[i] == b'#' {
            while data[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while !data[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(std::str::from_utf8(&data[start..i]).unwrap().to_string());
    }
    i += 1; // the single whitespace byte after maxval
    assert_eq!(fields[0], "P6");
    assert_eq!(fields[3], "255");
    let (w, h): (u32, u32) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let px = data[i..]
        .chunks_exact(3)
        .map(|c| (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32)
        .collect::<Vec<_>>();
    assert_eq!(px.len(), (w * h) as usize, "PPM pixel count");
    (w, h, px)
}

fn picture(w: u32, h: u32) -> Frame {
    let pixels: Vec<u32> = (0..h)
        .flat_map(|y| {
            (0..w).map(move |x| {
                let block = ((x / 32 + y / 32) % 5) * 0x30_2010;
                (block + (x * 5 + y * 3) % 256 * 0x01_0101) & 0x00ff_ffff ^ (x ^ y) & 0xff
            })
        })
        .collect();
    Frame {
        width: w,
        height: h,
        pixels,
    }
}

fn screenshot(server: &SpiceServer, password: &str, out: &std::path::Path) -> (u32, u32, Vec<u32>) {
    let Listen::Tcp(addr) = server.local_addr() else {
        unreachable!()
    };
    let _ = std::fs::remove_file(out);
    let mut child = Command::new("spicy-screenshot")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "-w",
            password,
            "-o",
        ])
        .arg(out)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("spicy-screenshot not runnable ({e}): install Debian package spice-client-gtk")
        });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "spicy-screenshot failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spicy-screenshot did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    parse_ppm(&std::fs::read(out).expect("spicy-screenshot wrote no file"))
}

#[test]
fn spicy_screenshot_sees_the_served_surface() {
    let server = SpiceServer::start(
        Config {
            listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            password: Some("hunter2".into()),
            force_raw_images: false,
            playback_compression: true,
            jpeg: Default::default(),
            streaming_video: Default::default(),
            transport: Default::default(),
        },
        // A display and nothing else: no inputs channel is offered.
        Ports {
            display_heads: 1,
            ..Ports::default()
        },
    )
    .unwrap();
    let out = std::env::temp_dir().join(format!("spicy-{}.ppm", std::process::id()));
    for (w, h) in [(320, 200), (123, 77)] {
        let s = picture(w, h);
        server.update(&s, &[Rect::full(w, h)], &[]);
        let (gw, gh, got) = screenshot(&server, "hunter2", &out);
        assert_eq!((gw, gh), (w, h));
        let diff = got
            .iter()
            .zip(s.pixels.iter())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(diff, 0, "{diff} pixels differ at {w}x{h}");
    }
    let _ = std::fs::remove_file(&out);
}
