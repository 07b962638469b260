//! Inputs: keys (plain, E0, Pause, scancode sequences), mouse, motion acks, lock keys,
//! releases when the channel ends.
//!
//! The `Recorder`'s LEDs model a guest whose LEDs lag: injected lock keys never
//! change them by themselves; a test pushes them when the guest "catches up".

use super::*;
use crate::proto::{button, button_mask, channel as ch, inputs_msgc};

#[test]
fn keys_reach_the_sink_as_set1_scancodes() {
    let (server, rec) = start(None);
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    c.key_down(0x1e).unwrap(); // A
    c.key_up(0x9e).unwrap();
    // Right Ctrl as spice-gtk encodes it: bytes E0 1D, release E0 9D.
    c.key_down(0x1de0).unwrap();
    c.key_up(0x9de0).unwrap();
    // Pause: spice-gtk sends [E1 1D] then [45], and [E1 9D] [C5].
    c.key_down(0x1de1).unwrap();
    c.key_down(0x45).unwrap();
    c.key_up(0x9de1).unwrap();
    c.key_up(0xc5).unwrap();
    // Atomic press+release of the E0 key "Insert".
    c.key_scancode(&[0xe0, 0x52, 0xe0, 0xd2]).unwrap();
    let got = rec.wait_for(8);
    assert_eq!(
        got,
        vec![
            Input::Key(0x1e, true),
            Input::Key(0x1e, false),
            Input::Key(0xe01d, true),
            Input::Key(0xe01d, false),
            Input::Key(0xe11d, true),
            Input::Key(0xe11d, false),
            Input::Key(0xe052, true),
            Input::Key(0xe052, false),
        ]
    );
}

#[test]
fn mouse_buttons_are_converted_to_ps2_order() {
    let (server, rec) = start(None);
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    c.motion(5, -3, 0).unwrap();
    c.press(button::LEFT, button_mask::LEFT).unwrap();
    c.press(button::RIGHT, button_mask::LEFT | button_mask::RIGHT)
        .unwrap();
    c.release(button::LEFT, button_mask::RIGHT).unwrap();
    c.press(button::MIDDLE, button_mask::RIGHT | button_mask::MIDDLE)
        .unwrap();
    c.motion(-1, 2, button_mask::RIGHT | button_mask::MIDDLE)
        .unwrap();
    c.press(button::UP, 0).unwrap();
    c.release(button::UP, 0).unwrap();
    c.press(button::DOWN, 0).unwrap();
    let got = rec.wait_for(9);
    assert_eq!(
        got,
        vec![
            Input::Mouse(5, -3, 0, 0),
            Input::Mouse(0, 0, 0, 1),
            Input::Mouse(0, 0, 0, 1 | 2),
            Input::Mouse(0, 0, 0, 2),
            Input::Mouse(0, 0, 0, 2 | 4),
            Input::Mouse(-1, 2, 0, 2 | 4),
            Input::Mouse(0, 0, -1, 0),
            Input::Mouse(0, 0, 0, 0),
            Input::Mouse(0, 0, 1, 0),
        ]
    );
}

#[test]
fn motion_ack_every_four_motions() {
    let (server, rec) = start(None);
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    for _ in 0..3 {
        c.motion(1, 1, 0).unwrap();
    }
    rec.wait_for(3);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.state().motion_acks, 0);
    c.motion(1, 1, 0).unwrap();
    c.wait(T, |s| s.motion_acks == 1).unwrap();
    for _ in 0..8 {
        c.motion(1, 1, 0).unwrap();
    }
    c.wait(T, |s| s.motion_acks == 3).unwrap();
}

#[test]
fn modifiers_both_ways() {
    let (server, rec) = start(None);
    *rec.leds.lock().unwrap() = 2; // guest: Num Lock on
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    assert_eq!(c.state().inputs_init, Some(2));
    // Client wants Caps + Num: the server toggles Caps only (press + release).
    c.key_modifiers(4 | 2).unwrap();
    assert_eq!(
        rec.wait_for(2),
        vec![Input::Key(0x3a, true), Input::Key(0x3a, false)]
    );
    // The guest's LEDs catch up and are pushed.
    rec.push_leds(2 | 4);
    c.wait(T, |s| s.modifiers.last() == Some(&6)).unwrap();
    // Client wants Caps only: Num Lock toggled.
    c.key_modifiers(4).unwrap();
    assert_eq!(
        rec.wait_for(2),
        vec![Input::Key(0x45, true), Input::Key(0x45, false)]
    );
    // Guest LEDs change by themselves.
    rec.push_leds(1 | 4);
    c.wait(T, |s| s.modifiers.last() == Some(&5)).unwrap();
    rec.push_leds(0);
    c.wait(T, |s| s.modifiers.last() == Some(&0)).unwrap();
    // Pushing the same state again sends nothing.
    rec.push_leds(0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.state().modifiers, vec![6, 5, 0]);
}

#[test]
fn leds_are_pushed_not_polled() {
    use std::sync::atomic::Ordering;
    let (server, rec) = start(None);
    *rec.leds.lock().unwrap() = 4;
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init == Some(4)).unwrap();
    // Read once when the server started (the notifier's first value) and once
    // when the channel opened; never again, however long the channel lives.
    let reads = rec.led_reads.load(Ordering::SeqCst);
    assert_eq!(reads, 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rec.led_reads.load(Ordering::SeqCst), reads);
    // A push reaches the client with no read of the port: the notifier is the
    // only way the server learned it.
    rec.push_leds(2);
    c.wait(T, |s| s.modifiers.last() == Some(&2)).unwrap();
    assert_eq!(rec.led_reads.load(Ordering::SeqCst), reads);
}

/// Sends a key (A) after `f` and returns every input up to it: the server handles
/// inputs messages in order, so whatever `f` caused has reached the sink by then.
fn inputs_until_marker(c: &TestClient, rec: &Recorder, f: impl FnOnce()) -> Vec<Input> {
    f();
    c.key_scancode(&[0x1e, 0x9e]).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + T;
    while !got.ends_with(&[Input::Key(0x1e, true), Input::Key(0x1e, false)]) {
        assert!(std::time::Instant::now() < deadline, "marker never came");
        got.extend(rec.wait_for(1));
    }
    got.truncate(got.len() - 2);
    got
}

#[test]
fn lock_requests_are_compared_with_the_assumed_guest_state() {
    let (server, rec) = start(None);
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    let caps = vec![Input::Key(0x3a, true), Input::Key(0x3a, false)];
    let num = vec![Input::Key(0x45, true), Input::Key(0x45, false)];
    // Two requests for Caps before the guest's LEDs show it: one toggle.
    let got = inputs_until_marker(&c, &rec, || {
        c.key_modifiers(4).unwrap();
        c.key_modifiers(4).unwrap();
    });
    assert_eq!(got, caps);
    // The LEDs are still "off": no news, Caps stays assumed on.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        inputs_until_marker(&c, &rec, || c.key_modifiers(4).unwrap()),
        vec![]
    );
    // The guest catches up; the client hears of it.
    rec.push_leds(4);
    c.wait(T, |s| s.modifiers.last() == Some(&4)).unwrap();
    // Off twice: one toggle.
    let got = inputs_until_marker(&c, &rec, || {
        c.key_modifiers(0).unwrap();
        c.key_modifiers(0).unwrap();
    });
    assert_eq!(got, caps);
    // A pushed change overrides the assumption.
    rec.push_leds(2);
    c.wait(T, |s| s.modifiers.last() == Some(&2)).unwrap();
    assert_eq!(
        inputs_until_marker(&c, &rec, || c.key_modifiers(2).unwrap()),
        vec![]
    );
    assert_eq!(
        inputs_until_marker(&c, &rec, || {
            c.key_modifiers(0).unwrap();
            c.key_modifiers(0).unwrap();
        }),
        num
    );
    // A Caps key typed on the client toggles the guest too; the client's next
    // request (Caps on) needs no injection, although the LEDs lag.
    let got = inputs_until_marker(&c, &rec, || {
        c.key_down(0x3a).unwrap();
        c.key_down(0x3a).unwrap(); // auto-repeat: no second toggle
        c.key_up(0xba).unwrap();
        c.key_modifiers(4).unwrap();
    });
    assert_eq!(
        got,
        vec![
            Input::Key(0x3a, true),
            Input::Key(0x3a, true),
            Input::Key(0x3a, false)
        ]
    );
}

#[test]
fn held_keys_and_buttons_are_released_when_the_channel_ends() {
    for how in ["client closes", "session replaced", "protocol error"] {
        let (server, rec) = start(None);
        let c = connect(&server);
        c.wait(T, |s| s.inputs_init.is_some()).unwrap();
        c.key_down(0x1e).unwrap(); // A, held
        c.key_down(0x1de0).unwrap(); // Right Ctrl, held
        c.key_scancode(&[0x2a, 0xaa]).unwrap(); // Left Shift, released
        c.key_down(0x3a).unwrap(); // Caps, held
        c.press(button::LEFT, button_mask::LEFT).unwrap();
        assert_eq!(rec.wait_for(6).len(), 6, "{how}");
        let mut other = None;
        match how {
            "client closes" => c.close(),
            "session replaced" => {
                let c2 = connect(&server);
                c2.wait(T, |s| s.inputs_init.is_some()).unwrap();
                other = Some(c2);
                c.wait(T, |s| s.closed.contains(&ch::INPUTS)).unwrap();
            }
            _ => {
                c.send_raw(ch::INPUTS, inputs_msgc::KEY_DOWN, &[1]).unwrap();
                c.wait(T, |s| s.closed.contains(&ch::INPUTS)).unwrap();
            }
        }
        assert_eq!(
            rec.wait_for(4),
            vec![
                Input::Key(0x1e, false),
                Input::Key(0x3a, false),
                Input::Key(0xe01d, false),
                Input::Mouse(0, 0, 0, 0),
            ],
            "{how}"
        );
        // The port is told afterwards: waited for, not assumed done within a
        // fixed sleep after the releases (a descheduled task missed it).
        let detached = || rec.detached.load(std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + T;
        while detached() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{how}: never detached"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Released once only, told once only.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(rec.take(), vec![], "{how}");
        assert_eq!(detached(), 1, "{how}");
        drop(other);
    }
}

#[test]
fn nothing_held_nothing_released() {
    let (server, rec) = start(None);
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    c.key_scancode(&[0x1e, 0x9e, 0xe0, 0x1d, 0xe0, 0x9d])
        .unwrap();
    c.press(button::RIGHT, button_mask::RIGHT).unwrap();
    c.release(button::RIGHT, 0).unwrap();
    assert_eq!(rec.wait_for(6).len(), 6);
    c.close();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rec.take(), vec![]);
}

#[test]
fn client_mouse_mode_with_an_absolute_pointer() {
    use crate::port::ABS_MAX;
    use crate::proto::{main_msgc, MOUSE_MODE_CLIENT, MOUSE_MODE_SERVER};
    let rec = Arc::new(Recorder {
        absolute: true,
        ..Recorder::default()
    });
    let server = SpiceServer::start(config(None), ports(&rec)).unwrap();
    let s = picture(101, 51, 1);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    assert!(matches!(
        c.state().main_init,
        Some(crate::client::decode::ServerMsg::MainInit {
            supported_mouse_modes: 3,
            current_mouse_mode: 1,
            ..
        })
    ));
    c.send_main(
        main_msgc::MOUSE_MODE_REQUEST,
        &MOUSE_MODE_CLIENT.to_le_bytes(),
    )
    .unwrap();
    c.wait(T, |s| s.mouse_mode == Some((3, MOUSE_MODE_CLIENT)))
        .unwrap();
    // Pixels of the 101x51 surface scale to 0..=ABS_MAX; buttons and the wheel
    // follow the absolute pointer while positions come.
    c.position(50, 50, 0, 0).unwrap();
    c.position(100, 0, button_mask::LEFT, 0).unwrap();
    c.press(button::DOWN, button_mask::LEFT).unwrap();
    c.release(button::LEFT, 0).unwrap();
    // A head that does not exist points nowhere.
    c.position(1, 1, 0, 3).unwrap();
    // Relative motion switches back.
    c.motion(2, 3, 0).unwrap();
    c.press(button::RIGHT, button_mask::RIGHT).unwrap();
    assert_eq!(
        rec.wait_for(6),
        vec![
            Input::Abs(0, ABS_MAX / 2, ABS_MAX, 0, 0),
            Input::Abs(0, ABS_MAX, 0, 0, 1),
            Input::Abs(0, ABS_MAX, 0, 1, 1),
            Input::Abs(0, ABS_MAX, 0, 0, 0),
            Input::Mouse(2, 3, 0, 0),
            Input::Mouse(0, 0, 0, 2),
        ]
    );
    // Back to server mode on request.
    c.send_main(
        main_msgc::MOUSE_MODE_REQUEST,
        &MOUSE_MODE_SERVER.to_le_bytes(),
    )
    .unwrap();
    c.wait(T, |s| s.mouse_mode == Some((3, MOUSE_MODE_SERVER)))
        .unwrap();
}

#[test]
fn client_mouse_mode_follows_the_absolute_pointer() {
    use crate::port::ABS_MAX;
    use crate::proto::{main_msgc, MOUSE_MODE_CLIENT, MOUSE_MODE_SERVER};
    // No tablet driver yet: server mode only.
    let (server, rec) = start(None);
    let s = picture(64, 48, 1);
    server.update(&s, &[full(&s)], &[]);
    let c = connect(&server);
    c.wait(T, |s| s.inputs_init.is_some()).unwrap();
    assert!(matches!(
        c.state().main_init,
        Some(crate::client::decode::ServerMsg::MainInit {
            supported_mouse_modes: 1,
            ..
        })
    ));
    // The driver starts: client mode is offered, and taken on request.
    rec.set_absolute(true);
    c.wait(T, |s| s.mouse_mode == Some((3, MOUSE_MODE_SERVER)))
        .unwrap();
    c.send_main(
        main_msgc::MOUSE_MODE_REQUEST,
        &MOUSE_MODE_CLIENT.to_le_bytes(),
    )
    .unwrap();
    c.wait(T, |s| s.mouse_mode == Some((3, MOUSE_MODE_CLIENT)))
        .unwrap();
    c.position(63, 0, 0, 0).unwrap();
    assert_eq!(rec.wait_for(1), vec![Input::Abs(0, ABS_MAX, 0, 0, 0)]);
    // It stops (the guest reset): back to server mode, positions dropped.
    rec.set_absolute(false);
    c.wait(T, |s| s.mouse_mode == Some((1, MOUSE_MODE_SERVER)))
        .unwrap();
    c.position(1, 1, 0, 0).unwrap();
    c.motion(1, 1, 0).unwrap();
    assert_eq!(rec.wait_for(1), vec![Input::Mouse(1, 1, 0, 0)]);
}
