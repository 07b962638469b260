"""A real SPICE client following the guest cursor's shapes: spice-gtk's
SpiceClientGLib (run with /usr/bin/python3, which has `gi`). Connects and prints
one line per shape the cursor channel reports (CURSOR_INIT, then each SET,
whether its pixels came on the wire or from spice-gtk's cursor cache), flushed
as it arrives:

    cursor WIDTHxHEIGHT hot=X,Y crc=CRC32-OF-THE-PIXEL-BYTES

After --shapes of them (or the timeout) it prints the bytes the cursor
channel read from its socket (spice-gtk's total-read-bytes) and exits 0 if
all shapes came:

    cursor-bytes N

    spice_cursor_cycle.py --host H --port P --shapes N [--timeout S]
"""
import argparse
import ctypes
import sys
import zlib

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", required=True)
ap.add_argument("--shapes", type=int, required=True)
ap.add_argument("--timeout", type=float, default=60)
args = ap.parse_args()

session = Spice.Session()
session.set_property("host", args.host)
session.set_property("port", args.port)
loop = GLib.MainLoop()
state = {"seen": 0, "channel": None}


def cursor_set(channel, width, height, hot_x, hot_y, rgba):
    data = ctypes.string_at(rgba, width * height * 4) if rgba else b""
    print("cursor %dx%d hot=%d,%d crc=%08x" % (width, height, hot_x, hot_y, zlib.crc32(data)),
          flush=True)
    state["seen"] += 1
    if state["seen"] == args.shapes:
        # A little longer: anything after the last shape would count too.
        GLib.timeout_add(500, loop.quit)


def channel_new(session, channel):
    if isinstance(channel, Spice.CursorChannel):
        state["channel"] = channel
        GObject.Object.connect(channel, "cursor-set", cursor_set)
    if not isinstance(channel, Spice.MainChannel):
        channel.connect()


GObject.Object.connect(session, "channel-new", channel_new)
GLib.timeout_add(int(args.timeout * 1000), loop.quit)
if not session.connect():
    sys.exit("spice_cursor_cycle: session.connect() failed")
loop.run()
read = state["channel"].get_property("total-read-bytes") if state["channel"] else 0
print("cursor-bytes %d" % read, flush=True)
session.disconnect()
if state["seen"] < args.shapes:
    print("spice_cursor_cycle: %d of %d shapes" % (state["seen"], args.shapes), file=sys.stderr)
    sys.exit(1)
