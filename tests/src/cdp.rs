//! Headless Chromium driven over the DevTools protocol (a WebSocket, via
//! tungstenite): open a page, evaluate JavaScript, type keys. The browser runs
//! with a fresh profile and is killed (and reaped) on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::tools::require_tool;

pub struct Chromium {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Console messages and exceptions seen so far (for failure reports).
    pub console: Vec<String>,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("DevTools HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Chromium keeps the connection open: read the head, then Content-Length bytes.
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("DevTools HTTP body");
    String::from_utf8_lossy(&body).into_owned()
}

impl Chromium {
    /// Starts headless Chromium on about:blank; `profile` must be a fresh directory.
    /// `extra` flags go after the standard ones.
    pub fn start(profile: &Path, extra: &[&str]) -> Chromium {
        require_tool("chromium", "chromium");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1) {
                    let port: u16 = rest.split('/').next().unwrap().parse().unwrap();
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium did not print its DevTools address");
        let list: Value = serde_json::from_str(&http_get(port, "/json/list")).expect("json/list");
        let url = list
            .as_array()
            .and_then(|l| l.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (ws, _) = tungstenite::connect(url.as_str()).expect("DevTools WebSocket");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        let ws = match ws.into_inner() {
            tungstenite::stream::MaybeTlsStream::Plain(s) => {
                WebSocket::from_raw_socket(s, tungstenite::protocol::Role::Client, None)
            }
            _ => unreachable!("DevTools is plain ws://"),
        };
        let mut c = Chromium {
            child,
            ws,
            next_id: 0,
            console: Vec::new(),
        };
        c.call("Runtime.enable", json!({}));
        c.call("Page.enable", json!({}));
        c
    }

    /// Sends a command and waits for its answer (events seen meanwhile are kept in
    /// `console` when they are console output or exceptions).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("DevTools send");
        loop {
            let m = self.ws.read().expect("DevTools read");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("DevTools {method}: {e}");
                }
                return v["result"].clone();
            }
            match v["method"].as_str() {
                Some("Runtime.consoleAPICalled") => self.console.push(
                    v["params"]["args"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|x| x["value"].to_string())
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default(),
                ),
                Some("Runtime.exceptionThrown") => self
                    .console
                    .push(v["params"]["exceptionDetails"].to_string()),
                _ => {}
            }
        }
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// Evaluates an expression (promises awaited) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is true.
    pub fn wait_true(&mut self, expr: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.eval(expr) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "page never got {expr} within {timeout:?}; console:\n{}",
                self.console.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Presses and releases a key in the focused element (`key` as in the DOM,
    /// `code` e.g. "KeyH", `vk` the Windows virtual key code spice-html5 reads).
    pub fn key(&mut self, key: &str, code: &str, vk: u32) {
        for t in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": t, "key": key, "code": code, "windowsVirtualKeyCode": vk,
                       "nativeVirtualKeyCode": vk}),
            );
        }
    }
}
