//! Type headers and data of each packet: decoding of checked lengths into
//! [`Packet`]s and encoding back, for the negotiated sizes.

use crate::filter::{parse_rules, rules_to_string};
use crate::packet::{
    BufferedBulkPacket, BulkPacket, ControlPacket, DeviceConnect, EpInfo, Fields, InterfaceInfo,
    Negotiated, Packet, SmallPacket,
};
use crate::proto::{packet_type as t, Caps, Speed, Status};
use crate::Error;

/// Decodes a packet whose type header is exactly `neg.type_header_len(ty)` bytes.
pub(crate) fn decode(
    neg: &Negotiated,
    ty: u32,
    header: &[u8],
    data: Vec<u8>,
) -> Result<Packet, Error> {
    let mut f = Fields::new(header);
    let status = |v: u8| Status(v);
    Ok(match ty {
        t::HELLO => {
            let end = header.iter().position(|&b| b == 0).unwrap_or(header.len());
            let version = String::from_utf8_lossy(&header[..end]).into_owned();
            let mut word = [0u8; 4];
            // Only the first capability word is known in 0.7; a short word is zero-padded.
            for (i, b) in data.iter().take(4).enumerate() {
                word[i] = *b;
            }
            if !data.len().is_multiple_of(4) {
                return Err(Error::Malformed("hello capabilities are not whole u32s"));
            }
            Packet::Hello {
                version,
                caps: Caps(u32::from_le_bytes(word)).sanitized(),
            }
        }
        t::DEVICE_CONNECT => Packet::DeviceConnect(DeviceConnect {
            speed: Speed(f.u8()),
            device_class: f.u8(),
            device_subclass: f.u8(),
            device_protocol: f.u8(),
            vendor_id: f.u16(),
            product_id: f.u16(),
            device_version_bcd: if f.rest() >= 2 { f.u16() } else { 0 },
        }),
        t::DEVICE_DISCONNECT => Packet::DeviceDisconnect,
        t::RESET => Packet::Reset,
        t::INTERFACE_INFO => {
            let count = f.u32();
            if count > 32 {
                return Err(Error::Malformed("interface_count > 32"));
            }
            Packet::InterfaceInfo(InterfaceInfo {
                count,
                interface: f.array32(),
                class: f.array32(),
                subclass: f.array32(),
                protocol: f.array32(),
            })
        }
        t::EP_INFO => {
            let mut info = EpInfo {
                ep_type: f.array32(),
                interval: f.array32(),
                interface: f.array32(),
                ..EpInfo::default()
            };
            if neg.ep_info_max_packet_size || neg.bulk_streams {
                for v in info.max_packet_size.iter_mut() {
                    *v = f.u16();
                }
            }
            if neg.bulk_streams {
                for v in info.max_streams.iter_mut() {
                    *v = f.u32();
                }
            }
            Packet::EpInfo(Box::new(info))
        }
        t::SET_CONFIGURATION => Packet::SetConfiguration {
            configuration: f.u8(),
        },
        t::GET_CONFIGURATION => Packet::GetConfiguration,
        t::CONFIGURATION_STATUS => Packet::ConfigurationStatus {
            status: status(f.u8()),
            configuration: f.u8(),
        },
        t::SET_ALT_SETTING => Packet::SetAltSetting {
            interface: f.u8(),
            alt: f.u8(),
        },
        t::GET_ALT_SETTING => Packet::GetAltSetting { interface: f.u8() },
        t::ALT_SETTING_STATUS => Packet::AltSettingStatus {
            status: status(f.u8()),
            interface: f.u8(),
            alt: f.u8(),
        },
        t::START_ISO_STREAM => Packet::StartIsoStream {
            endpoint: f.u8(),
            pkts_per_urb: f.u8(),
            no_urbs: f.u8(),
        },
        t::STOP_ISO_STREAM => Packet::StopIsoStream { endpoint: f.u8() },
        t::ISO_STREAM_STATUS => Packet::IsoStreamStatus {
            status: status(f.u8()),
            endpoint: f.u8(),
        },
        t::START_INTERRUPT_RECEIVING => Packet::StartInterruptReceiving {
            endpoint: in_ep(f.u8())?,
        },
        t::STOP_INTERRUPT_RECEIVING => Packet::StopInterruptReceiving {
            endpoint: in_ep(f.u8())?,
        },
        t::INTERRUPT_RECEIVING_STATUS => {
            let status = status(f.u8());
            Packet::InterruptReceivingStatus {
                status,
                endpoint: in_ep(f.u8())?,
            }
        }
        t::ALLOC_BULK_STREAMS => Packet::AllocBulkStreams {
            endpoints: f.u32(),
            no_streams: f.u32(),
        },
        t::FREE_BULK_STREAMS => Packet::FreeBulkStreams { endpoints: f.u32() },
        t::BULK_STREAMS_STATUS => Packet::BulkStreamsStatus {
            endpoints: f.u32(),
            no_streams: f.u32(),
            status: status(f.u8()),
        },
        t::CANCEL_DATA_PACKET => Packet::CancelDataPacket,
        t::FILTER_REJECT => Packet::FilterReject,
        t::FILTER_FILTER => {
            let Some((&0, text)) = data.split_last() else {
                return Err(Error::Malformed("filter_filter is not NUL-terminated"));
            };
            let text = std::str::from_utf8(text)
                .map_err(|_| Error::Malformed("filter_filter is not ASCII"))?;
            Packet::FilterFilter(parse_rules(text)?)
        }
        t::DEVICE_DISCONNECT_ACK => Packet::DeviceDisconnectAck,
        t::START_BULK_RECEIVING => {
            let stream_id = f.u32();
            let bytes_per_transfer = f.u32();
            if bytes_per_transfer > crate::MAX_BULK_TRANSFER_SIZE {
                return Err(Error::Malformed(
                    "bulk receiving transfer size over 128 MiB",
                ));
            }
            Packet::StartBulkReceiving {
                stream_id,
                bytes_per_transfer,
                endpoint: in_ep(f.u8())?,
                no_transfers: f.u8(),
            }
        }
        t::STOP_BULK_RECEIVING => Packet::StopBulkReceiving {
            stream_id: f.u32(),
            endpoint: in_ep(f.u8())?,
        },
        t::BULK_RECEIVING_STATUS => Packet::BulkReceivingStatus {
            stream_id: f.u32(),
            endpoint: in_ep(f.u8())?,
            status: status(f.u8()),
        },
        t::CONTROL_PACKET => Packet::Control(ControlPacket {
            endpoint: f.u8(),
            request: f.u8(),
            requesttype: f.u8(),
            status: status(f.u8()),
            value: f.u16(),
            index: f.u16(),
            length: f.u16(),
            data,
        }),
        t::BULK_PACKET => {
            let endpoint = f.u8();
            let status = status(f.u8());
            let low = f.u16();
            let stream_id = f.u32();
            let high = if neg.bulk_length_32bit { f.u16() } else { 0 };
            Packet::Bulk(BulkPacket {
                endpoint,
                status,
                length: u32::from(high) << 16 | u32::from(low),
                stream_id,
                data,
            })
        }
        t::ISO_PACKET | t::INTERRUPT_PACKET => {
            let p = SmallPacket {
                endpoint: f.u8(),
                status: status(f.u8()),
                length: f.u16(),
                data,
            };
            if ty == t::ISO_PACKET {
                Packet::Iso(p)
            } else {
                Packet::Interrupt(p)
            }
        }
        t::BUFFERED_BULK_PACKET => Packet::BufferedBulk(BufferedBulkPacket {
            stream_id: f.u32(),
            length: f.u32(),
            endpoint: f.u8(),
            status: status(f.u8()),
            data,
        }),
        _ => return Err(Error::UnknownType(ty)),
    })
}

fn in_ep(endpoint: u8) -> Result<u8, Error> {
    if endpoint & 0x80 == 0 {
        return Err(Error::Malformed("receiving on an OUT endpoint"));
    }
    Ok(endpoint)
}

/// Appends the type header and data of `packet` for the negotiated sizes.
pub(crate) fn encode_body(
    neg: &Negotiated,
    packet: &Packet,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let mut u8s = |v: &[u8]| out.extend_from_slice(v);
    match packet {
        Packet::Hello { version, caps } => {
            let mut field = [0u8; 64];
            let bytes = version.as_bytes();
            let n = bytes.len().min(63);
            field[..n].copy_from_slice(&bytes[..n]);
            u8s(&field);
            u8s(&caps.0.to_le_bytes());
        }
        Packet::DeviceConnect(d) => {
            u8s(&[
                d.speed.0,
                d.device_class,
                d.device_subclass,
                d.device_protocol,
            ]);
            u8s(&d.vendor_id.to_le_bytes());
            u8s(&d.product_id.to_le_bytes());
            if neg.device_version {
                u8s(&d.device_version_bcd.to_le_bytes());
            }
        }
        Packet::DeviceDisconnect
        | Packet::Reset
        | Packet::GetConfiguration
        | Packet::CancelDataPacket
        | Packet::FilterReject
        | Packet::DeviceDisconnectAck => {}
        Packet::InterfaceInfo(i) => {
            if i.count > 32 {
                return Err(Error::Malformed("interface_count > 32"));
            }
            u8s(&i.count.to_le_bytes());
            for a in [&i.interface, &i.class, &i.subclass, &i.protocol] {
                u8s(a);
            }
        }
        Packet::EpInfo(e) => {
            for a in [&e.ep_type, &e.interval, &e.interface] {
                u8s(a);
            }
            if neg.ep_info_max_packet_size || neg.bulk_streams {
                for v in e.max_packet_size {
                    u8s(&v.to_le_bytes());
                }
            }
            if neg.bulk_streams {
                for v in e.max_streams {
                    u8s(&v.to_le_bytes());
                }
            }
        }
        Packet::SetConfiguration { configuration } => u8s(&[*configuration]),
        Packet::ConfigurationStatus {
            status,
            configuration,
        } => u8s(&[status.0, *configuration]),
        Packet::SetAltSetting { interface, alt } => u8s(&[*interface, *alt]),
        Packet::GetAltSetting { interface } => u8s(&[*interface]),
        Packet::AltSettingStatus {
            status,
            interface,
            alt,
        } => u8s(&[status.0, *interface, *alt]),
        Packet::StartIsoStream {
            endpoint,
            pkts_per_urb,
            no_urbs,
        } => u8s(&[*endpoint, *pkts_per_urb, *no_urbs]),
        Packet::StopIsoStream { endpoint } => u8s(&[*endpoint]),
        Packet::IsoStreamStatus { status, endpoint } => u8s(&[status.0, *endpoint]),
        Packet::StartInterruptReceiving { endpoint }
        | Packet::StopInterruptReceiving { endpoint } => u8s(&[in_ep(*endpoint)?]),
        Packet::InterruptReceivingStatus { status, endpoint } => {
            u8s(&[status.0, in_ep(*endpoint)?])
        }
        Packet::AllocBulkStreams {
            endpoints,
            no_streams,
        } => {
            u8s(&endpoints.to_le_bytes());
            u8s(&no_streams.to_le_bytes());
        }
        Packet::FreeBulkStreams { endpoints } => u8s(&endpoints.to_le_bytes()),
        Packet::BulkStreamsStatus {
            endpoints,
            no_streams,
            status,
        } => {
            u8s(&endpoints.to_le_bytes());
            u8s(&no_streams.to_le_bytes());
            u8s(&[status.0]);
        }
        Packet::FilterFilter(rules) => {
            u8s(rules_to_string(rules).as_bytes());
            u8s(&[0]);
        }
        Packet::StartBulkReceiving {
            stream_id,
            bytes_per_transfer,
            endpoint,
            no_transfers,
        } => {
            u8s(&stream_id.to_le_bytes());
            u8s(&bytes_per_transfer.to_le_bytes());
            u8s(&[in_ep(*endpoint)?, *no_transfers]);
        }
        Packet::StopBulkReceiving {
            stream_id,
            endpoint,
        } => {
            u8s(&stream_id.to_le_bytes());
            u8s(&[in_ep(*endpoint)?]);
        }
        Packet::BulkReceivingStatus {
            stream_id,
            endpoint,
            status,
        } => {
            u8s(&stream_id.to_le_bytes());
            u8s(&[in_ep(*endpoint)?, status.0]);
        }
        Packet::Control(c) => {
            u8s(&[c.endpoint, c.request, c.requesttype, c.status.0]);
            u8s(&c.value.to_le_bytes());
            u8s(&c.index.to_le_bytes());
            u8s(&c.length.to_le_bytes());
            u8s(&c.data);
        }
        Packet::Bulk(b) => {
            if !neg.bulk_length_32bit && b.length > 0xffff {
                return Err(Error::Malformed(
                    "bulk length over 16 bits without 32bits_bulk_length",
                ));
            }
            u8s(&[b.endpoint, b.status.0]);
            u8s(&(b.length as u16).to_le_bytes());
            u8s(&b.stream_id.to_le_bytes());
            if neg.bulk_length_32bit {
                u8s(&((b.length >> 16) as u16).to_le_bytes());
            }
            u8s(&b.data);
        }
        Packet::Iso(p) | Packet::Interrupt(p) => {
            u8s(&[p.endpoint, p.status.0]);
            u8s(&p.length.to_le_bytes());
            u8s(&p.data);
        }
        Packet::BufferedBulk(b) => {
            u8s(&b.stream_id.to_le_bytes());
            u8s(&b.length.to_le_bytes());
            u8s(&[b.endpoint, b.status.0]);
            u8s(&b.data);
        }
    }
    Ok(())
}
