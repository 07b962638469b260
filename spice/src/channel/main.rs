//! MAIN channel: MAIN_INIT, CHANNELS_LIST (from the registry) on ATTACH_CHANNELS,
//! mouse modes (client mode only while the input port has an absolute pointer:
//! when that changes, MOUSE_MODE tells the client, which then asks for client
//! mode as spice-gtk does, or is moved back to server mode),
//! and, when the server has an agent port, the agent relay with its tokens
//! (`agent.rs`). Without an agent port MAIN_INIT says no agent and no tokens, and
//! agent messages are accepted and dropped.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::debug;

use super::agent::{AgentLink, AgentRelay};
use super::conn::violation;
use super::{next_message, ChannelKind, ChannelTask, End, Link, Next, MM_TIME_DELTA};
use crate::port::{AbsoluteNotifier, AgentPort, InputPort, MonitorsConfigPort};
use crate::proto::{
    channel as ch, has_cap, main_cap, main_msg, main_msgc, MOUSE_MODE_CLIENT, MOUSE_MODE_SERVER,
};
use crate::wire::{Reader, Writer};

/// Only a hint for the client's GLZ window, which we never use.
const RAM_HINT: u32 = 64 << 20;
/// AGENT_DATA payloads are at most 2048 bytes; other messages are small.
const MAX_MESSAGE: usize = 64 * 1024;

pub struct MainChannel {
    /// Client mouse mode is possible (an absolute pointer exists), as the input
    /// port pushes it.
    client_mouse: Arc<watch::Sender<bool>>,
    agent: Option<(Arc<dyn AgentPort>, AgentLink)>,
    /// The display's client monitors config, fed from agent data.
    monitors: Option<Arc<dyn MonitorsConfigPort>>,
}

impl MainChannel {
    pub fn new(input: Option<&Arc<dyn InputPort>>, agent: Option<Arc<dyn AgentPort>>) -> Self {
        let agent = agent.map(|port| {
            let link = AgentLink::new();
            port.attach(link.clone());
            (port, link)
        });
        let client_mouse = Arc::new(watch::channel(input.is_some_and(|i| i.has_absolute())).0);
        if let Some(i) = input {
            i.attach_absolute(AbsoluteNotifier(client_mouse.clone()));
        }
        MainChannel {
            client_mouse,
            agent,
            monitors: None,
        }
    }

    /// Clients' monitors configs go to `port` (see [`MonitorsConfigPort`]).
    pub fn with_monitors_config(mut self, port: Option<Arc<dyn MonitorsConfigPort>>) -> Self {
        self.monitors = port;
        self
    }
}

fn supported_modes(client_mouse: bool) -> u16 {
    if client_mouse {
        MOUSE_MODE_SERVER | MOUSE_MODE_CLIENT
    } else {
        MOUSE_MODE_SERVER
    }
}

pub struct Init {
    pub session_id: u32,
    pub display_channels: u32,
    pub supported_modes: u16,
    pub mode: u16,
    pub agent_connected: u32,
    pub agent_tokens: u32,
    pub mm_time: u32,
}

pub fn init_body(i: &Init) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(i.session_id)
        .u32(i.display_channels)
        .u32(i.supported_modes.into())
        .u32(i.mode.into())
        .u32(i.agent_connected)
        .u32(i.agent_tokens)
        .u32(i.mm_time.wrapping_sub(MM_TIME_DELTA))
        .u32(RAM_HINT);
    w.finish()
}

fn channels_list(list: &[(u8, u8)]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(list.len() as u32);
    for (t, id) in list {
        w.u8(*t).u8(*id);
    }
    w.finish()
}

fn mouse_mode(supported: u16, current: u16) -> Vec<u8> {
    let mut w = Writer::new();
    w.u16(supported).u16(current);
    w.finish()
}

/// Waits for the agent port, or forever without one.
async fn agent_changed(relay: &mut Option<AgentRelay>) {
    match relay {
        Some(r) => r.changed().await,
        None => std::future::pending().await,
    }
}

impl ChannelKind for MainChannel {
    fn channel_type(&self) -> u8 {
        ch::MAIN
    }
    fn name(&self) -> &'static str {
        "main"
    }
    fn max_message(&self) -> usize {
        MAX_MESSAGE
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(self.serve(link))
    }
}

impl MainChannel {
    async fn serve(&self, link: Link<'_>) -> Result<(), End> {
        let conn = link.conn;
        let mut relay = self.agent.as_ref().map(|(port, agent)| {
            let cap = has_cap(&link.req.channel_caps, main_cap::AGENT_CONNECTED_TOKENS);
            AgentRelay::new(port.clone(), agent.clone(), cap).with_monitors(self.monitors.clone())
        });
        // No agent port: no agent, and no tokens to spend on one.
        let (agent_connected, agent_tokens) = relay.as_ref().map_or((0, 0), |r| r.init_fields());
        // Subscribed first: a change from here on wakes the loop below.
        let mut client_mouse = self.client_mouse.subscribe();
        let mut supported = supported_modes(*client_mouse.borrow_and_update());
        let mut mode = MOUSE_MODE_SERVER;
        let init = Init {
            session_id: link.session_id,
            display_channels: link
                .server
                .channels
                .iter()
                .filter(|(t, _)| *t == ch::DISPLAY)
                .count() as u32,
            supported_modes: supported,
            mode,
            agent_connected,
            agent_tokens,
            mm_time: link.server.mm_time(),
        };
        conn.send(main_msg::INIT, &init_body(&init)).await?;
        // The session's net test (see `session_link`): right after INIT, as
        // spice-server, before the client links its other channels.
        conn.queue_net_test();
        conn.flush().await?;
        link.reg.initialized();
        let mut due = Vec::new();
        loop {
            if let Some(r) = relay.as_mut() {
                r.due(&mut due);
                for (t, body) in due.drain(..) {
                    conn.queue(t, &body);
                }
                conn.flush().await?;
            }
            let (t, body) = tokio::select! {
                n = next_message(conn) => match n? {
                    Next::Msg(t, b) => (t, b),
                    Next::Base => continue,
                    Next::Closed => return Ok(()),
                },
                _ = agent_changed(&mut relay) => continue,
                r = client_mouse.changed() => {
                    if r.is_err() {
                        // Cannot happen: this kind holds the sender.
                        return Ok(());
                    }
                    supported = supported_modes(*client_mouse.borrow_and_update());
                    if supported & mode == 0 {
                        mode = MOUSE_MODE_SERVER;
                    }
                    conn.send(main_msg::MOUSE_MODE, &mouse_mode(supported, mode))
                        .await?;
                    continue;
                }
            };
            let mut r = Reader::new(&body);
            let short = || violation(format!("malformed main message {t}"));
            match t {
                main_msgc::ATTACH_CHANNELS => {
                    conn.send(
                        main_msg::CHANNELS_LIST,
                        &channels_list(&link.server.channels),
                    )
                    .await?;
                }
                main_msgc::MOUSE_MODE_REQUEST => {
                    let want = r.u16().ok_or_else(short)?;
                    if want & supported != 0 && want.is_power_of_two() {
                        mode = want;
                    } else {
                        debug!(want, supported, "unsupported mouse mode requested");
                    }
                    conn.send(main_msg::MOUSE_MODE, &mouse_mode(supported, mode))
                        .await?;
                }
                main_msgc::AGENT_START => {
                    let tokens = r.u32().ok_or_else(short)?;
                    if let Some(relay) = relay.as_mut() {
                        relay.start(tokens);
                    }
                }
                main_msgc::AGENT_TOKEN => {
                    let n = r.u32().ok_or_else(short)?;
                    if let Some(relay) = relay.as_mut() {
                        relay.tokens(n);
                    }
                }
                main_msgc::AGENT_DATA => {
                    // Without an agent port the data has nowhere to go (the client
                    // sends none while agent_connected is 0, but a late message
                    // must not kill the session).
                    if let Some(relay) = relay.as_mut() {
                        relay.client_data(&body)?;
                    }
                }
                main_msgc::CLIENT_INFO => {}
                // Migration and quality-indicator messages: nothing to do without migration.
                102 | 103 | 109..=112 => {}
                _ => debug!(msg_type = t, "ignoring unknown main message"),
            }
        }
    }
}
