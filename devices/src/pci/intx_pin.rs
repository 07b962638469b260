//! A PCI function's INTx pin, as every INTx-capable device drives it.
//!
//! The device says whether it has an interrupt pending; the pin drives the line to
//! `pending && !COMMAND.INTX_DISABLE`, touching it only when that changes, and the
//! device mirrors `pending` (masked or not) into STATUS.Interrupt before serving a
//! config read, which is the only place the guest can see that bit.

use std::sync::Arc;

use super::PciConfig;
use crate::interrupt::LevelTracker;
use crate::IrqLine;

pub struct IntxPin {
    out: LevelTracker,
    pending: bool,
    /// COMMAND.INTX_DISABLE as last seen.
    disabled: bool,
}

impl IntxPin {
    /// A pin with nothing pending and INTx enabled (COMMAND's power-on value).
    pub fn new(line: Arc<dyn IrqLine>) -> Self {
        Self {
            out: LevelTracker::new(line),
            pending: false,
            disabled: false,
        }
    }

    /// Whether the device has an interrupt pending, masked or not.
    #[cfg(test)]
    pub fn pending(&self) -> bool {
        self.pending
    }

    pub fn set_pending(&mut self, pending: bool) {
        self.pending = pending;
        self.update();
    }

    /// Follow COMMAND.INTX_DISABLE.
    pub fn set_disabled(&mut self, disabled: bool) {
        self.disabled = disabled;
        self.update();
    }

    /// Follow `config`'s COMMAND register: call after every config write and
    /// after a config reset (cheap, and a no-op unless INTX_DISABLE changed).
    pub fn follow_command(&mut self, config: &PciConfig) {
        self.set_disabled(config.intx_disabled());
    }

    /// Reflect `pending` in `config`'s STATUS.Interrupt: call before serving a
    /// config read.
    pub fn mirror_status(&self, config: &mut PciConfig) {
        config.set_interrupt_status(self.pending);
    }

    fn update(&mut self) {
        self.out.set(self.pending && !self.disabled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::RecordingLine;
    use crate::pci::config::{COMMAND, COMMAND_INTX_DISABLE, STATUS, STATUS_INTERRUPT};

    #[test]
    fn line_follows_pending_and_intx_disable_with_edges_only() {
        let line = Arc::new(RecordingLine::default());
        let mut pin = IntxPin::new(line.clone());
        let mut config = PciConfig::new(0x1234, 0x5678, 0xff0000, 0);
        pin.set_pending(false);
        assert!(line.levels.lock().unwrap().is_empty(), "no change, no edge");
        pin.set_pending(true);
        pin.set_pending(true);
        assert_eq!(*line.levels.lock().unwrap(), [true]);
        // INTX_DISABLE lowers the line but keeps the interrupt pending.
        config.write(COMMAND, &COMMAND_INTX_DISABLE.to_le_bytes());
        pin.follow_command(&config);
        assert!(!line.is_high());
        assert!(pin.pending());
        pin.mirror_status(&mut config);
        assert_ne!(config.u16_at(STATUS) & STATUS_INTERRUPT, 0);
        config.write(COMMAND, &[0, 0]);
        pin.follow_command(&config);
        assert!(line.is_high());
        pin.set_pending(false);
        pin.mirror_status(&mut config);
        assert_eq!(config.u16_at(STATUS) & STATUS_INTERRUPT, 0);
        assert_eq!(*line.levels.lock().unwrap(), [true, false, true, false]);
    }
}
