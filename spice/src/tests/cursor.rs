//! Pointer trails: the guest's QXL_CURSOR_TRAIL reaches clients as
//! CURSOR_TRAIL with its length and frequency, once per change.

use super::*;
use crate::client::decode::ServerMsg;
use crate::CursorUpdate;

#[test]
fn guest_pointer_trail_reaches_the_cursor_channel() {
    let (server, _) = start(None);
    let s1 = picture(32, 16, 1);
    server.update(&s1, &[full(&s1)], &[]);
    let c = connect(&server);
    c.wait(T, |s| s.cursor_init.is_some()).unwrap();
    let trail = CursorUpdate::Trail {
        length: 5,
        frequency: 40,
    };
    server.cursor_update(0, trail.clone());
    let want = ServerMsg::CursorTrail {
        length: 5,
        frequency: 40,
    };
    c.wait(T, |s| s.cursor.contains(&want)).unwrap();
    // The same trail again is no change; a move after it arrives alone.
    server.cursor_update(0, trail);
    server.cursor_update(0, CursorUpdate::Move { x: 3, y: 4 });
    c.wait(T, |s| {
        s.cursor.contains(&ServerMsg::CursorMove { x: 3, y: 4 })
    })
    .unwrap();
    let trails = c
        .state()
        .cursor
        .iter()
        .filter(|m| matches!(m, ServerMsg::CursorTrail { .. }))
        .count();
    assert_eq!(trails, 1);
    // A reset turns trails off again.
    server.cursor_update(0, CursorUpdate::Reset);
    let off = ServerMsg::CursorTrail {
        length: 0,
        frequency: 0,
    };
    c.wait(T, |s| s.cursor.contains(&off)).unwrap();
    assert!(c.state().errors.is_empty(), "{:?}", c.state().errors);
}

fn shape(seed: u32, hot_x: u16) -> crate::CursorShape {
    crate::CursorShape {
        width: 8,
        height: 4,
        hot_x,
        hot_y: 1,
        pixels: (0..32).map(|i| 0xff00_0000 | seed << 8 | i).collect(),
    }
}

fn pic(s: &crate::CursorShape) -> crate::client::CursorPic {
    crate::client::CursorPic {
        width: s.width,
        height: s.height,
        hot_x: s.hot_x,
        hot_y: s.hot_y,
        pixels: s.pixels.clone(),
    }
}

fn sets(s: &crate::client::ClientState) -> usize {
    s.cursor
        .iter()
        .filter(|m| matches!(m, ServerMsg::CursorSet { .. }))
        .count()
}

/// Defines `shape` and waits until the client has shown it as its `n`th SET
/// (the channel keeps only the latest state, so each step is waited for).
fn set_and_wait(
    server: &crate::SpiceServer,
    c: &crate::client::TestClient,
    s: &crate::CursorShape,
    n: usize,
) {
    server.cursor_update(
        0,
        CursorUpdate::Set {
            shape: s.clone(),
            x: 10,
            y: 10,
            visible: true,
        },
    );
    let want = pic(s);
    c.wait(T, |st| {
        sets(st) == n && st.cursor_shape.as_ref() == Some(&want) || !st.errors.is_empty()
    })
    .unwrap();
    assert!(c.state().errors.is_empty(), "{:?}", c.state().errors);
}

fn connected() -> (crate::SpiceServer, crate::client::TestClient) {
    let (server, _) = start(None);
    let s1 = picture(32, 16, 1);
    server.update(&s1, &[full(&s1)], &[]);
    let c = connect(&server);
    c.wait(T, |s| s.cursor_init.is_some()).unwrap();
    (server, c)
}

#[test]
fn alternating_shapes_come_from_the_cache() {
    let (server, c) = connected();
    // INIT sent the arrow with its pixels, cached.
    assert_eq!(c.state().cursor_shapes_sent, 1);
    assert_eq!(c.state().cursor_cache.len(), 1);
    let (a, b) = (shape(1, 0), shape(2, 0));
    set_and_wait(&server, &c, &a, 1);
    set_and_wait(&server, &c, &b, 2);
    for n in 3..9 {
        set_and_wait(&server, &c, if n % 2 == 1 { &a } else { &b }, n);
    }
    let st = c.state();
    // Each shape crossed the wire once; every repeat was a header only, and
    // the shape the client showed after a FROM_CACHE is the original.
    assert_eq!(st.cursor_shapes_sent, 3);
    assert_eq!(st.cursor_cache_hits, 6);
    assert_eq!((st.cursor_cache.len(), st.cursor_invals), (3, 0));
    drop(st);
    // Hidden and shown again by a move: SET once more, from the cache.
    server.cursor_update(0, CursorUpdate::Hide);
    c.wait(T, |s| {
        s.cursor.last() == Some(&ServerMsg::CursorOther(crate::proto::cursor_msg::HIDE))
    })
    .unwrap();
    server.cursor_update(0, CursorUpdate::Move { x: 1, y: 1 });
    c.wait(T, |s| sets(s) == 9).unwrap();
    let st = c.state();
    assert_eq!((st.cursor_shapes_sent, st.cursor_cache_hits), (3, 7));
    assert!(st.errors.is_empty(), "{:?}", st.errors);
}

#[test]
fn same_pixels_with_another_hot_spot_is_another_shape() {
    let (server, c) = connected();
    set_and_wait(&server, &c, &shape(1, 0), 1);
    set_and_wait(&server, &c, &shape(1, 5), 2);
    set_and_wait(&server, &c, &shape(1, 0), 3);
    let st = c.state();
    assert_eq!((st.cursor_shapes_sent, st.cursor_cache_hits), (3, 1));
}

#[test]
fn more_shapes_than_the_cache_holds_evict_the_oldest_with_inval_one() {
    let (server, c) = connected();
    // The arrow plus 300 shapes: 45 evictions. The test client refuses a
    // 257th entry and an INVAL_ONE of a shape it does not hold.
    for n in 1..=300 {
        set_and_wait(&server, &c, &shape(n as u32, 0), n);
    }
    {
        let st = c.state();
        assert_eq!(st.cursor_invals, 45);
        assert_eq!(st.cursor_cache.len(), 256);
        assert_eq!(st.cursor_cache_hits, 0);
    }
    // The oldest were evicted: shape 1 comes with pixels again, shape 300
    // (the newest) from the cache.
    set_and_wait(&server, &c, &shape(1, 0), 301);
    set_and_wait(&server, &c, &shape(300, 0), 302);
    let st = c.state();
    assert_eq!((st.cursor_shapes_sent, st.cursor_cache_hits), (302, 1));
    assert_eq!(st.cursor_invals, 46);
}

#[test]
fn a_new_client_starts_with_an_empty_cache() {
    let (server, c1) = connected();
    let (a, b) = (shape(1, 0), shape(2, 0));
    set_and_wait(&server, &c1, &a, 1);
    set_and_wait(&server, &c1, &b, 2);
    c1.close();
    // The second client's INIT carries b in full: nothing of the first
    // client's cache is assumed.
    let c2 = connect(&server);
    c2.wait(T, |s| s.cursor_init.is_some()).unwrap();
    {
        let st = c2.state();
        assert_eq!(st.cursor_shape.as_ref(), Some(&pic(&b)));
        assert_eq!((st.cursor_shapes_sent, st.cursor_cache_hits), (1, 0));
    }
    set_and_wait(&server, &c2, &a, 1);
    set_and_wait(&server, &c2, &b, 2);
    let st = c2.state();
    assert_eq!((st.cursor_shapes_sent, st.cursor_cache_hits), (2, 1));
    assert!(st.errors.is_empty(), "{:?}", st.errors);
}

#[test]
fn device_reset_empties_the_client_cache() {
    let (server, c) = connected();
    let a = shape(1, 0);
    set_and_wait(&server, &c, &a, 1);
    server.cursor_update(0, CursorUpdate::Reset);
    c.wait(T, |s| sets(s) == 2).unwrap();
    {
        let st = c.state();
        assert_eq!(st.cursor_invals, 1);
        // The arrow again, in full: the INVAL_ALL emptied the client's cache.
        assert_eq!(st.cursor_shapes_sent, 3);
        assert_eq!(st.cursor_cache.len(), 1);
    }
    set_and_wait(&server, &c, &a, 3);
    let st = c.state();
    assert_eq!((st.cursor_shapes_sent, st.cursor_cache_hits), (4, 0));
    assert!(st.errors.is_empty(), "{:?}", st.errors);
}
