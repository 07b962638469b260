//! One linked channel connection in the data stage: a reader task that frames and
//! bounds incoming messages, the writer half, the ack window and base messages
//! (ACK_SYNC, ACK, PONG, DISCONNECTING) common to every channel. Every message
//! written is counted (`LiveStats`) and measured (`LinkMeter`: acks and PONGs
//! make the link's estimate).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::link_meter::{LinkMeter, PingKind, PingOut};
use super::session_link::{Estimate, SessionLink};
use crate::header::Framing;
use crate::proto::{msg, msgc};
use crate::server::BoxStream;
use crate::stats::LiveStats;
use crate::wire::{Reader, Writer};

/// The window spice-server asks for on display and cursor channels.
pub const ACK_WINDOW: u32 = 20;

/// The most output buffer capacity a connection keeps between flushes.
const KEPT_OUT: usize = 1 << 20;

/// Incoming messages queued from the reader task. Small: the reader simply stops
/// reading (TCP back-pressure) when a channel task is busy.
const INBOUND_QUEUE: usize = 16;

pub enum Inbound {
    Msg(u16, Vec<u8>),
    /// Framing-level violation (oversized message): the channel must close.
    Bad(String),
}

/// A protocol violation that closes the channel (never the server).
#[derive(Debug)]
pub struct Violation(pub String);

pub fn violation(s: impl Into<String>) -> Violation {
    Violation(s.into())
}

/// The server side of the ack window (spice-server `RedChannelClient` ack data).
struct Ack {
    generation: u32,
    client_generation: u32,
    unacked: u32,
}

/// A second handle on a plain (no TLS, no WebSocket) connection's socket, for
/// a channel whose writes come from other threads: one non-blocking write there
/// instead of waking the channel task to make it (see `channel/usbredir.rs`).
/// The socket stays owned by the connection; this is a dup of its descriptor.
#[derive(Debug)]
pub enum DirectSocket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl DirectSocket {
    /// What the socket took without blocking (tokio made it non-blocking; the
    /// dup shares that); `WouldBlock` when its buffer is full.
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        use std::io::Write;
        match self {
            DirectSocket::Tcp(s) => s.write(bytes),
            DirectSocket::Unix(s) => s.write(bytes),
        }
    }
}

pub struct Conn {
    rx: mpsc::Receiver<Inbound>,
    wr: WriteHalf<BoxStream>,
    /// The socket for direct writes, while no channel took it (plain carrier).
    direct: Option<DirectSocket>,
    framing: Framing,
    out: Vec<u8>,
    ack: Option<Ack>,
    kill: watch::Receiver<bool>,
    reader: tokio::task::JoinHandle<()>,
    pub name: &'static str,
    meter: LinkMeter,
    /// The session's net test result, published by the channel that ran it.
    session: Arc<SessionLink>,
    stats: Option<Arc<LiveStats>>,
    /// PONGs refused so far (the first is a warning, the rest debug lines).
    bad_pongs: u64,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The read half keeps the socket open; stop it with the channel.
        self.reader.abort();
    }
}

impl Conn {
    /// Splits the stream and starts the reader task. `max_body` bounds every incoming
    /// message of this channel type.
    pub fn new(
        stream: BoxStream,
        mini: bool,
        max_body: usize,
        kill: watch::Receiver<bool>,
        name: &'static str,
    ) -> Conn {
        let (rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let reader = tokio::spawn(read_loop(rd, Framing::new(mini), max_body, tx));
        Conn {
            rx,
            wr,
            direct: None,
            framing: Framing::new(mini),
            out: Vec::new(),
            ack: None,
            kill,
            reader,
            name,
            meter: LinkMeter::new(Instant::now()),
            session: Arc::default(),
            stats: None,
            bad_pongs: 0,
        }
    }

    /// Where this connection's traffic is counted.
    pub(crate) fn set_stats(&mut self, stats: Arc<LiveStats>) {
        self.stats = Some(stats);
    }

    pub fn stats(&self) -> Option<&LiveStats> {
        self.stats.as_deref()
    }

    /// The link's estimate.
    pub fn meter(&self) -> &LinkMeter {
        &self.meter
    }

    /// The session this connection belongs to shares its net test here.
    pub(crate) fn set_session_link(&mut self, link: Arc<SessionLink>) {
        self.session = link;
    }

    pub fn session_link(&self) -> &Arc<SessionLink> {
        &self.session
    }

    /// Starts from the session's net test result if this connection's meter
    /// knows nothing yet; true if it did.
    pub fn adopt_session_estimate(&mut self) -> bool {
        let Some(e) = self.session.get() else {
            return false;
        };
        let adopted = self.meter.adopt(e, Instant::now());
        if adopted {
            debug!(channel = self.name, bps = e.bandwidth, latency = ?e.latency, "link estimate from the session's net test");
            self.publish_estimate();
        }
        adopted
    }

    /// A video stream report's delivery sample (see
    /// `LinkMeter::stream_delivered`).
    pub fn stream_delivered(&mut self, bytes: u64, secs: f64, saturated: bool) {
        self.meter.stream_delivered(bytes, secs, saturated);
        self.publish_estimate();
    }

    /// Queues the net test's PINGs (see `link_meter`).
    pub fn queue_net_test(&mut self) {
        for p in self.meter.start_net_test(Instant::now()) {
            self.queue_ping(p);
        }
    }

    /// Queues the net test again if the meter wants it, else a latency probe
    /// if one is due.
    pub fn queue_probe_if_due(&mut self) {
        let now = Instant::now();
        if self.meter.retest_due(now) {
            self.queue_net_test();
        } else if self.meter.probe_due(now) {
            let p = self.meter.probe(now);
            self.queue_ping(p);
        }
    }

    fn queue_ping(&mut self, p: PingOut) {
        let mut w = Writer::with_capacity(12 + p.payload);
        w.u32(p.id).u64(p.timestamp).bytes(&vec![0u8; p.payload]);
        self.queue(msg::PING, &w.finish());
    }

    fn publish_estimate(&self) {
        if let Some(s) = &self.stats {
            s.estimate(self.meter.bandwidth(), self.meter.latency());
        }
    }

    /// The socket's second handle, for a plain carrier (see [`DirectSocket`]).
    pub(crate) fn set_direct(&mut self, direct: Option<DirectSocket>) {
        self.direct = direct;
    }

    /// Takes the direct handle, if the carrier is plain and the framing is the
    /// mini header (the only one with no per-message state to share).
    pub fn take_direct(&mut self) -> Option<DirectSocket> {
        if !self.framing.is_mini() {
            return None;
        }
        self.direct.take()
    }

    /// Bytes already framed (the rest of a message a direct write began),
    /// written before anything queued after them.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Frames a message into the output buffer; `flush` writes it.
    pub fn queue(&mut self, msg_type: u16, body: &[u8]) {
        let before = self.out.len();
        self.framing.encode(&mut self.out, msg_type, body);
        let bytes = self.out.len() - before;
        if let Some(a) = &mut self.ack {
            a.unacked += 1;
        }
        self.meter.sent(Instant::now(), bytes, self.ack.is_some());
        if let Some(s) = &self.stats {
            s.message(bytes);
        }
    }

    /// Writes everything queued. Gives up as soon as the session is killed, so a
    /// client that stopped reading cannot keep a replaced session alive.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // Taken, so a flush cancelled halfway never writes its bytes twice.
        let mut out = std::mem::take(&mut self.out);
        let mut kill = self.kill.clone();
        let r = tokio::select! {
            r = async {
                self.wr.write_all(&out).await?;
                self.wr.flush().await
            } => r,
            _ = wait_killed(&mut kill) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "session closed")),
        };
        // Written: the buffer comes back for the next messages. A MAIN
        // channel relaying agent data flushes up to 320 KiB at a time; a
        // fresh buffer each time grew by doubling through new pages.
        if r.is_ok() && self.out.is_empty() && out.capacity() <= KEPT_OUT {
            out.clear();
            self.out = out;
        }
        r
    }

    pub async fn send(&mut self, msg_type: u16, body: &[u8]) -> io::Result<()> {
        self.queue(msg_type, body);
        self.flush().await
    }

    /// Starts ack-window flow control: SET_ACK{generation, window}.
    pub fn queue_set_ack(&mut self) {
        let generation = self.ack.as_ref().map_or(1, |a| a.generation + 1);
        let mut w = Writer::new();
        w.u32(generation).u32(ACK_WINDOW);
        self.queue(msg::SET_ACK, &w.finish());
        // SET_ACK itself is not counted by the client, so it is not counted here.
        self.meter.reset_acks();
        self.ack = Some(Ack {
            generation,
            client_generation: 0,
            unacked: 0,
        });
    }

    /// May one more message be sent? spice-server stops at twice the window.
    pub fn window_open(&self) -> bool {
        self.ack.as_ref().is_none_or(|a| a.unacked < 2 * ACK_WINDOW)
    }

    /// The next inbound item; None when the client left or the session was closed.
    pub async fn recv(&mut self) -> Option<Inbound> {
        tokio::select! {
            m = self.rx.recv() => m,
            _ = wait_killed(&mut self.kill) => None,
        }
    }

    /// Handles base messages. Ok(true) = consumed, Ok(false) = a channel message.
    pub fn handle_base(&mut self, t: u16, body: &[u8]) -> Result<bool, Violation> {
        let mut r = Reader::new(body);
        match t {
            msgc::ACK_SYNC => {
                let g = r.u32().ok_or_else(|| violation("short ACK_SYNC"))?;
                if let Some(a) = &mut self.ack {
                    a.client_generation = g;
                }
            }
            msgc::ACK => {
                if let Some(a) = &mut self.ack {
                    // Acks from before the latest SET_ACK do not count (spice-server rule).
                    if a.client_generation == a.generation {
                        a.unacked = a.unacked.saturating_sub(ACK_WINDOW);
                        self.meter.acked(Instant::now(), ACK_WINDOW);
                        self.publish_estimate();
                    }
                }
            }
            msgc::PONG => self.pong(&mut r),
            msgc::DISCONNECTING => debug!(channel = self.name, "client says it is disconnecting"),
            // MIGRATE_FLUSH_MARK / MIGRATE_DATA: no migration here; harmless to ignore.
            4 | 5 => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A PONG: counts if it answers a PING of ours with its timestamp; any
    /// other is the client's mistake (or malice), logged and ignored.
    fn pong(&mut self, r: &mut Reader) {
        let result = match (r.u32(), r.u64()) {
            (Some(id), Some(ts)) => self
                .meter
                .pong(Instant::now(), id, ts)
                .map_err(|e| format!("{e:?}")),
            _ => Err("short PONG".to_string()),
        };
        match result {
            Ok(kind) => {
                self.publish_estimate();
                if let (PingKind::Rate, Some(bandwidth)) = (kind, self.meter.bandwidth()) {
                    let latency = self.meter.latency();
                    debug!(
                        channel = self.name,
                        bps = bandwidth,
                        ?latency,
                        "net test done"
                    );
                    self.session.publish(Estimate { bandwidth, latency });
                }
            }
            Err(why) => {
                self.bad_pongs += 1;
                if self.bad_pongs == 1 {
                    warn!(channel = self.name, "PONG ignored: {why}");
                } else {
                    debug!(
                        channel = self.name,
                        count = self.bad_pongs,
                        "PONG ignored: {why}"
                    );
                }
            }
        }
    }

    /// Orderly close: FIN after whatever was flushed.
    pub async fn close(&mut self) {
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(200), self.wr.shutdown()).await;
    }
}

async fn wait_killed(kill: &mut watch::Receiver<bool>) {
    // A dropped sender also means the session is gone.
    let _ = kill.wait_for(|k| *k).await;
}

async fn read_loop(
    mut rd: ReadHalf<BoxStream>,
    mut framing: Framing,
    max_body: usize,
    tx: mpsc::Sender<Inbound>,
) {
    let mut hdr = [0u8; crate::header::FULL_HEADER_SIZE];
    loop {
        let hs = framing.header_size();
        if rd.read_exact(&mut hdr[..hs]).await.is_err() {
            return;
        }
        let (t, size) = framing.decode(&hdr[..hs]);
        tracing::debug!(target: "usbtime", size, "header");
        if size as usize > max_body {
            warn!(
                msg_type = t,
                size, max_body, "oversized message from client"
            );
            let _ = tx
                .send(Inbound::Bad(format!("message {t} of {size} bytes")))
                .await;
            return;
        }
        let mut body = vec![0u8; size as usize];
        if rd.read_exact(&mut body).await.is_err() {
            return;
        }
        if tx.send(Inbound::Msg(t, body)).await.is_err() {
            return;
        }
    }
}
