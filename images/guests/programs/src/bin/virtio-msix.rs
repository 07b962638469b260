//! virtio-msix: a virtio-blk driver doing what Linux's virtio_pci does with
//! interrupts, on the modern transport (1af4:1042).
//!
//! 1. INTx (MSI-X never enabled, `vp_find_vqs_intx`): the function's INTx
//!    input (its Interrupt Line) routed level-triggered through the IOAPIC;
//!    a read completes with that interrupt, STATUS.Interrupt set until the
//!    ISR read clears it and the line drops.
//! 2. Reset, then MSI-X as `vp_find_vqs_msix` with a vector per queue: MSI-X
//!    enabled under the function mask, every entry programmed and masked,
//!    function mask cleared, `msix_config` = 0 and `queue_msix_vector` = 1
//!    read back (and a vector past the table reads back NO_VECTOR), DRIVER_OK,
//!    entries unmasked. A read completes with vector 1's message, through the
//!    LAPIC only (no IOAPIC route; STATUS.Interrupt stays clear).
//! 3. Vector 1 masked: the completion sets its PBA bit and sends nothing;
//!    unmasking sends it. The same with the function mask.
//!
//! Prints `msix vectors=<n> intx_irqs=<n> msix_irqs=<n>` and
//! `SPICEBOX-VIRTIO-MSIX-OK`.
#![no_std]
#![no_main]

use core::time::Duration;

use guest_rt::irq::{self, ioapic, lapic};
use guest_rt::mem::Dma;
use guest_rt::msix::Msix;
use guest_rt::virtio::{self, VirtioPci, Virtqueue, NO_VECTOR};
use guest_rt::{check, pci, println, time, OrFail};

guest_rt::guest!("VIRTIO-MSIX", main);

const INTX_VECTOR: u8 = 0x50;
const CONFIG_VECTOR: u8 = 0x51;
const QUEUE_VECTOR: u8 = 0x52;
/// MSI-X table entries: config changes on 0, the queue on 1.
const CONFIG_ENTRY: u16 = 0;
const QUEUE_ENTRY: u16 = 1;
const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(50);
const STATUS_INTERRUPT: u16 = 1 << 3;

/// One read request's buffers: header, a sector, status byte.
struct Request {
    buf: Dma,
}

impl Request {
    fn new() -> Request {
        Request {
            buf: Dma::new(4096),
        }
    }

    /// Queue a read of sector 0 (the boot sector: ends in 55 AA).
    fn submit(&self, q: &mut Virtqueue) {
        self.buf.write::<u32>(0, virtio::BLK_T_IN);
        self.buf.write::<u64>(8, 0);
        self.buf.write::<u16>(16 + 510, 0);
        self.buf.write::<u8>(1024, 0xFF);
        let a = self.buf.addr();
        q.add(&[(a, 16, false), (a + 16, 512, true), (a + 1024, 1, true)])
            .or_fail("queue-full");
    }

    fn check(&self, q: &mut Virtqueue, step: &str) {
        let (_, len) = q.pop_used().or_fail(step);
        check!(len == 513, step, "used len {len}");
        let status = self.buf.read::<u8>(1024);
        check!(status == virtio::BLK_S_OK, step, "status {status}");
        let sig = self.buf.read::<u16>(16 + 510);
        check!(sig == 0xAA55, step, "sector 0 ends in {sig:#06x}");
    }
}

fn status_interrupt(dev: &VirtioPci) -> bool {
    dev.function.read16(pci::STATUS) & STATUS_INTERRUPT != 0
}

/// Submit and notify, then wait until the device has used it (polling).
fn read_polled(dev: &VirtioPci, q: &mut Virtqueue, req: &Request, step: &str) {
    req.submit(q);
    q.publish();
    dev.notify(q);
    let done = time::wait_until(WAIT, || q.has_used());
    check!(done, step, "no completion within {WAIT:?}");
    req.check(q, step);
}

fn main() {
    let dev = VirtioPci::find(virtio::BLOCK_DEVICE_ID).or_fail("pci-scan");
    let apic = lapic::id();
    lapic::enable();
    irq::enable();
    let req = Request::new();

    // 1. INTx.
    dev.negotiate(virtio::F_VERSION_1).or_fail("features");
    let mut q = dev.setup_queue(0, 16).or_fail("queue");
    dev.enable_queue(&q);
    dev.driver_ok();
    let (pin, line) = dev.function.interrupt();
    check!(
        pin == 1 && u32::from(line) < ioapic::inputs(),
        "intx-line",
        "pin {pin} line {line}"
    );
    ioapic::route(
        line.into(),
        INTX_VECTOR,
        ioapic::Trigger::Level,
        ioapic::Polarity::High,
        apic,
    );
    req.submit(&mut q);
    q.publish();
    dev.notify(&q);
    irq::wait(INTX_VECTOR, 1, WAIT).or_fail("intx-irq");
    check!(
        status_interrupt(&dev),
        "intx-status",
        "STATUS.Interrupt clear"
    );
    let isr = dev.isr();
    check!(isr & 1 == 1, "intx-isr", "ISR {isr:#x}");
    check!(
        !status_interrupt(&dev),
        "intx-status",
        "STATUS.Interrupt still set"
    );
    req.check(&mut q, "intx-used");
    // The line is level-triggered: our stub cannot read the ISR (Linux's
    // handler does, before the EOI), so the IOAPIC re-delivers until the read
    // above; after it, the line must be low and nothing more arrive.
    let intx_irqs = irq::count(INTX_VECTOR);
    time::sleep(QUIET);
    let later = irq::count(INTX_VECTOR);
    check!(
        later == intx_irqs,
        "intx-deassert",
        "{intx_irqs} then {later} interrupts"
    );
    ioapic::mask(line.into());

    // 2. MSI-X, a vector per queue.
    let msix = Msix::find(dev.function).or_fail("msix-cap");
    check!(
        msix.vectors() >= 2,
        "msix-size",
        "{} vectors",
        msix.vectors()
    );
    dev.negotiate(virtio::F_VERSION_1).or_fail("features-2");
    msix.enable_masked();
    for entry in 0..msix.vectors() {
        let vector = if entry == CONFIG_ENTRY {
            CONFIG_VECTOR
        } else {
            QUEUE_VECTOR
        };
        msix.program(entry, irq::msi_message(apic, vector));
    }
    msix.set_function_mask(false);
    check!(msix.enabled(), "msix-enable");
    let v = dev.set_config_vector(CONFIG_ENTRY);
    check!(v == CONFIG_ENTRY, "config-vector", "read back {v:#x}");
    let mut q = dev.setup_queue(0, 16).or_fail("queue-2");
    let v = dev.set_queue_vector(0, msix.vectors());
    check!(
        v == NO_VECTOR,
        "vector-range",
        "vector past the table read back {v:#x}"
    );
    let v = dev.set_queue_vector(0, QUEUE_ENTRY);
    check!(v == QUEUE_ENTRY, "queue-vector", "read back {v:#x}");
    dev.enable_queue(&q);
    dev.driver_ok();
    msix.mask(CONFIG_ENTRY, false);
    msix.mask(QUEUE_ENTRY, false);
    req.submit(&mut q);
    q.publish();
    dev.notify(&q);
    irq::wait(QUEUE_VECTOR, 1, WAIT).or_fail("msix-irq");
    req.check(&mut q, "msix-used");
    check!(
        !status_interrupt(&dev),
        "msix-intx",
        "STATUS.Interrupt set with MSI-X on"
    );
    check!(
        irq::count(INTX_VECTOR) == intx_irqs,
        "msix-intx",
        "an INTx arrived"
    );

    // 3. A masked vector: pending, then sent on unmask.
    for function_mask in [false, true] {
        let step = if function_mask {
            "function-mask"
        } else {
            "vector-mask"
        };
        let before = irq::count(QUEUE_VECTOR);
        if function_mask {
            msix.set_function_mask(true);
        } else {
            msix.mask(QUEUE_ENTRY, true);
        }
        read_polled(&dev, &mut q, &req, step);
        time::sleep(QUIET);
        check!(
            irq::count(QUEUE_VECTOR) == before,
            step,
            "interrupt while masked"
        );
        check!(msix.pending(QUEUE_ENTRY), step, "PBA bit not set");
        if function_mask {
            msix.set_function_mask(false);
        } else {
            msix.mask(QUEUE_ENTRY, false);
        }
        irq::wait(QUEUE_VECTOR, before + 1, WAIT).or_fail(step);
        check!(!msix.pending(QUEUE_ENTRY), step, "PBA bit still set");
    }
    check!(
        irq::count(CONFIG_VECTOR) == 0,
        "config-irq",
        "unexpected config interrupt"
    );
    println!(
        "msix vectors={} intx_irqs={} msix_irqs={}",
        msix.vectors(),
        intx_irqs,
        irq::count(QUEUE_VECTOR)
    );
    dev.reset();
}
