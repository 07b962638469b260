//! PIIX3 PCI-to-ISA bridge, function 0 of device 00:01 (8086:7000).
//!
//! What guests need from it: the identity (SeaBIOS matches 8086:7000 to run
//! `piix_isa_bridge_setup`, its $PIR table names 00:01.0 as the interrupt router,
//! and Linux's PIRQ router code recognises it), the multi-function bit (so the bus
//! scan looks at 00:01.1..7), and the PIRQ route registers 0x60..0x63, which live
//! only in the [`PirqRegs`] it shares with the INTx router (`pirq_registers`) so that
//! a rewrite re-routes live lines; config reads and writes of those bytes go there,
//! and the `PciConfig` bytes behind them stay unused.
//!
//! The other chipset registers (0x40..0xFF) are plain storage with QEMU's reset
//! values: nothing the firmware or Linux writes there has an effect on KVM (the
//! ELCR, PIC and PIT are in the kernel). The reset control register at port 0xCF9 is
//! handled by `PciRoot`, which owns the 0xCF8 port range.

use std::sync::Arc;

use super::config::{COMMAND, STATUS};
use super::intx::{PirqRegs, NUM_PIRQS};
use super::{PciConfig, PciDevice};

pub const VENDOR_ID: u16 = 0x8086;
pub const DEVICE_ID: u16 = 0x7000;
pub const CLASS: u32 = 0x060100;
/// Where the VMM places it: 00:01.0 (the SeaBIOS $PIR table assumes devfn 0x08).
pub const SLOT: u8 = 1;
pub const FUNCTION: u8 = 0;
/// Config offset of PIRQRCA; PIRQRCB..D follow.
pub const PIRQ_ROUTE: usize = 0x60;

pub struct Piix3 {
    config: PciConfig,
    pirq: Arc<PirqRegs>,
}

impl Piix3 {
    /// A PIIX3 with fresh PIRQ registers; hand `pirq_registers()` to
    /// `PciIntxRouter::new`.
    pub fn new() -> Self {
        let pirq = PirqRegs::new();
        let mut c = PciConfig::new(VENDOR_ID, DEVICE_ID, CLASS, 0);
        c.set_subsystem(0x1af4, 0x1100);
        c.set_header_type(0x80);
        // Power-on values (QEMU piix_reset): I/O, memory and bus master enabled,
        // DEVSEL medium timing.
        c.set_u16(COMMAND, 0x0007);
        c.set_u16(STATUS, 0x0200);
        c.set_writable(0x40, 0xc0);
        for (off, v) in [
            (0x4c, 0x4d),
            (0x4e, 0x03),
            (0x69, 0x02),
            (0x70, 0x80),
            (0x76, 0x0c),
            (0x77, 0x0c),
            (0x78, 0x02),
            (0xa0, 0x08),
            (0xa8, 0x0f),
        ] {
            c.set_u8(off, v);
        }
        c.seal();
        Piix3 { config: c, pirq }
    }

    /// The PIRQ route registers, shared with the INTx router.
    pub fn pirq_registers(&self) -> Arc<PirqRegs> {
        self.pirq.clone()
    }
}

impl Default for Piix3 {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for Piix3 {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn config_read(&mut self, offset: usize) -> u32 {
        let offset = offset & 0xfc;
        if offset == PIRQ_ROUTE {
            // The shared registers are the only copy.
            let r = |i| self.pirq.read(i);
            return u32::from_le_bytes([r(0), r(1), r(2), r(3)]);
        }
        self.config.read_dword(offset)
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let o = offset.saturating_add(i);
            match o.checked_sub(PIRQ_ROUTE) {
                Some(idx) if idx < NUM_PIRQS => self.pirq.write(idx, b),
                _ => self.config.write(o, &[b]),
            }
        }
    }

    // No BARs: the default bar_read/bar_write are never reached.

    fn reset(&mut self) {
        self.pirq.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::RecordingChip;
    use crate::pci::intx::PciIntxRouter;
    use crate::pci::reset_device;

    #[test]
    fn identity() {
        let mut p = Piix3::new();
        assert_eq!(p.config_read(0x00), 0x7000_8086);
        assert_eq!(p.config_read(0x04), 0x0200_0007);
        assert_eq!(p.config_read(0x08), 0x0601_0000);
        assert_eq!((p.config_read(0x0c) >> 16) & 0xff, 0x80);
        assert_eq!(p.config_read(0x2c), 0x1100_1af4);
        assert_eq!(p.config_read(0x60), 0x8080_8080);
        assert_eq!(p.config_read(0x4c), 0x0003_004d);
    }

    #[test]
    fn seabios_pirq_setup_reaches_router() {
        let chip = Arc::new(RecordingChip::default());
        let mut p = Piix3::new();
        let regs = p.pirq_registers();
        let router = PciIntxRouter::new(chip.clone(), regs.clone());
        // piix_isa_bridge_setup: pci_config_writeb(bdf, 0x60 + i, irq).
        for (i, irq) in [10u8, 10, 11, 11].into_iter().enumerate() {
            p.config_write(0x60 + i, &[irq]);
        }
        assert_eq!(p.config_read(0x60), 0x0b0b_0a0a);
        assert_eq!(regs.read(2), 11);
        assert_eq!(p.config_read(0x60) >> 16 & 0xff, 11);
        let line = router.line(3, 1); // PIRQC
        line.set_level(true);
        assert_eq!(*chip.events.lock().unwrap(), vec![(11, true)]);
        // A dword write spanning PIRQA..D (Linux/ACPI style) re-routes live.
        p.config_write(0x60, &0x8080_0a0au32.to_le_bytes());
        assert_eq!(regs.read(2), 0x80);
        assert_eq!(*chip.events.lock().unwrap(), vec![(11, true), (11, false)]);
        // Reset restores power-on values everywhere.
        p.config_write(0x4c, &[0x12]);
        reset_device(&mut p);
        assert_eq!(p.config_read(0x60), 0x8080_8080);
        assert_eq!(p.config_read(0x4c), 0x0003_004d);
        assert_eq!(regs.read(0), 0x80);
    }

    #[test]
    fn read_only_identity_and_storage() {
        let mut p = Piix3::new();
        p.config_write(0x00, &[0xff; 4]);
        p.config_write(0x0e, &[0x00]);
        assert_eq!(p.config_read(0x00), 0x7000_8086);
        assert_eq!((p.config_read(0x0c) >> 16) & 0xff, 0x80);
        p.config_write(0x5f, &[0xaa, 0x0b]); // crosses into PIRQA
        assert_eq!(p.config_read(0x5c) >> 24, 0xaa);
        assert_eq!(p.config_read(0x60) & 0xff, 0x0b);
        p.config_write(0xff, &[1, 2, 3]); // runs off the end: ignored, no panic
        assert_eq!(p.config_read(0xfc) >> 24, 1);
    }
}
