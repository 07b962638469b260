//! A modern (virtio 1.x) virtio-PCI driver core, step for step what Linux's
//! `virtio_pci_modern` does: find the vendor capabilities, reset, negotiate
//! features, set up split virtqueues (and their MSI-X vectors), DRIVER_OK,
//! notify; plus a split virtqueue with a descriptor free list.
//!
//! Memory ordering: every ring field is accessed volatile (program order is
//! kept), and the two places where x86 may reorder a store with a later load
//! (publishing `avail.idx` then reading the used ring's flags) have a fence,
//! as Linux's `virtio_mb`.

use core::sync::atomic::{fence, Ordering};

use crate::mem::Dma;
use crate::mmio::Mmio;
use crate::pci::{self, Function, CAP_VENDOR};
use crate::time;

pub const VENDOR_ID: u16 = 0x1AF4;
/// Modern device IDs are 0x1040 + the virtio device type.
pub const BLOCK_DEVICE_ID: u16 = 0x1042;
pub const INPUT_DEVICE_ID: u16 = 0x1052;

pub const F_VERSION_1: u64 = 1 << 32;
pub const F_RING_EVENT_IDX: u64 = 1 << 29;

pub const STATUS_ACKNOWLEDGE: u8 = 1;
pub const STATUS_DRIVER: u8 = 2;
pub const STATUS_DRIVER_OK: u8 = 4;
pub const STATUS_FEATURES_OK: u8 = 8;
pub const STATUS_NEEDS_RESET: u8 = 64;
pub const STATUS_FAILED: u8 = 128;
/// MSI-X "no vector".
pub const NO_VECTOR: u16 = 0xFFFF;

pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
pub const USED_F_NO_NOTIFY: u16 = 1;

// struct virtio_pci_common_cfg
const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0C;
const MSIX_CONFIG: u64 = 0x10;
const NUM_QUEUES: u64 = 0x12;
const DEVICE_STATUS: u64 = 0x14;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_MSIX_VECTOR: u64 = 0x1A;
const QUEUE_ENABLE: u64 = 0x1C;
const QUEUE_NOTIFY_OFF: u64 = 0x1E;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;

const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;

/// A virtio device on the modern PCI transport.
pub struct VirtioPci {
    pub function: Function,
    common: Mmio,
    notify: Mmio,
    notify_mult: u32,
    isr: Mmio,
    device: Mmio,
}

impl VirtioPci {
    /// The first function with `device_id`, decoding and bus mastering on,
    /// its regions found through the vendor capabilities (`vp_modern_probe`).
    pub fn find(device_id: u16) -> Option<VirtioPci> {
        Self::from_function(pci::find(VENDOR_ID, device_id)?)
    }

    /// Every function with `device_id` (a machine may have several devices
    /// of one type: a virtio keyboard and a tablet), as `find` sets them up.
    pub fn find_all(device_id: u16) -> alloc::vec::Vec<VirtioPci> {
        pci::functions()
            .filter(|f| f.vendor_id() == VENDOR_ID && f.device_id() == device_id)
            .filter_map(Self::from_function)
            .collect()
    }

    /// `function` (a virtio device), decoding and bus mastering on, its
    /// regions found through the vendor capabilities.
    pub fn from_function(function: Function) -> Option<VirtioPci> {
        function.enable();
        let mut regions: [Option<Mmio>; 5] = [None, None, None, None, None];
        let mut notify_mult = 0;
        for (id, at) in function.capabilities() {
            if id != CAP_VENDOR {
                continue;
            }
            let cfg_type = function.read8(at + 3);
            if !(CAP_COMMON..=CAP_DEVICE).contains(&cfg_type) {
                continue;
            }
            let bar = function.bar(function.read8(at + 4))?;
            let offset = u64::from(function.read32(at + 8));
            let len = u64::from(function.read32(at + 12));
            if bar.is_io() || offset + len > bar.size {
                continue;
            }
            if cfg_type == CAP_NOTIFY {
                notify_mult = function.read32(at + 16);
            }
            let slot = &mut regions[usize::from(cfg_type)];
            if slot.is_none() {
                *slot = Some(bar.mmio().slice(offset, len));
            }
        }
        let mut region = |cfg_type: u8| regions[usize::from(cfg_type)].take();
        Some(VirtioPci {
            function,
            common: region(CAP_COMMON)?,
            notify: region(CAP_NOTIFY)?,
            notify_mult,
            isr: region(CAP_ISR)?,
            device: region(CAP_DEVICE)?,
        })
    }

    /// The device-specific configuration.
    pub fn device_cfg(&self) -> &Mmio {
        &self.device
    }

    pub fn status(&self) -> u8 {
        self.common.read8(DEVICE_STATUS)
    }

    pub fn set_status(&self, s: u8) {
        self.common.write8(DEVICE_STATUS, s);
    }

    /// Writes 0 and waits until the device reads back 0 (`vp_modern_set_status`
    /// + `vp_reset`'s wait).
    pub fn reset(&self) -> bool {
        self.set_status(0);
        time::wait_until(core::time::Duration::from_secs(5), || self.status() == 0)
    }

    pub fn device_features(&self) -> u64 {
        self.common.write32(DEVICE_FEATURE_SELECT, 0);
        let lo = self.common.read32(DEVICE_FEATURE);
        self.common.write32(DEVICE_FEATURE_SELECT, 1);
        u64::from(self.common.read32(DEVICE_FEATURE)) << 32 | u64::from(lo)
    }

    /// Reset, ACKNOWLEDGE | DRIVER, the features the device offers of
    /// `wanted`, FEATURES_OK, read back. Returns the negotiated features.
    pub fn negotiate(&self, wanted: u64) -> Result<u64, &'static str> {
        if !self.reset() {
            return Err("reset");
        }
        self.set_status(STATUS_ACKNOWLEDGE);
        self.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let features = self.device_features() & wanted;
        if features & F_VERSION_1 == 0 {
            return Err("no-version-1");
        }
        self.common.write32(DRIVER_FEATURE_SELECT, 0);
        self.common.write32(DRIVER_FEATURE, features as u32);
        self.common.write32(DRIVER_FEATURE_SELECT, 1);
        self.common.write32(DRIVER_FEATURE, (features >> 32) as u32);
        self.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
        if self.status() & STATUS_FEATURES_OK == 0 {
            return Err("features-ok");
        }
        Ok(features)
    }

    pub fn num_queues(&self) -> u16 {
        self.common.read16(NUM_QUEUES)
    }

    /// `msix_config = vector`, read back: NO_VECTOR means the device refused.
    pub fn set_config_vector(&self, vector: u16) -> u16 {
        self.common.write16(MSIX_CONFIG, vector);
        self.common.read16(MSIX_CONFIG)
    }

    /// `queue_msix_vector = vector` for queue `index`, read back.
    pub fn set_queue_vector(&self, index: u16, vector: u16) -> u16 {
        self.common.write16(QUEUE_SELECT, index);
        self.common.write16(QUEUE_MSIX_VECTOR, vector);
        self.common.read16(QUEUE_MSIX_VECTOR)
    }

    /// Lay out queue `index` with at most `size` entries (`vp_modern_setup_vq`
    /// before the enable); None if the device has no such queue.
    pub fn setup_queue(&self, index: u16, size: u16) -> Option<Virtqueue> {
        self.common.write16(QUEUE_SELECT, index);
        let max = self.common.read16(QUEUE_SIZE);
        if max == 0 || self.common.read16(QUEUE_ENABLE) != 0 {
            return None;
        }
        let size = size.min(max);
        self.common.write16(QUEUE_SIZE, size);
        let q = Virtqueue::new(index, size);
        for (reg, addr) in [
            (QUEUE_DESC, q.desc),
            (QUEUE_DRIVER, q.avail),
            (QUEUE_DEVICE, q.used),
        ] {
            self.common.write32(reg, addr as u32);
            self.common.write32(reg + 4, (addr >> 32) as u32);
        }
        let off = u64::from(self.common.read16(QUEUE_NOTIFY_OFF)) * u64::from(self.notify_mult);
        Some(Virtqueue {
            notify_offset: off,
            ..q
        })
    }

    pub fn enable_queue(&self, q: &Virtqueue) {
        self.common.write16(QUEUE_SELECT, q.index);
        self.common.write16(QUEUE_ENABLE, 1);
    }

    pub fn driver_ok(&self) {
        self.set_status(self.status() | STATUS_DRIVER_OK);
    }

    /// The queue's doorbell: a 16-bit write of its index (`vp_notify`).
    pub fn notify(&self, q: &Virtqueue) {
        self.notify.write16(q.notify_offset, q.index);
    }

    /// Reads (and so clears) the ISR status.
    pub fn isr(&self) -> u8 {
        self.isr.read8(0)
    }
}

/// One split virtqueue in one DMA buffer: descriptors, available ring
/// (with `used_event`), then the used ring (with `avail_event`) on the next
/// 4 KiB boundary, as `vring_init` lays it out.
pub struct Virtqueue {
    pub index: u16,
    pub size: u16,
    ring: Dma,
    desc: u64,
    avail: u64,
    used: u64,
    notify_offset: u64,
    /// Free descriptors, as a stack.
    free: alloc::vec::Vec<u16>,
    /// Chain length of each head in flight.
    chain_len: alloc::vec::Vec<u16>,
    avail_idx: u16,
    last_used: u16,
}

impl Virtqueue {
    fn new(index: u16, size: u16) -> Virtqueue {
        let n = u64::from(size);
        let used_off = (16 * n + 6 + 2 * n + 0xFFF) & !0xFFF;
        let ring = Dma::new(used_off + 6 + 8 * n);
        let desc = ring.addr();
        Virtqueue {
            index,
            size,
            desc,
            avail: desc + 16 * n,
            used: desc + used_off,
            notify_offset: 0,
            free: (0..size).rev().collect(),
            chain_len: alloc::vec![0; usize::from(size)],
            avail_idx: 0,
            last_used: 0,
            ring,
        }
    }

    fn off(&self, addr: u64) -> u64 {
        addr - self.desc
    }

    /// Descriptors left.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Chain `bufs` (address, length, device-writable) and put the head in
    /// the available ring (not yet visible to the device: `publish`). None
    /// when there are not enough free descriptors.
    pub fn add(&mut self, bufs: &[(u64, u32, bool)]) -> Option<u16> {
        if bufs.is_empty() || bufs.len() > self.free.len() {
            return None;
        }
        let ids: alloc::vec::Vec<u16> = (0..bufs.len()).map(|_| self.free.pop().unwrap()).collect();
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let d = self.off(self.desc) + 16 * u64::from(ids[i]);
            let mut flags = if write { DESC_F_WRITE } else { 0 };
            let next = ids.get(i + 1).copied().unwrap_or(0);
            if i + 1 < bufs.len() {
                flags |= DESC_F_NEXT;
            }
            self.ring.write::<u64>(d, addr);
            self.ring.write::<u32>(d + 8, len);
            self.ring.write::<u16>(d + 12, flags);
            self.ring.write::<u16>(d + 14, next);
        }
        let head = ids[0];
        self.chain_len[usize::from(head)] = bufs.len() as u16;
        let slot = self.off(self.avail) + 4 + 2 * u64::from(self.avail_idx % self.size);
        self.ring.write::<u16>(slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Some(head)
    }

    /// Make everything `add`ed visible to the device; returns whether it
    /// wants a notification (no VRING_USED_F_NO_NOTIFY).
    pub fn publish(&mut self) -> bool {
        let idx = self.off(self.avail) + 2;
        self.ring.write::<u16>(idx, self.avail_idx);
        // The device's flags must be read after our index is visible.
        fence(Ordering::SeqCst);
        self.ring.read::<u16>(self.off(self.used)) & USED_F_NO_NOTIFY == 0
    }

    /// Set or clear VRING_AVAIL_F_NO_INTERRUPT (a polling driver sets it).
    pub fn set_no_interrupt(&self, on: bool) {
        self.ring.write::<u16>(self.off(self.avail), u16::from(on));
    }

    /// `used_event` (with EVENT_IDX): interrupt once the used index passes it.
    pub fn set_used_event(&self, v: u16) {
        let at = self.off(self.avail) + 4 + 2 * u64::from(self.size);
        self.ring.write::<u16>(at, v);
    }

    /// Whether the device has completed a chain `pop_used` has not returned.
    pub fn has_used(&self) -> bool {
        self.ring.read::<u16>(self.off(self.used) + 2) != self.last_used
    }

    /// The next completed chain `(head, bytes written)`, its descriptors freed.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        let used_idx: u16 = self.ring.read(self.off(self.used) + 2);
        if used_idx == self.last_used {
            return None;
        }
        // The element after the index (x86 keeps loads in order; this stops
        // the compiler from hoisting).
        fence(Ordering::Acquire);
        let e = self.off(self.used) + 4 + 8 * u64::from(self.last_used % self.size);
        let id = self.ring.read::<u32>(e);
        let len = self.ring.read::<u32>(e + 4);
        self.last_used = self.last_used.wrapping_add(1);
        let head = u16::try_from(id).ok().filter(|&h| h < self.size)?;
        let mut d = head;
        for _ in 0..self.chain_len[usize::from(head)] {
            self.free.push(d);
            d = self
                .ring
                .read::<u16>(self.off(self.desc) + 16 * u64::from(d) + 14);
        }
        self.chain_len[usize::from(head)] = 0;
        Some((head, len))
    }

    /// Chains the device has not completed yet.
    pub fn in_flight(&self) -> u16 {
        self.avail_idx.wrapping_sub(self.last_used)
    }
}

/// virtio-blk request types.
pub const BLK_T_IN: u32 = 0;
pub const BLK_T_OUT: u32 = 1;
pub const BLK_S_OK: u8 = 0;
