//! What the QMP commands need from the machine, as a trait: the commands and the
//! protocol are tested against a fake, and `vm::MachineBackend` is the real one.

use std::path::Path;

use super::protocol::QmpError;
pub use crate::display::ScreenFormat;
pub use crate::input::{InputRouter, Source};
pub use spice::Expiry;

/// QEMU's `RunState` values that spicebox can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Paused,
    Shutdown,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Shutdown => "shutdown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    pub index: u32,
    /// Host thread id of the vCPU thread (what `taskset`/`perf` want).
    pub thread_id: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    pub file: String,
    /// "raw" or "qcow2", QEMU's driver names.
    pub format: &'static str,
    pub read_only: bool,
    pub virtual_size: u64,
}

/// The ACPI power button, for `system_powerdown`.
pub trait PowerButton: Send + Sync {
    fn press(&self);
}

/// The display, for `screendump`. The display code implements it.
pub trait Screendump: Send + Sync {
    fn screendump(&self, path: &Path, format: ScreenFormat) -> Result<(), String>;
}

/// The SPICE server as the monitor sees it: a trait so that commands are
/// tested with a fake; `spice_link` implements it over `spice::SpiceServer`.
pub trait SpiceControl: Send + Sync {
    fn set_password(&self, password: Option<String>);
    fn expire_password(&self, expiry: Expiry);
    /// "spice" (password), "sasl" or "none".
    fn auth(&self) -> &'static str;
    fn channels(&self) -> Vec<spice::ClientInfo>;
    /// Host (or socket path) and TCP port the server listens on.
    fn listen(&self) -> (String, Option<u16>);
    /// The TLS listener's port (QEMU's `tls-port`), if there is one.
    fn tls_port(&self) -> Option<u16> {
        None
    }
    /// Close every client connection (`set_password connected=disconnect`).
    fn disconnect_all(&self);
}

/// Everything the commands ask of the machine.
pub trait QmpBackend: Send + Sync {
    fn status(&self) -> RunStatus;
    /// Pause the vCPUs; returns once they are parked (STOP is emitted first).
    fn stop(&self) -> Result<(), QmpError>;
    fn cont(&self) -> Result<(), QmpError>;
    /// Ask for a reset; RESET follows as an event.
    fn system_reset(&self) -> Result<(), QmpError>;
    fn system_powerdown(&self) -> Result<(), QmpError>;
    /// Called after the reply to `quit` is queued: end the machine.
    fn quit(&self);
    fn name(&self) -> Option<String>;
    fn cpus(&self) -> Vec<CpuInfo>;
    fn disks(&self) -> Vec<DiskInfo>;
    fn display(&self) -> Option<&dyn Screendump>;
    /// The machine's input router; QMP's events go in as `Source::Qmp`.
    fn input(&self) -> &InputRouter;
    fn spice(&self) -> Option<&dyn SpiceControl>;
}
