//! Compressed size and encode time of raw 32-bit bitmaps, SPICE LZ and LZ4 on typical
//! screens. Run with `cargo run --release -p spice --example image_bench`.
//!
//! The screens are synthetic (see `src/image/samples.rs`): text drawn with a generated bitmap
//! font, a photo stand-in of smooth gradients plus noise, and a solid screen.

use std::time::{Duration, Instant};

use spice::image::{decode_lz4_rgb32, decode_lz_rgb32, lz4_rgb32, lz_rgb32};

#[allow(dead_code)] // the tests use more of it than the bench
#[path = "../src/image/samples.rs"]
mod samples;

/// Median of `runs` timings of `f`, plus its last result.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        last = Some(f());
        times.push(start.elapsed());
    }
    times.sort();
    (times[runs / 2], last.expect("runs > 0"))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let (cw, ch, console) = samples::console_text(1);
    let screens = [
        ("text console", cw, ch, console),
        (
            "text desktop",
            1024,
            768,
            samples::desktop_text(1024, 768, 2),
        ),
        ("photo", 1024, 768, samples::photo(1024, 768, 3)),
        (
            "solid",
            1024,
            768,
            samples::solid(1024, 768, samples::rgb(58, 110, 165)),
        ),
    ];
    let runs = 9;
    println!(
        "{:<22} {:>9} | {:>9} {:>6} {:>7} {:>7} | {:>9} {:>6} {:>7} {:>7} | {:>7}",
        "screen",
        "raw B",
        "LZ B",
        "ratio",
        "enc ms",
        "dec ms",
        "LZ4 B",
        "ratio",
        "enc ms",
        "dec ms",
        "smaller"
    );
    for (name, w, h, px) in &screens {
        let (w, h) = (*w, *h);
        let raw = w as usize * h as usize * 4;
        let (lz_enc, lz) = time(runs, || lz_rgb32(w, h, px));
        let (lz_dec, lz_out) = time(runs, || decode_lz_rgb32(&lz));
        let (lz4_enc, lz4) = time(runs, || lz4_rgb32(w, h, px));
        let (lz4_dec, lz4_out) = time(runs, || decode_lz4_rgb32(&lz4, w, h));
        // A bench that measures a broken codec is worse than none.
        assert_eq!(
            lz_out.map(|o| o.2).as_ref(),
            Ok(px),
            "{name}: LZ round trip"
        );
        assert_eq!(lz4_out.as_ref(), Ok(px), "{name}: LZ4 round trip");
        let winner = if lz.len() <= lz4.len() { "LZ" } else { "LZ4" };
        println!(
            "{:<22} {:>9} | {:>9} {:>6.1} {:>7} {:>7} | {:>9} {:>6.1} {:>7} {:>7} | {:>7}",
            format!("{name} {w}x{h}"),
            raw,
            lz.len(),
            raw as f64 / lz.len() as f64,
            ms(lz_enc),
            ms(lz_dec),
            lz4.len(),
            raw as f64 / lz4.len() as f64,
            ms(lz4_enc),
            ms(lz4_dec),
            winner
        );
    }
}
