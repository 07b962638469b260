//! Command line: what a user types, parsed into typed options.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "spicebox",
    version,
    about = "A KVM hypervisor with a built-in SPICE server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Boot a disk image (raw or qcow2) through SeaBIOS, or the built-in demo when none is given.
    Run(RunArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Disk image to boot (raw or qcow2, detected). Omit it to boot the built-in demo disk.
    pub disk: Option<PathBuf>,

    /// Guest RAM, e.g. 256M, 4G (a bare number means MiB, as in QEMU).
    #[arg(short = 'm', long = "memory", default_value = "1G", value_parser = parse_size)]
    pub memory: u64,

    /// Number of virtual CPUs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub smp: u8,

    /// Where COM1 goes: stdio, file:PATH, unix:PATH (a listening socket) or none.
    /// Default: stdio when standard input is a terminal, otherwise none.
    #[arg(long)]
    pub serial: Option<SerialSpec>,

    /// SeaBIOS image [default: /usr/share/seabios/bios-256k.bin].
    #[arg(long, conflicts_with = "kernel")]
    pub bios: Option<PathBuf>,

    /// Attach the disk read-only (the guest sees a read-only device).
    #[arg(long)]
    pub read_only: bool,

    /// Boot a Linux kernel directly (bzImage or ELF vmlinux) instead of the firmware.
    #[arg(long)]
    pub kernel: Option<PathBuf>,

    /// Initial ramdisk for --kernel.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,

    /// Kernel command line for --kernel.
    #[arg(long, requires = "kernel")]
    pub append: Option<String>,

    /// Offer no ACPI tables (for guests that mishandle them); the machine
    /// then has no power button, so QMP system_powerdown fails.
    #[arg(long)]
    pub no_acpi: bool,

    /// Write SeaBIOS's debug output (port 0x402) to this file.
    #[arg(long, conflicts_with = "kernel")]
    pub bios_log: Option<PathBuf>,

    /// Display device: qxl (QXL VGA: the VGA/VBE side; QXL native commands are
    /// not implemented yet), or none.
    #[arg(long, value_enum, default_value_t = VgaKind::Qxl)]
    pub vga: VgaKind,

    /// QMP control socket: unix:PATH, tcp:HOST:PORT or none
    /// [default: unix:$XDG_RUNTIME_DIR/spicebox/PID.qmp].
    #[arg(long)]
    pub control: Option<crate::qmp::ControlSpec>,

    /// Allow --control tcp: on a non-loopback address (whoever can connect
    /// controls the VM; there is no authentication).
    #[arg(long)]
    pub control_allow_remote: bool,

    /// A name for the VM, reported by QMP query-name.
    #[arg(long)]
    pub name: Option<String>,

    /// SPICE server: HOST:PORT, unix:PATH or none.
    #[arg(long, default_value = "127.0.0.1:5930")]
    pub spice: SpiceSpec,

    /// SPICE password (other users can see it in `ps`; prefer --password-file).
    /// Without this, --password-file or --disable-ticketing, a random password
    /// is generated and printed in the URI.
    #[arg(long, conflicts_with_all = ["password_file", "disable_ticketing"])]
    pub password: Option<String>,

    /// Read the SPICE password from the first line of this file.
    #[arg(long, conflicts_with = "disable_ticketing")]
    pub password_file: Option<PathBuf>,

    /// Let SPICE clients connect without a password.
    #[arg(long)]
    pub disable_ticketing: bool,

    /// Allow --disable-ticketing on a non-loopback SPICE address (anyone who
    /// can reach it sees and drives the VM).
    #[arg(long)]
    pub spice_allow_remote: bool,
}

/// Where the SPICE server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpiceSpec {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
    None,
}

impl FromStr for SpiceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use std::net::ToSocketAddrs;
        if s == "none" {
            return Ok(SpiceSpec::None);
        }
        if let Some(p) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            return Ok(SpiceSpec::Unix(p.into()));
        }
        let bad = || format!("'{s}' is not a SPICE address: use HOST:PORT, unix:PATH or none");
        s.to_socket_addrs()
            .map_err(|_| bad())?
            .next()
            .map(SpiceSpec::Tcp)
            .ok_or_else(bad)
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgaKind {
    None,
    Qxl,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialSpec {
    Stdio,
    File(PathBuf),
    Unix(PathBuf),
    None,
}

impl FromStr for SerialSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdio" => Ok(SerialSpec::Stdio),
            "none" => Ok(SerialSpec::None),
            _ => {
                if let Some(p) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
                    Ok(SerialSpec::File(p.into()))
                } else if let Some(p) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
                    Ok(SerialSpec::Unix(p.into()))
                } else {
                    Err(format!(
                        "'{s}' is not a serial backend: use stdio, file:PATH, unix:PATH or none"
                    ))
                }
            }
        }
    }
}

/// Parse a memory size: `512M`, `4G`, `1048576K`, `2T` or bare MiB (`512`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not a memory size: use e.g. 256M or 4G");
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "M"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim_end_matches(['b', 'B', 'i']) {
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(bad()),
    };
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or_else(bad)?;
    if bytes == 0 {
        return Err(bad());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512"), Ok(512 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("99999999999999999T").is_err());
    }

    #[test]
    fn serial_specs() {
        assert_eq!("stdio".parse(), Ok(SerialSpec::Stdio));
        assert_eq!("none".parse(), Ok(SerialSpec::None));
        assert_eq!("file:/tmp/x".parse(), Ok(SerialSpec::File("/tmp/x".into())));
        assert_eq!("unix:/tmp/s".parse(), Ok(SerialSpec::Unix("/tmp/s".into())));
        assert!("file:".parse::<SerialSpec>().is_err());
        assert!("tcp:1".parse::<SerialSpec>().is_err());
    }

    #[test]
    fn cli_parses_run() {
        let cli =
            Cli::try_parse_from(["spicebox", "run", "d.img", "-m", "2G", "--smp", "2"]).unwrap();
        let Command::Run(a) = cli.command;
        assert_eq!(a.memory, 2 << 30);
        assert_eq!(a.smp, 2);
        assert_eq!(a.disk, Some("d.img".into()));
        assert!(Cli::try_parse_from(["spicebox", "run", "--initrd", "x"]).is_err());
        // The firmware options mean nothing without the firmware.
        assert!(Cli::try_parse_from(["spicebox", "run", "--kernel", "k", "--bios", "b"]).is_err());
        assert!(
            Cli::try_parse_from(["spicebox", "run", "--kernel", "k", "--bios-log", "l"]).is_err()
        );
        let cli =
            Cli::try_parse_from(["spicebox", "run", "--control", "none", "--name", "vm1"]).unwrap();
        let Command::Run(a) = cli.command;
        assert_eq!(a.control, Some(crate::qmp::ControlSpec::None));
        assert_eq!(a.name.as_deref(), Some("vm1"));
        assert!(Cli::try_parse_from(["spicebox", "run", "--control", "stdio"]).is_err());
        let Command::Run(a) = Cli::try_parse_from(["spicebox", "run"]).unwrap().command;
        assert!(!a.no_acpi, "ACPI by default");
        let Command::Run(a) = Cli::try_parse_from(["spicebox", "run", "--no-acpi"])
            .unwrap()
            .command;
        assert!(a.no_acpi);
    }
}
