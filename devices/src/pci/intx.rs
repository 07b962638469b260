//! PCI INTx routing through the PIIX3 PIRQ registers.
//!
//! On i440FX/PIIX3 every slot's INTA..INTD pins are wired ("swizzled") onto four
//! shared PIRQ lines A..D, and the PIIX3 config registers 0x60..0x63 (PIRQRC[A:D])
//! say which ISA IRQ each PIRQ drives. SeaBIOS programs them to 10, 10, 11, 11 and
//! stores the resulting IRQ in each device's INTERRUPT_LINE; Linux may rewrite them
//! later through its PIRQ router code or ACPI `_SRS`.
//!
//! PCI interrupts are level-triggered and shared, so the state kept here is a count
//! of asserted sources per PIRQ; an ISA IRQ is high while any PIRQ routed to it has
//! a non-zero count. All of it lives behind one mutex in [`PirqRegs`], which both the
//! PIIX3 (register reads and writes) and the lines handed to devices use: a guest
//! rewriting a route while a line is asserted then moves the level from the old IRQ
//! to the new one atomically with respect to device updates. `IrqChip::set_gsi` is
//! called with that mutex held so the chip sees level changes in the order they were
//! decided (the chip never calls back into this module).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{debug, warn};

use crate::interrupt::NoIrq;
use crate::{IrqChip, IrqLine};

/// Number of PIRQ lines (A..D) on the PIIX3.
pub const NUM_PIRQS: usize = 4;
/// Reset value of a PIRQ route register: bit 7 set = routing disabled.
pub const PIRQ_DISABLED: u8 = 0x80;
const NUM_ISA_IRQS: usize = 16;

/// ISA IRQ driven by a PIRQ route register value, if routing is enabled.
///
/// Bit 7 disables the route and bits 3:0 give the IRQ. The PIIX3 datasheet marks
/// IRQ values 0, 1, 2, 8 and 13 as reserved; routing a shared PCI level onto the
/// timer, keyboard, cascade, RTC or FPU input would only confuse the guest, so those
/// are treated as "not routed".
pub fn pirq_route(reg: u8) -> Option<u8> {
    if reg & 0x80 != 0 {
        return None;
    }
    let irq = reg & 0x0f;
    (!matches!(irq, 0 | 1 | 2 | 8 | 13)).then_some(irq)
}

/// The PIRQ a slot's INTx pin is wired to: `(pin - 1 + slot - 1) & 3`, the swizzle
/// QEMU and SeaBIOS (`piix_pci_slot_get_irq`) use on bus 0. `pin` is 1 (INTA) ..= 4.
pub fn swizzle(slot: u8, pin: u8) -> Option<usize> {
    if !(1..=4).contains(&pin) || slot >= 32 {
        return None;
    }
    // (pin - 1) + (slot - 1) == pin + slot - 2 == pin + slot + 2 (mod 4); the last
    // form cannot underflow for slot 0.
    Some((usize::from(pin) + usize::from(slot) + 2) & 3)
}

struct PirqState {
    regs: [u8; NUM_PIRQS],
    /// Asserted INTx sources per PIRQ.
    asserted: [u32; NUM_PIRQS],
    /// Level last sent to the chip per ISA IRQ, so the chip only sees changes.
    driven: [bool; NUM_ISA_IRQS],
    chip: Option<Arc<dyn IrqChip>>,
}

impl PirqState {
    /// Recompute every ISA IRQ's level and send the ones that changed.
    fn update(&mut self) {
        let Some(chip) = &self.chip else {
            return;
        };
        let mut want = [false; NUM_ISA_IRQS];
        for (reg, count) in self.regs.iter().zip(self.asserted) {
            if let Some(irq) = pirq_route(*reg) {
                want[usize::from(irq)] |= count > 0;
            }
        }
        for (irq, (&w, driven)) in want.iter().zip(self.driven.iter_mut()).enumerate() {
            if w != *driven {
                *driven = w;
                chip.set_gsi(irq as u32, w);
            }
        }
    }
}

/// PIIX3 PIRQ route registers plus the INTx level state behind them, shared by the
/// PIIX3 config space and [`PciIntxRouter`].
pub struct PirqRegs {
    state: Mutex<PirqState>,
}

impl PirqRegs {
    /// Registers at their reset value (all routes disabled), no chip attached yet.
    /// Returned in an `Arc` because the PIIX3 and the router always share it.
    pub fn new() -> Arc<Self> {
        Arc::new(PirqRegs {
            state: Mutex::new(PirqState {
                regs: [PIRQ_DISABLED; NUM_PIRQS],
                asserted: [0; NUM_PIRQS],
                driven: [false; NUM_ISA_IRQS],
                chip: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PirqState> {
        // The state stays consistent between statements, so a panic elsewhere while
        // holding the lock does not make it unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Route register `index` (0 = PIRQA at config 0x60); out of range reads 0.
    pub fn read(&self, index: usize) -> u8 {
        self.lock().regs.get(index).copied().unwrap_or(0)
    }

    /// Guest write of route register `index`: re-routes asserted lines at once.
    pub fn write(&self, index: usize, value: u8) {
        let mut s = self.lock();
        let Some(reg) = s.regs.get_mut(index) else {
            return;
        };
        if *reg != value {
            debug!(pirq = index, value, "PIRQ route changed");
        }
        *reg = value;
        s.update();
    }

    /// The ISA IRQ PIRQ `index` currently drives, if any.
    pub fn routed_irq(&self, index: usize) -> Option<u8> {
        self.lock().regs.get(index).copied().and_then(pirq_route)
    }

    /// Machine reset: routes back to disabled. Assertion counts are kept because
    /// they mirror the devices' line states, which the devices lower themselves.
    pub fn reset(&self) {
        let mut s = self.lock();
        s.regs = [PIRQ_DISABLED; NUM_PIRQS];
        s.update();
    }

    fn attach(&self, chip: Arc<dyn IrqChip>) {
        let mut s = self.lock();
        if s.chip.is_some() {
            warn!("PIRQ registers attached to a second interrupt chip; replacing");
        }
        s.chip = Some(chip);
        s.update();
    }

    /// A source on `pirq` changed level from `!high` to `high`.
    fn source_changed(&self, pirq: usize, flag: &AtomicBool, high: bool) {
        let mut s = self.lock();
        // The per-line flag is only touched under this lock, so swap tells whether
        // this is a real transition; repeated set_level(true) must not count twice.
        if flag.swap(high, Ordering::Relaxed) == high {
            return;
        }
        let count = &mut s.asserted[pirq];
        *count = if high {
            count.saturating_add(1)
        } else {
            count.saturating_sub(1)
        };
        s.update();
    }
}

/// Hands out the INTx lines of bus-0 devices, routed through the PIIX3.
pub struct PciIntxRouter {
    regs: Arc<PirqRegs>,
}

impl PciIntxRouter {
    /// `pirq_regs` must be the PIIX3's own (`Piix3::pirq_registers`).
    pub fn new(chip: Arc<dyn IrqChip>, pirq_regs: Arc<PirqRegs>) -> Self {
        pirq_regs.attach(chip);
        PciIntxRouter { regs: pirq_regs }
    }

    /// The line for INTx `pin` (1 = INTA ..= 4 = INTD) of the device in `slot`.
    /// An invalid slot or pin (0 = no interrupt pin) gives a line that goes nowhere.
    pub fn line(&self, slot: u8, pin: u8) -> Arc<dyn IrqLine> {
        match swizzle(slot, pin) {
            Some(pirq) => Arc::new(IntxLine {
                regs: self.regs.clone(),
                pirq,
                high: AtomicBool::new(false),
            }),
            None => {
                warn!(slot, pin, "no INTx routing for this slot/pin");
                Arc::new(NoIrq)
            }
        }
    }
}

/// One device's INTx pin, wired to a PIRQ.
struct IntxLine {
    regs: Arc<PirqRegs>,
    pirq: usize,
    high: AtomicBool,
}

impl IrqLine for IntxLine {
    fn set_level(&self, high: bool) {
        self.regs.source_changed(self.pirq, &self.high, high);
    }
}

impl Drop for IntxLine {
    fn drop(&mut self) {
        // A device going away must not leave the shared level stuck high.
        self.regs.source_changed(self.pirq, &self.high, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::RecordingChip;

    fn setup() -> (Arc<RecordingChip>, Arc<PirqRegs>, PciIntxRouter) {
        let chip = Arc::new(RecordingChip::default());
        let regs = PirqRegs::new();
        let router = PciIntxRouter::new(chip.clone(), regs.clone());
        (chip, regs, router)
    }

    fn take(chip: &RecordingChip) -> Vec<(u32, bool)> {
        std::mem::take(&mut *chip.events.lock().unwrap())
    }

    /// SeaBIOS `piix_isa_bridge_setup`: PIRQA..D = 10, 10, 11, 11.
    fn seabios_routes(regs: &PirqRegs) {
        for (i, irq) in [10u8, 10, 11, 11].into_iter().enumerate() {
            regs.write(i, irq);
        }
    }

    #[test]
    fn swizzle_matches_seabios() {
        // pci_irqs[(pin - 1 + slot - 1) & 3] with pci_irqs = {10, 10, 11, 11}.
        let irqs = [10u8, 10, 11, 11];
        let irq = |slot, pin| irqs[swizzle(slot, pin).unwrap()];
        assert_eq!(irq(1, 1), 10); // PIIX3 itself: PIRQA
        assert_eq!(irq(2, 1), 10); // PIRQB
        assert_eq!(irq(3, 1), 11);
        assert_eq!(irq(4, 1), 11);
        assert_eq!(irq(5, 1), 10);
        assert_eq!(swizzle(2, 1), Some(1));
        assert_eq!(swizzle(3, 2), Some(3));
        assert_eq!(swizzle(0, 1), Some(3)); // (0 - 1) & 3 with wraparound
        assert_eq!(swizzle(31, 4), Some(1)); // (3 + 30) & 3
        assert_eq!(swizzle(2, 0), None);
        assert_eq!(swizzle(2, 5), None);
        assert_eq!(swizzle(32, 1), None);
    }

    #[test]
    fn disabled_until_routed() {
        let (chip, regs, router) = setup();
        let line = router.line(2, 1);
        line.set_level(true);
        assert!(take(&chip).is_empty());
        assert_eq!(regs.read(1), 0x80);
        // Routing while asserted raises the IRQ straight away.
        seabios_routes(&regs);
        assert_eq!(take(&chip), vec![(10, true)]);
        line.set_level(false);
        assert_eq!(take(&chip), vec![(10, false)]);
    }

    #[test]
    fn shared_level_is_or_of_sources() {
        let (chip, regs, router) = setup();
        seabios_routes(&regs);
        assert!(take(&chip).is_empty());
        let a = router.line(2, 1); // PIRQB -> 10
        let b = router.line(5, 1); // PIRQA -> 10
        let c = router.line(1, 2); // PIRQB -> 10, same PIRQ as `a`
        a.set_level(true);
        a.set_level(true); // idempotent
        b.set_level(true);
        c.set_level(true);
        assert_eq!(take(&chip), vec![(10, true)]);
        a.set_level(false);
        c.set_level(false);
        assert!(take(&chip).is_empty());
        b.set_level(false);
        b.set_level(false);
        assert_eq!(take(&chip), vec![(10, false)]);
        let d = router.line(3, 1); // PIRQC -> 11
        d.pulse();
        assert_eq!(take(&chip), vec![(11, true), (11, false)]);
    }

    #[test]
    fn reroute_while_asserted() {
        let (chip, regs, router) = setup();
        seabios_routes(&regs);
        let a = router.line(5, 1); // PIRQA
        let b = router.line(2, 1); // PIRQB
        a.set_level(true);
        assert_eq!(take(&chip), vec![(10, true)]);
        // Guest moves PIRQA to IRQ 11: old IRQ lowered, new raised.
        regs.write(0, 11);
        assert_eq!(take(&chip), vec![(10, false), (11, true)]);
        // Disabling the route lowers it.
        regs.write(0, 0x80);
        assert_eq!(take(&chip), vec![(11, false)]);
        regs.write(0, 10);
        assert_eq!(take(&chip), vec![(10, true)]);
        // With PIRQB also asserted on 10, moving PIRQA away keeps 10 high.
        b.set_level(true);
        regs.write(0, 5);
        assert_eq!(take(&chip), vec![(5, true)]);
        a.set_level(false);
        assert_eq!(take(&chip), vec![(5, false)]);
        b.set_level(false);
        assert_eq!(take(&chip), vec![(10, false)]);
        // Rewriting the same value emits nothing.
        regs.write(1, 10);
        assert!(take(&chip).is_empty());
    }

    #[test]
    fn reserved_irqs_and_bad_pins_are_not_routed() {
        let (chip, regs, router) = setup();
        for v in [0u8, 1, 2, 8, 13, 0x8a, 0xff] {
            regs.write(0, v);
            assert_eq!(regs.routed_irq(0), None, "value {v:#x}");
        }
        let a = router.line(5, 1);
        a.set_level(true);
        assert!(take(&chip).is_empty());
        regs.write(0, 0x0e);
        assert_eq!(regs.routed_irq(0), Some(14));
        assert_eq!(take(&chip), vec![(14, true)]);
        // Out-of-range register indices are ignored.
        regs.write(7, 10);
        assert_eq!(regs.read(7), 0);
        // Invalid pins give a dead line.
        router.line(2, 0).set_level(true);
        router.line(40, 1).set_level(true);
        assert!(take(&chip).is_empty());
    }

    #[test]
    fn reset_and_drop_lower_lines() {
        let (chip, regs, router) = setup();
        seabios_routes(&regs);
        let a = router.line(2, 1);
        a.set_level(true);
        assert_eq!(take(&chip), vec![(10, true)]);
        regs.reset();
        assert_eq!(take(&chip), vec![(10, false)]);
        assert_eq!(regs.read(0), 0x80);
        // Still asserted: routing it again raises it again.
        regs.write(1, 11);
        assert_eq!(take(&chip), vec![(11, true)]);
        drop(a);
        assert_eq!(take(&chip), vec![(11, false)]);
    }

    #[test]
    fn concurrent_sources_balance() {
        let (chip, regs, router) = setup();
        seabios_routes(&regs);
        let lines: Vec<_> = (0..8).map(|s| router.line(s + 1, 1)).collect();
        std::thread::scope(|sc| {
            for l in &lines {
                sc.spawn(move || {
                    for _ in 0..200 {
                        l.set_level(true);
                        l.set_level(false);
                    }
                });
            }
        });
        // Whatever the interleaving, both IRQs end low and events alternate.
        let ev = take(&chip);
        for irq in [10u32, 11] {
            let levels: Vec<bool> = ev.iter().filter(|e| e.0 == irq).map(|e| e.1).collect();
            assert!(levels.windows(2).all(|w| w[0] != w[1]));
            assert_eq!(levels.last(), Some(&false));
        }
    }
}
