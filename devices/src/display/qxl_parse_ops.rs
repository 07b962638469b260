//! Parsers for the drawables whose payload is more than a brush and a
//! bitmap: the QMask of fills and copies, ROP3, STROKE (a QXLPath of
//! segments and its line attributes), TEXT (a QXLString of raster glyphs)
//! and COMPOSITE (with its optional pixman transforms), laid out as
//! `qxl_dev.h` packs them and checked as spice-server's red-parse-qxl does.
//!
//! Same rules as [`super::qxl_parse`]: each structure is copied out of guest
//! memory once and decoded from the copy; paths and strings are read whole
//! from their chunk chains (bounded in bytes, a looping chain fails) and then
//! walked in the copy, so a guest changing memory meanwhile cannot make a
//! count disagree with the data it describes.

use super::qxl::QxlRect;
use super::qxl_mem::{offset_addr, QxlMemory};
use super::qxl_parse::{
    parse_image, parse_image_as, read_chunks, read_struct, Bitmap, Brush, Fields, Image, ParseError,
};

type Result<T> = std::result::Result<T, ParseError>;

/// Largest QXLPath (segment headers and points) read: 64 Ki points.
pub const MAX_PATH_BYTES: usize = 512 << 10;
/// Largest QXLString (glyph headers and rasters) read.
pub const MAX_STRING_BYTES: usize = 4 << 20;
/// Largest dash pattern: `style_nseg` is a u8.
const MAX_STYLE: usize = 255;

/// `SPICE_PATH_*` segment flags.
pub mod path_flags {
    pub const BEGIN: u32 = 1 << 0;
    pub const END: u32 = 1 << 1;
    pub const CLOSE: u32 = 1 << 3;
    pub const BEZIER: u32 = 1 << 4;
}

/// `SPICE_LINE_FLAGS_*`.
pub const LINE_FLAGS_START_WITH_GAP: u8 = 1 << 2;
pub const LINE_FLAGS_STYLED: u8 = 1 << 3;
/// `SPICE_STRING_FLAGS_RASTER_*`.
pub const STRING_RASTER_A1: u16 = 1 << 0;
pub const STRING_RASTER_A4: u16 = 1 << 1;
pub const STRING_RASTER_A8: u16 = 1 << 2;
/// `SPICE_MASK_FLAGS_INVERS`.
pub const MASK_INVERS: u8 = 1;

/// `QXLQMask`: only pixels whose mask bit is set are drawn (clear ones with
/// INVERS); the mask's (`x`, `y`) lies on the bbox's top-left corner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QMask {
    pub invert: bool,
    pub x: i32,
    pub y: i32,
    pub bitmap: Bitmap,
}

impl QMask {
    /// Is destination pixel (`x`, `y`) drawn, for a drawable whose bbox
    /// starts at (`left`, `top`)? Pixels outside the mask never are (the
    /// sw canvas inverts only within the mask's rectangle).
    pub fn allows(&self, x: u32, y: u32, left: i32, top: i32) -> bool {
        let mx = i64::from(x) - i64::from(left) + i64::from(self.x);
        let my = i64::from(y) - i64::from(top) + i64::from(self.y);
        let bit = u32::try_from(mx)
            .ok()
            .zip(u32::try_from(my).ok())
            .and_then(|(mx, my)| self.bitmap.bit(mx, my));
        bit.is_some_and(|b| b != self.invert)
    }
}

/// A 17-byte QXLQMask at `f[off..]`; None when it names no bitmap.
pub(super) fn parse_qmask(
    mem: &dyn QxlMemory,
    f: &Fields<'_>,
    off: usize,
) -> Result<Option<QMask>> {
    let addr = f.u64(off + 9);
    if addr == 0 {
        return Ok(None);
    }
    match parse_image_as(mem, addr, true)? {
        Image::Bitmap(bitmap) => Ok(Some(QMask {
            invert: f.u8(off) & MASK_INVERS != 0,
            x: f.i32(off + 1),
            y: f.i32(off + 5),
            bitmap,
        })),
        Image::Surface(_) => Err(ParseError::Bad("surface as a mask")),
    }
}

/// A point in 28.4 fixed point (`QXLPointFix`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointFix {
    pub x: i32,
    pub y: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSeg {
    pub flags: u32,
    pub points: Vec<PointFix>,
}

/// `QXLLineAttr` (width, joins and caps are unused: the canvas strokes
/// cosmetic one-pixel lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineAttr {
    pub flags: u8,
    /// The dash lengths, 28.4, when STYLED.
    pub style: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stroke {
    pub path: Vec<PathSeg>,
    pub attr: LineAttr,
    pub brush: Brush,
    pub fore_mode: u16,
    pub back_mode: u16,
}

/// The QXLPath at `addr`: {u32 data_size, QXLDataChunk} holding
/// {u32 flags, u32 count, QXLPointFix points[count]} segments. As
/// red_get_path, a tail of 8 bytes or less is not a segment; a segment
/// claiming more points than the data holds fails.
pub fn parse_path(mem: &dyn QxlMemory, addr: u64) -> Result<Vec<PathSeg>> {
    let size = u32::from_le_bytes(read_struct::<4>(mem, addr)?) as usize;
    if size > MAX_PATH_BYTES {
        return Err(ParseError::Bad("path larger than allowed"));
    }
    let data = read_chunks(mem, offset_addr(addr, 4)?, Some(size), MAX_PATH_BYTES)?;
    let mut segs = Vec::new();
    let mut rest = &data[..];
    while rest.len() > 8 {
        let f = Fields(rest);
        let (flags, count) = (f.u32(0), f.u32(4) as usize);
        let body = &rest[8..];
        let bytes = count
            .checked_mul(8)
            .filter(|b| *b <= body.len())
            .ok_or(ParseError::Bad("path segment longer than the path"))?;
        let points = body[..bytes]
            .chunks_exact(8)
            .map(|p| {
                let p = Fields(p);
                PointFix {
                    x: p.i32(0),
                    y: p.i32(4),
                }
            })
            .collect();
        segs.push(PathSeg { flags, points });
        rest = &body[bytes..];
    }
    Ok(segs)
}

/// The QXLStroke union at `f[off..]`.
pub(super) fn parse_stroke(mem: &dyn QxlMemory, f: &Fields<'_>, off: usize) -> Result<Stroke> {
    let path = parse_path(mem, f.u64(off))?;
    let flags = f.u8(off + 8);
    let nseg = usize::from(f.u8(off + 11)).min(MAX_STYLE);
    let style = if flags & LINE_FLAGS_STYLED != 0 && nseg > 0 {
        let mut raw = vec![0u8; nseg * 4];
        mem.read(f.u64(off + 20), &mut raw)?;
        raw.chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Stroke {
        path,
        attr: LineAttr { flags, style },
        brush: super::qxl_parse::parse_brush(mem, f, off + 28)?,
        fore_mode: f.u16(off + 48),
        back_mode: f.u16(off + 50),
    })
}

/// One `QXLRasterGlyph`: its box starts at render_pos + glyph_origin; rows
/// of `ceil(width * bpp / 8)` bytes, stored bottom row first as the sw
/// canvas reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glyph {
    pub x: i32,
    pub y: i32,
    pub width: u16,
    pub height: u16,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlyphString {
    /// 1, 4 or 8 bits of alpha per glyph pixel.
    pub bpp: u8,
    pub glyphs: Vec<Glyph>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub string: GlyphString,
    pub back_area: QxlRect,
    pub fore_brush: Brush,
    pub back_brush: Brush,
    pub fore_mode: u16,
    pub back_mode: u16,
}

/// The QXLString at `addr`: {u32 data_size, u16 length, u16 flags,
/// QXLDataChunk} of raster glyphs {QXLPoint render_pos, QXLPoint
/// glyph_origin, u16 width, u16 height, data}. Like red_get_string, the
/// glyphs must fill the data exactly as `length` says.
pub fn parse_string(mem: &dyn QxlMemory, addr: u64) -> Result<GlyphString> {
    let h = read_struct::<8>(mem, addr)?;
    let h = Fields(&h);
    let (size, length, flags) = (h.u32(0) as usize, usize::from(h.u16(4)), h.u16(6));
    let bpp: u8 = if flags & STRING_RASTER_A1 != 0 {
        1
    } else if flags & STRING_RASTER_A4 != 0 {
        4
    } else if flags & STRING_RASTER_A8 != 0 {
        8
    } else {
        return Err(ParseError::Unsupported {
            what: "string flags",
            value: u32::from(flags),
        });
    };
    if size > MAX_STRING_BYTES {
        return Err(ParseError::Bad("string larger than allowed"));
    }
    let data = read_chunks(mem, offset_addr(addr, 8)?, Some(size), MAX_STRING_BYTES)?;
    let mut glyphs = Vec::with_capacity(length.min(data.len() / 20));
    let mut rest = &data[..];
    while !rest.is_empty() {
        if rest.len() < 20 {
            return Err(ParseError::Bad("glyph header past the string"));
        }
        let f = Fields(rest);
        let (width, height) = (f.u16(16), f.u16(18));
        let row = (usize::from(width) * usize::from(bpp)).div_ceil(8);
        let n = row * usize::from(height);
        let body = &rest[20..];
        if n > body.len() {
            return Err(ParseError::Bad("glyph raster past the string"));
        }
        glyphs.push(Glyph {
            x: f.i32(0).wrapping_add(f.i32(8)),
            y: f.i32(4).wrapping_add(f.i32(12)),
            width,
            height,
            data: body[..n].to_vec(),
        });
        rest = &body[n..];
    }
    if glyphs.len() != length {
        return Err(ParseError::Bad("string length disagrees with its glyphs"));
    }
    Ok(GlyphString { bpp, glyphs })
}

/// The QXLText union at `f[off..]`.
pub(super) fn parse_text(mem: &dyn QxlMemory, f: &Fields<'_>, off: usize) -> Result<Text> {
    Ok(Text {
        string: parse_string(mem, f.u64(off))?,
        back_area: f.rect(off + 8),
        fore_brush: super::qxl_parse::parse_brush(mem, f, off + 24)?,
        back_brush: super::qxl_parse::parse_brush(mem, f, off + 44)?,
        fore_mode: f.u16(off + 64),
        back_mode: f.u16(off + 66),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rop3 {
    pub src: Image,
    pub src_area: QxlRect,
    pub brush: Brush,
    pub rop3: u8,
}

/// The QXLRop3 union at `f[off..]`; its mask is at `off + 46`.
pub(super) fn parse_rop3(mem: &dyn QxlMemory, f: &Fields<'_>, off: usize) -> Result<Rop3> {
    Ok(Rop3 {
        src: parse_image(mem, f.u64(off))?,
        src_area: f.rect(off + 8),
        brush: super::qxl_parse::parse_brush(mem, f, off + 24)?,
        rop3: f.u8(off + 44),
    })
}

/// A pixman affine transform, 16.16 fixed (`QXLTransform`).
pub type Transform = [i32; 6];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composite {
    /// Operator [0..8), src filter [8..11), mask filter [11..14), src repeat
    /// [14..16), mask repeat [16..18), component alpha [18].
    pub flags: u32,
    pub src: Image,
    pub src_transform: Option<Transform>,
    pub mask: Option<Image>,
    pub mask_transform: Option<Transform>,
    pub src_origin: (i16, i16),
    pub mask_origin: (i16, i16),
}

impl Composite {
    pub fn op(&self) -> u8 {
        (self.flags & 0xff) as u8
    }
    pub fn src_repeat(&self) -> u8 {
        (self.flags >> 14 & 3) as u8
    }
    pub fn mask_repeat(&self) -> u8 {
        (self.flags >> 16 & 3) as u8
    }
    pub fn component_alpha(&self) -> bool {
        self.flags >> 18 & 1 != 0
    }
}

fn parse_transform(mem: &dyn QxlMemory, addr: u64) -> Result<Option<Transform>> {
    if addr == 0 {
        return Ok(None);
    }
    let b = read_struct::<24>(mem, addr)?;
    let f = Fields(&b);
    Ok(Some(std::array::from_fn(|k| f.i32(k * 4))))
}

/// The QXLComposite union at `f[off..]`.
pub(super) fn parse_composite(
    mem: &dyn QxlMemory,
    f: &Fields<'_>,
    off: usize,
) -> Result<Composite> {
    let mask_addr = f.u64(off + 20);
    let (mask, mask_transform) = if mask_addr == 0 {
        (None, None)
    } else {
        (
            Some(parse_image(mem, mask_addr)?),
            parse_transform(mem, f.u64(off + 28))?,
        )
    };
    Ok(Composite {
        flags: f.u32(off),
        src: parse_image(mem, f.u64(off + 4))?,
        src_transform: parse_transform(mem, f.u64(off + 12))?,
        mask,
        mask_transform,
        src_origin: (f.i16(off + 36), f.i16(off + 38)),
        mask_origin: (f.i16(off + 40), f.i16(off + 42)),
    })
}
