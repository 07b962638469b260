//! What one display update costs the caller (the VMM's display thread), before
//! and after frames were lent to the server instead of copied. Run with
//! `cargo run --release -p spice --example update_bench`.
//!
//! "before" is what `SpiceFrontend::show` did per update until the display types
//! were shared: allocate a fresh `Arc<[u32]>` and copy the whole frame into it
//! for the server (the rest of the old path, converting a few rectangles and
//! merging them into each client's region, is the same in both). "after" is
//! `SpiceServer::update` itself: copy the dirty rectangles' pixels into the
//! head's own copy (no allocation once the head has the frame's size) and queue
//! them. Time is the median over many updates; "copied" is the pixel bytes each
//! path copies per update.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spice::{Config, Frame, Listen, Ports, Rect, SpiceServer};

/// Median time of `f`.
fn measure(mut f: impl FnMut()) -> Duration {
    for _ in 0..20 {
        f();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 50 || (start.elapsed() < Duration::from_millis(400) && times.len() < 5000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn frame(w: u32, h: u32) -> Frame {
    Frame {
        width: w,
        height: h,
        pixels: (0..w * h)
            .map(|i| i.wrapping_mul(2654435761) & 0xffffff)
            .collect(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn main() {
    let server = SpiceServer::start(
        Config {
            listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            password: None,
            force_raw_images: false,
            playback_compression: true,
            jpeg: Default::default(),
            streaming_video: Default::default(),
            transport: Default::default(),
        },
        Ports {
            display_heads: 1,
            ..Ports::default()
        },
    )
    .expect("server");
    // Let the ticket-key thread fill its pool before timing anything.
    std::thread::sleep(Duration::from_secs(2));
    let cases: [(&str, u32, u32, Rect); 6] = [
        ("text cursor blink", 720, 400, Rect::new(72, 96, 9, 16)),
        ("typed character", 1024, 768, Rect::new(80, 112, 8, 16)),
        (
            "one text row (VBE band)",
            1024,
            768,
            Rect::new(0, 112, 1024, 16),
        ),
        ("whole screen", 1024, 768, Rect::full(1024, 768)),
        (
            "one text row (VBE band)",
            1920,
            1080,
            Rect::new(0, 512, 1920, 16),
        ),
        ("whole screen", 1920, 1080, Rect::full(1920, 1080)),
    ];
    println!("| update | frame | before: copied | before: time | after: copied | after: time |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, w, h, dirty) in cases {
        let f = frame(w, h);
        // The head starts with this frame's size, so no update below is a resize.
        server.update(&f, &[Rect::full(w, h)], &[]);
        let before = measure(|| {
            let copy: Arc<[u32]> = Arc::from(f.pixels.as_slice());
            black_box(copy);
        });
        let after = measure(|| server.update(black_box(&f), &[dirty], &[]));
        println!(
            "| {name} | {w}x{h} | {} | {} | {} | {} |",
            size(u64::from(w) * u64::from(h) * 4),
            us(before),
            size(dirty.area() * 4),
            us(after),
        );
    }
}
