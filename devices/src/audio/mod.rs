//! Sound devices and the backend they play to and record from.
//!
//! A sound card paces itself by its own sample clock (on its device worker)
//! and pushes what the guest plays to a [`PcmOut`], and pulls what the guest
//! records from a [`PcmIn`]. Neither call ever blocks: the backend (the SPICE
//! playback and record channels, through the VMM) queues or drops. With no
//! one listening the card keeps running at the same rate.

pub mod ac97;

/// Where the guest's playback goes: interleaved S16 stereo at `rate`.
pub trait PcmOut: Send + Sync {
    /// The guest started a stream at `rate` Hz (or changed its rate).
    fn start(&self, rate: u32);
    /// Interleaved left/right samples, in time order.
    fn samples(&self, samples: &[i16]);
    /// The guest stopped (or paused) the stream.
    fn stop(&self);
    /// Output volume per channel, linear 0..=0xffff, and mute.
    fn volume(&self, volume: [u16; 2], mute: bool);
}

/// Where the guest's recording comes from: interleaved S16 stereo at `rate`.
pub trait PcmIn: Send + Sync {
    fn start(&self, rate: u32);
    fn stop(&self);
    /// Capture volume per channel, linear 0..=0xffff, and mute (the card
    /// records silence while muted; a client may mute its microphone too).
    fn volume(&self, volume: [u16; 2], mute: bool);
    /// Fill `out` from what was captured; returns how many samples were
    /// written (the device fills the rest with silence).
    fn read(&self, out: &mut [i16]) -> usize;
}

/// No backend: output is dropped, input is silence.
pub struct NoAudio;

impl PcmOut for NoAudio {
    fn start(&self, _: u32) {}
    fn samples(&self, _: &[i16]) {}
    fn stop(&self) {}
    fn volume(&self, _: [u16; 2], _: bool) {}
}

impl PcmIn for NoAudio {
    fn start(&self, _: u32) {}
    fn stop(&self) {}
    fn volume(&self, _: [u16; 2], _: bool) {}
    fn read(&self, _: &mut [i16]) -> usize {
        0
    }
}
