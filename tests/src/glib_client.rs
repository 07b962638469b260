//! SpiceClientGLib (tests/py/spice_glib.py) kept connected while the guest
//! draws, then asked for the picture it ends with: what a spice-gtk viewer
//! shows after watching, not a fresh connection's first frame.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::screen::{self, Frame};
use crate::tools::require_spice_client_glib;

pub struct LiveGlibClient {
    child: Child,
    out: PathBuf,
    name: String,
}

impl LiveGlibClient {
    /// Connects to 127.0.0.1:`port`; returns once the client has its
    /// display channel up. `name` labels assertion messages.
    pub fn connect(port: u16, out: PathBuf, name: &str) -> LiveGlibClient {
        require_spice_client_glib();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/spice_glib.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--timeout", "120", "--on-stdin", "--out"])
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().and_then(Result::ok);
        assert_eq!(ready.as_deref(), Some("ready"), "{name}: live client");
        LiveGlibClient {
            child,
            out,
            name: name.to_string(),
        }
    }

    /// The client's current picture; the client exits.
    pub fn picture(mut self) -> Frame {
        let name = &self.name;
        self.child.stdin.take().unwrap().write_all(b"\n").unwrap();
        assert!(self.child.wait().unwrap().success(), "{name}: live client");
        screen::load(&self.out)
    }
}
