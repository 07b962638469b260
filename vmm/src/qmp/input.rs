//! Keyboard and mouse commands: `send-key`, `input-send-event`, `query-mice`.
//! They go through the machine's input router (as `Source::Qmp`), the same path
//! SPICE clients' input takes: the keyboards, the PS/2 mouse, and the tablet
//! when the machine has one (without one `abs` events get QEMU's error).

use std::time::Duration;

use serde_json::{json, Value};

use super::args::{lookup, Args};
use super::backend::{QmpBackend, Source};
use super::keys;
use super::protocol::QmpError;

/// `send-key`'s documented default hold time.
const DEFAULT_HOLD_MS: i64 = 100;
/// A longer hold would only tie up this client's thread.
const MAX_HOLD_MS: i64 = 10_000;

const BUTTON_LEFT: u8 = 1;
const BUTTON_RIGHT: u8 = 2;
const BUTTON_MIDDLE: u8 = 4;

/// A `KeyValue` ({"type": "qcode"|"number", "data": ...}) at `path`, as a set 1
/// scancode; `None` for a key the keyboard cannot send.
fn key_value(v: Value, path: String) -> Result<Option<u16>, QmpError> {
    let mut a = Args::nested(v, path)?;
    #[derive(Clone, Copy)]
    enum Kind {
        Number,
        Qcode,
    }
    let kind = a.enumeration("type", &[("number", Kind::Number), ("qcode", Kind::Qcode)])?;
    let code = match kind {
        Kind::Qcode => {
            let name = a.str("data")?;
            keys::qcode(&name).map_err(|()| {
                QmpError::generic(format!(
                    "Parameter '{}' does not accept value '{name}'",
                    a.name("data")
                ))
            })?
        }
        Kind::Number => {
            let n = a.int("data")?;
            Some(keys::qnum(n).ok_or_else(|| {
                QmpError::generic(format!(
                    "Parameter '{}' expects a scancode from 1 to 255",
                    a.name("data")
                ))
            })?)
        }
    };
    a.finish()?;
    Ok(code)
}

pub fn send_key(b: &dyn QmpBackend, mut args: Args) -> Result<Value, QmpError> {
    let list = args.list("keys")?;
    let hold = args.opt_int("hold-time")?.unwrap_or(DEFAULT_HOLD_MS);
    args.finish()?;
    let mut codes = Vec::with_capacity(list.len());
    for (i, v) in list.into_iter().enumerate() {
        codes.push(key_value(v, format!("keys[{i}]"))?);
    }
    let codes: Vec<u16> = codes.into_iter().flatten().collect();
    // Press in order, hold, release in reverse: a chord like ctrl-alt-delete.
    let input = b.input();
    for &c in &codes {
        input.key(Source::Qmp, c, true);
    }
    std::thread::sleep(Duration::from_millis(hold.clamp(0, MAX_HOLD_MS) as u64));
    for &c in codes.iter().rev() {
        input.key(Source::Qmp, c, false);
    }
    Ok(json!({}))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Button {
    Mask(u8),
    WheelUp,
    WheelDown,
    /// Buttons a 3-button PS/2 mouse does not have (side, extra, tilt, touch).
    Absent,
}

#[derive(Debug, PartialEq)]
enum Event {
    Key(Option<u16>, bool),
    Btn(Button, bool),
    /// (is the x axis, value)
    Rel(bool, i64),
    Abs(bool, i64),
}

const BUTTONS: &[(&str, Button)] = &[
    ("left", Button::Mask(BUTTON_LEFT)),
    ("middle", Button::Mask(BUTTON_MIDDLE)),
    ("right", Button::Mask(BUTTON_RIGHT)),
    ("wheel-up", Button::WheelUp),
    ("wheel-down", Button::WheelDown),
    ("side", Button::Absent),
    ("extra", Button::Absent),
    ("wheel-left", Button::Absent),
    ("wheel-right", Button::Absent),
    ("touch", Button::Absent),
];

/// Parse one `InputEvent`; `Err(kind)` is a kind no handler takes (`abs` without
/// an absolute pointer, `mtt` always).
fn parse_event(
    v: Value,
    path: String,
    absolute: bool,
) -> Result<Result<Event, &'static str>, QmpError> {
    let mut a = Args::nested(v, path.clone())?;
    let kind = a.enumeration(
        "type",
        &[
            ("key", "key"),
            ("btn", "btn"),
            ("rel", "rel"),
            ("abs", "abs"),
            ("mtt", "mtt"),
        ],
    )?;
    let data = a.take_value("data")?;
    a.finish()?;
    let mut d = Args::nested(data, format!("{path}.data"))?;
    let ev = match kind {
        "key" => {
            let key = d.take_value("key")?;
            let code = key_value(key, d.name("key"))?;
            Ok(Event::Key(code, d.bool("down")?))
        }
        "btn" => {
            let button = d.enumeration("button", BUTTONS)?;
            Ok(Event::Btn(button, d.bool("down")?))
        }
        "rel" | "abs" => {
            let s = d.str("axis")?;
            let x = lookup(&d.name("axis"), &s, &[("x", true), ("y", false)])?;
            let value = d.int("value")?;
            match kind {
                "rel" => Ok(Event::Rel(x, value)),
                _ if absolute => Ok(Event::Abs(x, value)),
                _ => Err("abs"),
            }
        }
        // Multi-touch: its members are not worth checking with no handler.
        _ => return Ok(Err("mtt")),
    };
    d.finish()?;
    Ok(ev)
}

pub fn input_send_event(b: &dyn QmpBackend, mut args: Args) -> Result<Value, QmpError> {
    // One keyboard and one mouse: a console or head choice changes nothing.
    let _device = args.opt_str("device")?;
    let _head = args.opt_int("head")?;
    let list = args.list("events")?;
    args.finish()?;
    let input = b.input();
    let mut events = Vec::with_capacity(list.len());
    for (i, v) in list.into_iter().enumerate() {
        events.push(parse_event(v, format!("events[{i}]"), input.has_tablet())?);
    }
    // As QEMU: every event must have a handler before any is sent.
    let events = events
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|kind| {
            QmpError::generic(format!("Input handler not found for event type {kind}"))
        })?;
    let (mut dx, mut dy, mut dz) = (0i32, 0i32, 0i32);
    let (mut ax, mut ay) = (None, None);
    let mut buttons = input.buttons(Source::Qmp);
    let mut mouse = false;
    let clamp = |v: i64| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    // QEMU clamps absolute values to the axis range.
    let axis = |v: i64| v.clamp(0, i64::from(devices::input::ABS_MAX)) as u32;
    for ev in events {
        match ev {
            Event::Key(Some(code), down) => input.key(Source::Qmp, code, down),
            Event::Key(None, _) => {}
            Event::Btn(Button::Mask(m), down) => {
                buttons = if down { buttons | m } else { buttons & !m };
                mouse = true;
            }
            // The wheel moves one notch per press, as QEMU's PS/2 mouse does.
            Event::Btn(Button::WheelUp, true) => {
                dz = dz.saturating_sub(1);
                mouse = true;
            }
            Event::Btn(Button::WheelDown, true) => {
                dz = dz.saturating_add(1);
                mouse = true;
            }
            Event::Btn(_, _) => {}
            Event::Rel(true, v) => {
                dx = dx.saturating_add(clamp(v));
                mouse = true;
            }
            Event::Rel(false, v) => {
                dy = dy.saturating_add(clamp(v));
                mouse = true;
            }
            Event::Abs(true, v) => ax = Some(axis(v)),
            Event::Abs(false, v) => ay = Some(axis(v)),
        }
    }
    // One report for the whole batch, as QEMU syncs once per command. Buttons and
    // the wheel go with the pointer that moves: the absolute one if it does;
    // without motion, the current one (the tablet once its driver runs).
    let absolute =
        ax.is_some() || ay.is_some() || (mouse && dx == 0 && dy == 0 && input.has_absolute());
    if absolute {
        let _ = input.absolute(Source::Qmp, ax, ay, dz, buttons);
        dz = 0;
    }
    if mouse && (dx != 0 || dy != 0 || dz != 0 || !absolute) {
        input.relative(Source::Qmp, dx, dy, dz, buttons);
    }
    Ok(json!({}))
}

pub fn query_mice(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    let mice: Vec<Value> = b
        .input()
        .mice()
        .into_iter()
        .map(|m| {
            json!({
                "name": m.name,
                "index": m.index,
                "current": m.current,
                "absolute": m.absolute,
            })
        })
        .collect();
    Ok(Value::Array(mice))
}
