//! Byte sequences as usbredir's C parser writes them (packed little-endian
//! structs of `usbredirproto.h`), both directions, and hostile input.

use crate::*;

fn pair(guest_caps: Caps, host_caps: Caps) -> (Parser, Parser) {
    let mut guest = Parser::new(Role::Guest, guest_caps, Limits::default());
    let mut host = Parser::new(Role::Host, host_caps, Limits::default());
    let g = guest.hello("guest");
    let h = host.hello("host");
    host.feed(&g);
    guest.feed(&h);
    assert!(matches!(
        host.next(),
        Some(Ok(Received {
            packet: Packet::Hello { .. },
            ..
        }))
    ));
    assert!(matches!(
        guest.next(),
        Some(Ok(Received {
            packet: Packet::Hello { .. },
            ..
        }))
    ));
    (guest, host)
}

fn one(parser: &mut Parser, bytes: &[u8]) -> Result<Received, Error> {
    parser.feed(bytes);
    let r = parser.next().expect("a whole packet");
    assert!(parser.next().is_none());
    r
}

#[test]
fn hello_wire_format() {
    let p = Parser::new(Role::Guest, Caps(0x0000_00fd), Limits::default());
    let bytes = p.hello("qemu usb-redir guest 7.2.0");
    // header {type 0, length 64 + 4, 32-bit id 0}
    assert_eq!(&bytes[..12], &[0, 0, 0, 0, 68, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&bytes[12..38], b"qemu usb-redir guest 7.2.0");
    assert!(bytes[38..76].iter().all(|&b| b == 0));
    assert_eq!(&bytes[76..], &[0xfd, 0, 0, 0]);
    // A host parser reads it; version strings end at the first NUL.
    let mut host = Parser::new(Role::Host, Caps::ALL, Limits::default());
    let r = one(&mut host, &bytes).unwrap();
    assert_eq!(
        r.packet,
        Packet::Hello {
            version: "qemu usb-redir guest 7.2.0".into(),
            caps: Caps(0xfd)
        }
    );
    assert_eq!(host.peer_caps(), Some(Caps(0xfd)));
}

#[test]
fn hello_with_extra_capability_words_and_bad_streams_cap() {
    let mut host = Parser::new(Role::Host, Caps::ALL, Limits::default());
    let mut bytes = vec![0, 0, 0, 0, 72, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[b'x'; 64]); // no NUL at all
    bytes.extend_from_slice(&[0x01, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    let r = one(&mut host, &bytes).unwrap();
    // bulk_streams without ep_info_max_packet_size is dropped, as the C parser does.
    assert_eq!(
        r.packet,
        Packet::Hello {
            version: "x".repeat(64),
            caps: Caps(0)
        }
    );
}

#[test]
fn ids_are_64_bit_only_when_both_sides_say_so() {
    let (guest, _) = pair(Caps::ALL, Caps::ALL);
    let bytes = guest
        .encode(0x1_0000_0007, &Packet::GetConfiguration)
        .unwrap();
    assert_eq!(bytes, [7, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0]);

    let (guest, _) = pair(Caps::ALL, Caps::ALL.sanitized().with(Cap::Filter));
    let guest_only = Caps(Caps::ALL.0 & !(1 << Cap::Ids64Bit as u8));
    let (_, host) = pair(Caps::ALL, guest_only);
    assert_eq!(guest.sizes().header_len(), 16);
    let bytes = host.encode(3, &Packet::DeviceDisconnect).unwrap();
    assert_eq!(bytes, [2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0]);
    // 32-bit ids cannot carry a larger id.
    assert!(host.encode(1 << 32, &Packet::DeviceDisconnect).is_err());
}

#[test]
fn device_connect_with_and_without_device_version() {
    let (mut guest, host) = pair(Caps::ALL, Caps::ALL);
    let connect = DeviceConnect {
        speed: Speed::HIGH,
        device_class: 0,
        device_subclass: 0,
        device_protocol: 0,
        vendor_id: 0x1234,
        product_id: 0x5678,
        device_version_bcd: 0x0200,
    };
    let bytes = host.encode(0, &Packet::DeviceConnect(connect)).unwrap();
    assert_eq!(
        bytes,
        [
            1, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0x34, 0x12, 0x78, 0x56, 0,
            2
        ]
    );
    assert_eq!(
        one(&mut guest, &bytes).unwrap().packet,
        Packet::DeviceConnect(connect)
    );

    let old = Caps(0); // a peer of usbredir 0.3: no device version, 32-bit ids
    let (mut guest, host) = pair(Caps::ALL, old);
    let bytes = host.encode(0, &Packet::DeviceConnect(connect)).unwrap();
    assert_eq!(
        bytes,
        [1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0x34, 0x12, 0x78, 0x56]
    );
    let got = one(&mut guest, &bytes).unwrap().packet;
    assert_eq!(
        got,
        Packet::DeviceConnect(DeviceConnect {
            device_version_bcd: 0,
            ..connect
        })
    );
}

#[test]
fn ep_info_sizes_follow_caps() {
    let mut info = EpInfo::default();
    info.ep_type[0] = ep_type::CONTROL;
    info.ep_type[ep_index(0x81)] = ep_type::BULK;
    info.interval[ep_index(0x81)] = 0;
    info.max_packet_size[ep_index(0x81)] = 512;
    info.max_packet_size[0] = 64;
    let no_streams = Caps::ALL.0 & !(1 << Cap::BulkStreams as u8);
    let (mut guest, host) = pair(Caps(no_streams), Caps::ALL);
    let bytes = host.encode(0, &Packet::EpInfo(Box::new(info))).unwrap();
    assert_eq!(bytes.len(), 16 + 160);
    assert_eq!(&bytes[4..8], &160u32.to_le_bytes());
    assert_eq!(bytes[16 + 17], ep_type::BULK);
    assert_eq!(&bytes[16 + 96 + 34..16 + 96 + 36], &512u16.to_le_bytes());
    assert_eq!(
        one(&mut guest, &bytes).unwrap().packet,
        Packet::EpInfo(Box::new(info))
    );

    let (mut guest, host) = pair(Caps::ALL, Caps::ALL);
    let bytes = host.encode(0, &Packet::EpInfo(Box::new(info))).unwrap();
    assert_eq!(bytes.len(), 16 + 288);
    assert_eq!(
        one(&mut guest, &bytes).unwrap().packet,
        Packet::EpInfo(Box::new(info))
    );

    let (mut guest, host) = pair(Caps::ALL, Caps(0));
    let bytes = host.encode(0, &Packet::EpInfo(Box::new(info))).unwrap();
    assert_eq!(bytes.len(), 12 + 96);
    let short = EpInfo {
        max_packet_size: [0; 32],
        ..info
    };
    assert_eq!(
        one(&mut guest, &bytes).unwrap().packet,
        Packet::EpInfo(Box::new(short))
    );
}

#[test]
fn control_transfer_request_and_reply() {
    let (mut guest, mut host) = pair(Caps::ALL, Caps::ALL);
    // GET_DESCRIPTOR(device), 18 bytes: the request carries no data (IN).
    let request = ControlPacket {
        endpoint: 0x80,
        request: 6,
        requesttype: 0x80,
        status: Status::SUCCESS,
        value: 0x0100,
        index: 0,
        length: 18,
        data: vec![],
    };
    let bytes = guest.encode(42, &Packet::Control(request.clone())).unwrap();
    assert_eq!(
        bytes,
        [100, 0, 0, 0, 10, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 0x80, 6, 0x80, 0, 0, 1, 0, 0, 18, 0]
    );
    let r = one(&mut host, &bytes).unwrap();
    assert_eq!((r.id, r.packet), (42, Packet::Control(request.clone())));

    let reply = ControlPacket {
        data: (0..18).collect(),
        ..request.clone()
    };
    let bytes = host.encode(42, &Packet::Control(reply.clone())).unwrap();
    assert_eq!(&bytes[4..8], &28u32.to_le_bytes());
    assert_eq!(
        one(&mut guest, &bytes).unwrap().packet,
        Packet::Control(reply.clone())
    );

    // A short reply says so in its length.
    let short = ControlPacket {
        length: 8,
        data: (0..8).collect(),
        ..request.clone()
    };
    assert!(host.encode(42, &Packet::Control(short)).is_ok());
    // A data length that disagrees with the header is refused both ways.
    let lying = ControlPacket {
        length: 18,
        data: vec![0; 4],
        ..request
    };
    assert!(matches!(
        host.encode(1, &Packet::Control(lying)),
        Err(Error::DataLength { .. })
    ));
    let mut forged = bytes.clone();
    forged[16 + 8] = 17; // length 17, 18 bytes of data
    assert!(matches!(
        one(&mut guest, &forged),
        Err(Error::DataLength {
            length: 17,
            data: 18
        })
    ));
}

#[test]
fn bulk_packets_use_32_bit_lengths_when_negotiated() {
    let (mut guest, host) = pair(Caps::ALL, Caps::ALL);
    let data = vec![0x5a; 0x1_0010];
    let reply = BulkPacket {
        endpoint: 0x81,
        status: Status::SUCCESS,
        length: 0x1_0010,
        stream_id: 0,
        data: data.clone(),
    };
    let bytes = host.encode(9, &Packet::Bulk(reply.clone())).unwrap();
    // {ep 0x81, status 0, length 0x0010, stream 0, length_high 1}
    assert_eq!(&bytes[16..26], &[0x81, 0, 0x10, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(
        one(&mut guest, &bytes).unwrap().packet,
        Packet::Bulk(reply.clone())
    );

    let (_, old_host) = pair(Caps::ALL, Caps(0));
    assert!(old_host.encode(9, &Packet::Bulk(reply)).is_err());
    // 16-bit form: 8-byte type header.
    let small = BulkPacket {
        endpoint: 0x02,
        status: Status::SUCCESS,
        length: 4,
        stream_id: 0,
        data: vec![],
    };
    let (old_guest, _) = pair(Caps::ALL, Caps(0));
    let out = BulkPacket {
        data: vec![1, 2, 3, 4],
        ..small.clone()
    };
    let bytes = old_guest.encode(5, &Packet::Bulk(out)).unwrap();
    assert_eq!(
        bytes,
        [101, 0, 0, 0, 12, 0, 0, 0, 5, 0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4]
    );
    // The host's status reply for an OUT transfer has no data.
    assert!(old_host.encode(5, &Packet::Bulk(small)).is_ok());
}

#[test]
fn interrupt_receiving_and_packets() {
    let (mut guest, mut host) = pair(Caps::ALL, Caps::ALL);
    let start = guest
        .encode(3, &Packet::StartInterruptReceiving { endpoint: 0x81 })
        .unwrap();
    assert_eq!(&start[16..], &[0x81]);
    assert_eq!(
        one(&mut host, &start).unwrap().packet,
        Packet::StartInterruptReceiving { endpoint: 0x81 }
    );
    // Only IN endpoints receive.
    assert!(guest
        .encode(3, &Packet::StartInterruptReceiving { endpoint: 0x01 })
        .is_err());
    let report = SmallPacket {
        endpoint: 0x81,
        status: Status::SUCCESS,
        length: 8,
        data: vec![0, 0, 4, 0, 0, 0, 0, 0],
    };
    let bytes = host.encode(0, &Packet::Interrupt(report.clone())).unwrap();
    assert_eq!(&bytes[16..20], &[0x81, 0, 8, 0]);
    assert_eq!(
        one(&mut guest, &bytes).unwrap().packet,
        Packet::Interrupt(report)
    );
    // A guest may not ask for an interrupt IN transfer with a packet.
    let ask = SmallPacket {
        endpoint: 0x81,
        status: Status::SUCCESS,
        length: 8,
        data: vec![],
    };
    assert_eq!(
        guest.encode(1, &Packet::Interrupt(ask)),
        Err(Error::WrongDirection(packet_type::INTERRUPT_PACKET))
    );
}

#[test]
fn status_packets_and_config() {
    let (mut guest, mut host) = pair(Caps::ALL, Caps::ALL);
    let set = guest
        .encode(11, &Packet::SetConfiguration { configuration: 1 })
        .unwrap();
    assert_eq!(
        &set[..],
        &[6, 0, 0, 0, 1, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    assert_eq!(
        one(&mut host, &set).unwrap().packet,
        Packet::SetConfiguration { configuration: 1 }
    );
    let status = host
        .encode(
            11,
            &Packet::ConfigurationStatus {
                status: Status::SUCCESS,
                configuration: 1,
            },
        )
        .unwrap();
    assert_eq!(&status[16..], &[0, 1]);
    one(&mut guest, &status).unwrap();
    let alt = host
        .encode(
            12,
            &Packet::AltSettingStatus {
                status: Status::STALL,
                interface: 0,
                alt: 2,
            },
        )
        .unwrap();
    assert_eq!(&alt[16..], &[4, 0, 2]);
    let bulk_recv = guest
        .encode(
            1,
            &Packet::StartBulkReceiving {
                stream_id: 0,
                bytes_per_transfer: 16384,
                endpoint: 0x82,
                no_transfers: 4,
            },
        )
        .unwrap();
    assert_eq!(&bulk_recv[16..], &[0, 0, 0, 0, 0, 0x40, 0, 0, 0x82, 4]);
    assert!(one(&mut host, &bulk_recv).is_ok());
    let info = InterfaceInfo {
        count: 1,
        interface: [0; 32],
        class: [8; 32],
        subclass: [6; 32],
        protocol: [0x50; 32],
    };
    let bytes = host.encode(0, &Packet::InterfaceInfo(info)).unwrap();
    assert_eq!(bytes.len(), 16 + 132);
    assert_eq!(
        one(&mut guest, &bytes).unwrap().packet,
        Packet::InterfaceInfo(info)
    );
}

#[test]
fn filter_packets_need_the_cap_and_a_terminated_string() {
    let rules = filter::parse_rules("0x03,-1,-1,-1,0|-1,-1,-1,-1,1").unwrap();
    let (mut guest, host) = pair(Caps::ALL, Caps::ALL);
    let bytes = host
        .encode(0, &Packet::FilterFilter(rules.clone()))
        .unwrap();
    assert_eq!(&bytes[16..], b"0x03,-1,-1,-1,0|-1,-1,-1,-1,1|\0");
    assert_eq!(
        one(&mut guest, &bytes).unwrap().packet,
        Packet::FilterFilter(rules.clone())
    );
    let mut unterminated = bytes.clone();
    unterminated.pop();
    unterminated[4] -= 1;
    assert!(one(&mut guest, &unterminated).is_err());

    let no_filter = Caps(Caps::ALL.0 & !(1 << Cap::Filter as u8));
    let (_, host) = pair(no_filter, Caps::ALL);
    assert!(matches!(
        host.encode(0, &Packet::FilterFilter(rules)),
        Err(Error::MissingCap(..))
    ));
}

#[test]
fn split_input_is_reassembled() {
    let (mut guest, host) = pair(Caps::ALL, Caps::ALL);
    let mut stream = Vec::new();
    for id in 0..20u64 {
        let p = BulkPacket {
            endpoint: 0x81,
            status: Status::SUCCESS,
            length: id as u32,
            stream_id: 0,
            data: vec![id as u8; id as usize],
        };
        stream.extend(host.encode(id, &Packet::Bulk(p)).unwrap());
    }
    let mut got = Vec::new();
    for b in stream.chunks(3) {
        guest.feed(b);
        while let Some(r) = guest.next() {
            got.push(r.unwrap().id);
        }
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_eq!(guest.buffered(), 0);
}

#[test]
fn hostile_packets_are_rejected_and_skipped() {
    let (mut guest, host) = pair(Caps::ALL, Caps::ALL);
    let good = host.encode(1, &Packet::DeviceDisconnect).unwrap();
    let mut cases: Vec<(Vec<u8>, Error)> = Vec::new();
    let header = |ty: u32, len: u32| {
        let mut v = ty.to_le_bytes().to_vec();
        v.extend(len.to_le_bytes());
        v.extend(0u64.to_le_bytes());
        v
    };
    // Unknown type with a payload.
    let mut p = header(55, 3);
    p.extend([1, 2, 3]);
    cases.push((p, Error::UnknownType(55)));
    // A type only a guest may send, from the host.
    cases.push((
        header(packet_type::SET_CONFIGURATION, 1)
            .into_iter()
            .chain([1])
            .collect(),
        Error::WrongDirection(6),
    ));
    // Short type header.
    cases.push((
        header(packet_type::CONFIGURATION_STATUS, 1)
            .into_iter()
            .chain([0])
            .collect(),
        Error::BadLength {
            packet_type: 8,
            length: 1,
        },
    ));
    // Data where none may be.
    cases.push((
        header(packet_type::DEVICE_DISCONNECT, 2)
            .into_iter()
            .chain([0, 0])
            .collect(),
        Error::BadLength {
            packet_type: 2,
            length: 2,
        },
    ));
    // interface_count over 32.
    let mut p = header(packet_type::INTERFACE_INFO, 132);
    p.extend(33u32.to_le_bytes());
    p.extend([0; 128]);
    cases.push((p, Error::Malformed("interface_count > 32")));
    // A bulk reply for an OUT endpoint carrying data.
    let mut p = header(packet_type::BULK_PACKET, 12);
    p.extend([0x02, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9, 9]);
    cases.push((p, Error::UnexpectedData(packet_type::BULK_PACKET)));
    // An iso status for an OUT endpoint (never sent that way).
    cases.push((
        header(packet_type::ISO_PACKET, 4)
            .into_iter()
            .chain([0x01, 0, 0, 0])
            .collect(),
        Error::WrongDirection(102),
    ));
    for (bytes, error) in cases {
        guest.feed(&bytes);
        guest.feed(&good);
        assert_eq!(guest.next(), Some(Err(error)));
        // The stream stays in sync: the next packet parses.
        assert_eq!(
            guest.next(),
            Some(Ok(Received {
                id: 1,
                packet: Packet::DeviceDisconnect
            }))
        );
        assert_eq!(guest.next(), None);
    }
}

#[test]
fn oversized_packets_are_skipped_without_buffering() {
    let (_, host) = pair(Caps::ALL, Caps::ALL);
    let mut guest = Parser::new(Role::Guest, Caps::ALL, Limits { max_packet: 1024 });
    guest.feed(&host.hello("h"));
    assert!(guest.next().unwrap().is_ok());
    let mut p = 101u32.to_le_bytes().to_vec();
    p.extend(1_000_000u32.to_le_bytes());
    p.extend(0u64.to_le_bytes());
    guest.feed(&p);
    assert_eq!(guest.next(), Some(Err(Error::TooLong(1_000_000))));
    // Payload chunks arriving later are dropped, never held.
    for _ in 0..(1_000_000 / 10_000) {
        guest.feed(&[0u8; 10_000]);
        assert!(guest.next().is_none());
        assert_eq!(guest.buffered(), 0);
    }
    guest.feed(&host.encode(4, &Packet::DeviceDisconnect).unwrap());
    assert_eq!(guest.next().unwrap().unwrap().id, 4);
}

#[test]
fn second_hello_and_caps_on_our_side() {
    let (mut guest, host) = pair(Caps(0), Caps::ALL);
    assert!(matches!(
        one(&mut guest, &host.hello("again")),
        Err(Error::Malformed("second hello"))
    ));
    // We did not announce filter, so a filter_filter is refused.
    let mut p = packet_type::FILTER_FILTER.to_le_bytes().to_vec();
    p.extend(1u32.to_le_bytes());
    p.extend(0u32.to_le_bytes());
    p.push(0);
    assert_eq!(one(&mut guest, &p), Err(Error::MissingCap(23, Cap::Filter)));
}
