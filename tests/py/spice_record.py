"""Feeds a tone into a SPICE server's record channel with spice-gtk's
SpiceClientGLib (run with /usr/bin/python3, which has `gi`): connects (again
until --timeout while the server is not up yet), waits for RECORD START, then
sends a sine of --hz at the rate and channel count START asked for, paced by
the client's own clock in 10 ms steps (as a microphone would deliver it),
through SpiceRecordChannel.send_data (spice-gtk sends MODE and START_MARK
first, and encodes Opus itself when the server offers it). Stops at RECORD
STOP or when the server goes away, and prints one line of key=value pairs.

    spice_record.py --host H --port P [--password PW] [--hz F] [--timeout S]
"""
import argparse
import ctypes
import math
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", required=True)
ap.add_argument("--password")
ap.add_argument("--hz", type=float, default=1000.0)
ap.add_argument("--amplitude", type=int, default=12000)
ap.add_argument("--timeout", type=float, default=120)
args = ap.parse_args()

loop = GLib.MainLoop()
state = {
    "format": None,
    "channels": None,
    "rate": None,
    "starts": 0,
    "stops": 0,
    "frames": 0,
    "bytes": 0,
    "sends": 0,
    "start_time": None,
    "error": None,
    "done": False,
    "channel": None,
    "session": None,
    "opened": False,
}
TICK_MS = 10


def tone(first, count, rate, channels):
    """`count` frames of the tone from frame `first`, S16LE interleaved."""
    buf = (ctypes.c_int16 * (count * channels))()
    w = 2.0 * math.pi * args.hz / rate
    for i in range(count):
        v = int(args.amplitude * math.sin(w * (first + i)))
        for c in range(channels):
            buf[i * channels + c] = v
    return buf


def pump():
    ch = state["channel"]
    if state["done"] or state["start_time"] is None or ch is None:
        return False
    rate, channels = state["rate"], state["channels"]
    due = int((time.monotonic() - state["start_time"]) * rate)
    count = due - state["frames"]
    if count > 0:
        buf = tone(state["frames"], count, rate, channels)
        size = ctypes.sizeof(buf)
        ms = (state["frames"] * 1000 // rate) & 0xFFFFFFFF
        ch.send_data(ctypes.addressof(buf), size, ms)
        state["frames"] += count
        state["bytes"] += size
        state["sends"] += 1
    return True


def record_start(channel, fmt, channels, rate):
    state["format"], state["channels"], state["rate"] = fmt, channels, rate
    state["starts"] += 1
    state["frames"] = 0
    state["start_time"] = time.monotonic()
    GLib.timeout_add(TICK_MS, pump)


def record_stop(channel):
    state["stops"] += 1
    if state["start_time"] is not None:
        state["done"] = True
        loop.quit()


def channel_event(channel, event):
    if event == Spice.ChannelEvent.OPENED:
        state["opened"] = True
        return
    if state["start_time"] is not None:
        # The server went away after the stream: the guest is done.
        state["done"] = True
        loop.quit()
        return
    if not state["opened"]:
        # Not up yet: try again.
        retry()
        return
    err = channel.get_error()
    state["error"] = f"{channel.get_property('channel-type')}: {event.value_nick}" + (
        f" ({err.message})" if err else "")
    loop.quit()


def channel_new(session, channel):
    GObject.Object.connect(channel, "channel-event", channel_event)
    if isinstance(channel, Spice.RecordChannel):
        state["channel"] = channel
        GObject.Object.connect(channel, "record-start", record_start)
        GObject.Object.connect(channel, "record-stop", record_stop)
        # Only this channel is opened: the microphone is all the client does.
        channel.connect()


def connect():
    session = Spice.Session()
    session.set_property("host", args.host)
    session.set_property("port", args.port)
    if args.password is not None:
        session.set_property("password", args.password)
    session.set_property("enable-audio", True)
    GObject.Object.connect(session, "channel-new", channel_new)
    state["session"] = session
    if not session.connect():
        retry()
    return False


def retry():
    old = state["session"]
    state["session"] = None
    state["channel"] = None
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
print(
    f"record rate={state['rate']} channels={state['channels']} format={state['format']} "
    f"starts={state['starts']} stops={state['stops']} frames={state['frames']} "
    f"bytes={state['bytes']} sends={state['sends']} hz={args.hz} "
    f"error={(state['error'] or 'none').replace(' ', '_')}",
    flush=True,
)
sys.exit(0 if state["error"] is None and state["starts"] > 0 else 1)
