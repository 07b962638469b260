//! cargo fuzz run spice_opus — see spice::fuzz::opus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spice::fuzz::opus(data);
});
