//! Blends (QXL TRANSPARENT and ALPHA_BLEND of a bitmap) reach a compositing
//! client as DRAW_TRANSPARENT / DRAW_ALPHA_BLEND of the source image, and a
//! client without COMPOSITE (spice-html5) as images of the result; both end
//! with the server's picture.

use super::*;
use crate::client::ClientOptions;
use crate::proto::{
    IMAGE_TYPE_BITMAP, IMAGE_TYPE_FROM_CACHE, IMAGE_TYPE_FROM_CACHE_LOSSLESS, IMAGE_TYPE_LZ_RGB,
};
use crate::{BlendMode, Draw, ImageBlend, ImageCopy};

fn blend(s: &mut Frame, rect: Rect, image: &Arc<Frame>, mode: BlendMode) -> Draw {
    let d = Draw::Blend(ImageBlend {
        copy: ImageCopy {
            rect,
            src_x: 0,
            src_y: 0,
            image: image.clone(),
        },
        mode,
    });
    d.paint(s);
    d
}

/// A 32x24 picture where every other 4x4 cell is the colour key.
fn keyed_sprite(key: u32) -> Arc<Frame> {
    let mut f = picture(32, 24, 5);
    for y in 0..24 {
        for x in 0..32 {
            if (x / 4 + y / 4) % 2 == 0 {
                f.pixels[(y * 32 + x) as usize] = key;
            }
        }
    }
    Arc::new(f)
}

#[test]
fn blends_are_forwarded_to_compositing_clients_only() {
    const KEY: u32 = 0x0000_ff00;
    for composite in [true, false] {
        let (server, _) = start(None);
        let mut s = picture(160, 120, 3);
        server.update(&s, &[full(&s)], &[]);
        let opts = ClientOptions {
            composite,
            ..ClientOptions::default()
        };
        let c = TestClient::connect(&server.local_addr(), opts).unwrap();
        wait_surface(&c, &s);
        let copies = c.state().draw_copies;
        let sprite = keyed_sprite(KEY);
        let mut draws = Vec::new();
        for (i, mode) in [
            BlendMode::Transparent(KEY),
            BlendMode::Alpha(0x80),
            BlendMode::Alpha(200),
        ]
        .into_iter()
        .enumerate()
        {
            // Overlapping: each blends over what the one before left.
            let rect = Rect::new(20 + 10 * i as u32, 30 + 6 * i as u32, 32, 24);
            draws.push(blend(&mut s, rect, &sprite, mode));
        }
        server.update(&s, &[], &draws);
        wait_surface(&c, &s);
        let st = c.state();
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        if composite {
            assert_eq!(st.blends, 3);
            assert_eq!(st.draw_copies, copies, "no image of the result");
        } else {
            assert_eq!(st.blends, 0);
            assert!(st.draw_copies > copies, "the result as images");
        }
    }
}

/// A blend over pixels the client has not got yet (a pending rectangle
/// held back by a full ack window) still ends exact: the rectangle's image
/// follows the blend and covers what it blended over stale pixels.
#[test]
fn a_blend_over_stale_pixels_ends_exact() {
    let mut s = picture(160, 120, 3);
    let (server, c) = lossless_behind_slow_link(&s, 4e6);
    let sprite = keyed_sprite(0x00ab_cdef);
    for i in 0..20u32 {
        let under = Rect::new(10 + i * 3, 20, 40, 40);
        for y in under.y..under.bottom() as u32 {
            for x in under.x..under.right() as u32 {
                s.pixels[(y * s.width + x) as usize] = (x * 7 + y * 3 + i * 0x1_0101) & 0xff_ffff;
            }
        }
        let d = blend(
            &mut s,
            Rect::new(20 + i * 2, 30, 32, 24),
            &sprite,
            BlendMode::Alpha(90),
        );
        server.update(&s, &[under], &[d]);
    }
    wait_surface(&c, &s);
    let st = c.state();
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert!(st.blends > 0, "some blends were forwarded");
}

/// A 24x16 premultiplied sprite whose alpha runs from clear to opaque
/// across it, over colours of `picture`.
fn alpha_sprite() -> Arc<Frame> {
    let mut f = picture(24, 16, 9);
    for (i, p) in f.pixels.iter_mut().enumerate() {
        let a = (i as u32 % 24) * 255 / 23;
        let c = |s: u32| display_types::mul_un8((*p >> s) & 0xff, a) << s;
        *p = a << 24 | c(16) | c(8) | c(0);
    }
    Arc::new(f)
}

/// An ALPHA_BLEND whose source has its own alpha reaches a compositing
/// client as DRAW_ALPHA_BLEND with SRC_SURFACE_HAS_ALPHA and an RGBA image
/// (LZ RGBA, or a raw RGBA bitmap where images go raw), cached as such: the
/// sprite's second blend is cached, its third comes from the cache, and a
/// cached black DRAW_COPY of the same words (an all-clear sprite is all
/// zeros too) is never taken for the clear sprite. The client, strict about
/// formats and flags, ends with the server's picture; a client without
/// COMPOSITE gets images of the result.
#[test]
fn source_alpha_blends_carry_their_alpha() {
    for (composite, force_raw) in [(true, false), (true, true), (false, false)] {
        let (server, _) = start_with(None, force_raw);
        let mut s = picture(160, 120, 3);
        server.update(&s, &[full(&s)], &[]);
        let opts = ClientOptions {
            composite,
            ..ClientOptions::default()
        };
        let c = TestClient::connect(&server.local_addr(), opts).unwrap();
        wait_surface(&c, &s);
        let copies = c.state().draw_copies;
        let sprite = alpha_sprite();
        let clear = Arc::new(Frame {
            width: 24,
            height: 16,
            pixels: vec![0; 24 * 16],
        });
        let mut draws = Vec::new();
        for x in [100, 130] {
            let black = Draw::Copy(ImageCopy {
                rect: Rect::new(x, 80, 24, 16),
                src_x: 0,
                src_y: 0,
                image: clear.clone(),
            });
            black.paint(&mut s);
            draws.push(black);
        }
        for (i, alpha) in [0xff, 0x90, 0x40].into_iter().enumerate() {
            let rect = Rect::new(10 + 10 * i as u32, 10 + 4 * i as u32, 24, 16);
            draws.push(blend(&mut s, rect, &sprite, BlendMode::SourceAlpha(alpha)));
        }
        let rect = Rect::new(60, 40, 24, 16);
        draws.push(blend(&mut s, rect, &clear, BlendMode::SourceAlpha(0xff)));
        server.update(&s, &[], &draws);
        wait_surface(&c, &s);
        if composite {
            // The clear sprite changes no pixel: wait for it by count.
            let _ = c.wait(T, |st| st.blends >= 4 || !st.errors.is_empty());
        }
        let st = c.state();
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        if composite {
            assert_eq!(st.blends, 4);
            assert_eq!(st.draw_copies, copies + 2, "only the black copies");
            assert_eq!(st.cache_hits, 1, "the sprite's third blend");
            let sent = &st.image_types[st.image_types.len() - 4..];
            let rgba = if force_raw {
                IMAGE_TYPE_BITMAP
            } else {
                IMAGE_TYPE_LZ_RGB
            };
            let from_cache = matches!(
                sent[2],
                IMAGE_TYPE_FROM_CACHE | IMAGE_TYPE_FROM_CACHE_LOSSLESS
            );
            assert!(sent[..2] == [rgba, rgba] && from_cache, "{sent:?}");
            assert_eq!(sent[3], rgba, "the clear sprite is not the black copy");
        } else {
            assert_eq!(st.blends, 0);
            assert!(st.draw_copies > copies + 2, "the result as images");
        }
    }
}

/// A COMPOSITE OVER of an image with alpha reaches a compositing client as
/// DRAW_COMPOSITE with the RGBA image inside, and one without COMPOSITE as
/// images of the result; both end with the server's picture.
#[test]
fn composites_over_reach_compositing_clients_as_draw_composite() {
    for composite in [true, false] {
        let (server, _) = start(None);
        let mut s = picture(160, 120, 3);
        server.update(&s, &[full(&s)], &[]);
        let opts = ClientOptions {
            composite,
            ..ClientOptions::default()
        };
        let c = TestClient::connect(&server.local_addr(), opts).unwrap();
        wait_surface(&c, &s);
        let copies = c.state().draw_copies;
        let sprite = alpha_sprite();
        let draws: Vec<Draw> = [(5, 5), (15, 9)]
            .into_iter()
            .map(|(x, y)| blend(&mut s, Rect::new(x, y, 24, 16), &sprite, BlendMode::Over))
            .collect();
        server.update(&s, &[], &draws);
        wait_surface(&c, &s);
        let st = c.state();
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        if composite {
            assert_eq!((st.composites, st.blends), (2, 2));
            assert_eq!(st.draw_copies, copies, "no image of the result");
        } else {
            assert_eq!(st.composites, 0);
            assert!(st.draw_copies > copies, "the result as images");
        }
    }
}
