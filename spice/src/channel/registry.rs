//! The channel kinds a server offers, built from its ports, and everything the
//! link stage and the MAIN channel derive from them.

use std::sync::Arc;

use super::cursor::CursorChannel;
use super::display::DisplayChannel;
use super::inputs::InputsChannel;
use super::main::MainChannel;
use super::playback::PlaybackChannel;
use super::port::PortChannel;
use super::record::RecordChannel;
use super::usbredir::UsbredirChannel;
use super::ChannelKind;
use crate::proto::channel as ch;
use crate::{Error, JpegMode, Ports, StreamingVideo};

/// Most display heads a server takes (QXL devices in a machine; spice-gtk
/// handles up to 16 monitors).
pub const MAX_HEADS: u8 = 16;

pub struct Registry {
    kinds: Vec<Arc<dyn ChannelKind>>,
}

/// The kinds built for a set of ports: a channel for each port that exists.
pub struct Built {
    pub registry: Registry,
    /// The display kind, fed by `SpiceServer::update`.
    pub display: Option<Arc<DisplayChannel>>,
    /// The cursor kind, fed by `SpiceServer::cursor_update`.
    pub cursor: Option<Arc<CursorChannel>>,
}

impl Registry {
    /// MAIN always; DISPLAY and CURSOR with ids 0..heads when there are display
    /// heads; INPUTS when there is an input port; PLAYBACK with an audio out
    /// port, RECORD with an audio in port; then `extra` kinds (channels of
    /// later ports, and test kinds), in that order, which is CHANNELS_LIST's.
    /// Playback compression on (the server's default).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn for_ports(
        ports: Ports,
        force_raw_images: bool,
        extra: Vec<Arc<dyn ChannelKind>>,
    ) -> Result<Built, Error> {
        Self::for_ports_with(
            ports,
            force_raw_images,
            true,
            JpegMode::default(),
            StreamingVideo::default(),
            extra,
        )
    }

    /// [`Registry::for_ports`], with playback compression (Opus for clients
    /// that announce it) on or off, and JPEG for photo-like images per `jpeg`.
    pub fn for_ports_with(
        ports: Ports,
        force_raw_images: bool,
        playback_compression: bool,
        jpeg: JpegMode,
        streaming: StreamingVideo,
        extra: Vec<Arc<dyn ChannelKind>>,
    ) -> Result<Built, Error> {
        if ports.display_heads > MAX_HEADS {
            return Err(Error::Config(format!(
                "{} display heads (at most {MAX_HEADS})",
                ports.display_heads
            )));
        }
        let display = (ports.display_heads > 0).then(|| {
            Arc::new(DisplayChannel::new(
                ports.display_heads,
                force_raw_images,
                jpeg,
                streaming,
            ))
        });
        let mut kinds: Vec<Arc<dyn ChannelKind>> = vec![Arc::new(
            MainChannel::new(ports.input.as_ref(), ports.agent)
                .with_monitors_config(ports.monitors_config),
        )];
        if let Some(d) = &display {
            kinds.push(d.clone());
        }
        if let Some(input) = ports.input {
            kinds.push(Arc::new(InputsChannel::new(input, display.clone())));
        }
        let cursor = display
            .is_some()
            .then(|| Arc::new(CursorChannel::new(ports.display_heads)));
        if let Some(c) = &cursor {
            kinds.push(c.clone());
        }
        let usbredir = UsbredirChannel::new(ports.streams.clone());
        if !usbredir.is_empty() {
            kinds.push(Arc::new(usbredir));
        }
        let named_ports = PortChannel::new(ports.streams.clone());
        if !named_ports.is_empty() {
            kinds.push(Arc::new(named_ports));
        }
        if let Some(out) = ports.audio_out {
            kinds.push(Arc::new(PlaybackChannel::new(out, playback_compression)));
        }
        if let Some(input) = ports.audio_in {
            kinds.push(Arc::new(RecordChannel::new(input)));
        }
        kinds.extend(extra);
        Ok(Built {
            registry: Registry::new(kinds)?,
            display,
            cursor,
        })
    }

    /// Checks the set: one MAIN with id 0 only, one kind per channel type, no
    /// id twice.
    pub fn new(kinds: Vec<Arc<dyn ChannelKind>>) -> Result<Registry, Error> {
        let mut seen = Vec::new();
        for k in &kinds {
            let t = k.channel_type();
            if seen.contains(&t) {
                return Err(Error::Config(format!("channel type {t} registered twice")));
            }
            seen.push(t);
            let mut ids = k.ids();
            ids.sort_unstable();
            if ids.windows(2).any(|w| w[0] == w[1]) {
                return Err(Error::Config(format!("channel type {t} lists an id twice")));
            }
            if t == ch::MAIN && ids != [0] {
                return Err(Error::Config("MAIN must have exactly id 0".into()));
            }
        }
        if !seen.contains(&ch::MAIN) {
            return Err(Error::Config("no MAIN channel".into()));
        }
        Ok(Registry { kinds })
    }

    /// The kind serving (type, id), if this server offers it.
    pub fn find(&self, channel_type: u8, channel_id: u8) -> Option<&Arc<dyn ChannelKind>> {
        self.kinds
            .iter()
            .find(|k| k.channel_type() == channel_type && k.ids().contains(&channel_id))
    }

    /// The channel capabilities for a link to (type, id); None = not offered.
    pub fn link_caps(&self, channel_type: u8, channel_id: u8) -> Option<Vec<u32>> {
        self.find(channel_type, channel_id).map(|k| k.caps())
    }

    /// CHANNELS_LIST: every offered (type, id) but MAIN, which spice-server does
    /// not list either (spice-gtk would open a second main channel for it).
    pub fn channels_list(&self) -> Vec<(u8, u8)> {
        self.kinds
            .iter()
            .filter(|k| k.channel_type() != ch::MAIN)
            .flat_map(|k| {
                let t = k.channel_type();
                let mut ids = k.ids();
                ids.sort_unstable();
                ids.into_iter().map(move |id| (t, id))
            })
            .collect()
    }
}
