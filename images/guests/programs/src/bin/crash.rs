//! crash: fails on purpose, to prove that a broken guest fails fast with a
//! reason. It prints `SPICEBOX-CRASH-READY` and waits for a byte on COM1:
//!
//! - `f`: writes to the unmapped null page at CPL 3; the CPL-0 exception
//!   handler prints `SPICEBOX-CRASH-FAIL exception 0e rip=...
//!   err=00000006 cr2=0000000000000010 ...` (a user-mode write to a
//!   not-present page) and powers off;
//! - `p`: panics; the panic handler prints `SPICEBOX-CRASH-FAIL panic
//!   deliberate panic 42 at programs/src/bin/crash.rs:<line>` and powers off.
#![no_std]
#![no_main]

use core::time::Duration;

use guest_rt::{fail, println, serial};

guest_rt::guest!("CRASH", main);

/// The address written; the test expects it in CR2.
const TARGET: u64 = 0x10;

fn main() {
    println!("SPICEBOX-CRASH-READY");
    match serial::read_byte(Duration::from_secs(60)) {
        Some(b'f') => {
            println!("crash: writing to {TARGET:#x}");
            // SAFETY: deliberately not: page 0 is not mapped, so this faults.
            unsafe { core::ptr::write_volatile(TARGET as *mut u64, 0xDEAD) };
            fail!("still-running", "the write to {TARGET:#x} did not fault");
        }
        Some(b'p') => panic!("deliberate panic {}", 42),
        Some(other) => fail!("input", "unexpected byte {other:#04x}"),
        None => fail!("input", "nothing on COM1 within 60 s"),
    }
}
