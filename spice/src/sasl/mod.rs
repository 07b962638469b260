//! SASL authentication in the link stage, as spice-gtk (Cyrus SASL, service "spice")
//! and spice-server (`red-stream.cpp` `red_sasl_*`) speak it after the client chose
//! auth mechanism 2. All lengths are u32 LE; strings the client sends carry a
//! trailing NUL that is not part of the data, and so do the server's:
//!
//! 1. S→C mechanism list (comma-separated)
//! 2. C→S mechanism name; C→S start data (length 0 = none)
//! 3. S→C reply data (length 0 = none), u8 complete
//! 4. while not complete: C→S step data, S→C reply + complete
//! 5. S→C u32 0 (accepted), or u32 1 + u32 length + "Authentication failed"
//!
//! then the usual 4-byte link result. The mechanisms come from `rsasl`: PLAIN and
//! SCRAM-SHA-256, offered only over TLS (neither has a security layer, which
//! spice-gtk demands on plaintext: SSF ≥ 56). On plaintext the list is empty, and
//! the server makes sure it never gets there (every channel needs TLS with SASL).

pub mod users;

use std::sync::Arc;

use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::prelude::{MessageSent, SASLConfig, SASLServer, Session, SessionError, State};
use rsasl::property::{AuthId, AuthzId, Password};
use rsasl::validate::{Validate, Validation, ValidationError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use users::Users;

/// Mechanisms offered over TLS, strongest first.
pub const TLS_MECHANISMS: &[&str] = &["SCRAM-SHA-256", "PLAIN"];
/// spice-server's bounds: mechanism names up to 100 bytes. Our mechanisms' messages
/// are all well under 1 KiB; 16 KiB is plenty (spice-server allows 1 MiB).
pub const MAX_MECHNAME: usize = 100;
pub const MAX_DATA: usize = 16 * 1024;
/// SCRAM needs two client messages, PLAIN one; anything longer is not a login.
pub const MAX_STEPS: usize = 4;
const REJECTED: &[u8] = b"Authentication failed\0";

/// What a finished exchange yields: the authenticated user, or None.
struct Login;
impl Validation for Login {
    type Value = Option<String>;
}

struct Callback {
    users: Arc<Users>,
}

impl SessionCallback for Callback {
    fn callback(
        &self,
        _session: &SessionData,
        context: &Context,
        request: &mut Request,
    ) -> Result<(), SessionError> {
        if request.is::<ScramStoredPassword>() {
            if let Some(name) = context.get_ref::<AuthId>() {
                let v = self.users.verifier(name);
                request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                    v.iterations,
                    &v.salt,
                    &v.stored_key,
                    &v.server_key,
                ))?;
            }
        }
        Ok(())
    }

    fn validate(
        &self,
        session: &SessionData,
        context: &Context,
        validate: &mut Validate<'_>,
    ) -> Result<(), ValidationError> {
        let name = context.get_ref::<AuthId>().unwrap_or("");
        // Acting as someone else (authzid) is not a thing here.
        let authz_ok = context
            .get_ref::<AuthzId>()
            .is_none_or(|z| z.is_empty() || z == name);
        let ok = authz_ok
            && if *session.mechanism().mechanism == *"PLAIN" {
                let pw = context.get_ref::<Password>().unwrap_or(b"");
                self.users.check_password(name, pw)
            } else {
                // SCRAM validates only after the proof matched StoredKey.
                self.users.known(name)
            };
        validate.with::<Login, _>(|| Ok(ok.then(|| name.to_string())))?;
        Ok(())
    }
}

/// The server's SASL setup: users and the rsasl configuration.
pub struct SaslAuth {
    config: Arc<SASLConfig>,
}

impl SaslAuth {
    pub fn new(users: Arc<Users>) -> Result<SaslAuth, crate::Error> {
        let config = SASLConfig::builder()
            .with_defaults()
            .with_callback(Callback { users })
            .map_err(|e| crate::Error::Sasl(e.to_string()))?;
        Ok(SaslAuth { config })
    }

    /// The list sent to the client: only mechanisms safe for this connection.
    pub fn mechlist(&self, secure: bool) -> String {
        if secure {
            TLS_MECHANISMS.join(",")
        } else {
            String::new()
        }
    }
}

/// Why an exchange ended without a login.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not a mechanism we offered: answered with link error INVALID_DATA.
    BadMechanism(String),
    /// The mechanism failed or the credentials were wrong: answered with the SASL
    /// rejection (after the last step's reply).
    Rejected(String),
    /// Framing: bad lengths, too many steps, or the client went away: closed.
    Protocol(String),
}

/// What the server sends after a step.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// None = length 0.
    pub data: Option<Vec<u8>>,
    pub complete: bool,
}

/// One login attempt, without I/O: mechanism, then data steps.
pub struct Exchange {
    session: Session<Login>,
    pub mechanism: String,
    steps: usize,
}

impl Exchange {
    /// Starts `mechname` (as the client sent it) if it is one we offered.
    pub fn start(auth: &SaslAuth, mechname: &[u8], secure: bool) -> Result<Exchange, Failure> {
        let name = String::from_utf8_lossy(mechname).into_owned();
        let offered = auth.mechlist(secure);
        if !offered.split(',').any(|m| !m.is_empty() && m == name) {
            return Err(Failure::BadMechanism(name));
        }
        let mech = rsasl::mechname::Mechname::parse(mechname)
            .map_err(|_| Failure::BadMechanism(name.clone()))?;
        let session = SASLServer::<Login>::new(auth.config.clone())
            .start_suggested(mech)
            .map_err(|e| Failure::BadMechanism(format!("{name}: {e}")))?;
        Ok(Exchange {
            session,
            mechanism: name,
            steps: 0,
        })
    }

    /// Feeds client data (None = the client sent length 0). Err(Rejected) means the
    /// server must still send `Reply { None, complete }` then the rejection.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<(Reply, Option<String>), Failure> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(Failure::Protocol(format!(
                "more than {MAX_STEPS} SASL steps"
            )));
        }
        if self.mechanism.starts_with("SCRAM-") {
            if let Some(msg) = input {
                scram_shape(msg, self.steps == 1)
                    .map_err(|why| Failure::Rejected(format!("{}: {why}", self.mechanism)))?;
            }
        }
        let mut out = Vec::new();
        // rsasl's parsers index into attributes they have not measured; `scram_shape`
        // rules out the inputs known to do that, and a panic that still happens ends
        // this login only.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.session.step(input, &mut out)
        }))
        .map_err(|_| Failure::Rejected(format!("{}: malformed message", self.mechanism)))?;
        let state = stepped.map_err(|e| Failure::Rejected(format!("{}: {e}", self.mechanism)))?;
        let data = (!out.is_empty()).then_some(out);
        match state {
            State::Running => Ok((
                Reply {
                    data,
                    complete: false,
                },
                None,
            )),
            State::Finished(sent) => {
                let data = if sent == MessageSent::Yes { data } else { None };
                match self.session.validation().flatten() {
                    Some(user) => Ok((
                        Reply {
                            data,
                            complete: true,
                        },
                        Some(user),
                    )),
                    None => Err(Failure::Rejected(format!(
                        "{}: wrong user name or password",
                        self.mechanism
                    ))),
                }
            }
        }
    }
}

/// RFC 5802's message shape, checked before rsasl parses: `first` = client-first
/// (`gs2-cbind-flag,[a=authzid],n=...,r=...`), else client-final (`c=...,r=...,p=...`).
/// Every attribute is `x=value`.
pub fn scram_shape(msg: &[u8], first: bool) -> Result<(), &'static str> {
    let mut parts = msg.split(|&b| b == b',');
    if first {
        let _cbind_flag = parts.next();
        let authzid = parts.next().ok_or("no GS2 header")?;
        if !authzid.is_empty() && !authzid.starts_with(b"a=") {
            return Err("bad authzid in the GS2 header");
        }
    }
    let mut n = 0;
    for p in parts {
        if p.len() < 2 || p[1] != b'=' {
            return Err("attribute is not x=value");
        }
        n += 1;
    }
    if n < 2 {
        return Err("too few attributes");
    }
    Ok(())
}

type Io<T> = Result<T, Failure>;

async fn read_u32<S: AsyncRead + Unpin>(s: &mut S) -> Io<u32> {
    s.read_u32_le()
        .await
        .map_err(|e| Failure::Protocol(format!("read: {e}")))
}

/// Reads u32 length + data, up to `max`; drops the trailing NUL clients append.
async fn read_blob<S: AsyncRead + Unpin>(s: &mut S, max: usize, what: &str) -> Io<Option<Vec<u8>>> {
    let len = read_u32(s).await? as usize;
    if len > max {
        return Err(Failure::Protocol(format!(
            "{what} of {len} bytes (at most {max})"
        )));
    }
    if len == 0 {
        return Ok(None);
    }
    let mut data = vec![0u8; len];
    s.read_exact(&mut data)
        .await
        .map_err(|e| Failure::Protocol(format!("read: {e}")))?;
    // spice-server overwrites the last byte with NUL and drops it, whatever it was.
    data.pop();
    Ok(Some(data))
}

fn encode_reply(r: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    match &r.data {
        Some(d) => {
            out.extend_from_slice(&(d.len() as u32 + 1).to_le_bytes());
            out.extend_from_slice(d);
            out.push(0);
        }
        None => out.extend_from_slice(&0u32.to_le_bytes()),
    }
    out.push(u8::from(r.complete));
    out
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> Io<()> {
    s.write_all(bytes)
        .await
        .map_err(|e| Failure::Protocol(format!("write: {e}")))?;
    s.flush()
        .await
        .map_err(|e| Failure::Protocol(format!("write: {e}")))
}

/// The whole exchange on a stream; Ok(user) once the client is accepted (the "accepted"
/// u32 was sent). On Rejected the rejection was sent, after `denied_delay`.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    auth: &SaslAuth,
    secure: bool,
    denied_delay: std::time::Duration,
) -> Result<(String, String), Failure> {
    let list = auth.mechlist(secure);
    let mut hello = (list.len() as u32).to_le_bytes().to_vec();
    hello.extend_from_slice(list.as_bytes());
    send(s, &hello).await?;

    let len = read_u32(s).await? as usize;
    if !(1..=MAX_MECHNAME).contains(&len) {
        return Err(Failure::Protocol(format!("mechanism name of {len} bytes")));
    }
    let mut name = vec![0u8; len];
    s.read_exact(&mut name)
        .await
        .map_err(|e| Failure::Protocol(format!("read: {e}")))?;
    let mut ex = Exchange::start(auth, &name, secure)?;
    let mut input = read_blob(s, MAX_DATA, "SASL start data").await?;
    loop {
        match ex.step(input.as_deref()) {
            Ok((reply, user)) => {
                send(s, &encode_reply(&reply)).await?;
                if let Some(user) = user {
                    send(s, &0u32.to_le_bytes()).await?;
                    return Ok((user, ex.mechanism));
                }
                input = read_blob(s, MAX_DATA, "SASL step data").await?;
            }
            Err(Failure::Rejected(why)) => {
                tokio::time::sleep(denied_delay).await;
                let mut out = encode_reply(&Reply {
                    data: None,
                    complete: true,
                });
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&(REJECTED.len() as u32).to_le_bytes());
                out.extend_from_slice(REJECTED);
                // The client may have given up already (a bad SCRAM proof is its cue).
                let _ = send(s, &out).await;
                return Err(Failure::Rejected(why));
            }
            Err(other) => return Err(other),
        }
    }
}

#[cfg(test)]
mod tests;
