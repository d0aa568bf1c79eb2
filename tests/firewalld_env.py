"""A real firewalld (Debian's package), started privately for one test, and the firewall
plugin run next to it.

``FirewalldEnv`` makes:

- a network namespace of its own (``ip netns add``, a unique name with this run's tag):
  firewalld's nftables tables and our rules live there, never in the machine's;
- a private mount namespace, held by a ``sleep`` process: ``tmpfs`` over ``/run`` (so the
  bus socket, ``/run/firewalld``, our locks and firewalld records in ``/run/cni-py`` are
  private), over ``/etc/firewalld`` (holding a ``firewalld.conf`` of ours) and over
  ``/var/log``;
- a private system bus: ``dbus-daemon`` with a config we write (the stock system bus
  policy, then ``/usr/share/dbus-1/system.d``, where firewalld's own policy lets root own
  its name), listening on ``/run/dbus/system_bus_socket`` inside the namespace;
- ``firewalld --nofork --nopid --log-target console`` on that bus, started and stopped by
  the test (``start_firewalld``/``stop_firewalld``), waited for with ``firewall-cmd --state``.

Every process is a child of the test process, entered into the namespaces by ``nsenter``
(which execs, so the child's PID is the daemon's), killed by its PID and waited for in
``close()``; the mounts go with the mount namespace when its last process exits, the
network namespace is deleted. The plugin (``plugin(...)``), ``firewall-cmd``, ``nft`` and
``iptables`` run inside both namespaces through ``nsenter -t <holder> -m -n``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from conformance.proc import Outcome, parse_doc, stdin_bytes
from tests.helpers import PLAIN_PATH, Netns

FIREWALLD = "/usr/sbin/firewalld"
FIREWALL_CMD = "/usr/bin/firewall-cmd"
DBUS_DAEMON = "/usr/bin/dbus-daemon"
BUS_SOCKET = "/run/dbus/system_bus_socket"
RECORD_DIR = "/run/cni-py/firewalld"
START_TIMEOUT = 90.0  # firewalld takes 1-3 s to start here; much longer on a loaded 2-core VM

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
"""

FIREWALLD_CONF = """DefaultZone=public
CleanupOnExit=yes
CleanupModulesOnExit=no
Lockdown=no
IPv6_rpfilter=yes
IndividualCalls=no
LogDenied=off
FirewallBackend=nftables
FlushAllOnReload=yes
"""

# The holder: private mounts, then it waits (its PID names the namespaces).
HOLDER = """set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 cnipy-fwd-run /run
mkdir -p /run/dbus /run/firewalld
mount -t tmpfs -o mode=0755 cnipy-fwd-etc /etc/firewalld
mount -t tmpfs -o mode=0755 cnipy-fwd-log /var/log
cp "$1" /etc/firewalld/firewalld.conf
echo ready
exec sleep 86400
"""


def missing() -> str:
    """Why a private firewalld cannot be started here ("" when it can)."""
    gone = [p for p in (FIREWALLD, FIREWALL_CMD, DBUS_DAEMON) if not os.access(p, os.X_OK)]
    if gone:
        return (f"{', '.join(gone)} not installed: build/setup.sh installs Debian's firewalld "
                "(and with it dbus-daemon), starting nothing")
    return ""


def _stop(p: subprocess.Popen | None, sig: int = signal.SIGTERM, wait: float = 30.0) -> None:
    """Stop one child of ours by its PID and reap it."""
    if p is None or p.poll() is not None:
        return
    try:
        p.send_signal(sig)
        p.wait(wait)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)


class FirewalldEnv:
    """A private network + mount namespace with a system bus and (when started) firewalld."""

    def __init__(self, tmp_path, bin_dir: str) -> None:
        self.tmp = tmp_path
        self.bin_dir = bin_dir
        self.holder: subprocess.Popen | None = None
        self.bus: subprocess.Popen | None = None
        self.firewalld: subprocess.Popen | None = None
        self.bus_conf = tmp_path / "system-bus.conf"
        self.bus_conf.write_text(BUS_CONFIG)
        self.fwd_conf = tmp_path / "firewalld.conf"
        self.fwd_conf.write_text(FIREWALLD_CONF)
        self.log = tmp_path / "firewalld.log"
        self.ns = Netns("fwd")
        try:
            self._start_holder()
        except BaseException:
            self.close()
            raise

    # -- processes -------------------------------------------------------------------
    def _start_holder(self) -> None:
        script = self.tmp / "holder.sh"
        script.write_text(HOLDER)
        argv = ["ip", "netns", "exec", self.ns.name, "unshare", "-m", "sh", str(script), str(self.fwd_conf)]
        self.holder = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, env={"PATH": PLAIN_PATH})
        line = self.holder.stdout.readline()
        if line.strip() != b"ready":
            err = self.holder.stderr.read() if self.holder.poll() is not None else b""
            raise AssertionError(f"private mount namespace not made: {line!r} {err!r}")

    def enter(self) -> list[str]:
        """The command prefix that runs a program inside both namespaces."""
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n"]

    def start_bus(self) -> None:
        """The private system bus, listening once this returns."""
        argv = [DBUS_DAEMON, f"--config-file={self.bus_conf}", "--nofork", "--nopidfile", "--print-address=1"]
        self.bus = subprocess.Popen(self.enter() + argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, env={"PATH": PLAIN_PATH})
        line = self.bus.stdout.readline()
        assert line.startswith(b"unix:path=" + BUS_SOCKET.encode()), f"dbus-daemon did not start: {line!r}"

    def start_firewalld(self) -> None:
        """firewalld on the private bus, running (``firewall-cmd --state``) once this returns."""
        assert self.firewalld is None or self.firewalld.poll() is not None, "firewalld runs already"
        env = {"PATH": PLAIN_PATH, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={BUS_SOCKET}", "LC_ALL": "C"}
        with open(self.log, "ab") as log:
            argv = [FIREWALLD, "--nofork", "--nopid", "--log-target", "console"]
            self.firewalld = subprocess.Popen(self.enter() + argv, stdout=log, stderr=log,
                                              stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.firewalld.poll() is not None:
                rc = self.firewalld.returncode
                raise AssertionError(f"firewalld exited with {rc}: {self.log.read_text()}")
            if self.cmd("--state", check=False).strip() == "running":
                return
            time.sleep(0.2)
        raise AssertionError(f"firewalld not running after {START_TIMEOUT} s: {self.log.read_text()}")

    def stop_firewalld(self) -> None:
        """Stop firewalld (SIGTERM: it cleans its rules up and leaves the bus), reaped."""
        _stop(self.firewalld)
        self.firewalld = None

    def close(self) -> None:
        """Every process we started, by PID and reaped; then the network namespace."""
        try:
            _stop(self.firewalld)
            _stop(self.bus)
            _stop(self.holder, signal.SIGKILL)
        finally:
            for p in (self.holder, self.bus):
                if p is not None and p.stdout is not None:
                    p.stdout.close()
                if p is not None and p.stderr is not None:
                    p.stderr.close()
            self.ns.delete()

    # -- running things inside ---------------------------------------------------------
    def run(self, *argv: str, check: bool = True, env: dict | None = None, timeout: float = 60) -> str:
        p = subprocess.run(self.enter() + list(argv), capture_output=True, text=True, timeout=timeout,
                           check=False, env={"PATH": PLAIN_PATH, "LC_ALL": "C", **(env or {})})
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
        return p.stdout

    def cmd(self, *args: str, check: bool = True) -> str:
        """``firewall-cmd`` on the private bus (firewalld's own client, independent of ours)."""
        bus = {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={BUS_SOCKET}"}
        return self.run(FIREWALL_CMD, *args, check=check, env=bus)

    def sources(self, zone: str = "trusted") -> list[str]:
        """The zone's runtime sources, as firewalld lists them."""
        return self.cmd(f"--zone={zone}", "--list-sources").split()

    def records(self) -> list[str]:
        """The firewall plugin's firewalld records (their names: owner tags)."""
        out = self.run("sh", "-c", f"ls -A {RECORD_DIR} 2>/dev/null || true")
        return sorted(out.split())

    def record(self, tag: str) -> dict:
        return json.loads(self.run("cat", f"{RECORD_DIR}/{tag}"))

    def nft(self) -> str:
        return self.run("nft", "list", "ruleset")

    def iptables(self) -> str:
        return self.run("iptables", "-S") + self.run("ip6tables", "-S")

    def plugin(self, verb: str, conf: dict, *, cid: str = "c1", ifname: str = "eth0", env: dict | None = None,
               timeout: float = 60, binary: str | None = None) -> Outcome:
        """The firewall plugin (ours, or ``binary``) inside both namespaces, as a runtime
        there would run it."""
        gc = verb in ("GC", "STATUS")
        penv = {"PATH": PLAIN_PATH, "CNI_COMMAND": verb, "CNI_CONTAINERID": "" if gc else cid,
                "CNI_NETNS": "" if gc else "/var/run/netns/none", "CNI_IFNAME": "" if gc else ifname,
                "CNI_ARGS": "", "CNI_PATH": self.bin_dir, **(env or {})}
        plugin = binary or os.path.join(self.bin_dir, "firewall")
        p = subprocess.run(self.enter() + [plugin], input=stdin_bytes(conf), env=penv, capture_output=True,
                           timeout=timeout, check=False)
        return Outcome(p.returncode, p.stdout, p.stderr, parse_doc(p.stdout))
