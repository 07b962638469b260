//! Link-stage limits and liveness: idle or silent connections, the link timeout, and
//! TCP keepalive on accepted sockets.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::*;
use crate::server::Limits;

fn start_limits(limits: Limits) -> SpiceServer {
    SpiceServer::start_with(
        config(None),
        ports(&Arc::new(Recorder::default())),
        limits,
        Vec::new(),
    )
    .unwrap()
}

fn tcp_addr(server: &SpiceServer) -> SocketAddr {
    match server.local_addr() {
        Listen::Tcp(a) => a,
        Listen::Unix(_) => unreachable!(),
    }
}

/// Has the server closed this socket (EOF or reset)? Never blocks.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

#[test]
fn idle_connections_do_not_lock_out_a_client() {
    let (server, _) = start(None);
    let addr = tcp_addr(&server);
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    // At most 32 stay in the link stage; the others are closed well before the
    // link timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closed = vec![false; idle.len()];
    loop {
        for (s, c) in idle.iter_mut().zip(closed.iter_mut()) {
            *c = *c || closed_by_server(s);
        }
        let n = closed.iter().filter(|&&c| c).count();
        if n >= 100 - 32 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of 100 idle connections closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A real client still links, at once, and is fully served.
    let t0 = Instant::now();
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some() && s.cursor_init.is_some())
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "linking took {:?}",
        t0.elapsed()
    );
    let s = picture(32, 32, 3);
    server.update(&s, &[full(&s)], &[]);
    wait_surface(&c, &s);
}

#[test]
fn silent_connection_is_closed_after_the_link_timeout() {
    // The same timeout bounds the real link at the end, whose budget holds
    // the server's RSA key generation when the pool is empty (its SCHED_IDLE
    // refill gets no CPU on a busy machine): 70-140 ms a key measured on a
    // loaded two-core machine, four links. At 400 ms it timed out there.
    let timeout = Duration::from_millis(1000);
    let server = start_limits(Limits {
        link_timeout: timeout,
        ..Limits::default()
    });
    let addr = tcp_addr(&server);
    // One sends nothing, one stops inside the link header, one after a full link
    // message (before the ticket).
    let mut partial = b"REDQ".to_vec();
    partial.extend_from_slice(&2u32.to_le_bytes());
    let full_mess = crate::client::link::encode_link_mess(&crate::client::link::LinkParams {
        connection_id: 0,
        channel_type: crate::proto::channel::MAIN,
        channel_id: 0,
        common_caps: crate::client::link::default_common_caps(),
        channel_caps: vec![],
        password: "",
    });
    for sent in [&[][..], &partial[..], &full_mess[..]] {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(sent).unwrap();
        let mut rest = Vec::new();
        // EOF (or a reset) within the timeout; only a link reply may come first.
        let _ = s.read_to_end(&mut rest);
        let took = t0.elapsed();
        assert!(
            took >= timeout - Duration::from_millis(50) && took < timeout * 5,
            "closed after {took:?} ({} bytes sent)",
            sent.len()
        );
        assert!(rest.is_empty() || sent.len() == full_mess.len());
    }
    // The server itself is fine.
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
}

/// The kernel's view of a TCP socket: (timer kind, time left in clock ticks) from
/// /proc/net/tcp for the connection local -> remote (IPv4).
fn tcp_timer(local: SocketAddr, remote: SocketAddr) -> Option<(u32, u64)> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => unreachable!(),
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&l.as_str()) || f.get(2) != Some(&r.as_str()) {
            return None;
        }
        let (kind, when) = f.get(5)?.split_once(':')?;
        Some((
            u32::from_str_radix(kind, 16).ok()?,
            u64::from_str_radix(when, 16).ok()?,
        ))
    })
}

#[test]
fn accepted_tcp_sockets_have_keepalive() {
    let (server, _) = start(None);
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    // Any linked channel's server side: an idle socket whose keepalive timer runs
    // (timer kind 2) with at most 30 s left. The test's own client sockets have none.
    let server_addr = tcp_addr(&server);
    let s = TcpStream::connect(server_addr).unwrap();
    let local = s.local_addr().unwrap();
    // Until the server accepts it, the socket waits in the backlog without one.
    let deadline = Instant::now() + Duration::from_secs(5);
    let timer = loop {
        let t = tcp_timer(server_addr, local);
        if t.is_some_and(|t| t.0 == 2) || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let timer = timer.expect("server socket not in /proc/net/tcp");
    assert_eq!(timer.0, 2, "keepalive timer not running: {timer:?}");
    // Clock ticks are 1/100 s (USER_HZ).
    assert!(timer.1 <= 3000, "first probe in {} ticks", timer.1);
    assert_eq!(
        tcp_timer(local, server_addr).map(|t| t.0),
        Some(0),
        "client side has no timer"
    );
}
