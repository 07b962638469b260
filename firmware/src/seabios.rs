//! Finding and loading SeaBIOS and the option ROMs Debian ships beside it.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Directory of Debian's `seabios` package.
pub const SEABIOS_DIR: &str = "/usr/share/seabios";
/// The default image: the 256 KiB build is the one with xHCI, NVMe and OHCI
/// support (the 128 KiB `bios.bin` lacks them).
pub const DEFAULT_BIOS: &str = "/usr/share/seabios/bios-256k.bin";
/// QXL's VGA BIOS, served later as the display's option ROM.
pub const QXL_VGA_ROM: &str = "vgabios-qxl.bin";

const KIB: u64 = 1024;
/// BIOS images are flash-sized: whole 64 KiB blocks.
const BIOS_GRANULE: u64 = 64 * KIB;
/// KVM reserves 16 KiB just below 0xFF000000 (identity map and TSS), so the
/// image, which ends at 4 GiB, may be at most 16 MiB long.
const BIOS_MAX: u64 = 16 * KIB * KIB;
/// The BIOS's real-mode segment 0xE000-0xFFFF: the top 128 KiB below 1 MiB.
pub const LOW_BIOS_START: u64 = 0xE_0000;
/// End of the real-mode BIOS area.
pub const LOW_BIOS_END: u64 = 0x10_0000;

/// Read the BIOS image at `path`, or Debian's SeaBIOS when `path` is `None`.
pub fn load_bios(path: Option<&Path>) -> Result<Vec<u8>> {
    let (path, is_default) = match path {
        Some(p) => (p.to_path_buf(), false),
        None => (PathBuf::from(DEFAULT_BIOS), true),
    };
    let image = std::fs::read(&path).map_err(|source| {
        if is_default && source.kind() == std::io::ErrorKind::NotFound {
            Error::BiosMissing(path.clone())
        } else {
            Error::Io {
                path: path.clone(),
                source,
            }
        }
    })?;
    check_bios_size(&path, image.len() as u64)?;
    tracing::debug!(path = %path.display(), bytes = image.len(), "loaded BIOS image");
    Ok(image)
}

/// The size rule for a flash image mapped just below 4 GiB.
fn check_bios_size(path: &Path, size: u64) -> Result<()> {
    if !(BIOS_GRANULE..=BIOS_MAX).contains(&size) || !size.is_multiple_of(BIOS_GRANULE) {
        return Err(Error::BiosSize {
            path: path.to_path_buf(),
            size,
        });
    }
    Ok(())
}

/// The part of the image the VMM copies to RAM below 1 MiB before the first
/// instruction, and where it goes: the last min(128 KiB, size) bytes, ending at
/// 0xFFFFF. SeaBIOS copies itself there too (it "shadows" from the flash alias),
/// but the copy must already be in place when reset code jumps to the F-segment.
pub fn low_copy(image: &[u8]) -> (u64, &[u8]) {
    let len = image.len().min((LOW_BIOS_END - LOW_BIOS_START) as usize);
    (LOW_BIOS_END - len as u64, &image[image.len() - len..])
}

/// Load an option ROM shipped with Debian's SeaBIOS, e.g. [`QXL_VGA_ROM`].
pub fn vga_rom(name: &str) -> Result<Vec<u8>> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::RomName(name.to_string()));
    }
    let path = Path::new(SEABIOS_DIR).join(name);
    let rom = std::fs::read(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::RomMissing(path.clone())
        } else {
            Error::Io {
                path: path.clone(),
                source,
            }
        }
    })?;
    check_option_rom(&path, &rom)?;
    Ok(rom)
}

/// SeaBIOS refuses ROMs without the 0x55AA signature; catch that at startup.
fn check_option_rom(path: &Path, rom: &[u8]) -> Result<()> {
    let reason = if rom.len() < 512 {
        "shorter than 512 bytes"
    } else if rom[0] != 0x55 || rom[1] != 0xAA {
        "no 0x55AA signature"
    } else {
        return Ok(());
    };
    Err(Error::RomInvalid {
        path: path.to_path_buf(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "spicebox-firmware-{}-{tag}.bin",
            std::process::id()
        ));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn loads_a_valid_image_from_a_path() {
        let p = temp_file("ok", &vec![0x5a; 128 * 1024]);
        let img = load_bios(Some(&p)).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(img.len(), 128 * 1024);
    }

    #[test]
    fn rejects_odd_sizes() {
        for size in [0usize, 4096, 64 * 1024 + 512] {
            let p = temp_file(&format!("bad{size}"), &vec![0; size]);
            let err = load_bios(Some(&p)).unwrap_err();
            std::fs::remove_file(&p).unwrap();
            assert!(matches!(err, Error::BiosSize { .. }), "{err}");
        }
        assert!(check_bios_size(Path::new("x"), 16 << 20).is_ok());
        assert!(check_bios_size(Path::new("x"), (16 << 20) + (64 << 10)).is_err());
    }

    #[test]
    fn missing_user_path_is_an_io_error() {
        let err = load_bios(Some(Path::new("/nonexistent/spicebox/bios.bin"))).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn missing_default_names_the_fix() {
        let msg = Error::BiosMissing(PathBuf::from(DEFAULT_BIOS)).to_string();
        assert!(msg.contains("apt-get install seabios"), "{msg}");
        assert!(msg.contains("--bios PATH"), "{msg}");
    }

    /// Needs Debian's `seabios` package, which `scripts/deps` installs.
    #[test]
    fn default_image_loads() {
        let img = load_bios(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(img.len(), 256 * 1024);
        // The reset vector (last 16 bytes) starts with a far jump.
        assert_eq!(img[img.len() - 16], 0xEA);
    }

    #[test]
    fn low_copy_is_the_top_128k() {
        let mut img = vec![0u8; 256 * 1024];
        img[128 * 1024] = 1;
        *img.last_mut().unwrap() = 2;
        let (addr, low) = low_copy(&img);
        assert_eq!(addr, 0xE0000);
        assert_eq!(low.len(), 128 * 1024);
        assert_eq!((low[0], low[low.len() - 1]), (1, 2));

        let small = vec![3u8; 64 * 1024];
        let (addr, low) = low_copy(&small);
        assert_eq!((addr, low.len()), (0xF0000, 64 * 1024));
    }

    #[test]
    fn vga_rom_checks_name_and_signature() {
        assert!(matches!(vga_rom("../etc/passwd"), Err(Error::RomName(_))));
        assert!(matches!(vga_rom(""), Err(Error::RomName(_))));
        assert!(check_option_rom(Path::new("r"), &[0u8; 1024]).is_err());
        let mut rom = vec![0u8; 1024];
        rom[0] = 0x55;
        rom[1] = 0xAA;
        assert!(check_option_rom(Path::new("r"), &rom).is_ok());
        assert!(matches!(
            vga_rom("spicebox-no-such-rom.bin"),
            Err(Error::RomMissing(_))
        ));
    }

    /// Needs Debian's `seabios` package, which `scripts/deps` installs.
    #[test]
    fn qxl_vga_rom_loads() {
        let rom = vga_rom(QXL_VGA_ROM).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&rom[..2], &[0x55, 0xAA]);
    }
}
