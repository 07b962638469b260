//! Opus for the sound channels, as spice-common's `snd_codec` sets it up:
//! 48 kHz stereo, `OPUS_APPLICATION_AUDIO`, one 10 ms frame (480 samples a
//! channel) a packet, at most 480 bytes compressed. libopus does the work
//! (the `opus` crate over Debian's libopus).

use crate::proto::audio::{FRAME_SAMPLES, RATE};
use crate::Error;

fn opus_error(e: opus::Error) -> Error {
    Error::Opus(e.to_string())
}

/// spice-common's `SND_CODEC_MAX_COMPRESSED_BYTES`.
pub const MAX_PACKET: usize = 480;
/// The most one packet may decode to, per channel: 120 ms, Opus's longest.
const MAX_DECODED: usize = 5760;

pub struct OpusEncoder(opus::Encoder);

impl OpusEncoder {
    pub fn new() -> Result<Self, Error> {
        opus::Encoder::new(RATE, opus::Channels::Stereo, opus::Application::Audio)
            .map(OpusEncoder)
            .map_err(opus_error)
    }

    /// One 10 ms frame of interleaved stereo (FRAME_SAMPLES × 2 samples).
    pub fn encode(&mut self, frame: &[i16]) -> Result<Vec<u8>, Error> {
        if frame.len() != FRAME_SAMPLES * 2 {
            return Err(Error::Opus(format!(
                "a frame of {} samples, not {}",
                frame.len(),
                FRAME_SAMPLES * 2
            )));
        }
        self.0.encode_vec(frame, MAX_PACKET).map_err(opus_error)
    }
}

pub struct OpusDecoder {
    decoder: opus::Decoder,
    out: Vec<i16>,
}

impl OpusDecoder {
    pub fn new() -> Result<Self, Error> {
        Ok(OpusDecoder {
            decoder: opus::Decoder::new(RATE, opus::Channels::Stereo).map_err(opus_error)?,
            out: vec![0; MAX_DECODED * 2],
        })
    }

    /// A client's packet to interleaved stereo at 48 kHz. An empty packet is
    /// refused (libopus would conceal a loss, inventing sound).
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], Error> {
        if packet.is_empty() || packet.len() > MAX_PACKET * 4 {
            return Err(Error::Opus(format!("a packet of {} bytes", packet.len())));
        }
        let frames = self
            .decoder
            .decode(packet, &mut self.out, false)
            .map_err(opus_error)?;
        Ok(&self.out[..(frames * 2).min(self.out.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The left channel's frequency, by counting rising zero crossings.
    fn crossings_hz(stereo: &[i16]) -> f64 {
        let left: Vec<i16> = stereo.iter().step_by(2).copied().collect();
        let rising = left.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        rising as f64 * 48_000.0 / left.len() as f64
    }

    fn tone(hz: f64, frames: usize) -> Vec<i16> {
        (0..frames)
            .flat_map(|i| {
                let v = (2.0 * std::f64::consts::PI * hz * i as f64 / 48_000.0).sin();
                let s = (v * 12000.0) as i16;
                [s, s]
            })
            .collect()
    }

    #[test]
    fn a_tone_survives_the_round_trip() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let input = tone(440.0, 48_000);
        let mut output = Vec::new();
        let mut largest = 0;
        for frame in input.chunks_exact(FRAME_SAMPLES * 2) {
            let packet = enc.encode(frame).unwrap();
            largest = largest.max(packet.len());
            let pcm = dec.decode(&packet).unwrap();
            assert_eq!(pcm.len(), FRAME_SAMPLES * 2);
            output.extend_from_slice(pcm);
        }
        assert!(largest <= MAX_PACKET, "{largest} bytes");
        // Past the codec's start-up: the same tone, at the same level.
        let settled = &output[9600..];
        let hz = crossings_hz(settled);
        assert!((hz - 440.0).abs() < 2.0, "{hz} Hz");
        let power = |x: &[i16]| {
            x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64
        };
        let ratio = power(settled) / power(&input[9600..]);
        assert!((0.8..1.25).contains(&ratio), "power ratio {ratio}");
    }

    #[test]
    fn bad_frames_and_packets_are_errors() {
        let mut enc = OpusEncoder::new().unwrap();
        assert!(enc.encode(&[0; 100]).is_err());
        let mut dec = OpusDecoder::new().unwrap();
        assert!(dec.decode(&[]).is_err());
        assert!(dec.decode(&[0u8; 4000]).is_err());
        // Garbage either decodes to something bounded or is refused.
        for seed in 0..200u32 {
            let packet: Vec<u8> = (0..(seed % 60 + 1))
                .map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 7) as u8)
                .collect();
            if let Ok(pcm) = dec.decode(&packet) {
                assert!(pcm.len() <= MAX_DECODED * 2);
            }
        }
    }
}
