//! What happens between `accept()` and the SPICE link stage.
//!
//! ```text
//! TCP ─┬─ plain listener ───────────────┐
//!      └─ TLS listener ── rustls accept ┤
//!                                        ├─ first 4 bytes "REDQ" (or anything else):
//!                                        │    SPICE link stage (a bad magic is answered there)
//!                                        └─ "GET ": one bounded HTTP request
//!                                             ├─ WebSocket upgrade: SPICE in binary messages
//!                                             └─ otherwise: the browser page or a
//!                                                spice-html5 file, then close
//! ```
//!
//! The whole of it runs inside the link stage's time limit and connection cap
//! (`server.rs`), so a stalled TLS handshake or a slow HTTP request costs one slot
//! for at most that long.

pub mod http;
mod rewind;
pub mod tls;
pub mod web;
pub mod websocket;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::server::BoxStream;
pub use rewind::Rewind;

/// Channel types as a set, for `--spice-secure-channels` (QEMU `tls-channel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelSet(u32);

/// Channel names as QEMU's `tls-channel` and spice-gtk's `secure-channels` spell them.
pub const CHANNEL_NAMES: &[(&str, u8)] = &[
    ("main", 1),
    ("display", 2),
    ("inputs", 3),
    ("cursor", 4),
    ("playback", 5),
    ("record", 6),
    ("smartcard", 8),
    ("usbredir", 9),
    ("port", 10),
    ("webdav", 11),
];

impl ChannelSet {
    pub const NONE: ChannelSet = ChannelSet(0);
    pub const ALL: ChannelSet = ChannelSet(u32::MAX);

    pub fn contains(self, channel_type: u8) -> bool {
        channel_type < 32 && self.0 & (1 << channel_type) != 0
    }

    pub fn insert(&mut self, channel_type: u8) {
        if channel_type < 32 {
            self.0 |= 1 << channel_type;
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `all`, or comma-separated channel names (`main,display`).
    pub fn parse(s: &str) -> Result<ChannelSet, String> {
        if s == "all" {
            return Ok(ChannelSet::ALL);
        }
        let mut set = ChannelSet::NONE;
        for name in s.split(',') {
            let ty = CHANNEL_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| *t)
                .ok_or_else(|| {
                    let known: Vec<_> = CHANNEL_NAMES.iter().map(|(n, _)| *n).collect();
                    format!(
                        "unknown SPICE channel '{name}': use all or {}",
                        known.join(",")
                    )
                })?;
            set.insert(ty);
        }
        Ok(set)
    }
}

/// The TLS listener (QEMU `tls-port` and `x509-dir`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListen {
    pub listen: std::net::SocketAddr,
    /// Holds ca-cert.pem, server-cert.pem and server-key.pem.
    pub x509_dir: PathBuf,
}

/// How clients may reach the server beyond plain SPICE over TCP.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub tls: Option<TlsListen>,
    /// Channels that refuse plaintext with NEED_SECURED (all of them with SASL).
    pub secure_channels: ChannelSet,
    /// SASL (PLAIN, SCRAM-SHA-256 over TLS) replaces the password ticket.
    pub sasl: Option<Arc<crate::sasl::Users>>,
    /// Where spice-html5 is installed, for the page on `GET /`; None turns the page
    /// off (WebSocket clients can still connect).
    pub spice_html5: Option<PathBuf>,
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            tls: None,
            secure_channels: ChannelSet::NONE,
            sasl: None,
            spice_html5: Some(PathBuf::from(web::DEFAULT_SPICE_HTML5)),
        }
    }
}

/// How a SPICE stream reached us; `secure()` is what NEED_SECURED checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    Tcp,
    Tls,
    WebSocket,
    SecureWebSocket,
}

impl Carrier {
    pub fn secure(self) -> bool {
        matches!(self, Carrier::Tls | Carrier::SecureWebSocket)
    }
}

/// The ready parts of the transport: the TLS acceptor and the page's files.
pub(crate) struct Transport {
    pub tls: Option<TlsAcceptor>,
    pub spice_html5: Option<PathBuf>,
}

pub(crate) enum Established {
    /// A stream for the link stage.
    Spice(BoxStream, Carrier),
    /// An HTTP request was answered (status, path); the connection is done.
    Page(u16, String),
}

/// Takes an accepted connection to the point where SPICE starts, or answers it.
/// Err is the reason for the log (the client was answered where that makes sense).
pub(crate) async fn establish(
    t: &Transport,
    stream: BoxStream,
    tls: bool,
) -> Result<Established, String> {
    let mut stream = if tls {
        let acceptor = t.tls.as_ref().ok_or("TLS listener without certificates")?;
        let s = acceptor
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Box::new(s) as BoxStream
    } else {
        stream
    };
    let mut magic = [0u8; 4];
    stream
        .read_exact(&mut magic)
        .await
        .map_err(|e| format!("closed before the SPICE magic: {e}"))?;
    if &magic != b"GET " {
        let carrier = if tls { Carrier::Tls } else { Carrier::Tcp };
        return Ok(Established::Spice(
            Box::new(Rewind::new(magic.to_vec(), stream)),
            carrier,
        ));
    }
    let (req, rest) = match http::read_request(&mut stream, magic.to_vec()).await {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                http::HttpError::TooLarge => Some(431),
                http::HttpError::Malformed(_) => Some(400),
                http::HttpError::Closed => None,
            };
            if let Some(status) = status {
                let _ = write_all(&mut stream, &http::error(status, &e.to_string())).await;
            }
            return Err(e.to_string());
        }
    };
    if websocket::is_upgrade(&req) {
        match websocket::accept(&req, tls) {
            Ok(answer) => {
                write_all(&mut stream, &answer)
                    .await
                    .map_err(|e| format!("WebSocket upgrade: {e}"))?;
                let ws = websocket::WsStream::new(stream, rest).await;
                let carrier = if tls {
                    Carrier::SecureWebSocket
                } else {
                    Carrier::WebSocket
                };
                Ok(Established::Spice(Box::new(ws), carrier))
            }
            Err((status, why)) => {
                let _ = write_all(&mut stream, &http::error(status, why)).await;
                Err(format!("WebSocket upgrade refused: {why}"))
            }
        }
    } else {
        let served = web::serve(&req, t.spice_html5.as_deref()).await;
        write_all(&mut stream, &served.bytes)
            .await
            .map_err(|e| format!("HTTP answer to {}: {e}", req.path))?;
        let _ = stream.shutdown().await;
        Ok(Established::Page(served.status, req.path))
    }
}

async fn write_all(s: &mut BoxStream, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_sets_parse_like_qemu() {
        let s = ChannelSet::parse("main,inputs").unwrap();
        assert!(s.contains(1) && s.contains(3) && !s.contains(2));
        assert!(ChannelSet::parse("all").unwrap().contains(9));
        assert!(ChannelSet::NONE.is_empty());
        let e = ChannelSet::parse("main,dispaly").unwrap_err();
        assert!(e.contains("dispaly") && e.contains("display"), "{e}");
        assert!(!ChannelSet::ALL.contains(200));
    }
}
