//! Deterministic pseudo-random numbers for the randomized unit tests
//! (hostile-input sweeps, model comparisons): xorshift, seeded per test.

/// 32-bit xorshift (13, 17, 5) from `seed` (not 0).
pub fn xorshift32(mut seed: u32) -> impl FnMut() -> u32 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    }
}

/// 64-bit xorshift (13, 7, 17) from `seed` (not 0).
pub fn xorshift64(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
