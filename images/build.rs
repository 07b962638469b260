//! Assembles the boot disks in `asm/` with GNU binutils and pads each one to a
//! whole raw disk in `OUT_DIR`, where `src/lib.rs` embeds them.
//!
//! Each image is one GNU as source that `.include`s `asm/boot.inc` (the shared
//! boot sector). It is linked flat at 0x7C00, the address the BIOS loads the
//! boot sector to; the boot sector loads the rest of the file itself.
//!
//! `asm/linux-stub.S` is not a disk but a stand-in Linux kernel (a bzImage)
//! for direct kernel boot. It is assembled as 64-bit code, linked at 0 (its
//! code is position independent) and kept as is, unpadded.
//!
//! `asm/rust-loader.S` boots the 64-bit Rust guests in `guests/`, which
//! `build/rust_guests.rs` builds with a nested cargo and packs behind it.
//!
//! The guest conventions in `src/guest_abi.rs` (ports, values, the reset
//! test's CMOS byte) reach every source as `--defsym` symbols, so the
//! constants `src/lib.rs` exports are the ones the guests were built with.

use std::env;
use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::Command;

#[path = "src/guest_abi.rs"]
mod guest_abi;
#[path = "build/nested_cargo.rs"]
mod nested_cargo;
#[path = "build/rust_guests.rs"]
mod rust_guests;

struct Image {
    /// Source `asm/<name>.S`, output `$OUT_DIR/<name>.img`.
    name: &'static str,
    /// Size of the raw disk the program is padded to.
    disk_size: usize,
}

const MIB: usize = 1024 * 1024;

const IMAGES: &[Image] = &[
    Image {
        name: "demo",
        disk_size: MIB,
    },
    Image {
        name: "poweroff",
        disk_size: MIB,
    },
    Image {
        name: "reset",
        disk_size: MIB,
    },
    Image {
        name: "acpi",
        disk_size: MIB,
    },
    // Writes sector 2048 (offset 1 MiB), so the disk must extend past it.
    Image {
        name: "virtio-blk",
        disk_size: 2 * MIB,
    },
];

/// The boot sector loads everything after itself with one BIOS call into
/// 0x7E00 of segment 0. Its CHS fallback reads track 0 only (at least 63
/// sectors on any hard-disk geometry), and the virtio test uses RAM from
/// 0x20000, so a program must stay within 63 sectors.
const MAX_PROGRAM_SIZE: usize = 63 * 512;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let asm_dir = manifest_dir.join("asm");

    // A directory path makes Cargo rerun us when any file under it changes.
    println!("cargo:rerun-if-changed=asm");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=src/guest_abi.rs");
    println!("cargo:rerun-if-env-changed=SPICEBOX_AS");
    println!("cargo:rerun-if-env-changed=SPICEBOX_LD");

    // The tools are overridable for hosts whose native binutils do not
    // target x86 (for example x86_64-linux-gnu-as from
    // binutils-x86-64-linux-gnu).
    let tools = Tools {
        assembler: env::var("SPICEBOX_AS").unwrap_or_else(|_| "as".to_owned()),
        linker: env::var("SPICEBOX_LD").unwrap_or_else(|_| "ld".to_owned()),
        asm_dir,
        out_dir: out_dir.clone(),
    };

    for image in IMAGES {
        // Linked at 0x7C00, where the BIOS loads the boot sector.
        let bytes = tools.build(image.name, Arch::I386, 0x7C00);
        check_program(image.name, &bytes);

        let mut padded = bytes;
        padded.resize(image.disk_size, 0);
        let disk = out_dir.join(format!("{}.img", image.name));
        fs::write(&disk, &padded).unwrap_or_else(|e| panic!("writing {}: {e}", disk.display()));
    }

    // File offsets are what matter (the setup header sits at fixed offsets
    // and the 64-bit code only uses RIP-relative addresses), so link at 0.
    let bytes = tools.build("linux-stub", Arch::X86_64, 0);
    check_bzimage("linux-stub", &bytes);

    // The 64-bit Rust guests' loader: a boot sector like the others, with
    // 16-, 32- and 64-bit code, so assembled as x86-64.
    let loader = tools.build("rust-loader", Arch::X86_64, 0x7C00);
    check_program("rust-loader", &loader);
    rust_guests::build(
        &manifest_dir,
        &out_dir,
        &loader,
        guest_abi::RUST_GUEST_PAYLOAD_LBA,
    );
}

/// `(name, value)` of every constant in `src/guest_abi.rs`, for `--defsym`.
macro_rules! asm_symbols {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), guest_abi::$name as u64)),*]
    };
}

const ASM_SYMBOLS: &[(&str, u64)] = asm_symbols!(
    ACPI_PM1A_CNT_PORT,
    ACPI_POWER_OFF_VALUE,
    SERIAL_PORT,
    RESET_BOOTS,
    RESET_CMOS_INDEX,
    RUST_GUEST_PAYLOAD_LBA,
    SCENE_WIDTH,
    SCENE_HEIGHT,
    SCENE_BAR_WIDTH,
    SCENE_BOX_X,
    SCENE_BOX_Y,
    SCENE_BOX_W,
    SCENE_BOX_H,
);

/// What `as` assembles for and `ld` links as.
#[derive(Clone, Copy)]
enum Arch {
    /// `as --32`, `ld -m elf_i386`: real- and protected-mode code.
    I386,
    /// `as --64`, `ld -m elf_x86_64`.
    X86_64,
}

/// The binutils and directories every image is built with.
struct Tools {
    assembler: String,
    linker: String,
    asm_dir: PathBuf,
    out_dir: PathBuf,
}

impl Tools {
    /// Assembles `asm/<name>.S` and links it flat (`--oformat binary`) with
    /// its text at `text_addr`; returns the bytes, also kept as
    /// `$OUT_DIR/<name>.bin`.
    fn build(&self, name: &str, arch: Arch, text_addr: u64) -> Vec<u8> {
        let source = self.asm_dir.join(format!("{name}.S"));
        let object = self.out_dir.join(format!("{name}.o"));
        let program = self.out_dir.join(format!("{name}.bin"));
        let (as_mode, emulation) = match arch {
            Arch::I386 => ("--32", "elf_i386"),
            Arch::X86_64 => ("--64", "elf_x86_64"),
        };

        let mut assemble = Command::new(&self.assembler);
        assemble.arg(as_mode);
        for (symbol, value) in ASM_SYMBOLS {
            assemble.arg("--defsym").arg(format!("{symbol}={value:#x}"));
        }
        run(assemble
            .arg("-I")
            .arg(&self.asm_dir)
            .arg("-o")
            .arg(&object)
            .arg(&source));
        run(Command::new(&self.linker)
            .args(["-m", emulation])
            .arg(format!("-Ttext={text_addr:#x}"))
            .args(["-e", "_start", "--oformat", "binary", "-o"])
            .arg(&program)
            .arg(&object));

        fs::read(&program).unwrap_or_else(|e| panic!("reading {}: {e}", program.display()))
    }
}

/// The minimum a boot loader checks before loading a bzImage: the boot
/// sector signature, the "HdrS" magic, and a protected-mode part behind the
/// setup sectors that is long enough to hold the 64-bit entry (at +0x200).
fn check_bzimage(name: &str, bytes: &[u8]) {
    assert!(
        bytes.len() > 0x268,
        "{name}: {} bytes, shorter than a setup header",
        bytes.len()
    );
    assert_eq!(
        &bytes[0x1FE..0x200],
        &[0x55, 0xAA],
        "{name}: boot flag at 0x1FE"
    );
    assert_eq!(
        &bytes[0x202..0x206],
        b"HdrS",
        "{name}: header magic at 0x202"
    );
    let setup_len = (usize::from(bytes[0x1F1]) + 1) * 512;
    assert!(
        bytes.len() > setup_len + 0x200,
        "{name}: {} bytes, no 64-bit entry point after {setup_len} bytes of setup",
        bytes.len()
    );
}

fn check_program(name: &str, bytes: &[u8]) {
    assert!(
        bytes.len() > 512,
        "{name}: program is {} bytes; it must be a boot sector plus the code it loads",
        bytes.len()
    );
    assert!(
        bytes.len() <= MAX_PROGRAM_SIZE,
        "{name}: program is {} bytes, more than the {MAX_PROGRAM_SIZE} the boot sector can load",
        bytes.len()
    );
    assert_eq!(
        &bytes[510..512],
        &[0x55, 0xAA],
        "{name}: no boot signature at offset 510 (boot.inc must be included first)"
    );
}

/// Runs a binutils command, turning "not installed" and assembler errors into
/// messages that say what to do.
fn run(command: &mut Command) {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{program}` not found: the images crate assembles its boot disks with GNU binutils. \
             Install the `binutils` package (Debian/Ubuntu: `apt-get install binutils`), \
             or point SPICEBOX_AS / SPICEBOX_LD at an x86 `as` / `ld`."
        ),
        Err(e) => panic!("running `{program}`: {e}"),
    };
    if !output.status.success() {
        panic!(
            "`{}` failed ({}):\n{}{}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Binutils warnings (an unresolved symbol, say) can hide a broken image;
    // surface them in the Cargo output.
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("cargo:warning={program}: {line}");
    }
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}
