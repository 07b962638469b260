//! The SPICE server in the machine: client input into the PS/2 devices, the
//! display model's frames out to clients, and the URI a user connects to.
//! (QMP's view of the server is in `qmp/spice_link.rs`.)

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};

use devices::display::{Frame, Update};
use devices::legacy::i8042::I8042;
use spice::{InputSink, SpiceServer, Surface};

use crate::cli::{RunArgs, SaslUserArgs};
use crate::display::Frontend;

/// Client keys and mouse go to the i8042's keyboard and mouse ports, exactly
/// like a local PS/2 keyboard and mouse.
pub struct Ps2Input(pub Arc<Mutex<I8042>>);

impl Ps2Input {
    fn i8042(&self) -> std::sync::MutexGuard<'_, I8042> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InputSink for Ps2Input {
    fn key(&self, xt_scancode: u16, pressed: bool) {
        self.i8042().key_event(xt_scancode, pressed);
    }
    fn mouse(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.i8042().mouse_event(dx, dy, dz, buttons);
    }
    fn leds(&self) -> u8 {
        self.i8042().leds()
    }
}

/// Frames from the display model to the server's clients.
pub struct SpiceFrontend(pub Arc<SpiceServer>);

impl Frontend for SpiceFrontend {
    fn show(&self, frame: &Frame, update: &Update) {
        if frame.width == 0 || frame.height == 0 {
            return;
        }
        let surface = Arc::new(Surface {
            width: frame.width,
            height: frame.height,
            pixels: Arc::from(frame.pixels.as_slice()),
        });
        let rects: Vec<spice::Rect> = update
            .rects
            .iter()
            .map(|r| spice::Rect {
                x: r.x,
                y: r.y,
                width: r.width,
                height: r.height,
            })
            .collect();
        self.0.update(surface, &rects);
    }
}

/// A password for the printed URI when the user gave none: 16 characters
/// from a 62-letter alphabet (95 bits), like a notebook server's token.
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// TLS, secure channels, SASL and the browser page from the command line.
pub fn transport_config(args: &RunArgs) -> anyhow::Result<spice::TransportConfig> {
    let t = &args.spice_transport;
    let mut config = spice::TransportConfig::default();
    if let (Some(listen), Some(dir)) = (t.spice_tls, &t.spice_x509_dir) {
        config.tls = Some(spice::TlsListen {
            listen,
            x509_dir: dir.clone(),
        });
    }
    config.secure_channels = t.spice_secure_channels.unwrap_or_default();
    if t.spice_sasl {
        if args.password.is_some() || args.password_file.is_some() || args.disable_ticketing {
            bail!("--spice-sasl replaces the SPICE password: drop --password, --password-file and --disable-ticketing");
        }
        let path = t
            .spice_sasl_users
            .as_ref()
            .context("--spice-sasl needs --spice-sasl-users FILE")?;
        config.sasl = Some(Arc::new(spice::sasl::Users::load(path)?));
    }
    config.spice_html5 = match t.spice_html5.as_deref() {
        Some("none") => None,
        Some(dir) => Some(dir.into()),
        None => config.spice_html5,
    };
    Ok(config)
}

/// `spicebox sasl-user NAME`: the password from stdin's first line, never from argv.
pub fn print_sasl_user(args: &SaslUserArgs) -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']);
    let entry = spice::sasl::users::entry(&args.name, password, args.iterations)
        .map_err(anyhow::Error::msg)?;
    println!("{entry}");
    Ok(())
}

fn host_port(a: &SocketAddr) -> String {
    match a.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", a.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", a.port()),
    }
}

/// The URI a user pastes into remote-viewer, with `tls-port` when there is a TLS
/// listener and the password if one is set.
pub fn uri(listen: &spice::Listen, tls: Option<SocketAddr>, password: Option<&str>) -> String {
    let base = match listen {
        spice::Listen::Tcp(a) => format!("spice://{}", host_port(a)),
        spice::Listen::Unix(p) => format!("spice+unix://{}", p.display()),
    };
    let mut query = Vec::new();
    if let Some(t) = tls {
        query.push(format!("tls-port={}", t.port()));
    }
    if let Some(pw) = password {
        query.push(format!("password={pw}"));
    }
    if query.is_empty() {
        base
    } else {
        format!("{base}?{}", query.join("&"))
    }
}

/// The browser page's address (on the TLS port when there is one), the password in
/// the fragment, which browsers never send; None where no browser can log in (a
/// unix socket, or SASL, which spice-html5 does not speak).
pub fn browser_url(
    listen: &spice::Listen,
    tls: Option<SocketAddr>,
    password: Option<&str>,
    sasl: bool,
) -> Option<String> {
    if sasl {
        return None;
    }
    let base = match (tls, listen) {
        (Some(t), _) => format!("https://{}/", host_port(&t)),
        (None, spice::Listen::Tcp(a)) => format!("http://{}/", host_port(a)),
        (None, spice::Listen::Unix(_)) => return None,
    };
    Some(match password {
        Some(pw) => format!("{base}#password={pw}"),
        None => base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_differ_and_fit_a_uri() {
        let (a, b) = (generate_password(), generate_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        let l = spice::Listen::Tcp("127.0.0.1:5930".parse().unwrap());
        assert_eq!(
            uri(&l, None, Some(&a)),
            format!("spice://127.0.0.1:5930?password={a}")
        );
        assert_eq!(uri(&l, None, None), "spice://127.0.0.1:5930");
        let u = spice::Listen::Unix("/tmp/s.sock".into());
        assert_eq!(uri(&u, None, None), "spice+unix:///tmp/s.sock");
        let tls = Some("127.0.0.1:5931".parse().unwrap());
        assert_eq!(
            uri(&l, tls, Some("pw")),
            "spice://127.0.0.1:5930?tls-port=5931&password=pw"
        );
        assert_eq!(
            browser_url(&l, None, Some("pw"), false).as_deref(),
            Some("http://127.0.0.1:5930/#password=pw")
        );
        assert_eq!(
            browser_url(&l, tls, None, false).as_deref(),
            Some("https://127.0.0.1:5931/")
        );
        assert_eq!(browser_url(&l, tls, None, true), None);
        assert_eq!(browser_url(&u, None, None, false), None);
    }
}
