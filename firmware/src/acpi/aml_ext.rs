//! AML the `acpi_tables` crate cannot express yet, as typed objects that
//! implement its `Aml` trait (so they nest in its trees like its own types).

use acpi_tables::{Aml, AmlSink};

/// Extended Interrupt Descriptor (ACPI 6.5 §6.4.3.6) tag.
const EXTENDED_IRQ: u8 = 0x89;

/// An Extended Interrupt resource descriptor with several interrupt numbers:
/// the set a PCI link device's `_PRS` offers the OS to choose from. The
/// crate's `aml::Interrupt` carries exactly one number, which is right for a
/// `_CRS` but would turn a `_PRS` into a single forced choice.
pub struct InterruptChoices {
    pub edge_triggered: bool,
    pub active_low: bool,
    pub shared: bool,
    pub irqs: Vec<u32>,
}

impl Aml for InterruptChoices {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let count = u8::try_from(self.irqs.len()).expect("at most 255 interrupts");
        let flags = u8::from(self.shared) << 3
            | u8::from(self.active_low) << 2
            | u8::from(self.edge_triggered) << 1
            | 1; // resource consumer
        sink.byte(EXTENDED_IRQ);
        // Length of what follows the 3-byte header: flags, count, the numbers.
        sink.word(2 + 4 * u16::from(count));
        sink.byte(flags);
        sink.byte(count);
        for irq in &self.irqs {
            sink.dword(*irq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acpi_tables::aml::Interrupt;

    #[test]
    fn one_choice_encodes_like_the_crates_single_interrupt() {
        let ours = InterruptChoices {
            edge_triggered: false,
            active_low: false,
            shared: true,
            irqs: vec![10],
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ours.to_aml_bytes(&mut a);
        Interrupt::new(true, false, false, true, 10).to_aml_bytes(&mut b);
        assert_eq!(a, b);
        let three = InterruptChoices {
            irqs: vec![5, 10, 11],
            ..ours
        };
        let mut c = Vec::new();
        three.to_aml_bytes(&mut c);
        assert_eq!(&c[..5], &[0x89, 14, 0, 0x09, 3]);
        assert_eq!(c.len(), 3 + 14);
        assert_eq!(&c[13..], &11u32.to_le_bytes());
    }
}
