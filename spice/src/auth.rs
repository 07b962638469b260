//! SPICE ticket authentication: an RSA-1024 key whose public half goes in every
//! SpiceLinkReply, and the password/expiry check spice-server's `reds_handle_ticket` does.

use std::time::SystemTime;

use rsa::pkcs8::EncodePublicKey;
use rsa::{Oaep, RsaPrivateKey};

use crate::proto::{TICKET_BYTES, TICKET_PUBKEY_BYTES};
use crate::{Error, Expiry};

/// The server's ticket key. spice-server makes one per link; one per server is as
/// good for a password check and keeps the ~100 ms key generation off the link path.
pub struct TicketKey {
    key: RsaPrivateKey,
    der: [u8; TICKET_PUBKEY_BYTES],
}

impl TicketKey {
    pub fn generate() -> Result<TicketKey, Error> {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let der = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| Error::Crypto(e.to_string()))?;
        // A 1024-bit modulus with e = 65537 always encodes to exactly 162 bytes.
        let der: [u8; TICKET_PUBKEY_BYTES] = der
            .as_bytes()
            .try_into()
            .map_err(|_| Error::Crypto("public key DER is not 162 bytes".into()))?;
        Ok(TicketKey { key, der })
    }

    pub fn public_der(&self) -> &[u8; TICKET_PUBKEY_BYTES] {
        &self.der
    }

    /// RSA-OAEP (SHA-1, MGF1-SHA-1, empty label) decryption, then the C string up to
    /// the first NUL, as spice-server compares with `strcmp`.
    pub fn decrypt_ticket(&self, blob: &[u8; TICKET_BYTES]) -> Option<Vec<u8>> {
        let mut plain = self.key.decrypt(Oaep::new::<sha1::Sha1>(), blob).ok()?;
        if let Some(nul) = plain.iter().position(|&b| b == 0) {
            plain.truncate(nul);
        }
        Some(plain)
    }
}

/// Password state. `password: None` = ticketing disabled (any well-encrypted ticket passes).
pub struct Ticket {
    pub password: Option<String>,
    pub expiry: Expiry,
}

impl Ticket {
    /// Decides a decrypted ticket as `reds_handle_ticket` does: an empty stored
    /// password denies everyone, an expired one too, otherwise the bytes must match.
    pub fn accepts(&self, given: &[u8], now: SystemTime) -> bool {
        let Some(password) = &self.password else {
            return true;
        };
        if password.is_empty() {
            return false;
        }
        let expired = match self.expiry {
            Expiry::Never => false,
            Expiry::Now => true,
            Expiry::At(t) => t <= now,
        };
        !expired && given == password.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ticket_rules() {
        let now = SystemTime::now();
        let t = |p: Option<&str>, e| Ticket {
            password: p.map(str::to_string),
            expiry: e,
        };
        assert!(t(None, Expiry::Now).accepts(b"anything", now));
        assert!(t(Some("pw"), Expiry::Never).accepts(b"pw", now));
        assert!(!t(Some("pw"), Expiry::Never).accepts(b"pW", now));
        assert!(!t(Some("pw"), Expiry::Never).accepts(b"pw2", now));
        assert!(!t(Some(""), Expiry::Never).accepts(b"", now));
        assert!(!t(Some("pw"), Expiry::Now).accepts(b"pw", now));
        let later = now + Duration::from_secs(60);
        assert!(t(Some("pw"), Expiry::At(later)).accepts(b"pw", now));
        assert!(!t(Some("pw"), Expiry::At(now)).accepts(b"pw", later));
    }
}

#[cfg(test)]
mod key_tests {
    #[test]
    fn key_is_162_bytes_and_round_trips() {
        let t = std::time::Instant::now();
        let k = super::TicketKey::generate().unwrap();
        eprintln!("keygen {:?}", t.elapsed());
        let blob = crate::client::link::encrypt_ticket(k.public_der(), "secret").unwrap();
        let blob: [u8; 128] = blob.try_into().unwrap();
        assert_eq!(k.decrypt_ticket(&blob).unwrap(), b"secret");
        let mut bad = blob;
        bad[5] ^= 1;
        assert!(k.decrypt_ticket(&bad).is_none());
    }
}
