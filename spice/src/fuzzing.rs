//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`): the link
//! stage (ticket and SASL) and the transport stage (sniffing, HTTP, WebSocket) fed
//! with arbitrary client bytes over an in-memory stream.

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

/// The link stage: the first byte picks plaintext/TLS, ticket/SASL and whether MAIN
/// must be secure; the rest is what the client sends.
pub fn link(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    drive(rest, |mut s| async move {
        let policy = LinkPolicy {
            keys: &f.keys,
            denied_delay: Duration::ZERO,
            secure: mode & 1 != 0,
            secure_channels: if mode & 4 != 0 {
                ChannelSet::parse("main").expect("main")
            } else {
                ChannelSet::NONE
            },
            sasl: (mode & 2 != 0).then_some(&f.sasl),
        };
        let _ = accept_link(&mut s, &policy, |pw, _| pw == b"pw").await;
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
            let _ = transport::websocket::accept(&req, data.len() % 2 == 0);
        }
    }
}
