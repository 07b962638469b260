//! USBREDIR channels (the spicevmc family, spice-server's `spicevmc.cpp`): one
//! channel id per [`StreamPort`] of kind [`StreamKind::Usbredir`], carrying the
//! usbredir byte stream both ways in SPICEVMC_DATA (101) messages, or
//! COMPRESSED_DATA (102, LZ4) when the client announced DATA_COMPRESS_LZ4. The
//! server does not parse usbredir; the VM side does.
//!
//! Linking a channel opens the stream (`client_opened(true)`, the VM starts a
//! usbredir connection); the channel ending closes it. Back-pressure both ways:
//! the guest side is refused (`Full`) once 1 MiB waits for this client, as
//! spice-server does, and resumed when the queue drains; a device that refuses
//! client bytes stops this channel's reading until it resumes.
//!
//! On a plain carrier with the mini header, guest data is written to the socket
//! straight from the caller's thread (the xHCI controller's, usually the vCPU
//! that rang the doorbell) when nothing else is waiting to go out: waking this
//! task to write a 30-byte usbredir request cost ~35 µs of every transfer's
//! turnaround on a loaded host. Whatever the socket does not take at once goes
//! through the task, in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tracing::debug;

use super::conn::{violation, DirectSocket};
use super::{next_message, ChannelKind, ChannelTask, End, Link, Next};
use crate::port::{Full, StreamKind, StreamPort, StreamSink};
use crate::proto::{channel as ch, has_cap};
use crate::wire::Reader;

pub const SPICEVMC_DATA: u16 = 101;
pub const SPICEVMC_COMPRESSED_DATA: u16 = 102;
/// Channel capability SPICE_SPICEVMC_CAP_DATA_COMPRESS_LZ4.
pub const CAP_DATA_COMPRESS_LZ4: u32 = 0;
/// SPICE_DATA_COMPRESSION_TYPE_LZ4.
const COMPRESSION_LZ4: u8 = 1;
/// Guest bytes queued for the client before the device is told `Full`.
const MAX_QUEUED: usize = 1024 * 1024;
/// spice-server compresses only payloads larger than this.
const COMPRESS_MIN: usize = 1000;
/// Largest client message (and decompressed payload): a usbredir bulk reply of
/// a 4 MiB transfer plus headers.
const MAX_MESSAGE: usize = 4 * 1024 * 1024 + 4096;

/// Guest output waiting for the task.
enum Out {
    /// usbredir bytes, to be framed as one message.
    Data(Vec<u8>),
    /// The unsent rest of a message a direct write began, already framed.
    Framed(Vec<u8>),
}

#[derive(Default)]
struct Queue {
    open: bool,
    chunks: VecDeque<Out>,
    bytes: usize,
    /// The guest was refused; tell it when the queue drained.
    refused: bool,
    /// The device refused client bytes and has since said it can take more.
    device_resumed: bool,
    /// The socket, for writes from the guest's side (plain carrier only).
    direct: Option<DirectSocket>,
    /// The client announced LZ4 (decides each direct message's form).
    lz4: bool,
    /// The task took chunks and is writing them: a direct write now would
    /// overtake them.
    task_writing: bool,
}

/// The channel's side of one stream, handed to the port.
struct Sink {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StreamSink for Sink {
    fn guest_data(&self, data: &[u8]) -> Result<(), Full> {
        let mut q = self.lock();
        if !q.open {
            debug!(
                len = data.len(),
                "usbredir: guest data with no client dropped"
            );
            return Ok(());
        }
        if q.bytes + data.len() > MAX_QUEUED && q.bytes > 0 {
            q.refused = true;
            return Err(Full);
        }
        if q.chunks.is_empty() && !q.task_writing {
            if let Some(rest) = q.write_direct(data) {
                if !rest.is_empty() {
                    q.bytes += rest.len();
                    q.chunks.push_back(Out::Framed(rest));
                    drop(q);
                    self.wake.notify_one();
                }
                return Ok(());
            }
        }
        q.bytes += data.len();
        q.chunks.push_back(Out::Data(data.to_vec()));
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    fn guest_opened(&self, open: bool) {
        debug!(open, "usbredir: guest end");
    }

    fn resume(&self) {
        self.lock().device_resumed = true;
        self.wake.notify_one();
    }
}

/// One message as the client receives it: mini header, then the body.
fn framed(data: &[u8], lz4: bool) -> Vec<u8> {
    let compressed;
    let (msg_type, body) = if lz4 && data.len() > COMPRESS_MIN {
        compressed = compressed_body(data);
        (SPICEVMC_COMPRESSED_DATA, &compressed[..])
    } else {
        (SPICEVMC_DATA, data)
    };
    let mut out = Vec::with_capacity(6 + body.len());
    out.extend_from_slice(&msg_type.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

impl Queue {
    /// Writes `data` as one message on the socket now. None: no direct socket,
    /// or it took nothing (full; the caller queues as usual). Some(rest): what
    /// it did not take, for the task to send next.
    fn write_direct(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let socket = self.direct.as_mut()?;
        let mut message = framed(data, self.lz4);
        // Stamped before the write: after it, the reply can already be read.
        tracing::debug!(target: "usbtime", "flushed");
        match socket.try_write(&message) {
            Ok(n) if n > 0 => Some(message.split_off(n)),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => {
                // The task sees the same error on its next write and ends.
                debug!("usbredir: direct write failed: {e}");
                self.direct = None;
                None
            }
        }
    }
}

pub struct UsbredirChannel {
    streams: Vec<(Arc<dyn StreamPort>, Arc<Sink>)>,
}

impl UsbredirChannel {
    /// One channel id per usbredir stream, in order; attaches each port.
    pub fn new(ports: Vec<Arc<dyn StreamPort>>) -> UsbredirChannel {
        let streams = ports
            .into_iter()
            .filter(|p| p.kind() == StreamKind::Usbredir)
            .map(|port| {
                let sink = Arc::new(Sink {
                    queue: Mutex::default(),
                    wake: Notify::new(),
                });
                port.attach(sink.clone());
                (port, sink)
            })
            .collect();
        UsbredirChannel { streams }
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

/// COMPRESSED_DATA body: {u8 type, u32 uncompressed size, LZ4 block}.
fn compressed_body(data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + data.len() / 2);
    body.push(COMPRESSION_LZ4);
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&lz4_flex::block::compress(data));
    body
}

fn decompress(body: &[u8]) -> Result<Vec<u8>, End> {
    let mut r = Reader::new(body);
    let (Some(kind), Some(size)) = (r.u8(), r.u32()) else {
        return Err(violation("short spicevmc compressed message").into());
    };
    if kind != COMPRESSION_LZ4 {
        return Err(violation(format!("spicevmc compression type {kind}")).into());
    }
    if size as usize > MAX_MESSAGE {
        return Err(violation(format!("spicevmc compressed payload of {size} bytes")).into());
    }
    let data = lz4_flex::block::decompress(&body[5..], size as usize)
        .map_err(|e| End::Protocol(violation(format!("spicevmc LZ4: {e}"))))?;
    if data.len() != size as usize {
        return Err(violation("spicevmc LZ4 size mismatch").into());
    }
    Ok(data)
}

impl ChannelKind for UsbredirChannel {
    fn channel_type(&self) -> u8 {
        ch::USBREDIR
    }
    fn name(&self) -> &'static str {
        "usbredir"
    }
    fn ids(&self) -> Vec<u8> {
        (0..self.streams.len() as u8).collect()
    }
    fn caps(&self) -> Vec<u32> {
        vec![1 << CAP_DATA_COMPRESS_LZ4]
    }
    fn max_message(&self) -> usize {
        MAX_MESSAGE
    }
    fn direct_writes(&self) -> bool {
        true
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(async move {
            let Some((port, sink)) = self.streams.get(usize::from(link.req.channel_id)) else {
                return Ok(());
            };
            let lz4 = has_cap(&link.req.channel_caps, CAP_DATA_COMPRESS_LZ4);
            *sink.lock() = Queue {
                open: true,
                direct: link.conn.take_direct(),
                lz4,
                ..Queue::default()
            };
            port.client_opened(true);
            link.reg.initialized();
            let result = serve(link, port.as_ref(), sink, lz4).await;
            *sink.lock() = Queue::default();
            port.client_opened(false);
            result
        })
    }
}

async fn serve(link: Link<'_>, port: &dyn StreamPort, sink: &Sink, lz4: bool) -> Result<(), End> {
    let conn = link.conn;
    // Client bytes the device refused, retried when it resumes.
    let mut held: Option<Vec<u8>> = None;
    loop {
        let (chunks, resume_guest, device_resumed) = {
            let mut q = sink.lock();
            let chunks: Vec<Out> = q.chunks.drain(..).collect();
            q.bytes = 0;
            q.task_writing = !chunks.is_empty();
            let resume = std::mem::take(&mut q.refused);
            (chunks, resume, std::mem::take(&mut q.device_resumed))
        };
        for chunk in &chunks {
            match chunk {
                Out::Framed(bytes) => conn.queue_raw(bytes),
                Out::Data(data) if lz4 && data.len() > COMPRESS_MIN => {
                    conn.queue(SPICEVMC_COMPRESSED_DATA, &compressed_body(data))
                }
                Out::Data(data) => conn.queue(SPICEVMC_DATA, data),
            }
        }
        let flushed = conn.flush().await;
        sink.lock().task_writing = false;
        flushed?;
        if !chunks.is_empty() {
            tracing::debug!(target: "usbtime", "flushed");
        }
        if resume_guest {
            port.resume();
        }
        if device_resumed {
            if let Some(data) = held.take() {
                if port.client_data(&data).is_err() {
                    held = Some(data);
                }
            }
        }
        if held.is_some() {
            // Not reading the client until the device takes the held bytes.
            sink.wake.notified().await;
            continue;
        }
        let (t, body) = tokio::select! {
            n = next_message(conn) => match n? {
                Next::Msg(t, b) => (t, b),
                Next::Base => continue,
                Next::Closed => return Ok(()),
            },
            _ = sink.wake.notified() => continue,
        };
        tracing::debug!(target: "usbtime", len = body.len(), "client msg");
        let data = match t {
            SPICEVMC_DATA => body,
            SPICEVMC_COMPRESSED_DATA => decompress(&body)?,
            _ => {
                debug!(msg_type = t, "ignoring usbredir channel message");
                continue;
            }
        };
        if port.client_data(&data).is_err() {
            held = Some(data);
        }
    }
}
