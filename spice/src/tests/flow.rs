//! Flow control: a client that stops ACKing or stops reading never blocks update()
//! or other clients, and the server's memory stays bounded.

use std::time::Instant;

use super::*;
use crate::channel::conn::ACK_WINDOW;
use crate::client::link_channel;
use crate::proto::channel as ch;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn non_acking_client_gets_at_most_the_window() {
    let (server, _) = start(None);
    let stalled = connect(&server);
    stalled.set_auto_ack(false);
    // A second view on the same session that keeps ACKing.
    let id = stalled.state().session_id;
    let good = TestClient::attach(&server.local_addr(), id, ClientOptions::default()).unwrap();
    let frames: Vec<Arc<Surface>> = (0..8).map(|i| picture(160, 120, i)).collect();
    // Spaced updates: each would be its own DRAW_COPY, so the window fills up.
    for i in 0..100u32 {
        let r = Rect {
            x: i % 150,
            y: 0,
            width: 10,
            height: 10,
        };
        server.update(frames[i as usize % 8].clone(), &[r]);
        std::thread::sleep(Duration::from_millis(3));
    }
    stalled
        .wait(T, |s| s.display_msgs >= u64::from(2 * ACK_WINDOW))
        .unwrap();
    // Then a burst, merged by the server rather than queued.
    let mut slowest = Duration::ZERO;
    for i in 0..1000u32 {
        let f = &frames[i as usize % frames.len()];
        let r = Rect {
            x: (i * 7) % 150,
            y: (i * 3) % 110,
            width: 10,
            height: 10,
        };
        let t0 = Instant::now();
        server.update(f.clone(), &[r]);
        slowest = slowest.max(t0.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(100),
        "update() blocked for {slowest:?}"
    );
    let last = frames[999 % 8].clone();
    server.update(last.clone(), &[full(&last)]);
    wait_surface(&good, &last);
    std::thread::sleep(Duration::from_millis(300));
    let got = stalled.state().display_msgs;
    // SURFACE_CREATE may overshoot the window by one message (see display.rs).
    assert!(
        got <= u64::from(2 * ACK_WINDOW) + 1,
        "stalled client got {got} messages"
    );
    // Resuming ACKs brings the stalled client to the latest pixels.
    stalled.set_auto_ack(true);
    wait_surface(&stalled, &last);
    assert!(stalled.state().errors.is_empty());
}

#[test]
fn client_that_stops_reading_does_not_block_update_or_others() {
    let (server, _) = start(None);
    let first = picture(640, 480, 0);
    server.update(first.clone(), &[full(&first)]);
    let good = connect(&server);
    wait_surface(&good, &first);
    let id = good.state().session_id;
    // A display channel that never reads its socket (and never ACKs).
    let (_silent, _) = link_channel(
        &server.local_addr(),
        id,
        ch::DISPLAY,
        vec![],
        &ClientOptions::default(),
    )
    .unwrap();
    // Frames are made up front: building pixels is slow in debug builds.
    let frames: Vec<Arc<Surface>> = (1..=4).map(|i| picture(640, 480, i)).collect();
    let rss0 = rss_bytes();
    let mut slowest = Duration::ZERO;
    for i in 0..1000 {
        let f = &frames[i % frames.len()];
        let t0 = Instant::now();
        server.update(f.clone(), &[full(f)]);
        slowest = slowest.max(t0.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(100),
        "update() blocked for {slowest:?}"
    );
    wait_surface(&good, &frames[999 % 4]);
    let grown = rss_bytes().saturating_sub(rss0);
    // 1000 frames of 1.2 MB would be 1.2 GB if anything queued them.
    assert!(grown < 150 << 20, "memory grew by {} MiB", grown >> 20);
}
