"""Chain scenarios of the benchmark, driven through libcni as a runtime drives them.

    python -m conformance.bench --only chain          single pod: ADD, CHECK, DEL
    python -m conformance.bench --only parallel       32 pods' ADDs at once, then their DELs

The network list is the one a runtime would have for pods with a host port:

    bridge (isGateway, ipMasq, host-local in a temp dataDir)  ->  portmap (capabilities
    portMappings; one mapping per pod, hostPort 20000+i -> 80/tcp, passed as capability
    args, which libcni hands portmap as runtimeConfig.portMappings)

Every call is one run of the libcni driver (conformance/libcni.py, the Go program built
into .cache/cnidriver; cnitool's interface, CAP_ARGS for the capability args, plus its own
CNI_CACHE_DIR and CNI_CONTAINERID), which execs the plugins in turn: the times are what a
runtime embedding libcni waits for (driver start-up included, the same Go binary for every
implementation). The driver process runs inside a throwaway host network namespace (started
from a thread parked there, proc.NetnsThread, as the single-plugin scenarios start plugins),
one per implementation so one implementation's firewall state never slows another's; pods
get their own namespaces.

* single pod: ADD, CHECK (libcni's cached result as prevResult), DEL of one pod, the
  implementations alternating (order rotated every run); medians of ADD, CHECK, DEL and of
  ADD+DEL (per run).
* parallel: N pods (default 32, each with its own container namespace, all on the same
  bridge and network) get their chain ADDs launched at once; the wall time runs from the
  first launch until the last driver has exited. Then their N DELs, in parallel, likewise.
  Repeated (implementations alternating, order rotated), medians; before that, untimed, one
  pod's ADD and DEL, so the shared firewall state exists as on any host that ran a pod.
  Calls that fail are counted and reported, not fatal (unless all of a round fail).

:func:`chain_rows` and :func:`parallel_rows` give the report's rows. Namespaces are named
with the caller's unique prefix and removed by the caller's cleanup (``__main__``: on exit,
error, Ctrl-C and SIGTERM). A measurement, not a test: nothing here asserts a time; a
failing call raises RuntimeError with the driver's error.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from conformance import libcni
from conformance.bench.proc import NETNS_DIR, netns_thread, not_built_for, rotated

SUBNET = "10.232.0.0/16"
HOST_PORT_BASE = 20000
BRIDGE = "cnibc0"
NETWORK = "bench-chain"
CHAIN_PLUGINS = ("bridge", "host-local", "portmap")
TARGET_CHAIN_VS_REF = 3.0  # chain ADD+DEL, ours at most 3x the reference
# Known failures whose time is still reported (the call did all its work before failing).
KNOWN_CHECK_FAILURES = {
    "could not check ipv6 dnat": "fails: the reference portmap 1.1.1 CHECK looks for IPv6 rules it never made "
                                 "on a single-stack attachment (containernetworking/plugins#819); time until "
                                 "that error, after the bridge's CHECK and portmap's IPv4 one",
}


class ChainImpl:
    """One implementation's world: its host namespace, conflist, libcni cache, store."""

    def __init__(self, label: str, bin_dir: str, prefix: str, tmp: str, driver: str,
                 backend: str | None = None) -> None:
        self.label = label
        self.bin_dir = bin_dir
        self.driver = driver
        self.host_ns = f"{prefix}{label}"
        self.host_path = os.path.join(NETNS_DIR, self.host_ns)
        base = tempfile.mkdtemp(prefix=f"chain-{label}-", dir=tmp)
        self.conf_dir = os.path.join(base, "net.d")
        self.cache_dir = os.path.join(base, "cache")
        bridge = {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True,
                  "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": os.path.join(base, "store")}}
        portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
        if backend:  # keys the reference 1.1.1 does not know (and ignores)
            bridge["ipMasqBackend"] = backend
            portmap["backend"] = backend
        libcni.write_conflist(self.conf_dir, NETWORK, [bridge, portmap])
        self.pods: set[int] = set()

    def missing(self) -> list[str]:
        """The chain's plugins that are not executable in ``bin_dir``."""
        return [p for p in CHAIN_PLUGINS if not os.access(os.path.join(self.bin_dir, p), os.X_OK)]

    def start(self) -> None:
        """Make the host namespace (loopback up)."""
        subprocess.run(["ip", "netns", "add", self.host_ns], check=True)
        subprocess.run(["ip", "-n", self.host_ns, "link", "set", "lo", "up"], check=True)

    def pod_path(self, i: int) -> str:
        """The path of pod ``i``'s container namespace."""
        return os.path.join(NETNS_DIR, f"{self.host_ns}-p{i}")

    def ensure_pod(self, i: int) -> None:
        """The pod's container namespace (made once, untimed, reused by every run)."""
        if i not in self.pods:
            subprocess.run(["ip", "netns", "add", os.path.basename(self.pod_path(i))], check=True)
            self.pods.add(i)

    def spawn(self, verb: str, i: int) -> subprocess.Popen:
        """Start one driver run (``add``, ``check`` or ``del``) for pod ``i``, in the host
        namespace (started from a thread parked there: see proc.NetnsThread)."""
        env = {"PATH": libcni.PLAIN_PATH, "NETCONFPATH": self.conf_dir, "CNI_PATH": self.bin_dir,
               "CNI_CACHE_DIR": self.cache_dir, "CNI_CONTAINERID": f"bench-chain-{i}", "CNI_IFNAME": "eth0",
               "CAP_ARGS": json.dumps({"portMappings": [
                   {"hostPort": HOST_PORT_BASE + i, "containerPort": 80, "protocol": "tcp"}]})}
        argv = [self.driver, verb, NETWORK, self.pod_path(i)]
        return netns_thread(self.host_path).call(lambda: subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE))

    def call(self, verb: str, i: int, known: dict[str, str] | None = None) -> tuple[float, str]:
        """One driver run for pod ``i``; returns its wall time in seconds and "", or, when
        it failed with an error of ``known`` (text in the error -> what it is), that name."""
        t = time.perf_counter()
        p = self.spawn(verb, i)
        out, err = p.communicate()
        elapsed = time.perf_counter() - t
        if p.returncode != 0:
            text = error_text(out, err)
            for needle, what in (known or {}).items():
                if needle in text:
                    return elapsed, what
            raise RuntimeError(f"{self.label} ({self.bin_dir}): libcni {verb} of pod {i} failed: {text}")
        return elapsed, ""

    def parallel(self, verb: str, pods: range, running: list) -> tuple[float, list[str]]:
        """``verb`` for every pod at once; seconds from the first launch until all exited,
        and the errors of the runs that failed (RuntimeError if every one did).

        The processes are listed in ``running`` while they run, so a caller interrupted
        here can wait for them before removing namespaces."""
        t = time.perf_counter()
        procs = []
        for i in pods:
            p = self.spawn(verb, i)
            procs.append((i, p))
            running.append(p)
        errors = []
        for i, p in procs:
            out, err = p.communicate()
            if p.returncode != 0:
                errors.append(f"pod {i}: {error_text(out, err)}")
        elapsed = time.perf_counter() - t
        del running[:]
        if errors and len(errors) == len(procs):
            raise RuntimeError(f"{self.label} ({self.bin_dir}): all {len(procs)} parallel libcni {verb}s "
                               f"failed; first: {errors[0]}")
        return elapsed, errors


def error_text(out: bytes, err: bytes) -> str:
    """The driver's error: ``msg`` of its error JSON (details can be whole rule sets), else
    its output as text."""
    try:
        doc = json.loads(out)
        if isinstance(doc, dict) and "msg" in doc:
            return f"{doc['msg']} (code {doc.get('code')})"
    except ValueError:
        pass
    return (out or err).decode(errors="replace").strip()


def _ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def measure_single(impls: list[ChainImpl], runs: int, warmup: int = 2, progress=None) -> dict[str, dict]:
    """ADD, CHECK, DEL of one pod, ``runs`` times per implementation (after ``warmup``),
    alternating; returns {label: {"add", "check", "del", "add_del"}} medians in ms, the raw
    samples under "samples" and, under "failed", {op: why} for a known failure (the CHECK of
    KNOWN_CHECK_FAILURES, timed until the error)."""
    times = {im.label: {"add": [], "check": [], "del": [], "add_del": []} for im in impls}
    failed: dict[str, dict[str, str]] = {im.label: {} for im in impls}
    for im in impls:
        im.ensure_pod(0)
    for r in range(warmup + runs):
        for im in rotated(impls, r):
            a, _ = im.call("add", 0)
            c, why = im.call("check", 0, KNOWN_CHECK_FAILURES)
            if why:
                failed[im.label]["check"] = why
            d, _ = im.call("del", 0)
            if r >= warmup:
                t = times[im.label]
                t["add"].append(a)
                t["check"].append(c)
                t["del"].append(d)
                t["add_del"].append(a + d)
        if progress and (r + 1) % 10 == 0:
            progress(f"  chain single pod: {r + 1}/{warmup + runs}")
    return {k: dict({op: _ms(v) for op, v in t.items()},
                    samples={op: [x * 1000 for x in v] for op, v in t.items()}, failed=failed[k])
            for k, t in times.items()}


def measure_parallel(impls: list[ChainImpl], pods: int, runs: int, running: list, warmup: int = 1,
                     progress=None) -> dict[str, dict]:
    """``pods`` parallel chain ADDs, then ``pods`` parallel DELs, ``runs`` times per
    implementation (after ``warmup``), alternating; {label: {"add", "del"}} medians in ms,
    the samples, and under "failed" {op: what} when some calls failed (they are timed like
    the others; a DEL of every pod follows anyway).

    First, untimed, one pod's chain ADD and DEL per implementation: the host namespace then
    holds the shared firewall state any host that has run a pod holds (tables, base and
    shared chains), so the parallel runs measure attachments, not the creation race of a
    pristine namespace (the reference portmap 1.1.1 loses that race: parallel first ADDs
    fail with "chain CNI-HOSTPORT-MASQ ... File exists")."""
    times = {im.label: {"add": [], "del": []} for im in impls}
    errors: dict[str, dict[str, list[str]]] = {im.label: {"add": [], "del": []} for im in impls}
    for im in impls:
        for i in range(pods):
            im.ensure_pod(i)
        im.call("add", 0)
        im.call("del", 0)
    for r in range(warmup + runs):
        for im in rotated(impls, r):
            a, ea = im.parallel("add", range(pods), running)
            d, ed = im.parallel("del", range(pods), running)
            if r >= warmup:
                times[im.label]["add"].append(a)
                times[im.label]["del"].append(d)
                errors[im.label]["add"] += ea
                errors[im.label]["del"] += ed
            if progress:
                progress(f"  {pods} parallel: run {r + 1}/{warmup + runs} {im.label}: "
                         f"ADD {a * 1000:.0f} ms, DEL {d * 1000:.0f} ms"
                         + (" (warm-up)" if r < warmup else "")
                         + (f"; {len(ea)} ADDs and {len(ed)} DELs failed, first: {(ea + ed)[0]}" if ea or ed else ""))
    total = pods * runs
    return {k: dict({op: _ms(v) for op, v in t.items()},
                    samples={op: [x * 1000 for x in v] for op, v in t.items()},
                    failed={op: f"{len(e)} of {total} parallel {op.upper()}s failed ({k}; first: {e[0]})"
                            for op, e in errors[k].items() if e})
            for k, t in times.items()}


def start_impls(impls: list[tuple[str, str]], ns_prefix: str, tmp: str, unbuilt: set,
                backend: str | None) -> tuple[list[ChainImpl], dict[str, list[str]]]:
    """The ChainImpls (started) of the implementations that have the chain's plugins, and
    {label: missing plugins} of the others (every plugin for the ``unbuilt`` labels);
    raises DriverBuildError without the driver."""
    nb = not_built_for(impls, CHAIN_PLUGINS, unbuilt)
    driver = libcni.build()
    ims = [ChainImpl(l, d, ns_prefix, tmp, driver, backend) for l, d in impls if l not in nb]
    for im in ims:
        im.start()
    return ims, nb


def chain_rows(impls: list[tuple[str, str]], runs: int, ns_prefix: str, tmp: str, unbuilt: set,
               backend: str | None, progress: Callable[[str], None]) -> list[dict]:
    """The report's rows of chain ADD, CHECK, DEL and ADD+DEL of one pod through libcni,
    ``runs`` times for each of ``impls`` ((label, bin_dir)); ADD+DEL carries the target."""
    ims, nb = start_impls(impls, ns_prefix, tmp, unbuilt, backend)
    if not ims:
        return []
    labels = [l for l, _ in impls]
    progress(f"chain single pod through libcni, {runs} runs ...")
    res = measure_single(ims, runs, progress=progress)
    targets = [{"what": f"{'bin' if l == 'ours-bin' else l}/ref", "num": l, "den": "ref",
                "limit": TARGET_CHAIN_VS_REF} for l in ("ours", "ours-bin") if l in labels]
    rows = []
    for op, name in (("add", "ADD"), ("check", "CHECK"), ("del", "DEL"), ("add_del", "ADD+DEL")):
        rows.append({"key": "chain", "scenario": f"chain {name}, 1 pod (libcni)", "unit": "ms", "runs": runs,
                     "not_built": nb, "values": {l: r[op] for l, r in res.items()},
                     "samples_ms": {l: r["samples"][op] for l, r in res.items()},
                     "failed": {l: r["failed"][op] for l, r in res.items() if op in r["failed"]},
                     "targets": targets if op == "add_del" else []})
    return rows


def parallel_rows(impls: list[tuple[str, str]], pods: int, runs: int, ns_prefix: str, tmp: str, unbuilt: set,
                  backend: str | None, running: list, progress: Callable[[str], None]) -> list[dict]:
    """The report's rows of ``pods`` parallel chain ADDs, then ``pods`` DELs, through libcni,
    ``runs`` times for each of ``impls``; driver processes are listed in ``running`` while
    they run."""
    ims, nb = start_impls(impls, ns_prefix, tmp, unbuilt, backend)
    if not ims:
        return []
    progress(f"{pods} parallel chain ADDs, then DELs, through libcni, {runs} runs ...")
    res = measure_parallel(ims, pods, runs, running, progress=progress)
    rows = []
    for op, name in (("add", "ADDs"), ("del", "DELs")):
        rows.append({"key": "parallel", "scenario": f"{pods} parallel chain {name}, one bridge (libcni)",
                     "unit": "ms", "runs": runs, "not_built": nb,
                     "values": {l: r[op] for l, r in res.items()},
                     "samples_ms": {l: r["samples"][op] for l, r in res.items()},
                     "failed": {l: r["failed"][op] for l, r in res.items() if op in r["failed"]}, "targets": []})
    return rows
