//! Parsers for what a QXL guest puts on its rings: commands, drawables,
//! images (bitmaps in QXLDataChunk chains, palettes, surface references), clip
//! lists, surface commands and cursor commands, laid out as spice-protocol's
//! `qxl_dev.h` packs them.
//!
//! The input is hostile and shared with a running guest: every structure is
//! copied out of guest memory in one read (a [`QxlMemory::read`] of its whole
//! fixed part) and decoded from that copy, so each field is fetched once and a
//! guest rewriting memory meanwhile cannot make two reads disagree. Sizes are
//! bounded before anything is allocated, chunk chains are bounded in length
//! and bytes (a chain that loops ends at the bound), and every failure is a
//! [`ParseError`] naming the problem; nothing here panics.

use super::qxl::QxlRect;
use super::qxl_mem::{offset_addr, MemError, QxlMemory};
use super::qxl_parse_ops::{parse_composite, parse_qmask, parse_rop3, parse_stroke, parse_text};
pub use super::qxl_parse_ops::{Composite, QMask, Rop3, Stroke, Text};
use display_types::{CursorShape, MAX_CURSOR_SIDE};

/// Ring command types (`QXLCmdType`).
pub mod cmd {
    pub const NOP: u32 = 0;
    pub const DRAW: u32 = 1;
    pub const UPDATE: u32 = 2;
    pub const CURSOR: u32 = 3;
    pub const MESSAGE: u32 = 4;
    pub const SURFACE: u32 = 5;
}

/// Drawable types (`QXL_DRAW_*`).
pub mod draw {
    pub const NOP: u8 = 0;
    pub const FILL: u8 = 1;
    pub const OPAQUE: u8 = 2;
    pub const COPY: u8 = 3;
    pub const COPY_BITS: u8 = 4;
    pub const BLEND: u8 = 5;
    pub const BLACKNESS: u8 = 6;
    pub const WHITENESS: u8 = 7;
    pub const INVERS: u8 = 8;
    pub const ROP3: u8 = 9;
    pub const STROKE: u8 = 10;
    pub const TEXT: u8 = 11;
    pub const TRANSPARENT: u8 = 12;
    pub const ALPHA_BLEND: u8 = 13;
    pub const COMPOSITE: u8 = 14;
}

/// `SPICE_BITMAP_FMT_*`.
pub mod bitmap_fmt {
    pub const ONE_BIT_LE: u8 = 1;
    pub const ONE_BIT_BE: u8 = 2;
    pub const FOUR_BIT_LE: u8 = 3;
    pub const FOUR_BIT_BE: u8 = 4;
    pub const EIGHT_BIT: u8 = 5;
    pub const SIXTEEN_BIT: u8 = 6;
    pub const TWENTY_FOUR_BIT: u8 = 7;
    pub const THIRTY_TWO_BIT: u8 = 8;
    pub const RGBA: u8 = 9;
    pub const EIGHT_BIT_A: u8 = 10;
}

pub const BITMAP_DIRECT: u8 = 1;
pub const BITMAP_TOP_DOWN: u8 = 4;
pub const IMAGE_TYPE_BITMAP: u8 = 0;
pub const IMAGE_TYPE_SURFACE: u8 = 104;
pub const CLIP_NONE: u32 = 0;
pub const CLIP_RECTS: u32 = 1;
pub const BRUSH_NONE: u32 = 0;
pub const BRUSH_SOLID: u32 = 1;
pub const BRUSH_PATTERN: u32 = 2;
pub const SURFACE_CMD_CREATE: u8 = 0;
pub const SURFACE_CMD_DESTROY: u8 = 1;
pub const CURSOR_SET: u8 = 0;
pub const CURSOR_MOVE: u8 = 1;
pub const CURSOR_HIDE: u8 = 2;
pub const CURSOR_TRAIL: u8 = 3;
pub const CURSOR_TYPE_ALPHA: u16 = 0;
pub const CURSOR_TYPE_MONO: u16 = 1;
pub const CURSOR_TYPE_COLOR32: u16 = 6;

/// Largest image side accepted (spice-server's canvases stop well before).
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// Largest image payload (bytes of pixel data) read from the guest.
pub const MAX_IMAGE_BYTES: usize = 128 << 20;
/// Longest chunk chain followed; a chain that loops ends here.
pub const MAX_CHUNKS: usize = 1 << 16;
/// Most clip rectangles accepted in one drawable.
pub const MAX_CLIP_RECTS: u32 = 1 << 16;
/// Size of the chunk header {u32 data_size, u64 prev, u64 next}.
const CHUNK_HEADER: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("guest memory: {0}")]
    Mem(#[from] MemError),
    #[error("{0}")]
    Bad(&'static str),
    #[error("unsupported {what} {value}")]
    Unsupported { what: &'static str, value: u32 },
}

type Result<T> = std::result::Result<T, ParseError>;

/// Little-endian fields of one structure copied out of guest memory.
pub(super) struct Fields<'a>(pub(super) &'a [u8]);

impl Fields<'_> {
    pub(super) fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut b = [0u8; N];
        if let Some(s) = self.0.get(off..off + N) {
            b.copy_from_slice(s);
        }
        b
    }
    pub(super) fn u8(&self, off: usize) -> u8 {
        self.bytes::<1>(off)[0]
    }
    pub(super) fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.bytes(off))
    }
    pub(super) fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.bytes(off))
    }
    pub(super) fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes(off))
    }
    pub(super) fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.bytes(off))
    }
    pub(super) fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.bytes(off))
    }
    /// QXLRect: top, left, bottom, right.
    pub(super) fn rect(&self, off: usize) -> QxlRect {
        QxlRect {
            top: self.i32(off),
            left: self.i32(off + 4),
            bottom: self.i32(off + 8),
            right: self.i32(off + 12),
        }
    }
}

pub(super) fn read_struct<const N: usize>(mem: &dyn QxlMemory, addr: u64) -> Result<[u8; N]> {
    let mut b = [0u8; N];
    mem.read(addr, &mut b)?;
    Ok(b)
}

/// One `QXLCommand` taken off a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingCommand {
    pub data: u64,
    pub kind: u32,
}

impl RingCommand {
    pub const SIZE: usize = 16;
    pub fn decode(b: &[u8; 16]) -> Self {
        let f = Fields(b);
        Self {
            data: f.u64(0),
            kind: f.u32(8),
        }
    }
}

/// The release id every command starts with (`QXLReleaseInfo.id`).
pub fn release_id(mem: &dyn QxlMemory, addr: u64) -> Result<u64> {
    Ok(u64::from_le_bytes(read_struct::<8>(mem, addr)?))
}

/// The bytes of a QXLDataChunk chain starting at the chunk at `addr`: exactly
/// `want` bytes (the chain may hold more; an early end is an error), or, with
/// `want` None, everything up to `limit` bytes.
pub fn read_chunks(
    mem: &dyn QxlMemory,
    mut addr: u64,
    want: Option<usize>,
    limit: usize,
) -> Result<Vec<u8>> {
    let cap = want.unwrap_or(limit);
    if cap > limit {
        return Err(ParseError::Bad("chunk data larger than allowed"));
    }
    let mut out = Vec::with_capacity(cap.min(1 << 20));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_CHUNKS {
        if !seen.insert(addr) {
            return Err(ParseError::Bad("chunk chain loops"));
        }
        let h = read_struct::<CHUNK_HEADER>(mem, addr)?;
        let f = Fields(&h);
        let size = f.u32(0) as usize;
        let next = f.u64(12);
        let room = cap - out.len();
        let take = size.min(room);
        if size > room && want.is_none() {
            return Err(ParseError::Bad("chunk chain longer than allowed"));
        }
        if take > 0 {
            let start = out.len();
            out.resize(start + take, 0);
            mem.read(offset_addr(addr, CHUNK_HEADER as u64)?, &mut out[start..])?;
        }
        if out.len() == cap && want.is_some() {
            return Ok(out);
        }
        if next == 0 {
            return match want {
                Some(_) => Err(ParseError::Bad("chunk chain shorter than its data")),
                None => Ok(out),
            };
        }
        addr = next;
    }
    Err(ParseError::Bad("chunk chain too long (loop?)"))
}

/// A bitmap's pixels as the guest described them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    pub format: u8,
    pub width: u32,
    pub height: u32,
    /// Bytes per row in `data`, rows top-down (a bottom-up bitmap is flipped
    /// while it is read).
    pub stride: usize,
    /// 0x00RRGGBB entries for the palette formats.
    pub palette: Vec<u32>,
    pub data: Vec<u8>,
}

/// Bits per pixel of a bitmap format; None for formats we refuse.
pub fn bits_per_pixel(format: u8) -> Option<u32> {
    use bitmap_fmt::*;
    Some(match format {
        ONE_BIT_LE | ONE_BIT_BE => 1,
        FOUR_BIT_LE | FOUR_BIT_BE => 4,
        EIGHT_BIT | EIGHT_BIT_A => 8,
        SIXTEEN_BIT => 16,
        TWENTY_FOUR_BIT => 24,
        THIRTY_TWO_BIT | RGBA => 32,
        _ => return None,
    })
}

impl Bitmap {
    /// Bit (`x`, `y`) of a 1-bit bitmap (a mask); None outside or for
    /// other formats.
    pub fn bit(&self, x: u32, y: u32) -> Option<bool> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let b = *self.data.get(y as usize * self.stride + x as usize / 8)?;
        let bit = match self.format {
            bitmap_fmt::ONE_BIT_LE => x % 8,
            bitmap_fmt::ONE_BIT_BE => 7 - x % 8,
            _ => return None,
        };
        Some(b >> bit & 1 != 0)
    }

    /// Pixel (`x`, `y`) as 0xAARRGGBB (alpha 0xff for formats without one);
    /// None outside the bitmap.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        use bitmap_fmt::*;
        if x >= self.width || y >= self.height {
            return None;
        }
        let row = self.data.get(y as usize * self.stride..)?;
        let x = x as usize;
        let pal = |i: usize| self.palette.get(i).map(|c| c | 0xff00_0000);
        match self.format {
            THIRTY_TWO_BIT => {
                let p = row.get(x * 4..x * 4 + 4)?;
                Some(u32::from_le_bytes([p[0], p[1], p[2], 0xff]))
            }
            RGBA => {
                let p = row.get(x * 4..x * 4 + 4)?;
                Some(u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
            }
            TWENTY_FOUR_BIT => {
                let p = row.get(x * 3..x * 3 + 3)?;
                Some(0xff00_0000 | u32::from(p[2]) << 16 | u32::from(p[1]) << 8 | u32::from(p[0]))
            }
            SIXTEEN_BIT => {
                // x1r5g5b5, each component widened to 8 bits.
                let p = row.get(x * 2..x * 2 + 2)?;
                let v = u32::from(u16::from_le_bytes([p[0], p[1]]));
                let c = |s: u32| ((v >> s) & 0x1f) << 3 | ((v >> s) & 0x1f) >> 2;
                Some(0xff00_0000 | c(10) << 16 | c(5) << 8 | c(0))
            }
            EIGHT_BIT => pal(usize::from(*row.get(x)?)),
            EIGHT_BIT_A => Some(u32::from(*row.get(x)?) << 24),
            FOUR_BIT_LE | FOUR_BIT_BE => {
                let b = *row.get(x / 2)?;
                let high_first = self.format == FOUR_BIT_BE;
                let nib = if x.is_multiple_of(2) == high_first {
                    b >> 4
                } else {
                    b & 0xf
                };
                pal(usize::from(nib))
            }
            ONE_BIT_LE | ONE_BIT_BE => {
                let b = *row.get(x / 8)?;
                let bit = if self.format == ONE_BIT_BE {
                    7 - x % 8
                } else {
                    x % 8
                };
                pal(usize::from(b >> bit & 1))
            }
            _ => None,
        }
    }
}

/// A drawable's source image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    Bitmap(Bitmap),
    /// Another surface's current contents (SPICE_IMAGE_TYPE_SURFACE).
    Surface(u32),
}

fn read_palette(mem: &dyn QxlMemory, addr: u64) -> Result<Vec<u32>> {
    let h = read_struct::<10>(mem, addr)?;
    let n = usize::from(Fields(&h).u16(8));
    if n > 256 {
        return Err(ParseError::Bad("palette larger than 256 entries"));
    }
    let mut raw = vec![0u8; n * 4];
    mem.read(offset_addr(addr, 10)?, &mut raw)?;
    Ok(raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x00ff_ffff)
        .collect())
}

/// QXLImage at `addr`: descriptor {id, type, flags, width, height} and then
/// the bitmap header or the surface id.
pub fn parse_image(mem: &dyn QxlMemory, addr: u64) -> Result<Image> {
    parse_image_as(mem, addr, false)
}

/// As [`parse_image`]; a `mask` (a QMask's bitmap) is a 1-bit bitmap whose
/// bits are used as they are, so it needs no palette.
pub(super) fn parse_image_as(mem: &dyn QxlMemory, addr: u64, mask: bool) -> Result<Image> {
    let b = read_struct::<48>(mem, addr).or_else(|_| {
        read_struct::<22>(mem, addr).map(|s| {
            let mut full = [0u8; 48];
            full[..22].copy_from_slice(&s);
            full
        })
    })?;
    let f = Fields(&b);
    let kind = f.u8(8);
    match kind {
        IMAGE_TYPE_SURFACE => return Ok(Image::Surface(f.u32(18))),
        IMAGE_TYPE_BITMAP => {}
        other => {
            return Err(ParseError::Unsupported {
                what: "image type",
                value: u32::from(other),
            })
        }
    }
    let (format, flags) = (f.u8(18), f.u8(19));
    let (width, height, stride) = (f.u32(20), f.u32(24), f.u32(28) as usize);
    let (palette_addr, data_addr) = (f.u64(32), f.u64(40));
    let bpp = bits_per_pixel(format).ok_or(ParseError::Unsupported {
        what: "bitmap format",
        value: u32::from(format),
    })?;
    if width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(ParseError::Bad("bitmap size out of range"));
    }
    let row = (width as usize * bpp as usize).div_ceil(8);
    if stride < row {
        return Err(ParseError::Bad("bitmap stride shorter than a row"));
    }
    let size = stride
        .checked_mul(height as usize)
        .filter(|s| *s <= MAX_IMAGE_BYTES)
        .ok_or(ParseError::Bad("bitmap too large"))?;
    if mask && bpp != 1 {
        return Err(ParseError::Bad("mask bitmap is not 1-bit"));
    }
    let palette = if bpp <= 8 && format != bitmap_fmt::EIGHT_BIT_A && !mask {
        if palette_addr == 0 {
            return Err(ParseError::Bad("palette bitmap without a palette"));
        }
        read_palette(mem, palette_addr)?
    } else {
        Vec::new()
    };
    let mut data = if flags & BITMAP_DIRECT != 0 {
        let mut d = vec![0u8; size];
        mem.read(data_addr, &mut d)?;
        d
    } else {
        read_chunks(mem, data_addr, Some(size), MAX_IMAGE_BYTES)?
    };
    if flags & BITMAP_TOP_DOWN == 0 {
        // Bottom-up: the first row in memory is the last on screen.
        let rows: Vec<Vec<u8>> = data
            .chunks_exact(stride)
            .rev()
            .map(<[u8]>::to_vec)
            .collect();
        data = rows.concat();
    }
    Ok(Image::Bitmap(Bitmap {
        format,
        width,
        height,
        stride,
        palette,
        data,
    }))
}

/// `QXLBrush`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Brush {
    None,
    /// 0x00RRGGBB (the guest's xRGB).
    Solid(u32),
    Pattern {
        image: Box<Image>,
        x: i32,
        y: i32,
    },
}

/// A 20-byte QXLBrush at `f[off..]`.
pub(super) fn parse_brush(mem: &dyn QxlMemory, f: &Fields<'_>, off: usize) -> Result<Brush> {
    Ok(match f.u32(off) {
        BRUSH_NONE => Brush::None,
        BRUSH_SOLID => Brush::Solid(f.u32(off + 4)),
        BRUSH_PATTERN => Brush::Pattern {
            image: Box::new(parse_image(mem, f.u64(off + 4))?),
            x: f.i32(off + 12),
            y: f.i32(off + 16),
        },
        other => {
            return Err(ParseError::Unsupported {
                what: "brush type",
                value: other,
            })
        }
    })
}

/// What a drawable does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrawOp {
    Nop,
    Fill {
        brush: Brush,
        rop: u16,
    },
    /// COPY and BLEND: `src_area` of `src` onto the bbox.
    Copy {
        src: Image,
        src_area: QxlRect,
        rop: u16,
    },
    /// OPAQUE: `src_area` of `src` copied onto the bbox, then the brush
    /// combined with it by `rop` (the image is the rop's destination).
    Opaque {
        src: Image,
        src_area: QxlRect,
        brush: Brush,
        rop: u16,
    },
    CopyBits {
        src_x: i32,
        src_y: i32,
    },
    Blackness,
    Whiteness,
    Invers,
    Transparent {
        src: Image,
        src_area: QxlRect,
        /// Source pixels of this colour (0x00RRGGBB) are not drawn.
        src_color: u32,
    },
    AlphaBlend {
        src: Image,
        src_area: QxlRect,
        alpha: u8,
        /// SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA: per-pixel alpha too.
        src_has_alpha: bool,
    },
    Rop3(Box<Rop3>),
    Stroke(Box<Stroke>),
    Text(Box<Text>),
    Composite(Box<Composite>),
}

/// `QXLDrawable`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drawable {
    pub surface_id: u32,
    pub effect: u8,
    pub bbox: QxlRect,
    /// None: no clipping beyond the bbox.
    pub clip: Option<Vec<QxlRect>>,
    /// The QMask of FILL, OPAQUE, COPY, BLEND, BLACKNESS, WHITENESS, INVERS
    /// and ROP3.
    pub mask: Option<QMask>,
    pub op: DrawOp,
}

/// Size of QXLDrawable's fixed part before the union, and of the largest
/// union member (QXLText, 68 bytes).
const DRAWABLE_HEAD: usize = 123;
const DRAWABLE_SIZE: usize = DRAWABLE_HEAD + 68;

fn parse_clip(mem: &dyn QxlMemory, kind: u32, data: u64) -> Result<Option<Vec<QxlRect>>> {
    match kind {
        CLIP_NONE => Ok(None),
        CLIP_RECTS => {
            let n = u32::from_le_bytes(read_struct::<4>(mem, data)?);
            if n > MAX_CLIP_RECTS {
                return Err(ParseError::Bad("too many clip rects"));
            }
            let bytes = read_chunks(
                mem,
                offset_addr(data, 4)?,
                Some(n as usize * 16),
                MAX_CLIP_RECTS as usize * 16,
            )?;
            Ok(Some(
                bytes.chunks_exact(16).map(|c| Fields(c).rect(0)).collect(),
            ))
        }
        other => Err(ParseError::Unsupported {
            what: "clip type",
            value: other,
        }),
    }
}

/// The drawable at `addr` (a QXL_CMD_DRAW's data).
pub fn parse_drawable(mem: &dyn QxlMemory, addr: u64) -> Result<Drawable> {
    let b = read_struct::<DRAWABLE_SIZE>(mem, addr)?;
    let f = Fields(&b);
    let (surface_id, effect, kind) = (f.u32(8), f.u8(12), f.u8(13));
    let bbox = f.rect(31);
    let clip = parse_clip(mem, f.u32(47), f.u64(51))?;
    let u = DRAWABLE_HEAD;
    // Where the union member keeps its QMask.
    let mask_at = match kind {
        draw::FILL => Some(u + 22),
        draw::OPAQUE => Some(u + 47),
        draw::COPY | draw::BLEND => Some(u + 27),
        draw::BLACKNESS | draw::WHITENESS | draw::INVERS => Some(u),
        draw::ROP3 => Some(u + 46),
        _ => None,
    };
    let mask = match mask_at {
        Some(off) => parse_qmask(mem, &f, off)?,
        None => None,
    };
    let op = match kind {
        draw::NOP => DrawOp::Nop,
        draw::FILL => DrawOp::Fill {
            brush: parse_brush(mem, &f, u)?,
            rop: f.u16(u + 20),
        },
        draw::COPY | draw::BLEND => DrawOp::Copy {
            src: parse_image(mem, f.u64(u))?,
            src_area: f.rect(u + 8),
            rop: f.u16(u + 24),
        },
        draw::OPAQUE => DrawOp::Opaque {
            src: parse_image(mem, f.u64(u))?,
            src_area: f.rect(u + 8),
            brush: parse_brush(mem, &f, u + 24)?,
            rop: f.u16(u + 44),
        },
        draw::COPY_BITS => DrawOp::CopyBits {
            src_x: f.i32(u),
            src_y: f.i32(u + 4),
        },
        draw::BLACKNESS => DrawOp::Blackness,
        draw::WHITENESS => DrawOp::Whiteness,
        draw::INVERS => DrawOp::Invers,
        draw::TRANSPARENT => DrawOp::Transparent {
            src: parse_image(mem, f.u64(u))?,
            src_area: f.rect(u + 8),
            src_color: f.u32(u + 24) & 0x00ff_ffff,
        },
        draw::ALPHA_BLEND => DrawOp::AlphaBlend {
            alpha: f.u8(u + 2),
            src_has_alpha: f.u16(u) & 2 != 0,
            src: parse_image(mem, f.u64(u + 3))?,
            src_area: f.rect(u + 11),
        },
        draw::ROP3 => DrawOp::Rop3(Box::new(parse_rop3(mem, &f, u)?)),
        draw::STROKE => DrawOp::Stroke(Box::new(parse_stroke(mem, &f, u)?)),
        draw::TEXT => DrawOp::Text(Box::new(parse_text(mem, &f, u)?)),
        draw::COMPOSITE => DrawOp::Composite(Box::new(parse_composite(mem, &f, u)?)),
        other => {
            return Err(ParseError::Unsupported {
                what: "drawable type",
                value: u32::from(other),
            })
        }
    };
    Ok(Drawable {
        surface_id,
        effect,
        bbox,
        clip,
        mask,
        op,
    })
}

/// `QXLSurfaceCmd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SurfaceCmd {
    Create {
        surface_id: u32,
        format: u32,
        width: u32,
        height: u32,
        stride: i32,
        data: u64,
    },
    Destroy {
        surface_id: u32,
    },
}

pub fn parse_surface_cmd(mem: &dyn QxlMemory, addr: u64) -> Result<SurfaceCmd> {
    let b = read_struct::<41>(mem, addr)?;
    let f = Fields(&b);
    let surface_id = f.u32(8);
    match f.u8(12) {
        SURFACE_CMD_CREATE => Ok(SurfaceCmd::Create {
            surface_id,
            format: f.u32(17),
            width: f.u32(21),
            height: f.u32(25),
            stride: f.i32(29),
            data: f.u64(33),
        }),
        SURFACE_CMD_DESTROY => Ok(SurfaceCmd::Destroy { surface_id }),
        other => Err(ParseError::Unsupported {
            what: "surface command",
            value: u32::from(other),
        }),
    }
}

/// `QXLCursorCmd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorCmd {
    Set {
        x: i16,
        y: i16,
        visible: bool,
        shape: CursorShape,
    },
    Move {
        x: i16,
        y: i16,
    },
    Hide,
    /// Pointer trails (a Windows mouse setting): how many trail images and
    /// how often they are drawn.
    Trail {
        length: u16,
        frequency: u16,
    },
}

/// The shape of a QXLCursor at `addr` as straight-alpha ARGB.
pub fn parse_cursor_shape(mem: &dyn QxlMemory, addr: u64) -> Result<CursorShape> {
    let b = read_struct::<22>(mem, addr)?;
    let f = Fields(&b);
    let (kind, width, height) = (f.u16(8), f.u16(10), f.u16(12));
    let (hot_x, hot_y) = (f.u16(14), f.u16(16));
    let data_size = f.u32(18) as usize;
    if width == 0 || height == 0 || width > MAX_CURSOR_SIDE || height > MAX_CURSOR_SIDE {
        return Err(ParseError::Bad("cursor size out of range"));
    }
    let (w, h) = (usize::from(width), usize::from(height));
    let mask_row = w.div_ceil(8);
    let need = match kind {
        CURSOR_TYPE_ALPHA => w * h * 4,
        CURSOR_TYPE_MONO => 2 * mask_row * h,
        CURSOR_TYPE_COLOR32 => w * h * 4 + mask_row * h,
        other => {
            return Err(ParseError::Unsupported {
                what: "cursor type",
                value: u32::from(other),
            })
        }
    };
    if data_size < need {
        return Err(ParseError::Bad("cursor data shorter than its shape"));
    }
    let data = read_chunks(mem, offset_addr(addr, 22)?, Some(need), need)?;
    let bit = |plane: &[u8], x: usize, y: usize| {
        plane
            .get(y * mask_row + x / 8)
            .is_some_and(|b| b >> (7 - x % 8) & 1 != 0)
    };
    let mut pixels = Vec::with_capacity(w * h);
    match kind {
        CURSOR_TYPE_ALPHA => pixels.extend(
            data.chunks_exact(4)
                .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]])),
        ),
        CURSOR_TYPE_MONO => {
            // AND mask then XOR mask: and=1 xor=0 transparent, and=0 gives
            // black or white, and=1 xor=1 (invert) shown as opaque black.
            let (and, xor) = data.split_at(mask_row * h);
            for y in 0..h {
                for x in 0..w {
                    pixels.push(match (bit(and, x, y), bit(xor, x, y)) {
                        (true, false) => 0,
                        (false, true) => 0xffff_ffff,
                        _ => 0xff00_0000,
                    });
                }
            }
        }
        _ => {
            // COLOR32: xRGB pixels, then an AND mask (1 = transparent).
            let (rgb, and) = data.split_at(w * h * 4);
            for y in 0..h {
                for x in 0..w {
                    let i = (y * w + x) * 4;
                    let p = u32::from_le_bytes([rgb[i], rgb[i + 1], rgb[i + 2], 0]);
                    pixels.push(if bit(and, x, y) { 0 } else { p | 0xff00_0000 });
                }
            }
        }
    }
    let shape = CursorShape {
        width,
        height,
        hot_x: hot_x.min(width - 1),
        hot_y: hot_y.min(height - 1),
        pixels,
    };
    Ok(shape)
}

pub fn parse_cursor_cmd(mem: &dyn QxlMemory, addr: u64) -> Result<CursorCmd> {
    let b = read_struct::<22>(mem, addr)?;
    let f = Fields(&b);
    let (x, y) = (f.i16(9), f.i16(11));
    Ok(match f.u8(8) {
        CURSOR_SET => CursorCmd::Set {
            x,
            y,
            visible: f.u8(13) != 0,
            shape: parse_cursor_shape(mem, f.u64(14))?,
        },
        CURSOR_MOVE => CursorCmd::Move { x, y },
        CURSOR_HIDE => CursorCmd::Hide,
        CURSOR_TRAIL => CursorCmd::Trail {
            length: f.u16(9),
            frequency: f.u16(11),
        },
        other => {
            return Err(ParseError::Unsupported {
                what: "cursor command",
                value: u32::from(other),
            })
        }
    })
}
