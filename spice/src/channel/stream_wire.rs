//! The video stream messages of the display channel as bytes, and the
//! client's STREAM_REPORT parsed (spice-protocol's spice.proto: stream_create
//! 122 .. stream_destroy_all 126, stream_activate_report 319, the client's
//! stream_report 102).

use crate::wire::{Reader, Writer};
use crate::Rect;

/// video_codec_type MJPEG.
pub const CODEC_MJPEG: u8 = 1;
/// stream_flags TOP_DOWN: rows of each frame are sent top row first.
pub const STREAM_FLAG_TOP_DOWN: u8 = 1;
/// Clip types.
const CLIP_NONE: u8 = 0;
const CLIP_RECTS: u8 = 1;
/// A report with no frames and this many drops: the client cannot decode
/// the stream.
pub const REPORT_CANNOT_DECODE: u32 = u32::MAX;
/// STREAM_REPORT's body size.
pub const REPORT_BYTES: usize = 32;

/// SPICE Rect is {top, left, bottom, right}.
fn rect(w: &mut Writer, r: &Rect) {
    w.i32(r.y as i32)
        .i32(r.x as i32)
        .i32(r.bottom() as i32)
        .i32(r.right() as i32);
}

/// A Clip: NONE when `rects` is None, else RECTS with these rectangles
/// (the parts of the stream's area its frames may paint).
fn clip(w: &mut Writer, rects: Option<&[Rect]>) {
    match rects {
        None => {
            w.u8(CLIP_NONE);
        }
        Some(rs) => {
            w.u8(CLIP_RECTS).u32(rs.len() as u32);
            for r in rs {
                rect(w, r);
            }
        }
    }
}

/// STREAM_CREATE of MJPEG stream `id` on surface 0, frames of `dest`'s size
/// drawn 1:1 onto `dest`, top-down.
pub fn stream_create(id: u32, dest: &Rect, stamp: u32, clip_rects: Option<&[Rect]>) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.u32(0).u32(id); // surface, stream id
    w.u8(STREAM_FLAG_TOP_DOWN).u8(CODEC_MJPEG);
    w.u64(u64::from(stamp));
    w.u32(dest.width).u32(dest.height); // stream size
    w.u32(dest.width).u32(dest.height); // source size
    rect(&mut w, dest);
    clip(&mut w, clip_rects);
    w.finish()
}

/// STREAM_DATA: one JPEG frame of stream `id`, to be shown at the client's
/// multimedia time `mm_time`.
pub fn stream_data(id: u32, mm_time: u32, jpeg: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(12 + jpeg.len());
    w.u32(id).u32(mm_time).u32(jpeg.len() as u32).bytes(jpeg);
    w.finish()
}

/// STREAM_CLIP: from now on stream `id`'s frames paint only `rects`.
pub fn stream_clip(id: u32, rects: Option<&[Rect]>) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(id);
    clip(&mut w, rects);
    w.finish()
}

pub fn stream_destroy(id: u32) -> Vec<u8> {
    let mut w = Writer::with_capacity(4);
    w.u32(id);
    w.finish()
}

/// STREAM_ACTIVATE_REPORT: report on stream `id` (this incarnation:
/// `unique`) every `window` frames or `timeout_ms`.
pub fn stream_activate_report(id: u32, unique: u32, window: u32, timeout_ms: u32) -> Vec<u8> {
    let mut w = Writer::with_capacity(16);
    w.u32(id).u32(unique).u32(window).u32(timeout_ms);
    w.finish()
}

/// A client's STREAM_REPORT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamReport {
    pub stream_id: u32,
    pub unique_id: u32,
    /// Multimedia times of the first and last frames the report covers.
    pub start_mm: u32,
    pub end_mm: u32,
    /// Frames that reached the client, and of those the ones it dropped
    /// as late.
    pub frames: u32,
    pub drops: u32,
    /// The last frame's time minus the client's clock when it arrived, ms
    /// (negative: late).
    pub last_delay: i32,
}

impl StreamReport {
    /// The client says it cannot decode the stream.
    pub fn cannot_decode(&self) -> bool {
        self.frames == 0 && self.drops == REPORT_CANNOT_DECODE
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadReport {
    #[error("STREAM_REPORT of {0} bytes, not {REPORT_BYTES}")]
    Size(usize),
    #[error("STREAM_REPORT claims {drops} drops of {frames} frames")]
    Drops { frames: u32, drops: u32 },
}

/// Parses a STREAM_REPORT body (client input: any bytes). The audio delay
/// is read past but not used.
pub fn parse_stream_report(body: &[u8]) -> Result<StreamReport, BadReport> {
    if body.len() != REPORT_BYTES {
        return Err(BadReport::Size(body.len()));
    }
    let mut r = Reader::new(body);
    let mut u = || r.u32().ok_or(BadReport::Size(body.len()));
    let (stream_id, unique_id, start_mm, end_mm, frames, drops) =
        (u()?, u()?, u()?, u()?, u()?, u()?);
    let last_delay = u()? as i32;
    let report = StreamReport {
        stream_id,
        unique_id,
        start_mm,
        end_mm,
        frames,
        drops,
        last_delay,
    };
    if drops > frames && !report.cannot_decode() {
        return Err(BadReport::Drops { frames, drops });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(vals: &[i64]) -> Vec<u8> {
        vals.iter()
            .flat_map(|v| (*v as u32).to_le_bytes())
            .collect()
    }

    #[test]
    fn stream_create_bytes_follow_the_protocol_layout() {
        let dest = Rect::new(10, 20, 256, 192);
        let mut expect = le(&[0, 3]); // surface, id
        expect.extend([1, 1]); // TOP_DOWN, MJPEG
        expect.extend(77u64.to_le_bytes()); // stamp
        expect.extend(le(&[256, 192, 256, 192])); // stream and source size
        expect.extend(le(&[20, 10, 212, 266])); // dest: top, left, bottom, right
        expect.push(0); // clip NONE
        assert_eq!(expect.len(), 51);
        assert_eq!(stream_create(3, &dest, 77, None), expect);
        // With a clip: RECTS, count, rectangles.
        let part = Rect::new(10, 20, 100, 192);
        let mut clipped = expect[..50].to_vec();
        clipped.push(1);
        clipped.extend(le(&[1, 20, 10, 212, 110]));
        assert_eq!(stream_create(3, &dest, 77, Some(&[part])), clipped);
    }

    #[test]
    fn stream_data_clip_destroy_and_report_activation_bytes() {
        let mut expect = le(&[5, 123_456, 3]);
        expect.extend([0xff, 0xd8, 0xff]);
        assert_eq!(stream_data(5, 123_456, &[0xff, 0xd8, 0xff]), expect);
        let mut expect = le(&[5]);
        expect.push(1);
        expect.extend(le(&[2, 0, 0, 4, 8, 4, 0, 8, 8]));
        let rs = [Rect::new(0, 0, 8, 4), Rect::new(0, 4, 8, 4)];
        assert_eq!(stream_clip(5, Some(&rs)), expect);
        assert_eq!(stream_clip(5, None), [le(&[5]), vec![0]].concat());
        assert_eq!(stream_destroy(9), le(&[9]));
        assert_eq!(stream_activate_report(1, 2, 5, 1000), le(&[1, 2, 5, 1000]));
    }

    #[test]
    fn reports_parse_and_hostile_ones_are_refused() {
        let body = le(&[2, 7, 1000, 1200, 5, 1, -30, -1]);
        let r = parse_stream_report(&body).unwrap();
        assert_eq!(
            r,
            StreamReport {
                stream_id: 2,
                unique_id: 7,
                start_mm: 1000,
                end_mm: 1200,
                frames: 5,
                drops: 1,
                last_delay: -30,
            }
        );
        assert!(!r.cannot_decode());
        for n in [0, 31, 33, 64] {
            let mut b = body.clone();
            b.resize(n, 0);
            assert_eq!(parse_stream_report(&b), Err(BadReport::Size(n)));
        }
        let more_drops = le(&[2, 7, 1000, 1200, 5, 6, 0, 0]);
        assert!(parse_stream_report(&more_drops).is_err());
        let refused = le(&[2, 7, 0, 0, 0, -1, 0, -1]);
        assert!(parse_stream_report(&refused).unwrap().cannot_decode());
    }
}
