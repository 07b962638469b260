//! What goes into a spicebox guest before its first instruction, as plain data:
//! the PC memory map, e820 tables, the SeaBIOS image and its fw_cfg content, and
//! for direct Linux boot the kernel, zero page, MP table and 64-bit CPU state,
//! and the ACPI tables for both.
//! Nothing here touches KVM; the `vmm` crate applies the results.

pub mod acpi;
pub mod boot_cpu;
pub mod e820;
mod error;
pub mod fw_cfg_content;
pub mod layout;
pub mod linux;
pub mod mptable;
pub mod seabios;

pub use boot_cpu::{BootCpuState, SegmentDesc};
pub use e820::E820Entry;
pub use error::{Error, Result};
pub use fw_cfg_content::{BootDevice, BootOptions, FwCfgContent};
pub use layout::MemoryLayout;
pub use linux::{load_linux, load_linux_with_pci, LinuxBoot};
pub use mptable::PciIrqRoute;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Bounds-checked write of `bytes` at guest-physical `addr`.
pub(crate) fn write_guest(mem: &GuestMemoryMmap<()>, addr: u64, bytes: &[u8]) -> Result<()> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| Error::GuestMemory {
            addr,
            len: bytes.len(),
            source,
        })
}
