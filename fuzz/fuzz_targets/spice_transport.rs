//! cargo fuzz run spice_transport — see spice::fuzz::transport.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spice::fuzz::transport(data);
});
