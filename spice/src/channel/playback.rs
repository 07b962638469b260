//! PLAYBACK channel: the guest's sound card output to the client, offered when
//! the machine has an [`AudioOutPort`].
//!
//! The device pushes PCM at its own pace (its DMA clock) through the
//! [`AudioOutSink`] this channel gives it; the sink converts it to S16 stereo
//! at 48 kHz, cuts 10 ms frames (what spice-server sends; each stream starts
//! with 5 ms of silence so that its first frame is out 5 ms after the card's
//! first samples and the rest on the card's 10 ms ticks), and queues them
//! for the client's task, which stamps each DATA with the multimedia time at
//! which the device handed its samples over (as spice-server stamps a frame
//! when it arrives from the card, not when it is sent): the same clock as
//! MAIN_INIT's and MULTI_MEDIA_TIME's, which spice-gtk sets its session
//! clock from and schedules video against, so a client that fell behind
//! keeps audio and video in step. With no client the samples are dropped; a client that
//! falls behind loses the oldest frames, never stalls the device.
//!
//! Messages, as spice-server sends them: MODE then START when the guest
//! starts, DATA frames, STOP when it stops; VOLUME and MUTE on change for a
//! client with the VOLUME capability. No PLAYBACK LATENCY: spice-server
//! sends one only while audio plays *and* a video stream's client reports
//! ask for more delay (`reds_set_client_mm_time_latency` from
//! video-stream's `update_client_playback_delay`), which spicebox's display
//! channel has no use for. The message sets spice-gtk's `min-latency`, the
//! audio a client should keep buffered (200 ms after each START otherwise);
//! a client that honours it would add every extra millisecond to what the
//! user hears, while the session clock spice-gtk derives from audio (last
//! DATA's stamp minus the audio pipeline's own delay) does not depend on
//! it. A client that announces the OPUS
//! capability (spice-gtk built with Opus, spice-html5) gets mode OPUS
//! unless playback compression is off: each
//! 10 ms frame goes as one Opus packet, encoded on the client's task.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::doorbell::Doorbell;
use super::{next_message, ChannelKind, ChannelTask, End, Link, Next};
use crate::opus::OpusEncoder;
use crate::pcm::Converter;
use crate::port::{AudioOutPort, AudioOutSink, Full, PcmFormat};
use crate::proto::audio::{
    CHANNELS, FMT_S16, FRAME_SAMPLES, MODE_OPUS, MODE_RAW, PLAYBACK_CAP_OPUS, PLAYBACK_CAP_VOLUME,
    RATE,
};
use crate::proto::{channel as ch, has_cap, playback_msg};
use crate::wire::Writer;

/// Frames queued for a client before the oldest are dropped: 200 ms.
const MAX_QUEUED: usize = 20;

enum Out {
    /// The stream started (or the client joined it) at this instant: START
    /// is stamped with it, so it never postdates the first DATA's stamp.
    Start(Instant),
    /// One 10 ms frame, interleaved stereo at 48 kHz, and when the device
    /// handed over the samples that completed it.
    Data(Vec<i16>, Instant),
    Stop,
    Volume,
}

#[derive(Default)]
struct State {
    /// The task serving the current client (0: none).
    client: u64,
    next_client: u64,
    /// The guest's stream, while it plays.
    playing: Option<PcmFormat>,
    converter: Option<Converter>,
    volume: Vec<u16>,
    mute: bool,
    queue: VecDeque<Out>,
    dropped: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Rung by the device's thread once the state lock is released (rung
    /// under it, the woken task blocked on the lock straight away: two more
    /// context switches a frame).
    wake: Doorbell,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `out` for the client, if there is one, and wakes its task.
    fn push(&self, mut s: MutexGuard<'_, State>, out: Out) {
        if s.client != 0 {
            s.queue.push_back(out);
            drop(s);
            self.wake.ring();
        }
    }
}

/// The sink side, handed to the port.
struct Sink(Arc<Shared>);

impl AudioOutSink for Sink {
    fn start(&self, format: PcmFormat) {
        let mut s = self.0.lock();
        s.converter = Some(stream_converter(format));
        s.playing = Some(format);
        self.0.push(s, Out::Start(Instant::now()));
    }

    fn frames(&self, samples: &[i16]) -> Result<(), Full> {
        let mut guard = self.0.lock();
        let s = &mut *guard;
        if s.client == 0 {
            return Ok(());
        }
        let Some(format) = s.playing else {
            return Ok(());
        };
        let Some(conv) = &mut s.converter else {
            return Ok(());
        };
        if format.channels == 1 {
            let stereo: Vec<i16> = samples.iter().flat_map(|&v| [v, v]).collect();
            conv.push(&stereo);
        } else {
            conv.push(samples);
        }
        let mut full = false;
        let arrived = Instant::now();
        let mut queued = false;
        while let Some(frame) = conv.frame() {
            s.queue.push_back(Out::Data(frame, arrived));
            queued = true;
        }
        if !queued {
            // No whole frame yet: nothing for the client's task to do, so it
            // is not woken (half the device's ticks, at some guest rates).
            return Ok(());
        }
        while s
            .queue
            .iter()
            .filter(|o| matches!(o, Out::Data(..)))
            .count()
            > MAX_QUEUED
        {
            if let Some(i) = s.queue.iter().position(|o| matches!(o, Out::Data(..))) {
                s.queue.remove(i);
                s.dropped += 1;
                full = true;
            }
        }
        let dropped = s.dropped;
        drop(guard);
        self.0.wake.ring();
        if full {
            tracing::debug!(dropped, "playback client behind; frames dropped");
            return Err(Full);
        }
        Ok(())
    }

    fn stop(&self) {
        let mut s = self.0.lock();
        s.playing = None;
        s.converter = None;
        self.0.push(s, Out::Stop);
    }

    fn volume(&self, volume: &[u16], mute: bool) {
        let mut s = self.0.lock();
        s.volume = volume.to_vec();
        s.mute = mute;
        self.0.push(s, Out::Volume);
    }
}

pub struct PlaybackChannel {
    port: Arc<dyn AudioOutPort>,
    shared: Arc<Shared>,
    /// Opus for clients with the OPUS cap; off: raw for all.
    compression: bool,
}

impl PlaybackChannel {
    pub fn new(port: Arc<dyn AudioOutPort>, compression: bool) -> Self {
        let shared = Arc::new(Shared::default());
        port.attach(Arc::new(Sink(shared.clone())));
        PlaybackChannel {
            port,
            shared,
            compression,
        }
    }
}

impl ChannelKind for PlaybackChannel {
    fn channel_type(&self) -> u8 {
        ch::PLAYBACK
    }
    fn name(&self) -> &'static str {
        "playback"
    }
    fn caps(&self) -> Vec<u32> {
        vec![(1 << PLAYBACK_CAP_VOLUME) | (1 << PLAYBACK_CAP_OPUS)]
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(self.serve(link))
    }
}

/// Ends the client's registration however its task ends.
struct Registered<'a> {
    channel: &'a PlaybackChannel,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut s = self.channel.shared.lock();
        if s.client == self.id {
            s.client = 0;
            s.queue.clear();
            s.converter = None;
            drop(s);
            self.channel.port.client_attached(false);
        }
    }
}

/// The converter for a stream from its start (or from the moment a client
/// joins it): to 48 kHz stereo in 10 ms frames, primed with half a frame of
/// silence so that the first frame leaves 5 ms after the device's first
/// samples and later ones on the device's ticks (see
/// [`Converter::prime_half_frame`]).
fn stream_converter(format: PcmFormat) -> Converter {
    let channels = usize::from(format.channels.max(1));
    let mut c = Converter::new(format.rate, RATE, channels, FRAME_SAMPLES);
    c.prime_half_frame();
    c
}

fn volume_body(volume: &[u16]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(volume.len().min(255) as u8);
    for v in volume.iter().take(255) {
        w.u16(*v);
    }
    w.finish()
}

impl PlaybackChannel {
    /// Moves the client's queue into `batch`; returns the mixer state.
    fn take_queue(&self, batch: &mut Vec<Out>) -> (Vec<u16>, bool) {
        let mut s = self.shared.lock();
        batch.extend(s.queue.drain(..));
        (s.volume.clone(), s.mute)
    }

    async fn serve(&self, link: Link<'_>) -> Result<(), End> {
        let conn = link.conn;
        let volume_cap = has_cap(&link.req.channel_caps, PLAYBACK_CAP_VOLUME);
        // Opus when the client can decode it, as spice-server with playback
        // compression on (its default).
        let mut opus = if self.compression && has_cap(&link.req.channel_caps, PLAYBACK_CAP_OPUS) {
            OpusEncoder::new()
                .inspect_err(|e| tracing::warn!("playback: no Opus encoder ({e}); raw"))
                .ok()
        } else {
            None
        };
        let mode = if opus.is_some() { MODE_OPUS } else { MODE_RAW };
        let id = {
            let mut s = self.shared.lock();
            s.next_client += 1;
            s.client = s.next_client;
            s.queue.clear();
            // A stream already playing is joined where it is.
            if let Some(f) = s.playing {
                s.converter = Some(stream_converter(f));
                s.queue.push_back(Out::Start(Instant::now()));
            }
            s.queue.push_front(Out::Volume);
            s.client
        };
        let _registered = Registered { channel: self, id };
        self.port.client_attached(true);
        link.reg.initialized();
        let wake = self.shared.wake.listener();
        let mut batch = Vec::new();
        loop {
            {
                let (volume, mute) = self.take_queue(&mut batch);
                for out in batch.drain(..) {
                    match out {
                        Out::Start(at) => {
                            let at = link.server.mm_time_at(at);
                            let mut w = Writer::new();
                            w.u32(at).u16(mode);
                            conn.queue(playback_msg::MODE, &w.finish());
                            let mut w = Writer::new();
                            w.u32(CHANNELS).u16(FMT_S16).u32(RATE).u32(at);
                            conn.queue(playback_msg::START, &w.finish());
                        }
                        Out::Data(pcm, arrived) => {
                            let mut w = Writer::new();
                            w.u32(link.server.mm_time_at(arrived));
                            match &mut opus {
                                Some(enc) => match enc.encode(&pcm) {
                                    Ok(packet) => {
                                        w.bytes(&packet);
                                    }
                                    Err(e) => {
                                        tracing::warn!("playback: frame dropped: {e}");
                                        continue;
                                    }
                                },
                                None => {
                                    for v in &pcm {
                                        w.bytes(&v.to_le_bytes());
                                    }
                                }
                            }
                            conn.queue(playback_msg::DATA, &w.finish());
                        }
                        Out::Stop => conn.queue(playback_msg::STOP, &[]),
                        Out::Volume if volume_cap && !volume.is_empty() => {
                            conn.queue(playback_msg::VOLUME, &volume_body(&volume));
                            conn.queue(playback_msg::MUTE, &[u8::from(mute)]);
                        }
                        Out::Volume => {}
                    }
                }
                conn.flush().await?;
            }
            tokio::select! {
                _ = wake.wait() => {}
                n = next_message(conn) => match n? {
                    Next::Closed => return Ok(()),
                    Next::Base => {}
                    Next::Msg(t, _) => tracing::debug!(msg_type = t, "ignoring playback message"),
                },
            }
        }
    }
}
