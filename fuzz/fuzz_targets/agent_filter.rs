//! The MAIN channel's client → agent message filter: agent message framing and
//! the reassembly and parsing of client monitors configs (see `spice::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice::fuzz::agent_filter(data);
});
