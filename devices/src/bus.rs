//! Address-range dispatch for port I/O and MMIO exits.
//!
//! A `Bus` maps non-overlapping address ranges to devices. The vCPU loop asks the
//! bus to route an access; the device sees the range base and the offset inside it,
//! so the same model can be placed anywhere (e.g. two UARTs).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::{Error, Result};

/// A device reachable through port I/O or MMIO.
///
/// `read` fills `data` (already zeroed by the bus) and `write` consumes `data`.
/// Access widths are whatever the guest used (1, 2, 4 or 8 bytes).
pub trait BusDevice: Send {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

/// A shared, lockable device as stored on a bus.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Range {
    base: u64,
    len: u64,
}

impl Range {
    fn end(&self) -> u64 {
        self.base + self.len
    }
}

/// Ranges of addresses, each owned by one device.
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, (Range, SharedDevice)>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Place `device` at `[base, base + len)`. Overlaps are refused.
    pub fn insert(&self, device: SharedDevice, base: u64, len: u64) -> Result<()> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(Error::BusRange { base, len });
        }
        let new = Range { base, len };
        let mut ranges = self.ranges.write().expect("bus lock poisoned");
        let overlaps_prev = ranges
            .range(..new.end())
            .next_back()
            .is_some_and(|(_, (r, _))| r.end() > base);
        if overlaps_prev {
            return Err(Error::BusOverlap { base, len });
        }
        ranges.insert(base, (new, device));
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, SharedDevice)> {
        let ranges = self.ranges.read().expect("bus lock poisoned");
        let (_, (range, dev)) = ranges.range(..=addr).next_back()?;
        (addr < range.end()).then(|| (range.base, dev.clone()))
    }

    /// Route a read. Returns false when nothing decodes `addr` (data left as zeros).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        data.fill(0);
        match self.find(addr) {
            Some((base, dev)) => {
                dev.lock()
                    .expect("device lock poisoned")
                    .read(base, addr - base, data);
                true
            }
            None => false,
        }
    }

    /// Route a write. Returns false when nothing decodes `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((base, dev)) => {
                dev.lock()
                    .expect("device lock poisoned")
                    .write(base, addr - base, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(u8);
    impl BusDevice for Echo {
        fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
            data[0] = self.0 + offset as u8;
        }
        fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn routes_by_range_and_refuses_overlap() {
        let bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Echo(10))), 0x100, 8)
            .unwrap();
        bus.insert(Arc::new(Mutex::new(Echo(20))), 0x108, 8)
            .unwrap();
        assert!(bus.insert(Arc::new(Mutex::new(Echo(0))), 0x104, 8).is_err());
        assert!(bus.insert(Arc::new(Mutex::new(Echo(0))), 0xfc, 8).is_err());
        assert!(bus.insert(Arc::new(Mutex::new(Echo(0))), 0x0, 0).is_err());
        let mut b = [0u8; 1];
        assert!(bus.read(0x103, &mut b));
        assert_eq!(b[0], 13);
        assert!(bus.write(0x108, &[50]));
        assert!(bus.read(0x109, &mut b));
        assert_eq!(b[0], 51);
        assert!(!bus.read(0x110, &mut b));
        assert_eq!(b[0], 0);
        assert!(!bus.read(0xff, &mut b));
    }
}
