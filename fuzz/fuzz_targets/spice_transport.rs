//! cargo fuzz run spice_transport — see spice::fuzzing::transport.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spice::fuzzing::transport(data);
});
