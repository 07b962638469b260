//! Entry points of the QXL cargo-fuzz targets (fuzz/fuzz_targets/qxl_*.rs):
//! the fuzzer's bytes are the guest memory every QXLPHYSICAL points into
//! (the slot bits ignored), the command is at offset 0, and what parses is
//! also drawn on a small canvas, so the renderers see hostile drawables too.

use super::qxl_canvas::Canvas;
use super::qxl_draw::draw_drawable;
use super::qxl_mem::{MemError, QxlMemory, ADDRESS_BITS};
use super::qxl_parse;

/// Guest memory made of the fuzzer's input.
struct FlatMemory<'a>(&'a [u8]);

impl QxlMemory for FlatMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off =
            usize::try_from(addr & ((1 << ADDRESS_BITS) - 1)).map_err(|_| MemError::Overflow)?;
        let src = off
            .checked_add(buf.len())
            .and_then(|end| self.0.get(off..end))
            .ok_or(MemError::OutOfSlot {
                addr,
                len: buf.len(),
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&self, _addr: u64, _data: &[u8]) -> Result<(), MemError> {
        Ok(())
    }
}

/// Parse a QXLDrawable at offset 0 and draw it on a 64x48 canvas.
pub fn drawable(data: &[u8]) {
    let mem = FlatMemory(data);
    if let Ok(d) = qxl_parse::parse_drawable(&mem, 0) {
        if let Some(mut c) = Canvas::new(64, 48) {
            draw_drawable(&mut c, &d);
        }
    }
}

/// Parse a QXLCursorCmd and a QXLSurfaceCmd at offset 0.
pub fn commands(data: &[u8]) {
    let mem = FlatMemory(data);
    let _ = qxl_parse::parse_cursor_cmd(&mem, 0);
    let _ = qxl_parse::parse_surface_cmd(&mem, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_points_take_any_bytes() {
        // A FILL of the whole canvas and a few structured-but-wrong inputs.
        let mut d = vec![0u8; 300];
        d[13] = 1;
        d[39..43].copy_from_slice(&48i32.to_le_bytes());
        d[43..47].copy_from_slice(&64i32.to_le_bytes());
        d[123] = 1;
        drawable(&d);
        for kind in 0..16u8 {
            d[13] = kind;
            drawable(&d);
            d[123..].fill(0xff);
            drawable(&d);
            d[123..].fill(0);
        }
        drawable(&[]);
        commands(&[3; 64]);
    }

    /// A poor man's fuzz run for every `cargo test`: drawables of each
    /// type whose union and the memory after it are pointers into
    /// themselves, mutated at random.
    #[test]
    fn mutated_drawables_never_panic() {
        let mut next = crate::test_rng::xorshift64(0x9e37_79b9_7f4a_7c15);
        for round in 0..4000 {
            let mut d = vec![0u8; 512];
            d[13] = (round % 15) as u8;
            d[39..43].copy_from_slice(&48i32.to_le_bytes());
            d[43..47].copy_from_slice(&64i32.to_le_bytes());
            // Fill the rest with small offsets into the buffer and counts.
            for k in (123..508).step_by(4) {
                let v = (next() % 512) as u32;
                d[k..k + 4].copy_from_slice(&v.to_le_bytes());
            }
            for _ in 0..(next() % 16) {
                let i = (next() % 512) as usize;
                d[i] = next() as u8;
            }
            drawable(&d);
            commands(&d);
        }
    }
}
