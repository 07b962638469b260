//! Bochs VBE "DISPI" interface: ports 0x1CE (index) and 0x1CF (data), 16-bit.
//!
//! SeaVGABIOS (`bochsvga.c`), GRUB and Linux vesafb set linear framebuffer modes
//! through it. The framebuffer itself belongs to the embedding device (QXL BAR0);
//! this model only keeps the registers and derives the scanout geometry, clamping
//! every write to what fits in `vram_size` the way QEMU does, since the interface
//! has no way to report an error to the guest.

use tracing::debug;

use super::fb::FrameMemory;

pub const PORT_INDEX: u16 = 0x1ce;
pub const PORT_DATA: u16 = 0x1cf;
/// QEMU also decodes 0x1D0 as data (what a split 32-bit access lands on).
pub const PORT_DATA_ALT: u16 = 0x1d0;

pub const INDEX_ID: u16 = 0;
pub const INDEX_XRES: u16 = 1;
pub const INDEX_YRES: u16 = 2;
pub const INDEX_BPP: u16 = 3;
pub const INDEX_ENABLE: u16 = 4;
pub const INDEX_BANK: u16 = 5;
pub const INDEX_VIRT_WIDTH: u16 = 6;
pub const INDEX_VIRT_HEIGHT: u16 = 7;
pub const INDEX_X_OFFSET: u16 = 8;
pub const INDEX_Y_OFFSET: u16 = 9;
pub const INDEX_VIDEO_MEMORY_64K: u16 = 10;
const NUM_REGS: usize = 10;

pub const ID0: u16 = 0xb0c0;
/// The newest interface version; what QEMU reports after reset.
pub const ID5: u16 = 0xb0c5;

pub const ENABLED: u16 = 0x01;
pub const GETCAPS: u16 = 0x02;
pub const DAC_8BIT: u16 = 0x20;
pub const LFB_ENABLED: u16 = 0x40;
pub const NOCLEARMEM: u16 = 0x80;

pub const MAX_XRES: u16 = 2560;
pub const MAX_YRES: u16 = 1600;
pub const MAX_BPP: u16 = 32;

/// Scanout geometry of an enabled VBE mode, all in bytes of the framebuffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VbeGeometry {
    pub width: u32,
    pub height: u32,
    /// 8, 15, 16, 24 or 32.
    pub bpp: u32,
    /// Bytes per scanline (virtual width × bytes per pixel).
    pub stride: u32,
    /// Byte offset of the visible top-left pixel (X/Y offset panning).
    pub offset: u32,
}

/// What a data write asks of the VGA core around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VbeEvent {
    /// ENABLED went 0 → 1: the VGA registers switch to a chain-4 graphics layout.
    Enabled,
}

pub struct Vbe {
    index: u16,
    regs: [u16; NUM_REGS],
    vram_size: u32,
    stride: u32,
    offset: u32,
}

impl Vbe {
    /// `vram_size` is the framebuffer the embedding device exposes (e.g. 16 MiB);
    /// it is rounded down to 64 KiB, the unit of VIDEO_MEMORY_64K and banks.
    pub fn new(vram_size: usize) -> Self {
        let vram_size = u32::try_from(vram_size).unwrap_or(u32::MAX) & !0xffff;
        let mut vbe = Self {
            index: 0,
            regs: [0; NUM_REGS],
            vram_size: vram_size.max(0x10000),
            stride: 0,
            offset: 0,
        };
        vbe.reset();
        vbe
    }

    pub fn reset(&mut self) {
        self.index = 0;
        self.regs = [0; NUM_REGS];
        self.regs[INDEX_ID as usize] = ID5;
        self.stride = 0;
        self.offset = 0;
    }

    fn reg(&self, index: u16) -> u16 {
        self.regs.get(usize::from(index)).copied().unwrap_or(0)
    }

    pub fn enabled(&self) -> bool {
        self.reg(INDEX_ENABLE) & ENABLED != 0
    }

    pub fn lfb_enabled(&self) -> bool {
        self.reg(INDEX_ENABLE) & LFB_ENABLED != 0
    }

    pub fn dac_8bit(&self) -> bool {
        self.reg(INDEX_ENABLE) & DAC_8BIT != 0
    }

    /// Where the 64 KiB window at 0xA0000 starts in the framebuffer.
    pub fn bank_offset(&self) -> u32 {
        u32::from(self.reg(INDEX_BANK)) << 16
    }

    /// Geometry of the enabled mode, `None` while VBE is off.
    pub fn geometry(&self) -> Option<VbeGeometry> {
        if !self.enabled() {
            return None;
        }
        Some(VbeGeometry {
            width: self.reg(INDEX_XRES).into(),
            height: self.reg(INDEX_YRES).into(),
            bpp: self.reg(INDEX_BPP).into(),
            stride: self.stride,
            offset: self.offset,
        })
    }

    pub fn read_index(&self) -> u16 {
        self.index
    }

    pub fn write_index(&mut self, value: u16) {
        self.index = value;
    }

    pub fn read_data(&self) -> u16 {
        let getcaps = self.reg(INDEX_ENABLE) & GETCAPS != 0;
        match self.index {
            INDEX_XRES if getcaps => MAX_XRES,
            INDEX_YRES if getcaps => MAX_YRES,
            INDEX_BPP if getcaps => MAX_BPP,
            INDEX_VIDEO_MEMORY_64K => u16::try_from(self.vram_size >> 16).unwrap_or(u16::MAX),
            i => self.reg(i),
        }
    }

    /// A data-port write. `fb` is cleared on enable unless NOCLEARMEM is set.
    pub fn write_data<F: FrameMemory + ?Sized>(
        &mut self,
        value: u16,
        fb: &mut F,
    ) -> Option<VbeEvent> {
        debug!(index = self.index, value, "vbe write");
        let i = usize::from(self.index);
        match self.index {
            // Only known interface versions are accepted (the probe handshake).
            INDEX_ID if (ID0..=ID5).contains(&value) => self.regs[i] = value,
            INDEX_XRES | INDEX_YRES | INDEX_BPP | INDEX_VIRT_WIDTH | INDEX_X_OFFSET
            | INDEX_Y_OFFSET => {
                self.regs[i] = value;
                self.fixup();
            }
            INDEX_BANK => {
                let banks = (self.vram_size >> 16).max(1);
                let mask = u16::try_from(banks - 1).unwrap_or(u16::MAX);
                self.regs[i] = value & mask;
            }
            INDEX_ENABLE => {
                let newly = value & ENABLED != 0 && !self.enabled();
                if newly {
                    // Enabling starts from an unpanned screen as wide as the mode.
                    self.regs[INDEX_VIRT_WIDTH as usize] = 0;
                    self.regs[INDEX_X_OFFSET as usize] = 0;
                    self.regs[INDEX_Y_OFFSET as usize] = 0;
                    self.regs[i] = value;
                    self.fixup();
                    if value & NOCLEARMEM == 0 {
                        let len = (u64::from(self.reg(INDEX_YRES)) * u64::from(self.stride))
                            .min(fb.size() as u64) as usize;
                        fb.clear_prefix(len);
                    }
                } else if value & ENABLED == 0 {
                    self.regs[INDEX_BANK as usize] = 0;
                }
                self.regs[i] = value;
                return newly.then_some(VbeEvent::Enabled);
            }
            _ => {}
        }
        None
    }

    /// Clamp the mode registers to what the framebuffer can hold, as QEMU's
    /// `vbe_fixup_regs` does, then recompute stride and scanout offset.
    fn fixup(&mut self) {
        if !self.enabled() {
            return;
        }
        let r = &mut self.regs;
        let bits: u32 = match r[INDEX_BPP as usize] {
            8 => 8,
            15 | 16 => 16,
            24 => 24,
            32 => 32,
            _ => {
                r[INDEX_BPP as usize] = 8;
                8
            }
        };
        let xres = &mut r[INDEX_XRES as usize];
        *xres = (*xres & !7).clamp(8, MAX_XRES);
        let xres = *xres;
        let vw = &mut r[INDEX_VIRT_WIDTH as usize];
        *vw = (*vw & !7).min(MAX_XRES).max(xres);
        let stride = u32::from(*vw) * bits / 8;
        let max_y = self.vram_size / stride;
        let yres = &mut r[INDEX_YRES as usize];
        *yres = (*yres).clamp(1, MAX_YRES);
        if u32::from(*yres) > max_y {
            *yres = u16::try_from(max_y).unwrap_or(MAX_YRES);
        }
        let yres = u32::from(*yres);
        let xo = &mut r[INDEX_X_OFFSET as usize];
        *xo = (*xo).min(MAX_XRES);
        let yo = &mut r[INDEX_Y_OFFSET as usize];
        *yo = (*yo).min(MAX_YRES);
        // Pan only as far as the framebuffer reaches: drop Y, then X, if needed.
        let bytes_pp = bits / 8;
        let visible = yres * stride;
        let mut offset = u32::from(r[INDEX_X_OFFSET as usize]) * bytes_pp
            + u32::from(r[INDEX_Y_OFFSET as usize]) * stride;
        if u64::from(offset) + u64::from(visible) > u64::from(self.vram_size) {
            r[INDEX_Y_OFFSET as usize] = 0;
            offset = u32::from(r[INDEX_X_OFFSET as usize]) * bytes_pp;
            if u64::from(offset) + u64::from(visible) > u64::from(self.vram_size) {
                r[INDEX_X_OFFSET as usize] = 0;
                offset = 0;
            }
        }
        r[INDEX_VIRT_HEIGHT as usize] = u16::try_from(max_y).unwrap_or(u16::MAX);
        self.stride = stride;
        self.offset = offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: usize = 16 << 20;

    fn set(vbe: &mut Vbe, fb: &mut [u8], index: u16, value: u16) {
        vbe.write_index(index);
        vbe.write_data(value, fb);
    }

    fn get(vbe: &mut Vbe, index: u16) -> u16 {
        vbe.write_index(index);
        vbe.read_data()
    }

    #[test]
    fn id_handshake() {
        let mut vbe = Vbe::new(MIB16);
        let mut fb = [];
        assert_eq!(get(&mut vbe, INDEX_ID), ID5);
        set(&mut vbe, &mut fb, INDEX_ID, ID0);
        assert_eq!(get(&mut vbe, INDEX_ID), ID0);
        set(&mut vbe, &mut fb, INDEX_ID, 0x1234);
        assert_eq!(get(&mut vbe, INDEX_ID), ID0);
        set(&mut vbe, &mut fb, INDEX_ID, ID5);
        assert_eq!(get(&mut vbe, INDEX_ID), ID5);
        assert_eq!(get(&mut vbe, INDEX_VIDEO_MEMORY_64K), 256);
    }

    #[test]
    fn getcaps_reports_maxima() {
        let mut vbe = Vbe::new(MIB16);
        let mut fb = [];
        set(&mut vbe, &mut fb, INDEX_XRES, 640);
        set(&mut vbe, &mut fb, INDEX_ENABLE, GETCAPS);
        assert_eq!(get(&mut vbe, INDEX_XRES), MAX_XRES);
        assert_eq!(get(&mut vbe, INDEX_YRES), MAX_YRES);
        assert_eq!(get(&mut vbe, INDEX_BPP), MAX_BPP);
        set(&mut vbe, &mut fb, INDEX_ENABLE, 0);
        assert_eq!(get(&mut vbe, INDEX_XRES), 640);
    }

    #[test]
    fn mode_1024x768x32_with_panning() {
        let mut vbe = Vbe::new(MIB16);
        let mut fb = vec![0xaau8; MIB16];
        // bochsvga_set_mode: disable, set geometry, enable with LFB.
        set(&mut vbe, &mut fb, INDEX_ENABLE, 0);
        set(&mut vbe, &mut fb, INDEX_BPP, 32);
        set(&mut vbe, &mut fb, INDEX_XRES, 1024);
        set(&mut vbe, &mut fb, INDEX_YRES, 768);
        set(&mut vbe, &mut fb, INDEX_BANK, 0);
        set(&mut vbe, &mut fb, INDEX_ENABLE, ENABLED | LFB_ENABLED);
        let g = vbe.geometry().unwrap();
        assert_eq!(
            (g.width, g.height, g.bpp, g.stride, g.offset),
            (1024, 768, 32, 4096, 0)
        );
        assert!(vbe.lfb_enabled());
        assert!(fb[..4096 * 768].iter().all(|&b| b == 0), "enable clears");
        assert_eq!(fb[4096 * 768], 0xaa);
        assert_eq!(get(&mut vbe, INDEX_VIRT_WIDTH), 1024);
        assert_eq!(get(&mut vbe, INDEX_VIRT_HEIGHT), 4096);

        set(&mut vbe, &mut fb, INDEX_VIRT_WIDTH, 2048);
        set(&mut vbe, &mut fb, INDEX_X_OFFSET, 16);
        set(&mut vbe, &mut fb, INDEX_Y_OFFSET, 100);
        let g = vbe.geometry().unwrap();
        assert_eq!(g.stride, 8192);
        assert_eq!(g.offset, 100 * 8192 + 16 * 4);
        assert_eq!(get(&mut vbe, INDEX_VIRT_HEIGHT), 2048);

        // A Y offset that would run past VRAM is dropped.
        set(&mut vbe, &mut fb, INDEX_Y_OFFSET, 1500);
        assert_eq!(get(&mut vbe, INDEX_Y_OFFSET), 0);
        assert_eq!(vbe.geometry().unwrap().offset, 16 * 4);
    }

    #[test]
    fn clamps_to_vram_and_limits() {
        let mut vbe = Vbe::new(4 << 20);
        let mut fb = vec![0u8; 4 << 20];
        set(&mut vbe, &mut fb, INDEX_BPP, 7);
        set(&mut vbe, &mut fb, INDEX_XRES, 9999);
        set(&mut vbe, &mut fb, INDEX_YRES, 9999);
        set(&mut vbe, &mut fb, INDEX_ENABLE, ENABLED | NOCLEARMEM);
        assert_eq!(get(&mut vbe, INDEX_BPP), 8);
        assert_eq!(get(&mut vbe, INDEX_XRES), MAX_XRES);
        assert_eq!(get(&mut vbe, INDEX_YRES), MAX_YRES);
        set(&mut vbe, &mut fb, INDEX_BPP, 32);
        // 2560 * 4 bytes per line in 4 MiB: 409 lines at most.
        assert_eq!(get(&mut vbe, INDEX_YRES), 409);
        set(&mut vbe, &mut fb, INDEX_BANK, 0xffff);
        assert_eq!(get(&mut vbe, INDEX_BANK), 63);
        assert_eq!(vbe.bank_offset(), 63 << 16);
    }
}
