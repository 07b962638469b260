//! The host side of usbredir with an emulated device: what spice-gtk's
//! usbredirhost does with a real one, for tests. [`HostPeer`] answers the
//! guest's requests from an [`EmulatedDevice`]; [`Keyboard`] is a boot-protocol
//! HID keyboard whose key reports are pushed with [`HostPeer::report`].

pub mod iso;
pub mod storage;

use std::collections::HashSet;

use crate::{
    ep_index, ep_type, Cap, Caps, ControlPacket, DeviceConnect, EpInfo, Error, InterfaceInfo,
    Limits, Packet, Parser, Role, SmallPacket, Speed, Status,
};

/// A USB device as the host side sees it.
pub trait EmulatedDevice {
    fn connect(&self) -> DeviceConnect;
    fn interfaces(&self) -> InterfaceInfo;
    fn endpoints(&self) -> EpInfo;
    /// A control request on EP0: the status and, for IN requests, the data
    /// (at most `length` bytes are sent).
    fn control(&mut self, request: &ControlPacket) -> (Status, Vec<u8>);
    /// Bulk transfer: IN returns data, OUT takes `data` and returns nothing.
    fn bulk(&mut self, endpoint: u8, length: u32, data: &[u8]) -> (Status, Vec<u8>) {
        let _ = (endpoint, length, data);
        (Status::STALL, Vec::new())
    }
    /// An isochronous OUT packet the guest sent.
    fn iso_out(&mut self, endpoint: u8, data: &[u8]) {
        let _ = (endpoint, data);
    }
}

pub struct HostPeer<D: EmulatedDevice> {
    parser: Parser,
    pub device: D,
    out: Vec<u8>,
    receiving: HashSet<u8>,
    /// Isochronous endpoints the guest started a stream on.
    iso_streams: HashSet<u8>,
    /// START_ISO_STREAMs seen: (endpoint, pkts_per_urb, no_urbs).
    pub iso_starts: Vec<(u8, u8, u8)>,
    pub iso_stops: Vec<u8>,
    connected: bool,
    configuration: u8,
}

impl<D: EmulatedDevice> HostPeer<D> {
    pub fn new(device: D) -> HostPeer<D> {
        let caps = Caps::default()
            .with(Cap::ConnectDeviceVersion)
            .with(Cap::Filter)
            .with(Cap::DeviceDisconnectAck)
            .with(Cap::EpInfoMaxPacketSize)
            .with(Cap::Ids64Bit)
            .with(Cap::BulkLength32Bit);
        let parser = Parser::new(Role::Host, caps, Limits::default());
        let out = parser.hello("spicebox usbredir test peer");
        HostPeer {
            parser,
            device,
            out,
            receiving: HashSet::new(),
            iso_streams: HashSet::new(),
            iso_starts: Vec::new(),
            iso_stops: Vec::new(),
            connected: false,
            configuration: 0,
        }
    }

    /// The guest side's capabilities, once its hello arrived.
    pub fn peer_caps(&self) -> Option<Caps> {
        self.parser.peer_caps()
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn send(&mut self, id: u64, packet: &Packet) -> Result<(), Error> {
        let bytes = self.parser.encode(id, packet)?;
        self.out.extend_from_slice(&bytes);
        Ok(())
    }

    /// Announce the device (after the guest's hello arrived): interface and
    /// endpoint info, then device_connect, in usbredirhost's order.
    fn announce(&mut self) -> Result<(), Error> {
        let interfaces = self.device.interfaces();
        let endpoints = self.device.endpoints();
        let connect = self.device.connect();
        self.send(0, &Packet::InterfaceInfo(interfaces))?;
        self.send(0, &Packet::EpInfo(Box::new(endpoints)))?;
        self.send(0, &Packet::DeviceConnect(connect))?;
        self.connected = true;
        Ok(())
    }

    /// The device is unplugged.
    pub fn disconnect(&mut self) -> Result<(), Error> {
        self.connected = false;
        self.receiving.clear();
        self.iso_streams.clear();
        self.send(0, &Packet::DeviceDisconnect)
    }

    /// An interrupt IN report, sent if the guest started receiving on `endpoint`.
    pub fn report(&mut self, endpoint: u8, data: &[u8]) -> Result<bool, Error> {
        if !self.receiving.contains(&endpoint) {
            return Ok(false);
        }
        let packet = SmallPacket {
            endpoint,
            status: Status::SUCCESS,
            length: data.len() as u16,
            data: data.to_vec(),
        };
        self.send(0, &Packet::Interrupt(packet))?;
        Ok(true)
    }

    /// Whether the guest runs a stream on isochronous `endpoint`.
    pub fn iso_streaming(&self, endpoint: u8) -> bool {
        self.iso_streams.contains(&endpoint)
    }

    /// An isochronous IN packet, sent if the guest started the stream.
    pub fn iso_packet(&mut self, endpoint: u8, data: &[u8]) -> Result<bool, Error> {
        if !self.iso_streams.contains(&endpoint) {
            return Ok(false);
        }
        let packet = SmallPacket {
            endpoint,
            status: Status::SUCCESS,
            length: data.len() as u16,
            data: data.to_vec(),
        };
        self.send(0, &Packet::Iso(packet))?;
        Ok(true)
    }

    /// Bytes from the guest side; replies are queued for `take_output`.
    pub fn received(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.parser.feed(bytes);
        while let Some(r) = self.parser.next() {
            let r = r?;
            match r.packet {
                Packet::Hello { .. } => self.announce()?,
                Packet::Control(c) => {
                    let (status, mut data) = self.device.control(&c);
                    let is_in = c.endpoint & 0x80 != 0;
                    data.truncate(usize::from(c.length));
                    let reply = ControlPacket {
                        status,
                        length: if is_in { data.len() as u16 } else { c.length },
                        data: if is_in { data } else { Vec::new() },
                        ..c
                    };
                    self.send(r.id, &Packet::Control(reply))?;
                }
                Packet::SetConfiguration { configuration } => {
                    self.configuration = configuration;
                    self.receiving.clear();
                    self.iso_streams.clear();
                    let status = Packet::ConfigurationStatus {
                        status: Status::SUCCESS,
                        configuration,
                    };
                    self.send(r.id, &status)?;
                }
                Packet::GetConfiguration => {
                    let status = Packet::ConfigurationStatus {
                        status: Status::SUCCESS,
                        configuration: self.configuration,
                    };
                    self.send(r.id, &status)?;
                }
                Packet::SetAltSetting { interface, alt } => {
                    let status = Packet::AltSettingStatus {
                        status: Status::SUCCESS,
                        interface,
                        alt,
                    };
                    self.send(r.id, &status)?;
                }
                Packet::GetAltSetting { interface } => {
                    let status = Packet::AltSettingStatus {
                        status: Status::SUCCESS,
                        interface,
                        alt: 0,
                    };
                    self.send(r.id, &status)?;
                }
                Packet::StartInterruptReceiving { endpoint } => {
                    self.receiving.insert(endpoint);
                    let status = Packet::InterruptReceivingStatus {
                        status: Status::SUCCESS,
                        endpoint,
                    };
                    self.send(r.id, &status)?;
                }
                Packet::StopInterruptReceiving { endpoint } => {
                    self.receiving.remove(&endpoint);
                    let status = Packet::InterruptReceivingStatus {
                        status: Status::SUCCESS,
                        endpoint,
                    };
                    self.send(r.id, &status)?;
                }
                Packet::Bulk(b) => {
                    let (status, data) = self.device.bulk(b.endpoint, b.length, &b.data);
                    let is_in = b.endpoint & 0x80 != 0;
                    let reply = crate::BulkPacket {
                        status,
                        length: if is_in { data.len() as u32 } else { b.length },
                        data: if is_in { data } else { Vec::new() },
                        ..b
                    };
                    self.send(r.id, &Packet::Bulk(reply))?;
                }
                Packet::StartIsoStream {
                    endpoint,
                    pkts_per_urb,
                    no_urbs,
                } => {
                    self.iso_starts.push((endpoint, pkts_per_urb, no_urbs));
                    let iso = self.device.endpoints().ep_type[ep_index(endpoint)] == ep_type::ISO;
                    let status = if iso && pkts_per_urb > 0 && no_urbs > 0 {
                        self.iso_streams.insert(endpoint);
                        Status::SUCCESS
                    } else {
                        Status::INVAL
                    };
                    self.send(r.id, &Packet::IsoStreamStatus { status, endpoint })?;
                }
                Packet::StopIsoStream { endpoint } => {
                    self.iso_stops.push(endpoint);
                    self.iso_streams.remove(&endpoint);
                    let status = Packet::IsoStreamStatus {
                        status: Status::SUCCESS,
                        endpoint,
                    };
                    self.send(r.id, &status)?;
                }
                // OUT packets of a started stream (others are dropped).
                Packet::Iso(p)
                    if p.endpoint & 0x80 == 0 && self.iso_streams.contains(&p.endpoint) =>
                {
                    self.device.iso_out(p.endpoint, &p.data);
                }
                Packet::Reset | Packet::CancelDataPacket | Packet::DeviceDisconnectAck => {}
                Packet::FilterReject | Packet::FilterFilter(_) => {}
                _ => {}
            }
        }
        Ok(())
    }
}

/// A full-speed boot keyboard (interface class 3/1/1, interrupt IN 0x81, 8-byte reports).
#[derive(Default)]
pub struct Keyboard {
    /// LED reports the guest sent with SET_REPORT.
    pub leds: Vec<u8>,
}

pub const KEYBOARD_DEVICE_DESCRIPTOR: [u8; 18] = [
    18, 1, 0x10, 0x01, 0, 0, 0, 8, 0x6b, 0x1d, 0x01, 0x01, 0x00, 0x01, 1, 2, 0, 1,
];

/// The boot keyboard report descriptor (HID 1.11, appendix B.1).
pub const KEYBOARD_REPORT_DESCRIPTOR: [u8; 63] = [
    0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0x05, 0x07, 0x19, 0xe0, 0x29, 0xe7, 0x15, 0x00, 0x25, 0x01,
    0x75, 0x01, 0x95, 0x08, 0x81, 0x02, 0x95, 0x01, 0x75, 0x08, 0x81, 0x01, 0x95, 0x05, 0x75, 0x01,
    0x05, 0x08, 0x19, 0x01, 0x29, 0x05, 0x91, 0x02, 0x95, 0x01, 0x75, 0x03, 0x91, 0x01, 0x95, 0x06,
    0x75, 0x08, 0x15, 0x00, 0x25, 0x65, 0x05, 0x07, 0x19, 0x00, 0x29, 0x65, 0x81, 0x00, 0xc0,
];

fn keyboard_config_descriptor() -> Vec<u8> {
    let mut d = vec![9, 2, 34, 0, 1, 1, 0, 0xa0, 50];
    d.extend([9, 4, 0, 0, 1, 3, 1, 1, 0]);
    d.extend([
        9,
        0x21,
        0x11,
        0x01,
        0,
        1,
        0x22,
        KEYBOARD_REPORT_DESCRIPTOR.len() as u8,
        0,
    ]);
    d.extend([7, 5, 0x81, 3, 8, 0, 10]);
    d
}

impl EmulatedDevice for Keyboard {
    fn connect(&self) -> DeviceConnect {
        DeviceConnect {
            speed: Speed::FULL,
            device_class: 0,
            device_subclass: 0,
            device_protocol: 0,
            vendor_id: 0x1d6b,
            product_id: 0x0101,
            device_version_bcd: 0x0100,
        }
    }

    fn interfaces(&self) -> InterfaceInfo {
        let mut info = InterfaceInfo {
            count: 1,
            interface: [0; 32],
            class: [0; 32],
            subclass: [0; 32],
            protocol: [0; 32],
        };
        info.class[0] = 3;
        info.subclass[0] = 1;
        info.protocol[0] = 1;
        info
    }

    fn endpoints(&self) -> EpInfo {
        let mut e = EpInfo::default();
        e.ep_type[0] = ep_type::CONTROL;
        e.ep_type[ep_index(0x80)] = ep_type::CONTROL;
        e.max_packet_size[0] = 8;
        e.max_packet_size[ep_index(0x80)] = 8;
        let i = ep_index(0x81);
        e.ep_type[i] = ep_type::INTERRUPT;
        e.interval[i] = 10;
        e.max_packet_size[i] = 8;
        e
    }

    fn control(&mut self, r: &ControlPacket) -> (Status, Vec<u8>) {
        match (r.requesttype, r.request, r.value >> 8) {
            (0x80, 6, 1) => (Status::SUCCESS, KEYBOARD_DEVICE_DESCRIPTOR.to_vec()),
            (0x80, 6, 2) => (Status::SUCCESS, keyboard_config_descriptor()),
            (0x80, 6, 3) => {
                // String 0: language ids; others: "spicebox".
                if r.value & 0xff == 0 {
                    (Status::SUCCESS, vec![4, 3, 0x09, 0x04])
                } else {
                    let mut s = vec![18, 3];
                    s.extend("spicebox".encode_utf16().flat_map(u16::to_le_bytes));
                    (Status::SUCCESS, s)
                }
            }
            (0x81, 6, 0x22) => (Status::SUCCESS, KEYBOARD_REPORT_DESCRIPTOR.to_vec()),
            (0x80, 0, _) => (Status::SUCCESS, vec![0, 0]),
            // SET_IDLE, SET_PROTOCOL.
            (0x21, 0x0a | 0x0b, _) => (Status::SUCCESS, Vec::new()),
            // SET_REPORT (output: LEDs).
            (0x21, 0x09, _) => {
                self.leds.push(r.data.first().copied().unwrap_or(0));
                (Status::SUCCESS, Vec::new())
            }
            _ => (Status::STALL, Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Received;

    #[test]
    fn keyboard_peer_answers_a_guest() {
        let mut peer = HostPeer::new(Keyboard::default());
        let mut guest = Parser::new(Role::Guest, Caps::ALL, Limits::default());
        let mut to_peer = guest.hello("guest");
        guest.feed(&peer.take_output());
        assert!(matches!(
            guest.next(),
            Some(Ok(Received {
                packet: Packet::Hello { .. },
                ..
            }))
        ));
        peer.received(&std::mem::take(&mut to_peer)).unwrap();
        guest.feed(&peer.take_output());
        let got: Vec<Packet> = std::iter::from_fn(|| guest.next())
            .map(|r| r.unwrap().packet)
            .collect();
        assert!(matches!(got[0], Packet::InterfaceInfo(i) if i.class[0] == 3));
        assert!(matches!(&got[1], Packet::EpInfo(e) if e.ep_type[17] == ep_type::INTERRUPT));
        assert!(matches!(got[2], Packet::DeviceConnect(c) if c.speed == Speed::FULL));
        // GET_DESCRIPTOR(configuration, 9): the first 9 bytes, total length 34.
        let req = ControlPacket {
            endpoint: 0x80,
            request: 6,
            requesttype: 0x80,
            status: Status::SUCCESS,
            value: 0x200,
            index: 0,
            length: 9,
            data: vec![],
        };
        peer.received(&guest.encode(5, &Packet::Control(req)).unwrap())
            .unwrap();
        guest.feed(&peer.take_output());
        let r = guest.next().unwrap().unwrap();
        let Packet::Control(c) = r.packet else {
            panic!()
        };
        assert_eq!((r.id, c.length, c.data[2]), (5, 9, 34));
        // Reports flow only after start_interrupt_receiving.
        assert!(!peer.report(0x81, &[0; 8]).unwrap());
        peer.received(
            &guest
                .encode(6, &Packet::StartInterruptReceiving { endpoint: 0x81 })
                .unwrap(),
        )
        .unwrap();
        assert!(peer.report(0x81, &[0, 0, 4, 0, 0, 0, 0, 0]).unwrap());
        guest.feed(&peer.take_output());
        let got: Vec<Packet> = std::iter::from_fn(|| guest.next())
            .map(|r| r.unwrap().packet)
            .collect();
        assert!(matches!(&got[1], Packet::Interrupt(p) if p.data[2] == 4));
    }
}
