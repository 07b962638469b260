//! The agent relay of the MAIN channel: [`AgentLink`], the handle an
//! [`AgentPort`] pushes guest data and state through, and [`AgentRelay`], one
//! main channel's side of SPICE's token flow control (see `port.rs` for the rules).
//!
//! Only one main channel relays at a time: the one whose client sent AGENT_START
//! last ("the owner"). A session being replaced may still run its task for a
//! moment; it neither takes the new client's data nor detaches it when it ends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::debug;

use super::agent_filter::{ClientFilter, Piece};
use super::conn::{violation, Violation};
use crate::port::{
    AgentPort, Full, MonitorsConfigPort, AGENT_CLIENT_TOKENS, AGENT_MAX_DATA, AGENT_QUEUE,
    AGENT_TOKEN_BATCH,
};
use crate::proto::main_msg;
use crate::server::lock;

/// The server's end of an agent port, handed to [`AgentPort::attach`]. Clone it
/// freely; every method returns at once.
#[derive(Clone)]
pub struct AgentLink(Arc<AgentShared>);

pub(crate) struct AgentShared {
    state: Mutex<AgentState>,
    /// Bumped on every change, so relays wake without polling.
    bell: watch::Sender<u64>,
    next_relay: AtomicU64,
}

#[derive(Default)]
struct AgentState {
    connected: bool,
    /// Bumped on every connect and disconnect, so a quick off-on is not missed.
    epoch: u64,
    /// The relay that owns the client side (0 = none).
    owner: u64,
    to_client: VecDeque<Vec<u8>>,
    /// Client messages the guest took, not yet returned to the client as tokens.
    consumed: u32,
    /// `send` refused since the last `resume`.
    refused: bool,
}

impl AgentLink {
    pub(crate) fn new() -> AgentLink {
        AgentLink(Arc::new(AgentShared {
            state: Mutex::new(AgentState::default()),
            bell: watch::channel(0).0,
            next_relay: AtomicU64::new(1),
        }))
    }

    fn change<T>(&self, f: impl FnOnce(&mut AgentState) -> T) -> T {
        let r = f(&mut lock(&self.0.state));
        self.wake();
        r
    }

    /// Wakes the relay to look at the state (after [`stage_from`](AgentLink::stage_from)).
    pub fn wake(&self) {
        self.0.bell.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The guest agent opened (true) or closed its port. The client hears of it
    /// (AGENT_CONNECTED_TOKENS / AGENT_DISCONNECTED); on close, data still queued
    /// for the client is dropped.
    pub fn set_connected(&self, connected: bool) {
        self.change(|s| {
            if s.connected != connected {
                s.connected = connected;
                s.epoch += 1;
                s.to_client.clear();
                s.consumed = 0;
            }
        });
    }

    pub fn connected(&self) -> bool {
        lock(&self.0.state).connected
    }

    /// Guest bytes for the client, at most [`AGENT_MAX_DATA`] per call (longer
    /// data is split). Without a client they are dropped (as spice-server does, so
    /// the agent never stalls); with one, `Err(Full)` once [`AGENT_QUEUE`] pieces
    /// wait for client tokens, and [`AgentPort::resume`] follows when there is room.
    pub fn send(&self, data: &[u8]) -> Result<(), Full> {
        let mut pieces = VecDeque::from([data.to_vec()]);
        if self.send_from(&mut pieces) {
            Ok(())
        } else {
            Err(Full)
        }
    }

    /// Moves pieces from the front of `pieces` to the client's queue while it
    /// has room, under one lock and with one wake-up of the relay (one
    /// [`send`](AgentLink::send) per piece woke the MAIN channel and wrote a
    /// TCP segment per 2 KiB). Returns false, with the rest left in `pieces`,
    /// when the queue is full; [`AgentPort::resume`] follows when there is
    /// room. Without a client, or with the agent closed, all are dropped.
    pub fn send_from(&self, pieces: &mut VecDeque<Vec<u8>>) -> bool {
        if pieces.is_empty() {
            return true;
        }
        let all = self.stage_from(pieces);
        self.wake();
        all
    }

    /// [`send_from`](AgentLink::send_from) without waking the relay: the caller
    /// calls [`wake`](AgentLink::wake) once it has finished its round. The
    /// virtio-serial worker first gives the guest its buffer back, then wakes
    /// the MAIN channel; woken earlier, the MAIN channel's thread took the
    /// CPU from the worker while the guest waited for the buffer.
    pub fn stage_from(&self, pieces: &mut VecDeque<Vec<u8>>) -> bool {
        if pieces.is_empty() {
            return true;
        }
        let s = &mut *lock(&self.0.state);
        if s.owner == 0 || !s.connected {
            pieces.clear();
            return true;
        }
        while let Some(p) = pieces.front() {
            let n = p.len().div_ceil(AGENT_MAX_DATA);
            if s.to_client.len() + n > AGENT_QUEUE {
                s.refused = true;
                return false;
            }
            let p = pieces.pop_front().unwrap_or_default();
            if p.len() <= AGENT_MAX_DATA {
                if !p.is_empty() {
                    s.to_client.push_back(p);
                }
            } else {
                s.to_client
                    .extend(p.chunks(AGENT_MAX_DATA).map(<[u8]>::to_vec));
            }
        }
        true
    }

    /// The guest took `messages` of the client's AGENT_DATA messages: their tokens
    /// go back to the client.
    pub fn consumed(&self, messages: u32) {
        self.change(|s| s.consumed = s.consumed.saturating_add(messages));
    }
}

/// One main channel's agent state.
pub(crate) struct AgentRelay {
    port: Arc<dyn AgentPort>,
    link: AgentLink,
    id: u64,
    bell: watch::Receiver<u64>,
    /// Guest → client messages the client allows now.
    client_tokens: u32,
    /// Client → guest messages not yet consumed.
    in_flight: u32,
    /// The agent epoch the client was last told about.
    told_epoch: u64,
    told_connected: bool,
    /// The client understands AGENT_CONNECTED_TOKENS.
    connected_tokens_cap: bool,
    /// The display that may take this client's monitors configs.
    monitors: Option<Arc<dyn MonitorsConfigPort>>,
    /// Frames the client's agent messages and routes each one.
    filter: ClientFilter,
}

impl AgentRelay {
    pub fn new(port: Arc<dyn AgentPort>, link: AgentLink, connected_tokens_cap: bool) -> Self {
        let id = link.0.next_relay.fetch_add(1, Ordering::Relaxed);
        let mut bell = link.0.bell.subscribe();
        bell.mark_unchanged();
        let (epoch, connected) = {
            let s = lock(&link.0.state);
            (s.epoch, s.connected)
        };
        AgentRelay {
            port,
            link,
            id,
            bell,
            client_tokens: 0,
            in_flight: 0,
            told_epoch: epoch,
            told_connected: connected,
            connected_tokens_cap,
            monitors: None,
            filter: ClientFilter::default(),
        }
    }

    /// Client monitors configs go to `port` while its guest driver takes them.
    pub fn with_monitors(mut self, port: Option<Arc<dyn MonitorsConfigPort>>) -> Self {
        self.monitors = port;
        self
    }

    /// MAIN_INIT's (agent_connected, agent_tokens), matching what `new` recorded.
    pub fn init_fields(&self) -> (u32, u32) {
        (u32::from(self.told_connected), AGENT_CLIENT_TOKENS)
    }

    fn owns(&self, s: &AgentState) -> bool {
        s.owner == self.id
    }

    /// AGENT_START: the client grants `tokens` and takes over the agent.
    pub fn start(&mut self, tokens: u32) {
        self.client_tokens = tokens;
        self.in_flight = 0;
        // spice-server decides here whether the display takes monitors configs.
        let display = self
            .monitors
            .as_ref()
            .is_some_and(|m| m.takes_client_monitors_config());
        self.filter.set_display_monitors(display);
        let fresh = self.link.change(|s| {
            let fresh = s.owner != self.id;
            s.owner = self.id;
            s.consumed = 0;
            s.to_client.clear();
            fresh
        });
        if fresh {
            self.port.client_attached(true);
        }
    }

    /// AGENT_TOKEN: the client grants more.
    pub fn tokens(&mut self, n: u32) {
        self.client_tokens = self.client_tokens.saturating_add(n);
    }

    /// AGENT_DATA from the client.
    pub fn client_data(&mut self, data: &[u8]) -> Result<(), Violation> {
        if data.len() > AGENT_MAX_DATA {
            return Err(violation(format!("agent data of {} bytes", data.len())));
        }
        let usable = {
            let s = lock(&self.link.0.state);
            self.owns(&s) && s.connected && self.told_connected
        };
        let piece = self.filter.piece(data, usable).map_err(violation)?;
        if piece == Piece::Drop {
            // Sent before the client heard the agent left, or without
            // AGENT_START, or part of a dropped message.
            debug!(
                len = data.len(),
                "agent data with no agent to take it dropped"
            );
            return Ok(());
        }
        if self.in_flight >= AGENT_CLIENT_TOKENS {
            return Err(violation("agent data without a token"));
        }
        self.in_flight += 1;
        match piece {
            Piece::Display(config) => {
                // Taken here: its token goes straight back.
                self.link.consumed(1);
                if let (Some(config), Some(port)) = (config, &self.monitors) {
                    if !port.client_monitors_config(&config) {
                        debug!("client monitors config not taken by the guest's driver");
                    }
                }
            }
            _ => self.port.client_data(data),
        }
        Ok(())
    }

    /// Messages due to the client now: agent (dis)connection, returned tokens and
    /// guest data within the client's tokens, in that order.
    pub fn due(&mut self, out: &mut Vec<(u16, Vec<u8>)>) {
        let mut resume = false;
        {
            let mut s = lock(&self.link.0.state);
            if s.epoch != self.told_epoch {
                self.told_epoch = s.epoch;
                if s.connected {
                    // A new agent: the client's window starts afresh; spice-gtk
                    // answers with AGENT_START.
                    self.in_flight = 0;
                    if self.connected_tokens_cap {
                        out.push((
                            main_msg::AGENT_CONNECTED_TOKENS,
                            AGENT_CLIENT_TOKENS.to_le_bytes().to_vec(),
                        ));
                    } else {
                        out.push((main_msg::AGENT_CONNECTED, Vec::new()));
                    }
                } else if self.told_connected {
                    self.in_flight = 0;
                    self.client_tokens = 0;
                    out.push((main_msg::AGENT_DISCONNECTED, 0u32.to_le_bytes().to_vec()));
                }
                self.told_connected = s.connected;
            }
            if !self.owns(&s) {
                return;
            }
            // Batched: the client still holds tokens while fewer than a batch
            // are due, unless the guest took all it sent (then nothing else
            // would bring the rest back).
            if s.consumed >= AGENT_TOKEN_BATCH || (s.consumed > 0 && s.consumed >= self.in_flight) {
                let n = std::mem::take(&mut s.consumed);
                self.in_flight = self.in_flight.saturating_sub(n);
                out.push((main_msg::AGENT_TOKEN, n.to_le_bytes().to_vec()));
            }
            while self.client_tokens > 0 {
                let Some(piece) = s.to_client.pop_front() else {
                    break;
                };
                self.client_tokens -= 1;
                out.push((main_msg::AGENT_DATA, piece));
            }
            if s.refused && s.to_client.len() < AGENT_QUEUE {
                s.refused = false;
                resume = true;
            }
        }
        if resume {
            self.port.resume();
        }
    }

    /// Waits until the port changed something.
    pub async fn changed(&mut self) {
        if self.bell.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for AgentRelay {
    fn drop(&mut self) {
        let owned = self.link.change(|s| {
            let owned = s.owner == self.id;
            if owned {
                s.owner = 0;
                s.to_client.clear();
                s.consumed = 0;
                s.refused = false;
            }
            owned
        });
        if owned {
            self.port.client_attached(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::agent_filter::{MESSAGE_HEADER, MONITORS_CONFIG};
    use crate::port::ClientMonitorsConfig;

    #[derive(Default)]
    struct Port {
        log: Mutex<Vec<String>>,
    }

    impl AgentPort for Port {
        fn attach(&self, _: AgentLink) {}
        fn client_data(&self, data: &[u8]) {
            lock(&self.log).push(format!("data {}", data.len()));
        }
        fn client_attached(&self, attached: bool) {
            lock(&self.log).push(format!("attached {attached}"));
        }
        fn resume(&self) {
            lock(&self.log).push("resume".into());
        }
    }

    /// A whole agent message (type CLIPBOARD) of `len` bytes.
    fn msg(len: usize) -> Vec<u8> {
        let mut m = Vec::new();
        for v in [1u32, 4, 0, 0, (len - MESSAGE_HEADER) as u32] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        m.resize(len, 0);
        m
    }

    fn take(p: &Port) -> Vec<String> {
        std::mem::take(&mut lock(&p.log))
    }

    fn due(r: &mut AgentRelay) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        r.due(&mut out);
        out
    }

    #[test]
    fn tokens_both_ways() {
        let port = Arc::new(Port::default());
        let link = AgentLink::new();
        link.set_connected(true);
        let mut r = AgentRelay::new(port.clone(), link.clone(), true);
        assert_eq!(r.init_fields(), (1, AGENT_CLIENT_TOKENS));
        // Without a client, guest data is dropped, never refused.
        assert_eq!(link.send(&[1; 100]), Ok(()));
        r.start(2);
        assert_eq!(take(&port), ["attached true"]);
        assert!(due(&mut r).is_empty());
        // Client → guest: ten in flight, the eleventh is a violation.
        for _ in 0..AGENT_CLIENT_TOKENS {
            r.client_data(&msg(30)).unwrap();
        }
        assert!(r.client_data(&msg(30)).is_err());
        assert!(r.client_data(&[0; AGENT_MAX_DATA + 1]).is_err());
        // Tokens go back in batches: a few consumed stay with the server...
        link.consumed(3);
        assert!(due(&mut r).is_empty());
        // ...until a batch is due.
        link.consumed(AGENT_TOKEN_BATCH - 3);
        assert_eq!(
            due(&mut r),
            vec![(
                main_msg::AGENT_TOKEN,
                AGENT_TOKEN_BATCH.to_le_bytes().to_vec()
            )]
        );
        r.client_data(&msg(30)).unwrap();
        let left = AGENT_CLIENT_TOKENS - AGENT_TOKEN_BATCH + 1;
        link.consumed(left);
        assert_eq!(
            due(&mut r),
            vec![(main_msg::AGENT_TOKEN, left.to_le_bytes().to_vec())]
        );
        // Fewer than a batch come back once the guest has taken all the
        // client sent (nothing else would bring them back).
        r.client_data(&msg(30)).unwrap();
        r.client_data(&msg(30)).unwrap();
        link.consumed(1);
        assert!(due(&mut r).is_empty());
        link.consumed(1);
        assert_eq!(
            due(&mut r),
            vec![(main_msg::AGENT_TOKEN, 2u32.to_le_bytes().to_vec())]
        );
        r.client_data(&msg(30)).unwrap();
        // Guest → client: two tokens, so two pieces; the queue fills and refuses.
        link.send(&[7; AGENT_MAX_DATA + 1]).unwrap();
        for _ in 0..AGENT_QUEUE - 2 {
            link.send(&[8]).unwrap();
        }
        assert_eq!(link.send(&[9]), Err(Full));
        let out = due(&mut r);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1.len(), AGENT_MAX_DATA);
        assert_eq!(out[1].1, vec![7]);
        assert!(take(&port).iter().any(|l| l == "resume"));
        r.tokens(10);
        assert_eq!(due(&mut r).len(), (AGENT_QUEUE - 2).min(10));
        // The agent leaves: the client is told once, late client data is dropped.
        link.set_connected(false);
        assert_eq!(
            due(&mut r),
            vec![(main_msg::AGENT_DISCONNECTED, vec![0; 4])]
        );
        r.client_data(&msg(30)).unwrap();
        assert!(due(&mut r).is_empty());
        take(&port);
        // And comes back.
        link.set_connected(true);
        assert_eq!(
            due(&mut r),
            vec![(
                main_msg::AGENT_CONNECTED_TOKENS,
                AGENT_CLIENT_TOKENS.to_le_bytes().to_vec()
            )]
        );
        drop(r);
        assert_eq!(take(&port), ["attached false"]);
    }

    #[test]
    fn a_replaced_relay_does_not_detach_its_successor() {
        let port = Arc::new(Port::default());
        let link = AgentLink::new();
        link.set_connected(true);
        let mut old = AgentRelay::new(port.clone(), link.clone(), false);
        old.start(10);
        let mut new = AgentRelay::new(port.clone(), link.clone(), false);
        new.start(10);
        assert_eq!(take(&port), ["attached true", "attached true"]);
        link.send(&[1]).unwrap();
        assert!(due(&mut old).is_empty(), "only the owner takes guest data");
        drop(old);
        assert!(take(&port).is_empty());
        assert_eq!(due(&mut new), vec![(main_msg::AGENT_DATA, vec![1])]);
    }

    /// A display whose driver takes client monitors configs while `takes`.
    #[derive(Default)]
    struct Display {
        takes: std::sync::atomic::AtomicBool,
        got: Mutex<Vec<ClientMonitorsConfig>>,
    }

    impl MonitorsConfigPort for Display {
        fn takes_client_monitors_config(&self) -> bool {
            self.takes.load(Ordering::Relaxed)
        }
        fn client_monitors_config(&self, config: &ClientMonitorsConfig) -> bool {
            lock(&self.got).push(config.clone());
            true
        }
    }

    /// A monitors config message with `n` heads of 1280x800, side by side.
    fn monitors_config(n: u32) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&n.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        for i in 0..n {
            for v in [800, 1280, 32, i * 1280, 0] {
                body.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut m = Vec::new();
        for v in [1u32, MONITORS_CONFIG, 0, 0, body.len() as u32] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn monitors_configs_go_to_the_display_when_its_driver_takes_them_at_agent_start() {
        let port = Arc::new(Port::default());
        let display = Arc::new(Display::default());
        let link = AgentLink::new();
        link.set_connected(true);
        let mut r = AgentRelay::new(port.clone(), link.clone(), true)
            .with_monitors(Some(display.clone() as Arc<dyn MonitorsConfigPort>));
        // The driver does not listen at AGENT_START: the agent gets them.
        r.start(10);
        take(&port);
        let one = monitors_config(1);
        r.client_data(&one).unwrap();
        assert_eq!(take(&port), [format!("data {}", one.len())]);
        // It does at the next AGENT_START (a new client): the display gets
        // them, in pieces, and every piece's token comes straight back.
        display.takes.store(true, Ordering::Relaxed);
        r.start(10);
        take(&port);
        let many = monitors_config(150);
        assert!(many.len() > AGENT_MAX_DATA);
        for piece in many.chunks(AGENT_MAX_DATA) {
            r.client_data(piece).unwrap();
        }
        assert!(take(&port).is_empty(), "the agent gets none of it");
        let got = std::mem::take(&mut *lock(&display.got));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].slots, 150);
        assert_eq!(got[0].layout.monitors()[149].x, 149 * 1280);
        assert_eq!(
            due(&mut r),
            vec![(main_msg::AGENT_TOKEN, 2u32.to_le_bytes().to_vec())]
        );
        // Other messages still reach the agent.
        r.client_data(&msg(30)).unwrap();
        assert_eq!(take(&port), ["data 30"]);
        // A broken message stream ends the client.
        assert!(r.client_data(&[1, 2, 3]).is_err());
    }
}
