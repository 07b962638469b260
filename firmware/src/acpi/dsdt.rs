//! The DSDT, in AML built with `acpi_tables::aml`:
//!
//! ```text
//! \_SB.PCI0            PNP0A03 host bridge: _CRS (bus, I/O and memory
//!                      windows of our layout), _PRT (32 slots x INTA-D)
//! \_SB.PCI0.ISA_       PIIX3 at 00:01.0; P40C = its PIRQ route registers
//!     RTC_ KBD_ MOU_ COM1 FWCF    the ISA devices the VMM says exist
//! \_SB.LNKA..LNKD      PNP0C0F link devices backed by PIRQA..D
//! \_SB.Cnnn            ACPI0007 processor devices, one per vCPU
//! \_S5_                the SLP_TYP of soft-off
//! ```
//!
//! SeaBIOS parses this table too (src/fw/dsdt_parser.c: it checks for a
//! PNP0303 keyboard before it sets up PS/2), so devices are plain `Name`d
//! objects wherever possible, which its small parser understands.

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, And, Arg, CreateDWordField, Device, EISAName, Field,
    FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, If, Interrupt, LessThan, Local,
    Method, MethodCall, Name, OpRegion, OpRegionSpace, Or, Package, PackageBuilder, Path,
    ResourceTemplate, Return, Scope, Store, IO, ZERO,
};
use acpi_tables::{Aml, AmlSink};

use super::aml_ext::InterruptChoices;
use super::{AcpiConfig, IsaDevice, OEM_ID, OEM_TABLE_ID};
use crate::layout::VGA_WINDOW_START;
use crate::{Error, Result};

/// DSDT revision 2: integers are 64 bits wide.
const DSDT_REVISION: u8 = 2;
/// PIRQ route register bit 7: routing disabled.
const PIRQ_DISABLED: u8 = 0x80;
/// `_STA` of a link: present, enabled, shown, functioning (0x0B without
/// "enabled" is 0x09).
const LINK_ENABLED: u8 = 0x0B;
const LINK_DISABLED: u8 = 0x09;
/// Byte offset of the first interrupt number in an Extended Interrupt
/// descriptor, where `_CRS` writes and `_SRS` reads the link's IRQ.
const EXT_IRQ_NUMBER: u8 = 5;
/// PCI slots on bus 0, and INTA..INTD.
const SLOTS: u32 = 32;
const PINS: u8 = 4;
/// The PIRQ route registers are four bytes.
const NUM_LINKS: usize = 4;
const LINKS: [&str; NUM_LINKS] = ["LNKA", "LNKB", "LNKC", "LNKD"];
const PIRQ_FIELDS: [&str; NUM_LINKS] = ["PRQ0", "PRQ1", "PRQ2", "PRQ3"];

/// The whole DSDT, header and checksum included.
pub fn build(cfg: &AcpiConfig) -> Result<Vec<u8>> {
    let mut aml = Vec::new();
    system_bus(cfg, &mut aml)?;
    let s5 = cfg.pm.s5_sleep_type;
    // SLP_TYPa, SLP_TYPb, reserved, reserved.
    Name::new(
        Path::new("\\_S5_"),
        &Package::new(vec![&s5, &s5, &ZERO, &ZERO]),
    )
    .to_aml_bytes(&mut aml);

    let mut dsdt = acpi_tables::sdt::Sdt::new(*b"DSDT", 36, DSDT_REVISION, OEM_ID, OEM_TABLE_ID, 1);
    dsdt.append_slice(&aml);
    Ok(dsdt.as_slice().to_vec())
}

/// `Scope(\_SB)` with the PCI root, the link devices and the processors.
fn system_bus(cfg: &AcpiConfig, sink: &mut dyn AmlSink) -> Result<()> {
    let pci0 = PciRoot::new(cfg)?;

    let pirq_fields = Field::new(
        Path::new("PCI0.ISA_.P40C"),
        FieldAccessType::Byte,
        FieldLockRule::NoLock,
        FieldUpdateRule::Preserve,
        PIRQ_FIELDS
            .iter()
            .map(|n| FieldEntry::Named(name4(n), 8))
            .collect(),
    );
    // IQST(reg): a link's _STA from its route register.
    let disabled = And::new(&ZERO, &PIRQ_DISABLED, &Arg(0));
    let ret_disabled = Return::new(&LINK_DISABLED);
    let ret_enabled = Return::new(&LINK_ENABLED);
    let if_disabled = If::new(&disabled, vec![&ret_disabled]);
    let iqst = Method::new(
        Path::new("IQST"),
        1,
        false,
        vec![&if_disabled, &ret_enabled],
    );
    // IQCR(reg): a link's _CRS, one level/high/shared interrupt (0 if disabled).
    let current = Interrupt::new(true, false, false, true, 0);
    let template = ResourceTemplate::new(vec![&current]);
    let store_template = Store::new(&Local(0), &template);
    let prri = Path::new("PRRI");
    let prri_field = CreateDWordField::new(&prri, &Local(0), &EXT_IRQ_NUMBER);
    let routed = LessThan::new(&Arg(0), &PIRQ_DISABLED);
    let store_irq = Store::new(&prri, &Arg(0));
    let if_routed = If::new(&routed, vec![&store_irq]);
    let ret_template = Return::new(&Local(0));
    // Serialized: PRRI is a named object created on every call.
    let iqcr = Method::new(
        Path::new("IQCR"),
        1,
        true,
        vec![&store_template, &prri_field, &if_routed, &ret_template],
    );

    let links: Vec<Link> = (0..NUM_LINKS)
        .map(|i| Link::new(i, &cfg.pci.link_irqs))
        .collect();
    let processors: Vec<Processor> = (0..cfg.cpus).map(Processor::new).collect();

    let mut children: Vec<&dyn Aml> = vec![&pci0, &pirq_fields, &iqst, &iqcr];
    children.extend(links.iter().map(|d| d as &dyn Aml));
    children.extend(processors.iter().map(|d| d as &dyn Aml));
    Scope::new(Path::new("\\_SB_"), children).to_aml_bytes(sink);
    Ok(())
}

fn name4(s: &str) -> [u8; 4] {
    s.as_bytes()
        .try_into()
        .expect("ACPI names are 4 characters")
}

/// `\_SB.PCI0` and what it contains. The crate's containers borrow their
/// children, so each of these owners builds its tree in `to_aml_bytes`.
struct PciRoot {
    hid: EISAName,
    crs: Vec<Box<dyn Aml>>,
    prt: PackageBuilder,
    isa: Vec<IsaObject>,
    isa_bridge_adr: u32,
    pirq_offset: u8,
}

impl PciRoot {
    fn new(cfg: &AcpiConfig) -> Result<PciRoot> {
        let layout = &cfg.layout;
        let (hole32_start, hole32_end) = layout.pci_hole32();
        let (hole64_start, hole64_end) = layout.pci_hole64();
        let crs: Vec<Box<dyn Aml>> = vec![
            Box::new(AddressSpace::new_bus_number(0u16, 0xffu16)),
            // The configuration ports the host bridge itself decodes.
            Box::new(IO::new(0xcf8, 0xcf8, 1, 8)),
            Box::new(AddressSpace::new_io(0u16, 0x0cf7u16, None)),
            Box::new(AddressSpace::new_io(0x0d00u16, 0xffffu16, None)),
            // The legacy VGA window, which PCI (the display) decodes.
            Box::new(AddressSpace::new_memory(
                AddressSpaceCacheable::Cacheable,
                true,
                VGA_WINDOW_START as u32,
                crate::layout::VGA_WINDOW_END as u32 - 1,
                None,
            )),
            Box::new(AddressSpace::new_memory(
                AddressSpaceCacheable::NotCacheable,
                true,
                hole32_start as u32,
                hole32_end as u32,
                None,
            )),
            Box::new(AddressSpace::new_memory(
                AddressSpaceCacheable::NotCacheable,
                true,
                hole64_start,
                hole64_end,
                None,
            )),
        ];
        let mut prt = PackageBuilder::new();
        for slot in 0..SLOTS {
            for pin in 0..PINS {
                // Every slot's INTA-D reach PIRQA-D swizzled: (slot + pin) mod 4
                // with pin 0-based and LNKA = PIRQA (devices/src/pci/intx.rs).
                let link = (slot as usize + usize::from(pin) + NUM_LINKS - 1) % NUM_LINKS;
                let address = slot << 16 | 0xffff;
                let link = LinkRef(link);
                let entry = Package::new(vec![&address, &pin, &link, &ZERO]);
                prt.add_element(&entry);
            }
        }
        let mut isa = Vec::new();
        for (i, d) in cfg.isa.iter().enumerate() {
            isa.push(IsaObject::new(d, i)?);
        }
        Ok(PciRoot {
            hid: EISAName::new("PNP0A03"),
            crs,
            prt,
            isa,
            isa_bridge_adr: u32::from(cfg.pci.isa_bridge_slot) << 16,
            pirq_offset: cfg.pci.pirq_route_offset,
        })
    }
}

impl Aml for PciRoot {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let r = self;
        // No _ADR: a device has a _HID or an _ADR, not both.
        let hid = Name::new(Path::new("_HID"), &r.hid);
        let uid = Name::new(Path::new("_UID"), &ZERO);
        let crs_items: Vec<&dyn Aml> = r.crs.iter().map(|b| b.as_ref()).collect();
        let crs_template = ResourceTemplate::new(crs_items);
        let crs = Name::new(Path::new("_CRS"), &crs_template);
        let prt = Name::new(Path::new("_PRT"), &r.prt);

        let isa_adr = Name::new(Path::new("_ADR"), &r.isa_bridge_adr);
        let region_len = NUM_LINKS as u8;
        let region = OpRegion::new(
            Path::new("P40C"),
            OpRegionSpace::PCIConfig,
            &r.pirq_offset,
            &region_len,
        );
        let mut isa_children: Vec<&dyn Aml> = vec![&isa_adr, &region];
        isa_children.extend(r.isa.iter().map(|d| d as &dyn Aml));
        let isa = Device::new(Path::new("ISA_"), isa_children);

        Device::new(Path::new("PCI0"), vec![&hid, &uid, &crs, &prt, &isa]).to_aml_bytes(sink);
    }
}

/// A reference to link device `LNKx` in a `_PRT` entry.
struct LinkRef(usize);

impl Aml for LinkRef {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        Path::new(&format!("\\_SB_.{}", LINKS[self.0])).to_aml_bytes(sink);
    }
}

/// One ISA device's owned parts.
struct IsaObject {
    name: &'static str,
    hid: IsaHid,
    uid: Option<u8>,
    resources: Vec<Box<dyn Aml>>,
}

enum IsaHid {
    Eisa(EISAName),
    Str(&'static str),
}

impl IsaObject {
    fn new(d: &IsaDevice, index: usize) -> Result<IsaObject> {
        // ISA interrupts: edge-triggered, active high, exclusive.
        let irq = |n: u8| -> Box<dyn Aml> {
            Box::new(Interrupt::new(true, true, false, false, n.into()))
        };
        let io = |port: u16, len: u8| -> Box<dyn Aml> { Box::new(IO::new(port, port, 1, len)) };
        let o = match *d {
            IsaDevice::Rtc { port, len, irq: n } => IsaObject {
                name: "RTC_",
                hid: IsaHid::Eisa(EISAName::new("PNP0B00")),
                uid: None,
                resources: vec![io(port, len), irq(n)],
            },
            IsaDevice::Ps2Keyboard {
                data_port,
                command_port,
                irq: n,
            } => IsaObject {
                name: "KBD_",
                hid: IsaHid::Eisa(EISAName::new("PNP0303")),
                uid: None,
                resources: vec![io(data_port, 1), io(command_port, 1), irq(n)],
            },
            IsaDevice::Ps2Mouse { irq: n } => IsaObject {
                name: "MOU_",
                hid: IsaHid::Eisa(EISAName::new("PNP0F13")),
                uid: None,
                resources: vec![irq(n)],
            },
            IsaDevice::Serial { uid, port, irq: n } => IsaObject {
                name: match uid {
                    1 => "COM1",
                    2 => "COM2",
                    3 => "COM3",
                    4 => "COM4",
                    _ => {
                        return Err(Error::Acpi(format!(
                            "serial port #{uid} of ISA device {index}"
                        )))
                    }
                },
                hid: IsaHid::Eisa(EISAName::new("PNP0501")),
                uid: Some(uid),
                resources: vec![io(port, 8), irq(n)],
            },
            IsaDevice::FwCfg { port, len } => IsaObject {
                name: "FWCF",
                hid: IsaHid::Str("QEMU0002"),
                uid: None,
                resources: vec![io(port, len)],
            },
        };
        Ok(o)
    }
}

impl Aml for IsaObject {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let o = self;
        let hid = match &o.hid {
            IsaHid::Eisa(e) => Name::new(Path::new("_HID"), e),
            IsaHid::Str(s) => Name::new(Path::new("_HID"), s),
        };
        let uid = o.uid.map(|u| Name::new(Path::new("_UID"), &u));
        let resources: Vec<&dyn Aml> = o.resources.iter().map(|b| b.as_ref()).collect();
        let template = ResourceTemplate::new(resources);
        let crs = Name::new(Path::new("_CRS"), &template);
        let mut children: Vec<&dyn Aml> = vec![&hid];
        if let Some(u) = &uid {
            children.push(u);
        }
        children.push(&crs);
        Device::new(Path::new(o.name), children).to_aml_bytes(sink);
    }
}

/// A PNP0C0F interrupt link over one PIRQ route register.
struct Link {
    name: &'static str,
    field: &'static str,
    uid: u8,
    hid: EISAName,
    choices: InterruptChoices,
}

impl Link {
    fn new(i: usize, irqs: &[u8]) -> Link {
        Link {
            name: LINKS[i],
            field: PIRQ_FIELDS[i],
            uid: i as u8,
            hid: EISAName::new("PNP0C0F"),
            choices: InterruptChoices {
                edge_triggered: false,
                active_low: false,
                shared: true,
                irqs: irqs.iter().map(|&n| n.into()).collect(),
            },
        }
    }
}

impl Aml for Link {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let l = self;
        let reg = Path::new(l.field);
        let hid = Name::new(Path::new("_HID"), &l.hid);
        let uid = Name::new(Path::new("_UID"), &l.uid);
        let prs_template = ResourceTemplate::new(vec![&l.choices]);
        let prs = Name::new(Path::new("_PRS"), &prs_template);

        let iqst = MethodCall::new(Path::new("IQST"), vec![&reg]);
        let ret_sta = Return::new(&iqst);
        let sta = Method::new(Path::new("_STA"), 0, false, vec![&ret_sta]);

        let disable = Or::new(&reg, &reg, &PIRQ_DISABLED);
        let dis = Method::new(Path::new("_DIS"), 0, false, vec![&disable]);

        let iqcr = MethodCall::new(Path::new("IQCR"), vec![&reg]);
        let ret_crs = Return::new(&iqcr);
        let crs = Method::new(Path::new("_CRS"), 0, false, vec![&ret_crs]);

        // _SRS(buffer): the IRQ the OS chose, from the descriptor it passes.
        let prri = Path::new("PRRI");
        let prri_field = CreateDWordField::new(&prri, &Arg(0), &EXT_IRQ_NUMBER);
        let store = Store::new(&reg, &prri);
        let srs = Method::new(Path::new("_SRS"), 1, false, vec![&prri_field, &store]);

        Device::new(
            Path::new(l.name),
            vec![&hid, &uid, &prs, &sta, &dis, &crs, &srs],
        )
        .to_aml_bytes(sink);
    }
}

/// An ACPI0007 processor device; `_UID` matches the MADT's processor UID.
struct Processor {
    name: String,
    uid: u8,
}

impl Processor {
    fn new(uid: u8) -> Processor {
        Processor {
            name: format!("C{uid:03X}"),
            uid,
        }
    }
}

impl Aml for Processor {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let hid = Name::new(Path::new("_HID"), &"ACPI0007");
        let uid = Name::new(Path::new("_UID"), &self.uid);
        Device::new(Path::new(&self.name), vec![&hid, &uid]).to_aml_bytes(sink);
    }
}
