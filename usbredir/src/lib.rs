//! usbredir: the USB redirection protocol (usbredir 0.7, as `usbredirproto.h` and
//! `usbredirparser.c` define its wire format), written for hostile peers.
//!
//! * [`Parser`] is one end of a connection, [`Role::Guest`] (the VM side, as QEMU's
//!   usb-redir device) or [`Role::Host`] (the side owning the device, as spice-gtk or
//!   our test peer). Feed it received bytes and take [`Received`] packets out; give
//!   it [`Packet`]s and get bytes to send. It negotiates header sizes from both
//!   hellos (64-bit ids, 32-bit bulk lengths, ep_info max packet size, device
//!   version) and checks each packet's sender, capabilities and lengths before
//!   buffering its payload.
//! * [`filter`] parses and writes usbredir's device filter strings.
//!
//! No I/O and no dependency on devices or KVM: the xHCI model and the SPICE
//! channel both use it.

mod codec;
pub mod filter;
mod packet;
mod parser;
pub mod peer;
mod proto;

#[cfg(test)]
mod tests;

pub use filter::FilterRule;
pub use packet::{
    BufferedBulkPacket, BulkPacket, ControlPacket, DeviceConnect, EpInfo, InterfaceInfo,
    Negotiated, Packet, SmallPacket,
};
pub use parser::{Limits, Parser, Received};
pub use proto::{
    ep_index, ep_type, packet_type, Cap, Caps, Role, Speed, Status, MAX_BULK_TRANSFER_SIZE, VERSION,
};

/// The errors of this crate: each names why a packet was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("unknown usbredir packet type {0}")]
    UnknownType(u32),
    #[error("usbredir packet type {0} sent in the wrong direction")]
    WrongDirection(u32),
    #[error("usbredir packet type {0} needs capability {1:?}")]
    MissingCap(u32, Cap),
    #[error("usbredir packet type {packet_type} has an invalid length {length}")]
    BadLength { packet_type: u32, length: u32 },
    #[error("usbredir packet of {0} bytes is over the limit")]
    TooLong(u64),
    #[error("usbredir data is {data} bytes but the header says {length}")]
    DataLength { length: u32, data: usize },
    #[error("usbredir packet type {0} carries data it must not")]
    UnexpectedData(u32),
    #[error("malformed usbredir packet: {0}")]
    Malformed(&'static str),
    #[error("usbredir filter: {0}")]
    Filter(String),
}
