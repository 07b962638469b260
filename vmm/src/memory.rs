//! Guest physical memory: anonymous mappings registered as KVM memory slots.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
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
