//! QEMU firmware configuration device (fw_cfg) on I/O ports 0x510..0x51B.
//!
//! SeaBIOS (`src/fw/paravirt.c`) and Linux (`qemu_fw_cfg`) find RAM layout, CPU
//! counts, boot order and ROMs here. Layout of the 12-port window:
//!
//! | port        | access                                                        |
//! |-------------|---------------------------------------------------------------|
//! | 0x510       | 16-bit write: select item (little-endian key)                 |
//! | 0x510/0x511 | read: next byte(s) of the selected item, 0 past its end       |
//! | 0x514..0x51B| DMA address, big-endian; a write of the low half (0x518) or of |
//! |             | all 8 bytes starts a transfer; reads return "QEMU CFG"         |
//!
//! Port reads and DMA share one selector and offset: SeaBIOS selects by port,
//! skips with DMA and then reads with DMA, or reads FILE_DIR's count with DMA and
//! the entries with further DMA reads that continue where the last one stopped.
//!
//! Files get keys from 0x0020 in the order they are added, and the FILE_DIR lists
//! them sorted by name; guests take each key from its directory entry, so keys need
//! not follow the sorted order (QEMU happens to renumber; keeping keys stable lets
//! `add_file` return one). Nothing is writable: DMA WRITE sets ERROR.

use std::collections::BTreeMap;

use tracing::{debug, trace, warn};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::{BusDevice, Error, Reset, Result};

pub const PORT_BASE: u64 = 0x510;
pub const PORT_LEN: u64 = 12;

pub const SIGNATURE: u16 = 0x0000;
pub const ID: u16 = 0x0001;
pub const RAM_SIZE: u16 = 0x0003;
pub const NOGRAPHIC: u16 = 0x0004;
pub const NB_CPUS: u16 = 0x0005;
pub const BOOT_MENU: u16 = 0x000e;
pub const MAX_CPUS: u16 = 0x000f;
pub const FILE_DIR: u16 = 0x0019;
pub const FILE_FIRST: u16 = 0x0020;
/// Keys below 0x8000 with bit 14 clear; files use [FILE_FIRST, FILE_LAST].
const FILE_LAST: u16 = 0x3fff;
/// Architecture-specific legacy keys start here (0x8003 = E820 reservations).
pub const ARCH_LOCAL: u16 = 0x8000;

/// ID bits: the traditional port interface and the DMA interface.
const ID_TRADITIONAL: u32 = 1 << 0;
const ID_DMA: u32 = 1 << 1;

const DMA_ERROR: u32 = 1 << 0;
const DMA_READ: u32 = 1 << 1;
const DMA_SKIP: u32 = 1 << 2;
const DMA_SELECT: u32 = 1 << 3;
const DMA_WRITE: u32 = 1 << 4;
const DMA_SIGNATURE: &[u8; 8] = b"QEMU CFG";
/// FWCfgDmaAccess: u32 control, u32 length, u64 address, all big-endian.
const DMA_DESC_LEN: usize = 16;

/// Bytes of a file name in a FILE_DIR entry, including the terminating NUL.
const FILE_NAME_LEN: usize = 56;
const FILE_ENTRY_LEN: usize = 64;

const PORT_SELECT: u64 = 0;
const PORT_DATA: u64 = 1;
const PORT_DMA: u64 = 4;

pub struct FwCfg {
    mem: GuestMemoryMmap<()>,
    /// Every item by key, including the generated signature, ID and FILE_DIR.
    items: BTreeMap<u16, Vec<u8>>,
    /// File names sorted, with their keys, to build FILE_DIR.
    files: BTreeMap<String, u16>,
    selector: u16,
    offset: usize,
    /// DMA address being assembled from the two 32-bit halves.
    dma_addr: u64,
}

impl FwCfg {
    /// `mem` is where DMA descriptors and buffers live.
    pub fn new(mem: GuestMemoryMmap<()>) -> Self {
        let mut items = BTreeMap::new();
        items.insert(SIGNATURE, b"QEMU".to_vec());
        items.insert(ID, (ID_TRADITIONAL | ID_DMA).to_le_bytes().to_vec());
        items.insert(FILE_DIR, 0u32.to_be_bytes().to_vec());
        FwCfg {
            mem,
            items,
            files: BTreeMap::new(),
            selector: SIGNATURE,
            offset: 0,
            dma_addr: 0,
        }
    }

    /// Set a legacy numeric item (e.g. `NB_CPUS` as a little-endian u16). Replaces
    /// an earlier value. Keys the device generates itself or that belong to files
    /// are refused with a warning: that is a VMM bug, not guest input.
    pub fn add_item(&mut self, key: u16, data: Vec<u8>) {
        let reserved =
            matches!(key, SIGNATURE | ID | FILE_DIR) || (FILE_FIRST..ARCH_LOCAL).contains(&key);
        if reserved || u32::try_from(data.len()).is_err() {
            warn!(key, len = data.len(), "fw_cfg: refusing item");
            return;
        }
        self.items.insert(key, data);
    }

    /// Add a named file and return its key. Names are at most 55 bytes.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<u16> {
        if name.is_empty() || name.len() >= FILE_NAME_LEN || name.contains('\0') {
            return Err(Error::FwCfg(format!("bad file name {name:?}")));
        }
        if self.files.contains_key(name) {
            return Err(Error::FwCfg(format!("duplicate file {name:?}")));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(Error::FwCfg(format!("file {name:?} is too large")));
        }
        let key = FILE_FIRST + self.files.len() as u16;
        if key > FILE_LAST {
            return Err(Error::FwCfg("too many files".into()));
        }
        self.items.insert(key, data);
        self.files.insert(name.to_owned(), key);
        self.rebuild_dir();
        Ok(key)
    }

    fn rebuild_dir(&mut self) {
        let mut dir = Vec::with_capacity(4 + self.files.len() * FILE_ENTRY_LEN);
        dir.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for (name, key) in &self.files {
            let size = self.items.get(key).map_or(0, Vec::len) as u32;
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&key.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; FILE_NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        self.items.insert(FILE_DIR, dir);
    }

    fn select(&mut self, key: u16) {
        trace!(key, "fw_cfg select");
        self.selector = key;
        self.offset = 0;
    }

    /// The selected item; unknown keys behave as empty items (read as zeros).
    fn current(&self) -> &[u8] {
        self.items.get(&self.selector).map_or(&[], Vec::as_slice)
    }

    fn read_data(&mut self, out: &mut [u8]) {
        let len = self.current().len();
        for b in out {
            *b = self.current().get(self.offset).copied().unwrap_or(0);
            if self.offset < len {
                self.offset += 1;
            }
        }
    }

    fn dma_write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (PORT_DMA, 4) => {
                let hi = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                self.dma_addr = u64::from(hi) << 32;
            }
            (8, 4) => {
                let lo = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                self.dma_addr |= u64::from(lo);
                self.dma_transfer();
            }
            (PORT_DMA, 8) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(data);
                self.dma_addr = u64::from_be_bytes(b);
                self.dma_transfer();
            }
            _ => debug!(
                offset,
                len = data.len(),
                "fw_cfg: ignored DMA register write"
            ),
        }
    }

    /// Run the FWCfgDmaAccess at the latched address and write the status back.
    fn dma_transfer(&mut self) {
        // The address is consumed: the next transfer needs both halves again
        // (SeaBIOS never writes the high half, relying on it being zero).
        let desc_addr = GuestAddress(std::mem::take(&mut self.dma_addr));
        let mut desc = [0u8; DMA_DESC_LEN];
        if let Err(e) = self.mem.read_slice(&mut desc, desc_addr) {
            debug!(addr = desc_addr.0, %e, "fw_cfg: unreadable DMA descriptor");
            let _ = self.mem.write_slice(&DMA_ERROR.to_be_bytes(), desc_addr);
            return;
        }
        let control = u32::from_be_bytes(desc[0..4].try_into().unwrap());
        let length = u32::from_be_bytes(desc[4..8].try_into().unwrap());
        let address = u64::from_be_bytes(desc[8..16].try_into().unwrap());
        trace!(control, length, address, "fw_cfg DMA");

        if control & DMA_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let ok = if control & DMA_READ != 0 {
            self.dma_read(address, length)
        } else if control & DMA_WRITE != 0 {
            // No writable items: any non-empty write is refused. (QEMU lets
            // the guest write a few files, e.g. for the table loader's
            // WRITE_POINTER command, which spicebox's loader never uses.)
            if length != 0 {
                debug!(
                    key = self.selector,
                    length, "fw_cfg: DMA write refused, nothing is writable"
                );
            }
            length == 0
        } else if control & DMA_SKIP != 0 {
            let avail = self.current().len().saturating_sub(self.offset);
            self.offset += avail.min(length as usize);
            true
        } else {
            true
        };
        let status = if ok { 0 } else { DMA_ERROR };
        if let Err(e) = self.mem.write_slice(&status.to_be_bytes(), desc_addr) {
            debug!(addr = desc_addr.0, %e, "fw_cfg: cannot write DMA status");
        }
    }

    /// Copy `length` bytes of the item to guest `address`, zero-filling past its
    /// end. Nothing is allocated per transfer: data goes straight from the item.
    fn dma_read(&mut self, address: u64, length: u32) -> bool {
        const ZEROS: [u8; 4096] = [0; 4096];
        let length = length as usize;
        let data = self
            .items
            .get(&self.selector)
            .map_or(&[][..], Vec::as_slice);
        let n = data.len().saturating_sub(self.offset).min(length);
        if n > 0 {
            let src = &data[self.offset..self.offset + n];
            if self.mem.write_slice(src, GuestAddress(address)).is_err() {
                debug!(address, n, "fw_cfg: DMA read to bad guest memory");
                return false;
            }
            self.offset += n;
        }
        let mut done = n;
        while done < length {
            let chunk = (length - done).min(ZEROS.len());
            let Some(dst) = address.checked_add(done as u64) else {
                return false;
            };
            if self
                .mem
                .write_slice(&ZEROS[..chunk], GuestAddress(dst))
                .is_err()
            {
                debug!(dst, chunk, "fw_cfg: DMA zero-fill to bad guest memory");
                return false;
            }
            done += chunk;
        }
        true
    }
}

impl Reset for FwCfg {
    /// Machine reset: back to the signature at offset 0, no DMA address pending.
    fn reset(&mut self) {
        self.selector = SIGNATURE;
        self.offset = 0;
        self.dma_addr = 0;
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match offset {
            PORT_SELECT | PORT_DATA => self.read_data(data),
            PORT_DMA..PORT_LEN => {
                let start = (offset - PORT_DMA) as usize;
                for (i, b) in data.iter_mut().enumerate() {
                    *b = DMA_SIGNATURE.get(start + i).copied().unwrap_or(0);
                }
            }
            _ => data.fill(0),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (PORT_SELECT, 2) => self.select(u16::from_le_bytes([data[0], data[1]])),
            (PORT_DMA..PORT_LEN, _) => self.dma_write(offset, data),
            // Data-port writes were removed from QEMU in 2.4; nothing is writable.
            _ => debug!(offset, len = data.len(), "fw_cfg: ignored write"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: u64 = 0x10_0000;
    const DESC: u64 = 0x1000;
    const BUF: u64 = 0x2000;

    fn fw() -> FwCfg {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let mut f = FwCfg::new(mem);
        f.add_item(NB_CPUS, 2u16.to_le_bytes().to_vec());
        f.add_file("etc/e820", vec![0xe8; 40]).unwrap();
        f.add_file("bootorder", b"/pci@i0cf8/*@5\n".to_vec())
            .unwrap();
        f.add_file("etc/sercon-port", 0x3f8u16.to_le_bytes().to_vec())
            .unwrap();
        f
    }

    fn outw(f: &mut FwCfg, port: u64, v: u16) {
        f.write(PORT_BASE, port - PORT_BASE, &v.to_le_bytes());
    }
    fn inb(f: &mut FwCfg, port: u64) -> u8 {
        let mut b = [0u8];
        f.read(PORT_BASE, port - PORT_BASE, &mut b);
        b[0]
    }
    fn insb(f: &mut FwCfg, n: usize) -> Vec<u8> {
        (0..n).map(|_| inb(f, 0x511)).collect()
    }

    /// SeaBIOS qemu_cfg_dma_transfer: descriptor at DESC, then
    /// `outl(cpu_to_be32(DESC), 0x518)`. Returns the control word written back.
    fn dma(f: &mut FwCfg, control: u32, length: u32, address: u64) -> u32 {
        let mut d = [0u8; 16];
        d[0..4].copy_from_slice(&control.to_be_bytes());
        d[4..8].copy_from_slice(&length.to_be_bytes());
        d[8..16].copy_from_slice(&address.to_be_bytes());
        f.mem.write_slice(&d, GuestAddress(DESC)).unwrap();
        // outl of a be32 value puts the big-endian bytes on the port.
        f.write(PORT_BASE, 8, &(DESC as u32).to_be_bytes());
        let mut c = [0u8; 4];
        f.mem.read_slice(&mut c, GuestAddress(DESC)).unwrap();
        u32::from_be_bytes(c)
    }

    fn guest(f: &FwCfg, addr: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        f.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    #[test]
    fn signature_by_port() {
        let mut f = fw();
        // qemu_cfg_init: select 0, four inb of the data port.
        outw(&mut f, 0x510, SIGNATURE);
        assert_eq!(insb(&mut f, 4), b"QEMU");
        assert_eq!(insb(&mut f, 3), [0, 0, 0]);
        outw(&mut f, 0x510, NB_CPUS);
        assert_eq!(insb(&mut f, 3), [2, 0, 0]);
        // Unknown keys read as zeros.
        outw(&mut f, 0x510, 0x1234);
        assert_eq!(insb(&mut f, 2), [0, 0]);
    }

    #[test]
    fn id_and_file_dir_by_dma() {
        let mut f = fw();
        // qemu_cfg_read_entry(&id, QEMU_CFG_ID, 4) with DMA.
        let ctl = u32::from(ID) << 16 | DMA_SELECT | DMA_READ;
        assert_eq!(dma(&mut f, ctl, 4, BUF), 0);
        assert_eq!(guest(&f, BUF, 4), [3, 0, 0, 0]);
        // Count, then one 64-byte read per entry continuing from the offset.
        let ctl = u32::from(FILE_DIR) << 16 | DMA_SELECT | DMA_READ;
        assert_eq!(dma(&mut f, ctl, 4, BUF), 0);
        assert_eq!(guest(&f, BUF, 4), [0, 0, 0, 3]);
        let mut entries = Vec::new();
        for _ in 0..3 {
            assert_eq!(dma(&mut f, DMA_READ, 64, BUF), 0);
            let e = guest(&f, BUF, 64);
            let size = u32::from_be_bytes(e[0..4].try_into().unwrap());
            let select = u16::from_be_bytes([e[4], e[5]]);
            assert_eq!(&e[6..8], &[0, 0]);
            let name = e[8..].split(|b| *b == 0).next().unwrap().to_vec();
            entries.push((String::from_utf8(name).unwrap(), select, size));
        }
        assert_eq!(
            entries,
            vec![
                ("bootorder".into(), 0x21, 15),
                ("etc/e820".into(), 0x20, 40),
                ("etc/sercon-port".into(), 0x22, 2),
            ]
        );
        // Past the directory: zero-filled, still success.
        f.mem.write_slice(&[0xaa; 8], GuestAddress(BUF)).unwrap();
        assert_eq!(dma(&mut f, DMA_READ, 8, BUF), 0);
        assert_eq!(guest(&f, BUF, 8), [0; 8]);
    }

    #[test]
    fn file_read_with_skip() {
        let mut f = fw();
        // qemu_cfg_read_file with skip: select by port, DMA SKIP, DMA READ.
        outw(&mut f, 0x510, 0x21);
        assert_eq!(dma(&mut f, DMA_SKIP, 5, 0), 0);
        assert_eq!(dma(&mut f, DMA_READ, 4, BUF), 0);
        assert_eq!(guest(&f, BUF, 4), b"i0cf");
        // Port reads continue at the same offset.
        assert_eq!(insb(&mut f, 2), b"8/");
        // A read longer than the rest copies the rest and zero-fills.
        f.mem.write_slice(&[0xaa; 16], GuestAddress(BUF)).unwrap();
        assert_eq!(dma(&mut f, DMA_READ, 16, BUF), 0);
        assert_eq!(guest(&f, BUF, 16), b"*@5\n\0\0\0\0\0\0\0\0\0\0\0\0");
        // Skip past the end is clamped; a large read of nothing only zero-fills.
        assert_eq!(dma(&mut f, DMA_SKIP, 1000, 0), 0);
        assert_eq!(dma(&mut f, DMA_READ, 0x3000, BUF), 0);
        // Control without READ/WRITE/SKIP is a no-op that still completes.
        assert_eq!(
            dma(&mut f, u32::from(SIGNATURE) << 16 | DMA_SELECT, 4, BUF),
            0
        );
        assert_eq!(insb(&mut f, 4), b"QEMU");
    }

    #[test]
    fn dma_errors_never_panic() {
        let mut f = fw();
        let sel = u32::from(FILE_FIRST) << 16 | DMA_SELECT;
        // Writes are refused.
        assert_eq!(dma(&mut f, sel | DMA_WRITE, 4, BUF), DMA_ERROR);
        assert_eq!(dma(&mut f, DMA_WRITE, 0, BUF), 0);
        // Buffers outside RAM or wrapping the address space.
        assert_eq!(dma(&mut f, sel | DMA_READ, 40, RAM - 8), DMA_ERROR);
        assert_eq!(dma(&mut f, sel | DMA_READ, 40, u64::MAX - 3), DMA_ERROR);
        assert_eq!(
            dma(&mut f, sel | DMA_READ, u32::MAX, RAM - 0x100),
            DMA_ERROR
        );
        // A descriptor outside RAM: nothing to report to, no panic.
        f.write(PORT_BASE, 4, &0xffff_ffffu32.to_be_bytes());
        f.write(PORT_BASE, 8, &0xffff_fff0u32.to_be_bytes());
        // A descriptor straddling the end of RAM.
        f.write(PORT_BASE, 8, &((RAM - 8) as u32).to_be_bytes());
        // 64-bit write of the whole register also triggers.
        let mut d = [0u8; 16];
        d[0..4].copy_from_slice(&(sel | DMA_READ).to_be_bytes());
        d[4..8].copy_from_slice(&2u32.to_be_bytes());
        d[8..16].copy_from_slice(&BUF.to_be_bytes());
        f.mem.write_slice(&d, GuestAddress(DESC)).unwrap();
        f.write(PORT_BASE, 4, &DESC.to_be_bytes());
        assert_eq!(guest(&f, DESC, 4), [0; 4]);
        assert_eq!(guest(&f, BUF, 2), [0xe8, 0xe8]);
        // High half then low half: a descriptor at 0x1_0000_1000, beyond RAM.
        f.write(PORT_BASE, 4, &1u32.to_be_bytes());
        f.write(PORT_BASE, 8, &(DESC as u32).to_be_bytes());
        // The address is consumed by each transfer, so a later low-half write
        // alone (as SeaBIOS does) addresses low memory again.
        assert_eq!(dma(&mut f, sel | DMA_READ, 1, BUF), 0);
    }

    #[test]
    fn hostile_port_accesses() {
        let mut f = fw();
        for off in 0..PORT_LEN + 2 {
            for len in [1usize, 2, 3, 4, 8] {
                let mut b = vec![0u8; len];
                f.read(PORT_BASE, off, &mut b);
                f.write(PORT_BASE, off, &vec![0x5a; len]);
            }
        }
        // DMA register reads return the signature, byte by byte or wider.
        let mut b4 = [0u8; 4];
        f.read(PORT_BASE, 4, &mut b4);
        assert_eq!(&b4, b"QEMU");
        f.read(PORT_BASE, 8, &mut b4);
        assert_eq!(&b4, b" CFG");
        f.read(PORT_BASE, 10, &mut b4);
        assert_eq!(b4, [b'F', b'G', 0, 0]);
        let mut b8 = [0u8; 8];
        f.read(PORT_BASE, 4, &mut b8);
        assert_eq!(&b8, DMA_SIGNATURE);
    }

    /// Log lines emitted while `f` runs, at every level.
    fn logs_of(f: impl FnOnce()) -> String {
        let out = crate::interrupt::test_util::RecordingWriter::default();
        let w = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(out.contents()).unwrap()
    }

    /// The guest's side of the ACPI table loader is fw_cfg: whatever it does
    /// to the loader's files (write them, read them into memory it does not
    /// have, select past them) is refused with a log line, and the files stay
    /// as they were for the next reader.
    #[test]
    fn table_loader_abuse_is_logged_and_changes_nothing() {
        let mut f = fw();
        let loader: Vec<u8> = (0..256u32).map(|i| i as u8).collect();
        let key = f.add_file("etc/table-loader", loader.clone()).unwrap();
        let tables = f.add_file("etc/acpi/tables", vec![0x5a; 5000]).unwrap();
        let sel = |k: u16| u32::from(k) << 16 | DMA_SELECT;
        f.mem.write_slice(&[0xee; 128], GuestAddress(BUF)).unwrap();

        let log = logs_of(|| {
            // Overwrite a command, whole or at an offset.
            assert_eq!(dma(&mut f, sel(key) | DMA_WRITE, 128, BUF), DMA_ERROR);
            assert_eq!(dma(&mut f, DMA_SKIP, 64, 0), 0);
            assert_eq!(dma(&mut f, DMA_WRITE, 8, BUF), DMA_ERROR);
            // Through the data port, byte and word wide.
            outw(&mut f, 0x510, key);
            f.write(PORT_BASE, 1, &[0xee]);
            f.write(PORT_BASE, 1, &[0xee, 0xee]);
            // Read the tables into memory that is not there, or all of it.
            assert_eq!(
                dma(&mut f, sel(tables) | DMA_READ, 5000, RAM - 16),
                DMA_ERROR
            );
            assert_eq!(
                dma(&mut f, sel(tables) | DMA_READ, u32::MAX, BUF),
                DMA_ERROR
            );
            // A descriptor past RAM: no status to write, nothing else.
            f.write(PORT_BASE, 8, &((RAM + 0x1000) as u32).to_be_bytes());
        });
        for line in [
            "DMA write refused",
            "ignored write",
            "DMA read to bad guest memory",
            "unreadable DMA descriptor",
        ] {
            assert!(log.contains(line), "no {line:?} in:\n{log}");
        }
        // The loader reads back intact, by DMA and by port.
        assert_eq!(dma(&mut f, sel(key) | DMA_READ, 256, BUF), 0);
        assert_eq!(guest(&f, BUF, 256), loader);
        outw(&mut f, 0x510, key);
        assert_eq!(insb(&mut f, 4), loader[..4]);
    }

    #[test]
    fn add_file_rules_and_reset() {
        let mut f = fw();
        assert!(f.add_file("etc/e820", vec![]).is_err());
        assert!(f.add_file("", vec![]).is_err());
        assert!(f.add_file(&"x".repeat(56), vec![]).is_err());
        assert_eq!(f.add_file(&"x".repeat(55), vec![1]).unwrap(), 0x23);
        assert!(f.add_file("a\0b", vec![]).is_err());
        // Reserved legacy keys are not overwritten.
        f.add_item(SIGNATURE, b"EVIL".to_vec());
        f.add_item(0x20, vec![9]);
        f.add_item(MAX_CPUS, 4u16.to_le_bytes().to_vec());
        outw(&mut f, 0x510, MAX_CPUS);
        assert_eq!(insb(&mut f, 2), [4, 0]);
        outw(&mut f, 0x510, 0x20);
        assert_eq!(insb(&mut f, 1), [0xe8]);
        // Reset goes back to the signature at offset 0.
        f.reset();
        assert_eq!(insb(&mut f, 4), b"QEMU");
    }
}
