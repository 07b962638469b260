//! Tests for direct Linux boot with a synthetic bzImage and ELF kernel.

use std::io::Cursor;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::boot_cpu::{SegmentDesc, BOOT_CS, BOOT_DS, PDPT_ADDR, PD_ADDR, PML4_ADDR};
use crate::e820::{E820Entry, E820_RAM, E820_RESERVED};
use crate::mptable::{sum, MPTABLE_START};

const MIB: u64 = 1 << 20;
const SETUP_SECTS: usize = 4;
const PAYLOAD_LEN: usize = 8192;

/// Knobs of the fake kernel's setup header.
struct FakeHdr {
    version: u16,
    xloadflags: u16,
    cmdline_size: u32,
    initrd_addr_max: u32,
    pref_address: u64,
    init_size: u32,
}

impl Default for FakeHdr {
    fn default() -> Self {
        FakeHdr {
            version: 0x020F,
            xloadflags: 0x3, // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
            cmdline_size: 2047,
            initrd_addr_max: 0x7FFF_FFFF,
            pref_address: 0x100_0000,
            init_size: 0x40_0000,
        }
    }
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

/// A bzImage that passes every check a loader makes: boot sector signature,
/// "HdrS" header with the given fields, and a recognisable protected-mode part.
fn fake_bzimage(h: &FakeHdr) -> Vec<u8> {
    let setup_len = (SETUP_SECTS + 1) * 512;
    let mut img = vec![0u8; setup_len];
    let mut put = |off: usize, bytes: &[u8]| img[off..off + bytes.len()].copy_from_slice(bytes);
    put(0x1F1, &[SETUP_SECTS as u8]);
    put(0x1FE, &0xAA55u16.to_le_bytes());
    put(0x202, b"HdrS");
    put(0x206, &h.version.to_le_bytes());
    put(0x211, &[0x01]); // LOADED_HIGH
    put(0x214, &0x10_0000u32.to_le_bytes()); // code32_start
    put(0x22C, &h.initrd_addr_max.to_le_bytes());
    put(0x230, &0x20_0000u32.to_le_bytes()); // kernel_alignment
    put(0x234, &[1]); // relocatable
    put(0x236, &h.xloadflags.to_le_bytes());
    put(0x238, &h.cmdline_size.to_le_bytes());
    put(0x258, &h.pref_address.to_le_bytes());
    put(0x260, &h.init_size.to_le_bytes());
    img.extend_from_slice(&payload());
    img
}

fn memory(layout: &MemoryLayout) -> GuestMemoryMmap<()> {
    let ranges: Vec<_> = layout
        .ram_regions()
        .iter()
        .map(|&(a, s)| (GuestAddress(a), s as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).unwrap()
}

fn read(mem: &GuestMemoryMmap<()>, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

fn u16_at(mem: &GuestMemoryMmap<()>, addr: u64) -> u16 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn u32_at(mem: &GuestMemoryMmap<()>, addr: u64) -> u32 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn u64_at(mem: &GuestMemoryMmap<()>, addr: u64) -> u64 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn boot(
    layout: &MemoryLayout,
    kernel: Vec<u8>,
    initrd: Option<Vec<u8>>,
    cmdline: &str,
) -> (GuestMemoryMmap<()>, Result<LinuxBoot>) {
    let mem = memory(layout);
    let mut initrd = initrd.map(Cursor::new);
    let r = load_linux_with_pci(
        &mem,
        layout,
        &mut Cursor::new(kernel),
        initrd.as_mut(),
        cmdline,
        2,
        &[],
        None,
    );
    (mem, r)
}

#[test]
fn bzimage_boot_lays_out_memory() {
    let layout = MemoryLayout::new(64 * MIB).unwrap();
    let initrd: Vec<u8> = (0..MIB as usize + 123).map(|i| (i % 13) as u8).collect();
    let cmdline = "console=ttyS0 root=/dev/vda1";
    let (mem, r) = boot(
        &layout,
        fake_bzimage(&FakeHdr::default()),
        Some(initrd.clone()),
        cmdline,
    );
    let b = r.unwrap();

    // Kernel and entry point.
    assert_eq!(read(&mem, 0x10_0000, PAYLOAD_LEN), payload());
    assert_eq!(b.kernel, (0x10_0000, 0x10_0000 + PAYLOAD_LEN as u64));
    assert_eq!((b.cpu.rip, b.cpu.rsi), (0x10_0200, ZERO_PAGE_ADDR));

    // Command line, NUL-terminated.
    let mut want = cmdline.as_bytes().to_vec();
    want.push(0);
    assert_eq!(read(&mem, CMDLINE_ADDR, want.len()), want);

    // Initrd: page-aligned, top of RAM, above the decompression area.
    let (addr, size) = b.initrd.unwrap();
    assert_eq!(size, initrd.len() as u64);
    assert_eq!(addr % 4096, 0);
    assert!(addr + size <= 64 * MIB && addr + size + 4096 > 64 * MIB);
    assert!(addr >= 0x100_0000 + 0x40_0000);
    assert_eq!(read(&mem, addr, initrd.len()), initrd);

    // Zero page fields, at their boot-protocol offsets.
    let zp = ZERO_PAGE_ADDR;
    assert_eq!(u16_at(&mem, zp + 0x1FE), 0xAA55);
    assert_eq!(&read(&mem, zp + 0x202, 4), b"HdrS");
    assert_eq!(u16_at(&mem, zp + 0x206), 0x020F);
    assert_eq!(read(&mem, zp + 0x210, 1)[0], 0xFF, "type_of_loader");
    let loadflags = read(&mem, zp + 0x211, 1)[0];
    assert_eq!(loadflags & 0x81, 0x81, "LOADED_HIGH | CAN_USE_HEAP");
    assert_eq!(u32_at(&mem, zp + 0x214), 0x10_0000, "code32_start");
    assert_eq!(u32_at(&mem, zp + 0x218), addr as u32, "ramdisk_image");
    assert_eq!(u32_at(&mem, zp + 0x21C), size as u32, "ramdisk_size");
    assert_eq!(u16_at(&mem, zp + 0x224), 0xFE00, "heap_end_ptr");
    assert_eq!(
        u32_at(&mem, zp + 0x228),
        CMDLINE_ADDR as u32,
        "cmd_line_ptr"
    );

    // e820 table in the zero page.
    let table = e820::linux_table(&layout);
    assert_eq!(read(&mem, zp + 0x1E8, 1)[0] as usize, table.len());
    assert_eq!(table.len(), 4);
    for (i, e) in table.iter().enumerate() {
        let a = zp + 0x2D0 + 20 * i as u64;
        let got = E820Entry::new(u64_at(&mem, a), u64_at(&mem, a + 8), u32_at(&mem, a + 16));
        assert_eq!(got, *e);
    }
    assert_eq!(table[0], E820Entry::new(0, 0x9FC00, E820_RAM));
    assert_eq!(table[1].kind, E820_RESERVED);
    assert_eq!(table[2], E820Entry::new(MIB, 63 * MIB, E820_RAM));
}

#[test]
fn acpi_rsdp_addr_points_at_the_tables_in_reserved_memory() {
    use crate::acpi::{AcpiConfig, AcpiTables, PciInterrupts, PmBlock, DIRECT_BOOT_BASE};
    let layout = MemoryLayout::new(64 * MIB).unwrap();
    let cfg = AcpiConfig {
        cpus: 2,
        layout,
        pm: PmBlock {
            event_port: 0x600,
            control_port: 0x604,
            timer_port: None,
            sci_irq: 9,
            s5_sleep_type: 0,
        },
        reset: None,
        pci: PciInterrupts {
            isa_bridge_slot: 1,
            pirq_route_offset: 0x60,
            link_irqs: vec![10, 11],
        },
        isa: vec![],
        irq0_gsi: 2,
        vga: false,
        rtc_century: None,
    };
    let mem = memory(&layout);
    let rsdp = AcpiTables::build(&cfg)
        .unwrap()
        .write_for_direct_boot(&mem)
        .unwrap();
    let r = load_linux_with_pci(
        &mem,
        &layout,
        &mut Cursor::new(fake_bzimage(&FakeHdr::default())),
        None::<&mut Cursor<Vec<u8>>>,
        "",
        2,
        &[],
        Some(rsdp),
    );
    r.unwrap();
    // boot_params.acpi_rsdp_addr at 0x070 of the zero page.
    assert_eq!(u64_at(&mem, ZERO_PAGE_ADDR + 0x70), DIRECT_BOOT_BASE);
    assert_eq!(&read(&mem, DIRECT_BOOT_BASE, 8), b"RSD PTR ");
    // The tables live in a range the kernel's e820 map reserves, clear of the
    // MP table that follows.
    let rsdt = u64::from(u32_at(&mem, DIRECT_BOOT_BASE + 16));
    let xsdt = u64_at(&mem, DIRECT_BOOT_BASE + 24);
    for t in [rsdt, xsdt] {
        let len = u64::from(u32_at(&mem, t + 4));
        assert_eq!(sum(&read(&mem, t, len as usize)), 0);
        assert!(t > DIRECT_BOOT_BASE && t + len <= MPTABLE_START);
    }
    let reserved = e820::linux_table(&layout)
        .into_iter()
        .find(|e| e.addr <= DIRECT_BOOT_BASE && DIRECT_BOOT_BASE < e.addr + e.size)
        .unwrap();
    assert_eq!(reserved.kind, E820_RESERVED);
    assert!(reserved.addr + reserved.size >= MPTABLE_START);

    // Without tables the field stays 0.
    let (mem, r) = boot(&layout, fake_bzimage(&FakeHdr::default()), None, "");
    r.unwrap();
    assert_eq!(u64_at(&mem, ZERO_PAGE_ADDR + 0x70), 0);
}

#[test]
fn mp_table_is_in_memory_with_valid_checksums() {
    let layout = MemoryLayout::new(32 * MIB).unwrap();
    let (mem, r) = boot(&layout, fake_bzimage(&FakeHdr::default()), None, "");
    r.unwrap();
    let mpf = read(&mem, MPTABLE_START, 16);
    assert_eq!(&mpf[..4], b"_MP_");
    assert_eq!(sum(&mpf), 0);
    let cfg_addr = u32::from_le_bytes(mpf[4..8].try_into().unwrap()) as u64;
    let cfg_len = u16_at(&mem, cfg_addr + 4) as usize;
    let cfg = read(&mem, cfg_addr, cfg_len);
    assert_eq!(&cfg[..4], b"PCMP");
    assert_eq!(sum(&cfg), 0);
    // IOAPIC entry: type 2, id = number of CPUs (2), at 0xFEC00000.
    let ioapic = [2u8, 2, 0x11, 1, 0x00, 0x00, 0xC0, 0xFE];
    assert!(cfg.windows(8).any(|w| w == ioapic));
}

#[test]
fn boot_cpu_state_matches_memory() {
    let layout = MemoryLayout::new(32 * MIB).unwrap();
    let (mem, r) = boot(&layout, fake_bzimage(&FakeHdr::default()), None, "x");
    let cpu = r.unwrap().cpu;
    // Identity map of the first GiB: PML4[0] → PDPT, PDPT[0] → PD, 2 MiB pages.
    assert_eq!(cpu.cr3, PML4_ADDR);
    assert_eq!(u64_at(&mem, PML4_ADDR) & !0xFFF, PDPT_ADDR);
    assert_eq!(u64_at(&mem, PDPT_ADDR) & !0xFFF, PD_ADDR);
    for i in 0..512u64 {
        assert_eq!(u64_at(&mem, PD_ADDR + 8 * i), (i << 21) | 0x83);
    }
    let gdt = |sel: u16| u64_at(&mem, cpu.gdt_base + u64::from(sel));
    let cs = SegmentDesc::from_gdt_entry(BOOT_CS, gdt(BOOT_CS));
    assert!(cs.l && cs.present && cs.s && !cs.db);
    assert_eq!(cs, cpu.code_segment);
    let ds = SegmentDesc::from_gdt_entry(BOOT_DS, gdt(BOOT_DS));
    assert_eq!((ds.base, ds.limit, ds.db), (0, 0xFFFF_FFFF, true));
    assert_eq!(ds, cpu.data_segment);
}

#[test]
fn initrd_stays_below_initrd_addr_max() {
    let layout = MemoryLayout::new(128 * MIB).unwrap();
    let hdr = FakeHdr {
        initrd_addr_max: (48 * MIB - 1) as u32,
        ..FakeHdr::default()
    };
    let (_, r) = boot(&layout, fake_bzimage(&hdr), Some(vec![1; 5000]), "");
    let (addr, size) = r.unwrap().initrd.unwrap();
    assert!(addr + size <= 48 * MIB);
    assert_eq!(addr, (48 * MIB - 5000) & !0xFFF);
}

#[test]
fn initrd_that_cannot_fit_is_refused() {
    let layout = MemoryLayout::new(16 * MIB).unwrap();
    // The kernel wants 16 MiB + 4 MiB for decompression: no room at all.
    let (_, r) = boot(
        &layout,
        fake_bzimage(&FakeHdr::default()),
        Some(vec![0; 4096]),
        "",
    );
    assert!(matches!(r, Err(Error::InitrdTooLarge { .. })), "{r:?}");
}

#[test]
fn command_line_limits() {
    let layout = MemoryLayout::new(32 * MIB).unwrap();
    let hdr = FakeHdr {
        cmdline_size: 16,
        ..FakeHdr::default()
    };
    let (_, r) = boot(&layout, fake_bzimage(&hdr), None, &"a".repeat(16));
    assert!(r.is_ok());
    let (_, r) = boot(&layout, fake_bzimage(&hdr), None, &"a".repeat(17));
    assert!(matches!(r, Err(Error::CmdlineTooLong { len: 17, max: 16 })));
    let (_, r) = boot(&layout, fake_bzimage(&hdr), None, "a\0b");
    assert!(matches!(r, Err(Error::CmdlineNul)));
}

#[test]
fn unsupported_kernels_are_refused() {
    let layout = MemoryLayout::new(32 * MIB).unwrap();
    let no64 = FakeHdr {
        xloadflags: 0,
        ..FakeHdr::default()
    };
    let (_, r) = boot(&layout, fake_bzimage(&no64), None, "");
    assert!(matches!(r, Err(Error::KernelUnsupported(_))), "{r:?}");
    let old = FakeHdr {
        version: 0x0205,
        ..FakeHdr::default()
    };
    let (_, r) = boot(&layout, fake_bzimage(&old), None, "");
    assert!(matches!(r, Err(Error::KernelUnsupported(_))), "{r:?}");
    let (_, r) = boot(&layout, vec![0u8; 8192], None, "");
    assert!(matches!(r, Err(Error::KernelLoad(_))), "{r:?}");
}

/// A one-segment ELF64 executable loaded at `paddr`, entry at its start.
fn fake_elf(paddr: u64) -> Vec<u8> {
    let mut f = vec![0u8; 0x1000];
    let mut put = |off: usize, bytes: &[u8]| f[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, b"\x7fELF");
    put(4, &[2, 1, 1]); // 64-bit, little-endian, version 1
    put(16, &2u16.to_le_bytes()); // ET_EXEC
    put(18, &0x3Eu16.to_le_bytes()); // x86-64
    put(20, &1u32.to_le_bytes());
    put(24, &paddr.to_le_bytes()); // e_entry
    put(32, &64u64.to_le_bytes()); // e_phoff
    put(52, &64u16.to_le_bytes()); // e_ehsize
    put(54, &56u16.to_le_bytes()); // e_phentsize
    put(56, &1u16.to_le_bytes()); // e_phnum
    let ph = 64;
    put(ph, &1u32.to_le_bytes()); // PT_LOAD
    put(ph + 4, &5u32.to_le_bytes()); // R+X
    put(ph + 8, &0x1000u64.to_le_bytes()); // p_offset
    put(ph + 16, &paddr.to_le_bytes()); // p_vaddr
    put(ph + 24, &paddr.to_le_bytes()); // p_paddr
    put(ph + 32, &(PAYLOAD_LEN as u64).to_le_bytes()); // p_filesz
    put(ph + 40, &(PAYLOAD_LEN as u64 + 0x1000).to_le_bytes()); // p_memsz
    put(ph + 48, &0x1000u64.to_le_bytes());
    f.extend_from_slice(&payload());
    f
}

#[test]
fn elf_vmlinux_boots_at_its_physical_entry() {
    let layout = MemoryLayout::new(32 * MIB).unwrap();
    let (mem, r) = boot(&layout, fake_elf(0x20_0000), Some(vec![9; 100]), "quiet");
    let b = r.unwrap();
    assert_eq!((b.cpu.rip, b.cpu.rsi), (0x20_0000, ZERO_PAGE_ADDR));
    assert_eq!(
        b.kernel,
        (0x20_0000, 0x20_0000 + PAYLOAD_LEN as u64 + 0x1000)
    );
    assert_eq!(read(&mem, 0x20_0000, PAYLOAD_LEN), payload());
    let zp = ZERO_PAGE_ADDR;
    assert_eq!(u16_at(&mem, zp + 0x1FE), 0xAA55);
    assert_eq!(&read(&mem, zp + 0x202, 4), b"HdrS");
    assert_eq!(read(&mem, zp + 0x210, 1)[0], 0xFF);
    assert_eq!(u32_at(&mem, zp + 0x228), CMDLINE_ADDR as u32);
    // No header limit: the protocol's conservative default applies.
    let (addr, _) = b.initrd.unwrap();
    assert_eq!(addr, (32 * MIB - 100) & !0xFFF);
}

#[test]
fn load_linux_reads_files() {
    let dir = std::env::temp_dir();
    let kpath = dir.join(format!("spicebox-firmware-{}-bzImage", std::process::id()));
    let ipath = dir.join(format!("spicebox-firmware-{}-initrd", std::process::id()));
    std::fs::write(&kpath, fake_bzimage(&FakeHdr::default())).unwrap();
    std::fs::write(&ipath, [7u8; 3000]).unwrap();
    let layout = MemoryLayout::new(64 * MIB).unwrap();
    let mem = memory(&layout);
    let mut k = File::open(&kpath).unwrap();
    let mut i = File::open(&ipath).unwrap();
    let r = load_linux(&mem, &layout, &mut k, Some(&mut i), "console=ttyS0", 1);
    std::fs::remove_file(&kpath).unwrap();
    std::fs::remove_file(&ipath).unwrap();
    let b = r.unwrap();
    assert_eq!(b.initrd.unwrap().1, 3000);
    assert_eq!(read(&mem, 0x10_0000, PAYLOAD_LEN), payload());
}
