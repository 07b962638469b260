//! Harness for end-to-end tests: runs the real `spicebox` binary on images built
//! by the `images` crate, talks to COM1 through stdio pipes, and guarantees that no
//! VM outlives its test.
//!
//! VMs run one at a time (each vCPU takes a whole core on the 2-core test machines):
//! `SpiceboxVm::start` takes an exclusive `flock` that works across test processes.

pub mod audio;
pub mod cdp;
pub mod glib_client;
pub mod qmp;
pub mod qxl_native;
pub mod screen;
pub mod slow_link;
pub mod tools;
pub mod tshark;
pub mod usb_peer;
pub mod x509;
pub mod xvfb;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Fail loudly when KVM is missing: these tests must never skip silently.
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!("this test needs /dev/kvm (read/write): {e}");
    }
}

/// The `spicebox` binary Cargo built for this test run. Only integration tests of
/// the `vmm` package (the end-to-end tests are declared there) get this variable,
/// so a test can never run a stale binary from an earlier build.
#[macro_export]
macro_rules! spicebox {
    () => {
        env!("CARGO_BIN_EXE_spicebox")
    };
}

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        // Process id plus a per-process counter: unique, and free of the
        // characters (commas, colons) that QEMU's option syntax treats specially.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("spicebox-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serial output collected by a reader thread.
#[derive(Default)]
struct Output {
    bytes: Mutex<Vec<u8>>,
    cond: Condvar,
    /// (bytes collected so far, when) after each read: when a line reached
    /// the host, apart from when a waiter noticed it (benchmark profiling).
    arrivals: Mutex<Vec<(usize, Instant)>>,
}

/// A running spicebox process with COM1 on its stdio.
pub struct SpiceboxVm {
    child: Child,
    stdin: Option<ChildStdin>,
    serial: Arc<Output>,
    stderr: Arc<Output>,
    _lock: File,
}

fn vm_lock() -> File {
    let f = File::create(std::env::temp_dir().join("spicebox-tests.vm.lock")).expect("lock file");
    // flock(2), exclusive: blocks until no other VM runs (`flock FILE cmd` by hand).
    f.lock().expect("flock failed");
    f
}

fn pump(mut from: impl Read + Send + 'static, to: Arc<Output>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut b = to.bytes.lock().unwrap();
            b.extend_from_slice(&buf[..n]);
            to.arrivals.lock().unwrap().push((b.len(), Instant::now()));
            drop(b);
            to.cond.notify_all();
        }
    });
}

impl SpiceboxVm {
    /// `spicebox run --serial stdio ARGS...` (no `--serial stdio` when ARGS has
    /// its own `--serial`).
    pub fn start(bin: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.arg("run");
        if !args.contains(&"--serial") {
            cmd.args(["--serial", "stdio"]);
        }
        // Never the default port 5930: a user's VM (or a leftover) may hold it.
        if !args.contains(&"--spice") {
            cmd.args(["--spice", "127.0.0.1:0"]);
        }
        cmd.args(args);
        Self::start_command(cmd)
    }

    /// Any VM program (QEMU, for comparisons) with its COM1 on stdio, under the
    /// same one-VM-at-a-time lock.
    pub fn start_command(mut cmd: Command) -> Self {
        require_kvm();
        let lock = vm_lock();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start spicebox");
        let serial = Arc::new(Output::default());
        let stderr = Arc::new(Output::default());
        pump(child.stdout.take().unwrap(), serial.clone());
        pump(child.stderr.take().unwrap(), stderr.clone());
        SpiceboxVm {
            stdin: child.stdin.take(),
            child,
            serial,
            stderr,
            _lock: lock,
        }
    }

    /// When the collected serial output first reached `len` bytes (its
    /// reader thread's clock: the host's, not the waiter's).
    pub fn serial_arrival(&self, len: usize) -> Option<Instant> {
        self.serial
            .arrivals
            .lock()
            .unwrap()
            .iter()
            .find(|(l, _)| *l >= len)
            .map(|(_, t)| *t)
    }

    pub fn serial_text(&self) -> String {
        String::from_utf8_lossy(&self.serial.bytes.lock().unwrap()).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.bytes.lock().unwrap()).into_owned()
    }

    /// Wait until serial output contains `marker` `count` times; panics with the
    /// output so far on timeout or if the process dies first.
    pub fn wait_for_count(&mut self, marker: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut g = self.serial.bytes.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&g);
            if text.matches(marker).count() >= count {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(g);
                panic!(
                    "timed out after {timeout:?} waiting for {marker:?} x{count}\n--- serial ---\n{}\n--- stderr ---\n{}",
                    self.serial_text(),
                    self.stderr_text()
                );
            }
            let (g2, _) = self
                .serial
                .cond
                .wait_timeout(g, (deadline - now).min(Duration::from_millis(100)))
                .unwrap();
            g = g2;
            if let Ok(Some(status)) = self.child.try_wait() {
                let text = String::from_utf8_lossy(&g).into_owned();
                if text.matches(marker).count() >= count {
                    return;
                }
                drop(g);
                panic!(
                    "spicebox exited ({status}) before {marker:?}\n--- serial ---\n{text}\n--- stderr ---\n{}",
                    self.stderr_text()
                );
            }
        }
    }

    pub fn wait_for(&mut self, marker: &str, timeout: Duration) {
        self.wait_for_count(marker, 1, timeout)
    }

    /// Type bytes into COM1.
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to spicebox stdin");
        stdin.flush().unwrap();
    }

    pub fn signal(&self, sig: i32) {
        tools::send_signal(self.child.id(), sig);
    }

    /// Wait for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "spicebox did not exit within {timeout:?}\n--- serial ---\n{}\n--- stderr ---\n{}",
                    self.serial_text(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SpiceboxVm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Run spicebox to completion with `args` (no VM expected to boot), returning
/// (exit status, stderr).
pub fn run_cli(bin: &str, args: &[&str]) -> (ExitStatus, String) {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run spicebox");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
