//! The SPICE server in the machine: its ports (client input into the input
//! router, the guest's LEDs pushed back), the display model's frames out to
//! clients, and the URI a user connects to. (QMP's view of the server is in
//! `qmp/spice_link.rs`.)

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context};

use devices::display::qxl_engine::{CursorEvent, CursorSink};
use devices::display::{Frame, Update};
use spice::port::{
    AbsoluteNotifier, ClientMonitorsConfig, InputPort, LedNotifier, MonitorsConfigPort,
};
use spice::SpiceServer;

use crate::cli::{RunArgs, SaslUserArgs};
use crate::display::Frontend;
use crate::input::{InputRouter, Source};

/// The SPICE server's input port: client input enters the router as
/// `Source::Spice`, the same path QMP's takes, and the router's LED changes are
/// pushed to the server. (The port's button bits and absolute range are the
/// devices' own: PS/2 order, 0..=0x7fff.)
pub struct SpiceInput(pub Arc<InputRouter>);

impl InputPort for SpiceInput {
    fn key(&self, xt_scancode: u16, pressed: bool) {
        self.0.key(Source::Spice, xt_scancode, pressed);
    }
    fn relative(&self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        self.0.relative(Source::Spice, dx, dy, dz, buttons);
    }
    fn absolute(&self, _head: u8, x: u32, y: u32, dz: i32, buttons: u8) {
        // One head: the tablet spans it. The server offers client mouse mode
        // only when `has_absolute` (a tablet exists), so this cannot fail.
        let _ = self
            .0
            .absolute(Source::Spice, Some(x), Some(y), dz, buttons);
    }
    fn has_absolute(&self) -> bool {
        self.0.has_absolute()
    }
    fn leds(&self) -> u8 {
        self.0.leds()
    }
    fn attach(&self, notifier: LedNotifier) {
        self.0.on_leds(move |leds| notifier.set(leds));
    }
    fn attach_absolute(&self, notifier: AbsoluteNotifier) {
        self.0.on_absolute_change(move |a| notifier.set(a));
    }
    fn detached(&self) {
        // The channel released what it decoded; this also catches what it does
        // not track (Pause) and anything pressed through it by other means.
        self.0.release_all(Source::Spice);
    }
}

/// Frames from the display model to the server's clients: the frame is lent,
/// and the server copies only the changed rectangles' pixels.
pub struct SpiceFrontend(pub Arc<SpiceServer>);

impl Frontend for SpiceFrontend {
    fn show(&self, frame: &Frame, update: &Update) {
        if frame.width == 0 || frame.height == 0 {
            return;
        }
        self.0.update(frame, &update.rects, &update.draws);
    }
}

/// Clients' monitors configs (a resized window) to the QXL card's ROM and
/// CLIENT_MONITORS_CONFIG interrupt, as QEMU's qxl device takes them from
/// spice-server.
pub struct SpiceMonitors(pub Arc<crate::display::Display>);

impl MonitorsConfigPort for SpiceMonitors {
    fn takes_client_monitors_config(&self) -> bool {
        self.0.takes_client_monitors_config()
    }
    fn client_monitors_config(&self, config: &ClientMonitorsConfig) -> bool {
        tracing::debug!(
            slots = config.slots,
            heads = ?config.layout.monitors(),
            "client monitors config"
        );
        self.0.client_monitors_config(&config.layout, config.slots)
    }
}

/// The guest's QXL cursor to the server's cursor channel (head 0).
pub struct SpiceCursor(pub Arc<SpiceServer>);

impl CursorSink for SpiceCursor {
    fn cursor(&self, ev: CursorEvent) {
        let update = match ev {
            CursorEvent::Set {
                shape,
                x,
                y,
                visible,
            } => spice::CursorUpdate::Set {
                shape,
                x,
                y,
                visible,
            },
            CursorEvent::Move { x, y } => spice::CursorUpdate::Move { x, y },
            CursorEvent::Hide => spice::CursorUpdate::Hide,
            CursorEvent::Trail { length, frequency } => {
                spice::CursorUpdate::Trail { length, frequency }
            }
            CursorEvent::Reset => spice::CursorUpdate::Reset,
        };
        self.0.cursor_update(0, update);
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
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use devices::interrupt::NoIrq;
    use devices::legacy::i8042::I8042;
    use devices::{BusDevice, VmRequest, VmRequests};
    use spice::client::{ClientOptions, TestClient};
    use spice::proto::channel as ch;

    struct NoRequests;
    impl VmRequests for NoRequests {
        fn request(&self, _: VmRequest) {}
    }

    /// Keyboard bytes waiting in the controller, read as the guest reads them.
    fn drain(i8042: &Mutex<I8042>) -> Vec<u8> {
        let mut k = i8042.lock().unwrap();
        let mut got = Vec::new();
        loop {
            let mut st = [0u8];
            k.read(0x60, 4, &mut st);
            if st[0] & 1 == 0 {
                return got;
            }
            let mut b = [0u8];
            k.read(0x60, 0, &mut b);
            got.push(b[0]);
        }
    }

    /// The keyboard side as the builder wires it (i8042 → router → SPICE server),
    /// driven at the i8042's ports as a guest driver drives them.
    #[test]
    fn guest_leds_reach_a_spice_client_pushed_and_keys_come_back() {
        let i8042 = Arc::new(Mutex::new(I8042::new(
            Arc::new(NoIrq),
            Arc::new(NoIrq),
            Arc::new(NoRequests),
        )));
        let router = InputRouter::new(i8042.clone(), i8042.clone(), None);
        i8042.lock().unwrap().set_led_listener(router.clone());
        let server = SpiceServer::start(
            spice::Config {
                listen: spice::Listen::Tcp("127.0.0.1:0".parse().unwrap()),
                password: None,
                force_raw_images: false,
                playback_compression: true,
                jpeg: Default::default(),
                streaming_video: Default::default(),
                images: Default::default(),
                transport: Default::default(),
            },
            spice::Ports {
                input: Some(Arc::new(SpiceInput(router.clone()))),
                ..spice::Ports::default()
            },
        )
        .unwrap();
        // No display port, no display channel.
        assert_eq!(server.channels(), vec![(ch::INPUTS, 0)]);
        let c = TestClient::connect(
            &server.local_addr(),
            ClientOptions {
                channels: vec![ch::INPUTS],
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let t = Duration::from_secs(20);
        c.wait(t, |s| s.inputs_init == Some(0)).unwrap();
        // The guest's keyboard driver turns Num Lock on (ED 02): the i8042 pushes
        // it through the router to the server, which tells the client.
        {
            let mut k = i8042.lock().unwrap();
            k.write(0x60, 0, &[0xed]);
            k.write(0x60, 0, &[0x02]);
        }
        c.wait(t, |s| s.modifiers.last() == Some(&2)).unwrap();
        // A key from the client arrives at the same keyboard QMP types on.
        drain(&i8042);
        c.key_scancode(&[0x1e, 0x9e]).unwrap();
        let deadline = Instant::now() + t;
        let mut got = Vec::new();
        while got.len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            got.extend(drain(&i8042));
        }
        // Set 2 (untranslated): A make 1C, break F0 1C.
        assert_eq!(got, vec![0x1c, 0xf0, 0x1c]);
    }

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
