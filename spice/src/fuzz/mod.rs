//! Entry points for cargo-fuzz (feature `fuzzing`; `fuzz/` outside the workspace).
//!
//! [`link`], [`transport`] and [`http`] (`connection.rs`) drive the stages before a
//! channel: the link stage against the registry below, TLS-less sniffing, HTTP and
//! WebSocket. [`channel_dispatch`] runs one registered channel kind's real task, on an
//! in-memory connection, over arbitrary client bytes: framing, size limits, base
//! messages and each kind's message handling, with the ports a machine has
//! (a display head with a picture, an input port, an agent port, a sound card
//! capturing). Whatever the
//! bytes, the task must neither panic nor outlive the client's end of stream.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::channel::display::DisplayChannel;
use crate::channel::{self, Registry, ServerInfo};
use crate::clients::{Clients, Registration};
use crate::link::LinkRequest;
use crate::port::{
    AgentLink, AgentPort, AudioInControl, AudioInPort, AudioOutPort, AudioOutSink,
    ClientMonitorsConfig, Full, InputPort, LedNotifier, MonitorsConfigPort, PcmFormat, StreamKind,
    StreamPort, StreamSink,
};
use crate::proto::common_cap;
use crate::server::BoxStream;
use crate::{ClientInfo, Frame, Ports, Rect};

mod connection;
pub use connection::{http, link, transport};

/// A record client's Opus DATA bodies, cut from `data` by a length byte
/// each, through one decoder as the RECORD channel keeps it: every packet
/// decodes to at most 120 ms of stereo or is refused, never a panic.
pub fn opus(data: &[u8]) {
    let Ok(mut decoder) = crate::opus::OpusDecoder::new() else {
        return;
    };
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (packet, tail) = tail.split_at(usize::from(len).min(tail.len()));
        if let Ok(pcm) = decoder.decode(packet) {
            assert!(pcm.len() <= 5760 * 2 && pcm.len() % 2 == 0);
        }
        rest = tail;
    }
}

/// Input and agent ports that take everything at once.
struct Sink {
    agent: Mutex<Option<AgentLink>>,
}

impl InputPort for Sink {
    fn key(&self, _: u16, _: bool) {}
    fn relative(&self, _: i32, _: i32, _: i32, _: u8) {}
    fn absolute(&self, _: u8, _: u32, _: u32, _: i32, _: u8) {}
    fn has_absolute(&self) -> bool {
        true
    }
    fn leds(&self) -> u8 {
        0
    }
    fn attach(&self, _: LedNotifier) {}
    fn detached(&self) {}
}

impl AgentPort for Sink {
    fn attach(&self, link: AgentLink) {
        link.set_connected(true);
        *self.agent.lock().unwrap_or_else(|e| e.into_inner()) = Some(link);
    }
    fn client_data(&self, data: &[u8]) {
        if let Some(link) = &*self.agent.lock().unwrap_or_else(|e| e.into_inner()) {
            link.consumed(1);
            let _ = link.send(data);
        }
    }
    fn client_attached(&self, _: bool) {}
    fn resume(&self) {}
}

/// A stream that echoes client bytes back as guest bytes, so the USBREDIR
/// channel's both directions (and LZ4) and the PORT channel's run under the
/// fuzzer.
struct EchoStream {
    kind: StreamKind,
    sink: Mutex<Option<Arc<dyn StreamSink>>>,
}

impl EchoStream {
    fn new(kind: StreamKind) -> Arc<EchoStream> {
        Arc::new(EchoStream {
            kind,
            sink: Mutex::new(None),
        })
    }
}

impl StreamPort for EchoStream {
    fn kind(&self) -> StreamKind {
        self.kind
    }
    fn name(&self) -> &str {
        match self.kind {
            StreamKind::Usbredir => "usbredir",
            _ => "org.fuzz.port.0",
        }
    }
    fn attach(&self, sink: Arc<dyn StreamSink>) {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    }
    fn client_data(&self, data: &[u8]) -> Result<(), Full> {
        if let Some(sink) = &*self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = sink.guest_data(data);
        }
        Ok(())
    }
    fn client_opened(&self, open: bool) {
        // A guest that opens its end when the client does: PORT_EVENTs too.
        if let Some(sink) = &*self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            sink.guest_opened(open);
        }
    }
    fn resume(&self) {}
}

/// The sound card: it captures at 44.1 kHz from the start (so client DATA is
/// converted) and takes whatever the RECORD channel delivers.
impl AudioInPort for Sink {
    fn attach(&self, control: Arc<dyn AudioInControl>) {
        control.start(PcmFormat {
            channels: 2,
            rate: 44_100,
        });
    }
    fn captured(&self, _: &[i16]) {}
}

/// A display whose driver always takes client monitors configs, so MAIN's
/// agent data runs through the monitors config reassembly.
impl MonitorsConfigPort for Sink {
    fn takes_client_monitors_config(&self) -> bool {
        true
    }
    fn client_monitors_config(&self, _: &ClientMonitorsConfig) -> bool {
        true
    }
}

impl AudioOutPort for Sink {
    fn attach(&self, _: Arc<dyn AudioOutSink>) {}
    fn client_attached(&self, _: bool) {}
}

struct World {
    registry: Registry,
    info: ServerInfo,
    clients: Arc<Clients>,
    _display: Option<Arc<DisplayChannel>>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let sink = Arc::new(Sink {
            agent: Mutex::new(None),
        });
        let built = Registry::for_ports(
            Ports {
                display_heads: 2,
                input: Some(sink.clone()),
                agent: Some(sink.clone()),
                streams: vec![
                    EchoStream::new(StreamKind::Usbredir),
                    EchoStream::new(StreamKind::Usbredir),
                    EchoStream::new(StreamKind::Port),
                ],
                audio_out: Some(sink.clone()),
                audio_in: Some(sink.clone()),
                monitors_config: Some(sink),
            },
            false,
            Vec::new(),
        )
        .expect("the fuzzing machine's ports are valid");
        if let Some(d) = &built.display {
            let f = Frame {
                width: 48,
                height: 20,
                pixels: (0..48 * 20).map(|i| i * 0x010203).collect(),
            };
            d.update(0, &f, &[Rect::full(48, 20)], &[]);
        }
        World {
            info: ServerInfo {
                epoch: Instant::now(),
                channels: built.registry.channels_list(),
            },
            registry: built.registry,
            clients: Arc::default(),
            _display: built.display,
        }
    })
}

/// `data`: [channel type, channel id, flags (bit 0: mini header), 4 bytes of
/// channel caps, then the client's bytes after the link stage]. A (type, id) the
/// server does not offer is refused, as at link time.
pub fn channel_dispatch(data: &[u8]) {
    let [channel_type, channel_id, flags, c0, c1, c2, c3, client @ ..] = data else {
        return;
    };
    let w = world();
    let Some(kind) = w.registry.find(*channel_type, *channel_id) else {
        return;
    };
    let mini = flags & 1 != 0;
    let req = LinkRequest {
        connection_id: 1,
        channel_type: *channel_type,
        channel_id: *channel_id,
        common_caps: vec![if mini {
            1 << common_cap::MINI_HEADER
        } else {
            0
        }],
        channel_caps: vec![u32::from_le_bytes([*c0, *c1, *c2, *c3])],
    };
    // The channel tasks use no timers but the close's bounded shutdown, so
    // real time costs nothing; the timeout below only catches a hang.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (server, mut peer) = tokio::io::duplex(64 * 1024);
        let client = client.to_vec();
        // The client writes everything, then ends its stream, and reads whatever
        // the server sends until the server closes.
        let io = tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(&mut peer);
            let write = async {
                let _ = wr.write_all(&client).await;
                let _ = wr.shutdown().await;
            };
            let read = async {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
            };
            tokio::join!(write, read);
        });
        let info = ClientInfo {
            host: "fuzz".into(),
            port: 0,
            family: "unix".into(),
            connection_id: 1,
            channel_type: *channel_type,
            channel_id: *channel_id,
            tls: false,
            stats: None,
        };
        let reg = Registration::new(&w.clients, info.clone(), info);
        // Never killed: the task must end because the client's stream ended.
        let (_keep, kill) = tokio::sync::watch::channel(false);
        let task = channel::run(
            kind.as_ref(),
            Box::new(server) as BoxStream,
            None,
            &req,
            1,
            Arc::default(),
            kill,
            &reg,
            &w.info,
        );
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a channel task outlived its client's end of stream");
        let _ = io.await;
    });
}

/// The link meter fed client-driven events: `data` is a list of 13-byte
/// records [op, 4 bytes arg, 8 bytes value]: op 0 a message of `arg` bytes
/// queued, 1 an ACK of `arg` messages, 2 a PONG (id `arg`, timestamp
/// `value`), 3 the PONG answering the `arg`-th PING out, 4 a net test or
/// probe; each record advances the clock by `value` microseconds (at most
/// 10 s). The estimate must stay finite and positive, and nothing panics.
pub fn link_meter(data: &[u8]) {
    use crate::channel::link_meter::{LinkMeter, PingOut};
    let t0 = std::time::Instant::now();
    let mut now = t0;
    let mut m = LinkMeter::new(t0);
    let mut out: Vec<PingOut> = Vec::new();
    for r in data.chunks_exact(13) {
        let arg = u32::from_le_bytes([r[1], r[2], r[3], r[4]]);
        let value = u64::from_le_bytes(r[5..13].try_into().expect("8 bytes"));
        now += Duration::from_micros(value % 10_000_000);
        match r[0] % 5 {
            0 => m.sent(now, arg as usize % (1 << 24), arg & 1 == 0),
            1 => m.acked(now, arg % 64),
            2 => {
                let _ = m.pong(now, arg, value);
            }
            3 => {
                if let Some(p) = out.get(arg as usize % out.len().max(1)).copied() {
                    let _ = m.pong(now, p.id, p.timestamp);
                }
            }
            _ => {
                if arg & 1 == 0 {
                    out.extend(m.start_net_test(now));
                } else {
                    out.push(m.probe(now));
                }
                out.truncate(64);
            }
        }
        if let Some(b) = m.bandwidth() {
            assert!(b.is_finite() && b > 0.0, "bandwidth {b}");
        }
        let _ = (m.slow(), m.latency(), m.probe_due(now), m.retest_due(now));
        let _ = m.net_test_pending(now);
    }
}

/// STREAM_REPORTs (any bytes) on a client with streams 0 and 1, whose
/// frames are logged: `data` is cut into records [op, 32 bytes]: op even a
/// report of those bytes as they are, odd one aimed at a stream the client
/// has (its id and report id patched in); every third record logs a frame.
/// Samples for the link meter must be finite, the playout margin bounded.
pub fn stream_report(data: &[u8]) {
    use crate::channel::link_meter::LinkMeter;
    use crate::channel::stream::{ClientStreams, Stream};
    let t0 = std::time::Instant::now();
    let surface = crate::Frame {
        width: 320,
        height: 240,
        pixels: vec![0; 320 * 240],
    };
    let streams: Vec<Stream> = (0..2)
        .map(|id| Stream {
            id,
            unique: u64::from(id) + 1,
            rect: crate::Rect::new(id * 150, 0, 128, 96),
            seq: 1,
            last: t0,
            clipped: Vec::new(),
            clip_gen: 0,
        })
        .collect();
    let mut c = ClientStreams::new(true, (t0, 1000));
    c.sync(&streams, &surface, t0, true, false);
    let mut meter = LinkMeter::new(t0);
    for (i, r) in data.chunks_exact(33).enumerate() {
        let mut body = r[1..].to_vec();
        if r[0] & 1 == 1 {
            let id = u32::from(r[0] >> 1 & 1);
            body[0..4].copy_from_slice(&id.to_le_bytes());
            let unique = c.report_id(id).unwrap_or(0);
            body[4..8].copy_from_slice(&unique.to_le_bytes());
        }
        if i % 3 == 0 {
            let mm = u32::from_le_bytes([r[9], r[10], r[11], r[12]]);
            c.fake_frame(u32::from(r[1] & 1), mm, usize::from(r[2]) << 8, t0);
        }
        if let Some(d) = c.take_report(&body) {
            assert!(d.secs.is_finite() && d.secs > 0.0, "{d:?}");
            meter.stream_delivered(d.bytes, d.secs, d.saturated);
        }
        assert!(c.margin() <= 1000);
        if let Some(b) = meter.bandwidth() {
            assert!(b.is_finite() && b > 0.0, "bandwidth {b}");
        }
    }
}

/// The client → agent message filter over arbitrary AGENT_DATA payloads:
/// `data` is cut into payloads of 1 to 2048 bytes by its own bytes (a u16
/// length, then that many bytes), with monitors configs for the display, as
/// MAIN runs it. Framing errors end the run, as they end the client.
pub fn agent_filter(data: &[u8]) {
    use crate::channel::agent_filter::ClientFilter;
    let mut filter = ClientFilter::default();
    filter.set_display_monitors(data.first().is_some_and(|b| b & 1 == 0));
    let mut rest = data.get(1..).unwrap_or_default();
    while let [a, b, tail @ ..] = rest {
        let len = (usize::from(u16::from_le_bytes([*a, *b])) % 2048 + 1).min(tail.len());
        let (piece, next) = tail.split_at(len);
        if filter.piece(piece, true).is_err() {
            return;
        }
        rest = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Framing;
    use crate::proto::channel as ch;

    /// Messages framed as a client sends them.
    fn framed(mini: bool, msgs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut f = Framing::new(mini);
        for (t, body) in msgs {
            f.encode(&mut out, *t, body);
        }
        out
    }

    fn input(t: u8, id: u8, mini: bool, caps: u32, client: &[u8]) -> Vec<u8> {
        let mut v = vec![t, id, u8::from(mini)];
        v.extend(caps.to_le_bytes());
        v.extend_from_slice(client);
        v
    }

    #[test]
    fn every_kind_survives_well_formed_and_garbage_input() {
        // A deterministic stand-in for the fuzzer: each kind gets its own
        // messages with every type in its range and bodies of every short length,
        // then pseudo-random bytes.
        let mut rng = crate::image::samples::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut rnd = move || rng.next_u64();
        for (t, id) in [
            (ch::MAIN, 0),
            (ch::DISPLAY, 0),
            (ch::DISPLAY, 1),
            (ch::INPUTS, 0),
            (ch::CURSOR, 1),
        ] {
            for mini in [true, false] {
                let mut msgs = Vec::new();
                for msg_type in (1..8).chain(101..116).chain(300..320) {
                    for len in [0usize, 1, 2, 4, 6, 10, 11, 14, 40] {
                        let body = (0..len).map(|_| rnd() as u8).collect();
                        msgs.push((msg_type, body));
                    }
                }
                let bytes = framed(mini, &msgs);
                // Malformed messages end a channel early; feed them in slices so
                // later types are reached too.
                for chunk in bytes.chunks(97) {
                    channel_dispatch(&input(t, id, mini, rnd() as u32, chunk));
                }
                let garbage: Vec<u8> = (0..4000).map(|_| rnd() as u8).collect();
                channel_dispatch(&input(t, id, mini, u32::MAX, &garbage));
            }
        }
        // Kinds and ids the server does not have are refused, as at link time.
        channel_dispatch(&input(9, 0, true, 0, &[1, 2, 3]));
        channel_dispatch(&input(ch::INPUTS, 1, true, 0, &[1, 2, 3]));
        channel_dispatch(&[ch::MAIN]);
    }

    #[test]
    fn stream_reports_take_any_bytes() {
        let mut rng = crate::image::samples::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut rnd = move || rng.next_u64();
        for round in 0..300 {
            let data: Vec<u8> = (0..33 * (round % 30 + 1)).map(|_| rnd() as u8).collect();
            stream_report(&data);
        }
    }

    #[test]
    fn link_meter_takes_any_events() {
        let mut rng = crate::image::samples::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut rnd = move || rng.next_u64();
        for round in 0..200 {
            let data: Vec<u8> = (0..13 * (round % 40 + 1)).map(|_| rnd() as u8).collect();
            link_meter(&data);
        }
        // A whole net test answered, then a busy stream of acks.
        let mut data = Vec::new();
        let mut rec = |op: u8, arg: u32, value: u64| {
            data.push(op);
            data.extend(arg.to_le_bytes());
            data.extend(value.to_le_bytes());
        };
        rec(4, 0, 0);
        for i in 0..3 {
            rec(3, i, 1000);
        }
        for _ in 0..100 {
            rec(0, 40_000, 10);
            rec(1, 20, 5000);
        }
        link_meter(&data);
    }

    #[test]
    fn agent_filter_takes_any_bytes() {
        // A monitors config of 150 heads in two payloads, then garbage.
        let mut body = 150u32.to_le_bytes().to_vec();
        body.extend_from_slice(&[0; 4]);
        body.extend((0..150 * 20).map(|i| i as u8));
        let mut msg = Vec::new();
        for v in [1u32, 2, 0, 0, body.len() as u32] {
            msg.extend_from_slice(&v.to_le_bytes());
        }
        msg.extend_from_slice(&body);
        for display in [0u8, 1] {
            let mut data = vec![display];
            for piece in msg.chunks(2048) {
                data.extend_from_slice(&(piece.len() as u16 - 1).to_le_bytes());
                data.extend_from_slice(piece);
            }
            data.extend((0..5000).map(|i| (i * 7919 % 251) as u8));
            agent_filter(&data);
        }
    }
}
