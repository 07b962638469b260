//! The QXL VGA PCI device (1b36:0100, "qxl-vga"): a VGA-compatible card whose
//! native mode is the SPICE QXL command interface.
//!
//! Layout, as QEMU's `hw/display/qxl.c` presents it and spice-protocol's
//! `qxl_dev.h` defines it:
//! - BAR0 "RAM" (32-bit, prefetchable): the VGA/VBE framebuffer (surface 0 area,
//!   `vgamem_size`) at the start, command pages after it and the `QXLRam` header
//!   (interrupt state, log buffer, rings) in the last 4 KiB-aligned block.
//! - BAR1 "VRAM": off-screen surface memory.
//! - BAR2: the read-only `QXLRom` followed by the mode list.
//! - BAR3: 32 I/O ports; the offset selects the command, the byte is its argument.
//! - Expansion ROM: `vgabios-qxl.bin`.
//!
//! Native mode: port commands are decoded here into [`QxlCommandEvent`]s (with
//! the RAM-header arguments read once, at the write) and executed by the
//! [`Engine`] (memslots, surfaces, releases); the command and cursor rings are
//! served by the device worker that NOTIFY_CMD / NOTIFY_CURSOR wake
//! (`qxl_engine`). Async commands complete at once (QXL_INTERRUPT_IO_CMD),
//! which the Linux driver accepts since it waits for that interrupt after each
//! async port write.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use vm_memory::VolatileSlice;

use tracing::{debug, info, trace, warn};

use super::qxl_engine::{
    self as engine, CursorSink, DrawNotify, Engine, PrimaryView, QxlIrq, QxlWorker,
};
pub use super::qxl_layout::*;
use super::render::{self, DisplayMode, Frame};
use super::vga::Vga;
use crate::interrupt::IrqLine;
use crate::pci::PciInterrupt;
use crate::pci::{BarKind, PciConfig, PciDevice, ROM_BAR};
use crate::worker::Worker;
use crate::{HostMemory, Result};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// `QXLRect` (top, left, bottom, right).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QxlRect {
    pub top: i32,
    pub left: i32,
    pub bottom: i32,
    pub right: i32,
}

/// `QXLSurfaceCreate` as the guest left it in the RAM header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SurfaceCreate {
    pub width: u32,
    pub height: u32,
    /// Negative: bottom-up.
    pub stride: i32,
    pub format: u32,
    pub position: u32,
    pub mouse_mode: u32,
    pub flags: u32,
    pub kind: u32,
    /// QXLPHYSICAL (slot id, generation, address).
    pub mem: u64,
}

/// A port command for the native-mode engine, with the RAM-header arguments it
/// read at the time of the write (the guest may change them right after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QxlCommandEvent {
    /// QXL_IO_RESET or a machine reset: drop memslots, surfaces and cursor.
    Reset,
    NotifyCmd,
    NotifyCursor,
    NotifyOom,
    UpdateArea {
        surface_id: u32,
        area: QxlRect,
        is_async: bool,
    },
    SetMode {
        mode: u8,
    },
    MemslotAdd {
        slot: u8,
        start: u64,
        end: u64,
        is_async: bool,
    },
    MemslotDel {
        slot: u8,
    },
    CreatePrimary {
        surface: SurfaceCreate,
        is_async: bool,
    },
    DestroyPrimary {
        is_async: bool,
    },
    DestroySurface {
        surface_id: u8,
        is_async: bool,
    },
    DestroyAllSurfaces {
        is_async: bool,
    },
    FlushSurfaces,
    FlushRelease,
    MonitorsConfig {
        config: u64,
    },
}

/// Which half of the card drives the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceMode {
    /// Legacy VGA/VBE registers and the BAR0 framebuffer.
    Vga,
    /// A primary surface created through CREATE_PRIMARY.
    Native,
    /// Native, but the primary surface was destroyed (QEMU's QXL_MODE_UNDEFINED).
    Undefined,
}

/// Sizes of the device's memory; normalised by [`Qxl::new`] the way QEMU's
/// `qxl_init_ramsize` does (powers of two, BAR0 >= 2 × vgamem).
#[derive(Clone, Copy, Debug)]
pub struct QxlConfig {
    pub ram_size: usize,
    pub vram_size: usize,
    pub vgamem_size: usize,
}

impl Default for QxlConfig {
    fn default() -> Self {
        Self {
            ram_size: DEFAULT_RAM_SIZE,
            vram_size: DEFAULT_VRAM_SIZE,
            vgamem_size: DEFAULT_VGAMEM_SIZE,
        }
    }
}

/// Legacy VGA register ports whose writes, in native mode, drop back to VGA
/// (QEMU's `qxl_vga_portio_list`; the VBE ports are not in it).
fn is_vga_register_port(port: u16) -> bool {
    matches!(
        port,
        0x3b4 | 0x3b5 | 0x3ba | 0x3c0..=0x3cf | 0x3d4 | 0x3d5 | 0x3da
    )
}

/// The surface-0 area: the start of BAR0 (which `new` makes at least twice
/// `vgamem_size`). A free function so that it borrows only `ram`.
fn surface0(ram: &HostMemory, vgamem_size: usize) -> VolatileSlice<'_, ()> {
    ram.subslice(0, vgamem_size).unwrap_or_else(|| ram.slice())
}

fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    if let Some(b) = off.checked_add(4).and_then(|end| buf.get_mut(off..end)) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

/// Copy `buf[off..off + data.len()]` into `data`, all ones when out of range.
fn read_range(buf: &[u8], off: u64, data: &mut [u8]) {
    let src = usize::try_from(off)
        .ok()
        .and_then(|o| buf.get(o..o.checked_add(data.len())?));
    match src {
        Some(s) => data.copy_from_slice(s),
        None => data.fill(0xff),
    }
}

pub struct Qxl {
    config: PciConfig,
    /// BAR0, which the VMM also maps into the guest (see `HostMemory`).
    ram: HostMemory,
    /// BAR1 (surface memory), mapped into the guest like BAR0.
    vram: HostMemory,
    /// BAR2 contents; guest writes are ignored.
    rom: Vec<u8>,
    /// Expansion ROM (vgabios-qxl.bin).
    option_rom: Vec<u8>,
    vgamem_size: usize,
    ram_header_offset: usize,
    vga: Vga,
    mode: DeviceMode,
    /// Set on a guest protocol error (as QEMU's `guest_bug`): further port
    /// writes other than RESET are ignored until the device is reset.
    guest_bug: bool,
    irq: Arc<QxlIrq>,
    engine: Arc<Mutex<Engine>>,
    cmd_kick: Arc<EventFd>,
    cursor_kick: Arc<EventFd>,
    worker: Option<Worker<QxlWorker>>,
    /// Every port command executed, for the unit tests to inspect.
    #[cfg(test)]
    events: Vec<QxlCommandEvent>,
}

impl Qxl {
    pub fn new(cfg: QxlConfig, option_rom: Vec<u8>, irq: Arc<dyn IrqLine>) -> Result<Self> {
        let vgamem_size = cfg
            .vgamem_size
            .clamp(8 * MIB, 256 * MIB)
            .next_power_of_two();
        let ram_size = cfg.ram_size.max(2 * vgamem_size).next_power_of_two();
        let vram_size = cfg.vram_size.max(PAGE_SIZE).next_power_of_two();
        let ram_header_size = ram_off::SIZE.next_multiple_of(PAGE_SIZE);

        let mut config = PciConfig::new(VENDOR_ID, DEVICE_ID, CLASS_VGA, REVISION);
        config.set_subsystem(SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID);
        let irq = Arc::new(PciInterrupt::new(&mut config, irq));
        let prefetchable = BarKind::Mem32 { prefetchable: true };
        config.add_bar(BAR_RAM, ram_size as u64, prefetchable);
        config.add_bar(BAR_VRAM, vram_size as u64, prefetchable);
        config.add_bar(
            BAR_ROM,
            ROM_SIZE as u64,
            BarKind::Mem32 {
                prefetchable: false,
            },
        );
        config.add_bar(BAR_IO, IO_SIZE, BarKind::Io);
        let option_rom = if option_rom.len() > MAX_OPTION_ROM {
            warn!(
                "qxl: option ROM of {} bytes too large, dropped",
                option_rom.len()
            );
            Vec::new()
        } else {
            option_rom
        };
        if !option_rom.is_empty() {
            config.add_rom(option_rom.len() as u64);
        }
        config.seal();

        let ram = HostMemory::new(ram_size)?;
        let vram = HostMemory::new(vram_size)?;
        let ram_header_offset = ram_size - ram_header_size;
        let irq = Arc::new(QxlIrq::new(ram.clone(), ram_header_offset, irq));
        let engine = Arc::new(Mutex::new(Engine::new(
            ram.clone(),
            vram.clone(),
            ram_header_offset,
            irq.clone(),
        )));
        let kick = || {
            EventFd::new(EFD_NONBLOCK)
                .map(Arc::new)
                .map_err(|e| crate::Error::Worker(format!("qxl eventfd: {e}")))
        };
        let (cmd_kick, cursor_kick) = (kick()?, kick()?);
        let worker = Worker::spawn(
            "qxl",
            QxlWorker {
                engine: engine.clone(),
                cmd_kick: cmd_kick.clone(),
                cursor_kick: cursor_kick.clone(),
            },
        )?;
        let mut qxl = Self {
            config,
            ram,
            vram,
            rom: vec![0; ROM_SIZE],
            option_rom,
            vgamem_size,
            ram_header_offset,
            // VBE may only use the surface-0 area, never the RAM header.
            vga: Vga::new(vgamem_size),
            mode: DeviceMode::Vga,
            guest_bug: false,
            irq,
            engine,
            cmd_kick,
            cursor_kick,
            worker: Some(worker),
            #[cfg(test)]
            events: Vec::new(),
        };
        qxl.init_rom();
        qxl.init_ram_header();
        Ok(qxl)
    }

    /// BAR0: the VMM maps it into the guest; the display model reads it.
    pub fn ram(&self) -> &HostMemory {
        &self.ram
    }

    pub fn ram_header_offset(&self) -> usize {
        self.ram_header_offset
    }

    pub fn vgamem_size(&self) -> usize {
        self.vgamem_size
    }

    pub fn mode(&self) -> DeviceMode {
        self.mode
    }

    /// Port commands executed since the last call, oldest first.
    #[cfg(test)]
    pub fn take_events(&mut self) -> Vec<QxlCommandEvent> {
        std::mem::take(&mut self.events)
    }

    /// BAR1, the surface memory the VMM maps into the guest.
    pub fn vram(&self) -> &HostMemory {
        &self.vram
    }

    /// The native-mode engine (shared with the ring worker).
    pub fn engine(&self) -> &Arc<Mutex<Engine>> {
        &self.engine
    }

    /// Cursor commands go to `sink` from now on (it first gets the current one).
    pub fn set_cursor_sink(&self, sink: Arc<dyn CursorSink>) {
        engine::lock(&self.engine).set_cursor_sink(sink);
    }

    /// `notify` is told whenever native-mode commands have drawn.
    pub fn set_draw_notify(&self, notify: Arc<dyn DrawNotify>) {
        engine::lock(&self.engine).set_draw_notify(notify);
    }

    /// In native mode: bring `frame` up to date with the primary surface.
    /// Some((whole frame is new, changed rects)); None without a primary.
    pub fn refresh_native(
        &self,
        frame: &mut Frame,
        view: &mut PrimaryView,
    ) -> Option<engine::PrimaryUpdate> {
        engine::lock(&self.engine).refresh_primary(frame, view)
    }

    /// Does the guest's driver take client monitors configs: its int_mask has
    /// CLIENT_MONITORS_CONFIG and is neither 0 nor all ones, which old Windows
    /// drivers use (QEMU's `interface_client_monitors_config` asked with no
    /// config, which spice-server does when a client starts its agent)?
    pub fn takes_client_monitors_config(&self) -> bool {
        let mask = self.header_u32(ram_off::INT_MASK);
        mask != 0 && mask != u32::MAX && mask & INTERRUPT_CLIENT_MONITORS_CONFIG != 0
    }

    /// A client's monitor layout (its window sizes) in `slots` head slots
    /// (the client's num_of_monitors; a head's id is its slot): written to
    /// the ROM with its CRC, then CLIENT_MONITORS_CONFIG raised, as QEMU does,
    /// if the driver takes it ([`Self::takes_client_monitors_config`]).
    /// Returns whether it was told.
    pub fn client_monitors_config(
        &mut self,
        layout: &display_types::MonitorLayout,
        slots: u32,
    ) -> bool {
        if !self.takes_client_monitors_config() {
            let mask = self.header_u32(ram_off::INT_MASK);
            debug!("qxl: guest does not take client monitors configs (int_mask {mask:#x})");
            return false;
        }
        write_client_monitors_config(&mut self.rom, layout, slots);
        self.send_events(INTERRUPT_CLIENT_MONITORS_CONFIG);
        true
    }

    /// Wait until the ring worker has handled every notify written so far.
    pub fn sync_worker(&self) {
        if let Some(w) = &self.worker {
            w.pause();
            w.resume();
        }
    }

    /// What the VGA registers select (meaningful in VGA mode).
    pub fn display_mode(&self) -> DisplayMode {
        render::display_mode(&self.vga)
    }

    /// Render the VGA/VBE picture from the surface-0 area of BAR0.
    pub fn render(&self, blink_phase: bool) -> Frame {
        let mut frame = Frame::default();
        self.render_into(blink_phase, &mut frame);
        frame
    }

    /// As [`Qxl::render`], reusing `frame`'s allocation.
    pub fn render_into(&self, blink_phase: bool, frame: &mut Frame) {
        render::render_into(
            &self.vga,
            &surface0(&self.ram, self.vgamem_size),
            blink_phase,
            frame,
        );
    }

    /// As [`render::render_rows_into`]: in VBE modes only `rows` are redrawn.
    pub fn render_rows_into(&self, blink_phase: bool, frame: &mut Frame, rows: Range<u32>) {
        render::render_rows_into(
            &self.vga,
            &surface0(&self.ram, self.vgamem_size),
            blink_phase,
            frame,
            Some(rows),
        );
    }

    /// The VGA/VBE state, for the display model.
    pub fn vga(&self) -> &Vga {
        &self.vga
    }

    /// The VGA side, for the VMM: the mode-13h window's mapper and the
    /// copy of the guest's stores into it before a refresh.
    pub fn vga_mut(&mut self) -> &mut Vga {
        &mut self.vga
    }

    /// Ports 0x3B0–0x3DF and 0x1CE–0x1D0.
    pub fn vga_port_read(&mut self, port: u16, data: &mut [u8]) {
        self.vga.port_read(port, data);
    }

    pub fn vga_port_write(&mut self, port: u16, data: &[u8]) {
        if self.mode != DeviceMode::Vga && is_vga_register_port(port) {
            // A VGA BIOS call or vgacon took the screen back (QEMU: destroy the
            // primary, soft reset, enter VGA mode).
            debug!("qxl: VGA port {port:#x} written in native mode, back to VGA");
            self.push_event(QxlCommandEvent::DestroyPrimary { is_async: false });
            self.guest_bug = false;
            self.mode = DeviceMode::Vga;
        }
        let mut fb = surface0(&self.ram, self.vgamem_size);
        self.vga.port_write(port, data, &mut fb);
    }

    /// The 0xA0000–0xBFFFF window; `offset` is relative to 0xA0000.
    pub fn vga_mem_read(&mut self, offset: u64, data: &mut [u8]) {
        let fb = surface0(&self.ram, self.vgamem_size);
        self.vga.mem_read(offset, data, &fb);
    }

    pub fn vga_mem_write(&mut self, offset: u64, data: &[u8]) {
        let mut fb = surface0(&self.ram, self.vgamem_size);
        self.vga.mem_write(offset, data, &mut fb);
    }

    fn init_rom(&mut self) {
        let ram_header_size = ram_off::SIZE.next_multiple_of(PAGE_SIZE);
        let surface0_area_size = self.vgamem_size.next_multiple_of(PAGE_SIZE);
        let num_pages = self
            .ram
            .len()
            .saturating_sub(ram_header_size + surface0_area_size)
            / PAGE_SIZE;
        let modes = mode_list(self.vgamem_size);
        let rom = &mut self.rom;
        rom.fill(0);
        put_u32(rom, rom_off::MAGIC, ROM_MAGIC);
        put_u32(rom, rom_off::MODES_OFFSET, rom_off::SIZE as u32);
        put_u32(rom, rom_off::NUM_PAGES, num_pages as u32);
        put_u32(rom, rom_off::PAGES_OFFSET, surface0_area_size as u32);
        put_u32(rom, rom_off::DRAW_AREA_OFFSET, 0);
        put_u32(rom, rom_off::SURFACE0_AREA_SIZE, surface0_area_size as u32);
        put_u32(
            rom,
            rom_off::RAM_HEADER_OFFSET,
            self.ram_header_offset as u32,
        );
        put_u32(rom, rom_off::N_SURFACES, NUM_SURFACES);
        rom[rom_off::SLOTS_START] = 1;
        rom[rom_off::SLOTS_END] = NUM_MEMSLOTS - 1;
        rom[rom_off::SLOT_GEN_BITS] = MEMSLOT_GENERATION_BITS;
        rom[rom_off::SLOT_ID_BITS] = MEMSLOT_SLOT_BITS;
        let list = rom_off::SIZE;
        put_u32(rom, list, modes.len() as u32);
        for (i, m) in modes.iter().enumerate() {
            let base = list + 4 + i * QXL_MODE_SIZE;
            let fields = [
                m.id,
                m.x_res,
                m.y_res,
                m.bits,
                m.stride,
                m.x_mili,
                m.y_mili,
                m.orientation,
            ];
            for (k, v) in fields.into_iter().enumerate() {
                put_u32(rom, base + 4 * k, v);
            }
        }
    }

    /// QEMU's `init_qxl_ram`: magic, interrupts off, empty rings.
    fn init_ram_header(&mut self) {
        let h = self.ram_header_offset;
        let ram = &self.ram;
        ram.write_u32(h + ram_off::MAGIC, RAM_MAGIC);
        ram.write_u32(h + ram_off::INT_PENDING, 0);
        ram.write_u32(h + ram_off::INT_MASK, 0);
        ram.write_u32(h + ram_off::UPDATE_SURFACE, 0);
        ram.write_u32(h + ram_off::MONITORS_CONFIG, 0);
        ram.write_u32(h + ram_off::MONITORS_CONFIG + 4, 0);
        for (ring, items) in [
            (ram_off::CMD_RING, CMD_RING_SIZE),
            (ram_off::CURSOR_RING, CURSOR_RING_SIZE),
            (ram_off::RELEASE_RING, RELEASE_RING_SIZE),
        ] {
            // num_items, prod, notify_on_prod, cons, notify_on_cons.
            for (k, v) in [items, 0, 1, 0, 0].into_iter().enumerate() {
                ram.write_u32(h + ring + 4 * k, v);
            }
        }
        // The release ring's first produce slot starts empty (id 0).
        let slot0 = h + ram_off::RELEASE_RING + ram_off::RING_HEADER;
        ram.write_u32(slot0, 0);
        ram.write_u32(slot0 + 4, 0);
    }

    fn header_u32(&self, field: usize) -> u32 {
        self.ram.read_u32(self.ram_header_offset + field)
    }

    fn header_u64(&self, field: usize) -> u64 {
        self.ram.read_u64(self.ram_header_offset + field)
    }

    /// OR `bits` into the guest-visible int_pending and re-evaluate the line.
    fn send_events(&mut self, bits: u32) {
        self.irq.send(bits);
    }

    /// Pending = (int_pending & int_mask) != 0; `PciInterrupt` gates it by
    /// COMMAND.INTX_DISABLE.
    fn update_irq(&mut self) {
        self.irq.update();
    }

    /// Guest addresses of BAR0 and BAR1 (memslots must lie inside one).
    fn bar_bases(&self) -> [Option<u64>; 2] {
        let c = &self.config;
        let decoded = |bar| c.active_bar(bar).map(|(base, _, _)| base);
        [decoded(BAR_RAM), decoded(BAR_VRAM)]
    }

    fn guest_error(&mut self, what: &str) {
        warn!("qxl: guest bug: {what}");
        self.guest_bug = true;
        self.send_events(INTERRUPT_ERROR);
    }

    fn push_event(&mut self, ev: QxlCommandEvent) {
        trace!("qxl: {ev:?}");
        #[cfg(test)]
        self.events.push(ev);
        let kick = match ev {
            QxlCommandEvent::NotifyCmd => Some(&self.cmd_kick),
            QxlCommandEvent::NotifyCursor => Some(&self.cursor_kick),
            _ => None,
        };
        if let Some(k) = kick {
            if let Err(e) = k.write(1) {
                warn!("qxl: worker kick: {e}");
            }
            return;
        }
        let bases = self.bar_bases();
        let result = engine::lock(&self.engine).execute(&ev, &bases);
        if let Err(what) = result {
            self.guest_error(what);
        }
    }

    /// QEMU's `qxl_hard_reset`: fresh ROM and RAM header, back to VGA mode.
    fn hard_reset(&mut self) {
        self.init_rom();
        self.init_ram_header();
        self.guest_bug = false;
        self.mode = DeviceMode::Vga;
        self.push_event(QxlCommandEvent::Reset);
        self.update_irq();
    }

    fn log(&self) {
        let start = self.ram_header_offset + ram_off::LOG_BUF;
        let mut buf = vec![0u8; ram_off::LOG_BUF_SIZE];
        self.ram.read(start as u64, &mut buf);
        // The guest need not NUL-terminate it.
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let text = String::from_utf8_lossy(&buf[..len]);
        info!("qxl guest: {}", text.trim_end());
    }

    fn io_write(&mut self, port: u8, val: u8) {
        if self.guest_bug && port != io::RESET {
            trace!("qxl: port {port} ignored after a guest bug");
            return;
        }
        if port >= io::RANGE_SIZE {
            debug!("qxl: write to unused port {port}");
            return;
        }
        // In VGA mode only setup commands run; QEMU still completes stray async
        // commands so that buggy drivers do not hang.
        let allowed_in_vga = matches!(
            port,
            io::RESET
                | io::SET_MODE
                | io::MEMSLOT_ADD
                | io::MEMSLOT_DEL
                | io::CREATE_PRIMARY
                | io::UPDATE_IRQ
                | io::LOG
                | io::MEMSLOT_ADD_ASYNC
                | io::CREATE_PRIMARY_ASYNC
        );
        let is_async = matches!(
            port,
            io::UPDATE_AREA_ASYNC..=io::FLUSH_SURFACES_ASYNC | io::MONITORS_CONFIG_ASYNC
        );
        if self.mode == DeviceMode::Vga && !allowed_in_vga {
            debug!("qxl: port {port} ignored in VGA mode");
            if port >= io::UPDATE_AREA_ASYNC {
                self.send_events(INTERRUPT_IO_CMD);
            }
            return;
        }
        trace!("qxl: io port {port} = {val:#x}");
        match port {
            io::UPDATE_IRQ => self.update_irq(),
            io::LOG => self.log(),
            io::RESET => self.hard_reset(),
            io::NOTIFY_CMD => self.push_event(QxlCommandEvent::NotifyCmd),
            io::NOTIFY_CURSOR => self.push_event(QxlCommandEvent::NotifyCursor),
            io::NOTIFY_OOM => self.push_event(QxlCommandEvent::NotifyOom),
            io::SET_MODE => self.push_event(QxlCommandEvent::SetMode { mode: val }),
            io::UPDATE_AREA | io::UPDATE_AREA_ASYNC => {
                let area = QxlRect {
                    top: self.header_u32(ram_off::UPDATE_AREA) as i32,
                    left: self.header_u32(ram_off::UPDATE_AREA + 4) as i32,
                    bottom: self.header_u32(ram_off::UPDATE_AREA + 8) as i32,
                    right: self.header_u32(ram_off::UPDATE_AREA + 12) as i32,
                };
                let surface_id = self.header_u32(ram_off::UPDATE_SURFACE);
                self.push_event(QxlCommandEvent::UpdateArea {
                    surface_id,
                    area,
                    is_async,
                });
            }
            io::MEMSLOT_ADD | io::MEMSLOT_ADD_ASYNC => {
                if val >= NUM_MEMSLOTS {
                    self.guest_error("MEMSLOT_ADD: slot out of range");
                } else {
                    let start = self.header_u64(ram_off::MEM_SLOT);
                    let end = self.header_u64(ram_off::MEM_SLOT + 8);
                    self.push_event(QxlCommandEvent::MemslotAdd {
                        slot: val,
                        start,
                        end,
                        is_async,
                    });
                }
            }
            io::MEMSLOT_DEL => {
                if val >= NUM_MEMSLOTS {
                    self.guest_error("MEMSLOT_DEL: slot out of range");
                } else {
                    self.push_event(QxlCommandEvent::MemslotDel { slot: val });
                }
            }
            io::CREATE_PRIMARY | io::CREATE_PRIMARY_ASYNC => self.create_primary(val, is_async),
            io::DESTROY_PRIMARY | io::DESTROY_PRIMARY_ASYNC => {
                if val != 0 {
                    self.guest_error("DESTROY_PRIMARY: val != 0");
                } else if self.mode == DeviceMode::Native {
                    self.mode = DeviceMode::Undefined;
                    self.push_event(QxlCommandEvent::DestroyPrimary { is_async });
                }
            }
            io::DESTROY_SURFACE_WAIT | io::DESTROY_SURFACE_ASYNC => {
                // val is a byte, always < NUM_SURFACES.
                self.push_event(QxlCommandEvent::DestroySurface {
                    surface_id: val,
                    is_async,
                });
            }
            io::DESTROY_ALL_SURFACES | io::DESTROY_ALL_SURFACES_ASYNC => {
                self.mode = DeviceMode::Undefined;
                self.push_event(QxlCommandEvent::DestroyAllSurfaces { is_async });
            }
            io::FLUSH_SURFACES_ASYNC => self.push_event(QxlCommandEvent::FlushSurfaces),
            io::FLUSH_RELEASE => self.push_event(QxlCommandEvent::FlushRelease),
            io::MONITORS_CONFIG_ASYNC => {
                let config = self.header_u64(ram_off::MONITORS_CONFIG);
                self.push_event(QxlCommandEvent::MonitorsConfig { config });
            }
            // DETACH/ATTACH_PRIMARY: QEMU treats them as guest bugs too.
            _ => self.guest_error("unexpected io port"),
        }
        // Everything runs synchronously, so an async command is complete now.
        // Until the native engine exists they are no-ops apart from the mode
        // change (CREATE/DESTROY_PRIMARY) and the queued event.
        if is_async {
            self.send_events(INTERRUPT_IO_CMD);
        }
    }

    fn create_primary(&mut self, val: u8, is_async: bool) {
        if val != 0 {
            self.guest_error("CREATE_PRIMARY: val != 0");
            return;
        }
        let c = ram_off::CREATE_SURFACE;
        let surface = SurfaceCreate {
            width: self.header_u32(c),
            height: self.header_u32(c + 4),
            stride: self.header_u32(c + 8) as i32,
            format: self.header_u32(c + 12),
            position: self.header_u32(c + 16),
            mouse_mode: self.header_u32(c + 20),
            flags: self.header_u32(c + 24),
            kind: self.header_u32(c + 28),
            mem: self.header_u64(c + 32),
        };
        let bytes = u64::from(surface.stride.unsigned_abs()) * u64::from(surface.height);
        if surface.stride == i32::MIN || bytes > self.vgamem_size as u64 {
            self.guest_error("CREATE_PRIMARY: primary larger than the framebuffer");
            return;
        }
        if surface.stride & 3 != 0 {
            self.guest_error("CREATE_PRIMARY: stride not a multiple of 4");
            return;
        }
        if self.mode == DeviceMode::Native {
            debug!("qxl: CREATE_PRIMARY while a primary exists");
        }
        self.mode = DeviceMode::Native;
        self.push_event(QxlCommandEvent::CreatePrimary { surface, is_async });
    }
}

/// The ring worker parks with the machine and ends with it.
impl crate::Lifecycle for Qxl {
    fn pause(&mut self) {
        if let Some(w) = &self.worker {
            w.pause();
        }
    }

    fn resume(&mut self) {
        if let Some(w) = &self.worker {
            w.resume();
        }
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.worker.take() {
            w.stop();
        }
        Ok(())
    }
}

impl PciDevice for Qxl {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn interrupt(&self) -> Option<Arc<PciInterrupt>> {
        Some(self.irq.interrupt().clone())
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        match bar {
            BAR_RAM => self.ram.read(offset, data),
            BAR_VRAM => self.vram.read(offset, data),
            BAR_ROM => read_range(&self.rom, offset, data),
            ROM_BAR => {
                // The ROM BAR is a power of two; past the image reads as zero.
                data.fill(0);
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                for (i, b) in data.iter_mut().enumerate() {
                    if let Some(&v) = start.checked_add(i).and_then(|o| self.option_rom.get(o)) {
                        *b = v;
                    }
                }
            }
            // I/O port reads return all ones (QEMU's ioport_read).
            _ => data.fill(0xff),
        }
    }

    fn host_memory_bar(&self, bar: usize) -> Option<HostMemory> {
        match bar {
            BAR_RAM => Some(self.ram.clone()),
            BAR_VRAM => Some(self.vram.clone()),
            _ => None,
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        match bar {
            BAR_RAM => self.ram.write(offset, data),
            BAR_VRAM => self.vram.write(offset, data),
            BAR_IO => {
                // QEMU accepts byte accesses only (valid.max_access_size = 1).
                if data.len() != 1 || offset >= IO_SIZE {
                    debug!("qxl: {}-byte io write at {offset:#x} ignored", data.len());
                    return;
                }
                self.io_write(offset as u8, data[0]);
            }
            _ => trace!("qxl: write to read-only bar {bar} at {offset:#x} ignored"),
        }
    }

    /// Machine reset; the root has already restored config space
    /// (`pci::reset_device`).
    fn reset(&mut self) {
        self.vga.reset();
        self.hard_reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::RecordingLine;
    use crate::pci;
    use crate::pci::config::{BAR0, COMMAND, INTERRUPT_PIN, ROM_ADDRESS, SUBSYSTEM_VENDOR_ID};

    fn option_rom() -> Vec<u8> {
        let mut r = vec![0u8; 40 * 1024];
        r[0] = 0x55;
        r[1] = 0xaa;
        r[2] = 80; // 80 × 512 bytes
        r
    }

    fn device() -> (Qxl, Arc<RecordingLine>) {
        let line = Arc::new(RecordingLine::default());
        let qxl = Qxl::new(QxlConfig::default(), option_rom(), line.clone()).unwrap();
        (qxl, line)
    }

    fn rom_u32(q: &mut Qxl, off: u64) -> u32 {
        let mut b = [0u8; 4];
        q.bar_read(BAR_ROM, off, &mut b);
        u32::from_le_bytes(b)
    }

    fn hdr(q: &Qxl, field: usize) -> u32 {
        q.header_u32(field)
    }

    fn set_hdr(q: &mut Qxl, field: usize, v: u32) {
        let off = (q.ram_header_offset() + field) as u64;
        q.bar_write(BAR_RAM, off, &v.to_le_bytes());
    }

    fn probe(q: &mut Qxl, off: usize) -> u32 {
        pci::config_write(q, off, &0xffff_ffffu32.to_le_bytes());
        pci::config_read(q, off)
    }

    #[test]
    fn identity_and_bar_sizes() {
        let (mut q, _) = device();
        assert_eq!(pci::config_read(&mut q, 0), 0x0100_1b36);
        assert_eq!(
            pci::config_read(&mut q, 8),
            0x0300_0000 | u32::from(REVISION)
        );
        assert_eq!(pci::config_read(&mut q, SUBSYSTEM_VENDOR_ID), 0x1100_1af4);
        assert_eq!(q.config().u8_at(INTERRUPT_PIN), 1);
        // Size probes as SeaBIOS does: BAR0 64 MiB prefetchable, BAR1 8 MiB,
        // BAR2 8 KiB, BAR3 32 ports, expansion ROM 64 KiB.
        assert_eq!(probe(&mut q, BAR0), 0xfc00_0008);
        assert_eq!(probe(&mut q, BAR0 + 4), 0xff80_0008);
        assert_eq!(probe(&mut q, BAR0 + 8), 0xffff_e000);
        assert_eq!(probe(&mut q, BAR0 + 12), 0xffff_ffe1);
        assert_eq!(probe(&mut q, BAR0 + 16), 0);
        assert_eq!(probe(&mut q, ROM_ADDRESS), 0xffff_0001);
    }

    #[test]
    fn rom_header_and_modes_as_linux_reads_them() {
        let (mut q, _) = device();
        // qxl_kms.c: check the magic, then read the fields it prints and uses.
        assert_eq!(rom_u32(&mut q, 0), ROM_MAGIC);
        let modes_offset = rom_u32(&mut q, rom_off::MODES_OFFSET as u64);
        assert_eq!(modes_offset, 1160);
        let ram_header_offset = rom_u32(&mut q, rom_off::RAM_HEADER_OFFSET as u64);
        assert_eq!(ram_header_offset as usize, 64 * MIB - 8192);
        assert_eq!(
            rom_u32(&mut q, rom_off::SURFACE0_AREA_SIZE as u64),
            16 << 20
        );
        assert_eq!(rom_u32(&mut q, rom_off::PAGES_OFFSET as u64), 16 << 20);
        assert_eq!(
            rom_u32(&mut q, rom_off::NUM_PAGES as u64) as usize,
            (64 * MIB - 16 * MIB - 8192) / 4096
        );
        assert_eq!(rom_u32(&mut q, rom_off::N_SURFACES as u64), 1024);
        // slots_start, slots_end, slot_gen_bits, slot_id_bits.
        assert_eq!(rom_u32(&mut q, rom_off::SLOTS_START as u64), 0x0808_0701);
        // The RAM header the ROM points at carries its magic.
        assert_eq!(q.ram().read_u32(ram_header_offset as usize), RAM_MAGIC);

        let n = rom_u32(&mut q, modes_offset as u64);
        let expected = mode_list(DEFAULT_VGAMEM_SIZE);
        assert_eq!(n as usize, expected.len());
        assert!(modes_offset as usize + 4 + n as usize * 32 <= ROM_SIZE);
        let mode =
            |q: &mut Qxl, i: u64, f: u64| rom_u32(q, modes_offset as u64 + 4 + i * 32 + f * 4);
        // First entry: 640x480x16, orientation 0, id 0; then x32; then orientation 1.
        assert_eq!(
            (0..8).map(|f| mode(&mut q, 0, f)).collect::<Vec<_>>(),
            [0, 640, 480, 16, 1280, 187, 140, 0]
        );
        assert_eq!(mode(&mut q, 1, 3), 32);
        assert_eq!(mode(&mut q, 2, 7), 1);
        // 2560x1600x32 (16 000 000 bytes) fits in 16 MiB; 2560x2048x32 does not,
        // but its 16 bpp variant does, keeping QEMU's ids.
        let all: Vec<_> = (0..u64::from(n))
            .map(|i| {
                (
                    mode(&mut q, i, 0),
                    mode(&mut q, i, 1),
                    mode(&mut q, i, 2),
                    mode(&mut q, i, 3),
                )
            })
            .collect();
        assert!(all.contains(&(117, 2560, 1600, 32)));
        assert!(!all
            .iter()
            .any(|&(_, x, y, b)| (x, y, b) == (2560, 2048, 32)));
        assert!(all.contains(&(120, 2560, 2048, 16)));
        // ids are strictly increasing, every listed mode fits.
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        // Writes to the ROM are ignored.
        q.bar_write(BAR_ROM, 0, &[0; 4]);
        assert_eq!(rom_u32(&mut q, 0), ROM_MAGIC);
    }

    #[test]
    fn log_reads_the_ram_header_buffer() {
        let (mut q, _) = device();
        let off = (q.ram_header_offset() + ram_off::LOG_BUF) as u64;
        q.bar_write(BAR_RAM, off, b"hello from the guest\n\0");
        q.bar_write(BAR_IO, io::LOG as u64, &[0]);
        // Without a NUL the buffer is bounded by its 4096 bytes.
        q.bar_write(BAR_RAM, off, &[b'x'; ram_off::LOG_BUF_SIZE]);
        q.bar_write(BAR_IO, io::LOG as u64, &[0]);
        assert!(!q.guest_bug);
    }

    #[test]
    fn reset_returns_to_vga_and_clears_interrupts() {
        let (mut q, line) = device();
        set_hdr(&mut q, ram_off::INT_MASK, INTERRUPT_IO_CMD);
        // Linux: CREATE_PRIMARY_ASYNC with a 1024x768 xRGB surface.
        let c = ram_off::CREATE_SURFACE;
        set_hdr(&mut q, c, 1024);
        set_hdr(&mut q, c + 4, 768);
        set_hdr(&mut q, c + 8, 4096);
        set_hdr(&mut q, c + 12, 32);
        q.bar_write(BAR_IO, io::CREATE_PRIMARY_ASYNC as u64, &[0]);
        assert_eq!(q.mode(), DeviceMode::Native);
        assert!(line.is_high());
        set_hdr(&mut q, ram_off::RELEASE_RING + 4, 5); // scribble on a ring
        q.bar_write(BAR_IO, io::RESET as u64, &[0]);
        assert_eq!(q.mode(), DeviceMode::Vga);
        assert_eq!(hdr(&q, ram_off::INT_PENDING), 0);
        assert_eq!(hdr(&q, ram_off::INT_MASK), 0);
        assert_eq!(hdr(&q, ram_off::RELEASE_RING), RELEASE_RING_SIZE);
        assert_eq!(hdr(&q, ram_off::RELEASE_RING + 4), 0);
        assert_eq!(hdr(&q, ram_off::CMD_RING + 8), 1);
        assert!(!line.is_high());
        let ev = q.take_events();
        assert!(matches!(
            ev[0],
            QxlCommandEvent::CreatePrimary {
                surface: SurfaceCreate {
                    width: 1024,
                    height: 768,
                    stride: 4096,
                    ..
                },
                is_async: true
            }
        ));
        assert_eq!(ev.last(), Some(&QxlCommandEvent::Reset));
    }

    #[test]
    fn async_command_raises_io_cmd_and_update_irq_drops_it() {
        let (mut q, line) = device();
        let mask = INTERRUPT_DISPLAY | INTERRUPT_CURSOR | INTERRUPT_IO_CMD;
        set_hdr(&mut q, ram_off::INT_MASK, mask);
        // MEMSLOT_ADD_ASYNC slot 1 over the start of BAR0, placed by firmware.
        pci::config_write(&mut q, BAR0, &0xe000_0000u32.to_le_bytes());
        pci::config_write(&mut q, COMMAND, &[0x03, 0x00]);
        set_hdr(&mut q, ram_off::MEM_SLOT, 0xe000_0000);
        set_hdr(&mut q, ram_off::MEM_SLOT + 8, 0xe3ff_e000);
        q.bar_write(BAR_IO, io::MEMSLOT_ADD_ASYNC as u64, &[1]);
        assert_eq!(hdr(&q, ram_off::INT_PENDING), INTERRUPT_IO_CMD);
        assert!(line.is_high());
        assert_ne!(
            pci::config_read(&mut q, 4) & (1 << 19),
            0,
            "status interrupt bit"
        );
        assert_eq!(
            q.take_events(),
            [QxlCommandEvent::MemslotAdd {
                slot: 1,
                start: 0xe000_0000,
                end: 0xe3ff_e000,
                is_async: true
            }]
        );
        // The ISR: xchg(int_pending, 0), then outb(0, UPDATE_IRQ).
        set_hdr(&mut q, ram_off::INT_PENDING, 0);
        q.bar_write(BAR_IO, io::UPDATE_IRQ as u64, &[0]);
        assert!(!line.is_high());
        // A stray async command in VGA mode is still completed.
        q.bar_write(BAR_IO, io::FLUSH_SURFACES_ASYNC as u64, &[0]);
        assert!(line.is_high());
        assert!(q.take_events().is_empty());
        // Masked by COMMAND.INTX_DISABLE.
        pci::config_write(&mut q, COMMAND, &[0x00, 0x04]);
        assert!(!line.is_high());
    }

    #[test]
    fn hostile_bar_sweep_does_not_panic() {
        let (mut q, _) = device();
        for bar in [BAR_ROM, BAR_IO, 4, 5, ROM_BAR, 99] {
            for off in (0..70u64).chain([8190, 8191, 8192, u64::MAX - 3, u64::MAX]) {
                for len in [1usize, 2, 3, 4, 8] {
                    let mut buf = vec![0u8; len];
                    q.bar_read(bar, off, &mut buf);
                    for v in [0u8, 1, 7, 8, 0xff] {
                        q.bar_write(bar, off, &vec![v; len]);
                    }
                }
            }
        }
        // Every port with every value, in VGA and native mode.
        for mode_switch in [false, true] {
            if mode_switch {
                q.bar_write(BAR_IO, io::RESET as u64, &[0]);
                q.bar_write(BAR_IO, io::CREATE_PRIMARY as u64, &[0]);
            }
            for port in 0..IO_SIZE {
                for v in [0u8, 1, 7, 8, 200, 0xff] {
                    q.bar_write(BAR_IO, port, &[v]);
                }
            }
        }
        // Out-of-range RAM accesses read as ones and are dropped.
        let mut b = [0u8; 4];
        q.bar_read(BAR_RAM, (64 * MIB) as u64 - 2, &mut b);
        assert_eq!(b, [0xff; 4]);
        q.bar_write(BAR_RAM, u64::MAX, &[1, 2]);
        assert_eq!(rom_u32(&mut q, 0), ROM_MAGIC);
        crate::pci::reset_device(&mut q);
        assert_eq!(q.mode(), DeviceMode::Vga);
    }

    #[test]
    fn expansion_rom_serves_the_given_bytes() {
        let (mut q, _) = device();
        let mut sig = [0u8; 3];
        q.bar_read(ROM_BAR, 0, &mut sig);
        assert_eq!(sig, [0x55, 0xaa, 80]);
        // Beyond the image (the BAR is 64 KiB) reads as zero.
        let mut b = [0xffu8; 4];
        q.bar_read(ROM_BAR, 50 * 1024, &mut b);
        assert_eq!(b, [0; 4]);
        // No ROM bytes, no ROM BAR.
        let mut q = Qxl::new(
            QxlConfig::default(),
            Vec::new(),
            Arc::new(RecordingLine::default()),
        )
        .unwrap();
        assert_eq!(probe(&mut q, ROM_ADDRESS), 0);
    }

    #[test]
    fn vga_port_write_leaves_native_mode_and_vbe_uses_bar0() {
        let (mut q, _) = device();
        q.bar_write(BAR_IO, io::CREATE_PRIMARY as u64, &[0]);
        assert_eq!(q.mode(), DeviceMode::Native);
        // VBE ports do not count as VGA register writes.
        q.vga_port_write(0x1ce, &4u16.to_le_bytes());
        assert_eq!(q.mode(), DeviceMode::Native);
        q.vga_port_write(0x3c0, &[0x20]);
        assert_eq!(q.mode(), DeviceMode::Vga);
        // A VBE mode scans out of BAR0.
        for (idx, val) in [(1u16, 8u16), (2, 2), (3, 32), (4, 0x41)] {
            q.vga_port_write(0x1ce, &idx.to_le_bytes());
            q.vga_port_write(0x1cf, &val.to_le_bytes());
        }
        q.bar_write(BAR_RAM, 4, &0x00ff_0000u32.to_le_bytes());
        q.vga_port_read(0x3da, &mut [0]);
        q.vga_port_write(0x3c0, &[0x20]);
        let f = q.render(false);
        assert_eq!((f.width, f.height), (8, 2));
        assert_eq!(f.pixel(1, 0), 0x00ff_0000);
        // The legacy window reaches BAR0's bank 0 with VBE on.
        let mut b = [0u8; 4];
        q.vga_mem_read(4, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x00ff_0000);
    }
}
