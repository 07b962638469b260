//! Memory-mapped device registers.
//!
//! Every access is one `mov` of the register's width through a volatile
//! pointer: the VMM has to decode the instruction of each MMIO exit, so
//! never touch registers with slices, `copy_from_slice` or SIMD.

use core::ptr::{read_volatile, write_volatile};

/// A window of device registers at a physical (= virtual) address.
#[derive(Clone, Copy, Debug)]
pub struct Mmio {
    base: u64,
    len: u64,
}

impl Mmio {
    /// The window `[base, base + len)`, mapped first if it lies above 4 GiB.
    ///
    /// # Safety
    /// `base..base + len` must be device registers (or memory) that this
    /// guest may read and write: nothing checks what is there.
    pub unsafe fn new(base: u64, len: u64) -> Mmio {
        crate::mem::map(base, len);
        Mmio { base, len }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A sub-window (for example one virtio capability inside a BAR).
    pub fn slice(&self, offset: u64, len: u64) -> Mmio {
        self.check(offset, len, 1);
        Mmio {
            base: self.base + offset,
            len,
        }
    }

    #[track_caller]
    fn check(&self, offset: u64, width: u64, align: u64) {
        assert!(
            offset.checked_add(width).is_some_and(|end| end <= self.len) && offset.is_multiple_of(align),
            "MMIO access at {offset:#x} (width {width}) outside or misaligned in the {:#x}-byte window at {:#x}",
            self.len,
            self.base
        );
    }

    #[track_caller]
    fn ptr<T>(&self, offset: u64) -> *mut T {
        let w = core::mem::size_of::<T>() as u64;
        self.check(offset, w, w);
        (self.base + offset) as *mut T
    }

    #[track_caller]
    pub fn read8(&self, offset: u64) -> u8 {
        // SAFETY: inside the window `new`'s caller vouched for.
        unsafe { read_volatile(self.ptr(offset)) }
    }
    #[track_caller]
    pub fn read16(&self, offset: u64) -> u16 {
        // SAFETY: as read8.
        unsafe { read_volatile(self.ptr(offset)) }
    }
    #[track_caller]
    pub fn read32(&self, offset: u64) -> u32 {
        // SAFETY: as read8.
        unsafe { read_volatile(self.ptr(offset)) }
    }
    #[track_caller]
    pub fn read64(&self, offset: u64) -> u64 {
        // SAFETY: as read8.
        unsafe { read_volatile(self.ptr(offset)) }
    }
    #[track_caller]
    pub fn write8(&self, offset: u64, v: u8) {
        // SAFETY: as read8.
        unsafe { write_volatile(self.ptr(offset), v) }
    }
    #[track_caller]
    pub fn write16(&self, offset: u64, v: u16) {
        // SAFETY: as read8.
        unsafe { write_volatile(self.ptr(offset), v) }
    }
    #[track_caller]
    pub fn write32(&self, offset: u64, v: u32) {
        // SAFETY: as read8.
        unsafe { write_volatile(self.ptr(offset), v) }
    }
    #[track_caller]
    pub fn write64(&self, offset: u64, v: u64) {
        // SAFETY: as read8.
        unsafe { write_volatile(self.ptr(offset), v) }
    }
}
