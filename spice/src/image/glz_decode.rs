//! A strict GLZ decoder with its window, for tests and the in-repo test client,
//! written from the format as `glz.rs` describes it (not from the encoder): it
//! holds each decoded image until a later image's `win_head_dist` lets it go,
//! and rejects anything the real client would choke on or hang over: a
//! reference to an image it no longer (or never) had, a run past either image's
//! end, a skipped or repeated id, too few or too many pixels, trailing bytes.

use std::collections::VecDeque;

use super::lz::{copy_match, grow, read_u32, read_u8};
use super::{checked_pixel_count, flip_rows, ImageError};

const LZ_MAGIC: u32 = 0x2020_5A4C;
const LZ_VERSION: u32 = 0x0001_0001;

/// The client's side of a GLZ dictionary: the images it holds, oldest first.
#[derive(Default, Debug)]
pub struct GlzWindow {
    images: VecDeque<(u64, Vec<u32>)>,
    /// The id the next image must have (ids are consecutive from 0).
    next: u64,
}

/// A decoded GLZ image.
#[derive(Debug, PartialEq, Eq)]
pub struct GlzDecoded {
    pub id: u64,
    pub width: u32,
    pub height: u32,
    /// Top-down `0x00RRGGBB`.
    pub pixels: Vec<u32>,
}

fn read_u64(data: &[u8], pos: &mut usize) -> Result<u64, ImageError> {
    Ok(u64::from(read_u32(data, pos)?) << 32 | u64::from(read_u32(data, pos)?))
}

impl GlzWindow {
    pub fn new() -> GlzWindow {
        GlzWindow::default()
    }

    /// Images and pixels held.
    pub fn held(&self) -> (usize, usize) {
        (
            self.images.len(),
            self.images.iter().map(|(_, p)| p.len()).sum(),
        )
    }

    /// Ids of the images held, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        self.images.iter().map(|(id, _)| *id).collect()
    }

    /// Decodes one `SpiceLZRGBData.data` of a GLZ_RGB image and adds it to the
    /// window. On error the window is unchanged.
    pub fn decode(&mut self, data: &[u8]) -> Result<GlzDecoded, ImageError> {
        let mut pos = 0;
        let magic = read_u32(data, &mut pos)?;
        if magic != LZ_MAGIC {
            return Err(ImageError::BadMagic(magic));
        }
        let version = read_u32(data, &mut pos)?;
        if version != LZ_VERSION {
            return Err(ImageError::BadVersion(version));
        }
        let kind = read_u8(data, &mut pos)?;
        // RGB32 (8) and RGB24 (7) carry the same 3-byte pixels.
        if !matches!(kind & 0x0f, 7 | 8) {
            return Err(ImageError::UnsupportedType(u32::from(kind)));
        }
        let top_down = kind >> 4 != 0;
        let width = read_u32(data, &mut pos)?;
        let height = read_u32(data, &mut pos)?;
        let stride = read_u32(data, &mut pos)?;
        let count = checked_pixel_count(width, height)?;
        if stride < width.saturating_mul(3) {
            return Err(ImageError::BadStride { width, stride });
        }
        let id = read_u64(data, &mut pos)?;
        let head_dist = read_u32(data, &mut pos)?;
        if id != self.next {
            return Err(ImageError::BadImageId {
                got: id,
                expected: self.next,
            });
        }
        let head = id
            .checked_sub(u64::from(head_dist))
            .ok_or(ImageError::BadReference)?;

        let mut out: Vec<u32> = Vec::new();
        while out.len() < count {
            let ctrl = read_u8(data, &mut pos)?;
            if ctrl < 32 {
                let run = usize::from(ctrl) + 1;
                grow(&mut out, run, count)?;
                let bytes = data.get(pos..pos + run * 3).ok_or(ImageError::Truncated)?;
                pos += run * 3;
                out.extend(
                    bytes
                        .chunks_exact(3)
                        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0])),
                );
                continue;
            }
            let mut len = usize::from(ctrl >> 5);
            if len == 7 {
                loop {
                    let b = read_u8(data, &mut pos)?;
                    len += usize::from(b);
                    if len > count {
                        return Err(ImageError::Overflow);
                    }
                    if b != 255 {
                        break;
                    }
                }
            }
            let long = ctrl & 0x10 != 0;
            let mut ofs = usize::from(ctrl & 0x0f) | usize::from(read_u8(data, &mut pos)?) << 4;
            let flags = read_u8(data, &mut pos)?;
            let extra = u32::from(flags >> 6);
            let mut image_dist: u64;
            if long {
                ofs |= usize::from(flags & 0x1f) << 12;
                image_dist = 0;
                for i in 0..extra {
                    image_dist |= u64::from(read_u8(data, &mut pos)?) << (8 * i);
                }
                if flags & 0x20 != 0 {
                    ofs |= usize::from(read_u8(data, &mut pos)?) << 17;
                }
            } else {
                image_dist = u64::from(flags & 0x3f);
                for i in 0..extra {
                    image_dist |= u64::from(read_u8(data, &mut pos)?) << (6 + 8 * i);
                }
            }
            grow(&mut out, len, count)?;
            if image_dist == 0 {
                let dist = ofs + 1;
                if dist > out.len() {
                    return Err(ImageError::BadReference);
                }
                copy_match(&mut out, dist, len);
            } else {
                let ref_id = id
                    .checked_sub(image_dist)
                    .ok_or(ImageError::MissingImage(u64::MAX))?;
                if ref_id < head {
                    // Outside the window this image itself declares.
                    return Err(ImageError::MissingImage(ref_id));
                }
                let src = self
                    .images
                    .iter()
                    .find(|(i, _)| *i == ref_id)
                    .map(|(_, p)| p)
                    .ok_or(ImageError::MissingImage(ref_id))?;
                let run = ofs
                    .checked_add(len)
                    .and_then(|end| src.get(ofs..end))
                    .ok_or(ImageError::BadReference)?;
                out.extend_from_slice(run);
            }
        }
        if pos != data.len() {
            return Err(ImageError::TrailingData(data.len() - pos));
        }
        // The window keeps the pixels in the order they were coded in.
        let mut pixels = out.clone();
        if !top_down {
            flip_rows(&mut pixels, width as usize);
        }
        self.images.push_back((id, out));
        self.next = id + 1;
        while self.images.front().is_some_and(|(i, _)| *i < head) {
            self.images.pop_front();
        }
        Ok(GlzDecoded {
            id,
            width,
            height,
            pixels,
        })
    }
}

/// Inflates a ZLIB_GLZ_RGB payload that must give exactly `size` bytes (its
/// `glz_data_size`); never produces more than that.
pub fn zlib_inflate(data: &[u8], size: usize) -> Result<Vec<u8>, ImageError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(size.min(1 << 24));
    let mut z = flate2::read::ZlibDecoder::new(data).take(size as u64 + 1);
    z.read_to_end(&mut out)
        .map_err(|e| ImageError::Zlib(e.to_string()))?;
    if out.len() != size {
        return Err(ImageError::Zlib(format!(
            "{} bytes inflated, {size} announced",
            out.len()
        )));
    }
    Ok(out)
}
