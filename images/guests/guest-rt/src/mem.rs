//! Physical memory: one bump allocator over the e820 RAM above the image and
//! below 4 GiB (so every buffer suits 32-bit DMA), serving page-aligned DMA
//! buffers ([`Dma`], [`alloc()`]) and the `alloc` crate's heap alike. Nothing
//! is ever freed: test guests are short. Virtual = physical = device
//! address everywhere; [`map`] extends the identity mapping above 4 GiB.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{read_volatile, write_volatile};

use crate::boot::{self, E820_RAM};

pub const PAGE_SIZE: u64 = 4096;
const FOUR_GIB: u64 = 1 << 32;
const MAX_REGIONS: usize = 16;

struct Arena {
    regions: [(u64, u64); MAX_REGIONS],
    count: usize,
    /// The region being carved, and the next free byte in it.
    current: usize,
    next: u64,
}

struct Global(UnsafeCell<Arena>);

// SAFETY: guest code is single-threaded (one vCPU, and the interrupt stubs at
// CPL 0 never call into Rust), so the arena is never accessed concurrently.
unsafe impl Sync for Global {}

static ARENA: Global = Global(UnsafeCell::new(Arena {
    regions: [(0, 0); MAX_REGIONS],
    count: 0,
    current: 0,
    next: 0,
}));

fn arena() -> &'static mut Arena {
    // SAFETY: see `Global`; no caller keeps the reference across a call that
    // could take it again.
    unsafe { &mut *ARENA.0.get() }
}

pub(crate) fn init() {
    let floor = boot::info().image_end.max(0x10_0000);
    let a = arena();
    for e in boot::e820() {
        if e.kind != E820_RAM {
            continue;
        }
        let start = e.base.max(floor).next_multiple_of(PAGE_SIZE);
        let end = e.base.saturating_add(e.len).min(FOUR_GIB) & !(PAGE_SIZE - 1);
        if start < end && a.count < MAX_REGIONS {
            a.regions[a.count] = (start, end);
            a.count += 1;
        }
    }
    a.regions[..a.count].sort_unstable();
    a.current = 0;
    a.next = if a.count > 0 { a.regions[0].0 } else { 0 };
}

/// `size` bytes aligned to `align` (a power of two), not zeroed; None when
/// RAM below 4 GiB is used up.
fn bump(size: u64, align: u64) -> Option<u64> {
    let a = arena();
    while a.current < a.count {
        let (_, end) = a.regions[a.current];
        let start = a.next.next_multiple_of(align);
        if let Some(stop) = start.checked_add(size).filter(|&s| s <= end) {
            a.next = stop;
            return Some(start);
        }
        a.current += 1;
        if a.current < a.count {
            a.next = a.regions[a.current].0;
        }
    }
    None
}

/// `size` zeroed bytes of RAM below 4 GiB aligned to `align` (a power of
/// two, at least [`PAGE_SIZE`] for DMA buffers); its address is what a
/// device is given. Fails the test when memory runs out.
pub fn alloc(size: u64, align: u64) -> u64 {
    assert!(
        align.is_power_of_two(),
        "alignment {align} is not a power of two"
    );
    let Some(addr) = bump(size, align) else {
        crate::fail!(
            "guest-rt",
            "out of memory: {size} bytes wanted, {} left",
            free_bytes()
        )
    };
    // SAFETY: freshly carved from RAM no one else uses.
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, size as usize) };
    addr
}

/// Bytes the allocator still has (below 4 GiB).
pub fn free_bytes() -> u64 {
    let a = arena();
    (a.current..a.count)
        .map(|i| {
            let (start, end) = a.regions[i];
            end - if i == a.current { a.next } else { start }
        })
        .sum()
}

/// A zeroed, page-aligned buffer for a device to read or write.
///
/// The device may change it at any time, so the guest reaches it only
/// through volatile accesses (or through a raw pointer it manages itself).
#[derive(Debug)]
pub struct Dma {
    addr: u64,
    len: u64,
}

impl Dma {
    pub fn new(len: u64) -> Dma {
        Dma {
            addr: alloc(len.max(1), PAGE_SIZE),
            len,
        }
    }

    /// Physical = virtual address: what the device is told.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr<T>(&self) -> *mut T {
        self.addr as *mut T
    }

    #[track_caller]
    fn at<T>(&self, offset: u64) -> *mut T {
        let w = core::mem::size_of::<T>() as u64;
        assert!(
            offset.checked_add(w).is_some_and(|e| e <= self.len),
            "DMA access at {offset:#x} (size {w}) outside the {:#x}-byte buffer",
            self.len
        );
        (self.addr + offset) as *mut T
    }

    /// A read of a `T` at `offset`: volatile when aligned (unaligned is
    /// allowed, as a plain read). Use integer types for device fields: any
    /// bit pattern the device wrote is then valid.
    #[track_caller]
    pub fn read<T: Copy>(&self, offset: u64) -> T {
        let p = self.at::<T>(offset);
        if (p as usize).is_multiple_of(core::mem::align_of::<T>()) {
            // SAFETY: inside the buffer and aligned.
            unsafe { read_volatile(p) }
        } else {
            // SAFETY: inside the buffer.
            unsafe { p.read_unaligned() }
        }
    }

    /// A write of a `T` at `offset`, volatile when aligned.
    #[track_caller]
    pub fn write<T: Copy>(&self, offset: u64, v: T) {
        let p = self.at::<T>(offset);
        if (p as usize).is_multiple_of(core::mem::align_of::<T>()) {
            // SAFETY: inside the buffer and aligned.
            unsafe { write_volatile(p, v) }
        } else {
            // SAFETY: inside the buffer.
            unsafe { p.write_unaligned(v) }
        }
    }

    /// Copies `src` into the buffer at `offset`.
    #[track_caller]
    pub fn copy_from(&self, offset: u64, src: &[u8]) {
        assert!(offset
            .checked_add(src.len() as u64)
            .is_some_and(|e| e <= self.len));
        // SAFETY: inside the buffer; `src` is guest memory that cannot overlap
        // an allocation the bump allocator handed out separately.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), (self.addr + offset) as *mut u8, src.len())
        }
    }

    /// Copies from the buffer at `offset` into `dst`.
    #[track_caller]
    pub fn copy_to(&self, offset: u64, dst: &mut [u8]) {
        assert!(offset
            .checked_add(dst.len() as u64)
            .is_some_and(|e| e <= self.len));
        // SAFETY: as copy_from.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (self.addr + offset) as *const u8,
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    /// The buffer as a byte slice, for bulk work (checksums, pattern fills).
    ///
    /// # Safety
    /// No device may write the buffer while the slice lives.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        core::slice::from_raw_parts_mut(self.addr as *mut u8, self.len as usize)
    }
}

/// Identity-maps `[base, base + len)` if any of it lies at or above 4 GiB
/// (the loader maps 0-4 GiB), with 2 MiB user pages. Page-table pages come
/// from [`alloc()`]. Only ever turns not-present entries present, which needs
/// no TLB flush (and CPL 3 could not do one).
pub fn map(base: u64, len: u64) {
    let end = base.saturating_add(len);
    if end <= FOUR_GIB {
        return;
    }
    const TWO_MIB: u64 = 1 << 21;
    const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
    const URW: u64 = 0x7;
    const PS: u64 = 0x80;
    let next_table = |entry: *mut u64| -> *mut u64 {
        // SAFETY: `entry` points into a page table of this guest's own
        // identity mapping (the loader's, or one allocated below).
        unsafe {
            let e = read_volatile(entry);
            if e & 1 != 0 {
                return (e & ADDR) as *mut u64;
            }
            let table = alloc(PAGE_SIZE, PAGE_SIZE);
            write_volatile(entry, table | URW);
            table as *mut u64
        }
    };
    let mut page = base.max(FOUR_GIB) & !(TWO_MIB - 1);
    while page < end {
        let pml4 = boot::info().pml4 as *mut u64;
        // SAFETY: indices are 9-bit, inside 512-entry tables.
        unsafe {
            let pdpt = next_table(pml4.add((page >> 39) as usize & 511));
            let pd = next_table(pdpt.add((page >> 30) as usize & 511));
            let pde = pd.add((page >> 21) as usize & 511);
            if read_volatile(pde) & 1 == 0 {
                write_volatile(pde, page | URW | PS);
            }
        }
        page += TWO_MIB;
    }
}

/// The `alloc` crate's heap: the same bump allocator (`dealloc` does
/// nothing).
struct Heap;

unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(layout.size() as u64, layout.align() as u64)
            .map_or(core::ptr::null_mut(), |a| a as *mut u8)
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static HEAP: Heap = Heap;
