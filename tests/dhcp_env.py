"""A DHCP "LAN" for the dhcp plugin's tests: namespaces, a dnsmasq, our daemon.

Topology (every piece made here, removed by ``close()`` even after a failure)::

    LAN namespace:  bridge lanbr (10.77.0.1/24), dnsmasq serving it; veth ends lan-a, lan-b
    host namespace: up0 (peer of lan-a) enslaved to bridge dbr0  -> containers via `bridge`
                    up1 (peer of lan-b)                          -> containers via `macvlan`

The daemon runs as our own child process (killed by PID), with its socket and state in a
temporary directory. Plugins run from private source launchers (build/launchers.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

from tests.helpers import ROOT, Netns, sh

PY = os.path.join(ROOT, ".venv", "bin", "python3")
SUBNET = "10.77.0"
SERVER = f"{SUBNET}.1"


def build_launchers(out: str) -> str:
    subprocess.run([PY, os.path.join(ROOT, "build", "launchers.py"), out], check=True, capture_output=True)
    return out


def wait_for(pred, timeout: float, step: float = 0.1):
    """Poll ``pred`` until it returns something true or ``timeout`` s pass; its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


class Lan:
    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="cnipy-dhcp-")
        self.lan: Netns | None = None
        self.host: Netns | None = None
        self.dnsmasq: subprocess.Popen | None = None
        self.lease_file = os.path.join(self.tmp, "dnsmasq.leases")
        self.log_file = os.path.join(self.tmp, "dnsmasq.log")
        try:
            self.lan = Netns("dlan")
            self.host = Netns("dhst")
            L, H = self.lan.name, self.host.name
            sh("ip", "link", "add", "lanbr", "type", "bridge", ns=L)
            sh("ip", "addr", "add", f"{SERVER}/24", "dev", "lanbr", ns=L)
            sh("ip", "link", "set", "lanbr", "up", ns=L)
            sh("ip", "link", "set", "lo", "up", ns=L)
            sh("ip", "link", "set", "lo", "up", ns=H)
            sh("ip", "link", "add", "dbr0", "type", "bridge", ns=H)
            sh("ip", "link", "set", "dbr0", "up", ns=H)
            for lan_end, host_end in (("lan-a", "up0"), ("lan-b", "up1")):
                sh("ip", "link", "add", lan_end, "type", "veth", "peer", "name", host_end, "netns", H, ns=L)
                sh("ip", "link", "set", lan_end, "master", "lanbr", "up", ns=L)
                sh("ip", "link", "set", host_end, "up", ns=H)
            sh("ip", "link", "set", "up0", "master", "dbr0", ns=H)
        except BaseException:
            self.close()
            raise

    def start_dnsmasq(self, *extra: str, lease: str = "2m") -> None:
        argv = ["ip", "netns", "exec", self.lan.name, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                "--no-resolv", "--no-hosts", "--port=0", "--interface=lanbr", "--bind-interfaces",
                "--user=root", "--group=root", f"--pid-file={self.tmp}/dnsmasq.pid",
                f"--dhcp-range={SUBNET}.50,{SUBNET}.250,255.255.255.0,{lease}",
                f"--dhcp-leasefile={self.lease_file}", "--dhcp-authoritative", "--log-dhcp", "--no-ping",
                f"--log-facility={self.log_file}",
                f"--dhcp-option=option:router,{SERVER}", f"--dhcp-option=option:dns-server,{SERVER}",
                "--dhcp-option=option:domain-name,lan.test",
                "--dhcp-option=option:domain-search,lan.test,corp.test", *extra]
        self.dnsmasq = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ok = wait_for(lambda: self.dnsmasq.poll() is not None or os.path.exists(f"{self.tmp}/dnsmasq.pid"), 5)
        if self.dnsmasq.poll() is not None:
            raise AssertionError(f"dnsmasq exited: {self.dnsmasq.stderr.read().decode()}")
        assert ok

    def start_test_server(self, lease: int, t1: int, t2: int) -> None:
        """tests/dhcp_server.py instead of dnsmasq: lease times of seconds; ``server_log()``."""
        self.server_log_path = os.path.join(self.tmp, "server.jsonl")
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.lan.name, PY, "-m", "tests.dhcp_server", "lanbr", SERVER,
             f"{SUBNET}.100", str(lease), str(t1), str(t2), self.server_log_path],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if self.dnsmasq.stdout.readline().strip() != b"ready":
            raise AssertionError(f"test DHCP server failed: {self.dnsmasq.stderr.read().decode()}")

    def server_log(self) -> list[dict]:
        import json

        try:
            return [json.loads(l) for l in open(self.server_log_path)]
        except FileNotFoundError:
            return []

    def stop_dnsmasq(self) -> None:
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.send_signal(signal.SIGTERM)
            try:
                self.dnsmasq.wait(5)
            except subprocess.TimeoutExpired:
                self.dnsmasq.kill()
                self.dnsmasq.wait()
        self.dnsmasq = None

    def leases(self) -> list[dict]:
        """dnsmasq's lease file: expiry, mac, ip, hostname, client id (hex, ':'-separated)."""
        try:
            text = open(self.lease_file).read()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 5:
                out.append({"expiry": int(f[0]), "mac": f[1], "ip": f[2], "hostname": f[3], "clientid": f[4]})
        return out

    def log(self) -> str:
        try:
            return open(self.log_file).read()
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        self.stop_dnsmasq()
        for ns in (self.host, self.lan):
            if ns is not None:
                ns.delete()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Daemon:
    """Our `dhcp daemon`, a child process with a private socket and state directory."""

    def __init__(self, binary: str, tmp: str, *flags: str) -> None:
        self.binary = binary
        self.socket = os.path.join(tmp, "run", "dhcp.sock")
        self.state = os.path.join(tmp, "state")
        self.log_path = os.path.join(tmp, "daemon.log")
        self.flags = flags
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "daemon", "-socketpath", self.socket, "-statedir", self.state,
                                      *self.flags], stdout=log, stderr=log, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        log.close()
        if not wait_for(lambda: self._answers() or self.proc.poll() is not None, 10):
            raise AssertionError("daemon does not accept connections on its socket")
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited: {self.log()}")
        return self

    def _answers(self) -> bool:
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None

    def state_files(self) -> list[str]:
        return sorted(os.listdir(self.state)) if os.path.isdir(self.state) else []

    def log(self) -> str:
        try:
            return open(self.log_path).read()
        except FileNotFoundError:
            return ""
