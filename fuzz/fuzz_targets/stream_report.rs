//! The display channel's STREAM_REPORT handling fed any bytes: parsing,
//! reports on streams the client has or not, rate and playout adaptation,
//! link samples (see `spice::fuzz::stream_report`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice::fuzz::stream_report(data);
});
