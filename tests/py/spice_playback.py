"""Records a SPICE server's playback channel with spice-gtk's SpiceClientGLib
(run with /usr/bin/python3, which has `gi`): connects, waits for the first
PLAYBACK data, records --seconds of it as raw S16 interleaved PCM to --out,
then prints one line of key=value pairs: the stream's format from
playback-start, and the client's own clock over what it received after the
first SETTLE seconds (the window's bytes and seconds: its real rate), when
the playback channel opened and the first DATA arrived (CLOCK_MONOTONIC, which
scripts/bench_audio relates to the guest's serial), and
the bytes the channel read from the wire (Opus is a tenth of the PCM), and
the channel's min-latency (ms of audio spice-gtk keeps buffered: 200 after
START unless the server sends PLAYBACK LATENCY).

`stream_zero_monotonic`: when the stream's first non-silent sample was due
to play, judged from every DATA: the DATA's arrival minus the audio it
completes, counted from that first sample (the median over all DATA). For a
stream that started at DMA start t0, this minus t0 is how long after a
sample is due its DATA reaches the client, in steady state. Leading silence
(a server's priming) is not counted as audio; Opus's algorithmic delay (its
decoded output lags the input by 6.5 ms) shows up as latency, as it does
for a listener.

    spice_playback.py --host H --port P [--password PW] --out FILE.raw
                      [--seconds S] [--timeout S]
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
ap.add_argument("--password")
ap.add_argument("--out", required=True)
ap.add_argument("--seconds", type=float, default=10)
ap.add_argument("--timeout", type=float, default=120)
args = ap.parse_args()

session = Spice.Session()
session.set_property("host", args.host)
session.set_property("port", args.port)
if args.password is not None:
    session.set_property("password", args.password)
session.set_property("enable-audio", True)

loop = GLib.MainLoop()
out = open(args.out, "wb")
state = {
    "format": None,
    "channels": None,
    "rate": None,
    "first": None,
    "last": None,
    "bytes": 0,
    "messages": 0,
    "starts": 0,
    "stops": 0,
    "error": None,
    "mark_time": None,
    "mark_bytes": 0,
    "channel": None,
    "opened": None,
}
SETTLE = 2.0
# (arrival, PCM bytes received so far) of every DATA.
arrivals = []


def stream_zero(path, rate):
    """The median over DATA of arrival - (frames up to its end, from the
    first non-silent frame) / rate; 0 if there is no sound."""
    import array
    import statistics
    pcm = array.array("h")
    with open(path, "rb") as f:
        pcm.frombytes(f.read())
    left = pcm[0::2]
    if not left or rate is None:
        return 0
    loud = max(abs(v) for v in left) // 4
    first = next((i for i, v in enumerate(left) if abs(v) > loud), None)
    if first is None or loud == 0:
        return 0
    zeros = [t - (b / 4 - first) / rate for t, b in arrivals if b / 4 > first]
    return statistics.median(zeros) if zeros else 0



def playback_start(channel, fmt, channels, rate):
    state["format"], state["channels"], state["rate"] = fmt, channels, rate
    state["starts"] += 1


def playback_data(channel, data, size):
    now = time.monotonic()
    if state["first"] is None:
        state["first"] = now
    state["last"] = now
    if state["mark_time"] is None and now - state["first"] >= SETTLE:
        state["mark_time"], state["mark_bytes"] = now, state["bytes"]
    out.write(ctypes.string_at(data, size))
    state["bytes"] += size
    arrivals.append((now, state["bytes"]))
    state["messages"] += 1
    if now - state["first"] >= SETTLE + args.seconds:
        loop.quit()


def playback_stop(channel):
    state["stops"] += 1


def channel_event(channel, event):
    if event == Spice.ChannelEvent.OPENED and isinstance(channel, Spice.PlaybackChannel):
        state["opened"] = time.monotonic()
    if event in (Spice.ChannelEvent.OPENED, Spice.ChannelEvent.CLOSED):
        return
    err = channel.get_error()
    state["error"] = f"{channel.get_property('channel-type')}: {event.value_nick}" + (
        f" ({err.message})" if err else "")
    loop.quit()


def channel_new(session, channel):
    GObject.Object.connect(channel, "channel-event", channel_event)
    if isinstance(channel, Spice.PlaybackChannel):
        state["channel"] = channel
        GObject.Object.connect(channel, "playback-start", playback_start)
        GObject.Object.connect(channel, "playback-data", playback_data)
        GObject.Object.connect(channel, "playback-stop", playback_stop)
        # Only this channel is opened: the recording is all the client does.
        channel.connect()


def timeout():
    state["error"] = state["error"] or "timeout"
    loop.quit()
    return False


GObject.Object.connect(session, "channel-new", channel_new)
GLib.timeout_add(int(args.timeout * 1000), timeout)
if not session.connect():
    print("playback error=connect-failed")
    sys.exit(1)
loop.run()
# What crossed the wire (Opus or raw), against the PCM it decoded to.
wire_bytes = state["channel"].get_property("total-read-bytes") if state["channel"] else 0
min_latency = state["channel"].get_property("min-latency") if state["channel"] else 0
session.disconnect()
out.close()
zero = stream_zero(args.out, state["rate"])
window_bytes = state["bytes"] - state["mark_bytes"]
window_seconds = (state["last"] - state["mark_time"]) if state["mark_time"] is not None else 0
print(
    f"playback rate={state['rate']} channels={state['channels']} format={state['format']} "
    f"starts={state['starts']} messages={state['messages']} bytes={state['bytes']} "
    f"window_bytes={window_bytes} window_seconds={window_seconds:.4f} wire_bytes={wire_bytes} "
    f"min_latency={min_latency} "
    f"first_data_monotonic={state['first'] or 0:.6f} "
    f"opened_monotonic={state['opened'] or 0:.6f} "
    f"stream_zero_monotonic={zero:.6f} "
    f"error={(state['error'] or 'none').replace(' ', '_')}",
    flush=True,
)
sys.exit(0 if state["error"] is None else 1)
