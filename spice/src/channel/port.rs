//! PORT channels (spice-server's spicevmc.cpp for SPICE_CHANNEL_PORT, what
//! QEMU's `-chardev spiceport,name=NAME` gives): one channel id per
//! [`StreamPort`] of kind [`StreamKind::Port`], a named guest port's byte
//! stream both ways in SPICEVMC_DATA (101). At link the client gets PORT_INIT
//! with the port's name and whether the guest has it open; the guest opening
//! or closing it later is a PORT_EVENT. The client's PORT_EVENT OPENED/CLOSED
//! (an application opening its end) goes to the port. Back-pressure as on the
//! USBREDIR channels: the guest is refused once 1 MiB waits for this client,
//! and a device that refuses client bytes stops this channel's reading.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tracing::{debug, warn};

use super::usbredir::SPICEVMC_DATA;
use super::{next_message, ChannelKind, ChannelTask, End, Link, Next};
use crate::port::{Full, StreamKind, StreamPort, StreamSink};
use crate::proto::channel as ch;

/// S→C PORT_INIT: u32 name_size, u32 name offset, u8 opened, the name.
pub const PORT_INIT: u16 = 201;
/// S→C PORT_EVENT: u8 event.
pub const PORT_EVENT: u16 = 202;
/// C→S PORT_EVENT: u8 event.
pub const MSGC_PORT_EVENT: u16 = 201;
pub const EVENT_OPENED: u8 = 0;
pub const EVENT_CLOSED: u8 = 1;
/// Guest bytes queued for the client before the device is told `Full`.
const MAX_QUEUED: usize = 1024 * 1024;
/// Largest client message (spice-gtk sends each write_async as one): what a
/// VMM's port queue can always take once it is empty (spicebox's
/// virtio-serial queues 256 KiB), so a held message never waits forever.
const MAX_MESSAGE: usize = 256 * 1024;

#[derive(Default)]
struct Queue {
    /// A client is linked.
    client: bool,
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The guest was refused; tell it when the queue drained.
    refused: bool,
    /// The device refused client bytes and has since said it can take more.
    device_resumed: bool,
    /// The guest has the port open (kept across clients).
    guest_open: bool,
    /// Guest opens and closes not yet told to the client.
    events: Vec<u8>,
}

/// The channel's side of one port, handed to it.
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
        if !q.client {
            debug!(len = data.len(), "port: guest data with no client dropped");
            return Ok(());
        }
        if q.bytes + data.len() > MAX_QUEUED && q.bytes > 0 {
            q.refused = true;
            return Err(Full);
        }
        q.bytes += data.len();
        q.chunks.push_back(data.to_vec());
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    fn guest_opened(&self, open: bool) {
        let mut q = self.lock();
        if q.guest_open == open {
            return;
        }
        q.guest_open = open;
        if q.client {
            q.events
                .push(if open { EVENT_OPENED } else { EVENT_CLOSED });
        }
        drop(q);
        self.wake.notify_one();
    }

    fn resume(&self) {
        self.lock().device_resumed = true;
        self.wake.notify_one();
    }
}

pub struct PortChannel {
    ports: Vec<(Arc<dyn StreamPort>, Arc<Sink>)>,
}

impl PortChannel {
    /// One channel id per PORT stream, in order; attaches each port.
    pub fn new(ports: Vec<Arc<dyn StreamPort>>) -> PortChannel {
        let ports = ports
            .into_iter()
            .filter(|p| p.kind() == StreamKind::Port)
            .map(|port| {
                let sink = Arc::new(Sink {
                    queue: Mutex::default(),
                    wake: Notify::new(),
                });
                port.attach(sink.clone());
                (port, sink)
            })
            .collect();
        PortChannel { ports }
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

/// PORT_INIT's body for `name`.
pub fn port_init(name: &str, opened: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(10 + name.len());
    b.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    b.extend_from_slice(&9u32.to_le_bytes());
    b.push(u8::from(opened));
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b
}

impl ChannelKind for PortChannel {
    fn channel_type(&self) -> u8 {
        ch::PORT
    }
    fn name(&self) -> &'static str {
        "port"
    }
    fn ids(&self) -> Vec<u8> {
        (0..self.ports.len() as u8).collect()
    }
    fn caps(&self) -> Vec<u32> {
        Vec::new()
    }
    fn max_message(&self) -> usize {
        MAX_MESSAGE
    }
    fn run<'a>(&'a self, link: Link<'a>) -> ChannelTask<'a> {
        Box::pin(async move {
            let Some((port, sink)) = self.ports.get(usize::from(link.req.channel_id)) else {
                return Ok(());
            };
            let opened = {
                let mut q = sink.lock();
                if q.client {
                    warn!(
                        port = port.name(),
                        "port: a second client replaces the first"
                    );
                }
                let guest_open = q.guest_open;
                *q = Queue {
                    client: true,
                    guest_open,
                    ..Queue::default()
                };
                guest_open
            };
            link.reg.initialized();
            let mut client_open = false;
            let result = serve(link, port.as_ref(), sink, opened, &mut client_open).await;
            let mut q = sink.lock();
            let guest_open = q.guest_open;
            *q = Queue {
                guest_open,
                ..Queue::default()
            };
            drop(q);
            if client_open {
                port.client_opened(false);
            }
            result
        })
    }
}

async fn serve(
    link: Link<'_>,
    port: &dyn StreamPort,
    sink: &Sink,
    opened: bool,
    client_open: &mut bool,
) -> Result<(), End> {
    let conn = link.conn;
    conn.queue(PORT_INIT, &port_init(port.name(), opened));
    // Client bytes the device refused, retried when it resumes.
    let mut held: Option<Vec<u8>> = None;
    loop {
        let (chunks, events, resume_guest, device_resumed) = {
            let mut q = sink.lock();
            let chunks: Vec<Vec<u8>> = q.chunks.drain(..).collect();
            q.bytes = 0;
            let events = std::mem::take(&mut q.events);
            let resume = std::mem::take(&mut q.refused);
            (
                chunks,
                events,
                resume,
                std::mem::take(&mut q.device_resumed),
            )
        };
        for chunk in &chunks {
            conn.queue(SPICEVMC_DATA, chunk);
        }
        for e in events {
            conn.queue(PORT_EVENT, &[e]);
        }
        conn.flush().await?;
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
        match t {
            SPICEVMC_DATA => {
                if port.client_data(&body).is_err() {
                    held = Some(body);
                }
            }
            MSGC_PORT_EVENT => match body.first() {
                Some(&e @ (EVENT_OPENED | EVENT_CLOSED)) => {
                    let open = e == EVENT_OPENED;
                    if open != *client_open {
                        *client_open = open;
                        port.client_opened(open);
                    }
                }
                Some(e) => debug!(port = port.name(), event = e, "port: client event ignored"),
                None => warn!(port = port.name(), "port: empty PORT_EVENT dropped"),
            },
            _ => debug!(msg_type = t, "ignoring port channel message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_init_has_the_name_after_the_fixed_part() {
        let b = port_init("org.test.0", true);
        assert_eq!(&b[..9], &[11, 0, 0, 0, 9, 0, 0, 0, 1]);
        assert_eq!(&b[9..], b"org.test.0\0");
    }

    fn sink() -> Sink {
        Sink {
            queue: Mutex::default(),
            wake: Notify::new(),
        }
    }

    #[test]
    fn guest_opens_are_kept_and_told_only_to_a_linked_client() {
        let s = sink();
        s.guest_opened(true);
        assert!(s.lock().guest_open);
        assert!(s.lock().events.is_empty(), "no client: PORT_INIT tells it");
        s.lock().client = true;
        s.guest_opened(true);
        assert!(s.lock().events.is_empty(), "no change, no event");
        s.guest_opened(false);
        s.guest_opened(true);
        assert_eq!(s.lock().events, [EVENT_CLOSED, EVENT_OPENED]);
    }

    #[test]
    fn guest_bytes_are_dropped_without_a_client_and_refused_past_the_bound() {
        let s = sink();
        assert_eq!(s.guest_data(&[1; 100]), Ok(()));
        assert_eq!(s.lock().bytes, 0, "dropped with no client");
        s.lock().client = true;
        // One piece larger than the bound still goes into an empty queue.
        assert_eq!(s.guest_data(&vec![2; MAX_QUEUED + 1]), Ok(()));
        assert_eq!(s.guest_data(&[3]), Err(Full));
        assert!(s.lock().refused);
        assert_eq!(s.lock().bytes, MAX_QUEUED + 1);
    }
}
