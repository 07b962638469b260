//! The one error type of the `devices` crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("bus range {base:#x}+{len:#x} is empty or wraps")]
    BusRange { base: u64, len: u64 },
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    BusOverlap { base: u64, len: u64 },
    #[error("PCI slot {0} is already taken or out of range")]
    PciSlot(u8),
    #[error("guest memory access failed: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    #[error("virtqueue error: {0}")]
    Virtqueue(#[from] virtio_queue::Error),
    #[error("malformed virtio request: {0}")]
    BadRequest(&'static str),
    #[error("disk image {path}: {source}")]
    DiskOpen {
        path: String,
        source: std::io::Error,
    },
    #[error("disk I/O failed: {0}")]
    DiskIo(#[from] std::io::Error),
    #[error("disk image format: {0}")]
    DiskFormat(String),
    #[error("cannot allocate device memory: {0}")]
    HostMemory(String),
    #[error("MSI vector: {0}")]
    Msi(String),
    #[error("device worker: {0}")]
    Worker(String),
    #[error("fw_cfg: {0}")]
    FwCfg(String),
}

pub type Result<T> = std::result::Result<T, Error>;
