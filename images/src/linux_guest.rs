//! The Linux test guest: a small Linux 6.1 kernel built from Debian's
//! `linux-source-6.1` by `images/linux/build.sh` (tinyconfig, `config.fragment`
//! and the host-quirk patches in `images/linux/patches/`), and an initramfs of
//! Debian's static busybox whose `/init` is `images/linux/init.sh`.
//!
//! The kernel takes minutes to build, so it is built at run time, not by
//! `build.rs`, and cached under `target/linux-guest/<hash of its inputs>/`:
//! only the first test run on a machine builds it. The initramfs is written
//! next to it (cheap; keyed by its own inputs).
//!
//! `/init` reports on COM1 in lines `SBX <kind> ...` ([`LINUX_GUEST_LINE`]) and
//! runs the actions named by `spicebox.actions=a,b` on the command line.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::ImageError;

/// Debian's kernel source package (scripts/deps installs it).
pub const LINUX_SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// Debian's busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";

/// Command-line switches this project's test hosts need (each is parsed by
/// Linux 6.1 as noted): the nested KVM emulates all CPL 0 code and its
/// emulator lacks `clac`/`stac` (smap, smep), `popcnt`, `cmpxchg16b` (cx16),
/// `rdfsbase`/`wrfsbase` (fsgsbase; names need CONFIG_X86_FEATURE_NAMES,
/// arch/x86/kernel/cpu/common.c) and `xrstor` (`noxsave`, same file); the
/// delay-loop and TSC calibrations would take seconds of emulated code
/// (`lpj=`, init/calibrate.c; `tsc=reliable`, arch/x86/kernel/tsc.c).
pub const LINUX_GUEST_HOST_SWITCHES: &str =
    "clearcpuid=smap,smep,popcnt,cx16,fsgsbase noxsave lpj=1000000 tsc=reliable";

/// Every line `/init` prints starts with this.
pub const LINUX_GUEST_LINE: &str = "SBX ";
/// `SBX init uptime=S`: /init started.
pub const LINUX_GUEST_INIT_MARKER: &str = "SBX init ";
/// `SBX report done uptime=S`: every report line is out.
pub const LINUX_GUEST_REPORT_DONE: &str = "SBX report done";
/// `SBX action fbpage done`: the known page is on the fbcon VT.
pub const LINUX_GUEST_FBPAGE_DONE: &str = "SBX action fbpage done";
/// `SBX action hold waiting`: /init waits for a line on COM1.
pub const LINUX_GUEST_HOLD_WAITING: &str = "SBX action hold waiting";
/// `SBX action vport waiting`: /init holds the SPICE agent port open and waits
/// for a line on COM1 before it writes its message to the client.
pub const LINUX_GUEST_VPORT_WAITING: &str = "SBX action vport waiting";
/// `SBX action vport done`: the vport action's `rx=` line is out.
pub const LINUX_GUEST_VPORT_DONE: &str = "SBX action vport done";
/// What the vport action writes to the agent port: VDIChunkHeader (port 1 =
/// client, size 28) and a VD_AGENT_ANNOUNCE_CAPABILITIES VDAgentMessage
/// (protocol 1, type 6, opaque 0, size 8: request 0, caps 0x00000a5a).
pub const LINUX_GUEST_VPORT_SENT: [u8; 36] = [
    1, 0, 0, 0, 28, 0, 0, 0, // VDIChunkHeader
    1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, // VDAgentMessage
    0, 0, 0, 0, 0x5a, 0x0a, 0, 0, // VDAgentAnnounceCapabilities
];
/// `SBX action usbdisk done`: the usbdisk action's `lba=40 data=<hex>` line
/// (a sector of /dev/sda, the redirected USB stick) is out.
pub const LINUX_GUEST_USBDISK_DONE: &str = "SBX action usbdisk done";
/// `SBX action wav waiting`: /init waits for a line on COM1 (the test's
/// SPICE client is listening) before it plays the tone.
pub const LINUX_GUEST_WAV_WAITING: &str = "SBX action wav waiting";
/// `SBX action wav done`: the tone is played (`SBX action wav tone ...` is
/// the player's summary).
pub const LINUX_GUEST_WAV_DONE: &str = "SBX action wav done";
/// The wav action's tone, Hz.
pub const LINUX_GUEST_WAV_HZ: u32 = 440;
/// `SBX action input ready`: /init holds the virtio keyboard's and tablet's
/// evdev nodes open; events sent from now on are reported.
pub const LINUX_GUEST_INPUT_READY: &str = "SBX action input ready";
/// `SBX action input done`: the input action's event lines
/// (`SBX action input keyboard|tablet <struct input_event in hex>`) are out.
pub const LINUX_GUEST_INPUT_DONE: &str = "SBX action input done";
/// `SBX poweroff`: the last line before /init powers the machine off.
pub const LINUX_GUEST_POWEROFF: &str = "SBX poweroff";
/// The fbpage action's bands, top to bottom: 8 text rows each in the VGA
/// palette's red, green, blue and light grey (ANSI backgrounds 41, 42, 44, 47),
/// as 0xRRGGBB.
pub const LINUX_GUEST_FBPAGE_BANDS: [u32; 4] = [0xAA_0000, 0x00_AA00, 0x00_00AA, 0xAA_AAAA];
/// Text rows per band of the fbpage action.
pub const LINUX_GUEST_FBPAGE_BAND_ROWS: u32 = 8;

/// A built kernel and initramfs.
#[derive(Clone, Debug)]
pub struct LinuxGuest {
    /// ELF vmlinux with a PVH entry note (QEMU `-kernel`) and a 64-bit entry
    /// point (spicebox `--kernel`).
    pub vmlinux: PathBuf,
    /// Uncompressed newc cpio.
    pub initramfs: PathBuf,
    /// How long this call spent building the kernel (None: it was cached).
    pub built_in: Option<Duration>,
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("linux")
}

/// `$CARGO_TARGET_DIR/linux-guest`, else the workspace's `target/linux-guest`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("linux-guest"),
        None => {
            let images = Path::new(env!("CARGO_MANIFEST_DIR"));
            images.parent().unwrap_or(images).join("target/linux-guest")
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> ImageError {
    ImageError {
        path: path.to_owned(),
        source,
    }
}

/// FNV-1a, 64-bit: a stable hash of the build inputs (std's hasher may
/// change between Rust releases, which would only cost a rebuild, but a
/// stable name is easier to find by hand).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3) ^ 0xff;
    }
    /// A file by its name and content: not by its full path, so that every
    /// checkout (git worktrees, CI's) finds the kernel another one built.
    fn add_file(&mut self, path: &Path) -> Result<(), ImageError> {
        let name = path.file_name().unwrap_or(path.as_os_str());
        self.add(name.to_string_lossy().as_bytes());
        self.add(&fs::read(path).map_err(|e| io_error(path, e))?);
        Ok(())
    }
    /// A large input by identity only: size and modification time.
    fn add_identity(&mut self, path: &Path) -> Result<(), ImageError> {
        let meta = fs::metadata(path).map_err(|e| io_error(path, e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        self.add(&meta.len().to_le_bytes());
        self.add(&mtime.to_le_bytes());
        Ok(())
    }
}

fn kernel_inputs_hash() -> Result<u64, ImageError> {
    let src = source_dir();
    let mut h = Fnv::new();
    h.add_file(&src.join("build.sh"))?;
    h.add_file(&src.join("config.fragment"))?;
    let patches = src.join("patches");
    let mut names: Vec<PathBuf> = fs::read_dir(&patches)
        .map_err(|e| io_error(&patches, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    for p in names {
        h.add_file(&p)?;
    }
    h.add_identity(Path::new(LINUX_SOURCE_TARBALL))?;
    Ok(h.0)
}

/// Builds (first call on a machine: minutes) or finds the kernel, and writes
/// the initramfs. Several test processes may call this at once: a lock file
/// makes one build while the others wait for it.
pub fn linux_guest() -> Result<LinuxGuest, ImageError> {
    let cache = cache_dir();
    fs::create_dir_all(&cache).map_err(|e| io_error(&cache, e))?;
    let lock_path = cache.join("build.lock");
    let lock = fs::File::create(&lock_path).map_err(|e| io_error(&lock_path, e))?;
    lock.lock().map_err(|e| io_error(&lock_path, e))?;

    let out = cache.join(format!("{:016x}", kernel_inputs_hash()?));
    let vmlinux = out.join("vmlinux");
    let mut built_in = None;
    if !vmlinux.exists() {
        fs::create_dir_all(&out).map_err(|e| io_error(&out, e))?;
        let script = source_dir().join("build.sh");
        tracing::info!(out = %out.display(), "building the Linux test guest kernel (first run only)");
        eprintln!(
            "building the Linux test guest kernel into {} (first run on this machine only: minutes)",
            out.display()
        );
        let start = Instant::now();
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .map_err(|e| io_error(&script, e))?;
        if !output.status.success() || !vmlinux.exists() {
            let log = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(io_error(
                &script,
                std::io::Error::other(format!("{}:\n{}", output.status, tail.join("\n"))),
            ));
        }
        built_in = Some(start.elapsed());
    }

    let initramfs = write_initramfs(&cache)?;
    drop(lock);
    Ok(LinuxGuest {
        vmlinux,
        initramfs,
        built_in,
    })
}

/// Compiles `images/linux/tone.c` (the wav action's ALSA player) into a
/// static executable at `out`.
fn build_tone(src: &Path, out: &Path) -> Result<Vec<u8>, ImageError> {
    let status = Command::new("cc")
        .args(["-static", "-Os", "-s", "-Wall", "-o"])
        .arg(out)
        .arg(src)
        .arg("-lm")
        .status()
        .map_err(|e| io_error(src, e))?;
    if !status.success() {
        return Err(io_error(
            src,
            std::io::Error::other(format!(
                "cc -static failed ({status}): install gcc, libc6-dev and linux-libc-dev"
            )),
        ));
    }
    fs::read(out).map_err(|e| io_error(out, e))
}

/// The initramfs for `/init` = init.sh, busybox and tone, named by a hash of
/// the three (tone's by its source).
fn write_initramfs(cache: &Path) -> Result<PathBuf, ImageError> {
    let init_path = source_dir().join("init.sh");
    let init = fs::read(&init_path).map_err(|e| io_error(&init_path, e))?;
    let busybox_path = Path::new(BUSYBOX);
    let busybox = fs::read(busybox_path).map_err(|e| io_error(busybox_path, e))?;
    if !is_static_elf(&busybox) {
        // Debian's `busybox` (dynamic) also installs /bin/busybox; the
        // initramfs has no libc.
        return Err(io_error(
            busybox_path,
            std::io::Error::other("not a static ELF executable: install busybox-static"),
        ));
    }
    let tone_src = source_dir().join("tone.c");
    let mut h = Fnv::new();
    h.add(&init);
    h.add(&busybox);
    h.add_file(&tone_src)?;
    let path = cache.join(format!("initramfs-{:016x}.cpio", h.0));
    if !path.exists() {
        let tone = build_tone(&tone_src, &cache.join(format!("tone-{:016x}", h.0)))?;
        crate::write_image(&initramfs_cpio(&init, &busybox, &tone), &path)?;
    }
    Ok(path)
}

/// A 64-bit ELF executable without a PT_INTERP program header.
fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if !elf.starts_with(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count)).all(|i| {
        let at = phoff.saturating_add(i.saturating_mul(usize::from(size)));
        u32_at(at).is_some_and(|kind| kind != PT_INTERP)
    })
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// An uncompressed "newc" cpio archive (the initramfs format of
/// Documentation/driver-api/early-userspace/buffer-format.rst): the
/// directories /init mounts on, /dev/console (the kernel opens it for init's
/// stdio before /init runs), /init, /bin/busybox and /bin/tone.
pub fn initramfs_cpio(init: &[u8], busybox: &[u8], tone: &[u8]) -> Vec<u8> {
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio.entry(dir, S_IFDIR | 0o755, (0, 0), &[]);
    }
    cpio.entry("dev/console", S_IFCHR | 0o600, (5, 1), &[]);
    cpio.entry("init", S_IFREG | 0o755, (0, 0), init);
    cpio.entry("bin/busybox", S_IFREG | 0o755, (0, 0), busybox);
    cpio.entry("bin/tone", S_IFREG | 0o755, (0, 0), tone);
    cpio.entry("TRAILER!!!", 0, (0, 0), &[]);
    cpio.bytes
}

#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    next_ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        let _ = write!(self.bytes, "070701");
        for f in fields {
            let _ = write!(self.bytes, "{f:08x}");
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, rdev, data) of one archive entry.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Walks a newc archive.
    fn entries(mut b: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at {offset}");
            let field = |i: usize| {
                let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let rdev = (field(9), field(10));
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(b[110 + namesize - 1], 0);
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = b[data_at..data_at + size].to_vec();
            let next = (data_at + size).next_multiple_of(4);
            offset += next;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn initramfs_holds_init_busybox_and_console() {
        let cpio = initramfs_cpio(b"#!/bin/sh\necho hi\n", b"\x7fELFbusy", b"\x7fELFtone");
        assert_eq!(cpio.len() % 4, 0);
        let e = entries(&cpio);
        let find = |n: &str| e.iter().find(|x| x.0 == n).unwrap_or_else(|| panic!("{n}"));
        assert_eq!(find("init").1, S_IFREG | 0o755);
        assert_eq!(find("init").3, b"#!/bin/sh\necho hi\n");
        assert_eq!(find("bin/busybox").3, b"\x7fELFbusy");
        assert_eq!(find("bin/tone").3, b"\x7fELFtone");
        assert_eq!(find("dev/console").1, S_IFCHR | 0o600);
        assert_eq!(find("dev/console").2, (5, 1));
        assert_eq!(find("proc").1, S_IFDIR | 0o755);
    }

    #[test]
    fn static_elf_has_no_interpreter() {
        // A minimal ELF64 header with one program header at 0x40.
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        assert!(is_static_elf(&elf));
        elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert!(!is_static_elf(&elf));
        // Program headers past the end of the file: not trusted.
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        assert!(!is_static_elf(&elf));
        assert!(!is_static_elf(b"#!/bin/sh"));
    }

    #[test]
    fn hash_separates_its_inputs() {
        let mut a = Fnv::new();
        a.add(b"ab");
        a.add(b"c");
        let mut b = Fnv::new();
        b.add(b"a");
        b.add(b"bc");
        assert_ne!(a.0, b.0);
    }
}
