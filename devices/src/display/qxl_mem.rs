//! QXL guest addresses: a `QXLPHYSICAL` names a memory slot (its top 8 bits),
//! the slot's generation (the next 8) and an offset from the slot's start (the
//! low 48 bits: QEMU adds a slot with delta 0, and Linux's
//! `qxl_bo_physical_address` is the BO's offset in the BAR the slot begins at). The guest adds slots with QXL_IO_MEMSLOT_ADD over
//! ranges of the card's own BARs (Linux: slot 1 over BAR0 up to the RAM header,
//! slot 2 over the surface BAR), so every command, image and chunk is read from
//! memory the device owns: the BARs' `HostMemory`, through bounds-checked
//! volatile copies. Nothing here trusts the guest: an address outside every
//! slot, a range crossing a slot's end, a stale generation all fail with a
//! [`MemError`] and the command is dropped.

use crate::HostMemory;

/// QEMU's NUM_MEMSLOTS (ids 0..8; the guest uses 1..=7, `slots_start..=slots_end`).
pub const NUM_MEMSLOTS: usize = 8;
/// Bits of a QXLPHYSICAL left for the address (64 - 8 id bits - 8 generation bits).
pub const ADDRESS_BITS: u32 = 48;
const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;

/// Why a guest address could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    #[error("memslot {0} is not active")]
    NoSlot(u8),
    #[error("memslot generation {got} != {want}")]
    Generation { got: u8, want: u8 },
    #[error("{len} bytes at {addr:#x} are outside their memslot")]
    OutOfSlot { addr: u64, len: usize },
    #[error("address arithmetic overflows")]
    Overflow,
}

/// What the parsers read guest structures through. `read` copies exactly
/// `buf.len()` bytes at the QXLPHYSICAL `addr` or fails; it never returns a
/// partial copy, so each field is fetched once, from one snapshot of the bytes.
pub trait QxlMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Store into guest memory (the release chain's `next` links, surface
    /// write-back). Same rules as `read`.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError>;
}

/// QXLPHYSICAL `base` plus `off`, staying in the address bits (a carry into
/// the slot id would silently name another slot).
pub fn offset_addr(base: u64, off: u64) -> Result<u64, MemError> {
    let low = (base & ADDRESS_MASK)
        .checked_add(off)
        .filter(|a| *a <= ADDRESS_MASK)
        .ok_or(MemError::Overflow)?;
    Ok(base & !ADDRESS_MASK | low)
}

/// One active slot: guest-physical `[start, end)` backed by `regions[region]`
/// from `region_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memslot {
    pub start: u64,
    pub end: u64,
    pub region: usize,
    pub region_offset: u64,
}

/// The slot table over the device's memory regions (BAR0, BAR1).
#[derive(Clone)]
pub struct Memslots {
    regions: Vec<HostMemory>,
    slots: [Option<Memslot>; NUM_MEMSLOTS],
    /// The ROM's slot_generation; QEMU keeps it 0.
    generation: u8,
}

impl Memslots {
    pub fn new(regions: Vec<HostMemory>) -> Self {
        Self {
            regions,
            slots: [None; NUM_MEMSLOTS],
            generation: 0,
        }
    }

    /// MEMSLOT_ADD: `[start, end)` must lie inside one region, which sits at
    /// guest-physical `bases[i]` (None: the BAR is not decoded).
    pub fn add(
        &mut self,
        id: u8,
        start: u64,
        end: u64,
        bases: &[Option<u64>],
    ) -> Result<(), &'static str> {
        let slot = self
            .slots
            .get_mut(usize::from(id))
            .ok_or("slot id out of range")?;
        if slot.is_some() {
            return Err("slot already active");
        }
        if start > end || end > ADDRESS_MASK + 1 {
            return Err("bad slot range");
        }
        for (region, mem) in self.regions.iter().enumerate() {
            let Some(base) = bases.get(region).copied().flatten() else {
                continue;
            };
            let size = mem.len() as u64;
            if start >= base && end.checked_sub(base).is_some_and(|e| e <= size) {
                *slot = Some(Memslot {
                    start,
                    end,
                    region,
                    region_offset: start - base,
                });
                return Ok(());
            }
        }
        Err("slot range is not inside a BAR")
    }

    pub fn del(&mut self, id: u8) {
        if let Some(s) = self.slots.get_mut(usize::from(id)) {
            *s = None;
        }
    }

    pub fn reset(&mut self) {
        self.slots = [None; NUM_MEMSLOTS];
    }

    pub fn slot(&self, id: u8) -> Option<Memslot> {
        self.slots.get(usize::from(id)).copied().flatten()
    }

    /// (region, offset) of `len` bytes at `addr`.
    fn translate(&self, addr: u64, len: usize) -> Result<(&HostMemory, u64), MemError> {
        let id = (addr >> 56) as u8;
        let generation = (addr >> ADDRESS_BITS) as u8;
        let off = addr & ADDRESS_MASK;
        let slot = self.slot(id).ok_or(MemError::NoSlot(id))?;
        if generation != self.generation {
            return Err(MemError::Generation {
                got: generation,
                want: self.generation,
            });
        }
        let out = MemError::OutOfSlot { addr, len };
        let end = off.checked_add(len as u64).ok_or(out)?;
        if end > slot.end - slot.start {
            return Err(out);
        }
        let mem = self.regions.get(slot.region).ok_or(out)?;
        Ok((mem, slot.region_offset + off))
    }
}

impl QxlMemory for Memslots {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let (mem, off) = self.translate(addr, buf.len())?;
        let s = usize::try_from(off)
            .ok()
            .and_then(|o| mem.subslice(o, buf.len()))
            .ok_or(MemError::OutOfSlot {
                addr,
                len: buf.len(),
            })?;
        s.copy_to(buf);
        Ok(())
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let (mem, off) = self.translate(addr, data.len())?;
        let s = usize::try_from(off)
            .ok()
            .and_then(|o| mem.subslice(o, data.len()))
            .ok_or(MemError::OutOfSlot {
                addr,
                len: data.len(),
            })?;
        s.copy_from(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QXLPHYSICAL of guest address `addr` in slot `slot` starting at `base`.
    fn phys(slot: u8, addr: u64) -> u64 {
        let base = if slot == 2 { 0xe100_0000 } else { 0xe000_0000 };
        u64::from(slot) << 56 | addr.wrapping_sub(base) & ADDRESS_MASK
    }

    #[test]
    fn slots_translate_and_refuse() {
        let bar0 = HostMemory::new(1 << 20).unwrap();
        let bar1 = HostMemory::new(1 << 16).unwrap();
        let mut m = Memslots::new(vec![bar0.clone(), bar1.clone()]);
        let bases = [Some(0xe000_0000), Some(0xe100_0000)];
        // Linux: slot 1 over BAR0 up to the RAM header, slot 2 over BAR1.
        m.add(1, 0xe000_0000, 0xe00f_e000, &bases).unwrap();
        m.add(2, 0xe100_0000, 0xe101_0000, &bases).unwrap();
        assert_eq!(
            m.add(2, 0xe100_0000, 0xe101_0000, &bases),
            Err("slot already active")
        );
        assert!(
            m.add(3, 0xe100_0000, 0xe101_0001, &bases).is_err(),
            "past BAR1"
        );
        assert!(
            m.add(3, 0xd000_0000, 0xd000_1000, &bases).is_err(),
            "no BAR"
        );
        assert!(m.add(9, 0xe000_0000, 0xe000_1000, &bases).is_err());
        assert!(m.add(3, 0xe000_0000, 0xe000_1000, &[None, None]).is_err());

        bar0.write_u32(0x1000, 0xdead_beef);
        bar1.write_u32(0x20, 0x1234_5678);
        let mut b = [0u8; 4];
        m.read(phys(1, 0xe000_1000), &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0xdead_beef);
        m.read(phys(2, 0xe100_0020), &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0x1234_5678);
        m.write(phys(2, 0xe100_0020), &[9, 9, 9, 9]).unwrap();
        assert_eq!(bar1.read_u32(0x20), 0x0909_0909);

        // The RAM header is outside slot 1; crossing its end fails whole.
        assert!(m.read(phys(1, 0xe00f_e000), &mut b).is_err());
        assert!(m.read(phys(1, 0xe00f_dffe), &mut b).is_err());
        assert!(m.read(phys(1, 0xe000_0000 - 4), &mut b).is_err());
        assert_eq!(
            m.read(phys(4, 0xe000_0000), &mut b),
            Err(MemError::NoSlot(4))
        );
        assert!(matches!(
            m.read(phys(1, 0xe000_0000) | 1 << 48, &mut b),
            Err(MemError::Generation { got: 1, want: 0 })
        ));
        assert!(m.read(u64::MAX, &mut b).is_err());
        let mut big = vec![0u8; 1 << 21];
        assert!(m.read(phys(1, 0xe000_0000), &mut big).is_err());
        m.del(1);
        assert!(m.read(phys(1, 0xe000_1000), &mut b).is_err());
        assert_eq!(offset_addr(1 << 56 | 0x10, 0x20), Ok(1 << 56 | 0x30));
        assert!(offset_addr(1 << 56 | ADDRESS_MASK, 1).is_err());
    }
}
