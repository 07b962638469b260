//! COM1: a 16550A UART, the register model being `vm-superio`'s `Serial`.
//!
//! This adapter places it on the port bus, turns its interrupt trigger into an
//! `IrqLine` pulse, and keeps a bounded backlog of host input so that a paste larger
//! than the 64-byte receive FIFO reaches the guest instead of being dropped.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;

use tracing::debug;
use vm_superio::serial::NoEvents;
use vm_superio::Trigger;

use crate::{BusDevice, IrqLine};

/// Where COM1 sits and how many ports it decodes.
pub const COM1_BASE: u64 = 0x3f8;
/// COM1's ISA IRQ.
pub const COM1_IRQ: u8 = 4;
pub const LEN: u64 = 8;

/// Host input waiting for room in the receive FIFO. Beyond this, input is dropped:
/// a guest that never reads its UART must not make the VMM grow without bound.
const BACKLOG_CAP: usize = 64 * 1024;

/// vm-superio signals "an interrupt condition appeared" once per condition, like an
/// edge; the ISA IRQ pins are edge-triggered, so one pulse per trigger is enough.
pub struct IrqTrigger(Arc<dyn IrqLine>);

impl Trigger for IrqTrigger {
    type E = Infallible;

    fn trigger(&self) -> Result<(), Infallible> {
        self.0.pulse();
        Ok(())
    }
}

type Uart = vm_superio::Serial<IrqTrigger, NoEvents, Box<dyn Write + Send>>;

pub struct Serial {
    uart: Uart,
    backlog: VecDeque<u8>,
    /// The FIFO size, read from a fresh UART (vm-superio does not export it).
    fifo_len: usize,
}

impl Serial {
    /// `irq` is IRQ4 for COM1; guest output goes to `out` byte by byte.
    pub fn new(irq: Arc<dyn IrqLine>, out: Box<dyn Write + Send>) -> Self {
        let uart = vm_superio::Serial::new(IrqTrigger(irq), out);
        Self {
            fifo_len: uart.fifo_capacity(),
            uart,
            backlog: VecDeque::new(),
        }
    }

    /// Host → guest bytes. What does not fit in the FIFO waits in the backlog and
    /// is fed in as the guest drains the FIFO; beyond `BACKLOG_CAP` it is dropped.
    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        let room = BACKLOG_CAP.saturating_sub(self.backlog.len());
        if bytes.len() > room {
            debug!(dropped = bytes.len() - room, "serial input backlog full");
        }
        self.backlog.extend(&bytes[..bytes.len().min(room)]);
        self.feed();
    }

    /// Move backlog into the FIFO once it is empty. Waiting for empty (rather than
    /// topping up after every read) gives one receive interrupt per FIFO load.
    fn feed(&mut self) {
        if self.backlog.is_empty() || self.uart.fifo_capacity() < self.fifo_len {
            return;
        }
        let n = self.backlog.len().min(self.uart.fifo_capacity());
        let chunk: Vec<u8> = self.backlog.iter().take(n).copied().collect();
        // Loopback mode accepts nothing (Ok(0)); the bytes then stay queued.
        if let Ok(taken) = self.uart.enqueue_raw_bytes(&chunk) {
            self.backlog.drain(..taken);
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset.checked_add(i as u64) {
                Some(o) if o < LEN => self.uart.read(o as u8),
                _ => 0xff,
            };
        }
        self.feed();
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(o) if o < LEN => {
                    if let Err(e) = self.uart.write(o as u8, b) {
                        debug!("serial output: {e:?}");
                    }
                }
                _ => debug!(offset, "serial write beyond its ports"),
            }
        }
        self.feed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::{RecordingLine, RecordingWriter};

    const RBR: u64 = 0;
    const IER: u64 = 1;
    const IIR: u64 = 2;
    const LCR: u64 = 3;
    const LSR: u64 = 5;

    fn setup() -> (Serial, Arc<RecordingLine>, RecordingWriter) {
        let line = Arc::new(RecordingLine::default());
        let out = RecordingWriter::default();
        (Serial::new(line.clone(), Box::new(out.clone())), line, out)
    }

    fn rd(s: &mut Serial, off: u64) -> u8 {
        let mut b = [0u8];
        s.read(COM1_BASE, off, &mut b);
        b[0]
    }

    fn wr(s: &mut Serial, off: u64, v: u8) {
        s.write(COM1_BASE, off, &[v]);
    }

    #[test]
    fn output_and_divisor_like_linux_8250_setup() {
        let (mut s, _line, out) = setup();
        // 8250 setup: DLAB on, divisor 1 (115200), 8N1.
        wr(&mut s, LCR, 0x80);
        wr(&mut s, 0, 0x01);
        wr(&mut s, 1, 0x00);
        assert_eq!(rd(&mut s, 0), 0x01);
        wr(&mut s, LCR, 0x03);
        assert_eq!(rd(&mut s, LCR), 0x03);
        // Transmitter empty and idle.
        assert_eq!(rd(&mut s, LSR) & 0x60, 0x60);
        for &c in b"hi\n" {
            wr(&mut s, 0, c);
        }
        assert_eq!(out.contents(), b"hi\n");
    }

    #[test]
    fn input_raises_irq4_and_reads_back() {
        let (mut s, line, _) = setup();
        wr(&mut s, IER, 0x01); // receive-data interrupt
        s.enqueue_input(b"ok");
        assert_eq!(line.rising_edges(), 1);
        assert!(!line.is_high(), "pulse ends low");
        assert_eq!(rd(&mut s, IIR) & 0x0f, 0x04); // RDA
        assert_eq!(rd(&mut s, LSR) & 1, 1);
        assert_eq!(rd(&mut s, RBR), b'o');
        assert_eq!(rd(&mut s, RBR), b'k');
        assert_eq!(rd(&mut s, LSR) & 1, 0);
    }

    #[test]
    fn large_paste_is_fed_as_fifo_drains() {
        let (mut s, line, _) = setup();
        wr(&mut s, IER, 0x01);
        let input: Vec<u8> = (0..200u32).map(|i| (i % 251) as u8).collect();
        s.enqueue_input(&input);
        let mut got = Vec::new();
        while rd(&mut s, LSR) & 1 == 1 {
            got.push(rd(&mut s, RBR));
        }
        assert_eq!(got, input);
        // One interrupt per FIFO load (64 + 64 + 64 + 8).
        assert_eq!(line.rising_edges(), 4);
    }

    #[test]
    fn backlog_is_bounded() {
        let (mut s, _, _) = setup();
        s.enqueue_input(&vec![b'x'; BACKLOG_CAP * 2]);
        assert!(s.backlog.len() <= BACKLOG_CAP);
    }

    #[test]
    fn odd_widths_and_offsets_do_not_panic() {
        let (mut s, _, _) = setup();
        let mut buf = [0u8; 8];
        for off in [0u64, 3, 7, 8, 100, u64::MAX] {
            for w in [1usize, 2, 4, 8] {
                s.read(COM1_BASE, off, &mut buf[..w]);
                s.write(COM1_BASE, off, &buf[..w]);
            }
        }
        // A 2-byte read at offset 7 sees the scratch register, then nothing.
        wr(&mut s, 7, 0x5a);
        let mut two = [0u8; 2];
        s.read(COM1_BASE, 7, &mut two);
        assert_eq!(two, [0x5a, 0xff]);
    }
}
