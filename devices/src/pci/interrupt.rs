//! A PCI function's interrupts in one object: its INTx pin and, when it has
//! them, its MSI-X and MSI vectors, with the config-space plumbing every PCI
//! device would otherwise copy (COMMAND.INTX_DISABLE, STATUS.Interrupt, the
//! capabilities' control registers, the MSI-X table and PBA in a BAR).
//!
//! Two sides use it. The device model, from any thread (a vCPU, a device
//! worker), says what it wants: `set_intx(pending)` for its level-triggered
//! INTx state, `notify(vector)` for a message. The PCI function, on the vCPU
//! thread that holds the device's lock, forwards config reads and writes and
//! BAR accesses. The state is behind a lock of its own, never the device's, so
//! a worker interrupts the guest without waiting for a vCPU.
//!
//! Modes follow the PCI spec: while MSI-X (or MSI) is enabled the function does
//! not assert INTx (and STATUS.Interrupt stays clear); `set_intx` is still
//! recorded, so INTx resumes with the right level when the guest disables
//! messages again. `notify` is ignored while messages are disabled.

use std::sync::{Arc, Mutex, MutexGuard};

use super::intx_pin::IntxPin;
use super::msi::{Msi, MsiController};
use super::msix::{Msix, MsixLayout};
use super::PciConfig;
use crate::{IrqLine, Result};

struct State {
    intx: IntxPin,
    /// What the device wants on INTx, whatever the mode.
    intx_wanted: bool,
    msix: Option<Msix>,
    msi: Option<Msi>,
}

impl State {
    fn messages_enabled(&self) -> bool {
        self.msix.as_ref().is_some_and(Msix::enabled) || self.msi.as_ref().is_some_and(Msi::enabled)
    }

    fn update_intx(&mut self) {
        let level = self.intx_wanted && !self.messages_enabled();
        self.intx.set_pending(level);
    }
}

pub struct PciInterrupt {
    state: Mutex<State>,
}

impl PciInterrupt {
    /// A function interrupting on INTA through `line` (the pin is recorded in
    /// `config`'s Interrupt Pin register).
    pub fn new(config: &mut PciConfig, line: Arc<dyn IrqLine>) -> Self {
        config.set_interrupt_pin(1);
        PciInterrupt {
            state: Mutex::new(State {
                intx: IntxPin::new(line),
                intx_wanted: false,
                msix: None,
                msi: None,
            }),
        }
    }

    /// Add an MSI-X capability (to `config`, before it is sealed) whose table
    /// and PBA sit where `layout` says; one vector per entry from `controller`.
    /// The device declares the BAR itself.
    pub fn with_msix(
        self,
        config: &mut PciConfig,
        layout: MsixLayout,
        controller: &dyn MsiController,
    ) -> Result<Self> {
        let msix = Msix::new(config, layout, controller)?;
        self.lock().msix = Some(msix);
        Ok(self)
    }

    /// Add an MSI capability with room for `vectors` vectors (64-bit
    /// addresses, per-vector masking).
    pub fn with_msi(
        self,
        config: &mut PciConfig,
        vectors: usize,
        controller: &dyn MsiController,
    ) -> Result<Self> {
        let msi = Msi::new(config, vectors, controller)?;
        self.lock().msi = Some(msi);
        Ok(self)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every statement leaves the state consistent, so a panic elsewhere
        // while holding the lock does not make it unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device's INTx level: an interrupt is pending (e.g. an ISR bit set).
    pub fn set_intx(&self, pending: bool) {
        let mut s = self.lock();
        s.intx_wanted = pending;
        s.update_intx();
    }

    /// Send message `vector`: through MSI-X if the guest enabled it, else MSI
    /// if enabled, else nothing (the device's INTx level carries the event).
    /// A masked vector is held pending and sent on unmask.
    pub fn notify(&self, vector: u16) {
        let mut guard = self.lock();
        let s = &mut *guard;
        match (&mut s.msix, &mut s.msi) {
            (Some(x), _) if x.enabled() => x.notify(usize::from(vector)),
            (_, Some(m)) if m.enabled() => m.notify(usize::from(vector)),
            _ => {}
        }
    }

    /// Whether the guest enabled MSI-X.
    pub fn msix_enabled(&self) -> bool {
        self.lock().msix.as_ref().is_some_and(Msix::enabled)
    }

    /// The number of MSI-X table entries (0 without MSI-X).
    pub fn msix_vectors(&self) -> u16 {
        self.lock().msix.as_ref().map_or(0, |x| x.layout().vectors)
    }

    /// Whether MSI-X vector `vector` is pending (its PBA bit).
    pub fn msix_pending(&self, vector: u16) -> bool {
        let s = self.lock();
        s.msix.as_ref().is_some_and(|x| x.is_pending(vector.into()))
    }

    /// Forget held-back messages (a device reset: what was pending is stale).
    pub fn clear_pending(&self) {
        let mut s = self.lock();
        if let Some(x) = &mut s.msix {
            x.clear_pending();
        }
        if let Some(m) = &mut s.msi {
            m.clear_pending();
        }
    }

    /// Before serving a config read: STATUS.Interrupt and MSI pending bits
    /// into `config`.
    pub fn config_read(&self, config: &mut PciConfig) {
        let s = self.lock();
        s.intx.mirror_status(config);
        if let Some(m) = &s.msi {
            m.mirror(config);
        }
    }

    /// After a guest config write of `len` bytes at `offset`: follow COMMAND
    /// and the capabilities' registers.
    pub fn config_written(&self, config: &PciConfig, offset: usize, len: usize) {
        let mut s = self.lock();
        if let Some(x) = s.msix.as_mut().filter(|x| x.touches(offset, len)) {
            x.follow_config(config);
        }
        if let Some(m) = s.msi.as_mut().filter(|m| m.touches(offset, len)) {
            m.follow_config(config);
        }
        s.intx.follow_command(config);
        s.update_intx();
    }

    /// A read of BAR `bar`: serves it and returns true when it is the MSI-X
    /// table's or PBA's.
    pub fn bar_read(&self, bar: usize, offset: u64, data: &mut [u8]) -> bool {
        let s = self.lock();
        s.msix
            .as_ref()
            .is_some_and(|x| x.bar_read(bar, offset, data))
    }

    /// A write to BAR `bar`: handles it and returns true when it is the MSI-X
    /// table's or PBA's.
    pub fn bar_write(&self, bar: usize, offset: u64, data: &[u8]) -> bool {
        let mut s = self.lock();
        s.msix
            .as_mut()
            .is_some_and(|x| x.bar_write(bar, offset, data))
    }

    /// Machine reset, after `config` was restored to power-on: messages off,
    /// MSI-X entries masked, nothing pending, INTx following COMMAND again.
    /// The device's INTx level is its own to lower (in its own reset).
    pub fn reset(&self, config: &PciConfig) {
        let mut s = self.lock();
        if let Some(x) = &mut s.msix {
            x.reset(config);
        }
        if let Some(m) = &mut s.msi {
            m.reset(config);
        }
        s.intx.follow_command(config);
        s.update_intx();
    }
}

#[cfg(test)]
mod tests {
    use super::super::msi::test_util::RecordingMsi;
    use super::*;
    use crate::interrupt::test_util::RecordingLine;
    use crate::pci::config::{
        COMMAND, COMMAND_INTX_DISABLE, INTERRUPT_PIN, STATUS, STATUS_INTERRUPT,
    };
    use crate::pci::msix::MSIX_CAP_ID;

    fn status_interrupt(irq: &PciInterrupt, config: &mut PciConfig) -> bool {
        irq.config_read(config);
        config.u16_at(STATUS) & STATUS_INTERRUPT != 0
    }

    #[test]
    fn intx_follows_pending_and_intx_disable() {
        let line = Arc::new(RecordingLine::default());
        let mut config = PciConfig::new(0x1234, 0x5678, 0xff0000, 0);
        let irq = PciInterrupt::new(&mut config, line.clone());
        config.seal();
        assert_eq!(config.u8_at(INTERRUPT_PIN), 1);
        irq.set_intx(true);
        assert!(line.is_high());
        assert!(status_interrupt(&irq, &mut config));
        config.write(COMMAND, &COMMAND_INTX_DISABLE.to_le_bytes());
        irq.config_written(&config, COMMAND, 2);
        assert!(!line.is_high());
        assert!(status_interrupt(&irq, &mut config), "still pending");
        config.write(COMMAND, &[0, 0]);
        irq.config_written(&config, COMMAND, 2);
        assert!(line.is_high());
        irq.set_intx(false);
        assert!(!status_interrupt(&irq, &mut config));
        // Messages are no-ops without capabilities.
        irq.notify(0);
        assert!(!irq.bar_write(0, 0, &[0; 4]));
        assert_eq!(irq.msix_vectors(), 0);
    }

    #[test]
    fn msix_enable_takes_over_from_intx_and_gives_back() {
        let line = Arc::new(RecordingLine::default());
        let ctl = Arc::new(RecordingMsi::default());
        let mut config = PciConfig::new(0x1af4, 0x1042, 0x010000, 1);
        let irq = PciInterrupt::new(&mut config, line.clone())
            .with_msix(&mut config, MsixLayout::own_bar(1, 2), &*ctl)
            .unwrap();
        config.seal();
        let cap = config.u8_at(super::super::config::CAPABILITIES_PTR) as usize;
        assert_eq!(config.u8_at(cap), MSIX_CAP_ID);
        irq.set_intx(true);
        assert!(line.is_high());
        // The guest enables MSI-X: INTx drops, STATUS.Interrupt clears.
        config.write(cap + 3, &[0x80]);
        irq.config_written(&config, cap + 3, 1);
        assert!(irq.msix_enabled());
        assert!(!line.is_high());
        assert!(!status_interrupt(&irq, &mut config));
        // Program and unmask vector 1 through the BAR; notify reaches it.
        for (off, v) in [(16u64, 0xfee0_0000u32), (20, 0), (24, 0x45), (28, 0)] {
            assert!(irq.bar_write(1, off, &v.to_le_bytes()));
        }
        irq.notify(1);
        assert_eq!(ctl.take_fired(1), [0x45]);
        // Vector 0 is masked: pending, visible through the PBA.
        irq.notify(0);
        assert!(irq.msix_pending(0));
        let mut pba = [0u8; 8];
        assert!(irq.bar_read(1, 0x800, &mut pba));
        assert_eq!(pba[0], 1);
        irq.clear_pending();
        assert!(!irq.msix_pending(0));
        // Disabled again: the recorded INTx level comes back.
        config.write(cap + 3, &[0x00]);
        irq.config_written(&config, cap + 3, 1);
        assert!(line.is_high());
        irq.notify(1);
        assert_eq!(ctl.fired(1), 0);
        // Machine reset: everything back to power-on.
        config.write(cap + 3, &[0x80]);
        irq.config_written(&config, cap + 3, 1);
        config.reset();
        irq.reset(&config);
        assert!(!irq.msix_enabled());
        let mut ctrl = [0u8; 4];
        irq.bar_read(1, 28, &mut ctrl);
        assert_eq!(ctrl, [1, 0, 0, 0]);
    }

    #[test]
    fn msi_takes_over_from_intx() {
        let line = Arc::new(RecordingLine::default());
        let ctl = Arc::new(RecordingMsi::default());
        let mut config = PciConfig::new(0x8086, 0x2415, 0x040100, 1);
        let irq = PciInterrupt::new(&mut config, line.clone())
            .with_msi(&mut config, 1, &*ctl)
            .unwrap();
        config.seal();
        let cap = config.u8_at(super::super::config::CAPABILITIES_PTR) as usize;
        config.write(cap + 4, &0xfee0_0000u32.to_le_bytes());
        config.write(cap + 12, &0x0051u16.to_le_bytes());
        config.write(cap + 2, &[1]);
        irq.config_written(&config, cap, 24);
        irq.set_intx(true);
        assert!(!line.is_high());
        irq.notify(0);
        assert_eq!(ctl.take_fired(0), [0x51]);
    }
}
