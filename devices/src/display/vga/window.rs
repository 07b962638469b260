//! The 0xA0000 window as guest memory in chain-4 mode (mode 13h).
//!
//! With chain-4 on, all four planes enabled in the map mask and the window
//! mapped at 0xA0000 for 64 KiB (GR6 memory map 1), a guest byte at window
//! offset `a` is VGA memory byte `a` of our interleaved layout, for reads and
//! writes alike: chain-4 stores ignore the write mode, set/reset, rotate and
//! bit mask (here as in QEMU's vga.c), and reads do not load the latches. So
//! the window can then be plain memory, as QEMU maps it (its chain-4 alias):
//! the VMM backs it with a KVM slot over `mem` (through [`WindowMapper`]),
//! guest stores no longer exit, and the hypervisor's dirty log says which
//! pages changed.
//!
//! `mem` is a copy of VGA memory's first 64 KiB that is authoritative while
//! mapped: mapping copies VGA memory into it, unmapping (a register write
//! that breaks one of the conditions, VBE on, reset) removes the slot first
//! (no guest store can land after that) and copies it back. In between, the
//! display model copies the pages the guest dirtied into VGA memory
//! ([`Vga::sync_window`]) before it renders, and the rare access that still
//! traps (an instruction the hypervisor emulates) goes to both copies.

use std::sync::Arc;

use tracing::{debug, warn};

use super::{Vga, GR_MISC, PLANE_SIZE, SR04_CHAIN4, SR_MAP_MASK, SR_MEM_MODE};
use crate::display::screen::FbDirty;
use crate::{HostMemory, Result};

/// Bytes of the window that are mapped: 0xA0000–0xAFFFF.
pub const CHAIN4_WINDOW_LEN: usize = PLANE_SIZE;
const PAGE: usize = 4096;
const PAGES: usize = CHAIN4_WINDOW_LEN / PAGE;

/// What the VMM does for the device: put guest memory over the window.
pub trait WindowMapper: Send + Sync {
    /// Back guest-physical 0xA0000–0xAFFFF with `mem` (stores land there
    /// without exits and are logged as dirty pages), or with `None` stop
    /// doing so (accesses trap to the device again). Returns whether the
    /// window is now mapped; a mapping the hypervisor refused keeps trapping.
    fn map_window(&self, mem: Option<&HostMemory>) -> bool;
}

#[derive(Default)]
pub(in crate::display) struct Chain4Window {
    mapper: Option<(Arc<dyn WindowMapper>, HostMemory)>,
    mapped: bool,
    /// The mapper refused (say a BAR sits there): not asked again until the
    /// registers leave and re-enter the mappable state, so a guest writing
    /// its palette does not cost a failed hypervisor call per write.
    refused: bool,
}

impl Vga {
    /// Let the window become guest memory whenever the registers allow it.
    pub fn set_window_mapper(&mut self, mapper: Arc<dyn WindowMapper>) -> Result<()> {
        let mem = HostMemory::new(CHAIN4_WINDOW_LEN)?;
        self.unmap_window();
        self.window.mapper = Some((mapper, mem));
        self.update_window();
        Ok(())
    }

    /// Do the registers make the window plain memory (see the module doc)?
    pub fn chain4_mappable(&self) -> bool {
        !self.vbe.enabled()
            && self.sr[SR_MEM_MODE] & SR04_CHAIN4 != 0
            && self.sr[SR_MAP_MASK] & 0x0f == 0x0f
            && (self.gr[GR_MISC] >> 2) & 3 == 1
    }

    /// Is the window guest memory now (stores do not reach the device)?
    pub fn window_mapped(&self) -> bool {
        self.window.mapped
    }

    /// Map or unmap after anything that may change [`Vga::chain4_mappable`].
    pub(super) fn update_window(&mut self) {
        let want = self.chain4_mappable();
        if !want {
            self.window.refused = false;
        }
        if want == self.window.mapped || (want && self.window.refused) {
            return;
        }
        if want {
            let Some((mapper, mem)) = &self.window.mapper else {
                return;
            };
            mem.slice().copy_from(&self.vram[..CHAIN4_WINDOW_LEN]);
            self.window.mapped = mapper.map_window(Some(mem));
            self.window.refused = !self.window.mapped;
            debug!(mapped = self.window.mapped, "vga: chain-4 window to memory");
        } else {
            self.unmap_window();
        }
    }

    fn unmap_window(&mut self) {
        if !self.window.mapped {
            return;
        }
        self.window.mapped = false;
        if let Some((mapper, mem)) = &self.window.mapper {
            if mapper.map_window(None) {
                warn!("vga: the chain-4 window stayed mapped");
            }
            mem.slice().copy_to(&mut self.vram[..CHAIN4_WINDOW_LEN]);
            debug!("vga: chain-4 window back to trapping");
        }
    }

    /// Bring VGA memory up to date with the guest's stores into the mapped
    /// window: the pages `dirty` names (4 KiB pages of the window), or all
    /// of it. Nothing to do when the window is not mapped.
    pub fn sync_window(&mut self, dirty: &FbDirty) {
        if !self.window.mapped {
            return;
        }
        let Some((_, mem)) = &self.window.mapper else {
            return;
        };
        for page in 0..PAGES {
            let is_dirty = match dirty {
                FbDirty::Unknown => true,
                FbDirty::Pages(words) => words
                    .get(page / 64)
                    .is_some_and(|w| w & (1 << (page % 64)) != 0),
            };
            if is_dirty {
                let range = page * PAGE..(page + 1) * PAGE;
                if let Ok(s) = mem.slice().subslice(range.start, PAGE) {
                    s.copy_to(&mut self.vram[range]);
                }
            }
        }
    }

    /// A read that trapped while the window is mapped (bytes past 64 KiB
    /// are not decoded by memory map 1).
    pub(super) fn mapped_window_read(&self, addr: u64, data: &mut [u8]) {
        let Some((_, mem)) = &self.window.mapper else {
            data.fill(0xff);
            return;
        };
        for (i, b) in data.iter_mut().enumerate() {
            let a = (addr.wrapping_add(i as u64) & 0x1ffff) as usize;
            *b = 0xff;
            if a < CHAIN4_WINDOW_LEN {
                mem.read(a as u64, std::slice::from_mut(b));
            }
        }
    }

    /// A write that trapped while the window is mapped: into the mapping,
    /// and into VGA memory so that the re-render it triggers sees it.
    pub(super) fn mapped_window_write(&mut self, addr: u64, data: &[u8]) {
        let Some((_, mem)) = &self.window.mapper else {
            return;
        };
        for (i, &b) in data.iter().enumerate() {
            let a = (addr.wrapping_add(i as u64) & 0x1ffff) as usize;
            if a < CHAIN4_WINDOW_LEN {
                mem.write(a as u64, &[b]);
                self.vram[a] = b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::tests::{memr, memw, outw_idx};
    use super::*;

    /// Records the calls; refuses to map when `refuse`.
    #[derive(Default)]
    struct FakeMapper {
        calls: Mutex<Vec<bool>>,
        refuse: bool,
    }

    impl WindowMapper for FakeMapper {
        fn map_window(&self, mem: Option<&HostMemory>) -> bool {
            if let Some(m) = mem {
                assert_eq!(m.len(), CHAIN4_WINDOW_LEN);
            }
            self.calls.lock().unwrap().push(mem.is_some());
            mem.is_some() && !self.refuse
        }
    }

    /// Mode 13h's memory set-up: SR2=0F, SR4=0E, GR5=40, GR6=05, GR8=FF.
    fn mode13(vga: &mut Vga) {
        outw_idx(vga, 0x3ce, 8, 0xff);
        outw_idx(vga, 0x3c4, 2, 0x0f);
        outw_idx(vga, 0x3c4, 4, 0x0e);
        outw_idx(vga, 0x3ce, 5, 0x40);
        outw_idx(vga, 0x3ce, 6, 0x05);
    }

    fn with_mapper(refuse: bool) -> (Vga, Arc<FakeMapper>) {
        let mut vga = Vga::new(1 << 20);
        let m = Arc::new(FakeMapper {
            refuse,
            ..Default::default()
        });
        vga.set_window_mapper(m.clone()).unwrap();
        (vga, m)
    }

    fn guest_store(vga: &Vga, a: usize, v: u8) {
        vga.window.mapper.as_ref().unwrap().1.write(a as u64, &[v]);
    }

    #[test]
    fn maps_only_plain_chain4_at_a0000() {
        let mut vga = Vga::new(1 << 20);
        assert!(!vga.chain4_mappable(), "power-on registers");
        mode13(&mut vga);
        assert!(vga.chain4_mappable());
        // Mode X: chain-4 off (SR4=06).
        outw_idx(&mut vga, 0x3c4, 4, 0x06);
        assert!(!vga.chain4_mappable());
        outw_idx(&mut vga, 0x3c4, 4, 0x0e);
        // Some planes masked off: stores to those bytes must be dropped.
        outw_idx(&mut vga, 0x3c4, 2, 0x07);
        assert!(!vga.chain4_mappable());
        outw_idx(&mut vga, 0x3c4, 2, 0x0f);
        // Other memory maps (128 KiB, B0000, B8000 text).
        for map in [0, 2, 3] {
            outw_idx(&mut vga, 0x3ce, 6, 0x01 | map << 2);
            assert!(!vga.chain4_mappable(), "map {map}");
        }
        outw_idx(&mut vga, 0x3ce, 6, 0x05);
        // Write modes and set/reset do not matter to chain-4 stores.
        outw_idx(&mut vga, 0x3ce, 5, 0x42);
        outw_idx(&mut vga, 0x3ce, 1, 0x0f);
        assert!(vga.chain4_mappable());
        // VBE on: the window is a bank of the framebuffer.
        let mut fb = vec![0u8; 1 << 20];
        for (i, v) in [(4u16, 0u16), (3, 8), (1, 320), (2, 200), (4, 0x01)] {
            vga.port_write(0x1ce, &i.to_le_bytes(), &mut fb);
            vga.port_write(0x1cf, &v.to_le_bytes(), &mut fb);
        }
        assert!(!vga.chain4_mappable());
    }

    #[test]
    fn handover_copies_both_ways() {
        let (mut vga, mapper) = with_mapper(false);
        mode13(&mut vga);
        assert!(vga.window_mapped());
        assert_eq!(*mapper.calls.lock().unwrap(), [true]);
        outw_idx(&mut vga, 0x3c4, 4, 0x06); // unchained: back to trapping
        assert!(!vga.window_mapped());
        memw(&mut vga, 0x10, 0x5a); // planar: byte 0x10 of every plane
        assert_eq!(vga.vram[0x40..0x44], [0x5a; 4]);
        // Chained again: the mapping starts as VGA memory was.
        outw_idx(&mut vga, 0x3c4, 4, 0x0e);
        assert!(vga.window_mapped());
        let mem = vga.window.mapper.as_ref().unwrap().1.clone();
        let mut b = [0u8; 4];
        mem.read(0x40, &mut b);
        assert_eq!(b, [0x5a; 4]);
        // The guest stores without exits; the renderer's copy catches up on sync.
        guest_store(&vga, 0x1234, 0x77);
        guest_store(&vga, 0x5000, 0x66);
        assert_eq!(vga.vram[0x1234], 0);
        let mut pages = vec![0u64; 1];
        pages[0] |= 1 << 1; // page 1 only
        vga.sync_window(&FbDirty::Pages(pages));
        assert_eq!(vga.vram[0x1234], 0x77);
        assert_eq!(vga.vram[0x5000], 0, "page 5 not reported dirty");
        vga.sync_window(&FbDirty::Unknown);
        assert_eq!(vga.vram[0x5000], 0x66);
        // A trapped access while mapped sees and updates the mapping.
        guest_store(&vga, 0x20, 0x11);
        assert_eq!(memr(&mut vga, 0x20), 0x11);
        assert_eq!(memr(&mut vga, 0x10020), 0xff, "past 64 KiB");
        memw(&mut vga, 0x21, 0x22);
        mem.read(0x21, &mut b[..1]);
        assert_eq!((b[0], vga.vram[0x21]), (0x22, 0x22));
        // Unmapping copies the guest's last stores back, unreported ones too.
        guest_store(&vga, 0x9000, 0x99);
        outw_idx(&mut vga, 0x3ce, 6, 0x0e);
        assert!(!vga.window_mapped());
        assert_eq!(*mapper.calls.lock().unwrap(), [true, false, true, false]);
        assert_eq!(vga.vram[0x9000], 0x99);
        assert_eq!(vga.vram[0x20], 0x11);
        // A register write that keeps the conditions does not remap.
        outw_idx(&mut vga, 0x3ce, 6, 0x05);
        outw_idx(&mut vga, 0x3d4, 0x0c, 0x12);
        assert_eq!(mapper.calls.lock().unwrap().len(), 5);
        // Reset unmaps and keeps memory.
        guest_store(&vga, 0x30, 0x33);
        vga.reset();
        assert!(!vga.window_mapped());
        assert_eq!(vga.vram[0x30], 0x33);
    }

    #[test]
    fn refused_mapping_keeps_trapping() {
        let (mut vga, mapper) = with_mapper(true);
        mode13(&mut vga);
        assert!(!vga.window_mapped());
        memw(&mut vga, 0x100, 0x42);
        assert_eq!(vga.vram[0x100], 0x42);
        // Not asked again while the mode stays; asked again when re-entered.
        outw_idx(&mut vga, 0x3c4, 2, 0x0f);
        assert_eq!(*mapper.calls.lock().unwrap(), [true]);
        outw_idx(&mut vga, 0x3c4, 4, 0x06);
        outw_idx(&mut vga, 0x3c4, 4, 0x0e);
        assert_eq!(*mapper.calls.lock().unwrap(), [true, true]);
        // Without a mapper nothing maps.
        let mut plain = Vga::new(1 << 20);
        mode13(&mut plain);
        assert!(!plain.window_mapped());
    }

    /// The same random guest (register writes that enter and leave chain-4,
    /// VBE on and off, window stores and loads) on a VGA whose window maps
    /// (stores then bypass the device, as under KVM) and on one that always
    /// traps: every load and, after reset, all of VGA memory agree.
    #[test]
    fn mapped_and_trapped_windows_agree() {
        let (mut mapped, mapper) = with_mapper(false);
        let mut trapped = Vga::new(1 << 20);
        let (mut fb_a, mut fb_b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        let mut next = crate::test_rng::xorshift32(0x9e37_79b9);
        let writes: [(u16, u8, &[u8]); 7] = [
            (0x3c4, 4, &[0x0e, 0x0e, 0x0e, 0x06, 0x02]),
            (0x3c4, 2, &[0x0f, 0x0f, 0x0f, 0x03, 0x05]),
            (0x3ce, 6, &[0x05, 0x05, 0x05, 0x01, 0x0e, 0x09]),
            (0x3ce, 5, &[0x40, 0x00, 0x10, 0x42]),
            (0x3ce, 8, &[0xff, 0x0f]),
            (0x3ce, 1, &[0x00, 0x0f]),
            (0x3ce, 0, &[0x00, 0x05]),
        ];
        let mut maps = 0;
        for round in 0..20_000 {
            match next() % 8 {
                0 => {
                    let (port, index, values) = writes[next() as usize % writes.len()];
                    let v = values[next() as usize % values.len()];
                    outw_idx(&mut mapped, port, index, v);
                    outw_idx(&mut trapped, port, index, v);
                }
                1 if round % 50 == 0 => {
                    // VBE on (320x200x8) or off.
                    let on = next().is_multiple_of(4);
                    let seq: &[(u16, u16)] = if on {
                        &[(4, 0), (3, 8), (1, 320), (2, 200), (4, 1)]
                    } else {
                        &[(4, 0)]
                    };
                    for &(i, v) in seq {
                        for (vga, fb) in [(&mut mapped, &mut fb_a), (&mut trapped, &mut fb_b)] {
                            vga.port_write(0x1ce, &i.to_le_bytes(), fb);
                            vga.port_write(0x1cf, &v.to_le_bytes(), fb);
                        }
                    }
                }
                2..=5 => {
                    let a = u64::from(next()) % 0x20000;
                    let v = next() as u8;
                    if mapped.window_mapped() && a < CHAIN4_WINDOW_LEN as u64 {
                        guest_store(&mapped, a as usize, v);
                        maps += 1;
                    } else {
                        mapped.mem_write(a, &[v], &mut fb_a);
                    }
                    trapped.mem_write(a, &[v], &mut fb_b);
                }
                _ => {
                    let a = u64::from(next()) % 0x20000;
                    let (mut x, mut y) = ([0u8], [0u8]);
                    if mapped.window_mapped() && a < CHAIN4_WINDOW_LEN as u64 {
                        let (_, mem) = mapped.window.mapper.as_ref().unwrap();
                        mem.read(a, &mut x);
                    } else {
                        mapped.mem_read(a, &mut x, &fb_a);
                    }
                    trapped.mem_read(a, &mut y, &fb_b);
                    assert_eq!(x, y, "load at {a:#x}, round {round}");
                }
            }
        }
        let handovers = mapper.calls.lock().unwrap().len();
        assert!(maps > 500, "the window was mapped for {maps} stores only");
        assert!(handovers > 50, "{handovers} maps and unmaps only");
        mapped.reset();
        trapped.reset();
        assert!(mapped.vram == trapped.vram);
        assert!(fb_a == fb_b);
    }
}
