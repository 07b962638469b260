//! What spicebox serves to SeaBIOS through fw_cfg, as plain data. The fw_cfg
//! device in `devices` adds the signature, ID and file directory itself.
//!
//! Checked against SeaBIOS 1.16.2 (`src/fw/paravirt.c`, `src/boot.c`,
//! `src/optionroms.c`): integers are read with `romfile_loadint`, which accepts
//! any little-endian width of 1, 2, 4 or 8 bytes.

use crate::e820;
use crate::layout::MemoryLayout;

/// Legacy key: total RAM in bytes (u64). SeaBIOS itself sizes memory from
/// `etc/e820`; QEMU serves this anyway and other firmware reads it.
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
/// Legacy key: CPUs present at boot (u16).
pub const FW_CFG_NB_CPUS: u16 = 0x05;
/// Legacy key: boot menu flag (u16). SeaBIOS registers this key as the romfile
/// `etc/show-boot-menu` (size 2); nonzero shows "Press ESC for boot menu" and
/// waits `etc/boot-menu-wait` ms (default 2500) on every boot.
pub const FW_CFG_BOOT_MENU: u16 = 0x0E;
/// Legacy key: highest CPU count (u16), seen by SeaBIOS as `etc/max-cpus`.
pub const FW_CFG_MAX_CPUS: u16 = 0x0F;
/// Legacy x86 key (FW_CFG_ARCH_LOCAL + 2), seen by SeaBIOS as
/// `etc/irq0-override`: nonzero means ISA IRQ 0 reaches IOAPIC pin 2, which its
/// MP table then says (as the VMM routes it and our ACPI MADT says). QEMU
/// serves 1 whenever KVM's irqchip allows the override.
pub const FW_CFG_IRQ0_OVERRIDE: u16 = 0x8002;

/// A device SeaBIOS may boot from, named the way QEMU names it in `bootorder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDevice {
    /// A virtio-blk-pci disk on the root bus.
    VirtioBlk { slot: u8, function: u8 },
}

impl BootDevice {
    /// The OpenFirmware-style path. QEMU builds it from the host bridge
    /// (`/pci@i0cf8`), the PCI class's firmware name (virtio-blk has class
    /// 0x0100, "scsi") with `@slot[,function]` in hex, and the virtio-blk
    /// bootindex suffix `/disk@0,0`. SeaBIOS matches `/pci@i0cf8/*@SLOT` as a
    /// prefix, so the suffix is informational but kept for fidelity.
    pub fn openfirmware_path(&self) -> String {
        match *self {
            BootDevice::VirtioBlk { slot, function } => {
                let func = if function != 0 {
                    format!(",{function:x}")
                } else {
                    String::new()
                };
                format!("/pci@i0cf8/scsi@{slot:x}{func}/disk@0,0")
            }
        }
    }
}

/// Knobs for [`FwCfgContent::with_options`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootOptions {
    /// Devices in boot priority order; empty leaves SeaBIOS's default order.
    pub boot_order: Vec<BootDevice>,
    /// `Some(ms)` shows the boot menu prompt for that long; `None` skips it, which
    /// removes SeaBIOS's only unconditional boot delay.
    pub boot_menu_wait_ms: Option<u16>,
    /// I/O port for SeaBIOS's serial console (`etc/sercon-port`).
    pub serial_console: Option<u16>,
    /// Delay before retrying when nothing boots (`etc/boot-fail-wait`, SeaBIOS
    /// default 60 s); `Some(u32::MAX)` waits forever instead of rebooting.
    pub boot_fail_wait_ms: Option<u32>,
}

/// fw_cfg items (legacy numeric keys) and named files, ready to hand to the device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FwCfgContent {
    pub items: Vec<(u16, Vec<u8>)>,
    pub files: Vec<(String, Vec<u8>)>,
}

impl FwCfgContent {
    /// spicebox's machine: boot from the virtio-blk disk in `disk_slot`, no boot
    /// menu. Like QEMU, SeaBIOS's screen is not mirrored to COM1 (the guest's own
    /// serial output would otherwise appear twice once a display exists); use
    /// `with_options` with `serial_console` for a serial-only console.
    pub fn for_machine(layout: &MemoryLayout, cpus: u16, disk_slot: u8) -> FwCfgContent {
        let options = BootOptions {
            boot_order: vec![BootDevice::VirtioBlk {
                slot: disk_slot,
                function: 0,
            }],
            boot_menu_wait_ms: None,
            serial_console: None,
            boot_fail_wait_ms: None,
        };
        Self::with_options(layout, cpus, &options)
    }

    /// The content for an explicit set of options.
    pub fn with_options(layout: &MemoryLayout, cpus: u16, options: &BootOptions) -> FwCfgContent {
        let mut c = FwCfgContent::default();
        c.items
            .push((FW_CFG_RAM_SIZE, layout.ram_size().to_le_bytes().to_vec()));
        c.items.push((FW_CFG_NB_CPUS, cpus.to_le_bytes().to_vec()));
        c.items.push((FW_CFG_MAX_CPUS, cpus.to_le_bytes().to_vec()));
        c.items
            .push((FW_CFG_IRQ0_OVERRIDE, 1u32.to_le_bytes().to_vec()));
        let menu = u16::from(options.boot_menu_wait_ms.is_some());
        c.items
            .push((FW_CFG_BOOT_MENU, menu.to_le_bytes().to_vec()));

        c.add_file("etc/e820", e820::encode(&e820::firmware_table(layout)));
        if !options.boot_order.is_empty() {
            c.add_file("bootorder", bootorder(&options.boot_order));
        }
        // Only consulted when the menu is shown; QEMU stores it as a u16 too.
        if let Some(ms) = options.boot_menu_wait_ms {
            c.add_file("etc/boot-menu-wait", ms.to_le_bytes().to_vec());
        }
        if let Some(port) = options.serial_console {
            c.add_file("etc/sercon-port", port.to_le_bytes().to_vec());
        }
        if let Some(ms) = options.boot_fail_wait_ms {
            c.add_file("etc/boot-fail-wait", ms.to_le_bytes().to_vec());
        }
        c
    }

    fn add_file(&mut self, name: &str, data: Vec<u8>) {
        self.files.push((name.to_string(), data));
    }

    /// The data of legacy item `key`, if served.
    pub fn item(&self, key: u16) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, d)| d.as_slice())
    }

    /// The data of file `name`, if served.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_slice())
    }
}

/// QEMU's format: paths separated by newlines, the last one NUL-terminated
/// instead (a trailing newline would give SeaBIOS an empty last pattern).
fn bootorder(devices: &[BootDevice]) -> Vec<u8> {
    let paths: Vec<String> = devices.iter().map(BootDevice::openfirmware_path).collect();
    let mut data = paths.join("\n").into_bytes();
    data.push(0);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn machine() -> FwCfgContent {
        FwCfgContent::for_machine(&MemoryLayout::new(512 * MIB).unwrap(), 2, 3)
    }

    #[test]
    fn legacy_items() {
        let c = machine();
        assert_eq!(
            c.item(FW_CFG_RAM_SIZE),
            Some(&(512 * MIB).to_le_bytes()[..])
        );
        assert_eq!(c.item(FW_CFG_NB_CPUS), Some(&[2u8, 0][..]));
        assert_eq!(c.item(FW_CFG_MAX_CPUS), Some(&[2u8, 0][..]));
        assert_eq!(c.item(FW_CFG_BOOT_MENU), Some(&[0u8, 0][..]));
        assert_eq!(c.item(FW_CFG_IRQ0_OVERRIDE), Some(&[1u8, 0, 0, 0][..]));
    }

    #[test]
    fn e820_file_matches_firmware_table() {
        let layout = MemoryLayout::new(512 * MIB).unwrap();
        let c = FwCfgContent::for_machine(&layout, 1, 3);
        let data = c.file("etc/e820").unwrap();
        assert_eq!(data, e820::encode(&e820::firmware_table(&layout)));
        assert_eq!(data.len() % e820::ENTRY_SIZE, 0);
    }

    #[test]
    fn bootorder_names_the_disk_like_qemu() {
        let c = machine();
        assert_eq!(
            c.file("bootorder"),
            Some(&b"/pci@i0cf8/scsi@3/disk@0,0\0"[..])
        );
        let p = BootDevice::VirtioBlk {
            slot: 0x1a,
            function: 2,
        };
        assert_eq!(p.openfirmware_path(), "/pci@i0cf8/scsi@1a,2/disk@0,0");
        let two = bootorder(&[
            BootDevice::VirtioBlk {
                slot: 3,
                function: 0,
            },
            BootDevice::VirtioBlk {
                slot: 4,
                function: 0,
            },
        ]);
        assert_eq!(
            two,
            b"/pci@i0cf8/scsi@3/disk@0,0\n/pci@i0cf8/scsi@4/disk@0,0\0"
        );
    }

    #[test]
    fn no_menu_no_wait_no_serial_mirror() {
        let c = machine();
        assert_eq!(c.file("etc/boot-menu-wait"), None);
        assert_eq!(c.file("etc/sercon-port"), None);
        assert_eq!(c.file("etc/boot-fail-wait"), None);
    }

    #[test]
    fn options_are_honoured() {
        let layout = MemoryLayout::new(64 * MIB).unwrap();
        let c = FwCfgContent::with_options(
            &layout,
            4,
            &BootOptions {
                boot_order: vec![],
                boot_menu_wait_ms: Some(1500),
                serial_console: None,
                boot_fail_wait_ms: Some(5000),
            },
        );
        assert_eq!(c.item(FW_CFG_BOOT_MENU), Some(&[1u8, 0][..]));
        assert_eq!(
            c.file("etc/boot-menu-wait"),
            Some(&1500u16.to_le_bytes()[..])
        );
        assert_eq!(
            c.file("etc/boot-fail-wait"),
            Some(&5000u32.to_le_bytes()[..])
        );
        assert_eq!(c.file("bootorder"), None);
        assert_eq!(c.file("etc/sercon-port"), None);
        // Every integer file has a width romfile_loadint accepts.
        for (name, data) in &c.files {
            if name != "etc/e820" {
                assert!([1, 2, 4, 8].contains(&data.len()), "{name}");
            }
        }
    }

    #[test]
    fn file_names_fit_the_directory() {
        // fw_cfg directory entries hold 56-byte NUL-terminated names.
        for (name, _) in &machine().files {
            assert!(name.len() < 56);
        }
    }
}
