//! qxl-native: drives the QXL card (1b36:0100) the way Linux's qxl DRM
//! driver does, and draws a known picture (images/src/qxl_scene.rs).
//!
//! 1. qxl_device_init: ROM magic and layout, the RAM header's magic, INTx
//!    routed through the IOAPIC, QXL_IO_RESET, int_mask, then
//!    qxl_reinit_memslots: MEMSLOT_ADD_ASYNC for the main slot (BAR0 up to
//!    the RAM header) and the surfaces slot (BAR1), each completing with the
//!    IO_CMD interrupt (the first one checked on its vector too).
//! 2. Modeset: CREATE_PRIMARY_ASYNC (640x480 xRGB in BAR0), then
//!    MONITORS_CONFIG_ASYNC with one head.
//! 3. Drawing as qxl_draw_dirty_fb and friends: QXL_CMD_DRAW drawables
//!    pushed on the command ring (qxl_ring_push, NOTIFY_CMD when
//!    notify_on_prod says so): FILL, COPY of 32-bit bitmaps in one chunk and
//!    in three chunks of different sizes under two clip rects, 16- and 24-bit bitmaps,
//!    COPY_BITS, FILL.
//! 4. The cursor ring: a 32x32 ALPHA cursor SET, then a MOVE.
//! 5. FLUSH_SURFACES_ASYNC, NOTIFY_OOM, and the release ring walked as
//!    qxl_garbage_collect does (ids chained through `next`): every drawable
//!    and the MOVE come back exactly once, with a DISPLAY interrupt bit.
//!
//! Prints `QXL-NATIVE-READY`, waits for a byte on COM1 (the host takes its
//! screenshots meanwhile), then `SPICEBOX-QXL-NATIVE-OK`. An `a` instead
//! runs the benchmark's animation (10 s of moving copies and fills at 30
//! frames/s, drawables recycled through the release ring), a `d` the same
//! as a window drag, a `v` a video (10 s of a changing photo-like 256x192
//! bitmap COPYed into one box at 25 frames/s), a `w` the video under a
//! dialog (two FILLs over a corner after each frame from frame 50, another
//! corner from frame 100), an `f` one FILL (its latency
//! probe), a `b` blends (a colour-keyed TRANSPARENT and two ALPHA_BLENDs, as
//! Xorg's and Windows' qxl drivers draw them), an `o` the
//! ROP3/STROKE/TEXT/COMPOSITE drawables of qxl-native/ops.rs, a `c` 24
//! cursor SETs alternating two shapes 100 ms apart (then
//! `QXL-CURSORS-DONE`); each then waits again.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use guest_rt::irq::{self, ioapic, lapic};
use guest_rt::mmio::Mmio;
use guest_rt::{check, fail, pci, port, println, serial, time, OrFail};

#[allow(dead_code)]
mod scene {
    include!("../../../../src/qxl_scene.rs");
}

#[path = "qxl-native/ops.rs"]
mod ops;
#[path = "qxl-native/ops_blend.rs"]
mod ops_blend;

guest_rt::guest!("QXL-NATIVE", main);

const WAIT: Duration = Duration::from_secs(10);
const VECTOR: u8 = 0x50;

const ROM_MAGIC: u32 = 0x4f52_5851;
const RAM_MAGIC: u32 = 0x4152_5851;
// QXLRom offsets.
const ROM_PAGES_OFFSET: u64 = 32;
const ROM_RAM_HEADER_OFFSET: u64 = 44;
const ROM_SLOTS_START: u64 = 64;
const ROM_SLOT_GEN_BITS: u64 = 66;
const ROM_SLOT_ID_BITS: u64 = 67;
const ROM_SLOT_GENERATION: u64 = 68;
// QXLRam offsets.
const INT_PENDING: u64 = 4;
const INT_MASK: u64 = 8;
const CMD_RING: u64 = 4108;
const CURSOR_RING: u64 = 4640;
const RELEASE_RING: u64 = 5172;
const MEM_SLOT: u64 = 5276;
const CREATE_SURFACE: u64 = 5292;
const MONITORS_CONFIG: u64 = 5340;
// Ports.
const IO_NOTIFY_CMD: u16 = 0;
const IO_NOTIFY_CURSOR: u16 = 1;
const IO_NOTIFY_OOM: u16 = 4;
const IO_UPDATE_IRQ: u16 = 3;
const IO_RESET: u16 = 5;
const IO_MEMSLOT_ADD_ASYNC: u16 = 17;
const IO_CREATE_PRIMARY_ASYNC: u16 = 18;
const IO_FLUSH_SURFACES_ASYNC: u16 = 22;
const IO_MONITORS_CONFIG_ASYNC: u16 = 24;
// Interrupts.
const INT_DISPLAY: u32 = 1;
const INT_CURSOR: u32 = 2;
const INT_IO_CMD: u32 = 4;
const INT_CLIENT_MONITORS_CONFIG: u32 = 32;

const CMD_DRAW: u32 = 1;
const CMD_CURSOR: u32 = 3;
const DRAW_FILL: u8 = 1;
const DRAW_COPY: u8 = 3;
const COPY_BITS: u8 = 4;
const DRAW_TRANSPARENT: u8 = 12;
const DRAW_ALPHA_BLEND: u8 = 13;
const ROPD_OP_PUT: u16 = 1 << 3;

/// Animation ('a' on COM1): frames per second and how many, drawable slots
/// reused once released (ids from ANIM_ID_BASE up, never reused).
const ANIM_FPS: u64 = 30;
const ANIM_FRAMES: u64 = 300;
const POOL_SLOTS: usize = 192;
const SLOT_BYTES: u64 = 208;
const ANIM_ID_BASE: u64 = 1 << 32;
/// Cursor cycle ('c' on COM1): SETs this far apart, so every one reaches
/// a client, not just the latest (a server may coalesce SETs it has not sent
/// yet; 250 ms leaves room for a loaded host).
const CURSOR_CYCLE_GAP: Duration = Duration::from_millis(250);
/// Video frames in flight at most: each has its own bitmap, rewritten only
/// once the device released the drawable that showed it.
const VIDEO_SLOTS: usize = 4;

type Rect = (i32, i32, i32, i32);

struct Card {
    ram: Mmio,
    io: u16,
    hdr: u64,
    bar0: u64,
    /// QXLPHYSICAL high bits of the main slot.
    main_high: u64,
    /// Next free offset in BAR0's command pages.
    next: u64,
    /// (release id, BAR0 offset of its command) of everything pushed.
    pushed: Vec<(u64, u64)>,
    seen_display: bool,
    /// The release ring's consumer as this driver last left it.
    release_cons: u32,
    /// The animation's reusable drawable slots (BAR0 offset of the first)
    /// and the id each holds until the device releases it (0: free).
    pool: u64,
    pool_ids: [u64; POOL_SLOTS],
    next_anim_id: u64,
    /// The video's bitmaps: BAR0 offsets of each QXLImage and its pixels.
    video_slots: Vec<(u64, u64)>,
}

fn bytes_of_rect(r: Rect) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (k, v) in [r.1, r.0, r.3, r.2].into_iter().enumerate() {
        b[k * 4..k * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// A QXLCursor: header (`unique`, ALPHA, CURSOR_SIDE square, hot spot
/// 0,0), data size, then the ARGB pixels in one chunk.
fn cursor_shape(unique: u64, argb: &[u32]) -> Vec<u8> {
    let mut shape = Vec::new();
    shape.extend_from_slice(&unique.to_le_bytes());
    let side16 = scene::CURSOR_SIDE as u16;
    for v in [0u16, side16, side16, 0, 0] {
        shape.extend_from_slice(&v.to_le_bytes()); // ALPHA, size, hot spot
    }
    shape.extend_from_slice(&(scene::CURSOR_SIDE * scene::CURSOR_SIDE * 4).to_le_bytes());
    let px: Vec<u8> = argb.iter().flat_map(|p| p.to_le_bytes()).collect();
    shape.extend(chunk(&px, 0));
    shape
}

fn chunk(data: &[u8], next: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(20 + data.len());
    c.extend_from_slice(&(data.len() as u32).to_le_bytes());
    c.extend_from_slice(&0u64.to_le_bytes());
    c.extend_from_slice(&next.to_le_bytes());
    c.extend_from_slice(data);
    c
}

impl Card {
    fn out(&self, port_off: u16) {
        port::outb(self.io + port_off, 0);
    }
    fn out_val(&self, port_off: u16, v: u8) {
        port::outb(self.io + port_off, v);
    }
    fn hdr32(&self, off: u64) -> u32 {
        self.ram.read32(self.hdr + off)
    }
    fn set_hdr32(&self, off: u64, v: u32) {
        self.ram.write32(self.hdr + off, v);
    }
    /// A u64 field of the packed RAM header (4-byte aligned at best).
    fn set_hdr64(&self, off: u64, v: u64) {
        self.ram.write32(self.hdr + off, v as u32);
        self.ram.write32(self.hdr + off + 4, (v >> 32) as u32);
    }

    /// QXLPHYSICAL of BAR0 offset `off`: the main slot starts at BAR0 and
    /// addresses are offsets in it (qxl_bo_physical_address).
    fn phys(&self, off: u64) -> u64 {
        self.main_high | off
    }

    /// Copy `bytes` into fresh command memory (8-byte aligned); its offset.
    fn put(&mut self, bytes: &[u8]) -> u64 {
        let off = self.next;
        let mut i = 0;
        while i + 4 <= bytes.len() {
            let w = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
            self.ram.write32(off + i as u64, w);
            i += 4;
        }
        while i < bytes.len() {
            self.ram.write8(off + i as u64, bytes[i]);
            i += 1;
        }
        self.next = (off + bytes.len() as u64 + 7) & !7;
        check!(self.next < self.hdr, "alloc", "command memory exhausted");
        off
    }

    /// The ISR: take int_pending (xchg), count what came, UPDATE_IRQ.
    fn ack(&mut self) -> u32 {
        let addr = self.ram.base() + self.hdr + INT_PENDING;
        // SAFETY: int_pending in the device's RAM BAR, 4-byte aligned.
        let pending = unsafe { (*(addr as *const AtomicU32)).swap(0, Ordering::SeqCst) };
        if pending & INT_DISPLAY != 0 {
            self.seen_display = true;
        }
        self.out(IO_UPDATE_IRQ);
        pending
    }

    /// qxl's wait_for_io_cmd after an async port write.
    fn async_io(&mut self, port_off: u16, val: u8, step: &str) {
        self.out_val(port_off, val);
        let mut got = 0;
        let done = time::wait_until(WAIT, || {
            got |= self.ack();
            got & INT_IO_CMD != 0
        });
        check!(
            done,
            step,
            "no IO_CMD interrupt within {WAIT:?} (pending {got:#x})"
        );
    }

    /// qxl_ring_push: wait for room, store, bump prod, notify if asked.
    fn push(&mut self, ring: u64, notify: u16, data_off: u64, kind: u32, step: &str) {
        let room = time::wait_until(WAIT, || {
            let (prod, cons) = (self.hdr32(ring + 4), self.hdr32(ring + 12));
            if prod.wrapping_sub(cons) < 32 {
                return true;
            }
            self.set_hdr32(ring + 16, cons + 1);
            self.ack();
            false
        });
        check!(room, step, "ring stayed full");
        let prod = self.hdr32(ring + 4);
        let item = self.hdr + ring + 20 + u64::from(prod & 31) * 16;
        // The cursor ring's items are only 4-byte aligned.
        let data = self.phys(data_off);
        self.ram.write32(item, data as u32);
        self.ram.write32(item + 4, (data >> 32) as u32);
        self.ram.write32(item + 8, kind);
        self.ram.write32(item + 12, 0);
        let prod = prod.wrapping_add(1);
        self.set_hdr32(ring + 4, prod);
        // Linux's mb(): without it the CPU may read notify_on_prod before its
        // store of prod is visible, while the device (having seen the ring
        // empty) stores notify_on_prod = prod and rereads the old prod; then
        // neither side notifies and the ring stalls until it is full.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        if self.hdr32(ring + 8) == prod {
            self.out(notify);
        }
    }

    /// A QXLDrawable with the union `u`, pushed on the command ring.
    fn draw(&mut self, kind: u8, bbox: Rect, clip: Option<u64>, u: &[u8], step: &str) {
        let id = self.pushed.len() as u64 + 1;
        let d = self.drawable(id, kind, bbox, clip, u);
        let off = self.put(&d);
        self.pushed.push((id, off));
        self.push(CMD_RING, IO_NOTIFY_CMD, off, CMD_DRAW, step);
    }

    fn drawable(&self, id: u64, kind: u8, bbox: Rect, clip: Option<u64>, u: &[u8]) -> [u8; 200] {
        let mut d = [0u8; 200];
        d[0..8].copy_from_slice(&id.to_le_bytes());
        d[12] = 1; // QXL_EFFECT_OPAQUE
        d[13] = kind;
        d[31..47].copy_from_slice(&bytes_of_rect(bbox));
        if let Some(c) = clip {
            d[47..51].copy_from_slice(&1u32.to_le_bytes()); // SPICE_CLIP_TYPE_RECTS
            d[51..59].copy_from_slice(&self.phys(c).to_le_bytes());
        }
        for k in 0..3 {
            d[63 + 4 * k..67 + 4 * k].copy_from_slice(&(-1i32).to_le_bytes());
        }
        d[123..123 + u.len()].copy_from_slice(u);
        d
    }

    /// Like `draw`, into a released slot of the animation's pool (waiting
    /// for the device to release one, as qxl_alloc_release_reserved does).
    fn draw_pooled(&mut self, kind: u8, bbox: Rect, u: &[u8]) {
        let (slot, id) = self.pool_slot("anim");
        let d = self.drawable(id, kind, bbox, None, u);
        self.push_pooled(slot, id, &d, CMD_RING, IO_NOTIFY_CMD, CMD_DRAW, "anim");
    }

    /// A QXL_CURSOR_SET of the shape at `shape` (QXLPHYSICAL) at
    /// CURSOR_MOVED_TO, in a pool slot as the animation's drawables.
    fn cursor_set_pooled(&mut self, shape: u64) {
        let (slot, id) = self.pool_slot("cursor-cycle");
        let mut set = [0u8; 152];
        set[0..8].copy_from_slice(&id.to_le_bytes());
        set[8] = 0; // QXL_CURSOR_SET
        set[9..11].copy_from_slice(&scene::CURSOR_MOVED_TO.0.to_le_bytes());
        set[11..13].copy_from_slice(&scene::CURSOR_MOVED_TO.1.to_le_bytes());
        set[13] = 1;
        set[14..22].copy_from_slice(&shape.to_le_bytes());
        let (ring, notify) = (CURSOR_RING, IO_NOTIFY_CURSOR);
        self.push_pooled(slot, id, &set, ring, notify, CMD_CURSOR, "cursor-cycle");
    }

    /// A released slot of the pool (waiting for the device to release one)
    /// and the release id of the command that will use it.
    fn pool_slot(&mut self, what: &str) -> (usize, u64) {
        let mut slot = None;
        let free = time::wait_until(WAIT, || {
            slot = self.pool_ids.iter().position(|&id| id == 0);
            if slot.is_none() {
                self.reclaim();
            }
            slot.is_some()
        });
        check!(free, what, "no slot released within {WAIT:?}");
        let id = self.next_anim_id;
        self.next_anim_id += 1;
        (slot.unwrap_or_default(), id)
    }

    /// Writes command `bytes` into pool `slot`, marks it taken by `id` and
    /// pushes it on `ring`.
    #[allow(clippy::too_many_arguments)]
    fn push_pooled(
        &mut self,
        slot: usize,
        id: u64,
        bytes: &[u8],
        ring: u64,
        notify: u16,
        cmd: u32,
        what: &str,
    ) {
        let off = self.pool + slot as u64 * SLOT_BYTES;
        for (i, w) in bytes.chunks(4).enumerate() {
            self.ram.write32(
                off + 4 * i as u64,
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
            );
        }
        self.pool_ids[slot] = id;
        self.push(ring, notify, off, cmd, what);
    }

    /// Linux's qxl_fence_wait when memory runs out: NOTIFY_OOM (the device
    /// renders what it holds and publishes its releases), then the garbage
    /// collector, then a short sleep before the caller retries. Never
    /// FLUSH_RELEASE: Linux does not use it, and on QEMU it pushes the
    /// release ring from the vCPU while spice-server's worker thread links
    /// releases into the same produce slot (QEMU takes no lock there), which
    /// loses or corrupts release chains.
    fn reclaim(&mut self) {
        self.out(IO_NOTIFY_OOM);
        self.ack();
        self.take_releases();
        time::sleep(Duration::from_micros(500));
    }

    /// BAR0 offset of the command `id` names, if it is one of ours in flight.
    fn command_of(&self, id: u64) -> Option<u64> {
        if id >= ANIM_ID_BASE {
            let slot = self.pool_ids.iter().position(|&p| p == id)?;
            return Some(self.pool + slot as u64 * SLOT_BYTES);
        }
        self.pushed.iter().find(|p| p.0 == id).map(|p| p.1)
    }

    /// qxl_garbage_collect's walk: every release ring entry is the head of
    /// a chain of ids linked through the released commands' first word.
    /// Animation slots are freed; the ids come back in order.
    fn take_releases(&mut self) -> Vec<u64> {
        let mut ids = Vec::new();
        loop {
            let prod = self.hdr32(RELEASE_RING + 4);
            if self.release_cons == prod {
                self.set_hdr32(RELEASE_RING + 8, prod.wrapping_add(1));
                return ids;
            }
            let entry = self.hdr + RELEASE_RING + 20 + u64::from(self.release_cons & 7) * 8;
            let mut id = self.ram.read64(entry);
            self.release_cons = self.release_cons.wrapping_add(1);
            self.set_hdr32(RELEASE_RING + 12, self.release_cons);
            while id != 0 {
                let Some(off) = self.command_of(id) else {
                    fail!("release", "unknown id {id}");
                };
                check!(!ids.contains(&id), "release", "id {id} released twice");
                ids.push(id);
                if let Some(slot) = self.pool_ids.iter().position(|&p| p == id) {
                    self.pool_ids[slot] = 0;
                }
                id = self.ram.read64(off);
            }
        }
    }

    fn fill(&mut self, r: Rect, color: u32, step: &str) {
        self.draw(DRAW_FILL, r, None, &fill_union(color), step);
    }

    /// A top-down bitmap QXLImage whose pixel rows are split into chunks at
    /// the byte offsets `cuts`; its offset.
    fn image(&mut self, format: u8, w: u32, h: u32, stride: u32, px: &[u8], cuts: &[usize]) -> u64 {
        // Chunks are written last first, so each knows its successor.
        let mut bounds = Vec::from(cuts);
        bounds.insert(0, 0);
        bounds.push(px.len());
        let mut next = 0u64;
        for pair in bounds.windows(2).rev() {
            let off = self.put(&chunk(&px[pair[0]..pair[1]], next));
            next = self.phys(off);
        }
        let mut img = [0u8; 48];
        img[8] = 0; // SPICE_IMAGE_TYPE_BITMAP
        img[10..14].copy_from_slice(&w.to_le_bytes());
        img[14..18].copy_from_slice(&h.to_le_bytes());
        img[18] = format;
        img[19] = 4; // QXL_BITMAP_TOP_DOWN
        img[20..24].copy_from_slice(&w.to_le_bytes());
        img[24..28].copy_from_slice(&h.to_le_bytes());
        img[28..32].copy_from_slice(&stride.to_le_bytes());
        img[40..48].copy_from_slice(&next.to_le_bytes());
        self.put(&img)
    }

    fn copy(&mut self, image: u64, at: (i32, i32), w: u32, h: u32, clip: Option<u64>, step: &str) {
        let mut u = Vec::new();
        u.extend_from_slice(&self.phys(image).to_le_bytes());
        u.extend_from_slice(&bytes_of_rect((0, 0, w as i32, h as i32)));
        u.extend_from_slice(&ROPD_OP_PUT.to_le_bytes());
        u.extend_from_slice(&[0; 18]); // scale mode, mask
        let bbox = (at.0, at.1, at.0 + w as i32, at.1 + h as i32);
        self.draw(DRAW_COPY, bbox, clip, &u, step);
    }
}

fn find_card() -> (pci::Function, Card) {
    let f = pci::find(0x1b36, 0x0100).or_fail("pci-find");
    f.enable();
    let bars: Vec<pci::Bar> = f.bars().collect();
    let bar = |i: u8| *bars.iter().find(|b| b.index == i).or_fail("bars");
    let (ram_bar, rom_bar, io_bar) = (bar(0), bar(2), bar(3));
    let rom = rom_bar.mmio();
    check!(
        rom.read32(0) == ROM_MAGIC,
        "rom",
        "magic {:#x}",
        rom.read32(0)
    );
    let hdr = u64::from(rom.read32(ROM_RAM_HEADER_OFFSET));
    let ram = ram_bar.mmio();
    check!(hdr + 8192 <= ram.len(), "rom", "ram_header_offset {hdr:#x}");
    check!(
        ram.read32(hdr) == RAM_MAGIC,
        "ram",
        "magic {:#x}",
        ram.read32(hdr)
    );
    let (start, gen_bits, id_bits) = (
        u64::from(rom.read8(ROM_SLOTS_START)),
        u32::from(rom.read8(ROM_SLOT_GEN_BITS)),
        u32::from(rom.read8(ROM_SLOT_ID_BITS)),
    );
    let generation = u64::from(rom.read8(ROM_SLOT_GENERATION));
    check!(
        gen_bits + id_bits < 64,
        "rom",
        "slot bits {gen_bits} {id_bits}"
    );
    let main_high = ((start << gen_bits) | generation) << (64 - gen_bits - id_bits);
    let next = u64::from(rom.read32(ROM_PAGES_OFFSET));
    let card = Card {
        ram,
        io: io_bar.port(),
        hdr,
        bar0: ram_bar.addr,
        main_high,
        next,
        pushed: Vec::new(),
        seen_display: false,
        release_cons: 0,
        pool: 0,
        pool_ids: [0; POOL_SLOTS],
        next_anim_id: ANIM_ID_BASE,
        video_slots: Vec::new(),
    };
    (f, card)
}

fn main() {
    let (f, mut c) = find_card();
    let surfaces = f.bars().find(|b| b.index == 1).or_fail("bar1");

    // 1. Interrupt routing, reset, memslots.
    let (pin, line) = f.interrupt();
    check!(
        pin == 1 && u32::from(line) < ioapic::inputs(),
        "intx",
        "pin {pin} line {line}"
    );
    lapic::enable();
    ioapic::route(
        line.into(),
        VECTOR,
        ioapic::Trigger::Level,
        ioapic::Polarity::High,
        lapic::id(),
    );
    c.out(IO_RESET);
    c.set_hdr32(
        INT_MASK,
        INT_DISPLAY | INT_CURSOR | INT_IO_CMD | INT_CLIENT_MONITORS_CONFIG,
    );
    c.set_hdr64(MEM_SLOT, c.bar0);
    c.set_hdr64(MEM_SLOT + 8, c.bar0 + c.hdr);
    // The first completion is taken as an interrupt on its vector; the rest
    // are polled (the level stays up until the ISR's UPDATE_IRQ).
    let before = irq::count(VECTOR);
    irq::enable();
    c.out_val(IO_MEMSLOT_ADD_ASYNC, 1);
    irq::wait(VECTOR, before + 1, WAIT).or_fail("io-cmd-irq");
    irq::disable();
    check!(c.ack() & INT_IO_CMD != 0, "io-cmd", "IO_CMD not pending");
    c.set_hdr64(MEM_SLOT, surfaces.addr);
    c.set_hdr64(MEM_SLOT + 8, surfaces.addr + surfaces.size);
    c.async_io(IO_MEMSLOT_ADD_ASYNC, 2, "memslot-2");

    // 2. Modeset: the primary at the start of BAR0, cleared first.
    let (w, h) = (scene::WIDTH, scene::HEIGHT);
    for i in 0..u64::from(w * h) {
        c.ram.write32(i * 4, 0);
    }
    for (k, v) in [w, h, w * 4, 32, 0, 0, 0, 0].into_iter().enumerate() {
        c.set_hdr32(CREATE_SURFACE + 4 * k as u64, v);
    }
    c.set_hdr64(CREATE_SURFACE + 32, c.phys(0));
    c.async_io(IO_CREATE_PRIMARY_ASYNC, 0, "create-primary");
    let mut heads = Vec::new();
    heads.extend_from_slice(&1u16.to_le_bytes());
    heads.extend_from_slice(&1u16.to_le_bytes());
    for v in [0u32, 0, w, h, 0, 0, 0] {
        heads.extend_from_slice(&v.to_le_bytes());
    }
    let mc = c.put(&heads);
    c.set_hdr64(MONITORS_CONFIG, c.phys(mc));
    c.async_io(IO_MONITORS_CONFIG_ASYNC, 0, "monitors-config");

    // 3. The scene.
    c.fill((0, 0, w as i32, h as i32), scene::BACKGROUND, "background");
    let (bw, bh) = (scene::B32_W, scene::B32_H);
    let mut px = Vec::new();
    for y in 0..bh {
        for x in 0..bw {
            px.extend_from_slice(&scene::bitmap32(x, y).to_le_bytes());
        }
    }
    let one = c.image(8, bw, bh, bw * 4, &px, &[]);
    c.copy(one, scene::COPY1_AT, bw, bh, None, "copy-one-chunk");
    // Chunks end on row boundaries, as spice-server's encoders need.
    let three = c.image(8, bw, bh, bw * 4, &px, &[10 * 512, 70 * 512]);
    let mut clips = Vec::new();
    clips.extend_from_slice(&2u32.to_le_bytes());
    let rects: Vec<u8> = scene::COPY2_CLIPS
        .iter()
        .flat_map(|&r| bytes_of_rect(r))
        .collect();
    clips.extend(chunk(&rects, 0));
    let clips = c.put(&clips);
    c.copy(three, scene::COPY2_AT, bw, bh, Some(clips), "copy-clipped");
    let s = scene::SMALL;
    let px16: Vec<u8> = (0..s * s)
        .flat_map(|i| scene::bitmap16(i % s, i / s).to_le_bytes())
        .collect();
    let b16 = c.image(6, s, s, s * 2, &px16, &[2048]);
    c.copy(b16, scene::B16_AT, s, s, None, "copy-16");
    let px24: Vec<u8> = (0..s * s)
        .flat_map(|i| {
            let p = scene::bitmap24(i % s, i / s).to_le_bytes();
            [p[0], p[1], p[2]]
        })
        .collect();
    let b24 = c.image(7, s, s, s * 3, &px24, &[]);
    c.copy(b24, scene::B24_AT, s, s, None, "copy-24");
    let mut bits = Vec::new();
    bits.extend_from_slice(&scene::COPY1_AT.0.to_le_bytes());
    bits.extend_from_slice(&scene::COPY1_AT.1.to_le_bytes());
    c.draw(COPY_BITS, scene::copy_bits_dst(), None, &bits, "copy-bits");
    c.fill(scene::FILL_RECT, scene::FILL_COLOR, "fill");

    // 4. The cursor: SET a 32x32 ALPHA shape, then MOVE it.
    let side = scene::CURSOR_SIDE;
    let cursor_px: Vec<u32> = (0..side * side)
        .map(|i| scene::cursor_pixel(i % side, i / side))
        .collect();
    let shape = c.put(&cursor_shape(1, &cursor_px));
    // The cycle's second shape ('c').
    let inverse: Vec<u32> = (0..side * side)
        .map(|i| scene::cursor_pixel_inverse(i % side, i / side))
        .collect();
    let inverse = c.put(&cursor_shape(2, &inverse));
    let shapes = [c.phys(shape), c.phys(inverse)];
    let set_id = c.pushed.len() as u64 + 1;
    let mut set = [0u8; 150];
    set[0..8].copy_from_slice(&set_id.to_le_bytes());
    set[8] = 0; // QXL_CURSOR_SET
    set[9..11].copy_from_slice(&scene::CURSOR_AT.0.to_le_bytes());
    set[11..13].copy_from_slice(&scene::CURSOR_AT.1.to_le_bytes());
    set[13] = 1;
    set[14..22].copy_from_slice(&c.phys(shape).to_le_bytes());
    let set_off = c.put(&set);
    c.pushed.push((set_id, set_off));
    c.push(
        CURSOR_RING,
        IO_NOTIFY_CURSOR,
        set_off,
        CMD_CURSOR,
        "cursor-set",
    );
    let move_id = set_id + 1;
    let mut mv = [0u8; 150];
    mv[0..8].copy_from_slice(&move_id.to_le_bytes());
    mv[8] = 1; // QXL_CURSOR_MOVE
    mv[9..11].copy_from_slice(&scene::CURSOR_MOVED_TO.0.to_le_bytes());
    mv[11..13].copy_from_slice(&scene::CURSOR_MOVED_TO.1.to_le_bytes());
    let mv_off = c.put(&mv);
    c.pushed.push((move_id, mv_off));
    c.push(
        CURSOR_RING,
        IO_NOTIFY_CURSOR,
        mv_off,
        CMD_CURSOR,
        "cursor-move",
    );

    // 5. Everything rendered and released (qxl_garbage_collect).
    c.async_io(IO_FLUSH_SURFACES_ASYNC, 0, "flush-surfaces");
    let mut released: Vec<u64> = Vec::new();
    c.release_cons = c.hdr32(RELEASE_RING + 12);
    let all = time::wait_until(WAIT, || {
        // As Linux, the ring is walked once DISPLAY says it grew (qxl_irq's
        // garbage collection), not polled: a walk that empties the ring
        // re-arms notify_on_prod, and done while the device is between its
        // prod bump and its notify check (QEMU's worker thread), that
        // push's DISPLAY is lost. The timeout covers pushes after the first
        // (not notified until the walk re-arms).
        c.out(IO_NOTIFY_OOM);
        time::wait_until(Duration::from_millis(20), || c.ack() & INT_DISPLAY != 0);
        for id in c.take_releases() {
            check!(!released.contains(&id), "release", "id {id} released twice");
            released.push(id);
        }
        // The SET stays the device's cursor until replaced: it may stay held.
        c.pushed
            .iter()
            .all(|p| p.0 == set_id || released.contains(&p.0))
    });
    check!(
        all,
        "release",
        "released {released:?} of {} commands",
        c.pushed.len()
    );
    check!(
        c.seen_display,
        "release",
        "no DISPLAY interrupt for the release ring (release prod {} notify_on_prod {} cons {})",
        c.hdr32(RELEASE_RING + 4),
        c.hdr32(RELEASE_RING + 8),
        c.hdr32(RELEASE_RING + 12)
    );
    println!(
        "qxl released={} irqs={}",
        released.len(),
        irq::count(VECTOR)
    );

    println!("QXL-NATIVE-READY");
    // 'a' animates (scripts/bench_qxl), 'd' drags (scripts/bench_wan), 'v'
    // plays a video (scripts/bench_wan), 'w' one under a dialog, 'f' draws
    // one fill, 'b' blends;
    // anything else ends the test.
    let pool = c.put(&[0u8; POOL_SLOTS * SLOT_BYTES as usize]);
    c.pool = pool;
    let mut probes = 0u32;
    loop {
        match serial::read_byte(Duration::from_secs(300)) {
            Some(b'a') => animate(&mut c, one, false),
            Some(b'd') => animate(&mut c, one, true),
            Some(b'o') => {
                ops::draw(&mut c);
                ops_blend::draw(&mut c);
                println!("QXL-OPS-DONE");
            }
            Some(b'b') => blends(&mut c),
            Some(b'c') => {
                for n in 0..scene::CURSOR_CYCLE_SETS {
                    // Starts with the inverse: the scene's shape is current.
                    c.cursor_set_pooled(shapes[(n as usize + 1) % 2]);
                    time::sleep(CURSOR_CYCLE_GAP);
                }
                println!("QXL-CURSORS-DONE");
            }
            Some(b'v') => video(&mut c, false),
            Some(b'w') => video(&mut c, true),
            Some(b'f') => {
                // One FILL for the benchmark's key-to-client latency probe.
                probes += 1;
                let color = probes.wrapping_mul(0x0040_2010) & 0xff_ffff;
                c.draw_pooled(DRAW_FILL, (0, 0, 64, 64), &fill_union(color));
                println!("QXL-FRAME {probes}");
            }
            Some(_) => break,
            None => fail!("input", "nothing on COM1 within 300 s"),
        }
    }
}

/// ANIM_FRAMES frames at ANIM_FPS, each: the sprite (the 32-bit bitmap
/// already in BAR0) erased with a background FILL and COPYed a few pixels
/// further on a bouncing path, and a bar FILLed in a colour that changes
/// per frame. Prints `qxl-anim frames=.. drawables=.. late=.. ms=..` and
/// QXL_ANIM_DONE.
///
/// `drag`: a window drag as X does it instead: the sprite COPYed once, then
/// each frame COPY_BITS moves it (screen to screen) along the same path and
/// FILLs the strips it uncovered, then the same bar.
fn animate(c: &mut Card, sprite: u64, drag: bool) {
    let (sw, sh) = (scene::B32_W as i32, scene::B32_H as i32);
    let (w, h) = (scene::WIDTH as i32, scene::HEIGHT as i32);
    let (mut x, mut y, mut dx, mut dy) = (0i32, 240i32, 6i32, 4i32);
    let frame_ns = 1_000_000_000 / ANIM_FPS;
    let start = time::now_ns();
    let (before, mut late) = (c.next_anim_id, 0);
    for f in 0..ANIM_FRAMES {
        let due = start + f * frame_ns;
        let now = time::now_ns();
        if now > due + frame_ns {
            late += 1;
        }
        while time::now_ns() < due {
            core::hint::spin_loop();
        }
        let old = (x, y, x + sw, y + sh);
        let (nx, ny) = (x + dx, y + dy);
        if nx < 0 || nx + sw > w {
            dx = -dx;
        }
        if ny < 0 || ny + sh > h {
            dy = -dy;
        }
        (x, y) = (x + dx, y + dy);
        let new = (x, y, x + sw, y + sh);
        if drag {
            if f == 0 {
                c.draw_pooled(DRAW_COPY, new, &copy_union(c, sprite, sw, sh));
            } else {
                let mut u = Vec::new();
                u.extend_from_slice(&old.0.to_le_bytes());
                u.extend_from_slice(&old.1.to_le_bytes());
                c.draw_pooled(COPY_BITS, new, &u);
            }
            for strip in uncovered(old, new) {
                c.draw_pooled(DRAW_FILL, strip, &fill_union(scene::BACKGROUND));
            }
        } else {
            c.draw_pooled(DRAW_FILL, old, &fill_union(scene::BACKGROUND));
            c.draw_pooled(DRAW_COPY, new, &copy_union(c, sprite, sw, sh));
        }
        let bar = (f as i32 * 2) % (w - 64);
        let color = (f as u32 * 0x0001_0307) & 0xff_ffff;
        c.draw_pooled(
            DRAW_FILL,
            (bar, h - 24, bar + 64, h - 8),
            &fill_union(color),
        );
    }
    let ms = (time::now_ns() - start) / 1_000_000;
    println!(
        "qxl-anim frames={ANIM_FRAMES} drawables={} late={late} ms={ms}",
        c.next_anim_id - before
    );
    println!("QXL-ANIM-DONE");
}

/// A 64x48 bitmap whose every other 8x8 cell is the colour key, drawn over
/// the scene's first copy as a TRANSPARENT, then twice with ALPHA_BLEND
/// (half and 200/255 opacity, the second over the first and the scene's
/// FILL), then an RGBA bitmap blended with its own alpha (twice, over
/// itself). Prints QXL-BLEND-DONE.
fn blends(c: &mut Card) {
    const W: u32 = 64;
    const H: u32 = 48;
    const KEY: u32 = 0x00_ff00;
    let mut px = Vec::with_capacity((W * H * 4) as usize);
    for y in 0..H {
        for x in 0..W {
            let p = if (x / 8 + y / 8) % 2 == 0 {
                KEY
            } else {
                (x * 4) << 16 | (y * 5) << 8 | 0x40
            };
            px.extend_from_slice(&p.to_le_bytes());
        }
    }
    let img = c.image(8, W, H, W * 4, &px, &[]);
    let src_area = bytes_of_rect((0, 0, W as i32, H as i32));
    let at = |x: i32, y: i32| (x, y, x + W as i32, y + H as i32);
    let mut u = Vec::new();
    u.extend_from_slice(&c.phys(img).to_le_bytes());
    u.extend_from_slice(&src_area);
    u.extend_from_slice(&KEY.to_le_bytes()); // src_color
    u.extend_from_slice(&KEY.to_le_bytes()); // true_color
    c.draw(DRAW_TRANSPARENT, at(136, 100), None, &u, "blend");
    for (alpha, x, y) in [(0x80u8, 150, 110), (200, 380, 180), (200, 400, 200)] {
        let mut u = Vec::new();
        u.extend_from_slice(&0u16.to_le_bytes()); // alpha_flags
        u.push(alpha);
        u.extend_from_slice(&c.phys(img).to_le_bytes());
        u.extend_from_slice(&src_area);
        c.draw(DRAW_ALPHA_BLEND, at(x, y), None, &u, "blend");
    }
    // An RGBA bitmap whose own alpha runs from clear (left) to opaque,
    // premultiplied as the drivers hand it over: ALPHA_BLENDs with
    // SRC_SURFACE_HAS_ALPHA, opaque and at 0x90, the second over the first.
    let mut px = Vec::with_capacity((W * H * 4) as usize);
    for y in 0..H {
        for x in 0..W {
            let a = x * 255 / (W - 1);
            let (r, g, b) = (y * 5 * a / 255, 0x80 * a / 255, (W - 1 - x) * 4 * a / 255);
            px.extend_from_slice(&(a << 24 | r << 16 | g << 8 | b).to_le_bytes());
        }
    }
    let argb = c.image(9, W, H, W * 4, &px, &[]);
    for (alpha, x, y) in [(0xffu8, 230, 130), (0x90, 250, 150)] {
        let mut u = Vec::new();
        u.extend_from_slice(&2u16.to_le_bytes()); // SRC_SURFACE_HAS_ALPHA
        u.push(alpha);
        u.extend_from_slice(&c.phys(argb).to_le_bytes());
        u.extend_from_slice(&src_area);
        c.draw(DRAW_ALPHA_BLEND, at(x, y), None, &u, "blend");
    }
    println!("QXL-BLEND-DONE");
}

/// scene::VIDEO_FRAMES frames at scene::VIDEO_FPS: frame `t`'s pixels
/// (`scene::video_pixel`) written into a bitmap of its own and COPYed into
/// the box at scene::VIDEO_AT, as a video player's frames reach the qxl
/// driver. With `dialog`, each frame is followed by the dialog's FILLs
/// where `scene::dialog_rect` puts it (as X repaints a window over the
/// player's after each of its frames: opaque drawables, no clip on the
/// frame). Prints `qxl-video frames=.. late=.. ms=..` and QXL-VIDEO-DONE.
fn video(c: &mut Card, dialog: bool) {
    let (w, h) = (scene::VIDEO_W, scene::VIDEO_H);
    let bytes = (w * h * 4) as usize;
    if c.video_slots.is_empty() {
        for _ in 0..VIDEO_SLOTS {
            let data = c.put(&chunk(&alloc::vec![0u8; bytes], 0));
            let mut img = [0u8; 48];
            img[8] = 0; // SPICE_IMAGE_TYPE_BITMAP
            img[10..14].copy_from_slice(&w.to_le_bytes());
            img[14..18].copy_from_slice(&h.to_le_bytes());
            img[18] = 8; // SPICE_BITMAP_FMT_32BIT
            img[19] = 4; // QXL_BITMAP_TOP_DOWN
            img[20..24].copy_from_slice(&w.to_le_bytes());
            img[24..28].copy_from_slice(&h.to_le_bytes());
            img[28..32].copy_from_slice(&(w * 4).to_le_bytes());
            img[40..48].copy_from_slice(&c.phys(data).to_le_bytes());
            let image = c.put(&img);
            c.video_slots.push((image, data + 20));
        }
    }
    let at = scene::VIDEO_AT;
    let bbox = (at.0, at.1, at.0 + w as i32, at.1 + h as i32);
    let frame_ns = 1_000_000_000 / scene::VIDEO_FPS;
    let start = time::now_ns();
    let mut shown = [0u64; VIDEO_SLOTS];
    let mut late = 0;
    for t in 0..scene::VIDEO_FRAMES {
        let slot = t as usize % VIDEO_SLOTS;
        let prev = shown[slot];
        let free = time::wait_until(WAIT, || {
            let busy = prev != 0 && c.pool_ids.contains(&prev);
            if busy {
                c.reclaim();
            }
            !busy
        });
        check!(free, "video", "frame {} still shown after {WAIT:?}", t);
        let (image, pixels) = c.video_slots[slot];
        for y in 0..h {
            for x in 0..w {
                let off = pixels + u64::from(y * w + x) * 4;
                c.ram.write32(off, scene::video_pixel(x, y, t));
            }
        }
        let due = start + u64::from(t) * frame_ns;
        if time::now_ns() > due + frame_ns {
            late += 1;
        }
        while time::now_ns() < due {
            core::hint::spin_loop();
        }
        shown[slot] = c.next_anim_id;
        let u = copy_union(c, image, w as i32, h as i32);
        c.draw_pooled(DRAW_COPY, bbox, &u);
        if let Some(d) = scene::dialog_rect(t).filter(|_| dialog) {
            c.draw_pooled(DRAW_FILL, d, &fill_union(scene::DIALOG_BODY));
            let title = scene::dialog_title(d);
            c.draw_pooled(DRAW_FILL, title, &fill_union(scene::DIALOG_TITLE));
        }
    }
    let ms = (time::now_ns() - start) / 1_000_000;
    println!(
        "qxl-video frames={} late={late} ms={ms}",
        scene::VIDEO_FRAMES
    );
    println!("QXL-VIDEO-DONE");
}

/// The DRAW_COPY union: all of `image` (w x h) put 1:1, no mask.
fn copy_union(c: &Card, image: u64, w: i32, h: i32) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&c.phys(image).to_le_bytes());
    u.extend_from_slice(&bytes_of_rect((0, 0, w, h)));
    u.extend_from_slice(&ROPD_OP_PUT.to_le_bytes());
    u.extend_from_slice(&[0; 18]);
    u
}

/// The parts of `old` that `new` (the same size, moved less than its size)
/// does not cover: a column and a row strip (they may overlap).
fn uncovered(old: Rect, new: Rect) -> [Rect; 2] {
    let column = if new.0 > old.0 {
        (old.0, old.1, new.0, old.3)
    } else {
        (new.2, old.1, old.2, old.3)
    };
    let row = if new.1 > old.1 {
        (old.0, old.1, old.2, new.1)
    } else {
        (old.0, new.3, old.2, old.3)
    };
    [column, row]
}

/// The DRAW_FILL union: a solid brush, ROPD_OP_PUT, no mask.
fn fill_union(color: u32) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&1u32.to_le_bytes()); // SPICE_BRUSH_TYPE_SOLID
    u.extend_from_slice(&color.to_le_bytes());
    u.extend_from_slice(&[0; 12]);
    u.extend_from_slice(&ROPD_OP_PUT.to_le_bytes());
    u.extend_from_slice(&[0; 17]); // no mask
    u
}
