"""A real SPICE client for the end-to-end tests: spice-gtk's SpiceClientGLib (run
with /usr/bin/python3, which has `gi`). Connects with the given session properties,
waits for the display's first MARK (a complete frame, as spicy-screenshot does),
writes the primary surface as a PPM and exits 0; exits 1 with the channel error.

With --on-stdin it stays connected after that first frame: it prints `ready`, and
writes the surface as it is then when a line arrives on stdin, so a test can
check the picture a client that watched everything being drawn ends up with.

    spice_glib.py --host H [--port P] [--tls-port T] [--ca-file F]
                  [--secure-channels all|main,...] [--username U] [--password PW]
                  --out FILE.ppm [--timeout S] [--on-stdin]
"""
import argparse
import ctypes
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port")
ap.add_argument("--tls-port")
ap.add_argument("--ca-file")
ap.add_argument("--secure-channels")
ap.add_argument("--username")
ap.add_argument("--password")
ap.add_argument("--out", required=True)
ap.add_argument("--timeout", type=float, default=20)
ap.add_argument("--on-stdin", action="store_true")
args = ap.parse_args()

session = Spice.Session()
session.set_property("host", args.host)
for prop in ("port", "tls-port", "ca-file", "username", "password"):
    value = getattr(args, prop.replace("-", "_"))
    if value is not None:
        session.set_property(prop, value)
if args.secure_channels:
    session.set_property("secure-channels", args.secure_channels.split(","))

loop = GLib.MainLoop()
state = {"primary": None, "error": None, "done": False}


def primary_create(channel, fmt, width, height, stride, shmid, imgdata):
    state["primary"] = (width, height, stride, imgdata)


def write_primary():
    width, height, stride, addr = state["primary"]
    raw = ctypes.string_at(addr, stride * height)
    with open(args.out, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (width, height))
        row = bytearray()
        for y in range(height):
            line = raw[y * stride:y * stride + 4 * width]
            px = bytearray(3 * width)
            # 32-bit xRGB little-endian: B, G, R, x in memory.
            px[0::3] = line[2::4]
            px[1::3] = line[1::4]
            px[2::3] = line[0::4]
            row += px
        f.write(row)
    state["done"] = True
    loop.quit()


def stdin_line(source, condition):
    sys.stdin.readline()
    if state["primary"]:
        write_primary()
    return False


def mark(channel, on):
    if on and state["primary"] and not state["done"] and not state.get("ready"):
        if args.on_stdin:
            state["ready"] = True
            print("ready", flush=True)
            GLib.io_add_watch(sys.stdin, GLib.IO_IN, stdin_line)
        else:
            write_primary()


def channel_event(channel, event):
    if event in (Spice.ChannelEvent.OPENED, Spice.ChannelEvent.CLOSED):
        return
    err = channel.get_error()
    state["error"] = f"{channel.get_property('channel-type')}: {event.value_nick}" + (
        f" ({err.message})" if err else "")
    loop.quit()


def channel_new(session, channel):
    GObject.Object.connect(channel, "channel-event", channel_event)
    if isinstance(channel, Spice.DisplayChannel):
        GObject.Object.connect(channel, "display-primary-create", primary_create)
        GObject.Object.connect(channel, "display-mark", mark)
    if not isinstance(channel, Spice.MainChannel):
        channel.connect()


GObject.Object.connect(session, "channel-new", channel_new)
GLib.timeout_add(int(args.timeout * 1000), loop.quit)
if not session.connect():
    sys.exit("spice_glib: session.connect() failed")
loop.run()
session.disconnect()
if state["done"]:
    sys.exit(0)
print(f"spice_glib: {state['error'] or 'no frame within the timeout'}", file=sys.stderr)
sys.exit(1)
