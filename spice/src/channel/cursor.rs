//! CURSOR channel, one id per display head: SET_ACK, then CURSOR_INIT with the
//! head's current cursor (the default arrow, visible at (0,0), until the guest
//! defines one). The guest's cursor (QXL cursor commands, via
//! [`crate::SpiceServer::cursor_update`]) follows as CURSOR_SET (new shape or
//! shown again), CURSOR_MOVE and CURSOR_HIDE, pointer trails as CURSOR_TRAIL
//! (and in CURSOR_INIT); a device reset brings the arrow back. The state is a `watch` per head: a slow client
//! skips intermediate positions, never the latest one, and never blocks the
//! device.

use std::sync::Arc;

use tokio::sync::watch;

use super::{next_message, ChannelKind, ChannelTask, Link, Next};
use crate::proto::{channel as ch, cursor_msg, CURSOR_TYPE_ALPHA};
use crate::wire::Writer;
use crate::{cursor_shape, CursorShape};

/// Cache id of the default arrow (no CACHE_ME flag, so unused by clients).
const ARROW_UNIQUE: u64 = 1;

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
    /// Bumped for every new shape (and on reset), so tasks know to send SET.
    serial: u64,
    x: i16,
    y: i16,
    visible: bool,
    /// Pointer trail length and frequency (0, 0: none).
    trail: (u16, u16),
}

pub struct CursorChannel {
    heads: Vec<watch::Sender<CursorState>>,
}

impl CursorChannel {
    pub fn new(heads: u8) -> CursorChannel {
        let arrow = Arc::new(cursor_shape::arrow());
        CursorChannel {
            heads: (0..heads)
                .map(|_| {
                    watch::Sender::new(CursorState {
                        shape: arrow.clone(),
                        serial: 0,
                        x: 0,
                        y: 0,
                        visible: true,
                        trail: (0, 0),
                    })
                })
                .collect(),
        }
    }

    /// Apply a guest cursor change to `head` (unknown heads and invalid shapes
    /// are ignored). Never blocks.
    pub fn update(&self, head: u8, update: CursorUpdate) {
        let Some(tx) = self.heads.get(usize::from(head)) else {
            return;
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
                s.serial += 1;
                (s.x, s.y, s.visible) = (x, y, visible);
            }
            CursorUpdate::Move { x, y } => (s.x, s.y, s.visible) = (x, y, true),
            CursorUpdate::Hide => s.visible = false,
            CursorUpdate::Trail { length, frequency } => s.trail = (length, frequency),
            CursorUpdate::Reset => {
                s.shape = Arc::new(cursor_shape::arrow());
                s.serial += 1;
                (s.x, s.y, s.visible) = (0, 0, true);
                s.trail = (0, 0);
            }
        });
    }
}

/// The SpiceCursor part: flags (a shape follows, not cached), header, ARGB.
fn cursor(w: &mut Writer, shape: &CursorShape, unique: u64) {
    w.u16(0)
        .u64(unique)
        .u8(CURSOR_TYPE_ALPHA)
        .u16(shape.width)
        .u16(shape.height)
        .u16(shape.hot_x)
        .u16(shape.hot_y)
        .bytes(&shape.bgra_bytes());
}

/// CURSOR_INIT showing the state's shape, position and trail.
fn init_body(s: &CursorState) -> Vec<u8> {
    let mut w = Writer::new();
    w.i16(s.x)
        .i16(s.y)
        .u16(s.trail.0)
        .u16(s.trail.1)
        .u8(u8::from(s.visible));
    cursor(&mut w, &s.shape, ARROW_UNIQUE + s.serial);
    w.finish()
}

fn set_body(s: &CursorState) -> Vec<u8> {
    let mut w = Writer::new();
    w.i16(s.x).i16(s.y).u8(u8::from(s.visible));
    cursor(&mut w, &s.shape, ARROW_UNIQUE + s.serial);
    w.finish()
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
            conn.queue_set_ack();
            conn.queue(cursor_msg::INIT, &init_body(&sent));
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
                    if now.trail != sent.trail {
                        let mut w = Writer::new();
                        w.u16(now.trail.0).u16(now.trail.1);
                        conn.queue(cursor_msg::TRAIL, &w.finish());
                    }
                    if now.serial != sent.serial || (now.visible && !sent.visible) {
                        conn.queue(cursor_msg::SET, &set_body(&now));
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
