//! Host ends of COM1: stdio (raw terminal), a file, or a listening unix socket.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};

use crate::cli::SerialSpec;

/// Where guest output goes, and a way to start feeding host input to the guest.
pub struct SerialBackend {
    pub out: Box<dyn Write + Send>,
    input: Input,
}

enum Input {
    None,
    Stdin,
    Unix(UnixListener, Arc<Mutex<Option<UnixStream>>>),
}

/// Writes to whichever client is connected to the unix socket; drops output otherwise.
struct SocketOut(Arc<Mutex<Option<UnixStream>>>);

impl Write for SocketOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut g = self.0.lock().unwrap();
        if let Some(s) = g.as_mut() {
            if s.write_all(buf).is_err() {
                *g = None;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Unbuffered stdout: serial output must appear as the guest writes it.
struct Stdout {
    /// The next byte starts a line: its write is stamped for `usbtime`
    /// profiling (a guest's report line leaving the VMM, scripts/bench_usb).
    line_start: bool,
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.line_start {
            tracing::debug!(target: "usbtime", "serial line");
        }
        self.line_start = buf.last() == Some(&b'\n');
        let mut o = io::stdout().lock();
        o.write_all(buf)?;
        o.flush()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

impl SerialBackend {
    pub fn open(spec: &SerialSpec) -> io::Result<Self> {
        Ok(match spec {
            SerialSpec::None => SerialBackend {
                out: Box::new(io::sink()),
                input: Input::None,
            },
            SerialSpec::Stdio => SerialBackend {
                out: Box::new(Stdout { line_start: true }),
                input: Input::Stdin,
            },
            SerialSpec::File(p) => SerialBackend {
                out: Box::new(File::create(p)?),
                input: Input::None,
            },
            SerialSpec::Unix(p) => {
                remove_stale_socket(p);
                let listener = UnixListener::bind(p)?;
                let client = Arc::new(Mutex::new(None));
                SerialBackend {
                    out: Box::new(SocketOut(client.clone())),
                    input: Input::Unix(listener, client),
                }
            }
        })
    }

    /// Start the thread that reads host input and hands it to `deliver`.
    pub fn spawn_input(&mut self, deliver: impl Fn(&[u8]) + Send + 'static) {
        match std::mem::replace(&mut self.input, Input::None) {
            Input::None => {}
            Input::Stdin => {
                std::thread::Builder::new()
                    .name("serial-stdin".into())
                    .spawn(move || {
                        let mut buf = [0u8; 64];
                        let mut stdin = io::stdin();
                        while let Ok(n) = stdin.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            deliver(&buf[..n]);
                        }
                    })
                    .expect("spawn serial input thread");
            }
            Input::Unix(listener, client) => {
                std::thread::Builder::new()
                    .name("serial-unix".into())
                    .spawn(move || {
                        for conn in listener.incoming() {
                            let Ok(mut conn) = conn else { continue };
                            debug!("serial client connected");
                            match conn.try_clone() {
                                Ok(w) => *client.lock().unwrap() = Some(w),
                                Err(e) => {
                                    warn!("serial socket: {e}");
                                    continue;
                                }
                            }
                            let mut buf = [0u8; 64];
                            while let Ok(n) = conn.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                deliver(&buf[..n]);
                            }
                            *client.lock().unwrap() = None;
                        }
                    })
                    .expect("spawn serial socket thread");
            }
        }
    }
}

fn remove_stale_socket(p: &Path) {
    if UnixStream::connect(p).is_err() {
        let _ = std::fs::remove_file(p);
    }
}

/// Puts a terminal on stdin into raw-ish mode (no echo, no line buffering, but
/// Ctrl-C still signals us) and restores it when dropped.
pub struct RawTerminal {
    saved: Option<libc::termios>,
}

impl RawTerminal {
    pub fn enable() -> Self {
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: isatty/tcgetattr only read the fd's state into our buffer.
        let saved = unsafe {
            if libc::isatty(0) != 1 || libc::tcgetattr(0, t.as_mut_ptr()) != 0 {
                return RawTerminal { saved: None };
            }
            t.assume_init()
        };
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::IEXTEN);
        raw.c_iflag &= !(libc::ICRNL | libc::IXON);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `raw` is a fully initialised termios derived from the current one.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) };
        RawTerminal { saved: Some(saved) }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restores the attributes read in `enable`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

pub fn stdin_is_terminal() -> bool {
    // SAFETY: isatty has no memory effects.
    unsafe { libc::isatty(0) == 1 }
}
