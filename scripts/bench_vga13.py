"""Mode-13h benchmark: the vga13 test guest (images/guests/programs/src/bin/vga13.rs)
on spicebox and on QEMU (-vga qxl, spice-server), same client, one run.

The guest sets mode 13h through the VGA registers and animates from ring 3:
240 frames at 60 frames/s, each redrawing the box around a 32x32 sprite
bouncing over palette bands and a 5-digit frame counter, stored into the
0xA0000 window 8 bytes at a time as a DOS game's blits do. A frame that is
late is drawn at once (never skipped), so frames/s drops below 60 when
drawing is slow. After each run it waits on COM1 ('a' runs it again).

remote-viewer (under Xvfb) stays connected through a TCP proxy that counts
server-to-client bytes. Per VMM, over N runs of the animation:
  * frames/s (240 / the guest's own duration), late frames, guest time per
    frame spent storing pixels (the guest's draw_us: what each store costs,
    an exit each when the window traps);
  * bytes/s to the client (all channels) and display bytes per frame;
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
from bench_spice import Proxy, Viewer, free_port, require_tools, write_images  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE = b"VGA13-ANIM-DONE"
RUN = rb"vga13 frames=(\d+) late=(\d+) ms=(\d+) draw_us=(\d+)"


def bench(name, cmd_for, args, tmp):
    backend = free_port()
    stderr = os.path.join(tmp, f"{name.split()[0]}.stderr")
    vm = QxlVm(cmd_for(backend), args.timeout, stderr, ready=DONE)
    viewer = None
    try:
        proxy = Proxy(backend)
        viewer = Viewer(proxy.port, tmp)
        deadline = time.monotonic() + 30
        while proxy.bytes(2) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("remote-viewer did not link the display")
            time.sleep(0.1)
        time.sleep(2)
        r = {"name": name, "frames": 0, "late": 0, "guest_ms": 0, "draw_us": [],
             "secs": 0.0, "bytes": 0, "display": 0, "cpu": 0.0}
        for _ in range(args.runs):
            vm.drain()
            vm.buf = b""
            proxy.reset()
            c0, t0 = vm.cpu(), time.monotonic()
            vm.send(b"a")
            vm.wait_for(DONE, 120)
            time.sleep(0.3)  # the last frames' updates reach the client
            r["secs"] += time.monotonic() - t0
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
        rows = [bench("spicebox", spicebox(os.path.join(ROOT, "target/release/spicebox")),
                      args, tmp)]
        if args.before:
            rows.append(bench("spicebox before", spicebox(args.before), args, tmp))
        rows.append(bench("qemu -vga qxl", qemu, args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"mode 13h, vga13 guest (640x400 shown), {args.runs} x 240 frames at 60/s, "
          f"remote-viewer through a counting proxy, loopback, no TLS")
    print(f"{'':<34}" + "".join(f"{r['name']:>17}" for r in rows))

    def line(label, f):
        print(f"{label:<34}" + "".join(f"{f(r):>17}" for r in rows))
    line("frames/s", lambda r: f"{1000 * r['frames'] / r['guest_ms']:.1f}")
    line("late frames", lambda r: f"{r['late']} of {r['frames']}")
    line("guest draw time/frame (median)",
         lambda r: f"{sorted(r['draw_us'])[len(r['draw_us']) // 2]} us")
    line("bytes/s to client (all)", lambda r: f"{r['bytes'] / r['secs']:,.0f}")
    line("display bytes/frame", lambda r: f"{r['display'] / r['frames']:,.0f}")
    line("VMM CPU % (no vCPU)", lambda r: f"{100 * r['cpu'] / r['secs']:.1f}")


if __name__ == "__main__":
    main()
