//! `screendump` on the machine's display model (vmm/src/display.rs).

use std::path::Path;

use super::backend::{ImageFormat, Screendump};
use crate::display::{Display, ScreenFormat};

impl Screendump for Display {
    fn screendump(&self, path: &Path, format: ImageFormat) -> Result<(), String> {
        let format = match format {
            ImageFormat::Png => ScreenFormat::Png,
            ImageFormat::Ppm => ScreenFormat::Ppm,
        };
        // The inherent method writes the file; its errors are I/O errors.
        Display::screendump(self, path, format)
            .map_err(|e| format!("failed to write '{}': {e}", path.display()))
    }
}
