"""The DHCP conversations of one client on one link: acquire, renew/rebind, release.

Frames go through the link's packet socket (``netif.Link``) with IPv4/UDP headers we build,
so the exchange works before the interface has an address and every message leaves with the
source address RFC 2131 wants: 0.0.0.0 while acquiring, the leased address (with ciaddr set)
when renewing, rebinding and releasing. The reference's RELEASE leaves from 0.0.0.0 and
dnsmasq drops it (upstream #1278); ours reaches the server, which then frees the lease.

Retry policy, as the reference's flags mean it: each DISCOVER and REQUEST is sent up to
three times, waiting ``timeout``, then 2x, then 4x for the answer; a failed exchange is
started again after 2 s (+-1 s) four times, then after doubling delays up to ``resend_max``,
until ``resend_timeout`` has passed since the first try.
"""

from __future__ import annotations

import random
import time

from . import codec
from .codec import Message
from .netif import BROADCAST_MAC, Link


class Timing:
    """The daemon's -timeout, -resendmax, -resendtimeout (seconds) and -broadcast."""

    def __init__(self, timeout: float = 10.0, resend_max: float = 62.0, resend_timeout: float = 208.0,
                 broadcast: bool = False) -> None:
        self.timeout = timeout
        self.resend_max = resend_max
        self.resend_timeout = resend_timeout
        self.broadcast = broadcast


class ExchangeFailed(Exception):
    """No (usable) answer from any server."""


class Ack:
    """A server's ACK and the MAC it came from (where unicasts to that server go)."""

    def __init__(self, msg: Message, server_mac: bytes) -> None:
        self.msg = msg
        self.server_mac = server_mac


def _options(client_id: bytes, request: list[int], provide: list[tuple[int, bytes]], mtype: int) -> dict:
    opts: dict[int, bytes] = {53: bytes((mtype,)), 61: client_id}
    if request:
        opts[55] = bytes(request)
    opts[57] = (1500).to_bytes(2, "big")
    for code, value in provide:  # after the client ID: providing option 61 overrides it
        opts[code] = value
    return opts


def _await(link: Link, xid: int, types: tuple[int, ...], wait: float, server: bytes = b"") -> Ack | None:
    """The first reply to ``xid`` of one of ``types`` (from ``server`` when given) within ``wait`` s."""
    end = time.monotonic() + wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return None
        got = link.recv(left)
        if got is None:
            return None
        packet, mac = got
        udp = codec.udp_payload(packet, codec.CLIENT_PORT) if packet else None
        if udp is None:
            continue
        try:
            msg = Message.decode(udp[1])
        except ValueError:
            continue
        if msg.op != codec.BOOTREPLY or msg.xid != xid or msg.chaddr[:6] != link.mac or msg.type not in types:
            continue
        if server and msg.type != codec.NAK and msg.options.get(54, server) != server:
            continue
        return Ack(msg, mac)


def _send_and_await(link: Link, msg: Message, src: bytes, dst: bytes, dst_mac: bytes, types: tuple[int, ...],
                    timing: Timing, deadline: float, server: bytes = b"", tries: int = 3) -> Ack | None:
    wait = timing.timeout
    for _ in range(tries):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        link.send(codec.udp_packet(src, dst, codec.CLIENT_PORT, codec.SERVER_PORT, msg.encode()), dst_mac)
        got = _await(link, msg.xid, types, min(wait, left), server)
        if got is not None:
            return got
        wait *= 2
    return None


def _one_exchange(link: Link, client_id: bytes, request: list[int], provide: list, timing: Timing,
                  deadline: float) -> Ack:
    flags = codec.FLAG_BROADCAST if timing.broadcast else 0
    xid = random.getrandbits(32)
    discover = Message(xid=xid, chaddr=link.mac, flags=flags,
                       options=_options(client_id, request, provide, codec.DISCOVER))
    offer = _send_and_await(link, discover, codec.ZERO, b"\xff" * 4, BROADCAST_MAC, (codec.OFFER,), timing, deadline)
    if offer is None:
        raise ExchangeFailed("no DHCPOFFER received")
    server = offer.msg.options.get(54, b"")
    opts = _options(client_id, request, provide, codec.REQUEST)
    opts[50] = offer.msg.yiaddr
    if server:
        opts[54] = server
    req = Message(xid=xid, chaddr=link.mac, flags=flags, options=opts)
    ack = _send_and_await(link, req, codec.ZERO, b"\xff" * 4, BROADCAST_MAC, (codec.ACK, codec.NAK), timing,
                          deadline, server)
    if ack is None:
        raise ExchangeFailed(f"no DHCPACK received from {codec.ip_text(server) or 'the server'}")
    if ack.msg.type == codec.NAK:
        raise ExchangeFailed(f"DHCPNAK from {codec.ip_text(server)}: "
                             f"{ack.msg.options.get(56, b'').decode('utf-8', 'replace')}")
    return ack


def acquire(link: Link, client_id: bytes, request: list[int], provide: list, timing: Timing,
            stopped=lambda: False) -> Ack:
    """DISCOVER/OFFER/REQUEST/ACK, retried until ``timing.resend_timeout``; ExchangeFailed
    names the last problem and how long we tried."""
    start = time.monotonic()
    deadline = start + timing.resend_timeout
    delays = [2.0] * 4
    delay = 4.0
    last = ""
    while True:
        try:
            return _one_exchange(link, client_id, request, provide, timing, deadline)
        except ExchangeFailed as e:
            last = str(e)
        if not delays:
            delays.append(delay)
            delay = min(delay * 2, timing.resend_max)
        pause = min(delays.pop(0) + random.uniform(-1, 1), deadline - time.monotonic())
        if pause <= 0 or stopped():
            break
        time.sleep(pause)
    raise ExchangeFailed(f"{last} on {link.ifname} within {time.monotonic() - start:.1f} s "
                         f"(-timeout {timing.timeout:g}s, -resendtimeout {timing.resend_timeout:g}s)")


def renew(link: Link, client_id: bytes, request: list[int], provide: list, address: bytes, server: bytes,
          server_mac: bytes, timing: Timing, rebind: bool) -> Ack | None:
    """One RENEWING (unicast to the server) or REBINDING (broadcast) REQUEST from the leased
    address, without options 50 and 54 (RFC 2131 4.3.2); the ACK, a NAK, or None (no answer)."""
    opts = _options(client_id, request, provide, codec.REQUEST)
    msg = Message(xid=random.getrandbits(32), chaddr=link.mac, ciaddr=address, options=opts)
    if rebind or not server:
        dst, dst_mac = b"\xff" * 4, BROADCAST_MAC
    else:
        dst, dst_mac = server, server_mac
    deadline = time.monotonic() + timing.timeout * 7
    return _send_and_await(link, msg, address, dst, dst_mac, (codec.ACK, codec.NAK), timing, deadline,
                           b"" if rebind else server)


def release(link: Link, client_id: bytes, address: bytes, server: bytes, server_mac: bytes) -> None:
    """DHCPRELEASE from the leased address with ciaddr set, unicast to the server (no answer
    comes: RFC 2131 4.4.6)."""
    opts: dict[int, bytes] = {53: bytes((codec.RELEASE,)), 61: client_id}
    if server:
        opts[54] = server
    msg = Message(xid=random.getrandbits(32), chaddr=link.mac, ciaddr=address, options=opts)
    dst, dst_mac = (server, server_mac) if server and server_mac else (b"\xff" * 4, BROADCAST_MAC)
    link.send(codec.udp_packet(address, dst, codec.CLIENT_PORT, codec.SERVER_PORT, msg.encode()), dst_mac)
