//! Video streams: areas redrawn whole at a steady rate go to the client as
//! an MJPEG stream instead of one image per redraw.
//!
//! Detection (`Detector`, one per head, fed every update under the head's
//! lock) follows spice-server's rules in spirit: a box redrawn whole (a
//! dirty rectangle or a forwarded image copy) of at least 96x96 pixels is a
//! candidate; the same box again within 200 ms is its next frame; after 20
//! frames of which at least a fifth looked photo-like (`photo_like`; every
//! frame counts under `StreamingVideo::All`) it becomes a stream, and each
//! later redraw of the box is a frame of it. Another draw that paints part
//! of the box clips the stream, as spice-server's do: the client applies
//! the clip to the frames (which then paint only the rest), and the draw
//! goes to the client as any other. A frame repaints the whole box, so it
//! sets the clip anew to the draws over it since (a dialog that moves
//! leaves no clip behind). A draw that takes too much of the box, or a box
//! overlapping it becoming a stream, ends it; so does a second without a
//! frame (the box went still) or a resize.
//!
//! Each client's task (`ClientStreams`) brings its client to the head's
//! streams whenever it pumps: STREAM_CREATE (and STREAM_ACTIVATE_REPORT when
//! the client reports), STREAM_CLIP when the clip changed, the newest frame
//! as STREAM_DATA when one is due, STREAM_DESTROY for a stream that ended,
//! after which the box goes as a lossless image, so the client ends with
//! the exact picture. Only the newest frame is ever sent: a client that
//! cannot keep up sees fewer frames, never old ones.
//!
//! Rate (`stream_rate::Rate`, per client stream): frames are paced to fit
//! the link at the current JPEG quality, which follows the link and the
//! client's reports. The reports (every 5 frames or second) also feed the
//! link estimate (the bytes of the frames a report covers over its span)
//! and the playout delay: frames are stamped for display a margin after
//! they are sent, grown when frames arrive late.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::conn::Conn;
use super::stream_rate::Rate;
use super::stream_wire::{
    parse_stream_report, stream_activate_report, stream_clip, stream_create, stream_data,
    stream_destroy,
};
use crate::codec::extract;
use crate::image::{jpeg_rgb32_quality, photo_like_in};
use crate::proto::display_msg;
use crate::{Draw, Frame, Rect, StreamingVideo};

/// Smallest area of a stream (spice-server's RED_STREAM_MIN_SIZE).
pub const MIN_AREA: u64 = 96 * 96;
/// Frames before a candidate becomes a stream.
pub const START_FRAMES: u32 = 20;
/// Share of those that must look photo-like (under `Filter`).
pub const PHOTO_SHARE: f64 = 0.2;
/// A candidate this many frames past its last photo-like one starts over.
pub const RESET_FRAMES: u32 = 100;
/// Longest gap between a candidate's frames.
pub const DETECT_GAP: Duration = Duration::from_millis(200);
/// A stream with no frame for this long ends (the box went still).
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// A candidate with this many photo-like frames is hot: a photo-like box
/// redrawn whole twice within DETECT_GAP is likely video, so its frames may
/// go lossy before it becomes a stream (the box goes lossless if it never
/// does: at worst one lossy image too many).
pub const HOT_FRAMES: u32 = 2;
/// Candidates tracked per head (the oldest is forgotten).
const MAX_CANDIDATES: usize = 8;
/// Streams per head; ids are 0..MAX_STREAMS (spice-gtk sizes its stream
/// table by the largest id, so they stay small).
pub const MAX_STREAMS: u32 = 8;
/// A clip of more rectangles than this, or leaving less than this share of
/// the box to the frames, ends the stream instead.
const MAX_CLIP_RECTS: usize = 16;
const MIN_CLIP_SHARE: f64 = 0.5;
/// Report every this many frames, or this often (spice-server's values).
const REPORT_WINDOW: u32 = 5;
const REPORT_TIMEOUT_MS: u32 = 1000;
/// Assumed bandwidth before the link is measured: spice-server's start bit
/// rates for a fast and a slow link.
const FAST_START_BPS: f64 = 10.0 * 1024.0 * 1024.0;
const SLOW_START_BPS: f64 = 2.5 * 1024.0 * 1024.0;
/// Playout margin: how long after it is sent a frame is due on the client's
/// clock (which runs MM_TIME_DELTA behind ours), within these bounds.
const MARGIN_START_MS: u32 = 100;
const MARGIN_MAX_MS: u32 = 1000;
/// Frames a client stream remembers the size of, for the reports.
const FRAME_LOG: usize = 64;

/// A stream on a head.
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    pub id: u32,
    /// Tells this stream from earlier ones that had its id.
    pub unique: u64,
    pub rect: Rect,
    /// Frames so far.
    pub seq: u64,
    pub last: Instant,
    /// Parts of `rect` the frames do not paint (other draws took them).
    pub clipped: Vec<Rect>,
    /// Bumped whenever `clipped` changes.
    pub clip_gen: u32,
}

impl Stream {
    /// The parts of the box its frames paint; None while nothing is clipped.
    pub fn clip_rects(&self) -> Option<Vec<Rect>> {
        (!self.clipped.is_empty()).then(|| subtract(&self.rect, &self.clipped))
    }
}

#[derive(Clone, Debug)]
struct Candidate {
    rect: Rect,
    last: Instant,
    frames: u32,
    photo: u32,
    last_photo: u32,
}

/// A head's stream detection and streams.
#[derive(Debug, Default)]
pub struct Detector {
    mode: StreamingVideo,
    candidates: Vec<Candidate>,
    streams: Vec<Stream>,
    next_unique: u64,
}

impl Detector {
    pub fn new(mode: StreamingVideo) -> Detector {
        Detector {
            mode,
            ..Detector::default()
        }
    }

    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// Ends every stream and forgets the candidates (the surface changed).
    pub fn clear(&mut self) {
        self.streams.clear();
        self.candidates.clear();
    }

    /// The hot candidates' boxes (see [`HOT_FRAMES`]).
    pub fn hot(&self) -> Vec<Rect> {
        let all = self.mode == StreamingVideo::All;
        self.candidates
            .iter()
            .filter(|c| (if all { c.frames } else { c.photo }) >= HOT_FRAMES)
            .map(|c| c.rect)
            .collect()
    }

    /// When the next stream times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.streams.iter().map(|s| s.last + TIMEOUT).min()
    }

    /// Ends the streams that had no frame for [`TIMEOUT`].
    pub fn expire(&mut self, now: Instant) {
        self.candidates
            .retain(|c| now.saturating_duration_since(c.last) <= DETECT_GAP);
        self.streams.retain(|s| {
            let live = now.saturating_duration_since(s.last) < TIMEOUT;
            if !live {
                debug!(id = s.id, frames = s.seq, "video stream went still");
            }
            live
        });
    }

    /// One update of `frame`: `boxes` are the areas it repainted whole,
    /// `painted` every area it painted (boxes included), in drawing order
    /// where known: a frame covers what comes before its box there, so only
    /// what comes after clips its stream. Returns the boxes that are frames
    /// of streams (new ones included).
    pub fn update(
        &mut self,
        now: Instant,
        frame: &Frame,
        boxes: &[Rect],
        painted: &[Rect],
    ) -> Vec<Rect> {
        if self.mode == StreamingVideo::Off {
            return Vec::new();
        }
        self.expire(now);
        self.candidates
            .retain(|c| now.saturating_duration_since(c.last) <= DETECT_GAP);
        let mut frames: Vec<Rect> = Vec::new();
        // Streams with a frame here: (unique, clip and generation before).
        let mut reclipped: Vec<(u64, Vec<Rect>, u32)> = Vec::new();
        for b in boxes {
            if b.area() < MIN_AREA
                || frames.contains(b)
                || b.clip(frame.width, frame.height) != Some(*b)
            {
                continue;
            }
            if let Some(s) = self.streams.iter_mut().find(|s| s.rect == *b) {
                s.seq += 1;
                s.last = now;
                frames.push(*b);
                reclipped.push((s.unique, std::mem::take(&mut s.clipped), s.clip_gen));
                continue;
            }
            let photo = self.mode == StreamingVideo::All
                || photo_like_in(
                    &frame.pixels,
                    frame.width as usize,
                    (b.x as usize, b.y as usize),
                    b.width,
                    b.height,
                );
            if self.candidate_frame(now, *b, photo) {
                frames.push(*b);
            }
        }
        for (i, p) in painted.iter().enumerate() {
            if frames.contains(p) {
                continue;
            }
            // Streams whose frame here came after `p`: it is under the frame.
            let under = |s: &Stream| {
                reclipped.iter().any(|r| r.0 == s.unique)
                    && painted.iter().rposition(|q| *q == s.rect) > Some(i)
            };
            self.overpainted(p, under);
        }
        for (unique, before, gen) in reclipped {
            if let Some(s) = self.streams.iter_mut().find(|s| s.unique == unique) {
                let changed = s.clipped != before;
                s.clip_gen = gen.wrapping_add(u32::from(changed));
            }
        }
        frames
    }

    /// Counts a frame of candidate `b`; true if it became a stream.
    fn candidate_frame(&mut self, now: Instant, b: Rect, photo: bool) -> bool {
        let i = match self.candidates.iter().position(|c| c.rect == b) {
            Some(i) => i,
            None => {
                if self.candidates.len() == MAX_CANDIDATES {
                    self.candidates.remove(0);
                }
                self.candidates.push(Candidate {
                    rect: b,
                    last: now,
                    frames: 0,
                    photo: 0,
                    last_photo: 0,
                });
                self.candidates.len() - 1
            }
        };
        let c = &mut self.candidates[i];
        c.frames += 1;
        c.last = now;
        if photo {
            c.photo += 1;
            c.last_photo = c.frames;
        } else if c.frames - c.last_photo > RESET_FRAMES {
            (c.frames, c.photo, c.last_photo) = (1, 0, 1);
        }
        if c.frames < START_FRAMES || f64::from(c.photo) < PHOTO_SHARE * f64::from(c.frames) {
            return false;
        }
        let Some(id) = (0..MAX_STREAMS).find(|id| self.streams.iter().all(|s| s.id != *id)) else {
            return false;
        };
        self.candidates.remove(i);
        // A stream over an older one replaces it.
        self.streams.retain(|s| !s.rect.intersects(&b));
        self.next_unique += 1;
        debug!(
            id,
            x = b.x,
            y = b.y,
            w = b.width,
            h = b.height,
            "video stream starts"
        );
        self.streams.push(Stream {
            id,
            unique: self.next_unique,
            rect: b,
            seq: 1,
            last: now,
            clipped: Vec::new(),
            clip_gen: 0,
        });
        true
    }

    /// Area `p` was painted by something that is not a frame: streams under
    /// it are clipped, or end when too little would be left.
    fn overpainted(&mut self, p: &Rect, under: impl Fn(&Stream) -> bool) {
        self.streams.retain_mut(|s| {
            let Some(part) = intersection(&s.rect, p) else {
                return true;
            };
            if under(s) {
                return true;
            }
            if s.clipped.iter().any(|c| c.contains(&part)) {
                return true;
            }
            s.clipped.retain(|c| !part.contains(c));
            s.clipped.push(part);
            s.clip_gen += 1;
            let left: u64 = subtract(&s.rect, &s.clipped).iter().map(Rect::area).sum();
            let keep = s.clipped.len() <= MAX_CLIP_RECTS
                && left as f64 >= MIN_CLIP_SHARE * s.rect.area() as f64;
            if !keep {
                debug!(id = s.id, "video stream painted over: ends");
            }
            keep
        });
    }
}

/// Whether `d` reads the area of one of `streams` (a COPY_BITS from there,
/// a blend over it): the client's pixels there are lossy, so it must get an
/// image instead.
pub fn reads_stream(d: &Draw, streams: &[Stream]) -> bool {
    match d {
        Draw::CopyBits(b) => streams.iter().any(|s| s.rect.intersects(&b.source())),
        Draw::Blend(b) => streams.iter().any(|s| s.rect.intersects(&b.copy.rect)),
        _ => false,
    }
}

/// The shared part of two rectangles.
pub fn intersection(a: &Rect, b: &Rect) -> Option<Rect> {
    let x = a.x.max(b.x);
    let y = a.y.max(b.y);
    let right = a.right().min(b.right());
    let bottom = a.bottom().min(b.bottom());
    (u64::from(x) < right && u64::from(y) < bottom).then(|| {
        Rect::new(
            x,
            y,
            (right - u64::from(x)) as u32,
            (bottom - u64::from(y)) as u32,
        )
    })
}

/// `r` minus `holes`, as disjoint rectangles: row bands between the holes'
/// edges, each cut into the runs no hole covers.
pub fn subtract(r: &Rect, holes: &[Rect]) -> Vec<Rect> {
    let holes: Vec<Rect> = holes.iter().filter_map(|h| intersection(r, h)).collect();
    let mut ys: Vec<u64> = vec![u64::from(r.y), r.bottom()];
    for h in &holes {
        ys.extend([u64::from(h.y), h.bottom()]);
    }
    ys.sort_unstable();
    ys.dedup();
    let mut out = Vec::new();
    for band in ys.windows(2) {
        let (y0, y1) = (band[0], band[1]);
        let mut cuts: Vec<(u64, u64)> = holes
            .iter()
            .filter(|h| u64::from(h.y) <= y0 && h.bottom() >= y1)
            .map(|h| (u64::from(h.x), h.right()))
            .collect();
        cuts.sort_unstable();
        let mut x = u64::from(r.x);
        for (cx0, cx1) in cuts.into_iter().chain([(r.right(), r.right())]) {
            if cx0 > x {
                out.push(Rect::new(
                    x as u32,
                    y0 as u32,
                    (cx0 - x) as u32,
                    (y1 - y0) as u32,
                ));
            }
            x = x.max(cx1);
        }
    }
    out
}

/// A stream as one client has it.
#[derive(Debug)]
struct Have {
    id: u32,
    unique: u64,
    rect: Rect,
    /// The frame it has, and the newest the head had when last seen.
    seq: u64,
    latest: u64,
    clip_gen: u32,
    /// The report id announced with it (STREAM_ACTIVATE_REPORT).
    report_id: u32,
    next_due: Instant,
    rate: Rate,
    /// (multimedia time, bytes) of the last frames sent.
    log: VecDeque<(u32, usize)>,
}

impl Have {
    /// A frame of `bytes` went out for multimedia time `mm`: the rate
    /// follows, the next one is due when the pace allows.
    fn frame_sent(&mut self, now: Instant, mm: u32, bytes: usize, bps: f64) {
        self.rate.sent(now, bytes, bps);
        self.next_due = now + Duration::from_secs_f64(1.0 / self.rate.fps(bps));
        if self.log.len() == FRAME_LOG {
            self.log.pop_front();
        }
        self.log.push_back((mm, bytes));
    }

    /// Frames sent over the last second (by their stamps).
    fn recent_fps(&self) -> f64 {
        let Some(&(newest, _)) = self.log.back() else {
            return 0.0;
        };
        let recent = self
            .log
            .iter()
            .filter(|(mm, _)| newest.wrapping_sub(*mm) < 1000);
        recent.count() as f64
    }
}

/// A sample for the link estimate from a stream report: bytes delivered,
/// over seconds, with late frames (see `LinkMeter::stream_delivered`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Delivered {
    pub bytes: u64,
    pub secs: f64,
    pub saturated: bool,
}

/// One message (or frame) a client is due.
pub enum Step {
    Create {
        id: u32,
        rect: Rect,
        clip: Option<Vec<Rect>>,
    },
    Clip {
        id: u32,
        clip: Option<Vec<Rect>>,
    },
    /// The newest frame: the box's pixels; `skipped` newer frames replaced
    /// before the client got them.
    Frame {
        id: u32,
        rect: Rect,
        pixels: Vec<u32>,
        skipped: u64,
    },
    /// The stream ended (`unsent` frames never went out): the box goes
    /// lossless after the destroy.
    Destroy {
        id: u32,
        rect: Rect,
        unsent: u64,
    },
}

/// A client's view of its head's streams (owned by its display task).
#[derive(Debug)]
pub struct ClientStreams {
    have: Vec<Have>,
    reports: bool,
    next_report_id: u32,
    /// Playout margin, ms.
    margin: u32,
    /// The client said it cannot decode MJPEG: no more streams.
    refused: bool,
    /// Hot candidate boxes (their frames may go lossy), and the boxes sent
    /// lossy for that, which go lossless if no stream takes them over.
    hot: Vec<Rect>,
    lossy_boxes: Vec<Rect>,
    /// Multimedia clock: its value at an instant.
    mm_base: (Instant, u32),
}

impl ClientStreams {
    /// `reports`: the client has DISPLAY_CAP_STREAM_REPORT; `mm_base`: the
    /// server's multimedia time at an instant.
    pub fn new(reports: bool, mm_base: (Instant, u32)) -> ClientStreams {
        ClientStreams {
            have: Vec::new(),
            reports,
            next_report_id: 1,
            margin: MARGIN_START_MS,
            refused: false,
            hot: Vec::new(),
            lossy_boxes: Vec::new(),
            mm_base,
        }
    }

    /// Whether this client takes streams at all, given the server's policy.
    pub fn wanted(&self, allowed: bool) -> bool {
        allowed && !self.refused
    }

    /// Forgets every stream (the surface is recreated); true if the client
    /// had any (then it gets STREAM_DESTROY_ALL).
    pub fn forget_all(&mut self) -> bool {
        let had = !self.have.is_empty();
        self.have.clear();
        had
    }

    /// Takes the head's hot candidates (under its lock, `on` as for
    /// `sync`); returns the boxes sent lossy as candidate frames that are
    /// neither hot nor streams any more: they go lossless now.
    pub fn settle_candidates(&mut self, hot: Vec<Rect>, streams: &[Stream], on: bool) -> Vec<Rect> {
        self.hot = if on && !self.refused { hot } else { Vec::new() };
        let mut done = Vec::new();
        self.lossy_boxes.retain(|b| {
            if streams.iter().any(|s| s.rect == *b) {
                // The stream's end sends it lossless.
                return false;
            }
            let keep = self.hot.contains(b);
            if !keep {
                done.push(*b);
            }
            keep
        });
        done
    }

    /// Whether `dst` is a hot candidate's box.
    pub fn is_hot(&self, dst: &Rect) -> bool {
        self.hot.contains(dst)
    }

    /// Whether `dst` is a hot candidate's box (its frame may go lossy); if
    /// so it is remembered as sent lossy.
    pub fn lossy_candidate(&mut self, dst: &Rect) -> bool {
        if !self.hot.contains(dst) {
            return false;
        }
        if !self.lossy_boxes.contains(dst) {
            self.lossy_boxes.push(*dst);
        }
        true
    }

    /// Whether boxes sent lossy wait for their candidates to end.
    pub fn candidates_pending(&self) -> bool {
        !self.lossy_boxes.is_empty()
    }

    /// When a frame held back by pacing is due.
    pub fn next_due(&self, streams: &[Stream]) -> Option<Instant> {
        self.have
            .iter()
            .filter(|h| {
                streams
                    .iter()
                    .any(|s| s.unique == h.unique && s.seq > h.seq)
            })
            .map(|h| h.next_due)
            .min()
    }

    /// What the client needs to catch up with `streams` (under the head's
    /// lock: frames copy their pixels from `surface`). `on`: the client takes
    /// streams now; if not, every stream it has ends.
    pub fn sync(
        &mut self,
        streams: &[Stream],
        surface: &Frame,
        now: Instant,
        on: bool,
        slow: bool,
    ) -> Vec<Step> {
        let on = on && !self.refused;
        let mut steps = Vec::new();
        self.have.retain(|h| {
            let live = on && streams.iter().any(|s| s.unique == h.unique);
            if !live {
                steps.push(Step::Destroy {
                    id: h.id,
                    rect: h.rect,
                    unsent: h.latest.saturating_sub(h.seq),
                });
            }
            live
        });
        if !on {
            return steps;
        }
        for s in streams {
            if s.rect.clip(surface.width, surface.height) != Some(s.rect) {
                continue;
            }
            let i = match self.have.iter().position(|h| h.unique == s.unique) {
                Some(i) => i,
                None => {
                    steps.push(Step::Create {
                        id: s.id,
                        rect: s.rect,
                        clip: s.clip_rects(),
                    });
                    let report_id = self.next_report_id;
                    self.next_report_id = self.next_report_id.wrapping_add(1);
                    self.have.push(Have {
                        id: s.id,
                        unique: s.unique,
                        rect: s.rect,
                        // A client joining a stream gets its newest frame;
                        // the ones before it are no drops.
                        seq: s.seq.saturating_sub(1),
                        latest: s.seq,
                        clip_gen: s.clip_gen,
                        report_id,
                        next_due: now,
                        rate: Rate::new(now, slow),
                        log: VecDeque::new(),
                    });
                    self.have.len() - 1
                }
            };
            let h = &mut self.have[i];
            h.latest = h.latest.max(s.seq);
            if h.clip_gen != s.clip_gen {
                h.clip_gen = s.clip_gen;
                steps.push(Step::Clip {
                    id: s.id,
                    clip: s.clip_rects(),
                });
            }
            if s.seq > h.seq && now >= h.next_due {
                let skipped = s.seq - h.seq - 1;
                h.seq = s.seq;
                steps.push(Step::Frame {
                    id: s.id,
                    rect: s.rect,
                    pixels: extract(surface, &s.rect),
                    skipped,
                });
            }
        }
        steps
    }

    /// Queues `steps` on `conn` (encoding frames) and counts them in its
    /// stats. Returns the rectangles to send as images after them: the
    /// boxes of ended streams (lossless) and frames that failed to encode.
    pub fn emit(&mut self, conn: &mut Conn, steps: Vec<Step>, exact: &mut Vec<Rect>) -> Vec<Rect> {
        let now = Instant::now();
        let bps = conn
            .meter()
            .bandwidth()
            .unwrap_or(if conn.meter().slow() == Some(true) {
                SLOW_START_BPS
            } else {
                FAST_START_BPS
            });
        let mut images = Vec::new();
        for step in steps {
            match step {
                Step::Destroy { id, rect, unsent } => {
                    conn.queue(display_msg::STREAM_DESTROY, &stream_destroy(id));
                    if let Some(s) = conn.stats() {
                        s.stream_dropped(unsent);
                    }
                    images.push(rect);
                    exact.push(rect);
                }
                Step::Create { id, rect, clip } => {
                    let stamp = self.mm(now);
                    conn.queue(
                        display_msg::STREAM_CREATE,
                        &stream_create(id, &rect, stamp, clip.as_deref()),
                    );
                    if let Some(s) = conn.stats() {
                        s.stream_created();
                    }
                    if self.reports {
                        if let Some(h) = self.have.iter().find(|h| h.id == id) {
                            let body = stream_activate_report(
                                id,
                                h.report_id,
                                REPORT_WINDOW,
                                REPORT_TIMEOUT_MS,
                            );
                            conn.queue(display_msg::STREAM_ACTIVATE_REPORT, &body);
                        }
                    }
                }
                Step::Clip { id, clip } => {
                    conn.queue(display_msg::STREAM_CLIP, &stream_clip(id, clip.as_deref()));
                }
                Step::Frame {
                    id,
                    rect,
                    pixels,
                    skipped,
                } => {
                    let mm = self.mm(now).wrapping_add(self.margin);
                    let Some(h) = self.have.iter_mut().find(|h| h.id == id) else {
                        continue;
                    };
                    let jpeg =
                        jpeg_rgb32_quality(rect.width, rect.height, &pixels, h.rate.quality());
                    if jpeg.is_empty() {
                        warn!(id, "video frame not encoded; sent as an image");
                        images.push(rect);
                        continue;
                    }
                    conn.queue(display_msg::STREAM_DATA, &stream_data(id, mm, &jpeg));
                    h.frame_sent(now, mm, jpeg.len(), bps);
                    if let Some(s) = conn.stats() {
                        s.stream_dropped(skipped);
                        s.stream_frame(h.rate.quality(), h.recent_fps());
                    }
                }
            }
        }
        if self.have.is_empty() {
            if let Some(s) = conn.stats() {
                s.streams_ended();
            }
        }
        images
    }

    /// The server's multimedia time at `at`, as the client's clock shows
    /// it (MM_TIME_DELTA behind).
    fn mm(&self, at: Instant) -> u32 {
        let ms = at.saturating_duration_since(self.mm_base.0).as_millis() as u32;
        self.mm_base
            .1
            .wrapping_add(ms)
            .wrapping_sub(super::MM_TIME_DELTA)
    }

    /// A STREAM_REPORT from the client (any bytes): adapts the stream's rate
    /// and the playout margin, and feeds the link estimate.
    pub fn report(&mut self, conn: &mut Conn, body: &[u8]) {
        if let Some(d) = self.take_report(body) {
            conn.stream_delivered(d.bytes, d.secs, d.saturated);
        }
    }

    /// [`ClientStreams::report`] but the link estimate: its sample, if the
    /// report makes one.
    pub fn take_report(&mut self, body: &[u8]) -> Option<Delivered> {
        let r = match parse_stream_report(body) {
            Ok(r) => r,
            Err(e) => {
                debug!(%e, "stream report ignored");
                return None;
            }
        };
        let Some(h) = self
            .have
            .iter_mut()
            .find(|h| h.id == r.stream_id && h.report_id == r.unique_id)
        else {
            debug!(
                id = r.stream_id,
                unique = r.unique_id,
                "report on a stream the client does not have"
            );
            return None;
        };
        if r.cannot_decode() {
            warn!(
                id = r.stream_id,
                "the client cannot decode MJPEG: no more video streams to it"
            );
            self.refused = true;
            return None;
        }
        h.rate.report(&r);
        // Frames arriving with under 10 ms to spare (or late) need a longer
        // playout margin; a lot to spare with no drops, a shorter one.
        if r.last_delay < 10 {
            let more = (10 - i64::from(r.last_delay)).min(i64::from(MARGIN_MAX_MS)) as u32;
            self.margin = (self.margin + more).min(MARGIN_MAX_MS);
        } else if r.drops == 0 && r.last_delay > 100 {
            let less = ((r.last_delay - 100) / 4) as u32;
            self.margin = self.margin.saturating_sub(less).max(MARGIN_START_MS / 2);
        }
        // The bytes of the frames the report covers over its span.
        let span = r.end_mm.wrapping_sub(r.start_mm);
        if r.frames == 0 || span == 0 || span > 60_000 {
            return None;
        }
        let bytes: usize = h
            .log
            .iter()
            .filter(|(mm, _)| mm.wrapping_sub(r.start_mm) <= span)
            .map(|(_, b)| *b)
            .sum();
        let frame_ms = f64::from(span) / f64::from(r.frames.saturating_sub(1).max(1));
        Some(Delivered {
            bytes: bytes as u64,
            secs: (f64::from(span) + frame_ms) / 1000.0,
            saturated: r.drops > 0,
        })
    }

    /// Records a frame as sent without encoding or sending it (the fuzz
    /// target's way to fill the frame log).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn fake_frame(&mut self, id: u32, mm: u32, bytes: usize, now: Instant) {
        if let Some(h) = self.have.iter_mut().find(|h| h.id == id) {
            h.frame_sent(now, mm, bytes, FAST_START_BPS);
        }
    }

    /// The report id announced for stream `id`, if the client has it.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn report_id(&self, id: u32) -> Option<u32> {
        self.have.iter().find(|h| h.id == id).map(|h| h.report_id)
    }

    /// The playout margin, ms.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn margin(&self) -> u32 {
        self.margin
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
