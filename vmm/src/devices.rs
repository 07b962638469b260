//! The device manager: every device of the machine, where it sits (ports, PCI
//! slots, interrupt lines), and what happens to all of them on reset, pause,
//! resume and exit.
//!
//! Adding a device is one registration: `add_isa` / `add_isa_with_reset` for a
//! fixed device at legacy ports, `add_pci` for a PCI function, which gets its
//! slot from the plan below and its wiring (INTx line for that slot, MSI
//! vectors, guest memory) handed to the closure that builds it. The manager
//! records what it placed as a `MachineDescription`, plain data that the ACPI
//! tables and the MP table are built from, so they describe only devices that
//! exist, where they are.

use std::sync::{Arc, Mutex};

use devices::pci::i440fx::I440fx;
use devices::pci::intx::{PciIntxRouter, PirqRegs};
use devices::pci::piix3::Piix3;
use devices::pci::root::{self, BarMapper, PciRoot};
use devices::pci::{MsiController, PciDevice};
use devices::{Bus, BusDevice, HostMemory, IrqChip, IrqLine, Lifecycle, Reset, VmRequests};
use kvm_ioctls::VmFd;
use tracing::{debug, warn};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::error::Result;
use crate::ioeventfd::IoEventFds;
use crate::machine::Buses;
use crate::memory::BarSlots;
use crate::msi::KvmMsi;

/// The PCI slot plan of bus 0, as QEMU's `pc` machine has it, so guests and
/// firmware see the topology they expect: the host bridge at 00.0, the
/// PIIX3 at 01.0, the VGA card at 02.0; other devices take the next free slot
/// from 3 in the order they are added (the boot disk first, at 00:03.0).
pub const HOST_BRIDGE_SLOT: u8 = 0;
pub const ISA_BRIDGE_SLOT: u8 = 1;
pub const VGA_SLOT: u8 = 2;
pub const FIRST_FREE_SLOT: u8 = 3;

/// Where a PCI device goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// 00:02.0, the primary VGA's slot.
    Vga,
    /// The next free slot from `FIRST_FREE_SLOT`.
    Next,
}

/// A fixed (ISA) device, as the firmware tables name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsaKind {
    /// A 16550A UART; `com` 1 = COM1.
    Serial { com: u8 },
    /// The i8042 keyboard controller: IRQ 1 for the keyboard, 12 for the mouse.
    Ps2Controller,
    /// MC146818 RTC + CMOS.
    Rtc,
    /// The PIIX4-style ACPI PM registers (PM1a event/control).
    AcpiPm,
    /// QEMU's firmware configuration interface.
    FwCfg,
    /// QEMU's debug console (SeaBIOS log).
    DebugCon,
    /// Port 0x80 POST codes.
    PostCode,
    /// System control port A (fast A20, fast reset).
    Port92,
    /// The legacy VGA and Bochs VBE ports of the VGA card.
    Vga,
}

/// A fixed device: what it is, the port ranges it decodes, its ISA IRQs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsaDeviceInfo {
    pub kind: IsaKind,
    /// (base, length) of each port range.
    pub ports: Vec<(u16, u16)>,
    pub irqs: Vec<u8>,
}

/// A PCI function on bus 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunctionInfo {
    /// What the device is ("i440fx", "piix3", "qxl-vga", "virtio-blk", ...).
    pub name: &'static str,
    pub slot: u8,
    pub function: u8,
    pub vendor_id: u16,
    pub device_id: u16,
    /// Base class << 16 | subclass << 8 | prog-if.
    pub class: u32,
    /// INTx pin: 1 = INTA ..= 4 = INTD; None without one.
    pub intx_pin: Option<u8>,
    /// MSI-X table size (0: no MSI-X).
    pub msix_vectors: u16,
}

/// The machine's devices as plain data, for the ACPI tables and the MP table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineDescription {
    pub pci: Vec<PciFunctionInfo>,
    pub isa: Vec<IsaDeviceInfo>,
}

impl MachineDescription {
    /// (slot, pin) of every PCI function with an INTx pin.
    pub fn intx_pins(&self) -> Vec<(u8, u8)> {
        self.pci
            .iter()
            .filter_map(|f| Some((f.slot, f.intx_pin?)))
            .collect()
    }

    /// The slot of the first PCI function called `name`.
    pub fn slot_of(&self, name: &str) -> Option<u8> {
        self.pci.iter().find(|f| f.name == name).map(|f| f.slot)
    }
}

/// What a PCI device is given when it is plugged in.
pub struct PciWiring<'a> {
    pub slot: u8,
    /// INTA of `slot`, routed through the PIIX3.
    pub intx: Arc<dyn IrqLine>,
    /// Where MSI/MSI-X vectors come from (None: KVM cannot route them).
    pub msi: Option<&'a dyn MsiController>,
    pub mem: &'a GuestMemoryMmap<()>,
}

/// Host-memory BARs become KVM memory slots, doorbells KVM ioeventfds.
struct PciBarMapper {
    slots: Arc<BarSlots>,
    doorbells: IoEventFds,
}

impl BarMapper for PciBarMapper {
    fn bar_moved(&self, devfn: usize, bar: usize, base: Option<u64>, mem: &HostMemory) {
        self.slots.bar_moved(devfn, bar, base, mem);
    }

    fn ioeventfds_moved(
        &self,
        devfn: usize,
        bar: usize,
        base: Option<u64>,
        fds: &[(u64, Arc<EventFd>)],
    ) {
        self.doorbells.moved(devfn, bar, base, fds);
    }
}

type Running = Arc<Mutex<dyn Lifecycle>>;

/// Builds the machine's device set; `finish` freezes it.
pub struct DeviceManager {
    pio: Bus,
    mmio: Bus,
    pci: PciRoot,
    intx: PciIntxRouter,
    pirq: Arc<PirqRegs>,
    msi: Option<KvmMsi>,
    chip: Arc<dyn IrqChip>,
    mem: GuestMemoryMmap<()>,
    resets: Vec<Arc<Mutex<dyn Reset + Send>>>,
    running: Vec<(&'static str, Running)>,
    description: MachineDescription,
    next_slot: u8,
}

impl DeviceManager {
    /// Bus 0 with its host bridge and PIIX3, nothing else yet.
    pub fn new(
        vm: &Arc<VmFd>,
        mem: GuestMemoryMmap<()>,
        chip: Arc<dyn IrqChip>,
        requests: Arc<dyn VmRequests>,
        bar_slots: Arc<BarSlots>,
    ) -> Result<Self> {
        let piix3 = Piix3::new();
        let pirq = piix3.pirq_registers();
        let intx = PciIntxRouter::new(chip.clone(), pirq.clone());
        let mut pci = PciRoot::new(requests);
        pci.set_bar_mapper(Arc::new(PciBarMapper {
            slots: bar_slots,
            doorbells: IoEventFds::new(vm.clone()),
        }));
        let mut dm = DeviceManager {
            pio: Bus::new(),
            mmio: Bus::new(),
            pci,
            intx,
            pirq,
            msi: KvmMsi::new(vm.clone()),
            chip,
            mem,
            resets: Vec::new(),
            running: Vec::new(),
            description: MachineDescription::default(),
            next_slot: FIRST_FREE_SLOT,
        };
        dm.plug(
            "i440fx",
            HOST_BRIDGE_SLOT,
            Arc::new(Mutex::new(I440fx::new())),
        )?;
        dm.plug("piix3", ISA_BRIDGE_SLOT, Arc::new(Mutex::new(piix3)))?;
        Ok(dm)
    }

    /// ISA IRQ `irq`, wired straight to the interrupt controllers' GSI.
    pub fn isa_irq(&self, irq: u8) -> Arc<dyn IrqLine> {
        Arc::new(devices::interrupt::GsiLine::new(
            self.chip.clone(),
            irq.into(),
        ))
    }

    /// The PIIX3's PIRQ routing registers (direct Linux boot programs them).
    pub fn pirq_registers(&self) -> Arc<PirqRegs> {
        self.pirq.clone()
    }

    /// Place a fixed device decoding the port `ranges` (base, length) and
    /// raising ISA `irqs`.
    pub fn add_isa(
        &mut self,
        kind: IsaKind,
        dev: Arc<Mutex<dyn BusDevice>>,
        ranges: &[(u64, u64)],
        irqs: &[u8],
    ) -> Result<()> {
        for &(base, len) in ranges {
            self.pio.insert(dev.clone(), base, len)?;
        }
        self.description.isa.push(IsaDeviceInfo {
            kind,
            ports: ranges.iter().map(|&(b, l)| (b as u16, l as u16)).collect(),
            irqs: irqs.to_vec(),
        });
        Ok(())
    }

    /// `add_isa` for a device with power-on state that a machine reset restores.
    pub fn add_isa_with_reset<T: BusDevice + Reset + 'static>(
        &mut self,
        kind: IsaKind,
        dev: &Arc<Mutex<T>>,
        ranges: &[(u64, u64)],
        irqs: &[u8],
    ) -> Result<()> {
        self.add_isa(kind, dev.clone(), ranges, irqs)?;
        self.resets.push(dev.clone());
        Ok(())
    }

    /// A fixed MMIO range outside any BAR (the VGA window at 0xA0000).
    pub fn add_legacy_mmio(
        &mut self,
        dev: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<()> {
        self.mmio.insert(dev, base, len)?;
        Ok(())
    }

    /// Plug in the PCI function `build` makes from its wiring, at `slot`;
    /// returns the slot and the device. Its reset comes from the PCI root, its
    /// pause/resume/shutdown from `Lifecycle`.
    pub fn add_pci<D, F>(
        &mut self,
        name: &'static str,
        slot: Slot,
        build: F,
    ) -> Result<(u8, Arc<Mutex<D>>)>
    where
        D: PciDevice + Lifecycle + 'static,
        F: FnOnce(PciWiring<'_>) -> devices::Result<D>,
    {
        let slot = match slot {
            Slot::Vga => VGA_SLOT,
            Slot::Next => {
                let s = self.next_slot;
                self.next_slot += 1;
                s
            }
        };
        let wiring = PciWiring {
            slot,
            intx: self.intx.line(slot, 1),
            msi: self.msi.as_ref().map(|m| m as &dyn MsiController),
            mem: &self.mem,
        };
        let dev = Arc::new(Mutex::new(build(wiring)?));
        self.plug(name, slot, dev.clone())?;
        self.running.push((name, dev.clone()));
        Ok((slot, dev))
    }

    fn plug(&mut self, name: &'static str, slot: u8, dev: Arc<Mutex<dyn PciDevice>>) -> Result<()> {
        let info = {
            let d = dev.lock().unwrap_or_else(|e| e.into_inner());
            let c = d.config();
            let pin = c.u8_at(devices::pci::config::INTERRUPT_PIN);
            PciFunctionInfo {
                name,
                slot,
                function: 0,
                vendor_id: c.u16_at(devices::pci::config::VENDOR_ID),
                device_id: c.u16_at(devices::pci::config::VENDOR_ID + 2),
                class: c.u32_at(devices::pci::config::REVISION) >> 8,
                intx_pin: (pin != 0).then_some(pin),
                msix_vectors: d.interrupt().map_or(0, |i| i.msix_vectors()),
            }
        };
        self.pci.add_device(slot, 0, dev)?;
        debug!(name, slot, "PCI device added");
        self.description.pci.push(info);
        Ok(())
    }

    /// What has been placed so far.
    pub fn description(&self) -> &MachineDescription {
        &self.description
    }

    /// Freeze the device set: the buses for the vCPUs, the rest for the
    /// machine's reset/pause/exit paths.
    pub fn finish(mut self) -> Result<(Arc<Buses>, MachineDevices)> {
        let pci = Arc::new(self.pci);
        self.pio.insert(
            pci.config_io_device(),
            root::CONFIG_IO_BASE,
            root::CONFIG_IO_LEN,
        )?;
        let buses = Arc::new(Buses {
            pio: self.pio,
            mmio: self.mmio,
            pci: pci.clone(),
        });
        Ok((
            buses,
            MachineDevices {
                pci,
                resets: self.resets,
                running: self.running,
            },
        ))
    }
}

/// The machine's devices once built: what the VMM thread does to all of them.
pub struct MachineDevices {
    pci: Arc<PciRoot>,
    resets: Vec<Arc<Mutex<dyn Reset + Send>>>,
    running: Vec<(&'static str, Running)>,
}

impl MachineDevices {
    /// Machine reset (vCPUs parked): fixed devices and PCI devices back to
    /// power-on. PCI device resets stop their workers and flush their disks.
    pub fn reset(&self) {
        for d in &self.resets {
            d.lock().unwrap_or_else(|e| e.into_inner()).reset();
        }
        self.pci.reset();
    }

    /// Park every device worker (vCPUs are parked already).
    pub fn pause(&self) {
        for (_, d) in &self.running {
            d.lock().unwrap_or_else(|e| e.into_inner()).pause();
        }
    }

    pub fn resume(&self) {
        for (_, d) in &self.running {
            d.lock().unwrap_or_else(|e| e.into_inner()).resume();
        }
    }

    /// Machine exit (vCPUs stopped): stop every worker, flush every disk.
    pub fn shutdown(&self) {
        for (name, d) in &self.running {
            if let Err(e) = d.lock().unwrap_or_else(|e| e.into_inner()).shutdown() {
                warn!("{name}: shutdown: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{create_vm, KvmIrqChip, Machine};
    use crate::memory::GuestRam;
    use devices::legacy::debug_port::PostCode;
    use devices::pci::config::{BAR0, COMMAND, COMMAND_MASTER, COMMAND_MEMORY};
    use devices::virtio::disk::RawDisk;
    use devices::virtio::{VirtioBlock, VirtioPciDevice};

    fn disk(dir: &std::path::Path, name: &str) -> VirtioBlock {
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        VirtioBlock::new(
            Box::new(RawDisk::from_file(file, false).unwrap()),
            false,
            name,
        )
    }

    /// A config cycle through ports 0xCF8/0xCFC, as firmware does it.
    fn config(buses: &Buses, slot: u8, reg: u8, write: Option<u32>) -> u32 {
        let addr = 0x8000_0000u32 | u32::from(slot) << 11 | u32::from(reg);
        assert!(buses.pio_write(0xcf8, &addr.to_le_bytes()));
        let mut v = [0u8; 4];
        match write {
            Some(w) => assert!(buses.pio_write(0xcfc, &w.to_le_bytes())),
            None => assert!(buses.pio_read(0xcfc, &mut v)),
        }
        u32::from_le_bytes(v)
    }

    #[test]
    fn registrations_place_and_describe_devices() {
        let (_kvm, vm) = create_vm().expect("this test needs /dev/kvm");
        let ram = GuestRam::new(&vm, &[(0, 16 << 20)]).unwrap();
        let (events, _rx) = Machine::new_channel();
        let slots = Arc::new(BarSlots::new(vm.clone(), ram.next_free_slot()));
        let chip = Arc::new(KvmIrqChip(vm.clone()));
        let mut dm =
            DeviceManager::new(&vm, ram.mem.clone(), chip, Arc::new(events), slots).unwrap();
        let post = Arc::new(Mutex::new(PostCode::new()));
        dm.add_isa(IsaKind::PostCode, post.clone(), &[(0x80, 1)], &[])
            .unwrap();
        assert!(dm
            .add_isa(IsaKind::PostCode, post, &[(0x80, 1)], &[])
            .is_err());
        let dir = std::env::temp_dir().join(format!("spicebox-dm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a.img", "b.img"] {
            let blk = disk(&dir, name);
            dm.add_pci("virtio-blk", Slot::Next, |w| {
                VirtioPciDevice::new(blk, w.mem.clone(), w.intx, w.msi)
            })
            .unwrap();
        }
        let d = dm.description().clone();
        let placed: Vec<(&str, u8)> = d.pci.iter().map(|f| (f.name, f.slot)).collect();
        assert_eq!(
            placed,
            [
                ("i440fx", 0),
                ("piix3", 1),
                ("virtio-blk", 3),
                ("virtio-blk", 4)
            ]
        );
        assert_eq!(d.intx_pins(), [(3, 1), (4, 1)]);
        assert_eq!(d.slot_of("virtio-blk"), Some(3));
        let blk = &d.pci[2];
        assert_eq!(
            (blk.vendor_id, blk.device_id, blk.class),
            (0x1af4, 0x1042, 0x010000)
        );
        assert_eq!(blk.msix_vectors, 2, "KVM routes MSIs here");
        assert_eq!(d.pci[0].intx_pin, None);
        assert_eq!(
            d.isa,
            [IsaDeviceInfo {
                kind: IsaKind::PostCode,
                ports: vec![(0x80, 1)],
                irqs: vec![],
            }]
        );

        let (buses, devices) = dm.finish().unwrap();
        assert_eq!(config(&buses, 3, 0, None), 0x1042_1af4);
        // Place BAR 4 and decode it: the doorbells go to KVM (logged if it
        // refuses; the write still works through the trap).
        config(&buses, 3, BAR0 as u8 + 16, Some(0xfe00_0000));
        let cmd = u32::from(COMMAND_MEMORY | COMMAND_MASTER);
        config(&buses, 3, COMMAND as u8, Some(cmd));
        let mut b = [0u8; 2];
        assert!(buses.mmio_read(0xfe00_0012, &mut b), "num_queues");
        assert_eq!(u16::from_le_bytes(b), 1);
        devices.pause();
        devices.resume();
        devices.reset();
        assert_eq!(config(&buses, 3, COMMAND as u8, None) & 0xffff, 0);
        devices.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
