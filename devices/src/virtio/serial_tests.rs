//! virtio-serial driven as Linux's virtio_console.c drives a multiport device.

use super::*;
use crate::virtio::pci::testing::{TestDriver, TestQueue};
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use vm_memory::GuestAddress;

const WRITE: u16 = VRING_DESC_F_WRITE as u16;
const BUFS: u64 = 0x80000;

#[derive(Default)]
struct Backend {
    log: Mutex<Vec<String>>,
    busy: std::sync::atomic::AtomicBool,
    /// Guest memory and a used ring whose index `round_done` logs.
    watch_used: Mutex<Option<(GuestMemoryMmap<()>, u64)>>,
}

impl SerialBackend for Backend {
    fn guest_open(&self, open: bool) {
        lock(&self.log).push(format!("open {open}"));
    }
    fn guest_data(&self, data: &[u8]) -> std::result::Result<(), Busy> {
        if self.busy.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Busy);
        }
        lock(&self.log).push(format!("data {}", String::from_utf8_lossy(data)));
        Ok(())
    }
    fn round_done(&self) {
        if let Some((mem, used)) = &*lock(&self.watch_used) {
            let idx: u16 = mem.read_obj(GuestAddress(used + 2)).unwrap();
            lock(&self.log).push(format!("round used={idx}"));
        }
    }
}

impl Backend {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.log))
    }
}

struct Rig {
    d: TestDriver<VirtioSerial>,
    q: Vec<TestQueue>,
    backend: Arc<Backend>,
    port: SerialPort,
    /// Next free descriptor per queue, and a buffer area per queue.
    next: Vec<u16>,
}

impl Rig {
    fn new() -> Rig {
        let backend = Arc::new(Backend::default());
        let (dev, mut ports) =
            VirtioSerial::new(vec![("com.redhat.spice.0".into(), backend.clone() as _)]).unwrap();
        let mut d = TestDriver::new(dev);
        assert_eq!(d.device_cfg_read(4, 4), 2, "max_nr_ports");
        d.negotiate(1 << VIRTIO_F_VERSION_1 | 1 << F_MULTIPORT);
        let q = (0..6)
            .map(|i| d.setup_queue(i, 16, 0x10000 + 0x2000 * u64::from(i)))
            .collect();
        d.driver_ok();
        assert_eq!(d.status() & 0x40, 0);
        Rig {
            d,
            q,
            backend,
            port: ports.remove(0),
            next: vec![0; 6],
        }
    }

    fn buf(&self, q: usize, desc: u16) -> u64 {
        BUFS + 0x2000 * q as u64 + 0x100 * u64::from(desc)
    }

    /// Post a buffer on queue `q` (device-writable, or with `data` to read).
    fn post(&mut self, q: usize, len: u32, data: Option<&[u8]>) {
        let i = self.next[q] % 16;
        self.next[q] += 1;
        let addr = self.buf(q, i);
        if let Some(data) = data {
            self.d.mem.write_slice(data, GuestAddress(addr)).unwrap();
        }
        let flags = if data.is_some() { 0 } else { WRITE };
        self.q[q].write_desc(&self.d.mem, i, addr, len, flags, 0);
        self.q[q].push_avail(&self.d.mem, i);
        self.d.notify(&self.q[q]);
    }

    fn control(&mut self, id: u32, event: u16, value: u16) {
        let m = control_msg(id, event, value, &[]);
        self.post(3, 8, Some(&m));
    }

    /// What the device wrote into queue `q`'s buffers.
    fn received(&mut self, q: usize) -> Vec<Vec<u8>> {
        self.d.sync();
        let mut out = Vec::new();
        while let Some((id, len)) = self.q[q].pop_used(&self.d.mem) {
            let mut b = vec![0u8; len as usize];
            let addr = self.buf(q, id as u16);
            self.d.mem.read_slice(&mut b, GuestAddress(addr)).unwrap();
            out.push(b);
        }
        out
    }
}

#[test]
fn multiport_handshake_as_virtio_console_does_it() {
    let mut r = Rig::new();
    for _ in 0..4 {
        r.post(2, 64, None);
    }
    r.control(0, control::DEVICE_READY, 1);
    assert_eq!(r.received(2), [control_msg(1, control::PORT_ADD, 0, &[])]);
    r.control(1, control::PORT_READY, 1);
    assert_eq!(
        r.received(2),
        [
            control_msg(1, control::PORT_NAME, 1, b"com.redhat.spice.0\0"),
            control_msg(1, control::PORT_OPEN, 1, &[]),
        ]
    );
    assert!(r.backend.take().is_empty());
    r.control(1, control::PORT_OPEN, 1);
    assert_eq!(r.backend.take(), ["open true"]);
    // Guest writes reach the backend; a busy backend leaves them in the ring.
    r.post(5, 5, Some(b"hello"));
    assert_eq!(r.backend.take(), ["data hello"]);
    assert_eq!(r.q[5].pop_used(&r.d.mem), Some((0, 0)));
    r.backend
        .busy
        .store(true, std::sync::atomic::Ordering::SeqCst);
    r.post(5, 3, Some(b"abc"));
    r.d.sync();
    assert!(r.backend.take().is_empty());
    assert_eq!(r.q[5].pop_used(&r.d.mem), None);
    r.backend
        .busy
        .store(false, std::sync::atomic::Ordering::SeqCst);
    r.port.resume();
    r.d.sync();
    assert_eq!(r.backend.take(), ["data abc"]);
    // Host data: split over the guest's buffers, `done` once all is there.
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let d2 = done.clone();
    let msg = vec![7u8; 100];
    r.port
        .send(
            msg.clone(),
            Some(Box::new(move || {
                d2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })),
        )
        .unwrap();
    r.post(4, 64, None);
    assert_eq!(r.received(4), [vec![7u8; 64]]);
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 0);
    r.post(4, 64, None);
    assert_eq!(r.received(4), [vec![7u8; 36]]);
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The guest closes the port, then resets: the backend hears both once.
    r.control(1, control::PORT_OPEN, 0);
    r.control(1, control::PORT_OPEN, 1);
    r.d.set_status(0);
    assert_eq!(r.backend.take(), ["open false", "open true", "open false"]);
}

#[test]
fn hostile_control_messages_are_dropped() {
    let mut r = Rig::new();
    r.post(2, 64, None);
    // Ports that do not exist, a failed DEVICE_READY, a short message, an
    // unknown event.
    r.control(7, control::PORT_READY, 1);
    r.control(0, control::PORT_OPEN, 1);
    r.control(u32::MAX, control::PORT_OPEN, 1);
    r.control(0, control::DEVICE_READY, 0);
    r.control(1, 99, 1);
    r.post(3, 4, Some(&[1, 2, 3, 4]));
    r.post(3, 8, None); // device-writable on the transmit queue
    assert!(r.received(2).is_empty());
    assert!(r.backend.take().is_empty());
    // Host data is bounded while nobody reads it (the worker parked, so it
    // cannot drop it for the closed port meanwhile).
    r.d.dev.device_mut().pause();
    assert!(r.port.send(vec![0; MAX_QUEUED], None).is_ok());
    assert_eq!(r.port.send(vec![0; 1], None), Err(Busy));
    r.d.dev.device_mut().resume();
    // Still working.
    r.control(0, control::DEVICE_READY, 1);
    assert_eq!(r.received(2).len(), 1);
    assert_eq!(r.d.status() & 0x40, 0);
}

#[test]
fn queued_host_messages_share_a_guest_buffer_as_one_byte_stream() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let mut r = Rig::new();
    r.post(2, 64, None);
    r.control(0, control::DEVICE_READY, 1);
    r.post(2, 64, None);
    r.post(2, 64, None);
    r.control(1, control::PORT_READY, 1);
    r.control(1, control::PORT_OPEN, 1);
    r.d.sync();
    // Three messages queued before the guest posts a buffer, each with its
    // `done`; the paused worker keeps them queued until then.
    r.d.dev.device_mut().pause();
    let done = Arc::new(AtomicUsize::new(0));
    for (byte, len) in [(1u8, 20usize), (2, 30), (3, 40)] {
        let d = done.clone();
        r.port
            .send(
                vec![byte; len],
                Some(Box::new(move || {
                    d.fetch_add(1, SeqCst);
                })),
            )
            .unwrap();
    }
    r.d.dev.device_mut().resume();
    r.post(4, 64, None);
    // One 64-byte buffer: the first two whole and 14 bytes of the third.
    let mut want = vec![1u8; 20];
    want.extend([2u8; 30]);
    want.extend([3u8; 14]);
    assert_eq!(r.received(4), [want]);
    assert_eq!(done.load(SeqCst), 2, "done for the two whole messages only");
    r.post(4, 64, None);
    assert_eq!(r.received(4), [vec![3u8; 26]]);
    assert_eq!(done.load(SeqCst), 3);
}

#[test]
fn the_backend_hears_the_round_end_after_the_guest_has_its_buffers_back() {
    let mut r = Rig::new();
    r.post(2, 64, None);
    r.control(0, control::DEVICE_READY, 1);
    r.post(2, 64, None);
    r.post(2, 64, None);
    r.control(1, control::PORT_READY, 1);
    r.control(1, control::PORT_OPEN, 1);
    r.d.sync();
    assert_eq!(r.backend.take(), ["open true"]);
    *lock(&r.backend.watch_used) = Some((r.d.mem.clone(), r.q[5].used));
    // Every round that took guest writes ends with the backend (which wakes
    // its consumers then) hearing of it, once those buffers are in the used
    // ring: at each "round used=N", N writes were taken.
    r.post(5, 2, Some(b"ab"));
    r.post(5, 2, Some(b"cd"));
    r.d.sync();
    let log = r.backend.take();
    let mut taken = 0;
    for line in &log {
        if line.starts_with("data ") {
            taken += 1;
        } else {
            assert_eq!(*line, format!("round used={taken}"), "{log:?}");
        }
    }
    assert_eq!(taken, 2, "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("round used=2"));
}
