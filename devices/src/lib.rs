//! Device models for spicebox.
//!
//! Every device here is plain Rust: guest memory is reached through `vm-memory`,
//! interrupts through the `IrqLine`/`IrqChip` traits and machine-level requests
//! (reset, power-off) through `VmRequests`. Nothing here knows about KVM, so each
//! model is unit-tested by driving its registers the way firmware and drivers do.

pub mod bus;
pub mod display;
pub mod error;
pub mod fw_cfg;
pub mod host_memory;
pub mod input;
pub mod interrupt;
pub mod legacy;
pub mod pci;
pub mod virtio;

pub use bus::{Bus, BusDevice, SharedDevice};
pub use error::{Error, Result};
pub use host_memory::HostMemory;
pub use interrupt::{IrqChip, IrqLine, VmRequest, VmRequests};

/// A device with power-on state that a machine reset restores. (PCI devices
/// reset through `PciDevice::reset`, called by the root bus.)
pub trait Reset {
    fn reset(&mut self);
}
