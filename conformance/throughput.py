"""TCP throughput between two network namespaces, as a token-bucket shaper lets it through.

Run as a script inside each namespace (standard library only, every socket has a timeout,
so nothing can hang a caller):

``recv PORT SKIP [DRAINED_BELOW [WINDOW]]``: listen on PORT, print ``ready``, accept one
connection and read. The count starts SKIP seconds after the first byte, or, with
DRAINED_BELOW > 0 (bits/s), SKIP seconds after the first half second slower than that: a
token bucket first lets its whole burst through at line rate (containerd's bursts are half
a gigabyte), and only once it has run dry does the shaped rate show; the SKIP seconds leave
out TCP's ramp and the tokens gathered while the burst drained. With WINDOW > 0 the
receiver stops after counting WINDOW seconds and closes (which ends the sender); otherwise
it reads until EOF. It prints ``{"bps", "seconds", "bytes", "skipped_bytes",
"skipped_seconds"}``: the rate of what was counted (0 when the count never started, e.g.
the transfer never slowed below DRAINED_BELOW), and how much and how long it took to reach
the count.

``send HOST PORT SECONDS``: send as fast as possible for at most SECONDS, then close; a
receiver that closes first ends it early (not an error).

``transfer`` runs one such pair from Python: the receiver and the sender are started
behind command prefixes that enter their namespaces (``ip netns exec NAME``, ``nsenter -t
PID -n --``). Used by the CRI lane (conformance/lanes/test_cri.py) and the bandwidth
tests (tests/bw_traffic.py runs this file).
"""

from __future__ import annotations

import json
import socket
import sys
import time

BUF = 1 << 16
TICK = 0.25  # seconds: how often the receiver looks at its rate while waiting for the bucket to run dry
SLOW_TICKS = 2  # consecutive slow ticks taken to mean the bucket is dry (one alone: a starved sender?)


def recv(port: int, skip: float, drained_below: float = 0.0, window: float = 0.0, out=None) -> dict:
    """Receive one connection on ``port`` and measure it (see the module docstring)."""
    out = out or sys.stdout
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(30)
    print("ready", file=out, flush=True)
    conn, _ = srv.accept()
    srv.close()
    conn.settimeout(30)
    buf = bytearray(BUF)
    start = time.monotonic()
    total = skipped = 0
    first = mark = last = None  # skip from `first` on; count from `mark`; `last` read counted
    tick, tick_bytes, slow_ticks = start, 0, 0  # the bucket is dry after SLOW_TICKS slow ticks
    counted = 0
    while True:
        n = conn.recv_into(buf)
        now = time.monotonic()
        if not n:
            break
        total += n
        if first is None:
            if drained_below:
                tick_bytes += n
                if now - tick < TICK:
                    continue
                slow_ticks = slow_ticks + 1 if tick_bytes * 8 / (now - tick) < drained_below else 0
                tick, tick_bytes = now, 0
                if slow_ticks < SLOW_TICKS:
                    continue
            first = now
        if now - first < skip:
            continue
        if mark is None:
            mark, skipped = now, total  # bytes are counted from the next read on
            continue
        counted += n
        last = now
        if window and last - mark >= window:
            break
    conn.close()
    secs = (last - mark) if mark is not None and last is not None else 0.0
    result = {"bps": counted * 8 / secs if secs > 0 else 0.0, "seconds": secs, "bytes": counted,
              "skipped_bytes": skipped if mark is not None else total,
              "skipped_seconds": (mark if mark is not None else time.monotonic()) - start}
    print(json.dumps(result), file=out, flush=True)
    return result


def send(host: str, port: int, seconds: float) -> None:
    """Send zeros to ``host:port`` as fast as possible for at most ``seconds``."""
    s = socket.create_connection((host, port), timeout=30)
    data = b"\0" * BUF
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the receiver has counted enough and closed
    finally:
        s.close()


def transfer(recv_prefix: list[str], send_prefix: list[str], dst: str, port: int, *, seconds: float,
             skip: float = 1.0, drained_below: float = 0.0, window: float = 0.0, python: str = "") -> dict:
    """One TCP transfer to ``dst:port``: the receiver runs behind ``recv_prefix`` (a command
    entering its namespace), the sender behind ``send_prefix`` for at most ``seconds``;
    returns the receiver's result (see ``recv``). AssertionError when either side fails."""
    import subprocess

    python = python or sys.executable
    me = __file__
    rx = subprocess.Popen([*recv_prefix, python, "-I", me, "recv", str(port), str(skip),
                           str(drained_below), str(window)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = rx.stdout.readline().strip()
        if line != "ready":
            raise AssertionError(f"throughput receiver did not start: {line!r} {rx.stderr.read()[-2000:]}")
        tx = subprocess.run([*send_prefix, python, "-I", me, "send", dst, str(port), str(seconds)],
                            check=False, capture_output=True, text=True, timeout=seconds + 60)
        out, err = rx.communicate(timeout=60)
        if tx.returncode != 0 or rx.returncode != 0:
            raise AssertionError(f"throughput transfer to {dst}:{port} failed: sender {tx.returncode} "
                                 f"{tx.stderr[-1000:]} receiver {rx.returncode} {err[-1000:]}")
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    """The script's command line (see the module docstring)."""
    if argv[0] == "recv":
        recv(int(argv[1]), float(argv[2]), float(argv[3]) if len(argv) > 3 else 0.0,
             float(argv[4]) if len(argv) > 4 else 0.0)
    elif argv[0] == "send":
        send(argv[1], int(argv[2]), float(argv[3]))
    else:
        raise SystemExit("usage: throughput.py recv PORT SKIP [DRAINED_BELOW [WINDOW]] | send HOST PORT SECONDS")


if __name__ == "__main__":
    main(sys.argv[1:])
