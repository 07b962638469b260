"""Low-bandwidth benchmark (issue 16): spicebox against QEMU's spice-server, same
guest, same client, one run, on loopback and through a slow link (2 Mbit/s,
50 ms each way, as tests/src/slow_link.rs's SlowLink: the rate is paced per
~1448-byte segment, the delay added on delivery, a bounded queue between).

Guest: the qxl-native test guest's animation ('a' on COM1: 300 frames at 30
frames/s from ring 3; each frame FILLs the old place of a 128x96 smooth-gradient
sprite, COPYs the sprite a few pixels on, and FILLs a 64x16 bar at y 456 whose x
is (2 * frame) mod 576). The sprite is photo-like: it is the guest of
tests/tests/spice_jpeg.rs, run here with JPEG on auto on both VMMs
(`--spice-jpeg auto`, `jpeg-wan-compression=auto`), so each server may choose
lossy on the slow link. Then, in the same session, the guest's window drag ('d':
the sprite COPYed once, then each frame moved by a screen-to-screen COPY_BITS
along the same path, the two uncovered strips FILLed, the same bar). remote-viewer
(under Xvfb) watches through the proxy. Then the guest's video ('v': 250
frames of a changing photo-like 256x192 bitmap COPYed into one box at 25
frames/s; both servers run with streaming-video=filter, so after ~20 frames
they send it as an MJPEG stream, and the box's final picture once it is
still). Last, the guest's cursor cycle ('c': 24 cursor SETs alternating two
32x32 shapes), counted as the cursor channel's bytes. The animated mode-13h guest (vga13) has
its own benchmark over the same two links: scripts/bench_vga13.

Columns, over the span from the key to the last display byte delivered (the
link drained, quiet for 1.5 s):
  * bytes/s: server-to-client bytes of all channels the proxy delivered;
  * frames/s: frames whose bar FILL reached the client (DRAW_FILL messages of
    that 64x16 box, parsed from the display channel's mini headers; both
    servers forward the bar as a FILL), divided by the time from 'a' to the
    last of them; a frame a server merged into another (or sent as an image)
    is not counted;
  * latency: bar FILL of frame f delivered to the client - the frame's due time
    (the 'a' written + f/30 s; the guest reports late frames), median and 95th
    percentile;
  * server CPU: the VMM's utime+stime without the vCPU threads (the guest
    busy-waits between frames) and without spicebox's idle-priority ticket
    key refills (QEMU makes its keys inside the links, before the span)
    over the span.
For the video, frames are the video box's DRAW_COPYs before the stream
and its STREAM_DATAs (a DRAW_COPY of the box once the stream exists is the
final lossless picture, not a frame), frames/s is their count over the time from 'v' to the last of them,
and latency counts the i-th delivered frame as frame i (exact when every frame
arrives; an upper bound when some were skipped); "last" is the last frame's
delivery after it was due, "final" when the box's final (lossless) picture
arrived after that.
"""
import argparse
import os
import queue
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_qxl import DONE, QxlVm  # noqa: E402
from bench_spice import Proxy, Viewer, free_port, require_tools, write_images  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 1448  # one TCP segment, as SlowLink
QUEUE = 64  # segments queued per direction (the link's buffer), as SlowLink
DRAW_FILL = 302
DRAW_COPY = 304
STREAM_CREATE, STREAM_DATA, STREAM_DATA_SIZED = 122, 123, 316
FPS = 30
BAR = (456, 472, 64)  # top, bottom, width of the per-frame bar
VIDEO_FPS, VIDEO_FRAMES = 25, 250
VIDEO_BOX = (264, 32, 456, 288)  # top, left, bottom, right (images' qxl_scene)
VIDEO_DONE = b"QXL-VIDEO-DONE"
CURSORS_DONE = b"QXL-CURSORS-DONE"
CURSOR_SETS = 24  # images' qxl_scene::CURSOR_CYCLE_SETS


class WanProxy(Proxy):
    """Proxy that may play a slow link (bps, one-way delay; None: loopback as
    fast as it goes) and stamps every bar FILL it hands to the client."""

    def __init__(self, backend_port, bps=None, delay=0.0):
        self.bps, self.delay = bps, delay
        self.bars = []  # (delivery time, bar left x)
        self.video = []  # (delivery time, "frame" or "final")
        self.last_display = 0.0
        self.types = {}  # display message type -> [count, bytes]
        super().__init__(backend_port)

    def _relay(self, cs, ss, rec):
        self._pipe(cs, ss, rec, up=True)
        self._pipe(ss, cs, rec, up=False)

    def _pipe(self, src, dst, rec, up):
        q = queue.Queue(QUEUE)

        def reader():
            link_free = 0.0
            head = b""
            while True:
                try:
                    d = src.recv(CHUNK)
                except OSError:
                    d = b""
                if not d:
                    q.put(None)
                    return
                if up and rec[0] is None:
                    head += d
                    if len(head) >= 21 and head[:4] == b"REDQ":
                        rec[0] = head[20]
                now = time.monotonic()
                if self.bps:
                    link_free = max(link_free, now) + len(d) * 8 / self.bps
                    q.put((link_free + self.delay, d))
                else:
                    q.put((now, d))

        def writer():
            parser = DisplayParser() if not up else None
            while True:
                item = q.get()
                if item is None:
                    break
                at, d = item
                wait = at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(d)
                except OSError:
                    break
                if up:
                    continue
                now = time.monotonic()
                with self.lock:
                    rec[1] += len(d)
                if rec[0] == 2:
                    bars, msgs = parser.feed(d)
                    with self.lock:
                        self.last_display = now
                        self.bars += [(now, left) for left in bars]
                        self.video += [(now, kind) for kind in parser.take_video()]
                        for t, size in msgs:
                            c = self.types.setdefault(t, [0, 0])
                            c[0] += 1
                            c[1] += 6 + size
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=reader, daemon=True).start()
        threading.Thread(target=writer, daemon=True).start()

    def reset(self):
        super().reset()
        with self.lock:
            self.bars = []
            self.video = []
            self.types = {}


class DisplayParser:
    """Splits a display channel's server-to-client stream (link reply, then
    mini-header messages): the left x of each bar DRAW_FILL, and each
    message's (type, size)."""

    def __init__(self):
        self.buf, self.linked = b"", False
        self.video, self.streamed = [], False

    def take_video(self):
        """The video messages parsed since the last call: "frame" (a
        STREAM_DATA, or a DRAW_COPY of the box before any stream) or "final"
        (a DRAW_COPY of the box once a stream was created: the lossless
        picture, spicebox's after STREAM_DESTROY, spice-server's upgrade
        before it)."""
        out, self.video = self.video, []
        return out

    def feed(self, d):
        self.buf += d
        out, msgs = [], []
        while True:
            if not self.linked:
                if len(self.buf) < 16:
                    break
                n = 16 + struct.unpack_from("<I", self.buf, 12)[0] + 4
                if len(self.buf) < n:
                    break
                self.buf, self.linked = self.buf[n:], True
                continue
            if len(self.buf) < 6:
                break
            t, size = struct.unpack_from("<HI", self.buf, 0)
            if len(self.buf) < 6 + size:
                break
            msgs.append((t, size))
            if t == DRAW_FILL and size >= 20:
                # SpiceMsgDisplayBase: surface id, box top/left/bottom/right.
                top, left, bottom, right = struct.unpack_from("<iiii", self.buf, 10)
                if (top, bottom, right - left) == BAR:
                    out.append(left)
            if t in (STREAM_DATA, STREAM_DATA_SIZED):
                self.video.append("frame")
            elif t == STREAM_CREATE:
                self.streamed = True
            elif t == DRAW_COPY and size >= 20:
                if struct.unpack_from("<iiii", self.buf, 10) == VIDEO_BOX:
                    self.video.append("final" if self.streamed else "frame")
            self.buf = self.buf[6 + size:]
        return out, msgs


def frame_numbers(lefts):
    """The frame of each bar from its x (2f mod 576), unwrapped in delivery
    order (the bar moves on every frame, so a smaller x is a later lap)."""
    frames, lap, prev = [], 0, -1
    for left in lefts:
        if left < prev:
            lap += 1
        prev = left
        frames.append(lap * 288 + left // 2)
    return frames


def run(vm, proxy, key, quiet):
    """One animation (`key` on COM1); its measurements."""
    time.sleep(1)
    vm.drain()
    vm.buf = b""
    proxy.reset()
    c0 = vm.cpu()
    t0 = time.monotonic()
    vm.send(key)
    vm.wait_for(DONE, 120)
    # The link drains: wait until no display bytes came for `quiet` s.
    while True:
        time.sleep(0.2)
        with proxy.lock:
            last = proxy.last_display
        if time.monotonic() - max(last, t0) > quiet:
            break
    c1 = vm.cpu()
    span = max(last, t0 + 0.001) - t0
    m = re.search(rb"qxl-anim frames=(\d+) drawables=(\d+) late=(\d+) ms=(\d+)", vm.buf)
    if not m:
        raise RuntimeError(f"no qxl-anim line: {vm.buf[-300:]!r}")
    frames, _, late, guest_ms = map(int, m.groups())
    with proxy.lock:
        bars = list(proxy.bars)
        types = {t: list(c) for t, c in proxy.types.items()}
    nums = frame_numbers([b[1] for b in bars])
    lat = sorted(t - (t0 + f / FPS) for (t, _), f in zip(bars, nums))
    # Frames reach the client at this rate (a ping after the last frame
    # lengthens the byte span, not this).
    bar_span = (bars[-1][0] - t0) if bars else span
    return {
        "span": span,
        "bar_span": bar_span,
        "bytes": proxy.bytes(),
        "display": proxy.bytes(2),
        "delivered": len(set(nums)),
        "frames": frames,
        "late": late,
        "guest_ms": guest_ms,
        "lat": lat,
        "cpu": c1[1] - c0[1],
        "types": types,
    }


def run_video(vm, proxy, quiet):
    """The video ('v' on COM1); its measurements."""
    time.sleep(1)
    vm.drain()
    vm.buf = b""
    proxy.reset()
    c0 = vm.cpu()
    t0 = time.monotonic()
    vm.send(b"v")
    vm.wait_for(VIDEO_DONE, 120)
    while True:
        time.sleep(0.2)
        with proxy.lock:
            last = proxy.last_display
        if time.monotonic() - max(last, t0) > quiet:
            break
    c1 = vm.cpu()
    span = max(last, t0 + 0.001) - t0
    m = re.search(rb"qxl-video frames=(\d+) late=(\d+) ms=(\d+)", vm.buf)
    if not m:
        raise RuntimeError(f"no qxl-video line: {vm.buf[-300:]!r}")
    frames, late, guest_ms = map(int, m.groups())
    with proxy.lock:
        video = list(proxy.video)
        types = {t: list(c) for t, c in proxy.types.items()}
    got = [t for t, kind in video if kind == "frame"]
    final = [t for t, kind in video if kind == "final"]
    lat = sorted(t - (t0 + i / VIDEO_FPS) for i, t in enumerate(got))
    due_last = t0 + (frames - 1) / VIDEO_FPS
    return {
        "span": span,
        "bar_span": (got[-1] - t0) if got else span,
        "bytes": proxy.bytes(),
        "display": proxy.bytes(2),
        "delivered": len(got),
        "frames": frames,
        "late": late,
        "guest_ms": guest_ms,
        "lat": lat,
        "last": (got[-1] - due_last) if got else None,
        "final": (final[-1] - due_last) if final else None,
        "cpu": c1[1] - c0[1],
        "types": types,
    }


def run_cursor(vm, proxy):
    """The guest's cursor cycle ('c': CURSOR_SETS SETs alternating two 32x32
    ALPHA shapes, 250 ms apart): the cursor channel's bytes to the client."""
    time.sleep(1)
    vm.drain()
    vm.buf = b""
    proxy.reset()
    vm.send(b"c")
    vm.wait_for(CURSORS_DONE, 60)
    time.sleep(1)
    return proxy.bytes(4)


def bench(name, cmd, slow, args, tmp):
    backend = free_port()
    vm = QxlVm(cmd(backend), args.timeout, os.path.join(tmp, f"{name}.stderr"))
    viewer = None
    try:
        proxy = WanProxy(backend, *((args.bps, args.delay_ms / 1000) if slow else ()))
        viewer = Viewer(proxy.port, tmp)
        deadline = time.monotonic() + 60
        while proxy.bytes(2) == 0 or proxy.bytes(4) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("remote-viewer did not link display and cursor")
            time.sleep(0.1)
        # The first full frame crosses the link; servers measure it.
        time.sleep(5 if slow else 2)
        try:
            rs = []
            for guest in args.guests:
                if guest == "video":
                    rs.append(run_video(vm, proxy, args.quiet))
                else:
                    rs.append(run(vm, proxy, KEYS[guest], args.quiet))
            cursor = run_cursor(vm, proxy)
        except RuntimeError as e:
            raise RuntimeError(f"{name}: {e}") from None
        if viewer.v.poll() is not None:
            raise RuntimeError("remote-viewer exited")
        vm.send(b"q")
        return rs, cursor
    finally:
        if viewer:
            viewer.stop()
        vm.stop()


# The guests (--guests) and their keys on COM1.
KEYS = {"sprite": b"a", "drag": b"d", "video": b"v"}
ROW_NAMES = {"sprite": "photo sprite", "drag": "drag (bits)", "video": "video"}


def names(text, allowed):
    """A comma-separated option value, checked against `allowed`."""
    got = [n for n in text.split(",") if n]
    bad = [n for n in got if n not in allowed]
    if bad or not got:
        raise argparse.ArgumentTypeError(f"pick from {','.join(allowed)}")
    return got


def pct(v, p):
    return v[min(len(v) - 1, int(p * len(v)))] if v else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bps", type=float, default=2e6, help="slow link, bits/s")
    ap.add_argument("--delay-ms", type=float, default=50, help="slow link, one way")
    ap.add_argument("--quiet", type=float, default=1.5, help="drained after s")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--guests", type=lambda t: names(t, list(KEYS)), default=list(KEYS),
                    help="rows to run, in order (default sprite,drag,video)")
    ap.add_argument("--servers", type=lambda t: names(t, ["spicebox", "qemu"]),
                    default=["spicebox", "qemu"], help="default spicebox,qemu")
    ap.add_argument("--links", type=lambda t: names(t, ["local", "slow"]),
                    default=["local", "slow"], help="default local,slow")
    args = ap.parse_args()
    require_tools([("remote-viewer", "virt-viewer"), ("Xvfb", "xvfb"),
                      ("qemu-system-x86_64", "qemu-system-x86")])

    tmp = tempfile.mkdtemp(prefix="spicebox-bench-wan-")
    rows = []
    cursors = []
    try:
        write_images(tmp)
        disk = os.path.join(tmp, "qxl-native.img")
        spicebox = lambda port: [os.path.join(ROOT, "target/release/spicebox"), "run", disk,
                                 "-m", "512M", "--serial", "stdio", "--control", "none",
                                 "--spice", f"127.0.0.1:{port}", "--disable-ticketing",
                                 "--spice-jpeg", "auto", "--spice-streaming-video", "filter"]
        qemu = lambda port: ["qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", "512M",
                             "-nodefaults", "-name", "bench,debug-threads=on", "-vga", "qxl",
                             "-display", "none", "-serial", "stdio", "-monitor", "none",
                             "-spice", f"port={port},addr=127.0.0.1,disable-ticketing=on,"
                                       "jpeg-wan-compression=auto,streaming-video=filter",
                             "-drive", f"file={disk},format=raw,if=virtio",
                             "-global", "virtio-blk-pci.disable-legacy=on"]
        for link in args.links:
            slow = link == "slow"
            for vmm, cmd in (("spicebox", spicebox), ("qemu", qemu)):
                if vmm not in args.servers:
                    continue
                rs, cursor = bench(f"{vmm}-{link}", cmd, slow, args, tmp)
                cursors.append((vmm, link, cursor))
                for r, guest in zip(rs, args.guests):
                    r["vmm"], r["link"], r["guest"] = vmm, link, ROW_NAMES[guest]
                    rows.append(r)
    except BaseException:
        print(f"kept {tmp} (the VMMs' stderr)", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)

    f0 = rows[0]
    print(f"qxl-native guest 640x480, first row {f0['guest']} {f0['frames']} frames "
          f"(sprite/drag: photo-like 128x96 sprite at {FPS}/s, video: 256x192 at "
          f"{VIDEO_FPS}/s; jpeg auto on both), remote-viewer through a proxy; "
          f"slow = {args.bps / 1e6:g} Mbit/s, {args.delay_ms:g} ms each way")
    order = {"photo sprite": 0, "drag (bits)": 1, "video": 2}
    rows.sort(key=lambda r: (order[r["guest"]], r["link"] != "local"))
    hdr = (f"{'guest':<14}{'link':<6}{'server':<10}{'bytes/s':>10}{'frames/s':>10}{'delivered':>11}"
           f"{'lat med':>10}{'lat p95':>10}{'CPU %':>7}{'span s':>8}{'late':>6}")
    print(hdr)
    for r in rows:
        med, p95 = pct(r["lat"], 0.5), pct(r["lat"], 0.95)
        ms = lambda v: "n/a" if v is None else f"{1000 * v:.0f} ms"
        print(f"{r['guest']:<14}{r['link']:<6}{r['vmm']:<10}{r['bytes'] / r['span']:>10,.0f}"
              f"{r['delivered'] / r['bar_span']:>10.1f}{r['delivered']:>7}/{r['frames']:<3}"
              f"{ms(med):>10}{ms(p95):>10}{100 * r['cpu'] / r['span']:>7.1f}"
              f"{r['span']:>8.2f}{r['late']:>6}")
    print("video: last frame / final picture delivered after the last frame was due:")
    for r in rows:
        if r["guest"] == "video":
            ms = lambda v: "n/a" if v is None else f"{1000 * v:.0f} ms"
            print(f"  {r['link']:<6}{r['vmm']:<10}last {ms(r['last']):>8}  final {ms(r['final']):>8}")
    print(f"cursor cycle ({CURSOR_SETS} SETs alternating two 32x32 ALPHA shapes of 4 KiB), "
          "cursor-channel bytes to the client:")
    for vmm, link, b in cursors:
        print(f"  {link:<6}{vmm:<10}{b:>8,}")
    print("display messages (type: count/bytes; 302 FILL, 304 COPY, 104 COPY_BITS, "
          "105 INVAL_LIST, 122-126 STREAM_*, 3 SET_ACK, 4 PING):")
    for r in rows:
        t = " ".join(f"{k}:{c}/{b}" for k, (c, b) in sorted(r["types"].items()))
        print(f"  {r['guest']:<14}{r['link']:<6}{r['vmm']:<10}{t}")


if __name__ == "__main__":
    main()
