//! Frame pacing and JPEG quality of one client's video stream (`Rate`),
//! and the quality a stream starts at, which a box about to become a stream
//! is sent at too (`start_quality`).
//!
//! Frames are paced to fit the link (`LinkMeter`'s bandwidth, 80% of it, as
//! spice-server's channel capacity) at the current JPEG quality; quality
//! steps down when that leaves under 10 frames/s and up, to the link's
//! ceiling, when there is room. Client reports (every 5 frames or second) of
//! late drops lower quality and the frame rate cap, clean ones raise the cap
//! again.
//!
//! The qualities: measured on camera-like frames (256x192 drifting
//! gradients with sensor noise, 4:2:0, optimized Huffman tables), quality
//! 20 decodes at 34.8 dB in 1.44 kB, 30 at 37.8 dB in 1.63 kB, 50 at 39.1
//! dB in 2.08 kB, 70 at 40.6 dB in 2.40 kB, 80 at 41.0 dB in 2.94 kB and
//! 85 (still images) at 41.0 dB in 3.5 kB: above 60 each step costs 11-22%
//! more bytes for under half a dB, which a moving picture does not show. A
//! fast link gets 60; a slow one (under 10 Mbit/s by the link estimate),
//! where the bytes are what the user waits for, 20 (measured through a 2
//! Mbit/s link: 30 made 1.65 kB frames, 20 1.44 kB). Quality only falls
//! from there (and climbs back) as the link and reports say. Every level
//! stays above the 28 dB the end-to-end video test allows a lossy picture
//! (stream_tests: sample photos with sensor noise).

use std::time::{Duration, Instant};

use super::stream_wire::StreamReport;

/// JPEG qualities a stream steps through.
pub(super) const QUALITIES: [u8; 5] = [20, 30, 40, 50, 60];
/// Levels (indexes into QUALITIES) a stream starts at and may rise to, on
/// a fast and on a slow link.
const FAST_START: usize = 4;
const FAST_TOP: usize = QUALITIES.len() - 1;
const SLOW_START: usize = 0;
const SLOW_TOP: usize = 0;
/// Frame rate cap (spice-server's MAX_FPS) and floor.
pub(super) const MAX_FPS: f64 = 30.0;
const MIN_FPS: f64 = 1.0;
/// Share of the link a stream may take.
const LINK_SHARE: f64 = 0.8;

/// The quality a stream starts at on a `slow` link.
pub fn start_quality(slow: bool) -> u8 {
    QUALITIES[if slow { SLOW_START } else { FAST_START }]
}

/// Frame pacing and quality of one client stream.
#[derive(Debug)]
pub(super) struct Rate {
    level: usize,
    /// The highest level this link allows.
    top: usize,
    /// Cap from the client's reports, frames/s.
    pub(super) fps_cap: f64,
    /// Recent frame sizes, bytes (moving average).
    frame_bytes: Option<f64>,
    last_step: Instant,
    clean_reports: u32,
}

impl Rate {
    pub(super) fn new(now: Instant, slow: bool) -> Rate {
        let (level, top) = if slow {
            (SLOW_START, SLOW_TOP)
        } else {
            (FAST_START, FAST_TOP)
        };
        Rate {
            level,
            top,
            fps_cap: MAX_FPS,
            frame_bytes: None,
            last_step: now,
            clean_reports: 0,
        }
    }

    pub(super) fn quality(&self) -> u8 {
        QUALITIES[self.level]
    }

    /// Frames per second the link allows at the current size, within the cap.
    pub(super) fn fps(&self, bps: f64) -> f64 {
        let fit = self
            .frame_bytes
            .map_or(MAX_FPS, |b| LINK_SHARE * bps / 8.0 / b.max(1.0));
        fit.min(self.fps_cap).clamp(MIN_FPS, MAX_FPS)
    }

    /// A frame of `bytes` was sent: quality follows what the link allows,
    /// one step a second at most.
    pub(super) fn sent(&mut self, now: Instant, bytes: usize, bps: f64) {
        let b = bytes as f64;
        self.frame_bytes = Some(self.frame_bytes.map_or(b, |a| 0.75 * a + 0.25 * b));
        if now.saturating_duration_since(self.last_step) < Duration::from_secs(1) {
            return;
        }
        let fit = LINK_SHARE * bps / 8.0 / b.max(1.0);
        if fit < 10.0 && self.level > 0 {
            self.level -= 1;
        } else if fit > 2.0 * MAX_FPS && self.level < self.top && self.clean_reports > 0 {
            self.level += 1;
        } else {
            return;
        }
        self.last_step = now;
    }

    /// A client report: late drops cost quality and frame rate.
    pub(super) fn report(&mut self, r: &StreamReport) {
        if r.drops > 0 && u64::from(r.drops) * 10 >= u64::from(r.frames) {
            self.level = self.level.saturating_sub(1);
            self.fps_cap = (self.fps_cap * 0.75).max(MIN_FPS);
            self.clean_reports = 0;
        } else if r.drops == 0 {
            self.clean_reports += 1;
            if self.clean_reports >= 2 {
                self.fps_cap = (self.fps_cap * 1.25).min(MAX_FPS);
            }
        }
    }
}
