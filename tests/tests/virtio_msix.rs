//! End-to-end: virtio-blk interrupts the way Linux's virtio_pci drives them
//! (images/guests/programs/src/bin/virtio-msix.rs), on spicebox and on QEMU
//! with the same devices, in the same test: INTx through the IOAPIC while
//! MSI-X is off, then MSI-X with a vector per queue (`vp_find_vqs_msix`) —
//! a completion on its vector through the LAPIC alone, a vector past the
//! table read back as NO_VECTOR, a masked vector's PBA bit and its message
//! on unmask, the same under the function mask.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use images::TestImage;
use spicebox_tests::tools::qemu_guest;
use spicebox_tests::{spicebox, SpiceboxVm, TempDir};

const BOOT: Duration = Duration::from_secs(90);

fn qemu(disk: &Path) -> Command {
    qemu_guest(disk)
}

/// The `key=value` number in the guest's `msix ...` summary line.
fn summary(serial: &str, key: &str) -> u64 {
    let line = serial
        .lines()
        .find(|l| l.starts_with("msix "))
        .unwrap_or_else(|| panic!("no summary line:\n{serial}"));
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn virtio_blk_msix_and_intx_as_linux_drives_them_on_spicebox_and_qemu() {
    let dir = TempDir::new("virtio-msix");
    for qemu_run in [true, false] {
        let name = if qemu_run { "qemu" } else { "spicebox" };
        let disk = dir.join(&format!("virtio-msix-{name}.img"));
        images::write_image(TestImage::VirtioMsix.bytes(), &disk).unwrap();
        let mut vm = if qemu_run {
            SpiceboxVm::start_command(qemu(&disk))
        } else {
            SpiceboxVm::start(spicebox!(), &[disk.to_str().unwrap(), "-m", "512M"])
        };
        vm.wait_for(images::VIRTIO_MSIX_OK_MARKER, BOOT);
        assert!(vm.wait_exit(Duration::from_secs(20)).success(), "{name}");
        let serial = vm.serial_text();
        assert!(
            !serial.contains(images::VIRTIO_MSIX_FAIL_MARKER_PREFIX),
            "{name}:\n{serial}"
        );
        // One vector per queue plus the config vector, as QEMU sizes it.
        assert_eq!(summary(&serial, "vectors"), 2, "{name}:\n{serial}");
        assert!(summary(&serial, "intx_irqs") >= 1, "{name}");
        // The plain completion, then one each after a vector and a function unmask.
        assert_eq!(summary(&serial, "msix_irqs"), 3, "{name}:\n{serial}");
    }
}
