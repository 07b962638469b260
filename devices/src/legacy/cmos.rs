//! MC146818 RTC and its 128 bytes of CMOS RAM, behind ports 0x70 (index; bit 7
//! masks NMI) and 0x71 (data).
//!
//! The clock is the host's UTC clock plus an offset the guest changes by writing
//! the time. Register C flags (periodic, alarm, update-ended) are computed when read
//! and, while an interrupt is enabled, by a small thread that raises IRQ8; the line
//! stays high until the guest reads register C, like the chip's IRQ pin.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, warn};

use crate::interrupt::LevelTracker;
use crate::{BusDevice, IrqLine, Reset};

pub const BASE: u64 = 0x70;
pub const LEN: u64 = 2;
/// The RTC's ISA IRQ.
pub const IRQ: u8 = 8;

const SEC: usize = 0x00;
const ALARM_SEC: usize = 0x01;
const MIN: usize = 0x02;
const ALARM_MIN: usize = 0x03;
const HOUR: usize = 0x04;
const ALARM_HOUR: usize = 0x05;
const WEEKDAY: usize = 0x06;
const DAY: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;
/// Index of the century byte (the FADT names it for the OS).
pub const CENTURY: usize = 0x32;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_SQWE: u8 = 0x08;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;

/// The chip sets UIP this long before each update, guaranteeing that much time
/// for reading a consistent time after seeing it clear.
const UIP_NS: u32 = 244_000;
/// Periodic rates above 1024 Hz run at 1024 Hz: no guest we run depends on faster
/// RTC ticks, and it bounds the host wake-ups of the timer thread.
const MIN_PERIOD: Duration = Duration::from_nanos(976_563);

/// Host wall-clock time since the Unix epoch; a parameter so tests can set the time.
type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

struct Rtc {
    regs: [u8; 128],
    /// Guest time minus host time, in seconds.
    offset: i64,
    clock: Clock,
    /// The guest second in which the update flag / alarm were last evaluated.
    last_sec: i64,
    next_periodic: Option<Instant>,
    irq: LevelTracker,
    stop: bool,
}

struct Shared {
    rtc: Mutex<Rtc>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Rtc> {
        self.rtc.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Cmos {
    shared: Arc<Shared>,
    index: u8,
    nmi_masked: bool,
    thread: Option<JoinHandle<()>>,
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (era-based, valid for any year).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil`: (year, month 1-12, day 1-31).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Rtc {
    fn host_now(&self) -> Duration {
        (self.clock)()
    }

    fn guest_secs(&self, host: Duration) -> i64 {
        (host.as_secs() as i64).saturating_add(self.offset)
    }

    fn binary(&self) -> bool {
        self.regs[REG_B] & B_BINARY != 0
    }

    fn enc(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            to_bcd(v)
        }
    }

    fn dec(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            from_bcd(v)
        }
    }

    fn enc_hour(&self, h: u8) -> u8 {
        if self.regs[REG_B] & B_24H != 0 {
            return self.enc(h);
        }
        let h12 = match h % 12 {
            0 => 12,
            x => x,
        };
        self.enc(h12) | if h >= 12 { 0x80 } else { 0 }
    }

    fn dec_hour(&self, v: u8) -> u8 {
        if self.regs[REG_B] & B_24H != 0 {
            return self.dec(v);
        }
        self.dec(v & 0x7f) % 12 + if v & 0x80 != 0 { 12 } else { 0 }
    }

    /// Put the current guest time into the time registers (frozen while SET).
    fn latch_time(&mut self, host: Duration) {
        if self.regs[REG_B] & B_SET != 0 {
            return;
        }
        let t = self.guest_secs(host);
        let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        self.regs[SEC] = self.enc((secs % 60) as u8);
        self.regs[MIN] = self.enc((secs / 60 % 60) as u8);
        self.regs[HOUR] = self.enc_hour((secs / 3600) as u8);
        // 1970-01-01 was a Thursday; the register counts Sunday as 1.
        self.regs[WEEKDAY] = self.enc(((days + 4).rem_euclid(7) + 1) as u8);
        self.regs[DAY] = self.enc(d);
        self.regs[MONTH] = self.enc(m);
        self.regs[YEAR] = self.enc(y.rem_euclid(100) as u8);
        self.regs[CENTURY] = self.enc(y.div_euclid(100).clamp(0, 99) as u8);
    }

    /// The guest wrote the time: remember how far it is from the host clock.
    fn adopt_time(&mut self, host: Duration) {
        let r = &self.regs;
        let field = |i: usize, max: u8| i64::from(self.dec(r[i]).min(max));
        let year = field(CENTURY, 99) * 100 + field(YEAR, 99);
        let month = field(MONTH, 12).max(1);
        let day = field(DAY, 31).max(1);
        let hour = i64::from(self.dec_hour(r[HOUR]).min(23));
        let secs = days_from_civil(year, month, day) * 86_400
            + hour * 3600
            + field(MIN, 59) * 60
            + field(SEC, 59);
        self.offset = secs - host.as_secs() as i64;
        self.last_sec = self.guest_secs(host);
    }

    fn uip(&self, host: Duration) -> bool {
        self.regs[REG_B] & B_SET == 0 && host.subsec_nanos() >= 1_000_000_000 - UIP_NS
    }

    fn period(&self) -> Option<Duration> {
        let rate = u32::from(self.regs[REG_A] & 0x0f);
        // Rates 1 and 2 are 256 and 128 Hz; 3-15 are 65536 >> rate Hz.
        let shift = match rate {
            0 => return None,
            1 | 2 => rate + 7,
            _ => rate,
        };
        let p = Duration::from_nanos(1_000_000_000u64 * (1 << shift) / 65_536);
        Some(p.max(MIN_PERIOD))
    }

    fn alarm_matches(&self) -> bool {
        [(ALARM_SEC, SEC), (ALARM_MIN, MIN), (ALARM_HOUR, HOUR)]
            .iter()
            .all(|&(a, t)| self.regs[a] & 0xc0 == 0xc0 || self.regs[a] == self.regs[t])
    }

    /// Bring the register C flags up to `now` and drive IRQ8.
    fn poll(&mut self, now: Instant) {
        if let (Some(next), Some(p)) = (self.next_periodic, self.period()) {
            if now >= next {
                self.regs[REG_C] |= C_PF;
                // Ticks the thread slept through are coalesced into this one.
                self.next_periodic = Some(if now >= next + p { now + p } else { next + p });
            }
        }
        let host = self.host_now();
        let sec = self.guest_secs(host);
        if sec != self.last_sec && self.regs[REG_B] & B_SET == 0 {
            self.last_sec = sec;
            self.latch_time(host);
            self.regs[REG_C] |= C_UF;
            if self.alarm_matches() {
                self.regs[REG_C] |= C_AF;
            }
        }
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let (b, c) = (self.regs[REG_B], self.regs[REG_C]);
        let high = (c & C_PF != 0 && b & B_PIE != 0)
            || (c & C_AF != 0 && b & B_AIE != 0)
            || (c & C_UF != 0 && b & B_UIE != 0);
        if high {
            self.regs[REG_C] |= C_IRQF;
        } else {
            self.regs[REG_C] &= !C_IRQF;
        }
        self.irq.set(high);
    }

    /// How long the timer thread may sleep; None when no interrupt is enabled.
    fn next_wake(&self, now: Instant) -> Option<Duration> {
        let b = self.regs[REG_B];
        let periodic = match self.next_periodic {
            Some(t) if b & B_PIE != 0 => Some(t.saturating_duration_since(now)),
            _ => None,
        };
        let second = (b & (B_AIE | B_UIE) != 0).then(|| {
            // Just past the next second boundary.
            let ns = 1_000_000_000 - self.host_now().subsec_nanos();
            Duration::from_nanos(u64::from(ns) + 100_000)
        });
        match (periodic, second) {
            (Some(p), Some(s)) => Some(p.min(s)),
            (p, s) => p.or(s),
        }
    }

    fn read(&mut self, idx: usize) -> u8 {
        let host = self.host_now();
        self.poll(Instant::now());
        match idx {
            SEC | MIN | HOUR | WEEKDAY..=YEAR | CENTURY => {
                self.latch_time(host);
                self.regs[idx]
            }
            REG_A => self.regs[REG_A] | if self.uip(host) { A_UIP } else { 0 },
            REG_C => {
                let v = self.regs[REG_C];
                self.regs[REG_C] = 0;
                self.update_irq();
                v
            }
            REG_D => D_VRT,
            _ => self.regs[idx],
        }
    }

    fn write(&mut self, idx: usize, v: u8) {
        let host = self.host_now();
        match idx {
            SEC | MIN | HOUR | WEEKDAY..=YEAR | CENTURY => {
                let running = self.regs[REG_B] & B_SET == 0;
                if running {
                    self.latch_time(host);
                }
                self.regs[idx] = v;
                if running {
                    self.adopt_time(host);
                }
            }
            REG_A => {
                let old = self.period();
                self.regs[REG_A] = v & !A_UIP;
                if self.period() != old {
                    self.next_periodic = self.period().map(|p| Instant::now() + p);
                }
            }
            REG_B => {
                let old = self.regs[REG_B];
                let mut v = v;
                if v & B_SET != 0 {
                    if old & B_SET == 0 {
                        self.latch_time(host);
                    }
                    // Setting SET clears UIE on the chip.
                    v &= !B_UIE;
                }
                self.regs[REG_B] = v;
                if old & B_SET != 0 && v & B_SET == 0 {
                    self.adopt_time(host);
                }
                self.update_irq();
            }
            REG_C | REG_D => debug!(idx, "write to read-only RTC register"),
            _ => self.regs[idx] = v,
        }
    }
}

fn run_timer(shared: Arc<Shared>) {
    let mut rtc = shared.lock();
    while !rtc.stop {
        let now = Instant::now();
        rtc.poll(now);
        rtc = match rtc.next_wake(now) {
            Some(d) => {
                shared
                    .wake
                    .wait_timeout(rtc, d)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared
                .wake
                .wait(rtc)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

impl Cmos {
    /// `ram_below_4g` / `ram_above_4g` are the guest RAM sizes in bytes, `cpus` the
    /// vCPU count, `irq` IRQ8. The memory bytes SeaBIOS reads are filled here.
    pub fn new(ram_below_4g: u64, ram_above_4g: u64, cpus: u8, irq: Arc<dyn IrqLine>) -> Self {
        let clock: Clock = Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
        });
        Self::with_clock(ram_below_4g, ram_above_4g, cpus, irq, clock)
    }

    fn with_clock(
        ram_below_4g: u64,
        ram_above_4g: u64,
        cpus: u8,
        irq: Arc<dyn IrqLine>,
        clock: Clock,
    ) -> Self {
        let mut regs = [0u8; 128];
        regs[REG_A] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
        regs[REG_B] = B_24H; // BCD, 24 hours
        regs[0x10] = 0; // no floppy drives
        regs[0x14] = 0x06; // equipment: FPU, PS/2 mouse, no floppy, VGA
        let le16 = |regs: &mut [u8; 128], at: usize, v: u64| {
            let v = v.min(0xffff) as u16;
            regs[at..at + 2].copy_from_slice(&v.to_le_bytes());
        };
        le16(&mut regs, 0x15, 640); // base memory, KiB
        let ext_kib = (ram_below_4g >> 10).saturating_sub(1024);
        le16(&mut regs, 0x17, ext_kib);
        le16(&mut regs, 0x30, ext_kib);
        le16(&mut regs, 0x34, ram_below_4g.saturating_sub(16 << 20) >> 16);
        let high = (ram_above_4g >> 16).min(0xff_ffff);
        regs[0x5b..0x5e].copy_from_slice(&high.to_le_bytes()[..3]);
        regs[0x5f] = cpus.saturating_sub(1);
        // The AT checksum over 0x10-0x2D, big-endian at 0x2E.
        let sum: u16 = regs[0x10..0x2e].iter().map(|&b| u16::from(b)).sum();
        regs[0x2e..0x30].copy_from_slice(&sum.to_be_bytes());

        let mut rtc = Rtc {
            regs,
            offset: 0,
            last_sec: 0,
            next_periodic: None,
            clock,
            irq: LevelTracker::new(irq),
            stop: false,
        };
        let host = rtc.host_now();
        rtc.last_sec = rtc.guest_secs(host);
        rtc.latch_time(host);
        rtc.next_periodic = rtc.period().map(|p| Instant::now() + p);
        let shared = Arc::new(Shared {
            rtc: Mutex::new(rtc),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rtc-timer".into())
            .spawn(move || run_timer(s))
            .inspect_err(|e| warn!("RTC timer thread: {e}; RTC interrupts disabled"))
            .ok();
        Self {
            shared,
            index: 0,
            nmi_masked: false,
            thread,
        }
    }

    /// Whether the guest last wrote the index port with bit 7 (NMI disable) set.
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }
}

impl Drop for Cmos {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Reset for Cmos {
    /// Machine reset: the RESET pin clears the interrupt enables and flags. Time
    /// and CMOS RAM are battery-backed and survive.
    fn reset(&mut self) {
        self.index = 0;
        self.nmi_masked = false;
        let mut rtc = self.shared.lock();
        rtc.regs[REG_B] &= !(B_PIE | B_AIE | B_UIE | B_SQWE);
        rtc.regs[REG_C] = 0;
        rtc.update_irq();
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset.checked_add(i as u64) {
                Some(1) => self.shared.lock().read(usize::from(self.index)),
                // The index register is write-only.
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(0) => {
                    self.index = v & 0x7f;
                    self.nmi_masked = v & 0x80 != 0;
                }
                Some(1) => {
                    self.shared.lock().write(usize::from(self.index), v);
                    // Register A/B changes may start or stop the timer.
                    self.shared.wake.notify_all();
                }
                _ => debug!(offset, "CMOS write beyond its ports"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::RecordingLine;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    /// 2024-02-29 13:45:30 UTC, a Thursday.
    const LEAP_DAY: u64 = 1_709_214_330;

    struct Rig {
        cmos: Cmos,
        line: Arc<RecordingLine>,
        now: Arc<Mutex<Duration>>,
    }

    fn rig_at(secs: u64, nanos: u32) -> Rig {
        let line = Arc::new(RecordingLine::default());
        let now = Arc::new(Mutex::new(Duration::new(secs, nanos)));
        let n = now.clone();
        let clock: Clock = Arc::new(move || *n.lock().unwrap());
        let cmos = Cmos::with_clock(2 * GIB, 2 * GIB, 4, line.clone(), clock);
        Rig { cmos, line, now }
    }

    impl Rig {
        fn get(&mut self, idx: u8) -> u8 {
            self.cmos.write(BASE, 0, &[idx]);
            let mut b = [0];
            self.cmos.read(BASE, 1, &mut b);
            b[0]
        }
        fn set(&mut self, idx: u8, v: u8) {
            self.cmos.write(BASE, 0, &[idx]);
            self.cmos.write(BASE, 1, &[v]);
        }
        fn advance(&self, d: Duration) {
            *self.now.lock().unwrap() += d;
        }
        fn time(&mut self) -> [u8; 8] {
            [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map(|i| self.get(i))
        }
    }

    #[test]
    fn memory_bytes_seabios_reads() {
        let mut r = rig_at(LEAP_DAY, 0);
        assert_eq!([r.get(0x15), r.get(0x16)], [0x80, 0x02]);
        assert_eq!([r.get(0x17), r.get(0x18)], [0xff, 0xff]);
        assert_eq!([r.get(0x30), r.get(0x31)], [0xff, 0xff]);
        // (2 GiB - 16 MiB) / 64 KiB = 0x7f00.
        assert_eq!([r.get(0x34), r.get(0x35)], [0x00, 0x7f]);
        // 2 GiB above 4 GiB / 64 KiB = 0x8000.
        assert_eq!([r.get(0x5b), r.get(0x5c), r.get(0x5d)], [0x00, 0x80, 0x00]);
        assert_eq!(r.get(0x5f), 3);
        assert_eq!(r.get(0x10), 0);
        assert_eq!(r.get(0x14), 0x06);
        assert_eq!(r.get(0x0d), 0x80);
        assert_ne!(r.get(0x08), 0xff, "rtc_present()");

        let small = Cmos::with_clock(
            32 * MIB,
            0,
            1,
            Arc::new(RecordingLine::default()),
            r.cmos.shared.lock().clock.clone(),
        );
        let regs = small.shared.lock().regs;
        assert_eq!(u16::from_le_bytes([regs[0x30], regs[0x31]]), 31 * 1024);
        assert_eq!(u16::from_le_bytes([regs[0x34], regs[0x35]]), 0x0100);
        assert_eq!(regs[0x5b..0x60], [0, 0, 0, 0, 0]);
    }

    #[test]
    fn time_in_bcd_binary_and_12h() {
        let mut r = rig_at(LEAP_DAY, 500_000_000);
        assert_eq!(r.get(0x0b), 0x02);
        assert_eq!(r.time(), [0x30, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]);
        r.set(0x0b, 0x06); // binary, 24h
        assert_eq!(r.time(), [30, 45, 13, 5, 29, 2, 24, 20]);
        r.set(0x0b, 0x00); // BCD, 12h: 1 PM
        assert_eq!(r.get(0x04), 0x81);
        r.advance(Duration::from_secs(11 * 3600 - 45 * 60 - 30)); // 00:00
        assert_eq!(r.get(0x04), 0x12);
        assert_eq!(r.get(0x07), 0x01);
        assert_eq!(r.get(0x08), 0x03);
    }

    #[test]
    fn guest_sets_the_time_with_set_bit() {
        let mut r = rig_at(LEAP_DAY, 0);
        r.set(0x0b, 0x82); // SET, 24h BCD
        for (i, v) in [
            (0x09, 0x25),
            (0x08, 0x12),
            (0x07, 0x31),
            (0x04, 0x23),
            (0x02, 0x59),
            (0x00, 0x58),
        ] {
            r.set(i, v);
        }
        r.advance(Duration::from_secs(5));
        assert_eq!(r.get(0x00), 0x58, "frozen while SET");
        r.set(0x0b, 0x02);
        r.advance(Duration::from_secs(3));
        // 2025-12-31 23:59:58 + 3 s.
        assert_eq!(r.time(), [0x01, 0x00, 0x00, 0x05, 0x01, 0x01, 0x26, 0x20]);
        // A direct write while running also sticks.
        r.set(0x02, 0x30);
        assert_eq!(r.get(0x02), 0x30);
        assert_eq!(r.get(0x00), 0x01);
    }

    #[test]
    fn update_in_progress_window() {
        let mut r = rig_at(LEAP_DAY, 999_900_000);
        assert_eq!(r.get(0x0a), 0x26 | 0x80);
        r.advance(Duration::from_millis(1));
        assert_eq!(r.get(0x0a), 0x26);
        r.set(0x0a, 0xff);
        assert_eq!(r.get(0x0a), 0x7f, "UIP is read-only");
    }

    #[test]
    fn alarm_and_update_flags() {
        let mut r = rig_at(LEAP_DAY, 0);
        r.get(0x0c);
        for (i, v) in [(0x01, 0x31), (0x03, 0x45), (0x05, 0xc0)] {
            r.set(i, v);
        }
        r.set(0x0b, 0x22); // AIE
        assert_eq!(r.get(0x0c), 0);
        r.advance(Duration::from_secs(1));
        // The timer thread, or this read, notices the new second.
        assert_eq!(r.get(0x0c), C_IRQF | C_AF | C_UF);
        assert!(!r.line.is_high(), "reading C lowers IRQ8");
        assert!(r.line.levels.lock().unwrap().contains(&true));
        r.advance(Duration::from_secs(1));
        assert_eq!(
            r.get(0x0c),
            C_UF,
            "no alarm at :32, UF without UIE raises nothing"
        );
    }

    #[test]
    fn periodic_interrupt_from_the_timer_thread() {
        let line = Arc::new(RecordingLine::default());
        let mut cmos = Cmos::new(GIB, 0, 1, line.clone());
        let get = |cmos: &mut Cmos, i: u8| {
            cmos.write(BASE, 0, &[i]);
            let mut b = [0];
            cmos.read(BASE, 1, &mut b);
            b[0]
        };
        let wait_high = |line: &RecordingLine| {
            let t = Instant::now();
            while !line.is_high() {
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "no periodic interrupt"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        cmos.write(BASE, 0, &[0x0b, 0x42]); // index B, then PIE | 24h via the data port
        wait_high(&line);
        assert_eq!(get(&mut cmos, 0x0c) & (C_IRQF | C_PF), C_IRQF | C_PF);
        wait_high(&line);
        assert!(line.rising_edges() >= 2);
        cmos.write(BASE, 0, &[0x0b, 0x02]);
        get(&mut cmos, 0x0c);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!line.is_high(), "PIE off: no more interrupts");
        drop(cmos); // joins the thread
    }

    #[test]
    fn reset_keeps_nvram_and_time() {
        let mut r = rig_at(LEAP_DAY, 0);
        r.set(0x40, 0x5a);
        r.set(0x0f, 0x0a);
        r.set(0x0b, 0x72); // PIE | AIE | UIE
        r.set(0x02, 0x10);
        r.cmos.reset();
        assert_eq!(r.get(0x40), 0x5a);
        assert_eq!(r.get(0x0f), 0x0a, "shutdown status byte survives");
        assert_eq!(r.get(0x34), 0x00);
        assert_eq!(r.get(0x35), 0x7f);
        assert_eq!(r.get(0x0b), 0x02);
        assert_eq!(r.get(0x02), 0x10);
        assert!(!r.line.is_high());
    }

    #[test]
    fn nmi_bit_and_odd_accesses() {
        let mut r = rig_at(LEAP_DAY, 0);
        r.cmos.write(BASE, 0, &[0x80 | 0x40]);
        assert!(r.cmos.nmi_masked());
        r.cmos.write(BASE, 1, &[0x77]);
        assert_eq!(r.get(0x40), 0x77);
        assert!(!r.cmos.nmi_masked());
        // outw 0x70: index then data in one access.
        r.cmos.write(BASE, 0, &[0x41, 0x99]);
        assert_eq!(r.get(0x41), 0x99);
        let mut buf = [0u8; 8];
        for off in [0u64, 1, 2, 0xffff, u64::MAX] {
            for w in [1usize, 2, 4, 8] {
                r.cmos.read(BASE, off, &mut buf[..w]);
                r.cmos.write(BASE, off, &buf[..w]);
            }
        }
        for idx in 0..=255u8 {
            r.set(idx, 0xff);
            r.get(idx);
        }
        let mut one = [0u8];
        r.cmos.read(BASE, 0, &mut one);
        assert_eq!(one[0], 0xff, "index port is write-only");
    }

    #[test]
    fn calendar_round_trip() {
        for days in [-719_468i64, -1, 0, 59, 365, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
