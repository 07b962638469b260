//! The public server object, its runtime and listeners (plain, TLS), and the
//! session table.
//! The channels it offers come from its ports (`channel::Registry`); the linked
//! channels and their events are kept in `clients.rs`.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::auth::{KeyPool, Ticket};
use crate::channel::conn::DirectSocket;
use crate::channel::display::DisplayChannel;
use crate::channel::session_link::SessionLink;
use crate::channel::{self, ChannelKind, Registry, ServerInfo};
use crate::clients::{Clients, Registration};
use crate::link::{accept_link, LinkPolicy, LinkRequest};
use crate::proto::{channel as ch, link_err};
use crate::sasl::SaslAuth;
use crate::transport::{self, ChannelSet, Established, Transport};
use crate::{ClientInfo, Config, Draw, Error, Expiry, Frame, Listen, Ports, Rect, SpiceEvent};

pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}
pub type BoxStream = Box<dyn Stream>;

/// A client that does not finish the link stage in this time is dropped.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the link stage at once (spice-server has no such limit).
const MAX_LINKS: usize = 32;
/// A refused ticket is answered after this long, to slow down password guessing.
const DENIED_DELAY: Duration = Duration::from_millis(200);
/// Ticket keys kept ready (each link uses a fresh one).
const KEY_POOL: usize = 4;
/// TCP keepalive: first probe after this much silence, then every KEEPALIVE_INTERVAL,
/// so a client that vanished (no FIN, no RST) is noticed within about a minute.
const KEEPALIVE_TIME: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// The link-stage limits; tests shorten them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub link_timeout: Duration,
    pub max_links: usize,
    pub denied_delay: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            link_timeout: LINK_TIMEOUT,
            max_links: MAX_LINKS,
            denied_delay: DENIED_DELAY,
        }
    }
}
/// Locks a mutex, ignoring poisoning: every critical section here leaves the data
/// consistent, and a panic elsewhere must not take the display down.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct SessionEntry {
    id: u32,
    kill: watch::Sender<bool>,
    /// (channel type, channel id) of the linked channels: at most one of each, as
    /// spice-server (`red_client_add_channel`: "duplicate channel type %d id %d").
    channels: HashSet<(u8, u8)>,
    /// Its net test result, shared by its channels.
    link: Arc<SessionLink>,
}

pub struct Shared {
    keys: Arc<KeyPool>,
    limits: Limits,
    links: LinkGate,
    transport: Transport,
    secure_channels: ChannelSet,
    sasl: Option<SaslAuth>,
    ticket: Mutex<Ticket>,
    session: Mutex<Option<SessionEntry>>,
    clients: Arc<Clients>,
    shutdown: watch::Sender<bool>,
    live: AtomicUsize,
    /// The channel kinds this server offers, built from its ports.
    channels: Registry,
    info: ServerInfo,
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
    display: Option<Arc<DisplayChannel>>,
    cursor: Option<Arc<crate::channel::cursor::CursorChannel>>,
    runtime: Option<tokio::runtime::Runtime>,
    local: Listen,
    tls_local: Option<std::net::SocketAddr>,
    unix_path: Option<PathBuf>,
}

impl SpiceServer {
    /// Binds, starts making ticket keys, and starts serving on background threads
    /// the channels that `ports` call for.
    pub fn start(config: Config, ports: Ports) -> Result<SpiceServer, Error> {
        SpiceServer::start_with(config, ports, Limits::default(), Vec::new())
    }

    /// `start`, with other link limits and extra channel kinds (tests).
    pub(crate) fn start_with(
        config: Config,
        ports: Ports,
        limits: Limits,
        extra: Vec<Arc<dyn ChannelKind>>,
    ) -> Result<SpiceServer, Error> {
        let built = Registry::for_ports_with(
            ports,
            config.force_raw_images,
            config.playback_compression,
            (config.jpeg, config.images),
            config.streaming_video,
            extra,
        )?;
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
        let tc = &config.transport;
        let tls = match &tc.tls {
            Some(t) => {
                let acceptor =
                    tokio_rustls::TlsAcceptor::from(transport::tls::server_config(&t.x509_dir)?);
                let _enter = runtime.enter();
                let (l, local, _) = bind(&Listen::Tcp(t.listen))?;
                let Listen::Tcp(addr) = local else {
                    unreachable!("a TCP bind gives a TCP address")
                };
                Some((acceptor, l, addr))
            }
            None => None,
        };
        if tls.is_none() && (tc.sasl.is_some() || !tc.secure_channels.is_empty()) {
            return Err(Error::Tls(
                "SASL and secure channels need the TLS listener".into(),
            ));
        }
        let sasl = tc.sasl.clone().map(SaslAuth::new).transpose()?;
        // SASL's mechanisms are offered over TLS only, so every channel must come that way.
        let secure_channels = if sasl.is_some() {
            ChannelSet::ALL
        } else {
            tc.secure_channels
        };
        let (tls_acceptor, tls_listener, tls_local) = match tls {
            Some((a, l, addr)) => (Some(a), Some(l), Some(addr)),
            None => (None, None, None),
        };
        let keys = KeyPool::start(KEY_POOL)?;
        let shared = Arc::new(Shared {
            keys,
            limits,
            links: LinkGate::new(limits.max_links),
            transport: Transport {
                tls: tls_acceptor,
                spice_html5: tc.spice_html5.clone(),
            },
            secure_channels,
            sasl,
            ticket: Mutex::new(Ticket {
                password: config.password,
                expiry: Expiry::Never,
            }),
            session: Mutex::new(None),
            clients: Arc::default(),
            shutdown: watch::channel(false).0,
            live: AtomicUsize::new(0),
            info: ServerInfo {
                epoch: Instant::now(),
                channels: built.registry.channels_list(),
            },
            channels: built.registry,
        });
        runtime.spawn(accept_loop(listener, shared.clone(), false));
        if let Some(l) = tls_listener {
            runtime.spawn(accept_loop(l, shared.clone(), true));
        }
        info!(listen = ?local, tls = ?tls_local, "SPICE server listening");
        Ok(SpiceServer {
            shared,
            display: built.display,
            cursor: built.cursor,
            runtime: Some(runtime),
            local,
            tls_local,
            unix_path,
        })
    }

    pub fn local_addr(&self) -> Listen {
        self.local.clone()
    }

    /// Where the TLS listener is (QEMU's tls-port), if there is one.
    pub fn tls_addr(&self) -> Option<std::net::SocketAddr> {
        self.tls_local
    }

    /// Publishes display head 0's new frame: `dirty` says what changed since the
    /// last call (a new size means all of it). Never blocks on clients: it copies
    /// the dirty rectangles' pixels (not the frame) and wakes the display channels.
    /// `draws` were painted into `frame` (oldest first) and are not in
    /// `dirty`: they are forwarded to clients as DRAW_FILLs and DRAW_COPYs.
    pub fn update(&self, frame: &Frame, dirty: &[Rect], draws: &[Draw]) {
        self.update_head(0, frame, dirty, draws);
    }

    /// `update` for any display head (channel id). Ignored without a display.
    pub fn update_head(&self, head: u8, frame: &Frame, dirty: &[Rect], draws: &[Draw]) {
        if let Some(d) = &self.display {
            d.update(head, frame, dirty, draws);
        }
    }

    /// The guest's cursor on display head `head` changed (QXL cursor
    /// commands). Never blocks; ignored without a display.
    pub fn cursor_update(&self, head: u8, update: crate::CursorUpdate) {
        if let Some(c) = &self.cursor {
            c.update(head, update);
        }
    }

    pub fn set_password(&self, password: Option<String>) {
        lock(&self.shared.ticket).password = password;
    }

    pub fn expire_password(&self, expiry: Expiry) {
        lock(&self.shared.ticket).expiry = expiry;
    }

    /// Close the current client session, all of its channels (QMP
    /// `set_password connected=disconnect`).
    pub fn disconnect_all(&self) {
        if let Some(old) = lock(&self.shared.session).take() {
            info!(session_id = old.id, "SPICE client disconnected by request");
            old.kill.send_replace(true);
        }
    }

    /// QEMU's query-spice `auth`: "sasl", "spice" (password) or "none".
    pub fn auth(&self) -> &'static str {
        if self.shared.sasl.is_some() {
            "sasl"
        } else if lock(&self.shared.ticket).password.is_some() {
            "spice"
        } else {
            "none"
        }
    }

    pub fn clients(&self) -> Vec<ClientInfo> {
        self.shared.clients.list()
    }

    pub fn subscribe(&self) -> Receiver<SpiceEvent> {
        self.shared.clients.subscribe()
    }

    /// What CHANNELS_LIST offers: (channel type, id), MAIN not included.
    pub fn channels(&self) -> Vec<(u8, u8)> {
        self.shared.info.channels.clone()
    }

    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        self.shared.shutdown.send_replace(true);
        self.shared.keys.stop();
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

/// `tls`: this is the TLS listener.
async fn accept_loop(listener: Listener, shared: Arc<Shared>, tls: bool) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        let accepted: std::io::Result<(BoxStream, Option<DirectSocket>, Peer, Peer)> = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = async {
                match &listener {
                    Listener::Tcp(l) => {
                        let (s, a) = l.accept().await?;
                        let _ = s.set_nodelay(true);
                        if let Err(e) = set_keepalive(&s) {
                            debug!("SPICE: cannot enable TCP keepalive: {e}");
                        }
                        let local = s.local_addr()?;
                        let direct = s.as_fd().try_clone_to_owned().ok().map(|fd| DirectSocket::Tcp(fd.into()));
                        Ok((Box::new(s) as BoxStream, direct, tcp_peer(a), tcp_peer(local)))
                    }
                    Listener::Unix(l) => {
                        let (s, _) = l.accept().await?;
                        let path = s
                            .local_addr()
                            .ok()
                            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                            .unwrap_or_default();
                        let p = Peer { host: path, port: 0, family: "unix" };
                        let direct = s.as_fd().try_clone_to_owned().ok().map(|fd| DirectSocket::Unix(fd.into()));
                        Ok((Box::new(s) as BoxStream, direct, p.clone(), p))
                    }
                }
            } => r,
        };
        match accepted {
            Ok((stream, direct, peer, local)) => {
                shared.live.fetch_add(1, Ordering::SeqCst);
                let live = Live(shared.clone());
                tokio::spawn(async move {
                    handle_connection(&live.0, stream, direct, peer, local, tls).await;
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

/// Keepalive probes on an accepted TCP connection, so one whose peer vanished
/// (power loss, NAT timeout) ends instead of holding its session forever.
fn set_keepalive(s: &tokio::net::TcpStream) -> std::io::Result<()> {
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket2::SockRef::from(s).set_tcp_keepalive(&ka)
}

/// Bounds the connections in the link stage (before the ticket is checked). When
/// full, a new connection evicts the *oldest* one rather than being refused: a
/// legitimate link takes milliseconds, so idle or stalled sockets are what pile up,
/// and refusing newcomers would let `max` idle sockets lock everyone out for the
/// whole link timeout.
struct LinkGate {
    max: usize,
    next: AtomicU64,
    /// Links in progress, oldest first; dropping a sender evicts that link.
    waiting: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
}

/// A place in the link stage; its receiver fires if the link is evicted.
struct LinkPass<'a> {
    gate: &'a LinkGate,
    seq: u64,
    evicted: oneshot::Receiver<()>,
}

impl LinkGate {
    fn new(max: usize) -> LinkGate {
        LinkGate {
            max: max.max(1),
            next: AtomicU64::new(0),
            waiting: Mutex::new(BTreeMap::new()),
        }
    }

    fn admit(&self) -> LinkPass<'_> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, evicted) = oneshot::channel();
        let mut w = lock(&self.waiting);
        while w.len() >= self.max {
            // Dropping the sender wakes that link's task, which closes its socket.
            if w.pop_first().is_some() {
                debug!("too many SPICE connections in the link stage; dropping the oldest");
            }
        }
        w.insert(seq, tx);
        LinkPass {
            gate: self,
            seq,
            evicted,
        }
    }
}

impl Drop for LinkPass<'_> {
    fn drop(&mut self) {
        lock(&self.gate.waiting).remove(&self.seq);
    }
}

/// Frees a channel's (type, id) in its session when the channel ends.
struct ChannelSlot<'a> {
    shared: &'a Shared,
    session_id: u32,
    pair: (u8, u8),
}

impl Drop for ChannelSlot<'_> {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.shared.session).as_mut() {
            if s.id == self.session_id {
                s.channels.remove(&self.pair);
            }
        }
    }
}

/// The transport (TLS, HTTP, WebSocket) and link stages of one connection, then its
/// channel. `tls`: it came in on the TLS listener. `direct`: a dup of the
/// socket, kept for the channel only if the carrier is plain.
async fn handle_connection(
    shared: &Arc<Shared>,
    stream: BoxStream,
    direct: Option<DirectSocket>,
    peer: Peer,
    local: Peer,
    tls: bool,
) {
    let mut stop = shared.shutdown.subscribe();
    let mut pass = shared.links.admit();
    let limits = shared.limits;
    let linked = tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        _ = &mut pass.evicted => {
            debug!(host = %peer.host, "SPICE link dropped: too many connections linking");
            return;
        }
        r = tokio::time::timeout(limits.link_timeout, async {
            let (mut stream, carrier) = match transport::establish(&shared.transport, stream, tls).await {
                Ok(Established::Spice(s, c)) => (s, c),
                Ok(Established::Page(status, path)) => return Err(Ended::Page(status, path)),
                Err(why) => return Err(Ended::Transport(why)),
            };
            let policy = LinkPolicy {
                keys: &shared.keys,
                denied_delay: limits.denied_delay,
                secure: carrier.secure(),
                secure_channels: shared.secure_channels,
                sasl: shared.sasl.as_ref(),
            };
            let linked = accept_link(
                &mut stream,
                &policy,
                |t, id| shared.channels.link_caps(t, id),
                |given, now| lock(&shared.ticket).accepts(given, now),
            )
            .await;
            match linked {
                Ok(req) => Ok((stream, carrier, req)),
                Err(f) => Err(Ended::Link(f, carrier)),
            }
        }) => r,
    };
    // Out of the link stage: no longer counted against MAX_LINKS.
    drop(pass);
    let (mut stream, carrier, req) = match linked {
        Ok(Ok(linked)) => linked,
        Ok(Err(Ended::Page(status, path))) => {
            debug!(host = %peer.host, status, path, "SPICE port answered an HTTP request");
            return;
        }
        Ok(Err(Ended::Transport(why))) => {
            warn!(host = %peer.host, tls, "SPICE connection refused: {why}");
            return;
        }
        Ok(Err(Ended::Link(f, carrier))) => {
            warn!(host = %peer.host, code = ?f.code, ?carrier, "SPICE link refused: {}", f.reason);
            return;
        }
        Err(_) => {
            warn!(host = %peer.host, "SPICE link timed out");
            return;
        }
    };
    let (session_id, kill, session_link) = match join_session(shared, &req) {
        Ok(joined) => joined,
        Err(code) => {
            let _ = stream.write_all(&code.to_le_bytes()).await;
            return;
        }
    };
    let _slot = ChannelSlot {
        shared,
        session_id,
        pair: (req.channel_type, req.channel_id),
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
        tls: carrier.secure(),
        stats: None,
    };
    // The link stage refused any (type, id) the registry does not offer.
    let Some(kind) = shared.channels.find(req.channel_type, req.channel_id) else {
        return;
    };
    let reg = Registration::new(&shared.clients, info(&peer), info(&local));
    debug!(
        channel = req.channel_type,
        session_id, "SPICE channel linked"
    );
    let direct = direct.filter(|_| carrier == transport::Carrier::Tcp);
    channel::run(
        kind.as_ref(),
        stream,
        direct,
        &req,
        session_id,
        session_link,
        kill,
        &reg,
        &shared.info,
    )
    .await;
    end_session_if_main(shared, &req, session_id);
}

/// How a connection ended before its channel started.
enum Ended {
    /// An HTTP request that was not a WebSocket was answered.
    Page(u16, String),
    /// TLS, HTTP or WebSocket failed.
    Transport(String),
    /// The link stage refused it.
    Link(crate::link::LinkFailure, transport::Carrier),
}

/// MAIN starts a new session (closing the current one, as spice-server does without
/// multi-client support); other channels must name the current session and may be
/// linked once per session. Err is the link result to send.
fn join_session(shared: &Shared, req: &LinkRequest) -> Result<Joined, u32> {
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
        let channels = HashSet::from([(req.channel_type, req.channel_id)]);
        let link = Arc::new(SessionLink::default());
        *session = Some(SessionEntry {
            id,
            kill,
            channels,
            link: link.clone(),
        });
        return Ok((id, rx, link));
    }
    let Some(s) = session.as_mut().filter(|s| s.id == req.connection_id) else {
        warn!(
            connection_id = req.connection_id,
            "SPICE link with unknown connection id"
        );
        return Err(link_err::BAD_CONNECTION_ID);
    };
    if !s.channels.insert((req.channel_type, req.channel_id)) {
        // spice-server sends OK and then closes the stream when creating the channel
        // client fails; saying why is kinder, with the code used for unknown channels.
        warn!(
            session_id = s.id,
            "SPICE duplicate channel type {} id {}", req.channel_type, req.channel_id
        );
        return Err(link_err::CHANNEL_NOT_AVAILABLE);
    }
    Ok((s.id, s.kill.subscribe(), s.link.clone()))
}

/// A joined session: its id, its end, its shared link estimate.
type Joined = (u32, watch::Receiver<bool>, Arc<SessionLink>);

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

#[cfg(test)]
mod tests {
    #[test]
    fn keepalive_options_are_set() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let (s, _) = l.accept().await.unwrap();
            let sock = socket2::SockRef::from(&s);
            assert!(!sock.keepalive().unwrap());
            super::set_keepalive(&s).unwrap();
            assert!(sock.keepalive().unwrap());
            assert_eq!(sock.tcp_keepalive_time().unwrap(), super::KEEPALIVE_TIME);
            assert_eq!(
                sock.tcp_keepalive_interval().unwrap(),
                super::KEEPALIVE_INTERVAL
            );
            assert_eq!(
                sock.tcp_keepalive_retries().unwrap(),
                super::KEEPALIVE_RETRIES
            );
        });
    }
}
