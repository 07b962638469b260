//! Guest physical memory: anonymous mappings registered as KVM memory slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use devices::display::FbDirty;
use devices::pci::BarMapper;
use devices::HostMemory;
use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use tracing::{debug, warn};
use vm_memory::{
    Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MmapRegion,
};

use crate::error::{kvm, Error, Result};

/// RAM regions (from the firmware's memory layout) plus the read-only BIOS ROM.
pub struct GuestRam {
    pub mem: GuestMemoryMmap<()>,
    /// Kept alive because KVM maps it; the guest sees it at 4 GiB - len.
    _rom: Option<MmapRegion<()>>,
    next_slot: u32,
}

/// Ask for transparent huge pages on guest RAM, as QEMU does for every RAM
/// block: a guest touching fresh memory then costs one fault (and one nested
/// page table entry) per 2 MiB instead of per 4 KiB page, which is most of
/// the cost of a guest that streams data into new buffers (a 64 KiB USB read
/// into fresh pages took ~300 µs of faults on the test machines). Hosts with
/// THP off ignore the advice; a failure is only logged.
fn advise_huge_pages(addr: *mut u8, len: usize) {
    // SAFETY: `addr..addr+len` is a live anonymous mapping owned by the
    // caller's GuestMemoryMmap; MADV_HUGEPAGE changes only how the kernel
    // backs it, never its contents or validity.
    let rc = unsafe { libc::madvise(addr.cast(), len, libc::MADV_HUGEPAGE) };
    if rc != 0 {
        debug!(
            "madvise(MADV_HUGEPAGE) on guest RAM: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl GuestRam {
    /// Map `regions` (guest address, size) as RAM and register each with KVM.
    pub fn new(vm: &VmFd, regions: &[(u64, u64)]) -> Result<Self> {
        let ranges: Vec<(GuestAddress, usize)> = regions
            .iter()
            .map(|&(a, s)| (GuestAddress(a), s as usize))
            .collect();
        let mem = GuestMemoryMmap::<()>::from_ranges(&ranges)
            .map_err(|e| Error::Memory(e.to_string()))?;
        let mut slot = 0;
        for region in mem.iter() {
            advise_huge_pages(region.as_ptr(), region.len() as usize);
            let r = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the region is a live anonymous mapping owned by `mem`, which this
            // struct keeps for the VM's lifetime; KVM only accesses it while the VM exists.
            unsafe { vm.set_user_memory_region(r) }.map_err(kvm("set_user_memory_region"))?;
            slot += 1;
        }
        Ok(GuestRam {
            mem,
            _rom: None,
            next_slot: slot,
        })
    }

    /// The first KVM slot number not used for RAM or the ROM.
    pub fn next_free_slot(&self) -> u32 {
        self.next_slot
    }

    /// Map `image` read-only so that it ends at 4 GiB (the reset vector's flash).
    pub fn map_rom_below_4g(&mut self, vm: &VmFd, image: &[u8]) -> Result<()> {
        let len = image.len();
        let region = MmapRegion::<()>::new(len).map_err(|e| Error::Memory(e.to_string()))?;
        // Fill through a volatile slice: the mapping is plain anonymous memory.
        use vm_memory::VolatileMemory;
        region.as_volatile_slice().copy_from(image);
        let r = kvm_userspace_memory_region {
            slot: self.next_slot,
            flags: KVM_MEM_READONLY,
            guest_phys_addr: firmware::MemoryLayout::bios_rom_addr(len as u64),
            memory_size: len as u64,
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: `region` is a live mapping of `len` bytes kept in `self._rom` for as
        // long as the VM lives; the slot is read-only so the guest cannot write it.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm("set_user_memory_region (ROM)"))?;
        self.next_slot += 1;
        self._rom = Some(region);
        Ok(())
    }
}

/// KVM memory slots for PCI BARs backed by device memory (QXL's BAR0), moved
/// as the guest programs the BARs, with dirty-page logging so the display
/// model learns which framebuffer pages the guest wrote.
pub struct BarSlots {
    vm: Arc<VmFd>,
    /// BAR `k` seen (entries are never removed) uses slot `first_slot + k`.
    first_slot: u32,
    bars: Mutex<HashMap<(usize, usize), MappedBar>>,
}

struct MappedBar {
    slot: u32,
    base: Option<u64>,
    /// Kept so the mapping outlives its registration with KVM.
    mem: HostMemory,
    /// Set when the slot was (re)created since the last dirty-log read: the
    /// log restarted, so earlier writes are unknown.
    log_restarted: bool,
}

impl BarSlots {
    /// Slots from `first_slot` upward are free for BARs.
    pub fn new(vm: Arc<VmFd>, first_slot: u32) -> Self {
        BarSlots {
            vm,
            first_slot,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn set_region(&self, slot: u32, base: u64, mem: &HostMemory, flags: u32) -> Result<()> {
        let delete = flags == DELETE;
        let r = kvm_userspace_memory_region {
            slot,
            flags: if delete { 0 } else { flags },
            guest_phys_addr: base,
            memory_size: if delete { 0 } else { mem.len() as u64 },
            userspace_addr: mem.region().as_ptr() as u64,
        };
        // SAFETY: `mem` is a live anonymous mapping of `mem.len()` bytes; a clone
        // of it is kept in `bars` for as long as the slot is registered (and for
        // the VM's life after that), so KVM never sees freed memory. A size of 0
        // deletes the slot.
        unsafe { self.vm.set_user_memory_region(r) }.map_err(kvm("set_user_memory_region (BAR)"))
    }

    /// Pages of BAR `bar` of `devfn` written by the guest since the last call,
    /// or `Unknown` when it is not mapped or its log just restarted.
    pub fn dirty_log(&self, devfn: usize, bar: usize) -> FbDirty {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let Some(m) = bars.get_mut(&(devfn, bar)) else {
            return FbDirty::Unknown;
        };
        if m.base.is_none() {
            return FbDirty::Unknown;
        }
        match self.vm.get_dirty_log(m.slot, m.mem.len()) {
            Ok(pages) if !std::mem::take(&mut m.log_restarted) => FbDirty::Pages(pages),
            Ok(_) => FbDirty::Unknown,
            Err(e) => {
                warn!("KVM_GET_DIRTY_LOG on slot {}: {e}", m.slot);
                FbDirty::Unknown
            }
        }
    }
}

impl BarSlots {
    /// Take the memory placed under (`devfn`, `bar`) out of the guest's
    /// address space; false (not mapped) afterwards, whatever it was.
    pub fn unplace(&self, devfn: usize, bar: usize) -> bool {
        let mem = {
            let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
            match bars.get(&(devfn, bar)) {
                Some(m) => m.mem.clone(),
                None => return false,
            }
        };
        self.place(devfn, bar, None, &mem)
    }
}

/// `flags` value that `set_region` takes as "delete the slot".
const DELETE: u32 = u32::MAX;

impl BarMapper for BarSlots {
    fn bar_moved(&self, devfn: usize, bar: usize, base: Option<u64>, mem: &HostMemory) {
        self.place(devfn, bar, base, mem);
    }
}

impl BarSlots {
    /// Put BAR `bar` of `devfn` (or any other device memory under a key of
    /// its own) at `base` with dirty logging, or take it out of the guest's
    /// address space (`None`). Returns whether it is now mapped at `base`.
    pub fn place(&self, devfn: usize, bar: usize, base: Option<u64>, mem: &HostMemory) -> bool {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let slot = self.first_slot + bars.len() as u32;
        let m = bars.entry((devfn, bar)).or_insert_with(|| MappedBar {
            slot,
            base: None,
            mem: mem.clone(),
            log_restarted: true,
        });
        if m.base == base {
            return base.is_some();
        }
        if let Some(old) = m.base.take() {
            if let Err(e) = self.set_region(m.slot, old, &m.mem, DELETE) {
                warn!("unmapping BAR {bar} of {devfn:#x} at {old:#x}: {e}");
            }
        }
        m.mem = mem.clone();
        m.log_restarted = true;
        if let Some(new) = base {
            // A guest can place a BAR over RAM or another slot; KVM refuses and
            // the BAR keeps working through exits.
            match self.set_region(m.slot, new, &m.mem, KVM_MEM_LOG_DIRTY_PAGES) {
                Ok(()) => {
                    debug!("BAR {bar} of {devfn:#x} mapped at {new:#x}");
                    m.base = Some(new);
                }
                Err(e) => warn!("cannot map BAR {bar} of {devfn:#x} at {new:#x}: {e}"),
            }
        }
        m.base.is_some()
    }
}
