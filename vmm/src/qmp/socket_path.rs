//! Where the control socket lives and how it is created: mode 0600 from the
//! first moment, in a private runtime directory by default, and removed on exit
//! only if it is still ours.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Our effective uid, without unsafe code: /proc/self belongs to it.
fn my_uid() -> anyhow::Result<u32> {
    Ok(std::fs::metadata("/proc/self")
        .context("read /proc/self")?
        .uid())
}

/// Create `dir` with mode 0700, or accept it if it already is a directory of
/// ours that nobody else can enter.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).with_context(|| format!("{}", dir.display()))?;
    if !m.is_dir() || m.uid() != my_uid()? || m.mode() & 0o077 != 0 {
        bail!(
            "{} must be a directory owned by you with mode 0700",
            dir.display()
        );
    }
    Ok(())
}

/// `$XDG_RUNTIME_DIR/spicebox/<pid>.qmp`, else `/tmp/spicebox-<uid>/<pid>.qmp`.
pub fn default_path() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) if Path::new(&d).is_dir() => PathBuf::from(d).join("spicebox"),
        _ => std::env::temp_dir().join(format!("spicebox-{}", my_uid()?)),
    };
    private_dir(&dir)?;
    remove_stale(&dir);
    Ok(dir.join(format!("{}.qmp", std::process::id())))
}

/// Sockets of processes that were killed (SIGKILL leaves them behind).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".qmp"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A listening socket at `path`, which it owns until `remove`.
pub struct BoundSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    ino: u64,
}

/// Bind in a fresh 0700 directory next to `path`, chmod 0600, then rename into
/// place: nobody can connect before the mode is set.
pub fn bind(path: &Path) -> anyhow::Result<BoundSocket> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        if UnixStream::connect(path).is_ok() {
            bail!("{} is in use by another process", path.display());
        }
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = parent.join(format!(".spicebox-qmp-{}.tmp", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("create {}", staging.display()))?;
    let tmp = staging.join("s");
    let result = (|| -> anyhow::Result<UnixListener> {
        let l = UnixListener::bind(&tmp).with_context(|| format!("bind {}", path.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path).with_context(|| format!("create {}", path.display()))?;
        Ok(l)
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&staging);
    let listener = result?;
    let ino = std::fs::symlink_metadata(path)?.ino();
    Ok(BoundSocket {
        listener,
        path: path.to_path_buf(),
        ino,
    })
}

impl BoundSocket {
    /// Remove the socket file unless something else has replaced it.
    pub fn remove(&self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_0600_refuses_live_and_replaces_stale() {
        let dir = std::env::temp_dir().join(format!("spicebox-qmp-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.qmp");
        let s = bind(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(UnixStream::connect(&p).is_ok());
        assert!(bind(&p).is_err(), "a live socket is not taken over");
        let old_ino = s.ino;
        drop(s);
        // Now stale: a new server may take the path.
        let s2 = bind(&p).unwrap();
        let old = BoundSocket {
            listener: s2.listener.try_clone().unwrap(),
            path: p.clone(),
            ino: old_ino,
        };
        old.remove();
        assert!(p.exists(), "the old owner must not remove the new socket");
        s2.remove();
        assert!(!p.exists());
        std::fs::write(&p, b"x").unwrap();
        assert!(bind(&p).is_err(), "a regular file is not clobbered");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
