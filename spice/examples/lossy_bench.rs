//! What trying the lossless coders first costs when an image may go lossy:
//! for photo-like images (those `photo_like` passes), the size and encode
//! time of SPICE LZ, LZ4, GLZ (an empty dictionary) and JPEG, and for images
//! with alpha LZ RGBA against JPEG_ALPHA (JPEG + LZ XXXA). `runs`: whether
//! equal neighbours are rare (`runs_rare`), where the server sends JPEG
//! without trying the lossless coders: the bench checks that JPEG is the
//! smallest on every such image here, so skipping them changes no byte. Run with
//! `cargo run --release -p spice --example lossy_bench`.

use spice::image::{
    jpeg_rgb32, lz4_rgb32, lz_rgb32, lz_rgba, lz_xxxa, photo_like, runs_rare, GlzDictionary,
    MAX_WINDOW_PIXELS,
};

mod common;
use common::{ms, time};

#[allow(dead_code)] // the tests use more of it than the bench
#[path = "../src/image/samples.rs"]
mod samples;

/// The qxl-native guest's 64x48 RGBA blend bitmap (qxl-native.rs `blends`):
/// alpha from clear to opaque across, premultiplied gradients.
fn guest_rgba() -> Vec<u32> {
    let (w, h) = (64u32, 48u32);
    let mut px = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let a = x * 255 / (w - 1);
            let (r, g, b) = (y * 5 * a / 255, 0x80 * a / 255, (w - 1 - x) * 4 * a / 255);
            px.push(a << 24 | r << 16 | g << 8 | b);
        }
    }
    px
}

/// The qxl-native guest's 128x96 sprite (qxl_scene.rs `bitmap32`).
fn guest_sprite() -> Vec<u32> {
    (0..96u32)
        .flat_map(|y| (0..128u32).map(move |x| (x * 2) << 16 | (y * 2) << 8 | 0x80))
        .collect()
}

fn main() {
    let runs = 9;
    let rgb = [
        ("photo", 1024, 768, samples::photo(1024, 768, 3)),
        ("photo", 256, 192, samples::photo(256, 192, 4)),
        ("gradient", 128, 96, samples::gradient(128, 96)),
        ("gradient", 512, 300, samples::gradient(512, 300)),
        ("guest sprite", 128, 96, guest_sprite()),
    ];
    println!(
        "{:<20} {:>5} {:>8} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>8}",
        "photo-like",
        "runs",
        "raw B",
        "LZ B",
        "ms",
        "LZ4 B",
        "ms",
        "GLZ B",
        "ms",
        "JPEG B",
        "ms",
        "all ms",
        "JPEG ms"
    );
    for (name, w, h, px) in &rgb {
        let (w, h) = (*w, *h);
        assert!(photo_like(w, h, px), "{name} is photo-like");
        let (lz_t, lz) = time(runs, || lz_rgb32(w, h, px));
        let (lz4_t, lz4) = time(runs, || lz4_rgb32(w, h, px));
        let (glz_t, glz) = time(runs, || {
            let mut d = GlzDictionary::new(MAX_WINDOW_PIXELS as i64).expect("window");
            d.encode(0, w, h, px).map_or(0, |e| e.data.len())
        });
        let (jpeg_t, jpeg) = time(runs, || jpeg_rgb32(w, h, px));
        // What the server spends on a lossy-allowed image now: GLZ (or LZ),
        // LZ4 where that did poorly, then JPEG.
        let all = glz_t.max(lz_t) + lz4_t + jpeg_t;
        let rare = runs_rare(w, h, px);
        if rare {
            assert!(
                jpeg.len() < lz.len().min(lz4.len()).min(glz),
                "{name}: a lossless coder beat JPEG on an image without runs"
            );
        }
        println!(
            "{:<20} {:>5} {:>8} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>8}",
            format!("{name} {w}x{h}"),
            if rare { "rare" } else { "some" },
            w * h * 4,
            lz.len(),
            ms(lz_t),
            lz4.len(),
            ms(lz4_t),
            glz,
            ms(glz_t),
            jpeg.len(),
            ms(jpeg_t),
            ms(all),
            ms(jpeg_t)
        );
    }
    let rgba = [
        ("guest RGBA", 64, 48, guest_rgba()),
        ("photo alpha", 128, 96, samples::photo_alpha(128, 96, 1)),
        ("photo alpha", 640, 480, samples::photo_alpha(640, 480, 2)),
    ];
    println!(
        "\n{:<20} {:>5} {:>8} | {:>9} {:>6} | {:>8} {:>8} {:>6}",
        "with alpha", "runs", "raw B", "LZ RGBA B", "ms", "JPEG B", "XXXA B", "ms"
    );
    for (name, w, h, px) in &rgba {
        let (w, h) = (*w, *h);
        assert!(photo_like(w, h, px), "{name} is photo-like");
        let (lz_t, lz) = time(runs, || lz_rgba(w, h, px));
        let (ja_t, (jpeg, alpha)) = time(runs, || (jpeg_rgb32(w, h, px), lz_xxxa(w, h, px)));
        let rare = runs_rare(w, h, px);
        if rare {
            assert!(jpeg.len() + alpha.len() < lz.len(), "{name}: LZ RGBA won");
        }
        println!(
            "{:<20} {:>5} {:>8} | {:>9} {:>6} | {:>8} {:>8} {:>6}",
            format!("{name} {w}x{h}"),
            if rare { "rare" } else { "some" },
            w * h * 4,
            lz.len(),
            ms(lz_t),
            jpeg.len(),
            alpha.len(),
            ms(ja_t)
        );
    }
}
