//! i440FX host bridge (82441FX PMC), device 00:00.0.
//!
//! Its identity is what firmware and Linux key on: SeaBIOS takes 8086:1237 with
//! subsystem 1af4:1100 as "QEMU i440fx" (PIIX-style INTx swizzle, PCI window layout,
//! shadow-RAM handling), and Linux accepts configuration mechanism #1 once it sees a
//! host bridge on bus 0.
//!
//! PAM0..6 (0x59..0x5F) and SMRAM (0x72) are storage only. On real hardware PAM
//! decides whether 0xC0000..0xFFFFF reads and writes go to DRAM or to the PCI/flash
//! side. The VMM maps that whole range as ordinary writable RAM preloaded with the
//! top of the BIOS image, so every PAM setting SeaBIOS uses ends up behaving the
//! same: `make_bios_writable` copies the BIOS onto itself (harmless) and the
//! read-only lock set by `make_bios_readonly` simply is not enforced, which neither
//! option ROMs, GRUB nor Linux notice. Storing the bytes keeps SeaBIOS's
//! read-modify-write of the PAM dwords and its "is RAM already present" check
//! consistent. SMRAM is inert because no SMM is exposed (no PIIX4 PM function).

use super::{PciConfig, PciDevice};

pub const VENDOR_ID: u16 = 0x8086;
pub const DEVICE_ID: u16 = 0x1237;
pub const CLASS: u32 = 0x060000;
pub const REVISION: u8 = 0x02;
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
pub const SUBSYSTEM_ID: u16 = 0x1100;
/// Where the VMM places it: 00:00.0.
pub const SLOT: u8 = 0;
pub const FUNCTION: u8 = 0;
/// PAM0; PAM1..PAM6 follow.
pub const PAM0: usize = 0x59;
pub const PAM_COUNT: usize = 7;
pub const SMRAM: usize = 0x72;
/// SMRAM power-on value: C_BASE_SEG = 010b (SMM space at 0xA0000), as QEMU.
const SMRAM_RESET: u8 = 0x02;

pub struct I440fx {
    config: PciConfig,
}

impl I440fx {
    pub fn new() -> Self {
        let mut c = PciConfig::new(VENDOR_ID, DEVICE_ID, CLASS, REVISION);
        c.set_subsystem(SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID);
        c.set_writable(PAM0, PAM_COUNT);
        c.set_writable(SMRAM, 1);
        c.set_u8(SMRAM, SMRAM_RESET);
        c.seal();
        I440fx { config: c }
    }

    /// PAM register `index` (0..=6) as last written by the guest.
    pub fn pam(&self, index: usize) -> Option<u8> {
        (index < PAM_COUNT).then(|| self.config.u8_at(PAM0 + index))
    }

    pub fn smram(&self) -> u8 {
        self.config.u8_at(SMRAM)
    }
}

impl Default for I440fx {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for I440fx {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    // No BARs and no expansion ROM: the default bar_read/bar_write are never
    // reached, and everything to reset lives in config space.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::reset_device;

    /// Little helpers mirroring SeaBIOS `pci_config_readl/writel` on one device.
    fn readl(d: &mut I440fx, off: usize) -> u32 {
        d.config_read(off & 0xfc)
    }
    fn writel(d: &mut I440fx, off: usize, v: u32) {
        d.config_write(off & 0xfc, &v.to_le_bytes());
    }
    fn readb(d: &mut I440fx, off: usize) -> u8 {
        (readl(d, off) >> (8 * (off & 3))) as u8
    }

    #[test]
    fn identity() {
        let mut d = I440fx::new();
        assert_eq!(readl(&mut d, 0x00), 0x1237_8086);
        assert_eq!(readl(&mut d, 0x08), 0x0600_0002);
        assert_eq!(readl(&mut d, 0x0c) & 0x00ff_0000, 0); // header type 0
        assert_eq!(readl(&mut d, 0x2c), 0x1100_1af4);
        // No BARs: the sizing probe reads back 0.
        for bar in 0..6 {
            writel(&mut d, 0x10 + bar * 4, 0xffff_ffff);
            assert_eq!(readl(&mut d, 0x10 + bar * 4), 0);
        }
        writel(&mut d, 0x30, 0xffff_ffff);
        assert_eq!(readl(&mut d, 0x30), 0);
    }

    #[test]
    fn seabios_shadow_sequence() {
        let mut d = I440fx::new();
        // make_bios_writable_intel: PAM0 bit 4 clear means "copy from flash".
        assert_eq!(readb(&mut d, PAM0), 0);
        let mut pam = [0u8; 8];
        pam[..4].copy_from_slice(&readl(&mut d, 0x58).to_le_bytes());
        pam[4..].copy_from_slice(&readl(&mut d, 0x5c).to_le_bytes());
        for b in &mut pam[2..8] {
            *b = 0x33;
        }
        pam[1] = 0x30;
        writel(
            &mut d,
            0x58,
            u32::from_le_bytes(pam[..4].try_into().unwrap()),
        );
        writel(
            &mut d,
            0x5c,
            u32::from_le_bytes(pam[4..].try_into().unwrap()),
        );
        assert_eq!(readl(&mut d, 0x58), 0x3333_3000);
        assert_eq!(readl(&mut d, 0x5c), 0x3333_3333);
        assert_eq!(d.pam(0), Some(0x30));
        // make_bios_readonly_intel with option ROMs up to 0xCC000: 0x11, 0x31, stop.
        pam[2] = 0x11;
        pam[3] = 0x31;
        pam[1] = 0x10;
        writel(
            &mut d,
            0x58,
            u32::from_le_bytes(pam[..4].try_into().unwrap()),
        );
        assert_eq!(readl(&mut d, 0x58), 0x3111_1000);
        assert_eq!(readb(&mut d, PAM0) & 0x10, 0x10);
        assert_eq!(d.pam(6), Some(0x33));
        assert_eq!(d.pam(7), None);
        // Byte 0x58 is not a PAM register: it stays read-only zero.
        writel(&mut d, 0x58, 0xffff_ffff);
        assert_eq!(readl(&mut d, 0x58), 0xffff_ff00);
        reset_device(&mut d);
        assert_eq!(readl(&mut d, 0x58), 0);
        assert_eq!(readl(&mut d, 0x5c), 0);
    }

    #[test]
    fn smram_stored() {
        let mut d = I440fx::new();
        assert_eq!(readl(&mut d, 0x70), 0x0002_0000);
        d.config_write(SMRAM, &[0x4a]);
        assert_eq!(readb(&mut d, SMRAM), 0x4a);
        assert_eq!(d.smram(), 0x4a);
        // Neighbours stay read-only.
        d.config_write(0x71, &[0xff, 0x0a, 0xff]);
        assert_eq!(readl(&mut d, 0x70), 0x000a_0000);
        reset_device(&mut d);
        assert_eq!(d.smram(), 0x02);
    }
}
