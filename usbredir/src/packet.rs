//! usbredir packets as Rust values, and their type-specific headers on the wire.
//!
//! A packet on the wire is `{type u32, length u32, id u32|u64}`, a type-specific
//! header whose size depends on the type and on the negotiated capabilities, then
//! data (hello's capability words, a filter string, or transfer data).

use crate::filter::FilterRule;
use crate::proto::{packet_type as t, Speed, Status};

/// device_connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceConnect {
    pub speed: Speed,
    pub device_class: u8,
    pub device_subclass: u8,
    pub device_protocol: u8,
    pub vendor_id: u16,
    pub product_id: u16,
    /// Only on the wire when both sides have connect_device_version; else 0.
    pub device_version_bcd: u16,
}

/// interface_info: `count` valid entries of 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub count: u32,
    pub interface: [u8; 32],
    pub class: [u8; 32],
    pub subclass: [u8; 32],
    pub protocol: [u8; 32],
}

/// ep_info, indexed by [`crate::ep_index`]. max_packet_size and max_streams are
/// zero unless the capabilities put them on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpInfo {
    pub ep_type: [u8; 32],
    pub interval: [u8; 32],
    pub interface: [u8; 32],
    pub max_packet_size: [u16; 32],
    pub max_streams: [u32; 32],
}

impl Default for EpInfo {
    fn default() -> Self {
        EpInfo {
            ep_type: [crate::ep_type::INVALID; 32],
            interval: [0; 32],
            interface: [0; 32],
            max_packet_size: [0; 32],
            max_streams: [0; 32],
        }
    }
}

/// control_packet: a setup packet and, for IN replies or OUT requests, its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    pub endpoint: u8,
    pub request: u8,
    pub requesttype: u8,
    pub status: Status,
    pub value: u16,
    pub index: u16,
    pub length: u16,
    pub data: Vec<u8>,
}

/// bulk_packet. `length` is 32-bit only with 32bits_bulk_length on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkPacket {
    pub endpoint: u8,
    pub status: Status,
    pub length: u32,
    pub stream_id: u32,
    pub data: Vec<u8>,
}

/// iso_packet and interrupt_packet share this shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmallPacket {
    pub endpoint: u8,
    pub status: Status,
    pub length: u16,
    pub data: Vec<u8>,
}

/// buffered_bulk_packet (bulk receiving).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferedBulkPacket {
    pub stream_id: u32,
    pub length: u32,
    pub endpoint: u8,
    pub status: Status,
    pub data: Vec<u8>,
}

/// Every usbredir 0.7 packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Hello {
        version: String,
        caps: crate::Caps,
    },
    DeviceConnect(DeviceConnect),
    DeviceDisconnect,
    Reset,
    InterfaceInfo(InterfaceInfo),
    EpInfo(Box<EpInfo>),
    SetConfiguration {
        configuration: u8,
    },
    GetConfiguration,
    ConfigurationStatus {
        status: Status,
        configuration: u8,
    },
    SetAltSetting {
        interface: u8,
        alt: u8,
    },
    GetAltSetting {
        interface: u8,
    },
    AltSettingStatus {
        status: Status,
        interface: u8,
        alt: u8,
    },
    StartIsoStream {
        endpoint: u8,
        pkts_per_urb: u8,
        no_urbs: u8,
    },
    StopIsoStream {
        endpoint: u8,
    },
    IsoStreamStatus {
        status: Status,
        endpoint: u8,
    },
    StartInterruptReceiving {
        endpoint: u8,
    },
    StopInterruptReceiving {
        endpoint: u8,
    },
    InterruptReceivingStatus {
        status: Status,
        endpoint: u8,
    },
    AllocBulkStreams {
        endpoints: u32,
        no_streams: u32,
    },
    FreeBulkStreams {
        endpoints: u32,
    },
    BulkStreamsStatus {
        endpoints: u32,
        no_streams: u32,
        status: Status,
    },
    CancelDataPacket,
    FilterReject,
    FilterFilter(Vec<FilterRule>),
    DeviceDisconnectAck,
    StartBulkReceiving {
        stream_id: u32,
        bytes_per_transfer: u32,
        endpoint: u8,
        no_transfers: u8,
    },
    StopBulkReceiving {
        stream_id: u32,
        endpoint: u8,
    },
    BulkReceivingStatus {
        stream_id: u32,
        endpoint: u8,
        status: Status,
    },
    Control(ControlPacket),
    Bulk(BulkPacket),
    Iso(SmallPacket),
    Interrupt(SmallPacket),
    BufferedBulk(BufferedBulkPacket),
}

impl Packet {
    pub fn packet_type(&self) -> u32 {
        match self {
            Packet::Hello { .. } => t::HELLO,
            Packet::DeviceConnect(_) => t::DEVICE_CONNECT,
            Packet::DeviceDisconnect => t::DEVICE_DISCONNECT,
            Packet::Reset => t::RESET,
            Packet::InterfaceInfo(_) => t::INTERFACE_INFO,
            Packet::EpInfo(_) => t::EP_INFO,
            Packet::SetConfiguration { .. } => t::SET_CONFIGURATION,
            Packet::GetConfiguration => t::GET_CONFIGURATION,
            Packet::ConfigurationStatus { .. } => t::CONFIGURATION_STATUS,
            Packet::SetAltSetting { .. } => t::SET_ALT_SETTING,
            Packet::GetAltSetting { .. } => t::GET_ALT_SETTING,
            Packet::AltSettingStatus { .. } => t::ALT_SETTING_STATUS,
            Packet::StartIsoStream { .. } => t::START_ISO_STREAM,
            Packet::StopIsoStream { .. } => t::STOP_ISO_STREAM,
            Packet::IsoStreamStatus { .. } => t::ISO_STREAM_STATUS,
            Packet::StartInterruptReceiving { .. } => t::START_INTERRUPT_RECEIVING,
            Packet::StopInterruptReceiving { .. } => t::STOP_INTERRUPT_RECEIVING,
            Packet::InterruptReceivingStatus { .. } => t::INTERRUPT_RECEIVING_STATUS,
            Packet::AllocBulkStreams { .. } => t::ALLOC_BULK_STREAMS,
            Packet::FreeBulkStreams { .. } => t::FREE_BULK_STREAMS,
            Packet::BulkStreamsStatus { .. } => t::BULK_STREAMS_STATUS,
            Packet::CancelDataPacket => t::CANCEL_DATA_PACKET,
            Packet::FilterReject => t::FILTER_REJECT,
            Packet::FilterFilter(_) => t::FILTER_FILTER,
            Packet::DeviceDisconnectAck => t::DEVICE_DISCONNECT_ACK,
            Packet::StartBulkReceiving { .. } => t::START_BULK_RECEIVING,
            Packet::StopBulkReceiving { .. } => t::STOP_BULK_RECEIVING,
            Packet::BulkReceivingStatus { .. } => t::BULK_RECEIVING_STATUS,
            Packet::Control(_) => t::CONTROL_PACKET,
            Packet::Bulk(_) => t::BULK_PACKET,
            Packet::Iso(_) => t::ISO_PACKET,
            Packet::Interrupt(_) => t::INTERRUPT_PACKET,
            Packet::BufferedBulk(_) => t::BUFFERED_BULK_PACKET,
        }
    }
}

/// Who may send a packet type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Host,
    Guest,
    Either,
}

pub fn sender(packet_type: u32) -> Option<Sender> {
    Some(match packet_type {
        t::HELLO | t::FILTER_FILTER => Sender::Either,
        t::CONTROL_PACKET | t::BULK_PACKET | t::ISO_PACKET | t::INTERRUPT_PACKET => Sender::Either,
        t::DEVICE_CONNECT
        | t::DEVICE_DISCONNECT
        | t::INTERFACE_INFO
        | t::EP_INFO
        | t::CONFIGURATION_STATUS
        | t::ALT_SETTING_STATUS
        | t::ISO_STREAM_STATUS
        | t::INTERRUPT_RECEIVING_STATUS
        | t::BULK_STREAMS_STATUS
        | t::BULK_RECEIVING_STATUS
        | t::BUFFERED_BULK_PACKET => Sender::Host,
        t::RESET
        | t::SET_CONFIGURATION
        | t::GET_CONFIGURATION
        | t::SET_ALT_SETTING
        | t::GET_ALT_SETTING
        | t::START_ISO_STREAM
        | t::STOP_ISO_STREAM
        | t::START_INTERRUPT_RECEIVING
        | t::STOP_INTERRUPT_RECEIVING
        | t::ALLOC_BULK_STREAMS
        | t::FREE_BULK_STREAMS
        | t::CANCEL_DATA_PACKET
        | t::FILTER_REJECT
        | t::DEVICE_DISCONNECT_ACK
        | t::START_BULK_RECEIVING
        | t::STOP_BULK_RECEIVING => Sender::Guest,
        _ => return None,
    })
}

/// What both hellos agreed on; it decides header and type-header sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub ids_64bit: bool,
    pub device_version: bool,
    pub ep_info_max_packet_size: bool,
    pub bulk_streams: bool,
    pub bulk_length_32bit: bool,
}

impl Negotiated {
    pub fn header_len(&self) -> usize {
        if self.ids_64bit {
            16
        } else {
            12
        }
    }

    /// Size of the type-specific header (`usbredirparser_get_type_header_len`).
    pub fn type_header_len(&self, packet_type: u32) -> Option<usize> {
        Some(match packet_type {
            t::HELLO => 64,
            t::DEVICE_CONNECT => {
                if self.device_version {
                    10
                } else {
                    8
                }
            }
            t::INTERFACE_INFO => 4 + 4 * 32,
            t::EP_INFO => {
                if self.bulk_streams {
                    96 + 64 + 128
                } else if self.ep_info_max_packet_size {
                    96 + 64
                } else {
                    96
                }
            }
            t::DEVICE_DISCONNECT
            | t::RESET
            | t::GET_CONFIGURATION
            | t::CANCEL_DATA_PACKET
            | t::FILTER_REJECT
            | t::FILTER_FILTER
            | t::DEVICE_DISCONNECT_ACK => 0,
            t::SET_CONFIGURATION
            | t::GET_ALT_SETTING
            | t::STOP_ISO_STREAM
            | t::START_INTERRUPT_RECEIVING
            | t::STOP_INTERRUPT_RECEIVING => 1,
            t::CONFIGURATION_STATUS
            | t::SET_ALT_SETTING
            | t::ISO_STREAM_STATUS
            | t::INTERRUPT_RECEIVING_STATUS => 2,
            t::ALT_SETTING_STATUS | t::START_ISO_STREAM => 3,
            t::ALLOC_BULK_STREAMS => 8,
            t::FREE_BULK_STREAMS => 4,
            t::BULK_STREAMS_STATUS => 9,
            t::START_BULK_RECEIVING => 10,
            t::STOP_BULK_RECEIVING => 5,
            t::BULK_RECEIVING_STATUS => 6,
            t::CONTROL_PACKET => 10,
            t::BULK_PACKET => {
                if self.bulk_length_32bit {
                    10
                } else {
                    8
                }
            }
            t::ISO_PACKET | t::INTERRUPT_PACKET => 4,
            t::BUFFERED_BULK_PACKET => 10,
            _ => return None,
        })
    }

    /// Types that may carry data after the type header.
    pub fn has_data(packet_type: u32) -> bool {
        matches!(
            packet_type,
            t::HELLO
                | t::FILTER_FILTER
                | t::CONTROL_PACKET
                | t::BULK_PACKET
                | t::ISO_PACKET
                | t::INTERRUPT_PACKET
                | t::BUFFERED_BULK_PACKET
        )
    }
}

/// A little-endian reader over a type header whose length was checked.
pub(crate) struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes, pos: 0 }
    }

    /// Missing bytes read as zero: the caller sized the header, and a shorter
    /// negotiated form (no max_packet_size, no device version) leaves fields zero.
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = self.bytes.get(self.pos + i).copied().unwrap_or(0);
        }
        self.pos += N;
        out
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    pub(crate) fn array32(&mut self) -> [u8; 32] {
        self.take()
    }

    pub(crate) fn rest(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
}
