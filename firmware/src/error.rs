//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong while computing or loading boot-time guest state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("memory size of {0} bytes is below the 16 MiB minimum (use e.g. -m 256M)")]
    RamTooSmall(u64),
    #[error("memory size of {0} bytes is above the 1 TiB maximum")]
    RamTooLarge(u64),
    #[error("memory size of {0} bytes is not a multiple of 4 KiB (KVM maps whole pages)")]
    RamUnaligned(u64),

    #[error(
        "SeaBIOS image {} not found: install Debian's `seabios` package \
         (apt-get install seabios), or pass --bios PATH",
        .0.display()
    )]
    BiosMissing(PathBuf),
    #[error(
        "BIOS image {} is {size} bytes: it must be a multiple of 64 KiB between 64 KiB and 16 MiB",
        .path.display()
    )]
    BiosSize { path: PathBuf, size: u64 },
    #[error(
        "option ROM {} not found: install Debian's `seabios` package (apt-get install seabios)",
        .0.display()
    )]
    RomMissing(PathBuf),
    #[error("option ROM name {0:?} must be a plain file name")]
    RomName(String),
    #[error("{} is not a PCI option ROM: {reason}", .path.display())]
    RomInvalid { path: PathBuf, reason: &'static str },
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot read the {what}: {source}")]
    Read {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the kernel: {0}")]
    KernelLoad(#[from] linux_loader::loader::Error),
    #[error("unsupported kernel: {0}")]
    KernelUnsupported(&'static str),
    #[error("kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    #[error("initrd of {size} bytes does not fit between {floor:#x} and {ceiling:#x}")]
    InitrdTooLarge { size: u64, floor: u64, ceiling: u64 },
    #[error("{0} vCPUs cannot be described in an MP table (1 to 254 are possible)")]
    CpuCount(u16),
    #[error("invalid PCI interrupt route: {0}")]
    PciRoute(&'static str),
    #[error("ACPI tables: {0}")]
    Acpi(String),
    #[error("guest memory write of {len} bytes at {addr:#x} failed: {source}")]
    GuestMemory {
        addr: u64,
        len: usize,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;
