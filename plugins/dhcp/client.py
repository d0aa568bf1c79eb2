"""The plugin's side of the daemon protocol: one request per connection, bounded in time.

Protocol (``PROTOCOL``), over the daemon's unix stream socket: the plugin sends one JSON
object on one line; the daemon answers at once with ``{"accepted": true, "wait": S}`` (S:
the most seconds the work may take, from the daemon's own -timeout/-resendtimeout), then,
when done, one line ``{"result": ...}`` or ``{"error": {"code", "msg", "details"}}``, and
closes. Every step has a deadline: connecting and the acceptance line within
``ANSWER_TIMEOUT`` seconds, the final line within S + ``ANSWER_TIMEOUT``. Anything else on
the socket (the reference's Go daemon answers an HTTP 400, since it speaks net/rpc over
HTTP) is a clear error naming the socket, never a hang.

Only C modules of the standard library (``_socket``) and cnilib's JSON codec: this runs on
the plugin's start-up budget.
"""

from __future__ import annotations

import _socket

from cnilib import jsonio
from cnilib.errors import TRY_AGAIN_LATER, CNIError

PROTOCOL = "cni-py-dhcp/1"
ANSWER_TIMEOUT = 5.0  # seconds for a live daemon to accept a connection and acknowledge
MAX_LINE = 1 << 20


class DaemonUnreachable(CNIError):
    """No daemon answers on the socket (STATUS turns this into code 50)."""


def call(socket_path: str, request: dict) -> dict:
    """Send ``request`` (an ``op`` and its fields) to the daemon; return its ``result``.

    Raise DaemonUnreachable (code 11) when nobody listens or nobody answers in time, and the
    daemon's error (its code and message) when it reports one."""
    request = dict(request, proto=PROTOCOL)
    where = f"the dhcp daemon's socket {socket_path}"
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(ANSWER_TIMEOUT)
        try:
            s.connect(socket_path)
        except OSError as e:
            why = e.strerror or str(e)
            raise DaemonUnreachable(TRY_AGAIN_LATER, f"error dialing DHCP daemon at {socket_path}: {why} "
                                    "(is `dhcp daemon` running?)") from None
        try:
            s.sendall(jsonio.dumps(request, indent=False).encode("utf-8", "surrogatepass") + b"\n")
        except OSError as e:
            raise DaemonUnreachable(TRY_AGAIN_LATER, f"cannot send to {where}: {e.strerror or e}") from None
        reader = _Lines(s, where)
        first = reader.line(ANSWER_TIMEOUT)
        ack = _decode(first, where)
        wait = ack.get("wait") if ack.get("accepted") is True else None
        if not isinstance(wait, (int, float)) or isinstance(wait, bool):
            if "error" in ack:
                raise _error(ack, where)
            raise _foreign(first, where)
        reply = _decode(reader.line(float(wait) + ANSWER_TIMEOUT), where)
    finally:
        s.close()
    if "error" in reply:
        raise _error(reply, where)
    if "result" not in reply:
        raise _foreign(jsonio.dumps(reply, indent=False).encode(), where)
    return reply["result"]


class _Lines:
    """Lines from the socket, each awaited for at most a given number of seconds."""

    def __init__(self, s, where: str) -> None:
        self.s = s
        self.where = where
        self.buf = b""

    def line(self, timeout: float) -> bytes:
        import time

        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._silent(timeout)
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except TimeoutError:
                raise self._silent(timeout) from None
            except OSError as e:
                raise DaemonUnreachable(TRY_AGAIN_LATER, f"error reading from {self.where}: "
                                        f"{e.strerror or e}") from None
            if not chunk:
                if self.buf:
                    return self.buf  # judged by the caller: not our protocol
                raise DaemonUnreachable(TRY_AGAIN_LATER, f"{self.where}: the connection was closed "
                                        "without an answer")
            self.buf += chunk
            if len(self.buf) > MAX_LINE:
                break
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def _silent(self, timeout: float) -> CNIError:
        return DaemonUnreachable(TRY_AGAIN_LATER, f"no answer from {self.where} within {timeout:g} s")


def _decode(line: bytes, where: str) -> dict:
    try:
        doc = jsonio.loads(line)
    except (jsonio.JSONError, UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        raise _foreign(line, where)
    return doc


def _foreign(line: bytes, where: str) -> CNIError:
    head = line[:60].decode("utf-8", "replace").strip()
    hint = ""
    if head.startswith("HTTP/"):
        hint = " (an HTTP server, such as the reference's Go dhcp daemon speaking net/rpc)"
    return CNIError(TRY_AGAIN_LATER, f"{where} is served by something that does not speak {PROTOCOL}"
                    f"{hint}: it answered {head!r}; start cni-py's `dhcp daemon` there or set "
                    "ipam.daemonSocketPath")


def _error(doc: dict, where: str) -> CNIError:
    e = doc.get("error")
    if not isinstance(e, dict):
        return CNIError(TRY_AGAIN_LATER, f"{where}: malformed error answer {e!r}")
    code = e.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        code = 999
    details = e.get("details")
    return CNIError(code, str(e.get("msg", "")), details if isinstance(details, str) else "")
