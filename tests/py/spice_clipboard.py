"""Copy and paste through a real client: spice-gtk's SpiceClientGLib main
channel clipboard API (run with /usr/bin/python3, which has `gi`), both ways,
against a guest agent that owns the clipboard first.

1. Guest -> client: when the agent grabs the clipboard (signal
   main-clipboard-selection-grab), the client requests UTF8_TEXT and prints
       guest-clipboard size=N sum=FNV1A32
   for the data (main-clipboard-selection).
2. Client -> guest: the client grabs the clipboard with UTF8_TEXT
   (clipboard_selection_grab); when the agent requests it
   (main-clipboard-selection-request) it sends CLIENT_LEN bytes of text
   (clipboard_selection_notify) and prints
       client-clipboard sent size=N sum=FNV1A32
Then it stays connected until STOP_FILE exists, disconnects and exits 0; exits
1 when a step does not happen within the timeout.

    spice_clipboard.py --host H --port P --client-len N --stop-file F [--timeout S]
"""
import argparse
import ctypes
import os
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

SELECTION_CLIPBOARD = 0
UTF8_TEXT = 1

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", required=True)
ap.add_argument("--client-len", type=int, required=True)
ap.add_argument("--stop-file", required=True)
ap.add_argument("--timeout", type=float, default=60)
args = ap.parse_args()

session = Spice.Session()
session.set_property("host", args.host)
session.set_property("port", args.port)
loop = GLib.MainLoop()
state = {"got": False, "sent": False, "error": None}


def fnv1a32(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def client_text():
    # Not the guest's pattern, so a mix-up shows.
    return bytes(ord("A") + (i * 11 + i // 300) % 26 for i in range(args.client_len))


def grab(main, selection, types, ntypes):
    # The guest agent owns the clipboard: paste from it.
    main.clipboard_selection_request(selection, UTF8_TEXT)


def selection(main, sel, kind, data, size):
    if state["got"]:
        return
    raw = ctypes.string_at(data, size) if size else b""
    print("guest-clipboard size=%d sum=%08x" % (len(raw), fnv1a32(raw)), flush=True)
    state["got"] = True
    # Now copy on the client: the guest will ask for it.
    main.clipboard_selection_grab(SELECTION_CLIPBOARD, [UTF8_TEXT])


def request(main, sel, kind):
    if kind != UTF8_TEXT:
        return False
    text = client_text()
    main.clipboard_selection_notify(sel, kind, text)
    print("client-clipboard sent size=%d sum=%08x" % (len(text), fnv1a32(text)), flush=True)
    state["sent"] = True
    return True


def channel_event(channel, event):
    if event in (Spice.ChannelEvent.OPENED, Spice.ChannelEvent.CLOSED):
        return
    err = channel.get_error()
    state["error"] = f"{channel.get_property('channel-type')}: {event.value_nick}" + (
        f" ({err.message})" if err else "")
    loop.quit()


def channel_new(session, channel):
    GObject.Object.connect(channel, "channel-event", channel_event)
    if isinstance(channel, Spice.MainChannel):
        GObject.Object.connect(channel, "main-clipboard-selection-grab", grab)
        GObject.Object.connect(channel, "main-clipboard-selection", selection)
        GObject.Object.connect(channel, "main-clipboard-selection-request", request)


def poll():
    if state["sent"] and os.path.exists(args.stop_file):
        loop.quit()
        return False
    return True


GObject.Object.connect(session, "channel-new", channel_new)
GLib.timeout_add(50, poll)
GLib.timeout_add(int(args.timeout * 1000), loop.quit)
if not session.connect():
    sys.exit("spice_clipboard: session.connect() failed")
loop.run()
session.disconnect()
ctx = GLib.MainContext.default()
for _ in range(20):
    ctx.iteration(False)
if state["got"] and state["sent"] and not state["error"]:
    sys.exit(0)
print("spice_clipboard: %s" % (state["error"] or "got=%s sent=%s within the timeout"
                                % (state["got"], state["sent"])), file=sys.stderr)
sys.exit(1)
