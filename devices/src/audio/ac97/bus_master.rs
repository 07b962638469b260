//! One AC'97 bus master (PCM in, PCM out or mic in): its 16-byte register
//! block in NABM and the descriptor-list engine behind it.
//!
//! The guest gives each bus master a list of 32 buffer descriptors (BDBAR),
//! marks the last one it filled (LVI) and sets run (CR.RPBM). The engine moves
//! samples through the descriptor at CIV (PICB samples left in it), then goes
//! on to the prefetched one (PIV). At each descriptor's end it raises BCIS if
//! the descriptor asked (IOC); at LVI's end it raises LVBCI and halts (DCH)
//! until the driver moves LVI on. Interrupts follow the status bits and the
//! enables in CR.
//!
//! Descriptors come from guest memory, which the guest may change at any
//! time: each is read once, when the engine reaches it, and a list or buffer
//! outside RAM is logged and played as silence (or dropped, for input), never
//! trusted.

use tracing::{debug, warn};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Register offsets inside a bus master's block.
pub const BDBAR: u8 = 0x00;
pub const CIV: u8 = 0x04;
pub const LVI: u8 = 0x05;
pub const SR: u8 = 0x06;
pub const PICB: u8 = 0x08;
pub const PIV: u8 = 0x0a;
pub const CR: u8 = 0x0b;

/// Status register bits.
pub const SR_DCH: u16 = 1 << 0;
pub const SR_CELV: u16 = 1 << 1;
pub const SR_LVBCI: u16 = 1 << 2;
pub const SR_BCIS: u16 = 1 << 3;
pub const SR_FIFOE: u16 = 1 << 4;
const SR_WRITE_CLEAR: u16 = SR_LVBCI | SR_BCIS | SR_FIFOE;

/// Control register bits.
pub const CR_RPBM: u8 = 1 << 0;
pub const CR_RR: u8 = 1 << 1;
pub const CR_LVBIE: u8 = 1 << 2;
pub const CR_FEIE: u8 = 1 << 3;
pub const CR_IOCE: u8 = 1 << 4;
/// What a register reset (CR.RR) leaves of CR: the interrupt enables.
const CR_KEPT_ON_RESET: u8 = CR_IOCE | CR_FEIE | CR_LVBIE;

/// Descriptor control bits (high half of the second word).
pub const BD_IOC: u32 = 1 << 31;
pub const BD_BUP: u32 = 1 << 30;

const ENTRIES: u8 = 32;
/// Empty descriptors the engine skips in one step before it waits for the
/// next tick: a list of zero-length buffers cannot spin the worker.
const MAX_SKIPS: usize = ENTRIES as usize;

/// Moves samples between guest memory and the audio backend.
pub trait Dma {
    /// `samples` 16-bit samples at guest physical `addr` (in bounds or not:
    /// the implementation checks and reports).
    fn transfer(&mut self, mem: &GuestMemoryMmap<()>, addr: u64, samples: usize);
}

#[derive(Clone, Copy, Debug)]
struct Descriptor {
    /// Where the next sample of this buffer is.
    addr: u64,
    control: u32,
}

/// What one engine step did, for the owner to act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Samples moved.
    pub samples: usize,
    /// The engine stopped at the last valid descriptor (or found no data).
    pub halted: bool,
}

#[derive(Clone, Debug)]
pub struct BusMaster {
    bdbar: u32,
    civ: u8,
    lvi: u8,
    sr: u16,
    picb: u16,
    piv: u8,
    cr: u8,
    /// The descriptor at CIV, once fetched.
    current: Option<Descriptor>,
    /// The buffer at CIV has been used up (the engine halted at its end), so
    /// a restart begins with the next one.
    consumed: bool,
}

impl Default for BusMaster {
    fn default() -> Self {
        Self::new()
    }
}

impl BusMaster {
    pub fn new() -> Self {
        BusMaster {
            bdbar: 0,
            civ: 0,
            lvi: 0,
            sr: SR_DCH,
            picb: 0,
            piv: 0,
            cr: 0,
            current: None,
            consumed: false,
        }
    }

    /// Power-on and CR.RR: registers to their reset values, interrupt
    /// enables kept (as QEMU does).
    pub fn reset_registers(&mut self) {
        let cr = self.cr & CR_KEPT_ON_RESET;
        *self = BusMaster::new();
        self.cr = cr;
    }

    /// Is DMA running (RPBM set and not halted)?
    pub fn active(&self) -> bool {
        self.cr & CR_RPBM != 0 && self.sr & SR_DCH == 0
    }

    /// Did the guest set run (halted or not)?
    pub fn run_bit(&self) -> bool {
        self.cr & CR_RPBM != 0
    }

    /// Does this bus master want an interrupt?
    pub fn interrupt(&self) -> bool {
        (self.sr & SR_BCIS != 0 && self.cr & CR_IOCE != 0)
            || (self.sr & SR_LVBCI != 0 && self.cr & CR_LVBIE != 0)
            || (self.sr & SR_FIFOE != 0 && self.cr & CR_FEIE != 0)
    }

    /// The register block as bytes, so reads of any width see the same thing.
    fn image(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.bdbar.to_le_bytes());
        b[4] = self.civ;
        b[5] = self.lvi;
        b[6..8].copy_from_slice(&self.sr.to_le_bytes());
        b[8..10].copy_from_slice(&self.picb.to_le_bytes());
        b[10] = self.piv;
        b[11] = self.cr;
        b
    }

    /// Read `data.len()` bytes at `offset` in the block.
    pub fn read(&self, offset: u8, data: &mut [u8]) {
        let image = self.image();
        for (i, b) in data.iter_mut().enumerate() {
            *b = image.get(usize::from(offset) + i).copied().unwrap_or(0);
        }
    }

    /// A write of `data` at `offset`, byte by byte: each byte lands in the
    /// register it belongs to, so a dword write to CIV..SR sets LVI and
    /// clears SR bits as two separate writes would.
    pub fn write(&mut self, mem: &GuestMemoryMmap<()>, offset: u8, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let at = usize::from(offset) + i;
            match at {
                0..=3 => {
                    let mut b = self.bdbar.to_le_bytes();
                    b[at] = v;
                    // The list is 8-byte aligned: the low bits are zero.
                    self.bdbar = u32::from_le_bytes(b) & !7;
                }
                5 => self.write_lvi(mem, v),
                6 => self.sr &= !(u16::from(v) & SR_WRITE_CLEAR),
                11 => self.write_cr(mem, v),
                // CIV, PICB, PIV and the high half of SR are read-only.
                _ => {}
            }
        }
    }

    fn write_lvi(&mut self, mem: &GuestMemoryMmap<()>, v: u8) {
        self.lvi = v % ENTRIES;
        // A running engine halted at the old LVI starts on the new buffers.
        if self.run_bit() && self.sr & SR_DCH != 0 && self.consumed && self.civ != self.lvi {
            self.advance(mem);
            self.sr &= !(SR_DCH | SR_CELV);
        }
    }

    fn write_cr(&mut self, mem: &GuestMemoryMmap<()>, v: u8) {
        if v & CR_RR != 0 {
            self.reset_registers();
            return;
        }
        let was_running = self.run_bit();
        self.cr = v & (CR_RPBM | CR_LVBIE | CR_FEIE | CR_IOCE);
        if !self.run_bit() {
            // Paused: the buffer in progress stays where it is.
            self.sr |= SR_DCH;
        } else if !was_running {
            if self.current.is_some() {
                // Resumed mid-buffer (a pause released).
            } else if self.consumed {
                if self.civ == self.lvi {
                    // Nothing new since the engine halted at LVI.
                    return;
                }
                self.advance(mem);
            } else {
                self.fetch(mem);
                self.piv = (self.civ + 1) % ENTRIES;
            }
            self.sr &= !(SR_DCH | SR_CELV);
        }
    }

    /// Read the descriptor at CIV (once) and load PICB from it.
    fn fetch(&mut self, mem: &GuestMemoryMmap<()>) {
        let at = u64::from(self.bdbar) + u64::from(self.civ) * 8;
        let mut raw = [0u8; 8];
        let d = match mem.read_slice(&mut raw, GuestAddress(at)) {
            Ok(()) => Descriptor {
                addr: u64::from(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) & !1),
                control: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
            },
            Err(e) => {
                warn!(
                    "ac97: descriptor {} at {at:#x} unreadable ({e}); taken as empty",
                    self.civ
                );
                Descriptor {
                    addr: 0,
                    control: 0,
                }
            }
        };
        self.picb = d.control as u16;
        self.current = Some(d);
        self.consumed = false;
    }

    /// On to the prefetched descriptor.
    fn advance(&mut self, mem: &GuestMemoryMmap<()>) {
        self.civ = self.piv;
        self.piv = (self.piv + 1) % ENTRIES;
        self.fetch(mem);
    }

    /// Move up to `budget` samples through the descriptors, as the clock
    /// allows. Stops early at the last valid descriptor.
    pub fn run(&mut self, mem: &GuestMemoryMmap<()>, budget: usize, dma: &mut dyn Dma) -> Progress {
        let mut p = Progress::default();
        let mut skips = 0;
        let mut left = budget;
        while self.active() && left > 0 {
            let Some(d) = self.current else {
                self.fetch(mem);
                continue;
            };
            if self.picb == 0 {
                // A zero-length descriptor: nothing to move, on to the next.
                if self.civ == self.lvi {
                    debug!("ac97: last valid descriptor {} is empty; halting", self.civ);
                    self.halt_at_end(d);
                    p.halted = true;
                    break;
                }
                skips += 1;
                if skips > MAX_SKIPS {
                    break;
                }
                self.advance(mem);
                continue;
            }
            let n = left.min(usize::from(self.picb));
            dma.transfer(mem, d.addr, n);
            p.samples += n;
            left -= n;
            self.picb -= n as u16;
            self.current = Some(Descriptor {
                addr: d.addr.wrapping_add(2 * n as u64),
                ..d
            });
            if self.picb == 0 {
                let mut sr = self.sr & !SR_CELV;
                if d.control & BD_IOC != 0 {
                    sr |= SR_BCIS;
                }
                self.sr = sr;
                if self.civ == self.lvi {
                    self.halt_at_end(d);
                    p.halted = true;
                    break;
                }
                self.advance(mem);
            }
        }
        p
    }

    fn halt_at_end(&mut self, d: Descriptor) {
        self.sr |= SR_LVBCI | SR_DCH | SR_CELV;
        if d.control & BD_IOC != 0 && self.picb == 0 {
            self.sr |= SR_BCIS;
        }
        self.current = None;
        self.consumed = true;
    }
}
