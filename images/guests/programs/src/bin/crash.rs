//! crash: writes to the unmapped null page at CPL 3, to prove that a guest
//! which faults fails fast: the CPL-0 exception handler prints
//! `SPICEBOX-CRASH-FAIL exception 0e rip=... err=00000006 cr2=0000000000000010 ...`
//! (a user-mode write to a not-present page) and powers off.
#![no_std]
#![no_main]

guest_rt::guest!("CRASH", main);

/// The address written; the test expects it in CR2.
const TARGET: u64 = 0x10;

fn main() {
    guest_rt::println!("crash: writing to {TARGET:#x}");
    // SAFETY: deliberately not: page 0 is not mapped, so this faults.
    unsafe { core::ptr::write_volatile(TARGET as *mut u64, 0xDEAD) };
    guest_rt::fail!("still-running", "the write to {TARGET:#x} did not fault");
}
