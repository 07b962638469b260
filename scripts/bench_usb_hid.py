#!/usr/bin/env python3
"""Where each HID report's latency goes (scripts/bench_usb with
SPICEBOX_BENCH_STDERR=/tmp/usb; add SPICEBOX_BENCH_LOG=warn,usbtime=debug for
spicebox's own stages):

  scripts/bench_usb_hid.py /tmp/usb.spicebox [/tmp/usb.qemu]

Per VMM, from LOG.hid (the test's stamps): peer's write -> the line's bytes
at the host (VMM, guest, serial output) and -> the test saw it. With a
usbtime log in LOG: report read by the SPICE task (header, client msg), TD
completed, Transfer Event written (finished), the guest's next doorbell and
the first byte of its line (serial line). Times in µs: median / p90 / max.
"""
import bisect, calendar, os, re, sys


def log_events(path):
    ev = []
    if not os.path.exists(path):
        return ev
    for line in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        m = re.match(r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d+)Z\s+DEBUG\s+(?:\S+\s+)?usbtime: (.*)", line)
        if not m:
            continue
        secs = calendar.timegm(tuple(int(m[i]) for i in range(1, 7)))
        ev.append((secs * 1_000_000 + int(m[7].ljust(6, "0")[:6]), m[8].strip()))
    ev.sort()
    return ev


def stats(name, values):
    v = sorted(x for x in values if x is not None)
    if v:
        print("  %-26s n=%3d  med %7.0f  p90 %7.0f  max %7.0f" % (name, len(v), v[len(v) // 2], v[int(len(v) * 0.9)], v[-1]))


for path in sys.argv[1:]:
    ev = log_events(path)
    ts = [t for t, _ in ev]
    rows = []
    for line in open(path + ".hid"):
        f = line.split()
        sent, seen, arrived = int(f[1]), int(f[3]), int(f[5])
        window = ev[bisect.bisect_left(ts, sent) : bisect.bisect_right(ts, seen)]

        def first(pred, after):
            if after is None:
                return None
            return next((t for t, m in window if t >= after and pred(m)), None)

        msg = first(lambda m: m.startswith("client msg len="), sent)
        done = first(lambda m: m == "finished", msg)
        rows.append(dict(sent=sent, seen=seen, arrived=arrived, msg=msg, done=done,
                         door=first(lambda m: m == "doorbell", done),
                         line=first(lambda m: m == "serial line", done)))
    print(path)

    def d(a, b):
        return lambda r: r[b] - r[a] if r[a] is not None and r[b] is not None else None

    stats("sent -> bytes at host", map(d("sent", "arrived"), rows))
    stats("bytes at host -> seen", map(d("arrived", "seen"), rows))
    if ev:
        stats("sent -> client msg", map(d("sent", "msg"), rows))
        stats("client msg -> finished", map(d("msg", "done"), rows))
        stats("finished -> doorbell", map(d("done", "door"), rows))
        stats("finished -> serial line", map(d("done", "line"), rows))
        stats("serial line -> bytes at host", map(d("line", "arrived"), rows))
    stats("TOTAL sent -> seen", map(d("sent", "seen"), rows))
