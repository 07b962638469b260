//! Direct Linux boot: load the kernel, and do the PCI interrupt setup that
//! SeaBIOS would otherwise have done.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use devices::pci::intx::{swizzle, PirqRegs};
use firmware::mptable::PciIrqRoute;
use vm_memory::GuestMemoryMmap;

use crate::error::{Error, Result};
use crate::machine::ResetHook;

/// The ISA IRQs SeaBIOS routes PIRQA..D to (pciinit.c); QEMU's ACPI tables assume
/// the same, so a guest sees one layout whichever way it booted.
const PIRQ_IRQS: [u8; 4] = [10, 10, 11, 11];

/// Route PIRQA..D as SeaBIOS does and describe every INTx pin in use, so that the
/// MP table tells Linux which IOAPIC input each PCI device interrupts on. Without
/// firmware nothing else programs the PIIX3 routing, and the disk would have no
/// working interrupt.
pub fn route_intx(pirq: &PirqRegs, pins: &[(u8, u8)]) -> Vec<PciIrqRoute> {
    for (i, irq) in PIRQ_IRQS.iter().enumerate() {
        pirq.write(i, *irq);
    }
    pins.iter()
        .filter_map(|&(slot, pin)| {
            let ioapic_pin = pirq.routed_irq(swizzle(slot, pin)?)?;
            Some(PciIrqRoute {
                slot,
                pin,
                ioapic_pin,
            })
        })
        .collect()
}

/// A kernel for direct boot; reloaded on reset because the running kernel
/// overwrites its own image and boot structures (and a reset clears PIRQ routing).
pub struct LinuxImage {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: u8,
    pub layout: firmware::MemoryLayout,
    pub pirq: Arc<PirqRegs>,
    /// (slot, INTx pin) of every PCI device that interrupts through INTx.
    pub intx_pins: Vec<(u8, u8)>,
    /// ACPI tables to link in place and point boot_params at; None with --no-acpi.
    pub acpi: Option<Arc<firmware::acpi::AcpiTables>>,
}

impl LinuxImage {
    pub fn load(&self, mem: &GuestMemoryMmap<()>) -> Result<firmware::LinuxBoot> {
        let open = |p: &Path| {
            File::open(p).map_err(|err| Error::Io {
                what: format!("open {}", p.display()),
                err,
            })
        };
        let mut kernel = open(&self.kernel)?;
        let mut initrd = self.initrd.as_deref().map(open).transpose()?;
        let routes = route_intx(&self.pirq, &self.intx_pins);
        let rsdp = match &self.acpi {
            Some(tables) => Some(tables.write_for_direct_boot(mem)?),
            None => None,
        };
        Ok(firmware::linux::load_linux_with_pci(
            mem,
            &self.layout,
            &mut kernel,
            initrd.as_mut(),
            &self.cmdline,
            self.cpus,
            &routes,
            rsdp,
        )?)
    }
}

impl ResetHook for LinuxImage {
    fn on_reset(&mut self, mem: &GuestMemoryMmap<()>) -> Result<()> {
        self.load(mem).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_and_display_pins_follow_seabios_routing() {
        let pirq = devices::pci::Piix3::new().pirq_registers();
        assert_eq!(pirq.routed_irq(0), None, "PIRQs start disabled");
        // Slot 3 INTA: (1 - 1 + 3 - 1) & 3 = PIRQC -> IRQ 11; slot 2 INTA: PIRQB -> 10.
        let routes = route_intx(&pirq, &[(3, 1), (2, 1)]);
        assert_eq!(
            routes,
            vec![
                PciIrqRoute {
                    slot: 3,
                    pin: 1,
                    ioapic_pin: 11
                },
                PciIrqRoute {
                    slot: 2,
                    pin: 1,
                    ioapic_pin: 10
                },
            ]
        );
        assert_eq!(
            (0..4).map(|i| pirq.routed_irq(i)).collect::<Vec<_>>(),
            PIRQ_IRQS.map(Some).to_vec()
        );
    }
}
