//! A blocking SPICE test client (feature `test-client`, always in this crate's tests).
//!
//! [`TestClient::connect`] links MAIN, reads MAIN_INIT, asks for the channel list, then
//! links DISPLAY, INPUTS and CURSOR (or those in [`ClientOptions::channels`]) with the
//! session id. One reader thread per channel
//! decodes every server message strictly (see `decode.rs`), answers SET_ACK and PING,
//! ACKs the display window unless told not to, and keeps a copy of the primary surface
//! by applying DRAW_COPY. Tests wait on [`TestClient::wait`] for a condition on the
//! shared [`ClientState`].

pub mod decode;
pub mod link;
mod state;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::header::Framing;
use crate::proto::{self, channel as ch, inputs_msgc, main_msgc, msgc};
use crate::wire::Writer;
use crate::{Error, Listen};
use decode::{decode, ServerMsg};
use link::{default_common_caps, LinkParams, Linked};
use state::apply;
pub use state::{ClientState, ClientSurface, CursorPic};

/// A TCP or unix stream, blocking.
pub enum AnyStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AnyStream {
    pub fn connect(listen: &Listen) -> std::io::Result<AnyStream> {
        let s = match listen {
            Listen::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                AnyStream::Tcp(s)
            }
            Listen::Unix(p) => AnyStream::Unix(UnixStream::connect(p)?),
        };
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(s)
    }
    pub fn try_clone(&self) -> std::io::Result<AnyStream> {
        Ok(match self {
            AnyStream::Tcp(s) => AnyStream::Tcp(s.try_clone()?),
            AnyStream::Unix(s) => AnyStream::Unix(s.try_clone()?),
        })
    }
    pub fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        match self {
            AnyStream::Tcp(s) => s.set_read_timeout(d),
            AnyStream::Unix(s) => s.set_read_timeout(d),
        }
    }
    /// Half-close: the server sees EOF, replies can still be read.
    pub fn shutdown_write(&self) {
        let _ = match self {
            AnyStream::Tcp(s) => s.shutdown(Shutdown::Write),
            AnyStream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
    pub fn shutdown(&self) {
        let _ = match self {
            AnyStream::Tcp(s) => s.shutdown(Shutdown::Both),
            AnyStream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for AnyStream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            AnyStream::Tcp(s) => s.read(b),
            AnyStream::Unix(s) => s.read(b),
        }
    }
}

impl Write for AnyStream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            AnyStream::Tcp(s) => s.write(b),
            AnyStream::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
pub struct ClientOptions {
    pub password: String,
    /// Announce DISPLAY LZ4_COMPRESSION.
    pub lz4: bool,
    /// Announce DISPLAY COMPOSITE: draws DRAW_TRANSPARENT and
    /// DRAW_ALPHA_BLEND (spice-gtk does, spice-html5 does not).
    pub composite: bool,
    /// Announce MINI_HEADER (spice-gtk always does).
    pub mini_header: bool,
    /// Which of DISPLAY, INPUTS and CURSOR to link after MAIN (all by default).
    pub channels: Vec<u8>,
    /// MAIN channel caps (none by default; spice-gtk sends all four).
    pub main_caps: Vec<u32>,
    /// The DISPLAY (and CURSOR) channel id to link: the display head.
    pub display_id: u8,
    /// DISPLAY_INIT's pixmap cache size in pixels (spice-gtk: 80 MiB / 4).
    pub pixmap_cache: u64,
    /// DISPLAY_INIT's GLZ window in pixels (spice-gtk: 16 Mpixels at most;
    /// spice-html5: 0, no GLZ).
    pub glz_window: i32,
    /// A simulated slow link on the main and display channels: after each
    /// message the reader waits as long as its bytes take at this rate
    /// (bits/s), so the client's PONGs and ACKs come as late as over such a
    /// link (main: the session's net test; display: its acks).
    pub link_bps: Option<f64>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            password: String::new(),
            lz4: true,
            composite: true,
            mini_header: true,
            channels: vec![ch::DISPLAY, ch::INPUTS, ch::CURSOR],
            main_caps: vec![],
            display_id: 0,
            pixmap_cache: 20 * 1024 * 1024,
            glz_window: 16 * 1024 * 1024,
            link_bps: None,
        }
    }
}

type Shared = Arc<(Mutex<ClientState>, Condvar)>;

/// One linked channel: the writer side; the reader thread owns the other clone.
struct Chan {
    writer: Arc<Mutex<(AnyStream, Framing)>>,
    /// (window from SET_ACK, messages received and not yet acknowledged)
    ack: Arc<Mutex<(Option<u32>, u32)>>,
    stream: AnyStream,
    reader: Option<JoinHandle<()>>,
}

impl Chan {
    fn send(&self, t: u16, body: &[u8]) -> Result<(), Error> {
        send_on(&self.writer, t, body)
    }
}

fn send_on(w: &Mutex<(AnyStream, Framing)>, t: u16, body: &[u8]) -> Result<(), Error> {
    let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    g.1.encode(&mut out, t, body);
    g.0.write_all(&out)?;
    Ok(())
}

pub struct TestClient {
    state: Shared,
    auto_ack: Arc<AtomicBool>,
    main: Option<Chan>,
    display: Option<Chan>,
    inputs: Option<Chan>,
    cursor: Option<Chan>,
    /// The display channel's simulated link rate, f64 bits (0: none).
    link_bps: Arc<AtomicU64>,
}

/// Links one channel (id 0) and returns the stream and what the server advertised.
pub fn link_channel(
    listen: &Listen,
    connection_id: u32,
    channel_type: u8,
    channel_caps: Vec<u32>,
    opts: &ClientOptions,
) -> Result<(AnyStream, Linked), Error> {
    link_channel_id(listen, connection_id, channel_type, 0, channel_caps, opts)
}

/// `link_channel` for any channel id.
pub fn link_channel_id(
    listen: &Listen,
    connection_id: u32,
    channel_type: u8,
    channel_id: u8,
    channel_caps: Vec<u32>,
    opts: &ClientOptions,
) -> Result<(AnyStream, Linked), Error> {
    let mut s = AnyStream::connect(listen)?;
    let mut common = default_common_caps();
    if !opts.mini_header {
        common[0] &= !(1 << proto::common_cap::MINI_HEADER);
    }
    let linked = link::link(
        &mut s,
        &LinkParams {
            connection_id,
            channel_type,
            channel_id,
            common_caps: common,
            channel_caps,
            password: &opts.password,
        },
    )?;
    Ok((s, linked))
}

impl TestClient {
    /// Links display, inputs and cursor (or those in `opts.channels`) to an existing
    /// session, without a main channel of its own. The server links each channel once
    /// per session, so these must be ones the session does not have yet.
    pub fn attach(
        listen: &Listen,
        session_id: u32,
        opts: ClientOptions,
    ) -> Result<TestClient, Error> {
        let mut c = TestClient {
            state: Arc::default(),
            auto_ack: Arc::new(AtomicBool::new(true)),
            main: None,
            display: None,
            inputs: None,
            cursor: None,
            link_bps: Arc::new(AtomicU64::new(opts.link_bps.map_or(0, f64::to_bits))),
        };
        c.state().session_id = session_id;
        c.link_others(listen, &opts)?;
        Ok(c)
    }

    /// Links main, display, inputs and cursor.
    pub fn connect(listen: &Listen, opts: ClientOptions) -> Result<TestClient, Error> {
        let state: Shared = Arc::default();
        state.0.lock().unwrap().no_cache_replace = !opts.composite;
        let auto_ack = Arc::new(AtomicBool::new(true));
        let mini = |l: &Linked| l.mini_header() && opts.mini_header;
        let link_bps = Arc::new(AtomicU64::new(opts.link_bps.map_or(0, f64::to_bits)));
        let (s, l) = link_channel(listen, 0, ch::MAIN, opts.main_caps.clone(), &opts)?;
        let main = start_chan(
            s,
            ch::MAIN,
            mini(&l),
            &state,
            &auto_ack,
            Some(link_bps.clone()),
        )?;
        let mut c = TestClient {
            state,
            auto_ack,
            main: Some(main),
            display: None,
            inputs: None,
            cursor: None,
            link_bps,
        };
        c.wait(Duration::from_secs(20), |s| s.session_id != 0)?;
        c.send_main(main_msgc::ATTACH_CHANNELS, &[])?;
        c.wait(Duration::from_secs(20), |s| s.channels_list.is_some())?;
        c.link_others(listen, &opts)?;
        Ok(c)
    }

    fn link_others(&mut self, listen: &Listen, opts: &ClientOptions) -> Result<(), Error> {
        let c = self;
        let mini = |l: &Linked| l.mini_header() && opts.mini_header;
        let id = c.state().session_id;
        let caps = u32::from(opts.lz4) << proto::DISPLAY_CAP_LZ4_COMPRESSION
            | u32::from(opts.composite) << proto::DISPLAY_CAP_COMPOSITE;
        let lz4 = if caps != 0 { vec![caps] } else { vec![] };
        if opts.channels.contains(&ch::DISPLAY) {
            let (s, l) = link_channel_id(listen, id, ch::DISPLAY, opts.display_id, lz4, opts)?;
            let display = start_chan(
                s,
                ch::DISPLAY,
                mini(&l),
                &c.state,
                &c.auto_ack,
                Some(c.link_bps.clone()),
            )?;
            // spice-gtk's DISPLAY_INIT: cache id 1, its size, GLZ dictionary 1.
            let mut w = Writer::new();
            w.u8(1).u64(opts.pixmap_cache).u8(1).i32(opts.glz_window);
            display.send(proto::display_msgc::INIT, &w.finish())?;
            c.display = Some(display);
        }
        if opts.channels.contains(&ch::INPUTS) {
            let (s, l) = link_channel(listen, id, ch::INPUTS, vec![], opts)?;
            c.inputs = Some(start_chan(
                s,
                ch::INPUTS,
                mini(&l),
                &c.state,
                &c.auto_ack,
                None,
            )?);
        }
        if opts.channels.contains(&ch::CURSOR) {
            let (s, l) = link_channel_id(listen, id, ch::CURSOR, opts.display_id, vec![], opts)?;
            c.cursor = Some(start_chan(
                s,
                ch::CURSOR,
                mini(&l),
                &c.state,
                &c.auto_ack,
                None,
            )?);
        }
        Ok(())
    }

    pub fn state(&self) -> MutexGuard<'_, ClientState> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `pred` holds. Fails on timeout or if a decoding error was recorded.
    pub fn wait(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&ClientState) -> bool,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut g = self.state();
        loop {
            if !g.errors.is_empty() {
                return Err(Error::Protocol(g.errors.join("; ")));
            }
            if pred(&g) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!("state: {:?}", Summary(&g))));
            }
            g = self
                .state
                .1
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Changes the simulated link rate (None: no limit).
    pub fn set_link_bps(&self, bps: Option<f64>) {
        let bits = bps.map_or(0, f64::to_bits);
        self.link_bps.store(bits, Ordering::Relaxed);
    }

    /// Stops (false) or resumes (true) display/cursor ACKs; resuming sends what is owed.
    pub fn set_auto_ack(&self, on: bool) {
        self.auto_ack.store(on, Ordering::SeqCst);
        if on {
            for c in [&self.display, &self.cursor].into_iter().flatten() {
                let _ = settle_acks(&c.writer, &c.ack);
            }
        }
    }

    fn inputs(&self) -> Result<&Chan, Error> {
        self.inputs
            .as_ref()
            .ok_or_else(|| Error::Protocol("no inputs channel".into()))
    }

    pub fn key_down(&self, code: u32) -> Result<(), Error> {
        self.inputs()?
            .send(inputs_msgc::KEY_DOWN, &code.to_le_bytes())
    }
    pub fn key_up(&self, code: u32) -> Result<(), Error> {
        self.inputs()?
            .send(inputs_msgc::KEY_UP, &code.to_le_bytes())
    }
    pub fn key_scancode(&self, bytes: &[u8]) -> Result<(), Error> {
        self.inputs()?.send(inputs_msgc::KEY_SCANCODE, bytes)
    }
    pub fn key_modifiers(&self, modifiers: u16) -> Result<(), Error> {
        self.inputs()?
            .send(inputs_msgc::KEY_MODIFIERS, &modifiers.to_le_bytes())
    }
    pub fn motion(&self, dx: i32, dy: i32, buttons: u16) -> Result<(), Error> {
        let mut w = Writer::new();
        w.i32(dx).i32(dy).u16(buttons);
        self.inputs()?.send(inputs_msgc::MOUSE_MOTION, &w.finish())
    }
    pub fn press(&self, button: u8, buttons: u16) -> Result<(), Error> {
        let mut w = Writer::new();
        w.u8(button).u16(buttons);
        self.inputs()?.send(inputs_msgc::MOUSE_PRESS, &w.finish())
    }
    /// MOUSE_POSITION (client mouse mode): pixels of display `display`'s surface.
    pub fn position(&self, x: u32, y: u32, buttons: u16, display: u8) -> Result<(), Error> {
        let mut w = Writer::new();
        w.u32(x).u32(y).u16(buttons).u8(display);
        self.inputs()?
            .send(inputs_msgc::MOUSE_POSITION, &w.finish())
    }
    pub fn release(&self, button: u8, buttons: u16) -> Result<(), Error> {
        let mut w = Writer::new();
        w.u8(button).u16(buttons);
        self.inputs()?.send(inputs_msgc::MOUSE_RELEASE, &w.finish())
    }
    /// Sends any message on the main channel (e.g. MOUSE_MODE_REQUEST).
    pub fn send_main(&self, t: u16, body: &[u8]) -> Result<(), Error> {
        self.send_raw(ch::MAIN, t, body)
    }
    /// Sends any message on the channel of the given type (malformed ones too).
    pub fn send_raw(&self, channel: u8, t: u16, body: &[u8]) -> Result<(), Error> {
        let c = match channel {
            ch::MAIN => self.main.as_ref(),
            ch::DISPLAY => self.display.as_ref(),
            ch::INPUTS => self.inputs.as_ref(),
            _ => self.cursor.as_ref(),
        };
        c.ok_or_else(|| Error::Protocol(format!("no channel {channel}")))?
            .send(t, body)
    }

    /// Closes every channel and joins the reader threads.
    pub fn close(mut self) {
        self.close_all();
    }

    fn close_all(&mut self) {
        for c in [
            self.main.as_mut(),
            self.display.as_mut(),
            self.inputs.as_mut(),
            self.cursor.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            c.stream.shutdown();
            if let Some(h) = c.reader.take() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.close_all();
    }
}

struct Summary<'a>(&'a ClientState);
impl std::fmt::Debug for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        write!(
            f,
            "session {} surface {:?} creates {} draws {} marks {} closed {:?} errors {:?}",
            s.session_id,
            s.surface.as_ref().map(|s| (s.width, s.height)),
            s.surface_creates,
            s.draw_copies,
            s.marks,
            s.closed,
            s.errors
        )
    }
}

fn start_chan(
    stream: AnyStream,
    channel: u8,
    mini: bool,
    state: &Shared,
    auto_ack: &Arc<AtomicBool>,
    bps: Option<Arc<AtomicU64>>,
) -> Result<Chan, Error> {
    // No read timeout on the reader thread: a quiet channel is normal.
    stream.set_read_timeout(None)?;
    let writer = Arc::new(Mutex::new((stream.try_clone()?, Framing::new(mini))));
    let rd = stream.try_clone()?;
    let ack = Arc::new(Mutex::new((None, 0)));
    let (st, w, a, auto) = (state.clone(), writer.clone(), ack.clone(), auto_ack.clone());
    let reader = std::thread::Builder::new()
        .name(format!("spice-client-{channel}"))
        .spawn(move || read_loop(rd, channel, mini, st, w, a, auto, bps))?;
    Ok(Chan {
        writer,
        ack,
        stream,
        reader: Some(reader),
    })
}

/// spice-gtk's rule: one ACK per `window` messages received.
fn settle_acks(
    writer: &Mutex<(AnyStream, Framing)>,
    ack: &Mutex<(Option<u32>, u32)>,
) -> Result<(), Error> {
    let mut a = ack.lock().unwrap_or_else(|e| e.into_inner());
    if let (Some(w), n) = *a {
        let owed = n / w.max(1);
        for _ in 0..owed {
            send_on(writer, msgc::ACK, &[])?;
        }
        a.1 -= owed * w.max(1);
    }
    Ok(())
}

/// Largest server message the client accepts (a 4K raw frame is ~33 MB).
const MAX_SERVER_MSG: u32 = 128 << 20;

#[allow(clippy::too_many_arguments)]
fn read_loop(
    mut s: AnyStream,
    channel: u8,
    mini: bool,
    state: Shared,
    writer: Arc<Mutex<(AnyStream, Framing)>>,
    ack: Arc<Mutex<(Option<u32>, u32)>>,
    auto_ack: Arc<AtomicBool>,
    bps: Option<Arc<AtomicU64>>,
) {
    let mut framing = Framing::new(mini);
    let mut hdr = [0u8; crate::header::FULL_HEADER_SIZE];
    let result: Result<(), String> = (|| loop {
        let hs = framing.header_size();
        if s.read_exact(&mut hdr[..hs]).is_err() {
            return Ok(());
        }
        let (t, size) = framing.decode(&hdr[..hs]);
        if size > MAX_SERVER_MSG {
            return Err(format!("server message {t} of {size} bytes"));
        }
        let mut body = vec![0u8; size as usize];
        if s.read_exact(&mut body).is_err() {
            return Err(format!("connection closed inside message {t}"));
        }
        let rate = bps.as_ref().map_or(0, |b| b.load(Ordering::Relaxed));
        if rate != 0 {
            let bits = (hs + body.len()) as f64 * 8.0;
            let rate = f64::from_bits(rate).max(1.0);
            std::thread::sleep(Duration::from_secs_f64(bits / rate));
        }
        let m = decode(channel, t, &body)?;
        // Replies may fail when the server has just closed the connection (it may close
        // at any time: session replaced, shutdown); the next read then ends the loop.
        match &m {
            ServerMsg::SetAck {
                generation,
                window: w,
            } => {
                let _ = send_on(&writer, msgc::ACK_SYNC, &generation.to_le_bytes());
                *ack.lock().unwrap_or_else(|e| e.into_inner()) = (Some(*w), 0);
            }
            _ => {
                // Every message but SET_ACK counts, PINGs too (as spice-gtk).
                if let ServerMsg::Ping { id, timestamp } = &m {
                    let mut w = Writer::new();
                    w.u32(*id).u64(*timestamp);
                    let _ = send_on(&writer, msgc::PONG, &w.finish());
                }
                ack.lock().unwrap_or_else(|e| e.into_inner()).1 += 1;
                if auto_ack.load(Ordering::SeqCst) {
                    let _ = settle_acks(&writer, &ack);
                }
            }
        }
        let (lock, cv) = &*state;
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        apply(&mut g, channel, m)?;
        cv.notify_all();
    })();
    let (lock, cv) = &*state;
    let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = result {
        g.errors.push(format!("channel {channel}: {e}"));
    }
    g.closed.push(channel);
    cv.notify_all();
}
