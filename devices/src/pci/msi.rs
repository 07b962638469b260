//! Message-signalled interrupts: how a device's MSI or MSI-X vector reaches the
//! guest, and the MSI capability (the older, config-space-only form).
//!
//! A vector is an `MsiVector` the VMM hands out through `MsiController`: on KVM a
//! GSI with an MSI route plus an irqfd, so `fire` is one eventfd write that any
//! thread (a device worker, a vCPU) may do without locking the device. The
//! masking and pending rules of the PCI spec live here and in `msix.rs`, not in
//! the VMM: the VMM only routes and delivers.

use std::sync::Arc;

use tracing::{debug, warn};

use super::PciConfig;
use crate::Result;

/// The message a vector sends: a 4-byte write of `data` to `address`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// x86 MSI addresses fall in the local APIC's window, 0xFEE0_0000..0xFF00_0000.
const LAPIC_MSI_MASK: u64 = 0xffff_ffff_fff0_0000;
const LAPIC_MSI_BASE: u64 = 0xfee0_0000;

impl MsiMessage {
    /// Whether the message can reach a CPU: on x86 the address must lie in the
    /// LAPIC's MSI window (upper 32 bits zero; x2APIC's extended destination
    /// IDs are not offered). A guest writing anything else gets no interrupt.
    pub fn is_deliverable(&self) -> bool {
        self.address & LAPIC_MSI_MASK == LAPIC_MSI_BASE
    }
}

/// One interrupt vector the VMM delivers as an MSI message.
pub trait MsiVector: Send + Sync {
    /// Deliver `msg` when fired from now on (`is_deliverable()` holds).
    fn set_route(&self, msg: MsiMessage);
    /// Send one interrupt with the last routed message. Callable from any thread.
    fn fire(&self);
}

/// Where MSI vectors come from: the VMM (KVM GSI routing + irqfd), or a
/// recording implementation in tests.
pub trait MsiController: Send + Sync {
    /// A new vector, not routed yet.
    fn new_vector(&self) -> Result<Arc<dyn MsiVector>>;
}

/// One vector as a function keeps it: the message the guest programmed, what
/// the `MsiVector` was last routed to, and whether an interrupt is pending.
pub(crate) struct VectorState {
    pub vector: Arc<dyn MsiVector>,
    pub message: MsiMessage,
    /// The message `vector` routes now; `None` before the first route.
    routed: Option<MsiMessage>,
    pub pending: bool,
    /// A bad message was already logged at a fire (once per programming).
    warned: bool,
}

impl VectorState {
    pub fn new(vector: Arc<dyn MsiVector>) -> Self {
        Self {
            vector,
            message: MsiMessage::default(),
            routed: None,
            pending: false,
            warned: false,
        }
    }

    pub fn set_message(&mut self, message: MsiMessage) {
        if message != self.message {
            self.message = message;
            self.warned = false;
        }
    }

    /// Send one interrupt now (the caller checked the masks). Routes lazily:
    /// a guest programs an entry in several writes while it is masked, and only
    /// the final message needs a (costly) routing update.
    pub fn deliver(&mut self, what: &str, index: usize) {
        if !self.message.is_deliverable() {
            if !std::mem::replace(&mut self.warned, true) {
                warn!(
                    "{what} vector {index}: message address {:#x} is not an APIC address; \
                     interrupt dropped",
                    self.message.address
                );
            }
            return;
        }
        if self.routed != Some(self.message) {
            self.vector.set_route(self.message);
            self.routed = Some(self.message);
        }
        self.vector.fire();
    }

    /// The guest unmasked the vector (or re-enabled the function): send what
    /// was held back.
    pub fn deliver_pending(&mut self, what: &str, index: usize) {
        if std::mem::take(&mut self.pending) {
            debug!("{what} vector {index}: delivering pending interrupt on unmask");
            self.deliver(what, index);
        }
    }
}

/// Create `count` vectors from `controller`.
pub(crate) fn new_vectors(
    controller: &dyn MsiController,
    count: usize,
) -> Result<Vec<VectorState>> {
    (0..count)
        .map(|_| controller.new_vector().map(VectorState::new))
        .collect()
}

pub const MSI_CAP_ID: u8 = 0x05;
/// Message Control bits.
const MSI_ENABLE: u16 = 1 << 0;
const MSI_MMC_SHIFT: u16 = 1;
const MSI_MME_SHIFT: u16 = 4;
const MSI_MME_MASK: u16 = 0x7 << MSI_MME_SHIFT;
const MSI_64BIT: u16 = 1 << 7;
const MSI_PER_VECTOR_MASK: u16 = 1 << 8;
/// Offsets from the capability ID of the 64-bit, per-vector-masking layout we
/// always use (the largest: 24 bytes).
const MSI_CONTROL: usize = 2;
const MSI_ADDRESS_LO: usize = 4;
const MSI_ADDRESS_HI: usize = 8;
const MSI_DATA: usize = 12;
const MSI_MASK_BITS: usize = 16;
const MSI_PENDING_BITS: usize = 20;
pub(crate) const MSI_CAP_LEN: usize = 24;

/// The MSI capability of a function: up to 32 vectors, 64-bit addresses and
/// per-vector masking. A function with `n` vectors enabled sends vector `i` as
/// the programmed data with its low log2(n) bits replaced by `i`.
pub(crate) struct Msi {
    /// Config offset of the capability.
    cap: usize,
    /// Vectors the function asks for (a power of two, 1..=32).
    capable: usize,
    enabled: bool,
    /// Vectors the guest granted (Multiple Message Enable).
    granted: usize,
    mask: u32,
    vectors: Vec<VectorState>,
}

impl Msi {
    /// Add the capability to `config` (before it is sealed) with `count`
    /// vectors (rounded up to a power of two, at most 32).
    pub fn new(
        config: &mut PciConfig,
        count: usize,
        controller: &dyn MsiController,
    ) -> Result<Self> {
        let capable = count.clamp(1, 32).next_power_of_two();
        let mmc = capable.trailing_zeros() as u16;
        let control = (mmc << MSI_MMC_SHIFT) | MSI_64BIT | MSI_PER_VECTOR_MASK;
        let mut body = [0u8; MSI_CAP_LEN - 2];
        body[0..2].copy_from_slice(&control.to_le_bytes());
        // Writable: enable and MME in control, address (low 2 bits are zero),
        // upper address, data (16 bits), mask bits. Pending bits are ours.
        let mut writable = [false; MSI_CAP_LEN - 2];
        writable[..2].fill(true);
        writable[MSI_ADDRESS_LO - 2..MSI_DATA - 2 + 2].fill(true);
        writable[MSI_MASK_BITS - 2..MSI_MASK_BITS - 2 + 4].fill(true);
        let cap = config.add_capability(MSI_CAP_ID, &body, &writable);
        // Control: only Enable and MME are writable; address bits 1:0 read zero.
        config.set_write_mask(
            cap + MSI_CONTROL,
            &(MSI_ENABLE | MSI_MME_MASK).to_le_bytes(),
        );
        config.set_write_mask(cap + MSI_ADDRESS_LO, &[0xfc]);
        let unused = if capable == 32 {
            0
        } else {
            u32::MAX << capable
        };
        config.set_write_mask(cap + MSI_MASK_BITS, &(!unused).to_le_bytes());
        Ok(Self {
            cap,
            capable,
            enabled: false,
            granted: 1,
            mask: 0,
            vectors: new_vectors(controller, capable)?,
        })
    }

    pub fn touches(&self, offset: usize, len: usize) -> bool {
        offset < self.cap + MSI_CAP_LEN && self.cap < offset + len
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Re-read the capability after a guest config write.
    pub fn follow_config(&mut self, config: &PciConfig) {
        let control = config.u16_at(self.cap + MSI_CONTROL);
        self.enabled = control & MSI_ENABLE != 0;
        let mme = (control & MSI_MME_MASK) >> MSI_MME_SHIFT;
        // A request for more than offered gets what is offered.
        self.granted = (1usize << mme.min(5)).min(self.capable);
        let address = u64::from(config.u32_at(self.cap + MSI_ADDRESS_LO))
            | u64::from(config.u32_at(self.cap + MSI_ADDRESS_HI)) << 32;
        let data = u32::from(config.u16_at(self.cap + MSI_DATA));
        let low_bits = self.granted as u32 - 1;
        for (i, v) in self.vectors.iter_mut().enumerate() {
            v.set_message(MsiMessage {
                address,
                data: (data & !low_bits) | (i as u32 & low_bits),
            });
        }
        self.mask = config.u32_at(self.cap + MSI_MASK_BITS);
        self.deliver_unmasked_pending();
    }

    fn deliver_unmasked_pending(&mut self) {
        if !self.enabled {
            return;
        }
        for (i, v) in self.vectors.iter_mut().enumerate().take(self.granted) {
            if self.mask & (1 << i) == 0 {
                v.deliver_pending("MSI", i);
            }
        }
    }

    /// The function signals vector `index`.
    pub fn notify(&mut self, index: usize) {
        if !self.enabled {
            return;
        }
        let Some(v) = self.vectors.get_mut(index).filter(|_| index < self.granted) else {
            debug!("MSI vector {index} not granted (have {})", self.granted);
            return;
        };
        if self.mask & (1 << index) != 0 {
            v.pending = true;
        } else {
            v.deliver("MSI", index);
        }
    }

    /// Put the pending bits where the guest reads them.
    pub fn mirror(&self, config: &mut PciConfig) {
        let bits = self
            .vectors
            .iter()
            .enumerate()
            .filter(|(_, v)| v.pending)
            .fold(0u32, |acc, (i, _)| acc | 1 << i);
        config.set_u32(self.cap + MSI_PENDING_BITS, bits);
    }

    /// Machine reset (config space was restored already): nothing enabled,
    /// nothing pending.
    pub fn reset(&mut self, config: &PciConfig) {
        for v in &mut self.vectors {
            v.pending = false;
        }
        self.follow_config(config);
    }

    pub fn clear_pending(&mut self) {
        for v in &mut self.vectors {
            v.pending = false;
        }
    }
}

#[cfg(test)]
pub mod test_util {
    //! A recording `MsiController`: every vector logs its routes and fires.
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct RecordingVector {
        pub routes: Mutex<Vec<MsiMessage>>,
        /// The message of every interrupt sent.
        pub fired: Mutex<Vec<MsiMessage>>,
    }

    impl MsiVector for RecordingVector {
        fn set_route(&self, msg: MsiMessage) {
            self.routes.lock().unwrap().push(msg);
        }
        fn fire(&self) {
            let routed = *self.routes.lock().unwrap().last().expect("fired unrouted");
            self.fired.lock().unwrap().push(routed);
        }
    }

    #[derive(Default)]
    pub struct RecordingMsi {
        pub vectors: Mutex<Vec<Arc<RecordingVector>>>,
        /// Refuse to hand out more than this many vectors.
        pub limit: Option<usize>,
    }

    impl RecordingMsi {
        pub fn vector(&self, i: usize) -> Arc<RecordingVector> {
            self.vectors.lock().unwrap()[i].clone()
        }

        /// Interrupts sent on vector `i` so far.
        pub fn fired(&self, i: usize) -> usize {
            self.vector(i).fired.lock().unwrap().len()
        }

        /// The data of every interrupt sent on vector `i`, then forgets them.
        pub fn take_fired(&self, i: usize) -> Vec<u32> {
            let v = self.vector(i);
            let data = v.fired.lock().unwrap().drain(..).map(|m| m.data).collect();
            data
        }
    }

    impl MsiController for RecordingMsi {
        fn new_vector(&self) -> Result<Arc<dyn MsiVector>> {
            let mut vs = self.vectors.lock().unwrap();
            if self.limit.is_some_and(|l| vs.len() >= l) {
                return Err(crate::Error::Msi("out of vectors".into()));
            }
            let v = Arc::new(RecordingVector::default());
            vs.push(v.clone());
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::RecordingMsi;
    use super::*;

    fn setup(count: usize) -> (PciConfig, Msi, Arc<RecordingMsi>) {
        let ctl = Arc::new(RecordingMsi::default());
        let mut config = PciConfig::new(0x1234, 0x5678, 0xff0000, 0);
        let msi = Msi::new(&mut config, count, &*ctl).unwrap();
        config.seal();
        (config, msi, ctl)
    }

    fn write(config: &mut PciConfig, msi: &mut Msi, off: usize, data: &[u8]) {
        config.write(msi.cap + off, data);
        msi.follow_config(config);
    }

    #[test]
    fn capability_layout_and_read_only_bits() {
        let (mut config, mut msi, ctl) = setup(3);
        assert_eq!(ctl.vectors.lock().unwrap().len(), 4, "rounded up to 4");
        let cap = config.u8_at(super::super::config::CAPABILITIES_PTR) as usize;
        assert_eq!(cap, msi.cap);
        assert_eq!(config.u8_at(cap), MSI_CAP_ID);
        let control = config.u16_at(cap + MSI_CONTROL);
        assert_eq!(control, 2 << 1 | MSI_64BIT | MSI_PER_VECTOR_MASK);
        // Everything but enable/MME stays as it was.
        write(&mut config, &mut msi, MSI_CONTROL, &[0xff, 0xff]);
        assert_eq!(config.u16_at(cap + MSI_CONTROL), control | 0x71);
        // Address bits 1:0 read zero; mask bits beyond the vectors stay zero;
        // pending bits cannot be written.
        write(&mut config, &mut msi, MSI_ADDRESS_LO, &[0xff; 4]);
        assert_eq!(config.u32_at(cap + MSI_ADDRESS_LO), 0xffff_fffc);
        write(&mut config, &mut msi, MSI_MASK_BITS, &[0xff; 4]);
        assert_eq!(config.u32_at(cap + MSI_MASK_BITS), 0xf);
        write(&mut config, &mut msi, MSI_PENDING_BITS, &[0xff; 4]);
        assert_eq!(config.u32_at(cap + MSI_PENDING_BITS), 0);
    }

    #[test]
    fn multiple_messages_masking_and_pending() {
        let (mut config, mut msi, ctl) = setup(4);
        // Disabled: nothing happens.
        msi.notify(0);
        assert_eq!(ctl.fired(0), 0);
        write(
            &mut config,
            &mut msi,
            MSI_ADDRESS_LO,
            &0xfee0_1000u32.to_le_bytes(),
        );
        write(&mut config, &mut msi, MSI_DATA, &0x4040u16.to_le_bytes());
        // Enable with 2 of the 4 vectors granted.
        write(&mut config, &mut msi, MSI_CONTROL, &[1 | 1 << 4, 0]);
        msi.notify(1);
        assert_eq!(ctl.take_fired(1), [0x4041]);
        msi.notify(2);
        assert_eq!(ctl.fired(2), 0, "vector 2 not granted");
        // Masked vector 0: pending, shown in the pending bits, sent on unmask.
        write(&mut config, &mut msi, MSI_MASK_BITS, &[1, 0, 0, 0]);
        msi.notify(0);
        msi.notify(0);
        assert_eq!(ctl.fired(0), 0);
        msi.mirror(&mut config);
        assert_eq!(config.u32_at(msi.cap + MSI_PENDING_BITS), 1);
        write(&mut config, &mut msi, MSI_MASK_BITS, &[0, 0, 0, 0]);
        assert_eq!(ctl.take_fired(0), [0x4040], "one interrupt for both");
        msi.mirror(&mut config);
        assert_eq!(config.u32_at(msi.cap + MSI_PENDING_BITS), 0);
        // A non-APIC address is not delivered (and not routed).
        write(&mut config, &mut msi, MSI_ADDRESS_HI, &[1, 0, 0, 0]);
        msi.notify(0);
        assert_eq!(ctl.fired(0), 0);
        // Reset: disabled, nothing pending.
        write(&mut config, &mut msi, MSI_MASK_BITS, &[1, 0, 0, 0]);
        msi.notify(0);
        config.reset();
        msi.reset(&config);
        msi.mirror(&mut config);
        assert_eq!(config.u32_at(msi.cap + MSI_PENDING_BITS), 0);
        assert!(!msi.enabled());
    }

    #[test]
    fn deliverable_addresses() {
        let ok = |address| MsiMessage { address, data: 0 }.is_deliverable();
        assert!(ok(0xfee0_0000));
        assert!(ok(0xfeef_f00c));
        assert!(!ok(0));
        assert!(!ok(0xfed0_0000));
        assert!(!ok(0xfef0_0000));
        assert!(!ok(0x1_fee0_0000));
    }
}
