//! SPICE ticket authentication: a fresh RSA-1024 key per link whose public half goes
//! in that link's SpiceLinkReply, and the password/expiry check spice-server's
//! `reds_handle_ticket` does.

use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use rsa::pkcs8::EncodePublicKey;
use rsa::{Oaep, RsaPrivateKey};
use subtle::ConstantTimeEq;

use crate::proto::{TICKET_BYTES, TICKET_PUBKEY_BYTES};
use crate::server::lock;
use crate::{Error, Expiry};

/// One link's ticket key. Like spice-server, every link gets its own and drops it
/// afterwards, so a ticket captured from one connection is useless on another.
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

    /// RSA-OAEP (SHA-1, MGF1-SHA-1, empty label) decryption with blinding (no timing
    /// side channel on the private key), then the C string up to the first NUL, as
    /// spice-server compares with `strcmp`.
    ///
    /// spice-html5 (every release to date) writes the ciphertext's hex digits without
    /// their leading zero bytes and left-aligns the result in the 128-byte field, so
    /// about one link in 200 arrives as `c << 8k` with k zero bytes at the end: the
    /// browser then fails to connect at random. When the plain reading fails and the
    /// blob ends in zero bytes, the short readings are tried too (at most two, as a
    /// third leading zero byte is a 1-in-16M event). That gives a guesser no more
    /// than three tries per link, each still behind the per-link key.
    pub fn decrypt_ticket(&self, blob: &[u8; TICKET_BYTES]) -> Option<Vec<u8>> {
        let trailing_zeros = blob.iter().rev().take_while(|&&b| b == 0).count();
        let mut plain = (0..=trailing_zeros.min(2)).find_map(|shift| {
            let mut c = [0u8; TICKET_BYTES];
            c[shift..].copy_from_slice(&blob[..TICKET_BYTES - shift]);
            self.key
                .decrypt_blinded(&mut rand::rngs::OsRng, Oaep::new::<sha1::Sha1>(), &c)
                .ok()
        })?;
        if let Some(nul) = plain.iter().position(|&b| b == 0) {
            plain.truncate(nul);
        }
        Some(plain)
    }
}

/// Puts the calling thread on idle CPU only (SCHED_IDLE; nice 19 if that is
/// refused).
fn idle_priority() {
    let idle = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        thread_priority::ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Normal(
            thread_priority::NormalThreadSchedulePolicy::Idle,
        ),
    );
    if let Err(e) = idle {
        tracing::debug!("SPICE key pool: SCHED_IDLE not set ({e:?}); nice 19");
        if let Err(e) = rustix::process::setpriority_process(None, 19) {
            tracing::debug!("SPICE key pool: nice 19 not set: {e}");
        }
    }
}

/// Keys made ahead of time (key generation takes tens of milliseconds) by a
/// background thread, so a link does not usually wait for one. Each key is handed
/// out once.
pub struct KeyPool {
    state: Mutex<PoolState>,
    /// Wakes the refill thread when a key was taken or the pool is stopped.
    cv: Condvar,
    size: usize,
    /// Refill on idle CPU only (see `refill`); off only in the test of the
    /// refill itself, which must not depend on the machine having idle CPU.
    idle: bool,
}

struct PoolState {
    keys: Vec<TicketKey>,
    stopped: bool,
}

impl KeyPool {
    /// Starts the refill thread, which keeps `size` keys ready until `stop`.
    pub fn start(size: usize) -> Result<Arc<KeyPool>, Error> {
        Self::start_with(size, true)
    }

    fn start_with(size: usize, idle: bool) -> Result<Arc<KeyPool>, Error> {
        let pool = Arc::new(KeyPool {
            state: Mutex::new(PoolState {
                keys: Vec::with_capacity(size),
                stopped: false,
            }),
            cv: Condvar::new(),
            size,
            idle,
        });
        let p = pool.clone();
        std::thread::Builder::new()
            // Named apart when not idle, so the idle-policy test (which
            // checks every "spice-keygen") never waits on this one.
            .name(
                if idle {
                    "spice-keygen"
                } else {
                    "spice-keygen-n"
                }
                .into(),
            )
            .spawn(move || p.refill())
            .map_err(Error::Runtime)?;
        Ok(pool)
    }

    fn refill(&self) {
        // Refills follow every link, i.e. they start just as a new client's
        // session gets busy, and must use idle CPU only instead of taking a
        // share from the guest's vCPU and the channels. Nice 19 was not
        // enough: a nice-19 thread that got an idle CPU keeps it for its
        // slice when a channel or vCPU thread wakes, and perf still showed it
        // with ~20% of a two-CPU host inside a 10 MiB clipboard transfer.
        // A SCHED_IDLE thread is preempted by any waking normal thread. A
        // link that finds the pool empty makes its key at normal priority
        // (`take`).
        loop {
            {
                let mut st = lock(&self.state);
                while !st.stopped && st.keys.len() >= self.size {
                    st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.stopped {
                    return;
                }
            }
            // Set before every key, not once: set only when the thread
            // started, spicebox's refill thread was later found back at
            // SCHED_OTHER (cause not found; setting it again is cheap).
            if self.idle {
                idle_priority();
            }
            match TicketKey::generate() {
                Ok(k) => lock(&self.state).keys.push(k),
                Err(e) => {
                    tracing::warn!("SPICE ticket key generation failed: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }

    /// A ready key if there is one (the refill thread is told to make another).
    pub fn try_take(&self) -> Option<TicketKey> {
        let k = lock(&self.state).keys.pop();
        self.cv.notify_one();
        k
    }

    /// A key never handed out before: from the pool, else made now off the runtime.
    pub async fn take(&self) -> Result<TicketKey, Error> {
        if let Some(k) = self.try_take() {
            return Ok(k);
        }
        tokio::task::spawn_blocking(TicketKey::generate)
            .await
            .map_err(|e| Error::Crypto(format!("key generation task: {e}")))?
    }

    /// Ends the refill thread (it finishes the key it is making, if any).
    pub fn stop(&self) {
        lock(&self.state).stopped = true;
        self.cv.notify_all();
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
        // Constant time: how much of a guess matched must not show in the timing.
        let matches: bool = given.ct_eq(password.as_bytes()).into();
        !expired && matches
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

    /// spice-html5's `rsa_encrypt` drops the ciphertext's leading zero bytes and its
    /// ticket message pads on the right: that shape must still log in.
    #[test]
    fn left_aligned_short_ciphertext_from_spice_html5_is_accepted() {
        let k = super::TicketKey::generate().unwrap();
        let short = (0..20_000)
            .map(|_| crate::client::link::encrypt_ticket(k.public_der(), "secret").unwrap())
            .find(|c| c[0] == 0)
            .expect("one ciphertext in ~256 starts with a zero byte");
        let mut html5 = [0u8; 128];
        let digits = &short[1..];
        html5[..digits.len()].copy_from_slice(digits);
        assert_eq!(k.decrypt_ticket(&html5).unwrap(), b"secret");
        // A blob that decrypts under no reading is still refused.
        let mut bad = html5;
        bad[3] ^= 1;
        assert!(k.decrypt_ticket(&bad).is_none());
    }
}

#[cfg(test)]
mod pool_tests {
    use super::KeyPool;

    #[test]
    fn pool_hands_out_each_key_once_and_refills() {
        // At normal priority: a SCHED_IDLE refill thread gets no CPU at all
        // while the machine is busy (CI runs two tests at once on two CPUs),
        // and this test saw "pool never refilled" under load. The idle
        // policy is `the_refill_thread_runs_only_on_idle_cpu`'s to check.
        let pool = KeyPool::start_with(2, false).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // More keys than the pool holds: the rest are made on demand or refilled.
        let ders: Vec<_> = (0..5)
            .map(|_| *rt.block_on(pool.take()).unwrap().public_der())
            .collect();
        for (i, a) in ders.iter().enumerate() {
            assert!(ders[i + 1..].iter().all(|b| b != a), "key {i} reused");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while crate::server::lock(&pool.state).keys.len() < 2 {
            assert!(std::time::Instant::now() < deadline, "pool never refilled");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        pool.stop();
    }

    /// The scheduling policies (field 41 of /proc's stat, 5 = SCHED_IDLE) of
    /// this process's threads named `name`.
    fn policies(name: &str) -> Vec<u32> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if head.split_once('(').map(|(_, comm)| comm) != Some(name) {
                continue;
            }
            // `rest` starts at field 3 (state).
            if let Some(p) = rest.split_whitespace().nth(41 - 3) {
                found.push(p.parse().unwrap());
            }
        }
        found
    }

    #[test]
    fn the_refill_thread_runs_only_on_idle_cpu() {
        let pool = KeyPool::start(1).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // Every refill thread (other tests' pools too) sets its policy first.
        loop {
            let p = policies("spice-keygen");
            if !p.is_empty() && p.iter().all(|&p| p == 5) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "policies {p:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        pool.stop();
    }
}
