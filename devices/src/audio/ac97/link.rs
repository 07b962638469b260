//! The AC-link controller's state: the codec (NAM), the three bus masters and
//! the global registers (NABM), and the sample clocks that pace the bus
//! masters. The vCPU side (register accesses) and the device worker (DMA on
//! timer ticks) share it behind one small lock; neither ever waits for the
//! other's I/O.

use std::time::{Duration, Instant};

use tracing::debug;
use vm_memory::GuestMemoryMmap;

use super::bus_master::{BusMaster, Dma, Progress};
use super::mixer::{self, Mixer, MixerChange};

/// NABM global registers.
pub const GLOB_CNT: u8 = 0x2c;
pub const GLOB_STA: u8 = 0x30;
pub const CAS: u8 = 0x34;

/// GLOB_CNT: warm reset (self-clearing), cold reset# (1 = out of reset).
const GC_WARM_RESET: u32 = 1 << 2;
const GC_COLD_RESET_N: u32 = 1 << 1;
/// GIE, cold, warm, the two resume interrupt enables, PCM 4/6 channels.
const GC_VALID: u32 = 0x3f | (3 << 20);

/// GLOB_STA bits.
const GS_PIINT: u32 = 1 << 5;
const GS_POINT: u32 = 1 << 6;
const GS_MINT: u32 = 1 << 7;
/// Primary codec ready: there is one codec and it is always ready.
pub const GS_S0CR: u32 = 1 << 8;
/// Write-one-to-clear: read completion status, resume interrupts, GPI.
const GS_WRITE_CLEAR: u32 = (1 << 15) | (1 << 11) | (1 << 10) | 1;
/// Writable: the codec power-down semaphores AD3 and MD3.
const GS_WRITABLE: u32 = (1 << 17) | (1 << 16);

/// The bus masters, in NABM order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    PcmIn = 0,
    PcmOut = 1,
    MicIn = 2,
}

pub const STREAMS: [Stream; 3] = [Stream::PcmIn, Stream::PcmOut, Stream::MicIn];

impl Stream {
    /// Samples per frame: stereo PCM, mono mic.
    pub fn channels(self) -> u32 {
        match self {
            Stream::MicIn => 1,
            _ => 2,
        }
    }

    fn rate_register(self) -> u8 {
        match self {
            Stream::PcmIn => mixer::LR_ADC_RATE,
            Stream::PcmOut => mixer::FRONT_DAC_RATE,
            Stream::MicIn => mixer::MIC_ADC_RATE,
        }
    }

    fn interrupt_bit(self) -> u32 {
        match self {
            Stream::PcmIn => GS_PIINT,
            Stream::PcmOut => GS_POINT,
            Stream::MicIn => GS_MINT,
        }
    }
}

/// The most a bus master catches up in one tick. A longer gap (the VM was
/// paused, the host stalled) is skipped, not played at once: a guest must
/// never see its stream run faster than real time.
pub const MAX_CATCH_UP: Duration = Duration::from_millis(100);

/// A running stream's sample clock: frames due since `start` at `rate`.
#[derive(Clone, Copy, Debug)]
struct Clock {
    start: Instant,
    rate: u32,
    frames: u64,
}

impl Clock {
    fn due(&mut self, now: Instant) -> u64 {
        let mut elapsed = now.saturating_duration_since(self.start);
        let behind = elapsed.saturating_sub(self.frames_duration());
        if behind > MAX_CATCH_UP {
            debug!("ac97: stream clock {behind:?} behind; skipping ahead");
            self.start = now - self.frames_duration().min(elapsed);
            elapsed = now.saturating_duration_since(self.start);
        }
        let total = (elapsed.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64;
        total.saturating_sub(self.frames)
    }

    fn frames_duration(&self) -> Duration {
        Duration::from_nanos(
            (u128::from(self.frames) * 1_000_000_000 / u128::from(self.rate.max(1))) as u64,
        )
    }
}

/// Everything behind the two BARs.
pub struct Link {
    pub mixer: Mixer,
    pub bm: [BusMaster; 3],
    glob_cnt: u32,
    glob_sta: u32,
    /// Codec access semaphore: a read returns it and takes it; any codec
    /// access gives it back.
    cas: u8,
    clocks: [Option<Clock>; 3],
    /// Set when output volume/mute changed, for the worker to forward.
    pub volume_changed: bool,
    /// Set when the record gain's mute changed, likewise.
    pub capture_volume_changed: bool,
    /// PCI bus mastering is on (COMMAND.MASTER): without it no DMA happens.
    pub dma_enabled: bool,
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}

impl Link {
    pub fn new() -> Self {
        Link {
            mixer: Mixer::new(),
            bm: [BusMaster::new(), BusMaster::new(), BusMaster::new()],
            glob_cnt: 0,
            glob_sta: 0,
            cas: 0,
            clocks: [None; 3],
            volume_changed: true,
            capture_volume_changed: true,
            dma_enabled: false,
        }
    }

    /// Machine reset: everything to power-on.
    pub fn reset(&mut self) {
        *self = Link::new();
    }

    pub fn rate(&self, s: Stream) -> u32 {
        self.mixer.rate(s.rate_register())
    }

    /// NAM read (the codec).
    pub fn nam_read(&mut self, offset: u64, data: &mut [u8]) {
        self.cas = 0;
        if data.len() != 2 {
            // Codec registers are 16 bits wide; other widths read as absent.
            data.fill(0xff);
            return;
        }
        let v = u8::try_from(offset).map_or(0xffff, |r| self.mixer.read(r));
        data.copy_from_slice(&v.to_le_bytes());
    }

    /// NAM write.
    pub fn nam_write(&mut self, offset: u64, data: &[u8]) {
        self.cas = 0;
        let (Ok(reg), [lo, hi]) = (u8::try_from(offset), data) else {
            debug!(
                "ac97: {}-byte codec write at {offset:#x} ignored",
                data.len()
            );
            return;
        };
        match self.mixer.write(reg, u16::from_le_bytes([*lo, *hi])) {
            MixerChange::Rates => self.restart_clocks(),
            MixerChange::Volume => self.volume_changed = true,
            MixerChange::CaptureVolume => self.capture_volume_changed = true,
            MixerChange::None => {}
        }
    }

    /// NABM read, any width at any offset.
    pub fn nabm_read(&mut self, offset: u64, data: &mut [u8]) {
        let Ok(offset) = u8::try_from(offset) else {
            data.fill(0xff);
            return;
        };
        let mut globals = [0u8; 12];
        globals[0..4].copy_from_slice(&self.glob_cnt.to_le_bytes());
        globals[4..8].copy_from_slice(&self.glob_status().to_le_bytes());
        globals[8] = self.cas;
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::from(offset) + i;
            *b = match at {
                0..=0x2b => {
                    let mut one = [0u8];
                    self.bm[at / 16].read((at % 16) as u8, &mut one);
                    one[0]
                }
                0x2c..=0x37 => globals[at - 0x2c],
                _ => 0xff,
            };
        }
        if offset == CAS {
            self.cas = 1;
        }
    }

    /// NABM write. Returns true if a bus master's run state changed (the
    /// worker starts or stops the backend and re-arms its timer); the
    /// driver's other writes (LVI, status) leave the worker asleep.
    pub fn nabm_write(&mut self, mem: &GuestMemoryMmap<()>, offset: u64, data: &[u8]) -> bool {
        let Ok(offset) = u8::try_from(offset) else {
            return false;
        };
        match offset {
            0..=0x2b => {
                let i = usize::from(offset / 16);
                let was = (self.bm[i].active(), self.bm[i].run_bit());
                let end = (usize::from(offset % 16) + data.len()).min(16);
                let n = end - usize::from(offset % 16);
                self.bm[i].write(mem, offset % 16, &data[..n]);
                let now = (self.bm[i].active(), self.bm[i].run_bit());
                if now.0 != was.0 {
                    self.clocks[i] = None;
                }
                now != was
            }
            GLOB_CNT if data.len() == 4 => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                if self.glob_cnt & GC_COLD_RESET_N != 0 && v & GC_COLD_RESET_N == 0 {
                    // Into cold reset: the codec loses its registers.
                    self.mixer.reset();
                    self.restart_clocks();
                    self.volume_changed = true;
                    self.capture_volume_changed = true;
                }
                // A warm reset completes at once.
                self.glob_cnt = v & GC_VALID & !GC_WARM_RESET;
                false
            }
            GLOB_STA if data.len() == 4 => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.glob_sta &= !(v & GS_WRITE_CLEAR);
                self.glob_sta = (self.glob_sta & !GS_WRITABLE) | (v & GS_WRITABLE);
                false
            }
            _ => {
                debug!(
                    "ac97: {}-byte write at NABM {offset:#x} ignored",
                    data.len()
                );
                false
            }
        }
    }

    /// GLOB_STA as the driver reads it: the bus masters' interrupts mirrored.
    fn glob_status(&self) -> u32 {
        let mut v = self.glob_sta | GS_S0CR;
        for s in STREAMS {
            if self.bm[s as usize].interrupt() {
                v |= s.interrupt_bit();
            }
        }
        v
    }

    /// The INTx level.
    pub fn interrupt(&self) -> bool {
        self.bm.iter().any(BusMaster::interrupt)
    }

    /// Any bus master moving samples (the worker keeps its timer armed)?
    pub fn any_active(&self) -> bool {
        self.bm.iter().any(BusMaster::active)
    }

    /// A rate changed: running streams continue on a fresh clock.
    fn restart_clocks(&mut self) {
        self.clocks = [None; 3];
    }

    /// Run stream `s` up to `now`: move the samples its clock says are due.
    pub fn advance(
        &mut self,
        s: Stream,
        now: Instant,
        mem: &GuestMemoryMmap<()>,
        dma: &mut dyn Dma,
    ) -> Progress {
        let i = s as usize;
        if !self.bm[i].active() || !self.dma_enabled {
            self.clocks[i] = None;
            return Progress::default();
        }
        let rate = self.rate(s);
        let clock = self.clocks[i].get_or_insert(Clock {
            start: now,
            rate,
            frames: 0,
        });
        let frames = clock.due(now);
        if frames == 0 {
            return Progress::default();
        }
        let channels = s.channels() as usize;
        let budget = usize::try_from(frames)
            .unwrap_or(usize::MAX)
            .saturating_mul(channels);
        let p = self.bm[i].run(mem, budget, dma);
        // The clock counts what the stream was due, whether or not the guest
        // had buffers for all of it: an underrun is lost time, as on hardware.
        if let Some(c) = &mut self.clocks[i] {
            c.frames += frames;
        }
        if p.halted {
            self.clocks[i] = None;
        }
        p
    }
}
