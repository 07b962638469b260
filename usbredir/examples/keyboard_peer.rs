//! The usbredir test peer over a plain TCP socket: a HID keyboard that types
//! "a" once a second, for QEMU's usb-redir chardev or any usb-guest.
//!
//!   cargo run -p usbredir --example keyboard_peer -- 127.0.0.1:4000
//!   qemu-system-x86_64 ... -device qemu-xhci \
//!       -chardev socket,id=r,host=127.0.0.1,port=4000 -device usb-redir,chardev=r

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use usbredir::peer::{HostPeer, Keyboard};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4000".into());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("keyboard peer: waiting for a usb-guest on {addr}");
    let (mut sock, from) = listener.accept()?;
    eprintln!("keyboard peer: {from} connected");
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut peer = HostPeer::new(Keyboard::default());
    let mut buf = vec![0u8; 64 * 1024];
    let mut next_key = Instant::now() + Duration::from_secs(1);
    loop {
        let out = peer.take_output();
        if !out.is_empty() {
            sock.write_all(&out)?;
        }
        match sock.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if let Err(e) = peer.received(&buf[..n]) {
                    eprintln!("keyboard peer: protocol error: {e}");
                    return Ok(());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= next_key {
            // 'a' down, then all keys up.
            peer.report(0x81, &[0, 0, 4, 0, 0, 0, 0, 0]).ok();
            peer.report(0x81, &[0; 8]).ok();
            next_key = Instant::now() + Duration::from_secs(1);
        }
    }
}
