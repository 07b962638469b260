//! The TLS listener's certificates, laid out as QEMU's `x509-dir`: `ca-cert.pem`,
//! `server-cert.pem`, `server-key.pem`. TLS 1.2 and 1.3 only (rustls has nothing
//! older), with rustls's ring provider.
//!
//! `ca-cert.pem` is what clients are given to verify the server (spice-gtk's
//! `--spice-ca-file`); the server sends it after its own certificate when it is not
//! already in `server-cert.pem`, so a client that only trusts the CA can build the
//! chain. Client certificates are not requested, as spice-server does not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::Error;

pub const CA_CERT: &str = "ca-cert.pem";
pub const SERVER_CERT: &str = "server-cert.pem";
pub const SERVER_KEY: &str = "server-key.pem";

fn x509_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::X509 {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            x509_error(path, "missing (the x509 directory needs ca-cert.pem, server-cert.pem and server-key.pem)")
        } else {
            x509_error(path, e.to_string())
        }
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| x509_error(path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(x509_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Loads `dir` and builds the rustls server configuration.
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>, Error> {
    let path = |name: &str| -> PathBuf { dir.join(name) };
    let ca = certs(&path(CA_CERT))?;
    let mut chain = certs(&path(SERVER_CERT))?;
    let key_path = path(SERVER_KEY);
    let key_pem = read(&key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| x509_error(&key_path, format!("no usable private key: {e}")))?;
    for c in ca {
        if !chain.contains(&c) {
            chain.push(c);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            x509_error(
                &path(SERVER_CERT),
                format!("does not go with {SERVER_KEY}: {e}"),
            )
        })?;
    Ok(Arc::new(config))
}
