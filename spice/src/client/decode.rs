//! Strict decoding of server messages for the test client. Anything unexpected, of
//! the wrong size, or undecodable is an error: the test client exists to catch a
//! server that a real client would misread.

use crate::image::{
    decode_lz4_rgb32, decode_lz_rgb32, decode_lz_rgba, decode_lz_xxxa, zlib_inflate, MAX_DIMENSION,
};
use crate::proto::{
    channel as ch, cursor_msg, display_msg, inputs_msg, main_msg, msg, BITMAP_FLAGS_TOP_DOWN,
    BITMAP_FMT_32BIT, BITMAP_FMT_RGBA, BRUSH_TYPE_SOLID, CURSOR_FLAGS_CACHE_ME,
    CURSOR_FLAGS_FROM_CACHE, CURSOR_FLAGS_NONE, CURSOR_TYPE_ALPHA, IMAGE_FLAGS_CACHE_ME,
    IMAGE_FLAGS_CACHE_REPLACE_ME, IMAGE_TYPE_BITMAP, IMAGE_TYPE_FROM_CACHE,
    IMAGE_TYPE_FROM_CACHE_LOSSLESS, IMAGE_TYPE_GLZ_RGB, IMAGE_TYPE_JPEG, IMAGE_TYPE_JPEG_ALPHA,
    IMAGE_TYPE_LZ4, IMAGE_TYPE_LZ_RGB, IMAGE_TYPE_ZLIB_GLZ_RGB, JPEG_ALPHA_FLAGS_TOP_DOWN,
    RES_TYPE_PIXMAP, ROPD_OP_PUT, SURFACE_FLAGS_PRIMARY, SURFACE_FMT_32_XRGB,
};
use crate::wire::Reader;
use crate::BlendMode;

/// A decoded server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    SetAck {
        generation: u32,
        window: u32,
    },
    Ping {
        id: u32,
        timestamp: u64,
    },
    Notify {
        message: Vec<u8>,
    },
    Disconnecting {
        reason: u32,
    },
    MainInit {
        session_id: u32,
        display_channels: u32,
        supported_mouse_modes: u32,
        current_mouse_mode: u32,
        agent_connected: u32,
        agent_tokens: u32,
        /// The server's multimedia clock at INIT, less its 400 ms of buffering.
        multi_media_time: u32,
    },
    /// AGENT_CONNECTED (None) or AGENT_CONNECTED_TOKENS (Some(tokens)).
    AgentConnected(Option<u32>),
    AgentDisconnected(u32),
    AgentData(Vec<u8>),
    AgentToken(u32),
    ChannelsList(Vec<(u8, u8)>),
    MouseMode {
        supported: u16,
        current: u16,
    },
    MultiMediaTime(u32),
    SurfaceCreate {
        surface_id: u32,
        width: u32,
        height: u32,
        format: u32,
        flags: u32,
    },
    SurfaceDestroy {
        surface_id: u32,
    },
    /// Destination rectangle (x, y, w, h), the image (its pixels, or the
    /// pixmap cache id it names; always the box's size) and its type; with
    /// `blend` a DRAW_TRANSPARENT or DRAW_ALPHA_BLEND of the image.
    DrawCopy {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        image: CopyImage,
        image_type: u8,
        blend: Option<BlendMode>,
    },
    /// INVAL_LIST: pixmap cache ids to forget.
    InvalPixmaps(Vec<u64>),
    /// A solid overpaint of (x, y, w, h) with 0x00RRGGBB `color`.
    DrawFill {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        color: u32,
    },
    /// COPY_BITS: (x, y, w, h) gets the surface's pixels whose top-left is
    /// (src_x, src_y), all read before any is written.
    CopyBits {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        src_x: u32,
        src_y: u32,
    },
    Mark,
    Reset,
    InvalAllPalettes,
    InputsInit {
        modifiers: u16,
    },
    KeyModifiers(u16),
    MotionAck,
    CursorInit {
        visible: bool,
        width: u16,
        height: u16,
    },
    CursorOther(u16),
    CursorTrail {
        length: u16,
        frequency: u16,
    },
    /// CURSOR_SET: position, visibility and the shape's size and first pixel.
    CursorSet {
        x: i16,
        y: i16,
        visible: bool,
        width: u16,
        height: u16,
        first_pixel: u32,
    },
    CursorMove {
        x: i16,
        y: i16,
    },
    /// CURSOR_INIT as sent (the reader resolves it into `CursorInit`).
    CursorInitWire {
        visible: bool,
        shape: Option<WireCursor>,
    },
    /// CURSOR_SET as sent (the reader resolves it into `CursorSet`).
    CursorSetWire {
        x: i16,
        y: i16,
        visible: bool,
        shape: WireCursor,
    },
    CursorInvalOne(u64),
    CursorInvalAll,
}

/// A SpiceCursor as sent: flags, header and (unless FROM_CACHE) pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireCursor {
    pub unique: u64,
    pub cache_me: bool,
    pub from_cache: bool,
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    /// ARGB; empty for FROM_CACHE.
    pub pixels: Vec<u32>,
}

type R<T> = Result<T, String>;

fn need<T>(v: Option<T>, what: &str) -> R<T> {
    v.ok_or_else(|| format!("truncated {what}"))
}

fn exact(r: &Reader, what: &str) -> R<()> {
    need(r.end(), &format!("{what}: trailing bytes"))
}

/// SPICE Rect {top, left, bottom, right} → (x, y, w, h), rejecting inverted ones.
fn rect(r: &mut Reader) -> R<(u32, u32, u32, u32)> {
    let top = need(r.i32(), "rect")?;
    let left = need(r.i32(), "rect")?;
    let bottom = need(r.i32(), "rect")?;
    let right = need(r.i32(), "rect")?;
    if top < 0 || left < 0 || bottom < top || right < left {
        return Err(format!("bad rect {top},{left},{bottom},{right}"));
    }
    Ok((
        left as u32,
        top as u32,
        (right - left) as u32,
        (bottom - top) as u32,
    ))
}

pub fn decode(channel: u8, t: u16, body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    let m = match (channel, t) {
        (_, msg::SET_ACK) => ServerMsg::SetAck {
            generation: need(r.u32(), "SET_ACK")?,
            window: need(r.u32(), "SET_ACK")?,
        },
        (_, msg::PING) => {
            let id = need(r.u32(), "PING")?;
            let timestamp = need(r.u64(), "PING")?;
            r.rest(); // optional padding
            ServerMsg::Ping { id, timestamp }
        }
        (_, msg::DISCONNECTING) => {
            need(r.u64(), "DISCONNECTING")?;
            ServerMsg::Disconnecting {
                reason: need(r.u32(), "DISCONNECTING")?,
            }
        }
        (_, msg::NOTIFY) => {
            need(r.u64(), "NOTIFY")?;
            for _ in 0..3 {
                need(r.u32(), "NOTIFY")?;
            }
            let len = need(r.u32(), "NOTIFY")? as usize;
            ServerMsg::Notify {
                message: need(r.bytes(len), "NOTIFY text")?.to_vec(),
            }
        }
        (ch::MAIN, main_msg::INIT) => {
            let session_id = need(r.u32(), "INIT")?;
            let display_channels = need(r.u32(), "INIT")?;
            let supported_mouse_modes = need(r.u32(), "INIT")?;
            let current_mouse_mode = need(r.u32(), "INIT")?;
            let agent_connected = need(r.u32(), "INIT")?;
            let agent_tokens = need(r.u32(), "INIT")?;
            let multi_media_time = need(r.u32(), "INIT")?;
            need(r.u32(), "INIT")?;
            ServerMsg::MainInit {
                session_id,
                display_channels,
                supported_mouse_modes,
                current_mouse_mode,
                agent_connected,
                agent_tokens,
                multi_media_time,
            }
        }
        (ch::MAIN, main_msg::AGENT_CONNECTED) => ServerMsg::AgentConnected(None),
        (ch::MAIN, main_msg::AGENT_CONNECTED_TOKENS) => {
            ServerMsg::AgentConnected(Some(need(r.u32(), "AGENT_CONNECTED_TOKENS")?))
        }
        (ch::MAIN, main_msg::AGENT_DISCONNECTED) => {
            ServerMsg::AgentDisconnected(need(r.u32(), "AGENT_DISCONNECTED")?)
        }
        (ch::MAIN, main_msg::AGENT_TOKEN) => ServerMsg::AgentToken(need(r.u32(), "AGENT_TOKEN")?),
        (ch::MAIN, main_msg::AGENT_DATA) => {
            let data = r.rest().to_vec();
            if data.is_empty() || data.len() > crate::port::AGENT_MAX_DATA {
                return Err(format!("AGENT_DATA of {} bytes", data.len()));
            }
            ServerMsg::AgentData(data)
        }
        (ch::MAIN, main_msg::CHANNELS_LIST) => {
            let n = need(r.u32(), "CHANNELS_LIST")?;
            let mut v = Vec::new();
            for _ in 0..n {
                v.push((
                    need(r.u8(), "CHANNELS_LIST")?,
                    need(r.u8(), "CHANNELS_LIST")?,
                ));
            }
            ServerMsg::ChannelsList(v)
        }
        (ch::MAIN, main_msg::MOUSE_MODE) => ServerMsg::MouseMode {
            supported: need(r.u16(), "MOUSE_MODE")?,
            current: need(r.u16(), "MOUSE_MODE")?,
        },
        (ch::MAIN, main_msg::MULTI_MEDIA_TIME) => {
            ServerMsg::MultiMediaTime(need(r.u32(), "MULTI_MEDIA_TIME")?)
        }
        (ch::DISPLAY, display_msg::SURFACE_CREATE) => ServerMsg::SurfaceCreate {
            surface_id: need(r.u32(), "SURFACE_CREATE")?,
            width: need(r.u32(), "SURFACE_CREATE")?,
            height: need(r.u32(), "SURFACE_CREATE")?,
            format: need(r.u32(), "SURFACE_CREATE")?,
            flags: need(r.u32(), "SURFACE_CREATE")?,
        },
        (ch::DISPLAY, display_msg::SURFACE_DESTROY) => ServerMsg::SurfaceDestroy {
            surface_id: need(r.u32(), "SURFACE_DESTROY")?,
        },
        (ch::DISPLAY, display_msg::DRAW_COPY) => return draw_copy(body),
        (ch::DISPLAY, display_msg::DRAW_TRANSPARENT) => return draw_transparent(body),
        (ch::DISPLAY, display_msg::DRAW_ALPHA_BLEND) => return draw_alpha_blend(body),
        (ch::DISPLAY, display_msg::DRAW_COMPOSITE) => return draw_composite(body),
        (ch::DISPLAY, display_msg::DRAW_FILL) => return draw_fill(body),
        (ch::DISPLAY, display_msg::COPY_BITS) => return copy_bits(body),
        (ch::DISPLAY, display_msg::INVAL_LIST) => return inval_list(body),
        (ch::DISPLAY, display_msg::MARK) => ServerMsg::Mark,
        (ch::DISPLAY, display_msg::RESET) => ServerMsg::Reset,
        (ch::DISPLAY, display_msg::INVAL_ALL_PALETTES) => ServerMsg::InvalAllPalettes,
        (ch::INPUTS, inputs_msg::INIT) => ServerMsg::InputsInit {
            modifiers: need(r.u16(), "INPUTS_INIT")?,
        },
        (ch::INPUTS, inputs_msg::KEY_MODIFIERS) => {
            ServerMsg::KeyModifiers(need(r.u16(), "KEY_MODIFIERS")?)
        }
        (ch::INPUTS, inputs_msg::MOUSE_MOTION_ACK) => ServerMsg::MotionAck,
        (ch::CURSOR, cursor_msg::INIT) => return cursor_init(body),
        (ch::CURSOR, cursor_msg::SET) => return cursor_set(body),
        (ch::CURSOR, cursor_msg::MOVE) => ServerMsg::CursorMove {
            x: need(r.i16(), "CURSOR_MOVE")?,
            y: need(r.i16(), "CURSOR_MOVE")?,
        },
        (ch::CURSOR, t @ (cursor_msg::RESET | cursor_msg::HIDE)) => ServerMsg::CursorOther(t),
        (ch::CURSOR, cursor_msg::INVAL_ONE) => {
            ServerMsg::CursorInvalOne(need(r.u64(), "CURSOR_INVAL_ONE")?)
        }
        (ch::CURSOR, cursor_msg::INVAL_ALL) => ServerMsg::CursorInvalAll,
        (ch::CURSOR, cursor_msg::TRAIL) => ServerMsg::CursorTrail {
            length: need(r.u16(), "CURSOR_TRAIL")?,
            frequency: need(r.u16(), "CURSOR_TRAIL")?,
        },
        _ => return Err(format!("unexpected message {t} on channel type {channel}")),
    };
    exact(&r, &format!("message {t}"))?;
    Ok(m)
}

fn cursor_init(body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    need(r.i16(), "CURSOR_INIT")?;
    need(r.i16(), "CURSOR_INIT")?;
    need(r.u16(), "CURSOR_INIT")?;
    need(r.u16(), "CURSOR_INIT")?;
    let visible = need(r.u8(), "CURSOR_INIT")? != 0;
    let shape = wire_cursor(&mut r)?;
    exact(&r, "CURSOR_INIT")?;
    Ok(ServerMsg::CursorInitWire { visible, shape })
}

fn cursor_set(body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    let x = need(r.i16(), "CURSOR_SET")?;
    let y = need(r.i16(), "CURSOR_SET")?;
    let visible = need(r.u8(), "CURSOR_SET")? != 0;
    let shape = wire_cursor(&mut r)?.ok_or("CURSOR_SET without a shape")?;
    exact(&r, "CURSOR_SET")?;
    Ok(ServerMsg::CursorSetWire {
        x,
        y,
        visible,
        shape,
    })
}

/// A SpiceCursor as this server sends it: ALPHA, the hot spot inside, and
/// either pixels (exactly width x height) or FROM_CACHE with none; None for
/// FLAGS_NONE. Unknown flags, or CACHE_ME with FROM_CACHE, are errors.
fn wire_cursor(r: &mut Reader<'_>) -> R<Option<WireCursor>> {
    let flags = need(r.u16(), "cursor flags")?;
    if flags == CURSOR_FLAGS_NONE {
        return Ok(None);
    }
    let (cache_me, from_cache) = match flags {
        0 => (false, false),
        CURSOR_FLAGS_CACHE_ME => (true, false),
        CURSOR_FLAGS_FROM_CACHE => (false, true),
        _ => return Err(format!("cursor flags {flags:#x}")),
    };
    let unique = need(r.u64(), "cursor header")?;
    let ty = need(r.u8(), "cursor header")?;
    let width = need(r.u16(), "cursor header")?;
    let height = need(r.u16(), "cursor header")?;
    let hot_x = need(r.u16(), "cursor header")?;
    let hot_y = need(r.u16(), "cursor header")?;
    if ty != CURSOR_TYPE_ALPHA || hot_x >= width || hot_y >= height {
        return Err(format!(
            "cursor type {ty} hot spot {hot_x},{hot_y} size {width}x{height}"
        ));
    }
    let pixels = if from_cache {
        Vec::new()
    } else {
        need(
            r.bytes(width as usize * height as usize * 4),
            "cursor pixels",
        )?
        .chunks_exact(4)
        .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
        .collect()
    };
    Ok(Some(WireCursor {
        unique,
        cache_me,
        from_cache,
        width,
        height,
        hot_x,
        hot_y,
        pixels,
    }))
}

/// DRAW_FILL as the server sends it: surface 0, no clip, a solid brush, OP_PUT,
/// no mask; anything else is an error.
fn draw_fill(body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    let surface = need(r.u32(), "DRAW_FILL")?;
    let (x, y, width, height) = rect(&mut r)?;
    let clip = need(r.u8(), "DRAW_FILL clip")?;
    let brush = need(r.u8(), "DRAW_FILL brush")?;
    let color = need(r.u32(), "DRAW_FILL color")?;
    let rop = need(r.u16(), "DRAW_FILL rop")?;
    let mask_flags = need(r.u8(), "DRAW_FILL mask")?;
    need(r.i32(), "DRAW_FILL mask")?;
    need(r.i32(), "DRAW_FILL mask")?;
    let mask_ptr = need(r.u32(), "DRAW_FILL mask")?;
    exact(&r, "DRAW_FILL")?;
    if surface != 0
        || clip != 0
        || brush != BRUSH_TYPE_SOLID
        || rop != ROPD_OP_PUT
        || mask_flags != 0
        || mask_ptr != 0
    {
        return Err(format!(
            "DRAW_FILL surface {surface} clip {clip} brush {brush} rop {rop} mask {mask_flags}/{mask_ptr}"
        ));
    }
    Ok(ServerMsg::DrawFill {
        x,
        y,
        width,
        height,
        color,
    })
}

/// COPY_BITS as the server sends it: surface 0, no clip, a source point
/// inside the surface's coordinates (checked against its size when applied).
fn copy_bits(body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    let surface = need(r.u32(), "COPY_BITS")?;
    let (x, y, width, height) = rect(&mut r)?;
    let clip = need(r.u8(), "COPY_BITS clip")?;
    let src_x = need(r.i32(), "COPY_BITS src_pos")?;
    let src_y = need(r.i32(), "COPY_BITS src_pos")?;
    exact(&r, "COPY_BITS")?;
    if surface != 0 || clip != 0 || src_x < 0 || src_y < 0 || width == 0 || height == 0 {
        return Err(format!(
            "COPY_BITS surface {surface} clip {clip} src {src_x},{src_y} size {width}x{height}"
        ));
    }
    Ok(ServerMsg::CopyBits {
        x,
        y,
        width,
        height,
        src_x: src_x as u32,
        src_y: src_y as u32,
    })
}

fn draw_copy(body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    let surface = need(r.u32(), "DRAW_COPY")?;
    let (x, y, width, height) = rect(&mut r)?;
    let clip = need(r.u8(), "DRAW_COPY clip")?;
    let src_ptr = need(r.u32(), "DRAW_COPY")? as usize;
    let src_area = rect(&mut r)?;
    let rop = need(r.u16(), "DRAW_COPY")?;
    let _scale = need(r.u8(), "DRAW_COPY")?;
    let mask_flags = need(r.u8(), "DRAW_COPY mask")?;
    need(r.i32(), "DRAW_COPY mask")?;
    need(r.i32(), "DRAW_COPY mask")?;
    let mask_ptr = need(r.u32(), "DRAW_COPY mask")?;
    if surface != 0 || clip != 0 || rop != ROPD_OP_PUT || mask_flags != 0 || mask_ptr != 0 {
        return Err(format!(
            "DRAW_COPY surface {surface} clip {clip} rop {rop} mask {mask_flags}/{mask_ptr}"
        ));
    }
    let dst = (x, y, width, height);
    drawn_image(body, "DRAW_COPY", dst, src_area, src_ptr, r.pos(), None)
}

/// DRAW_TRANSPARENT as the server sends it: surface 0, no clip, the image
/// right after the fixed part, src_color = true_color.
fn draw_transparent(body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    let surface = need(r.u32(), "DRAW_TRANSPARENT")?;
    let dst = rect(&mut r)?;
    let clip = need(r.u8(), "DRAW_TRANSPARENT clip")?;
    let src_ptr = need(r.u32(), "DRAW_TRANSPARENT")? as usize;
    let src_area = rect(&mut r)?;
    let src_color = need(r.u32(), "DRAW_TRANSPARENT")?;
    let true_color = need(r.u32(), "DRAW_TRANSPARENT")?;
    if surface != 0 || clip != 0 || src_color != true_color || src_color >> 24 != 0 {
        return Err(format!(
            "DRAW_TRANSPARENT surface {surface} clip {clip} colours {src_color:#x}/{true_color:#x}"
        ));
    }
    let blend = Some(BlendMode::Transparent(src_color));
    drawn_image(
        body,
        "DRAW_TRANSPARENT",
        dst,
        src_area,
        src_ptr,
        r.pos(),
        blend,
    )
}

/// DRAW_ALPHA_BLEND as the server sends it: surface 0, no clip, alpha flags
/// none or SRC_SURFACE_HAS_ALPHA (then the image must carry alpha, checked
/// when it is drawn), the image right after the fixed part.
fn draw_alpha_blend(body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    let surface = need(r.u32(), "DRAW_ALPHA_BLEND")?;
    let dst = rect(&mut r)?;
    let clip = need(r.u8(), "DRAW_ALPHA_BLEND clip")?;
    let flags = need(r.u8(), "DRAW_ALPHA_BLEND")?;
    let alpha = need(r.u8(), "DRAW_ALPHA_BLEND")?;
    let src_ptr = need(r.u32(), "DRAW_ALPHA_BLEND")? as usize;
    let src_area = rect(&mut r)?;
    let blend = match flags {
        0 => BlendMode::Alpha(alpha),
        2 => BlendMode::SourceAlpha(alpha),
        _ => return Err(format!("DRAW_ALPHA_BLEND alpha flags {flags}")),
    };
    if surface != 0 || clip != 0 {
        return Err(format!("DRAW_ALPHA_BLEND surface {surface} clip {clip}"));
    }
    let blend = Some(blend);
    drawn_image(
        body,
        "DRAW_ALPHA_BLEND",
        dst,
        src_area,
        src_ptr,
        r.pos(),
        blend,
    )
}

/// DRAW_COMPOSITE as the server sends it: surface 0, no clip, flags of a
/// plain OVER (no mask, transforms, repeat or filter), origins 0, the image
/// (with alpha, checked when it is drawn) right after the fixed part.
fn draw_composite(body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    let surface = need(r.u32(), "DRAW_COMPOSITE")?;
    let dst = rect(&mut r)?;
    let clip = need(r.u8(), "DRAW_COMPOSITE clip")?;
    let flags = need(r.u32(), "DRAW_COMPOSITE")?;
    let src_ptr = need(r.u32(), "DRAW_COMPOSITE")? as usize;
    let mut origins = [0u16; 4];
    for o in &mut origins {
        *o = need(r.u16(), "DRAW_COMPOSITE origin")?;
    }
    if surface != 0 || clip != 0 || flags != 3 || origins != [0; 4] {
        return Err(format!(
            "DRAW_COMPOSITE surface {surface} clip {clip} flags {flags:#x} origins {origins:?}"
        ));
    }
    let src_area = (0, 0, dst.2, dst.3);
    let blend = Some(BlendMode::Over);
    drawn_image(
        body,
        "DRAW_COMPOSITE",
        dst,
        src_area,
        src_ptr,
        r.pos(),
        blend,
    )
}

/// The image of a draw at `src_ptr` of `body`, right after the draw's
/// fixed part (which ends at `fixed`), of the box's size.
fn drawn_image(
    body: &[u8],
    what: &str,
    (x, y, width, height): (u32, u32, u32, u32),
    src_area: (u32, u32, u32, u32),
    src_ptr: usize,
    fixed: usize,
    blend: Option<BlendMode>,
) -> R<ServerMsg> {
    // spice-html5 ignores src_area (it puts the whole image at the box's
    // corner), so the server must send images of the box's size, no offset.
    if src_area != (0, 0, width, height) {
        return Err(format!("{what} src_area {src_area:?} for {width}x{height}"));
    }
    if src_ptr != fixed {
        return Err(format!("{what} image at {src_ptr}, fixed part is {fixed}"));
    }
    let mut img = Reader::new(&body[src_ptr..]);
    let id = need(img.u64(), "image id")?;
    let image_type = need(img.u8(), "image type")?;
    let flags = need(img.u8(), "image flags")?;
    let iw = need(img.u32(), "image width")?;
    let ih = need(img.u32(), "image height")?;
    // CACHE_ME or CACHE_REPLACE_ME (a lossless copy over a lossy one), not both.
    let flags_ok = matches!(
        flags,
        0 | IMAGE_FLAGS_CACHE_ME | IMAGE_FLAGS_CACHE_REPLACE_ME
    );
    if !flags_ok || (iw, ih) != (width, height) || iw == 0 || ih == 0 {
        return Err(format!(
            "image flags {flags} size {iw}x{ih} for box {width}x{height}"
        ));
    }
    if iw > MAX_DIMENSION || ih > MAX_DIMENSION {
        return Err(format!("image {iw}x{ih} too large"));
    }
    // Whether the decoded image is an a8r8g8b8 one (its alpha kept).
    let mut alpha = false;
    let pixels = match image_type {
        IMAGE_TYPE_FROM_CACHE | IMAGE_TYPE_FROM_CACHE_LOSSLESS if flags == 0 => {
            exact(&img, "FROM_CACHE image")?;
            return Ok(ServerMsg::DrawCopy {
                x,
                y,
                width,
                height,
                image: CopyImage::FromCache {
                    id,
                    lossless: image_type == IMAGE_TYPE_FROM_CACHE_LOSSLESS,
                },
                image_type,
                blend,
            });
        }
        IMAGE_TYPE_BITMAP => {
            let fmt = need(img.u8(), "bitmap")?;
            let bflags = need(img.u8(), "bitmap")?;
            let bw = need(img.u32(), "bitmap")?;
            let bh = need(img.u32(), "bitmap")?;
            let stride = need(img.u32(), "bitmap")?;
            let palette = need(img.u32(), "bitmap")?;
            alpha = fmt == BITMAP_FMT_RGBA;
            if !(fmt == BITMAP_FMT_32BIT || alpha)
                || bflags != BITMAP_FLAGS_TOP_DOWN
                || (bw, bh) != (iw, ih)
                || stride != iw * 4
                || palette != 0
            {
                return Err(format!(
                    "bitmap fmt {fmt} flags {bflags} {bw}x{bh} stride {stride}"
                ));
            }
            let data = need(img.bytes(stride as usize * bh as usize), "bitmap pixels")?;
            let keep = if alpha { 0xff } else { 0 };
            data.chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3] & keep]))
                .collect()
        }
        IMAGE_TYPE_LZ_RGB => {
            let n = need(img.u32(), "LZ size")? as usize;
            let data = need(img.bytes(n), "LZ data")?;
            // The LZ header's type word: RGBA (9) decodes with alpha, as
            // spice-gtk makes an a8r8g8b8 image of it.
            alpha = data.get(8..12) == Some(&[0, 0, 0, 9]);
            let decoded = if alpha {
                decode_lz_rgba(data)
            } else {
                decode_lz_rgb32(data)
            };
            let (lw, lh, px) = decoded.map_err(|e| format!("LZ: {e}"))?;
            if (lw, lh) != (iw, ih) {
                return Err(format!("LZ image {lw}x{lh} in a {iw}x{ih} descriptor"));
            }
            px
        }
        IMAGE_TYPE_GLZ_RGB | IMAGE_TYPE_ZLIB_GLZ_RGB => {
            // Decoded against the session's window when applied (`apply`).
            let data = if image_type == IMAGE_TYPE_GLZ_RGB {
                let n = need(img.u32(), "GLZ size")? as usize;
                need(img.bytes(n), "GLZ data")?.to_vec()
            } else {
                let size = need(img.u32(), "ZLIB_GLZ size")? as usize;
                let n = need(img.u32(), "ZLIB_GLZ data size")? as usize;
                let z = need(img.bytes(n), "ZLIB_GLZ data")?;
                zlib_inflate(z, size).map_err(|e| format!("ZLIB_GLZ: {e}"))?
            };
            exact(&img, "DRAW_COPY image")?;
            return Ok(ServerMsg::DrawCopy {
                x,
                y,
                width,
                height,
                image: CopyImage::Glz {
                    data,
                    cache_id: (flags != 0).then_some(id),
                    replace: flags == IMAGE_FLAGS_CACHE_REPLACE_ME,
                },
                image_type,
                blend,
            });
        }
        IMAGE_TYPE_LZ4 => {
            let n = need(img.u32(), "LZ4 size")? as usize;
            let data = need(img.bytes(n), "LZ4 data")?;
            decode_lz4_rgb32(data, iw, ih).map_err(|e| format!("LZ4: {e}"))?
        }
        // Lossy images go only where spice-server sends them: copies and
        // ALPHA_BLENDs (JPEG_ALPHA when the image has alpha), never as a
        // lossless replacement.
        IMAGE_TYPE_JPEG | IMAGE_TYPE_JPEG_ALPHA if flags == IMAGE_FLAGS_CACHE_REPLACE_ME => {
            return Err(format!(
                "{what}: lossy image type {image_type} with CACHE_REPLACE_ME"
            ));
        }
        IMAGE_TYPE_JPEG if matches!(blend, None | Some(BlendMode::Alpha(_))) => {
            let n = need(img.u32(), "JPEG size")? as usize;
            decode_jpeg(need(img.bytes(n), "JPEG data")?, iw, ih)?
        }
        IMAGE_TYPE_JPEG_ALPHA if matches!(blend, Some(BlendMode::SourceAlpha(_))) => {
            alpha = true;
            decode_jpeg_alpha(&mut img, iw, ih)?
        }
        IMAGE_TYPE_JPEG | IMAGE_TYPE_JPEG_ALPHA => {
            return Err(format!(
                "{what} ({blend:?}) with lossy image type {image_type}"
            ));
        }
        t => return Err(format!("image type {t} not expected")),
    };
    exact(&img, "DRAW_COPY image")?;
    Ok(ServerMsg::DrawCopy {
        x,
        y,
        width,
        height,
        image: CopyImage::Pixels {
            pixels,
            cache_id: (flags != 0).then_some(id),
            replace: flags == IMAGE_FLAGS_CACHE_REPLACE_ME,
            lossy: matches!(image_type, IMAGE_TYPE_JPEG | IMAGE_TYPE_JPEG_ALPHA),
            alpha,
        },
        image_type,
        blend,
    })
}

/// A baseline JPEG of exactly `w` x `h` as xRGB; the header is checked
/// before anything is decoded, so a lying header allocates nothing.
fn decode_jpeg(data: &[u8], w: u32, h: u32) -> R<Vec<u32>> {
    let mut d = jpeg_decoder::Decoder::new(data);
    d.read_info().map_err(|e| format!("JPEG: {e}"))?;
    let info = d.info().ok_or("JPEG without a header")?;
    if (u32::from(info.width), u32::from(info.height)) != (w, h) {
        return Err(format!(
            "JPEG {}x{} in a {w}x{h} descriptor",
            info.width, info.height
        ));
    }
    if info.pixel_format != jpeg_decoder::PixelFormat::RGB24 {
        return Err(format!("JPEG pixel format {:?}", info.pixel_format));
    }
    let rgb = d.decode().map_err(|e| format!("JPEG: {e}"))?;
    if rgb.len() != w as usize * h as usize * 3 {
        return Err(format!("JPEG decoded to {} bytes", rgb.len()));
    }
    Ok(rgb
        .chunks_exact(3)
        .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
        .collect())
}

/// A `SpiceJPEGAlphaData` of exactly `w` x `h`, as spice-gtk's
/// canvas_get_jpeg_alpha takes it: TOP_DOWN (all this server sends), a JPEG
/// of `jpeg_size` bytes then an LZ XXXA alpha plane of the same size and
/// row order filling the rest of `data_size`. Returns premultiplied
/// 0xAARRGGBB pixels: the JPEG's colours with the plane's alpha.
fn decode_jpeg_alpha(img: &mut Reader<'_>, w: u32, h: u32) -> R<Vec<u32>> {
    let flags = need(img.u8(), "JPEG_ALPHA flags")?;
    let jpeg_size = need(img.u32(), "JPEG_ALPHA jpeg_size")? as usize;
    let size = need(img.u32(), "JPEG_ALPHA data_size")? as usize;
    if flags != JPEG_ALPHA_FLAGS_TOP_DOWN || jpeg_size > size {
        return Err(format!(
            "JPEG_ALPHA flags {flags} jpeg_size {jpeg_size} data_size {size}"
        ));
    }
    let (jpeg, plane) = need(img.bytes(size), "JPEG_ALPHA data")?.split_at(jpeg_size);
    let colours = decode_jpeg(jpeg, w, h)?;
    // The plane's own row order must be the one the flags give.
    if plane.get(24..28) != Some(&[0, 0, 0, 1]) {
        return Err("JPEG_ALPHA alpha plane not top-down".into());
    }
    let (aw, ah, alpha) = decode_lz_xxxa(plane).map_err(|e| format!("JPEG_ALPHA alpha: {e}"))?;
    if (aw, ah) != (w, h) {
        return Err(format!("JPEG_ALPHA alpha {aw}x{ah} for a {w}x{h} image"));
    }
    Ok(colours.iter().zip(alpha).map(|(c, a)| c | a).collect())
}

/// The image of a DRAW_COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyImage {
    /// Decoded pixels of the box-sized image, to be cached under `cache_id`
    /// (CACHE_ME), or to replace the lossy copy there (`replace`).
    Pixels {
        pixels: Vec<u32>,
        cache_id: Option<u64>,
        replace: bool,
        /// Decoded from a lossy format (JPEG, JPEG_ALPHA).
        lossy: bool,
        /// An image with alpha (RGBA bitmap or LZ, JPEG_ALPHA): `pixels`
        /// are 0xAARRGGBB.
        alpha: bool,
    },
    /// The cached image `id` (of the box's size); `lossless`: only a
    /// lossless copy may be drawn (FROM_CACHE_LOSSLESS).
    FromCache { id: u64, lossless: bool },
    /// A GLZ payload (inflated if it came zlib-wrapped), to decode against
    /// the session's GLZ window.
    Glz {
        data: Vec<u8>,
        cache_id: Option<u64>,
        replace: bool,
    },
}

fn inval_list(body: &[u8]) -> R<ServerMsg> {
    let mut r = Reader::new(body);
    let n = need(r.u16(), "INVAL_LIST")?;
    let mut ids = Vec::new();
    for _ in 0..n {
        let kind = need(r.u8(), "INVAL_LIST")?;
        let id = need(r.u64(), "INVAL_LIST")?;
        if kind != RES_TYPE_PIXMAP {
            return Err(format!("INVAL_LIST resource type {kind}"));
        }
        ids.push(id);
    }
    exact(&r, "INVAL_LIST")?;
    Ok(ServerMsg::InvalPixmaps(ids))
}

/// Checks a SURFACE_CREATE is the 32-bit xRGB primary surface 0.
pub fn check_surface_create(surface_id: u32, w: u32, h: u32, format: u32, flags: u32) -> R<()> {
    if surface_id != 0
        || format != SURFACE_FMT_32_XRGB
        || flags != SURFACE_FLAGS_PRIMARY
        || w == 0
        || h == 0
        || w > MAX_DIMENSION
        || h > MAX_DIMENSION
    {
        return Err(format!(
            "SURFACE_CREATE {surface_id} {w}x{h} fmt {format} flags {flags}"
        ));
    }
    Ok(())
}
