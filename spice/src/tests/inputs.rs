//! Inputs: keys (plain, E0, Pause, scancode sequences), mouse, motion acks, lock keys.

use super::*;
use crate::proto::{button, button_mask};

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
    // Client wants nothing: Num Lock toggled.
    c.key_modifiers(0).unwrap();
    assert_eq!(
        rec.wait_for(2),
        vec![Input::Key(0x45, true), Input::Key(0x45, false)]
    );
    // Guest LEDs change: polled and pushed.
    *rec.leds.lock().unwrap() = 1 | 4;
    c.wait(T, |s| s.modifiers.last() == Some(&5)).unwrap();
    // Pushed explicitly.
    *rec.leds.lock().unwrap() = 0;
    server.set_keyboard_leds(0);
    c.wait(T, |s| s.modifiers.last() == Some(&0)).unwrap();
}
