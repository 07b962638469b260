//! MSI delivery on KVM: each vector a device asks for is a GSI with an MSI
//! route (`KVM_SET_GSI_ROUTING`) and an irqfd (`KVM_IRQFD`), so firing it is one
//! eventfd write from any thread and KVM injects the message into the LAPIC
//! without a trip through this process.
//!
//! `KVM_SET_GSI_ROUTING` replaces the whole table, so every update re-sends the
//! PC's interrupt-controller routes (`irq_routing::legacy_routes`: QEMU's layout,
//! PIT on IOAPIC pin 2), which `KVM_IRQ_LINE` from the ISA devices and PCI INTx
//! keeps using. MSI routes take GSIs from 24 up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use devices::pci::{MsiController, MsiMessage, MsiVector};
use kvm_bindings::{kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQ_ROUTING_MSI, KVM_MAX_IRQ_ROUTES};
use kvm_ioctls::{Cap, VmFd};
use tracing::{debug, warn};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

fn msi_route(gsi: u32, msg: MsiMessage) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    e.u.msi.address_lo = msg.address as u32;
    e.u.msi.address_hi = (msg.address >> 32) as u32;
    e.u.msi.data = msg.data;
    e
}

struct Table {
    msi: BTreeMap<u32, kvm_irq_routing_entry>,
    /// GSIs handed out and given back.
    next_gsi: u32,
    free: Vec<u32>,
}

struct Inner {
    vm: Arc<VmFd>,
    table: Mutex<Table>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send the whole table to KVM. Called with the table locked, so updates
    /// reach KVM in the order they were made.
    fn commit(&self, table: &Table) -> Result<(), kvm_ioctls::Error> {
        let mut entries = crate::irq_routing::legacy_routes();
        entries.extend(table.msi.values().copied());
        let routing = KvmIrqRouting::from_entries(&entries)
            .map_err(|_| kvm_ioctls::Error::new(libc::E2BIG))?;
        self.vm.set_gsi_routing(&routing)
    }
}

/// The VMM's `MsiController`: vectors as KVM GSI routes plus irqfds.
#[derive(Clone)]
pub struct KvmMsi(Arc<Inner>);

impl KvmMsi {
    /// None (with the reason logged) when KVM lacks GSI routing or irqfd; the
    /// devices then interrupt through INTx only.
    pub fn new(vm: Arc<VmFd>) -> Option<Self> {
        for (cap, name) in [(Cap::IrqRouting, "GSI routing"), (Cap::Irqfd, "irqfd")] {
            if !vm.check_extension(cap) {
                warn!("KVM has no {name}: PCI devices get no MSI-X");
                return None;
            }
        }
        Some(KvmMsi(Arc::new(Inner {
            vm,
            table: Mutex::new(Table {
                msi: BTreeMap::new(),
                next_gsi: crate::irq_routing::IOAPIC_PINS,
                free: Vec::new(),
            }),
        })))
    }
}

impl MsiController for KvmMsi {
    fn new_vector(&self) -> devices::Result<Arc<dyn MsiVector>> {
        let gsi = {
            let mut t = self.0.lock();
            match t.free.pop() {
                Some(g) => g,
                None if (t.next_gsi as usize) < KVM_MAX_IRQ_ROUTES => {
                    t.next_gsi += 1;
                    t.next_gsi - 1
                }
                None => return Err(devices::Error::Msi("out of KVM GSIs".into())),
            }
        };
        let fd =
            EventFd::new(EFD_NONBLOCK).map_err(|e| devices::Error::Msi(format!("eventfd: {e}")))?;
        Ok(Arc::new(KvmMsiVector {
            msi: self.0.clone(),
            gsi,
            fd,
            irqfd: Mutex::new(false),
        }))
    }
}

/// One vector: GSI `gsi`, signalled through `fd`.
struct KvmMsiVector {
    msi: Arc<Inner>,
    gsi: u32,
    fd: EventFd,
    /// Whether `fd` is registered as an irqfd (done with the first route, so
    /// KVM never sees an irqfd for a GSI it has no route for).
    irqfd: Mutex<bool>,
}

impl MsiVector for KvmMsiVector {
    fn set_route(&self, msg: MsiMessage) {
        {
            let mut t = self.msi.lock();
            t.msi.insert(self.gsi, msi_route(self.gsi, msg));
            if let Err(e) = self.msi.commit(&t) {
                warn!(gsi = self.gsi, "KVM_SET_GSI_ROUTING failed: {e}");
                t.msi.remove(&self.gsi);
                return;
            }
        }
        debug!(
            gsi = self.gsi,
            address = msg.address,
            data = msg.data,
            "MSI route"
        );
        let mut registered = self.irqfd.lock().unwrap_or_else(|e| e.into_inner());
        if !*registered {
            match self.msi.vm.register_irqfd(&self.fd, self.gsi) {
                Ok(()) => *registered = true,
                Err(e) => warn!(gsi = self.gsi, "KVM_IRQFD failed: {e}"),
            }
        }
    }

    fn fire(&self) {
        if let Err(e) = self.fd.write(1) {
            warn!(gsi = self.gsi, "irqfd write failed: {e}");
        }
    }
}

impl Drop for KvmMsiVector {
    fn drop(&mut self) {
        let registered = *self.irqfd.get_mut().unwrap_or_else(|e| e.into_inner());
        if registered {
            if let Err(e) = self.msi.vm.unregister_irqfd(&self.fd, self.gsi) {
                debug!(gsi = self.gsi, "unregistering irqfd: {e}");
            }
        }
        let mut t = self.msi.lock();
        if t.msi.remove(&self.gsi).is_some() {
            if let Err(e) = self.msi.commit(&t) {
                debug!(gsi = self.gsi, "removing MSI route: {e}");
            }
        }
        t.free.push(self.gsi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_routes_encode_the_message() {
        let m = msi_route(
            30,
            MsiMessage {
                address: 0x1_fee0_1000,
                data: 0x4041,
            },
        );
        // SAFETY: msi_route builds an MSI route.
        let msi = unsafe { m.u.msi };
        assert_eq!(
            (m.gsi, m.type_, msi.address_lo, msi.address_hi, msi.data),
            (30, KVM_IRQ_ROUTING_MSI, 0xfee0_1000, 1, 0x4041)
        );
    }
}

#[cfg(test)]
mod kvm_tests {
    use super::*;

    #[test]
    fn kvm_takes_the_routes_and_irqfds() {
        let (_kvm, vm) = crate::machine::create_vm().expect("this test needs /dev/kvm");
        let msi = KvmMsi::new(vm).expect("KVM with GSI routing and irqfd");
        let a = msi.new_vector().unwrap();
        let b = msi.new_vector().unwrap();
        a.set_route(MsiMessage {
            address: 0xfee0_0000,
            data: 0x41,
        });
        b.set_route(MsiMessage {
            address: 0xfee0_1000,
            data: 0x42,
        });
        a.fire();
        {
            let t = msi.0.lock();
            assert_eq!(t.msi.keys().copied().collect::<Vec<_>>(), [24, 25]);
            // KVM accepted the whole table (irqchip routes included) again.
            msi.0.commit(&t).unwrap();
        }
        // A dropped vector gives its GSI back.
        drop(a);
        assert_eq!(msi.0.lock().msi.len(), 1);
        let c = msi.new_vector().unwrap();
        c.set_route(MsiMessage {
            address: 0xfee0_0000,
            data: 0x43,
        });
        assert!(msi.0.lock().msi.contains_key(&24));
    }
}
