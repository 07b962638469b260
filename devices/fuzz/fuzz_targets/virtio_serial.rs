//! virtio-serial behind the virtio-PCI transport with one port whose backend
//! cuts the guest's bytes into SPICE agent chunks (devices::vdagent), driven
//! by arbitrary register writes, ring memory (control messages, port data)
//! and host data: no panic, no access outside guest memory, bounded queues,
//! and the worker always stops.
#![no_main]

use std::sync::{Arc, Mutex};

use devices::interrupt::NoIrq;
use devices::pci;
use devices::vdagent::ChunkReader;
use devices::virtio::serial::Busy;
use devices::virtio::{SerialBackend, VirtioPciDevice, VirtioSerial};
use devices::Lifecycle;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 0x2_0000;
const BAR: u64 = 0x1000_0000;

#[derive(Default)]
struct Agent {
    reader: Mutex<ChunkReader>,
    busy: Mutex<bool>,
}

impl SerialBackend for Agent {
    fn guest_open(&self, _open: bool) {
        self.reader.lock().unwrap().reset();
    }
    fn guest_data(&self, data: &[u8]) -> Result<(), Busy> {
        if *self.busy.lock().unwrap() {
            return Err(Busy);
        }
        self.reader.lock().unwrap().feed(data, |_, c| assert!(c.len() <= 2048));
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let agent = Arc::new(Agent::default());
    let (serial, mut ports) =
        VirtioSerial::new(vec![("com.redhat.spice.0".into(), agent.clone() as _)]).unwrap();
    let port = ports.remove(0);
    let mut dev = VirtioPciDevice::new(serial, mem.clone(), Arc::new(NoIrq), None).unwrap();
    pci::config_write(&mut dev, 0x20, &(BAR as u32).to_le_bytes());
    pci::config_write(&mut dev, 0x04, &[0x06, 0x00]);
    // Each operation: 1 byte kind, 2 bytes offset, 1 byte width, 8 bytes value.
    for op in data.chunks_exact(12) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let width = [1usize, 2, 4, 8][usize::from(op[3]) % 4];
        let value = &op[4..4 + width];
        match op[0] % 7 {
            0 => pci::bar_write(&mut dev, 4, offset % 0x4000, value),
            1 => {
                let mut buf = [0u8; 8];
                pci::bar_read(&mut dev, 4, offset % 0x4000, &mut buf[..width]);
            }
            2 => {
                let at = GuestAddress((offset * 8) % MEM as u64);
                let _ = mem.write_slice(value, at);
            }
            3 => {
                let _ = port.send(vec![op[4]; usize::from(op[1]) * 64], None);
            }
            4 => {
                let mut b = agent.busy.lock().unwrap();
                *b = !*b;
                drop(b);
                port.resume();
            }
            5 => {
                let off = usize::from(op[1]) % 256;
                let len = width.min(4 - off % 4);
                pci::config_write(&mut dev, off, &value[..len]);
            }
            _ => {
                dev.pause();
                dev.resume();
            }
        }
    }
    dev.shutdown().unwrap();
});
