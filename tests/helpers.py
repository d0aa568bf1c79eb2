"""Helpers for the project's tests: run plugin binaries as real processes, make namespaces.

Plugins always run as separate processes with a minimal environment (only the CNI_*
variables and a plain PATH, as libcni calls them), never in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUR_BIN = os.path.join(ROOT, "dist", "bin")  # the drop-in binaries, one self-contained file per plugin
SRC_BIN = os.path.join(ROOT, "dist", "src-bin")  # the same plugins run from source
REF_BIN = "/usr/lib/cni"
PLAIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Every namespace a test run makes (and the conformance harness it starts) carries this
# run's tag, so the leak check can tell ours from those of other runs on the machine.
NS_TAG = os.environ.setdefault("CNIPY_NS_TAG", uuid.uuid4().hex[:6])


# One plugin invocation's outcome: the harness's own type (rc, stdout, stderr, doc, .ok, .code).
from conformance.proc import Outcome, parse_doc, stdin_bytes  # noqa: E402


def run_plugin(binary: str, command: str, conf: dict | bytes | str | None = None, *,
               containerid: str = "", netns: str = "", ifname: str = "", args: str = "",
               path: str = "", in_netns: str | None = None, extra_env: dict | None = None,
               timeout: float = 60) -> Outcome:
    """Exec ``binary`` with CNI_COMMAND=command and ``conf`` on stdin.

    ``in_netns`` runs the process inside that named namespace (``ip netns exec``), as a
    runtime running in a throwaway "host" namespace would.
    """
    env = {"PATH": PLAIN_PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": containerid,
           "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": path}
    if extra_env:
        env.update(extra_env)
    data = stdin_bytes(conf)
    argv = [binary]
    if in_netns:
        argv = ["ip", "netns", "exec", in_netns, binary]
    p = subprocess.run(argv, input=data, env=env, capture_output=True, timeout=timeout)
    return Outcome(p.returncode, p.stdout, p.stderr, parse_doc(p.stdout))


def sh(*argv: str, check: bool = True, ns: str | None = None) -> str:
    """Run a command (optionally inside named netns ``ns``) and return its stdout."""
    cmd = list(argv)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
    return p.stdout


def unique(prefix: str) -> str:
    """A short unique name (fits IFNAMSIZ when prefix is <= 6 chars)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Netns:
    """A named network namespace made for one test; ``path`` is what CNI_NETNS gets."""

    def __init__(self, prefix: str = "cnit") -> None:
        self.name = f"{prefix}-{NS_TAG}-{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", self.name)
        self.path = f"/var/run/netns/{self.name}"

    def run(self, *argv: str, check: bool = True) -> str:
        return sh(*argv, check=check, ns=self.name)

    def delete(self) -> None:
        """Delete the namespace, killing the processes still in it (a server or a plugin's
        child a test left: the namespace would live on, unnamed, while they run)."""
        from conformance.runs import delete_netns

        delete_netns(self.name)

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()


def ip_json(*argv: str, ns: str | None = None) -> list:
    """``ip -j ...`` parsed."""
    out = sh("ip", "-j", *argv, ns=ns)
    return json.loads(out) if out.strip() else []
