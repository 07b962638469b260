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
