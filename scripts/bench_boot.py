"""Boot-time and memory benchmark: spicebox against QEMU on the same image.

For each VMM and run: start the process, read COM1 from its stdout until the
demo's ready marker, note the elapsed time and the process's resident memory
(VmRSS, and the peak VmHWM), then kill it. Prints a table of medians.
"""
import argparse
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MARKER = b"SPICEBOX-DEMO-READY"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def boot_once(cmd, timeout):
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    buf = b""
    try:
        while MARKER not in buf:
            left = timeout - (time.monotonic() - start)
            if left <= 0 or p.poll() is not None:
                raise RuntimeError(f"no marker from {cmd[0]}: {buf[-200:]!r}")
            r, _, _ = select.select([p.stdout], [], [], left)
            if r:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    continue
                buf += chunk
        elapsed = time.monotonic() - start
        return elapsed, rss_kib(p.pid, "VmRSS"), rss_kib(p.pid, "VmHWM")
    finally:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--baseline", metavar="SPICEBOX",
                    help="another spicebox binary (e.g. main's) to boot too, for regressions")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="spicebox-bench-")
    disk = os.path.join(tmp, "demo.img")
    subprocess.run(["cargo", "run", "-q", "--release", "-p", "images", "--example",
                    "write_images", "--", tmp], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    spicebox = [os.path.join(ROOT, "target/release/spicebox"), "run", disk,
                "-m", args.memory, "--serial", "stdio"]
    qemu = ["qemu-system-x86_64", "-enable-kvm", "-m", args.memory, "-display", "none",
            "-serial", "stdio", "-monitor", "none",
            "-drive", f"file={disk},format=raw,if=virtio"]
    rows = [("spicebox --vga none", spicebox + ["--vga", "none"]),
            ("spicebox (qxl)", spicebox),
            # Without ACPI tables: what SeaBIOS's table-loader run costs.
            ("spicebox --no-acpi", spicebox + ["--no-acpi"]),
            *([("baseline (qxl)", [args.baseline] + spicebox[1:])] if args.baseline else []),
            ("qemu -vga none", qemu + ["-vga", "none"]),
            ("qemu -vga qxl", qemu + ["-vga", "qxl"])]
    print(f"demo disk to '{MARKER.decode()}' on serial, -m {args.memory}, "
          f"median of {args.runs} runs")
    print(f"{'vmm':<20}{'boot s':>10}{'RSS MiB':>10}{'peak MiB':>10}")
    sys.stdout.flush()
    for name, cmd in rows:
        results = [boot_once(cmd, args.timeout) for _ in range(args.runs)]
        t = statistics.median(r[0] for r in results)
        rss = statistics.median(r[1] for r in results) / 1024
        hwm = statistics.median(r[2] for r in results) / 1024
        print(f"{name:<20}{t:>10.2f}{rss:>10.1f}{hwm:>10.1f}", flush=True)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
