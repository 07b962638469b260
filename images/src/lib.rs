//! Boot disks built from source in this crate (`asm/*.S`, assembled by
//! `build.rs` with GNU binutils, and the 64-bit Rust guests in `guests/`,
//! booted by `asm/rust-loader.S`): the demo disk spicebox boots by default
//! and the test guests its end-to-end tests run.
//!
//! Every image is a raw disk: a boot sector that SeaBIOS (or any PC BIOS)
//! loads at 0x7C00, the program sectors it loads after itself, and zero
//! padding to a whole disk size. Every guest reports on COM1 (port 0x3F8)
//! with the marker strings defined here; tests match on those constants, never
//! on literals of their own.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod linux_guest;

static DEMO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo.img"));
static POWEROFF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/poweroff.img"));
static RESET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reset.img"));
static VIRTIO_BLK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtio-blk.img"));
static ACPI: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/acpi.img"));
static LINUX_STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/linux-stub.bin"));
static PCI_LIST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pci-list.img"));
static PCI_LIST_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pci-list.elf"));
static CRASH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crash.img"));
static CRASH_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crash.elf"));
static VIRTIO_MSIX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtio-msix.img"));
static VIRTIO_MSIX_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtio-msix.elf"));
static QXL_NATIVE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/qxl-native.img"));
static QXL_NATIVE_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/qxl-native.elf"));
static VIRTIO_BENCH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtio-bench.img"));
static VIRTIO_BENCH_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtio-bench.elf"));
static AC97_PLAY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ac97-play.img"));
static AC97_PLAY_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ac97-play.elf"));
static VIRTIO_INPUT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtio-input.img"));
static VIRTIO_INPUT_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtio-input.elf"));
static VDAGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdagent.img"));
static VDAGENT_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdagent.elf"));
static AC97_RECORD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ac97-record.img"));
static AC97_RECORD_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ac97-record.elf"));
static XHCI_STORAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xhci-storage.img"));
static XHCI_STORAGE_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xhci-storage.elf"));
static VGA13: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vga13.img"));
static VGA13_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vga13.elf"));

/// Sector size of every image, and the unit of virtio-blk sector numbers.
pub const SECTOR_SIZE: usize = 512;

// ---------------------------------------------------------------------------
// Guest conventions shared with the VMM

// ACPI_PM1A_CNT_PORT, ACPI_POWER_OFF_VALUE, SERIAL_PORT, RESET_BOOTS and
// RESET_CMOS_INDEX: build.rs assembles the guests with these very values.
include!("guest_abi.rs");

/// Printed by any image when a step outside its own test fails, for example
/// "SPICEBOX-FAIL disk-read" (the boot sector could not load the program) or
/// "SPICEBOX-FAIL poweroff" (the machine was still running 2-3 s after the
/// ACPI power-off write).
pub const FAIL_MARKER_PREFIX: &str = "SPICEBOX-FAIL ";

// ---------------------------------------------------------------------------
// demo

/// First line the demo prints, on screen (int 10h) and COM1.
pub const DEMO_BANNER: &str = "spicebox demo: type to echo, g = graphics, t = text, p = power off";
/// Line printed on COM1 once the demo is waiting for input.
pub const DEMO_READY_MARKER: &str = "SPICEBOX-DEMO-READY";
/// Key (keyboard) or byte (COM1) that makes the demo power off.
pub const DEMO_POWER_OFF_KEY: u8 = b'p';
/// Line the demo prints just before powering off. Any other character is
/// echoed as is on screen and COM1, except that CR, LF and CR LF each echo as
/// CR LF.
pub const DEMO_POWEROFF_MARKER: &str = "SPICEBOX-POWEROFF";
/// Key or COM1 byte that switches the demo to its graphics scene, and the
/// line it prints on COM1 once the scene is painted.
pub const DEMO_GRAPHICS_KEY: u8 = b'g';
pub const DEMO_GRAPHICS_MARKER: &str = "SPICEBOX-GRAPHICS-READY";
/// Key or COM1 byte that switches back to text mode 3 (the banner is shown
/// again), and the line printed after it.
pub const DEMO_TEXT_KEY: u8 = b't';
pub const DEMO_TEXT_MARKER: &str = "SPICEBOX-TEXT-READY";
/// Colours of the scene's eight bars, left to right.
pub const DEMO_SCENE_BARS: [u32; 8] = [
    0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000,
];

/// The colour (0xRRGGBB) the demo's graphics scene puts at (x, y); see
/// `asm/scene.inc` for the picture.
pub fn demo_scene_pixel(x: u32, y: u32) -> u32 {
    let h = u32::from(SCENE_HEIGHT);
    if y < h / 2 {
        return DEMO_SCENE_BARS[(x / u32::from(SCENE_BAR_WIDTH)).min(7) as usize];
    }
    let in_box = (u32::from(SCENE_BOX_X)..u32::from(SCENE_BOX_X + SCENE_BOX_W)).contains(&x)
        && (u32::from(SCENE_BOX_Y)..u32::from(SCENE_BOX_Y + SCENE_BOX_H)).contains(&y);
    if in_box {
        return 0xffffff;
    }
    let b = 64 + (y - h / 2) / 2;
    let g = b.saturating_sub(64);
    g << 8 | b
}

// ---------------------------------------------------------------------------
// poweroff

/// Printed by [`TestImage::PowerOff`] right before it powers off.
pub const POWEROFF_TEST_MARKER: &str = "SPICEBOX-POWEROFF-TEST";

// ---------------------------------------------------------------------------
// reset

/// Printed by [`TestImage::Reset`] on every boot, followed by the boot number
/// 1..=[`RESET_BOOTS`]; see [`reset_boot_marker`].
pub const RESET_BOOT_MARKER_PREFIX: &str = "SPICEBOX-RESET-BOOT ";
/// Printed on the last boot, before powering off.
pub const RESET_DONE_MARKER: &str = "SPICEBOX-RESET-DONE";
/// Printed, followed by "cf9" or "i8042", when that reset did not happen
/// within 2-3 s; the guest then powers off.
pub const RESET_FAIL_MARKER_PREFIX: &str = "SPICEBOX-RESET-FAIL ";

/// The line [`TestImage::Reset`] prints on boot `n`.
pub fn reset_boot_marker(n: u8) -> String {
    format!("{RESET_BOOT_MARKER_PREFIX}{n}")
}

// ---------------------------------------------------------------------------
// virtio-blk

/// Printed by [`TestImage::VirtioBlk`] when the write, flush and read-back all
/// succeeded.
pub const VIRTIO_OK_MARKER: &str = "SPICEBOX-VIRTIO-OK";
/// Printed, followed by the failed step (and for most steps a hex value), on
/// failure, e.g. "SPICEBOX-VIRTIO-FAIL pci-scan" or
/// "SPICEBOX-VIRTIO-FAIL write status 00000001".
pub const VIRTIO_FAIL_MARKER_PREFIX: &str = "SPICEBOX-VIRTIO-FAIL ";
/// Sector the virtio-blk guest writes and reads back (byte offset 1 MiB).
pub const VIRTIO_TEST_SECTOR: u64 = 2048;
/// Start of the data the virtio-blk guest writes.
pub const VIRTIO_WRITE_PREFIX: &str = "SPICEBOX-VIRTIO-WRITE";

/// The 512 bytes the virtio-blk guest writes to [`VIRTIO_TEST_SECTOR`]:
/// [`VIRTIO_WRITE_PREFIX`], then each byte `i` equal to `i & 0xFF`. A host
/// test compares the disk file at `VIRTIO_TEST_SECTOR * 512` with this.
pub fn virtio_expected_sector() -> [u8; SECTOR_SIZE] {
    let mut sector = [0u8; SECTOR_SIZE];
    for (i, byte) in sector.iter_mut().enumerate() {
        *byte = i as u8;
    }
    sector[..VIRTIO_WRITE_PREFIX.len()].copy_from_slice(VIRTIO_WRITE_PREFIX.as_bytes());
    sector
}

// ---------------------------------------------------------------------------
// acpi

/// Starts the line on which [`TestImage::Acpi`] reports what it found in the
/// tables ([`AcpiReport`]).
pub const ACPI_TABLES_MARKER: &str = "SPICEBOX-ACPI-TABLES ";
/// Printed once the power-button event is enabled: press it now (QMP
/// `system_powerdown`).
pub const ACPI_READY_MARKER: &str = "SPICEBOX-ACPI-READY";
/// Printed when PWRBTN_STS and the SCI were seen, followed by `irr=` and the
/// 8259 IRR byte in hex.
pub const ACPI_PWRBTN_MARKER: &str = "SPICEBOX-ACPI-PWRBTN";
/// Printed after the SCI dropped again, just before the S5 write.
pub const ACPI_OK_MARKER: &str = "SPICEBOX-ACPI-OK";
/// Printed, followed by the step (and sometimes a hex value), on failure.
pub const ACPI_FAIL_MARKER_PREFIX: &str = "SPICEBOX-ACPI-FAIL ";
/// The failure of a machine without ACPI tables: no RSDP anywhere.
pub const ACPI_FAIL_NO_RSDP: &str = "SPICEBOX-ACPI-FAIL rsdp";

/// What [`TestImage::Acpi`] found, parsed from its `key=hex` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AcpiReport {
    /// Where the RSDP was found, and its revision (0: ACPI 1.0, 2: 2.0+).
    pub rsdp: u32,
    pub revision: u32,
    /// RSDT and XSDT addresses (XSDT 0 when the RSDP has none).
    pub rsdt: u32,
    pub xsdt: u32,
    /// Enabled processor local APICs in the MADT.
    pub lapics: u32,
    /// The first IOAPIC's address.
    pub ioapic: u32,
    /// PM1a event and control blocks (FADT).
    pub pm1a_evt: u32,
    pub pm1a_cnt: u32,
    /// SCI_INT, and the MPS INTI flags of its MADT interrupt source override
    /// (0 when there is none).
    pub sci: u32,
    pub sci_flags: u32,
    /// SMI_CMD (0: the machine starts in ACPI mode).
    pub smi_cmd: u32,
    /// SLP_TYPa of `\_S5`.
    pub s5: u32,
}

impl AcpiReport {
    /// Find the report line in `serial` and parse it; `None` until the whole
    /// line (up to its CR LF) is there, or if a field is missing.
    pub fn parse(serial: &str) -> Option<AcpiReport> {
        let start = serial.find(ACPI_TABLES_MARKER)? + ACPI_TABLES_MARKER.len();
        let line = &serial[start..];
        let line = &line[..line.find("\r\n")?];
        let mut fields = std::collections::HashMap::new();
        for pair in line.split(' ') {
            let (key, value) = pair.split_once('=')?;
            fields.insert(key, u32::from_str_radix(value, 16).ok()?);
        }
        let get = |k: &str| fields.get(k).copied();
        Some(AcpiReport {
            rsdp: get("rsdp")?,
            revision: get("revision")?,
            rsdt: get("rsdt")?,
            xsdt: get("xsdt")?,
            lapics: get("lapics")?,
            ioapic: get("ioapic")?,
            pm1a_evt: get("pm1a_evt")?,
            pm1a_cnt: get("pm1a_cnt")?,
            sci: get("sci")?,
            sci_flags: get("sci_flags")?,
            smi_cmd: get("smi_cmd")?,
            s5: get("s5")?,
        })
    }
}

// ---------------------------------------------------------------------------
// linux-stub

/// Start of the one line [`linux_stub`] prints; the rest is the boot
/// information it found, see [`LinuxStubReport`].
pub const LINUX_STUB_MARKER: &str = "SPICEBOX-LINUX-STUB ";
/// Follows the command line in the stub's line; then the e820 entry count
/// in decimal.
pub const LINUX_STUB_E820_PREFIX: &str = " e820=";
/// Follows the e820 count; then `ramdisk_size` in lowercase hex, no leading
/// zeros (0 without an initrd).
pub const LINUX_STUB_INITRD_PREFIX: &str = " initrd=0x";
/// Follows the initrd size; then boot_params `acpi_rsdp_addr` in lowercase
/// hex (0 when the loader gave none).
pub const LINUX_STUB_RSDP_PREFIX: &str = " rsdp=0x";
/// Ends the line: 1 if an RSDP with a valid checksum is at that address.
pub const LINUX_STUB_RSDP_OK_PREFIX: &str = " rsdp_ok=";
/// Where a loader puts the stub's protected-mode part (`code32_start` and
/// `pref_address`): 1 MiB, like every bzImage.
pub const LINUX_STUB_LOAD_ADDR: u64 = 0x10_0000;

/// What [`linux_stub`] read from the zero page, parsed back from its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxStubReport {
    /// The command line at `cmd_line_ptr`, up to its NUL.
    pub cmdline: String,
    /// `e820_entries` of boot_params.
    pub e820_entries: u32,
    /// `ramdisk_size` of the setup header (with `ext_ramdisk_size` on top).
    pub initrd_size: u64,
    /// boot_params `acpi_rsdp_addr`.
    pub acpi_rsdp_addr: u64,
    /// An RSDP (signature and checksum) is at `acpi_rsdp_addr`.
    pub rsdp_valid: bool,
}

impl LinuxStubReport {
    /// Find the stub's line in `serial` (COM1 output) and parse it. `None`
    /// until the whole line, up to its CR LF, has arrived.
    pub fn parse(serial: &str) -> Option<LinuxStubReport> {
        let start = serial.find(LINUX_STUB_MARKER)? + LINUX_STUB_MARKER.len();
        let line = &serial[start..];
        let line = &line[..line.find("\r\n")?];
        // The command line is free text; the fields after it are not, so
        // split from the right.
        let (cmdline, rest) = line.rsplit_once(LINUX_STUB_E820_PREFIX)?;
        let (e820, rest) = rest.split_once(LINUX_STUB_INITRD_PREFIX)?;
        let (initrd, rest) = rest.split_once(LINUX_STUB_RSDP_PREFIX)?;
        let (rsdp, ok) = rest.split_once(LINUX_STUB_RSDP_OK_PREFIX)?;
        Some(LinuxStubReport {
            cmdline: cmdline.to_owned(),
            e820_entries: e820.parse().ok()?,
            initrd_size: u64::from_str_radix(initrd, 16).ok()?,
            acpi_rsdp_addr: u64::from_str_radix(rsdp, 16).ok()?,
            rsdp_valid: match ok {
                "1" => true,
                "0" => false,
                _ => return None,
            },
        })
    }
}

// ---------------------------------------------------------------------------
// Images

/// The demo disk spicebox boots when the user names no disk (1 MiB raw).
pub fn demo_disk() -> &'static [u8] {
    DEMO
}

/// A stand-in Linux kernel for `spicebox run --kernel`: a bzImage (boot
/// protocol 2.12, 64-bit entry point, relocatable) small enough to run where
/// guest kernel code is emulated. Its 64-bit entry prints
/// [`LINUX_STUB_MARKER`], the command line, the e820 entry count, the initrd
/// size and `acpi_rsdp_addr` from boot_params on COM1 as one line
/// ([`LinuxStubReport`]),
/// then powers off via ACPI. Its 16-bit (setup code, what QEMU's `-kernel`
/// runs) and 32-bit entries are not implemented: they print
/// [`FAIL_MARKER_PREFIX`] and `linux-stub-entry16` / `linux-stub-entry32`,
/// then power off.
pub fn linux_stub() -> &'static [u8] {
    LINUX_STUB
}

// ---------------------------------------------------------------------------
// 64-bit Rust guests (guests/, booted by asm/rust-loader.S)

/// Printed by [`TestImage::PciList`] when every check passed.
pub const PCI_LIST_OK_MARKER: &str = "SPICEBOX-PCI-LIST-OK";
/// Printed, followed by the failed step and details, when a check failed.
pub const PCI_LIST_FAIL_MARKER_PREFIX: &str = "SPICEBOX-PCI-LIST-FAIL ";
/// Printed by [`TestImage::Crash`] when it waits for [`CRASH_FAULT_KEY`] or
/// [`CRASH_PANIC_KEY`] on COM1.
pub const CRASH_READY_MARKER: &str = "SPICEBOX-CRASH-READY";
/// Makes [`TestImage::Crash`] write to [`CRASH_ADDRESS`], in the unmapped
/// null page: the CPL-0 exception handler then prints a line starting with
/// [`CRASH_EXCEPTION_PREFIX`] (see [`RustGuestException`]).
pub const CRASH_FAULT_KEY: u8 = b'f';
/// Makes [`TestImage::Crash`] panic: the panic handler prints
/// [`CRASH_PANIC_MARKER`] followed by ` at <file>:<line>`.
pub const CRASH_PANIC_KEY: u8 = b'p';
pub const CRASH_EXCEPTION_PREFIX: &str = "SPICEBOX-CRASH-FAIL exception ";
pub const CRASH_PANIC_MARKER: &str = "SPICEBOX-CRASH-FAIL panic deliberate panic 42";
/// Printed by [`TestImage::VirtioMsix`] when every check passed.
pub const VIRTIO_MSIX_OK_MARKER: &str = "SPICEBOX-VIRTIO-MSIX-OK";
pub const VIRTIO_MSIX_FAIL_MARKER_PREFIX: &str = "SPICEBOX-VIRTIO-MSIX-FAIL ";
/// Printed by [`TestImage::QxlNative`] once its picture is drawn and every
/// command released; it then waits for any byte on COM1.
pub const QXL_NATIVE_READY_MARKER: &str = "QXL-NATIVE-READY";
pub const QXL_NATIVE_OK_MARKER: &str = "SPICEBOX-QXL-NATIVE-OK";
pub const QXL_NATIVE_FAIL_MARKER_PREFIX: &str = "SPICEBOX-QXL-NATIVE-FAIL ";
/// Printed by qxl-native after the animation an `a` on COM1 starts.
pub const QXL_ANIM_DONE_MARKER: &str = "QXL-ANIM-DONE";
/// Printed by qxl-native once the ROP3/STROKE/TEXT/COMPOSITE drawables an
/// `o` on COM1 starts are drawn and flushed.
pub const QXL_OPS_DONE_MARKER: &str = "QXL-OPS-DONE";
/// The qxl-native guest's blends ('b' on COM1: a colour-keyed TRANSPARENT
/// and two ALPHA_BLENDs of one bitmap over the scene) are on the ring.
pub const QXL_BLEND_DONE_MARKER: &str = "QXL-BLEND-DONE";
/// Printed by qxl-native after the cursor cycle a `c` on COM1 starts.
pub const QXL_CURSORS_DONE_MARKER: &str = "QXL-CURSORS-DONE";
/// Printed by qxl-native after the video a `v` on COM1 starts.
pub const QXL_VIDEO_DONE_MARKER: &str = "QXL-VIDEO-DONE";

/// The picture [`TestImage::QxlNative`] draws through QXL commands (the
/// guest includes this file too).
pub mod qxl_scene {
    include!("qxl_scene.rs");
}
/// Printed by [`TestImage::VirtioBench`] after both phases.
pub const VIRTIO_BENCH_OK_MARKER: &str = "SPICEBOX-VIRTIO-BENCH-OK";
/// [`TestImage::VirtioBench`] reads only sectors from here on, and expects
/// each to start with its own sector number (u64, little-endian): see
/// [`virtio_bench_disk`].
pub const VIRTIO_BENCH_DATA_START: u64 = 16 * 1024 * 1024;
/// Lines [`TestImage::VirtioBench`] prints around each phase; it then waits
/// for any byte on COM1 (the host samples CPU times in between).
pub const VIRTIO_BENCH_READY_PREFIX: &str = "BENCH-READY ";
pub const VIRTIO_BENCH_DONE_PREFIX: &str = "BENCH-DONE ";
/// Printed by [`TestImage::Ac97Play`] after playing and checking its rate.
pub const AC97_PLAY_OK_MARKER: &str = "SPICEBOX-AC97-PLAY-OK";
pub const AC97_PLAY_FAIL_MARKER_PREFIX: &str = "SPICEBOX-AC97-PLAY-FAIL ";
/// Printed by [`TestImage::VirtioInput`] once both devices run and it reports
/// events (`event <keyboard|tablet> <type> <code> <value>`).
pub const VIRTIO_INPUT_READY_MARKER: &str = "SPICEBOX-VIRTIO-INPUT-READY";
/// Printed by [`TestImage::VirtioInput`] after Q was released on the keyboard.
pub const VIRTIO_INPUT_OK_MARKER: &str = "SPICEBOX-VIRTIO-INPUT-OK";
pub const VIRTIO_INPUT_FAIL_MARKER_PREFIX: &str = "SPICEBOX-VIRTIO-INPUT-FAIL ";
/// Printed by [`TestImage::Vdagent`] once its agent port is open.
pub const VDAGENT_READY_MARKER: &str = "SPICEBOX-VDAGENT-READY";
/// Printed by [`TestImage::Vdagent`] after the server's CLIENT_DISCONNECTED.
pub const VDAGENT_OK_MARKER: &str = "SPICEBOX-VDAGENT-OK";
pub const VDAGENT_FAIL_MARKER_PREFIX: &str = "SPICEBOX-VDAGENT-FAIL ";
/// Printed by [`TestImage::Vdagent`] for each CLIENT_MONITORS_CONFIG
/// interrupt of the QXL card: `count=<n> crc=<ok|bad> sum=<fnv1a32 of the
/// ROM's 1028-byte QXLClientMonitorsConfig> head0=<top>,<left>,<bottom>,<right>`.
pub const VDAGENT_QXL_MONITORS_PREFIX: &str = "qxl-client-monitors ";
/// Printed by [`TestImage::Vdagent`] when a byte came on COM1: the next
/// CLIENT_DISCONNECTED does not end the test ([`VDAGENT_CLIENT_GONE_MARKER`]).
pub const VDAGENT_NEXT_MARKER: &str = "agent-next";
pub const VDAGENT_CLIENT_GONE_MARKER: &str = "agent-client-gone";
/// Printed by [`TestImage::Vdagent`] after a `c` on COM1: it plays
/// spice-vdagent's clipboard side (grabs with [`VDAGENT_GUEST_CLIPBOARD_LEN`]
/// bytes of text, answers requests, requests what the client grabs) and
/// reports the client's clipboard data as `agent-clipboard type=<t>
/// size=<n> sum=<fnv1a32>`.
pub const VDAGENT_CLIPBOARD_MODE_MARKER: &str = "agent-clipboard-mode";
/// Printed by [`TestImage::Vdagent`] after an `f` on COM1: it plays
/// spice-vdagent's file-transfer side and reports each complete file as
/// `agent-file id=<id> name=<name> size=<n> sum=<fnv1a32>`.
/// Printed by [`TestImage::Vdagent`] after a `b` on COM1: spice-vdagent's
/// clipboard side with selections, a 10 MiB text and a 1 MiB PNG
/// (`agent-clipboard-sent` / `agent-clipboard-got` lines).
pub const VDAGENT_BIG_CLIPBOARD_MODE_MARKER: &str = "agent-big-clipboard-mode";
pub const VDAGENT_FILE_MODE_MARKER: &str = "agent-file-mode";
pub const VDAGENT_FILE_PREFIX: &str = "agent-file id=";
pub const VDAGENT_CLIPBOARD_PREFIX: &str = "agent-clipboard type=";
/// The guest's clipboard text: byte i is `b'a' + (i * 7 + i / 256) % 26`.
pub const VDAGENT_GUEST_CLIPBOARD_LEN: usize = 3000;
/// Printed by [`TestImage::Ac97Record`] after capturing at real time and
/// reporting what it heard (`ac97-record ... dominant_mhz=<n> power=<n>`).
pub const AC97_RECORD_OK_MARKER: &str = "SPICEBOX-AC97-RECORD-OK";
pub const AC97_RECORD_FAIL_MARKER_PREFIX: &str = "SPICEBOX-AC97-RECORD-FAIL ";
/// Printed by [`TestImage::XhciStorage`] when the stick was enumerated and read.
pub const XHCI_STORAGE_OK_MARKER: &str = "SPICEBOX-XHCI-STORAGE-OK";
/// Printed by [`TestImage::Vga13`] after each animation (preceded by its
/// `vga13 frames=.. late=.. ms=.. draw_us=..` line); it then waits for a
/// byte on COM1: `a` animates again, anything else ends with [`VGA13_OK_MARKER`].
pub const VGA13_ANIM_DONE_MARKER: &str = "VGA13-ANIM-DONE";
pub const VGA13_OK_MARKER: &str = "SPICEBOX-VGA13-OK";
pub const VGA13_FAIL_MARKER_PREFIX: &str = "SPICEBOX-VGA13-FAIL ";
/// Frames one vga13 animation draws (the counter shows this number at the end).
pub const VGA13_FRAMES: u64 = 240;
pub const XHCI_STORAGE_FAIL_MARKER_PREFIX: &str = "SPICEBOX-XHCI-STORAGE-FAIL ";

/// The disk [`TestImage::VirtioBench`] runs on: the image, then patterned
/// sectors from [`VIRTIO_BENCH_DATA_START`] up to `size` bytes.
pub fn virtio_bench_disk(size: usize) -> Vec<u8> {
    let mut disk = TestImage::VirtioBench.bytes().to_vec();
    let start = VIRTIO_BENCH_DATA_START as usize;
    assert!(disk.len() <= start && size >= start + SECTOR_SIZE);
    disk.resize(size, 0);
    for (i, sector) in disk[start..].chunks_mut(SECTOR_SIZE).enumerate() {
        let n = (start / SECTOR_SIZE + i) as u64;
        sector[..8].copy_from_slice(&n.to_le_bytes());
    }
    disk
}

/// The address [`TestImage::Crash`] writes to (in the null page).
pub const CRASH_ADDRESS: u64 = 0x10;

/// The line a Rust guest's CPL-0 exception handler prints:
/// `SPICEBOX-<NAME>-FAIL exception <vector> rip=<hex> err=<hex> cr2=<hex> rsp=<hex> cs=<hex> rflags=<hex>`
/// (all hex, without 0x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustGuestException {
    pub vector: u8,
    pub rip: u64,
    pub error_code: u32,
    pub cr2: u64,
    pub rsp: u64,
    pub cs: u16,
    pub rflags: u64,
}

impl RustGuestException {
    /// The first complete exception line after `prefix` in `serial`.
    pub fn parse(serial: &str, prefix: &str) -> Option<Self> {
        let rest = &serial[serial.find(prefix)? + prefix.len()..];
        let line = &rest[..rest.find("\r\n")?];
        let mut words = line.split(' ');
        let vector = u8::from_str_radix(words.next()?, 16).ok()?;
        let mut field = |name: &str| -> Option<u64> {
            let word = words.next()?;
            u64::from_str_radix(word.strip_prefix(name)?.strip_prefix('=')?, 16).ok()
        };
        Some(RustGuestException {
            vector,
            rip: field("rip")?,
            error_code: field("err")?.try_into().ok()?,
            cr2: field("cr2")?,
            rsp: field("rsp")?,
            cs: field("cs")?.try_into().ok()?,
            rflags: field("rflags")?,
        })
    }
}

/// Test guests for spicebox's end-to-end tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestImage {
    /// Prints [`POWEROFF_TEST_MARKER`] and powers off via ACPI (1 MiB raw).
    PowerOff,
    /// Resets itself three ways across four boots, then powers off
    /// ([`RESET_BOOT_MARKER_PREFIX`], [`RESET_DONE_MARKER`]; 1 MiB raw).
    /// The VMM must let it reboot.
    Reset,
    /// Drives a virtio 1.x virtio-blk PCI device directly (not via the BIOS):
    /// writes, flushes and reads back [`VIRTIO_TEST_SECTOR`], prints
    /// [`VIRTIO_OK_MARKER`] and powers off. Boot it from that device: the
    /// write lands in the image itself (2 MiB raw).
    VirtioBlk,
    /// Finds and checks the ACPI tables as an OS does, reports them
    /// ([`AcpiReport`]), arms the power button, prints [`ACPI_READY_MARKER`],
    /// waits for a press and its SCI, prints [`ACPI_OK_MARKER`] and enters S5
    /// (1 MiB raw).
    Acpi,
    /// 64-bit Rust guest (`guests/programs/src/bin/pci-list.rs`): lists the
    /// PCI functions, checks memory, LAPIC-timer and IOAPIC interrupts,
    /// times a CPL-3 loop, prints [`PCI_LIST_OK_MARKER`] (1 MiB raw).
    PciList,
    /// 64-bit Rust guest that fails on purpose: prints
    /// [`CRASH_READY_MARKER`], then faults or panics on the byte it reads
    /// from COM1 ([`CRASH_FAULT_KEY`], [`CRASH_PANIC_KEY`]) (1 MiB raw).
    Crash,
    /// 64-bit Rust guest driving virtio-blk interrupts as Linux's
    /// virtio_pci does: INTx through the IOAPIC, then MSI-X with a vector per
    /// queue, masking and pending bits; prints [`VIRTIO_MSIX_OK_MARKER`]
    /// (1 MiB raw; boot it from the virtio disk).
    VirtioMsix,
    /// 64-bit Rust guest driving the QXL card's native mode as Linux's qxl
    /// driver does (memslots, primary surface, command and cursor rings,
    /// release ring) to draw [`qxl_scene`]; prints
    /// [`QXL_NATIVE_READY_MARKER`], waits for a byte on COM1, then
    /// [`QXL_NATIVE_OK_MARKER`] (1 MiB raw).
    QxlNative,
    /// 64-bit Rust guest measuring virtio-blk reads from CPL 3, driven by
    /// `scripts/bench_blk` ([`virtio_bench_disk`] makes its disk).
    VirtioBench,
    /// 64-bit Rust guest playing a 440 Hz tone at 44.1 kHz on an AC97 for
    /// 32 s as snd-intel8x0 does (interrupt per period, LVI kept ahead);
    /// prints `ac97 ... rate=<frames/s>` and [`AC97_PLAY_OK_MARKER`].
    Ac97Play,
    /// 64-bit Rust guest driving a virtio keyboard and tablet as Linux's
    /// virtio_input does (config probe, MSI-X, status-queue LEDs), then
    /// printing their events from [`VIRTIO_INPUT_READY_MARKER`] until Q is
    /// released; prints [`VIRTIO_INPUT_OK_MARKER`] (1 MiB raw).
    VirtioInput,
    /// 64-bit Rust guest playing spice-vdagentd's transport: virtio-serial
    /// MULTIPORT as virtio_console.c, the `com.redhat.spice.0` port opened,
    /// client messages reported and echoed in agent chunks until the server's
    /// CLIENT_DISCONNECTED; the QXL card's client monitors configs reported
    /// ([`VDAGENT_QXL_MONITORS_PREFIX`]); prints [`VDAGENT_OK_MARKER`] (1 MiB raw).
    Vdagent,
    /// 64-bit Rust guest capturing from an AC97's PCM in at 44.1 kHz for 8 s
    /// as snd-intel8x0 does; prints `ac97-record ... rate=<frames/s>
    /// dominant_mhz=<strongest frequency of the last 2 s> power=<mean
    /// square>` and [`AC97_RECORD_OK_MARKER`] (1 MiB raw).
    Ac97Record,
    /// 64-bit Rust guest driving an xHCI controller (qemu-xhci) by polling,
    /// as xhci-hcd, the USB core and usb-storage do: waits up to 120 s for a
    /// device on a root port, enumerates it, configures its bulk endpoints
    /// and runs INQUIRY, TEST UNIT READY, READ CAPACITY(10), READ(10) and
    /// REQUEST SENSE over bulk-only transport; prints `storage ...` lines
    /// and [`XHCI_STORAGE_OK_MARKER`] (1 MiB raw). A boot keyboard instead
    /// is driven as usbhid does (interrupt IN TDs): `hid ready`, then `hid
    /// report <8 bytes>` per report up to Enter's release and `hid typed "..."`.
    XhciStorage,
    /// 64-bit Rust guest animating a mode-13h screen from CPL 3 as a DOS game
    /// does (registers, DAC, stores into 0xA0000): a sprite bouncing over
    /// palette bands and a frame counter, [`VGA13_FRAMES`] frames at 60/s;
    /// prints [`VGA13_ANIM_DONE_MARKER`], waits for a byte on COM1, then
    /// [`VGA13_OK_MARKER`] (1 MiB raw).
    Vga13,
}

impl TestImage {
    /// Every test image.
    pub const ALL: [TestImage; 15] = [
        TestImage::PowerOff,
        TestImage::Reset,
        TestImage::VirtioBlk,
        TestImage::Acpi,
        TestImage::PciList,
        TestImage::Crash,
        TestImage::VirtioMsix,
        TestImage::VirtioBench,
        TestImage::QxlNative,
        TestImage::Ac97Play,
        TestImage::VirtioInput,
        TestImage::Vdagent,
        TestImage::Ac97Record,
        TestImage::XhciStorage,
        TestImage::Vga13,
    ];

    /// The raw disk image.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            TestImage::PowerOff => POWEROFF,
            TestImage::Reset => RESET,
            TestImage::VirtioBlk => VIRTIO_BLK,
            TestImage::Acpi => ACPI,
            TestImage::PciList => PCI_LIST,
            TestImage::Crash => CRASH,
            TestImage::VirtioMsix => VIRTIO_MSIX,
            TestImage::QxlNative => QXL_NATIVE,
            TestImage::VirtioBench => VIRTIO_BENCH,
            TestImage::Ac97Play => AC97_PLAY,
            TestImage::VirtioInput => VIRTIO_INPUT,
            TestImage::Vdagent => VDAGENT,
            TestImage::Ac97Record => AC97_RECORD,
            TestImage::XhciStorage => XHCI_STORAGE,
            TestImage::Vga13 => VGA13,
        }
    }

    /// For a Rust guest, its ELF (symbols and line tables for the RIP in an
    /// exception line: `addr2line -e <name>.elf -f <rip>`).
    pub fn elf(self) -> Option<&'static [u8]> {
        match self {
            TestImage::PciList => Some(PCI_LIST_ELF),
            TestImage::Crash => Some(CRASH_ELF),
            TestImage::VirtioMsix => Some(VIRTIO_MSIX_ELF),
            TestImage::QxlNative => Some(QXL_NATIVE_ELF),
            TestImage::VirtioBench => Some(VIRTIO_BENCH_ELF),
            TestImage::Ac97Play => Some(AC97_PLAY_ELF),
            TestImage::VirtioInput => Some(VIRTIO_INPUT_ELF),
            TestImage::Vdagent => Some(VDAGENT_ELF),
            TestImage::Ac97Record => Some(AC97_RECORD_ELF),
            TestImage::XhciStorage => Some(XHCI_STORAGE_ELF),
            TestImage::Vga13 => Some(VGA13_ELF),
            _ => None,
        }
    }

    /// Short name, usable in file names.
    pub fn name(self) -> &'static str {
        match self {
            TestImage::PowerOff => "poweroff",
            TestImage::Reset => "reset",
            TestImage::VirtioBlk => "virtio-blk",
            TestImage::Acpi => "acpi",
            TestImage::PciList => "pci-list",
            TestImage::Crash => "crash",
            TestImage::VirtioMsix => "virtio-msix",
            TestImage::QxlNative => "qxl-native",
            TestImage::VirtioBench => "virtio-bench",
            TestImage::Ac97Play => "ac97-play",
            TestImage::VirtioInput => "virtio-input",
            TestImage::Vdagent => "vdagent",
            TestImage::Ac97Record => "ac97-record",
            TestImage::XhciStorage => "xhci-storage",
            TestImage::Vga13 => "vga13",
        }
    }

    /// The line the guest prints when its test passed, just before it powers
    /// off ([`TestImage::Crash`], which only fails: the line saying it waits
    /// for its key).
    pub fn success_marker(self) -> &'static str {
        match self {
            TestImage::PowerOff => POWEROFF_TEST_MARKER,
            TestImage::Reset => RESET_DONE_MARKER,
            TestImage::VirtioBlk => VIRTIO_OK_MARKER,
            TestImage::Acpi => ACPI_OK_MARKER,
            TestImage::PciList => PCI_LIST_OK_MARKER,
            TestImage::Crash => CRASH_READY_MARKER,
            TestImage::VirtioMsix => VIRTIO_MSIX_OK_MARKER,
            TestImage::QxlNative => QXL_NATIVE_OK_MARKER,
            TestImage::VirtioBench => VIRTIO_BENCH_OK_MARKER,
            TestImage::Ac97Play => AC97_PLAY_OK_MARKER,
            TestImage::VirtioInput => VIRTIO_INPUT_OK_MARKER,
            TestImage::Vdagent => VDAGENT_OK_MARKER,
            TestImage::Ac97Record => AC97_RECORD_OK_MARKER,
            TestImage::XhciStorage => XHCI_STORAGE_OK_MARKER,
            TestImage::Vga13 => VGA13_OK_MARKER,
        }
    }
}

/// Error from [`write_image`].
#[derive(Debug, thiserror::Error)]
#[error("writing disk image {path}: {source}")]
pub struct ImageError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes `bytes` (an image from this crate) to `path`, replacing any file
/// there. The data goes to a temporary file in the same directory that is
/// renamed into place, so a VM never sees a half-written disk. Guests write
/// to their disk, so give each run a fresh copy.
pub fn write_image(bytes: &[u8], path: impl AsRef<Path>) -> Result<(), ImageError> {
    let path = path.as_ref();
    let error = |source| ImageError {
        path: path.to_owned(),
        source,
    };
    let mut temp_name = path.file_name().unwrap_or_default().to_owned();
    temp_name.push(format!(".tmp{}", std::process::id()));
    let temp = path.with_file_name(temp_name);

    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&temp);
        return Err(error(source));
    }
    tracing::debug!(path = %path.display(), len = bytes.len(), "wrote disk image");
    Ok(())
}

#[cfg(test)]
#[path = "../build/nested_cargo.rs"]
#[allow(dead_code)]
mod nested_cargo;

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn all_images() -> Vec<(&'static str, &'static [u8])> {
        let mut images = vec![("demo", demo_disk())];
        images.extend(
            TestImage::ALL
                .iter()
                .map(|image| (image.name(), image.bytes())),
        );
        images
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    }

    #[test]
    fn every_image_is_a_bootable_whole_disk() {
        for (name, bytes) in all_images() {
            assert_eq!(&bytes[510..512], &[0x55, 0xAA], "{name}: boot signature");
            assert!(bytes.len() >= MIB, "{name}: {} bytes", bytes.len());
            assert_eq!(bytes.len() % SECTOR_SIZE, 0, "{name}: not whole sectors");
            // The boot sector starts with code (CLI), not a BPB or zeros.
            assert_eq!(bytes[0], 0xFA, "{name}: first instruction");
        }
    }

    #[test]
    fn markers_are_in_the_images() {
        let demo = demo_disk();
        for marker in [DEMO_BANNER, DEMO_READY_MARKER, DEMO_POWEROFF_MARKER] {
            assert!(contains(demo, marker), "demo lacks {marker:?}");
        }
        assert!(contains(TestImage::PowerOff.bytes(), POWEROFF_TEST_MARKER));

        let reset = TestImage::Reset.bytes();
        for marker in [RESET_BOOT_MARKER_PREFIX, RESET_DONE_MARKER] {
            assert!(contains(reset, marker), "reset lacks {marker:?}");
        }
        for method in ["cf9", "i8042"] {
            assert!(contains(
                reset,
                &format!("{RESET_FAIL_MARKER_PREFIX}{method}")
            ));
        }

        let virtio = TestImage::VirtioBlk.bytes();
        for marker in [
            VIRTIO_OK_MARKER,
            VIRTIO_FAIL_MARKER_PREFIX,
            VIRTIO_WRITE_PREFIX,
        ] {
            assert!(contains(virtio, marker), "virtio-blk lacks {marker:?}");
        }

        let acpi = TestImage::Acpi.bytes();
        for marker in [
            ACPI_TABLES_MARKER.trim_end(),
            ACPI_READY_MARKER,
            ACPI_PWRBTN_MARKER,
            ACPI_OK_MARKER,
            ACPI_FAIL_MARKER_PREFIX,
        ] {
            assert!(contains(acpi, marker), "acpi lacks {marker:?}");
        }

        for (name, bytes) in all_images() {
            assert!(
                contains(bytes, FAIL_MARKER_PREFIX),
                "{name} lacks the fail marker"
            );
            // A Rust guest builds its markers at run time from its name.
            let marker = match name {
                "pci-list" => "PCI-LIST",
                "virtio-msix" => "VIRTIO-MSIX",
                "qxl-native" => "QXL-NATIVE",
                "virtio-bench" => "VIRTIO-BENCH",
                "ac97-play" => "AC97-PLAY",
                "virtio-input" => "VIRTIO-INPUT",
                "vdagent" => "VDAGENT",
                "ac97-record" => "AC97-RECORD",
                "xhci-storage" => "XHCI-STORAGE",
                "vga13" => "VGA13",
                _ => success_marker_of(name),
            };
            assert!(contains(bytes, marker), "{name} lacks {marker:?}");
        }
    }

    /// Loader in the first sectors, the guest's header at
    /// RUST_GUEST_PAYLOAD_LBA, the ELF alongside.
    #[test]
    fn rust_guest_layout() {
        let at = RUST_GUEST_PAYLOAD_LBA as usize * SECTOR_SIZE;
        for image in [TestImage::PciList, TestImage::Crash] {
            let bytes = image.bytes();
            let name = image.name();
            assert!(contains(&bytes[..at], "SPICEBOX-FAIL loader "), "{name}");
            assert_eq!(&bytes[at..at + 8], b"SPBXRTG1", "{name}: header");
            let load = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
            assert_eq!(load, 0x10_0000, "{name}: load address");
            let elf = image.elf().unwrap();
            assert_eq!(&elf[..4], b"\x7fELF", "{name}: ELF");
        }
        assert!(TestImage::VirtioBlk.elf().is_none());
    }

    /// The guests' workspace is not part of the main one, so the main
    /// `cargo fmt` / `cargo clippy` do not see it: check it here.
    #[test]
    fn rust_guests_pass_rustfmt_and_clippy() {
        let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let fmt = std::process::Command::new(cargo)
            .current_dir(&guests)
            .args(["fmt", "--all", "--", "--check"])
            .output()
            .expect("run cargo fmt");
        assert!(
            fmt.status.success(),
            "run `cargo fmt` in {}:\n{}",
            guests.display(),
            String::from_utf8_lossy(&fmt.stdout)
        );
        let target = Path::new(env!("OUT_DIR")).join("guests-clippy");
        let clippy = nested_cargo::nested_cargo(&guests, &target, "clippy")
            .args(["--", "-D", "warnings"])
            .output()
            .expect("run cargo clippy");
        assert!(
            clippy.status.success(),
            "clippy on {}:\n{}",
            guests.display(),
            String::from_utf8_lossy(&clippy.stderr)
        );
    }

    #[test]
    fn rust_guest_exception_line_parses() {
        let serial = "crash: writing to 0x10\r\nSPICEBOX-CRASH-FAIL exception 0e \
            rip=0000000000100123 err=00000006 cr2=0000000000000010 \
            rsp=000000000008ffa8 cs=003b rflags=00010246\r\n";
        assert_eq!(
            RustGuestException::parse(serial, CRASH_EXCEPTION_PREFIX),
            Some(RustGuestException {
                vector: 0x0e,
                rip: 0x100123,
                error_code: 6,
                cr2: 0x10,
                rsp: 0x8ffa8,
                cs: 0x3b,
                rflags: 0x10246,
            })
        );
        // Incomplete line: not yet.
        let cut = &serial[..serial.len() - 2];
        assert_eq!(RustGuestException::parse(cut, CRASH_EXCEPTION_PREFIX), None);
        assert_eq!(
            RustGuestException::parse(serial, "SPICEBOX-X-FAIL exception "),
            None
        );
    }

    fn success_marker_of(name: &str) -> &'static str {
        match name {
            "demo" => DEMO_POWEROFF_MARKER,
            other => TestImage::ALL
                .into_iter()
                .find(|image| image.name() == other)
                .map(TestImage::success_marker)
                .unwrap(),
        }
    }

    #[test]
    fn bench_disk_sectors_carry_their_numbers() {
        let disk = virtio_bench_disk(17 * MIB);
        assert_eq!(disk.len(), 17 * MIB);
        let bench = TestImage::VirtioBench.bytes();
        assert_eq!(&disk[..bench.len()], bench);
        let start = VIRTIO_BENCH_DATA_START as usize;
        assert!(disk[bench.len()..start].iter().all(|&b| b == 0));
        for sector in [start / SECTOR_SIZE, 17 * MIB / SECTOR_SIZE - 1] {
            let at = sector * SECTOR_SIZE;
            assert_eq!(disk[at..at + 8], (sector as u64).to_le_bytes());
            assert!(disk[at + 8..at + SECTOR_SIZE].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn virtio_image_leaves_the_test_sector_blank() {
        // A host test can only tell that the guest wrote the sector if the
        // image does not already hold the pattern there.
        let bytes = TestImage::VirtioBlk.bytes();
        let offset = VIRTIO_TEST_SECTOR as usize * SECTOR_SIZE;
        assert!(bytes.len() >= 2 * MIB);
        assert!(bytes[offset..offset + SECTOR_SIZE].iter().all(|&b| b == 0));
    }

    #[test]
    fn virtio_expected_sector_layout() {
        let sector = virtio_expected_sector();
        assert!(sector.starts_with(VIRTIO_WRITE_PREFIX.as_bytes()));
        assert_eq!(
            sector[VIRTIO_WRITE_PREFIX.len()],
            VIRTIO_WRITE_PREFIX.len() as u8
        );
        assert_eq!(sector[256], 0);
        assert_eq!(sector[511], 0xFF);
    }

    fn le_u16(bytes: &[u8], offset: usize) -> u16 {
        u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap())
    }

    fn le_u32(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
    }

    fn le_u64(bytes: &[u8], offset: usize) -> u64 {
        u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
    }

    /// The setup header fields a 64-bit boot loader relies on, at their
    /// offsets in Documentation/arch/x86/boot.rst.
    #[test]
    fn linux_stub_setup_header() {
        let k = linux_stub();
        let setup_sects = usize::from(k[0x1F1]);
        assert!(setup_sects >= 1, "0 means 4 to loaders");
        let setup_len = (setup_sects + 1) * 512;
        let pm_len = k.len() - setup_len;

        assert_eq!(le_u16(k, 0x1FE), 0xAA55, "boot_flag");
        assert_eq!(k[0x200], 0xEB, "two-byte jump over the header");
        assert_eq!(&k[0x202..0x206], b"HdrS");
        assert!(le_u16(k, 0x206) >= 0x020C, "version with xloadflags");
        assert_eq!(k[0x211] & 0x01, 0x01, "loadflags LOADED_HIGH");
        assert_eq!(
            u64::from(le_u32(k, 0x214)),
            LINUX_STUB_LOAD_ADDR,
            "code32_start"
        );
        assert!(le_u32(k, 0x22C) >= 0x3000_0000, "initrd_addr_max");
        assert_eq!(k[0x234], 1, "relocatable_kernel");
        assert_eq!(le_u16(k, 0x236) & 0x1, 0x1, "xloadflags XLF_KERNEL_64");
        assert!(le_u32(k, 0x238) >= 255, "cmdline_size");
        assert_eq!(le_u64(k, 0x258), LINUX_STUB_LOAD_ADDR, "pref_address");

        let syssize = le_u32(k, 0x1F4) as usize;
        assert_eq!(syssize, pm_len.div_ceil(16), "syssize in paragraphs");
        let init_size = le_u32(k, 0x260) as usize;
        assert!(
            init_size >= pm_len,
            "init_size {init_size:#x} < {pm_len:#x}"
        );

        let version = 0x200 + usize::from(le_u16(k, 0x20E));
        assert!(k[version..].starts_with(b"spicebox linux-stub\0"));

        // Code (CLI) at every entry: 16-bit behind the jump at 0x200, 32-bit
        // at the start of the protected-mode part, 64-bit 0x200 into it.
        let entry16 = 0x202 + usize::from(k[0x201]);
        assert!(entry16 >= 0x268, "the jump clears the header");
        for entry in [entry16, setup_len, setup_len + 0x200] {
            assert_eq!(k[entry], 0xFA, "CLI at {entry:#x}");
        }
        assert!(contains(&k[setup_len..], LINUX_STUB_MARKER));
        // The 16- and 32-bit entries report that they are not implemented.
        for bits in ["16", "32"] {
            let fail = format!("{FAIL_MARKER_PREFIX}linux-stub-entry{bits}");
            assert!(contains(k, &fail), "{fail:?}");
        }
    }

    /// The loader spicebox uses accepts the stub and puts the 64-bit entry
    /// where the firmware crate will jump.
    #[test]
    fn linux_loader_loads_linux_stub() {
        use linux_loader::loader::{BzImage, KernelLoader};
        use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 * MIB)]).unwrap();
        let load = GuestAddress(LINUX_STUB_LOAD_ADDR);
        let result = BzImage::load(
            &mem,
            Some(load),
            &mut std::io::Cursor::new(linux_stub()),
            Some(load),
        )
        .unwrap();
        let hdr = result.setup_header.unwrap();
        assert_eq!(result.kernel_load, load);
        assert!(result.kernel_end > LINUX_STUB_LOAD_ADDR + 0x200);
        assert_eq!({ hdr.xloadflags } & 1, 1);
        let entry: u8 = mem
            .read_obj(GuestAddress(LINUX_STUB_LOAD_ADDR + 0x200))
            .unwrap();
        assert_eq!(entry, 0xFA, "CLI at the 64-bit entry");
    }

    #[test]
    fn linux_stub_is_small() {
        // Tiny is the point: every instruction of it is emulated.
        assert!(linux_stub().len() <= 4096, "{} bytes", linux_stub().len());
    }

    #[test]
    fn acpi_report_parses_the_line() {
        let line = "x\r\nSPICEBOX-ACPI-TABLES rsdp=000F5A40 revision=00000002 rsdt=3FFFFF00 \
            xsdt=3FFFFF40 lapics=00000002 ioapic=FEC00000 pm1a_evt=00000600 \
            pm1a_cnt=00000604 sci=00000009 sci_flags=0000000D smi_cmd=00000000 s5=00000000\r\n";
        let r = AcpiReport::parse(line).unwrap();
        assert_eq!((r.rsdp, r.revision, r.lapics), (0xF5A40, 2, 2));
        assert_eq!(
            (r.pm1a_evt, r.pm1a_cnt, r.sci, r.sci_flags),
            (0x600, 0x604, 9, 0xD)
        );
        assert_eq!(
            (r.ioapic, r.smi_cmd, r.s5, r.xsdt),
            (0xFEC0_0000, 0, 0, 0x3FFF_FF40)
        );
        assert_eq!(AcpiReport::parse(&line[..line.len() - 2]), None);
        assert_eq!(AcpiReport::parse(&line.replace(" s5=00000000", "")), None);
    }

    #[test]
    fn linux_stub_report_parses_the_line() {
        let serial = "noise\r\nSPICEBOX-LINUX-STUB console=ttyS0 a e820=b e820=7 initrd=0x3039 \
                      rsdp=0xe0000 rsdp_ok=1\r\n";
        assert_eq!(
            LinuxStubReport::parse(serial),
            Some(LinuxStubReport {
                cmdline: "console=ttyS0 a e820=b".into(),
                e820_entries: 7,
                initrd_size: 0x3039,
                acpi_rsdp_addr: 0xe0000,
                rsdp_valid: true,
            })
        );
        // Incomplete line: not yet.
        assert_eq!(LinuxStubReport::parse(&serial[..serial.len() - 2]), None);
        let empty = "SPICEBOX-LINUX-STUB  e820=3 initrd=0x0 rsdp=0x0 rsdp_ok=0\r\n";
        let r = LinuxStubReport::parse(empty).unwrap();
        assert_eq!(
            (r.cmdline.as_str(), r.acpi_rsdp_addr, r.rsdp_valid),
            ("", 0, false)
        );
    }

    #[test]
    fn write_image_round_trip() {
        let dir = std::env::temp_dir().join(format!("spicebox-images-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("poweroff.img");
        write_image(b"old contents", &path).unwrap();
        write_image(TestImage::PowerOff.bytes(), &path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), TestImage::PowerOff.bytes());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "temporary file left behind"
        );

        let err = write_image(b"x", dir.join("missing-dir").join("x.img")).unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
