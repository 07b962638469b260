//! Transfer Request Blocks and the rings the guest produces them on.
//!
//! A TRB is 16 bytes `{parameter u64, status u32, control u32}`, read from guest
//! memory in one bounds-checked access (the guest may rewrite it meanwhile; we use
//! our copy only). A ring is consumed while the TRB's cycle bit matches the
//! consumer cycle state; Link TRBs jump (and toggle the cycle with TC). A ring
//! made only of Link TRBs, or one that points outside guest memory, is an error,
//! never a hang or a panic.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const TRB_SIZE: u64 = 16;

/// TRB types (control bits 15:10).
pub mod trb_type {
    pub const NORMAL: u32 = 1;
    pub const SETUP: u32 = 2;
    pub const DATA: u32 = 3;
    pub const STATUS: u32 = 4;
    pub const ISOCH: u32 = 5;
    pub const LINK: u32 = 6;
    pub const EVENT_DATA: u32 = 7;
    pub const NOOP: u32 = 8;
    pub const ENABLE_SLOT: u32 = 9;
    pub const DISABLE_SLOT: u32 = 10;
    pub const ADDRESS_DEVICE: u32 = 11;
    pub const CONFIGURE_ENDPOINT: u32 = 12;
    pub const EVALUATE_CONTEXT: u32 = 13;
    pub const RESET_ENDPOINT: u32 = 14;
    pub const STOP_ENDPOINT: u32 = 15;
    pub const SET_TR_DEQUEUE: u32 = 16;
    pub const RESET_DEVICE: u32 = 17;
    pub const NOOP_COMMAND: u32 = 23;
    pub const TRANSFER_EVENT: u32 = 32;
    pub const COMMAND_COMPLETION: u32 = 33;
    pub const PORT_STATUS_CHANGE: u32 = 34;
    pub const HOST_CONTROLLER_EVENT: u32 = 37;
}

/// Completion codes (event status bits 31:24).
pub mod cc {
    pub const SUCCESS: u8 = 1;
    pub const DATA_BUFFER_ERROR: u8 = 2;
    pub const BABBLE: u8 = 3;
    pub const USB_TRANSACTION_ERROR: u8 = 4;
    pub const TRB_ERROR: u8 = 5;
    pub const STALL: u8 = 6;
    pub const NO_SLOTS: u8 = 9;
    pub const SLOT_NOT_ENABLED: u8 = 11;
    pub const EP_NOT_ENABLED: u8 = 12;
    pub const SHORT_PACKET: u8 = 13;
    /// An isochronous OUT ring empty at a service interval.
    pub const RING_UNDERRUN: u8 = 14;
    /// An isochronous IN ring empty at a service interval.
    pub const RING_OVERRUN: u8 = 15;
    pub const PARAMETER: u8 = 17;
    pub const CONTEXT_STATE: u8 = 19;
    pub const EVENT_RING_FULL: u8 = 21;
    pub const COMMAND_RING_STOPPED: u8 = 24;
    pub const COMMAND_ABORTED: u8 = 25;
    pub const STOPPED: u8 = 26;
    pub const MISSED_SERVICE: u8 = 23;
}

pub const CYCLE: u32 = 1 << 0;
/// Link TRB: toggle cycle. Also ENT on transfer TRBs (unused here).
pub const TOGGLE_CYCLE: u32 = 1 << 1;
/// Interrupt on Short Packet (transfer TRBs).
pub const ISP: u32 = 1 << 2;
pub const CHAIN: u32 = 1 << 4;
pub const IOC: u32 = 1 << 5;
pub const IDT: u32 = 1 << 6;
/// Block Event Interrupt: the TRB's event is written without an interrupt.
pub const BEI: u32 = 1 << 9;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trb {
    pub parameter: u64,
    pub status: u32,
    pub control: u32,
}

impl Trb {
    pub fn read(mem: &GuestMemoryMmap<()>, addr: u64) -> Option<Trb> {
        let mut raw = [0u8; 16];
        mem.read_slice(&mut raw, GuestAddress(addr)).ok()?;
        Some(Trb::from_bytes(&raw))
    }

    pub fn from_bytes(raw: &[u8; 16]) -> Trb {
        let mut p = [0u8; 8];
        p.copy_from_slice(&raw[..8]);
        Trb {
            parameter: u64::from_le_bytes(p),
            status: u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]),
            control: u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]]),
        }
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.parameter.to_le_bytes());
        raw[8..12].copy_from_slice(&self.status.to_le_bytes());
        raw[12..].copy_from_slice(&self.control.to_le_bytes());
        raw
    }

    pub fn trb_type(&self) -> u32 {
        (self.control >> 10) & 0x3f
    }

    pub fn cycle(&self) -> bool {
        self.control & CYCLE != 0
    }

    pub fn has(&self, flag: u32) -> bool {
        self.control & flag != 0
    }

    /// Transfer length of a Normal/Data/Setup TRB (status 16:0).
    pub fn transfer_length(&self) -> u32 {
        self.status & 0x1_ffff
    }

    /// Interrupter Target of a transfer TRB (status 31:22): the interrupter
    /// whose event ring receives the events this TRB causes.
    pub fn interrupter_target(&self) -> usize {
        (self.status >> 22) as usize
    }

    /// Slot id of a command (control 31:24).
    pub fn slot_id(&self) -> u8 {
        (self.control >> 24) as u8
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RingError {
    /// A TRB outside guest memory.
    Memory(u64),
    /// More Link TRBs in a row than a real ring has.
    LinkLoop(u64),
}

/// A consumer position on a guest-produced ring (command or transfer ring).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    pub dequeue: u64,
    pub cycle: bool,
}

/// Links followed in a row before the ring is called malformed.
const MAX_LINKS: usize = 32;

impl Ring {
    pub fn new(dequeue: u64, cycle: bool) -> Ring {
        Ring {
            dequeue: dequeue & !0xf,
            cycle,
        }
    }

    /// The next TRB the guest handed us, with its address, without consuming it;
    /// Link TRBs on the way are followed (and consumed). None: the ring is empty.
    pub fn peek(&mut self, mem: &GuestMemoryMmap<()>) -> Result<Option<(u64, Trb)>, RingError> {
        for _ in 0..MAX_LINKS {
            let trb = Trb::read(mem, self.dequeue).ok_or(RingError::Memory(self.dequeue))?;
            if trb.cycle() != self.cycle {
                return Ok(None);
            }
            if trb.trb_type() != trb_type::LINK {
                return Ok(Some((self.dequeue, trb)));
            }
            if trb.has(TOGGLE_CYCLE) {
                self.cycle = !self.cycle;
            }
            self.dequeue = trb.parameter & !0xf;
        }
        Err(RingError::LinkLoop(self.dequeue))
    }

    /// Consume the TRB `peek` returned.
    pub fn advance(&mut self) {
        self.dequeue = self.dequeue.wrapping_add(TRB_SIZE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn put(mem: &GuestMemoryMmap<()>, addr: u64, trb: Trb) {
        mem.write_slice(&trb.to_bytes(), GuestAddress(addr))
            .unwrap();
    }

    #[test]
    fn ring_follows_links_and_toggles_cycle() {
        let m = mem();
        let noop = |c: bool| Trb {
            control: trb_type::NOOP_COMMAND << 10 | u32::from(c),
            ..Trb::default()
        };
        put(&m, 0x1000, noop(true));
        put(
            &m,
            0x1010,
            Trb {
                parameter: 0x1000,
                status: 0,
                control: trb_type::LINK << 10 | TOGGLE_CYCLE | CYCLE,
            },
        );
        let mut ring = Ring::new(0x1000, true);
        assert_eq!(ring.peek(&m).unwrap().unwrap().0, 0x1000);
        ring.advance();
        // The link is consumed, the cycle flips, and the old TRB is not new any more.
        assert_eq!(ring.peek(&m).unwrap(), None);
        assert_eq!(
            ring,
            Ring {
                dequeue: 0x1000,
                cycle: false
            }
        );
        put(&m, 0x1000, noop(false));
        assert_eq!(ring.peek(&m).unwrap().unwrap().0, 0x1000);
    }

    #[test]
    fn hostile_rings_are_errors() {
        let m = mem();
        // A link to itself without toggle: a loop.
        put(
            &m,
            0x2000,
            Trb {
                parameter: 0x2000,
                status: 0,
                control: trb_type::LINK << 10 | CYCLE,
            },
        );
        assert_eq!(
            Ring::new(0x2000, true).peek(&m),
            Err(RingError::LinkLoop(0x2000))
        );
        // Outside RAM.
        put(
            &m,
            0x2100,
            Trb {
                parameter: 0xdead_0000,
                status: 0,
                control: trb_type::LINK << 10 | CYCLE,
            },
        );
        assert_eq!(
            Ring::new(0x2100, true).peek(&m),
            Err(RingError::Memory(0xdead_0000))
        );
        assert_eq!(
            Ring::new(0xffff_fff8, true).peek(&m),
            Err(RingError::Memory(0xffff_fff0))
        );
    }
}
