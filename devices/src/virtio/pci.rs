//! The modern (virtio 1.x) virtio-PCI transport.
//!
//! One 16 KiB 32-bit memory BAR holds four 4 KiB regions, each described by a
//! vendor capability: common config @0x0000, ISR @0x1000, device config @0x2000 and
//! notify @0x3000 (queue N at N * 4). A fifth capability (PCI_CFG) is a window into
//! the BAR through config space, for firmware that cannot reach the BAR directly.
//! 32-bit and below 4 GiB means SeaBIOS can use plain MMIO.
//!
//! Interrupts: MSI-X with a table of queues + 1 vectors in BAR 1 (table at 0,
//! PBA at 2 KiB, as QEMU lays it out), `msix_config` and `queue_msix_vector`
//! assigning them the way Linux's `vp_find_vqs_msix` and the Windows drivers do:
//! a vector per queue, one shared by all queues, or NO_VECTOR; a vector number
//! past the table reads back as NO_VECTOR, which is how a driver learns the
//! assignment failed. Until the driver enables MSI-X, the ISR byte drives INTA,
//! level-triggered, held high until the driver reads the ISR.
//!
//! Queue notifications: each queue has a kick eventfd. The VMM registers them
//! with KVM (ioeventfd) at the notify addresses wherever the guest places BAR 4
//! (`PciDevice::ioeventfds`), so a guest notify wakes the device's worker with no
//! exit to user space; a notify that still traps (no ioeventfd, or through the
//! PCI_CFG window) writes the same eventfd from the vCPU.

use std::sync::Arc;

use tracing::{debug, info, warn};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{ActivateContext, VirtioDevice, VirtioInterrupt, NO_VECTOR};
use crate::pci::{BarKind, MsiController, MsixLayout, PciConfig, PciDevice, PciInterrupt};
use crate::{Error, IrqLine, Lifecycle, Result};

const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern (non-transitional) device IDs are 0x1040 + virtio device type.
const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
/// The BAR holding all virtio regions.
const VIRTIO_BAR: usize = 4;
/// The BAR holding the MSI-X table and PBA.
const MSIX_BAR: usize = 1;
const VIRTIO_BAR_SIZE: u64 = 0x4000;
const REGION_SIZE: u64 = 0x1000;
const COMMON_CFG_OFFSET: u64 = 0x0000;
const ISR_CFG_OFFSET: u64 = 0x1000;
const DEVICE_CFG_OFFSET: u64 = 0x2000;
const NOTIFY_CFG_OFFSET: u64 = 0x3000;
const NOTIFY_OFF_MULTIPLIER: u32 = 4;

const PCI_CAP_ID_VNDR: u8 = 0x09;
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;
/// Offsets inside a virtio capability (from its ID byte).
const CAP_BAR: usize = 4;
const CAP_OFFSET: usize = 8;
const CAP_LENGTH: usize = 12;
const CAP_PCI_CFG_DATA: usize = 16;

const STATUS_FEATURES_OK: u8 = VIRTIO_CONFIG_S_FEATURES_OK as u8;
const STATUS_DRIVER_OK: u8 = VIRTIO_CONFIG_S_DRIVER_OK as u8;
const STATUS_NEEDS_RESET: u8 = VIRTIO_CONFIG_S_NEEDS_RESET as u8;
const STATUS_FAILED: u8 = VIRTIO_CONFIG_S_FAILED as u8;

/// Fields of `struct virtio_pci_common_cfg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    DeviceFeatureSelect,
    DeviceFeature,
    DriverFeatureSelect,
    DriverFeature,
    MsixConfig,
    NumQueues,
    DeviceStatus,
    ConfigGeneration,
    QueueSelect,
    QueueSize,
    QueueMsixVector,
    QueueEnable,
    QueueNotifyOff,
    QueueDesc,
    QueueDriver,
    QueueDevice,
}

/// (offset, width, field), the virtio 1.x layout.
const COMMON_FIELDS: [(usize, usize, Field); 16] = [
    (0x00, 4, Field::DeviceFeatureSelect),
    (0x04, 4, Field::DeviceFeature),
    (0x08, 4, Field::DriverFeatureSelect),
    (0x0c, 4, Field::DriverFeature),
    (0x10, 2, Field::MsixConfig),
    (0x12, 2, Field::NumQueues),
    (0x14, 1, Field::DeviceStatus),
    (0x15, 1, Field::ConfigGeneration),
    (0x16, 2, Field::QueueSelect),
    (0x18, 2, Field::QueueSize),
    (0x1a, 2, Field::QueueMsixVector),
    (0x1c, 2, Field::QueueEnable),
    (0x1e, 2, Field::QueueNotifyOff),
    (0x20, 8, Field::QueueDesc),
    (0x28, 8, Field::QueueDriver),
    (0x30, 8, Field::QueueDevice),
];
const COMMON_CFG_LEN: usize = 0x38;

/// What the driver programmed for one queue, before it becomes a `Queue`.
#[derive(Clone, Copy, Debug)]
struct QueueConfig {
    max_size: u16,
    size: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }

    /// A `Queue` with this configuration, checked against guest memory.
    fn build(
        &self,
        event_idx: bool,
        mem: &GuestMemoryMmap<()>,
    ) -> std::result::Result<Queue, String> {
        let mut q = Queue::new(self.max_size).map_err(|e| e.to_string())?;
        q.try_set_size(self.size).map_err(|e| e.to_string())?;
        q.try_set_desc_table_address(GuestAddress(self.desc))
            .map_err(|e| e.to_string())?;
        q.try_set_avail_ring_address(GuestAddress(self.driver))
            .map_err(|e| e.to_string())?;
        q.try_set_used_ring_address(GuestAddress(self.device))
            .map_err(|e| e.to_string())?;
        q.set_event_idx(event_idx);
        q.set_ready(true);
        if !q.is_valid(mem) {
            return Err(format!(
                "rings outside guest memory (desc {:#x} avail {:#x} used {:#x} size {})",
                self.desc, self.driver, self.device, self.size
            ));
        }
        Ok(q)
    }
}

/// A virtio device behind the modern PCI transport.
///
/// The VMM puts it on the PCI root like any `PciDevice`; BAR decoding there routes
/// MMIO to `bar_read`/`bar_write`.
pub struct VirtioPciDevice<D: VirtioDevice> {
    config: PciConfig,
    device: D,
    mem: GuestMemoryMmap<()>,
    pci_irq: Arc<PciInterrupt>,
    interrupt: Arc<VirtioInterrupt>,
    queues: Vec<QueueConfig>,
    /// Queue `i`'s notifications (see the module comment).
    kicks: Vec<Arc<EventFd>>,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
    active: bool,
    /// Config-space offset of the PCI_CFG access-window capability.
    pci_cfg_cap: usize,
}

/// Body of a virtio capability (the bytes after cap_vndr/cap_next).
fn cap_body(cfg_type: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let cap_len = (16 + extra.len()) as u8;
    let mut body = vec![cap_len, cfg_type, VIRTIO_BAR as u8, 0, 0, 0];
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(length as u32).to_le_bytes());
    body.extend_from_slice(extra);
    body
}

impl<D: VirtioDevice> VirtioPciDevice<D> {
    /// Wrap `device`. `intx` is the device's INTA line (level-triggered); `msi`
    /// provides the MSI-X vectors (None: INTx only, no MSI-X capability).
    ///
    /// Panics if the device describes itself inconsistently (type > 0x3f, a queue
    /// size that is not a power of two): programming errors, not guest input.
    pub fn new(
        device: D,
        mem: GuestMemoryMmap<()>,
        intx: Arc<dyn IrqLine>,
        msi: Option<&dyn MsiController>,
    ) -> Result<Self> {
        let dev_type = device.device_type();
        assert!(
            dev_type <= 0x3f,
            "virtio device type {dev_type} out of range"
        );
        let sizes = device.queue_max_sizes();
        // Queue::new refuses what the split-ring rules refuse (0, not a power of
        // two, above 32768); it is what activation calls, so ask it now.
        assert!(
            sizes.iter().all(|&s| Queue::new(s).is_ok()),
            "virtio queue sizes must be powers of two, 1..=32768"
        );
        assert!(sizes.len() as u64 * NOTIFY_OFF_MULTIPLIER as u64 <= REGION_SIZE);
        let queues = sizes.iter().map(|&s| QueueConfig::new(s)).collect();

        let mut config = PciConfig::new(
            VIRTIO_PCI_VENDOR_ID,
            VIRTIO_PCI_DEVICE_ID_BASE + dev_type as u16,
            device.pci_class(),
            1,
        );
        config.set_subsystem(VIRTIO_PCI_VENDOR_ID, dev_type as u16);
        let mut pci_irq = PciInterrupt::new(&mut config, intx);
        if let Some(msi) = msi {
            // A vector per queue plus one for configuration changes: what Linux
            // asks for first, and QEMU's default.
            let layout = MsixLayout::own_bar(MSIX_BAR, sizes.len() as u16 + 1);
            let mem32 = BarKind::Mem32 {
                prefetchable: false,
            };
            config.add_bar(MSIX_BAR, layout.bar_size(), mem32);
            pci_irq = pci_irq.with_msix(&mut config, layout, msi)?;
        }
        config.add_bar(
            VIRTIO_BAR,
            VIRTIO_BAR_SIZE,
            BarKind::Mem32 {
                prefetchable: false,
            },
        );
        let region_caps = [
            (VIRTIO_PCI_CAP_COMMON_CFG, COMMON_CFG_OFFSET),
            (VIRTIO_PCI_CAP_NOTIFY_CFG, NOTIFY_CFG_OFFSET),
            (VIRTIO_PCI_CAP_ISR_CFG, ISR_CFG_OFFSET),
            (VIRTIO_PCI_CAP_DEVICE_CFG, DEVICE_CFG_OFFSET),
        ];
        for (cfg_type, offset) in region_caps {
            let extra = if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
                NOTIFY_OFF_MULTIPLIER.to_le_bytes().to_vec()
            } else {
                Vec::new()
            };
            let body = cap_body(cfg_type, offset, REGION_SIZE, &extra);
            config.add_capability(PCI_CAP_ID_VNDR, &body, &[]);
        }
        // The access window: bar, offset, length and data are the driver's to write.
        let body = cap_body(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, &[0; 4]);
        let mut writable = vec![false; body.len()];
        writable[CAP_BAR - 2] = true;
        writable[CAP_OFFSET - 2..].fill(true);
        let pci_cfg_cap = config.add_capability(PCI_CAP_ID_VNDR, &body, &writable);
        config.seal();

        let kicks = (0..sizes.len())
            .map(|_| EventFd::new(EFD_NONBLOCK).map(Arc::new))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::Worker(format!("queue eventfd: {e}")))?;
        let pci_irq = Arc::new(pci_irq);
        Ok(Self {
            config,
            interrupt: Arc::new(VirtioInterrupt::new(pci_irq.clone(), sizes.len())),
            pci_irq,
            device,
            mem,
            queues,
            kicks,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            active: false,
            pci_cfg_cap,
        })
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The interrupt state shared with the device (e.g. to signal a config change).
    pub fn interrupt(&self) -> &Arc<VirtioInterrupt> {
        &self.interrupt
    }

    /// The virtio device status byte: the driver's bits plus NEEDS_RESET when
    /// the device (possibly its worker) failed.
    pub fn status(&self) -> u8 {
        let failed = if self.interrupt.needs_reset() {
            STATUS_NEEDS_RESET
        } else {
            0
        };
        self.status | failed
    }

    fn reset_device(&mut self) {
        if self.active || self.status != 0 {
            debug!("virtio-pci: device reset");
        }
        self.device.reset();
        for q in &mut self.queues {
            *q = QueueConfig::new(q.max_size);
        }
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        self.active = false;
        self.interrupt.clear();
    }

    /// The device cannot go on: tell the driver (status bit 64 plus a config
    /// interrupt) and ignore notifications until it resets us.
    fn needs_reset(&mut self, why: &str) {
        self.interrupt.signal_needs_reset(why);
    }

    fn negotiate(&mut self) -> bool {
        let offered = self.device.features();
        let acked = self.driver_features;
        if acked & !offered != 0 {
            warn!(
                "virtio-pci: driver acked unoffered features {:#x}",
                acked & !offered
            );
            return false;
        }
        if acked & (1 << VIRTIO_F_VERSION_1) == 0 {
            warn!("virtio-pci: driver did not accept VIRTIO_F_VERSION_1");
            return false;
        }
        self.device.ack_features(acked);
        true
    }

    fn activate(&mut self) {
        if self.status & STATUS_FEATURES_OK == 0 {
            self.needs_reset("DRIVER_OK without FEATURES_OK");
            return;
        }
        let event_idx = self.driver_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let mut queues = Vec::with_capacity(self.queues.len());
        for (i, cfg) in self.queues.iter().enumerate() {
            let q = if cfg.enabled {
                cfg.build(event_idx, &self.mem)
                    .map_err(|e| format!("queue {i}: {e}"))
            } else {
                Queue::new(cfg.max_size).map_err(|e| format!("queue {i}: {e}"))
            };
            match q {
                Ok(q) => queues.push(q),
                Err(e) => return self.needs_reset(&e),
            }
        }
        for k in &self.kicks {
            // Notifications from before DRIVER_OK (KVM signals them whatever the
            // state) are stale.
            let _ = k.read();
        }
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            queues,
            kicks: self.kicks.clone(),
            interrupt: self.interrupt.clone(),
        };
        match self.device.activate(ctx) {
            Ok(()) => {
                self.active = true;
                debug!(
                    "virtio-pci: device type {} active",
                    self.device.device_type()
                );
            }
            Err(e) => self.needs_reset(&format!("activation failed: {e}")),
        }
    }

    fn set_status(&mut self, value: u8) {
        if value == 0 {
            return self.reset_device();
        }
        let old = self.status;
        // NEEDS_RESET is the device's bit (`status()` adds it): the driver
        // can neither set nor clear it.
        let mut new = value & !STATUS_NEEDS_RESET;
        if new & STATUS_FEATURES_OK != 0 && old & STATUS_FEATURES_OK == 0 && !self.negotiate() {
            new &= !STATUS_FEATURES_OK;
        }
        self.status = new;
        if new & STATUS_FAILED != 0 && old & STATUS_FAILED == 0 {
            info!("virtio-pci: driver set FAILED");
        }
        if new & STATUS_DRIVER_OK != 0 && old & STATUS_DRIVER_OK == 0 && !self.active {
            self.activate();
        }
    }

    fn selected_queue(&self) -> Option<&QueueConfig> {
        self.queues.get(self.queue_select as usize)
    }

    /// The selected queue if the driver may still configure it.
    fn configurable_queue(&mut self) -> Option<&mut QueueConfig> {
        let sel = self.queue_select;
        let active = self.active;
        let Some(q) = self.queues.get_mut(sel as usize) else {
            warn!("virtio-pci: write to nonexistent queue {sel}");
            return None;
        };
        if q.enabled || active {
            warn!("virtio-pci: queue {sel} reconfigured after enable; ignored");
            return None;
        }
        Some(q)
    }

    fn enable_queue(&mut self) {
        let event_idx = self.driver_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let sel = self.queue_select;
        let Some(cfg) = self.configurable_queue().copied() else {
            return;
        };
        // Check now, so a bad ring is reported when it is set up rather than at
        // DRIVER_OK; activation checks again against the final configuration.
        match cfg.build(event_idx, &self.mem) {
            Ok(_) => self.queues[sel as usize].enabled = true,
            Err(e) => self.needs_reset(&format!("queue {sel}: {e}")),
        }
    }

    fn field_value(&self, field: Field) -> u64 {
        let q = self.selected_queue();
        match field {
            Field::DeviceFeatureSelect => self.device_feature_select as u64,
            Field::DeviceFeature => match self.device_feature_select {
                0 => self.device.features() & 0xffff_ffff,
                1 => self.device.features() >> 32,
                _ => 0,
            },
            Field::DriverFeatureSelect => self.driver_feature_select as u64,
            Field::DriverFeature => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            Field::MsixConfig => self.interrupt.config_vector().into(),
            Field::QueueMsixVector => self.interrupt.queue_vector(self.queue_select.into()).into(),
            Field::NumQueues => self.queues.len() as u64,
            Field::DeviceStatus => self.status() as u64,
            Field::ConfigGeneration => self.interrupt.config_generation() as u64,
            Field::QueueSelect => self.queue_select as u64,
            // A nonexistent queue reads as size 0: that is how drivers find the end.
            Field::QueueSize => q.map_or(0, |q| q.size as u64),
            Field::QueueEnable => q.map_or(0, |q| q.enabled as u64),
            Field::QueueNotifyOff => q.map_or(0, |_| self.queue_select as u64),
            Field::QueueDesc => q.map_or(0, |q| q.desc),
            Field::QueueDriver => q.map_or(0, |q| q.driver),
            Field::QueueDevice => q.map_or(0, |q| q.device),
        }
    }

    fn set_field(&mut self, field: Field, value: u64) {
        match field {
            Field::DeviceFeatureSelect => self.device_feature_select = value as u32,
            Field::DriverFeatureSelect => self.driver_feature_select = value as u32,
            Field::DriverFeature => {
                if self.status & STATUS_FEATURES_OK != 0 {
                    warn!("virtio-pci: feature write after FEATURES_OK ignored");
                    return;
                }
                match self.driver_feature_select {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | value,
                    1 => {
                        self.driver_features = (self.driver_features & 0xffff_ffff) | (value << 32)
                    }
                    s => debug!("virtio-pci: driver feature word {s} ignored"),
                }
            }
            Field::DeviceStatus => self.set_status(value as u8),
            Field::QueueSelect => self.queue_select = value as u16,
            Field::QueueSize => {
                let size = value as u16;
                if let Some(q) = self.configurable_queue() {
                    if size.is_power_of_two() && size <= q.max_size {
                        q.size = size;
                    } else {
                        warn!("virtio-pci: invalid queue size {size} (max {})", q.max_size);
                    }
                }
            }
            Field::QueueEnable => match value {
                1 => self.enable_queue(),
                _ => warn!("virtio-pci: queue_enable write of {value} ignored"),
            },
            Field::QueueDesc => {
                if let Some(q) = self.configurable_queue() {
                    q.desc = value;
                }
            }
            Field::QueueDriver => {
                if let Some(q) = self.configurable_queue() {
                    q.driver = value;
                }
            }
            Field::QueueDevice => {
                if let Some(q) = self.configurable_queue() {
                    q.device = value;
                }
            }
            Field::MsixConfig => {
                let v = self.checked_vector(value as u16, "config");
                self.interrupt.set_config_vector(v);
            }
            Field::QueueMsixVector => {
                let sel = usize::from(self.queue_select);
                if sel >= self.queues.len() {
                    warn!("virtio-pci: vector for nonexistent queue {sel} ignored");
                    return;
                }
                let v = self.checked_vector(value as u16, "queue");
                self.interrupt.set_queue_vector(sel, v);
            }
            Field::DeviceFeature
            | Field::NumQueues
            | Field::ConfigGeneration
            | Field::QueueNotifyOff => debug!("virtio-pci: write to read-only {field:?}"),
        }
    }

    /// `vector` if the MSI-X table has it, else NO_VECTOR: the driver reads the
    /// field back and sees that its assignment failed (QEMU does the same).
    fn checked_vector(&self, vector: u16, what: &str) -> u16 {
        if vector != NO_VECTOR && vector >= self.pci_irq.msix_vectors() {
            warn!(
                "virtio-pci: {what} vector {vector} out of range ({} vectors); NO_VECTOR",
                self.pci_irq.msix_vectors()
            );
            return NO_VECTOR;
        }
        vector
    }

    /// The common config structure as the driver would see it now. Reads have no
    /// side effects, so any access width or alignment is served from this.
    fn common_snapshot(&self) -> [u8; COMMON_CFG_LEN] {
        let mut bytes = [0u8; COMMON_CFG_LEN];
        for (off, width, field) in COMMON_FIELDS {
            let v = self.field_value(field).to_le_bytes();
            bytes[off..off + width].copy_from_slice(&v[..width]);
        }
        bytes
    }

    fn common_read(&self, offset: u64, data: &mut [u8]) {
        let snap = self.common_snapshot();
        for (i, b) in data.iter_mut().enumerate() {
            *b = snap.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    /// Writes are merged into each field they touch, so a 32-bit write to half of a
    /// 64-bit ring address (what Linux and SeaBIOS do) or a byte write into a 16-bit
    /// field update just those bytes.
    fn common_write(&mut self, offset: u64, data: &[u8]) {
        let start = offset as usize;
        let end = start + data.len();
        for (off, width, field) in COMMON_FIELDS {
            if end <= off || start >= off + width {
                continue;
            }
            let mut v = self.field_value(field).to_le_bytes();
            for (pos, slot) in v.iter_mut().enumerate().take(width) {
                if (start..end).contains(&(off + pos)) {
                    *slot = data[off + pos - start];
                }
            }
            self.set_field(field, u64::from_le_bytes(v));
        }
    }

    /// A notify that trapped (no ioeventfd there): wake the worker as KVM
    /// would have. Whether the queue may run is the worker's to check, since
    /// ioeventfd kicks reach it without passing here.
    fn notify(&mut self, offset: u64) {
        let index = (offset / NOTIFY_OFF_MULTIPLIER as u64) as usize;
        match self.kicks.get(index) {
            Some(kick) => {
                if let Err(e) = kick.write(1) {
                    warn!("virtio-pci: kick of queue {index}: {e}");
                }
            }
            None => warn!("virtio-pci: notify of nonexistent queue {index} ignored"),
        }
    }

    /// The PCI_CFG window target, if the driver programmed a valid one.
    fn pci_cfg_window(&self) -> Option<(u64, usize)> {
        let cap = self.pci_cfg_cap;
        let bar = self.config.u8_at(cap + CAP_BAR) as usize;
        let offset = self.config.u32_at(cap + CAP_OFFSET) as u64;
        let len = self.config.u32_at(cap + CAP_LENGTH) as usize;
        let ok = bar == VIRTIO_BAR
            && matches!(len, 1 | 2 | 4)
            && offset.is_multiple_of(len as u64)
            && offset + len as u64 <= VIRTIO_BAR_SIZE;
        if !ok {
            debug!("virtio-pci: bad PCI_CFG window bar {bar} offset {offset:#x} len {len}");
        }
        ok.then_some((offset, len))
    }

    fn pci_cfg_window_read(&mut self) {
        let data_off = self.pci_cfg_cap + CAP_PCI_CFG_DATA;
        let mut buf = [0u8; 4];
        if let Some((offset, len)) = self.pci_cfg_window() {
            self.bar_read(VIRTIO_BAR, offset, &mut buf[..len]);
        }
        self.config.set_u32(data_off, u32::from_le_bytes(buf));
    }

    fn pci_cfg_window_write(&mut self) {
        let data_off = self.pci_cfg_cap + CAP_PCI_CFG_DATA;
        if let Some((offset, len)) = self.pci_cfg_window() {
            let data = self.config.u32_at(data_off).to_le_bytes();
            self.bar_write(VIRTIO_BAR, offset, &data[..len]);
        }
    }
}

fn overlaps(a: usize, a_len: usize, b: usize, b_len: usize) -> bool {
    a < b + b_len && b < a + a_len
}

impl<D: VirtioDevice> PciDevice for VirtioPciDevice<D> {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn config_read(&mut self, offset: usize) -> u32 {
        let dword = offset & !3;
        if dword == self.pci_cfg_cap + CAP_PCI_CFG_DATA {
            self.pci_cfg_window_read();
        }
        self.config.read_dword(dword)
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        self.interrupt.set_dma_enabled(self.config.bus_master());
        if overlaps(offset, data.len(), self.pci_cfg_cap + CAP_PCI_CFG_DATA, 4) {
            self.pci_cfg_window_write();
        }
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        // The root hands over a zeroed buffer.
        let region_off = offset % REGION_SIZE;
        if bar != VIRTIO_BAR || region_off + data.len() as u64 > REGION_SIZE {
            debug!("virtio-pci: read of bar {bar} offset {offset:#x} ignored");
            return;
        }
        match offset - region_off {
            COMMON_CFG_OFFSET => self.common_read(region_off, data),
            // Only the ISR byte itself has the read-to-clear side effect.
            ISR_CFG_OFFSET if region_off == 0 && !data.is_empty() => {
                data[0] = self.interrupt.read_and_clear_isr();
            }
            DEVICE_CFG_OFFSET => self.device.read_config(region_off, data),
            _ => {} // notify region (and beyond): reads as zero
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let region_off = offset % REGION_SIZE;
        if bar != VIRTIO_BAR || region_off + data.len() as u64 > REGION_SIZE {
            debug!("virtio-pci: write to bar {bar} offset {offset:#x} ignored");
            return;
        }
        match offset - region_off {
            COMMON_CFG_OFFSET => self.common_write(region_off, data),
            DEVICE_CFG_OFFSET => self.device.write_config(region_off, data),
            NOTIFY_CFG_OFFSET => self.notify(region_off),
            _ => debug!("virtio-pci: write to read-only region at {offset:#x}"),
        }
    }

    fn interrupt(&self) -> Option<Arc<PciInterrupt>> {
        Some(self.pci_irq.clone())
    }

    fn ioeventfds(&self, bar: usize) -> Vec<(u64, Arc<EventFd>)> {
        if bar != VIRTIO_BAR {
            return Vec::new();
        }
        let mult = u64::from(NOTIFY_OFF_MULTIPLIER);
        (0u64..)
            .zip(&self.kicks)
            .map(|(i, k)| (NOTIFY_CFG_OFFSET + i * mult, k.clone()))
            .collect()
    }

    /// Machine reset; the root has already restored config space and the
    /// function's interrupts (`pci::reset_device`).
    fn reset(&mut self) {
        self.reset_device();
        self.interrupt.set_dma_enabled(self.config.bus_master());
    }
}

impl<D: VirtioDevice> Lifecycle for VirtioPciDevice<D> {
    fn pause(&mut self) {
        self.device.pause();
    }

    fn resume(&mut self) {
        self.device.resume();
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        self.device.shutdown()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A guest driver in miniature, doing what SeaBIOS and Linux do: walk the
    //! capability list, program the common config through the BAR, lay out split
    //! rings in guest memory, notify, and read back the used ring.
    use super::*;
    use crate::interrupt::test_util::RecordingLine;
    use crate::pci;
    use crate::pci::config::{BAR0, CAPABILITIES_PTR, COMMAND, COMMAND_MASTER, COMMAND_MEMORY};
    use crate::pci::msi::test_util::RecordingMsi;
    use crate::pci::msix::MSIX_CAP_ID;
    use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER};
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use vm_memory::Bytes;

    pub const MEM_SIZE: u64 = 0x10_0000;
    pub const BAR_ADDR: u64 = 0xfebf_0000;
    pub const MSIX_BAR_ADDR: u64 = 0xfebf_8000;
    /// The address Linux programs for vector messages to CPU 0.
    pub const MSI_ADDR: u32 = 0xfee0_0000;
    pub const ACK_DRIVER: u8 = (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER) as u8;

    /// Where the driver found each region: (bar, offset) from the capabilities.
    #[derive(Default, Debug)]
    pub struct Caps {
        pub common: Option<(usize, u64)>,
        pub notify: Option<(usize, u64)>,
        pub notify_mult: u32,
        pub isr: Option<(usize, u64)>,
        pub device: Option<(usize, u64)>,
        pub pci_cfg: Option<usize>,
        /// Config offset of the MSI-X capability.
        pub msix: Option<usize>,
    }

    pub struct TestDriver<D: VirtioDevice> {
        pub dev: VirtioPciDevice<D>,
        pub mem: GuestMemoryMmap<()>,
        pub line: Arc<RecordingLine>,
        pub msi: Arc<RecordingMsi>,
        pub caps: Caps,
    }

    /// One split virtqueue as the driver sees it.
    pub struct TestQueue {
        pub index: u16,
        pub size: u16,
        pub desc: u64,
        pub avail: u64,
        pub used: u64,
        avail_idx: u16,
        used_seen: u16,
    }

    impl<D: VirtioDevice> TestDriver<D> {
        /// Plug `device` in, then do what firmware does: place the BAR, enable
        /// memory decoding and bus mastering, and walk the capability list.
        pub fn new(device: D) -> Self {
            let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])
                .unwrap();
            let line = Arc::new(RecordingLine::default());
            let msi = Arc::new(RecordingMsi::default());
            let dev = VirtioPciDevice::new(device, mem.clone(), line.clone(), Some(&*msi)).unwrap();
            let mut d = Self {
                dev,
                mem,
                line,
                msi,
                caps: Caps::default(),
            };
            for (bar, addr, len) in [
                (VIRTIO_BAR, BAR_ADDR, VIRTIO_BAR_SIZE),
                (MSIX_BAR, MSIX_BAR_ADDR, 0x1000),
            ] {
                let bar_reg = BAR0 + bar * 4;
                d.cfg_write(bar_reg, &0xffff_ffffu32.to_le_bytes());
                let size = !(d.cfg_read(bar_reg, 4) & !0xf) + 1;
                assert_eq!(size as u64, len);
                d.cfg_write(bar_reg, &(addr as u32).to_le_bytes());
            }
            d.cfg_write(COMMAND, &(COMMAND_MEMORY | COMMAND_MASTER).to_le_bytes());
            d.find_caps();
            d
        }

        /// A config write, as the PCI root does it.
        pub fn cfg_write(&mut self, offset: usize, data: &[u8]) {
            pci::config_write(&mut self.dev, offset, data);
        }

        /// Wait until the device's worker (if it has one) has handled every
        /// kick so far.
        pub fn sync(&mut self) {
            self.dev.device_mut().pause();
            self.dev.device_mut().resume();
        }

        /// A config read of `len` bytes, done as the PCI root does: whole dwords.
        pub fn cfg_read(&mut self, offset: usize, len: usize) -> u32 {
            let dword = pci::config_read(&mut self.dev, offset & !3);
            let v = dword >> ((offset & 3) * 8);
            match len {
                1 => v & 0xff,
                2 => v & 0xffff,
                _ => v,
            }
        }

        fn find_caps(&mut self) {
            let mut ptr = self.cfg_read(CAPABILITIES_PTR, 1) as usize;
            while ptr != 0 {
                if self.cfg_read(ptr, 1) as u8 == MSIX_CAP_ID {
                    self.caps.msix = Some(ptr);
                }
                if self.cfg_read(ptr, 1) as u8 == PCI_CAP_ID_VNDR {
                    let cfg_type = self.cfg_read(ptr + 3, 1) as u8;
                    let bar = self.cfg_read(ptr + CAP_BAR, 1) as usize;
                    let off = self.cfg_read(ptr + CAP_OFFSET, 4) as u64;
                    let loc = Some((bar, off));
                    match cfg_type {
                        VIRTIO_PCI_CAP_COMMON_CFG => self.caps.common = loc,
                        VIRTIO_PCI_CAP_NOTIFY_CFG => {
                            self.caps.notify = loc;
                            self.caps.notify_mult = self.cfg_read(ptr + 16, 4);
                        }
                        VIRTIO_PCI_CAP_ISR_CFG => self.caps.isr = loc,
                        VIRTIO_PCI_CAP_DEVICE_CFG => self.caps.device = loc,
                        VIRTIO_PCI_CAP_PCI_CFG => self.caps.pci_cfg = Some(ptr),
                        _ => {}
                    }
                }
                ptr = self.cfg_read(ptr + 1, 1) as usize;
            }
        }

        /// MMIO through the decoded BAR, as the PCI root routes it.
        /// The BAR decoding `addr` and the offset in it, as the root finds it.
        fn bar_of(&self, addr: u64, len: usize) -> (usize, u64) {
            for bar in [VIRTIO_BAR, MSIX_BAR] {
                if let Some((base, size, _)) = self.dev.config().active_bar(bar) {
                    if addr >= base && addr + len as u64 <= base + size {
                        return (bar, addr - base);
                    }
                }
            }
            panic!("no BAR decodes {addr:#x}");
        }

        pub fn mmio_read(&mut self, addr: u64, len: usize) -> u64 {
            let (bar, off) = self.bar_of(addr, len);
            let mut buf = [0u8; 8];
            pci::bar_read(&mut self.dev, bar, off, &mut buf[..len]);
            u64::from_le_bytes(buf)
        }

        pub fn mmio_write(&mut self, addr: u64, len: usize, value: u64) {
            let (bar, off) = self.bar_of(addr, len);
            pci::bar_write(&mut self.dev, bar, off, &value.to_le_bytes()[..len]);
        }

        /// Linux `msix_capability_init`: MSI-X on with every vector held by the
        /// function mask, entries programmed, then the function mask cleared.
        /// Vector `i` gets data `0x40 + i`; all stay individually masked.
        pub fn enable_msix(&mut self) {
            let cap = self.caps.msix.expect("no MSI-X capability");
            self.cfg_write(cap + 3, &[0xc0]);
            let n = (self.cfg_read(cap + 2, 2) & 0x7ff) as u64 + 1;
            let table = self.cfg_read(cap + 4, 4);
            assert_eq!(table & 7, MSIX_BAR as u32);
            for i in 0..n {
                let e = MSIX_BAR_ADDR + u64::from(table & !7) + 16 * i;
                self.mmio_write(e, 4, MSI_ADDR.into());
                self.mmio_write(e + 4, 4, 0);
                self.mmio_write(e + 8, 4, 0x40 + i);
            }
            self.cfg_write(cap + 3, &[0x80]);
        }

        /// Set or clear vector `i`'s mask bit.
        pub fn msix_mask(&mut self, i: u64, masked: bool) {
            self.mmio_write(MSIX_BAR_ADDR + 16 * i + 12, 4, masked as u64);
        }

        /// The PBA's first qword.
        pub fn msix_pba(&mut self) -> u64 {
            let cap = self.caps.msix.expect("no MSI-X capability");
            let pba = self.cfg_read(cap + 8, 4);
            self.mmio_read(MSIX_BAR_ADDR + u64::from(pba & !7), 8)
        }

        /// Messages sent on vector `i` so far (their data), forgotten after.
        pub fn fired(&self, i: usize) -> Vec<u32> {
            self.msi.take_fired(i)
        }

        fn region_addr(&self, loc: Option<(usize, u64)>) -> u64 {
            let (bar, off) = loc.expect("capability missing");
            self.dev.config().bar_address(bar).unwrap() + off
        }

        pub fn common_read(&mut self, off: u64, len: usize) -> u64 {
            let a = self.region_addr(self.caps.common) + off;
            self.mmio_read(a, len)
        }

        pub fn common_write(&mut self, off: u64, len: usize, value: u64) {
            let a = self.region_addr(self.caps.common) + off;
            self.mmio_write(a, len, value)
        }

        pub fn isr_read(&mut self) -> u8 {
            let a = self.region_addr(self.caps.isr);
            self.mmio_read(a, 1) as u8
        }

        pub fn device_cfg_read(&mut self, off: u64, len: usize) -> u64 {
            let a = self.region_addr(self.caps.device) + off;
            self.mmio_read(a, len)
        }

        pub fn device_cfg_write(&mut self, off: u64, len: usize, value: u64) {
            let a = self.region_addr(self.caps.device) + off;
            self.mmio_write(a, len, value)
        }

        pub fn status(&mut self) -> u8 {
            self.common_read(0x14, 1) as u8
        }

        pub fn set_status(&mut self, s: u8) {
            self.common_write(0x14, 1, s as u64)
        }

        pub fn device_features(&mut self) -> u64 {
            self.common_write(0x00, 4, 0);
            let lo = self.common_read(0x04, 4);
            self.common_write(0x00, 4, 1);
            lo | (self.common_read(0x04, 4) << 32)
        }

        /// Reset, ACK|DRIVER, write `features`, FEATURES_OK; returns the status read back.
        pub fn negotiate(&mut self, features: u64) -> u8 {
            self.set_status(0);
            assert_eq!(self.status(), 0);
            self.isr_read();
            self.set_status(ACK_DRIVER);
            self.common_write(0x08, 4, 0);
            self.common_write(0x0c, 4, features & 0xffff_ffff);
            self.common_write(0x08, 4, 1);
            self.common_write(0x0c, 4, features >> 32);
            self.set_status(ACK_DRIVER | STATUS_FEATURES_OK);
            self.status()
        }

        /// Lay out queue `index` at `base` (desc, avail, then used 4 KiB-aligned, like
        /// vring_init) with `size` entries, and enable it.
        pub fn setup_queue(&mut self, index: u16, size: u16, base: u64) -> TestQueue {
            self.common_write(0x16, 2, index as u64);
            let max = self.common_read(0x18, 2) as u16;
            assert!(size <= max, "queue {index}: size {size} max {max}");
            self.common_write(0x18, 2, size as u64);
            assert_eq!(self.common_read(0x1c, 2), 0, "queue already enabled");
            let desc = base;
            let avail = desc + 16 * size as u64;
            let used = (avail + 6 + 2 * size as u64 + 0xfff) & !0xfff;
            for (off, v) in [(0x20u64, desc), (0x28, avail), (0x30, used)] {
                self.common_write(off, 4, v & 0xffff_ffff);
                self.common_write(off + 4, 4, v >> 32);
            }
            self.common_write(0x1c, 2, 1);
            assert_eq!(self.common_read(0x1e, 2), index as u64);
            TestQueue {
                index,
                size,
                desc,
                avail,
                used,
                avail_idx: 0,
                used_seen: 0,
            }
        }

        pub fn driver_ok(&mut self) {
            let s = self.status();
            self.set_status(s | STATUS_DRIVER_OK);
        }

        /// Full bring-up with one queue of `size` entries at 0x10000.
        pub fn init(&mut self, features: u64, size: u16) -> TestQueue {
            let st = self.negotiate(features);
            assert_ne!(st & STATUS_FEATURES_OK, 0, "features refused");
            let q = self.setup_queue(0, size, 0x10000);
            self.driver_ok();
            assert_eq!(self.status() & STATUS_NEEDS_RESET, 0);
            q
        }

        /// The notify write a driver does (it traps: no ioeventfd here), then
        /// wait for the worker to handle it.
        pub fn notify(&mut self, q: &TestQueue) {
            let a =
                self.region_addr(self.caps.notify) + q.index as u64 * self.caps.notify_mult as u64;
            self.mmio_write(a, 2, q.index as u64);
            self.sync();
        }

        /// PCI_CFG window access: program bar/offset/length, then touch the data.
        pub fn window_read(&mut self, bar_off: u64, len: usize) -> u32 {
            let cap = self.caps.pci_cfg.expect("no PCI_CFG capability");
            self.cfg_write(cap + CAP_BAR, &[VIRTIO_BAR as u8]);
            self.cfg_write(cap + CAP_OFFSET, &(bar_off as u32).to_le_bytes());
            self.cfg_write(cap + CAP_LENGTH, &(len as u32).to_le_bytes());
            self.cfg_read(cap + CAP_PCI_CFG_DATA, len)
        }

        pub fn window_write(&mut self, bar_off: u64, len: usize, value: u32) {
            let cap = self.caps.pci_cfg.expect("no PCI_CFG capability");
            self.cfg_write(cap + CAP_BAR, &[VIRTIO_BAR as u8]);
            self.cfg_write(cap + CAP_OFFSET, &(bar_off as u32).to_le_bytes());
            self.cfg_write(cap + CAP_LENGTH, &(len as u32).to_le_bytes());
            self.cfg_write(cap + CAP_PCI_CFG_DATA, &value.to_le_bytes()[..len]);
        }
    }

    impl TestQueue {
        /// Write raw descriptor `i`.
        pub fn write_desc(
            &self,
            mem: &GuestMemoryMmap<()>,
            i: u16,
            addr: u64,
            len: u32,
            flags: u16,
            next: u16,
        ) {
            let at = GuestAddress(self.desc + 16 * i as u64);
            let mut raw = [0u8; 16];
            raw[0..8].copy_from_slice(&addr.to_le_bytes());
            raw[8..12].copy_from_slice(&len.to_le_bytes());
            raw[12..14].copy_from_slice(&flags.to_le_bytes());
            raw[14..16].copy_from_slice(&next.to_le_bytes());
            mem.write_slice(&raw, at).unwrap();
        }

        /// Make `head` available.
        pub fn push_avail(&mut self, mem: &GuestMemoryMmap<()>, head: u16) {
            let slot = self.avail + 4 + 2 * (self.avail_idx % self.size) as u64;
            mem.write_obj(head.to_le(), GuestAddress(slot)).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            mem.write_obj(self.avail_idx.to_le(), GuestAddress(self.avail + 2))
                .unwrap();
        }

        /// Chain `bufs` (addr, len, device-writable) in descriptors 0.. and make it
        /// available. Requests complete synchronously, so slots are reused.
        pub fn add_chain(&mut self, mem: &GuestMemoryMmap<()>, bufs: &[(u64, u32, bool)]) {
            for (i, &(addr, len, write)) in bufs.iter().enumerate() {
                let mut flags = if write { VRING_DESC_F_WRITE as u16 } else { 0 };
                if i + 1 < bufs.len() {
                    flags |= VRING_DESC_F_NEXT as u16;
                }
                self.write_desc(mem, i as u16, addr, len, flags, i as u16 + 1);
            }
            self.push_avail(mem, 0);
        }

        /// The next used element (id, len), if the device produced one.
        pub fn pop_used(&mut self, mem: &GuestMemoryMmap<()>) -> Option<(u32, u32)> {
            let idx: u16 = mem.read_obj(GuestAddress(self.used + 2)).unwrap();
            if idx == self.used_seen {
                return None;
            }
            let elem = self.used + 4 + 8 * (self.used_seen % self.size) as u64;
            let id: u32 = mem.read_obj(GuestAddress(elem)).unwrap();
            let len: u32 = mem.read_obj(GuestAddress(elem + 4)).unwrap();
            self.used_seen = self.used_seen.wrapping_add(1);
            Some((id, len))
        }

        /// Set or clear VRING_AVAIL_F_NO_INTERRUPT, as a polling driver does.
        pub fn set_no_interrupt(&self, mem: &GuestMemoryMmap<()>, on: bool) {
            mem.write_obj(on as u16, GuestAddress(self.avail)).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::device::{next_chain, queue_needs_interrupt};
    use super::testing::*;
    use super::*;
    use crate::interrupt::NoIrq;
    use crate::pci;
    use crate::pci::config::{COMMAND, COMMAND_INTX_DISABLE, COMMAND_MASTER, COMMAND_MEMORY};
    use crate::pci::config::{STATUS, STATUS_INTERRUPT};
    use crate::pci::msi::test_util::RecordingMsi;
    use std::sync::Mutex;
    use vm_memory::Bytes;

    const VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1;

    /// A two-queue device that records what the transport tells it. It has no
    /// worker: a test plays the worker with `complete_all`.
    #[derive(Default)]
    struct Dummy {
        log: Arc<Mutex<Vec<String>>>,
        acked: u64,
        run: Option<ActivateContext>,
        fail_activate: bool,
    }

    impl Dummy {
        /// What a worker woken by queue `index`'s kick does: consume every
        /// available chain, complete it with length 0, interrupt if asked.
        /// A broken ring marks the device as needing a reset.
        fn complete_all(&mut self, index: usize) {
            let run = self.run.as_mut().expect("not active");
            let _ = run.kicks[index].read();
            let (mem, irq) = (&run.mem, &run.interrupt);
            let q = &mut run.queues[index];
            let r = (|| -> Result<()> {
                while let Some(chain) = next_chain(q, mem)? {
                    q.add_used(mem, chain.head_index(), 0)?;
                }
                if queue_needs_interrupt(q, mem)? {
                    irq.signal_used_queue(index);
                }
                Ok(())
            })();
            if let Err(e) = r {
                irq.signal_needs_reset(&e.to_string());
            }
        }

        /// Kicks of queue `index` since the last look.
        fn kicks(&self, index: usize) -> u64 {
            self.run.as_ref().expect("not active").kicks[index]
                .read()
                .unwrap_or(0)
        }
    }

    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u32 {
            5
        }
        fn pci_class(&self) -> u32 {
            0xff0000
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 8]
        }
        fn features(&self) -> u64 {
            VERSION_1 | 1 << 3
        }
        fn ack_features(&mut self, features: u64) {
            self.acked = features;
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = 0xa0 + offset as u8 + i as u8;
            }
        }
        fn write_config(&mut self, offset: u64, data: &[u8]) {
            self.log
                .lock()
                .unwrap()
                .push(format!("cfg {offset} {data:?}"));
        }
        fn activate(&mut self, ctx: ActivateContext) -> Result<()> {
            if self.fail_activate {
                return Err(Error::BadRequest("nope"));
            }
            let ready: Vec<bool> = ctx.queues.iter().map(|q| q.ready()).collect();
            self.log.lock().unwrap().push(format!("activate {ready:?}"));
            self.run = Some(ctx);
            Ok(())
        }
        fn reset(&mut self) {
            self.log.lock().unwrap().push("reset".into());
            self.run = None;
            self.acked = 0;
        }
    }

    fn driver() -> (TestDriver<Dummy>, Arc<Mutex<Vec<String>>>) {
        let d = Dummy::default();
        let log = d.log.clone();
        (TestDriver::new(d), log)
    }

    impl TestDriver<Dummy> {
        fn region_notify(&self) -> u64 {
            BAR_ADDR + NOTIFY_CFG_OFFSET
        }

        fn complete_all(&mut self, index: usize) {
            self.dev.device_mut().complete_all(index);
        }

        fn kicks(&self, index: usize) -> u64 {
            self.dev.device().kicks(index)
        }
    }

    #[test]
    fn identity_bars_and_capabilities() {
        let (mut d, _) = driver();
        assert_eq!(d.cfg_read(0x00, 4), 0x1045_1af4);
        assert_eq!(d.cfg_read(0x08, 4), 0xff00_0001);
        assert_eq!(d.cfg_read(0x2c, 4), 0x0005_1af4);
        assert_eq!(d.cfg_read(0x3d, 1), 1);
        // BAR 1: MSI-X (mem32); BAR 4: the virtio regions (mem32, non-prefetchable).
        assert_eq!(d.cfg_read(0x10 + 4 * MSIX_BAR, 4), MSIX_BAR_ADDR as u32);
        assert_eq!(d.cfg_read(0x10 + 4 * VIRTIO_BAR, 4) & 0xf, 0);
        assert_eq!(d.caps.common, Some((VIRTIO_BAR, COMMON_CFG_OFFSET)));
        assert_eq!(d.caps.isr, Some((VIRTIO_BAR, ISR_CFG_OFFSET)));
        assert_eq!(d.caps.device, Some((VIRTIO_BAR, DEVICE_CFG_OFFSET)));
        assert_eq!(d.caps.notify, Some((VIRTIO_BAR, NOTIFY_CFG_OFFSET)));
        assert_eq!(d.caps.notify_mult, NOTIFY_OFF_MULTIPLIER);
        let cap = d.caps.pci_cfg.unwrap();
        assert_eq!(d.cfg_read(cap + 2, 1), 20);
        // MSI-X: queues + 1 vectors, table at 0 and PBA at 2 KiB of BAR 1.
        let msix = d.caps.msix.unwrap();
        assert_eq!(d.cfg_read(msix + 2, 2), 2);
        assert_eq!(d.cfg_read(msix + 4, 4), MSIX_BAR as u32);
        assert_eq!(d.cfg_read(msix + 8, 4), 0x800 | MSIX_BAR as u32);
        assert_eq!(d.msi.vectors.lock().unwrap().len(), 3);
        // Linux checks each region's length covers its structure.
        let common_cap = (0x40..0x100)
            .step_by(4)
            .find(|&o| d.dev.config().u8_at(o) == PCI_CAP_ID_VNDR)
            .unwrap();
        let common = d.dev.config().read_dword(common_cap + CAP_LENGTH);
        assert!(common as usize >= COMMON_CFG_LEN);
        assert_eq!(d.common_read(0x12, 2), 2);
        assert_eq!(d.common_read(0x10, 2), NO_VECTOR as u64);
        assert_eq!(d.device_cfg_read(1, 2), 0xa2a1);
        // A doorbell per queue for the VMM to register with KVM.
        let fds = d.dev.ioeventfds(VIRTIO_BAR);
        let offsets: Vec<u64> = fds.iter().map(|f| f.0).collect();
        assert_eq!(offsets, [NOTIFY_CFG_OFFSET, NOTIFY_CFG_OFFSET + 4]);
        assert!(d.dev.ioeventfds(MSIX_BAR).is_empty());
    }

    #[test]
    fn feature_negotiation() {
        let (mut d, _) = driver();
        assert_eq!(d.device_features(), VERSION_1 | 8);
        // Without VERSION_1: refused.
        assert_eq!(d.negotiate(8) & STATUS_FEATURES_OK, 0);
        // Unoffered bit: refused.
        assert_eq!(d.negotiate(VERSION_1 | 1) & STATUS_FEATURES_OK, 0);
        let st = d.negotiate(VERSION_1 | 8);
        assert_eq!(st, ACK_DRIVER | STATUS_FEATURES_OK);
        assert_eq!(d.dev.device().acked, VERSION_1 | 8);
        // Driver features read back per half; frozen after FEATURES_OK.
        d.common_write(0x08, 4, 1);
        assert_eq!(d.common_read(0x0c, 4), 1);
        d.common_write(0x0c, 4, 0);
        assert_eq!(d.common_read(0x0c, 4), 1);
        d.common_write(0x00, 4, 7);
        assert_eq!(d.common_read(0x04, 4), 0);
    }

    #[test]
    fn queue_configuration_is_validated() {
        let (mut d, log) = driver();
        d.negotiate(VERSION_1);
        d.common_write(0x16, 2, 1);
        assert_eq!(d.common_read(0x18, 2), 8);
        d.common_write(0x18, 2, 6); // not a power of two
        assert_eq!(d.common_read(0x18, 2), 8);
        d.common_write(0x18, 2, 16); // above max
        assert_eq!(d.common_read(0x18, 2), 8);
        d.common_write(0x18, 2, 4);
        assert_eq!(d.common_read(0x18, 2), 4);
        assert_eq!(d.common_read(0x1a, 2), NO_VECTOR as u64);
        // A 64-bit address in one access and in halves.
        d.common_write(0x20, 8, 0x1_2345_6780);
        assert_eq!(d.common_read(0x20, 8), 0x1_2345_6780);
        d.common_write(0x24, 4, 0);
        assert_eq!(d.common_read(0x20, 4), 0x2345_6780);
        assert_eq!(d.common_read(0x24, 4), 0);
        // Nonexistent queue: size 0, writes ignored, no panic.
        d.common_write(0x16, 2, 9);
        assert_eq!(d.common_read(0x18, 2), 0);
        d.common_write(0x18, 2, 4);
        d.common_write(0x1c, 2, 1);
        d.common_write(0x20, 8, 0x1000);
        d.common_write(0x1a, 2, 0);
        assert_eq!(d.common_read(0x1a, 2), NO_VECTOR as u64);
        assert_eq!(d.status() & STATUS_NEEDS_RESET, 0);
        // Queue 0 set up properly, queue 1 left disabled.
        let q = d.setup_queue(0, 16, 0x10000);
        // Reconfiguring an enabled queue is ignored.
        d.common_write(0x16, 2, 0);
        d.common_write(0x20, 8, 0x4000);
        assert_eq!(d.common_read(0x20, 8), q.desc);
        d.driver_ok();
        assert_eq!(
            log.lock().unwrap().last().unwrap(),
            "activate [true, false]"
        );
    }

    #[test]
    fn notify_kicks_and_intx_completes() {
        let (mut d, _) = driver();
        // A notify before DRIVER_OK (KVM would count it too) is dropped at
        // activation: the worker starts with nothing stale.
        d.mmio_write(d.region_notify(), 2, 0);
        let mut q = d.init(VERSION_1, 16);
        assert_eq!(d.kicks(0), 0);
        q.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q);
        assert_eq!(d.kicks(0), 1);
        assert_eq!(d.kicks(1), 0);
        d.complete_all(0);
        assert_eq!(q.pop_used(&d.mem), Some((0, 0)));
        assert!(d.line.is_high());
        // PCI status mirrors the pending interrupt.
        assert_ne!(d.cfg_read(STATUS, 2) as u16 & STATUS_INTERRUPT, 0);
        // INTx Disable lowers the line but keeps the interrupt pending.
        let cmd = COMMAND_MEMORY | COMMAND_MASTER;
        d.cfg_write(COMMAND, &(cmd | COMMAND_INTX_DISABLE).to_le_bytes());
        assert!(!d.line.is_high());
        d.cfg_write(COMMAND, &cmd.to_le_bytes());
        assert!(d.line.is_high());
        assert_eq!(d.isr_read(), 1);
        assert!(!d.line.is_high());
        assert_eq!(d.cfg_read(STATUS, 2) as u16 & STATUS_INTERRUPT, 0);
        // A polling driver (SeaBIOS) asks for no interrupts.
        q.set_no_interrupt(&d.mem, true);
        q.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q);
        d.complete_all(0);
        assert_eq!(q.pop_used(&d.mem), Some((0, 0)));
        assert!(!d.line.is_high());
        // Notify of a queue that does not exist: logged, nothing kicked. Notify
        // reads are harmless.
        let n = d.region_notify();
        d.mmio_write(n + 4 * 7, 2, 7);
        d.mmio_write(n + 0xffc, 4, 0);
        assert_eq!(d.mmio_read(n, 4), 0);
        assert_eq!((d.kicks(0), d.kicks(1)), (0, 0));
        // Bus mastering is what the worker checks (it sees ioeventfd kicks the
        // transport never does).
        let irq = d.dev.interrupt.clone();
        assert!(irq.dma_enabled());
        d.cfg_write(COMMAND, &COMMAND_MEMORY.to_le_bytes());
        assert!(!irq.dma_enabled());
    }

    #[test]
    fn msix_vectors_as_vp_find_vqs_msix_assigns_them() {
        let (mut d, _) = driver();
        d.negotiate(VERSION_1);
        d.enable_msix();
        // Per-queue vectors: config on 0, queue 0 on 1, queue 1 on 2; each is
        // read back, as Linux does to see whether the device took it.
        d.common_write(0x10, 2, 0);
        assert_eq!(d.common_read(0x10, 2), 0);
        let mut q0 = d.setup_queue(0, 16, 0x10000);
        let mut q1 = d.setup_queue(1, 8, 0x14000);
        for (q, v) in [(0u64, 1u64), (1, 2)] {
            d.common_write(0x16, 2, q);
            d.common_write(0x1a, 2, v);
            assert_eq!(d.common_read(0x1a, 2), v);
        }
        // A vector past the table: refused, reads back NO_VECTOR.
        d.common_write(0x1a, 2, 3);
        assert_eq!(d.common_read(0x1a, 2), NO_VECTOR as u64);
        d.common_write(0x10, 2, 0x7ff);
        assert_eq!(d.common_read(0x10, 2), NO_VECTOR as u64);
        d.common_write(0x10, 2, 0);
        d.common_write(0x1a, 2, 2);
        d.driver_ok();
        for v in 0..3 {
            d.msix_mask(v, false);
        }
        q0.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q0);
        d.complete_all(0);
        q1.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q1);
        d.complete_all(1);
        assert_eq!(d.fired(1), [0x41]);
        assert_eq!(d.fired(2), [0x42]);
        assert!(!d.line.is_high(), "no INTx with MSI-X on");
        assert_eq!(d.cfg_read(STATUS, 2) as u16 & STATUS_INTERRUPT, 0);
        // A masked vector: its PBA bit, then the message on unmask.
        d.msix_mask(1, true);
        q0.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q0);
        d.complete_all(0);
        assert!(d.fired(1).is_empty());
        assert_eq!(d.msix_pba(), 0b10);
        d.msix_mask(1, false);
        assert_eq!(d.fired(1), [0x41]);
        assert_eq!(d.msix_pba(), 0);
        // Config changes go to msix_config's vector.
        d.dev.interrupt().config_changed();
        assert_eq!(d.fired(0), [0x40]);
        // Shared: both queues on vector 1 (Linux's second try).
        d.common_write(0x16, 2, 1);
        d.common_write(0x1a, 2, 1);
        q1.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q1);
        d.complete_all(1);
        assert_eq!(d.fired(1), [0x41]);
        // NO_VECTOR: a queue without a callback interrupts nobody.
        d.common_write(0x1a, 2, NO_VECTOR.into());
        q1.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q1);
        d.complete_all(1);
        assert!(d.fired(1).is_empty() && d.fired(2).is_empty());
        // A device reset unassigns the vectors; the MSI-X table stays.
        d.set_status(0);
        assert_eq!(d.common_read(0x10, 2), NO_VECTOR as u64);
        d.common_write(0x16, 2, 0);
        assert_eq!(d.common_read(0x1a, 2), NO_VECTOR as u64);
        assert!(d.dev.pci_irq.msix_enabled());
    }

    #[test]
    fn without_msix_enabled_vectors_fall_back_to_intx() {
        let (mut d, _) = driver();
        d.negotiate(VERSION_1);
        // Vectors written but MSI-X never enabled (a driver that gave up on it).
        d.common_write(0x10, 2, 0);
        let mut q = d.setup_queue(0, 16, 0x10000);
        d.common_write(0x1a, 2, 1);
        d.driver_ok();
        q.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q);
        d.complete_all(0);
        assert!(d.line.is_high());
        assert!(d.fired(1).is_empty());
        assert_eq!(d.isr_read(), 1);
        // A transport built without MSI-X has no capability and no BAR 1.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let p = VirtioPciDevice::new(Dummy::default(), mem, Arc::new(NoIrq), None).unwrap();
        assert_eq!(p.config().bar_size(MSIX_BAR), None);
        assert_eq!(p.pci_irq.msix_vectors(), 0);
    }

    #[test]
    fn msix_vectors_that_cannot_be_allocated_fail_construction() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let msi = RecordingMsi {
            limit: Some(1),
            ..Default::default()
        };
        let r = VirtioPciDevice::new(Dummy::default(), mem, Arc::new(NoIrq), Some(&msi));
        assert!(matches!(r, Err(Error::Msi(_))));
    }

    #[test]
    fn bad_rings_set_needs_reset_and_reset_recovers() {
        let (mut d, log) = driver();
        d.negotiate(VERSION_1);
        // Used ring beyond guest memory.
        d.common_write(0x16, 2, 0);
        d.common_write(0x20, 8, 0x10000);
        d.common_write(0x28, 8, 0x11000);
        d.common_write(0x30, 8, MEM_SIZE - 8);
        d.common_write(0x1c, 2, 1);
        assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
        assert_eq!(d.common_read(0x1c, 2), 0);
        assert_eq!(d.isr_read(), 2);
        // The driver cannot clear NEEDS_RESET except by resetting.
        d.set_status(ACK_DRIVER);
        assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
        // Misaligned descriptor table: refused at enable.
        d.set_status(0);
        d.negotiate(VERSION_1);
        d.common_write(0x20, 8, 0x10008);
        d.common_write(0x1c, 2, 1);
        assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
        // A broken avail index (too far ahead), found by the worker.
        let q = d.init(VERSION_1, 16);
        d.mem.write_obj(100u16, GuestAddress(q.avail + 2)).unwrap();
        d.notify(&q);
        d.complete_all(0);
        assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
        assert_eq!(d.isr_read() & 2, 2);
        // Then everything works again after a reset.
        let mut q2 = d.init(VERSION_1, 16);
        q2.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q2);
        d.complete_all(0);
        assert_eq!(q2.pop_used(&d.mem), Some((0, 0)));
        assert!(log.lock().unwrap().iter().any(|l| l == "reset"));
    }

    #[test]
    fn failed_activation_and_driver_ok_without_features() {
        let mut d = TestDriver::new(Dummy {
            fail_activate: true,
            ..Default::default()
        });
        d.negotiate(VERSION_1);
        d.setup_queue(0, 16, 0x10000);
        d.driver_ok();
        assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
        let (mut d, _) = driver();
        d.set_status(0);
        d.set_status(ACK_DRIVER);
        d.set_status(ACK_DRIVER | STATUS_DRIVER_OK);
        assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
    }

    #[test]
    fn pci_cfg_window_reaches_the_bar() {
        let (mut d, log) = driver();
        // SeaBIOS-style: everything through config space.
        assert_eq!(d.window_read(COMMON_CFG_OFFSET + 0x12, 2), 2);
        d.window_write(COMMON_CFG_OFFSET + 0x14, 1, ACK_DRIVER as u32);
        assert_eq!(
            d.window_read(COMMON_CFG_OFFSET + 0x14, 1),
            ACK_DRIVER as u32
        );
        assert_eq!(d.window_read(DEVICE_CFG_OFFSET, 4), 0xa3a2_a1a0);
        d.window_write(DEVICE_CFG_OFFSET + 8, 2, 0x0102);
        assert_eq!(log.lock().unwrap().last().unwrap(), "cfg 8 [2, 1]");
        // Bad windows are ignored: wrong BAR, bad length, misaligned, out of range.
        let cap = d.caps.pci_cfg.unwrap();
        for (bar, off, len) in [
            (0u8, 0x12u32, 2u32),
            (4, 0x12, 3),
            (4, 0x13, 2),
            (4, 0x4000, 4),
        ] {
            d.cfg_write(cap + CAP_BAR, &[bar]);
            d.cfg_write(cap + CAP_OFFSET, &off.to_le_bytes());
            d.cfg_write(cap + CAP_LENGTH, &len.to_le_bytes());
            assert_eq!(d.cfg_read(cap + CAP_PCI_CFG_DATA, 4), 0);
            d.cfg_write(cap + CAP_PCI_CFG_DATA, &[0xff; 4]);
        }
        // Notify through the window, as SeaBIOS does for an unreachable BAR.
        d.negotiate(VERSION_1);
        let mut q = d.setup_queue(0, 16, 0x10000);
        d.driver_ok();
        q.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.window_write(NOTIFY_CFG_OFFSET, 2, 0);
        assert_eq!(d.kicks(0), 1);
        d.complete_all(0);
        assert_eq!(q.pop_used(&d.mem), Some((0, 0)));
        // ISR read through the window clears it.
        assert_eq!(d.window_read(ISR_CFG_OFFSET, 1), 1);
        assert_eq!(d.window_read(ISR_CFG_OFFSET, 1), 0);
    }

    #[test]
    fn machine_reset_restores_power_on_state() {
        let (mut d, _) = driver();
        d.init(VERSION_1, 16);
        d.enable_msix();
        pci::reset_device(&mut d.dev);
        assert_eq!(d.dev.status(), 0);
        assert_eq!(d.dev.config().bar_address(VIRTIO_BAR), Some(0));
        assert!(!d.dev.pci_irq.msix_enabled());
        assert!(!d.dev.interrupt.dma_enabled());
        // A device without an interrupt line still works.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let mut p = VirtioPciDevice::new(Dummy::default(), mem, Arc::new(NoIrq), None).unwrap();
        let mut b = [0u8; 2];
        p.bar_read(VIRTIO_BAR, 0x12, &mut b);
        assert_eq!(u16::from_le_bytes(b), 2);
        // Accesses crossing a region edge or hitting other BARs are ignored: the
        // buffer (zeroed by the root in a real machine) is left untouched.
        let mut b = [0xaa; 2];
        p.bar_read(VIRTIO_BAR, 0xfff, &mut b);
        assert_eq!(b, [0xaa, 0xaa]);
        p.bar_write(0, 0x14, &[1]);
        p.bar_write(VIRTIO_BAR, ISR_CFG_OFFSET, &[1]);
        assert_eq!(p.status(), 0);
    }
}
