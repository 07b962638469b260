//! The stages before a channel, fed with arbitrary client bytes over an in-memory
//! stream: the link stage (ticket and SASL, NEED_SECURED, the registry's channels)
//! and the transport stage (sniffing, HTTP, WebSocket).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::KeyPool;
use crate::link::{accept_link, LinkPolicy};
use crate::sasl::{SaslAuth, Users};
use crate::transport::{self, ChannelSet, Established, Transport};

struct Fixture {
    rt: tokio::runtime::Runtime,
    keys: Arc<KeyPool>,
    sasl: SaslAuth,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let users = crate::sasl::users::entry("alice", "wonderland", 4096).expect("entry");
        Fixture {
            keys: KeyPool::start(4).expect("key pool"),
            sasl: SaslAuth::new(Arc::new(Users::parse(&users).expect("users"))).expect("sasl"),
            rt,
        }
    })
}

/// Runs `server` against a client that sends `data` and then half-closes, draining
/// whatever the server answers; bounded in time.
fn drive<F, Fut>(data: &[u8], server: F)
where
    F: FnOnce(tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let f = fixture();
    let (mut client, srv) = tokio::io::duplex(64 * 1024);
    let data = data.to_vec();
    f.rt.block_on(async move {
        let c = async move {
            let _ = client.write_all(&data).await;
            let _ = client.shutdown().await;
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            tokio::join!(c, server(srv));
        })
        .await;
    });
}

/// The link stage: the first byte picks plaintext/TLS (bit 0), ticket/SASL (bit 1)
/// and the secure channels (bits 2-3: none, main, display, all); the rest is what
/// the client sends. The channels offered are the fuzzing machine's registry's.
pub fn link(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let registry = &super::world().registry;
    drive(rest, |mut s| async move {
        let policy = LinkPolicy {
            keys: &f.keys,
            denied_delay: Duration::ZERO,
            secure: mode & 1 != 0,
            secure_channels: match (mode >> 2) & 3 {
                0 => ChannelSet::NONE,
                1 => ChannelSet::parse("main").expect("main"),
                2 => ChannelSet::parse("display").expect("display"),
                _ => ChannelSet::ALL,
            },
            sasl: (mode & 2 != 0).then_some(&f.sasl),
        };
        let _ = accept_link(
            &mut s,
            &policy,
            |t, id| registry.link_caps(t, id),
            |pw, _| pw == b"pw",
        )
        .await;
    });
}

/// The transport stage on the plain listener: sniffing, one HTTP request, the page,
/// or a WebSocket whose SPICE bytes are then read to the end.
pub fn transport(data: &[u8]) {
    drive(data, |s| async move {
        let t = Transport {
            tls: None,
            spice_html5: Some(transport::web::DEFAULT_SPICE_HTML5.into()),
        };
        if let Ok(Established::Spice(mut stream, _)) =
            transport::establish(&t, Box::new(s), false).await
        {
            let mut sink = vec![0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    });
}

/// The HTTP request parser and the upgrade checks, without I/O.
pub fn http(data: &[u8]) {
    if let Ok(Some((req, _))) = transport::http::parse(data) {
        if transport::websocket::is_upgrade(&req) {
            let _ = transport::websocket::accept(&req, data.len().is_multiple_of(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::link::{default_common_caps, encode_link_mess, LinkParams};
    use crate::proto::{channel as ch, common_cap};

    /// A deterministic stand-in for the fuzzer: well-formed link messages for
    /// offered and unknown channels under every mode, cut at every length and
    /// followed by garbage; HTTP requests and WebSocket upgrades, whole and cut.
    #[test]
    fn connection_stages_survive_well_formed_and_cut_input() {
        let mut links = Vec::new();
        for (t, id) in [(ch::MAIN, 0), (ch::DISPLAY, 1), (ch::INPUTS, 0), (9, 0)] {
            let mut caps = default_common_caps();
            caps[0] |= 1 << common_cap::AUTH_SASL;
            let mut m = encode_link_mess(&LinkParams {
                connection_id: 0,
                channel_type: t,
                channel_id: id,
                common_caps: caps,
                channel_caps: vec![],
                password: "pw",
            });
            // The auth mechanism a client picks next, then SASL's mechanism name.
            m.extend_from_slice(&common_cap::AUTH_SASL.to_le_bytes());
            m.extend_from_slice(&5u32.to_le_bytes());
            m.extend_from_slice(b"PLAIN");
            m.extend_from_slice(&[0xff; 40]);
            links.push(m);
        }
        for mode in 0..16u8 {
            for m in &links {
                for cut in [4, 16, m.len() - 49, m.len() - 40, m.len()] {
                    let mut data = vec![mode];
                    data.extend_from_slice(&m[..cut]);
                    link(&data);
                }
            }
        }
        link(&[]);

        let upgrade = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n";
        let page = b"GET /spicebox.js HTTP/1.1\r\nHost: x\r\n\r\n";
        for req in [&upgrade[..], &page[..], b"REDQ\x02\0\0\0", b"GET \r\n\r\n"] {
            for cut in 0..=req.len() {
                http(&req[..cut]);
            }
            transport(req);
            transport(&req[..req.len() / 2]);
        }
        let mut ws = upgrade.to_vec();
        ws.extend_from_slice(&[
            0x82,
            0x84,
            1,
            2,
            3,
            4,
            b'R' ^ 1,
            b'E' ^ 2,
            b'D' ^ 3,
            b'Q' ^ 4,
        ]);
        transport(&ws);
    }
}
