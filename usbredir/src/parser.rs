//! The usbredir stream: bytes in, checked packets out; packets in, bytes out.
//!
//! The peer is hostile. Every header is checked before its payload is buffered:
//! unknown types, types the peer's role may not send, lengths that disagree with
//! the type header, data where none may be, and packets over the configured limit
//! are reported as errors and their payload is skipped without being stored, so a
//! peer can never make us hold more than one packet of at most
//! [`Limits::max_packet`] bytes. What the caller does with an error (drop the
//! device, close the channel) is its choice; the stream stays in sync.

use crate::codec::{decode, encode_body};
use crate::packet::{sender, Negotiated, Packet, Sender};
use crate::proto::{packet_type as t, Cap, Caps, Role};
use crate::Error;

/// Bounds on what a peer may make us buffer.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest packet (type header + data) accepted. Also caps transfer lengths.
    pub max_packet: u32,
}

impl Default for Limits {
    fn default() -> Self {
        // Larger than any bulk transfer a guest driver issues (Linux usb-storage:
        // 240 sectors; xHCI TDs of a few hundred KiB), far below the C parser's 128 MiB.
        Limits {
            max_packet: 4 * 1024 * 1024 + 512,
        }
    }
}

/// A packet and its id (0 for packets that carry none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub id: u64,
    pub packet: Packet,
}

/// One end of a usbredir connection.
pub struct Parser {
    role: Role,
    ours: Caps,
    peer: Option<Caps>,
    limits: Limits,
    /// Received bytes not yet parsed; `start` is where the next packet begins.
    buf: Vec<u8>,
    start: usize,
    /// Payload bytes of a rejected packet still to drop.
    skip: u64,
}

impl Parser {
    pub fn new(role: Role, ours: Caps, limits: Limits) -> Parser {
        Parser {
            role,
            ours: ours.sanitized(),
            peer: None,
            limits,
            buf: Vec::new(),
            start: 0,
            skip: 0,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn our_caps(&self) -> Caps {
        self.ours
    }

    /// The peer's capabilities, once its hello arrived.
    pub fn peer_caps(&self) -> Option<Caps> {
        self.peer
    }

    /// Both sides have `cap` (false before the peer's hello).
    pub fn negotiated(&self, cap: Cap) -> bool {
        self.ours.has(cap) && self.peer.is_some_and(|p| p.has(cap))
    }

    pub fn sizes(&self) -> Negotiated {
        Negotiated {
            ids_64bit: self.negotiated(Cap::Ids64Bit),
            device_version: self.negotiated(Cap::ConnectDeviceVersion),
            ep_info_max_packet_size: self.negotiated(Cap::EpInfoMaxPacketSize),
            bulk_streams: self.negotiated(Cap::BulkStreams),
            bulk_length_32bit: self.negotiated(Cap::BulkLength32Bit),
        }
    }

    /// Our hello; send it first.
    pub fn hello(&self, version: &str) -> Vec<u8> {
        let packet = Packet::Hello {
            version: version.to_owned(),
            caps: self.ours,
        };
        // A hello always goes with 32-bit ids: the peer knows no caps yet.
        let mut out = Vec::with_capacity(12 + 68);
        out.extend_from_slice(&t::HELLO.to_le_bytes());
        out.extend_from_slice(&68u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        // A hello's body never fails to encode.
        let _ = encode_body(&Negotiated::default(), &packet, &mut out);
        out
    }

    /// Encodes `packet` with `id` for the negotiated sizes, refusing what our role
    /// may not send or what the peer cannot receive.
    pub fn encode(&self, id: u64, packet: &Packet) -> Result<Vec<u8>, Error> {
        let ty = packet.packet_type();
        if ty == t::HELLO {
            return Err(Error::Malformed("use Parser::hello for the hello"));
        }
        self.check_sender(ty, self.role)?;
        self.check_caps(ty, self.peer.unwrap_or_default())?;
        let neg = self.sizes();
        let mut out = Vec::with_capacity(neg.header_len() + 16);
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        if neg.ids_64bit {
            out.extend_from_slice(&id.to_le_bytes());
        } else {
            let id = u32::try_from(id).map_err(|_| Error::Malformed("id over 32 bits"))?;
            out.extend_from_slice(&id.to_le_bytes());
        }
        let header_len = out.len();
        encode_body(&neg, packet, &mut out)?;
        let length = u32::try_from(out.len() - header_len).map_err(|_| Error::TooLong(u64::MAX))?;
        out[4..8].copy_from_slice(&length.to_le_bytes());
        self.check_data(&neg, ty, &out[header_len..], true)?;
        Ok(out)
    }

    /// Adds received bytes. Bytes of a packet being skipped are dropped at once.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.skip > 0 && self.start == self.buf.len() {
            let n = self.skip.min(bytes.len() as u64) as usize;
            self.skip -= n as u64;
            bytes = &bytes[n..];
        }
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for an incomplete packet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete packet, an error for a rejected one (its payload is
    /// skipped), or None until more bytes arrive.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Received, Error>> {
        if self.skip > 0 {
            let n = self.skip.min(self.buffered() as u64);
            self.start += n as usize;
            self.skip -= n;
            if self.skip > 0 {
                return None;
            }
        }
        let neg = self.sizes();
        let header_len = neg.header_len();
        let pending = &self.buf[self.start..];
        if pending.len() < header_len {
            self.compact();
            return None;
        }
        let word = |at: usize| {
            u32::from_le_bytes([
                pending[at],
                pending[at + 1],
                pending[at + 2],
                pending[at + 3],
            ])
        };
        let ty = word(0);
        let length = word(4);
        let id = if neg.ids_64bit {
            u64::from(word(8)) | u64::from(word(12)) << 32
        } else {
            u64::from(word(8))
        };
        if let Err(e) = self.check_header(&neg, ty, length) {
            self.start += header_len;
            self.skip = u64::from(length);
            return Some(Err(e));
        }
        let total = header_len + length as usize;
        if pending.len() < total {
            self.compact();
            return None;
        }
        let body = &pending[header_len..total];
        let type_len = neg.type_header_len(ty).unwrap_or(0);
        let (type_header, data) = body.split_at(type_len);
        let checked = self.check_data(&neg, ty, body, false);
        let result = checked.and_then(|()| decode(&neg, ty, type_header, data.to_vec()));
        self.start += total;
        let packet = match result {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        if let Packet::Hello { caps, .. } = &packet {
            if self.peer.is_some() {
                return Some(Err(Error::Malformed("second hello")));
            }
            self.peer = Some(*caps);
        }
        Some(Ok(Received { id, packet }))
    }

    fn compact(&mut self) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    fn check_sender(&self, ty: u32, from: Role) -> Result<(), Error> {
        match (sender(ty), from) {
            (None, _) => Err(Error::UnknownType(ty)),
            (Some(Sender::Either), _)
            | (Some(Sender::Host), Role::Host)
            | (Some(Sender::Guest), Role::Guest) => Ok(()),
            _ => Err(Error::WrongDirection(ty)),
        }
    }

    /// Packets that need a capability on the receiving side.
    fn check_caps(&self, ty: u32, receiver: Caps) -> Result<(), Error> {
        let needed = match ty {
            t::FILTER_REJECT | t::FILTER_FILTER => Cap::Filter,
            t::DEVICE_DISCONNECT_ACK => Cap::DeviceDisconnectAck,
            t::START_BULK_RECEIVING
            | t::STOP_BULK_RECEIVING
            | t::BULK_RECEIVING_STATUS
            | t::BUFFERED_BULK_PACKET => Cap::BulkReceiving,
            t::ALLOC_BULK_STREAMS | t::FREE_BULK_STREAMS | t::BULK_STREAMS_STATUS => {
                Cap::BulkStreams
            }
            _ => return Ok(()),
        };
        if receiver.has(needed) {
            Ok(())
        } else {
            Err(Error::MissingCap(ty, needed))
        }
    }

    /// The header alone: type, sender, capability and length bounds.
    fn check_header(&self, neg: &Negotiated, ty: u32, length: u32) -> Result<(), Error> {
        let peer_role = match self.role {
            Role::Guest => Role::Host,
            Role::Host => Role::Guest,
        };
        self.check_sender(ty, peer_role)?;
        self.check_caps(ty, self.ours)?;
        let type_len = neg.type_header_len(ty).ok_or(Error::UnknownType(ty))?;
        if length > self.limits.max_packet {
            return Err(Error::TooLong(u64::from(length)));
        }
        if (length as usize) < type_len || (length as usize > type_len && !Negotiated::has_data(ty))
        {
            return Err(Error::BadLength {
                packet_type: ty,
                length,
            });
        }
        Ok(())
    }

    /// A data packet's length field against its data, by direction (the C
    /// parser's `verify_type_header`): the side that sends the data carries it,
    /// the other side's packet has none.
    fn check_data(
        &self,
        neg: &Negotiated,
        ty: u32,
        body: &[u8],
        sending: bool,
    ) -> Result<(), Error> {
        let type_len = neg.type_header_len(ty).unwrap_or(0);
        let data_len = body.len().saturating_sub(type_len);
        let b = |i: usize| u32::from(body.get(i).copied().unwrap_or(0));
        let (endpoint, length) = match ty {
            t::CONTROL_PACKET => (b(0), b(8) | b(9) << 8),
            t::BULK_PACKET => {
                let high = if neg.bulk_length_32bit {
                    b(8) | b(9) << 8
                } else {
                    0
                };
                (b(0), b(2) | b(3) << 8 | high << 16)
            }
            t::ISO_PACKET | t::INTERRUPT_PACKET => (b(0), b(2) | b(3) << 8),
            t::BUFFERED_BULK_PACKET => (b(8), b(4) | b(5) << 8 | b(6) << 16 | b(7) << 24),
            _ => return Ok(()),
        };
        if length > crate::MAX_BULK_TRANSFER_SIZE {
            return Err(Error::TooLong(u64::from(length)));
        }
        // The packet is going to the host when a guest sends or a host receives.
        let to_host = (self.role == Role::Guest) == sending;
        let is_in = endpoint & 0x80 != 0;
        let carries_data = is_in != to_host;
        if carries_data {
            if data_len as u64 != u64::from(length) {
                return Err(Error::DataLength {
                    length,
                    data: data_len,
                });
            }
            return Ok(());
        }
        if data_len != 0 {
            return Err(Error::UnexpectedData(ty));
        }
        match ty {
            t::ISO_PACKET | t::BUFFERED_BULK_PACKET => Err(Error::WrongDirection(ty)),
            t::INTERRUPT_PACKET if to_host => Err(Error::WrongDirection(ty)),
            _ => Ok(()),
        }
    }
}
