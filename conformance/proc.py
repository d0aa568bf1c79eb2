"""Running things from the harness: commands (optionally inside a named network namespace),
a plugin execution's outcome, and a plugin's stdin and stdout. The bottom of the harness:
it imports nothing of the harness, so every other module (world, leak, profiles, the
checks, the runtimes) can use it.

It also keeps the current check's plugin calls (``record``, ``start_recording``,
``recorded``): every place that execs a plugin (``World.exec``) or the libcni driver
records the command, its environment and stdin and then the outcome, so a failure in the
report carries a reproduction (conformance/report.py). Recording keeps references, never
copies, and only the last ``KEEP`` calls of a check.
"""

from __future__ import annotations

import collections
import itertools
import json
import subprocess
from dataclasses import dataclass, field

PLAIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Outcome:
    """One direct plugin execution."""

    rc: int
    stdout: bytes
    stderr: bytes
    doc: object = field(default=None)
    killed: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def code(self) -> int | None:
        return self.doc.get("code") if isinstance(self.doc, dict) else None

    def __str__(self) -> str:
        return (f"exit {self.rc}; stdout={self.stdout.decode(errors='replace')[:2000]!r}; "
                f"stderr={self.stderr.decode(errors='replace')[:2000]!r}")


def sh(*argv: str, ns: str | None = None, check: bool = True, input: bytes | None = None) -> str:
    """Run a command (inside named namespace ``ns``) and return stdout."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    p = subprocess.run(cmd, capture_output=True, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout.decode(errors="replace")


def stdin_bytes(conf: dict | bytes | str | None) -> bytes:
    """A plugin's stdin: a dict as JSON, text as UTF-8, bytes as they are."""
    if isinstance(conf, dict):
        return json.dumps(conf).encode()
    if isinstance(conf, str):
        return conf.encode()
    return conf or b""


def parse_doc(out: bytes) -> object:
    """A plugin's (or driver's) stdout parsed as JSON, or None when empty or not JSON."""
    if not out.strip():
        return None
    try:
        return json.loads(out)
    except ValueError:
        return None


@dataclass
class Call:
    """One execution of a plugin (or of the libcni driver) by a check: what ran, with what,
    and what came out (``rc`` None while running, or when it timed out)."""

    argv: list[str]  # as run, before any process-limit wrapper, e.g. ["ip", "netns", "exec", HOST, binary]
    env: dict[str, str]  # the whole environment it got
    stdin: bytes | None  # None: not given (inherited)
    workdir: str = ""  # the world's directory (made again by a reproduction), if any
    note: str = ""  # how the harness ran it beyond argv/env/stdin (a process limit, a kill)
    seq: int = 0  # its number among the check's calls, from 1
    kill_after: float | None = None  # the harness SIGKILLs it after this many seconds
    rc: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: float | None = None  # the deadline it missed, in seconds

    def done(self, outcome: Outcome) -> Outcome:
        """Record how it ended; returns ``outcome`` (so a caller can ``return call.done(...)``)."""
        self.rc, self.stdout, self.stderr = outcome.rc, outcome.stdout, outcome.stderr
        return outcome

    def expired(self, deadline: float, stdout: bytes | None, stderr: bytes | None) -> None:
        """Record that it was killed for missing ``deadline``."""
        self.timed_out, self.stdout, self.stderr = deadline, stdout or b"", stderr or b""


KEEP = 8  # calls kept per check: a reproduction shows the last ones, the failing one among them
_calls: collections.deque[Call] | None = None  # the current check's; None outside checks
_count = itertools.count(1)


def start_recording() -> None:
    """A new check begins: forget the previous check's calls."""
    global _calls, _count
    _calls, _count = collections.deque(maxlen=KEEP), itertools.count(1)


def record(argv: list[str], env: dict[str, str], stdin: bytes | None, *, workdir: str = "",
           note: str = "", kill_after: float | None = None) -> Call:
    """Record a call about to run (cheap: references only; thread-safe, as checks run
    parallel ADDs from threads); finish it with ``Call.done``/``Call.expired``."""
    call = Call(argv, env, stdin, workdir, note, next(_count), kill_after)
    if _calls is not None:
        _calls.append(call)
    return call


def recorded() -> tuple[list[Call], int]:
    """The current check's last calls, oldest first, and how many it made in all."""
    calls = list(_calls) if _calls is not None else []
    return calls, max((c.seq for c in calls), default=0)
