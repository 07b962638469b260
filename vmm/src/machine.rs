//! The machine: a KVM VM, its memory, its devices and its vCPU threads, and the
//! VMM thread's event loop (reset, power-off, signals).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use kvm_bindings::{
    kvm_irqchip, kvm_pit_config, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use tracing::{debug, info, warn};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use devices::pci::root::PciRoot;
use devices::{Bus, IrqChip, VmRequest, VmRequests};

use crate::control::CpuControl;
use crate::devices::MachineDevices;
use crate::error::{kvm, Error, Result};
use crate::memory::GuestRam;
use crate::vcpu::Vcpu;

/// Things the VMM thread reacts to.
#[derive(Debug)]
pub enum VmEvent {
    Reset,
    PowerOff,
    /// SIGINT/SIGTERM/SIGHUP from the host.
    Terminate(i32),
    Fatal(String),
    /// QMP `stop`: park the vCPUs, then answer on the sender.
    Stop(Sender<()>),
    /// QMP `cont`: run again (after a pending reset, from the reset vector).
    Cont(Sender<()>),
    /// QMP `system_reset`.
    HostReset,
    /// QMP `quit`.
    Quit,
}

/// A cloneable sender of `VmEvent`s, also handed to devices as `VmRequests`.
#[derive(Clone)]
pub struct VmEvents(Sender<VmEvent>);

impl VmEvents {
    pub fn send(&self, e: VmEvent) {
        // The receiver lives as long as the machine; a send after it is gone is moot.
        let _ = self.0.send(e);
    }
}

impl VmRequests for VmEvents {
    fn request(&self, req: VmRequest) {
        self.send(match req {
            VmRequest::Reset => VmEvent::Reset,
            VmRequest::PowerOff => VmEvent::PowerOff,
        });
    }
}

/// Port I/O and MMIO routing: fixed devices first, then PCI BARs.
pub struct Buses {
    pub pio: Bus,
    pub mmio: Bus,
    pub pci: Arc<PciRoot>,
}

impl Buses {
    pub fn pio_read(&self, port: u64, data: &mut [u8]) -> bool {
        self.pio.read(port, data) || self.pci.pio_read(port, data)
    }
    pub fn pio_write(&self, port: u64, data: &[u8]) -> bool {
        self.pio.write(port, data) || self.pci.pio_write(port, data)
    }
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) -> bool {
        self.mmio.read(addr, data) || self.pci.mmio_read(addr, data)
    }
    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        self.mmio.write(addr, data) || self.pci.mmio_write(addr, data)
    }
}

/// Interrupt lines into KVM's in-kernel PIC + IOAPIC.
pub struct KvmIrqChip(pub Arc<VmFd>);

impl IrqChip for KvmIrqChip {
    fn set_gsi(&self, gsi: u32, level: bool) {
        if let Err(e) = self.0.set_irq_line(gsi, level) {
            warn!(gsi, "KVM_IRQ_LINE failed: {e}");
        }
    }
}

/// The in-kernel interrupt controller and PIT state at power-on, for reset.
pub struct ChipPowerOnState {
    chips: Vec<kvm_irqchip>,
    pit: kvm_pit_state2,
}

impl ChipPowerOnState {
    pub fn capture(vm: &VmFd) -> Result<Self> {
        let mut chips = Vec::new();
        for id in [
            KVM_IRQCHIP_PIC_MASTER,
            KVM_IRQCHIP_PIC_SLAVE,
            KVM_IRQCHIP_IOAPIC,
        ] {
            let mut c = kvm_irqchip {
                chip_id: id,
                ..Default::default()
            };
            vm.get_irqchip(&mut c).map_err(kvm("get_irqchip"))?;
            chips.push(c);
        }
        let pit = vm.get_pit2().map_err(kvm("get_pit2"))?;
        Ok(ChipPowerOnState { chips, pit })
    }

    pub fn restore(&self, vm: &VmFd) -> Result<()> {
        for c in &self.chips {
            vm.set_irqchip(c).map_err(kvm("set_irqchip"))?;
        }
        vm.set_pit2(&self.pit).map_err(kvm("set_pit2"))
    }
}

/// Open /dev/kvm and create a VM with the PC platform's in-kernel pieces.
pub fn create_vm() -> Result<(Kvm, Arc<VmFd>)> {
    let kvm_dev = Kvm::new().map_err(Error::KvmOpen)?;
    for (cap, name) in [
        (Cap::Irqchip, "in-kernel irqchip"),
        (Cap::UserMemory, "user memory"),
        (Cap::SetTssAddr, "TSS address"),
        (Cap::Pit2, "in-kernel PIT"),
        (Cap::ReadonlyMem, "read-only memory slots"),
        (Cap::VcpuEvents, "vCPU event state"),
    ] {
        if !kvm_dev.check_extension(cap) {
            return Err(Error::KvmCap(name));
        }
    }
    let vm = kvm_dev.create_vm().map_err(kvm("create_vm"))?;
    // Pages KVM needs for itself; the layout reserves them in the e820 map.
    vm.set_identity_map_address(firmware::layout::IDENTITY_MAP_ADDR)
        .map_err(kvm("set_identity_map_address"))?;
    vm.set_tss_address(firmware::layout::TSS_ADDR as usize)
        .map_err(kvm("set_tss_address"))?;
    vm.create_irq_chip().map_err(kvm("create_irq_chip"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm("create_pit2"))?;
    Ok((kvm_dev, Arc::new(vm)))
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Install the no-op handler whose only job is to make KVM_RUN return EINTR.
pub fn install_kick_handler() -> Result<()> {
    register_signal_handler(SIGRTMIN(), kick_handler).map_err(|e| Error::Io {
        what: "install vCPU kick signal handler".into(),
        err: std::io::Error::from_raw_os_error(e.errno()),
    })
}

/// Block the termination signals in this thread (and the threads it spawns later)
/// and deliver them as `VmEvent::Terminate` from one dedicated thread.
pub fn forward_termination_signals(events: VmEvents) {
    // SAFETY: sigset manipulation on a local, zero-initialised set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: waits for one of the signals blocked above; writes only `sig`.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                events.send(VmEvent::Terminate(sig));
            }
        })
        .expect("spawn signal thread");
}

/// Things to redo on a machine reset besides devices and vCPUs.
pub trait ResetHook: Send {
    fn on_reset(&mut self, mem: &vm_memory::GuestMemoryMmap<()>) -> Result<()>;
}

/// Copies a firmware image back into RAM on reset (the guest may have changed
/// its shadow copy at 0xE0000-0xFFFFF).
pub struct ReloadBytes {
    pub addr: u64,
    pub bytes: Vec<u8>,
}

impl ResetHook for ReloadBytes {
    fn on_reset(&mut self, mem: &vm_memory::GuestMemoryMmap<()>) -> Result<()> {
        mem.write_slice(&self.bytes, GuestAddress(self.addr))
            .map_err(|e| Error::Memory(e.to_string()))
    }
}

pub struct Machine {
    pub vm: Arc<VmFd>,
    pub ram: GuestRam,
    pub buses: Arc<Buses>,
    pub chip_state: ChipPowerOnState,
    pub ctl: Arc<CpuControl>,
    pub events: VmEvents,
    pub rx: Receiver<VmEvent>,
    pub vcpus: Vec<Vcpu>,
    pub reset_hooks: Vec<Box<dyn ResetHook>>,
    /// Every device: reset, pause/resume with the vCPUs, shutdown at exit.
    pub devices: MachineDevices,
    /// Run status and events for the QMP control socket.
    pub monitor: Arc<crate::qmp::Monitor>,
}

/// How the machine ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    PowerOff,
    Signal(i32),
    /// QMP `quit`.
    Quit,
}

impl Machine {
    pub fn new_channel() -> (VmEvents, Receiver<VmEvent>) {
        let (tx, rx) = channel();
        (VmEvents(tx), rx)
    }

    /// Start the vCPU threads and handle events until the machine ends.
    pub fn run(mut self) -> Result<Outcome> {
        let n = self.vcpus.len();
        let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(n);
        for (i, vcpu) in self.vcpus.drain(..).enumerate() {
            let (ctl, buses, events) = (self.ctl.clone(), self.buses.clone(), self.events.clone());
            let t = std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn(move || vcpu.run_loop(ctl, buses, events))
                .map_err(|err| Error::Io {
                    what: "spawn vCPU thread".into(),
                    err,
                })?;
            threads.push(t);
        }
        let kick = |threads: &[JoinHandle<()>]| {
            for t in threads {
                let _ = t.kill(SIGRTMIN());
            }
        };

        // Paused by QMP `stop`; a reset meanwhile takes effect on `cont` (the
        // vCPUs see the new reset generation when they leave the gate).
        let mut paused = false;
        let outcome = loop {
            let event = match self.rx.recv() {
                Ok(e) => e,
                Err(_) => break Err(Error::Vcpu("event channel closed".into())),
            };
            match event {
                ev @ (VmEvent::Reset | VmEvent::HostReset) => {
                    let guest = matches!(ev, VmEvent::Reset);
                    info!(guest, "machine reset");
                    self.ctl.pause_all(n, || kick(&threads));
                    // No device worker may interrupt into the chips being reset.
                    self.devices.pause();
                    // Several vCPUs may have asked at once; one reset serves them all.
                    let later: Vec<_> = self.rx.try_iter().collect();
                    if let Err(e) = self.reset_platform() {
                        break Err(e);
                    }
                    self.ctl.mark_reset();
                    if !paused {
                        self.devices.resume();
                        self.ctl.resume();
                    }
                    self.monitor.reset(guest);
                    for e in later {
                        if !matches!(e, VmEvent::Reset | VmEvent::HostReset) {
                            self.events.send(e);
                        }
                    }
                }
                VmEvent::Stop(reply) => {
                    if !paused {
                        self.ctl.pause_all(n, || kick(&threads));
                        self.devices.pause();
                        paused = true;
                        self.monitor.stopped();
                    }
                    let _ = reply.send(());
                }
                VmEvent::Cont(reply) => {
                    if paused {
                        self.devices.resume();
                        self.ctl.resume();
                        paused = false;
                        self.monitor.resumed();
                    }
                    let _ = reply.send(());
                }
                VmEvent::PowerOff => {
                    info!("guest powered off");
                    self.monitor.shutdown(true, "guest-shutdown");
                    break Ok(Outcome::PowerOff);
                }
                VmEvent::Terminate(sig) => {
                    info!(signal = sig, "terminating on signal");
                    self.monitor.shutdown(false, "host-signal");
                    break Ok(Outcome::Signal(sig));
                }
                VmEvent::Quit => {
                    info!("quit requested over QMP");
                    self.monitor.shutdown(false, "host-qmp-quit");
                    break Ok(Outcome::Quit);
                }
                VmEvent::Fatal(msg) => break Err(Error::Vcpu(msg)),
            }
        };

        // Stop every vCPU, then every device worker (each after the request it
        // is on), then flush the disks: no request is half done.
        self.ctl.pause_all(n, || kick(&threads));
        self.ctl.exit();
        for t in threads {
            let _ = t.join();
        }
        self.devices.shutdown();
        debug!("machine stopped");
        outcome
    }

    fn reset_platform(&mut self) -> Result<()> {
        self.chip_state.restore(&self.vm)?;
        self.devices.reset();
        for h in &mut self.reset_hooks {
            h.on_reset(&self.ram.mem)?;
        }
        Ok(())
    }
}
