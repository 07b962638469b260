//! e820 memory maps: the one SeaBIOS reads from fw_cfg (`etc/e820`) and the one a
//! directly booted Linux finds in its zero page.

use crate::layout::{
    MemoryLayout, HIGH_RAM_START, IDENTITY_MAP_ADDR, KVM_PRIVATE_SIZE, VGA_WINDOW_START,
};

/// Usable RAM.
pub const E820_RAM: u32 = 1;
/// Reserved: neither RAM the OS may use nor free address space for BARs.
pub const E820_RESERVED: u32 = 2;

/// Start of the top KiB of conventional memory, the EBDA a BIOS would own.
/// Direct boot leaves it empty but reserved, as Linux expects of a PC.
pub const EBDA_START: u64 = 0x9_FC00;
// The EBDA reservation must begin below the VGA hole it extends over.
const _: () = assert!(EBDA_START < VGA_WINDOW_START);

/// Start of extended memory.
pub const HIGH_MEMORY_START: u64 = 0x10_0000;

/// Bytes per entry in the packed fw_cfg format.
pub const ENTRY_SIZE: usize = 20;

/// One e820 range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

impl E820Entry {
    pub const fn new(addr: u64, size: u64, kind: u32) -> E820Entry {
        E820Entry { addr, size, kind }
    }

    /// The packed little-endian {u64 addr, u64 len, u32 type} form.
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.kind.to_le_bytes());
        b
    }
}

/// The KVM identity-map page and TSS pages live in the PCI hole; reserve them so
/// nobody places a BAR on top of them.
fn kvm_private() -> E820Entry {
    E820Entry::new(IDENTITY_MAP_ADDR, KVM_PRIVATE_SIZE, E820_RESERVED)
}

fn high_ram(layout: &MemoryLayout) -> Option<E820Entry> {
    (layout.above_4g() > 0).then(|| E820Entry::new(HIGH_RAM_START, layout.above_4g(), E820_RAM))
}

/// What QEMU puts in `etc/e820` for SeaBIOS, in QEMU's order: the KVM reservation
/// (added when the accelerator starts, before the board), low RAM as a single
/// [0, below_4g) entry (SeaBIOS carves out the EBDA, VGA window and its own ROM
/// area itself), then RAM above 4 GiB.
pub fn firmware_table(layout: &MemoryLayout) -> Vec<E820Entry> {
    let mut t = vec![
        kvm_private(),
        E820Entry::new(0, layout.below_4g(), E820_RAM),
    ];
    t.extend(high_ram(layout));
    t
}

/// The map for direct Linux boot, sorted by address. With no BIOS around, this is
/// where the legacy holes have to be spelled out: the EBDA (which holds nothing
/// but keeps Linux's expectations) through the VGA window, option ROMs and BIOS
/// area are reserved up to 1 MiB.
pub fn linux_table(layout: &MemoryLayout) -> Vec<E820Entry> {
    let mut t = vec![
        E820Entry::new(0, EBDA_START, E820_RAM),
        E820Entry::new(EBDA_START, HIGH_MEMORY_START - EBDA_START, E820_RESERVED),
        E820Entry::new(
            HIGH_MEMORY_START,
            layout.below_4g() - HIGH_MEMORY_START,
            E820_RAM,
        ),
        kvm_private(),
    ];
    t.extend(high_ram(layout));
    t
}

/// Encode entries in the packed format of fw_cfg's `etc/e820`.
pub fn encode(entries: &[E820Entry]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn ram(t: &[E820Entry]) -> Vec<(u64, u64)> {
        t.iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| (e.addr, e.size))
            .collect()
    }

    #[test]
    fn firmware_table_mirrors_qemu() {
        let l = MemoryLayout::new(256 * MIB).unwrap();
        assert_eq!(
            firmware_table(&l),
            vec![
                E820Entry::new(0xFEFF_C000, 0x4000, E820_RESERVED),
                E820Entry::new(0, 256 * MIB, E820_RAM),
            ]
        );
        let l = MemoryLayout::new(GIB).unwrap();
        assert_eq!(ram(&firmware_table(&l)), vec![(0, GIB)]);
        let l = MemoryLayout::new(3 * GIB).unwrap();
        assert_eq!(ram(&firmware_table(&l)), vec![(0, 3 * GIB)]);
        let l = MemoryLayout::new(4 * GIB).unwrap();
        assert_eq!(ram(&firmware_table(&l)), vec![(0, 3 * GIB), (4 * GIB, GIB)]);
        let l = MemoryLayout::new(8 * GIB).unwrap();
        assert_eq!(
            ram(&firmware_table(&l)),
            vec![(0, 3 * GIB), (4 * GIB, 5 * GIB)]
        );
    }

    #[test]
    fn linux_table_at_256m() {
        let l = MemoryLayout::new(256 * MIB).unwrap();
        assert_eq!(
            linux_table(&l),
            vec![
                E820Entry::new(0, 0x9FC00, E820_RAM),
                E820Entry::new(0x9FC00, 0x100000 - 0x9FC00, E820_RESERVED),
                E820Entry::new(0x100000, 256 * MIB - 0x100000, E820_RAM),
                E820Entry::new(0xFEFF_C000, 0x4000, E820_RESERVED),
            ]
        );
    }

    #[test]
    fn linux_table_sorted_and_disjoint_at_all_sizes() {
        for size in [256 * MIB, GIB, 3 * GIB, 4 * GIB, 8 * GIB] {
            let l = MemoryLayout::new(size).unwrap();
            let t = linux_table(&l);
            for w in t.windows(2) {
                assert!(w[0].addr + w[0].size <= w[1].addr, "{t:?}");
            }
            let ram_total: u64 = ram(&t).iter().map(|r| r.1).sum();
            // Only the 0x9FC00-0x100000 legacy area is withheld from the guest's RAM.
            assert_eq!(ram_total, size - (HIGH_MEMORY_START - EBDA_START));
            assert_eq!(t.iter().any(|e| e.addr == 4 * GIB), size > 3 * GIB);
        }
        let l = MemoryLayout::new(8 * GIB).unwrap();
        assert_eq!(
            *linux_table(&l).last().unwrap(),
            E820Entry::new(4 * GIB, 5 * GIB, E820_RAM)
        );
    }

    #[test]
    fn encoding_is_packed_little_endian() {
        let b = encode(&[
            E820Entry::new(0x1122_3344_5566_7788, 0x10, E820_RAM),
            E820Entry::new(0, 1, E820_RESERVED),
        ]);
        assert_eq!(b.len(), 40);
        assert_eq!(&b[0..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[8..16], &0x10u64.to_le_bytes());
        assert_eq!(&b[16..20], &[1, 0, 0, 0]);
        assert_eq!(&b[36..40], &[2, 0, 0, 0]);
    }
}
