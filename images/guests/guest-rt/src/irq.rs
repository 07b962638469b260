//! Interrupts. Guests poll by default (and start with
//! interrupts off: the LAPIC task priority holds every vector back). To test
//! interrupt delivery (INTx through the IOAPIC, MSI, MSI-X, the LAPIC timer)
//! [`lapic::enable`], route a source to a vector in
//! [`FIRST_VECTOR`]`..=`[`LAST_VECTOR`], [`enable`] and [`wait`] for the
//! vector's count to grow.
//!
//! Every vector 32-255 has a CPL-0 stub (rust-loader.S) that adds one to
//! that vector's counter in a page this code reads, writes the LAPIC EOI
//! (except for the spurious vector) and returns. It is emulated on the test
//! machines (tens of µs per interrupt), so rates of a few kHz at most.
//! Vectors 0x20-0x2F are where the loader parked the masked 8259s.

use core::arch::asm;
use core::ptr::read_volatile;
use core::time::Duration;

use crate::time::Deadline;

/// Lowest vector for guest use (above the 8259s' 0x20-0x2F).
pub const FIRST_VECTOR: u8 = 0x30;
/// Highest vector for guest use.
pub const LAST_VECTOR: u8 = 0xFE;
/// The LAPIC spurious-interrupt vector [`lapic::enable`] sets; never EOId.
pub const SPURIOUS_VECTOR: u8 = 0xFF;

/// Interrupts on: the LAPIC's task priority to 0, so every vector is
/// accepted. (The guest runs with RFLAGS.IF=1 and IOPL=0: `cli`/`sti` fault
/// at CPL 3, and the test machines' CPL-0 emulator does not let IOPL=3
/// through the loader's `iretq` anyway. The task priority masks every
/// vector the LAPIC delivers, which is every one a test uses.)
pub fn enable() {
    lapic::set_task_priority(0);
}

/// Interrupts off: task priority 0xF0 holds back every vector (they stay
/// pending in the LAPIC until [`enable`]).
pub fn disable() {
    lapic::set_task_priority(0xF0);
}

/// Whether RFLAGS.IF is set (it must be, for any interrupt to arrive).
pub fn if_flag() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) };
    flags & (1 << 9) != 0
}

pub(crate) fn init() {
    disable();
    if !if_flag() {
        crate::fail!(
            "guest-rt",
            "RFLAGS.IF is clear at CPL 3: no interrupt can arrive"
        );
    }
}

/// How many times `vector` was taken since boot.
pub fn count(vector: u8) -> u64 {
    let counts = crate::boot::info().irq_counts as *const u64;
    // SAFETY: the loader's 256-entry counter array; CPL 0 increments it
    // between any two of our instructions, hence the volatile read.
    unsafe { read_volatile(counts.add(usize::from(vector))) }
}

/// Waits (interrupts must be enabled) until `vector` has been taken at least
/// `at_least` times in all; returns the count, or Err(count) on timeout.
pub fn wait(vector: u8, at_least: u64, timeout: Duration) -> Result<u64, u64> {
    let deadline = Deadline::after(timeout);
    loop {
        let n = count(vector);
        if n >= at_least {
            return Ok(n);
        }
        if deadline.passed() {
            return Err(n);
        }
        core::hint::spin_loop();
    }
}

/// The 8259 pair: the loader already moved them to 0x20-0x2F and masked
/// every line; this masks them again (for example after a guest played
/// with them).
pub fn mask_8259s() {
    crate::port::outb(0x21, 0xFF);
    crate::port::outb(0xA1, 0xFF);
}

/// The local APIC in xAPIC mode at its default address (CPL 3 cannot read
/// the APIC base MSR; SeaBIOS and every VMM leave it at 0xFEE00000).
pub mod lapic {
    use core::time::Duration;

    use crate::mmio::Mmio;

    pub const BASE: u64 = 0xFEE0_0000;
    const ID: u64 = 0x20;
    const TPR: u64 = 0x80;
    const SVR: u64 = 0xF0;
    const LVT_TIMER: u64 = 0x320;
    const TIMER_INITIAL: u64 = 0x380;
    const TIMER_CURRENT: u64 = 0x390;
    const TIMER_DIVIDE: u64 = 0x3E0;
    const MASKED: u32 = 1 << 16;
    const PERIODIC: u32 = 1 << 17;
    /// Divide configuration value for divide-by-16.
    const DIVIDE_16: u32 = 0x3;

    fn regs() -> Mmio {
        // SAFETY: the LAPIC's register page, identity-mapped by the loader.
        unsafe { Mmio::new(BASE, 0x1000) }
    }

    /// Software-enables the LAPIC with spurious vector 0xFF. The task
    /// priority stays as [`super::enable`] / [`super::disable`] set it.
    pub fn enable() {
        regs().write32(SVR, 0x100 | u32::from(super::SPURIOUS_VECTOR));
    }

    /// Vectors whose priority class (vector >> 4) is not above
    /// `priority >> 4` wait in the LAPIC.
    pub fn set_task_priority(priority: u8) {
        regs().write32(TPR, u32::from(priority));
    }

    /// This CPU's APIC ID (the destination for IOAPIC routes and MSIs).
    pub fn id() -> u8 {
        (regs().read32(ID) >> 24) as u8
    }

    /// Timer ticks per second at divide-by-16, measured against the TSC
    /// (the LAPIC timer's clock is not architectural).
    pub fn timer_hz() -> u64 {
        let r = regs();
        r.write32(TIMER_DIVIDE, DIVIDE_16);
        r.write32(LVT_TIMER, MASKED);
        r.write32(TIMER_INITIAL, u32::MAX);
        let t = crate::time::Stopwatch::start();
        crate::time::sleep(Duration::from_millis(5));
        let left = r.read32(TIMER_CURRENT);
        let ns = t.elapsed_ns().max(1);
        r.write32(TIMER_INITIAL, 0);
        u64::from(u32::MAX - left) * 1_000_000_000 / ns
    }

    /// Fires `vector` `hz` times a second until [`timer_stop`].
    pub fn timer_periodic(vector: u8, hz: u64) {
        let count = (timer_hz() / hz.max(1)).clamp(1, u64::from(u32::MAX)) as u32;
        let r = regs();
        r.write32(TIMER_DIVIDE, DIVIDE_16);
        r.write32(LVT_TIMER, PERIODIC | u32::from(vector));
        r.write32(TIMER_INITIAL, count);
    }

    pub fn timer_stop() {
        let r = regs();
        r.write32(LVT_TIMER, MASKED);
        r.write32(TIMER_INITIAL, 0);
    }
}

/// The I/O APIC at its default address 0xFEC00000. ISA IRQs are edge,
/// active high; PCI INTx lines level, on the input the function's
/// interrupt-line register names, with the MADT's polarity (QEMU: high).
pub mod ioapic {
    use crate::mmio::Mmio;

    pub const BASE: u64 = 0xFEC0_0000;
    const REGSEL: u64 = 0x00;
    const WINDOW: u64 = 0x10;
    const VERSION: u32 = 0x01;
    const REDIRECTION: u32 = 0x10;
    const MASKED: u64 = 1 << 16;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Trigger {
        Edge,
        Level,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Polarity {
        High,
        Low,
    }

    fn regs() -> Mmio {
        // SAFETY: the IOAPIC's register window, identity-mapped by the loader.
        unsafe { Mmio::new(BASE, 0x20) }
    }

    fn read(reg: u32) -> u32 {
        let r = regs();
        r.write32(REGSEL, reg);
        r.read32(WINDOW)
    }

    fn write(reg: u32, v: u32) {
        let r = regs();
        r.write32(REGSEL, reg);
        r.write32(WINDOW, v);
    }

    /// Number of inputs (GSIs) the IOAPIC has (24 on PCs).
    pub fn inputs() -> u32 {
        (read(VERSION) >> 16 & 0xFF) + 1
    }

    /// The raw 64-bit redirection entry of `gsi`.
    pub fn entry(gsi: u32) -> u64 {
        let lo = read(REDIRECTION + 2 * gsi);
        let hi = read(REDIRECTION + 2 * gsi + 1);
        u64::from(hi) << 32 | u64::from(lo)
    }

    fn set_entry(gsi: u32, v: u64) {
        assert!(gsi < inputs(), "GSI {gsi} beyond the IOAPIC's inputs");
        // Mask first so no half-written entry is ever live.
        write(REDIRECTION + 2 * gsi, MASKED as u32);
        write(REDIRECTION + 2 * gsi + 1, (v >> 32) as u32);
        write(REDIRECTION + 2 * gsi, v as u32);
    }

    /// Delivers `gsi` as `vector` (fixed delivery, physical destination
    /// `apic_id`), unmasked.
    pub fn route(gsi: u32, vector: u8, trigger: Trigger, polarity: Polarity, apic_id: u8) {
        let mut v = u64::from(vector) | u64::from(apic_id) << 56;
        if polarity == Polarity::Low {
            v |= 1 << 13;
        }
        if trigger == Trigger::Level {
            v |= 1 << 15;
        }
        set_entry(gsi, v);
    }

    pub fn mask(gsi: u32) {
        set_entry(gsi, entry(gsi) | MASKED);
    }
}

/// MSI / MSI-X message for the xAPIC: what a device writes, and where, to
/// raise `vector` on the CPU with APIC ID `apic_id` (fixed delivery, edge,
/// physical destination).
pub fn msi_message(apic_id: u8, vector: u8) -> (u64, u32) {
    (0xFEE0_0000 | u64::from(apic_id) << 12, u32::from(vector))
}
