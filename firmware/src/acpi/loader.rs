//! The fw_cfg "table loader" (`etc/table-loader`): commands that tell the
//! firmware where to put the ACPI blobs and how to link them, the interface
//! QEMU defines (hw/acpi/bios-linker-loader.c) and SeaBIOS consumes
//! (src/fw/romfile_loader.c).
//!
//! The host cannot know where the firmware will put the tables, so pointers in
//! a blob hold offsets into the file they point to; the firmware allocates each
//! file, adds the allocation's address to every pointer (ADD_POINTER) and then
//! fixes the checksums the patching broke (ADD_CHECKSUM).
//!
//! [`execute`] runs the commands exactly as SeaBIOS does. spicebox uses it for
//! direct kernel boot, where there is no firmware to do it, and the tests use it
//! to check what SeaBIOS will make of the files.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// Every command is 128 bytes: a u32 command number and a 124-byte union.
pub const ENTRY_SIZE: usize = 128;
/// File names are NUL-padded to 56 bytes, like fw_cfg directory names.
pub const FILE_NAME_SIZE: usize = 56;

const COMMAND_ALLOCATE: u32 = 1;
const COMMAND_ADD_POINTER: u32 = 2;
const COMMAND_ADD_CHECKSUM: u32 = 3;

/// Where the firmware may allocate a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// Anywhere in RAM the firmware reserves (SeaBIOS: high memory, e820
    /// reserved); for the tables proper.
    High = 1,
    /// The 0xE0000-0xFFFFF BIOS area, where an OS scans for the RSDP.
    FSeg = 2,
}

/// One loader command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Copy `file` into memory allocated in `zone`, aligned to `align` bytes.
    Allocate {
        file: String,
        align: u32,
        zone: Zone,
    },
    /// Add the address of `src`'s allocation to the little-endian integer of
    /// `size` bytes at `offset` in `dest`.
    AddPointer {
        dest: String,
        src: String,
        offset: u32,
        size: u8,
    },
    /// Subtract the byte sum of `file[start..start + length]` from the byte at
    /// `offset`, making that range sum to zero.
    AddChecksum {
        file: String,
        offset: u32,
        start: u32,
        length: u32,
    },
}

fn put_name(entry: &mut [u8], at: usize, name: &str) -> Result<()> {
    if name.is_empty() || name.len() >= FILE_NAME_SIZE || name.contains('\0') {
        return Err(Error::Acpi(format!("bad loader file name {name:?}")));
    }
    entry[at..at + name.len()].copy_from_slice(name.as_bytes());
    Ok(())
}

fn get_name(entry: &[u8], at: usize) -> Option<String> {
    let field = &entry[at..at + FILE_NAME_SIZE];
    // SeaBIOS refuses a name that fills the whole field (no terminating NUL).
    let len = field.iter().position(|&b| b == 0)?;
    String::from_utf8(field[..len].to_vec()).ok()
}

fn le32(entry: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(entry[at..at + 4].try_into().unwrap())
}

impl Command {
    /// The 128-byte little-endian entry (layout of SeaBIOS's
    /// `struct romfile_loader_entry_s`).
    pub fn encode(&self) -> Result<[u8; ENTRY_SIZE]> {
        let mut e = [0u8; ENTRY_SIZE];
        match self {
            Command::Allocate { file, align, zone } => {
                e[0..4].copy_from_slice(&COMMAND_ALLOCATE.to_le_bytes());
                put_name(&mut e, 4, file)?;
                e[60..64].copy_from_slice(&align.to_le_bytes());
                e[64] = *zone as u8;
            }
            Command::AddPointer {
                dest,
                src,
                offset,
                size,
            } => {
                e[0..4].copy_from_slice(&COMMAND_ADD_POINTER.to_le_bytes());
                put_name(&mut e, 4, dest)?;
                put_name(&mut e, 60, src)?;
                e[116..120].copy_from_slice(&offset.to_le_bytes());
                e[120] = *size;
            }
            Command::AddChecksum {
                file,
                offset,
                start,
                length,
            } => {
                e[0..4].copy_from_slice(&COMMAND_ADD_CHECKSUM.to_le_bytes());
                put_name(&mut e, 4, file)?;
                e[60..64].copy_from_slice(&offset.to_le_bytes());
                e[64..68].copy_from_slice(&start.to_le_bytes());
                e[68..72].copy_from_slice(&length.to_le_bytes());
            }
        }
        Ok(e)
    }

    /// Parse one entry; `None` for commands SeaBIOS skips (unknown numbers,
    /// names without a NUL, an unknown zone) — it skips them too.
    pub fn decode(entry: &[u8; ENTRY_SIZE]) -> Option<Command> {
        match le32(entry, 0) {
            COMMAND_ALLOCATE => Some(Command::Allocate {
                file: get_name(entry, 4)?,
                align: le32(entry, 60),
                zone: match entry[64] {
                    1 => Zone::High,
                    2 => Zone::FSeg,
                    _ => return None,
                },
            }),
            COMMAND_ADD_POINTER => Some(Command::AddPointer {
                dest: get_name(entry, 4)?,
                src: get_name(entry, 60)?,
                offset: le32(entry, 116),
                size: entry[120],
            }),
            COMMAND_ADD_CHECKSUM => Some(Command::AddChecksum {
                file: get_name(entry, 4)?,
                offset: le32(entry, 60),
                start: le32(entry, 64),
                length: le32(entry, 68),
            }),
            _ => None,
        }
    }
}

/// The `etc/table-loader` file: its commands, encoded back to back.
pub fn encode(commands: &[Command]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(commands.len() * ENTRY_SIZE);
    for c in commands {
        out.extend_from_slice(&c.encode()?);
    }
    Ok(out)
}

/// A file after [`execute`]: where it was allocated and its patched bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub addr: u64,
    pub data: Vec<u8>,
}

/// Run `loader` (the bytes of `etc/table-loader`) over `files` (fw_cfg file
/// name to contents) the way SeaBIOS's `romfile_loader_execute` does:
/// commands in order, ALLOCATE copies a file to the address `allocate(name,
/// size, align, zone)` returns, and a command naming a file not allocated yet,
/// or reaching outside its file, is skipped. Unlike SeaBIOS, which only warns,
/// such a command is an error here: our own loader must never contain one.
pub fn execute(
    loader: &[u8],
    files: &BTreeMap<String, Vec<u8>>,
    mut allocate: impl FnMut(&str, usize, u32, Zone) -> Result<u64>,
) -> Result<BTreeMap<String, Placed>> {
    if !loader.len().is_multiple_of(ENTRY_SIZE) {
        return Err(Error::Acpi(format!(
            "table loader is {} bytes, not a multiple of {ENTRY_SIZE}",
            loader.len()
        )));
    }
    let bad = |what: String| Err(Error::Acpi(format!("table loader: {what}")));
    let mut placed: BTreeMap<String, Placed> = BTreeMap::new();
    for (i, chunk) in loader.chunks_exact(ENTRY_SIZE).enumerate() {
        let entry: &[u8; ENTRY_SIZE] = chunk.try_into().unwrap();
        match Command::decode(entry) {
            None => return bad(format!("command {i} is not one SeaBIOS runs")),
            Some(Command::Allocate { file, align, zone }) => {
                if align & align.wrapping_sub(1) != 0 {
                    return bad(format!("alignment {align} of {file} is not a power of 2"));
                }
                let Some(data) = files.get(&file) else {
                    return bad(format!("no file {file} to allocate"));
                };
                if placed.contains_key(&file) {
                    return bad(format!("{file} allocated twice"));
                }
                // SeaBIOS aligns to at least 16 bytes (MALLOC_MIN_ALIGN).
                let addr = allocate(&file, data.len(), align.max(16), zone)?;
                placed.insert(
                    file,
                    Placed {
                        addr,
                        data: data.clone(),
                    },
                );
            }
            Some(Command::AddPointer {
                dest,
                src,
                offset,
                size,
            }) => {
                let Some(src_addr) = placed.get(&src).map(|p| p.addr) else {
                    return bad(format!("pointer to {src}, which is not allocated"));
                };
                let Some(d) = placed.get_mut(&dest) else {
                    return bad(format!("pointer in {dest}, which is not allocated"));
                };
                let (off, len) = (offset as usize, usize::from(size));
                if !matches!(size, 1 | 2 | 4 | 8) || off.saturating_add(len) > d.data.len() {
                    return bad(format!("pointer of {size} bytes at {offset} in {dest}"));
                }
                let mut v = [0u8; 8];
                v[..len].copy_from_slice(&d.data[off..off + len]);
                let sum = u64::from_le_bytes(v).wrapping_add(src_addr);
                d.data[off..off + len].copy_from_slice(&sum.to_le_bytes()[..len]);
            }
            Some(Command::AddChecksum {
                file,
                offset,
                start,
                length,
            }) => {
                let Some(f) = placed.get_mut(&file) else {
                    return bad(format!("checksum in {file}, which is not allocated"));
                };
                let (off, start, end) = (
                    offset as usize,
                    start as usize,
                    start as usize + length as usize,
                );
                if off >= f.data.len() || end > f.data.len() {
                    return bad(format!("checksum range {start}..{end} of {file}"));
                }
                let sum = f.data[start..end]
                    .iter()
                    .fold(0u8, |a, b| a.wrapping_add(*b));
                f.data[off] = f.data[off].wrapping_sub(sum);
            }
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BTreeMap<String, Vec<u8>> {
        let mut f = BTreeMap::new();
        f.insert("a".to_string(), vec![0u8; 16]);
        f.insert("b".to_string(), vec![0u8; 8]);
        f
    }

    #[test]
    fn entries_have_seabios_layout() {
        let a = Command::Allocate {
            file: "etc/acpi/tables".into(),
            align: 64,
            zone: Zone::High,
        }
        .encode()
        .unwrap();
        assert_eq!(&a[0..4], &[1, 0, 0, 0]);
        assert_eq!(&a[4..19], b"etc/acpi/tables");
        assert_eq!(a[19], 0);
        assert_eq!(&a[60..64], &[64, 0, 0, 0]);
        assert_eq!(a[64], 1);
        let p = Command::AddPointer {
            dest: "d".into(),
            src: "s".into(),
            offset: 0x1234,
            size: 4,
        }
        .encode()
        .unwrap();
        assert_eq!((p[0], p[4], p[60]), (2, b'd', b's'));
        assert_eq!(&p[116..121], &[0x34, 0x12, 0, 0, 4]);
        let c = Command::AddChecksum {
            file: "f".into(),
            offset: 9,
            start: 0,
            length: 36,
        }
        .encode()
        .unwrap();
        assert_eq!(&c[60..72], &[9, 0, 0, 0, 0, 0, 0, 0, 36, 0, 0, 0]);
        for cmd in [a, p, c] {
            let decoded = Command::decode(&cmd).unwrap();
            assert_eq!(decoded.encode().unwrap(), cmd);
        }
        assert!(Command::Allocate {
            file: "x".repeat(56),
            align: 1,
            zone: Zone::FSeg
        }
        .encode()
        .is_err());
    }

    #[test]
    fn pointers_and_checksums_as_seabios_applies_them() {
        let mut f = files();
        f.get_mut("a").unwrap()[4] = 3; // an offset into "b"
        let cmds = [
            Command::Allocate {
                file: "b".into(),
                align: 16,
                zone: Zone::FSeg,
            },
            Command::Allocate {
                file: "a".into(),
                align: 64,
                zone: Zone::High,
            },
            Command::AddPointer {
                dest: "a".into(),
                src: "b".into(),
                offset: 4,
                size: 4,
            },
            Command::AddChecksum {
                file: "a".into(),
                offset: 15,
                start: 0,
                length: 16,
            },
        ];
        let mut next = 0xF_0000u64;
        let placed = execute(&encode(&cmds).unwrap(), &f, |_, size, align, zone| {
            let base = if zone == Zone::FSeg {
                next
            } else {
                0x1000_0000
            };
            assert_eq!(base % u64::from(align), 0);
            next += size as u64;
            Ok(base)
        })
        .unwrap();
        let a = &placed["a"];
        assert_eq!(a.addr, 0x1000_0000);
        assert_eq!(&a.data[4..8], &0xF_0003u32.to_le_bytes());
        assert_eq!(a.data.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(placed["b"].addr, 0xF_0000);
    }

    #[test]
    fn malformed_loaders_are_errors_not_panics() {
        let f = files();
        let alloc = |_: &str, _: usize, _: u32, _: Zone| Ok(0x1000u64);
        let allocate_a = Command::Allocate {
            file: "a".into(),
            align: 16,
            zone: Zone::High,
        };
        let cases = [
            vec![Command::AddPointer {
                dest: "a".into(),
                src: "a".into(),
                offset: 0,
                size: 4,
            }],
            vec![
                allocate_a.clone(),
                Command::AddPointer {
                    dest: "a".into(),
                    src: "a".into(),
                    offset: 14,
                    size: 4,
                },
            ],
            vec![
                allocate_a.clone(),
                Command::AddPointer {
                    dest: "a".into(),
                    src: "a".into(),
                    offset: u32::MAX,
                    size: 8,
                },
            ],
            vec![
                allocate_a.clone(),
                Command::AddPointer {
                    dest: "a".into(),
                    src: "a".into(),
                    offset: 0,
                    size: 3,
                },
            ],
            vec![
                allocate_a.clone(),
                Command::AddChecksum {
                    file: "a".into(),
                    offset: 0,
                    start: u32::MAX,
                    length: u32::MAX,
                },
            ],
            vec![
                allocate_a.clone(),
                Command::AddChecksum {
                    file: "a".into(),
                    offset: 16,
                    start: 0,
                    length: 1,
                },
            ],
            vec![allocate_a.clone(), allocate_a.clone()],
            vec![Command::Allocate {
                file: "missing".into(),
                align: 16,
                zone: Zone::High,
            }],
            vec![Command::Allocate {
                file: "a".into(),
                align: 48,
                zone: Zone::High,
            }],
        ];
        for cmds in cases {
            assert!(
                execute(&encode(&cmds).unwrap(), &f, alloc).is_err(),
                "{cmds:?}"
            );
        }
        assert!(execute(&[0u8; 100], &f, alloc).is_err());
        assert!(execute(&[0u8; 128], &f, alloc).is_err());
        let mut nameless = allocate_a.encode().unwrap();
        nameless[4..60].fill(b'x');
        assert_eq!(Command::decode(&nameless), None);
    }
}
