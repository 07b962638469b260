//! A QMP client for end-to-end tests, over a unix socket or TCP: one JSON
//! object per line (each must end in CR LF, as QEMU sends them), events kept
//! aside while waiting for a command's reply, raw bytes for malformed input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const REPLY: Duration = Duration::from_secs(30);

pub trait Conn: Read + Write + Send {}
impl Conn for UnixStream {}
impl Conn for TcpStream {}

pub struct Qmp {
    w: Box<dyn Conn>,
    r: BufReader<Box<dyn Conn>>,
    pub greeting: Value,
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connect to a unix socket and read the greeting; not negotiated yet.
    pub fn unix(path: &Path) -> Qmp {
        let s = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("QMP socket {}: {e}", path.display()));
        s.set_read_timeout(Some(REPLY)).unwrap();
        let r = s.try_clone().unwrap();
        Qmp::start(Box::new(s), Box::new(r))
    }

    /// Connect over TCP and read the greeting; not negotiated yet.
    pub fn tcp(addr: &str) -> Qmp {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("QMP at {addr}: {e}"));
        s.set_read_timeout(Some(REPLY)).unwrap();
        let r = s.try_clone().unwrap();
        Qmp::start(Box::new(s), Box::new(r))
    }

    fn start(w: Box<dyn Conn>, r: Box<dyn Conn>) -> Qmp {
        let mut q = Qmp {
            w,
            r: BufReader::new(r),
            greeting: Value::Null,
            events: Vec::new(),
        };
        q.greeting = q.read().expect("QMP greeting");
        assert!(q.greeting.get("QMP").is_some(), "{}", q.greeting);
        q
    }

    /// Connect to a unix socket (retrying while it appears) and negotiate.
    pub fn connect(path: &Path, timeout: Duration) -> Qmp {
        let deadline = Instant::now() + timeout;
        while UnixStream::connect(path).is_err() {
            assert!(
                Instant::now() < deadline,
                "no QMP socket at {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut q = Qmp::unix(path);
        assert_eq!(q.call("qmp_capabilities", json!({})), json!({"return": {}}));
        q
    }

    /// The next message, or `None` when the server closed the connection.
    pub fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(line.ends_with("\r\n"), "QMP lines end with CR LF: {line:?}");
                Some(
                    serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("QMP sent {line:?}: {e}")),
                )
            }
            Err(e) => panic!("reading QMP: {e}"),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes).expect("write to QMP");
    }

    /// As `send_raw`, for when the server may already have closed.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)
    }

    /// The next reply (return or error), keeping events aside.
    pub fn reply(&mut self) -> Value {
        loop {
            let v = self.read().expect("connection closed before the reply");
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return v;
            }
        }
    }

    /// Send a command; return the whole reply object (`return` or `error`).
    pub fn call(&mut self, command: &str, arguments: Value) -> Value {
        let msg = json!({"execute": command, "arguments": arguments});
        self.send_raw(msg.to_string().as_bytes());
        self.reply()
    }

    /// Send a command that must succeed; return its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Value {
        let reply = self.call(command, arguments);
        match reply.get("return") {
            Some(r) => r.clone(),
            None => panic!("{command} failed: {reply}"),
        }
    }

    /// spicebox's query-spice entry for the (first) display channel.
    pub fn display_channel(&mut self) -> Value {
        let info = self.execute("query-spice", json!({}));
        let channels = info["channels"].as_array().expect("channels").clone();
        channels
            .into_iter()
            .find(|c| c["channel-type"] == 2)
            .unwrap_or_else(|| panic!("no display channel in {info}"))
    }

    /// Send raw bytes that must draw an error; return its description.
    pub fn error_desc(&mut self, raw: &[u8]) -> String {
        self.send_raw(raw);
        let r = self.reply();
        r["error"]["desc"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error for {raw:?}, got {r}"))
            .to_string()
    }

    /// Wait for an event by name (already seen or still to come).
    pub fn event(&mut self, name: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return self.events.remove(i);
        }
        loop {
            let v = self
                .read()
                .unwrap_or_else(|| panic!("closed before event {name}"));
            if v["event"] == name {
                return v;
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }
}
