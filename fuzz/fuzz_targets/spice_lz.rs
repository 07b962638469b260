//! SPICE LZ both ways: arbitrary bytes through the RGB32, RGBA and XXXA
//! (JPEG_ALPHA's alpha plane) decoders (no panic, bounded memory), and
//! arbitrary sizes and pixels (alpha included) through the RGBA and XXXA
//! encoders, whose every image must decode back exactly (XXXA: the alpha).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spice::image::{decode_lz_rgb32, decode_lz_rgba, decode_lz_xxxa, lz_rgba, lz_xxxa};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = decode_lz_rgb32(rest);
        let _ = decode_lz_rgba(rest);
        let _ = decode_lz_xxxa(rest);
        return;
    }
    // Width and height 1..=64, then pixels from a small palette (so that
    // runs and repeated rows occur) whose alpha comes from the input too.
    let Some((&[w, h, colors], rest)) = rest.split_first_chunk::<3>() else {
        return;
    };
    let (w, h, colors) = (u32::from(w % 64) + 1, u32::from(h % 64) + 1, colors % 8 + 1);
    let px: Vec<u32> = (0..w * h)
        .map(|i| {
            let b = rest.get(i as usize).copied().unwrap_or(0);
            u32::from(b % colors) * 0x2012_3456
        })
        .collect();
    let data = lz_rgba(w, h, &px);
    assert_eq!(
        decode_lz_rgba(&data).expect("our own LZ RGBA decodes"),
        (w, h, px.clone())
    );
    let alpha: Vec<u32> = px.iter().map(|p| p & 0xff00_0000).collect();
    let data = lz_xxxa(w, h, &px);
    assert_eq!(
        decode_lz_xxxa(&data).expect("our own LZ XXXA decodes"),
        (w, h, alpha)
    );
});
