//! End-to-end: the QMP control socket of the real binary, driven with raw JSON
//! lines and with the `qemu.qmp` Python library, while the demo disk runs.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::tools::{free_port, spicy_screenshot};
use spicebox_tests::{run_cli, spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(90);
const REPLY: Duration = Duration::from_secs(30);

fn wait_for_path(p: &Path, vm: &SpiceboxVm) {
    let deadline = Instant::now() + BOOT;
    while !p.exists() {
        assert!(
            Instant::now() < deadline,
            "no control socket at {}\n--- stderr ---\n{}",
            p.display(),
            vm.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `control: ...` startup line's address.
fn control_line(vm: &SpiceboxVm) -> String {
    let deadline = Instant::now() + BOOT;
    loop {
        let err = vm.stderr_text();
        if let Some(l) = err.lines().find_map(|l| l.strip_prefix("control: ")) {
            return l.trim().to_string();
        }
        assert!(Instant::now() < deadline, "no control line:\n{err}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn raw_json_lifecycle_keys_reset_bad_input_and_quit() {
    let dir = TempDir::new("qmp-raw");
    let sock = dir.join("ctl.qmp");
    let ctl = format!("unix:{}", sock.display());
    let mut vm = SpiceboxVm::start(spicebox!(), &["--control", &ctl, "--name", "demo-vm"]);
    wait_for_path(&sock, &vm);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket file mode");
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);

    let mut a = Qmp::unix(&sock);
    let greeting = a.greeting.clone();
    assert_eq!(greeting["QMP"]["version"]["qemu"]["major"], 8);
    assert_eq!(greeting["QMP"]["capabilities"], json!([]));
    let r = a.call("query-status", json!({}));
    assert_eq!(
        r["error"]["class"], "CommandNotFound",
        "before negotiation: {r}"
    );
    assert_eq!(a.call("qmp_capabilities", json!({})), json!({"return": {}}));
    // A second client at the same time.
    let mut b = Qmp::connect(&sock, REPLY);

    assert_eq!(
        a.execute("query-name", json!({})),
        json!({"name": "demo-vm"})
    );
    assert_eq!(
        a.execute("query-status", json!({})),
        json!({"running": true, "singlestep": false, "status": "running"})
    );
    let cpus = a.execute("query-cpus-fast", json!({}));
    let tid = cpus[0]["thread-id"].as_i64().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{tid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "vcpu0", "thread-id {tid} is the vCPU thread");

    // stop: STOP to every client, paused; keys typed now wait for cont.
    assert_eq!(a.execute("stop", json!({})), json!({}));
    a.event("STOP");
    b.event("STOP");
    assert_eq!(a.execute("query-status", json!({}))["status"], "paused");
    let key = |k: &str| json!({"type": "qcode", "data": k});
    a.execute("send-key", json!({"keys": [key("z")]}));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !vm.serial_text().contains('z'),
        "a paused guest echoed a key"
    );
    assert_eq!(b.execute("cont", json!({})), json!({}));
    a.event("RESUME");
    b.event("RESUME");
    assert_eq!(a.execute("query-status", json!({}))["status"], "running");
    for k in ["a", "b", "q"] {
        a.execute("send-key", json!({"keys": [key(k)], "hold-time": 50}));
    }
    // A number key (0x2d = x) and a key through input-send-event.
    a.execute(
        "send-key",
        json!({"keys": [{"type": "number", "data": 0x2d}]}),
    );
    for down in [true, false] {
        a.execute(
            "input-send-event",
            json!({"events": [{"type": "key", "data": {"down": down, "key": key("1")}}]}),
        );
    }
    vm.wait_for("zabqx1", Duration::from_secs(20));

    // system_reset: RESET, and the demo boots again.
    a.execute("system_reset", json!({}));
    let ev = a.event("RESET");
    assert_eq!(
        ev["data"],
        json!({"guest": false, "reason": "host-qmp-system-reset"})
    );
    b.event("RESET");
    vm.wait_for_count(images::DEMO_READY_MARKER, 2, BOOT);

    // Bad input: an error each, and the connection keeps working.
    assert!(a
        .error_desc(b"{\"execute\": }")
        .starts_with("JSON parse error, "));
    assert_eq!(a.error_desc(b"[1,2]"), "QMP input must be a JSON object");
    assert_eq!(
        a.error_desc(b"{\"execute\": \"frobnicate\"}"),
        "The command frobnicate has not been found"
    );
    assert_eq!(
        a.error_desc(br#"{"execute": "screendump", "arguments": {"filename": 1}}"#),
        "Invalid parameter type for 'filename', expected: string"
    );
    assert_eq!(
        a.error_desc(br#"{"execute": "screendump"}"#),
        "Parameter 'filename' is missing"
    );
    assert_eq!(
        a.error_desc(br#"{"execute": "stop", "arguments": {"now": true}}"#),
        "Parameter 'now' is unexpected"
    );
    assert_eq!(
        a.execute("query-kvm", json!({})),
        json!({"enabled": true, "present": true})
    );

    // Megabytes without an end: an error, then the server closes.
    let mut big = Qmp::unix(&sock);
    big.send_raw(b"{\"execute\": \"");
    let chunk = vec![b'x'; 256 * 1024];
    for _ in 0..8 {
        if big.try_send_raw(&chunk).is_err() {
            break;
        }
    }
    let r = big.read().expect("an error before the close");
    assert_eq!(r["error"]["desc"], "JSON token size limit exceeded");
    assert!(big.read().is_none(), "closed after the error");

    // A client that never reads: dropped, without holding up anyone else.
    let mut deaf = UnixStream::connect(&sock).unwrap();
    deaf.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    deaf.set_read_timeout(Some(REPLY)).unwrap();
    deaf.write_all(br#"{"execute": "qmp_capabilities"}"#)
        .unwrap();
    let req = br#"{"execute": "query-commands"}"#.repeat(64);
    let started = Instant::now();
    let mut sent = 0;
    let mut cut_off = false;
    while started.elapsed() < Duration::from_secs(30) {
        if deaf.write_all(&req).is_err() {
            cut_off = true;
            break;
        }
        sent += 1;
        if sent % 64 == 0 {
            // Meanwhile the others are served promptly.
            let t = Instant::now();
            assert_eq!(a.execute("query-status", json!({}))["running"], true);
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "slowed by a deaf client"
            );
        }
    }
    assert!(cut_off, "a client that never reads must be disconnected");
    // What was queued before the cut, then EOF (not a read timeout).
    let mut rest = Vec::new();
    deaf.read_to_end(&mut rest)
        .expect("EOF after the server dropped the client");
    assert_eq!(b.execute("query-status", json!({}))["status"], "running");

    // quit: reply, SHUTDOWN to everyone, exit 0, socket gone.
    assert_eq!(a.call("quit", json!({})), json!({"return": {}}));
    for q in [&mut a, &mut b] {
        let ev = q.event("SHUTDOWN");
        assert_eq!(
            ev["data"],
            json!({"guest": false, "reason": "host-qmp-quit"})
        );
    }
    let st = vm.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "quit must exit 0, got {st}");
    assert!(!sock.exists(), "socket file removed on exit");
}

/// `python3` with `qemu.qmp`, installed with pip when missing.
fn python_with_qemu_qmp() -> &'static str {
    let has = |py: &str| {
        Command::new(py)
            .args(["-c", "import qemu.qmp"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !has("python3") {
        let st = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "qemu.qmp"])
            .status()
            .expect("python3 is needed for the qemu.qmp test");
        assert!(st.success(), "pip install qemu.qmp failed");
        assert!(has("python3"), "qemu.qmp still missing after pip install");
    }
    "python3"
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/qmp")
        .join(name)
}

#[test]
fn qemu_qmp_library_over_tcp() {
    let py = python_with_qemu_qmp();
    let dir = TempDir::new("qmp-py");
    let mut vm = SpiceboxVm::start(spicebox!(), &["--control", "tcp:127.0.0.1:0"]);
    let addr = control_line(&vm);
    assert!(addr.starts_with("tcp:127.0.0.1:"), "{addr}");
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    // Raw lines over TCP too, alongside the library's connection.
    let mut raw = Qmp::tcp(addr.strip_prefix("tcp:").unwrap());
    let greeting = raw.greeting.clone();
    assert!(greeting["QMP"].is_object());
    assert_eq!(
        raw.call("qmp_capabilities", json!({})),
        json!({"return": {}})
    );
    let out = Command::new(py)
        .arg(script("qemu_qmp_client.py"))
        .arg(&addr)
        .arg(dir.path())
        .output()
        .expect("run the qemu.qmp client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "qemu.qmp client failed:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
    // The raw client saw the library's stop/cont and the final SHUTDOWN.
    raw.event("STOP");
    raw.event("RESUME");
    assert_eq!(raw.event("SHUTDOWN")["data"]["reason"], "host-qmp-quit");
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn default_socket_in_runtime_dir_and_signal_shutdown() {
    let mut vm = SpiceboxVm::start(spicebox!(), &[]);
    let addr = control_line(&vm);
    let path = PathBuf::from(
        addr.strip_prefix("unix:")
            .expect("a unix socket by default"),
    );
    // Named after the process: <pid>.qmp.
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let pid = name.strip_suffix(".qmp").expect("PID.qmp");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "spicebox", "{name} names the spicebox process");
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "runtime directory mode");
    wait_for_path(&path, &vm);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    let mut q = Qmp::connect(&path, REPLY);
    // The demo never enables the power-button event: the press is announced
    // and nothing else happens (tests/tests/acpi.rs has a guest that listens).
    assert_eq!(q.execute("system_powerdown", json!({})), json!({}));
    q.event("POWERDOWN");
    vm.signal(libc::SIGTERM);
    let ev = q.event("SHUTDOWN");
    assert_eq!(ev["data"], json!({"guest": false, "reason": "host-signal"}));
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
    assert!(!path.exists(), "socket removed on exit");
}

#[test]
fn control_option_errors() {
    for (arg, needle) in [
        ("tcp:0.0.0.0:0", "--control-allow-remote"),
        ("serial:x", "control socket"),
    ] {
        let (st, err) = run_cli(spicebox!(), &["run", "--control", arg]);
        assert!(!st.success(), "--control {arg} must fail");
        assert!(err.contains(needle), "--control {arg}: {err}");
        assert!(!err.contains("booting"), "{err}");
    }
}

#[test]
fn spice_password_commands_and_events() {
    let dir = TempDir::new("qmp-spice");
    let sock = dir.join("qmp.sock");
    let port = free_port();
    let spice = format!("127.0.0.1:{port}");
    let control = format!("unix:{}", sock.display());
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &[
            "--spice",
            &spice,
            "--password",
            "first",
            "--control",
            &control,
        ],
    );
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    let mut q = Qmp::connect(&sock, REPLY);
    let info = q.execute("query-spice", json!({}));
    assert_eq!(info["enabled"], true, "{info}");
    assert_eq!(info["auth"], "spice", "{info}");
    assert_eq!(info["port"], port, "{info}");

    let shot = dir.join("shot.ppm");
    // A picture came back: spicy-screenshot succeeded and wrote the file.
    let screenshot_ok = |password: &str| {
        let _ = std::fs::remove_file(&shot);
        spicy_screenshot(port, Some(password), &shot)
            .status
            .success()
            && shot.exists()
    };
    assert!(screenshot_ok("first"), "the start-up password");
    assert!(!screenshot_ok("wrong"), "a wrong password");
    // A client's channels announce themselves as QMP events.
    let connected = q.event("SPICE_CONNECTED");
    assert_eq!(
        connected["data"]["client"]["host"], "127.0.0.1",
        "{connected}"
    );
    let init = q.event("SPICE_INITIALIZED");
    assert_eq!(init["data"]["server"]["auth"], "spice", "{init}");
    q.event("SPICE_DISCONNECTED");

    q.execute(
        "set_password",
        json!({"protocol": "spice", "password": "second"}),
    );
    assert!(!screenshot_ok("first"), "old password after set_password");
    assert!(screenshot_ok("second"), "new password");
    q.execute(
        "expire_password",
        json!({"protocol": "spice", "time": "now"}),
    );
    assert!(!screenshot_ok("second"), "expired password");
    q.execute(
        "expire_password",
        json!({"protocol": "spice", "time": "never"}),
    );
    assert!(screenshot_ok("second"), "expiry lifted");
    q.execute("quit", json!({}));
    assert!(vm.wait_exit(Duration::from_secs(30)).success());
}
