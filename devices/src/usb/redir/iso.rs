//! Isochronous streams, the usbredir way (as QEMU's usb-redir runs them):
//! the first guest packet on an isochronous endpoint starts a stream
//! (START_ISO_STREAM, sized from the endpoint's interval); the host then
//! sends IN packets as the device produces them, and takes OUT packets as
//! we forward them. Neither side waits for the other per packet.
//!
//! IN packets wait in a bounded buffer: when it is full the oldest is
//! dropped (a late packet is worth less than a fresh one). The first
//! packets are held until a little is buffered, so the host's bursts (one
//! URB's worth at a time) even out; the controller asks once per service
//! interval and gets an empty packet when nothing is there.

use std::collections::VecDeque;

use tracing::{debug, warn};
use usbredir::{ep_index, ep_type, EpInfo, Packet, SmallPacket, Status};

use super::{map_status, Shared};
use crate::usb::{UsbCompletion, UsbRequest, UsbSpeed, UsbStatus};

/// Packets per URB the host is asked for: about 10 ms of them, at most 32
/// (usbredirhost's limit).
const URB_MS: u32 = 10;
const MAX_PKTS_PER_URB: u32 = 32;
/// URBs the host keeps queued.
const NO_URBS: u8 = 3;
/// Largest isochronous packet kept when the host gave no max packet size
/// (a high-bandwidth USB 2 endpoint: 3 × 1024).
const DEFAULT_MAX_PACKET: usize = 3 * 1024;

pub(super) struct IsoStream {
    packets: VecDeque<Vec<u8>>,
    /// Packets to hold before handing out the first (after running dry).
    prefill: usize,
    filled: bool,
    capacity: usize,
    max_packet: usize,
    /// The host reported the stream failed: requests fail until the
    /// endpoint is stopped and started again.
    failed: bool,
    pub dropped: u64,
}

/// Packets per second of an isochronous endpoint (usbredir's ep_info
/// interval is the descriptor's bInterval: 2^(n-1) frames or microframes).
fn packets_per_second(speed: UsbSpeed, interval: u8) -> u32 {
    let per_second = match speed {
        UsbSpeed::High | UsbSpeed::Super => 8000,
        UsbSpeed::Full | UsbSpeed::Low => 1000,
    };
    per_second >> (u32::from(interval.clamp(1, 16)) - 1).min(13)
}

impl Shared {
    /// An isochronous request: answered at once (IN: a buffered packet or
    /// an empty one; OUT: forwarded).
    pub(super) fn iso_request(&mut self, id: u64, r: UsbRequest) -> UsbCompletion {
        let done = |status, data: Vec<u8>, actual| UsbCompletion {
            id: r.id,
            status,
            actual,
            data,
        };
        let endpoint = r.endpoint;
        let is_in = endpoint & 0x80 != 0;
        let info = self.ep_info.as_deref().map(|e: &EpInfo| {
            let i = ep_index(endpoint);
            (e.ep_type[i], e.interval[i], e.max_packet_size[i])
        });
        let Some((ep_type::ISO, interval, max_packet)) = info else {
            debug!(
                endpoint,
                "usbredir: isochronous transfer on a non-isochronous endpoint"
            );
            return done(UsbStatus::Error, Vec::new(), 0);
        };
        let speed = self.speed.unwrap_or(UsbSpeed::Full);
        if !self.iso.iter().any(|(ep, _)| *ep == endpoint) {
            let per_urb =
                (packets_per_second(speed, interval) / (1000 / URB_MS)).clamp(1, MAX_PKTS_PER_URB);
            self.send(
                id,
                &Packet::StartIsoStream {
                    endpoint,
                    pkts_per_urb: per_urb as u8,
                    no_urbs: NO_URBS,
                },
            );
            let per_urb = per_urb as usize;
            self.iso.push((
                endpoint,
                IsoStream {
                    packets: VecDeque::new(),
                    prefill: per_urb,
                    filled: false,
                    capacity: (2 * per_urb * usize::from(NO_URBS)).max(8),
                    max_packet: if max_packet == 0 {
                        DEFAULT_MAX_PACKET
                    } else {
                        usize::from(max_packet)
                    },
                    failed: false,
                    dropped: 0,
                },
            ));
        }
        let Some(stream) = self.iso_stream(endpoint) else {
            return done(UsbStatus::Error, Vec::new(), 0);
        };
        if stream.failed {
            return done(UsbStatus::Error, Vec::new(), 0);
        }
        if !is_in {
            let length = r.data.len() as u32;
            if r.data.len() > stream.max_packet {
                return done(UsbStatus::Error, Vec::new(), 0);
            }
            let packet = Packet::Iso(SmallPacket {
                endpoint,
                status: Status::SUCCESS,
                length: length as u16,
                data: r.data,
            });
            self.send(id, &packet);
            return done(UsbStatus::Success, Vec::new(), length);
        }
        if !stream.filled {
            if stream.packets.len() < stream.prefill {
                return done(UsbStatus::Success, Vec::new(), 0);
            }
            stream.filled = true;
        }
        match stream.packets.pop_front() {
            // More than the guest asked for: babble.
            Some(data) if data.len() > r.length as usize => done(UsbStatus::Error, Vec::new(), 0),
            Some(data) => done(UsbStatus::Success, data, 0),
            None => {
                // Ran dry: buffer up again before handing more out.
                stream.filled = false;
                done(UsbStatus::Success, Vec::new(), 0)
            }
        }
    }

    fn iso_stream(&mut self, endpoint: u8) -> Option<&mut IsoStream> {
        self.iso
            .iter_mut()
            .find(|(ep, _)| *ep == endpoint)
            .map(|(_, s)| s)
    }

    /// An ISO_PACKET from the host: IN data for the buffer, or the status
    /// of an OUT packet we sent.
    pub(super) fn iso_packet(&mut self, p: SmallPacket) {
        if p.endpoint & 0x80 == 0 {
            if p.status != Status::SUCCESS {
                debug!(
                    endpoint = p.endpoint,
                    status = p.status.0,
                    "usbredir: iso OUT packet failed"
                );
            }
            return;
        }
        let endpoint = p.endpoint;
        let Some(stream) = self.iso_stream(endpoint) else {
            debug!(endpoint, "usbredir: iso packet for no stream dropped");
            return;
        };
        if p.data.len() > stream.max_packet {
            warn!(
                endpoint,
                len = p.data.len(),
                max = stream.max_packet,
                "usbredir: iso packet over the endpoint's max packet size dropped"
            );
            stream.dropped += 1;
            return;
        }
        if p.status != Status::SUCCESS {
            // A lost packet: the guest gets an empty one in its place.
            debug!(
                endpoint,
                status = p.status.0,
                "usbredir: iso packet with an error"
            );
        }
        if stream.packets.len() >= stream.capacity {
            stream.packets.pop_front();
            stream.dropped += 1;
            debug!(endpoint, "usbredir: iso buffer full; oldest packet dropped");
        }
        let data = if map_status(p.status) == UsbStatus::Success {
            p.data
        } else {
            Vec::new()
        };
        stream.packets.push_back(data);
    }

    /// ISO_STREAM_STATUS: a failure ends the stream until the guest stops
    /// the endpoint.
    pub(super) fn iso_status(&mut self, endpoint: u8, status: Status) {
        if status == Status::SUCCESS {
            return;
        }
        warn!(endpoint, status = status.0, "usbredir: iso stream failed");
        if let Some(stream) = self.iso_stream(endpoint) {
            stream.failed = true;
            stream.packets.clear();
        }
    }

    /// The controller stopped the endpoint: the host stops the stream.
    pub(super) fn stop_iso(&mut self, endpoint: u8) {
        let Some(at) = self.iso.iter().position(|(ep, _)| *ep == endpoint) else {
            return;
        };
        let (_, stream) = self.iso.swap_remove(at);
        if stream.dropped > 0 {
            debug!(
                endpoint,
                dropped = stream.dropped,
                "usbredir: iso stream stopped"
            );
        }
        if self.speed.is_some() && !stream.failed {
            let id = self.take_id();
            self.send(id, &Packet::StopIsoStream { endpoint });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_sizes_follow_the_interval() {
        assert_eq!(packets_per_second(UsbSpeed::Full, 1), 1000);
        assert_eq!(packets_per_second(UsbSpeed::Full, 4), 125);
        assert_eq!(packets_per_second(UsbSpeed::High, 1), 8000);
        assert_eq!(packets_per_second(UsbSpeed::High, 4), 1000);
        // Hostile intervals stay in range.
        assert_eq!(packets_per_second(UsbSpeed::High, 0), 8000);
        assert_eq!(packets_per_second(UsbSpeed::Full, 255), 0);
    }
}
