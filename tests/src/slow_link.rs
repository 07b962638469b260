//! A TCP proxy that plays a slow link (a WAN in front of a local server):
//! each direction carries at most `bps` and hands every byte over `delay`
//! after it has crossed (the one-way delay), through a bounded queue (a
//! router's buffer), so the sender feels back-pressure as over a real link.
//! Counts the bytes it delivered towards the client.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Bytes read at a time: about one TCP segment.
const CHUNK: usize = 1448;
/// Chunks queued per direction (about 90 KB: the link's buffer).
const QUEUE: usize = 64;

pub struct SlowLink {
    pub port: u16,
    stop: Arc<AtomicBool>,
    down: Arc<AtomicU64>,
}

impl SlowLink {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards each
    /// connection to 127.0.0.1:`backend` over a link of `bps` bits/s and
    /// `delay` each way.
    pub fn start(backend: u16, bps: f64, delay: Duration) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicU64::new(0));
        let (st, dn) = (stop.clone(), down.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                    continue;
                };
                for s in [&client, &server] {
                    let _ = s.set_nodelay(true);
                }
                let up = (client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(up.0, up.1, bps, delay, None);
                pipe(server, client, bps, delay, Some(dn.clone()));
            }
        });
        SlowLink { port, stop, down }
    }

    /// Bytes delivered to clients so far.
    pub fn bytes_down(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One direction: a reader that times each chunk onto the link, a writer
/// that delivers it when it has arrived.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    bps: f64,
    delay: Duration,
    count: Option<Arc<AtomicU64>>,
) {
    let (tx, rx) = sync_channel::<(Instant, Vec<u8>)>(QUEUE);
    thread::spawn(move || {
        let mut link_free = Instant::now();
        let mut buf = [0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            link_free = link_free.max(now) + Duration::from_secs_f64(n as f64 * 8.0 / bps);
            if tx.send((link_free + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Read);
    });
    thread::spawn(move || {
        for (at, bytes) in rx {
            let now = Instant::now();
            if at > now {
                thread::sleep(at - now);
            }
            // Counted as handed over, before the peer can have read them.
            if let Some(c) = &count {
                c.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_has_its_rate_and_delay() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend = server.local_addr().unwrap().port();
        // 4 Mbit/s, 30 ms each way.
        let link = SlowLink::start(backend, 4e6, Duration::from_millis(30));
        let mut c = TcpStream::connect(("127.0.0.1", link.port)).unwrap();
        let (mut s, _) = server.accept().unwrap();
        // Round trip of one byte: about 60 ms.
        let t0 = Instant::now();
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        s.write_all(b"y").unwrap();
        c.read_exact(&mut b).unwrap();
        let rtt = t0.elapsed();
        assert!(
            rtt >= Duration::from_millis(60) && rtt < Duration::from_millis(200),
            "{rtt:?}"
        );
        // 200 KB server to client: 0.4 s at 4 Mbit/s (plus the delay).
        let t0 = Instant::now();
        let sender = thread::spawn(move || s.write_all(&vec![7u8; 200_000]).unwrap());
        let mut got = vec![0u8; 200_000];
        c.read_exact(&mut got).unwrap();
        sender.join().unwrap();
        let t = t0.elapsed().as_secs_f64();
        // Generous above: a loaded test machine sleeps late.
        assert!(t > 0.4 && t < 1.0, "{t}");
        assert!(link.bytes_down() >= 200_001);
    }
}
