//! The card driven the way Linux's snd-intel8x0 (and the AC'97 codec layer
//! above it) drives it: codec reset and probe, rate setting, descriptor lists,
//! run, the interrupt handler's acknowledgements, pause and resume, wrap.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::bus_master::*;
use super::link::*;
use super::mixer::*;
use super::*;
use crate::interrupt::test_util::RecordingLine;
use crate::pci;
use crate::Lifecycle;

const RAM: u64 = 1 << 20;
const BDL: u64 = 0x1000;
const BUF: u64 = 0x10000;
const PO: u64 = 0x10;
const PI: u64 = 0x00;

fn mem() -> GuestMemoryMmap<()> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap()
}

/// Collects what the engine moves out of guest memory.
#[derive(Default)]
struct Sink(Vec<i16>);

impl Dma for Sink {
    fn transfer(&mut self, mem: &GuestMemoryMmap<()>, addr: u64, samples: usize) {
        for i in 0..samples as u64 {
            let v: u16 = mem.read_obj(GuestAddress(addr + 2 * i)).unwrap_or(0);
            self.0.push(v as i16);
        }
    }
}

/// The controller with bus mastering on, as after pci_enable_device +
/// pci_set_master.
fn link() -> Link {
    let mut l = Link::new();
    l.dma_enabled = true;
    l
}

fn nabm_w(l: &mut Link, m: &GuestMemoryMmap<()>, off: u64, v: u32, width: usize) {
    l.nabm_write(m, off, &v.to_le_bytes()[..width]);
}

fn nabm_r(l: &mut Link, off: u64, width: usize) -> u32 {
    let mut b = [0u8; 4];
    l.nabm_read(off, &mut b[..width]);
    u32::from_le_bytes(b)
}

fn nam_w(l: &mut Link, reg: u64, v: u16) {
    l.nam_write(reg, &v.to_le_bytes());
}

fn nam_r(l: &mut Link, reg: u64) -> u16 {
    let mut b = [0u8; 2];
    l.nam_read(reg, &mut b);
    u16::from_le_bytes(b)
}

/// snd_intel8x0_setup_periods: `entries` descriptors over `periods` buffers
/// of `period` samples each, every one with IOC; sample i of the ring = i.
fn setup_periods(m: &GuestMemoryMmap<()>, periods: u64, period: u32) {
    for i in 0..32u64 {
        let addr = BUF + (i % periods) * u64::from(period) * 2;
        m.write_obj(addr as u32, GuestAddress(BDL + i * 8)).unwrap();
        m.write_obj(BD_IOC | period, GuestAddress(BDL + i * 8 + 4))
            .unwrap();
    }
    for i in 0..periods * u64::from(period) {
        m.write_obj(i as u16, GuestAddress(BUF + 2 * i)).unwrap();
    }
}

/// prepare + trigger START on bus master `bm`.
fn start(l: &mut Link, m: &GuestMemoryMmap<()>, bm: u64, lvi: u8, cr: u8) {
    nabm_w(l, m, bm + u64::from(BDBAR), BDL as u32, 4);
    nabm_w(l, m, bm + u64::from(LVI), u32::from(lvi), 1);
    nabm_w(l, m, bm + u64::from(SR), 0x1c, 1);
    nabm_w(l, m, bm + u64::from(CR), u32::from(cr), 1);
}

/// The interrupt handler (snd_intel8x0_interrupt + _update): read GLOB_STA,
/// for the channel's bit read SR and CIV, move LVI on by the buffers done,
/// write the SR bits back; then acknowledge GLOB_STA.
fn isr(l: &mut Link, m: &GuestMemoryMmap<()>, bm: u64, last_civ: &mut u8) -> bool {
    let sta = nabm_r(l, u64::from(GLOB_STA), 4);
    let bit = if bm == PO { 1 << 6 } else { 1 << 5 };
    if sta & bit == 0 {
        return false;
    }
    let sr = nabm_r(l, bm + u64::from(SR), 1);
    let civ = nabm_r(l, bm + u64::from(CIV), 1) as u8;
    if sr & u32::from(SR_BCIS) != 0 {
        let step = if civ == *last_civ {
            1
        } else {
            (civ + 32 - *last_civ) % 32
        };
        *last_civ = (*last_civ + step) % 32;
        let lvi = nabm_r(l, bm + u64::from(LVI), 1) as u8;
        nabm_w(l, m, bm + u64::from(LVI), u32::from((lvi + step) % 32), 1);
    }
    nabm_w(l, m, bm + u64::from(SR), sr & 0x1c, 1);
    nabm_w(l, m, u64::from(GLOB_STA), sta & 0xe0, 4);
    true
}

#[test]
fn codec_reset_ready_and_probe() {
    let m = mem();
    let mut l = link();
    // snd_intel8x0_ich_chip_cold_reset: cold reset# low, then high.
    let cnt = nabm_r(&mut l, u64::from(GLOB_CNT), 4);
    nabm_w(&mut l, &m, u64::from(GLOB_CNT), cnt & !2, 4);
    nabm_w(&mut l, &m, u64::from(GLOB_CNT), cnt | 2, 4);
    assert_eq!(nabm_r(&mut l, u64::from(GLOB_CNT), 4) & 2, 2);
    // A warm reset completes at once (the driver polls for it to clear).
    nabm_w(&mut l, &m, u64::from(GLOB_CNT), 2 | 4, 4);
    assert_eq!(nabm_r(&mut l, u64::from(GLOB_CNT), 4) & 4, 0);
    // Primary codec ready.
    assert_ne!(nabm_r(&mut l, u64::from(GLOB_STA), 4) & GS_S0CR, 0);
    // The codec semaphore: free, then taken by the read, freed by an access.
    assert_eq!(nabm_r(&mut l, u64::from(CAS), 1), 0);
    assert_eq!(nabm_r(&mut l, u64::from(CAS), 1), 1);
    nam_w(&mut l, u64::from(RESET), 0);
    assert_eq!(nabm_r(&mut l, u64::from(CAS), 1), 0);
    // snd_ac97_mixer: ready bits, vendor id, register write/readback.
    assert_eq!(nam_r(&mut l, u64::from(POWERDOWN)) & 0xf, 0xf);
    nam_w(&mut l, u64::from(POWERDOWN), 0);
    assert_eq!(nam_r(&mut l, u64::from(POWERDOWN)) & 0xf, 0xf);
    assert_eq!(nam_r(&mut l, u64::from(VENDOR_ID1)), 0x8384);
    assert_eq!(nam_r(&mut l, u64::from(VENDOR_ID2)), 0x7600);
    assert_eq!(nam_r(&mut l, u64::from(EXT_AUDIO_ID)) & 1, 1, "VRA");
    nam_w(&mut l, u64::from(MASTER_VOLUME), 0x0808);
    assert_eq!(nam_r(&mut l, u64::from(MASTER_VOLUME)), 0x0808);
    nam_w(&mut l, u64::from(MASTER_VOLUME), 0xffff);
    assert_eq!(nam_r(&mut l, u64::from(MASTER_VOLUME)), 0xbf3f);
    // No secondary codec: its half reads as absent.
    assert_eq!(nam_r(&mut l, 0x80 + u64::from(VENDOR_ID1)), 0xffff);
    // Reset brings the defaults back.
    nam_w(&mut l, u64::from(RESET), 0);
    assert_eq!(nam_r(&mut l, u64::from(MASTER_VOLUME)), 0x8000);
}

#[test]
fn variable_rate() {
    let mut l = link();
    assert_eq!(l.rate(Stream::PcmOut), 48_000);
    nam_w(&mut l, u64::from(EXT_AUDIO_CTRL), EXT_VRA);
    nam_w(&mut l, u64::from(FRONT_DAC_RATE), 44_100);
    assert_eq!(nam_r(&mut l, u64::from(FRONT_DAC_RATE)), 44_100);
    assert_eq!(l.rate(Stream::PcmOut), 44_100);
    nam_w(&mut l, u64::from(LR_ADC_RATE), 8_000);
    assert_eq!(l.rate(Stream::PcmIn), 8_000);
    // Absurd rates: the codec picks the nearest it has; the driver reads back.
    nam_w(&mut l, u64::from(FRONT_DAC_RATE), 0);
    assert_eq!(nam_r(&mut l, u64::from(FRONT_DAC_RATE)), 8_000);
    nam_w(&mut l, u64::from(FRONT_DAC_RATE), 65_535);
    assert_eq!(nam_r(&mut l, u64::from(FRONT_DAC_RATE)), 48_000);
    // Mic rate needs VRM, which is now off.
    nam_w(&mut l, u64::from(MIC_ADC_RATE), 11_025);
    assert_eq!(l.rate(Stream::MicIn), 48_000);
    // VRA off: the converters go back to 48 kHz and ignore rate writes.
    nam_w(&mut l, u64::from(EXT_AUDIO_CTRL), 0);
    assert_eq!(l.rate(Stream::PcmOut), 48_000);
    nam_w(&mut l, u64::from(FRONT_DAC_RATE), 22_050);
    assert_eq!(l.rate(Stream::PcmOut), 48_000);
}

#[test]
fn playback_runs_at_the_stream_rate_with_ioc_interrupts() {
    let m = mem();
    let mut l = link();
    nam_w(&mut l, u64::from(EXT_AUDIO_CTRL), EXT_VRA);
    nam_w(&mut l, u64::from(FRONT_DAC_RATE), 44_100);
    // 4 periods of 441 frames (10 ms) each.
    setup_periods(&m, 4, 882);
    start(&mut l, &m, PO, 31, CR_RPBM | CR_IOCE);
    assert!(l.any_active());
    assert_eq!(nabm_r(&mut l, PO + u64::from(PICB), 2), 882);
    assert_eq!(nabm_r(&mut l, PO + u64::from(PIV), 1), 1);
    let t0 = Instant::now();
    let mut sink = Sink::default();
    // 5 ms: half a period moved, no interrupt yet.
    l.advance(Stream::PcmOut, t0, &m, &mut sink);
    l.advance(Stream::PcmOut, t0 + Duration::from_millis(5), &m, &mut sink);
    assert_eq!(sink.0.len(), 441 - 1);
    assert!(!l.interrupt());
    // Position as snd_intel8x0_pcm_pointer computes it: period - PICB.
    assert_eq!(nabm_r(&mut l, PO + u64::from(PICB), 2), 882 - 440);
    // 10 ms: the first period is done: BCIS, POINT, the line high.
    l.advance(
        Stream::PcmOut,
        t0 + Duration::from_millis(10),
        &m,
        &mut sink,
    );
    assert_eq!(sink.0.len(), 882);
    assert!(l.interrupt());
    assert_eq!(nabm_r(&mut l, PO + u64::from(CIV), 1), 1);
    assert_ne!(
        nabm_r(&mut l, PO + u64::from(SR), 2) & u32::from(SR_BCIS),
        0
    );
    let mut civ = 0;
    assert!(isr(&mut l, &m, PO, &mut civ));
    assert!(!l.interrupt(), "acknowledged");
    // One second in: exactly 44100 frames, in order, the ring repeating.
    for ms in (15..=1000).step_by(5) {
        l.advance(
            Stream::PcmOut,
            t0 + Duration::from_millis(ms),
            &m,
            &mut sink,
        );
        isr(&mut l, &m, PO, &mut civ);
    }
    assert_eq!(sink.0.len(), 88_200);
    let ring = 4 * 882;
    assert!(sink
        .0
        .iter()
        .enumerate()
        .all(|(i, &s)| s as usize == i % ring));
    // 100 periods passed: CIV wrapped around the 32-entry list three times.
    assert_eq!(nabm_r(&mut l, PO + u64::from(CIV), 1), 100 % 32);
    assert!(l.any_active(), "the ISR kept LVI ahead");
}

#[test]
fn last_valid_buffer_halts_and_a_new_lvi_restarts() {
    let m = mem();
    let mut l = link();
    setup_periods(&m, 2, 96);
    start(&mut l, &m, PO, 1, CR_RPBM | CR_IOCE | CR_LVBIE);
    let t0 = Instant::now();
    let mut sink = Sink::default();
    l.advance(Stream::PcmOut, t0, &m, &mut sink);
    // 48 kHz: 96 samples = 1 ms a buffer; 3 ms covers both and more.
    l.advance(Stream::PcmOut, t0 + Duration::from_millis(3), &m, &mut sink);
    assert_eq!(sink.0.len(), 192, "stops at LVI");
    let sr = nabm_r(&mut l, PO + u64::from(SR), 2) as u16;
    assert_eq!(
        sr & (SR_DCH | SR_CELV | SR_LVBCI | SR_BCIS),
        SR_DCH | SR_CELV | SR_LVBCI | SR_BCIS
    );
    assert!(l.interrupt());
    assert!(!l.any_active());
    // Without LVBIE and IOCE, the same status raises nothing. The run state
    // is the same, so the worker is not woken for it.
    let wake = l.nabm_write(&m, PO + u64::from(CR), &[CR_RPBM]);
    assert!(!wake, "no run state change");
    assert!(!l.interrupt());
    // Clearing the status bits (word write, as the ICH driver does).
    assert!(!l.nabm_write(&m, PO + u64::from(SR), &0x1cu16.to_le_bytes()));
    assert_eq!(nabm_r(&mut l, PO + u64::from(SR), 2) as u16 & 0x1c, 0);
    // More data: LVI moves on and the halted engine starts with buffer 2,
    // which wakes the worker.
    assert!(l.nabm_write(&m, PO + u64::from(LVI), &[3]), "restart wakes");
    assert!(l.any_active());
    // Moving LVI on while it runs does not.
    assert!(!l.nabm_write(&m, PO + u64::from(LVI), &[3]));
    assert_eq!(nabm_r(&mut l, PO + u64::from(CIV), 1), 2);
    let t1 = t0 + Duration::from_millis(10);
    l.advance(Stream::PcmOut, t1, &m, &mut sink);
    l.advance(Stream::PcmOut, t1 + Duration::from_millis(1), &m, &mut sink);
    assert_eq!(sink.0.len(), 192 + 96);
    assert_eq!(sink.0[192], 0, "buffer 2 is the ring's first half again");
}

#[test]
fn pause_and_resume_continue_the_same_buffer() {
    let m = mem();
    let mut l = link();
    setup_periods(&m, 2, 960);
    start(&mut l, &m, PO, 31, CR_RPBM | CR_IOCE);
    let t0 = Instant::now();
    let mut sink = Sink::default();
    l.advance(Stream::PcmOut, t0, &m, &mut sink);
    l.advance(Stream::PcmOut, t0 + Duration::from_millis(5), &m, &mut sink);
    assert_eq!(sink.0.len(), 480);
    // SNDRV_PCM_TRIGGER_PAUSE_PUSH: CR = IOCE.
    nabm_w(&mut l, &m, PO + u64::from(CR), u32::from(CR_IOCE), 1);
    assert_ne!(nabm_r(&mut l, PO + u64::from(SR), 1) & u32::from(SR_DCH), 0);
    l.advance(
        Stream::PcmOut,
        t0 + Duration::from_millis(50),
        &m,
        &mut sink,
    );
    assert_eq!(sink.0.len(), 480, "nothing moves while paused");
    assert_eq!(nabm_r(&mut l, PO + u64::from(PICB), 2), 480);
    // PAUSE_RELEASE: on from where it was, on a fresh clock.
    nabm_w(
        &mut l,
        &m,
        PO + u64::from(CR),
        u32::from(CR_RPBM | CR_IOCE),
        1,
    );
    let t1 = t0 + Duration::from_millis(60);
    l.advance(Stream::PcmOut, t1, &m, &mut sink);
    l.advance(Stream::PcmOut, t1 + Duration::from_millis(5), &m, &mut sink);
    assert_eq!(sink.0.len(), 960);
    assert!(sink.0.iter().enumerate().all(|(i, &s)| s as usize == i));
    // TRIGGER_STOP: CR = 0, wait for DCH, then reset the registers.
    nabm_w(&mut l, &m, PO + u64::from(CR), 0, 1);
    assert_ne!(nabm_r(&mut l, PO + u64::from(SR), 1) & u32::from(SR_DCH), 0);
    nabm_w(&mut l, &m, PO + u64::from(CR), u32::from(CR_RR), 1);
    assert_eq!(nabm_r(&mut l, PO + u64::from(BDBAR), 4), 0);
    assert_eq!(
        nabm_r(&mut l, PO + u64::from(CIV), 4),
        u32::from(SR_DCH) << 16
    );
}

#[test]
fn capture_fills_guest_buffers_with_silence_without_a_source() {
    let m = mem();
    let mut l = link();
    setup_periods(&m, 2, 96);
    start(&mut l, &m, PI, 31, CR_RPBM | CR_IOCE);
    let t0 = Instant::now();
    struct In;
    impl Dma for In {
        fn transfer(&mut self, mem: &GuestMemoryMmap<()>, addr: u64, samples: usize) {
            mem.write_slice(&vec![0u8; samples * 2], GuestAddress(addr))
                .unwrap();
        }
    }
    l.advance(Stream::PcmIn, t0, &m, &mut In);
    l.advance(Stream::PcmIn, t0 + Duration::from_millis(1), &m, &mut In);
    assert!(l.interrupt());
    assert_ne!(
        nabm_r(&mut l, u64::from(GLOB_STA), 4) & (1 << 5),
        0,
        "PIINT"
    );
    let v: u16 = m.read_obj(GuestAddress(BUF + 2)).unwrap();
    assert_eq!(v, 0, "the ramp was overwritten by silence");
}

#[test]
fn hostile_lists_do_not_hurt() {
    let m = mem();
    let mut l = link();
    let t0 = Instant::now();
    let mut sink = Sink::default();
    // A list outside RAM: every descriptor reads as empty; the engine halts
    // at LVI without spinning.
    nabm_w(&mut l, &m, PO + u64::from(BDBAR), 0xfff0_0000, 4);
    nabm_w(&mut l, &m, PO + u64::from(LVI), 5, 1);
    nabm_w(&mut l, &m, PO + u64::from(CR), u32::from(CR_RPBM), 1);
    l.advance(Stream::PcmOut, t0, &m, &mut sink);
    l.advance(Stream::PcmOut, t0 + Duration::from_millis(5), &m, &mut sink);
    assert!(sink.0.is_empty());
    assert!(!l.any_active());
    // Zero-length descriptors all round: skipped a bounded number per tick.
    nabm_w(&mut l, &m, PO + u64::from(CR), u32::from(CR_RR), 1);
    for i in 0..32u64 {
        m.write_obj(0u64, GuestAddress(BDL + i * 8)).unwrap();
    }
    start(&mut l, &m, PO, 10, CR_RPBM);
    nabm_w(&mut l, &m, PO + u64::from(LVI), 31, 1);
    for ms in 0..20 {
        l.advance(
            Stream::PcmOut,
            t0 + Duration::from_millis(ms),
            &m,
            &mut sink,
        );
        // LVI changed mid-run, again and again.
        nabm_w(&mut l, &m, PO + u64::from(LVI), ms as u32 * 7, 1);
    }
    assert!(sink.0.is_empty());
    // Buffers outside RAM play silence (the real Dma logs and zero-fills).
    nabm_w(&mut l, &m, PO + u64::from(CR), u32::from(CR_RR), 1);
    for i in 0..32u64 {
        m.write_obj(0xffff_fff0u32, GuestAddress(BDL + i * 8))
            .unwrap();
        m.write_obj(BD_IOC | 0xffff, GuestAddress(BDL + i * 8 + 4))
            .unwrap();
    }
    start(&mut l, &m, PO, 31, CR_RPBM);
    let mut out = Vec::new();
    let mut dma = OutDma {
        buf: &mut out,
        warned: false,
    };
    l.advance(Stream::PcmOut, t0, &m, &mut dma);
    l.advance(Stream::PcmOut, t0 + Duration::from_millis(10), &m, &mut dma);
    assert_eq!(out.len(), 960);
    assert!(out.iter().all(|&s| s == 0));
    // Odd widths and offsets anywhere in both BARs.
    for off in 0..0x100u64 {
        for w in [1, 2, 4] {
            nabm_r(&mut l, off, w);
            l.nabm_write(&m, off, &[0xff; 4][..w]);
            let mut b = [0u8; 4];
            l.nam_read(off, &mut b[..w]);
            l.nam_write(off, &[0xff; 4][..w]);
        }
    }
    // A stall longer than MAX_CATCH_UP is skipped, not replayed.
    nabm_w(&mut l, &m, PO + u64::from(CR), u32::from(CR_RR), 1);
    setup_periods(&m, 2, 0xfffe);
    start(&mut l, &m, PO, 31, CR_RPBM);
    let mut sink = Sink::default();
    let rate = l.rate(Stream::PcmOut) as usize;
    l.advance(Stream::PcmOut, t0, &m, &mut sink);
    l.advance(Stream::PcmOut, t0 + Duration::from_secs(10), &m, &mut sink);
    assert!(sink.0.len() <= 2 * rate / 10, "{} samples", sink.0.len());
}

/// Records what the card hands the backend.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    samples: Mutex<usize>,
}

impl PcmOut for Recorder {
    fn start(&self, rate: u32) {
        self.events.lock().unwrap().push(format!("start {rate}"));
    }
    fn samples(&self, s: &[i16]) {
        *self.samples.lock().unwrap() += s.len();
    }
    fn stop(&self) {
        self.events.lock().unwrap().push("stop".into());
    }
    fn volume(&self, v: [u16; 2], mute: bool) {
        self.events
            .lock()
            .unwrap()
            .push(format!("volume {:#x} {:#x} {mute}", v[0], v[1]));
    }
}

#[test]
fn device_worker_plays_in_real_time() {
    let m = mem();
    let line = Arc::new(RecordingLine::default());
    let rec = Arc::new(Recorder::default());
    let backend = Ac97Backend {
        out: rec.clone(),
        input: Arc::new(crate::audio::NoAudio),
    };
    let mut dev = Ac97::new(m.clone(), line.clone(), backend, "ac97-test").unwrap();
    assert_eq!(pci::config_read(&mut dev, 0), 0x2415_8086);
    assert_eq!(pci::config_read(&mut dev, 8) >> 8, CLASS_AUDIO);
    pci::config_write(&mut dev, COMMAND, &[0x05, 0]);
    let w = |d: &mut Ac97, bar, off, v: u32, n: usize| d.bar_write(bar, off, &v.to_le_bytes()[..n]);
    w(&mut dev, BAR_NAM, u64::from(MASTER_VOLUME), 0, 2);
    w(&mut dev, BAR_NAM, u64::from(PCM_OUT_VOLUME), 0x0808, 2);
    w(&mut dev, BAR_NAM, u64::from(FRONT_DAC_RATE), 44_100, 2);
    setup_periods(&m, 4, 4410);
    w(&mut dev, BAR_NABM, PO + u64::from(BDBAR), BDL as u32, 4);
    w(&mut dev, BAR_NABM, PO + u64::from(LVI), 31, 1);
    let t = Instant::now();
    w(
        &mut dev,
        BAR_NABM,
        PO + u64::from(CR),
        u32::from(CR_RPBM | CR_IOCE),
        1,
    );
    // Two 50 ms periods' worth, however loaded the host is.
    let deadline = t + Duration::from_secs(10);
    while *rec.samples.lock().unwrap() < 8820 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let moved = *rec.samples.lock().unwrap();
    let elapsed = t.elapsed();
    assert!(moved >= 8820, "{moved} samples in {elapsed:?}");
    // Never faster than the stream's rate (one tick of slack).
    let max = (elapsed + TICK).as_secs_f64() * 88_200.0;
    assert!(moved as f64 <= max, "{moved} samples in {elapsed:?}");
    assert!(line.is_high(), "IOC at the end of the first period");
    w(&mut dev, BAR_NABM, PO + u64::from(CR), 0, 1);
    dev.pause();
    dev.resume();
    dev.shutdown().unwrap();
    let ev = rec.events.lock().unwrap().clone();
    let start = ev.iter().position(|e| e == "start 44100").expect("started");
    assert_eq!(ev[start - 1], "volume 0xffff 0xffff false", "{ev:?}");
    assert_eq!(&ev[start + 1..], ["stop"], "{ev:?}");
}

/// A microphone that always has a constant sample.
struct ConstMic(i16);

impl PcmIn for ConstMic {
    fn start(&self, _: u32) {}
    fn stop(&self) {}
    fn volume(&self, _: [u16; 2], _: bool) {}
    fn read(&self, out: &mut [i16]) -> usize {
        out.fill(self.0);
        out.len()
    }
}

#[test]
fn a_muted_record_gain_records_silence() {
    let m = mem();
    let mut l = link();
    assert!(
        l.mixer.capture_volume().1,
        "the record gain is muted at reset"
    );
    setup_periods(&m, 2, 96);
    start(&mut l, &m, PI, 31, CR_RPBM);
    let mic = ConstMic(1234);
    let t0 = Instant::now();
    let capture = |l: &mut Link, at: Duration| {
        let mut dma = InDma {
            source: Some(&mic),
            buf: Vec::new(),
            warned: false,
            muted: l.mixer.capture_volume().1,
        };
        l.advance(Stream::PcmIn, t0 + at, &m, &mut dma);
    };
    capture(&mut l, Duration::ZERO);
    capture(&mut l, Duration::from_millis(1));
    let v: i16 = m.read_obj(GuestAddress(BUF + 2)).unwrap();
    assert_eq!(v, 0, "muted: silence");
    // The driver unmutes capture (the "Capture" switch): the mic is heard.
    nam_w(&mut l, u64::from(RECORD_GAIN), 0x0000);
    assert_eq!(l.mixer.capture_volume(), ([0xffff, 0xffff], false));
    assert!(l.capture_volume_changed);
    capture(&mut l, Duration::from_millis(5));
    let v: i16 = m.read_obj(GuestAddress(BUF + 2 * 96 + 2)).unwrap();
    assert_eq!(v, 1234, "unmuted: the microphone");
}
