//! The sound card's backend when SPICE carries the sound: what the AC97 plays
//! goes to the PLAYBACK channel's sink (once the server has attached it);
//! what it records comes from the RECORD channel, through a small jitter
//! buffer (silence when the client sends nothing).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use devices::audio::{PcmIn, PcmOut};
use spice::port::{AudioInControl, AudioInPort, AudioOutPort, AudioOutSink, PcmFormat};

/// Both sides of the playback path: a `PcmOut` for the card, an
/// `AudioOutPort` for the SPICE server.
#[derive(Default)]
pub struct SpiceAudio {
    sink: OnceLock<Arc<dyn AudioOutSink>>,
    control: OnceLock<Arc<dyn AudioInControl>>,
    captured: Mutex<Capture>,
}

/// Captured samples held for the guest: half a second of 48 kHz stereo.
const MAX_CAPTURED: usize = 48_000;
/// The client's data arrives in bursts (a frame every 10 ms, network
/// jitter) while the card takes it every tick: the card gets silence until
/// this much is queued, and again after the queue ran dry, so a late burst
/// is absorbed instead of tearing the stream with a gap every few ticks.
const PREFILL: Duration = Duration::from_millis(40);

/// The capture queue, in the guest's format (interleaved stereo at `rate`).
#[derive(Default)]
struct Capture {
    samples: VecDeque<i16>,
    rate: u32,
    /// Enough was queued: the card reads from it.
    primed: bool,
    underruns: u64,
}

impl Capture {
    fn prefill(&self) -> usize {
        (u128::from(self.rate) * 2 * PREFILL.as_millis() / 1000) as usize
    }

    fn restart(&mut self, rate: u32) {
        self.samples.clear();
        self.rate = rate;
        self.primed = false;
    }

    fn push(&mut self, samples: &[i16]) {
        self.samples.extend(samples);
        // A capture overrun, as on hardware: the oldest samples go.
        let excess = self.samples.len().saturating_sub(MAX_CAPTURED);
        self.samples.drain(..excess);
        if !self.primed && self.samples.len() >= self.prefill() {
            self.primed = true;
        }
    }

    fn read(&mut self, out: &mut [i16]) -> usize {
        if !self.primed {
            return 0;
        }
        let n = out.len().min(self.samples.len());
        for (o, s) in out.iter_mut().zip(self.samples.drain(..n)) {
            *o = s;
        }
        if n < out.len() {
            self.primed = false;
            self.underruns += 1;
            tracing::debug!(underruns = self.underruns, "audio: capture ran dry");
        }
        n
    }
}

impl SpiceAudio {
    fn sink(&self) -> Option<&Arc<dyn AudioOutSink>> {
        self.sink.get()
    }

    fn captured(&self) -> MutexGuard<'_, Capture> {
        self.captured.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PcmOut for SpiceAudio {
    fn start(&self, rate: u32) {
        if let Some(s) = self.sink() {
            s.start(PcmFormat { channels: 2, rate });
        }
    }

    fn samples(&self, samples: &[i16]) {
        if let Some(s) = self.sink() {
            // Refused while the client is behind: dropped (the channel logs).
            let _ = s.frames(samples);
        }
    }

    fn stop(&self) {
        if let Some(s) = self.sink() {
            s.stop();
        }
    }

    fn volume(&self, volume: [u16; 2], mute: bool) {
        if let Some(s) = self.sink() {
            s.volume(&volume, mute);
        }
    }
}

/// The card's capture: what the RECORD channel delivered, oldest first;
/// silence (nothing read) when there is none.
impl PcmIn for SpiceAudio {
    fn start(&self, rate: u32) {
        self.captured().restart(rate);
        if let Some(c) = self.control.get() {
            c.start(PcmFormat { channels: 2, rate });
        }
    }

    fn stop(&self) {
        if let Some(c) = self.control.get() {
            c.stop();
        }
        self.captured().restart(0);
    }

    fn read(&self, out: &mut [i16]) -> usize {
        self.captured().read(out)
    }

    /// Forwarded as RECORD VOLUME/MUTE, as QEMU's spice audio backend does.
    fn volume(&self, volume: [u16; 2], mute: bool) {
        if let Some(c) = self.control.get() {
            c.volume(&volume, mute);
        }
    }
}

impl AudioInPort for SpiceAudio {
    fn attach(&self, control: Arc<dyn AudioInControl>) {
        if self.control.set(control).is_err() {
            tracing::warn!("audio: the SPICE server attached a second record control");
        }
    }

    fn captured(&self, samples: &[i16]) {
        self.captured().push(samples);
    }
}

impl AudioOutPort for SpiceAudio {
    fn attach(&self, sink: Arc<dyn AudioOutSink>) {
        if self.sink.set(sink).is_err() {
            tracing::warn!("audio: the SPICE server attached a second playback sink");
        }
    }

    fn client_attached(&self, attached: bool) {
        tracing::debug!(attached, "audio: playback client");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_waits_for_the_prefill_and_again_after_running_dry() {
        let audio = SpiceAudio::default();
        PcmIn::start(&audio, 48_000);
        let prefill = 48_000 * 2 * 40 / 1000;
        let mut out = vec![7i16; 1000];
        AudioInPort::captured(&audio, &vec![1i16; prefill - 2]);
        assert_eq!(audio.read(&mut out), 0, "silence until the prefill");
        AudioInPort::captured(&audio, &[1, 1]);
        assert_eq!(audio.read(&mut out), 1000);
        assert!(out.iter().all(|&s| s == 1));
        // 3840 - 1000 = 2840 left: two full reads, then a short one.
        assert_eq!(audio.read(&mut out), 1000);
        assert_eq!(audio.read(&mut out), 1000);
        assert_eq!(audio.read(&mut out), 840, "what is left, then dry");
        AudioInPort::captured(&audio, &vec![2i16; 1000]);
        assert_eq!(audio.read(&mut out), 0, "primes again first");
        AudioInPort::captured(&audio, &vec![2i16; prefill]);
        assert_eq!(audio.read(&mut out), 1000);
        // Overrun: the newest half second is kept.
        AudioInPort::captured(&audio, &vec![3i16; MAX_CAPTURED + 10]);
        assert_eq!(audio.captured().samples.len(), MAX_CAPTURED);
        // Stopping forgets it all.
        PcmIn::stop(&audio);
        assert_eq!(audio.read(&mut out), 0);
    }
}
