//! Device models for spicebox.
//!
//! Every device here is plain Rust: guest memory is reached through `vm-memory`,
//! interrupts through the `IrqLine`/`IrqChip` traits and machine-level requests
//! (reset, power-off) through `VmRequests`. Nothing here knows about KVM, so each
//! model is unit-tested by driving its registers the way firmware and drivers do.

pub mod audio;
pub mod bus;
pub mod display;
pub mod error;
pub mod fw_cfg;
pub mod host_memory;
pub mod input;
pub mod interrupt;
pub mod legacy;
pub mod pci;
pub mod usb;
pub mod vdagent;
pub mod virtio;
pub mod worker;

#[cfg(test)]
mod test_rng;

pub use bus::{Bus, BusDevice, SharedDevice};
pub use error::{Error, Result};
pub use host_memory::HostMemory;
pub use interrupt::{IrqChip, IrqLine, VmRequest, VmRequests};

/// A device with power-on state that a machine reset restores. (PCI devices
/// reset through `PciDevice::reset`, called by the root bus.)
pub trait Reset {
    fn reset(&mut self);
}

/// What the VMM does to every device with threads or host resources (device
/// workers, disk images) when the machine pauses, resumes and exits. Resets go
/// through `Reset` and `PciDevice::reset`.
pub trait Lifecycle: Send {
    /// Park worker threads once the work in progress is complete; the machine
    /// is paused (QMP `stop`) or about to reset.
    fn pause(&mut self) {}

    fn resume(&mut self) {}

    /// The machine is exiting: stop worker threads and make everything the
    /// guest wrote durable.
    fn shutdown(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
