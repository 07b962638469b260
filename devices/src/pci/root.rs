//! PCI bus 0: configuration mechanism #1 at ports 0xCF8..0xCFF, the PIIX3 reset
//! control register at 0xCF9, and BAR decoding for exits no fixed device claims.
//!
//! Thread-safety shape: devices are added with `&mut self` while the machine is
//! built, then the root is frozen inside an `Arc<PciRoot>` shared by all vCPU
//! threads. From then on the slot table is immutable, so finding a device by devfn
//! takes no lock; each device sits behind its own `Mutex`, and the two registers of
//! the root itself (the CF8 address latch and the reset control byte) are atomics.
//! A config cycle is two guest accesses (latch, then data), as on hardware; guests
//! serialise them with their own lock (Linux `pci_config_lock`, SeaBIOS is
//! single-threaded), so sharing one latch between vCPUs is faithful.
//!
//! BAR decoding uses a table of the windows every device decodes now (enabled BARs
//! and expansion ROMs), behind a `RwLock`. A BAR access takes the read lock only
//! long enough to copy out the matching window, then locks that one device, so it
//! never touches (or waits for) any other device. The table is rewritten for a
//! device, under the write lock, whenever a config write touches its COMMAND, BAR
//! or ROM registers and on reset; that happens while the device's own lock is held,
//! so the table always changes together with the config space it is computed from.
//! Lock order: a device lock, then the window table; nothing takes the table lock
//! and then a device lock, so there is no cycle.
//!
//! Config space must only change through this root (config cycles, `reset`) for the
//! table to follow it. Should it change behind the root's back, an access through a
//! stale window is still never misrouted: the window is checked against the locked
//! device's config before the access is passed on, and refreshed when it differs.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tracing::{debug, info, trace};
use vmm_sys_util::eventfd::EventFd;

use super::config::{BAR0, COMMAND, ROM_ADDRESS};
use super::{bar_read, bar_write, config_read, config_write, reset_device};
use super::{PciConfig, PciDevice, ROM_BAR};
use crate::{BusDevice, Error, HostMemory, Result, SharedDevice, VmRequest, VmRequests};

/// Port base and length to register `PciRoot::config_io_device` at.
pub const CONFIG_IO_BASE: u64 = 0xcf8;
pub const CONFIG_IO_LEN: u64 = 8;
/// Offset of the reset control register (port 0xCF9) inside that range.
const RCR_OFFSET: u64 = 1;
const DATA_OFFSET: u64 = 4;
const CONFIG_ENABLE: u32 = 1 << 31;
/// RCR bit 1: the reset type (hard) that a following RST_CPU will perform.
const RCR_SYS_RST: u8 = 1 << 1;
/// RCR bit 2: writing 1 resets the machine.
const RCR_RST_CPU: u8 = 1 << 2;
/// The port and value that hard-reset the machine (the FADT's RESET_REG).
pub const RESET_PORT: u16 = (CONFIG_IO_BASE + RCR_OFFSET) as u16;
pub const RESET_VALUE: u8 = RCR_SYS_RST | RCR_RST_CPU;

pub const NUM_SLOTS: u8 = 32;
pub const NUM_FUNCTIONS: u8 = 8;

/// Config registers whose contents decide what a device decodes: COMMAND (I/O and
/// memory enables), BAR0..BAR5 and the expansion ROM BAR, as `[start, end)`.
const DECODE_REGISTERS: [(usize, usize); 3] = [
    (COMMAND, COMMAND + 2),
    (BAR0, BAR0 + 6 * 4),
    (ROM_ADDRESS, ROM_ADDRESS + 4),
];

/// Maps host-memory BARs (`PciDevice::host_memory_bar`) into the guest, and
/// places doorbell eventfds (`PciDevice::ioeventfds`), as the guest moves the
/// BARs. Called from the vCPU thread doing the config write, with that device's
/// lock held; `base` is `None` when the BAR stops decoding.
pub trait BarMapper: Send + Sync {
    fn bar_moved(&self, devfn: usize, bar: usize, base: Option<u64>, mem: &HostMemory);

    /// `fds` (offset in the BAR, eventfd) now sit at `base + offset`, or
    /// nowhere. Called on every refresh of the device's windows, moved or not.
    fn ioeventfds_moved(
        &self,
        _devfn: usize,
        _bar: usize,
        _base: Option<u64>,
        _fds: &[(u64, Arc<EventFd>)],
    ) {
    }
}

/// A PCI device as stored on the root bus.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

fn lock(dev: &SharedPciDevice) -> MutexGuard<'_, dyn PciDevice + 'static> {
    // A device that panicked mid-access is a bug, but the rest of the machine should
    // still be able to reach the others (and this one) rather than cascade panics.
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

/// One address range a device decodes now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    base: u64,
    /// Kept instead of an end address: a BAR at the top of the 64-bit space ends
    /// at 2^64.
    size: u64,
    io: bool,
    /// Index into `PciRoot::devices`.
    devfn: usize,
    /// 0..=5, or `ROM_BAR`.
    bar: usize,
}

impl Window {
    /// Offset of `addr` inside the window, if it is inside.
    fn offset(&self, addr: u64, io: bool) -> Option<u64> {
        addr.checked_sub(self.base)
            .filter(|off| self.io == io && *off < self.size)
    }
}

/// What BAR `bar` (or the ROM) of `config` decodes now: `(base, size, is_io)`.
fn decoded(config: &PciConfig, bar: usize) -> Option<(u64, u64, bool)> {
    if bar == ROM_BAR {
        config.active_rom().map(|(base, size)| (base, size, false))
    } else {
        config.active_bar(bar)
    }
}

pub struct PciRoot {
    /// Indexed by devfn (slot << 3 | function).
    devices: Vec<Option<SharedPciDevice>>,
    /// Every enabled BAR and ROM window, sorted by (devfn, bar): when a guest makes
    /// windows overlap, the first match wins, the lowest devfn and BAR first.
    windows: RwLock<Vec<Window>>,
    config_address: AtomicU32,
    reset_control: AtomicU8,
    requests: Arc<dyn VmRequests>,
    bar_mapper: Option<Arc<dyn BarMapper>>,
}

impl PciRoot {
    /// An empty bus 0. `requests` receives `VmRequest::Reset` from port 0xCF9.
    pub fn new(requests: Arc<dyn VmRequests>) -> Self {
        PciRoot {
            devices: vec![None; usize::from(NUM_SLOTS) * usize::from(NUM_FUNCTIONS)],
            windows: RwLock::new(Vec::new()),
            config_address: AtomicU32::new(0),
            reset_control: AtomicU8::new(0),
            requests,
            bar_mapper: None,
        }
    }

    /// Set the mapper for host-memory BARs; before devices are added.
    pub fn set_bar_mapper(&mut self, mapper: Arc<dyn BarMapper>) {
        self.bar_mapper = Some(mapper);
    }

    /// Put `dev` at 00:`slot`.`func`. Fails if out of range or taken.
    pub fn add_device(&mut self, slot: u8, func: u8, dev: SharedPciDevice) -> Result<()> {
        if slot >= NUM_SLOTS || func >= NUM_FUNCTIONS {
            return Err(Error::PciSlot(slot));
        }
        let devfn = usize::from(slot) << 3 | usize::from(func);
        if self.devices[devfn].is_some() {
            return Err(Error::PciSlot(slot));
        }
        // A device may come with decoding already enabled.
        self.refresh_windows(devfn, &*lock(&dev));
        self.devices[devfn] = Some(dev);
        Ok(())
    }

    /// The device at 00:`slot`.`func`, if any.
    #[cfg(test)]
    fn device(&self, slot: u8, func: u8) -> Option<SharedPciDevice> {
        if slot >= NUM_SLOTS || func >= NUM_FUNCTIONS {
            return None;
        }
        self.devices[usize::from(slot) << 3 | usize::from(func)].clone()
    }

    /// Machine reset: clear the root's registers and reset every device (config
    /// space to its power-on contents, then the device itself).
    pub fn reset(&self) {
        self.config_address.store(0, Ordering::Relaxed);
        self.reset_control.store(0, Ordering::Relaxed);
        for (devfn, dev) in self.devices.iter().enumerate() {
            if let Some(dev) = dev {
                let mut d = lock(dev);
                reset_device(&mut *d);
                self.refresh_windows(devfn, &*d);
            }
        }
    }

    /// Replace the windows of `devfn` with what its config decodes now, and move
    /// its host-memory BARs. Called with that device's lock held (or before it is
    /// shared), so the table changes together with its config space.
    fn refresh_windows(&self, devfn: usize, dev: &dyn PciDevice) {
        let config = dev.config();
        if let Some(mapper) = &self.bar_mapper {
            for bar in 0..6 {
                let base = decoded(config, bar).filter(|w| !w.2).map(|w| w.0);
                if let Some(mem) = dev.host_memory_bar(bar) {
                    mapper.bar_moved(devfn, bar, base, &mem);
                }
                let fds = dev.ioeventfds(bar);
                if !fds.is_empty() {
                    mapper.ioeventfds_moved(devfn, bar, base, &fds);
                }
            }
        }
        let now = (0..6).chain([ROM_BAR]).filter_map(|bar| {
            let (base, size, io) = decoded(config, bar)?;
            Some(Window {
                base,
                size,
                io,
                devfn,
                bar,
            })
        });
        let mut windows = self.windows.write().unwrap_or_else(|e| e.into_inner());
        windows.retain(|w| w.devfn != devfn);
        let at = windows.partition_point(|w| w.devfn < devfn);
        windows.splice(at..at, now);
    }

    /// A `BusDevice` for the port bus at `CONFIG_IO_BASE`, length `CONFIG_IO_LEN`.
    pub fn config_io_device(self: &Arc<Self>) -> SharedDevice {
        Arc::new(Mutex::new(PciConfigIo { root: self.clone() }))
    }

    /// The devfn selected by the CF8 latch and the config offset of its dword,
    /// or None when the latch is disabled, names another bus or an empty function.
    fn selected(&self) -> Option<(usize, &SharedPciDevice, usize)> {
        let addr = self.config_address.load(Ordering::Relaxed);
        if addr & CONFIG_ENABLE == 0 || (addr >> 16) & 0xff != 0 {
            return None;
        }
        let devfn = ((addr >> 8) & 0xff) as usize;
        let dev = self.devices[devfn].as_ref()?;
        Some((devfn, dev, (addr & 0xfc) as usize))
    }

    /// Guest read at `CONFIG_IO_BASE + offset`.
    pub fn config_io_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match (offset, data.len()) {
            (RCR_OFFSET, 1) => data[0] = self.reset_control.load(Ordering::Relaxed),
            (0..=3, len) => {
                // The latch is a dword register; narrower reads see its bytes.
                let latch = self.config_address.load(Ordering::Relaxed).to_le_bytes();
                let start = offset as usize;
                let end = (start + len).min(4);
                data[..end - start].copy_from_slice(&latch[start..end]);
            }
            (DATA_OFFSET..=7, len @ (1 | 2 | 4)) => {
                let k = (offset - DATA_OFFSET) as usize;
                if k + len > 4 {
                    debug!(offset, len, "PCI config data read crosses the dword");
                    return;
                }
                if let Some((_, dev, reg)) = self.selected() {
                    let v = config_read(&mut *lock(dev), reg).to_le_bytes();
                    data.copy_from_slice(&v[k..k + len]);
                }
            }
            _ => debug!(offset, len = data.len(), "odd PCI config port read"),
        }
    }

    /// Guest write at `CONFIG_IO_BASE + offset`.
    pub fn config_io_write(&self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 4) => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.config_address.store(v, Ordering::Relaxed);
            }
            (RCR_OFFSET, 1) => self.write_rcr(data[0]),
            (DATA_OFFSET..=7, len @ (1 | 2 | 4)) => {
                let k = (offset - DATA_OFFSET) as usize;
                if k + len > 4 {
                    debug!(offset, len, "PCI config data write crosses the dword");
                    return;
                }
                if let Some((devfn, dev, reg)) = self.selected() {
                    let (start, end) = (reg + k, reg + k + len);
                    let mut d = lock(dev);
                    config_write(&mut *d, start, data);
                    if DECODE_REGISTERS.iter().any(|&(s, e)| start < e && s < end) {
                        self.refresh_windows(devfn, &*d);
                    }
                }
            }
            // Only a full dword write loads the latch (as in QEMU); Linux's conf1
            // probe pokes a byte at 0xCFB first and then checks a dword round trip.
            _ => trace!(offset, len = data.len(), "ignored PCI config port write"),
        }
    }

    fn write_rcr(&self, v: u8) {
        // Only the reset-type bit is state (RST_CPU is a trigger, the rest reserved).
        self.reset_control.store(v & RCR_SYS_RST, Ordering::Relaxed);
        if v & RCR_RST_CPU != 0 {
            info!(value = v, "reset via port 0xCF9");
            self.requests.request(VmRequest::Reset);
        }
    }

    /// Find the window containing `addr` and run `f(device, bar, offset)` with only
    /// that device locked. A hit that runs past the window's end is claimed but not
    /// passed on (returns `Some(false)`), so devices only ever see accesses inside
    /// their BARs.
    fn dispatch(
        &self,
        addr: u64,
        len: usize,
        io: bool,
        f: impl FnOnce(&mut dyn PciDevice, usize, u64),
    ) -> Option<bool> {
        loop {
            let (w, off) = {
                let windows = self.windows.read().unwrap_or_else(|e| e.into_inner());
                windows
                    .iter()
                    .find_map(|w| Some((*w, w.offset(addr, io)?)))?
            };
            let dev = self.devices[w.devfn]
                .as_ref()
                .expect("PCI window of an empty slot");
            let mut d = lock(dev);
            if decoded(d.config(), w.bar) != Some((w.base, w.size, w.io)) {
                // The config space changed without the root seeing it: bring this
                // device's windows up to date and look again.
                debug!(addr, devfn = w.devfn, bar = w.bar, "stale PCI window");
                self.refresh_windows(w.devfn, &*d);
                continue;
            }
            if off.checked_add(len as u64).is_some_and(|end| end <= w.size) {
                f(&mut *d, w.bar, off);
                return Some(true);
            }
            debug!(addr, len, bar = w.bar, "access runs past the end of a BAR");
            return Some(false);
        }
    }

    /// Returns false when no window decodes `addr`; `data` is then all zeros (the
    /// zeroing `Bus::read` leaves to its last decoder).
    fn read(&self, addr: u64, data: &mut [u8], io: bool) -> bool {
        data.fill(0);
        match self.dispatch(addr, data.len(), io, |d, bar, off| {
            bar_read(d, bar, off, data)
        }) {
            Some(true) => true,
            Some(false) => {
                data.fill(0xff);
                true
            }
            None => false,
        }
    }

    /// Port read that no fixed device claimed. False when no I/O BAR decodes `port`
    /// (`data` then reads as zeros).
    pub fn pio_read(&self, port: u64, data: &mut [u8]) -> bool {
        self.read(port, data, true)
    }

    pub fn pio_write(&self, port: u64, data: &[u8]) -> bool {
        self.dispatch(port, data.len(), true, |d, bar, off| {
            bar_write(d, bar, off, data)
        })
        .is_some()
    }

    /// MMIO read that no fixed device claimed. False when no memory BAR or enabled
    /// expansion ROM decodes `addr` (`data` then reads as zeros).
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) -> bool {
        self.read(addr, data, false)
    }

    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        self.dispatch(addr, data.len(), false, |d, bar, off| {
            bar_write(d, bar, off, data)
        })
        .is_some()
    }
}

/// The 0xCF8..0xCFF port window of a shared `PciRoot`.
struct PciConfigIo {
    root: Arc<PciRoot>,
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        self.root.config_io_read(offset, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.root.config_io_write(offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::RecordingRequests;
    use crate::pci::config::{COMMAND, INTERRUPT_LINE};
    use crate::pci::{BarKind, PciConfig};
    use crate::Bus;

    /// A device with an I/O BAR, a 32-bit and a 64-bit memory BAR and a ROM that
    /// records what reaches it.
    struct TestDev {
        config: PciConfig,
        log: Vec<(usize, u64, Vec<u8>)>,
        resets: u32,
    }

    impl TestDev {
        fn new() -> Self {
            let mut c = PciConfig::new(0x1af4, 0x1042, 0x010000, 1);
            c.add_bar(0, 0x40, BarKind::Io);
            c.add_bar(
                1,
                0x1000,
                BarKind::Mem32 {
                    prefetchable: false,
                },
            );
            c.add_bar(2, 0x4000, BarKind::Mem64 { prefetchable: true });
            c.add_rom(0x800);
            c.set_interrupt_pin(1);
            c.seal();
            TestDev {
                config: c,
                log: Vec::new(),
                resets: 0,
            }
        }
    }

    impl PciDevice for TestDev {
        fn config(&self) -> &PciConfig {
            &self.config
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.config
        }
        fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = (bar as u8) << 4 | (offset as u8 + i as u8);
            }
        }
        fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.log.push((bar, offset, data.to_vec()));
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
    }

    struct Machine {
        root: Arc<PciRoot>,
        bus: Bus,
        reqs: Arc<RecordingRequests>,
        dev: Arc<Mutex<TestDev>>,
    }

    fn machine() -> Machine {
        let reqs = Arc::new(RecordingRequests::default());
        let mut root = PciRoot::new(reqs.clone());
        root.add_device(
            0,
            0,
            Arc::new(Mutex::new(crate::pci::i440fx::I440fx::new())),
        )
        .unwrap();
        root.add_device(1, 0, Arc::new(Mutex::new(crate::pci::piix3::Piix3::new())))
            .unwrap();
        let dev = Arc::new(Mutex::new(TestDev::new()));
        root.add_device(3, 0, dev.clone()).unwrap();
        let root = Arc::new(root);
        let mut bus = Bus::new();
        bus.insert(root.config_io_device(), CONFIG_IO_BASE, CONFIG_IO_LEN)
            .unwrap();
        Machine {
            root,
            bus,
            reqs,
            dev,
        }
    }

    // Port helpers with the widths SeaBIOS src/hw/pci.c uses.
    fn outl(bus: &Bus, port: u64, v: u32) {
        assert!(bus.write(port, &v.to_le_bytes()));
    }
    fn outw(bus: &Bus, port: u64, v: u16) {
        assert!(bus.write(port, &v.to_le_bytes()));
    }
    fn outb(bus: &Bus, port: u64, v: u8) {
        assert!(bus.write(port, &[v]));
    }
    fn inl(bus: &Bus, port: u64) -> u32 {
        let mut b = [0; 4];
        assert!(bus.read(port, &mut b));
        u32::from_le_bytes(b)
    }
    fn inw(bus: &Bus, port: u64) -> u16 {
        let mut b = [0; 2];
        assert!(bus.read(port, &mut b));
        u16::from_le_bytes(b)
    }
    fn inb(bus: &Bus, port: u64) -> u8 {
        let mut b = [0; 1];
        assert!(bus.read(port, &mut b));
        b[0]
    }
    fn addr(bdf: u16, reg: u32) -> u32 {
        0x8000_0000 | u32::from(bdf) << 8 | (reg & 0xfc)
    }
    fn readl(bus: &Bus, bdf: u16, reg: u32) -> u32 {
        outl(bus, 0xcf8, addr(bdf, reg));
        inl(bus, 0xcfc)
    }
    fn readw(bus: &Bus, bdf: u16, reg: u32) -> u16 {
        outl(bus, 0xcf8, addr(bdf, reg));
        inw(bus, 0xcfc + u64::from(reg & 2))
    }
    fn readb(bus: &Bus, bdf: u16, reg: u32) -> u8 {
        outl(bus, 0xcf8, addr(bdf, reg));
        inb(bus, 0xcfc + u64::from(reg & 3))
    }
    fn writel(bus: &Bus, bdf: u16, reg: u32, v: u32) {
        outl(bus, 0xcf8, addr(bdf, reg));
        outl(bus, 0xcfc, v);
    }
    fn writew(bus: &Bus, bdf: u16, reg: u32, v: u16) {
        outl(bus, 0xcf8, addr(bdf, reg));
        outw(bus, 0xcfc + u64::from(reg & 2), v);
    }
    fn writeb(bus: &Bus, bdf: u16, reg: u32, v: u8) {
        outl(bus, 0xcf8, addr(bdf, reg));
        outb(bus, 0xcfc + u64::from(reg & 3), v);
    }

    #[test]
    fn host_probe_and_linux_conf1_check() {
        let m = machine();
        // SeaBIOS pci_probe_host.
        outl(&m.bus, 0xcf8, 0x8000_0000);
        assert_eq!(inl(&m.bus, 0xcf8), 0x8000_0000);
        // Linux pci_check_type1: byte write to 0xCFB is not a latch write.
        outb(&m.bus, 0xcfb, 0x01);
        assert_eq!(inl(&m.bus, 0xcf8), 0x8000_0000);
        outl(&m.bus, 0xcf8, 0x1234_5678);
        assert_eq!(inl(&m.bus, 0xcf8), 0x1234_5678);
        assert_eq!(inw(&m.bus, 0xcfa), 0x1234);
    }

    #[test]
    fn seabios_bus_scan() {
        let m = machine();
        // pci_next: read the vendor word of each bdf, skipping functions 1..7 of
        // single-function devices.
        let mut found = Vec::new();
        let mut bdf: u16 = 0;
        while bdf < 256 {
            let v = readw(&m.bus, bdf, 0x00);
            if v != 0xffff && v != 0 {
                found.push((bdf, readl(&m.bus, bdf, 0x00)));
                let multi = readb(&m.bus, bdf, 0x0e) & 0x80 != 0;
                bdf += if bdf & 7 == 0 && !multi { 8 } else { 1 };
            } else {
                bdf += if bdf & 7 == 0 { 8 } else { 1 };
            }
        }
        assert_eq!(
            found,
            vec![
                (0x00, 0x1237_8086),
                (0x08, 0x7000_8086),
                (0x18, 0x1042_1af4)
            ]
        );
        // qemu_detect: subsystem of 00:00.0.
        assert_eq!(readw(&m.bus, 0, 0x2c), 0x1af4);
        assert_eq!(readw(&m.bus, 0, 0x2e), 0x1100);
        assert_eq!(readl(&m.bus, 0, 0x08), 0x0600_0002);
        assert_eq!(readl(&m.bus, 0x08, 0x08) >> 8, 0x06_0100);
        // Absent functions and other buses read all ones; writes vanish.
        assert_eq!(readl(&m.bus, 0x09, 0x00), 0xffff_ffff);
        assert_eq!(readl(&m.bus, 0x100, 0x00), 0xffff_ffff);
        writel(&m.bus, 0x100 | 0x18, 0x04, 0x7);
        assert_eq!(readw(&m.bus, 0x18, 0x04), 0);
        // Enable bit clear: no config cycle.
        outl(&m.bus, 0xcf8, 0x0000_0000);
        assert_eq!(inl(&m.bus, 0xcfc), 0xffff_ffff);
    }

    #[test]
    fn byte_word_dword_config_access() {
        let m = machine();
        // PIIX3 header type through the byte port 0xCFE.
        assert_eq!(readb(&m.bus, 0x08, 0x0e), 0x80);
        assert_eq!(readb(&m.bus, 0x00, 0x0e), 0x00);
        // piix_isa_bridge_setup writes PIRQ routes bytewise at 0xCFC..0xCFF.
        for (i, irq) in [10u8, 10, 11, 11].into_iter().enumerate() {
            writeb(&m.bus, 0x08, 0x60 + i as u32, irq);
        }
        assert_eq!(readl(&m.bus, 0x08, 0x60), 0x0b0b_0a0a);
        assert_eq!(readb(&m.bus, 0x08, 0x63), 0x0b);
        assert_eq!(readw(&m.bus, 0x08, 0x62), 0x0b0b);
        // pci_bios_init_device: INTERRUPT_LINE and COMMAND.
        writeb(&m.bus, 0x18, INTERRUPT_LINE as u32, 11);
        assert_eq!(readb(&m.bus, 0x18, 0x3d), 1);
        assert_eq!(readb(&m.bus, 0x18, 0x3c), 11);
        writew(&m.bus, 0x18, COMMAND as u32, 0x0107);
        assert_eq!(readw(&m.bus, 0x18, 0x04), 0x0107);
        // Accesses crossing the data dword, or of odd widths, read all ones.
        outl(&m.bus, 0xcf8, addr(0x18, 0));
        assert_eq!(inw(&m.bus, 0xcff), 0xffff);
        assert_eq!(inl(&m.bus, 0xcfd), 0xffff_ffff);
        let mut b3 = [0u8; 3];
        m.bus.read(0xcfc, &mut b3);
        assert_eq!(b3, [0xff; 3]);
        m.bus.write(0xcfe, &[1, 2, 3, 4]);
        m.bus.write(0xcfc, &[1, 2, 3]);
        let mut b8 = [0u8; 8];
        m.bus.read(0xcf8, &mut b8);
        m.bus.write(0xcf8, &[0; 8]);
        m.bus.write(0xcf9, &[0; 2]);
        assert_eq!(readl(&m.bus, 0x18, 0), 0x1042_1af4);
    }

    #[test]
    fn reset_control_register() {
        let m = machine();
        // SeaBIOS pci_reboot: v = inb(0xcf9) & ~6; outb(v|2); outb(v|6).
        let v = inb(&m.bus, 0xcf9) & !6;
        assert_eq!(v, 0);
        outb(&m.bus, 0xcf9, v | 2);
        assert!(m.reqs.requests.lock().unwrap().is_empty());
        assert_eq!(inb(&m.bus, 0xcf9), 0x02);
        outb(&m.bus, 0xcf9, v | 6);
        assert_eq!(*m.reqs.requests.lock().unwrap(), vec![VmRequest::Reset]);
        // The latch is untouched by 0xCF9 accesses.
        outl(&m.bus, 0xcf8, 0x8000_0800);
        outb(&m.bus, 0xcf9, 0x00);
        assert_eq!(inl(&m.bus, 0xcf8), 0x8000_0800);
        assert_eq!(inb(&m.bus, 0xcf9), 0x00);
        outb(&m.bus, 0xcf9, 0x0e);
        assert_eq!(m.reqs.requests.lock().unwrap().len(), 2);
        m.root.reset();
        assert_eq!(inb(&m.bus, 0xcf9), 0);
        assert_eq!(inl(&m.bus, 0xcf8), 0);
    }

    /// pciinit.c: size every BAR with all ones, program, then enable IO|MEM.
    fn program_bars(bus: &Bus) {
        let d = 0x18;
        writel(bus, d, 0x10, 0xffff_ffff);
        // SeaBIOS's size: !(0xffff_ffc1 & !3) + 1 = 0x40.
        assert_eq!(readl(bus, d, 0x10), 0xffff_ffc1);
        writel(bus, d, 0x14, 0xffff_ffff);
        assert_eq!(readl(bus, d, 0x14), 0xffff_f000);
        writel(bus, d, 0x18, 0xffff_ffff);
        writel(bus, d, 0x1c, 0xffff_ffff);
        assert_eq!(readl(bus, d, 0x18), 0xffff_c00c);
        writel(bus, d, 0x30, 0xffff_fffe);
        assert_eq!(readl(bus, d, 0x30), 0xffff_f800);
        writel(bus, d, 0x10, 0xc000);
        writel(bus, d, 0x14, 0xfebf_f000);
        writel(bus, d, 0x18, 0xfebf_8000);
        writel(bus, d, 0x1c, 0);
        writel(bus, d, 0x30, 0xfeb0_0000 | 1);
    }

    /// A device whose 32-bit memory BAR 1 is host memory.
    struct MappedDev {
        inner: TestDev,
        mem: HostMemory,
    }

    impl PciDevice for MappedDev {
        fn config(&self) -> &PciConfig {
            &self.inner.config
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.inner.config
        }
        fn host_memory_bar(&self, bar: usize) -> Option<HostMemory> {
            (bar == 1).then(|| self.mem.clone())
        }
    }

    /// (devfn, bar, base, memory size) of one `bar_moved` call.
    type MapCall = (usize, usize, Option<u64>, usize);

    #[derive(Default)]
    struct RecordingMapper(Mutex<Vec<MapCall>>);

    impl BarMapper for RecordingMapper {
        fn bar_moved(&self, devfn: usize, bar: usize, base: Option<u64>, mem: &HostMemory) {
            self.0.lock().unwrap().push((devfn, bar, base, mem.len()));
        }
    }

    #[test]
    fn host_memory_bar_follows_placement_and_decoding() {
        let mapper = Arc::new(RecordingMapper::default());
        let mut root = PciRoot::new(Arc::new(RecordingRequests::default()));
        root.set_bar_mapper(mapper.clone());
        let dev = MappedDev {
            inner: TestDev::new(),
            mem: HostMemory::new(0x1000).unwrap(),
        };
        root.add_device(3, 0, Arc::new(Mutex::new(dev))).unwrap();
        let root = Arc::new(root);
        let mut bus = Bus::new();
        bus.insert(root.config_io_device(), CONFIG_IO_BASE, CONFIG_IO_LEN)
            .unwrap();
        program_bars(&bus);
        writew(&bus, 0x18, 0x04, 0x0102); // memory decoding on
        writel(&bus, 0x18, 0x14, 0xfe00_0000); // moved
        writew(&bus, 0x18, 0x04, 0x0100); // memory decoding off
        root.reset();
        let calls = mapper.0.lock().unwrap().clone();
        let last_base = |calls: &[MapCall]| calls.last().unwrap().2;
        assert!(calls
            .iter()
            .all(|c| c.0 == 0x18 && c.1 == 1 && c.3 == 0x1000));
        assert!(calls.contains(&(0x18, 1, Some(0xfebf_f000), 0x1000)));
        assert!(calls.contains(&(0x18, 1, Some(0xfe00_0000), 0x1000)));
        let on_at = calls.iter().position(|c| c.2 == Some(0xfe00_0000)).unwrap();
        assert_eq!(
            calls[on_at + 1..]
                .iter()
                .find(|c| c.2.is_none())
                .map(|c| c.2),
            Some(None)
        );
        assert_eq!(last_base(&calls), None, "reset leaves it unmapped");
    }

    #[test]
    fn bar_decoding_follows_config() {
        let m = machine();
        program_bars(&m.bus);
        let mut b = [0u8; 2];
        // Decoding is off until COMMAND enables it.
        assert!(!m.root.pio_read(0xc000, &mut b));
        assert!(!m.root.mmio_read(0xfebf_f000, &mut b));
        writew(&m.bus, 0x18, 0x04, 0x0103);
        assert!(m.root.pio_read(0xc005, &mut b));
        assert_eq!(b, [0x05, 0x06]);
        assert!(m.root.pio_write(0xc03f, &[0xaa]));
        assert!(m.root.mmio_read(0xfebf_f010, &mut b));
        assert_eq!(b, [0x10 | 0x10, 0x10 | 0x11]);
        assert!(m.root.mmio_write(0xfebf_8ffc, &[1, 2, 3, 4]));
        let mut rom = [0u8; 4];
        assert!(m.root.mmio_read(0xfeb0_0008, &mut rom));
        assert_eq!(rom, [0x68, 0x69, 0x6a, 0x6b]);
        assert_eq!(
            m.dev.lock().unwrap().log,
            vec![(0, 0x3f, vec![0xaa]), (2, 0xffc, vec![1, 2, 3, 4])]
        );
        // Misses: other addresses, wrong space, one past the end.
        assert!(!m.root.pio_read(0xc040, &mut b));
        assert!(!m.root.pio_read(0xbfff, &mut b));
        assert!(!m.root.mmio_read(0xc000, &mut b));
        assert!(!m.root.pio_read(0xfebf_f000, &mut b));
        assert!(!m.root.mmio_write(0xfebf_c000, &[0]));
        // An access straddling the end is claimed but not passed on.
        let mut d4 = [0u8; 4];
        assert!(m.root.pio_read(0xc03e, &mut d4));
        assert_eq!(d4, [0xff; 4]);
        assert!(m.root.mmio_write(0xfebf_fffe, &[0; 4]));
        assert_eq!(m.dev.lock().unwrap().log.len(), 2);
        // Moving a BAR needs no re-registration.
        writel(&m.bus, 0x18, 0x10, 0xd000);
        assert!(!m.root.pio_read(0xc000, &mut b));
        assert!(m.root.pio_read(0xd001, &mut b));
        assert_eq!(b, [0x01, 0x02]);
        // A 64-bit BAR above 4 GiB.
        writel(&m.bus, 0x18, 0x1c, 0x80);
        assert!(m.root.mmio_read(0x80_febf_8000, &mut b));
        assert!(!m.root.mmio_read(0xfebf_8000, &mut b));
        // Hostile addresses near the top of the space do not overflow.
        assert!(!m.root.mmio_read(u64::MAX, &mut b));
        assert!(!m.root.mmio_write(u64::MAX - 1, &[0; 8]));
    }

    #[test]
    fn add_device_and_reset() {
        let m = machine();
        let reqs = Arc::new(RecordingRequests::default());
        let mut root = PciRoot::new(reqs);
        let d = || -> SharedPciDevice { Arc::new(Mutex::new(TestDev::new())) };
        assert!(root.add_device(3, 0, d()).is_ok());
        assert!(matches!(root.add_device(3, 0, d()), Err(Error::PciSlot(3))));
        assert!(root.add_device(32, 0, d()).is_err());
        assert!(root.add_device(3, 8, d()).is_err());
        assert!(root.add_device(31, 7, d()).is_ok());
        assert!(root.device(31, 7).is_some());
        assert!(root.device(31, 6).is_none());
        assert!(root.device(40, 0).is_none());

        program_bars(&m.bus);
        writew(&m.bus, 0x18, 0x04, 0x0003);
        m.root.reset();
        assert_eq!(m.dev.lock().unwrap().resets, 1);
        assert_eq!(readl(&m.bus, 0x18, 0x10), 0x0000_0001);
        let mut b = [0u8; 1];
        assert!(!m.root.pio_read(0xc000, &mut b));
    }

    #[test]
    fn config_cycles_from_many_threads() {
        let m = machine();
        program_bars(&m.bus);
        writew(&m.bus, 0x18, 0x04, 0x0003);
        let root = m.root.clone();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let root = root.clone();
                s.spawn(move || {
                    let mut b = [0u8; 4];
                    for _ in 0..500 {
                        assert!(root.mmio_read(0xfebf_f000, &mut b));
                        assert_eq!(b, [0x10, 0x11, 0x12, 0x13]);
                        root.config_io_write(0, &0x8000_0000u32.to_le_bytes());
                        root.config_io_read(4, &mut b);
                        // Every thread latches the same address, so whatever the
                        // interleaving, the data port reads 00:00.0's ID.
                        assert_eq!(u32::from_le_bytes(b), 0x1237_8086);
                    }
                });
            }
        });
        assert_eq!(readl(&m.bus, 0, 0), 0x1237_8086);
    }

    /// Run `f` on another thread; fail if it has not finished within 10 s (it
    /// would be blocked on a lock it should not need).
    fn within_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("PCI access blocked (or panicked)")
    }

    #[test]
    fn decoding_follows_every_kind_of_config_write() {
        let m = machine();
        program_bars(&m.bus);
        writew(&m.bus, 0x18, 0x04, 0x0003);
        let mut b = [0u8; 1];
        assert!(m.root.pio_read(0xc000, &mut b));
        // Byte write to the second byte of the I/O BAR: 0xc000 -> 0xd400.
        writeb(&m.bus, 0x18, 0x11, 0xd4);
        assert!(!m.root.pio_read(0xc000, &mut b));
        assert!(m.root.pio_read(0xd43f, &mut b));
        assert_eq!(b, [0x3f]);
        // Word write to the upper half of the 32-bit memory BAR.
        writew(&m.bus, 0x18, 0x16, 0xfe00);
        assert!(!m.root.mmio_read(0xfebf_f000, &mut b));
        assert!(m.root.mmio_read(0xfe00_f001, &mut b));
        assert_eq!(b, [0x11]);
        // The ROM moves, then its enable bit goes off while MEM stays on.
        assert!(m.root.mmio_read(0xfeb0_0000, &mut b));
        writel(&m.bus, 0x18, 0x30, 0xfea0_0001);
        assert!(!m.root.mmio_read(0xfeb0_0000, &mut b));
        assert!(m.root.mmio_read(0xfea0_0005, &mut b));
        assert_eq!(b, [0x65]);
        writeb(&m.bus, 0x18, 0x30, 0x00);
        assert!(!m.root.mmio_read(0xfea0_0000, &mut b));
        assert!(m.root.mmio_read(0xfe00_f000, &mut b));
        // COMMAND byte write: memory off keeps I/O, I/O off keeps nothing.
        writeb(&m.bus, 0x18, 0x04, 0x01);
        assert!(!m.root.mmio_read(0xfe00_f000, &mut b));
        assert!(!m.root.mmio_read(0xfebf_8000, &mut b));
        assert!(m.root.pio_read(0xd400, &mut b));
        writeb(&m.bus, 0x18, 0x04, 0x00);
        assert!(!m.root.pio_read(0xd400, &mut b));
        // A write to the high byte of COMMAND (no enable bits there) changes nothing.
        writeb(&m.bus, 0x18, 0x04, 0x03);
        writeb(&m.bus, 0x18, 0x05, 0x01);
        assert!(m.root.pio_read(0xd400, &mut b));
        assert!(m.root.mmio_read(0xfe00_f000, &mut b));
        // Writes elsewhere in the header leave decoding alone.
        writeb(&m.bus, 0x18, INTERRUPT_LINE as u32, 5);
        assert!(m.root.pio_read(0xd400, &mut b));
        // Reset takes every window away; accesses from before it do not linger.
        m.root.reset();
        assert!(!m.root.pio_read(0xd400, &mut b));
        assert!(!m.root.mmio_read(0xfe00_f000, &mut b));
        assert!(!m.root.mmio_read(0xfebf_8000, &mut b));
    }

    #[test]
    fn overlapping_bars_go_to_the_lowest_devfn_and_bar() {
        let reqs = Arc::new(RecordingRequests::default());
        let mut root = PciRoot::new(reqs);
        let low = Arc::new(Mutex::new(TestDev::new()));
        let high = Arc::new(Mutex::new(TestDev::new()));
        // Added out of order: priority follows devfn, not insertion.
        root.add_device(5, 0, high.clone()).unwrap();
        root.add_device(3, 0, low.clone()).unwrap();
        let root = Arc::new(root);
        let mut bus = Bus::new();
        bus.insert(root.config_io_device(), CONFIG_IO_BASE, CONFIG_IO_LEN)
            .unwrap();
        for bdf in [0x18, 0x28] {
            writel(&bus, bdf, 0x10, 0xc000);
            writew(&bus, bdf, 0x04, 0x0001);
        }
        assert!(root.pio_write(0xc001, &[1]));
        assert_eq!(low.lock().unwrap().log, vec![(0, 1, vec![1])]);
        assert!(high.lock().unwrap().log.is_empty());
        writew(&bus, 0x18, 0x04, 0x0000);
        assert!(root.pio_write(0xc002, &[2]));
        assert_eq!(high.lock().unwrap().log, vec![(0, 2, vec![2])]);
        // Within one device, a memory BAR overlapping the ROM wins over it.
        writel(&bus, 0x28, 0x14, 0xfe00_0000);
        writel(&bus, 0x28, 0x30, 0xfe00_0001);
        writew(&bus, 0x28, 0x04, 0x0002);
        let mut b = [0u8; 1];
        assert!(root.mmio_read(0xfe00_0004, &mut b));
        assert_eq!(b, [0x14]);
        // Once the BAR moves away, the ROM underneath is reached.
        writel(&bus, 0x28, 0x14, 0xfd00_0000);
        assert!(root.mmio_read(0xfe00_0004, &mut b));
        assert_eq!(b, [0x64]);
        assert!(root.mmio_read(0xfd00_0004, &mut b));
        assert_eq!(b, [0x14]);
    }

    #[test]
    fn device_added_with_decoding_on_decodes_at_once() {
        let reqs = Arc::new(RecordingRequests::default());
        let mut root = PciRoot::new(reqs);
        let mut dev = TestDev::new();
        dev.config.write(0x10, &0xc000u32.to_le_bytes());
        dev.config.write(COMMAND, &[0x01, 0x00]);
        root.add_device(2, 0, Arc::new(Mutex::new(dev))).unwrap();
        let mut b = [0u8; 1];
        assert!(root.pio_read(0xc002, &mut b));
        assert_eq!(b, [0x02]);
    }

    #[test]
    fn bar_access_locks_only_the_decoding_device() {
        let m = machine();
        program_bars(&m.bus);
        writew(&m.bus, 0x18, 0x04, 0x0003);
        // Devices with lower devfns, which a scan would reach first, are busy.
        let host = m.root.device(0, 0).unwrap();
        let isa = m.root.device(1, 0).unwrap();
        let _host = host.lock().unwrap();
        let _isa = isa.lock().unwrap();
        let root = m.root.clone();
        let got = within_timeout(move || {
            let mut b = [0u8; 2];
            let hit = root.mmio_read(0xfebf_f002, &mut b);
            let wrote = root.pio_write(0xc001, &[7]);
            let miss = root.mmio_read(0x1000, &mut [0u8; 4]);
            (hit, b, wrote, miss)
        });
        assert_eq!(got, (true, [0x12, 0x13], true, false));
        assert_eq!(m.dev.lock().unwrap().log, vec![(0, 1, vec![7])]);
    }

    #[test]
    fn config_changed_behind_the_root_is_not_misrouted() {
        let m = machine();
        program_bars(&m.bus);
        writew(&m.bus, 0x18, 0x04, 0x0001);
        // Move the I/O BAR without a config cycle the root sees.
        m.dev
            .lock()
            .unwrap()
            .config
            .write(0x10, &0xe000u32.to_le_bytes());
        let root = m.root.clone();
        let (old, new) = within_timeout(move || {
            let mut b = [0xaau8; 1];
            let old = root.pio_read(0xc000, &mut b);
            assert_eq!(b, [0], "a miss reads as zeros");
            // The stale window was refreshed on the way.
            let new = root.pio_read(0xe001, &mut b);
            assert_eq!(b, [0x01]);
            (old, new)
        });
        assert!(!old);
        assert!(new);
        assert!(m.dev.lock().unwrap().log.is_empty());
    }
}
