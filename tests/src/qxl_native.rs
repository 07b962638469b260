//! The qxl-native test guest booted on QEMU (`-vga qxl -spice`) or spicebox
//! with SPICE on a free port, for the tests that judge its pictures.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use images::TestImage;

use crate::tools::{free_port, qemu_guest, require_tool};
use crate::{SpiceboxVm, TempDir};

/// Boot to the guest's READY marker: it is emulated ring-0 code on this host.
const BOOT: Duration = Duration::from_secs(120);

/// How to boot: which VMM, the JPEG mode (spicebox `--spice-jpeg`, QEMU
/// `jpeg-wan-compression`; None = each one's default), the video streams
/// (spicebox `--spice-streaming-video`, QEMU `streaming-video`; None = each
/// one's default: filter on spicebox, off on QEMU), and a QMP socket if
/// one is wanted (spicebox `--control`, QEMU `-qmp`). A JPEG mode also sets
/// image compression auto_lz on both: under auto_glz spicebox sends the
/// guest's sprite, drawn again and again, as GLZ copying its earlier
/// sightings, exact and smaller than JPEG, so the lossy path these runs
/// judge would seldom be taken.
#[derive(Default)]
pub struct Boot<'a> {
    pub qemu: bool,
    pub jpeg: Option<&'a str>,
    pub streaming: Option<&'a str>,
    pub control: Option<&'a Path>,
}

/// Writes the guest's disk as `qxl-native-<name>.img` in `dir`, boots it on
/// the VMM `boot` names (`spicebox` is the binary's path) and waits until the
/// scene is drawn. Returns the VM and its SPICE port.
pub fn boot(spicebox: &str, dir: &TempDir, name: &str, boot: Boot) -> (SpiceboxVm, u16) {
    let disk = dir.join(&format!("qxl-native-{name}.img"));
    images::write_image(TestImage::QxlNative.bytes(), &disk).unwrap();
    let port = free_port();
    let mut vm = if boot.qemu {
        let mut cmd = qemu(&disk, port, &boot);
        if let Some(sock) = boot.control {
            cmd.arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", sock.display()));
        }
        SpiceboxVm::start_command(cmd)
    } else {
        let spice = format!("127.0.0.1:{port}");
        let mut args = vec![disk.to_str().unwrap(), "-m", "512M", "--spice", &spice];
        args.push("--disable-ticketing");
        if let Some(jpeg) = boot.jpeg {
            args.extend(["--spice-jpeg", jpeg, "--spice-image-compression", "auto_lz"]);
        }
        if let Some(streaming) = boot.streaming {
            args.extend(["--spice-streaming-video", streaming]);
        }
        let control = boot.control.map(|s| format!("unix:{}", s.display()));
        if let Some(control) = &control {
            args.extend(["--control", control]);
        }
        SpiceboxVm::start(spicebox, &args)
    };
    vm.wait_for(images::QXL_NATIVE_READY_MARKER, BOOT);
    (vm, port)
}

fn qemu(disk: &Path, port: u16, boot: &Boot) -> Command {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let mut spice = format!("port={port},addr=127.0.0.1,disable-ticketing=on");
    if let Some(jpeg) = boot.jpeg {
        spice += &format!(",jpeg-wan-compression={jpeg},image-compression=auto_lz");
    }
    if let Some(streaming) = boot.streaming {
        spice += &format!(",streaming-video={streaming}");
    }
    let mut cmd = qemu_guest(disk);
    cmd.args(["-spice", &spice]);
    cmd
}
