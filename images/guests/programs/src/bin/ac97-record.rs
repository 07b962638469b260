//! ac97-record: records from an AC97's PCM in (8086:2415) at 44.1 kHz the
//! way Linux's snd-intel8x0 captures, for CAPTURE_SECONDS, checks that the
//! card delivered it at real time, and reports the dominant frequency of the
//! last ANALYSED_SECONDS of what it captured (the host feeds a tone from a
//! SPICE client and checks the number; with no client it is silence).
//!
//! 1. Probe (`snd_intel8x0_probe`): I/O and bus mastering on, cold reset
//!    through GLOB_CNT, wait for the primary codec ready bit in GLOB_STA.
//! 2. Codec (`snd_ac97_mixer`): take the access semaphore (CAS), reset the
//!    codec, wait for the power-down register's ready bits, read the vendor
//!    id, select the capture source and unmute the record gain (the "Capture"
//!    control), enable VRA and set the L/R ADC to 44100 Hz, reading it back
//!    as `snd_ac97_set_rate` does.
//! 3. Prepare (`snd_intel8x0_setup_periods`): a ring of PERIODS periods of
//!    20 ms, a 32-entry descriptor list over it with IOC on every entry,
//!    LVI 31, status cleared; trigger START on the PCM in bus master:
//!    CR = RPBM | IOCE.
//! 4. Interrupts (`snd_intel8x0_interrupt` / `_update`): INTx through the
//!    IOAPIC (edge, as ac97-play explains); on each, read GLOB_STA (PIINT),
//!    the channel's SR and CIV, take the periods the card filled (what ALSA's
//!    reader does with them) and give them back by moving LVI on.
//! 5. Stop (TRIGGER_STOP): CR = 0, wait for DCH, CR = RR.
//! 6. Analysis, at CPL 3 (native speed): the mean square of the left
//!    channel, and the strongest frequency between 50 Hz and 4 kHz by
//!    Goertzel's recurrence (1 Hz steps over the last second, then 0.01 Hz
//!    steps around the peak over the whole window).
//!
//! Prints `ac97-record vendor=<id> rate=<frames/s measured> frames=<n>
//! dominant_mhz=<millihertz> prominence=<peak over band mean> power=<mean
//! square> irqs=<n>` and `SPICEBOX-AC97-RECORD-OK`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use guest_rt::irq::{self, ioapic, lapic};
use guest_rt::mem::Dma;
use guest_rt::port::{inb, inl, inw, outb, outl, outw};
use guest_rt::time::{self, Stopwatch};
use guest_rt::{check, pci, println, OrFail};

guest_rt::guest!("AC97-RECORD", main);

const CAPTURE_SECONDS: u64 = 8;
const ANALYSED_SECONDS: u64 = 2;
const RATE: u32 = 44_100;
/// 20 ms periods, stereo S16.
const PERIOD_FRAMES: u32 = RATE / 50;
const PERIOD_SAMPLES: u32 = PERIOD_FRAMES * 2;
const PERIOD_BYTES: u64 = PERIOD_SAMPLES as u64 * 2;
const PERIODS: u64 = 8;
const ENTRIES: u64 = 32;
const VECTOR: u8 = 0x51;
const WAIT: Duration = Duration::from_secs(2);
/// The band searched for the dominant frequency.
const LOW_HZ: u32 = 50;
const HIGH_HZ: u32 = 4_000;

// NAM (codec) registers.
const AC97_RESET: u16 = 0x00;
const AC97_REC_SEL: u16 = 0x1a;
const AC97_REC_GAIN: u16 = 0x1c;
const AC97_POWERDOWN: u16 = 0x26;
const AC97_EXTENDED_ID: u16 = 0x28;
const AC97_EXTENDED_STATUS: u16 = 0x2a;
const AC97_PCM_LR_ADC_RATE: u16 = 0x32;
const AC97_VENDOR_ID1: u16 = 0x7c;
const AC97_VENDOR_ID2: u16 = 0x7e;
const AC97_EI_VRA: u16 = 1;

// NABM: PCM in's block (offset 0) and the globals.
const PI: u16 = 0x00;
const OFF_BDBAR: u16 = 0x00;
const OFF_CIV: u16 = 0x04;
const OFF_LVI: u16 = 0x05;
const OFF_SR: u16 = 0x06;
const OFF_PICB: u16 = 0x08;
const OFF_CR: u16 = 0x0b;
const GLOB_CNT: u16 = 0x2c;
const GLOB_STA: u16 = 0x30;
const CAS: u16 = 0x34;
const ICH_AC97COLD: u32 = 1 << 1;
const ICH_PCR: u32 = 1 << 8;
const ICH_PIINT: u32 = 1 << 5;
const ICH_DCH: u8 = 1 << 0;
const ICH_LVBCI: u8 = 1 << 2;
const ICH_BCIS: u8 = 1 << 3;
const ICH_FIFOE: u8 = 1 << 4;
const ICH_STARTBM: u8 = 1 << 0;
const ICH_RESETREGS: u8 = 1 << 1;
const ICH_IOCE: u8 = 1 << 4;

struct Card {
    nam: u16,
    nabm: u16,
}

impl Card {
    /// `snd_intel8x0_codec_semaphore`: wait for CAS to read 0 (free).
    fn semaphore(&self) {
        let free = time::wait_until(WAIT, || inb(self.nabm + CAS) & 1 == 0);
        check!(free, "codec-semaphore", "CAS stays busy");
    }

    fn codec_write(&self, reg: u16, v: u16) {
        self.semaphore();
        outw(self.nam + reg, v);
    }

    fn codec_read(&self, reg: u16) -> u16 {
        self.semaphore();
        inw(self.nam + reg)
    }
}

/// cos(x) for 0 <= x <= π by its Taylor series (no libm here).
fn cos(x: f64) -> f64 {
    let x2 = x * x;
    let (mut term, mut sum) = (1.0, 1.0);
    for k in 1..24 {
        let k = f64::from(k);
        term *= -x2 / ((2.0 * k - 1.0) * (2.0 * k));
        sum += term;
    }
    sum
}

/// Power of `hz` in `x` sampled at RATE, by Goertzel's recurrence.
fn power(x: &[f32], hz: f64) -> f64 {
    let w = 2.0 * core::f64::consts::PI * hz / f64::from(RATE);
    let c = 2.0 * cos(w);
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// The strongest frequency in `x` (Hz), and its power over the band's mean.
fn dominant(x: &[f32]) -> (f64, f64) {
    let last_second = &x[x.len().saturating_sub(RATE as usize)..];
    let (mut best, mut best_power, mut sum) = (0.0, f64::MIN, 0.0);
    for hz in LOW_HZ..=HIGH_HZ {
        let p = power(last_second, f64::from(hz));
        sum += p;
        if p > best_power {
            (best, best_power) = (f64::from(hz), p);
        }
    }
    let mean = sum / f64::from(HIGH_HZ - LOW_HZ + 1);
    let (mut fine, mut fine_power) = (best, f64::MIN);
    for i in 0..=200 {
        let hz = best - 1.0 + f64::from(i) * 0.01;
        let p = power(x, hz);
        if p > fine_power {
            (fine, fine_power) = (hz, p);
        }
    }
    let prominence = if mean > 0.0 { best_power / mean } else { 0.0 };
    (fine, prominence)
}

fn main() {
    let f = pci::find(0x8086, 0x2415).or_fail("pci-scan");
    f.enable();
    let nam = f.bar(0).or_fail("bar0");
    let nabm = f.bar(1).or_fail("bar1");
    check!(
        nam.is_io() && nabm.is_io(),
        "bars",
        "NAM and NABM must be I/O"
    );
    let card = Card {
        nam: nam.port(),
        nabm: nabm.port(),
    };

    // 1. Cold reset, then the primary codec must come ready.
    let cnt = inl(card.nabm + GLOB_CNT);
    outl(card.nabm + GLOB_CNT, cnt & !ICH_AC97COLD);
    let cnt = inl(card.nabm + GLOB_CNT);
    time::sleep(Duration::from_micros(10));
    outl(card.nabm + GLOB_CNT, cnt | ICH_AC97COLD);
    let ready = time::wait_until(WAIT, || inl(card.nabm + GLOB_STA) & ICH_PCR != 0);
    check!(
        ready,
        "codec-ready",
        "GLOB_STA {:#x}",
        inl(card.nabm + GLOB_STA)
    );

    // 2. The codec: capture from the mic input at 0 dB, unmuted, 44.1 kHz.
    card.codec_write(AC97_RESET, 0);
    let powered = time::wait_until(WAIT, || card.codec_read(AC97_POWERDOWN) & 0xf == 0xf);
    check!(
        powered,
        "codec-power",
        "{:#x}",
        card.codec_read(AC97_POWERDOWN)
    );
    let vendor = u32::from(card.codec_read(AC97_VENDOR_ID1)) << 16
        | u32::from(card.codec_read(AC97_VENDOR_ID2));
    card.codec_write(AC97_REC_SEL, 0x0000);
    card.codec_write(AC97_REC_GAIN, 0x0000);
    let gain = card.codec_read(AC97_REC_GAIN);
    check!(
        gain & 0x8000 == 0,
        "codec-gain",
        "record gain reads {gain:#x}"
    );
    let ext = card.codec_read(AC97_EXTENDED_ID);
    check!(ext & AC97_EI_VRA != 0, "codec-vra", "extended id {ext:#x}");
    let st = card.codec_read(AC97_EXTENDED_STATUS);
    card.codec_write(AC97_EXTENDED_STATUS, st | AC97_EI_VRA);
    card.codec_write(AC97_PCM_LR_ADC_RATE, RATE as u16);
    let rate = card.codec_read(AC97_PCM_LR_ADC_RATE);
    check!(
        u32::from(rate) == RATE,
        "codec-rate",
        "ADC rate reads {rate}"
    );

    // 3. The ring and its descriptor list.
    let buf = Dma::new(PERIODS * PERIOD_BYTES);
    let bdl = Dma::new(ENTRIES * 8);
    for i in 0..ENTRIES {
        bdl.write::<u32>(i * 8, (buf.addr() + (i % PERIODS) * PERIOD_BYTES) as u32);
        bdl.write::<u32>(i * 8 + 4, 0x8000_0000 | PERIOD_SAMPLES);
    }
    let pi = card.nabm + PI;
    outl(pi + OFF_BDBAR, bdl.addr() as u32);
    outb(pi + OFF_LVI, 31);
    outb(pi + OFF_SR, ICH_FIFOE | ICH_BCIS | ICH_LVBCI);
    // Everything captured, left channel (the client sends the same tone on
    // both); periods beyond CAPTURE_SECONDS are not kept.
    let capacity = (CAPTURE_SECONDS as usize + 1) * RATE as usize;
    let mut left: Vec<f32> = Vec::with_capacity(capacity);
    let mut right_differs = 0u64;

    // 4. Interrupts, as the driver's handler takes them.
    let (pin, line) = f.interrupt();
    check!(
        pin == 1 && u32::from(line) < ioapic::inputs(),
        "intx",
        "pin {pin} line {line}"
    );
    lapic::enable();
    ioapic::route(
        line.into(),
        VECTOR,
        ioapic::Trigger::Edge,
        ioapic::Polarity::High,
        lapic::id(),
    );
    irq::enable();

    outb(pi + OFF_CR, ICH_IOCE | ICH_STARTBM);
    let clock = Stopwatch::start();
    let mut civ_seen: u8 = 0;
    let mut lvi: u8 = 31;
    let mut periods: u64 = 0;
    let mut handled = irq::count(VECTOR);
    while clock.elapsed_ns() < CAPTURE_SECONDS * 1_000_000_000 {
        let n = irq::wait(VECTOR, handled + 1, WAIT).unwrap_or_else(|n| {
            guest_rt::fail!(
                "ioc-irq",
                "no interrupt after {periods} periods ({n} in all)"
            )
        });
        handled = n;
        let status = inl(card.nabm + GLOB_STA);
        if status & ICH_PIINT == 0 {
            // Re-delivered while the line was still high: IRQ_NONE.
            continue;
        }
        let sr = inb(pi + OFF_SR);
        let civ = inb(pi + OFF_CIV);
        check!(
            sr & ICH_DCH == 0,
            "overrun",
            "DMA halted: sr {sr:#x} civ {civ} lvi {lvi}"
        );
        if sr & ICH_BCIS != 0 {
            let step = if civ == civ_seen {
                1
            } else {
                (civ + 32 - civ_seen) % 32
            };
            for _ in 0..step {
                // The period just filled: read it out, then hand it back.
                let base = (u64::from(civ_seen) % PERIODS) * PERIOD_BYTES;
                if left.len() + PERIOD_FRAMES as usize <= capacity {
                    for i in 0..u64::from(PERIOD_FRAMES) {
                        let l = buf.read::<i16>(base + i * 4);
                        let r = buf.read::<i16>(base + i * 4 + 2);
                        right_differs += u64::from(l != r);
                        left.push(f32::from(l));
                    }
                }
                civ_seen = (civ_seen + 1) % 32;
                lvi = (lvi + 1) % 32;
            }
            periods += u64::from(step);
            outb(pi + OFF_LVI, lvi);
        }
        outb(pi + OFF_SR, sr & (ICH_FIFOE | ICH_BCIS | ICH_LVBCI));
        outl(card.nabm + GLOB_STA, status & ICH_PIINT);
    }
    // The position within the current period counts too (pcm_pointer).
    let picb = u64::from(inw(pi + OFF_PICB));
    let elapsed = clock.elapsed_ns();
    let frames = periods * u64::from(PERIOD_FRAMES) + u64::from(PERIOD_FRAMES) - picb / 2;
    let measured = frames * 1_000_000_000 / elapsed;

    // 5. Stop.
    outb(pi + OFF_CR, 0);
    let halted = time::wait_until(WAIT, || inb(pi + OFF_SR) & ICH_DCH != 0);
    check!(halted, "stop", "DCH not set");
    outb(pi + OFF_CR, ICH_RESETREGS);
    ioapic::mask(line.into());

    // 6. What was heard at the end (the client may start late).
    let window = (ANALYSED_SECONDS * u64::from(RATE)) as usize;
    check!(
        left.len() >= window,
        "captured",
        "only {} frames kept",
        left.len()
    );
    let x = &left[left.len() - window..];
    let power_mean = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64;
    let (hz, prominence) = if power_mean > 0.0 {
        dominant(x)
    } else {
        (0.0, 0.0)
    };
    println!(
        "ac97-record vendor={vendor:#010x} rate={measured} frames={} dominant_mhz={} \
         prominence={} power={} right_differs={right_differs} periods={periods} irqs={}",
        left.len(),
        (hz * 1000.0) as u64,
        prominence as u64,
        power_mean as u64,
        irq::count(VECTOR)
    );
    // Real time: never faster, and not more than 2% slower.
    check!(
        measured <= u64::from(RATE) * 1005 / 1000 && measured >= u64::from(RATE) * 98 / 100,
        "rate",
        "{measured} frames/s for {RATE} Hz"
    );
}
