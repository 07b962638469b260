//! QXL native mode: the rings in the RAM header, the memslots, the surfaces
//! and the cursor, as QEMU's qxl.c and spice-server's worker give them to a
//! guest driver.
//!
//! - The command and cursor rings are consumed by the device worker
//!   ([`QxlWorker`]), woken by NOTIFY_CMD / NOTIFY_CURSOR. Consumption follows
//!   `ipc_ring.h`: take items while `cons != prod`, bump `cons` (raising
//!   DISPLAY / CURSOR when it reaches `notify_on_cons`, the guest waiting for
//!   room), and when the ring is empty arm `notify_on_prod = prod + 1` so the
//!   guest's next push notifies again.
//! - Every command is released when it has been executed: its
//!   `QXLReleaseInfo` id goes to the release ring's current produce slot, or
//!   (slot taken) is linked from the previous release's `next`; the slot is
//!   pushed (DISPLAY when `prod == notify_on_prod`) after each batch, or on
//!   NOTIFY_OOM / FLUSH_RELEASE, unless the ring is full, when the chain just
//!   grows. Linux's garbage collector walks those chains.
//! - Drawables are rendered into a host canvas per surface
//!   ([`super::qxl_canvas`]); the primary's changed rects feed the display
//!   model, and UPDATE_AREA / flushes write surfaces back into guest memory.
//!
//! The engine sits behind one mutex shared by the vCPU's port writes (memslot
//! and surface management) and the worker (rings); the display thread takes it
//! briefly to copy the primary's changes.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use display_types::{BlendMode, CursorShape, Draw, Frame, Monitor, MonitorLayout, Rect};
use tracing::{debug, trace, warn};
use vmm_sys_util::eventfd::EventFd;

use super::qxl::{
    ram_off, QxlCommandEvent, QxlRect, SurfaceCreate, INTERRUPT_CURSOR, INTERRUPT_DISPLAY,
    NUM_SURFACES,
};
use super::qxl_canvas::{ropd, Area, Canvas};
use super::qxl_draw::{
    bitmap_frame, bitmap_frame_alpha, forwardable_copy, forwardable_over, paint, paint_for,
    Forward, Paint, Source,
};
use super::qxl_mem::{offset_addr, Memslots, QxlMemory};
use super::qxl_parse::{self as parse, CursorCmd, Drawable, Image, RingCommand, SurfaceCmd};
use crate::pci::PciInterrupt;
use crate::worker::{Token, WorkerEvents, WorkerHandler};
use crate::HostMemory;

/// Pixels all surfaces together may hold (1 GiB of xRGB): a guest creating
/// surfaces cannot grow host memory past this.
const MAX_TOTAL_PIXELS: u64 = 256 << 20;
/// Commands handled per wakeup before the worker lets pause/stop in.
const BATCH: usize = 256;
/// QXL surface formats.
const SURFACE_FMT_32_XRGB: u32 = 32;
const SURFACE_FMT_32_ARGB: u32 = 96;
const SURFACE_FLAG_KEEP_DATA: u32 = 1;

const RING_NUM_ITEMS: usize = 0;
const RING_PROD: usize = 4;
const RING_NOTIFY_ON_PROD: usize = 8;
const RING_CONS: usize = 12;
const RING_NOTIFY_ON_CONS: usize = 16;
const RING_ITEMS: usize = 20;

/// The QXL interrupt: `int_pending` and `int_mask` live in guest-visible RAM,
/// so the level is recomputed from them under one lock by whoever changes
/// them (the worker raising, the vCPU on UPDATE_IRQ): the last to look sets it.
pub struct QxlIrq {
    ram: HostMemory,
    header: usize,
    intx: Arc<PciInterrupt>,
    lock: Mutex<()>,
}

impl QxlIrq {
    pub fn new(ram: HostMemory, header: usize, intx: Arc<PciInterrupt>) -> Self {
        Self {
            ram,
            header,
            intx,
            lock: Mutex::new(()),
        }
    }

    /// Atomically OR `bits` into int_pending (the guest's ISR xchg's it) and
    /// re-evaluate the line.
    pub fn send(&self, bits: u32) {
        self.ram
            .fetch_or_u32(self.header + ram_off::INT_PENDING, bits);
        self.update();
    }

    /// Level = (int_pending & int_mask) != 0.
    pub fn update(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let pending = self.ram.read_u32(self.header + ram_off::INT_PENDING)
            & self.ram.read_u32(self.header + ram_off::INT_MASK);
        self.intx.set_intx(pending != 0);
    }

    pub fn interrupt(&self) -> &Arc<PciInterrupt> {
        &self.intx
    }
}

/// What the guest's cursor does, for the frontends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorEvent {
    Set {
        shape: CursorShape,
        x: i16,
        y: i16,
        visible: bool,
    },
    Move {
        x: i16,
        y: i16,
    },
    Hide,
    /// Pointer trails: `length` trail images every `frequency`.
    Trail {
        length: u16,
        frequency: u16,
    },
    /// Device reset: back to the frontend's default cursor.
    Reset,
}

/// Where cursor events go (the SPICE server's cursor channel, via the VMM).
pub trait CursorSink: Send + Sync {
    fn cursor(&self, ev: CursorEvent);
}

/// Told when commands have drawn or surfaces changed, so the display model
/// looks now instead of at its next periodic refresh (what spice-server does
/// on its worker: a drawable leaves as soon as it is processed). In native
/// mode nothing else changes the picture.
pub trait DrawNotify: Send + Sync {
    fn drawn(&self);
}

struct Surface {
    canvas: Canvas,
    /// QXLPHYSICAL of the guest's copy, its stride (negative: bottom-up) and format.
    mem: u64,
    stride: i32,
    format: u32,
}

/// The primary surface as the display model last took it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrimaryView {
    pub generation: u64,
}

pub struct Engine {
    ram: HostMemory,
    header: usize,
    irq: Arc<QxlIrq>,
    memslots: Memslots,
    surfaces: BTreeMap<u32, Surface>,
    total_pixels: u64,
    /// Bumped whenever the primary is created or destroyed.
    primary_generation: u64,
    /// QXLPHYSICAL of the last command released into the current produce slot.
    last_release: Option<u64>,
    pending_releases: u32,
    cursor: Option<CursorEvent>,
    cursor_sink: Option<Arc<dyn CursorSink>>,
    draw_notify: Option<Arc<dyn DrawNotify>>,
    monitors: Option<MonitorLayout>,
}

impl Engine {
    pub fn new(ram: HostMemory, vram: HostMemory, header: usize, irq: Arc<QxlIrq>) -> Self {
        Self {
            memslots: Memslots::new(vec![ram.clone(), vram]),
            ram,
            header,
            irq,
            surfaces: BTreeMap::new(),
            total_pixels: 0,
            primary_generation: 0,
            last_release: None,
            pending_releases: 0,
            cursor: None,
            cursor_sink: None,
            draw_notify: None,
            monitors: None,
        }
    }

    pub fn set_cursor_sink(&mut self, sink: Arc<dyn CursorSink>) {
        if let Some(c) = &self.cursor {
            sink.cursor(c.clone());
        }
        self.cursor_sink = Some(sink);
    }

    pub fn set_draw_notify(&mut self, notify: Arc<dyn DrawNotify>) {
        self.draw_notify = Some(notify);
    }

    /// The memslot table (tests and the fuzz targets read through it).
    pub fn memory(&self) -> &Memslots {
        &self.memslots
    }

    /// The guest's last MONITORS_CONFIG.
    pub fn monitors(&self) -> Option<&MonitorLayout> {
        self.monitors.as_ref()
    }

    /// The current cursor (last SET/MOVE/HIDE folded together).
    pub fn cursor(&self) -> Option<&CursorEvent> {
        self.cursor.as_ref()
    }

    /// A port command; `bases` are BAR0's and BAR1's guest addresses now.
    /// Err: a guest bug (the caller raises ERROR).
    pub fn execute(
        &mut self,
        ev: &QxlCommandEvent,
        bases: &[Option<u64>],
    ) -> Result<(), &'static str> {
        match *ev {
            QxlCommandEvent::Reset => self.reset(),
            QxlCommandEvent::NotifyCmd | QxlCommandEvent::NotifyCursor => {}
            QxlCommandEvent::NotifyOom => {
                self.process_cmd_ring(usize::MAX);
                self.push_releases(true);
            }
            QxlCommandEvent::UpdateArea {
                surface_id, area, ..
            } => {
                self.process_cmd_ring(usize::MAX);
                self.write_back(surface_id, Some(&area));
            }
            QxlCommandEvent::SetMode { mode } => debug!("qxl: SET_MODE {mode} (qxl-1) ignored"),
            QxlCommandEvent::MemslotAdd {
                slot, start, end, ..
            } => self.memslots.add(slot, start, end, bases)?,
            QxlCommandEvent::MemslotDel { slot } => self.memslots.del(slot),
            QxlCommandEvent::CreatePrimary { surface, .. } => self.create_primary(&surface)?,
            QxlCommandEvent::DestroyPrimary { .. } => {
                self.process_cmd_ring(usize::MAX);
                self.destroy_surface(0, false);
                self.primary_generation += 1;
            }
            QxlCommandEvent::DestroySurface { surface_id, .. } => {
                self.process_cmd_ring(usize::MAX);
                self.destroy_surface(u32::from(surface_id), true);
            }
            QxlCommandEvent::DestroyAllSurfaces { .. } => {
                self.process_cmd_ring(usize::MAX);
                self.surfaces.clear();
                self.total_pixels = 0;
                self.primary_generation += 1;
            }
            QxlCommandEvent::FlushSurfaces => {
                self.process_cmd_ring(usize::MAX);
                let ids: Vec<u32> = self.surfaces.keys().copied().collect();
                for id in ids {
                    self.write_back(id, None);
                }
                self.push_releases(true);
            }
            QxlCommandEvent::FlushRelease => self.push_releases(true),
            QxlCommandEvent::MonitorsConfig { config } => self.monitors_config(config),
        }
        // Surfaces may have come or gone: the display model looks now.
        self.notify_drawn();
        Ok(())
    }

    fn notify_drawn(&self) {
        if let Some(notify) = &self.draw_notify {
            notify.drawn();
        }
    }

    fn reset(&mut self) {
        self.memslots.reset();
        self.surfaces.clear();
        self.total_pixels = 0;
        self.primary_generation += 1;
        self.last_release = None;
        self.pending_releases = 0;
        self.monitors = None;
        if self.cursor.take().is_some() {
            if let Some(s) = &self.cursor_sink {
                s.cursor(CursorEvent::Reset);
            }
        }
    }

    /// Surface `id` from a create command; `keep_data` loads the guest's pixels.
    fn new_surface(
        &mut self,
        id: u32,
        c: &SurfaceCreate,
        keep_data: bool,
    ) -> Result<(), &'static str> {
        let (width, height, stride, format, mem) = (c.width, c.height, c.stride, c.format, c.mem);
        if id >= NUM_SURFACES {
            return Err("surface id out of range");
        }
        if stride & 3 != 0 || stride == i32::MIN {
            return Err("surface stride not a multiple of 4");
        }
        if u64::from(stride.unsigned_abs()) < u64::from(width) * 4
            && matches!(format, SURFACE_FMT_32_XRGB | SURFACE_FMT_32_ARGB)
        {
            return Err("surface stride shorter than a row");
        }
        self.destroy_surface(id, false);
        let pixels = u64::from(width) * u64::from(height);
        if self.total_pixels + pixels > MAX_TOTAL_PIXELS {
            return Err("surfaces exceed the device's memory budget");
        }
        let canvas = Canvas::new(width, height).ok_or("surface size out of range")?;
        self.total_pixels += pixels;
        let mut s = Surface {
            canvas,
            mem,
            stride,
            format,
        };
        if keep_data {
            load_surface(&self.memslots, &mut s);
        }
        self.surfaces.insert(id, s);
        Ok(())
    }

    fn create_primary(&mut self, c: &SurfaceCreate) -> Result<(), &'static str> {
        let keep = c.flags & SURFACE_FLAG_KEEP_DATA != 0;
        self.new_surface(0, c, keep)?;
        self.primary_generation += 1;
        Ok(())
    }

    fn destroy_surface(&mut self, id: u32, write_back: bool) {
        if write_back {
            self.write_back(id, None);
        }
        if let Some(s) = self.surfaces.remove(&id) {
            self.total_pixels -= u64::from(s.canvas.width()) * u64::from(s.canvas.height());
        }
    }

    /// Copy a surface's canvas (or `area` of it) into the guest's memory for
    /// it, as spice-server's update_area does. 32-bit formats only.
    fn write_back(&mut self, id: u32, area: Option<&QxlRect>) {
        let Some(s) = self.surfaces.get(&id) else {
            return;
        };
        if !matches!(s.format, SURFACE_FMT_32_XRGB | SURFACE_FMT_32_ARGB) {
            return;
        }
        let full = QxlRect {
            top: 0,
            left: 0,
            bottom: s.canvas.height() as i32,
            right: s.canvas.width() as i32,
        };
        let Some(a) = s.canvas.clip_rect(area.unwrap_or(&full)) else {
            return;
        };
        let mut row = Vec::with_capacity((a.right - a.left) as usize * 4);
        for y in a.top..a.bottom {
            row.clear();
            for p in s.canvas.row(y, a.left, a.right - a.left) {
                row.extend_from_slice(&(p | 0xff00_0000).to_le_bytes());
            }
            let Some(addr) = surface_row_addr(s, y, a.left) else {
                return;
            };
            if let Err(e) = self.memslots.write(addr, &row) {
                debug!("qxl: surface {id} write-back: {e}");
                return;
            }
        }
    }

    fn monitors_config(&mut self, addr: u64) {
        // QXLMonitorsConfig {u16 count, u16 max_allowed, QXLHead heads[]},
        // QXLHead {id, surface_id, width, height, x, y, flags} (u32 each).
        let mut h = [0u8; 4];
        if self.memslots.read(addr, &mut h).is_err() {
            debug!("qxl: monitors config at {addr:#x} unreadable");
            return;
        }
        let count = usize::from(u16::from_le_bytes([h[0], h[1]])).min(64);
        let mut heads = vec![0u8; count * 28];
        let Ok(at) = offset_addr(addr, 4) else {
            return;
        };
        if self.memslots.read(at, &mut heads).is_err() {
            return;
        }
        let monitors = heads
            .chunks_exact(28)
            .map(|c| {
                let u = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                Monitor {
                    id: u(0),
                    width: u(8),
                    height: u(12),
                    x: u(16) as i32,
                    y: u(20) as i32,
                }
            })
            .filter(|m| m.width > 0 && m.height > 0)
            .collect();
        self.monitors = MonitorLayout::new(monitors);
        debug!("qxl: guest monitors config {:?}", self.monitors);
    }

    fn ring_u32(&self, ring: usize, field: usize) -> u32 {
        self.ram.read_u32(self.header + ring + field)
    }

    fn set_ring_u32(&self, ring: usize, field: usize, v: u32) {
        self.ram.write_u32(self.header + ring + field, v);
    }

    /// Take the next command off the command or cursor ring (both 32 items).
    fn pop(&self, ring: usize, notify_bit: u32) -> Option<RingCommand> {
        let cons = self.ring_u32(ring, RING_CONS);
        if self.ring_u32(ring, RING_PROD) == cons {
            // Empty: ask for a notify on the next push, then look once more
            // (the guest may have pushed before seeing the new notify_on_prod).
            self.set_ring_u32(ring, RING_NOTIFY_ON_PROD, cons.wrapping_add(1));
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            if self.ring_u32(ring, RING_PROD) == cons {
                return None;
            }
        }
        let index = (cons & 31) as usize;
        let mut item = [0u8; RingCommand::SIZE];
        let off = self.header + ring + RING_ITEMS + index * RingCommand::SIZE;
        self.ram.read(off as u64, &mut item);
        let cons = cons.wrapping_add(1);
        self.set_ring_u32(ring, RING_CONS, cons);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if cons == self.ring_u32(ring, RING_NOTIFY_ON_CONS) {
            self.irq.send(notify_bit);
        }
        Some(RingCommand::decode(&item))
    }

    /// Execute commands from the command ring (at most `budget`); returns how
    /// many were taken. Releases are pushed at the end.
    pub fn process_cmd_ring(&mut self, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(c) = self.pop(ram_off::CMD_RING, INTERRUPT_DISPLAY) else {
                break;
            };
            n += 1;
            self.command(c);
        }
        if n > 0 {
            self.push_releases(true);
            self.notify_drawn();
        }
        n
    }

    /// Execute cursor commands (at most `budget`).
    pub fn process_cursor_ring(&mut self, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(c) = self.pop(ram_off::CURSOR_RING, INTERRUPT_CURSOR) else {
                break;
            };
            n += 1;
            if c.kind == parse::cmd::CURSOR {
                match parse::parse_cursor_cmd(&self.memslots, c.data) {
                    Ok(cmd) => self.cursor_command(cmd),
                    Err(e) => warn!("qxl: cursor command dropped: {e}"),
                }
            } else {
                debug!("qxl: command type {} on the cursor ring", c.kind);
            }
            self.release(c.data);
        }
        if n > 0 {
            self.push_releases(true);
        }
        n
    }

    fn command(&mut self, c: RingCommand) {
        trace!("qxl: command {} at {:#x}", c.kind, c.data);
        match c.kind {
            parse::cmd::DRAW => match parse::parse_drawable(&self.memslots, c.data) {
                Ok(d) => self.draw(&d),
                Err(e) => warn!("qxl: drawable dropped: {e}"),
            },
            parse::cmd::SURFACE => match parse::parse_surface_cmd(&self.memslots, c.data) {
                Ok(SurfaceCmd::Create {
                    surface_id,
                    format,
                    width,
                    height,
                    stride,
                    data,
                }) => {
                    if surface_id == 0 {
                        warn!("qxl: surface command for the primary ignored");
                    } else if let Err(e) = self.new_surface(
                        surface_id,
                        &SurfaceCreate {
                            width,
                            height,
                            stride,
                            format,
                            mem: data,
                            ..SurfaceCreate::default()
                        },
                        false,
                    ) {
                        warn!("qxl: surface {surface_id} create refused: {e}");
                    }
                }
                Ok(SurfaceCmd::Destroy { surface_id }) => {
                    if surface_id != 0 {
                        self.destroy_surface(surface_id, true);
                    }
                }
                Err(e) => warn!("qxl: surface command dropped: {e}"),
            },
            parse::cmd::CURSOR => debug!("qxl: cursor command on the command ring"),
            parse::cmd::NOP | parse::cmd::MESSAGE | parse::cmd::UPDATE => {}
            other => warn!("qxl: unknown command type {other}"),
        }
        self.release(c.data);
    }

    fn cursor_command(&mut self, cmd: CursorCmd) {
        let ev = match cmd {
            CursorCmd::Set {
                x,
                y,
                visible,
                shape,
            } => CursorEvent::Set {
                shape,
                x,
                y,
                visible,
            },
            CursorCmd::Move { x, y } => CursorEvent::Move { x, y },
            CursorCmd::Hide => CursorEvent::Hide,
            CursorCmd::Trail { length, frequency } => {
                // Not part of the shape state a new client is given.
                if let Some(s) = &self.cursor_sink {
                    s.cursor(CursorEvent::Trail { length, frequency });
                }
                return;
            }
        };
        // Fold into the current state (what a newly connected client needs).
        self.cursor = Some(match (&self.cursor, &ev) {
            (Some(CursorEvent::Set { shape, .. }), CursorEvent::Move { x, y }) => {
                CursorEvent::Set {
                    shape: shape.clone(),
                    x: *x,
                    y: *y,
                    visible: true,
                }
            }
            (Some(CursorEvent::Set { shape, x, y, .. }), CursorEvent::Hide) => CursorEvent::Set {
                shape: shape.clone(),
                x: *x,
                y: *y,
                visible: false,
            },
            _ => ev.clone(),
        });
        if let Some(s) = &self.cursor_sink {
            s.cursor(ev);
        }
    }

    /// Return a command to the guest (QEMU's interface_release_resource).
    fn release(&mut self, cmd: u64) {
        let id = match parse::release_id(&self.memslots, cmd) {
            Ok(id) => id,
            Err(e) => {
                debug!("qxl: command at {cmd:#x} has no readable release id: {e}");
                return;
            }
        };
        let ring = ram_off::RELEASE_RING;
        let prod = self.ring_u32(ring, RING_PROD);
        let item = self.header + ring + RING_ITEMS + (prod & 7) as usize * 8;
        let zero = 0u64.to_le_bytes();
        if self.ram.read_u64(item) == 0 || self.last_release.is_none() {
            self.ram.write_u64(item, id);
        } else if let Some(last) = self.last_release {
            // Link from the previous release: its `next` overwrites its id.
            if self.memslots.write(last, &id.to_le_bytes()).is_err() {
                return;
            }
        }
        // The released command's own `next` ends the chain.
        if self.memslots.write(cmd, &zero).is_err() {
            return;
        }
        self.last_release = Some(cmd);
        self.pending_releases += 1;
    }

    /// Publish the produce slot (QEMU's qxl_push_free_res with flush).
    fn push_releases(&mut self, _flush: bool) {
        let ring = ram_off::RELEASE_RING;
        let prod = self.ring_u32(ring, RING_PROD);
        let cons = self.ring_u32(ring, RING_CONS);
        let num = self.ring_u32(ring, RING_NUM_ITEMS);
        if self.pending_releases == 0 || prod.wrapping_sub(cons).wrapping_add(1) == num {
            // Nothing to publish, or full: the chain in the slot keeps growing.
            return;
        }
        let prod = prod.wrapping_add(1);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.set_ring_u32(ring, RING_PROD, prod);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let notify = prod == self.ring_u32(ring, RING_NOTIFY_ON_PROD);
        let item = self.header + ring + RING_ITEMS + (prod & 7) as usize * 8;
        self.ram.write_u64(item, 0);
        self.last_release = None;
        self.pending_releases = 0;
        if notify {
            self.irq.send(INTERRUPT_DISPLAY);
        }
    }

    fn draw(&mut self, d: &Drawable) {
        let Some(surface) = self.surfaces.get(&d.surface_id) else {
            debug!("qxl: draw on missing surface {}", d.surface_id);
            return;
        };
        let areas = surface.canvas.areas(&d.bbox, d.clip.as_deref());
        if areas.is_empty() {
            return;
        }
        // Resolve a source image; a surface source is copied first (it may be
        // the destination itself).
        let source = |img: &Image| -> Option<Source> {
            match img {
                Image::Bitmap(b) => Some(Source::Bitmap(b.clone())),
                Image::Surface(id) => self
                    .surfaces
                    .get(id)
                    .map(|s| Source::Canvas(s.canvas.clone())),
            }
        };
        let bbox = d.bbox;
        let op = paint_for(&d.op, &source);
        let Some(op) = op else {
            return;
        };
        let Some(surface) = self.surfaces.get_mut(&d.surface_id) else {
            return;
        };
        // Solid overpaints and 1:1 bitmap copies of the primary are reported
        // as draws, which the frontend forwards instead of resending pixels.
        let forward = match &op {
            _ if d.surface_id != 0 || d.mask.is_some() => None,
            Paint::Solid(color, rop) if is_overpaint(*rop) => Some(Forward::Fill(*color)),
            Paint::Copy(Source::Bitmap(b), sa, rop, None) if is_overpaint(*rop) => {
                forwardable_copy(b, sa, &bbox).map(|(x, y)| Forward::Copy(bitmap_frame(b), x, y))
            }
            Paint::Copy(Source::Bitmap(b), sa, rop, Some(key)) if is_overpaint(*rop) => {
                forwardable_copy(b, sa, &bbox).map(|(x, y)| {
                    Forward::Blend(bitmap_frame(b), x, y, BlendMode::Transparent(*key))
                })
            }
            // The bitmap's own alpha counts only where its format has one
            // (`Bitmap::pixel` makes the rest opaque, as the clients do).
            Paint::Alpha(Source::Bitmap(b), sa, alpha, true)
                if b.format == parse::bitmap_fmt::RGBA =>
            {
                forwardable_copy(b, sa, &bbox).map(|(x, y)| {
                    Forward::Blend(bitmap_frame_alpha(b), x, y, BlendMode::SourceAlpha(*alpha))
                })
            }
            Paint::Alpha(Source::Bitmap(b), sa, alpha, _) => forwardable_copy(b, sa, &bbox)
                .map(|(x, y)| Forward::Blend(bitmap_frame(b), x, y, BlendMode::Alpha(*alpha))),
            Paint::Composite(c) => forwardable_over(c, &bbox)
                .map(|(b, x, y)| Forward::Blend(bitmap_frame_alpha(b), x, y, BlendMode::Over)),
            // Several clip areas would be several copies, each reading what
            // the one before wrote: drawn as pixels.
            Paint::CopyBits(x, y) if areas.len() == 1 => Some(Forward::CopyBits(*x, *y)),
            _ => None,
        };
        for a in areas {
            match &forward {
                Some(Forward::Fill(color)) => surface.canvas.fill_solid(a, *color),
                Some(Forward::Copy(image, x, y)) => {
                    // Areas lie inside the bbox, so these stay inside the image.
                    let sx = x + (a.left - bbox.left as u32);
                    let sy = y + (a.top - bbox.top as u32);
                    surface.canvas.copy_image(a, image, sx, sy);
                }
                Some(Forward::Blend(image, x, y, mode)) => {
                    let sx = x + (a.left - bbox.left as u32);
                    let sy = y + (a.top - bbox.top as u32);
                    surface.canvas.blend_image(a, image, sx, sy, *mode);
                }
                Some(Forward::CopyBits(x, y)) => {
                    // As `paint` does: the area is offset from the bbox alike.
                    let sx = i64::from(*x) + i64::from(a.left) - i64::from(bbox.left);
                    let sy = i64::from(*y) + i64::from(a.top) - i64::from(bbox.top);
                    surface.canvas.copy_bits(a, sx, sy);
                }
                None => paint(&mut surface.canvas, a, &bbox, &op, d.mask.as_ref()),
            }
        }
    }

    /// Bring `frame` up to date with the primary surface: everything when the
    /// primary is new since `view`, else the changed rects. None when there
    /// is no primary.
    pub fn refresh_primary(
        &mut self,
        frame: &mut Frame,
        view: &mut PrimaryView,
    ) -> Option<PrimaryUpdate> {
        let generation = self.primary_generation;
        let s = self.surfaces.get_mut(&0)?;
        let c = &mut s.canvas;
        let (w, h) = (c.width(), c.height());
        let fresh = view.generation != generation || frame.width != w || frame.height != h;
        let (rects, draws) = if fresh {
            c.take_dirty();
            c.take_draws();
            frame.resize(w, h);
            (vec![Rect::full(w, h)], Vec::new())
        } else {
            (c.take_dirty(), c.take_draws())
        };
        view.generation = generation;
        for r in rects.iter().chain(draws.iter().map(Draw::rect)) {
            for y in r.y..r.y + r.height {
                let src = c.row(y, r.x, r.width);
                let start = y as usize * w as usize + r.x as usize;
                if let Some(dst) = frame.pixels.get_mut(start..start + src.len()) {
                    dst.copy_from_slice(src);
                }
            }
        }
        Some(PrimaryUpdate {
            fresh,
            rects,
            draws,
        })
    }
}

/// What `refresh_primary` copied into the frame.
pub struct PrimaryUpdate {
    /// A new primary (or size): `rects` is the whole frame.
    pub fresh: bool,
    /// Regions drawn since the last refresh, to be sent as images.
    pub rects: Vec<Rect>,
    /// Fills and image copies since the last refresh, oldest first, outside
    /// `rects` unless something else drew there too (then `rects` has the
    /// newer pixels).
    pub draws: Vec<Draw>,
}

/// Does ROP descriptor `rop` paint the brush color as is? Drivers send
/// OP_PUT; 0 (no op) is drawn as PUT too.
fn is_overpaint(rop: u16) -> bool {
    rop == 0 || rop == ropd::OP_PUT
}

/// QXLPHYSICAL of pixel (x, y) of a 32-bit surface.
fn surface_row_addr(s: &Surface, y: u32, x: u32) -> Option<u64> {
    let stride = i64::from(s.stride);
    let row = if stride < 0 {
        i64::from(s.canvas.height() - 1 - y) * -stride
    } else {
        i64::from(y) * stride
    };
    let off = u64::try_from(row + i64::from(x) * 4).ok()?;
    offset_addr(s.mem, off).ok()
}

/// Fill a new surface's canvas from the guest's memory (KEEP_DATA).
fn load_surface(mem: &Memslots, s: &mut Surface) {
    if !matches!(s.format, SURFACE_FMT_32_XRGB | SURFACE_FMT_32_ARGB) {
        return;
    }
    let (w, h) = (s.canvas.width(), s.canvas.height());
    let mut row = vec![0u8; w as usize * 4];
    for y in 0..h {
        let Some(addr) = surface_row_addr(s, y, 0) else {
            return;
        };
        if mem.read(addr, &mut row).is_err() {
            return;
        }
        let a = Area {
            left: 0,
            top: y,
            right: w,
            bottom: y + 1,
        };
        s.canvas.paint(a, |x, _, _| {
            let i = x as usize * 4;
            row.get(i..i + 4)
                .map(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]))
        });
    }
}

/// Event tokens of the QXL worker.
const TOKEN_CMD: Token = 0;
const TOKEN_CURSOR: Token = 1;

/// The device worker serving the rings: woken by the NOTIFY_CMD and
/// NOTIFY_CURSOR eventfds (the port write signals them).
pub struct QxlWorker {
    pub engine: Arc<Mutex<Engine>>,
    pub cmd_kick: Arc<EventFd>,
    pub cursor_kick: Arc<EventFd>,
}

pub fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|e| e.into_inner())
}

impl WorkerHandler for QxlWorker {
    fn register(&mut self, events: &WorkerEvents) -> io::Result<()> {
        events.add(&*self.cmd_kick, TOKEN_CMD)?;
        events.add(&*self.cursor_kick, TOKEN_CURSOR)
    }

    fn handle(&mut self, token: Token, _events: &WorkerEvents) {
        let (kick, done) = match token {
            TOKEN_CMD => {
                let _ = self.cmd_kick.read();
                (&self.cmd_kick, lock(&self.engine).process_cmd_ring(BATCH))
            }
            TOKEN_CURSOR => {
                let _ = self.cursor_kick.read();
                (
                    &self.cursor_kick,
                    lock(&self.engine).process_cursor_ring(BATCH),
                )
            }
            _ => return,
        };
        if done == BATCH {
            // More may be waiting: come back after pause/stop had a chance.
            let _ = kick.write(1);
        }
    }
}
