//! The xHCI controller driven by arbitrary register accesses and guest memory
//! contents (command and transfer rings, TRBs, input/device contexts, event ring
//! segment tables, isochronous TDs on an MFINDEX the input advances), with a
//! device that answers every transfer with as many
//! bytes as the input says: no panic, no access outside guest memory, and every
//! `process` round returns (rings that loop are bounded).
#![no_main]

use std::sync::Arc;

use devices::usb::xhci::{schedule, IsochTrb, Trb, Xhci, XhciInterrupt};
use devices::usb::{UsbCompletion, UsbDevice, UsbRequest, UsbSpeed, UsbStatus};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 0x1_0000;

struct Quiet;

impl XhciInterrupt for Quiet {
    fn messages_enabled(&self) -> bool {
        true
    }
    fn notify(&self, _: u16) {}
    fn set_intx(&self, _: bool) {}
}

struct Echo {
    speed: UsbSpeed,
    answer: usize,
    deferred: Vec<UsbCompletion>,
}

impl UsbDevice for Echo {
    fn speed(&self) -> UsbSpeed {
        self.speed
    }
    fn submit(&mut self, r: UsbRequest) -> Option<UsbCompletion> {
        let status = match self.answer % 7 {
            0 => UsbStatus::Stall,
            1 => UsbStatus::Error,
            _ => UsbStatus::Success,
        };
        let done = UsbCompletion { id: r.id, status, data: vec![0x5a; self.answer * 37 % 70_000], actual: self.answer as u32 };
        if self.answer % 3 == 0 {
            self.deferred.push(done);
            None
        } else {
            Some(done)
        }
    }
    fn take_completions(&mut self) -> Vec<UsbCompletion> {
        std::mem::take(&mut self.deferred)
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let mut hc = Xhci::new(mem.clone(), Arc::new(Quiet));
    // MFINDEX moves only when the input says (isochronous TDs come due).
    hc.use_manual_clock();
    // Each operation: 1 byte kind, 2 bytes offset, 1 byte width, 8 bytes value.
    for op in data.chunks_exact(12) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let width = [1usize, 2, 4, 8][usize::from(op[3]) % 4];
        let value = &op[4..4 + width];
        match op[0] % 7 {
            0 => {
                hc.write(offset % 0x3000, value);
            }
            1 => {
                let mut buf = [0u8; 8];
                hc.read(offset % 0x3000, &mut buf[..width]);
            }
            2 => {
                let _ = mem.write_slice(&op[4..], GuestAddress(offset % MEM as u64));
            }
            3 => hc.process(),
            4 => {
                let speed = [UsbSpeed::Low, UsbSpeed::Full, UsbSpeed::High, UsbSpeed::Super][usize::from(op[4]) % 4];
                let _ = hc.attach(Box::new(Echo { speed, answer: usize::from(op[5]), deferred: Vec::new() }));
            }
            5 => {
                hc.advance_clock(u64::from(u16::from_le_bytes([op[4], op[5]])));
                // The Isoch TRB fields and the scheduler on their own too.
                let mut raw = [0u8; 16];
                raw[4..].copy_from_slice(&op[..12]);
                if let Some(first) = IsochTrb::parse(&Trb::from_bytes(&raw)) {
                    let now = u64::from_le_bytes(op[4..12].try_into().unwrap()) >> 8;
                    let _ = schedule(&first, now, 1 << (op[1] % 16), Some(now ^ u64::from(op[2])));
                }
            }
            _ => {
                let _ = hc.detach(op[4] % 10);
            }
        }
    }
    hc.process();
});
