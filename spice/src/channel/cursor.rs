//! CURSOR channel, one id per display head: SET_ACK, then CURSOR_INIT with the
//! default arrow, visible, at (0,0). The guest cursor is not forwarded yet (that
//! needs QXL cursor commands); afterwards only base messages are handled.

use super::{next_message, ChannelKind, ChannelTask, Link, Next};
use crate::proto::{channel as ch, cursor_msg, CURSOR_TYPE_ALPHA};
use crate::wire::Writer;
use crate::{cursor_shape, CursorShape};

/// Cache id of the one cursor shape we ever send (no CACHE_ME flag, so unused by clients).
const ARROW_UNIQUE: u64 = 1;

pub struct CursorChannel {
    heads: u8,
    shape: CursorShape,
}

impl CursorChannel {
    pub fn new(heads: u8) -> CursorChannel {
        CursorChannel {
            heads,
            shape: cursor_shape::arrow(),
        }
    }
}

/// CURSOR_INIT showing `shape` (an ALPHA cursor, not cached) at (0, 0).
pub fn init_body(shape: &CursorShape) -> Vec<u8> {
    let mut w = Writer::new();
    w.i16(0)
        .i16(0) // position
        .u16(0)
        .u16(0) // trail length, frequency
        .u8(1) // visible
        .u16(0) // cursor flags: a shape follows, not cached
        .u64(ARROW_UNIQUE)
        .u8(CURSOR_TYPE_ALPHA)
        .u16(shape.width)
        .u16(shape.height)
        .u16(shape.hot_x)
        .u16(shape.hot_y)
        .bytes(&shape.bgra_bytes());
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
        (0..self.heads).collect()
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(async move {
            let conn = link.conn;
            conn.queue_set_ack();
            conn.queue(cursor_msg::INIT, &init_body(&self.shape));
            conn.flush().await?;
            link.reg.initialized();
            loop {
                match next_message(conn).await? {
                    Next::Closed => return Ok(()),
                    Next::Base => {}
                    Next::Msg(t, _) => tracing::debug!(msg_type = t, "ignoring cursor message"),
                }
            }
        })
    }
}
