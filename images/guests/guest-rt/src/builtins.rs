//! The memory functions the compiler calls, which libc would provide on the
//! host target (compiler_builtins leaves them out there). `rep movsb` /
//! `rep stosb` are fast at CPL 3 and, being asm, cannot be turned back into
//! calls to themselves.

use core::arch::asm;

/// # Safety
/// As C's memcpy: `n` bytes readable at `src`, writable at `dst`, no overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    asm!(
        "rep movsb",
        inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _,
        options(nostack, preserves_flags)
    );
    dst
}

/// # Safety
/// As C's memmove: `n` bytes readable at `src`, writable at `dst`.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // dst before src, or no overlap: forwards is safe.
        return memcpy(dst, src, n);
    }
    // dst inside [src, src + n): copy backwards from the last byte.
    asm!(
        "std",
        "rep movsb",
        "cld",
        inout("rdi") dst.add(n).wrapping_sub(1) => _,
        inout("rsi") src.add(n).wrapping_sub(1) => _,
        inout("rcx") n => _,
        options(nostack)
    );
    dst
}

/// # Safety
/// As C's memset: `n` bytes writable at `dst`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    asm!(
        "rep stosb",
        inout("rdi") dst => _, inout("rcx") n => _, in("al") c as u8,
        options(nostack, preserves_flags)
    );
    dst
}

/// # Safety
/// As C's memcmp: `n` bytes readable at `a` and `b`.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        let (x, y) = (*a.add(i), *b.add(i));
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// As memcmp; only zero / non-zero is meaningful.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    memcmp(a, b, n)
}

/// Referenced from the unwind tables of the precompiled `alloc` (built with
/// panic=unwind); never called, since guests abort on panic.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
