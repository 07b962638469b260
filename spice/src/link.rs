//! Server side of the link stage (protocol 2.2), following spice-server's
//! `reds_handle_read_*` checks and error codes:
//!
//! * bad magic → INVALID_MAGIC; major ≠ 2 → VERSION_MISMATCH (nothing if major is 0);
//!   size outside 18..=4096, more than 1024 caps or caps outside the message → INVALID_DATA
//!   (all as a full SpiceLinkReply carrying the error, then close);
//! * a (channel type, id) the server does not offer (`offered` says None) →
//!   CHANNEL_NOT_AVAILABLE reply;
//! * unknown auth mechanism → INVALID_DATA reply;
//! * undecryptable ticket, wrong or expired password → 4-byte result PERMISSION_DENIED,
//!   after a short delay (spice-server answers at once; the delay slows guessing);
//! * a channel that must be secure, reached over plaintext → NEED_SECURED, so spice-gtk
//!   reconnects it on the TLS port by itself;
//! * with SASL, the link reply offers AUTH_SASL instead of AUTH_SPICE (and no key) and
//!   `sasl::authenticate` runs the exchange; a client without auth selection gets
//!   VERSION_MISMATCH, one that picks the ticket INVALID_DATA, as spice-server does.
//!
//! Every link gets its own RSA key (from `auth::KeyPool`), taken only once the link
//! message passed its checks and dropped when the link stage ends.
//!
//! The caller then sends the final 4-byte result (OK, BAD_CONNECTION_ID) itself, because
//! that depends on the session table.

use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::auth::{KeyPool, TicketKey};
use crate::proto::{self, common_cap, has_cap, link_err};
use crate::sasl::{self, SaslAuth};
use crate::transport::ChannelSet;
use crate::wire::{Reader, Writer};

/// What the link stage needs to know beyond the bytes: keys, where the stream came
/// from, and the security rules.
pub struct LinkPolicy<'a> {
    pub keys: &'a KeyPool,
    pub denied_delay: Duration,
    /// The stream is TLS (directly or as wss).
    pub secure: bool,
    /// Channel types that refuse plaintext (NEED_SECURED).
    pub secure_channels: ChannelSet,
    /// SASL instead of the ticket.
    pub sasl: Option<&'a SaslAuth>,
}

/// What a client asked for in SpiceLinkMess.
#[derive(Debug, Clone)]
pub struct LinkRequest {
    pub connection_id: u32,
    pub channel_type: u8,
    pub channel_id: u8,
    pub common_caps: Vec<u32>,
    pub channel_caps: Vec<u32>,
}

impl LinkRequest {
    pub fn mini_header(&self) -> bool {
        has_cap(&self.common_caps, common_cap::MINI_HEADER)
    }
}

/// Why a link failed; `code` is what the client was told (None: closed silently).
#[derive(Debug)]
pub struct LinkFailure {
    pub code: Option<u32>,
    pub reason: String,
}

pub(crate) fn fail(code: Option<u32>, reason: impl Into<String>) -> LinkFailure {
    LinkFailure {
        code,
        reason: reason.into(),
    }
}

/// Header + SpiceLinkReply with only `error` set, as `reds_send_link_error` sends.
pub fn link_error_reply(error: u32) -> Vec<u8> {
    let mut w = Writer::with_capacity(16 + proto::LINK_REPLY_SIZE);
    w.bytes(proto::MAGIC)
        .u32(proto::VERSION_MAJOR)
        .u32(proto::VERSION_MINOR)
        .u32(proto::LINK_REPLY_SIZE as u32)
        .u32(error)
        .bytes(&[0; proto::LINK_REPLY_SIZE - 4]);
    w.finish()
}

/// `key` None: no ticket (SASL), the key bytes are zero as spice-server sends them.
fn link_ok_reply(key: Option<&TicketKey>, common_caps: u32, channel_caps: &[u32]) -> Vec<u8> {
    let ncaps = 1 + channel_caps.len();
    let mut w = Writer::with_capacity(16 + proto::LINK_REPLY_SIZE + 4 * ncaps);
    w.bytes(proto::MAGIC)
        .u32(proto::VERSION_MAJOR)
        .u32(proto::VERSION_MINOR)
        .u32((proto::LINK_REPLY_SIZE + 4 * ncaps) as u32)
        .u32(link_err::OK)
        .bytes(key.map_or(&[0; proto::TICKET_PUBKEY_BYTES], |k| k.public_der()))
        .u32(1)
        .u32(channel_caps.len() as u32)
        .u32(proto::LINK_REPLY_SIZE as u32)
        .u32(common_caps);
    for c in channel_caps {
        w.u32(*c);
    }
    w.finish()
}

/// Parses SpiceLinkMess (`size` bytes after the header) with spice-server's bounds.
pub fn parse_link_mess(mess: &[u8]) -> Option<LinkRequest> {
    let mut r = Reader::new(mess);
    let connection_id = r.u32()?;
    let channel_type = r.u8()?;
    let channel_id = r.u8()?;
    let num_common = r.u32()?;
    let num_channel = r.u32()?;
    let caps_offset = r.u32()? as usize;
    if num_common > proto::LINK_MAX_CAPS || num_channel > proto::LINK_MAX_CAPS {
        return None;
    }
    let ncaps = (num_common + num_channel) as usize;
    let (mut common_caps, mut channel_caps) = (Vec::new(), Vec::new());
    if ncaps > 0 {
        if caps_offset < proto::LINK_MESS_SIZE || caps_offset + 4 * ncaps > mess.len() {
            return None;
        }
        let mut c = Reader::new(&mess[caps_offset..]);
        for i in 0..ncaps {
            let word = c.u32()?;
            if i < num_common as usize {
                common_caps.push(word);
            } else {
                channel_caps.push(word);
            }
        }
    }
    Some(LinkRequest {
        connection_id,
        channel_type,
        channel_id,
        common_caps,
        channel_caps,
    })
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> Result<(), LinkFailure> {
    s.write_all(bytes)
        .await
        .map_err(|e| fail(None, format!("write: {e}")))?;
    s.flush()
        .await
        .map_err(|e| fail(None, format!("flush: {e}")))
}

async fn read_exact<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> Result<(), LinkFailure> {
    s.read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|e| fail(None, format!("read: {e}")))
}

/// Sends a full error reply, then reports the failure.
async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, code: u32, reason: &str) -> LinkFailure {
    // The client may already be gone; the failure is what matters.
    let _ = send(s, &link_error_reply(code)).await;
    fail(Some(code), reason)
}

/// Runs the link stage up to and including ticket (or SASL) validation.
/// `offered` gives the channel capabilities of a (type, id) the server offers (the
/// channel registry), None for any other; only an offered channel is checked against
/// `policy.secure_channels`, so an unknown one is CHANNEL_NOT_AVAILABLE on either port.
/// `ticket` is consulted after the ticket arrives, so a password change applies at once;
/// a refused ticket is answered after `policy.denied_delay`.
pub async fn accept_link<S, C, F>(
    s: &mut S,
    policy: &LinkPolicy<'_>,
    offered: C,
    ticket: F,
) -> Result<LinkRequest, LinkFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: FnOnce(u8, u8) -> Option<Vec<u32>>,
    F: FnOnce(&[u8], SystemTime) -> bool,
{
    let mut hdr = [0u8; 16];
    read_exact(s, &mut hdr[..4]).await?;
    if &hdr[..4] != proto::MAGIC {
        return Err(refuse(s, link_err::INVALID_MAGIC, "bad magic").await);
    }
    read_exact(s, &mut hdr[4..]).await?;
    let mut r = Reader::new(&hdr[4..]);
    let (major, _minor, size) = (
        r.u32().unwrap_or(0),
        r.u32().unwrap_or(0),
        r.u32().unwrap_or(0),
    );
    if major != proto::VERSION_MAJOR {
        if major == 0 {
            return Err(fail(None, "major version 0"));
        }
        return Err(refuse(s, link_err::VERSION_MISMATCH, "version mismatch").await);
    }
    if (size as usize) < proto::LINK_MESS_SIZE || size > proto::LINK_MAX_SIZE {
        return Err(refuse(s, link_err::INVALID_DATA, "bad link size").await);
    }
    let mut mess = vec![0u8; size as usize];
    read_exact(s, &mut mess).await?;
    let Some(req) = parse_link_mess(&mess) else {
        return Err(refuse(s, link_err::INVALID_DATA, "bad capabilities").await);
    };
    let Some(channel_caps) = offered(req.channel_type, req.channel_id) else {
        // spice-server closes without a word here; telling the client why is kinder
        // and uses the code spice-server reserves for the same situation later on.
        return Err(refuse(s, link_err::CHANNEL_NOT_AVAILABLE, "no such channel").await);
    };
    if !policy.secure && policy.secure_channels.contains(req.channel_type) {
        return Err(refuse(s, link_err::NEED_SECURED, "channel needs TLS").await);
    }
    if let Some(auth) = policy.sasl {
        return sasl_link(s, policy, auth, req, &channel_caps).await;
    }
    let common = (1 << common_cap::PROTOCOL_AUTH_SELECTION)
        | (1 << common_cap::AUTH_SPICE)
        | (1 << common_cap::MINI_HEADER);
    // A fresh key for this link only, so a ticket seen on another link is useless.
    let key = policy
        .keys
        .take()
        .await
        .map_err(|e| fail(None, format!("ticket key: {e}")))?;
    send(s, &link_ok_reply(Some(&key), common, &channel_caps)).await?;

    if has_cap(&req.common_caps, common_cap::PROTOCOL_AUTH_SELECTION) {
        let mut mech = [0u8; 4];
        read_exact(s, &mut mech).await?;
        if u32::from_le_bytes(mech) != common_cap::AUTH_SPICE {
            return Err(refuse(s, link_err::INVALID_DATA, "unsupported auth mechanism").await);
        }
    }
    let mut blob = [0u8; proto::TICKET_BYTES];
    read_exact(s, &mut blob).await?;
    let accepted = match key.decrypt_ticket(&blob) {
        Some(plain) => ticket(&plain, SystemTime::now()),
        None => false,
    };
    drop(key);
    if !accepted {
        tokio::time::sleep(policy.denied_delay).await;
        let _ = send(s, &link_err::PERMISSION_DENIED.to_le_bytes()).await;
        return Err(fail(Some(link_err::PERMISSION_DENIED), "ticket refused"));
    }
    Ok(req)
}

/// The link reply and auth when SASL replaces the ticket.
async fn sasl_link<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    policy: &LinkPolicy<'_>,
    auth: &SaslAuth,
    req: LinkRequest,
    channel_caps: &[u32],
) -> Result<LinkRequest, LinkFailure> {
    let common = (1 << common_cap::PROTOCOL_AUTH_SELECTION)
        | (1 << common_cap::AUTH_SASL)
        | (1 << common_cap::MINI_HEADER);
    send(s, &link_ok_reply(None, common, channel_caps)).await?;
    if !has_cap(&req.common_caps, common_cap::PROTOCOL_AUTH_SELECTION) {
        return Err(refuse(s, link_err::VERSION_MISMATCH, "SASL needs auth selection").await);
    }
    let mut mech = [0u8; 4];
    read_exact(s, &mut mech).await?;
    if u32::from_le_bytes(mech) != common_cap::AUTH_SASL {
        return Err(refuse(
            s,
            link_err::INVALID_DATA,
            "SASL required, client chose another auth",
        )
        .await);
    }
    match sasl::authenticate(s, auth, policy.secure, policy.denied_delay).await {
        Ok((user, mechanism)) => {
            tracing::info!(user, mechanism, channel = req.channel_type, "SASL login");
            Ok(req)
        }
        Err(sasl::Failure::BadMechanism(m)) => Err(refuse(
            s,
            link_err::INVALID_DATA,
            &format!("SASL mechanism {m:?} not offered"),
        )
        .await),
        Err(sasl::Failure::Rejected(why)) => Err(fail(
            Some(link_err::PERMISSION_DENIED),
            format!("SASL login refused: {why}"),
        )),
        Err(sasl::Failure::Protocol(why)) => Err(fail(None, format!("SASL: {why}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mess(ncommon: u32, nchan: u32, off: u32, size_extra: usize) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(7).u8(2).u8(0).u32(ncommon).u32(nchan).u32(off);
        for _ in 0..size_extra / 4 {
            w.u32(0xb);
        }
        w.finish()
    }

    #[test]
    fn link_mess_bounds() {
        let ok = parse_link_mess(&mess(1, 1, 18, 8)).unwrap();
        assert_eq!(ok.connection_id, 7);
        assert_eq!((ok.channel_type, ok.common_caps.len()), (2, 1));
        assert!(
            parse_link_mess(&mess(2, 1, 18, 8)).is_none(),
            "caps past the end"
        );
        assert!(
            parse_link_mess(&mess(1, 0, 10, 8)).is_none(),
            "offset inside mess"
        );
        assert!(
            parse_link_mess(&mess(1025, 0, 18, 8)).is_none(),
            "too many caps"
        );
        assert!(
            parse_link_mess(&mess(0, 0, 0, 0)).is_some(),
            "no caps, any offset"
        );
        assert!(parse_link_mess(&[0; 10]).is_none());
    }

    #[test]
    fn error_reply_layout() {
        let r = link_error_reply(link_err::INVALID_MAGIC);
        assert_eq!(r.len(), 16 + 178);
        assert_eq!(&r[..4], b"REDQ");
        assert_eq!(u32::from_le_bytes(r[12..16].try_into().unwrap()), 178);
        assert_eq!(u32::from_le_bytes(r[16..20].try_into().unwrap()), 2);
    }
}
