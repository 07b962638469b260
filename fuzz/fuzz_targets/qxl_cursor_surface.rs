//! QXL cursor commands (shapes in chunk chains) and surface commands parsed
//! from hostile guest memory (see `devices::display::qxl_fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    devices::display::qxl_fuzz::commands(data);
});
