//! `--spice-port NAME` (QEMU's `-chardev spiceport,name=NAME` joined to a
//! `virtserialport`): a named virtio-serial port whose byte stream is a SPICE
//! PORT channel. The bridge passes bytes both ways unparsed, with the
//! back-pressure of both sides: guest bytes the server refuses stay in the
//! guest's ring until the server resumes the port; client bytes the port's
//! queue refuses are held by the channel until the guest has read some.

use std::sync::{Arc, OnceLock};

use devices::virtio::serial::Busy;
use devices::virtio::{SerialBackend, SerialPort};
use spice::port::{Full, StreamKind, StreamPort, StreamSink};
use tracing::{debug, warn};

pub struct PortBridge {
    name: String,
    sink: OnceLock<Arc<dyn StreamSink>>,
    port: OnceLock<SerialPort>,
}

impl PortBridge {
    pub fn new(name: &str) -> PortBridge {
        PortBridge {
            name: name.to_owned(),
            sink: OnceLock::new(),
            port: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The virtio-serial port's handle, once the device exists.
    pub fn set_port(&self, port: SerialPort) {
        if self.port.set(port).is_err() {
            warn!(port = self.name, "spice port: port set twice");
        }
    }
}

impl SerialBackend for PortBridge {
    fn guest_open(&self, open: bool) {
        debug!(port = self.name, open, "spice port: guest end");
        if let Some(s) = self.sink.get() {
            s.guest_opened(open);
        }
    }

    fn guest_data(&self, data: &[u8]) -> Result<(), Busy> {
        match self.sink.get() {
            Some(s) => s.guest_data(data).map_err(|Full| Busy),
            // No SPICE server: dropped, as a chardev with no backend would.
            None => Ok(()),
        }
    }
}

impl StreamPort for PortBridge {
    fn kind(&self) -> StreamKind {
        StreamKind::Port
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn attach(&self, sink: Arc<dyn StreamSink>) {
        if self.sink.set(sink).is_err() {
            warn!(port = self.name, "spice port: attached twice");
        }
    }

    fn client_data(&self, data: &[u8]) -> Result<(), Full> {
        let Some(port) = self.port.get() else {
            return Ok(());
        };
        let sink = self.sink.get().cloned();
        let done = sink.map(|s| Box::new(move || s.resume()) as Box<dyn FnOnce() + Send>);
        port.send(data.to_vec(), done).map_err(|Busy| Full)
    }

    fn client_opened(&self, open: bool) {
        debug!(port = self.name, open, "spice port: client end");
    }

    fn resume(&self) {
        if let Some(p) = self.port.get() {
            p.resume();
        }
    }
}
