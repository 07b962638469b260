//! Data-stage channel tasks. `run` picks the channel by type; each one returns when
//! the client leaves, misbehaves, or the session is closed.

pub mod conn;
pub mod cursor;
pub mod display;
pub mod inputs;
pub mod main;
pub mod region;

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::link::LinkRequest;
use crate::proto::channel as ch;
use crate::server::{BoxStream, Registration, Shared};
use conn::{Conn, Violation};

/// Why a channel task ended.
pub enum End {
    /// Client closed, or the session was replaced / the server stopped.
    Closed,
    /// Socket error.
    Io(std::io::Error),
    /// Malformed or unexpected message.
    Protocol(Violation),
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> End {
        End::Io(e)
    }
}

impl From<Violation> for End {
    fn from(v: Violation) -> End {
        End::Protocol(v)
    }
}

/// Largest message body accepted per channel. MAIN carries agent data (≤ 2048 per
/// message in practice); the others only small fixed messages.
fn max_body(channel_type: u8) -> usize {
    match channel_type {
        ch::MAIN => 64 * 1024,
        _ => 4096,
    }
}

pub async fn run(
    shared: &Arc<Shared>,
    stream: BoxStream,
    req: &LinkRequest,
    session_id: u32,
    kill: watch::Receiver<bool>,
    reg: &Registration,
) {
    let name = match req.channel_type {
        ch::MAIN => "main",
        ch::DISPLAY => "display",
        ch::INPUTS => "inputs",
        _ => "cursor",
    };
    let mut conn = Conn::new(
        stream,
        req.mini_header(),
        max_body(req.channel_type),
        kill,
        name,
    );
    let result = match req.channel_type {
        ch::MAIN => main::run(shared, &mut conn, session_id, reg).await,
        ch::DISPLAY => display::run(shared, &mut conn, req, reg).await,
        ch::INPUTS => inputs::run(shared, &mut conn, reg).await,
        _ => cursor::run(&mut conn, reg).await,
    };
    let end = result.err().unwrap_or(End::Closed);
    match end {
        End::Closed => debug!(channel = name, "SPICE channel closed"),
        End::Io(e) => debug!(channel = name, "SPICE channel I/O ended: {e}"),
        End::Protocol(v) => warn!(channel = name, "SPICE client protocol error: {}", v.0),
    }
    conn.close().await;
}

pub enum Next {
    /// A channel-specific message.
    Msg(u16, Vec<u8>),
    /// A base message was handled (an ACK may have opened the window).
    Base,
    /// The client left or the session was closed.
    Closed,
}

/// Receives the next message, handling base messages and framing errors.
pub async fn next_message(conn: &mut Conn) -> Result<Next, End> {
    match conn.recv().await {
        None => Ok(Next::Closed),
        Some(conn::Inbound::Bad(why)) => Err(End::Protocol(conn::violation(why))),
        Some(conn::Inbound::Msg(t, body)) => {
            if conn.handle_base(t, &body)? {
                Ok(Next::Base)
            } else {
                Ok(Next::Msg(t, body))
            }
        }
    }
}
