//! GLZ both ways: arbitrary bytes as a sequence of GLZ payloads through the
//! window decoder (no panic, bounded memory), and arbitrary pixels, sizes and
//! window sizes through the encoder, whose every image must decode back
//! exactly against the decoder's window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spice::image::{GlzDictionary, GlzWindow};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Payloads, each prefixed by a 16-bit length.
        let mut win = GlzWindow::new();
        let mut r = rest;
        while r.len() >= 2 {
            let n = usize::from(u16::from_le_bytes([r[0], r[1]])).min(r.len() - 2);
            let _ = win.decode(&r[2..2 + n]);
            r = &r[2 + n..];
        }
        return;
    }
    // A window of 2..=4097 pixels, then images: width, height (1..=64),
    // a colour count, and pixels from a small palette so that they repeat.
    let Some((&w0, rest)) = rest.split_first() else {
        return;
    };
    let Some(mut dict) = GlzDictionary::new(2 + i64::from(w0) * 16) else {
        return;
    };
    let mut win = GlzWindow::new();
    let mut r = rest;
    while r.len() >= 3 {
        let (w, h, colors) = (u32::from(r[0] % 64) + 1, u32::from(r[1] % 64) + 1, r[2] % 8 + 1);
        r = &r[3..];
        let px: Vec<u32> = (0..w * h)
            .map(|i| {
                let b = r.get(i as usize).copied().unwrap_or(0);
                u32::from(b % colors) * 0x0012_3456
            })
            .collect();
        r = &r[r.len().min((w * h) as usize)..];
        let Some(img) = dict.encode(w0 & 1, w, h, &px) else {
            continue;
        };
        let got = win.decode(&img.data).expect("our own GLZ decodes");
        assert_eq!(got.pixels, px.iter().map(|p| p & 0xff_ffff).collect::<Vec<_>>());
        dict.commit(img);
    }
});
