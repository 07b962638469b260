//! Synthetic test screens shared by the image tests and `examples/image_bench.rs` (which
//! includes this file by path). Deterministic: the same seed gives the same pixels.

/// splitmix64: tiny, deterministic, good enough to make noise and pick glyphs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish value in 0..n (n > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }
}

pub fn rgb(r: u32, g: u32, b: u32) -> u32 {
    (r.min(255) << 16) | (g.min(255) << 8) | b.min(255)
}

pub fn solid(width: u32, height: u32, color: u32) -> Vec<u32> {
    vec![color; (width * height) as usize]
}

pub fn random(width: u32, height: u32, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..width * height)
        .map(|_| rng.next_u64() as u32 & 0x00FF_FFFF)
        .collect()
}

/// Pixels drawn from a small palette: many short, scattered matches.
pub fn palette_noise(width: u32, height: u32, colors: u32, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let palette: Vec<u32> = (0..colors.max(1))
        .map(|_| rng.next_u64() as u32 & 0x00FF_FFFF)
        .collect();
    (0..width * height)
        .map(|_| palette[rng.below(palette.len() as u32) as usize])
        .collect()
}

pub fn gradient(width: u32, height: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        for x in 0..width {
            let r = x * 255 / width.max(1);
            let g = y * 255 / height.max(1);
            out.push(rgb(r, g, (r + g) / 2));
        }
    }
    out
}

/// A photo stand-in: overlapping smooth gradients and blobs plus per-pixel sensor noise, so
/// almost no two neighbouring pixels are equal.
pub fn photo(width: u32, height: u32, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    let mut out = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f32 / w, y as f32 / h);
            let sky = 1.0 - fy;
            let blob = (-((fx - 0.6).powi(2) + (fy - 0.55).powi(2)) * 18.0).exp();
            let wave = ((fx * 9.0).sin() * (fy * 7.0).cos() + 1.0) * 0.5;
            let noise = |rng: &mut Rng| rng.below(13) as f32 - 6.0;
            let r = 40.0 + 120.0 * sky + 90.0 * blob + 30.0 * wave + noise(&mut rng);
            let g = 60.0 + 100.0 * sky + 60.0 * wave + 40.0 * blob + noise(&mut rng);
            let b = 90.0 + 150.0 * sky - 50.0 * blob + noise(&mut rng);
            out.push(rgb(r.max(0.0) as u32, g.max(0.0) as u32, b.max(0.0) as u32));
        }
    }
    out
}

/// [`photo`] with alpha, premultiplied (0xAARRGGBB, as an RGBA bitmap of a
/// guest's compositor): opaque in the middle, fading smoothly to clear at
/// the edges, with a clear band along the left (a sprite's margin).
pub fn photo_alpha(width: u32, height: u32, seed: u64) -> Vec<u32> {
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    photo(width, height, seed)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let (x, y) = (
                (i as u32 % width.max(1)) as f32,
                (i as u32 / width.max(1)) as f32,
            );
            let (dx, dy) = ((x + 0.5) / w - 0.5, (y + 0.5) / h - 0.5);
            let fade = (1.6 - 3.2 * (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0);
            let a = if x < w / 8.0 {
                0
            } else {
                (fade * 255.0) as u32
            };
            let c = |s: u32| (((p >> s & 0xff) * a + 127) / 255) << s;
            a << 24 | c(16) | c(8) | c(0)
        })
        .collect()
}

/// A generated bitmap font: `count` glyphs of `cell_w` x `cell_h`, each a 1-bit mask. Glyphs
/// are strokes (stems, bowls, bars) placed at random in the core of the cell, so they look and
/// compress like small text: mostly background with thin repeated shapes.
pub struct Font {
    pub cell_w: u32,
    pub cell_h: u32,
    glyphs: Vec<Vec<bool>>,
}

impl Font {
    pub fn generate(cell_w: u32, cell_h: u32, count: usize, seed: u64) -> Font {
        let mut rng = Rng::new(seed);
        let (core_w, core_h) = (cell_w.saturating_sub(3).max(3), (cell_h * 9 / 16).max(5));
        let top = (cell_h - core_h) / 2;
        let glyphs = (0..count)
            .map(|_| {
                let mut mask = vec![false; (cell_w * cell_h) as usize];
                let mut set = |x: u32, y: u32| {
                    if x < cell_w && y < cell_h {
                        mask[(y * cell_w + x) as usize] = true;
                    }
                };
                for _ in 0..2 + rng.below(3) {
                    match rng.below(3) {
                        0 => {
                            // vertical stem, full or half height
                            let x = 1 + rng.below(core_w);
                            let y0 = top + if rng.below(2) == 0 { 0 } else { core_h / 2 };
                            (y0..top + core_h).for_each(|y| set(x, y));
                        }
                        1 => {
                            // horizontal bar
                            let y = top + rng.below(core_h);
                            (1..1 + core_w).for_each(|x| set(x, y));
                        }
                        _ => {
                            // a bowl: two short stems joined top and bottom
                            let y0 = top + core_h / 2;
                            let (x0, x1) = (1, core_w);
                            (y0..top + core_h).for_each(|y| {
                                set(x0, y);
                                set(x1, y);
                            });
                            (x0..=x1).for_each(|x| {
                                set(x, y0);
                                set(x, top + core_h - 1);
                            });
                        }
                    }
                }
                mask
            })
            .collect();
        Font {
            cell_w,
            cell_h,
            glyphs,
        }
    }

    pub fn len(&self) -> usize {
        self.glyphs.len()
    }

    /// Draws glyph `index` at (x, y). `edge` (if any) is blended into pixels next to a stroke
    /// to mimic anti-aliased text.
    #[allow(clippy::too_many_arguments)]
    pub fn draw(
        &self,
        index: usize,
        pixels: &mut [u32],
        width: u32,
        x: u32,
        y: u32,
        color: u32,
        edge: Option<u32>,
    ) {
        let Some(mask) = self.glyphs.get(index) else {
            return;
        };
        let height = pixels.len() as u32 / width.max(1);
        for gy in 0..self.cell_h {
            for gx in 0..self.cell_w {
                let (px, py) = (x + gx, y + gy);
                if px >= width || py >= height {
                    continue;
                }
                let on = mask[(gy * self.cell_w + gx) as usize];
                let slot = &mut pixels[(py * width + px) as usize];
                if on {
                    *slot = color;
                } else if let Some(edge) = edge {
                    let right_of_stroke = gx > 0 && mask[(gy * self.cell_w + gx - 1) as usize];
                    if right_of_stroke {
                        *slot = edge;
                    }
                }
            }
        }
    }
}

/// Words of random glyphs separated by spaces, wrapped to `cols` x `rows` cells starting at
/// (x0, y0).
#[allow(clippy::too_many_arguments)]
pub fn draw_text(
    pixels: &mut [u32],
    width: u32,
    font: &Font,
    (x0, y0): (u32, u32),
    (cols, rows): (u32, u32),
    color: u32,
    edge: Option<u32>,
    rng: &mut Rng,
) {
    for row in 0..rows {
        // Ragged right margin, like real text.
        let line_len = cols.saturating_sub(rng.below(cols / 3 + 1));
        let mut col = 0;
        while col < line_len {
            let word = 2 + rng.below(8);
            for _ in 0..word.min(line_len - col) {
                // Skewed choice: a few letters are far more common, as in real text.
                let glyph = (rng.below(font.len() as u32) * rng.below(font.len() as u32)) as usize
                    / font.len();
                let (x, y) = (x0 + col * font.cell_w, y0 + row * font.cell_h);
                font.draw(glyph, pixels, width, x, y, color, edge);
                col += 1;
            }
            col += 1;
        }
    }
}

/// VGA text console: 80x25 cells of 9x16 on black, light grey text (720x400).
pub fn console_text(seed: u64) -> (u32, u32, Vec<u32>) {
    let (width, height) = (720, 400);
    let mut pixels = solid(width, height, 0);
    let font = Font::generate(9, 16, 96, seed);
    let mut rng = Rng::new(seed ^ 0x5EED);
    draw_text(
        &mut pixels,
        width,
        &font,
        (0, 0),
        (80, 25),
        rgb(170, 170, 170),
        None,
        &mut rng,
    );
    (width, height, pixels)
}

/// A desktop: panel, window title bar, and a document of dark anti-aliased text on white
/// (1024x768 by default).
pub fn desktop_text(width: u32, height: u32, seed: u64) -> Vec<u32> {
    let mut pixels = solid(width, height, rgb(58, 110, 165));
    let fill = |pixels: &mut [u32], x0: u32, y0: u32, x1: u32, y1: u32, c: u32| {
        for y in y0..y1.min(height) {
            for x in x0..x1.min(width) {
                pixels[(y * width + x) as usize] = c;
            }
        }
    };
    fill(&mut pixels, 0, 0, width, 24, rgb(40, 40, 40)); // top panel
    let (wx0, wy0, wx1, wy1) = (40, 48, width.saturating_sub(40), height.saturating_sub(24));
    fill(&mut pixels, wx0, wy0, wx1, wy0 + 28, rgb(220, 220, 225)); // title bar
    fill(&mut pixels, wx0, wy0 + 28, wx1, wy1, rgb(255, 255, 255)); // document
    let font = Font::generate(8, 16, 96, seed);
    let mut rng = Rng::new(seed ^ 0xD0C);
    // Saturating: a screen smaller than the margins simply has no document text.
    let cols = wx1.saturating_sub(wx0 + 32) / font.cell_w;
    let rows = wy1.saturating_sub(wy0 + 48) / font.cell_h;
    draw_text(
        &mut pixels,
        width,
        &font,
        (wx0 + 16, wy0 + 40),
        (cols, rows),
        rgb(30, 30, 30),
        Some(rgb(150, 150, 150)),
        &mut rng,
    );
    draw_text(
        &mut pixels,
        width,
        &font,
        (8, 4),
        (20, 1),
        rgb(230, 230, 230),
        None,
        &mut rng,
    );
    pixels
}

/// Peak signal-to-noise ratio (dB) over the R, G, B channels.
pub fn psnr(a: &[u32], b: &[u32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut sum = 0f64;
    for (p, q) in a.iter().zip(b) {
        for i in 0..3 {
            let d = f64::from((p >> (8 * i)) & 0xff) - f64::from((q >> (8 * i)) & 0xff);
            sum += d * d;
        }
    }
    let mse = sum / (a.len() * 3) as f64;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / mse).log10()
}
