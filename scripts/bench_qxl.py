"""QXL native-mode benchmark: spicebox's server-side rendering against QEMU's
qxl + spice-server forwarding drawables, same guest, same client, one run.

The qxl-native test guest (images/guests/programs/src/bin/qxl-native.rs) drives
the card as Linux's qxl driver does. After its scene it waits on COM1:
  * 'a': 300 frames at 30 frames/s from ring 3, each a background FILL erasing
    a 128x96 sprite, a 32-bit bitmap COPY of it a few pixels on, and a 64x16
    FILL in a new colour (drawables recycled through the release ring);
  * 'f': one 64x64 FILL, then `QXL-FRAME n` on serial.
remote-viewer (under Xvfb) stays connected through a TCP proxy that counts
server-to-client bytes and stamps each display-channel read. Per VMM:
  * idle: bytes/s and CPU over a quiet screen;
  * animation: bytes/s (all channels and display only) and the VMM's CPU
    (utime+stime from /proc, total and without the vCPU threads; the guest
    busy-waits between frames, so the vCPU is always busy and is left out);
  * latency: 'f' written to the guest's serial input -> first display bytes
    the proxy reads from the server (median and max of N probes, each after a
    quiet pause), next to 'f' -> `QXL-FRAME` on serial output (the part of it
    that is the serial path and the guest, not the display path).
"""
import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_spice import Proxy, Viewer, Vm, free_port, require_tools, write_images  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY = b"QXL-NATIVE-READY"
DONE = b"QXL-ANIM-DONE"


class TimedProxy(Proxy):
    """Proxy that also stamps every read of a display channel's server side."""

    def __init__(self, backend_port):
        self.display_reads = []
        super().__init__(backend_port)

    def _down(self, src, dst, rec):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                now = time.monotonic()
                with self.lock:
                    rec[1] += len(d)
                    if rec[0] == 2:
                        self.display_reads.append(now)
                dst.sendall(d)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(2)
            except OSError:
                pass

    def first_display_after(self, t):
        with self.lock:
            return next((x for x in self.display_reads if x > t), None)


class QxlVm(Vm):
    """The VMM with its stderr kept in a file (QEMU's qxl guest_bug and
    spice-server warnings, spicebox's tracing), shown when a step fails;
    booted until the guest prints `ready`."""

    def __init__(self, cmd, timeout, stderr_path, ready=READY):
        self.stderr_path = stderr_path
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(stderr_path, "wb"))
        self.buf = b""
        self.wait_for(ready, timeout)

    def wait_for(self, marker, timeout):
        try:
            super().wait_for(marker, timeout)
        except RuntimeError as e:
            with open(self.stderr_path, "rb") as f:
                err = f.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{e}\n--- VMM stderr (tail) ---\n{err}") from None


def span(vm, proxy, action, until):
    """Runs `action`, waits for `until()`; (seconds, bytes, display bytes, CPU s, CPU s w/o vCPU)."""
    proxy.reset()
    c0, t0 = vm.cpu(), time.monotonic()
    action()
    until()
    dt = time.monotonic() - t0
    c1 = vm.cpu()
    return dt, proxy.bytes(), proxy.bytes(2), c1[0] - c0[0], c1[1] - c0[1]


def latency(vm, proxy, probes):
    to_client, to_serial = [], []
    for n in range(1, probes + 1):
        # A random pause: a fixed one after waiting for the display bytes
        # (which come on spicebox's 30 ms refresh) would send every probe at
        # the same phase of that refresh and measure one point of it.
        time.sleep(0.4 + random.uniform(0, 0.03))
        vm.drain()
        t0 = time.monotonic()
        vm.send(b"f")
        vm.wait_for(f"QXL-FRAME {n}\r\n".encode(), 10)
        to_serial.append(time.monotonic() - t0)
        deadline = time.monotonic() + 5
        while (t := proxy.first_display_after(t0)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"probe {n}: no display bytes within 5 s")
            time.sleep(0.001)
        to_client.append(t - t0)
    return to_client, to_serial


def proc_kib(pid, field):
    """A /proc/PID/status memory field, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith(field + ":"):
                return int(l.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def bench(name, cmd_for, args, tmp):
    backend = free_port()
    vm = QxlVm(cmd_for(backend), args.timeout, os.path.join(tmp, f"{name.split()[0]}.stderr"))
    viewer = None
    try:
        proxy = TimedProxy(backend)
        viewer = Viewer(proxy.port, tmp)
        deadline = time.monotonic() + 30
        while proxy.bytes(2) == 0 or proxy.bytes(4) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("remote-viewer did not link display and cursor")
            time.sleep(0.1)
        time.sleep(2)
        r = {"name": name}
        r["idle"] = span(vm, proxy, lambda: None, lambda: time.sleep(args.idle))
        r["lat_client"], r["lat_serial"] = latency(vm, proxy, args.probes)
        time.sleep(0.5)

        def anim_done():
            vm.wait_for(DONE, 120)
            time.sleep(0.5)  # the last frames' updates reach the client
        vm.buf = b""
        r["anim"] = span(vm, proxy, lambda: vm.send(b"a"), anim_done)
        m = re.search(rb"qxl-anim frames=(\d+) drawables=(\d+) late=(\d+) ms=(\d+)", vm.buf)
        if not m:
            raise RuntimeError(f"no qxl-anim line: {vm.buf[-300:]!r}")
        r["frames"], r["drawables"], r["late"], r["guest_ms"] = map(int, m.groups())
        # Resident memory after native mode has run its course (the guest's
        # RAM counts only where it was touched, on both VMMs alike).
        r["rss"], r["hwm"] = (proc_kib(vm.p.pid, f) for f in ("VmRSS", "VmHWM"))
        if viewer.v.poll() is not None:
            raise RuntimeError("remote-viewer exited")
        vm.send(b"q")
        return r
    finally:
        if viewer:
            viewer.stop()
        vm.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=5, help="idle span, seconds")
    ap.add_argument("--probes", type=int, default=20, help="latency probes")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    require_tools([("remote-viewer", "virt-viewer"), ("Xvfb", "xvfb"),
                      ("qemu-system-x86_64", "qemu-system-x86")])

    tmp = tempfile.mkdtemp(prefix="spicebox-bench-qxl-")
    try:
        write_images(tmp)
        disk = os.path.join(tmp, "qxl-native.img")
        spicebox = lambda port: [os.path.join(ROOT, "target/release/spicebox"), "run", disk,
                                 "-m", "512M", "--serial", "stdio", "--control", "none",
                                 "--spice", f"127.0.0.1:{port}", "--disable-ticketing"]
        qemu = lambda port: ["qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", "512M",
                             "-nodefaults", "-name", "bench,debug-threads=on", "-vga", "qxl",
                             "-display", "none", "-serial", "stdio", "-monitor", "none",
                             "-d", "guest_errors",
                             "-spice", f"port={port},addr=127.0.0.1,disable-ticketing=on",
                             "-drive", f"file={disk},format=raw,if=virtio",
                             "-global", "virtio-blk-pci.disable-legacy=on"]
        rows = [bench("spicebox", spicebox, args, tmp), bench("qemu -vga qxl", qemu, args, tmp)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    a = rows[0]
    print(f"QXL native, qxl-native guest 640x480, remote-viewer through a counting proxy, "
          f"loopback, no TLS; animation = {a['frames']} frames, {a['drawables']} drawables")
    print(f"{'':<36}" + "".join(f"{r['name']:>16}" for r in rows))

    def line(label, f):
        print(f"{label:<36}" + "".join(f"{f(r):>16}" for r in rows))
    line("idle: bytes/s", lambda r: f"{r['idle'][1] / r['idle'][0]:,.0f}")
    line("idle: CPU % (no vCPU)", lambda r: f"{100 * r['idle'][4] / r['idle'][0]:.1f}")
    line("animation: guest time", lambda r: f"{r['guest_ms'] / 1000:.2f} s")
    line("animation: late frames", lambda r: f"{r['late']}")
    line("animation: bytes/s (all channels)", lambda r: f"{r['anim'][1] / r['anim'][0]:,.0f}")
    line("animation: display bytes/frame", lambda r: f"{r['anim'][2] / r['frames']:,.0f}")
    line("animation: CPU % (all)", lambda r: f"{100 * r['anim'][3] / r['anim'][0]:.1f}")
    line("animation: CPU % (no vCPU)", lambda r: f"{100 * r['anim'][4] / r['anim'][0]:.1f}")
    line("after: RSS / peak MiB", lambda r: f"{r['rss'] / 1024:.0f} / {r['hwm'] / 1024:.0f}")
    ms = lambda v: f"{1000 * v:.1f} ms"
    line(f"'f' -> display bytes, median of {args.probes}",
         lambda r: ms(statistics.median(r["lat_client"])))
    line("'f' -> display bytes, max", lambda r: ms(max(r["lat_client"])))
    line("'f' -> QXL-FRAME on serial, median", lambda r: ms(statistics.median(r["lat_serial"])))


if __name__ == "__main__":
    main()
