"""Running commands for the runtime lanes: a plain environment, retries, cleanup steps."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from typing import Callable, TypeVar

from conformance.proc import PLAIN_PATH

T = TypeVar("T")


class Unavailable(Exception):
    """The runtime cannot work on this machine, for a reason outside the project."""


def short_id() -> str:
    """Eight random hex digits, for unique names."""
    return uuid.uuid4().hex[:8]


def tool(name: str) -> str | None:
    """Absolute path of a command, or None."""
    return shutil.which(name, path=PLAIN_PATH)


def run(argv: list[str], *, env: dict | None = None, timeout: float = 60, check: bool = True,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` with a plain environment; with ``check``, a non-zero exit raises an
    AssertionError holding the command and its output."""
    p = subprocess.run(argv, env=env if env is not None else {"PATH": PLAIN_PATH}, input=input,
                       capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)} exited {p.returncode}:\n"
                             f"{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}")
    return p


def ip_json(*argv: str, ns: str | None = None) -> list:
    """``ip -j ...`` (inside named network namespace ``ns``) parsed."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    out = run(prefix + ["ip", "-j", *argv]).stdout
    return json.loads(out) if out.strip() else []


def cleanup(*steps: Callable[[], object]) -> None:
    """Run every step (callables), even when some fail; then raise the first failure."""
    first = None
    for step in steps:
        try:
            step()
        except BaseException as e:  # noqa: BLE001 - every step runs; the first error is raised
            first = first or e
    if first:
        raise first


def retry(fn: Callable[[], T], *, deadline: float = 10, interval: float = 0.2) -> T:
    """``fn()`` until it returns without an AssertionError (its last one is raised)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() > end:
                raise
            time.sleep(interval)


def kill_pid(pid: int) -> None:
    """SIGKILL ``pid`` if it still exists."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
