//! JPEG (`SPICE_IMAGE_TYPE_JPEG`) for photo-like images, and the test that
//! says which images are photo-like.
//!
//! JPEG smears sharp edges (text, window borders, icons) into visible
//! ringing, while it makes photos and smooth gradients 5-20x smaller than
//! any lossless coder. So it is only ever offered for images whose sampled
//! neighbouring pixels mostly differ a little (gradual change, sensor
//! noise) and seldom differ a lot (edges); flat areas say nothing either
//! way and are skipped, but an image that is mostly flat is not photo-like.

use jpeg_encoder::{ColorType, Encoder};

/// spice-server's JPEG quality for still images (its `jpeg_quality`): the
/// quality at which a spice-gtk user does not notice the loss on photos.
pub const JPEG_QUALITY: u8 = 85;

/// Sides under this are never JPEG: the header and tables (~600 bytes)
/// outweigh what lossy coding saves on a tiny image.
pub const MIN_SIDE: u32 = 16;

/// A channel difference from this up is an edge, not a gradient.
const EDGE: u32 = 48;

/// Sample points per image at most (a grid over the image).
const MAX_SAMPLES: u32 = 4096;

/// JPEG of a `width` x `height` xRGB image (`0x00RRGGBB`, stride = width),
/// baseline, 4:2:0 at [`JPEG_QUALITY`], with Huffman tables optimized for
/// the image. Empty (refused) when a side is 0 or
/// does not fit JPEG's 16-bit sizes, or the pixel count is wrong.
pub fn jpeg_rgb32(width: u32, height: u32, pixels: &[u32]) -> Vec<u8> {
    jpeg_rgb32_quality(width, height, pixels, JPEG_QUALITY)
}

/// [`jpeg_rgb32`] at `quality` (1-100; video streams adapt it to the link).
pub fn jpeg_rgb32_quality(width: u32, height: u32, pixels: &[u32], quality: u8) -> Vec<u8> {
    let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
        return Vec::new();
    };
    if w == 0 || h == 0 || pixels.len() != usize::from(w) * usize::from(h) {
        return Vec::new();
    }
    // 0x00RRGGBB little-endian is B, G, R, X: jpeg-encoder's BGRA, whose
    // fourth byte it ignores.
    let mut bytes = vec![0u8; pixels.len() * 4];
    for (b, p) in bytes.chunks_exact_mut(4).zip(pixels) {
        b.copy_from_slice(&p.to_le_bytes());
    }
    let mut out = Vec::with_capacity(pixels.len() / 4);
    let mut encoder = Encoder::new(&mut out, quality.clamp(1, 100));
    // Huffman tables made for the picture: a second pass over its
    // coefficients, for tables (~150 bytes instead of the standard 420)
    // and codes that fit it. Measured on 256x192 camera-like frames at
    // stream qualities: 30-40% fewer bytes.
    encoder.set_optimized_huffman_tables(true);
    match encoder.encode(&bytes, w, h, ColorType::Bgra) {
        Ok(()) => out,
        Err(e) => {
            tracing::debug!(%e, width, height, "JPEG encoder refused an image");
            Vec::new()
        }
    }
}

/// The sampling grid's step for a `width` x `height` image (both at least
/// 2): (w-1)/step * (h-1)/step <= MAX_SAMPLES, about square.
fn grid_step(width: u32, height: u32) -> usize {
    let area = u64::from(width - 1) * u64::from(height - 1);
    ((area / u64::from(MAX_SAMPLES)) as f64)
        .sqrt()
        .ceil()
        .max(1.0) as usize
}

/// Largest difference of one colour channel between two xRGB pixels.
fn channel_diff(a: u32, b: u32) -> u32 {
    (0..3)
        .map(|i| {
            let (x, y) = ((a >> (8 * i)) & 0xff, (b >> (8 * i)) & 0xff);
            x.abs_diff(y)
        })
        .max()
        .unwrap_or(0)
}

/// Whether an image looks like a photo (or a smooth gradient): worth JPEG.
///
/// On a grid of at most [`MAX_SAMPLES`] points, each point is compared with
/// its right and lower neighbours. A point whose neighbours are both equal
/// to it is flat; the others are "busy", and their pairs are soft (some
/// channel differs, by less than [`EDGE`]) or hard (an edge). Photo-like:
/// at least half the points are busy, and at most one busy pair in eight is
/// an edge. UI and text are mostly flat with hard edges; full-range noise
/// is all edges (JPEG would not help it either); a photo is soft changes.
pub fn photo_like(width: u32, height: u32, pixels: &[u32]) -> bool {
    let Some(count) = (width as usize).checked_mul(height as usize) else {
        return false;
    };
    pixels.len() == count && photo_like_in(pixels, width as usize, (0, 0), width, height)
}

/// [`photo_like`] of the `width` x `height` area at `at` (x, y) of a picture
/// whose rows are `stride` pixels long, read in place: the stream detector
/// asks this of every big box of every update, and copying the box out
/// first would cost more than the sampling.
pub fn photo_like_in(
    pixels: &[u32],
    stride: usize,
    at: (usize, usize),
    width: u32,
    height: u32,
) -> bool {
    if width < MIN_SIDE || height < MIN_SIDE {
        return false;
    }
    // The area's last pixel must be in the picture.
    let last = (at.1 + height as usize - 1)
        .checked_mul(stride)
        .and_then(|r| r.checked_add(at.0 + width as usize - 1));
    if at.0 + width as usize > stride || last.is_none_or(|l| l >= pixels.len()) {
        return false;
    }
    let base = at.1 * stride + at.0;
    let step = grid_step(width, height);
    let w = width as usize;
    let at = |x: usize, y: usize| pixels[base + y * stride + x];
    let (mut points, mut busy, mut soft, mut hard) = (0u32, 0u32, 0u32, 0u32);
    for y in (0..height as usize - 1).step_by(step) {
        for x in (0..w - 1).step_by(step) {
            let p = at(x, y);
            let pairs = [at(x + 1, y), at(x, y + 1)];
            points += 1;
            if pairs.iter().all(|q| *q & 0x00ff_ffff == p & 0x00ff_ffff) {
                continue;
            }
            busy += 1;
            for q in pairs {
                match channel_diff(p, q) {
                    0 => {}
                    d if d < EDGE => soft += 1,
                    _ => hard += 1,
                }
            }
        }
    }
    points > 0 && busy * 2 >= points && soft > 0 && hard * 8 <= soft + hard
}

/// Whether equal neighbouring pixels are rare: on [`photo_like`]'s grid, at
/// most one pair in [`RARE_RUNS`] (right and lower neighbours) is exactly
/// equal. The lossless coders live on such runs and repeats (SPICE LZ's and
/// LZ4's matches need at least two equal pixels), so on a photo-like image
/// without them they come nowhere near JPEG (`examples/lossy_bench.rs`:
/// 1.3:1 against 20-50:1) and need not be tried; a photo-like image with
/// them (a gradient with flat rows, a photo scaled up) may still be smaller
/// lossless. False where `photo_like` is false for the size.
pub fn runs_rare(width: u32, height: u32, pixels: &[u32]) -> bool {
    let Some(count) = (width as usize).checked_mul(height as usize) else {
        return false;
    };
    if width < MIN_SIDE || height < MIN_SIDE || pixels.len() != count {
        return false;
    }
    let step = grid_step(width, height);
    let w = width as usize;
    let at = |x: usize, y: usize| pixels[y * w + x] & 0x00ff_ffff;
    let (mut pairs, mut equal) = (0u32, 0u32);
    for y in (0..height as usize - 1).step_by(step) {
        for x in (0..w - 1).step_by(step) {
            let p = at(x, y);
            pairs += 2;
            equal += u32::from(at(x + 1, y) == p) + u32::from(at(x, y + 1) == p);
        }
    }
    equal * RARE_RUNS <= pairs
}

/// See [`runs_rare`].
const RARE_RUNS: u32 = 16;

#[cfg(test)]
mod tests {
    use super::super::samples::{desktop_text, gradient, photo, psnr, random, solid};
    use super::*;

    /// Decodes with an independent decoder (jpeg-decoder) into xRGB.
    fn decode(bytes: &[u8]) -> (u16, u16, Vec<u32>) {
        let mut d = jpeg_decoder::Decoder::new(bytes);
        let rgb = d.decode().expect("our JPEG decodes");
        let info = d.info().unwrap();
        assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
        let px = rgb
            .chunks_exact(3)
            .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
            .collect();
        (info.width, info.height, px)
    }

    #[test]
    fn photos_decode_within_the_psnr_bound_and_are_small() {
        for (w, h, seed) in [(320, 240, 1), (97, 61, 2), (16, 16, 3), (1, 1, 4)] {
            let px = photo(w, h, seed);
            let jpeg = jpeg_rgb32(w, h, &px);
            let (dw, dh, back) = decode(&jpeg);
            assert_eq!((u32::from(dw), u32::from(dh)), (w, h));
            let q = psnr(&px, &back);
            assert!(q > 30.0, "{w}x{h}: PSNR {q:.1} dB");
            if w * h >= 320 * 240 {
                // A photo at quality 85 is several times smaller than raw.
                assert!(jpeg.len() * 8 < px.len() * 4, "{} bytes", jpeg.len());
            }
        }
        // Smooth gradients come back nearly exact.
        let g = gradient(256, 128);
        let (_, _, back) = decode(&jpeg_rgb32(256, 128, &g));
        assert!(psnr(&g, &back) > 38.0);
    }

    #[test]
    fn optimized_tables_make_photos_smaller_than_the_standard_ones() {
        let px = photo(256, 192, 11);
        let bytes: Vec<u8> = px.iter().flat_map(|p| p.to_le_bytes()).collect();
        for q in [30, JPEG_QUALITY] {
            let mut standard = Vec::new();
            Encoder::new(&mut standard, q)
                .encode(&bytes, 256, 192, ColorType::Bgra)
                .unwrap();
            let ours = jpeg_rgb32_quality(256, 192, &px, q);
            assert!(
                ours.len() * 10 < standard.len() * 9,
                "quality {q}: {} bytes, standard tables {}",
                ours.len(),
                standard.len()
            );
            // Same coefficients, other codes: the same picture.
            assert_eq!(decode(&ours).2, decode(&standard).2);
        }
    }

    #[test]
    fn the_pad_byte_does_not_change_the_picture() {
        let px = photo(64, 48, 9);
        let padded: Vec<u32> = px.iter().map(|p| p | 0xff00_0000).collect();
        assert_eq!(jpeg_rgb32(64, 48, &px), jpeg_rgb32(64, 48, &padded));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(jpeg_rgb32(0, 5, &[]).is_empty());
        assert!(jpeg_rgb32(70000, 1, &vec![0; 70000]).is_empty());
        assert!(jpeg_rgb32(4, 4, &[0; 15]).is_empty());
        assert!(jpeg_rgb32(4, 4, &[0; 17]).is_empty());
    }

    #[test]
    fn photo_likeness_in_place_is_that_of_the_area_copied_out() {
        // A photo next to text: areas on either side, and across both.
        let (w, h) = (300usize, 200usize);
        let (ph, text) = (photo(150, 200, 3), desktop_text(150, 200, 4));
        let mut pic = vec![0u32; w * h];
        for y in 0..h {
            pic[y * w..y * w + 150].copy_from_slice(&ph[y * 150..(y + 1) * 150]);
            pic[y * w + 150..(y + 1) * w].copy_from_slice(&text[y * 150..(y + 1) * 150]);
        }
        for (x, y, aw, ah) in [(10, 20, 120, 150), (160, 0, 140, 200), (100, 40, 120, 96)] {
            let copy: Vec<u32> = (y..y + ah)
                .flat_map(|r| pic[r * w + x..r * w + x + aw].iter().copied())
                .collect();
            assert_eq!(
                photo_like_in(&pic, w, (x, y), aw as u32, ah as u32),
                photo_like(aw as u32, ah as u32, &copy),
                "area at {x},{y}"
            );
        }
        assert!(photo_like_in(&pic, w, (10, 20), 120, 150));
        assert!(!photo_like_in(&pic, w, (160, 0), 140, 200));
        // Areas reaching past the picture's edge: never.
        assert!(!photo_like_in(&pic, w, (200, 0), 120, 50));
        assert!(!photo_like_in(&pic, w, (0, 150), 100, 51));
    }

    #[test]
    fn runs_are_rare_on_photos_not_on_flat_rows_or_ui() {
        assert!(runs_rare(320, 240, &photo(320, 240, 5)));
        assert!(runs_rare(200, 100, &random(200, 100, 8)));
        // The qxl-native guest's sprite: every neighbour differs.
        let sprite: Vec<u32> = (0..96u32)
            .flat_map(|y| (0..128u32).map(move |x| (x * 2) << 16 | (y * 2) << 8 | 0x80))
            .collect();
        assert!(runs_rare(128, 96, &sprite));
        // A gradient whose rows are flat: photo-like, but LZ runs on it.
        let rows: Vec<u32> = (0..200u32 * 300).map(|i| (i / 300) * 0x0001_0101).collect();
        assert!(photo_like(300, 200, &rows) && !runs_rare(300, 200, &rows));
        assert!(!runs_rare(320, 240, &solid(320, 240, 0x00c0_c0c0)));
        assert!(!runs_rare(640, 480, &desktop_text(640, 480, 7)));
        assert!(!runs_rare(15, 64, &photo(15, 64, 1)));
        assert!(!runs_rare(64, 64, &photo(64, 63, 1)));
        assert!(!runs_rare(u32::MAX, 2, &[]));
    }

    #[test]
    fn photo_likeness_on_synthetic_images() {
        assert!(photo_like(320, 240, &photo(320, 240, 5)));
        assert!(photo_like(64, 64, &photo(64, 64, 6)));
        // Smooth gradients, including a slow one with runs of equal pixels.
        assert!(photo_like(256, 256, &gradient(256, 256)));
        assert!(photo_like(512, 300, &gradient(512, 300)));
        // UI: flat, text on a flat background, full-range noise.
        assert!(!photo_like(320, 240, &solid(320, 240, 0x00c0_c0c0)));
        assert!(!photo_like(640, 480, &desktop_text(640, 480, 7)));
        assert!(!photo_like(200, 100, &random(200, 100, 8)));
        // A small photo on a mostly flat window is not a photo.
        let mut window = solid(400, 300, 0x00ee_eeee);
        let small = photo(80, 60, 9);
        for y in 0..60 {
            let row = (y + 20) * 400 + 20;
            window[row..row + 80].copy_from_slice(&small[y * 80..y * 80 + 80]);
        }
        assert!(!photo_like(400, 300, &window));
        // Too small, or malformed: never.
        assert!(!photo_like(15, 64, &photo(15, 64, 1)));
        assert!(!photo_like(64, 64, &photo(64, 63, 1)));
        assert!(!photo_like(u32::MAX, 2, &[]));
    }
}
