//! virtio-blk (device type 2): one request queue over a `DiskImage`.
//!
//! A request is a descriptor chain: a 16-byte device-readable header (type,
//! ioprio, sector), data, and a final device-writable status byte. We accept any
//! split of header and data across descriptors (virtio 1.x has no fixed framing),
//! but device-readable descriptors must come before device-writable ones and the
//! status byte is the last byte of the last descriptor.
//!
//! Every problem with one request fails just that request (IOERR, or dropped with
//! a zero-length used entry when there is no status byte to write) and processing
//! goes on. Only a broken ring (bad avail index, head index out of range) is an
//! error for the transport, which then marks the device as needing a reset.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, warn};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};
use vmm_sys_util::eventfd::EventFd;

use super::device::{next_chain, queue_needs_interrupt, ActivateContext};
use super::device::{VirtioDevice, VirtioInterrupt};
use super::disk::{open_disk, DiskImage};
use crate::worker::{Token, Worker, WorkerEvents, WorkerHandler};
use crate::Result;

pub const QUEUE_SIZE: u16 = 256;
/// Data segments per request: the queue minus header and status descriptors.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest data segment we advertise. With SEG_MAX it bounds a request; SeaBIOS
/// uses SEG_MAX * SIZE_MAX as its single-buffer transfer size.
pub const SIZE_MAX: u32 = 128 * 1024;
/// Requests with more data than this fail, whatever the guest claims.
pub const MAX_REQUEST_BYTES: u64 = SEG_MAX as u64 * SIZE_MAX as u64;
pub const SECTOR_SIZE: u64 = 512;
/// PCI class: mass storage, SCSI (what QEMU uses for virtio-blk).
const PCI_CLASS_STORAGE_SCSI: u32 = 0x010000;
const HEADER_LEN: usize = 16;
/// Disk I/O goes through this bounce buffer, so memory use does not follow the
/// guest's request sizes.
const BOUNCE_LEN: usize = 128 * 1024;
/// struct virtio_blk_config up to blk_size; later fields read as zero.
const CONFIG_LEN: usize = 24;

/// Why one request failed.
enum Fail {
    IoErr(String),
    Unsupported(u32),
}

fn ioerr(why: impl Into<String>) -> Fail {
    Fail::IoErr(why.into())
}

/// The disk and what the request handlers need of the device state.
struct Backend {
    disk: Box<dyn DiskImage>,
    read_only: bool,
    /// In 512-byte sectors.
    capacity: u64,
    serial: [u8; VIRTIO_BLK_ID_BYTES as usize],
    /// FLUSH negotiated: the guest flushes when it needs to. Otherwise we are
    /// write-through and sync after every write (SeaBIOS does not ask for FLUSH).
    writeback: bool,
    /// Written since the last flush: a worker stopping flushes then.
    unflushed: bool,
    bounce: Vec<u8>,
}

impl Backend {
    /// Handle one chain; returns the used length (bytes written to the guest).
    fn handle(
        &mut self,
        mem: &GuestMemoryMmap<()>,
        chain: DescriptorChain<&GuestMemoryMmap<()>>,
    ) -> u32 {
        let head = chain.head_index();
        // Iteration stops after queue-size descriptors, at an out-of-range `next`
        // or an unreadable descriptor; any of those leaves NEXT set on the last one.
        // (virtio-queue's Reader/Writer stop there silently, so look first.)
        let descs: Vec<Descriptor> = chain.clone().collect();
        let Some(last) = descs.last().copied() else {
            warn!("virtio-blk: empty or unreadable chain at head {head}; dropped");
            return 0;
        };
        if last.has_next() {
            warn!("virtio-blk: chain at head {head} loops or is cut short; dropped");
            return 0;
        }
        if !last.is_write_only() || last.len() == 0 {
            warn!("virtio-blk: request at head {head} has no status byte; dropped");
            return 0;
        }
        let status_addr = GuestAddress(last.addr().0.wrapping_add(last.len() as u64 - 1));
        let status_ok = last.addr().0.checked_add(last.len() as u64).is_some()
            && mem.check_range(status_addr, 1, Permissions::Write);
        if !status_ok {
            warn!(
                "virtio-blk: status byte at {:#x} outside guest memory; dropped",
                status_addr.0
            );
            return 0;
        }
        let (status, written) = match self.execute(mem, &descs) {
            Ok(n) => (VIRTIO_BLK_S_OK, n),
            Err(Fail::IoErr(why)) => {
                warn!("virtio-blk: request at head {head} failed: {why}");
                (VIRTIO_BLK_S_IOERR, 0)
            }
            Err(Fail::Unsupported(t)) => {
                debug!("virtio-blk: unsupported request type {t}");
                (VIRTIO_BLK_S_UNSUPP, 0)
            }
        };
        match mem.write_obj(status as u8, status_addr) {
            Ok(()) => written + 1,
            Err(_) => 0,
        }
    }

    /// Run a request whose status byte is known good; returns data bytes written
    /// to the guest. `descs` is the chain as `handle` fetched it, once: only
    /// those addresses and lengths are used, whatever the guest writes to its
    /// descriptor table meanwhile.
    fn execute(
        &mut self,
        mem: &GuestMemoryMmap<()>,
        descs: &[Descriptor],
    ) -> std::result::Result<u32, Fail> {
        // Device-readable descriptors come first: the spec's order is ours to
        // enforce.
        let first_w = descs
            .iter()
            .position(|d| d.is_write_only())
            .unwrap_or(descs.len());
        if descs[first_w..].iter().any(|d| !d.is_write_only()) {
            return Err(ioerr(
                "device-readable descriptor after a device-writable one",
            ));
        }
        let (readable, writable) = descs.split_at(first_w);
        let total = |ds: &[Descriptor]| ds.iter().map(|d| u64::from(d.len())).sum::<u64>();
        let readable_len = total(readable)
            .checked_sub(HEADER_LEN as u64)
            .ok_or_else(|| ioerr("header shorter than 16 bytes"))?;
        // The status byte (the last writable byte) is written by `handle`.
        let writable_len = total(writable) - 1;
        let header = segments(readable, 0, HEADER_LEN as u64);
        let readable = segments(readable, HEADER_LEN as u64, readable_len);
        let writable = segments(writable, 0, writable_len);
        // Every buffer inside guest memory before the disk is touched.
        let inside = |segs: &[(GuestAddress, usize)], access| {
            segs.iter().all(|&(a, n)| mem.check_range(a, n, access))
        };
        if !inside(&header, Permissions::Read) || !inside(&readable, Permissions::Read) {
            return Err(ioerr("device-readable buffer outside guest memory"));
        }
        if !inside(&writable, Permissions::Write) {
            return Err(ioerr("device-writable buffer outside guest memory"));
        }
        let mut hdr = [0u8; HEADER_LEN];
        let mut at = 0;
        for (addr, n) in header {
            mem.read_slice(&mut hdr[at..at + n], addr)
                .map_err(|e| ioerr(format!("guest read: {e}")))?;
            at += n;
        }
        let req_type = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap());

        match req_type {
            VIRTIO_BLK_T_IN => {
                if readable_len != 0 {
                    return Err(ioerr("read request with device-readable data"));
                }
                let mut offset = self.check_range(sector, writable_len)?;
                for (addr, n) in writable {
                    self.disk
                        .read_to_guest(mem, addr, n, offset, &mut self.bounce)
                        .map_err(|e| ioerr(format!("disk read at {offset:#x}: {e}")))?;
                    offset += n as u64;
                }
                Ok(writable_len as u32)
            }
            VIRTIO_BLK_T_OUT => {
                if writable_len != 0 {
                    return Err(ioerr("write request with device-writable data"));
                }
                if self.read_only {
                    return Err(ioerr("write to a read-only disk"));
                }
                let mut offset = self.check_range(sector, readable_len)?;
                self.unflushed = true;
                for (addr, n) in readable {
                    self.disk
                        .write_from_guest(mem, addr, n, offset, &mut self.bounce)
                        .map_err(|e| ioerr(format!("disk write at {offset:#x}: {e}")))?;
                    offset += n as u64;
                }
                if !self.writeback {
                    self.disk.flush().map_err(|e| ioerr(format!("sync: {e}")))?;
                    self.unflushed = false;
                }
                Ok(0)
            }
            VIRTIO_BLK_T_FLUSH => {
                if readable_len != 0 || writable_len != 0 {
                    return Err(ioerr("flush request with data"));
                }
                // Durable before the request completes: that is what FLUSH promises.
                self.disk
                    .flush()
                    .map_err(|e| ioerr(format!("flush: {e}")))?;
                self.unflushed = false;
                Ok(0)
            }
            VIRTIO_BLK_T_GET_ID => {
                if readable_len != 0 || writable_len == 0 {
                    return Err(ioerr("bad GET_ID buffers"));
                }
                let mut left = &self.serial[..(writable_len as usize).min(self.serial.len())];
                let n = left.len();
                for (addr, len) in writable {
                    let k = len.min(left.len());
                    mem.write_slice(&left[..k], addr)
                        .map_err(|e| ioerr(format!("guest write: {e}")))?;
                    left = &left[k..];
                }
                Ok(n as u32)
            }
            t => Err(Fail::Unsupported(t)),
        }
    }

    /// Byte offset of a `len`-byte transfer at `sector`, if it is a whole number
    /// of sectors inside the disk and within the request size cap.
    fn check_range(&self, sector: u64, len: u64) -> std::result::Result<u64, Fail> {
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(ioerr(format!("data length {len} not a multiple of 512")));
        }
        if len > MAX_REQUEST_BYTES {
            return Err(ioerr(format!("data length {len} over {MAX_REQUEST_BYTES}")));
        }
        match sector.checked_add(len / SECTOR_SIZE) {
            Some(end) if end <= self.capacity => Ok(sector * SECTOR_SIZE),
            _ => Err(ioerr(format!(
                "sectors {sector}+{} beyond capacity {}",
                len / SECTOR_SIZE,
                self.capacity
            ))),
        }
    }
}

/// The buffers of `descs` as (address, length), skipping their first `skip`
/// bytes and covering the `take` after that (which the caller computed from
/// the same lengths). An address that wraps is kept as is: the range check
/// against guest memory refuses it.
fn segments(descs: &[Descriptor], mut skip: u64, mut take: u64) -> Vec<(GuestAddress, usize)> {
    let mut out = Vec::new();
    for d in descs {
        if take == 0 {
            break;
        }
        let len = u64::from(d.len());
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = (len - skip).min(take);
        out.push((GuestAddress(d.addr().0.wrapping_add(skip)), n as usize));
        skip = 0;
        take -= n;
    }
    out
}

/// What the worker thread owns while the device runs: the disk and the queue.
struct BlockWorker {
    backend: Backend,
    mem: GuestMemoryMmap<()>,
    queue: Queue,
    kick: Arc<EventFd>,
    interrupt: Arc<VirtioInterrupt>,
}

const KICK: Token = 0;

impl BlockWorker {
    /// Complete every available request, interrupting after each batch, and
    /// keep looking for more for `POLL` before going back to sleep. Returns
    /// early when the worker is being stopped: another vCPU that keeps the
    /// ring full must not hold up a device reset.
    fn process(&mut self, events: &WorkerEvents) -> Result<()> {
        let Self {
            backend,
            mem,
            queue,
            interrupt,
            ..
        } = self;
        loop {
            // No kicks while we drain and poll (the driver sees
            // VRING_USED_F_NO_NOTIFY or our avail_event); re-enabling reports
            // whatever arrived meanwhile.
            queue.disable_notification(mem)?;
            let mut completed = false;
            let mut yielded = false;
            while let Some(chain) = next_chain(queue, mem)? {
                let head = chain.head_index();
                let len = backend.handle(mem, chain);
                queue.add_used(&*mem, head, len)?;
                completed = true;
                if events.yield_requested() {
                    yielded = true;
                    break;
                }
            }
            if completed && queue_needs_interrupt(queue, mem)? {
                interrupt.signal_used_queue(0);
            }
            if yielded {
                return Ok(());
            }
            if poll_avail(queue, mem, events)? {
                continue;
            }
            if !queue.enable_notification(mem)? {
                return Ok(());
            }
        }
    }
}

/// How long a worker that just completed requests keeps watching the avail
/// ring before sleeping until the next kick. A driver with requests in flight
/// usually queues the next one within microseconds; catching it here saves the
/// guest its notify (a VM exit) and us a thread wakeup, which together cost far
/// more than this (QEMU polls its queues the same way, for up to 32 µs).
const POLL: Duration = Duration::from_micros(50);

/// Whether new requests arrive in the avail ring within `POLL`.
fn poll_avail(queue: &Queue, mem: &GuestMemoryMmap<()>, events: &WorkerEvents) -> Result<bool> {
    let deadline = Instant::now() + POLL;
    loop {
        if queue.avail_idx(mem, Ordering::Acquire)?.0 != queue.next_avail() {
            return Ok(true);
        }
        if Instant::now() >= deadline || events.yield_requested() {
            return Ok(false);
        }
        std::hint::spin_loop();
    }
}

impl WorkerHandler for BlockWorker {
    fn register(&mut self, events: &WorkerEvents) -> std::io::Result<()> {
        events.add(&*self.kick, KICK)
    }

    fn handle(&mut self, _token: Token, events: &WorkerEvents) {
        let _ = self.kick.read();
        if self.interrupt.needs_reset() {
            debug!("virtio-blk: kick while the device needs a reset ignored");
            return;
        }
        if !self.interrupt.dma_enabled() {
            warn!("virtio-blk: kick with bus mastering disabled ignored");
            return;
        }
        if let Err(e) = self.process(events) {
            self.interrupt
                .signal_needs_reset(&format!("virtio-blk queue: {e}"));
        }
    }
}

/// A virtio-blk device model. Put it behind `VirtioPciDevice` to give it to a guest.
///
/// While the driver has it running, its queue is served by a worker thread
/// that owns the disk; reset and shutdown stop the worker (after the request
/// in progress), take the disk back and flush it.
pub struct VirtioBlock {
    /// The disk while no worker runs.
    backend: Option<Backend>,
    worker: Option<Worker<BlockWorker>>,
    /// Thread name of the worker.
    name: String,
    features: u64,
    config: [u8; CONFIG_LEN],
    capacity: u64,
    format: crate::virtio::disk::DiskFormat,
}

impl VirtioBlock {
    /// `serial` is what GET_ID returns (first 20 bytes; NUL-padded).
    pub fn new(disk: Box<dyn DiskImage>, read_only: bool, serial: &str) -> Self {
        let size = disk.size();
        if !size.is_multiple_of(SECTOR_SIZE) {
            warn!("virtio-blk: disk size {size} is not a multiple of 512; tail is hidden");
        }
        let capacity = size / SECTOR_SIZE;
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let n = serial.len().min(id.len());
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);

        let mut features = 1u64 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE;
        if read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&capacity.to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        let format = disk.format();
        Self {
            backend: Some(Backend {
                disk,
                read_only,
                capacity,
                serial: id,
                writeback: false,
                unflushed: false,
                bounce: vec![0; BOUNCE_LEN],
            }),
            worker: None,
            name: "virtio-blk".into(),
            features,
            config,
            capacity,
            format,
        }
    }

    /// Open the image at `path` (raw or qcow2, probed) with the file name as serial.
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let disk = open_disk(path, read_only)?;
        let serial = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self::new(disk, read_only, &serial))
    }

    /// Name the worker thread (15 bytes show in `ps`), e.g. after the PCI slot.
    pub fn set_thread_name(&mut self, name: &str) {
        self.name = name.to_owned();
    }

    /// The image format of the open disk.
    pub fn format(&self) -> crate::virtio::disk::DiskFormat {
        self.format
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Stop the worker (if any) and take the disk back; flush it if the guest
    /// wrote to it since the last flush.
    fn stop_worker(&mut self) -> std::io::Result<()> {
        if let Some(worker) = self.worker.take() {
            match worker.stop() {
                Some(w) => self.backend = Some(w.backend),
                None => {
                    return Err(std::io::Error::other(
                        "virtio-blk worker died; its disk was closed unflushed",
                    ))
                }
            }
        }
        match &mut self.backend {
            Some(b) if b.unflushed => {
                b.disk.flush()?;
                b.unflushed = false;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl VirtioDevice for VirtioBlock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn pci_class(&self) -> u32 {
        PCI_CLASS_STORAGE_SCSI
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn ack_features(&mut self, features: u64) {
        if let Some(b) = &mut self.backend {
            b.writeback = features & (1 << VIRTIO_BLK_F_FLUSH) != 0;
        }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|a| self.config.get(a)).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // Nothing writable: WCE toggling (CONFIG_WCE) is not offered.
        debug!("virtio-blk: config write at {offset:#x} ignored");
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<()> {
        let (Some(queue), Some(kick)) = (ctx.queues.into_iter().next(), ctx.kicks.first()) else {
            return Err(crate::Error::BadRequest("virtio-blk needs its queue"));
        };
        if !queue.ready() {
            // Nothing to serve (odd, but not wrong): no worker until a reset.
            debug!("virtio-blk: DRIVER_OK without queue 0 enabled");
            return Ok(());
        }
        let backend = self
            .backend
            .take()
            .ok_or(crate::Error::Worker("virtio-blk disk lost".into()))?;
        let worker = BlockWorker {
            backend,
            mem: ctx.mem,
            queue,
            kick: kick.clone(),
            interrupt: ctx.interrupt,
        };
        self.worker = Some(Worker::spawn(&self.name, worker)?);
        Ok(())
    }

    fn reset(&mut self) {
        if let Err(e) = self.stop_worker() {
            error!("virtio-blk reset: {e}");
        }
        if let Some(b) = &mut self.backend {
            b.writeback = false;
        }
    }

    fn pause(&mut self) {
        if let Some(w) = &self.worker {
            w.pause();
        }
    }

    fn resume(&mut self) {
        if let Some(w) = &self.worker {
            w.resume();
        }
    }

    fn shutdown(&mut self) -> std::io::Result<()> {
        let stopped = self.stop_worker();
        // Unconditionally durable at exit, whatever the bookkeeping says.
        match &mut self.backend {
            Some(b) => stopped.and(b.disk.flush()),
            None => stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::PciDevice;
    use crate::virtio::disk::test_util::{patterned_raw, qemu_img, TempDir};
    use crate::virtio::disk::RawDisk;
    use crate::virtio::pci::testing::{TestDriver, TestQueue, MEM_SIZE};
    use std::sync::Mutex;
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

    const HDR: u64 = 0x20000;
    const STATUS: u64 = 0x20100;
    const DATA: u64 = 0x30000;
    const SECTORS: u64 = 64;
    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;

    fn f(bit: u32) -> u64 {
        1 << bit
    }

    /// SeaBIOS's feature mask: no FLUSH, so the device is write-through.
    const SEABIOS: [u32; 4] = [
        VIRTIO_F_VERSION_1,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_SIZE_MAX,
    ];

    /// What the device did to its disk, in order.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum DiskOp {
        Write,
        /// With the used ring's index at that moment: a request flushed before
        /// it completes has not been published yet.
        Flush {
            used_idx: u16,
        },
    }

    #[derive(Default)]
    struct DiskLog {
        ops: Vec<DiskOp>,
        /// Guest memory and the used ring's idx field, once the queue is set up.
        used_idx_at: Option<(GuestMemoryMmap<()>, GuestAddress)>,
        fail_flush: bool,
    }

    /// A disk that records writes and flushes, passing them on to `inner`.
    struct CountingDisk {
        inner: Box<dyn DiskImage>,
        log: Arc<Mutex<DiskLog>>,
    }

    impl DiskImage for CountingDisk {
        fn format(&self) -> crate::virtio::disk::DiskFormat {
            self.inner.format()
        }
        fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            self.inner.read_at(buf, offset)
        }
        fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            self.log.lock().unwrap().ops.push(DiskOp::Write);
            self.inner.write_at(buf, offset)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            let mut log = self.log.lock().unwrap();
            let used_idx = log
                .used_idx_at
                .as_ref()
                .map_or(u16::MAX, |(mem, at)| mem.read_obj(*at).unwrap());
            log.ops.push(DiskOp::Flush { used_idx });
            if log.fail_flush {
                return Err(std::io::Error::other("flush failed"));
            }
            self.inner.flush()
        }
        fn size(&self) -> u64 {
            self.inner.size()
        }
    }

    struct Rig {
        d: TestDriver<VirtioBlock>,
        q: TestQueue,
        data: Vec<u8>,
        path: std::path::PathBuf,
        disk_log: Arc<Mutex<DiskLog>>,
        _dir: TempDir,
    }

    /// `disk` behind a counting wrapper, set up by a driver acking `features`.
    fn counted_rig(
        disk: Box<dyn DiskImage>,
        read_only: bool,
        serial: &str,
        features: u64,
    ) -> (TestDriver<VirtioBlock>, TestQueue, Arc<Mutex<DiskLog>>) {
        let disk_log = Arc::new(Mutex::new(DiskLog::default()));
        let disk = CountingDisk {
            inner: disk,
            log: disk_log.clone(),
        };
        let blk = VirtioBlock::new(Box::new(disk), read_only, serial);
        let mut d = TestDriver::new(blk);
        let q = d.init(features, 16);
        disk_log.lock().unwrap().used_idx_at = Some((d.mem.clone(), GuestAddress(q.used + 2)));
        (d, q, disk_log)
    }

    fn rig(read_only: bool, features: u64) -> Rig {
        let dir = TempDir::new();
        let path = dir.path().join("vda.img");
        let data = patterned_raw(&path, (SECTORS * SECTOR_SIZE) as usize);
        let disk = Box::new(RawDisk::open(&path, read_only).unwrap());
        let (d, q, disk_log) = counted_rig(disk, read_only, "vda.img", features);
        Rig {
            d,
            q,
            data,
            path,
            disk_log,
            _dir: dir,
        }
    }

    impl Rig {
        /// The disk operations since the last call.
        fn take_ops(&self) -> Vec<DiskOp> {
            std::mem::take(&mut self.disk_log.lock().unwrap().ops)
        }

        fn used_idx(&self) -> u16 {
            self.d.mem.read_obj(GuestAddress(self.q.used + 2)).unwrap()
        }

        fn header(&self, req_type: u32, sector: u64) {
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&req_type.to_le_bytes());
            h[8..16].copy_from_slice(&sector.to_le_bytes());
            self.d.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
            self.d.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        }

        /// Submit header + optional data + status; returns (status, used len).
        fn request(
            &mut self,
            req_type: u32,
            sector: u64,
            data: Option<(u64, u32, bool)>,
        ) -> (u8, u32) {
            self.header(req_type, sector);
            let mut chain = vec![(HDR, 16, false)];
            chain.extend(data);
            chain.push((STATUS, 1, true));
            self.q.add_chain(&self.d.mem, &chain);
            self.kick()
        }

        fn kick(&mut self) -> (u8, u32) {
            self.d.notify(&self.q);
            let (id, len) = self.q.pop_used(&self.d.mem).expect("no used entry");
            assert_eq!(id, 0);
            (self.d.mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
        }

        fn guest(&self, addr: u64, len: usize) -> Vec<u8> {
            let mut v = vec![0; len];
            self.d.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
            v
        }

        /// A plain one-sector read that must succeed.
        fn assert_works(&mut self) {
            let s = self.request(VIRTIO_BLK_T_IN, 3, Some((DATA, 512, true)));
            assert_eq!(s, (VIRTIO_BLK_S_OK as u8, 513));
            assert_eq!(self.guest(DATA, 512), &self.data[3 * 512..4 * 512]);
            assert_eq!(self.d.status() & 64, 0);
        }
    }

    #[test]
    fn config_space_and_features() {
        let mut r = rig(false, f(VIRTIO_F_VERSION_1));
        assert_eq!(r.d.cfg_read(0x00, 4), 0x1042_1af4);
        assert_eq!(r.d.cfg_read(0x08, 4) >> 8, 0x010000);
        assert_eq!(r.d.device_cfg_read(0, 8), SECTORS);
        // Capacity as two 32-bit reads, the way SeaBIOS does it.
        assert_eq!(r.d.device_cfg_read(4, 4), 0);
        assert_eq!(r.d.device_cfg_read(8, 4), SIZE_MAX as u64);
        assert_eq!(r.d.device_cfg_read(12, 4), SEG_MAX as u64);
        assert_eq!(r.d.device_cfg_read(20, 4), 512);
        assert_eq!(r.d.device_cfg_read(0x100, 4), 0);
        let feats = r.d.device_features();
        for bit in SEABIOS.iter().chain(&[VIRTIO_BLK_F_FLUSH]) {
            assert_ne!(feats & f(*bit), 0);
        }
        assert_eq!(feats & f(VIRTIO_BLK_F_RO), 0);
        let ro = rig(true, f(VIRTIO_F_VERSION_1));
        assert_ne!(ro.d.dev.device().features() & f(VIRTIO_BLK_F_RO), 0);
        assert_eq!(ro.d.dev.device().capacity(), SECTORS);
    }

    #[test]
    fn seabios_style_read_and_write_through() {
        let feats = SEABIOS.iter().fold(0, |a, b| a | f(*b));
        let mut r = rig(false, feats);
        // SeaBIOS polls with interrupts suppressed and reads the ISR afterwards.
        r.q.set_no_interrupt(&r.d.mem, true);
        let s = r.request(VIRTIO_BLK_T_IN, 2, Some((DATA, 2048, true)));
        assert_eq!(s, (VIRTIO_BLK_S_OK as u8, 2049));
        assert_eq!(r.guest(DATA, 2048), &r.data[1024..3072]);
        assert!(!r.d.line.is_high());
        assert_eq!(r.take_ops(), [], "reads neither write nor flush");
        r.d.mem
            .write_slice(&[0x77; 1024], GuestAddress(DATA))
            .unwrap();
        let before = r.used_idx();
        let s = r.request(VIRTIO_BLK_T_OUT, 10, Some((DATA, 1024, false)));
        assert_eq!(s, (VIRTIO_BLK_S_OK as u8, 1));
        // Write-through: the data is written, then synced once, before the
        // request completes.
        assert_eq!(
            r.take_ops(),
            [DiskOp::Write, DiskOp::Flush { used_idx: before }]
        );
        let file = std::fs::read(&r.path).unwrap();
        assert_eq!(&file[5120..6144], &[0x77; 1024][..]);
        // A second write is synced on its own.
        let before = r.used_idx();
        let s = r.request(VIRTIO_BLK_T_OUT, 12, Some((DATA, 512, false)));
        assert_eq!(s, (VIRTIO_BLK_S_OK as u8, 1));
        assert_eq!(
            r.take_ops(),
            [DiskOp::Write, DiskOp::Flush { used_idx: before }]
        );
        // A failing sync fails the write.
        r.disk_log.lock().unwrap().fail_flush = true;
        let s = r.request(VIRTIO_BLK_T_OUT, 12, Some((DATA, 512, false)));
        assert_eq!(s, (VIRTIO_BLK_S_IOERR as u8, 1));
        r.disk_log.lock().unwrap().fail_flush = false;
        r.take_ops();
        // The last sector, and a read of the whole disk in one request.
        assert_eq!(
            r.request(VIRTIO_BLK_T_IN, SECTORS - 1, Some((DATA, 512, true)))
                .0,
            0
        );
        let s = r.request(
            VIRTIO_BLK_T_IN,
            0,
            Some((DATA, (SECTORS * 512) as u32, true)),
        );
        assert_eq!(s.0, VIRTIO_BLK_S_OK as u8);
        assert_eq!(r.guest(DATA + 5120, 1024), &[0x77; 1024][..]);
    }

    #[test]
    fn linux_style_requests() {
        let feats = f(VIRTIO_F_VERSION_1) | f(VIRTIO_BLK_F_FLUSH) | f(VIRTIO_BLK_F_SEG_MAX);
        let mut r = rig(false, feats);
        // Scattered write: three segments, one crossing nothing in particular.
        for (i, a) in [DATA, DATA + 0x3000, DATA + 0x5000].iter().enumerate() {
            r.d.mem
                .write_slice(&[i as u8 + 1; 1024], GuestAddress(*a))
                .unwrap();
        }
        r.header(VIRTIO_BLK_T_OUT, 4);
        r.q.add_chain(
            &r.d.mem,
            &[
                (HDR, 16, false),
                (DATA, 1024, false),
                (DATA + 0x3000, 512, false),
                (DATA + 0x5000, 1024, false),
                (STATUS, 1, true),
            ],
        );
        assert_eq!(r.kick(), (VIRTIO_BLK_S_OK as u8, 1));
        assert!(r.d.line.is_high());
        assert_eq!(r.d.isr_read(), 1);
        // FLUSH negotiated: writes are not synced on their own...
        let ops = r.take_ops();
        assert!(
            !ops.is_empty() && ops.iter().all(|op| *op == DiskOp::Write),
            "{ops:?}"
        );
        // ...but a FLUSH request syncs exactly once, before it completes.
        let before = r.used_idx();
        assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, None), (0, 1));
        assert_eq!(r.take_ops(), [DiskOp::Flush { used_idx: before }]);
        assert_eq!(r.used_idx(), before.wrapping_add(1));
        let file = std::fs::read(&r.path).unwrap();
        assert_eq!(&file[2048..3072], &[1; 1024][..]);
        assert_eq!(&file[3072..3584], &[2; 512][..]);
        assert_eq!(&file[3584..4608], &[3; 1024][..]);
        // A failed flush is reported, not completed as OK.
        r.disk_log.lock().unwrap().fail_flush = true;
        assert_eq!(
            r.request(VIRTIO_BLK_T_FLUSH, 0, None),
            (VIRTIO_BLK_S_IOERR as u8, 1)
        );
        r.disk_log.lock().unwrap().fail_flush = false;
        assert_eq!(r.take_ops().len(), 1);
        // Header split over two descriptors; data and status share one buffer.
        let buf = DATA + 0x8000;
        r.header(VIRTIO_BLK_T_IN, 4);
        r.q.add_chain(
            &r.d.mem,
            &[(HDR, 8, false), (HDR + 8, 8, false), (buf, 513, true)],
        );
        r.d.notify(&r.q);
        assert_eq!(r.q.pop_used(&r.d.mem), Some((0, 513)));
        assert_eq!(r.guest(buf, 513), [[1; 512].as_slice(), &[0]].concat());
        // GET_ID: the file name, NUL-padded to 20 bytes.
        assert_eq!(
            r.request(VIRTIO_BLK_T_GET_ID, 0, Some((DATA, 20, true))),
            (0, 21)
        );
        assert_eq!(r.guest(DATA, 20), b"vda.img\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(
            r.request(VIRTIO_BLK_T_GET_ID, 0, Some((DATA, 4, true))),
            (0, 5)
        );
        // Unsupported (DISCARD, not offered).
        assert_eq!(
            r.request(11, 0, Some((DATA, 16, false))),
            (VIRTIO_BLK_S_UNSUPP as u8, 1)
        );
        // Several requests behind one notification.
        r.header(VIRTIO_BLK_T_IN, 1);
        r.q.add_chain(
            &r.d.mem,
            &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)],
        );
        r.q.push_avail(&r.d.mem, 0);
        r.d.notify(&r.q);
        assert!(r.q.pop_used(&r.d.mem).is_some());
        assert!(r.q.pop_used(&r.d.mem).is_some());
        r.assert_works();
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let mut r = rig(true, f(VIRTIO_F_VERSION_1) | f(VIRTIO_BLK_F_RO));
        let s = r.request(VIRTIO_BLK_T_OUT, 0, Some((DATA, 512, false)));
        assert_eq!(s, (VIRTIO_BLK_S_IOERR as u8, 1));
        assert_eq!(std::fs::read(&r.path).unwrap(), r.data);
        assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, None).0, 0);
        r.assert_works();
    }

    #[test]
    fn bad_requests_fail_alone() {
        let mut r = rig(false, f(VIRTIO_F_VERSION_1));
        let ioerr = VIRTIO_BLK_S_IOERR as u8;
        type Case = (u32, u64, Option<(u64, u32, bool)>);
        let cases: [Case; 9] = [
            // Beyond capacity, straddling the end, and a sector that overflows.
            (VIRTIO_BLK_T_IN, SECTORS, Some((DATA, 512, true))),
            (VIRTIO_BLK_T_IN, SECTORS - 1, Some((DATA, 1024, true))),
            (VIRTIO_BLK_T_OUT, u64::MAX, Some((DATA, 512, false))),
            // Not whole sectors.
            (VIRTIO_BLK_T_IN, 0, Some((DATA, 500, true))),
            // Wrong direction for the request type.
            (VIRTIO_BLK_T_IN, 0, Some((DATA, 512, false))),
            (VIRTIO_BLK_T_OUT, 0, Some((DATA, 512, true))),
            // Buffers outside guest memory.
            (VIRTIO_BLK_T_IN, 0, Some((MEM_SIZE - 256, 512, true))),
            (VIRTIO_BLK_T_OUT, 0, Some((u64::MAX - 100, 512, false))),
            // Over the request size cap (no buffer is allocated for it).
            (
                VIRTIO_BLK_T_IN,
                0,
                Some((DATA, (MAX_REQUEST_BYTES + 512) as u32, true)),
            ),
        ];
        for (t, sector, data) in cases {
            assert_eq!(
                r.request(t, sector, data),
                (ioerr, 1),
                "{t} {sector} {data:?}"
            );
            r.assert_works();
        }
        assert_eq!(std::fs::read(&r.path).unwrap(), r.data);
        // A short header.
        r.header(VIRTIO_BLK_T_IN, 0);
        r.q.add_chain(
            &r.d.mem,
            &[(HDR, 8, false), (DATA, 512, true), (STATUS, 1, true)],
        );
        assert_eq!(r.kick(), (ioerr, 1));
        // Readable after writable.
        r.q.add_chain(
            &r.d.mem,
            &[
                (HDR, 16, false),
                (DATA, 512, true),
                (DATA, 512, false),
                (STATUS, 1, true),
            ],
        );
        assert_eq!(r.kick(), (ioerr, 1));
        r.assert_works();
    }

    #[test]
    fn hostile_chains_are_dropped() {
        let mut r = rig(false, f(VIRTIO_F_VERSION_1));
        let mem = r.d.mem.clone();
        // Descriptor loop: 0 -> 1 -> 0.
        r.header(VIRTIO_BLK_T_IN, 0);
        r.q.write_desc(&mem, 0, HDR, 16, NEXT, 1);
        r.q.write_desc(&mem, 1, DATA, 512, NEXT | WRITE, 0);
        r.q.push_avail(&mem, 0);
        assert_eq!(r.kick(), (0xff, 0));
        r.assert_works();
        // `next` out of range.
        r.header(VIRTIO_BLK_T_IN, 0);
        r.q.write_desc(&mem, 0, HDR, 16, NEXT, 1000);
        r.q.push_avail(&mem, 0);
        assert_eq!(r.kick(), (0xff, 0));
        // No status byte: header only, a zero-length status, a read-only "status".
        let no_status: [&[(u64, u32, bool)]; 3] = [
            &[(HDR, 16, false)],
            &[(HDR, 16, false), (DATA, 512, true), (STATUS, 0, true)],
            &[(HDR, 16, false), (STATUS, 1, false)],
        ];
        for chain in no_status {
            r.header(VIRTIO_BLK_T_IN, 0);
            r.q.add_chain(&mem, chain);
            assert_eq!(r.kick(), (0xff, 0), "{chain:?}");
        }
        // Status byte outside guest memory.
        r.q.add_chain(&mem, &[(HDR, 16, false), (MEM_SIZE, 1, true)]);
        r.d.notify(&r.q);
        assert_eq!(r.q.pop_used(&mem), Some((0, 0)));
        // Indirect table (not offered) with a bogus length.
        r.q.write_desc(&mem, 0, DATA, 15, 4, 0);
        r.q.push_avail(&mem, 0);
        r.d.notify(&r.q);
        assert_eq!(r.q.pop_used(&mem), Some((0, 0)));
        r.assert_works();
    }

    #[test]
    fn broken_ring_needs_reset_then_recovers() {
        let mut r = rig(false, f(VIRTIO_F_VERSION_1));
        // Head index past the queue: cannot even be returned in the used ring.
        r.q.push_avail(&r.d.mem, 999);
        r.d.notify(&r.q);
        assert_ne!(r.d.status() & 64, 0);
        assert_eq!(r.d.isr_read() & 2, 2);
        // The driver resets and starts over; the device works again.
        r.q = r.d.init(f(VIRTIO_F_VERSION_1), 16);
        r.assert_works();
        // Machine reset too.
        r.d.dev.reset();
        assert!(r.d.dev.device().worker.is_none() && r.d.dev.device().backend.is_some());
    }

    #[test]
    fn qcow2_disk_through_the_queue() {
        let dir = TempDir::new();
        let raw = dir.path().join("base.raw");
        let data = patterned_raw(&raw, 1 << 20);
        let qcow = dir.path().join("vda.qcow2");
        let qs = qcow.to_str().unwrap();
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            raw.to_str().unwrap(),
            qs,
        ]);
        assert_eq!(VirtioBlock::open(&qcow, false).unwrap().capacity(), 2048);
        let disk = open_disk(&qcow, false).unwrap();
        let feats = f(VIRTIO_F_VERSION_1) | f(VIRTIO_BLK_F_FLUSH);
        let (d, q, disk_log) = counted_rig(disk, false, "vda.qcow2", feats);
        assert_eq!(d.dev.device().capacity(), 2048);
        let mut r = Rig {
            d,
            q,
            data: data.clone(),
            path: qcow.clone(),
            disk_log,
            _dir: dir,
        };
        r.assert_works();
        r.d.mem
            .write_slice(&[0xee; 4096], GuestAddress(DATA))
            .unwrap();
        assert_eq!(
            r.request(VIRTIO_BLK_T_OUT, 1000, Some((DATA, 4096, false)))
                .0,
            0
        );
        assert_eq!(r.take_ops(), [DiskOp::Write]);
        let before = r.used_idx();
        assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, None).0, 0);
        assert_eq!(r.take_ops(), [DiskOp::Flush { used_idx: before }]);
        // After FLUSH the image is consistent on disk even before we close it.
        let out = r._dir.path().join("out.raw");
        qemu_img(&[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            qs,
            out.to_str().unwrap(),
        ]);
        let mut expect = data;
        expect[1000 * 512..1000 * 512 + 4096].fill(0xee);
        assert!(std::fs::read(&out).unwrap() == expect);
    }

    /// Queue `n` one-sector reads of sectors `first..first + n`, each its own
    /// three-descriptor chain (data at DATA + 4 KiB * i, status at STATUS + i).
    fn queue_reads(r: &mut Rig, first: u64, n: u16) {
        let mem = r.d.mem.clone();
        for i in 0..n {
            let hdr = HDR + 0x20 * u64::from(i);
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&VIRTIO_BLK_T_IN.to_le_bytes());
            h[8..16].copy_from_slice(&(first + u64::from(i)).to_le_bytes());
            mem.write_slice(&h, GuestAddress(hdr)).unwrap();
            let d0 = 3 * i;
            r.q.write_desc(&mem, d0, hdr, 16, NEXT, d0 + 1);
            let data = DATA + 0x1000 * u64::from(i);
            r.q.write_desc(&mem, d0 + 1, data, 512, NEXT | WRITE, d0 + 2);
            r.q.write_desc(&mem, d0 + 2, STATUS + u64::from(i), 1, WRITE, 0);
            r.q.push_avail(&mem, d0);
        }
    }

    #[test]
    fn worker_completes_many_requests_on_their_msix_vector() {
        let mut r = rig(false, f(VIRTIO_F_VERSION_1));
        // The driver as vp_find_vqs_msix leaves it: config on 0, the queue on 1.
        r.d.enable_msix();
        r.d.common_write(0x10, 2, 0);
        r.d.common_write(0x16, 2, 0);
        r.d.common_write(0x1a, 2, 1);
        r.d.msix_mask(0, false);
        r.d.msix_mask(1, false);
        // Eight requests in flight behind one kick: all complete, one message.
        queue_reads(&mut r, 8, 5);
        r.d.notify(&r.q);
        let mut heads = Vec::new();
        while let Some((id, len)) = r.q.pop_used(&r.d.mem) {
            assert_eq!(len, 513);
            heads.push(id);
        }
        assert_eq!(heads, [0, 3, 6, 9, 12]);
        for i in 0..5usize {
            let got = r.guest(DATA + 0x1000 * i as u64, 512);
            assert_eq!(got, &r.data[(8 + i) * 512..(9 + i) * 512]);
        }
        assert_eq!(r.d.fired(1), [0x41]);
        assert!(r.d.fired(0).is_empty());
        assert!(!r.d.line.is_high());
        // Masked: the completion leaves its PBA bit, the message comes on unmask.
        r.d.msix_mask(1, true);
        r.assert_works();
        assert!(r.d.fired(1).is_empty());
        assert_eq!(r.d.msix_pba(), 0b10);
        r.d.msix_mask(1, false);
        assert_eq!(r.d.fired(1), [0x41]);
        // A broken ring found by the worker: NEEDS_RESET and a config message.
        r.q.push_avail(&r.d.mem, 999);
        r.d.notify(&r.q);
        assert_ne!(r.d.status() & 64, 0);
        assert_eq!(r.d.fired(0), [0x40]);
    }

    #[test]
    fn event_idx_suppresses_kicks_and_interrupts() {
        let feats = f(VIRTIO_F_VERSION_1) | f(VIRTIO_RING_F_EVENT_IDX);
        let mut r = rig(false, feats);
        // used_event (after the avail ring) = 0: interrupt after the first used.
        let used_event = GuestAddress(r.q.avail + 4 + 2 * u64::from(r.q.size));
        let avail_event = GuestAddress(r.q.used + 4 + 8 * u64::from(r.q.size));
        r.d.mem.write_obj(0u16, used_event).unwrap();
        r.assert_works();
        assert!(r.d.line.is_high());
        r.d.isr_read();
        // The device asks to be kicked for the next new buffer.
        let ae: u16 = r.d.mem.read_obj(avail_event).unwrap();
        assert_eq!(ae, 1);
        // used_event far ahead: completions without an interrupt.
        r.d.mem.write_obj(100u16, used_event).unwrap();
        r.assert_works();
        assert!(!r.d.line.is_high());
    }

    #[test]
    fn reset_and_shutdown_stop_the_worker_and_flush() {
        let feats = f(VIRTIO_F_VERSION_1) | f(VIRTIO_BLK_F_FLUSH);
        let mut r = rig(false, feats);
        r.d.mem
            .write_slice(&[0x5a; 512], GuestAddress(DATA))
            .unwrap();
        let s = r.request(VIRTIO_BLK_T_OUT, 7, Some((DATA, 512, false)));
        assert_eq!(s.0, VIRTIO_BLK_S_OK as u8);
        assert_eq!(r.take_ops(), [DiskOp::Write], "writeback: no flush yet");
        // Driver reset: the worker stops and the unflushed write is flushed.
        r.d.set_status(0);
        assert!(r.d.dev.device().worker.is_none());
        assert_eq!(r.take_ops().len(), 1, "flushed on reset");
        // Nothing is processed without a worker; a new one starts at DRIVER_OK.
        r.q = r.d.init(feats, 16);
        assert!(r.d.dev.device().worker.is_some());
        r.assert_works();
        // Paused (QMP stop): a kick waits for resume.
        r.d.dev.device_mut().pause();
        r.header(VIRTIO_BLK_T_IN, 3);
        r.q.add_chain(
            &r.d.mem,
            &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)],
        );
        let a = r.d.caps.notify.unwrap().1 + crate::virtio::pci::testing::BAR_ADDR;
        r.d.mmio_write(a, 2, 0);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(r.q.pop_used(&r.d.mem), None);
        r.d.dev.device_mut().resume();
        r.d.sync();
        assert_eq!(r.q.pop_used(&r.d.mem), Some((0, 513)));
        // A write, then shutdown (machine exit): stopped and durable.
        let s = r.request(VIRTIO_BLK_T_OUT, 9, Some((DATA, 512, false)));
        assert_eq!(s.0, VIRTIO_BLK_S_OK as u8);
        r.take_ops();
        r.d.dev.device_mut().shutdown().unwrap();
        assert!(r.d.dev.device().worker.is_none());
        assert!(matches!(r.take_ops()[..], [DiskOp::Flush { .. }, ..]));
        let file = std::fs::read(&r.path).unwrap();
        assert_eq!(&file[7 * 512..8 * 512], &[0x5a; 512][..]);
    }

    #[test]
    fn kicks_without_bus_mastering_are_ignored() {
        let mut r = rig(false, f(VIRTIO_F_VERSION_1));
        r.d.cfg_write(
            crate::pci::config::COMMAND,
            &crate::pci::config::COMMAND_MEMORY.to_le_bytes(),
        );
        r.header(VIRTIO_BLK_T_IN, 0);
        r.q.add_chain(
            &r.d.mem,
            &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)],
        );
        r.d.notify(&r.q);
        assert_eq!(r.q.pop_used(&r.d.mem), None);
    }
}
