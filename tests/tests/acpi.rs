//! End-to-end: ACPI as a guest OS meets it. SeaBIOS loads spicebox's tables
//! from fw_cfg (its log says so), and the `acpi` test guest finds the RSDP,
//! walks and checksums every table, arms the power button, and sees
//! PWRBTN_STS and the SCI after QMP `system_powerdown`, then enters S5. The
//! same guest runs on `qemu-system-x86_64 -machine pc`, the reference, with
//! QEMU's own tables and QMP, and must pass there too.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use images::{
    AcpiReport, TestImage, ACPI_FAIL_NO_RSDP, ACPI_OK_MARKER, ACPI_PWRBTN_MARKER, ACPI_READY_MARKER,
};
use serde_json::json;
use spicebox_tests::qmp::Qmp;
use spicebox_tests::tools::require_tool;
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(90);
/// The guest waits 60 s for the press; the rest is a few hundred instructions.
const AFTER_PRESS: Duration = Duration::from_secs(30);
const QMP: Duration = Duration::from_secs(10);
const CPUS: u32 = 2;

fn acpi_disk(dir: &TempDir) -> std::path::PathBuf {
    let disk = dir.join("acpi.img");
    images::write_image(TestImage::Acpi.bytes(), &disk).unwrap();
    disk
}

/// Boot to READY, press the power button over QMP, and see the guest take
/// it and power off with status 0. Returns its report and its IRR byte.
fn press_power_button(mut vm: SpiceboxVm, qmp_socket: &Path, vmm: &str) -> (AcpiReport, u8) {
    vm.wait_for(ACPI_READY_MARKER, BOOT);
    let report = AcpiReport::parse(&vm.serial_text())
        .unwrap_or_else(|| panic!("{vmm}: no report line:\n{}", vm.serial_text()));
    let mut qmp = Qmp::connect(qmp_socket, QMP);
    assert_eq!(qmp.execute("system_powerdown", json!({})), json!({}));
    qmp.event("POWERDOWN");
    vm.wait_for(ACPI_OK_MARKER, AFTER_PRESS);
    let shutdown = qmp.event("SHUTDOWN");
    assert_eq!(shutdown["data"]["guest"], true, "{vmm}: {shutdown}");
    let status = vm.wait_exit(AFTER_PRESS);
    let serial = vm.serial_text();
    assert!(status.success(), "{vmm} exited {status}:\n{serial}");
    let irr = serial
        .split(ACPI_PWRBTN_MARKER)
        .nth(1)
        .and_then(|rest| rest.trim_start().strip_prefix("irr="))
        .and_then(|hex| u32::from_str_radix(&hex[..8], 16).ok())
        .unwrap_or_else(|| panic!("{vmm}: no {ACPI_PWRBTN_MARKER} line:\n{serial}"));
    (report, irr as u8)
}

#[test]
fn power_button_and_tables_on_spicebox_and_qemu() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let dir = TempDir::new("acpi");
    let disk = acpi_disk(&dir);

    // The reference: QEMU's tables, PIIX4 PM and QMP.
    let qemu_qmp = dir.join("qemu.qmp");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-enable-kvm", "-machine", "pc", "-m", "256", "-nodefaults"])
        .args(["-smp", &CPUS.to_string()])
        .args(["-display", "none", "-vga", "none", "-serial", "stdio"])
        .args(["-no-reboot", "-drive"])
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qemu_qmp.display()));
    let (theirs, their_irr) = press_power_button(SpiceboxVm::start_command(cmd), &qemu_qmp, "QEMU");

    let disk = acpi_disk(&dir);
    let qmp = dir.join("spicebox.qmp");
    let log = dir.join("bios.log");
    let vm = SpiceboxVm::start(
        spicebox!(),
        &[
            disk.to_str().unwrap(),
            "--smp",
            &CPUS.to_string(),
            "-m",
            "256M",
            "--vga",
            "none",
            "--control",
            &format!("unix:{}", qmp.display()),
            "--bios-log",
            log.to_str().unwrap(),
        ],
    );
    let (ours, our_irr) = press_power_button(vm, &qmp, "spicebox");

    // What the guest found, against what QEMU's tables say about the same
    // hardware: one LAPIC per vCPU, the IOAPIC, PM1a at 0x600, the SCI on IRQ
    // 9 level/active high (MPS flags 0xD), S5 = SLP_TYP 0.
    for r in [&ours, &theirs] {
        assert_eq!(r.lapics, CPUS, "{r:?}");
        assert_eq!(r.ioapic, firmware::layout::IOAPIC_ADDR as u32, "{r:?}");
        assert_eq!((r.pm1a_evt, r.pm1a_cnt), (0x600, 0x604), "{r:?}");
        assert_eq!((r.sci, r.sci_flags, r.s5), (9, 0xD, 0), "{r:?}");
        assert!((0xE_0000..0x10_0000).contains(&r.rsdp), "{r:?}");
    }
    // Ours: an ACPI 2.0 RSDP with both RSDT and XSDT, and no SMI_CMD since
    // the machine starts in ACPI mode.
    assert_eq!(ours.revision, 2, "{ours:?}");
    assert!(ours.rsdt != 0 && ours.xsdt != 0, "{ours:?}");
    assert_eq!(ours.smi_cmd, 0, "{ours:?}");
    // Both saw the SCI (IRQ 9: slave 8259 input 1) pending in the IRR.
    assert_eq!(our_irr & 0x02, 0x02, "spicebox IRR {our_irr:#x}");
    assert_eq!(their_irr & 0x02, 0x02, "QEMU IRR {their_irr:#x}");

    // SeaBIOS ran our table-loader and found our tables through the RSDP.
    let log = std::fs::read_to_string(&log).expect("BIOS log written");
    for needle in [
        "Moving pm_base to 0x600",
        "(via xsdt)",
        "ACPI: parse DSDT at",
        "PS2 keyboard initialized",
    ] {
        assert!(log.contains(needle), "BIOS log lacks {needle:?}:\n{log}");
    }
    assert!(!log.contains("internal error"), "{log}");
}

/// `--no-acpi`: SeaBIOS builds no tables of its own for this machine, so the
/// guest finds no RSDP, and QMP has no power button to press.
#[test]
fn no_acpi_means_no_tables_and_no_power_button() {
    let dir = TempDir::new("noacpi");
    let disk = acpi_disk(&dir);
    let qmp = dir.join("qmp.sock");
    let log = dir.join("bios.log");
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &[
            disk.to_str().unwrap(),
            "--no-acpi",
            "--vga",
            "none",
            "--control",
            &format!("unix:{}", qmp.display()),
            "--bios-log",
            log.to_str().unwrap(),
        ],
    );
    let mut q = Qmp::connect(&qmp, QMP);
    let reply = q.call("system_powerdown", json!({}));
    assert_eq!(reply["error"]["class"], "GenericError", "{reply}");
    assert!(
        reply["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("--no-acpi"),
        "{reply}"
    );
    vm.wait_for(ACPI_FAIL_NO_RSDP, BOOT);
    assert!(vm.wait_exit(AFTER_PRESS).success());
    let log = std::fs::read_to_string(&log).expect("BIOS log written");
    assert!(!log.contains("ACPI: parse DSDT"), "{log}");
    assert!(!log.contains("Moving pm_base"), "no table-loader:\n{log}");
}
