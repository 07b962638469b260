//! An xHCI USB host controller, compatible with QEMU's qemu-xhci (1b36:000d):
//! 4 USB 2 and 4 USB 3 root ports, 64 slots, 16 interrupters, 32-byte contexts,
//! no scratchpad, MSI-X (16 vectors) and INTx.
//!
//! * `controller.rs`: registers, interrupters' interrupts, ports glue.
//! * `commands.rs`: the command ring and the slot/endpoint state machines.
//! * `transfer.rs`: TDs to [`crate::usb::UsbRequest`]s and back to events.
//! * `isoch.rs`: isochronous TDs, scheduled per service interval on MFINDEX.
//! * `trb.rs`, `interrupter.rs`, `context.rs`, `port.rs`: the data structures.
//! * `pci.rs`: the PCI function and its worker thread.
//!
//! Everything the guest wrote is read once through bounds-checked `vm-memory`
//! calls; rings that loop, TRBs or contexts outside RAM and impossible context
//! values end in a completion code, a halted endpoint or a stopped ring, and a
//! log line.

mod commands;
mod context;
mod controller;
mod interrupter;
mod isoch;
mod pci;
mod port;
mod transfer;
mod trb;

#[cfg(test)]
mod tests;

pub use controller::{Xhci, XhciInterrupt, BAR_SIZE, MAX_INTRS, MAX_SLOTS};
pub use isoch::{schedule, IsochParams, IsochTrb, Schedule, MICROFRAME};
pub use pci::{XhciHandle, XhciPci};
pub use port::{PORTS, USB2_PORTS, USB3_PORTS};
pub use trb::{cc, trb_type, Trb};
