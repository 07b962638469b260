//! More of the `o` mode, below ops.rs's drawables: OPAQUE (a bitmap copied,
//! then its brush combined with it by the ROP descriptor: a pattern brush
//! ANDed, a solid one ORed inverted) and COMPOSITE with each of the fifteen
//! PDF blend modes (multiply to HSL luminosity), a premultiplied source
//! whose alpha runs from 0 to 255 over a gradient. The host compares QEMU's and spicebox's
//! screendumps of the result.

use alloc::vec::Vec;

use super::ops::{bitmap32, solid};
use super::{
    bytes_of_rect, Card, Rect, CMD_DRAW, CMD_RING, IO_FLUSH_SURFACES_ASYNC, IO_NOTIFY_CMD,
};

const DRAW_OPAQUE: u8 = 2;
const DRAW_COMPOSITE: u8 = 14;
const ROPD_INVERS_SRC: u16 = 1;
const ROPD_INVERS_BRUSH: u16 = 1 << 1;
const ROPD_OP_OR: u16 = 1 << 4;
const ROPD_OP_AND: u16 = 1 << 5;
/// The blend modes' pixman_op_t values.
const BLEND_MODES: core::ops::RangeInclusive<u32> = 0x30..=0x3e;

/// QXLOpaque: the whole of `src` onto `bbox`, `brush`, `rop`, no mask.
fn opaque(c: &mut Card, bbox: Rect, src: u64, brush: &[u8], rop: u16) {
    let mut u = Vec::new();
    u.extend_from_slice(&c.phys(src).to_le_bytes());
    u.extend_from_slice(&bytes_of_rect((0, 0, bbox.2 - bbox.0, bbox.3 - bbox.1)));
    u.extend_from_slice(brush);
    u.extend_from_slice(&rop.to_le_bytes());
    u.extend_from_slice(&[0; 18]); // scale mode, mask
    c.draw(DRAW_OPAQUE, bbox, None, &u, "opaque");
}

/// Like `Card::draw`, for a drawable that shows what lies under it: its
/// effect is QXL_EFFECT_BLEND, as the drivers mark composites. (With
/// QXL_EFFECT_OPAQUE spice-server drops the drawables it covers before
/// rendering any.)
fn draw_blend(c: &mut Card, kind: u8, bbox: Rect, u: &[u8], step: &str) {
    let id = c.pushed.len() as u64 + 1;
    let mut d = c.drawable(id, kind, bbox, None, u);
    d[12] = 0; // QXL_EFFECT_BLEND
    let off = c.put(&d);
    c.pushed.push((id, off));
    c.push(CMD_RING, IO_NOTIFY_CMD, off, CMD_DRAW, step);
}

pub(super) fn draw(c: &mut Card) {
    let y = 412;
    let src = bitmap32(c, 8, 64, 32, |x, y| (x * 4) << 16 | (y * 8) << 8 | 0xa0);
    let pat = bitmap32(c, 8, 4, 4, |x, y| {
        if (x + y) % 2 == 0 {
            0x00f0_c030
        } else {
            0x003f_ff8f
        }
    });
    let mut brush = [0u8; 20];
    brush[0] = 2;
    brush[4..12].copy_from_slice(&c.phys(pat).to_le_bytes());
    brush[12..16].copy_from_slice(&1i32.to_le_bytes());
    brush[16..20].copy_from_slice(&2i32.to_le_bytes());
    opaque(c, (16, y, 80, y + 32), src, &brush, ROPD_OP_AND);
    opaque(
        c,
        (88, y, 152, y + 32),
        src,
        &solid(0x0030_0c60),
        ROPD_OP_OR | ROPD_INVERS_BRUSH | ROPD_INVERS_SRC,
    );

    // The blend modes, each over the same gradient destination, in two
    // rows of 28-pixel-high boxes.
    let back = bitmap32(c, 8, 40, 28, |x, y| {
        (255 - x * 6) << 16 | (y * 8) << 8 | (x * 3 + y * 4)
    });
    let argb = bitmap32(c, 9, 40, 28, |x, y| {
        // Alpha 0 at the left edge, 255 at the right; premultiplied.
        let a = x * 255 / 39;
        let (r, g, b) = (255 - y * 8, (x * 6 + y * 2).min(255), 0x80);
        a << 24 | (r * a / 255) << 16 | (g * a / 255) << 8 | (b * a / 255)
    });
    for (i, mode) in BLEND_MODES.enumerate() {
        let x = 164 + 44 * (i as i32 % 8);
        let y = y + 34 * (i as i32 / 8);
        let bbox = (x, y, x + 40, y + 28);
        c.copy(back, (x, y), 40, 28, None, "blend-back");
        let mut u = Vec::new();
        u.extend_from_slice(&mode.to_le_bytes()); // nearest, no repeat
        u.extend_from_slice(&c.phys(argb).to_le_bytes());
        u.extend_from_slice(&[0; 24]); // no transform, no mask
        u.extend_from_slice(&[0; 8]); // origins
        draw_blend(c, DRAW_COMPOSITE, bbox, &u, "blend-mode");
    }
    c.async_io(IO_FLUSH_SURFACES_ASYNC, 0, "ops-blend-flush");
}
