//! MSI-X from the driver's side, as Linux's `msix_capability_init` does it:
//! find the capability, map the table and the pending-bit array (PBA) from
//! the BARs it names, enable MSI-X with the function mask set, program every
//! entry (each stays masked), clear the function mask; `request_irq` later
//! unmasks the entries it uses.

use crate::mmio::Mmio;
use crate::pci::{Function, CAP_MSIX};

const CONTROL: u8 = 2;
const TABLE: u8 = 4;
const PBA: u8 = 8;
const ENABLE: u16 = 1 << 15;
const FUNCTION_MASK: u16 = 1 << 14;
const ENTRY_SIZE: u64 = 16;
const VECTOR_CTRL_MASKED: u32 = 1;

/// A function's MSI-X capability, table and PBA.
pub struct Msix {
    function: Function,
    cap: u8,
    vectors: u16,
    table: Mmio,
    pba: Mmio,
}

impl Msix {
    /// The MSI-X capability of `function` (whose BARs must be assigned), or
    /// None if it has none.
    pub fn find(function: Function) -> Option<Msix> {
        let cap = function.find_capability(CAP_MSIX)?;
        let vectors = (function.read16(cap + CONTROL) & 0x7FF) + 1;
        let region = |reg: u8, len: u64| -> Option<Mmio> {
            let v = function.read32(cap + reg);
            let bar = function.bar((v & 7) as u8)?;
            let offset = u64::from(v & !7);
            (offset + len <= bar.size).then(|| bar.mmio().slice(offset, len))
        };
        let table = region(TABLE, u64::from(vectors) * ENTRY_SIZE)?;
        let pba = region(PBA, u64::from(vectors).div_ceil(64) * 8)?;
        Some(Msix {
            function,
            cap,
            vectors,
            table,
            pba,
        })
    }

    /// Table size.
    pub fn vectors(&self) -> u16 {
        self.vectors
    }

    fn control(&self) -> u16 {
        self.function.read16(self.cap + CONTROL)
    }

    fn set_control(&self, bits: u16, on: bool) {
        let c = self.control();
        let c = if on { c | bits } else { c & !bits };
        self.function.write16(self.cap + CONTROL, c);
    }

    /// MSI-X on with the function mask set (no vector can fire yet).
    pub fn enable_masked(&self) {
        self.function
            .write16(self.cap + CONTROL, self.control() | ENABLE | FUNCTION_MASK);
    }

    pub fn disable(&self) {
        self.set_control(ENABLE | FUNCTION_MASK, false);
    }

    pub fn set_function_mask(&self, masked: bool) {
        self.set_control(FUNCTION_MASK, masked);
    }

    pub fn enabled(&self) -> bool {
        self.control() & ENABLE != 0
    }

    /// Program entry `entry` with `(address, data)`, leaving it masked.
    pub fn program(&self, entry: u16, (address, data): (u64, u32)) {
        let e = u64::from(entry) * ENTRY_SIZE;
        self.table.write32(e + 12, VECTOR_CTRL_MASKED);
        self.table.write32(e, address as u32);
        self.table.write32(e + 4, (address >> 32) as u32);
        self.table.write32(e + 8, data);
    }

    /// Set or clear entry `entry`'s mask bit.
    pub fn mask(&self, entry: u16, masked: bool) {
        let e = u64::from(entry) * ENTRY_SIZE;
        self.table.write32(e + 12, u32::from(masked));
    }

    pub fn is_masked(&self, entry: u16) -> bool {
        self.table.read32(u64::from(entry) * ENTRY_SIZE + 12) & VECTOR_CTRL_MASKED != 0
    }

    /// Entry `entry`'s PBA bit: it signalled while masked.
    pub fn pending(&self, entry: u16) -> bool {
        let qword = self.pba.read64(u64::from(entry / 64) * 8);
        qword & (1 << (entry % 64)) != 0
    }
}
