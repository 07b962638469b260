"""virtio-blk benchmark: spicebox against QEMU on the same CPL-3 guest.

The virtio-bench guest (images/guests/programs/src/bin/virtio-bench.rs) keeps
16 reads in flight on a 256 MiB raw disk: sequential 64 KiB reads, then
random 4 KiB reads, each sector checked. Around each phase it waits for a byte
on COM1, and this script samples every thread's CPU time (/proc/PID/task/*/stat)
in between. Reported per phase:

- MB/s and requests/s, timed by the guest (TSC);
- notifies/request, and vCPU µs/request in notifies: how many times the
  guest wrote the queue's notify register, and how long those writes held the
  vCPU, timed by the guest itself (TSC) around each write. A notify traps: to
  the host kernel only (ioeventfd), or out to the VMM's user space, where
  (spicebox before device workers) the disk I/O itself ran. This is the vCPU
  time the guest loses to the device per request; the guest's own work is
  the same under every VMM.
- other threads' host µs/request: CPU time (schedstat, exact) of every thread
  of the process but the vCPUs: device workers, QEMU's main loop and AIO
  threads. (Host time of the vCPU thread itself cannot be told apart from the
  guest's here: the kernel samples guest time at ticks, and on these nested
  machines the difference came out negative.)

The guest polls, so its own spinning is guest time, counted by neither column.
Each VM takes the one-VM-at-a-time lock the test harness uses.
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
CLK_TCK = os.sysconf("SC_CLK_TCK")
OK = b"SPICEBOX-VIRTIO-BENCH-OK"
FAIL = b"SPICEBOX-VIRTIO-BENCH-FAIL"
PHASES = ["seq64k", "rand4k"]


def thread_times(pid):
    """{tid: (comm, CPU seconds)} for every thread of `pid` (schedstat, ns)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        out[tid] = (comm, run_ns / 1e9)
    return out


def is_vcpu(comm):
    # spicebox: "vcpu0"; QEMU: "CPU 0/KVM".
    return comm.startswith("vcpu") or comm.endswith("/KVM")


def other_threads_seconds(before, after):
    """CPU seconds of every thread but the vCPUs between two samples."""
    total = 0
    for tid, (comm, cpu) in after.items():
        if not is_vcpu(comm):
            total += cpu - before.get(tid, (comm, 0))[1]
    return total


def run_once(cmd, timeout):
    """Runs the guest under `cmd`; returns {phase: row}."""
    results = {}
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        buf = b""
        start = time.monotonic()
        sample = None
        try:
            while OK not in buf:
                left = timeout - (time.monotonic() - start)
                if left <= 0 or p.poll() is not None or FAIL in buf:
                    raise RuntimeError(f"{cmd[0]}: {buf[-400:].decode(errors='replace')}")
                r, _, _ = select.select([p.stdout], [], [], left)
                if not r:
                    continue
                chunk = os.read(p.stdout.fileno(), 4096)
                buf += chunk
                while b"\n" in buf:
                    line, _, rest = buf.partition(b"\n")
                    text = line.decode(errors="replace").strip()
                    if text.startswith("BENCH-READY "):
                        sample = thread_times(p.pid)
                        p.stdin.write(b"g")
                        p.stdin.flush()
                    elif text.startswith("BENCH-DONE "):
                        after = thread_times(p.pid)
                        words = text.split()
                        kv = dict(w.split("=") for w in words[2:])
                        n, nbytes, ns = int(kv["requests"]), int(kv["bytes"]), int(kv["ns"])
                        results[words[1]] = {
                            "mb_s": nbytes / ns * 1e3,
                            "req_s": n / ns * 1e9,
                            "notifies": int(kv["notifies"]) / n,
                            "notify_us": int(kv["notify_ns"]) / n / 1e3,
                            "other_us": other_threads_seconds(sample, after) / n * 1e6,
                        }
                        p.stdin.write(b"g")
                        p.stdin.flush()
                    if OK in line:
                        buf = line
                        break
                    buf = rest
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="median of this many runs")
    ap.add_argument("--disk-mib", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--spicebox", default=os.path.join(ROOT, "target/release/spicebox"))
    ap.add_argument("--also", action="append", default=[], metavar="NAME=BINARY",
                    help="another spicebox binary to compare (e.g. an older build)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only these rows (spicebox, qemu, or an --also NAME)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="spicebox-bench-blk-")
    disk = os.path.join(tmp, "bench.img")
    subprocess.run(["cargo", "run", "-q", "--release", "-p", "images", "--example",
                    "write_bench_disk", "--", disk, str(args.disk_mib)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)

    def spicebox(binary):
        return [binary, "run", disk, "-m", "512M", "--serial", "stdio", "--vga", "none",
                "--spice", "none", "--control", "none"]

    # debug-threads names the vCPU thread "CPU 0/KVM" (else it is "qemu-system-x86").
    qemu = ["qemu-system-x86_64", "-enable-kvm", "-name", "bench,debug-threads=on",
            "-machine", "pc", "-m", "512M",
            "-nodefaults", "-vga", "none", "-display", "none", "-serial", "stdio",
            "-no-reboot", "-drive", f"file={disk},format=raw,if=virtio",
            "-global", "virtio-blk-pci.disable-legacy=on"]
    vmms = [("spicebox", spicebox(args.spicebox))]
    for extra in args.also:
        name, _, binary = extra.partition("=")
        vmms.append((name, spicebox(binary)))
    vmms.append(("qemu", qemu))
    if args.only:
        vmms = [v for v in vmms if v[0] in args.only]

    print(f"virtio-blk from a CPL-3 guest, 16 requests in flight, {args.disk_mib} MiB raw "
          f"disk (page cache), median of {args.runs} runs")
    print()
    print("| vmm | reads | MB/s | requests/s | notifies/request | vCPU µs/request in notifies "
          "| other threads' host µs/request |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    try:
        for name, cmd in vmms:
            runs = [run_once(cmd, args.timeout) for _ in range(args.runs)]
            for phase in PHASES:
                med = {k: statistics.median(r[phase][k] for r in runs)
                       for k in ("mb_s", "req_s", "notifies", "notify_us", "other_us")}
                label = {"seq64k": "sequential 64 KiB", "rand4k": "random 4 KiB"}[phase]
                print(f"| {name} | {label} | {med['mb_s']:.0f} | {med['req_s']:.0f} | "
                      f"{med['notifies']:.3f} | {med['notify_us']:.2f} | "
                      f"{med['other_us']:.1f} |", flush=True)
    finally:
        os.remove(disk)
        os.rmdir(tmp)


if __name__ == "__main__":
    sys.exit(main())
