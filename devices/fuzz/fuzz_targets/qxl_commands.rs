//! QXL native mode: arbitrary guest memory (drawables, images, chunk chains,
//! palettes, clip lists, surface and cursor commands) behind command and
//! cursor rings, executed by the engine as the worker would: no panic, no
//! access outside the device's memory, every command released or refused.
#![no_main]

use std::sync::Arc;

use devices::display::qxl::{ram_off, QxlCommandEvent, SurfaceCreate};
use devices::display::qxl_engine::{Engine, QxlIrq};
use devices::interrupt::NoIrq;
use devices::pci::{PciConfig, PciInterrupt};
use devices::HostMemory;
use libfuzzer_sys::fuzz_target;

const RAM: usize = 1 << 20;
const HEADER: usize = RAM - 8192;
const BASE: u64 = 0x1000_0000;
const SLOT1: u64 = 1 << 56;

fuzz_target!(|data: &[u8]| {
    let ram = HostMemory::new(RAM).unwrap();
    let vram = HostMemory::new(1 << 16).unwrap();
    let mut config = PciConfig::new(0x1b36, 0x0100, 0x030000, 5);
    let intx = Arc::new(PciInterrupt::new(&mut config, Arc::new(NoIrq)));
    let irq = Arc::new(QxlIrq::new(ram.clone(), HEADER, intx));
    let mut engine = Engine::new(ram.clone(), vram, HEADER, irq);
    let bases = [Some(BASE), Some(BASE + RAM as u64)];
    let add = QxlCommandEvent::MemslotAdd {
        slot: 1,
        start: BASE,
        end: BASE + HEADER as u64,
        is_async: false,
    };
    engine.execute(&add, &bases).unwrap();
    let primary = SurfaceCreate {
        width: 64,
        height: 48,
        stride: 256,
        format: 32,
        flags: 1,
        mem: SLOT1,
        ..SurfaceCreate::default()
    };
    let create = QxlCommandEvent::CreatePrimary {
        surface: primary,
        is_async: false,
    };
    engine.execute(&create, &bases).unwrap();
    // The input is guest memory from offset 0x4000 (past the primary)...
    ram.write(0x4000, &data[..data.len().min(HEADER - 0x4000)]);
    // ... and its first 8-byte words, made into slot-1 addresses, are the rings.
    for (ring, n) in [(ram_off::CMD_RING, 32usize), (ram_off::CURSOR_RING, 32)] {
        let mut pushed = 0u32;
        for (i, w) in data.chunks_exact(8).take(n).enumerate() {
            let raw = u64::from_le_bytes(w.try_into().unwrap());
            let addr = SLOT1 | (0x4000 + (raw & 0xffff));
            let kind = (raw >> 16) as u32 % 6;
            let item = HEADER + ring + 20 + i * 16;
            ram.write(item as u64, &addr.to_le_bytes());
            ram.write_u32(item + 8, if ring == ram_off::CURSOR_RING { 3 } else { kind });
            pushed += 1;
        }
        ram.write_u32(HEADER + ring + 4, pushed);
    }
    engine.process_cmd_ring(usize::MAX);
    engine.process_cursor_ring(usize::MAX);
    let flush = QxlCommandEvent::FlushSurfaces;
    engine.execute(&flush, &bases).unwrap();
    let mut frame = devices::display::Frame::default();
    let mut view = Default::default();
    engine.refresh_primary(&mut frame, &mut view);
});
