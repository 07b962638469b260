//! The public server object, its runtime and listener, the session table and the
//! client registry that feeds `clients()` and `subscribe()`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::auth::{Ticket, TicketKey};
use crate::channel::{self, display::DisplayHub};
use crate::link::{accept_link, LinkRequest};
use crate::proto::{channel as ch, link_err};
use crate::{ClientInfo, Config, Error, Expiry, InputSink, Listen, Rect, SpiceEvent, Surface};

pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}
pub type BoxStream = Box<dyn Stream>;

/// A client that does not finish the link stage in this time is dropped.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Events are dropped (with a warning) for a subscriber this far behind.
const EVENT_QUEUE: usize = 1024;

/// Locks a mutex, ignoring poisoning: every critical section here leaves the data
/// consistent, and a panic elsewhere must not take the display down.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct SessionEntry {
    id: u32,
    kill: watch::Sender<bool>,
}

pub struct Shared {
    key: TicketKey,
    ticket: Mutex<Ticket>,
    pub input: Arc<dyn InputSink>,
    pub force_raw: bool,
    session: Mutex<Option<SessionEntry>>,
    pub display: Mutex<DisplayHub>,
    clients: Mutex<BTreeMap<u64, ClientInfo>>,
    next_conn: AtomicU64,
    subscribers: Mutex<Vec<SyncSender<SpiceEvent>>>,
    /// LED state pushed by `set_keyboard_leds` (None until first call).
    pub leds: watch::Sender<Option<u8>>,
    shutdown: watch::Sender<bool>,
    /// Epoch of the multimedia clock (MAIN_INIT.multi_media_time).
    pub epoch: Instant,
    live: AtomicUsize,
    pub next_image_id: AtomicU64,
}

impl Shared {
    fn emit(&self, ev: SpiceEvent) {
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| match s.try_send(ev.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                warn!("SPICE event subscriber is not reading; event dropped");
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }

    pub fn mm_time(&self) -> u32 {
        self.epoch.elapsed().as_millis() as u32
    }
}

/// One registered channel: listed by `clients()` until dropped, then Disconnected.
pub struct Registration {
    shared: Arc<Shared>,
    key: u64,
    pub info: ClientInfo,
}

impl Registration {
    fn new(shared: &Arc<Shared>, info: ClientInfo, server: ClientInfo) -> Registration {
        let key = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        lock(&shared.clients).insert(key, info.clone());
        shared.emit(SpiceEvent::Connected {
            server,
            client: info.clone(),
        });
        Registration {
            shared: shared.clone(),
            key,
            info,
        }
    }

    pub fn initialized(&self) {
        self.shared.emit(SpiceEvent::Initialized {
            client: self.info.clone(),
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.shared.clients).remove(&self.key);
        self.shared.emit(SpiceEvent::Disconnected {
            client: self.info.clone(),
        });
    }
}

/// Counts connection tasks so shutdown can wait for them briefly.
struct Live(Arc<Shared>);
impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Where a connection comes from (host, port, family) for ClientInfo.
#[derive(Clone)]
struct Peer {
    host: String,
    port: u16,
    family: &'static str,
}

fn tcp_peer(a: std::net::SocketAddr) -> Peer {
    Peer {
        host: a.ip().to_string(),
        port: a.port(),
        family: if a.is_ipv4() { "ipv4" } else { "ipv6" },
    }
}

pub struct SpiceServer {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    local: Listen,
    unix_path: Option<PathBuf>,
}

impl SpiceServer {
    /// Generates the ticket key, binds, and starts serving on background threads.
    pub fn start(config: Config, input: Arc<dyn InputSink>) -> Result<SpiceServer, Error> {
        let key = TicketKey::generate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("spice")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let (listener, local, unix_path) = {
            let _enter = runtime.enter();
            bind(&config.listen)?
        };
        let shared = Arc::new(Shared {
            key,
            ticket: Mutex::new(Ticket {
                password: config.password,
                expiry: Expiry::Never,
            }),
            input,
            force_raw: config.force_raw_images,
            session: Mutex::new(None),
            display: Mutex::new(DisplayHub::default()),
            clients: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(1),
            subscribers: Mutex::new(Vec::new()),
            leds: watch::channel(None).0,
            shutdown: watch::channel(false).0,
            epoch: Instant::now(),
            live: AtomicUsize::new(0),
            next_image_id: AtomicU64::new(1),
        });
        runtime.spawn(accept_loop(listener, shared.clone()));
        info!(listen = ?local, "SPICE server listening");
        Ok(SpiceServer {
            shared,
            runtime: Some(runtime),
            local,
            unix_path,
        })
    }

    pub fn local_addr(&self) -> Listen {
        self.local.clone()
    }

    /// Publishes a new frame. Never blocks on clients: it records the surface and the
    /// dirty rectangles for each display client and wakes them.
    pub fn update(&self, surface: Arc<Surface>, dirty: &[Rect]) {
        lock(&self.shared.display).update(surface, dirty);
    }

    pub fn set_password(&self, password: Option<String>) {
        lock(&self.shared.ticket).password = password;
    }

    pub fn expire_password(&self, expiry: Expiry) {
        lock(&self.shared.ticket).expiry = expiry;
    }

    /// Pushes the guest keyboard LEDs (PS/2 bits) to inputs clients at once, instead of
    /// waiting for the next poll of `InputSink::leds`.
    pub fn set_keyboard_leds(&self, leds: u8) {
        self.shared.leds.send_replace(Some(leds & 7));
    }

    /// Close the current client session, all of its channels (QMP
    /// `set_password connected=disconnect`).
    pub fn disconnect_all(&self) {
        if let Some(old) = lock(&self.shared.session).take() {
            info!(session_id = old.id, "SPICE client disconnected by request");
            old.kill.send_replace(true);
        }
    }

    pub fn auth(&self) -> &'static str {
        if lock(&self.shared.ticket).password.is_some() {
            "spice"
        } else {
            "none"
        }
    }

    pub fn clients(&self) -> Vec<ClientInfo> {
        lock(&self.shared.clients).values().cloned().collect()
    }

    pub fn subscribe(&self) -> Receiver<SpiceEvent> {
        let (tx, rx) = std::sync::mpsc::sync_channel(EVENT_QUEUE);
        lock(&self.shared.subscribers).push(tx);
        rx
    }

    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        self.shared.shutdown.send_replace(true);
        if let Some(s) = lock(&self.shared.session).take() {
            s.kill.send_replace(true);
        }
        // Let channel tasks send their FIN; they exit promptly once killed.
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.shared.live.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Safe from any context, including inside another tokio runtime.
        runtime.shutdown_background();
        if let Some(p) = self.unix_path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for SpiceServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind(listen: &Listen) -> Result<(Listener, Listen, Option<PathBuf>), Error> {
    match listen {
        Listen::Tcp(addr) => {
            let err = |source| Error::Bind {
                addr: addr.to_string(),
                source,
            };
            let l = std::net::TcpListener::bind(addr).map_err(err)?;
            l.set_nonblocking(true).map_err(err)?;
            let local = l.local_addr().map_err(err)?;
            let l = TcpListener::from_std(l).map_err(err)?;
            Ok((Listener::Tcp(l), Listen::Tcp(local), None))
        }
        Listen::Unix(path) => {
            let err = |source| Error::Bind {
                addr: path.display().to_string(),
                source,
            };
            remove_stale_socket(path);
            let l = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
            l.set_nonblocking(true).map_err(err)?;
            let l = UnixListener::from_std(l).map_err(err)?;
            Ok((
                Listener::Unix(l),
                Listen::Unix(path.clone()),
                Some(path.clone()),
            ))
        }
    }
}

/// A socket file nobody listens on (left by a killed process) would make bind fail.
fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        let accepted: std::io::Result<(BoxStream, Peer, Peer)> = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = async {
                match &listener {
                    Listener::Tcp(l) => {
                        let (s, a) = l.accept().await?;
                        let _ = s.set_nodelay(true);
                        let local = s.local_addr()?;
                        Ok((Box::new(s) as BoxStream, tcp_peer(a), tcp_peer(local)))
                    }
                    Listener::Unix(l) => {
                        let (s, _) = l.accept().await?;
                        let path = s
                            .local_addr()
                            .ok()
                            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                            .unwrap_or_default();
                        let p = Peer { host: path, port: 0, family: "unix" };
                        Ok((Box::new(s) as BoxStream, p.clone(), p))
                    }
                }
            } => r,
        };
        match accepted {
            Ok((stream, peer, local)) => {
                shared.live.fetch_add(1, Ordering::SeqCst);
                let live = Live(shared.clone());
                tokio::spawn(async move {
                    handle_connection(&live.0, stream, peer, local).await;
                    drop(live);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!("SPICE accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle_connection(shared: &Arc<Shared>, mut stream: BoxStream, peer: Peer, local: Peer) {
    let mut stop = shared.shutdown.subscribe();
    let linked = tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        r = tokio::time::timeout(LINK_TIMEOUT, accept_link(&mut stream, &shared.key, |given, now| {
            lock(&shared.ticket).accepts(given, now)
        })) => r,
    };
    let req = match linked {
        Ok(Ok(req)) => req,
        Ok(Err(f)) => {
            warn!(host = %peer.host, code = ?f.code, "SPICE link refused: {}", f.reason);
            return;
        }
        Err(_) => {
            warn!(host = %peer.host, "SPICE link timed out");
            return;
        }
    };
    let Some((session_id, kill)) = join_session(shared, &req) else {
        warn!(
            connection_id = req.connection_id,
            "SPICE link with unknown connection id"
        );
        let _ = stream
            .write_all(&link_err::BAD_CONNECTION_ID.to_le_bytes())
            .await;
        return;
    };
    if stream.write_all(&link_err::OK.to_le_bytes()).await.is_err() {
        end_session_if_main(shared, &req, session_id);
        return;
    }
    let info = |p: &Peer| ClientInfo {
        host: p.host.clone(),
        port: p.port,
        family: p.family.to_string(),
        connection_id: session_id,
        channel_type: req.channel_type,
        channel_id: req.channel_id,
        tls: false,
    };
    let reg = Registration::new(shared, info(&peer), info(&local));
    debug!(
        channel = req.channel_type,
        session_id, "SPICE channel linked"
    );
    channel::run(shared, stream, &req, session_id, kill, &reg).await;
    end_session_if_main(shared, &req, session_id);
}

/// MAIN starts a new session (closing the current one, as spice-server does without
/// multi-client support); other channels must name the current session.
fn join_session(shared: &Shared, req: &LinkRequest) -> Option<(u32, watch::Receiver<bool>)> {
    let mut session = lock(&shared.session);
    if req.channel_type == ch::MAIN {
        if let Some(old) = session.take() {
            info!(
                session_id = old.id,
                "new SPICE client replaces the current one"
            );
            old.kill.send_replace(true);
        }
        let id = loop {
            let id: u32 = rand::random();
            if id != 0 {
                break id;
            }
        };
        let (kill, rx) = watch::channel(false);
        *session = Some(SessionEntry { id, kill });
        return Some((id, rx));
    }
    match &*session {
        Some(s) if s.id == req.connection_id => Some((s.id, s.kill.subscribe())),
        _ => None,
    }
}

/// A session lives as long as its MAIN channel.
fn end_session_if_main(shared: &Shared, req: &LinkRequest, session_id: u32) {
    if req.channel_type != ch::MAIN {
        return;
    }
    let mut session = lock(&shared.session);
    if session.as_ref().is_some_and(|s| s.id == session_id) {
        if let Some(s) = session.take() {
            s.kill.send_replace(true);
        }
    }
}
