//! Device memory that the guest also reaches directly: a BAR the VMM maps
//! into the guest's physical address space (for QXL, BAR0: the framebuffer and
//! the command/RAM-header area), so guest stores to it cost no exit.
//!
//! The guest and the device touch it concurrently, so it is never borrowed as
//! a Rust slice: every access is a bounds-checked volatile copy through
//! `vm-memory`.

use std::sync::Arc;

use std::sync::atomic::{AtomicU32, Ordering};

use vm_memory::{MmapRegion, VolatileMemory, VolatileSlice};

use crate::{Error, Result};

#[derive(Clone)]
pub struct HostMemory {
    region: Arc<MmapRegion<()>>,
}

impl HostMemory {
    /// `size` bytes of zeroed anonymous memory.
    pub fn new(size: usize) -> Result<Self> {
        let region = MmapRegion::new(size).map_err(|e| Error::HostMemory(e.to_string()))?;
        Ok(Self {
            region: Arc::new(region),
        })
    }

    pub fn len(&self) -> usize {
        self.region.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mapping, for the VMM to register with the hypervisor.
    pub fn region(&self) -> &Arc<MmapRegion<()>> {
        &self.region
    }

    /// The whole memory as a volatile slice.
    pub fn slice(&self) -> VolatileSlice<'_, ()> {
        self.region.as_volatile_slice()
    }

    /// `len` bytes from `off`, or `None` if that runs past the end.
    pub fn subslice(&self, off: usize, len: usize) -> Option<VolatileSlice<'_, ()>> {
        self.region.get_slice(off, len).ok()
    }

    /// Copy into `data`; all ones (what an unclaimed bus returns) when out of range.
    pub fn read(&self, off: u64, data: &mut [u8]) {
        match usize::try_from(off)
            .ok()
            .and_then(|o| self.subslice(o, data.len()))
        {
            Some(s) => {
                s.copy_to(data);
            }
            None => data.fill(0xff),
        }
    }

    /// Copy `data` in; ignored when out of range.
    pub fn write(&self, off: u64, data: &[u8]) {
        if let Some(s) = usize::try_from(off)
            .ok()
            .and_then(|o| self.subslice(o, data.len()))
        {
            s.copy_from(data);
        }
    }

    /// Little-endian u32 at `off`; 0 when out of range.
    pub fn read_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        match self.subslice(off, 4) {
            Some(s) => {
                s.copy_to(&mut b);
                u32::from_le_bytes(b)
            }
            None => 0,
        }
    }

    pub fn read_u64(&self, off: usize) -> u64 {
        u64::from(self.read_u32(off)) | u64::from(self.read_u32(off.saturating_add(4))) << 32
    }

    pub fn write_u32(&self, off: usize, v: u32) {
        if let Some(s) = self.subslice(off, 4) {
            s.copy_from(&v.to_le_bytes());
        }
    }

    pub fn write_u64(&self, off: usize, v: u64) {
        if let Some(s) = self.subslice(off, 8) {
            s.copy_from(&v.to_le_bytes());
        }
    }

    /// Atomically OR `bits` into the aligned u32 at `off` (a register the
    /// guest updates with atomic instructions too, such as QXL's
    /// int_pending); returns the old value, 0 when out of range or unaligned.
    pub fn fetch_or_u32(&self, off: usize, bits: u32) -> u32 {
        match self.region.get_atomic_ref::<AtomicU32>(off) {
            Ok(a) => u32::from_le(a.fetch_or(bits.to_le(), Ordering::SeqCst)),
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_checked_access() {
        let m = HostMemory::new(4096).unwrap();
        m.write_u32(4092, 0xdead_beef);
        assert_eq!(m.read_u32(4092), 0xdead_beef);
        m.write_u32(4093, 1); // would cross the end: ignored
        assert_eq!(m.read_u32(4093), 0);
        assert_eq!(m.read_u64(usize::MAX), 0);
        let mut b = [0u8; 2];
        m.read(u64::MAX, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        m.write(4094, &[1, 2]);
        m.read(4094, &mut b);
        assert_eq!(b, [1, 2]);
        m.write_u32(8, 1);
        assert_eq!(m.fetch_or_u32(8, 6), 1);
        assert_eq!(m.read_u32(8), 7);
        assert_eq!(m.fetch_or_u32(9, 1), 0, "unaligned");
        m.write_u64(16, 0x1122_3344_5566_7788);
        assert_eq!(m.read_u64(16), 0x1122_3344_5566_7788);
        let clone = m.clone();
        assert_eq!(clone.read_u32(4092), 0x0201_beef, "clones share memory");
    }
}
