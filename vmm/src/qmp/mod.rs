//! The control socket, speaking QEMU's QMP so that QEMU users' scripts, the
//! `qemu.qmp` library and `qmp-shell` work unchanged for the commands we have.
//!
//! `protocol` (framing, envelope, errors) → `session` (one client: negotiation,
//! dispatch) → `commands`/`input`/`spice` (QEMU's commands) → `backend` (what
//! they need, a trait) ← `vm` (the real machine). `events` carries the machine's
//! run status and broadcasts events; `server` owns sockets and threads.

mod args;
mod backend;
mod commands;
mod display_link;
mod events;
mod input;
mod keys;
mod protocol;
mod server;
mod session;
mod socket_path;
mod spice;
mod spice_link;
#[cfg(test)]
mod tests;
mod vm;

pub use backend::{DiskInfo, PowerButton, Screendump, SpiceControl};
pub use events::Monitor;
pub use server::{ControlServer, ControlSpec};
pub use spice::forward_spice_events;
pub use vm::MachineBackend;
