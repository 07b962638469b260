//! CURSOR channel, one id per display head: SET_ACK, then CURSOR_INIT with the
//! head's current cursor (the default arrow, visible at (0,0), until the guest
//! defines one). The guest's cursor (QXL cursor commands, via
//! [`crate::SpiceServer::cursor_update`]) follows as CURSOR_SET (new shape or
//! shown again), CURSOR_MOVE and CURSOR_HIDE, pointer trails as CURSOR_TRAIL
//! (and in CURSOR_INIT); a device reset brings the arrow back. The state is a `watch` per head: a slow client
//! skips intermediate positions, never the latest one, and never blocks the
//! device.
//!
//! Shapes go through the client's cursor cache ([`super::cursor_cache`]): the
//! first sending of a shape carries CACHE_ME, later ones are FROM_CACHE, a
//! header without pixels. Shapes are named by a keyed hash of their content,
//! not by the guest's QXL unique id: Linux's qxl driver leaves that id 0, and
//! a guest reusing an id for another picture would make clients show a stale
//! shape; the content key also finds the same shape defined twice.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use tokio::sync::watch;

use super::conn::Conn;
use super::cursor_cache::{CursorCache, CursorCacheUse};
use super::{next_message, ChannelKind, ChannelTask, Link, Next};
use crate::proto::{
    channel as ch, cursor_msg, CURSOR_FLAGS_CACHE_ME, CURSOR_FLAGS_FROM_CACHE, CURSOR_TYPE_ALPHA,
};
use crate::wire::Writer;
use crate::{cursor_shape, CursorShape};

/// What the guest did with its cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorUpdate {
    /// A new shape at a position, shown or not.
    Set {
        shape: CursorShape,
        x: i16,
        y: i16,
        visible: bool,
    },
    /// The pointer moved (and is shown).
    Move {
        x: i16,
        y: i16,
    },
    Hide,
    /// Pointer trails: `length` images, drawn every `frequency`.
    Trail {
        length: u16,
        frequency: u16,
    },
    /// The device was reset: back to the default arrow.
    Reset,
}

/// A head's cursor as clients should see it.
#[derive(Clone, Debug)]
struct CursorState {
    shape: Arc<CursorShape>,
    /// The shape's content key: its id in clients' cursor caches.
    key: u64,
    /// Bumped for every new shape (and on reset), so tasks know to send SET.
    serial: u64,
    /// Bumped on every device reset, so tasks empty their clients' caches.
    resets: u64,
    x: i16,
    y: i16,
    visible: bool,
    /// Pointer trail length and frequency (0, 0: none).
    trail: (u16, u16),
}

pub struct CursorChannel {
    heads: Vec<watch::Sender<CursorState>>,
    /// Keys shape hashes: a guest cannot aim for another shape's id
    /// without knowing it.
    hasher: RandomState,
    arrow: Arc<CursorShape>,
}

/// The content key of `shape`: size, hot spot and pixels.
fn shape_key(hasher: &RandomState, shape: &CursorShape) -> u64 {
    let mut h = hasher.build_hasher();
    h.write_u16(shape.width);
    h.write_u16(shape.height);
    h.write_u16(shape.hot_x);
    h.write_u16(shape.hot_y);
    for p in &shape.pixels {
        h.write_u32(*p);
    }
    h.finish()
}

impl CursorChannel {
    pub fn new(heads: u8) -> CursorChannel {
        let arrow = Arc::new(cursor_shape::arrow());
        let hasher = RandomState::new();
        let key = shape_key(&hasher, &arrow);
        CursorChannel {
            heads: (0..heads)
                .map(|_| {
                    watch::Sender::new(CursorState {
                        shape: arrow.clone(),
                        key,
                        serial: 0,
                        resets: 0,
                        x: 0,
                        y: 0,
                        visible: true,
                        trail: (0, 0),
                    })
                })
                .collect(),
            hasher,
            arrow,
        }
    }

    /// Apply a guest cursor change to `head` (unknown heads and invalid shapes
    /// are ignored). Never blocks.
    pub fn update(&self, head: u8, update: CursorUpdate) {
        let Some(tx) = self.heads.get(usize::from(head)) else {
            return;
        };
        // Hashed here, once per shape, not once per client.
        let key = match &update {
            CursorUpdate::Set { shape, .. } if shape.is_valid() => shape_key(&self.hasher, shape),
            _ => 0,
        };
        tx.send_modify(|s| match update {
            CursorUpdate::Set {
                shape,
                x,
                y,
                visible,
            } => {
                if !shape.is_valid() {
                    tracing::debug!("invalid cursor shape ignored");
                    return;
                }
                s.shape = Arc::new(shape);
                s.key = key;
                s.serial += 1;
                (s.x, s.y, s.visible) = (x, y, visible);
            }
            CursorUpdate::Move { x, y } => (s.x, s.y, s.visible) = (x, y, true),
            CursorUpdate::Hide => s.visible = false,
            CursorUpdate::Trail { length, frequency } => s.trail = (length, frequency),
            CursorUpdate::Reset => {
                s.shape = self.arrow.clone();
                s.key = shape_key(&self.hasher, &self.arrow);
                s.serial += 1;
                s.resets += 1;
                (s.x, s.y, s.visible) = (0, 0, true);
                s.trail = (0, 0);
            }
        });
    }
}

/// The SpiceCursor part, through the client's cache: flags, header and
/// (unless the client has the shape) the ARGB pixels. An eviction the cache
/// needs goes out first, as INVAL_ONE.
fn cursor(inval: &mut Vec<u64>, cache: &mut CursorCache, w: &mut Writer, s: &CursorState) {
    let (flags, pixels) = match cache.lookup(s.key) {
        CursorCacheUse::Hit => (CURSOR_FLAGS_FROM_CACHE, false),
        CursorCacheUse::Store { evict } => {
            inval.extend(evict);
            (CURSOR_FLAGS_CACHE_ME, true)
        }
    };
    let shape = &s.shape;
    w.u16(flags)
        .u64(s.key)
        .u8(CURSOR_TYPE_ALPHA)
        .u16(shape.width)
        .u16(shape.height)
        .u16(shape.hot_x)
        .u16(shape.hot_y);
    if pixels {
        w.bytes(&shape.bgra_bytes());
    }
}

/// CURSOR_INIT showing the state's shape, position and trail. The client
/// empties its cache on INIT, so the model starts over too.
fn init_body(cache: &mut CursorCache, s: &CursorState) -> Vec<u8> {
    cache.clear();
    let mut w = Writer::new();
    w.i16(s.x)
        .i16(s.y)
        .u16(s.trail.0)
        .u16(s.trail.1)
        .u8(u8::from(s.visible));
    let mut inval = Vec::new();
    cursor(&mut inval, cache, &mut w, s);
    debug_assert!(inval.is_empty(), "an empty cache evicts nothing");
    w.finish()
}

/// INVAL_ONE for each eviction, then CURSOR_SET.
fn queue_set(conn: &mut Conn, cache: &mut CursorCache, s: &CursorState) {
    let mut w = Writer::new();
    w.i16(s.x).i16(s.y).u8(u8::from(s.visible));
    let mut inval = Vec::new();
    cursor(&mut inval, cache, &mut w, s);
    for id in inval {
        conn.queue(cursor_msg::INVAL_ONE, &id.to_le_bytes());
    }
    conn.queue(cursor_msg::SET, &w.finish());
}

impl ChannelKind for CursorChannel {
    fn channel_type(&self) -> u8 {
        ch::CURSOR
    }
    fn name(&self) -> &'static str {
        "cursor"
    }
    fn ids(&self) -> Vec<u8> {
        (0..self.heads.len() as u8).collect()
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(async move {
            let conn = link.conn;
            let Some(tx) = self.heads.get(usize::from(link.req.channel_id)) else {
                return Ok(());
            };
            let mut rx = tx.subscribe();
            let mut sent = rx.borrow_and_update().clone();
            // This connection's client cache: a new connection's starts empty.
            let mut cache = CursorCache::new();
            conn.queue_set_ack();
            conn.queue(cursor_msg::INIT, &init_body(&mut cache, &sent));
            conn.flush().await?;
            link.reg.initialized();
            loop {
                let next = tokio::select! {
                    n = next_message(conn) => Some(n?),
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                        None
                    }
                };
                let Some(next) = next else {
                    let now = rx.borrow_and_update().clone();
                    if now.resets != sent.resets {
                        // As spice-server: a device reset empties the
                        // client's cache; the guest's shapes are gone.
                        cache.clear();
                        conn.queue(cursor_msg::INVAL_ALL, &[]);
                    }
                    if now.trail != sent.trail {
                        let mut w = Writer::new();
                        w.u16(now.trail.0).u16(now.trail.1);
                        conn.queue(cursor_msg::TRAIL, &w.finish());
                    }
                    if now.serial != sent.serial || (now.visible && !sent.visible) {
                        queue_set(conn, &mut cache, &now);
                    } else if !now.visible {
                        if sent.visible {
                            conn.queue(cursor_msg::HIDE, &[]);
                        }
                    } else if (now.x, now.y) != (sent.x, sent.y) {
                        let mut w = Writer::new();
                        w.i16(now.x).i16(now.y);
                        conn.queue(cursor_msg::MOVE, &w.finish());
                    }
                    sent = now;
                    conn.flush().await?;
                    continue;
                };
                match next {
                    Next::Closed => return Ok(()),
                    Next::Base => {}
                    Next::Msg(t, _) => tracing::debug!(msg_type = t, "ignoring cursor message"),
                }
            }
        })
    }
}
