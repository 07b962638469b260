//! PCI configuration mechanism #1 (ports 0xCF8/0xCFC): enumeration, config
//! space, BARs, capabilities. Each access is two port exits (~55 µs here),
//! so enumeration walks bus 0 and the buses behind bridges, never all 256.

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
    /// an unimplemented BAR or the upper half of a 64-bit one.
    pub fn bar(self, index: u8) -> Option<Bar> {
        assert!(index < 6);
        if self.header_type() != 0 {
            return None;
        }
        let off = 0x10 + 4 * index;
        let lo = self.read32(off);
        let command = self.command();
        self.set_command(command & !(COMMAND_IO | COMMAND_MEMORY));
        self.write32(off, u32::MAX);
        let mask_lo = self.read32(off);
        self.write32(off, lo);
        let bar = if lo & 1 == 1 {
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
        };
        self.set_command(command);
        bar
    }

    /// Every implemented BAR.
    pub fn bars(self) -> impl Iterator<Item = Bar> {
        let mut index = 0;
        core::iter::from_fn(move || {
            while index < 6 {
                let bar = self.bar(index);
                index += match bar {
                    Some(Bar {
                        kind: BarKind::Mem64,
                        ..
                    }) => 2,
                    _ => 1,
                };
                if bar.is_some() {
                    return bar;
                }
            }
            None
        })
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

    /// Gives every BAR the firmware left at address 0 an address: memory
    /// BARs (64-bit ones too) after the highest memory BAR in use below the
    /// IOAPIC at 0xFEC00000, I/O BARs after the highest I/O BAR in use
    /// (from 0xC000). Call before [`Function::enable`].
    pub fn assign_bars(self) -> Result<(), &'static str> {
        let (mut mem_next, mut io_next) = (0xE000_0000u64, 0xC000u64);
        for f in functions() {
            for b in f.bars() {
                match b.kind {
                    BarKind::Io if b.addr != 0 => io_next = io_next.max(b.addr + b.size),
                    BarKind::Mem32 | BarKind::Mem64 if b.addr != 0 && b.addr < 0xFEC0_0000 => {
                        mem_next = mem_next.max(b.addr + b.size)
                    }
                    _ => {}
                }
            }
        }
        for b in self.bars() {
            if b.addr != 0 {
                continue;
            }
            let (next, limit) = match b.kind {
                BarKind::Io => (&mut io_next, 0x1_0000),
                _ => (&mut mem_next, 0xFEC0_0000),
            };
            let addr = next.next_multiple_of(b.size);
            if addr + b.size > limit {
                return Err("no room for a BAR");
            }
            *next = addr + b.size;
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
        self.capabilities().find(|&(c, _)| c == id).map(|(_, at)| at)
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
