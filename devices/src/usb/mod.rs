//! USB: the device interface host controllers drive, and the xHCI controller.
//!
//! A [`UsbDevice`] is whatever sits behind a root port: an emulated device, or a
//! redirected one whose transfers travel over usbredir to a SPICE client. The
//! controller handles addressing itself (SET_ADDRESS never reaches a device, as in
//! QEMU) and hands every other transfer over as a [`UsbRequest`]. A device answers
//! at once or later; later answers wake the controller's worker through
//! the waker it is given ([`UsbDevice::set_waker`]).

pub mod redir;
pub mod xhci;

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

/// Device speed; the numbers are xHCI's Protocol Speed IDs (PORTSC 13:10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbSpeed {
    Full = 1,
    Low = 2,
    High = 3,
    Super = 4,
}

impl UsbSpeed {
    /// SuperSpeed devices attach to USB 3 root ports, others to USB 2 ports.
    pub fn is_usb3(self) -> bool {
        self == UsbSpeed::Super
    }
}

/// The 8-byte SETUP packet of a control transfer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupPacket {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

impl SetupPacket {
    pub fn from_u64(raw: u64) -> SetupPacket {
        SetupPacket {
            request_type: raw as u8,
            request: (raw >> 8) as u8,
            value: (raw >> 16) as u16,
            index: (raw >> 32) as u16,
            length: (raw >> 48) as u16,
        }
    }

    pub fn is_in(&self) -> bool {
        self.request_type & 0x80 != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    Control(SetupPacket),
    Bulk,
    Interrupt,
    /// One service interval's packet (xHCI: one isochronous TD); served when
    /// its interval comes, so a device answers at once with what it has.
    Isochronous,
}

/// One transfer for a device: `endpoint` is the USB endpoint address (bit 7 set
/// for IN). OUT transfers carry `data`; IN transfers ask for `length` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbRequest {
    pub id: u64,
    pub endpoint: u8,
    pub kind: TransferKind,
    pub data: Vec<u8>,
    pub length: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbStatus {
    Success,
    Stall,
    /// Babble, CRC, timeout: the endpoint halts with a transaction error.
    Error,
    Cancelled,
}

/// A transfer's result: IN data (at most the requested length), or for OUT the
/// number of bytes the device took in `actual`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsbCompletion {
    pub id: u64,
    pub status: UsbStatus,
    pub data: Vec<u8>,
    pub actual: u32,
}

pub trait UsbDevice: Send {
    fn speed(&self) -> UsbSpeed;

    /// Start a transfer: its completion now, or None when it comes later from
    /// `take_completions` (the device then signals `completion_fd`).
    fn submit(&mut self, request: UsbRequest) -> Option<UsbCompletion>;

    /// Completions of transfers that `submit` left pending.
    fn take_completions(&mut self) -> Vec<UsbCompletion> {
        Vec::new()
    }

    /// Forget a pending transfer (the guest stopped its endpoint); no completion
    /// for it is expected any more.
    fn cancel(&mut self, _id: u64) {}

    /// Port reset (a USB bus reset of the device).
    fn reset(&mut self) {}

    /// SET_CONFIGURATION / SET_INTERFACE go through `submit` as control
    /// transfers; this says the controller deconfigured the device (Reset
    /// Device command, detach).
    fn deconfigure(&mut self) {}

    /// The controller stopped isochronous endpoint `endpoint` (Stop Endpoint,
    /// its configuration dropped, a device reset): a stream feeding it ends.
    fn endpoint_stopped(&mut self, _endpoint: u8) {}

    /// The controller's wake-up: a device that completes transfers later writes
    /// it whenever `take_completions` has something.
    fn set_waker(&mut self, _waker: Arc<EventFd>) {}
}
