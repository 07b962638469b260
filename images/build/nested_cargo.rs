// The cargo command that builds or checks the Rust guest workspace
// (`guests/`), shared by build.rs and the unit test that lints the guests.
// Plain items only: both include it with `#[path]`.

use std::env;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

/// The host target: this machine kind has no rust-src and no
/// x86_64-unknown-none, so guests use the host's precompiled core/alloc.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Environment variables the nested cargo keeps; everything else is
/// dropped, so nothing of the outer build (RUSTFLAGS,
/// CARGO_ENCODED_RUSTFLAGS, CARGO_BUILD_TARGET, CARGO_TARGET_DIR, profile or
/// wrapper variables, ...) reaches it, and `guests/.cargo/config.toml`
/// alone sets the flags.
const KEEP_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
    // The toolchain the outer build runs with (rustup sets it for nested
    // invocations), so both builds use one compiler.
    "RUSTUP_TOOLCHAIN",
    // The outer build's jobserver: one token pool for both builds, so
    // together they never run more jobs than `-j`.
    "CARGO_MAKEFLAGS",
];

/// `cargo <subcommand> --release --offline --locked --target GUEST_TARGET
/// --target-dir <target_dir>`, run from `guests_dir` in a clean environment.
pub fn nested_cargo(guests_dir: &Path, target_dir: &Path, subcommand: &str) -> Command {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .current_dir(guests_dir)
        .env_clear()
        .arg(subcommand)
        .args(["--release", "--offline", "--locked", "--target"])
        .arg(GUEST_TARGET)
        .arg("--target-dir")
        .arg(target_dir);
    for var in KEEP_ENV {
        if let Some(value) = env::var_os(var) {
            command.env(var, value);
        }
    }
    // The compiler Cargo resolved for the outer build (set for build
    // scripts; tests run without it and find rustc on PATH).
    if let Some(rustc) = env::var_os("RUSTC") {
        command.env("RUSTC", rustc);
    }
    command
}
