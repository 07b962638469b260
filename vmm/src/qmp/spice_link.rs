//! `SpiceControl` over the `spice` crate's server.

use spice::{ClientInfo, Listen, SpiceServer};

use super::backend::{Expiry, SpiceControl};

impl SpiceControl for SpiceServer {
    fn set_password(&self, password: Option<String>) {
        SpiceServer::set_password(self, password);
    }

    fn expire_password(&self, expiry: Expiry) {
        SpiceServer::expire_password(self, expiry);
    }

    fn auth(&self) -> &'static str {
        SpiceServer::auth(self)
    }

    fn channels(&self) -> Vec<ClientInfo> {
        self.clients()
    }

    fn listen(&self) -> (String, Option<u16>) {
        match self.local_addr() {
            Listen::Tcp(a) => (a.ip().to_string(), Some(a.port())),
            Listen::Unix(p) => (p.display().to_string(), None),
        }
    }

    fn tls_port(&self) -> Option<u16> {
        self.tls_addr().map(|a| a.port())
    }

    fn disconnect_all(&self) {
        SpiceServer::disconnect_all(self);
    }
}
