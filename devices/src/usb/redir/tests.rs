//! The guest side against a usbredir host peer built from the `usbredir` crate
//! (the role spice-gtk's usbredirhost plays).

use super::*;
use crate::usb::SetupPacket;
use usbredir::{BulkPacket, DeviceConnect, Received};
use vmm_sys_util::eventfd::EFD_NONBLOCK;

struct Peer {
    parser: Parser,
}

impl Peer {
    fn new(conn: &RedirConnection) -> Peer {
        let mut parser = Parser::new(Role::Host, Caps::ALL, Limits::default());
        parser.feed(&conn.take_output());
        assert!(matches!(
            parser.next(),
            Some(Ok(Received {
                packet: Packet::Hello { .. },
                ..
            }))
        ));
        let hello = parser.hello("test peer");
        assert!(conn.received(&hello).unwrap().is_empty());
        Peer { parser }
    }

    fn send(&self, conn: &RedirConnection, id: u64, p: Packet) -> Vec<RedirEvent> {
        conn.received(&self.parser.encode(id, &p).unwrap()).unwrap()
    }

    fn recv(&mut self, conn: &RedirConnection) -> Vec<Received> {
        self.parser.feed(&conn.take_output());
        std::iter::from_fn(|| self.parser.next())
            .map(|r| r.unwrap())
            .collect()
    }

    fn connect(&self, conn: &RedirConnection) -> RedirDevice {
        let c = DeviceConnect {
            speed: Speed::HIGH,
            device_class: 0,
            device_subclass: 0,
            device_protocol: 0,
            vendor_id: 0x46f4,
            product_id: 1,
            device_version_bcd: 0x100,
        };
        assert_eq!(
            self.send(conn, 0, Packet::DeviceConnect(c)),
            vec![RedirEvent::Connected(UsbSpeed::High)]
        );
        conn.device().unwrap()
    }
}

fn control(
    id: u64,
    request_type: u8,
    request: u8,
    value: u16,
    index: u16,
    length: u16,
) -> UsbRequest {
    let setup = SetupPacket {
        request_type,
        request,
        value,
        index,
        length,
    };
    UsbRequest {
        id,
        endpoint: if setup.is_in() { 0x80 } else { 0 },
        kind: TransferKind::Control(setup),
        data: vec![],
        length: u32::from(length),
    }
}

#[test]
fn control_transfer_round_trip() {
    let conn = RedirConnection::new();
    let mut peer = Peer::new(&conn);
    assert!(peer.parser.negotiated(Cap::Ids64Bit));
    let mut dev = peer.connect(&conn);
    assert_eq!(dev.speed(), UsbSpeed::High);
    let waker = Arc::new(EventFd::new(0).unwrap());
    dev.set_waker(waker.clone());
    assert_eq!(dev.submit(control(77, 0x80, 6, 0x100, 0, 18)), None);
    let got = peer.recv(&conn);
    let Packet::Control(c) = &got[0].packet else {
        panic!("{got:?}")
    };
    assert_eq!(
        (c.endpoint, c.request, c.requesttype, c.value, c.length),
        (0x80, 6, 0x80, 0x100, 18)
    );
    let reply = ControlPacket {
        data: vec![18, 1, 0, 2],
        length: 4,
        ..c.clone()
    };
    peer.send(&conn, got[0].id, Packet::Control(reply));
    assert_eq!(waker.read().unwrap(), 1);
    assert_eq!(
        dev.take_completions(),
        vec![UsbCompletion {
            id: 77,
            status: UsbStatus::Success,
            data: vec![18, 1, 0, 2],
            actual: 4
        }]
    );
    // A stall comes back as a stall.
    dev.submit(control(78, 0x80, 6, 0x600, 0, 10));
    let got = peer.recv(&conn);
    let Packet::Control(c) = &got[0].packet else {
        panic!()
    };
    peer.send(
        &conn,
        got[0].id,
        Packet::Control(ControlPacket {
            status: Status::STALL,
            length: 0,
            ..c.clone()
        }),
    );
    assert_eq!(dev.take_completions()[0].status, UsbStatus::Stall);
}

#[test]
fn configuration_and_interface_requests_become_usbredir_packets() {
    let conn = RedirConnection::new();
    let mut peer = Peer::new(&conn);
    let mut dev = peer.connect(&conn);
    dev.submit(control(1, 0x00, 9, 1, 0, 0));
    let got = peer.recv(&conn);
    assert_eq!(got[0].packet, Packet::SetConfiguration { configuration: 1 });
    peer.send(
        &conn,
        got[0].id,
        Packet::ConfigurationStatus {
            status: Status::SUCCESS,
            configuration: 1,
        },
    );
    dev.submit(control(2, 0x80, 8, 0, 0, 1));
    let got = peer.recv(&conn);
    assert_eq!(got[0].packet, Packet::GetConfiguration);
    peer.send(
        &conn,
        got[0].id,
        Packet::ConfigurationStatus {
            status: Status::SUCCESS,
            configuration: 1,
        },
    );
    dev.submit(control(3, 0x01, 11, 2, 1, 0));
    let got = peer.recv(&conn);
    assert_eq!(
        got[0].packet,
        Packet::SetAltSetting {
            interface: 1,
            alt: 2
        }
    );
    peer.send(
        &conn,
        got[0].id,
        Packet::AltSettingStatus {
            status: Status::SUCCESS,
            interface: 1,
            alt: 2,
        },
    );
    let done = dev.take_completions();
    assert_eq!(
        done.iter().map(|c| (c.id, c.status)).collect::<Vec<_>>(),
        [
            (1, UsbStatus::Success),
            (2, UsbStatus::Success),
            (3, UsbStatus::Success)
        ]
    );
    assert_eq!(done[1].data, [1]);
}

#[test]
fn bulk_out_and_in() {
    let conn = RedirConnection::new();
    let mut peer = Peer::new(&conn);
    let mut dev = peer.connect(&conn);
    dev.submit(UsbRequest {
        id: 5,
        endpoint: 0x02,
        kind: TransferKind::Bulk,
        data: b"USBC".to_vec(),
        length: 4,
    });
    dev.submit(UsbRequest {
        id: 6,
        endpoint: 0x81,
        kind: TransferKind::Bulk,
        data: vec![],
        length: 512,
    });
    let got = peer.recv(&conn);
    let Packet::Bulk(out) = &got[0].packet else {
        panic!()
    };
    assert_eq!(
        (out.endpoint, out.length, out.data.as_slice()),
        (0x02, 4, b"USBC".as_slice())
    );
    let Packet::Bulk(inp) = &got[1].packet else {
        panic!()
    };
    assert_eq!((inp.endpoint, inp.length, inp.data.len()), (0x81, 512, 0));
    // Replies in the other order: matched by id.
    let data = vec![7u8; 13];
    peer.send(
        &conn,
        got[1].id,
        Packet::Bulk(BulkPacket {
            endpoint: 0x81,
            status: Status::SUCCESS,
            length: 13,
            stream_id: 0,
            data: data.clone(),
        }),
    );
    peer.send(
        &conn,
        got[0].id,
        Packet::Bulk(BulkPacket {
            endpoint: 0x02,
            status: Status::SUCCESS,
            length: 4,
            stream_id: 0,
            data: vec![],
        }),
    );
    let done = dev.take_completions();
    assert_eq!((done[0].id, done[0].data.clone()), (6, data));
    assert_eq!((done[1].id, done[1].actual), (5, 4));
}

#[test]
fn interrupt_in_uses_interrupt_receiving_with_a_bounded_buffer() {
    let conn = RedirConnection::new();
    let mut peer = Peer::new(&conn);
    let mut dev = peer.connect(&conn);
    assert_eq!(
        dev.submit(UsbRequest {
            id: 9,
            endpoint: 0x81,
            kind: TransferKind::Interrupt,
            data: vec![],
            length: 8
        }),
        None
    );
    let got = peer.recv(&conn);
    assert_eq!(
        got[0].packet,
        Packet::StartInterruptReceiving { endpoint: 0x81 }
    );
    peer.send(
        &conn,
        got[0].id,
        Packet::InterruptReceivingStatus {
            status: Status::SUCCESS,
            endpoint: 0x81,
        },
    );
    let report = |key: u8| {
        Packet::Interrupt(SmallPacket {
            endpoint: 0x81,
            status: Status::SUCCESS,
            length: 8,
            data: vec![0, 0, key, 0, 0, 0, 0, 0],
        })
    };
    peer.send(&conn, 0, report(4));
    assert_eq!(dev.take_completions()[0].data[2], 4);
    // Reports without a waiting request are buffered, at most 64; the oldest go.
    for key in 0..100u8 {
        peer.send(&conn, 0, report(key));
    }
    dev.submit(UsbRequest {
        id: 10,
        endpoint: 0x81,
        kind: TransferKind::Interrupt,
        data: vec![],
        length: 8,
    });
    assert!(peer.recv(&conn).is_empty(), "receiving starts once");
    assert_eq!(dev.take_completions()[0].data[2], 36);
    // A cancelled waiting request gets nothing later.
    dev.submit(UsbRequest {
        id: 11,
        endpoint: 0x82,
        kind: TransferKind::Interrupt,
        data: vec![],
        length: 8,
    });
    dev.cancel(11);
    peer.send(
        &conn,
        0,
        Packet::Interrupt(SmallPacket {
            endpoint: 0x82,
            status: Status::SUCCESS,
            length: 1,
            data: vec![1],
        }),
    );
    assert!(dev.take_completions().is_empty());
}

#[test]
fn disconnect_fails_pending_and_acks() {
    let conn = RedirConnection::new();
    let mut peer = Peer::new(&conn);
    let mut dev = peer.connect(&conn);
    dev.submit(control(1, 0x80, 6, 0x100, 0, 18));
    peer.recv(&conn);
    assert_eq!(
        peer.send(&conn, 0, Packet::DeviceDisconnect),
        vec![RedirEvent::Disconnected]
    );
    assert_eq!(dev.take_completions()[0].status, UsbStatus::Error);
    assert_eq!(peer.recv(&conn)[0].packet, Packet::DeviceDisconnectAck);
    assert!(conn.device().is_none());
    // After the device is gone, submissions fail at once.
    assert_eq!(
        dev.submit(control(2, 0x80, 6, 0x100, 0, 18))
            .unwrap()
            .status,
        UsbStatus::Error
    );
    // A new device can come; the channel closing detaches it.
    peer.connect(&conn);
    assert_eq!(conn.closed(), vec![RedirEvent::Disconnected]);
}

#[test]
fn hostile_peer_bytes_are_dropped() {
    // Garbage is an error: the channel closes.
    let conn = RedirConnection::new();
    let _peer = Peer::new(&conn);
    assert_eq!(
        conn.received(&[0xff; 100]),
        Err(usbredir::Error::UnknownType(u32::MAX))
    );
    // A reply to nothing and a second device_connect are dropped.
    let conn = RedirConnection::new();
    let peer = Peer::new(&conn);
    let mut dev = peer.connect(&conn);
    peer.send(
        &conn,
        12345,
        Packet::Bulk(BulkPacket {
            endpoint: 0x81,
            status: Status::SUCCESS,
            length: 1,
            stream_id: 0,
            data: vec![1],
        }),
    );
    assert!(dev.take_completions().is_empty());
    let c = DeviceConnect {
        speed: Speed::FULL,
        device_class: 0,
        device_subclass: 0,
        device_protocol: 0,
        vendor_id: 1,
        product_id: 1,
        device_version_bcd: 0,
    };
    assert!(peer.send(&conn, 0, Packet::DeviceConnect(c)).is_empty());
}

#[test]
fn superspeed_needs_the_usb3_capabilities() {
    let c = DeviceConnect {
        speed: Speed::SUPER,
        device_class: 0,
        device_subclass: 0,
        device_protocol: 0,
        vendor_id: 1,
        product_id: 2,
        device_version_bcd: 0,
    };
    let conn = RedirConnection::new();
    let peer = Peer::new(&conn);
    assert_eq!(
        peer.send(&conn, 0, Packet::DeviceConnect(c)),
        vec![RedirEvent::Connected(UsbSpeed::Super)]
    );
    // A peer without 64-bit ids (usbredir < 0.6): the device runs at high speed.
    let conn = RedirConnection::new();
    let mut old = Parser::new(
        Role::Host,
        Caps(Caps::ALL.0 & !(1 << Cap::Ids64Bit as u8)),
        Limits::default(),
    );
    old.feed(&conn.take_output());
    assert!(old.next().unwrap().is_ok());
    conn.received(&old.hello("old")).unwrap();
    let events = conn
        .received(&old.encode(0, &Packet::DeviceConnect(c)).unwrap())
        .unwrap();
    assert_eq!(events, vec![RedirEvent::Connected(UsbSpeed::High)]);
}

#[test]
fn inline_completions_are_reported_to_the_transport_instead_of_waking() {
    let conn = RedirConnection::new();
    conn.set_inline_completions(true);
    let mut peer = Peer::new(&conn);
    let mut dev = peer.connect(&conn);
    let waker = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    dev.set_waker(waker.clone());
    let bulk_in = |id| UsbRequest {
        id,
        endpoint: 0x81,
        kind: TransferKind::Bulk,
        data: vec![],
        length: 512,
    };
    assert_eq!(dev.submit(bulk_in(5)), None);
    assert_eq!(dev.submit(bulk_in(6)), None);
    let got = peer.recv(&conn);
    assert_eq!(got.len(), 2);
    // Both answers in one read: one Completed for the transport, no wake-up.
    let mut bytes = Vec::new();
    for (r, fill) in got.iter().zip([1u8, 2]) {
        let Packet::Bulk(b) = &r.packet else {
            panic!("{r:?}")
        };
        let reply = BulkPacket {
            data: vec![fill; 3],
            length: 3,
            ..b.clone()
        };
        bytes.extend(peer.parser.encode(r.id, &Packet::Bulk(reply)).unwrap());
    }
    assert_eq!(conn.received(&bytes).unwrap(), vec![RedirEvent::Completed]);
    assert!(waker.read().is_err(), "the worker was woken");
    let done = dev.take_completions();
    assert_eq!(
        done.iter()
            .map(|c| (c.id, c.data.clone()))
            .collect::<Vec<_>>(),
        vec![(5, vec![1; 3]), (6, vec![2; 3])]
    );
    // Completions made on the controller's side still wake it: a failed
    // submit is immediate, and a disconnect fails what is pending.
    assert_eq!(dev.submit(bulk_in(7)), None);
    peer.recv(&conn);
    assert_eq!(
        peer.send(&conn, 0, Packet::DeviceDisconnect),
        vec![RedirEvent::Disconnected, RedirEvent::Completed]
    );
    assert_eq!(dev.take_completions()[0].id, 7);
    // Without the opt-in, the same answer wakes the worker and reports nothing.
    let conn = RedirConnection::new();
    let mut peer = Peer::new(&conn);
    let mut dev = peer.connect(&conn);
    dev.set_waker(waker.clone());
    dev.submit(bulk_in(8));
    let got = peer.recv(&conn);
    let Packet::Bulk(b) = &got[0].packet else {
        panic!()
    };
    let reply = BulkPacket {
        data: vec![9],
        length: 1,
        ..b.clone()
    };
    assert!(peer.send(&conn, got[0].id, Packet::Bulk(reply)).is_empty());
    assert_eq!(waker.read().unwrap(), 1);
    assert_eq!(dev.take_completions()[0].id, 8);
}

fn iso(id: u64, endpoint: u8, length: u32, data: Vec<u8>) -> UsbRequest {
    UsbRequest {
        id,
        endpoint,
        kind: TransferKind::Isochronous,
        data,
        length,
    }
}

/// Isochronous IN 0x81 and OUT 0x02 at high speed: the stream starts with
/// the first request, IN packets are buffered (bounded, oldest dropped,
/// over-long ones refused) and handed out one per request, OUT packets are
/// forwarded, a stopped endpoint stops its stream, a failed stream fails
/// its requests.
#[test]
fn iso_streams_buffer_in_packets_and_forward_out_packets() {
    let conn = RedirConnection::new();
    let mut peer = Peer::new(&conn);
    let mut info = usbredir::EpInfo::default();
    for ep in [0x81u8, 0x02] {
        let i = usbredir::ep_index(ep);
        info.ep_type[i] = usbredir::ep_type::ISO;
        info.interval[i] = 1;
        info.max_packet_size[i] = 192;
    }
    peer.send(&conn, 0, Packet::EpInfo(Box::new(info)));
    let mut dev = peer.connect(&conn);
    // The first request starts the stream and gets an empty packet.
    let done = dev.submit(iso(1, 0x81, 192, vec![])).unwrap();
    assert_eq!((done.status, done.data.len()), (UsbStatus::Success, 0));
    let sent = peer.recv(&conn);
    assert!(matches!(
        sent[..],
        [Received {
            packet: Packet::StartIsoStream {
                endpoint: 0x81,
                pkts_per_urb: 32,
                no_urbs: 3
            },
            ..
        }]
    ));
    let packet = |n: u16, len: usize| {
        let mut data = vec![0u8; len];
        data[..2].copy_from_slice(&n.to_le_bytes());
        Packet::Iso(SmallPacket {
            endpoint: 0x81,
            status: Status::SUCCESS,
            length: len as u16,
            data,
        })
    };
    // Prefill: nothing until a URB's worth (32) is buffered.
    for n in 0..31 {
        peer.send(&conn, 0, packet(n, 100));
    }
    assert!(dev
        .submit(iso(2, 0x81, 192, vec![]))
        .unwrap()
        .data
        .is_empty());
    peer.send(&conn, 0, packet(31, 100));
    let got = dev.submit(iso(3, 0x81, 192, vec![])).unwrap();
    assert_eq!(
        (got.id, &got.data[..2], got.data.len()),
        (3, &[0u8, 0][..], 100)
    );
    // 31 buffered; 300 more overflow the 192-packet buffer: the oldest go.
    for n in 32..332 {
        peer.send(&conn, 0, packet(n, 100));
    }
    // Over the max packet size: dropped, never buffered.
    peer.send(&conn, 0, packet(999, 193));
    let got = dev.submit(iso(4, 0x81, 192, vec![])).unwrap();
    assert_eq!(u16::from_le_bytes([got.data[0], got.data[1]]), 332 - 192);
    // A packet larger than the guest's TD: babble.
    let got = dev.submit(iso(5, 0x81, 50, vec![])).unwrap();
    assert_eq!(got.status, UsbStatus::Error);
    // OUT: the stream starts, the packet follows, done at once.
    let got = dev.submit(iso(6, 0x02, 0, vec![9; 64])).unwrap();
    assert_eq!((got.status, got.actual), (UsbStatus::Success, 64));
    let sent: Vec<Packet> = peer.recv(&conn).into_iter().map(|r| r.packet).collect();
    assert!(matches!(
        sent[0],
        Packet::StartIsoStream { endpoint: 0x02, .. }
    ));
    assert!(matches!(&sent[1], Packet::Iso(p) if p.endpoint == 0x02 && p.data == vec![9; 64]));
    // Not an isochronous endpoint (per ep_info): refused.
    let got = dev.submit(iso(7, 0x83, 8, vec![])).unwrap();
    assert_eq!(got.status, UsbStatus::Error);
    // Stop: STOP_ISO_STREAM, and a later request starts a new stream.
    dev.endpoint_stopped(0x81);
    let sent: Vec<Packet> = peer.recv(&conn).into_iter().map(|r| r.packet).collect();
    assert_eq!(sent, vec![Packet::StopIsoStream { endpoint: 0x81 }]);
    // A failed stream fails its requests until stopped.
    peer.send(
        &conn,
        0,
        Packet::IsoStreamStatus {
            status: Status::IOERROR,
            endpoint: 0x02,
        },
    );
    let got = dev.submit(iso(8, 0x02, 0, vec![1; 8])).unwrap();
    assert_eq!(got.status, UsbStatus::Error);
    assert!(peer.recv(&conn).is_empty());
}
