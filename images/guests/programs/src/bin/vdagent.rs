//! vdagent: a SPICE guest agent's transport, as spice-vdagentd uses it through
//! Linux's virtio_console.c (virtio-serial MULTIPORT, 1af4:1043).
//!
//! 1. Bring-up (`virtcons_probe`, `init_vqs`): VERSION_1 + MULTIPORT, every
//!    queue of the `max_nr_ports` ports, DRIVER_OK, control receive buffers,
//!    DEVICE_READY; for each PORT_ADD, receive buffers and PORT_READY; then
//!    the port's PORT_NAME and the host's PORT_OPEN. The port named
//!    `com.redhat.spice.0` is opened (PORT_OPEN 1, what an open(2) sends).
//! 2. Prints `SPICEBOX-VDAGENT-READY`, then speaks the agent framing
//!    (VDIChunkHeader + VDAgentMessage): every message from the client is
//!    reported as `agent-rx port=<p> type=<t> size=<n> sum=<fnv1a32>`; an
//!    ANNOUNCE_CAPABILITIES is answered with one, any other client message
//!    is echoed back (split into 2048-byte chunks, as the agent does), and
//!    CLIENT_DISCONNECTED from the server ends the test: PORT_OPEN 0 — unless
//!    the host sent a byte on COM1 since the last one (`agent-next` says it
//!    was seen): then the agent waits for the next client.
//!    After a `c` on COM1 (`agent-clipboard-mode`) it plays spice-vdagent's
//!    clipboard side instead of echoing (`clipboard_agent`); after an `f`
//!    (`agent-file-mode`) spice-vdagent's file-transfer side (`FileReceiver`);
//!    after a `b` its clipboard side with selections, a 10 MiB text and a
//!    1 MiB PNG (`big_clipboard`).
//! 3. The QXL card (1b36:0100), when there is one, as Linux's qxl driver
//!    takes a client's monitors config: `qxl_irq_init` unmasks
//!    CLIENT_MONITORS_CONFIG (with DISPLAY, CURSOR, IO_CMD) before the agent
//!    is ready; each CLIENT_MONITORS_CONFIG interrupt (int_pending polled,
//!    taken with xchg and UPDATE_IRQ as the ISR does) is answered as
//!    `qxl_display_read_client_monitors_config` reads the ROM: the count, the
//!    heads, the CRC (crc32 from 0, checked), reported as
//!    `qxl-client-monitors count=<n> crc=<ok|bad> sum=<fnv1a32 of the 1028
//!    config bytes> head0=<top>,<left>,<bottom>,<right>`.
//!
//! 4. A port named `org.spicebox.echo.0`, when the host has one (spicebox's
//!    `--spice-port`, QEMU's spiceport chardev), is opened and echoes
//!    (`EchoPort`).
//!
//! Prints `SPICEBOX-VDAGENT-OK`.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "vdagent/big_clipboard.rs"]
mod big_clipboard;

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::time::Duration;

use core::sync::atomic::{AtomicU32, Ordering};

use guest_rt::mem::Dma;
use guest_rt::mmio::Mmio;
use guest_rt::virtio::{self, VirtioPci, Virtqueue};
use guest_rt::{check, pci, port, println, serial, time, OrFail};

guest_rt::guest!("VDAGENT", main);

const SERIAL_DEVICE_ID: u16 = 0x1043;
const F_MULTIPORT: u64 = 1 << 1;
const PORT_NAME: &[u8] = b"com.redhat.spice.0";
/// A further named port, opened and echoed when the host has one.
const ECHO_PORT_NAME: &[u8] = b"org.spicebox.echo.0";

const DEVICE_READY: u16 = 0;
const PORT_ADD: u16 = 1;
const PORT_READY: u16 = 3;
const PORT_OPEN: u16 = 6;
const PORT_NAME_EVENT: u16 = 7;

const CHUNK_CLIENT: u32 = 1;
const CHUNK_SERVER: u32 = 2;
const MAX_CHUNK: usize = 2048;
const ANNOUNCE_CAPABILITIES: u32 = 6;
const CLIENT_DISCONNECTED: u32 = 13;
const CLIPBOARD: u32 = 4;
const CLIPBOARD_GRAB: u32 = 7;
const CLIPBOARD_REQUEST: u32 = 8;
const CAP_CLIPBOARD_BY_DEMAND: u32 = 5;
const UTF8_TEXT: u32 = 1;
const FILE_XFER_START: u32 = 10;
const FILE_XFER_STATUS: u32 = 11;
const FILE_XFER_DATA: u32 = 12;
const XFER_CAN_SEND_DATA: u32 = 0;
const XFER_ERROR: u32 = 2;
const XFER_SUCCESS: u32 = 3;
/// Bytes the guest's clipboard text has: two agent chunks towards the client.
const GUEST_CLIPBOARD_LEN: usize = 3000;

/// The most a message header makes the deframer reserve ahead: the largest
/// clipboard the tests send (10 MiB) and some.
const MAX_RESERVE: usize = 16 << 20;

const QUEUE_SIZE: u16 = 32;
const BUF: u64 = 4096;
const WAIT: Duration = Duration::from_secs(5);
const CLIENT_WAIT: Duration = Duration::from_secs(120);

// QXL: QXLRom and QXLRam offsets, the UPDATE_IRQ port, interrupt bits.
const QXL_ROM_MAGIC: u32 = 0x4f52_5851;
const QXL_RAM_MAGIC: u32 = 0x4152_5851;
const QXL_ROM_RAM_HEADER_OFFSET: u64 = 44;
const QXL_ROM_CLIENT_MONITORS_CONFIG_CRC: u64 = 128;
const QXL_ROM_CLIENT_MONITORS_CONFIG: u64 = 132;
/// sizeof(QXLClientMonitorsConfig): count, padding, 64 QXLURect.
const QXL_CLIENT_MONITORS_CONFIG_SIZE: usize = 4 + 64 * 16;
const QXL_INT_PENDING: u64 = 4;
const QXL_INT_MASK: u64 = 8;
const QXL_IO_UPDATE_IRQ: u16 = 3;
/// QXL_INTERRUPT_MASK: DISPLAY | CURSOR | IO_CMD | CLIENT_MONITORS_CONFIG.
const QXL_INTERRUPT_MASK: u32 = 1 | 2 | 4 | 32;
const QXL_INTERRUPT_CLIENT_MONITORS_CONFIG: u32 = 32;

/// Linux's crc32_le from 0 (what the qxl driver checks the config with).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// The QXL card as far as client monitors configs go.
struct Qxl {
    rom: Mmio,
    ram: Mmio,
    hdr: u64,
    io: u16,
}

impl Qxl {
    /// qxl_device_init's checks, then qxl_irq_init's int_mask.
    fn init() -> Option<Qxl> {
        let f = pci::find(0x1b36, 0x0100)?;
        f.enable();
        let bars: Vec<pci::Bar> = f.bars().collect();
        let bar = |i: u8| *bars.iter().find(|b| b.index == i).or_fail("qxl-bars");
        let rom = bar(2).mmio();
        check!(
            rom.read32(0) == QXL_ROM_MAGIC,
            "qxl-rom",
            "{:#x}",
            rom.read32(0)
        );
        let hdr = u64::from(rom.read32(QXL_ROM_RAM_HEADER_OFFSET));
        let ram = bar(0).mmio();
        check!(
            hdr + 8192 <= ram.len(),
            "qxl-rom",
            "ram_header_offset {hdr:#x}"
        );
        check!(
            ram.read32(hdr) == QXL_RAM_MAGIC,
            "qxl-ram",
            "{:#x}",
            ram.read32(hdr)
        );
        ram.write32(hdr + QXL_INT_MASK, QXL_INTERRUPT_MASK);
        println!("qxl int_mask={QXL_INTERRUPT_MASK:#x}");
        Some(Qxl {
            rom,
            ram,
            hdr,
            io: bar(3).port(),
        })
    }

    /// The ISR's xchg(int_pending, 0) and UPDATE_IRQ, when anything is pending.
    fn take_interrupts(&self) -> u32 {
        if self.ram.read32(self.hdr + QXL_INT_PENDING) == 0 {
            return 0;
        }
        let addr = self.ram.base() + self.hdr + QXL_INT_PENDING;
        // SAFETY: int_pending in the card's RAM BAR, 4-byte aligned.
        let pending = unsafe { (*(addr as *const AtomicU32)).swap(0, Ordering::SeqCst) };
        port::outb(self.io + QXL_IO_UPDATE_IRQ, 0);
        pending
    }

    /// Report the ROM's client monitors config, as the driver reads it.
    fn report_client_monitors_config(&self) {
        let crc = self.rom.read32(QXL_ROM_CLIENT_MONITORS_CONFIG_CRC);
        let mut cfg = alloc::vec![0u8; QXL_CLIENT_MONITORS_CONFIG_SIZE];
        for (k, word) in cfg.chunks_exact_mut(4).enumerate() {
            let v = self
                .rom
                .read32(QXL_ROM_CLIENT_MONITORS_CONFIG + 4 * k as u64);
            word.copy_from_slice(&v.to_le_bytes());
        }
        let count = u16::from_le_bytes([cfg[0], cfg[1]]);
        let ok = if crc32(&cfg) == crc { "ok" } else { "bad" };
        println!(
            "qxl-client-monitors count={count} crc={ok} sum={:08x} head0={},{},{},{}",
            fnv1a32(&cfg),
            u32_at(&cfg, 4),
            u32_at(&cfg, 8),
            u32_at(&cfg, 12),
            u32_at(&cfg, 16)
        );
    }
}

fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A receive queue full of BUF-byte buffers (`fill_queue`).
struct RxQueue {
    q: Virtqueue,
    bufs: Dma,
    head_buf: Vec<u16>,
}

impl RxQueue {
    fn new(dev: &VirtioPci, q: Virtqueue) -> RxQueue {
        let mut rx = RxQueue {
            bufs: Dma::new(BUF * u64::from(q.size)),
            head_buf: alloc::vec![0; usize::from(q.size)],
            q,
        };
        for i in 0..rx.q.size {
            rx.post(i);
        }
        rx.q.publish();
        dev.notify(&rx.q);
        rx
    }

    fn post(&mut self, i: u16) {
        let addr = self.bufs.addr() + BUF * u64::from(i);
        let head = self.q.add(&[(addr, BUF as u32, true)]).or_fail("rx-full");
        self.head_buf[usize::from(head)] = i;
    }

    /// The next buffer the device filled, given back to it afterwards.
    fn take(&mut self, dev: &VirtioPci) -> Option<Vec<u8>> {
        let (head, len) = self.q.pop_used()?;
        check!(u64::from(len) <= BUF, "rx-len", "used len {len}");
        let i = self.head_buf[usize::from(head)];
        let mut data = alloc::vec![0u8; len as usize];
        self.bufs.copy_to(BUF * u64::from(i), &mut data);
        self.post(i);
        self.q.publish();
        dev.notify(&self.q);
        Some(data)
    }
}

/// Bytes per transmit buffer: what virtio_console's port_fops_write takes
/// from one write(2).
const TX_PIECE: usize = 32 << 10;

/// A port's transmit queue as virtio_console's `port_fops_write` drives it:
/// each write of up to [`TX_PIECE`] bytes is copied into its own buffer,
/// added and kicked, and the write returns at once (`__send_to_port` with
/// `nonblock`); buffers come back in `reclaim_consumed_buffers`, and a writer
/// waits only while the queue is full (`will_write_block`).
struct TxQueue {
    q: Virtqueue,
    bufs: Dma,
    /// Buffer slot of each in-flight head; free slots in `free`.
    head_buf: Vec<u16>,
    free: Vec<u16>,
}

impl TxQueue {
    fn new(q: Virtqueue) -> TxQueue {
        TxQueue {
            bufs: Dma::new(TX_PIECE as u64 * u64::from(q.size)),
            head_buf: alloc::vec![0; usize::from(q.size)],
            free: (0..q.size).rev().collect(),
            q,
        }
    }

    fn reclaim(&mut self) {
        while let Some((head, _)) = self.q.pop_used() {
            self.free.push(self.head_buf[usize::from(head)]);
        }
    }

    fn write(&mut self, dev: &VirtioPci, data: &[u8]) {
        for piece in data.chunks(TX_PIECE) {
            self.reclaim();
            if self.free.is_empty() {
                let q = &self.q;
                let room = time::wait_until(WAIT, || q.has_used());
                check!(room, "tx-used", "device took none of {} buffers", q.size);
                self.reclaim();
            }
            let slot = self.free.pop().or_fail("tx-slot");
            let at = TX_PIECE as u64 * u64::from(slot);
            self.bufs.copy_from(at, piece);
            let head = self
                .q
                .add(&[(self.bufs.addr() + at, piece.len() as u32, false)])
                .or_fail("tx-full");
            self.head_buf[usize::from(head)] = slot;
            if self.q.publish() {
                dev.notify(&self.q);
            }
        }
    }

    /// Waits until the device has every buffer (before the port closes).
    fn drain(&mut self) {
        let deadline = time::Deadline::after(WAIT);
        while self.q.in_flight() != 0 {
            check!(
                !deadline.passed(),
                "tx-drain",
                "{} buffers",
                self.q.in_flight()
            );
            self.reclaim();
        }
    }
}

/// Write `data` on the control transmit queue, at most [`TX_PIECE`] bytes a
/// buffer, waiting until the device has each (`__send_control_msg` spins).
fn send(dev: &VirtioPci, q: &mut Virtqueue, data: &[u8]) {
    let buf = Dma::new(data.len().clamp(1, TX_PIECE) as u64);
    for piece in data.chunks(TX_PIECE) {
        buf.copy_from(0, piece);
        q.add(&[(buf.addr(), piece.len() as u32, false)])
            .or_fail("tx-full");
        q.publish();
        dev.notify(q);
        let done = time::wait_until(WAIT, || q.pop_used().is_some());
        check!(done, "tx-used", "device did not take {} bytes", piece.len());
    }
}

fn control(dev: &VirtioPci, ctrl_tx: &mut Virtqueue, id: u32, event: u16, value: u16) {
    let mut m = [0u8; 8];
    m[0..4].copy_from_slice(&id.to_le_bytes());
    m[4..6].copy_from_slice(&event.to_le_bytes());
    m[6..8].copy_from_slice(&value.to_le_bytes());
    send(dev, ctrl_tx, &m);
}

/// One agent message from the client, in chunks (the VDIChunkHeader's port
/// and the whole VDAgentMessage).
fn message(msg_type: u32, data: &[u8]) -> Vec<u8> {
    // Both sized up front: the guest's allocator never reuses memory, so a
    // growing Vec leaves every smaller copy behind in fresh pages.
    let mut m = Vec::with_capacity(20 + data.len());
    m.extend_from_slice(&1u32.to_le_bytes()); // protocol
    m.extend_from_slice(&msg_type.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes()); // opaque
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(data);
    let mut out = Vec::with_capacity(m.len() + 8 * m.len().div_ceil(MAX_CHUNK));
    for piece in m.chunks(MAX_CHUNK) {
        out.extend_from_slice(&CHUNK_CLIENT.to_le_bytes());
        out.extend_from_slice(&(piece.len() as u32).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// The text the guest puts on the clipboard (ASCII, so UTF-8).
fn guest_clipboard_text() -> Vec<u8> {
    (0..GUEST_CLIPBOARD_LEN)
        .map(|i| b'a' + ((i * 7 + i / 256) % 26) as u8)
        .collect()
}

/// spice-vdagent's clipboard side, without selections (the agent announces
/// only CLIPBOARD_BY_DEMAND): the answer to each client message.
/// ANNOUNCE_CAPABILITIES: our capabilities, then a GRAB of UTF8_TEXT (the
/// guest owns the clipboard); REQUEST: the text as CLIPBOARD; the client's
/// GRAB: a REQUEST for its first type; its CLIPBOARD: reported as
/// `agent-clipboard type=<t> size=<n> sum=<fnv1a32>`.
fn clipboard_agent(t: u32, body: &[u8]) -> Vec<Vec<u8>> {
    match t {
        ANNOUNCE_CAPABILITIES => {
            let mut caps = 0u32.to_le_bytes().to_vec();
            caps.extend_from_slice(&(1u32 << CAP_CLIPBOARD_BY_DEMAND).to_le_bytes());
            alloc::vec![
                message(ANNOUNCE_CAPABILITIES, &caps),
                message(CLIPBOARD_GRAB, &UTF8_TEXT.to_le_bytes()),
            ]
        }
        CLIPBOARD_REQUEST => {
            check!(body.len() == 4, "clipboard-request", "{} bytes", body.len());
            let kind = u32_at(body, 0);
            println!("agent-clipboard-request type={kind}");
            let mut data = kind.to_le_bytes().to_vec();
            if kind == UTF8_TEXT {
                data.extend_from_slice(&guest_clipboard_text());
            }
            alloc::vec![message(CLIPBOARD, &data)]
        }
        CLIPBOARD_GRAB => {
            check!(
                body.len() >= 4 && body.len().is_multiple_of(4),
                "clipboard-grab",
                "{} bytes",
                body.len()
            );
            let kind = u32_at(body, 0);
            println!("agent-clipboard-grab type={kind}");
            alloc::vec![message(CLIPBOARD_REQUEST, &kind.to_le_bytes())]
        }
        CLIPBOARD => {
            check!(body.len() >= 4, "clipboard", "{} bytes", body.len());
            let data = &body[4..];
            println!(
                "agent-clipboard type={} size={} sum={:08x}",
                u32_at(body, 0),
                data.len(),
                fnv1a32(data)
            );
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// A VDAgentFileXferStatusMessage for transfer `id`.
fn xfer_status(id: u32, result: u32) -> Vec<u8> {
    let mut b = id.to_le_bytes().to_vec();
    b.extend_from_slice(&result.to_le_bytes());
    message(FILE_XFER_STATUS, &b)
}

/// The value of `key=` in a GKeyFile text (the START message's metadata).
fn keyfile_value<'a>(text: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    text.split(|&b| b == b'\n' || b == 0)
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(b"="))
}

/// One transfer in progress: what START announced and what DATA brought.
struct Transfer {
    id: u32,
    name: Vec<u8>,
    size: u64,
    got: u64,
    sum: u32,
}

/// spice-vdagent's file-transfer side (vdagent-file-xfers.c), the file kept
/// as a checksum: FILE_XFER_START (id + keyfile with name and size) is
/// answered with STATUS CAN_SEND_DATA; each FILE_XFER_DATA (id, size, bytes)
/// is added; when `size` bytes are in, `agent-file id=<id> name=<name>
/// size=<n> sum=<fnv1a32>` is printed and STATUS SUCCESS sent. A DATA for an
/// unknown transfer or past the announced size is a STATUS ERROR.
#[derive(Default)]
struct FileReceiver {
    xfer: Option<Transfer>,
}

impl FileReceiver {
    fn message(&mut self, t: u32, body: &[u8]) -> Vec<Vec<u8>> {
        match t {
            ANNOUNCE_CAPABILITIES => {
                let mut caps = 0u32.to_le_bytes().to_vec();
                caps.extend_from_slice(&(1u32 << CAP_CLIPBOARD_BY_DEMAND).to_le_bytes());
                alloc::vec![message(ANNOUNCE_CAPABILITIES, &caps)]
            }
            FILE_XFER_START => {
                check!(body.len() >= 4, "xfer-start", "{} bytes", body.len());
                let id = u32_at(body, 0);
                let meta = &body[4..];
                let name = keyfile_value(meta, b"name").unwrap_or(b"?").to_vec();
                let size = keyfile_value(meta, b"size")
                    .and_then(|v| core::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let Some(size) = size else {
                    println!("agent-file-start id={id} without a size");
                    return alloc::vec![xfer_status(id, XFER_ERROR)];
                };
                println!(
                    "agent-file-start id={id} name={} size={size}",
                    core::str::from_utf8(&name).unwrap_or("?")
                );
                self.xfer = Some(Transfer {
                    id,
                    name,
                    size,
                    got: 0,
                    sum: 0x811c_9dc5,
                });
                alloc::vec![xfer_status(id, XFER_CAN_SEND_DATA)]
            }
            FILE_XFER_DATA => {
                check!(body.len() >= 12, "xfer-data", "{} bytes", body.len());
                let id = u32_at(body, 0);
                let size = u64::from(u32_at(body, 4)) | (u64::from(u32_at(body, 8)) << 32);
                let data = &body[12..];
                let Some(x) = self.xfer.as_mut().filter(|x| x.id == id) else {
                    println!("agent-file-data for unknown id={id}");
                    return alloc::vec![xfer_status(id, XFER_ERROR)];
                };
                if size != data.len() as u64 || x.got + size > x.size {
                    println!(
                        "agent-file-data id={id} size={size} len={} got={}",
                        data.len(),
                        x.got
                    );
                    self.xfer = None;
                    return alloc::vec![xfer_status(id, XFER_ERROR)];
                }
                x.sum = data
                    .iter()
                    .fold(x.sum, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
                x.got += size;
                if x.got < x.size {
                    return Vec::new();
                }
                println!(
                    "agent-file id={id} name={} size={} sum={:08x}",
                    core::str::from_utf8(&x.name).unwrap_or("?"),
                    x.got,
                    x.sum
                );
                self.xfer = None;
                alloc::vec![xfer_status(id, XFER_SUCCESS)]
            }
            FILE_XFER_STATUS => {
                check!(body.len() >= 8, "xfer-status", "{} bytes", body.len());
                println!(
                    "agent-file-status id={} result={}",
                    u32_at(body, 0),
                    u32_at(body, 4)
                );
                self.xfer = None;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reassembles messages from the port's byte stream: chunks, then messages
/// across chunks of the same port.
#[derive(Default)]
struct Deframer {
    stream: Vec<u8>,
    /// (port, message bytes so far)
    msg: Option<(u32, Vec<u8>)>,
}

impl Deframer {
    /// Complete messages (port, type, data) in `data`.
    fn feed(&mut self, data: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        self.stream.extend_from_slice(data);
        let mut out = Vec::new();
        while self.stream.len() >= 8 {
            let port = u32_at(&self.stream, 0);
            let size = u32_at(&self.stream, 4) as usize;
            check!(size <= MAX_CHUNK, "chunk-size", "chunk of {size} bytes");
            if self.stream.len() < 8 + size {
                break;
            }
            let chunk: Vec<u8> = self.stream.drain(..8 + size).skip(8).collect();
            let (p, mut msg) = self.msg.take().unwrap_or((port, Vec::new()));
            check!(
                p == port,
                "chunk-port",
                "message on {p} continued on {port}"
            );
            let had = msg.len();
            msg.extend_from_slice(&chunk);
            if msg.len() >= 20 {
                let need = 20 + u32_at(&msg, 16) as usize;
                check!(msg.len() <= need, "msg-size", "{} > {need}", msg.len());
                if had < 20 {
                    // Room for the whole message at once (the header says how
                    // much): growing by doubling left 2x its size behind in
                    // fresh pages, which the host must fault in and zero.
                    // Bounded: the header is the client's word.
                    msg.reserve_exact((need - msg.len()).min(MAX_RESERVE));
                }
                if msg.len() == need {
                    let t = u32_at(&msg, 4);
                    // In place, not split_off: no second copy in fresh pages.
                    msg.drain(..20);
                    out.push((port, t, msg));
                    continue;
                }
            }
            self.msg = Some((p, msg));
        }
        out
    }
}

/// The port named [`ECHO_PORT_NAME`] (a `--spice-port` / spiceport chardev):
/// every byte from the host is written back, and the running count and
/// checksum reported as `port-echo total=<n> sum=<fnv1a32>`.
struct EchoPort {
    rx: RxQueue,
    tx: TxQueue,
    total: usize,
    sum: u32,
}

impl EchoPort {
    fn poll(&mut self, dev: &VirtioPci) {
        let Some(data) = self.rx.take(dev) else {
            return;
        };
        self.total += data.len();
        self.sum = data.iter().fold(self.sum, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        println!("port-echo total={} sum={:08x}", self.total, self.sum);
        self.tx.write(dev, &data);
    }
}

/// What the control queue told us.
#[derive(Default)]
struct Ports {
    /// Our port's id, once PORT_NAME named it com.redhat.spice.0.
    named: Option<u32>,
    /// Receive queues of added ports not named yet, by id.
    added: Vec<(u32, RxQueue)>,
    rx: Option<RxQueue>,
    host_open: bool,
    echo: Option<EchoPort>,
}

impl Ports {
    fn control(
        &mut self,
        dev: &VirtioPci,
        ctrl_tx: &mut Virtqueue,
        m: &[u8],
        max_ports: u32,
        take: &mut impl FnMut(u16) -> Virtqueue,
    ) {
        check!(m.len() >= 8, "control-len", "{}", m.len());
        let id = u32_at(m, 0);
        let event = u16::from_le_bytes([m[4], m[5]]);
        let value = u16::from_le_bytes([m[6], m[7]]);
        println!("vserial control id={id} event={event} value={value}");
        check!(id >= 1 && id < max_ports, "port-id", "{id}");
        match event {
            PORT_ADD => {
                self.added
                    .push((id, RxQueue::new(dev, take(2 * id as u16 + 2))));
                control(dev, ctrl_tx, id, PORT_READY, 1);
            }
            PORT_NAME_EVENT => {
                // QEMU ends the name with a NUL; Linux takes it up to one.
                let name = m[8..].split(|&b| b == 0).next().unwrap_or(&[]);
                let at = self.added.iter().position(|(i, _)| *i == id);
                let rx = self.added.swap_remove(at.or_fail("port-name-unadded")).1;
                if name == ECHO_PORT_NAME {
                    let tx = TxQueue::new(take(2 * id as u16 + 3));
                    control(dev, ctrl_tx, id, PORT_OPEN, 1);
                    println!("port-echo open id={id}");
                    self.echo = Some(EchoPort {
                        rx,
                        tx,
                        total: 0,
                        sum: 0x811c_9dc5,
                    });
                    return;
                }
                check!(name == PORT_NAME, "port-name", "{:?}", &m[8..]);
                self.named = Some(id);
                self.rx = Some(rx);
            }
            PORT_OPEN if Some(id) == self.named => self.host_open = value == 1,
            _ => {}
        }
    }
}

fn main() {
    let qxl = Qxl::init();
    let dev = VirtioPci::find(SERIAL_DEVICE_ID).or_fail("pci-scan");
    let features = dev
        .negotiate(virtio::F_VERSION_1 | F_MULTIPORT)
        .or_fail("features");
    check!(features & F_MULTIPORT != 0, "multiport", "not offered");
    let max_ports = dev.device_cfg().read32(4);
    check!((1..=31).contains(&max_ports), "max-nr-ports", "{max_ports}");
    let nq = 2 * (max_ports as u16 + 1);
    check!(dev.num_queues() >= nq, "num-queues", "{}", dev.num_queues());
    let mut queues: Vec<Option<Virtqueue>> = (0..nq)
        .map(|i| {
            let q = dev.setup_queue(i, QUEUE_SIZE).or_fail("queue");
            dev.enable_queue(&q);
            Some(q)
        })
        .collect();
    dev.driver_ok();
    let mut take = |i: u16| queues[usize::from(i)].take().or_fail("queue-taken");
    let mut ctrl_rx = RxQueue::new(&dev, take(2));
    let mut ctrl_tx = take(3);
    control(&dev, &mut ctrl_tx, 0, DEVICE_READY, 1);

    // PORT_ADD, then PORT_NAME for our port. The host's PORT_OPEN may come
    // now (spicebox) or once a SPICE client is there (QEMU's spicevmc).
    let mut ports = Ports::default();
    let deadline = time::Deadline::after(WAIT);
    while ports.named.is_none() {
        check!(!deadline.passed(), "handshake", "no PORT_NAME");
        if let Some(m) = ctrl_rx.take(&dev) {
            ports.control(&dev, &mut ctrl_tx, &m, max_ports, &mut take);
        }
    }
    let id = ports.named.unwrap_or(0);
    let mut rx = ports.rx.take().or_fail("port-rx");
    let mut tx = TxQueue::new(take(2 * id as u16 + 3));
    control(&dev, &mut ctrl_tx, id, PORT_OPEN, 1);
    println!("SPICEBOX-VDAGENT-READY");

    let mut deframer = Deframer::default();
    let mut received = 0;
    let mut next_client = false;
    let mut clipboard = false;
    let mut files: Option<FileReceiver> = None;
    let mut big: Option<big_clipboard::BigClipboard> = None;
    let deadline = time::Deadline::after(CLIENT_WAIT);
    loop {
        check!(!deadline.passed(), "client-wait", "{received} messages");
        if let Some(q) = &qxl {
            if q.take_interrupts() & QXL_INTERRUPT_CLIENT_MONITORS_CONFIG != 0 {
                q.report_client_monitors_config();
            }
        }
        match serial::read_byte(Duration::ZERO) {
            Some(b'c') if !clipboard => {
                clipboard = true;
                println!("agent-clipboard-mode");
            }
            Some(b'b') if big.is_none() => {
                big = Some(big_clipboard::BigClipboard::new());
                println!("agent-big-clipboard-mode");
            }
            Some(b'f') if files.is_none() => {
                files = Some(FileReceiver::default());
                println!("agent-file-mode");
            }
            Some(_) if !next_client => {
                next_client = true;
                println!("agent-next");
            }
            _ => {}
        }
        if let Some(m) = ctrl_rx.take(&dev) {
            ports.control(&dev, &mut ctrl_tx, &m, max_ports, &mut take);
        }
        if let Some(e) = &mut ports.echo {
            e.poll(&dev);
        }
        let Some(data) = rx.take(&dev) else {
            continue;
        };
        for (p, t, body) in deframer.feed(&data) {
            received += 1;
            // 80 DATA messages per 5 MiB: their progress lines would only slow
            // the serial port.
            if t != FILE_XFER_DATA {
                println!(
                    "agent-rx port={p} type={t} size={} sum={:08x}",
                    body.len(),
                    fnv1a32(&body)
                );
            }
            if p == CHUNK_SERVER && t == CLIENT_DISCONNECTED && next_client {
                next_client = false;
                println!("agent-client-gone");
                continue;
            }
            if p == CHUNK_SERVER && t == CLIENT_DISCONNECTED {
                tx.drain();
                control(&dev, &mut ctrl_tx, id, PORT_OPEN, 0);
                println!("agent-done messages={received}");
                dev.reset();
                return;
            }
            check!(p == CHUNK_CLIENT, "chunk-port", "{p}");
            // virtio_console blocks writers until the host side is open.
            check!(ports.host_open, "host-open", "client data before PORT_OPEN");
            let replies: Vec<Cow<'static, [u8]>> = if let Some(b) = &mut big {
                b.message(t, &body)
            } else {
                let owned = if let Some(f) = &mut files {
                    f.message(t, &body)
                } else if clipboard {
                    clipboard_agent(t, &body)
                } else if t == ANNOUNCE_CAPABILITIES {
                    // request = 0, no capabilities.
                    alloc::vec![message(ANNOUNCE_CAPABILITIES, &[0; 8])]
                } else {
                    alloc::vec![message(t, &body)]
                };
                owned.into_iter().map(Cow::Owned).collect()
            };
            for reply in replies {
                tx.write(&dev, &reply);
            }
        }
    }
}
