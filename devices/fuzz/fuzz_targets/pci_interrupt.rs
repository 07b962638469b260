//! A PCI function's interrupts (INTx, MSI-X, MSI) under arbitrary config
//! cycles, MSI-X table/PBA accesses and device notifications: no panic, and
//! no message sent for a masked or undeliverable vector.
#![no_main]

use std::sync::{Arc, Mutex};

use devices::interrupt::NoIrq;
use devices::pci::{self, BarKind, MsiController, MsiMessage, MsiVector, MsixLayout};
use devices::pci::{PciConfig, PciDevice, PciInterrupt};
use libfuzzer_sys::fuzz_target;

struct Vector(Mutex<Option<MsiMessage>>);

impl MsiVector for Vector {
    fn set_route(&self, msg: MsiMessage) {
        assert!(msg.is_deliverable(), "routed an undeliverable message");
        *self.0.lock().unwrap() = Some(msg);
    }
    fn fire(&self) {
        assert!(self.0.lock().unwrap().is_some(), "fired an unrouted vector");
    }
}

struct Controller;

impl MsiController for Controller {
    fn new_vector(&self) -> devices::Result<Arc<dyn MsiVector>> {
        Ok(Arc::new(Vector(Mutex::new(None))))
    }
}

struct Dev {
    config: PciConfig,
    irq: Arc<PciInterrupt>,
}

impl PciDevice for Dev {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn interrupt(&self) -> Option<Arc<PciInterrupt>> {
        Some(self.irq.clone())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut config = PciConfig::new(0x1af4, 0x1042, 0x010000, 1);
    let layout = MsixLayout::own_bar(1, 5);
    config.add_bar(1, layout.bar_size(), BarKind::Mem32 { prefetchable: false });
    let irq = PciInterrupt::new(&mut config, Arc::new(NoIrq))
        .with_msix(&mut config, layout, &Controller)
        .unwrap()
        .with_msi(&mut config, 4, &Controller)
        .unwrap();
    config.seal();
    let mut dev = Dev {
        config,
        irq: Arc::new(irq),
    };
    // Each operation: 1 byte kind, 2 bytes offset, 1 byte width, 8 bytes value.
    for op in data.chunks_exact(12) {
        let offset = u16::from_le_bytes([op[1], op[2]]);
        let width = [1usize, 2, 3, 4, 8][usize::from(op[3]) % 5];
        let value = &op[4..4 + width];
        match op[0] % 6 {
            0 => {
                let off = usize::from(offset) % 256;
                let len = width.min(4 - off % 4);
                pci::config_write(&mut dev, off, &value[..len]);
            }
            1 => {
                pci::config_read(&mut dev, usize::from(offset) & 0xfc);
            }
            2 => pci::bar_write(&mut dev, 1, u64::from(offset), value),
            3 => {
                let mut buf = [0u8; 8];
                pci::bar_read(&mut dev, 1, u64::from(offset), &mut buf[..width]);
            }
            4 => dev.irq.notify(offset),
            _ => dev.irq.set_intx(op[1] & 1 != 0),
        }
    }
    pci::reset_device(&mut dev);
});
