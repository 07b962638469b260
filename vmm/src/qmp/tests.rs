//! The protocol and the commands against a fake machine: every reply shape and
//! every error case a client can provoke.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::backend::*;
use super::events::tests::Collect;
use super::events::Monitor;
use super::protocol::QmpError;
use super::session::{Flow, Session};
use devices::legacy::ps2_keyboard::XT_PAUSE;

struct Fake {
    log: Arc<Mutex<Vec<String>>>,
    input: Arc<InputRouter>,
    display: Option<FakeDisplay>,
    spice: Option<FakeSpice>,
}

/// Input devices that log what reaches them, behind a real input router.
struct LogDevices(Arc<Mutex<Vec<String>>>);

impl LogDevices {
    fn log(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
}

impl devices::input::Keyboard for LogDevices {
    fn key(&self, xt: u16, down: bool) {
        self.log(format!("key {xt:#x} {}", if down { "down" } else { "up" }));
    }
}

impl devices::input::RelativePointer for LogDevices {
    fn motion(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.log(format!("mouse {dx} {dy} {dz} {buttons}"));
    }
    fn buttons(&self) -> u8 {
        0
    }
}

impl devices::input::AbsolutePointer for LogDevices {
    fn position(&self, x: u32, y: u32, dz: i32, buttons: u8) {
        self.log(format!("tablet {x} {y} {dz} {buttons}"));
    }
}

impl Fake {
    fn with_input(tablet: bool) -> Fake {
        let log = Arc::new(Mutex::new(Vec::new()));
        let dev = Arc::new(LogDevices(log.clone()));
        let input = InputRouter::new(
            dev.clone(),
            dev.clone(),
            tablet.then_some(dev as Arc<dyn devices::input::AbsolutePointer>),
        );
        Fake {
            log,
            input,
            display: None,
            spice: None,
        }
    }
}

impl Default for Fake {
    fn default() -> Fake {
        Fake::with_input(false)
    }
}

struct FakeDisplay;

impl Screendump for FakeDisplay {
    fn screendump(&self, path: &Path, format: ScreenFormat) -> Result<(), String> {
        std::fs::write(path, format!("{format:?}")).map_err(|e| e.to_string())
    }
}

#[derive(Default)]
struct FakeSpice {
    password: Mutex<Option<String>>,
    expiry: Mutex<Option<Expiry>>,
    channels: Vec<spice::ClientInfo>,
    disconnected: Mutex<bool>,
}

impl SpiceControl for FakeSpice {
    fn set_password(&self, password: Option<String>) {
        *self.password.lock().unwrap() = password;
    }
    fn expire_password(&self, expiry: Expiry) {
        *self.expiry.lock().unwrap() = Some(expiry);
    }
    fn auth(&self) -> &'static str {
        "spice"
    }
    fn channels(&self) -> Vec<spice::ClientInfo> {
        self.channels.clone()
    }
    fn listen(&self) -> (String, Option<u16>) {
        ("127.0.0.1".into(), Some(5900))
    }
    fn disconnect_all(&self) {
        *self.disconnected.lock().unwrap() = true;
    }
}

impl Fake {
    fn log(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl QmpBackend for Fake {
    fn status(&self) -> RunStatus {
        RunStatus::Running
    }
    fn stop(&self) -> Result<(), QmpError> {
        self.log("stop".into());
        Ok(())
    }
    fn cont(&self) -> Result<(), QmpError> {
        self.log("cont".into());
        Ok(())
    }
    fn system_reset(&self) -> Result<(), QmpError> {
        self.log("reset".into());
        Ok(())
    }
    fn system_powerdown(&self) -> Result<(), QmpError> {
        Err(QmpError::generic("no ACPI"))
    }
    fn quit(&self) {
        self.log("quit".into());
    }
    fn name(&self) -> Option<String> {
        Some("vm1".into())
    }
    fn cpus(&self) -> Vec<CpuInfo> {
        vec![CpuInfo {
            index: 0,
            thread_id: 4242,
        }]
    }
    fn disks(&self) -> Vec<DiskInfo> {
        vec![DiskInfo {
            file: "/d.qcow2".into(),
            format: "qcow2",
            read_only: true,
            virtual_size: 1 << 20,
        }]
    }
    fn display(&self) -> Option<&dyn Screendump> {
        self.display.as_ref().map(|d| d as &dyn Screendump)
    }
    fn input(&self) -> &InputRouter {
        &self.input
    }
    fn spice(&self) -> Option<&dyn SpiceControl> {
        self.spice.as_ref().map(|s| s as &dyn SpiceControl)
    }
}

struct Client {
    session: Session,
    out: Arc<Collect>,
    seen: usize,
    fake: Arc<Fake>,
    monitor: Arc<Monitor>,
}

impl Client {
    fn with(fake: Fake) -> Self {
        let fake = Arc::new(fake);
        let monitor = Monitor::new();
        let out = Collect::new(1000);
        let (session, flow) = Session::start(fake.clone(), monitor.clone(), out.clone());
        assert_eq!(flow, Flow::Continue);
        let mut c = Client {
            session,
            out,
            seen: 0,
            fake,
            monitor,
        };
        let greeting = c.recv();
        assert_eq!(greeting.len(), 1);
        assert!(greeting[0]["QMP"].is_object());
        c
    }

    /// A client past negotiation.
    fn ready(fake: Fake) -> Self {
        let mut c = Client::with(fake);
        assert_eq!(
            c.exec(json!({"execute": "qmp_capabilities"})),
            json!({"return": {}})
        );
        c
    }

    fn recv(&mut self) -> Vec<Value> {
        let v = self.out.values();
        let new = v[self.seen..].to_vec();
        self.seen = v.len();
        new
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Flow {
        self.session.feed(bytes)
    }

    /// Send one request, return the one reply.
    fn exec(&mut self, req: Value) -> Value {
        assert_eq!(self.send_raw(req.to_string().as_bytes()), Flow::Continue);
        let mut r = self.recv();
        assert_eq!(r.len(), 1, "one reply to {req}: {r:?}");
        r.remove(0)
    }

    fn cmd(&mut self, name: &str, args: Value) -> Value {
        self.exec(json!({"execute": name, "arguments": args}))
    }

    fn error(&mut self, name: &str, args: Value) -> (String, String) {
        let r = self.cmd(name, args);
        let e = r
            .get("error")
            .unwrap_or_else(|| panic!("{name}: no error in {r}"));
        (
            e["class"].as_str().unwrap().to_string(),
            e["desc"].as_str().unwrap().to_string(),
        )
    }
}

fn generic(desc: &str) -> (String, String) {
    ("GenericError".into(), desc.into())
}

#[test]
fn negotiation() {
    let mut c = Client::with(Fake::default());
    // Before qmp_capabilities every command, even a real one, gets this.
    for name in ["query-status", "no-such-command"] {
        assert_eq!(
            c.exec(json!({"execute": name, "id": 7})),
            json!({"error": {"class": "CommandNotFound",
                "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 7})
        );
    }
    assert_eq!(
        c.error("qmp_capabilities", json!({"enable": ["oob"]})),
        generic("Capability 'oob' not available")
    );
    assert_eq!(
        c.error("qmp_capabilities", json!({"enable": ["fast"]})),
        generic("Parameter 'enable[0]' does not accept value 'fast'")
    );
    assert_eq!(
        c.error("qmp_capabilities", json!({"bogus": 1})),
        generic("Parameter 'bogus' is unexpected")
    );
    assert_eq!(
        c.exec(json!({"execute": "qmp_capabilities", "id": "a"})),
        json!({"return": {}, "id": "a"})
    );
    assert_eq!(
        c.error("qmp_capabilities", json!({})),
        (
            "CommandNotFound".into(),
            "Capabilities negotiation is already complete, command ignored".into()
        )
    );
    assert_eq!(c.cmd("query-kvm", json!({}))["return"]["enabled"], true);
}

#[test]
fn events_only_after_negotiation() {
    let mut c = Client::with(Fake::default());
    c.monitor.stopped();
    assert!(c.recv().is_empty(), "no events before negotiation");
    c.exec(json!({"execute": "qmp_capabilities"}));
    c.monitor.resumed();
    let ev = c.recv();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["event"], "RESUME");
    assert!(ev[0]["timestamp"]["seconds"].is_u64());
    // A closed session stops receiving.
    let Client {
        session,
        out,
        monitor,
        ..
    } = c;
    drop(session);
    let before = out.values().len();
    monitor.stopped();
    assert_eq!(out.values().len(), before);
}

#[test]
fn bad_input_keeps_the_connection() {
    let mut c = Client::ready(Fake::default());
    assert_eq!(c.send_raw(b"{\"execute\": }\n"), Flow::Continue);
    let r = c.recv();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["error"]["class"], "GenericError");
    assert!(r[0]["error"]["desc"]
        .as_str()
        .unwrap()
        .starts_with("JSON parse error, "));
    assert!(r[0].get("id").is_none());
    assert_eq!(
        c.exec(json!([1, 2])),
        json!({"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}})
    );
    assert_eq!(
        c.exec(json!({"execute": "frobnicate", "id": 1})),
        json!({"error": {"class": "CommandNotFound",
            "desc": "The command frobnicate has not been found"}, "id": 1})
    );
    assert_eq!(
        c.exec(json!({"exec-oob": "query-status"}))["error"]["desc"],
        "QMP input member 'exec-oob' is unexpected"
    );
    // Still serving.
    assert_eq!(
        c.cmd("query-name", json!({})),
        json!({"return": {"name": "vm1"}})
    );
}

#[test]
fn huge_message_gets_an_error_then_close() {
    let mut c = Client::ready(Fake::default());
    c.send_raw(b"{\"execute\": \"");
    let chunk = vec![b'x'; 256 * 1024];
    let mut flow = Flow::Continue;
    for _ in 0..5 {
        flow = c.send_raw(&chunk);
        if flow == Flow::Close {
            break;
        }
    }
    assert_eq!(flow, Flow::Close);
    let r = c.recv();
    assert_eq!(r[0]["error"]["desc"], "JSON token size limit exceeded");
}

#[test]
fn argument_errors() {
    let mut c = Client::ready(Fake {
        display: Some(FakeDisplay),
        ..Default::default()
    });
    assert_eq!(
        c.error("query-status", json!({"verbose": true})),
        generic("Parameter 'verbose' is unexpected")
    );
    assert_eq!(
        c.error("screendump", json!({})),
        generic("Parameter 'filename' is missing")
    );
    assert_eq!(
        c.error("screendump", json!({"filename": 5})),
        generic("Invalid parameter type for 'filename', expected: string")
    );
    assert_eq!(
        c.error("screendump", json!({"filename": "/tmp/x", "format": "gif"})),
        generic("Parameter 'format' does not accept value 'gif'")
    );
    assert_eq!(
        c.error("send-key", json!({"keys": "a"})),
        generic("Invalid parameter type for 'keys', expected: array")
    );
    assert_eq!(
        c.error("send-key", json!({"keys": [{"type": "qcode"}]})),
        generic("Parameter 'keys[0].data' is missing")
    );
    assert_eq!(
        c.error(
            "send-key",
            json!({"keys": [{"type": "qcode", "data": "A"}]})
        ),
        generic("Parameter 'keys[0].data' does not accept value 'A'")
    );
    assert_eq!(
        c.error(
            "send-key",
            json!({"keys": [{"type": "number", "data": "30"}]})
        ),
        generic("Invalid parameter type for 'keys[0].data', expected: integer")
    );
    assert_eq!(
        c.error("send-key", json!({"keys": [], "hold-time": "long"})),
        generic("Invalid parameter type for 'hold-time', expected: integer")
    );
    assert_eq!(
        c.error(
            "input-send-event",
            json!({"events": [{"type": "btn", "data": {"button": "left"}}]})
        ),
        generic("Parameter 'events[0].data.down' is missing")
    );
    assert_eq!(
        c.error(
            "input-send-event",
            json!({"events": [{"type": "rel", "data": {"axis": "z", "value": 1}}]})
        ),
        generic("Parameter 'events[0].data.axis' does not accept value 'z'")
    );
    assert!(
        c.fake.take_log().is_empty(),
        "nothing sent on a bad request"
    );
}

#[test]
fn lifecycle_and_queries() {
    let mut c = Client::ready(Fake::default());
    for name in ["stop", "cont", "system_reset"] {
        assert_eq!(c.cmd(name, json!({})), json!({"return": {}}));
    }
    assert_eq!(c.fake.take_log(), ["stop", "cont", "reset"]);
    assert_eq!(
        c.cmd("query-status", json!({})),
        json!({"return": {"running": true, "singlestep": false, "status": "running"}})
    );
    assert_eq!(c.error("system_powerdown", json!({})), generic("no ACPI"));
    let v = c.cmd("query-version", json!({}));
    assert_eq!(
        v["return"]["qemu"],
        json!({"micro": 0, "minor": 2, "major": 8})
    );
    let cmds = c.cmd("query-commands", json!({}));
    let names: Vec<_> = cmds["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    for n in [
        "qmp_capabilities",
        "quit",
        "send-key",
        "query-cpus-fast",
        "expire_password",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    let cpus = c.cmd("query-cpus-fast", json!({}));
    assert_eq!(cpus["return"][0]["thread-id"], 4242);
    assert_eq!(cpus["return"][0]["target"], "x86_64");
    assert_eq!(
        cpus["return"][0]["qom-path"],
        "/machine/unattached/device[0]"
    );
    let block = c.cmd("query-block", json!({}));
    let d = &block["return"][0];
    assert_eq!(d["device"], "virtio0");
    assert_eq!(d["inserted"]["drv"], "qcow2");
    assert_eq!(d["inserted"]["ro"], true);
    assert_eq!(d["inserted"]["image"]["virtual-size"], 1 << 20);
    assert_eq!(
        c.cmd("query-mice", json!({}))["return"][0],
        json!({"name": "QEMU PS/2 Mouse", "index": 0, "current": true, "absolute": false})
    );
    // quit: the reply is queued before the machine is told.
    assert_eq!(
        c.exec(json!({"execute": "quit", "id": 9})),
        json!({"return": {}, "id": 9})
    );
    assert_eq!(c.fake.take_log(), ["quit"]);
}

#[test]
fn screendump() {
    let mut c = Client::ready(Fake::default());
    assert_eq!(
        c.error("screendump", json!({"filename": "/tmp/x.png"})),
        generic("There is no console to take a screendump from.")
    );
    let mut c = Client::ready(Fake {
        display: Some(FakeDisplay),
        ..Default::default()
    });
    let p = std::env::temp_dir().join(format!("spicebox-qmp-sd-{}", std::process::id()));
    let f = p.to_str().unwrap();
    assert_eq!(
        c.cmd("screendump", json!({"filename": f, "format": "png"})),
        json!({"return": {}})
    );
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "Png");
    // QEMU's default format is PPM.
    c.cmd("screendump", json!({"filename": f}));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "Ppm");
    std::fs::remove_file(&p).unwrap();
    assert_eq!(
        c.error("screendump", json!({"filename": f, "head": 0})),
        generic("'head' must be specified together with 'device'")
    );
    assert_eq!(
        c.error("screendump", json!({"filename": f, "device": "vga9"})),
        ("DeviceNotFound".into(), "Device 'vga9' not found".into())
    );
    assert_eq!(
        c.cmd(
            "screendump",
            json!({"filename": f, "device": "video0", "head": 0})
        ),
        json!({"return": {}})
    );
    std::fs::remove_file(&p).unwrap();
    let (_, e) = c.error("screendump", json!({"filename": "/nonexistent/dir/x.ppm"}));
    assert!(e.contains("No such file"), "{e}");
}

#[test]
fn send_key_presses_in_order_and_releases_in_reverse() {
    let mut c = Client::ready(Fake::default());
    let r = c.cmd(
        "send-key",
        json!({"keys": [
            {"type": "qcode", "data": "ctrl"},
            {"type": "number", "data": 0x9c},
            {"type": "qcode", "data": "lang1"},
            {"type": "qcode", "data": "pause"}],
         "hold-time": 1}),
    );
    assert_eq!(r, json!({"return": {}}));
    assert_eq!(
        c.fake.take_log(),
        [
            "key 0x1d down".to_string(),
            "key 0xe01c down".into(),
            format!("key {XT_PAUSE:#x} down"),
            format!("key {XT_PAUSE:#x} up"),
            "key 0xe01c up".into(),
            "key 0x1d up".into(),
        ]
    );
    assert_eq!(
        c.error(
            "send-key",
            json!({"keys": [{"type": "number", "data": 300}]})
        ),
        generic("Parameter 'keys[0].data' expects a scancode from 1 to 255")
    );
}

#[test]
fn input_send_event() {
    let mut c = Client::ready(Fake::default());
    let ev = |t: &str, d: Value| json!({"type": t, "data": d});
    let r = c.cmd(
        "input-send-event",
        json!({"events": [
            ev("key", json!({"down": true, "key": {"type": "qcode", "data": "a"}})),
            ev("key", json!({"down": false, "key": {"type": "qcode", "data": "a"}})),
            ev("btn", json!({"down": true, "button": "left"})),
            ev("btn", json!({"down": true, "button": "right"})),
            ev("rel", json!({"axis": "x", "value": 10})),
            ev("rel", json!({"axis": "y", "value": -5})),
            ev("btn", json!({"down": true, "button": "wheel-down"})),
        ]}),
    );
    assert_eq!(r, json!({"return": {}}));
    assert_eq!(
        c.fake.take_log(),
        ["key 0x1e down", "key 0x1e up", "mouse 10 -5 1 3"]
    );
    // Held buttons persist across commands: releasing left leaves right.
    c.cmd(
        "input-send-event",
        json!({"events": [ev("btn", json!({"down": false, "button": "left"}))]}),
    );
    assert_eq!(c.fake.take_log(), ["mouse 0 0 0 2"]);
    // An abs event anywhere in the list: nothing at all is sent.
    assert_eq!(
        c.error(
            "input-send-event",
            json!({"events": [
                ev("key", json!({"down": true, "key": {"type": "qcode", "data": "a"}})),
                ev("abs", json!({"axis": "x", "value": 100}))]})
        ),
        generic("Input handler not found for event type abs")
    );
    assert!(c.fake.take_log().is_empty());
}

#[test]
fn input_events_share_the_router_with_spice() {
    let mut c = Client::ready(Fake::default());
    let ev = |t: &str, d: Value| json!({"type": t, "data": d});
    // A SPICE client holds the right button; QMP's moves and clicks keep it held.
    c.fake.input.relative(Source::Spice, 0, 0, 0, 2);
    c.fake.take_log();
    c.cmd(
        "input-send-event",
        json!({"events": [ev("rel", json!({"axis": "x", "value": 3}))]}),
    );
    c.cmd(
        "input-send-event",
        json!({"events": [ev("btn", json!({"down": true, "button": "left"}))]}),
    );
    c.cmd(
        "input-send-event",
        json!({"events": [ev("btn", json!({"down": false, "button": "left"}))]}),
    );
    assert_eq!(
        c.fake.take_log(),
        ["mouse 3 0 0 2", "mouse 0 0 0 3", "mouse 0 0 0 2"]
    );
    assert_eq!(c.fake.input.buttons(Source::Qmp), 0);
}

#[test]
fn abs_events_reach_an_absolute_pointer_once_there_is_one() {
    let mut c = Client::ready(Fake::with_input(true));
    let ev = |t: &str, d: Value| json!({"type": t, "data": d});
    let r = c.cmd(
        "input-send-event",
        json!({"events": [
            ev("abs", json!({"axis": "x", "value": 100})),
            ev("abs", json!({"axis": "y", "value": 40000})),
            ev("btn", json!({"down": true, "button": "left"}))]}),
    );
    assert_eq!(r, json!({"return": {}}));
    // One axis alone keeps the other; values clamp to 0..=0x7fff.
    c.cmd(
        "input-send-event",
        json!({"events": [ev("abs", json!({"axis": "x", "value": -5}))]}),
    );
    assert_eq!(
        c.fake.take_log(),
        ["tablet 100 32767 0 1", "tablet 0 32767 0 1"]
    );
    // The tablet is the current mouse (its driver counts as running here).
    assert_eq!(
        c.cmd("query-mice", json!({}))["return"],
        json!([
            {"name": "QEMU Virtio Tablet", "index": 1, "current": true, "absolute": true},
            {"name": "QEMU PS/2 Mouse", "index": 0, "current": false, "absolute": false},
        ])
    );
}

#[test]
fn spice_without_server() {
    let mut c = Client::ready(Fake::default());
    assert_eq!(
        c.cmd("query-spice", json!({}))["return"],
        json!({"enabled": false, "migrated": false, "mouse-mode": "client"})
    );
    let not_in_use = (
        "DeviceNotActive".to_string(),
        "SPICE is not in use".to_string(),
    );
    assert_eq!(
        c.error(
            "set_password",
            json!({"protocol": "spice", "password": "x"})
        ),
        not_in_use
    );
    assert_eq!(
        c.error(
            "expire_password",
            json!({"protocol": "spice", "time": "now"})
        ),
        not_in_use
    );
    assert_eq!(
        c.error("set_password", json!({"protocol": "rdp", "password": "x"})),
        generic("Parameter 'protocol' does not accept value 'rdp'")
    );
    assert_eq!(
        c.error("set_password", json!({"protocol": "spice"})),
        generic("Parameter 'password' is missing")
    );
    assert_eq!(
        c.error(
            "set_password",
            json!({"protocol": "spice", "password": "x", "display": "0"})
        ),
        generic("Parameter 'display' is unexpected")
    );
    assert_eq!(
        c.error("set_password", json!({"protocol": "vnc", "password": "x"}))
            .0,
        "DeviceNotActive"
    );
}

#[test]
fn spice_with_server() {
    let channel = spice::ClientInfo {
        host: "127.0.0.1".into(),
        port: 40000,
        family: "ipv4".into(),
        connection_id: 7,
        channel_type: 1,
        channel_id: 0,
        tls: false,
        stats: None,
    };
    let display = spice::ClientInfo {
        channel_type: 2,
        stats: Some(spice::ChannelStats {
            bytes_sent: 123_456,
            messages_sent: 42,
            draws: 30,
            bandwidth_bps: Some(1_900_000),
            latency: Some(std::time::Duration::from_micros(101_500)),
            codecs: vec![
                ("raw", 0),
                ("lz", 10),
                ("lz4", 5),
                ("jpeg", 12),
                ("cache", 3),
                ("mjpeg", 40),
            ],
            streams_created: 1,
            stream_frames: 40,
            stream_drops: 2,
            stream_live: Some(spice::LiveStream {
                quality: 60,
                fps: 25.0,
            }),
        }),
        ..channel.clone()
    };
    let inputs = spice::ClientInfo {
        channel_type: 3,
        stats: Some(spice::ChannelStats {
            bytes_sent: 30,
            messages_sent: 1,
            codecs: vec![("raw", 0), ("lz", 0), ("lz4", 0), ("jpeg", 0), ("cache", 0)],
            ..Default::default()
        }),
        ..channel.clone()
    };
    let mut c = Client::ready(Fake {
        spice: Some(FakeSpice {
            channels: vec![channel.clone(), display, inputs],
            ..Default::default()
        }),
        ..Default::default()
    });
    let q = c.cmd("query-spice", json!({}))["return"].clone();
    assert_eq!(q["enabled"], true);
    assert_eq!(q["port"], 5900);
    assert_eq!(q["auth"], "spice");
    assert_eq!(
        q["channels"][0],
        json!({"host": "127.0.0.1", "port": "40000", "family": "ipv4",
               "connection-id": 7, "channel-type": 1, "channel-id": 0, "tls": false})
    );
    // spicebox's additions: traffic, the link estimate, images per codec,
    // video streams.
    assert_eq!(
        q["channels"][1],
        json!({"host": "127.0.0.1", "port": "40000", "family": "ipv4",
               "connection-id": 7, "channel-type": 2, "channel-id": 0, "tls": false,
               "bytes-sent": 123456, "messages-sent": 42, "bandwidth-bps": 1900000,
               "link": "slow", "latency-ms": 101.5, "draws": 30,
               "images": {"raw": 0, "lz": 10, "lz4": 5, "jpeg": 12, "cache": 3, "mjpeg": 40},
               "streams-created": 1, "stream-frames": 40, "stream-drops": 2,
               "stream-quality": 60, "stream-fps": 25.0})
    );
    // A channel that drew nothing and measured nothing: traffic only.
    assert_eq!(
        q["channels"][2],
        json!({"host": "127.0.0.1", "port": "40000", "family": "ipv4",
               "connection-id": 7, "channel-type": 3, "channel-id": 0, "tls": false,
               "bytes-sent": 30, "messages-sent": 1})
    );
    assert_eq!(
        c.error(
            "set_password",
            json!({"protocol": "spice", "password": "s3cret", "connected": "fail"})
        ),
        generic("Could not set password")
    );
    let spice = || c.fake.spice.as_ref().unwrap();
    assert_eq!(*spice().password.lock().unwrap(), None);
    let r = c.cmd(
        "set_password",
        json!({"protocol": "spice", "password": "s3cret", "connected": "disconnect"}),
    );
    assert_eq!(r, json!({"return": {}}));
    let spice = c.fake.spice.as_ref().unwrap();
    assert_eq!(spice.password.lock().unwrap().as_deref(), Some("s3cret"));
    assert!(*spice.disconnected.lock().unwrap());
    c.cmd(
        "expire_password",
        json!({"protocol": "spice", "time": "never"}),
    );
    assert_eq!(
        *c.fake.spice.as_ref().unwrap().expiry.lock().unwrap(),
        Some(Expiry::Never)
    );
    assert!(c
        .error(
            "expire_password",
            json!({"protocol": "spice", "time": "soon"})
        )
        .1
        .contains("'time'"));
    // SPICE_* events carry QEMU's SpiceBasicInfo / SpiceChannel shapes.
    let spice = c.fake.spice.as_ref().unwrap();
    let (name, data) = super::spice::event(
        &spice::SpiceEvent::Initialized {
            client: channel.clone(),
        },
        spice,
    );
    assert_eq!(name, "SPICE_INITIALIZED");
    assert_eq!(
        data["server"],
        json!({"host": "127.0.0.1", "port": "5900", "family": "ipv4", "auth": "spice"})
    );
    assert_eq!(data["client"]["connection-id"], 7);
    let (name, data) = super::spice::event(
        &spice::SpiceEvent::Connected {
            server: channel.clone(),
            client: channel.clone(),
        },
        spice,
    );
    assert_eq!(name, "SPICE_CONNECTED");
    assert_eq!(
        data["client"],
        json!({"host": "127.0.0.1", "port": "40000", "family": "ipv4"})
    );
    let (name, data) =
        super::spice::event(&spice::SpiceEvent::Disconnected { client: channel }, spice);
    assert_eq!(name, "SPICE_DISCONNECTED");
    assert!(data["server"].get("auth").is_none());
}
