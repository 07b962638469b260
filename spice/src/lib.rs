//! spice
