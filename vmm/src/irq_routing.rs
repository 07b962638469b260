//! KVM's GSI routing for the PC's legacy interrupts, the way QEMU sets it up
//! for `-machine pc`: ISA IRQ 0 (the in-kernel PIT) reaches IOAPIC pin 2, which
//! is what the MADT's interrupt source override and the MP tables (SeaBIOS's,
//! told by fw_cfg `etc/irq0-override`, and ours for direct boot) tell the guest.
//! KVM's default table instead routes GSI n to IOAPIC pin n, PIT included.
//!
//! `KVM_SET_GSI_ROUTING` replaces the whole table: anything that adds routes
//! later (MSI, irqfd) must start from [`legacy_routes`].

use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP,
};
use kvm_ioctls::VmFd;

use crate::error::{kvm, Error, Result};

/// Inputs of the in-kernel IOAPIC.
pub const IOAPIC_PINS: u32 = 24;
/// The IOAPIC pin of ISA IRQ 0; the MADT and MP tables say the same.
pub const IRQ0_IOAPIC_PIN: u32 = 2;
/// The PIC cascade input: no device raises it, so GSI 2 has no route.
const CASCADE_IRQ: u32 = 2;

fn irqchip(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    e
}

/// GSI 0-15 to the two 8259s (pin = IRQ) and GSI 0-23 to the IOAPIC, except
/// that GSI 0 goes to IOAPIC pin 2 and GSI 2 goes nowhere.
pub fn legacy_routes() -> Vec<kvm_irq_routing_entry> {
    let mut routes = Vec::new();
    for gsi in (0..16).filter(|&g| g != CASCADE_IRQ) {
        let (chip, pin) = if gsi < 8 {
            (KVM_IRQCHIP_PIC_MASTER, gsi)
        } else {
            (KVM_IRQCHIP_PIC_SLAVE, gsi - 8)
        };
        routes.push(irqchip(gsi, chip, pin));
    }
    for gsi in (0..IOAPIC_PINS).filter(|&g| g != CASCADE_IRQ) {
        let pin = if gsi == 0 { IRQ0_IOAPIC_PIN } else { gsi };
        routes.push(irqchip(gsi, KVM_IRQCHIP_IOAPIC, pin));
    }
    routes
}

/// Install [`legacy_routes`] (after `KVM_CREATE_IRQCHIP`).
pub fn install(vm: &VmFd) -> Result<()> {
    let routes = legacy_routes();
    let mut table =
        KvmIrqRouting::new(routes.len()).map_err(|e| Error::Memory(format!("{e:?}")))?;
    table.as_mut_slice().copy_from_slice(&routes);
    vm.set_gsi_routing(&table).map_err(kvm("set_gsi_routing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(gsi: u32) -> Vec<(u32, u32)> {
        legacy_routes()
            .iter()
            .filter(|e| e.gsi == gsi)
            // SAFETY: every entry above is of the irqchip kind.
            .map(|e| unsafe { (e.u.irqchip.irqchip, e.u.irqchip.pin) })
            .collect()
    }

    #[test]
    fn pit_reaches_ioapic_pin_2_and_the_pic() {
        assert_eq!(
            targets(0),
            [(KVM_IRQCHIP_PIC_MASTER, 0), (KVM_IRQCHIP_IOAPIC, 2)]
        );
        assert!(targets(2).is_empty());
        assert_eq!(
            targets(9),
            [(KVM_IRQCHIP_PIC_SLAVE, 1), (KVM_IRQCHIP_IOAPIC, 9)]
        );
        assert_eq!(targets(23), [(KVM_IRQCHIP_IOAPIC, 23)]);
        assert_eq!(legacy_routes().len(), 15 + 23);
    }
}
