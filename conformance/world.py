"""A check's private world: a throwaway host namespace, a container namespace, temp dirs.

Every plugin call a check makes runs inside the world's "host" namespace (as a runtime
living there would call it), never in the machine's own. Closing the world deletes both
namespaces (with whatever a crashed plugin left in them) and the directories, so even a
plugin killed with SIGKILL in the middle of ADD leaves the machine clean. Processes the
profile started for the world (dhcp: a DHCP server and a daemon) are stopped first, by the
profile's ``cleanup``, also when the namespaces are only renewed.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from typing import Callable

from conformance import runs
from conformance.proc import PLAIN_PATH, Outcome, parse_doc, record, sh, stdin_bytes
from conformance.profiles import Profile, Sandbox

SPIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spies")
_counter = itertools.count()


def _unique_octets() -> tuple[int, int]:
    # Spread concurrent harness runs and tests over 10.200-10.249.x.0/24.
    n = (os.getpid() * 7919 + next(_counter)) % (50 * 256)
    return 200 + n // 256, n % 256


class World:
    """Namespaces and directories for one check; use as a context manager."""

    def __init__(self, cni_path: str, profile: Profile | None) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.cni_path = cni_path
        self.profile = profile
        # The run's tag (conformance/runs.py) in every name: a leak check tells this run's
        # namespaces from other runs', and a later run sweeps them if this one is killed.
        run_tag = runs.tag()
        self.host = f"cnh-{run_tag}-{tag}" if run_tag else f"cnh-{tag}"
        self.ctr = f"cnc-{run_tag}-{tag}" if run_tag else f"cnc-{tag}"
        self._run_tag = run_tag
        self.ctr_path = f"/var/run/netns/{self.ctr}"
        self.tmp = runs.mkdtemp(prefix=f"cni-conf-{tag}-")
        a, b = _unique_octets()
        self.sandbox = Sandbox(
            data_dir=os.path.join(self.tmp, "ipam"),
            bridge=f"cnb{tag[:8]}",
            subnet4=f"10.{a}.{b}.0/24",
            subnet6=f"fd00:{a}:{b}::/64",
            spy_dir=os.path.join(self.tmp, "spy"),
            master=f"cnm{tag[:8]}",
            pod_veth=f"cnv{tag[:8]}",
            cni_path=cni_path,
            run_dir=os.path.join(self.tmp, "run"),
        )
        a, b = _unique_octets()
        # A second network's IPv4 subnet, for checks holding attachments of two networks.
        self.other_subnet4 = f"10.{a}.{b}.0/24"
        self.conf_dir = os.path.join(self.tmp, "net.d")
        self.cache_dir = os.path.join(self.tmp, "cache")
        for d in (self.sandbox.data_dir, self.sandbox.spy_dir, self.sandbox.run_dir, self.conf_dir, self.cache_dir):
            os.makedirs(d)
        self._extra_ns: list[str] = []
        self._make_namespaces()

    def _make_namespaces(self) -> None:
        """The host and container namespaces, and what the profile needs in the host one
        (a stand-in NIC as master); a failure here deletes what was made."""
        sh("ip", "netns", "add", self.host)
        sh("ip", "netns", "add", self.ctr)
        try:
            sh("ip", "link", "set", "lo", "up", ns=self.host)
            if self.profile is not None and self.profile.prepare is not None:
                self.profile.prepare(self.sandbox, self.host, self.ctr)
        except Exception:
            self.close()
            raise

    def _cleanup_profile(self) -> None:
        """The profile's teardown (``Profile.cleanup``: stop the processes its ``prepare``
        started), before the namespaces they run in go; never raises, so the namespaces
        and directories are removed whatever happened."""
        if self.profile is not None and self.profile.cleanup is not None:
            try:
                self.profile.cleanup(self.sandbox)
            except Exception as e:  # noqa: BLE001 -- teardown goes on; the leak check reports what stays
                print(f"conformance: {self.profile.type} cleanup failed: {e}")

    def renew_namespaces(self) -> None:
        """Fresh, empty host and container namespaces under the same names (and the
        profile's host setup again): a run that must start from the same state as the last."""
        self._cleanup_profile()
        for ns in (self.ctr, self.host):
            runs.delete_netns(ns)  # and the processes in it (a plugin's hung child)
        self._make_namespaces()

    @property
    def namespaces(self) -> list[str]:
        """The names of the world's namespaces: host, container, and those ``new_netns`` made."""
        return [self.host, self.ctr, *self._extra_ns]

    # -- resources -------------------------------------------------------------------
    def new_netns(self) -> str:
        """Another container namespace, deleted with the world; returns its path."""
        name = f"cnx-{self._run_tag}-{uuid.uuid4().hex[:8]}" if self._run_tag else f"cnx-{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", name)
        self._extra_ns.append(name)
        if self.profile is not None and self.profile.prepare_netns is not None:
            self.profile.prepare_netns(self.sandbox, self.host, name)
        return f"/var/run/netns/{name}"

    def drop_netns(self, path: str) -> None:
        """Delete a container namespace now (to test DEL after the container is gone)."""
        name = os.path.basename(path)
        sh("ip", "netns", "delete", name, check=False)

    def conf(self, version: str = "1.0.0", name: str | None = None, *, sandbox: Sandbox | None = None,
             **extra: object) -> dict:
        """The profile's config for this world as a plugin's stdin (name, cniVersion set),
        for ``sandbox`` (default the world's own)."""
        assert self.profile is not None
        c = {"cniVersion": version, "name": name or f"net-{self.tag}"}
        c.update(self.profile.config(sandbox or self.sandbox))
        c.update(extra)
        return c

    def spy_ipam(self, address: str | None = None, routes: list | None = None, dns: dict | None = None) -> dict:
        """An ``ipam`` object delegating to the harness's spy (conformance/spies/spy-ipam),
        which returns ``address``, ``routes`` and ``dns``; pass ``path=world.spy_path``
        when running the plugin so it is found."""
        a, b = self.sandbox.subnet4.split(".")[1:3]
        ipam = {"type": "spy-ipam", "spyDir": self.sandbox.spy_dir,
                "address": address or f"10.{a}.{b}.5/24", "routes": routes or []}
        if dns is not None:
            ipam["dns"] = dns
        return ipam

    @property
    def spy_path(self) -> str:
        """CNI_PATH with the plugins under test first, then the spies."""
        return f"{self.cni_path}:{SPIES}"

    def spy_calls(self) -> list[dict]:
        """What the spy IPAM recorded, in order."""
        p = os.path.join(self.sandbox.spy_dir, "calls.jsonl")
        if not os.path.exists(p):
            return []
        with open(p) as f:
            return [json.loads(line) for line in f if line.strip()]

    def spy_reply(self, verb: str, stdout: str, rc: int) -> None:
        """Make the spy answer ``verb`` with this stdout and exit status."""
        with open(os.path.join(self.sandbox.spy_dir, f"reply-{verb}.json"), "w") as f:
            json.dump({"stdout": stdout, "rc": rc}, f)

    # -- running plugins -------------------------------------------------------------
    def exec(self, binary: str, command: str, stdin: dict | bytes | str | None, *,
             containerid: str = "", netns: str | None = None, ifname: str = "",
             args: str = "", path: str | None = None, env: dict | None = None,
             only_env: dict | None = None, timeout: float = 60, kill_after: float | None = None,
             wrap: Callable[[list[str]], list[str]] | None = None) -> Outcome:
        """Exec a plugin inside the host namespace with a minimal environment.

        ``only_env`` replaces the environment entirely (for environment checks);
        ``kill_after`` SIGKILLs the plugin after that many seconds (crash checks);
        ``wrap`` rewrites the command line (``Cage.wrap``: run it under a process limit).
        A plugin still running after ``timeout`` is killed and TimeoutExpired raised.
        """
        if only_env is not None:
            e = dict(only_env)
        else:
            e = {"PATH": PLAIN_PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": containerid,
                 "CNI_NETNS": self.ctr_path if netns is None else netns, "CNI_IFNAME": ifname,
                 "CNI_ARGS": args, "CNI_PATH": self.cni_path if path is None else path}
            if env:
                e.update(env)
        data = stdin_bytes(stdin)
        cmd = ["ip", "netns", "exec", self.host, binary]
        # The report's reproduction of a failure (conformance/report.py).
        call = record(cmd, e, data, workdir=self.tmp, kill_after=kill_after,
                      note="" if wrap is None else "run under the harness's process limit")
        if wrap is not None:
            cmd = wrap(cmd)
        if kill_after is not None:
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
            p.stdin.write(data)
            p.stdin.close()
            time.sleep(kill_after)
            killed = p.poll() is None
            if killed:
                p.send_signal(signal.SIGKILL)
            out, err = p.stdout.read(), p.stderr.read()
            p.wait()
            return call.done(Outcome(p.returncode, out, err, parse_doc(out), killed))
        try:
            p = subprocess.run(cmd, input=data, env=e, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as t:
            call.expired(timeout, t.stdout, t.stderr)
            raise
        return call.done(Outcome(p.returncode, p.stdout, p.stderr, parse_doc(p.stdout)))

    # -- state -----------------------------------------------------------------------
    def snapshot(self) -> dict:
        """What the leak checker compares (see conformance.leak)."""
        from conformance import leak

        return leak.snapshot(self)

    def close(self) -> None:
        """Stop what the profile started (``Profile.cleanup``), then delete the namespaces
        (killing the processes still in them: a namespace outlives its name while a process
        holds it) and directories."""
        self._cleanup_profile()
        for n in [self.ctr, self.host] + self._extra_ns:
            runs.delete_netns(n)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
