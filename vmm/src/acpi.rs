//! ACPI for the machine `builder.rs` puts together: the description the
//! tables are built from, the SCI, and the power button QMP presses. The
//! tables themselves come from `firmware::acpi`.

use std::sync::{Arc, Mutex};

use devices::interrupt::GsiLine;
use devices::legacy::{acpi_pm, cmos, i8042, serial};
use devices::pci::{piix3, root};
use devices::{fw_cfg, IrqChip};
use firmware::acpi::{AcpiConfig, AcpiTables, IsaDevice, PciInterrupts, PmBlock, ResetRegister};

use crate::error::Result;
use crate::irq_routing::IRQ0_IOAPIC_PIN;

/// The ISA IRQs the PIRQ links may be routed to (QEMU's `_PRS` for PIIX3);
/// the MADT marks them level-triggered.
const PCI_LINK_IRQS: [u8; 3] = [5, 10, 11];

/// What is true of every spicebox machine; the varying parts are arguments.
pub fn machine_config(cpus: u8, layout: firmware::MemoryLayout, vga: bool) -> AcpiConfig {
    let pm = acpi_pm::BASE as u16;
    AcpiConfig {
        cpus,
        layout,
        pm: PmBlock {
            event_port: pm,
            control_port: pm + acpi_pm::PM1_CNT_OFFSET as u16,
            timer_port: Some(pm + acpi_pm::PM_TMR_OFFSET as u16),
            sci_irq: acpi_pm::SCI_IRQ,
            s5_sleep_type: acpi_pm::SLP_TYP_S5 as u8,
        },
        reset: Some(ResetRegister {
            port: root::RESET_PORT,
            value: root::RESET_VALUE,
        }),
        pci: PciInterrupts {
            isa_bridge_slot: piix3::SLOT,
            pirq_route_offset: piix3::PIRQ_ROUTE as u8,
            link_irqs: PCI_LINK_IRQS.to_vec(),
        },
        isa: vec![
            IsaDevice::Rtc {
                port: cmos::BASE as u16,
                len: cmos::LEN as u8,
                irq: cmos::IRQ,
            },
            IsaDevice::Ps2Keyboard {
                data_port: i8042::BASE as u16,
                command_port: i8042::BASE as u16 + 4,
                irq: i8042::KEYBOARD_IRQ,
            },
            IsaDevice::Ps2Mouse {
                irq: i8042::MOUSE_IRQ,
            },
            IsaDevice::Serial {
                uid: 1,
                port: serial::COM1_BASE as u16,
                irq: serial::COM1_IRQ,
            },
            IsaDevice::FwCfg {
                port: fw_cfg::PORT_BASE as u16,
                len: fw_cfg::PORT_LEN as u8,
            },
        ],
        irq0_gsi: IRQ0_IOAPIC_PIN,
        vga,
        rtc_century: Some(cmos::CENTURY as u8),
    }
}

/// ACPI of a running machine: `None` parts with `--no-acpi`.
pub struct Acpi {
    pub tables: Option<Arc<AcpiTables>>,
    pub power_button: Option<Arc<dyn crate::qmp::PowerButton>>,
}

impl Acpi {
    /// Build the tables (unless `enabled` is false) and wire the PM block's
    /// SCI to its ISA IRQ, a level-triggered line.
    pub fn new(
        enabled: bool,
        config: &AcpiConfig,
        pm: &Arc<Mutex<acpi_pm::AcpiPm>>,
        chip: &Arc<dyn IrqChip>,
    ) -> Result<Acpi> {
        if !enabled {
            return Ok(Acpi {
                tables: None,
                power_button: None,
            });
        }
        let tables = AcpiTables::build(config)?;
        pm.lock().unwrap().connect_sci(Arc::new(GsiLine::new(
            chip.clone(),
            config.pm.sci_irq.into(),
        )));
        Ok(Acpi {
            tables: Some(Arc::new(tables)),
            power_button: Some(Arc::new(AcpiPowerButton(pm.clone()))),
        })
    }

    /// The fw_cfg files SeaBIOS loads the tables from.
    pub fn fw_cfg_files(&self) -> Vec<(String, Vec<u8>)> {
        self.tables
            .as_ref()
            .map(|t| t.fw_cfg_files())
            .unwrap_or_default()
    }
}

/// QMP's `system_powerdown`: the fixed-feature power button of the PM block.
pub struct AcpiPowerButton(pub Arc<Mutex<acpi_pm::AcpiPm>>);

impl crate::qmp::PowerButton for AcpiPowerButton {
    fn press(&self) {
        self.0.lock().unwrap().power_button();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_builds_tables() {
        let layout = firmware::MemoryLayout::new(1 << 30).unwrap();
        for (cpus, vga) in [(1, true), (64, false)] {
            let cfg = machine_config(cpus, layout, vga);
            assert_eq!(cfg.pm.control_port, 0x604);
            assert_eq!(
                cfg.reset,
                Some(ResetRegister {
                    port: 0xcf9,
                    value: 6
                })
            );
            let t = AcpiTables::build(&cfg).unwrap();
            t.link(
                firmware::acpi::DIRECT_BOOT_BASE,
                firmware::acpi::DIRECT_BOOT_END,
            )
            .unwrap();
        }
    }
}
