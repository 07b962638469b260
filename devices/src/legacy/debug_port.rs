//! Two write-mostly diagnostic ports: the QEMU-style debug console at 0x402, where
//! SeaBIOS prints its log, and the POST code port at 0x80.

use std::io::Write;

use tracing::{debug, trace};

use crate::bus::read_byte_register;
use crate::BusDevice;

pub const DEBUGCON_BASE: u64 = 0x402;
pub const POST_CODE_BASE: u64 = 0x80;
pub const LEN: u64 = 1;

/// SeaBIOS only logs to 0x402 if reading it returns this (QEMU_DEBUGCON_READBACK).
const DEBUGCON_READBACK: u8 = 0xe9;

/// Guest text to `sink`, or nowhere. Flushed at each newline so a log file is
/// readable while the guest runs without a syscall per character.
pub struct DebugCon {
    sink: Option<Box<dyn Write + Send>>,
}

impl DebugCon {
    pub fn new(sink: Option<Box<dyn Write + Send>>) -> Self {
        Self { sink }
    }
}

impl BusDevice for DebugCon {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        read_byte_register(offset, data, DEBUGCON_READBACK);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        // Only the byte landing on the port itself is a character.
        let Some(&c) = data.first().filter(|_| offset == 0) else {
            debug!(offset, "debugcon write beyond its port");
            return;
        };
        if let Some(sink) = self.sink.as_mut() {
            let res = sink
                .write_all(&[c])
                .and_then(|_| if c == b'\n' { sink.flush() } else { Ok(()) });
            if let Err(e) = res {
                debug!("debugcon sink failed, dropping it: {e}");
                self.sink = None;
            }
        }
    }
}

/// Port 0x80: firmware progress codes. Linux also writes it as an I/O delay
/// (`outb_p`), so it is hot and logged only at trace level.
#[derive(Default)]
pub struct PostCode {
    last: u8,
}

impl PostCode {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last code written.
    pub fn last(&self) -> u8 {
        self.last
    }
}

impl BusDevice for PostCode {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        read_byte_register(offset, data, self.last);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let (0, Some(&code)) = (offset, data.first()) {
            trace!(code, "POST code");
            self.last = code;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::RecordingWriter;

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("gone"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn seabios_probe_and_log() {
        let out = RecordingWriter::default();
        let mut d = DebugCon::new(Some(Box::new(out.clone())));
        let mut b = [0u8];
        d.read(DEBUGCON_BASE, 0, &mut b);
        assert_eq!(b[0], 0xe9);
        for &c in b"SeaBIOS\n" {
            d.write(DEBUGCON_BASE, 0, &[c]);
        }
        // outw: only the low byte is at 0x402.
        d.write(DEBUGCON_BASE, 0, b"xy");
        d.write(DEBUGCON_BASE, 1, b"z");
        d.write(DEBUGCON_BASE, 0, &[]);
        assert_eq!(out.contents(), b"SeaBIOS\nx");
        let mut w = [0u8; 4];
        d.read(DEBUGCON_BASE, 0, &mut w);
        assert_eq!(w, [0xe9, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn no_sink_or_broken_sink() {
        let mut d = DebugCon::new(None);
        d.write(DEBUGCON_BASE, 0, b"a");
        let mut d = DebugCon::new(Some(Box::new(Broken)));
        d.write(DEBUGCON_BASE, 0, b"a");
        assert!(d.sink.is_none());
        d.write(DEBUGCON_BASE, 0, b"b");
    }

    #[test]
    fn post_code_reads_back() {
        let mut p = PostCode::new();
        p.write(POST_CODE_BASE, 0, &[0x34, 0x12]);
        assert_eq!(p.last(), 0x34);
        let mut b = [0u8; 2];
        p.read(POST_CODE_BASE, 0, &mut b);
        assert_eq!(b, [0x34, 0xff]);
        p.write(POST_CODE_BASE, 5, &[0x99]);
        p.write(POST_CODE_BASE, 0, &[]);
        assert_eq!(p.last(), 0x34);
        p.read(POST_CODE_BASE, u64::MAX, &mut b);
    }
}
