//! cargo fuzz run spice_http — see spice::fuzzing::http.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spice::fuzzing::http(data);
});
