//! virtio-blk behind the virtio-PCI transport, driven by arbitrary register
//! writes and guest memory contents (rings, descriptors, request headers):
//! no panic, no access outside guest memory or the disk, and the worker
//! always stops.
#![no_main]

use std::io;
use std::sync::Arc;

use devices::interrupt::NoIrq;
use devices::pci;
use devices::virtio::disk::{DiskFormat, DiskImage};
use devices::virtio::{VirtioBlock, VirtioPciDevice};
use devices::Lifecycle;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 0x2_0000;
const BAR: u64 = 0x1000_0000;

/// A 64 KiB disk in memory.
struct MemDisk(Vec<u8>);

impl DiskImage for MemDisk {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let o = usize::try_from(offset).map_err(io::Error::other)?;
        let src = self.0.get(o..o + buf.len()).ok_or(io::ErrorKind::InvalidInput)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let o = usize::try_from(offset).map_err(io::Error::other)?;
        let dst = self.0.get_mut(o..o + buf.len()).ok_or(io::ErrorKind::InvalidInput)?;
        dst.copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn format(&self) -> DiskFormat {
        DiskFormat::Raw
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let blk = VirtioBlock::new(Box::new(MemDisk(vec![0; 0x1_0000])), false, "fuzz");
    let mut dev = VirtioPciDevice::new(blk, mem.clone(), Arc::new(NoIrq), None).unwrap();
    // Firmware's part: BAR 4 placed, memory decoding and bus mastering on.
    pci::config_write(&mut dev, 0x20, &(BAR as u32).to_le_bytes());
    pci::config_write(&mut dev, 0x04, &[0x06, 0x00]);
    // Each operation: 1 byte kind, 2 bytes offset, 1 byte width, 8 bytes value.
    for op in data.chunks_exact(12) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let width = [1usize, 2, 4, 8][usize::from(op[3]) % 4];
        let value = &op[4..4 + width];
        match op[0] % 5 {
            // Common config, device config and notify region writes.
            0 => pci::bar_write(&mut dev, 4, offset % 0x4000, value),
            1 => {
                let mut buf = [0u8; 8];
                pci::bar_read(&mut dev, 4, offset % 0x4000, &mut buf[..width]);
            }
            // The guest writes its memory (rings, descriptors, headers).
            2 => {
                let at = GuestAddress((offset * 8) % MEM as u64);
                let _ = mem.write_slice(value, at);
            }
            3 => {
                let off = usize::from(op[1]) % 256;
                let len = width.min(4 - off % 4);
                pci::config_write(&mut dev, off, &value[..len]);
            }
            // Let the worker catch up with the kicks so far.
            _ => {
                dev.pause();
                dev.resume();
            }
        }
    }
    dev.shutdown().unwrap();
});
