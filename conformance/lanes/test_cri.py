"""The CRI lane's checks (``python -m conformance --cni-path DIR --runtime cri``).

A private containerd (Debian's, CRI plugin on) runs on a throwaway node namespace over the
plugin set in DIR (bandwidth from the reference directory when DIR has none); the checks
talk CRI over its socket as kubelet does and assert what the kernel then holds and what
traffic does. They run in order, on one node: two pods (A serves HTTP behind a hostPort,
with DNS config and bandwidth annotations; B is its neighbour), the shaping of A's traffic
measured against B's, their removal, 10 pods one after another (whose per-call medians are
measured), 10 at once, and the lane's teardown.
A check that needs pod A fails with RunPodSandbox's error (the plugin's own message) when
the pod could not be made.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conformance.runtimes import kernelstate
from conformance.runtimes.commands import Unavailable
from conformance.runtimes.cri_client import CriError
from conformance.runtimes.cri_lane import POD_PORT, CriLane, Pod, in_subnet, missing_tools, wait_gone

check = pytest.mark.check
SECTION = "M Kubernetes (containerd CRI)"
REF = "reference/more-plugins.md §10 (what containerd's CRI sends)"
DNS = {"servers": ["10.96.0.10", "10.96.0.11"], "searches": ["cnipy.svc.cluster.local", "svc.cluster.local"],
       "options": ["ndots:5", "timeout:2"]}
# Kubernetes quantities (bit/s): rates a TCP transfer between namespaces measures well on a
# small, loaded machine, at least 15.6 Mbit/s (below that, containerd's fixed 2^32-1-bit
# bursts overflow the kernel's 32-bit tick count: ours clamps, the reference wraps), and 1.5x
# apart, so that swapped directions cannot pass the +-20% of the measurement.
INGRESS, EGRESS = "16M", "24M"
INGRESS_BPS, EGRESS_BPS = 16_000_000, 24_000_000
SHAPED_TOLERANCE = 0.2  # measured TCP payload within +-20% of the annotated rate
UNSHAPED_FACTOR = 10  # the unannotated pod at least 10x faster than the annotated rate
RUNS = 10


@pytest.fixture(scope="module")
def lane(request: pytest.FixtureRequest):
    """The node with containerd running over the plugins under test; closed by the last
    check (which asserts nothing is left) or, should that not run, here."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"not applicable: {', '.join(missing)} not installed (Debian packages containerd, runc, iproute2)")
    ref = request.config.getoption("--cni-reference") or None
    try:
        ln = CriLane(request.config.getoption("--cni-path"), ref)
    except Unavailable as e:
        pytest.skip(f"not applicable: {e}")
    try:
        yield ln
    finally:
        ln.close()


def _failure(e: CriError) -> BaseException:
    """The check's failure for a failed CRI call: the runtime's message alone (for
    RunPodSandbox it holds the CNI plugin's error), without a traceback."""
    return pytest.fail.Exception(str(e), pytrace=False)


@pytest.fixture(scope="module")
def pods(lane: CriLane) -> dict[str, Pod]:
    """Pod A (server behind a hostPort, DNS config, bandwidth annotations, labels) and pod B."""
    lane.wait_ready()
    port = kernelstate.pick_port()
    cfg_a = lane.pod_config("pod-a", host_port=port, dns=DNS, bandwidth=(INGRESS, EGRESS), labels={"app": "cnipy-a"})
    try:
        a = lane.run_pod(cfg_a)
        b = lane.run_pod(lane.pod_config("pod-b", labels={"app": "cnipy-b"}))
    except CriError as e:
        raise _failure(e) from None
    return {"a": a, "b": b}


@check("M60-cri-version", SECTION, "D", "CRI Version (kubelet's first call)")
def test_version(lane, measure):
    measure("cri plugin set", ", ".join(f"{t}: {b}" for t, b in lane.plugins.items()))
    v = lane.cri.version()
    measure("cri runtime", f"{v['runtimeName']} {v['runtimeVersion']} (CRI {v['runtimeApiVersion']})")
    assert v["runtimeApiVersion"] == "v1" and v["runtimeName"] == "containerd", v


@check("M61-cri-status-ready", SECTION, "D", "CRI Status: RuntimeReady, NetworkReady (the conflist loads)")
def test_status_ready(lane):
    conds = lane.wait_ready()
    for t in ("RuntimeReady", "NetworkReady"):
        assert conds.get(t, {}).get("status") is True, f"{t} not true: {conds.get(t)}"


@check("M62-cri-run-pod-sandbox", SECTION, "M", REF)
def test_run_pod_sandbox(lane, pods):
    """RunPodSandbox (ADD of cni-loopback and of the chain) succeeded; the sandbox is ready and
    carries what kubelet sent."""
    a = pods["a"]
    assert a.status["state"] == "SANDBOX_READY", a.status
    assert a.status["labels"].get("app") == "cnipy-a", a.status["labels"]
    assert a.status["annotations"].get("kubernetes.io/ingress-bandwidth") == INGRESS, a.status["annotations"]


@check("M63-cri-pod-ip", SECTION, "M", "PodSandboxStatus network.ip (the chain's result, attributed to eth0)")
def test_pod_ip_in_range(lane, pods):
    ips = [p.ip for p in pods.values()]
    assert all(in_subnet(ip, lane.subnet) for ip in ips), f"pod IPs {ips} not hosts of {lane.subnet} (gateway excluded)"
    assert len(set(ips)) == len(ips), ips
    held = lane.lease_files()
    assert set(ips) <= set(held), f"host-local's leases {held} lack {ips}"


@check("M64-cri-node-to-pod", SECTION, "M", "bridge isGateway: the node reaches its pods")
def test_node_reaches_pod(lane, pods):
    a = pods["a"]
    assert lane.get(f"http://{a.ip}:{POD_PORT}/") == "pod-a\n"


@check("M65-cri-hostport-localhost", SECTION, "D", "portmap snat: hostPort on 127.0.0.1 (route_localnet)")
def test_hostport_localhost(lane, pods):
    a = pods["a"]
    assert lane.get(f"http://127.0.0.1:{a.host_port}/") == "pod-a\n"


@check("M66-cri-hostport-node-address", SECTION, "M", "portmap: hostPort on the node's address, from the node and from outside")
def test_hostport_node_address(lane, pods):
    a = pods["a"]
    url = f"http://{lane.node.address}:{a.host_port}/"
    assert lane.get(url) == "pod-a\n"
    assert lane.get(url, where="outside") == "pod-a\n"


@check("M67-cri-pod-to-pod", SECTION, "M", "bridge: pods of one node reach each other")
def test_pod_to_pod(lane, pods):
    a, b = pods["a"], pods["b"]
    assert lane.get(f"http://{a.ip}:{POD_PORT}/", pod=b) == "pod-a\n"
    assert lane.get(f"http://{b.ip}:{POD_PORT}/", pod=a) == "pod-b\n"


@check("M68-cri-dns-config", SECTION, "D", "CRI DNSConfig -> the pod's /etc/resolv.conf")
def test_dns_config(lane, pods):
    with open(f"/proc/{pods['a'].pid}/root/etc/resolv.conf") as f:
        lines = [l.split() for l in f.read().splitlines() if l.strip()]
    assert [l[1] for l in lines if l[0] == "nameserver"] == DNS["servers"], lines
    assert [l[1:] for l in lines if l[0] == "search"] == [DNS["searches"]], lines
    assert [l[1:] for l in lines if l[0] == "options"] == [DNS["options"]], lines


@check("M69-cri-bandwidth", SECTION, "D", "bandwidth capability from the kubernetes.io/*-bandwidth annotations")
def test_bandwidth(lane, pods):
    """Ingress: a tbf on the host veth at the ingress rate; egress: the host veth's ingress
    redirected to an ifb device shaped at the egress rate."""
    a, b = pods["a"], pods["b"]
    ns = lane.node.name
    qd = kernelstate.tc_json(["qdisc", "show", "dev", a.host_veth], ns=ns)
    tbf = [q for q in qd if q.get("kind") == "tbf"]
    assert tbf and tbf[0]["options"]["rate"] * 8 == INGRESS_BPS, f"no tbf at {INGRESS_BPS} bit/s on {a.host_veth}: {qd}"
    assert any(q.get("kind") == "ingress" for q in qd), f"no ingress qdisc on {a.host_veth}: {qd}"
    ifbs = [l["ifname"] for l in lane.node_links() if l.get("linkinfo", {}).get("info_kind") == "ifb"]
    rates = {i: [q["options"]["rate"] * 8 for q in kernelstate.tc_json(["qdisc", "show", "dev", i], ns=ns)
                 if q.get("kind") == "tbf"] for i in ifbs}
    assert [i for i, r in rates.items() if r == [EGRESS_BPS]], f"no ifb shaped at {EGRESS_BPS} bit/s: {rates}"
    qb = kernelstate.tc_json(["qdisc", "show", "dev", b.host_veth], ns=ns)
    assert not [q for q in qb if q.get("kind") in ("tbf", "ingress")], f"pod B (no annotations) is shaped: {qb}"


@check("M74-cri-bandwidth-shapes-traffic", SECTION, "D",
       "bandwidth annotations: TCP into and out of the pod runs at the annotated rates; a pod without them does not")
def test_bandwidth_measured(lane, pods, measure):
    """Pod A's annotated rates, measured: one TCP transfer per direction between the node's
    namespace and the pod's (into the pod: node -> pod IP; out of it: pod -> the node's
    bridge address), each within +-20% of its annotation; pod B, without annotations, over
    10x faster both ways. containerd's burst is 2^32-1 bits (512 MiB), which the pod first
    gets at line rate: the receiver counts once the transfer has slowed below twice the
    annotated rate (the bucket has run dry), skips one more second, then counts three."""
    a, b = pods["a"], pods["b"]
    measured = {}
    for direction, rate in (("ingress", INGRESS_BPS), ("egress", EGRESS_BPS)):
        measured[direction] = _shaped(lane, a, direction, rate)
        measure(f"cri bandwidth {direction} of pod A ({rate / 1e6:g} Mbit/s annotated)",
                round(measured[direction]["bps"] / 1e6, 2), "Mbit/s")
    unshaped = {}
    for direction in ("ingress", "egress"):
        unshaped[direction] = lane.throughput(b, direction, seconds=10, skip=0.5, window=1.5)["bps"]
        measure(f"cri bandwidth {direction} of pod B (no annotations)", round(unshaped[direction] / 1e6, 1), "Mbit/s")
    for direction, rate in (("ingress", INGRESS_BPS), ("egress", EGRESS_BPS)):
        got = measured[direction]
        assert got["bps"] and abs(got["bps"] - rate) <= SHAPED_TOLERANCE * rate, (
            f"{direction} of pod A: {got['bps'] / 1e6:.2f} Mbit/s measured against {rate / 1e6:g} Mbit/s annotated "
            f"(+-{SHAPED_TOLERANCE:.0%}; 0 = it never slowed below {2 * rate / 1e6:g} Mbit/s): {got}")
        assert unshaped[direction] >= UNSHAPED_FACTOR * rate, (
            f"{direction} of pod B (no annotations): {unshaped[direction] / 1e6:.1f} Mbit/s, not {UNSHAPED_FACTOR}x "
            f"pod A's annotated {rate / 1e6:g} Mbit/s")


def _shaped(lane: CriLane, pod: Pod, direction: str, rate: int) -> dict:
    """The pod's shaped throughput in ``direction``, retried once: on a loaded 2-core VM a
    starved sender or receiver reads low; a real shaping fault fails both tries (the second
    starts with the bucket already dry)."""
    got = {}
    for _ in range(2):
        got = lane.throughput(pod, direction, seconds=45, skip=1, window=3, drained_below=2 * rate)
        if got["bps"] and abs(got["bps"] - rate) <= SHAPED_TOLERANCE * rate:
            break
    return got


@check("M70-cri-stop-remove-clean", SECTION, "M", "StopPodSandbox + RemovePodSandbox (DEL twice) leave nothing")
def test_stop_remove(lane, pods):
    for p in pods.values():
        try:
            lane.remove_pod(p)
        except CriError as e:
            raise _failure(e) from None
    for p in pods.values():
        assert wait_gone(lambda: lane.leftovers(p)) == [], f"{p.name} left: {lane.leftovers(p)}"
    assert wait_gone(lane.node_leftovers) == [], f"the node holds: {lane.node_leftovers()}"


def _ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(kernelstate.pick_port())
    return sorted(ports)


@check("M71-cri-sequential-pods", SECTION, "M", "10 pods one after another: each made, reached, removed without a trace")
def test_sequential_pods(lane, measure):
    lane.wait_ready()
    times: dict[str, list[float]] = {"RunPodSandbox": [], "StopPodSandbox": [], "RemovePodSandbox": []}
    for i, port in enumerate(_ports(RUNS)):
        cfg = lane.pod_config(f"seq-{i}", host_port=port)
        try:
            pod = lane.run_pod(cfg)
            assert in_subnet(pod.ip, lane.subnet), pod.ip
            assert lane.get(f"http://{pod.ip}:{POD_PORT}/") == f"seq-{i}\n"
            assert lane.get(f"http://127.0.0.1:{port}/") == f"seq-{i}\n"
            t2 = time.perf_counter()
            lane.cri.stop_pod_sandbox(pod.id)
            t3 = time.perf_counter()
            lane.cri.remove_pod_sandbox(pod.id)
            t4 = time.perf_counter()
            lane.pods.pop(pod.id, None)
        except CriError as e:
            raise _failure(e) from None
        # RunPodSandbox's time without the verbose status the lane asks for after it.
        times["RunPodSandbox"].append(lane.cri.timings["RunPodSandbox"][-1])
        times["StopPodSandbox"].append(t3 - t2)
        times["RemovePodSandbox"].append(t4 - t3)
        left = wait_gone(lambda: lane.leftovers(pod))
        assert left == [], f"pod {i} left: {left}"
    for call, ts in times.items():
        measure(f"cri {call} median ({RUNS} sequential pods)", round(statistics.median(ts) * 1000, 1), "ms")
    assert wait_gone(lane.node_leftovers) == [], f"the node holds: {lane.node_leftovers()}"


@check("M72-cri-parallel-pods", SECTION, "M", "10 pods at once: distinct addresses, each reached, all removed without a trace")
def test_parallel_pods(lane, measure):
    lane.wait_ready()
    ports = _ports(RUNS)
    cfgs = [lane.pod_config(f"par-{i}", host_port=ports[i]) for i in range(RUNS)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(RUNS) as ex:
        futures = [ex.submit(lane.run_pod, c) for c in cfgs]
    wall = time.perf_counter() - t0
    errors = [f.exception() for f in futures if f.exception()]
    if errors:
        pytest.fail(f"{len(errors)} of {RUNS} RunPodSandbox failed; first: {errors[0]}", pytrace=False)
    measure(f"cri {RUNS} parallel RunPodSandbox wall time", round(wall * 1000, 1), "ms")
    made = [f.result() for f in futures]
    ips = [p.ip for p in made]
    assert len(set(ips)) == RUNS and all(in_subnet(ip, lane.subnet) for ip in ips), ips
    for i, p in enumerate(made):
        assert lane.get(f"http://{p.ip}:{POD_PORT}/") == f"par-{i}\n"
        assert lane.get(f"http://{lane.node.address}:{p.host_port}/", where="outside") == f"par-{i}\n"
    t0 = time.perf_counter()
    with ThreadPoolExecutor(RUNS) as ex:
        errors = [e for e in ex.map(_remove_quietly, [lane] * RUNS, made) if e]
    wall = time.perf_counter() - t0
    if errors:
        pytest.fail(f"{len(errors)} of {RUNS} Stop/RemovePodSandbox failed; first: {errors[0]}", pytrace=False)
    measure(f"cri {RUNS} parallel Stop+RemovePodSandbox wall time", round(wall * 1000, 1), "ms")
    for p in made:
        assert wait_gone(lambda: lane.leftovers(p)) == [], f"{p.name} left: {lane.leftovers(p)}"
    assert wait_gone(lane.node_leftovers) == [], f"the node holds: {lane.node_leftovers()}"


def _remove_quietly(lane: CriLane, pod: Pod) -> str:
    try:
        lane.remove_pod(pod)
    except CriError as e:
        return str(e)
    return ""


@check("M73-cri-teardown-clean", SECTION, "M", "the lane leaves no process, mount, cgroup, namespace or file")
def test_teardown(lane):
    """Last: every pod removed, containerd stopped, the node deleted; nothing is left."""
    left = lane.close()
    assert left == [], f"left on the machine: {left}"
    assert not os.path.exists(lane.root)
