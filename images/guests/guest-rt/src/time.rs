//! Time: the TSC, calibrated at start-up against the ACPI PM timer (3.579545
//! MHz at port 0x608, where SeaBIOS and spicebox put the PM block), or the
//! PIT's channel 2 if the PM timer does not count; the RTC for coarse,
//! calibration-free waits.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use crate::port::{inb, inl, outb};

const PM_TIMER_PORT: u16 = 0x608;
const PM_TIMER_HZ: u64 = 3_579_545;
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: long enough for ~0.1% accuracy despite the ~27 µs
/// each port read costs here, short enough not to matter.
const CALIBRATION: Duration = Duration::from_millis(10);

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_START: AtomicU64 = AtomicU64::new(0);

/// The time-stamp counter.
pub fn tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc reads a counter (CR4.TSD is clear, so CPL 3 may).
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// TSC ticks per second (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Which reference calibrated the TSC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    AcpiPmTimer,
    Pit,
}

static REFERENCE_IS_PIT: AtomicU64 = AtomicU64::new(0);

pub fn reference() -> Reference {
    if REFERENCE_IS_PIT.load(Ordering::Relaxed) != 0 {
        Reference::Pit
    } else {
        Reference::AcpiPmTimer
    }
}

pub(crate) fn init() {
    TSC_START.store(crate::boot::info().tsc_entry, Ordering::Relaxed);
    let hz = calibrate_pm_timer().unwrap_or_else(|| {
        REFERENCE_IS_PIT.store(1, Ordering::Relaxed);
        calibrate_pit()
    });
    if hz < 1_000_000 {
        crate::fail!("guest-rt", "TSC calibration gave {hz} Hz");
    }
    TSC_HZ.store(hz, Ordering::Relaxed);
}

fn pm_timer() -> u64 {
    u64::from(inl(PM_TIMER_PORT) & 0x00FF_FFFF)
}

fn calibrate_pm_timer() -> Option<u64> {
    let want = PM_TIMER_HZ * CALIBRATION.as_micros() as u64 / 1_000_000;
    let t0 = pm_timer();
    // The timer advances ~100 ticks between two reads here; one that does
    // not move over a few reads is not there.
    let mut moved = false;
    for _ in 0..8 {
        if pm_timer() != t0 {
            moved = true;
            break;
        }
    }
    if !moved {
        return None;
    }
    let start_pm = pm_timer();
    let start_tsc = tsc();
    loop {
        let elapsed = (pm_timer().wrapping_sub(start_pm)) & 0x00FF_FFFF;
        if elapsed >= want {
            let ticks = tsc() - start_tsc;
            return Some(ticks * PM_TIMER_HZ / elapsed);
        }
    }
}

/// PIT channel 2 in mode 0 (gate through port 0x61, output in its bit 5).
fn calibrate_pit() -> u64 {
    let count = PIT_HZ * CALIBRATION.as_micros() as u64 / 1_000_000;
    outb(0x61, (inb(0x61) & !0x02) | 0x01); // gate on, speaker off
    outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0, binary
    let start = tsc();
    outb(0x42, count as u8);
    outb(0x42, (count >> 8) as u8);
    let mut spins = 0u64;
    while inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins > 1_000_000 {
            crate::fail!(
                "guest-rt",
                "neither the ACPI PM timer nor PIT channel 2 counts"
            );
        }
    }
    (tsc() - start) * PIT_HZ / count
}

/// Nanoseconds since the loader handed over to the guest.
pub fn now_ns() -> u64 {
    ticks_to_ns(tsc().wrapping_sub(TSC_START.load(Ordering::Relaxed)))
}

/// Converts TSC ticks to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let hz = tsc_hz().max(1);
    (u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64
}

/// TSC ticks in `d`.
pub fn ticks_in(d: Duration) -> u64 {
    (u128::from(tsc_hz()) * d.as_nanos() / 1_000_000_000) as u64
}

/// A point in time to poll against: `Deadline::after(Duration::from_secs(2))`.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(u64);

impl Deadline {
    pub fn after(d: Duration) -> Deadline {
        Deadline(tsc() + ticks_in(d))
    }

    pub fn passed(&self) -> bool {
        tsc() >= self.0
    }
}

/// A stopwatch: `let t = Stopwatch::start(); ...; t.elapsed_ns()`.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(u64);

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch(tsc())
    }

    pub fn elapsed_ticks(&self) -> u64 {
        tsc() - self.0
    }

    pub fn elapsed_ns(&self) -> u64 {
        ticks_to_ns(self.elapsed_ticks())
    }
}

/// Busy-waits (there is no `hlt` at CPL 3).
pub fn sleep(d: Duration) {
    let deadline = Deadline::after(d);
    while !deadline.passed() {
        core::hint::spin_loop();
    }
}

/// Polls `done` until it returns true or `timeout` passes; true if it did.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Deadline::after(timeout);
    loop {
        if done() {
            return true;
        }
        if deadline.passed() {
            return done();
        }
        core::hint::spin_loop();
    }
}

/// The RTC's seconds register (BCD or binary, as the BIOS set it): changes
/// once a second whatever the CPU speed.
pub fn rtc_seconds() -> u8 {
    outb(0x70, 0x00);
    inb(0x71)
}
