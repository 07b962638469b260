//! Data-stage message framing: the 6-byte mini header when the peer announced
//! MINI_HEADER, else the 18-byte full header (serial counted per direction).

pub const MINI_HEADER_SIZE: usize = 6;
pub const FULL_HEADER_SIZE: usize = 18;

/// Which header a direction uses, and its serial counter (full header only).
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    pub mini: bool,
    pub serial: u64,
}

impl Framing {
    pub fn new(mini: bool) -> Self {
        Framing { mini, serial: 0 }
    }

    pub fn is_mini(&self) -> bool {
        self.mini
    }

    pub fn header_size(&self) -> usize {
        if self.mini {
            MINI_HEADER_SIZE
        } else {
            FULL_HEADER_SIZE
        }
    }

    /// Appends one framed message to `out`.
    pub fn encode(&mut self, out: &mut Vec<u8>, msg_type: u16, body: &[u8]) {
        self.serial += 1;
        if !self.mini {
            out.extend_from_slice(&self.serial.to_le_bytes());
        }
        out.extend_from_slice(&msg_type.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        if !self.mini {
            out.extend_from_slice(&0u32.to_le_bytes()); // no sub-message list
        }
        out.extend_from_slice(body);
    }

    /// Parses a header of `header_size()` bytes into (type, body size).
    /// Sub-message lists are never produced by clients we know; the field is ignored.
    pub fn decode(&mut self, hdr: &[u8]) -> (u16, u32) {
        self.serial += 1;
        let off = if self.mini { 0 } else { 8 };
        let t = u16::from_le_bytes([hdr[off], hdr[off + 1]]);
        let s = u32::from_le_bytes([hdr[off + 2], hdr[off + 3], hdr[off + 4], hdr[off + 5]]);
        (t, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mini_and_full_round_trip() {
        for mini in [true, false] {
            let mut enc = Framing::new(mini);
            let mut out = Vec::new();
            enc.encode(&mut out, 304, &[1, 2, 3]);
            assert_eq!(out.len(), enc.header_size() + 3);
            let mut dec = Framing::new(mini);
            let (t, s) = dec.decode(&out[..dec.header_size()]);
            assert_eq!((t, s), (304, 3));
            if !mini {
                assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 1);
            }
        }
    }
}
