//! Device, input and endpoint contexts (32-byte contexts, HCCPARAMS1.CSZ = 0),
//! each read or written in one bounds-checked guest memory access.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub type Ctx = [u32; 8];

pub const CTX_SIZE: u64 = 32;

pub const SLOT_DISABLED: u32 = 0;
pub const SLOT_DEFAULT: u32 = 1;
pub const SLOT_ADDRESSED: u32 = 2;
pub const SLOT_CONFIGURED: u32 = 3;

pub const EP_DISABLED: u8 = 0;
pub const EP_RUNNING: u8 = 1;
pub const EP_HALTED: u8 = 2;
pub const EP_STOPPED: u8 = 3;
pub const EP_ERROR: u8 = 4;

pub fn read_ctx(mem: &GuestMemoryMmap<()>, addr: u64) -> Option<Ctx> {
    let mut raw = [0u8; 32];
    mem.read_slice(&mut raw, GuestAddress(addr)).ok()?;
    let mut ctx = [0u32; 8];
    for (i, v) in ctx.iter_mut().enumerate() {
        *v = u32::from_le_bytes([raw[i * 4], raw[i * 4 + 1], raw[i * 4 + 2], raw[i * 4 + 3]]);
    }
    Some(ctx)
}

pub fn write_ctx(mem: &GuestMemoryMmap<()>, addr: u64, ctx: &Ctx) -> bool {
    let mut raw = [0u8; 32];
    for (i, v) in ctx.iter().enumerate() {
        raw[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    mem.write_slice(&raw, GuestAddress(addr)).is_ok()
}

pub fn read_u64(mem: &GuestMemoryMmap<()>, addr: u64) -> Option<u64> {
    let mut raw = [0u8; 8];
    mem.read_slice(&mut raw, GuestAddress(addr)).ok()?;
    Some(u64::from_le_bytes(raw))
}

/// The TR dequeue pointer (dw2-3) and DCS of an endpoint context.
pub fn ep_dequeue(ctx: &Ctx) -> (u64, bool) {
    let ptr = u64::from(ctx[2]) | u64::from(ctx[3]) << 32;
    (ptr & !0xf, ptr & 1 != 0)
}

pub fn set_ep_dequeue(ctx: &mut Ctx, dequeue: u64, cycle: bool) {
    let ptr = (dequeue & !0xf) | u64::from(cycle);
    ctx[2] = ptr as u32;
    ctx[3] = (ptr >> 32) as u32;
}

/// EP type (dw1 5:3): 1-3 Isoch/Bulk/Interrupt OUT, 4 Control, 5-7 IN.
pub fn ep_type(ctx: &Ctx) -> u8 {
    ((ctx[1] >> 3) & 7) as u8
}
