//! What a virtio device model implements, independent of the transport, and the
//! state a transport shares with a running device.
//!
//! The transport (`pci.rs`) owns feature negotiation, status and queue setup; the
//! device only sees the result: the acked features, then `activate` with ready
//! queues, their kick eventfds and the interrupt, at DRIVER_OK. A device runs its
//! queues on a worker thread (`crate::worker`) woken by the kick eventfds, which
//! KVM signals on a guest notify (ioeventfd) or the transport writes when a
//! notify traps; the worker interrupts through `VirtioInterrupt` and never takes
//! the device's lock.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::error;
use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::pci::PciInterrupt;
use crate::Result;

/// ISR bit 0: a queue has new used buffers.
pub const ISR_QUEUE: u8 = 1 << 0;
/// ISR bit 1: the device configuration changed (or the device needs a reset).
pub const ISR_CONFIG: u8 = 1 << 1;
/// MSI-X "no vector": the event sends no message.
pub const NO_VECTOR: u16 = 0xffff;

/// What a device gets at DRIVER_OK.
pub struct ActivateContext {
    pub mem: GuestMemoryMmap<()>,
    /// One per `queue_max_sizes()` entry; queues the driver did not enable are
    /// not `ready()`. Enabled queues have passed `Queue::is_valid` against `mem`.
    pub queues: Vec<Queue>,
    /// Queue `i`'s notifications, in the same order. Drained at activation.
    pub kicks: Vec<Arc<EventFd>>,
    pub interrupt: Arc<VirtioInterrupt>,
}

/// A virtio device model (virtio 1.x, split virtqueues).
pub trait VirtioDevice: Send {
    /// Virtio device ID (2 = block, 3 = console, 18 = input, ...).
    fn device_type(&self) -> u32;

    /// PCI class code (base class << 16 | subclass << 8 | prog-if).
    fn pci_class(&self) -> u32;

    /// Maximum size of each queue; the length is the number of queues.
    /// Each must be a power of two (the split-ring rule).
    fn queue_max_sizes(&self) -> &[u16];

    /// Feature bits offered to the driver. The transport adds nothing: a device must
    /// include `VIRTIO_F_VERSION_1` itself.
    fn features(&self) -> u64;

    /// The driver's final feature set, already checked to be a subset of `features()`.
    fn ack_features(&mut self, features: u64);

    /// Read device-specific config at `offset`. Bytes past the end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Write device-specific config at `offset`. Read-only fields ignore writes.
    fn write_config(&mut self, offset: u64, data: &[u8]);

    /// The driver set DRIVER_OK: start serving the queues (typically on a
    /// worker thread woken by `ctx.kicks`). An error marks the device as needing
    /// a reset.
    fn activate(&mut self, ctx: ActivateContext) -> Result<()>;

    /// The driver (status 0) or the machine reset the device: stop the worker
    /// once the request in progress is complete, then drop queues, memory and
    /// acked features.
    fn reset(&mut self);

    /// The machine is paused (QMP `stop`, or about to reset): let the worker
    /// finish what it is doing and park. Kicks meanwhile wait for `resume`.
    fn pause(&mut self) {}

    fn resume(&mut self) {}

    /// The machine is exiting: stop like `reset`, and make everything the guest
    /// wrote durable (the VMM calls this on every exit path).
    fn shutdown(&mut self) -> std::io::Result<()> {
        self.reset();
        Ok(())
    }
}

struct IrqState {
    isr: u8,
    config_generation: u8,
}

/// The interrupt state a transport shares with its running device, plus the two
/// transport facts a worker must see without the device's lock (bus mastering,
/// and whether the device has failed).
///
/// Every event sets its ISR bit and drives the function's INTx level from the
/// ISR (`PciInterrupt` keeps INTx quiet while MSI-X is enabled), and sends the
/// event's MSI-X vector (`msix_config` for configuration events, the queue's
/// `queue_msix_vector` for used buffers) unless that is `NO_VECTOR`. The ISR is
/// cleared by the driver reading it, which drops INTx.
pub struct VirtioInterrupt {
    pci: Arc<PciInterrupt>,
    state: Mutex<IrqState>,
    config_vector: AtomicU16,
    queue_vectors: Vec<AtomicU16>,
    needs_reset: AtomicBool,
    dma_enabled: AtomicBool,
}

impl VirtioInterrupt {
    /// Interrupts of a device with `queues` queues on PCI function `pci`.
    pub fn new(pci: Arc<PciInterrupt>, queues: usize) -> Self {
        Self {
            pci,
            state: Mutex::new(IrqState {
                isr: 0,
                config_generation: 0,
            }),
            config_vector: AtomicU16::new(NO_VECTOR),
            queue_vectors: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
            needs_reset: AtomicBool::new(false),
            dma_enabled: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, IrqState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set ISR bits and send `vector`. Under the ISR lock, so two racing events
    /// cannot leave the INTx level disagreeing with the ISR.
    fn raise(&self, bits: u8, vector: u16) {
        let mut st = self.lock();
        st.isr |= bits;
        self.pci.set_intx(st.isr != 0);
        if vector != NO_VECTOR {
            self.pci.notify(vector);
        }
    }

    /// Queue `index` has new used buffers.
    pub fn signal_used_queue(&self, index: usize) {
        let vector = self
            .queue_vectors
            .get(index)
            .map_or(NO_VECTOR, |v| v.load(Ordering::Acquire));
        self.raise(ISR_QUEUE, vector);
    }

    /// Raise a configuration-change interrupt without changing the generation.
    pub fn signal_config(&self) {
        self.raise(ISR_CONFIG, self.config_vector.load(Ordering::Acquire));
    }

    /// The device changed its config space: bump the generation the driver
    /// re-checks around multi-field reads, and raise a config interrupt.
    pub fn config_changed(&self) {
        {
            let mut st = self.lock();
            st.config_generation = st.config_generation.wrapping_add(1);
        }
        self.signal_config();
    }

    /// The device cannot go on (a broken ring): the transport shows
    /// DEVICE_NEEDS_RESET and the driver gets a config interrupt. Callable from
    /// the worker.
    pub fn signal_needs_reset(&self, why: &str) {
        error!("virtio: device needs reset: {why}");
        if !self.needs_reset.swap(true, Ordering::AcqRel) {
            self.signal_config();
        }
    }

    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::Acquire)
    }

    /// Whether the function may access guest memory (COMMAND.Bus Master).
    pub fn dma_enabled(&self) -> bool {
        self.dma_enabled.load(Ordering::Acquire)
    }

    pub fn set_dma_enabled(&self, on: bool) {
        self.dma_enabled.store(on, Ordering::Release);
    }

    pub fn config_generation(&self) -> u8 {
        self.lock().config_generation
    }

    /// Driver read of the ISR register: returns and clears it, lowering INTx.
    pub fn read_and_clear_isr(&self) -> u8 {
        let mut st = self.lock();
        let isr = std::mem::take(&mut st.isr);
        self.pci.set_intx(false);
        isr
    }

    pub fn config_vector(&self) -> u16 {
        self.config_vector.load(Ordering::Acquire)
    }

    pub fn set_config_vector(&self, vector: u16) {
        self.config_vector.store(vector, Ordering::Release);
    }

    /// Queue `index`'s vector (`NO_VECTOR` for a queue that does not exist).
    pub fn queue_vector(&self, index: usize) -> u16 {
        self.queue_vectors
            .get(index)
            .map_or(NO_VECTOR, |v| v.load(Ordering::Acquire))
    }

    pub fn set_queue_vector(&self, index: usize, vector: u16) {
        if let Some(v) = self.queue_vectors.get(index) {
            v.store(vector, Ordering::Release);
        }
    }

    /// Device reset: nothing pending, vectors unassigned, no failure.
    pub fn clear(&self) {
        let mut st = self.lock();
        st.isr = 0;
        self.pci.set_intx(false);
        self.pci.clear_pending();
        self.config_vector.store(NO_VECTOR, Ordering::Release);
        for v in &self.queue_vectors {
            v.store(NO_VECTOR, Ordering::Release);
        }
        self.needs_reset.store(false, Ordering::Release);
    }
}

/// The next available chain, or None when the driver has given us nothing more.
/// Unlike `Queue::pop_descriptor_chain`, a broken avail ring (index too far ahead,
/// queue not ready) is an error, so the transport can flag DEVICE_NEEDS_RESET.
pub fn next_chain<'a>(
    queue: &mut Queue,
    mem: &'a GuestMemoryMmap<()>,
) -> Result<Option<DescriptorChain<&'a GuestMemoryMmap<()>>>> {
    Ok(queue.iter(mem)?.next())
}

/// After adding used buffers: should the driver be interrupted?
///
/// With EVENT_IDX the queue decides. Without it the driver may set
/// VRING_AVAIL_F_NO_INTERRUPT (SeaBIOS always does: it polls), which we honour so a
/// polling driver is not left with a level interrupt stuck high.
pub fn queue_needs_interrupt(queue: &mut Queue, mem: &GuestMemoryMmap<()>) -> Result<bool> {
    // needs_notification also orders our used-ring writes before the flag read.
    let needed = queue.needs_notification(mem)?;
    if queue.event_idx_enabled() {
        return Ok(needed);
    }
    let flags: u16 = mem.read_obj(GuestAddress(queue.avail_ring()))?;
    Ok(u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::RecordingLine;
    use crate::pci::config::{COMMAND, COMMAND_INTX_DISABLE, STATUS, STATUS_INTERRUPT};
    use crate::pci::msi::test_util::RecordingMsi;
    use crate::pci::{MsixLayout, PciConfig};

    #[test]
    fn intx_level_follows_isr_and_mask() {
        let line = Arc::new(RecordingLine::default());
        let mut config = PciConfig::new(0x1af4, 0x1042, 0x010000, 1);
        let pci = Arc::new(PciInterrupt::new(&mut config, line.clone()));
        let irq = VirtioInterrupt::new(pci.clone(), 1);
        irq.signal_used_queue(0);
        assert!(line.is_high());
        // A second event while high emits no new edge.
        irq.signal_config();
        assert_eq!(line.levels.lock().unwrap().len(), 1);
        config.write(COMMAND, &COMMAND_INTX_DISABLE.to_le_bytes());
        pci.config_written(&config, COMMAND, 2);
        assert!(!line.is_high());
        pci.config_read(&mut config);
        assert_ne!(config.u16_at(STATUS) & STATUS_INTERRUPT, 0);
        config.write(COMMAND, &[0, 0]);
        pci.config_written(&config, COMMAND, 2);
        assert!(line.is_high());
        assert_eq!(irq.read_and_clear_isr(), ISR_QUEUE | ISR_CONFIG);
        assert!(!line.is_high());
        pci.config_read(&mut config);
        assert_eq!(config.u16_at(STATUS) & STATUS_INTERRUPT, 0);
        assert_eq!(irq.read_and_clear_isr(), 0);
        irq.config_changed();
        assert_eq!(irq.config_generation(), 1);
        irq.signal_needs_reset("test");
        assert!(irq.needs_reset());
        irq.clear();
        assert!(!line.is_high());
        assert!(!irq.needs_reset());
        // Unknown queues have no vector and raise only the ISR.
        assert_eq!(irq.queue_vector(5), NO_VECTOR);
        irq.signal_used_queue(5);
        assert!(line.is_high());
    }

    #[test]
    fn vectors_route_events_when_msix_is_on() {
        let line = Arc::new(RecordingLine::default());
        let ctl = Arc::new(RecordingMsi::default());
        let mut config = PciConfig::new(0x1af4, 0x1042, 0x010000, 1);
        let pci = Arc::new(
            PciInterrupt::new(&mut config, line.clone())
                .with_msix(&mut config, MsixLayout::own_bar(1, 3), &*ctl)
                .unwrap(),
        );
        config.seal();
        let cap = config.u8_at(crate::pci::config::CAPABILITIES_PTR) as usize;
        config.write(cap + 3, &[0x80]);
        pci.config_written(&config, cap + 3, 1);
        for v in 0..3u64 {
            let e = v * 16;
            pci.bar_write(1, e, &0xfee0_0000u32.to_le_bytes());
            pci.bar_write(1, e + 8, &(0x40 + v as u32).to_le_bytes());
            pci.bar_write(1, e + 12, &0u32.to_le_bytes());
        }
        let irq = VirtioInterrupt::new(pci, 2);
        // vp_find_vqs_msix with shared vectors: config on 0, both queues on 1.
        irq.set_config_vector(0);
        irq.set_queue_vector(0, 1);
        irq.set_queue_vector(1, 1);
        irq.signal_used_queue(0);
        irq.signal_used_queue(1);
        irq.config_changed();
        assert_eq!(ctl.take_fired(1), [0x41, 0x41]);
        assert_eq!(ctl.take_fired(0), [0x40]);
        assert!(!line.is_high(), "no INTx while MSI-X is on");
        // NO_VECTOR: a queue without a callback sends nothing.
        irq.set_queue_vector(1, NO_VECTOR);
        irq.signal_used_queue(1);
        assert_eq!(ctl.fired(1), 0);
        irq.clear();
        assert_eq!(irq.config_vector(), NO_VECTOR);
        assert_eq!(irq.queue_vector(0), NO_VECTOR);
    }

    #[test]
    fn no_interrupt_flag_is_honoured() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let mut q = Queue::new(16).unwrap();
        q.set_avail_ring_address(Some(0x1000), None);
        assert!(queue_needs_interrupt(&mut q, &mem).unwrap());
        mem.write_obj(1u16, GuestAddress(0x1000)).unwrap();
        assert!(!queue_needs_interrupt(&mut q, &mem).unwrap());
        // An avail ring outside guest memory is an error, not a panic.
        q.set_avail_ring_address(Some(0x2_0000), None);
        assert!(queue_needs_interrupt(&mut q, &mem).is_err());
    }
}
