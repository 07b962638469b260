//! Per-channel traffic counters: written by the channel's task (its `Conn`
//! counts every message, the display channel its draws, image codecs and
//! video streams, the link meter its estimate), read by `SpiceServer::clients()` for QMP
//! `query-spice`. Relaxed atomics: each number is a counter or a latest value
//! on its own; a snapshot need not be consistent across them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::proto::{
    IMAGE_TYPE_BITMAP, IMAGE_TYPE_FROM_CACHE, IMAGE_TYPE_FROM_CACHE_LOSSLESS, IMAGE_TYPE_GLZ_RGB,
    IMAGE_TYPE_JPEG, IMAGE_TYPE_JPEG_ALPHA, IMAGE_TYPE_LZ4, IMAGE_TYPE_LZ_RGB,
    IMAGE_TYPE_ZLIB_GLZ_RGB,
};

/// The image codecs counted, in report order (`ChannelStats::codecs`);
/// "mjpeg" counts video stream frames (STREAM_DATA), the rest images.
pub const CODECS: [&str; 9] = [
    "raw",
    "lz",
    "lz4",
    "jpeg",
    "cache",
    "glz",
    "zlib-glz",
    "jpeg-alpha",
    "mjpeg",
];
const MJPEG: usize = 8;

/// A SpiceImage's codec (an index into [`CODECS`]) from its type byte.
fn codec_index(image: &[u8]) -> Option<usize> {
    Some(match *image.get(8)? {
        IMAGE_TYPE_BITMAP => 0,
        IMAGE_TYPE_LZ_RGB => 1,
        IMAGE_TYPE_LZ4 => 2,
        IMAGE_TYPE_JPEG => 3,
        IMAGE_TYPE_FROM_CACHE | IMAGE_TYPE_FROM_CACHE_LOSSLESS => 4,
        IMAGE_TYPE_GLZ_RGB => 5,
        IMAGE_TYPE_ZLIB_GLZ_RGB => 6,
        IMAGE_TYPE_JPEG_ALPHA => 7,
        _ => return None,
    })
}

/// What a channel has sent and what its link looks like, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelStats {
    /// Bytes of framed messages written to the client.
    pub bytes_sent: u64,
    pub messages_sent: u64,
    /// DRAW_COPY and DRAW_FILL messages (display channels).
    pub draws: u64,
    /// Estimated link bandwidth, bits per second.
    pub bandwidth_bps: Option<u64>,
    /// Estimated round-trip latency.
    pub latency: Option<Duration>,
    /// Images sent per codec, for each of [`CODECS`] (display channels).
    pub codecs: Vec<(&'static str, u64)>,
    /// Video streams created for this client (STREAM_CREATE).
    pub streams_created: u64,
    /// Stream frames sent (STREAM_DATA).
    pub stream_frames: u64,
    /// Stream frames never sent because the client lagged: newer ones
    /// replaced them, or the stream ended first.
    pub stream_drops: u64,
    /// While the client has a stream: the JPEG quality of its last frame
    /// and the frames sent over the last second.
    pub stream_live: Option<LiveStream>,
}

/// The newest stream frame's quality and the frame rate it goes at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiveStream {
    pub quality: u8,
    pub fps: f64,
}

#[derive(Default)]
pub struct LiveStats {
    bytes: AtomicU64,
    messages: AtomicU64,
    draws: AtomicU64,
    /// 0: not known.
    bandwidth: AtomicU64,
    /// Microseconds + 1; 0: not known.
    latency: AtomicU64,
    codecs: [AtomicU64; CODECS.len()],
    streams: AtomicU64,
    stream_drops: AtomicU64,
    /// The live stream's quality; 0: no stream.
    stream_quality: AtomicU64,
    /// Its frame rate, f64 bits.
    stream_fps: AtomicU64,
}

impl LiveStats {
    pub fn message(&self, bytes: usize) {
        self.messages.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// A DRAW_* message; `image`: the SpiceImage it carries.
    pub fn draw(&self, image: Option<&[u8]>) {
        self.draws.fetch_add(1, Relaxed);
        if let Some(i) = image.and_then(codec_index) {
            self.codecs[i].fetch_add(1, Relaxed);
        }
    }

    /// A STREAM_CREATE went out.
    pub fn stream_created(&self) {
        self.streams.fetch_add(1, Relaxed);
    }

    /// A STREAM_DATA went out: a frame at JPEG `quality`, the stream now
    /// at `fps` frames/s.
    pub fn stream_frame(&self, quality: u8, fps: f64) {
        self.codecs[MJPEG].fetch_add(1, Relaxed);
        self.stream_fps.store(fps.to_bits(), Relaxed);
        self.stream_quality
            .store(u64::from(quality.max(1)), Relaxed);
    }

    /// `n` frames the client will never get (see `ChannelStats::stream_drops`).
    pub fn stream_dropped(&self, n: u64) {
        self.stream_drops.fetch_add(n, Relaxed);
    }

    /// The client has no stream any more.
    pub fn streams_ended(&self) {
        self.stream_quality.store(0, Relaxed);
    }

    pub fn estimate(&self, bandwidth: Option<f64>, latency: Option<Duration>) {
        // At least 1 bit/s once known, so that 0 keeps meaning "not known".
        let b = bandwidth.map_or(0, |b| (b as u64).max(1));
        self.bandwidth.store(b, Relaxed);
        let l = latency.map_or(0, |l| (l.as_micros() as u64).saturating_add(1));
        self.latency.store(l, Relaxed);
    }

    pub fn snapshot(&self) -> ChannelStats {
        let b = self.bandwidth.load(Relaxed);
        let l = self.latency.load(Relaxed);
        ChannelStats {
            bytes_sent: self.bytes.load(Relaxed),
            messages_sent: self.messages.load(Relaxed),
            draws: self.draws.load(Relaxed),
            bandwidth_bps: (b != 0).then_some(b),
            latency: (l != 0).then(|| Duration::from_micros(l - 1)),
            codecs: CODECS
                .iter()
                .zip(&self.codecs)
                .map(|(n, c)| (*n, c.load(Relaxed)))
                .collect(),
            streams_created: self.streams.load(Relaxed),
            // Every stream frame is counted as an MJPEG image.
            stream_frames: self.codecs[MJPEG].load(Relaxed),
            stream_drops: self.stream_drops.load(Relaxed),
            stream_live: match self.stream_quality.load(Relaxed) {
                0 => None,
                q => Some(LiveStream {
                    quality: q.min(100) as u8,
                    fps: f64::from_bits(self.stream_fps.load(Relaxed)),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_estimates_reach_the_snapshot() {
        let s = LiveStats::default();
        assert_eq!(s.snapshot().bandwidth_bps, None);
        assert_eq!(s.snapshot().latency, None);
        s.message(100);
        s.message(28);
        let mut lz = vec![0u8; 18];
        lz[8] = IMAGE_TYPE_LZ_RGB;
        let mut hit = lz.clone();
        hit[8] = IMAGE_TYPE_FROM_CACHE_LOSSLESS;
        s.draw(Some(&lz));
        s.draw(Some(&lz));
        s.draw(Some(&hit));
        let mut glz = lz.clone();
        glz[8] = IMAGE_TYPE_ZLIB_GLZ_RGB;
        s.draw(Some(&glz));
        let mut jpeg_alpha = lz.clone();
        jpeg_alpha[8] = IMAGE_TYPE_JPEG_ALPHA;
        s.draw(Some(&jpeg_alpha));
        s.draw(None);
        // Not an image we make: a draw, no codec.
        s.draw(Some(&[0u8; 4]));
        s.estimate(Some(2.5e6), Some(Duration::from_micros(100_250)));
        let snap = s.snapshot();
        assert_eq!(
            (snap.bytes_sent, snap.messages_sent, snap.draws),
            (128, 2, 7)
        );
        assert_eq!(snap.bandwidth_bps, Some(2_500_000));
        assert_eq!(snap.latency, Some(Duration::from_micros(100_250)));
        assert_eq!(
            snap.codecs,
            vec![
                ("raw", 0),
                ("lz", 2),
                ("lz4", 0),
                ("jpeg", 0),
                ("cache", 1),
                ("glz", 0),
                ("zlib-glz", 1),
                ("jpeg-alpha", 1),
                ("mjpeg", 0)
            ]
        );
        assert_eq!(snap.stream_live, None);
        // A zero latency (a very near client) is known, not missing.
        s.estimate(Some(0.1), Some(Duration::ZERO));
        let snap = s.snapshot();
        assert_eq!(snap.latency, Some(Duration::ZERO));
        assert_eq!(snap.bandwidth_bps, Some(1));
    }

    #[test]
    fn stream_counters_and_the_live_stream_reach_the_snapshot() {
        let s = LiveStats::default();
        s.stream_created();
        s.stream_frame(60, 25.0);
        s.stream_frame(50, 24.5);
        s.stream_dropped(3);
        let snap = s.snapshot();
        assert_eq!(
            (snap.streams_created, snap.stream_frames, snap.stream_drops),
            (1, 2, 3)
        );
        assert_eq!(snap.codecs[MJPEG], ("mjpeg", 2));
        // Frames are no draws.
        assert_eq!(snap.draws, 0);
        assert_eq!(
            snap.stream_live,
            Some(LiveStream {
                quality: 50,
                fps: 24.5
            })
        );
        s.streams_ended();
        let snap = s.snapshot();
        assert_eq!(snap.stream_live, None);
        assert_eq!(snap.stream_frames, 2);
    }
}
