//! Time: the TSC, calibrated at start-up against the ACPI PM timer (3.579545
//! MHz at port 0x608, where SeaBIOS and spicebox put the PM block), or the
//! PIT's channel 2 if the PM timer does not count; the RTC for coarse,
//! calibration-free waits.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

static REFERENCE_IS_PIT: AtomicBool = AtomicBool::new(false);

pub fn reference() -> Reference {
    if REFERENCE_IS_PIT.load(Ordering::Relaxed) {
        Reference::Pit
    } else {
        Reference::AcpiPmTimer
    }
}

pub(crate) fn init() {
    TSC_START.store(crate::boot::info().tsc_entry, Ordering::Relaxed);
    let hz = calibrate_pm_timer().unwrap_or_else(|| {
        REFERENCE_IS_PIT.store(true, Ordering::Relaxed);
        calibrate_pit()
    });
    if hz < 1_000_000 {
        crate::fail!("guest-rt", "TSC calibration gave {hz} Hz");
    }
    TSC_HZ.store(hz, Ordering::Relaxed);
}

/// Measures the TSC frequency against `reference` (10 ms) without changing
/// what [`tsc_hz`] says; None if the reference does not count. For
/// cross-checks: start-up already calibrated against the best one.
pub fn measure_tsc_hz(reference: Reference) -> Option<u64> {
    match reference {
        Reference::AcpiPmTimer => calibrate_pm_timer(),
        Reference::Pit => Some(calibrate_pit()),
    }
}

fn pm_timer() -> u64 {
    u64::from(inl(PM_TIMER_PORT) & 0x00FF_FFFF)
}

/// The TSC in the middle of the quickest of a few reads of a reference
/// clock, and what it read: each read is a VM exit, and one that happened to
/// wait for the host scheduler would skew the calibration.
fn sample(read: &mut impl FnMut() -> u64) -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..5 {
        let t0 = tsc();
        let v = read();
        let took = tsc() - t0;
        if took < best.0 {
            best = (took, t0 + took / 2, v);
        }
    }
    (best.1, best.2)
}

/// TSC ticks per second against a reference counting at `hz`, whose
/// `elapsed(from, to)` ticks must not wrap within the calibration window.
fn calibrate(hz: u64, mut read: impl FnMut() -> u64, elapsed: impl Fn(u64, u64) -> u64) -> u64 {
    let want = hz * CALIBRATION.as_micros() as u64 / 1_000_000;
    let (t0, v0) = sample(&mut read);
    while elapsed(v0, read()) < want {}
    let (t1, v1) = sample(&mut read);
    (u128::from(t1 - t0) * u128::from(hz) / u128::from(elapsed(v0, v1).max(1))) as u64
}

fn calibrate_pm_timer() -> Option<u64> {
    // The timer advances ~100 ticks between two reads here; one that does
    // not move over a few reads is not there.
    let t0 = pm_timer();
    if !(0..8).any(|_| pm_timer() != t0) {
        return None;
    }
    Some(calibrate(PM_TIMER_HZ, pm_timer, |a, b| {
        b.wrapping_sub(a) & 0x00FF_FFFF
    }))
}

/// PIT channel 2 counting down from 0xFFFF (55 ms per wrap), gated on
/// through port 0x61, read with the latch command.
fn calibrate_pit() -> u64 {
    outb(0x61, (inb(0x61) & !0x02) | 0x01); // gate on, speaker off
    outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0, binary
    outb(0x42, 0xFF);
    outb(0x42, 0xFF);
    let read = || {
        outb(0x43, 0x80); // latch channel 2
        let lo = inb(0x42);
        let hi = inb(0x42);
        u64::from(u16::from_le_bytes([lo, hi]))
    };
    let first = read();
    if !(0..8).any(|_| read() != first) {
        crate::fail!(
            "guest-rt",
            "neither the ACPI PM timer nor PIT channel 2 counts"
        );
    }
    calibrate(PIT_HZ, read, |a, b| a.wrapping_sub(b) & 0xFFFF)
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
