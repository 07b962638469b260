//! Direct Linux boot: kernel, initrd, command line, zero page and MP table in
//! guest memory, and the 64-bit boot CPU state, following
//! Documentation/arch/x86/boot.rst ("64-bit boot protocol").

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use linux_loader::loader::bootparam::{
    boot_e820_entry, boot_params, setup_header, CAN_USE_HEAP, XLF_KERNEL_64,
};
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap, ReadVolatile};

use crate::boot_cpu::{setup_long_mode, BootCpuState};
use crate::e820::{self, HIGH_MEMORY_START};
use crate::layout::MemoryLayout;
use crate::mptable::{self, PciIrqRoute};
use crate::{write_guest, Error, Result};

/// The zero page (`struct boot_params`).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// The NUL-terminated command line; room up to the EBDA (over 500 KiB).
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Where the protected-mode part of a bzImage goes, as every loader does.
pub const KERNEL_LOAD_ADDR: u64 = HIGH_MEMORY_START;
/// `startup_64` sits 0x200 bytes into the protected-mode code of a bzImage.
pub const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xAA55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
/// "Undefined" boot loader ID: a loader without an assigned number.
const KERNEL_LOADER_OTHER: u8 = 0xFF;
/// Setup heap end relative to the real-mode segment, as QEMU sets it; only the
/// real-mode setup code (which this boot path skips) would use the heap.
const HEAP_END_PTR: u16 = 0xFE00;
/// The boot protocol's default when the header has no initrd_addr_max.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37FF_FFFF;
/// COMMAND_LINE_SIZE of x86 kernels, for ELF images that carry no header.
const ELF_CMDLINE_MAX: usize = 2047;
/// The physical alignment of x86-64 kernels (CONFIG_PHYSICAL_ALIGN default).
const ELF_KERNEL_ALIGNMENT: u32 = 0x100_0000;
const PAGE: u64 = 4096;

/// Where the kernel and initrd went, and how to start the boot vCPU. The rest
/// is at fixed addresses: the zero page at [`ZERO_PAGE_ADDR`] (`cpu.rsi`), the
/// command line at [`CMDLINE_ADDR`] and the MP table at
/// [`mptable::MPTABLE_START`]; the 64-bit entry point is `cpu.rip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxBoot {
    /// First and one-past-last byte of the loaded kernel image.
    pub kernel: (u64, u64),
    /// Initrd as (address, size), if one was given.
    pub initrd: Option<(u64, u64)>,
    pub cpu: BootCpuState,
}

/// Load `kernel` (bzImage or ELF vmlinux) and optionally `initrd`, and prepare
/// everything for entering it in 64-bit mode with `cpus` processors.
pub fn load_linux(
    mem: &GuestMemoryMmap<()>,
    layout: &MemoryLayout,
    kernel: &mut File,
    initrd: Option<&mut File>,
    cmdline: &str,
    cpus: u8,
) -> Result<LinuxBoot> {
    load_linux_with_pci(mem, layout, kernel, initrd, cmdline, cpus, &[], None)
}

/// [`load_linux`] for any seekable source, with PCI INTx routes for the MP table
/// (without them Linux falls back to the Interrupt Line register of each device)
/// and the address of ACPI tables already in memory, for boot_params
/// `acpi_rsdp_addr` (boot protocol 2.14; older kernels find the RSDP by
/// scanning 0xE0000-0xFFFFF, where `acpi::AcpiTables` puts it).
#[allow(clippy::too_many_arguments)] // each is one thing the boot protocol needs
pub fn load_linux_with_pci<K, I>(
    mem: &GuestMemoryMmap<()>,
    layout: &MemoryLayout,
    kernel: &mut K,
    initrd: Option<&mut I>,
    cmdline: &str,
    cpus: u8,
    pci_irqs: &[PciIrqRoute],
    acpi_rsdp_addr: Option<u64>,
) -> Result<LinuxBoot>
where
    K: Read + ReadVolatile + Seek,
    I: ReadVolatile + Seek,
{
    let k = load_kernel(mem, kernel)?;
    let mut hdr = k.header;

    write_cmdline(mem, cmdline, k.cmdline_max)?;
    hdr.type_of_loader = KERNEL_LOADER_OTHER;
    hdr.loadflags |= CAN_USE_HEAP;
    hdr.heap_end_ptr = HEAP_END_PTR;
    hdr.cmd_line_ptr = CMDLINE_ADDR as u32;

    let initrd = match initrd {
        Some(file) => {
            let ceiling = (k.initrd_addr_max + 1).min(layout.below_4g());
            let placed = load_initrd(mem, file, k.initrd_floor, ceiling)?;
            hdr.ramdisk_image = placed.0 as u32;
            hdr.ramdisk_size = placed.1 as u32;
            Some(placed)
        }
        None => None,
    };

    let mut params = boot_params {
        hdr,
        ..boot_params::default()
    };
    let table = e820::linux_table(layout);
    for (slot, e) in params.e820_table.iter_mut().zip(&table) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = table.len() as u8;
    params.acpi_rsdp_addr = acpi_rsdp_addr.unwrap_or(0);
    write_guest(mem, ZERO_PAGE_ADDR, params.as_slice())?;

    mptable::write(mem, cpus, pci_irqs)?;
    let cpu = setup_long_mode(mem, k.entry, ZERO_PAGE_ADDR)?;
    tracing::info!(
        entry = format_args!("{:#x}", k.entry),
        kernel_end = format_args!("{:#x}", k.end),
        initrd = ?initrd.map(|(a, s)| format!("{a:#x}+{s:#x}")),
        "Linux kernel loaded"
    );
    Ok(LinuxBoot {
        kernel: (k.start, k.end),
        initrd,
        cpu,
    })
}

/// What the kernel image tells us about how to boot it.
struct LoadedKernel {
    start: u64,
    end: u64,
    entry: u64,
    header: setup_header,
    cmdline_max: usize,
    initrd_addr_max: u64,
    /// Lowest address the initrd may start at without being overwritten when
    /// the kernel decompresses and sets itself up.
    initrd_floor: u64,
}

fn load_kernel<K: Read + ReadVolatile + Seek>(
    mem: &GuestMemoryMmap<()>,
    kernel: &mut K,
) -> Result<LoadedKernel> {
    let mut magic = [0u8; 4];
    kernel
        .seek(SeekFrom::Start(0))
        .and_then(|_| kernel.read_exact(&mut magic))
        .map_err(|source| Error::Read {
            what: "kernel image",
            source,
        })?;
    let highmem = Some(GuestAddress(HIGH_MEMORY_START));
    if magic == *b"\x7fELF" {
        let r = Elf::load(mem, None, kernel, highmem)?;
        let entry = r.kernel_load.0;
        // A vmlinux has no setup header; give the kernel the fields a loader
        // would have copied from one.
        let header = setup_header {
            boot_flag: KERNEL_BOOT_FLAG_MAGIC,
            header: KERNEL_HDR_MAGIC,
            kernel_alignment: ELF_KERNEL_ALIGNMENT,
            ..setup_header::default()
        };
        return Ok(LoadedKernel {
            start: entry,
            end: r.kernel_end,
            entry,
            header,
            cmdline_max: ELF_CMDLINE_MAX,
            initrd_addr_max: DEFAULT_INITRD_ADDR_MAX,
            initrd_floor: r.kernel_end,
        });
    }

    let r = BzImage::load(mem, Some(GuestAddress(KERNEL_LOAD_ADDR)), kernel, highmem)?;
    let header = r
        .setup_header
        .ok_or(Error::KernelUnsupported("bzImage without a setup header"))?;
    let version = header.version;
    if version < 0x0206 {
        return Err(Error::KernelUnsupported(
            "boot protocol older than 2.06 (kernels before 2.6.22)",
        ));
    }
    if version >= 0x020C && header.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(Error::KernelUnsupported(
            "no 64-bit entry point (a 32-bit kernel?)",
        ));
    }
    let start = r.kernel_load.0;
    // pref_address and init_size exist from protocol 2.10 on; before that the
    // header is shorter and those bytes are setup code.
    let (pref_address, init_size) = if version >= 0x020A {
        (header.pref_address, u64::from(header.init_size))
    } else {
        (0, 0)
    };
    // The kernel decompresses to its preferred address (or where it was loaded,
    // if higher) and needs init_size bytes there.
    let run_at = start.max(pref_address);
    let initrd_floor = r.kernel_end.max(run_at.saturating_add(init_size));
    Ok(LoadedKernel {
        start,
        end: r.kernel_end,
        entry: start + BZIMAGE_64BIT_ENTRY_OFFSET,
        header,
        cmdline_max: header.cmdline_size as usize,
        initrd_addr_max: u64::from(header.initrd_addr_max),
        initrd_floor,
    })
}

/// Write `cmdline`, NUL-terminated, at [`CMDLINE_ADDR`].
fn write_cmdline(mem: &GuestMemoryMmap<()>, cmdline: &str, max: usize) -> Result<()> {
    let cmdline = CString::new(cmdline).map_err(|_| Error::CmdlineNul)?;
    // cmdline_size excludes the terminating NUL.
    let len = cmdline.as_bytes().len();
    if len > max {
        return Err(Error::CmdlineTooLong { len, max });
    }
    write_guest(mem, CMDLINE_ADDR, cmdline.as_bytes_with_nul())
}

/// Put the initrd as high as possible below `ceiling`, page-aligned, the way
/// QEMU and GRUB do: far from the kernel's decompression area.
fn load_initrd<I: ReadVolatile + Seek>(
    mem: &GuestMemoryMmap<()>,
    file: &mut I,
    floor: u64,
    ceiling: u64,
) -> Result<(u64, u64)> {
    let read_err = |source| Error::Read {
        what: "initrd",
        source,
    };
    let size = file.seek(SeekFrom::End(0)).map_err(read_err)?;
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let too_large = Error::InitrdTooLarge {
        size,
        floor,
        ceiling,
    };
    let addr = match ceiling.checked_sub(size) {
        Some(top) if top & !(PAGE - 1) >= floor => top & !(PAGE - 1),
        _ => return Err(too_large),
    };
    let len = usize::try_from(size).map_err(|_| too_large)?;
    mem.read_exact_volatile_from(GuestAddress(addr), file, len)
        .map_err(|source| Error::GuestMemory { addr, len, source })?;
    Ok((addr, size))
}

#[cfg(test)]
#[path = "linux_tests.rs"]
mod tests;
