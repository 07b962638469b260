//! A type 0 PCI configuration space: header fields, BAR sizing and relocation,
//! the expansion-ROM BAR and a capability list.
//!
//! Writes go through a per-byte write mask, so read-only fields stay read-only
//! whatever the guest writes. BAR sizing (write all ones, read back) falls out of
//! the mask: the low address bits of a BAR are never writable.

pub const VENDOR_ID: usize = 0x00;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION: usize = 0x08;
pub const HEADER_TYPE: usize = 0x0e;
pub const BAR0: usize = 0x10;
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
pub const ROM_ADDRESS: usize = 0x30;
pub const CAPABILITIES_PTR: usize = 0x34;
pub const INTERRUPT_LINE: usize = 0x3c;
pub const INTERRUPT_PIN: usize = 0x3d;

pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_MASTER: u16 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const STATUS_CAP_LIST: u16 = 1 << 4;
pub const STATUS_INTERRUPT: u16 = 1 << 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32 {
        prefetchable: bool,
    },
    /// Occupies this BAR slot and the next.
    Mem64 {
        prefetchable: bool,
    },
}

#[derive(Clone, Copy, Debug)]
struct Bar {
    size: u64,
    kind: BarKind,
}

#[derive(Clone)]
pub struct PciConfig {
    bytes: [u8; 256],
    write_mask: [u8; 256],
    /// Bits the guest clears by writing 1 (status register).
    w1c_mask: [u8; 256],
    bars: [Option<Bar>; 6],
    rom_size: u64,
    next_cap: usize,
    last_cap_next_ptr: usize,
    initial: Option<Box<([u8; 256], [u8; 256])>>,
}

impl PciConfig {
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut c = PciConfig {
            bytes: [0; 256],
            write_mask: [0; 256],
            w1c_mask: [0; 256],
            bars: [None; 6],
            rom_size: 0,
            next_cap: 0x40,
            last_cap_next_ptr: CAPABILITIES_PTR,
            initial: None,
        };
        c.set_u16(VENDOR_ID, vendor);
        c.set_u16(VENDOR_ID + 2, device);
        c.bytes[REVISION] = revision;
        c.bytes[REVISION + 1] = class as u8;
        c.bytes[REVISION + 2] = (class >> 8) as u8;
        c.bytes[REVISION + 3] = (class >> 16) as u8;
        let cmd_mask = COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER | COMMAND_INTX_DISABLE | 0x0140;
        c.write_mask[COMMAND..COMMAND + 2].copy_from_slice(&cmd_mask.to_le_bytes());
        c.write_mask[INTERRUPT_LINE] = 0xff;
        // Cache line size and latency timer are plain storage.
        c.write_mask[0x0c] = 0xff;
        c.write_mask[0x0d] = 0xff;
        // Status error bits are write-one-to-clear.
        c.w1c_mask[STATUS + 1] = 0xf9;
        c
    }

    pub fn set_subsystem(&mut self, vendor: u16, device: u16) {
        self.set_u16(SUBSYSTEM_VENDOR_ID, vendor);
        self.set_u16(SUBSYSTEM_VENDOR_ID + 2, device);
    }

    pub fn set_header_type(&mut self, header_type: u8) {
        self.bytes[HEADER_TYPE] = header_type;
    }

    /// INTx pin: 1 = INTA .. 4 = INTD.
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.bytes[INTERRUPT_PIN] = pin;
    }

    /// Declare BAR `index` of `size` bytes (a power of two; I/O BARs >= 4, memory >= 16).
    pub fn add_bar(&mut self, index: usize, size: u64, kind: BarKind) {
        assert!(size.is_power_of_two(), "BAR size must be a power of two");
        let off = BAR0 + index * 4;
        let (flags, min): (u32, u64) = match kind {
            BarKind::Io => (0x1, 4),
            BarKind::Mem32 { prefetchable } => (if prefetchable { 0x8 } else { 0 }, 16),
            BarKind::Mem64 { prefetchable } => (0x4 | if prefetchable { 0x8 } else { 0 }, 16),
        };
        let size = size.max(min);
        let mask = !(size - 1);
        self.set_u32(off, flags);
        self.write_mask[off..off + 4].copy_from_slice(&(mask as u32).to_le_bytes());
        if let BarKind::Mem64 { .. } = kind {
            assert!(index < 5, "64-bit BAR needs two slots");
            self.write_mask[off + 4..off + 8].copy_from_slice(&((mask >> 32) as u32).to_le_bytes());
        }
        // I/O BARs keep all 32 address bits writable, as QEMU and real devices do:
        // SeaBIOS sizes a BAR as !(readback & !3) + 1 with no 16-bit masking, so
        // read-only upper zeros would make a 32-byte BAR look 4 GiB large.
        self.bars[index] = Some(Bar { size, kind });
    }

    /// Declare an expansion ROM of `size` bytes (power of two, >= 2 KiB).
    pub fn add_rom(&mut self, size: u64) {
        let size = size.next_power_of_two().max(2048);
        self.rom_size = size;
        let mask = (!(size - 1) as u32) | 1;
        self.write_mask[ROM_ADDRESS..ROM_ADDRESS + 4].copy_from_slice(&mask.to_le_bytes());
    }

    /// Append a capability with `body` (the bytes after the id/next pair).
    /// Returns its config-space offset. `writable` marks body bytes the guest may write.
    pub fn add_capability(&mut self, id: u8, body: &[u8], writable: &[bool]) -> usize {
        let off = self.next_cap;
        let len = (2 + body.len() + 3) & !3;
        assert!(off + len <= 256, "capability list overflows config space");
        self.bytes[off] = id;
        self.bytes[off + 1] = 0;
        self.bytes[off + 2..off + 2 + body.len()].copy_from_slice(body);
        for (i, w) in writable.iter().enumerate() {
            if *w {
                self.write_mask[off + 2 + i] = 0xff;
            }
        }
        self.bytes[self.last_cap_next_ptr] = off as u8;
        self.last_cap_next_ptr = off + 1;
        self.next_cap = off + len;
        let status = self.u16_at(STATUS) | STATUS_CAP_LIST;
        self.set_u16(STATUS, status);
        off
    }

    /// Remember the current contents as the power-on state used by `reset`.
    pub fn seal(&mut self) {
        self.initial = Some(Box::new((self.bytes, self.write_mask)));
    }

    pub fn reset(&mut self) {
        if let Some(init) = &self.initial {
            self.bytes = init.0;
            self.write_mask = init.1;
        }
    }

    pub fn read_dword(&self, offset: usize) -> u32 {
        let o = offset & 0xfc;
        u32::from_le_bytes(self.bytes[o..o + 4].try_into().unwrap())
    }

    /// Guest write of `data` at `offset`, honouring the write and W1C masks.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let o = offset + i;
            if o >= 256 {
                break;
            }
            let m = self.write_mask[o];
            let w1c = self.w1c_mask[o];
            let old = self.bytes[o];
            self.bytes[o] = ((old & !m) | (v & m)) & !(v & w1c);
        }
    }

    /// Device-side writes, ignoring the write mask.
    pub fn set_u8(&mut self, offset: usize, v: u8) {
        self.bytes[offset] = v;
    }
    pub fn set_u16(&mut self, offset: usize, v: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set_u32(&mut self, offset: usize, v: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn u8_at(&self, offset: usize) -> u8 {
        self.bytes[offset]
    }
    pub fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }
    pub fn u32_at(&self, offset: usize) -> u32 {
        self.read_dword(offset)
    }
    /// Set the guest write mask of the bytes at `offset` (a capability's
    /// registers whose writable bits are not whole bytes).
    pub fn set_write_mask(&mut self, offset: usize, mask: &[u8]) {
        self.write_mask[offset..offset + mask.len()].copy_from_slice(mask);
    }

    /// Make config bytes `[offset, offset+len)` writable by the guest.
    pub fn set_writable(&mut self, offset: usize, len: usize) {
        self.write_mask[offset..offset + len].fill(0xff);
    }

    pub fn command(&self) -> u16 {
        self.u16_at(COMMAND)
    }

    pub fn bus_master(&self) -> bool {
        self.command() & COMMAND_MASTER != 0
    }

    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// Reflect a pending INTx in the status register (the Interrupt Status bit).
    pub fn set_interrupt_status(&mut self, pending: bool) {
        let s = self.u16_at(STATUS);
        let s = if pending {
            s | STATUS_INTERRUPT
        } else {
            s & !STATUS_INTERRUPT
        };
        self.set_u16(STATUS, s);
    }

    pub fn bar_size(&self, index: usize) -> Option<u64> {
        self.bars.get(index)?.map(|b| b.size)
    }

    /// Programmed address of BAR `index`, whether or not decoding is enabled.
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let bar = self.bars.get(index)?.as_ref()?;
        let off = BAR0 + index * 4;
        let lo = self.u32_at(off) as u64;
        Some(match bar.kind {
            BarKind::Io => lo & !0x3,
            BarKind::Mem32 { .. } => lo & !0xf,
            BarKind::Mem64 { .. } => ((self.u32_at(off + 4) as u64) << 32) | (lo & !0xf),
        })
    }

    /// The range BAR `index` decodes now: `(address, size, is_io)`, or None when the
    /// BAR is absent, unprogrammed or its space is disabled in the command register.
    pub fn active_bar(&self, index: usize) -> Option<(u64, u64, bool)> {
        let bar = self.bars.get(index)?.as_ref()?;
        let addr = self.bar_address(index)?;
        let is_io = bar.kind == BarKind::Io;
        let enabled = if is_io {
            self.command() & COMMAND_IO != 0
        } else {
            self.command() & COMMAND_MEMORY != 0
        };
        (enabled && addr != 0).then_some((addr, bar.size, is_io))
    }

    /// The expansion ROM's decoded range: `(address, size)`, when enabled.
    pub fn active_rom(&self) -> Option<(u64, u64)> {
        if self.rom_size == 0 {
            return None;
        }
        let v = self.u32_at(ROM_ADDRESS);
        let addr = (v & !0x7ff) as u64;
        let enabled = v & 1 != 0 && self.command() & COMMAND_MEMORY != 0;
        (enabled && addr != 0).then_some((addr, self.rom_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_sizing_and_relocation() {
        let mut c = PciConfig::new(0x1af4, 0x1042, 0x010000, 1);
        c.add_bar(0, 0x40, BarKind::Io);
        c.add_bar(
            1,
            0x1000,
            BarKind::Mem32 {
                prefetchable: false,
            },
        );
        c.add_bar(2, 0x4000, BarKind::Mem64 { prefetchable: true });
        // Size probe, as SeaBIOS pci_bar_size does.
        c.write(BAR0, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.read_dword(BAR0), 0xffff_ffc1);
        c.write(BAR0 + 4, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.read_dword(BAR0 + 4), 0xffff_f000);
        c.write(BAR0 + 8, &0xffff_ffffu32.to_le_bytes());
        c.write(BAR0 + 12, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.read_dword(BAR0 + 8), 0xffff_c00c);
        assert_eq!(c.read_dword(BAR0 + 12), 0xffff_ffff);
        // Program, then decoding follows the command register.
        c.write(BAR0, &0xc000u32.to_le_bytes());
        c.write(BAR0 + 4, &0xfebf_0000u32.to_le_bytes());
        c.write(BAR0 + 8, &0x0000_0000u32.to_le_bytes());
        c.write(BAR0 + 12, &0x0000_0080u32.to_le_bytes());
        assert_eq!(c.active_bar(0), None);
        c.write(COMMAND, &[0x03, 0x00]);
        assert_eq!(c.active_bar(0), Some((0xc000, 0x40, true)));
        assert_eq!(c.active_bar(1), Some((0xfebf_0000, 0x1000, false)));
        assert_eq!(c.active_bar(2), Some((0x80_0000_0000, 0x4000, false)));
        assert_eq!(c.active_bar(3), None);
    }

    #[test]
    fn read_only_fields_and_w1c_status() {
        let mut c = PciConfig::new(0x8086, 0x1237, 0x060000, 2);
        c.write(VENDOR_ID, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.read_dword(VENDOR_ID), 0x1237_8086);
        assert_eq!(c.read_dword(REVISION), 0x0600_0002);
        c.set_u16(STATUS, 0x2000);
        c.write(STATUS, &[0x00, 0x20]);
        assert_eq!(c.u16_at(STATUS), 0);
    }

    #[test]
    fn capability_chain_and_rom() {
        let mut c = PciConfig::new(0x1af4, 0x1042, 0x010000, 1);
        let a = c.add_capability(0x09, &[16, 1, 0, 0, 0, 0], &[]);
        let b = c.add_capability(0x09, &[16, 2], &[false, true]);
        assert_eq!(c.u8_at(CAPABILITIES_PTR) as usize, a);
        assert_eq!(c.u8_at(a + 1) as usize, b);
        assert_eq!(c.u8_at(b + 1), 0);
        assert_ne!(c.u16_at(STATUS) & STATUS_CAP_LIST, 0);
        c.write(b + 3, &[7]);
        assert_eq!(c.u8_at(b + 3), 7);
        c.write(b + 2, &[7]);
        assert_eq!(c.u8_at(b + 2), 16);
        c.add_rom(40 * 1024);
        c.write(ROM_ADDRESS, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.read_dword(ROM_ADDRESS), 0xffff_0001);
        c.write(ROM_ADDRESS, &0xfeb0_0001u32.to_le_bytes());
        assert_eq!(c.active_rom(), None);
        c.write(COMMAND, &[0x02, 0x00]);
        assert_eq!(c.active_rom(), Some((0xfeb0_0000, 0x10000)));
    }
}
