//! `screendump` on the machine's display model (vmm/src/display.rs).

use std::path::Path;

use super::backend::Screendump;
use crate::display::{Display, ScreenFormat};

impl Screendump for Display {
    fn screendump(&self, path: &Path, format: ScreenFormat) -> Result<(), String> {
        // The inherent method writes the file; its errors are I/O errors.
        Display::screendump(self, path, format)
            .map_err(|e| format!("failed to write '{}': {e}", path.display()))
    }
}
