//! Root hub ports: PORTSC and the device behind each port.
//!
//! USB 2 ports come first (1..=USB2_PORTS), then USB 3 ports, as the Supported
//! Protocol capabilities say. A USB 2 port enables only after the guest resets it;
//! a USB 3 port enables on connect (link in U0), as real SuperSpeed ports do.

use super::super::{UsbDevice, UsbSpeed};

pub const USB2_PORTS: usize = 4;
pub const USB3_PORTS: usize = 4;
pub const PORTS: usize = USB2_PORTS + USB3_PORTS;

pub const CCS: u32 = 1 << 0;
pub const PED: u32 = 1 << 1;
pub const PR: u32 = 1 << 4;
pub const PLS_SHIFT: u32 = 5;
pub const PLS_MASK: u32 = 0xf << PLS_SHIFT;
pub const PP: u32 = 1 << 9;
pub const SPEED_SHIFT: u32 = 10;
pub const LWS: u32 = 1 << 16;
pub const CSC: u32 = 1 << 17;
pub const PEC: u32 = 1 << 18;
pub const WRC: u32 = 1 << 19;
pub const PRC: u32 = 1 << 21;
pub const PLC: u32 = 1 << 22;
/// All change bits (write 1 to clear): CSC PEC WRC OCC PRC PLC CEC.
pub const CHANGE_BITS: u32 = 0x7f << 17;
/// Wake enables (WCE WDE WOE): plain read/write.
pub const WAKE_BITS: u32 = 0x7 << 25;
pub const WPR: u32 = 1 << 31;

const PLS_U0: u32 = 0;
const PLS_DISABLED: u32 = 4;
const PLS_RXDETECT: u32 = 5;
const PLS_POLLING: u32 = 7;

pub struct Port {
    pub number: u8,
    pub usb3: bool,
    pub portsc: u32,
    pub device: Option<Box<dyn UsbDevice>>,
}

impl Port {
    pub fn new(index: usize) -> Port {
        let usb3 = index >= USB2_PORTS;
        let mut port = Port {
            number: index as u8 + 1,
            usb3,
            portsc: 0,
            device: None,
        };
        port.power_on();
        port
    }

    fn set_pls(&mut self, pls: u32) {
        self.portsc = (self.portsc & !PLS_MASK) | (pls << PLS_SHIFT);
    }

    /// Power-on state (also after HCRST); the device stays attached.
    pub fn power_on(&mut self) {
        self.portsc = PP;
        self.update_connection(false);
    }

    /// Recompute CCS/speed/link state from the device. `changed`: set CSC.
    fn update_connection(&mut self, changed: bool) {
        self.portsc &= !(CCS | PED | (0xf << SPEED_SHIFT));
        match &self.device {
            Some(dev) => {
                let speed = dev.speed() as u32;
                self.portsc |= CCS | speed << SPEED_SHIFT;
                if self.usb3 {
                    self.portsc |= PED;
                    self.set_pls(PLS_U0);
                } else {
                    self.set_pls(PLS_POLLING);
                }
            }
            None => self.set_pls(if self.usb3 {
                PLS_RXDETECT
            } else {
                PLS_DISABLED
            }),
        }
        if changed {
            self.portsc |= CSC;
        }
    }

    /// Whether a device of `speed` belongs on this port.
    pub fn fits(&self, speed: UsbSpeed) -> bool {
        self.usb3 == speed.is_usb3()
    }

    pub fn attach(&mut self, device: Box<dyn UsbDevice>) {
        self.device = Some(device);
        self.update_connection(true);
    }

    pub fn detach(&mut self) -> Option<Box<dyn UsbDevice>> {
        let dev = self.device.take();
        self.update_connection(true);
        dev
    }

    /// Port reset (PR, or WPR on USB 3): the device sees a bus reset and the port
    /// enables at once; the change bits tell the guest it is done.
    fn reset(&mut self, warm: bool) {
        if let Some(dev) = self.device.as_mut() {
            dev.reset();
            self.portsc |= PED;
            self.set_pls(PLS_U0);
        }
        self.portsc &= !PR;
        self.portsc |= PRC;
        if warm && self.usb3 {
            self.portsc |= WRC;
        }
    }

    /// A guest write to PORTSC. Returns whether a change bit was newly set (a
    /// Port Status Change event is due).
    pub fn write(&mut self, value: u32) -> bool {
        let before = self.portsc & CHANGE_BITS;
        // Change bits: write 1 to clear.
        self.portsc &= !(value & CHANGE_BITS);
        // PED: writing 1 disables the port.
        if value & PED != 0 && self.portsc & PED != 0 {
            self.portsc &= !PED;
            self.set_pls(PLS_DISABLED);
            self.portsc |= PEC;
        }
        self.portsc = (self.portsc & !WAKE_BITS) | (value & WAKE_BITS);
        if value & LWS != 0 && self.portsc & CCS != 0 {
            let pls = (value & PLS_MASK) >> PLS_SHIFT;
            // U0 and U3 (suspend) are the states drivers ask for; resume ends in U0.
            if pls == PLS_U0 || pls == 3 || pls == 15 {
                let target = if pls == 15 { PLS_U0 } else { pls };
                self.set_pls(target);
                self.portsc |= PLC;
            }
        }
        if value & WPR != 0 && self.usb3 {
            self.reset(true);
        } else if value & PR != 0 {
            self.reset(false);
        }
        self.portsc & CHANGE_BITS & !before != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usb::{UsbCompletion, UsbRequest};

    struct Dummy(UsbSpeed);
    impl UsbDevice for Dummy {
        fn speed(&self) -> UsbSpeed {
            self.0
        }
        fn submit(&mut self, _: UsbRequest) -> Option<UsbCompletion> {
            None
        }
    }

    #[test]
    fn usb2_connect_reset_enable_sequence() {
        let mut p = Port::new(0);
        assert_eq!(p.portsc, PP | PLS_DISABLED << PLS_SHIFT);
        p.attach(Box::new(Dummy(UsbSpeed::High)));
        assert_eq!(p.portsc & (CCS | CSC | PED), CCS | CSC);
        assert_eq!((p.portsc >> SPEED_SHIFT) & 0xf, 3);
        // xhci-hcd clears CSC (writing back PP and the bit), then resets the port.
        assert!(!p.write(PP | CSC));
        assert_eq!(p.portsc & CSC, 0);
        assert!(p.write(PP | PR));
        assert_eq!(p.portsc & (PED | PRC | PR), PED | PRC);
        assert_eq!(p.portsc & PLS_MASK, 0);
        p.write(PP | PRC);
        assert_eq!(p.portsc & CHANGE_BITS, 0);
        // Writing PED disables; detaching clears CCS and sets CSC.
        p.write(PP | PED);
        assert_eq!(p.portsc & (PED | PEC), PEC);
        assert!(p.detach().is_some());
        assert_eq!(p.portsc & (CCS | CSC), CSC);
    }

    #[test]
    fn usb3_port_enables_on_connect() {
        let mut p = Port::new(USB2_PORTS);
        assert!(p.usb3);
        assert!(!p.fits(UsbSpeed::High));
        p.attach(Box::new(Dummy(UsbSpeed::Super)));
        assert_eq!(p.portsc & (CCS | PED | CSC), CCS | PED | CSC);
        p.write(PP | WPR);
        assert_eq!(p.portsc & (WRC | PRC), WRC | PRC);
    }
}
