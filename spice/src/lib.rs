//! spice: a SPICE (protocol 2.2) server for spicebox, plus a test client.
//!
//! # Architecture
//!
//! [`SpiceServer::start`] binds the TCP or unix listener, starts a small tokio
//! runtime on background threads and a key thread that keeps a few RSA-1024 keys
//! ready. Every accepted connection (at most 32 in the link stage; TCP keepalive on)
//! runs the link stage (`link.rs`: header checks, SpiceLinkReply with a public key
//! used for this link only, so a captured ticket cannot be replayed; auth mechanism;
//! RSA-OAEP ticket, decrypted with blinding, compared in constant time, a refusal
//! answered after 200 ms).
//!
//! # Channels and ports
//!
//! The server is built with the [`Ports`] of its machine (`port.rs`: input, agent,
//! display heads; audio and byte-stream ports are defined for the channels of later
//! devices). Each channel kind is one module in `channel/` implementing
//! `channel::ChannelKind` (type, ids, capabilities, message size limit, task) and
//! owning its state; `channel::Registry` holds the kinds built for the ports (a
//! channel exists only when its port does), and the link stage's capabilities,
//! CHANNELS_LIST, size limits and dispatch all derive from it. A session links each
//! (type, id) the registry offers once: several displays (one per head), one
//! inputs. Every task runs on `channel/conn.rs`, which frames messages (mini or full
//! header), bounds their size, runs the ack window and handles base messages, and
//! measures the link (`channel/link_meter.rs`: PING/PONG net test, ack delivery
//! rates) and counts the traffic (`stats.rs`) for `clients()`. A malformed
//! message closes only its channel.
//!
//! The caller is never blocked by a client: [`SpiceServer::update`] copies the dirty
//! rectangles of the newest frame into the head's own copy and merges them into each
//! display client's pending region (a short mutex hold, no I/O), then wakes the
//! client's task. That task sends DRAW_COPYs of the *current* pixels while the
//! client's ack window has room, so a slow client sees fewer, fresher frames and
//! memory stays bounded whatever it does. Guest LED changes arrive the same way,
//! pushed through the input port's notifier.
//!
//! # Transports and authentication
//!
//! Before the link stage, `transport/` takes each connection from `accept()` to the
//! SPICE magic: TLS on the second listener (rustls, `--spice-tls`), and on either
//! listener a connection starting `GET ` is HTTP: a WebSocket upgrade carries SPICE
//! (spice-html5 without websockify), anything else gets the browser page or a
//! spice-html5 file. Channels in `TransportConfig::secure_channels` refuse plaintext
//! with NEED_SECURED. With SASL (`sasl/`, PLAIN and SCRAM-SHA-256 from `rsasl`, TLS
//! only) the link stage runs the Cyrus-compatible SASL exchange instead of the ticket.
//!
//! Images are LZ4 when the client announced LZ4_COMPRESSION, else SPICE LZ, and a raw
//! top-down 32-bit bitmap when compression does not help or [`Config::force_raw_images`]
//! is set (see `codec.rs`). Photo-like images may go as JPEG ([`JpegMode`]).
//!
//! # Several clients
//!
//! Like spice-server without `SPICE_DEBUG_ALLOW_MC`: one session at a time. A new MAIN
//! channel connection replaces the current session; every channel of the old session
//! is closed (an orderly TCP shutdown, a Disconnected event per channel). Other
//! channels join a session by its id (MAIN_INIT.session_id), else BAD_CONNECTION_ID.
//! When a session's MAIN channel closes, its other channels close too.

mod auth;
mod channel;
mod clients;
mod codec;
mod cursor_shape;
mod header;
pub mod image;
mod link;
mod opus;
mod pcm;
pub mod port;
pub mod proto;
pub mod sasl;
mod server;
mod stats;
pub mod transport;
mod wire;

#[cfg(any(test, feature = "test-client"))]
pub mod client;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;

pub use channel::cursor::CursorUpdate;
pub use channel::link_meter::SLOW_BPS as SLOW_LINK_BPS;
pub use display_types::{
    BitsCopy, BlendMode, CursorShape, Draw, Frame, ImageBlend, ImageCopy, Monitor, MonitorLayout,
    Rect, SolidFill,
};
pub use server::SpiceServer;
pub use stats::{ChannelStats, LiveStream, CODECS};
pub use transport::{ChannelSet, TlsListen, TransportConfig};

use std::sync::Arc;

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

pub struct Config {
    pub listen: Listen,
    /// None = ticketing disabled (any client may connect).
    pub password: Option<String>,
    /// Always send raw bitmaps (debugging, or clients without LZ support).
    pub force_raw_images: bool,
    /// Opus on the playback channel for clients that announce it (as
    /// spice-server's playback-compression, on by default); off: always raw.
    pub playback_compression: bool,
    /// When photo-like images may be sent as JPEG (QEMU's jpeg-wan-compression).
    pub jpeg: JpegMode,
    /// Video streams (QEMU's streaming-video).
    pub streaming_video: StreamingVideo,
    /// Lossless image codecs (QEMU's image-compression, zlib-glz-wan-compression).
    pub images: ImageOptions,
    /// TLS listener, secure channels, SASL, the browser page.
    pub transport: TransportConfig,
}

/// The machine's side of the server: which channels exist follows from which
/// ports are given (see `port.rs`).
#[derive(Clone, Default)]
pub struct Ports {
    /// Display heads, each a DISPLAY and a CURSOR channel (ids 0..n), fed by
    /// [`SpiceServer::update_head`]. 0: no display channels.
    pub display_heads: u8,
    /// The guest's keyboard and pointers: the INPUTS channel.
    pub input: Option<Arc<dyn port::InputPort>>,
    /// The guest agent: MAIN offers the agent (and its tokens) only with one.
    pub agent: Option<Arc<dyn port::AgentPort>>,
    /// Named byte streams (the spicevmc family); usbredir streams become the
    /// USBREDIR channels, ids 0..n in this order.
    pub streams: Vec<Arc<dyn port::StreamPort>>,
    /// The sound card's output: the PLAYBACK channel.
    pub audio_out: Option<Arc<dyn port::AudioOutPort>>,
    /// The sound card's input: the RECORD channel.
    pub audio_in: Option<Arc<dyn port::AudioInPort>>,
    /// The display device's client monitors config (QXL): MAIN hands it the
    /// clients' VD_AGENT_MONITORS_CONFIG while the guest's driver takes them.
    pub monitors_config: Option<Arc<dyn port::MonitorsConfigPort>>,
}

/// When photo-like images may go lossy (JPEG); text and UI never do. As
/// QEMU's `jpeg-wan-compression`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JpegMode {
    /// Only to a client on a slow link: one whose estimated bandwidth is
    /// under 10 Mbit/s (spice-server's threshold), measured per display
    /// channel at connect and kept current from its traffic
    /// (`channel/link_meter.rs`).
    #[default]
    Auto,
    /// To every client.
    Always,
    /// Never: every image is lossless.
    Never,
}

/// Which areas redrawn at a steady rate go as MJPEG video streams (QEMU's
/// `streaming-video`). Streams are lossy: none with [`JpegMode::Never`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamingVideo {
    /// No streams.
    Off,
    /// Every steady area of at least 96x96 pixels.
    All,
    /// Those whose frames are photo-like often enough (a fifth of them).
    #[default]
    Filter,
}

/// Which lossless codec images go in, as QEMU's `image-compression` (without
/// QUIC, which is not implemented). JPEG (`JpegMode`) is only considered in
/// the auto modes, as spice-server does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageCompression {
    /// GLZ for clients that announce a GLZ window (spice-gtk; not
    /// spice-html5), else SPICE LZ; LZ4 where those did poorly (photo-like
    /// content) and the client takes it; JPEG per `JpegMode`.
    #[default]
    AutoGlz,
    /// As AutoGlz without GLZ: SPICE LZ first.
    AutoLz,
    /// GLZ (SPICE LZ for clients without a window).
    Glz,
    /// SPICE LZ only.
    Lz,
    /// LZ4 (SPICE LZ for clients without the LZ4 capability).
    Lz4,
    /// Raw bitmaps.
    Off,
}

/// When GLZ images are wrapped in zlib (ZLIB_GLZ_RGB), as QEMU's
/// `zlib-glz-wan-compression`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WanCompression {
    /// For a client on a slow link (under 10 Mbit/s by its display
    /// channel's estimate), as spice-server's auto.
    #[default]
    Auto,
    Always,
    Never,
}

/// The image codec settings of a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageOptions {
    pub compression: ImageCompression,
    pub zlib_glz: WanCompression,
}

/// When the password stops being accepted (checked at link time, as spice-server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Never,
    Now,
    At(std::time::SystemTime),
}

#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub host: String,
    pub port: u16,
    /// "ipv4" | "ipv6" | "unix"
    pub family: String,
    pub connection_id: u32,
    pub channel_type: u8,
    pub channel_id: u8,
    pub tls: bool,
    /// Traffic and link estimate, in `SpiceServer::clients()` (None in events).
    pub stats: Option<ChannelStats>,
}

/// Per channel, as QEMU's SPICE_CONNECTED / SPICE_INITIALIZED / SPICE_DISCONNECTED.
#[derive(Clone, Debug)]
pub enum SpiceEvent {
    Connected {
        server: ClientInfo,
        client: ClientInfo,
    },
    Initialized {
        client: ClientInfo,
    },
    Disconnected {
        client: ClientInfo,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the SPICE runtime: {0}")]
    Runtime(std::io::Error),
    #[error("RSA: {0}")]
    Crypto(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("link refused with error {0}")]
    LinkRefused(u32),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("server configuration: {0}")]
    Config(String),
    #[error("{}: {reason}", path.display())]
    X509 {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("SASL: {0}")]
    Sasl(String),
    #[error("SASL users file {}: {reason}", path.display())]
    SaslUsers {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("Opus: {0}")]
    Opus(String),
}

#[cfg(test)]
mod tests;
