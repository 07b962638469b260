//! ISA-era platform devices, one per file.
