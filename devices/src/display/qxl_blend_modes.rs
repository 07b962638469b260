//! COMPOSITE's PDF blend-mode operators that pixman computes in its 8-bit
//! combiners (pixman-combine32.c): MULTIPLY, SCREEN, OVERLAY, DARKEN,
//! LIGHTEN, HARD_LIGHT, DIFFERENCE and EXCLUSION, on premultiplied ARGB with
//! pixman's x/255 rounding. MULTIPLY rounds each product (pixman's UN8x4
//! helpers); the others sum a channel's terms in i32, clamp to [0, 255*255]
//! and round once. Guest pixels need not be valid premultiplied colours (a
//! channel above its alpha): the sums stay in i32 range and the clamp
//! bounds them, as in pixman.
//!
//! The modes that divide (COLOR_DODGE, COLOR_BURN, SOFT_LIGHT and the four
//! HSL ones) pixman computes in single-precision floats in a separate
//! pipeline: [`super::qxl_blend_float`].

/// `pixman_op_t` values of the blend modes.
pub mod op {
    pub const MULTIPLY: u8 = 0x30;
    pub const SCREEN: u8 = 0x31;
    pub const OVERLAY: u8 = 0x32;
    pub const DARKEN: u8 = 0x33;
    pub const LIGHTEN: u8 = 0x34;
    pub const HARD_LIGHT: u8 = 0x37;
    pub const DIFFERENCE: u8 = 0x39;
    pub const EXCLUSION: u8 = 0x3a;
}

/// Is `code` one of the blend modes drawn here?
pub(super) fn is_blend_mode(code: u8) -> bool {
    matches!(
        code,
        op::MULTIPLY
            | op::SCREEN
            | op::OVERLAY
            | op::DARKEN
            | op::LIGHTEN
            | op::HARD_LIGHT
            | op::DIFFERENCE
            | op::EXCLUSION
    )
}

/// x/255 rounded as pixman's DIV_ONE_UN8, for x up to 255 * 255.
fn div255(x: u32) -> u32 {
    let t = x + 0x80;
    (t + (t >> 8)) >> 8
}

fn ch(v: u32, i: usize) -> u32 {
    (v >> (i * 8)) & 0xff
}

/// Per channel (blue, green, red, alpha): min(255, x*a/255 + y*b/255),
/// `a` and `b` per channel.
fn mul_add_sat(x: u32, a: [u32; 4], y: u32, b: [u32; 4]) -> u32 {
    (0..4).fold(0, |acc, i| {
        let v = (div255(ch(x, i) * a[i]) + div255(ch(y, i) * b[i])).min(255);
        acc | v << (i * 8)
    })
}

fn splat(v: u32) -> [u32; 4] {
    [v; 4]
}

fn channels(v: u32) -> [u32; 4] {
    [ch(v, 0), ch(v, 1), ch(v, 2), ch(v, 3)]
}

/// The separable blend term as*ad*B(d/ad, s/as), scaled by 255 * 255 (in
/// i32 as pixman computes it: a hostile channel above its alpha goes
/// negative or past the range, and the caller clamps).
fn separable(code: u8, d: i32, ad: i32, s: i32, a_s: i32) -> i32 {
    match code {
        op::SCREEN => s * ad + d * a_s - s * d,
        op::OVERLAY => {
            if 2 * d < ad {
                2 * s * d
            } else {
                a_s * ad - 2 * (ad - d) * (a_s - s)
            }
        }
        op::DARKEN => (ad * s).min(a_s * d),
        op::LIGHTEN => (ad * s).max(a_s * d),
        op::HARD_LIGHT => {
            if 2 * s < a_s {
                2 * s * d
            } else {
                a_s * ad - 2 * (ad - d) * (a_s - s)
            }
        }
        op::DIFFERENCE => (d * a_s - s * ad).abs(),
        // EXCLUSION.
        _ => s * ad + d * a_s - 2 * d * s,
    }
}

/// One channel's result: the destination scaled by the inverse source
/// alpha `ia`, the source by the inverse destination alpha `ida`, plus the
/// blend term, clamped and divided by 255 once.
fn channel(code: u8, d: u32, s: u32, a_s: u32, ia: u32, ida: u32) -> u32 {
    let (d, s, a_s) = (d as i32, s as i32, a_s as i32);
    let r = ia as i32 * d + ida as i32 * s + separable(code, d, 255, s, a_s);
    div255(r.clamp(0, 255 * 255) as u32)
}

/// Blend mode `code` of source `s` (premultiplied ARGB) through mask `m`
/// onto `d` (alpha taken as 0xff: the canvas's xRGB surface), as pixman's
/// unified (`component_alpha` false or no mask) or component-alpha combiner.
pub(super) fn blend(code: u8, s: u32, m: Option<u32>, component_alpha: bool, d: u32) -> u32 {
    let d = d | 0xff00_0000;
    // The destination is opaque: no share of the source shows outside it.
    let ida = 0;
    let (s, m) = match m {
        Some(m) if component_alpha => {
            // The mask scales the source per channel and becomes the
            // per-channel source alpha.
            if m == 0 {
                (0, 0)
            } else if m == u32::MAX {
                (s, (s >> 24) * 0x0101_0101)
            } else {
                let sa = s >> 24;
                (
                    mul_add_sat(s, channels(m), 0, splat(0)),
                    mul_add_sat(m, splat(sa), 0, splat(0)),
                )
            }
        }
        // Unified: the mask's alpha scales the source (clear clears it).
        Some(m) => match m >> 24 {
            0 => (0, 0),
            ma => {
                let s = mul_add_sat(s, splat(ma), 0, splat(0));
                (s, (s >> 24) * 0x0101_0101)
            }
        },
        None => (s, (s >> 24) * 0x0101_0101),
    };
    if code == op::MULTIPLY {
        // d * (1 - as) + s * (1 - ad), each rounded, plus d * s.
        let r = mul_add_sat(d, channels(!m), s, splat(ida));
        let ds = mul_add_sat(d, channels(s), 0, splat(0));
        return mul_add_sat(r, splat(255), ds, splat(255)) & 0x00ff_ffff;
    }
    (0..3).fold(0, |acc, i| {
        let v = channel(code, ch(d, i), ch(s, i), ch(m, i), 255 - ch(m, i), ida);
        acc | v << (i * 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unified, no mask, onto `d`.
    fn b(code: u8, s: u32, d: u32) -> u32 {
        blend(code, s, None, false, d)
    }

    // Expected values are worked by hand from pixman's formulas (the
    // comments) and agree with libpixman 0.42.2 compositing the same pixels
    // onto an x8r8g8b8 destination.

    #[test]
    fn opaque_sources_give_the_blend_term() {
        let (s, d) = (0xff_80_40_ff, 0x00_c0_20_00);
        // MULTIPLY: 0xc0*0x80/255 = 96.4 -> 0x60, 0x20*0x40/255 = 8.03 -> 8.
        assert_eq!(b(op::MULTIPLY, s, d), 0x60_08_00);
        // SCREEN red: (128 + 192) * 255 - 128 * 192 = 57024 -> 224.
        assert_eq!(b(op::SCREEN, s, d), 0xe0_58_ff);
        // OVERLAY red (2d >= ad): 65025 - 2*63*127 = 49023 -> 192; green
        // (2d < ad): 2*64*32 = 4096 -> 16; blue: d = 0 -> 0.
        assert_eq!(b(op::OVERLAY, s, d), 0xc0_10_00);
        assert_eq!(b(op::DARKEN, s, d), 0x80_20_00);
        assert_eq!(b(op::LIGHTEN, s, d), 0xc0_40_ff);
        // HARD_LIGHT blue (2s >= as): 65025 - 2*255*0 -> 255.
        assert_eq!(b(op::HARD_LIGHT, s, d), 0xc0_10_ff);
        assert_eq!(b(op::DIFFERENCE, s, d), 0x40_20_ff);
        // EXCLUSION red: 320*255 - 2*192*128 = 32448 -> 127; green:
        // 96*255 - 2*32*64 = 20384 -> 80; blue: 255*255 -> 255.
        assert_eq!(b(op::EXCLUSION, s, d), 0x7f_50_ff);
        // Edge values: white and black, both ways.
        assert_eq!(b(op::SCREEN, 0xffff_ffff, 0), 0xff_ff_ff);
        assert_eq!(b(op::MULTIPLY, 0xff00_0000, 0xff_ff_ff), 0);
        assert_eq!(b(op::MULTIPLY, 0xffff_ffff, 0x12_34_56), 0x12_34_56);
        assert_eq!(b(op::DIFFERENCE, 0xffff_ffff, 0xff_ff_ff), 0);
        assert_eq!(b(op::EXCLUSION, 0xffff_ffff, 0xff_ff_ff), 0);
        assert_eq!(b(op::EXCLUSION, 0xffff_ffff, 0), 0xff_ff_ff);
        assert_eq!(b(op::DARKEN, 0xff00_0000, 0xff_ff_ff), 0);
        assert_eq!(b(op::LIGHTEN, 0xffff_ffff, 0), 0xff_ff_ff);
    }

    #[test]
    fn translucent_sources_keep_part_of_the_destination() {
        // Alpha 0x80: d * 127 joins the term before the one rounding.
        let (s, d) = (0x80_40_00_80, 0x00_ff_80_00);
        // MULTIPLY rounds each part: red 255*127 -> 127, + 0x40*0xff -> 64.
        assert_eq!(b(op::MULTIPLY, s, d), 0xbf_40_00);
        // SCREEN red: 127*255 + 64*255 + 128*255 - 64*255 = 65025 -> 255;
        // green: 127*128 + 128*128 = 32640 -> 128.
        assert_eq!(b(op::SCREEN, s, d), 0xff_80_80);
        // OVERLAY green: 127*128 + 128*255 - 2*127*128 = 16384 -> 64.
        assert_eq!(b(op::OVERLAY, s, d), 0xff_40_00);
        assert_eq!(b(op::HARD_LIGHT, s, d), 0xff_40_80);
        assert_eq!(b(op::EXCLUSION, s, d), 0xbf_80_80);
        // A clear source leaves the destination, whatever the mode.
        for code in [op::MULTIPLY, op::SCREEN, op::OVERLAY, op::DARKEN] {
            assert_eq!(b(code, 0, 0x12_34_56), 0x12_34_56);
            assert_eq!(b(code, 0, 0xff_ff_ff), 0xff_ff_ff);
        }
        for code in [op::LIGHTEN, op::HARD_LIGHT, op::DIFFERENCE, op::EXCLUSION] {
            assert_eq!(b(code, 0, 0x12_34_56), 0x12_34_56);
        }
    }

    #[test]
    fn masks_unified_and_per_component() {
        // A clear mask clears the source; alpha 0x80 halves it (0x80 grey
        // at alpha 0x80): SCREEN red 127*32 + 128*255 = 36704 -> 144.
        assert_eq!(
            blend(op::SCREEN, 0xffff_ffff, Some(0x00ff_ffff), false, 5),
            5
        );
        let half = blend(
            op::SCREEN,
            0xffff_ffff,
            Some(0x80ff_ffff),
            false,
            0x20_40_60,
        );
        assert_eq!(half, 0x90_a0_b0);
        // Component alpha: red's mask 0 keeps d, green's 0x80 halves.
        let r = blend(
            op::MULTIPLY,
            0xffff_ffff,
            Some(0xff00_80ff),
            true,
            0x80_80_80,
        );
        assert_eq!(r, 0x80_80_80);
        let r = blend(op::SCREEN, 0xc080_4020, Some(0xff40_80c0), true, 0x40_60_80);
        assert_eq!(r, 0x58_74_8c);
        // An all-ones mask: the source's alpha per channel.
        let r = blend(
            op::HARD_LIGHT,
            0xc080_4020,
            Some(u32::MAX),
            true,
            0x40_60_80,
        );
        assert_eq!(r, 0x70_48_40);
    }

    #[test]
    fn hostile_pixels_clamp_as_in_pixman() {
        // Channels above their alpha (not premultiplied): the i32 sums go
        // out of range and are clamped, never wrapped or panicking.
        let s = 0x01ff_ffff;
        assert_eq!(b(op::SCREEN, s, 0xff_ff_ff), 0xff_ff_ff);
        assert_eq!(b(op::OVERLAY, s, 0xff_ff_ff), 0xff_ff_ff);
        assert_eq!(b(op::HARD_LIGHT, s, 0xff_ff_ff), 0xff_ff_ff);
        assert_eq!(b(op::DIFFERENCE, s, 0xff_ff_ff), 0xff_ff_ff);
        assert_eq!(b(op::EXCLUSION, s, 0xff_ff_ff), 0);
        for code in 0x30..=0x3a {
            if !is_blend_mode(code) {
                continue;
            }
            for (s, m) in [
                (0x00ff_00ff, Some(u32::MAX)),
                (0x7fff_ff00, Some(0x01ff_0000)),
                (u32::MAX, None),
            ] {
                for d in [0, 0xff_ff_ff, 0x80_00_ff] {
                    let _ = blend(code, s, m, false, d);
                    let _ = blend(code, s, m, true, d);
                }
            }
        }
    }
}
