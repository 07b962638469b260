//! The agent port on MAIN: offered only when the port exists, and token flow
//! control both ways through a real MAIN channel.

use super::*;
use crate::client::decode::ServerMsg;
use crate::port::{AgentLink, AgentPort, AGENT_CLIENT_TOKENS};
use crate::proto::{channel as ch, main_cap, main_msgc};

/// A guest agent that takes every client message at once and answers it with the
/// same bytes reversed; or, with `hold`, never takes anything.
#[derive(Default)]
struct EchoAgent {
    link: Mutex<Option<AgentLink>>,
    got: Mutex<Vec<Vec<u8>>>,
    attached: Mutex<Vec<bool>>,
    hold: bool,
}

impl EchoAgent {
    fn link(&self) -> AgentLink {
        self.link.lock().unwrap().clone().unwrap()
    }
}

impl AgentPort for EchoAgent {
    fn attach(&self, link: AgentLink) {
        *self.link.lock().unwrap() = Some(link);
    }
    fn client_data(&self, data: &[u8]) {
        self.got.lock().unwrap().push(data.to_vec());
        if !self.hold {
            let link = self.link();
            link.consumed(1);
            let reply: Vec<u8> = data.iter().rev().copied().collect();
            link.send(&reply).unwrap();
        }
    }
    fn client_attached(&self, attached: bool) {
        self.attached.lock().unwrap().push(attached);
    }
    fn resume(&self) {}
}

/// A whole agent message (protocol 1, type CLIPBOARD) with `body`.
fn agent_msg(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for v in [1u32, 4, 0, 0, body.len() as u32] {
        m.extend_from_slice(&v.to_le_bytes());
    }
    m.extend_from_slice(body);
    m
}

fn reversed(m: &[u8]) -> Vec<u8> {
    m.iter().rev().copied().collect()
}

fn start_agent(agent: &Arc<EchoAgent>) -> SpiceServer {
    let rec = Arc::new(Recorder::default());
    SpiceServer::start(
        config(None),
        Ports {
            agent: Some(agent.clone()),
            ..ports(&rec)
        },
    )
    .unwrap()
}

fn agent_client(server: &SpiceServer) -> TestClient {
    TestClient::connect(
        &server.local_addr(),
        ClientOptions {
            channels: vec![],
            main_caps: vec![1 << main_cap::AGENT_CONNECTED_TOKENS],
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

fn init_agent_fields(c: &TestClient) -> (u32, u32) {
    match c.state().main_init.clone().unwrap() {
        ServerMsg::MainInit {
            agent_connected,
            agent_tokens,
            ..
        } => (agent_connected, agent_tokens),
        m => panic!("{m:?}"),
    }
}

#[test]
fn without_an_agent_port_main_offers_no_agent() {
    let (server, _) = start(None);
    let c = connect(&server);
    assert_eq!(init_agent_fields(&c), (0, 0));
    // Agent messages are accepted and dropped.
    c.send_main(main_msgc::AGENT_START, &u32::MAX.to_le_bytes())
        .unwrap();
    c.send_main(main_msgc::AGENT_DATA, &[1; 64]).unwrap();
    c.send_main(main_msgc::ATTACH_CHANNELS, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let st = c.state();
    assert!(st.agent.is_empty() && st.closed.is_empty() && st.errors.is_empty());
}

#[test]
fn agent_data_flows_within_tokens_both_ways() {
    let agent = Arc::new(EchoAgent::default());
    let server = start_agent(&agent);
    let c = agent_client(&server);
    // The port exists, the agent has not opened it yet: tokens, not connected.
    assert_eq!(init_agent_fields(&c), (0, AGENT_CLIENT_TOKENS));
    agent.link().set_connected(true);
    c.wait(T, |s| {
        s.agent == [ServerMsg::AgentConnected(Some(AGENT_CLIENT_TOKENS))]
    })
    .unwrap();
    // The client allows two messages towards it, and sends three.
    c.send_main(main_msgc::AGENT_START, &2u32.to_le_bytes())
        .unwrap();
    let sent = [agent_msg(b"abc"), agent_msg(b"de"), agent_msg(b"f")];
    for m in &sent {
        c.send_main(main_msgc::AGENT_DATA, m).unwrap();
    }
    // All three reach the guest and their tokens come back; two echoes arrive.
    c.wait(T, |s| {
        let tokens: u32 = s
            .agent
            .iter()
            .map(|m| match m {
                ServerMsg::AgentToken(n) => *n,
                _ => 0,
            })
            .sum();
        let data = s
            .agent
            .iter()
            .filter(|m| matches!(m, ServerMsg::AgentData(_)))
            .count();
        tokens == 3 && data == 2
    })
    .unwrap();
    assert_eq!(agent.got.lock().unwrap().len(), 3);
    std::thread::sleep(Duration::from_millis(100));
    let data = |s: &crate::client::ClientState| -> Vec<Vec<u8>> {
        s.agent
            .iter()
            .filter_map(|m| match m {
                ServerMsg::AgentData(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        data(&c.state()),
        vec![reversed(&sent[0]), reversed(&sent[1])]
    );
    // One more token: the third echo.
    c.send_main(main_msgc::AGENT_TOKEN, &1u32.to_le_bytes())
        .unwrap();
    c.wait(T, |s| data(s).len() == 3).unwrap();
    assert_eq!(data(&c.state())[2], reversed(&sent[2]));
    // The agent goes away.
    agent.link().set_connected(false);
    c.wait(T, |s| {
        s.agent.last() == Some(&ServerMsg::AgentDisconnected(0))
    })
    .unwrap();
    assert_eq!(*agent.attached.lock().unwrap(), vec![true]);
    c.close();
    let deadline = std::time::Instant::now() + T;
    while agent.attached.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*agent.attached.lock().unwrap(), vec![true, false]);
}

#[test]
fn agent_data_beyond_the_window_closes_main() {
    let agent = Arc::new(EchoAgent {
        hold: true,
        ..EchoAgent::default()
    });
    let server = start_agent(&agent);
    agent.link().set_connected(true);
    let c = agent_client(&server);
    assert_eq!(init_agent_fields(&c), (1, AGENT_CLIENT_TOKENS));
    c.send_main(main_msgc::AGENT_START, &10u32.to_le_bytes())
        .unwrap();
    for _ in 0..AGENT_CLIENT_TOKENS {
        c.send_main(main_msgc::AGENT_DATA, &agent_msg(&[0; 8]))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(c.state().closed.is_empty());
    c.send_main(main_msgc::AGENT_DATA, &agent_msg(&[0; 8]))
        .unwrap();
    c.wait(T, |s| s.closed.contains(&ch::MAIN)).unwrap();
    assert_eq!(
        agent.got.lock().unwrap().len(),
        AGENT_CLIENT_TOKENS as usize
    );
    // The next client is served.
    let c2 = agent_client(&server);
    assert_eq!(init_agent_fields(&c2), (1, AGENT_CLIENT_TOKENS));
}
