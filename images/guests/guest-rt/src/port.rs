//! Port I/O. The loader's TSS I/O bitmap opens every port, so `in`/`out`
//! work at CPL 3 (each one is a VM exit: ~27 µs on the test machines).

use core::arch::asm;

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O touches no memory of this program.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as inb.
    unsafe {
        asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as inb.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn outb(port: u16, v: u8) {
    // SAFETY: as inb. (A device may then DMA into memory: that is the
    // device test's business, as with MMIO.)
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

pub fn outw(port: u16, v: u16) {
    // SAFETY: as outb.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    };
}

pub fn outl(port: u16, v: u32) {
    // SAFETY: as outb.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    };
}
