//! An isochronous test device: a full-speed vendor-class device (1d6b:0105)
//! with an isochronous IN endpoint (0x81) that streams numbered packets and
//! an isochronous OUT endpoint (0x02) that records what it gets, both 192
//! bytes every 1 ms frame (48 kHz 16-bit stereo audio's shape).
//!
//! IN packet `seq`: `iso_packet_size(seq)` bytes (176 to 192, as a 44.1 kHz
//! stream's frames vary), the 32-bit little-endian `seq` first, then
//! `iso_payload_byte(seq, i)` at each offset i. A reader can check order,
//! size and content of every packet it got and count the ones it missed.

use std::time::{Duration, Instant};

use super::EmulatedDevice;
use crate::{
    ep_index, ep_type, ControlPacket, DeviceConnect, EpInfo, InterfaceInfo, Speed, Status,
};

pub const ISO_IN: u8 = 0x81;
pub const ISO_OUT: u8 = 0x02;
pub const ISO_MAX_PACKET: u16 = 192;
pub const ISO_PRODUCT_ID: u16 = 0x0105;
/// Interface class/subclass/protocol the test guest looks for.
pub const ISO_INTERFACE: [u8; 3] = [0xff, 0x49, 0x01];

pub fn iso_packet_size(seq: u32) -> usize {
    176 + 4 * (seq % 5) as usize
}

pub fn iso_payload_byte(seq: u32, offset: usize) -> u8 {
    (seq as u8).wrapping_mul(31).wrapping_add(offset as u8)
}

pub fn iso_packet(seq: u32) -> Vec<u8> {
    let mut p: Vec<u8> = (0..iso_packet_size(seq))
        .map(|i| iso_payload_byte(seq, i))
        .collect();
    p[..4].copy_from_slice(&seq.to_le_bytes());
    p
}

const DEVICE_DESCRIPTOR: [u8; 18] = [
    18, 1, 0x10, 0x01, 0, 0, 0, 8, 0x6b, 0x1d, 0x05, 0x01, 0x00, 0x01, 1, 2, 0, 1,
];

fn config_descriptor() -> Vec<u8> {
    let [lo, hi] = ISO_MAX_PACKET.to_le_bytes();
    let mut d = vec![9, 2, 32, 0, 1, 1, 0, 0x80, 50];
    d.extend([
        9,
        4,
        0,
        0,
        2,
        ISO_INTERFACE[0],
        ISO_INTERFACE[1],
        ISO_INTERFACE[2],
        0,
    ]);
    // Isochronous, asynchronous, data; bInterval 1 (every frame).
    d.extend([7, 5, ISO_IN, 0x05, lo, hi, 1]);
    d.extend([7, 5, ISO_OUT, 0x05, lo, hi, 1]);
    d
}

/// Packets paced by the host's clock: one per millisecond once started.
#[derive(Default)]
pub struct IsoSource {
    /// The next IN packet's number.
    pub next_seq: u32,
    started: Option<Instant>,
    /// OUT packets received, in order.
    pub received: Vec<Vec<u8>>,
}

impl IsoSource {
    /// The IN packets due by `now` since the first call (at most `max`, so a
    /// stalled reader does not get a flood); counted from 0.
    pub fn due(&mut self, now: Instant, max: usize) -> Vec<Vec<u8>> {
        let start = *self.started.get_or_insert(now);
        let due = (now.duration_since(start).as_micros() / 1000) as u64 + 1;
        let behind = due.saturating_sub(u64::from(self.next_seq));
        if behind > max as u64 {
            // Skip what cannot be caught up with, as a real device would.
            self.next_seq = (due - max as u64) as u32;
        }
        let mut out = Vec::new();
        while u64::from(self.next_seq) < due {
            out.push(iso_packet(self.next_seq));
            self.next_seq += 1;
        }
        out
    }

    pub const FRAME: Duration = Duration::from_millis(1);
}

impl EmulatedDevice for IsoSource {
    fn connect(&self) -> DeviceConnect {
        DeviceConnect {
            speed: Speed::FULL,
            device_class: 0,
            device_subclass: 0,
            device_protocol: 0,
            vendor_id: 0x1d6b,
            product_id: ISO_PRODUCT_ID,
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
        [info.class[0], info.subclass[0], info.protocol[0]] = ISO_INTERFACE;
        info
    }

    fn endpoints(&self) -> EpInfo {
        let mut e = EpInfo::default();
        e.ep_type[0] = ep_type::CONTROL;
        e.ep_type[ep_index(0x80)] = ep_type::CONTROL;
        e.max_packet_size[0] = 8;
        e.max_packet_size[ep_index(0x80)] = 8;
        for ep in [ISO_IN, ISO_OUT] {
            let i = ep_index(ep);
            e.ep_type[i] = ep_type::ISO;
            e.interval[i] = 1;
            e.max_packet_size[i] = ISO_MAX_PACKET;
        }
        e
    }

    fn control(&mut self, r: &ControlPacket) -> (Status, Vec<u8>) {
        match (r.requesttype, r.request, r.value >> 8) {
            (0x80, 6, 1) => (Status::SUCCESS, DEVICE_DESCRIPTOR.to_vec()),
            (0x80, 6, 2) => (Status::SUCCESS, config_descriptor()),
            (0x80, 6, 3) if r.value & 0xff == 0 => (Status::SUCCESS, vec![4, 3, 0x09, 0x04]),
            (0x80, 6, 3) => {
                let mut s = vec![18, 3];
                s.extend("spicebox".encode_utf16().flat_map(u16::to_le_bytes));
                (Status::SUCCESS, s)
            }
            (0x80, 0, _) => (Status::SUCCESS, vec![0, 0]),
            _ => (Status::STALL, Vec::new()),
        }
    }

    fn iso_out(&mut self, endpoint: u8, data: &[u8]) {
        if endpoint == ISO_OUT {
            self.received.push(data.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::HostPeer;
    use crate::{Caps, Limits, Packet, Parser, Role, SmallPacket};

    #[test]
    fn packets_are_numbered_sized_and_paced() {
        let p = iso_packet(7);
        assert_eq!(p.len(), 176 + 8);
        assert_eq!(&p[..4], &7u32.to_le_bytes());
        assert_eq!(p[10], iso_payload_byte(7, 10));
        let mut src = IsoSource::default();
        let t = Instant::now();
        assert_eq!(src.due(t, 64).len(), 1);
        let later = src.due(t + Duration::from_micros(4500), 64);
        assert_eq!(later.len(), 4);
        assert_eq!(&later[3][..4], &4u32.to_le_bytes());
        // A long stall: only the newest `max`, numbered on.
        let after = src.due(t + Duration::from_millis(1000), 8);
        assert_eq!(after.len(), 8);
        assert_eq!(&after[0][..4], &993u32.to_le_bytes());
    }

    #[test]
    fn peer_runs_iso_streams() {
        let mut peer = HostPeer::new(IsoSource::default());
        let mut guest = Parser::new(Role::Guest, Caps::ALL, Limits::default());
        peer.received(&guest.hello("guest")).unwrap();
        guest.feed(&peer.take_output());
        while guest.next().is_some() {}
        assert!(!peer.iso_packet(ISO_IN, &iso_packet(0)).unwrap());
        let start = Packet::StartIsoStream {
            endpoint: ISO_IN,
            pkts_per_urb: 10,
            no_urbs: 3,
        };
        peer.received(&guest.encode(3, &start).unwrap()).unwrap();
        assert!(peer.iso_packet(ISO_IN, &iso_packet(0)).unwrap());
        // An OUT packet on a stream not started is ignored; then recorded.
        let out = Packet::Iso(SmallPacket {
            endpoint: ISO_OUT,
            status: Status::SUCCESS,
            length: 3,
            data: vec![1, 2, 3],
        });
        peer.received(&guest.encode(4, &out).unwrap()).unwrap();
        let start_out = Packet::StartIsoStream {
            endpoint: ISO_OUT,
            pkts_per_urb: 10,
            no_urbs: 3,
        };
        peer.received(&guest.encode(5, &start_out).unwrap())
            .unwrap();
        peer.received(&guest.encode(6, &out).unwrap()).unwrap();
        assert_eq!(peer.device.received, vec![vec![1, 2, 3]]);
        // Not an isochronous endpoint: refused.
        let bad = Packet::StartIsoStream {
            endpoint: 0x83,
            pkts_per_urb: 10,
            no_urbs: 3,
        };
        peer.received(&guest.encode(7, &bad).unwrap()).unwrap();
        peer.received(
            &guest
                .encode(8, &Packet::StopIsoStream { endpoint: ISO_IN })
                .unwrap(),
        )
        .unwrap();
        assert!(!peer.iso_packet(ISO_IN, &iso_packet(1)).unwrap());
        guest.feed(&peer.take_output());
        let got: Vec<Packet> = std::iter::from_fn(|| guest.next())
            .map(|r| r.unwrap().packet)
            .collect();
        let statuses: Vec<(Status, u8)> = got
            .iter()
            .filter_map(|p| match p {
                Packet::IsoStreamStatus { status, endpoint } => Some((*status, *endpoint)),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            [
                (Status::SUCCESS, ISO_IN),
                (Status::SUCCESS, ISO_OUT),
                (Status::INVAL, 0x83),
                (Status::SUCCESS, ISO_IN)
            ]
        );
        assert!(matches!(&got[1], Packet::Iso(p) if p.data == iso_packet(0)));
        assert_eq!(peer.iso_stops, [ISO_IN]);
    }
}
