//! The real `QmpBackend`: requests to the VMM thread, input to the input router,
//! and what the builder learnt about disks, display and SPICE.

use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Duration;

use super::backend::{
    CpuInfo, DiskInfo, InputRouter, PowerButton, QmpBackend, RunStatus, Screendump, SpiceControl,
};
use super::events::Monitor;
use super::protocol::QmpError;
use crate::machine::{VmEvent, VmEvents};

/// Pausing waits for every vCPU to leave KVM_RUN; far more than that means the
/// VMM thread is gone or stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct MachineBackend {
    pub events: VmEvents,
    pub monitor: Arc<Monitor>,
    pub input: Arc<InputRouter>,
    pub name: Option<String>,
    pub disks: Vec<DiskInfo>,
    pub display: Option<Arc<dyn Screendump>>,
    pub spice: Option<Arc<dyn SpiceControl>>,
    /// None with `--no-acpi`: the guest has no way to hear the button.
    pub power_button: Option<Arc<dyn PowerButton>>,
}

impl MachineBackend {
    /// Send a request carrying a reply channel and wait for the VMM thread.
    fn request(
        &self,
        make: impl FnOnce(std::sync::mpsc::Sender<()>) -> VmEvent,
    ) -> Result<(), QmpError> {
        let (tx, rx) = channel();
        self.events.send(make(tx));
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| QmpError::generic("The virtual machine is shutting down"))
    }
}

/// vCPU threads by their names ("vcpu0", ...), read from /proc so that the
/// machine need not report them.
fn vcpu_threads() -> Vec<CpuInfo> {
    let mut cpus = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return cpus;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if let Some(index) = comm
            .trim()
            .strip_prefix("vcpu")
            .and_then(|i| i.parse().ok())
        {
            cpus.push(CpuInfo {
                index,
                thread_id: tid,
            });
        }
    }
    cpus.sort_by_key(|c| c.index);
    cpus
}

impl QmpBackend for MachineBackend {
    fn status(&self) -> RunStatus {
        self.monitor.status()
    }

    fn stop(&self) -> Result<(), QmpError> {
        self.request(VmEvent::Stop)
    }

    fn cont(&self) -> Result<(), QmpError> {
        self.request(VmEvent::Cont)
    }

    fn system_reset(&self) -> Result<(), QmpError> {
        self.events.send(VmEvent::HostReset);
        Ok(())
    }

    fn system_powerdown(&self) -> Result<(), QmpError> {
        // The guest learns of the press through ACPI: PWRBTN_STS in PM1, and
        // an SCI if it enabled the event. Shutting down is up to the guest.
        let Some(button) = &self.power_button else {
            return Err(QmpError::generic(
                "system_powerdown needs ACPI, which this machine was started without (--no-acpi); use 'quit' or 'system_reset'",
            ));
        };
        button.press();
        self.monitor.emit("POWERDOWN", None);
        Ok(())
    }

    fn quit(&self) {
        self.events.send(VmEvent::Quit);
    }

    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    fn cpus(&self) -> Vec<CpuInfo> {
        vcpu_threads()
    }

    fn disks(&self) -> Vec<DiskInfo> {
        self.disks.clone()
    }

    fn display(&self) -> Option<&dyn Screendump> {
        self.display.as_deref()
    }

    fn input(&self) -> &InputRouter {
        &self.input
    }

    fn spice(&self) -> Option<&dyn SpiceControl> {
        self.spice.as_deref()
    }
}
