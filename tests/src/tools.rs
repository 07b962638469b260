//! Host programs the end-to-end tests drive (SPICE clients, QEMU) and the
//! small pieces every such test needs: a free port, a tool check that fails
//! with the install command, a run with a deadline.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A loopback port that was free a moment ago (bound, read, released), so the
/// same port can be given to the VM and to a stock client.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Panics with the install command when `tool` is not on PATH.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            let p = d.join(tool);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
        })
    });
    assert!(
        found,
        "this test needs `{tool}`: apt-get install {package} (or scripts/deps test)"
    );
}

/// Panics with the install command unless python3 can load spice-gtk's
/// SpiceClientGLib, the real client the Python test scripts drive.
pub fn require_spice_client_glib() {
    require_tool("python3", "python3");
    let gi = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('SpiceClientGLib', '2.0')",
        ])
        .status()
        .unwrap();
    assert!(
        gi.success(),
        "this test needs SpiceClientGLib: apt-get install gir1.2-spiceclientglib-2.0 python3-gi (or scripts/deps test)"
    );
}

/// Send signal `sig` to process `pid` (a child we spawned and have not reaped),
/// through the shell's `kill`, so the harness needs no unsafe code.
pub fn send_signal(pid: u32, sig: i32) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {pid}")])
        .stdin(Stdio::null())
        .status()
        .expect("run sh -c kill");
    if !status.success() {
        eprintln!("kill -{sig} {pid} failed ({status}): the process is gone");
    }
}

/// Runs `cmd` to completion with its output captured; kills it and panics
/// after `timeout`.
pub fn run_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            send_signal(pid, libc::SIGKILL);
            panic!("{what} did not finish within {timeout:?}");
        }
    }
}

/// `spicy-screenshot` (spice-client-gtk) of the SPICE server on loopback
/// `port`, into `out` (PPM); `password` None = no `--password`.
pub fn spicy_screenshot(port: u16, password: Option<&str>, out: &Path) -> Output {
    require_tool("spicy-screenshot", "spice-client-gtk");
    let mut cmd = Command::new("spicy-screenshot");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-o"])
        .arg(out);
    if let Some(pw) = password {
        cmd.args(["--password", pw]);
    }
    run_timeout(cmd, Duration::from_secs(30))
}

/// QEMU booting a test guest's disk as the e2e tests compare against it: KVM,
/// the `pc` machine, 512 MiB, QXL's VGA, no display, COM1 on stdio, the disk
/// on a modern-only virtio-blk, no reboot. Tests add their devices and SPICE.
pub fn qemu_guest(disk: &Path) -> Command {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-enable-kvm", "-machine", "pc", "-m", "512M", "-nodefaults"])
        .args(["-vga", "qxl", "-display", "none", "-serial", "stdio"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args(["-global", "virtio-blk-pci.disable-legacy=on", "-no-reboot"]);
    cmd
}
