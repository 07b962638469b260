//! Data-stage channels, as plug-ins. Each channel kind is one module with a type
//! implementing [`ChannelKind`]: its channel type, the ids a session may link,
//! its capabilities, its message size limit and its task, plus the state it owns
//! (the display its surfaces, inputs its port and LED state, main its agent
//! relay). The server's [`Registry`] holds the kinds built for its ports, and the
//! link stage's capabilities, CHANNELS_LIST, the size limits and dispatch all come
//! from it; a (type, id) it does not hold is refused at link time.

pub mod agent;
pub mod agent_filter;
pub mod conn;
pub mod cursor;
pub mod cursor_cache;
pub mod display;
pub mod display_wire;
pub mod doorbell;
pub mod image_choice;
pub mod inputs;
pub mod link_meter;
pub mod main;
pub mod pixmap_cache;
pub mod playback;
pub mod port;
pub mod record;
pub mod region;
pub mod registry;
pub mod session_link;
pub mod stream;
pub mod stream_rate;
pub mod stream_wire;
pub mod usbredir;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::clients::Registration;
use crate::link::LinkRequest;
use crate::server::BoxStream;
use conn::{Conn, Violation};
pub use registry::Registry;

/// Message size limit for channels that declare none: their client messages
/// are small and fixed.
pub const DEFAULT_MAX_MESSAGE: usize = 4096;

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

/// The multimedia clock's value at the server's start (spice-server's clock
/// is the host's monotonic milliseconds, far from zero too).
pub const MM_TIME_START: u32 = 1000;

/// spice-server's MM_TIME_DELTA: how far behind the server's clock MAIN_INIT
/// sets the client's (until audio plays: spice-gtk then derives its session
/// clock from the playback DATA stamps).
pub const MM_TIME_DELTA: u32 = 400;

/// What every channel task may know of its server.
pub struct ServerInfo {
    /// Epoch of the multimedia clock (MAIN_INIT.multi_media_time).
    pub epoch: Instant,
    /// CHANNELS_LIST: every registered (type, id) but MAIN's.
    pub channels: Vec<(u8, u8)>,
}

impl ServerInfo {
    pub fn mm_time(&self) -> u32 {
        self.mm_time_at(Instant::now())
    }

    /// The multimedia time of `at`: milliseconds since the epoch, wrapping,
    /// from MM_TIME_START so that MAIN_INIT's value (400 ms earlier) never
    /// wraps below zero in a session's first moments.
    pub fn mm_time_at(&self, at: Instant) -> u32 {
        (at.saturating_duration_since(self.epoch).as_millis() as u32).wrapping_add(MM_TIME_START)
    }
}

/// A linked channel, handed to its kind's task.
pub struct Link<'a> {
    pub conn: &'a mut Conn,
    pub req: &'a LinkRequest,
    pub reg: &'a Registration,
    pub session_id: u32,
    pub server: &'a ServerInfo,
}

pub type ChannelTask<'a> = Pin<Box<dyn Future<Output = Result<(), End>> + Send + 'a>>;

/// One kind of channel.
pub trait ChannelKind: Send + Sync + 'static {
    /// SPICE channel type (`proto::channel`).
    fn channel_type(&self) -> u8;
    /// For logs.
    fn name(&self) -> &'static str;
    /// The channel ids a session may link, each once. A kind the protocol allows
    /// several of (display per head, usbredir, port) lists them all.
    fn ids(&self) -> Vec<u8> {
        vec![0]
    }
    /// Channel capabilities advertised in the link reply.
    fn caps(&self) -> Vec<u32> {
        Vec::new()
    }
    /// Largest client message body accepted; a bigger one closes the channel.
    fn max_message(&self) -> usize {
        DEFAULT_MAX_MESSAGE
    }
    /// Whether the task wants the socket's direct handle (`Conn::take_direct`)
    /// when the carrier is plain.
    fn direct_writes(&self) -> bool {
        false
    }
    /// Serves one linked channel until the client leaves, misbehaves or the
    /// session ends.
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a>;
}

/// Runs a linked channel's task on its connection, then closes it. `direct`:
/// a dup of a plain carrier's socket (see [`conn::DirectSocket`]).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    kind: &dyn ChannelKind,
    stream: BoxStream,
    direct: Option<conn::DirectSocket>,
    req: &LinkRequest,
    session_id: u32,
    session_link: Arc<session_link::SessionLink>,
    kill: watch::Receiver<bool>,
    reg: &Registration,
    server: &ServerInfo,
) {
    let name = kind.name();
    let mut conn = Conn::new(stream, req.mini_header(), kind.max_message(), kill, name);
    // Other channels let the second descriptor go at once.
    conn.set_direct(direct.filter(|_| kind.direct_writes()));
    conn.set_stats(reg.stats.clone());
    conn.set_session_link(session_link);
    let result = kind
        .run(Link {
            conn: &mut conn,
            req,
            reg,
            session_id,
            server,
        })
        .await;
    match result.err().unwrap_or(End::Closed) {
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
