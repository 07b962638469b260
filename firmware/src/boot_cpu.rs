//! The boot vCPU's 64-bit state for direct Linux boot, as plain data, plus the
//! GDT and identity page tables it relies on in guest memory.
//!
//! The Linux 64-bit boot protocol wants long mode with paging on, an identity
//! mapping covering the kernel, zero page and command line, `__BOOT_CS` = 0x10 as
//! a 64-bit code segment and `__BOOT_DS` = 0x18 as a flat data segment, and RSI
//! pointing at the zero page.

use vm_memory::GuestMemoryMmap;

use crate::{write_guest, Result};

/// GDT: null, unused, code (0x10), data (0x18), TSS (0x20) — Linux's own boot GDT
/// shape (arch/x86/boot/pm.c), so the selectors mean what the kernel expects.
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT right after the GDT: the kernel installs its own before it
/// enables interrupts, and any earlier fault should be fatal anyway.
pub const IDT_ADDR: u64 = GDT_ADDR + 8 * GDT_ENTRIES as u64;
/// Stack for the first instructions (the kernel switches to its own quickly);
/// the page between the zero page (0x7000) and the PML4.
pub const BOOT_STACK: u64 = 0x8FF0;
/// PML4, one PDPT, and four page directories mapping 0-4 GiB with 2 MiB pages.
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xA000;
pub const PD_ADDR: u64 = 0xB000;
const _: () = assert!(PDPT_ADDR == PML4_ADDR + 4096 && PD_ADDR == PDPT_ADDR + 4096);
/// Gigabytes identity-mapped: all of low RAM, wherever the initrd landed in it.
pub const IDENTITY_MAPPED_GIB: u64 = 4;

pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
pub const BOOT_TSS: u16 = 0x20;
const GDT_ENTRIES: usize = 5;

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_HUGE: u64 = 1 << 7;

/// A segment register's full (hidden) state, in the shape of `kvm_segment`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentDesc {
    pub base: u64,
    /// Effective limit in bytes, already scaled by `g` (what `kvm_segment` wants).
    pub limit: u32,
    pub selector: u16,
    /// The 4-bit descriptor type.
    pub type_: u8,
    pub present: bool,
    pub dpl: u8,
    /// D/B: default operand size 32 (must be 0 for a 64-bit code segment).
    pub db: bool,
    /// Code/data (true) or system (false) descriptor.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// Limit counts 4 KiB pages.
    pub g: bool,
    pub avl: bool,
}

impl SegmentDesc {
    /// Ring-0 64-bit code: execute/read, accessed.
    pub fn code64(selector: u16) -> SegmentDesc {
        SegmentDesc {
            selector,
            type_: 0xB,
            l: true,
            ..Self::flat()
        }
    }

    /// Ring-0 flat 4 GiB data: read/write, accessed.
    pub fn data(selector: u16) -> SegmentDesc {
        SegmentDesc {
            selector,
            type_: 0x3,
            db: true,
            ..Self::flat()
        }
    }

    /// A busy 64-bit TSS. VMX refuses to enter a long-mode guest whose TR is not
    /// a present busy TSS, so one is needed although Linux loads its own at once.
    pub fn tss(selector: u16) -> SegmentDesc {
        SegmentDesc {
            base: 0,
            limit: 0x67,
            selector,
            type_: 0xB,
            present: true,
            ..SegmentDesc::default()
        }
    }

    fn flat() -> SegmentDesc {
        SegmentDesc {
            base: 0,
            limit: 0xFFFF_FFFF,
            present: true,
            s: true,
            g: true,
            ..SegmentDesc::default()
        }
    }

    /// The 8-byte descriptor as it sits in a GDT.
    pub fn to_gdt_entry(&self) -> u64 {
        let limit = u64::from(if self.g { self.limit >> 12 } else { self.limit }) & 0xF_FFFF;
        let base = self.base & 0xFFFF_FFFF;
        let access = u64::from(self.type_ & 0xF)
            | u64::from(self.s) << 4
            | u64::from(self.dpl & 3) << 5
            | u64::from(self.present) << 7;
        let flags = u64::from(self.avl)
            | u64::from(self.l) << 1
            | u64::from(self.db) << 2
            | u64::from(self.g) << 3;
        (limit & 0xFFFF)
            | (base & 0xFF_FFFF) << 16
            | access << 40
            | (limit >> 16) << 48
            | flags << 52
            | (base >> 24) << 56
    }

    /// Decode a GDT entry found at `selector` (inverse of [`Self::to_gdt_entry`]).
    pub fn from_gdt_entry(selector: u16, e: u64) -> SegmentDesc {
        let raw_limit = ((e & 0xFFFF) | ((e >> 48) & 0xF) << 16) as u32;
        let g = (e >> 55) & 1 == 1;
        SegmentDesc {
            base: ((e >> 16) & 0xFF_FFFF) | ((e >> 56) & 0xFF) << 24,
            limit: if g {
                (raw_limit << 12) | 0xFFF
            } else {
                raw_limit
            },
            selector,
            type_: ((e >> 40) & 0xF) as u8,
            s: (e >> 44) & 1 == 1,
            dpl: ((e >> 45) & 3) as u8,
            present: (e >> 47) & 1 == 1,
            avl: (e >> 52) & 1 == 1,
            l: (e >> 53) & 1 == 1,
            db: (e >> 54) & 1 == 1,
            g,
        }
    }
}

/// Register state for the boot vCPU. The VMM loads `data_segment` into DS, ES, FS,
/// GS and SS, `tss_segment` into TR, leaves LDTR unusable, and sets every other
/// general register to 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootCpuState {
    pub rip: u64,
    pub rsp: u64,
    /// The zero page (`boot_params`) address, as the boot protocol requires.
    pub rsi: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub idt_base: u64,
    pub idt_limit: u16,
    pub code_segment: SegmentDesc,
    pub data_segment: SegmentDesc,
    pub tss_segment: SegmentDesc,
}

/// The GDT contents, index = selector / 8.
fn gdt() -> [u64; GDT_ENTRIES] {
    [
        0,
        0,
        SegmentDesc::code64(BOOT_CS).to_gdt_entry(),
        SegmentDesc::data(BOOT_DS).to_gdt_entry(),
        SegmentDesc::tss(BOOT_TSS).to_gdt_entry(),
    ]
}

/// PML4 → PDPT → 4 page directories of 2 MiB pages, identity-mapping 0-4 GiB.
fn page_tables() -> Vec<u8> {
    let pd_count = IDENTITY_MAPPED_GIB as usize;
    let mut tables = vec![0u8; (2 + pd_count) * 4096];
    let mut put = |offset: usize, value: u64| {
        tables[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    };
    put(0, PDPT_ADDR | PTE_PRESENT | PTE_WRITABLE);
    for i in 0..pd_count {
        let pd = PD_ADDR + 4096 * i as u64;
        put(4096 + 8 * i, pd | PTE_PRESENT | PTE_WRITABLE);
    }
    for page in 0..512 * pd_count {
        let entry = ((page as u64) << 21) | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE;
        put(2 * 4096 + 8 * page, entry);
    }
    tables
}

/// Write the GDT and page tables, and return the state that enters the kernel's
/// 64-bit entry point `entry` with RSI = `boot_params`.
pub fn setup_long_mode(
    mem: &GuestMemoryMmap<()>,
    entry: u64,
    boot_params: u64,
) -> Result<BootCpuState> {
    let gdt_bytes: Vec<u8> = gdt().iter().flat_map(|e| e.to_le_bytes()).collect();
    write_guest(mem, GDT_ADDR, &gdt_bytes)?;
    // The tables are contiguous from the PML4 up, so one write places them all.
    write_guest(mem, PML4_ADDR, &page_tables())?;
    Ok(BootCpuState {
        rip: entry,
        rsp: BOOT_STACK,
        rsi: boot_params,
        // Bit 1 is reserved and always set; interrupts stay off.
        rflags: 0x2,
        cr0: CR0_PE | CR0_ET | CR0_PG,
        cr3: PML4_ADDR,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA,
        gdt_base: GDT_ADDR,
        gdt_limit: (gdt_bytes.len() - 1) as u16,
        idt_base: IDT_ADDR,
        idt_limit: 0,
        code_segment: SegmentDesc::code64(BOOT_CS),
        data_segment: SegmentDesc::data(BOOT_DS),
        tss_segment: SegmentDesc::tss(BOOT_TSS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress};

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0xA0000)]).unwrap()
    }

    #[test]
    fn descriptors_encode_like_the_classic_constants() {
        // The well-known flat descriptors: 0x00af9b000000ffff / 0x00cf93000000ffff.
        assert_eq!(
            SegmentDesc::code64(0x10).to_gdt_entry(),
            0x00AF_9B00_0000_FFFF
        );
        assert_eq!(
            SegmentDesc::data(0x18).to_gdt_entry(),
            0x00CF_9300_0000_FFFF
        );
        assert_eq!(SegmentDesc::tss(0x20).to_gdt_entry(), 0x0000_8B00_0000_0067);
    }

    #[test]
    fn gdt_in_memory_decodes_to_long_mode_code_and_flat_data() {
        let m = mem();
        let s = setup_long_mode(&m, 0x10_0200, 0x7000).unwrap();
        assert_eq!((s.gdt_base, s.gdt_limit), (GDT_ADDR, 39));
        let entry =
            |sel: u16| -> u64 { m.read_obj(GuestAddress(GDT_ADDR + u64::from(sel))).unwrap() };
        assert_eq!(entry(0), 0);
        let cs = SegmentDesc::from_gdt_entry(BOOT_CS, entry(BOOT_CS));
        assert!(cs.l && !cs.db && cs.s && cs.present && cs.type_ & 0x8 != 0);
        assert_eq!(cs, s.code_segment);
        let ds = SegmentDesc::from_gdt_entry(BOOT_DS, entry(BOOT_DS));
        assert!(!ds.l && ds.db && ds.g && ds.type_ & 0x8 == 0 && ds.type_ & 0x2 != 0);
        assert_eq!((ds.base, ds.limit), (0, 0xFFFF_FFFF));
        assert_eq!(ds, s.data_segment);
        let tr = SegmentDesc::from_gdt_entry(BOOT_TSS, entry(BOOT_TSS));
        assert_eq!(tr, s.tss_segment);
        assert!(!tr.s && tr.type_ == 0xB);
        // The IDT does not overlap the GDT.
        assert!(s.idt_base > s.gdt_base + u64::from(s.gdt_limit));
    }

    #[test]
    fn registers_select_long_mode() {
        let s = setup_long_mode(&mem(), 0x10_0200, 0x7000).unwrap();
        assert_eq!((s.rip, s.rsi, s.rsp), (0x10_0200, 0x7000, BOOT_STACK));
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(s.cr4 & CR4_PAE, CR4_PAE);
        assert_eq!(s.efer, EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, PML4_ADDR);
    }

    /// Walk the tables in guest memory the way the MMU does for a 2 MiB page.
    fn translate(m: &GuestMemoryMmap<()>, cr3: u64, va: u64) -> Option<u64> {
        let read = |a: u64| -> u64 { m.read_obj(GuestAddress(a)).unwrap() };
        let addr_mask = 0x000F_FFFF_FFFF_F000u64;
        let pml4e = read(cr3 + 8 * ((va >> 39) & 511));
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte = read((pml4e & addr_mask) + 8 * ((va >> 30) & 511));
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = read((pdpte & addr_mask) + 8 * ((va >> 21) & 511));
        if pde & 1 == 0 || pde & PTE_HUGE == 0 {
            return None;
        }
        Some((pde & 0x000F_FFFF_FFE0_0000) | (va & 0x1F_FFFF))
    }

    #[test]
    fn page_tables_identity_map_the_low_4g() {
        let m = mem();
        let s = setup_long_mode(&m, 0x10_0200, 0x7000).unwrap();
        for va in [
            0u64,
            0x7000,
            0x10_0000,
            0x3FFF_FFFF,
            0x4000_0000,
            0xBFFF_F123,
            0xFFFF_FFFF,
        ] {
            assert_eq!(translate(&m, s.cr3, va), Some(va), "{va:#x}");
        }
        assert_eq!(translate(&m, s.cr3, 1 << 32), None);
        // Every 2 MiB page of the first GiB is present and writable.
        for page in 0..512u64 {
            let pde: u64 = m.read_obj(GuestAddress(PD_ADDR + 8 * page)).unwrap();
            assert_eq!(pde, (page << 21) | 0x83);
        }
    }
}
