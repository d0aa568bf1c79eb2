"""A tiny DHCP server for the tests that need lease times dnsmasq refuses (< 2 minutes).

``python3 -m tests.dhcp_server IFACE SERVER_IP FIRST_IP LEASE T1 T2 LOG`` (run inside the LAN
namespace): answers DISCOVER with an OFFER of FIRST_IP, FIRST_IP+1... (one address per client
id) and REQUEST with ACK; every message it receives is logged to LOG as one JSON line (type,
ciaddr, source and destination address). SIGUSR1 makes it go silent (it still logs), SIGUSR2
makes it answer again. Replies are broadcast (our client reads them from a packet socket).
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys

from plugins.dhcp import codec

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def main(iface: str, server: str, first: str, lease: int, t1: int, t2: int, log_path: str) -> None:
    answering = [True]
    signal.signal(signal.SIGUSR1, lambda *_: answering.__setitem__(0, False))
    signal.signal(signal.SIGUSR2, lambda *_: answering.__setitem__(0, True))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.bind(("0.0.0.0", 67))
    assigned: dict[bytes, bytes] = {}
    base = struct.unpack("!I", socket.inet_aton(first))[0]
    sid = socket.inet_aton(server)
    log = open(log_path, "a", buffering=1)
    print("ready", flush=True)
    while True:
        data, anc, _flags, src = s.recvmsg(4096, 256)
        dst = ""
        for level, kind, value in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                dst = socket.inet_ntoa(value[8:12])
        try:
            m = codec.Message.decode(data)
        except ValueError:
            continue
        cid = m.options.get(61, m.chaddr)
        log.write(json.dumps({"type": codec.TYPE_NAMES.get(m.type, str(m.type)), "ciaddr": codec.ip_text(m.ciaddr),
                              "src": src[0], "dst": dst, "clientid": cid.hex(), "flags": m.flags,
                              "answering": answering[0]}) + "\n")
        if not answering[0] or m.type not in (codec.DISCOVER, codec.REQUEST):
            if m.type == codec.RELEASE:
                assigned.pop(cid, None)
            continue
        if cid not in assigned:
            assigned[cid] = struct.pack("!I", base + len(assigned))
        yiaddr = assigned[cid]
        reply_type = codec.OFFER if m.type == codec.DISCOVER else codec.ACK
        opts = {53: bytes((reply_type,)), 54: sid, 51: struct.pack("!I", lease), 58: struct.pack("!I", t1),
                59: struct.pack("!I", t2), 1: socket.inet_aton("255.255.255.0"), 3: sid}
        r = codec.Message(codec.BOOTREPLY, m.xid, m.chaddr, m.flags, ciaddr=m.ciaddr, yiaddr=yiaddr, options=opts)
        s.sendto(r.encode(), ("255.255.255.255", 68))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), a[6])
