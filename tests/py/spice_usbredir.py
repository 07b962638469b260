"""Checks a SPICE server's USB redirection channels as spice-gtk sees them
(run with /usr/bin/python3, which has `gi`): connects with SpiceClientGLib
(again until --timeout while the server is not up yet), opens every channel
the session announces, waits until the main channel and --expect
SpiceUsbredirChannel objects are open, then asks the session's
SpiceUsbDeviceManager (what remote-viewer's USB device selection uses) how
many channels it has free for a device. No physical device is needed. Prints
one line of key=value pairs.

    spice_usbredir.py --host H --port P [--expect N] [--timeout S]
"""
import argparse
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", required=True)
ap.add_argument("--expect", type=int, default=2)
ap.add_argument("--timeout", type=float, default=60)
args = ap.parse_args()

loop = GLib.MainLoop()
state = {
    "session": None,
    "usbredir": {},
    "opened": set(),
    "main_opened": False,
    "error": None,
    "free": None,
}


def check():
    """Once every expected channel is open: the USB device manager's view."""
    ids = sorted(state["usbredir"])
    if not state["main_opened"] or len(state["opened"]) < args.expect:
        return
    manager = Spice.UsbDeviceManager.get(state["session"])
    state["free"] = manager.get_property("free-channels")
    state["devices"] = len(manager.get_devices() or [])
    state["ids"] = ids
    loop.quit()


def channel_event(channel, event):
    if event == Spice.ChannelEvent.OPENED:
        if isinstance(channel, Spice.UsbredirChannel):
            state["opened"].add(channel.get_property("channel-id"))
        elif isinstance(channel, Spice.MainChannel):
            state["main_opened"] = True
        check()
        return
    if not state["main_opened"]:
        retry()
        return
    err = channel.get_error()
    state["error"] = f"{channel.get_property('channel-type')}: {event.value_nick}" + (
        f" ({err.message})" if err else "")
    loop.quit()


def channel_new(session, channel):
    GObject.Object.connect(channel, "channel-event", channel_event)
    if isinstance(channel, Spice.UsbredirChannel):
        state["usbredir"][channel.get_property("channel-id")] = channel
    channel.connect()


def connect():
    session = Spice.Session()
    session.set_property("host", args.host)
    session.set_property("port", args.port)
    session.set_property("enable-usbredir", True)
    GObject.Object.connect(session, "channel-new", channel_new)
    state["session"] = session
    state["usbredir"] = {}
    state["opened"] = set()
    if not session.connect():
        retry()
    return False


def retry():
    old = state["session"]
    state["session"] = None
    if old is not None:
        GLib.idle_add(lambda: old.disconnect() and False)
    GLib.timeout_add(250, connect)


def timeout():
    state["error"] = state["error"] or "timeout"
    loop.quit()
    return False


GLib.timeout_add(int(args.timeout * 1000), timeout)
connect()
loop.run()
if state["session"] is not None:
    state["session"].disconnect()
ids = ",".join(str(i) for i in state.get("ids", sorted(state["usbredir"])))
print(
    f"usbredir channels={len(state['usbredir'])} ids={ids or 'none'} "
    f"opened={len(state['opened'])} free_channels={state['free']} "
    f"devices={state.get('devices')} "
    f"error={(state['error'] or 'none').replace(' ', '_')}",
    flush=True,
)
sys.exit(0 if state["error"] is None else 1)
