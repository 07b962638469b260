//! Reading a rendered VGA text screen (9x16 cells) back as characters, by
//! matching each cell against the 8x16 font that the VGA BIOS loads. The font
//! is taken from the very ROM the guest runs (`vgabios-qxl.bin`), so the test
//! knows nothing about glyph shapes except how to find the table.

use std::path::Path;

pub use devices::display::Frame;

pub const VGA_BIOS: &str = "/usr/share/seabios/vgabios-qxl.bin";

/// The 256 glyphs of the ROM's 8x16 font. The table is found by its first two
/// glyphs: 0x00 is blank and 0x01 is the IBM smiley face.
pub fn vga_font16(rom: &[u8]) -> Option<Vec<[u8; 16]>> {
    const SMILEY: [u8; 16] = [
        0x00, 0x00, 0x7e, 0x81, 0xa5, 0x81, 0x81, 0xbd, 0x99, 0x81, 0x81, 0x7e, 0x00, 0x00, 0x00,
        0x00,
    ];
    let mut key = vec![0u8; 16];
    key.extend_from_slice(&SMILEY);
    let start = rom.windows(32).position(|w| w == key.as_slice())?;
    let table = rom.get(start..start + 256 * 16)?;
    Some(
        table
            .chunks_exact(16)
            .map(|g| g.try_into().unwrap())
            .collect(),
    )
}

/// The font of the installed VGA BIOS; panics with the fix if it is missing.
pub fn system_vga_font() -> Vec<[u8; 16]> {
    let rom = std::fs::read(VGA_BIOS)
        .unwrap_or_else(|e| panic!("{VGA_BIOS}: {e} (install Debian's seabios package)"));
    vga_font16(&rom).expect("no 8x16 font found in the VGA BIOS")
}

/// The characters of a 9x16-cell text screen, one string per row; a cell that
/// matches no glyph (e.g. the one the cursor is drawn over) reads as '?'.
pub fn text_rows(frame: &Frame, font: &[[u8; 16]]) -> Vec<String> {
    let (cols, rows) = (frame.width / 9, frame.height / 16);
    (0..rows)
        .map(|r| (0..cols).map(|c| read_cell(frame, font, c, r)).collect())
        .collect()
}

fn read_cell(frame: &Frame, font: &[[u8; 16]], col: u32, row: u32) -> char {
    let px = |x: u32, y: u32| frame.pixel(col * 9 + x, row * 16 + y);
    let mut colours: Vec<u32> = Vec::new();
    for y in 0..16 {
        for x in 0..8 {
            if !colours.contains(&px(x, y)) {
                colours.push(px(x, y));
            }
        }
    }
    match colours.len() {
        1 => return ' ',
        2 => {}
        _ => return '?',
    }
    // Either colour may be the foreground; the glyph that matches decides.
    for fg in &colours {
        let bits: Vec<u8> = (0..16)
            .map(|y| (0..8).fold(0u8, |acc, x| acc << 1 | u8::from(px(x, y) == *fg)))
            .collect();
        if let Some(ch) = (0x21..0x7f).find(|&c| font[c][..] == bits[..]) {
            return ch as u8 as char;
        }
    }
    '?'
}

/// Load a PNG or PPM screendump.
pub fn load(path: &Path) -> Frame {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let frame = if data.starts_with(b"\x89PNG") {
        devices::display::image_file::read_png(&data)
    } else {
        devices::display::image_file::read_ppm(&data)
    };
    frame.unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Pixels that differ between two frames of the same size (panics when the
/// sizes differ), outside `skip` (x, y, width, height) if given.
pub fn differences(a: &Frame, b: &Frame, skip: Option<(u32, u32, u32, u32)>) -> Vec<(u32, u32)> {
    assert_eq!((a.width, a.height), (b.width, b.height), "sizes differ");
    let skipped = |x: u32, y: u32| {
        skip.is_some_and(|(sx, sy, w, h)| (sx..sx + w).contains(&x) && (sy..sy + h).contains(&y))
    };
    let mut out = Vec::new();
    for y in 0..a.height {
        for x in 0..a.width {
            if !skipped(x, y) && a.pixel(x, y) != b.pixel(x, y) {
                out.push((x, y));
            }
        }
    }
    out
}

/// How a picture compares with the exact one, a box that may be lossy
/// judged apart.
#[derive(Debug)]
pub struct BoxVerdict {
    /// Pixels outside the box that differ (must usually be 0).
    pub outside_wrong: usize,
    /// Pixels inside it that differ (lossy coding).
    pub inside_wrong: usize,
    /// PSNR of the box, dB (infinite when exact).
    pub psnr: f64,
}

/// `got` against `want`, the box `b` (left, top, right, bottom) apart.
pub fn judge_box(got: &Frame, want: &Frame, b: (i32, i32, i32, i32)) -> BoxVerdict {
    assert_eq!((got.width, got.height), (want.width, want.height));
    let (mut outside_wrong, mut inside_wrong, mut sum, mut n) = (0, 0, 0f64, 0u64);
    for y in 0..got.height {
        for x in 0..got.width {
            let (g, w) = (got.pixel(x, y), want.pixel(x, y));
            let (xi, yi) = (i64::from(x), i64::from(y));
            let inside = (i64::from(b.0)..i64::from(b.2)).contains(&xi)
                && (i64::from(b.1)..i64::from(b.3)).contains(&yi);
            if !inside {
                outside_wrong += usize::from(g != w);
                continue;
            }
            inside_wrong += usize::from(g != w);
            for s in [0, 8, 16] {
                let d = f64::from((g >> s) & 0xff) - f64::from((w >> s) & 0xff);
                sum += d * d;
            }
            n += 3;
        }
    }
    let mse = sum / n.max(1) as f64;
    let psnr = if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    };
    BoxVerdict {
        outside_wrong,
        inside_wrong,
        psnr,
    }
}
