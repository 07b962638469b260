//! The QXL card's fixed layout as spice-protocol's `qxl_dev.h` and QEMU's
//! `qxl.c` define it: PCI identity, BAR indices and sizes, the packed offsets
//! of `QXLRom` and `QXLRam`, the I/O ports, interrupt bits and QEMU's mode
//! list; and the ROM's client monitors config (what a client's window size
//! becomes for the guest driver).

use display_types::MonitorLayout;

pub const VENDOR_ID: u16 = 0x1b36;
pub const DEVICE_ID: u16 = 0x0100;
pub const CLASS_VGA: u32 = 0x03_0000;
/// QEMU's default `revision` property is 5 ("qxl-5", QXL_REVISION_STABLE_V12 + 1),
/// written as-is to the PCI revision byte. Linux wants >= 4; 5 adds nothing the
/// device must do differently, so we mirror QEMU.
pub const REVISION: u8 = 5;
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
pub const SUBSYSTEM_ID: u16 = 0x1100;

pub const BAR_RAM: usize = 0;
pub const BAR_VRAM: usize = 1;
pub const BAR_ROM: usize = 2;
pub const BAR_IO: usize = 3;

pub(crate) const MIB: usize = 1 << 20;
pub const DEFAULT_RAM_SIZE: usize = 64 * MIB;
pub const DEFAULT_VRAM_SIZE: usize = 8 * MIB;
/// QEMU's `vgamem_mb` default: the surface-0 area at the start of BAR0.
pub const DEFAULT_VGAMEM_SIZE: usize = 16 * MIB;
/// QEMU's QXL_ROM_SZ (one 4 KiB page would do, but 8 KiB is what it declares).
pub const ROM_SIZE: usize = 8192;
/// pow2ceil(QXL_IO_RANGE_SIZE = 25) for revision >= 4.
pub const IO_SIZE: u64 = 32;
/// Largest option ROM we accept (vgabios-qxl.bin is ~40 KiB).
pub(crate) const MAX_OPTION_ROM: usize = 16 * MIB;

/// `QXLRom` field offsets (packed).
pub mod rom_off {
    pub const MAGIC: usize = 0;
    pub const ID: usize = 4;
    pub const UPDATE_ID: usize = 8;
    pub const COMPRESSION_LEVEL: usize = 12;
    pub const LOG_LEVEL: usize = 16;
    pub const MODE: usize = 20;
    pub const MODES_OFFSET: usize = 24;
    pub const NUM_PAGES: usize = 28;
    pub const PAGES_OFFSET: usize = 32;
    pub const DRAW_AREA_OFFSET: usize = 36;
    pub const SURFACE0_AREA_SIZE: usize = 40;
    pub const RAM_HEADER_OFFSET: usize = 44;
    pub const MM_CLOCK: usize = 48;
    pub const N_SURFACES: usize = 52;
    pub const FLAGS: usize = 56;
    pub const SLOTS_START: usize = 64;
    pub const SLOTS_END: usize = 65;
    pub const SLOT_GEN_BITS: usize = 66;
    pub const SLOT_ID_BITS: usize = 67;
    pub const SLOT_GENERATION: usize = 68;
    pub const CLIENT_PRESENT: usize = 69;
    pub const CLIENT_CAPABILITIES: usize = 70;
    pub const CLIENT_MONITORS_CONFIG_CRC: usize = 128;
    pub const CLIENT_MONITORS_CONFIG: usize = 132;
    /// sizeof(QXLRom); the mode list follows.
    pub const SIZE: usize = 1160;
}

/// `QXLRam` field offsets (packed), relative to `ram_header_offset` in BAR0.
pub mod ram_off {
    pub const MAGIC: usize = 0;
    pub const INT_PENDING: usize = 4;
    pub const INT_MASK: usize = 8;
    pub const LOG_BUF: usize = 12;
    pub const LOG_BUF_SIZE: usize = 4096;
    pub const CMD_RING: usize = 4108;
    pub const CURSOR_RING: usize = 4640;
    pub const RELEASE_RING: usize = 5172;
    pub const UPDATE_AREA: usize = 5256;
    pub const UPDATE_SURFACE: usize = 5272;
    pub const MEM_SLOT: usize = 5276;
    pub const CREATE_SURFACE: usize = 5292;
    pub const FLAGS: usize = 5332;
    pub const MONITORS_CONFIG: usize = 5340;
    /// sizeof(QXLRam).
    pub const SIZE: usize = 5348;
    /// Ring header: num_items, prod, notify_on_prod, cons, notify_on_cons; then items.
    pub const RING_HEADER: usize = 20;
}

pub const ROM_MAGIC: u32 = 0x4f52_5851; // "QXRO"
pub const RAM_MAGIC: u32 = 0x4152_5851; // "QXRA"
pub(crate) const CMD_RING_SIZE: u32 = 32;
pub(crate) const CURSOR_RING_SIZE: u32 = 32;
pub(crate) const RELEASE_RING_SIZE: u32 = 8;
/// QEMU: NUM_MEMSLOTS 8, 8 generation bits, 8 slot-id bits, 1024 surfaces.
pub(crate) const NUM_MEMSLOTS: u8 = 8;
pub(crate) const MEMSLOT_GENERATION_BITS: u8 = 8;
pub(crate) const MEMSLOT_SLOT_BITS: u8 = 8;
pub const NUM_SURFACES: u32 = 1024;
pub(crate) const PAGE_SIZE: usize = 4096;
pub(crate) const QXL_MODE_SIZE: usize = 32;

pub const INTERRUPT_DISPLAY: u32 = 1 << 0;
pub const INTERRUPT_CURSOR: u32 = 1 << 1;
pub const INTERRUPT_IO_CMD: u32 = 1 << 2;
pub const INTERRUPT_ERROR: u32 = 1 << 3;
pub const INTERRUPT_CLIENT: u32 = 1 << 4;
pub const INTERRUPT_CLIENT_MONITORS_CONFIG: u32 = 1 << 5;

/// BAR3 port offsets (`QXL_IO_*`, qxl_dev.h "append only" enum).
pub mod io {
    pub const NOTIFY_CMD: u8 = 0;
    pub const NOTIFY_CURSOR: u8 = 1;
    pub const UPDATE_AREA: u8 = 2;
    pub const UPDATE_IRQ: u8 = 3;
    pub const NOTIFY_OOM: u8 = 4;
    pub const RESET: u8 = 5;
    pub const SET_MODE: u8 = 6;
    pub const LOG: u8 = 7;
    pub const MEMSLOT_ADD: u8 = 8;
    pub const MEMSLOT_DEL: u8 = 9;
    pub const DETACH_PRIMARY: u8 = 10;
    pub const ATTACH_PRIMARY: u8 = 11;
    pub const CREATE_PRIMARY: u8 = 12;
    pub const DESTROY_PRIMARY: u8 = 13;
    pub const DESTROY_SURFACE_WAIT: u8 = 14;
    pub const DESTROY_ALL_SURFACES: u8 = 15;
    pub const UPDATE_AREA_ASYNC: u8 = 16;
    pub const MEMSLOT_ADD_ASYNC: u8 = 17;
    pub const CREATE_PRIMARY_ASYNC: u8 = 18;
    pub const DESTROY_PRIMARY_ASYNC: u8 = 19;
    pub const DESTROY_SURFACE_ASYNC: u8 = 20;
    pub const DESTROY_ALL_SURFACES_ASYNC: u8 = 21;
    pub const FLUSH_SURFACES_ASYNC: u8 = 22;
    pub const FLUSH_RELEASE: u8 = 23;
    pub const MONITORS_CONFIG_ASYNC: u8 = 24;
    pub const RANGE_SIZE: u8 = 25;
}

/// QEMU's `qxl_modes[]`: each resolution at 16 and 32 bpp, orientations 0 and 1.
/// A mode's id is its index here, even when the list in the ROM skips some.
pub(crate) const MODE_RESOLUTIONS: [(u32, u32); 37] = [
    (640, 480),
    (800, 480),
    (800, 600),
    (832, 624),
    (960, 640),
    (1024, 600),
    (1024, 768),
    (1152, 864),
    (1152, 870),
    (1280, 720),
    (1280, 760),
    (1280, 768),
    (1280, 800),
    (1280, 960),
    (1280, 1024),
    (1360, 768),
    (1366, 768),
    (1400, 1050),
    (1440, 900),
    (1600, 900),
    (1600, 1200),
    (1680, 1050),
    (1920, 1080),
    (1920, 1200),
    (1920, 1440),
    (2000, 2000),
    (2048, 1536),
    (2048, 2048),
    (2560, 1440),
    (2560, 1600),
    (2560, 2048),
    (2800, 2100),
    (3200, 2400),
    (3840, 2160),
    (4096, 2160),
    (7680, 4320),
    (8192, 4320),
];

/// One `QXLMode` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QxlMode {
    pub id: u32,
    pub x_res: u32,
    pub y_res: u32,
    pub bits: u32,
    pub stride: u32,
    pub x_mili: u32,
    pub y_mili: u32,
    pub orientation: u32,
}

/// QEMU's mode list filtered as `init_qxl_rom` does: modes whose framebuffer
/// (`y_res * stride`) exceeds `vgamem_size` are left out.
pub fn mode_list(vgamem_size: usize) -> Vec<QxlMode> {
    let mut modes = Vec::new();
    let mut id = 0u32;
    for &(x, y) in &MODE_RESOLUTIONS {
        for orientation in 0..2 {
            for bits in [16u32, 32] {
                let stride = x * bits / 8;
                // PIXEL_SIZE 0.2936875 mm = 4699/16000, truncated as C does.
                let mode = QxlMode {
                    id,
                    x_res: x,
                    y_res: y,
                    bits,
                    stride,
                    x_mili: x * 4699 / 16000,
                    y_mili: y * 4699 / 16000,
                    orientation,
                };
                id += 1;
                if (y as usize) * (stride as usize) <= vgamem_size {
                    modes.push(mode);
                }
            }
        }
    }
    modes
}

/// Heads in the ROM's `QXLClientMonitorsConfig` (QEMU's array size).
pub const CLIENT_MONITORS_MAX_HEADS: usize = 64;
/// sizeof(QXLClientMonitorsConfig): u16 count, u16 padding, 64 QXLURect.
pub const CLIENT_MONITORS_CONFIG_SIZE: usize = 4 + CLIENT_MONITORS_MAX_HEADS * 16;

/// The checksum Linux verifies on the ROM's client monitors config,
/// `crc32(0, ...)`: reflected CRC-32 (0xEDB88320) from 0 with no final
/// inversion (what QEMU gets from zlib as `crc32(~0, ...) ^ ~0`).
pub fn client_monitors_crc(bytes: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                crc >> 1 ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Write `layout` into the ROM image as QEMU's
/// `interface_client_monitors_config` does: the count (the client's `slots`,
/// at most 64), each head in its slot (its id) as a QXLURect {top, left,
/// bottom, right}, slots without a head all zero, then the CRC.
pub fn write_client_monitors_config(rom: &mut [u8], layout: &MonitorLayout, slots: u32) {
    let at = rom_off::CLIENT_MONITORS_CONFIG;
    let Some(cfg) = rom.get_mut(at..at + CLIENT_MONITORS_CONFIG_SIZE) else {
        return;
    };
    cfg.fill(0);
    let count = (slots as usize).min(CLIENT_MONITORS_MAX_HEADS);
    cfg[0..2].copy_from_slice(&(count as u16).to_le_bytes());
    for m in layout.monitors() {
        let slot = m.id as usize;
        if slot >= count {
            continue;
        }
        let (left, top) = (m.x as u32, m.y as u32);
        let rect = [
            top,
            left,
            top.wrapping_add(m.height),
            left.wrapping_add(m.width),
        ];
        for (k, v) in rect.into_iter().enumerate() {
            let o = 4 + slot * 16 + k * 4;
            cfg[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    let crc = client_monitors_crc(cfg);
    let c = rom_off::CLIENT_MONITORS_CONFIG_CRC;
    rom[c..c + 4].copy_from_slice(&crc.to_le_bytes());
}
