//! Link awareness through the server: a local client is measured fast with
//! a latency, its traffic is counted per channel in `clients()`, and PONGs
//! that answer no PING of ours change nothing and close nothing.

use super::jpeg::{display_estimate, display_stats};
use super::*;
use crate::channel::link_meter::SLOW_BPS;
use crate::proto::{channel as ch, msgc};
use crate::wire::Writer;

#[test]
fn a_local_client_is_fast_and_its_traffic_is_counted() {
    let (server, _rec) = start(None);
    let s = picture(160, 120, 1);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    // The MARK follows the picture's flush: counted once it has arrived.
    c.wait(T, |st| st.marks == 1).unwrap();
    let d = display_estimate(&server);
    let bps = d.bandwidth_bps.expect("estimated") as f64;
    assert!(bps > SLOW_BPS, "{d:?}");
    assert!(
        d.latency.is_some_and(|l| l < Duration::from_secs(1)),
        "{d:?}"
    );
    // SET_ACK, SURFACE_CREATE, the picture, MARK; the net test's three
    // PINGs (80 KiB) went on MAIN, not in front of the picture.
    assert!(d.messages_sent >= 4, "{d:?}");
    assert!(d.bytes_sent < 64 * 1024, "{d:?}");
    let main = server
        .clients()
        .into_iter()
        .find(|c| c.channel_type == ch::MAIN)
        .and_then(|c| c.stats)
        .expect("a main channel with stats");
    assert!(main.bytes_sent > 80 * 1024, "{main:?}");
    assert!(
        main.bandwidth_bps.is_some_and(|b| b as f64 > SLOW_BPS),
        "{main:?}"
    );
    assert!(d.draws >= 1, "{d:?}");
    let images: u64 = d.codecs.iter().map(|(_, n)| n).sum();
    assert_eq!(images, d.draws, "every draw here is a DRAW_COPY: {d:?}");
    // Every channel counts what it sent; only the display draws.
    // (The cursor channel may still be linking.)
    let deadline = std::time::Instant::now() + T;
    let all = loop {
        let all = server.clients();
        if all.len() == 4 || std::time::Instant::now() > deadline {
            break all;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(all.len(), 4, "{all:?}");
    for info in &all {
        let st = info.stats.as_ref().unwrap();
        assert!(st.messages_sent > 0, "{info:?}");
        if info.channel_type != ch::DISPLAY {
            assert_eq!(st.draws, 0, "{info:?}");
        }
    }
    assert!(c.state().errors.is_empty());
}

#[test]
fn pongs_that_answer_nothing_are_ignored() {
    let (server, _rec) = start(None);
    let s = picture(160, 120, 2);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    wait_surface(&c, &s);
    let before = display_estimate(&server);
    let pong = |id: u32, ts: u64| {
        let mut w = Writer::new();
        w.u32(id).u64(ts);
        w.finish()
    };
    // Unknown ids, absurd timestamps for ids that were used, a short one.
    for (id, ts) in [
        (0, 0),
        (12345, 1),
        (1, u64::MAX),
        (3, 0),
        (u32::MAX, u64::MAX),
    ] {
        c.send_raw(ch::DISPLAY, msgc::PONG, &pong(id, ts)).unwrap();
    }
    c.send_raw(ch::DISPLAY, msgc::PONG, &[1, 2, 3]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The channel still works and the latency did not move (only PONGs
    // move it; the traffic may refine the bandwidth).
    let s2 = picture(160, 120, 3);
    server.update(&s2, &[full(&s2)], &[]);
    wait_surface(&c, &s2);
    let after = display_stats(&server);
    assert_eq!(after.latency, before.latency);
    assert!(after.bandwidth_bps.unwrap() as f64 > SLOW_BPS, "{after:?}");
    assert!(c.state().errors.is_empty());
    assert!(!c.state().closed.contains(&ch::DISPLAY));
}
