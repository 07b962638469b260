//! cargo fuzz run spice_http — see spice::fuzz::http.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spice::fuzz::http(data);
});
