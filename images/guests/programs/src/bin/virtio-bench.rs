//! virtio-bench: virtio-blk throughput from CPL 3, for `scripts/bench_blk`.
//!
//! A polling driver (VRING_AVAIL_F_NO_INTERRUPT; it kicks only when the device
//! has not set VRING_USED_F_NO_NOTIFY, as Linux does without EVENT_IDX) keeps
//! `DEPTH` reads in flight over the disk's data area, which the benchmark
//! script fills with each sector's own number in its first 8 bytes (from
//! `DATA_START` on); every sector read is checked. Two phases:
//! sequential 64 KiB reads and random 4 KiB reads.
//!
//! The host samples CPU times between phases, so each phase waits for a
//! byte on COM1 first:
//!
//! ```text
//! bench capacity_sectors=<n> depth=<n> queue=<n>
//! BENCH-READY seq64k            (host samples, sends a byte)
//! BENCH-DONE seq64k requests=<n> bytes=<n> ns=<n> notifies=<n> notify_ns=<n>
//!                                 (host samples, sends a byte)
//! BENCH-READY rand4k ...
//! SPICEBOX-VIRTIO-BENCH-OK
//! ```
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use guest_rt::mem::Dma;
use guest_rt::time::{self, Stopwatch};
use guest_rt::virtio::{self, VirtioPci, Virtqueue};
use guest_rt::{check, fail, println, serial, OrFail};

guest_rt::guest!("VIRTIO-BENCH", main);

/// Requests in flight.
const DEPTH: usize = 16;
/// First sector of the patterned data area (16 MiB: the guest image is
/// below it).
const DATA_START: u64 = 16 * 1024 * 1024 / 512;
const SEQ_LEN: u32 = 64 * 1024;
const RAND_LEN: u32 = 4096;
/// 4 GiB of sequential reads (many passes over a 256 MiB disk): phases of
/// seconds, so that tick-sampled CPU times mean something.
const SEQ_REQUESTS: u64 = 64 * 1024;
const RAND_REQUESTS: u64 = 256 * 1024;
const HEADER: u64 = 0;
const STATUS: u64 = 16;
const DATA: u64 = 4096;

struct Slot {
    buf: Dma,
    sector: u64,
}

fn wait_for_host() {
    if serial::read_byte(Duration::from_secs(120)).is_none() {
        fail!("host", "no byte from the benchmark script on COM1");
    }
}

/// Run `requests` reads of `len` bytes at the sectors `sector(i)` returns.
fn phase(
    name: &str,
    dev: &VirtioPci,
    q: &mut Virtqueue,
    slots: &mut [Slot],
    requests: u64,
    len: u32,
    mut sector: impl FnMut(u64) -> u64,
) {
    println!("BENCH-READY {name}");
    wait_for_host();
    let mut free: Vec<usize> = (0..slots.len()).collect();
    let mut slot_of = alloc::vec![usize::MAX; usize::from(q.size)];
    let (mut issued, mut done) = (0u64, 0u64);
    // What the notifies cost this vCPU: each one is a trapped write, handled
    // in the host (ioeventfd) or by the VMM (an exit to user space).
    let (mut notifies, mut notify_ticks) = (0u64, 0u64);
    let watch = Stopwatch::start();
    while done < requests {
        let mut added = false;
        while issued < requests {
            let Some(s) = free.pop() else { break };
            let slot = &mut slots[s];
            slot.sector = sector(issued);
            slot.buf.write::<u32>(HEADER, virtio::BLK_T_IN);
            slot.buf.write::<u64>(HEADER + 8, slot.sector);
            slot.buf.write::<u8>(STATUS, 0xFF);
            let a = slot.buf.addr();
            let head = q
                .add(&[
                    (a + HEADER, 16, false),
                    (a + DATA, len, true),
                    (a + STATUS, 1, true),
                ])
                .or_fail("queue-full");
            slot_of[usize::from(head)] = s;
            issued += 1;
            added = true;
        }
        if added && q.publish() {
            let before = time::tsc();
            dev.notify(q);
            notify_ticks += time::tsc() - before;
            notifies += 1;
        }
        while let Some((head, used)) = q.pop_used() {
            let s = *slot_of.get(usize::from(head)).or_fail("used-id");
            let slot = &slots[s];
            check!(used == len + 1, "used-len", "{used} for a {len}-byte read");
            let status = slot.buf.read::<u8>(STATUS);
            check!(
                status == virtio::BLK_S_OK,
                "status",
                "{status} at sector {}",
                slot.sector
            );
            for k in 0..u64::from(len) / 512 {
                let got = slot.buf.read::<u64>(DATA + 512 * k);
                let want = slot.sector + k;
                check!(got == want, "data", "sector {want} reads as {got}");
            }
            free.push(s);
            done += 1;
        }
    }
    let ns = watch.elapsed_ns();
    println!(
        "BENCH-DONE {name} requests={requests} bytes={} ns={ns} notifies={notifies} notify_ns={}",
        requests * u64::from(len),
        time::ticks_to_ns(notify_ticks)
    );
    wait_for_host();
}

fn main() {
    let dev = VirtioPci::find(virtio::BLOCK_DEVICE_ID).or_fail("pci-scan");
    dev.negotiate(virtio::F_VERSION_1).or_fail("features");
    let mut q = dev.setup_queue(0, 256).or_fail("queue");
    q.set_no_interrupt(true);
    dev.enable_queue(&q);
    dev.driver_ok();
    let cfg = dev.device_cfg();
    let capacity = u64::from(cfg.read32(0)) | u64::from(cfg.read32(4)) << 32;
    check!(
        capacity >= DATA_START + 2 * u64::from(SEQ_LEN / 512),
        "capacity",
        "{capacity} sectors: the disk is too small"
    );
    println!(
        "bench capacity_sectors={capacity} depth={DEPTH} queue={}",
        q.size
    );
    let mut slots: Vec<Slot> = (0..DEPTH)
        .map(|_| Slot {
            buf: Dma::new(DATA + u64::from(SEQ_LEN)),
            sector: 0,
        })
        .collect();

    let seq_per = u64::from(SEQ_LEN / 512);
    let seq_slots = (capacity - DATA_START) / seq_per;
    phase(
        "seq64k",
        &dev,
        &mut q,
        &mut slots,
        SEQ_REQUESTS,
        SEQ_LEN,
        |i| DATA_START + (i % seq_slots) * seq_per,
    );

    let rand_per = u64::from(RAND_LEN / 512);
    let rand_slots = (capacity - DATA_START) / rand_per;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    phase(
        "rand4k",
        &dev,
        &mut q,
        &mut slots,
        RAND_REQUESTS,
        RAND_LEN,
        |_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            DATA_START + (x % rand_slots) * rand_per
        },
    );
    dev.reset();
}
