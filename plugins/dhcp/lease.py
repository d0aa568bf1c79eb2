"""A lease: what the daemon knows about one attachment's address, and how it is persisted.

Leases are keyed by ``<containerID>/<network>/<ifname>`` (the reference's client ID, which
is also what option 61 carries unless ``provide`` overrides it). Each is one JSON file in the
state directory (default /var/lib/cni/dhcp, mode 0700, files 0600), written to a temporary
file, fsync'ed and renamed over the old one, so a daemon killed at any moment leaves either
the old or the new lease, never half of one; a restarted daemon loads them all and resumes
renewing (upstream #235: the reference keeps leases in memory only).
"""

from __future__ import annotations

import json
import os
import time

from . import codec
from .codec import Message

DEFAULT_STATE_DIR = "/var/lib/cni/dhcp"
DEFAULT_LEASE_TIME = 3600


def lease_key(container_id: str, network: str, ifname: str) -> str:
    return f"{container_id}/{network}/{ifname}"


class Lease:
    """One attachment's lease (fields as persisted)."""

    FIELDS = ("key", "containerID", "network", "ifname", "netns", "request", "provide", "priority", "mac",
              "address", "prefixlen", "server", "server_mac", "acquired", "lease_time", "t1", "t2", "result")

    def __init__(self, **kw) -> None:
        self.key: str = kw["key"]
        self.containerID: str = kw["containerID"]
        self.network: str = kw["network"]
        self.ifname: str = kw["ifname"]
        self.netns: str = kw["netns"]
        self.request: list[int] = list(kw.get("request") or [])
        self.provide: list[tuple[int, bytes]] = [(int(c), bytes.fromhex(v) if isinstance(v, str) else v)
                                                 for c, v in (kw.get("provide") or [])]
        self.priority: int = int(kw.get("priority") or 0)
        self.mac: str = kw.get("mac", "")
        self.address: str = kw.get("address", "")
        self.prefixlen: int = int(kw.get("prefixlen") or 0)
        self.server: str = kw.get("server", "")
        self.server_mac: str = kw.get("server_mac", "")
        self.acquired: float = float(kw.get("acquired") or 0)  # wall clock: survives restarts
        self.lease_time: int = int(kw.get("lease_time") or 0)
        self.t1: int = int(kw.get("t1") or 0)
        self.t2: int = int(kw.get("t2") or 0)
        self.result: dict = kw.get("result") or {}

    @property
    def client_id(self) -> bytes:
        """Option 61 as sent: a provided one, else type 0 + the key."""
        for code, value in self.provide:
            if code == 61:
                return value
        return codec.client_id(self.key)

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self.FIELDS}
        d["provide"] = [[c, v.hex()] for c, v in self.provide]
        return d

    # -- times (wall clock, so that they mean the same after a restart) ------------------
    def renew_at(self) -> float:
        return self.acquired + self.t1

    def rebind_at(self) -> float:
        return self.acquired + self.t2

    def expires_at(self) -> float:
        return self.acquired + self.lease_time

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at()

    def bind(self, ack: Message, server_mac: bytes, now: float) -> None:
        """Take an ACK's address, times and result (ValueError when it lacks the mask)."""
        o = ack.options
        plen = codec.mask_len(o.get(1, b""))
        if plen is None:
            raise ValueError("DHCP option Subnet Mask not found in DHCPACK" if 1 not in o
                             else f"DHCPACK holds a non-contiguous subnet mask {codec.ip_text(o[1])}")
        self.address = codec.ip_text(ack.yiaddr)
        self.prefixlen = plen
        self.server = codec.ip_text(o[54]) if len(o.get(54, b"")) == 4 else self.server
        self.server_mac = server_mac.hex()
        self.acquired = now
        self.lease_time = codec.u32(o.get(51)) or DEFAULT_LEASE_TIME
        t1, t2 = codec.u32(o.get(58)), codec.u32(o.get(59))
        self.t1 = t1 if t1 is not None and 0 < t1 < self.lease_time else self.lease_time // 2
        self.t2 = (t2 if t2 is not None and self.t1 <= t2 < self.lease_time
                   else max(self.t1, self.lease_time * 7 // 8))
        self.result = result_of(ack, plen, self.priority)


def result_of(ack: Message, plen: int, priority: int) -> dict:
    """The CNI result (1.1.0 form) for an ACK: address, gateway, routes, DNS."""
    o = ack.options
    routers = codec.ip_list(o.get(3))
    ip: dict = {"address": f"{codec.ip_text(ack.yiaddr)}/{plen}"}
    if routers:
        ip["gateway"] = routers[0]
    routes: list[dict] = []
    classless = []
    if 121 in o:
        try:
            classless = codec.classless_routes(o[121])
        except ValueError:
            classless = []
    if classless:  # RFC 3442: when present, option 3 and 33 are ignored for routing
        for dst, p, gw in classless:
            r: dict = {"dst": f"{dst}/{p}"}
            if gw == "0.0.0.0":
                r["scope"] = 253  # on-link (link scope), as the reference since v1.8.0
            else:
                r["gw"] = gw
            routes.append(r)
    else:
        for dst, p, gw in codec.static_routes(o.get(33, b"")):
            routes.append({"dst": f"{dst}/{p}", "gw": gw})
        if routers:
            routes.append({"dst": "0.0.0.0/0", "gw": routers[0]})
    if priority:
        for r in routes:
            r["priority"] = priority
    dns: dict = {}
    servers = codec.ip_list(o.get(6))
    if servers:
        dns["nameservers"] = servers
    domain = o.get(15, b"").rstrip(b"\0").decode("utf-8", "replace")
    if domain:
        dns["domain"] = domain
    if 119 in o:
        try:
            search = codec.domain_list(o[119])
        except ValueError:
            search = []
        if search:
            dns["search"] = search
    out: dict = {"cniVersion": "1.1.0", "ips": [ip], "dns": dns}
    if routes:
        out["routes"] = routes
    return out


class Store:
    """The state directory: one root-only JSON file per lease, replaced atomically."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)

    def _file(self, key: str) -> str:
        # Lease keys hold '/' and whatever an ifname may hold: percent-encode all but the
        # characters container IDs and network names are made of.
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else f"%{ord(c):02X}"
                       for c in key)
        if len(safe) > 200:
            import zlib

            safe = f"{safe[:180]}~{zlib.crc32(key.encode('utf-8', 'surrogateescape')):08x}"
        return os.path.join(self.path, safe + ".json")

    def save(self, lease: Lease) -> None:
        path = self._file(lease.key)
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(lease.to_json(), sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._sync_dir()

    def remove(self, lease: Lease) -> None:
        try:
            os.unlink(self._file(lease.key))
        except FileNotFoundError:
            return
        self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self, log) -> list[Lease]:
        """Every lease on disk; temporary files of a writer that died are removed, unreadable
        files are reported and left alone."""
        out = []
        for name in sorted(os.listdir(self.path)):
            path = os.path.join(self.path, name)
            if ".json.tmp" in name:
                os.unlink(path)
                continue
            if not name.endswith(".json"):
                continue
            try:
                with open(path, "rb") as f:
                    out.append(Lease(**json.loads(f.read())))
            except (OSError, ValueError, TypeError, KeyError) as e:
                log(f"ignoring unreadable lease file {path}: {e}")
        return out
