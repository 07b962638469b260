//! Errors of the VM layer; `main` turns them into one-line messages.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot open /dev/kvm: {0} (is KVM available? load kvm_intel or kvm_amd and check the device's permissions)")]
    KvmOpen(kvm_ioctls::Error),
    #[error("KVM {op} failed: {err}")]
    Kvm {
        op: &'static str,
        err: kvm_ioctls::Error,
    },
    #[error("KVM lacks a capability spicebox needs: {0}")]
    KvmCap(&'static str),
    #[error("cannot allocate guest memory: {0}")]
    Memory(String),
    #[error(transparent)]
    Devices(#[from] devices::Error),
    #[error(transparent)]
    Firmware(#[from] firmware::Error),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("vCPU thread failed: {0}")]
    Vcpu(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for wrapping a KVM ioctl error with the operation's name.
pub fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |err| Error::Kvm { op, err }
}
