//! DISPLAY channel. On connect: SET_ACK, then (once a surface exists) SURFACE_CREATE of
//! primary surface 0, a DRAW_COPY of the whole screen and MARK. Afterwards each
//! update's dirty rectangles become DRAW_COPYs of the latest pixels, sent only while
//! the ack window is open; a resize is SURFACE_DESTROY + SURFACE_CREATE + full draw +
//! MARK. We do not advertise MONITORS_CONFIG, so spice-gtk derives the monitor from
//! the primary surface and we never have to send one.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;
use tracing::{debug, warn};

use super::conn::Conn;
use super::region::{clip, Region};
use super::{next_message, End, Next};
use crate::codec::{encode_image, extract, ImagePolicy, ENCODERS};
use crate::link::LinkRequest;
use crate::proto::{
    display_msg, display_msgc, has_cap, DISPLAY_CAP_LZ4_COMPRESSION, ROPD_OP_PUT,
    SURFACE_FLAGS_PRIMARY, SURFACE_FMT_32_XRGB,
};
use crate::server::{lock, Registration, Shared};
use crate::wire::Writer;
use crate::{Rect, Surface};

/// What `update` shares with every display channel task.
#[derive(Default)]
pub struct DisplayHub {
    surface: Option<Arc<Surface>>,
    clients: Vec<Weak<DisplayClient>>,
    /// A malformed surface was reported since the last good one (warn once per run).
    malformed: bool,
}

#[derive(Default)]
struct DisplayClient {
    pending: Mutex<Region>,
    wake: Notify,
}

impl DisplayHub {
    /// Stores the newest surface and queues its dirty rectangles for every client.
    /// A surface whose pixel count is not width x height (or that is empty) is
    /// dropped: the clients keep the last good one.
    pub fn update(&mut self, surface: Arc<Surface>, dirty: &[Rect]) {
        let (w, h) = (surface.width, surface.height);
        let expected = (w as usize).checked_mul(h as usize);
        if w == 0 || h == 0 || expected != Some(surface.pixels.len()) {
            if !std::mem::replace(&mut self.malformed, true) {
                warn!(
                    width = w,
                    height = h,
                    pixels = surface.pixels.len(),
                    "SPICE display update with a malformed surface dropped"
                );
            }
            return;
        }
        self.malformed = false;
        let resized = self
            .surface
            .as_ref()
            .is_none_or(|s| (s.width, s.height) != (w, h));
        self.surface = Some(surface);
        self.prune();
        for c in self.clients.iter().filter_map(Weak::upgrade) {
            let mut p = lock(&c.pending);
            if resized {
                // The whole new surface is due, whatever was dirty. The task
                // recreates the surface if its size differs from what the client
                // has; if the size went back to that one (A → B → A before the task
                // ran), this full rectangle is what redraws it.
                p.clear();
                p.add(Rect {
                    x: 0,
                    y: 0,
                    width: w,
                    height: h,
                });
            } else {
                for r in dirty.iter().filter_map(|r| clip(r, w, h)) {
                    p.add(r);
                }
            }
            drop(p);
            c.wake.notify_one();
        }
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

fn surface_create(w: u32, h: u32) -> Vec<u8> {
    let mut b = Writer::new();
    b.u32(0)
        .u32(w)
        .u32(h)
        .u32(SURFACE_FMT_32_XRGB)
        .u32(SURFACE_FLAGS_PRIMARY);
    b.finish()
}

/// SPICE Rect is {top, left, bottom, right}.
fn rect(w: &mut Writer, r: &Rect) {
    w.i32(r.y as i32)
        .i32(r.x as i32)
        .i32((r.y + r.height) as i32)
        .i32((r.x + r.width) as i32);
}

/// Size of DRAW_COPY's fixed part without clip rects or mask: where the image starts.
pub const DRAW_COPY_FIXED: u32 = 57;

fn draw_copy(r: &Rect, image: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(DRAW_COPY_FIXED as usize + image.len());
    w.u32(0); // surface 0
    rect(&mut w, r); // box
    w.u8(0); // clip NONE
    w.u32(DRAW_COPY_FIXED); // src_bitmap: offset of the image in the body
    rect(
        &mut w,
        &Rect {
            x: 0,
            y: 0,
            width: r.width,
            height: r.height,
        },
    ); // src_area
    w.u16(ROPD_OP_PUT).u8(0); // rop, scale mode
    w.u8(0).i32(0).i32(0).u32(0); // no mask
    debug_assert_eq!(w.written(), DRAW_COPY_FIXED as usize);
    w.bytes(image);
    w.finish()
}

struct State {
    client: Arc<DisplayClient>,
    /// Size of the surface the client currently has (after SURFACE_CREATE).
    created: Option<(u32, u32)>,
    mark_due: bool,
    policy: ImagePolicy,
}

pub async fn run(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    req: &LinkRequest,
    reg: &Registration,
) -> Result<(), End> {
    let mut st = State {
        client: lock(&shared.display).register(),
        created: None,
        mark_due: false,
        policy: ImagePolicy {
            lz4: has_cap(&req.channel_caps, DISPLAY_CAP_LZ4_COMPRESSION),
            force_raw: shared.force_raw,
        },
    };
    conn.queue_set_ack();
    conn.flush().await?;
    reg.initialized();
    loop {
        pump(shared, conn, &mut st).await?;
        let client = st.client.clone();
        let next = tokio::select! {
            n = next_message(conn) => n?,
            _ = client.wake.notified() => continue,
        };
        match next {
            Next::Closed => return Ok(()),
            Next::Base => {}
            Next::Msg(t, body) => match t {
                display_msgc::INIT
                | display_msgc::STREAM_REPORT
                | display_msgc::PREFERRED_COMPRESSION
                | display_msgc::GL_DRAW_DONE
                | display_msgc::PREFERRED_VIDEO_CODEC_TYPE => {
                    debug!(msg_type = t, len = body.len(), "display message ignored");
                }
                _ => debug!(msg_type = t, "ignoring unknown display message"),
            },
        }
    }
}

/// Sends what the client is missing, as far as the ack window allows.
async fn pump(shared: &Shared, conn: &mut Conn, st: &mut State) -> Result<(), End> {
    // Snapshot and pending rectangles are taken under the hub lock, so the pixels
    // are never older than the rectangles they answer.
    let (surface, mut rects) = {
        let hub = lock(&shared.display);
        let Some(s) = hub.surface.clone() else {
            return Ok(());
        };
        let rects = lock(&st.client.pending).take();
        (s, rects)
    };
    let size = (surface.width, surface.height);
    if st.created != Some(size) {
        if st.created.is_some() {
            let mut w = Writer::new();
            w.u32(0);
            conn.queue(display_msg::SURFACE_DESTROY, &w.finish());
        }
        conn.queue(display_msg::SURFACE_CREATE, &surface_create(size.0, size.1));
        st.created = Some(size);
        st.mark_due = true;
        rects = vec![Rect {
            x: 0,
            y: 0,
            width: size.0,
            height: size.1,
        }];
    }
    let mut unsent = rects.into_iter().filter_map(|r| clip(&r, size.0, size.1));
    while conn.window_open() {
        let Some(r) = unsent.next() else { break };
        {
            // The pixel copy, the image and the message body end here, before the
            // flush awaits a slow client.
            let pixels = extract(&surface, &r);
            let id = shared.next_image_id.fetch_add(1, Ordering::Relaxed);
            let image = encode_image(id, r.width, r.height, &pixels, st.policy, ENCODERS);
            conn.queue(display_msg::DRAW_COPY, &draw_copy(&r, &image));
        }
        // Write per rectangle so a big update does not sit in one huge buffer.
        conn.flush().await?;
    }
    let rest: Vec<Rect> = unsent.collect();
    if !rest.is_empty() {
        // Window full: keep them; they will be drawn from newer pixels later.
        let mut p = lock(&st.client.pending);
        for r in rest {
            p.add(r);
        }
    } else if st.mark_due && conn.window_open() {
        conn.queue(display_msg::MARK, &[]);
        st.mark_due = false;
    }
    conn.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surface(width: u32, height: u32, len: usize) -> Arc<Surface> {
        Arc::new(Surface {
            width,
            height,
            pixels: vec![0; len].into(),
        })
    }

    fn full(width: u32, height: u32) -> Rect {
        Rect {
            x: 0,
            y: 0,
            width,
            height,
        }
    }

    #[test]
    fn a_resize_marks_the_whole_new_surface_pending() {
        let mut hub = DisplayHub::default();
        let c = hub.register();
        hub.update(surface(100, 80, 8000), &[full(100, 80)]);
        // The task sent A.
        lock(&c.pending).take();
        // A → B → A2 before the task runs again: the task still has a 100x80
        // surface, so only the pending region can make it redraw.
        hub.update(surface(320, 200, 64000), &[]);
        hub.update(surface(100, 80, 8000), &[]);
        assert_eq!(lock(&c.pending).take(), vec![full(100, 80)]);
    }

    #[test]
    fn register_prunes_ended_clients() {
        let mut hub = DisplayHub::default();
        for _ in 0..100 {
            drop(hub.register());
        }
        let _live = hub.register();
        assert_eq!(hub.clients.len(), 1);
    }

    #[test]
    fn malformed_surfaces_are_dropped() {
        let mut hub = DisplayHub::default();
        let c = hub.register();
        hub.update(surface(10, 10, 100), &[full(10, 10)]);
        lock(&c.pending).take();
        for bad in [
            surface(10, 10, 99),
            surface(10, 10, 101),
            surface(0, 10, 0),
            surface(u32::MAX, u32::MAX, 1),
        ] {
            hub.update(bad, &[full(10, 10)]);
            let s = hub.surface.as_ref().unwrap();
            assert_eq!((s.width, s.height, s.pixels.len()), (10, 10, 100));
            assert!(lock(&c.pending).take().is_empty());
        }
    }
}
