//! LZ4 images (`SPICE_IMAGE_TYPE_LZ4`), laid out as spice-server `lz4-encoder.c` writes them
//! and spice-common `canvas_base.c` (`canvas_get_lz4`) reads them:
//!
//! `[top_down: u8][format: u8]` then one or more `[u32 big-endian length][raw LZ4 block]`.
//!
//! The client decodes all blocks with `LZ4_decompress_safe_continue` into one contiguous
//! buffer of height x width x 4 bytes (rows packed, B G R X), so a block may refer back into
//! the bytes earlier blocks produced. The client reads blocks until the input ends and fails
//! on a block that decodes to nothing. We write the whole image as one block: a stream of one
//! block is valid for that decoder, compresses at least as well, and needs no dictionary.

use lz4_flex::block;

use super::{checked_pixel_count, flip_rows, ImageError};

/// `SPICE_BITMAP_FMT_32BIT`: 4 bytes per pixel, B G R X.
const FMT_32BIT: u8 = 8;
const PREFIX_LEN: usize = 2;
/// LZ4 match offsets are 16 bits, so a block can see at most this much earlier output.
const LZ4_WINDOW: usize = 64 * 1024;
const RGB_MASK: u32 = 0x00FF_FFFF;

/// Encodes a top-down xRGB image as `SpiceLZ4Data.data`. Returns an empty vector if a side is
/// 0 or above [`super::MAX_DIMENSION`], or if `pixels` holds fewer than width x height pixels
/// (extra pixels are ignored).
pub fn lz4_rgb32(width: u32, height: u32, pixels: &[u32]) -> Vec<u8> {
    let Ok(count) = checked_pixel_count(width, height) else {
        return Vec::new();
    };
    let Some(src) = pixels.get(..count) else {
        return Vec::new();
    };
    // The pad byte is cleared so that it neither costs bytes nor leaks to the client.
    let mut raw = vec![0u8; count * 4];
    for (dst, p) in raw.chunks_exact_mut(4).zip(src) {
        dst.copy_from_slice(&(p & RGB_MASK).to_le_bytes());
    }

    let header = PREFIX_LEN + 4;
    let mut out = vec![0u8; header + block::get_maximum_output_size(raw.len())];
    out[0] = 1; // top_down
    out[1] = FMT_32BIT;
    let Ok(len) = block::compress_into(&raw, &mut out[header..]) else {
        return Vec::new();
    };
    // A block of at most 1 GiB of input always compresses to less than 4 GiB.
    let Ok(len32) = u32::try_from(len) else {
        return Vec::new();
    };
    out[PREFIX_LEN..header].copy_from_slice(&len32.to_be_bytes());
    out.truncate(header + len);
    out
}

/// Decodes `SpiceLZ4Data.data` of format 32BIT for an image of the descriptor's `width` x
/// `height` into top-down `0x00RRGGBB` pixels. Accepts several blocks, including blocks that
/// refer back into earlier ones (spice-server's streaming encoder), and requires the blocks
/// to fill the image exactly.
pub fn decode_lz4_rgb32(data: &[u8], width: u32, height: u32) -> Result<Vec<u32>, ImageError> {
    let count = checked_pixel_count(width, height)?;
    let (&top_down, rest) = data.split_first().ok_or(ImageError::Truncated)?;
    let (&format, mut blocks) = rest.split_first().ok_or(ImageError::Truncated)?;
    if format != FMT_32BIT {
        return Err(ImageError::UnsupportedType(u32::from(format)));
    }

    // Bounded by MAX_DIMENSION squared times 4: the size of the image itself.
    let total = count * 4;
    let mut raw = vec![0u8; total];
    let mut written = 0;
    // Like the client, there is at least one block, and blocks run to the end of the data.
    loop {
        let (len_bytes, tail) = blocks
            .split_first_chunk::<4>()
            .ok_or(ImageError::Truncated)?;
        let len = u32::from_be_bytes(*len_bytes) as usize;
        let block_data = tail.get(..len).ok_or(ImageError::Truncated)?;
        blocks = &tail[len..];

        let (done, free) = raw.split_at_mut(written);
        let dict = &done[done.len().saturating_sub(LZ4_WINDOW)..];
        let produced = block::decompress_into_with_dict(block_data, free, dict)
            .map_err(|e| ImageError::Lz4(e.to_string()))?;
        if produced == 0 {
            return Err(ImageError::Lz4("empty block".into()));
        }
        written += produced;
        if blocks.is_empty() {
            break;
        }
    }
    if written != total {
        return Err(ImageError::ShortImage {
            got: written,
            expected: total,
        });
    }

    let mut pixels: Vec<u32> = raw
        .chunks_exact(4)
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
        .collect();
    if top_down == 0 {
        flip_rows(&mut pixels, width as usize);
    }
    Ok(pixels)
}
