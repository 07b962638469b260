//! The test client's model of what a SPICE client holds: the primary surface,
//! the pixmap and cursor caches, and what arrived on each channel. [`apply`]
//! folds each decoded server message in, strictly: anything a real client
//! could not resolve (a FROM_CACHE it does not hold, a draw outside the
//! surface) is an error the reader records in [`ClientState::errors`].

use std::collections::{HashMap, HashSet};

use super::decode::{check_surface_create, CopyImage, ServerMsg, WireCursor};
use crate::proto::{channel as ch, cursor_msg};
use crate::BlendMode;

/// The client's copy of primary surface 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSurface {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
}

/// A cursor shape as the client holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorPic {
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    /// ARGB.
    pub pixels: Vec<u32>,
}

/// The server promises never to make a client hold more cursor shapes
/// (spice-server's bound too); spice-gtk itself never evicts.
const CURSOR_CACHE_LIMIT: usize = 256;

/// Everything the reader threads learned. Read it through [`TestClient::state`] or `wait`.
#[derive(Default, Debug)]
pub struct ClientState {
    pub session_id: u32,
    pub channels_list: Option<Vec<(u8, u8)>>,
    pub main_init: Option<ServerMsg>,
    pub mouse_mode: Option<(u16, u16)>,
    pub surface: Option<ClientSurface>,
    pub surface_creates: u32,
    pub surface_destroys: u32,
    pub draw_copies: u64,
    /// DRAW_TRANSPARENT and DRAW_ALPHA_BLEND messages drawn.
    pub blends: u64,
    /// Of those, DRAW_COMPOSITEs.
    pub composites: u64,
    /// Refuse CACHE_REPLACE_ME, as a client without COMPOSITE may not know
    /// it (spice-html5 ignores the flag and keeps the lossy copy).
    pub no_cache_replace: bool,
    pub draw_fills: u64,
    pub copy_bits: u64,
    pub image_types: Vec<u8>,
    /// The pixmap cache: id -> (width, height, pixels).
    pub pixmaps: HashMap<u64, (u32, u32, Vec<u32>)>,
    /// Pixmap cache ids whose copy is lossy (JPEG).
    pub lossy_pixmaps: HashSet<u64>,
    /// Pixmap cache ids whose image has alpha (a8r8g8b8).
    pub alpha_pixmaps: HashSet<u64>,
    /// Lossy copies replaced by lossless ones (CACHE_REPLACE_ME).
    pub cache_replaces: u64,
    /// DRAW_COPYs drawn from the pixmap cache.
    pub cache_hits: u64,
    /// The session's GLZ window (the client announces 16 Mpixels).
    pub glz: crate::image::GlzWindow,
    pub marks: u32,
    /// Display messages received since the last SET_ACK (all counted, acked or not).
    pub display_msgs: u64,
    pub inputs_init: Option<u16>,
    pub modifiers: Vec<u16>,
    pub motion_acks: u32,
    pub cursor_init: Option<ServerMsg>,
    /// CURSOR_SET / MOVE / HIDE / RESET after the init, in order.
    pub cursor: Vec<ServerMsg>,
    /// The cursor cache, as spice-gtk keeps it: unique id -> shape.
    pub cursor_cache: HashMap<u64, CursorPic>,
    /// The shape the cursor channel showed last (INIT or SET).
    pub cursor_shape: Option<CursorPic>,
    /// Shapes that came FROM_CACHE, and that came with pixels.
    pub cursor_cache_hits: u64,
    pub cursor_shapes_sent: u64,
    /// INVAL_ONE and INVAL_ALL received.
    pub cursor_invals: u64,
    /// Agent messages on MAIN, in order.
    pub agent: Vec<ServerMsg>,
    /// Channel types whose connection ended.
    pub closed: Vec<u8>,
    /// Decoding or protocol errors; a correct server leaves this empty.
    pub errors: Vec<String>,
}

pub(super) fn apply(g: &mut ClientState, channel: u8, m: ServerMsg) -> Result<(), String> {
    if channel == ch::DISPLAY && !matches!(m, ServerMsg::SetAck { .. }) {
        g.display_msgs += 1;
    }
    match m {
        ServerMsg::MainInit { session_id, .. } => {
            g.session_id = session_id;
            g.main_init = Some(m);
        }
        ServerMsg::ChannelsList(l) => g.channels_list = Some(l),
        ServerMsg::MouseMode { supported, current } => g.mouse_mode = Some((supported, current)),
        ServerMsg::SurfaceCreate {
            surface_id,
            width,
            height,
            format,
            flags,
        } => {
            check_surface_create(surface_id, width, height, format, flags)?;
            if g.surface.is_some() {
                return Err("second primary surface without SURFACE_DESTROY".into());
            }
            g.surface = Some(ClientSurface {
                width,
                height,
                pixels: vec![0; width as usize * height as usize],
            });
            g.surface_creates += 1;
        }
        ServerMsg::SurfaceDestroy { surface_id } => {
            if surface_id != 0 || g.surface.take().is_none() {
                return Err(format!("SURFACE_DESTROY of absent surface {surface_id}"));
            }
            g.surface_destroys += 1;
        }
        ServerMsg::DrawCopy {
            x,
            y,
            width,
            height,
            image,
            image_type,
            blend,
        } => {
            // GLZ needs the window: decoded here, as any other image after.
            let image = match image {
                CopyImage::Glz {
                    data,
                    cache_id,
                    replace,
                } => {
                    let d = g.glz.decode(&data).map_err(|e| format!("GLZ: {e}"))?;
                    if (d.width, d.height) != (width, height) {
                        return Err(format!(
                            "GLZ image {}x{} in a {width}x{height} box",
                            d.width, d.height
                        ));
                    }
                    CopyImage::Pixels {
                        pixels: d.pixels,
                        cache_id,
                        replace,
                        lossy: false,
                        alpha: false,
                    }
                }
                other => other,
            };
            // The picture: decoded here, or what the pixmap cache holds.
            let (pixels, alpha) = match image {
                CopyImage::Pixels {
                    pixels,
                    cache_id,
                    replace,
                    lossy,
                    alpha,
                } => {
                    if let Some(id) = cache_id {
                        // As spice-common's canvas: a replacement needs the
                        // lossy copy it replaces.
                        if replace && g.no_cache_replace {
                            return Err(format!(
                                "CACHE_REPLACE_ME of {id:#x} to a client without COMPOSITE"
                            ));
                        }
                        if replace && !g.lossy_pixmaps.remove(&id) {
                            return Err(format!("CACHE_REPLACE_ME of {id:#x}: no lossy copy"));
                        }
                        g.cache_replaces += u64::from(replace);
                        if lossy {
                            g.lossy_pixmaps.insert(id);
                        }
                        g.pixmaps.insert(id, (width, height, pixels.clone()));
                        if alpha {
                            g.alpha_pixmaps.insert(id);
                        } else {
                            g.alpha_pixmaps.remove(&id);
                        }
                    }
                    (pixels, alpha)
                }
                CopyImage::Glz { .. } => return Err("GLZ image left undecoded".into()),
                CopyImage::FromCache { id, lossless } => {
                    if lossless && g.lossy_pixmaps.contains(&id) {
                        return Err(format!("FROM_CACHE_LOSSLESS of {id:#x}, a lossy copy"));
                    }
                    let Some((cw, ch, px)) = g.pixmaps.get(&id) else {
                        return Err(format!("FROM_CACHE of image {id:#x} not in the cache"));
                    };
                    if (*cw, *ch) != (width, height) {
                        return Err(format!(
                            "FROM_CACHE {id:#x} is {cw}x{ch}, not {width}x{height}"
                        ));
                    }
                    g.cache_hits += 1;
                    (px.clone(), g.alpha_pixmaps.contains(&id))
                }
            };
            // spice-gtk blends with the alpha the image's format has,
            // whatever the flags say: they must agree. A copy of an image
            // with alpha onto the xRGB surface keeps only its colours.
            match blend {
                Some(m) if m.source_alpha() && !alpha => {
                    return Err(format!("{m:?} with an image without alpha"))
                }
                Some(BlendMode::Alpha(_) | BlendMode::Transparent(_)) if alpha => {
                    return Err(format!("{blend:?} of an image with alpha"))
                }
                _ => {}
            }
            let s = g
                .surface
                .as_mut()
                .ok_or("DRAW_COPY before SURFACE_CREATE")?;
            if x as u64 + width as u64 > s.width as u64
                || y as u64 + height as u64 > s.height as u64
            {
                return Err(format!(
                    "DRAW_COPY {x},{y} {width}x{height} outside surface"
                ));
            }
            for row in 0..height as usize {
                let dst = (y as usize + row) * s.width as usize + x as usize;
                let src = row * width as usize;
                let to = &mut s.pixels[dst..dst + width as usize];
                let from = &pixels[src..src + width as usize];
                match blend {
                    None => to
                        .iter_mut()
                        .zip(from)
                        .for_each(|(d, p)| *d = p & 0x00ff_ffff),
                    Some(mode) => to
                        .iter_mut()
                        .zip(from)
                        .for_each(|(d, p)| *d = mode.apply(*p, *d)),
                }
            }
            g.blends += u64::from(blend.is_some());
            g.composites += u64::from(blend == Some(BlendMode::Over));
            g.draw_copies += u64::from(blend.is_none());
            g.image_types.push(image_type);
        }
        ServerMsg::InvalPixmaps(ids) => {
            for id in ids {
                g.lossy_pixmaps.remove(&id);
                g.alpha_pixmaps.remove(&id);
                if g.pixmaps.remove(&id).is_none() {
                    return Err(format!("INVAL_LIST of image {id:#x} not in the cache"));
                }
            }
        }
        ServerMsg::DrawFill {
            x,
            y,
            width,
            height,
            color,
        } => {
            let s = g
                .surface
                .as_mut()
                .ok_or("DRAW_FILL before SURFACE_CREATE")?;
            if x as u64 + width as u64 > s.width as u64
                || y as u64 + height as u64 > s.height as u64
            {
                return Err(format!(
                    "DRAW_FILL {x},{y} {width}x{height} outside surface"
                ));
            }
            for row in y..y + height {
                let start = row as usize * s.width as usize + x as usize;
                s.pixels[start..start + width as usize].fill(color);
            }
            g.draw_fills += 1;
        }
        ServerMsg::CopyBits {
            x,
            y,
            width,
            height,
            src_x,
            src_y,
        } => {
            let s = g
                .surface
                .as_mut()
                .ok_or("COPY_BITS before SURFACE_CREATE")?;
            let fits = |x: u32, y: u32| {
                u64::from(x) + u64::from(width) <= u64::from(s.width)
                    && u64::from(y) + u64::from(height) <= u64::from(s.height)
            };
            if !fits(x, y) || !fits(src_x, src_y) {
                return Err(format!(
                    "COPY_BITS {src_x},{src_y} -> {x},{y} {width}x{height} outside surface"
                ));
            }
            // As spice-common's canvas: the source is read whole first.
            let stride = s.width as usize;
            let rows: Vec<Vec<u32>> = (0..height as usize)
                .map(|r| {
                    let start = (src_y as usize + r) * stride + src_x as usize;
                    s.pixels[start..start + width as usize].to_vec()
                })
                .collect();
            for (r, row) in rows.iter().enumerate() {
                let start = (y as usize + r) * stride + x as usize;
                s.pixels[start..start + width as usize].copy_from_slice(row);
            }
            g.copy_bits += 1;
        }
        ServerMsg::Mark => g.marks += 1,
        ServerMsg::InputsInit { modifiers } => g.inputs_init = Some(modifiers),
        ServerMsg::KeyModifiers(m) => g.modifiers.push(m),
        ServerMsg::MotionAck => g.motion_acks += 1,
        ServerMsg::CursorInit { .. } => g.cursor_init = Some(m),
        ServerMsg::CursorInitWire { visible, shape } => {
            // As spice-gtk: INIT starts the cache over.
            g.cursor_cache.clear();
            let (width, height) = match shape {
                Some(w) => {
                    let pic = resolve_cursor(g, w)?;
                    let size = (pic.width, pic.height);
                    g.cursor_shape = Some(pic);
                    size
                }
                None => (0, 0),
            };
            g.cursor_init = Some(ServerMsg::CursorInit {
                visible,
                width,
                height,
            });
        }
        ServerMsg::CursorSetWire {
            x,
            y,
            visible,
            shape,
        } => {
            let pic = resolve_cursor(g, shape)?;
            g.cursor.push(ServerMsg::CursorSet {
                x,
                y,
                visible,
                width: pic.width,
                height: pic.height,
                first_pixel: pic.pixels[0],
            });
            g.cursor_shape = Some(pic);
        }
        ServerMsg::CursorInvalOne(id) => {
            if g.cursor_cache.remove(&id).is_none() {
                return Err(format!("CURSOR_INVAL_ONE of {id:#x} not in the cache"));
            }
            g.cursor_invals += 1;
        }
        ServerMsg::CursorInvalAll => {
            g.cursor_cache.clear();
            g.cursor_invals += 1;
        }
        ServerMsg::CursorOther(cursor_msg::RESET) => {
            g.cursor_cache.clear();
            g.cursor.push(m);
        }
        ServerMsg::CursorSet { .. }
        | ServerMsg::CursorMove { .. }
        | ServerMsg::CursorOther(_)
        | ServerMsg::CursorTrail { .. } => g.cursor.push(m),
        ServerMsg::AgentConnected(_)
        | ServerMsg::AgentDisconnected(_)
        | ServerMsg::AgentData(_)
        | ServerMsg::AgentToken(_) => g.agent.push(m),
        // Only the display channel's: every channel gets a SET_ACK of its own.
        ServerMsg::SetAck { .. } if channel == ch::DISPLAY => g.display_msgs = 0,
        _ => {}
    }
    Ok(())
}

/// The shape a SpiceCursor names: from the cache for FROM_CACHE (an id the
/// client does not hold, or a header that disagrees with the cached shape,
/// is an error), else its pixels, stored first when CACHE_ME.
fn resolve_cursor(g: &mut ClientState, w: WireCursor) -> Result<CursorPic, String> {
    if w.from_cache {
        let Some(pic) = g.cursor_cache.get(&w.unique) else {
            return Err(format!(
                "cursor FROM_CACHE of {:#x} not in the cache",
                w.unique
            ));
        };
        if (pic.width, pic.height, pic.hot_x, pic.hot_y) != (w.width, w.height, w.hot_x, w.hot_y) {
            return Err(format!(
                "cursor FROM_CACHE {:#x}: header {}x{} differs from the cached {}x{}",
                w.unique, w.width, w.height, pic.width, pic.height
            ));
        }
        g.cursor_cache_hits += 1;
        return Ok(pic.clone());
    }
    let pic = CursorPic {
        width: w.width,
        height: w.height,
        hot_x: w.hot_x,
        hot_y: w.hot_y,
        pixels: w.pixels,
    };
    g.cursor_shapes_sent += 1;
    if w.cache_me {
        // Storing what it already holds means the server's model is off.
        if g.cursor_cache.contains_key(&w.unique) {
            return Err(format!(
                "cursor CACHE_ME of {:#x}, already cached",
                w.unique
            ));
        }
        if g.cursor_cache.len() >= CURSOR_CACHE_LIMIT {
            return Err(format!(
                "cursor CACHE_ME of {:#x} with {CURSOR_CACHE_LIMIT} shapes cached",
                w.unique
            ));
        }
        g.cursor_cache.insert(w.unique, pic.clone());
    }
    Ok(pic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::decode::decode;
    use crate::proto::{CURSOR_FLAGS_CACHE_ME, CURSOR_FLAGS_FROM_CACHE};
    use crate::wire::Writer;

    /// A CURSOR_SET body with a 2x1 shape `unique`; pixels unless FROM_CACHE.
    fn set_body(flags: u16, unique: u64, pixels: bool) -> Vec<u8> {
        let mut w = Writer::new();
        w.i16(0).i16(0).u8(1).u16(flags).u64(unique).u8(0);
        w.u16(2).u16(1).u16(0).u16(0);
        if pixels {
            w.u32(0xff11_2233).u32(0xff44_5566);
        }
        w.finish()
    }

    fn feed(g: &mut ClientState, t: u16, body: &[u8]) -> Result<(), String> {
        apply(g, ch::CURSOR, decode(ch::CURSOR, t, body)?)
    }

    #[test]
    fn from_cache_needs_a_cached_shape() {
        let mut g = ClientState::default();
        let e = feed(
            &mut g,
            cursor_msg::SET,
            &set_body(CURSOR_FLAGS_FROM_CACHE, 5, false),
        );
        assert!(e.unwrap_err().contains("not in the cache"));
        feed(
            &mut g,
            cursor_msg::SET,
            &set_body(CURSOR_FLAGS_CACHE_ME, 5, true),
        )
        .unwrap();
        feed(
            &mut g,
            cursor_msg::SET,
            &set_body(CURSOR_FLAGS_FROM_CACHE, 5, false),
        )
        .unwrap();
        assert_eq!(g.cursor_cache_hits, 1);
        assert_eq!(
            g.cursor_shape.as_ref().unwrap().pixels,
            [0xff11_2233, 0xff44_5566]
        );
        // Storing it again, or an eviction of what it does not hold, is wrong.
        let e = feed(
            &mut g,
            cursor_msg::SET,
            &set_body(CURSOR_FLAGS_CACHE_ME, 5, true),
        );
        assert!(e.unwrap_err().contains("already cached"));
        let e = feed(&mut g, cursor_msg::INVAL_ONE, &6u64.to_le_bytes());
        assert!(e.is_err());
        feed(&mut g, cursor_msg::INVAL_ONE, &5u64.to_le_bytes()).unwrap();
        assert!(feed(
            &mut g,
            cursor_msg::SET,
            &set_body(CURSOR_FLAGS_FROM_CACHE, 5, false)
        )
        .is_err());
    }

    #[test]
    fn inval_all_reset_and_init_empty_the_cache() {
        let mut g = ClientState::default();
        for msg in [cursor_msg::INVAL_ALL, cursor_msg::RESET] {
            feed(
                &mut g,
                cursor_msg::SET,
                &set_body(CURSOR_FLAGS_CACHE_ME, 1, true),
            )
            .unwrap();
            feed(&mut g, msg, &[]).unwrap();
            assert!(g.cursor_cache.is_empty());
        }
        feed(
            &mut g,
            cursor_msg::SET,
            &set_body(CURSOR_FLAGS_CACHE_ME, 1, true),
        )
        .unwrap();
        let mut init = vec![0u8; 9];
        init.extend_from_slice(&1u16.to_le_bytes());
        feed(&mut g, cursor_msg::INIT, &init).unwrap();
        assert!(g.cursor_cache.is_empty());
    }

    #[test]
    fn odd_cursor_messages_are_refused() {
        // Pixels after FROM_CACHE, both cache flags, unknown flags, a short
        // INVAL_ONE, pixels missing.
        assert!(decode(
            ch::CURSOR,
            cursor_msg::SET,
            &set_body(CURSOR_FLAGS_FROM_CACHE, 1, true)
        )
        .is_err());
        assert!(decode(ch::CURSOR, cursor_msg::SET, &set_body(6, 1, true)).is_err());
        assert!(decode(ch::CURSOR, cursor_msg::SET, &set_body(0x80, 1, true)).is_err());
        assert!(decode(ch::CURSOR, cursor_msg::INVAL_ONE, &[1, 2, 3]).is_err());
        assert!(decode(
            ch::CURSOR,
            cursor_msg::SET,
            &set_body(CURSOR_FLAGS_CACHE_ME, 1, false)
        )
        .is_err());
    }

    #[test]
    fn the_cache_bound_is_enforced() {
        let mut g = ClientState::default();
        for id in 0..CURSOR_CACHE_LIMIT as u64 {
            feed(
                &mut g,
                cursor_msg::SET,
                &set_body(CURSOR_FLAGS_CACHE_ME, id, true),
            )
            .unwrap();
        }
        assert!(feed(
            &mut g,
            cursor_msg::SET,
            &set_body(CURSOR_FLAGS_CACHE_ME, 999, true)
        )
        .is_err());
    }
}
