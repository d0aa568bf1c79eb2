"""Running things from the harness: commands (optionally inside a named network namespace),
a plugin execution's outcome, and a plugin's stdin and stdout. The bottom of the harness:
it imports nothing of the harness, so every other module (world, leak, profiles, the
checks, the runtimes) can use it.
"""

from __future__ import annotations

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
