//! The sound card's backend when SPICE carries the sound: what the AC97 plays
//! goes to the PLAYBACK channel's sink (once the server has attached it);
//! recording comes from the RECORD channel (silence until there is one).

use std::sync::{Arc, OnceLock};

use devices::audio::{PcmIn, PcmOut};
use spice::port::{AudioOutPort, AudioOutSink, PcmFormat};

/// Both sides of the playback path: a `PcmOut` for the card, an
/// `AudioOutPort` for the SPICE server.
#[derive(Default)]
pub struct SpiceAudio {
    sink: OnceLock<Arc<dyn AudioOutSink>>,
}

impl SpiceAudio {
    fn sink(&self) -> Option<&Arc<dyn AudioOutSink>> {
        self.sink.get()
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

/// No RECORD channel yet: the card records silence.
impl PcmIn for SpiceAudio {
    fn start(&self, _: u32) {}
    fn stop(&self) {}
    fn read(&self, _: &mut [i16]) -> usize {
        0
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
