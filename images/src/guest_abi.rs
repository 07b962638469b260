// Guest conventions the assembly sources depend on, defined once: `src/lib.rs`
// includes this file (the constants are part of the crate's API) and
// `build.rs` includes it too and hands every constant to the assembler with
// `--defsym NAME=value`, so `asm/` uses these symbols and never a literal of
// its own. Plain items only (no inner doc comment): the file is `include!`d.

/// I/O port of ACPI PM1a_CNT the guests write to power off: SeaBIOS puts the
/// PIIX4/ICH9 PM block at 0x600, and PM1a_CNT is at +4.
pub const ACPI_PM1A_CNT_PORT: u16 = 0x604;
/// Value the guests write to [`ACPI_PM1A_CNT_PORT`]: SLP_EN (bit 13) with
/// SLP_TYP 0, which the DSDT's `\_S5` names as soft-off.
pub const ACPI_POWER_OFF_VALUE: u16 = 0x2000;
/// Serial port the guests print markers on (COM1); the UART registers the
/// guests use are at offsets from it.
pub const SERIAL_PORT: u16 = 0x3F8;

/// Boots the reset test goes through: 1 resets via port 0xCF9, 2 via the
/// i8042 (command 0xFE to port 0x64), 3 by a triple fault; 4 reports done.
/// `asm/reset.S` refuses to assemble with any other value.
pub const RESET_BOOTS: u8 = 4;
/// CMOS byte holding the reset test's boot counter. The VMM must keep CMOS
/// contents across a guest reset (as battery-backed RAM does) for the test to
/// advance; the guest clears it to 0 on its last boot.
pub const RESET_CMOS_INDEX: u8 = 0x7E;

/// The demo's graphics scene (`asm/scene.inc`): a 1024x768x32 VBE mode.
pub const SCENE_WIDTH: u16 = 1024;
pub const SCENE_HEIGHT: u16 = 768;
/// Width of each of the eight colour bars in the top half.
pub const SCENE_BAR_WIDTH: u16 = 128;
/// The white box drawn over the bottom half's ramp.
pub const SCENE_BOX_X: u16 = 412;
pub const SCENE_BOX_Y: u16 = 500;
pub const SCENE_BOX_W: u16 = 200;
pub const SCENE_BOX_H: u16 = 100;

/// Sector where a Rust test guest's flat image starts on its disk: the boot
/// sector and `asm/rust-loader.S` (at most 63 sectors) come first, padded to
/// this many sectors.
pub const RUST_GUEST_PAYLOAD_LBA: u32 = 64;
