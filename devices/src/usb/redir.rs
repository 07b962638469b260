//! A USB device on the far side of a usbredir connection (QEMU's usb-redir
//! role, "usb-guest"): the client owns the device, we forward transfers.
//!
//! [`RedirConnection`] is the transport's half: it takes the bytes the peer
//! sent and returns what to send back, and reports when the peer connects or
//! disconnects a device. [`RedirDevice`] is the controller's half, a
//! [`UsbDevice`] attached to a root port while the peer has a device connected.
//! Both share one state behind a mutex; neither blocks on I/O.
//!
//! As QEMU does, standard SET_CONFIGURATION / GET_CONFIGURATION / SET_INTERFACE /
//! GET_INTERFACE requests become usbredir's own packets (the host side has to
//! claim interfaces for them), and interrupt IN endpoints are served by
//! interrupt receiving: the host streams reports, we buffer a bounded number
//! and hand one to each guest transfer. Isochronous endpoints run usbredir
//! iso streams (`redir/iso.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{debug, warn};
use usbredir::{
    Cap, Caps, ControlPacket, EpInfo, Limits, Packet, Parser, Role, SmallPacket, Speed, Status,
};
use vmm_sys_util::eventfd::EventFd;

use super::{TransferKind, UsbCompletion, UsbDevice, UsbRequest, UsbSpeed, UsbStatus};

/// Reports buffered per interrupt IN endpoint before the oldest is dropped.
const MAX_BUFFERED_REPORTS: usize = 64;
/// Requests in flight to the peer (one TD per endpoint: 32 is the real bound).
const MAX_PENDING: usize = 256;

/// What the peer did that the machine must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirEvent {
    /// A device is there: attach it to a root port of this speed.
    Connected(UsbSpeed),
    /// The device is gone: detach it.
    Disconnected,
    /// Transfers completed (only with [`RedirConnection::set_inline_completions`]):
    /// the controller should collect them now (`XhciHandle::collect`).
    Completed,
}

#[derive(Clone, Copy, Debug)]
enum PendingKind {
    Control { is_in: bool },
    Bulk { is_in: bool },
    InterruptOut,
    SetConfiguration,
    GetConfiguration,
    SetAltSetting,
    GetAltSetting,
}

struct Shared {
    parser: Parser,
    out: Vec<u8>,
    speed: Option<UsbSpeed>,
    next_id: u64,
    /// usbredir id → (request id, what it was).
    pending: HashMap<u64, (u64, PendingKind)>,
    receiving: HashSet<u8>,
    reports: HashMap<u8, VecDeque<(Status, Vec<u8>)>>,
    /// Interrupt IN requests waiting for a report: endpoint → (request id, length).
    waiting: HashMap<u8, VecDeque<(u64, u32)>>,
    completions: Vec<UsbCompletion>,
    /// The host's endpoint descriptions (types, intervals, packet sizes).
    ep_info: Option<Box<EpInfo>>,
    /// Isochronous streams by endpoint address (at most 30).
    iso: Vec<(u8, iso::IsoStream)>,
    waker: Option<Arc<EventFd>>,
    /// The transport collects completions made while it feeds bytes in
    /// (`received` reports [`RedirEvent::Completed`]) instead of the waker.
    inline_completions: bool,
    /// Inside `received` with inline completions: completions are reported.
    receiving_bytes: bool,
    completed_inline: bool,
}

impl Shared {
    fn send(&mut self, id: u64, packet: &Packet) {
        match self.parser.encode(id, packet) {
            Ok(bytes) => self.out.extend_from_slice(&bytes),
            Err(e) => warn!("usbredir: cannot send {packet:?}: {e}"),
        }
    }

    fn complete(&mut self, done: UsbCompletion) {
        tracing::debug!(target: "usbtime", "complete");
        self.completions.push(done);
        if self.receiving_bytes {
            self.completed_inline = true;
        } else if let Some(w) = &self.waker {
            let _ = w.write(1);
        }
    }

    fn fail_all(&mut self) {
        let ids: Vec<u64> = self.pending.drain().map(|(_, (req, _))| req).collect();
        let waiting: Vec<u64> = self
            .waiting
            .drain()
            .flat_map(|(_, q)| q.into_iter().map(|(id, _)| id))
            .collect();
        for id in ids.into_iter().chain(waiting) {
            self.complete(UsbCompletion {
                id,
                status: UsbStatus::Error,
                data: Vec::new(),
                actual: 0,
            });
        }
        self.receiving.clear();
        self.reports.clear();
        self.iso.clear();
    }

    /// A usbredir id for a request (below 2^32 for peers without 64-bit ids).
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = if self.next_id >= u64::from(u32::MAX) {
            1
        } else {
            self.next_id + 1
        };
        id
    }

    /// Hand buffered reports to waiting interrupt IN requests.
    fn serve_reports(&mut self, endpoint: u8) {
        loop {
            let Some(queue) = self.reports.get_mut(&endpoint) else {
                return;
            };
            let Some(waiters) = self.waiting.get_mut(&endpoint) else {
                return;
            };
            if queue.is_empty() || waiters.is_empty() {
                return;
            }
            let (status, mut data) = queue.pop_front().unwrap_or((Status::SUCCESS, Vec::new()));
            let (id, length) = waiters.pop_front().unwrap_or_default();
            data.truncate(length as usize);
            let status = map_status(status);
            self.complete(UsbCompletion {
                id,
                status,
                actual: data.len() as u32,
                data,
            });
        }
    }

    fn take_pending(&mut self, id: u64) -> Option<(u64, PendingKind)> {
        let found = self.pending.remove(&id);
        if found.is_none() {
            debug!(id, "usbredir: reply for no pending request (cancelled?)");
        }
        found
    }

    fn handle(&mut self, id: u64, packet: Packet, events: &mut Vec<RedirEvent>) {
        match packet {
            Packet::Hello { version, caps } => {
                debug!(version, caps = caps.0, "usbredir: peer hello")
            }
            Packet::DeviceConnect(c) => {
                // As QEMU: SuperSpeed needs the peer to carry max packet sizes,
                // 32-bit bulk lengths and 64-bit ids; else it runs at high speed.
                let super_ok = [
                    Cap::EpInfoMaxPacketSize,
                    Cap::BulkLength32Bit,
                    Cap::Ids64Bit,
                ]
                .iter()
                .all(|&cap| self.parser.negotiated(cap));
                let speed = match c.speed {
                    Speed::LOW => UsbSpeed::Low,
                    Speed::HIGH => UsbSpeed::High,
                    Speed::SUPER if super_ok => UsbSpeed::Super,
                    Speed::SUPER => UsbSpeed::High,
                    _ => UsbSpeed::Full,
                };
                if self.speed.is_some() {
                    warn!("usbredir: device_connect while a device is connected; ignored");
                    return;
                }
                debug!(
                    vendor = c.vendor_id,
                    product = c.product_id,
                    ?speed,
                    "usbredir: device connected"
                );
                self.speed = Some(speed);
                events.push(RedirEvent::Connected(speed));
            }
            Packet::DeviceDisconnect => {
                if self
                    .parser
                    .peer_caps()
                    .is_some_and(|c| c.has(Cap::DeviceDisconnectAck))
                {
                    self.send(0, &Packet::DeviceDisconnectAck);
                }
                if self.speed.take().is_some() {
                    self.fail_all();
                    events.push(RedirEvent::Disconnected);
                }
            }
            Packet::EpInfo(info) => self.ep_info = Some(info),
            Packet::InterfaceInfo(_) | Packet::FilterFilter(_) => {}
            Packet::IsoStreamStatus { status, endpoint } => self.iso_status(endpoint, status),
            Packet::Iso(p) => self.iso_packet(p),
            Packet::InterruptReceivingStatus { status, endpoint } if status != Status::SUCCESS => {
                self.receiving.remove(&endpoint);
                let waiters = self.waiting.remove(&endpoint).unwrap_or_default();
                for (id, _) in waiters {
                    self.complete(UsbCompletion {
                        id,
                        status: map_status(status),
                        data: Vec::new(),
                        actual: 0,
                    });
                }
            }
            Packet::InterruptReceivingStatus { .. } => {}
            Packet::ConfigurationStatus {
                status,
                configuration,
            } => {
                let Some((req, kind)) = self.take_pending(id) else {
                    return;
                };
                let data = match kind {
                    PendingKind::GetConfiguration => vec![configuration],
                    _ => Vec::new(),
                };
                if matches!(kind, PendingKind::SetConfiguration) {
                    // The host ended every stream.
                    self.receiving.clear();
                    self.reports.clear();
                    self.iso.clear();
                }
                self.complete(UsbCompletion {
                    id: req,
                    status: map_status(status),
                    actual: data.len() as u32,
                    data,
                });
            }
            Packet::AltSettingStatus { status, alt, .. } => {
                let Some((req, kind)) = self.take_pending(id) else {
                    return;
                };
                let data = match kind {
                    PendingKind::GetAltSetting => vec![alt],
                    _ => {
                        // The host ended the interface's streams.
                        self.iso.clear();
                        Vec::new()
                    }
                };
                self.complete(UsbCompletion {
                    id: req,
                    status: map_status(status),
                    actual: data.len() as u32,
                    data,
                });
            }
            Packet::Control(c) => {
                let Some((req, kind)) = self.take_pending(id) else {
                    return;
                };
                let is_in = matches!(kind, PendingKind::Control { is_in: true });
                let actual = if is_in {
                    c.data.len() as u32
                } else {
                    u32::from(c.length)
                };
                self.complete(UsbCompletion {
                    id: req,
                    status: map_status(c.status),
                    data: c.data,
                    actual,
                });
            }
            Packet::Bulk(b) => {
                let Some((req, kind)) = self.take_pending(id) else {
                    return;
                };
                let is_in = matches!(kind, PendingKind::Bulk { is_in: true });
                let actual = if is_in { b.data.len() as u32 } else { b.length };
                self.complete(UsbCompletion {
                    id: req,
                    status: map_status(b.status),
                    data: b.data,
                    actual,
                });
            }
            Packet::Interrupt(p) if p.endpoint & 0x80 != 0 => {
                let queue = self.reports.entry(p.endpoint).or_default();
                if queue.len() == MAX_BUFFERED_REPORTS {
                    queue.pop_front();
                    debug!(
                        endpoint = p.endpoint,
                        "usbredir: interrupt report buffer full; oldest dropped"
                    );
                }
                queue.push_back((p.status, p.data));
                self.serve_reports(p.endpoint);
            }
            Packet::Interrupt(p) => {
                let Some((req, _)) = self.take_pending(id) else {
                    return;
                };
                self.complete(UsbCompletion {
                    id: req,
                    status: map_status(p.status),
                    data: Vec::new(),
                    actual: u32::from(p.length),
                });
            }
            other => debug!("usbredir: {other:?} ignored"),
        }
    }
}

fn map_status(status: Status) -> UsbStatus {
    match status {
        Status::SUCCESS => UsbStatus::Success,
        Status::STALL => UsbStatus::Stall,
        Status::CANCELLED => UsbStatus::Cancelled,
        _ => UsbStatus::Error,
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called (outside every lock of this module) when the controller's side
/// queued bytes for the peer: the transport takes them with `take_output`.
pub type OutputNotify = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone, Default)]
struct Notifier(Arc<Mutex<Option<OutputNotify>>>);

impl Notifier {
    fn call(&self) {
        let f = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(f) = f {
            f();
        }
    }
}

/// The transport's half of one usbredir connection.
#[derive(Clone)]
pub struct RedirConnection {
    shared: Arc<Mutex<Shared>>,
    notify: Notifier,
}

/// Capabilities we announce: all of usbredir 0.7 but bulk streams and bulk
/// receiving (USB 3 streams and buffered bulk are not modelled).
pub fn guest_caps() -> Caps {
    Caps::default()
        .with(Cap::ConnectDeviceVersion)
        .with(Cap::Filter)
        .with(Cap::DeviceDisconnectAck)
        .with(Cap::EpInfoMaxPacketSize)
        .with(Cap::Ids64Bit)
        .with(Cap::BulkLength32Bit)
}

impl RedirConnection {
    /// A new connection; our hello is queued for sending.
    pub fn new() -> RedirConnection {
        let parser = Parser::new(Role::Guest, guest_caps(), Limits::default());
        let out = parser.hello(usbredir::VERSION);
        RedirConnection {
            shared: Arc::new(Mutex::new(Shared {
                parser,
                out,
                speed: None,
                next_id: 1,
                pending: HashMap::new(),
                receiving: HashSet::new(),
                reports: HashMap::new(),
                waiting: HashMap::new(),
                completions: Vec::new(),
                ep_info: None,
                iso: Vec::new(),
                waker: None,
                inline_completions: false,
                receiving_bytes: false,
                completed_inline: false,
            })),
            notify: Notifier::default(),
        }
    }

    /// Where to say that the device side queued output (see [`OutputNotify`]).
    pub fn set_output_notify(&self, f: OutputNotify) {
        *self.notify.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// Bytes from the peer; what the machine must do is returned. A malformed
    /// packet is an error (logged), after which the caller closes the
    /// connection, as QEMU does: a peer that breaks the protocol once cannot
    /// be trusted with the framing of what follows.
    pub fn received(&self, bytes: &[u8]) -> Result<Vec<RedirEvent>, usbredir::Error> {
        let mut s = lock(&self.shared);
        s.parser.feed(bytes);
        s.receiving_bytes = s.inline_completions;
        let mut events = Vec::new();
        let mut result = Ok(());
        while let Some(next) = s.parser.next() {
            match next {
                Ok(r) => s.handle(r.id, r.packet, &mut events),
                Err(e) => {
                    warn!("usbredir: packet from the peer rejected: {e}");
                    result = Err(e);
                    break;
                }
            }
        }
        s.receiving_bytes = false;
        if std::mem::take(&mut s.completed_inline) {
            match (&result, &s.waker) {
                (Ok(()), _) => events.push(RedirEvent::Completed),
                // The caller only closes the connection: the worker collects.
                (Err(_), Some(w)) => {
                    let _ = w.write(1);
                }
                (Err(_), None) => {}
            }
        }
        result.map(|()| events)
    }

    /// Whether completions of transfers answered by bytes fed to `received` are
    /// reported as [`RedirEvent::Completed`] for the caller to collect on its
    /// own thread, rather than by waking the controller's worker: one thread
    /// hand-off less per transfer. Completions made elsewhere (a report
    /// already buffered when the controller asks) still use the waker.
    pub fn set_inline_completions(&self, inline: bool) {
        lock(&self.shared).inline_completions = inline;
    }

    /// The peer went away: the device, if any, is gone.
    pub fn closed(&self) -> Vec<RedirEvent> {
        let mut s = lock(&self.shared);
        if s.speed.take().is_some() {
            s.fail_all();
            return vec![RedirEvent::Disconnected];
        }
        Vec::new()
    }

    /// Bytes to send to the peer (taken).
    pub fn take_output(&self) -> Vec<u8> {
        std::mem::take(&mut lock(&self.shared).out)
    }

    /// The device to attach after [`RedirEvent::Connected`].
    pub fn device(&self) -> Option<RedirDevice> {
        let speed = lock(&self.shared).speed?;
        Some(RedirDevice {
            shared: self.shared.clone(),
            speed,
            notify: self.notify.clone(),
        })
    }
}

impl Default for RedirConnection {
    fn default() -> Self {
        Self::new()
    }
}

/// The controller's half: the redirected device on a root port.
pub struct RedirDevice {
    shared: Arc<Mutex<Shared>>,
    speed: UsbSpeed,
    notify: Notifier,
}

impl UsbDevice for RedirDevice {
    fn speed(&self) -> UsbSpeed {
        self.speed
    }

    fn submit(&mut self, r: UsbRequest) -> Option<UsbCompletion> {
        let done = self.submit_locked(r);
        self.notify.call();
        done
    }

    fn take_completions(&mut self) -> Vec<UsbCompletion> {
        std::mem::take(&mut lock(&self.shared).completions)
    }

    fn cancel(&mut self, request: u64) {
        self.cancel_locked(request);
        self.notify.call();
    }

    fn reset(&mut self) {
        {
            let mut s = lock(&self.shared);
            if s.speed.is_some() {
                s.send(0, &Packet::Reset);
            }
            s.receiving.clear();
            s.reports.clear();
            s.iso.clear();
        }
        self.notify.call();
    }

    fn endpoint_stopped(&mut self, endpoint: u8) {
        lock(&self.shared).stop_iso(endpoint);
        self.notify.call();
    }

    fn set_waker(&mut self, waker: Arc<EventFd>) {
        lock(&self.shared).waker = Some(waker);
    }
}

impl RedirDevice {
    fn submit_locked(&mut self, r: UsbRequest) -> Option<UsbCompletion> {
        let mut s = lock(&self.shared);
        let fail = |status| {
            Some(UsbCompletion {
                id: r.id,
                status,
                data: Vec::new(),
                actual: 0,
            })
        };
        if s.speed.is_none() {
            return fail(UsbStatus::Error);
        }
        if s.pending.len() >= MAX_PENDING {
            warn!("usbredir: too many requests in flight");
            return fail(UsbStatus::Error);
        }
        let id = s.take_id();
        let is_in = r.endpoint & 0x80 != 0;
        let (packet, kind) = match r.kind {
            TransferKind::Control(setup) => {
                // Standard requests that the host side must perform itself.
                match (setup.request_type, setup.request) {
                    (0x00, 9) => (
                        Packet::SetConfiguration {
                            configuration: setup.value as u8,
                        },
                        PendingKind::SetConfiguration,
                    ),
                    (0x80, 8) => (Packet::GetConfiguration, PendingKind::GetConfiguration),
                    (0x01, 11) => (
                        Packet::SetAltSetting {
                            interface: setup.index as u8,
                            alt: setup.value as u8,
                        },
                        PendingKind::SetAltSetting,
                    ),
                    (0x81, 10) => (
                        Packet::GetAltSetting {
                            interface: setup.index as u8,
                        },
                        PendingKind::GetAltSetting,
                    ),
                    _ => (
                        Packet::Control(ControlPacket {
                            endpoint: if setup.is_in() { 0x80 } else { 0 },
                            request: setup.request,
                            requesttype: setup.request_type,
                            status: Status::SUCCESS,
                            value: setup.value,
                            index: setup.index,
                            length: if setup.is_in() {
                                setup.length
                            } else {
                                r.data.len() as u16
                            },
                            data: if setup.is_in() { Vec::new() } else { r.data },
                        }),
                        PendingKind::Control {
                            is_in: setup.is_in(),
                        },
                    ),
                }
            }
            TransferKind::Bulk => (
                Packet::Bulk(usbredir::BulkPacket {
                    endpoint: r.endpoint,
                    status: Status::SUCCESS,
                    length: if is_in { r.length } else { r.data.len() as u32 },
                    stream_id: 0,
                    data: if is_in { Vec::new() } else { r.data },
                }),
                PendingKind::Bulk { is_in },
            ),
            TransferKind::Interrupt if is_in => {
                if s.receiving.insert(r.endpoint) {
                    s.send(
                        id,
                        &Packet::StartInterruptReceiving {
                            endpoint: r.endpoint,
                        },
                    );
                }
                s.waiting
                    .entry(r.endpoint)
                    .or_default()
                    .push_back((r.id, r.length));
                s.serve_reports(r.endpoint);
                return None;
            }
            TransferKind::Isochronous => return Some(s.iso_request(id, r)),
            TransferKind::Interrupt => (
                Packet::Interrupt(SmallPacket {
                    endpoint: r.endpoint,
                    status: Status::SUCCESS,
                    length: r.data.len() as u16,
                    data: r.data,
                }),
                PendingKind::InterruptOut,
            ),
        };
        s.pending.insert(id, (r.id, kind));
        s.send(id, &packet);
        None
    }

    fn cancel_locked(&mut self, request: u64) {
        let mut s = lock(&self.shared);
        for q in s.waiting.values_mut() {
            q.retain(|(id, _)| *id != request);
        }
        let found = s
            .pending
            .iter()
            .find(|(_, (r, _))| *r == request)
            .map(|(&id, _)| id);
        if let Some(id) = found {
            s.pending.remove(&id);
            s.send(id, &Packet::CancelDataPacket);
        }
    }
}

mod iso;
#[cfg(test)]
mod tests;
