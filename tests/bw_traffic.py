"""A TCP sender and receiver for the bandwidth tests, run inside test namespaces.

``recv PORT SKIP``: listen on PORT, print ``ready``, accept one connection, read until EOF
and print ``{"bps": ..., "seconds": ..., "bytes": ...}``: the rate of what arrived after
the first SKIP seconds (the token bucket's initial burst and TCP's slow start are left
out). ``send HOST PORT SECONDS``: send as fast as possible for SECONDS, then close.
Standard library only; every socket has a timeout, so nothing can hang a test.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def recv(port: int, skip: float) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(30)
    print("ready", flush=True)
    conn, _ = srv.accept()
    conn.settimeout(30)
    buf = bytearray(1 << 16)
    first = mark = last = None
    counted = 0
    while True:
        n = conn.recv_into(buf)
        now = time.monotonic()
        if not n:
            break
        if first is None:
            first = now
        if now - first < skip:
            continue
        if mark is None:
            mark = now  # bytes are counted from the next read on
        else:
            counted += n
        last = now
    conn.close()
    secs = (last - mark) if mark is not None and last is not None else 0.0
    print(json.dumps({"bps": counted * 8 / secs if secs > 0 else 0.0, "seconds": secs, "bytes": counted}))


def send(host: str, port: int, seconds: float) -> None:
    s = socket.create_connection((host, port), timeout=30)
    data = b"\0" * (1 << 16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(data)
    s.close()


if __name__ == "__main__":
    if sys.argv[1] == "recv":
        recv(int(sys.argv[2]), float(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
