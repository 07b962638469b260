//! Numbers of the usbredir 0.7 protocol (usbredir's `usbredirproto.h`): packet
//! types, capabilities, statuses, speeds, endpoint types. All multi-byte fields on
//! the wire are little-endian and packed.

/// The version string our hello carries.
pub const VERSION: &str = concat!("spicebox usbredir ", env!("CARGO_PKG_VERSION"));

/// Packet types (`usb_redir_*`). 0..=27 are control packets, 100.. data packets.
pub mod packet_type {
    pub const HELLO: u32 = 0;
    pub const DEVICE_CONNECT: u32 = 1;
    pub const DEVICE_DISCONNECT: u32 = 2;
    pub const RESET: u32 = 3;
    pub const INTERFACE_INFO: u32 = 4;
    pub const EP_INFO: u32 = 5;
    pub const SET_CONFIGURATION: u32 = 6;
    pub const GET_CONFIGURATION: u32 = 7;
    pub const CONFIGURATION_STATUS: u32 = 8;
    pub const SET_ALT_SETTING: u32 = 9;
    pub const GET_ALT_SETTING: u32 = 10;
    pub const ALT_SETTING_STATUS: u32 = 11;
    pub const START_ISO_STREAM: u32 = 12;
    pub const STOP_ISO_STREAM: u32 = 13;
    pub const ISO_STREAM_STATUS: u32 = 14;
    pub const START_INTERRUPT_RECEIVING: u32 = 15;
    pub const STOP_INTERRUPT_RECEIVING: u32 = 16;
    pub const INTERRUPT_RECEIVING_STATUS: u32 = 17;
    pub const ALLOC_BULK_STREAMS: u32 = 18;
    pub const FREE_BULK_STREAMS: u32 = 19;
    pub const BULK_STREAMS_STATUS: u32 = 20;
    pub const CANCEL_DATA_PACKET: u32 = 21;
    pub const FILTER_REJECT: u32 = 22;
    pub const FILTER_FILTER: u32 = 23;
    pub const DEVICE_DISCONNECT_ACK: u32 = 24;
    pub const START_BULK_RECEIVING: u32 = 25;
    pub const STOP_BULK_RECEIVING: u32 = 26;
    pub const BULK_RECEIVING_STATUS: u32 = 27;
    pub const CONTROL_PACKET: u32 = 100;
    pub const BULK_PACKET: u32 = 101;
    pub const ISO_PACKET: u32 = 102;
    pub const INTERRUPT_PACKET: u32 = 103;
    pub const BUFFERED_BULK_PACKET: u32 = 104;
}

/// Capability bit numbers (`usb_redir_cap_*`) within the hello's first u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cap {
    BulkStreams = 0,
    ConnectDeviceVersion = 1,
    Filter = 2,
    DeviceDisconnectAck = 3,
    EpInfoMaxPacketSize = 4,
    Ids64Bit = 5,
    BulkLength32Bit = 6,
    BulkReceiving = 7,
}

/// A capability set (usbredir 0.7 uses one u32; later words are ignored, as the C
/// parser does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps(pub u32);

impl Caps {
    /// Every capability this crate implements.
    pub const ALL: Caps = Caps(0xff);

    pub fn with(self, cap: Cap) -> Caps {
        Caps(self.0 | 1 << cap as u8)
    }

    pub fn has(self, cap: Cap) -> bool {
        self.0 & (1 << cap as u8) != 0
    }

    /// bulk_streams is meaningless without ep_info's max packet size; the C parser
    /// drops it in that case, and so do we.
    pub fn sanitized(self) -> Caps {
        if self.has(Cap::BulkStreams) && !self.has(Cap::EpInfoMaxPacketSize) {
            Caps(self.0 & !(1 << Cap::BulkStreams as u8))
        } else {
            self
        }
    }
}

/// Transfer status (`usb_redir_success` ...). Unknown values from a peer are kept
/// as they are; the device model treats anything but SUCCESS as an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u8);

impl Status {
    pub const SUCCESS: Status = Status(0);
    pub const CANCELLED: Status = Status(1);
    pub const INVAL: Status = Status(2);
    pub const IOERROR: Status = Status(3);
    pub const STALL: Status = Status(4);
    pub const TIMEOUT: Status = Status(5);
    pub const BABBLE: Status = Status(6);
}

/// Device speed in device_connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speed(pub u8);

impl Speed {
    pub const LOW: Speed = Speed(0);
    pub const FULL: Speed = Speed(1);
    pub const HIGH: Speed = Speed(2);
    pub const SUPER: Speed = Speed(3);
    pub const UNKNOWN: Speed = Speed(255);
}

/// Endpoint transfer types in ep_info (the USB descriptor's values).
pub mod ep_type {
    pub const CONTROL: u8 = 0;
    pub const ISO: u8 = 1;
    pub const BULK: u8 = 2;
    pub const INTERRUPT: u8 = 3;
    pub const INVALID: u8 = 255;
}

/// The largest bulk transfer the C parser accepts (and so do we, at most).
pub const MAX_BULK_TRANSFER_SIZE: u32 = 128 * 1024 * 1024;

/// Index of an endpoint address in ep_info's 32-entry arrays: OUT 0..15, IN 16..31.
pub fn ep_index(endpoint: u8) -> usize {
    usize::from(((endpoint & 0x80) >> 3) | (endpoint & 0x0f))
}

/// Which end of the connection we are. QEMU's usb-redir device (and spicebox's
/// xHCI side) is the guest: it sends requests to the host and receives the
/// device's descriptions. A client such as spice-gtk (and our test peer) is the
/// host: it owns the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Guest,
    Host,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ep_index_matches_usbredir_layout() {
        assert_eq!(ep_index(0x00), 0);
        assert_eq!(ep_index(0x02), 2);
        assert_eq!(ep_index(0x81), 17);
        assert_eq!(ep_index(0x8f), 31);
        // Bits other than direction and number do not move the index.
        assert_eq!(ep_index(0x71), 1);
    }

    #[test]
    fn caps_sanitize_drops_streams_without_max_packet_size() {
        let c = Caps::default().with(Cap::BulkStreams);
        assert!(!c.sanitized().has(Cap::BulkStreams));
        let c = c.with(Cap::EpInfoMaxPacketSize);
        assert!(c.sanitized().has(Cap::BulkStreams));
        assert_eq!(Caps::ALL.sanitized(), Caps::ALL);
    }
}
