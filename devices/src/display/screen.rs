//! The display model: the picture the guest shows, as an XRGB frame, and the
//! regions that changed since the last look, so a frontend sends only those and
//! nothing while the screen is still.
//!
//! Change comes from two places, and each is tracked where it is cheap:
//! - Register and 0xA0000-window writes (text, planar and mode-13h screens, VBE
//!   mode switches, palette and panning) all trap to the device, which counts
//!   them (`Vga::generation`). When the count moves, a text screen whose look
//!   (palette, fonts, geometry) held redraws only the cells that changed
//!   (`text_cells`); anything else is rendered afresh and compared with the
//!   last frame, row by row (at 720x400 well under a millisecond).
//! - The VBE linear framebuffer lives in BAR0, which the guest writes directly
//!   (no exits). The VMM gives us the hypervisor's dirty-page log for it; only
//!   scanlines on dirty pages are converted, and those bands are reported.
//! - In mode 13h the 0xA0000 window is guest memory too (`vga/window.rs`):
//!   its page log, likewise, picks the scanlines to redraw.

use std::time::{Duration, Instant};

use super::qxl::{DeviceMode, Qxl};
use super::qxl_engine::PrimaryView;
use super::render::{self, DisplayMode, Frame};
use super::text_cells::TextCells;

pub use display_types::{Draw, Rect};

/// What is known about guest writes to the framebuffer (BAR0) since the last
/// refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FbDirty {
    /// One bit per 4 KiB page of BAR0 (bit `p % 64` of word `p / 64`).
    Pages(Vec<u64>),
    /// Not tracked (the BAR is not mapped, or was just moved): assume anything.
    Unknown,
}

/// What a refresh found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// The mode or size changed: the frontend should start a new surface.
    pub mode_changed: bool,
    /// Regions to resend; the whole frame when `mode_changed`.
    pub rects: Vec<Rect>,
    /// Fills and image copies (native QXL), oldest first: a frontend may
    /// forward these as draws instead of their pixels, which are in the frame
    /// too. They come before `rects`, which always hold the newest pixels.
    pub draws: Vec<Draw>,
}

impl Update {
    pub fn is_empty(&self) -> bool {
        !self.mode_changed && self.rects.is_empty() && self.draws.is_empty()
    }
}

const PAGE_SIZE: u64 = 4096;
/// Half of the VGA cursor blink cycle (16 frames at 60 Hz), as QEMU uses.
pub const BLINK_HALF_PERIOD: Duration = Duration::from_millis(267);

pub struct Screen {
    frame: Frame,
    scratch: Frame,
    mode: Option<DisplayMode>,
    generation: Option<u64>,
    blink: bool,
    epoch: Instant,
    /// What the text screen in `frame` was drawn from, so typing redraws cells.
    text: TextCells,
    /// The QXL primary surface as last copied (native mode).
    native: PrimaryView,
}

impl Default for Screen {
    fn default() -> Self {
        Self::new()
    }
}

impl Screen {
    pub fn new() -> Self {
        Self {
            frame: Frame::default(),
            scratch: Frame::default(),
            mode: None,
            generation: None,
            blink: true,
            epoch: Instant::now(),
            text: TextCells::default(),
            native: PrimaryView::default(),
        }
    }

    /// The picture as of the last refresh.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// The current mode, as of the last refresh.
    pub fn mode(&self) -> Option<DisplayMode> {
        self.mode
    }

    /// Bring the frame up to date with `qxl` and report what changed.
    pub fn refresh(&mut self, qxl: &Qxl, dirty: FbDirty, now: Instant) -> Update {
        self.refresh_with_window(qxl, dirty, &FbDirty::Unknown, now)
    }

    /// As [`Screen::refresh`], with `window` the pages of the mapped
    /// mode-13h window the guest wrote (`Vga::sync_window` has copied them
    /// into VGA memory already): only the scanlines showing them are redrawn.
    pub fn refresh_with_window(
        &mut self,
        qxl: &Qxl,
        dirty: FbDirty,
        window: &FbDirty,
        now: Instant,
    ) -> Update {
        if qxl.mode() != DeviceMode::Vga {
            // Native QXL: the primary surface's canvas, its drawn rects. With
            // no primary (destroyed, not yet re-created) the last picture stays.
            // Forget the VGA mode so a return to VGA redraws everything.
            self.mode = None;
            self.text.forget();
            return match qxl.refresh_native(&mut self.frame, &mut self.native) {
                Some(p) => Update {
                    mode_changed: p.fresh,
                    rects: p.rects,
                    draws: p.draws,
                },
                None => Update::default(),
            };
        }
        let vga = qxl.vga();
        let mode = qxl.display_mode();
        let half_periods =
            now.saturating_duration_since(self.epoch).as_millis() / BLINK_HALF_PERIOD.as_millis();
        let blink = half_periods.is_multiple_of(2);
        let generation = vga.generation();

        if self.mode != Some(mode) {
            self.mode = Some(mode);
            self.generation = Some(generation);
            self.blink = blink;
            let last = (self.frame.width, self.frame.height);
            draw(qxl, blink, &mut self.frame, last);
            self.text.remember(vga, blink);
            return Update {
                mode_changed: true,
                rects: full(&self.frame),
                draws: Vec::new(),
            };
        }
        let registers_moved = self.generation != Some(generation);
        let blink_moved = matches!(mode, DisplayMode::Text { .. }) && blink != self.blink;
        self.generation = Some(generation);
        self.blink = blink;

        // Mode 13h stores into the mapped window do not trap (no generation
        // move): the window's page log says which scanlines to redraw.
        let window_mapped = vga.window_mapped();
        if let (true, FbDirty::Pages(pages), false) = (window_mapped, window, registers_moved) {
            if let Some(rects) = render::render_vga_dirty_lines(vga, &mut self.frame, pages) {
                return Update {
                    mode_changed: false,
                    rects,
                    draws: Vec::new(),
                };
            }
        }
        let vbe = render::vbe_scanout(vga);
        if let (Some(g), FbDirty::Pages(pages), false) = (vbe, &dirty, registers_moved) {
            let line_bytes = g.width * g.bpp.div_ceil(8);
            let bands = dirty_bands(pages, g.offset, g.stride, line_bytes, g.width, g.height);
            for band in &bands {
                qxl.render_rows_into(blink, &mut self.frame, band.y..band.y + band.height);
            }
            return Update {
                mode_changed: false,
                rects: bands,
                draws: Vec::new(),
            };
        }
        // Without a page log, a VBE framebuffer may have changed anywhere.
        if !(registers_moved || blink_moved || vbe.is_some() || window_mapped) {
            return Update::default();
        }
        if vbe.is_none() {
            if let Some(rects) = self.text.redraw_changed(vga, blink, &mut self.frame) {
                return Update {
                    mode_changed: false,
                    rects,
                    draws: Vec::new(),
                };
            }
        }
        draw(
            qxl,
            blink,
            &mut self.scratch,
            (self.frame.width, self.frame.height),
        );
        let rects = diff(&self.frame, &self.scratch);
        std::mem::swap(&mut self.frame, &mut self.scratch);
        self.text.remember(vga, blink);
        Update {
            mode_changed: false,
            rects,
            draws: Vec::new(),
        }
    }
}

/// Size of the picture before the guest sets any mode (QEMU's too).
pub const BLANK_SIZE: (u32, u32) = (640, 480);

/// Render into `frame`. A blanked screen (no picture: palette access, bad
/// geometry) keeps the size `last` and turns black, as a monitor does and as
/// QEMU shows it, so frontends keep their surface and screendump always has an
/// image.
fn draw(qxl: &Qxl, blink: bool, frame: &mut Frame, last: (u32, u32)) {
    qxl.render_into(blink, frame);
    if frame.width == 0 || frame.height == 0 {
        let (w, h) = if last.0 == 0 || last.1 == 0 {
            BLANK_SIZE
        } else {
            last
        };
        frame.width = w;
        frame.height = h;
        frame.pixels.clear();
        frame.pixels.resize(w as usize * h as usize, 0);
    }
}

fn full(frame: &Frame) -> Vec<Rect> {
    if frame.width == 0 || frame.height == 0 {
        return Vec::new();
    }
    vec![Rect {
        x: 0,
        y: 0,
        width: frame.width,
        height: frame.height,
    }]
}

/// Full-width bands of the `height` scanlines that touch a dirty page. Scanline
/// `y` occupies bytes `[offset + y * stride, offset + y * stride + line_bytes)`.
pub fn dirty_bands(
    pages: &[u64],
    offset: u32,
    stride: u32,
    line_bytes: u32,
    width: u32,
    height: u32,
) -> Vec<Rect> {
    let (offset, stride, line_bytes) = (
        u64::from(offset),
        u64::from(stride.max(1)),
        u64::from(line_bytes),
    );
    if height == 0 {
        return Vec::new();
    }
    let mut dirty_rows = vec![false; height as usize];
    for (w, &word) in pages.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let page = w as u64 * 64 + u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            let (start, end) = (page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
            if end <= offset {
                continue;
            }
            // Row y meets [start, end) iff its first byte is before `end` and
            // its last byte is at or after `start`.
            let last = (end - 1 - offset) / stride;
            let first = match start.checked_sub(offset + line_bytes) {
                Some(gap) => gap / stride + 1,
                None => 0,
            };
            for y in first..=last.min(u64::from(height).saturating_sub(1)) {
                dirty_rows[y as usize] = true;
            }
        }
    }
    let mut out = Vec::new();
    let mut y = 0;
    while y < dirty_rows.len() {
        if !dirty_rows[y] {
            y += 1;
            continue;
        }
        let top = y;
        while y < dirty_rows.len() && dirty_rows[y] {
            y += 1;
        }
        out.push(Rect {
            x: 0,
            y: top as u32,
            width,
            height: (y - top) as u32,
        });
    }
    out
}

/// Rectangles covering every pixel that differs between two frames of the same
/// size: one per run of changed rows, spanning the changed columns.
pub fn diff(old: &Frame, new: &Frame) -> Vec<Rect> {
    if (old.width, old.height) != (new.width, new.height) {
        return full(new);
    }
    let w = new.width as usize;
    let mut out: Vec<Rect> = Vec::new();
    let mut open: Option<(u32, usize, usize)> = None; // (first row, min x, max x)
    for y in 0..new.height as usize {
        let (a, b) = (
            &old.pixels[y * w..(y + 1) * w],
            &new.pixels[y * w..(y + 1) * w],
        );
        let changed = if a == b {
            None
        } else {
            let lo = a.iter().zip(b).position(|(p, q)| p != q).unwrap_or(0);
            let hi = w - a.iter().zip(b).rev().position(|(p, q)| p != q).unwrap_or(0);
            Some((lo, hi))
        };
        match (changed, open.as_mut()) {
            (Some((lo, hi)), Some((_, min, max))) => {
                *min = (*min).min(lo);
                *max = (*max).max(hi);
            }
            (Some((lo, hi)), None) => open = Some((y as u32, lo, hi)),
            (None, Some(_)) => {
                let (top, min, max) = open.take().unwrap();
                out.push(rect(top, y as u32, min, max));
            }
            (None, None) => {}
        }
    }
    if let Some((top, min, max)) = open {
        out.push(rect(top, new.height, min, max));
    }
    out
}

fn rect(top: u32, bottom: u32, min_x: usize, max_x: usize) -> Rect {
    Rect {
        x: min_x as u32,
        y: top,
        width: (max_x - min_x) as u32,
        height: bottom - top,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::display::qxl::QxlConfig;
    use crate::interrupt::NoIrq;

    fn page_bits(pages: &[u64]) -> Vec<u64> {
        let mut v = vec![0u64; 1024];
        for &p in pages {
            v[(p / 64) as usize] |= 1 << (p % 64);
        }
        v
    }

    fn band(y: u32, h: u32, w: u32) -> Rect {
        Rect {
            x: 0,
            y,
            width: w,
            height: h,
        }
    }

    #[test]
    fn dirty_pages_map_to_scanlines() {
        // 1024x768x32: one scanline per page.
        assert_eq!(
            dirty_bands(&page_bits(&[0, 1, 5]), 0, 4096, 4096, 1024, 768),
            vec![band(0, 2, 1024), band(5, 1, 1024)]
        );
        // 800x600x24: stride 2400, so page 1 (bytes 4096..8192) holds rows 1..=3.
        assert_eq!(
            dirty_bands(&page_bits(&[1]), 0, 2400, 2400, 800, 600),
            vec![band(1, 3, 800)]
        );
        // Panned by 10 lines: page 10 is visible row 0; pages before it are not shown.
        assert_eq!(
            dirty_bands(&page_bits(&[3, 10]), 10 * 4096, 4096, 4096, 1024, 768),
            vec![band(0, 1, 1024)]
        );
        // Virtual width 2048 but 1024 visible: page 1 is the invisible right half of row 0.
        assert_eq!(
            dirty_bands(&page_bits(&[1, 2]), 0, 8192, 4096, 1024, 768),
            vec![band(1, 1, 1024)]
        );
        // Pages past the screen (the RAM header at the end of BAR0) report nothing.
        assert!(dirty_bands(&page_bits(&[16000]), 0, 4096, 4096, 1024, 768).is_empty());
        assert!(dirty_bands(&page_bits(&[0]), 0, 4096, 4096, 1024, 0).is_empty());
    }

    #[test]
    fn diff_finds_changed_boxes() {
        let mut a = Frame {
            width: 10,
            height: 6,
            pixels: vec![0; 60],
        };
        let mut b = a.clone();
        assert!(diff(&a, &b).is_empty());
        b.pixels[2 * 10 + 3] = 1;
        b.pixels[3 * 10 + 7] = 1;
        b.pixels[5 * 10 + 9] = 1;
        assert_eq!(
            diff(&a, &b),
            vec![
                Rect {
                    x: 3,
                    y: 2,
                    width: 5,
                    height: 2
                },
                Rect {
                    x: 9,
                    y: 5,
                    width: 1,
                    height: 1
                },
            ]
        );
        a.width = 5;
        a.height = 12;
        assert_eq!(
            diff(&a, &b),
            vec![Rect {
                x: 0,
                y: 0,
                width: 10,
                height: 6
            }]
        );
    }

    fn dispi(q: &mut Qxl, index: u16, value: u16) {
        q.vga_port_write(0x1ce, &index.to_le_bytes());
        q.vga_port_write(0x1cf, &value.to_le_bytes());
    }

    /// Linux bochs-drm / vgabios order: disable, bpp, xres, yres, enable|LFB.
    fn vbe_mode(q: &mut Qxl, w: u16, h: u16, bpp: u16) {
        dispi(q, 4, 0);
        dispi(q, 3, bpp);
        dispi(q, 1, w);
        dispi(q, 2, h);
        dispi(q, 4, 0x41);
    }

    #[test]
    fn blanked_screen_is_black_at_the_last_size() {
        let mut q = Qxl::new(QxlConfig::default(), Vec::new(), Arc::new(NoIrq)).unwrap();
        let mut screen = Screen::new();
        let t = Instant::now();
        // Power-on: nothing programmed yet.
        let u = screen.refresh(&q, FbDirty::Unknown, t);
        assert!(u.mode_changed);
        assert_eq!((screen.frame().width, screen.frame().height), BLANK_SIZE);
        assert!(screen.frame().pixels.iter().all(|&p| p == 0));
        q.vga_port_write(0x3c0, &[0x20]);
        vbe_mode(&mut q, 800, 600, 32);
        q.ram().write(0, &[0xff, 0xff, 0xff, 0]);
        screen.refresh(&q, FbDirty::Unknown, t);
        assert_eq!(screen.frame().pixel(0, 0), 0xffffff);
        // Palette access (AR index bit 5 clear) blanks the picture: black, 800x600.
        // Input status 1 (0x3BA with MSR's colour bit clear, as here) resets
        // the attribute flip-flop to "index".
        q.vga_port_read(0x3ba, &mut [0]);
        q.vga_port_write(0x3c0, &[0x00]);
        screen.refresh(&q, FbDirty::Unknown, t);
        assert_eq!((screen.frame().width, screen.frame().height), (800, 600));
        assert_eq!(screen.frame().pixel(0, 0), 0);
    }

    #[test]
    fn vbe_screen_reports_only_what_the_guest_wrote() {
        let mut q = Qxl::new(QxlConfig::default(), Vec::new(), Arc::new(NoIrq)).unwrap();
        let mut screen = Screen::new();
        let t = Instant::now();
        // The attribute controller hands the palette to the display (index bit 5).
        q.vga_port_write(0x3c0, &[0x20]);
        vbe_mode(&mut q, 1024, 768, 32);
        let u = screen.refresh(&q, FbDirty::Unknown, t);
        assert!(u.mode_changed);
        assert_eq!(u.rects, vec![band(0, 768, 1024)]);
        assert_eq!((screen.frame().width, screen.frame().height), (1024, 768));

        // Still: nothing, whether the log says so or we have to look.
        assert!(screen
            .refresh(&q, FbDirty::Pages(page_bits(&[])), t)
            .is_empty());
        assert!(screen.refresh(&q, FbDirty::Unknown, t).is_empty());

        // The guest stores a pixel at (5, 100) through its mapping of BAR0.
        q.ram().write(100 * 4096 + 5 * 4, &[0x33, 0x22, 0x11, 0]);
        let u = screen.refresh(&q, FbDirty::Pages(page_bits(&[100])), t);
        assert_eq!(u.rects, vec![band(100, 1, 1024)]);
        assert_eq!(screen.frame().pixel(5, 100), 0x112233);

        // Without a log the same change is found by comparing.
        q.ram().write(200 * 4096 + 8 * 4, &[0xff, 0, 0, 0]);
        let u = screen.refresh(&q, FbDirty::Unknown, t);
        assert_eq!(
            u.rects,
            vec![Rect {
                x: 8,
                y: 200,
                width: 1,
                height: 1
            }]
        );
        assert_eq!(screen.frame().pixel(8, 200), 0x0000ff);

        // Panning is a register write: compared whole, although no page is dirty.
        dispi(&mut q, 9, 1);
        let u = screen.refresh(&q, FbDirty::Pages(page_bits(&[])), t);
        assert!(!u.mode_changed);
        assert!(
            u.rects.contains(&Rect {
                x: 5,
                y: 99,
                width: 1,
                height: 2
            }),
            "{:?}",
            u.rects
        );
        assert_eq!(screen.frame().pixel(5, 99), 0x112233);

        // A new mode is a mode change with a full-frame rect.
        vbe_mode(&mut q, 800, 600, 16);
        let u = screen.refresh(&q, FbDirty::Pages(page_bits(&[])), t);
        assert!(u.mode_changed);
        assert_eq!(u.rects, vec![band(0, 600, 800)]);
    }

    /// Keeps the memory the VGA maps over its window, as the VMM's slot does.
    #[derive(Default)]
    struct KeepWindow(std::sync::Mutex<Option<crate::HostMemory>>);

    impl crate::display::vga::WindowMapper for KeepWindow {
        fn map_window(&self, mem: Option<&crate::HostMemory>) -> bool {
            *self.0.lock().unwrap() = mem.cloned();
            mem.is_some()
        }
    }

    /// Mode 13h through the registers, as the vga13 test guest sets it.
    fn mode13h(q: &mut Qxl) {
        let crtc = [
            0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x9c, 0x0e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff,
        ];
        q.vga_port_write(0x3c2, &[0x63]);
        for (i, v) in [0x03u8, 0x01, 0x0f, 0x00, 0x0e].into_iter().enumerate() {
            q.vga_port_write(0x3c4, &[i as u8, v]);
        }
        for (i, &v) in crtc.iter().enumerate() {
            q.vga_port_write(0x3d4, &[i as u8, v]);
        }
        for (i, v) in [0u8, 0, 0, 0, 0, 0x40, 0x05, 0x0f, 0xff]
            .into_iter()
            .enumerate()
        {
            q.vga_port_write(0x3ce, &[i as u8, v]);
        }
        q.vga_port_read(0x3da, &mut [0]);
        for i in 0..0x15u8 {
            let v = match i {
                0x10 => 0x41,
                0x12 => 0x0f,
                0x11 | 0x13 | 0x14 => 0,
                _ => i,
            };
            q.vga_port_write(0x3c0, &[i]);
            q.vga_port_write(0x3c0, &[v]);
        }
        q.vga_port_write(0x3c0, &[0x20]);
        q.vga_port_write(0x3c8, &[1]);
        for c in [0x3f, 0, 0] {
            q.vga_port_write(0x3c9, &[c]);
        }
    }

    #[test]
    fn mapped_mode13h_window_redraws_only_dirty_lines() {
        let mut q = Qxl::new(QxlConfig::default(), Vec::new(), Arc::new(NoIrq)).unwrap();
        let window = Arc::new(KeepWindow::default());
        q.vga_mut().set_window_mapper(window.clone()).unwrap();
        let mut screen = Screen::new();
        let t = Instant::now();
        mode13h(&mut q);
        assert!(q.vga().window_mapped());
        let mem = window.0.lock().unwrap().clone().expect("mapped");
        let u = screen.refresh_with_window(&q, FbDirty::Unknown, &FbDirty::Unknown, t);
        assert!(u.mode_changed);
        assert_eq!((screen.frame().width, screen.frame().height), (640, 400));

        // The guest stores colour 1 at (10, 100) of 320x200: no exit, no
        // generation move; only the window's page log (page 7) knows.
        let generation = q.vga().generation();
        mem.write(320 * 100 + 10, &[1]);
        assert_eq!(q.vga().generation(), generation);
        let pages = FbDirty::Pages(page_bits(&[7]));
        q.vga_mut().sync_window(&pages);
        let u = screen.refresh_with_window(&q, FbDirty::Unknown, &pages, t);
        // Page 7 is bytes 28672..32768: source lines 89..=102 (output rows
        // 178..206) are redrawn, and only the changed pixels reported.
        assert_eq!(
            u.rects,
            vec![Rect {
                x: 20,
                y: 200,
                width: 2,
                height: 2
            }]
        );
        assert!(!u.mode_changed);
        assert_eq!(screen.frame().pixel(20, 200), 0xff0000);
        assert_eq!(screen.frame().pixel(20, 202), 0);
        assert_eq!(screen.frame(), &q.render(false), "same as a whole render");

        // A page written with what it held: redrawn, nothing to send.
        mem.write(320 * 100 + 10, &[1]);
        q.vga_mut().sync_window(&pages);
        assert!(screen
            .refresh_with_window(&q, FbDirty::Unknown, &pages, t)
            .is_empty());
        // Nothing written: nothing sent. Without a log: compared whole.
        let none = FbDirty::Pages(page_bits(&[]));
        assert!(screen
            .refresh_with_window(&q, FbDirty::Unknown, &none, t)
            .is_empty());
        mem.write(0, &[1]);
        q.vga_mut().sync_window(&FbDirty::Unknown);
        let u = screen.refresh(&q, FbDirty::Unknown, t);
        assert_eq!(
            u.rects,
            vec![Rect {
                x: 0,
                y: 0,
                width: 2,
                height: 2
            }]
        );

        // Mode X (chain-4 off) takes the window back: the stores are kept.
        q.vga_port_write(0x3c4, &[4, 0x06]);
        assert!(!q.vga().window_mapped());
        assert!(window.0.lock().unwrap().is_none());
        q.vga_port_write(0x3c4, &[4, 0x0e]);
        let mut b = [0u8];
        q.vga_mem_read(320 * 100 + 10, &mut b);
        assert_eq!(b[0], 1);
    }
}
