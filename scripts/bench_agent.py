"""SPICE agent benchmark: spicebox against QEMU on the same guest and client.

The vdagent guest (images/guests/programs/src/bin/vdagent.rs) plays
spice-vdagent's side; the client is spice-gtk through SpiceClientGLib
(tests/py). Per VMM and run, one VM each for:

- clipboard (guest `b` mode, tests/py/spice_clipboard_big.py): guest -> client
  is the client's time from its REQUEST to the 10 MiB text in its hands;
  client -> guest is from the client handing its 10 MiB text to spice-gtk
  (CLOCK_MONOTONIC) to this script reading the guest's report of it on COM1
  (which includes the guest's crc32 of the text, the same under both VMMs);
- file transfer (guest `f` mode, tests/py/spice_file_xfer.py): 5 MiB through
  spice_main_channel_file_copy_async, until spice-gtk reports the agent's
  SUCCESS; MB/s = 5 MiB / that time.

Medians over --runs. Each VM takes the one-VM-at-a-time lock (/tmp/vm.lock).
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
LOCK = "/tmp/vm.lock"
PY = "/usr/bin/python3"
READY = b"SPICEBOX-VDAGENT-READY"


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Vm:
    def __init__(self, vmm, disk, port):
        if vmm == "qemu":
            cmd = ["qemu-system-x86_64", "-enable-kvm", "-machine", "pc", "-m", "512M",
                   "-nodefaults", "-vga", "qxl", "-display", "none", "-serial", "stdio",
                   "-drive", f"file={disk},format=raw,if=virtio",
                   "-global", "virtio-blk-pci.disable-legacy=on", "-no-reboot",
                   "-spice", f"port={port},addr=127.0.0.1,disable-ticketing=on",
                   "-device", "virtio-serial-pci,disable-legacy=on",
                   "-chardev", "spicevmc,id=vdagent,name=vdagent",
                   "-device", "virtserialport,chardev=vdagent,name=com.redhat.spice.0"]
        else:
            cmd = [os.path.join(ROOT, "target/release/spicebox"), "run", "--serial", "stdio",
                   disk, "-m", "512M",
                   "--spice", f"127.0.0.1:{port}", "--disable-ticketing"]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.out = b""
        self.seen = {}

    def pump(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if r:
            data = os.read(self.p.stdout.fileno(), 65536)
            now = time.monotonic()
            start = self.out.rfind(b"\n") + 1
            self.out += data
            for line in self.out[start:].split(b"\n")[:-1]:
                self.seen.setdefault(line.decode(errors="replace"), now)

    def wait_for(self, text, timeout=90):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.out:
            if time.monotonic() > deadline:
                sys.exit(f"no {text!r}; serial:\n{self.out.decode(errors='replace')}")
            self.pump(0.05)

    def send(self, b):
        self.p.stdin.write(b)
        self.p.stdin.flush()

    def close(self):
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def run_client(vm, args):
    """Runs a tests/py client while pumping the VM's serial; its stdout."""
    c = subprocess.Popen([PY] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while c.poll() is None:
        vm.pump(0.02)
    out, err = c.communicate()
    if c.returncode != 0:
        sys.exit(f"{args[0]}: {err.decode()}\n{vm.out.decode(errors='replace')}")
    return out.decode()


def clipboard(vmm, disk, tmp):
    port = free_port()
    vm = Vm(vmm, disk, port)
    vm.wait_for("SPICEBOX-VDAGENT-READY")
    vm.send(b"b")
    vm.wait_for("agent-big-clipboard-mode")
    stop = os.path.join(tmp, "stop")
    if os.path.exists(stop):
        os.remove(stop)
    c = subprocess.Popen([PY, os.path.join(ROOT, "tests/py/spice_clipboard_big.py"),
                          "--host", "127.0.0.1", "--port", str(port), "--stop-file", stop],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while vm.out.count(b"agent-clipboard-got ") < 3 and time.monotonic() < deadline:
        vm.pump(0.02)
    open(stop, "w").close()
    out, err = c.communicate()
    if c.returncode != 0:
        sys.exit(f"spice_clipboard_big.py: {err.decode()}")
    vm.wait_for("SPICEBOX-VDAGENT-OK")
    vm.close()
    out = out.decode()
    to_client = next(float(l.split("seconds=")[1]) for l in out.splitlines()
                     if l.startswith("guest-clipboard sel=0 type=1 "))
    sent = next(float(l.split("at=")[1]) for l in out.splitlines()
                if l.startswith("client-clipboard sent sel=0 type=1 "))
    got = next(t for l, t in vm.seen.items() if l.startswith("agent-clipboard-got sel=0 type=1 "))
    return to_client, got - sent


def file_xfer(vmm, disk, path):
    port = free_port()
    vm = Vm(vmm, disk, port)
    vm.wait_for("SPICEBOX-VDAGENT-READY")
    vm.send(b"f")
    vm.wait_for("agent-file-mode")
    out = run_client(vm, [os.path.join(ROOT, "tests/py/spice_file_xfer.py"),
                          "--host", "127.0.0.1", "--port", str(port), "--file", path])
    vm.wait_for("SPICEBOX-VDAGENT-OK")
    vm.close()
    seconds = float(out.split("seconds=")[1])
    return os.path.getsize(path) / 1e6 / seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-agent-")
    subprocess.run(["cargo", "run", "-q", "--release", "-p", "images", "--example",
                    "write_images", "--", tmp], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    image = os.path.join(tmp, "vdagent.img")
    path = os.path.join(tmp, "file.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(5 << 20))
    results = {}
    with open(LOCK, "w") as lock:
        for vmm in ["qemu", "spicebox"]:
            rows = []
            for _ in range(args.runs):
                disk = os.path.join(tmp, f"{vmm}.img")
                with open(image, "rb") as src, open(disk, "wb") as dst:
                    dst.write(src.read())
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    to_client, to_guest = clipboard(vmm, disk, tmp)
                    mbs = file_xfer(vmm, disk, path)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
                rows.append((to_client, to_guest, mbs))
            results[vmm] = [statistics.median(c) for c in zip(*rows)]
    print(f"\nmedian of {args.runs} runs, spice-gtk client, vdagent test guest\n")
    print("| VMM | 10 MiB clipboard guest->client (s) | 10 MiB clipboard client->guest (s) | file transfer 5 MiB (MB/s) |")
    print("| --- | --- | --- | --- |")
    for vmm, (a, b, c) in results.items():
        print(f"| {vmm} | {a:.3f} | {b:.3f} | {c:.1f} |")


if __name__ == "__main__":
    main()
