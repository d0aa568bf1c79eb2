"""``dhcp daemon``: owns every lease, serves the plugins over a unix socket, renews leases.

* Serving: one request per connection (protocol in ``client.py``), each on its own thread;
  the acknowledgement goes out before any work, with the longest time the work can take.
  A Go net/rpc client (the reference plugin) gets an HTTP error naming our protocol.
* Acquiring: the packet socket is opened by a thread that enters the container's namespace
  (``cnilib.netns.run_in``) and leaves with it; the exchange then runs on the request's
  thread. Concurrent ADDs for one key wait for the first one's outcome (one exchange, one lease).
* Maintaining: one thread per lease sleeps until T1, renews (unicast), from T2 rebinds
  (broadcast), at expiry removes the address from the interface and forgets the lease. A
  namespace or interface that has gone ends the lease (nothing to release from: forgotten).
* Persisting: ``lease.Store``; on start every stored lease is taken up again.
* Socket: ``-socketpath`` (under ``-hostprefix``), or the one inherited from systemd
  (LISTEN_FDS=1). A stale socket file left by a killed daemon is replaced; a live one is an error.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

from cnilib import netns as _netns
from cnilib.errors import INVALID_CONFIG, NOT_FOUND, TRY_AGAIN_LATER, CNIError

from . import codec, exchange, netif
from . import flags as _flags
from .client import PROTOCOL
from .lease import Lease, Store, lease_key

SD_LISTEN_FDS_START = 3
REQUEST_TIMEOUT = 5.0  # seconds a client has to send its request line
LOOK_EVERY = 30.0  # seconds between looks at a sleeping lease's namespace


def log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} dhcp daemon: {msg}\n")
    sys.stderr.flush()


class _Maintainer:
    """The thread that keeps one lease alive."""

    def __init__(self, daemon: "Daemon", lease: Lease) -> None:
        self.daemon = daemon
        self.lease = lease
        self.cond = threading.Condition()
        self.stopped = False
        self.gone = False
        self.busy = threading.Lock()  # held during an exchange on the lease's link
        self.thread = threading.Thread(target=self._run, name=f"lease {lease.key}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop maintaining (returns once no exchange of ours is in flight)."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        with self.busy:
            pass

    def _sleep_until(self, when: float) -> bool:
        """Sleep until wall-clock ``when``; False when stopped meanwhile or when the lease's
        namespace has gone (looked at every LOOK_EVERY s: a long lease of a deleted pod must
        not wait for T1 to be forgotten)."""
        with self.cond:
            while not self.stopped:
                left = when - time.time()
                if left <= 0:
                    return True
                self.cond.wait(min(left, LOOK_EVERY))  # the wall clock may jump, too
                if not self.stopped and not os.path.exists(self.daemon.netns_path(self.lease.netns)):
                    self.gone = True
                    return False
            return False

    def _run(self) -> None:
        lease = self.lease
        try:
            while True:
                now = time.time()
                if lease.expired(now):
                    self.daemon.expire(self, "the lease expired without renewal")
                    return
                if now < lease.renew_at():
                    if not self._sleep_until(lease.renew_at()):
                        if self.gone:
                            self.daemon.forget(self, "its namespace is gone")
                        return
                    continue
                rebind = now >= lease.rebind_at()
                outcome = self._renew(rebind)
                if outcome == "stopped":
                    return
                if outcome == "gone":
                    self.daemon.forget(self, "its namespace or interface is gone")
                    return
                if outcome == "nak":
                    self.daemon.expire(self, "the server refused the renewal (DHCPNAK)")
                    return
                if outcome == "ok":
                    continue
                # No answer: RFC 2131 4.4.5, try again after half the time left to the next
                # stage (at least 1 s here, so short test leases are renewed in time).
                until = lease.expires_at() if rebind else lease.rebind_at()
                pause = max((until - time.time()) / 2, 1.0)
                if not self._sleep_until(min(time.time() + pause, until)):
                    if self.gone:
                        self.daemon.forget(self, "its namespace is gone")
                    return
        except Exception as e:
            log(f"lease {lease.key}: maintenance failed: {type(e).__name__}: {e}")
            self.daemon.forget(self, "maintenance failed")

    def _renew(self, rebind: bool) -> str:
        lease = self.lease
        with self.busy:
            if self.stopped:
                return "stopped"
            try:
                link = self.daemon.open_link(lease.netns, lease.ifname, bring_up=False)
            except (CNIError, OSError):
                return "gone"
            try:
                ack = exchange.renew(link, lease.client_id, lease.request, lease.provide,
                                     codec.ip_bytes(lease.address), codec.ip_bytes(lease.server) if lease.server else b"",
                                     bytes.fromhex(lease.server_mac), self.daemon.timing, rebind)
            finally:
                link.close()
            if ack is None:
                log(f"lease {lease.key}: no answer to {'rebinding' if rebind else 'renewing'} {lease.address}")
                return "none"
            if ack.msg.type == codec.NAK:
                return "nak"
            if codec.ip_text(ack.msg.yiaddr) != lease.address:
                return "nak"  # another address: ours is no longer valid
            try:
                lease.bind(ack.msg, ack.server_mac, time.time())  # rebinding: maybe another server
            except ValueError as e:
                log(f"lease {lease.key}: unusable ACK to renewal: {e}")
                return "none"
            self.daemon.store.save(lease)
            log(f"lease {lease.key}: {lease.address} {'rebound' if rebind else 'renewed'} for {lease.lease_time} s")
            return "ok"


class _Pending:
    """An ADD acquiring a lease right now: others for the same key wait for its outcome."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: CNIError | None = None


class Daemon:
    """The leases and the operations the plugins ask for."""

    def __init__(self, f: _flags.Flags) -> None:
        self.flags = f
        self.timing = exchange.Timing(f.timeout, f.resendmax, f.resendtimeout, f.broadcast)
        self.store = Store(f.hostprefix + f.statedir if f.hostprefix else f.statedir)
        self.lock = threading.Lock()
        self.leases: dict[str, _Maintainer] = {}
        self.pending: dict[str, _Pending] = {}  # keys whose ADD is acquiring right now

    # -- namespace access ------------------------------------------------------------------
    def netns_path(self, path: str) -> str:
        return self.flags.hostprefix + path if self.flags.hostprefix else path

    def open_link(self, netns: str, ifname: str, bring_up: bool) -> netif.Link:
        return _netns.run_in(self.netns_path(netns), netif.open_link, ifname, bring_up)

    def in_netns(self, netns: str, fn, *args):
        return _netns.run_in(self.netns_path(netns), fn, *args)

    # -- start-up ----------------------------------------------------------------------------
    def resume(self) -> None:
        """Take up every persisted lease (a restart must not orphan them)."""
        for lease in self.store.load(log):
            m = _Maintainer(self, lease)
            if not os.path.exists(self.netns_path(lease.netns)):
                self.store.remove(lease)
                log(f"lease {lease.key}: {lease.address} forgotten: its namespace went while the daemon was down")
                continue
            if lease.expired():
                self._drop_address(lease)
                self.store.remove(lease)
                log(f"lease {lease.key}: {lease.address} expired while the daemon was down; forgotten")
                continue
            self.leases[lease.key] = m
            m.start()
            log(f"lease {lease.key}: {lease.address} resumed (expires in {lease.expires_at() - time.time():.0f} s)")

    # -- verbs -------------------------------------------------------------------------------
    def wait_hint(self) -> float:
        """The longest a request may take (told to the client before the work starts)."""
        return self.timing.resend_timeout + self.timing.timeout * 8 + 2

    def _wait_pending(self, key: str) -> None:
        """Return with self.lock held and no ADD of ``key`` in flight."""
        while True:
            self.lock.acquire()
            p = self.pending.get(key)
            if p is None:
                return
            self.lock.release()
            p.done.wait()

    def add(self, req: dict) -> dict:
        key = lease_key(req["containerID"], req["network"], req["ifname"])
        while True:
            with self.lock:
                m = self.leases.get(key)
                if m is not None and not m.lease.expired():
                    return m.lease.result  # the same attachment asked again: its lease
                p = self.pending.get(key)
                if p is None:
                    p = self.pending[key] = _Pending()
                    break
            # Another ADD of this attachment is acquiring: its outcome is ours too (one
            # exchange, one lease, and no second wait that would outlast our wait_hint).
            p.done.wait()
            if p.error is not None:
                raise p.error
        try:
            lease = self._acquire(key, req)
            m = _Maintainer(self, lease)
            with self.lock:
                self.leases[key] = m
            m.start()
            return lease.result
        except CNIError as e:
            p.error = e
            raise
        except BaseException as e:
            p.error = CNIError(TRY_AGAIN_LATER, f"dhcp: acquiring the lease failed: {type(e).__name__}: {e}")
            raise
        finally:
            with self.lock:
                del self.pending[key]
            p.done.set()

    def _acquire(self, key: str, req: dict) -> Lease:
        lease = Lease(key=key, containerID=req["containerID"], network=req["network"], ifname=req["ifname"],
                      netns=req.get("netns", ""), request=req.get("request"), provide=req.get("provide"),
                      priority=req.get("priority") or 0)
        if not lease.netns:
            raise CNIError(INVALID_CONFIG, "dhcp: ADD needs CNI_NETNS")
        try:
            link = self.open_link(lease.netns, lease.ifname, bring_up=True)
        except OSError as e:
            raise CNIError(NOT_FOUND, f"dhcp: cannot use interface {lease.ifname!r} in {lease.netns}: "
                           f"{e.strerror or e}") from None
        try:
            lease.mac = link.mac.hex()
            try:
                ack = exchange.acquire(link, lease.client_id, lease.request, lease.provide, self.timing)
            except exchange.ExchangeFailed as e:
                raise CNIError(TRY_AGAIN_LATER, f"dhcp: {e} (client id {key!r})") from None
            try:
                lease.bind(ack.msg, ack.server_mac, time.time())
            except ValueError as e:
                self._release_on(link, lease, ack)
                raise CNIError(TRY_AGAIN_LATER, f"dhcp: {e}") from None
            try:
                self.store.save(lease)
            except OSError as e:
                self._release_on(link, lease, ack)
                raise CNIError(TRY_AGAIN_LATER, f"dhcp: cannot persist the lease in {self.store.path}: "
                               f"{e.strerror or e}") from None
        finally:
            link.close()
        log(f"lease {key}: {lease.address}/{lease.prefixlen} from {lease.server} for {lease.lease_time} s")
        return lease

    def _release_on(self, link: netif.Link, lease: Lease, ack) -> None:
        server = ack.msg.options.get(54, b"")
        exchange.release(link, lease.client_id, ack.msg.yiaddr, server if len(server) == 4 else b"", ack.server_mac)

    def delete(self, req: dict) -> dict:
        key = lease_key(req["containerID"], req["network"], req["ifname"])
        self._wait_pending(key)
        try:
            m = self.leases.pop(key, None)
        finally:
            self.lock.release()
        if m is not None:
            self._end(m, release=True)
        return {}

    def _end(self, m: _Maintainer, release: bool) -> None:
        m.stop()
        lease = m.lease
        if release and not lease.expired():
            try:
                link = self.open_link(lease.netns, lease.ifname, bring_up=False)
            except (CNIError, OSError) as e:
                log(f"lease {lease.key}: not released ({getattr(e, 'msg', None) or e}); forgotten")
            else:
                try:
                    exchange.release(link, lease.client_id, codec.ip_bytes(lease.address),
                                     codec.ip_bytes(lease.server) if lease.server else b"",
                                     bytes.fromhex(lease.server_mac))
                    log(f"lease {lease.key}: {lease.address} released")
                except OSError as e:
                    log(f"lease {lease.key}: sending DHCPRELEASE failed: {e}")
                finally:
                    link.close()
        self.store.remove(lease)

    def check(self, req: dict) -> dict:
        key = lease_key(req["containerID"], req["network"], req["ifname"])
        with self.lock:
            m = self.leases.get(key)
        if m is None:
            raise CNIError(NOT_FOUND, f"dhcp: no lease held for {key!r} (CHECK acquires none)")
        lease = m.lease
        if lease.expired():
            raise CNIError(NOT_FOUND, f"dhcp: the lease of {key!r} ({lease.address}) has expired")
        try:
            addrs = self.in_netns(lease.netns, netif.ipv4_addresses, lease.ifname)
        except (CNIError, OSError) as e:
            raise CNIError(NOT_FOUND, f"dhcp: interface {lease.ifname!r} in {lease.netns}: "
                           f"{getattr(e, 'msg', None) or e}") from None
        if (lease.address, lease.prefixlen) not in addrs:
            raise CNIError(NOT_FOUND, f"dhcp: the leased {lease.address}/{lease.prefixlen} is not on "
                           f"{lease.ifname} in {lease.netns}")
        return lease.result

    def gc(self, req: dict) -> dict:
        valid = {(str(c), str(i)) for c, i in req.get("valid") or []}
        network = req.get("network")
        with self.lock:
            doomed = [m for m in self.leases.values() if m.lease.network == network
                      and (m.lease.containerID, m.lease.ifname) not in valid and m.lease.key not in self.pending]
            for m in doomed:
                del self.leases[m.lease.key]
        for m in doomed:
            self._end(m, release=True)
        return {"released": [m.lease.key for m in doomed]}

    def status(self, req: dict) -> dict:
        with self.lock:
            return {"leases": len(self.leases), "acquiring": len(self.pending)}

    # -- lease ends decided by a maintainer -------------------------------------------------
    def forget(self, m: _Maintainer, why: str) -> None:
        with self.lock:
            if self.leases.get(m.lease.key) is m:
                del self.leases[m.lease.key]
        self.store.remove(m.lease)
        log(f"lease {m.lease.key}: {m.lease.address} forgotten: {why}")

    def expire(self, m: _Maintainer, why: str) -> None:
        self._drop_address(m.lease)
        self.forget(m, why)

    def _drop_address(self, lease: Lease) -> None:
        try:
            if self.in_netns(lease.netns, netif.remove_address, lease.ifname, lease.address, lease.prefixlen):
                log(f"lease {lease.key}: {lease.address}/{lease.prefixlen} removed from {lease.ifname}")
        except (CNIError, OSError):
            pass  # the namespace or interface is gone: so is the address


OPS = {"add": Daemon.add, "del": Daemon.delete, "check": Daemon.check, "gc": Daemon.gc, "status": Daemon.status}


def _serve_one(daemon: Daemon, conn: socket.socket) -> None:
    try:
        conn.settimeout(REQUEST_TIMEOUT)
        buf = b""
        while b"\n" not in buf and len(buf) < (1 << 20):
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
        line = buf.split(b"\n", 1)[0]
        if line.startswith((b"CONNECT ", b"GET ", b"POST ")):
            # The reference plugin (Go net/rpc over HTTP): say what we speak.
            conn.sendall(f"HTTP/1.0 400 cni-py dhcp daemon: speaks {PROTOCOL} (JSON lines), "
                         "not Go net/rpc\r\n\r\n".encode())
            return
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or req.get("proto") != PROTOCOL or req.get("op") not in OPS:
                raise ValueError("not a request")
        except ValueError:
            conn.sendall(json.dumps({"error": {"code": 999, "msg": f"dhcp daemon: not a {PROTOCOL} request"}})
                         .encode() + b"\n")
            return
        conn.sendall(json.dumps({"accepted": True, "wait": daemon.wait_hint()}).encode() + b"\n")
        try:
            reply = {"result": OPS[req["op"]](daemon, req)}
        except CNIError as e:
            reply = {"error": {"code": e.code, "msg": e.msg, "details": e.details}}
        except (KeyError, TypeError, ValueError) as e:
            reply = {"error": {"code": 999, "msg": f"dhcp daemon: malformed {req.get('op')} request: {e}"}}
        except Exception as e:
            log(f"{req.get('op')}: internal error: {type(e).__name__}: {e}")
            reply = {"error": {"code": 999, "msg": f"dhcp daemon: internal error: {type(e).__name__}: {e}"}}
        conn.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        pass  # the client went away; a lease it asked for stays (a retried ADD gets it)
    finally:
        conn.close()


def _inherited_socket() -> socket.socket | None:
    """The listening socket systemd passed (LISTEN_PID/LISTEN_FDS), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    n = int(os.environ.get("LISTEN_FDS", "0") or 0)
    for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(k, None)
    if n == 0:
        return None
    if n != 1:
        raise SystemExit(f"dhcp daemon: systemd passed {n} sockets; exactly one is supported")
    return socket.socket(fileno=SD_LISTEN_FDS_START)


def _bind(path: str) -> socket.socket:
    os.makedirs(os.path.dirname(path) or "/", mode=0o700, exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: a daemon killed without cleaning up (upstream #760)
        else:
            raise SystemExit(f"dhcp daemon: another process listens on {path}")
        finally:
            probe.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)  # root only: the socket hands out addresses and enters namespaces
    try:
        s.bind(path)
    finally:
        os.umask(old)
    s.listen(128)
    return s


def main(argv: list[str]) -> int:
    """Run the daemon until SIGTERM/SIGINT; leases stay persisted for the next start."""
    try:
        f = _flags.parse(argv)
    except _flags.UsageError as e:
        if str(e) == "usage":
            sys.stderr.write(_flags.USAGE)
            return 0
        sys.stderr.write(f"dhcp daemon: {e}\n{_flags.USAGE}")
        return 2
    listener = _inherited_socket()
    own_path = ""
    if listener is None:
        own_path = f.hostprefix + f.socketpath
        listener = _bind(own_path)
    if f.pidfile:
        with open(f.pidfile, "w") as pf:
            pf.write(f"{os.getpid()}\n")

    def _quit(signum, frame) -> None:
        for p in (own_path, f.pidfile):
            if p:
                try:
                    os.unlink(p)
                except OSError:
                    pass
        log(f"stopping on signal {signum}; leases stay in {daemon.store.path}")
        os._exit(0)

    daemon = Daemon(f)
    signal.signal(signal.SIGTERM, _quit)
    signal.signal(signal.SIGINT, _quit)
    daemon.resume()
    log(f"listening on {own_path or 'the socket systemd passed'}; state in {daemon.store.path}")
    while True:
        try:
            conn, _ = listener.accept()
        except InterruptedError:
            continue
        except OSError as e:
            log(f"accept: {e}")
            time.sleep(0.1)
            continue
        threading.Thread(target=_serve_one, args=(daemon, conn), daemon=True).start()
