"""The container's interface, as the daemon reaches it: a packet socket and a few kernel calls.

Everything here runs on a thread that has entered the container's network namespace
(``cnilib.netns.run_in``); the sockets it opens stay in that namespace afterwards, so the
DHCP exchange itself runs on any thread. No thread ever stays inside a namespace (the
reference parks one per lease there, which keeps a deleted namespace alive).
"""

from __future__ import annotations

import fcntl
import socket
import struct

ETH_P_IP = 0x0800
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFHWADDR = 0x8913, 0x8914, 0x8927
IFF_UP, IFF_RUNNING = 0x1, 0x40
CARRIER_WAIT = 2.0  # seconds to wait for a link just brought up to pass traffic
PACKET_OUTGOING = 4
BROADCAST_MAC = b"\xff" * 6


class Link:
    """A packet socket bound to ``ifname`` in the container, plus what we learnt about it."""

    def __init__(self, ifname: str, sock: socket.socket, mac: bytes, guard: socket.socket | None) -> None:
        self.ifname = ifname
        self.sock = sock
        self.mac = mac
        self.guard = guard  # a UDP socket on port 68: the kernel then sends no port-unreachable

    def send(self, packet: bytes, dst_mac: bytes = BROADCAST_MAC) -> None:
        self.sock.sendto(packet, (self.ifname, ETH_P_IP, 0, 0, dst_mac))

    def recv(self, timeout: float) -> tuple[bytes, bytes] | None:
        """(IP packet, sender MAC) of the next incoming packet, or None after ``timeout`` s."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, addr = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        if addr[2] == PACKET_OUTGOING:
            return b"", b""
        return data, addr[4]

    def close(self) -> None:
        """Close the sockets off the caller's path: closing a packet socket waits for an RCU
        grace period (~10 ms), which no plugin call needs to wait for."""
        import threading

        socks = [self.sock] + ([self.guard] if self.guard is not None else [])
        threading.Thread(target=lambda: [x.close() for x in socks], name="close link", daemon=True).start()


def _ifreq(ifname: str, tail: bytes = b"") -> bytes:
    return ifname.encode().ljust(16, b"\0") + tail.ljust(24, b"\0")


def open_link(ifname: str, bring_up: bool = True) -> Link:
    """Call inside the namespace: the packet socket on ``ifname`` (brought up if down, as the
    reference does first: an exchange on a down link only times out). OSError ENODEV when the
    interface does not exist."""
    # Protocol 0 at creation, ETH_P_IP at bind: a socket created with a protocol is hooked on
    # every device at once, and binding it then unhooks it first, which waits for an RCU
    # grace period (synchronize_net, ~10 ms here) on every exchange.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    try:
        raw = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, _ifreq(ifname))
        mac = raw[18:24]
        if bring_up:
            flags = struct.unpack_from("=H", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, _ifreq(ifname)), 16)[0]
            if not flags & IFF_UP:
                fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, _ifreq(ifname, struct.pack("=H", flags | IFF_UP)))
            _await_carrier(s, ifname)
        s.bind((ifname, ETH_P_IP))
    except BaseException:
        s.close()
        raise
    guard = None
    try:
        guard = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        guard.bind(("0.0.0.0", 68))
    except OSError:  # only a courtesy to the server; never a reason to fail
        if guard is not None:
            guard.close()
        guard = None
    return Link(ifname, s, mac, guard)


def _await_carrier(s: socket.socket, ifname: str) -> None:
    # A DISCOVER sent before the link runs (a veth whose peer has just come up) is lost and
    # costs a whole -timeout; wait briefly for IFF_RUNNING instead (then send anyway).
    import time

    end = time.monotonic() + CARRIER_WAIT
    while time.monotonic() < end:
        flags = struct.unpack_from("=H", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, _ifreq(ifname)), 16)[0]
        if flags & IFF_RUNNING:
            return
        time.sleep(0.01)


def link_exists(ifname: str) -> bool:
    """Call inside the namespace."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, _ifreq(ifname))
        return True
    except OSError:
        return False
    finally:
        s.close()


# rtnetlink, packed by hand: two requests do not justify pyroute2.
NETLINK_ROUTE, RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 0, 20, 21, 22
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFA_ADDRESS, IFA_LOCAL = 1, 2


def _ifindex(ifname: str) -> int:
    return socket.if_nametoindex(ifname)


def _nl_request(msg_type: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        s.settimeout(5)
        s.send(struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | flags, 1, 0) + body)
        out = []
        while True:
            data = s.recv(65536)
            i = 0
            while i + 16 <= len(data):
                length, mtype, _f, _seq, _pid = struct.unpack_from("=IHHII", data, i)
                payload = data[i + 16:i + length]
                if mtype == NLMSG_ERROR:
                    err = struct.unpack_from("=i", payload)[0]
                    if err:
                        raise OSError(-err, f"netlink: {__import__('os').strerror(-err)}")
                    return out
                if mtype == NLMSG_DONE:
                    return out
                out.append((mtype, payload))
                i += (length + 3) & ~3
    finally:
        s.close()


def _rta(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def ipv4_addresses(ifname: str) -> list[tuple[str, int]]:
    """Call inside the namespace: the IPv4 (address, prefix length) pairs on ``ifname``."""
    index = _ifindex(ifname)
    out = []
    for mtype, p in _nl_request(RTM_GETADDR, NLM_F_DUMP, struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)):
        if mtype != RTM_NEWADDR:
            continue
        family, plen, _flags, _scope, idx = struct.unpack_from("=BBBBI", p)
        if idx != index:
            continue
        i = 8
        while i + 4 <= len(p):
            ln, kind = struct.unpack_from("=HH", p, i)
            if ln < 4:
                break
            if kind == IFA_LOCAL:
                out.append((socket.inet_ntoa(p[i + 4:i + 8]), plen))
            i += (ln + 3) & ~3
    return out


def remove_address(ifname: str, address: str, prefixlen: int) -> bool:
    """Call inside the namespace: remove ``address/prefixlen`` from ``ifname``; False when it
    was not there (or the interface is gone)."""
    try:
        index = _ifindex(ifname)
    except OSError:
        return False
    a = socket.inet_aton(address)
    body = struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, 0, index) + _rta(IFA_LOCAL, a) + _rta(IFA_ADDRESS, a)
    try:
        _nl_request(RTM_DELADDR, NLM_F_ACK, body)
    except OSError as e:
        if e.errno in (99, 19):  # EADDRNOTAVAIL, ENODEV
            return False
        raise
    return True
