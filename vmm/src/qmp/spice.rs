//! SPICE commands (`query-spice`, `set_password`, `expire_password`) and the
//! SPICE_* events, over the `SpiceControl` trait.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::args::Args;
use spice::{ClientInfo, SpiceEvent};

use super::backend::{Expiry, QmpBackend, SpiceControl};
use super::protocol::{ErrorClass, QmpError};

fn not_in_use() -> QmpError {
    QmpError::new(ErrorClass::DeviceNotActive, "SPICE is not in use")
}

/// QEMU's SpiceBasicInfo.
fn basic_info(c: &ClientInfo) -> Value {
    json!({
        "host": c.host,
        // A string in QEMU's schema.
        "port": c.port.to_string(),
        "family": c.family,
    })
}

/// QEMU's SpiceChannel.
fn channel_info(c: &ClientInfo) -> Value {
    let mut v = basic_info(c);
    let m = v.as_object_mut().expect("basic_info is an object");
    m.insert("connection-id".into(), c.connection_id.into());
    m.insert("channel-type".into(), c.channel_type.into());
    m.insert("channel-id".into(), c.channel_id.into());
    m.insert("tls".into(), c.tls.into());
    if let Some(st) = &c.stats {
        add_stats(m, st);
    }
    v
}

/// spicebox's additions to a query-spice channel: what it sent and, where
/// the channel measured its link (display channels), the estimate; for
/// display channels the draws, the images per codec ("mjpeg": stream
/// frames), and once it had a video stream the streams created, frames sent
/// and dropped (replaced by newer ones before the client was ready), and
/// while one plays its JPEG quality and frames sent over the last second.
fn add_stats(m: &mut serde_json::Map<String, Value>, st: &spice::ChannelStats) {
    m.insert("bytes-sent".into(), st.bytes_sent.into());
    m.insert("messages-sent".into(), st.messages_sent.into());
    if let Some(b) = st.bandwidth_bps {
        m.insert("bandwidth-bps".into(), b.into());
        let slow = (b as f64) < spice::SLOW_LINK_BPS;
        m.insert("link".into(), if slow { "slow" } else { "fast" }.into());
    }
    if let Some(l) = st.latency {
        m.insert("latency-ms".into(), (l.as_secs_f64() * 1000.0).into());
    }
    if st.draws > 0 || st.codecs.iter().any(|(_, n)| *n > 0) {
        m.insert("draws".into(), st.draws.into());
        let codecs: serde_json::Map<String, Value> = st
            .codecs
            .iter()
            .map(|(name, n)| ((*name).to_string(), (*n).into()))
            .collect();
        m.insert("images".into(), codecs.into());
    }
    if st.streams_created > 0 {
        m.insert("streams-created".into(), st.streams_created.into());
        m.insert("stream-frames".into(), st.stream_frames.into());
        m.insert("stream-drops".into(), st.stream_drops.into());
    }
    if let Some(live) = st.stream_live {
        m.insert("stream-quality".into(), live.quality.into());
        m.insert("stream-fps".into(), live.fps.into());
    }
}

/// QEMU's SpiceServerInfo: where we listen, and the auth scheme.
fn server_info(s: &dyn SpiceControl) -> Value {
    let (host, port) = s.listen();
    let family = if port.is_none() {
        "unix"
    } else if host.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    };
    json!({
        "host": host,
        "port": port.map(|p| p.to_string()).unwrap_or_default(),
        "family": family,
        "auth": s.auth(),
    })
}

pub fn query_spice(b: &dyn QmpBackend, args: Args) -> Result<Value, QmpError> {
    args.finish()?;
    let Some(s) = b.spice() else {
        // "mouse-mode" is mandatory in SpiceInfo; QEMU reports its zero value.
        return Ok(json!({"enabled": false, "migrated": false, "mouse-mode": "client"}));
    };
    let (host, port) = s.listen();
    let channels: Vec<Value> = s.channels().iter().map(channel_info).collect();
    let mut info = json!({
        "enabled": true,
        "migrated": false,
        "host": host,
        "auth": s.auth(),
        "compiled-version": concat!("spicebox ", env!("CARGO_PKG_VERSION")),
        // A relative PS/2 mouse: the guest draws the pointer.
        "mouse-mode": "server",
        "channels": channels,
    });
    if let Some(p) = port {
        info["port"] = p.into();
    }
    if let Some(p) = s.tls_port() {
        info["tls-port"] = p.into();
    }
    Ok(info)
}

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Spice,
    Vnc,
}

const PROTOCOLS: &[(&str, Protocol)] = &[("vnc", Protocol::Vnc), ("spice", Protocol::Spice)];

fn no_vnc() -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotActive,
        "VNC is not in use (spicebox has no VNC server; use protocol 'spice')",
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Connected {
    Keep,
    Fail,
    Disconnect,
}

pub fn set_password(b: &dyn QmpBackend, mut args: Args) -> Result<Value, QmpError> {
    let protocol = args.enumeration("protocol", PROTOCOLS)?;
    let password = args.str("password")?;
    let connected = args
        .opt_enumeration(
            "connected",
            &[
                ("keep", Connected::Keep),
                ("fail", Connected::Fail),
                ("disconnect", Connected::Disconnect),
            ],
        )?
        .unwrap_or(Connected::Keep);
    if protocol == Protocol::Vnc {
        let _display = args.opt_str("display")?;
        args.finish()?;
        return Err(no_vnc());
    }
    args.finish()?;
    let s = b.spice().ok_or_else(not_in_use)?;
    set_spice_password(s, password, connected)?;
    Ok(json!({}))
}

/// The SPICE side of `set_password`: with `fail`, refuse while clients are
/// connected; with `disconnect`, drop them so they must log in again.
fn set_spice_password(
    s: &dyn SpiceControl,
    password: String,
    connected: Connected,
) -> Result<(), QmpError> {
    if connected == Connected::Fail && !s.channels().is_empty() {
        return Err(QmpError::generic("Could not set password"));
    }
    s.set_password(Some(password));
    if connected == Connected::Disconnect {
        s.disconnect_all();
    }
    Ok(())
}

/// `time`: "now", "never", "+SECONDS" from now, or SECONDS since the epoch.
fn parse_expiry(time: &str, now: SystemTime) -> Result<Expiry, QmpError> {
    let bad = || {
        QmpError::generic(format!(
            "Parameter 'time' expects 'now', 'never', '+SECONDS' or SECONDS since the epoch, got '{time}'"
        ))
    };
    Ok(match time {
        "now" => Expiry::Now,
        "never" => Expiry::Never,
        _ => {
            let (rel, digits) = match time.strip_prefix('+') {
                Some(d) => (true, d),
                None => (false, time),
            };
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            let secs = Duration::from_secs(digits.parse().map_err(|_| bad())?);
            let base = if rel { now } else { SystemTime::UNIX_EPOCH };
            Expiry::At(base.checked_add(secs).ok_or_else(bad)?)
        }
    })
}

pub fn expire_password(b: &dyn QmpBackend, mut args: Args) -> Result<Value, QmpError> {
    let protocol = args.enumeration("protocol", PROTOCOLS)?;
    let time = args.str("time")?;
    if protocol == Protocol::Vnc {
        let _display = args.opt_str("display")?;
        args.finish()?;
        return Err(no_vnc());
    }
    args.finish()?;
    let expiry = parse_expiry(&time, SystemTime::now())?;
    let s = b.spice().ok_or_else(not_in_use)?;
    s.expire_password(expiry);
    Ok(json!({}))
}

/// Turn the SPICE server's lifecycle news into SPICE_* events, on a thread
/// that ends when the server drops its sender.
pub fn forward_spice_events(
    rx: std::sync::mpsc::Receiver<SpiceEvent>,
    spice: std::sync::Arc<dyn SpiceControl>,
    monitor: std::sync::Arc<super::events::Monitor>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("qmp-spice-events".into())
        .spawn(move || {
            for e in rx {
                let (name, data) = event(&e, &*spice);
                monitor.emit(name, Some(data));
            }
        })
        .map(drop)
}

/// A SPICE server event as a QMP event (name, data), in QEMU's shapes.
pub fn event(e: &SpiceEvent, s: &dyn SpiceControl) -> (&'static str, Value) {
    match e {
        SpiceEvent::Connected { server, client } => (
            "SPICE_CONNECTED",
            json!({"server": basic_info(server), "client": basic_info(client)}),
        ),
        SpiceEvent::Initialized { client } => (
            "SPICE_INITIALIZED",
            json!({"server": server_info(s), "client": channel_info(client)}),
        ),
        SpiceEvent::Disconnected { client } => {
            let mut server = server_info(s);
            server.as_object_mut().expect("object").remove("auth");
            (
                "SPICE_DISCONNECTED",
                json!({"server": server, "client": basic_info(client)}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(parse_expiry("now", now), Ok(Expiry::Now));
        assert_eq!(parse_expiry("never", now), Ok(Expiry::Never));
        assert_eq!(
            parse_expiry("+60", now),
            Ok(Expiry::At(now + Duration::from_secs(60)))
        );
        assert_eq!(
            parse_expiry("5000", now),
            Ok(Expiry::At(
                SystemTime::UNIX_EPOCH + Duration::from_secs(5000)
            ))
        );
        for bad in ["", "+", "soon", "-5", "+1x", "99999999999999999999999"] {
            assert!(parse_expiry(bad, now).is_err(), "{bad:?}");
        }
    }
}
