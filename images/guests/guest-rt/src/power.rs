//! The end of every guest: the success or failure marker, then ACPI
//! power-off.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::abi::{ACPI_PM1A_CNT_PORT, ACPI_POWER_OFF_VALUE};
use crate::port::outw;
use crate::{boot, print, println, serial, time};

/// ACPI S5 (`outw(ACPI_PM1A_CNT_PORT, ACPI_POWER_OFF_VALUE)`). A VMM that
/// is still running 3 s later gets "SPICEBOX-FAIL poweroff" on COM1 and a
/// guest spinning forever.
pub fn off() -> ! {
    outw(ACPI_PM1A_CNT_PORT, ACPI_POWER_OFF_VALUE);
    if time::tsc_hz() != 0 {
        time::sleep(core::time::Duration::from_secs(3));
    } else {
        // Not calibrated yet: about as long, as long as the RTC ticks.
        let mut changes = 0;
        let mut last = time::rtc_seconds();
        while changes < 3 {
            let now = time::rtc_seconds();
            if now != last {
                changes += 1;
                last = now;
            }
        }
    }
    serial::write_str("SPICEBOX-FAIL poweroff\r\n");
    loop {
        core::hint::spin_loop();
    }
}

/// Prints `SPICEBOX-<NAME>-OK` and powers off. Returning from the guest's
/// main does this.
pub fn ok() -> ! {
    println!("SPICEBOX-{}-OK", boot::name());
    off()
}

/// Prints `SPICEBOX-<NAME>-FAIL <step> <details>` and powers off; see
/// [`crate::fail!`].
pub fn fail_with(step: &str, details: fmt::Arguments) -> ! {
    print!("SPICEBOX-{}-FAIL {step}", boot::name());
    let mut check = IsEmpty(true);
    let _ = fmt::write(&mut check, details);
    if !check.0 {
        print!(" {details}");
    }
    println!();
    off()
}

struct IsEmpty(bool);

impl fmt::Write for IsEmpty {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 &= s.is_empty();
        Ok(())
    }
}

/// `.or_fail("step")` on an `Option` or `Result`: the value, or a failure
/// marker for `step` (with the error's `Debug` form).
pub trait OrFail<T> {
    fn or_fail(self, step: &str) -> T;
}

impl<T> OrFail<T> for Option<T> {
    #[track_caller]
    fn or_fail(self, step: &str) -> T {
        match self {
            Some(v) => v,
            None => fail_with(step, format_args!("none")),
        }
    }
}

impl<T, E: fmt::Debug> OrFail<T> for Result<T, E> {
    #[track_caller]
    fn or_fail(self, step: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => fail_with(step, format_args!("{e:?}")),
        }
    }
}

static PANICKING: AtomicBool = AtomicBool::new(false);

pub(crate) fn panicked(info: &core::panic::PanicInfo) -> ! {
    if PANICKING.swap(true, Ordering::Relaxed) {
        // Panicked while reporting a panic: just stop.
        serial::write_str("\r\nSPICEBOX-FAIL double-panic\r\n");
        off();
    }
    match info.location() {
        Some(loc) => fail_with(
            "panic",
            format_args!("{} at {}:{}", info.message(), loc.file(), loc.line()),
        ),
        None => fail_with("panic", format_args!("{}", info.message())),
    }
}
