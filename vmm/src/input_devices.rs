//! The machine's input devices: the i8042's PS/2 keyboard and mouse, and (unless
//! `--input ps2`) a virtio keyboard and a virtio tablet on PCI, all behind one
//! input router.

use std::sync::{Arc, Mutex};

use devices::input::{AbsolutePointer, Keyboard};
use devices::legacy::i8042::I8042;
use devices::virtio::{VirtioInput, VirtioPciDevice};

use crate::cli::InputMode;
use crate::devices::{DeviceManager, Slot};
use crate::error::Result;
use crate::input::{InputDevices, InputRouter};

/// Plug in the virtio input devices `mode` asks for and build the router.
pub fn add(
    dm: &mut DeviceManager,
    mode: InputMode,
    i8042: &Arc<Mutex<I8042>>,
) -> Result<Arc<InputRouter>> {
    let mut devices = InputDevices {
        ps2_keyboard: i8042.clone(),
        ps2_mouse: i8042.clone(),
        virtio_keyboard: None,
        tablet: None,
        virtio_only: mode == InputMode::Virtio,
    };
    let mut keyboard = None;
    let mut tablet = None;
    if mode != InputMode::Ps2 {
        let (mut kbd, kbd_handle) = VirtioInput::keyboard()?;
        dm.add_pci("virtio-keyboard", Slot::Next, |w| {
            kbd.set_thread_name(&format!("virtio-kbd@{:02x}", w.slot));
            VirtioPciDevice::new(kbd, w.mem.clone(), w.intx, w.msi)
        })?;
        let (mut tab, tab_handle) = VirtioInput::tablet()?;
        dm.add_pci("virtio-tablet", Slot::Next, |w| {
            tab.set_thread_name(&format!("virtio-tab@{:02x}", w.slot));
            VirtioPciDevice::new(tab, w.mem.clone(), w.intx, w.msi)
        })?;
        devices.virtio_keyboard = Some(kbd_handle.clone() as Arc<dyn Keyboard>);
        devices.tablet = Some(tab_handle.clone() as Arc<dyn AbsolutePointer>);
        keyboard = Some(kbd_handle);
        tablet = Some(tab_handle);
    }
    let router = InputRouter::with_devices(devices);
    i8042
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_led_listener(router.clone());
    if let Some(k) = keyboard {
        k.set_led_listener(router.clone());
    }
    if let Some(t) = tablet {
        // Weak: the router owns the tablet's handle, which owns this hook.
        let r = Arc::downgrade(&router);
        t.on_active_change(move |_| {
            if let Some(r) = r.upgrade() {
                r.absolute_changed();
            }
        });
    }
    Ok(router)
}
