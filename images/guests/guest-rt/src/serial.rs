//! COM1. The boot sector set the UART to 115200 8N1 with interrupts
//! off; `init` turns its FIFO on so that one LSR poll covers 16 bytes (every
//! port access is a VM exit, ~27 µs here: a 60-character line costs ~2 ms).

use core::fmt;

use crate::abi::SERIAL_PORT;
use crate::port::{inb, outb};

const FCR: u16 = SERIAL_PORT + 2;
const LSR: u16 = SERIAL_PORT + 5;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const FIFO_LEN: usize = 16;

pub(crate) fn init() {
    // Enable and clear both FIFOs (input sent before this is dropped: a
    // host that types to the guest waits for a line saying it is ready).
    outb(FCR, 0x07);
}

/// A byte from COM1 if one arrives within `timeout` (polled).
pub fn read_byte(timeout: core::time::Duration) -> Option<u8> {
    let mut byte = None;
    crate::time::wait_until(timeout, || {
        if inb(LSR) & LSR_DATA_READY != 0 {
            byte = Some(inb(SERIAL_PORT));
        }
        byte.is_some()
    });
    byte
}

/// Writes raw bytes to COM1.
pub fn write_bytes(bytes: &[u8]) {
    for chunk in bytes.chunks(FIFO_LEN) {
        while inb(LSR) & LSR_THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        for &b in chunk {
            outb(SERIAL_PORT, b);
        }
    }
}

pub fn write_str(s: &str) {
    write_bytes(s.as_bytes());
}

/// A `fmt::Write` to COM1 that buffers a line's worth, so that short writes
/// from `format_args!` still fill the FIFO.
struct LineWriter {
    buf: [u8; 128],
    len: usize,
}

impl LineWriter {
    fn flush(&mut self) {
        write_bytes(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl fmt::Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// What `print!` calls.
pub fn print_fmt(args: fmt::Arguments) {
    let mut w = LineWriter {
        buf: [0; 128],
        len: 0,
    };
    let _ = fmt::write(&mut w, args);
    w.flush();
}
