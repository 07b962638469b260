//! A minimal QMP client for end-to-end tests: one JSON object per line over a
//! unix socket, events kept aside while waiting for a command's reply.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    pub greeting: Value,
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connect (retrying while the socket appears) and negotiate capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> Qmp {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    panic!("QMP socket {}: {e}", path.display())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            greeting: Value::Null,
            events: Vec::new(),
        };
        qmp.greeting = qmp.read_line();
        assert!(qmp.greeting.get("QMP").is_some(), "{}", qmp.greeting);
        qmp.execute("qmp_capabilities", json!({}));
        qmp
    }

    fn read_line(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("QMP read");
        assert!(n > 0, "QMP connection closed");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("QMP sent {line:?}: {e}"))
    }

    /// Send a command; return the whole reply object (`return` or `error`).
    pub fn call(&mut self, command: &str, arguments: Value) -> Value {
        let msg = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{msg}").expect("QMP write");
        loop {
            let v = self.read_line();
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return v;
            }
        }
    }

    /// Send a command that must succeed; return its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Value {
        let reply = self.call(command, arguments);
        match reply.get("return") {
            Some(r) => r.clone(),
            None => panic!("{command} failed: {reply}"),
        }
    }
}
