//! The display channel's server messages and DISPLAY_INIT, as bytes.

use crate::proto::{
    BRUSH_TYPE_SOLID, RES_TYPE_PIXMAP, ROPD_OP_PUT, SURFACE_FLAGS_PRIMARY, SURFACE_FMT_32_XRGB,
};
use crate::wire::{Reader, Writer};
use crate::{BitsCopy, Rect, SolidFill};

pub fn surface_create(w: u32, h: u32) -> Vec<u8> {
    let mut b = Writer::new();
    b.u32(0)
        .u32(w)
        .u32(h)
        .u32(SURFACE_FMT_32_XRGB)
        .u32(SURFACE_FLAGS_PRIMARY);
    b.finish()
}

/// SPICE Rect is {top, left, bottom, right}.
fn rect(w: &mut Writer, r: &Rect) {
    w.i32(r.y as i32)
        .i32(r.x as i32)
        .i32(r.bottom() as i32)
        .i32(r.right() as i32);
}

/// Size of DRAW_COPY's fixed part without clip rects or mask: where the image starts.
pub const DRAW_COPY_FIXED: u32 = 57;

/// DRAW_COPY of `image` (of `dst`'s size) onto `dst` of surface 0.
pub fn draw_copy(dst: &Rect, image: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(DRAW_COPY_FIXED as usize + image.len());
    w.u32(0); // surface 0
    rect(&mut w, dst); // box
    w.u8(0); // clip NONE
    w.u32(DRAW_COPY_FIXED); // src_bitmap: offset of the image in the body
    rect(&mut w, &Rect::full(dst.width, dst.height)); // src_area
    w.u16(ROPD_OP_PUT).u8(0); // rop, scale mode
    w.u8(0).i32(0).i32(0).u32(0); // no mask
    debug_assert_eq!(w.written(), DRAW_COPY_FIXED as usize);
    w.bytes(image);
    w.finish()
}

/// Size of DRAW_TRANSPARENT's fixed part (no clip): where the image starts.
pub const DRAW_TRANSPARENT_FIXED: u32 = 49;

/// DRAW_TRANSPARENT of `image` (of `dst`'s size) onto `dst` of surface 0:
/// its pixels of colour `key` leave the surface as it is.
pub fn draw_transparent(dst: &Rect, image: &[u8], key: u32) -> Vec<u8> {
    let mut w = Writer::with_capacity(DRAW_TRANSPARENT_FIXED as usize + image.len());
    w.u32(0); // surface 0
    rect(&mut w, dst); // box
    w.u8(0); // clip NONE
    w.u32(DRAW_TRANSPARENT_FIXED); // src_bitmap
    rect(&mut w, &Rect::full(dst.width, dst.height)); // src_area
                                                      // src_color and true_color: the same for 32-bit pixels (spice-gtk's
                                                      // canvas compares with true_color).
    w.u32(key & 0x00ff_ffff).u32(key & 0x00ff_ffff);
    debug_assert_eq!(w.written(), DRAW_TRANSPARENT_FIXED as usize);
    w.bytes(image);
    w.finish()
}

/// Size of DRAW_ALPHA_BLEND's fixed part (no clip): where the image starts.
pub const DRAW_ALPHA_BLEND_FIXED: u32 = 43;

/// SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA.
pub const ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA: u8 = 2;

/// DRAW_ALPHA_BLEND of `image` (of `dst`'s size) over `dst` of surface 0
/// with constant opacity `alpha`; `source_alpha`: the image is an RGBA one
/// whose own alpha counts too (spice-gtk blends an image with the alpha its
/// format has; the flag says so, as spice-server sets it).
pub fn draw_alpha_blend(dst: &Rect, image: &[u8], alpha: u8, source_alpha: bool) -> Vec<u8> {
    let mut w = Writer::with_capacity(DRAW_ALPHA_BLEND_FIXED as usize + image.len());
    w.u32(0); // surface 0
    rect(&mut w, dst); // box
    w.u8(0); // clip NONE
    let flags = if source_alpha {
        ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA
    } else {
        0
    };
    w.u8(flags).u8(alpha); // alpha_flags (never DEST_HAS_ALPHA: xRGB surface), alpha
    w.u32(DRAW_ALPHA_BLEND_FIXED); // src_bitmap
    rect(&mut w, &Rect::full(dst.width, dst.height)); // src_area
    debug_assert_eq!(w.written(), DRAW_ALPHA_BLEND_FIXED as usize);
    w.bytes(image);
    w.finish()
}

/// Size of DRAW_COMPOSITE's fixed part (no clip, no mask, no transforms):
/// where the image starts.
pub const DRAW_COMPOSITE_FIXED: u32 = 37;

/// SpiceComposite flags of a plain OVER: operator OVER (pixman's 3), the
/// default filter, no repeat, no mask, no transform.
pub const COMPOSITE_OVER: u32 = 3;

/// DRAW_COMPOSITE of `image` (of `dst`'s size, with alpha) OVER `dst` of
/// surface 0, its top-left pixel on the box's (origins 0).
pub fn draw_composite(dst: &Rect, image: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(DRAW_COMPOSITE_FIXED as usize + image.len());
    w.u32(0); // surface 0
    rect(&mut w, dst); // box
    w.u8(0); // clip NONE
    w.u32(COMPOSITE_OVER); // flags: no mask_bitmap or transforms follow
    w.u32(DRAW_COMPOSITE_FIXED); // src_bitmap
    w.u16(0).u16(0); // src_origin
    w.u16(0).u16(0); // mask_origin
    debug_assert_eq!(w.written(), DRAW_COMPOSITE_FIXED as usize);
    w.bytes(image);
    w.finish()
}

/// DRAW_FILL of `f.rect` on surface 0 with a solid brush, OP_PUT, no clip, no mask.
pub fn draw_fill(f: &SolidFill) -> Vec<u8> {
    let mut w = Writer::with_capacity(41);
    w.u32(0); // surface 0
    rect(&mut w, &f.rect); // box
    w.u8(0); // clip NONE
    w.u8(BRUSH_TYPE_SOLID).u32(f.color & 0x00ff_ffff);
    w.u16(ROPD_OP_PUT);
    w.u8(0).i32(0).i32(0).u32(0); // no mask
    w.finish()
}

/// COPY_BITS of surface 0 onto `b.rect` from the area whose top-left is
/// `src_pos`, no clip.
pub fn draw_copy_bits(b: &BitsCopy) -> Vec<u8> {
    let mut w = Writer::with_capacity(29);
    w.u32(0); // surface 0
    rect(&mut w, &b.rect); // box
    w.u8(0); // clip NONE
    w.i32(b.src_x as i32).i32(b.src_y as i32); // src_pos
    w.finish()
}

/// INVAL_LIST of pixmap cache entries `ids`.
pub fn inval_pixmaps(ids: &[u64]) -> Vec<u8> {
    let mut w = Writer::with_capacity(2 + ids.len() * 9);
    w.u16(ids.len() as u16);
    for id in ids {
        w.u8(RES_TYPE_PIXMAP).u64(*id);
    }
    w.finish()
}

/// DISPLAY_INIT's pixmap cache size in pixels (None if the message is short).
/// The cache id is not used.
pub fn init_cache_size(body: &[u8]) -> Option<i64> {
    let mut r = Reader::new(body);
    r.u8()?;
    r.u64().map(|v| v as i64)
}

/// DISPLAY_INIT's GLZ dictionary id and window size in pixels (None if short).
pub fn init_glz(body: &[u8]) -> Option<(u8, i64)> {
    let mut r = Reader::new(body);
    r.u8()?;
    r.u64()?;
    let id = r.u8()?;
    Some((id, i64::from(r.i32()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_fill_bytes_follow_the_protocol_layout() {
        let f = SolidFill {
            rect: Rect::new(3, 5, 10, 2),
            color: 0xff12_3456,
        };
        let mut expect = Vec::new();
        expect.extend(0u32.to_le_bytes()); // DisplayBase.surface_id
        for v in [5i32, 3, 7, 13] {
            expect.extend(v.to_le_bytes()); // box: top, left, bottom, right
        }
        expect.push(0); // clip type NONE
        expect.push(1); // brush type SOLID
        expect.extend(0x0012_3456u32.to_le_bytes()); // color, xRGB
        expect.extend(8u16.to_le_bytes()); // rop_descriptor OP_PUT
        expect.push(0); // mask flags
        expect.extend([0u8; 8]); // mask pos
        expect.extend(0u32.to_le_bytes()); // mask bitmap: none
        assert_eq!(expect.len(), 41);
        assert_eq!(draw_fill(&f), expect);
    }

    #[test]
    fn copy_bits_bytes_follow_the_protocol_layout() {
        let b = crate::BitsCopy {
            rect: Rect::new(3, 5, 10, 2),
            src_x: 7,
            src_y: 1,
        };
        let mut expect = Vec::new();
        expect.extend(0u32.to_le_bytes()); // surface_id
        for v in [5i32, 3, 7, 13] {
            expect.extend(v.to_le_bytes()); // box: top, left, bottom, right
        }
        expect.push(0); // clip NONE
        expect.extend(7i32.to_le_bytes()); // src_pos.x
        expect.extend(1i32.to_le_bytes()); // src_pos.y
        assert_eq!(draw_copy_bits(&b), expect);
    }
}
