//! A virtio keyboard and tablet behind the virtio-PCI transport, driven by
//! arbitrary register writes (config selectors included), guest memory
//! contents (event and status rings, status events) and host input through
//! their handles: no panic, no access outside guest memory, bounded pending
//! events, and the worker always stops.
#![no_main]

use std::sync::Arc;

use devices::input::{AbsolutePointer, Keyboard};
use devices::interrupt::NoIrq;
use devices::pci;
use devices::virtio::{VirtioInput, VirtioPciDevice};
use devices::Lifecycle;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 0x2_0000;
const BAR: u64 = 0x1000_0000;

fuzz_target!(|data: &[u8]| {
    let Some((&tablet, data)) = data.split_first() else {
        return;
    };
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let (dev, keyboard, pointer): (_, Option<Arc<dyn Keyboard>>, Option<Arc<dyn AbsolutePointer>>) =
        if tablet & 1 == 0 {
            let (d, k) = VirtioInput::keyboard().unwrap();
            (d, Some(k), None)
        } else {
            let (d, t) = VirtioInput::tablet().unwrap();
            (d, None, Some(t))
        };
    let mut dev = VirtioPciDevice::new(dev, mem.clone(), Arc::new(NoIrq), None).unwrap();
    // Firmware's part: BAR 4 placed, memory decoding and bus mastering on.
    pci::config_write(&mut dev, 0x20, &(BAR as u32).to_le_bytes());
    pci::config_write(&mut dev, 0x04, &[0x06, 0x00]);
    // Each operation: 1 byte kind, 2 bytes offset, 1 byte width, 8 bytes value.
    for op in data.chunks_exact(12) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let width = [1usize, 2, 4, 8][usize::from(op[3]) % 4];
        let value = &op[4..4 + width];
        match op[0] % 6 {
            // Common config, device config (select/subsel) and notify writes.
            0 => pci::bar_write(&mut dev, 4, offset % 0x4000, value),
            1 => {
                let mut buf = [0u8; 8];
                pci::bar_read(&mut dev, 4, offset % 0x4000, &mut buf[..width]);
            }
            // The guest writes its memory (rings, descriptors, status events).
            2 => {
                let at = GuestAddress((offset * 8) % MEM as u64);
                let _ = mem.write_slice(value, at);
            }
            // Host input: a key or a position.
            3 => {
                let v = u32::from_le_bytes([op[4], op[5], op[6], op[7]]);
                if let Some(k) = &keyboard {
                    k.key(offset as u16, op[8] & 1 != 0);
                }
                if let Some(p) = &pointer {
                    p.position(v, offset as u32, i32::from(op[9] as i8), op[10]);
                }
            }
            4 => {
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
