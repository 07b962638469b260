//! CURSOR channel: SET_ACK, then CURSOR_INIT with the default arrow, visible, at (0,0).
//! The guest cursor is not forwarded yet; afterwards only base messages are handled.

use super::conn::Conn;
use super::{next_message, End, Next};
use crate::cursor_shape;
use crate::proto::{cursor_msg, CURSOR_TYPE_ALPHA};
use crate::server::Registration;
use crate::wire::Writer;

/// Cache id of the one cursor shape we ever send (no CACHE_ME flag, so unused by clients).
const ARROW_UNIQUE: u64 = 1;

pub fn init_body() -> Vec<u8> {
    let mut w = Writer::new();
    w.i16(0)
        .i16(0) // position
        .u16(0)
        .u16(0) // trail length, frequency
        .u8(1) // visible
        .u16(0) // cursor flags: a shape follows, not cached
        .u64(ARROW_UNIQUE)
        .u8(CURSOR_TYPE_ALPHA)
        .u16(cursor_shape::WIDTH)
        .u16(cursor_shape::HEIGHT)
        .u16(0)
        .u16(0) // hot spot: the tip
        .bytes(&cursor_shape::arrow());
    w.finish()
}

pub async fn run(conn: &mut Conn, reg: &Registration) -> Result<(), End> {
    conn.queue_set_ack();
    conn.queue(cursor_msg::INIT, &init_body());
    conn.flush().await?;
    reg.initialized();
    loop {
        match next_message(conn).await? {
            Next::Closed => return Ok(()),
            Next::Base => {}
            Next::Msg(t, _) => tracing::debug!(msg_type = t, "ignoring cursor message"),
        }
    }
}
