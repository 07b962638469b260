//! SpiceImage encoding for DRAW_COPY: SPICE LZ, or LZ4 (if the client can decode
//! it) where LZ did poorly and LZ4 is smaller, and a raw top-down 32-bit bitmap when
//! compression does not pay or is disabled. An image the caller allows to be lossy
//! (`ImagePolicy::lossy`: photo-like, see `image::photo_like`) may go as JPEG instead,
//! when that is the smallest; one without runs (`image::runs_rare`), on which the
//! lossless coders cannot win, goes JPEG without them unless a GLZ dictionary may
//! find it in earlier images. Images with alpha go as LZ RGBA, or JPEG_ALPHA
//! (`encode_rgba`).
//! With a client's GLZ dictionary (`GlzUse`), GLZ takes SPICE LZ's place: the
//! image may copy from images sent before it; it is added to the dictionary
//! only if it is what goes out, so the ids the client sees have no gaps.
//! Wrapped in zlib (ZLIB_GLZ_RGB) when asked and smaller.
//! The caller picks the id and flags (CACHE_ME for the client's pixmap cache,
//! see `channel::pixmap_cache`), and `from_cache` names a cached image.

use std::sync::Mutex;

use crate::image::{runs_rare, zlib_deflate, GlzDictionary};
use crate::proto::{
    BITMAP_FLAGS_TOP_DOWN, BITMAP_FMT_32BIT, BITMAP_FMT_RGBA, IMAGE_TYPE_BITMAP,
    IMAGE_TYPE_FROM_CACHE, IMAGE_TYPE_FROM_CACHE_LOSSLESS, IMAGE_TYPE_GLZ_RGB, IMAGE_TYPE_JPEG,
    IMAGE_TYPE_JPEG_ALPHA, IMAGE_TYPE_LZ4, IMAGE_TYPE_LZ_RGB, IMAGE_TYPE_ZLIB_GLZ_RGB,
    JPEG_ALPHA_FLAGS_TOP_DOWN,
};
use crate::server::lock;
use crate::wire::Writer;
use crate::{Frame, Rect};

/// An encoder: (width, height, 0x00RRGGBB pixels, stride = width) → payload bytes.
pub type EncodeFn = fn(u32, u32, &[u32]) -> Vec<u8>;

/// The compressed-image hook. The encoders live in `crate::image`.
#[derive(Clone, Copy)]
pub struct Encoders {
    pub lz: Option<EncodeFn>,
    pub lz4: Option<EncodeFn>,
    pub jpeg: Option<EncodeFn>,
}

pub const ENCODERS: Encoders = Encoders {
    lz: Some(crate::image::lz_rgb32),
    lz4: Some(crate::image::lz4_rgb32),
    jpeg: Some(crate::image::jpeg_rgb32),
};

/// Which encodings a given display client may receive.
#[derive(Clone, Copy, Debug)]
pub struct ImagePolicy {
    pub lz4: bool,
    pub force_raw: bool,
    /// This image may be sent lossy (JPEG).
    pub lossy: bool,
}

/// Copies a rectangle's pixels out of the surface (row-major, stride = rect width).
/// The rectangle should already be clipped to the surface. The result always has
/// `r.width * r.height` pixels: whatever lies outside the surface or its pixel
/// buffer (a malformed surface) reads as black instead of panicking.
pub fn extract(surface: &Frame, r: &Rect) -> Vec<u32> {
    let (w, h) = (r.width as usize, r.height as usize);
    let mut out = Vec::with_capacity(w.saturating_mul(h));
    let stride = surface.width as usize;
    let x = r.x as usize;
    // Columns of the rectangle that exist in a row of the surface.
    let inside = stride.saturating_sub(x).min(w);
    for y in (r.y as usize..).take(h) {
        let row = y
            .checked_mul(stride)
            .and_then(|s| s.checked_add(x))
            .and_then(|start| surface.pixels.get(start..start.checked_add(inside)?));
        match row {
            Some(px) => out.extend_from_slice(px),
            None => out.resize(out.len() + inside, 0),
        }
        out.resize(out.len() + (w - inside), 0);
    }
    out
}

/// A SpiceImage's id and descriptor flags (CACHE_ME or none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageTag {
    pub id: u64,
    pub flags: u8,
}

fn descriptor(w: &mut Writer, tag: ImageTag, image_type: u8, width: u32, height: u32) {
    w.u64(tag.id)
        .u8(image_type)
        .u8(tag.flags)
        .u32(width)
        .u32(height);
}

/// A SpiceImage naming image `id` of the client's pixmap cache; `lossless`:
/// FROM_CACHE_LOSSLESS, which the client draws only from a lossless copy.
pub fn from_cache(id: u64, width: u32, height: u32, lossless: bool) -> Vec<u8> {
    let mut w = Writer::with_capacity(18);
    let tag = ImageTag { id, flags: 0 };
    let image_type = if lossless {
        IMAGE_TYPE_FROM_CACHE_LOSSLESS
    } else {
        IMAGE_TYPE_FROM_CACHE
    };
    descriptor(&mut w, tag, image_type, width, height);
    w.finish()
}

/// Whether a SpiceImage made here is lossy (JPEG, JPEG_ALPHA).
pub fn is_lossy(image: &[u8]) -> bool {
    matches!(
        image.get(8),
        Some(&(IMAGE_TYPE_JPEG | IMAGE_TYPE_JPEG_ALPHA))
    )
}

/// A JPEG SpiceImage of the pixels at `quality`, no other coder tried (a
/// video frame, which no lossless coder makes small); None if the encoder
/// refuses the image or it would not be smaller than the raw pixels.
pub fn jpeg_image(
    tag: ImageTag,
    width: u32,
    height: u32,
    pixels: &[u32],
    quality: u8,
) -> Option<Vec<u8>> {
    let data = crate::image::jpeg_rgb32_quality(width, height, pixels, quality);
    if data.is_empty() || data.len() >= pixels.len() * 4 {
        return None;
    }
    let mut w = Writer::with_capacity(22 + data.len());
    descriptor(&mut w, tag, IMAGE_TYPE_JPEG, width, height);
    w.u32(data.len() as u32).bytes(&data);
    Some(w.finish())
}

/// Raw BITMAP: format 32BIT is B,G,R,X bytes, i.e. each 0x00RRGGBB word little-endian.
fn raw(tag: ImageTag, width: u32, height: u32, pixels: &[u32]) -> Vec<u8> {
    raw_as(BITMAP_FMT_32BIT, tag, width, height, pixels)
}

/// A SpiceImage of pixels with alpha (premultiplied 0xAARRGGBB), which
/// spice-gtk decodes into an a8r8g8b8 image and so blends with its alpha:
/// SPICE LZ of type RGBA when it is smaller than the raw pixels, else a raw
/// RGBA bitmap; with `lossy` (the caller found the image photo-like and
/// JPEG in use), JPEG_ALPHA when that is smaller still. No GLZ (our
/// dictionary holds RGB32 images only) and no LZ4.
pub fn encode_rgba(
    tag: ImageTag,
    width: u32,
    height: u32,
    pixels: &[u32],
    policy: ImagePolicy,
) -> Vec<u8> {
    if policy.force_raw {
        return raw_as(BITMAP_FMT_RGBA, tag, width, height, pixels);
    }
    let raw_len = pixels.len() * 4;
    // Without runs LZ RGBA never beats JPEG_ALPHA: not tried first (see
    // `encode_image_glz`).
    let jpeg_first = policy.lossy && runs_rare(width, height, pixels);
    if jpeg_first {
        if let Some(image) = jpeg_alpha_image(tag, width, height, pixels, raw_len) {
            return image;
        }
    }
    let data = crate::image::lz_rgba(width, height, pixels);
    let lz_len = (!data.is_empty() && data.len() < raw_len).then_some(data.len());
    if policy.lossy && !jpeg_first {
        let floor = lz_len.unwrap_or(raw_len);
        if let Some(image) = jpeg_alpha_image(tag, width, height, pixels, floor) {
            return image;
        }
    }
    if lz_len.is_none() {
        return raw_as(BITMAP_FMT_RGBA, tag, width, height, pixels);
    }
    single(tag, IMAGE_TYPE_LZ_RGB, width, height, &data)
}

/// A JPEG_ALPHA SpiceImage of premultiplied 0xAARRGGBB pixels, as
/// spice-server makes one of an RGBA bitmap: `u8 flags` (TOP_DOWN), `u32
/// jpeg_size`, `u32 data_size`, then the JPEG of the colours (quality
/// [`crate::image::JPEG_QUALITY`]) followed by the alpha bytes as an LZ
/// XXXA image, exact. The colours go as they are, premultiplied: the client
/// puts the decoded JPEG and the alpha together into an a8r8g8b8 image, so
/// its blend is the server's but for the JPEG's error. None if an encoder
/// refuses the image or the payload is not below `floor` bytes.
pub fn jpeg_alpha_image(
    tag: ImageTag,
    width: u32,
    height: u32,
    pixels: &[u32],
    floor: usize,
) -> Option<Vec<u8>> {
    let jpeg = crate::image::jpeg_rgb32(width, height, pixels);
    if jpeg.is_empty() || jpeg.len() >= floor {
        return None;
    }
    let alpha = crate::image::lz_xxxa(width, height, pixels);
    let size = jpeg.len() + alpha.len();
    if alpha.is_empty() || size >= floor {
        return None;
    }
    let mut w = Writer::with_capacity(27 + size);
    descriptor(&mut w, tag, IMAGE_TYPE_JPEG_ALPHA, width, height);
    w.u8(JPEG_ALPHA_FLAGS_TOP_DOWN)
        .u32(jpeg.len() as u32)
        .u32(size as u32)
        .bytes(&jpeg)
        .bytes(&alpha);
    Some(w.finish())
}

/// Raw BITMAP of `format` (32BIT or RGBA: B,G,R,X or B,G,R,A bytes).
fn raw_as(format: u8, tag: ImageTag, width: u32, height: u32, pixels: &[u32]) -> Vec<u8> {
    let mut w = Writer::with_capacity(32 + pixels.len() * 4);
    descriptor(&mut w, tag, IMAGE_TYPE_BITMAP, width, height);
    w.u8(format)
        .u8(BITMAP_FLAGS_TOP_DOWN)
        .u32(width)
        .u32(height)
        .u32(width * 4)
        .u32(0); // no palette
    for p in pixels {
        w.u32(*p);
    }
    w.finish()
}

/// GLZ for one image: the client's dictionary, the sending display channel,
/// and whether to try zlib around it.
#[derive(Clone, Copy)]
pub struct GlzUse<'a> {
    pub dict: &'a Mutex<GlzDictionary>,
    pub source: u8,
    pub zlib: bool,
}

/// spice-server's MIN_GLZ_SIZE_FOR_ZLIB: smaller GLZ data is not worth a zlib pass.
const MIN_GLZ_SIZE_FOR_ZLIB: usize = 100;

/// A complete SpiceImage for the given pixels (no GLZ).
#[cfg(test)]
pub fn encode_image(
    tag: ImageTag,
    width: u32,
    height: u32,
    pixels: &[u32],
    policy: ImagePolicy,
    enc: Encoders,
) -> Vec<u8> {
    encode_image_glz(tag, width, height, pixels, policy, enc, None)
}

/// [`encode_image`], with GLZ in SPICE LZ's place when `glz` is given and the
/// image fits its window.
pub fn encode_image_glz(
    tag: ImageTag,
    width: u32,
    height: u32,
    pixels: &[u32],
    policy: ImagePolicy,
    enc: Encoders,
    glz: Option<GlzUse>,
) -> Vec<u8> {
    if policy.force_raw {
        return raw(tag, width, height, pixels);
    }
    // A compressed image is worth sending only if smaller than the raw pixels.
    let raw_len = pixels.len() * 4;
    let mut best: Option<(u8, Vec<u8>)> = None;
    // Held from the GLZ encode to the commit: nothing else may take an id
    // in between.
    let mut dict = glz
        .map(|g| (lock(g.dict), g))
        .filter(|(d, _)| d.fits(width, height));
    // A lossy-allowed image without runs goes JPEG with no lossless coder
    // tried first (as spice-server does), where no GLZ dictionary could find
    // it in earlier images: LZ and LZ4 never beat JPEG on it, and skipping
    // them saves half to two thirds of the encode time (lossy_bench).
    let jpeg_first = policy.lossy && enc.jpeg.is_some() && runs_rare(width, height, pixels);
    if let (true, None, Some(jpeg)) = (jpeg_first, &dict, enc.jpeg) {
        let data = jpeg(width, height, pixels);
        if !data.is_empty() && data.len() < raw_len {
            return single(tag, IMAGE_TYPE_JPEG, width, height, &data);
        }
    }
    let mut glz_image = None;
    if let Some((d, g)) = dict.as_mut() {
        glz_image = d
            .encode(g.source, width, height, pixels)
            .filter(|i| i.data.len() < raw_len);
    } else if let Some(lz) = enc.lz {
        let data = lz(width, height, pixels);
        if !data.is_empty() && data.len() < raw_len {
            best = Some((IMAGE_TYPE_LZ_RGB, data));
        }
    }
    // The smallest so far, GLZ included.
    let glz_len = glz_image.as_ref().map(|i| i.data.len());
    let consider = |best: &mut Option<(u8, Vec<u8>)>, image_type: u8, data: Vec<u8>| {
        // An empty result means the encoder refused the image (e.g. too large).
        let floor = best.as_ref().map(|(_, b)| b.len()).or(glz_len);
        let smaller = floor.is_none_or(|f| data.len() < f);
        if !data.is_empty() && data.len() < raw_len && smaller {
            *best = Some((image_type, data));
        }
    };
    // Measured on screens (spice/examples/image_bench.rs), SPICE LZ is 3-4x
    // smaller than LZ4 on text and flat areas at about the same encode time, so
    // LZ4 is tried only where LZ did poorly (photo-like content, worse than
    // 2:1), sparing a second encode of every ordinary update.
    let lz_did_poorly = best
        .as_ref()
        .map(|(_, b)| b.len())
        .or(glz_len)
        .is_none_or(|l| l * 2 > raw_len);
    // Nor LZ4 where JPEG is sure to be tried on an image without runs.
    if policy.lz4 && lz_did_poorly && !jpeg_first {
        if let Some(lz4) = enc.lz4 {
            consider(&mut best, IMAGE_TYPE_LZ4, lz4(width, height, pixels));
        }
    }
    // Lossy only where it pays: a photo-like image (the caller's test) that
    // the lossless coders did not already make small.
    if policy.lossy {
        if let Some(jpeg) = enc.jpeg {
            consider(&mut best, IMAGE_TYPE_JPEG, jpeg(width, height, pixels));
        }
    }
    if let (Some(mut img), None, Some((d, g))) = (glz_image, &best, dict.as_mut()) {
        // GLZ is the smallest: it goes out, so it joins the dictionary.
        let data = std::mem::take(&mut img.data);
        d.commit(img);
        let zipped = (g.zlib && data.len() >= MIN_GLZ_SIZE_FOR_ZLIB)
            .then(|| zlib_deflate(&data))
            .filter(|z| z.len() < data.len());
        let mut w = Writer::with_capacity(26 + data.len());
        match zipped {
            Some(z) => {
                descriptor(&mut w, tag, IMAGE_TYPE_ZLIB_GLZ_RGB, width, height);
                w.u32(data.len() as u32).u32(z.len() as u32).bytes(&z);
            }
            None => {
                descriptor(&mut w, tag, IMAGE_TYPE_GLZ_RGB, width, height);
                w.u32(data.len() as u32).bytes(&data);
            }
        }
        return w.finish();
    }
    if let Some((image_type, data)) = best {
        return single(tag, image_type, width, height, &data);
    }
    raw(tag, width, height, pixels)
}

/// A SpiceImage whose payload is `u32 data_size` and the data (LZ, LZ4,
/// JPEG).
fn single(tag: ImageTag, image_type: u8, width: u32, height: u32, data: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(22 + data.len());
    descriptor(&mut w, tag, image_type, width, height);
    w.u32(data.len() as u32).bytes(data);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: ImageTag = ImageTag { id: 1, flags: 0 };

    #[test]
    fn extract_never_panics() {
        let s = Frame {
            width: 4,
            height: 3,
            pixels: (0..12).collect(),
        };
        let r = |x, y, width, height| Rect {
            x,
            y,
            width,
            height,
        };
        assert_eq!(extract(&s, &r(1, 1, 2, 2)), vec![5, 6, 9, 10]);
        // Partly outside the surface: the missing pixels are black.
        assert_eq!(extract(&s, &r(3, 2, 2, 2)), vec![11, 0, 0, 0]);
        // A pixel buffer shorter than width * height (a malformed surface).
        let short = Frame {
            width: 4,
            height: 3,
            pixels: (0..6).collect(),
        };
        assert_eq!(extract(&short, &r(0, 0, 4, 3)), {
            let mut v: Vec<u32> = (0..4).collect();
            v.extend([0; 8]);
            v
        });
        assert_eq!(extract(&short, &r(u32::MAX, u32::MAX, 1, 1)), vec![0]);
    }

    #[test]
    fn raw_layout_and_fallback() {
        let px = [0x00112233u32, 0x00445566];
        let img = encode_image(
            ImageTag { id: 9, flags: 0 },
            2,
            1,
            &px,
            ImagePolicy {
                lz4: true,
                force_raw: true,
                lossy: false,
            },
            ENCODERS,
        );
        assert_eq!(img[8], IMAGE_TYPE_BITMAP);
        assert_eq!(img.len(), 18 + 18 + 8);
        assert_eq!(&img[36..40], &[0x33, 0x22, 0x11, 0]);
        // An encoder whose output is not smaller than the raw pixels: raw is sent.
        let bloated = Encoders {
            lz: Some(|w, h, _| vec![0; (w * h * 4) as usize]),
            lz4: None,
            jpeg: None,
        };
        let pol = ImagePolicy {
            lz4: true,
            force_raw: false,
            lossy: false,
        };
        assert_eq!(
            encode_image(TAG, 2, 1, &px, pol, bloated)[8],
            IMAGE_TYPE_BITMAP
        );
        let flat = vec![0x00abcdefu32; 64 * 64];
        let pol = |lz4| ImagePolicy {
            lz4,
            force_raw: false,
            lossy: false,
        };
        // A flat area: SPICE LZ is the smaller, even for an LZ4 client.
        assert_eq!(
            encode_image(TAG, 64, 64, &flat, pol(true), ENCODERS)[8],
            IMAGE_TYPE_LZ_RGB
        );
        assert_eq!(
            encode_image(TAG, 64, 64, &flat, pol(false), ENCODERS)[8],
            IMAGE_TYPE_LZ_RGB
        );
        // LZ4 wins when it is the smaller, and only for a client that takes it;
        // an encoder that refuses (empty output) is never sent.
        // LZ did poorly (over half the raw 16 KiB): LZ4 is tried and wins.
        let lz4_smaller = Encoders {
            lz: Some(|_, _, _| vec![1; 9000]),
            lz4: Some(|_, _, _| vec![2; 50]),
            jpeg: None,
        };
        assert_eq!(
            encode_image(TAG, 64, 64, &flat, pol(true), lz4_smaller)[8],
            IMAGE_TYPE_LZ4
        );
        assert_eq!(
            encode_image(TAG, 64, 64, &flat, pol(false), lz4_smaller)[8],
            IMAGE_TYPE_LZ_RGB
        );
        // LZ did well: LZ4 is not even tried.
        let lz_good = Encoders {
            lz: Some(|_, _, _| vec![1; 100]),
            lz4: Some(|_, _, _| panic!("LZ4 tried although LZ compressed well")),
            jpeg: None,
        };
        assert_eq!(
            encode_image(TAG, 64, 64, &flat, pol(true), lz_good)[8],
            IMAGE_TYPE_LZ_RGB
        );
        let refuses = Encoders {
            lz: Some(|_, _, _| Vec::new()),
            lz4: Some(|_, _, _| Vec::new()),
            jpeg: None,
        };
        assert_eq!(
            encode_image(TAG, 64, 64, &flat, pol(true), refuses)[8],
            IMAGE_TYPE_BITMAP
        );
    }

    #[test]
    fn jpeg_only_when_allowed_and_smallest() {
        let photo = crate::image::samples::photo(128, 96, 1);
        let pol = |lossy| ImagePolicy {
            lz4: true,
            force_raw: false,
            lossy,
        };
        let img = encode_image(TAG, 128, 96, &photo, pol(true), ENCODERS);
        assert_eq!(img[8], IMAGE_TYPE_JPEG);
        assert!(is_lossy(&img));
        // The payload is `u32 size` + a JPEG that fills the rest.
        let size = u32::from_le_bytes(img[18..22].try_into().unwrap()) as usize;
        assert_eq!(img.len(), 22 + size);
        assert_eq!(&img[22..24], &[0xff, 0xd8]);
        let lossless = encode_image(TAG, 128, 96, &photo, pol(false), ENCODERS);
        assert!(!is_lossy(&lossless));
        assert!(img.len() * 2 < lossless.len());
        // Flat content stays lossless even when lossy is allowed: LZ wins.
        let flat = vec![0x0012_3456u32; 128 * 96];
        let img = encode_image(TAG, 128, 96, &flat, pol(true), ENCODERS);
        assert_eq!(img[8], IMAGE_TYPE_LZ_RGB);
        // Cache references.
        assert_eq!(from_cache(5, 1, 1, false)[8], IMAGE_TYPE_FROM_CACHE);
        assert_eq!(from_cache(5, 1, 1, true)[8], IMAGE_TYPE_FROM_CACHE_LOSSLESS);
    }

    /// A lossy-allowed image without runs goes JPEG with no lossless coder
    /// tried (they would panic here); one with runs (flat rows) still tries
    /// them (and takes LZ where that is smaller); one JPEG refuses falls back
    /// to them.
    #[test]
    fn jpeg_goes_first_on_images_without_runs() {
        let pol = ImagePolicy {
            lz4: true,
            force_raw: false,
            lossy: true,
        };
        let no_lossless = Encoders {
            lz: Some(|_, _, _| panic!("LZ tried on an image without runs")),
            lz4: Some(|_, _, _| panic!("LZ4 tried on an image without runs")),
            jpeg: ENCODERS.jpeg,
        };
        let photo = crate::image::samples::photo(128, 96, 3);
        let img = encode_image(TAG, 128, 96, &photo, pol, no_lossless);
        assert_eq!(img[8], IMAGE_TYPE_JPEG);
        // The same bytes as when every coder is tried: JPEG won there too.
        assert_eq!(img, encode_image(TAG, 128, 96, &photo, pol, ENCODERS));
        let rows: Vec<u32> = (0..96u32 * 128).map(|i| (i / 128) * 0x0001_0101).collect();
        assert!(crate::image::photo_like(128, 96, &rows));
        let tiny_lz = Encoders {
            lz: Some(|_, _, _| vec![1; 10]),
            ..ENCODERS
        };
        assert_eq!(
            encode_image(TAG, 128, 96, &rows, pol, tiny_lz)[8],
            IMAGE_TYPE_LZ_RGB
        );
        let refusing = Encoders {
            jpeg: Some(|_, _, _| Vec::new()),
            ..ENCODERS
        };
        assert_eq!(
            encode_image(TAG, 128, 96, &photo, pol, refusing)[8],
            IMAGE_TYPE_LZ_RGB
        );
    }

    /// An RGBA photo allowed to be lossy goes as JPEG_ALPHA (spice-server's
    /// layout), far smaller than LZ RGBA. Decoded independently (the JPEG by
    /// jpeg-decoder, the plane by our LZ decoder) its colours are within
    /// 30 dB and its alpha exact. Not lossy, flat, or raw: no JPEG_ALPHA.
    #[test]
    fn an_rgba_photo_goes_as_jpeg_alpha_with_its_alpha_exact() {
        use crate::image::samples::photo_alpha;
        use crate::image::{decode_lz_rgba, decode_lz_xxxa};
        let pol = |lossy, force_raw| ImagePolicy {
            lz4: true,
            force_raw,
            lossy,
        };
        for (w, h, seed) in [(128u32, 96u32, 1), (64, 48, 2), (333, 77, 3)] {
            let px = photo_alpha(w, h, seed);
            let img = encode_rgba(TAG, w, h, &px, pol(true, false));
            assert_eq!(img[8], IMAGE_TYPE_JPEG_ALPHA, "{w}x{h}");
            assert!(is_lossy(&img));
            assert_eq!(img[18], JPEG_ALPHA_FLAGS_TOP_DOWN);
            let jpeg_size = u32::from_le_bytes(img[19..23].try_into().unwrap()) as usize;
            let size = u32::from_le_bytes(img[23..27].try_into().unwrap()) as usize;
            assert_eq!(img.len(), 27 + size);
            let (jpeg, plane) = img[27..].split_at(jpeg_size);
            let mut d = jpeg_decoder::Decoder::new(jpeg);
            let rgb = d.decode().unwrap();
            let info = d.info().unwrap();
            assert_eq!((u32::from(info.width), u32::from(info.height)), (w, h));
            let colours: Vec<u32> = rgb
                .chunks_exact(3)
                .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
                .collect();
            let q = crate::image::samples::psnr(&colours, &px);
            assert!(q > 30.0, "{w}x{h}: {q:.1} dB");
            let (aw, ah, alpha) = decode_lz_xxxa(plane).unwrap();
            assert_eq!((aw, ah), (w, h));
            assert!(alpha.iter().zip(&px).all(|(a, p)| *a == p & 0xff00_0000));
            // Lossless: LZ RGBA, exact, and several times the size.
            let lossless = encode_rgba(TAG, w, h, &px, pol(false, false));
            assert_eq!(lossless[8], IMAGE_TYPE_LZ_RGB);
            assert_eq!(decode_lz_rgba(&lossless[22..]).unwrap(), (w, h, px.clone()));
            assert!(img.len() * 3 < lossless.len(), "{w}x{h}");
            let raw = encode_rgba(TAG, w, h, &px, pol(true, true));
            assert_eq!(raw[8], IMAGE_TYPE_BITMAP);
        }
        // Flat with alpha: LZ RGBA is smaller than any JPEG.
        let flat = vec![0x8040_2010u32; 128 * 96];
        let img = encode_rgba(TAG, 128, 96, &flat, pol(true, false));
        assert_eq!(img[8], IMAGE_TYPE_LZ_RGB);
        // What the JPEG encoder refuses (a side past 65535) is no JPEG_ALPHA.
        let tall = vec![0xff00_0000u32; 70_000];
        assert!(jpeg_alpha_image(TAG, 1, 70_000, &tall, usize::MAX).is_none());
        // Nor one not below the floor it must beat.
        let px = photo_alpha(64, 48, 4);
        let n = jpeg_alpha_image(TAG, 64, 48, &px, usize::MAX)
            .unwrap()
            .len()
            - 27;
        assert!(jpeg_alpha_image(TAG, 64, 48, &px, n).is_none());
        assert!(jpeg_alpha_image(TAG, 64, 48, &px, n + 1).is_some());
    }

    #[test]
    fn a_video_frame_is_a_jpeg_at_the_quality_asked() {
        let photo = crate::image::samples::photo(128, 96, 2);
        let tag = ImageTag { id: 9, flags: 0 };
        let low = jpeg_image(tag, 128, 96, &photo, 30).unwrap();
        let high = jpeg_image(tag, 128, 96, &photo, 85).unwrap();
        for img in [&low, &high] {
            assert_eq!(u64::from_le_bytes(img[..8].try_into().unwrap()), 9);
            assert!(is_lossy(img));
            let size = u32::from_le_bytes(img[18..22].try_into().unwrap()) as usize;
            assert_eq!(img.len(), 22 + size);
            assert_eq!(&img[22..24], &[0xff, 0xd8]);
        }
        assert!(low.len() < high.len());
        // What the encoder refuses, or what would be no smaller than raw.
        assert!(jpeg_image(tag, 128, 95, &photo, 30).is_none());
        assert!(jpeg_image(tag, 2, 2, &[0x00ff_0000, 0xff, 0xff00, 0], 95).is_none());
    }
}
