//! SPICE over TLS, SASL and WebSocket end to end, under KVM, with stock clients:
//! SpiceClientGLib (spice-gtk, from /usr/bin/python3) over TLS and with SASL,
//! remote-viewer under Xvfb sent from the plain port to the TLS port by
//! NEED_SECURED, and headless Chromium running spice-html5 from the page that the
//! SPICE port itself serves. Certificates are made here with openssl, as the README
//! tells users to.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use spicebox_tests::cdp::Chromium;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::screen::{self, differences, Frame};
use spicebox_tests::tools::{
    free_port, require_spice_client_glib, require_tool, run_timeout, spicy_screenshot,
};
use spicebox_tests::x509::make_x509_dir;
use spicebox_tests::xvfb::{Guard, Xvfb};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(30);
const PASSWORD: &str = "tls-pw-1";

struct Vm {
    vm: SpiceboxVm,
    qmp: Qmp,
    port: u16,
    tls_port: u16,
}

impl Vm {
    /// The demo with a plain and a TLS port, QMP on a unix socket, plus `extra`.
    fn start(dir: &TempDir, x509: &Path, extra: &[&str]) -> Vm {
        let (port, tls_port) = (free_port(), free_port());
        let sock = dir.join("qmp.sock");
        let control = format!("unix:{}", sock.display());
        let spice = format!("127.0.0.1:{port}");
        let tls = format!("127.0.0.1:{tls_port}");
        let x509 = x509.to_str().unwrap();
        let mut args = vec![
            "--control",
            &control,
            "--spice",
            &spice,
            "--spice-tls",
            &tls,
            "--spice-x509-dir",
            x509,
        ];
        args.extend(extra);
        let mut vm = SpiceboxVm::start(spicebox!(), &args);
        vm.wait_for(images::DEMO_READY_MARKER, BOOT);
        let qmp = Qmp::connect(&sock, Duration::from_secs(10));
        Vm {
            vm,
            qmp,
            port,
            tls_port,
        }
    }

    fn printed(&self, prefix: &str) -> Option<String> {
        self.vm
            .stderr_text()
            .lines()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
    }

    fn screendump(&mut self, path: &Path) -> Frame {
        self.qmp.execute(
            "screendump",
            json!({"filename": path.to_str().unwrap(), "format": "ppm"}),
        );
        screen::load(path)
    }

    fn show_graphics(&mut self) {
        self.vm.send(&[images::DEMO_GRAPHICS_KEY]);
        self.vm.wait_for(images::DEMO_GRAPHICS_MARKER, STEP);
    }

    fn show_text(&mut self) {
        self.vm.send(&[images::DEMO_TEXT_KEY]);
        self.vm.wait_for(images::DEMO_TEXT_MARKER, STEP);
    }

    fn echoed(&self) -> String {
        let s = self.vm.serial_text();
        let i = s.find(images::DEMO_READY_MARKER).expect("ready marker")
            + images::DEMO_READY_MARKER.len();
        s[i..].to_string()
    }

    fn wait_echo(&mut self, want: &str) {
        let deadline = Instant::now() + STEP;
        while !self.echoed().contains(want) {
            assert!(
                Instant::now() < deadline,
                "the demo did not echo {want:?}\n--- serial ---\n{}\n--- stderr ---\n{}",
                self.vm.serial_text(),
                self.vm.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The frame is exactly the demo's 1024x768 scene.
fn assert_scene(f: &Frame, who: &str) {
    assert_eq!((f.width, f.height), (1024, 768), "{who}: size");
    let wrong = scene_errors(f);
    assert_eq!(
        wrong, 0,
        "{who}: {wrong} pixels differ from the demo's scene"
    );
}

/// Pixels of a 1024x768 frame that differ from the demo's scene.
fn scene_errors(f: &Frame) -> usize {
    (0..768)
        .flat_map(|y| (0..1024).map(move |x| (x, y)))
        .filter(|&(x, y)| f.pixel(x, y) != images::demo_scene_pixel(x, y))
        .count()
}

/// SpiceClientGLib (tests/py/spice_glib.py) with these options; Ok(frame) or
/// Err(its error output).
fn glib_screenshot(out: &Path, opts: &[(&str, &str)]) -> Result<Frame, String> {
    require_spice_client_glib();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/py/spice_glib.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script)
        .args(["--host", "127.0.0.1", "--out"])
        .arg(out);
    for (k, v) in opts {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let r = run_timeout(cmd, Duration::from_secs(60));
    if r.status.success() && out.exists() {
        Ok(screen::load(out))
    } else {
        Err(String::from_utf8_lossy(&r.stderr).into_owned())
    }
}

fn channel_tls(vm: &mut Vm) -> Vec<(u64, bool)> {
    let info = vm.qmp.execute("query-spice", json!({}));
    info["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["channel-type"].as_u64().unwrap(),
                c["tls"].as_bool().unwrap(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------

/// TLS with every channel secure: the printed URI and QMP carry the TLS port;
/// spice-gtk (SpiceClientGLib) told only the plain port and the CA is moved to TLS
/// by NEED_SECURED and gets the demo's screen; a client trusting another CA is
/// refused; remote-viewer with `--spice-ca-file` and the printed URI shows the demo
/// and types into it.
#[test]
fn tls_clients_see_and_drive_the_demo_and_a_wrong_ca_is_refused() {
    let dir = TempDir::new("tls");
    let (x509, other) = (dir.join("x509"), dir.join("other-ca"));
    make_x509_dir(&x509, "spicebox test CA");
    make_x509_dir(&other, "some other CA");
    let ca = x509.join("ca-cert.pem");
    let mut vm = Vm::start(
        &dir,
        &x509,
        &["--password", PASSWORD, "--spice-secure-channels", "all"],
    );
    let (port, tls_port) = (vm.port, vm.tls_port);
    assert_eq!(
        vm.printed("spice: ").as_deref(),
        Some(format!("spice://127.0.0.1:{port}?tls-port={tls_port}").as_str())
    );
    assert_eq!(
        vm.printed("browser: ").as_deref(),
        Some(format!("https://127.0.0.1:{tls_port}/").as_str())
    );
    let info = vm.qmp.execute("query-spice", json!({}));
    assert_eq!(info["tls-port"], tls_port, "{info}");
    assert_eq!(info["port"], port, "{info}");

    vm.show_graphics();
    let (p, t) = (port.to_string(), tls_port.to_string());
    let shot = glib_screenshot(
        &dir.join("glib.ppm"),
        &[
            ("port", &p),
            ("tls-port", &t),
            ("ca-file", ca.to_str().unwrap()),
            ("password", PASSWORD),
        ],
    )
    .unwrap_or_else(|e| panic!("SpiceClientGLib over TLS failed: {e}"));
    assert_scene(&shot, "SpiceClientGLib over TLS");
    let model = vm.screendump(&dir.join("scene.ppm"));
    assert!(differences(&shot, &model, None).is_empty());

    // Another CA: the TLS handshake fails, nothing is shown.
    let other_ca = other.join("ca-cert.pem");
    let err = glib_screenshot(
        &dir.join("wrong.ppm"),
        &[
            ("port", &p),
            ("tls-port", &t),
            ("ca-file", other_ca.to_str().unwrap()),
            ("password", PASSWORD),
        ],
    )
    .expect_err("a client trusting another CA got in");
    assert!(err.contains("error-tls"), "{err}");
    // Plaintext only (no TLS port known to the client): refused, never in clear.
    let t0 = Instant::now();
    let err = glib_screenshot(
        &dir.join("plain.ppm"),
        &[("port", &p), ("password", PASSWORD), ("timeout", "10")],
    )
    .expect_err("a plaintext client got in");
    assert!(!err.is_empty());
    eprintln!(
        "plaintext-only client refused after {:?}: {err}",
        t0.elapsed()
    );

    // TLS 1.2 and 1.3 only: an OpenSSL client limited to 1.1 (and allowed to use it)
    // is refused by the server.
    let s_client = |version: &str| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{tls_port}"),
            version,
        ])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-CAfile"])
        .arg(&ca);
        let out = run_timeout(cmd, STEP);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "New, TLSv1.3, Cipher is ..." on success, "Cipher is (NONE)" on failure.
        text.contains("Verify return code: 0 (ok)") && !text.contains("Cipher is (NONE)")
    };
    assert!(
        s_client("-tls1_3") && s_client("-tls1_2"),
        "TLS 1.2/1.3 refused"
    );
    assert!(!s_client("-tls1_1"), "TLS 1.1 accepted");

    // Hostile clients get an answer or a close and a log line; the viewer below
    // still connects.
    use std::io::{Read, Write};
    let hostile = |port: u16, bytes: &[u8]| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(STEP)).unwrap();
        let _ = s.write_all(bytes);
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply).into_owned()
    };
    hostile(tls_port, b"REDQ this is not TLS");
    let mut endless = b"GET / HTTP/1.1\r\n".to_vec();
    endless.resize(32 * 1024, b'a');
    assert!(hostile(port, &endless).starts_with("HTTP/1.1 431 "));
    let deadline = Instant::now() + STEP;
    while !["TLS handshake failed", "request head over"]
        .iter()
        .all(|m| vm.vm.stderr_text().contains(m))
    {
        assert!(
            Instant::now() < deadline,
            "no log lines:\n{}",
            vm.vm.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // remote-viewer with the printed URI (plus the password) and the CA file.
    vm.show_text();
    require_tool("remote-viewer", "virt-viewer");
    let x = Xvfb::start();
    let uri = format!("spice://127.0.0.1:{port}?tls-port={tls_port}&password={PASSWORD}");
    let mut cmd = Command::new("remote-viewer");
    cmd.arg(format!("--spice-ca-file={}", ca.display()))
        .args(["--title", "spicebox-tls-under-test"])
        .arg(&uri)
        .env("DISPLAY", &x.display)
        .env("GDK_BACKEND", "x11")
        .env("NO_AT_BRIDGE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("remote-viewer.log")).unwrap(),
        ));
    let mut viewer = Guard::spawn(cmd, "remote-viewer");
    let found = x.xdotool(&["search", "--sync", "--name", "spicebox-tls-under-test"]);
    let win = found
        .lines()
        .last()
        .expect("no remote-viewer window")
        .to_string();
    viewer.check_alive();
    x.xdotool(&["windowfocus", "--sync", &win]);
    x.xdotool(&["mousemove", "--window", &win, "200", "200"]);
    std::thread::sleep(Duration::from_secs(2));
    x.xdotool(&["type", "--delay", "120", "hello via ssl"]);
    vm.wait_echo("hello via ssl");
    viewer.check_alive();
    // Every channel the viewer linked came over TLS.
    let chans = channel_tls(&mut vm);
    assert!(chans.len() >= 4, "{chans:?}");
    assert!(
        chans.iter().all(|&(_, tls)| tls),
        "a plaintext channel: {chans:?}"
    );
}

/// SASL: spice-gtk's Cyrus SASL logs in with a user from the file made by
/// `spicebox sasl-user` (the password from stdin), and a wrong password fails.
#[test]
fn sasl_login_through_spice_gtk() {
    let dir = TempDir::new("sasl");
    let x509 = dir.join("x509");
    make_x509_dir(&x509, "spicebox test CA");
    let users = dir.join("users");
    let mut child = Command::new(spicebox!())
        .args(["sasl-user", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"wonder land\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("alice:SCRAM-SHA-256$4096:") && !line.contains("wonder"));
    std::fs::write(&users, &line).unwrap();

    let mut vm = Vm::start(
        &dir,
        &x509,
        &[
            "--spice-sasl",
            "--spice-sasl-users",
            users.to_str().unwrap(),
        ],
    );
    let (port, tls_port) = (vm.port, vm.tls_port);
    // No password anywhere, and no browser page (spice-html5 has no SASL).
    assert_eq!(
        vm.printed("spice: ").as_deref(),
        Some(format!("spice://127.0.0.1:{port}?tls-port={tls_port}").as_str())
    );
    assert_eq!(vm.printed("browser: "), None);
    assert_eq!(vm.qmp.execute("query-spice", json!({}))["auth"], "sasl");

    vm.show_graphics();
    let ca = x509.join("ca-cert.pem");
    let (p, t) = (port.to_string(), tls_port.to_string());
    let login = |pw: &str, out: &str| {
        glib_screenshot(
            &dir.join(out),
            &[
                ("port", &p),
                ("tls-port", &t),
                ("ca-file", ca.to_str().unwrap()),
                ("username", "alice"),
                ("password", pw),
            ],
        )
    };
    let err = login("wonder-land", "wrong.ppm").expect_err("a wrong password got in");
    assert!(err.contains("error-auth"), "{err}");
    let shot = login("wonder land", "good.ppm")
        .unwrap_or_else(|e| panic!("SASL login refused: {e}\n{}", vm.vm.stderr_text()));
    assert_scene(&shot, "SpiceClientGLib with SASL");
}

/// The browser page: headless Chromium opens the printed https address (the
/// password in its fragment), spice-html5 connects back over wss to the same
/// port, its canvas shows what spicy-screenshot shows, and keys typed in the page
/// reach the demo.
#[test]
fn browser_page_shows_the_demo_and_types() {
    let dir = TempDir::new("browser");
    let x509 = dir.join("x509");
    make_x509_dir(&x509, "spicebox test CA");
    assert!(
        Path::new("/usr/share/spice-html5/main.js").exists(),
        "this test needs spice-html5: apt-get install spice-html5 (or scripts/deps test)"
    );
    // No password option: a generated one, printed in the URI and the page address.
    let mut vm = Vm::start(&dir, &x509, &[]);
    let url = vm
        .printed("browser: ")
        .unwrap_or_else(|| panic!("no browser line:\n{}", vm.vm.stderr_text()));
    let prefix = format!("https://127.0.0.1:{}/#password=", vm.tls_port);
    let password = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("unexpected browser address {url}"))
        .to_string();

    let profile = dir.join("chromium-profile");
    // The test CA is not in Chromium's trust store; the server's certificate is
    // checked by the other tests' clients.
    let mut browser = Chromium::start(&profile, &["--ignore-certificate-errors"]);
    browser.navigate(&url);
    browser.wait_true(
        "document.getElementById('status')?.textContent === 'connected'",
        STEP,
    );
    assert_eq!(
        browser.eval("window.location.hash"),
        json!(""),
        "the password stays in the address bar"
    );
    // Keys typed in the page reach the demo (spice-html5 listens on its canvas).
    browser.wait_true("document.querySelector('canvas')?.width === 720", STEP);
    // spice-html5 drops keys until its inputs channel has linked, which may come
    // after the first picture on a loaded machine.
    browser.wait_true("window.spiceConnection?.inputs?.state === 'ready'", STEP);
    browser.eval("document.querySelector('canvas').focus(); true");
    for (k, code, vk) in [("h", "KeyH", 72), ("i", "KeyI", 73)] {
        browser.key(k, code, vk);
    }
    vm.wait_echo("hi");
    let chans = channel_tls(&mut vm);
    assert!(
        chans.iter().any(|&(t, tls)| t == 1 && tls),
        "main over wss: {chans:?}"
    );

    vm.show_graphics();
    let canvas_png = |b: &mut Chromium| -> Option<Frame> {
        let data = b.eval(
            "(() => { const c = document.querySelector('canvas');
                      return c && c.width === 1024 ? c.toDataURL('image/png') : null; })()",
        );
        let s = data.as_str()?;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(s.strip_prefix("data:image/png;base64,")?)
            .expect("canvas data URL");
        Some(devices::display::image_file::read_png(&png).expect("canvas PNG"))
    };
    let deadline = Instant::now() + STEP;
    let page = loop {
        if let Some(f) = canvas_png(&mut browser) {
            // Updates arrive as several rectangles: wait for the whole picture.
            if scene_errors(&f) == 0 {
                break f;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed the scene; console:\n{}",
            browser.console.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_scene(&page, "spice-html5 in Chromium");
    // spicy-screenshot last: its session replaces the page's (one client at a time).
    let shot = dir.join("spicy.ppm");
    let out = spicy_screenshot(vm.port, Some(&password), &shot);
    assert!(
        out.status.success(),
        "spicy-screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spicy = screen::load(&shot);
    assert!(
        differences(&page, &spicy, None).is_empty(),
        "page and spicy-screenshot differ"
    );
}
