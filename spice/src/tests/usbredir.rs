//! USBREDIR channels: one per usbredir stream port, DATA both ways, LZ4 when
//! the client offers it, open/close reaching the port, malformed compressed
//! data closing only that channel.

use std::io::{Read, Write};

use super::*;
use crate::client::{link_channel_id, AnyStream};
use crate::port::{Full, StreamKind, StreamPort, StreamSink};
use crate::proto::channel as ch;

#[derive(Default)]
struct Stream {
    sink: Mutex<Option<Arc<dyn StreamSink>>>,
    got: Mutex<Vec<u8>>,
    opened: Mutex<Vec<bool>>,
}

impl Stream {
    fn sink(&self) -> Arc<dyn StreamSink> {
        self.sink.lock().unwrap().clone().unwrap()
    }
}

impl StreamPort for Stream {
    fn kind(&self) -> StreamKind {
        StreamKind::Usbredir
    }
    fn name(&self) -> &str {
        "usbredir"
    }
    fn attach(&self, sink: Arc<dyn StreamSink>) {
        *self.sink.lock().unwrap() = Some(sink);
    }
    fn client_data(&self, data: &[u8]) -> Result<(), Full> {
        self.got.lock().unwrap().extend_from_slice(data);
        Ok(())
    }
    fn client_opened(&self, open: bool) {
        self.opened.lock().unwrap().push(open);
    }
    fn resume(&self) {}
}

fn send(s: &mut AnyStream, t: u16, body: &[u8]) {
    let mut m = t.to_le_bytes().to_vec();
    m.extend((body.len() as u32).to_le_bytes());
    m.extend_from_slice(body);
    s.write_all(&m).unwrap();
}

fn recv(s: &mut AnyStream) -> (u16, Vec<u8>) {
    let mut h = [0u8; 6];
    s.read_exact(&mut h).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize];
    s.read_exact(&mut body).unwrap();
    (u16::from_le_bytes([h[0], h[1]]), body)
}

fn wait_for(what: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + T;
    while !what() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn usbredir_streams_become_channels_with_lz4() {
    let rec = Arc::new(Recorder::default());
    let streams = [Arc::new(Stream::default()), Arc::new(Stream::default())];
    let server = SpiceServer::start(
        config(None),
        Ports {
            streams: streams
                .iter()
                .map(|s| s.clone() as Arc<dyn StreamPort>)
                .collect(),
            ..ports(&rec)
        },
    )
    .unwrap();
    let c = connect(&server);
    c.send_main(crate::proto::main_msgc::ATTACH_CHANNELS, &[])
        .unwrap();
    c.wait(T, |s| {
        s.channels_list
            .as_ref()
            .is_some_and(|l| l.contains(&(ch::USBREDIR, 1)))
    })
    .unwrap();
    assert!(!c
        .state()
        .channels_list
        .clone()
        .unwrap()
        .contains(&(ch::USBREDIR, 2)));
    let session = c.state().session_id;
    let opts = ClientOptions::default();
    let (mut s, linked) = link_channel_id(
        &server.local_addr(),
        session,
        ch::USBREDIR,
        1,
        vec![1],
        &opts,
    )
    .unwrap();
    assert_eq!(linked.channel_caps, vec![1], "DATA_COMPRESS_LZ4 offered");
    assert!(linked.mini_header());
    wait_for(|| streams[1].opened.lock().unwrap().as_slice() == [true]);
    assert!(streams[0].opened.lock().unwrap().is_empty());

    // Client → guest, plain and compressed.
    send(&mut s, 101, b"hello");
    let big: Vec<u8> = (0..5000u32).map(|i| (i / 100) as u8).collect();
    let mut compressed = vec![1u8];
    compressed.extend((big.len() as u32).to_le_bytes());
    compressed.extend(lz4_flex::block::compress(&big));
    send(&mut s, 102, &compressed);
    let mut want = b"hello".to_vec();
    want.extend_from_slice(&big);
    wait_for(|| *streams[1].got.lock().unwrap() == want);

    // Guest → client: small stays DATA, large is LZ4 (the client offered it).
    streams[1].sink().guest_data(b"tiny").unwrap();
    assert_eq!(recv(&mut s), (101, b"tiny".to_vec()));
    streams[1].sink().guest_data(&big).unwrap();
    let (t, body) = recv(&mut s);
    assert_eq!((t, body[0]), (102, 1));
    assert_eq!(
        u32::from_le_bytes([body[1], body[2], body[3], body[4]]),
        5000
    );
    assert_eq!(lz4_flex::block::decompress(&body[5..], 5000).unwrap(), big);

    // A compressed message claiming a huge size closes the channel, nothing else.
    let mut bad = vec![1u8];
    bad.extend(u32::MAX.to_le_bytes());
    bad.extend([0u8; 8]);
    send(&mut s, 102, &bad);
    wait_for(|| streams[1].opened.lock().unwrap().as_slice() == [true, false]);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    // Guest data with no client is dropped, not queued.
    streams[1].sink().guest_data(b"late").unwrap();
    assert!(c.state().closed.is_empty());
    drop(c);
}

/// Guest data is written from the guest's thread while the socket takes it,
/// then through the channel task once it is full: the client still gets every
/// message whole and in order, and the guest is told `Full` only once 1 MiB
/// waits beyond what the socket holds.
#[test]
fn guest_data_keeps_its_order_when_the_socket_fills() {
    let rec = Arc::new(Recorder::default());
    let stream = Arc::new(Stream::default());
    let server = SpiceServer::start(
        config(None),
        Ports {
            streams: vec![stream.clone() as Arc<dyn StreamPort>],
            ..ports(&rec)
        },
    )
    .unwrap();
    let c = connect(&server);
    c.send_main(crate::proto::main_msgc::ATTACH_CHANNELS, &[])
        .unwrap();
    c.wait(T, |s| s.channels_list.is_some()).unwrap();
    let session = c.state().session_id;
    let (mut s, _) = link_channel_id(
        &server.local_addr(),
        session,
        ch::USBREDIR,
        0,
        vec![],
        &ClientOptions::default(),
    )
    .unwrap();
    wait_for(|| stream.opened.lock().unwrap().as_slice() == [true]);
    // Sizes that cut the socket's buffer at odd places; the client reads
    // nothing until the guest side is refused.
    let message = |i: u32| -> Vec<u8> {
        let len = 7 + (i as usize * 7919) % 30000;
        let mut m = i.to_le_bytes().to_vec();
        m.resize(len, i as u8);
        m
    };
    let sink = stream.sink();
    let mut sent = 0u32;
    while sink.guest_data(&message(sent)).is_ok() {
        sent += 1;
        assert!(sent < 100_000, "never refused");
    }
    assert!(sent > 10);
    for i in 0..sent {
        let (t, body) = recv(&mut s);
        assert_eq!(t, 101);
        assert_eq!(body, message(i), "message {i}");
    }
    // The client reads while the guest side writes as fast as it is let:
    // direct writes and the task's take turns without overtaking.
    let total = sent + 1500;
    let reader = std::thread::spawn(move || {
        for i in sent..total {
            let (t, body) = recv(&mut s);
            assert_eq!(t, 101);
            assert_eq!(body, message(i), "message {i}");
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        s
    });
    for i in sent..total {
        while sink.guest_data(&message(i)).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut s = reader.join().unwrap();
    sink.guest_data(b"after").unwrap();
    assert_eq!(recv(&mut s), (101, b"after".to_vec()));
    drop(c);
}
