//! The usbredir test peer run against a VM for the xhci-storage guest's
//! end-to-end tests (tests/xhci_storage.rs, tests/xhci_iso.rs): on QEMU the
//! peer listens for `-chardev socket` of `-device usb-redir`; on spicebox it
//! is linked to SPICE usbredir channel 0 by the in-repo SPICE test client.
//! A [`Scenario`] names the peer's device, what the peer thread does between
//! reads, and what the test does while the guest runs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spice::client::{link_channel_id, AnyStream, ClientOptions, TestClient};
use spice::Listen;
use usbredir::peer::{EmulatedDevice, HostPeer};

use crate::tools::{free_port, qemu_guest};
use crate::SpiceboxVm;

/// Boot, wait for the device and run the guest (it waits up to 120 s).
pub const RUN: Duration = Duration::from_secs(150);
pub const STEP: Duration = Duration::from_secs(30);
/// SPICE channel type of the usbredir (spicevmc) channels.
pub const USBREDIR: u8 = 9;
const MAIN_ATTACH_CHANNELS: u16 = 104;
const SPICEVMC_DATA: u16 = 101;

/// Sets the flag when dropped, so a peer thread ends even if the test panics.
pub struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// What the peer thread hands back: the device, and each VMM turnaround it
/// timed: from the peer's reply written to the VMM's next request read, the
/// VMM's and the guest's share of a transfer (the peer's own work excluded).
pub struct PeerRun<D: EmulatedDevice> {
    pub peer: HostPeer<D>,
    /// (bytes of the reply, turnaround after it).
    pub turnarounds: Vec<(usize, Duration)>,
}

/// Runs the peer until `stop`, the connection closes or the VM's run time
/// passes: `read` gives received usbredir bytes (empty on timeout, None
/// once closed), `write` sends them.
pub fn pump<D: EmulatedDevice>(
    mut peer: HostPeer<D>,
    mut read: impl FnMut() -> Option<Vec<u8>>,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
    mut tick: impl FnMut(&mut HostPeer<D>),
    stop: &AtomicBool,
) -> PeerRun<D> {
    let deadline = Instant::now() + RUN + STEP;
    let mut replied: Option<(usize, Instant)> = None;
    let mut turnarounds = Vec::new();
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        tick(&mut peer);
        let out = peer.take_output();
        if !out.is_empty() {
            if write(&out).is_err() {
                break;
            }
            replied = Some((out.len(), Instant::now()));
        }
        match read() {
            Some(bytes) => {
                if !bytes.is_empty() {
                    if let Some((len, at)) = replied.take() {
                        turnarounds.push((len, at.elapsed()));
                    }
                }
                peer.received(&bytes)
                    .expect("the VMM's usbredir packets parse")
            }
            None => break,
        }
    }
    PeerRun { peer, turnarounds }
}

/// Waits for the guest's verdict; returns its serial output.
pub fn finish(mut vm: SpiceboxVm, name: &str, during: impl FnOnce(&mut SpiceboxVm)) -> String {
    during(&mut vm);
    vm.wait_for(images::XHCI_STORAGE_OK_MARKER, RUN);
    assert!(vm.wait_exit(STEP).success(), "{name}");
    let serial = vm.serial_text();
    // Profiling (scripts/bench_usb): spicebox's log, appended to a file.
    if let Ok(path) = std::env::var("SPICEBOX_BENCH_STDERR") {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(format!("{path}.{name}"))
            .unwrap();
        f.write_all(vm.stderr_text().as_bytes()).unwrap();
    }
    assert!(
        !serial.contains(images::XHCI_STORAGE_FAIL_MARKER_PREFIX),
        "{name}:\n{serial}\n{}",
        vm.stderr_text()
    );
    serial
}

/// SPICEVMC_DATA messages (mini header: u16 type, u32 size) in: the
/// usbredir bytes of the whole ones (empty on timeout), None once closed.
pub fn vmc_read(s: &mut AnyStream, buf: &mut [u8], pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    match s.read(buf) {
        Ok(0) => return None,
        Ok(n) => pending.extend_from_slice(&buf[..n]),
        Err(e) if is_timeout(&e) => {}
        Err(_) => return None,
    }
    let mut out = Vec::new();
    while pending.len() >= 6 {
        let kind = u16::from_le_bytes([pending[0], pending[1]]);
        let size = u32::from_le_bytes([pending[2], pending[3], pending[4], pending[5]]) as usize;
        if pending.len() < 6 + size {
            break;
        }
        assert_eq!(kind, SPICEVMC_DATA, "plain DATA without the LZ4 cap");
        out.extend_from_slice(&pending[6..6 + size]);
        pending.drain(..6 + size);
    }
    Some(out)
}

/// usbredir bytes out as one SPICEVMC_DATA message.
pub fn vmc_write(s: &mut AnyStream, b: &[u8]) -> std::io::Result<()> {
    let mut m = SPICEVMC_DATA.to_le_bytes().to_vec();
    m.extend((b.len() as u32).to_le_bytes());
    m.extend_from_slice(b);
    s.write_all(&m)
}

/// What runs the peer's device through one VM: the device, what the peer
/// thread does between reads, and what the test does before the verdict.
pub struct Scenario<D, T, W> {
    pub device: D,
    pub tick: T,
    pub during: W,
    /// How long the peer's socket reads wait: the longest a packet the
    /// peer's `tick` makes due waits before it is sent.
    pub poll: Duration,
}

impl<D, T, W> Scenario<D, T, W>
where
    D: EmulatedDevice + Send + 'static,
    T: FnMut(&mut HostPeer<D>) + Send + 'static,
    W: FnOnce(&mut SpiceboxVm, Option<(&Listen, u32)>),
{
    pub fn run_qemu(self, disk: &std::path::Path) -> (String, PeerRun<D>) {
        let Scenario {
            device,
            tick,
            during,
            poll,
        } = self;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut cmd = qemu_guest(disk);
        cmd.args(["-device", "qemu-xhci,id=xhci"])
            .arg("-chardev")
            .arg(format!("socket,id=usbredir0,host=127.0.0.1,port={port}"))
            .args(["-device", "usb-redir,chardev=usbredir0,bus=xhci.0"]);
        let stop = Arc::new(AtomicBool::new(false));
        let peer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // No deadline here: QEMU starts once the VM lock is free; the
                // flag ends the wait if the test fails first.
                listener.set_nonblocking(true).unwrap();
                let mut sock = loop {
                    match listener.accept() {
                        Ok((sock, _)) => break sock,
                        Err(e) if is_timeout(&e) && !stop.load(Ordering::SeqCst) => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Err(e) => panic!("QEMU did not connect its usb-redir chardev: {e}"),
                    }
                };
                sock.set_nonblocking(false).unwrap();
                sock.set_read_timeout(Some(poll)).unwrap();
                let mut writer = sock.try_clone().unwrap();
                let mut buf = vec![0u8; 256 * 1024];
                pump(
                    HostPeer::new(device),
                    || match sock.read(&mut buf) {
                        Ok(0) => None,
                        Ok(n) => Some(buf[..n].to_vec()),
                        Err(e) if is_timeout(&e) => Some(Vec::new()),
                        Err(_) => None,
                    },
                    |b| writer.write_all(b),
                    tick,
                    &stop,
                )
            })
        };
        let _stop = StopOnDrop(stop);
        let vm = SpiceboxVm::start_command(cmd);
        let serial = finish(vm, "qemu", |vm| during(vm, None));
        (serial, peer.join().expect("peer thread"))
    }

    /// `spicebox`: the binary (`spicebox!()` in the test).
    pub fn run_spicebox(self, spicebox: &str, disk: &std::path::Path) -> (String, PeerRun<D>) {
        let Scenario {
            device,
            tick,
            during,
            poll,
        } = self;
        let port = free_port();
        let spice = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(spicebox);
        cmd.args(["run", "--serial", "stdio", "--disable-ticketing", "--spice"])
            .arg(&spice)
            .arg(disk)
            .args(["-m", "512M"]);
        cmd.env(
            "SPICEBOX_LOG",
            std::env::var("SPICEBOX_BENCH_LOG").unwrap_or("warn,spicebox=info".into()),
        );
        let vm = SpiceboxVm::start_command(cmd);
        let listen = Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        let deadline = Instant::now() + STEP;
        let client = loop {
            match TestClient::connect(
                &listen,
                ClientOptions {
                    channels: vec![],
                    ..ClientOptions::default()
                },
            ) {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("SPICE connect: {e}\n{}", vm.stderr_text()),
            }
        };
        client.send_main(MAIN_ATTACH_CHANNELS, &[]).unwrap();
        client.wait(STEP, |s| s.channels_list.is_some()).unwrap();
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
        s.set_read_timeout(Some(poll)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let peer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = vec![0u8; 256 * 1024];
                let mut writer = s.try_clone().unwrap();
                pump(
                    HostPeer::new(device),
                    || vmc_read(&mut s, &mut buf, &mut pending),
                    |b| vmc_write(&mut writer, b),
                    tick,
                    &stop,
                )
            })
        };
        let _stop = StopOnDrop(stop);
        let serial = finish(vm, "spicebox", |vm| during(vm, Some((&listen, session))));
        client.close();
        (serial, peer.join().expect("peer thread"))
    }
}
