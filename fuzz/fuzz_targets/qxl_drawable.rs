//! QXL drawables (every type, with clips, QMasks, images, paths, strings,
//! composites) parsed from hostile guest memory and drawn on a canvas (see
//! `devices::display::qxl_fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    devices::display::qxl_fuzz::drawable(data);
});
