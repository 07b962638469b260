//! SPICE USB redirection: each `--usb-redir` channel is a usbredir stream port
//! whose far end is the client's USB device. A client opening the channel starts
//! a usbredir connection (our hello goes out); the device it connects is
//! attached to a free xHCI root port of its speed, and detached when the client
//! disconnects it, closes the channel, or breaks the protocol.
//!
//! Lock order: this port's state, then the connection's; never the xHCI
//! controller's lock while holding the port's state (the controller's worker
//! calls back into the port with the controller locked).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use devices::usb::redir::{RedirConnection, RedirEvent};
use devices::usb::xhci::XhciHandle;
use spice::port::{Full, StreamKind, StreamPort, StreamSink};
use tracing::{info, warn};

#[derive(Default)]
struct State {
    conn: Option<RedirConnection>,
    /// The root port our device is on.
    port: Option<u8>,
    /// Output the client's queue refused, sent first on resume.
    held: Vec<u8>,
}

pub struct UsbRedirStream {
    index: u8,
    xhci: XhciHandle,
    sink: OnceLock<Arc<dyn StreamSink>>,
    state: Mutex<State>,
    me: Weak<UsbRedirStream>,
}

impl UsbRedirStream {
    pub fn new(index: u8, xhci: XhciHandle) -> Arc<UsbRedirStream> {
        Arc::new_cyclic(|me| UsbRedirStream {
            index,
            xhci,
            sink: OnceLock::new(),
            state: Mutex::default(),
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what the connection queued, holding it if the client is behind.
    fn flush(&self) {
        let mut st = self.lock();
        let Some(conn) = &st.conn else { return };
        let out = conn.take_output();
        st.held.extend_from_slice(&out);
        if st.held.is_empty() {
            return;
        }
        let Some(sink) = self.sink.get() else { return };
        if sink.guest_data(&st.held).is_ok() {
            st.held.clear();
        }
    }

    /// Acts on connection events without holding the state lock.
    fn apply(&self, events: Vec<RedirEvent>) {
        for event in events {
            match event {
                RedirEvent::Connected(speed) => {
                    let Some(device) = self.lock().conn.as_ref().and_then(|c| c.device()) else {
                        continue;
                    };
                    match self.xhci.attach(Box::new(device)) {
                        Some(port) => {
                            info!("usbredir: device attached to port {port} ({speed:?}) by channel {}", self.index);
                            self.lock().port = Some(port);
                        }
                        None => warn!(
                            channel = self.index,
                            ?speed,
                            "usbredir: no free USB port for the device"
                        ),
                    }
                }
                RedirEvent::Disconnected => self.detach(),
                // Answers read on this (the SPICE) thread complete their
                // TDs here too, not through the xHCI worker.
                RedirEvent::Completed => self.xhci.collect(),
            }
        }
    }

    fn detach(&self) {
        let port = self.lock().port.take();
        if let Some(port) = port {
            info!(
                "usbredir: device detached from port {port} by channel {}",
                self.index
            );
            self.xhci.detach(port);
        }
    }
}

impl StreamPort for UsbRedirStream {
    fn kind(&self) -> StreamKind {
        StreamKind::Usbredir
    }

    fn name(&self) -> &str {
        "usbredir"
    }

    fn attach(&self, sink: Arc<dyn StreamSink>) {
        let _ = self.sink.set(sink);
    }

    fn client_data(&self, data: &[u8]) -> Result<(), Full> {
        let result = {
            let st = self.lock();
            match &st.conn {
                Some(conn) => conn.received(data),
                None => return Ok(()),
            }
        };
        match result {
            Ok(events) => self.apply(events),
            Err(e) => {
                // A peer that broke the framing is not trusted further: its
                // device goes, and its bytes are ignored until it reconnects.
                warn!(
                    channel = self.index,
                    "usbredir: closing the connection: {e}"
                );
                let conn = self.lock().conn.take();
                if let Some(conn) = conn {
                    conn.closed();
                }
                self.detach();
            }
        }
        self.flush();
        Ok(())
    }

    fn client_opened(&self, open: bool) {
        if open {
            let conn = RedirConnection::new();
            conn.set_inline_completions(true);
            let me = self.me.clone();
            conn.set_output_notify(Arc::new(move || {
                if let Some(me) = me.upgrade() {
                    me.flush();
                }
            }));
            *self.lock() = State {
                conn: Some(conn),
                port: None,
                held: Vec::new(),
            };
            self.flush();
        } else {
            let conn = self.lock().conn.take();
            if let Some(conn) = conn {
                conn.closed();
            }
            self.detach();
            self.lock().held.clear();
        }
    }

    fn resume(&self) {
        self.flush();
    }
}
