//! virtio-serial (virtio-console with MULTIPORT, device type 3): named ports
//! for guest agents, as QEMU's `-device virtio-serial` with `virtserialport`s.
//!
//! Queues: 0/1 port 0 (unused: no console), 2 control receive (host → guest),
//! 3 control transmit (guest → host), then port n's receive and transmit at
//! 2n + 2 and 2n + 3. The control protocol is Linux `virtio_console.c`'s: the
//! driver sends DEVICE_READY, we announce each port (PORT_ADD); it answers
//! PORT_READY, we name the port (PORT_NAME) and say the host side is open
//! (PORT_OPEN 1, which the driver waits for before letting a writer through);
//! the guest's PORT_OPEN 1/0 says a process opened or closed the port.
//!
//! A port's bytes go to its [`SerialBackend`] (which may refuse: the buffer
//! then stays in the ring until [`SerialPort::resume`]), and come from its
//! [`SerialPort`] handle, queued (bounded) until the guest posts receive
//! buffers; each queued message's `done` callback runs once the guest has all
//! of it, which is what SPICE's agent tokens need.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{debug, warn};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{next_chain, queue_needs_interrupt, ActivateContext};
use super::device::{VirtioDevice, VirtioInterrupt};
use crate::worker::{Token, Worker, WorkerEvents, WorkerHandler};
use crate::{Error, Result};

/// VIRTIO_CONSOLE_F_MULTIPORT.
const F_MULTIPORT: u32 = 1;
/// PCI class: communication controller, other (QEMU's for virtio-serial).
const PCI_CLASS_COMM_OTHER: u32 = 0x078000;
const QUEUE_SIZE: u16 = 128;
const CONTROL_RX: usize = 2;
const CONTROL_TX: usize = 3;
/// Bytes of host data a port holds for a guest that reads nothing.
pub const MAX_QUEUED: usize = 256 * 1024;
/// Largest guest write taken in one piece (Linux writes at most a page or so
/// per buffer); longer chains are cut here.
const MAX_CHAIN: usize = 64 * 1024;

/// Control events (uapi `virtio_console.h`).
pub mod control {
    pub const DEVICE_READY: u16 = 0;
    pub const PORT_ADD: u16 = 1;
    pub const PORT_REMOVE: u16 = 2;
    pub const PORT_READY: u16 = 3;
    pub const CONSOLE_PORT: u16 = 4;
    pub const RESIZE: u16 = 5;
    pub const PORT_OPEN: u16 = 6;
    pub const PORT_NAME: u16 = 7;
}

/// A guest-refused write: keep it in the ring until `resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The host side of one port.
pub trait SerialBackend: Send + Sync {
    /// A guest process opened (true) or closed the port; false also at reset.
    fn guest_open(&self, open: bool);
    /// Bytes the guest wrote. `Err(Busy)`: nothing was taken; the device
    /// retries after [`SerialPort::resume`].
    fn guest_data(&self, data: &[u8]) -> std::result::Result<(), Busy>;
    /// The worker finished a round: the guest has its used buffers back (and
    /// its interrupt). A backend that holds wake-ups of its consumers during
    /// the round (so they do not take the CPU while the guest waits for its
    /// buffer) sends them now.
    fn round_done(&self) {}
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Done = Box<dyn FnOnce() + Send>;

struct Outgoing {
    data: Vec<u8>,
    /// Bytes of `data` the guest has.
    sent: usize,
    done: Option<Done>,
}

/// What the device, its worker and a port's handle share.
struct PortShared {
    name: String,
    backend: Arc<dyn SerialBackend>,
    out: Mutex<VecDeque<Outgoing>>,
    wake: Arc<EventFd>,
}

/// The host's handle on one port: send bytes to the guest.
pub struct SerialPort(Arc<PortShared>);

impl SerialPort {
    /// Queue `data` for the guest; `done` runs once the guest has all of it
    /// (or never, if the guest resets first). Refused (Err(Busy)) past
    /// [`MAX_QUEUED`] bytes.
    pub fn send(
        &self,
        data: Vec<u8>,
        done: Option<Box<dyn FnOnce() + Send>>,
    ) -> std::result::Result<(), Busy> {
        {
            let mut out = lock(&self.0.out);
            let queued: usize = out.iter().map(|o| o.data.len() - o.sent).sum();
            if queued + data.len() > MAX_QUEUED {
                return Err(Busy);
            }
            out.push_back(Outgoing {
                data,
                sent: 0,
                done,
            });
        }
        self.resume();
        Ok(())
    }

    /// Nothing queued for the guest: it has all that was sent.
    pub fn is_drained(&self) -> bool {
        lock(&self.0.out).is_empty()
    }

    /// Wake the device: new data, or the backend has room again.
    pub fn resume(&self) {
        if let Err(e) = self.0.wake.write(1) {
            warn!("virtio-serial: wake: {e}");
        }
    }
}

#[derive(Clone, Copy, Default)]
struct PortState {
    ready: bool,
    guest_open: bool,
}

/// What the worker owns while the driver runs.
struct SerialWorker {
    ports: Vec<Arc<PortShared>>,
    state: Vec<PortState>,
    mem: GuestMemoryMmap<()>,
    queues: Vec<Queue>,
    kicks: Vec<Arc<EventFd>>,
    wake: Arc<EventFd>,
    interrupt: Arc<VirtioInterrupt>,
    /// Control messages for the guest, waiting for control receive buffers.
    control_out: VecDeque<Vec<u8>>,
    /// Queues given used buffers this round.
    used: Vec<bool>,
}

const WAKE: Token = u32::MAX;

fn control_msg(id: u32, event: u16, value: u16, extra: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + extra.len());
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&event.to_le_bytes());
    m.extend_from_slice(&value.to_le_bytes());
    m.extend_from_slice(extra);
    m
}

/// Port index → (receive queue, transmit queue); port n ≥ 1.
fn port_queues(port: usize) -> (usize, usize) {
    (2 * port + 2, 2 * port + 3)
}

impl SerialWorker {
    /// The chain's descriptors, fetched once.
    fn descriptors(chain: &virtio_queue::DescriptorChain<&GuestMemoryMmap<()>>) -> Vec<Descriptor> {
        chain.clone().collect()
    }

    /// Read a device-readable chain (at most MAX_CHAIN bytes).
    fn read_chain(mem: &GuestMemoryMmap<()>, descs: &[Descriptor]) -> Option<Vec<u8>> {
        let mut data = Vec::new();
        for d in descs {
            if d.is_write_only() {
                return None;
            }
            let n = (d.len() as usize).min(MAX_CHAIN - data.len());
            let at = data.len();
            data.resize(at + n, 0);
            mem.read_slice(&mut data[at..], d.addr()).ok()?;
            if data.len() == MAX_CHAIN {
                break;
            }
        }
        Some(data)
    }

    /// Write as much of `data` as the device-writable chain holds.
    fn write_chain(mem: &GuestMemoryMmap<()>, descs: &[Descriptor], data: &[u8]) -> Option<usize> {
        Self::write_chain_at(mem, descs, 0, data)
    }

    /// Write as much of `data` as the device-writable chain holds after its
    /// first `skip` bytes; returns the bytes written.
    fn write_chain_at(
        mem: &GuestMemoryMmap<()>,
        descs: &[Descriptor],
        mut skip: usize,
        data: &[u8],
    ) -> Option<usize> {
        let mut at = 0;
        for d in descs {
            if !d.is_write_only() {
                return None;
            }
            if at == data.len() {
                break;
            }
            let len = d.len() as usize;
            if skip >= len {
                skip -= len;
                continue;
            }
            let n = (len - skip).min(data.len() - at);
            mem.write_slice(&data[at..at + n], d.addr().checked_add(skip as u64)?)
                .ok()?;
            at += n;
            skip = 0;
        }
        Some(at)
    }

    fn queue_control(&mut self, id: u32, event: u16, value: u16, extra: &[u8]) {
        self.control_out
            .push_back(control_msg(id, event, value, extra));
    }

    /// Guest → host control messages.
    fn control_tx(&mut self) -> Result<()> {
        let mut msgs = Vec::new();
        {
            let (mem, q) = (&self.mem, &mut self.queues[CONTROL_TX]);
            while let Some(chain) = next_chain(q, mem)? {
                let head = chain.head_index();
                let descs = Self::descriptors(&chain);
                match Self::read_chain(mem, &descs) {
                    Some(m) if m.len() >= 8 => msgs.push(m),
                    _ => warn!("virtio-serial: malformed control message at head {head}"),
                }
                q.add_used(mem, head, 0)?;
                self.used[CONTROL_TX] = true;
            }
        }
        for m in msgs {
            let id = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            let event = u16::from_le_bytes([m[4], m[5]]);
            let value = u16::from_le_bytes([m[6], m[7]]);
            self.control(id, event, value);
        }
        Ok(())
    }

    /// Port index of guest port id `id`, if that port exists.
    fn port(&self, id: u32) -> Option<usize> {
        let i = usize::try_from(id).ok()?;
        (1..=self.ports.len()).contains(&i).then_some(i)
    }

    fn control(&mut self, id: u32, event: u16, value: u16) {
        match event {
            control::DEVICE_READY => {
                if value != 1 {
                    warn!("virtio-serial: the driver failed to initialise");
                    return;
                }
                for i in 1..=self.ports.len() {
                    self.queue_control(i as u32, control::PORT_ADD, 0, &[]);
                }
            }
            control::PORT_READY => {
                let Some(i) = self.port(id) else {
                    warn!("virtio-serial: PORT_READY for port {id}, which does not exist");
                    return;
                };
                if value != 1 {
                    warn!("virtio-serial: the driver failed to add port {id}");
                    return;
                }
                self.state[i - 1].ready = true;
                // NUL-terminated, as QEMU sends it.
                let mut name = self.ports[i - 1].name.clone().into_bytes();
                name.push(0);
                self.queue_control(id, control::PORT_NAME, 1, &name);
                // The host side (the SPICE server) is always there.
                self.queue_control(id, control::PORT_OPEN, 1, &[]);
            }
            control::PORT_OPEN => {
                let Some(i) = self.port(id) else {
                    warn!("virtio-serial: PORT_OPEN for port {id}, which does not exist");
                    return;
                };
                let open = value != 0;
                if self.state[i - 1].guest_open != open {
                    self.state[i - 1].guest_open = open;
                    self.ports[i - 1].backend.guest_open(open);
                }
            }
            e => debug!("virtio-serial: control event {e} for port {id} ignored"),
        }
    }

    /// Host → guest control messages into the control receive queue.
    fn control_rx(&mut self) -> Result<()> {
        let (mem, q) = (&self.mem, &mut self.queues[CONTROL_RX]);
        while let Some(m) = self.control_out.front() {
            let Some(chain) = next_chain(q, mem)? else {
                break;
            };
            let head = chain.head_index();
            let descs = Self::descriptors(&chain);
            let len = match Self::write_chain(mem, &descs, m) {
                Some(n) if n == m.len() => n,
                _ => {
                    warn!("virtio-serial: control buffer at head {head} too small or bad");
                    0
                }
            };
            if len != 0 {
                self.control_out.pop_front();
            }
            q.add_used(mem, head, len as u32)?;
            self.used[CONTROL_RX] = true;
        }
        Ok(())
    }

    /// Guest → host data of port `i` (1-based), while its backend takes it.
    fn port_tx(&mut self, i: usize) -> Result<()> {
        let (_, tx) = port_queues(i);
        let backend = self.ports[i - 1].backend.clone();
        let mem = &self.mem;
        let q = &mut self.queues[tx];
        loop {
            // A chain the backend refuses goes back to the ring.
            let at = q.next_avail();
            let Some(chain) = next_chain(q, mem)? else {
                break;
            };
            let head = chain.head_index();
            let descs = Self::descriptors(&chain);
            match Self::read_chain(mem, &descs) {
                Some(data) => {
                    if backend.guest_data(&data).is_err() {
                        q.set_next_avail(at);
                        break;
                    }
                }
                None => warn!("virtio-serial: port {i} buffer at head {head} malformed; dropped"),
            }
            q.add_used(mem, head, 0)?;
            self.used[tx] = true;
        }
        Ok(())
    }

    /// Host → guest data of port `i` into its receive buffers.
    fn port_rx(&mut self, i: usize) -> Result<()> {
        let (rx, _) = port_queues(i);
        let port = self.ports[i - 1].clone();
        let mem = &self.mem;
        let q = &mut self.queues[rx];
        let mut done = Vec::new();
        {
            let mut out = lock(&port.out);
            if !self.state[i - 1].guest_open && !out.is_empty() {
                // Linux drops data for a closed port; so do we, at once.
                debug!("virtio-serial: port {i} closed; host data dropped");
                out.clear();
            }
            while !out.is_empty() {
                let Some(chain) = next_chain(q, mem)? else {
                    break;
                };
                let head = chain.head_index();
                let descs = Self::descriptors(&chain);
                // The port is a byte stream (as Linux reads it and QEMU fills
                // it): one buffer takes as many queued messages as fit, so
                // the guest pops, copies and reposts half as many buffers
                // for the agent's 2 KiB chunks in its 4 KiB pages.
                let mut filled = 0;
                while let Some(o) = out.front_mut() {
                    let n = Self::write_chain_at(mem, &descs, filled, &o.data[o.sent..])
                        .unwrap_or_else(|| {
                            warn!("virtio-serial: port {i} receive buffer at head {head} bad");
                            0
                        });
                    o.sent += n;
                    filled += n;
                    if o.sent < o.data.len() {
                        // The buffer is full (or bad).
                        break;
                    }
                    if let Some(f) = out.pop_front().and_then(|o| o.done) {
                        done.push(f);
                    }
                }
                q.add_used(mem, head, filled as u32)?;
                self.used[rx] = true;
                if filled == 0 {
                    // A bad or empty buffer: it went back used, try the next.
                    continue;
                }
            }
        }
        // Outside the lock: a callback may queue more.
        for f in done {
            f();
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        self.control_tx()?;
        for i in 1..=self.ports.len() {
            self.port_tx(i)?;
            self.port_rx(i)?;
        }
        self.control_rx()?;
        for (q, used) in self.used.iter_mut().enumerate() {
            if std::mem::take(used) && queue_needs_interrupt(&mut self.queues[q], &self.mem)? {
                self.interrupt.signal_used_queue(q);
            }
        }
        for p in &self.ports {
            p.backend.round_done();
        }
        Ok(())
    }
}

impl WorkerHandler for SerialWorker {
    fn register(&mut self, events: &WorkerEvents) -> std::io::Result<()> {
        for (i, (k, q)) in self.kicks.iter().zip(&self.queues).enumerate() {
            if q.ready() {
                events.add(&**k, i as Token)?;
            }
        }
        events.add(&*self.wake, WAKE)
    }

    fn handle(&mut self, token: Token, _events: &WorkerEvents) {
        let fd = match self.kicks.get(token as usize) {
            Some(k) => k.clone(),
            None => self.wake.clone(),
        };
        let _ = fd.read();
        if self.interrupt.needs_reset() || !self.interrupt.dma_enabled() {
            return;
        }
        // Every queue is looked at: a kick anywhere may unblock anything.
        if let Err(e) = self.run() {
            self.interrupt
                .signal_needs_reset(&format!("virtio-serial queue: {e}"));
        }
    }
}

/// A virtio-serial device with named ports 1..=n.
pub struct VirtioSerial {
    ports: Vec<Arc<PortShared>>,
    queue_sizes: Vec<u16>,
    wake: Arc<EventFd>,
    worker: Option<Worker<SerialWorker>>,
    name: String,
}

impl VirtioSerial {
    /// A device whose port n (from 1) is `ports[n - 1]`: (name, backend).
    /// Returns the device and each port's handle, in the same order.
    pub fn new(ports: Vec<(String, Arc<dyn SerialBackend>)>) -> Result<(Self, Vec<SerialPort>)> {
        let wake = Arc::new(
            EventFd::new(EFD_NONBLOCK)
                .map_err(|e| Error::Worker(format!("virtio-serial eventfd: {e}")))?,
        );
        let shared: Vec<Arc<PortShared>> = ports
            .into_iter()
            .map(|(name, backend)| {
                Arc::new(PortShared {
                    name,
                    backend,
                    out: Mutex::new(VecDeque::new()),
                    wake: wake.clone(),
                })
            })
            .collect();
        let handles = shared.iter().map(|p| SerialPort(p.clone())).collect();
        // Port 0 and the control queues, then one pair per port.
        let queue_sizes = vec![QUEUE_SIZE; 2 * (shared.len() + 2)];
        Ok((
            VirtioSerial {
                ports: shared,
                queue_sizes,
                wake,
                worker: None,
                name: "virtio-serial".into(),
            },
            handles,
        ))
    }

    /// Name the worker thread (15 bytes show in `ps`).
    pub fn set_thread_name(&mut self, name: &str) {
        self.name = name.to_owned();
    }

    fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            if let Some(w) = w.stop() {
                for (p, s) in w.ports.iter().zip(&w.state) {
                    if s.guest_open {
                        p.backend.guest_open(false);
                    }
                }
            }
        }
        for p in &self.ports {
            lock(&p.out).clear();
        }
    }

    /// The config: cols, rows (no console), max_nr_ports, emerg_wr.
    fn config(&self) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[4..8].copy_from_slice(&((self.ports.len() + 1) as u32).to_le_bytes());
        c
    }
}

impl VirtioDevice for VirtioSerial {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn pci_class(&self) -> u32 {
        PCI_CLASS_COMM_OTHER
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1 | 1 << F_MULTIPORT
    }

    fn ack_features(&mut self, _features: u64) {}

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let c = self.config();
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|a| c.get(a)).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // emerg_wr (F_EMERG_WRITE) is not offered.
        debug!("virtio-serial: config write at {offset:#x} ignored");
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<()> {
        if !ctx.queues.get(CONTROL_TX).is_some_and(|q| q.ready())
            || !ctx.queues.get(CONTROL_RX).is_some_and(|q| q.ready())
        {
            // Without MULTIPORT's control queues there is nothing we serve.
            debug!("virtio-serial: DRIVER_OK without control queues");
            return Ok(());
        }
        let n = ctx.queues.len();
        let worker = SerialWorker {
            ports: self.ports.clone(),
            state: vec![PortState::default(); self.ports.len()],
            mem: ctx.mem,
            queues: ctx.queues,
            kicks: ctx.kicks,
            wake: self.wake.clone(),
            interrupt: ctx.interrupt,
            control_out: VecDeque::new(),
            used: vec![false; n],
        };
        self.worker = Some(Worker::spawn(&self.name, worker)?);
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }

    fn pause(&mut self) {
        if let Some(w) = &self.worker {
            w.pause();
        }
    }

    fn resume(&mut self) {
        if let Some(w) = &self.worker {
            w.resume();
        }
    }
}

#[cfg(test)]
#[path = "serial_tests.rs"]
mod tests;
