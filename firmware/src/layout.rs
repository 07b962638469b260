//! The guest-physical memory map of an i440FX PC, as QEMU lays it out.
//!
//! RAM starts at 0 and runs up to at most 3 GiB; the 1 GiB below 4 GiB is the PCI
//! hole (BARs, IOAPIC, LAPIC, the KVM identity map/TSS and the BIOS flash). RAM that
//! does not fit below the hole continues at 4 GiB. The legacy VGA window
//! 0xA0000-0xBFFFF is left out of RAM so that a display device can claim it as MMIO.

use crate::{Error, Result};

/// Where the legacy VGA window starts (end of conventional memory).
pub const VGA_WINDOW_START: u64 = 0xA_0000;
/// Where the VGA window ends and the option-ROM/BIOS shadow RAM begins.
pub const VGA_WINDOW_END: u64 = 0xC_0000;
/// RAM below 4 GiB is capped here; everything above up to 4 GiB is the PCI hole.
/// QEMU moves the split to 3 GiB whenever it has to split (gigabyte alignment);
/// spicebox always caps at 3 GiB so that SeaBIOS gets a 1 GiB PCI window.
pub const LOW_RAM_MAX: u64 = 0xC000_0000;
/// First address above the 32-bit space; high RAM starts here.
pub const HIGH_RAM_START: u64 = 1 << 32;
/// Smallest guest SeaBIOS and Linux are comfortable with.
pub const MIN_RAM: u64 = 16 << 20;
/// Largest guest we accept; more is almost certainly a typo.
pub const MAX_RAM: u64 = 1 << 40;

/// `KVM_SET_IDENTITY_MAP_ADDR`: one page KVM uses for real-mode emulation on
/// Intel without unrestricted guest. QEMU's value: 16 KiB below 0xFF000000, which
/// leaves room for BIOS images of up to 16 MiB.
pub const IDENTITY_MAP_ADDR: u64 = 0xFEFF_C000;
/// `KVM_SET_TSS_ADDR`: three pages right after the identity map page.
pub const TSS_ADDR: u64 = 0xFEFF_D000;
/// Identity map page plus the three TSS pages; reserved in every e820 table.
pub const KVM_PRIVATE_SIZE: u64 = 0x4000;
// The TSS pages follow the identity map page, and the reservation ends with them.
const _: () = assert!(TSS_ADDR == IDENTITY_MAP_ADDR + 0x1000);
const _: () = assert!(IDENTITY_MAP_ADDR + KVM_PRIVATE_SIZE == TSS_ADDR + 3 * 0x1000);

/// The in-kernel IOAPIC's MMIO base.
pub const IOAPIC_ADDR: u64 = 0xFEC0_0000;
/// The local APICs' MMIO base.
pub const LAPIC_ADDR: u64 = 0xFEE0_0000;

/// Size of the 64-bit PCI window the ACPI tables offer above RAM (QEMU's q35
/// default; SeaBIOS only maps BARs there when the 32-bit hole is full).
pub const PCI_HOLE64_SIZE: u64 = 32 << 30;

/// How the guest's RAM is split around the PCI hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLayout {
    below_4g: u64,
    above_4g: u64,
}

impl MemoryLayout {
    /// Split `ram_bytes` of guest RAM into the part below the PCI hole and the rest.
    pub fn new(ram_bytes: u64) -> Result<MemoryLayout> {
        if ram_bytes < MIN_RAM {
            return Err(Error::RamTooSmall(ram_bytes));
        }
        if ram_bytes > MAX_RAM {
            return Err(Error::RamTooLarge(ram_bytes));
        }
        if !ram_bytes.is_multiple_of(4096) {
            return Err(Error::RamUnaligned(ram_bytes));
        }
        let below_4g = ram_bytes.min(LOW_RAM_MAX);
        Ok(MemoryLayout {
            below_4g,
            above_4g: ram_bytes - below_4g,
        })
    }

    /// RAM bytes below 4 GiB; also the address where low RAM ends.
    pub fn below_4g(&self) -> u64 {
        self.below_4g
    }

    /// RAM bytes mapped from 4 GiB upward.
    pub fn above_4g(&self) -> u64 {
        self.above_4g
    }

    /// Total guest RAM.
    pub fn ram_size(&self) -> u64 {
        self.below_4g + self.above_4g
    }

    /// The RAM regions the VMM maps, as (guest address, size) pairs, ascending.
    /// The VGA window is a hole; 0xC0000-0xFFFFF is ordinary RAM that holds the
    /// option ROMs and the BIOS shadow copy.
    pub fn ram_regions(&self) -> Vec<(u64, u64)> {
        let mut regions = vec![
            (0, VGA_WINDOW_START),
            (VGA_WINDOW_END, self.below_4g - VGA_WINDOW_END),
        ];
        if self.above_4g > 0 {
            regions.push((HIGH_RAM_START, self.above_4g));
        }
        regions
    }

    /// The 32-bit PCI memory window, first and last byte: from the end of low
    /// RAM up to the IOAPIC. SeaBIOS places BARs inside it (from 2 or 3 GiB up
    /// to 0xFEC00000), and an OS that assigns BARs itself uses all of it.
    pub fn pci_hole32(&self) -> (u64, u64) {
        (self.below_4g, IOAPIC_ADDR - 1)
    }

    /// The 64-bit PCI memory window, first and last byte: from the first
    /// gigabyte boundary above RAM, where SeaBIOS puts 64-bit BARs that do not
    /// fit below 4 GiB.
    pub fn pci_hole64(&self) -> (u64, u64) {
        let start = (HIGH_RAM_START + self.above_4g).next_multiple_of(1 << 30);
        (start, start + PCI_HOLE64_SIZE - 1)
    }

    /// Where a BIOS image of `rom_size` bytes is mapped: it must end at 4 GiB so
    /// that the reset vector 0xFFFFFFF0 lands in its last 16 bytes.
    pub fn bios_rom_addr(rom_size: u64) -> u64 {
        HIGH_RAM_START - rom_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn small_guest_is_all_low() {
        let l = MemoryLayout::new(256 * MIB).unwrap();
        assert_eq!(l.below_4g(), 256 * MIB);
        assert_eq!(l.above_4g(), 0);
        assert_eq!(l.ram_size(), 256 * MIB);
        assert_eq!(
            l.ram_regions(),
            vec![(0, 0xA0000), (0xC0000, 256 * MIB - 0xC0000)]
        );
    }

    #[test]
    fn one_and_three_gib_fit_below_the_hole() {
        let l = MemoryLayout::new(GIB).unwrap();
        assert_eq!((l.below_4g(), l.above_4g()), (GIB, 0));
        let l = MemoryLayout::new(3 * GIB).unwrap();
        assert_eq!((l.below_4g(), l.above_4g()), (3 * GIB, 0));
        assert_eq!(l.ram_regions().len(), 2);
    }

    #[test]
    fn larger_guests_continue_at_4g() {
        let l = MemoryLayout::new(4 * GIB).unwrap();
        assert_eq!((l.below_4g(), l.above_4g()), (3 * GIB, GIB));
        assert_eq!(
            l.ram_regions(),
            vec![(0, 0xA0000), (0xC0000, 3 * GIB - 0xC0000), (4 * GIB, GIB)]
        );
        let l = MemoryLayout::new(8 * GIB).unwrap();
        assert_eq!((l.below_4g(), l.above_4g()), (3 * GIB, 5 * GIB));
        assert_eq!(l.ram_regions()[2], (4 * GIB, 5 * GIB));
        assert_eq!(l.ram_size(), 8 * GIB);
    }

    #[test]
    fn regions_add_up_to_ram_minus_vga_window() {
        for size in [16 * MIB, 256 * MIB, 3 * GIB, 4 * GIB, 8 * GIB] {
            let l = MemoryLayout::new(size).unwrap();
            let total: u64 = l.ram_regions().iter().map(|r| r.1).sum();
            assert_eq!(total, size - (VGA_WINDOW_END - VGA_WINDOW_START));
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(
            MemoryLayout::new(8 * MIB),
            Err(Error::RamTooSmall(_))
        ));
        assert!(matches!(
            MemoryLayout::new(MAX_RAM + 4096),
            Err(Error::RamTooLarge(_))
        ));
        assert!(matches!(
            MemoryLayout::new(64 * MIB + 1),
            Err(Error::RamUnaligned(_))
        ));
        assert!(MemoryLayout::new(MIN_RAM).is_ok());
        assert!(MemoryLayout::new(MAX_RAM).is_ok());
    }

    #[test]
    fn pci_windows_sit_beside_ram() {
        let l = MemoryLayout::new(GIB).unwrap();
        assert_eq!(l.pci_hole32(), (GIB, 0xFEBF_FFFF));
        assert_eq!(l.pci_hole64(), (4 * GIB, 4 * GIB + PCI_HOLE64_SIZE - 1));
        let l = MemoryLayout::new(5 * GIB + 4096).unwrap();
        assert_eq!(l.pci_hole32().0, 3 * GIB);
        assert_eq!(l.pci_hole64().0, 7 * GIB);
    }

    #[test]
    fn fixed_addresses_match_qemu() {
        assert_eq!(MemoryLayout::bios_rom_addr(256 << 10), 0xFFFC_0000);
        assert_eq!(MemoryLayout::bios_rom_addr(128 << 10), 0xFFFE_0000);
        // A 16 MiB BIOS still ends below nothing KVM owns.
        assert!(IDENTITY_MAP_ADDR + KVM_PRIVATE_SIZE <= MemoryLayout::bios_rom_addr(16 << 20));
    }
}
