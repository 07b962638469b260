//! The per-connection link estimate fed client-driven events (acks, PONGs
//! with any ids and timestamps, arbitrary timing; see `spice::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice::fuzz::link_meter(data);
});
