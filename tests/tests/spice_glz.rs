//! GLZ against spice-gtk's decoder (SpiceClientGLib, `decode-glz.c`): an
//! in-process SPICE server (no guest: the pictures are made here, so every
//! pixel is known) sends a text-like screen, then scrolls it (past the
//! server's GLZ window, so old images are evicted) and moves blocks
//! of it, so that most images copy from earlier ones. The client, connected
//! all along, must end with exactly the last picture; tshark decodes the
//! capture with no malformed packet; the server's codec counters show GLZ
//! (or zlib-wrapped GLZ) went out.

use std::time::Duration;

use spice::{
    Config, Frame, ImageCompression, ImageOptions, JpegMode, Listen, Ports, Rect, SpiceServer,
    WanCompression,
};
use spicebox_tests::glib_client::LiveGlibClient;
use spicebox_tests::screen;
use spicebox_tests::tshark::Capture;
use spicebox_tests::TempDir;

const W: u32 = 640;
const H: u32 = 400;

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % u64::from(n)) as u32
    }
}

/// `rows` text-like rows of `W` pixels: white, with "words" of small dark
/// glyph-like marks from a set of 40 shapes (so words repeat, as text does).
fn text_rows(rows: u32, rng: &mut Rng) -> Vec<u32> {
    let mut px = vec![0x00ff_ffffu32; (W * rows) as usize];
    let glyph =
        |g: u32, x: u32, y: u32| (g.wrapping_mul(2654435761) >> ((x * 3 + y * 5) & 15)) & 1 == 1;
    let mut y0 = 2;
    while y0 + 12 < rows {
        let mut x0 = 4 + rng.below(20);
        while x0 + 8 < W {
            let word = 1 + rng.below(7);
            for _ in 0..word {
                let g = rng.below(40);
                for y in 0..10 {
                    for x in 0..6 {
                        if x0 + x < W && glyph(g, x, y) {
                            px[((y0 + y) * W + x0 + x) as usize] = 0x0020_2830;
                        }
                    }
                }
                x0 += 7;
            }
            x0 += 7 + rng.below(10);
        }
        y0 += 16;
    }
    px
}

fn run(name: &str, zlib: WanCompression) {
    let dir = TempDir::new(name);
    let server = SpiceServer::start(
        Config {
            listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            password: None,
            force_raw_images: false,
            playback_compression: true,
            // Every image lossless: the client's picture must be exact.
            jpeg: JpegMode::Never,
            streaming_video: Default::default(),
            images: ImageOptions {
                compression: ImageCompression::AutoGlz,
                zlib_glz: zlib,
            },
            transport: Default::default(),
        },
        Ports {
            display_heads: 1,
            ..Ports::default()
        },
    )
    .unwrap();
    let Listen::Tcp(addr) = server.local_addr() else {
        unreachable!()
    };
    let mut capture = Capture::start(&dir, addr.port(), name);
    let mut rng = Rng(7);
    let mut frame = Frame {
        width: W,
        height: H,
        pixels: text_rows(H, &mut rng),
    };
    let full = Rect::full(W, H);
    server.update(&frame, &[full], &[]);
    let client = LiveGlibClient::connect(addr.port(), dir.join(&format!("{name}.ppm")), name);
    std::thread::sleep(Duration::from_millis(500));
    // Scrolls: each picture is the last one moved up 16 rows plus new rows.
    // 24 of 256 Kpixels overflow the server's 4 Mpixel window: old images
    // leave it, and the client must still hold every one later ones copy.
    for _ in 0..24 {
        frame.pixels.drain(..(16 * W) as usize);
        frame.pixels.extend(text_rows(16, &mut rng));
        server.update(&frame, &[full], &[]);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Window moves: a block copied elsewhere, only the destination dirty.
    for (sx, sy, dx, dy) in [(10, 20, 300, 200), (300, 200, 40, 60), (100, 100, 420, 10)] {
        let (bw, bh) = (200u32, 120u32);
        let block: Vec<u32> = (sy..sy + bh)
            .flat_map(|y| frame.pixels[(y * W + sx) as usize..(y * W + sx + bw) as usize].to_vec())
            .collect();
        for y in 0..bh {
            let row = ((dy + y) * W + dx) as usize;
            frame.pixels[row..row + bw as usize]
                .copy_from_slice(&block[(y * bw) as usize..((y + 1) * bw) as usize]);
        }
        server.update(&frame, &[Rect::new(dx, dy, bw, bh)], &[]);
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let codecs: Vec<(&str, u64)> = server
        .clients()
        .iter()
        .filter_map(|c| c.stats.clone())
        .flat_map(|s| s.codecs)
        .filter(|(_, n)| *n > 0)
        .collect();
    let seen = client.picture();
    capture.stop();
    let diff = screen::differences(&seen, &frame, None);
    assert!(
        diff.is_empty(),
        "{name}: {} pixels differ, first {:?}",
        diff.len(),
        &diff[..diff.len().min(5)]
    );
    let count = |codec: &str| {
        codecs
            .iter()
            .filter(|(c, _)| *c == codec)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let glz = count("glz") + count("zlib-glz");
    assert!(glz >= 24, "{name}: codecs {codecs:?}");
    if zlib == WanCompression::Always {
        assert!(count("zlib-glz") >= 24, "{name}: codecs {codecs:?}");
    }
    eprintln!("{name}: codecs {codecs:?}");
    let streams = capture.opened_streams();
    capture.assert_well_formed(&streams);
}

#[test]
fn spice_gtk_decodes_glz_exactly() {
    run("glz", WanCompression::Never);
}

#[test]
fn spice_gtk_decodes_zlib_glz_exactly() {
    run("zlib-glz", WanCompression::Always);
}
