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
    Run(Box<RunArgs>),
    /// Print a line for --spice-sasl-users: the user NAME with the password read
    /// from the first line of standard input, stored as a salted SCRAM-SHA-256 verifier.
    SaslUser(SaslUserArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SaslUserArgs {
    /// User name (letters, digits, '.', '_', '@', '-').
    pub name: String,
    /// PBKDF2 iterations (at least 4096).
    #[arg(long, default_value_t = spice::sasl::users::DEFAULT_ITERATIONS)]
    pub iterations: u32,
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

    /// Display device: qxl (QXL VGA: VGA/VBE modes and QXL's native 2D
    /// commands, as the Linux qxl driver uses them), or none.
    #[arg(long, value_enum, default_value_t = VgaKind::Qxl)]
    pub vga: VgaKind,

    /// Sound card: spice (an AC97 card, Intel 82801AA, played and recorded
    /// through the SPICE playback and record channels) or none
    /// [default: spice when SPICE is on, else none].
    #[arg(long, value_enum)]
    pub audio: Option<AudioKind>,
    /// Where keys and pointer input go: both (the PS/2 keyboard and mouse plus a
    /// virtio keyboard and tablet; keys reach the virtio keyboard once its
    /// driver runs, PS/2 before), ps2 (no virtio input devices), or virtio (the
    /// virtio devices get all keys and absolute input).
    #[arg(long, value_enum, default_value_t = InputMode::Both)]
    pub input: InputMode,

    /// No virtio-serial port for the SPICE guest agent (com.redhat.spice.0,
    /// present by default as in the VMs virt-manager creates).
    #[arg(long)]
    pub no_agent: bool,

    /// A named virtio-serial port joined to a SPICE PORT channel (QEMU's
    /// -chardev spiceport,name=NAME with a virtserialport of that name);
    /// repeatable.
    #[arg(long = "spice-port", value_name = "NAME")]
    pub spice_ports: Vec<String>,

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

    /// SPICE playback compression: on (Opus for clients that announce it,
    /// as QEMU's default) or off (raw 48 kHz PCM, 192 kB/s a client).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub spice_playback_compression: OnOff,

    /// JPEG for photo-like images (QEMU's jpeg-wan-compression): auto (only
    /// to clients on a slow link, i.e. that keep the display ack window
    /// full), always, or never. Text and UI stay lossless.
    #[arg(long, value_enum, default_value_t = JpegArg::Auto)]
    pub spice_jpeg: JpegArg,

    /// MJPEG video streams for areas redrawn at a steady rate (QEMU's
    /// streaming-video): filter (those that look like video), all, or off.
    /// Streams are lossy: --spice-jpeg never turns them off too.
    #[arg(long, value_enum, default_value_t = StreamingArg::Filter)]
    pub spice_streaming_video: StreamingArg,

    /// Allow --disable-ticketing on a non-loopback SPICE address (anyone who
    /// can reach it sees and drives the VM).
    #[arg(long)]
    pub spice_allow_remote: bool,

    /// SPICE USB redirection channels, each able to redirect one client USB
    /// device into the VM through the xHCI controller (qemu-xhci); 0 leaves the
    /// controller out.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=8))]
    pub usb_redir: u8,

    #[command(flatten)]
    pub spice_transport: SpiceTransportArgs,
}

/// TLS, SASL and the browser page (see `spice_link::transport_config`).
#[derive(Args, Debug, Clone, Default)]
pub struct SpiceTransportArgs {
    /// SPICE over TLS on a second port, HOST:PORT (QEMU: tls-port); needs --spice-x509-dir.
    #[arg(long, value_name = "HOST:PORT", requires = "spice_x509_dir", value_parser = parse_socket_addr)]
    pub spice_tls: Option<std::net::SocketAddr>,

    /// Directory with ca-cert.pem, server-cert.pem and server-key.pem (QEMU: x509-dir).
    #[arg(long, value_name = "DIR", requires = "spice_tls")]
    pub spice_x509_dir: Option<PathBuf>,

    /// Channels that must use TLS: all, or names such as main,display,inputs,cursor
    /// (QEMU: tls-channel). On the plain port they are refused with NEED_SECURED, and
    /// clients reconnect them on the TLS port by themselves.
    #[arg(long, value_name = "all|CHANNELS", requires = "spice_tls", value_parser = spice::ChannelSet::parse)]
    pub spice_secure_channels: Option<spice::ChannelSet>,

    /// Log in with SASL (SCRAM-SHA-256 or PLAIN, over TLS only) instead of a password
    /// (QEMU: sasl=on); needs --spice-tls and --spice-sasl-users.
    #[arg(long, requires_all = ["spice_tls", "spice_sasl_users"])]
    pub spice_sasl: bool,

    /// SASL users, one line each as printed by `spicebox sasl-user NAME`.
    #[arg(long, value_name = "FILE", requires = "spice_sasl")]
    pub spice_sasl_users: Option<PathBuf>,

    /// Where spice-html5 is installed, for the browser page on the SPICE port, or
    /// none to turn the page off [default: /usr/share/spice-html5].
    #[arg(long, value_name = "DIR|none")]
    pub spice_html5: Option<String>,
}

fn parse_socket_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("'{s}' is not HOST:PORT"))
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
pub enum InputMode {
    Both,
    Ps2,
    Virtio,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgaKind {
    None,
    Qxl,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum JpegArg {
    Auto,
    Always,
    Never,
}

impl From<JpegArg> for spice::JpegMode {
    fn from(j: JpegArg) -> spice::JpegMode {
        match j {
            JpegArg::Auto => spice::JpegMode::Auto,
            JpegArg::Always => spice::JpegMode::Always,
            JpegArg::Never => spice::JpegMode::Never,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamingArg {
    Off,
    All,
    Filter,
}

impl From<StreamingArg> for spice::StreamingVideo {
    fn from(s: StreamingArg) -> spice::StreamingVideo {
        match s {
            StreamingArg::Off => spice::StreamingVideo::Off,
            StreamingArg::All => spice::StreamingVideo::All,
            StreamingArg::Filter => spice::StreamingVideo::Filter,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioKind {
    None,
    Spice,
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
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
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
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.control, Some(crate::qmp::ControlSpec::None));
        assert_eq!(a.name.as_deref(), Some("vm1"));
        assert!(Cli::try_parse_from(["spicebox", "run", "--control", "stdio"]).is_err());
        let Command::Run(a) = Cli::try_parse_from(["spicebox", "run"]).unwrap().command else {
            panic!("not run")
        };
        assert!(!a.no_acpi, "ACPI by default");
        assert_eq!(a.input, InputMode::Both, "PS/2 and virtio input by default");
        let Command::Run(a) = Cli::try_parse_from(["spicebox", "run", "--input", "ps2"])
            .unwrap()
            .command
        else {
            panic!("not run")
        };
        assert_eq!(a.input, InputMode::Ps2);
        assert!(Cli::try_parse_from(["spicebox", "run", "--input", "usb"]).is_err());
        let Command::Run(a) = Cli::try_parse_from(["spicebox", "run", "--no-acpi"])
            .unwrap()
            .command
        else {
            panic!("not run")
        };
        assert!(a.no_acpi);
    }

    #[test]
    fn cli_parses_spice_transport_options() {
        let cli = Cli::try_parse_from([
            "spicebox",
            "run",
            "--spice-tls",
            "127.0.0.1:5931",
            "--spice-x509-dir",
            "/etc/pki/spice",
            "--spice-secure-channels",
            "main,inputs",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        let t = a.spice_transport;
        assert_eq!(t.spice_tls, Some("127.0.0.1:5931".parse().unwrap()));
        let ch = t.spice_secure_channels.unwrap();
        assert!(ch.contains(1) && ch.contains(3) && !ch.contains(2));
        // TLS needs its certificates, secure channels and SASL need TLS, SASL its users.
        for bad in [
            &["run", "--spice-tls", "127.0.0.1:1"][..],
            &["run", "--spice-x509-dir", "d"],
            &["run", "--spice-secure-channels", "all"],
            &[
                "run",
                "--spice-tls",
                "127.0.0.1:1",
                "--spice-x509-dir",
                "d",
                "--spice-sasl",
            ],
            &[
                "run",
                "--spice-tls",
                "127.0.0.1:1",
                "--spice-x509-dir",
                "d",
                "--spice-secure-channels",
                "mian",
            ],
        ] {
            let argv: Vec<&str> = std::iter::once("spicebox")
                .chain(bad.iter().copied())
                .collect();
            assert!(Cli::try_parse_from(&argv).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["spicebox", "sasl-user", "alice"]).unwrap();
        assert!(
            matches!(cli.command, Command::SaslUser(a) if a.name == "alice" && a.iterations == 4096)
        );
    }
}
