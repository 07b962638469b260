//! An interrupter: its registers (IMAN, IMOD, ERSTSZ, ERSTBA, ERDP) and the event
//! ring it produces on, described by the guest's Event Ring Segment Table.
//!
//! The segment table is read once, when the guest writes ERSTBA (as QEMU does),
//! with each entry's size bounded. The producer never overwrites an event the
//! guest has not consumed (the slot before ERDP stays free); when the ring is
//! full it writes one Event Ring Full host-controller event there and drops
//! events until the guest moves ERDP, with a log line.

use tracing::warn;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::trb::{cc, trb_type, Trb, TRB_SIZE};

pub const IMAN_IP: u32 = 1 << 0;
pub const IMAN_IE: u32 = 1 << 1;
pub const ERDP_EHB: u64 = 1 << 3;
/// Segments per table we accept (HCSPARAMS2.ERST Max = 4: 2^4 entries).
pub const MAX_SEGMENTS: u32 = 16;
/// An ERST entry's size field is at most 4096 TRBs (xHCI 6.5), at least 16.
const MAX_SEGMENT_TRBS: u32 = 4096;
const MIN_SEGMENT_TRBS: u32 = 16;

#[derive(Debug, Default)]
pub struct Interrupter {
    pub iman: u32,
    pub imod: u32,
    pub erstsz: u32,
    pub erstba: u64,
    pub erdp: u64,
    segments: Vec<(u64, u32)>,
    segment: usize,
    index: u32,
    cycle: bool,
    /// The ERDP the ring was full at; events are dropped until it moves.
    full_at: Option<u64>,
}

/// Whether an event asks for an interrupt to be raised.
#[derive(Debug, PartialEq, Eq)]
pub enum Posted {
    Written,
    Dropped,
}

impl Interrupter {
    pub fn reset(&mut self) {
        *self = Interrupter::default();
    }

    /// The guest wrote ERSTBA (low dword last, as Linux writes 64-bit registers
    /// low then high; we reload on either half): read the segment table.
    pub fn load_segment_table(&mut self, mem: &GuestMemoryMmap<()>) {
        self.segments.clear();
        self.segment = 0;
        self.index = 0;
        self.cycle = true;
        self.full_at = None;
        let count = self.erstsz & 0xffff;
        if count == 0 {
            return;
        }
        if count > MAX_SEGMENTS {
            warn!(
                count,
                "xhci: ERSTSZ over the advertised maximum; event ring disabled"
            );
            return;
        }
        for i in 0..u64::from(count) {
            let mut raw = [0u8; 16];
            let at = (self.erstba & !0x3f).wrapping_add(i * 16);
            if mem.read_slice(&mut raw, GuestAddress(at)).is_err() {
                warn!(at, "xhci: event ring segment table outside guest memory");
                self.segments.clear();
                return;
            }
            let mut base = [0u8; 8];
            base.copy_from_slice(&raw[..8]);
            let base = u64::from_le_bytes(base) & !0x3f;
            let size = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]) & 0xffff;
            if !(MIN_SEGMENT_TRBS..=MAX_SEGMENT_TRBS).contains(&size) {
                warn!(size, "xhci: event ring segment size out of range");
                self.segments.clear();
                return;
            }
            self.segments.push((base, size));
        }
    }

    fn enqueue_address(&self) -> Option<u64> {
        let (base, _) = *self.segments.get(self.segment)?;
        Some(base + u64::from(self.index) * TRB_SIZE)
    }

    fn next_position(&self) -> (usize, u32, bool) {
        let (_, size) = self.segments[self.segment];
        if self.index + 1 < size {
            (self.segment, self.index + 1, self.cycle)
        } else if self.segment + 1 < self.segments.len() {
            (self.segment + 1, 0, self.cycle)
        } else {
            (0, 0, !self.cycle)
        }
    }

    /// Writes `event` with the producer cycle bit. Dropped when the ring is not
    /// set up, is full, or points outside guest memory.
    pub fn post(&mut self, mem: &GuestMemoryMmap<()>, mut event: Trb) -> Posted {
        let Some(at) = self.enqueue_address() else {
            warn!("xhci: event with no event ring set up; dropped");
            return Posted::Dropped;
        };
        if self.full_at.is_some() {
            return Posted::Dropped;
        }
        let (segment, index, cycle) = self.next_position();
        let next = self.segments[segment].0 + u64::from(index) * TRB_SIZE;
        if next == self.erdp & !0xf {
            // One slot left: it carries the Event Ring Full error instead.
            warn!("xhci: event ring full; events dropped until the guest catches up");
            event = Trb {
                parameter: 0,
                status: u32::from(cc::EVENT_RING_FULL) << 24,
                control: trb_type::HOST_CONTROLLER_EVENT << 10,
            };
            self.full_at = Some(self.erdp & !0xf);
        }
        event.control = (event.control & !1) | u32::from(self.cycle);
        if mem
            .write_slice(&event.to_bytes(), GuestAddress(at))
            .is_err()
        {
            warn!(
                at,
                "xhci: event ring segment outside guest memory; event dropped"
            );
            return Posted::Dropped;
        }
        self.segment = segment;
        self.index = index;
        self.cycle = cycle;
        Posted::Written
    }

    /// The guest wrote ERDP: EHB is write-1-to-clear, the pointer moves.
    /// Returns whether unconsumed events remain (the interrupt is raised again).
    pub fn write_erdp(&mut self, value: u64) -> bool {
        let ehb = if value & ERDP_EHB != 0 {
            0
        } else {
            self.erdp & ERDP_EHB
        };
        self.erdp = (value & !0xf) | (value & 0x7) | ehb;
        // The pointer alone cannot tell "consumed nothing" from "consumed the
        // whole ring" (both leave ERDP where it was); a driver writes ERDP after
        // handling the events it found, so any write ends the full state.
        self.full_at = None;
        self.enqueue_address()
            .is_some_and(|a| a != self.erdp & !0xf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(segments: &[(u64, u32)]) -> (GuestMemoryMmap<()>, Interrupter) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20000)]).unwrap();
        for (i, (base, size)) in segments.iter().enumerate() {
            let at = GuestAddress(0x100 + i as u64 * 16);
            mem.write_obj(*base, at).unwrap();
            mem.write_obj(*size, GuestAddress(at.0 + 8)).unwrap();
        }
        let mut intr = Interrupter {
            erstsz: segments.len() as u32,
            erstba: 0x100,
            ..Default::default()
        };
        intr.load_segment_table(&mem);
        intr.erdp = segments.first().map_or(0, |s| s.0);
        (mem, intr)
    }

    fn event(n: u64) -> Trb {
        Trb {
            parameter: n,
            status: 0,
            control: trb_type::COMMAND_COMPLETION << 10,
        }
    }

    fn read(mem: &GuestMemoryMmap<()>, addr: u64) -> Trb {
        let mut raw = [0u8; 16];
        mem.read_slice(&mut raw, GuestAddress(addr)).unwrap();
        Trb::from_bytes(&raw)
    }

    #[test]
    fn wraps_across_segments_and_flips_cycle() {
        let (mem, mut intr) = setup(&[(0x1000, 16), (0x2000, 16)]);
        for n in 0..32 {
            assert_eq!(intr.post(&mem, event(n)), Posted::Written);
            // The consumer keeps up.
            let next = intr.enqueue_address().unwrap();
            intr.write_erdp(next | ERDP_EHB);
        }
        assert_eq!(read(&mem, 0x1000).parameter, 0);
        assert!(read(&mem, 0x1000).cycle());
        assert_eq!(read(&mem, 0x2000 + 15 * 16).parameter, 31);
        // Second lap: cycle 0.
        intr.post(&mem, event(99));
        let t = read(&mem, 0x1000);
        assert_eq!((t.parameter, t.cycle()), (99, false));
    }

    #[test]
    fn full_ring_reports_once_and_recovers() {
        let (mem, mut intr) = setup(&[(0x1000, 16)]);
        for n in 0..16 {
            assert_eq!(intr.post(&mem, event(n)), Posted::Written);
        }
        // 15 events, and the last free slot (before ERDP) holds Event Ring Full.
        assert_eq!(read(&mem, 0x1000 + 14 * 16).parameter, 14);
        let t = read(&mem, 0x1000 + 15 * 16);
        assert_eq!(
            (t.trb_type(), (t.status >> 24) as u8),
            (trb_type::HOST_CONTROLLER_EVENT, cc::EVENT_RING_FULL)
        );
        assert_eq!(intr.post(&mem, event(100)), Posted::Dropped);
        // The guest consumed everything (ERDP back at the start, after the wrap):
        // nothing is pending and writing resumes, with the cycle flipped.
        assert!(!intr.write_erdp(0x1000 | ERDP_EHB));
        assert_eq!(intr.post(&mem, event(7)), Posted::Written);
        let t = read(&mem, 0x1000);
        assert_eq!((t.parameter, t.cycle()), (7, false));
    }

    #[test]
    fn bad_segment_tables_disable_the_ring() {
        let (mem, mut intr) = setup(&[(0x1000, 8)]);
        assert_eq!(intr.post(&mem, event(1)), Posted::Dropped);
        let (mem2, mut intr2) = setup(&[(0x1000, 16)]);
        intr2.erstba = 0xffff_0000;
        intr2.load_segment_table(&mem2);
        assert_eq!(intr2.post(&mem2, event(1)), Posted::Dropped);
        // A segment outside RAM: the write fails, nothing panics.
        let (mem3, mut intr3) = setup(&[(0x7fff_0000, 16)]);
        assert_eq!(intr3.post(&mem3, event(1)), Posted::Dropped);
        let _ = mem;
    }
}
