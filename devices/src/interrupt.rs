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
    //! Recording implementations for unit tests.
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct RecordingLine {
        pub levels: Mutex<Vec<bool>>,
    }

    impl RecordingLine {
        pub fn is_high(&self) -> bool {
            *self.levels.lock().unwrap().last().unwrap_or(&false)
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
}
