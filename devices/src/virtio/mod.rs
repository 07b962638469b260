//! virtio devices on the modern (1.0) PCI transport.
//!
//! `device` defines what a device model implements (`VirtioDevice`), `pci` is the
//! transport that turns one into a `PciDevice`, `block` is virtio-blk and `disk`
//! the disk image backends (raw, qcow2) behind it.
//!
//! Plugging a disk in (the VMM's side):
//!
//! ```text
//! let blk = VirtioBlock::open(path, read_only)?;          // probes raw / qcow2
//! let irq = intx_router.line(slot, 1);                     // INTA of that slot
//! let dev = VirtioPciDevice::new(blk, guest_mem.clone(), irq);
//! pci_root.add_device(slot, 0, Arc::new(Mutex::new(dev)))?;
//! ```
//!
//! Nothing else is registered: the firmware places BAR 4 and the PCI root routes
//! MMIO inside it to the device. Queue kicks are processed on the vCPU thread that
//! wrote the notify register.

pub mod block;
pub mod device;
pub mod disk;
pub mod input;
pub mod input_config;
pub mod pci;
pub mod serial;

pub use block::VirtioBlock;
pub use device::{VirtioDevice, VirtioInterrupt};
pub use disk::{open_disk, DiskImage};
pub use input::{VirtioInput, VirtioKeyboard, VirtioTablet};
pub use pci::VirtioPciDevice;
pub use serial::{SerialBackend, SerialPort, VirtioSerial};
