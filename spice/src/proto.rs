//! Protocol constants (spice-protocol `spice/protocol.h`, `spice/enums.h`), protocol 2.2.
//! Only what this server and its test client use.

pub const MAGIC: &[u8; 4] = b"REDQ";
pub const VERSION_MAJOR: u32 = 2;
pub const VERSION_MINOR: u32 = 2;

/// Bounds spice-server applies before allocating anything for a link.
pub const LINK_MESS_SIZE: usize = 18;
pub const LINK_MAX_SIZE: u32 = 4096;
pub const LINK_MAX_CAPS: u32 = 1024;
pub const LINK_REPLY_SIZE: usize = 178;
pub const TICKET_PUBKEY_BYTES: usize = 162;
pub const TICKET_BYTES: usize = 128;
pub const MAX_PASSWORD_LENGTH: usize = 60;

pub mod link_err {
    pub const OK: u32 = 0;
    pub const ERROR: u32 = 1;
    pub const INVALID_MAGIC: u32 = 2;
    pub const INVALID_DATA: u32 = 3;
    pub const VERSION_MISMATCH: u32 = 4;
    pub const NEED_SECURED: u32 = 5;
    pub const NEED_UNSECURED: u32 = 6;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const BAD_CONNECTION_ID: u32 = 8;
    pub const CHANNEL_NOT_AVAILABLE: u32 = 9;
}

pub mod common_cap {
    pub const PROTOCOL_AUTH_SELECTION: u32 = 0;
    pub const AUTH_SPICE: u32 = 1;
    pub const AUTH_SASL: u32 = 2;
    pub const MINI_HEADER: u32 = 3;
}

pub mod channel {
    pub const MAIN: u8 = 1;
    pub const DISPLAY: u8 = 2;
    pub const INPUTS: u8 = 3;
    pub const CURSOR: u8 = 4;
    pub const PLAYBACK: u8 = 5;
    pub const RECORD: u8 = 6;
    pub const SMARTCARD: u8 = 8;
    pub const USBREDIR: u8 = 9;
    pub const PORT: u8 = 10;
    pub const WEBDAV: u8 = 11;
}

/// MAIN channel capabilities.
pub mod main_cap {
    pub const SEMI_SEAMLESS_MIGRATE: u32 = 0;
    pub const NAME_AND_UUID: u32 = 1;
    pub const AGENT_CONNECTED_TOKENS: u32 = 2;
    pub const SEAMLESS_MIGRATE: u32 = 3;
}

pub const INPUTS_CAP_KEY_SCANCODE: u32 = 0;
/// The client composites (spice-gtk); spice-html5 has no DRAW_TRANSPARENT or
/// DRAW_ALPHA_BLEND and does not announce it.
pub const DISPLAY_CAP_COMPOSITE: u32 = 2;
pub const DISPLAY_CAP_STREAM_REPORT: u32 = 4;
pub const DISPLAY_CAP_LZ4_COMPRESSION: u32 = 5;

/// Base messages, server to client.
pub mod msg {
    pub const SET_ACK: u16 = 3;
    pub const PING: u16 = 4;
    pub const DISCONNECTING: u16 = 6;
    pub const NOTIFY: u16 = 7;
}

/// Base messages, client to server.
pub mod msgc {
    pub const ACK_SYNC: u16 = 1;
    pub const ACK: u16 = 2;
    pub const PONG: u16 = 3;
    pub const DISCONNECTING: u16 = 6;
}

pub mod main_msg {
    pub const INIT: u16 = 103;
    pub const CHANNELS_LIST: u16 = 104;
    pub const MOUSE_MODE: u16 = 105;
    pub const MULTI_MEDIA_TIME: u16 = 106;
    pub const AGENT_CONNECTED: u16 = 107;
    pub const AGENT_DISCONNECTED: u16 = 108;
    pub const AGENT_DATA: u16 = 109;
    pub const AGENT_TOKEN: u16 = 110;
    pub const AGENT_CONNECTED_TOKENS: u16 = 115;
}

pub mod main_msgc {
    pub const CLIENT_INFO: u16 = 101;
    pub const ATTACH_CHANNELS: u16 = 104;
    pub const MOUSE_MODE_REQUEST: u16 = 105;
    pub const AGENT_START: u16 = 106;
    pub const AGENT_DATA: u16 = 107;
    pub const AGENT_TOKEN: u16 = 108;
}

pub const MOUSE_MODE_SERVER: u16 = 1;
pub const MOUSE_MODE_CLIENT: u16 = 2;

pub mod display_msg {
    pub const MARK: u16 = 102;
    pub const RESET: u16 = 103;
    pub const COPY_BITS: u16 = 104;
    pub const INVAL_LIST: u16 = 105;
    pub const INVAL_ALL_PALETTES: u16 = 108;
    pub const STREAM_CREATE: u16 = 122;
    pub const STREAM_DATA: u16 = 123;
    pub const STREAM_CLIP: u16 = 124;
    pub const STREAM_DESTROY: u16 = 125;
    pub const STREAM_DESTROY_ALL: u16 = 126;
    pub const DRAW_FILL: u16 = 302;
    pub const DRAW_COPY: u16 = 304;
    pub const DRAW_TRANSPARENT: u16 = 312;
    pub const DRAW_ALPHA_BLEND: u16 = 313;
    pub const SURFACE_CREATE: u16 = 314;
    pub const SURFACE_DESTROY: u16 = 315;
    pub const MONITORS_CONFIG: u16 = 317;
    pub const DRAW_COMPOSITE: u16 = 318;
    pub const STREAM_ACTIVATE_REPORT: u16 = 319;
}

pub mod display_msgc {
    pub const INIT: u16 = 101;
    pub const STREAM_REPORT: u16 = 102;
    pub const PREFERRED_COMPRESSION: u16 = 103;
    pub const GL_DRAW_DONE: u16 = 104;
    pub const PREFERRED_VIDEO_CODEC_TYPE: u16 = 105;
}

pub const SURFACE_FMT_32_XRGB: u32 = 32;
pub const SURFACE_FLAGS_PRIMARY: u32 = 1;
pub const ROPD_OP_PUT: u16 = 8;
pub const BRUSH_TYPE_SOLID: u8 = 1;
pub const IMAGE_TYPE_BITMAP: u8 = 0;
pub const IMAGE_TYPE_LZ_RGB: u8 = 101;
pub const IMAGE_TYPE_GLZ_RGB: u8 = 102;
pub const IMAGE_TYPE_FROM_CACHE: u8 = 103;
pub const IMAGE_TYPE_JPEG: u8 = 105;
pub const IMAGE_TYPE_FROM_CACHE_LOSSLESS: u8 = 106;
pub const IMAGE_TYPE_ZLIB_GLZ_RGB: u8 = 107;
/// A JPEG of the colours and an LZ XXXA plane of the alpha (`SpiceJPEGAlphaData`).
pub const IMAGE_TYPE_JPEG_ALPHA: u8 = 108;
/// SPICE_JPEG_ALPHA_FLAGS_TOP_DOWN: the alpha plane's rows go top to bottom.
pub const JPEG_ALPHA_FLAGS_TOP_DOWN: u8 = 1;
pub const IMAGE_TYPE_LZ4: u8 = 109;
/// SpiceImageDescriptor flag: the client keeps the image under its id.
pub const IMAGE_FLAGS_CACHE_ME: u8 = 1;
/// Replace the client's lossy copy of this cached image with this lossless one.
pub const IMAGE_FLAGS_CACHE_REPLACE_ME: u8 = 4;
/// INVAL_LIST resource type of a pixmap.
pub const RES_TYPE_PIXMAP: u8 = 1;
pub const BITMAP_FMT_32BIT: u8 = 8;
pub const BITMAP_FMT_RGBA: u8 = 9;
pub const BITMAP_FLAGS_TOP_DOWN: u8 = 4;

pub mod inputs_msg {
    pub const INIT: u16 = 101;
    pub const KEY_MODIFIERS: u16 = 102;
    pub const MOUSE_MOTION_ACK: u16 = 111;
}

pub mod inputs_msgc {
    pub const KEY_DOWN: u16 = 101;
    pub const KEY_UP: u16 = 102;
    pub const KEY_MODIFIERS: u16 = 103;
    pub const KEY_SCANCODE: u16 = 104;
    pub const MOUSE_MOTION: u16 = 111;
    pub const MOUSE_POSITION: u16 = 112;
    pub const MOUSE_PRESS: u16 = 113;
    pub const MOUSE_RELEASE: u16 = 114;
}

pub const INPUT_MOTION_ACK_BUNCH: u32 = 4;

pub mod button {
    pub const LEFT: u8 = 1;
    pub const MIDDLE: u8 = 2;
    pub const RIGHT: u8 = 3;
    pub const UP: u8 = 4;
    pub const DOWN: u8 = 5;
    pub const SIDE: u8 = 6;
    pub const EXTRA: u8 = 7;
}

pub mod button_mask {
    pub const LEFT: u16 = 1;
    pub const MIDDLE: u16 = 2;
    pub const RIGHT: u16 = 4;
    pub const UP: u16 = 8;
    pub const DOWN: u16 = 16;
    pub const SIDE: u16 = 32;
    pub const EXTRA: u16 = 64;
}

pub mod cursor_msg {
    pub const INIT: u16 = 101;
    pub const RESET: u16 = 102;
    pub const SET: u16 = 103;
    pub const MOVE: u16 = 104;
    pub const HIDE: u16 = 105;
    pub const TRAIL: u16 = 106;
    pub const INVAL_ONE: u16 = 107;
    pub const INVAL_ALL: u16 = 108;
}

pub const CURSOR_TYPE_ALPHA: u8 = 0;
pub const CURSOR_FLAGS_NONE: u16 = 1;
pub const CURSOR_FLAGS_CACHE_ME: u16 = 2;
pub const CURSOR_FLAGS_FROM_CACHE: u16 = 4;

/// Is capability `bit` set in a capability word array?
pub fn has_cap(caps: &[u32], bit: u32) -> bool {
    caps.get((bit / 32) as usize)
        .is_some_and(|w| w & (1 << (bit % 32)) != 0)
}

/// PLAYBACK and RECORD channels (spice-protocol `enums.h`).
pub mod audio {
    pub const PLAYBACK_CAP_VOLUME: u32 = 1;
    pub const PLAYBACK_CAP_LATENCY: u32 = 2;
    pub const PLAYBACK_CAP_OPUS: u32 = 3;
    pub const RECORD_CAP_VOLUME: u32 = 1;
    pub const RECORD_CAP_OPUS: u32 = 2;
    pub const MODE_RAW: u16 = 1;
    pub const MODE_OPUS: u16 = 3;
    pub const FMT_S16: u16 = 1;
    /// The rate clients play and record at (and Opus's).
    pub const RATE: u32 = 48_000;
    pub const CHANNELS: u32 = 2;
    /// Samples per channel in one DATA message: 10 ms.
    pub const FRAME_SAMPLES: usize = 480;
}

pub mod playback_msg {
    pub const DATA: u16 = 101;
    pub const MODE: u16 = 102;
    pub const START: u16 = 103;
    pub const STOP: u16 = 104;
    pub const VOLUME: u16 = 105;
    pub const MUTE: u16 = 106;
    pub const LATENCY: u16 = 107;
}

pub mod record_msg {
    pub const START: u16 = 101;
    pub const STOP: u16 = 102;
    pub const VOLUME: u16 = 103;
    pub const MUTE: u16 = 104;
}

pub mod record_msgc {
    pub const DATA: u16 = 101;
    pub const MODE: u16 = 102;
    pub const START_MARK: u16 = 103;
}
