//! PCI: the config space model every PCI device embeds, the root bus with
//! configuration mechanism #1, the i440FX host bridge, the PIIX3 ISA bridge and
//! INTx routing.
//!
//! BAR decoding lives in the root bus (`PciRoot::pio_read` etc.): the VMM routes any
//! port or MMIO exit that no fixed device claims to the root, which looks the address
//! up in its table of enabled BAR and ROM windows. The root refreshes a device's
//! windows whenever a config cycle touches its COMMAND, BAR or ROM registers and on
//! reset, so a guest moving a BAR needs no re-registration.

pub mod config;
pub mod i440fx;
pub mod intx;
pub mod intx_pin;
pub mod piix3;
pub mod root;

pub use config::{BarKind, PciConfig};
pub use i440fx::I440fx;
pub use intx::{PciIntxRouter, PirqRegs};
pub use piix3::Piix3;
pub use root::{BarMapper, PciRoot, SharedPciDevice};

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

    /// Return the state outside config space to power-on (machine reset). The
    /// config space itself is restored to its sealed contents by `reset_device`
    /// (which `PciRoot::reset` uses) just before this is called.
    fn reset(&mut self) {}
}

/// Machine reset of one PCI device: config space back to what `PciConfig::seal`
/// captured, then the device's own `reset`.
pub fn reset_device(dev: &mut dyn PciDevice) {
    dev.config_mut().reset();
    dev.reset();
}
