//! End-to-end: the Linux test guest (`images::linux_guest`: Linux 6.1 built
//! from Debian's source with the host-quirk patches, busybox `/init`) booted
//! directly (`--kernel`/`--initrd`, QEMU's `-kernel` PVH entry) on QEMU and on
//! spicebox with the same devices, in the same test. `/init` reports what the
//! stock drivers found; every driver QEMU's kernel binds must bind on spicebox
//! too. The first run on a machine builds the kernel (minutes; cached under
//! target/linux-guest).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use images::linux_guest::{
    linux_guest, LinuxGuest, LINUX_GUEST_FBPAGE_BANDS, LINUX_GUEST_FBPAGE_BAND_ROWS,
    LINUX_GUEST_FBPAGE_DONE, LINUX_GUEST_HOLD_WAITING, LINUX_GUEST_HOST_SWITCHES,
    LINUX_GUEST_INIT_MARKER, LINUX_GUEST_INPUT_DONE, LINUX_GUEST_INPUT_READY, LINUX_GUEST_LINE,
    LINUX_GUEST_POWEROFF, LINUX_GUEST_REPORT_DONE, LINUX_GUEST_USBDISK_DONE,
    LINUX_GUEST_VPORT_DONE, LINUX_GUEST_VPORT_SENT, LINUX_GUEST_VPORT_WAITING,
    LINUX_GUEST_WAV_DONE, LINUX_GUEST_WAV_HZ, LINUX_GUEST_WAV_WAITING,
};
use serde_json::{json, Value};
use spice::client::decode::ServerMsg;
use spice::client::{ClientOptions, ClientState, TestClient};
use spice::proto::main_msgc;
use spice::Listen;
use spicebox_tests::audio::{dominant, recorder};
use spicebox_tests::qmp::Qmp;
use spicebox_tests::screen::{self, Frame};
use spicebox_tests::tools::{free_port, require_tool, run_timeout, spicy_screenshot};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

#[path = "linux_guest/usb_stick.rs"]
mod usb_stick;
use usb_stick::{UsbStick, USBDISK_LBA};

/// Measured ~2-2.5 min to /init on these hosts (kernel code is emulated);
/// the margin is for a loaded machine.
const BOOT: Duration = Duration::from_secs(480);
/// After the report: the actions and the power-off.
const AFTER_REPORT: Duration = Duration::from_secs(300);
const MEMORY: &str = "256M";
/// One step of a SPICE client's conversation with the guest.
const STEP: Duration = Duration::from_secs(60);
/// The agent message type the test's client answers the guest with.
const ANNOUNCE_CAPABILITIES: u32 = 6;
/// Seconds of the wav action's tone the SPICE client records (after 2 s to
/// settle; /init plays 10).
const RECORD_SECONDS: &str = "4";
/// The disk the guest checksums (blkread action): small, since the guest
/// kernel copies every byte at emulated speed.
const DISK_SIZE: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vmm {
    Qemu,
    Spicebox,
}

impl Vmm {
    fn name(self) -> &'static str {
        match self {
            Vmm::Qemu => "qemu",
            Vmm::Spicebox => "spicebox",
        }
    }
}

fn cmdline(actions: &str) -> String {
    format!("console=ttyS0 {LINUX_GUEST_HOST_SWITCHES} spicebox.actions={actions}")
}

fn start(
    vmm: Vmm,
    guest: &LinuxGuest,
    disk: &Path,
    qmp: &Path,
    port: u16,
    qemu_usbredir_port: u16,
    actions: &str,
) -> SpiceboxVm {
    let kernel = guest.vmlinux.to_str().unwrap();
    let initrd = guest.initramfs.to_str().unwrap();
    let append = cmdline(actions);
    match vmm {
        Vmm::Qemu => {
            require_tool("qemu-system-x86_64", "qemu-system-x86");
            let mut cmd = Command::new("qemu-system-x86_64");
            cmd.args(["-enable-kvm", "-machine", "pc", "-m", MEMORY, "-nodefaults"])
                .args(["-vga", "qxl", "-display", "none", "-serial", "stdio"])
                // acpi=noirq: QEMU's DSDT builds _PRT with a 128-turn AML While
                // loop that hits ACPICA's 30 s loop timeout at this host's emulated
                // speed, once per PCI function with an INTx pin (seven here: ~300 s
                // of boot), and then fails anyway ("no GSI"). With it Linux routes
                // INTx through SeaBIOS's $PIR and MP tables and still takes the
                // host bridge windows from ACPI (pci=noacpi loses them: qxl's BARs
                // then fail). spicebox's _PRT is a plain package.
                .args(["-kernel", kernel, "-initrd", initrd])
                .arg("-append")
                .arg(format!("{append} acpi=noirq"))
                .arg("-drive")
                .arg(format!("file={},format=raw,if=virtio", disk.display()))
                .args(["-global", "virtio-blk-pci.disable-legacy=on", "-no-reboot"])
                // The rest of spicebox's default machine, so every driver that binds
                // there is judged against QEMU's.
                .args([
                    "-device",
                    "qemu-xhci,id=xhci",
                    "-device",
                    "AC97,audiodev=snd0",
                ])
                // The USB stick (usbdisk action): the usbredir peer on a socket.
                .arg("-chardev")
                .arg(format!(
                    "socket,id=usbredir0,host=127.0.0.1,port={qemu_usbredir_port}"
                ))
                .args(["-device", "usb-redir,chardev=usbredir0,bus=xhci.0"])
                .args(["-audiodev", "spice,id=snd0"])
                .args([
                    "-device",
                    "virtio-keyboard-pci",
                    "-device",
                    "virtio-tablet-pci",
                ])
                .args(["-device", "virtio-serial-pci,disable-legacy=on"])
                // The SPICE agent port, as spicebox always has it (vport action).
                .args(["-chardev", "spicevmc,id=vdagent,name=vdagent"])
                .args([
                    "-device",
                    "virtserialport,chardev=vdagent,name=com.redhat.spice.0",
                ])
                .arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", qmp.display()))
                .arg("-spice")
                .arg(format!("port={port},addr=127.0.0.1,disable-ticketing=on"));
            SpiceboxVm::start_command(cmd)
        }
        Vmm::Spicebox => {
            let spice = format!("127.0.0.1:{port}");
            let control = format!("unix:{}", qmp.display());
            SpiceboxVm::start(
                spicebox!(),
                &[
                    disk.to_str().unwrap(),
                    "--kernel",
                    kernel,
                    "--initrd",
                    initrd,
                    "--append",
                    &append,
                    "-m",
                    MEMORY,
                    "--spice",
                    &spice,
                    "--disable-ticketing",
                    "--control",
                    &control,
                ],
            )
        }
    }
}

/// Waits for `marker` on COM1; on a kernel panic, an emulation failure or an
/// early exit, fails at once with the log and the failing instruction.
fn wait_for(vm: &mut SpiceboxVm, vmm: Vmm, guest: &LinuxGuest, marker: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let serial = vm.serial_text();
        if serial.contains(marker) {
            return;
        }
        let stderr = vm.stderr_text();
        let died = serial.contains("Kernel panic")
            || stderr.contains("emulation failure")
            || stderr.contains("KVM internal error");
        if died || Instant::now() >= deadline {
            panic!(
                "{}: {} while waiting for {marker:?}\n{}--- serial ---\n{serial}\n--- stderr ---\n{stderr}",
                vmm.name(),
                if died { "the guest died" } else { "timed out" },
                failing_instruction(&guest.vmlinux, &stderr),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The instruction at the rip the VMM reported (spicebox: "rip=0x...",
/// QEMU's register dump: "RIP=..."), read from vmlinux, with the symbol it is
/// in: what the emulator could not run, so the next gap is found in one boot.
fn failing_instruction(vmlinux: &Path, stderr: &str) -> String {
    let rip = stderr.split(['\n', ' ']).find_map(|w| {
        let hex = w
            .strip_prefix("rip=0x")
            .or_else(|| w.strip_prefix("RIP="))?;
        u64::from_str_radix(hex.trim(), 16).ok()
    });
    let Some(rip) = rip else {
        return String::new();
    };
    let Ok(elf) = std::fs::read(vmlinux) else {
        return format!("failing rip {rip:#x} (vmlinux unreadable)\n");
    };
    let bytes = elf_bytes_at(&elf, rip, 16)
        .map(|b| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "not in vmlinux (user mode or module?)".into());
    format!(
        "failing instruction at rip {rip:#x} ({}): {bytes}\n",
        symbol_at(vmlinux, rip).unwrap_or_else(|| "?".into())
    )
}

/// `len` bytes at virtual address `addr` of a 64-bit ELF file, through its
/// PT_LOAD program headers.
fn elf_bytes_at(elf: &[u8], addr: u64, len: u64) -> Option<&[u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let (phentsize, phnum) = (usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    (0..phnum).find_map(|i| {
        let ph = phoff + i * phentsize;
        let (kind, offset, vaddr, filesz) = (
            u32_at(ph)?,
            u64_at(ph + 8)?,
            u64_at(ph + 16)?,
            u64_at(ph + 32)?,
        );
        if kind != 1 || addr < vaddr || addr >= vaddr + filesz {
            return None;
        }
        let start = usize::try_from(offset + (addr - vaddr)).ok()?;
        let end = usize::try_from(offset + filesz.min(addr - vaddr + len)).ok()?;
        elf.get(start..end)
    })
}

/// "function+0xoffset" from `nm -n` (binutils).
fn symbol_at(vmlinux: &Path, addr: u64) -> Option<String> {
    let out = Command::new("nm").arg("-n").arg(vmlinux).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut best = None;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(a), Some(_), Some(name)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        match u64::from_str_radix(a, 16) {
            Ok(a) if a <= addr => best = Some((a, name.to_string())),
            Ok(_) => break,
            Err(_) => {}
        }
    }
    best.map(|(a, name)| format!("{name}+{:#x}", addr - a))
}

/// One boot: the report, the fbcon page's screenshot and the checksum line.
struct Boot {
    serial: String,
    to_init: Duration,
    shot: Option<Frame>,
    /// Whether MAIN_INIT said the agent was connected while /init held the
    /// agent port open, and what the client received from it.
    agent_connected: bool,
    agent_rx: Vec<u8>,
    /// The usbredir peer's command-block tags, or why it failed.
    usb_tags: Result<Vec<u32>, String>,
    /// The tone a SPICE client heard: (dominant Hz, how far above the band).
    tone: (f64, f64),
}

impl Boot {
    /// The `SBX <kind> ...` lines, without the prefix and kind.
    fn lines<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = format!("{LINUX_GUEST_LINE}{kind} ");
        self.serial
            .lines()
            .filter_map(move |l| l.trim_end().strip_prefix(prefix.as_str()))
    }

    /// (type, code, value) of each event the input action reported from
    /// `device` (keyboard or tablet): struct input_event in hex, after the
    /// 16-byte timeval.
    fn input_events(&self, device: &str) -> Vec<(u16, u16, i32)> {
        let prefix = format!("input {device} ");
        self.lines("action")
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .filter_map(|hex| {
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect::<Option<_>>()?;
                let b: [u8; 24] = bytes.try_into().ok()?;
                Some((
                    u16::from_le_bytes([b[16], b[17]]),
                    u16::from_le_bytes([b[18], b[19]]),
                    i32::from_le_bytes([b[20], b[21], b[22], b[23]]),
                ))
            })
            .collect()
    }

    /// (vendor:device, driver) of every PCI function a driver bound.
    fn bound_pci_drivers(&self) -> Vec<(String, String)> {
        self.lines("pci")
            .filter_map(|l| {
                let field = |k: &str| {
                    l.split(' ')
                        .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                        .map(str::to_string)
                };
                let driver = field("driver")?;
                (driver != "-").then_some((field("id")?, driver))
            })
            .collect()
    }
}

fn boot(vmm: Vmm, guest: &LinuxGuest, disk: &Path, dir: &TempDir) -> Boot {
    let port = free_port();
    let started = Instant::now();
    let qmp = dir.join(&format!("{}.qmp", vmm.name()));
    // The USB stick is attached from the start on both: QEMU connects its
    // chardev to the peer; spicebox's SPICE session links usbredir channel 0
    // as soon as the server listens.
    let qemu_stick = (vmm == Vmm::Qemu).then(UsbStick::for_qemu);
    let mut vm = start(
        vmm,
        guest,
        disk,
        &qmp,
        port,
        qemu_stick.as_ref().map_or(0, |(_, p)| *p),
        "fbpage,blkread,usbdisk,vport,input,wav,hold",
    );
    let stick = match qemu_stick {
        Some((stick, _)) => stick,
        None => UsbStick::for_spicebox(port),
    };
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_INIT_MARKER, BOOT);
    let to_init = started.elapsed();
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_REPORT_DONE, AFTER_REPORT);
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_FBPAGE_DONE, AFTER_REPORT);
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_USBDISK_DONE, AFTER_REPORT);
    // spicebox: the agent's client below starts a new SPICE session, which
    // ends this one and detaches the stick.
    let usb_tags = stick.finish();
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_VPORT_WAITING, AFTER_REPORT);
    let (agent_connected, agent_rx) = agent_exchange(&mut vm, vmm, guest, port);
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_INPUT_READY, AFTER_REPORT);
    send_input(&qmp);
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_INPUT_DONE, STEP);
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_WAV_WAITING, AFTER_REPORT);
    let tone = listen_to_tone(&mut vm, vmm, guest, port, dir);
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_HOLD_WAITING, AFTER_REPORT);
    // The page is on the VT; give the display a refresh or two to show it.
    std::thread::sleep(Duration::from_secs(2));
    let path = dir.join(&format!("fbpage-{}.ppm", vmm.name()));
    let out = spicy_screenshot(port, None, &path);
    let shot = (out.status.success() && path.exists()).then(|| screen::load(&path));
    vm.send(b"\n");
    wait_for(&mut vm, vmm, guest, LINUX_GUEST_POWEROFF, AFTER_REPORT);
    let status = vm.wait_exit(AFTER_REPORT);
    let serial = vm.serial_text();
    assert!(
        status.success(),
        "{}: power-off must exit 0, got {status}\n--- serial ---\n{serial}\n--- stderr ---\n{}",
        vmm.name(),
        vm.stderr_text()
    );
    eprintln!("{}: /init after {to_init:.1?}", vmm.name());
    Boot {
        serial,
        to_init,
        shot,
        agent_connected,
        agent_rx,
        usb_tags,
        tone,
    }
}

/// The wav action's listener: spice-gtk's SpiceClientGLib records the
/// playback channel while /init plays its tone; returns the dominant
/// frequency of what it heard and its prominence.
fn listen_to_tone(
    vm: &mut SpiceboxVm,
    vmm: Vmm,
    guest: &LinuxGuest,
    port: u16,
    dir: &TempDir,
) -> (f64, f64) {
    let name = vmm.name();
    let pcm_path = dir.join(&format!("tone-{name}.raw"));
    let client = {
        let cmd = recorder(port, &pcm_path, RECORD_SECONDS);
        std::thread::spawn(move || run_timeout(cmd, AFTER_REPORT))
    };
    // The client connects and subscribes to playback before the tone starts.
    std::thread::sleep(Duration::from_secs(3));
    vm.send(b"\n");
    wait_for(vm, vmm, guest, LINUX_GUEST_WAV_DONE, STEP);
    let out = client.join().expect("recorder thread");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("playback "),
        "{name}: the SPICE client recorded nothing: {stdout}\n{}\n--- serial ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        vm.serial_text()
    );
    let pcm: Vec<i16> = std::fs::read(&pcm_path)
        .unwrap()
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    // Past the first second (the stream settles); SPICE playback is 48 kHz.
    dominant(&pcm[96_000.min(pcm.len())..], 48_000.0)
}

/// What the input action's /init waits for, through QMP as a user's tools
/// send it: 'a' pressed and released on the keyboard, then the tablet moved to
/// (1000, 2000) with a left click.
fn send_input(socket: &Path) {
    let mut qmp = Qmp::connect(socket, STEP);
    qmp.execute(
        "send-key",
        json!({"keys": [{"type": "qcode", "data": "a"}], "hold-time": 50}),
    );
    let ev = |kind: &str, data: Value| json!({"type": kind, "data": data});
    qmp.execute(
        "input-send-event",
        json!({"events": [
            ev("abs", json!({"axis": "x", "value": 1000})),
            ev("abs", json!({"axis": "y", "value": 2000})),
            ev("btn", json!({"down": true, "button": "left"})),
        ]}),
    );
    qmp.execute(
        "input-send-event",
        json!({"events": [ev("btn", json!({"down": false, "button": "left"}))]}),
    );
}

/// A VDAgentMessage (protocol 1) with `data`.
fn agent_message(msg_type: u32, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&msg_type.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(data);
    m
}

/// What the test's client sends the guest's agent: spice-gtk's announce
/// (request 1, one caps word).
fn client_announce() -> Vec<u8> {
    agent_message(ANNOUNCE_CAPABILITIES, &[1, 0, 0, 0, 0xff, 0, 0, 0])
}

/// Everything the agent sent the client so far, concatenated.
fn agent_bytes(s: &ClientState) -> Vec<u8> {
    s.agent
        .iter()
        .filter_map(|m| match m {
            ServerMsg::AgentData(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The vport action's other end: a SPICE client connects while /init holds
/// the agent port open, starts the agent, lets /init write its message and
/// answers it. Returns MAIN_INIT's agent_connected and what the client got.
fn agent_exchange(vm: &mut SpiceboxVm, vmm: Vmm, guest: &LinuxGuest, port: u16) -> (bool, Vec<u8>) {
    let name = vmm.name();
    let c = TestClient::connect(
        &Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
        ClientOptions {
            channels: vec![],
            ..ClientOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
    c.wait(STEP, |s| s.main_init.is_some())
        .unwrap_or_else(|e| panic!("{name}: no MAIN_INIT: {e}"));
    let connected = matches!(
        c.state().main_init,
        Some(ServerMsg::MainInit {
            agent_connected: 1,
            ..
        })
    );
    c.send_main(main_msgc::AGENT_START, &u32::MAX.to_le_bytes())
        .unwrap();
    vm.send(b"\n");
    let want = LINUX_GUEST_VPORT_SENT.len() - 8;
    // A timeout is judged by the caller from what arrived.
    let _ = c.wait(STEP, |s| agent_bytes(s).len() >= want);
    let rx = agent_bytes(&c.state());
    c.send_main(main_msgc::AGENT_DATA, &client_announce())
        .unwrap();
    wait_for(vm, vmm, guest, LINUX_GUEST_VPORT_DONE, STEP);
    assert!(
        c.state().errors.is_empty(),
        "{name}: {:?}",
        c.state().errors
    );
    c.close();
    (connected, rx)
}

/// Where each fbpage band was found: the mean row of the pixels of its
/// colour, if at least most of a band's area has it.
fn fbpage_bands(frame: &Frame) -> Result<Vec<f64>, String> {
    // fbcon's font is 16 pixels high on these modes; 60 % of the band's
    // area tolerates a narrower visible width and the text row.
    let min = u64::from(frame.width) * u64::from(LINUX_GUEST_FBPAGE_BAND_ROWS * 16) * 6 / 10;
    let mut rows = Vec::new();
    for colour in LINUX_GUEST_FBPAGE_BANDS {
        let (mut count, mut sum) = (0u64, 0u64);
        for y in 0..frame.height {
            for x in 0..frame.width {
                if frame.pixel(x, y) & 0xFF_FFFF == colour {
                    count += 1;
                    sum += u64::from(y);
                }
            }
        }
        if count < min {
            return Err(format!(
                "{count} pixels of {colour:06x} in a {}x{} screen, want >= {min}",
                frame.width, frame.height
            ));
        }
        rows.push(sum as f64 / count as f64);
    }
    if rows.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("bands out of order (mean rows {rows:?})"));
    }
    Ok(rows)
}

fn md5_of(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("md5sum output")
        .to_string()
}

fn build_guest() -> LinuxGuest {
    let guest = linux_guest().unwrap_or_else(|e| panic!("building the Linux test guest: {e}"));
    if let Some(t) = guest.built_in {
        eprintln!("Linux test guest kernel built in {t:.1?}");
    }
    guest
}

fn test_disk(dir: &TempDir, vmm: Vmm) -> PathBuf {
    let path = dir.join(&format!("disk-{}.img", vmm.name()));
    let bytes: Vec<u8> = (0..DISK_SIZE).map(|i| (i * 7 % 253) as u8).collect();
    images::write_image(&bytes, &path).unwrap();
    path
}

#[test]
fn stock_linux_drivers_bind_on_spicebox_as_on_qemu() {
    let guest = build_guest();
    let dir = TempDir::new("linux-guest");
    let qemu_disk = test_disk(&dir, Vmm::Qemu);
    let want_md5 = md5_of(&qemu_disk);
    let qemu = boot(Vmm::Qemu, &guest, &qemu_disk, &dir);
    let spicebox_disk = test_disk(&dir, Vmm::Spicebox);
    let ours = boot(Vmm::Spicebox, &guest, &spicebox_disk, &dir);

    let qemu_drivers = qemu.bound_pci_drivers();
    // The comparison proves something only if QEMU's kernel bound the drivers
    // of the devices both machines have.
    eprintln!("qemu binds: {qemu_drivers:?}");
    eprintln!("spicebox binds: {:?}", ours.bound_pci_drivers());
    for driver in ["qxl", "virtio-pci", "xhci_hcd"] {
        assert!(
            qemu_drivers.iter().any(|(_, d)| d == driver),
            "QEMU's kernel did not bind {driver}:\n{}",
            qemu.serial
        );
    }
    let ours_drivers = ours.bound_pci_drivers();
    for (id, driver) in &qemu_drivers {
        assert!(
            ours_drivers.iter().any(|(i, d)| i == id && d == driver),
            "{driver} bound to {id} on QEMU but not on spicebox (spicebox: {ours_drivers:?})\n--- spicebox serial ---\n{}",
            ours.serial
        );
    }
    // The virtio disk reads back what the host wrote, through virtio_blk.
    for boot in [&qemu, &ours] {
        let line = format!("/dev/vda md5={want_md5}");
        assert!(
            boot.lines("action").any(|l| l == format!("blkread {line}")),
            "no {line:?}:\n{}",
            boot.serial
        );
    }
    // The agent port through the stock virtio_console driver, both ways: the
    // client saw the agent connect and got /init's message (without the
    // chunk header, which the server consumes), and /init read the client's
    // answer behind the chunk header the server adds (port 1 = client).
    let mut to_guest = 1u32.to_le_bytes().to_vec();
    let answer = client_announce();
    to_guest.extend_from_slice(&(answer.len() as u32).to_le_bytes());
    to_guest.extend_from_slice(&answer);
    let to_guest_hex: String = to_guest.iter().map(|b| format!("{b:02x}")).collect();
    for (name, boot) in [("qemu", &qemu), ("spicebox", &ours)] {
        assert!(
            boot.agent_connected,
            "{name}: MAIN_INIT says no agent while /init holds com.redhat.spice.0 open\n{}",
            boot.serial
        );
        assert_eq!(
            boot.agent_rx,
            LINUX_GUEST_VPORT_SENT[8..],
            "{name}: the agent message the client received\n{}",
            boot.serial
        );
        let line = format!("vport rx={to_guest_hex}");
        assert!(
            boot.lines("action").any(|l| l == line),
            "{name}: no {line:?}:\n{}",
            boot.serial
        );
    }
    // The USB stick through the stock xhci_hcd, usb-storage and sd drivers:
    // the sector the guest read is the peer's.
    let sector: String = usb_stick::expected_sector()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let line = format!("usbdisk lba={USBDISK_LBA} data={sector}");
    for (name, boot) in [("qemu", &qemu), ("spicebox", &ours)] {
        let tags = boot
            .usb_tags
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!tags.is_empty(), "{name}: the stick saw no command");
        assert!(
            boot.lines("action").any(|l| l == line),
            "{name}: no {line:?}\n{}",
            boot.serial
        );
    }
    // The QMP input, through the stock virtio_input driver and evdev: EV_KEY
    // KEY_A down and up, EV_ABS x and y, BTN_LEFT down and up, each batch
    // closed by EV_SYN.
    let keyboard = [(1, 30, 1), (0, 0, 0), (1, 30, 0), (0, 0, 0)];
    let tablet = [
        (3, 0, 1000),
        (3, 1, 2000),
        (1, 272, 1),
        (0, 0, 0),
        (1, 272, 0),
        (0, 0, 0),
    ];
    for (name, boot) in [("qemu", &qemu), ("spicebox", &ours)] {
        assert_eq!(
            boot.input_events("keyboard"),
            keyboard,
            "{name}: virtio keyboard events\n{}",
            boot.serial
        );
        assert_eq!(
            boot.input_events("tablet"),
            tablet,
            "{name}: virtio tablet events\n{}",
            boot.serial
        );
    }
    // The tone played through the stock snd_intel8x0 driver reaches a real
    // SPICE client.
    for (name, boot) in [("qemu", &qemu), ("spicebox", &ours)] {
        let (hz, prominence) = boot.tone;
        let player: Vec<&str> = boot
            .lines("action")
            .filter(|l| l.starts_with("wav "))
            .collect();
        eprintln!("{name}: {player:?}; client heard {hz:.2} Hz ({prominence:.0}x the band)");
        assert!(
            (hz - f64::from(LINUX_GUEST_WAV_HZ)).abs() <= 2.0 && prominence > 100.0,
            "{name}: the client heard {hz:.2} Hz at {prominence:.0}x the band, want a {LINUX_GUEST_WAV_HZ} Hz tone\n{}",
            boot.serial
        );
    }
    eprintln!(
        "boot to /init: qemu {:.1?}, spicebox {:.1?}",
        qemu.to_init, ours.to_init
    );
    // The fbcon page drawn through the stock qxl driver (native mode on both
    // machines) is what spicy-screenshot shows.
    for (name, boot) in [("qemu", &qemu), ("spicebox", &ours)] {
        let shot = boot
            .shot
            .as_ref()
            .unwrap_or_else(|| panic!("spicy-screenshot of {name} failed"));
        if let Err(e) = fbpage_bands(shot) {
            panic!(
                "{name}: the fbcon page is not on the SPICE display: {e}\n--- serial ---\n{}",
                boot.serial
            );
        }
    }
}
