//! The static tables (FACS, FADT, MADT, RSDT, XSDT, RSDP) and the blob and
//! loader commands that carry them.
//!
//! Pointers between tables are written as offsets into the file they point to
//! and listed as ADD_POINTER commands; every table's checksum is valid in the
//! blob as built and is listed as an ADD_CHECKSUM command to be redone after
//! the pointers are patched.

use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;

use super::loader::{self, Command, Zone};
use super::{checksum, dsdt, AcpiConfig, OEM_ID, OEM_TABLE_ID, RSDP_FILE, TABLES_FILE};
use crate::layout::{IOAPIC_ADDR, LAPIC_ADDR};
use crate::{Error, Result};

/// Offsets of the FADT fields that hold pointers (ACPI 6.5, table 5.9).
const FADT_FIRMWARE_CTRL: usize = 36;
const FADT_DSDT: usize = 40;
const FADT_X_DSDT: usize = 140;
/// Offsets in every table header.
const HEADER_CHECKSUM: usize = 9;
const HEADER_LEN: usize = 36;
/// RSDP fields (ACPI 6.5, table 5.3).
const RSDP_CHECKSUM: usize = 8;
const RSDP_RSDT: usize = 16;
const RSDP_XSDT: usize = 24;
const RSDP_EXT_CHECKSUM: usize = 32;
const RSDP_V1_LEN: usize = 20;

/// FACS must be 64-byte aligned; it goes first in the blob, and the blob is
/// allocated with this alignment.
const TABLES_ALIGN: u32 = 64;
/// The RSDP must be on a 16-byte boundary for an OS's scan to find it.
const RSDP_ALIGN: u32 = 16;

/// IA-PC boot architecture flags (FADT IAPC_BOOT_ARCH).
const BOOT_ARCH_LEGACY_DEVICES: u16 = 1 << 0;
const BOOT_ARCH_8042: u16 = 1 << 1;
const BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;

/// MADT: the dual 8259s are present (PCAT_COMPAT).
const MADT_PCAT_COMPAT: u32 = 1;
const MADT_INTERRUPT_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
/// MPS INTI flags: active high (01) and level-triggered (11 << 2).
const INTI_ACTIVE_HIGH_LEVEL: u16 = 0x1 | 0x3 << 2;
/// The ID KVM's IOAPIC has after reset.
const IOAPIC_ID: u8 = 0;
/// LINT1 of every local APIC is the NMI input (as on a PC, and KVM).
const NMI_LINT: u8 = 1;
/// "All processors" in a Local APIC NMI structure.
const ALL_PROCESSORS: u8 = 0xff;
/// Above this many CPUs flat logical APIC mode cannot address them all.
const FLAT_LOGICAL_MAX_CPUS: u8 = 8;

/// The blobs SeaBIOS loads through fw_cfg (and direct boot links in place).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// `etc/acpi/rsdp`: the 36-byte ACPI 2.0 RSDP.
    pub rsdp: Vec<u8>,
    /// `etc/acpi/tables`: FACS, DSDT, FADT, MADT, RSDT, XSDT, in that order.
    pub tables: Vec<u8>,
    /// `etc/table-loader`: the commands that place and link them.
    pub loader: Vec<u8>,
}

/// Builds the tables blob and the commands that go with it.
struct Builder {
    blob: Vec<u8>,
    commands: Vec<Command>,
}

impl Builder {
    /// Append a table (aligned to `align`); returns its offset in the blob.
    fn push(&mut self, table: &[u8], align: usize) -> usize {
        self.blob.resize(self.blob.len().next_multiple_of(align), 0);
        let at = self.blob.len();
        self.blob.extend_from_slice(table);
        at
    }

    /// Append a table with a standard header, run `pointers(builder, offset)`
    /// to list the pointers in it, then have its checksum redone: SeaBIOS runs
    /// the commands in order, so the checksum must follow the patching.
    fn push_sdt(&mut self, table: &[u8], pointers: impl FnOnce(&mut Self, usize)) -> usize {
        let at = self.push(table, 4);
        pointers(self, at);
        self.commands.push(Command::AddChecksum {
            file: TABLES_FILE.into(),
            offset: (at + HEADER_CHECKSUM) as u32,
            start: at as u32,
            length: table.len() as u32,
        });
        at
    }

    /// A pointer of `size` bytes at `at` in `dest` to somewhere in the blob.
    fn pointer(&mut self, dest: &str, at: usize, size: u8) {
        self.commands.push(Command::AddPointer {
            dest: dest.into(),
            src: TABLES_FILE.into(),
            offset: at as u32,
            size,
        });
    }
}

fn bytes_of(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

fn io_register(port: u16, bits: u8) -> GAS {
    // Access size "undefined": the OS uses the register's natural width, as
    // QEMU's tables say too.
    GAS::new(
        AddressSpace::SystemIo,
        bits,
        0,
        AccessSize::Undefined,
        port.into(),
    )
}

fn fadt(cfg: &AcpiConfig, facs: usize, dsdt: usize) -> Vec<u8> {
    let pm = &cfg.pm;
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, 1);
    // Both DSDT fields, holding the same offset: SeaBIOS's DSDT parser reads
    // the 32-bit one. The FACS goes in the 32-bit field only (X_FIRMWARE_CTRL
    // must then be 0).
    f.firmware_ctrl = (facs as u32).into();
    f.dsdt = (dsdt as u32).into();
    f.x_dsdt = (dsdt as u64).into();
    f.sci_int = u16::from(pm.sci_irq).into();
    // No SMI_CMD: SCI_EN is set from power-on, so there is no ACPI mode to
    // switch to (ACPI 6.5 §4.8.2.5: firmware may hand over in ACPI mode).
    f.pm1a_evt_blk = u32::from(pm.event_port).into();
    f.pm1a_cnt_blk = u32::from(pm.control_port).into();
    f.pm1_evt_len = 4;
    f.pm1_cnt_len = 2;
    f.x_pm1a_evt_blk = io_register(pm.event_port, 32);
    f.x_pm1a_cnt_blk = io_register(pm.control_port, 16);
    if let Some(port) = pm.timer_port {
        f.pm_tmr_blk = u32::from(port).into();
        f.pm_tmr_len = 4;
        f.x_pm_tmr_blk = io_register(port, 32);
    }
    // Latencies above 100 / 1000 us: C2 and C3 are not supported.
    f.p_lvl2_lat = 0x0fffu16.into();
    f.p_lvl3_lat = 0x0fffu16.into();
    f.century = cfg.rtc_century.unwrap_or(0);
    let has_8042 = cfg
        .isa
        .iter()
        .any(|d| matches!(d, super::IsaDevice::Ps2Keyboard { .. }));
    let mut arch = BOOT_ARCH_LEGACY_DEVICES;
    if has_8042 {
        arch |= BOOT_ARCH_8042;
    }
    if !cfg.vga {
        arch |= BOOT_ARCH_VGA_NOT_PRESENT;
    }
    f.iapc_boot_arch = arch.into();
    // The power button is a fixed feature (PwrButton clear): PM1 PWRBTN_STS.
    // There is no sleep button (SlpButton set: "absent or control method").
    let mut f = f
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::SlpButton)
        .flag(Flags::UsePlatformClock);
    if cfg.cpus > FLAT_LOGICAL_MAX_CPUS {
        f = f.flag(Flags::ForceApicClusterModel);
    }
    if let Some(reset) = cfg.reset {
        f = f.flag(Flags::ResetRegSup);
        f.reset_reg = io_register(reset.port, 8);
        f.reset_value = reset.value;
    }
    bytes_of(&f.finalize())
}

fn madt(cfg: &AcpiConfig) -> Result<Vec<u8>> {
    // The crate's MADT type has no way to set the PCAT_COMPAT flag, so the
    // table is its generic SDT with the crate's LAPIC and IOAPIC structures.
    let mut madt = Sdt::new(*b"APIC", 44, 1, OEM_ID, OEM_TABLE_ID, 1);
    madt.write_u32(36, LAPIC_ADDR as u32);
    madt.write_u32(40, MADT_PCAT_COMPAT);
    for id in 0..cfg.cpus {
        madt.append_slice(&bytes_of(&ProcessorLocalApic::new(
            id,
            id,
            EnabledStatus::Enabled,
        )));
    }
    madt.append_slice(&bytes_of(&IoApic::new(IOAPIC_ID, IOAPIC_ADDR as u32, 0)));
    let mut overrides = Vec::new();
    if cfg.irq0_gsi != 0 {
        // The PIT's edge interrupt keeps the ISA bus's default polarity and trigger.
        overrides.push((0u8, cfg.irq0_gsi, 0u16));
    }
    let mut level: Vec<u8> = cfg.pci.link_irqs.clone();
    level.push(cfg.pm.sci_irq);
    level.sort_unstable();
    level.dedup();
    for irq in level {
        if irq == 0 || irq >= 16 {
            return Err(Error::Acpi(format!(
                "ISA IRQ {irq} cannot be level-triggered"
            )));
        }
        overrides.push((irq, u32::from(irq), INTI_ACTIVE_HIGH_LEVEL));
    }
    for (source, gsi, flags) in overrides {
        let mut s = vec![MADT_INTERRUPT_OVERRIDE, 10, 0 /* ISA bus */, source];
        s.extend_from_slice(&gsi.to_le_bytes());
        s.extend_from_slice(&flags.to_le_bytes());
        madt.append_slice(&s);
    }
    let mut nmi = vec![MADT_LOCAL_APIC_NMI, 6, ALL_PROCESSORS];
    nmi.extend_from_slice(&0u16.to_le_bytes());
    nmi.push(NMI_LINT);
    madt.append_slice(&nmi);
    Ok(madt.as_slice().to_vec())
}

impl AcpiTables {
    /// Build every table for the machine `cfg` describes.
    pub fn build(cfg: &AcpiConfig) -> Result<AcpiTables> {
        if cfg.cpus == 0 {
            return Err(Error::Acpi("no CPUs".into()));
        }
        let mut b = Builder {
            blob: Vec::new(),
            commands: vec![
                // RSDP first: direct boot then finds it at the base address.
                Command::Allocate {
                    file: RSDP_FILE.into(),
                    align: RSDP_ALIGN,
                    zone: Zone::FSeg,
                },
                Command::Allocate {
                    file: TABLES_FILE.into(),
                    align: TABLES_ALIGN,
                    zone: Zone::High,
                },
            ],
        };

        let facs = b.push(&bytes_of(&FACS::new()), TABLES_ALIGN as usize);
        let dsdt = b.push_sdt(&dsdt::build(cfg)?, |_, _| {});
        let fadt_at = b.push_sdt(&fadt(cfg, facs, dsdt), |b, at| {
            b.pointer(TABLES_FILE, at + FADT_FIRMWARE_CTRL, 4);
            b.pointer(TABLES_FILE, at + FADT_DSDT, 4);
            b.pointer(TABLES_FILE, at + FADT_X_DSDT, 8);
        });
        let madt_at = b.push_sdt(&madt(cfg)?, |_, _| {});
        let entries = [fadt_at, madt_at];

        let mut rsdt = Sdt::new(*b"RSDT", HEADER_LEN as u32, 1, OEM_ID, OEM_TABLE_ID, 1);
        for e in entries {
            rsdt.append_slice(&(e as u32).to_le_bytes());
        }
        let rsdt_at = b.push_sdt(rsdt.as_slice(), |b, at| {
            for i in 0..entries.len() {
                b.pointer(TABLES_FILE, at + HEADER_LEN + 4 * i, 4);
            }
        });

        let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
        for e in entries {
            xsdt.add_entry(e as u64);
        }
        let xsdt_at = b.push_sdt(&bytes_of(&xsdt), |b, at| {
            for i in 0..entries.len() {
                b.pointer(TABLES_FILE, at + HEADER_LEN + 8 * i, 8);
            }
        });

        // The crate's RSDP (revision 2) has no RSDT address; an ACPI 1.0 OS
        // needs one, so it is added here and both checksums redone.
        let mut rsdp = bytes_of(&Rsdp::new(OEM_ID, xsdt_at as u64));
        rsdp[RSDP_RSDT..RSDP_RSDT + 4].copy_from_slice(&(rsdt_at as u32).to_le_bytes());
        rsdp[RSDP_CHECKSUM] = 0;
        rsdp[RSDP_CHECKSUM] = checksum(&rsdp[..RSDP_V1_LEN]);
        rsdp[RSDP_EXT_CHECKSUM] = 0;
        rsdp[RSDP_EXT_CHECKSUM] = checksum(&rsdp);
        b.pointer(RSDP_FILE, RSDP_RSDT, 4);
        b.pointer(RSDP_FILE, RSDP_XSDT, 8);
        for (offset, length) in [
            (RSDP_CHECKSUM, RSDP_V1_LEN),
            (RSDP_EXT_CHECKSUM, rsdp.len()),
        ] {
            b.commands.push(Command::AddChecksum {
                file: RSDP_FILE.into(),
                offset: offset as u32,
                start: 0,
                length: length as u32,
            });
        }

        Ok(AcpiTables {
            rsdp,
            tables: b.blob,
            loader: loader::encode(&b.commands)?,
        })
    }
}
