//! xhci-storage: a USB stick behind an xHCI controller (qemu-xhci, 1b36:000d),
//! driven the way Linux's xhci-hcd, the USB core and usb-storage do, by
//! polling the event ring (no interrupts; everything runs at CPL 3).
//!
//! 1. `xhci_halt`/`xhci_reset`/`xhci_mem_init`/`xhci_run`: halt, HCRST, wait
//!    for CNR to clear, MaxSlotsEn, DCBAA, command ring (RCS 1), one event
//!    ring segment on interrupter 0, RS.
//! 2. Root hub: wait for a connected port (the test attaches the device over
//!    usbredir after boot), port reset (PR until PRC, PED), change bits
//!    cleared the way `xhci_port_state_to_neutral` keeps the others.
//! 3. `xhci_alloc_dev`/`xhci_address_device`: Enable Slot, Address Device
//!    with slot and EP0 contexts; `usb_new_device`: GET_DESCRIPTOR device,
//!    configuration (9 bytes, then all), Configure Endpoint for the bulk
//!    endpoints (`usb_hcd_alloc_bandwidth`), then SET_CONFIGURATION.
//! 4. usb-storage (`usb_stor_Bulk_max_lun`, `usb_stor_Bulk_transport`):
//!    GET_MAX_LUN, then CBW / data / CSW for INQUIRY, TEST UNIT READY, READ
//!    CAPACITY(10), READ(10) of known sectors, a READ(10) past the end and
//!    the REQUEST SENSE that explains it.
//!
//! 5. A boot keyboard instead (interface 3/1/1) is driven as usbhid does:
//!    Configure Endpoint for its interrupt IN endpoint, SET_CONFIGURATION,
//!    SET_IDLE, SET_PROTOCOL (boot), the report descriptor, SET_REPORT (LEDs),
//!    then interrupt TDs kept queued; see `hid.rs`.
//!
//! 6. An isochronous source instead (vendor interface ff/49/01, the test
//!    peer's `IsoSource`) is driven as xhci-hcd queues isochronous URBs:
//!    Configure Endpoint for its isochronous IN and OUT endpoints, URBs of
//!    Isoch TRBs (SIA, ISP, IOC, BEI), resubmitted as they complete, the
//!    packets' numbers, sizes and contents checked; see `iso.rs`.
//!
//! Prints `storage ...` lines (vendor, product, capacity, an FNV-1a 32 of
//! the sectors read, the sense) and `SPICEBOX-XHCI-STORAGE-OK`.
#![no_std]
#![no_main]

extern crate alloc;

mod hid;
mod iso;
mod storage;
mod xhci;

use guest_rt::{check, fail, pci, println, OrFail};

use xhci::{descriptors, get_descriptor, Device, Xhci};

guest_rt::guest!("XHCI-STORAGE", main);

fn main() {
    let f = pci::find(0x1b36, 0x000d).or_fail("pci-scan");
    f.enable();
    let bar = f.bars().find(|b| !b.is_io()).or_fail("bar");
    if bar.addr >= 1 << 32 {
        guest_rt::mem::map(bar.addr, bar.size);
    }
    let mut xhci = Xhci::init(bar.mmio());

    let (port, speed) = xhci.connected_port();
    println!("xhci port={port} speed={speed}");
    let mut dev = Device::address(&mut xhci, port, speed);
    let d = dev.control(&mut xhci, get_descriptor(1, 0, 18), "device-descriptor");
    check!(d.len() == 18 && d[1] == 1, "device-descriptor", "{d:02x?}");
    let vendor = u16::from_le_bytes([d[8], d[9]]);
    let product = u16::from_le_bytes([d[10], d[11]]);
    println!(
        "usb device {vendor:04x}:{product:04x} usb={:x}.{:02x} ep0={}",
        d[3], d[2], d[7]
    );
    let c = dev.control(&mut xhci, get_descriptor(2, 0, 9), "config-descriptor");
    check!(c.len() == 9 && c[1] == 2, "config-descriptor", "{c:02x?}");
    let total = u16::from_le_bytes([c[2], c[3]]).min(1024);
    let c = dev.control(&mut xhci, get_descriptor(2, 0, total), "config-descriptor");
    check!(
        c.len() == usize::from(total),
        "config-descriptor",
        "{} of {total}",
        c.len()
    );
    // The first interface the guest has a driver for decides the mode.
    let interface = descriptors(&c).find(|d| {
        d[1] == 4
            && d.len() >= 9
            && (storage::is_storage(d) || hid::is_boot_keyboard(d) || iso::is_iso_source(d))
    });
    match interface {
        Some(d) if storage::is_storage(d) => storage::run(&mut xhci, &mut dev, &c),
        Some(d) if iso::is_iso_source(d) => iso::run(&mut xhci, &mut dev, &c),
        Some(_) => hid::run(&mut xhci, &mut dev, &c),
        None => fail!(
            "interface",
            "no mass-storage, boot keyboard or isochronous interface: {c:02x?}"
        ),
    }
}
