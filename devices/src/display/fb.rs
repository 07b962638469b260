//! The memory a display scans out of, as the display models see it.
//!
//! On a running machine the VBE framebuffer is part of the QXL's BAR0, which the
//! VMM also maps into the guest as a KVM memory slot: the guest writes it while
//! the device reads it, so it is reached only through `vm-memory`'s volatile,
//! bounds-checked copies. Unit tests pass a plain byte vector instead.

use vm_memory::VolatileSlice;

pub trait FrameMemory {
    fn size(&self) -> usize;
    /// Copy the bytes at `off` into `buf`; returns how many were in range (the
    /// rest of `buf` is left as it was).
    fn read_at(&self, off: usize, buf: &mut [u8]) -> usize;
    /// Copy `data` to `off`, clipped to the end; returns how many bytes landed.
    fn write_at(&mut self, off: usize, data: &[u8]) -> usize;
    /// Zero `len` bytes from the start, clipped to the end.
    fn clear_prefix(&mut self, len: usize);
}

/// `off..off + len` clipped to a memory of `size` bytes.
fn clip(size: usize, off: usize, len: usize) -> usize {
    size.saturating_sub(off).min(len)
}

impl FrameMemory for [u8] {
    fn size(&self) -> usize {
        self.len()
    }
    fn read_at(&self, off: usize, buf: &mut [u8]) -> usize {
        let n = clip(self.len(), off, buf.len());
        if n > 0 {
            buf[..n].copy_from_slice(&self[off..off + n]);
        }
        n
    }
    fn write_at(&mut self, off: usize, data: &[u8]) -> usize {
        let n = clip(self.len(), off, data.len());
        if n > 0 {
            self[off..off + n].copy_from_slice(&data[..n]);
        }
        n
    }
    fn clear_prefix(&mut self, len: usize) {
        let n = len.min(self.len());
        self[..n].fill(0);
    }
}

impl FrameMemory for Vec<u8> {
    fn size(&self) -> usize {
        self.len()
    }
    fn read_at(&self, off: usize, buf: &mut [u8]) -> usize {
        self.as_slice().read_at(off, buf)
    }
    fn write_at(&mut self, off: usize, data: &[u8]) -> usize {
        self.as_mut_slice().write_at(off, data)
    }
    fn clear_prefix(&mut self, len: usize) {
        self.as_mut_slice().clear_prefix(len)
    }
}

impl<const N: usize> FrameMemory for [u8; N] {
    fn size(&self) -> usize {
        N
    }
    fn read_at(&self, off: usize, buf: &mut [u8]) -> usize {
        self.as_slice().read_at(off, buf)
    }
    fn write_at(&mut self, off: usize, data: &[u8]) -> usize {
        self.as_mut_slice().write_at(off, data)
    }
    fn clear_prefix(&mut self, len: usize) {
        self.as_mut_slice().clear_prefix(len)
    }
}

impl FrameMemory for VolatileSlice<'_, ()> {
    fn size(&self) -> usize {
        self.len()
    }
    fn read_at(&self, off: usize, buf: &mut [u8]) -> usize {
        let n = clip(self.len(), off, buf.len());
        if n == 0 {
            return 0;
        }
        match self.subslice(off, n) {
            Ok(s) => s.copy_to(&mut buf[..n]),
            Err(_) => 0,
        }
    }
    fn write_at(&mut self, off: usize, data: &[u8]) -> usize {
        let n = clip(self.len(), off, data.len());
        if n == 0 {
            return 0;
        }
        match self.subslice(off, n) {
            Ok(s) => {
                s.copy_from(&data[..n]);
                n
            }
            Err(_) => 0,
        }
    }
    fn clear_prefix(&mut self, len: usize) {
        const ZEROS: [u8; 4096] = [0; 4096];
        let len = len.min(self.len());
        let mut off = 0;
        while off < len {
            let n = (len - off).min(ZEROS.len());
            self.write_at(off, &ZEROS[..n]);
            off += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(m: &mut (impl FrameMemory + ?Sized)) {
        assert_eq!(m.write_at(6, &[1, 2, 3, 4]), 2, "clipped at the end");
        let mut b = [9u8; 4];
        assert_eq!(m.read_at(6, &mut b), 2);
        assert_eq!(b, [1, 2, 9, 9]);
        assert_eq!(m.read_at(100, &mut b), 0);
        assert_eq!(m.write_at(usize::MAX, &[1]), 0);
        m.clear_prefix(7);
        assert_eq!(m.read_at(6, &mut b), 2);
        assert_eq!(b[..2], [0, 2]);
    }

    #[test]
    fn vec_and_volatile_behave_alike() {
        let mut v = vec![0u8; 8];
        exercise(&mut v);
        let mut backing = vec![0u8; 8];
        let mut s = VolatileSlice::from(&mut backing[..]);
        exercise(&mut s);
        assert_eq!(backing, v);
    }
}
