//! Flow control: a client that stops ACKing or stops reading never blocks update(),
//! its session's other channels or the next client, and the server's memory stays
//! bounded.

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
    let (server, rec) = start(None);
    let stalled = connect(&server);
    stalled.set_auto_ack(false);
    stalled.wait(T, |s| s.inputs_init.is_some()).unwrap();
    let frames: Vec<Frame> = (0..8).map(|i| picture(160, 120, i)).collect();
    // Spaced updates, each its own DRAW_COPY unless the server merges them (a busy
    // machine), until the window is full.
    let deadline = Instant::now() + T;
    let mut i = 0u32;
    while stalled.state().display_msgs < u64::from(2 * ACK_WINDOW) {
        if Instant::now() > deadline {
            let st = stalled.state();
            panic!(
                "window never filled: {} messages, {} draws, {} creates, {} marks",
                st.display_msgs, st.draw_copies, st.surface_creates, st.marks
            );
        }
        let r = Rect {
            x: i % 150,
            y: 0,
            width: 10,
            height: 10,
        };
        server.update(&frames[i as usize % 8], &[r], &[]);
        std::thread::sleep(Duration::from_millis(3));
        i += 1;
    }
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
        server.update(f, &[r], &[]);
        slowest = slowest.max(t0.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(100),
        "update() blocked for {slowest:?}"
    );
    let last = frames[999 % 8].clone();
    server.update(&last, &[full(&last)], &[]);
    // The stalled display does not hold up the session's other channels.
    stalled.key_scancode(&[0x1e, 0x9e]).unwrap();
    assert_eq!(rec.wait_for(2).len(), 2);
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
    let (server, rec) = start(None);
    let first = picture(640, 480, 0);
    server.update(&first, &[full(&first)], &[]);
    // A session whose display channel never reads its socket (and never ACKs); its
    // main and inputs channels are read as usual.
    let stalled = TestClient::connect(
        &server.local_addr(),
        ClientOptions {
            channels: vec![ch::INPUTS],
            ..ClientOptions::default()
        },
    )
    .unwrap();
    stalled.wait(T, |s| s.inputs_init.is_some()).unwrap();
    let id = stalled.state().session_id;
    let (_silent, _) = link_channel(
        &server.local_addr(),
        id,
        ch::DISPLAY,
        vec![],
        &ClientOptions::default(),
    )
    .unwrap();
    // Frames are made up front: building pixels is slow in debug builds.
    let frames: Vec<Frame> = (1..=4).map(|i| picture(640, 480, i)).collect();
    let rss0 = rss_bytes();
    let mut slowest = Duration::ZERO;
    for i in 0..1000 {
        let f = &frames[i % frames.len()];
        let t0 = Instant::now();
        server.update(f, &[full(f)], &[]);
        slowest = slowest.max(t0.elapsed());
        if i % 100 == 0 {
            // Let the display task run into the full socket meanwhile.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(
        slowest < Duration::from_millis(100),
        "update() blocked for {slowest:?}"
    );
    // The session's inputs channel is still served.
    stalled.key_scancode(&[0x1e, 0x9e]).unwrap();
    assert_eq!(rec.wait_for(2).len(), 2);
    std::thread::sleep(Duration::from_millis(200));
    let grown = rss_bytes().saturating_sub(rss0);
    // 1000 frames of 1.2 MB would be 1.2 GB if anything queued them.
    assert!(grown < 150 << 20, "memory grew by {} MiB", grown >> 20);
    // A new client replaces the stalled session (whose display is stuck writing) and
    // gets the latest frame.
    let good = connect(&server);
    wait_surface(&good, &frames[999 % 4]);
    stalled.wait(T, |s| s.closed.contains(&ch::MAIN)).unwrap();
}
