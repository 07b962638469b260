//! End-to-end: the SPICE agent's path. The vdagent guest
//! (images/guests/programs/src/bin/vdagent.rs) brings up virtio-serial as
//! Linux's virtio_console.c and opens `com.redhat.spice.0` as spice-vdagentd
//! does; a SPICE client (the in-repo test client) then talks to it through the
//! MAIN channel's agent relay: AGENT_CONNECTED at MAIN_INIT, capabilities
//! announced and answered, a 3000-byte message sent as two AGENT_DATA chunks
//! and echoed back byte for byte, and the client's leaving told to the agent
//! (CLIENT_DISCONNECTED); the guest opening and closing the port are QMP
//! VSERPORT_CHANGE events. The same on spicebox and on QEMU (`-device
//! virtio-serial -chardev spicevmc,name=vdagent -device virtserialport,
//! name=com.redhat.spice.0`), in the same test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use images::TestImage;
use serde_json::json;
use spice::client::decode::ServerMsg;
use spice::client::{ClientOptions, ClientState, TestClient};
use spice::proto::main_msgc;
use spice::Listen;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::tools::{free_port, qemu_guest, require_spice_client_glib};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(20);
const ANNOUNCE_CAPABILITIES: u32 = 6;
const CLIPBOARD: u32 = 4;

fn qemu(disk: &Path, port: u16, qmp: &Path) -> Command {
    let mut cmd = qemu_guest(disk);
    cmd.args([
        "-spice",
        &format!("port={port},addr=127.0.0.1,disable-ticketing=on"),
    ])
    .args(["-device", "virtio-serial-pci,disable-legacy=on"])
    .args(["-chardev", "spicevmc,id=vdagent,name=vdagent"])
    .args([
        "-device",
        "virtserialport,chardev=vdagent,name=com.redhat.spice.0,id=vdagent",
    ])
    .arg("-qmp")
    .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    cmd
}

/// The next VSERPORT_CHANGE's data; panics with what QMP sent instead.
/// Boots the vdagent guest as `name` on QEMU (`qemu_run`) or spicebox, with
/// SPICE on a free port without a ticket (QEMU's QMP at `dir/qmp-{name}`);
/// `spicebox_args` and `qemu_args` add to one side each. Returns the VM and
/// its SPICE port, before the guest is ready.
fn boot_vdagent(
    dir: &TempDir,
    name: &str,
    qemu_run: bool,
    spicebox_args: &[&str],
    qemu_args: &[String],
) -> (SpiceboxVm, u16) {
    let disk = dir.join(&format!("vdagent-{name}.img"));
    images::write_image(TestImage::Vdagent.bytes(), &disk).unwrap();
    let port = free_port();
    let vm = if qemu_run {
        let mut cmd = qemu(&disk, port, &dir.join(&format!("qmp-{name}")));
        cmd.args(qemu_args);
        SpiceboxVm::start_command(cmd)
    } else {
        let spice = format!("127.0.0.1:{port}");
        let mut args = vec![
            disk.to_str().unwrap(),
            "-m",
            "512M",
            "--spice",
            &spice,
            "--disable-ticketing",
        ];
        args.extend_from_slice(spicebox_args);
        SpiceboxVm::start(spicebox!(), &args)
    };
    (vm, port)
}

fn vserport_change(qmp: &mut Qmp, name: &str) -> serde_json::Value {
    if let Some(i) = qmp
        .events
        .iter()
        .position(|e| e["event"] == "VSERPORT_CHANGE")
    {
        return qmp.events.remove(i)["data"].clone();
    }
    loop {
        match qmp.read() {
            Some(v) if v["event"] == "VSERPORT_CHANGE" => return v["data"].clone(),
            Some(v) => qmp.events.push(v),
            None => panic!("{name}: no VSERPORT_CHANGE; QMP sent {:?}", qmp.events),
        }
    }
}

/// A VDAgentMessage (protocol 1) with `data`.
fn message(msg_type: u32, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&msg_type.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(data);
    m
}

fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Everything the agent sent the client so far, concatenated.
fn agent_bytes(s: &ClientState) -> Vec<u8> {
    s.agent
        .iter()
        .filter_map(|m| match m {
            ServerMsg::AgentData(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn agent_messages_cross_virtio_serial_on_spicebox_and_qemu() {
    let dir = TempDir::new("vdagent");
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let sock = dir.join(&format!("qmp-{name}"));
        let control = format!("unix:{}", sock.display());
        let (mut vm, port) = boot_vdagent(&dir, name, qemu_run, &["--control", &control], &[]);
        // Connected while the firmware runs, long before the guest opens the port.
        let mut qmp = Qmp::connect(&sock, STEP);
        vm.wait_for(images::VDAGENT_READY_MARKER, BOOT);
        // The guest's PORT_OPEN 1 is a VSERPORT_CHANGE, as QEMU sends it.
        assert_eq!(
            vserport_change(&mut qmp, name),
            json!({"id": "vdagent", "open": true}),
            "{name}"
        );
        // QEMU sends VSERPORT_CHANGE at most once a second per port and holds
        // the rest back to the end of that second: a close sooner would come
        // after QEMU has exited.
        std::thread::sleep(Duration::from_millis(1200));
        let c = TestClient::connect(
            &Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
            ClientOptions {
                channels: vec![],
                ..ClientOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        c.wait(STEP, |s| s.main_init.is_some())
            .unwrap_or_else(|e| panic!("{name}: no MAIN_INIT: {e}"));
        let (connected, tokens) = match c.state().main_init {
            Some(ServerMsg::MainInit {
                agent_connected,
                agent_tokens,
                ..
            }) => (agent_connected, agent_tokens),
            ref other => panic!("{other:?}"),
        };
        assert_eq!(connected, 1, "{name}: the guest's agent is connected");
        assert!(tokens >= 2, "{name}: {tokens} agent tokens");
        c.send_main(main_msgc::AGENT_START, &u32::MAX.to_le_bytes())
            .unwrap();
        // spice-gtk's announce: request = 1, one caps word.
        let announce = message(ANNOUNCE_CAPABILITIES, &[1, 0, 0, 0, 0xff, 0, 0, 0]);
        c.send_main(main_msgc::AGENT_DATA, &announce).unwrap();
        // 3020 bytes: two AGENT_DATA, the header only in the first.
        let big = message(CLIPBOARD, &payload);
        for piece in big.chunks(2048) {
            c.send_main(main_msgc::AGENT_DATA, piece).unwrap();
        }
        let reply = message(ANNOUNCE_CAPABILITIES, &[0; 8]);
        let want: Vec<u8> = reply.iter().chain(&big).copied().collect();
        c.wait(STEP, |s| agent_bytes(s).len() >= want.len())
            .unwrap_or_else(|e| {
                panic!(
                    "{name}: agent sent {} of {} bytes: {e}\n{}",
                    agent_bytes(&c.state()).len(),
                    want.len(),
                    vm.serial_text()
                )
            });
        assert!(agent_bytes(&c.state()) == want, "{name}: echo differs");
        assert!(
            c.state().errors.is_empty(),
            "{name}: {:?}",
            c.state().errors
        );
        c.close();
        vm.wait_for(images::VDAGENT_OK_MARKER, STEP);
        // And its PORT_OPEN 0 after CLIENT_DISCONNECTED.
        assert_eq!(
            vserport_change(&mut qmp, name),
            json!({"id": "vdagent", "open": false}),
            "{name}"
        );
        drop(qmp);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::VDAGENT_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        for line in [
            format!(
                "agent-rx port=1 type=6 size=8 sum={:08x}",
                fnv1a32(&[1, 0, 0, 0, 0xff, 0, 0, 0])
            ),
            format!(
                "agent-rx port=1 type=4 size=3000 sum={:08x}",
                fnv1a32(&payload)
            ),
            "agent-rx port=2 type=13 size=0".to_owned(),
        ] {
            assert!(serial.contains(&line), "{name}: no {line:?}\n{serial}");
        }
    }
}

const MONITORS_CONFIG: u32 = 2;

/// A VDAgentMonitorsConfig body (flags USE_POS): (width, height, x, y) per
/// slot, all zero for a disabled one.
fn monitors_config(heads: &[(u32, u32, u32, u32)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(heads.len() as u32).to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for &(w, h, x, y) in heads {
        for v in [h, w, 32, x, y] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b
}

/// The QXL ROM's QXLClientMonitorsConfig that QEMU's
/// interface_client_monitors_config writes for `heads`: the count capped at 64,
/// each slot a QXLURect {top, left, bottom, right}.
fn rom_config(heads: &[(u32, u32, u32, u32)]) -> Vec<u8> {
    let count = heads.len().min(64);
    let mut b = (count as u16).to_le_bytes().to_vec();
    b.extend_from_slice(&[0, 0]);
    for &(w, h, x, y) in &heads[..count] {
        for v in [y, x, y + h, x + w] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b.resize(4 + 64 * 16, 0);
    b
}

/// The guest's report of `rom` (see images::VDAGENT_QXL_MONITORS_PREFIX).
fn rom_report(rom: &[u8]) -> String {
    let word = |k: usize| u32::from_le_bytes(rom[4 * k..4 * k + 4].try_into().unwrap());
    format!(
        "{}count={} crc=ok sum={:08x} head0={},{},{},{}",
        images::VDAGENT_QXL_MONITORS_PREFIX,
        word(0) & 0xffff,
        fnv1a32(rom),
        word(1),
        word(2),
        word(3),
        word(4)
    )
}

/// The guest's complete QXL report lines so far.
fn qxl_reports(vm: &SpiceboxVm) -> Vec<String> {
    vm.serial_text()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && l.starts_with(images::VDAGENT_QXL_MONITORS_PREFIX))
        .map(|l| l.trim_end().to_owned())
        .collect()
}

/// Waits until the guest reported `want`; all its complete QXL reports then.
fn wait_report(vm: &SpiceboxVm, want: &str, name: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let r = qxl_reports(vm);
        if r.iter().any(|l| l == want) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: no {want:?} within {STEP:?}\n{}",
            vm.serial_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the client if the test fails while it runs.
struct Child(Option<std::process::Child>);

impl Child {
    /// Its exit and output (the script ends itself within its timeout).
    fn output(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client's window size reaches the guest's QXL driver as QEMU's qxl device
/// delivers it: spice-gtk (SpiceClientGLib's update_display +
/// send_monitor_config, what remote-viewer does on a resize) sends
/// VD_AGENT_MONITORS_CONFIG in the agent's data; the driver unmasked
/// CLIENT_MONITORS_CONFIG before the client started its agent, so the server
/// writes it into the QXL ROM with its CRC and raises the interrupt, and the
/// agent never sees it (spice-server's filter). Then a client with 200 heads
/// (two AGENT_DATA pieces) gets its first 64 written. Same on QEMU -vga qxl.
#[test]
fn a_client_monitors_config_reaches_the_qxl_driver_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/py/spice_monitors.py");
    let dir = TempDir::new("vdagent-monitors");
    let resized = [(1280, 800, 0, 0)];
    let many: Vec<(u32, u32, u32, u32)> = (0..200u32)
        .map(|i| {
            if i % 5 == 3 {
                (0, 0, 0, 0)
            } else {
                (640 + 8 * i, 480 + 2 * i, 1000 * i, i % 7)
            }
        })
        .collect();
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let (mut vm, port) = boot_vdagent(&dir, name, qemu_run, &[], &[]);
        vm.wait_for(images::VDAGENT_READY_MARKER, BOOT);

        // A real client resizes its window.
        let stop = dir.join(&format!("stop-{name}"));
        let py = Child(Some(
            Command::new("/usr/bin/python3")
                .arg(script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--width", "1280", "--height", "800"])
                .arg("--stop-file")
                .arg(&stop)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        ));
        // spice-gtk may send it again once the agent's capabilities come:
        // every report is this one.
        let want = rom_report(&rom_config(&resized));
        let first = wait_report(&vm, &want, name);
        assert!(first.iter().all(|l| *l == want), "{name}: {first:?}");
        // The agent stays for the next client.
        vm.send(b"n");
        vm.wait_for(images::VDAGENT_NEXT_MARKER, STEP);
        std::fs::write(&stop, b"").unwrap();
        let out = py.output();
        assert!(
            out.status.success(),
            "{name}: spice_monitors.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "monitors-config sent 1280x800",
            "{name}"
        );
        vm.wait_for(images::VDAGENT_CLIENT_GONE_MARKER, STEP);

        // 200 heads, 4028 bytes: two AGENT_DATA pieces; the ROM has room for 64.
        let c = TestClient::connect(
            &Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
            ClientOptions {
                channels: vec![],
                ..ClientOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        c.wait(STEP, |s| s.main_init.is_some())
            .unwrap_or_else(|e| panic!("{name}: no MAIN_INIT: {e}"));
        c.send_main(main_msgc::AGENT_START, &u32::MAX.to_le_bytes())
            .unwrap();
        let msg = message(MONITORS_CONFIG, &monitors_config(&many));
        assert_eq!(msg.chunks(2048).count(), 2);
        for piece in msg.chunks(2048) {
            c.send_main(main_msgc::AGENT_DATA, piece).unwrap();
        }
        let want = rom_report(&rom_config(&many));
        let all = wait_report(&vm, &want, name);
        let second: Vec<_> = all.iter().skip_while(|l| **l != want).collect();
        assert!(second.iter().all(|l| **l == want), "{name}: {all:?}");
        assert!(
            c.state().errors.is_empty() && c.state().closed.is_empty(),
            "{name}: {:?} {:?}",
            c.state().errors,
            c.state().closed
        );
        c.close();
        vm.wait_for(images::VDAGENT_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::VDAGENT_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        // spice-server's filter: the agent gets no monitors config while the
        // QXL driver takes them.
        assert!(
            !serial.contains(&format!("agent-rx port=1 type={MONITORS_CONFIG} ")),
            "{name}: the agent got a monitors config\n{serial}"
        );
    }
}

/// Copy and paste through spice-gtk (tests/py/spice_clipboard.py, SpiceClientGLib's
/// clipboard API) with a guest agent that speaks the clipboard protocol as
/// spice-vdagent does (capabilities with CLIPBOARD_BY_DEMAND, GRAB, REQUEST,
/// CLIPBOARD): the guest's 3000-byte text reaches the client (two agent chunks
/// towards it), then the client's 5000-byte text reaches the guest (three
/// AGENT_DATA pieces within the client's tokens). Same on QEMU.
#[test]
fn copy_and_paste_through_spice_gtk_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/py/spice_clipboard.py"
    );
    let guest_text: Vec<u8> = (0..images::VDAGENT_GUEST_CLIPBOARD_LEN)
        .map(|i| b'a' + ((i * 7 + i / 256) % 26) as u8)
        .collect();
    let client_len = 5000;
    let client_text: Vec<u8> = (0..client_len)
        .map(|i| b'A' + ((i * 11 + i / 300) % 26) as u8)
        .collect();
    let dir = TempDir::new("vdagent-clipboard");
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let (mut vm, port) = boot_vdagent(&dir, name, qemu_run, &[], &[]);
        vm.wait_for(images::VDAGENT_READY_MARKER, BOOT);
        vm.send(b"c");
        vm.wait_for(images::VDAGENT_CLIPBOARD_MODE_MARKER, STEP);
        let stop = dir.join(&format!("stop-{name}"));
        let py = Child(Some(
            Command::new("/usr/bin/python3")
                .arg(script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--client-len", &client_len.to_string()])
                .arg("--stop-file")
                .arg(&stop)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        ));
        let pasted = format!(
            "{}1 size={client_len} sum={:08x}",
            images::VDAGENT_CLIPBOARD_PREFIX,
            fnv1a32(&client_text)
        );
        vm.wait_for(&pasted, STEP);
        std::fs::write(&stop, b"").unwrap();
        let out = py.output();
        assert!(
            out.status.success(),
            "{name}: spice_clipboard.py: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            vm.serial_text()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .collect::<Vec<_>>(),
            [
                format!(
                    "guest-clipboard size={} sum={:08x}",
                    guest_text.len(),
                    fnv1a32(&guest_text)
                ),
                format!(
                    "client-clipboard sent size={client_len} sum={:08x}",
                    fnv1a32(&client_text)
                ),
            ],
            "{name}"
        );
        vm.wait_for(images::VDAGENT_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::VDAGENT_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        assert_eq!(
            serial.matches(images::VDAGENT_CLIPBOARD_PREFIX).count(),
            1,
            "{name}"
        );
    }
}

/// A file dropped on the client's window (SpiceClientGLib's
/// spice_main_channel_file_copy_async, tests/py/spice_file_xfer.py) reaches a
/// guest agent that speaks spice-vdagent's file-transfer side: FILE_XFER_START
/// with the keyfile's name and size, STATUS CAN_SEND_DATA, 5 MiB of
/// FILE_XFER_DATA through the client's agent tokens, STATUS SUCCESS, which
/// spice-gtk reports as the copy finished. The guest's checksum of the bytes
/// is the file's. Same on QEMU.
#[test]
fn a_5_mib_file_transfer_through_spice_gtk_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/py/spice_file_xfer.py"
    );
    let dir = TempDir::new("vdagent-file");
    // Not a repeating pattern: a reordered or dropped piece changes the sum.
    let mut x = 0x1234_5678u32;
    let content: Vec<u8> = (0..5 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let file = dir.join("dropped file.bin");
    std::fs::write(&file, &content).unwrap();
    let want = format!(
        "{}1 name=dropped file.bin size={} sum={:08x}",
        images::VDAGENT_FILE_PREFIX,
        content.len(),
        fnv1a32(&content)
    );
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let (mut vm, port) = boot_vdagent(&dir, name, qemu_run, &[], &[]);
        vm.wait_for(images::VDAGENT_READY_MARKER, BOOT);
        vm.send(b"f");
        vm.wait_for(images::VDAGENT_FILE_MODE_MARKER, STEP);
        let py = Child(Some(
            Command::new("/usr/bin/python3")
                .arg(script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--file")
                .arg(&file)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        ));
        let out = py.output();
        assert!(
            out.status.success(),
            "{name}: spice_file_xfer.py: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            vm.serial_text()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with(&format!(
                "file-copy done size={} sum={:08x} ",
                content.len(),
                fnv1a32(&content)
            )),
            "{name}: {stdout}"
        );
        eprintln!("{name}: {}", stdout.trim());
        vm.wait_for(images::VDAGENT_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::VDAGENT_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        assert!(
            serial.contains(&format!(
                "agent-file-start id=1 name=dropped file.bin size={}",
                content.len()
            )),
            "{name}:\n{serial}"
        );
        let files: Vec<&str> = serial
            .lines()
            .filter(|l| l.starts_with(images::VDAGENT_FILE_PREFIX))
            .collect();
        assert_eq!(files, [want.as_str()], "{name}:\n{serial}");
    }
}

/// Lines of `text` that start with `prefix`, with `prefix` cut off and any
/// ` seconds=` or ` at=` suffix (timing) dropped.
fn reports(text: &str, prefix: &str) -> Vec<String> {
    let mut r: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|l| {
            let l = l.split(" seconds=").next().unwrap_or(l);
            l.split(" at=").next().unwrap_or(l).to_owned()
        })
        .collect();
    r.sort();
    r
}

/// Large copy and paste with both selections through spice-gtk
/// (tests/py/spice_clipboard_big.py): the agent announces CLIPBOARD_SELECTION
/// and MAX_CLIPBOARD, spice-gtk tells it the client's max-clipboard (16 MiB),
/// and a 10 MiB UTF-8 text and a 1 MiB PNG on CLIPBOARD and a text on
/// PRIMARY go guest -> client and client -> guest byte for byte (zlib crc32
/// and size on both ends; the client decodes the guest's PNG). Same on QEMU.
#[test]
fn ten_mib_text_and_png_clipboards_with_primary_through_spice_gtk_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/py/spice_clipboard_big.py"
    );
    let dir = TempDir::new("vdagent-big-clipboard");
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let (mut vm, port) = boot_vdagent(&dir, name, qemu_run, &[], &[]);
        vm.wait_for(images::VDAGENT_READY_MARKER, BOOT);
        vm.send(b"b");
        vm.wait_for(images::VDAGENT_BIG_CLIPBOARD_MODE_MARKER, STEP);
        let stop = dir.join(&format!("stop-{name}"));
        let py = Child(Some(
            Command::new("/usr/bin/python3")
                .arg(script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--max-clipboard", &(16u32 << 20).to_string()])
                .arg("--stop-file")
                .arg(&stop)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while reports(&vm.serial_text(), "agent-clipboard-got ").len() < 3
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::write(&stop, b"").unwrap();
        let out = py.output();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: spice_clipboard_big.py: {}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr),
            vm.serial_text()
        );
        eprintln!("{name}:\n{stdout}");
        vm.wait_for(images::VDAGENT_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::VDAGENT_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        assert!(
            serial.contains(&format!("agent-max-clipboard {}", 16u32 << 20)),
            "{name}:\n{serial}"
        );
        let guest_sent = reports(&serial, "agent-clipboard-sent ");
        let client_got = reports(&stdout, "guest-clipboard ");
        let client_sent = reports(&stdout, "client-clipboard sent ");
        let guest_got = reports(&serial, "agent-clipboard-got ");
        for (what, list) in [
            ("guest sent", &guest_sent),
            ("client got", &client_got),
            ("client sent", &client_sent),
            ("guest got", &guest_got),
        ] {
            let kinds: Vec<&str> = list
                .iter()
                .map(|l| &l[..l.find(" size=").unwrap()])
                .collect();
            assert_eq!(
                kinds,
                ["sel=0 type=1", "sel=0 type=2", "sel=1 type=1"],
                "{name}: {what}: {list:?}"
            );
        }
        assert_eq!(guest_sent, client_got, "{name}: guest -> client");
        assert_eq!(client_sent, guest_got, "{name}: client -> guest");
        let size = |l: &str| -> usize {
            l.split(" size=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        for list in [&guest_sent, &client_sent] {
            assert_eq!(size(&list[0]), 10 << 20, "{name}: {list:?}");
            assert!(
                (1 << 20..5 << 19).contains(&size(&list[1])),
                "{name}: {list:?}"
            );
        }
        assert!(stdout.contains("guest-png 512x512 ok"), "{name}: {stdout}");
    }
}

const ECHO_PORT: &str = "org.spicebox.echo.0";

/// `--spice-port NAME` as QEMU's spiceport chardev: the vdagent guest opens
/// the virtio-serial port named NAME (next to the agent's) and echoes it;
/// spice-gtk's PortChannel (tests/py/spice_port_echo.py) finds the channel by
/// the name in PORT_INIT, sees the guest's port open, sends 200 KiB of
/// SPICEVMC_DATA and reads them back byte for byte. Same on QEMU (-chardev spiceport + virtserialport).
#[test]
fn a_spice_port_channel_echoes_through_a_named_virtio_serial_port_on_spicebox_and_qemu() {
    require_spice_client_glib();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/py/spice_port_echo.py"
    );
    let size = 200 * 1024;
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 + i / 1000) as u8).collect();
    let dir = TempDir::new("vdagent-port");
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let qemu_args = [
            "-chardev".to_owned(),
            format!("spiceport,id=echo,name={ECHO_PORT}"),
            "-device".to_owned(),
            format!("virtserialport,chardev=echo,name={ECHO_PORT}"),
        ];
        let (mut vm, port) = boot_vdagent(
            &dir,
            name,
            qemu_run,
            &["--spice-port", ECHO_PORT],
            &qemu_args,
        );
        vm.wait_for(images::VDAGENT_READY_MARKER, BOOT);
        vm.wait_for("port-echo open", STEP);
        let out = Child(Some(
            Command::new("/usr/bin/python3")
                .arg(script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--name", ECHO_PORT, "--size", &size.to_string()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        ))
        .output();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: spice_port_echo.py: {}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr),
            vm.serial_text()
        );
        eprintln!("{name}: {}", stdout.trim());
        let lines: Vec<&str> = stdout
            .lines()
            .map(|l| l.split(" seconds=").next().unwrap_or(l))
            .collect();
        assert_eq!(
            lines,
            [
                format!("port name={ECHO_PORT} opened=1"),
                format!(
                    "port echo size={size} sum={:08x} match=yes",
                    fnv1a32(&payload)
                ),
            ],
            "{name}"
        );
        vm.wait_for(images::VDAGENT_OK_MARKER, STEP);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::VDAGENT_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        let guest = format!("port-echo total={size} sum={:08x}", fnv1a32(&payload));
        assert!(serial.contains(&guest), "{name}: no {guest:?}\n{serial}");
    }
}
