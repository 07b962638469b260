//! The USB stick of the Linux guest's usbdisk action: the in-repo usbredir
//! peer's bulk-only mass-storage device (`usbredir::peer::storage`), run on a
//! thread for the whole boot, attached through QEMU's `usb-redir` chardev
//! (the peer listens on TCP) or spicebox's SPICE usbredir channel 0 (the peer
//! is a SPICE client's channel).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spice::client::{link_channel_id, ClientOptions, TestClient};
use spice::Listen;
use usbredir::peer::storage::{MassStorage, SECTOR_SIZE};
use usbredir::peer::HostPeer;

/// The stick's size: small, the guest kernel moves every byte at emulated
/// speed.
const SECTORS: u32 = 64;
/// The sector the guest reads and reports (the usbdisk action's `skip=`).
pub const USBDISK_LBA: usize = 40;
const USBREDIR: u8 = 9;
const MAIN_ATTACH_CHANNELS: u16 = 104;
const SPICEVMC_DATA: u16 = 101;
/// How long the peer waits for bytes before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);
const CONNECT: Duration = Duration::from_secs(30);

/// What sector [`USBDISK_LBA`] of the stick holds.
pub fn expected_sector() -> Vec<u8> {
    let disk = MassStorage::new(SECTORS);
    disk.disk()[USBDISK_LBA * SECTOR_SIZE..(USBDISK_LBA + 1) * SECTOR_SIZE].to_vec()
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A running peer; dropping it stops the thread.
pub struct UsbStick {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<u32>, String>>>,
    /// spicebox: the SPICE session the usbredir channel belongs to.
    client: Option<TestClient>,
}

impl UsbStick {
    /// QEMU's side: a TCP listener for `-chardev socket,host=127.0.0.1,port=`
    /// (the returned port); the peer runs once QEMU connects.
    pub fn for_qemu() -> (UsbStick, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let mut sock = loop {
                match listener.accept() {
                    Ok((sock, _)) => break sock,
                    Err(e) if is_timeout(&e) && !flag.load(Ordering::SeqCst) => {
                        std::thread::sleep(POLL)
                    }
                    Err(e) => return Err(format!("QEMU did not connect its usb-redir: {e}")),
                }
            };
            sock.set_nonblocking(false).unwrap();
            sock.set_read_timeout(Some(POLL)).unwrap();
            let mut writer = sock.try_clone().unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            pump(
                || match sock.read(&mut buf) {
                    Ok(0) => None,
                    Ok(n) => Some(buf[..n].to_vec()),
                    Err(e) if is_timeout(&e) => Some(Vec::new()),
                    Err(_) => None,
                },
                |b| writer.write_all(b),
                &flag,
            )
        });
        let stick = UsbStick {
            stop,
            thread: Some(thread),
            client: None,
        };
        (stick, port)
    }

    /// spicebox's side: a SPICE session (retried while spicebox starts) with
    /// usbredir channel 0 linked, its SPICEVMC_DATA messages carrying the
    /// peer's bytes.
    pub fn for_spicebox(port: u16) -> UsbStick {
        let listen = Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        let deadline = Instant::now() + CONNECT;
        let options = ClientOptions {
            channels: vec![],
            ..ClientOptions::default()
        };
        let client = loop {
            match TestClient::connect(&listen, options.clone()) {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("spicebox: SPICE connect for the USB stick: {e}"),
            }
        };
        client.send_main(MAIN_ATTACH_CHANNELS, &[]).unwrap();
        client
            .wait(CONNECT, |s| s.channels_list.is_some())
            .expect("spicebox: no channel list");
        let session = client.state().session_id;
        let (mut s, linked) =
            link_channel_id(&listen, session, USBREDIR, 0, vec![], &options).unwrap();
        assert!(linked.mini_header());
        s.set_read_timeout(Some(POLL)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut writer = s.try_clone().unwrap();
            pump(
                || {
                    match s.read(&mut buf) {
                        Ok(0) => return None,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(e) if is_timeout(&e) => {}
                        Err(_) => return None,
                    }
                    // Mini-header messages (u16 type, u32 size): the DATA
                    // payloads are the usbredir stream.
                    let mut out = Vec::new();
                    while pending.len() >= 6 {
                        let kind = u16::from_le_bytes([pending[0], pending[1]]);
                        let size =
                            u32::from_le_bytes([pending[2], pending[3], pending[4], pending[5]])
                                as usize;
                        if pending.len() < 6 + size {
                            break;
                        }
                        if kind == SPICEVMC_DATA {
                            out.extend_from_slice(&pending[6..6 + size]);
                        }
                        pending.drain(..6 + size);
                    }
                    Some(out)
                },
                |b| {
                    let mut m = SPICEVMC_DATA.to_le_bytes().to_vec();
                    m.extend((b.len() as u32).to_le_bytes());
                    m.extend_from_slice(b);
                    writer.write_all(&m)
                },
                &flag,
            )
        });
        UsbStick {
            stop,
            thread: Some(thread),
            client: Some(client),
        }
    }

    /// Stops the peer (and closes the SPICE session); returns the tags of
    /// the command blocks the stick answered, or why the peer failed.
    pub fn finish(mut self) -> Result<Vec<u32>, String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = self.client.take() {
            c.close();
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the peer thread panicked".into()),
            None => Err("already finished".into()),
        }
    }
}

impl Drop for UsbStick {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Runs the peer until `stop` or the connection closes: `read` gives the
/// usbredir bytes received (empty on a timeout, None once closed), `write`
/// sends the peer's.
fn pump(
    mut read: impl FnMut() -> Option<Vec<u8>>,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
    stop: &AtomicBool,
) -> Result<Vec<u32>, String> {
    let mut peer = HostPeer::new(MassStorage::new(SECTORS));
    while !stop.load(Ordering::SeqCst) {
        let out = peer.take_output();
        if !out.is_empty() && write(&out).is_err() {
            break;
        }
        match read() {
            Some(bytes) => peer
                .received(&bytes)
                .map_err(|e| format!("the VMM's usbredir packets: {e}"))?,
            None => break,
        }
    }
    Ok(peer.device.tags.clone())
}
