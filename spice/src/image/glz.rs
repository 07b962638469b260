//! GLZ (`SPICE_IMAGE_TYPE_GLZ_RGB`): SPICE's LZ with a dictionary shared across
//! images. An image may copy runs of pixels from images sent before it, as long
//! as the client still holds them: its decoder keeps a window of the latest
//! images (spice-gtk `decode-glz.c`), and every image says how far back that
//! window reaches.
//!
//! Payload (`SpiceLZRGBData.data`): a 33-byte header of big-endian fields:
//! magic "LZ  " (u32), version 1.1 (u32), one byte `type | top_down << 4`
//! (type 8 = RGB32), width, height, stride (u32 each), the image's id (u64) and
//! `win_head_dist` (u32): the client may drop every image older than
//! `id - win_head_dist` once this one is in. Ids are consecutive from 0 within a
//! dictionary; the client closes gaps in id order, so an id must never be skipped.
//!
//! Then tokens, in pixels, until width x height pixels are out (the client
//! asserts exactly that):
//! * `c < 32`: `c + 1` literal pixels follow, 3 bytes each (B, G, R);
//! * else a copy of `len` pixels. `len = c >> 5`, 7 meaning "7 plus the bytes
//!   that follow, summed while they are 255". Bit 4 of `c` (`long`) and its low
//!   nibble start the pixel offset `ofs`; the next byte is `ofs` bits 4..11. The
//!   next byte `b` has the count `n = b >> 6` of image-distance bytes.
//!   - short (`long` clear): image distance = `b & 63` plus the `n` bytes that
//!     follow as bits 6.., 14.., 22..;
//!   - long: `ofs` bits 12..16 are `b & 31`, the image distance is the `n`
//!     bytes as bits 0.., 8.., 16..; if `b & 32`, one more byte gives `ofs`
//!     bits 17..24.
//!
//!   Image distance 0: copy from `ofs + 1` pixels back in this image (overlap
//!   allowed: pixel by pixel). Otherwise from pixel `ofs` of the image whose
//!   id is this one's minus the distance; the run must stay inside that image.
//!
//! The encoder here finds matches greedily, as `lz.rs` does (the previous pixel,
//! the pixel one row up, the last positions whose next pixels hashed the same),
//! with one hash table for the whole dictionary, so that the same hash also
//! finds content of earlier images. A table entry is only a hint: every
//! candidate is checked against the pixels it names, so a stale entry (an
//! evicted image, an encode that was not sent) can cost time, never a wrong
//! picture.
//!
//! The dictionary's memory is bounded by its window (the client's, capped at
//! [`MAX_WINDOW_PIXELS`]) plus the fixed hash table.

use std::collections::VecDeque;

use super::checked_pixel_count;

const LZ_MAGIC: u32 = 0x2020_5A4C;
const LZ_VERSION: u32 = 0x0001_0001;
const LZ_TYPE_RGB32: u8 = 8;
/// `type | 1 << 4`: the top_down flag sits above the 4 type bits.
const TOP_DOWN: u8 = 1 << 4;
pub const GLZ_HEADER_LEN: usize = 33;

/// Largest window the server keeps, in pixels (16 MiB of pixels): spice-gtk
/// announces 3-16 Mpixels (a quarter of 12-64 MiB); a smaller window than the
/// client's is always safe, as the client frees only what each image allows.
pub const MAX_WINDOW_PIXELS: usize = 1 << 22;
/// Pixel offsets have 25 bits (`LZ_MAX_WINDOW_SIZE` of spice-common).
const MAX_OFFSET: usize = 1 << 25;
/// The long form carries the image distance in at most 3 bytes.
const MAX_LONG_IMAGE_DIST: u64 = 1 << 24;
const MAX_LITERALS: usize = 32;
const HASH_BITS: u32 = 17;
/// Pixels hashed per position (as `lz.rs`: about a glyph's width).
const HASH_PIXELS: usize = 8;
const RGB_MASK: u32 = 0x00FF_FFFF;
/// An empty hash slot.
const NO_IMAGE: u64 = u64::MAX;

/// One image the client holds.
struct WinImage {
    id: u64,
    /// Who sent it (the display channel): only its own images are referenced,
    /// so a client's channel never waits for an image that travels on another
    /// socket (spice-gtk blocks the decoding channel until it arrives).
    source: u8,
    width: usize,
    pixels: Vec<u32>,
}

/// A hint: position `pos` of image `id`, whose pixel there is `pixel`.
#[derive(Clone, Copy)]
struct Slot {
    id: u64,
    pos: u32,
    pixel: u32,
}

const EMPTY: Slot = Slot {
    id: NO_IMAGE,
    pos: 0,
    pixel: 0,
};

/// The server's copy of a client's GLZ window.
pub struct GlzDictionary {
    /// Window size in pixels.
    limit: usize,
    next_id: u64,
    /// Oldest first; ids consecutive.
    images: VecDeque<WinImage>,
    /// Pixels held in `images`.
    held: usize,
    /// Two hints per hash: the newest, then the one before.
    table: Vec<[Slot; 2]>,
}

/// An encoded image, not yet part of the dictionary: [`GlzDictionary::commit`]
/// it once it is sure to be sent, or drop it (its id is then reused).
pub struct GlzImage {
    pub id: u64,
    /// The payload (`SpiceLZRGBData.data`).
    pub data: Vec<u8>,
    source: u8,
    width: usize,
    pixels: Vec<u32>,
}

impl GlzDictionary {
    /// A dictionary for a client window of `window` pixels (capped at
    /// [`MAX_WINDOW_PIXELS`]); None for a window too small to hold anything,
    /// which is how spice-html5 says it has no GLZ decoder.
    pub fn new(window: i64) -> Option<GlzDictionary> {
        let limit = usize::try_from(window).ok()?.min(MAX_WINDOW_PIXELS);
        if limit < 2 {
            return None;
        }
        Some(GlzDictionary {
            limit,
            next_id: 0,
            images: VecDeque::new(),
            held: 0,
            table: vec![[EMPTY; 2]; 1 << HASH_BITS],
        })
    }

    /// The window, in pixels.
    pub fn window(&self) -> usize {
        self.limit
    }

    /// Whether a `width` x `height` image may go through the dictionary: it
    /// must be smaller than the window (as spice-server) and not empty.
    pub fn fits(&self, width: u32, height: u32) -> bool {
        checked_pixel_count(width, height).is_ok_and(|n| n < self.limit)
    }

    /// Ids handed out so far (the next image's id).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Images and pixels the window holds.
    pub fn held(&self) -> (usize, usize) {
        (self.images.len(), self.held)
    }

    /// How many of the oldest images must go for `incoming` more pixels.
    fn evictions(&self, incoming: usize) -> usize {
        let mut total = self.held + incoming;
        let mut n = 0;
        for img in &self.images {
            if total <= self.limit {
                break;
            }
            total -= img.pixels.len();
            n += 1;
        }
        n
    }

    /// Encodes a top-down xRGB image sent by `source`. None if it does not
    /// [`fit`](Self::fits) or `pixels` is short (extra pixels are ignored).
    /// The dictionary is unchanged until [`commit`](Self::commit).
    pub fn encode(
        &mut self,
        source: u8,
        width: u32,
        height: u32,
        pixels: &[u32],
    ) -> Option<GlzImage> {
        if !self.fits(width, height) {
            return None;
        }
        let count = width as usize * height as usize;
        let px: Vec<u32> = pixels.get(..count)?.iter().map(|p| p & RGB_MASK).collect();
        let id = self.next_id;
        // The window once this image is in: what it may copy from, and what
        // the client may drop.
        let first = self.evictions(count);
        let head_id = self.images.get(first).map_or(id, |i| i.id);
        let mut data = Vec::with_capacity(GLZ_HEADER_LEN + count * 3 + count / MAX_LITERALS + 1);
        data.extend_from_slice(&LZ_MAGIC.to_be_bytes());
        data.extend_from_slice(&LZ_VERSION.to_be_bytes());
        data.push(LZ_TYPE_RGB32 | TOP_DOWN);
        for word in [width, height, width * 4] {
            data.extend_from_slice(&word.to_be_bytes());
        }
        data.extend_from_slice(&id.to_be_bytes());
        // At most MAX_WINDOW_PIXELS images are held, so this fits.
        data.extend_from_slice(&((id - head_id) as u32).to_be_bytes());
        self.compress(source, id, head_id, &px, width as usize, &mut data);
        Some(GlzImage {
            id,
            data,
            source,
            width: width as usize,
            pixels: px,
        })
    }

    /// Makes `img` part of the window: the caller sends it. An image encoded
    /// before another was committed is stale and ignored (false).
    pub fn commit(&mut self, img: GlzImage) -> bool {
        if img.id != self.next_id {
            tracing::warn!(
                id = img.id,
                next = self.next_id,
                "stale GLZ image not committed"
            );
            return false;
        }
        for _ in 0..self.evictions(img.pixels.len()) {
            if let Some(old) = self.images.pop_front() {
                self.held -= old.pixels.len();
            }
        }
        self.held += img.pixels.len();
        self.images.push_back(WinImage {
            id: img.id,
            source: img.source,
            width: img.width,
            pixels: img.pixels,
        });
        self.next_id += 1;
        true
    }

    /// The window image `id`, if it is at or after `head_id` and `source`'s.
    fn image(&self, id: u64, head_id: u64, source: u8) -> Option<&WinImage> {
        if id < head_id {
            return None;
        }
        let front = self.images.front()?.id;
        let img = self
            .images
            .get(usize::try_from(id.checked_sub(front)?).ok()?)?;
        (img.source == source).then_some(img)
    }

    fn compress(
        &mut self,
        source: u8,
        id: u64,
        head_id: u64,
        px: &[u32],
        width: usize,
        out: &mut Vec<u8>,
    ) {
        let n = px.len();
        let mut literal_start = 0;
        let mut ip = 0;
        let colocated = self
            .images
            .iter()
            .rev()
            .find(|i| i.source == source && i.width == width && i.pixels.len() == n)
            .map(|i| i.id)
            .filter(|i| *i >= head_id);
        let mut anchor: Option<(u64, usize, usize)> = None;
        let mut last_dist = 0;
        let mut misses = 0usize;
        while ip + 1 < n {
            let h = hash(px, ip);
            let hints = self.table[h];
            self.table[h] = [
                Slot {
                    id,
                    pos: ip as u32,
                    pixel: px[ip],
                },
                hints[0],
            ];

            let mut best = Match::default();
            // In this image: a run, the row above, the hinted positions.
            // (and the distance of the last copy in this image).
            let mut dists = [1, width, last_dist, 0, 0];
            for (d, s) in dists[3..].iter_mut().zip(&hints) {
                if s.id == id && (s.pos as usize) < ip && s.pixel == px[ip] {
                    *d = ip - s.pos as usize;
                }
            }
            for dist in dists {
                if dist == 0 || dist > ip || dist > MAX_OFFSET || dist == best.dist() {
                    continue;
                }
                let r = ip - dist;
                if ip + best.len >= n || px[r + best.len] != px[ip + best.len] {
                    continue;
                }
                let len = common(&px[ip..], &px[r..]);
                if len > best.len {
                    best = Match {
                        len,
                        image_dist: 0,
                        ofs: dist - 1,
                    };
                }
            }
            // Earlier images still in the window: the hinted positions, the
            // same position of the newest image of this size (a region sent
            // again), and where the last copy from an earlier image would
            // continue (a run broken by a few changed pixels).
            let mut cross = [(NO_IMAGE, 0usize); 4];
            for (c, s) in cross.iter_mut().zip(&hints) {
                if s.id < id && s.pixel == px[ip] {
                    *c = (s.id, s.pos as usize);
                }
            }
            if let Some(cid) = colocated {
                cross[2] = (cid, ip);
            }
            if let Some((rid, pos0, ip0)) = anchor {
                // The same place relative to the last copy's source, in two
                // dimensions: rows of this image follow rows of that one, of
                // whatever width (a moved window, a scrolled part).
                if let Some(img) = self.image(rid, head_id, source) {
                    let (y0, x0) = ((ip0 / width) as isize, (ip0 % width) as isize);
                    let (y, x) = ((ip / width) as isize, (ip % width) as isize);
                    let pos = pos0 as isize + (y - y0) * img.width as isize + (x - x0);
                    if let Ok(pos) = usize::try_from(pos) {
                        cross[3] = (rid, pos);
                    }
                }
            }
            for (rid, pos) in cross {
                if rid == NO_IMAGE || (rid, pos) == best.source(id) {
                    continue;
                }
                let Some(img) = self.image(rid, head_id, source) else {
                    continue;
                };
                let Some(r) = img.pixels.get(pos..) else {
                    continue;
                };
                if best.len >= r.len() || r.get(best.len) != px.get(ip + best.len) {
                    continue;
                }
                let len = common(&px[ip..], r);
                if len > best.len {
                    best = Match {
                        len,
                        image_dist: id - rid,
                        ofs: pos,
                    };
                }
            }

            // A copy pays when it is shorter than its pixels as literals.
            if best.len > 0 && best.cost() < best.len * 3 {
                emit_literals(&px[literal_start..ip], out);
                best.emit(out);
                if best.image_dist == 0 {
                    last_dist = best.ofs + 1;
                } else {
                    anchor = Some((id - best.image_dist, best.ofs, ip));
                }
                ip += best.len;
                literal_start = ip;
                misses = 0;
            } else {
                // Past a run of misses (noise, photos) look at fewer
                // positions: each costs a hash table visit that is likely a
                // cache miss, and such content rarely repeats anyway.
                misses += 1;
                ip += 1 + (misses >> 5).min(7);
            }
        }
        emit_literals(&px[literal_start..], out);
    }
}

/// A copy of `len` pixels: from `ofs + 1` back in this image (`image_dist`
/// 0), or from pixel `ofs` of the image `image_dist` ids back.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Match {
    pub len: usize,
    pub image_dist: u64,
    pub ofs: usize,
}

impl Match {
    /// The in-image distance of a same-image match (0 otherwise).
    fn dist(&self) -> usize {
        if self.len == 0 || self.image_dist != 0 {
            0
        } else {
            self.ofs + 1
        }
    }

    /// (image id, position) a cross-image match copies from (NO_IMAGE else).
    fn source(&self, id: u64) -> (u64, usize) {
        if self.len == 0 || self.image_dist == 0 {
            (NO_IMAGE, 0)
        } else {
            (id - self.image_dist, self.ofs)
        }
    }

    /// Whether the short form (12-bit offset, 30-bit image distance) fits.
    fn short(&self) -> bool {
        self.ofs < 1 << 12
    }

    /// Bytes of the image-distance field beyond the flag byte.
    fn dist_bytes(&self) -> usize {
        let d = self.image_dist;
        if self.short() {
            match d {
                0..0x40 => 0,
                0x40..0x4000 => 1,
                0x4000..0x40_0000 => 2,
                _ => 3,
            }
        } else {
            match d {
                0 => 0,
                1..0x100 => 1,
                0x100..0x1_0000 => 2,
                _ => 3,
            }
        }
    }

    /// Encoded size in bytes.
    fn cost(&self) -> usize {
        let len_bytes = if self.len >= 7 {
            (self.len - 7) / 255 + 1
        } else {
            0
        };
        let wide_ofs = usize::from(!self.short() && self.ofs >= 1 << 17);
        // Distances the format cannot carry are never chosen.
        let carried = self.ofs < MAX_OFFSET
            && ((self.short() && self.image_dist < 1 << 30)
                || self.image_dist < MAX_LONG_IMAGE_DIST);
        if !carried {
            return usize::MAX;
        }
        3 + len_bytes + self.dist_bytes() + wide_ofs
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        let ofs = self.ofs;
        let long = !self.short();
        let len_code = self.len.min(7) as u8;
        out.push(len_code << 5 | u8::from(long) << 4 | (ofs & 0x0f) as u8);
        if self.len >= 7 {
            let mut rest = self.len - 7;
            while rest >= 255 {
                out.push(255);
                rest -= 255;
            }
            out.push(rest as u8);
        }
        out.push((ofs >> 4) as u8);
        let n = self.dist_bytes();
        let d = self.image_dist;
        if long {
            let wide = ofs >= 1 << 17;
            out.push((n as u8) << 6 | u8::from(wide) << 5 | ((ofs >> 12) & 0x1f) as u8);
            for i in 0..n {
                out.push((d >> (8 * i)) as u8);
            }
            if wide {
                out.push((ofs >> 17) as u8);
            }
        } else {
            out.push((n as u8) << 6 | (d & 0x3f) as u8);
            for i in 0..n {
                out.push((d >> (6 + 8 * i)) as u8);
            }
        }
    }
}

/// Length of the common prefix of `a` and `b`.
fn common(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Hash of the HASH_PIXELS pixels at `ip` (fewer near the end).
fn hash(px: &[u32], ip: usize) -> usize {
    let h = px[ip..].iter().take(HASH_PIXELS).fold(0u32, |h, &p| {
        (h.rotate_left(11) ^ p).wrapping_mul(0x9E37_79B1)
    });
    (h >> (32 - HASH_BITS)) as usize
}

pub(crate) fn emit_literals(pixels: &[u32], out: &mut Vec<u8>) {
    for chunk in pixels.chunks(MAX_LITERALS) {
        out.push((chunk.len() - 1) as u8);
        for p in chunk {
            let [b, g, r, _] = p.to_le_bytes();
            out.extend_from_slice(&[b, g, r]);
        }
    }
}

/// zlib level spice-server uses for ZLIB_GLZ_RGB (its ZLIB_DEFAULT_COMPRESSION_LEVEL):
/// the GLZ stream is already dense, so a fast level keeps most of the gain.
const ZLIB_LEVEL: u32 = 3;

/// A zlib stream (header, deflate, Adler-32: what spice-gtk's `inflate` reads)
/// of `data`, the payload of ZLIB_GLZ_RGB.
pub fn zlib_deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::new(ZLIB_LEVEL),
    );
    // Writing to a Vec cannot fail.
    let _ = z.write_all(data);
    z.finish().unwrap_or_default()
}
