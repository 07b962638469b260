//! Display hardware models without any bus or protocol attached.
//!
//! `vga` is the legacy VGA register file and plane memory (with the Bochs VBE
//! DISPI registers from `vbe`), `render` turns that state into XRGB pixels. The
//! QXL PCI device embeds a [`Vga`] for its VGA-compatible half and owns the
//! framebuffer (BAR0) that VBE modes scan out of.

pub mod fb;
pub mod image_file;
pub mod qxl;
mod qxl_blend_float;
mod qxl_blend_modes;
pub mod qxl_canvas;
mod qxl_composite;
mod qxl_draw;
pub mod qxl_engine;
#[cfg(any(test, feature = "fuzzing"))]
pub mod qxl_fuzz;
pub mod qxl_layout;
pub mod qxl_mem;
#[cfg(test)]
mod qxl_native_tests;
pub mod qxl_parse;
pub mod qxl_parse_ops;
mod qxl_rop3;
mod qxl_stroke;
mod qxl_text;
pub mod render;
pub mod screen;
pub mod text_cells;
pub mod vbe;
pub mod vga;

pub use fb::FrameMemory;
pub use render::{display_mode, render, render_into, DisplayMode, Frame};
pub use screen::{FbDirty, Rect, Screen, Update};
pub use vbe::{Vbe, VbeGeometry};
pub use vga::Vga;
