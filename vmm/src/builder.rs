//! From `RunArgs` to a running machine: VM, memory, firmware, devices, vCPUs.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use tracing::info;
use vm_memory::{Bytes, GuestAddress};

use devices::display::{vbe, vga};
use devices::legacy::{acpi_pm, cmos, debug_port, i8042, port92, serial};
use devices::virtio::{VirtioBlock, VirtioPciDevice};
use devices::{fw_cfg, IrqChip};

use crate::cli::{AudioKind, RunArgs, SerialSpec, SpiceSpec, VgaKind};
use crate::devices::{DeviceManager, IsaKind, Slot, FIRST_FREE_SLOT};
use crate::display::{Display, VgaPorts, VgaWindow, WindowSlot};
use crate::input::InputRouter;
use crate::linux_boot::LinuxImage;
use crate::machine::{self, ChipPowerOnState, KvmIrqChip, Machine, Outcome};
use crate::memory::{BarSlots, GuestRam};
use crate::serial_io::{self, RawTerminal, SerialBackend};
use crate::spice_link;
use crate::vcpu::Vcpu;
use devices::display::qxl::{Qxl, QxlConfig};

fn check_readable(path: &Path, what: &str) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{what} {}", path.display()))?;
    if !meta.is_file() {
        bail!("{what} {} is not a regular file", path.display());
    }
    Ok(())
}

/// The demo disk lives in the binary; give it a private file to run from.
fn demo_disk_path() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("spicebox-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("create demo disk directory")?;
    let path = dir.join("demo.img");
    images::write_image(images::demo_disk(), &path).context("write demo disk")?;
    Ok(path)
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if let Some(d) = &args.disk {
        check_readable(d, "disk image")?;
    }
    if let Some(c) = &args.control {
        c.validate(args.control_allow_remote)
            .context("control socket")?;
    }
    for (p, what) in [
        (&args.kernel, "kernel"),
        (&args.initrd, "initrd"),
        (&args.bios, "BIOS image"),
    ] {
        if let Some(p) = p {
            check_readable(p, what)?;
        }
    }
    let layout = firmware::MemoryLayout::new(args.memory)?;
    let bios = match &args.kernel {
        None => Some(firmware::seabios::load_bios(args.bios.as_deref())?),
        Some(_) => None,
    };
    // No disk: the built-in demo, unless a kernel is booted directly.
    let (disk_path, demo_dir) = match (&args.disk, &args.kernel) {
        (Some(d), _) => (Some(d.clone()), None),
        (None, Some(_)) => (None, None),
        (None, None) => {
            let p = demo_disk_path()?;
            let dir = p.parent().map(Path::to_path_buf);
            (Some(p), dir)
        }
    };
    let serial_spec = args
        .serial
        .clone()
        .unwrap_or(if serial_io::stdin_is_terminal() {
            SerialSpec::Stdio
        } else {
            SerialSpec::None
        });
    let banner = format!(
        "spicebox: booting {} ({} MiB, {} vCPU{}){}",
        match (&args.kernel, &args.disk) {
            (Some(k), _) => k.display().to_string(),
            (None, Some(d)) => d.display().to_string(),
            (None, None) => "the built-in demo".into(),
        },
        layout.ram_size() >> 20,
        args.smp,
        if args.smp == 1 { "" } else { "s" },
        if serial_spec == SerialSpec::None {
            "; serial is off (--serial stdio to see it)"
        } else {
            ""
        }
    );
    let result = boot(
        &args,
        &layout,
        bios,
        disk_path.as_deref(),
        &serial_spec,
        &banner,
    );
    if let Some(dir) = demo_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    match result? {
        Outcome::PowerOff | Outcome::Signal(_) | Outcome::Quit => Ok(()),
    }
}

fn boot(
    args: &RunArgs,
    layout: &firmware::MemoryLayout,
    bios: Option<Vec<u8>>,
    disk_path: Option<&Path>,
    serial_spec: &SerialSpec,
    banner: &str,
) -> anyhow::Result<Outcome> {
    let (events, rx) = Machine::new_channel();
    // Before any thread exists, so that every thread inherits the blocked mask.
    machine::forward_termination_signals(events.clone());
    machine::install_kick_handler()?;

    let (kvm_dev, vm) = machine::create_vm()?;
    crate::irq_routing::install(&vm)?;
    let mut ram = GuestRam::new(&vm, &layout.ram_regions())?;
    let mem = ram.mem.clone();
    let chip: Arc<dyn IrqChip> = Arc::new(KvmIrqChip(vm.clone()));
    let requests: Arc<dyn devices::VmRequests> = Arc::new(events.clone());

    let mut reset_hooks: Vec<Box<dyn machine::ResetHook>> = Vec::new();
    if let Some(bios) = &bios {
        ram.map_rom_below_4g(&vm, bios)?;
        let (addr, low) = firmware::seabios::low_copy(bios);
        mem.write_slice(low, GuestAddress(addr))
            .context("copy BIOS into low memory")?;
        reset_hooks.push(Box::new(machine::ReloadBytes {
            addr,
            bytes: low.to_vec(),
        }));
    }

    // Fixed devices, then PCI: the device manager places them (ports, slots,
    // IRQs) and describes the result for the firmware tables.
    let bar_slots = Arc::new(BarSlots::new(vm.clone(), ram.next_free_slot()));
    let mut dm = DeviceManager::new(
        &vm,
        mem.clone(),
        chip.clone(),
        requests.clone(),
        bar_slots.clone(),
    )?;
    let mut backend = SerialBackend::open(serial_spec).context("open serial backend")?;
    let serial = Arc::new(Mutex::new(serial::Serial::new(
        dm.isa_irq(4),
        std::mem::replace(&mut backend.out, Box::new(std::io::sink())),
    )));
    let com1 = IsaKind::Serial { com: 1 };
    dm.add_isa(
        com1,
        serial.clone(),
        &[(serial::COM1_BASE, serial::LEN)],
        &[4],
    )?;
    let i8042 = Arc::new(Mutex::new(i8042::I8042::new(
        dm.isa_irq(1),
        dm.isa_irq(12),
        requests.clone(),
    )));
    let ps2 = IsaKind::Ps2Controller;
    dm.add_isa_with_reset(ps2, &i8042, &[(i8042::BASE, i8042::LEN)], &[1, 12])?;
    let cmos = Arc::new(Mutex::new(cmos::Cmos::new(
        layout.below_4g(),
        layout.above_4g(),
        args.smp,
        dm.isa_irq(8),
    )));
    dm.add_isa_with_reset(IsaKind::Rtc, &cmos, &[(cmos::BASE, cmos::LEN)], &[8])?;
    let post_code = Arc::new(Mutex::new(debug_port::PostCode::new()));
    let post_ports = [(debug_port::POST_CODE_BASE, debug_port::LEN)];
    dm.add_isa(IsaKind::PostCode, post_code, &post_ports, &[])?;
    let port92 = Arc::new(Mutex::new(port92::Port92::new(requests.clone())));
    dm.add_isa_with_reset(
        IsaKind::Port92,
        &port92,
        &[(port92::BASE, port92::LEN)],
        &[],
    )?;
    let bios_log: Option<Box<dyn Write + Send>> = match &args.bios_log {
        Some(p) => Some(Box::new(
            File::create(p).with_context(|| format!("BIOS log {}", p.display()))?,
        )),
        None => None,
    };
    let debugcon = Arc::new(Mutex::new(debug_port::DebugCon::new(bios_log)));
    let debugcon_ports = [(debug_port::DEBUGCON_BASE, debug_port::LEN)];
    dm.add_isa(IsaKind::DebugCon, debugcon, &debugcon_ports, &[])?;
    let acpi_pm = Arc::new(Mutex::new(acpi_pm::AcpiPm::new(requests.clone())));
    dm.add_isa_with_reset(
        IsaKind::AcpiPm,
        &acpi_pm,
        &[(acpi_pm::BASE, acpi_pm::LEN)],
        &[],
    )?;
    let acpi_config = crate::acpi::machine_config(args.smp, *layout, args.vga == VgaKind::Qxl);
    let acpi = crate::acpi::Acpi::new(!args.no_acpi, &acpi_config, &acpi_pm, &chip)?;

    // PCI: the display, the disk.
    let mut display = None;
    if args.vga == VgaKind::Qxl {
        let rom = firmware::seabios::vga_rom(firmware::seabios::QXL_VGA_ROM)?;
        let (slot, qxl) = dm.add_pci("qxl-vga", Slot::Vga, |w| {
            Qxl::new(QxlConfig::default(), rom, w.intx)
        })?;
        display = Some(Arc::new(Display::new(
            qxl.clone(),
            bar_slots.clone(),
            usize::from(slot) << 3,
        )));
        let vga_ports = Arc::new(Mutex::new(VgaPorts(qxl.clone())));
        let vbe_len = vbe::PORT_DATA_ALT - vbe::PORT_INDEX + 1;
        let ranges = [
            (vga::PORT_BASE.into(), vga::PORT_LEN.into()),
            (vbe::PORT_INDEX.into(), vbe_len.into()),
        ];
        dm.add_isa(IsaKind::Vga, vga_ports, &ranges, &[])?;
        // Mode 13h's window becomes guest memory while the VGA allows it.
        let mapper = Arc::new(WindowSlot(bar_slots.clone()));
        qxl.lock()
            .unwrap_or_else(|e| e.into_inner())
            .vga_mut()
            .set_window_mapper(mapper)?;
        let window = Arc::new(Mutex::new(VgaWindow(qxl)));
        dm.add_legacy_mmio(window, vga::WINDOW_BASE, vga::WINDOW_LEN)?;
    }
    let mut disk_info = Vec::new();
    if let Some(path) = disk_path {
        let mut block = VirtioBlock::open(path, args.read_only)?;
        disk_info.push(crate::qmp::DiskInfo {
            file: path.display().to_string(),
            format: block.format().as_str(),
            read_only: args.read_only,
            virtual_size: block.capacity() * 512,
        });
        dm.add_pci("virtio-blk", Slot::Next, |w| {
            block.set_thread_name(&format!("virtio-blk@{:02x}", w.slot));
            VirtioPciDevice::new(block, w.mem.clone(), w.intx, w.msi)
        })?;
    }

    // USB: the xHCI controller the SPICE usbredir channels attach devices to.
    let xhci = if args.usb_redir > 0 {
        let (_, xhci) = dm.add_pci("xhci", Slot::Next, |w| {
            devices::usb::xhci::XhciPci::new(w.mem.clone(), w.intx, w.msi)
        })?;
        let handle = xhci.lock().unwrap_or_else(|e| e.into_inner()).controller();
        Some(handle)
    } else {
        None
    };

    // Sound: an AC97 card, after the disk so the boot disk keeps 00:03.0.
    let audio = audio_enabled(args)?.then(|| Arc::new(crate::audio::SpiceAudio::default()));
    if let Some(audio) = &audio {
        let backend = devices::audio::ac97::Ac97Backend {
            out: audio.clone(),
            input: audio.clone(),
        };
        dm.add_pci("ac97", Slot::Next, |w| {
            let name = format!("ac97@{:02x}", w.slot);
            devices::audio::ac97::Ac97::new(w.mem.clone(), w.intx, backend, &name)
        })?;
    }

    // Every input source (SPICE, QMP) reaches the input devices through one
    // router, which the keyboards tell about LED changes.
    let input = crate::input_devices::add(&mut dm, args.input, &i8042)?;
    let (agent, named_ports) = crate::agent::add(&mut dm, !args.no_agent, &args.spice_ports)?;

    // fw_cfg: what SeaBIOS reads about the machine (the boot disk's slot too).
    let mut fw_cfg = fw_cfg::FwCfg::new(mem.clone());
    let boot_slot = dm
        .description()
        .slot_of("virtio-blk")
        .unwrap_or(FIRST_FREE_SLOT);
    let content = firmware::FwCfgContent::for_machine(layout, args.smp as u16, boot_slot);
    for (key, data) in content.items {
        fw_cfg.add_item(key, data);
    }
    for (name, data) in content.files.into_iter().chain(acpi.fw_cfg_files()) {
        fw_cfg.add_file(&name, data)?;
    }
    let fw_cfg = Arc::new(Mutex::new(fw_cfg));
    let fw_cfg_ports = [(fw_cfg::PORT_BASE, fw_cfg::PORT_LEN)];
    dm.add_isa_with_reset(IsaKind::FwCfg, &fw_cfg, &fw_cfg_ports, &[])?;

    let pirq = dm.pirq_registers();
    // (slot, pin) of every INTx user, for the MP table of a direct kernel boot.
    let intx_pins = dm.description().intx_pins();
    let (buses, devices) = dm.finish()?;

    let mut vcpus = Vec::new();
    for id in 0..args.smp {
        vcpus.push(Vcpu::new(&kvm_dev, &vm, id, args.smp)?);
    }
    if let Some(kernel) = &args.kernel {
        let linux = LinuxImage {
            kernel: kernel.clone(),
            initrd: args.initrd.clone(),
            cmdline: args.append.clone().unwrap_or_default(),
            cpus: args.smp,
            layout: *layout,
            pirq,
            intx_pins,
            acpi: acpi.tables.clone(),
        };
        let boot = linux.load(&mem)?;
        vcpus[0].set_boot_state(&boot.cpu)?;
        reset_hooks.push(Box::new(linux));
    }
    let chip_state = ChipPowerOnState::capture(&vm)?;

    if let Some(display) = &display {
        display
            .spawn_refresher()
            .context("start the display thread")?;
    }

    let agent_port = agent.clone();
    let spice = start_spice(
        args,
        &input,
        (agent, named_ports),
        display.as_ref(),
        xhci.as_ref(),
        audio,
    )?;

    let monitor = crate::qmp::Monitor::new();
    if let Some(a) = agent_port {
        let m = monitor.clone();
        a.on_guest_open(Box::new(move |open| {
            m.vserport_change(crate::agent::PORT_ID, open)
        }));
    }
    let qmp_backend = Arc::new(crate::qmp::MachineBackend {
        events: events.clone(),
        monitor: monitor.clone(),
        input,
        name: args.name.clone(),
        disks: disk_info,
        display: display
            .clone()
            .map(|d| d as Arc<dyn crate::qmp::Screendump>),
        spice: spice
            .as_ref()
            .map(|(s, _)| s.clone() as Arc<dyn crate::qmp::SpiceControl>),
        power_button: acpi.power_button,
    });
    if let Some((s, _)) = &spice {
        crate::qmp::forward_spice_events(s.subscribe(), s.clone(), monitor.clone())
            .context("start the SPICE event thread")?;
    }
    let control = crate::qmp::ControlServer::start(
        args.control.as_ref(),
        args.control_allow_remote,
        qmp_backend,
        monitor.clone(),
    )
    .context("control socket")?;

    let _raw_terminal = (*serial_spec == SerialSpec::Stdio).then(RawTerminal::enable);
    backend.spawn_input(move |bytes| serial.lock().unwrap().enqueue_input(bytes));

    info!(
        memory_mib = layout.ram_size() >> 20,
        vcpus = args.smp,
        "starting"
    );
    // Printed once everything that can fail on bad input has succeeded.
    eprintln!("{banner}");
    if let Some((_, lines)) = &spice {
        eprintln!("{lines}");
    }
    if let Some(c) = &control {
        eprintln!("control: {}", c.description);
    }
    let m = Machine {
        vm,
        ram,
        buses,
        chip_state,
        ctl: Arc::new(crate::control::CpuControl::new(
            crate::control::RunState::Running,
        )),
        events,
        rx,
        vcpus,
        reset_hooks,
        devices,
        monitor,
    };
    let outcome = m.run();
    // Clients read the SHUTDOWN event, then the socket goes away.
    if let Some(c) = control {
        c.shutdown();
    }
    Ok(outcome?)
}

/// Whether the machine gets a sound card: `--audio`, by default when SPICE is on.
fn audio_enabled(args: &RunArgs) -> anyhow::Result<bool> {
    let spice = args.spice != SpiceSpec::None;
    match args.audio {
        None => Ok(spice),
        Some(AudioKind::None) => Ok(false),
        Some(AudioKind::Spice) if !spice => bail!("--audio spice needs SPICE (not --spice none)"),
        Some(AudioKind::Spice) => Ok(true),
    }
}

/// Start the SPICE server for `--spice` with the machine's ports (the display's
/// frames, the input router) and its transports; returns it with the lines to
/// print (the `spice://` URI, the browser page's address).
fn start_spice(
    args: &RunArgs,
    input: &Arc<InputRouter>,
    (agent, named_ports): crate::agent::SerialBridges,
    display: Option<&Arc<Display>>,
    xhci: Option<&devices::usb::xhci::XhciHandle>,
    audio: Option<Arc<crate::audio::SpiceAudio>>,
) -> anyhow::Result<Option<(Arc<spice::SpiceServer>, String)>> {
    let listen = match &args.spice {
        SpiceSpec::None => return Ok(None),
        SpiceSpec::Tcp(a) => spice::Listen::Tcp(*a),
        SpiceSpec::Unix(p) => spice::Listen::Unix(p.clone()),
    };
    let transport = spice_link::transport_config(args)?;
    let password = if transport.sasl.is_some() {
        None
    } else if args.disable_ticketing {
        if let spice::Listen::Tcp(a) = &listen {
            if !a.ip().is_loopback() && !args.spice_allow_remote {
                bail!(
                    "--disable-ticketing on {a} lets anyone who can reach it see and drive \
                     the VM; add --spice-allow-remote if that is what you want"
                );
            }
        }
        None
    } else if let Some(pw) = &args.password {
        Some(pw.clone())
    } else if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("password file {}", path.display()))?;
        let pw = text.lines().next().unwrap_or("").to_string();
        if pw.is_empty() {
            bail!("password file {} is empty", path.display());
        }
        Some(pw)
    } else {
        Some(spice_link::generate_password())
    };
    let config = spice::Config {
        listen,
        password: password.clone(),
        force_raw_images: false,
        playback_compression: args.spice_playback_compression == crate::cli::OnOff::On,
        jpeg: args.spice_jpeg.into(),
        streaming_video: args.spice_streaming_video.into(),
        transport,
    };
    let ports = spice::Ports {
        display_heads: u8::from(display.is_some()),
        input: Some(Arc::new(spice_link::SpiceInput(input.clone()))),
        agent: agent.map(|a| a as Arc<dyn spice::port::AgentPort>),
        streams: xhci
            .map(|x| {
                (0..args.usb_redir)
                    .map(|i| {
                        crate::usb_redir::UsbRedirStream::new(i, x.clone())
                            as Arc<dyn spice::port::StreamPort>
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .chain(
                named_ports
                    .into_iter()
                    .map(|p| p as Arc<dyn spice::port::StreamPort>),
            )
            .collect(),
        audio_out: audio
            .clone()
            .map(|a| a as Arc<dyn spice::port::AudioOutPort>),
        audio_in: audio.map(|a| a as Arc<dyn spice::port::AudioInPort>),
        monitors_config: display.map(|d| {
            Arc::new(spice_link::SpiceMonitors(d.clone()))
                as Arc<dyn spice::port::MonitorsConfigPort>
        }),
    };
    let server = spice::SpiceServer::start(config, ports).context("SPICE server")?;
    let server = Arc::new(server);
    if let Some(d) = display {
        d.add_frontend(Arc::new(spice_link::SpiceFrontend(server.clone())));
        d.set_cursor_sink(Arc::new(spice_link::SpiceCursor(server.clone())));
    }
    // Only a password we made up goes in the URI: one the user chose stays
    // out of the terminal scrollback.
    let shown = (args.password.is_none() && args.password_file.is_none())
        .then_some(password.as_deref())
        .flatten();
    let (listen, tls) = (server.local_addr(), server.tls_addr());
    let mut lines = format!("spice: {}", spice_link::uri(&listen, tls, shown));
    if let Some(url) = spice_link::browser_url(&listen, tls, shown, server.auth() == "sasl") {
        lines.push_str(&format!("\nbrowser: {url}"));
    }
    Ok(Some((server, lines)))
}
