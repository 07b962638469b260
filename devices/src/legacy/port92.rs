//! System control port A (0x92): A20 gate and fast reset.
//!
//! KVM cannot mask A20, so bit 1 is only stored and read back (starting set, which
//! is what the guest actually gets). Bit 0 going 0 → 1 asks for a machine reset;
//! the bit then reads back as 0, since the reset it requested has "happened".

use std::sync::Arc;

use tracing::debug;

use crate::bus::read_byte_register;
use crate::{BusDevice, Reset, VmRequest, VmRequests};

pub const BASE: u64 = 0x92;
pub const LEN: u64 = 1;

const FAST_RESET: u8 = 0x01;
const A20: u8 = 0x02;

pub struct Port92 {
    value: u8,
    requests: Arc<dyn VmRequests>,
}

impl Port92 {
    pub fn new(requests: Arc<dyn VmRequests>) -> Self {
        Self {
            value: A20,
            requests,
        }
    }

    pub fn a20(&self) -> bool {
        self.value & A20 != 0
    }
}

impl Reset for Port92 {
    /// Machine reset: back to A20 enabled.
    fn reset(&mut self) {
        self.value = A20;
    }
}

impl BusDevice for Port92 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        read_byte_register(offset, data, self.value);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Some(&v) = data.first().filter(|_| offset == 0) else {
            debug!(offset, "port 0x92 write beyond its port");
            return;
        };
        if v & FAST_RESET != 0 && self.value & FAST_RESET == 0 {
            self.requests.request(VmRequest::Reset);
        }
        self.value = v & !FAST_RESET;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::RecordingRequests;

    fn rd(p: &mut Port92) -> u8 {
        let mut b = [0];
        p.read(BASE, 0, &mut b);
        b[0]
    }

    #[test]
    fn seabios_set_a20_and_fast_reset() {
        let req = Arc::new(RecordingRequests::default());
        let mut p = Port92::new(req.clone());
        assert!(p.a20());
        // SeaBIOS set_a20(0): read, clear bit 1, write back.
        let v = rd(&mut p);
        p.write(BASE, 0, &[v & !A20]);
        assert_eq!(rd(&mut p), 0x00);
        p.write(BASE, 0, &[A20]);
        assert_eq!(rd(&mut p), A20);
        assert!(req.requests.lock().unwrap().is_empty());
        p.write(BASE, 0, &[A20 | FAST_RESET]);
        assert_eq!(*req.requests.lock().unwrap(), [VmRequest::Reset]);
        assert_eq!(rd(&mut p), A20);
        // Odd widths and offsets.
        p.write(BASE, 1, &[0xff]);
        p.write(BASE, 0, &[]);
        let mut w = [0u8; 4];
        p.read(BASE, 0, &mut w);
        assert_eq!(w, [A20, 0xff, 0xff, 0xff]);
        p.read(BASE, u64::MAX, &mut w);
        assert_eq!(req.requests.lock().unwrap().len(), 1);
        p.write(BASE, 0, &[0]);
        p.reset();
        assert!(p.a20());
    }
}
