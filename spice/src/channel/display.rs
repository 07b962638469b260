//! DISPLAY channel, one id per display head. On connect: SET_ACK, then (once the
//! head has a picture) SURFACE_CREATE of primary surface 0, a DRAW_COPY of the
//! whole screen and MARK. Afterwards each update's dirty rectangles become
//! DRAW_COPYs of the latest pixels, sent only while the ack window is open; a
//! resize is SURFACE_DESTROY + SURFACE_CREATE + full draw + MARK. We do not
//! advertise MONITORS_CONFIG, so spice-gtk derives the monitor from the primary
//! surface and we never have to send one.
//!
//! Draws the device reports (QXL solid fills, 1:1 bitmap copies and blends,
//! screen-to-screen copies) are forwarded as DRAW_FILL, DRAW_COPY,
//! DRAW_TRANSPARENT / DRAW_ALPHA_BLEND (to clients announcing COMPOSITE, as
//! spice-gtk does: spice-html5 ignores them, so it gets the blended pixels)
//! and COPY_BITS, not as images of what they changed: a client gets the queued
//! draws first, then the dirty rectangles, whose images always hold the
//! newest pixels, so whatever was drawn over a draw later reaches the client
//! after it. A COPY_BITS reads the client's picture, so it is only sent where
//! its source is current on the client when it arrives: a copy whose source
//! touches a rectangle the client gets only later (pending, or still being
//! sent) goes as a rectangle of its destination instead (`settle`).
//!
//! Images go through the client's pixmap cache when it announced one in
//! DISPLAY_INIT (`pixmap_cache`): an image whose content was seen before is
//! sent with CACHE_ME, and then as FROM_CACHE, its 18-byte descriptor. The
//! cache ids are content keys (SipHash with this process's random keys) with
//! the head in the top byte, since one client's display channels share its
//! cache.
//!
//! Photo-like images may go as JPEG (`JpegMode`): with `Always` to every
//! client, with `Auto` to a client whose link is slow by the connection's
//! estimate (`link_meter`: a net test of PINGs right after SET_ACK, then
//! ack delivery rates and idle latency probes). The first picture waits for
//! the net test (at most `NET_TEST_TIMEOUT`), so it is already encoded for
//! the link. Whether a cached copy is lossy is recorded, so an image that
//! must be exact later (the link recovered) replaces it (see `pixmap_cache`).
//! Every draw is counted per client with its image's codec (`stats`). The
//! lossless codec follows `ImageOptions` and the client's GLZ dictionary,
//! named in DISPLAY_INIT (`image_choice`).
//!
//! Each head keeps its own copy of the picture, kept current with only the
//! pixels that changed (`Frame::copy_rect_from`): an update costs a copy of its
//! dirty rectangles, not of the frame, and never waits for a client.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{debug, warn};

use super::conn::Conn;
use super::display_wire::{
    draw_alpha_blend, draw_composite, draw_copy, draw_copy_bits, draw_fill, draw_transparent,
    init_cache_size, init_glz, inval_pixmaps, surface_create,
};
use super::image_choice::{ImageChoice, SharedGlz};
use super::link_meter::PROBE_EVERY;
use super::pixmap_cache::{CacheUse, PixmapCache};
use super::region::Region;
use super::stream::{reads_stream, ClientStreams, Detector};
use super::stream_rate::start_quality;
use super::{next_message, ChannelKind, ChannelTask, End, Link, Next};
use crate::codec::{encode_rgba, extract, from_cache, is_lossy, jpeg_image, ImagePolicy, ImageTag};
use crate::image::photo_like;
use crate::proto::{
    channel as ch, display_msg, display_msgc, has_cap, DISPLAY_CAP_COMPOSITE,
    DISPLAY_CAP_LZ4_COMPRESSION, DISPLAY_CAP_STREAM_REPORT, IMAGE_FLAGS_CACHE_ME,
    IMAGE_FLAGS_CACHE_REPLACE_ME,
};
use crate::server::lock;
use crate::wire::Writer;
use crate::{
    BlendMode, Draw, Frame, ImageCopy, ImageOptions, JpegMode, Rect, SolidFill, StreamingVideo,
};

/// Draws queued for a client that does not read them fast enough; past this
/// they become dirty rectangles (one image each instead of a message each).
const MAX_QUEUED_DRAWS: usize = 1024;
/// How long the first picture waits for DISPLAY_INIT.
const INIT_WAIT: Duration = Duration::from_secs(3);

/// The display kind: one [`Head`] per channel id.
pub struct DisplayChannel {
    heads: Vec<Mutex<Head>>,
    force_raw: bool,
    jpeg: JpegMode,
    streaming: StreamingVideo,
    next_image_id: AtomicU64,
    /// Keys image contents for the clients' pixmap caches.
    hasher: RandomState,
    images: ImageChoice,
}

/// What `update` shares with a head's display channel task.
#[derive(Default)]
pub struct Head {
    surface: Option<Frame>,
    clients: Vec<Weak<DisplayClient>>,
    /// A malformed frame was reported since the last good one (warn once per run).
    malformed: bool,
    /// Video stream detection and the head's streams (`stream`).
    streams: Detector,
}

#[derive(Default)]
struct DisplayClient {
    pending: Mutex<Region>,
    /// Draws not yet sent, oldest first; always taken with `pending`, under
    /// the head's lock, so they go out before the rectangles queued after them.
    draws: Mutex<Vec<Queued>>,
    wake: Notify,
    /// The client draws DRAW_TRANSPARENT and DRAW_ALPHA_BLEND; else its
    /// blends go as images of their result.
    blends: AtomicBool,
    /// The client takes video streams: frames of streams are not queued.
    streaming: AtomicBool,
}

impl DisplayChannel {
    pub fn new(
        heads: u8,
        force_raw: bool,
        jpeg: JpegMode,
        streaming: StreamingVideo,
    ) -> DisplayChannel {
        let head = || Head {
            streams: Detector::new(streaming),
            ..Head::default()
        };
        DisplayChannel {
            heads: (0..heads).map(|_| Mutex::new(head())).collect(),
            force_raw,
            jpeg,
            streaming,
            next_image_id: AtomicU64::new(1),
            hasher: RandomState::new(),
            images: ImageChoice::new(ImageOptions::default()),
        }
    }

    pub fn with_images(self, opts: ImageOptions) -> DisplayChannel {
        let images = ImageChoice::new(opts);
        DisplayChannel { images, ..self }
    }

    /// The content key of a picture, for the pixmap cache.
    fn key(&self, width: u32, height: u32, pixels: &[u32]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u32(width);
        h.write_u32(height);
        let mut pairs = pixels.chunks_exact(2);
        for p in &mut pairs {
            h.write_u64(u64::from(p[0]) | u64::from(p[1]) << 32);
        }
        for p in pairs.remainder() {
            h.write_u32(*p);
        }
        h.finish()
    }

    /// Publishes `head`'s picture: copies the dirty rectangles of `frame` into the
    /// head's copy and queues them for every client of that head. Never waits for
    /// a client. A head this display does not have is ignored.
    /// `draws` are painted in `frame` already and forwarded as draws.
    pub fn update(&self, head: u8, frame: &Frame, dirty: &[Rect], draws: &[Draw]) {
        let Some(h) = self.heads.get(usize::from(head)) else {
            debug!(head, "update for a display head that does not exist");
            return;
        };
        // Each copied image is keyed once, not once per client; the areas of
        // one drawable share their image. With no client the draws are only
        // painted into the head's copy: nothing to key.
        // A copy that redraws a live stream's whole box is that stream's
        // next frame: it goes as STREAM_DATA, never through the cache, so
        // hashing its pixels would be wasted.
        let (keyed, stream_boxes) = {
            let mut h = lock(h);
            h.prune();
            let boxes: Vec<Rect> = h.streams.streams().iter().map(|s| s.rect).collect();
            (!h.clients.is_empty(), boxes)
        };
        let mut last: Option<(&Frame, u64)> = None;
        let queued: Vec<Queued> = draws
            .iter()
            .map(|d| match d {
                Draw::Fill(f) => Queued::fill(*f),
                Draw::CopyBits(_) => Queued {
                    draw: d.clone(),
                    key: None,
                },
                Draw::Copy(c) if keyed && stream_boxes.contains(&c.rect) => Queued {
                    draw: d.clone(),
                    key: None,
                },
                Draw::Copy(_) | Draw::Blend(_) if !keyed => Queued {
                    draw: d.clone(),
                    key: None,
                },
                Draw::Copy(c) | Draw::Blend(crate::ImageBlend { copy: c, .. }) => {
                    let hash = match last {
                        Some((img, key)) if std::ptr::eq(img, &*c.image) => key,
                        _ => self.key(c.image.width, c.image.height, &c.image.pixels),
                    };
                    last = Some((&c.image, hash));
                    Queued {
                        draw: d.clone(),
                        key: Some(hash),
                    }
                }
            })
            .collect();
        lock(h).update(frame, dirty, &queued);
    }

    /// The size of `head`'s picture, if it has one.
    pub fn size(&self, head: u8) -> Option<(u32, u32)> {
        let h = lock(self.heads.get(usize::from(head))?);
        h.surface.as_ref().map(|s| (s.width, s.height))
    }
}

impl Head {
    /// Takes the dirty rectangles of the newest frame and queues them for every
    /// client. A frame whose pixel count is not width x height (or that is empty)
    /// is dropped: the clients keep the last good one.
    fn update(&mut self, frame: &Frame, dirty: &[Rect], draws: &[Queued]) {
        if !frame.is_well_formed() {
            if !std::mem::replace(&mut self.malformed, true) {
                warn!(
                    width = frame.width,
                    height = frame.height,
                    pixels = frame.pixels.len(),
                    "SPICE display update with a malformed frame dropped"
                );
            }
            return;
        }
        self.malformed = false;
        let (w, h) = (frame.width, frame.height);
        let resized = match &mut self.surface {
            Some(s) if (s.width, s.height) == (w, h) => {
                for r in dirty.iter().chain(draws.iter().map(|q| q.draw.rect())) {
                    s.copy_rect_from(frame, r);
                }
                false
            }
            // New size: the one whole-frame copy, as a client needs the whole
            // picture anyway.
            _ => {
                self.surface = Some(frame.clone());
                self.streams.clear();
                true
            }
        };
        self.prune();
        let frames = if resized || self.clients.is_empty() {
            Vec::new()
        } else {
            self.detect(frame, dirty, draws)
        };
        for c in self.clients.iter().filter_map(Weak::upgrade) {
            let mut p = lock(&c.pending);
            if resized {
                // The whole new surface is due, whatever was dirty. The task
                // recreates the surface if its size differs from what the client
                // has; if the size went back to that one (A → B → A before the task
                // ran), this full rectangle is what redraws it.
                p.clear();
                p.add(Rect::full(w, h));
                lock(&c.draws).clear();
            } else {
                let mut q = lock(&c.draws);
                // A streaming client gets the streams' frames as frames.
                let streaming = c.streaming.load(Ordering::Relaxed);
                let frame_of = |r: &Rect| streaming && frames.contains(r);
                // Checked against what was pending before this update: its
                // own dirty rectangles are newer than its draws.
                let mut new: Vec<Queued> = draws
                    .iter()
                    .filter(|d| !(matches!(d.draw, Draw::Copy(_)) && frame_of(d.draw.rect())))
                    .filter_map(|d| d.clip(w, h))
                    .collect();
                if !c.blends.load(Ordering::Relaxed) {
                    // After every queued draw, from the newest pixels.
                    new.retain(|q| match &q.draw {
                        Draw::Blend(b) => {
                            p.add(b.copy.rect);
                            false
                        }
                        _ => true,
                    });
                }
                if streaming {
                    // The client's pixels under a stream are lossy: no copying them.
                    new.retain(|d| {
                        !reads_stream(&d.draw, self.streams.streams()) || {
                            p.add(*d.draw.rect());
                            false
                        }
                    });
                }
                settle(&mut new, &mut p, false);
                q.extend(new);
                if q.len() > MAX_QUEUED_DRAWS {
                    for d in q.drain(..) {
                        p.add(*d.draw.rect());
                    }
                }
                for r in dirty
                    .iter()
                    .filter(|r| !frame_of(r))
                    .filter_map(|r| r.clip(w, h))
                {
                    p.add(r);
                }
            }
            drop(p);
            c.wake.notify_one();
        }
    }

    /// Feeds an update to stream detection: the boxes it repainted whole
    /// (dirty rectangles, image copies) and everything it painted. Returns
    /// the boxes that are stream frames.
    fn detect(&mut self, frame: &Frame, dirty: &[Rect], draws: &[Queued]) -> Vec<Rect> {
        let copies = draws.iter().filter(|q| matches!(q.draw, Draw::Copy(_)));
        let boxes: Vec<Rect> = dirty
            .iter()
            .copied()
            .chain(copies.map(|q| *q.draw.rect()))
            .collect();
        // The draws in their order, then the dirty rectangles, whose order
        // is not known: taken as the last, they clip any stream under them
        // (and go as images of the newest pixels).
        let painted: Vec<Rect> = draws
            .iter()
            .map(|q| q.draw.rect())
            .chain(dirty)
            .copied()
            .collect();
        self.streams.update(Instant::now(), frame, &boxes, &painted)
    }

    fn register(&mut self) -> Arc<DisplayClient> {
        self.prune();
        let c = Arc::new(DisplayClient::default());
        self.clients.push(Arc::downgrade(&c));
        c
    }

    /// Forgets display channels that have ended.
    fn prune(&mut self) {
        self.clients.retain(|c| c.strong_count() > 0);
    }
}

/// Drops the COPY_BITS of `draws` (in sending order, all to be sent before
/// the rectangles of `stale`) whose source touches `stale`: the client would
/// copy pixels it has not got yet. Each one's destination joins `stale`
/// instead, to go as an image of the newest pixels, so a later copy reading
/// it falls back too. Fills and image copies paint what they paint whatever
/// the client has, and stay; blends onto `stale` go too with `blends` (when
/// the pixels already sent hold their result). Returns the destinations.
fn settle(draws: &mut Vec<Queued>, stale: &mut Region, blends: bool) -> Vec<Rect> {
    let mut dropped = Vec::new();
    draws.retain(|q| {
        let dst = match &q.draw {
            Draw::CopyBits(b) if stale.touches(&b.source()) => b.rect,
            Draw::Blend(b) if blends && stale.touches(&b.copy.rect) => b.copy.rect,
            _ => return true,
        };
        stale.add(dst);
        dropped.push(dst);
        false
    });
    dropped
}

/// The pump is about to send `r` as an image of the head's pixels now. The
/// draws queued since it took its rectangles were checked against what was
/// pending then, which `r` no longer was, yet this image already holds their
/// results: the client gets it before them. A copy-bits reading `r` would
/// copy pixels newer than its own and a blend onto `r` would blend twice, so
/// those (and copy-bits reading what they draw) go as rectangles instead.
/// Called under the head's lock, as `update` queues under it.
fn newer_pixels_sent(client: &DisplayClient, r: Rect) {
    let mut q = lock(&client.draws);
    if q.is_empty() {
        return;
    }
    let mut stale = Region::default();
    stale.add(r);
    let redraw = settle(&mut q, &mut stale, true);
    drop(q);
    let mut p = lock(&client.pending);
    for d in redraw {
        p.add(d);
    }
}

/// A draw waiting for a client, with its copied image's content key (the
/// pixmap cache id; None for fills and copy-bits).
#[derive(Clone, Debug, PartialEq)]
struct Queued {
    draw: Draw,
    key: Option<u64>,
}

impl Queued {
    fn fill(f: SolidFill) -> Queued {
        Queued {
            draw: Draw::Fill(f),
            key: None,
        }
    }

    fn clip(&self, w: u32, h: u32) -> Option<Queued> {
        Some(Queued {
            draw: self.draw.clip(w, h)?,
            key: self.key,
        })
    }
}

/// One message a pump sends next.
enum Outgoing {
    Draw(Queued),
    Image(Rect, Vec<u32>),
}

struct State {
    client: Arc<DisplayClient>,
    head: u8,
    /// Size of the surface the client currently has (after SURFACE_CREATE).
    created: Option<(u32, u32)>,
    mark_due: bool,
    policy: ImagePolicy,
    /// The client's pixmap cache, once DISPLAY_INIT announced one.
    cache: Option<PixmapCache>,
    /// The client takes CACHE_REPLACE_ME (spice-gtk). spice-html5 ignores
    /// the flag and would keep the lossy copy, so it gets INVAL_LIST and
    /// CACHE_ME instead; it announces no COMPOSITE, which tells them apart.
    cache_replace: bool,
    /// The client's GLZ dictionary, once DISPLAY_INIT announced a window.
    glz: Option<SharedGlz>,
    /// No picture before DISPLAY_INIT (its cache and GLZ window shape the
    /// first one) or this deadline, for a client that sends none.
    init_wait: Option<Instant>,
    /// When to look for an idle link to probe (or test again).
    next_probe: Instant,
    /// The client's video streams.
    streams: ClientStreams,
    /// Rectangles that must go lossless (ended streams' boxes) until sent.
    exact: Vec<Rect>,
}

impl ChannelKind for DisplayChannel {
    fn channel_type(&self) -> u8 {
        ch::DISPLAY
    }
    fn name(&self) -> &'static str {
        "display"
    }
    fn ids(&self) -> Vec<u8> {
        (0..self.heads.len() as u8).collect()
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(self.serve(link))
    }
}

impl DisplayChannel {
    async fn serve(&self, link: Link<'_>) -> Result<(), End> {
        let head = usize::from(link.req.channel_id);
        let Some(hub) = self.heads.get(head) else {
            return Ok(());
        };
        let conn = link.conn;
        let client = lock(hub).register();
        let blends = has_cap(&link.req.channel_caps, DISPLAY_CAP_COMPOSITE);
        client.blends.store(blends, Ordering::Relaxed);
        let mut st = State {
            client,
            head: link.req.channel_id,
            created: None,
            mark_due: false,
            policy: ImagePolicy {
                lz4: has_cap(&link.req.channel_caps, DISPLAY_CAP_LZ4_COMPRESSION),
                force_raw: self.force_raw,
                lossy: false,
            },
            cache: None,
            cache_replace: blends,
            glz: None,
            init_wait: Some(Instant::now() + INIT_WAIT),
            next_probe: Instant::now() + PROBE_EVERY,
            streams: ClientStreams::new(
                has_cap(&link.req.channel_caps, DISPLAY_CAP_STREAM_REPORT),
                (Instant::now(), link.server.mm_time()),
            ),
            exact: Vec::new(),
        };
        conn.queue_set_ack();
        conn.flush().await?;
        // The session's net test runs on MAIN (see `session_link`).
        let mut estimates = conn.session_link().subscribe();
        conn.adopt_session_estimate();
        link.reg.initialized();
        loop {
            self.pump(hub, conn, &mut st).await?;
            let client = st.client.clone();
            // DISPLAY_INIT's deadline, else the next latency probe.
            let now = Instant::now();
            let timer = st.init_wait.map_or(st.next_probe, |t| t.min(st.next_probe));
            // Or a paced frame, a stream going still, a lossy candidate's end.
            let timer = {
                let h = lock(hub);
                let ss = h.streams.streams();
                let settle = st
                    .streams
                    .candidates_pending()
                    .then(|| now + super::stream::DETECT_GAP);
                [st.streams.next_due(ss), h.streams.deadline(), settle]
                    .into_iter()
                    .flatten()
                    .fold(timer, Instant::min)
            };
            let next = tokio::select! {
                n = next_message(conn) => n?,
                _ = client.wake.notified() => continue,
                Ok(()) = estimates.changed() => {
                    conn.adopt_session_estimate();
                    continue;
                }
                _ = tokio::time::sleep_until(timer.into()) => Next::Base,
            };
            let now = Instant::now();
            if now >= st.next_probe {
                st.next_probe = now + PROBE_EVERY;
                conn.queue_probe_if_due();
                conn.flush().await?;
            }
            match next {
                Next::Closed => return Ok(()),
                Next::Base => {}
                Next::Msg(t, body) => match t {
                    display_msgc::INIT => {
                        st.init_wait = None;
                        // The client's channels share its cache: each head
                        // gets its share of the pixels.
                        let size = init_cache_size(&body).unwrap_or(0);
                        st.cache = PixmapCache::new(size / self.heads.len().max(1) as i64);
                        let (dict, window) = init_glz(&body).unwrap_or((0, 0));
                        st.glz = self.images.dictionary(link.session_id, dict, window);
                        debug!(size, cache = st.cache.is_some(), window, "display init");
                    }
                    display_msgc::STREAM_REPORT => st.streams.report(conn, &body),
                    display_msgc::PREFERRED_COMPRESSION
                    | display_msgc::GL_DRAW_DONE
                    | display_msgc::PREFERRED_VIDEO_CODEC_TYPE => {
                        debug!(msg_type = t, len = body.len(), "display message ignored");
                    }
                    _ => debug!(msg_type = t, "ignoring unknown display message"),
                },
            }
        }
    }

    /// Sends what the client is missing, as far as the ack window allows. The
    /// head's lock is held only to take the rectangles and to copy one
    /// rectangle's pixels out, never across encoding or a write.
    async fn pump(&self, hub: &Mutex<Head>, conn: &mut Conn, st: &mut State) -> Result<(), End> {
        // The rectangles are taken under the head's lock, and pixels are copied
        // later, so they are never older than the rectangles they answer.
        if let Some(t) = st.init_wait {
            if Instant::now() < t {
                return Ok(());
            }
            st.init_wait = None;
            debug!("no DISPLAY_INIT: pictures go without cache or GLZ");
        }
        let (mut rects, mut draws) = {
            let h = lock(hub);
            if h.surface.is_none() {
                return Ok(());
            }
            let rects = lock(&st.client.pending).take();
            let draws = std::mem::take(&mut *lock(&st.client.draws));
            (rects, VecDeque::from(draws))
        };
        self.sync_streams(hub, conn, st, &mut rects);
        loop {
            if !conn.window_open() {
                break;
            }
            let out = {
                let h = lock(hub);
                let Some(s) = h.surface.as_ref() else { break };
                let size = (s.width, s.height);
                if st.created != Some(size) {
                    if st.created.is_some() {
                        // Every primary surface gets its MARK (as spice-server
                        // sends one per create), even one replaced before all
                        // its pixels were out.
                        if std::mem::take(&mut st.mark_due) {
                            conn.queue(display_msg::MARK, &[]);
                        }
                        if st.streams.forget_all() {
                            conn.queue(display_msg::STREAM_DESTROY_ALL, &[]);
                            if let Some(s) = conn.stats() {
                                s.streams_ended();
                            }
                        }
                        let mut w = Writer::new();
                        w.u32(0);
                        conn.queue(display_msg::SURFACE_DESTROY, &w.finish());
                    }
                    conn.queue(display_msg::SURFACE_CREATE, &surface_create(size.0, size.1));
                    st.created = Some(size);
                    st.mark_due = true;
                    // The whole new surface replaces whatever was pending.
                    lock(&st.client.pending).clear();
                    lock(&st.client.draws).clear();
                    draws.clear();
                    rects = vec![Rect::full(size.0, size.1)];
                }
                // Draws first: the rectangles' images are the newest pixels.
                match draws.pop_front() {
                    Some(d) => Outgoing::Draw(d),
                    None => {
                        let Some(r) = next_clipped(&mut rects, size) else {
                            break;
                        };
                        newer_pixels_sent(&st.client, r);
                        Outgoing::Image(r, extract(s, &r))
                    }
                }
            };
            // The image and the message body end here, before the flush awaits
            // a slow client.
            match out {
                Outgoing::Draw(Queued {
                    draw: Draw::Fill(f),
                    ..
                }) => {
                    conn.queue(display_msg::DRAW_FILL, &draw_fill(&f));
                    if let Some(s) = conn.stats() {
                        s.draw(None);
                    }
                }
                Outgoing::Draw(Queued {
                    draw: Draw::Copy(c),
                    key,
                }) => self.send_copy(conn, st, &c, key, None),
                Outgoing::Draw(Queued {
                    draw: Draw::Blend(b),
                    key,
                }) => self.send_copy(conn, st, &b.copy, key, Some(b.mode)),
                Outgoing::Draw(Queued {
                    draw: Draw::CopyBits(b),
                    ..
                }) => {
                    conn.queue(display_msg::COPY_BITS, &draw_copy_bits(&b));
                    if let Some(s) = conn.stats() {
                        s.draw(None);
                    }
                }
                Outgoing::Image(r, pixels) => self.send_image(conn, st, &r, None, &pixels, None),
            }
            // Write per rectangle so a big update does not sit in one huge buffer.
            conn.flush().await?;
        }
        if rects.is_empty() {
            // The lossless boxes went out.
            st.exact.clear();
        }
        if !rects.is_empty() || !draws.is_empty() {
            // Window full: keep them; the rectangles will be drawn from newer
            // pixels later, the draws go before any draw queued since.
            let _head = lock(hub);
            let mut p = lock(&st.client.pending);
            let mut q = lock(&st.client.draws);
            // The draws queued since the take were checked against what was
            // pending then, not against these rectangles, which the client
            // now gets after them.
            let mut stale = Region::default();
            for r in rects {
                stale.add(r);
            }
            settle(&mut q, &mut stale, false);
            for r in stale.take() {
                p.add(r);
            }
            draws.extend(q.drain(..));
            *q = draws.into();
        } else if st.mark_due && conn.window_open() && st.created.is_some() {
            conn.queue(display_msg::MARK, &[]);
            st.mark_due = false;
        }
        conn.flush().await?;
        Ok(())
    }

    /// Brings the client's video streams up to the head's (`stream`): the
    /// messages and frames are queued, the images due after them join `rects`.
    fn sync_streams(
        &self,
        hub: &Mutex<Head>,
        conn: &mut Conn,
        st: &mut State,
        rects: &mut Vec<Rect>,
    ) {
        let allowed = self.streaming != StreamingVideo::Off
            && !self.force_raw
            && self.jpeg != JpegMode::Never;
        let on = st.streams.wanted(allowed);
        st.client.streaming.store(on, Ordering::Relaxed);
        if !conn.window_open() {
            return;
        }
        let now = Instant::now();
        let slow = conn.meter().slow() == Some(true);
        let steps = {
            let mut h = lock(hub);
            h.streams.expire(now);
            let settled = st
                .streams
                .settle_candidates(h.streams.hot(), h.streams.streams(), on);
            st.exact.extend(&settled);
            rects.extend(settled);
            match (&h.surface, st.created) {
                (Some(s), Some(size)) if (s.width, s.height) == size => {
                    st.streams.sync(h.streams.streams(), s, now, on, slow)
                }
                _ => Vec::new(),
            }
        };
        if !steps.is_empty() {
            rects.extend(st.streams.emit(conn, steps, &mut st.exact));
        }
    }

    /// A forwarded copy (or blend): the image as it is when the copy shows
    /// all of it (its content key known), else the part shown. Every image
    /// sent is the box's size with no source offset: spice-html5 ignores
    /// `src_area`.
    fn send_copy(
        &self,
        conn: &mut Conn,
        st: &mut State,
        c: &ImageCopy,
        key: Option<u64>,
        blend: Option<BlendMode>,
    ) {
        let r = c.rect;
        let (iw, ih) = (c.image.width, c.image.height);
        if (c.src_x, c.src_y, r.width, r.height) == (0, 0, iw, ih) {
            self.send_image(conn, st, &r, key, &c.image.pixels, blend);
        } else {
            let part = extract(&c.image, &Rect::new(c.src_x, c.src_y, r.width, r.height));
            self.send_image(conn, st, &r, None, &part, blend);
        }
    }

    /// Whether JPEG is in use for this client now: the mode and the link
    /// allow it (then photo-like images may go lossy).
    fn jpeg_wanted(&self, conn: &Conn) -> bool {
        !self.force_raw
            && self.images.jpeg_allowed()
            && match self.jpeg {
                JpegMode::Never => false,
                JpegMode::Always => true,
                // Unknown (no estimate yet) is not slow.
                JpegMode::Auto => conn.meter().slow() == Some(true),
            }
    }

    /// DRAW_COPY of an image of `dst`'s size onto `dst`: from the client's
    /// cache when it has the image (and its copy is good enough), else the
    /// pixels (with CACHE_ME when the content was seen before, or
    /// CACHE_REPLACE_ME over a lossy copy). `key` is the content key if known.
    /// With `blend`, a DRAW_TRANSPARENT, DRAW_ALPHA_BLEND or DRAW_COMPOSITE
    /// of the image instead; of these only an ALPHA_BLEND's image may be
    /// lossy, as in spice-server (a colour key must match exactly): JPEG,
    /// or JPEG_ALPHA for an image with alpha.
    fn send_image(
        &self,
        conn: &mut Conn,
        st: &mut State,
        dst: &Rect,
        key: Option<u64>,
        pixels: &[u32],
        blend: Option<BlendMode>,
    ) {
        let (w, h) = (dst.width, dst.height);
        let wanted = self.jpeg_wanted(conn);
        // Likely video about to become a stream (`stream`): lossy, at the
        // quality the stream will start at, not the still images' 85.
        let video = blend.is_none()
            && st.streams.is_hot(dst)
            && photo_like(w, h, pixels)
            && st.streams.lossy_candidate(dst);
        let in_use = wanted || video;
        let may_lose = matches!(
            blend,
            None | Some(BlendMode::Alpha(_) | BlendMode::SourceAlpha(_))
        );
        let lossy = (video || wanted && photo_like(w, h, pixels))
            && may_lose
            && !st.exact.iter().any(|e| e.intersects(dst));
        // Exactness matters only where JPEG is ever used: a lossy copy made
        // while the link was slow is replaced once it is not. Cached images
        // are named FROM_CACHE_LOSSLESS only while JPEG is in use, as
        // spice-server does.
        let exact = self.jpeg != JpegMode::Never && !lossy;
        let source_alpha = blend.is_some_and(BlendMode::source_alpha);
        let cached = st.cache.as_mut().map(|cache| {
            let key = key.unwrap_or_else(|| self.key(w, h, pixels));
            // An image with alpha is cached as an a8r8g8b8 picture, one
            // without as x8r8g8b8: never the one for the other, even where
            // their pixel words are alike (all clear).
            let key = if source_alpha {
                !key.rotate_left(17)
            } else {
                key
            };
            let id = cache_id(st.head, key);
            (id, cache.lookup(id, u64::from(w) * u64::from(h), exact))
        });
        let policy = ImagePolicy { lossy, ..st.policy };
        let (glz, slow) = (st.glz.as_ref().map(|d| (d, st.head)), conn.meter().slow());
        // A video frame goes as JPEG with no lossless coder tried (they
        // never win on one), where the mode allows JPEG at all.
        let quality = (video && lossy && !self.force_raw && self.images.jpeg_allowed())
            .then(|| start_quality(slow == Some(true)));
        let encode = |tag| {
            if source_alpha {
                return encode_rgba(tag, w, h, pixels, policy);
            }
            quality
                .and_then(|q| jpeg_image(tag, w, h, pixels, q))
                .unwrap_or_else(|| self.images.encode(tag, w, h, pixels, policy, glz, slow))
        };
        let image = match cached {
            Some((id, CacheUse::Hit { lossless })) => from_cache(id, w, h, lossless && in_use),
            Some((id, CacheUse::Replace)) => {
                let flags = if st.cache_replace {
                    IMAGE_FLAGS_CACHE_REPLACE_ME
                } else {
                    conn.queue(display_msg::INVAL_LIST, &inval_pixmaps(&[id]));
                    IMAGE_FLAGS_CACHE_ME
                };
                let tag = ImageTag { id, flags };
                // `exact` holds here, so `policy` is lossless.
                encode(tag)
            }
            Some((id, CacheUse::Store { evict })) => {
                if !evict.is_empty() {
                    conn.queue(display_msg::INVAL_LIST, &inval_pixmaps(&evict));
                }
                let tag = ImageTag {
                    id,
                    flags: IMAGE_FLAGS_CACHE_ME,
                };
                let image = encode(tag);
                if is_lossy(&image) {
                    if let Some(cache) = st.cache.as_mut() {
                        cache.stored_lossy(id);
                    }
                }
                image
            }
            Some((_, CacheUse::Plain)) | None => {
                let tag = ImageTag {
                    id: self.next_image_id.fetch_add(1, Ordering::Relaxed),
                    flags: 0,
                };
                encode(tag)
            }
        };
        match blend {
            None => conn.queue(display_msg::DRAW_COPY, &draw_copy(dst, &image)),
            Some(BlendMode::Transparent(key)) => conn.queue(
                display_msg::DRAW_TRANSPARENT,
                &draw_transparent(dst, &image, key),
            ),
            Some(BlendMode::Alpha(alpha) | BlendMode::SourceAlpha(alpha)) => conn.queue(
                display_msg::DRAW_ALPHA_BLEND,
                &draw_alpha_blend(dst, &image, alpha, source_alpha),
            ),
            Some(BlendMode::Over) => {
                conn.queue(display_msg::DRAW_COMPOSITE, &draw_composite(dst, &image))
            }
        }
        if let Some(s) = conn.stats() {
            s.draw(Some(&image));
        }
    }
}

/// The pixmap cache id of content `hash` on display `head`: the head in the
/// top byte, as the client's display channels share its cache.
fn cache_id(head: u8, hash: u64) -> u64 {
    hash >> 8 | u64::from(head) << 56
}

/// The next rectangle that is still inside a `size` surface.
fn next_clipped(rects: &mut Vec<Rect>, size: (u32, u32)) -> Option<Rect> {
    while !rects.is_empty() {
        if let Some(r) = rects.remove(0).clip(size.0, size.1) {
            return Some(r);
        }
    }
    None
}

#[cfg(test)]
#[path = "display_tests.rs"]
mod tests;
