"""Mode-13h benchmark: the vga13 test guest (images/guests/programs/src/bin/vga13.rs)
on spicebox and on QEMU (-vga qxl, spice-server), same client, one run.

The guest sets mode 13h through the VGA registers and animates from ring 3:
240 frames at 60 frames/s, each redrawing the box around a 32x32 sprite
bouncing over palette bands and a 5-digit frame counter, stored into the
0xA0000 window 8 bytes at a time as a DOS game's blits do. A frame that is
late is drawn at once (never skipped), so frames/s drops below 60 when
drawing is slow. After each run it waits on COM1 ('a' runs it again).

remote-viewer (under Xvfb) stays connected through a TCP proxy that counts
server-to-client bytes, on loopback and through a slow link (bench_wan's
WanProxy: 2 Mbit/s, 50 ms each way by default). Per VMM and link, over N runs
of the animation:
  * frames/s (240 / the guest's own duration), late frames, guest time per
    frame spent storing pixels (the guest's draw_us: what each store costs,
    an exit each when the window traps);
  * bytes/s to the client (all channels) and display bytes per frame, over
    the span from the key to the last display byte delivered (the link
    drained, quiet for 1.5 s);
  * drain: from the guest's last frame to the last display byte delivered
    (how far the client's picture trails the guest at the end);
  * the VMM's CPU (utime+stime from /proc) without the vCPU thread, which
    busy-waits between frames.
"""
import argparse
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_qxl import QxlVm  # noqa: E402
from bench_spice import Viewer, free_port, require_tools, write_images  # noqa: E402
from bench_wan import WanProxy, names  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE = b"VGA13-ANIM-DONE"
RUN = rb"vga13 frames=(\d+) late=(\d+) ms=(\d+) draw_us=(\d+)"


def drained(proxy, quiet, timeout=60):
    """Waits until no display byte was delivered for `quiet` s; returns the
    time of the last one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with proxy.lock:
            last = proxy.last_display
        if time.monotonic() - last >= quiet:
            return last
        time.sleep(0.1)
    raise RuntimeError("the display never went quiet")


def bench(name, cmd_for, slow, args, tmp):
    backend = free_port()
    stderr = os.path.join(tmp, f"{name.split()[0]}.stderr")
    vm = QxlVm(cmd_for(backend), args.timeout, stderr, ready=DONE)
    viewer = None
    try:
        proxy = WanProxy(backend, *((args.bps, args.delay_ms / 1000) if slow else ()))
        viewer = Viewer(proxy.port, tmp)
        deadline = time.monotonic() + 30
        while proxy.bytes(2) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("remote-viewer did not link the display")
            time.sleep(0.1)
        # The first full frame crosses the link; servers measure it.
        time.sleep(5 if slow else 2)
        drained(proxy, args.quiet)
        r = {"name": name, "frames": 0, "late": 0, "guest_ms": 0, "draw_us": [],
             "secs": 0.0, "bytes": 0, "display": 0, "cpu": 0.0, "drain": []}
        for _ in range(args.runs):
            vm.drain()
            vm.buf = b""
            proxy.reset()
            c0, t0 = vm.cpu(), time.monotonic()
            vm.send(b"a")
            vm.wait_for(DONE, 120)
            done = time.monotonic()
            last = drained(proxy, args.quiet)
            r["secs"] += last - t0
            r["drain"].append(max(0.0, last - done))
            c1 = vm.cpu()
            r["cpu"] += c1[1] - c0[1]
            r["bytes"] += proxy.bytes()
            r["display"] += proxy.bytes(2)
            m = re.search(RUN, vm.buf)
            if not m:
                raise RuntimeError(f"no vga13 line: {vm.buf[-300:]!r}")
            frames, late, ms, draw_us = map(int, m.groups())
            r["frames"] += frames
            r["late"] += late
            r["guest_ms"] += ms
            r["draw_us"].append(draw_us)
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
    ap.add_argument("--runs", type=int, default=3, help="animations per VMM")
    ap.add_argument("--before", help="also bench this (older) spicebox binary")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--bps", type=float, default=2e6, help="slow link, bits/s")
    ap.add_argument("--delay-ms", type=float, default=50, help="slow link, one way")
    ap.add_argument("--quiet", type=float, default=1.5, help="drained after s")
    ap.add_argument("--links", type=lambda t: names(t, ["local", "slow"]),
                    default=["local", "slow"], help="comma-separated: local,slow")
    args = ap.parse_args()
    require_tools([("remote-viewer", "virt-viewer"), ("Xvfb", "xvfb"),
                   ("qemu-system-x86_64", "qemu-system-x86")])

    tmp = tempfile.mkdtemp(prefix="spicebox-bench-vga13-")
    try:
        write_images(tmp)
        disk = os.path.join(tmp, "vga13.img")

        def spicebox(binary):
            return lambda port: [binary, "run", disk, "-m", "512M", "--serial", "stdio",
                                 "--control", "none", "--spice", f"127.0.0.1:{port}",
                                 "--disable-ticketing"]
        qemu = lambda port: ["qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", "512M",
                             "-nodefaults", "-name", "bench,debug-threads=on", "-vga", "qxl",
                             "-display", "none", "-serial", "stdio", "-monitor", "none",
                             "-spice", f"port={port},addr=127.0.0.1,disable-ticketing=on",
                             "-drive", f"file={disk},format=raw,if=virtio",
                             "-global", "virtio-blk-pci.disable-legacy=on"]
        rows = []
        for link in args.links:
            slow = link == "slow"
            ours = spicebox(os.path.join(ROOT, "target/release/spicebox"))
            rows.append(bench(f"spicebox {link}", ours, slow, args, tmp))
            if args.before:
                rows.append(bench(f"before {link}", spicebox(args.before), slow, args, tmp))
            rows.append(bench(f"qemu {link}", qemu, slow, args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"mode 13h, vga13 guest (640x400 shown), {args.runs} x 240 frames at 60/s, "
          f"remote-viewer through a counting proxy, no TLS; local = loopback, "
          f"slow = {args.bps / 1e6:g} Mbit/s and {args.delay_ms:g} ms each way; "
          f"qemu = -vga qxl")
    print(f"{'':<34}" + "".join(f"{r['name']:>17}" for r in rows))

    def line(label, f):
        print(f"{label:<34}" + "".join(f"{f(r):>17}" for r in rows))
    line("frames/s", lambda r: f"{1000 * r['frames'] / r['guest_ms']:.1f}")
    line("late frames", lambda r: f"{r['late']} of {r['frames']}")
    line("guest draw time/frame (median)",
         lambda r: f"{sorted(r['draw_us'])[len(r['draw_us']) // 2]} us")
    line("bytes/s to client (all)", lambda r: f"{r['bytes'] / r['secs']:,.0f}")
    line("display bytes/frame", lambda r: f"{r['display'] / r['frames']:,.0f}")
    line("drain after last frame (max)", lambda r: f"{1000 * max(r['drain']):.0f} ms")
    line("VMM CPU % (no vCPU)", lambda r: f"{100 * r['cpu'] / r['secs']:.1f}")


if __name__ == "__main__":
    main()
