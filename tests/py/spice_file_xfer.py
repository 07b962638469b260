"""File transfer through a real client: spice-gtk's SpiceClientGLib
spice_main_channel_file_copy_async (what remote-viewer does when a file is
dropped on its window), run with /usr/bin/python3 (which has `gi`).

Waits for the agent (main channel property agent-connected), copies FILE to
the guest and prints
    file-copy done size=N sum=FNV1A32 seconds=S
when spice-gtk reports the transfer finished (the agent's STATUS SUCCESS),
then disconnects and exits 0; exits 1 on an error or the timeout.

    spice_file_xfer.py --host H --port P --file F [--timeout S]
"""
import argparse
import os
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import Gio, GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", required=True)
ap.add_argument("--file", required=True)
ap.add_argument("--timeout", type=float, default=120)
args = ap.parse_args()

session = Spice.Session()
session.set_property("host", args.host)
session.set_property("port", args.port)
loop = GLib.MainLoop()
state = {"started": False, "done": False, "error": None}


def fnv1a32(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def copied(main, result, start):
    try:
        ok = main.file_copy_finish(result)
    except GLib.Error as e:
        state["error"] = "file_copy_finish: %s" % e.message
        loop.quit()
        return
    seconds = time.monotonic() - start
    data = open(args.file, "rb").read()
    if ok:
        print("file-copy done size=%d sum=%08x seconds=%.3f"
              % (len(data), fnv1a32(data), seconds), flush=True)
        state["done"] = True
    else:
        state["error"] = "file_copy_finish returned False"
    loop.quit()


def start_copy(main):
    if state["started"] or not main.get_property("agent-connected"):
        return
    state["started"] = True
    main.file_copy_async([Gio.File.new_for_path(args.file)], Gio.FileCopyFlags.NONE,
                         None, None, None, copied, time.monotonic())


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
        # spice-gtk sends the file only once the agent's capabilities came.
        GObject.Object.connect(channel, "main-agent-update", start_copy)


GObject.Object.connect(session, "channel-new", channel_new)
GLib.timeout_add(int(args.timeout * 1000), loop.quit)
if not session.connect():
    sys.exit("spice_file_xfer: session.connect() failed")
loop.run()
session.disconnect()
ctx = GLib.MainContext.default()
for _ in range(20):
    ctx.iteration(False)
if state["done"] and not state["error"]:
    sys.exit(0)
print("spice_file_xfer: %s" % (state["error"] or "not done within the timeout"),
      file=sys.stderr)
sys.exit(1)
