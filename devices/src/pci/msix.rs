//! MSI-X: the capability in config space, and the vector table and pending-bit
//! array (PBA) in a memory BAR the device chooses.
//!
//! The rules (PCI Local Bus 3.0 §6.8.2): a vector may signal only while MSI-X is
//! enabled, the function mask is clear and its own mask bit is clear. A vector
//! that signals while masked sets its PBA bit instead, and the interrupt is sent
//! when it becomes unmasked (by either mask). Every entry starts masked. Software
//! reaches the table and PBA with aligned dword or qword accesses only; anything
//! else is logged and ignored, as are writes to the PBA and past the table.

use tracing::{debug, warn};

use super::msi::{new_vectors, MsiController, MsiMessage, VectorState};
use super::PciConfig;
use crate::Result;

pub const MSIX_CAP_ID: u8 = 0x11;
const CONTROL: usize = 2;
const TABLE: usize = 4;
const PBA: usize = 8;
const CAP_BODY_LEN: usize = 10;
const ENABLE: u16 = 1 << 15;
const FUNCTION_MASK: u16 = 1 << 14;
/// The most vectors a function may have (Table Size is 11 bits, N - 1).
pub const MAX_VECTORS: u16 = 2048;
pub const ENTRY_SIZE: u64 = 16;
const ENTRY_ADDR_LO: u64 = 0;
const ENTRY_ADDR_HI: u64 = 4;
const ENTRY_DATA: u64 = 8;
const ENTRY_CTRL: u64 = 12;
const CTRL_MASKED: u32 = 1;

/// Where a function's MSI-X table and PBA live: both in memory BAR `bar`, at
/// offsets that are multiples of 8 and do not overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixLayout {
    pub vectors: u16,
    pub bar: usize,
    pub table_offset: u64,
    pub pba_offset: u64,
}

impl MsixLayout {
    /// The layout QEMU gives virtio-pci: a BAR of its own, table at 0, PBA at
    /// 2 KiB (room for 128 vectors; a 4 KiB BAR).
    pub fn own_bar(bar: usize, vectors: u16) -> Self {
        Self {
            vectors,
            bar,
            table_offset: 0,
            pba_offset: 0x800,
        }
    }

    pub fn table_len(&self) -> u64 {
        u64::from(self.vectors) * ENTRY_SIZE
    }

    pub fn pba_len(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }

    /// The smallest BAR size (a power of two, at least 4 KiB) holding both.
    pub fn bar_size(&self) -> u64 {
        let end = (self.table_offset + self.table_len()).max(self.pba_offset + self.pba_len());
        end.next_power_of_two().max(0x1000)
    }

    fn check(&self) {
        assert!(
            (1..=MAX_VECTORS).contains(&self.vectors),
            "MSI-X vector count"
        );
        assert!(self.bar < 6, "MSI-X BAR index");
        assert!(
            self.table_offset.is_multiple_of(8) && self.pba_offset.is_multiple_of(8),
            "MSI-X table and PBA must be 8-byte aligned"
        );
        let table = self.table_offset..self.table_offset + self.table_len();
        let pba = self.pba_offset..self.pba_offset + self.pba_len();
        assert!(
            table.end <= pba.start || pba.end <= table.start,
            "MSI-X table and PBA overlap"
        );
        assert!(
            self.table_offset.max(self.pba_offset) <= u64::from(u32::MAX),
            "MSI-X offsets are 32-bit"
        );
    }
}

/// Which structure an access hit, and the offset inside it.
enum Target {
    Table(u64),
    Pba(u64),
}

/// One table entry's registers (the message itself lives in `VectorState`).
#[derive(Clone, Copy)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    masked: bool,
}

impl Entry {
    const POWER_ON: Entry = Entry {
        addr_lo: 0,
        addr_hi: 0,
        data: 0,
        masked: true,
    };

    fn message(&self) -> MsiMessage {
        MsiMessage {
            address: u64::from(self.addr_hi) << 32 | u64::from(self.addr_lo),
            data: self.data,
        }
    }

    fn dword(&self, offset: u64) -> u32 {
        match offset {
            ENTRY_ADDR_LO => self.addr_lo,
            ENTRY_ADDR_HI => self.addr_hi,
            ENTRY_DATA => self.data,
            _ => self.masked as u32,
        }
    }
}

pub(crate) struct Msix {
    layout: MsixLayout,
    /// Config offset of the capability.
    cap: usize,
    enabled: bool,
    function_mask: bool,
    entries: Vec<Entry>,
    vectors: Vec<VectorState>,
}

impl Msix {
    /// Add the capability to `config` (before it is sealed) and take one vector
    /// per table entry from `controller`.
    pub fn new(
        config: &mut PciConfig,
        layout: MsixLayout,
        controller: &dyn MsiController,
    ) -> Result<Self> {
        layout.check();
        // The body starts after the ID/next pair.
        let mut body = [0u8; CAP_BODY_LEN];
        let field = |off: usize| off - 2;
        body[field(CONTROL)..field(TABLE)].copy_from_slice(&(layout.vectors - 1).to_le_bytes());
        let table = layout.table_offset as u32 | layout.bar as u32;
        body[field(TABLE)..field(PBA)].copy_from_slice(&table.to_le_bytes());
        let pba = layout.pba_offset as u32 | layout.bar as u32;
        body[field(PBA)..].copy_from_slice(&pba.to_le_bytes());
        let cap = config.add_capability(MSIX_CAP_ID, &body, &[]);
        config.set_write_mask(cap + CONTROL, &(ENABLE | FUNCTION_MASK).to_le_bytes());
        let n = usize::from(layout.vectors);
        Ok(Self {
            layout,
            cap,
            enabled: false,
            function_mask: false,
            entries: vec![Entry::POWER_ON; n],
            vectors: new_vectors(controller, n)?,
        })
    }

    pub fn layout(&self) -> MsixLayout {
        self.layout
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn touches(&self, offset: usize, len: usize) -> bool {
        offset < self.cap + 2 + CAP_BODY_LEN && self.cap < offset + len
    }

    /// Re-read Message Control after a guest config write.
    pub fn follow_config(&mut self, config: &PciConfig) {
        let control = config.u16_at(self.cap + CONTROL);
        let enabled = control & ENABLE != 0;
        let function_mask = control & FUNCTION_MASK != 0;
        if (enabled, function_mask) != (self.enabled, self.function_mask) {
            debug!(enabled, function_mask, "MSI-X control");
        }
        self.enabled = enabled;
        self.function_mask = function_mask;
        for i in 0..self.entries.len() {
            self.deliver_if_unmasked(i);
        }
    }

    fn deliverable(&self, index: usize) -> bool {
        self.enabled && !self.function_mask && !self.entries[index].masked
    }

    fn deliver_if_unmasked(&mut self, index: usize) {
        if self.deliverable(index) {
            self.vectors[index].deliver_pending("MSI-X", index);
        }
    }

    /// The function signals vector `index`. Ignored while MSI-X is disabled
    /// (the function interrupts through INTx then).
    pub fn notify(&mut self, index: usize) {
        if !self.enabled {
            return;
        }
        if index >= self.entries.len() {
            debug!("MSI-X vector {index} out of range ({})", self.entries.len());
            return;
        }
        if self.deliverable(index) {
            self.vectors[index].deliver("MSI-X", index);
        } else {
            self.vectors[index].pending = true;
        }
    }

    pub fn is_pending(&self, index: usize) -> bool {
        self.vectors.get(index).is_some_and(|v| v.pending)
    }

    pub fn clear_pending(&mut self) {
        for v in &mut self.vectors {
            v.pending = false;
        }
    }

    /// Machine reset (config space was restored already): every entry masked
    /// and cleared, nothing pending, MSI-X disabled.
    pub fn reset(&mut self, config: &PciConfig) {
        self.entries.fill(Entry::POWER_ON);
        for v in &mut self.vectors {
            v.pending = false;
            v.set_message(MsiMessage::default());
        }
        self.follow_config(config);
    }

    /// What an access at `offset` of `bar` hits: None when it is not the
    /// table's or PBA's; Some(None) when it overlaps one of them but is not an
    /// aligned dword or qword inside it (logged).
    fn target(&self, bar: usize, offset: u64, len: usize) -> Option<Option<Target>> {
        if bar != self.layout.bar {
            return None;
        }
        let len = len as u64;
        let end = offset.checked_add(len)?;
        let regions = [
            (self.layout.table_offset, self.layout.table_len(), true),
            (self.layout.pba_offset, self.layout.pba_len(), false),
        ];
        let (start, size, is_table) = regions
            .into_iter()
            .find(|&(start, size, _)| offset < start + size && start < end)?;
        let aligned = matches!(len, 4 | 8) && offset.is_multiple_of(len);
        if !aligned || offset < start || end > start + size {
            warn!(
                "MSI-X: {len}-byte access at BAR {bar} offset {offset:#x} is not an aligned \
                 dword/qword inside the {} (ignored)",
                if is_table { "table" } else { "PBA" }
            );
            return Some(None);
        }
        let inner = offset - start;
        Some(Some(if is_table {
            Target::Table(inner)
        } else {
            Target::Pba(inner)
        }))
    }

    /// A BAR read: returns false when the access is not the table's or PBA's.
    pub fn bar_read(&self, bar: usize, offset: u64, data: &mut [u8]) -> bool {
        let target = match self.target(bar, offset, data.len()) {
            None => return false,
            Some(None) => return true,
            Some(Some(t)) => t,
        };
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            let v = match target {
                Target::Table(off) => {
                    let off = off + 4 * i as u64;
                    self.entries[(off / ENTRY_SIZE) as usize].dword(off % ENTRY_SIZE)
                }
                Target::Pba(off) => {
                    let bit0 = (off + 4 * i as u64) * 8;
                    (0..32u64)
                        .filter(|b| self.is_pending((bit0 + b) as usize))
                        .fold(0u32, |acc, b| acc | 1 << b)
                }
            };
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        true
    }

    /// A BAR write: returns false when the access is not the table's or PBA's.
    pub fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) -> bool {
        let off = match self.target(bar, offset, data.len()) {
            None => return false,
            Some(None) => return true,
            Some(Some(Target::Pba(_))) => {
                warn!("MSI-X: write to the PBA at offset {offset:#x} ignored");
                return true;
            }
            Some(Some(Target::Table(off))) => off,
        };
        for (i, chunk) in data.chunks(4).enumerate() {
            let off = off + 4 * i as u64;
            let v = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.write_dword((off / ENTRY_SIZE) as usize, off % ENTRY_SIZE, v);
        }
        true
    }

    fn write_dword(&mut self, index: usize, field: u64, v: u32) {
        let entry = &mut self.entries[index];
        match field {
            ENTRY_ADDR_LO => {
                if v & 3 != 0 {
                    warn!(
                        "MSI-X vector {index}: address {v:#x} not dword aligned; low bits dropped"
                    );
                }
                entry.addr_lo = v & !3;
            }
            ENTRY_ADDR_HI => entry.addr_hi = v,
            ENTRY_DATA => entry.data = v,
            _ => {
                if v & !CTRL_MASKED != 0 {
                    warn!("MSI-X vector {index}: reserved vector control bits {v:#x} ignored");
                }
                entry.masked = v & CTRL_MASKED != 0;
            }
        }
        let message = entry.message();
        if field != ENTRY_CTRL && !entry.masked && self.enabled && !self.function_mask {
            // Allowed but unusual (software should mask first): the next
            // interrupt goes to the new message.
            debug!("MSI-X vector {index}: message changed while unmasked");
        }
        self.vectors[index].set_message(message);
        self.deliver_if_unmasked(index);
    }
}

#[cfg(test)]
mod tests {
    use super::super::msi::test_util::RecordingMsi;
    use super::*;
    use std::sync::Arc;

    const BAR: usize = 1;

    struct Rig {
        config: PciConfig,
        msix: Msix,
        ctl: Arc<RecordingMsi>,
    }

    impl Rig {
        fn new(vectors: u16) -> Self {
            let ctl = Arc::new(RecordingMsi::default());
            let mut config = PciConfig::new(0x1af4, 0x1042, 0x010000, 1);
            let msix = Msix::new(&mut config, MsixLayout::own_bar(BAR, vectors), &*ctl).unwrap();
            config.seal();
            Rig { config, msix, ctl }
        }

        fn control(&mut self, v: u16) {
            self.config.write(self.msix.cap + CONTROL, &v.to_le_bytes());
            self.msix.follow_config(&self.config);
        }

        fn w32(&mut self, off: u64, v: u32) -> bool {
            self.msix.bar_write(BAR, off, &v.to_le_bytes())
        }

        fn r32(&self, off: u64) -> u32 {
            let mut b = [0u8; 4];
            assert!(self.msix.bar_read(BAR, off, &mut b));
            u32::from_le_bytes(b)
        }

        fn r64(&self, off: u64) -> u64 {
            let mut b = [0u8; 8];
            assert!(self.msix.bar_read(BAR, off, &mut b));
            u64::from_le_bytes(b)
        }

        /// What Linux's `__pci_write_msi_msg` does: address and data while masked.
        fn program(&mut self, v: u64, addr: u32, data: u32) {
            let e = v * ENTRY_SIZE;
            self.w32(e, addr);
            self.w32(e + 4, 0);
            self.w32(e + 8, data);
        }

        fn unmask(&mut self, v: u64, unmask: bool) {
            self.w32(v * ENTRY_SIZE + 12, !unmask as u32);
        }

        fn pba(&self) -> u64 {
            self.r64(0x800)
        }
    }

    #[test]
    fn capability_describes_table_and_pba() {
        let mut r = Rig::new(3);
        let cap = r.msix.cap;
        assert_eq!(r.config.u8_at(cap), MSIX_CAP_ID);
        assert_eq!(r.config.u16_at(cap + CONTROL), 2, "table size N-1");
        assert_eq!(r.config.u32_at(cap + TABLE), BAR as u32);
        assert_eq!(r.config.u32_at(cap + PBA), 0x800 | BAR as u32);
        // Only enable and function mask are writable.
        r.config.write(cap + CONTROL, &[0xff, 0xff]);
        assert_eq!(r.config.u16_at(cap + CONTROL), 0xc002);
        r.config.write(cap + TABLE, &[0xff; 4]);
        assert_eq!(r.config.u32_at(cap + TABLE), BAR as u32);
        assert_eq!(MsixLayout::own_bar(BAR, 3).bar_size(), 0x1000);
        assert_eq!(
            MsixLayout {
                vectors: 2048,
                bar: 0,
                table_offset: 0,
                pba_offset: 0x8000
            }
            .bar_size(),
            0x10000
        );
    }

    #[test]
    fn entries_start_masked_and_read_back() {
        let mut r = Rig::new(3);
        for v in 0..3 {
            assert_eq!(r.r32(v * 16 + 12), 1, "vector {v} masked at power-on");
        }
        r.program(1, 0xfee0_1000, 0x4031);
        assert_eq!(r.r32(16), 0xfee0_1000);
        assert_eq!(r.r64(16), 0xfee0_1000);
        assert_eq!(r.r64(24), 1 << 32 | 0x4031);
        // A qword write of data + control unmasks in one go.
        r.msix.bar_write(BAR, 24, &(0x4032u64).to_le_bytes());
        assert_eq!(r.r32(28), 0);
        assert_eq!(r.r32(24), 0x4032);
    }

    #[test]
    fn vector_fires_only_when_enabled_and_unmasked() {
        let mut r = Rig::new(2);
        r.program(0, 0xfee0_0000, 0x41);
        r.unmask(0, true);
        // MSI-X not enabled: the function uses INTx; nothing is sent or pending.
        r.msix.notify(0);
        assert_eq!(r.ctl.fired(0), 0);
        assert_eq!(r.pba(), 0);
        r.control(ENABLE);
        r.msix.notify(0);
        r.msix.notify(0);
        assert_eq!(r.ctl.take_fired(0), [0x41, 0x41]);
        // Routed once, lazily, on the first interrupt.
        assert_eq!(r.ctl.vector(0).routes.lock().unwrap().len(), 1);
        // Out of range: nothing, no panic.
        r.msix.notify(2);
        r.msix.notify(usize::MAX);
    }

    #[test]
    fn masked_vector_sets_pba_bit_and_fires_on_unmask() {
        let mut r = Rig::new(2);
        r.control(ENABLE);
        r.program(1, 0xfee0_0000, 0x42);
        r.msix.notify(1);
        r.msix.notify(1);
        assert_eq!(r.ctl.fired(1), 0);
        assert_eq!(r.pba(), 0b10);
        assert_eq!(r.r32(0x800), 0b10);
        assert_eq!(r.r32(0x804), 0);
        r.unmask(1, true);
        assert_eq!(r.ctl.take_fired(1), [0x42], "one interrupt on unmask");
        assert_eq!(r.pba(), 0);
        // Unmasking again sends nothing more.
        r.unmask(1, true);
        assert_eq!(r.ctl.fired(1), 0);
    }

    #[test]
    fn function_mask_holds_every_vector() {
        let mut r = Rig::new(2);
        r.control(ENABLE | FUNCTION_MASK);
        for v in 0..2 {
            r.program(v, 0xfee0_0000, 0x50 + v as u32);
            r.unmask(v, true);
        }
        r.msix.notify(0);
        r.msix.notify(1);
        assert_eq!(r.pba(), 0b11);
        assert_eq!(r.ctl.fired(0) + r.ctl.fired(1), 0);
        // Vector 1 also masked on its own: clearing the function mask sends 0 only.
        r.unmask(1, false);
        r.control(ENABLE);
        assert_eq!(r.ctl.take_fired(0), [0x50]);
        assert_eq!(r.pba(), 0b10);
        r.unmask(1, true);
        assert_eq!(r.ctl.take_fired(1), [0x51]);
        assert_eq!(r.pba(), 0);
    }

    #[test]
    fn reprogramming_reroutes() {
        let mut r = Rig::new(1);
        r.control(ENABLE);
        r.program(0, 0xfee0_0000, 0x41);
        r.unmask(0, true);
        r.msix.notify(0);
        // Linux moves an IRQ to another CPU: mask, new message, unmask.
        r.unmask(0, false);
        r.program(0, 0xfee0_1000, 0x61);
        r.unmask(0, true);
        r.msix.notify(0);
        let routes = r.ctl.vector(0).routes.lock().unwrap().clone();
        assert_eq!(
            routes,
            [
                MsiMessage {
                    address: 0xfee0_0000,
                    data: 0x41
                },
                MsiMessage {
                    address: 0xfee0_1000,
                    data: 0x61
                }
            ]
        );
        assert_eq!(r.ctl.take_fired(0), [0x41, 0x61]);
    }

    #[test]
    fn hostile_accesses_are_ignored() {
        let mut r = Rig::new(2);
        r.control(ENABLE);
        r.program(0, 0xfee0_0000, 0x41);
        // Odd widths and misaligned accesses: claimed, ignored.
        assert!(r.msix.bar_write(BAR, 12, &[0]));
        assert!(r.msix.bar_write(BAR, 12, &[0, 0]));
        assert!(r.msix.bar_write(BAR, 14, &[0, 0, 0, 0]));
        assert!(r.msix.bar_write(BAR, 4, &[0; 8]));
        assert_eq!(r.r32(12), 1, "still masked");
        let mut b = [0xaau8; 2];
        assert!(r.msix.bar_read(BAR, 0, &mut b));
        assert_eq!(b, [0xaa, 0xaa], "odd-width read left alone");
        // Past the table (vector 2 does not exist) and into the gap: not ours.
        assert!(!r.msix.bar_write(BAR, 32, &[0; 4]));
        assert!(!r.msix.bar_write(BAR, 0x7fc, &[0; 4]));
        // Straddling the end of the table.
        assert!(r.msix.bar_write(BAR, 28, &[0; 8]));
        // The PBA is read-only; past the PBA is not ours.
        assert!(r.w32(0x800, 0xffff_ffff));
        assert_eq!(r.pba(), 0);
        assert!(!r.msix.bar_write(BAR, 0x808, &[0; 4]));
        // Another BAR is not ours.
        assert!(!r.msix.bar_write(0, 0, &[0; 4]));
        // Reserved control bits and a misaligned address.
        r.w32(12, 0xffff_fffe);
        assert_eq!(r.r32(12), 0, "unmasked, reserved bits read zero");
        r.w32(0, 0xfee0_0003);
        assert_eq!(r.r32(0), 0xfee0_0000);
        // A bad address: nothing is routed or sent, but nothing breaks.
        r.w32(4, 1);
        r.msix.notify(0);
        r.msix.notify(0);
        assert_eq!(r.ctl.fired(0), 0);
        assert!(r.ctl.vector(0).routes.lock().unwrap().is_empty());
        r.w32(4, 0);
        r.msix.notify(0);
        assert_eq!(r.ctl.take_fired(0), [0x41]);
        // Offsets near u64::MAX do not overflow.
        assert!(!r.msix.bar_write(BAR, u64::MAX - 2, &[0; 4]));
    }

    #[test]
    fn reset_masks_everything() {
        let mut r = Rig::new(2);
        r.control(ENABLE | FUNCTION_MASK);
        r.program(0, 0xfee0_0000, 0x41);
        r.unmask(0, true);
        r.msix.notify(0);
        assert_eq!(r.pba(), 1);
        r.config.reset();
        r.msix.reset(&r.config);
        assert!(!r.msix.enabled());
        assert_eq!(r.pba(), 0);
        assert_eq!(r.r32(12), 1);
        assert_eq!(r.r32(0), 0);
        r.control(ENABLE);
        r.msix.notify(0);
        assert_eq!(r.ctl.fired(0), 0);
        assert_eq!(r.pba(), 1);
    }
}
