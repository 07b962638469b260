//! Native-mode tests: a guest driver that works the card step by step as
//! Linux's qxl driver does (qxl_kms.c setup, qxl_cmd.c rings, qxl_draw.c
//! drawables, qxl_display.c cursor), checked against what the display model
//! and the release ring show afterwards.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::qxl::*;
use super::qxl_engine::{self, CursorEvent, CursorSink};
use super::screen::{Draw, FbDirty, Rect, Screen};
use crate::interrupt::test_util::RecordingLine;
use crate::pci;
use crate::pci::config::{BAR0, COMMAND};
use crate::pci::PciDevice;
use display_types::{BitsCopy, SolidFill};

const BAR0_BASE: u64 = 0xe000_0000;
const BAR1_BASE: u64 = 0xe400_0000;
const W: u32 = 64;
const H: u32 = 48;

struct Guest {
    q: Qxl,
    line: Arc<RecordingLine>,
    hdr: usize,
    /// Next free byte in BAR0's command pages (bump allocator).
    next: usize,
    release_cons: u32,
}

/// QXLPHYSICAL of BAR0 offset `off` in the main slot (id 1, generation 0),
/// which starts at BAR0: the offset is the address.
fn main_phys(off: usize) -> u64 {
    1u64 << 56 | off as u64
}

impl Guest {
    fn new() -> Self {
        let line = Arc::new(RecordingLine::default());
        let mut q = Qxl::new(QxlConfig::default(), Vec::new(), line.clone()).unwrap();
        pci::config_write(&mut q, BAR0, &(BAR0_BASE as u32).to_le_bytes());
        pci::config_write(&mut q, BAR0 + 4, &(BAR1_BASE as u32).to_le_bytes());
        pci::config_write(&mut q, COMMAND, &[0x03, 0x00]);
        let hdr = q.ram_header_offset();
        Self {
            q,
            line,
            hdr,
            next: DEFAULT_VGAMEM_SIZE,
            release_cons: 0,
        }
    }

    fn out(&mut self, port: u8, val: u8) {
        self.q.bar_write(BAR_IO, u64::from(port), &[val]);
    }
    fn hdr_u32(&self, field: usize) -> u32 {
        self.q.ram().read_u32(self.hdr + field)
    }
    fn set_hdr_u32(&self, field: usize, v: u32) {
        self.q.ram().write_u32(self.hdr + field, v);
    }
    fn set_hdr_u64(&self, field: usize, v: u64) {
        self.q.ram().write_u64(self.hdr + field, v);
    }

    /// Copy `bytes` into fresh BAR0 memory; its QXLPHYSICAL.
    fn put(&mut self, bytes: &[u8]) -> u64 {
        let off = self.next;
        self.q.ram().write(off as u64, bytes);
        self.next = (off + bytes.len()).next_multiple_of(64);
        main_phys(off)
    }

    /// The ISR: take int_pending, then UPDATE_IRQ.
    fn isr(&mut self) -> u32 {
        let p = self.hdr_u32(ram_off::INT_PENDING);
        self.set_hdr_u32(ram_off::INT_PENDING, 0);
        self.out(io::UPDATE_IRQ, 0);
        p
    }

    /// qxl_device_init + qxl_reinit_memslots + the first modeset.
    fn init(&mut self) {
        self.out(io::RESET, 0);
        let mask = INTERRUPT_DISPLAY | INTERRUPT_CURSOR | INTERRUPT_IO_CMD;
        self.set_hdr_u32(ram_off::INT_MASK, mask);
        self.set_hdr_u64(ram_off::MEM_SLOT, BAR0_BASE);
        self.set_hdr_u64(ram_off::MEM_SLOT + 8, BAR0_BASE + self.hdr as u64);
        self.out(io::MEMSLOT_ADD_ASYNC, 1);
        assert_eq!(self.isr(), INTERRUPT_IO_CMD);
        self.set_hdr_u64(ram_off::MEM_SLOT, BAR1_BASE);
        self.set_hdr_u64(
            ram_off::MEM_SLOT + 8,
            BAR1_BASE + self.q.vram().len() as u64,
        );
        self.out(io::MEMSLOT_ADD_ASYNC, 2);
        assert_eq!(self.isr(), INTERRUPT_IO_CMD);
        // qxl_io_create_primary: the shadow BO at the start of BAR0.
        let c = ram_off::CREATE_SURFACE;
        for (k, v) in [W, H, W * 4, 32, 0, 0, 1, 0].into_iter().enumerate() {
            self.set_hdr_u32(c + 4 * k, v);
        }
        self.set_hdr_u64(c + 32, main_phys(0));
        self.out(io::CREATE_PRIMARY_ASYNC, 0);
        assert_eq!(self.isr(), INTERRUPT_IO_CMD);
        assert!(!self.line.is_high());
    }

    /// qxl_ring_push on the command (or cursor) ring, notifying as asked.
    fn push(&mut self, ring: usize, notify_port: u8, data: u64, kind: u32) {
        let prod = self.hdr_u32(ring + 4);
        let cons = self.hdr_u32(ring + 12);
        assert!(prod.wrapping_sub(cons) < 32, "ring full in a test");
        let item = self.hdr + ring + 20 + (prod & 31) as usize * 16;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&data.to_le_bytes());
        b[8..12].copy_from_slice(&kind.to_le_bytes());
        self.q.ram().write(item as u64, &b);
        let prod = prod + 1;
        self.set_hdr_u32(ring + 4, prod);
        // Linux's mb() in qxl_ring_push: without it this thread may read
        // notify_on_prod before its store of prod is visible to the worker,
        // which (finding the ring empty) stores notify_on_prod = prod and
        // rereads the old prod: no notify, and the command waits for good.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if self.hdr_u32(ring + 8) == prod {
            self.out(notify_port, 0);
        }
    }

    fn push_cmd(&mut self, data: u64, kind: u32) {
        self.push(ram_off::CMD_RING, io::NOTIFY_CMD, data, kind);
    }

    /// qxl_garbage_collect: every released id, following the `next` chains.
    fn collect_releases(&mut self, by_id: &[(u64, u64)]) -> Vec<u64> {
        let ring = ram_off::RELEASE_RING;
        let mut ids = Vec::new();
        loop {
            let prod = self.hdr_u32(ring + 4);
            if self.release_cons == prod {
                self.set_hdr_u32(ring + 8, prod + 1);
                return ids;
            }
            let item = self.hdr + ring + 20 + (self.release_cons & 7) as usize * 8;
            let mut id = self.q.ram().read_u64(item);
            self.release_cons += 1;
            self.set_hdr_u32(ring + 12, self.release_cons);
            while id != 0 {
                ids.push(id);
                let addr = by_id.iter().find(|(i, _)| *i == id).expect("known id").1;
                let off = addr & ((1 << 48) - 1);
                id = self.q.ram().read_u64(off as usize);
            }
        }
    }

    fn settle(&self) {
        self.q.sync_worker();
    }
}

fn rect(left: i32, top: i32, right: i32, bottom: i32) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (k, v) in [top, left, bottom, right].into_iter().enumerate() {
        b[k * 4..k * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// A QXLDataChunk holding `data`, linking to `next`.
fn chunk(data: &[u8], next: u64) -> Vec<u8> {
    let mut c = (data.len() as u32).to_le_bytes().to_vec();
    c.extend_from_slice(&0u64.to_le_bytes());
    c.extend_from_slice(&next.to_le_bytes());
    c.extend_from_slice(data);
    c
}

/// QXLDrawable of `kind` with release id `id`, the union bytes `u`.
fn drawable(id: u64, kind: u8, bbox: [u8; 16], clip: Option<u64>, u: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 200];
    d[0..8].copy_from_slice(&id.to_le_bytes());
    d[13] = kind;
    d[12] = 1; // QXL_EFFECT_OPAQUE
    d[31..47].copy_from_slice(&bbox);
    if let Some(c) = clip {
        d[47..51].copy_from_slice(&1u32.to_le_bytes());
        d[51..59].copy_from_slice(&c.to_le_bytes());
    }
    for k in 0..3 {
        d[63 + 4 * k..67 + 4 * k].copy_from_slice(&(-1i32).to_le_bytes());
    }
    d[123..123 + u.len()].copy_from_slice(u);
    d
}

/// qxl_image_create: a top-down 32-bit bitmap in one chunk.
fn bitmap_image(g: &mut Guest, w: u32, h: u32, pixel: impl Fn(u32, u32) -> u32) -> u64 {
    let mut px = Vec::new();
    for y in 0..h {
        for x in 0..w {
            px.extend_from_slice(&pixel(x, y).to_le_bytes());
        }
    }
    let data = g.put(&chunk(&px, 0));
    let mut img = vec![0u8; 48];
    img[8] = 0; // BITMAP
    img[10..14].copy_from_slice(&w.to_le_bytes());
    img[14..18].copy_from_slice(&h.to_le_bytes());
    img[18] = 8; // 32BIT
    img[19] = 4; // TOP_DOWN
    img[20..24].copy_from_slice(&w.to_le_bytes());
    img[24..28].copy_from_slice(&h.to_le_bytes());
    img[28..32].copy_from_slice(&(w * 4).to_le_bytes());
    img[40..48].copy_from_slice(&data.to_le_bytes());
    g.put(&img)
}

fn copy_union(image: u64, w: i32, h: i32) -> Vec<u8> {
    let mut u = image.to_le_bytes().to_vec();
    u.extend_from_slice(&rect(0, 0, w, h));
    u.extend_from_slice(&(1u16 << 3).to_le_bytes()); // OP_PUT
    u
}

fn clip_rects(g: &mut Guest, rects: &[[u8; 16]]) -> u64 {
    let mut body = (rects.len() as u32).to_le_bytes().to_vec();
    body.extend(chunk(&rects.concat(), 0));
    g.put(&body)
}

#[derive(Default)]
struct Cursors(Mutex<Vec<CursorEvent>>);

impl CursorSink for Cursors {
    fn cursor(&self, ev: CursorEvent) {
        self.0.lock().unwrap().push(ev);
    }
}

#[derive(Default)]
struct Drawn(std::sync::atomic::AtomicU32);

impl qxl_engine::DrawNotify for Drawn {
    fn drawn(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The display model is told as soon as the worker has drawn a batch, so it
/// need not wait for its next periodic look.
#[test]
fn drawing_commands_notify_the_display_model() {
    let mut g = Guest::new();
    g.init();
    let drawn = Arc::new(Drawn::default());
    g.q.set_draw_notify(drawn.clone());
    let mut fill = 1u32.to_le_bytes().to_vec(); // SOLID
    fill.extend_from_slice(&0x0012_3456u32.to_le_bytes());
    fill.extend_from_slice(&[0; 12]);
    fill.extend_from_slice(&(1u16 << 3).to_le_bytes());
    let d = g.put(&drawable(21, 1, rect(0, 0, 8, 8), None, &fill));
    assert_eq!(drawn.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    g.push_cmd(d, 1);
    g.settle();
    assert!(drawn.0.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[test]
fn linux_dirty_fb_copy_fill_copy_bits_and_releases() {
    let mut g = Guest::new();
    g.init();
    let mut screen = Screen::new();
    let t = Instant::now();
    let u = screen.refresh(&g.q, FbDirty::Unknown, t);
    assert!(u.mode_changed);
    assert_eq!((screen.frame().width, screen.frame().height), (W, H));

    // qxl_draw_dirty_fb: bbox = union of two clips; src_area = the bbox's size.
    let img = bitmap_image(&mut g, 10, 10, |x, y| 0x0010_0000 * y + 0x100 * x + 7);
    let clips = clip_rects(&mut g, &[rect(10, 5, 14, 15), rect(16, 5, 20, 9)]);
    let d1 = g.put(&drawable(
        11,
        3,
        rect(10, 5, 20, 15),
        Some(clips),
        &copy_union(img, 10, 10),
    ));
    g.push_cmd(d1, 1);
    g.settle();
    let u = screen.refresh(&g.q, FbDirty::Unknown, t);
    assert!(!u.mode_changed);
    // A 1:1 bitmap copy is forwarded, one draw per clip rect, each taking
    // its part of the one bitmap.
    assert!(u.rects.is_empty(), "{:?}", u.rects);
    let copies: Vec<_> = u
        .draws
        .iter()
        .map(|d| match d {
            Draw::Copy(c) => (c.rect, c.src_x, c.src_y, c.image.width, c.image.height),
            d => panic!("{d:?}"),
        })
        .collect();
    assert_eq!(
        copies,
        [
            (Rect::new(10, 5, 4, 10), 0, 0, 10, 10),
            (Rect::new(16, 5, 4, 4), 6, 0, 10, 10)
        ]
    );
    let f = screen.frame();
    assert_eq!(f.pixel(10, 5), 7);
    assert_eq!(f.pixel(13, 14), 0x0090_0307);
    assert_eq!(f.pixel(14, 5), 0, "between the clip rects");
    assert_eq!(f.pixel(19, 8), 0x0030_0907);
    assert_eq!(f.pixel(19, 9), 0, "below the second clip rect");
    // Released: the id is in the ring, its `next` is 0, DISPLAY was raised.
    assert_ne!(g.isr() & INTERRUPT_DISPLAY, 0);
    let by_id = [(11, d1), (12, 0), (13, 0)];
    assert_eq!(g.collect_releases(&by_id), [11]);

    // A fill and a scroll pushed back to back: one batch, one chain.
    let mut fill = 1u32.to_le_bytes().to_vec(); // SOLID
    fill.extend_from_slice(&0x00ab_cdefu32.to_le_bytes());
    fill.extend_from_slice(&[0; 12]);
    fill.extend_from_slice(&(1u16 << 3).to_le_bytes());
    let d2 = g.put(&drawable(12, 1, rect(0, 40, 64, 48), None, &fill));
    // COPY_BITS: move rows 40..48 up to 30..38.
    let mut bits = 0i32.to_le_bytes().to_vec();
    bits.extend_from_slice(&40i32.to_le_bytes());
    let d3 = g.put(&drawable(13, 4, rect(0, 30, 64, 38), None, &bits));
    g.q.engine().lock().unwrap().process_cmd_ring(0); // nothing taken
    g.push_cmd(d2, 1);
    g.push_cmd(d3, 1);
    g.settle();
    let by_id = [(11, d1), (12, d2), (13, d3)];
    assert_eq!(g.collect_releases(&by_id), [12, 13]);
    let u = screen.refresh(&g.q, FbDirty::Unknown, t);
    // Both forwarded, in order: the scroll's source is only the fill's
    // pixels and black, nothing a dirty image still has to bring.
    assert!(u.rects.is_empty(), "{:?}", u.rects);
    assert_eq!(
        u.draws,
        [
            Draw::Fill(SolidFill {
                rect: Rect::new(0, 40, 64, 8),
                color: 0xab_cdef
            }),
            Draw::CopyBits(BitsCopy {
                rect: Rect::new(0, 30, 64, 8),
                src_x: 0,
                src_y: 40
            })
        ]
    );
    let f = screen.frame();
    assert_eq!(f.pixel(0, 47), 0xab_cdef);
    assert_eq!(f.pixel(63, 30), 0xab_cdef);
    assert_eq!(f.pixel(63, 38), 0);

    // UPDATE_AREA writes the canvas back into the primary's guest memory.
    g.set_hdr_u32(ram_off::UPDATE_AREA, 0);
    g.set_hdr_u32(ram_off::UPDATE_AREA + 4, 0);
    g.set_hdr_u32(ram_off::UPDATE_AREA + 8, H);
    g.set_hdr_u32(ram_off::UPDATE_AREA + 12, W);
    g.set_hdr_u32(ram_off::UPDATE_SURFACE, 0);
    g.out(io::UPDATE_AREA_ASYNC, 0);
    assert_eq!(
        g.q.ram().read_u32((5 * W * 4 + 10 * 4) as usize),
        0xff00_0007
    );
    assert_eq!(g.q.ram().read_u32((47 * W * 4) as usize), 0xffab_cdef);

    // DESTROY_PRIMARY keeps the picture until the next primary.
    g.out(io::DESTROY_PRIMARY_ASYNC, 0);
    assert!(screen.refresh(&g.q, FbDirty::Unknown, t).is_empty());
    assert_eq!(screen.frame().pixel(0, 47), 0xab_cdef);
    g.out(io::CREATE_PRIMARY_ASYNC, 0);
    let u = screen.refresh(&g.q, FbDirty::Unknown, t);
    assert!(u.mode_changed);
    // KEEP_DATA: the new primary starts from the guest memory written back.
    assert_eq!(screen.frame().pixel(0, 47), 0xab_cdef);
}

#[test]
fn hostile_commands_are_dropped_and_still_released() {
    let mut g = Guest::new();
    g.init();
    let mut ids = Vec::new();
    // A chunk chain that loops on itself.
    let at = g.next;
    let looped = main_phys(at);
    g.put(&chunk(&[1; 8], looped));
    let mut img = vec![0u8; 48];
    img[10] = 100; // 100x100
    img[14] = 100;
    img[18] = 8;
    img[19] = 4;
    img[20] = 100;
    img[24] = 100;
    img[28..32].copy_from_slice(&400u32.to_le_bytes());
    img[40..48].copy_from_slice(&looped.to_le_bytes());
    let img = g.put(&img);
    let d = g.put(&drawable(
        21,
        3,
        rect(0, 0, 100, 100),
        None,
        &copy_union(img, 100, 100),
    ));
    ids.push((21, d));
    g.push_cmd(d, 1);
    // An image outside every slot, a bitmap far too large, a bad clip type,
    // a bad command type, a drawable straddling the end of the slot.
    let outside = g.put(&drawable(
        22,
        3,
        rect(0, 0, 8, 8),
        None,
        &copy_union(1 << 56, 8, 8),
    ));
    ids.push((22, outside));
    g.push_cmd(outside, 1);
    let mut huge = vec![0u8; 48];
    huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    huge[18] = 8;
    huge[20..24].copy_from_slice(&16384u32.to_le_bytes());
    huge[24..28].copy_from_slice(&16384u32.to_le_bytes());
    huge[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    let huge = g.put(&huge);
    let d = g.put(&drawable(
        23,
        3,
        rect(0, 0, 8, 8),
        None,
        &copy_union(huge, 8, 8),
    ));
    ids.push((23, d));
    g.push_cmd(d, 1);
    let mut bad_clip = drawable(24, 1, rect(0, 0, 8, 8), None, &[1, 0, 0, 0, 0xff]);
    bad_clip[47] = 7;
    let d = g.put(&bad_clip);
    ids.push((24, d));
    g.push_cmd(d, 1);
    let d = g.put(&25u64.to_le_bytes());
    ids.push((25, d));
    g.push_cmd(d, 99);
    g.push_cmd(main_phys(g.hdr - 100), 1);
    g.settle();
    let mut got = g.collect_releases(&ids);
    got.sort();
    assert_eq!(got, [21, 22, 23, 24, 25]);
    let mut screen = Screen::new();
    screen.refresh(&g.q, FbDirty::Unknown, Instant::now());
    assert!(screen.frame().pixels.iter().all(|&p| p == 0));
}

#[test]
fn cursor_ring_set_move_hide() {
    let mut g = Guest::new();
    g.init();
    let sink = Arc::new(Cursors::default());
    g.q.set_cursor_sink(sink.clone());
    // qxl_cursor_atomic_update: an ALPHA 4x4 shape, hot spot (1, 2).
    let mut shape = 7u64.to_le_bytes().to_vec();
    for v in [0u16, 4, 4, 1, 2] {
        shape.extend_from_slice(&v.to_le_bytes());
    }
    shape.extend_from_slice(&64u32.to_le_bytes());
    let px: Vec<u8> = (0..16u32)
        .flat_map(|i| (0xff00_0000 | i).to_le_bytes())
        .collect();
    shape.extend(chunk(&px, 0));
    let shape = g.put(&shape);
    let mut set = 31u64.to_le_bytes().to_vec();
    set.push(0); // SET
    set.extend_from_slice(&5i16.to_le_bytes());
    set.extend_from_slice(&6i16.to_le_bytes());
    set.push(1);
    set.extend_from_slice(&shape.to_le_bytes());
    set.resize(150, 0);
    let set = g.put(&set);
    let mut mv = 32u64.to_le_bytes().to_vec();
    mv.push(1); // MOVE
    mv.extend_from_slice(&20i16.to_le_bytes());
    mv.extend_from_slice(&30i16.to_le_bytes());
    mv.resize(150, 0);
    let mv = g.put(&mv);
    let mut hide = 33u64.to_le_bytes().to_vec();
    hide.push(2);
    hide.resize(150, 0);
    let hide = g.put(&hide);
    for c in [set, mv, hide] {
        g.push(ram_off::CURSOR_RING, io::NOTIFY_CURSOR, c, 3);
    }
    g.settle();
    let ev = sink.0.lock().unwrap().clone();
    assert_eq!(ev.len(), 3);
    match &ev[0] {
        CursorEvent::Set {
            shape,
            x: 5,
            y: 6,
            visible: true,
        } => {
            assert_eq!(
                (shape.width, shape.height, shape.hot_x, shape.hot_y),
                (4, 4, 1, 2)
            );
            assert_eq!(shape.pixels[5], 0xff00_0005);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ev[1], CursorEvent::Move { x: 20, y: 30 });
    assert_eq!(ev[2], CursorEvent::Hide);
    // The folded state a new client would get: the shape at 20,30, hidden.
    let engine = g.q.engine().clone();
    let e = qxl_engine::lock(&engine);
    assert!(matches!(
        e.cursor(),
        Some(CursorEvent::Set {
            x: 20,
            y: 30,
            visible: false,
            ..
        })
    ));
    drop(e);
    assert_eq!(
        g.collect_releases(&[(31, set), (32, mv), (33, hide)]),
        [31, 32, 33]
    );
    // Reset tells the sink to go back to its default cursor.
    g.out(io::RESET, 0);
    assert_eq!(sink.0.lock().unwrap().last(), Some(&CursorEvent::Reset));
}

#[test]
fn client_monitors_config_as_linux_reads_it() {
    use display_types::{Monitor, MonitorLayout};
    let mut g = Guest::new();
    let layout = MonitorLayout::new(vec![
        Monitor {
            id: 0,
            x: 0,
            y: 0,
            width: 1280,
            height: 800,
        },
        Monitor {
            id: 1,
            x: 1280,
            y: 0,
            width: 1024,
            height: 768,
        },
    ])
    .unwrap();
    // Before the driver unmasks the interrupt nothing is written.
    assert!(!g.q.takes_client_monitors_config());
    assert!(!g.q.client_monitors_config(&layout, 2));
    g.init();
    g.set_hdr_u32(
        ram_off::INT_MASK,
        INTERRUPT_DISPLAY | INTERRUPT_CURSOR | INTERRUPT_IO_CMD | INTERRUPT_CLIENT_MONITORS_CONFIG,
    );
    assert!(g.q.takes_client_monitors_config());
    assert!(g.q.client_monitors_config(&layout, 2));
    assert!(g.line.is_high());
    assert_eq!(g.isr(), INTERRUPT_CLIENT_MONITORS_CONFIG);
    // qxl_display_copy_rom_client_monitors_config: CRC first, then the heads.
    let rom = |g: &mut Guest, off: usize| {
        let mut b = [0u8; 4];
        g.q.bar_read(BAR_ROM, off as u64, &mut b);
        u32::from_le_bytes(b)
    };
    let at = rom_off::CLIENT_MONITORS_CONFIG;
    let mut cfg = Vec::new();
    for k in (0..CLIENT_MONITORS_CONFIG_SIZE).step_by(4) {
        cfg.extend_from_slice(&rom(&mut g, at + k).to_le_bytes());
    }
    assert_eq!(
        rom(&mut g, rom_off::CLIENT_MONITORS_CONFIG_CRC),
        client_monitors_crc(&cfg)
    );
    assert_eq!(u16::from_le_bytes([cfg[0], cfg[1]]), 2);
    let head = |i: usize, k: usize| {
        let o = 4 + i * 16 + k * 4;
        u32::from_le_bytes([cfg[o], cfg[o + 1], cfg[o + 2], cfg[o + 3]])
    };
    // QXLURect {top, left, bottom, right}.
    assert_eq!(
        [head(0, 0), head(0, 1), head(0, 2), head(0, 3)],
        [0, 0, 800, 1280]
    );
    assert_eq!(
        [head(1, 0), head(1, 1), head(1, 2), head(1, 3)],
        [0, 1280, 768, 2304]
    );
    // A sparse config (spice-gtk with the agent's sparse-monitors capability):
    // head 1 alone in slot 1 of three, slots 0 and 2 all zero.
    let sparse = MonitorLayout::new(vec![layout.monitors()[1]]).unwrap();
    assert!(g.q.client_monitors_config(&sparse, 3));
    assert_eq!(g.isr(), INTERRUPT_CLIENT_MONITORS_CONFIG);
    let mut cfg = Vec::new();
    for k in (0..CLIENT_MONITORS_CONFIG_SIZE).step_by(4) {
        cfg.extend_from_slice(&rom(&mut g, at + k).to_le_bytes());
    }
    assert_eq!(u16::from_le_bytes([cfg[0], cfg[1]]), 3);
    assert_eq!(&cfg[4..20], &[0; 16]);
    assert_eq!(
        cfg[20..36],
        [0u32, 1280, 768, 2304]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()[..]
    );
    assert!(cfg[36..].iter().all(|&b| b == 0));
    assert_eq!(
        rom(&mut g, rom_off::CLIENT_MONITORS_CONFIG_CRC),
        client_monitors_crc(&cfg)
    );
    // More slots than the ROM has: 64, as QEMU caps them.
    assert!(g.q.client_monitors_config(&sparse, 300));
    assert_eq!(rom(&mut g, at) & 0xffff, 64);
    // Old drivers' all-ones mask gets nothing.
    g.set_hdr_u32(ram_off::INT_MASK, u32::MAX);
    assert!(!g.q.takes_client_monitors_config());
    assert!(!g.q.client_monitors_config(&layout, 2));
    // The checksum is QEMU's (zlib crc32(~0) ^ ~0).
    assert_eq!(client_monitors_crc(b"123456789"), 0x2dfd_2d88);
}

#[path = "qxl_ops_tests.rs"]
mod ops;
