//! Compressed size and encode time of raw 32-bit bitmaps, SPICE LZ and LZ4 on typical
//! screens, then GLZ: alone (an empty dictionary), the same screen again, and the
//! screen scrolled by 8 rows, each after the previous one. Run with `cargo run --release -p spice --example image_bench`.
//!
//! The screens are synthetic (see `src/image/samples.rs`): text drawn with a generated bitmap
//! font, a photo stand-in of smooth gradients plus noise, and a solid screen.

use spice::image::{
    decode_lz4_rgb32, decode_lz_rgb32, lz4_rgb32, lz_rgb32, GlzDictionary, GlzWindow,
    MAX_WINDOW_PIXELS,
};

mod common;
use common::{ms, time};

#[allow(dead_code)] // the tests use more of it than the bench
#[path = "../src/image/samples.rs"]
mod samples;

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
    println!(
        "\n{:<22} | {:>9} {:>7} | {:>9} {:>7} | {:>9} {:>7}",
        "screen", "GLZ B", "enc ms", "again B", "enc ms", "scroll B", "enc ms"
    );
    for (name, w, h, px) in &screens {
        let (w, h) = (*w, *h);
        // Each timed run starts from a fresh dictionary; the last run's
        // images are decoded in order to check them.
        let scrolled: Vec<u32> = px[8 * w as usize..]
            .iter()
            .chain(&px[..8 * w as usize])
            .copied()
            .collect();
        let (new_t, _) = time(runs, || GlzDictionary::new(MAX_WINDOW_PIXELS as i64));
        let mut warm = GlzDictionary::new(MAX_WINDOW_PIXELS as i64).expect("window");
        let (enc_t, _) = time(runs, || warm.encode(0, w, h, px).map(|e| e.data.len()));
        eprintln!(
            "{name}: new {} ms, encode (not committed) {} ms",
            ms(new_t),
            ms(enc_t)
        );
        let mut cells = Vec::new();
        let mut win = GlzWindow::new();
        for step in 0..3 {
            let (enc, data) = time(runs, || {
                let mut d = GlzDictionary::new(MAX_WINDOW_PIXELS as i64).expect("window");
                let mut out = Vec::new();
                for img in [px, px, &scrolled].into_iter().take(step + 1) {
                    let e = d.encode(0, w, h, img).expect("fits");
                    out = e.data.clone();
                    d.commit(e);
                }
                out
            });
            // Time of this step alone: less the steps before it.
            let enc = enc.saturating_sub(cells.iter().map(|(_, t)| *t).sum());
            cells.push((data.len(), enc));
        }
        // Decode the three images of one dictionary in order.
        let mut d = GlzDictionary::new(MAX_WINDOW_PIXELS as i64).expect("window");
        for img in [px, px, &scrolled] {
            let e = d.encode(0, w, h, img).expect("fits");
            let got = win.decode(&e.data).expect("GLZ decodes");
            assert!(&got.pixels == img, "{name}: GLZ round trip");
            d.commit(e);
        }
        println!(
            "{:<22} | {:>9} {:>7} | {:>9} {:>7} | {:>9} {:>7}",
            format!("{name} {w}x{h}"),
            cells[0].0,
            ms(cells[0].1),
            cells[1].0,
            ms(cells[1].1),
            cells[2].0,
            ms(cells[2].1),
        );
    }
}
