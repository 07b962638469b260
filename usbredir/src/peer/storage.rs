//! A bulk-only mass-storage device for the test peer: a high-speed USB stick
//! (interface 8/6/0x50: SCSI transparent command set over bulk-only transport)
//! with a small in-memory disk. It answers what Linux's usb-storage and sd
//! drivers send: GET_MAX_LUN, the bulk-only reset, and inside Command Block
//! Wrappers INQUIRY, TEST UNIT READY, REQUEST SENSE, READ CAPACITY(10),
//! MODE SENSE(6), READ(10) and WRITE(10).
//!
//! The guest's bytes are hostile: a CBW of the wrong length or signature, a
//! command whose direction contradicts its flags, or data that does not fit
//! the phase gets a CSW with "phase error", never a panic.

use crate::{
    ep_index, ep_type, ControlPacket, DeviceConnect, EpInfo, InterfaceInfo, Speed, Status,
};

use super::EmulatedDevice;

/// Bulk IN endpoint (data to the guest, and the CSW).
pub const STORAGE_BULK_IN: u8 = 0x81;
/// Bulk OUT endpoint (CBWs and data from the guest).
pub const STORAGE_BULK_OUT: u8 = 0x02;
pub const SECTOR_SIZE: usize = 512;
/// INQUIRY's vendor (8 bytes) and product (16 bytes) identification.
pub const STORAGE_VENDOR: &[u8; 8] = b"SPICEBOX";
pub const STORAGE_PRODUCT: &[u8; 16] = b"usbredir disk   ";

const CBW_SIGNATURE: u32 = 0x4342_5355; // "USBC"
const CSW_SIGNATURE: u32 = 0x5342_5355; // "USBS"
const CBW_LEN: usize = 31;
const CSW_PASSED: u8 = 0;
const CSW_FAILED: u8 = 1;
const CSW_PHASE_ERROR: u8 = 2;

/// SCSI sense: (key, additional sense code, qualifier).
type Sense = (u8, u8, u8);
const NO_SENSE: Sense = (0, 0, 0);
const INVALID_OPCODE: Sense = (5, 0x20, 0);
const INVALID_FIELD_IN_CDB: Sense = (5, 0x24, 0);
const LBA_OUT_OF_RANGE: Sense = (5, 0x21, 0);

/// The byte at `offset` of sector `lba` on a fresh disk: each sector starts
/// with "LBA xxxxxxxx" (hex) so a dump names itself, then a pattern that
/// differs between sectors and between offsets.
pub fn pattern_byte(lba: u32, offset: usize) -> u8 {
    if offset < 12 {
        return format!("LBA {lba:08x}").as_bytes()[offset];
    }
    (lba.wrapping_mul(31) as usize ^ offset.wrapping_mul(7) ^ (offset >> 8)) as u8
}

/// FNV-1a, 32 bits: the checksum the xhci-storage guest prints over the
/// sectors it read, so the test can compare it with the disk's.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[derive(Debug)]
enum Phase {
    /// Waiting for a CBW on the OUT endpoint.
    Command,
    /// Data for the guest; `pending` is the CSW that follows.
    DataIn { data: Vec<u8>, pending: Csw },
    /// Data from the guest to be written at `offset` of the disk.
    DataOut {
        offset: usize,
        remaining: usize,
        pending: Csw,
    },
    /// The CSW is next on the IN endpoint.
    Status(Csw),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Csw {
    tag: u32,
    residue: u32,
    status: u8,
}

impl Csw {
    fn bytes(&self) -> Vec<u8> {
        let mut b = CSW_SIGNATURE.to_le_bytes().to_vec();
        b.extend(self.tag.to_le_bytes());
        b.extend(self.residue.to_le_bytes());
        b.push(self.status);
        b
    }
}

/// A parsed Command Block Wrapper.
struct Cbw {
    tag: u32,
    transfer_length: u32,
    data_in: bool,
    cdb: [u8; 16],
}

impl Cbw {
    /// None unless `b` is exactly a 31-byte CBW with the signature, LUN 0
    /// and a CDB length of 1..=16.
    fn parse(b: &[u8]) -> Option<Cbw> {
        let b: &[u8; CBW_LEN] = b.try_into().ok()?;
        let le32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let cdb_len = usize::from(b[14] & 0x1f);
        if le32(0) != CBW_SIGNATURE || b[13] & 0x0f != 0 || !(1..=16).contains(&cdb_len) {
            return None;
        }
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(&b[15..31]);
        Some(Cbw {
            tag: le32(4),
            transfer_length: le32(8),
            data_in: b[12] & 0x80 != 0,
            cdb,
        })
    }
}

/// What a SCSI command does with the data phase.
enum Outcome {
    In(Vec<u8>),
    Out { offset: usize, len: usize },
    None,
    Check(Sense),
}

pub struct MassStorage {
    disk: Vec<u8>,
    phase: Phase,
    sense: Sense,
    /// The tags of the valid CBWs the guest sent, in order (for tests).
    pub tags: Vec<u32>,
}

impl MassStorage {
    /// A disk of `sectors` 512-byte sectors filled with [`pattern_byte`].
    pub fn new(sectors: u32) -> MassStorage {
        let disk = (0..sectors)
            .flat_map(|lba| (0..SECTOR_SIZE).map(move |o| pattern_byte(lba, o)))
            .collect();
        MassStorage {
            disk,
            phase: Phase::Command,
            sense: NO_SENSE,
            tags: Vec::new(),
        }
    }

    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    fn sectors(&self) -> u32 {
        (self.disk.len() / SECTOR_SIZE) as u32
    }

    fn inquiry(&self, cdb: &[u8; 16]) -> Outcome {
        if cdb[1] & 1 != 0 {
            // No vital product data pages.
            return Outcome::Check(INVALID_FIELD_IN_CDB);
        }
        // Direct-access, removable, SPC-2, response format 2, 31 more bytes.
        let mut d = vec![0x00, 0x80, 0x04, 0x02, 31, 0, 0, 0];
        d.extend_from_slice(STORAGE_VENDOR);
        d.extend_from_slice(STORAGE_PRODUCT);
        d.extend_from_slice(b"0001");
        d.truncate(usize::from(u16::from_be_bytes([cdb[3], cdb[4]])));
        Outcome::In(d)
    }

    /// The sector range of READ(10)/WRITE(10) as a byte range of the disk.
    fn range10(&self, cdb: &[u8; 16]) -> Result<(usize, usize), Sense> {
        let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]);
        let count = u32::from(u16::from_be_bytes([cdb[7], cdb[8]]));
        match lba.checked_add(count) {
            Some(end) if end <= self.sectors() => {
                Ok((lba as usize * SECTOR_SIZE, count as usize * SECTOR_SIZE))
            }
            _ => Err(LBA_OUT_OF_RANGE),
        }
    }

    fn scsi(&mut self, cdb: &[u8; 16]) -> Outcome {
        match cdb[0] {
            0x00 => Outcome::None, // TEST UNIT READY
            0x03 => {
                // REQUEST SENSE: fixed format, then the sense is cleared.
                let (key, asc, ascq) = std::mem::replace(&mut self.sense, NO_SENSE);
                let mut d = vec![
                    0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0,
                ];
                d.truncate(usize::from(cdb[4]));
                Outcome::In(d)
            }
            0x12 => self.inquiry(cdb),
            0x1a => {
                // MODE SENSE(6): a header with no pages, not write-protected.
                let mut d = vec![3, 0, 0, 0];
                d.truncate(usize::from(cdb[4]));
                Outcome::In(d)
            }
            0x1e => Outcome::None, // PREVENT ALLOW MEDIUM REMOVAL
            0x25 => {
                let mut d = (self.sectors().saturating_sub(1)).to_be_bytes().to_vec();
                d.extend((SECTOR_SIZE as u32).to_be_bytes());
                Outcome::In(d)
            }
            0x28 => match self.range10(cdb) {
                Ok((offset, len)) => Outcome::In(self.disk[offset..offset + len].to_vec()),
                Err(sense) => Outcome::Check(sense),
            },
            0x2a => match self.range10(cdb) {
                Ok((offset, len)) => Outcome::Out { offset, len },
                Err(sense) => Outcome::Check(sense),
            },
            _ => Outcome::Check(INVALID_OPCODE),
        }
    }

    /// A CBW arrived: run it and choose the next phase.
    fn command(&mut self, bytes: &[u8]) {
        let Some(cbw) = Cbw::parse(bytes) else {
            let tag = bytes
                .get(4..8)
                .map_or(0, |t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
            self.phase = Phase::Status(Csw {
                tag,
                residue: 0,
                status: CSW_PHASE_ERROR,
            });
            return;
        };
        self.tags.push(cbw.tag);
        let expected = cbw.transfer_length as usize;
        let csw = |residue: usize, status: u8| Csw {
            tag: cbw.tag,
            residue: residue as u32,
            status,
        };
        self.phase = match self.scsi(&cbw.cdb) {
            Outcome::In(_) | Outcome::Out { .. } if expected == 0 => {
                // The guest expects no data but the command has some.
                Phase::Status(csw(0, CSW_PHASE_ERROR))
            }
            Outcome::In(mut data) if cbw.data_in => {
                let status = if data.len() > expected {
                    data.truncate(expected);
                    CSW_PHASE_ERROR
                } else {
                    CSW_PASSED
                };
                let pending = csw(expected - data.len(), status);
                Phase::DataIn { data, pending }
            }
            Outcome::Out { offset, len } if !cbw.data_in && len == expected => Phase::DataOut {
                offset,
                remaining: len,
                pending: csw(0, CSW_PASSED),
            },
            Outcome::In(_) | Outcome::Out { .. } => Phase::Status(csw(expected, CSW_PHASE_ERROR)),
            Outcome::None => Phase::Status(csw(expected, CSW_PASSED)),
            Outcome::Check(sense) => {
                self.sense = sense;
                let pending = csw(expected, CSW_FAILED);
                if cbw.data_in && expected > 0 {
                    // A zero-length packet ends the data phase early.
                    Phase::DataIn {
                        data: Vec::new(),
                        pending,
                    }
                } else {
                    Phase::Status(pending)
                }
            }
        };
    }

    fn bulk_out(&mut self, data: &[u8]) -> Status {
        match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::Command => self.command(data),
            Phase::DataOut {
                offset,
                remaining,
                pending,
            } => {
                if data.len() > remaining {
                    self.phase = Phase::Status(Csw {
                        status: CSW_PHASE_ERROR,
                        ..pending
                    });
                    return Status::SUCCESS;
                }
                // range10 checked offset + remaining against the disk.
                self.disk[offset..offset + data.len()].copy_from_slice(data);
                let remaining = remaining - data.len();
                self.phase = if remaining == 0 {
                    Phase::Status(pending)
                } else {
                    Phase::DataOut {
                        offset: offset + data.len(),
                        remaining,
                        pending,
                    }
                };
            }
            // OUT data where the device wants to send: the guest is lost.
            Phase::DataIn { pending, .. } | Phase::Status(pending) => {
                self.phase = Phase::Status(Csw {
                    status: CSW_PHASE_ERROR,
                    ..pending
                });
            }
        }
        Status::SUCCESS
    }

    fn bulk_in(&mut self, length: u32) -> (Status, Vec<u8>) {
        let length = length as usize;
        match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::DataIn { mut data, pending } => {
                if data.len() > length {
                    let rest = data.split_off(length);
                    self.phase = Phase::DataIn {
                        data: rest,
                        pending,
                    };
                } else {
                    self.phase = Phase::Status(pending);
                }
                (Status::SUCCESS, data)
            }
            Phase::Status(csw) if length >= 13 => (Status::SUCCESS, csw.bytes()),
            phase => {
                // Nothing to send (no command, or the guest still owes OUT
                // data): stall, as a real stick does; CLEAR_FEATURE clears it.
                self.phase = phase;
                (Status::STALL, Vec::new())
            }
        }
    }
}

const DEVICE_DESCRIPTOR: [u8; 18] = [
    18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x6b, 0x1d, 0x04, 0x01, 0x00, 0x01, 1, 2, 3, 1,
];

fn config_descriptor() -> Vec<u8> {
    let mut d = vec![9, 2, 32, 0, 1, 1, 0, 0x80, 50];
    d.extend([9, 4, 0, 0, 2, 8, 6, 0x50, 0]);
    d.extend([7, 5, STORAGE_BULK_IN, 2, 0x00, 0x02, 0]);
    d.extend([7, 5, STORAGE_BULK_OUT, 2, 0x00, 0x02, 0]);
    d
}

fn string_descriptor(s: &str) -> Vec<u8> {
    let mut d = vec![(2 + 2 * s.len()) as u8, 3];
    d.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
    d
}

impl EmulatedDevice for MassStorage {
    fn connect(&self) -> DeviceConnect {
        DeviceConnect {
            speed: Speed::HIGH,
            device_class: 0,
            device_subclass: 0,
            device_protocol: 0,
            vendor_id: 0x1d6b,
            product_id: 0x0104,
            device_version_bcd: 0x0100,
        }
    }

    fn interfaces(&self) -> InterfaceInfo {
        let mut info = InterfaceInfo {
            count: 1,
            interface: [0; 32],
            class: [0; 32],
            subclass: [0; 32],
            protocol: [0; 32],
        };
        info.class[0] = 8;
        info.subclass[0] = 6;
        info.protocol[0] = 0x50;
        info
    }

    fn endpoints(&self) -> EpInfo {
        let mut e = EpInfo::default();
        e.ep_type[0] = ep_type::CONTROL;
        e.ep_type[ep_index(0x80)] = ep_type::CONTROL;
        e.max_packet_size[0] = 64;
        e.max_packet_size[ep_index(0x80)] = 64;
        for ep in [STORAGE_BULK_IN, STORAGE_BULK_OUT] {
            e.ep_type[ep_index(ep)] = ep_type::BULK;
            e.max_packet_size[ep_index(ep)] = 512;
        }
        e
    }

    fn control(&mut self, r: &ControlPacket) -> (Status, Vec<u8>) {
        match (r.requesttype, r.request, r.value >> 8) {
            (0x80, 6, 1) => (Status::SUCCESS, DEVICE_DESCRIPTOR.to_vec()),
            (0x80, 6, 2) => (Status::SUCCESS, config_descriptor()),
            (0x80, 6, 3) => match r.value & 0xff {
                0 => (Status::SUCCESS, vec![4, 3, 0x09, 0x04]),
                1 => (Status::SUCCESS, string_descriptor("spicebox")),
                2 => (Status::SUCCESS, string_descriptor("usbredir disk")),
                3 => (Status::SUCCESS, string_descriptor("0123456789AB")),
                _ => (Status::STALL, Vec::new()),
            },
            (0x80..=0x82, 0, _) => (Status::SUCCESS, vec![0, 0]),
            // CLEAR_FEATURE(ENDPOINT_HALT) after a stall.
            (0x02, 1, _) => (Status::SUCCESS, Vec::new()),
            // GET_MAX_LUN: one LUN.
            (0xa1, 0xfe, _) => (Status::SUCCESS, vec![0]),
            // Bulk-only mass storage reset.
            (0x21, 0xff, _) => {
                self.phase = Phase::Command;
                (Status::SUCCESS, Vec::new())
            }
            _ => (Status::STALL, Vec::new()),
        }
    }

    fn bulk(&mut self, endpoint: u8, length: u32, data: &[u8]) -> (Status, Vec<u8>) {
        match endpoint {
            STORAGE_BULK_OUT => (self.bulk_out(data), Vec::new()),
            STORAGE_BULK_IN => self.bulk_in(length),
            _ => (Status::STALL, Vec::new()),
        }
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
