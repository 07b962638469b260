//! Runtime for spicebox's 64-bit Rust test guests.
//!
//! `images/asm/rust-loader.S` boots the guest: identity paging (virtual =
//! physical = device address), long mode, and an `iretq` to `_start`
//! ([`boot`]) at **CPL 3** with every I/O port open (the TSS's I/O bitmap),
//! so the guest does port I/O, MMIO and DMA with no system calls, at native
//! speed (CPL 0 is emulated on the test machines, ~1000x slower). This crate
//! is what the guest sees:
//!
//! - [`guest!`] names the guest and its `main`; returning from `main` prints
//!   `SPICEBOX-<NAME>-OK` and powers off; [`fail!`], [`check!`],
//!   [`OrFail`] and panics print `SPICEBOX-<NAME>-FAIL <step> <details>` and
//!   power off; a CPU exception does the same from CPL 0.
//! - [`println!`] on COM1; [`port`] I/O; [`mmio`]; [`pci`] configuration
//!   mechanism #1; [`mem`] (bump page allocator, DMA buffers, `alloc`, mapping
//!   above 4 GiB); [`time`] (TSC calibrated against the ACPI PM timer);
//!   [`irq`] (interrupt counters, LAPIC, IOAPIC, MSI); [`power`].
//!
//! See images/README.md, "Writing a Rust test guest".
#![no_std]

extern crate alloc;

pub mod boot;
mod builtins;
pub mod irq;
pub mod mem;
pub mod mmio;
pub mod pci;
pub mod port;
pub mod power;
pub mod serial;
pub mod time;

/// The conventions the VMM and the tests share with every guest
/// (`images/src/guest_abi.rs`): COM1, the ACPI power-off port and value.
#[allow(dead_code)]
pub mod abi {
    include!("../../../src/guest_abi.rs");
}

pub use power::{fail_with, ok, OrFail};

/// What [`guest!`] registers: the name in the guest's markers and its main
/// function.
pub struct Guest {
    pub name: &'static str,
    pub main: fn(),
}

/// Whether `name` can go into a marker: 1 to 31 of `A-Z`, `0-9` and `-`.
pub const fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 31 {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if !matches!(b[i], b'A'..=b'Z' | b'0'..=b'9' | b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// Declares the guest: its marker name (`"PCI-LIST"` gives
/// `SPICEBOX-PCI-LIST-OK` / `SPICEBOX-PCI-LIST-FAIL ...`) and its main
/// function, `fn()`, which runs at CPL 3 once the runtime is set up.
///
/// ```ignore
/// #![no_std]
/// #![no_main]
/// guest_rt::guest!("PCI-LIST", main);
/// fn main() { guest_rt::println!("hello"); }
/// ```
#[macro_export]
macro_rules! guest {
    ($name:literal, $main:path) => {
        const _: () = assert!(
            $crate::valid_name($name),
            "guest name: 1 to 31 of A-Z, 0-9 and '-'"
        );
        #[no_mangle]
        static __GUEST_RT_GUEST: $crate::Guest = $crate::Guest {
            name: $name,
            main: $main,
        };
    };
}

/// Prints to COM1 (no newline).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::serial::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to COM1, ended with CR LF.
#[macro_export]
macro_rules! println {
    () => { $crate::serial::write_str("\r\n") };
    ($($arg:tt)*) => {{
        $crate::serial::print_fmt(format_args!($($arg)*));
        $crate::serial::write_str("\r\n");
    }};
}

/// Fails the test: prints `SPICEBOX-<NAME>-FAIL <step> <details>` and powers
/// off. `step` is one word naming what failed (`"pci-scan"`); the details
/// are `format!` arguments.
#[macro_export]
macro_rules! fail {
    ($step:expr) => { $crate::power::fail_with($step, format_args!("")) };
    ($step:expr, $($arg:tt)+) => { $crate::power::fail_with($step, format_args!($($arg)+)) };
}

/// `check!(cond, step)` or `check!(cond, step, "details {}", x)`: [`fail!`]
/// unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $step:expr) => {
        if !$cond {
            $crate::fail!($step, "{}", stringify!($cond));
        }
    };
    ($cond:expr, $step:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::fail!($step, $($arg)+);
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    power::panicked(info)
}
