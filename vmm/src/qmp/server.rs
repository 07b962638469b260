//! Listening sockets and client connections, on plain threads: per client a
//! reader (runs the session, so a slow command holds up only that client) and a
//! writer fed through a bounded queue. A client that stops reading fills its
//! queue and is disconnected; nobody else waits for it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tracing::{debug, info, warn};

use super::backend::QmpBackend;
use super::events::{EventSink, Monitor};
use super::session::{Flow, Session};
use super::socket_path::{self, BoundSocket};

/// Messages queued for one client before it counts as not reading.
const QUEUE: usize = 256;
/// Connections at once; more are closed at accept.
const MAX_CLIENTS: usize = 32;
/// How long `shutdown` lets writers flush the last replies and events.
const FLUSH_TIME: Duration = Duration::from_secs(2);

/// `--control`: where the monitor listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlSpec {
    Unix(PathBuf),
    /// HOST:PORT, resolved when the server starts.
    Tcp(String),
    None,
}

impl FromStr for ControlSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            return Ok(ControlSpec::None);
        }
        if let Some(p) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            return Ok(ControlSpec::Unix(p.into()));
        }
        if let Some(a) = s
            .strip_prefix("tcp:")
            .filter(|a| a.rsplit_once(':').is_some())
        {
            return Ok(ControlSpec::Tcp(a.into()));
        }
        Err(format!(
            "'{s}' is not a control socket: use unix:PATH, tcp:HOST:PORT or none"
        ))
    }
}

impl ControlSpec {
    /// Check what can be checked before the machine is built: TCP addresses
    /// resolve, and are loopback unless `allow_remote`.
    pub fn validate(&self, allow_remote: bool) -> anyhow::Result<()> {
        if let ControlSpec::Tcp(a) = self {
            tcp_addrs(a, allow_remote)?;
        }
        Ok(())
    }
}

fn tcp_addrs(a: &str, allow_remote: bool) -> anyhow::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = a
        .to_socket_addrs()
        .with_context(|| format!("control address {a}"))?
        .collect();
    if !allow_remote && addrs.iter().any(|s| !s.ip().is_loopback()) {
        bail!(
            "--control tcp:{a} is not a loopback address: anyone who can reach it controls the VM (add --control-allow-remote to mean it)"
        );
    }
    Ok(addrs)
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }
    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.write_all(buf),
            Stream::Tcp(s) => s.write_all(buf),
        }
    }
}

/// A client's output queue. `None` in the queue means "flush and close".
struct Outbox {
    tx: SyncSender<Option<Arc<str>>>,
    /// For cutting the connection off without waiting for the writer.
    stream: Stream,
    closed: AtomicBool,
}

impl Outbox {
    fn kill(&self) {
        self.closed.store(true, Ordering::Release);
        self.stream.shutdown();
    }

    /// Close after what is queued has been written.
    fn finish(&self) {
        if self.tx.try_send(None).is_err() {
            self.kill();
        }
    }
}

impl EventSink for Outbox {
    fn deliver(&self, line: &Arc<str>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        match self.tx.try_send(Some(line.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                warn!("QMP client is not reading its replies; disconnecting it");
                self.kill();
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

fn writer(mut stream: Stream, rx: Receiver<Option<Arc<str>>>, outbox: Arc<Outbox>) {
    while let Ok(Some(line)) = rx.recv() {
        // QEMU ends every message with CR LF.
        let r = stream
            .write_all(line.as_bytes())
            .and_then(|()| stream.write_all(b"\r\n"));
        if r.is_err() {
            break;
        }
    }
    outbox.kill();
}

fn reader(mut stream: Stream, mut session: Session, outbox: Arc<Outbox>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if session.feed(&buf[..n]) == Flow::Close {
                    break;
                }
            }
        }
    }
    drop(session);
    outbox.finish();
}

struct Client {
    outbox: Arc<Outbox>,
    writer: JoinHandle<()>,
}

struct Shared {
    backend: Arc<dyn QmpBackend>,
    monitor: Arc<Monitor>,
    clients: Mutex<Vec<Client>>,
    stopping: AtomicBool,
}

impl Shared {
    fn serve(&self, stream: Stream) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let mut clients = self.clients.lock().unwrap();
        clients.retain(|c| !c.writer.is_finished());
        if clients.len() >= MAX_CLIENTS {
            warn!("QMP: {MAX_CLIENTS} clients already connected; refusing another");
            return;
        }
        let (Ok(w), Ok(k)) = (stream.try_clone(), stream.try_clone()) else {
            return;
        };
        let (tx, rx) = sync_channel(QUEUE);
        let outbox = Arc::new(Outbox {
            tx,
            stream: k,
            closed: AtomicBool::new(false),
        });
        let (session, flow) =
            Session::start(self.backend.clone(), self.monitor.clone(), outbox.clone());
        let ob = outbox.clone();
        let Ok(writer) = std::thread::Builder::new()
            .name("qmp-out".into())
            .spawn(move || writer(w, rx, ob))
        else {
            return;
        };
        if flow == Flow::Continue {
            let ob = outbox.clone();
            let spawned = std::thread::Builder::new()
                .name("qmp-in".into())
                .spawn(move || reader(stream, session, ob));
            if spawned.is_err() {
                outbox.finish();
            }
        }
        clients.push(Client { outbox, writer });
    }
}

enum Listener {
    Unix(BoundSocket),
    Tcp(TcpListener),
}

/// The running control server.
pub struct ControlServer {
    shared: Arc<Shared>,
    unix: Option<Arc<BoundSocket>>,
    /// What to tell the user: `unix:PATH` or `tcp:ADDR`.
    pub description: String,
}

impl ControlServer {
    /// Listen as `spec` says (`None` for the default runtime-directory socket).
    /// Returns `Ok(None)` for `--control none`.
    pub fn start(
        spec: Option<&ControlSpec>,
        allow_remote: bool,
        backend: Arc<dyn QmpBackend>,
        monitor: Arc<Monitor>,
    ) -> anyhow::Result<Option<ControlServer>> {
        let listener = match spec {
            Some(ControlSpec::None) => return Ok(None),
            Some(ControlSpec::Unix(p)) => Listener::Unix(socket_path::bind(p)?),
            None => Listener::Unix(socket_path::bind(&socket_path::default_path()?)?),
            Some(ControlSpec::Tcp(a)) => {
                let addrs = tcp_addrs(a, allow_remote)?;
                Listener::Tcp(
                    TcpListener::bind(&addrs[..]).with_context(|| format!("listen on {a}"))?,
                )
            }
        };
        let shared = Arc::new(Shared {
            backend,
            monitor,
            clients: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let (description, unix) = match listener {
            Listener::Unix(b) => {
                let b = Arc::new(b);
                let desc = format!("unix:{}", b.path.display());
                let (sh, bs) = (shared.clone(), b.clone());
                spawn_acceptor(move || loop {
                    match bs.listener.accept() {
                        Ok((s, _)) => sh.serve(Stream::Unix(s)),
                        Err(e) => accept_failed(e),
                    }
                })?;
                (desc, Some(b))
            }
            Listener::Tcp(l) => {
                let desc = format!("tcp:{}", l.local_addr()?);
                let sh = shared.clone();
                spawn_acceptor(move || loop {
                    match l.accept() {
                        Ok((s, peer)) => {
                            debug!(%peer, "QMP client");
                            let _ = s.set_nodelay(true);
                            sh.serve(Stream::Tcp(s))
                        }
                        Err(e) => accept_failed(e),
                    }
                })?;
                (desc, None)
            }
        };
        info!("QMP control socket at {description}");
        Ok(Some(ControlServer {
            shared,
            unix,
            description,
        }))
    }

    /// Let clients read their last replies and events (SHUTDOWN), close them,
    /// and remove the socket file.
    pub fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(u) = &self.unix {
            u.remove();
        }
        let clients = std::mem::take(&mut *self.shared.clients.lock().unwrap());
        for c in &clients {
            c.outbox.finish();
        }
        let deadline = Instant::now() + FLUSH_TIME;
        for c in clients {
            while !c.writer.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            c.outbox.kill();
        }
    }
}

fn spawn_acceptor(f: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("qmp-accept".into())
        .spawn(f)
        .context("spawn QMP accept thread")?;
    Ok(())
}

fn accept_failed(e: std::io::Error) {
    // EMFILE and the like: back off rather than spin.
    warn!("QMP accept failed: {e}");
    std::thread::sleep(Duration::from_millis(100));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_specs() {
        assert_eq!("none".parse(), Ok(ControlSpec::None));
        assert_eq!(
            "unix:/tmp/q".parse(),
            Ok(ControlSpec::Unix("/tmp/q".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:4444".parse(),
            Ok(ControlSpec::Tcp("127.0.0.1:4444".into()))
        );
        for bad in ["unix:", "tcp:", "tcp:4444", "stdio", ""] {
            assert!(bad.parse::<ControlSpec>().is_err(), "{bad:?}");
        }
    }
}
