//! WebSocket on the SPICE port (RFC 6455), as spice-server does it since 0.14.3:
//! an HTTP upgrade on the same listener, then SPICE inside binary messages, so
//! spice-html5 needs no websockify. The upgrade answer is ours (the request was
//! already read and bounded by `http`); tungstenite does the framing, masking
//! checks and size limits.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

use super::http::{self, Request};

/// Largest message (and frame) a client may send: SPICE client messages are small
/// (the biggest, agent data on MAIN, is bounded at 64 KiB by the channel).
pub const MAX_CLIENT_MESSAGE: usize = 256 * 1024;

pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

/// Does the request ask for a WebSocket?
pub fn is_upgrade(req: &Request) -> bool {
    req.header_has_token("Upgrade", "websocket")
}

/// Why an upgrade request is refused: (HTTP status, reason for the log and the body).
pub type Refusal = (u16, &'static str);

/// Checks an upgrade request and builds the 101 answer.
///
/// `Origin`, when a browser sends it, must name the host the request was sent to:
/// a page from another site must not drive the VM through the user's browser.
pub fn accept(req: &Request, secure: bool) -> Result<Vec<u8>, Refusal> {
    if !req.header_has_token("Connection", "upgrade") {
        return Err((400, "Upgrade without Connection: upgrade"));
    }
    if req.header("Sec-WebSocket-Version") != Some("13") {
        return Err((426, "only WebSocket version 13 is spoken here"));
    }
    let key = req
        .header("Sec-WebSocket-Key")
        .filter(|k| k.len() == 24 && k.ends_with("=="))
        .ok_or((400, "missing or malformed Sec-WebSocket-Key"))?;
    if let Some(origin) = req.header("Origin") {
        let host = req.header("Host").ok_or((400, "no Host header"))?;
        if !same_origin(origin, host, secure) {
            return Err((403, "cross-origin WebSocket refused"));
        }
    }
    let accept = derive_accept_key(key.as_bytes());
    let mut headers = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept.as_str()),
    ];
    // spice-html5 asks for "binary"; answer with it only when asked (RFC 6455 4.2.2).
    if req.header_has_token("Sec-WebSocket-Protocol", "binary") {
        headers.push(("Sec-WebSocket-Protocol", "binary"));
    }
    Ok(http::response(101, &headers, b""))
}

/// Origin `scheme://host[:port]` against the Host header the request carries.
fn same_origin(origin: &str, host: &str, secure: bool) -> bool {
    let scheme = if secure { "https://" } else { "http://" };
    let Some(rest) = origin.strip_prefix(scheme) else {
        return false;
    };
    let default_port = if secure { ":443" } else { ":80" };
    let norm = |h: &str| {
        let h = h.to_ascii_lowercase();
        h.strip_suffix(default_port)
            .map(str::to_string)
            .unwrap_or(h)
    };
    norm(rest) == norm(host)
}

/// A WebSocket carrying a byte stream: each write is one binary message; reads
/// concatenate binary messages. Text messages are a protocol error; ping, pong and
/// close are handled by tungstenite.
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// After the 101 answer was written; `part` is anything the client sent after its
    /// request head.
    pub async fn new(stream: S, part: Vec<u8>) -> WsStream<S> {
        let ws =
            WebSocketStream::from_partially_read(stream, part, Role::Server, Some(config())).await;
        WsStream {
            ws,
            pending: Bytes::new(),
        }
    }
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Io(e) => e,
        E::ConnectionClosed | E::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {other}")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "WebSocket text message (SPICE travels in binary messages)",
                    )))
                }
                // Pings are answered by tungstenite; pongs need nothing.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(ws_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_error)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_error)?;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_error)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(ws_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: &str) -> Request {
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:5930\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        http::parse(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn accepts_as_rfc6455_says() {
        let r = req("Sec-WebSocket-Protocol: binary\r\n");
        assert!(is_upgrade(&r));
        let out = String::from_utf8(accept(&r, false).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        // The RFC's own example key and answer.
        assert!(out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(out.contains("Sec-WebSocket-Protocol: binary\r\n"));
        assert!(out.ends_with("\r\n\r\n"));
        let out = String::from_utf8(accept(&req(""), false).unwrap()).unwrap();
        assert!(!out.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn refuses_bad_upgrades_and_other_origins() {
        let bad_version = req("").headers.into_iter().map(|(n, v)| {
            if n == "Sec-WebSocket-Version" {
                (n, "8".to_string())
            } else {
                (n, v)
            }
        });
        let r = Request {
            method: "GET".into(),
            path: "/".into(),
            headers: bad_version.collect(),
        };
        assert_eq!(accept(&r, false).unwrap_err().0, 426);
        assert_eq!(
            accept(&req("Origin: http://evil.example\r\n"), false)
                .unwrap_err()
                .0,
            403
        );
        assert!(accept(&req("Origin: http://127.0.0.1:5930\r\n"), false).is_ok());
        assert_eq!(
            accept(&req("Origin: http://127.0.0.1:5930\r\n"), true)
                .unwrap_err()
                .0,
            403,
            "an http page must not drive the https port"
        );
        assert!(same_origin("https://h", "h:443", true));
        assert!(same_origin("http://H:80", "h", false));
    }

    #[tokio::test]
    async fn byte_stream_over_binary_messages() {
        use futures_util::{SinkExt, StreamExt};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, b) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move {
            let mut s = WsStream::new(a, Vec::new()).await;
            let mut got = [0u8; 11];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(b"pong").await.unwrap();
            s.flush().await.unwrap();
            // A text message is refused.
            let mut one = [0u8; 1];
            let err = s.read(&mut one).await.unwrap_err();
            (got, err.kind())
        });
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        client.send(Message::binary(&b"hello"[..])).await.unwrap();
        client.send(Message::Ping(Bytes::new())).await.unwrap();
        client.send(Message::binary(&b" world"[..])).await.unwrap();
        let mut reply = Vec::new();
        while reply.len() < 4 {
            if let Message::Binary(b) = client.next().await.unwrap().unwrap() {
                reply.extend_from_slice(&b);
            }
        }
        assert_eq!(reply, b"pong");
        client.send(Message::text("hi")).await.unwrap();
        let (got, kind) = server.await.unwrap();
        assert_eq!(&got, b"hello world");
        assert_eq!(kind, io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn oversized_and_fragmented_messages_are_bounded() {
        use futures_util::SinkExt;
        use tokio::io::AsyncReadExt;
        let (a, b) = tokio::io::duplex(4 << 20);
        let server = tokio::spawn(async move {
            let mut s = WsStream::new(a, Vec::new()).await;
            let mut sink = Vec::new();
            s.read_to_end(&mut sink).await
        });
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let _ = client
            .send(Message::binary(vec![0u8; MAX_CLIENT_MESSAGE + 1]))
            .await;
        let err = server.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }
}
