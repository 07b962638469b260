//! The sound card's backend when SPICE carries the sound: what the AC97 plays
//! goes to the PLAYBACK channel's sink (once the server has attached it);
//! what it records comes from the RECORD channel, through a small queue
//! (silence when the client sends nothing).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use devices::audio::{PcmIn, PcmOut};
use spice::port::{AudioInControl, AudioInPort, AudioOutPort, AudioOutSink, PcmFormat};

/// Both sides of the playback path: a `PcmOut` for the card, an
/// `AudioOutPort` for the SPICE server.
#[derive(Default)]
pub struct SpiceAudio {
    sink: OnceLock<Arc<dyn AudioOutSink>>,
    control: OnceLock<Arc<dyn AudioInControl>>,
    captured: Mutex<VecDeque<i16>>,
}

/// Captured samples held for the guest: half a second of 48 kHz stereo.
const MAX_CAPTURED: usize = 48_000;

impl SpiceAudio {
    fn sink(&self) -> Option<&Arc<dyn AudioOutSink>> {
        self.sink.get()
    }

    fn captured(&self) -> MutexGuard<'_, VecDeque<i16>> {
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
        self.captured().clear();
        if let Some(c) = self.control.get() {
            c.start(PcmFormat { channels: 2, rate });
        }
    }

    fn stop(&self) {
        if let Some(c) = self.control.get() {
            c.stop();
        }
        self.captured().clear();
    }

    fn read(&self, out: &mut [i16]) -> usize {
        let mut q = self.captured();
        let n = out.len().min(q.len());
        for (o, s) in out.iter_mut().zip(q.drain(..n)) {
            *o = s;
        }
        n
    }
}

impl AudioInPort for SpiceAudio {
    fn attach(&self, control: Arc<dyn AudioInControl>) {
        if self.control.set(control).is_err() {
            tracing::warn!("audio: the SPICE server attached a second record control");
        }
    }

    fn captured(&self, samples: &[i16]) {
        let mut q = self.captured();
        q.extend(samples);
        // A capture overrun, as on hardware: the oldest samples go.
        let excess = q.len().saturating_sub(MAX_CAPTURED);
        q.drain(..excess);
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
