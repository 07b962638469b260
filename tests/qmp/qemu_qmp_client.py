#!/usr/bin/env python3
"""Drive spicebox's control socket with the real `qemu.qmp` library (PyPI).

Usage: qemu_qmp_client.py (unix:PATH | tcp:HOST:PORT) SCREENDUMP_DIR
Exits non-zero with a message on the first failed check.
"""

import asyncio
import os
import sys

from qemu.qmp import EventListener, ExecuteError, QMPClient


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")


async def next_event(listener, name):
    while True:
        ev = await asyncio.wait_for(listener.get(), timeout=30)
        if ev["event"] == name:
            return ev


async def main(address, outdir):
    qmp = QMPClient("spicebox-test")
    if address.startswith("unix:"):
        await qmp.connect(address[len("unix:"):])
    else:
        host, port = address[len("tcp:"):].rsplit(":", 1)
        await qmp.connect((host, int(port)))
    check(qmp.greeting.QMP.version["qemu"]["major"] >= 8, "greeting version")

    version = await qmp.execute("query-version")
    check(version["package"].startswith("spicebox "), f"query-version: {version}")

    status = await qmp.execute("query-status")
    check(status == {"running": True, "singlestep": False, "status": "running"},
          f"query-status at start: {status}")

    events = EventListener(("STOP", "RESUME", "SHUTDOWN"))
    with qmp.listen(events):
        check(await qmp.execute("stop") == {}, "stop returns {}")
        await next_event(events, "STOP")
        status = await qmp.execute("query-status")
        check(status["status"] == "paused" and not status["running"],
              f"query-status after stop: {status}")

        check(await qmp.execute("cont") == {}, "cont returns {}")
        await next_event(events, "RESUME")
        status = await qmp.execute("query-status")
        check(status["status"] == "running", f"query-status after cont: {status}")

        try:
            await qmp.execute("no-such-command")
            check(False, "an unknown command must fail")
        except ExecuteError as e:
            check(e.error_class == "CommandNotFound", f"error class: {e.error_class}")

        png = os.path.join(outdir, "screen.png")
        ppm = os.path.join(outdir, "screen.ppm")
        await qmp.execute("screendump", {"filename": png, "format": "png"})
        await qmp.execute("screendump", {"filename": ppm})
        with open(png, "rb") as f:
            head = f.read(24)
        check(head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "PNG file")
        width = int.from_bytes(head[16:20], "big")
        height = int.from_bytes(head[20:24], "big")
        with open(ppm, "rb") as f:
            magic, w, h = f.read(32).split(maxsplit=3)[:3]
        check(magic == b"P6", "PPM file")
        check((int(w), int(h)) == (width, height) and width > 0,
              f"PNG {width}x{height} vs PPM {w}x{h}")

        check(await qmp.execute("quit") == {}, "quit returns {}")
        ev = await next_event(events, "SHUTDOWN")
        check(ev["data"] == {"guest": False, "reason": "host-qmp-quit"},
              f"SHUTDOWN data: {ev['data']}")
    try:
        await qmp.disconnect()
    except EOFError:
        pass  # The server closed first, as QEMU does after quit.
    print("qemu.qmp client: all checks passed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
