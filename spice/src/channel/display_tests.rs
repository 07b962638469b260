//! The display channel's unit tests: heads, queued draws, resizes, wire
//! layouts of forwarded draws.

use super::*;

fn frame(width: u32, height: u32, len: usize) -> Frame {
    Frame {
        width,
        height,
        pixels: vec![0; len],
    }
}

#[test]
fn a_resize_marks_the_whole_new_surface_pending() {
    let mut hub = Head::default();
    let c = hub.register();
    hub.update(&frame(100, 80, 8000), &[Rect::full(100, 80)], &[]);
    // The task sent A.
    lock(&c.pending).take();
    // A → B → A2 before the task runs again: the task still has a 100x80
    // surface, so only the pending region can make it redraw.
    hub.update(&frame(320, 200, 64000), &[], &[]);
    hub.update(&frame(100, 80, 8000), &[], &[]);
    assert_eq!(lock(&c.pending).take(), vec![Rect::full(100, 80)]);
}

#[test]
fn updates_copy_only_dirty_pixels() {
    let mut hub = Head::default();
    let mut f = frame(8, 4, 32);
    hub.update(&f, &[], &[]);
    // Pixels outside the dirty rectangle are not taken: the frontend promised
    // nothing changed there.
    f.pixels.iter_mut().for_each(|p| *p = 7);
    hub.update(&f, &[Rect::new(2, 1, 3, 2)], &[]);
    let s = hub.surface.as_ref().unwrap();
    let sevens: Vec<(u32, u32)> = (0..32)
        .filter(|i| s.pixels[*i as usize] == 7)
        .map(|i| (i % 8, i / 8))
        .collect();
    assert_eq!(sevens, vec![(2, 1), (3, 1), (4, 1), (2, 2), (3, 2), (4, 2)]);
}

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
fn fills_are_queued_not_dirty_and_copied_into_the_surface() {
    let mut hub = Head::default();
    let c = hub.register();
    let mut f = frame(8, 4, 32);
    hub.update(&f, &[Rect::full(8, 4)], &[]);
    lock(&c.pending).take();
    f.pixels.iter_mut().for_each(|p| *p = 9);
    let fill = SolidFill {
        rect: Rect::new(1, 1, 2, 2),
        color: 9,
    };
    // Clipped to the surface; one entirely outside it is dropped.
    let wide = SolidFill {
        rect: Rect::new(6, 0, 10, 1),
        color: 9,
    };
    let outside = SolidFill {
        rect: Rect::new(20, 0, 1, 1),
        color: 9,
    };
    hub.update(&f, &[], &[fill, wide, outside].map(Queued::fill));
    assert!(lock(&c.pending).take().is_empty());
    let clipped = SolidFill {
        rect: Rect::new(6, 0, 2, 1),
        color: 9,
    };
    assert_eq!(
        *lock(&c.draws),
        vec![Queued::fill(fill), Queued::fill(clipped)]
    );
    // The head's copy has the filled pixels (for new clients and images).
    let s = hub.surface.as_ref().unwrap();
    assert_eq!((s.pixel(1, 1), s.pixel(2, 2), s.pixel(3, 3)), (9, 9, 0));
    // A resize drops the queued fills: the whole surface is due.
    hub.update(&frame(4, 4, 16), &[], &[]);
    assert!(lock(&c.draws).is_empty());
    assert_eq!(lock(&c.pending).take(), vec![Rect::full(4, 4)]);
}

#[test]
fn too_many_queued_draws_become_rectangles() {
    let mut hub = Head::default();
    let c = hub.register();
    let f = frame(64, 64, 64 * 64);
    hub.update(&f, &[], &[]);
    lock(&c.pending).take();
    let fills: Vec<Queued> = (0..MAX_QUEUED_DRAWS as u32 + 1)
        .map(|i| {
            Queued::fill(SolidFill {
                rect: Rect::new(i % 64, 0, 1, 1),
                color: 1,
            })
        })
        .collect();
    hub.update(&f, &[], &fills);
    assert!(lock(&c.draws).is_empty());
    assert!(!lock(&c.pending).take().is_empty());
}

fn bits(rect: Rect, src_x: u32, src_y: u32) -> Queued {
    Queued {
        draw: Draw::CopyBits(crate::BitsCopy { rect, src_x, src_y }),
        key: None,
    }
}

#[test]
fn copy_bits_reading_pending_pixels_become_rectangles() {
    let mut hub = Head::default();
    let c = hub.register();
    let f = frame(64, 64, 64 * 64);
    hub.update(&f, &[], &[]);
    lock(&c.pending).take();
    // Pending since an earlier update: the client has not got it.
    let dirty = Rect::new(0, 0, 8, 8);
    hub.update(&f, &[dirty], &[]);
    // Reads the pending rectangle: its destination goes as pixels; a
    // copy reading that destination next falls back too; one reading
    // clean pixels stays; this update's own rectangle (newer than its
    // draws) does not count.
    let reads_dirty = bits(Rect::new(20, 0, 10, 10), 4, 4);
    let reads_fallback = bits(Rect::new(40, 40, 4, 4), 25, 5);
    let clean = bits(Rect::new(0, 30, 10, 10), 0, 50);
    let own = Rect::new(0, 50, 10, 10);
    hub.update(&f, &[own], &[reads_dirty, reads_fallback, clean.clone()]);
    assert_eq!(*lock(&c.draws), vec![clean]);
    let mut pending = lock(&c.pending).take();
    pending.sort_by_key(|r| (r.y, r.x));
    assert_eq!(
        pending,
        vec![
            dirty,
            Rect::new(20, 0, 10, 10),
            Rect::new(40, 40, 4, 4),
            own
        ]
    );
}

#[test]
fn copy_bits_are_clipped_to_where_source_and_destination_fit() {
    let mut hub = Head::default();
    let c = hub.register();
    let f = frame(16, 16, 256);
    hub.update(&f, &[], &[]);
    lock(&c.pending).take();
    let over = bits(Rect::new(8, 0, 10, 4), 12, 0);
    let outside = bits(Rect::new(0, 0, 4, 4), 16, 0);
    hub.update(&f, &[], &[over, outside]);
    assert_eq!(*lock(&c.draws), vec![bits(Rect::new(8, 0, 4, 4), 12, 0)]);
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

#[test]
fn register_prunes_ended_clients() {
    let mut hub = Head::default();
    for _ in 0..100 {
        drop(hub.register());
    }
    let _live = hub.register();
    assert_eq!(hub.clients.len(), 1);
}

#[test]
fn malformed_frames_are_dropped() {
    let mut hub = Head::default();
    let c = hub.register();
    hub.update(&frame(10, 10, 100), &[Rect::full(10, 10)], &[]);
    lock(&c.pending).take();
    for bad in [
        frame(10, 10, 99),
        frame(10, 10, 101),
        frame(0, 10, 0),
        frame(u32::MAX, u32::MAX, 1),
    ] {
        hub.update(&bad, &[Rect::full(10, 10)], &[]);
        let s = hub.surface.as_ref().unwrap();
        assert_eq!((s.width, s.height, s.pixels.len()), (10, 10, 100));
        assert!(lock(&c.pending).take().is_empty());
    }
}

#[test]
fn heads_are_separate() {
    let d = DisplayChannel::new(2, false, JpegMode::Auto, StreamingVideo::Filter);
    d.update(1, &frame(4, 3, 12), &[], &[]);
    d.update(7, &frame(4, 3, 12), &[], &[]);
    assert_eq!(
        (d.size(0), d.size(1), d.size(7)),
        (None, Some((4, 3)), None)
    );
    assert_eq!(d.ids(), vec![0, 1]);
}
