//! Blends (QXL TRANSPARENT and ALPHA_BLEND of a bitmap) reach a compositing
//! client as DRAW_TRANSPARENT / DRAW_ALPHA_BLEND of the source image, and a
//! client without COMPOSITE (spice-html5) as images of the result; both end
//! with the server's picture.

use super::*;
use crate::client::ClientOptions;
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
