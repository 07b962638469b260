//! The modern (virtio 1.x) virtio-PCI transport.
//!
//! One 16 KiB 32-bit memory BAR holds four 4 KiB regions, each described by a
//! vendor capability: common config @0x0000, ISR @0x1000, device config @0x2000 and
//! notify @0x3000 (queue N at N * 4). A fifth capability (PCI_CFG) is a window into
//! the BAR through config space, for firmware that cannot reach the BAR directly.
//! 32-bit and below 4 GiB means SeaBIOS can use plain MMIO.
//!
//! Interrupts are INTx only (no MSI-X yet): vectors read back as NO_VECTOR, and the
//! ISR byte drives a level-triggered line held high until the driver reads the ISR.
//!
//! Queue notifications are handled synchronously: the notify write calls the
//! device's `process_queue` on the caller's thread (the vCPU that trapped the MMIO
//! write), so the request is complete when the vCPU resumes. Simple and correct; a
//! worker thread (ioeventfd) can come later for throughput.

use std::sync::Arc;

use tracing::{debug, error, info, warn};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::device::{VirtioDevice, VirtioInterrupt};
use crate::pci::{BarKind, PciConfig, PciDevice};
use crate::IrqLine;

const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern (non-transitional) device IDs are 0x1040 + virtio device type.
const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
/// The BAR holding all virtio regions.
const VIRTIO_BAR: usize = 4;
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

/// MSI-X "no vector": all we can answer without an MSI-X capability.
const NO_VECTOR: u16 = 0xffff;
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
    fn build(&self, event_idx: bool, mem: &GuestMemoryMmap<()>) -> Result<Queue, String> {
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
    interrupt: Arc<VirtioInterrupt>,
    queues: Vec<QueueConfig>,
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
    /// Wrap `device`. `irq` is the device's INTx line (level-triggered, INTA).
    ///
    /// Panics if the device describes itself inconsistently (type > 0x3f, a queue
    /// size that is not a power of two): programming errors, not guest input.
    pub fn new(device: D, mem: GuestMemoryMmap<()>, irq: Arc<dyn IrqLine>) -> Self {
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
        config.set_interrupt_pin(1);
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

        Self {
            config,
            device,
            mem,
            interrupt: Arc::new(VirtioInterrupt::new(irq)),
            queues,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            active: false,
            pci_cfg_cap,
        }
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

    /// The virtio device status byte.
    pub fn status(&self) -> u8 {
        self.status
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
        error!("virtio-pci: device needs reset: {why}");
        self.status |= STATUS_NEEDS_RESET;
        self.interrupt.signal_config();
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
        match self
            .device
            .activate(self.mem.clone(), queues, self.interrupt.clone())
        {
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
        // NEEDS_RESET is the device's bit: the driver cannot clear it.
        let mut new = value | (old & STATUS_NEEDS_RESET);
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
            Field::MsixConfig | Field::QueueMsixVector => NO_VECTOR as u64,
            Field::NumQueues => self.queues.len() as u64,
            Field::DeviceStatus => self.status as u64,
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
            // No MSI-X: vectors stay NO_VECTOR, which is how the driver learns it.
            Field::MsixConfig | Field::QueueMsixVector => {}
            Field::DeviceFeature
            | Field::NumQueues
            | Field::ConfigGeneration
            | Field::QueueNotifyOff => debug!("virtio-pci: write to read-only {field:?}"),
        }
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

    fn notify(&mut self, offset: u64) {
        let index = (offset / NOTIFY_OFF_MULTIPLIER as u64) as usize;
        if !self.active || self.status & STATUS_NEEDS_RESET != 0 {
            debug!("virtio-pci: notify of queue {index} while inactive ignored");
            return;
        }
        if index >= self.queues.len() {
            warn!("virtio-pci: notify of nonexistent queue {index}");
            return;
        }
        if !self.config.bus_master() {
            warn!("virtio-pci: notify with bus mastering disabled ignored");
            return;
        }
        if let Err(e) = self.device.process_queue(index) {
            self.needs_reset(&format!("queue {index}: {e}"));
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
        self.interrupt.mirror_status(&mut self.config);
        self.config.read_dword(dword)
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        self.interrupt.follow_command(&self.config);
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

    /// Machine reset; the root has already restored config space
    /// (`pci::reset_device`).
    fn reset(&mut self) {
        self.reset_device();
        self.interrupt.follow_command(&self.config);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A guest driver in miniature, doing what SeaBIOS and Linux do: walk the
    //! capability list, program the common config through the BAR, lay out split
    //! rings in guest memory, notify, and read back the used ring.
    use super::*;
    use crate::interrupt::test_util::RecordingLine;
    use crate::pci::config::{BAR0, CAPABILITIES_PTR, COMMAND, COMMAND_MASTER, COMMAND_MEMORY};
    use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER};
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use vm_memory::Bytes;

    pub const MEM_SIZE: u64 = 0x10_0000;
    pub const BAR_ADDR: u64 = 0xfebf_0000;
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
    }

    pub struct TestDriver<D: VirtioDevice> {
        pub dev: VirtioPciDevice<D>,
        pub mem: GuestMemoryMmap<()>,
        pub line: Arc<RecordingLine>,
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
            let dev = VirtioPciDevice::new(device, mem.clone(), line.clone());
            let mut d = Self {
                dev,
                mem,
                line,
                caps: Caps::default(),
            };
            let bar_reg = BAR0 + VIRTIO_BAR * 4;
            d.dev.config_write(bar_reg, &0xffff_ffffu32.to_le_bytes());
            let size = !(d.cfg_read(bar_reg, 4) & !0xf) + 1;
            assert_eq!(size as u64, VIRTIO_BAR_SIZE);
            d.dev
                .config_write(bar_reg, &(BAR_ADDR as u32).to_le_bytes());
            d.dev
                .config_write(COMMAND, &(COMMAND_MEMORY | COMMAND_MASTER).to_le_bytes());
            d.find_caps();
            d
        }

        /// A config read of `len` bytes, done as the PCI root does: whole dwords.
        pub fn cfg_read(&mut self, offset: usize, len: usize) -> u32 {
            let dword = self.dev.config_read(offset & !3);
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
        pub fn mmio_read(&mut self, addr: u64, len: usize) -> u64 {
            let (base, size, _) = self.dev.config().active_bar(VIRTIO_BAR).unwrap();
            assert!(addr >= base && addr + len as u64 <= base + size);
            let mut buf = [0u8; 8];
            self.dev.bar_read(VIRTIO_BAR, addr - base, &mut buf[..len]);
            u64::from_le_bytes(buf)
        }

        pub fn mmio_write(&mut self, addr: u64, len: usize, value: u64) {
            let (base, size, _) = self.dev.config().active_bar(VIRTIO_BAR).unwrap();
            assert!(addr >= base && addr + len as u64 <= base + size);
            self.dev
                .bar_write(VIRTIO_BAR, addr - base, &value.to_le_bytes()[..len]);
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
            assert!(size <= max);
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

        pub fn notify(&mut self, q: &TestQueue) {
            let a =
                self.region_addr(self.caps.notify) + q.index as u64 * self.caps.notify_mult as u64;
            self.mmio_write(a, 2, q.index as u64);
        }

        /// PCI_CFG window access: program bar/offset/length, then touch the data.
        pub fn window_read(&mut self, bar_off: u64, len: usize) -> u32 {
            let cap = self.caps.pci_cfg.expect("no PCI_CFG capability");
            self.dev.config_write(cap + CAP_BAR, &[VIRTIO_BAR as u8]);
            self.dev
                .config_write(cap + CAP_OFFSET, &(bar_off as u32).to_le_bytes());
            self.dev
                .config_write(cap + CAP_LENGTH, &(len as u32).to_le_bytes());
            self.cfg_read(cap + CAP_PCI_CFG_DATA, len)
        }

        pub fn window_write(&mut self, bar_off: u64, len: usize, value: u32) {
            let cap = self.caps.pci_cfg.expect("no PCI_CFG capability");
            self.dev.config_write(cap + CAP_BAR, &[VIRTIO_BAR as u8]);
            self.dev
                .config_write(cap + CAP_OFFSET, &(bar_off as u32).to_le_bytes());
            self.dev
                .config_write(cap + CAP_LENGTH, &(len as u32).to_le_bytes());
            self.dev
                .config_write(cap + CAP_PCI_CFG_DATA, &value.to_le_bytes()[..len]);
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
    use super::super::device::next_chain;
    use super::testing::*;
    use super::*;
    use crate::interrupt::NoIrq;
    use crate::pci::config::{
        COMMAND, COMMAND_INTX_DISABLE, COMMAND_MASTER, COMMAND_MEMORY, STATUS,
    };
    use crate::{Error, Result};
    use std::sync::Mutex;
    use vm_memory::Bytes;

    const VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1;

    /// A two-queue device that records what the transport tells it; on a kick it
    /// consumes every available chain and completes it with length 0.
    #[derive(Default)]
    struct Dummy {
        log: Arc<Mutex<Vec<String>>>,
        acked: u64,
        run: Option<(GuestMemoryMmap<()>, Vec<Queue>, Arc<VirtioInterrupt>)>,
        fail_activate: bool,
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
        fn activate(
            &mut self,
            mem: GuestMemoryMmap<()>,
            queues: Vec<Queue>,
            interrupt: Arc<VirtioInterrupt>,
        ) -> Result<()> {
            if self.fail_activate {
                return Err(Error::BadRequest("nope"));
            }
            let ready: Vec<bool> = queues.iter().map(|q| q.ready()).collect();
            self.log.lock().unwrap().push(format!("activate {ready:?}"));
            self.run = Some((mem, queues, interrupt));
            Ok(())
        }
        fn process_queue(&mut self, index: usize) -> Result<()> {
            self.log.lock().unwrap().push(format!("kick {index}"));
            let (mem, queues, irq) = self.run.as_mut().unwrap();
            let q = &mut queues[index];
            while let Some(chain) = next_chain(q, mem)? {
                q.add_used(&*mem, chain.head_index(), 0)?;
            }
            if super::super::device::queue_needs_interrupt(q, mem)? {
                irq.signal_used_queue();
            }
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

    #[test]
    fn identity_bar_and_capabilities() {
        let (mut d, _) = driver();
        assert_eq!(d.cfg_read(0x00, 4), 0x1045_1af4);
        assert_eq!(d.cfg_read(0x08, 4), 0xff00_0001);
        assert_eq!(d.cfg_read(0x2c, 4), 0x0005_1af4);
        assert_eq!(d.cfg_read(0x3d, 1), 1);
        // Mem32, non-prefetchable.
        assert_eq!(d.cfg_read(0x10 + 4 * VIRTIO_BAR, 4) & 0xf, 0);
        assert_eq!(d.caps.common, Some((VIRTIO_BAR, COMMON_CFG_OFFSET)));
        assert_eq!(d.caps.isr, Some((VIRTIO_BAR, ISR_CFG_OFFSET)));
        assert_eq!(d.caps.device, Some((VIRTIO_BAR, DEVICE_CFG_OFFSET)));
        assert_eq!(d.caps.notify, Some((VIRTIO_BAR, NOTIFY_CFG_OFFSET)));
        assert_eq!(d.caps.notify_mult, NOTIFY_OFF_MULTIPLIER);
        let cap = d.caps.pci_cfg.unwrap();
        assert_eq!(d.cfg_read(cap + 2, 1), 20);
        // Linux checks each region's length covers its structure.
        let common = d.dev.config().read_dword(0x40 + CAP_LENGTH);
        assert!(common as usize >= COMMON_CFG_LEN);
        assert_eq!(d.common_read(0x12, 2), 2);
        assert_eq!(d.common_read(0x10, 2), NO_VECTOR as u64);
        assert_eq!(d.device_cfg_read(1, 2), 0xa2a1);
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
    fn notify_processes_and_interrupts() {
        let (mut d, log) = driver();
        let mut q = d.init(VERSION_1, 16);
        q.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q);
        assert_eq!(q.pop_used(&d.mem), Some((0, 0)));
        assert!(d.line.is_high());
        // PCI status mirrors the pending interrupt.
        assert_ne!(d.cfg_read(STATUS, 2) as u16 & (1 << 3), 0);
        // INTx Disable lowers the line but keeps the interrupt pending.
        let cmd = COMMAND_MEMORY | COMMAND_MASTER;
        d.dev
            .config_write(COMMAND, &(cmd | COMMAND_INTX_DISABLE).to_le_bytes());
        assert!(!d.line.is_high());
        d.dev.config_write(COMMAND, &cmd.to_le_bytes());
        assert!(d.line.is_high());
        assert_eq!(d.isr_read(), 1);
        assert!(!d.line.is_high());
        assert_eq!(d.cfg_read(STATUS, 2) as u16 & (1 << 3), 0);
        // A polling driver (SeaBIOS) asks for no interrupts.
        q.set_no_interrupt(&d.mem, true);
        q.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q);
        assert_eq!(q.pop_used(&d.mem), Some((0, 0)));
        assert!(!d.line.is_high());
        // Nonexistent queue notify is ignored; bus master off blocks DMA.
        let n = d.region_notify();
        d.mmio_write(n + 4 * 7, 2, 7);
        d.dev.config_write(COMMAND, &COMMAND_MEMORY.to_le_bytes());
        q.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q);
        assert_eq!(q.pop_used(&d.mem), None);
        let kicks = log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == "kick 0")
            .count();
        assert_eq!(kicks, 2);
    }

    impl TestDriver<Dummy> {
        fn region_notify(&self) -> u64 {
            BAR_ADDR + NOTIFY_CFG_OFFSET
        }
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
        // A broken avail index (too far ahead) during processing.
        let mut q = d.init(VERSION_1, 16);
        d.mem.write_obj(100u16, GuestAddress(q.avail + 2)).unwrap();
        d.notify(&q);
        assert_ne!(d.status() & STATUS_NEEDS_RESET, 0);
        let kicks = |log: &Mutex<Vec<String>>| {
            log.lock()
                .unwrap()
                .iter()
                .filter(|l| *l == "kick 0")
                .count()
        };
        assert_eq!(kicks(&log), 1);
        // Further kicks are ignored until reset: the device is not called and
        // nothing is completed, even with a good chain available.
        d.mem.write_obj(0u16, GuestAddress(q.avail + 2)).unwrap();
        q.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q);
        assert_eq!(kicks(&log), 1);
        assert_eq!(q.pop_used(&d.mem), None);
        // Then everything works again.
        let mut q2 = d.init(VERSION_1, 16);
        q2.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.notify(&q2);
        assert_eq!(q2.pop_used(&d.mem), Some((0, 0)));
        assert_eq!(kicks(&log), 2);
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
            d.dev.config_write(cap + CAP_BAR, &[bar]);
            d.dev.config_write(cap + CAP_OFFSET, &off.to_le_bytes());
            d.dev.config_write(cap + CAP_LENGTH, &len.to_le_bytes());
            assert_eq!(d.cfg_read(cap + CAP_PCI_CFG_DATA, 4), 0);
            d.dev.config_write(cap + CAP_PCI_CFG_DATA, &[0xff; 4]);
        }
        // Notify through the window, as SeaBIOS does for an unreachable BAR.
        d.negotiate(VERSION_1);
        let mut q = d.setup_queue(0, 16, 0x10000);
        d.driver_ok();
        q.add_chain(&d.mem, &[(0x20000, 16, false)]);
        d.window_write(NOTIFY_CFG_OFFSET, 2, 0);
        assert_eq!(q.pop_used(&d.mem), Some((0, 0)));
        // ISR read through the window clears it.
        assert_eq!(d.window_read(ISR_CFG_OFFSET, 1), 1);
        assert_eq!(d.window_read(ISR_CFG_OFFSET, 1), 0);
    }

    #[test]
    fn machine_reset_restores_power_on_state() {
        let (mut d, _) = driver();
        d.init(VERSION_1, 16);
        crate::pci::reset_device(&mut d.dev);
        assert_eq!(d.dev.status(), 0);
        assert_eq!(d.dev.config().bar_address(VIRTIO_BAR), Some(0));
        // A device without an interrupt line still works.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let mut p = VirtioPciDevice::new(Dummy::default(), mem, Arc::new(NoIrq));
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
