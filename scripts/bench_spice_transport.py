"""SPICE transport benchmark: spicebox's TLS and WebSocket against QEMU 7.2's
spice-server (TLS on the same certificates; WebSocket through websockify, which
QEMU needs for it), same demo image, one run. Run with /usr/bin/python3 (it drives
Chromium through python3-websocket).

  * connect-to-first-frame over TLS: wall time of `spicy-screenshot -s TLS-PORT`
    (it trusts the test CA through SSL_CERT_FILE), median of N runs;
  * connect-to-first-frame over WebSocket: headless Chromium loads the same page
    (spicebox's own page and spice-html5) and a probe in the page records when the
    canvas first shows the text screen, counted from navigation start; median of N;
  * server CPU for the same screen traffic: characters typed on COM1 at a steady rate
    while a client stays connected (remote-viewer over TLS, and over plain TCP as the
    baseline; the Chromium page over WebSocket); CPU of the VMM process without its
    vCPU threads, plus websockify's for QEMU's WebSocket row.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_spice import ROOT, TICK, Vm, free_port, require_tools, write_images  # noqa: E402

import websocket  # noqa: E402  (python3-websocket)

PAGE = os.path.join(ROOT, "spice", "src", "transport", "page")
PROBE = """
(function () {
  const t = setInterval(function () {
    const c = document.querySelector('canvas');
    if (!c || c.width < 100) return;
    const d = c.getContext('2d').getImageData(0, 0, c.width, 16).data;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] | d[i + 1] | d[i + 2]) { window.__ff = performance.now(); clearInterval(t); return; }
    }
  }, 2);
})();
"""


def make_x509(d):
    """The README's openssl commands: a CA and a server certificate it signs."""
    os.makedirs(d)
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
        "/CN=bench CA", "-keyout", "ca-key.pem", "-out", "ca-cert.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
        "server-key.pem", "-out", "server.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
        "-CAcreateserial", "-days", "30", "-extfile", "ext.cnf", "-out", "server-cert.pem")


def spicy_tls(tls_port, ca, out):
    t = time.monotonic()
    r = subprocess.run(["spicy-screenshot", "-h", "127.0.0.1", "-s", str(tls_port), "-o", out],
                       env=dict(os.environ, SSL_CERT_FILE=ca), stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"spicy-screenshot over TLS failed: {r.stderr.decode(errors='replace')}")
    os.unlink(out)
    return time.monotonic() - t


class Chrome:
    def __init__(self, profile):
        self.p = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--window-size=1200,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        for line in self.p.stderr:
            m = re.search(r"DevTools listening on ws://127.0.0.1:(\d+)/", line)
            if m:
                port = m.group(1)
                break
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.n = 0
        self.call("Page.enable")
        self.call("Page.addScriptToEvaluateOnNewDocument", source=PROBE)

    def call(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.n:
                return m.get("result", {})

    def eval(self, expr):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def first_frame(self, url, timeout=30):
        self.call("Page.navigate", url="about:blank")
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.eval("window.__ff === undefined ? null : window.__ff")
            if v is not None:
                return v / 1000
            time.sleep(0.02)
        raise RuntimeError(f"no first frame in the page at {url}")

    def stop(self):
        self.p.kill()
        self.p.wait()


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def typing_cpu(vm, seconds, rate, extra_pids=()):
    """CPU % of the VMM without vCPU threads (+ extra processes) while typing."""
    time.sleep(1)
    c0 = vm.cpu()[1] + sum(proc_cpu(p) for p in extra_pids)
    t0 = time.monotonic()
    chars = b"abcdefhijklmnoqrsuvwxyz "
    i = 0
    while time.monotonic() - t0 < seconds:
        vm.send(chars[i % len(chars):i % len(chars) + 1])
        i += 1
        time.sleep(1 / rate)
        vm.drain()
    dt = time.monotonic() - t0
    c1 = vm.cpu()[1] + sum(proc_cpu(p) for p in extra_pids)
    return 100 * (c1 - c0) / dt


class Viewer:
    """remote-viewer on its own Xvfb display: over TLS when `ca` is given."""

    def __init__(self, port, ca=None):
        r, w = os.pipe()
        self.x = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x1024x24",
                                   "-nolisten", "tcp"], pass_fds=(w,),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        cmd = (["remote-viewer", f"--spice-ca-file={ca}", f"spice://127.0.0.1?tls-port={port}"]
               if ca else ["remote-viewer", f"spice://127.0.0.1:{port}"])
        self.v = subprocess.Popen(cmd, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)
        if self.v.poll() is not None:
            raise RuntimeError("remote-viewer exited")

    def stop(self):
        for p in (self.v, self.x):
            p.kill()
            p.wait()


def bench(name, cmd, port, tls_port, page_url, ca, args, tmp, extra_pids=()):
    vm = Vm(cmd, args.timeout)
    try:
        time.sleep(0.5)
        r = {"name": name}
        r["ff_tls"] = statistics.median(
            spicy_tls(tls_port, ca, os.path.join(tmp, "s.ppm")) for _ in range(args.runs))
        chrome = Chrome(os.path.join(tmp, f"profile-{name.split()[0]}"))
        try:
            r["ff_ws"] = statistics.median(chrome.first_frame(page_url) for _ in range(args.runs))
            r["cpu_ws"] = typing_cpu(vm, args.seconds, args.rate, extra_pids)
        finally:
            chrome.stop()
        for key, viewer_port, viewer_ca in (("cpu_tls", tls_port, ca), ("cpu_plain", port, None)):
            viewer = Viewer(viewer_port, viewer_ca)
            try:
                r[key] = typing_cpu(vm, args.seconds, args.rate)
            finally:
                viewer.stop()
        return r
    finally:
        vm.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10, help="typing span")
    ap.add_argument("--rate", type=float, default=30, help="characters per second")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    require_tools([("spicy-screenshot", "spice-client-gtk"), ("remote-viewer", "virt-viewer"),
                      ("Xvfb", "xvfb"), ("qemu-system-x86_64", "qemu-system-x86"),
                      ("chromium", "chromium"), ("websockify", "websockify"),
                      ("openssl", "openssl")])

    tmp = tempfile.mkdtemp(prefix="spicebox-bench-transport-")
    websockify = None
    try:
        write_images(tmp)
        disk = os.path.join(tmp, "demo.img")
        x509 = os.path.join(tmp, "x509")
        make_x509(x509)
        ca = os.path.join(x509, "ca-cert.pem")
        # The same page for both: spicebox serves it itself; websockify serves a copy.
        web = os.path.join(tmp, "web")
        os.makedirs(web)
        for f in ("index.html", "spicebox.js"):
            shutil.copy(os.path.join(PAGE, f), web)
        os.symlink("/usr/share/spice-html5", os.path.join(web, "spice-html5"))

        port, tls = free_port(), free_port()
        spicebox = [os.path.join(ROOT, "target/release/spicebox"), "run", disk, "-m", "1G",
                    "--serial", "stdio", "--control", "none", "--spice", f"127.0.0.1:{port}",
                    "--spice-tls", f"127.0.0.1:{tls}", "--spice-x509-dir", x509,
                    "--disable-ticketing"]
        rows = [bench("spicebox", spicebox, port, tls, f"http://127.0.0.1:{port}/", ca, args,
                      tmp)]

        port, tls, wsport = free_port(), free_port(), free_port()
        qemu = ["qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", "1G", "-nodefaults",
                "-name", "bench,debug-threads=on", "-vga", "qxl", "-display", "none",
                "-serial", "stdio", "-monitor", "none", "-spice",
                f"port={port},tls-port={tls},addr=127.0.0.1,x509-dir={x509},disable-ticketing=on",
                "-drive", f"file={disk},format=raw,if=virtio"]
        websockify = subprocess.Popen(["websockify", "--web", web, str(wsport),
                                       f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        rows.append(bench("qemu -vga qxl", qemu, port, tls, f"http://127.0.0.1:{wsport}/", ca,
                          args, tmp, extra_pids=(websockify.pid,)))
    finally:
        if websockify:
            websockify.kill()
            websockify.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"SPICE transports, demo disk, loopback, median of {args.runs}; QEMU's WebSocket "
          f"goes through websockify (its CPU counted with QEMU's)")
    print(f"{'':<44}" + "".join(f"{r['name']:>16}" for r in rows))
    line = lambda label, key, fmt: print(f"{label:<44}" + "".join(
        f"{fmt.format(r[key]):>16}" for r in rows))
    line("first frame over TLS (spicy-screenshot)", "ff_tls", "{:.3f} s")
    line("first frame over WebSocket (page load on)", "ff_ws", "{:.3f} s")
    line(f"typing {args.rate:g} ch/s, plain TCP: CPU % (no vCPU)", "cpu_plain", "{:.1f}")
    line(f"typing {args.rate:g} ch/s over TLS: CPU % (no vCPU)", "cpu_tls", "{:.1f}")
    line(f"typing {args.rate:g} ch/s over WebSocket: CPU %", "cpu_ws", "{:.1f}")


if __name__ == "__main__":
    main()
