//! One thread per vCPU: KVM_RUN, and port/MMIO exits routed to the device buses.

use std::sync::Arc;

use kvm_bindings::{
    kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_regs, kvm_sregs, kvm_vcpu_events, CpuId,
    KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use tracing::{debug, error, trace};

use crate::control::{CpuControl, Gate};
use crate::error::{kvm, Result};
use crate::machine::{Buses, VmEvent, VmEvents};

/// Register state right after creation: what a machine reset restores.
struct PowerOnState {
    regs: kvm_regs,
    sregs: kvm_sregs,
    fpu: kvm_fpu,
    lapic: kvm_lapic_state,
    mp_state: kvm_mp_state,
    /// No exception, interrupt or NMI pending or half-injected: without it, an
    /// event KVM was delivering when the reset kicked the vCPU would be delivered
    /// after the reset, through the previous boot's interrupt table.
    events: kvm_vcpu_events,
}

pub struct Vcpu {
    id: u8,
    fd: VcpuFd,
    power_on: PowerOnState,
}

/// The CPUID KVM supports, with this vCPU's APIC ID filled in. KVM's list already
/// carries the paravirt leaves (0x40000000 "KVMKVMKVM"), which SeaBIOS and Linux use
/// to detect KVM.
fn cpuid_for(supported: &CpuId, id: u8, count: u8) -> CpuId {
    let mut cpuid = supported.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | ((id as u32) << 24) | ((count as u32) << 16);
            }
            0xb | 0x1f => e.edx = id as u32,
            _ => {}
        }
    }
    cpuid
}

impl Vcpu {
    pub fn new(kvm_sys: &Kvm, vm: &VmFd, id: u8, count: u8) -> Result<Self> {
        let fd = vm.create_vcpu(id as u64).map_err(kvm("create_vcpu"))?;
        let supported = kvm_sys
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm("get_supported_cpuid"))?;
        fd.set_cpuid2(&cpuid_for(&supported, id, count))
            .map_err(kvm("set_cpuid2"))?;
        let mp_state = kvm_mp_state {
            mp_state: if id == 0 {
                KVM_MP_STATE_RUNNABLE
            } else {
                KVM_MP_STATE_UNINITIALIZED
            },
        };
        let power_on = PowerOnState {
            regs: fd.get_regs().map_err(kvm("get_regs"))?,
            sregs: fd.get_sregs().map_err(kvm("get_sregs"))?,
            fpu: fd.get_fpu().map_err(kvm("get_fpu"))?,
            lapic: fd.get_lapic().map_err(kvm("get_lapic"))?,
            mp_state,
            events: fd.get_vcpu_events().map_err(kvm("get_vcpu_events"))?,
        };
        Ok(Vcpu { id, fd, power_on })
    }

    /// Back to the x86 reset state (CS:IP = F000:FFF0); APs wait for INIT/SIPI.
    fn reset(&mut self) -> Result<()> {
        self.complete_pending_exit();
        let p = &self.power_on;
        self.fd.set_regs(&p.regs).map_err(kvm("set_regs"))?;
        self.fd.set_sregs(&p.sregs).map_err(kvm("set_sregs"))?;
        self.fd.set_fpu(&p.fpu).map_err(kvm("set_fpu"))?;
        self.fd.set_lapic(&p.lapic).map_err(kvm("set_lapic"))?;
        self.fd
            .set_mp_state(p.mp_state)
            .map_err(kvm("set_mp_state"))?;
        self.fd
            .set_vcpu_events(&p.events)
            .map_err(kvm("set_vcpu_events"))?;
        Ok(())
    }

    /// Finish an I/O or MMIO instruction whose exit we already handled. KVM only
    /// completes it (writing RAX, advancing RIP, resuming its emulator) on the next
    /// KVM_RUN, so without this a register reload would be overwritten by the
    /// completion. With immediate_exit set, KVM_RUN completes it and returns EINTR
    /// without running any guest instruction.
    fn complete_pending_exit(&mut self) {
        self.fd.set_kvm_immediate_exit(1);
        let _ = self.fd.run();
        self.fd.set_kvm_immediate_exit(0);
    }

    /// The vCPU thread body: run until told to exit.
    pub fn run_loop(mut self, ctl: Arc<CpuControl>, buses: Arc<Buses>, events: VmEvents) {
        let mut reset_generation = 0;
        loop {
            match ctl.gate() {
                Gate::Exit => return,
                Gate::Run {
                    reset_generation: g,
                } if g != reset_generation => {
                    reset_generation = g;
                    if let Err(e) = self.reset() {
                        events.send(VmEvent::Fatal(format!("vCPU {} reset: {e}", self.id)));
                        return;
                    }
                }
                Gate::Run { .. } => {}
            }
            if let Err(msg) = self.run_once(&buses, &events) {
                error!(vcpu = self.id, "{msg}");
                events.send(VmEvent::Fatal(msg));
                // Park until the VMM tells us to exit.
                ctl.pause_self();
            }
        }
    }

    fn run_once(&mut self, buses: &Buses, events: &VmEvents) -> std::result::Result<(), String> {
        match self.fd.run() {
            Ok(exit) => match exit {
                VcpuExit::IoIn(port, data) => {
                    if !buses.pio_read(port as u64, data) {
                        trace!(port, len = data.len(), "unclaimed port read");
                        data.fill(0xff);
                    }
                }
                VcpuExit::IoOut(port, data) => {
                    if !buses.pio_write(port as u64, data) {
                        trace!(port, ?data, "unclaimed port write");
                    }
                }
                VcpuExit::MmioRead(addr, data) => {
                    if !buses.mmio_read(addr, data) {
                        trace!(addr, len = data.len(), "unclaimed MMIO read");
                    }
                }
                VcpuExit::MmioWrite(addr, data) => {
                    if !buses.mmio_write(addr, data) {
                        trace!(addr, "unclaimed MMIO write");
                    }
                }
                VcpuExit::Hlt => {}
                VcpuExit::Shutdown => {
                    // Triple fault: a PC resets.
                    debug!(vcpu = self.id, "triple fault");
                    events.send(VmEvent::Reset);
                }
                VcpuExit::SystemEvent(kind, _) => match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => events.send(VmEvent::Reset),
                    _ => events.send(VmEvent::PowerOff),
                },
                VcpuExit::Intr => {}
                VcpuExit::InternalError => {
                    return Err(format!(
                        "vCPU {}: KVM internal error (emulation failure) at {}",
                        self.id,
                        self.where_am_i()
                    ));
                }
                VcpuExit::FailEntry(reason, cpu) => {
                    return Err(format!(
                        "vCPU {}: KVM entry failed, reason {reason:#x} on host cpu {cpu}",
                        self.id
                    ));
                }
                other => {
                    return Err(format!("vCPU {}: unexpected exit {other:?}", self.id));
                }
            },
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => return Err(format!("vCPU {}: KVM_RUN failed: {e}", self.id)),
        }
        Ok(())
    }

    fn where_am_i(&self) -> String {
        match (self.fd.get_regs(), self.fd.get_sregs()) {
            (Ok(r), Ok(s)) => format!(
                "cs={:#x} (base {:#x}) rip={:#x} cr0={:#x}",
                s.cs.selector, s.cs.base, r.rip, s.cr0
            ),
            _ => "unknown rip".into(),
        }
    }
}

fn kvm_segment(d: &firmware::SegmentDesc) -> kvm_bindings::kvm_segment {
    kvm_bindings::kvm_segment {
        base: d.base,
        limit: d.limit,
        selector: d.selector,
        type_: d.type_,
        present: d.present as u8,
        dpl: d.dpl,
        db: d.db as u8,
        s: d.s as u8,
        l: d.l as u8,
        g: d.g as u8,
        avl: 0,
        unusable: (!d.present) as u8,
        padding: 0,
    }
}

impl Vcpu {
    /// Enter the guest in 64-bit mode as the Linux boot protocol wants (direct
    /// kernel boot), and make that the state a reset returns to.
    pub fn set_boot_state(&mut self, s: &firmware::BootCpuState) -> Result<()> {
        let mut sregs = self.power_on.sregs;
        let data = kvm_segment(&s.data_segment);
        sregs.cs = kvm_segment(&s.code_segment);
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.tr = kvm_segment(&s.tss_segment);
        sregs.gdt.base = s.gdt_base;
        sregs.gdt.limit = s.gdt_limit;
        sregs.idt.base = s.idt_base;
        sregs.idt.limit = s.idt_limit;
        sregs.cr0 = s.cr0;
        sregs.cr3 = s.cr3;
        sregs.cr4 = s.cr4;
        sregs.efer = s.efer;
        let regs = kvm_regs {
            rip: s.rip,
            rsp: s.rsp,
            rbp: s.rsp,
            rsi: s.rsi,
            rflags: s.rflags,
            ..Default::default()
        };
        self.power_on.sregs = sregs;
        self.power_on.regs = regs;
        self.reset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn cpuid_carries_each_vcpus_apic_id() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xaabb_0800,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                edx: 0,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0x4000_0000,
                ebx: 0x4b4d_564b,
                ..Default::default()
            },
        ];
        let supported = CpuId::from_entries(&entries).unwrap();
        let c = cpuid_for(&supported, 3, 4);
        let e = c.as_slice();
        assert_eq!(e[0].ebx >> 24, 3, "initial APIC ID");
        assert_eq!((e[0].ebx >> 16) & 0xff, 4, "logical processor count");
        assert_eq!(e[0].ebx & 0xffff, 0x0800, "CLFLUSH size kept");
        assert_eq!(e[1].edx, 3, "x2APIC ID");
        assert_eq!(e[2].ebx, 0x4b4d_564b, "KVM signature leaf untouched");
    }
}
