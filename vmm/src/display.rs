//! The QXL VGA card in the machine: its legacy side (VGA/VBE ports and the
//! 0xA0000 window are fixed ISA addresses, not BARs, so they sit on the buses),
//! and the display model that frontends and screendump read.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use devices::display::image_file;
use devices::display::qxl::{DeviceMode, Qxl, BAR_RAM};
use devices::display::qxl_engine::{CursorSink, DrawNotify};
use devices::display::vga::{self, WindowMapper};
use devices::display::{FbDirty, Frame, Rect, Screen, Update};
use devices::{BusDevice, HostMemory};

use crate::memory::BarSlots;

/// VGA (0x3B0–0x3DF) and Bochs VBE (0x1CE–0x1D0) ports of the QXL device.
pub struct VgaPorts(pub Arc<Mutex<Qxl>>);

impl BusDevice for VgaPorts {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = (base + offset) as u16;
        self.0.lock().unwrap().vga_port_read(port, data);
    }
    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let port = (base + offset) as u16;
        self.0.lock().unwrap().vga_port_write(port, data);
    }
}

/// The legacy VGA memory window at 0xA0000–0xBFFFF.
pub struct VgaWindow(pub Arc<Mutex<Qxl>>);

impl BusDevice for VgaWindow {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        self.0.lock().unwrap().vga_mem_read(offset, data);
    }
    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.0.lock().unwrap().vga_mem_write(offset, data);
    }
}

/// The VGA window's key among the `BarSlots` (no PCI function has it).
const WINDOW_SLOT: (usize, usize) = (usize::MAX, 0);

/// Puts the mode-13h window (0xA0000–0xAFFFF) in guest memory for the VGA
/// (`devices::display::vga::WindowMapper`), as one more dirty-logged slot.
pub struct WindowSlot(pub Arc<BarSlots>);

impl WindowMapper for WindowSlot {
    fn map_window(&self, mem: Option<&HostMemory>) -> bool {
        let (key, bar) = WINDOW_SLOT;
        match mem {
            Some(m) => self.0.place(key, bar, Some(vga::WINDOW_BASE), m),
            // Unmapping needs no memory: the slot remembers its own.
            None => self.0.unplace(key, bar),
        }
    }
}

/// How often the screen is looked at, as QEMU's default GUI refresh (30 ms).
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(30);
/// In native QXL mode every change is announced (`DrawNotify`), so the
/// periodic look is only a safety net.
const NATIVE_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Native QXL commands that drew wake the display thread at once, but no
/// sooner than this after its last look, so a guest pushing drawables one by
/// one costs at most this many refreshes a second (500).
const MIN_WAKE_INTERVAL: Duration = Duration::from_millis(2);

/// The display thread's alarm: set by `drawn` (the QXL worker), taken by
/// the thread between two refreshes.
#[derive(Default)]
struct RefreshWake {
    due: Mutex<bool>,
    cv: Condvar,
}

impl DrawNotify for RefreshWake {
    fn drawn(&self) {
        *self.due.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }
}

impl RefreshWake {
    /// Wait until `deadline`, or until woken and at least `earliest`.
    fn wait(&self, earliest: Instant, deadline: Instant) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            if *due && now >= earliest {
                *due = false;
                return;
            }
            if now >= deadline {
                return;
            }
            let until = if *due { earliest } else { deadline };
            due = self
                .cv
                .wait_timeout(due, until.saturating_duration_since(now))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Something that shows the screen: the SPICE server.
pub trait Frontend: Send + Sync {
    /// `update` says what changed in `frame` since the last call.
    fn show(&self, frame: &Frame, update: &Update);
}

/// File format for `screendump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScreenFormat {
    Png,
    Ppm,
}

/// The display model of the machine's QXL card, refreshed on a timer and on
/// demand (screendump), feeding the frontends.
pub struct Display {
    qxl: Arc<Mutex<Qxl>>,
    slots: Arc<BarSlots>,
    devfn: usize,
    state: Mutex<State>,
    wake: Arc<RefreshWake>,
}

struct State {
    screen: Screen,
    frontends: Vec<Arc<dyn Frontend>>,
}

impl Display {
    pub fn new(qxl: Arc<Mutex<Qxl>>, slots: Arc<BarSlots>, devfn: usize) -> Self {
        let wake = Arc::new(RefreshWake::default());
        qxl.lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_draw_notify(wake.clone());
        Display {
            wake,
            qxl,
            slots,
            devfn,
            state: Mutex::new(State {
                screen: Screen::new(),
                frontends: Vec::new(),
            }),
        }
    }

    pub fn add_frontend(&self, f: Arc<dyn Frontend>) {
        let mut st = self.lock_state();
        // A new frontend starts from the whole current picture.
        let frame = st.screen.frame().clone();
        if frame.width > 0 {
            let whole = Update {
                mode_changed: true,
                rects: vec![Rect {
                    x: 0,
                    y: 0,
                    width: frame.width,
                    height: frame.height,
                }],
                draws: Vec::new(),
            };
            f.show(&frame, &whole);
        }
        st.frontends.push(f);
    }

    /// Does the guest's QXL driver take client monitors configs now?
    pub fn takes_client_monitors_config(&self) -> bool {
        let qxl = self.qxl.lock().unwrap_or_else(|e| e.into_inner());
        qxl.takes_client_monitors_config()
    }

    /// A client's monitor layout in `slots` head slots, to the QXL ROM and
    /// its interrupt; whether the guest's driver was told.
    pub fn client_monitors_config(&self, layout: &spice::MonitorLayout, slots: u32) -> bool {
        let mut qxl = self.qxl.lock().unwrap_or_else(|e| e.into_inner());
        qxl.client_monitors_config(layout, slots)
    }

    /// The guest's QXL cursor commands go to `sink`.
    pub fn set_cursor_sink(&self, sink: Arc<dyn CursorSink>) {
        let qxl = self.qxl.lock().unwrap_or_else(|e| e.into_inner());
        qxl.set_cursor_sink(sink);
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bring the model up to date and tell the frontends what changed.
    pub fn refresh(&self) -> Update {
        self.refresh_and_mode().0
    }

    /// `refresh`, and whether the card was out of VGA mode (native QXL, or
    /// between two primaries) when it looked.
    fn refresh_and_mode(&self) -> (Update, bool) {
        let mut st = self.lock_state();
        let native = {
            let qxl = self.qxl.lock().unwrap_or_else(|e| e.into_inner());
            qxl.mode() != DeviceMode::Vga
        };
        // Native mode draws from the engine's canvas, not BAR0's pages; not
        // asking for the dirty log also leaves the guest's ring and drawable
        // pages writable (each ask write-protects the pages written since).
        let (dirty, window) = if native {
            (FbDirty::Unknown, FbDirty::Unknown)
        } else {
            let (key, bar) = WINDOW_SLOT;
            (
                self.slots.dirty_log(self.devfn, BAR_RAM),
                self.slots.dirty_log(key, bar),
            )
        };
        let update = {
            let mut qxl = self.qxl.lock().unwrap_or_else(|e| e.into_inner());
            // Stores into the mapped mode-13h window, into VGA memory first.
            if !native {
                qxl.vga_mut().sync_window(&window);
            }
            st.screen
                .refresh_with_window(&qxl, dirty, &window, Instant::now())
        };
        if !update.is_empty() {
            for f in &st.frontends {
                f.show(st.screen.frame(), &update);
            }
        }
        (update, native)
    }

    /// The current picture (after a refresh).
    pub fn snapshot(&self) -> Frame {
        self.refresh();
        self.lock_state().screen.frame().clone()
    }

    /// Write the current picture to `path`.
    pub fn screendump(&self, path: &Path, format: ScreenFormat) -> std::io::Result<()> {
        let frame = self.snapshot();
        let out = std::io::BufWriter::new(std::fs::File::create(path)?);
        match format {
            ScreenFormat::Png => image_file::write_png(&frame, out),
            ScreenFormat::Ppm => image_file::write_ppm(&frame, out),
        }
    }

    /// Refresh every `REFRESH_INTERVAL`, and soon after native QXL commands
    /// drew, on a thread of its own, for the life of the process.
    pub fn spawn_refresher(self: &Arc<Self>) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("display".into())
            .spawn(move || loop {
                let start = Instant::now();
                let (_, native) = me.refresh_and_mode();
                let period = if native {
                    NATIVE_REFRESH_INTERVAL
                } else {
                    REFRESH_INTERVAL
                };
                me.wake.wait(start + MIN_WAKE_INTERVAL, start + period);
            })
            .map(|_| ())
    }
}
