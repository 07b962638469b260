//! The message dispatch of every registered SPICE channel kind: arbitrary client
//! bytes after the link stage, on a real channel task (see `spice::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice::fuzz::channel_dispatch(data);
});
