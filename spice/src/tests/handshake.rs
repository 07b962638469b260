//! Link stage: passwords, expiry, and hostile or broken link messages.

use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::client::link::{
    default_common_caps, encode_link_mess, encrypt_ticket, link, link_capture, read_link_reply,
    LinkParams,
};
use crate::client::{link_channel, AnyStream};
use crate::proto::{channel as ch, link_err};
use crate::{Error, Expiry};

fn params(channel_type: u8, connection_id: u32, password: &str) -> LinkParams<'_> {
    LinkParams {
        connection_id,
        channel_type,
        channel_id: 0,
        common_caps: default_common_caps(),
        channel_caps: vec![],
        password,
    }
}

fn link_main(server: &SpiceServer, password: &str) -> Result<(), Error> {
    let mut s = AnyStream::connect(&server.local_addr()).unwrap();
    link(&mut s, &params(ch::MAIN, 0, password)).map(|_| ())
}

fn refused(r: Result<(), Error>) -> u32 {
    match r {
        Err(Error::LinkRefused(code)) => code,
        other => panic!("expected a link error, got {other:?}"),
    }
}

/// Sends raw bytes as a link, returns the error code of the reply (None: closed silently).
fn raw_link(server: &SpiceServer, bytes: &[u8]) -> Option<u32> {
    let mut s = AnyStream::connect(&server.local_addr()).unwrap();
    s.write_all(bytes).unwrap();
    // Then the client leaves (else a truncated link waits for the link timeout).
    s.shutdown_write();
    let mut reply = Vec::new();
    // The server closes after an error; read to EOF.
    let _ = s.read_to_end(&mut reply);
    if reply.is_empty() {
        return None;
    }
    assert_eq!(
        reply.len(),
        16 + 178,
        "error reply is header + SpiceLinkReply"
    );
    assert_eq!(&reply[..4], b"REDQ");
    Some(u32::from_le_bytes(reply[16..20].try_into().unwrap()))
}

fn header(magic: &[u8; 4], major: u32, size: u32) -> Vec<u8> {
    let mut v = magic.to_vec();
    v.extend_from_slice(&major.to_le_bytes());
    v.extend_from_slice(&2u32.to_le_bytes());
    v.extend_from_slice(&size.to_le_bytes());
    v
}

fn assert_still_serves(server: &SpiceServer, password: &str) {
    let c = TestClient::connect(&server.local_addr(), opts(password)).unwrap();
    c.wait(T, |s| s.inputs_init.is_some() && s.cursor_init.is_some())
        .unwrap();
}

#[test]
fn password_accepted_and_refused() {
    let (server, _) = start(Some("s3cret"));
    assert_eq!(server.auth(), "spice");
    link_main(&server, "s3cret").unwrap();
    assert_eq!(
        refused(link_main(&server, "wrong")),
        link_err::PERMISSION_DENIED
    );
    assert_eq!(refused(link_main(&server, "")), link_err::PERMISSION_DENIED);
    assert_eq!(
        refused(link_main(&server, "s3cret2")),
        link_err::PERMISSION_DENIED
    );
    server.set_password(Some("other".into()));
    assert_eq!(
        refused(link_main(&server, "s3cret")),
        link_err::PERMISSION_DENIED
    );
    link_main(&server, "other").unwrap();
    // An empty password set with ticketing on refuses everyone (spice-server rule).
    server.set_password(Some(String::new()));
    assert_eq!(refused(link_main(&server, "")), link_err::PERMISSION_DENIED);
    server.set_password(None);
    assert_eq!(server.auth(), "none");
    link_main(&server, "anything").unwrap();
    assert_still_serves(&server, "");
}

#[test]
fn expired_password_is_refused() {
    let (server, _) = start(Some("pw"));
    server.expire_password(Expiry::Now);
    assert_eq!(
        refused(link_main(&server, "pw")),
        link_err::PERMISSION_DENIED
    );
    server.expire_password(Expiry::At(SystemTime::now() - Duration::from_secs(1)));
    assert_eq!(
        refused(link_main(&server, "pw")),
        link_err::PERMISSION_DENIED
    );
    server.expire_password(Expiry::At(SystemTime::now() + Duration::from_secs(3600)));
    link_main(&server, "pw").unwrap();
    server.expire_password(Expiry::Never);
    assert_still_serves(&server, "pw");
}

#[test]
fn bad_link_headers_get_spice_server_error_codes() {
    let (server, _) = start(None);
    assert_eq!(
        raw_link(&server, &header(b"REDX", 2, 18)),
        Some(link_err::INVALID_MAGIC)
    );
    // "GET " is HTTP (the browser page or a WebSocket), anything else a bad magic.
    assert_eq!(
        raw_link(&server, b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n"),
        Some(link_err::INVALID_MAGIC)
    );
    assert_eq!(
        raw_link(&server, &header(b"REDQ", 3, 18)),
        Some(link_err::VERSION_MISMATCH)
    );
    assert_eq!(
        raw_link(&server, &header(b"REDQ", 1, 18)),
        Some(link_err::VERSION_MISMATCH)
    );
    // Major 0: spice-server closes without a reply.
    assert_eq!(raw_link(&server, &header(b"REDQ", 0, 18)), None);
    assert_eq!(
        raw_link(&server, &header(b"REDQ", 2, 17)),
        Some(link_err::INVALID_DATA)
    );
    assert_eq!(
        raw_link(&server, &header(b"REDQ", 2, 4097)),
        Some(link_err::INVALID_DATA)
    );
    assert_eq!(
        raw_link(&server, &header(b"REDQ", 2, u32::MAX)),
        Some(link_err::INVALID_DATA)
    );
    // Capability counts beyond 1024, or caps that do not fit the message.
    let mut m = header(b"REDQ", 2, 22);
    m.extend_from_slice(&[0, 0, 0, 0, 1, 0]);
    m.extend_from_slice(&2000u32.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&18u32.to_le_bytes());
    m.extend_from_slice(&[0; 4]);
    assert_eq!(raw_link(&server, &m), Some(link_err::INVALID_DATA));
    let mut m = header(b"REDQ", 2, 22);
    m.extend_from_slice(&[0, 0, 0, 0, 1, 0]);
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&18u32.to_le_bytes());
    m.extend_from_slice(&[0; 4]);
    assert_eq!(raw_link(&server, &m), Some(link_err::INVALID_DATA));
    // Truncated: the header promises 100 bytes, 10 come, then the client leaves.
    let mut m = header(b"REDQ", 2, 100);
    m.extend_from_slice(&[0; 10]);
    assert_eq!(raw_link(&server, &m), None);
    // Pure garbage, and an empty connection.
    let garbage: Vec<u8> = (0..1000u32).map(|i| (i * 37 % 251) as u8).collect();
    assert_eq!(raw_link(&server, &garbage), Some(link_err::INVALID_MAGIC));
    assert_eq!(raw_link(&server, &[]), None);
    assert_still_serves(&server, "");
}

#[test]
fn unknown_connection_id_and_channel() {
    let (server, _) = start(None);
    let o = opts("");
    let addr = server.local_addr();
    // No session at all yet.
    let r = link_channel(&addr, 1234, ch::DISPLAY, vec![], &o).map(|_| ());
    assert_eq!(refused(r), link_err::BAD_CONNECTION_ID);
    let c = TestClient::connect(&addr, o.clone()).unwrap();
    let id = c.state().session_id;
    let r = link_channel(&addr, id.wrapping_add(1), ch::INPUTS, vec![], &o).map(|_| ());
    assert_eq!(refused(r), link_err::BAD_CONNECTION_ID);
    // A channel type the server does not have (usbredir), and display 1.
    let r = link_channel(&addr, id, 9, vec![], &o).map(|_| ());
    assert_eq!(refused(r), link_err::CHANNEL_NOT_AVAILABLE);
    let mut s = AnyStream::connect(&addr).unwrap();
    let mut p = params(ch::DISPLAY, id, "");
    p.channel_id = 1;
    assert_eq!(
        refused(link(&mut s, &p).map(|_| ())),
        link_err::CHANNEL_NOT_AVAILABLE
    );
    // The session still works, and the list is what spice-server sends.
    assert_eq!(
        c.state().channels_list.clone().unwrap(),
        vec![(ch::DISPLAY, 0), (ch::INPUTS, 0), (ch::CURSOR, 0)]
    );
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
}

#[test]
fn malformed_and_oversized_messages_close_only_that_channel() {
    let (server, rec) = start(None);
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    // An unknown main message type is ignored, not fatal.
    c.send_main(999, &[]).unwrap();
    c.key_scancode(&[0x1e, 0x9e]).unwrap();
    assert_eq!(rec.wait_for(2).len(), 2);
    // A KEY_DOWN of 2 bytes instead of 4 closes the inputs channel only.
    c.send_raw(ch::INPUTS, crate::proto::inputs_msgc::KEY_DOWN, &[1, 2])
        .unwrap();
    c.wait(T, |s| s.closed.contains(&ch::INPUTS)).unwrap();
    // An oversized message closes the display channel only.
    c.send_raw(
        ch::DISPLAY,
        crate::proto::display_msgc::INIT,
        &vec![0; 100_000],
    )
    .unwrap();
    c.wait(T, |s| s.closed.contains(&ch::DISPLAY)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let closed = c.state().closed.clone();
    assert!(
        !closed.contains(&ch::MAIN) && !closed.contains(&ch::CURSOR),
        "{closed:?}"
    );
    assert!(c.state().errors.is_empty());
    // Another session is served normally afterwards.
    drop(c);
    assert_still_serves(&server, "");
}

#[test]
fn full_header_clients_work() {
    let (server, _) = start(None);
    server.update(&picture(64, 48, 1), &[], &[]);
    let c = TestClient::connect(
        &server.local_addr(),
        ClientOptions {
            mini_header: false,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    wait_surface(&c, &picture(64, 48, 1));
    c.wait(T, |s| s.inputs_init.is_some() && s.cursor_init.is_some())
        .unwrap();
}

#[test]
fn captured_ticket_cannot_be_replayed() {
    let (server, _) = start(Some("s3cret"));
    let addr = server.local_addr();
    let p = params(ch::MAIN, 0, "s3cret");
    let mut s = AnyStream::connect(&addr).unwrap();
    let (_, captured) = link_capture(&mut s, &p).unwrap();
    assert_eq!(captured.len(), 4 + 128, "auth mechanism + ticket");
    // An eavesdropper replays the link message, then the captured auth + ticket.
    let mut keys = Vec::new();
    for _ in 0..3 {
        let mut r = AnyStream::connect(&addr).unwrap();
        r.write_all(&encode_link_mess(&p)).unwrap();
        let (key, _) = read_link_reply(&mut r).unwrap();
        keys.push(key);
        r.write_all(&captured).unwrap();
        let mut result = [0u8; 4];
        r.read_exact(&mut result).unwrap();
        assert_eq!(u32::from_le_bytes(result), link_err::PERMISSION_DENIED);
    }
    // Every link has its own key.
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 3);
    drop(s);
    assert_still_serves(&server, "s3cret");
}

#[test]
fn refused_ticket_is_answered_after_a_delay() {
    let (server, _) = start(Some("pw"));
    let p = params(ch::MAIN, 0, "wrong");
    let mut s = AnyStream::connect(&server.local_addr()).unwrap();
    s.write_all(&encode_link_mess(&p)).unwrap();
    let (key, _) = read_link_reply(&mut s).unwrap();
    let mut out = crate::proto::common_cap::AUTH_SPICE.to_le_bytes().to_vec();
    out.extend_from_slice(&encrypt_ticket(&key, "wrong").unwrap());
    let t0 = Instant::now();
    s.write_all(&out).unwrap();
    let mut result = [0u8; 4];
    s.read_exact(&mut result).unwrap();
    let took = t0.elapsed();
    assert_eq!(u32::from_le_bytes(result), link_err::PERMISSION_DENIED);
    assert!(
        took >= Duration::from_millis(190),
        "answered after {took:?}"
    );
    link_main(&server, "pw").unwrap();
}
