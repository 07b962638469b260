//! ISA-era platform devices, one per file.

pub mod acpi_pm;
pub mod cmos;
pub mod debug_port;
pub mod i8042;
pub mod port92;
pub mod ps2_keyboard;
pub mod ps2_mouse;
pub mod serial;
