//! PCI configuration mechanism #1 (ports 0xCF8/0xCFC): enumeration, config
//! space, BARs, capabilities. Each access is two port exits (~55 µs here),
//! so enumeration walks bus 0 and the buses behind bridges, never all 256.

use alloc::vec::Vec;

use crate::mmio::Mmio;
use crate::port::{inb, inl, inw, outb, outl, outw};

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

pub const COMMAND: u8 = 0x04;
pub const STATUS: u8 = 0x06;
pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const STATUS_CAPABILITIES: u16 = 1 << 4;

/// Capability IDs.
pub const CAP_MSI: u8 = 0x05;
pub const CAP_VENDOR: u8 = 0x09;
pub const CAP_PCIE: u8 = 0x10;
pub const CAP_MSIX: u8 = 0x11;

/// One PCI function (bus:device.function).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl core::fmt::Display for Function {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

impl Function {
    pub fn new(bus: u8, device: u8, function: u8) -> Function {
        assert!(device < 32 && function < 8);
        Function {
            bus,
            device,
            function,
        }
    }

    fn select(self, offset: u8) {
        outl(
            CONFIG_ADDRESS,
            0x8000_0000
                | u32::from(self.bus) << 16
                | u32::from(self.device) << 11
                | u32::from(self.function) << 8
                | u32::from(offset & 0xFC),
        );
    }

    pub fn read32(self, offset: u8) -> u32 {
        self.select(offset);
        inl(CONFIG_DATA)
    }

    pub fn read16(self, offset: u8) -> u16 {
        self.select(offset);
        inw(CONFIG_DATA + u16::from(offset & 2))
    }

    pub fn read8(self, offset: u8) -> u8 {
        self.select(offset);
        inb(CONFIG_DATA + u16::from(offset & 3))
    }

    pub fn write32(self, offset: u8, v: u32) {
        self.select(offset);
        outl(CONFIG_DATA, v);
    }

    pub fn write16(self, offset: u8, v: u16) {
        self.select(offset);
        outw(CONFIG_DATA + u16::from(offset & 2), v);
    }

    pub fn write8(self, offset: u8, v: u8) {
        self.select(offset);
        outb(CONFIG_DATA + u16::from(offset & 3), v);
    }

    pub fn vendor_id(self) -> u16 {
        self.read16(0x00)
    }

    pub fn device_id(self) -> u16 {
        self.read16(0x02)
    }

    /// (class, subclass, programming interface).
    pub fn class(self) -> (u8, u8, u8) {
        let v = self.read32(0x08);
        ((v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8)
    }

    pub fn revision(self) -> u8 {
        self.read8(0x08)
    }

    /// Header type without the multi-function bit: 0 device, 1 bridge.
    pub fn header_type(self) -> u8 {
        self.read8(0x0E) & 0x7F
    }

    pub fn subsystem(self) -> (u16, u16) {
        let v = self.read32(0x2C);
        (v as u16, (v >> 16) as u16)
    }

    /// The legacy interrupt pin (1 = INTA#, ..., 0 = none) and the line the
    /// firmware routed it to (an ISA IRQ / GSI number; 0xFF = none).
    pub fn interrupt(self) -> (u8, u8) {
        (self.read8(0x3D), self.read8(0x3C))
    }

    pub fn command(self) -> u16 {
        self.read16(COMMAND)
    }

    pub fn set_command(self, v: u16) {
        self.write16(COMMAND, v);
    }

    /// Turns on memory and I/O decoding and bus mastering (DMA), keeping the
    /// other command bits.
    pub fn enable(self) {
        self.set_command(self.command() | COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER);
    }

    /// BAR `index` (0-5) with its size, found the standard way: decoding
    /// off, all ones written, read back, original value restored. `None` for
    /// an unimplemented BAR, the upper half of a 64-bit one, or a function
    /// that is not a plain device (header type 0).
    pub fn bar(self, index: u8) -> Option<Bar> {
        assert!(index < 6);
        if self.header_type() != 0 {
            return None;
        }
        let command = self.command();
        self.set_command(command & !(COMMAND_IO | COMMAND_MEMORY));
        let bar = self.size_bar(index);
        self.set_command(command);
        bar
    }

    /// Sizes BAR `index` with decoding already off.
    fn size_bar(self, index: u8) -> Option<Bar> {
        let off = 0x10 + 4 * index;
        let lo = self.read32(off);
        self.write32(off, u32::MAX);
        let mask_lo = self.read32(off);
        self.write32(off, lo);
        if lo & 1 == 1 {
            let mask = mask_lo & !0x3;
            (mask != 0).then(|| Bar {
                index,
                kind: BarKind::Io,
                addr: u64::from(lo & !0x3),
                size: u64::from((!mask & 0xFFFF).wrapping_add(1)),
                prefetchable: false,
            })
        } else if lo & 0x6 == 0x4 && index < 5 {
            let hi = self.read32(off + 4);
            self.write32(off + 4, u32::MAX);
            let mask_hi = self.read32(off + 4);
            self.write32(off + 4, hi);
            let mask = u64::from(mask_hi) << 32 | u64::from(mask_lo & !0xF);
            (mask != 0).then(|| Bar {
                index,
                kind: BarKind::Mem64,
                addr: u64::from(hi) << 32 | u64::from(lo & !0xF),
                size: (!mask).wrapping_add(1),
                prefetchable: lo & 0x8 != 0,
            })
        } else {
            let mask = mask_lo & !0xF;
            (mask != 0).then(|| Bar {
                index,
                kind: BarKind::Mem32,
                addr: u64::from(lo & !0xF),
                size: u64::from((!mask).wrapping_add(1)),
                prefetchable: lo & 0x8 != 0,
            })
        }
    }

    /// Every implemented BAR, sized with decoding off once for all of them
    /// (each config access is two VM exits).
    pub fn bars(self) -> impl Iterator<Item = Bar> {
        let mut bars = [None; 6];
        if self.header_type() == 0 {
            let command = self.command();
            self.set_command(command & !(COMMAND_IO | COMMAND_MEMORY));
            let mut index = 0;
            while index < 6 {
                let bar = self.size_bar(index);
                bars[usize::from(index)] = bar;
                index += if matches!(bar, Some(b) if b.kind == BarKind::Mem64) {
                    2
                } else {
                    1
                };
            }
            self.set_command(command);
        }
        bars.into_iter().flatten()
    }

    /// Sets the address of BAR `bar.index` (both halves for a 64-bit BAR).
    pub fn set_bar(self, bar: &Bar, addr: u64) {
        let off = 0x10 + 4 * bar.index;
        let command = self.command();
        self.set_command(command & !(COMMAND_IO | COMMAND_MEMORY));
        match bar.kind {
            BarKind::Io => self.write32(off, addr as u32),
            BarKind::Mem32 => self.write32(off, addr as u32),
            BarKind::Mem64 => {
                self.write32(off, addr as u32);
                self.write32(off + 4, (addr >> 32) as u32);
            }
        }
        self.set_command(command);
    }

    /// Gives every BAR the firmware left at address 0 an address: the
    /// highest free, naturally aligned one below the IOAPIC (0xFEC00000) and
    /// above 2 GiB for memory BARs (64-bit ones too), the lowest free one
    /// from 0xC000 for I/O BARs. Free means clear of every other function's
    /// BARs and every e820 range. Call before [`Function::enable`].
    pub fn assign_bars(self) -> Result<(), &'static str> {
        let mut mem_used: Vec<(u64, u64)> = crate::boot::e820()
            .iter()
            .map(|e| (e.base, e.base.saturating_add(e.len)))
            .collect();
        mem_used.push((MEM_WINDOW.1, u64::MAX));
        let mut io_used = Vec::new();
        for f in functions() {
            for b in f.bars().filter(|b| b.addr != 0) {
                let range = (b.addr, b.addr + b.size);
                if b.is_io() {
                    io_used.push(range)
                } else {
                    mem_used.push(range)
                }
            }
        }
        for b in self.bars().filter(|b| b.addr == 0) {
            let addr = if b.is_io() {
                lowest_free(&io_used, IO_WINDOW, b.size)
            } else {
                highest_free(&mem_used, MEM_WINDOW, b.size)
            }
            .ok_or("no room for a BAR")?;
            let used = if b.is_io() {
                &mut io_used
            } else {
                &mut mem_used
            };
            used.push((addr, addr + b.size));
            self.set_bar(&b, addr);
        }
        Ok(())
    }

    /// Capabilities as (ID, config offset), following the list from 0x34
    /// (bounded, so a looping list cannot hang the guest).
    pub fn capabilities(self) -> impl Iterator<Item = (u8, u8)> {
        let mut ptr = if self.read16(STATUS) & STATUS_CAPABILITIES != 0 {
            self.read8(0x34) & 0xFC
        } else {
            0
        };
        let mut left = 48;
        core::iter::from_fn(move || {
            if ptr < 0x40 || left == 0 {
                return None;
            }
            left -= 1;
            let here = ptr;
            let v = self.read16(here);
            ptr = (v >> 8) as u8 & 0xFC;
            Some((v as u8, here))
        })
    }

    /// Offset of the first capability with `id`.
    pub fn find_capability(self, id: u8) -> Option<u8> {
        self.capabilities()
            .find(|&(c, _)| c == id)
            .map(|(_, at)| at)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64,
}

/// A base address register: where it is and how big.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub index: u8,
    pub kind: BarKind,
    pub addr: u64,
    pub size: u64,
    pub prefetchable: bool,
}

impl Bar {
    pub fn is_io(&self) -> bool {
        self.kind == BarKind::Io
    }

    /// A memory BAR's registers (mapped if above 4 GiB).
    pub fn mmio(&self) -> Mmio {
        assert!(!self.is_io(), "BAR{} is an I/O BAR", self.index);
        assert!(self.addr != 0, "BAR{} is not assigned", self.index);
        // SAFETY: the device's own BAR, as its config space describes it.
        unsafe { Mmio::new(self.addr, self.size) }
    }

    /// An I/O BAR's first port.
    pub fn port(&self) -> u16 {
        assert!(self.is_io(), "BAR{} is a memory BAR", self.index);
        self.addr as u16
    }
}

impl core::fmt::Display for Bar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kind = match self.kind {
            BarKind::Io => "io",
            BarKind::Mem32 => "mem32",
            BarKind::Mem64 => "mem64",
        };
        write!(
            f,
            "BAR{} {kind} {:#x} size {:#x}{}",
            self.index,
            self.addr,
            self.size,
            if self.prefetchable { " pref" } else { "" }
        )
    }
}

/// Where [`Function::assign_bars`] places memory and I/O BARs.
const MEM_WINDOW: (u64, u64) = (0x8000_0000, 0xFEC0_0000);
const IO_WINDOW: (u64, u64) = (0xC000, 0x1_0000);

fn overlap(used: &[(u64, u64)], start: u64, end: u64) -> Option<(u64, u64)> {
    used.iter().copied().find(|&(s, e)| start < e && s < end)
}

/// The highest `size`-aligned `[a, a + size)` inside `window` that overlaps
/// nothing in `used`.
fn highest_free(used: &[(u64, u64)], window: (u64, u64), size: u64) -> Option<u64> {
    let mut addr = window.1.checked_sub(size)? & !(size - 1);
    while addr >= window.0 {
        match overlap(used, addr, addr + size) {
            None => return Some(addr),
            Some((s, _)) => addr = s.checked_sub(size)? & !(size - 1),
        }
    }
    None
}

/// The lowest `size`-aligned `[a, a + size)` inside `window` that overlaps
/// nothing in `used`.
fn lowest_free(used: &[(u64, u64)], window: (u64, u64), size: u64) -> Option<u64> {
    let mut addr = window.0.next_multiple_of(size);
    while addr + size <= window.1 {
        match overlap(used, addr, addr + size) {
            None => return Some(addr),
            Some((_, e)) => addr = e.next_multiple_of(size),
        }
    }
    None
}

/// Every function: bus 0, then the buses behind PCI-PCI bridges.
pub fn functions() -> impl Iterator<Item = Function> {
    let mut buses = [0u8; 32];
    let (mut bus_count, mut bus_index) = (1usize, 0usize);
    let (mut device, mut function) = (0u8, 0u8);
    core::iter::from_fn(move || loop {
        if bus_index == bus_count {
            return None;
        }
        let bus = buses[bus_index];
        if device == 32 {
            bus_index += 1;
            device = 0;
            function = 0;
            continue;
        }
        let f = Function::new(bus, device, function);
        let present = f.vendor_id() != 0xFFFF;
        // Next position: functions 1-7 only of a multi-function device.
        if function == 0 {
            if present && f.read8(0x0E) & 0x80 != 0 {
                function = 1;
            } else {
                device += 1;
            }
        } else if function == 7 {
            function = 0;
            device += 1;
        } else {
            function += 1;
        }
        if !present {
            continue;
        }
        if f.header_type() == 1 && bus_count < buses.len() {
            let secondary = f.read8(0x19);
            if secondary != 0 && !buses[..bus_count].contains(&secondary) {
                buses[bus_count] = secondary;
                bus_count += 1;
            }
        }
        return Some(f);
    })
}

/// The first function with this vendor and device ID.
pub fn find(vendor: u16, device: u16) -> Option<Function> {
    functions().find(|f| f.vendor_id() == vendor && f.device_id() == device)
}

/// The first function of this class and subclass.
pub fn find_class(class: u8, subclass: u8) -> Option<Function> {
    functions().find(|f| {
        let (c, s, _) = f.class();
        c == class && s == subclass
    })
}
