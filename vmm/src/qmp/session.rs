//! One client connection's protocol state, independent of sockets: bytes in,
//! JSON lines out through an `EventSink`. Negotiation, dispatch, and the order
//! "reply, then act" for `quit`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::args::Args;
use super::backend::QmpBackend;
use super::commands::{self, After, QMP_CAPABILITIES};
use super::events::{EventSink, Monitor};
use super::protocol::{self, ErrorClass, Frame, QmpError, Splitter};

#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Flush what is queued, then close the connection.
    Close,
}

pub struct Session {
    backend: Arc<dyn QmpBackend>,
    monitor: Arc<Monitor>,
    out: Arc<dyn EventSink>,
    splitter: Splitter,
    /// Set by `qmp_capabilities`: the subscription id for events.
    negotiated: Option<u64>,
}

impl Session {
    /// A session that has sent its greeting.
    pub fn start(
        backend: Arc<dyn QmpBackend>,
        monitor: Arc<Monitor>,
        out: Arc<dyn EventSink>,
    ) -> (Self, Flow) {
        let s = Session {
            backend,
            monitor,
            out,
            splitter: Splitter::default(),
            negotiated: None,
        };
        let flow = s.send(&protocol::greeting());
        (s, flow)
    }

    fn send(&self, v: &Value) -> Flow {
        if self.out.deliver(&Arc::from(v.to_string())) {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Flow {
        let mut frames = Vec::new();
        self.splitter.feed(bytes, &mut frames);
        for f in frames {
            let flow = match f {
                Frame::Message(m) => match protocol::parse_frame(&m) {
                    Ok(v) => self.handle(v),
                    Err(e) => self.send(&protocol::error_response(&e, None)),
                },
                Frame::TooLong => {
                    let e = QmpError::generic("JSON token size limit exceeded");
                    self.send(&protocol::error_response(&e, None));
                    return Flow::Close;
                }
            };
            if flow == Flow::Close {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    fn handle(&mut self, v: Value) -> Flow {
        let (id, req) = protocol::parse_request(v);
        let mut after = After::Nothing;
        let result = req.and_then(|r| {
            if r.execute == QMP_CAPABILITIES {
                self.negotiate(Args::new(r.arguments))
            } else if self.negotiated.is_none() {
                // QEMU gives this text for every other command, known or not.
                Err(QmpError::new(
                    ErrorClass::CommandNotFound,
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                ))
            } else {
                commands::execute(&*self.backend, &r.execute, r.arguments).map(|(v, a)| {
                    after = a;
                    v
                })
            }
        });
        let response = match result {
            Ok(ret) => protocol::return_response(ret, id),
            Err(e) => {
                tracing::debug!("QMP error reply: {e}");
                protocol::error_response(&e, id)
            }
        };
        let flow = self.send(&response);
        if after == After::Quit {
            self.backend.quit();
        }
        flow
    }

    fn negotiate(&mut self, mut args: Args) -> Result<Value, QmpError> {
        if self.negotiated.is_some() {
            return Err(QmpError::new(
                ErrorClass::CommandNotFound,
                "Capabilities negotiation is already complete, command ignored",
            ));
        }
        let enable = args.opt_list("enable")?.unwrap_or_default();
        args.finish()?;
        let mut caps = Vec::new();
        for (i, cap) in enable.into_iter().enumerate() {
            let name = format!("enable[{i}]");
            let Value::String(cap) = cap else {
                return Err(QmpError::generic(format!(
                    "Invalid parameter type for '{name}', expected: string"
                )));
            };
            super::args::lookup(&name, &cap, &[("oob", ())])?;
            caps.push(cap);
        }
        // "oob" is QEMU's only capability, and we do not offer it.
        if let Some(cap) = caps.first() {
            return Err(QmpError::generic(format!(
                "Capability '{cap}' not available"
            )));
        }
        self.negotiated = Some(self.monitor.subscribe(self.out.clone()));
        Ok(json!({}))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(id) = self.negotiated {
            self.monitor.unsubscribe(id);
        }
    }
}
