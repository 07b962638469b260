//! GLZ: encoder output through the independent window decoder (`glz_decode.rs`):
//! sequences of images that copy from earlier ones, window eviction, every token
//! form, hostile sizes and inputs.

use super::glz::{emit_literals, Match};
use super::samples::{self, Rng};
use super::*;

/// Encodes, commits and decodes one image; checks the pixels come back.
fn round(dict: &mut GlzDictionary, win: &mut GlzWindow, w: u32, h: u32, px: &[u32]) -> usize {
    let img = dict.encode(0, w, h, px).expect("fits");
    let len = img.data.len();
    let data = img.data.clone();
    assert!(dict.commit(img));
    let got = win.decode(&data).unwrap();
    assert_eq!((got.width, got.height), (w, h));
    let want: Vec<u32> = px.iter().map(|p| p & 0x00ff_ffff).collect();
    assert!(got.pixels == want, "{w}x{h} image {} differs", got.id);
    len
}

#[test]
fn later_images_copy_from_earlier_ones() {
    let mut dict = GlzDictionary::new(4 << 20).unwrap();
    let mut win = GlzWindow::new();
    let (w, h) = (640, 480);
    let first = samples::desktop_text(w, h, 3);
    let alone = round(&mut dict, &mut win, w, h, &first);
    assert!(alone > 5000, "{alone}");
    // The same picture again: one copy of the whole of it (a length is
    // coded as a sum of bytes of 255: one byte per 255 pixels).
    let again = round(&mut dict, &mut win, w, h, &first);
    assert!(
        again < 100 + (w * h) as usize / 255,
        "a repeated image took {again} bytes"
    );
    // Scrolled by 37 rows: the new bottom rows are new, the rest is found
    // in the earlier images.
    let mut scrolled = first[37 * w as usize..].to_vec();
    scrolled.extend(samples::desktop_text(w, 37, 9));
    let lz = lz_rgb32(w, h, &scrolled).len();
    let glz = round(&mut dict, &mut win, w, h, &scrolled);
    assert!(glz * 3 < lz, "scrolled: GLZ {glz} bytes, LZ {lz}");
    // A part of the first picture, as a window move would send it: rows of
    // another width, each found in the first image.
    let part: Vec<u32> = (100..300)
        .flat_map(|y| first[y * w as usize + 50..y * w as usize + 450].to_vec())
        .collect();
    let lz = lz_rgb32(400, 200, &part).len();
    let glz = round(&mut dict, &mut win, 400, 200, &part);
    assert!(glz * 2 < lz, "moved part: GLZ {glz} bytes, LZ {lz}");
    assert_eq!(dict.next_id(), 4);
}

#[test]
fn the_window_is_bounded_and_the_client_keeps_what_is_referenced() {
    // Room for three and a bit 1000-pixel images.
    let mut dict = GlzDictionary::new(3500).unwrap();
    let mut win = GlzWindow::new();
    let mut rng = Rng::new(5);
    let base = samples::random(50, 20, 1);
    for i in 0..40u64 {
        // Each image mostly repeats the base with some noise: plenty of
        // cross-image matches, which must stay within the window.
        let mut px = base.clone();
        for _ in 0..50 {
            let at = rng.below(1000) as usize;
            px[at] = rng.below(1 << 24);
        }
        let len = round(&mut dict, &mut win, 50, 20, &px);
        let (n, pixels) = dict.held();
        assert!(
            pixels <= 3500 && n <= 3,
            "image {i}: {n} images, {pixels} px"
        );
        // The decoder dropped what the images told it to, and no more than
        // the encoder keeps.
        let (wn, wpixels) = win.held();
        assert!(wpixels <= 3500, "decoder holds {wpixels} px");
        assert_eq!(wn, n);
        if i > 0 {
            assert!(len < 1000, "image {i}: {len} bytes");
        }
    }
    // A window too small for any image: nothing goes through it.
    assert!(GlzDictionary::new(0).is_none());
    assert!(GlzDictionary::new(-5).is_none());
    let small = GlzDictionary::new(100).unwrap();
    assert!(!small.fits(10, 10) && small.fits(9, 11) && !small.fits(0, 5));
}

#[test]
fn images_not_committed_leave_no_trace() {
    let mut dict = GlzDictionary::new(1 << 20).unwrap();
    let mut win = GlzWindow::new();
    let a = samples::desktop_text(200, 100, 1);
    round(&mut dict, &mut win, 200, 100, &a);
    // Encoded, then not sent (something smaller went instead).
    let b = samples::desktop_text(200, 100, 2);
    let dropped = dict.encode(0, 200, 100, &b).unwrap();
    assert_eq!(dropped.id, 1);
    drop(dropped);
    // The next image takes the same id, and the hints the dropped one left
    // in the table do not mislead it.
    let c = samples::desktop_text(200, 100, 3);
    round(&mut dict, &mut win, 200, 100, &c);
    round(&mut dict, &mut win, 200, 100, &b);
    // A stale image (encoded before another was committed) is refused.
    let stale = dict.encode(0, 200, 100, &a).unwrap();
    round(&mut dict, &mut win, 200, 100, &c);
    assert!(!dict.commit(stale));
    assert_eq!(dict.next_id(), 4);
}

#[test]
fn sources_only_copy_from_their_own_images() {
    let mut dict = GlzDictionary::new(1 << 20).unwrap();
    let px = samples::desktop_text(300, 200, 4);
    let first = dict.encode(1, 300, 200, &px).unwrap();
    let alone = first.data.len();
    dict.commit(first);
    let other = dict.encode(0, 300, 200, &px).unwrap();
    assert!(other.data.len() + 40 > alone, "copied across sources");
    let same = dict.encode(1, 300, 200, &px).unwrap();
    assert!(same.data.len() < 100 + 300 * 200 / 255);
}

#[test]
fn odd_and_hostile_sizes() {
    let mut dict = GlzDictionary::new(MAX_WINDOW_PIXELS as i64).unwrap();
    let mut win = GlzWindow::new();
    let mut rng = Rng::new(9);
    for (w, h) in [
        (1, 1),
        (1, 1),
        (2, 1),
        (1, 2),
        (3, 7),
        (1, 1000),
        (1000, 1),
        (33, 33),
        (16384, 3),
        (3, 16384),
    ] {
        let px: Vec<u32> = (0..w * h).map(|_| rng.below(4) * 0x0040_4040).collect();
        round(&mut dict, &mut win, w, h, &px);
    }
    // The pad byte is not carried.
    let padded = vec![0xff12_3456u32; 64];
    round(&mut dict, &mut win, 8, 8, &padded);
    // Refused: empty, beyond MAX_DIMENSION, short buffers, bigger than the
    // window; the dictionary is unchanged.
    let next = dict.next_id();
    for (w, h, n) in [
        (0, 0, 0),
        (0, 10, 0),
        (10, 0, 0),
        (16385, 1, 16385),
        (u32::MAX, u32::MAX, 1),
        (10, 10, 99),
        (2048, 2048, 2048 * 2048),
    ] {
        assert!(dict.encode(0, w, h, &vec![0; n]).is_none(), "{w}x{h}");
    }
    assert_eq!(dict.next_id(), next);
}

#[test]
fn long_runs_and_big_images() {
    let mut dict = GlzDictionary::new(MAX_WINDOW_PIXELS as i64).unwrap();
    let mut win = GlzWindow::new();
    // A flat screen (one long run), then noise that only a window copy
    // of the same noise compresses.
    let flat = vec![0x0020_4060u32; 1920 * 1080];
    assert!(round(&mut dict, &mut win, 1920, 1080, &flat) < 40_000);
    let noise = samples::random(1024, 768, 3);
    let first = round(&mut dict, &mut win, 1024, 768, &noise);
    assert!(first > 1024 * 768 * 3);
    assert!(round(&mut dict, &mut win, 1024, 768, &noise) < 20_000);
}

/// Random sequences: images of random sizes cut out of a few evolving
/// screens, through small windows, all decoded exactly.
#[test]
fn random_sequences_decode_exactly() {
    for seed in 0..12u64 {
        let mut rng = Rng::new(seed);
        let window = 2000 + rng.below(200_000) as i64;
        let mut dict = GlzDictionary::new(window).unwrap();
        let mut win = GlzWindow::new();
        let (sw, sh) = (320u32, 240u32);
        let mut screen = samples::desktop_text(sw, sh, seed);
        for _ in 0..30 {
            // Change a block of the screen, then send a random rectangle.
            let (bx, by) = (rng.below(sw - 8), rng.below(sh - 8));
            let c = rng.below(1 << 24);
            for y in by..by + 8 {
                for x in bx..bx + 8 {
                    screen[(y * sw + x) as usize] = c;
                }
            }
            let w = 1 + rng.below(sw);
            let h = 1 + rng.below(sh);
            if !dict.fits(w, h) {
                continue;
            }
            let (x0, y0) = (rng.below(sw - w + 1), rng.below(sh - h + 1));
            let px: Vec<u32> = (y0..y0 + h)
                .flat_map(|y| {
                    let row = (y * sw + x0) as usize;
                    screen[row..row + w as usize].to_vec()
                })
                .collect();
            round(&mut dict, &mut win, w, h, &px);
        }
    }
}

fn header(w: u32, h: u32, id: u64, head_dist: u32) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend(0x2020_5A4Cu32.to_be_bytes());
    d.extend(0x0001_0001u32.to_be_bytes());
    d.push(8 | 1 << 4);
    for v in [w, h, w * 4] {
        d.extend(v.to_be_bytes());
    }
    d.extend(id.to_be_bytes());
    d.extend(head_dist.to_be_bytes());
    d
}

/// Every form of a copy token, at its boundaries, decodes to what the format
/// says (hand-built streams: not the encoder's choices).
#[test]
fn every_token_form() {
    // In-image: offsets around the 12-bit, 17-bit and 25-bit limits.
    for dist in [1usize, 2, 4095, 4096, 4097, 1 << 17, (1 << 17) + 1, 300_000] {
        for len in [1usize, 6, 7, 8, 261, 262, 263] {
            let prefix: Vec<u32> = (0..dist as u32).map(|i| (i * 7919) & 0xff_ffff).collect();
            let total = dist + len;
            // Whole rows of at most 16384 pixels, padded with black.
            let width = total.min(16384);
            let height = total.div_ceil(width);
            let mut d = header(width as u32, height as u32, 0, 0);
            emit_literals(&prefix, &mut d);
            let m = Match {
                len,
                image_dist: 0,
                ofs: dist - 1,
            };
            m.emit(&mut d);
            emit_literals(&vec![0; width * height - total], &mut d);
            let mut want: Vec<u32> = prefix.iter().cycle().take(total).copied().collect();
            want.resize(width * height, 0);
            let got = GlzWindow::new().decode(&d).unwrap();
            assert!(got.pixels == want, "dist {dist} len {len}");
        }
    }
    // Across images: image distances around each byte boundary of both forms,
    // with short and long offsets. Image 0 has 5000 distinct pixels, then
    // one-pixel fillers up to the distance.
    for image_dist in [1u64, 63, 64, 255, 256, 16383, 16384, 65535, 65536] {
        for ofs in [0usize, 4095, 4096, 4990] {
            let mut win = GlzWindow::new();
            for id in 0..image_dist {
                let px: Vec<u32> = if id == 0 {
                    (0..5000).collect()
                } else {
                    vec![7]
                };
                let mut d = header(px.len() as u32, 1, id, id as u32);
                emit_literals(&px, &mut d);
                win.decode(&d).unwrap();
            }
            let len = 10;
            let mut d = header(len as u32, 1, image_dist, image_dist as u32);
            Match {
                len,
                image_dist,
                ofs,
            }
            .emit(&mut d);
            let got = win.decode(&d).unwrap();
            let want: Vec<u32> = (ofs..ofs + len).map(|i| i as u32).collect();
            assert_eq!(got.pixels, want, "image_dist {image_dist} ofs {ofs}");
        }
    }
}

#[test]
fn the_decoder_rejects_what_a_client_would_choke_on() {
    let mut win = GlzWindow::new();
    let mut d = header(2, 1, 0, 0);
    emit_literals(&[1, 2], &mut d);
    win.decode(&d).unwrap();
    // A skipped id, a repeated one.
    let mut skip = header(1, 1, 2, 0);
    emit_literals(&[1], &mut skip);
    assert!(matches!(
        win.decode(&skip),
        Err(ImageError::BadImageId { .. })
    ));
    let mut again = header(1, 1, 0, 0);
    emit_literals(&[1], &mut again);
    assert!(win.decode(&again).is_err());
    // A copy from an image the window does not hold (dropped by this very
    // image's head distance, or never sent), or running past its end.
    for (image_dist, head_dist, ofs, len) in [(1, 0, 0, 1), (2, 2, 0, 1), (1, 1, 1, 2)] {
        let mut d = header(len as u32, 1, 1, head_dist);
        Match {
            len,
            image_dist,
            ofs,
        }
        .emit(&mut d);
        assert!(win.decode(&d).is_err(), "{image_dist} {head_dist} {ofs}");
    }
    // Truncated, trailing, too many pixels, in-image reference before start.
    let mut ok = header(2, 1, 1, 1);
    Match {
        len: 2,
        image_dist: 1,
        ofs: 0,
    }
    .emit(&mut ok);
    for cut in 0..ok.len() {
        assert!(win.decode(&ok[..cut]).is_err());
    }
    let mut trailing = ok.clone();
    trailing.push(0);
    assert!(win.decode(&trailing).is_err());
    let mut before = header(2, 1, 1, 0);
    emit_literals(&[1], &mut before);
    Match {
        len: 1,
        image_dist: 0,
        ofs: 1,
    }
    .emit(&mut before);
    assert!(win.decode(&before).is_err());
    assert_eq!(win.ids(), vec![0]);
    assert_eq!(win.decode(&ok).unwrap().pixels, vec![1, 2]);
}

#[test]
fn zlib_round_trip() {
    let mut dict = GlzDictionary::new(1 << 20).unwrap();
    let px = samples::desktop_text(320, 200, 8);
    let img = dict.encode(0, 320, 200, &px).unwrap();
    let z = zlib_deflate(&img.data);
    assert!(z.len() < img.data.len());
    assert_eq!(zlib_inflate(&z, img.data.len()).unwrap(), img.data);
    // A wrong announced size, or garbage, is an error.
    assert!(zlib_inflate(&z, img.data.len() - 1).is_err());
    assert!(zlib_inflate(&z, img.data.len() + 1).is_err());
    assert!(zlib_inflate(&[1, 2, 3], 10).is_err());
}
