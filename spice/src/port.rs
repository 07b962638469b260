//! Ports: the typed connections between the server and the VM it serves.
//!
//! The server is built with the ports the machine has ([`crate::Ports`]), and a
//! channel is offered only when its port exists: no input port, no INPUTS channel;
//! no agent port, no agent in MAIN_INIT; no display head, no DISPLAY or CURSOR.
//!
//! Every port follows one shape, so that neither side ever blocks the other:
//!
//! * **server → VM**: methods of the port trait, which the VM side implements.
//!   They are called from the server's async tasks and must return at once (queue,
//!   or refuse and say so); they never wait for the guest.
//! * **VM → server**: a handle the server gives the port once, through `attach`,
//!   when the server starts. The VM side keeps it and pushes through it (LED
//!   changes, agent bytes, audio, stream bytes) from any thread; the handle only
//!   queues and wakes the channel task, and says "full" instead of blocking.
//!
//! Ports whose channels arrive with later devices are defined here already, so
//! those devices are written against a fixed shape: [`AudioOutPort`] (PLAYBACK),
//! [`AudioInPort`] (RECORD) and [`StreamPort`] (the spicevmc family: USBREDIR, PORT,
//! WEBDAV). Their channel modules implement the `*Sink` side and add the port to
//! [`crate::Ports`].

use std::sync::Arc;

use tokio::sync::watch;

/// Pointer buttons, as bits of a button state: PS/2 order for the first three
/// (left, right, middle), then the side and extra buttons.
pub mod buttons {
    pub const LEFT: u8 = 1;
    pub const RIGHT: u8 = 2;
    pub const MIDDLE: u8 = 4;
    pub const SIDE: u8 = 8;
    pub const EXTRA: u8 = 16;
}

/// Absolute positions run from 0 to this on both axes of a head, whatever its
/// size in pixels (QEMU's INPUT_EVENT_ABS_MAX, what USB and virtio tablets report).
pub const ABS_MAX: u32 = 0x7fff;

/// Keyboard LED bits, as PS/2 sends them and SPICE KEY_MODIFIERS carries them.
pub mod leds {
    pub const SCROLL_LOCK: u8 = 1;
    pub const NUM_LOCK: u8 = 2;
    pub const CAPS_LOCK: u8 = 4;
}

/// The guest's keyboard and pointers (INPUTS channel). The VM side routes these to
/// its devices (PS/2, a tablet), merged with its other input sources.
pub trait InputPort: Send + Sync + 'static {
    /// PC set-1 scancode; 0xE0-prefixed keys as 0xE0xx; Pause as 0xE11D.
    /// `pressed` false = release.
    fn key(&self, xt_scancode: u16, pressed: bool);
    /// Relative motion (dy positive = down), wheel `dz` (positive = towards the
    /// user, i.e. down), and the whole button state of this client ([`buttons`]).
    fn relative(&self, dx: i32, dy: i32, dz: i32, buttons: u8);
    /// Absolute position on `head`, 0..=[`ABS_MAX`] on each axis, with wheel and
    /// buttons as in `relative`. Called only if `has_absolute`.
    fn absolute(&self, head: u8, x: u32, y: u32, dz: i32, buttons: u8);
    /// Is there an absolute pointer (a tablet)? Decides whether clients may use
    /// client mouse mode (their own pointer, absolute positions).
    fn has_absolute(&self) -> bool;
    /// The keyboard LEDs now ([`leds`] bits). Read when an INPUTS channel opens;
    /// changes afterwards come through the [`LedNotifier`].
    fn leds(&self) -> u8;
    /// Called once when the server starts: the VM pushes LED changes through
    /// `notifier` as the guest makes them, so the server never polls.
    fn attach(&self, notifier: LedNotifier);
    /// An INPUTS channel ended, after releasing the keys and buttons it knew it
    /// held: the VM side may release anything else its clients still hold.
    fn detached(&self);
    /// Called once when the server starts: the VM pushes `has_absolute` through
    /// `notifier` whenever it changes (a tablet's driver starting or stopping),
    /// and the MAIN channel offers or withdraws client mouse mode. A port whose
    /// answer never changes need not keep it.
    fn attach_absolute(&self, notifier: AbsoluteNotifier) {
        let _ = notifier;
    }
}

/// Pushes whether the VM has an absolute pointer now (see
/// [`InputPort::attach_absolute`]). Cheap, never blocks.
#[derive(Clone)]
pub struct AbsoluteNotifier(pub(crate) Arc<watch::Sender<bool>>);

impl AbsoluteNotifier {
    pub fn set(&self, has_absolute: bool) {
        self.0
            .send_if_modified(|v| std::mem::replace(v, has_absolute) != has_absolute);
    }
}

/// Pushes the guest's keyboard LEDs to the server's INPUTS channels. Cheap, never
/// blocks: it stores the value and wakes the channel tasks.
#[derive(Clone)]
pub struct LedNotifier(pub(crate) Arc<watch::Sender<u8>>);

impl LedNotifier {
    pub fn set(&self, leds: u8) {
        self.0.send_replace(leds & 7);
    }
}

/// The largest agent message piece in either direction (VD_AGENT_MAX_DATA_SIZE).
pub const AGENT_MAX_DATA: usize = 2048;
/// Client → guest window: the client may have this many AGENT_DATA messages in
/// flight (MAIN_INIT's agent_tokens). The port must accept that many without
/// refusing; a client that sends more is cut off. spice-server grants 10
/// (REDS_AGENT_WINDOW_SIZE): 20 KiB in flight made a 10 MiB paste a token
/// round trip (client -> server -> guest -> server -> client) per 20 KiB;
/// 64 (128 KiB, half the guest port's queue) keeps the client sending while
/// the guest reads. Clients take whatever number MAIN_INIT gives.
pub const AGENT_CLIENT_TOKENS: u32 = 64;
/// Tokens are returned to the client in batches of at least this many (as
/// spice-server does every REDS_TOKENS_TO_SEND = 5), or all at once when the
/// guest has taken everything the client sent: one AGENT_TOKEN (and one client
/// wake-up) per 16 messages instead of one per message.
pub const AGENT_TOKEN_BATCH: u32 = 16;
/// Guest → client pieces the server holds while the client has no tokens or
/// the channel has not sent them yet: spice-server's 5 receive buffers
/// (REDS_VDI_PORT_NUM_RECEIVE_BUFFS) of 64 KiB each, in 2 KiB pieces; past
/// that, [`AgentLink::send`] refuses. (5 pieces made the guest's port stall
/// and resume every 10 KiB.)
pub const AGENT_QUEUE: usize = 5 * 64 * 1024 / AGENT_MAX_DATA;

/// The guest agent's byte stream (the virtio-serial port `com.redhat.spice.0`
/// that spice-vdagent opens), relayed by the MAIN channel with SPICE's token flow
/// control in both directions.
///
/// Client → guest: the client spends a token per AGENT_DATA; the server hands the
/// data to [`client_data`](AgentPort::client_data), and the port calls
/// [`AgentLink::consumed`] once the guest has taken it, which returns the token.
/// Guest → client: the port calls [`AgentLink::send`] with pieces of at most
/// [`AGENT_MAX_DATA`] bytes; the server sends one per client token and queues up
/// to [`AGENT_QUEUE`]; when full, `send` refuses and the port holds the data
/// (leaving it in the guest's virtqueue) until [`resume`](AgentPort::resume).
pub trait AgentPort: Send + Sync + 'static {
    /// Called once when the server starts.
    fn attach(&self, link: AgentLink);
    /// One client AGENT_DATA payload (at most [`AGENT_MAX_DATA`] bytes) for the
    /// guest. The port keeps it until the guest reads it; at most
    /// [`AGENT_CLIENT_TOKENS`] are outstanding.
    fn client_data(&self, data: &[u8]);
    /// A client started talking to the agent (AGENT_START), or its session ended
    /// (then queued client data may be dropped and the agent told, as
    /// VD_AGENT_CLIENT_DISCONNECTED).
    fn client_attached(&self, attached: bool);
    /// The server has room again after [`AgentLink::send`] refused.
    fn resume(&self);
}

pub use crate::channel::agent::AgentLink;

/// A client's monitor layout: VD_AGENT_MONITORS_CONFIG, which spice-gtk sends
/// inside agent data when its window is resized or a monitor is enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientMonitorsConfig {
    /// The client's `num_of_monitors`: head slots, enabled or not (with the
    /// agent's sparse-monitors capability spice-gtk sends every slot, a
    /// disabled one all zeros).
    pub slots: u32,
    /// The enabled heads (width and height not 0); a head's id is its slot.
    pub layout: display_types::MonitorLayout,
}

/// The display device's side of client monitors configs (QXL: the ROM's
/// client monitors config and the CLIENT_MONITORS_CONFIG interrupt). Without
/// this port, or while the guest's driver does not take them, monitors configs
/// go to the agent like any other agent message (what spice-server does).
pub trait MonitorsConfigPort: Send + Sync + 'static {
    /// Does the guest's display driver take client monitors configs now (QXL:
    /// its int_mask has CLIENT_MONITORS_CONFIG)? Asked when a client starts
    /// talking to the agent (AGENT_START), as spice-server does: if so, that
    /// client's monitors configs go to [`client_monitors_config`] instead of
    /// the agent. Returns at once.
    ///
    /// [`client_monitors_config`]: MonitorsConfigPort::client_monitors_config
    fn takes_client_monitors_config(&self) -> bool;
    /// A client's monitors config, checked and complete. Returns whether the
    /// guest was told (false if its driver stopped listening meanwhile; the
    /// config is then dropped, as spice-server does). Returns at once.
    fn client_monitors_config(&self, config: &ClientMonitorsConfig) -> bool;
}

/// PCM as SPICE audio carries it: signed 16-bit little-endian, interleaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcmFormat {
    pub channels: u8,
    pub rate: u32,
}

/// What the server refused because the client is behind; the producer drops it
/// (audio) or keeps it in the guest's queue until resumed (byte streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Guest audio output (an AC97 or HDA codec's playback DMA) → PLAYBACK channel.
/// The device paces itself by the guest's sample clock and pushes whole periods;
/// the server never asks for data.
pub trait AudioOutPort: Send + Sync + 'static {
    /// Called once when the server starts.
    fn attach(&self, sink: Arc<dyn AudioOutSink>);
    /// Whether a client is listening (the device may stop converting when not).
    fn client_attached(&self, attached: bool);
}

/// Implemented by the PLAYBACK channel, handed to [`AudioOutPort::attach`].
pub trait AudioOutSink: Send + Sync {
    /// The guest started playing (PLAYBACK START).
    fn start(&self, format: PcmFormat);
    /// Interleaved samples; refused (and to be dropped) while the client is behind.
    fn frames(&self, samples: &[i16]) -> Result<(), Full>;
    /// The guest stopped playing (PLAYBACK STOP).
    fn stop(&self);
    /// Mixer state: per-channel volume (0..=0xffff) and mute.
    fn volume(&self, volume: &[u16], mute: bool);
}

/// Guest audio input (a codec's capture DMA) ← RECORD channel.
pub trait AudioInPort: Send + Sync + 'static {
    /// Called once when the server starts.
    fn attach(&self, control: Arc<dyn AudioInControl>);
    /// Interleaved samples the client recorded, in the format of the last
    /// [`AudioInControl::start`]. Never blocks; the device drops what it cannot
    /// buffer (a capture overrun, as on hardware).
    fn captured(&self, samples: &[i16]);
}

/// Implemented by the RECORD channel, handed to [`AudioInPort::attach`].
pub trait AudioInControl: Send + Sync {
    /// The guest started capturing (RECORD START to the client).
    fn start(&self, format: PcmFormat);
    /// The guest stopped capturing (RECORD STOP).
    fn stop(&self);
    fn volume(&self, volume: &[u16], mute: bool);
}

/// What a named byte stream carries, which decides its channel type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// USB redirection (USBREDIR channel): the usbredir protocol, which the VM's
    /// emulated USB controller speaks.
    Usbredir,
    /// A named guest port (PORT channel), e.g. `org.qemu.guest_agent.0`.
    Port,
    /// Folder sharing (WEBDAV channel, port `org.spice-space.webdav.0`).
    Webdav,
}

/// A named byte stream between a client and a guest device (the spicevmc family:
/// one channel per stream, its id distinct among streams of the same kind). The
/// server does not parse the bytes.
pub trait StreamPort: Send + Sync + 'static {
    fn kind(&self) -> StreamKind;
    /// The guest port's name (PORT channels announce it in PORT_INIT).
    fn name(&self) -> &str;
    /// Called once when the server starts.
    fn attach(&self, sink: Arc<dyn StreamSink>);
    /// Client bytes for the guest. Never blocks: `Err(Full)` means the device
    /// cannot take more now; the channel stops reading that client until
    /// [`StreamSink::resume`].
    fn client_data(&self, data: &[u8]) -> Result<(), Full>;
    /// A client opened or closed the stream (PORT EVENT OPENED/CLOSED).
    fn client_opened(&self, open: bool);
    /// The server has room again after [`StreamSink::guest_data`] refused.
    fn resume(&self);
}

/// Implemented by a spicevmc channel, handed to [`StreamPort::attach`].
pub trait StreamSink: Send + Sync {
    /// Guest bytes for the client; `Err(Full)` while the client is behind (the
    /// device keeps them in the guest's queue until [`StreamPort::resume`]).
    fn guest_data(&self, data: &[u8]) -> Result<(), Full>;
    /// The guest opened or closed its end.
    fn guest_opened(&self, open: bool);
    /// The device can take client bytes again after refusing.
    fn resume(&self);
}
