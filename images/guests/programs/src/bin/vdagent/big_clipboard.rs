//! spice-vdagent's clipboard side with selections and large data, after a
//! `b` on COM1 (`agent-big-clipboard-mode`): capabilities CLIPBOARD_BY_DEMAND,
//! CLIPBOARD_SELECTION and MAX_CLIPBOARD, so every clipboard message carries
//! the 4-byte selection header and the client tells its maximum
//! (`agent-max-clipboard <n>`). The guest grabs CLIPBOARD with UTF8_TEXT and
//! IMAGE_PNG and PRIMARY with UTF8_TEXT; each REQUEST is answered with
//! [`text`] (10 MiB), [`png`] (a 512x512 RGBA PNG, 1 MiB) or [`primary_text`]
//! and reported as `agent-clipboard-sent sel=<s> type=<t> size=<n>
//! crc=<crc32>`; each client GRAB is answered with a REQUEST per type and its
//! CLIPBOARD data reported as `agent-clipboard-got sel=<s> type=<t> size=<n>
//! crc=<crc32>` (zlib's crc32, which the test and the client compute too).

use alloc::borrow::Cow;
use alloc::vec::Vec;

use guest_rt::{check, println};

use super::{
    message, u32_at, ANNOUNCE_CAPABILITIES, CAP_CLIPBOARD_BY_DEMAND, CLIPBOARD, CLIPBOARD_GRAB,
    CLIPBOARD_REQUEST, UTF8_TEXT,
};

const MAX_CLIPBOARD: u32 = 14;
const CAP_CLIPBOARD_SELECTION: u32 = 6;
const CAP_MAX_CLIPBOARD: u32 = 10;
const IMAGE_PNG: u32 = 2;
const SELECTION_CLIPBOARD: u8 = 0;
const SELECTION_PRIMARY: u8 = 1;
const TEXT_LEN: usize = 10 << 20;
const PRIMARY_LEN: usize = 4000;
const PNG_SIDE: u32 = 512;

/// zlib's crc32 table (reflected 0xedb88320), one entry per byte value.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = (c >> 1) ^ (0xedb8_8320 & (c & 1).wrapping_neg());
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// zlib's crc32 (reflected 0xedb88320, from and to all ones), a byte at a
/// time through [`CRC_TABLE`]: the bit-at-a-time loop took tens of
/// milliseconds of the guest's vCPU per 10 MiB, inside the timed transfers.
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| {
        CRC_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// `len` bytes of UTF-8 text: a line with two- and three-byte characters,
/// repeated, ASCII at the end so the length is exact.
fn utf8_text(line: &str, len: usize) -> Vec<u8> {
    let mut t = Vec::with_capacity(len);
    while t.len() + line.len() <= len {
        t.extend_from_slice(line.as_bytes());
    }
    t.resize(len, b'.');
    t
}

/// The guest's CLIPBOARD text.
pub fn text() -> Vec<u8> {
    utf8_text(
        "Grüße aus dem Gast, 来自客户机的问候 — 0123456789\n",
        TEXT_LEN,
    )
}

/// The guest's PRIMARY text.
pub fn primary_text() -> Vec<u8> {
    utf8_text("primäre Auswahl, 主选择\n", PRIMARY_LEN)
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A 512x512 RGBA PNG (pixel = x, y, x^y, 255), its zlib stream made of
/// stored deflate blocks: a real PNG any decoder reads, 1 MiB of pixels.
pub fn png() -> Vec<u8> {
    let side = PNG_SIDE as usize;
    let mut raw = Vec::with_capacity(side * (1 + 4 * side));
    for y in 0..side {
        raw.push(0); // filter: none
        for x in 0..side {
            raw.extend_from_slice(&[x as u8, y as u8, (x ^ y) as u8, 255]);
        }
    }
    let mut z = alloc::vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(0xffff).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let n = b.len() as u16;
        z.extend_from_slice(&n.to_le_bytes());
        z.extend_from_slice(&(!n).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = alloc::vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&PNG_SIDE.to_be_bytes());
    ihdr.extend_from_slice(&PNG_SIDE.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A clipboard message body: the selection header, then `rest`.
fn with_selection(sel: u8, rest: &[u8]) -> Vec<u8> {
    let mut b = alloc::vec![sel, 0, 0, 0];
    b.extend_from_slice(rest);
    b
}

/// A clipboard answer the guest holds before anyone asks for it: its report
/// (size, crc) and the whole CLIPBOARD message, already in chunks.
struct Ready {
    sel: u8,
    kind: u32,
    size: usize,
    crc: u32,
    message: &'static [u8],
}

/// The guest's clipboard contents, ready to send, and what the client's
/// maximum allows (None until MAX_CLIPBOARD came).
pub struct BigClipboard {
    max: Option<u32>,
    ready: Vec<Ready>,
}

impl BigClipboard {
    /// Makes every answer now, as a real clipboard owner holds its data
    /// before a client asks: the time from a REQUEST to the data in the
    /// client's hands is then the transport's (virtio-serial, the VMM, the
    /// SPICE server, the client), not this guest making 10 MiB of text,
    /// checksumming it and copying it twice into fresh pages (its bump
    /// allocator never reuses memory, and every fresh page is a host fault
    /// that zeroes it: ~75% of the vCPU's time in that window under either
    /// VMM). The messages live as long as the guest (leaked: nothing frees).
    pub fn new() -> BigClipboard {
        let answers: [(u8, u32, Vec<u8>); 3] = [
            (SELECTION_CLIPBOARD, UTF8_TEXT, text()),
            (SELECTION_CLIPBOARD, IMAGE_PNG, png()),
            (SELECTION_PRIMARY, UTF8_TEXT, primary_text()),
        ];
        let ready = answers
            .into_iter()
            .map(|(sel, kind, data)| {
                let mut body = Vec::with_capacity(8 + data.len());
                body.extend_from_slice(&[sel, 0, 0, 0]);
                body.extend_from_slice(&kind.to_le_bytes());
                body.extend_from_slice(&data);
                Ready {
                    sel,
                    kind,
                    size: data.len(),
                    crc: crc32(&data),
                    message: message(CLIPBOARD, &body).leak(),
                }
            })
            .collect();
        BigClipboard { max: None, ready }
    }

    pub fn message(&mut self, t: u32, body: &[u8]) -> Vec<Cow<'static, [u8]>> {
        let own = |m: Vec<Vec<u8>>| m.into_iter().map(Cow::Owned).collect();
        match t {
            ANNOUNCE_CAPABILITIES => {
                let caps = (1u32 << CAP_CLIPBOARD_BY_DEMAND)
                    | (1 << CAP_CLIPBOARD_SELECTION)
                    | (1 << CAP_MAX_CLIPBOARD);
                let mut announce = 0u32.to_le_bytes().to_vec();
                announce.extend_from_slice(&caps.to_le_bytes());
                let mut both = UTF8_TEXT.to_le_bytes().to_vec();
                both.extend_from_slice(&IMAGE_PNG.to_le_bytes());
                own(alloc::vec![
                    message(ANNOUNCE_CAPABILITIES, &announce),
                    message(CLIPBOARD_GRAB, &with_selection(SELECTION_CLIPBOARD, &both)),
                    message(
                        CLIPBOARD_GRAB,
                        &with_selection(SELECTION_PRIMARY, &UTF8_TEXT.to_le_bytes())
                    ),
                ])
            }
            MAX_CLIPBOARD => {
                check!(body.len() == 4, "max-clipboard", "{} bytes", body.len());
                let max = u32_at(body, 0);
                println!("agent-max-clipboard {max}");
                self.max = Some(max);
                Vec::new()
            }
            CLIPBOARD_REQUEST => {
                check!(body.len() == 8, "clipboard-request", "{} bytes", body.len());
                let (sel, kind) = (body[0], u32_at(body, 4));
                let Some(r) = self.ready.iter().find(|r| (r.sel, r.kind) == (sel, kind)) else {
                    println!("agent-clipboard-sent sel={sel} type={kind} size=0 crc=00000000");
                    let empty = with_selection(sel, &kind.to_le_bytes());
                    return own(alloc::vec![message(CLIPBOARD, &empty)]);
                };
                // spice-vdagent sends nothing over the client's maximum.
                if let Some(max) = self.max {
                    check!(
                        r.size <= max as usize,
                        "max-clipboard",
                        "{} > {max}",
                        r.size
                    );
                }
                println!(
                    "agent-clipboard-sent sel={sel} type={kind} size={} crc={:08x}",
                    r.size, r.crc
                );
                alloc::vec![Cow::Borrowed(r.message)]
            }
            CLIPBOARD_GRAB => {
                check!(
                    body.len() >= 8 && body.len().is_multiple_of(4),
                    "clipboard-grab",
                    "{} bytes",
                    body.len()
                );
                let sel = body[0];
                (4..body.len())
                    .step_by(4)
                    .map(|at| {
                        let kind = u32_at(body, at);
                        println!("agent-clipboard-grab sel={sel} type={kind}");
                        Cow::Owned(message(
                            CLIPBOARD_REQUEST,
                            &with_selection(sel, &kind.to_le_bytes()),
                        ))
                    })
                    .collect()
            }
            CLIPBOARD => {
                check!(body.len() >= 8, "clipboard", "{} bytes", body.len());
                let data = &body[8..];
                println!(
                    "agent-clipboard-got sel={} type={} size={} crc={:08x}",
                    body[0],
                    u32_at(body, 4),
                    data.len(),
                    crc32(data)
                );
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}
