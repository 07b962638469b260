//! The AC97 controller driven by arbitrary codec and bus-master register
//! accesses of any width, with guest memory (descriptor lists, buffers)
//! rewritten between steps and the sample clocks advanced by arbitrary
//! amounts: no panic, no access outside guest memory.
#![no_main]

use std::time::{Duration, Instant};

use devices::audio::ac97::bus_master::Dma;
use devices::audio::ac97::link::{Link, STREAMS};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 0x2_0000;

/// Reads (or writes) the samples as the card's DMA does, bounds-checked.
struct Touch;

impl Dma for Touch {
    fn transfer(&mut self, mem: &GuestMemoryMmap<()>, addr: u64, samples: usize) {
        let mut buf = vec![0u8; samples * 2];
        if mem.read_slice(&mut buf, GuestAddress(addr)).is_ok() {
            let _ = mem.write_slice(&buf, GuestAddress(addr));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let mut link = Link::new();
    link.dma_enabled = true;
    let t0 = Instant::now();
    let mut now = t0;
    for op in data.chunks_exact(7) {
        let off = u64::from(u16::from_le_bytes([op[1], op[2]]) & 0x3ff);
        let width = [1usize, 2, 4, 3][usize::from(op[0] >> 6)];
        let value = &op[3..3 + width.min(4)];
        match op[0] & 7 {
            0 => link.nam_write(off, value),
            1 => {
                link.nabm_write(&mem, off & 0xff, value);
            }
            2 => link.nam_read(off, &mut [0u8; 4][..width]),
            3 => link.nabm_read(off & 0xff, &mut [0u8; 4][..width]),
            4 => {
                let at = u64::from(u16::from_le_bytes([op[1], op[2]])) * 2;
                let _ = mem.write_slice(&op[3..7], GuestAddress(at));
            }
            _ => {
                now += Duration::from_micros(u64::from(u16::from_le_bytes([op[1], op[2]])) * 50);
                for s in STREAMS {
                    link.advance(s, now, &mem, &mut Touch);
                }
            }
        }
        let _ = link.interrupt();
    }
});
