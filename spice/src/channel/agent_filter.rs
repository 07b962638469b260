//! The client → agent message stream as spice-server's write filter reads it
//! (`agent-msg-filter.c`): each AGENT_DATA payload is a piece of one
//! VDAgentMessage (a 20-byte header in the first piece: protocol, type,
//! opaque, size; then `size` bytes of body spread over the following pieces).
//! A piece that starts a message without a whole header, a protocol other than
//! 1, or a piece running past the message's size is a protocol error (the
//! client is cut off, as spice-server does).
//!
//! Every message is routed once, at its header: to the agent; dropped (no
//! agent to take it); or, for VD_AGENT_MONITORS_CONFIG while the display takes
//! client monitors configs (decided at AGENT_START, as spice-server's
//! `reds_use_client_monitors_config`), reassembled here, with a bound, and
//! handed to the display instead of the agent (`reds_on_main_agent_monitors_config`).
//! A malformed monitors config is logged and dropped.

use display_types::{Monitor, MonitorLayout, MAX_MONITORS};
use tracing::warn;

use crate::port::ClientMonitorsConfig;

/// VD_AGENT_PROTOCOL.
const PROTOCOL: u32 = 1;
/// sizeof(VDAgentMessage).
pub const MESSAGE_HEADER: usize = 20;
/// VD_AGENT_MONITORS_CONFIG.
pub const MONITORS_CONFIG: u32 = 2;
/// sizeof(VDAgentMonitorsConfig): num_of_monitors, flags.
const CONFIG_HEADER: usize = 8;
/// sizeof(VDAgentMonConfig): height, width, depth, x, y.
const MON_CONFIG: usize = 20;
/// sizeof(VDAgentMonitorMM), after the heads with the PHYSICAL_SIZE flag.
const MONITOR_MM: usize = 4;
/// VD_AGENT_CONFIG_MONITORS_FLAG_PHYSICAL_SIZE.
const FLAG_PHYSICAL_SIZE: u32 = 2;
/// The largest monitors config body taken (spice-server's
/// MAX_MONITOR_CONFIG_SIZE): bounds what a client makes us buffer.
pub const MAX_MONITORS_CONFIG: usize = CONFIG_HEADER + MAX_MONITORS * (MON_CONFIG + MONITOR_MM);

/// Where a piece of client agent data goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// To the agent.
    Agent,
    /// Nowhere: no agent takes it, or it belongs to a dropped message.
    Drop,
    /// Part of a monitors config for the display; `Some` with the last piece
    /// of a well-formed one.
    Display(Option<ClientMonitorsConfig>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Agent,
    Drop,
    Display,
}

/// One client's filter (a main channel's).
#[derive(Debug)]
pub struct ClientFilter {
    /// Body bytes of the current message still to come.
    remaining: usize,
    route: Route,
    /// Monitors configs go to the display, not the agent.
    display_monitors: bool,
    /// The monitors config being reassembled: header and body so far.
    config: Vec<u8>,
}

impl Default for ClientFilter {
    fn default() -> Self {
        ClientFilter {
            remaining: 0,
            route: Route::Drop,
            display_monitors: false,
            config: Vec::new(),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl ClientFilter {
    /// Whether monitors configs from now on go to the display (AGENT_START).
    pub fn set_display_monitors(&mut self, on: bool) {
        self.display_monitors = on;
    }

    /// One AGENT_DATA payload (at most 2048 bytes, checked by the caller).
    /// `usable`: an agent takes this client's data now; when it does not, the
    /// message is dropped (as spice-server's discard_all), still framed.
    pub fn piece(&mut self, data: &[u8], usable: bool) -> Result<Piece, String> {
        let body = if self.remaining > 0 {
            if data.len() > self.remaining {
                return Err(format!(
                    "agent data of {} bytes where the message has {} left",
                    data.len(),
                    self.remaining
                ));
            }
            if !usable {
                // The agent left mid-message: the rest is dropped.
                self.route = Route::Drop;
                self.config = Vec::new();
            }
            data
        } else {
            let (Some(protocol), Some(kind), Some(size)) =
                (u32_at(data, 0), u32_at(data, 4), u32_at(data, 16))
            else {
                return Err(format!(
                    "agent message starting with {} bytes, no header",
                    data.len()
                ));
            };
            if protocol != PROTOCOL {
                return Err(format!("agent message of protocol {protocol}"));
            }
            let body = &data[MESSAGE_HEADER..];
            let size = size as usize;
            if body.len() > size {
                return Err(format!(
                    "agent message of {size} bytes with {} in its first piece",
                    body.len()
                ));
            }
            self.remaining = size;
            self.config = Vec::new();
            self.route = if !usable {
                Route::Drop
            } else if kind == MONITORS_CONFIG && self.display_monitors {
                if size > MAX_MONITORS_CONFIG {
                    warn!(size, "client monitors config too large, dropped");
                    Route::Drop
                } else {
                    self.config.reserve_exact(size);
                    Route::Display
                }
            } else {
                Route::Agent
            };
            body
        };
        self.remaining -= body.len();
        Ok(match self.route {
            Route::Agent => Piece::Agent,
            Route::Drop => Piece::Drop,
            Route::Display => {
                self.config.extend_from_slice(body);
                if self.remaining > 0 {
                    Piece::Display(None)
                } else {
                    let config = std::mem::take(&mut self.config);
                    let parsed = parse_monitors_config(&config);
                    if let Err(e) = &parsed {
                        warn!("client monitors config dropped: {e}");
                    }
                    Piece::Display(parsed.ok())
                }
            }
        })
    }
}

/// A VDAgentMonitorsConfig body, as spice-common's `agent_check_message`
/// checks it: num_of_monitors must fit in the message (heads of 20 bytes, 24
/// with the PHYSICAL_SIZE flag), here at most [`MAX_MONITORS`]. Depth, the
/// flags and the physical sizes are not used (QEMU ignores them too); a head
/// with no width or height is a disabled slot.
pub fn parse_monitors_config(body: &[u8]) -> Result<ClientMonitorsConfig, String> {
    let (Some(count), Some(flags)) = (u32_at(body, 0), u32_at(body, 4)) else {
        return Err(format!("{} bytes, shorter than its header", body.len()));
    };
    let element = if flags & FLAG_PHYSICAL_SIZE != 0 {
        MON_CONFIG + MONITOR_MM
    } else {
        MON_CONFIG
    };
    let fits = (body.len() - CONFIG_HEADER) / element;
    if count as usize > fits.min(MAX_MONITORS) {
        return Err(format!(
            "num_of_monitors {count} in {} bytes (at most {})",
            body.len(),
            fits.min(MAX_MONITORS)
        ));
    }
    let mut heads = Vec::new();
    for (slot, head) in body[CONFIG_HEADER..]
        .chunks_exact(MON_CONFIG)
        .take(count as usize)
        .enumerate()
    {
        let field = |k: usize| u32_at(head, 4 * k).unwrap_or(0);
        let (height, width) = (field(0), field(1));
        if width == 0 || height == 0 {
            continue;
        }
        heads.push(Monitor {
            id: slot as u32,
            x: field(3) as i32,
            y: field(4) as i32,
            width,
            height,
        });
    }
    let layout = MonitorLayout::new(heads).ok_or("not a layout")?;
    Ok(ClientMonitorsConfig {
        slots: count,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VDAgentMessage: header, then `body`.
    pub fn message(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for v in [PROTOCOL, kind, 0, 0, body.len() as u32] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        m.extend_from_slice(body);
        m
    }

    /// A VDAgentMonitorsConfig body: (width, height, x, y) per slot.
    fn config(flags: u32, heads: &[(u32, u32, i32, i32)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(heads.len() as u32).to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        for &(w, h, x, y) in heads {
            for v in [h, w, 32, x as u32, y as u32] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    fn feed(f: &mut ClientFilter, msg: &[u8]) -> Vec<Piece> {
        msg.chunks(2048)
            .map(|c| f.piece(c, true).unwrap())
            .collect()
    }

    #[test]
    fn a_chunked_monitors_config_reaches_the_display_whole() {
        let mut f = ClientFilter::default();
        f.set_display_monitors(true);
        // 200 slots: 4028 bytes with the header, two pieces; every third disabled.
        let heads: Vec<_> = (0..200)
            .map(|i| {
                if i % 3 == 1 {
                    (0, 0, 0, 0)
                } else {
                    (800 + i, 600, i as i32 * 800 - 1000, 0)
                }
            })
            .collect();
        let msg = message(MONITORS_CONFIG, &config(1, &heads));
        let pieces = feed(&mut f, &msg);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0], Piece::Display(None));
        let Piece::Display(Some(cfg)) = &pieces[1] else {
            panic!("{:?}", pieces[1]);
        };
        assert_eq!(cfg.slots, 200);
        let m = cfg.layout.monitors();
        assert_eq!(m.len(), 200 - 67);
        assert_eq!(
            m[1],
            Monitor {
                id: 2,
                x: 600,
                y: 0,
                width: 802,
                height: 600
            }
        );
        assert_eq!(m[0].x, -1000);
        // The next message is framed afresh and goes to the agent.
        assert_eq!(
            feed(&mut f, &message(4, &[1; 3000])),
            [Piece::Agent, Piece::Agent]
        );
    }

    #[test]
    fn monitors_configs_go_to_the_agent_unless_the_display_takes_them() {
        let mut f = ClientFilter::default();
        let msg = message(MONITORS_CONFIG, &config(0, &[(1280, 800, 0, 0)]));
        assert_eq!(feed(&mut f, &msg), [Piece::Agent]);
        f.set_display_monitors(true);
        let Piece::Display(Some(cfg)) = f.piece(&msg, true).unwrap() else {
            panic!();
        };
        assert_eq!(cfg.layout, MonitorLayout::single(1280, 800));
        // No agent to take it: dropped, whatever it is.
        assert_eq!(f.piece(&msg, false).unwrap(), Piece::Drop);
        // The agent leaving mid-message drops the rest.
        let big = message(MONITORS_CONFIG, &config(0, &[(640, 480, 0, 0); 150]));
        assert_eq!(f.piece(&big[..2048], true).unwrap(), Piece::Display(None));
        assert_eq!(f.piece(&big[2048..], false).unwrap(), Piece::Drop);
    }

    #[test]
    fn malformed_monitors_configs_are_dropped_and_framing_errors_refused() {
        let mut f = ClientFilter::default();
        f.set_display_monitors(true);
        // num_of_monitors larger than the message holds.
        let mut body = config(0, &[(1024, 768, 0, 0); 2]);
        body[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            feed(&mut f, &message(MONITORS_CONFIG, &body)),
            [Piece::Display(None)]
        );
        // With PHYSICAL_SIZE each head takes 24 bytes: two 20-byte heads are not two.
        let body = config(FLAG_PHYSICAL_SIZE, &[(1024, 768, 0, 0); 2]);
        assert_eq!(
            feed(&mut f, &message(MONITORS_CONFIG, &body)),
            [Piece::Display(None)]
        );
        // More than MAX_MONITORS heads.
        let body = config(0, &[(64, 64, 0, 0); MAX_MONITORS + 1]);
        let pieces = feed(&mut f, &message(MONITORS_CONFIG, &body));
        assert_eq!(pieces.last(), Some(&Piece::Display(None)));
        // Shorter than its own header.
        assert_eq!(
            feed(&mut f, &message(MONITORS_CONFIG, &[0; 4])),
            [Piece::Display(None)]
        );
        // A size past the bound: its pieces are dropped, not buffered.
        let mut huge = message(MONITORS_CONFIG, &[]);
        huge[16..20].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert_eq!(f.piece(&huge, true).unwrap(), Piece::Drop);
        assert_eq!(f.piece(&[0; 2048], true).unwrap(), Piece::Drop);
        assert!(f.config.capacity() == 0);
        let mut f = ClientFilter::default();
        // A message start without a whole header, or of another protocol.
        assert!(f.piece(&[1, 0, 0, 0, 2], true).is_err());
        let mut m = message(4, &[0; 4]);
        m[0] = 2;
        assert!(f.piece(&m, true).is_err());
        // A first piece longer than its message, a later piece past its end.
        let m = message(4, &[0; 4]);
        assert!(f.piece(&[&m[..], &[0]].concat(), true).is_err());
        let m = message(4, &[0; 3000]);
        assert_eq!(f.piece(&m[..2048], true).unwrap(), Piece::Agent);
        assert!(f.piece(&[0; 2048], true).is_err());
    }

    #[test]
    fn parses_what_spice_gtk_sends() {
        // spice-gtk, sparse monitors: every slot, disabled ones all zero.
        let cfg = parse_monitors_config(&config(
            1,
            &[(1280, 800, 0, 0), (0, 0, 0, 0), (640, 480, 1280, 0)],
        ))
        .unwrap();
        assert_eq!(cfg.slots, 3);
        let ids: Vec<u32> = cfg.layout.monitors().iter().map(|m| m.id).collect();
        assert_eq!(ids, [0, 2]);
        // No heads at all is a (useless) layout too.
        assert_eq!(parse_monitors_config(&config(0, &[])).unwrap().slots, 0);
    }
}
