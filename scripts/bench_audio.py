"""Audio benchmark: spicebox's AC97 + SPICE playback against QEMU's
(-device AC97,audiodev=snd0 -audiodev spice,id=snd0), same guest, same client,
one run.

The guest is ac97-play (images/guests/programs/src/bin/ac97-play.rs): it sets
up an AC97 the way snd-intel8x0 does and plays a 440 Hz tone at 44.1 kHz, its
first sample non-silent, for 32 s. The client is spice-gtk's SpiceClientGLib
playback channel (tests/py/spice_playback.py), started with the VM so that it
is linked before the guest starts its DMA (checked: a run where it was not is
reported and left out).

Latency, DMA to client. Right before it sets the bus master running
(CR = RPBM) the guest prints `ac97-play dma-start` on COM1; this script reads
the VMM's serial stdout in a thread and stamps the line's arrival with
CLOCK_MONOTONIC. The client stamps, on the same host clock, the arrival of its
first PLAYBACK DATA (decoded). Nothing is sent before the stream starts, so
that first DATA carries the first samples the card fetched: the difference is
the time from the guest's DMA start to the client holding its first samples
(the card's fetch, the server's framing into 10 ms frames, encoding, the
socket and the client's decode). The serial line's own trip to this script
(a few hundred bytes over a pipe) is on both VMMs' side of the ledger alike,
and makes the figure an upper bound by that much. One sample per boot: the
median (and range) over --runs boots.

Latency in steady state: the first figure only times the first frame, which a
server can bring forward by starting the stream with silence (spicebox does,
5 ms). So the client also reports, from every DATA, when the stream's first
non-silent sample was due to play if the DATA arrived just as its last
sample was due (tests/py/spice_playback.py, stream_zero_monotonic; leading
silence is not counted as audio, Opus's 6.5 ms algorithmic delay is counted
as latency, alike for both servers); that minus
dma-start is how long after a sample's time (dma-start + its position in the
stream) the client has it: the median over all DATA of a boot, then the
median over boots.

Bytes per second on the wire: the playback channel's total-read-bytes over the
seconds of audio it decoded (PCM bytes / 192000), with the Opus the client
announces, and raw when the server is told not to compress (QEMU:
-spice playback-compression=off; spicebox: --spice-playback-compression off).

Server CPU: each thread's run time from /proc/<pid>/task/<tid>/schedstat
(nanoseconds, where utime/stime count 10 ms clock ticks: the non-vCPU
threads use a few ticks a second, too coarse to compare), summed over all
threads and over the non-vCPU ones (vCPU threads: spicebox's `vcpuN`,
QEMU's `CPU N/KVM` with debug-threads=on), over --seconds of playback
starting 2 s after dma-start, as CPU %; the process's tick count is printed
per run as a cross-check (it also holds threads that died). Context
switches/s: voluntary + involuntary switches of the non-vCPU threads
(mostly wake-ups). --threads prints them per thread. Configurations run
round-robin, so that other load on the machine falls on all alike.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "tests/py/spice_playback.py")
DMA_START = b"ac97-play dma-start"
TICK = os.sysconf("SC_CLK_TCK")
PCM_BYTES_PER_SECOND = 48_000 * 4


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Vm:
    """The VMM with its serial on stdout, read by a thread that stamps the
    dma-start line as it arrives."""

    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.buf = b""
        self.dma_start = None
        self.seen = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        fd = self.p.stdout.fileno()
        while True:
            d = os.read(fd, 4096)
            now = time.monotonic()
            if not d:
                return
            self.buf += d
            if self.dma_start is None and DMA_START in self.buf:
                self.dma_start = now
                self.seen.set()

    def threads(self):
        """{tid: (name, CPU ns, context switches)} of the VMM's threads now:
        schedstat's run time (ns, not clock ticks) and voluntary +
        involuntary switches (each a wake-up, or a preemption)."""
        out = {}
        task = f"/proc/{self.p.pid}/task"
        for t in os.listdir(task):
            try:
                with open(f"{task}/{t}/comm") as f:
                    comm = f.read().strip()
                with open(f"{task}/{t}/schedstat") as f:
                    ns = int(f.read().split()[0])
                with open(f"{task}/{t}/status") as f:
                    status = f.read()
            except OSError:
                continue
            switches = sum(int(l.split()[1]) for l in status.splitlines()
                           if l.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")))
            out[t] = (comm, ns, switches)
        return out

    def ticks(self):
        """The whole process's utime+stime, clock ticks (dead threads too)."""
        with open(f"/proc/{self.p.pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])

    def stop(self):
        self.p.kill()
        self.p.wait()


def is_vcpu(name):
    return name.startswith("vcpu") or ("CPU " in name and "/KVM" in name)


def window(t0, t1, seconds):
    """CPU % of all threads and of the non-vCPU ones, non-vCPU switches/s,
    and {"name (tid)": (CPU %, switches/s)} over a window between two
    `Vm.threads()` snapshots. A thread born in the window counts from zero;
    one that died in it is missed (counted in `gone`)."""
    total = other = switches = 0
    per = {}
    for tid, (name, ns, sw) in t1.items():
        _, ns0, sw0 = t0.get(tid, (name, 0, 0))
        d_ns, d_sw = ns - ns0, sw - sw0
        total += d_ns
        if not is_vcpu(name):
            other += d_ns
            switches += d_sw
        per[f"{name} ({tid})"] = (100 * d_ns / 1e9 / seconds, d_sw / seconds)
    return {
        "cpu": 100 * total / 1e9 / seconds,
        "cpu_nv": 100 * other / 1e9 / seconds,
        "switches": switches / seconds,
        "threads": per,
        "gone": len(set(t0) - set(t1)),
    }


def fields(line):
    return dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)


def one_run(cmd, port, args, tmp):
    vm = Vm(cmd(port))
    client = None
    try:
        client = subprocess.Popen(
            ["/usr/bin/python3", CLIENT, "--host", "127.0.0.1", "--port", str(port),
             "--seconds", str(args.seconds + 1), "--timeout", "120",
             "--out", os.path.join(tmp, "pcm.raw")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if not vm.seen.wait(args.timeout):
            raise RuntimeError(f"no dma-start on serial: {vm.buf[-300:]!r}")
        time.sleep(max(0.0, vm.dma_start + 2 - time.monotonic()))
        t0, k0, w0 = vm.threads(), vm.ticks(), time.monotonic()
        time.sleep(args.seconds)
        t1, k1, w1 = vm.threads(), vm.ticks(), time.monotonic()
        out, _ = client.communicate(timeout=120)
        line = next((l for l in out.splitlines() if l.startswith("playback ")), None)
        if line is None:
            raise RuntimeError(f"client said {out!r}")
        f = fields(line)
        if f["error"] != "none":
            raise RuntimeError(f"client: {line}")
        first = float(f["first_data_monotonic"])
        opened = float(f["opened_monotonic"])
        linked = 0 < opened < vm.dma_start
        latency = first - vm.dma_start if linked else None
        zero = float(f.get("stream_zero_monotonic", 0))
        steady = zero - vm.dma_start if linked and zero > 0 else None
        audio_seconds = int(f["bytes"]) / PCM_BYTES_PER_SECOND
        cpu = window(t0, t1, w1 - w0)
        # Cross-check of the per-thread sum against the process's own
        # (tick-resolution) figure, which also holds threads that died.
        cpu["cpu_ticks"] = 100 * (k1 - k0) / TICK / (w1 - w0)
        return {
            "latency": latency,
            "steady": steady,
            "wire_bps": int(f["wire_bytes"]) / audio_seconds,
            **cpu,
        }
    finally:
        if client and client.poll() is None:
            client.kill()
            client.wait()
        vm.stop()


def summarize(name, runs, args):
    lat = [r["latency"] * 1000 for r in runs if r["latency"] is not None]
    row = {"name": name, "runs": len(runs), "linked": len(lat)}
    row["lat"] = statistics.median(lat) if lat else float("nan")
    row["lat_range"] = f"{min(lat):.1f}-{max(lat):.1f}" if lat else "n/a"
    steady = [r["steady"] * 1000 for r in runs if r["steady"] is not None]
    row["steady"] = statistics.median(steady) if steady else float("nan")
    row["steady_range"] = f"{min(steady):.1f}-{max(steady):.1f}" if steady else "n/a"
    for k in ("wire_bps", "cpu", "cpu_nv", "switches"):
        row[k] = statistics.median(r[k] for r in runs)
    nv = [r["cpu_nv"] for r in runs]
    row["cpu_nv_range"] = f"{min(nv):.2f}-{max(nv):.2f}"
    return row


def one_line(name, r):
    if r["latency"] is None or r["steady"] is None:
        head = "client not linked before DMA start"
    else:
        head = f"latency {r['latency'] * 1000:.1f} ms, steady {r['steady'] * 1000:.1f} ms"
    line = (f"  {name}: {head}, CPU {r['cpu']:.1f} % (ticks: {r['cpu_ticks']:.1f}), "
            f"no vCPU {r['cpu_nv']:.2f} %, {r['switches']:.0f} switches/s"
            + (f", {r['gone']} threads gone" if r["gone"] else ""))
    print(line, flush=True)
    if ARGS.threads:
        for t, (cpu, sw) in sorted(r["threads"].items(), key=lambda kv: -kv[1][0]):
            if cpu >= 0.005 or sw >= 1:
                print(f"      {t:<26} {cpu:6.2f} %  {sw:6.0f} switches/s", flush=True)


ARGS = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="boots per configuration")
    ap.add_argument("--seconds", type=float, default=25,
                    help="CPU window (the guest plays 32 s; the window starts 2 s in)")
    ap.add_argument("--threads", action="store_true", help="per-thread CPU and switches")
    ap.add_argument("--only", default="", help="configurations whose name contains this")
    ap.add_argument("--baseline", metavar="SPICEBOX",
                    help="another spicebox binary (an earlier build) to run alongside")
    ap.add_argument("--timeout", type=float, default=120, help="boot to dma-start")
    args = ap.parse_args()
    global ARGS
    ARGS = args
    for tool, pkg in [("qemu-system-x86_64", "qemu-system-x86")]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing: apt-get install {pkg}")
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/girepository-1.0/SpiceClientGLib-2.0.typelib"):
        raise SystemExit("SpiceClientGLib missing: apt-get install gir1.2-spiceclientglib-2.0")

    tmp = tempfile.mkdtemp(prefix="spicebox-bench-audio-")
    try:
        subprocess.run(["cargo", "run", "-q", "--release", "-p", "images", "--example",
                        "write_images", "--", tmp], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        disk = os.path.join(tmp, "ac97-play.img")

        def spicebox(extra, binary=os.path.join(ROOT, "target/release/spicebox")):
            return lambda port: [binary, "run", disk,
                                 "-m", "512M", "--serial", "stdio", "--control", "none",
                                 "--spice", f"127.0.0.1:{port}", "--disable-ticketing"] + extra

        def qemu(extra):
            return lambda port: ["qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", "512M",
                                 "-nodefaults", "-name", "bench,debug-threads=on",
                                 "-vga", "qxl", "-display", "none",
                                 "-serial", "stdio", "-monitor", "none", "-no-reboot",
                                 "-device", "AC97,audiodev=snd0", "-audiodev", "spice,id=snd0",
                                 "-spice", f"port={port},addr=127.0.0.1,disable-ticketing=on"
                                 + extra,
                                 "-drive", f"file={disk},format=raw,if=virtio"]

        configs = [("spicebox, Opus", spicebox([])),
                   ("QEMU, Opus", qemu("")),
                   ("spicebox, raw", spicebox(["--spice-playback-compression", "off"])),
                   ("QEMU, raw", qemu(",playback-compression=off"))]
        if args.baseline:
            configs += [("baseline spicebox, Opus", spicebox([], args.baseline)),
                        ("baseline spicebox, raw",
                         spicebox(["--spice-playback-compression", "off"], args.baseline))]
        configs = [(n, c) for n, c in configs if args.only in n]
        # Round-robin, so that load from other work on the machine falls on
        # every configuration alike.
        runs = {name: [] for name, _ in configs}
        for i in range(args.runs):
            for name, cmd in configs:
                r = one_run(cmd, free_port(), args, tmp)
                runs[name].append(r)
                one_line(f"{name} #{i + 1}", r)
        rows = [summarize(name, runs[name], args) for name, _ in configs]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"ac97-play (440 Hz, 44.1 kHz stereo) to SpiceClientGLib's playback channel, loopback; "
          f"median of {args.runs} boots; CPU over {args.seconds:g} s of playback")
    print()
    print("| server | DMA start to first DATA at the client (ms), median [range] "
          "| sample due to client, steady state (ms), median [range] "
          "| bytes/s on the wire | server CPU % (all threads) "
          "| server CPU % (no vCPU), median [range] | context switches/s (no vCPU) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['lat']:.1f} [{r['lat_range']}] "
              f"| {r['steady']:.1f} [{r['steady_range']}] | {r['wire_bps']:,.0f} "
              f"| {r['cpu']:.1f} | {r['cpu_nv']:.2f} [{r['cpu_nv_range']}] "
              f"| {r['switches']:.0f} |")


if __name__ == "__main__":
    main()
