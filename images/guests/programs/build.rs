//! Links every guest binary as a bare image: no C runtime, no libc, static,
//! laid out by guest-rt's linker script. (Codegen flags are in
//! ../.cargo/config.toml; these are link flags, which only a build script can
//! give one package's binaries.)

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let script = dir.join("../guest-rt/link.ld");
    let script = script.canonicalize().expect("guest-rt/link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-Wl,--build-id=none",
        "-Wl,--gc-sections",
        // A section the script does not place is an error, not a silent
        // surprise in the image.
        "-Wl,--orphan-handling=error",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
