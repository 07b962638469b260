//! ac97-play: plays a 440 Hz tone at 44.1 kHz on an AC97 (8086:2415) the way
//! Linux's snd-intel8x0 does, for PLAY_SECONDS, then checks that the card
//! consumed it at real time.
//!
//! 1. Probe (`snd_intel8x0_probe`): I/O and bus mastering on, cold reset
//!    through GLOB_CNT, wait for the primary codec ready bit in GLOB_STA.
//! 2. Codec (`snd_ac97_mixer`): take the access semaphore (CAS), reset the
//!    codec, wait for the power-down register's ready bits, read the vendor
//!    id, unmute master and PCM out, enable VRA and set the DAC to 44100 Hz
//!    (reading it back, as `snd_ac97_set_rate` does).
//! 3. Prepare (`snd_intel8x0_setup_periods`): a ring of PERIODS periods of
//!    20 ms, a 32-entry descriptor list over it with IOC on every entry,
//!    LVI 31, status cleared; trigger START: CR = RPBM | IOCE.
//! 4. Interrupts (`snd_intel8x0_interrupt` / `_update`): INTx through the
//!    IOAPIC (edge-triggered, see below); on each, read GLOB_STA, the channel's SR and
//!    CIV, move LVI on by the periods done and refill them with the next
//!    samples of the tone, write the status bits back.
//! 5. Stop (TRIGGER_STOP): CR = 0, wait for DCH, CR = RR.
//!
//! Prints `ac97-play dma-start` just before the DMA starts, and at the end
//! `ac97 vendor=<id> rate=<frames/s measured> periods=<n> irqs=<n>`
//! and `SPICEBOX-AC97-PLAY-OK`.
#![no_std]
#![no_main]

use core::time::Duration;

use guest_rt::irq::{self, ioapic, lapic};
use guest_rt::mem::Dma;
use guest_rt::port::{inb, inl, inw, outb, outl, outw};
use guest_rt::time::{self, Stopwatch};
use guest_rt::{check, pci, println, OrFail};

guest_rt::guest!("AC97-PLAY", main);

const PLAY_SECONDS: u64 = 32;
const RATE: u32 = 44_100;
const TONE_HZ: u64 = 440;
/// 20 ms periods, stereo S16.
const PERIOD_FRAMES: u32 = RATE / 50;
const PERIOD_SAMPLES: u32 = PERIOD_FRAMES * 2;
const PERIOD_BYTES: u64 = PERIOD_SAMPLES as u64 * 2;
const PERIODS: u64 = 8;
const ENTRIES: u64 = 32;
const VECTOR: u8 = 0x50;
const WAIT: Duration = Duration::from_secs(2);

// NAM (codec) registers.
const AC97_RESET: u16 = 0x00;
const AC97_MASTER: u16 = 0x02;
const AC97_PCM: u16 = 0x18;
const AC97_POWERDOWN: u16 = 0x26;
const AC97_EXTENDED_ID: u16 = 0x28;
const AC97_EXTENDED_STATUS: u16 = 0x2a;
const AC97_PCM_FRONT_DAC_RATE: u16 = 0x2c;
const AC97_VENDOR_ID1: u16 = 0x7c;
const AC97_VENDOR_ID2: u16 = 0x7e;
const AC97_EI_VRA: u16 = 1;

// NABM: PCM out's block and the globals.
const PO: u16 = 0x10;
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
const ICH_POINT: u32 = 1 << 6;
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

/// sin(2π phase / 2^32) × amplitude, in integers (Bhaskara I's
/// approximation, error < 0.2%): no floating point needed.
fn sine(phase: u32, amplitude: i64) -> i16 {
    const P: i64 = 1 << 15;
    let half = phase >> 31;
    let u = i64::from((phase >> 16) & 0x7fff);
    let q = u * (P - u);
    let v = amplitude * 16 * q / (5 * P * P - 4 * q);
    (if half == 0 { v } else { -v }) as i16
}

/// The tone, continuing from sample to sample.
struct Tone {
    phase: u64,
    step: u64,
}

impl Tone {
    fn fill(&mut self, buf: &Dma, period: u64) {
        for i in 0..u64::from(PERIOD_FRAMES) {
            let s = sine((self.phase >> 32) as u32, 12_000);
            self.phase = self.phase.wrapping_add(self.step);
            let at = period * PERIOD_BYTES + i * 4;
            buf.write::<i16>(at, s);
            buf.write::<i16>(at + 2, s);
        }
    }
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

    // 2. The codec.
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
    card.codec_write(AC97_MASTER, 0x0000);
    card.codec_write(AC97_PCM, 0x0808);
    let master = card.codec_read(AC97_MASTER);
    check!(master == 0, "codec-master", "reads {master:#x}");
    let ext = card.codec_read(AC97_EXTENDED_ID);
    check!(ext & AC97_EI_VRA != 0, "codec-vra", "extended id {ext:#x}");
    let st = card.codec_read(AC97_EXTENDED_STATUS);
    card.codec_write(AC97_EXTENDED_STATUS, st | AC97_EI_VRA);
    card.codec_write(AC97_PCM_FRONT_DAC_RATE, RATE as u16);
    let rate = card.codec_read(AC97_PCM_FRONT_DAC_RATE);
    check!(
        u32::from(rate) == RATE,
        "codec-rate",
        "DAC rate reads {rate}"
    );

    // 3. The ring and its descriptor list.
    let buf = Dma::new(PERIODS * PERIOD_BYTES);
    let bdl = Dma::new(ENTRIES * 8);
    let mut tone = Tone {
        phase: 0,
        step: ((u128::from(TONE_HZ) << 64) / u128::from(RATE)) as u64,
    };
    for p in 0..PERIODS {
        tone.fill(&buf, p);
    }
    for i in 0..ENTRIES {
        bdl.write::<u32>(i * 8, (buf.addr() + (i % PERIODS) * PERIOD_BYTES) as u32);
        bdl.write::<u32>(i * 8 + 4, 0x8000_0000 | PERIOD_SAMPLES);
    }
    let po = card.nabm + PO;
    outl(po + OFF_BDBAR, bdl.addr() as u32);
    outb(po + OFF_LVI, 31);
    outb(po + OFF_SR, ICH_FIFOE | ICH_BCIS | ICH_LVBCI);

    // 4. Interrupts, as the driver's handler takes them.
    let (pin, line) = f.interrupt();
    check!(
        pin == 1 && u32::from(line) < ioapic::inputs(),
        "intx",
        "pin {pin} line {line}"
    );
    lapic::enable();
    // Edge-triggered: Linux's handler clears the status at CPL 0 before its
    // EOI, but this runtime's stub only counts and EOIs, so a level-triggered
    // pin would re-deliver (through the emulated CPL 0) until the loop below
    // gets to run, starving it. Each period's BCIS raises the line from low
    // again once the previous one is acknowledged; a completion while it is
    // still high is caught up through CIV, as the driver does.
    ioapic::route(
        line.into(),
        VECTOR,
        ioapic::Trigger::Edge,
        ioapic::Polarity::High,
        lapic::id(),
    );
    irq::enable();

    // For scripts/bench_audio: the host timestamps this line as it arrives
    // and the client the first samples; the card's DMA starts right after.
    println!("ac97-play dma-start");
    outb(po + OFF_CR, ICH_IOCE | ICH_STARTBM);
    let clock = Stopwatch::start();
    let mut civ_seen: u8 = 0;
    let mut lvi: u8 = 31;
    let mut periods: u64 = 0;
    let mut handled = irq::count(VECTOR);
    while clock.elapsed_ns() < PLAY_SECONDS * 1_000_000_000 {
        let n = irq::wait(VECTOR, handled + 1, WAIT).unwrap_or_else(|n| {
            guest_rt::fail!(
                "ioc-irq",
                "no interrupt after {periods} periods ({n} in all)"
            )
        });
        handled = n;
        let status = inl(card.nabm + GLOB_STA);
        if status & ICH_POINT == 0 {
            // Re-delivered while the line was still high: IRQ_NONE.
            continue;
        }
        let sr = inb(po + OFF_SR);
        let civ = inb(po + OFF_CIV);
        check!(
            sr & ICH_DCH == 0,
            "underrun",
            "DMA halted: sr {sr:#x} civ {civ} lvi {lvi}"
        );
        if sr & ICH_BCIS != 0 {
            let step = if civ == civ_seen {
                1
            } else {
                (civ + 32 - civ_seen) % 32
            };
            for _ in 0..step {
                // The period just played is free: the tone goes on there.
                tone.fill(&buf, u64::from(civ_seen) % PERIODS);
                civ_seen = (civ_seen + 1) % 32;
                lvi = (lvi + 1) % 32;
                let entry = u64::from(lvi);
                bdl.write::<u32>(
                    entry * 8,
                    (buf.addr() + (entry % PERIODS) * PERIOD_BYTES) as u32,
                );
            }
            periods += u64::from(step);
            outb(po + OFF_LVI, lvi);
        }
        outb(po + OFF_SR, sr & (ICH_FIFOE | ICH_BCIS | ICH_LVBCI));
        outl(card.nabm + GLOB_STA, status & ICH_POINT);
    }
    // The position within the current period counts too (pcm_pointer).
    let picb = u64::from(inw(po + OFF_PICB));
    let elapsed = clock.elapsed_ns();
    let frames = periods * u64::from(PERIOD_FRAMES) + u64::from(PERIOD_FRAMES) - picb / 2;
    let measured = frames * 1_000_000_000 / elapsed;

    // 5. Stop.
    outb(po + OFF_CR, 0);
    let halted = time::wait_until(WAIT, || inb(po + OFF_SR) & ICH_DCH != 0);
    check!(halted, "stop", "DCH not set");
    outb(po + OFF_CR, ICH_RESETREGS);
    ioapic::mask(line.into());

    println!(
        "ac97 vendor={vendor:#010x} rate={measured} periods={periods} irqs={}",
        irq::count(VECTOR)
    );
    // Real time: never faster, and not more than 2% slower.
    check!(
        measured <= u64::from(RATE) * 1005 / 1000 && measured >= u64::from(RATE) * 98 / 100,
        "rate",
        "{measured} frames/s for {RATE} Hz"
    );
}
