//! SPICE LZ both ways: arbitrary bytes through the RGB32 and RGBA decoders
//! (no panic, bounded memory), and arbitrary sizes and pixels (alpha
//! included) through the RGBA encoder, whose every image must decode back
//! exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spice::image::{decode_lz_rgb32, decode_lz_rgba, lz_rgba};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = decode_lz_rgb32(rest);
        let _ = decode_lz_rgba(rest);
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
    assert_eq!(decode_lz_rgba(&data).expect("our own LZ RGBA decodes"), (w, h, px));
});
