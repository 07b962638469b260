//! The PCI function: identity, BAR 0, MSI-X in BAR 0, and a doorbell written
//! through the BAR waking the worker thread, which completes the command and
//! sends the interrupter's MSI-X vector.

use std::time::{Duration, Instant};

use super::*;
use crate::interrupt::test_util::RecordingLine;
use crate::pci;
use crate::pci::msi::test_util::RecordingMsi;
use crate::usb::xhci::XhciPci;
use crate::Lifecycle;

fn cfg(dev: &mut XhciPci, offset: usize) -> u32 {
    pci::config_read(dev, offset)
}

fn mmio_w32(dev: &mut XhciPci, offset: u64, v: u32) {
    pci::bar_write(dev, 0, offset, &v.to_le_bytes());
}

fn mmio_r32(dev: &mut XhciPci, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    pci::bar_read(dev, 0, offset, &mut b);
    u32::from_le_bytes(b)
}

#[test]
fn pci_identity_msix_and_worker() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let line = Arc::new(RecordingLine::default());
    let msi = Arc::new(RecordingMsi::default());
    let mut dev = XhciPci::new(mem.clone(), line.clone(), Some(&*msi)).unwrap();
    assert_eq!(cfg(&mut dev, 0), 0x000d_1b36);
    assert_eq!(cfg(&mut dev, 8) >> 8, 0x0c_03_30);
    assert_eq!(cfg(&mut dev, 0x60) & 0xffff, 0x2030, "SBRN 3.0, FLADJ");
    // BAR 0: 64-bit memory, 16 KiB.
    assert_eq!(cfg(&mut dev, 0x10) & 0x7, 0x4);
    pci::config_write(&mut dev, 0x10, &u32::MAX.to_le_bytes());
    assert_eq!(!(cfg(&mut dev, 0x10) & !0xf) + 1, 0x4000);
    pci::config_write(&mut dev, 0x10, &0xfe00_0000u32.to_le_bytes());
    pci::config_write(&mut dev, 0x14, &0u32.to_le_bytes());
    pci::config_write(&mut dev, 0x04, &0x0006u16.to_le_bytes());
    // MSI-X: 16 vectors, table at BAR 0 + 0x3000, PBA at + 0x3800.
    let mut ptr = (cfg(&mut dev, 0x34) & 0xff) as usize;
    let msix = loop {
        assert_ne!(ptr, 0, "no MSI-X capability");
        let head = cfg(&mut dev, ptr);
        if head & 0xff == 0x11 {
            break ptr;
        }
        ptr = ((head >> 8) & 0xff) as usize;
    };
    assert_eq!((cfg(&mut dev, msix) >> 16) & 0x7ff, 15);
    assert_eq!(cfg(&mut dev, msix + 4), 0x3000);
    assert_eq!(cfg(&mut dev, msix + 8), 0x3800);
    // The driver programs entry 0, unmasks it and enables MSI-X.
    mmio_w32(&mut dev, 0x3000, 0xfee0_0000);
    mmio_w32(&mut dev, 0x3004, 0);
    mmio_w32(&mut dev, 0x3008, 0x41);
    mmio_w32(&mut dev, 0x300c, 0);
    pci::config_write(&mut dev, msix + 2, &0x8000u16.to_le_bytes());

    // xhci_init, through the BAR.
    assert_eq!(mmio_r32(&mut dev, 0) & 0xff, 0x40);
    mmio_w32(&mut dev, OP_BASE, USBCMD_HCRST);
    mmio_w32(&mut dev, OP_BASE + 0x38, 8);
    mmio_w32(&mut dev, OP_BASE + 0x30, DCBAA as u32);
    mmio_w32(&mut dev, OP_BASE + 0x34, 0);
    mmio_w32(&mut dev, OP_BASE + 0x18, CMD_RING as u32 | 1);
    mmio_w32(&mut dev, OP_BASE + 0x1c, 0);
    mem.write_obj(EVENTS, GuestAddress(ERST)).unwrap();
    mem.write_obj(EVENT_TRBS, GuestAddress(ERST + 8)).unwrap();
    let intr0 = RUNTIME_BASE + 0x20;
    mmio_w32(&mut dev, intr0 + 0x08, 1);
    mmio_w32(&mut dev, intr0 + 0x10, ERST as u32);
    mmio_w32(&mut dev, intr0 + 0x14, 0);
    mmio_w32(&mut dev, intr0 + 0x18, EVENTS as u32);
    mmio_w32(&mut dev, intr0 + 0x1c, 0);
    mmio_w32(&mut dev, intr0, 0x2);
    mmio_w32(&mut dev, OP_BASE, USBCMD_RS | USBCMD_INTE);
    // A No-Op command and the doorbell: the worker answers, not this thread.
    put(
        &mem,
        CMD_RING,
        Trb {
            parameter: 0,
            status: 0,
            control: tt::NOOP_COMMAND << 10 | CYCLE,
        },
    );
    mmio_w32(&mut dev, DOORBELL_BASE, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read_trb(&mem, EVENTS).cycle() {
        assert!(
            Instant::now() < deadline,
            "the worker never completed the command"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ev = read_trb(&mem, EVENTS);
    assert_eq!(
        (ev.trb_type(), code(&ev), ev.parameter),
        (tt::COMMAND_COMPLETION, cc::SUCCESS, CMD_RING)
    );
    while msi.fired(0) == 0 {
        assert!(Instant::now() < deadline, "no MSI-X message");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(msi.take_fired(0), vec![0x41]);
    assert!(!line.is_high(), "no INTx while MSI-X is on");
    // Machine reset: halted again; shutdown stops the worker.
    pci::reset_device(&mut dev);
    assert_eq!(mmio_r32(&mut dev, OP_BASE + 4) & USBSTS_HCH, USBSTS_HCH);
    dev.shutdown().unwrap();
}
