//! The commands: QEMU's names, arguments and return shapes (qapi/*.json), run
//! against a `QmpBackend`.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::args::Args;
use super::backend::{QmpBackend, ScreenFormat};
use super::protocol::{ErrorClass, QmpError, QEMU_VERSION};
use super::{input, spice};

/// What the session must do once the reply is queued.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Nothing,
    Quit,
}

type Handler = fn(&dyn QmpBackend, Args) -> Result<Value, QmpError>;

/// `qmp_capabilities` is listed for `query-commands` but run by the session,
/// which owns the negotiation state.
pub const QMP_CAPABILITIES: &str = "qmp_capabilities";

const COMMANDS: &[(&str, Handler)] = &[
    ("query-version", query_version),
    ("query-commands", query_commands),
    ("query-status", query_status),
    ("query-name", query_name),
    ("query-kvm", query_kvm),
    ("query-cpus-fast", query_cpus_fast),
    ("query-block", query_block),
    ("query-mice", input::query_mice),
    ("stop", stop),
    ("cont", cont),
    ("system_reset", system_reset),
    ("system_powerdown", system_powerdown),
    ("quit", quit),
    ("screendump", screendump),
    ("send-key", input::send_key),
    ("input-send-event", input::input_send_event),
    ("query-spice", spice::query_spice),
    ("set_password", spice::set_password),
    ("expire_password", spice::expire_password),
];

/// Run a command other than `qmp_capabilities`.
pub fn execute(
    backend: &dyn QmpBackend,
    name: &str,
    arguments: Map<String, Value>,
) -> Result<(Value, After), QmpError> {
    let Some((_, handler)) = COMMANDS.iter().find(|(n, _)| *n == name) else {
        return Err(QmpError::new(
            ErrorClass::CommandNotFound,
            format!("The command {name} has not been found"),
        ));
    };
    let ret = handler(backend, Args::new(arguments))?;
    let after = if name == "quit" {
        After::Quit
    } else {
        After::Nothing
    };
    Ok((ret, after))
}

fn empty(args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    Ok(json!({}))
}

fn query_version(_: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    let (major, minor, micro) = QEMU_VERSION;
    Ok(json!({
        "qemu": {"micro": micro, "minor": minor, "major": major},
        "package": concat!("spicebox ", env!("CARGO_PKG_VERSION")),
    }))
}

fn query_commands(_: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    let names = std::iter::once(QMP_CAPABILITIES).chain(COMMANDS.iter().map(|(n, _)| *n));
    Ok(Value::Array(names.map(|n| json!({"name": n})).collect()))
}

fn query_status(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    let s = b.status();
    Ok(json!({
        "running": s == super::backend::RunStatus::Running,
        "singlestep": false,
        "status": s.as_str(),
    }))
}

fn query_name(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    Ok(match b.name() {
        Some(n) => json!({"name": n}),
        None => json!({}),
    })
}

fn query_kvm(_: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    Ok(json!({"enabled": true, "present": true}))
}

fn query_cpus_fast(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    let cpus = b.cpus().into_iter().map(|c| {
        json!({
            "cpu-index": c.index,
            "qom-path": format!("/machine/unattached/device[{}]", c.index),
            "thread-id": c.thread_id,
            // One core per socket, as QEMU's `-smp N` lays out a PC.
            "props": {"socket-id": c.index, "die-id": 0, "core-id": 0, "thread-id": 0},
            "target": "x86_64",
        })
    });
    Ok(Value::Array(cpus.collect()))
}

fn query_block(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    let disks = b.disks().into_iter().enumerate().map(|(i, d)| {
        json!({
            // QEMU's names for `-drive if=virtio`.
            "device": format!("virtio{i}"),
            "qdev": format!("/machine/peripheral-anon/device[{i}]/virtio-backend"),
            "removable": false,
            "locked": false,
            "inserted": {
                "file": d.file,
                "ro": d.read_only,
                "drv": d.format,
                "backing_file_depth": 0,
                "encrypted": false,
                "detect_zeroes": "off",
                "bps": 0, "bps_rd": 0, "bps_wr": 0,
                "iops": 0, "iops_rd": 0, "iops_wr": 0,
                "write_threshold": 0,
                "cache": {"writeback": true, "direct": false, "no-flush": false},
                "image": {
                    "filename": d.file,
                    "format": d.format,
                    "virtual-size": d.virtual_size,
                },
            },
        })
    });
    Ok(Value::Array(disks.collect()))
}

fn stop(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    b.stop()?;
    Ok(json!({}))
}

fn cont(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    b.cont()?;
    Ok(json!({}))
}

fn system_reset(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    b.system_reset()?;
    Ok(json!({}))
}

fn system_powerdown(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    b.system_powerdown()?;
    Ok(json!({}))
}

fn quit(_: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    // The machine is told only after this reply is queued (see `After`).
    empty(args)
}

/// The id `screendump`'s `device` may name: the one display.
pub const DISPLAY_ID: &str = "video0";

fn screendump(b: &dyn QmpBackend, mut args: Args) -> Result<Value, QmpError> {
    let filename = args.str("filename")?;
    let device = args.opt_str("device")?;
    let head = args.opt_int("head")?;
    let format = args
        .opt_enumeration(
            "format",
            &[("ppm", ScreenFormat::Ppm), ("png", ScreenFormat::Png)],
        )?
        .unwrap_or(ScreenFormat::Ppm);
    args.finish()?;
    match (&device, head) {
        (None, Some(_)) => {
            return Err(QmpError::generic(
                "'head' must be specified together with 'device'",
            ))
        }
        (Some(d), _) if d != DISPLAY_ID => {
            return Err(QmpError::new(
                ErrorClass::DeviceNotFound,
                format!("Device '{d}' not found"),
            ))
        }
        (Some(d), Some(h)) if h != 0 => {
            return Err(QmpError::generic(format!("Device '{d}' has no head {h}")))
        }
        _ => {}
    }
    let Some(display) = b.display() else {
        return Err(QmpError::generic(
            "There is no console to take a screendump from.",
        ));
    };
    display
        .screendump(Path::new(&filename), format)
        .map_err(QmpError::generic)?;
    Ok(json!({}))
}
