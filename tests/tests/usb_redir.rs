//! SPICE USB redirection end to end: the built-in demo under spicebox with its
//! default two USBREDIR channels; the in-repo usbredir host peer (a HID keyboard,
//! `usbredir::peer`) speaks over channel 0 through the in-repo SPICE test client.
//! The peer receives spicebox's hello (usb-guest capabilities), announces the
//! keyboard, spicebox attaches it to an xHCI root port, and unplugging detaches
//! it. First SpiceClientGLib (tests/py/spice_usbredir.py) connects: it lists
//! both SpiceUsbredirChannels and its USB device manager has both free. (The same peer against QEMU's usb-redir: `cargo test -p usbredir --test
//! qemu_usb_redir`.)

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use spice::client::{link_channel_id, AnyStream, ClientOptions, TestClient};
use spice::Listen;
use spicebox_tests::tools::{free_port, require_spice_client_glib};
use spicebox_tests::{spicebox, SpiceboxVm};
use usbredir::peer::{HostPeer, Keyboard};
use usbredir::Cap;

const BOOT: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(30);
const USBREDIR: u8 = 9;
const MAIN_ATTACH_CHANNELS: u16 = 104;

fn send(s: &mut AnyStream, body: &[u8]) {
    let mut m = 101u16.to_le_bytes().to_vec();
    m.extend((body.len() as u32).to_le_bytes());
    m.extend_from_slice(body);
    s.write_all(&m).unwrap();
}

/// One SPICEVMC_DATA body (or None on timeout).
fn recv(s: &mut AnyStream) -> Option<Vec<u8>> {
    let mut h = [0u8; 6];
    match s.read_exact(&mut h) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return None
        }
        Err(e) => panic!("usbredir channel: {e}"),
    }
    let mut body = vec![0u8; u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(
        u16::from_le_bytes([h[0], h[1]]),
        101,
        "plain DATA without the LZ4 cap"
    );
    Some(body)
}

/// Runs tests/py/spice_usbredir.py (SpiceClientGLib) against the server;
/// returns its result line.
fn spice_glib_usbredir(port: u16) -> String {
    require_spice_client_glib();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/py/spice_usbredir.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--expect", "2", "--timeout", "30"])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("usbredir "))
        .unwrap_or_else(|| {
            panic!(
                "spice_usbredir.py: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    assert!(
        out.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    line
}

fn wait_stderr(vm: &SpiceboxVm, what: &str) {
    let deadline = Instant::now() + STEP;
    while !vm.stderr_text().contains(what) {
        assert!(
            Instant::now() < deadline,
            "no {what:?} on stderr:\n{}",
            vm.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn usbredir_channel_attaches_and_detaches_a_keyboard() {
    let port = free_port();
    let mut cmd = Command::new(spicebox!());
    cmd.args([
        "run",
        "--serial",
        "stdio",
        "--disable-ticketing",
        "--spice",
        &format!("127.0.0.1:{port}"),
    ]);
    cmd.env("SPICEBOX_LOG", "warn,spicebox=info");
    let mut vm = SpiceboxVm::start_command(cmd);
    vm.wait_for(images::DEMO_READY_MARKER, BOOT);
    // spice-gtk first: its USB device manager sees both channels free.
    let line = spice_glib_usbredir(port);
    assert!(
        line.contains("usbredir channels=2 ids=0,1 opened=2 free_channels=2 "),
        "{line}\n{}",
        vm.stderr_text()
    );
    let listen = Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    let client = TestClient::connect(
        &listen,
        ClientOptions {
            channels: vec![],
            ..ClientOptions::default()
        },
    )
    .unwrap();
    client.send_main(MAIN_ATTACH_CHANNELS, &[]).unwrap();
    client.wait(STEP, |s| s.channels_list.is_some()).unwrap();
    let list = client.state().channels_list.clone().unwrap();
    assert!(
        list.contains(&(USBREDIR, 0)) && list.contains(&(USBREDIR, 1)),
        "{list:?}"
    );
    assert!(
        !list.contains(&(USBREDIR, 2)),
        "--usb-redir defaults to 2: {list:?}"
    );

    let session = client.state().session_id;
    let (mut s, linked) = link_channel_id(
        &listen,
        session,
        USBREDIR,
        0,
        vec![],
        &ClientOptions::default(),
    )
    .unwrap();
    assert!(linked.mini_header());
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut peer = HostPeer::new(Keyboard::default());
    let deadline = Instant::now() + STEP;
    while !vm.stderr_text().contains("usbredir: device attached") {
        assert!(
            Instant::now() < deadline,
            "never attached:\n{}",
            vm.stderr_text()
        );
        let out = peer.take_output();
        if !out.is_empty() {
            send(&mut s, &out);
        }
        if let Some(body) = recv(&mut s) {
            peer.received(&body)
                .expect("spicebox's usbredir packets parse");
        }
    }
    let caps = peer.peer_caps().expect("spicebox's hello");
    assert!(
        caps.has(Cap::Ids64Bit)
            && caps.has(Cap::EpInfoMaxPacketSize)
            && caps.has(Cap::BulkLength32Bit)
    );
    assert!(!caps.has(Cap::BulkStreams), "streams are not offered");
    // A full-speed keyboard goes to the first USB 2 port.
    wait_stderr(
        &vm,
        "usbredir: device attached to port 1 (Full) by channel 0",
    );

    // Unplug: device_disconnect; spicebox acks it and frees the port.
    peer.disconnect().unwrap();
    send(&mut s, &peer.take_output());
    wait_stderr(&vm, "usbredir: device detached from port 1 by channel 0");
    assert_eq!(
        vm.stderr_text()
            .matches("usbredir: device attached")
            .count(),
        1
    );
    drop(s);
    client.close();
    // The guest kept running throughout: it still echoes and powers off.
    vm.send(b"hello");
    vm.wait_for("hello", STEP);
    vm.send(b"p");
    vm.wait_for(images::DEMO_POWEROFF_MARKER, STEP);
    assert!(vm.wait_exit(STEP).success());
}
