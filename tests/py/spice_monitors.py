"""A real SPICE client resizing its window: spice-gtk's SpiceClientGLib (run with
/usr/bin/python3, which has `gi`). Connects, waits until the guest agent is
connected, sets display 0 to WIDTHxHEIGHT at 0,0 and sends the monitors config
(what remote-viewer does when its window is resized), prints

    monitors-config sent WIDTHxHEIGHT

then stays connected until STOP_FILE exists, disconnects and exits 0. Exits 1
when the agent does not connect, or a channel fails, within the timeout.

    spice_monitors.py --host H --port P --width W --height H --stop-file F [--timeout S]
"""
import argparse
import os
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", required=True)
ap.add_argument("--width", type=int, required=True)
ap.add_argument("--height", type=int, required=True)
ap.add_argument("--stop-file", required=True)
ap.add_argument("--timeout", type=float, default=60)
args = ap.parse_args()

session = Spice.Session()
session.set_property("host", args.host)
session.set_property("port", args.port)
loop = GLib.MainLoop()
state = {"sent": False, "error": None}


def send(main):
    if state["sent"] or not main.get_property("agent-connected"):
        return
    main.update_display_enabled(0, True, False)
    main.update_display(0, 0, 0, args.width, args.height, False)
    if not main.send_monitor_config():
        state["error"] = "send_monitor_config refused"
        loop.quit()
        return
    state["sent"] = True
    print("monitors-config sent %dx%d" % (args.width, args.height), flush=True)


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
        GObject.Object.connect(channel, "notify::agent-connected", lambda c, _: send(c))


def poll():
    if state["sent"] and os.path.exists(args.stop_file):
        loop.quit()
        return False
    return True


GObject.Object.connect(session, "channel-new", channel_new)
GLib.timeout_add(50, poll)
GLib.timeout_add(int(args.timeout * 1000), loop.quit)
if not session.connect():
    sys.exit("spice_monitors: session.connect() failed")
loop.run()
session.disconnect()
# Let the disconnect reach the server before the process goes.
ctx = GLib.MainContext.default()
for _ in range(20):
    ctx.iteration(False)
if state["sent"] and not state["error"]:
    sys.exit(0)
print(f"spice_monitors: {state['error'] or 'no agent within the timeout'}", file=sys.stderr)
sys.exit(1)
