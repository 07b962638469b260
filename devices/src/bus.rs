//! Address-range dispatch for port I/O and MMIO exits.
//!
//! A `Bus` maps non-overlapping address ranges to devices. The vCPU loop asks the
//! bus to route an access; the device sees the range base and the offset inside it,
//! so the same model can be placed anywhere (e.g. two UARTs).
//!
//! Ranges are inserted while the machine is built (`&mut self`); afterwards the bus
//! is shared read-only by the vCPU threads, so a lookup takes no bus-level lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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

/// Read of a one-byte register at offset 0 of its range: the byte that lands on
/// the register reads `value`, every other byte of a wider or misplaced access
/// reads all ones (nothing else decodes there).
pub fn read_byte_register(offset: u64, data: &mut [u8], value: u8) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = if offset.checked_add(i as u64) == Some(0) {
            value
        } else {
            0xff
        };
    }
}

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
    ranges: BTreeMap<u64, (Range, SharedDevice)>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Place `device` at `[base, base + len)`. Overlaps are refused.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<()> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(Error::BusRange { base, len });
        }
        let new = Range { base, len };
        let overlaps_prev = self
            .ranges
            .range(..new.end())
            .next_back()
            .is_some_and(|(_, (r, _))| r.end() > base);
        if overlaps_prev {
            return Err(Error::BusOverlap { base, len });
        }
        self.ranges.insert(base, (new, device));
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let (_, (range, dev)) = self.ranges.range(..=addr).next_back()?;
        (addr < range.end()).then_some((range.base, dev))
    }

    /// Route a read. Returns false when nothing decodes `addr`; `data` is then left
    /// untouched, so the caller that tries the next decoder (`PciRoot`) or gives up
    /// decides what it reads as. When a device decodes `addr`, `data` is zeroed
    /// before the device fills it.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((base, dev)) => {
                data.fill(0);
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
        let mut bus = Bus::new();
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
        // A miss leaves the buffer alone (the next decoder fills it).
        assert!(!bus.read(0x110, &mut b));
        assert_eq!(b[0], 51);
        assert!(!bus.read(0xff, &mut b));
        assert_eq!(b[0], 51);
        assert!(!bus.write(0x110, &[1]));
        // A hit zeroes what the device does not fill.
        let mut w = [0xaau8; 4];
        assert!(bus.read(0x100, &mut w));
        assert_eq!(w, [10, 0, 0, 0]);
    }

    #[test]
    fn byte_register_reads() {
        let mut w = [0u8; 4];
        read_byte_register(0, &mut w, 0x5a);
        assert_eq!(w, [0x5a, 0xff, 0xff, 0xff]);
        read_byte_register(1, &mut w[..2], 0x5a);
        assert_eq!(w[..2], [0xff, 0xff]);
        read_byte_register(u64::MAX, &mut w, 0x5a);
        assert_eq!(w, [0xff; 4]);
        read_byte_register(0, &mut [], 0x5a);
    }
}
