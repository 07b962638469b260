"""Boot-to-/init benchmark of the Linux test guest: spicebox against QEMU.

Same vmlinux (spicebox --kernel: 64-bit boot protocol; QEMU -kernel: PVH
entry), same busybox initramfs, the same devices (QXL VGA, a virtio-blk disk)
and memory. For each run: time from process start to /init's first line
("SBX init") and to its report's end ("SBX report done"), both on COM1; then
/init powers off. Prints a table of medians. Each VM takes the
one-VM-at-a-time lock the test harness uses.
"""
import argparse
import fcntl
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK = os.path.join(tempfile.gettempdir(), "spicebox-tests.vm.lock")
MARKERS = [b"SBX init ", b"SBX report done", b"SBX poweroff"]


def boot_once(cmd, timeout):
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        buf = b""
        times = []
        try:
            for marker in MARKERS:
                while marker not in buf:
                    left = timeout - (time.monotonic() - start)
                    if left <= 0 or p.poll() is not None:
                        err = p.stderr.read1(4096) if p.poll() is not None else b""
                        raise RuntimeError(f"no {marker!r} from {cmd[0]}: "
                                           f"{buf[-2000:]!r} {err!r}")
                    r, _, _ = select.select([p.stdout], [], [], min(left, 1.0))
                    if r:
                        buf += os.read(p.stdout.fileno(), 65536)
                times.append(time.monotonic() - start)
            p.wait(timeout=60)
            return times
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmlinux", required=True)
    ap.add_argument("--initramfs", required=True)
    ap.add_argument("--switches", required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="spicebox-bench-linux-")
    disk = os.path.join(tmp, "disk.img")
    with open(disk, "wb") as f:
        f.write(bytes(64 * 1024))
    append = f"console=ttyS0 {args.switches}"
    spicebox = [os.path.join(ROOT, "target/release/spicebox"), "run", disk,
                "--kernel", args.vmlinux, "--initrd", args.initramfs, "--append", append,
                "-m", args.memory, "--serial", "stdio", "--spice", "none",
                "--control", "none"]
    qemu = ["qemu-system-x86_64", "-enable-kvm", "-machine", "pc", "-m", args.memory,
            "-nodefaults", "-vga", "qxl", "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-no-reboot",
            "-kernel", args.vmlinux, "-initrd", args.initramfs, "-append", append,
            "-drive", f"file={disk},format=raw,if=virtio",
            "-global", "virtio-blk-pci.disable-legacy=on"]
    print(f"Linux test guest: start to /init and to the end of its report, "
          f"-m {args.memory}, median of {args.runs} run(s)")
    print(f"{'vmm':<12}{'to /init s':>12}{'report s':>12}{'power-off s':>13}")
    sys.stdout.flush()
    for name, cmd in [("spicebox", spicebox), ("qemu", qemu)]:
        results = [boot_once(cmd, args.timeout) for _ in range(args.runs)]
        cols = [statistics.median(r[i] for r in results) for i in range(len(MARKERS))]
        print(f"{name:<12}{cols[0]:>12.1f}{cols[1]:>12.1f}{cols[2]:>13.1f}", flush=True)
    os.remove(disk)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
