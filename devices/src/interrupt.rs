//! How devices raise interrupts without knowing about KVM.

use std::sync::Arc;

/// One interrupt line as a device sees it.
///
/// ISA devices hold the line high while they have something pending (the PIC and
/// IOAPIC pins for ISA IRQs are edge-triggered, so the rising edge is what counts);
/// PCI INTx lines are level-triggered and shared.
pub trait IrqLine: Send + Sync {
    fn set_level(&self, high: bool);

    /// A rising and falling edge: for edge-triggered sources that do not track level.
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// The interrupt controllers: drive global system interrupt `gsi` to `level`.
pub trait IrqChip: Send + Sync {
    fn set_gsi(&self, gsi: u32, level: bool);
}

/// An ISA IRQ line wired straight to a GSI of the interrupt controllers.
pub struct GsiLine {
    chip: Arc<dyn IrqChip>,
    gsi: u32,
}

impl GsiLine {
    pub fn new(chip: Arc<dyn IrqChip>, gsi: u32) -> Self {
        Self { chip, gsi }
    }
}

impl IrqLine for GsiLine {
    fn set_level(&self, high: bool) {
        self.chip.set_gsi(self.gsi, high);
    }
}

/// A line that goes nowhere (a device configured without an interrupt).
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) {}
}

/// A device's output pin: the line it drives plus the level last driven, so the
/// line only sees changes (a repeated level would be a spurious edge to nobody and
/// a wasted KVM_IRQ_LINE). Starts low. `Default` is a pin wired to `NoIrq`.
pub struct LevelTracker {
    line: Arc<dyn IrqLine>,
    high: bool,
}

impl LevelTracker {
    pub fn new(line: Arc<dyn IrqLine>) -> Self {
        Self { line, high: false }
    }

    /// Drive the pin to `high`; the line hears about it only if that is a change.
    pub fn set(&mut self, high: bool) {
        if high != self.high {
            self.high = high;
            self.line.set_level(high);
        }
    }
}

impl Default for LevelTracker {
    fn default() -> Self {
        Self::new(Arc::new(NoIrq))
    }
}

/// What a device may ask of the machine as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmRequest {
    /// Restart the guest in place (0xCF9, i8042 pulse, port 0x92 fast reset).
    Reset,
    /// The guest powered itself off.
    PowerOff,
}

/// Where devices send `VmRequest`s; the VMM implements it.
pub trait VmRequests: Send + Sync {
    fn request(&self, req: VmRequest);
}

#[cfg(test)]
pub mod test_util {
    //! Recording implementations for unit tests: interrupt lines, the interrupt
    //! controllers, machine requests and byte sinks.
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct RecordingLine {
        pub levels: Mutex<Vec<bool>>,
    }

    impl RecordingLine {
        pub fn is_high(&self) -> bool {
            *self.levels.lock().unwrap().last().unwrap_or(&false)
        }

        /// Low-to-high transitions so far (the line starts low): what an
        /// edge-triggered PIC or IOAPIC pin counts as interrupts.
        pub fn rising_edges(&self) -> usize {
            let levels = self.levels.lock().unwrap();
            let mut prev = false;
            levels
                .iter()
                .filter(|&&high| !std::mem::replace(&mut prev, high) && high)
                .count()
        }
    }

    impl IrqLine for RecordingLine {
        fn set_level(&self, high: bool) {
            self.levels.lock().unwrap().push(high);
        }
    }

    #[derive(Default)]
    pub struct RecordingChip {
        pub events: Mutex<Vec<(u32, bool)>>,
    }

    impl IrqChip for RecordingChip {
        fn set_gsi(&self, gsi: u32, level: bool) {
            self.events.lock().unwrap().push((gsi, level));
        }
    }

    #[derive(Default)]
    pub struct RecordingRequests {
        pub requests: Mutex<Vec<VmRequest>>,
    }

    impl VmRequests for RecordingRequests {
        fn request(&self, req: VmRequest) {
            self.requests.lock().unwrap().push(req);
        }
    }

    /// A `Write` sink whose clones share one buffer: hand one to a device as its
    /// output and read what it wrote through another.
    #[derive(Clone, Default)]
    pub struct RecordingWriter(Arc<Mutex<Vec<u8>>>);

    impl RecordingWriter {
        pub fn contents(&self) -> Vec<u8> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Write for RecordingWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::RecordingLine;
    use super::*;

    #[test]
    fn level_tracker_forwards_changes_only() {
        let line = Arc::new(RecordingLine::default());
        let mut pin = LevelTracker::new(line.clone());
        pin.set(false);
        pin.set(true);
        pin.set(true);
        pin.set(false);
        pin.set(true);
        assert_eq!(*line.levels.lock().unwrap(), [true, false, true]);
        assert_eq!(line.rising_edges(), 2);
        LevelTracker::default().set(true);
    }

    #[test]
    fn rising_edges_counts_transitions() {
        let line = RecordingLine::default();
        assert_eq!(line.rising_edges(), 0);
        for l in [true, true, false, false, true, false] {
            line.set_level(l);
        }
        assert_eq!(line.rising_edges(), 2);
        line.pulse();
        assert_eq!(line.rising_edges(), 3);
    }
}
