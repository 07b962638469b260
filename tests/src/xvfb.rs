//! A child process reaped on drop, and an Xvfb display for X clients
//! (remote-viewer) driven with xdotool.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::tools::{require_tool, run_timeout};

/// A child process killed (and reaped) when the guard goes out of scope.
pub struct Guard {
    pub child: Child,
    what: &'static str,
}

impl Guard {
    pub fn spawn(mut cmd: Command, what: &'static str) -> Guard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Guard { child, what }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Panics with `what` if it exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{} exited early: {st}", self.what);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// An Xvfb server on a display it picks itself (-displayfd).
pub struct Xvfb {
    _guard: Guard,
    pub display: String,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        require_tool("Xvfb", "xvfb");
        let mut cmd = Command::new("Xvfb");
        cmd.args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1280x1024x24",
            "-nolisten",
            "tcp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut guard = Guard::spawn(cmd, "Xvfb");
        let mut stdout = guard.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut s = String::new();
            let mut b = [0u8; 1];
            while stdout.read(&mut b).is_ok_and(|n| n == 1) && b[0] != b'\n' {
                s.push(b[0] as char);
            }
            let _ = tx.send(s);
        });
        let n = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("Xvfb did not report its display number");
        assert!(!n.is_empty(), "Xvfb exited without a display");
        Xvfb {
            _guard: guard,
            display: format!(":{n}"),
        }
    }

    pub fn xdotool(&self, args: &[&str]) -> String {
        require_tool("xdotool", "xdotool");
        let mut cmd = Command::new("xdotool");
        cmd.args(args).env("DISPLAY", &self.display);
        let out = run_timeout(cmd, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "xdotool {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
