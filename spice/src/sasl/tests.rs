//! The SASL exchange against rsasl's own client, on the wire as spice-gtk frames it.

use std::sync::Arc;
use std::time::Duration;

use rsasl::prelude::{Mechname, SASLClient, SASLConfig, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

fn auth() -> SaslAuth {
    let line = users::entry("alice", "wonderland", 4096).unwrap();
    SaslAuth::new(Arc::new(Users::parse(&line).unwrap())).unwrap()
}

/// Client side of the wire: u32 length + data + NUL.
async fn put(c: &mut DuplexStream, data: Option<&[u8]>) {
    match data {
        Some(d) => {
            c.write_u32_le(d.len() as u32 + 1).await.unwrap();
            c.write_all(d).await.unwrap();
            c.write_u8(0).await.unwrap();
        }
        None => c.write_u32_le(0).await.unwrap(),
    }
}

/// (data without its NUL, complete)
async fn get_reply(c: &mut DuplexStream) -> (Option<Vec<u8>>, bool) {
    let len = c.read_u32_le().await.unwrap() as usize;
    let data = if len == 0 {
        None
    } else {
        let mut d = vec![0u8; len];
        c.read_exact(&mut d).await.unwrap();
        assert_eq!(d.pop(), Some(0), "server data ends in NUL");
        Some(d)
    };
    (data, c.read_u8().await.unwrap() == 1)
}

async fn mechlist(c: &mut DuplexStream) -> String {
    let n = c.read_u32_le().await.unwrap() as usize;
    let mut l = vec![0u8; n];
    c.read_exact(&mut l).await.unwrap();
    String::from_utf8(l).unwrap()
}

async fn choose(c: &mut DuplexStream, mech: &str) {
    c.write_u32_le(mech.len() as u32).await.unwrap();
    c.write_all(mech.as_bytes()).await.unwrap();
}

/// Runs rsasl's client for `mech` against `authenticate`; returns the server's result
/// and the u32 the client read after completion (0 accepted, 1 rejected).
async fn login(mech: &str, user: &str, password: &str) -> (Result<(String, String), Failure>, u32) {
    let auth = auth();
    let (mut c, mut s) = tokio::io::duplex(1 << 16);
    let server = async move { authenticate(&mut s, &auth, true, Duration::from_millis(1)).await };
    let client = async move {
        assert_eq!(mechlist(&mut c).await, "SCRAM-SHA-256,PLAIN");
        let config = SASLConfig::with_credentials(None, user.into(), password.into()).unwrap();
        let mut session = SASLClient::new(config)
            .start_suggested(&[Mechname::parse(mech.as_bytes()).unwrap()])
            .unwrap();
        choose(&mut c, mech).await;
        let mut out = Vec::new();
        session.step(None, &mut out).unwrap();
        put(&mut c, Some(&out)).await;
        loop {
            let (data, complete) = get_reply(&mut c).await;
            if complete {
                if let Some(d) = data {
                    // The server's final message (SCRAM's signature) must verify.
                    let mut out = Vec::new();
                    let st = session.step(Some(&d), &mut out);
                    assert!(matches!(st, Ok(State::Finished(_))), "{st:?}");
                }
                return c.read_u32_le().await.unwrap();
            }
            let mut out = Vec::new();
            session.step(data.as_deref(), &mut out).unwrap();
            put(&mut c, Some(&out)).await;
        }
    };
    tokio::join!(server, client)
}

#[tokio::test]
async fn scram_and_plain_log_in_with_the_right_password() {
    for mech in ["SCRAM-SHA-256", "PLAIN"] {
        let (r, code) = login(mech, "alice", "wonderland").await;
        assert_eq!(r, Ok(("alice".into(), mech.into())), "{mech}");
        assert_eq!(code, 0, "{mech}");
    }
}

#[tokio::test]
async fn wrong_password_or_user_is_rejected() {
    for (mech, user, pw) in [
        ("PLAIN", "alice", "Wonderland"),
        ("PLAIN", "bob", "wonderland"),
        ("SCRAM-SHA-256", "alice", "Wonderland"),
    ] {
        let auth = auth();
        let (mut c, mut s) = tokio::io::duplex(1 << 16);
        let server = async move { authenticate(&mut s, &auth, true, Duration::ZERO).await };
        let client = async move {
            mechlist(&mut c).await;
            let config = SASLConfig::with_credentials(None, user.into(), pw.into()).unwrap();
            let mut session = SASLClient::new(config)
                .start_suggested(&[Mechname::parse(mech.as_bytes()).unwrap()])
                .unwrap();
            choose(&mut c, mech).await;
            let mut out = Vec::new();
            session.step(None, &mut out).unwrap();
            put(&mut c, Some(&out)).await;
            let (mut data, mut complete) = get_reply(&mut c).await;
            while !complete {
                let mut out = Vec::new();
                session.step(data.as_deref(), &mut out).unwrap();
                put(&mut c, Some(&out)).await;
                (data, complete) = get_reply(&mut c).await;
            }
            assert_eq!(data, None);
            let code = c.read_u32_le().await.unwrap();
            let n = c.read_u32_le().await.unwrap() as usize;
            let mut why = vec![0u8; n];
            c.read_exact(&mut why).await.unwrap();
            (code, why)
        };
        let (r, (code, why)) = tokio::join!(server, client);
        assert!(
            matches!(r, Err(Failure::Rejected(_))),
            "{mech} {user}: {r:?}"
        );
        assert_eq!(code, 1);
        assert_eq!(why, b"Authentication failed\0");
    }
}

/// Drives the server with raw client bytes and returns its result and output.
async fn raw(secure: bool, client_bytes: Vec<u8>) -> (Result<(String, String), Failure>, Vec<u8>) {
    let auth = auth();
    let (mut c, mut s) = tokio::io::duplex(1 << 16);
    let server = async move {
        let r = authenticate(&mut s, &auth, secure, Duration::ZERO).await;
        drop(s);
        r
    };
    let client = async move {
        c.write_all(&client_bytes).await.unwrap();
        // Then the client stops sending (a truncated exchange ends in EOF, not a wait).
        c.shutdown().await.unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out).await;
        out
    };
    tokio::join!(server, client)
}

fn blob(d: &[u8]) -> Vec<u8> {
    let mut v = (d.len() as u32 + 1).to_le_bytes().to_vec();
    v.extend_from_slice(d);
    v.push(0);
    v
}

fn mech(name: &str) -> Vec<u8> {
    let mut v = (name.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(name.as_bytes());
    v
}

#[tokio::test]
async fn out_of_order_and_oversized_steps_fail_cleanly() {
    // SCRAM's client-final sent as the first message.
    let mut b = mech("SCRAM-SHA-256");
    b.extend(blob(b"c=biws,r=abc,p=AAAA"));
    let (r, _) = raw(true, b).await;
    assert!(matches!(r, Err(Failure::Rejected(_))), "{r:?}");
    // SCRAM's client-first sent twice: the second is not a client-final.
    let mut b = mech("SCRAM-SHA-256");
    b.extend(blob(b"n,,n=alice,r=clientnonce"));
    b.extend(blob(b"n,,n=alice,r=clientnonce"));
    let (r, _) = raw(true, b).await;
    assert!(matches!(r, Err(Failure::Rejected(_))), "{r:?}");
    // PLAIN without its data.
    let mut b = mech("PLAIN");
    b.extend(0u32.to_le_bytes());
    let (r, _) = raw(true, b).await;
    assert!(matches!(r, Err(Failure::Rejected(_))), "{r:?}");
    // Lengths past the bounds.
    let mut b = mech("PLAIN");
    b.extend((MAX_DATA as u32 + 1).to_le_bytes());
    let (r, _) = raw(true, b).await;
    assert!(matches!(r, Err(Failure::Protocol(_))), "{r:?}");
    let (r, _) = raw(true, 101u32.to_le_bytes().to_vec()).await;
    assert!(matches!(r, Err(Failure::Protocol(_))), "{r:?}");
    let (r, _) = raw(true, 0u32.to_le_bytes().to_vec()).await;
    assert!(matches!(r, Err(Failure::Protocol(_))), "{r:?}");
    // A mechanism we did not offer, and a list of one inside a name.
    for name in [
        "DIGEST-MD5",
        "PLAIN,SCRAM-SHA-256",
        "SCRAM-SHA-256-PLUS",
        "ANONYMOUS",
    ] {
        let (r, _) = raw(true, mech(name)).await;
        assert!(matches!(r, Err(Failure::BadMechanism(_))), "{name}: {r:?}");
    }
    // The client hangs up half way.
    let (r, _) = raw(true, mech("PLAIN")[..6].to_vec()).await;
    assert!(matches!(r, Err(Failure::Protocol(_))), "{r:?}");
}

#[tokio::test]
async fn plaintext_offers_nothing() {
    let mut b = mech("PLAIN");
    b.extend(blob(b"\0alice\0wonderland"));
    let (r, out) = raw(false, b).await;
    assert_eq!(&out[..4], &0u32.to_le_bytes(), "an empty mechanism list");
    assert!(matches!(r, Err(Failure::BadMechanism(_))), "{r:?}");
}
