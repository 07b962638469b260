//! ACPI tables for the spicebox PC (i440FX + PIIX3, the PIIX4-style PM block
//! at 0x600), built with rust-vmm's `acpi_tables` crate from a plain
//! description of the machine ([`AcpiConfig`]): the VMM says which devices
//! exist and where, this module turns that into RSDP, RSDT, XSDT, FADT, FACS,
//! DSDT and MADT.
//!
//! Two ways into the guest, with the same bytes:
//! - SeaBIOS: the fw_cfg files `etc/acpi/tables`, `etc/acpi/rsdp` and the
//!   linker commands of `etc/table-loader` ([`AcpiTables::fw_cfg_files`]), as
//!   QEMU provides them; SeaBIOS then skips its own built-in tables.
//! - Direct kernel boot: linked in place at [`DIRECT_BOOT_BASE`] in the
//!   reserved BIOS area ([`AcpiTables::write_for_direct_boot`]), RSDP first,
//!   where an OS also finds it by scanning 0xE0000-0xFFFFF.
//!
//! QEMU's `hw/i386/acpi-build.c` and the DSDT it used to ship were the
//! reference for what a PC guest expects; nothing here is copied from them.

mod aml_ext;
mod dsdt;
pub mod loader;
mod tables;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use vm_memory::GuestMemoryMmap;

use crate::layout::MemoryLayout;
use crate::{write_guest, Error, Result};
use loader::Zone;

pub use tables::AcpiTables;

/// fw_cfg file with the tables proper (FACS first, 64-byte aligned).
pub const TABLES_FILE: &str = "etc/acpi/tables";
/// fw_cfg file with the RSDP, allocated in the F segment.
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
/// fw_cfg file with the linker/loader commands.
pub const LOADER_FILE: &str = "etc/table-loader";

/// OEM ID in every table header.
pub const OEM_ID: [u8; 6] = *b"SPCBOX";
/// OEM table ID in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"SPICEBOX";

/// Direct kernel boot puts the RSDP here and the tables right behind it: the
/// start of the 0xE0000-0xFFFFF area an OS scans for the RSDP, inside the
/// range the direct-boot e820 map reserves; the MP table follows at 0xF0000.
pub const DIRECT_BOOT_BASE: u64 = 0xE_0000;
/// End of the direct-boot ACPI area.
pub const DIRECT_BOOT_END: u64 = crate::mptable::MPTABLE_START;

/// The PIIX4-style PM1 block and what the guest needs to know about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmBlock {
    /// PM1a_EVT: status (2 bytes) then enable (2 bytes).
    pub event_port: u16,
    /// PM1a_CNT (2 bytes): SCI_EN, SLP_TYP, SLP_EN.
    pub control_port: u16,
    /// The 24-bit PM timer, if emulated.
    pub timer_port: Option<u16>,
    /// ISA IRQ of the SCI (level-triggered, active high).
    pub sci_irq: u8,
    /// SLP_TYP value that means S5 (soft off), for `\_S5`.
    pub s5_sleep_type: u8,
}

/// The register a guest writes to reset the machine (FADT RESET_REG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetRegister {
    pub port: u16,
    pub value: u8,
}

/// How PCI INTx reaches ISA IRQs: the PIIX3 PIRQ route registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciInterrupts {
    /// Slot of the PCI-to-ISA bridge on bus 0 (function 0).
    pub isa_bridge_slot: u8,
    /// Config offset of PIRQRCA; PIRQRCB..D follow.
    pub pirq_route_offset: u8,
    /// ISA IRQs a link device may be routed to (its `_PRS`).
    pub link_irqs: Vec<u8>,
}

/// An ISA device the DSDT describes under the ISA bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsaDevice {
    /// MC146818 RTC/CMOS (PNP0B00).
    Rtc { port: u16, len: u8, irq: u8 },
    /// i8042 keyboard port (PNP0303).
    Ps2Keyboard {
        data_port: u16,
        command_port: u16,
        irq: u8,
    },
    /// i8042 aux (mouse) port (PNP0F13); its ports are the keyboard's.
    Ps2Mouse { irq: u8 },
    /// 16550 UART (PNP0501); `uid` 1 is COM1.
    Serial { uid: u8, port: u16, irq: u8 },
    /// QEMU's fw_cfg interface (QEMU0002), so that Linux's qemu_fw_cfg binds.
    FwCfg { port: u16, len: u8 },
}

/// Everything the tables say about the machine, as plain data from the VMM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// vCPUs, with APIC IDs and ACPI processor UIDs 0..cpus.
    pub cpus: u8,
    /// RAM layout: the PCI windows are what RAM leaves below and above 4 GiB.
    pub layout: MemoryLayout,
    pub pm: PmBlock,
    pub reset: Option<ResetRegister>,
    pub pci: PciInterrupts,
    pub isa: Vec<IsaDevice>,
    /// The GSI the PIT (ISA IRQ 0) raises: 2 when the VMM routes it like
    /// QEMU does (an interrupt source override in the MADT), else 0.
    pub irq0_gsi: u32,
    /// A legacy VGA device exists (else the FADT says "VGA not present").
    pub vga: bool,
    /// CMOS index of the RTC's century byte, if it keeps one.
    pub rtc_century: Option<u8>,
}

impl AcpiTables {
    /// The three fw_cfg files SeaBIOS loads, as (name, contents).
    pub fn fw_cfg_files(&self) -> Vec<(String, Vec<u8>)> {
        vec![
            (TABLES_FILE.to_string(), self.tables.clone()),
            (RSDP_FILE.to_string(), self.rsdp.clone()),
            (LOADER_FILE.to_string(), self.loader.clone()),
        ]
    }

    /// Run the loader commands with the files placed from `base` upward (FSEG
    /// and high allocations alike, each aligned as asked), stopping at `end`:
    /// what SeaBIOS would do, at addresses we choose. Returns the files by name.
    pub fn link(&self, base: u64, end: u64) -> Result<BTreeMap<String, loader::Placed>> {
        let files: BTreeMap<String, Vec<u8>> = self.fw_cfg_files().into_iter().collect();
        let mut next = base;
        loader::execute(&self.loader, &files, |name, size, align, _zone: Zone| {
            let addr = next.next_multiple_of(u64::from(align));
            let after = addr + size as u64;
            if after > end {
                return Err(Error::Acpi(format!(
                    "{name} ({size} bytes) does not fit below {end:#x}"
                )));
            }
            next = after;
            Ok(addr)
        })
    }

    /// Link the tables at [`DIRECT_BOOT_BASE`] and write them to guest memory
    /// for a directly booted kernel; returns the RSDP's address for
    /// boot_params.acpi_rsdp_addr.
    pub fn write_for_direct_boot(&self, mem: &GuestMemoryMmap<()>) -> Result<u64> {
        let placed = self.link(DIRECT_BOOT_BASE, DIRECT_BOOT_END)?;
        for p in placed.values() {
            write_guest(mem, p.addr, &p.data)?;
        }
        placed
            .get(RSDP_FILE)
            .map(|p| p.addr)
            .ok_or_else(|| Error::Acpi("the loader placed no RSDP".into()))
    }
}

/// The byte that makes `bytes` sum to zero with it.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}
