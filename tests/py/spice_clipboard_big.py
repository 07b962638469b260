"""Large copy and paste with selections through spice-gtk's SpiceClientGLib
main channel (run with /usr/bin/python3, which has `gi`), against an agent
that announces CLIPBOARD_SELECTION and MAX_CLIPBOARD and grabs CLIPBOARD
(UTF8_TEXT, IMAGE_PNG) and PRIMARY (UTF8_TEXT).

max-clipboard is set to MAX_CLIPBOARD (spice-gtk sends it to the agent).
1. Guest -> client: every grabbed (selection, type) is requested; each answer
   prints
       guest-clipboard sel=S type=T size=N crc=CRC32 seconds=S
   and a PNG is decoded (chunks, CRCs, zlib) and printed as
       guest-png WxH ok
2. Client -> guest, once all three came: the client grabs CLIPBOARD with
   UTF8_TEXT and IMAGE_PNG and PRIMARY with UTF8_TEXT, and answers each
   request with its own 10 MiB UTF-8 text, a 1 MiB PNG (zlib-compressed noise)
   or a short PRIMARY text, printing
       client-clipboard sent sel=S type=T size=N crc=CRC32 at=T
   (T: CLOCK_MONOTONIC when it was handed to spice-gtk, for scripts/bench_agent)
Then it stays connected until STOP_FILE exists, disconnects and exits 0; exits
1 when a step does not happen within the timeout.

    spice_clipboard_big.py --host H --port P --stop-file F [--max-clipboard N] [--timeout S]
"""
import argparse
import ctypes
import os
import random
import struct
import sys
import time
import zlib

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402

CLIPBOARD, PRIMARY = 0, 1
UTF8_TEXT, IMAGE_PNG = 1, 2
WANT = [(CLIPBOARD, UTF8_TEXT), (CLIPBOARD, IMAGE_PNG), (PRIMARY, UTF8_TEXT)]

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", required=True)
ap.add_argument("--stop-file", required=True)
ap.add_argument("--max-clipboard", type=int, default=16 << 20)
ap.add_argument("--timeout", type=float, default=120)
args = ap.parse_args()

session = Spice.Session()
session.set_property("host", args.host)
session.set_property("port", args.port)
loop = GLib.MainLoop()
state = {"got": {}, "sent": set(), "asked": {}, "error": None}


def utf8_text(line, size):
    b = line.encode()
    t = b * (size // len(b))
    return t + b"-" * (size - len(t))


def png(side, seed):
    rnd = random.Random(seed)
    raw = b"".join(b"\0" + rnd.randbytes(4 * side) for _ in range(side))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def decode_png(data):
    """(width, height) after checking signature, chunk CRCs and the pixels' length."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
    at, idat, size = 8, b"", None
    while at < len(data):
        n, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + n]
        (crc,) = struct.unpack(">I", data[at + 8 + n:at + 12 + n])
        assert zlib.crc32(kind + body) == crc, "chunk %r CRC" % kind
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        at += 12 + n
    w, h = size
    assert len(zlib.decompress(idat)) == h * (1 + 4 * w), "pixel bytes"
    return w, h


CLIENT_DATA = {
    (CLIPBOARD, UTF8_TEXT): utf8_text("Hallo vom Client, 来自客户端的问候 ✓ 9876543210\n", 10 << 20),
    (CLIPBOARD, IMAGE_PNG): png(512, 1),
    (PRIMARY, UTF8_TEXT): utf8_text("Client-Auswahl, 客户端选择\n", 3000),
}


def grab(main, sel, types, ntypes):
    for s, kind in WANT:
        if s == sel and (s, kind) not in state["asked"]:
            state["asked"][(s, kind)] = time.monotonic()
            main.clipboard_selection_request(sel, kind)


def selection(main, sel, kind, data, size):
    if (sel, kind) in state["got"] or (sel, kind) not in state["asked"]:
        return
    raw = ctypes.string_at(data, size) if size else b""
    seconds = time.monotonic() - state["asked"][(sel, kind)]
    print("guest-clipboard sel=%d type=%d size=%d crc=%08x seconds=%.3f"
          % (sel, kind, len(raw), zlib.crc32(raw), seconds), flush=True)
    if kind == IMAGE_PNG:
        try:
            print("guest-png %dx%d ok" % decode_png(raw), flush=True)
        except (AssertionError, struct.error, zlib.error, TypeError) as e:
            print("guest-png bad: %s" % e, flush=True)
    state["got"][(sel, kind)] = raw
    if len(state["got"]) == len(WANT):
        main.clipboard_selection_grab(CLIPBOARD, [UTF8_TEXT, IMAGE_PNG])
        main.clipboard_selection_grab(PRIMARY, [UTF8_TEXT])


def request(main, sel, kind):
    data = CLIENT_DATA.get((sel, kind))
    if data is None:
        return False
    at = time.monotonic()
    main.clipboard_selection_notify(sel, kind, data)
    print("client-clipboard sent sel=%d type=%d size=%d crc=%08x at=%.6f"
          % (sel, kind, len(data), zlib.crc32(data), at), flush=True)
    state["sent"].add((sel, kind))
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
        channel.set_property("max-clipboard", args.max_clipboard)
        GObject.Object.connect(channel, "main-clipboard-selection-grab", grab)
        GObject.Object.connect(channel, "main-clipboard-selection", selection)
        GObject.Object.connect(channel, "main-clipboard-selection-request", request)


def done():
    return len(state["got"]) == len(WANT) and len(state["sent"]) == len(WANT)


def poll():
    if done() and os.path.exists(args.stop_file):
        loop.quit()
        return False
    return True


GObject.Object.connect(session, "channel-new", channel_new)
GLib.timeout_add(50, poll)
GLib.timeout_add(int(args.timeout * 1000), loop.quit)
if not session.connect():
    sys.exit("spice_clipboard_big: session.connect() failed")
loop.run()
session.disconnect()
ctx = GLib.MainContext.default()
for _ in range(20):
    ctx.iteration(False)
if done() and not state["error"]:
    sys.exit(0)
print("spice_clipboard_big: %s" % (state["error"] or "got=%s sent=%s within the timeout"
                                   % (sorted(state["got"]), sorted(state["sent"]))),
      file=sys.stderr)
sys.exit(1)
