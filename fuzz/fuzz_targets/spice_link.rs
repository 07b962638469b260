//! cargo fuzz run spice_link — see spice::fuzz::link.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spice::fuzz::link(data);
});
