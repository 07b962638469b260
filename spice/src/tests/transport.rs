//! TLS, WebSocket, HTTP and SASL on the server's own listeners, with hostile clients:
//! each gets an answer or a close, and a good client links right after.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::client::link::{default_common_caps, link, LinkParams};
use crate::proto::{channel as ch, common_cap, link_err};
use crate::server::Limits;
use crate::transport::{ChannelSet, TlsListen, TransportConfig};
use crate::Error;

const PW: &str = "pw";

/// A CA and a server certificate for 127.0.0.1/localhost, written as an x509 dir.
struct Certs {
    dir: PathBuf,
    ca_der: Vec<u8>,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn certs(tag: &str) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("spicebox-x509-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca-cert.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
    Certs {
        dir,
        ca_der: ca.der().to_vec(),
    }
}

fn start_tls(certs: &Certs, secure: ChannelSet, limits: Limits) -> SpiceServer {
    SpiceServer::start_with(
        Config {
            listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            password: Some(PW.into()),
            force_raw_images: false,
            playback_compression: true,
            jpeg: Default::default(),
            streaming_video: Default::default(),
            transport: TransportConfig {
                tls: Some(TlsListen {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    x509_dir: certs.dir.clone(),
                }),
                secure_channels: secure,
                ..TransportConfig::default()
            },
        },
        ports(&Arc::new(Recorder::default())),
        limits,
        Vec::new(),
    )
    .unwrap()
}

fn plain_addr(s: &SpiceServer) -> SocketAddr {
    match s.local_addr() {
        Listen::Tcp(a) => a,
        Listen::Unix(_) => unreachable!(),
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, ca_der: &[u8]) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.to_vec().into()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "127.0.0.1".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(T))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Finish the handshake now, so a bad certificate shows here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

fn main_params(password: &str) -> LinkParams<'_> {
    LinkParams {
        connection_id: 0,
        channel_type: ch::MAIN,
        channel_id: 0,
        common_caps: default_common_caps(),
        channel_caps: vec![],
        password,
    }
}

/// Links MAIN over TLS; the stream keeps the channel open until dropped.
fn link_tls(server: &SpiceServer, certs: &Certs) -> Result<Tls, Error> {
    let mut s = tls_connect(server.tls_addr().unwrap(), &certs.ca_der)?;
    link(&mut s, &main_params(PW))?;
    Ok(s)
}

#[test]
fn tls_links_and_plaintext_secure_channels_need_tls() {
    let certs = certs("link");
    let server = start_tls(
        &certs,
        ChannelSet::parse("main").unwrap(),
        Limits::default(),
    );
    let _main = link_tls(&server, &certs).unwrap();
    let deadline = Instant::now() + T;
    while !server
        .clients()
        .iter()
        .any(|c| c.tls && c.channel_type == ch::MAIN)
    {
        assert!(Instant::now() < deadline, "no TLS main channel listed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // MAIN on the plain port: NEED_SECURED, which spice-gtk answers by reconnecting on TLS.
    let mut s = TcpStream::connect(plain_addr(&server)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    match link(&mut s, &main_params(PW)) {
        Err(Error::LinkRefused(code)) => assert_eq!(code, link_err::NEED_SECURED),
        other => panic!("expected NEED_SECURED, got {other:?}"),
    }
    // A client that does not trust our CA gives up in the handshake.
    let other = super::transport::certs("other-ca");
    assert!(tls_connect(server.tls_addr().unwrap(), &other.ca_der).is_err());
    link_tls(&server, &certs).unwrap();
}

/// NEED_SECURED applies to channels the registry offers; a secure type it does not
/// offer (another head, a channel with no port) is CHANNEL_NOT_AVAILABLE on either
/// port, and an offered type outside the set passes on plaintext.
#[test]
fn secure_channels_follow_the_registry() {
    let certs = certs("registry");
    // The test machine: MAIN, one display head (DISPLAY and CURSOR id 0), INPUTS.
    let server = start_tls(
        &certs,
        ChannelSet::parse("display,playback").unwrap(),
        Limits::default(),
    );
    let params = |channel_type, channel_id| LinkParams {
        connection_id: 7,
        channel_type,
        channel_id,
        ..main_params(PW)
    };
    let plain = |t, id| {
        let mut s = TcpStream::connect(plain_addr(&server)).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        link(&mut s, &params(t, id)).err()
    };
    let code = |e: Option<Error>| match e {
        Some(Error::LinkRefused(code)) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(code(plain(ch::DISPLAY, 0)), link_err::NEED_SECURED);
    assert_eq!(code(plain(ch::DISPLAY, 1)), link_err::CHANNEL_NOT_AVAILABLE);
    assert_eq!(
        code(plain(ch::PLAYBACK, 0)),
        link_err::CHANNEL_NOT_AVAILABLE
    );
    // Past the link stage, refused only for naming no session.
    assert_eq!(code(plain(ch::INPUTS, 0)), link_err::BAD_CONNECTION_ID);
    let tls = |t, id| {
        let mut s = tls_connect(server.tls_addr().unwrap(), &certs.ca_der).unwrap();
        link(&mut s, &params(t, id)).err()
    };
    assert_eq!(code(tls(ch::DISPLAY, 0)), link_err::BAD_CONNECTION_ID);
    assert_eq!(code(tls(ch::PLAYBACK, 0)), link_err::CHANNEL_NOT_AVAILABLE);
}

#[test]
fn x509_dir_problems_name_the_file() {
    let certs = certs("missing");
    std::fs::remove_file(certs.dir.join("server-key.pem")).unwrap();
    let err = SpiceServer::start(
        Config {
            listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            password: None,
            force_raw_images: false,
            playback_compression: true,
            jpeg: Default::default(),
            streaming_video: Default::default(),
            transport: TransportConfig {
                tls: Some(TlsListen {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    x509_dir: certs.dir.clone(),
                }),
                ..TransportConfig::default()
            },
        },
        ports(&Arc::new(Recorder::default())),
    )
    .err()
    .expect("a server without its key");
    let msg = err.to_string();
    assert!(
        msg.contains("server-key.pem") && msg.contains("missing"),
        "{msg}"
    );
}

/// Sends bytes, reads until the server closes (or T passes); returns what came back.
fn exchange<S: Read + Write>(s: &mut S, bytes: &[u8]) -> Vec<u8> {
    let _ = s.write_all(bytes);
    let _ = s.flush();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn hostile_transport_input_is_answered_and_others_still_link() {
    let certs = certs("hostile");
    let timeout = Duration::from_millis(1500);
    let server = start_tls(
        &certs,
        ChannelSet::NONE,
        Limits {
            link_timeout: timeout,
            ..Limits::default()
        },
    );
    let tls_addr = server.tls_addr().unwrap();

    // Garbage after a good TLS handshake: INVALID_MAGIC inside TLS, then close.
    let mut s = tls_connect(tls_addr, &certs.ca_der).unwrap();
    let reply = exchange(&mut s, b"\x16\x03\x01garbage garbage");
    assert!(reply.len() >= 20 && &reply[..4] == b"REDQ", "{reply:?}");
    assert_eq!(
        u32::from_le_bytes(reply[16..20].try_into().unwrap()),
        link_err::INVALID_MAGIC
    );

    // Plaintext SPICE on the TLS port: the handshake fails and the server closes.
    let mut s = TcpStream::connect(tls_addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let t0 = Instant::now();
    let reply = exchange(&mut s, b"REDQ\x02\0\0\0\x02\0\0\0\x12\0\0\0");
    assert!(t0.elapsed() < timeout, "not refused at once");
    assert!(!reply.starts_with(b"REDQ"));

    // A TLS client that stalls in the handshake (a ClientHello cut short), and one
    // that never speaks: both closed after the link timeout, while a good client links.
    let mut stalled = TcpStream::connect(tls_addr).unwrap();
    stalled.write_all(b"\x16\x03\x01\x02\x00\x01").unwrap();
    let silent = TcpStream::connect(tls_addr).unwrap();
    link_tls(&server, &certs).unwrap();
    for mut s in [stalled, silent] {
        s.set_read_timeout(Some(T)).unwrap();
        let t0 = Instant::now();
        let _ = s.read_to_end(&mut Vec::new());
        let took = t0.elapsed();
        assert!(took < timeout * 4, "stalled TLS client kept for {took:?}");
    }

    // An HTTP request with endless headers: 431 and close, within the bound.
    let mut s = TcpStream::connect(plain_addr(&server)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut endless = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    while endless.len() < 64 * 1024 {
        endless.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let reply = String::from_utf8_lossy(&exchange(&mut s, &endless)).into_owned();
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");

    // An HTTP request that never ends: closed at the link timeout.
    let mut s = TcpStream::connect(plain_addr(&server)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let t0 = Instant::now();
    let reply = exchange(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert!(reply.is_empty() && t0.elapsed() < timeout * 4);

    // The same server still links a good client, plain and TLS.
    let mut s = TcpStream::connect(plain_addr(&server)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    link(&mut s, &main_params(PW)).unwrap();
    link_tls(&server, &certs).unwrap();
}

// ---------------------------------------------------------------------------
// WebSocket

fn upgrade_request(origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: binary\r\n{origin}\r\n"
    )
}

/// A client frame (masked, as RFC 6455 requires of clients).
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads the 101 answer's head; returns it.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads server frames (unmasked) until `n` payload bytes arrived.
fn read_payload(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < n {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).unwrap();
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                s.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l) as usize
            }
            l => l as usize,
        };
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).unwrap();
        if h[0] & 0x0f == 2 || h[0] & 0x0f == 0 {
            out.extend_from_slice(&p);
        }
    }
    out
}

fn ws_open(server: &SpiceServer) -> TcpStream {
    let mut s = TcpStream::connect(plain_addr(server)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(upgrade_request(Some("http://127.0.0.1")).as_bytes())
        .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: binary"), "{head}");
    s
}

#[test]
fn websocket_carries_the_link_even_in_fragments() {
    let (server, _) = start(None);
    let mut s = ws_open(&server);
    let link_mess = crate::client::link::encode_link_mess(&main_params(""));
    // The link message split over a fragmented message and a ping in between.
    let (a, b) = link_mess.split_at(10);
    let mut out = frame(false, 2, a);
    out.extend(frame(true, 9, b"ping"));
    out.extend(frame(true, 0, b));
    s.write_all(&out).unwrap();
    let reply = read_payload(&mut s, 16 + 178);
    assert_eq!(&reply[..4], b"REDQ");
    assert_eq!(
        u32::from_le_bytes(reply[16..20].try_into().unwrap()),
        link_err::OK
    );
    let caps = u32::from_le_bytes(reply[16 + 178..16 + 182].try_into().unwrap());
    assert!(caps & (1 << common_cap::AUTH_SPICE) != 0);
}

#[test]
fn websocket_abuse_closes_only_that_connection() {
    let (server, _) = start(Some(PW));
    // Another site's page may not open the VM through the user's browser.
    let mut s = TcpStream::connect(plain_addr(&server)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let reply = exchange(
        &mut s,
        upgrade_request(Some("http://evil.example")).as_bytes(),
    );
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 403 "));
    let max = crate::transport::websocket::MAX_CLIENT_MESSAGE;
    // One oversized frame; a message fragmented past the limit; an unmasked frame;
    // a text message where SPICE is binary.
    let unmasked = {
        let mut f = vec![0x82, 4];
        f.extend_from_slice(b"REDQ");
        f
    };
    let fragmented: Vec<u8> = (0..=max / 4096)
        .flat_map(|i| frame(false, if i == 0 { 2 } else { 0 }, &[0u8; 4096]))
        .chain(frame(true, 0, b"end"))
        .collect();
    for (what, bytes) in [
        ("oversized frame", frame(true, 2, &vec![0u8; max + 1])),
        ("fragmented past the limit", fragmented),
        ("unmasked frame", unmasked),
        ("text message", frame(true, 1, b"REDQ")),
    ] {
        let mut s = ws_open(&server);
        let t0 = Instant::now();
        let _ = s.write_all(&bytes);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(t0.elapsed() < Duration::from_secs(5), "{what}: not closed");
        assert!(
            !rest.windows(4).any(|w| w == b"REDQ"),
            "{what}: got a link reply"
        );
    }
    let c = TestClient::connect(&server.local_addr(), opts(PW)).unwrap();
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
}

// ---------------------------------------------------------------------------
// SASL at the link level

fn start_sasl(certs: &Certs) -> SpiceServer {
    let users = crate::sasl::users::entry("alice", "wonderland", 4096).unwrap();
    SpiceServer::start(
        Config {
            listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            password: None,
            force_raw_images: false,
            playback_compression: true,
            jpeg: Default::default(),
            streaming_video: Default::default(),
            transport: TransportConfig {
                tls: Some(TlsListen {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    x509_dir: certs.dir.clone(),
                }),
                sasl: Some(Arc::new(crate::sasl::Users::parse(&users).unwrap())),
                ..TransportConfig::default()
            },
        },
        ports(&Arc::new(Recorder::default())),
    )
    .unwrap()
}

/// Link MAIN with the SASL cap; returns the stream positioned after the link reply,
/// and the server's common caps.
fn sasl_link_reply<S: Read + Write>(s: &mut S) -> u32 {
    let mut p = main_params("");
    p.common_caps[0] |= 1 << common_cap::AUTH_SASL;
    s.write_all(&crate::client::link::encode_link_mess(&p))
        .unwrap();
    let mut reply = [0u8; 16 + 178 + 4];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(
        u32::from_le_bytes(reply[16..20].try_into().unwrap()),
        link_err::OK
    );
    assert!(
        reply[20..20 + 162].iter().all(|&b| b == 0),
        "no RSA key with SASL"
    );
    u32::from_le_bytes(reply[16 + 178..].try_into().unwrap())
}

fn put<W: Write>(s: &mut W, d: &[u8]) {
    s.write_all(&(d.len() as u32).to_le_bytes()).unwrap();
    s.write_all(d).unwrap();
}

fn sasl_plain<S: Read + Write>(s: &mut S, mech: &str, data: &[u8]) -> (u32, u32) {
    s.write_all(&common_cap::AUTH_SASL.to_le_bytes()).unwrap();
    let mut n = [0u8; 4];
    s.read_exact(&mut n).unwrap();
    let mut list = vec![0u8; u32::from_le_bytes(n) as usize];
    s.read_exact(&mut list).unwrap();
    assert_eq!(list, b"SCRAM-SHA-256,PLAIN");
    put(s, mech.as_bytes());
    let mut with_nul = data.to_vec();
    with_nul.push(0);
    put(s, &with_nul);
    // Reply length (0), complete, then auth result and (if accepted) link result.
    let mut r = [0u8; 5];
    s.read_exact(&mut r).unwrap();
    assert_eq!(r, [0, 0, 0, 0, 1]);
    let mut res = [0u8; 4];
    s.read_exact(&mut res).unwrap();
    let auth = u32::from_le_bytes(res);
    let mut link_res = [0u8; 4];
    if auth == 0 {
        s.read_exact(&mut link_res).unwrap();
    }
    (auth, u32::from_le_bytes(link_res))
}

#[test]
fn sasl_needs_tls_and_checks_passwords() {
    let certs = certs("sasl");
    let server = start_sasl(&certs);
    assert_eq!(server.auth(), "sasl");
    // Every channel refuses plaintext: SASL's mechanisms are offered over TLS only.
    let mut s = TcpStream::connect(plain_addr(&server)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    match link(&mut s, &main_params("")) {
        Err(Error::LinkRefused(code)) => assert_eq!(code, link_err::NEED_SECURED),
        other => panic!("{other:?}"),
    }
    let tls = server.tls_addr().unwrap();
    let mut s = tls_connect(tls, &certs.ca_der).unwrap();
    let caps = sasl_link_reply(&mut s);
    assert_eq!(caps & (1 << common_cap::AUTH_SPICE), 0);
    assert_ne!(caps & (1 << common_cap::AUTH_SASL), 0);
    assert_eq!(
        sasl_plain(&mut s, "PLAIN", b"\0alice\0wonderland"),
        (0, link_err::OK)
    );
    let mut s = tls_connect(tls, &certs.ca_der).unwrap();
    sasl_link_reply(&mut s);
    assert_eq!(sasl_plain(&mut s, "PLAIN", b"\0alice\0Wonderland").0, 1);
    // A client that picks the ticket while SASL is on: INVALID_DATA.
    let mut s = tls_connect(tls, &certs.ca_der).unwrap();
    sasl_link_reply(&mut s);
    let reply = exchange(&mut s, &common_cap::AUTH_SPICE.to_le_bytes());
    assert_eq!(
        u32::from_le_bytes(reply[16..20].try_into().unwrap()),
        link_err::INVALID_DATA
    );
    // A mechanism we did not offer: INVALID_DATA.
    let mut s = tls_connect(tls, &certs.ca_der).unwrap();
    sasl_link_reply(&mut s);
    s.write_all(&common_cap::AUTH_SASL.to_le_bytes()).unwrap();
    let mut n = [0u8; 4];
    s.read_exact(&mut n).unwrap();
    s.read_exact(&mut vec![0u8; u32::from_le_bytes(n) as usize])
        .unwrap();
    let mut m = Vec::new();
    put(&mut m, b"ANONYMOUS");
    let reply = exchange(&mut s, &m);
    assert_eq!(
        u32::from_le_bytes(reply[16..20].try_into().unwrap()),
        link_err::INVALID_DATA
    );
    // And a good login still works.
    let mut s = tls_connect(tls, &certs.ca_der).unwrap();
    sasl_link_reply(&mut s);
    assert_eq!(
        sasl_plain(&mut s, "PLAIN", b"alice\0alice\0wonderland"),
        (0, link_err::OK)
    );
}
