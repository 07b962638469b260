//! SPICE LZ for 32-bit xRGB images (`LZ_IMAGE_TYPE_RGB32`), the format decoded by spice-common
//! `lz.c` / `lz_decompress_tmpl.c` (spice-gtk) and spice-html5 `lz.js`.
//!
//! Layout: a 28-byte header of big-endian u32 words (magic, version, type, width, height,
//! stride, top_down), then a token stream in units of pixels. Each pixel on the wire is three
//! bytes B, G, R (the pad byte is not sent). A control byte `c` is either
//! * `c < 32`: `c + 1` literal pixels follow, or
//! * `c >= 32`: a back-reference. Length `L = c >> 5` (7 means "7 plus the following bytes,
//!   summed while they are 255"); then one distance byte `d`, and biased distance
//!   `D = (c & 31) << 8 | d`. `D == 8191` (all ones) means "far": two more bytes hi, lo and
//!   `D = (hi << 8 | lo) + 8191`. The decoder copies `L` pixels from `D + 1` pixels back,
//!   one at a time, so overlapping copies (runs) are allowed.
//!
//! The client is strict: it asserts that the stream produces exactly width x height pixels,
//! that no copy runs past the end, and that no byte is left over. The decoder here enforces
//! the same rules so that tests catch any encoder slip.

use std::borrow::Cow;

use super::{checked_pixel_count, flip_rows, ImageError};

/// "LZ  " as a big-endian word (lz_common.h LZ_MAGIC).
const LZ_MAGIC: u32 = 0x2020_5A4C;
/// Version 1.1 (major << 16 | minor); the decoder rejects anything else.
const LZ_VERSION: u32 = 0x0001_0001;
const LZ_TYPE_RGB24: u32 = 7;
const LZ_TYPE_RGB32: u32 = 8;
const LZ_TYPE_RGBA: u32 = 9;
/// The alpha bytes of 32-bit pixels alone: JPEG_ALPHA's alpha plane.
const LZ_TYPE_XXXA: u32 = 10;
/// The alpha stream's matches: written this much shorter than they are, so
/// the shortest (a length code of 1) is 3.
const ALPHA_MATCH_BIAS: usize = 2;
const ALPHA_MIN_MATCH: usize = ALPHA_MATCH_BIAS + 1;
const HEADER_LEN: usize = 28;

/// A literal run holds at most 32 pixels (count is stored minus one in 5 bits).
const MAX_LITERALS: usize = 32;
/// Biased distances below this fit the two-byte "near" form; 8191 itself is the far marker.
const NEAR_LIMIT: usize = 8191;
/// Largest distance (in pixels) the far form can express: 8191 + 65535 biased, plus the bias.
const MAX_DISTANCE: usize = NEAR_LIMIT + 0xFFFF + 1;
/// Hash table size for the match finder: 2^15 entries of the last position seen.
const HASH_BITS: u32 = 15;
/// Pixels hashed per position. Two-pixel contexts on text are dominated by "background then
/// stroke" pairs whose latest occurrence is a poor match; about a glyph's width picks out
/// repeated glyphs (on the text screens of examples/image_bench.rs: 15% smaller than 2).
const HASH_PIXELS: usize = 8;
const RGB_MASK: u32 = 0x00FF_FFFF;

/// Encodes a top-down xRGB image as `SpiceLZRGBData.data`. Returns an empty vector if a side
/// is 0 or above [`super::MAX_DIMENSION`], or if `pixels` holds fewer than width x height
/// pixels (extra pixels are ignored).
pub fn lz_rgb32(width: u32, height: u32, pixels: &[u32]) -> Vec<u8> {
    let Ok(count) = checked_pixel_count(width, height) else {
        return Vec::new();
    };
    let Some(src) = pixels.get(..count) else {
        return Vec::new();
    };
    // Compare pixels as whole words: drop any pad byte up front so equal colours compare equal.
    let px: Cow<[u32]> = if src.iter().all(|p| p & !RGB_MASK == 0) {
        Cow::Borrowed(src)
    } else {
        Cow::Owned(src.iter().map(|p| p & RGB_MASK).collect())
    };

    // Worst case is all literals: 3 bytes per pixel plus one control byte per 32.
    let mut out = Vec::with_capacity(HEADER_LEN + count * 3 + count / MAX_LITERALS + 1);
    header(&mut out, LZ_TYPE_RGB32, width, height);
    compress(&px, width as usize, &mut out);
    out
}

/// The 28-byte header of a top-down image of `kind`, whose rows the client
/// requires packed (stride = width * 4 for RGB32 and RGBA).
fn header(out: &mut Vec<u8>, kind: u32, width: u32, height: u32) {
    for word in [LZ_MAGIC, LZ_VERSION, kind, width, height, width * 4, 1] {
        out.extend_from_slice(&word.to_be_bytes());
    }
}

/// Encodes a top-down image with alpha (0xAARRGGBB, premultiplied, as
/// pixman's a8r8g8b8 that spice-gtk decodes it into) as `LZ_IMAGE_TYPE_RGBA`:
/// the colours as an RGB32 stream, then the alpha bytes as a second stream
/// of one-byte pixels whose matches are at least 3 long (lz.c encodes RGBA as
/// its rgb32 pass followed by its rgb_alpha pass). Empty on the same inputs
/// as [`lz_rgb32`].
pub fn lz_rgba(width: u32, height: u32, pixels: &[u32]) -> Vec<u8> {
    let Ok(count) = checked_pixel_count(width, height) else {
        return Vec::new();
    };
    let Some(src) = pixels.get(..count) else {
        return Vec::new();
    };
    let rgb: Vec<u32> = src.iter().map(|p| p & RGB_MASK).collect();
    let alpha: Vec<u32> = src.iter().map(|p| p >> 24).collect();
    let mut out = Vec::with_capacity(HEADER_LEN + count * 4 + count / 16 + 2);
    header(&mut out, LZ_TYPE_RGBA, width, height);
    compress(&rgb, width as usize, &mut out);
    compress_alpha(&alpha, width as usize, &mut out);
    out
}

/// Encodes the alpha bytes of a top-down image (0xAARRGGBB; the colours are
/// ignored) as `LZ_IMAGE_TYPE_XXXA`: the header of a 32-bit image (stride
/// width * 4, as lz.c requires of XXXA) and only [`lz_rgba`]'s alpha
/// stream. It is the alpha plane of a JPEG_ALPHA image, which spice-gtk
/// decodes into the alpha bytes of the JPEG's pixels. Empty on the same
/// inputs as [`lz_rgb32`].
pub fn lz_xxxa(width: u32, height: u32, pixels: &[u32]) -> Vec<u8> {
    let Ok(count) = checked_pixel_count(width, height) else {
        return Vec::new();
    };
    let Some(src) = pixels.get(..count) else {
        return Vec::new();
    };
    let alpha: Vec<u32> = src.iter().map(|p| p >> 24).collect();
    let mut out = Vec::with_capacity(HEADER_LEN + count / 16 + 2);
    header(&mut out, LZ_TYPE_XXXA, width, height);
    compress_alpha(&alpha, width as usize, &mut out);
    out
}

/// The alpha pass: runs and rows repeated from above, else literal bytes.
/// A match is at least [`ALPHA_MIN_MATCH`] long and is written 2 shorter,
/// as the reference decoder adds that bias back.
fn compress_alpha(a: &[u32], width: usize, out: &mut Vec<u8>) {
    let n = a.len();
    let mut literal_start = 0;
    let mut ip = 0;
    while ip < n {
        let mut best = (0, 0);
        for dist in [1, width] {
            if dist == 0 || dist > ip || dist > MAX_DISTANCE {
                continue;
            }
            let len = match_len(a, ip - dist, ip);
            if len > best.0 {
                best = (len, dist);
            }
        }
        if best.0 >= ALPHA_MIN_MATCH {
            for chunk in a[literal_start..ip].chunks(MAX_LITERALS) {
                out.push((chunk.len() - 1) as u8);
                out.extend(chunk.iter().map(|v| *v as u8));
            }
            emit_match(best.0 - ALPHA_MATCH_BIAS, best.1, out);
            ip += best.0;
            literal_start = ip;
        } else {
            ip += 1;
        }
    }
    for chunk in a[literal_start..].chunks(MAX_LITERALS) {
        out.push((chunk.len() - 1) as u8);
        out.extend(chunk.iter().map(|v| *v as u8));
    }
}

/// Length of the common run of `px[r..]` and `px[ip..]` (r < ip), stopping at the end.
fn match_len(px: &[u32], r: usize, ip: usize) -> usize {
    px[ip..]
        .iter()
        .zip(&px[r..])
        .take_while(|(a, b)| a == b)
        .count()
}

/// Hash of the HASH_PIXELS pixels at `ip` (fewer near the end of the image).
fn hash(px: &[u32], ip: usize) -> usize {
    let h = px[ip..].iter().take(HASH_PIXELS).fold(0u32, |h, &p| {
        (h.rotate_left(11) ^ p).wrapping_mul(0x9E37_79B1)
    });
    (h >> (32 - HASH_BITS)) as usize
}

/// Greedy LZ77 over pixels. At each position three candidates are tried: the previous pixel
/// (a run), the pixel one row up (vertical repeats in text and UI), and the last position
/// whose next pixels hashed the same (repeated glyphs, icons). The longest wins.
fn compress(px: &[u32], width: usize, out: &mut Vec<u8>) {
    let n = px.len();
    // Each slot holds (position + 1, first pixel); 0 is empty. Keeping the pixel lets a
    // mismatching candidate be rejected without touching its (likely uncached) image memory,
    // which is most of the cost on noisy content.
    let mut table = vec![(0u32, 0u32); 1 << HASH_BITS];
    let mut literal_start = 0;
    let mut ip = 0;
    while ip + 1 < n {
        let slot = &mut table[hash(px, ip)];
        let (hashed, hashed_pixel) = *slot;
        // Positions are below 2^28 (MAX_DIMENSION squared), so they fit a u32.
        *slot = (ip as u32 + 1, px[ip]);

        let mut best_len = 0;
        let mut best_dist = 0;
        let candidates = [
            1,
            width,
            if hashed == 0 || hashed_pixel != px[ip] {
                0
            } else {
                ip + 1 - hashed as usize
            },
        ];
        for dist in candidates {
            if dist == 0 || dist > ip || dist > MAX_DISTANCE || dist == best_dist {
                continue;
            }
            let r = ip - dist;
            // Only a candidate that also matches at best_len can be longer; skip the rest.
            if ip + best_len >= n || px[r + best_len] != px[ip + best_len] {
                continue;
            }
            let len = match_len(px, r, ip);
            if len > best_len {
                best_len = len;
                best_dist = dist;
            }
        }

        // A near match of 2 pixels costs 2-3 bytes against 6 as literals; a far one costs 4-5,
        // so it needs 3 pixels to pay off.
        let min_len = if best_dist > NEAR_LIMIT { 3 } else { 2 };
        if best_len >= min_len {
            emit_literals(&px[literal_start..ip], out);
            emit_match(best_len, best_dist, out);
            ip += best_len;
            literal_start = ip;
        } else {
            ip += 1;
        }
    }
    emit_literals(&px[literal_start..], out);
}

fn emit_literals(pixels: &[u32], out: &mut Vec<u8>) {
    for chunk in pixels.chunks(MAX_LITERALS) {
        out.push((chunk.len() - 1) as u8);
        for p in chunk {
            let [b, g, r, _] = p.to_le_bytes();
            out.extend_from_slice(&[b, g, r]);
        }
    }
}

/// Writes a back-reference of `len` >= 1 pixels from `dist` (1..=MAX_DISTANCE) pixels back.
fn emit_match(len: usize, dist: usize, out: &mut Vec<u8>) {
    let biased = dist - 1;
    let len_code = len.min(7) as u8;
    let near = biased < NEAR_LIMIT;
    let high = if near { (biased >> 8) as u8 } else { 31 };
    out.push((len_code << 5) | high);
    if len >= 7 {
        let mut rest = len - 7;
        while rest >= 255 {
            out.push(255);
            rest -= 255;
        }
        out.push(rest as u8);
    }
    if near {
        out.push(biased as u8);
    } else {
        let far = biased - NEAR_LIMIT;
        out.extend_from_slice(&[255, (far >> 8) as u8, far as u8]);
    }
}

/// Reads a big-endian u32 at `*pos`.
pub(super) fn read_u32(data: &[u8], pos: &mut usize) -> Result<u32, ImageError> {
    let bytes = data.get(*pos..*pos + 4).ok_or(ImageError::Truncated)?;
    *pos += 4;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

pub(super) fn read_u8(data: &[u8], pos: &mut usize) -> Result<u8, ImageError> {
    let b = *data.get(*pos).ok_or(ImageError::Truncated)?;
    *pos += 1;
    Ok(b)
}

/// Makes room for `extra` more pixels without ever reserving past `limit` in total, so a
/// hostile header cannot make the decoder allocate more than the image it describes.
pub(super) fn grow(out: &mut Vec<u32>, extra: usize, limit: usize) -> Result<(), ImageError> {
    let needed = out.len() + extra;
    if needed > limit {
        return Err(ImageError::Overflow);
    }
    if needed > out.capacity() {
        let target = needed.max(out.capacity() * 2).min(limit);
        out.reserve_exact(target - out.len());
    }
    Ok(())
}

/// Decodes `SpiceLZRGBData.data` of type RGB32 (or RGB24, which has the same stream) into
/// top-down `0x00RRGGBB` pixels. Returns (width, height, pixels).
pub fn decode_lz_rgb32(data: &[u8]) -> Result<(u32, u32, Vec<u32>), ImageError> {
    decode(data, Planes::Rgb)
}

/// Decodes `SpiceLZRGBData.data` of type RGBA into top-down `0xAARRGGBB`
/// pixels: the RGB32 stream, then the alpha stream (see [`lz_rgba`]).
pub fn decode_lz_rgba(data: &[u8]) -> Result<(u32, u32, Vec<u32>), ImageError> {
    decode(data, Planes::Rgba)
}

/// Decodes an `LZ_IMAGE_TYPE_XXXA` alpha plane (see [`lz_xxxa`]) into
/// top-down `0xAA000000` pixels, to be ORed into the colours they go with.
pub fn decode_lz_xxxa(data: &[u8]) -> Result<(u32, u32, Vec<u32>), ImageError> {
    decode(data, Planes::Alpha)
}

/// What an LZ image holds, as its decoder expects it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Planes {
    /// RGB32 (or RGB24, the same stream).
    Rgb,
    /// The RGB32 stream, then the alpha stream.
    Rgba,
    /// The alpha stream alone (XXXA).
    Alpha,
}

fn decode(data: &[u8], planes: Planes) -> Result<(u32, u32, Vec<u32>), ImageError> {
    let mut pos = 0;
    let magic = read_u32(data, &mut pos)?;
    if magic != LZ_MAGIC {
        return Err(ImageError::BadMagic(magic));
    }
    let version = read_u32(data, &mut pos)?;
    if version != LZ_VERSION {
        return Err(ImageError::BadVersion(version));
    }
    let kind = read_u32(data, &mut pos)?;
    let bytes_per_pixel = match (kind, planes) {
        (LZ_TYPE_RGB32, Planes::Rgb) => 4,
        (LZ_TYPE_RGB24, Planes::Rgb) => 3,
        (LZ_TYPE_RGBA, Planes::Rgba) | (LZ_TYPE_XXXA, Planes::Alpha) => 4,
        (other, _) => return Err(ImageError::UnsupportedType(other)),
    };
    let width = read_u32(data, &mut pos)?;
    let height = read_u32(data, &mut pos)?;
    let stride = read_u32(data, &mut pos)?;
    let top_down = read_u32(data, &mut pos)?;
    let count = checked_pixel_count(width, height)?;
    // Same rule as lz.c lz_set_sizes: RGB rows are packed.
    if u64::from(stride) != u64::from(width) * bytes_per_pixel {
        return Err(ImageError::BadStride { width, stride });
    }
    // Nothing is allocated ahead of the data: a lying header costs only
    // what the streams really hold.
    let mut out = match planes {
        Planes::Alpha => Vec::new(),
        Planes::Rgb | Planes::Rgba => stream(data, &mut pos, count, 3, 0)?,
    };
    if planes != Planes::Rgb {
        let alpha = stream(data, &mut pos, count, 1, ALPHA_MATCH_BIAS)?;
        if planes == Planes::Alpha {
            out = vec![0; alpha.len()];
        }
        for (p, a) in out.iter_mut().zip(alpha) {
            *p |= a << 24;
        }
    }
    if pos != data.len() {
        return Err(ImageError::TrailingData(data.len() - pos));
    }
    if top_down == 0 {
        flip_rows(&mut out, width as usize);
    }
    Ok((width, height, out))
}

/// One token stream of exactly `count` pixels from `*pos`: literals of
/// `literal_bytes` bytes each (B, G, R or one alpha byte, as the low bits
/// of the pixel), matches `bias` longer than their length code says.
fn stream(
    data: &[u8],
    pos: &mut usize,
    count: usize,
    literal_bytes: usize,
    bias: usize,
) -> Result<Vec<u32>, ImageError> {
    let mut out: Vec<u32> = Vec::new();
    while out.len() < count {
        let ctrl = read_u8(data, pos)?;
        if ctrl < 32 {
            let run = usize::from(ctrl) + 1;
            grow(&mut out, run, count)?;
            let bytes = data
                .get(*pos..*pos + run * literal_bytes)
                .ok_or(ImageError::Truncated)?;
            *pos += run * literal_bytes;
            out.extend(
                bytes
                    .chunks_exact(literal_bytes)
                    .map(|p| p.iter().rev().fold(0u32, |acc, b| acc << 8 | u32::from(*b))),
            );
            continue;
        }
        let mut len = usize::from(ctrl >> 5);
        if len == 7 {
            loop {
                let b = read_u8(data, pos)?;
                len += usize::from(b);
                // Bail out as soon as the length passes the image, before it can grow further.
                if len > count {
                    return Err(ImageError::Overflow);
                }
                if b != 255 {
                    break;
                }
            }
        }
        let len = len + bias;
        let low = read_u8(data, pos)?;
        let mut biased = (usize::from(ctrl & 31) << 8) | usize::from(low);
        if biased == NEAR_LIMIT {
            let hi = read_u8(data, pos)?;
            let lo = read_u8(data, pos)?;
            biased = ((usize::from(hi) << 8) | usize::from(lo)) + NEAR_LIMIT;
        }
        let dist = biased + 1;
        if dist > out.len() {
            return Err(ImageError::BadReference);
        }
        grow(&mut out, len, count)?;
        copy_match(&mut out, dist, len);
    }
    Ok(out)
}

/// Appends `len` pixels copied from `dist` back, with the pixel-at-a-time semantics of the
/// reference decoder (a source that overlaps the output repeats with period `dist`).
pub(super) fn copy_match(out: &mut Vec<u32>, dist: usize, len: usize) {
    // Everything from `start` on is periodic with period `dist`, and it stays so while each
    // copy is a whole number of periods, so the copied span can double each step. That keeps
    // long runs (dist 1) at O(log len) calls.
    let start = out.len() - dist;
    let mut remaining = len;
    while remaining > 0 {
        let take = remaining.min(out.len() - start);
        out.extend_from_within(start..start + take);
        remaining -= take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length and distance class of the token format, at its boundaries, decodes back
    /// to what the format says: `len` pixels copied from `dist` back, pixel by pixel.
    #[test]
    fn match_encoding_boundaries() {
        let dists = [1, 2, 255, 256, 8190, 8191, 8192, 8193, 70000, MAX_DISTANCE];
        let lens = [1, 2, 6, 7, 8, 261, 262, 263, 1000];
        for dist in dists {
            for len in lens {
                // Distinct pixels so that a wrong distance shows.
                let prefix: Vec<u32> = (0..dist as u32).map(|i| (i * 7919) & RGB_MASK).collect();
                let mut want: Vec<u32> = prefix.iter().cycle().take(dist + len).copied().collect();
                // Pad with literal black to whole rows of at most 16384 pixels.
                let width = want.len().min(16384);
                let height = want.len().div_ceil(width);
                let padding = width * height - want.len();
                let mut data = Vec::new();
                for word in [
                    LZ_MAGIC,
                    LZ_VERSION,
                    LZ_TYPE_RGB32,
                    width as u32,
                    height as u32,
                    width as u32 * 4,
                    1,
                ] {
                    data.extend_from_slice(&word.to_be_bytes());
                }
                emit_literals(&prefix, &mut data);
                emit_match(len, dist, &mut data);
                emit_literals(&vec![0; padding], &mut data);
                want.resize(width * height, 0);
                let (_, _, out) = decode_lz_rgb32(&data).unwrap();
                assert!(out == want, "dist {dist} len {len}");
            }
        }
    }

    /// RGBA: colours and alpha both come back, on runs, rows repeated from
    /// above and noise; the alpha stream's matches are 2 longer than coded.
    #[test]
    fn rgba_round_trips_and_the_alpha_bias_is_the_reference_one() {
        let (w, h) = (37u32, 9u32);
        let mut seed = 7u32;
        let px: Vec<u32> = (0..w * h)
            .map(|i| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let a = match i / w {
                    0..=2 => 0xff,
                    3 | 4 => (i % w) * 7,
                    _ => seed >> 24,
                };
                a << 24 | (seed >> 8 & RGB_MASK)
            })
            .collect();
        let data = lz_rgba(w, h, &px);
        assert_eq!(decode_lz_rgba(&data).unwrap(), (w, h, px.clone()));
        assert!(decode_lz_rgb32(&data).is_err(), "RGBA is not RGB32");
        // By hand: 1x4, one literal colour run, alpha 9 then a 3-long run
        // coded as length 1 from 1 back.
        let mut d = Vec::new();
        header(&mut d, LZ_TYPE_RGBA, 4, 1);
        emit_literals(&[1, 2, 3, 4], &mut d);
        d.extend_from_slice(&[0, 9, 1 << 5, 0]);
        let (_, _, got) = decode_lz_rgba(&d).unwrap();
        assert_eq!(got, [0x0900_0001, 0x0900_0002, 0x0900_0003, 0x0900_0004]);
        // A truncated alpha stream is refused, not padded.
        assert!(decode_lz_rgba(&d[..d.len() - 1]).is_err());
    }

    /// XXXA: only the alpha comes back (colours 0), in the header of a
    /// 32-bit image; other LZ types are not XXXA, nor XXXA any of them.
    #[test]
    fn xxxa_carries_the_alpha_alone() {
        let (w, h) = (29u32, 11u32);
        let px: Vec<u32> = (0..w * h)
            .map(|i| {
                let a = match i / w {
                    0..=3 => 0,
                    4..=6 => (i % w) * 9,
                    _ => i.wrapping_mul(2_654_435_761) >> 24,
                };
                a << 24 | ((i * 7919) & RGB_MASK)
            })
            .collect();
        let data = lz_xxxa(w, h, &px);
        let want: Vec<u32> = px.iter().map(|p| p & 0xff00_0000).collect();
        assert_eq!(decode_lz_xxxa(&data).unwrap(), (w, h, want));
        // Type 10, stride width * 4, top-down.
        assert_eq!(data[8..12], 10u32.to_be_bytes());
        assert_eq!(data[20..24], (w * 4).to_be_bytes());
        assert_eq!(data[24..28], 1u32.to_be_bytes());
        assert!(decode_lz_rgba(&data).is_err());
        assert!(decode_lz_rgb32(&data).is_err());
        assert!(decode_lz_xxxa(&lz_rgba(w, h, &px)).is_err());
        assert!(decode_lz_xxxa(&lz_rgb32(w, h, &px)).is_err());
        // Every truncation is refused, as is a byte too many.
        for n in 0..data.len() {
            assert!(decode_lz_xxxa(&data[..n]).is_err(), "{n} bytes");
        }
        let mut long = data.clone();
        long.push(0);
        assert!(decode_lz_xxxa(&long).is_err());
        // A header that claims the largest image allocates nothing up front.
        let mut huge = Vec::new();
        header(&mut huge, LZ_TYPE_XXXA, 16384, 16384);
        huge.extend_from_slice(&[0, 7]);
        assert_eq!(decode_lz_xxxa(&huge), Err(ImageError::Truncated));
        assert!(lz_xxxa(0, 1, &[]).is_empty());
        assert!(lz_xxxa(2, 2, &[0; 3]).is_empty());
    }
}
