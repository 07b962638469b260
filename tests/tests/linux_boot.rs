//! End-to-end: direct Linux boot (`--kernel`, `--initrd`, `--append`) of the
//! stand-in kernel from the images crate, which reports on COM1 what the
//! loader put in boot_params.

use std::time::{Duration, Instant};

use images::{
    LinuxStubReport, LINUX_STUB_E820_PREFIX, LINUX_STUB_INITRD_PREFIX, LINUX_STUB_MARKER,
    LINUX_STUB_RSDP_PREFIX,
};
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

/// No BIOS runs, so the stub prints within a second or two; the margin is
/// for a loaded machine.
const BOOT: Duration = Duration::from_secs(60);
const CMDLINE: &str = "console=ttyS0 spicebox=1";
/// An odd size, so that a loader rounding it to pages would show.
const INITRD_SIZE: usize = 12345;

#[test]
fn stub_kernel_sees_cmdline_e820_and_initrd() {
    let dir = TempDir::new("linux-stub");
    let kernel = dir.join("linux-stub.bzImage");
    images::write_image(images::linux_stub(), &kernel).expect("write kernel");
    let initrd = dir.join("initrd.img");
    let initrd_bytes: Vec<u8> = (0..INITRD_SIZE).map(|i| (i % 251) as u8).collect();
    std::fs::write(&initrd, &initrd_bytes).expect("write initrd");

    let kernel = kernel.to_string_lossy().into_owned();
    let initrd = initrd.to_string_lossy().into_owned();
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &[
            "--kernel", &kernel, "--append", CMDLINE, "--initrd", &initrd, "-m", "256M",
        ],
    );
    let report = stub_report(&mut vm);
    let status = vm.wait_exit(Duration::from_secs(20));
    let serial = vm.serial_text();
    assert!(
        status.success(),
        "power-off must exit 0, got {status}\n--- serial ---\n{serial}\n--- stderr ---\n{}",
        vm.stderr_text()
    );

    assert_eq!(report.cmdline, CMDLINE, "{serial}");
    // At least low RAM, the reserved hole below 1 MiB and RAM above it.
    assert!(report.e820_entries >= 3, "{serial}");
    assert_eq!(report.initrd_size, INITRD_SIZE as u64, "{serial}");
    // The line as a reader of the log sees it: 12345 bytes is 0x3039.
    let head = format!("{LINUX_STUB_MARKER}{CMDLINE}{LINUX_STUB_E820_PREFIX}");
    let tail = format!("{LINUX_STUB_INITRD_PREFIX}{INITRD_SIZE:x}{LINUX_STUB_RSDP_PREFIX}");
    assert!(serial.contains(&head) && serial.contains(&tail), "{serial}");
    // boot_params.acpi_rsdp_addr names the RSDP spicebox put in reserved memory.
    assert_eq!(
        report.acpi_rsdp_addr,
        firmware::acpi::DIRECT_BOOT_BASE,
        "{serial}"
    );
    assert!(report.rsdp_valid, "no valid RSDP there: {serial}");
}

/// Waits for the stub's whole line and parses it.
fn stub_report(vm: &mut SpiceboxVm) -> LinuxStubReport {
    vm.wait_for(LINUX_STUB_MARKER, BOOT);
    // The marker starts the line; the fields arrive a few bytes later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(report) = LinuxStubReport::parse(&vm.serial_text()) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "no complete stub line\n--- serial ---\n{}\n--- stderr ---\n{}",
            vm.serial_text(),
            vm.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--no-acpi`: no tables, so no RSDP address in boot_params.
#[test]
fn no_acpi_leaves_acpi_rsdp_addr_zero() {
    let dir = TempDir::new("linux-stub-noacpi");
    let kernel = dir.join("linux-stub.bzImage");
    images::write_image(images::linux_stub(), &kernel).expect("write kernel");
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &["--kernel", kernel.to_str().unwrap(), "--no-acpi"],
    );
    let report = stub_report(&mut vm);
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
    assert_eq!((report.acpi_rsdp_addr, report.rsdp_valid), (0, false));
}

/// `spicebox run disk.img --kernel …` as a user boots a kernel with its root disk:
/// the disk's INTx routing goes into the MP table (unit-tested in vmm's
/// linux_boot.rs); here the whole path must still load and enter the kernel.
#[test]
fn stub_kernel_boots_with_a_disk_attached() {
    let dir = TempDir::new("linux-stub-disk");
    let kernel = dir.join("linux-stub.bzImage");
    images::write_image(images::linux_stub(), &kernel).expect("write kernel");
    let disk = dir.join("root.img");
    images::write_image(images::TestImage::PowerOff.bytes(), &disk).expect("write disk");
    let mut vm = SpiceboxVm::start(
        spicebox!(),
        &[
            disk.to_str().unwrap(),
            "--kernel",
            kernel.to_str().unwrap(),
            "--append",
            "root=/dev/vda",
        ],
    );
    vm.wait_for(LINUX_STUB_MARKER, BOOT);
    assert!(vm.wait_exit(Duration::from_secs(20)).success());
    assert!(
        vm.serial_text().contains("root=/dev/vda"),
        "{}",
        vm.serial_text()
    );
}
