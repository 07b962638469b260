//! Our usbredir host peer against QEMU's usb-redir device (the C usbredirparser
//! in the guest role): QEMU connects its chardev to the peer, both hellos are
//! exchanged, the peer announces its keyboard, and QEMU attaches a full-speed
//! device to its xHCI bus ("info usb"), with no usbredirparser error. This checks
//! the crate's wire format against the reference implementation.
//!
//! Needs qemu-system-x86_64 (scripts/deps installs it); runs QEMU with TCG, so
//! /dev/kvm is not needed; holds the shared VM lock while QEMU runs.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use usbredir::peer::{HostPeer, Keyboard};
use usbredir::Cap;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vm_lock() -> File {
    let f = File::create(std::env::temp_dir().join("spicebox-tests.vm.lock")).expect("lock file");
    f.lock().expect("flock");
    f
}

#[test]
fn qemu_usb_redir_attaches_the_peer_keyboard() {
    let _lock = vm_lock();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log_path = std::env::temp_dir().join(format!("usbredir-qemu-{}.log", std::process::id()));
    let log = File::create(&log_path).unwrap();
    let mut qemu = Kill(
        Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "q35",
                "-accel",
                "tcg",
                "-m",
                "64",
                "-nodefaults",
                "-display",
                "none",
            ])
            .args(["-monitor", "stdio", "-device", "qemu-xhci,id=xhci"])
            .args([
                "-chardev",
                &format!("socket,id=redir,host=127.0.0.1,port={port}"),
            ])
            .args(["-device", "usb-redir,chardev=redir,bus=xhci.0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("qemu-system-x86_64 (scripts/deps installs qemu-system-x86)"),
    );
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sock = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("QEMU did not connect its usb-redir chardev: {e}"),
        }
    };
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    // Monitor output, line by line, on a thread.
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = qemu.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut stdin = qemu.0.stdin.take().unwrap();

    let mut peer = HostPeer::new(Keyboard::default());
    let mut buf = vec![0u8; 64 * 1024];
    let mut attached = false;
    let mut next_query = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline && !attached {
        let out = peer.take_output();
        if !out.is_empty() {
            sock.write_all(&out).unwrap();
        }
        match sock.read(&mut buf) {
            Ok(0) => panic!("QEMU closed the usbredir connection (rejected our packets?)"),
            Ok(n) => peer.received(&buf[..n]).expect("QEMU's packets parse"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("usbredir socket: {e}"),
        }
        if Instant::now() >= next_query {
            stdin.write_all(b"info usb\n").unwrap();
            next_query = Instant::now() + Duration::from_millis(500);
        }
        while let Ok(line) = lines.try_recv() {
            if line.contains("Speed 12 Mb/s") {
                attached = true;
            }
        }
    }
    assert!(
        attached,
        "QEMU never attached the redirected full-speed device"
    );
    // QEMU's hello carried its capabilities, which our parser negotiated.
    let caps = peer.peer_caps().expect("QEMU's hello");
    assert!(
        caps.has(Cap::Ids64Bit)
            && caps.has(Cap::EpInfoMaxPacketSize)
            && caps.has(Cap::BulkLength32Bit)
    );
    let _ = stdin.write_all(b"quit\n");
    drop(qemu);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert!(
        !log.contains("usbredirparser"),
        "QEMU's parser complained:\n{log}"
    );
}
