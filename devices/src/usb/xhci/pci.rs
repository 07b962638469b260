//! The xHCI PCI function (1b36:000d, class 0C0330): BAR 0 (64-bit, 16 KiB) with
//! the registers and, at 0x3000/0x3800, the MSI-X table and PBA; INTA.
//!
//! Register accesses run on the vCPU under the controller's lock and only
//! record work; a doorbell wakes the worker thread ("xhci"), which walks the
//! rings and hands transfers to their devices (QEMU serves doorbells on the
//! vCPU; we keep the vCPU free of device work). Devices that answer later
//! write the same wake-up eventfd, except a transport that receives a
//! device's answers itself (usbredir): it hands them over with
//! [`XhciHandle::collect`] on its own thread, one thread hop less. A timer
//! wakes the worker when an isochronous TD's service interval comes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::error;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

use super::controller::{Xhci, BAR_SIZE, MAX_INTRS, MSIX_PBA, MSIX_TABLE};
use crate::pci::{BarKind, MsiController, MsixLayout, PciConfig, PciDevice, PciInterrupt};
use crate::usb::UsbDevice;
use crate::worker::{Token, Worker, WorkerEvents, WorkerHandler};
use crate::{IrqLine, Lifecycle, Result};

/// A zero duration would disarm the timer: a TD already due fires at once.
const MIN_TIMER: Duration = Duration::from_micros(1);

const KICK: Token = 0;
const ISOCH_TIMER: Token = 1;

struct XhciWorker {
    core: Arc<Mutex<Xhci>>,
    kick: Arc<EventFd>,
    /// Wakes the worker when the next isochronous TD is due.
    timer: TimerFd,
}

fn lock(core: &Mutex<Xhci>) -> MutexGuard<'_, Xhci> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

impl WorkerHandler for XhciWorker {
    fn register(&mut self, events: &WorkerEvents) -> std::io::Result<()> {
        events.add(&*self.kick, KICK)?;
        events.add(&self.timer, ISOCH_TIMER)
    }

    fn handle(&mut self, token: Token, _events: &WorkerEvents) {
        if token == KICK {
            let _ = self.kick.read();
        }
        let mut core = lock(&self.core);
        core.process();
        if core.has_pending() {
            // Bounded rounds: the rest after other events had their turn.
            let _ = self.kick.write(1);
        }
        // Arming (or disarming) the timer also clears its expiry count, so
        // it is never read (a read could block after a re-arm).
        let armed = match core.next_isoch_due() {
            Some(due) => self.timer.reset(due.max(MIN_TIMER), None),
            None => self.timer.clear(),
        };
        if let Err(e) = armed {
            error!("xhci: isochronous timer: {e}");
        }
    }
}

pub struct XhciPci {
    config: PciConfig,
    interrupt: Arc<PciInterrupt>,
    core: Arc<Mutex<Xhci>>,
    kick: Arc<EventFd>,
    /// Set while the machine is paused: no guest memory is touched then, so
    /// completions wait for the worker.
    paused: Arc<AtomicBool>,
    worker: Option<Worker<XhciWorker>>,
}

impl XhciPci {
    pub fn new(
        mem: GuestMemoryMmap<()>,
        intx: Arc<dyn IrqLine>,
        msi: Option<&dyn MsiController>,
    ) -> Result<Self> {
        let mut config = PciConfig::new(0x1b36, 0x000d, 0x0c_03_30, 1);
        config.set_subsystem(0x1af4, 0x1100);
        config.add_bar(
            0,
            BAR_SIZE,
            BarKind::Mem64 {
                prefetchable: false,
            },
        );
        // SBRN (USB 3.0) and FLADJ, as QEMU.
        config.set_u8(0x60, 0x30);
        config.set_u8(0x61, 0x20);
        let mut interrupt = PciInterrupt::new(&mut config, intx);
        if let Some(msi) = msi {
            let layout = MsixLayout {
                vectors: MAX_INTRS as u16,
                bar: 0,
                table_offset: MSIX_TABLE,
                pba_offset: MSIX_PBA,
            };
            interrupt = interrupt.with_msix(&mut config, layout, msi)?;
        }
        config.seal();
        let interrupt = Arc::new(interrupt);
        let kick =
            Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| crate::Error::Worker(e.to_string()))?);
        let mut core = Xhci::new(mem, interrupt.clone());
        core.set_waker(kick.clone());
        let core = Arc::new(Mutex::new(core));
        let timer = TimerFd::new().map_err(|e| crate::Error::Worker(e.to_string()))?;
        let worker = Worker::spawn(
            "xhci",
            XhciWorker {
                core: core.clone(),
                kick: kick.clone(),
                timer,
            },
        )?;
        Ok(XhciPci {
            config,
            interrupt,
            core,
            kick,
            paused: Arc::new(AtomicBool::new(false)),
            worker: Some(worker),
        })
    }

    /// The controller, to attach and detach devices from other threads
    /// (a SPICE usbredir channel).
    pub fn controller(&self) -> XhciHandle {
        XhciHandle {
            core: self.core.clone(),
            kick: self.kick.clone(),
            paused: self.paused.clone(),
        }
    }
}

/// Plugs devices into a running controller.
#[derive(Clone)]
pub struct XhciHandle {
    core: Arc<Mutex<Xhci>>,
    kick: Arc<EventFd>,
    paused: Arc<AtomicBool>,
}

impl XhciHandle {
    /// Attach to a free root port of the device's speed; the port number.
    pub fn attach(&self, device: Box<dyn UsbDevice>) -> Option<u8> {
        lock(&self.core).attach(device)
    }

    pub fn detach(&self, port: u8) -> Option<Box<dyn UsbDevice>> {
        let dev = lock(&self.core).detach(port);
        let _ = self.kick.write(1);
        dev
    }

    /// A device's transfers completed on the caller's thread (the one that read
    /// its answers): write their data and events now, and start the TDs the
    /// guest queued behind them, instead of waking the worker for it. While the
    /// machine is paused the worker does it on resume. Call with none of the
    /// device's locks held (the controller calls into the device).
    pub fn collect(&self) {
        let mut core = lock(&self.core);
        // Read under the lock: `pause` sets the flag, then takes the lock.
        if self.paused.load(Ordering::Acquire) {
            let _ = self.kick.write(1);
            return;
        }
        core.collect();
        if core.has_pending() {
            let _ = self.kick.write(1);
        }
    }
}

impl PciDevice for XhciPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar == 0 {
            lock(&self.core).read(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != 0 {
            return;
        }
        if !self.config.bus_master() {
            // No DMA without bus mastering: registers only.
            let mut core = lock(&self.core);
            core.write(offset, data);
            return;
        }
        if lock(&self.core).write(offset, data) {
            // Transfers are served on the worker, never on the vCPU (issue
            // 14): the doorbell only wakes it.
            tracing::debug!(target: "usbtime", "doorbell");
            let _ = self.kick.write(1);
        }
    }

    fn interrupt(&self) -> Option<Arc<PciInterrupt>> {
        Some(self.interrupt.clone())
    }

    fn reset(&mut self) {
        // The worker only runs with the controller locked: it sees the reset
        // state next time, with no rung doorbells left.
        lock(&self.core).reset();
    }
}

impl Lifecycle for XhciPci {
    fn pause(&mut self) {
        self.paused.store(true, Ordering::Release);
        // Wait out a `collect` that holds the lock; later ones see the flag.
        drop(lock(&self.core));
        if let Some(w) = &self.worker {
            w.pause();
        }
    }

    fn resume(&mut self) {
        self.paused.store(false, Ordering::Release);
        if let Some(w) = &self.worker {
            w.resume();
        }
        // Completions that came in while paused.
        let _ = self.kick.write(1);
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.worker.take() {
            if w.stop().is_none() {
                error!("xhci: worker ended abnormally");
            }
        }
        Ok(())
    }
}
