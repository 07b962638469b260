//! The SPICE server end to end, under KVM, with real clients: spicy-screenshot
//! (spice-client-gtk), remote-viewer (virt-viewer) typing under Xvfb with
//! xdotool, a tshark capture decoded by Wireshark's SPICE dissector, and the
//! in-repo `spice::client::TestClient` for what stock clients cannot show
//! (no updates for a still screen, session replacement).
//!
//! Every test boots the built-in demo with `--spice 127.0.0.1:PORT` on a port
//! picked here (bound then released), so the same port can be given to stock
//! clients. Missing tools fail the test with the command that installs them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use spice::client::{ClientOptions, TestClient};
use spice::Listen;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::screen::{self, differences, Frame};
use spicebox_tests::tools::{free_port, require_tool, spicy_screenshot};
use spicebox_tests::tshark::Capture;
use spicebox_tests::xvfb::{Guard, Xvfb};
use spicebox_tests::{run_cli, spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(30);
const PASSWORD: &str = "s3cret-pw";

// ---------------------------------------------------------------------------
// helpers

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A demo VM with SPICE on a fresh loopback port and QMP on a unix socket.
struct Vm {
    vm: SpiceboxVm,
    qmp: Qmp,
    port: u16,
}

impl Vm {
    /// `auth`: `Some(pw)` = `--password pw`, `None` = `--disable-ticketing`.
    fn start(dir: &TempDir, auth: Option<&str>) -> Vm {
        let port = free_port();
        let sock = dir.join("qmp.sock");
        let control = format!("unix:{}", sock.display());
        let spice = format!("127.0.0.1:{port}");
        let mut args = vec!["--control", &control, "--spice", &spice];
        match auth {
            Some(pw) => args.extend(["--password", pw]),
            None => args.push("--disable-ticketing"),
        }
        let mut vm = SpiceboxVm::start(spicebox!(), &args);
        vm.wait_for(images::DEMO_READY_MARKER, BOOT);
        assert!(
            vm.stderr_text()
                .contains(&format!("spice: spice://127.0.0.1:{port}")),
            "no SPICE URI on stderr:\n{}",
            vm.stderr_text()
        );
        let qmp = Qmp::connect(&sock, Duration::from_secs(10));
        Vm { vm, qmp, port }
    }

    fn listen(&self) -> Listen {
        Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], self.port)))
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

    /// What the guest echoed on COM1 after its ready marker.
    fn echoed(&self) -> String {
        let s = self.vm.serial_text();
        let i = s.find(images::DEMO_READY_MARKER).expect("ready marker")
            + images::DEMO_READY_MARKER.len();
        s[i..].to_string()
    }

    /// Waits until the echo after the ready marker contains `want`.
    fn wait_echo(&mut self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.echoed().contains(want) {
            assert!(
                Instant::now() < deadline,
                "the demo did not echo {want:?} on serial within {timeout:?}\n--- serial ---\n{}\n--- stderr ---\n{}",
                self.vm.serial_text(),
                self.vm.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text_rows(&mut self, dir: &TempDir) -> Vec<String> {
        let f = self.screendump(&dir.join("rows.ppm"));
        assert_eq!((f.width, f.height), (720, 400), "80x25 text at 9x16");
        screen::text_rows(&f, &screen::system_vga_font())
    }

    /// The screen row right below the demo's banner (where it echoes keys).
    fn row_after_banner(&mut self, dir: &TempDir) -> String {
        let rows = self.text_rows(dir);
        let i = rows
            .iter()
            .position(|r| r.trim_end() == images::DEMO_BANNER)
            .unwrap_or_else(|| panic!("no demo banner on screen:\n{}", rows.join("\n")));
        rows.get(i + 1).cloned().unwrap_or_default()
    }
}

fn describe(diff: &[(u32, u32)], a: &Frame, b: &Frame) -> String {
    if diff.is_empty() {
        return "equal".into();
    }
    let (x0, y0) = diff[0];
    let xs = diff.iter().map(|p| p.0);
    let ys = diff.iter().map(|p| p.1);
    format!(
        "{} pixels differ in x {}..={}, y {}..={}; first ({x0}, {y0}): {:06x} vs {:06x}",
        diff.len(),
        xs.clone().min().unwrap(),
        xs.max().unwrap(),
        ys.clone().min().unwrap(),
        ys.max().unwrap(),
        a.pixel(x0, y0),
        b.pixel(x0, y0)
    )
}

/// spicy-screenshot's picture equals QMP screendump taken right after, within
/// `attempts` tries that may differ only in one 9x16 cell (the text cursor
/// blinks on its own clock). Each try starts with a screendump: it refreshes
/// the display model and hands the result to the SPICE server, as the display
/// thread's timer does, so the client cannot get a picture older than the
/// guest's last writes however late that timer runs on a loaded host.
fn screenshot_matches_screendump(vm: &mut Vm, dir: &TempDir, tag: &str, attempts: u32) -> Frame {
    let mut last = String::new();
    for i in 0..attempts {
        vm.screendump(&dir.join(&format!("{tag}-{i}-flush.ppm")));
        let shot = dir.join(&format!("{tag}-{i}-spicy.ppm"));
        let out = spicy_screenshot(vm.port, Some(PASSWORD), &shot);
        assert!(
            out.status.success() && shot.exists(),
            "spicy-screenshot failed ({}): {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        let theirs = screen::load(&shot);
        let model = vm.screendump(&dir.join(&format!("{tag}-{i}-qmp.ppm")));
        let diff = differences(&theirs, &model, None);
        if diff.is_empty() {
            return theirs;
        }
        last = describe(&diff, &theirs, &model);
        let in_one_cell = diff
            .iter()
            .all(|&(x, y)| (x / 9, y / 16) == (diff[0].0 / 9, diff[0].1 / 16));
        assert!(
            in_one_cell,
            "{tag}: spicy-screenshot differs from screendump: {last}"
        );
    }
    panic!("{tag}: spicy-screenshot never equalled screendump in {attempts} attempts: {last}");
}

// ---------------------------------------------------------------------------
// 1. spicy-screenshot shows the guest's screen

#[test]
fn spicy_screenshot_equals_screendump_in_text_and_graphics() {
    let dir = TempDir::new("spice-shot");
    let mut vm = Vm::start(&dir, Some(PASSWORD));

    let text_shot = screenshot_matches_screendump(&mut vm, &dir, "text", 8);
    assert_eq!((text_shot.width, text_shot.height), (720, 400));
    let rows = screen::text_rows(&text_shot, &screen::system_vga_font());
    assert!(
        rows.iter().any(|r| r.trim_end() == images::DEMO_BANNER),
        "demo banner missing from spicy-screenshot's picture:\n{}",
        rows.join("\n")
    );

    vm.show_graphics();
    let scene = screenshot_matches_screendump(&mut vm, &dir, "scene", 3);
    assert_eq!((scene.width, scene.height), (1024, 768));
    let wrong = (0..768)
        .flat_map(|y| (0..1024).map(move |x| (x, y)))
        .filter(|&(x, y)| scene.pixel(x, y) != images::demo_scene_pixel(x, y))
        .count();
    assert_eq!(
        wrong, 0,
        "spicy-screenshot's scene differs from the demo's picture"
    );
}

// ---------------------------------------------------------------------------
// 2. passwords

#[test]
fn wrong_password_is_refused_and_right_one_works() {
    let dir = TempDir::new("spice-auth");
    let vm = Vm::start(&dir, Some(PASSWORD));
    for (name, pw) in [("wrong", Some("not-the-password")), ("empty", None)] {
        let out_file = dir.join(&format!("{name}.ppm"));
        let out = spicy_screenshot(vm.port, pw, &out_file);
        assert!(
            !out.status.success(),
            "spicy-screenshot with the {name} password succeeded"
        );
        assert!(
            !out_file.exists(),
            "spicy-screenshot with the {name} password wrote a picture"
        );
    }
    let good = dir.join("good.ppm");
    let out = spicy_screenshot(vm.port, Some(PASSWORD), &good);
    assert!(
        out.status.success() && good.exists(),
        "the right password was refused ({}): {}",
        out.status,
        text(&out.stderr)
    );
    let f = screen::load(&good);
    assert_eq!((f.width, f.height), (720, 400));
    // The refusals did not hurt the server or the guest.
    drop(vm);
}

#[test]
fn disable_ticketing_lets_a_client_in_without_password() {
    let dir = TempDir::new("spice-noauth");
    let vm = Vm::start(&dir, None);
    let shot = dir.join("shot.ppm");
    let out = spicy_screenshot(vm.port, None, &shot);
    assert!(
        out.status.success() && shot.exists(),
        "spicy-screenshot without a password failed under --disable-ticketing ({}): {}",
        out.status,
        text(&out.stderr)
    );
    let f = screen::load(&shot);
    assert_eq!((f.width, f.height), (720, 400));
}

// ---------------------------------------------------------------------------
// 3. remote-viewer under Xvfb, typing with xdotool

/// remote-viewer connected to the VM, its window focused.
fn remote_viewer(x: &Xvfb, dir: &TempDir, port: u16) -> Guard {
    require_tool("remote-viewer", "virt-viewer");
    // A .vv file keeps the password out of the process list.
    let vv = dir.join("session.vv");
    std::fs::write(
        &vv,
        format!(
            "[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport={port}\npassword={PASSWORD}\ntitle=spicebox-under-test\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("remote-viewer");
    cmd.arg(&vv)
        .env("DISPLAY", &x.display)
        .env("GDK_BACKEND", "x11")
        .env("NO_AT_BRIDGE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("remote-viewer.log")).unwrap(),
        ));
    let mut viewer = Guard::spawn(cmd, "remote-viewer");
    let found = x.xdotool(&["search", "--sync", "--name", "spicebox-under-test"]);
    let win = found
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no remote-viewer window: {found:?}"))
        .to_string();
    viewer.check_alive();
    x.xdotool(&["windowfocus", "--sync", &win]);
    x.xdotool(&["mousemove", "--window", &win, "200", "200"]);
    win_settle();
    viewer
}

/// remote-viewer links its channels after the window appears.
fn win_settle() {
    std::thread::sleep(Duration::from_secs(2));
}

/// Types `s` into the focused viewer, one key at a time.
fn type_keys(x: &Xvfb, s: &str) {
    x.xdotool(&["type", "--delay", "120", s]);
}

#[test]
fn remote_viewer_typing_under_xvfb_reaches_the_guest() {
    let dir = TempDir::new("spice-viewer");
    let mut vm = Vm::start(&dir, Some(PASSWORD));
    let x = Xvfb::start();
    let mut viewer = remote_viewer(&x, &dir, vm.port);
    // No 'g', 't' or 'p': those are the demo's command keys.
    let typed = "hello world";
    type_keys(&x, typed);
    vm.wait_echo(typed, STEP);
    viewer.check_alive();
    let row = vm.row_after_banner(&dir);
    assert!(
        row.starts_with(typed),
        "the typed text is not on screen below the banner: {row:?}"
    );
    // Upper case goes through the Shift modifier.
    type_keys(&x, "ABC");
    vm.wait_echo("hello worldABC", STEP);
}

// ---------------------------------------------------------------------------
// 4. a capture decodes in tshark's SPICE dissector

#[test]
fn tshark_decodes_a_captured_session_without_malformed_packets() {
    let dir = TempDir::new("spice-tshark");
    let mut vm = Vm::start(&dir, Some(PASSWORD));
    let mut capture = Capture::start(&dir, vm.port, "session");
    // spicy-screenshot links main and display; remote-viewer adds inputs and
    // cursor, and typing sends key messages.
    let shot = dir.join("shot.ppm");
    let out = spicy_screenshot(vm.port, Some(PASSWORD), &shot);
    assert!(
        out.status.success(),
        "spicy-screenshot: {}",
        text(&out.stderr)
    );
    {
        let x = Xvfb::start();
        let _viewer = remote_viewer(&x, &dir, vm.port);
        type_keys(&x, "abc");
        vm.wait_echo("abc", STEP);
        vm.show_graphics();
        std::thread::sleep(Duration::from_secs(1));
    }
    capture.stop();
    let streams = capture.opened_streams();
    capture.assert_well_formed(&streams);

    let decoded = capture.read("spice", true);
    let lines: Vec<&str> = decoded.lines().collect();
    let has = |proto: &str, info: &str| {
        lines
            .iter()
            .any(|l| l.contains(&format!("Spice {proto}")) && l.contains(info))
    };
    for ch in ["MAIN", "DISPLAY", "INPUTS", "CURSOR"] {
        assert!(
            has(ch, "Server link message") && has(ch, "Server ticket"),
            "no {ch} link in the capture:\n{decoded}"
        );
    }
    for (ch, msg) in [
        ("MAIN", "Server INIT"),
        ("MAIN", "CHANNELS_LIST"),
        ("DISPLAY", "SURFACE_CREATE"),
        ("DISPLAY", "DRAW_COPY"),
        ("DISPLAY", "MARK"),
        ("INPUTS", "Server INIT"),
        ("CURSOR", "Server INIT"),
    ] {
        assert!(has(ch, msg), "no {ch} {msg} in the capture:\n{decoded}");
    }
    // remote-viewer sends keys as KEY_SCANCODE when the server offers it.
    assert!(
        has("INPUTS", "KEY_SCANCODE") || has("INPUTS", "KEY_DOWN"),
        "no key message in the capture:\n{decoded}"
    );
}

// ---------------------------------------------------------------------------
// 5 and 6. the in-repo test client against the VM

fn client(vm: &Vm) -> TestClient {
    TestClient::connect(
        &vm.listen(),
        ClientOptions {
            password: PASSWORD.into(),
            ..ClientOptions::default()
        },
    )
    .expect("TestClient::connect")
}

/// Waits until the client's surface equals `f`.
fn wait_surface(c: &TestClient, f: &Frame, what: &str) {
    c.wait(STEP, |s| {
        s.surface.as_ref().is_some_and(|cs| {
            (cs.width, cs.height) == (f.width, f.height) && cs.pixels[..] == f.pixels[..]
        })
    })
    .unwrap_or_else(|e| {
        let st = c.state();
        let got = st.surface.as_ref().map(|s| (s.width, s.height));
        panic!("{what}: the client's surface never equalled the screen ({got:?}): {e}")
    });
}

#[test]
fn still_screen_sends_nothing_and_changes_do() {
    let dir = TempDir::new("spice-still");
    let mut vm = Vm::start(&dir, Some(PASSWORD));
    vm.show_graphics();
    let scene = vm.screendump(&dir.join("scene.ppm"));
    let c = client(&vm);
    wait_surface(&c, &scene, "graphics scene");
    // Let any trailing update of the first frame arrive, then watch 2 s.
    std::thread::sleep(Duration::from_millis(300));
    let (draws, msgs) = {
        let s = c.state();
        (s.draw_copies, s.image_types.len())
    };
    std::thread::sleep(Duration::from_secs(2));
    {
        let s = c.state();
        assert_eq!(
            s.draw_copies,
            draws,
            "a still screen sent {} DRAW_COPY in 2 s",
            s.draw_copies - draws
        );
        assert_eq!(s.image_types.len(), msgs);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
    }
    // Back to text: a new primary surface and fresh pixels.
    let creates = c.state().surface_creates;
    vm.vm.send(&[images::DEMO_TEXT_KEY]);
    vm.vm.wait_for(images::DEMO_TEXT_MARKER, STEP);
    c.wait(STEP, |s| {
        s.surface_creates > creates
            && s.draw_copies > draws
            && s.surface
                .as_ref()
                .is_some_and(|f| (f.width, f.height) == (720, 400))
    })
    .expect("no text-mode surface and updates after 't'");
    // The client converges on the model's picture (the cursor blinks, so wait
    // for a screendump that the client also shows).
    let deadline = Instant::now() + STEP;
    loop {
        let f = vm.screendump(&dir.join("text.ppm"));
        if c.wait(Duration::from_millis(700), |s| {
            s.surface
                .as_ref()
                .is_some_and(|cs| cs.pixels[..] == f.pixels[..])
        })
        .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "client never showed the text screen"
        );
    }
    assert!(c.state().errors.is_empty());
}

#[test]
fn test_client_keys_are_echoed_by_the_guest() {
    let dir = TempDir::new("spice-keys");
    let mut vm = Vm::start(&dir, Some(PASSWORD));
    let c = client(&vm);
    c.wait(STEP, |s| s.inputs_init.is_some())
        .expect("no INPUTS_INIT");
    // Set-1 scancodes: 'a' 0x1e, 'b' 0x30; release = code | 0x80 (spice-gtk).
    for code in [0x1e, 0x30] {
        c.key_down(code).unwrap();
        c.key_up(code | 0x80).unwrap();
    }
    vm.wait_echo("ab", STEP);
    // KEY_SCANCODE (press and release in one message): 'c' 0x2e.
    c.key_scancode(&[0x2e, 0xae]).unwrap();
    vm.wait_echo("abc", STEP);
    let row = vm.row_after_banner(&dir);
    assert!(
        row.starts_with("abc"),
        "not on screen below the banner: {row:?}"
    );
    assert!(c.state().errors.is_empty());
}

#[test]
fn second_client_replaces_the_first_cleanly() {
    let dir = TempDir::new("spice-replace");
    let mut vm = Vm::start(&dir, Some(PASSWORD));
    vm.show_graphics();
    let scene = vm.screendump(&dir.join("scene.ppm"));
    let c1 = client(&vm);
    wait_surface(&c1, &scene, "first client");
    c1.wait(STEP, |s| s.inputs_init.is_some() && s.cursor_init.is_some())
        .expect("first client: inputs and cursor");
    let id1 = c1.state().session_id;

    let c2 = client(&vm);
    c1.wait(STEP, |s| s.closed.len() == 4)
        .expect("the first client's four channels were not all closed");
    assert!(
        c1.state().errors.is_empty(),
        "the first client was not disconnected cleanly: {:?}",
        c1.state().errors
    );
    wait_surface(&c2, &scene, "second client");
    c2.wait(STEP, |s| s.inputs_init.is_some() && s.cursor_init.is_some())
        .expect("second client: inputs and cursor");
    assert_ne!(c2.state().session_id, id1);
    assert!(c2.state().closed.is_empty());
    // The second client drives the guest.
    vm.vm.send(&[images::DEMO_TEXT_KEY]);
    vm.vm.wait_for(images::DEMO_TEXT_MARKER, STEP);
    for code in [0x30, 0x1e] {
        c2.key_down(code).unwrap();
        c2.key_up(code | 0x80).unwrap();
    }
    vm.wait_echo("ba", STEP);
    assert!(c2.state().errors.is_empty());
}

/// The secure default as a user meets it: with no password option the printed
/// URI carries a generated password, which the server requires; a password
/// from `--password-file` (its first line) works and is not printed.
#[test]
fn printed_uri_password_and_password_file() {
    let dir = TempDir::new("spice-uri");
    let shot = dir.join("shot.ppm");
    let screenshot_ok = |port: u16, password: Option<&str>| {
        let _ = std::fs::remove_file(&shot);
        spicy_screenshot(port, password, &shot).status.success() && shot.exists()
    };

    let port = free_port();
    let spice = format!("127.0.0.1:{port}");
    let mut vm = SpiceboxVm::start(spicebox!(), &["--spice", &spice]);
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    let stderr = vm.stderr_text();
    let prefix = format!("spice: spice://127.0.0.1:{port}?password=");
    let password = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no URI with a password on stderr:\n{stderr}"))
        .to_string();
    assert!(password.len() >= 16, "weak generated password {password:?}");
    assert!(!screenshot_ok(port, None), "no password got in");
    assert!(
        screenshot_ok(port, Some(&password)),
        "the URI's password was refused"
    );
    drop(vm);

    let port = free_port();
    let spice = format!("127.0.0.1:{port}");
    let file = dir.join("password");
    std::fs::write(&file, "from-a-file\nsecond line\n").unwrap();
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &["--spice", &spice, "--password-file", file.to_str().unwrap()],
    );
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    let stderr = vm.stderr_text();
    assert!(
        stderr
            .lines()
            .any(|l| l == format!("spice: spice://127.0.0.1:{port}")),
        "a chosen password must not be printed:\n{stderr}"
    );
    assert!(!screenshot_ok(port, Some("second line")));
    assert!(screenshot_ok(port, Some("from-a-file")), "--password-file");
}

#[test]
fn unsafe_or_broken_spice_options_are_refused() {
    let (status, stderr) = run_cli(
        spicebox!(),
        &["run", "--spice", "0.0.0.0:0", "--disable-ticketing"],
    );
    assert!(!status.success());
    assert!(stderr.contains("--spice-allow-remote"), "{stderr}");

    let dir = TempDir::new("spice-opts");
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let (status, stderr) = run_cli(
        spicebox!(),
        &[
            "run",
            "--spice",
            "127.0.0.1:0",
            "--password-file",
            empty.to_str().unwrap(),
        ],
    );
    assert!(!status.success());
    assert!(stderr.contains("is empty"), "{stderr}");

    let (status, stderr) = run_cli(spicebox!(), &["run", "--spice", "nowhere"]);
    assert!(!status.success());
    assert!(stderr.contains("not a SPICE address"), "{stderr}");
}
