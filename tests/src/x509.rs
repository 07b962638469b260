//! Test certificates made with the openssl command line, the same commands the
//! README gives users: a CA, and a server certificate it signs for 127.0.0.1 and
//! localhost, laid out as QEMU's (and spicebox's) x509 directory.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::tools::{require_tool, run_timeout};

fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.args(args).current_dir(dir);
    let out = run_timeout(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes ca-cert.pem, ca-key.pem, server-cert.pem and server-key.pem into `dir`.
pub fn make_x509_dir(dir: &Path, ca_name: &str) {
    require_tool("openssl", "openssl");
    std::fs::create_dir_all(dir).unwrap();
    let subj = format!("/CN={ca_name}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            &subj,
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca-cert.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server-key.pem",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server-ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca-cert.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "server-ext.cnf",
            "-out",
            "server-cert.pem",
        ],
    );
}
