"""A DHCP LAN in a throwaway host namespace: dnsmasq on a bridge, plus a dhcp daemon.

Used by the harness's ``dhcp`` profile (every check's world) and by the bench's dhcp row.
Everything lives in one run directory: each process's PID file (``*.pid``, written here
from the child's PID: both run in the foreground under ``ip netns exec``, which execs
them), dnsmasq's lease file and log, the daemon's socket and log. ``stop(run_dir)`` ends
them by PID, the daemons first, and removes the files, so a world can be renewed or closed
whatever a check did.

Two implementations in one world: the differential check runs the reference plugin in a
world made for ours, with the same config (one socket), and the two sides speak different
protocols (ours JSON lines, the reference Go net/rpc over HTTP). So when the world's daemon
is ours, ``start_daemon(..., dispatch=True)`` serves the config's socket from the harness:
a connection opening with ``CONNECT`` (net/rpc's HTTP handshake) goes to the reference's
daemon, started on its first use; every other one to the world's daemon.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from conformance import runs
from conformance.proc import PLAIN_PATH

# The addresses dnsmasq hands out: .10-.59 of the LAN's /24 (.1 is the server and router).
POOL_FIRST, POOL_LAST = 10, 59
_STOP_ORDER = ("dhcp-daemon", "ref-daemon", "dnsmasq")  # the daemons before their server
# The reference daemon a dispatched net/rpc client is served by (see the module doc; the
# differential checks run the reference plugin from /usr/lib/cni too).
REFERENCE_DHCP = "/usr/lib/cni/dhcp"


def pool(net: str) -> list[str]:
    """Every address of the pool for a /24 given as ``a.b.c`` (without the last octet)."""
    return [f"{net}.{n}" for n in range(POOL_FIRST, POOL_LAST + 1)]


def socket_path(run_dir: str) -> str:
    """The daemon's socket in a run directory (the config's ``daemonSocketPath``)."""
    return os.path.join(run_dir, "dhcp.sock")


def lease_file(run_dir: str) -> str:
    """dnsmasq's lease file in a run directory."""
    return os.path.join(run_dir, "dnsmasq.leases")


@functools.lru_cache(maxsize=None)
def keeps_state(binary: str) -> bool:
    """Whether a dhcp binary's daemon takes ``-statedir`` (ours: leases persisted there; the
    reference 1.1.1 keeps them in memory and refuses the flag). Read from its usage text."""
    p = subprocess.run([binary, "daemon", "-h"], capture_output=True, timeout=30, env={"PATH": PLAIN_PATH})
    return b"-statedir" in p.stdout + p.stderr


def _wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)
    return True


def _spawn(run_dir: str, name: str, argv: list[str]) -> subprocess.Popen:
    log = open(os.path.join(run_dir, f"{name}.log"), "ab")
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={"PATH": PLAIN_PATH},
                             start_new_session=True)
    finally:
        log.close()
    with open(os.path.join(run_dir, f"{name}.pid"), "w") as f:
        f.write(str(p.pid))
    runs.track_pid(p.pid)  # killed by a later run's sweep if this one dies without stopping it
    return p


def _log(run_dir: str, name: str) -> str:
    try:
        with open(os.path.join(run_dir, f"{name}.log"), errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return ""


def start_dnsmasq(host_ns: str, iface: str, net: str, run_dir: str) -> None:
    """dnsmasq serving ``net``.0/24 on ``iface`` (which holds ``net``.1) in ``host_ns``:
    the pool, a router (option 3), leases of an hour, no ping before an offer, no DNS."""
    p = _spawn(run_dir, "dnsmasq", [
        "ip", "netns", "exec", host_ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
        "--no-resolv", "--no-hosts", "--port=0", f"--interface={iface}", "--bind-interfaces",
        "--user=root", "--group=root", f"--pid-file={run_dir}/dnsmasq.own-pid",
        f"--dhcp-range={net}.{POOL_FIRST},{net}.{POOL_LAST},255.255.255.0,1h",
        f"--dhcp-leasefile={lease_file(run_dir)}", "--dhcp-authoritative", "--no-ping",
        f"--dhcp-option=option:router,{net}.1", "--log-dhcp", f"--log-facility={run_dir}/dnsmasq.log"])
    if not _wait(lambda: p.poll() is not None or os.path.exists(f"{run_dir}/dnsmasq.own-pid"), 10) \
            or p.poll() is not None:
        raise RuntimeError(f"dnsmasq did not start in {host_ns}: {_log(run_dir, 'dnsmasq')}")


def _answers(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _run_daemon(binary: str, host_ns: str, run_dir: str, name: str, sock: str, state_dir: str = "") -> None:
    argv = ["ip", "netns", "exec", host_ns, binary, "daemon", "-socketpath", sock]
    if state_dir and keeps_state(binary):
        argv += ["-statedir", state_dir]
    p = _spawn(run_dir, name, argv)
    if not _wait(lambda: p.poll() is not None or _answers(sock), 15) or p.poll() is not None:
        raise RuntimeError(f"{binary} daemon does not answer on {sock}: {_log(run_dir, name)}")


def start_daemon(binary: str, host_ns: str, run_dir: str, state_dir: str = "", dispatch: bool = False) -> str:
    """``binary daemon -socketpath SOCKET`` in ``host_ns`` (plus ``-statedir state_dir`` for
    a daemon that takes it); returns the config's socket (``socket_path``) once it accepts.
    ``dispatch`` (only for a daemon that is not the reference's): the harness serves that
    socket and hands net/rpc clients to the reference daemon (module doc)."""
    sock = socket_path(run_dir)
    if not (dispatch and keeps_state(binary) and os.access(REFERENCE_DHCP, os.X_OK)):
        _run_daemon(binary, host_ns, run_dir, "dhcp-daemon", sock, state_dir)
        return sock
    _run_daemon(binary, host_ns, run_dir, "dhcp-daemon", os.path.join(run_dir, "own.sock"), state_dir)
    _Dispatcher(run_dir, host_ns)
    return sock


class _Dispatcher:
    """The config's socket, served from the harness: each connection is relayed to the
    world's daemon, or (net/rpc clients) to the reference's, started on first use."""

    _live: dict[str, "_Dispatcher"] = {}

    def __init__(self, run_dir: str, host_ns: str) -> None:
        self.run_dir, self.host_ns = run_dir, host_ns
        self.own = os.path.join(run_dir, "own.sock")
        self.ref = os.path.join(run_dir, "ref.sock")
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_path(run_dir))
        self.listener.listen(64)
        _Dispatcher._live[run_dir] = self
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _backend(self, first: bytes) -> str:
        if not first.startswith(b"CONNECT"):
            return self.own
        with self.lock:
            if not _answers(self.ref):
                _run_daemon(REFERENCE_DHCP, self.host_ns, self.run_dir, "ref-daemon", self.ref)
        return self.ref

    def _relay(self, conn: socket.socket) -> None:
        back = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(10)
            first = conn.recv(7, socket.MSG_PEEK)
            conn.settimeout(None)
            back.connect(self._backend(first))
        except (OSError, RuntimeError):
            conn.close()
            back.close()
            return
        pump = threading.Thread(target=_pump, args=(back, conn), daemon=True)
        pump.start()
        _pump(conn, back)
        pump.join()
        conn.close()
        back.close()

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        except OSError:
            pass
        self.listener.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends, then end ``dst``'s direction."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has exited
    except ChildProcessError:
        pass
    return os.path.exists(f"/proc/{pid}") and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _stop_pid(pid: int, expect: bytes) -> None:
    """SIGTERM, then SIGKILL after 5 s, the process ``pid`` if its command line still names
    ``expect`` (a PID file outliving its process must not kill a stranger)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if expect not in f.read():
                return
    except OSError:
        return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait(lambda: not _alive(pid), wait):
            return


def stop(run_dir: str) -> None:
    """Stop the run directory's dispatcher and daemons, then its dnsmasq (by PID), and empty
    the directory."""
    dispatcher = _Dispatcher._live.pop(run_dir, None)
    if dispatcher is not None:
        dispatcher.close()
    for name in _STOP_ORDER:
        path = os.path.join(run_dir, f"{name}.pid")
        try:
            with open(path) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        _stop_pid(pid, b"dnsmasq" if name == "dnsmasq" else b"daemon")
    if os.path.isdir(run_dir):
        for entry in os.listdir(run_dir):
            path = os.path.join(run_dir, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)  # a daemon's state directory
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def leased_address(run_dir: str, container_id: str, ifname: str) -> str | None:
    """The address dnsmasq leased to attachment (container_id, ifname): its client ID (option
    61, ours with a type byte 0 first) is ``<containerID>/<network>/<ifname>``."""
    try:
        with open(lease_file(run_dir)) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 5 or fields[4] == "*":
            continue
        try:
            cid = bytes.fromhex(fields[4].replace(":", "")).lstrip(b"\0")
        except ValueError:
            continue
        if cid.startswith(f"{container_id}/".encode()) and cid.endswith(f"/{ifname}".encode()):
            return fields[2]
    return None
