//! The SPICE agent's path: the virtio-serial port `com.redhat.spice.0` that
//! spice-vdagent opens, bridged to the SPICE server's agent port.
//!
//! Guest → client: the port's bytes are cut into VDI chunks; client-port
//! chunks go to the server (`AgentLink::send`, one chunk per AGENT_DATA); when
//! the server has no room, the chunks already cut wait here and the guest's
//! next buffer stays in its ring until the server calls `resume`.
//! Client → guest: each AGENT_DATA becomes one chunk for the client port; its
//! token goes back (`AgentLink::consumed`, in batches) once the guest has read
//! all of it.
//! The guest opening or closing the port is the agent connecting or
//! disconnecting; a client leaving is told to the agent (CLIENT_DISCONNECTED).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use devices::vdagent::{self, ChunkReader};
use devices::virtio::serial::Busy;
use devices::virtio::{SerialBackend, SerialPort, VirtioPciDevice, VirtioSerial};
use spice::port::{AgentLink, AgentPort, AGENT_CLIENT_TOKENS, AGENT_TOKEN_BATCH};
use tracing::{debug, warn};

use crate::devices::{DeviceManager, Slot};
use crate::error::Result;
use crate::spice_port::PortBridge;

/// The virtio-serial port name spice-vdagentd opens.
pub const PORT_NAME: &str = "com.redhat.spice.0";
/// The port's id in QMP's VSERPORT_CHANGE (QEMU's is the virtserialport
/// device's id, the chardev's name for the agent by convention).
pub const PORT_ID: &str = "vdagent";

// Every message a client may have in flight fits in the port's queue: the
// port must never refuse client data (a chunk is its payload plus 8 bytes).
const _: () = assert!(
    AGENT_CLIENT_TOKENS as usize * (vdagent::MAX_CHUNK + 8) <= devices::virtio::serial::MAX_QUEUED
);

/// Told when the guest opens or closes the port.
pub type OpenListener = Box<dyn Fn(bool) + Send + Sync>;

#[derive(Default)]
struct FromGuest {
    reader: ChunkReader,
    /// Client chunks cut from the guest's data that the server had no room for.
    held: VecDeque<Vec<u8>>,
    open: bool,
}

/// What the worker's round owes the MAIN channel, told at its end
/// (`round_done`) in one wake-up, after the guest has its buffers back.
#[derive(Default)]
struct Owed {
    /// Guest data was staged for the client.
    staged: AtomicBool,
    /// Client messages the guest has taken since the last round.
    consumed: AtomicU32,
}

#[derive(Default)]
pub struct AgentBridge {
    link: OnceLock<AgentLink>,
    port: OnceLock<SerialPort>,
    from_guest: Mutex<FromGuest>,
    on_open: OnceLock<OpenListener>,
    owed: Arc<Owed>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AgentBridge {
    /// The virtio-serial port's handle, once the device exists.
    pub fn set_port(&self, port: SerialPort) {
        if self.port.set(port).is_err() {
            warn!("agent: port set twice");
        }
    }

    /// `f` hears of every guest open and close of the port from now on (QMP's
    /// VSERPORT_CHANGE).
    pub fn on_guest_open(&self, f: OpenListener) {
        if self.on_open.set(f).is_err() {
            warn!("agent: open listener set twice");
        }
    }

    /// Hands held chunks to the server; true when none are left. The MAIN
    /// channel is woken at the end of the worker's round.
    fn flush(&self, g: &mut FromGuest) -> bool {
        let Some(link) = self.link.get() else {
            g.held.clear();
            return true;
        };
        if g.held.is_empty() {
            return true;
        }
        self.owed.staged.store(true, Ordering::Release);
        link.stage_from(&mut g.held)
    }
}

impl SerialBackend for AgentBridge {
    fn guest_open(&self, open: bool) {
        let mut g = lock(&self.from_guest);
        g.reader.reset();
        g.held.clear();
        // What the old agent took is forgotten with it (set_connected).
        self.owed.consumed.store(0, Ordering::Release);
        g.open = open;
        if let Some(link) = self.link.get() {
            link.set_connected(open);
        }
        drop(g);
        if let Some(f) = self.on_open.get() {
            f(open);
        }
    }

    fn guest_data(&self, data: &[u8]) -> std::result::Result<(), Busy> {
        let mut g = lock(&self.from_guest);
        if !self.flush(&mut g) {
            return Err(Busy);
        }
        let mut chunks = Vec::new();
        g.reader.feed(data, |port, payload| match port {
            vdagent::PORT_CLIENT => chunks.push(payload.to_vec()),
            p => debug!(
                port = p,
                len = payload.len(),
                "agent: chunk not for the client dropped"
            ),
        });
        g.held.extend(chunks);
        // Taken either way: what the server cannot take yet waits in `held`.
        self.flush(&mut g);
        Ok(())
    }

    fn round_done(&self) {
        let Some(link) = self.link.get() else {
            return;
        };
        // Tokens go back in batches (the relay sends AGENT_TOKEN per
        // AGENT_TOKEN_BATCH, or once the guest took all): fewer are kept here
        // without waking the MAIN channel, unless the guest has everything
        // (then no later round would bring them).
        let consumed = self.owed.consumed.load(Ordering::Acquire);
        let drained = self.port.get().is_none_or(SerialPort::is_drained);
        let consumed = if consumed >= AGENT_TOKEN_BATCH || (consumed > 0 && drained) {
            self.owed.consumed.fetch_sub(consumed, Ordering::AcqRel);
            consumed
        } else {
            0
        };
        let staged = self.owed.staged.swap(false, Ordering::AcqRel);
        if consumed > 0 {
            // Wakes the relay too.
            link.consumed(consumed);
        } else if staged {
            link.wake();
        }
    }
}

impl AgentPort for AgentBridge {
    fn attach(&self, link: AgentLink) {
        link.set_connected(lock(&self.from_guest).open);
        if self.link.set(link).is_err() {
            warn!("agent: attached twice");
        }
    }

    fn client_data(&self, data: &[u8]) {
        let (Some(port), Some(link)) = (self.port.get(), self.link.get()) else {
            return;
        };
        // Counted here, returned at the end of the worker's round: one
        // wake-up of the MAIN channel per round, not per message.
        let owed = self.owed.clone();
        let msg = vdagent::chunk(vdagent::PORT_CLIENT, data);
        let done = move || {
            owed.consumed.fetch_add(1, Ordering::AcqRel);
        };
        if port.send(msg, Some(Box::new(done))).is_err() {
            // The client's tokens never fill the port's queue (see the
            // assertion below); if it is full anyway the data is lost, but
            // the token comes back.
            warn!("agent: guest port full; client data dropped");
            link.consumed(1);
        }
    }

    fn client_attached(&self, attached: bool) {
        let Some(port) = self.port.get() else {
            return;
        };
        if !attached && lock(&self.from_guest).open {
            let msg = vdagent::empty_message(vdagent::PORT_SERVER, vdagent::CLIENT_DISCONNECTED);
            if port.send(msg, None).is_err() {
                warn!("agent: guest port full; CLIENT_DISCONNECTED dropped");
            }
        }
    }

    fn resume(&self) {
        let flushed = self.flush(&mut lock(&self.from_guest));
        // Called by the MAIN channel after it took its queue: woken again, it
        // sends what was just staged (or resumes us again once it has room).
        if let Some(link) = self.link.get() {
            link.wake();
        }
        if flushed {
            if let Some(p) = self.port.get() {
                p.resume();
            }
        }
    }
}

/// The agent's bridge (None with `--no-agent`) and one per `--spice-port`.
pub type SerialBridges = (Option<Arc<AgentBridge>>, Vec<Arc<PortBridge>>);

/// Plug in a virtio-serial device with the agent's port (unless `agent` is
/// false) and one port per `--spice-port` name; returns the bridges to give
/// the SPICE server. No device when there is no port.
pub fn add(dm: &mut DeviceManager, agent: bool, named: &[String]) -> Result<SerialBridges> {
    let bridge = agent.then(|| Arc::new(AgentBridge::default()));
    let named: Vec<Arc<PortBridge>> = named.iter().map(|n| Arc::new(PortBridge::new(n))).collect();
    let mut backends: Vec<(String, Arc<dyn SerialBackend>)> = Vec::new();
    if let Some(b) = &bridge {
        backends.push((PORT_NAME.to_owned(), b.clone()));
    }
    for p in &named {
        backends.push((p.name().to_owned(), p.clone()));
    }
    if backends.is_empty() {
        return Ok((None, named));
    }
    let (mut serial, ports) = VirtioSerial::new(backends)?;
    dm.add_pci("virtio-serial", Slot::Next, |w| {
        serial.set_thread_name(&format!("virtio-ser@{:02x}", w.slot));
        VirtioPciDevice::new(serial, w.mem.clone(), w.intx, w.msi)
    })?;
    let mut ports = ports.into_iter();
    if let Some(b) = &bridge {
        b.set_port(ports.next().expect("one port per backend"));
    }
    for (p, port) in named.iter().zip(ports) {
        p.set_port(port);
    }
    Ok((bridge, named))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_opening_and_closing_the_port_is_heard() {
        let bridge = AgentBridge::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        bridge.on_guest_open(Box::new(move |open| lock(&h).push(open)));
        bridge.guest_open(true);
        bridge.guest_open(false);
        assert_eq!(*lock(&heard), [true, false]);
    }
}
