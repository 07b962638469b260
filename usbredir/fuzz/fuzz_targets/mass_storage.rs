//! Hostile bulk-only transport into the test peer's mass-storage device: the
//! input is a sequence of operations (one byte: bulk OUT of the next n bytes,
//! bulk IN of some length, or a control request), whatever the guest sends.
//! No panic; every IN answer is at most the length asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use usbredir::peer::storage::{MassStorage, STORAGE_BULK_IN, STORAGE_BULK_OUT};
use usbredir::peer::EmulatedDevice;
use usbredir::{ControlPacket, Status};

fuzz_target!(|data: &[u8]| {
    let mut disk = MassStorage::new(16);
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let n = usize::from(op & 0x3f);
        match op >> 6 {
            0 | 1 => {
                let (out, tail) = rest.split_at(n.min(rest.len()));
                rest = tail;
                disk.bulk(STORAGE_BULK_OUT, out.len() as u32, out);
            }
            2 => {
                let length = (n as u32) * 97;
                let (_, got) = disk.bulk(STORAGE_BULK_IN, length, &[]);
                assert!(got.len() <= length as usize);
            }
            _ => {
                let (b, tail) = rest.split_at(4.min(rest.len()));
                rest = tail;
                let b = [b, &[0; 4]].concat();
                let request = ControlPacket {
                    endpoint: 0x80,
                    request: b[0],
                    requesttype: b[1],
                    status: Status::SUCCESS,
                    value: u16::from_le_bytes([b[2], b[3]]),
                    index: 0,
                    length: 255,
                    data: Vec::new(),
                };
                let _ = disk.control(&request);
            }
        }
    }
});
