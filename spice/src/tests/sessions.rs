//! Sessions: replacement by a new client, connect/disconnect cycles, events,
//! clients(), unix sockets and shutdown.

use std::io::Read;

use super::*;
use crate::client::link::{default_common_caps, link, LinkParams};
use crate::client::{link_channel, AnyStream};
use crate::proto::{channel as ch, link_err};
use crate::{Error, SpiceEvent};

fn wait_clients(server: &SpiceServer, n: usize) {
    let deadline = std::time::Instant::now() + T;
    while server.clients().len() != n {
        assert!(
            std::time::Instant::now() < deadline,
            "clients: {:?}",
            server.clients()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn second_client_replaces_the_first() {
    let (server, _) = start(None);
    let s = picture(80, 60, 1);
    server.update(&s, &[full(&s)], &[]);
    let events = server.subscribe();
    let c1 = connect(&server);
    wait_surface(&c1, &s);
    c1.wait(T, |s| s.cursor_init.is_some() && s.inputs_init.is_some())
        .unwrap();
    wait_clients(&server, 4);
    let id1 = c1.state().session_id;
    let c2 = connect(&server);
    // Every channel of the old session is closed, cleanly (no decoding error).
    c1.wait(T, |s| s.closed.len() == 4).unwrap();
    assert!(c1.state().errors.is_empty());
    wait_surface(&c2, &s);
    c2.wait(T, |s| s.cursor_init.is_some() && s.inputs_init.is_some())
        .unwrap();
    let id2 = c2.state().session_id;
    assert_ne!(id1, id2);
    wait_clients(&server, 4);
    let clients = server.clients();
    assert!(clients
        .iter()
        .all(|c| c.connection_id == id2 && c.family == "ipv4"));
    let mut types: Vec<u8> = clients.iter().map(|c| c.channel_type).collect();
    types.sort();
    assert_eq!(types, vec![1, 2, 3, 4]);
    // Events: per channel Connected and Initialized, and Disconnected for
    // session 1. A channel is listed as a client before its task sends
    // Initialized (and the old session's tasks end on their own), so the
    // last events may come a little after the waits above: collect until
    // all are there or T has passed.
    let connected = |e: &SpiceEvent| matches!(e, SpiceEvent::Connected { .. });
    let initialized = |e: &SpiceEvent| matches!(e, SpiceEvent::Initialized { .. });
    let gone = |e: &SpiceEvent| matches!(e, SpiceEvent::Disconnected { client } if client.connection_id == id1);
    let count =
        |evs: &[SpiceEvent], f: &dyn Fn(&SpiceEvent) -> bool| evs.iter().filter(|e| f(e)).count();
    let mut evs: Vec<SpiceEvent> = Vec::new();
    let deadline = std::time::Instant::now() + T;
    while (
        count(&evs, &connected),
        count(&evs, &initialized),
        count(&evs, &gone),
    ) != (8, 8, 4)
        && std::time::Instant::now() < deadline
    {
        if let Ok(e) = events.recv_timeout(Duration::from_millis(50)) {
            evs.push(e);
        }
    }
    evs.extend(events.try_iter());
    assert_eq!(count(&evs, &connected), 8);
    assert_eq!(count(&evs, &initialized), 8);
    assert_eq!(count(&evs, &gone), 4);
    if let Some(SpiceEvent::Connected {
        server: srv,
        client,
    }) = evs.first()
    {
        assert_eq!(client.channel_type, ch::MAIN);
        assert_eq!(
            Listen::Tcp(format!("{}:{}", srv.host, srv.port).parse().unwrap()),
            server.local_addr()
        );
        assert!(!client.tls);
    } else {
        panic!("first event {:?}", evs.first());
    }
}

#[test]
fn five_hundred_connect_disconnect_cycles() {
    let (server, _) = start(None);
    let s = picture(32, 32, 1);
    server.update(&s, &[full(&s)], &[]);
    for i in 0..500 {
        if i % 50 == 0 {
            let c = connect(&server);
            wait_surface(&c, &s);
            c.close();
        } else {
            let mut st = AnyStream::connect(&server.local_addr()).unwrap();
            link(
                &mut st,
                &LinkParams {
                    connection_id: 0,
                    channel_type: ch::MAIN,
                    channel_id: 0,
                    common_caps: default_common_caps(),
                    channel_caps: vec![],
                    password: "",
                },
            )
            .unwrap();
            // Read MAIN_INIT's header, then leave.
            let mut hdr = [0u8; 6];
            st.read_exact(&mut hdr).unwrap();
            assert_eq!(u16::from_le_bytes([hdr[0], hdr[1]]), 103);
        }
    }
    wait_clients(&server, 0);
    let c = connect(&server);
    wait_surface(&c, &s);
    wait_clients(&server, 4);
}

#[test]
fn unix_socket_and_shutdown() {
    let dir = std::env::temp_dir().join(format!("spice-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spice.sock");
    let rec = Arc::new(Recorder::default());
    let server = SpiceServer::start(
        Config {
            listen: Listen::Unix(path.clone()),
            password: Some("pw".into()),
            force_raw_images: false,
            playback_compression: true,
            jpeg: Default::default(),
            streaming_video: Default::default(),
            images: Default::default(),
            transport: Default::default(),
        },
        ports(&rec),
    )
    .unwrap();
    assert_eq!(server.local_addr(), Listen::Unix(path.clone()));
    let s = picture(40, 30, 2);
    server.update(&s, &[full(&s)], &[]);
    let c = TestClient::connect(&server.local_addr(), opts("pw")).unwrap();
    wait_surface(&c, &s);
    c.wait(T, |s| s.cursor_init.is_some() && s.inputs_init.is_some())
        .unwrap();
    wait_clients(&server, 4);
    assert!(server
        .clients()
        .iter()
        .all(|c| c.family == "unix" && c.port == 0));
    server.shutdown();
    c.wait(T, |s| s.closed.len() == 4).unwrap();
    assert!(!path.exists(), "socket file removed");
    // A stale socket file (e.g. after a crash) does not prevent a restart.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    let server = SpiceServer::start(
        Config {
            listen: Listen::Unix(path.clone()),
            password: None,
            force_raw_images: false,
            playback_compression: true,
            jpeg: Default::default(),
            streaming_video: Default::default(),
            images: Default::default(),
            transport: Default::default(),
        },
        ports(&Arc::new(Recorder::default())),
    )
    .unwrap();
    drop(server);
    assert!(!path.exists());
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn main_channel_behaviour() {
    let (server, _) = start(None);
    let c = connect(&server);
    c.wait(T, |s| s.main_init.is_some()).unwrap();
    let init = c.state().main_init.clone().unwrap();
    assert!(matches!(
        init,
        crate::client::decode::ServerMsg::MainInit {
            supported_mouse_modes: 1,
            current_mouse_mode: 1,
            agent_connected: 0,
            ..
        }
    ));
    // Asking for client mode: the answer is still server mode.
    c.send_main(
        crate::proto::main_msgc::MOUSE_MODE_REQUEST,
        &2u16.to_le_bytes(),
    )
    .unwrap();
    c.wait(T, |s| s.mouse_mode == Some((1, 1))).unwrap();
    // Agent messages are accepted and ignored.
    c.send_main(
        crate::proto::main_msgc::AGENT_START,
        &u32::MAX.to_le_bytes(),
    )
    .unwrap();
    c.send_main(crate::proto::main_msgc::AGENT_DATA, &[0; 64])
        .unwrap();
    c.send_main(crate::proto::main_msgc::AGENT_TOKEN, &5u32.to_le_bytes())
        .unwrap();
    c.send_main(crate::proto::main_msgc::ATTACH_CHANNELS, &[])
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(c.state().closed.is_empty());
    assert!(c.state().errors.is_empty());
    // The cursor channel's INIT comes on its own channel, whenever its task
    // gets to it: waited for, not assumed within the sleep above.
    c.wait(T, |s| s.cursor_init.is_some()).unwrap();
    assert!(matches!(
        c.state().cursor_init,
        Some(crate::client::decode::ServerMsg::CursorInit {
            visible: true,
            width: 12,
            height: 19
        })
    ));
}

#[test]
fn a_session_links_each_channel_once() {
    let (server, rec) = start(None);
    let addr = server.local_addr();
    let o = ClientOptions::default();
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some() && s.cursor_init.is_some())
        .unwrap();
    let id = c.state().session_id;
    // Every further DISPLAY, INPUTS or CURSOR on the session is refused at link time
    // (each used to get its own task and display state: unbounded memory).
    for t in [ch::DISPLAY, ch::INPUTS, ch::CURSOR] {
        for _ in 0..3 {
            match link_channel(&addr, id, t, vec![], &o) {
                Err(Error::LinkRefused(link_err::CHANNEL_NOT_AVAILABLE)) => {}
                Err(e) => panic!("channel {t}: {e}"),
                Ok(_) => panic!("channel {t}: a second one was linked"),
            }
        }
    }
    wait_clients(&server, 4);
    // The session's own channels carry on.
    c.key_scancode(&[0x1e, 0x9e]).unwrap();
    assert_eq!(rec.wait_for(2).len(), 2);
    // When a channel ends, the session may link that type again.
    c.send_raw(
        ch::DISPLAY,
        crate::proto::display_msgc::INIT,
        &vec![0; 100_000],
    )
    .unwrap();
    c.wait(T, |s| s.closed.contains(&ch::DISPLAY)).unwrap();
    let deadline = std::time::Instant::now() + T;
    let _display = loop {
        match link_channel(&addr, id, ch::DISPLAY, vec![], &o) {
            Ok((s, _)) => break s,
            Err(Error::LinkRefused(link_err::CHANNEL_NOT_AVAILABLE))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("display not linked again: {e}"),
        }
    };
    wait_clients(&server, 4);
    // A new session starts with none of them.
    let c2 = connect(&server);
    c2.wait(T, |s| s.inputs_init.is_some() && s.cursor_init.is_some())
        .unwrap();
    assert!(c.state().errors.is_empty() && c2.state().errors.is_empty());
}
