//! Channel registration: the link stage's capabilities, CHANNELS_LIST, limits and
//! dispatch follow the channel kinds built for the server's ports; unknown
//! channel types are refused; kinds the protocol allows several of link one per id.
//!
//! `TestPorts` is a test-only channel kind (a PORT-type byte pipe over
//! [`StreamPort`]s, one channel id per stream) that proves a kind plugs in with
//! nothing but its module and its registration.

use std::collections::VecDeque;
use std::io::{Read, Write};

use tokio::sync::Notify;

use super::*;
use crate::channel::{next_message, ChannelKind, ChannelTask, Link, Next, Registry};
use crate::client::decode::ServerMsg;
use crate::client::link::{default_common_caps, link, LinkParams};
use crate::client::{link_channel, link_channel_id, AnyStream};
use crate::header::Framing;
use crate::port::{Full, StreamKind, StreamPort, StreamSink};
use crate::proto::{channel as ch, link_err, INPUTS_CAP_KEY_SCANCODE};
use crate::server::{lock, Limits};
use crate::Error;

/// A guest device behind a named stream: records what the client sent, and
/// sends whatever the test pushes.
#[derive(Default)]
struct TestStream {
    name: String,
    sink: Mutex<Option<Arc<dyn StreamSink>>>,
    from_client: Mutex<Vec<Vec<u8>>>,
    opened: Mutex<Vec<bool>>,
}

impl StreamPort for TestStream {
    fn kind(&self) -> StreamKind {
        StreamKind::Port
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn attach(&self, sink: Arc<dyn StreamSink>) {
        *self.sink.lock().unwrap() = Some(sink);
    }
    fn client_data(&self, data: &[u8]) -> Result<(), Full> {
        self.from_client.lock().unwrap().push(data.to_vec());
        Ok(())
    }
    fn client_opened(&self, open: bool) {
        self.opened.lock().unwrap().push(open);
    }
    fn resume(&self) {}
}

#[derive(Default)]
struct Pipe {
    queue: Mutex<VecDeque<Vec<u8>>>,
    wake: Notify,
}

impl StreamSink for Pipe {
    fn guest_data(&self, data: &[u8]) -> Result<(), Full> {
        lock(&self.queue).push_back(data.to_vec());
        self.wake.notify_one();
        Ok(())
    }
    fn guest_opened(&self, _open: bool) {}
    fn resume(&self) {}
}

/// Test-only kind: channel type PORT, one id per stream, DATA (101) both ways,
/// messages of at most `TEST_MAX` bytes.
struct TestPorts {
    streams: Vec<(Arc<TestStream>, Arc<Pipe>)>,
}

const TEST_MAX: usize = 100;
const DATA: u16 = 101;

impl TestPorts {
    fn new(streams: &[Arc<TestStream>]) -> TestPorts {
        TestPorts {
            streams: streams
                .iter()
                .map(|s| {
                    let pipe = Arc::new(Pipe::default());
                    s.attach(pipe.clone());
                    (s.clone(), pipe)
                })
                .collect(),
        }
    }
}

impl ChannelKind for TestPorts {
    fn channel_type(&self) -> u8 {
        ch::PORT
    }
    fn name(&self) -> &'static str {
        "test-port"
    }
    fn ids(&self) -> Vec<u8> {
        (0..self.streams.len() as u8).collect()
    }
    fn caps(&self) -> Vec<u32> {
        vec![0x5a]
    }
    fn max_message(&self) -> usize {
        TEST_MAX
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(async move {
            let (port, pipe) = &self.streams[usize::from(link.req.channel_id)];
            port.client_opened(true);
            link.reg.initialized();
            let conn = link.conn;
            let result = loop {
                let next = lock(&pipe.queue).pop_front();
                if let Some(data) = next {
                    conn.send(DATA, &data).await?;
                    continue;
                }
                tokio::select! {
                    n = next_message(conn) => match n {
                        Ok(Next::Msg(DATA, body)) => {
                            let _ = port.client_data(&body);
                        }
                        Ok(Next::Closed) => break Ok(()),
                        Ok(_) => {}
                        Err(e) => break Err(e),
                    },
                    _ = pipe.wake.notified() => {}
                }
            };
            port.client_opened(false);
            result
        })
    }
}

fn start_ports(ports: Ports, extra: Vec<Arc<dyn ChannelKind>>) -> SpiceServer {
    SpiceServer::start_with(config(None), ports, Limits::default(), extra).unwrap()
}

fn refused<T>(r: Result<T, Error>) -> u32 {
    match r {
        Err(Error::LinkRefused(code)) => code,
        Err(e) => panic!("expected a link error, got {e}"),
        Ok(_) => panic!("expected a link error, got a link"),
    }
}

/// Links MAIN only and returns the session id and the MAIN_INIT.
fn main_only(server: &SpiceServer) -> (TestClient, ServerMsg) {
    let c = TestClient::connect(
        &server.local_addr(),
        ClientOptions {
            channels: vec![],
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let init = c.state().main_init.clone().unwrap();
    (c, init)
}

fn display_channels(init: &ServerMsg) -> u32 {
    match init {
        ServerMsg::MainInit {
            display_channels, ..
        } => *display_channels,
        other => panic!("{other:?}"),
    }
}

#[test]
fn caps_and_list_derive_from_the_ports() {
    let rec = Arc::new(Recorder::default());
    let o = ClientOptions::default();
    let cases: [(Ports, Vec<(u8, u8)>); 4] = [
        (
            ports(&rec),
            vec![(ch::DISPLAY, 0), (ch::INPUTS, 0), (ch::CURSOR, 0)],
        ),
        (
            Ports {
                input: None,
                ..ports(&rec)
            },
            vec![(ch::DISPLAY, 0), (ch::CURSOR, 0)],
        ),
        (
            Ports {
                display_heads: 0,
                ..ports(&rec)
            },
            vec![(ch::INPUTS, 0)],
        ),
        (
            Ports {
                display_heads: 2,
                ..ports(&rec)
            },
            vec![
                (ch::DISPLAY, 0),
                (ch::DISPLAY, 1),
                (ch::INPUTS, 0),
                (ch::CURSOR, 0),
                (ch::CURSOR, 1),
            ],
        ),
    ];
    for (p, list) in cases {
        let server = start_ports(p, vec![]);
        assert_eq!(server.channels(), list);
        let (c, init) = main_only(&server);
        c.send_main(crate::proto::main_msgc::ATTACH_CHANNELS, &[])
            .unwrap();
        c.wait(T, |s| s.channels_list.as_ref() == Some(&list))
            .unwrap();
        let displays = list.iter().filter(|(t, _)| *t == ch::DISPLAY).count();
        assert_eq!(display_channels(&init), displays as u32);
        let id = c.state().session_id;
        let addr = server.local_addr();
        for t in [ch::DISPLAY, ch::INPUTS, ch::CURSOR] {
            for cid in 0..3u8 {
                let r = link_channel_id(&addr, id, t, cid, vec![], &o);
                if list.contains(&(t, cid)) {
                    let (_, linked) = r.unwrap_or_else(|e| panic!("{t}/{cid}: {e}"));
                    let expect = if t == ch::INPUTS {
                        vec![1 << INPUTS_CAP_KEY_SCANCODE]
                    } else {
                        vec![]
                    };
                    assert_eq!(linked.channel_caps, expect, "caps of {t}/{cid}");
                } else {
                    assert_eq!(refused(r), link_err::CHANNEL_NOT_AVAILABLE, "{t}/{cid}");
                }
            }
        }
        assert!(c.state().errors.is_empty());
    }
}

/// The link message for (type, id), then whatever the server answers.
fn link_reply(addr: &Listen, channel_type: u8, channel_id: u8) -> Vec<u8> {
    let mut s = AnyStream::connect(addr).unwrap();
    s.write_all(&crate::client::link::encode_link_mess(&LinkParams {
        connection_id: 1,
        channel_type,
        channel_id,
        common_caps: default_common_caps(),
        channel_caps: vec![],
        password: "",
    }))
    .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

#[test]
fn unknown_channel_types_are_refused_and_never_served_as_cursor() {
    let server = start_ports(ports(&Arc::new(Recorder::default())), vec![]);
    let c = connect(&server);
    c.wait(T, |s| s.cursor_init.is_some() && s.inputs_init.is_some())
        .unwrap();
    let addr = server.local_addr();
    let offered = server.channels();
    for t in (0..=255u8).filter(|t| *t != ch::MAIN && !offered.contains(&(*t, 0))) {
        // A full link reply carrying the error, then close: nothing of a channel
        // (no CURSOR_INIT or any other message) follows.
        let reply = link_reply(&addr, t, 0);
        assert_eq!(reply.len(), 16 + 178, "type {t}");
        assert_eq!(
            u32::from_le_bytes(reply[16..20].try_into().unwrap()),
            link_err::CHANNEL_NOT_AVAILABLE,
            "type {t}"
        );
    }
    // The registry itself knows no kind for them.
    let reg = Registry::for_ports(ports(&Arc::new(Recorder::default())), false, vec![])
        .unwrap()
        .registry;
    for t in [0, 5, 6, 7, 8, 9, 10, 11, 12, 200, 255] {
        assert!(reg.find(t, 0).is_none(), "type {t}");
        assert!(reg.link_caps(t, 0).is_none(), "type {t}");
    }
    assert_eq!(reg.find(ch::CURSOR, 0).unwrap().name(), "cursor");
    // The session is untouched: still one cursor, one of everything.
    assert_eq!(server.clients().len(), 4);
    assert!(c.state().errors.is_empty() && c.state().closed.is_empty());
}

#[test]
fn several_displays_one_per_head() {
    let rec = Arc::new(Recorder::default());
    let server = start_ports(
        Ports {
            display_heads: 2,
            ..ports(&rec)
        },
        vec![],
    );
    let (h0, h1) = (picture(64, 48, 1), picture(80, 40, 2));
    server.update_head(0, &h0, &[full(&h0)], &[]);
    server.update_head(1, &h1, &[full(&h1)], &[]);
    let addr = server.local_addr();
    let c0 = TestClient::connect(&addr, ClientOptions::default()).unwrap();
    let id = c0.state().session_id;
    let c1 = TestClient::attach(
        &addr,
        id,
        ClientOptions {
            channels: vec![ch::DISPLAY, ch::CURSOR],
            display_id: 1,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    // Each head's channel shows that head.
    wait_surface(&c0, &h0);
    wait_surface(&c1, &h1);
    c1.wait(T, |s| s.cursor_init.is_some()).unwrap();
    // Each (type, id) once per session; a head that does not exist never.
    let o = ClientOptions::default();
    for (t, cid) in [
        (ch::DISPLAY, 0),
        (ch::DISPLAY, 1),
        (ch::DISPLAY, 2),
        (ch::CURSOR, 1),
        (ch::INPUTS, 0),
    ] {
        let r = link_channel_id(&addr, id, t, cid, vec![], &o);
        assert_eq!(refused(r), link_err::CHANNEL_NOT_AVAILABLE, "{t}/{cid}");
    }
    // Updates stay on their head.
    let h1b = picture(80, 40, 3);
    server.update_head(1, &h1b, &[full(&h1b)], &[]);
    wait_surface(&c1, &h1b);
    assert_eq!(c0.state().surface.as_ref().unwrap().pixels, h0.pixels);
    assert_eq!(server.clients().len(), 6);
}

fn read_msg(s: &mut AnyStream) -> (u16, Vec<u8>) {
    let mut hdr = [0u8; 6];
    s.read_exact(&mut hdr).unwrap();
    let (t, size) = Framing::new(true).decode(&hdr);
    let mut body = vec![0u8; size as usize];
    s.read_exact(&mut body).unwrap();
    (t, body)
}

fn send_msg(s: &mut AnyStream, t: u16, body: &[u8]) {
    let mut out = Vec::new();
    Framing::new(true).encode(&mut out, t, body);
    s.write_all(&out).unwrap();
}

#[test]
fn a_test_kind_plugs_in_with_one_channel_per_stream() {
    let streams: Vec<Arc<TestStream>> = (0..3)
        .map(|i| {
            Arc::new(TestStream {
                name: format!("org.example.{i}"),
                ..TestStream::default()
            })
        })
        .collect();
    let kind: Arc<dyn ChannelKind> = Arc::new(TestPorts::new(&streams));
    let rec = Arc::new(Recorder::default());
    let server = start_ports(ports(&rec), vec![kind]);
    // Listed after the built-in kinds, one entry per stream.
    assert_eq!(
        server.channels(),
        vec![
            (ch::DISPLAY, 0),
            (ch::INPUTS, 0),
            (ch::CURSOR, 0),
            (ch::PORT, 0),
            (ch::PORT, 1),
            (ch::PORT, 2)
        ]
    );
    let (c, _) = main_only(&server);
    let id = c.state().session_id;
    let addr = server.local_addr();
    let o = ClientOptions::default();
    let mut chans: Vec<AnyStream> = (0..3u8)
        .map(|i| {
            let (s, linked) = link_channel_id(&addr, id, ch::PORT, i, vec![], &o).unwrap();
            // The kind's own capabilities in the link reply.
            assert_eq!(linked.channel_caps, vec![0x5a]);
            s
        })
        .collect();
    // Distinct ids once each; an id beyond the streams never.
    for i in [0, 2, 3] {
        let r = link_channel_id(&addr, id, ch::PORT, i, vec![], &o);
        assert_eq!(refused(r), link_err::CHANNEL_NOT_AVAILABLE, "port {i}");
    }
    // Dispatch reaches the right stream both ways.
    send_msg(&mut chans[1], DATA, b"to one");
    send_msg(&mut chans[2], DATA, b"to two");
    // Two channels, two tasks: nothing orders the deliveries, so both are
    // waited for (stream 2's arriving first says nothing of stream 1's).
    let deadline = std::time::Instant::now() + T;
    while streams[1..]
        .iter()
        .any(|s| s.from_client.lock().unwrap().is_empty())
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        *streams[2].from_client.lock().unwrap(),
        vec![b"to two".to_vec()]
    );
    assert_eq!(
        *streams[1].from_client.lock().unwrap(),
        vec![b"to one".to_vec()]
    );
    assert!(streams[0].from_client.lock().unwrap().is_empty());
    let sink = streams[0].sink.lock().unwrap().clone().unwrap();
    sink.guest_data(b"from zero").unwrap();
    assert_eq!(read_msg(&mut chans[0]), (DATA, b"from zero".to_vec()));
    // The kind's size limit closes its channel (and only it).
    send_msg(&mut chans[0], DATA, &[0; TEST_MAX + 1]);
    let mut rest = Vec::new();
    let _ = chans[0].read_to_end(&mut rest);
    assert!(rest.is_empty());
    send_msg(&mut chans[1], DATA, &[1; TEST_MAX]);
    while streams[1].from_client.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    // Ending the session closes its streams.
    drop(c);
    while streams.iter().any(|s| s.opened.lock().unwrap().len() < 2) {
        assert!(std::time::Instant::now() < deadline, "streams not closed");
        std::thread::sleep(Duration::from_millis(5));
    }
    for s in &streams {
        assert_eq!(*s.opened.lock().unwrap(), vec![true, false], "{}", s.name);
    }
}

#[test]
fn registry_refuses_inconsistent_sets() {
    let streams = [Arc::new(TestStream::default())];
    let rec = Arc::new(Recorder::default());
    let twice: Vec<Arc<dyn ChannelKind>> = vec![
        Arc::new(TestPorts::new(&streams)),
        Arc::new(TestPorts::new(&streams)),
    ];
    assert!(Registry::for_ports(ports(&rec), false, twice).is_err());
    // A kind that takes a built-in type.
    struct FakeInputs;
    impl ChannelKind for FakeInputs {
        fn channel_type(&self) -> u8 {
            ch::INPUTS
        }
        fn name(&self) -> &'static str {
            "fake"
        }
        fn run<'a>(&'a self, _: Link<'a>) -> ChannelTask<'a> {
            Box::pin(async { Ok(()) })
        }
    }
    assert!(Registry::for_ports(ports(&rec), false, vec![Arc::new(FakeInputs)]).is_err());
    assert!(
        Registry::new(vec![Arc::new(FakeInputs)]).is_err(),
        "no MAIN"
    );
    assert!(Registry::for_ports(
        Ports {
            display_heads: 17,
            ..ports(&rec)
        },
        false,
        vec![]
    )
    .is_err());
    // A MAIN link is not a CHANNELS_LIST entry.
    let server = start_ports(ports(&rec), vec![]);
    let mut s = AnyStream::connect(&server.local_addr()).unwrap();
    let r = link(
        &mut s,
        &LinkParams {
            connection_id: 0,
            channel_type: ch::MAIN,
            channel_id: 1,
            common_caps: default_common_caps(),
            channel_caps: vec![],
            password: "",
        },
    );
    assert_eq!(refused(r), link_err::CHANNEL_NOT_AVAILABLE);
    assert!(!server.channels().contains(&(ch::MAIN, 0)));
    let _ = link_channel(
        &server.local_addr(),
        0,
        ch::MAIN,
        vec![],
        &ClientOptions::default(),
    )
    .unwrap();
}
