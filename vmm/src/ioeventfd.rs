//! Doorbells in PCI BARs as KVM ioeventfds: a guest write to a registered
//! address signals the device's eventfd inside KVM, waking its worker with no
//! exit to this process. Registrations follow the BAR wherever the guest moves
//! it (the PCI root calls `moved` on every refresh of a device's windows).
//!
//! Anything KVM refuses (an address another ioeventfd holds, a kernel without
//! zero-length MMIO ioeventfds) is logged and left to trap: the device handles
//! a trapped doorbell write by signalling the same eventfd.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kvm_ioctls::{Cap, IoEventAddress, NoDatamatch, VmFd};
use tracing::{debug, warn};
use vmm_sys_util::eventfd::EventFd;

/// A device's doorbells in one BAR: (offset, eventfd).
type Doorbells = Vec<(u64, Arc<EventFd>)>;

#[derive(Default)]
struct Placed {
    base: Option<u64>,
    fds: Doorbells,
    /// What KVM holds now: (address, eventfd).
    registered: Vec<(u64, Arc<EventFd>)>,
}

pub struct IoEventFds {
    vm: Arc<VmFd>,
    /// KVM takes zero-length (any width, any value) MMIO ioeventfds.
    usable: bool,
    placed: Mutex<HashMap<(usize, usize), Placed>>,
}

fn same(a: &Doorbells, b: &Doorbells) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && Arc::ptr_eq(&x.1, &y.1))
}

impl IoEventFds {
    pub fn new(vm: Arc<VmFd>) -> Self {
        let usable =
            vm.check_extension(Cap::Ioeventfd) && vm.check_extension(Cap::IoeventfdNoLength);
        if !usable {
            warn!("KVM lacks zero-length MMIO ioeventfds: device doorbells trap to user space");
        }
        IoEventFds {
            vm,
            usable,
            placed: Mutex::new(HashMap::new()),
        }
    }

    /// BAR `bar` of `devfn` now decodes at `base` (None: not at all), with
    /// doorbells `fds` in it.
    pub fn moved(&self, devfn: usize, bar: usize, base: Option<u64>, fds: &[(u64, Arc<EventFd>)]) {
        if !self.usable {
            return;
        }
        let fds = fds.to_vec();
        let mut placed = self.placed.lock().unwrap_or_else(|e| e.into_inner());
        let p = placed.entry((devfn, bar)).or_default();
        if p.base == base && same(&p.fds, &fds) {
            return;
        }
        for (addr, fd) in p.registered.drain(..) {
            if let Err(e) =
                self.vm
                    .unregister_ioevent(&fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            {
                warn!("removing ioeventfd at {addr:#x}: {e}");
            }
        }
        p.base = base;
        p.fds = fds;
        let Some(base) = base else {
            debug!(devfn, bar, "doorbells off");
            return;
        };
        for (offset, fd) in &p.fds {
            let Some(addr) = base.checked_add(*offset) else {
                continue;
            };
            match self
                .vm
                .register_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            {
                Ok(()) => p.registered.push((addr, fd.clone())),
                Err(e) => warn!("ioeventfd at {addr:#x} refused ({e}); that doorbell traps"),
            }
        }
        debug!(
            devfn,
            bar,
            base,
            count = p.registered.len(),
            "doorbells placed"
        );
    }
}
