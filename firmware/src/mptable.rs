//! An Intel MultiProcessor Specification 1.4 table for direct Linux boot.
//!
//! Without ACPI (and without a BIOS to build one), this is how Linux learns about
//! the application processors, the IOAPIC at 0xFEC00000 and how ISA and PCI
//! interrupts reach its pins (`CONFIG_X86_MPPARSE`).

use vm_memory::GuestMemoryMmap;

use crate::layout::{IOAPIC_ADDR, LAPIC_ADDR};
use crate::{write_guest, Error, Result};

/// Floating pointer, then the configuration table right behind it. Linux scans
/// 0xF0000-0xFFFFF for "_MP_"; the e820 map reserves this area and there is no
/// BIOS in it. 64 KiB holds the table even for 254 CPUs (about 5 KiB).
pub const MPTABLE_START: u64 = 0xF_0000;
const MPTABLE_LIMIT: u64 = 0x10_0000;

/// Largest vCPU count: APIC IDs 0..cpus-1 plus the IOAPIC's ID (= cpus) must all
/// be below the xAPIC broadcast ID 0xFF.
pub const MAX_CPUS: u8 = 254;

/// ISA IRQs 0-15 come in on the IOAPIC pins of the same number, except the
/// PIT's IRQ 0, which the VMM routes to pin 2 as QEMU does (the ACPI MADT has
/// the matching interrupt source override; SeaBIOS's MP table does the same
/// when fw_cfg `etc/irq0-override` says so). IRQ 2, the cascade, has no pin.
pub const ISA_IRQS: u8 = 16;
/// The IOAPIC pin of ISA IRQ 0.
pub const IRQ0_IOAPIC_PIN: u8 = 2;
const IOAPIC_PINS: u8 = 24;

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const ENTRY_CPU: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTSRC: u8 = 3;
const ENTRY_LINTSRC: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Polarity active high (01), trigger level (11 << 2): how the VMM drives PCI INTx.
const IRQ_FLAGS_PCI: u16 = 0x1 | (0x3 << 2);
/// KVM's local APIC and IOAPIC versions.
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const PCI_BUS: u8 = 0;
const ISA_BUS: u8 = 1;

/// One PCI interrupt pin wired to an IOAPIC pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIrqRoute {
    /// Device number on bus 0 (0-31).
    pub slot: u8,
    /// 1 = INTA … 4 = INTD, as in the Interrupt Pin register.
    pub pin: u8,
    /// IOAPIC input (0-23), the GSI the VMM raises for this pin.
    pub ioapic_pin: u8,
}

/// Table bytes as they will sit at [`MPTABLE_START`]: floating pointer first.
pub fn build(cpus: u8, pci: &[PciIrqRoute]) -> Result<Vec<u8>> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::CpuCount(cpus.into()));
    }
    for r in pci {
        if r.slot > 31 {
            return Err(Error::PciRoute("slot above 31"));
        }
        if !(1..=4).contains(&r.pin) {
            return Err(Error::PciRoute("pin must be 1 (INTA) to 4 (INTD)"));
        }
        if r.ioapic_pin >= IOAPIC_PINS {
            return Err(Error::PciRoute("the IOAPIC has pins 0-23"));
        }
    }
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count = 0u16;
    let mut add = |bytes: &[u8]| {
        entries.extend_from_slice(bytes);
        count += 1;
    };

    for id in 0..cpus {
        let mut e = [0u8; 20];
        e[0] = ENTRY_CPU;
        e[1] = id;
        e[2] = LAPIC_VERSION;
        e[3] = 0x1 | if id == 0 { 0x2 } else { 0 }; // enabled, BSP
                                                    // Family 6 with FPU and APIC features: what SeaBIOS uses when CPUID
                                                    // gives nothing. Linux takes the real values from CPUID anyway.
        e[4..8].copy_from_slice(&0x600u32.to_le_bytes());
        e[8..12].copy_from_slice(&0x201u32.to_le_bytes());
        add(&e);
    }
    add(&bus_entry(PCI_BUS, b"PCI   "));
    add(&bus_entry(ISA_BUS, b"ISA   "));
    let mut io = [ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1, 0, 0, 0, 0];
    io[4..8].copy_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    add(&io);
    // Like SeaBIOS, leave out ISA IRQs whose pins carry PCI interrupts, so each
    // pin has one trigger mode.
    let pci_pins: Vec<u8> = pci.iter().map(|r| r.ioapic_pin).collect();
    for irq in (0..ISA_IRQS).filter(|i| !pci_pins.contains(i) && *i != IRQ0_IOAPIC_PIN) {
        let pin = if irq == 0 { IRQ0_IOAPIC_PIN } else { irq };
        // Flags 0: "conforms to the bus", i.e. edge/active high for ISA.
        add(&int_entry(
            ENTRY_INTSRC,
            INT_TYPE_INT,
            0,
            ISA_BUS,
            irq,
            ioapic_id,
            pin,
        ));
    }
    for r in pci {
        let src = (r.slot << 2) | (r.pin - 1);
        add(&int_entry(
            ENTRY_INTSRC,
            INT_TYPE_INT,
            IRQ_FLAGS_PCI,
            PCI_BUS,
            src,
            ioapic_id,
            r.ioapic_pin,
        ));
    }
    // The 8259 reaches the BSP through LINT0 (virtual wire mode); NMI on LINT1 everywhere.
    add(&int_entry(
        ENTRY_LINTSRC,
        INT_TYPE_EXTINT,
        0,
        ISA_BUS,
        0,
        0,
        0,
    ));
    add(&int_entry(
        ENTRY_LINTSRC,
        INT_TYPE_NMI,
        0,
        ISA_BUS,
        0,
        0xFF,
        1,
    ));

    let config_addr = MPTABLE_START + FLOATING_LEN as u64;
    let mut config = vec![0u8; HEADER_LEN];
    config[0..4].copy_from_slice(b"PCMP");
    let len = (HEADER_LEN + entries.len()) as u16;
    config[4..6].copy_from_slice(&len.to_le_bytes());
    config[6] = 4; // spec revision 1.4
    config[8..16].copy_from_slice(b"SPICEBOX");
    config[16..28].copy_from_slice(b"0.1         ");
    config[34..36].copy_from_slice(&count.to_le_bytes());
    config[36..40].copy_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    config.extend_from_slice(&entries);
    config[7] = checksum_fix(&config);

    let mut table = vec![0u8; FLOATING_LEN];
    table[0..4].copy_from_slice(b"_MP_");
    table[4..8].copy_from_slice(&(config_addr as u32).to_le_bytes());
    table[8] = 1; // length in 16-byte units
    table[9] = 4; // spec revision 1.4
                  // Feature bytes stay 0: a configuration table is present, no default config.
    table[10] = checksum_fix(&table);
    table.extend_from_slice(&config);
    Ok(table)
}

/// Build the table and write it at [`MPTABLE_START`].
pub fn write(mem: &GuestMemoryMmap<()>, cpus: u8, pci: &[PciIrqRoute]) -> Result<()> {
    let table = build(cpus, pci)?;
    debug_assert!(MPTABLE_START + table.len() as u64 <= MPTABLE_LIMIT);
    write_guest(mem, MPTABLE_START, &table)
}

fn bus_entry(id: u8, name: &[u8; 6]) -> [u8; 8] {
    let mut e = [ENTRY_BUS, id, 0, 0, 0, 0, 0, 0];
    e[2..8].copy_from_slice(name);
    e
}

fn int_entry(
    kind: u8,
    irq_type: u8,
    flags: u16,
    bus: u8,
    bus_irq: u8,
    apic: u8,
    pin: u8,
) -> [u8; 8] {
    let f = flags.to_le_bytes();
    [kind, irq_type, f[0], f[1], bus, bus_irq, apic, pin]
}

/// The byte that makes `bytes` (whose checksum byte is still 0) sum to zero.
fn checksum_fix(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Byte sum of an MP structure, 0 when its checksum is valid. Tests only, and
/// kept apart from [`checksum_fix`] so they check it independently.
#[cfg(test)]
pub(crate) fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split the configuration table's entries by their type byte.
    fn entries(config: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut off = HEADER_LEN;
        while off < config.len() {
            let len = if config[off] == ENTRY_CPU { 20 } else { 8 };
            out.push(&config[off..off + len]);
            off += len;
        }
        out
    }

    #[test]
    fn checksums_and_pointers_are_valid() {
        let t = build(4, &[]).unwrap();
        assert_eq!(&t[0..4], b"_MP_");
        assert_eq!(sum(&t[..16]), 0);
        let config_addr = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
        assert_eq!(config_addr, MPTABLE_START + 16);
        let config = &t[16..];
        assert_eq!(&config[0..4], b"PCMP");
        let len = u16::from_le_bytes([config[4], config[5]]) as usize;
        assert_eq!(len, config.len());
        assert_eq!(sum(config), 0);
        let count = u16::from_le_bytes([config[34], config[35]]) as usize;
        assert_eq!(count, entries(config).len());
        assert_eq!(&config[36..40], &0xFEE0_0000u32.to_le_bytes());
    }

    #[test]
    fn cpus_ioapic_and_isa_interrupts() {
        let t = build(2, &[]).unwrap();
        let e = entries(&t[16..]);
        let cpus: Vec<_> = e.iter().filter(|x| x[0] == ENTRY_CPU).collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!((cpus[0][1], cpus[0][3]), (0, 3)); // BSP, enabled
        assert_eq!((cpus[1][1], cpus[1][3]), (1, 1));
        let ioapic: Vec<_> = e.iter().filter(|x| x[0] == ENTRY_IOAPIC).collect();
        assert_eq!(ioapic.len(), 1);
        assert_eq!(ioapic[0][1], 2, "IOAPIC id = cpu count");
        assert_eq!(ioapic[0][3] & 1, 1, "enabled");
        assert_eq!(&ioapic[0][4..8], &0xFEC0_0000u32.to_le_bytes());
        let isa: Vec<_> = e
            .iter()
            .filter(|x| x[0] == ENTRY_INTSRC && x[4] == ISA_BUS)
            .collect();
        // IRQ 0 on pin 2 (the PIT's route), no IRQ 2, the rest identity.
        assert_eq!(isa.len(), 15);
        assert_eq!((isa[0][5], isa[0][6], isa[0][7]), (0, 2, 2));
        for x in &isa[1..] {
            assert_ne!(x[5], 2);
            assert_eq!((x[6], x[7]), (2, x[5]));
        }
        let buses: Vec<_> = e.iter().filter(|x| x[0] == ENTRY_BUS).collect();
        assert_eq!(&buses[1][2..8], b"ISA   ");
    }

    #[test]
    fn pci_routes_become_level_interrupts() {
        let route = PciIrqRoute {
            slot: 3,
            pin: 1,
            ioapic_pin: 11,
        };
        let t = build(1, &[route]).unwrap();
        let e = entries(&t[16..]);
        let pci: Vec<_> = e
            .iter()
            .filter(|x| x[0] == ENTRY_INTSRC && x[4] == PCI_BUS)
            .collect();
        assert_eq!(pci.len(), 1);
        assert_eq!(pci[0][5], 3 << 2);
        assert_eq!(pci[0][7], 11);
        assert_eq!(u16::from_le_bytes([pci[0][2], pci[0][3]]), IRQ_FLAGS_PCI);
        // Pin 11 now belongs to PCI: no ISA IRQ 11 entry, the other 14 remain.
        let isa: Vec<u8> = e
            .iter()
            .filter(|x| x[0] == ENTRY_INTSRC && x[4] == ISA_BUS)
            .map(|x| x[7])
            .collect();
        assert_eq!(isa.len(), 14);
        assert!(!isa.contains(&11));
    }

    #[test]
    fn limits() {
        assert!(matches!(build(0, &[]), Err(Error::CpuCount(0))));
        assert!(matches!(build(255, &[]), Err(Error::CpuCount(255))));
        let big = build(MAX_CPUS, &[]).unwrap();
        assert!(MPTABLE_START + big.len() as u64 <= MPTABLE_LIMIT);
        assert_eq!(sum(&big[16..]), 0);
        let bad = |slot, pin, ioapic_pin| {
            build(
                1,
                &[PciIrqRoute {
                    slot,
                    pin,
                    ioapic_pin,
                }],
            )
            .is_err()
        };
        assert!(bad(32, 1, 10));
        assert!(bad(3, 0, 10));
        assert!(bad(3, 5, 10));
        assert!(bad(3, 1, 24));
    }
}
