//! What a virtio device model implements, independent of the transport, and the
//! interrupt state a transport shares with it.
//!
//! The transport (`pci.rs`) owns feature negotiation, status and queue setup; the
//! device only sees the result: the acked features, then `activate` with ready
//! queues, then `process_queue` whenever the driver kicks a queue.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::pci::intx_pin::IntxPin;
use crate::pci::PciConfig;
use crate::{IrqLine, Result};

/// ISR bit 0: a queue has new used buffers.
pub const ISR_QUEUE: u8 = 1 << 0;
/// ISR bit 1: the device configuration changed (or the device needs a reset).
pub const ISR_CONFIG: u8 = 1 << 1;

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

    /// The driver set DRIVER_OK. `queues` has one entry per `queue_max_sizes()` entry;
    /// queues the driver did not enable are not `ready()`. Enabled queues have passed
    /// `Queue::is_valid` against `mem`. An error marks the device as needing a reset.
    fn activate(
        &mut self,
        mem: GuestMemoryMmap<()>,
        queues: Vec<Queue>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Result<()>;

    /// The driver notified queue `index` (already checked < number of queues).
    /// Only called after a successful `activate`. Per-request problems are the
    /// device's business (report them in the request); return an error only when
    /// the ring itself is broken, which marks the device as needing a reset.
    fn process_queue(&mut self, index: usize) -> Result<()>;

    /// Drop queues, memory and acked features: the driver reset the device.
    fn reset(&mut self);
}

struct IrqState {
    isr: u8,
    /// The INTx pin; pending while any ISR bit is set.
    pin: IntxPin,
    config_generation: u8,
}

/// The ISR status byte and the INTx line it drives, shared by transport and device
/// so either side (and later, a backend thread) can raise an interrupt.
///
/// The line is level-triggered: it stays high while any ISR bit is set (and INTx is
/// not disabled) and drops when the driver reads the ISR, which clears it.
pub struct VirtioInterrupt {
    state: Mutex<IrqState>,
}

impl VirtioInterrupt {
    pub fn new(line: Arc<dyn IrqLine>) -> Self {
        Self {
            state: Mutex::new(IrqState {
                isr: 0,
                pin: IntxPin::new(line),
                config_generation: 0,
            }),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut IrqState) -> T) -> T {
        let mut st = self.state.lock().expect("virtio interrupt lock poisoned");
        let ret = f(&mut st);
        // Under the lock, so two racing updates cannot leave the line
        // disagreeing with the ISR.
        let pending = st.isr != 0;
        st.pin.set_pending(pending);
        ret
    }

    /// A queue has new used buffers.
    pub fn signal_used_queue(&self) {
        self.with_state(|st| st.isr |= ISR_QUEUE);
    }

    /// Raise a configuration-change interrupt without changing the generation
    /// (used for DEVICE_NEEDS_RESET).
    pub fn signal_config(&self) {
        self.with_state(|st| st.isr |= ISR_CONFIG);
    }

    /// The device changed its config space: bump the generation the driver
    /// re-checks around multi-field reads, and raise a config interrupt.
    pub fn config_changed(&self) {
        self.with_state(|st| {
            st.config_generation = st.config_generation.wrapping_add(1);
            st.isr |= ISR_CONFIG;
        });
    }

    pub fn config_generation(&self) -> u8 {
        self.with_state(|st| st.config_generation)
    }

    /// Driver read of the ISR register: returns and clears it, lowering the line.
    pub fn read_and_clear_isr(&self) -> u8 {
        self.with_state(|st| std::mem::take(&mut st.isr))
    }

    /// Whether an interrupt is pending, masked or not.
    pub fn pending(&self) -> bool {
        self.with_state(|st| st.pin.pending())
    }

    /// Follow `config`'s COMMAND register (after a config write or reset).
    pub fn follow_command(&self, config: &PciConfig) {
        self.with_state(|st| st.pin.follow_command(config));
    }

    /// Mirror the pending state into `config`'s STATUS.Interrupt (before a
    /// config read).
    pub fn mirror_status(&self, config: &mut PciConfig) {
        self.with_state(|st| st.pin.mirror_status(config));
    }

    /// Device reset: forget pending interrupts.
    pub fn clear(&self) {
        self.with_state(|st| st.isr = 0);
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

    #[test]
    fn level_follows_isr_and_mask() {
        let line = Arc::new(RecordingLine::default());
        let irq = VirtioInterrupt::new(line.clone());
        irq.signal_used_queue();
        assert!(line.is_high());
        // A second event while high emits no new edge.
        irq.signal_config();
        assert_eq!(line.levels.lock().unwrap().len(), 1);
        let mut config = PciConfig::new(0x1af4, 0x1042, 0x010000, 1);
        config.write(COMMAND, &COMMAND_INTX_DISABLE.to_le_bytes());
        irq.follow_command(&config);
        assert!(!line.is_high());
        assert!(irq.pending());
        irq.mirror_status(&mut config);
        assert_ne!(config.u16_at(STATUS) & STATUS_INTERRUPT, 0);
        config.write(COMMAND, &[0, 0]);
        irq.follow_command(&config);
        assert!(line.is_high());
        assert_eq!(irq.read_and_clear_isr(), ISR_QUEUE | ISR_CONFIG);
        assert!(!line.is_high());
        irq.mirror_status(&mut config);
        assert_eq!(config.u16_at(STATUS) & STATUS_INTERRUPT, 0);
        assert_eq!(irq.read_and_clear_isr(), 0);
        irq.config_changed();
        assert_eq!(irq.config_generation(), 1);
        irq.clear();
        assert!(!line.is_high());
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
