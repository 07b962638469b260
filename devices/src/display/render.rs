//! Turning VGA/VBE state into XRGB8888 pixels.
//!
//! Geometry follows QEMU's `vga_draw_text`/`vga_draw_graphic` so that a guest sees
//! the same picture as under QEMU: text cells 9 (SR1 bit 0 clear), 8 or 16 pixels
//! wide; mode 13h as 640x400 (pixels doubled both ways by the CRTC settings);
//! planar modes from the four planes; VBE modes straight from the framebuffer.

use std::ops::Range;

use super::fb::FrameMemory;
use super::vbe::VbeGeometry;
use super::vga::{
    Vga, AR_COLOR_SELECT, AR_MODE, GR_MISC, GR_MODE, SR_CHAR_MAP, SR_CLOCK, VGA_MEM_SIZE,
};

/// What the registers currently ask the monitor to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisplayMode {
    /// Screen blanked (attribute controller palette access, bad geometry).
    Off,
    Text {
        cols: u32,
        rows: u32,
    },
    /// `width`/`height` are output pixels; `stride` is bytes per scanline of the
    /// source (plane memory for VGA modes, the framebuffer for VBE). `bpp` is 2,
    /// 4 or 8 for VGA modes, 8/15/16/24/32 for VBE.
    Graphics {
        width: u32,
        height: u32,
        bpp: u32,
        stride: u32,
    },
}

pub use display_types::Frame;

mod graphics;
pub use graphics::render_vga_dirty_lines;
use graphics::render_vga_graphics;

/// QEMU refuses text screens beyond this many cells; so do we.
const MAX_TEXT_CELLS: u32 = 160 * 100;

/// 6-bit DAC component to 8 bits as QEMU converts it (the low bit fills the
/// two new ones: 0x2A → 0xA8, 0x15 → 0x57, 0x3F → 0xFF), so both show the
/// same pixels. (A real DAC is analog; replicating the top bits would give
/// 0xAA and 0x55.)
fn dac6(v: u8) -> u32 {
    let v = u32::from(v & 0x3f);
    let b = v & 1;
    (v << 2) | (b << 1) | b
}

fn rgb(r: u32, g: u32, b: u32) -> u32 {
    (r << 16) | (g << 8) | b
}

fn dac_color(vga: &Vga, index: u8) -> u32 {
    let [r, g, b] = vga.dac_entry(index);
    rgb(dac6(r), dac6(g), dac6(b))
}

/// The 16 attribute-controller colours through the DAC (AR14 supplies the
/// high index bits, four of them when AR10 bit 7 asks for it).
fn palette16(vga: &Vga) -> [u32; 16] {
    let mut pal = [0; 16];
    let sel = vga.ar[AR_COLOR_SELECT];
    for (i, p) in pal.iter_mut().enumerate() {
        let v = vga.ar[i];
        let index = if vga.ar[AR_MODE] & 0x80 != 0 {
            ((sel & 0x0f) << 4) | (v & 0x0f)
        } else {
            ((sel & 0x0c) << 4) | (v & 0x3f)
        };
        *p = dac_color(vga, index);
    }
    pal
}

fn palette256(vga: &Vga) -> [u32; 256] {
    let mut pal = [0; 256];
    let eight = vga.vbe.dac_8bit();
    for (i, p) in pal.iter_mut().enumerate() {
        *p = if eight {
            let [r, g, b] = vga.dac_entry(i as u8);
            rgb(r.into(), g.into(), b.into())
        } else {
            dac_color(vga, i as u8)
        };
    }
    pal
}

fn vram_byte(vga: &Vga, addr: usize) -> u8 {
    vga.vram[addr & (VGA_MEM_SIZE - 1)]
}

fn vertical_display_end(vga: &Vga) -> u32 {
    let cr = &vga.cr;
    (u32::from(cr[0x12]) | (u32::from(cr[0x07] & 0x02) << 7) | (u32::from(cr[0x07] & 0x40) << 3))
        + 1
}

fn start_address(vga: &Vga) -> usize {
    (usize::from(vga.cr[0x0c]) << 8 | usize::from(vga.cr[0x0d])) * 4
}

fn line_offset(vga: &Vga) -> usize {
    usize::from(vga.cr[0x13]) << 3
}

fn line_compare(vga: &Vga) -> u32 {
    let cr = &vga.cr;
    u32::from(cr[0x18]) | (u32::from(cr[0x07] & 0x10) << 4) | (u32::from(cr[0x09] & 0x40) << 3)
}

struct TextGeometry {
    cols: u32,
    rows: u32,
    cell_w: u32,
    cell_h: u32,
}

fn text_geometry(vga: &Vga) -> Option<TextGeometry> {
    let cell_h = u32::from(vga.cr[0x09] & 0x1f) + 1;
    let cell_w = if vga.sr[SR_CLOCK] & 0x08 != 0 {
        16
    } else if vga.sr[SR_CLOCK] & 0x01 != 0 {
        8
    } else {
        9
    };
    let cols = u32::from(vga.cr[0x01]) + 1;
    let rows = vertical_display_end(vga) / cell_h;
    let cells = cols * rows;
    (cells > 1 && cells <= MAX_TEXT_CELLS).then_some(TextGeometry {
        cols,
        rows,
        cell_w,
        cell_h,
    })
}

struct GraphicsGeometry {
    /// Pixels the CRTC fetches per line before horizontal doubling.
    width: u32,
    out_width: u32,
    height: u32,
    shift: u8,
}

fn vga_graphics_geometry(vga: &Vga) -> GraphicsGeometry {
    let shift = (vga.gr[GR_MODE] >> 5) & 3;
    let width = (u32::from(vga.cr[0x01]) + 1) * 8;
    let doubled = shift <= 1 && vga.sr[SR_CLOCK] & 0x08 != 0;
    GraphicsGeometry {
        width,
        out_width: if doubled { width * 2 } else { width },
        height: vertical_display_end(vga),
        shift,
    }
}

/// The registers decoded once, with what the matching renderer needs.
enum Decoded {
    Off,
    Text(TextGeometry),
    Vbe(VbeGeometry),
    VgaGraphics(GraphicsGeometry),
}

fn decode(vga: &Vga) -> Decoded {
    // AR index bit 5 clear hands the palette to the CPU and blanks the screen.
    if vga.ar_index & 0x20 == 0 {
        return Decoded::Off;
    }
    if let Some(g) = vga.vbe.geometry() {
        return Decoded::Vbe(g);
    }
    if vga.gr[GR_MISC] & 0x01 == 0 {
        return text_geometry(vga).map_or(Decoded::Off, Decoded::Text);
    }
    Decoded::VgaGraphics(vga_graphics_geometry(vga))
}

/// The VBE scanout geometry when a VBE mode is on screen (the picture comes
/// straight from the framebuffer), else `None`.
pub fn vbe_scanout(vga: &Vga) -> Option<VbeGeometry> {
    match decode(vga) {
        Decoded::Vbe(g) => Some(g),
        _ => None,
    }
}

/// The mode the registers select.
pub fn display_mode(vga: &Vga) -> DisplayMode {
    match decode(vga) {
        Decoded::Off => DisplayMode::Off,
        Decoded::Text(t) => DisplayMode::Text {
            cols: t.cols,
            rows: t.rows,
        },
        Decoded::Vbe(g) => DisplayMode::Graphics {
            width: g.width,
            height: g.height,
            bpp: g.bpp,
            stride: g.stride,
        },
        Decoded::VgaGraphics(g) => DisplayMode::Graphics {
            width: g.out_width,
            height: g.height,
            bpp: match g.shift {
                0 => 4,
                1 => 2,
                _ => 8,
            },
            stride: line_offset(vga) as u32,
        },
    }
}

/// Render the current picture. `fb` is the VBE framebuffer; `blink_phase` is the
/// visible half of the cursor/blink cycle (toggle it about every 267 ms as QEMU).
/// A blanked screen yields a 0x0 frame: the caller keeps its last size, black.
pub fn render<F: FrameMemory + ?Sized>(vga: &Vga, fb: &F, blink_phase: bool) -> Frame {
    let mut frame = Frame::default();
    render_into(vga, fb, blink_phase, &mut frame);
    frame
}

/// As [`render`], reusing `frame`'s allocation.
pub fn render_into<F: FrameMemory + ?Sized>(
    vga: &Vga,
    fb: &F,
    blink_phase: bool,
    frame: &mut Frame,
) {
    render_rows_into(vga, fb, blink_phase, frame, None);
}

/// As [`render_into`], but in VBE modes only scanlines `rows` are converted
/// (the caller knows from dirty tracking that the others did not change, and
/// `frame` already holds them at this size). Other modes render whole.
pub fn render_rows_into<F: FrameMemory + ?Sized>(
    vga: &Vga,
    fb: &F,
    blink_phase: bool,
    frame: &mut Frame,
    rows: Option<Range<u32>>,
) {
    match decode(vga) {
        Decoded::Off => frame.resize(0, 0),
        Decoded::Text(t) => render_text(vga, &t, blink_phase, frame),
        Decoded::Vbe(g) => {
            let all = 0..g.height;
            let rows = match rows {
                Some(r) if frame.width == g.width && frame.height == g.height => {
                    r.start.min(g.height)..r.end.min(g.height)
                }
                _ => all,
            };
            render_vbe(vga, fb, &g, frame, rows)
        }
        Decoded::VgaGraphics(g) => {
            render_vga_graphics(vga, &g, frame, None);
        }
    }
}

fn render_text(vga: &Vga, t: &TextGeometry, blink_phase: bool, frame: &mut Frame) {
    // Every cell is drawn whole, so this covers the frame.
    frame.resize(t.cols * t.cell_w, t.rows * t.cell_h);
    let look = TextLook::new(vga, t, blink_phase);
    for_each_text_cell(vga, t, |cx, cy, src| {
        look.draw_cell(vga, frame, cx, cy, src)
    });
}

/// Everything a text screen's pixels depend on besides the cells themselves
/// and the cursor's position: what [`crate::display::text_cells`] compares to
/// know that redrawing only changed cells gives the same picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TextLook {
    cols: u32,
    rows: u32,
    cell_w: u32,
    cell_h: u32,
    pal: [u32; 16],
    fonts: [usize; 2],
    /// The glyph rows of both font slots, as drawn (256 × `cell_h` each).
    glyphs: Vec<u8>,
    blink_enabled: bool,
    line_graphics: bool,
    /// CR0A bit 5 clear: the cursor is on (when the blink phase shows it).
    cursor_enabled: bool,
    /// The half of the blink cycle being drawn: the cursor and blinking
    /// characters show in it. Two looks are compared with it set alike.
    blink_phase: bool,
    cursor_first: u32,
    cursor_last: u32,
    start: usize,
    line_offset: usize,
    line_compare: u32,
}

impl TextLook {
    fn new(vga: &Vga, t: &TextGeometry, blink_phase: bool) -> Self {
        // SR3 selects two 8 KiB font slots in plane 2; attribute bit 3 picks one.
        let map = vga.sr[SR_CHAR_MAP];
        let slot = |sel: u8| usize::from(sel) * 8192 * 4 + 2;
        let fonts = [
            slot(((map >> 4) & 1) | ((map << 1) & 6)),
            slot(((map >> 5) & 1) | ((map >> 1) & 6)),
        ];
        Self {
            cols: t.cols,
            rows: t.rows,
            cell_w: t.cell_w,
            cell_h: t.cell_h,
            pal: palette16(vga),
            fonts,
            glyphs: Vec::new(),
            blink_enabled: vga.ar[AR_MODE] & 0x08 != 0,
            line_graphics: vga.ar[AR_MODE] & 0x04 != 0,
            cursor_enabled: vga.cr[0x0a] & 0x20 == 0,
            blink_phase,
            cursor_first: u32::from(vga.cr[0x0a] & 0x1f),
            cursor_last: u32::from(vga.cr[0x0b] & 0x1f).min(t.cell_h - 1),
            start: start_address(vga),
            line_offset: line_offset(vga),
            line_compare: line_compare(vga),
        }
    }

    /// As `new`, with the glyphs copied out so two looks can be compared
    /// (16 KiB at most; the font lives in plane memory the guest may rewrite).
    pub(super) fn of(vga: &Vga) -> Option<Self> {
        let Decoded::Text(t) = decode(vga) else {
            return None;
        };
        // The blink phase changes single cells, which each cell's key covers.
        let mut look = Self::new(vga, &t, true);
        let mut glyphs = Vec::with_capacity(2 * 256 * t.cell_h as usize);
        for font in look.fonts {
            for ch in 0..256usize {
                for gy in 0..t.cell_h as usize {
                    glyphs.push(vram_byte(vga, font + ch * 128 + gy * 4));
                }
            }
        }
        look.glyphs = glyphs;
        Some(look)
    }

    pub(super) fn size(&self) -> (u32, u32, u32, u32) {
        (self.cols, self.rows, self.cell_w, self.cell_h)
    }

    /// This look drawn in the given half of the blink cycle.
    pub(super) fn in_blink_phase(&self, blink_phase: bool) -> Self {
        Self {
            blink_phase,
            glyphs: Vec::new(),
            ..self.clone()
        }
    }

    /// Calls `f(cx, cy, src)` for every cell in this look's layout.
    pub(super) fn for_each_cell(&self, vga: &Vga, f: impl FnMut(u32, u32, usize)) {
        let t = TextGeometry {
            cols: self.cols,
            rows: self.rows,
            cell_w: self.cell_w,
            cell_h: self.cell_h,
        };
        for_each_text_cell(vga, &t, f);
    }

    /// A number that changes whenever the cell at `src` would be drawn
    /// differently in this look: character, attribute, whether the cursor
    /// covers it now, and whether blinking hides its foreground now.
    pub(super) fn cell_key(&self, vga: &Vga, src: usize, blink_phase: bool) -> u32 {
        let ch = vram_byte(vga, src);
        let attr = vram_byte(vga, src + 1);
        let cursor = self.cursor_enabled && blink_phase && src == cursor_address(vga);
        let hidden = self.blink_enabled && attr & 0x80 != 0 && !blink_phase;
        u32::from(ch) | u32::from(attr) << 8 | u32::from(cursor) << 16 | u32::from(hidden) << 17
    }

    /// Draws the cell at column `cx`, row `cy` whose (char, attr) is at `src`.
    pub(super) fn draw_cell(&self, vga: &Vga, frame: &mut Frame, cx: u32, cy: u32, src: usize) {
        let ch = vram_byte(vga, src);
        let attr = vram_byte(vga, src + 1);
        let pal = &self.pal;
        let mut fg = pal[usize::from(attr & 0x0f)];
        let bg;
        if self.blink_enabled && attr & 0x80 != 0 {
            // Bit 7 blinks instead of brightening the background.
            bg = pal[usize::from((attr >> 4) & 7)];
            if !self.blink_phase {
                fg = bg;
            }
        } else {
            bg = pal[usize::from(attr >> 4)];
        }
        let glyph = self.fonts[usize::from((attr >> 3) & 1)] + usize::from(ch) * 128;
        // Only the box-drawing range extends column 8 into the 9th column.
        let dup9 = self.line_graphics && (0xc0..=0xdf).contains(&ch);
        let is_cursor = self.cursor_enabled && self.blink_phase && src == cursor_address(vga);
        let width = frame.width as usize;
        for gy in 0..self.cell_h {
            let in_cursor = is_cursor && gy >= self.cursor_first && gy <= self.cursor_last;
            let bits = if in_cursor {
                0xff
            } else {
                vram_byte(vga, glyph + gy as usize * 4)
            };
            let row = (cy * self.cell_h + gy) as usize * width + (cx * self.cell_w) as usize;
            for gx in 0..self.cell_w {
                let on = match (self.cell_w, gx) {
                    (16, _) => bits & (0x80 >> (gx / 2)) != 0,
                    (9, 8) => (dup9 || in_cursor) && bits & 1 != 0,
                    _ => bits & (0x80 >> gx) != 0,
                };
                frame.pixels[row + gx as usize] = if on { fg } else { bg };
            }
        }
    }
}

/// Plane-memory address of the cell the CRTC's cursor registers point at.
fn cursor_address(vga: &Vga) -> usize {
    ((usize::from(vga.cr[0x0e]) << 8 | usize::from(vga.cr[0x0f])) * 4) & (VGA_MEM_SIZE - 1)
}

/// Calls `f(cx, cy, src)` for each cell in display order, with the address of
/// its (char, attr) in plane memory, following the start address, the line
/// offset and the line-compare split (which restarts at address 0).
fn for_each_text_cell(vga: &Vga, t: &TextGeometry, mut f: impl FnMut(u32, u32, usize)) {
    let lc = line_compare(vga);
    let mut offset = start_address(vga);
    let mut line = 0u32;
    for cy in 0..t.rows {
        for cx in 0..t.cols {
            f(cx, cy, (offset + cx as usize * 4) & (VGA_MEM_SIZE - 1));
        }
        let next = line + t.cell_h;
        offset += line_offset(vga);
        if line < lc && next >= lc {
            offset = 0;
        }
        line = next;
    }
}
fn render_vbe<F: FrameMemory + ?Sized>(
    vga: &Vga,
    fb: &F,
    g: &VbeGeometry,
    frame: &mut Frame,
    rows: Range<u32>,
) {
    frame.resize(g.width, g.height);
    // One loop per pixel format, so the format is decided once per frame.
    match g.bpp {
        15 => vbe_lines(fb, g, rows.clone(), 2, frame, |c| {
            let v = u32::from(u16::from_le_bytes([c[0], c[1]]));
            rgb((v >> 7) & 0xf8, (v >> 2) & 0xf8, (v << 3) & 0xf8)
        }),
        16 => vbe_lines(fb, g, rows.clone(), 2, frame, |c| {
            let v = u32::from(u16::from_le_bytes([c[0], c[1]]));
            rgb((v >> 8) & 0xf8, (v >> 3) & 0xfc, (v << 3) & 0xf8)
        }),
        24 => vbe_lines(fb, g, rows.clone(), 3, frame, |c| {
            rgb(c[2].into(), c[1].into(), c[0].into())
        }),
        32 => vbe_lines(fb, g, rows.clone(), 4, frame, |c| {
            rgb(c[2].into(), c[1].into(), c[0].into())
        }),
        _ => {
            let pal = palette256(vga);
            vbe_lines(fb, g, rows.clone(), 1, frame, |c| pal[usize::from(c[0])])
        }
    }
}

/// Convert scanlines `rows` from `fb` with `pixel` (given `bytes_pp` bytes).
/// What lies past the end of `fb` is black. Each line is copied out of `fb`
/// first: the guest may be writing it (see `fb`).
fn vbe_lines<F: FrameMemory + ?Sized>(
    fb: &F,
    g: &VbeGeometry,
    rows: Range<u32>,
    bytes_pp: usize,
    frame: &mut Frame,
    pixel: impl Fn(&[u8]) -> u32,
) {
    let w = g.width as usize;
    let mut line = vec![0u8; w * bytes_pp];
    for y in rows.start as usize..rows.end as usize {
        let start = g.offset as usize + y * g.stride as usize;
        let n = fb.read_at(start, &mut line) / bytes_pp;
        let (out, past_end) = frame.pixels[y * w..(y + 1) * w].split_at_mut(n);
        for (px, chunk) in out.iter_mut().zip(line.chunks_exact(bytes_pp)) {
            *px = pixel(chunk);
        }
        past_end.fill(0);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::display::vga::tests::{attr_write, inb, memr, memw, outb, outw_idx};

    const NO_FB: &[u8] = &[];

    // -- SeaVGABIOS-style mode programming (register values of the standard modes) --

    /// The 64-entry EGA palette SeaVGABIOS loads for text and 16-colour modes:
    /// bits 0-2 add 0x2A to B/G/R, bits 3-5 add 0x15.
    fn load_ega_palette(vga: &mut Vga) {
        outb(vga, 0x3c8, 0);
        for i in 0u8..64 {
            for c in [2, 1, 0] {
                let hi = (i >> c) & 1;
                let lo = (i >> (c + 3)) & 1;
                outb(vga, 0x3c9, hi * 0x2a + lo * 0x15);
            }
        }
    }

    struct ModeRegs {
        misc: u8,
        seq: [u8; 4],
        crtc: [u8; 25],
        attr: [u8; 20],
        gfx: [u8; 9],
    }

    const MODE_03: ModeRegs = ModeRegs {
        misc: 0x67,
        seq: [0x00, 0x03, 0x00, 0x02],
        crtc: [
            0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00,
            0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
        ],
        attr: [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d,
            0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08,
        ],
        gfx: [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x0f, 0xff],
    };

    const MODE_13: ModeRegs = ModeRegs {
        misc: 0x63,
        seq: [0x01, 0x0f, 0x00, 0x0e],
        crtc: [
            0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff,
        ],
        attr: [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
            0x0e, 0x0f, 0x41, 0x00, 0x0f, 0x00,
        ],
        gfx: [0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff],
    };

    const MODE_12: ModeRegs = ModeRegs {
        misc: 0xe3,
        seq: [0x01, 0x0f, 0x00, 0x06],
        crtc: [
            0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xea, 0x8c, 0xdf, 0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff,
        ],
        attr: [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d,
            0x3e, 0x3f, 0x01, 0x00, 0x0f, 0x00,
        ],
        gfx: [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0xff],
    };

    /// The order of stdvga_set_mode: attributes, sequencer (with a synchronous
    /// reset around it), graphics controller, CRTC (unprotected first), misc,
    /// then video on through AR index bit 5.
    fn set_mode(vga: &mut Vga, m: &ModeRegs) {
        // stdvga_setup at option ROM init: colour ports, more than 64 KiB.
        outb(vga, 0x3c2, 0xc3);
        outw_idx(vga, 0x3c4, 4, 0x02);
        load_ega_palette(vga);
        for (i, &v) in m.attr.iter().enumerate() {
            attr_write(vga, i as u8, v);
        }
        attr_write(vga, 0x14, 0);
        outw_idx(vga, 0x3c4, 0, 0x03);
        for (i, &v) in m.seq.iter().enumerate() {
            outw_idx(vga, 0x3c4, i as u8 + 1, v);
        }
        for (i, &v) in m.gfx.iter().enumerate() {
            outw_idx(vga, 0x3ce, i as u8, v);
        }
        let crtc = if m.misc & 1 != 0 { 0x3d4 } else { 0x3b4 };
        outw_idx(vga, crtc, 0x11, 0);
        for (i, &v) in m.crtc.iter().enumerate() {
            outw_idx(vga, crtc, i as u8, v);
        }
        outb(vga, 0x3c2, m.misc);
        inb(vga, 0x3da);
        outb(vga, 0x3c0, 0x20);
    }

    /// A test glyph: an "A"-like shape with a pixel in column 7 on row 4.
    fn glyph(ch: u8, row: usize) -> u8 {
        const A: [u8; 16] = [
            0x00, 0x00, 0x18, 0x24, 0x43, 0x42, 0x7e, 0x42, 0x42, 0x42, 0x42, 0x00, 0x00, 0x00,
            0x00, 0x00,
        ];
        match ch {
            b'A' => A[row],
            0xc4 | 0xb3 => 0x01, // right-edge column to test the 9th column
            _ => 0,
        }
    }

    /// stdvga_load_font: open plane 2 linearly at A0000, copy 32-byte glyph
    /// slots, then restore the odd/even text mapping.
    fn load_font(vga: &mut Vga) {
        outw_idx(vga, 0x3c4, 0, 0x01);
        outw_idx(vga, 0x3c4, 2, 0x04);
        outw_idx(vga, 0x3c4, 4, 0x07);
        outw_idx(vga, 0x3c4, 0, 0x03);
        outw_idx(vga, 0x3ce, 4, 0x02);
        outw_idx(vga, 0x3ce, 5, 0x00);
        outw_idx(vga, 0x3ce, 6, 0x04);
        for ch in 0..=255u8 {
            for row in 0..16 {
                memw(vga, u64::from(ch) * 32 + row as u64, glyph(ch, row));
            }
        }
        outw_idx(vga, 0x3c4, 0, 0x01);
        outw_idx(vga, 0x3c4, 2, 0x03);
        outw_idx(vga, 0x3c4, 4, 0x03);
        outw_idx(vga, 0x3c4, 0, 0x03);
        let gr6 = if inb(vga, 0x3cc) & 1 != 0 { 0x0e } else { 0x0a };
        outw_idx(vga, 0x3ce, 6, gr6);
        outw_idx(vga, 0x3ce, 4, 0x00);
        outw_idx(vga, 0x3ce, 5, 0x10);
    }

    pub(in crate::display) fn mode3() -> Vga {
        let mut vga = Vga::new(16 << 20);
        set_mode(&mut vga, &MODE_03);
        // clear_screen: 0x0720 words over B800.
        for i in 0..0x4000u64 {
            memw(&mut vga, 0x18000 + 2 * i, 0x20);
            memw(&mut vga, 0x18000 + 2 * i + 1, 0x07);
        }
        load_font(&mut vga);
        vga
    }

    pub(in crate::display) fn put(vga: &mut Vga, cell: u64, ch: u8, attr: u8) {
        memw(vga, 0x18000 + 2 * cell, ch);
        memw(vga, 0x18000 + 2 * cell + 1, attr);
    }

    const WHITE: u32 = 0xffffff;
    const BLUE: u32 = 0x0000a8;
    const LIGHT_GREY: u32 = 0xa8a8a8;

    fn assert_cell(f: &Frame, cx: u32, cy: u32, ch: u8, fg: u32, bg: u32, col9_dup: bool) {
        for gy in 0..16 {
            let bits = glyph(ch, gy as usize);
            for gx in 0..9 {
                let on = if gx < 8 {
                    bits & (0x80 >> gx) != 0
                } else {
                    col9_dup && bits & 1 != 0
                };
                let want = if on { fg } else { bg };
                assert_eq!(
                    f.pixel(cx * 9 + gx, cy * 16 + gy),
                    want,
                    "cell ({cx},{cy}) pixel ({gx},{gy})"
                );
            }
        }
    }

    #[test]
    fn mode3_text_glyph_exact_pixels() {
        let mut vga = mode3();
        assert_eq!(display_mode(&vga), DisplayMode::Text { cols: 80, rows: 25 });
        put(&mut vga, 0, b'A', 0x1f);
        let f = render(&vga, NO_FB, false);
        assert_eq!((f.width, f.height), (720, 400));
        assert_eq!(f.pixel(3, 2), WHITE);
        assert_eq!(f.pixel(0, 0), BLUE);
        assert_eq!(f.pixel(8, 4), BLUE, "column 9 is background for letters");
        assert_cell(&f, 0, 0, b'A', WHITE, BLUE, false);
        // The cleared screen: blanks, grey on black.
        assert_cell(&f, 1, 0, b' ', LIGHT_GREY, 0, false);
        assert_cell(&f, 79, 24, b' ', LIGHT_GREY, 0, false);
    }

    #[test]
    fn mode3_cursor_follows_blink_phase() {
        let mut vga = mode3();
        put(&mut vga, 81, b'A', 0x1f);
        outw_idx(&mut vga, 0x3d4, 0x0e, 0);
        outw_idx(&mut vga, 0x3d4, 0x0f, 81);
        let off = render(&vga, NO_FB, false);
        assert_cell(&off, 1, 1, b'A', WHITE, BLUE, false);
        let on = render(&vga, NO_FB, true);
        // CR0A/0B = 0x0D/0x0E: scanlines 13 and 14 solid in the foreground.
        for gy in 0..16 {
            for gx in 0..9 {
                let p = on.pixel(9 + gx, 16 + gy);
                if (13..=14).contains(&gy) {
                    assert_eq!(p, WHITE);
                } else {
                    assert_eq!(p, off.pixel(9 + gx, 16 + gy));
                }
            }
        }
        outw_idx(&mut vga, 0x3d4, 0x0a, 0x2d); // cursor disable bit
        assert_eq!(render(&vga, NO_FB, true), off);
    }

    #[test]
    fn line_graphics_ninth_column_and_blink() {
        let mut vga = mode3();
        put(&mut vga, 0, 0xc4, 0x07);
        put(&mut vga, 1, 0xb3, 0x07);
        put(&mut vga, 2, b'A', 0x9f); // blinking, bg index 1
        outw_idx(&mut vga, 0x3d4, 0x0e, 0x07); // cursor off screen (cell 2000)
        outw_idx(&mut vga, 0x3d4, 0x0f, 0xd0);
        let f = render(&vga, NO_FB, true);
        assert_cell(&f, 0, 0, 0xc4, LIGHT_GREY, 0, true);
        assert_cell(&f, 1, 0, 0xb3, LIGHT_GREY, 0, false);
        assert_cell(&f, 2, 0, b'A', WHITE, BLUE, false);
        let f = render(&vga, NO_FB, false);
        assert_cell(&f, 2, 0, b'A', BLUE, BLUE, false);
        // Without the line-graphics bit, no duplication; blink off: bright bg.
        attr_write(&mut vga, 0x10, 0x00);
        let f = render(&vga, NO_FB, false);
        assert_cell(&f, 0, 0, 0xc4, LIGHT_GREY, 0, false);
        let bright_blue = 0x5757ff;
        assert_cell(&f, 2, 0, b'A', WHITE, bright_blue, false);
    }

    #[test]
    fn eight_dot_clock_and_blanking() {
        let mut vga = mode3();
        put(&mut vga, 0, b'A', 0x1f);
        outw_idx(&mut vga, 0x3c4, 1, 0x01);
        let f = render(&vga, NO_FB, false);
        assert_eq!((f.width, f.height), (640, 400));
        assert_eq!(
            f.pixel(8, 4),
            0,
            "column 8 already belongs to the next cell"
        );
        inb(&mut vga, 0x3da);
        outb(&mut vga, 0x3c0, 0x00);
        assert_eq!(display_mode(&vga), DisplayMode::Off);
        assert_eq!(render(&vga, NO_FB, false).pixels.len(), 0);
    }

    #[test]
    fn mode13h_chain4_256_colours() {
        let mut vga = Vga::new(16 << 20);
        set_mode(&mut vga, &MODE_13);
        assert_eq!(
            display_mode(&vga),
            DisplayMode::Graphics {
                width: 640,
                height: 400,
                bpp: 8,
                stride: 320
            }
        );
        outb(&mut vga, 0x3c8, 0x80);
        for v in [0x3f, 0x00, 0x2a] {
            outb(&mut vga, 0x3c9, v);
        }
        memw(&mut vga, 320 + 2, 0x80); // (x 2, y 1) in 320x200
        assert_eq!(memr(&mut vga, 320 + 2), 0x80);
        let f = render(&vga, NO_FB, false);
        assert_eq!((f.width, f.height), (640, 400));
        for (x, y) in [(4, 2), (5, 2), (4, 3), (5, 3)] {
            assert_eq!(f.pixel(x, y), 0xff00a8);
        }
        assert_eq!(f.pixel(6, 2), 0);
        assert_eq!(f.pixel(4, 4), 0);
    }

    #[test]
    fn mode12h_planar_16_colours() {
        let mut vga = Vga::new(16 << 20);
        set_mode(&mut vga, &MODE_12);
        assert_eq!(
            display_mode(&vga),
            DisplayMode::Graphics {
                width: 640,
                height: 480,
                bpp: 4,
                stride: 80 * 4
            }
        );
        // Write mode 2, colour 12 into the leftmost pixel of line 1.
        outw_idx(&mut vga, 0x3ce, 5, 0x02);
        outw_idx(&mut vga, 0x3ce, 8, 0x80);
        memr(&mut vga, 80);
        memw(&mut vga, 80, 0x0c);
        // And colour 1 into pixel 9 of line 0 via write mode 0 + set/reset.
        outw_idx(&mut vga, 0x3ce, 5, 0x00);
        outw_idx(&mut vga, 0x3ce, 0, 0x01);
        outw_idx(&mut vga, 0x3ce, 1, 0x0f);
        outw_idx(&mut vga, 0x3ce, 8, 0x40);
        memr(&mut vga, 1);
        memw(&mut vga, 1, 0);
        let f = render(&vga, NO_FB, false);
        assert_eq!((f.width, f.height), (640, 480));
        assert_eq!(f.pixel(0, 1), 0xff5757, "AR12 = 0x3C -> light red");
        assert_eq!(f.pixel(1, 1), 0);
        assert_eq!(f.pixel(9, 0), BLUE);
        assert_eq!(f.pixel(8, 0), 0);
    }

    fn dispi(vga: &mut Vga, fb: &mut [u8], index: u16, value: u16) {
        vga.port_write(0x1ce, &index.to_le_bytes(), fb);
        vga.port_write(0x1cf, &value.to_le_bytes(), fb);
    }

    fn vbe_mode(vga: &mut Vga, fb: &mut [u8], w: u16, h: u16, bpp: u16) {
        dispi(vga, fb, 4, 0);
        dispi(vga, fb, 3, bpp);
        dispi(vga, fb, 1, w);
        dispi(vga, fb, 2, h);
        dispi(vga, fb, 4, 0x41);
    }

    #[test]
    fn vbe_32_and_16_bpp() {
        let mut vga = mode3();
        let mut fb = vec![0u8; 16 << 20];
        vbe_mode(&mut vga, &mut fb, 1024, 768, 32);
        assert_eq!(
            display_mode(&vga),
            DisplayMode::Graphics {
                width: 1024,
                height: 768,
                bpp: 32,
                stride: 4096
            }
        );
        fb[4096 + 8..4096 + 12].copy_from_slice(&[0x11, 0x22, 0x33, 0xff]);
        let f = render(&vga, &fb, false);
        assert_eq!((f.width, f.height), (1024, 768));
        assert_eq!(f.pixel(2, 1), 0x332211);
        // Pan by one line: the pixel moves up.
        dispi(&mut vga, &mut fb, 9, 1);
        assert_eq!(render(&vga, &fb, false).pixel(2, 0), 0x332211);

        vbe_mode(&mut vga, &mut fb, 640, 480, 16);
        fb[0..2].copy_from_slice(&0xf81fu16.to_le_bytes());
        fb[2..4].copy_from_slice(&0x07e0u16.to_le_bytes());
        let f = render(&vga, &fb, false);
        assert_eq!(f.pixel(0, 0), 0xf800f8);
        assert_eq!(f.pixel(1, 0), 0x00fc00);
        vbe_mode(&mut vga, &mut fb, 640, 480, 15);
        fb[0..2].copy_from_slice(&0x7c00u16.to_le_bytes());
        assert_eq!(render(&vga, &fb, false).pixel(0, 0), 0xf80000);
        vbe_mode(&mut vga, &mut fb, 640, 480, 24);
        fb[3..6].copy_from_slice(&[1, 2, 3]);
        assert_eq!(render(&vga, &fb, false).pixel(1, 0), 0x030201);
    }

    #[test]
    fn vbe_8bpp_uses_dac_and_8bit_dac() {
        let mut vga = mode3();
        let mut fb = vec![0u8; 16 << 20];
        vbe_mode(&mut vga, &mut fb, 800, 600, 8);
        outb(&mut vga, 0x3c8, 5);
        for v in [0x3f, 0x2a, 0x00] {
            outb(&mut vga, 0x3c9, v);
        }
        fb[10] = 5;
        assert_eq!(render(&vga, &fb, false).pixel(10, 0), 0xffa800);
        dispi(&mut vga, &mut fb, 4, 0x41 | 0x20 | 0x80);
        outb(&mut vga, 0x3c8, 5);
        for v in [0x12, 0x34, 0x56] {
            outb(&mut vga, 0x3c9, v);
        }
        assert_eq!(render(&vga, &fb, false).pixel(10, 0), 0x123456);
        // VBE off: the VGA side keeps the chain-4 layout that enabling set up.
        dispi(&mut vga, &mut fb, 4, 0);
        assert!(matches!(
            display_mode(&vga),
            DisplayMode::Graphics { bpp: 8, .. }
        ));
    }

    #[test]
    fn reused_frame_is_fully_redrawn() {
        // A frame of the right size full of stale pixels must come out exactly
        // as a fresh render, in every kind of mode.
        let check = |vga: &Vga, fb: &[u8]| {
            let fresh = render(vga, fb, false);
            let mut reused = Frame {
                width: fresh.width,
                height: fresh.height,
                pixels: vec![0xdead_beef; fresh.pixels.len()],
            };
            render_into(vga, fb, false, &mut reused);
            assert!(reused == fresh, "{:?}", display_mode(vga));
            // And from a frame of another size.
            let mut other = Frame {
                width: 3,
                height: 5,
                pixels: vec![0xdead_beef; 15],
            };
            render_into(vga, fb, false, &mut other);
            assert!(other == fresh, "{:?}", display_mode(vga));
        };
        let mut vga = mode3();
        put(&mut vga, 0, b'A', 0x1f);
        check(&vga, NO_FB);
        let mut vga13 = Vga::new(16 << 20);
        set_mode(&mut vga13, &MODE_13);
        memw(&mut vga13, 5, 0x0f);
        check(&vga13, NO_FB);
        let mut vga12 = Vga::new(16 << 20);
        set_mode(&mut vga12, &MODE_12);
        check(&vga12, NO_FB);
        for (bpp, fb_len) in [(32, 16 << 20), (32, 100), (16, 1001), (24, 5), (8, 7)] {
            let mut fb = vec![0x5au8; fb_len];
            vbe_mode(&mut vga, &mut fb, 800, 600, bpp);
            fb.fill(0x5a);
            check(&vga, &fb);
        }
        inb(&mut vga, 0x3da);
        outb(&mut vga, 0x3c0, 0x00);
        check(&vga, NO_FB);
    }

    #[test]
    fn tiny_framebuffer_renders_black_not_panics() {
        let mut vga = mode3();
        let mut fb = vec![0xffu8; 100];
        vbe_mode(&mut vga, &mut fb, 2560, 1600, 32);
        let f = render(&vga, &fb, false);
        assert_eq!(f.pixels.len(), 2560 * 1600);
        assert_eq!(f.pixel(0, 0), 0, "enable cleared what fits");
        assert_eq!(f.pixel(100, 100), 0);
    }
}
