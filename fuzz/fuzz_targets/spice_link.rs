//! cargo fuzz run spice_link — see spice::fuzzing::link.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spice::fuzzing::link(data);
});
