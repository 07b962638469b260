//! Legacy VGA: the register file on ports 0x3B0–0x3DF and the four-plane memory
//! behind the 0xA0000–0xBFFFF window.
//!
//! Plane memory is kept interleaved, byte `(offset << 2) | plane`, the layout QEMU
//! uses: chain-4 (mode 13h) then becomes plain linear access, text cells are
//! `(char, attr)` at `offset * 4`, and the font sits in plane 2 at `+2`. The Bochs
//! VBE registers live here too because enabling VBE rewires the window: it then
//! reaches the embedding device's framebuffer (`fb`) at the selected 64 KiB bank.
//!
//! Every access is decoded for any port, width and offset; nothing here panics on
//! guest input.

use tracing::{debug, trace};

use super::fb::FrameMemory;
use super::vbe::{self, Vbe, VbeEvent};

mod window;
pub use window::{WindowMapper, CHAIN4_WINDOW_LEN};

/// 64 KiB per plane, four planes.
pub const PLANE_SIZE: usize = 0x1_0000;
pub const VGA_MEM_SIZE: usize = 4 * PLANE_SIZE;
/// The legacy memory window, as guest-physical base and length.
pub const WINDOW_BASE: u64 = 0xa_0000;
pub const WINDOW_LEN: u64 = 0x2_0000;
/// The legacy port block (mono CRTC at 0x3B4, colour at 0x3D4).
pub const PORT_BASE: u16 = 0x3b0;
pub const PORT_LEN: u16 = 0x30;

// Register indices whose bits the model acts on.
pub(super) const SR_CLOCK: usize = 1;
pub(super) const SR_MAP_MASK: usize = 2;
pub(super) const SR_CHAR_MAP: usize = 3;
pub(super) const SR_MEM_MODE: usize = 4;
pub(super) const GR_SET_RESET: usize = 0;
pub(super) const GR_ENABLE_SR: usize = 1;
pub(super) const GR_COMPARE: usize = 2;
pub(super) const GR_ROTATE: usize = 3;
pub(super) const GR_READ_MAP: usize = 4;
pub(super) const GR_MODE: usize = 5;
pub(super) const GR_MISC: usize = 6;
pub(super) const GR_DONT_CARE: usize = 7;
pub(super) const GR_BIT_MASK: usize = 8;
pub(super) const AR_MODE: usize = 0x10;
pub(super) const AR_PLANE_ENABLE: usize = 0x12;
pub(super) const AR_COLOR_SELECT: usize = 0x14;
const AR_COUNT: usize = 0x15;

const SR04_CHAIN4: u8 = 0x08;
const GR05_ODD_EVEN: u8 = 0x10;
const GR05_READ_MODE1: u8 = 0x08;
const MISC_COLOR: u8 = 0x01;
const ST01_RETRACE: u8 = 0x09;
const CR11_PROTECT: u8 = 0x80;

/// Writable bits per register, as on the real chip (and QEMU's masks).
const SR_MASK: [u8; 8] = [0x03, 0x3d, 0x0f, 0x3f, 0x0e, 0x00, 0x00, 0xff];
const GR_MASK: [u8; 16] = [
    0x0f, 0x0f, 0x0f, 0x1f, 0x03, 0x7b, 0x0f, 0x0f, 0xff, 0, 0, 0, 0, 0, 0, 0,
];

/// Spread the low 4 bits of `m` over the four plane bytes of a latch word.
fn expand_planes(m: u8) -> u32 {
    (0..4).fold(0, |acc, p| {
        acc | if m & (1 << p) != 0 {
            0xff << (8 * p)
        } else {
            0
        }
    })
}

pub struct Vga {
    pub(super) vram: Vec<u8>,
    latch: u32,
    sr_index: u8,
    pub(super) sr: [u8; 8],
    gr_index: u8,
    pub(super) gr: [u8; 16],
    pub(super) ar_index: u8,
    pub(super) ar: [u8; AR_COUNT],
    ar_flip_flop: bool,
    cr_index: u8,
    pub(super) cr: [u8; 256],
    msr: u8,
    fcr: u8,
    st01: u8,
    dac_state: u8,
    dac_sub_index: u8,
    dac_read_index: u8,
    dac_write_index: u8,
    dac_cache: [u8; 3],
    pel_mask: u8,
    /// 256 × (R, G, B); 6-bit values unless the VBE 8-bit DAC is on.
    pub(super) palette: [u8; 768],
    pub vbe: Vbe,
    /// Bumped by every register or window write: the display model re-renders
    /// and compares when it moves (these writes all arrive as exits, so the
    /// framebuffer's dirty log does not see them).
    generation: u64,
    /// Mode 13h's window as guest memory (`window.rs`).
    window: window::Chain4Window,
}

impl Vga {
    /// `vram_size`: size of the framebuffer the embedding device passes as `fb`.
    pub fn new(vram_size: usize) -> Self {
        let mut vga = Self {
            vram: vec![0; VGA_MEM_SIZE],
            latch: 0,
            sr_index: 0,
            sr: [0; 8],
            gr_index: 0,
            gr: [0; 16],
            ar_index: 0,
            ar: [0; AR_COUNT],
            ar_flip_flop: false,
            cr_index: 0,
            cr: [0; 256],
            msr: 0,
            fcr: 0,
            st01: 0,
            dac_state: 0,
            dac_sub_index: 0,
            dac_read_index: 0,
            dac_write_index: 0,
            dac_cache: [0; 3],
            pel_mask: 0xff,
            palette: [0; 768],
            vbe: Vbe::new(vram_size),
            generation: 0,
            window: window::Chain4Window::default(),
        };
        vga.reset();
        vga
    }

    /// Changes with every write through the VGA/VBE ports or the 0xA0000 window.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Machine reset: registers cleared (the VGA BIOS programs a mode), memory kept.
    pub fn reset(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.latch = 0;
        self.sr_index = 0;
        self.sr = [0; 8];
        self.gr_index = 0;
        self.gr = [0; 16];
        self.ar_index = 0;
        self.ar = [0; AR_COUNT];
        self.ar_flip_flop = false;
        self.cr_index = 0;
        self.cr = [0; 256];
        self.msr = 0;
        self.fcr = 0;
        self.st01 = 0;
        self.dac_state = 0;
        self.dac_sub_index = 0;
        self.dac_read_index = 0;
        self.dac_write_index = 0;
        self.dac_cache = [0; 3];
        self.pel_mask = 0xff;
        self.palette = [0; 768];
        self.vbe.reset();
        self.update_window();
    }

    /// The DAC entry `index` as 6-bit (or 8-bit with the VBE 8-bit DAC) R, G, B.
    pub fn dac_entry(&self, index: u8) -> [u8; 3] {
        let i = usize::from(index) * 3;
        [self.palette[i], self.palette[i + 1], self.palette[i + 2]]
    }

    /// True for ports of the inactive mono/colour block, which the chip ignores.
    fn port_hidden(&self, port: u16) -> bool {
        if self.msr & MISC_COLOR != 0 {
            (0x3b0..=0x3bf).contains(&port)
        } else {
            (0x3d0..=0x3df).contains(&port)
        }
    }

    fn is_vbe_port(port: u16) -> bool {
        (vbe::PORT_INDEX..=vbe::PORT_DATA_ALT).contains(&port)
    }

    /// Port read of any width: VBE ports in 16-bit units, VGA ports byte by byte
    /// (a 16-bit `in` at an index port returns index and data together).
    pub fn port_read(&mut self, port: u16, data: &mut [u8]) {
        if Self::is_vbe_port(port) {
            for (k, chunk) in data.chunks_mut(2).enumerate() {
                let p = port.wrapping_add(2 * k as u16);
                let v = match p {
                    vbe::PORT_INDEX => self.vbe.read_index(),
                    vbe::PORT_DATA | vbe::PORT_DATA_ALT => self.vbe.read_data(),
                    _ => 0xffff,
                };
                let bytes = v.to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            return;
        }
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_byte_port(port.wrapping_add(i as u16));
        }
    }

    /// Port write of any width. `fb` is only touched when a VBE enable clears it.
    pub fn port_write<F: FrameMemory + ?Sized>(&mut self, port: u16, data: &[u8], fb: &mut F) {
        self.port_write_registers(port, data, fb);
        self.update_window();
    }

    fn port_write_registers<F: FrameMemory + ?Sized>(
        &mut self,
        port: u16,
        data: &[u8],
        fb: &mut F,
    ) {
        self.generation = self.generation.wrapping_add(1);
        if Self::is_vbe_port(port) {
            for (k, chunk) in data.chunks(2).enumerate() {
                let p = port.wrapping_add(2 * k as u16);
                let v = u16::from(chunk[0]) | u16::from(chunk.get(1).copied().unwrap_or(0)) << 8;
                match p {
                    vbe::PORT_INDEX => self.vbe.write_index(v),
                    vbe::PORT_DATA | vbe::PORT_DATA_ALT => {
                        let event = self.vbe.write_data(v, fb);
                        if event == Some(VbeEvent::Enabled) {
                            self.enter_vbe_layout();
                        }
                    }
                    _ => {}
                }
            }
            return;
        }
        for (i, &b) in data.iter().enumerate() {
            self.write_byte_port(port.wrapping_add(i as u16), b);
        }
    }

    fn read_byte_port(&mut self, port: u16) -> u8 {
        if !(PORT_BASE..PORT_BASE + PORT_LEN).contains(&port) || self.port_hidden(port) {
            return 0xff;
        }
        let v = match port {
            0x3c0 => {
                if self.ar_flip_flop {
                    0
                } else {
                    self.ar_index
                }
            }
            0x3c1 => self
                .ar
                .get(usize::from(self.ar_index & 0x1f))
                .copied()
                .unwrap_or(0),
            0x3c2 => 0, // input status 0: no switch sense, no interrupt
            0x3c4 => self.sr_index,
            0x3c5 => self.sr[usize::from(self.sr_index & 7)],
            0x3c6 => self.pel_mask,
            0x3c7 => self.dac_state,
            0x3c8 => self.dac_write_index,
            0x3c9 => {
                let i = usize::from(self.dac_read_index) * 3 + usize::from(self.dac_sub_index);
                let v = self.palette[i];
                self.dac_sub_index += 1;
                if self.dac_sub_index == 3 {
                    self.dac_sub_index = 0;
                    self.dac_read_index = self.dac_read_index.wrapping_add(1);
                }
                v
            }
            0x3ca => self.fcr,
            0x3cc => self.msr,
            0x3ce => self.gr_index,
            0x3cf => self.gr[usize::from(self.gr_index & 0xf)],
            0x3b4 | 0x3d4 => self.cr_index,
            0x3b5 | 0x3d5 => self.cr[usize::from(self.cr_index)],
            0x3ba | 0x3da => {
                // No real timing: toggle retrace and display-enable so polling
                // loops always make progress. Reading also resets the AR flip-flop.
                self.st01 ^= ST01_RETRACE;
                self.ar_flip_flop = false;
                self.st01
            }
            _ => 0,
        };
        trace!(port, v, "vga read");
        v
    }

    fn write_byte_port(&mut self, port: u16, v: u8) {
        if !(PORT_BASE..PORT_BASE + PORT_LEN).contains(&port) || self.port_hidden(port) {
            return;
        }
        trace!(port, v, "vga write");
        match port {
            0x3c0 => {
                if !self.ar_flip_flop {
                    self.ar_index = v & 0x3f;
                } else {
                    let i = usize::from(self.ar_index & 0x1f);
                    let masked = match i {
                        0..=0x0f => v & 0x3f,
                        AR_MODE => v & !0x10,
                        0x11 => v,
                        AR_PLANE_ENABLE => v & 0x3f,
                        0x13 | AR_COLOR_SELECT => v & 0x0f,
                        _ => {
                            self.ar_flip_flop = !self.ar_flip_flop;
                            return;
                        }
                    };
                    self.ar[i] = masked;
                }
                self.ar_flip_flop = !self.ar_flip_flop;
            }
            0x3c2 => self.msr = v & !0x10,
            0x3c4 => self.sr_index = v & 7,
            0x3c5 => {
                let i = usize::from(self.sr_index & 7);
                self.sr[i] = v & SR_MASK[i];
            }
            0x3c6 => self.pel_mask = v,
            0x3c7 => {
                self.dac_read_index = v;
                self.dac_sub_index = 0;
                self.dac_state = 3;
            }
            0x3c8 => {
                self.dac_write_index = v;
                self.dac_sub_index = 0;
                self.dac_state = 0;
            }
            0x3c9 => {
                let v = if self.vbe.dac_8bit() { v } else { v & 0x3f };
                self.dac_cache[usize::from(self.dac_sub_index)] = v;
                self.dac_sub_index += 1;
                if self.dac_sub_index == 3 {
                    let i = usize::from(self.dac_write_index) * 3;
                    self.palette[i..i + 3].copy_from_slice(&self.dac_cache);
                    self.dac_sub_index = 0;
                    self.dac_write_index = self.dac_write_index.wrapping_add(1);
                }
            }
            0x3ce => self.gr_index = v & 0x0f,
            0x3cf => {
                let i = usize::from(self.gr_index & 0xf);
                self.gr[i] = v & GR_MASK[i];
            }
            0x3b4 | 0x3d4 => self.cr_index = v,
            0x3b5 | 0x3d5 => self.write_crtc(v),
            0x3ba | 0x3da => self.fcr = v & 0x10,
            _ => debug!(port, v, "vga write to unmodelled port"),
        }
    }

    fn write_crtc(&mut self, v: u8) {
        let i = usize::from(self.cr_index);
        // CR11 bit 7 write-protects CR0–CR7, except the line-compare bit 4 of CR7.
        if self.cr[0x11] & CR11_PROTECT != 0 && i <= 7 {
            if i == 7 {
                self.cr[7] = (self.cr[7] & !0x10) | (v & 0x10);
            }
            return;
        }
        self.cr[i] = v;
    }

    /// QEMU reprograms the VGA side on VBE enable so that reads of the VGA
    /// registers (and a later VBE disable) see a chain-4 graphics layout.
    fn enter_vbe_layout(&mut self) {
        let Some(g) = self.vbe.geometry() else { return };
        self.gr[GR_MISC] = (self.gr[GR_MISC] & !0x0c) | 0x04 | 0x01;
        self.cr[0x17] |= 3;
        self.cr[0x13] = (g.stride >> 3) as u8;
        self.cr[0x01] = ((g.width >> 3).saturating_sub(1)) as u8;
        let h = g.height.saturating_sub(1);
        self.cr[0x12] = h as u8;
        self.cr[0x07] = (self.cr[0x07] & !0x42) | ((h >> 7) & 0x02) as u8 | ((h >> 3) & 0x40) as u8;
        self.cr[0x18] = 0xff;
        self.cr[0x07] |= 0x10;
        self.cr[0x09] = (self.cr[0x09] | 0x40) & !0x9f;
        self.sr[SR_MEM_MODE] |= SR04_CHAIN4;
        self.sr[SR_MAP_MASK] |= 0x0f;
        self.gr[GR_MODE] = (self.gr[GR_MODE] & !0x60) | (2 << 5);
    }

    /// Read from the 0xA0000 window; `addr` is the offset inside it.
    pub fn mem_read<F: FrameMemory + ?Sized>(&mut self, addr: u64, data: &mut [u8], fb: &F) {
        if self.window_mapped() {
            self.mapped_window_read(addr, data);
            return;
        }
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.mem_read_byte(addr.wrapping_add(i as u64), fb);
        }
    }

    /// Write to the 0xA0000 window; `addr` is the offset inside it.
    pub fn mem_write<F: FrameMemory + ?Sized>(&mut self, addr: u64, data: &[u8], fb: &mut F) {
        self.generation = self.generation.wrapping_add(1);
        if self.window_mapped() {
            self.mapped_window_write(addr, data);
            return;
        }
        for (i, &b) in data.iter().enumerate() {
            self.mem_write_byte(addr.wrapping_add(i as u64), b, fb);
        }
    }

    /// Offset into VGA memory for a window offset, per the GR6 memory map, or
    /// `None` when this part of the window is not decoded.
    fn map_window(&self, addr: u64) -> Option<usize> {
        let a = (addr & 0x1ffff) as usize;
        match (self.gr[GR_MISC] >> 2) & 3 {
            0 => Some(a),
            1 => (a < 0x10000).then_some(a),
            2 => (0x10000..0x18000).contains(&a).then(|| a - 0x10000),
            _ => (a >= 0x18000).then(|| a - 0x18000),
        }
    }

    /// With VBE on, the first 64 KiB of the window is a bank of the framebuffer.
    fn vbe_window(&self, addr: u64) -> Option<usize> {
        let a = (addr & 0x1ffff) as usize;
        (a < 0x10000).then(|| self.vbe.bank_offset() as usize + a)
    }

    fn mem_read_byte<F: FrameMemory + ?Sized>(&mut self, addr: u64, fb: &F) -> u8 {
        if self.vbe.enabled() {
            let mut b = [0xff];
            if let Some(o) = self.vbe_window(addr) {
                fb.read_at(o, &mut b);
            }
            return b[0];
        }
        let Some(a) = self.map_window(addr) else {
            return 0xff;
        };
        if self.sr[SR_MEM_MODE] & SR04_CHAIN4 != 0 {
            return self.vram[a & (VGA_MEM_SIZE - 1)];
        }
        if self.gr[GR_MODE] & GR05_ODD_EVEN != 0 {
            // Even addresses hit planes 0/2, odd ones 1/3 (GR4 bit 1 picks the pair).
            let plane = usize::from(self.gr[GR_READ_MAP] & 2) | (a & 1);
            return self.vram[(((a & !1) << 1) | plane) & (VGA_MEM_SIZE - 1)];
        }
        let o = (a & (PLANE_SIZE - 1)) << 2;
        self.latch = u32::from_le_bytes([
            self.vram[o],
            self.vram[o + 1],
            self.vram[o + 2],
            self.vram[o + 3],
        ]);
        if self.gr[GR_MODE] & GR05_READ_MODE1 == 0 {
            (self.latch >> (8 * u32::from(self.gr[GR_READ_MAP] & 3))) as u8
        } else {
            // Colour compare: a 1 where every "care" plane matches the colour.
            let mut diff = (self.latch ^ expand_planes(self.gr[GR_COMPARE]))
                & expand_planes(self.gr[GR_DONT_CARE]);
            diff |= diff >> 16;
            diff |= diff >> 8;
            !(diff as u8)
        }
    }

    fn mem_write_byte<F: FrameMemory + ?Sized>(&mut self, addr: u64, val: u8, fb: &mut F) {
        if self.vbe.enabled() {
            if let Some(o) = self.vbe_window(addr) {
                fb.write_at(o, &[val]);
            }
            return;
        }
        let Some(a) = self.map_window(addr) else {
            return;
        };
        let map_mask = self.sr[SR_MAP_MASK];
        if self.sr[SR_MEM_MODE] & SR04_CHAIN4 != 0 {
            // The low two address bits select the plane.
            if map_mask & (1 << (a & 3)) != 0 {
                self.vram[a & (VGA_MEM_SIZE - 1)] = val;
            }
            return;
        }
        if self.gr[GR_MODE] & GR05_ODD_EVEN != 0 {
            let plane = usize::from(self.gr[GR_READ_MAP] & 2) | (a & 1);
            if map_mask & (1 << plane) != 0 {
                self.vram[(((a & !1) << 1) | plane) & (VGA_MEM_SIZE - 1)] = val;
            }
            return;
        }
        let value = self.latched_write_value(val);
        let o = (a & (PLANE_SIZE - 1)) << 2;
        for p in 0..4 {
            if map_mask & (1 << p) != 0 {
                self.vram[o + p] = (value >> (8 * p)) as u8;
            }
        }
    }

    /// The 32-bit (one byte per plane) value write modes 0–3 produce.
    fn latched_write_value(&self, val: u8) -> u32 {
        let rotate = u32::from(self.gr[GR_ROTATE] & 7);
        let bit_mask;
        let mut value = match self.gr[GR_MODE] & 3 {
            0 => {
                let v = u32::from(val.rotate_right(rotate)) * 0x0101_0101;
                let sr_enable = expand_planes(self.gr[GR_ENABLE_SR]);
                bit_mask = self.gr[GR_BIT_MASK];
                (v & !sr_enable) | (expand_planes(self.gr[GR_SET_RESET]) & sr_enable)
            }
            // Mode 1 copies the latches untouched (screen-to-screen copies).
            1 => return self.latch,
            2 => {
                bit_mask = self.gr[GR_BIT_MASK];
                expand_planes(val)
            }
            _ => {
                bit_mask = self.gr[GR_BIT_MASK] & val.rotate_right(rotate);
                expand_planes(self.gr[GR_SET_RESET])
            }
        };
        value = match self.gr[GR_ROTATE] >> 3 & 3 {
            1 => value & self.latch,
            2 => value | self.latch,
            3 => value ^ self.latch,
            _ => value,
        };
        let bit_mask = u32::from(bit_mask) * 0x0101_0101;
        (value & bit_mask) | (self.latch & !bit_mask)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// What SeaVGABIOS does with `outw(value << 8 | index, port)`.
    pub fn outw_idx(vga: &mut Vga, port: u16, index: u8, value: u8) {
        vga.port_write(port, &[index, value], &mut []);
    }

    pub fn outb(vga: &mut Vga, port: u16, value: u8) {
        vga.port_write(port, &[value], &mut []);
    }

    pub fn inb(vga: &mut Vga, port: u16) -> u8 {
        let mut b = [0];
        vga.port_read(port, &mut b);
        b[0]
    }

    /// stdvga_attr_write: reset the flip-flop, index, data, restore the index.
    pub fn attr_write(vga: &mut Vga, index: u8, value: u8) {
        inb(vga, 0x3da);
        let orig = inb(vga, 0x3c0);
        outb(vga, 0x3c0, index);
        outb(vga, 0x3c0, value);
        outb(vga, 0x3c0, orig);
    }

    pub fn memw(vga: &mut Vga, addr: u64, v: u8) {
        vga.mem_write(addr, &[v], &mut Vec::new());
    }

    pub fn memr(vga: &mut Vga, addr: u64) -> u8 {
        let mut b = [0];
        vga.mem_read(addr, &mut b, &Vec::new());
        b[0]
    }

    #[test]
    fn attribute_flip_flop_and_status_toggle() {
        let mut vga = Vga::new(1 << 20);
        outb(&mut vga, 0x3c2, 0x67);
        let s1 = inb(&mut vga, 0x3da);
        let s2 = inb(&mut vga, 0x3da);
        assert_eq!(s1 ^ s2, ST01_RETRACE);
        outb(&mut vga, 0x3c0, 0x01);
        outb(&mut vga, 0x3c0, 0xff);
        assert_eq!(inb(&mut vga, 0x3c1), 0x3f);
        // Flip-flop is back on "index": this write is an index.
        outb(&mut vga, 0x3c0, 0x30);
        assert_eq!(inb(&mut vga, 0x3c0), 0); // in data phase, reads 0
        inb(&mut vga, 0x3da);
        assert_eq!(inb(&mut vga, 0x3c0), 0x30);
        attr_write(&mut vga, 0x10, 0x0c);
        inb(&mut vga, 0x3da);
        outb(&mut vga, 0x3c0, 0x10);
        assert_eq!(inb(&mut vga, 0x3c1), 0x0c);
    }

    #[test]
    fn crtc_mono_colour_and_protection() {
        let mut vga = Vga::new(1 << 20);
        // Misc bit 0 clear: CRTC at 0x3B4, 0x3D4 ignored.
        outw_idx(&mut vga, 0x3b4, 0x0e, 0x12);
        outw_idx(&mut vga, 0x3d4, 0x0e, 0x34);
        outb(&mut vga, 0x3b4, 0x0e);
        assert_eq!(inb(&mut vga, 0x3b5), 0x12);
        assert_eq!(inb(&mut vga, 0x3d5), 0xff);
        outb(&mut vga, 0x3c2, 0x67);
        assert_eq!(inb(&mut vga, 0x3cc), 0x67);
        outw_idx(&mut vga, 0x3d4, 0x11, 0x80);
        outw_idx(&mut vga, 0x3d4, 0x01, 0x4f);
        outw_idx(&mut vga, 0x3d4, 0x07, 0xff);
        outb(&mut vga, 0x3d4, 0x01);
        assert_eq!(inb(&mut vga, 0x3d5), 0);
        outb(&mut vga, 0x3d4, 0x07);
        assert_eq!(inb(&mut vga, 0x3d5), 0x10);
        assert_eq!(inb(&mut vga, 0x3b5), 0xff);
    }

    #[test]
    fn dac_write_and_read_back() {
        let mut vga = Vga::new(1 << 20);
        outb(&mut vga, 0x3c8, 0x10);
        for v in [0x3f, 0x20, 0x01, 0xff, 0x00, 0x2a] {
            outb(&mut vga, 0x3c9, v);
        }
        assert_eq!(inb(&mut vga, 0x3c8), 0x12);
        assert_eq!(inb(&mut vga, 0x3c7), 0);
        outb(&mut vga, 0x3c7, 0x10);
        assert_eq!(inb(&mut vga, 0x3c7), 3);
        let got: Vec<u8> = (0..6).map(|_| inb(&mut vga, 0x3c9)).collect();
        assert_eq!(got, [0x3f, 0x20, 0x01, 0x3f, 0x00, 0x2a]);
        assert_eq!(vga.dac_entry(0x11), [0x3f, 0, 0x2a]);
        outb(&mut vga, 0x3c6, 0xf0);
        assert_eq!(inb(&mut vga, 0x3c6), 0xf0);
    }

    /// Planar (mode 12h style) memory set-up: GR5=0, GR6=5, SR4=6.
    fn planar() -> Vga {
        let mut vga = Vga::new(1 << 20);
        outb(&mut vga, 0x3c2, 0xe3);
        outw_idx(&mut vga, 0x3c4, 4, 0x06);
        outw_idx(&mut vga, 0x3c4, 2, 0x0f);
        outw_idx(&mut vga, 0x3ce, 5, 0x00);
        outw_idx(&mut vga, 0x3ce, 6, 0x05);
        outw_idx(&mut vga, 0x3ce, 8, 0xff);
        vga
    }

    fn planes_at(vga: &Vga, off: usize) -> [u8; 4] {
        let o = off << 2;
        [
            vga.vram[o],
            vga.vram[o + 1],
            vga.vram[o + 2],
            vga.vram[o + 3],
        ]
    }

    #[test]
    fn write_mode_0_set_reset_rotate_function_and_masks() {
        let mut vga = planar();
        memw(&mut vga, 0, 0xa5);
        assert_eq!(planes_at(&vga, 0), [0xa5; 4]);
        // Map mask: only planes 0 and 2.
        outw_idx(&mut vga, 0x3c4, 2, 0x05);
        memw(&mut vga, 1, 0x3c);
        assert_eq!(planes_at(&vga, 1), [0x3c, 0, 0x3c, 0]);
        outw_idx(&mut vga, 0x3c4, 2, 0x0f);
        // Enable set/reset on planes 1 and 3 with value 0b0010.
        outw_idx(&mut vga, 0x3ce, 0, 0x02);
        outw_idx(&mut vga, 0x3ce, 1, 0x0a);
        memw(&mut vga, 2, 0x81);
        assert_eq!(planes_at(&vga, 2), [0x81, 0xff, 0x81, 0x00]);
        outw_idx(&mut vga, 0x3ce, 1, 0x00);
        // Rotate by 4, XOR with latches, bit mask 0xf0.
        memr(&mut vga, 0); // latch = a5 a5 a5 a5
        outw_idx(&mut vga, 0x3ce, 3, 0x18 | 4);
        outw_idx(&mut vga, 0x3ce, 8, 0xf0);
        memw(&mut vga, 0, 0x0f); // rotated → 0xf0; xor a5 → 0x55; masked high nibble
        assert_eq!(planes_at(&vga, 0), [0x55; 4]);
    }

    #[test]
    fn write_modes_1_2_3_and_read_modes() {
        let mut vga = planar();
        outw_idx(&mut vga, 0x3ce, 0, 0x0c);
        outw_idx(&mut vga, 0x3ce, 1, 0x0f);
        memw(&mut vga, 10, 0); // all planes via set/reset → 00 00 ff ff
        outw_idx(&mut vga, 0x3ce, 1, 0x00);
        assert_eq!(planes_at(&vga, 10), [0, 0, 0xff, 0xff]);
        // Mode 1: latch copy.
        memr(&mut vga, 10);
        outw_idx(&mut vga, 0x3ce, 5, 0x01);
        memw(&mut vga, 20, 0x77);
        assert_eq!(planes_at(&vga, 20), [0, 0, 0xff, 0xff]);
        // Mode 2: colour 0b0101 through bit mask 0x0f, rest from latch (offset 20).
        outw_idx(&mut vga, 0x3ce, 5, 0x02);
        outw_idx(&mut vga, 0x3ce, 8, 0x0f);
        memr(&mut vga, 20);
        memw(&mut vga, 20, 0x05);
        assert_eq!(planes_at(&vga, 20), [0x0f, 0x00, 0xff, 0xf0]);
        // Mode 3: set/reset colour, bit mask ANDed with rotated data.
        outw_idx(&mut vga, 0x3ce, 5, 0x03);
        outw_idx(&mut vga, 0x3ce, 8, 0xff);
        outw_idx(&mut vga, 0x3ce, 0, 0x09);
        memr(&mut vga, 30);
        memw(&mut vga, 30, 0x3c);
        assert_eq!(planes_at(&vga, 30), [0x3c, 0, 0, 0x3c]);
        // Read mode 0 picks plane GR4; read mode 1 compares colours.
        outw_idx(&mut vga, 0x3ce, 5, 0x00);
        outw_idx(&mut vga, 0x3ce, 4, 3);
        assert_eq!(memr(&mut vga, 30), 0x3c);
        outw_idx(&mut vga, 0x3ce, 5, 0x08);
        outw_idx(&mut vga, 0x3ce, 2, 0x09);
        outw_idx(&mut vga, 0x3ce, 7, 0x0f);
        assert_eq!(memr(&mut vga, 30), 0x3c);
        outw_idx(&mut vga, 0x3ce, 7, 0x00); // nothing cares: all match
        assert_eq!(memr(&mut vga, 30), 0xff);
    }

    #[test]
    fn chain4_odd_even_and_memory_map() {
        let mut vga = Vga::new(1 << 20);
        outw_idx(&mut vga, 0x3c4, 2, 0x0f);
        outw_idx(&mut vga, 0x3c4, 4, 0x0e); // chain-4
        outw_idx(&mut vga, 0x3ce, 6, 0x05); // A0000, 64 KiB
        memw(&mut vga, 0x1234, 0x42);
        assert_eq!(vga.vram[0x1234], 0x42);
        assert_eq!(memr(&mut vga, 0x1234), 0x42);
        assert_eq!(memr(&mut vga, 0x11234), 0xff, "outside the 64 KiB map");
        // Odd/even text layout at B8000.
        outw_idx(&mut vga, 0x3c4, 2, 0x03);
        outw_idx(&mut vga, 0x3c4, 4, 0x02);
        outw_idx(&mut vga, 0x3ce, 5, 0x10);
        outw_idx(&mut vga, 0x3ce, 6, 0x0e);
        memw(&mut vga, 0x18002, b'x');
        memw(&mut vga, 0x18003, 0x07);
        assert_eq!(&vga.vram[4..6], &[b'x', 0x07]);
        assert_eq!(memr(&mut vga, 0x18003), 0x07);
        memw(&mut vga, 0x0000, 0x99); // A0000 is not mapped now
        assert_eq!(vga.vram[0], 0);
    }

    #[test]
    fn vbe_banked_window_reaches_fb() {
        let mut vga = Vga::new(1 << 20);
        let mut fb = vec![0u8; 1 << 20];
        for (i, v) in [(4u16, 0u16), (3, 8), (1, 640), (2, 480), (4, 0x01)] {
            vga.port_write(0x1ce, &i.to_le_bytes(), &mut fb);
            vga.port_write(0x1cf, &v.to_le_bytes(), &mut fb);
        }
        vga.port_write(0x1ce, &5u16.to_le_bytes(), &mut fb);
        vga.port_write(0x1cf, &2u16.to_le_bytes(), &mut fb);
        vga.mem_write(0x10, &[1, 2, 3], &mut fb);
        assert_eq!(&fb[0x20010..0x20013], &[1, 2, 3]);
        let mut r = [0u8; 2];
        vga.mem_read(0x11, &mut r, &fb);
        assert_eq!(r, [2, 3]);
        assert_eq!(
            vga.gr[GR_MISC] & 0x0d,
            0x05,
            "VBE enable selects graphics + map 1"
        );
        let mut w = [0u8; 2];
        vga.port_write(0x1ce, &0u16.to_le_bytes(), &mut fb);
        vga.port_read(0x1cf, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0xb0c5);
    }

    #[test]
    fn hostile_sweep_never_panics() {
        let mut vga = Vga::new(1 << 20);
        let mut fb = vec![0u8; 4096];
        let mut next = crate::test_rng::xorshift32(0x1234_5678);
        let ports: Vec<u16> = (0x3b0..0x3e0)
            .chain(0x1cc..0x1d2)
            .chain([0, 0xffff])
            .collect();
        for round in 0..20_000 {
            let port = ports[next() as usize % ports.len()];
            let width = [1usize, 2, 3, 4, 8][next() as usize % 5];
            let bytes: Vec<u8> = (0..width).map(|_| next() as u8).collect();
            vga.port_write(port, &bytes, &mut fb);
            let mut out = vec![0u8; width];
            vga.port_read(port, &mut out);
            let addr = match round % 3 {
                0 => u64::from(next()) % 0x20000,
                1 => u64::from(next()),
                _ => u64::MAX - u64::from(next() % 8),
            };
            vga.mem_write(addr, &bytes, &mut fb);
            vga.mem_read(addr, &mut out, &fb);
            if round % 500 == 0 {
                let _ = super::super::render::render(&vga, &fb, round % 1000 == 0);
            }
        }
    }
}
