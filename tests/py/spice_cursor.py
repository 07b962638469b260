"""A real SPICE client's view of the guest cursor: spice-gtk's SpiceClientGLib (run
with /usr/bin/python3, which has `gi`). Connects, takes the first cursor shape the
cursor channel reports (CURSOR_INIT or SET), prints one line and exits 0:

    cursor WIDTHxHEIGHT hot=X,Y crc=CRC32-OF-THE-PIXEL-BYTES

exits 1 when no shape arrives within the timeout.

    spice_cursor.py --host H --port P [--timeout S]
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
ap.add_argument("--timeout", type=float, default=20)
ap.add_argument("--dump", action="store_true")
args = ap.parse_args()

session = Spice.Session()
session.set_property("host", args.host)
session.set_property("port", args.port)
loop = GLib.MainLoop()
state = {"line": None}


def cursor_set(channel, width, height, hot_x, hot_y, rgba):
    data = ctypes.string_at(rgba, width * height * 4) if rgba else b""
    if args.dump:
        print(" ".join("%08x" % int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4 * 33)))
    if state["line"] is None:
        # Stay a second before disconnecting: leaving while the other channels
        # are still being set up trips a race in QEMU's spice-server (its
        # worker thread segfaulted at one address, twice in a day of runs).
        GLib.timeout_add(1000, loop.quit)
    state["line"] = "cursor %dx%d hot=%d,%d crc=%08x" % (
        width, height, hot_x, hot_y, zlib.crc32(data))


def channel_new(session, channel):
    if isinstance(channel, Spice.CursorChannel):
        GObject.Object.connect(channel, "cursor-set", cursor_set)
    if not isinstance(channel, Spice.MainChannel):
        channel.connect()


GObject.Object.connect(session, "channel-new", channel_new)
GLib.timeout_add(int(args.timeout * 1000), loop.quit)
if not session.connect():
    sys.exit("spice_cursor: session.connect() failed")
loop.run()
session.disconnect()
if state["line"]:
    print(state["line"])
    sys.exit(0)
print("spice_cursor: no cursor shape within the timeout", file=sys.stderr)
sys.exit(1)
