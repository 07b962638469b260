//! VGA graphics modes (planar 16-colour, CGA 4-colour, 256-colour) as the
//! CRTC fetches them, whole or, for a mapped mode-13h window, only the
//! scanlines on dirty pages.

use super::{
    decode, line_compare, line_offset, palette16, palette256, start_address, vram_byte, Decoded,
    Frame, GraphicsGeometry,
};
use crate::display::screen::Rect;
use crate::display::vga::{Vga, AR_PLANE_ENABLE, VGA_MEM_SIZE};

/// A 256-colour VGA picture (mode 13h) whose memory the guest writes
/// through the mapped window: redraw only the scanlines that show bytes of
/// the 4 KiB pages of VGA memory in `pages` (bit `p % 64` of word `p / 64`),
/// into `frame`, which holds the previous picture. Returns rects covering
/// the pixels that changed, or `None` when the registers show something
/// else or another size (render whole then).
pub fn render_vga_dirty_lines(vga: &Vga, frame: &mut Frame, pages: &[u64]) -> Option<Vec<Rect>> {
    let Decoded::VgaGraphics(g) = decode(vga) else {
        return None;
    };
    if g.shift != 2 || (frame.width, frame.height) != (g.out_width, g.height) {
        return None;
    }
    let rows = render_vga_graphics(vga, &g, frame, Some(pages));
    // One rect per run of changed scanlines, spanning their changed columns.
    let mut rects: Vec<Rect> = Vec::new();
    for (y, lo, hi) in rows {
        match rects.last_mut() {
            Some(r) if r.y + r.height == y => {
                let (x0, x1) = (r.x.min(lo as u32), (r.x + r.width).max(hi as u32));
                *r = Rect {
                    x: x0,
                    y: r.y,
                    width: x1 - x0,
                    height: r.height + 1,
                };
            }
            _ => rects.push(Rect {
                x: lo as u32,
                y,
                width: (hi - lo) as u32,
                height: 1,
            }),
        }
    }
    Some(rects)
}

/// Does a scanline fetching `len` bytes from `addr` (wrapping in VGA
/// memory) touch a page set in `pages`?
fn line_on_pages(pages: &[u64], addr: usize, len: usize) -> bool {
    const PAGE: usize = 4096;
    let first = addr / PAGE;
    let last = (addr + len.max(1) - 1) / PAGE;
    (first..=last).any(|p| {
        let p = p % (VGA_MEM_SIZE / PAGE);
        pages.get(p / 64).is_some_and(|w| w & (1 << (p % 64)) != 0)
    })
}

/// Draws the picture, or with `only` just the scanlines whose source bytes
/// lie on those pages (256-colour modes only); returns, in that case, each
/// redrawn scanline that changed with its changed columns `lo..hi`.
pub(super) fn render_vga_graphics(
    vga: &Vga,
    g: &GraphicsGeometry,
    frame: &mut Frame,
    only: Option<&[u64]>,
) -> Vec<(u32, usize, usize)> {
    let mut changed = Vec::new();
    let mut old_line = Vec::new();
    // Each line is drawn across out_width (width is whole 8-pixel groups).
    frame.resize(g.out_width, g.height);
    let cr9 = vga.cr[0x09];
    let cr17 = vga.cr[0x17];
    let double_scan = u32::from(cr9 >> 7);
    // Each fetched line is shown multi_scan + 1 times (CGA modes ignore CR9 rows).
    let multi_scan = if g.shift != 1 {
        ((u32::from(cr9 & 0x1f) + 1) << double_scan) - 1
    } else {
        double_scan
    };
    let pal16 = palette16(vga);
    let pal256 = palette256(vga);
    let plane_mask = vga.ar[AR_PLANE_ENABLE] & 0x0f;
    let hdouble = g.out_width != g.width;
    let lc = line_compare(vga);
    let stride = line_offset(vga);
    let out_w = g.out_width as usize;

    let mut addr1 = start_address(vga);
    let mut y1 = 0u32;
    let mut multi_run = multi_scan;
    for y in 0..g.height {
        let mut addr = addr1;
        // CRTC mode bits 0/1 clear: CGA/Hercules interleave of scanlines.
        if cr17 & 1 == 0 {
            let shift = 14 + ((cr17 >> 6) & 1);
            addr = (addr & !(1 << shift)) | (((y1 & 1) as usize) << shift);
        }
        if cr17 & 2 == 0 {
            addr = (addr & !0x8000) | (((y1 & 2) as usize) << 14);
        }
        let out = &mut frame.pixels[y as usize * out_w..(y as usize + 1) * out_w];
        // With `only`: lines off those pages stay as they are; the old
        // pixels of the others are kept to report just the changed columns.
        let (draw, watch) = match only {
            Some(pages) if g.shift == 2 => {
                let on = line_on_pages(pages, addr & (VGA_MEM_SIZE - 1), out_w.div_ceil(2));
                (on, on)
            }
            _ => (true, false),
        };
        if watch {
            old_line.clear();
            old_line.extend_from_slice(out);
        }
        match g.shift {
            _ if !draw => {}
            0 | 1 => draw_planar_line(
                vga, addr, g.width, g.shift, plane_mask, hdouble, &pal16, out,
            ),
            _ => {
                // 256 colours: one byte per pixel, each shown twice (QEMU line8d2).
                for (x, px) in out.iter_mut().enumerate() {
                    *px = pal256[usize::from(vram_byte(vga, addr + x / 2))];
                }
            }
        }
        if watch {
            let differs = |(a, b): (&u32, &u32)| a != b;
            if let Some(lo) = out.iter().zip(&old_line).position(differs) {
                let hi = out_w
                    - out
                        .iter()
                        .zip(&old_line)
                        .rev()
                        .position(differs)
                        .unwrap_or(0);
                changed.push((y, lo, hi));
            }
        }
        if multi_run == 0 {
            let mask = u32::from(cr17 & 3) ^ 3;
            if y1 & mask == mask {
                addr1 += stride;
            }
            y1 += 1;
            multi_run = multi_scan;
        } else {
            multi_run -= 1;
        }
        if y == lc {
            addr1 = 0;
        }
    }
    changed
}

/// One scanline of a 16-colour (shift 0) or CGA 4-colour (shift 1) mode: every
/// 4 bytes of interleaved memory hold one byte per plane for 8 pixels.
#[allow(clippy::too_many_arguments)]
fn draw_planar_line(
    vga: &Vga,
    addr: usize,
    width: u32,
    shift: u8,
    plane_mask: u8,
    hdouble: bool,
    pal: &[u32; 16],
    out: &mut [u32],
) {
    let rep = if hdouble { 2 } else { 1 };
    for group in 0..(width / 8) as usize {
        let base = addr + group * 4;
        let planes: [u8; 4] = std::array::from_fn(|p| {
            if plane_mask & (1 << p) != 0 {
                vram_byte(vga, base + p)
            } else {
                0
            }
        });
        for x in 0..8usize {
            let index = if shift == 0 {
                (0..4).fold(0u8, |acc, p| acc | (((planes[p] >> (7 - x)) & 1) << p))
            } else {
                // Planes 0/2 carry the first four pixels, 1/3 the next four,
                // two bits per pixel each (low pair from 0/1, high from 2/3).
                let (lo, hi) = if x < 4 {
                    (planes[0], planes[2])
                } else {
                    (planes[1], planes[3])
                };
                let sh = 6 - 2 * (x % 4);
                ((lo >> sh) & 3) | (((hi >> sh) & 3) << 2)
            };
            let colour = pal[usize::from(index)];
            for r in 0..rep {
                if let Some(px) = out.get_mut((group * 8 + x) * rep + r) {
                    *px = colour;
                }
            }
        }
    }
}
