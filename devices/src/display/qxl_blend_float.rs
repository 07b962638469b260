//! The PDF blend modes pixman computes in its float pipeline
//! (pixman-combine-float.c) because they divide: COLOR_DODGE, COLOR_BURN,
//! SOFT_LIGHT and the HSL modes. Pixels are widened to f32 channels
//! (x * (1/255)), combined in f32 in the same operation order as pixman (so
//! every rounding agrees), and narrowed back as pixman's float_to_unorm does
//! (clamp to [0, 1], x * 256 truncated, minus x >> 8).
//!
//! f32 arithmetic cannot panic; NaN or infinite values from hostile pixels
//! (divisions guarded as pixman guards them leave none for valid ones) are
//! clamped by the narrowing like any other value.

/// `pixman_op_t` values of these modes.
pub mod op {
    pub const COLOR_DODGE: u8 = 0x35;
    pub const COLOR_BURN: u8 = 0x36;
    pub const SOFT_LIGHT: u8 = 0x38;
    pub const HSL_HUE: u8 = 0x3b;
    pub const HSL_SATURATION: u8 = 0x3c;
    pub const HSL_COLOR: u8 = 0x3d;
    pub const HSL_LUMINOSITY: u8 = 0x3e;
}

pub(super) fn is_float_mode(code: u8) -> bool {
    matches!(
        code,
        op::COLOR_DODGE | op::COLOR_BURN | op::SOFT_LIGHT | op::HSL_HUE..=op::HSL_LUMINOSITY
    )
}

/// pixman's FLOAT_IS_ZERO: within FLT_MIN of zero.
fn is_zero(f: f32) -> bool {
    -f32::MIN_POSITIVE < f && f < f32::MIN_POSITIVE
}

/// A channel widened as pixman_expand_to_float does.
fn widen(v: u32, shift: u32) -> f32 {
    ((v >> shift) & 0xff) as f32 * (1.0f32 / 255.0)
}

/// A channel narrowed as float_to_unorm(f, 8) does (NaN becomes 0, as the
/// truncating conversion of a NaN does in practice).
fn narrow(f: f32) -> u32 {
    let f = if f > 1.0 { 1.0 } else { f };
    let f = if f < 0.0 { 0.0 } else { f };
    let u = (f * 256.0) as u32;
    u - (u >> 8)
}

fn separable(code: u8, sa: f32, s: f32, da: f32, d: f32) -> f32 {
    match code {
        op::COLOR_DODGE => {
            if is_zero(d) {
                0.0
            } else if d * sa >= sa * da - s * da || is_zero(sa - s) {
                sa * da
            } else {
                sa * sa * d / (sa - s)
            }
        }
        op::COLOR_BURN => {
            if d >= da {
                sa * da
            } else if sa * (da - d) >= s * da || is_zero(s) {
                0.0
            } else {
                sa * (da - sa * (da - d) / s)
            }
        }
        // SOFT_LIGHT.
        _ => {
            if 2.0 * s <= sa {
                if is_zero(da) {
                    d * sa
                } else {
                    d * sa - d * (da - d) * (sa - 2.0 * s) / da
                }
            } else if is_zero(da) {
                d * sa
            } else if 4.0 * d <= da {
                d * sa + (2.0 * s - sa) * d * ((16.0 * d / da - 12.0) * d / da + 3.0)
            } else {
                d * sa + ((d * da).sqrt() - d) * (2.0 * s - sa)
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Rgb {
    r: f32,
    g: f32,
    b: f32,
}

fn minf(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

fn maxf(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

impl Rgb {
    fn lum(&self) -> f32 {
        self.r * 0.3 + self.g * 0.59 + self.b * 0.11
    }
    fn min(&self) -> f32 {
        minf(minf(self.r, self.g), self.b)
    }
    fn max(&self) -> f32 {
        maxf(maxf(self.r, self.g), self.b)
    }
    fn sat(&self) -> f32 {
        self.max() - self.min()
    }
    fn scaled(&self, k: f32) -> Rgb {
        Rgb {
            r: self.r * k,
            g: self.g * k,
            b: self.b * k,
        }
    }
    fn map(&mut self, f: impl Fn(f32) -> f32) {
        self.r = f(self.r);
        self.g = f(self.g);
        self.b = f(self.b);
    }

    fn clip(&mut self, a: f32) {
        let l = self.lum();
        let (n, x) = (self.min(), self.max());
        if n < 0.0 {
            let t = l - n;
            if is_zero(t) {
                self.map(|_| 0.0);
            } else {
                self.map(|c| l + (((c - l) * l) / t));
            }
        }
        if x > a {
            let t = x - l;
            if is_zero(t) {
                self.map(|_| a);
            } else {
                self.map(|c| l + ((c - l) * (a - l) / t));
            }
        }
    }

    fn set_lum(&mut self, a: f32, l: f32) {
        let d = l - self.lum();
        self.map(|c| c + d);
        self.clip(a);
    }

    /// The largest channel becomes `sat`, the smallest 0, the middle one
    /// scaled between (ties broken by pixman's comparisons).
    fn set_sat(&mut self, sat: f32) {
        let mut c = [self.r, self.g, self.b];
        let (max, mid, min) = if c[0] > c[1] {
            if c[0] > c[2] {
                if c[1] > c[2] {
                    (0, 1, 2)
                } else {
                    (0, 2, 1)
                }
            } else {
                (2, 0, 1)
            }
        } else if c[0] > c[2] {
            (1, 0, 2)
        } else if c[1] > c[2] {
            (1, 2, 0)
        } else {
            (2, 1, 0)
        };
        let t = c[max] - c[min];
        if is_zero(t) {
            c[mid] = 0.0;
            c[max] = 0.0;
        } else {
            c[mid] = ((c[mid] - c[min]) * sat) / t;
            c[max] = sat;
        }
        c[min] = 0.0;
        (self.r, self.g, self.b) = (c[0], c[1], c[2]);
    }
}

fn non_separable(code: u8, d: Rgb, da: f32, s: Rgb, sa: f32) -> Rgb {
    let mut r;
    match code {
        op::HSL_HUE => {
            r = s.scaled(da);
            r.set_sat(d.sat() * sa);
            r.set_lum(sa * da, d.lum() * sa);
        }
        op::HSL_SATURATION => {
            r = d.scaled(sa);
            r.set_sat(s.sat() * da);
            r.set_lum(sa * da, d.lum() * sa);
        }
        op::HSL_COLOR => {
            r = s.scaled(da);
            r.set_lum(sa * da, d.lum() * sa);
        }
        // HSL_LUMINOSITY.
        _ => {
            r = d.scaled(sa);
            r.set_lum(sa * da, s.lum() * da);
        }
    }
    r
}

/// Float blend mode `code` of `s` (premultiplied ARGB) through mask `m`
/// onto `d` (an xRGB surface: alpha 1), as pixman's unified or
/// component-alpha float combiner.
pub(super) fn blend_float(code: u8, s: u32, m: Option<u32>, component_alpha: bool, d: u32) -> u32 {
    let da = 1.0f32;
    let dc = [widen(d, 16), widen(d, 8), widen(d, 0)];
    let mut sa = widen(s, 24);
    let mut sc = [widen(s, 16), widen(s, 8), widen(s, 0)];
    let out = if code >= op::HSL_HUE {
        if component_alpha && m.is_some() {
            // pixman has no component-alpha HSL combiner.
            return d & 0x00ff_ffff;
        }
        if let Some(m) = m {
            let ma = widen(m, 24);
            sa *= ma;
            // pixman scales green twice and blue not at all here; its
            // output is what the guest's picture is compared with.
            sc[0] *= ma;
            sc[1] *= ma;
            sc[1] *= ma;
        }
        let rgb = |c: [f32; 3]| Rgb {
            r: c[0],
            g: c[1],
            b: c[2],
        };
        let rc = non_separable(code, rgb(dc), da, rgb(sc), sa);
        let rc = [rc.r, rc.g, rc.b];
        [0, 1, 2].map(|i| (1.0 - sa) * dc[i] + (1.0 - da) * sc[i] + rc[i])
    } else {
        // Each channel's own source alpha (the mask's share of it).
        let mut ca = [sa; 3];
        match m {
            Some(m) if component_alpha => {
                let mc = [widen(m, 16), widen(m, 8), widen(m, 0)];
                for i in 0..3 {
                    sc[i] *= mc[i];
                    ca[i] = mc[i] * sa;
                }
            }
            Some(m) => {
                let ma = widen(m, 24);
                sa *= ma;
                for c in sc.iter_mut() {
                    *c *= ma;
                }
                ca = [sa; 3];
            }
            None => {}
        }
        [0, 1, 2].map(|i| {
            let f = (1.0 - ca[i]) * dc[i] + (1.0 - da) * sc[i];
            f + separable(code, ca[i], sc[i], da, dc[i])
        })
    };
    narrow(out[0]) << 16 | narrow(out[1]) << 8 | narrow(out[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(code: u8, s: u32, d: u32) -> u32 {
        blend_float(code, s, None, false, d)
    }

    // Worked by hand in [0, 1] (the comments; the last step is x * 256
    // truncated), and equal to libpixman 0.42.2 compositing the same pixels
    // onto an x8r8g8b8 destination.

    #[test]
    fn dodge_burn_and_soft_light() {
        // DODGE 0.502 on 0.251: d < 1 - s, so d / (1 - s) = 0.5039 -> 129.
        assert_eq!(b(op::COLOR_DODGE, 0xff00_0080, 0x40), 0x81);
        // Edges: a white source saturates; a black destination stays.
        assert_eq!(b(op::COLOR_DODGE, 0xff00_00ff, 0x10), 0xff);
        assert_eq!(b(op::COLOR_DODGE, 0xff00_00ff, 0), 0);
        // Alpha 0.502, s 0.251 on d 0.502: d*sa >= sa - s, so sa*da
        // = 0.502, plus (1 - sa) * d = 0.25: 0.752 -> 192.
        assert_eq!(b(op::COLOR_DODGE, 0x8000_0040, 0x80), 0xc0);
        // BURN: (1 - d) >= s -> 0; else 1 - (1 - d)/s: 1 - 0.2471/0.7529
        // = 0.6719 -> 172.
        assert_eq!(b(op::COLOR_BURN, 0xff00_0080, 0x40), 0);
        assert_eq!(b(op::COLOR_BURN, 0xff00_00c0, 0xc0), 0xac);
        assert_eq!(b(op::COLOR_BURN, 0xff00_0000, 0xff), 0xff);
        assert_eq!(b(op::COLOR_BURN, 0xff00_0000, 0xfe), 0);
        // SOFT_LIGHT, 2s <= 1: d - d(1 - d)(1 - 2s) = 0.3775 -> 96.
        assert_eq!(b(op::SOFT_LIGHT, 0xff00_0040, 0x80), 0x60);
        // 4d <= 1: d + (2s - 1) d ((16d - 12) d + 3) = 0.2363 -> 60.
        assert_eq!(b(op::SOFT_LIGHT, 0xff00_00c0, 0x20), 0x3c);
        // Else d + (sqrt(d) - d)(2s - 1) = 0.6064 -> 155.
        assert_eq!(b(op::SOFT_LIGHT, 0xff00_00c0, 0x80), 0x9b);
        // A clear source leaves the destination exactly.
        for code in [op::COLOR_DODGE, op::COLOR_BURN, op::SOFT_LIGHT] {
            for d in [0, 0x12_34_56, 0xff_ff_ff] {
                assert_eq!(b(code, 0, d), d);
            }
        }
    }

    #[test]
    fn hsl_modes() {
        // LUMINOSITY of grey 0.502 onto red: (1, 0, 0) + (0.502 - 0.3),
        // clipped toward l = 0.502 by 0.498/0.7: green, blue 0.2885 -> 73.
        assert_eq!(b(op::HSL_LUMINOSITY, 0xff80_8080, 0xff_00_00), 0xff_49_49);
        // COLOR of blue onto grey: (0, 0, 1) + 0.392, clipped by
        // 0.498/0.89: red, green 0.4404 -> 112.
        assert_eq!(b(op::HSL_COLOR, 0xff00_00ff, 0x80_80_80), 0x70_70_ff);
        // SATURATION of grey onto red: no saturation, red's luminosity 0.3
        // -> 76.
        assert_eq!(b(op::HSL_SATURATION, 0xff80_8080, 0xff_00_00), 0x4c_4c_4c);
        // HUE of red onto green: (1, 0, 0) at green's luminosity 0.59,
        // clipped by 0.41/0.7: green, blue 0.4143 -> 106.
        assert_eq!(b(op::HSL_HUE, 0xffff_0000, 0x00_ff_00), 0xff_6a_6a);
        // HUE onto grey: grey has no saturation to give the hue.
        assert_eq!(b(op::HSL_HUE, 0xffff_0000, 0x80_80_80), 0x80_80_80);
        // Component alpha: pixman has none for HSL; the destination stays.
        let ca = blend_float(op::HSL_HUE, 0xffff_0000, Some(0x8080_8080), true, 0x12);
        assert_eq!(ca, 0x12);
    }

    #[test]
    fn masks_and_hostile_pixels() {
        // Component alpha: red's mask 0 keeps d, green's 0.502 gives
        // sa*da + (1 - sa) d = 0.752 -> 192, blue's 1 saturates.
        let r = blend_float(
            op::COLOR_DODGE,
            u32::MAX,
            Some(0xff00_80ff),
            true,
            0x80_80_80,
        );
        assert_eq!(r, 0x80_c0_ff);
        // Channels above alpha, zero alphas and full masks: clamped into
        // range by the narrowing, never a panic.
        for code in [0x35, 0x36, 0x38, 0x3b, 0x3c, 0x3d, 0x3e] {
            for (s, m) in [
                (0x00ff_ffff, None),
                (0x01ff_00ff, Some(u32::MAX)),
                (0x7fff_ff00, Some(0x01ff_0000)),
            ] {
                for d in [0, 0xff_ff_ff, 0x80_00_ff] {
                    let _ = blend_float(code, s, m, false, d);
                    let _ = blend_float(code, s, m, true, d);
                }
            }
        }
        assert_eq!(narrow(f32::NAN), 0);
        assert_eq!(narrow(f32::INFINITY), 255);
        assert_eq!(narrow(-1.0), 0);
    }
}
