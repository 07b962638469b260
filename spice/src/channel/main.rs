//! MAIN channel: MAIN_INIT, CHANNELS_LIST on ATTACH_CHANNELS, server mouse mode only,
//! and agent messages accepted and dropped (we announce agent_connected = 0).

use std::sync::Arc;

use tracing::debug;

use super::conn::{violation, Conn};
use super::{next_message, End, Next};
use crate::proto::{channel as ch, main_msg, main_msgc, MOUSE_MODE_SERVER};
use crate::server::{Registration, Shared};
use crate::wire::{Reader, Writer};

/// spice-server's MM_TIME_DELTA: streams and audio get this much buffering.
const MM_TIME_DELTA: u32 = 400;
/// Only a hint for the client's GLZ window, which we never use.
const RAM_HINT: u32 = 64 << 20;

/// The channels a client may open. Like spice-server, MAIN itself is not listed
/// (spice-gtk would create a second main channel for it).
pub const CHANNELS: [(u8, u8); 3] = [(ch::DISPLAY, 0), (ch::INPUTS, 0), (ch::CURSOR, 0)];

pub fn init_body(session_id: u32, mm_time: u32) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(session_id)
        .u32(1) // display_channels_hint
        .u32(MOUSE_MODE_SERVER as u32) // supported modes
        .u32(MOUSE_MODE_SERVER as u32) // current mode
        .u32(0) // agent_connected
        .u32(0) // agent_tokens: no agent, so no tokens
        .u32(mm_time.wrapping_sub(MM_TIME_DELTA))
        .u32(RAM_HINT);
    w.finish()
}

fn channels_list() -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(CHANNELS.len() as u32);
    for (t, id) in CHANNELS {
        w.u8(t).u8(id);
    }
    w.finish()
}

fn mouse_mode() -> Vec<u8> {
    let mut w = Writer::new();
    w.u16(MOUSE_MODE_SERVER).u16(MOUSE_MODE_SERVER);
    w.finish()
}

pub async fn run(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    session_id: u32,
    reg: &Registration,
) -> Result<(), End> {
    conn.send(main_msg::INIT, &init_body(session_id, shared.mm_time()))
        .await?;
    reg.initialized();
    loop {
        let (t, body) = match next_message(conn).await? {
            Next::Msg(t, b) => (t, b),
            Next::Base => continue,
            Next::Closed => return Ok(()),
        };
        let mut r = Reader::new(&body);
        match t {
            main_msgc::ATTACH_CHANNELS => {
                conn.send(main_msg::CHANNELS_LIST, &channels_list()).await?;
            }
            main_msgc::MOUSE_MODE_REQUEST => {
                let mode = r
                    .u16()
                    .ok_or_else(|| violation("short MOUSE_MODE_REQUEST"))?;
                debug!(
                    mode,
                    "client asked for a mouse mode; only server mode exists"
                );
                conn.send(main_msg::MOUSE_MODE, &mouse_mode()).await?;
            }
            main_msgc::AGENT_START | main_msgc::AGENT_TOKEN => {
                r.u32().ok_or_else(|| violation("short agent message"))?;
            }
            // No agent: its data has nowhere to go (the client sends none while
            // agent_connected is 0, but a late message must not kill the session).
            main_msgc::AGENT_DATA | main_msgc::CLIENT_INFO => {}
            // Migration and quality-indicator messages: nothing to do without migration.
            102 | 103 | 109..=112 => {}
            _ => debug!(msg_type = t, "ignoring unknown main message"),
        }
    }
}
