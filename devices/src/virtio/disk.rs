//! Disk image backends for virtio-blk: raw files (and block devices) and qcow2.
//!
//! qcow2 goes through the `imago` crate. The workspace builds imago with its
//! default `async` feature, whose file backend does plain blocking pread/pwrite
//! inside `async fn`s and needs no tokio runtime, so a tiny thread-parking
//! `block_on` drives it synchronously. (Building imago with `sync` instead, i.e.
//! `default-features = false, features = ["sync"]`, would make that shim
//! unnecessary.)

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use imago::qcow2::Qcow2;
use imago::{
    DenyImplicitOpenGate, FormatAccess, FormatDriverBuilder, PermissiveImplicitOpenGate, Storage,
    StorageOpenOptions,
};
use tracing::{debug, error};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use crate::{Error, Result};

/// A virtual disk: a flat array of `size()` bytes.
pub trait DiskImage: Send {
    /// Fill `buf` from byte `offset`. Ranges past `size()` are an error.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at byte `offset`. Ranges past `size()` are an error.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make every completed write durable (fsync / fdatasync).
    fn flush(&mut self) -> io::Result<()>;
    /// Virtual size in bytes.
    fn size(&self) -> u64;
    /// The image format, as probed when it was opened.
    fn format(&self) -> DiskFormat;

    /// Read `len` bytes from byte `offset` into guest memory at `addr`. This
    /// default goes through `bounce`; a backend that can read into guest
    /// memory directly (a raw file) overrides it and saves the copy.
    fn read_to_guest(
        &mut self,
        mem: &GuestMemoryMmap<()>,
        addr: GuestAddress,
        len: usize,
        offset: u64,
        bounce: &mut [u8],
    ) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(bounce.len());
            self.read_at(&mut bounce[..n], offset + done as u64)?;
            let at = guest_offset(addr, done)?;
            mem.write_slice(&bounce[..n], at)
                .map_err(io::Error::other)?;
            done += n;
        }
        Ok(())
    }

    /// Write `len` bytes of guest memory at `addr` to byte `offset`; as
    /// `read_to_guest`, through `bounce` unless the backend can do better.
    fn write_from_guest(
        &mut self,
        mem: &GuestMemoryMmap<()>,
        addr: GuestAddress,
        len: usize,
        offset: u64,
        bounce: &mut [u8],
    ) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(bounce.len());
            let at = guest_offset(addr, done)?;
            mem.read_slice(&mut bounce[..n], at)
                .map_err(io::Error::other)?;
            self.write_at(&bounce[..n], offset + done as u64)?;
            done += n;
        }
        Ok(())
    }
}

/// `addr + done`, or an error if that wraps.
fn guest_offset(addr: GuestAddress, done: usize) -> io::Result<GuestAddress> {
    addr.checked_add(done as u64)
        .ok_or_else(|| io::Error::other("guest buffer wraps the address space"))
}

fn check_range(offset: u64, len: usize, size: u64) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("access {offset:#x}+{len:#x} beyond disk size {size:#x}"),
        )),
    }
}

fn read_only_error() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "disk is read-only")
}

/// A raw image: disk byte N is file byte N.
pub struct RawDisk {
    file: File,
    size: u64,
    read_only: bool,
}

impl RawDisk {
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| Error::DiskOpen {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self::from_file(file, read_only)?)
    }

    pub fn from_file(mut file: File, read_only: bool) -> io::Result<Self> {
        // Seeking to the end also sizes block devices, whose metadata length is 0.
        let size = file.seek(SeekFrom::End(0))?;
        Ok(Self {
            file,
            size,
            read_only,
        })
    }
}

impl DiskImage for RawDisk {
    fn format(&self) -> DiskFormat {
        DiskFormat::Raw
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        // The file must not grow: the guest was told its size.
        check_range(offset, buf.len(), self.size)?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn size(&self) -> u64 {
        self.size
    }

    /// Straight from the file into guest memory (the kernel's copy only).
    fn read_to_guest(
        &mut self,
        mem: &GuestMemoryMmap<()>,
        addr: GuestAddress,
        len: usize,
        offset: u64,
        _bounce: &mut [u8],
    ) -> io::Result<()> {
        check_range(offset, len, self.size)?;
        self.file.seek(SeekFrom::Start(offset))?;
        let mut done = 0;
        while done < len {
            let at = guest_offset(addr, done)?;
            let n = mem
                .read_volatile_from(at, &mut self.file, len - done)
                .map_err(io::Error::other)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }

    /// Straight from guest memory into the file.
    fn write_from_guest(
        &mut self,
        mem: &GuestMemoryMmap<()>,
        addr: GuestAddress,
        len: usize,
        offset: u64,
        _bounce: &mut [u8],
    ) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        check_range(offset, len, self.size)?;
        self.file.seek(SeekFrom::Start(offset))?;
        let mut done = 0;
        while done < len {
            let at = guest_offset(addr, done)?;
            let n = mem
                .write_volatile_to(at, &mut self.file, len - done)
                .map_err(io::Error::other)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Wakes the thread blocked in `block_on`.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Run `fut` to completion on this thread.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            // imago's file I/O is synchronous, so this only happens when its
            // internal locks or parallel sub-requests wait on each other.
            Poll::Pending => std::thread::park(),
        }
    }
}

type ImagoFile = imago::file::File;

/// A qcow2 image through imago.
pub struct Qcow2Disk {
    access: FormatAccess<ImagoFile>,
    writable: bool,
}

impl Qcow2Disk {
    /// Open a qcow2 image. `allow_backing` permits opening the backing file (and
    /// external data file) named inside the image; refuse it for images whose
    /// header the guest may have written, or a guest could read any host file.
    pub fn open(path: &Path, read_only: bool, allow_backing: bool) -> Result<Self> {
        let err = |e: io::Error| Error::DiskOpen {
            path: path.display().to_string(),
            source: e,
        };
        let opts = StorageOpenOptions::new().filename(path).write(!read_only);
        let file = block_on(<ImagoFile as Storage>::open(opts)).map_err(err)?;
        let builder = Qcow2::<ImagoFile>::builder(file).write(!read_only);
        let qcow2 = if allow_backing {
            block_on(builder.open(PermissiveImplicitOpenGate::default()))
        } else {
            block_on(builder.open(DenyImplicitOpenGate::default()))
        }
        .map_err(err)?;
        Ok(Self {
            access: FormatAccess::new(qcow2),
            writable: !read_only,
        })
    }
}

impl DiskImage for Qcow2Disk {
    fn format(&self) -> DiskFormat {
        DiskFormat::Qcow2
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size())?;
        block_on(self.access.read(buf, offset))
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(read_only_error());
        }
        check_range(offset, buf.len(), self.size())?;
        block_on(self.access.write(buf, offset))
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.writable {
            return Ok(());
        }
        // flush() writes imago's cached metadata to the file; sync() makes it durable.
        block_on(self.access.flush())?;
        block_on(self.access.sync())
    }

    fn size(&self) -> u64 {
        self.access.size()
    }
}

impl Drop for Qcow2Disk {
    fn drop(&mut self) {
        // In async mode imago does not flush on drop; cached L2/refcount updates
        // would be lost and the image left inconsistent.
        if self.writable {
            if let Err(e) = block_on(self.access.flush()) {
                error!("qcow2: flush on close failed: {e}");
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    /// QEMU's driver name ("raw", "qcow2"), as QMP `query-block` reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// Guess the format from the first bytes: qcow2 magic, else raw.
pub fn probe_format(path: &Path) -> Result<DiskFormat> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path).map_err(|source| Error::DiskOpen {
        path: path.display().to_string(),
        source,
    })?;
    // A file shorter than the magic is raw.
    let n = file.read(&mut magic)?;
    Ok(if n == 4 && magic == QCOW2_MAGIC {
        DiskFormat::Qcow2
    } else {
        DiskFormat::Raw
    })
}

/// Open `path`, probing its format. qcow2 images may not name backing or external
/// data files here (see `Qcow2Disk::open`); use it directly to allow them.
pub fn open_disk(path: &Path, read_only: bool) -> Result<Box<dyn DiskImage>> {
    let format = probe_format(path)?;
    debug!("disk {}: {format:?}, read_only={read_only}", path.display());
    Ok(match format {
        DiskFormat::Raw => Box::new(RawDisk::open(path, read_only)?),
        DiskFormat::Qcow2 => Box::new(Qcow2Disk::open(path, read_only, false)?),
    })
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory removed on drop (no tempfile crate in this workspace).
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "spicebox-disk-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Run qemu-img; panics with its output on failure.
    pub fn qemu_img(args: &[&str]) {
        let out = Command::new("qemu-img")
            .args(args)
            .output()
            .expect("qemu-img not found (scripts/deps test installs qemu-utils)");
        assert!(
            out.status.success(),
            "qemu-img {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A raw image of `len` bytes where byte i is `(i / 512 + i) as u8`.
    pub fn patterned_raw(path: &Path, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (i / 512 + i) as u8).collect();
        std::fs::write(path, &data).unwrap();
        data
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    /// A disk that only has `read_at`/`write_at`: the default, bounce-buffer
    /// guest transfers.
    struct Plain(RawDisk);

    impl DiskImage for Plain {
        fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.0.read_at(buf, offset)
        }
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0.write_at(buf, offset)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn format(&self) -> DiskFormat {
            DiskFormat::Raw
        }
    }

    #[test]
    fn guest_transfers_direct_and_bounced_agree() {
        let dir = TempDir::new();
        let path = dir.path().join("d.raw");
        patterned_raw(&path, 64 * 1024);
        // Two RAM regions with a hole between them, as below/above the PCI hole.
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 0x10000),
            (GuestAddress(0x10000), 0x10000),
            (GuestAddress(0x40000), 0x1000),
        ])
        .unwrap();
        let open = || RawDisk::open(&path, false).unwrap();
        let mut bounce = vec![0u8; 4096];
        let disks: [Box<dyn DiskImage>; 2] = [Box::new(open()), Box::new(Plain(open()))];
        for mut disk in disks {
            // Across the boundary between two regions, through a small bounce.
            disk.read_to_guest(&mem, GuestAddress(0xf000), 0x3000, 0x800, &mut bounce)
                .unwrap();
            let mut got = vec![0u8; 0x3000];
            mem.read_slice(&mut got, GuestAddress(0xf000)).unwrap();
            let data = std::fs::read(&path).unwrap();
            assert!(got == data[0x800..0x3800], "read differs from the file");
            mem.write_slice(&[0x5a; 0x1800], GuestAddress(0xff00))
                .unwrap();
            disk.write_from_guest(&mem, GuestAddress(0xff00), 0x1800, 0x2000, &mut bounce)
                .unwrap();
            let mut back = vec![0u8; 0x1800];
            disk.read_at(&mut back, 0x2000).unwrap();
            assert!(back == [0x5a; 0x1800], "write did not reach the file");
            mem.write_slice(&[0; 0x1800], GuestAddress(0xff00)).unwrap();
            // Into the hole, past the end of memory, past the end of the disk.
            for (addr, len, off) in [
                (0x1_f000u64, 0x2000usize, 0u64),
                (0x40800, 0x1000, 0),
                (u64::MAX - 10, 0x100, 0),
                (0x1000, 0x1000, 64 * 1024 - 0x800),
            ] {
                assert!(disk
                    .read_to_guest(&mem, GuestAddress(addr), len, off, &mut bounce)
                    .is_err());
                assert!(disk
                    .write_from_guest(&mem, GuestAddress(addr), len, off, &mut bounce)
                    .is_err());
            }
        }
    }

    #[test]
    fn raw_read_write_bounds_and_read_only() {
        let dir = TempDir::new();
        let path = dir.path().join("disk.raw");
        let data = patterned_raw(&path, 8192);
        assert_eq!(probe_format(&path).unwrap(), DiskFormat::Raw);
        let mut disk = open_disk(&path, false).unwrap();
        assert_eq!(disk.size(), 8192);
        let mut buf = [0u8; 512];
        disk.read_at(&mut buf, 1024).unwrap();
        assert_eq!(&buf[..], &data[1024..1536]);
        disk.write_at(&[0xab; 512], 512).unwrap();
        disk.flush().unwrap();
        // Nothing past the end, and the file never grows.
        assert!(disk.read_at(&mut buf, 8000).is_err());
        assert!(disk.write_at(&buf, 8192).is_err());
        assert!(disk.write_at(&buf, u64::MAX - 10).is_err());
        drop(disk);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 8192);
        assert_eq!(&on_disk[512..1024], &[0xab; 512][..]);

        let mut ro = open_disk(&path, true).unwrap();
        assert_eq!(ro.format().as_str(), "raw");
        assert!(ro.write_at(&[0; 512], 0).is_err());
        ro.read_at(&mut buf, 512).unwrap();
        assert_eq!(buf, [0xab; 512]);
        ro.flush().unwrap();
        // Short files are raw too; missing files are open errors.
        let tiny = dir.path().join("tiny");
        std::fs::write(&tiny, b"QF").unwrap();
        assert_eq!(probe_format(&tiny).unwrap(), DiskFormat::Raw);
        assert!(open_disk(&dir.path().join("missing"), true).is_err());
    }

    #[test]
    fn qcow2_roundtrip_through_qemu_img() {
        let dir = TempDir::new();
        let raw = dir.path().join("src.raw");
        let data = patterned_raw(&raw, 1 << 20);
        let qcow = dir.path().join("disk.qcow2");
        let (raw_s, qcow_s) = (raw.to_str().unwrap(), qcow.to_str().unwrap());
        qemu_img(&["convert", "-f", "raw", "-O", "qcow2", raw_s, qcow_s]);
        assert_eq!(probe_format(&qcow).unwrap(), DiskFormat::Qcow2);

        let mut disk = open_disk(&qcow, false).unwrap();
        assert_eq!(disk.format().as_str(), "qcow2");
        assert_eq!(disk.size(), 1 << 20);
        let mut buf = vec![0u8; 4096];
        disk.read_at(&mut buf, 65536 - 1024).unwrap();
        assert_eq!(&buf[..], &data[65536 - 1024..65536 + 3072]);
        // Writes spanning clusters, then flush and close.
        disk.write_at(&[0x5a; 8192], 65536 - 4096).unwrap();
        disk.flush().unwrap();
        assert!(disk.write_at(&[0; 512], 1 << 20).is_err());
        drop(disk);

        let out = dir.path().join("out.raw");
        qemu_img(&[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            qcow_s,
            out.to_str().unwrap(),
        ]);
        let mut expect = data.clone();
        expect[65536 - 4096..65536 + 4096].fill(0x5a);
        assert!(std::fs::read(&out).unwrap() == expect);
        qemu_img(&["check", qcow_s]);

        // Read-only qcow2 refuses writes.
        let mut ro = open_disk(&qcow, true).unwrap();
        assert!(ro.write_at(&[0; 512], 0).is_err());
        ro.read_at(&mut buf[..512], 65536).unwrap();
        assert_eq!(&buf[..512], &[0x5a; 512][..]);
    }

    #[test]
    fn qcow2_backing_file_needs_permission() {
        let dir = TempDir::new();
        let base = dir.path().join("base.raw");
        let data = patterned_raw(&base, 65536);
        let overlay = dir.path().join("overlay.qcow2");
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            base.to_str().unwrap(),
            overlay.to_str().unwrap(),
        ]);
        // Probing must not follow a backing file named by the image.
        assert!(open_disk(&overlay, true).is_err());
        let mut disk = Qcow2Disk::open(&overlay, true, true).unwrap();
        let mut buf = [0u8; 512];
        disk.read_at(&mut buf, 4096).unwrap();
        assert_eq!(&buf[..], &data[4096..4608]);
    }
}
