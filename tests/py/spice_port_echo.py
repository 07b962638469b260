"""A SPICE PORT channel through spice-gtk's SpiceClientGLib PortChannel (what
an application using QEMU's spiceport chardev runs; /usr/bin/python3 has
`gi`): finds the channel whose port-name is NAME, reports its PORT_INIT
state, writes SIZE bytes (at most 256 KiB: one SPICEVMC_DATA) and reads them
back from the guest, which echoes; prints
    port name=NAME opened=0|1
    port echo size=N sum=FNV1A32 match=yes|no seconds=S
then disconnects and exits 0; exits 1 on
an error or the timeout.

    spice_port_echo.py --host H --port P --name NAME --size N [--timeout S]
"""
import argparse
import ctypes
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", required=True)
ap.add_argument("--name", required=True)
ap.add_argument("--size", type=int, required=True)
ap.add_argument("--timeout", type=float, default=60)
args = ap.parse_args()

session = Spice.Session()
session.set_property("host", args.host)
session.set_property("port", args.port)
loop = GLib.MainLoop()
payload = bytes((i * 31 + i // 1000) & 0xFF for i in range(args.size))
state = {"chan": None, "echo": bytearray(), "start": 0.0, "done": False, "error": None}


def fnv1a32(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


# spice_port_channel_write_async sends its buffer by reference until the
# message is out; through gi the buffer is a temporary copy freed when the call
# returns, so call it through ctypes with a buffer that lives as long as the
# script (one write, as an application writing a file's content would).
LIB = ctypes.CDLL("libspice-client-glib-2.0.so.8")
LIB.spice_port_channel_write_async.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
ctypes.pythonapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
ctypes.pythonapi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
BUFFER = ctypes.create_string_buffer(payload, len(payload))


def write_all(chan):
    gobj = ctypes.pythonapi.PyCapsule_GetPointer(chan.__gpointer__, None)
    LIB.spice_port_channel_write_async(gobj, ctypes.addressof(BUFFER), len(payload),
                                       None, None, None)


def port_data(chan, data, size):
    state["echo"] += ctypes.string_at(data, size)
    if len(state["echo"]) >= len(payload):
        echo = bytes(state["echo"])
        print("port echo size=%d sum=%08x match=%s seconds=%.3f"
              % (len(echo), fnv1a32(echo), "yes" if echo == payload else "no",
                 time.monotonic() - state["start"]), flush=True)
        state["done"] = True
        GLib.timeout_add(200, loop.quit)


def name_known(chan, _pspec):
    if state["chan"] is not None or chan.get_property("port-name") != args.name:
        return
    state["chan"] = chan
    print("port name=%s opened=%d" % (args.name, chan.get_property("port-opened")), flush=True)
    GObject.Object.connect(chan, "port-data", port_data)
    state["start"] = time.monotonic()
    write_all(chan)


def channel_event(channel, event):
    if event in (Spice.ChannelEvent.OPENED, Spice.ChannelEvent.CLOSED):
        return
    err = channel.get_error()
    state["error"] = f"{channel.get_property('channel-type')}: {event.value_nick}" + (
        f" ({err.message})" if err else "")
    loop.quit()


def channel_new(session, channel):
    GObject.Object.connect(channel, "channel-event", channel_event)
    if isinstance(channel, Spice.PortChannel):
        GObject.Object.connect(channel, "notify::port-name", name_known)
        # spice-gtk leaves port channels to the application to connect.
        channel.connect()


GObject.Object.connect(session, "channel-new", channel_new)
GLib.timeout_add(int(args.timeout * 1000), loop.quit)
if not session.connect():
    sys.exit("spice_port_echo: session.connect() failed")
loop.run()
session.disconnect()
ctx = GLib.MainContext.default()
for _ in range(20):
    ctx.iteration(False)
if state["done"] and not state["error"]:
    sys.exit(0)
print("spice_port_echo: %s" % (state["error"] or "got %d of %d echoed bytes within the timeout"
                               % (len(state["echo"]), len(payload))), file=sys.stderr)
sys.exit(1)
