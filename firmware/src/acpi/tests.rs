//! The tables as a guest OS and SeaBIOS see them: linked by the loader
//! commands at SeaBIOS-like addresses, walked from the RSDP with every
//! signature and checksum checked, and the DSDT disassembled by ACPICA's iasl.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command as Process;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::loader::{self, Command, Zone};
use super::*;

const MIB: u64 = 1 << 20;

/// spicebox's PC as the VMM describes it.
fn machine(cpus: u8, ram: u64) -> AcpiConfig {
    AcpiConfig {
        cpus,
        layout: MemoryLayout::new(ram).unwrap(),
        pm: PmBlock {
            event_port: 0x600,
            control_port: 0x604,
            timer_port: Some(0x608),
            sci_irq: 9,
            s5_sleep_type: 0,
        },
        reset: Some(ResetRegister {
            port: 0xcf9,
            value: 6,
        }),
        pci: PciInterrupts {
            isa_bridge_slot: 1,
            pirq_route_offset: 0x60,
            link_irqs: vec![5, 10, 11],
        },
        isa: vec![
            IsaDevice::Rtc {
                port: 0x70,
                len: 2,
                irq: 8,
            },
            IsaDevice::Ps2Keyboard {
                data_port: 0x60,
                command_port: 0x64,
                irq: 1,
            },
            IsaDevice::Ps2Mouse { irq: 12 },
            IsaDevice::Serial {
                uid: 1,
                port: 0x3f8,
                irq: 4,
            },
            IsaDevice::FwCfg {
                port: 0x510,
                len: 12,
            },
        ],
        irq0_gsi: 2,
        vga: true,
        rtc_century: Some(0x32),
    }
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Guest-physical memory as a sparse map of placed files.
struct Memory(BTreeMap<u64, Vec<u8>>);

impl Memory {
    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let (base, data) = self
            .0
            .range(..=addr)
            .next_back()
            .unwrap_or_else(|| panic!("nothing at {addr:#x}"));
        let off = (addr - base) as usize;
        assert!(off + len <= data.len(), "{addr:#x}+{len} runs off its file");
        data[off..off + len].to_vec()
    }

    /// A table with a standard header at `addr`: signature and checksum
    /// checked, the whole table returned.
    fn table(&self, addr: u64, signature: &[u8; 4]) -> Vec<u8> {
        let header = self.read(addr, 36);
        assert_eq!(&header[0..4], signature, "table at {addr:#x}");
        let t = self.read(addr, u32_at(&header, 4) as usize);
        assert_eq!(
            sum(&t),
            0,
            "{} checksum",
            String::from_utf8_lossy(signature)
        );
        t
    }
}

/// What a guest OS finds from the RSDP.
struct Walked {
    fadt: Vec<u8>,
    madt: Vec<u8>,
    dsdt: Vec<u8>,
    facs_addr: u64,
}

fn walk(mem: &Memory, rsdp_addr: u64) -> Walked {
    let rsdp = mem.read(rsdp_addr, 36);
    assert_eq!(&rsdp[0..8], b"RSD PTR ");
    assert_eq!(sum(&rsdp[..20]), 0, "RSDP checksum");
    assert_eq!(rsdp[15], 2, "ACPI 2.0 RSDP");
    assert_eq!(u32_at(&rsdp, 20), 36);
    assert_eq!(sum(&rsdp), 0, "RSDP extended checksum");
    let rsdt = mem.table(u64::from(u32_at(&rsdp, 16)), b"RSDT");
    let xsdt = mem.table(u64_at(&rsdp, 24), b"XSDT");
    let via_rsdt: Vec<u64> = rsdt[36..]
        .chunks(4)
        .map(|c| u64::from(u32_at(c, 0)))
        .collect();
    let via_xsdt: Vec<u64> = xsdt[36..].chunks(8).map(|c| u64_at(c, 0)).collect();
    assert_eq!(via_rsdt, via_xsdt, "RSDT and XSDT list the same tables");
    assert_eq!(via_xsdt.len(), 2);
    let fadt = mem.table(via_xsdt[0], b"FACP");
    let madt = mem.table(via_xsdt[1], b"APIC");
    let dsdt_addr = u64::from(u32_at(&fadt, 40));
    assert_eq!(u64_at(&fadt, 140), dsdt_addr, "X_DSDT and DSDT agree");
    let dsdt = mem.table(dsdt_addr, b"DSDT");
    let facs_addr = u64::from(u32_at(&fadt, 36));
    assert_eq!(u64_at(&fadt, 132), 0, "X_FIRMWARE_CTRL unused");
    let facs = mem.read(facs_addr, 64);
    assert_eq!(&facs[0..4], b"FACS");
    assert_eq!(u32_at(&facs, 4), 64);
    assert_eq!(facs_addr % 64, 0, "FACS alignment");
    Walked {
        fadt,
        madt,
        dsdt,
        facs_addr,
    }
}

/// Run the loader the way SeaBIOS does: tables in high memory below 2 GiB,
/// the RSDP in the F segment.
fn seabios_link(t: &AcpiTables) -> (Memory, u64) {
    let files: BTreeMap<String, Vec<u8>> = t.fw_cfg_files().into_iter().collect();
    let placed = loader::execute(&t.loader, &files, |_, size, align, zone| {
        Ok(match zone {
            Zone::FSeg => 0xF_5A40,
            Zone::High => (0x7FFF_0000 - size as u64) & !(u64::from(align) - 1),
        })
    })
    .unwrap();
    let rsdp = placed[RSDP_FILE].addr;
    (
        Memory(placed.into_values().map(|p| (p.addr, p.data)).collect()),
        rsdp,
    )
}

#[test]
fn every_table_has_its_length_and_checksum_before_and_after_linking() {
    for cpus in [1, 2, 9, 64] {
        let t = AcpiTables::build(&machine(cpus, 1 << 30)).unwrap();
        // Unlinked, each table is already self-consistent.
        let mut off: usize = 64; // FACS first, 64 bytes
        assert_eq!(&t.tables[0..4], b"FACS");
        for sig in [b"DSDT", b"FACP", b"APIC", b"RSDT", b"XSDT"] {
            off = off.next_multiple_of(4);
            assert_eq!(&t.tables[off..off + 4], sig, "table order");
            let len = u32_at(&t.tables, off + 4) as usize;
            assert_eq!(sum(&t.tables[off..off + len]), 0);
            off += len;
        }
        assert_eq!(off, t.tables.len(), "nothing after the XSDT");
        assert_eq!(t.rsdp.len(), 36);
        assert_eq!(t.loader.len() % loader::ENTRY_SIZE, 0);

        let (mem, rsdp) = seabios_link(&t);
        let w = walk(&mem, rsdp);
        assert_eq!(w.fadt.len(), 276, "ACPI 6.5 FADT");
        assert_eq!((w.fadt[8], w.fadt[131]), (6, 5), "FADT revision 6.5");
        assert_eq!(w.madt.len(), 44 + 8 * cpus as usize + 12 + 10 * 5 + 6);
        assert!(w.facs_addr < 0x8000_0000);
    }
}

#[test]
fn loader_commands_patch_every_pointer_and_checksum() {
    let t = AcpiTables::build(&machine(2, 1 << 30)).unwrap();
    let cmds: Vec<Command> = t
        .loader
        .chunks(loader::ENTRY_SIZE)
        .map(|c| Command::decode(c.try_into().unwrap()).unwrap())
        .collect();
    // Files are allocated before any command names them.
    assert!(
        matches!(&cmds[0], Command::Allocate { file, zone: Zone::FSeg, align: 16 } if file == RSDP_FILE)
    );
    assert!(
        matches!(&cmds[1], Command::Allocate { file, zone: Zone::High, align: 64 } if file == TABLES_FILE)
    );
    let pointers = cmds
        .iter()
        .filter(|c| matches!(c, Command::AddPointer { .. }))
        .count();
    // FADT: FACS, DSDT, X_DSDT; RSDT and XSDT: 2 each; RSDP: RSDT, XSDT.
    assert_eq!(pointers, 3 + 2 + 2 + 2);
    let checksums = cmds
        .iter()
        .filter(|c| matches!(c, Command::AddChecksum { .. }))
        .count();
    assert_eq!(checksums, 5 + 2, "five tables and the RSDP's two");

    // Linked at two different places, the pointers differ by the shift and
    // every checksum still holds (walk checks them).
    let a = t.link(0x10_0000, 0x20_0000).unwrap();
    let b = t.link(0x4000_0000, 0x4010_0000).unwrap();
    let shift = 0x4000_0000 - 0x10_0000u64;
    let (ta, tb) = (&a[TABLES_FILE].data, &b[TABLES_FILE].data);
    for c in &cmds {
        if let Command::AddPointer {
            dest, offset, size, ..
        } = c
        {
            let (da, db) = (&a[dest].data, &b[dest].data);
            let at = *offset as usize;
            let read = |d: &Vec<u8>| match size {
                4 => u64::from(u32_at(d, at)),
                8 => u64_at(d, at),
                _ => panic!("pointer size {size}"),
            };
            assert_eq!(read(db) - read(da), shift, "{dest}+{offset}");
            assert!(read(da) >= a[TABLES_FILE].addr);
            assert!(read(da) < a[TABLES_FILE].addr + ta.len() as u64);
        }
    }
    assert_eq!(ta.len(), tb.len());
    for (placed, base) in [(&a, 0x10_0000), (&b, 0x4000_0000)] {
        let mem = Memory(placed.values().map(|p| (p.addr, p.data.clone())).collect());
        assert_eq!(placed[RSDP_FILE].addr, base, "RSDP first");
        walk(&mem, base);
    }
}

#[test]
fn fadt_describes_the_pm_block_reset_and_power_button() {
    let t = AcpiTables::build(&machine(1, 1 << 30)).unwrap();
    let (mem, rsdp) = seabios_link(&t);
    let f = walk(&mem, rsdp).fadt;
    assert_eq!(u16_at(&f, 46), 9, "SCI_INT");
    assert_eq!(u32_at(&f, 48), 0, "no SMI_CMD: SCI_EN is set from reset");
    assert_eq!((f[52], f[53]), (0, 0), "ACPI_ENABLE/DISABLE");
    assert_eq!(u32_at(&f, 56), 0x600, "PM1a_EVT_BLK");
    assert_eq!(u32_at(&f, 64), 0x604, "PM1a_CNT_BLK");
    assert_eq!(u32_at(&f, 76), 0x608, "PM_TMR_BLK");
    assert_eq!(u32_at(&f, 80), 0, "no GPE0 block");
    assert_eq!(
        (f[88], f[89], f[91]),
        (4, 2, 4),
        "PM1_EVT/CNT, PM_TMR lengths"
    );
    assert_eq!(f[108], 0x32, "CMOS century index");
    assert_eq!(u16_at(&f, 109), 0b011, "legacy devices and an 8042");
    let flags = u32_at(&f, 112);
    assert_eq!(flags & 1 << 4, 0, "power button is a fixed feature");
    assert_ne!(flags & 1 << 5, 0, "no sleep button");
    assert_ne!(flags & 1 << 10, 0, "RESET_REG_SUP");
    assert_eq!(flags & 1 << 8, 0, "24-bit PM timer");
    // RESET_REG: system I/O, 8 bits at 0xCF9, value 6 (SYS_RST | RST_CPU).
    assert_eq!(&f[116..120], &[1, 8, 0, 0]);
    assert_eq!(u64_at(&f, 120), 0xcf9);
    assert_eq!(f[128], 6);
    // X_PM1a_EVT_BLK, X_PM1a_CNT_BLK and X_PM_TMR_BLK agree with the 32-bit
    // fields (ACPICA warns on a mismatch).
    for (at, bits, port) in [(148, 32, 0x600), (172, 16, 0x604), (208, 32, 0x608)] {
        assert_eq!((f[at], f[at + 1]), (1, bits), "GAS at {at}");
        assert_eq!(u64_at(&f, at + 4), port);
    }

    let mut no_vga = machine(9, 1 << 30);
    no_vga.vga = false;
    no_vga.pm.timer_port = None;
    no_vga.reset = None;
    let t = AcpiTables::build(&no_vga).unwrap();
    let (mem, rsdp) = seabios_link(&t);
    let f = walk(&mem, rsdp).fadt;
    assert_eq!(u16_at(&f, 109), 0b111, "VGA not present");
    assert_eq!((u32_at(&f, 76), f[91]), (0, 0), "no PM timer");
    let flags = u32_at(&f, 112);
    assert_eq!(flags & 1 << 10, 0, "no reset register");
    assert_ne!(flags & 1 << 18, 0, "cluster mode above 8 CPUs");
}

#[test]
fn madt_has_a_lapic_per_cpu_the_ioapic_and_the_overrides() {
    let t = AcpiTables::build(&machine(3, 1 << 30)).unwrap();
    let (mem, rsdp) = seabios_link(&t);
    let m = walk(&mem, rsdp).madt;
    assert_eq!(u32_at(&m, 36), 0xFEE0_0000);
    assert_eq!(u32_at(&m, 40), 1, "PCAT_COMPAT: 8259s present");
    let mut lapics = Vec::new();
    let mut ioapics = Vec::new();
    let mut overrides = Vec::new();
    let mut nmis = 0;
    let mut at = 44;
    while at < m.len() {
        let (kind, len) = (m[at], usize::from(m[at + 1]));
        let s = &m[at..at + len];
        match kind {
            0 => lapics.push((s[2], s[3], u32_at(s, 4))),
            1 => ioapics.push((s[2], u32_at(s, 4), u32_at(s, 8))),
            2 => overrides.push((s[2], s[3], u32_at(s, 4), u16_at(s, 8))),
            4 => {
                assert_eq!((s[2], s[5]), (0xff, 1), "NMI on LINT1 of all CPUs");
                nmis += 1;
            }
            k => panic!("unexpected MADT structure {k}"),
        }
        at += len;
    }
    assert_eq!(at, m.len());
    assert_eq!(lapics, [(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
    assert_eq!(ioapics, [(0, 0xFEC0_0000, 0)]);
    assert_eq!(
        overrides,
        [
            (0, 0, 2, 0),
            (0, 5, 5, 0xd),
            (0, 9, 9, 0xd),
            (0, 10, 10, 0xd),
            (0, 11, 11, 0xd)
        ]
    );
    assert_eq!(nmis, 1);
}

#[test]
fn direct_boot_tables_sit_in_the_reserved_bios_area() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 * MIB as usize)]).unwrap();
    let t = AcpiTables::build(&machine(2, 1 << 30)).unwrap();
    let rsdp = t.write_for_direct_boot(&mem).unwrap();
    assert_eq!(rsdp, DIRECT_BOOT_BASE);
    // Read back what the guest sees, as one block.
    let mut area = vec![0u8; (DIRECT_BOOT_END - DIRECT_BOOT_BASE) as usize];
    mem.read_slice(&mut area, GuestAddress(DIRECT_BOOT_BASE))
        .unwrap();
    let w = walk(&Memory(BTreeMap::from([(DIRECT_BOOT_BASE, area)])), rsdp);
    assert!(w.facs_addr > DIRECT_BOOT_BASE && w.facs_addr < DIRECT_BOOT_END);
    // An e820 view: the whole area is reserved for direct boot.
    let table = crate::e820::linux_table(&MemoryLayout::new(1 << 30).unwrap());
    assert!(table.iter().any(|e| e.kind == crate::e820::E820_RESERVED
        && e.addr <= DIRECT_BOOT_BASE
        && e.addr + e.size >= DIRECT_BOOT_END));
}

#[test]
fn bad_machines_are_refused() {
    let mut m = machine(1, 1 << 30);
    m.cpus = 0;
    assert!(AcpiTables::build(&m).is_err());
    let mut m = machine(1, 1 << 30);
    m.pci.link_irqs = vec![16];
    assert!(AcpiTables::build(&m).is_err());
    let mut m = machine(1, 1 << 30);
    m.isa.push(IsaDevice::Serial {
        uid: 9,
        port: 0x2f8,
        irq: 3,
    });
    assert!(AcpiTables::build(&m).is_err());
    // More than fits between 0xE0000 and the MP table is an error, not an overlap.
    let t = AcpiTables::build(&machine(1, 1 << 30)).unwrap();
    assert!(t.link(DIRECT_BOOT_BASE, DIRECT_BOOT_BASE + 0x100).is_err());
}

/// Run `iasl -d` on `table` in `dir`; returns the disassembly. Fails loudly
/// when iasl is missing: the test must not pass without looking.
fn disassemble(dir: &Path, name: &str, table: &[u8]) -> String {
    let bin = dir.join(format!("{name}.dat"));
    std::fs::write(&bin, table).unwrap();
    let out = Process::new("iasl")
        .arg("-d")
        .arg(&bin)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("iasl not runnable ({e}): apt-get install acpica-tools (or scripts/deps test)")
        });
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl -d {name} failed:\n{log}");
    for bad in [
        "Error",
        "error",
        "Invalid",
        "invalid",
        "Could not",
        "Unknown",
    ] {
        assert!(!log.contains(bad), "iasl -d {name} says {bad:?}:\n{log}");
    }
    std::fs::read_to_string(dir.join(format!("{name}.dsl"))).unwrap()
}

#[test]
fn iasl_disassembles_the_dsdt_with_our_devices() {
    let dir = std::env::temp_dir().join(format!("spicebox-acpi-iasl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = AcpiTables::build(&machine(2, 1 << 30)).unwrap();
    let (mem, rsdp) = seabios_link(&t);
    let w = walk(&mem, rsdp);
    let dsl = disassemble(&dir, "dsdt", &w.dsdt);
    for needle in [
        "Device (PCI0)",
        "EisaId (\"PNP0A03\")",
        "Name (_PRT, Package (0x80)",
        "Device (ISA)",
        "OperationRegion (P40C, PCI_Config, 0x60, 0x04)",
        "Device (RTC)",
        "EisaId (\"PNP0B00\")",
        "Device (KBD)",
        "EisaId (\"PNP0303\")",
        "Device (MOU)",
        "EisaId (\"PNP0F13\")",
        "Device (COM1)",
        "EisaId (\"PNP0501\")",
        "Device (FWCF)",
        "\"QEMU0002\"",
        "Device (LNKA)",
        "Device (LNKB)",
        "Device (LNKC)",
        "Device (LNKD)",
        "EisaId (\"PNP0C0F\")",
        "Method (_SRS, 1",
        "Method (_DIS, 0",
        "Method (_CRS, 0",
        "Method (_STA, 0",
        "Name (_PRS, ResourceTemplate ()",
        "0x00000005,",
        "0x0000000A,",
        "0x0000000B,",
        "Device (C000)",
        "Device (C001)",
        "\"ACPI0007\"",
        "Name (\\_S5, Package (0x04)",
        "Interrupt (ResourceConsumer, Level, ActiveHigh, Shared, ,, )",
        // The PCI windows of a 1 GiB machine.
        "0x40000000,         // Range Minimum",
        "0xFEBFFFFF,         // Range Maximum",
        "0x0000000100000000, // Range Minimum",
        "0x0CF8,             // Range Minimum",
    ] {
        assert!(dsl.contains(needle), "DSDT lacks {needle:?}:\n{dsl}");
    }
    // Every slot's four pins, routed through the links.
    for link in ["LNKA", "LNKB", "LNKC", "LNKD"] {
        let refs = dsl.matches(&format!("\\_SB.{link}, ")).count();
        assert_eq!(refs, 32, "{link} in _PRT:\n{dsl}");
    }
    assert!(dsl.contains("0x001FFFFF,"), "slot 31 in _PRT");
    assert!(!dsl.contains("Device (C002)"));

    // The rest disassemble cleanly too.
    let fadt = disassemble(&dir, "facp", &w.fadt);
    assert!(
        fadt.contains("Control Method Power Button (V1) : 0"),
        "{fadt}"
    );
    assert!(fadt.contains("SCI Interrupt : 0009"), "{fadt}");
    let madt = disassemble(&dir, "apic", &w.madt);
    assert!(madt.contains("Interrupt Source Override"), "{madt}");

    // And the disassembly compiles back without errors or warnings.
    let out = Process::new("iasl")
        .arg("dsdt.dsl")
        .current_dir(&dir)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{log}");
    assert!(log.contains(" 0 Errors, 0 Warnings, 0 Remarks"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}
