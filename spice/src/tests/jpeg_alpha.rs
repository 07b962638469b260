//! Lossy blends through the server to the strict test client: under
//! `JpegMode::Always` (or `Auto` behind a slow link) a photo-like ALPHA_BLEND whose image has its own
//! alpha goes as JPEG_ALPHA (colours within a PSNR bound, alpha exact), one
//! of constant opacity as JPEG; TRANSPARENT and COMPOSITE images stay
//! lossless (a colour key must match exactly; spice-server never sends a
//! composite's image lossy; one of an image cached lossy replaces that
//! copy). Under `Never` (or `Auto` on a fast link) all is exact. And the client's
//! JPEG_ALPHA decoder refuses every malformed image without panicking.

use super::jpeg::psnr;
use super::*;
use crate::channel::display_wire::draw_alpha_blend;
use crate::client::decode::{decode, CopyImage, ServerMsg};
use crate::codec::{jpeg_alpha_image, ImageTag};
use crate::image::samples::{photo, photo_alpha};
use crate::proto::{
    channel as ch, display_msg, IMAGE_TYPE_FROM_CACHE, IMAGE_TYPE_GLZ_RGB, IMAGE_TYPE_JPEG,
    IMAGE_TYPE_JPEG_ALPHA, IMAGE_TYPE_LZ_RGB, IMAGE_TYPE_ZLIB_GLZ_RGB,
};
use crate::{BlendMode, Draw, ImageBlend, ImageCopy, JpegMode};

const W: u32 = 320;
const H: u32 = 200;
const SIDE: (u32, u32) = (96, 64);

fn blend(s: &mut Frame, x: u32, y: u32, image: &Arc<Frame>, mode: BlendMode) -> Draw {
    let d = Draw::Blend(ImageBlend {
        copy: ImageCopy {
            rect: Rect::new(x, y, SIDE.0, SIDE.1),
            src_x: 0,
            src_y: 0,
            image: image.clone(),
        },
        mode,
    });
    d.paint(s);
    d
}

#[test]
fn photo_like_alpha_blends_go_jpeg_alpha_when_jpeg_is_in_use() {
    let (sw, sh) = SIDE;
    let rgba = Arc::new(Frame {
        width: sw,
        height: sh,
        pixels: photo_alpha(sw, sh, 5),
    });
    let rgb = Arc::new(Frame {
        width: sw,
        height: sh,
        pixels: photo(sw, sh, 6),
    });
    // Lossy where JPEG is in use: the two source-alpha blends (the second
    // of the same image, cached) and the constant-opacity one, top row.
    let lossy_box = |x: u32, y: u32| y < sh && x % 100 < sw && x < 296;
    // Auto: lossy only to a client behind a slow link (the test client's
    // simulated 2 Mbit/s, which the session's net test at connect measures).
    let cases = [
        (JpegMode::Always, None, true),
        (JpegMode::Auto, Some(2e6), true),
        (JpegMode::Auto, None, false),
        (JpegMode::Never, None, false),
    ];
    for (mode, link_bps, lossy) in cases {
        let rec = Arc::new(Recorder::default());
        let config = Config {
            jpeg: mode,
            ..config(None)
        };
        let server = SpiceServer::start(config, ports(&rec)).unwrap();
        let mut s = Frame {
            width: W,
            height: H,
            pixels: vec![0x00ee_eeee; (W * H) as usize],
        };
        server.update(&s, &[full(&s)], &[]);
        let opts = crate::client::ClientOptions {
            link_bps,
            ..crate::client::ClientOptions::default()
        };
        let c = TestClient::connect(&server.local_addr(), opts).unwrap();
        wait_surface(&c, &s);
        // The session's net test (on MAIN) has reached the display.
        super::jpeg::display_estimate(&server);
        let draws = vec![
            blend(&mut s, 0, 0, &rgba, BlendMode::SourceAlpha(0xff)),
            blend(&mut s, 100, 0, &rgba, BlendMode::SourceAlpha(0x90)),
            blend(&mut s, 200, 0, &rgb, BlendMode::Alpha(0x80)),
            blend(&mut s, 0, 100, &rgb, BlendMode::Transparent(0x00ff_00ff)),
            blend(&mut s, 100, 100, &rgba, BlendMode::Over),
        ];
        server.update(&s, &[], &draws);
        c.wait(T, |st| st.blends >= 5 || !st.errors.is_empty())
            .unwrap();
        let st = c.state();
        assert!(st.errors.is_empty(), "{mode:?}: {:?}", st.errors);
        let got = &st.surface.as_ref().unwrap().pixels;
        let sent = &st.image_types[st.image_types.len() - 5..];
        let outside = |x, y| !lossy_box(x, y);
        assert_eq!(psnr(got, &s.pixels, W, outside), f64::INFINITY, "{mode:?}");
        if lossy {
            assert_eq!(
                sent[..3],
                [
                    IMAGE_TYPE_JPEG_ALPHA,
                    IMAGE_TYPE_JPEG_ALPHA,
                    IMAGE_TYPE_JPEG
                ],
                "{mode:?}"
            );
            // The lossless ones: the TRANSPARENT's GLZ (AutoGlz; zlib-wrapped
            // on a slow link), the COMPOSITE's LZ RGBA.
            let glz = [IMAGE_TYPE_GLZ_RGB, IMAGE_TYPE_ZLIB_GLZ_RGB];
            assert!(glz.contains(&sent[3]), "{mode:?}: {sent:?}");
            assert_eq!(sent[4], IMAGE_TYPE_LZ_RGB, "{mode:?}");
            let q = psnr(got, &s.pixels, W, lossy_box);
            assert!(q > 30.0 && q.is_finite(), "lossy blends at {q:.1} dB");
            let codecs = &super::jpeg::display_stats(&server).codecs;
            assert!(codecs.contains(&("jpeg-alpha", 2)), "{codecs:?}");
            // The second source-alpha blend cached its JPEG_ALPHA; the
            // composite of the same pixels must be exact, so it replaced
            // that lossy copy with its lossless one.
            assert_eq!(st.cache_replaces, 1);
            assert!(st.lossy_pixmaps.is_empty());
        } else {
            assert_eq!(*got, s.pixels);
            // The composite's image comes from the cache.
            let lossless = [IMAGE_TYPE_LZ_RGB, IMAGE_TYPE_GLZ_RGB, IMAGE_TYPE_FROM_CACHE];
            assert!(!st.image_types.contains(&IMAGE_TYPE_JPEG_ALPHA));
            assert!(sent.iter().all(|t| lossless.contains(t)), "{sent:?}");
        }
    }
}

/// A DRAW_ALPHA_BLEND (source alpha) of `image`, as the server sends it.
fn alpha_blend_msg(image: &[u8]) -> Vec<u8> {
    draw_alpha_blend(&Rect::new(4, 4, 64, 48), image, 0xff, true)
}

/// Where the image starts in [`alpha_blend_msg`], and JPEG_ALPHA's fields.
const IMG: usize = crate::channel::display_wire::DRAW_ALPHA_BLEND_FIXED as usize;
const FLAGS: usize = IMG + 18;
const JPEG_SIZE: usize = FLAGS + 1;
const DATA_SIZE: usize = JPEG_SIZE + 4;
const DATA: usize = DATA_SIZE + 4;

fn put_u32(m: &mut [u8], at: usize, v: u32) {
    m[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn the_client_decodes_jpeg_alpha_strictly() {
    let px = photo_alpha(64, 48, 7);
    let tag = ImageTag { id: 3, flags: 0 };
    let image = jpeg_alpha_image(tag, 64, 48, &px, usize::MAX).unwrap();
    let good = alpha_blend_msg(&image);
    let ok = |m: &[u8]| decode(ch::DISPLAY, display_msg::DRAW_ALPHA_BLEND, m);
    match ok(&good).unwrap() {
        ServerMsg::DrawCopy {
            image:
                CopyImage::Pixels {
                    pixels,
                    lossy: true,
                    alpha: true,
                    ..
                },
            image_type: IMAGE_TYPE_JPEG_ALPHA,
            blend: Some(BlendMode::SourceAlpha(0xff)),
            ..
        } => assert!(pixels.iter().zip(&px).all(|(g, w)| g >> 24 == w >> 24)),
        m => panic!("{m:?}"),
    }
    // Every truncation, and a byte too many.
    for n in IMG..good.len() {
        assert!(ok(&good[..n]).is_err(), "{n} of {} bytes", good.len());
    }
    let mut long = good.clone();
    long.push(0);
    assert!(ok(&long).is_err());
    let jpeg_size = u32::from_le_bytes(good[JPEG_SIZE..DATA_SIZE].try_into().unwrap());
    let size = u32::from_le_bytes(good[DATA_SIZE..DATA].try_into().unwrap());
    let bad = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut m = good.clone();
        f(&mut m);
        ok(&m)
    };
    // Bottom-up or unknown flags; a split past the data or inside either part.
    assert!(bad(&|m| m[FLAGS] = 0).is_err());
    assert!(bad(&|m| m[FLAGS] = 3).is_err());
    assert!(bad(&|m| put_u32(m, JPEG_SIZE, size + 1)).is_err());
    assert!(bad(&|m| put_u32(m, JPEG_SIZE, jpeg_size - 1)).is_err());
    assert!(bad(&|m| put_u32(m, JPEG_SIZE, jpeg_size + 1)).is_err());
    assert!(bad(&|m| put_u32(m, DATA_SIZE, u32::MAX)).is_err());
    // The plane: bottom-up, another LZ type, another size.
    let plane = DATA + jpeg_size as usize;
    assert!(bad(&|m| m[plane + 27] = 0).is_err());
    assert!(bad(&|m| m[plane + 11] = 9).is_err());
    assert!(bad(&|m| m[plane + 15] += 1).is_err());
    // The JPEG of another size than the descriptor's.
    let other = jpeg_alpha_image(tag, 48, 64, &photo_alpha(48, 64, 7), usize::MAX).unwrap();
    let mut m = alpha_blend_msg(&other);
    m[IMG + 10..IMG + 18].copy_from_slice(&[64, 0, 0, 0, 48, 0, 0, 0]);
    assert!(ok(&m).is_err());
    // A lossless replacement that is lossy; JPEG_ALPHA where no source alpha is.
    assert!(bad(&|m| m[IMG + 9] = crate::proto::IMAGE_FLAGS_CACHE_REPLACE_ME).is_err());
    assert!(bad(&|m| m[5 * 4 + 1] = 0).is_err());
    let copy = crate::channel::display_wire::draw_copy(&Rect::new(4, 4, 64, 48), &image);
    assert!(decode(ch::DISPLAY, display_msg::DRAW_COPY, &copy).is_err());
    // Any byte changed anywhere: an error or a picture, never a panic.
    for i in IMG..good.len() {
        for v in [0u8, 0x55, 0xff] {
            let _ = bad(&|m| m[i] = v);
        }
    }
}
