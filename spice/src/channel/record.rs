//! RECORD channel: the client's microphone into the guest's sound card,
//! offered when the machine has an [`AudioInPort`].
//!
//! When the guest starts capturing, the port calls [`AudioInControl::start`]
//! and the channel sends RECORD START (S16 stereo at 48 kHz); the client
//! answers MODE (raw, or Opus since the channel offers the OPUS capability as
//! spice-server does), START_MARK, then DATA frames, which the channel
//! decodes, converts to the guest's rate and hands to the port. STOP when the guest
//! stops. Client data that is malformed, or arrives while the guest is not
//! capturing, is dropped with a log line; the guest's card records silence
//! whenever no client sends anything.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tracing::{debug, warn};

use super::conn::violation;
use super::{next_message, ChannelKind, ChannelTask, End, Link, Next};
use crate::opus::OpusDecoder;
use crate::pcm::Converter;
use crate::port::{AudioInControl, AudioInPort, PcmFormat};
use crate::proto::audio::{
    CHANNELS, FMT_S16, FRAME_SAMPLES, MODE_OPUS, MODE_RAW, RATE, RECORD_CAP_OPUS,
};
use crate::proto::{channel as ch, record_msg, record_msgc};
use crate::wire::{Reader, Writer};

/// Largest DATA body taken: a raw frame of 480 stereo samples is 1924 bytes;
/// spice-gtk sends what its capture delivers, so allow some seconds' worth.
const MAX_MESSAGE: usize = 256 * 1024;

#[derive(Default)]
struct State {
    /// The guest's capture format, while it captures.
    capturing: Option<PcmFormat>,
    /// Bumped on every start/stop/volume change, so tasks send what is new.
    generation: u64,
    volume: Vec<u16>,
    mute: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Control(Arc<Shared>);

impl AudioInControl for Control {
    fn start(&self, format: PcmFormat) {
        let mut s = self.0.lock();
        s.capturing = Some(format);
        s.generation += 1;
        self.0.wake.notify_waiters();
    }

    fn stop(&self) {
        let mut s = self.0.lock();
        s.capturing = None;
        s.generation += 1;
        self.0.wake.notify_waiters();
    }

    fn volume(&self, volume: &[u16], mute: bool) {
        let mut s = self.0.lock();
        s.volume = volume.to_vec();
        s.mute = mute;
        s.generation += 1;
        self.0.wake.notify_waiters();
    }
}

pub struct RecordChannel {
    port: Arc<dyn AudioInPort>,
    shared: Arc<Shared>,
}

impl RecordChannel {
    pub fn new(port: Arc<dyn AudioInPort>) -> Self {
        let shared = Arc::new(Shared::default());
        port.attach(Arc::new(Control(shared.clone())));
        RecordChannel { port, shared }
    }
}

impl ChannelKind for RecordChannel {
    fn channel_type(&self) -> u8 {
        ch::RECORD
    }
    fn name(&self) -> &'static str {
        "record"
    }
    fn caps(&self) -> Vec<u32> {
        vec![1 << RECORD_CAP_OPUS]
    }
    fn max_message(&self) -> usize {
        MAX_MESSAGE
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(self.serve(link))
    }
}

/// How the client's DATA is coded (its MODE).
enum Mode {
    Raw,
    Opus(Box<OpusDecoder>),
    /// A mode not offered: its data is dropped.
    Other,
}

/// What this client has been told.
struct Client {
    generation: u64,
    started: Option<PcmFormat>,
    mode: Mode,
    converter: Option<Converter>,
}

impl RecordChannel {
    fn snapshot(&self) -> (u64, Option<PcmFormat>, Vec<u16>, bool) {
        let s = self.shared.lock();
        (s.generation, s.capturing, s.volume.clone(), s.mute)
    }

    async fn serve(&self, link: Link<'_>) -> Result<(), End> {
        let conn = link.conn;
        let mut client = Client {
            generation: u64::MAX,
            started: None,
            mode: Mode::Raw,
            converter: None,
        };
        link.reg.initialized();
        loop {
            let wake = self.shared.wake.notified();
            let (generation, capturing, volume, mute) = self.snapshot();
            if generation != client.generation {
                client.generation = generation;
                if !volume.is_empty() {
                    let mut w = Writer::new();
                    w.u8(volume.len().min(255) as u8);
                    for v in volume.iter().take(255) {
                        w.u16(*v);
                    }
                    conn.queue(record_msg::VOLUME, &w.finish());
                    conn.queue(record_msg::MUTE, &[u8::from(mute)]);
                }
                if capturing != client.started {
                    if client.started.is_some() {
                        conn.queue(record_msg::STOP, &[]);
                    }
                    if let Some(f) = capturing {
                        let mut w = Writer::new();
                        w.u32(CHANNELS).u16(FMT_S16).u32(RATE);
                        conn.queue(record_msg::START, &w.finish());
                        client.converter = Some(Converter::new(
                            RATE,
                            f.rate,
                            usize::from(f.channels.max(1)),
                            FRAME_SAMPLES,
                        ));
                    } else {
                        client.converter = None;
                    }
                    client.started = capturing;
                }
                conn.flush().await?;
            }
            let (t, body) = tokio::select! {
                _ = wake => continue,
                n = next_message(conn) => match n? {
                    Next::Closed => return Ok(()),
                    Next::Base => continue,
                    Next::Msg(t, b) => (t, b),
                },
            };
            let mut r = Reader::new(&body);
            match t {
                record_msgc::MODE => {
                    let _time = r.u32().ok_or_else(|| violation("short RECORD MODE"))?;
                    let mode = r.u16().ok_or_else(|| violation("short RECORD MODE"))?;
                    debug!(mode, "record: client's mode");
                    client.mode = match mode {
                        MODE_RAW => Mode::Raw,
                        MODE_OPUS => {
                            match OpusDecoder::new() {
                                Ok(d) => Mode::Opus(Box::new(d)),
                                Err(e) => {
                                    warn!("record: no Opus decoder ({e}); the client's data is dropped");
                                    Mode::Other
                                }
                            }
                        }
                        _ => {
                            warn!(
                                mode,
                                "record: client chose a mode not offered; its data is dropped"
                            );
                            Mode::Other
                        }
                    };
                }
                record_msgc::START_MARK => {
                    r.u32()
                        .ok_or_else(|| violation("short RECORD START_MARK"))?;
                }
                record_msgc::DATA => {
                    r.u32().ok_or_else(|| violation("short RECORD DATA"))?;
                    let pcm = r.bytes(body.len() - 4).unwrap_or_default();
                    self.data(&mut client, pcm);
                }
                _ => debug!(msg_type = t, "ignoring record message"),
            }
        }
    }

    /// Client data (S16 stereo at 48 kHz, raw or an Opus packet) to the
    /// guest's format.
    fn data(&self, client: &mut Client, data: &[u8]) {
        let (Some(format), Some(conv)) = (client.started, &mut client.converter) else {
            debug!(
                bytes = data.len(),
                "record: data while the guest is not capturing; dropped"
            );
            return;
        };
        let stereo: Vec<i16> = match &mut client.mode {
            Mode::Raw => {
                // Whole stereo frames only; a torn frame is the client's bug.
                let whole = data.len() / 4 * 4;
                if whole != data.len() {
                    warn!(
                        bytes = data.len(),
                        "record: DATA is not whole S16 stereo frames; tail dropped"
                    );
                }
                data[..whole]
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect()
            }
            Mode::Opus(decoder) => match decoder.decode(data) {
                Ok(pcm) => pcm.to_vec(),
                Err(e) => {
                    warn!("record: undecodable DATA dropped: {e}");
                    return;
                }
            },
            Mode::Other => return,
        };
        let input: Vec<i16> = if format.channels == 1 {
            stereo
                .chunks_exact(2)
                .map(|f| ((i32::from(f[0]) + i32::from(f[1])) / 2) as i16)
                .collect()
        } else {
            stereo
        };
        conv.push(&input);
        let mut out = vec![0i16; conv.pending()];
        let n = conv.take(&mut out);
        if n > 0 {
            self.port.captured(&out[..n]);
        }
    }
}
