//! The ACPI PM1 register block of a PIIX4, at QEMU's PM base 0x600:
//! PM1a_EVT (status/enable), PM1a_CNT (SCI_EN, sleep) and the 24-bit PM timer.
//!
//! Sleeping with SLP_TYP 0 is S5 (as in QEMU's DSDT) and powers the machine off.
//! SCI_EN starts set: there is no SMM handler for the SMI_CMD "enable ACPI"
//! handshake, and ACPI lets firmware hand over the machine already in ACPI mode.

use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use crate::interrupt::LevelTracker;
use crate::{BusDevice, IrqLine, Reset, VmRequest, VmRequests};

pub const BASE: u64 = 0x600;
/// PIIX4 decodes more, but only these 16 bytes hold PM1 registers.
pub const LEN: u64 = 0x10;
/// Offsets in the block: PM1a_EVT (status, enable) at 0, then these.
pub const PM1_CNT_OFFSET: u64 = 4;
pub const PM_TMR_OFFSET: u64 = 8;
/// The SCI's ISA IRQ on PIIX4 (level-triggered, active high).
pub const SCI_IRQ: u8 = 9;

const PM_TIMER_HZ: u128 = 3_579_545;

// PM1 status / enable bits.
const TMR_STS: u16 = 1 << 0;
const GBL_STS: u16 = 1 << 5;
const PWRBTN_STS: u16 = 1 << 8;
const SLPBTN_STS: u16 = 1 << 9;
const RTC_STS: u16 = 1 << 10;
/// The status bits that have an enable bit and so can raise an SCI.
const SCI_EVENTS: u16 = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS;

// PM1 control bits.
const SCI_EN: u16 = 1 << 0;
const GBL_RLS: u16 = 1 << 2;
const SLP_EN: u16 = 1 << 13;
const SLP_TYP_SHIFT: u16 = 10;
/// SLP_TYP for S5 in the DSDT's \_S5 package.
pub const SLP_TYP_S5: u16 = 0;

pub struct AcpiPm {
    sts: u16,
    en: u16,
    cnt: u16,
    start: Instant,
    /// Bit 23 transitions of the timer seen so far (each one sets TMR_STS).
    timer_epochs: u64,
    sci: LevelTracker,
    requests: Arc<dyn VmRequests>,
}

impl AcpiPm {
    /// Power-off requests (S5) go to `requests`. The SCI is not wired until
    /// `connect_sci` is called.
    pub fn new(requests: Arc<dyn VmRequests>) -> Self {
        Self {
            sts: 0,
            en: 0,
            cnt: SCI_EN,
            start: Instant::now(),
            timer_epochs: 0,
            sci: LevelTracker::default(),
            requests,
        }
    }

    /// The SCI line (IRQ9 on PIIX4, level-triggered active high).
    pub fn connect_sci(&mut self, sci: Arc<dyn IrqLine>) {
        self.sci = LevelTracker::new(sci);
        self.update_sci();
    }

    /// The host pressed the (fixed-feature) power button: the guest's ACPI driver
    /// sees PWRBTN_STS and usually shuts down cleanly.
    pub fn power_button(&mut self) {
        self.sts |= PWRBTN_STS;
        self.update_sci();
    }

    fn timer_ticks(&mut self) -> u64 {
        let ns = self.start.elapsed().as_nanos();
        let ticks = (ns * PM_TIMER_HZ / 1_000_000_000) as u64;
        // TMR_STS is set each time bit 23 of the timer changes.
        if ticks >> 23 != self.timer_epochs {
            self.timer_epochs = ticks >> 23;
            self.sts |= TMR_STS;
            self.update_sci();
        }
        ticks
    }

    fn update_sci(&mut self) {
        self.sci.set(self.sts & self.en & SCI_EVENTS != 0);
    }

    fn write_byte(&mut self, off: u64, v: u8) {
        let v = u16::from(v);
        match off {
            0 => self.sts &= !v,
            1 => self.sts &= !(v << 8),
            2 => self.en = (self.en & 0xff00) | v,
            3 => self.en = (self.en & 0x00ff) | v << 8,
            4 => self.cnt = (self.cnt & 0xff00) | (v & !GBL_RLS),
            5 => {
                let v = v << 8;
                self.cnt = (self.cnt & 0x00ff) | (v & !SLP_EN);
                if v & SLP_EN != 0 {
                    self.sleep((v >> SLP_TYP_SHIFT) & 7);
                }
            }
            _ => debug!(off, "write to read-only or reserved ACPI PM register"),
        }
        self.update_sci();
    }

    fn sleep(&mut self, typ: u16) {
        if typ == SLP_TYP_S5 {
            self.requests.request(VmRequest::PowerOff);
        } else {
            debug!(typ, "unsupported ACPI sleep type, ignored");
        }
    }
}

impl Reset for AcpiPm {
    /// Machine reset: events cleared and disabled; the timer keeps running.
    fn reset(&mut self) {
        self.sts = 0;
        self.en = 0;
        self.cnt = SCI_EN;
        self.update_sci();
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        // One timer sample per access, so a 32-bit read is consistent.
        let tmr = (self.timer_ticks() & 0x00ff_ffff) as u32;
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset.checked_add(i as u64) {
                Some(o @ 0..=1) => self.sts.to_le_bytes()[o as usize],
                Some(o @ 2..=3) => self.en.to_le_bytes()[o as usize - 2],
                Some(o @ 4..=5) => self.cnt.to_le_bytes()[o as usize - 4],
                Some(o @ 8..=11) => tmr.to_le_bytes()[o as usize - 8],
                Some(o) if o < LEN => 0,
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.timer_ticks();
        for (i, &v) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(o) if o < LEN => self.write_byte(o, v),
                _ => debug!(offset, "ACPI PM write beyond its block"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::{RecordingLine, RecordingRequests};
    use std::time::Duration;

    fn rig() -> (AcpiPm, Arc<RecordingRequests>) {
        let req = Arc::new(RecordingRequests::default());
        (AcpiPm::new(req.clone()), req)
    }

    fn inw(pm: &mut AcpiPm, off: u64) -> u16 {
        let mut b = [0u8; 2];
        pm.read(BASE, off, &mut b);
        u16::from_le_bytes(b)
    }

    fn inl(pm: &mut AcpiPm, off: u64) -> u32 {
        let mut b = [0u8; 4];
        pm.read(BASE, off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn outw_0x2000_to_pm1a_cnt_powers_off() {
        let (mut pm, req) = rig();
        assert_eq!(inw(&mut pm, 4) & SCI_EN, SCI_EN, "already in ACPI mode");
        pm.write(BASE, 4, &0x2000u16.to_le_bytes());
        assert_eq!(*req.requests.lock().unwrap(), [VmRequest::PowerOff]);
        assert_eq!(inw(&mut pm, 4) & SLP_EN, 0, "SLP_EN is write-only");
    }

    #[test]
    fn linux_style_read_modify_write_and_other_sleep_types() {
        let (mut pm, req) = rig();
        // S3 (typ 1) and friends are not supported: nothing happens.
        for typ in 1..8u16 {
            let v = inw(&mut pm, 4) | typ << SLP_TYP_SHIFT | SLP_EN;
            pm.write(BASE, 4, &v.to_le_bytes());
        }
        assert!(req.requests.lock().unwrap().is_empty());
        // Byte writes: SLP_TYP and SLP_EN both live in the high byte.
        pm.write(BASE, 5, &[0x20]);
        assert_eq!(*req.requests.lock().unwrap(), [VmRequest::PowerOff]);
    }

    #[test]
    fn pm_timer_counts_at_3_58_mhz() {
        let (mut pm, _) = rig();
        let a = inl(&mut pm, 8);
        std::thread::sleep(Duration::from_millis(20));
        let b = inl(&mut pm, 8);
        assert_eq!(b >> 24, 0, "24-bit timer");
        let delta = b.wrapping_sub(a) & 0x00ff_ffff;
        // 20 ms is 71591 ticks; allow for a slow scheduler.
        assert!((71_591..3_579_545).contains(&delta), "delta {delta}");
        // Writes to the timer are ignored.
        pm.write(BASE, 8, &[0; 4]);
        assert!(inl(&mut pm, 8) >= b || b > 0x00f0_0000);
    }

    #[test]
    fn power_button_sci_and_write_one_to_clear() {
        let (mut pm, _) = rig();
        let sci = Arc::new(RecordingLine::default());
        pm.connect_sci(sci.clone());
        pm.power_button();
        assert!(!sci.is_high(), "not enabled yet");
        assert_eq!(inw(&mut pm, 0) & PWRBTN_STS, PWRBTN_STS);
        // PWRBTN_EN sits at the same bit of PM1_EN.
        pm.write(BASE, 2, &PWRBTN_STS.to_le_bytes());
        assert!(sci.is_high());
        assert_eq!(inw(&mut pm, 2), PWRBTN_STS);
        // Writing 0 bits clears nothing; writing the bit clears it.
        pm.write(BASE, 0, &[0x00, 0x00]);
        assert!(sci.is_high());
        pm.write(BASE, 0, &PWRBTN_STS.to_le_bytes());
        assert!(!sci.is_high());
        assert_eq!(inw(&mut pm, 0) & PWRBTN_STS, 0);
        pm.power_button();
        pm.reset();
        assert!(!sci.is_high());
        assert_eq!(inw(&mut pm, 4), SCI_EN);
    }

    #[test]
    fn odd_widths_and_offsets() {
        let (mut pm, req) = rig();
        let mut buf = [0u8; 8];
        for off in 0..=0x12u64 {
            for w in [1usize, 2, 4, 8] {
                pm.read(BASE, off, &mut buf[..w]);
                pm.write(BASE, off, &[0xff; 8][..w]);
            }
        }
        pm.read(BASE, u64::MAX, &mut buf);
        pm.write(BASE, u64::MAX, &buf);
        let mut b = [0u8; 2];
        pm.read(BASE, 0x0e, &mut b);
        assert_eq!(b, [0, 0]);
        pm.read(BASE, 0x0f, &mut b);
        assert_eq!(b, [0, 0xff]);
        // 0xff in PM1_CNT's high byte is SLP_EN with SLP_TYP 7: not S5.
        assert!(req.requests.lock().unwrap().is_empty());
    }
}
