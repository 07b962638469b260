//! The picture types that the display devices (`devices`) and the SPICE server
//! (`spice`) both speak, defined once. Neither crate may depend on the other, so
//! they meet here: plain data and the geometry both need, no device or protocol
//! logic.
//!
//! - [`Rect`]: a region of a frame, in pixels (x, y, width, height).
//! - [`SolidFill`]: a rectangle painted one color, forwarded as a draw.
//! - [`Draw`]: a forwarded draw: a fill, an [`ImageCopy`] of a shared image, or a
//!   [`BitsCopy`] of the surface onto itself.
//! - [`Frame`]: a picture, 0x00RRGGBB pixels, row-major, stride = width.
//! - [`CursorShape`]: a pointer image with its hot spot (ARGB, straight alpha).
//! - [`MonitorLayout`]: where the heads of a display sit on the virtual desktop.

mod cursor;
mod draw;
mod frame;
mod monitor;
mod rect;

pub use cursor::{CursorShape, MAX_CURSOR_SIDE};
pub use draw::{alpha_over, mul_un8, BitsCopy, BlendMode, Draw, ImageBlend, ImageCopy};
pub use frame::Frame;
pub use monitor::{Monitor, MonitorLayout, MAX_MONITORS};
pub use rect::{Rect, SolidFill};
