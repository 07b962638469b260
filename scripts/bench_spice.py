"""SPICE benchmark: spicebox's server against QEMU's spice-server, same image, same
clients, one run.

For each VMM, boot the demo disk (SPICE without ticketing on loopback) and measure
  * connect-to-first-frame: wall time of `spicy-screenshot` (connect, link main and
    display, receive the first full frame, write it), median of N runs, on the text
    screen and on the 1024x768 VBE scene ('g');
  * bytes for one full-screen update: on the DISPLAY channel of a spicy-screenshot
    session, the messages after the link stage up to and including the first MARK
    (SET_ACK, SURFACE_CREATE, the image(s), MARK; mini headers, as spice-gtk
    negotiates with both servers), parsed by a small TCP proxy in front of the
    server; plus all display bytes of that session (link reply and any later
    updates, e.g. the blinking text cursor, before the client hangs up);
  * a changing screen: remote-viewer (under Xvfb) stays connected through the proxy
    while characters are typed on COM1 at a steady rate, so the demo echoes them on
    the text screen; bytes/s the server sends (all channels) and the VMM process's
    CPU (utime+stime from /proc, total and without the vCPU threads); the same over
    an idle text screen (only the cursor blinks) as a baseline.
"""
import argparse
import os
import select
import shutil
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time

READY = b"SPICEBOX-DEMO-READY"
GRAPHICS = b"SPICEBOX-GRAPHICS-READY"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANNELS = {1: "main", 2: "display", 3: "inputs", 4: "cursor"}
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proxy:
    """Forwards 127.0.0.1:self.port to the server and counts server-to-client bytes
    per connection, keyed by the channel type read from the client's link message."""

    def __init__(self, backend_port):
        self.backend = backend_port
        self.lock = threading.Lock()
        # [channel type or None, bytes server->client, display bytes to first MARK]
        self.conns = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            for c in self.conns:
                c[1] = 0

    def bytes(self, channel=None):
        with self.lock:
            return sum(c[1] for c in self.conns if channel is None or c[0] == channel)

    @staticmethod
    def link_len(buf):
        return 16 + struct.unpack_from("<I", buf, 12)[0] + 4

    def _accept(self):
        while True:
            try:
                cs, _ = self.ls.accept()
            except OSError:
                return
            ss = socket.create_connection(("127.0.0.1", self.backend))
            for s in (cs, ss):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rec = [None, 0, None]
            with self.lock:
                self.conns.append(rec)
            self._relay(cs, ss, rec)

    def _relay(self, cs, ss, rec):
        """Starts relaying one accepted connection (client cs, server ss)."""
        threading.Thread(target=self._up, args=(cs, ss, rec), daemon=True).start()
        threading.Thread(target=self._down, args=(ss, cs, rec), daemon=True).start()

    def _up(self, src, dst, rec):
        head = b""
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if rec[0] is None:
                    head += d
                    if len(head) >= 21 and head[:4] == b"REDQ":
                        rec[0] = head[20]
                dst.sendall(d)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _down(self, src, dst, rec):
        # For DISPLAY: the bytes of the messages up to and including the first
        # MARK (the first full frame), parsed from the link reply and mini headers.
        buf, pos, stage = b"", 0, "link"
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                with self.lock:
                    rec[1] += len(d)
                dst.sendall(d)
                if rec[0] != 2 or stage == "done":
                    continue
                buf += d
                while True:
                    if stage == "link" and len(buf) >= pos + 16:
                        pos += 16 + struct.unpack_from("<I", buf, pos + 12)[0] + 4
                        stage = "msgs"
                    elif stage == "msgs" and len(buf) >= pos + 6:
                        t, size = struct.unpack_from("<HI", buf, pos)
                        if len(buf) < pos + 6 + size:
                            break
                        pos += 6 + size
                        if t == 102:  # SPICE_MSG_DISPLAY_MARK
                            with self.lock:
                                rec[2] = pos - self.link_len(buf)
                            stage = "done"
                            break
                    else:
                        break
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Vm:
    def __init__(self, cmd, timeout):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.buf = b""
        self.wait_for(READY, timeout)

    def wait_for(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.p.poll() is not None:
                raise RuntimeError(f"no {marker!r} on serial: {self.buf[-300:]!r}")
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                self.buf += os.read(self.p.stdout.fileno(), 65536)

    def drain(self):
        while select.select([self.p.stdout], [], [], 0)[0]:
            d = os.read(self.p.stdout.fileno(), 65536)
            if not d:
                break
            self.buf += d

    def send(self, b):
        self.p.stdin.write(b)
        self.p.stdin.flush()

    def cpu(self):
        """(all threads, without vCPU threads and key-pool refills) CPU seconds so far."""
        # The process's own counters first (live threads plus those that
        # exited): read after the threads, a busy thread's ticks in between
        # would count as an exited thread's.
        with open(f"/proc/{self.p.pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        proc = int(fields[11]) + int(fields[12])
        total = other = 0
        task = f"/proc/{self.p.pid}/task"
        for t in os.listdir(task):
            try:
                with open(f"{task}/{t}/stat") as f:
                    stat = f.read()
                with open(f"{task}/{t}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            ticks = int(fields[11]) + int(fields[12])
            total += ticks
            vcpu = comm.startswith("vcpu") or ("CPU " in comm and "/KVM" in comm)
            # spicebox's ticket-key pool refills at idle priority after
            # links, which can fall in a measured span; QEMU makes each
            # link's RSA key inside the link, before any span. Left out of
            # "without vCPU" so that both count the same work.
            keygen = comm == "spice-keygen"
            if not vcpu and not keygen:
                other += ticks
        exited = max(0, proc - total)
        return max(proc, total) / TICK, (other + exited) / TICK

    def stop(self):
        self.p.kill()
        self.p.wait()


def spicy(port, out):
    t = time.monotonic()
    r = subprocess.run(["spicy-screenshot", "-h", "127.0.0.1", "-p", str(port), "-o", out],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"spicy-screenshot failed: {r.stderr.decode(errors='replace')}")
    os.unlink(out)
    return time.monotonic() - t


def first_frame(port, runs, tmp):
    return statistics.median(spicy(port, os.path.join(tmp, "s.ppm")) for _ in range(runs))


def full_update_bytes(proxy, tmp):
    before = len(proxy.conns)
    spicy(proxy.port, os.path.join(tmp, "p.ppm"))
    time.sleep(0.3)
    with proxy.lock:
        d = [c for c in proxy.conns[before:] if c[0] == 2]
    if len(d) != 1 or d[0][2] is None:
        raise RuntimeError(f"no display channel with a MARK through the proxy: {d}")
    return d[0][2], d[0][1]


class Viewer:
    """remote-viewer on its own Xvfb display, connected through the proxy."""

    def __init__(self, port, tmp):
        r, w = os.pipe()
        self.x = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0",
                                   "1280x1024x24", "-nolisten", "tcp"],
                                  pass_fds=(w,), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        os.close(w)
        num = b""
        while not num.endswith(b"\n"):
            c = os.read(r, 1)
            if not c:
                raise RuntimeError("Xvfb did not start")
            num += c
        os.close(r)
        env = dict(os.environ, DISPLAY=":" + num.decode().strip(), GDK_BACKEND="x11",
                   NO_AT_BRIDGE="1")
        self.v = subprocess.Popen(["remote-viewer", f"spice://127.0.0.1:{port}"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        for p in (self.v, self.x):
            p.kill()
            p.wait()


def changing_screen(vm, proxy, tmp, seconds, rate):
    """(idle bytes/s, idle CPU %, idle CPU % w/o vCPU, typing bytes/s, CPU %, w/o vCPU)"""
    viewer = Viewer(proxy.port, tmp)
    try:
        deadline = time.monotonic() + 20
        while proxy.bytes(2) == 0 or proxy.bytes(4) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("remote-viewer did not link display and cursor")
            time.sleep(0.1)
        time.sleep(2)
        out = []
        for typing in (False, True):
            span = seconds / 2 if not typing else seconds
            proxy.reset()
            c0 = vm.cpu()
            t0 = time.monotonic()
            chars = b"abcdefhijklmnoqrsuvwxyz "
            i = 0
            while time.monotonic() - t0 < span:
                if typing:
                    vm.send(chars[i % len(chars):i % len(chars) + 1])
                    i += 1
                time.sleep(1 / rate)
                vm.drain()
            dt = time.monotonic() - t0
            c1 = vm.cpu()
            out += [proxy.bytes() / dt, 100 * (c1[0] - c0[0]) / dt,
                    100 * (c1[1] - c0[1]) / dt]
        if viewer.v.poll() is not None:
            raise RuntimeError("remote-viewer exited")
        return out
    finally:
        viewer.stop()


def bench(name, cmd_for, args, tmp):
    backend = free_port()
    vm = Vm(cmd_for(backend), args.timeout)
    try:
        proxy = Proxy(backend)
        time.sleep(0.5)
        r = {"name": name}
        r["ff_text"] = first_frame(backend, args.runs, tmp)
        r["bytes_text"], r["session_text"] = full_update_bytes(proxy, tmp)
        r["idle_bps"], r["idle_cpu"], r["idle_cpu_nv"], r["type_bps"], r["type_cpu"], \
            r["type_cpu_nv"] = changing_screen(vm, proxy, tmp, args.seconds, args.rate)
        vm.send(b"g")
        vm.wait_for(GRAPHICS, 30)
        time.sleep(0.5)
        r["ff_scene"] = first_frame(backend, args.runs, tmp)
        r["bytes_scene"], r["session_scene"] = full_update_bytes(proxy, tmp)
        return r
    finally:
        vm.stop()


def require_tools(tools):
    """Exits with the install command for the first (tool, package) missing."""
    for tool, pkg in tools:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing: apt-get install {pkg}")


def write_images(tmp):
    """Writes every test image into tmp (the images crate's write_images)."""
    subprocess.run(["cargo", "run", "-q", "--release", "-p", "images", "--example",
                    "write_images", "--", tmp], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10, help="typing span")
    ap.add_argument("--rate", type=float, default=30, help="characters per second")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    require_tools([("spicy-screenshot", "spice-client-gtk"), ("remote-viewer", "virt-viewer"),
                      ("Xvfb", "xvfb"), ("qemu-system-x86_64", "qemu-system-x86")])

    tmp = tempfile.mkdtemp(prefix="spicebox-bench-spice-")
    try:
        write_images(tmp)
        disk = os.path.join(tmp, "demo.img")
        spicebox = lambda port: [os.path.join(ROOT, "target/release/spicebox"), "run", disk,
                                 "-m", "1G", "--serial", "stdio", "--control", "none",
                                 "--spice", f"127.0.0.1:{port}", "--disable-ticketing"]
        qemu = lambda port: ["qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", "1G",
                             "-nodefaults", "-name", "bench,debug-threads=on", "-vga", "qxl", "-display", "none",
                             "-serial", "stdio", "-monitor", "none",
                             "-spice", f"port={port},addr=127.0.0.1,disable-ticketing=on",
                             "-drive", f"file={disk},format=raw,if=virtio"]
        rows = [bench("spicebox", spicebox, args, tmp), bench("qemu -vga qxl", qemu, args, tmp)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"SPICE, demo disk, loopback, no TLS; first frame = spicy-screenshot wall time "
          f"(median of {args.runs}); bytes = server to client")
    print(f"{'':<30}" + "".join(f"{r['name']:>16}" for r in rows))
    line = lambda label, key, fmt: print(f"{label:<30}" + "".join(
        f"{fmt.format(r[key]):>16}" for r in rows))
    line("first frame, text 720x400", "ff_text", "{:.3f} s")
    line("first frame, scene 1024x768", "ff_scene", "{:.3f} s")
    line("full frame bytes, text", "bytes_text", "{:,}")
    line("full frame bytes, scene", "bytes_scene", "{:,}")
    line("display session bytes, text", "session_text", "{:,}")
    line("display session bytes, scene", "session_scene", "{:,}")
    line("idle text: bytes/s", "idle_bps", "{:,.0f}")
    line("idle text: CPU % (all)", "idle_cpu", "{:.1f}")
    line("idle text: CPU % (no vCPU)", "idle_cpu_nv", "{:.1f}")
    line(f"typing {args.rate:g} ch/s: bytes/s", "type_bps", "{:,.0f}")
    line(f"typing: CPU % (all)", "type_cpu", "{:.1f}")
    line(f"typing: CPU % (no vCPU)", "type_cpu_nv", "{:.1f}")


if __name__ == "__main__":
    main()
