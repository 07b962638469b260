//! Client side of the link stage: SpiceLinkHeader + SpiceLinkMess, the server's reply,
//! auth mechanism selection and the RSA-OAEP(SHA-1) encrypted ticket, then the result.

use std::io::{Read, Write};

use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};

use crate::proto::{self, common_cap, has_cap, link_err};
use crate::wire::{Reader, Writer};
use crate::Error;

/// What the server advertised in a successful SpiceLinkReply.
#[derive(Debug, Clone)]
pub struct Linked {
    pub common_caps: Vec<u32>,
    pub channel_caps: Vec<u32>,
}

impl Linked {
    pub fn mini_header(&self) -> bool {
        has_cap(&self.common_caps, common_cap::MINI_HEADER)
    }
}

/// The link request a client sends.
#[derive(Debug, Clone)]
pub struct LinkParams<'a> {
    pub connection_id: u32,
    pub channel_type: u8,
    pub channel_id: u8,
    pub common_caps: Vec<u32>,
    pub channel_caps: Vec<u32>,
    /// Sent as a NUL-terminated string; "" when the server has no password.
    pub password: &'a str,
}

/// spice-gtk's common caps: AUTH_SELECTION | MINI_HEADER (it never sets AUTH_SPICE).
pub fn default_common_caps() -> Vec<u32> {
    vec![(1 << common_cap::PROTOCOL_AUTH_SELECTION) | (1 << common_cap::MINI_HEADER)]
}

pub fn encode_link_mess(p: &LinkParams) -> Vec<u8> {
    let ncaps = p.common_caps.len() + p.channel_caps.len();
    let mut w = Writer::new();
    w.bytes(proto::MAGIC)
        .u32(proto::VERSION_MAJOR)
        .u32(proto::VERSION_MINOR)
        .u32((proto::LINK_MESS_SIZE + 4 * ncaps) as u32)
        .u32(p.connection_id)
        .u8(p.channel_type)
        .u8(p.channel_id)
        .u32(p.common_caps.len() as u32)
        .u32(p.channel_caps.len() as u32)
        .u32(proto::LINK_MESS_SIZE as u32);
    for c in p.common_caps.iter().chain(&p.channel_caps) {
        w.u32(*c);
    }
    w.finish()
}

/// Reads the server's SpiceLinkHeader + SpiceLinkReply. Err(LinkRefused) if it carries an error.
pub fn read_link_reply<S: Read>(s: &mut S) -> Result<(Vec<u8>, Linked), Error> {
    let mut hdr = [0u8; 16];
    s.read_exact(&mut hdr)?;
    let mut r = Reader::new(&hdr);
    let magic = r.bytes(4).unwrap_or_default();
    let major = r.u32().unwrap_or(0);
    r.u32();
    let size = r.u32().unwrap_or(0) as usize;
    if magic != proto::MAGIC || major != proto::VERSION_MAJOR {
        return Err(Error::Protocol("bad link reply header".into()));
    }
    if !(proto::LINK_REPLY_SIZE..=proto::LINK_MAX_SIZE as usize).contains(&size) {
        return Err(Error::Protocol(format!("link reply size {size}")));
    }
    let mut body = vec![0u8; size];
    s.read_exact(&mut body)?;
    let mut r = Reader::new(&body);
    let bad = || Error::Protocol("malformed link reply".into());
    let error = r.u32().ok_or_else(bad)?;
    if error != link_err::OK {
        return Err(Error::LinkRefused(error));
    }
    let key = r
        .bytes(proto::TICKET_PUBKEY_BYTES)
        .ok_or_else(bad)?
        .to_vec();
    let ncommon = r.u32().ok_or_else(bad)? as usize;
    let nchannel = r.u32().ok_or_else(bad)? as usize;
    let offset = r.u32().ok_or_else(bad)? as usize;
    let mut c = Reader::new(body.get(offset..).ok_or_else(bad)?);
    let mut caps = Vec::new();
    for _ in 0..ncommon + nchannel {
        caps.push(c.u32().ok_or_else(bad)?);
    }
    let channel_caps = caps.split_off(ncommon);
    Ok((
        key,
        Linked {
            common_caps: caps,
            channel_caps,
        },
    ))
}

/// RSA-OAEP(SHA-1) encryption of the NUL-terminated password with the server's key.
pub fn encrypt_ticket(pubkey_der: &[u8], password: &str) -> Result<Vec<u8>, Error> {
    let key = RsaPublicKey::from_public_key_der(pubkey_der)
        .map_err(|e| Error::Crypto(format!("server key: {e}")))?;
    let mut plain = password.as_bytes().to_vec();
    plain.push(0);
    key.encrypt(&mut rand::rngs::OsRng, Oaep::new::<sha1::Sha1>(), &plain)
        .map_err(|e| Error::Crypto(e.to_string()))
}

/// The whole link stage; Ok only when the server's final result is OK.
pub fn link<S: Read + Write>(s: &mut S, p: &LinkParams) -> Result<Linked, Error> {
    link_capture(s, p).map(|(linked, _)| linked)
}

/// `link`, also returning the bytes sent after the server's reply (auth mechanism and
/// encrypted ticket), e.g. to replay them on another connection.
pub fn link_capture<S: Read + Write>(
    s: &mut S,
    p: &LinkParams,
) -> Result<(Linked, Vec<u8>), Error> {
    s.write_all(&encode_link_mess(p))?;
    let (key, linked) = read_link_reply(s)?;
    let mut out = Vec::new();
    if has_cap(&p.common_caps, common_cap::PROTOCOL_AUTH_SELECTION)
        && has_cap(&linked.common_caps, common_cap::PROTOCOL_AUTH_SELECTION)
    {
        out.extend_from_slice(&common_cap::AUTH_SPICE.to_le_bytes());
    }
    out.extend_from_slice(&encrypt_ticket(&key, p.password)?);
    s.write_all(&out)?;
    let mut result = [0u8; 4];
    s.read_exact(&mut result)?;
    match u32::from_le_bytes(result) {
        link_err::OK => Ok((linked, out)),
        e => Err(Error::LinkRefused(e)),
    }
}
