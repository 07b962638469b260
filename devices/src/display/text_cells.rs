//! Text screens redrawn cell by cell.
//!
//! Typing on a text console changes a character and the cursor position, but
//! every write traps and moves the VGA's generation, and rendering all of a
//! 720x400 screen and comparing it pixel by pixel took the display thread about
//! half a millisecond, 30 times a second. QEMU's `vga_draw_text` keeps a copy of
//! the cells instead; so does this: a key per cell (character, attribute,
//! cursor, blink) and the look they are drawn with (palette, fonts, geometry,
//! cursor shape). While the look holds, only cells whose key changed are drawn,
//! and their rows are what changed.

use super::render::{Frame, TextLook};
use super::vga::Vga;
use super::Rect;

#[derive(Default)]
pub struct TextCells {
    look: Option<TextLook>,
    keys: Vec<u32>,
}

impl TextCells {
    /// Forget what was drawn (the frame was drawn by someone else).
    pub fn forget(&mut self) {
        self.look = None;
        self.keys.clear();
    }

    /// If `frame` holds this text screen as last drawn or remembered here and
    /// the look is unchanged, redraws the cells that changed and returns their
    /// boxes (one per text row that changed, spanning its changed columns).
    /// `None` when it cannot: not a text mode, a new look, or nothing known; the
    /// caller then draws the frame itself and calls [`TextCells::remember`].
    pub fn redraw_changed(
        &mut self,
        vga: &Vga,
        blink_phase: bool,
        frame: &mut Frame,
    ) -> Option<Vec<Rect>> {
        let look = TextLook::of(vga)?;
        if self.look.as_ref() != Some(&look) {
            return None;
        }
        let (cols, rows, cell_w, cell_h) = look.size();
        if frame.width != cols * cell_w
            || frame.height != rows * cell_h
            || self.keys.len() != (cols * rows) as usize
        {
            return None;
        }
        let drawn = look.in_blink_phase(blink_phase);
        let mut rects = Vec::new();
        let mut row_span: Option<(u32, u32)> = None;
        let mut flush = |span: &mut Option<(u32, u32)>, cy: u32| {
            if let Some((first, last)) = span.take() {
                rects.push(Rect {
                    x: first * cell_w,
                    y: cy * cell_h,
                    width: (last - first + 1) * cell_w,
                    height: cell_h,
                });
            }
        };
        let mut current_row = 0;
        let keys = &mut self.keys;
        look.for_each_cell(vga, |cx, cy, src| {
            if cy != current_row {
                flush(&mut row_span, current_row);
                current_row = cy;
            }
            let key = look.cell_key(vga, src, blink_phase);
            let slot = &mut keys[(cy * cols + cx) as usize];
            if *slot != key {
                *slot = key;
                drawn.draw_cell(vga, frame, cx, cy, src);
                row_span = Some(match row_span {
                    Some((first, _)) => (first, cx),
                    None => (cx, cx),
                });
            }
        });
        flush(&mut row_span, current_row);
        Some(rects)
    }

    /// Record that `frame` now shows `vga`'s text screen in `blink_phase`
    /// (drawn whole by the caller); forgets if it is not a text screen.
    pub fn remember(&mut self, vga: &Vga, blink_phase: bool) {
        let Some(look) = TextLook::of(vga) else {
            self.forget();
            return;
        };
        let mut keys = Vec::with_capacity(self.keys.capacity());
        look.for_each_cell(vga, |_, _, src| {
            keys.push(look.cell_key(vga, src, blink_phase))
        });
        self.keys = keys;
        self.look = Some(look);
    }
}

#[cfg(test)]
mod tests {
    use super::super::render;
    use super::super::render::tests::{mode3 as mode3_with_font, put as put_cell};
    use super::super::screen::diff;
    use super::super::vga::tests::outw_idx;
    use super::*;

    fn set_cursor(vga: &mut Vga, cell: u64) {
        outw_idx(vga, 0x3d4, 0x0e, (cell >> 8) as u8);
        outw_idx(vga, 0x3d4, 0x0f, cell as u8);
    }

    /// Renders whole, as the reference the incremental frame must equal.
    fn whole(vga: &Vga, blink: bool) -> Frame {
        render::render(vga, &[0u8; 0][..], blink)
    }

    fn start(vga: &Vga, blink: bool) -> (TextCells, Frame) {
        let mut cells = TextCells::default();
        let frame = whole(vga, blink);
        cells.remember(vga, blink);
        (cells, frame)
    }

    #[test]
    fn a_typed_character_redraws_its_cell_and_the_moved_cursor() {
        let mut vga = mode3_with_font();
        set_cursor(&mut vga, 0);
        let (mut cells, mut frame) = start(&vga, true);
        put_cell(&mut vga, 0, b'A', 0x07);
        set_cursor(&mut vga, 1);
        let rects = cells.redraw_changed(&vga, true, &mut frame).unwrap();
        assert_eq!(
            rects,
            vec![Rect {
                x: 0,
                y: 0,
                width: 18,
                height: 16
            }]
        );
        assert_eq!(frame, whole(&vga, true));
        // Nothing changed: nothing drawn.
        assert_eq!(cells.redraw_changed(&vga, true, &mut frame), Some(vec![]));
    }

    #[test]
    fn blinking_redraws_only_the_cursor_and_blinking_cells() {
        let mut vga = mode3_with_font();
        put_cell(&mut vga, 80 * 3 + 5, b'B', 0x8f);
        set_cursor(&mut vga, 80 * 10 + 7);
        let (mut cells, mut frame) = start(&vga, true);
        let rects = cells.redraw_changed(&vga, false, &mut frame).unwrap();
        let reference = whole(&vga, false);
        assert_eq!(frame, reference);
        assert_eq!(rects.len(), 2, "{rects:?}");
        assert!(rects.iter().all(|r| r.width == 9 && r.height == 16));
    }

    #[test]
    fn a_new_look_or_mode_is_left_to_the_caller() {
        let mut vga = mode3_with_font();
        let (mut cells, mut frame) = start(&vga, true);
        // A palette change: every cell may look different.
        vga.port_write(0x3c8, &[7], &mut [0u8; 0][..]);
        for component in [0x3f, 0, 0] {
            vga.port_write(0x3c9, &[component], &mut [0u8; 0][..]);
        }
        assert_eq!(cells.redraw_changed(&vga, true, &mut frame), None);
        // A rewritten glyph too.
        let mut vga = mode3_with_font();
        let (mut cells, mut frame) = start(&vga, true);
        vga.vram[b'A' as usize * 128 + 2] ^= 0xff;
        assert_eq!(cells.redraw_changed(&vga, true, &mut frame), None);
        // And a frame of another size.
        let vga = mode3_with_font();
        let (mut cells, _) = start(&vga, true);
        let mut small = Frame::default();
        assert_eq!(cells.redraw_changed(&vga, true, &mut small), None);
    }

    #[test]
    fn incremental_frames_match_whole_renders_through_a_session() {
        let mut vga = mode3_with_font();
        let (mut cells, mut frame) = start(&vga, true);
        let mut blink = true;
        for i in 0..300u64 {
            let cell = (i * 37) % 2000;
            put_cell(&mut vga, cell, b'a' + (i % 26) as u8, (i % 256) as u8);
            set_cursor(&mut vga, (cell + 1) % 2000);
            if i % 7 == 0 {
                blink = !blink;
            }
            let before = frame.clone();
            let rects = cells.redraw_changed(&vga, blink, &mut frame).unwrap();
            let reference = whole(&vga, blink);
            assert_eq!(frame, reference, "step {i}");
            // Every pixel that changed is inside a reported box.
            for changed in diff(&before, &frame) {
                assert!(
                    rects.iter().any(|r| r.x <= changed.x
                        && r.y <= changed.y
                        && r.x + r.width >= changed.x + changed.width
                        && r.y + r.height >= changed.y + changed.height),
                    "step {i}: {changed:?} not in {rects:?}"
                );
            }
        }
    }
}
