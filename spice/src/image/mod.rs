//! Image encoders for the DISPLAY channel: SPICE LZ (`SPICE_IMAGE_TYPE_LZ_RGB`), GLZ
//! (`SPICE_IMAGE_TYPE_GLZ_RGB`: LZ with a dictionary shared across images, `glz.rs`,
//! optionally zlib-wrapped), LZ4 (`SPICE_IMAGE_TYPE_LZ4`) and JPEG for photo-like images (`jpeg.rs`, with the test that
//! says which are), plus strict decoders for tests and the in-repo test client.
//!
//! Pixels are `0x00RRGGBB` words, row-major, top-down, stride = width. The pad byte is not
//! carried by either format for a 32-bit xRGB image (the client draws into an x8r8g8b8
//! surface), so encoders ignore it and decoders return it as 0.
//!
//! The bytes returned by the encoders are the image payload only: what follows the `u32
//! data_size` of `SpiceLZRGBData` / `SpiceLZ4Data`. The descriptor (type, width, height) and
//! `data_size` are the caller's to write.
//!
//! Do not send images with a zero width or height: spice-gtk divides by the height when it
//! decodes LZ, and rejects an LZ4 image whose first block decodes to nothing. The encoders
//! still return well-formed bytes for them; the decoders reject them.

mod glz;
mod glz_decode;
#[cfg(test)]
mod glz_tests;
mod jpeg;
mod lz;
mod lz4;
#[cfg(test)]
pub(crate) mod samples;
#[cfg(test)]
mod tests;

pub use glz::{zlib_deflate, GlzDictionary, GlzImage, GLZ_HEADER_LEN, MAX_WINDOW_PIXELS};
pub use glz_decode::{zlib_inflate, GlzDecoded, GlzWindow};
pub use jpeg::{
    jpeg_rgb32, jpeg_rgb32_quality, photo_like, photo_like_in, runs_rare, JPEG_QUALITY,
};
pub use lz::{decode_lz_rgb32, decode_lz_rgba, decode_lz_xxxa, lz_rgb32, lz_rgba, lz_xxxa};
pub use lz4::{decode_lz4_rgb32, lz4_rgb32};

/// Largest width or height the decoders accept. spice-gtk caps an LZ image at 1 GiB of
/// pixels; 16384 x 16384 x 4 bytes is exactly that, and far beyond any guest screen.
pub const MAX_DIMENSION: u32 = 16384;

/// Why a decoder rejected its input. Decoders are fed untrusted bytes; every malformed
/// input ends here rather than in a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("image data truncated")]
    Truncated,
    #[error("bad LZ magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported LZ version {0:#010x}")]
    BadVersion(u32),
    #[error("unsupported image type or format {0}")]
    UnsupportedType(u32),
    #[error("bad image size {width}x{height}")]
    BadSize { width: u32, height: u32 },
    #[error("LZ stride {stride} does not match width {width}")]
    BadStride { width: u32, stride: u32 },
    #[error("back-reference reaches before the start of the image")]
    BadReference,
    #[error("compressed data describes more pixels than the image holds")]
    Overflow,
    #[error("{0} bytes left over after the last pixel")]
    TrailingData(usize),
    #[error("image decoded to {got} bytes, expected {expected}")]
    ShortImage { got: usize, expected: usize },
    #[error("LZ4 block: {0}")]
    Lz4(String),
    #[error("GLZ image id {got}, expected {expected}")]
    BadImageId { got: u64, expected: u64 },
    #[error("GLZ reference to image {0}, which the window does not hold")]
    MissingImage(u64),
    #[error("zlib: {0}")]
    Zlib(String),
}

/// Number of pixels in a `width` x `height` image, if both sides are within 1..=MAX_DIMENSION.
fn checked_pixel_count(width: u32, height: u32) -> Result<usize, ImageError> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(ImageError::BadSize { width, height });
    }
    // Both factors are at most 2^14, so the product fits any usize of 32 bits or more.
    Ok(width as usize * height as usize)
}

/// Reverses the row order in place (bottom-up payloads are returned top-down).
fn flip_rows(pixels: &mut [u32], width: usize) {
    if width == 0 {
        return;
    }
    let rows = pixels.len() / width;
    for top in 0..rows / 2 {
        let bottom = rows - 1 - top;
        let (upper, lower) = pixels.split_at_mut(bottom * width);
        upper[top * width..(top + 1) * width].swap_with_slice(&mut lower[..width]);
    }
}
