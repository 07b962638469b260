//! The entry from the loader and the boot info block it leaves.

use core::mem::offset_of;

use crate::Guest;

/// One entry of the BIOS e820 memory map, as int 15h E820 returns it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct E820Entry {
    pub base: u64,
    pub len: u64,
    /// 1 = usable RAM, 2 = reserved, 3 = ACPI reclaimable, 4 = ACPI NVS.
    pub kind: u32,
    pub attr: u32,
}

pub const E820_RAM: u32 = 1;

/// What `rust-loader.S` (`BI_*` offsets there) leaves at the address in RDI.
#[repr(C)]
pub struct BootInfo {
    pub magic: [u8; 8],
    pub version: u32,
    pub size: u32,
    /// The identity page tables (user-writable; see [`crate::mem::map`]).
    pub pml4: u64,
    /// `[u64; 256]`: interrupts taken per vector (see [`crate::irq`]).
    pub irq_counts: u64,
    /// This code's stack, with a guard page below `stack_bottom`.
    pub stack_bottom: u64,
    pub stack_top: u64,
    /// The image in memory, from its load address to the end of its bss.
    pub image_start: u64,
    pub image_end: u64,
    /// TSC when the loader started (after the BIOS) and right before the
    /// `iretq` to CPL 3.
    pub tsc_loader: u64,
    pub tsc_entry: u64,
    pub boot_drive: u32,
    pub e820_count: u32,
    /// The guest's marker name, NUL-padded: the CPL-0 exception handler
    /// prints it. Written at entry, before anything else runs.
    pub name: [u8; 32],
    pub e820: [E820Entry; 64],
}

const BOOT_MAGIC: [u8; 8] = *b"SPBXBOOT";
const BOOT_VERSION: u32 = 1;

// The loader writes these offsets (rust-loader.S, BI_*).
const _: () = {
    assert!(offset_of!(BootInfo, pml4) == 0x10);
    assert!(offset_of!(BootInfo, irq_counts) == 0x18);
    assert!(offset_of!(BootInfo, image_start) == 0x30);
    assert!(offset_of!(BootInfo, tsc_loader) == 0x40);
    assert!(offset_of!(BootInfo, boot_drive) == 0x50);
    assert!(offset_of!(BootInfo, e820_count) == 0x54);
    assert!(offset_of!(BootInfo, name) == 0x58);
    assert!(offset_of!(BootInfo, e820) == 0x78);
    assert!(core::mem::size_of::<BootInfo>() == 0x78 + 64 * 24);
};

static mut BOOT_INFO: *const BootInfo = core::ptr::null();

/// The boot info block.
pub fn info() -> &'static BootInfo {
    // SAFETY: set once in `start` before any guest code runs; the block is
    // never written after that (CPL 0 writes only the interrupt counters,
    // which live elsewhere).
    unsafe { &*BOOT_INFO }
}

/// The e820 map the BIOS reported.
pub fn e820() -> &'static [E820Entry] {
    let info = info();
    &info.e820[..(info.e820_count as usize).min(info.e820.len())]
}

/// The guest's marker name (`"PCI-LIST"`).
pub fn name() -> &'static str {
    guest().name
}

extern "Rust" {
    // Defined by the guest! macro in the guest binary.
    static __GUEST_RT_GUEST: Guest;
}

fn guest() -> &'static Guest {
    // SAFETY: an immutable static the guest! macro defines; a guest that
    // forgot the macro fails to link.
    unsafe { &__GUEST_RT_GUEST }
}

// The loader jumps here at CPL 3 with RDI = boot info, RSP = stack top,
// IF = 0. Zero the bss (natively, here, rather than in the emulated loader),
// reset the x87 and SSE control state, then call `start`.
core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "mov %rdi, %r12",
    "mov $__bss_start, %edi",
    "mov $__bss_end, %ecx",
    "sub %edi, %ecx",
    "xor %eax, %eax",
    "cld",
    "rep stosb",
    "fninit",
    "push $0x1f80",
    "ldmxcsr (%rsp)",
    "add $8, %rsp",
    "mov %r12, %rdi",
    "xor %ebp, %ebp",
    "and $-16, %rsp",
    "call {start}",
    "ud2",
    start = sym start,
    options(att_syntax)
);

extern "C" fn start(boot_info: *mut BootInfo) -> ! {
    // SAFETY: the loader passes its boot info block in RDI; the magic is
    // checked before anything else is read.
    let magic = unsafe { core::ptr::addr_of!((*boot_info).magic).read_volatile() };
    if magic != BOOT_MAGIC {
        crate::serial::write_str("SPICEBOX-FAIL guest-rt boot-info magic\r\n");
        crate::power::off();
    }
    // SAFETY: as above; the name is written through the raw pointer before
    // any shared reference to the block exists.
    unsafe {
        let name = guest().name.as_bytes();
        let dst = core::ptr::addr_of_mut!((*boot_info).name) as *mut u8;
        core::ptr::copy_nonoverlapping(name.as_ptr(), dst, name.len().min(31));
        BOOT_INFO = boot_info;
    }
    let info = info();
    check_image(info.image_start);
    if info.version != BOOT_VERSION || info.size as usize != core::mem::size_of::<BootInfo>() {
        crate::fail!(
            "guest-rt",
            "boot info version {} size {}",
            info.version,
            info.size
        );
    }
    crate::serial::init();
    for (what, start, end) in [
        ("stack", info.stack_bottom, info.stack_top),
        ("image", info.image_start, info.image_end),
    ] {
        if !e820()
            .iter()
            .any(|e| e.kind == E820_RAM && e.base <= start && end <= e.base.saturating_add(e.len))
        {
            crate::fail!(
                "guest-rt",
                "the {what} at {start:#x}-{end:#x} is not RAM in the e820 map"
            );
        }
    }
    crate::mem::init();
    crate::irq::init();
    crate::time::init();
    (guest().main)();
    crate::power::ok()
}

/// Checks the image against the checksum images/build.rs put in its header
/// (FNV-1a 64 of the loaded bytes with the checksum field zero), before any
/// of its data is written: a loader that misplaced or skipped a chunk fails
/// here, with a reason, instead of somewhere random. ~0.3 ms for 250 KiB.
fn check_image(start: u64) {
    const SIZE_AT: u64 = 0x10;
    const CHECKSUM_AT: u64 = 0x28;
    // SAFETY: the loader put the image, header first, at `start`; its size
    // field bounds the loaded bytes.
    let (len, want) = unsafe {
        (
            core::ptr::read_volatile((start + SIZE_AT) as *const u64),
            core::ptr::read_volatile((start + CHECKSUM_AT) as *const u64),
        )
    };
    // SAFETY: as above.
    let bytes = unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) };
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for (i, &b) in bytes.iter().enumerate() {
        let in_field = (CHECKSUM_AT..CHECKSUM_AT + 8).contains(&(i as u64));
        h = (h ^ u64::from(if in_field { 0 } else { b })).wrapping_mul(0x100_0000_01B3);
    }
    if h != want {
        crate::fail!(
            "guest-rt",
            "image checksum {h:#x}, header says {want:#x}: the loader did not load {len} bytes intact"
        );
    }
}
