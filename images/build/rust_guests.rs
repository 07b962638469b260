//! Builds the 64-bit Rust test guests (`guests/`, a Cargo workspace of its
//! own) and packs each one behind `asm/rust-loader.S` into a raw disk image.
//!
//! The nested `cargo build` (see `nested_cargo.rs`) has its own
//! `--target-dir` under `OUT_DIR`, so it never waits for the outer build's
//! lock.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::nested_cargo::{nested_cargo, GUEST_TARGET};

const MIB: usize = 1024 * 1024;

struct RustGuest {
    /// Binary `guests/programs/src/bin/<name>.rs`; output
    /// `$OUT_DIR/<name>.img` (and `<name>.elf`, for addr2line).
    name: &'static str,
    /// Size of the raw disk, at least the loader plus the image.
    disk_size: usize,
}

const RUST_GUESTS: &[RustGuest] = &[
    RustGuest {
        name: "pci-list",
        disk_size: MIB,
    },
    RustGuest {
        name: "crash",
        disk_size: MIB,
    },
    RustGuest {
        name: "virtio-msix",
        disk_size: MIB,
    },
    RustGuest {
        name: "qxl-native",
        disk_size: MIB,
    },
    // scripts/bench_blk extends it to 256 MiB (images::virtio_bench_disk).
    RustGuest {
        name: "virtio-bench",
        disk_size: MIB,
    },
    RustGuest {
        name: "ac97-play",
        disk_size: MIB,
    },
    RustGuest {
        name: "virtio-input",
        disk_size: MIB,
    },
    RustGuest {
        name: "vdagent",
        disk_size: MIB,
    },
    RustGuest {
        name: "ac97-record",
        disk_size: MIB,
    },
    RustGuest {
        name: "xhci-storage",
        disk_size: MIB,
    },
    RustGuest {
        name: "vga13",
        disk_size: MIB,
    },
];

/// The header `guests/guest-rt/link.ld` puts first in every image, which the
/// loader checks too.
const HEADER_MAGIC: &[u8; 8] = b"SPBXRTG1";
const LOAD_ADDR: u64 = 0x10_0000;
/// Header offset of the image checksum (FNV-1a 64 over the flat image with
/// these 8 bytes zero).
const CHECKSUM_AT: usize = 0x28;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    })
}

pub fn build(manifest_dir: &Path, out_dir: &Path, loader: &[u8], payload_lba: u32) {
    let guests_dir = manifest_dir.join("guests");
    rerun_if_guest_sources_change(&guests_dir);
    check_every_guest_is_listed(&guests_dir.join("programs/src/bin"));
    println!("cargo:rerun-if-env-changed=SPICEBOX_OBJCOPY");

    let target_dir = out_dir.join("guests-target");
    let output = nested_cargo(&guests_dir, &target_dir, "build")
        .output()
        .unwrap_or_else(|e| panic!("running cargo for the Rust test guests: {e}"));
    if !output.status.success() {
        panic!(
            "building the Rust test guests in {} failed ({}):\n{}",
            guests_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let objcopy = env::var("SPICEBOX_OBJCOPY").unwrap_or_else(|_| "objcopy".to_owned());
    let elf_dir = target_dir.join(GUEST_TARGET).join("release");
    let payload_offset = payload_lba as usize * 512;
    assert!(
        loader.len() <= payload_offset,
        "rust-loader is {} bytes, more than the {payload_offset} before the payload",
        loader.len()
    );
    for guest in RUST_GUESTS {
        let elf = out_dir.join(format!("{}.elf", guest.name));
        fs::copy(elf_dir.join(guest.name), &elf)
            .unwrap_or_else(|e| panic!("copying the {} guest: {e}", guest.name));
        let flat = out_dir.join(format!("{}.payload", guest.name));
        let status = Command::new(&objcopy)
            .args(["-O", "binary"])
            .arg(&elf)
            .arg(&flat)
            .status()
            .unwrap_or_else(|e| {
                panic!("running {objcopy}: {e} (install binutils, or set SPICEBOX_OBJCOPY)")
            });
        assert!(
            status.success(),
            "{objcopy} -O binary {} failed",
            elf.display()
        );
        let mut payload = fs::read(&flat).unwrap_or_else(|e| panic!("{}: {e}", flat.display()));
        check_payload(guest.name, &payload);
        // The checksum guest-rt verifies before main: a loader that put a
        // chunk in the wrong place fails the boot with a clear line.
        let checksum = fnv1a(&payload);
        payload[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&checksum.to_le_bytes());

        let mut disk = loader.to_vec();
        disk.resize(payload_offset, 0);
        disk.extend_from_slice(&payload);
        let size = guest.disk_size.max(disk.len().next_multiple_of(MIB));
        disk.resize(size, 0);
        let path = out_dir.join(format!("{}.img", guest.name));
        fs::write(&path, &disk).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// Everything under `guests/` that is an input (not a hand build's
/// `target/`), so that Cargo reruns this script when a guest changes.
fn rerun_if_guest_sources_change(guests_dir: &Path) {
    let entries = fs::read_dir(guests_dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", guests_dir.display()));
    for entry in entries {
        let path: PathBuf = entry.expect("guests/ entry").path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// A binary in `programs/src/bin/` (`<name>.rs` or `<name>/main.rs`) that
/// `RUST_GUESTS` lacks would be built and never packed: say so.
fn check_every_guest_is_listed(bin_dir: &Path) {
    let entries =
        fs::read_dir(bin_dir).unwrap_or_else(|e| panic!("reading {}: {e}", bin_dir.display()));
    for entry in entries {
        let path = entry.expect("src/bin entry").path();
        let name = if path.is_dir() {
            path.file_name()
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem()
        } else {
            continue;
        };
        let name = name.and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            RUST_GUESTS.iter().any(|g| g.name == name),
            "guest {name} ({}) is not in RUST_GUESTS in images/build/rust_guests.rs",
            path.display()
        );
    }
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The header the loader relies on, checked here so that a layout mistake
/// fails the build instead of the boot.
fn check_payload(name: &str, payload: &[u8]) {
    assert!(
        payload.len() >= CHECKSUM_AT + 8,
        "{name}: image of {} bytes",
        payload.len()
    );
    assert_eq!(
        &payload[..8],
        HEADER_MAGIC,
        "{name}: header magic (link.ld)"
    );
    assert_eq!(le_u64(payload, 0x08), LOAD_ADDR, "{name}: load address");
    assert_eq!(
        le_u64(payload, 0x10),
        payload.len() as u64,
        "{name}: the header's size must be the flat image's (a section outside .header..__load_end?)"
    );
    assert_eq!(le_u64(payload, CHECKSUM_AT), 0, "{name}: checksum field");
    let end = le_u64(payload, 0x18);
    let entry = le_u64(payload, 0x20);
    assert!(end >= LOAD_ADDR + payload.len() as u64, "{name}: image end");
    assert!(
        (LOAD_ADDR..LOAD_ADDR + payload.len() as u64).contains(&entry),
        "{name}: entry {entry:#x} outside the image"
    );
}
