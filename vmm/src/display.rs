//! Wiring of the QXL VGA device's legacy side: its VGA/VBE ports and the
//! 0xA0000 window are fixed ISA addresses, not BARs, so they sit on the buses.

use std::sync::{Arc, Mutex};

use devices::display::qxl::Qxl;
use devices::BusDevice;

/// VGA (0x3B0–0x3DF) and Bochs VBE (0x1CE–0x1D0) ports of the QXL device.
pub struct VgaPorts(pub Arc<Mutex<Qxl>>);

impl BusDevice for VgaPorts {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = (base + offset) as u16;
        self.0.lock().unwrap().vga_port_read(port, data);
    }
    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let port = (base + offset) as u16;
        self.0.lock().unwrap().vga_port_write(port, data);
    }
}

/// The legacy VGA memory window at 0xA0000–0xBFFFF.
pub struct VgaWindow(pub Arc<Mutex<Qxl>>);

impl BusDevice for VgaWindow {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        self.0.lock().unwrap().vga_mem_read(offset, data);
    }
    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.0.lock().unwrap().vga_mem_write(offset, data);
    }
}
