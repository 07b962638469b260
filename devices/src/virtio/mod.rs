//! virtio devices on the modern (1.0) PCI transport.
