//! Audio helpers of the end-to-end tests: a real SPICE client recording the
//! playback channel (tests/py/spice_playback.py) and the tone analysis.

use std::path::Path;
use std::process::Command;

use crate::tools::require_spice_client_glib;

/// spice-gtk's SpiceClientGLib recording `seconds` of the playback channel
/// of the server at 127.0.0.1:`port` into `out` (raw S16 interleaved); it
/// prints a `playback key=value...` summary.
pub fn recorder(port: u16, out: &Path, seconds: &str) -> Command {
    require_spice_client_glib();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/py/spice_playback.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--seconds", seconds, "--timeout", "120", "--out"])
        .arg(out);
    cmd
}

/// Power of `hz` in `x` (sampled at `rate`), by Goertzel's recurrence.
pub fn power(x: &[f64], hz: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// The strongest frequency between 50 Hz and 2 kHz in the left channel of
/// interleaved stereo `pcm` (1 Hz, then 0.05 Hz steps), and how far it stands
/// above the band's average (a tone, not noise).
pub fn dominant(pcm: &[i16], rate: f64) -> (f64, f64) {
    let left: Vec<f64> = pcm.iter().step_by(2).map(|&s| f64::from(s)).collect();
    // Two seconds is plenty for 0.05 Hz and keeps the scan fast.
    let x = &left[..left.len().min(2 * rate as usize)];
    let coarse: Vec<(f64, f64)> = (50..2000)
        .map(|f| (f64::from(f), power(x, f64::from(f), rate)))
        .collect();
    let mean = coarse.iter().map(|c| c.1).sum::<f64>() / coarse.len() as f64;
    let (f0, _) = coarse
        .iter()
        .copied()
        .fold((0.0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    let (f, p) = (0..=40)
        .map(|i| f0 - 1.0 + f64::from(i) * 0.05)
        .map(|f| (f, power(x, f, rate)))
        .fold((0.0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    (f, p / mean.max(1.0))
}
