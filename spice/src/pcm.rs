//! Interleaved S16 PCM between a guest's rate and SPICE's 48 kHz, cut into the
//! 10 ms frames the audio channels carry. Resampling is rubato's: guests play
//! at 8-48 kHz, so playback only ever goes up to 48 kHz, which needs no
//! anti-aliasing filter, and cubic polynomial interpolation is cheap enough
//! to run on the device's thread; recording goes down from 48 kHz, which does
//! (a windowed sinc filter, rubato's).
//!
//! Going up, the resampler works on fixed *output* chunks of one frame and
//! asks for just the input that frame needs, so a frame leaves the moment its
//! last input sample arrives (with fixed 10 ms input chunks its interpolation
//! lookahead held every frame back to the next chunk, 10 ms late).

use std::collections::VecDeque;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, PolynomialDegree, Resampler, SincInterpolationParameters, WindowFunction,
};
use tracing::warn;

/// Input frames the down-sampler takes per call: 10 ms at the input rate.
fn chunk_frames(rate: u32) -> usize {
    (rate as usize / 100).max(1)
}

/// Extra silence [`Converter::prime_half_frame`] adds, in input frames, so
/// that rounding of the sample clock never makes a frame miss the tick it is
/// aligned to.
const PRIME_MARGIN: usize = 2;

/// A stream from `from` Hz to `to` Hz, `channels` interleaved, emitting
/// frames of `frame` samples per channel.
pub struct Converter {
    channels: usize,
    frame: usize,
    from: u32,
    to: u32,
    resampler: Option<Async<f32>>,
    input: Vec<f32>,
    output: Vec<f32>,
    ready: VecDeque<i16>,
}

impl Converter {
    pub fn new(from: u32, to: u32, channels: usize, frame: usize) -> Converter {
        let ratio = f64::from(to) / f64::from(from.max(1));
        let chunk = chunk_frames(from);
        let resampler = (from != to)
            .then(|| {
                let r = if to > from {
                    Async::<f32>::new_poly(
                        ratio,
                        1.0,
                        PolynomialDegree::Cubic,
                        frame.max(1),
                        channels,
                        FixedAsync::Output,
                    )
                } else {
                    let params =
                        SincInterpolationParameters::new(64, WindowFunction::BlackmanHarris2);
                    Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, channels, FixedAsync::Input)
                };
                r.map_err(|e| warn!("audio: no resampler {from} -> {to} Hz: {e}"))
                    .ok()
            })
            .flatten();
        Converter {
            channels: channels.max(1),
            frame,
            from,
            to,
            resampler,
            input: Vec::new(),
            output: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// Start the stream with silence, so that its first frame is complete
    /// once half a frame's time of input has arrived: the first samples
    /// reach the client half a frame sooner, and if the producer delivers
    /// on ticks one frame apart starting half a frame in (as the AC97's
    /// worker does), every later frame is complete on a tick instead of
    /// waiting for the next one. The silence (about 5 ms) is heard once,
    /// at the start.
    pub fn prime_half_frame(&mut self) {
        let needed = match &self.resampler {
            Some(r) => r.input_frames_next(),
            None => self.frame,
        };
        let frame_in = self.frame as u64 * u64::from(self.from) / u64::from(self.to.max(1));
        let half_in = usize::try_from(frame_in / 2).unwrap_or(0);
        let silence = needed.saturating_sub(half_in) + PRIME_MARGIN;
        self.push(&vec![0; silence * self.channels]);
    }

    /// Feed interleaved samples at the input rate.
    pub fn push(&mut self, samples: &[i16]) {
        let Some(r) = &mut self.resampler else {
            self.ready.extend(samples);
            return;
        };
        self.input
            .extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
        let ch = self.channels;
        loop {
            let need = r.input_frames_next();
            if self.input.len() < need * ch {
                break;
            }
            let out_frames = r.output_frames_max();
            self.output.resize(out_frames * ch, 0.0);
            let result = {
                let Ok(inp) = InterleavedSlice::new(&self.input[..need * ch], ch, need) else {
                    break;
                };
                let Ok(mut out) = InterleavedSlice::new_mut(&mut self.output, ch, out_frames)
                else {
                    break;
                };
                r.process_into_buffer(&inp, &mut out, None)
            };
            match result {
                Ok((used, made)) => {
                    self.input.drain(..used * ch);
                    self.ready.extend(
                        self.output[..made * ch]
                            .iter()
                            .map(|&v| (v * 32768.0).clamp(-32768.0, 32767.0) as i16),
                    );
                }
                Err(e) => {
                    warn!("audio: resampling failed: {e}; dropping input");
                    self.input.clear();
                    break;
                }
            }
        }
    }

    /// Take up to `out.len()` converted samples (interleaved); returns how
    /// many there were.
    pub fn take(&mut self, out: &mut [i16]) -> usize {
        let n = out.len().min(self.ready.len());
        for (o, s) in out.iter_mut().zip(self.ready.drain(..n)) {
            *o = s;
        }
        n
    }

    /// Samples converted and not yet taken.
    pub fn pending(&self) -> usize {
        self.ready.len()
    }

    /// The next whole frame, if there is one.
    pub fn frame(&mut self) -> Option<Vec<i16>> {
        let n = self.frame * self.channels;
        (self.ready.len() >= n).then(|| self.ready.drain(..n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dominant frequency of the left channel, by counting zero crossings.
    pub fn crossings_hz(samples: &[i16], channels: usize, rate: u32) -> f64 {
        let left: Vec<i16> = samples.iter().step_by(channels).copied().collect();
        let ups = left.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        ups as f64 * f64::from(rate) / left.len() as f64
    }

    fn tone(hz: f64, rate: u32, frames: usize) -> Vec<i16> {
        (0..frames)
            .flat_map(|i| {
                let v = (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin();
                let s = (v * 12000.0) as i16;
                [s, s]
            })
            .collect()
    }

    #[test]
    fn resamples_a_tone_to_48k_in_10ms_frames() {
        let mut c = Converter::new(44_100, 48_000, 2, 480);
        let input = tone(440.0, 44_100, 44_100);
        // In device-sized pieces, as a worker tick hands them over.
        for piece in input.chunks(441) {
            c.push(piece);
        }
        let mut out = Vec::new();
        while let Some(f) = c.frame() {
            assert_eq!(f.len(), 960);
            out.extend(f);
        }
        let frames = out.len() / 2;
        assert!((47_000..=48_000).contains(&frames), "{frames} frames");
        let hz = crossings_hz(&out[4800..], 2, 48_000);
        assert!((hz - 440.0).abs() < 2.0, "{hz} Hz");
    }

    #[test]
    fn resamples_a_recorded_tone_down_to_the_guest_rate() {
        let mut c = Converter::new(48_000, 22_050, 2, 480);
        for piece in tone(1000.0, 48_000, 48_000).chunks(960) {
            c.push(piece);
        }
        let mut out = vec![0; 2 * 22_050];
        let n = c.take(&mut out);
        assert!((21_500 * 2..=22_050 * 2).contains(&n), "{n} samples");
        let hz = crossings_hz(&out[2205..n], 2, 22_050);
        assert!((hz - 1000.0).abs() < 3.0, "{hz} Hz");
    }

    /// A producer that delivers what is due on ticks 10 ms apart, the first
    /// 5 ms after the start (the AC97 worker's pattern): once primed, every
    /// tick completes exactly one frame, the first on the first tick.
    #[test]
    fn a_primed_stream_completes_a_frame_on_every_tick() {
        for rate in [8_000u32, 11_025, 22_050, 32_000, 44_100, 48_000] {
            let mut c = Converter::new(rate, 48_000, 2, 480);
            c.prime_half_frame();
            assert!(c.frame().is_none(), "{rate}: nothing before the first tick");
            let input = tone(440.0, rate, rate as usize);
            let mut fed = 0;
            for tick in 0..90u64 {
                let due = usize::try_from((5 + 10 * tick) * u64::from(rate) / 1000).unwrap();
                c.push(&input[fed * 2..due * 2]);
                fed = due;
                assert!(c.frame().is_some(), "{rate} Hz: no frame on tick {tick}");
                assert!(c.frame().is_none(), "{rate} Hz: two frames on tick {tick}");
            }
        }
    }

    #[test]
    fn same_rate_passes_through() {
        let mut c = Converter::new(48_000, 48_000, 2, 480);
        let input = tone(1000.0, 48_000, 960);
        c.push(&input);
        assert_eq!(c.frame().unwrap(), input[..960]);
        assert_eq!(c.frame().unwrap(), input[960..]);
        assert_eq!(c.frame(), None);
    }
}
