//! Intel 82801AA AC'97 audio (8086:2415), as QEMU's `-device AC97`: the
//! codec's mixer in I/O BAR 0 (NAM), the bus masters in I/O BAR 1 (NABM),
//! INTx. Linux's snd-intel8x0 and the Windows AC'97 driver drive it.
//!
//! The vCPU thread only touches registers. Samples move on the device's
//! worker: a timer ticks every few milliseconds while a bus master runs, and
//! each tick moves exactly the frames the stream's rate says are due since it
//! started, so the guest sees its buffers consumed at real time, with or
//! without anyone listening, never faster.

pub mod bus_master;
pub mod link;
pub mod mixer;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::warn;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

use self::bus_master::Dma;
use self::link::{Link, Stream};
use super::{PcmIn, PcmOut};
use crate::interrupt::IrqLine;
use crate::pci::config::COMMAND;
use crate::pci::{BarKind, PciConfig, PciDevice, PciInterrupt};
use crate::worker::{Token, Worker, WorkerEvents, WorkerHandler};
use crate::{Error, Result};

pub const VENDOR_ID: u16 = 0x8086;
pub const DEVICE_ID: u16 = 0x2415;
/// Multimedia audio controller.
pub const CLASS_AUDIO: u32 = 0x04_0100;
pub const REVISION: u8 = 0x01;
pub const BAR_NAM: usize = 0;
pub const BAR_NABM: usize = 1;
/// QEMU's region sizes (the 82801AA decodes 256 and 64 ports).
pub const NAM_SIZE: u64 = 1024;
pub const NABM_SIZE: u64 = 256;

/// How often the worker moves samples while a stream runs: SPICE's frame
/// (10 ms). A shorter tick would not bring samples to a client sooner (they
/// leave in whole frames) but would wake the worker more often.
pub const TICK: Duration = Duration::from_millis(10);
/// The first tick after a stream starts comes half a tick in: the playback
/// channel primes each stream with half a frame of silence, so its first
/// frame is complete then, 5 ms after the DMA started, and each later one
/// exactly on a tick (`spice::pcm::Converter::prime_half_frame`).
pub const FIRST_TICK: Duration = Duration::from_millis(5);

fn lock(link: &Mutex<Link>) -> MutexGuard<'_, Link> {
    // Every update leaves the registers consistent.
    link.lock().unwrap_or_else(|e| e.into_inner())
}

/// The audio backends the card plays to and records from.
#[derive(Clone)]
pub struct Ac97Backend {
    pub out: Arc<dyn PcmOut>,
    pub input: Arc<dyn PcmIn>,
}

pub struct Ac97 {
    config: PciConfig,
    irq: Arc<PciInterrupt>,
    link: Arc<Mutex<Link>>,
    mem: GuestMemoryMmap<()>,
    kick: Arc<EventFd>,
    worker: Option<Worker<Ac97Worker>>,
}

impl Ac97 {
    /// The card, with its worker (named `thread_name`) started.
    pub fn new(
        mem: GuestMemoryMmap<()>,
        intx: Arc<dyn IrqLine>,
        backend: Ac97Backend,
        thread_name: &str,
    ) -> Result<Self> {
        let mut config = PciConfig::new(VENDOR_ID, DEVICE_ID, CLASS_AUDIO, REVISION);
        // QEMU's default for machines since 2.x: the emulated-device vendor.
        config.set_subsystem(0x1af4, 0x1100);
        let irq = Arc::new(PciInterrupt::new(&mut config, intx));
        config.add_bar(BAR_NAM, NAM_SIZE, BarKind::Io);
        config.add_bar(BAR_NABM, NABM_SIZE, BarKind::Io);
        config.seal();
        let link = Arc::new(Mutex::new(Link::new()));
        let kick = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| Error::Worker(e.to_string()))?);
        let handler = Ac97Worker {
            link: link.clone(),
            mem: mem.clone(),
            irq: irq.clone(),
            backend,
            kick: kick.clone(),
            timer: TimerFd::new().map_err(|e| Error::Worker(e.to_string()))?,
            armed: false,
            playing: None,
            recording: None,
            out_buf: Vec::new(),
        };
        let worker = Worker::spawn(thread_name, handler)?;
        Ok(Ac97 {
            config,
            irq,
            link,
            mem,
            kick,
            worker: Some(worker),
        })
    }

    fn wake_worker(&self) {
        if let Err(e) = self.kick.write(1) {
            warn!("ac97: worker kick: {e}");
        }
    }

    fn update_dma_enable(&self) {
        lock(&self.link).dma_enabled = self.config.bus_master();
    }
}

impl PciDevice for Ac97 {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        if offset <= COMMAND && offset + data.len() > COMMAND {
            self.update_dma_enable();
        }
    }

    fn interrupt(&self) -> Option<Arc<PciInterrupt>> {
        Some(self.irq.clone())
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        let mut link = lock(&self.link);
        match bar {
            BAR_NAM => link.nam_read(offset, data),
            BAR_NABM => link.nabm_read(offset, data),
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let wake = {
            let mut link = lock(&self.link);
            let wake = match bar {
                BAR_NAM => {
                    link.nam_write(offset, data);
                    true
                }
                BAR_NABM => link.nabm_write(&self.mem, offset, data),
                _ => false,
            };
            // Under the link's lock, so the level never goes stale against
            // the worker's updates.
            self.irq.set_intx(link.interrupt());
            wake
        };
        if wake {
            self.wake_worker();
        }
    }

    fn reset(&mut self) {
        let mut link = lock(&self.link);
        link.reset();
        link.dma_enabled = self.config.bus_master();
        self.irq.set_intx(false);
        drop(link);
        self.wake_worker();
    }
}

impl crate::Lifecycle for Ac97 {
    fn pause(&mut self) {
        if let Some(w) = &self.worker {
            w.pause();
        }
    }

    fn resume(&mut self) {
        if let Some(w) = &self.worker {
            w.resume();
        }
    }

    fn shutdown(&mut self) -> io::Result<()> {
        if let Some(w) = self.worker.take() {
            if let Some(mut h) = w.stop() {
                h.stop_streams();
            }
        }
        Ok(())
    }
}

const KICK: Token = 1;
const TIMER: Token = 2;

/// The worker's side: the sample clocks' ticks and the backends.
struct Ac97Worker {
    link: Arc<Mutex<Link>>,
    mem: GuestMemoryMmap<()>,
    irq: Arc<PciInterrupt>,
    backend: Ac97Backend,
    kick: Arc<EventFd>,
    timer: TimerFd,
    armed: bool,
    /// The PCM out rate the backend was started with.
    playing: Option<u32>,
    recording: Option<u32>,
    out_buf: Vec<i16>,
}

impl WorkerHandler for Ac97Worker {
    fn register(&mut self, events: &WorkerEvents) -> io::Result<()> {
        events.add(&*self.kick, KICK)?;
        events.add(&self.timer, TIMER)
    }

    fn handle(&mut self, token: Token, _: &WorkerEvents) {
        match token {
            KICK => {
                let _ = self.kick.read();
            }
            TIMER => {
                let _ = self.timer.wait();
            }
            _ => return,
        }
        self.service(Instant::now());
    }
}

impl Ac97Worker {
    /// Move what is due on every stream, then tell the backends and the guest.
    fn service(&mut self, now: Instant) {
        self.out_buf.clear();
        let (play, record, volume, capture_volume, active) = {
            let mut link = lock(&self.link);
            let mut out = OutDma {
                buf: &mut self.out_buf,
                warned: false,
            };
            link.advance(Stream::PcmOut, now, &self.mem, &mut out);
            let mut pcm_in = InDma {
                source: Some(&*self.backend.input),
                buf: Vec::new(),
                warned: false,
                muted: link.mixer.capture_volume().1,
            };
            link.advance(Stream::PcmIn, now, &self.mem, &mut pcm_in);
            let mut mic = InDma {
                source: None,
                buf: Vec::new(),
                warned: false,
                muted: false,
            };
            link.advance(Stream::MicIn, now, &self.mem, &mut mic);
            self.irq.set_intx(link.interrupt());
            let play = link.bm[Stream::PcmOut as usize]
                .run_bit()
                .then(|| link.rate(Stream::PcmOut));
            let record = link.bm[Stream::PcmIn as usize]
                .run_bit()
                .then(|| link.rate(Stream::PcmIn));
            // Sent on change, and ahead of every start.
            let changed = std::mem::take(&mut link.volume_changed);
            let volume = (changed || (play.is_some() && play != self.playing))
                .then(|| link.mixer.output_volume());
            let changed = std::mem::take(&mut link.capture_volume_changed);
            let capture_volume = (changed || (record.is_some() && record != self.recording))
                .then(|| link.mixer.capture_volume());
            (play, record, volume, capture_volume, link.any_active())
        };
        if let Some((v, mute)) = volume {
            self.backend.out.volume(v, mute);
        }
        if let Some((v, mute)) = capture_volume {
            self.backend.input.volume(v, mute);
        }
        // A stream starting puts the ticks in phase with its clock.
        let started = (play.is_some() && play != self.playing)
            || (record.is_some() && record != self.recording);
        if play != self.playing {
            if self.playing.is_some() {
                self.backend.out.stop();
            }
            if let Some(rate) = play {
                self.backend.out.start(rate);
            }
            self.playing = play;
        }
        if !self.out_buf.is_empty() {
            self.backend.out.samples(&self.out_buf);
        }
        if record != self.recording {
            if self.recording.is_some() {
                self.backend.input.stop();
            }
            if let Some(rate) = record {
                self.backend.input.start(rate);
            }
            self.recording = record;
        }
        self.arm(active, started);
    }

    fn arm(&mut self, active: bool, started: bool) {
        if active == self.armed && !(active && started) {
            return;
        }
        let r = if active {
            self.timer.reset(FIRST_TICK, Some(TICK))
        } else {
            self.timer.clear()
        };
        match r {
            Ok(()) => self.armed = active,
            Err(e) => warn!("ac97: timer: {e}"),
        }
    }

    fn stop_streams(&mut self) {
        if self.playing.take().is_some() {
            self.backend.out.stop();
        }
        if self.recording.take().is_some() {
            self.backend.input.stop();
        }
    }
}

/// PCM out: guest buffers → the backend. A buffer outside RAM plays silence.
struct OutDma<'a> {
    buf: &'a mut Vec<i16>,
    warned: bool,
}

impl Dma for OutDma<'_> {
    fn transfer(&mut self, mem: &GuestMemoryMmap<()>, addr: u64, samples: usize) {
        let mut bytes = vec![0u8; samples * 2];
        if let Err(e) = mem.read_slice(&mut bytes, GuestAddress(addr)) {
            if !self.warned {
                warn!(
                    "ac97: playback buffer at {addr:#x}+{} unreadable: {e}",
                    bytes.len()
                );
                self.warned = true;
            }
            bytes.fill(0);
        }
        self.buf.extend(
            bytes
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]])),
        );
    }
}

/// PCM in / mic in: the backend's samples (silence when it has none) → guest
/// buffers. A buffer outside RAM drops them.
struct InDma<'a> {
    source: Option<&'a dyn PcmIn>,
    buf: Vec<i16>,
    warned: bool,
    /// The record gain is muted: what the source had is taken (it would
    /// otherwise pile up) and silence is recorded.
    muted: bool,
}

impl Dma for InDma<'_> {
    fn transfer(&mut self, mem: &GuestMemoryMmap<()>, addr: u64, samples: usize) {
        self.buf.clear();
        self.buf.resize(samples, 0);
        if let Some(src) = self.source {
            let got = src.read(&mut self.buf).min(samples);
            self.buf[got..].fill(0);
        }
        if self.muted {
            self.buf.fill(0);
        }
        let bytes: Vec<u8> = self.buf.iter().flat_map(|s| s.to_le_bytes()).collect();
        if let Err(e) = mem.write_slice(&bytes, GuestAddress(addr)) {
            if !self.warned {
                warn!(
                    "ac97: capture buffer at {addr:#x}+{} unwritable: {e}",
                    bytes.len()
                );
                self.warned = true;
            }
        }
    }
}
