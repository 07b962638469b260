//! PCI: the config space model every PCI device embeds, the root bus with
//! configuration mechanism #1, the i440FX host bridge, the PIIX3 ISA bridge,
//! INTx routing, and each function's interrupts (`PciInterrupt`: INTx, MSI-X,
//! MSI, delivered through the VMM's `MsiController`).
//!
//! BAR decoding lives in the root bus (`PciRoot::pio_read` etc.): the VMM routes any
//! port or MMIO exit that no fixed device claims to the root, which looks the address
//! up in its table of enabled BAR and ROM windows. The root refreshes a device's
//! windows whenever a config cycle touches its COMMAND, BAR or ROM registers and on
//! reset, so a guest moving a BAR needs no re-registration.

pub mod config;
pub mod i440fx;
pub mod interrupt;
pub mod intx;
mod intx_pin;
pub mod msi;
pub mod msix;
pub mod piix3;
pub mod root;

pub use config::{BarKind, PciConfig};
pub use i440fx::I440fx;
pub use interrupt::PciInterrupt;
pub use intx::{PciIntxRouter, PirqRegs};
pub use msi::{MsiController, MsiMessage, MsiVector};
pub use msix::MsixLayout;
pub use piix3::Piix3;
pub use root::{BarMapper, PciRoot, SharedPciDevice};

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::HostMemory;

/// Index used for the expansion ROM in `PciDevice::bar_read`.
pub const ROM_BAR: usize = 6;

/// A device on the PCI bus.
pub trait PciDevice: Send {
    /// The config space (header, BARs, capabilities).
    fn config(&self) -> &PciConfig;
    fn config_mut(&mut self) -> &mut PciConfig;

    /// Read a dword of config space at `offset` (4-byte aligned, < 256).
    /// Devices with side effects on config reads override this.
    fn config_read(&mut self, offset: usize) -> u32 {
        self.config().read_dword(offset)
    }

    /// Write `data` at config `offset` (any width, not crossing a dword).
    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config_mut().write(offset, data);
    }

    /// Access inside BAR `bar` (0..=5, or `ROM_BAR`) at `offset` from its base;
    /// `data` arrives zeroed. The root only routes here for BARs (and a ROM) the
    /// device declared, so the defaults, for devices with none, read all ones and
    /// drop writes.
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}

    /// Host memory backing memory BAR `bar`, for BARs the VMM should map straight
    /// into the guest (no exit per access) wherever the guest places them. While
    /// the BAR is not mapped (decoding off, or the mapping failed), accesses still
    /// arrive through `bar_read`/`bar_write`, which must use the same memory.
    fn host_memory_bar(&self, _bar: usize) -> Option<HostMemory> {
        None
    }

    /// Eventfds to signal on a guest write at `(offset, eventfd)` inside memory
    /// BAR `bar`, of any width and value: doorbells such as virtio's queue
    /// notify. The VMM registers them with KVM (ioeventfd) wherever the guest
    /// places the BAR, so those writes wake a device worker with no exit to
    /// user space. Writes that still arrive through `bar_write` must have the
    /// same effect (signal the eventfd).
    fn ioeventfds(&self, _bar: usize) -> Vec<(u64, Arc<EventFd>)> {
        Vec::new()
    }

    /// The function's interrupts (INTx, MSI-X, MSI), if it has any. The bus
    /// keeps them in step with config space and serves the MSI-X table and PBA
    /// (see the free functions below), so the device itself only raises them.
    fn interrupt(&self) -> Option<Arc<PciInterrupt>> {
        None
    }

    /// Return the state outside config space to power-on (machine reset). The
    /// config space itself is restored to its sealed contents by `reset_device`
    /// (which `PciRoot::reset` uses) just before this is called.
    fn reset(&mut self) {}
}

// How the bus reaches a device: every path goes through these, so a device's
// `PciInterrupt` sees each config cycle and MSI-X access without the device
// forwarding them.

/// A config read of the dword at `offset`: interrupt status mirrored first.
pub fn config_read(dev: &mut dyn PciDevice, offset: usize) -> u32 {
    if let Some(irq) = dev.interrupt() {
        irq.config_read(dev.config_mut());
    }
    dev.config_read(offset)
}

/// A config write of `data` at `offset`, then the interrupt state follows it.
pub fn config_write(dev: &mut dyn PciDevice, offset: usize, data: &[u8]) {
    dev.config_write(offset, data);
    if let Some(irq) = dev.interrupt() {
        irq.config_written(dev.config(), offset, data.len());
    }
}

/// A read inside BAR `bar`: the MSI-X table and PBA, else the device.
pub fn bar_read(dev: &mut dyn PciDevice, bar: usize, offset: u64, data: &mut [u8]) {
    if !dev
        .interrupt()
        .is_some_and(|i| i.bar_read(bar, offset, data))
    {
        dev.bar_read(bar, offset, data);
    }
}

/// A write inside BAR `bar`: the MSI-X table and PBA, else the device.
pub fn bar_write(dev: &mut dyn PciDevice, bar: usize, offset: u64, data: &[u8]) {
    if !dev
        .interrupt()
        .is_some_and(|i| i.bar_write(bar, offset, data))
    {
        dev.bar_write(bar, offset, data);
    }
}

/// Machine reset of one PCI device: config space back to what `PciConfig::seal`
/// captured, its interrupts to power-on, then the device's own `reset`.
pub fn reset_device(dev: &mut dyn PciDevice) {
    dev.config_mut().reset();
    if let Some(irq) = dev.interrupt() {
        irq.reset(dev.config());
    }
    dev.reset();
}
