"""The CRI lane: a plugin set under containerd's CRI plugin, driven as kubelet drives it.

``CriLane`` makes a node (``node.Node``), stages the plugins under test (bandwidth from the
reference directory when the set has none), builds and imports the sandbox ("pause") image,
writes the node's conflist, starts a private containerd with its CRI plugin in the node's
namespace and connects a ``CriClient``. It runs pods (``run_pod``: RunPodSandbox and
PodSandboxStatus) and tells what the node still holds of a pod (``leftovers``). Its checks
are in ``conformance/lanes/test_cri.py`` (``python -m conformance --runtime cri``).

The conflist is what a small cluster's node would have: bridge (gateway, masquerade) with
host-local (a /24 no route of the machine overlaps, default lease store) -> portmap
(capability ``portMappings``) -> bandwidth (capability ``bandwidth``). containerd adds
loopback itself (network ``cni-loopback``, CNI 0.3.1), so the set must have it too.

The pod's sandbox image is its server: busybox httpd on ``POD_PORT`` answering with the
pod's host name (``image.hostname_server``), so RunPodSandbox alone yields a pod to reach.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field

from conformance import runs
from conformance.runtimes import image, kernelstate
from conformance.runtimes.commands import cleanup, ip_json, kill_pid, retry, run, short_id, tool
from conformance.runtimes.containerd import Containerd, CriSettings
from conformance.runtimes.cri_client import CriClient, CriError
from conformance.runtimes.mounts import cgroup_dirs, remove_cgroups, remove_tree
from conformance.runtimes.node import UPLINK, Node
from conformance.throughput import transfer

LANE_TYPES = ("bridge", "host-local", "portmap", "bandwidth", "loopback")
BORROWED = ("bandwidth",)  # taken from the reference directory when the set under test lacks it
POD_PORT = 80
CONF_VERSION = "1.0.0"
NEEDED_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "unshare", "tc")


def missing_tools() -> list[str]:
    """The commands the lane needs that this machine lacks."""
    return [t for t in NEEDED_TOOLS if not tool(t)]


def lane_plugins(cni_path: str, reference: str | None) -> dict[str, str]:
    """``{type: binary}`` for the lane: each of ``LANE_TYPES`` from ``cni_path``, the
    ``BORROWED`` ones from ``reference`` when ``cni_path`` has none (or an AssertionError
    naming what is missing)."""
    out, missing = {}, []
    for t in LANE_TYPES:
        mine = os.path.join(cni_path, t)
        theirs = os.path.join(reference, t) if reference else ""
        if os.access(mine, os.X_OK):
            out[t] = mine
        elif t in BORROWED and theirs and os.access(theirs, os.X_OK):
            out[t] = theirs
        else:
            missing.append(t)
    if missing:
        raise AssertionError(f"the CRI lane needs plugin(s) {', '.join(missing)} in {cni_path}"
                             + (f" (or, for {'/'.join(BORROWED)}, in {reference})" if reference else ""))
    return out


@dataclass
class Pod:
    """A pod as the lane knows it: CRI's sandbox ID and IP, the sandbox's process (its
    network namespace is the pod's), and the host end of its veth in the node namespace."""

    name: str
    id: str
    ip: str
    pid: int
    netns: str  # CRI's path for it, in containerd's mount namespace
    host_veth: str
    host_port: int | None = None
    status: dict = field(default_factory=dict)


class CriLane:
    """A node running a private containerd (CRI) over the plugins of ``cni_path``."""

    def __init__(self, cni_path: str, reference: str | None = "/usr/lib/cni") -> None:
        cni_path = os.path.abspath(cni_path)
        self.plugins = lane_plugins(cni_path, reference)
        self.root = runs.mkdtemp(prefix="cnipy-cri-")
        self.subnet = kernelstate.pick_subnet()
        self.gateway = str(self.subnet[1])
        self.network = f"cnipy-cri-{short_id()}"
        self.bridge = f"cnicri{short_id()[:6]}"
        self.cgroup_parent = f"cnipy-cri-{short_id()}"
        self.image = f"localhost/cnipy-pause:{short_id()}"
        self.node: Node | None = None
        self.cd: Containerd | None = None
        self.cri: CriClient | None = None
        self.pods: dict[str, Pod] = {}
        self.closed = False
        try:
            self.node = Node(kernelstate.pick_subnet(avoid=(self.subnet,)))
            # Borrowed plugins are copied: the reference's directory is hidden in containerd's
            # mount namespace, and the copies are added to the set's own directory there.
            borrowed = os.path.join(self.root, "borrowed")
            os.makedirs(borrowed)
            for t, binary in self.plugins.items():
                if os.path.dirname(binary) != os.path.abspath(cni_path):
                    shutil.copy2(binary, os.path.join(borrowed, t))
            archive = os.path.join(self.root, "pause.tar")
            image.oci_archive(archive, self.image, image.hostname_server(POD_PORT), self.root)
            self.cd = Containerd(os.path.join(self.root, "containerd"), cni_path, self.node.name,
                                 cri=CriSettings(self.image), extra_bin=borrowed if os.listdir(borrowed) else None)
            self.cd.cgroup_names.append(self.cgroup_parent)
            with open(os.path.join(self.cd.net_dir, "10-cnipy-cri.conflist"), "w") as f:
                json.dump(self.conflist(), f)
            self.cd.ctr("images", "import", "--snapshotter", "native", archive)
            self.cri = CriClient(self.cd.sock)
        except BaseException:
            self.close()
            raise

    # -------------------------------------------------------------- configuration

    def conflist(self) -> dict:
        """The node's network: bridge + host-local -> portmap -> bandwidth."""
        return {"cniVersion": CONF_VERSION, "name": self.network, "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": str(self.subnet)}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        ]}

    def pod_config(self, name: str, *, host_port: int | None = None, dns: dict | None = None,
                   bandwidth: tuple[str, str] | None = None, labels: dict | None = None) -> dict:
        """A PodSandboxConfig as kubelet sends it (CRI JSON form): metadata, host name = pod
        name, labels, DNS config, a hostPort for ``POD_PORT``, bandwidth annotations
        (ingress, egress quantities), the lane's cgroup parent."""
        uid = f"uid-{short_id()}"
        cfg: dict = {
            "metadata": {"name": name, "uid": uid, "namespace": "cnipy", "attempt": 0},
            "hostname": name,
            "labels": {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "cnipy",
                       "io.kubernetes.pod.uid": uid, **(labels or {})},
            "annotations": {},
            "linux": {"cgroupParent": f"/{self.cgroup_parent}"},
        }
        if dns:
            cfg["dnsConfig"] = dns
        if host_port:
            cfg["portMappings"] = [{"protocol": "TCP", "containerPort": POD_PORT, "hostPort": host_port}]
        if bandwidth:
            cfg["annotations"].update({"kubernetes.io/ingress-bandwidth": bandwidth[0],
                                       "kubernetes.io/egress-bandwidth": bandwidth[1]})
        return cfg

    # -------------------------------------------------------------- pods

    def wait_ready(self, deadline: float = 15) -> dict[str, dict]:
        """Status's conditions once RuntimeReady and NetworkReady hold (or at ``deadline``):
        the CRI plugin loads the conflist asynchronously after start."""
        end = time.monotonic() + deadline
        while True:
            conds = self.cri.conditions()
            if all(conds.get(t, {}).get("status") for t in ("RuntimeReady", "NetworkReady")) or time.monotonic() > end:
                return conds
            time.sleep(0.1)

    def run_pod(self, config: dict) -> Pod:
        """RunPodSandbox, then PodSandboxStatus (verbose): the pod, tracked until removed."""
        sid = self.cri.run_pod_sandbox(config)
        name = config["metadata"]["name"]
        # Tracked before anything else can fail, so close() stops and removes it.
        self.pods[sid] = Pod(name, sid, "", 0, "", "")
        st = self.cri.pod_sandbox_status(sid, verbose=True)
        info = json.loads(st["info"]["info"])
        netns = next((n.get("path", "") for n in info["runtimeSpec"]["linux"]["namespaces"]
                      if n["type"] == "network"), "")
        ports = config.get("portMappings") or [{}]
        pod = Pod(name, sid, st["status"]["network"]["ip"], int(info["pid"]), netns,
                  self.host_veth(int(info["pid"])), ports[0].get("hostPort"), st["status"])
        self.pods[sid] = pod
        return pod

    def remove_pod(self, pod: Pod) -> None:
        """StopPodSandbox then RemovePodSandbox (each CNI DEL: containerd runs one per call)."""
        self.cri.stop_pod_sandbox(pod.id)
        self.cri.remove_pod_sandbox(pod.id)
        self.pods.pop(pod.id, None)

    def host_veth(self, pid: int) -> str:
        """The node-side veth of the pod whose sandbox process is ``pid`` (the kernel's
        answer: the peer index of the pod's eth0)."""
        inside = json.loads(run(["nsenter", "-t", str(pid), "-n", "--", "ip", "-j", "link", "show", "eth0"]).stdout)
        peer = inside[0].get("link_index")
        for link in ip_json("link", "show", ns=self.node.name):
            if link["ifindex"] == peer:
                return link["ifname"]
        raise AssertionError(f"no link of the node namespace is the peer of the pod's eth0: {inside}")

    def throughput(self, pod: Pod, direction: str, *, seconds: float, skip: float, window: float,
                   drained_below: float = 0.0) -> dict:
        """One TCP transfer between the node's namespace and ``pod``'s, measured by the
        receiver (``conformance.throughput``): ``ingress`` from the node to the pod's IP,
        ``egress`` from the pod to the node's address on the bridge (the gateway). The
        sender stops after ``seconds`` at most; the receiver counts ``window`` seconds from
        ``skip`` seconds after the first byte, or after the transfer first slowed below
        ``drained_below`` bits/s (the token bucket's burst has run dry)."""
        node = ["ip", "netns", "exec", self.node.name]
        inside = ["nsenter", "-t", str(pod.pid), "-n", "--"]
        taken = {p.host_port for p in self.pods.values()}  # a hostPort would DNAT the transfer
        port = kernelstate.pick_port()
        while port in taken:
            port = kernelstate.pick_port()
        recv_side, send_side, dst = (inside, node, pod.ip) if direction == "ingress" else (node, inside, self.gateway)
        return transfer(recv_side, send_side, dst, port, seconds=seconds, skip=skip, window=window,
                        drained_below=drained_below)

    def get(self, url: str, *, where: str = "node", pod: Pod | None = None) -> str:
        """HTTP GET from the node namespace, its outside, or a pod's network namespace."""
        if pod is not None:
            return kernelstate.http_get(url, pid=pod.pid)
        return kernelstate.http_get(url, netns=self.node.name if where == "node" else self.node.outside)

    # -------------------------------------------------------------- what is held

    def private_path(self, path: str) -> str:
        """``path`` as containerd's mount namespace sees it (through its /proc root)."""
        return f"/proc/{self.cd.ns.proc.pid}/root{path}"

    def lease_files(self) -> list[str]:
        """host-local's lease files for the lane's network (default store, private)."""
        d = self.private_path(f"/var/lib/cni/networks/{self.network}")
        return sorted(f for f in os.listdir(d) if f != "lock" and not f.startswith("last_reserved_ip")) \
            if os.path.isdir(d) else []

    def cache_files(self) -> list[str]:
        """libcni's cache (results of this node's attachments: the network and cni-loopback)."""
        d = self.private_path("/var/lib/cni/results")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def node_links(self) -> list[dict]:
        """The node namespace's links (with details)."""
        return ip_json("-d", "link", "show", ns=self.node.name)

    def firewall(self, needles: list[str], ip: str | None = None, port: int | None = None) -> list[str]:
        """nftables/iptables lines of the node naming a needle, ``ip`` (as an address, not a
        prefix of another) or TCP port ``port``."""
        lines = kernelstate.firewall_mentions(needles, port, ns=self.node.name)
        if ip:
            exact = re.compile(rf"(?<![\d.]){re.escape(ip)}(?![\d])")
            lines += [l for l in kernelstate.firewall_lines([ip], ns=self.node.name)
                      if exact.search(l) and l not in lines]
        return lines

    def leftovers(self, pod: Pod) -> list[str]:
        """What the node still holds of removed pod ``pod``: its veth, lease, firewall lines,
        libcni cache entries, network namespace, process."""
        out = []
        if any(l["ifname"] == pod.host_veth for l in self.node_links()):
            out.append(f"veth {pod.host_veth}")
        if pod.ip in self.lease_files():
            out.append(f"lease {pod.ip}")
        out += [f"firewall: {l}" for l in self.firewall([pod.id], pod.ip, pod.host_port)]
        out += [f"libcni cache: {f}" for f in self.cache_files() if pod.id in f]
        if pod.netns and os.path.exists(self.private_path(pod.netns)):
            out.append(f"network namespace {pod.netns}")
        if pod.pid and os.path.exists(f"/proc/{pod.pid}"):
            out.append(f"sandbox process {pod.pid}")
        return out

    def node_leftovers(self) -> list[str]:
        """What the node holds of any pod once none is left: veths (but the uplink), ifb
        devices (bandwidth's), leases, cache entries, firewall lines naming the pod subnet."""
        out = [f"link {l['ifname']} ({l.get('linkinfo', {}).get('info_kind')})" for l in self.node_links()
               if l.get("linkinfo", {}).get("info_kind") in ("veth", "ifb") and l["ifname"] != UPLINK]
        out += [f"lease {f}" for f in self.lease_files()]
        out += [f"libcni cache: {f}" for f in self.cache_files()]
        prefix = str(self.subnet.network_address).rsplit(".", 1)[0] + "."
        out += [f"firewall: {l}" for l in self.firewall([prefix])]
        return out

    # -------------------------------------------------------------- teardown

    def remove_all_pods(self) -> None:
        """Stop and remove every sandbox containerd knows (a failed check's leftovers too)."""
        if self.cri is None or self.cd is None or self.cd.ns.proc.poll() is not None:
            return
        ids = set(self.pods)
        try:
            ids |= {p["id"] for p in self.cri.list_pod_sandbox()}
        except CriError:
            pass
        for sid in ids:
            for call in (self.cri.stop_pod_sandbox, self.cri.remove_pod_sandbox):
                try:
                    call(sid)
                except CriError:
                    pass
            self.pods.pop(sid, None)

    def close(self) -> list[str]:
        """Remove every pod, stop containerd, delete the node and the temp dir; returns what
        is still left afterwards (processes, namespaces, cgroups, mounts, files): nothing,
        unless teardown failed."""
        if self.closed:
            return []
        self.closed = True
        pids = [p.pid for p in self.pods.values() if p.pid]
        cleanup(self.remove_all_pods,
                lambda: self.cri and self.cri.close(),
                lambda: self.cd and self.cd.close(),
                lambda: [kill_pid(p) for p in pids],
                lambda: self.node and self.node.delete(),
                lambda: remove_cgroups(self.cgroup_parent),
                lambda: remove_tree(self.root))
        return self.teardown_leftovers(pids)

    def teardown_leftovers(self, pids: list[int]) -> list[str]:
        """After ``close``: anything of the lane still on the machine."""
        out = [f"process {p}" for p in pids if os.path.exists(f"/proc/{p}")]
        if self.cd is not None and hasattr(self.cd.ns, "mntns"):
            out += [f"process {p} ({_comm(p)}) in containerd's mount namespace" for p in self.cd.ns.members()]
        names = set(run(["ip", "netns", "list"]).stdout.decode().split())
        if self.node is not None:
            out += [f"network namespace {n}" for n in (self.node.name, self.node.outside) if n in names]
        out += [f"cgroup {d}" for d in cgroup_dirs(self.cgroup_parent)]
        with open("/proc/self/mountinfo") as f:
            out += [f"mount {l.split()[4]}" for l in f if l.split()[4].startswith(self.root)]
        if os.path.exists(self.root):
            out.append(f"directory {self.root}")
        return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return "?"


def in_subnet(ip: str, subnet: ipaddress.IPv4Network) -> bool:
    """``ip`` is a host address of ``subnet`` (not its network, broadcast or gateway .1)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return a in subnet and a not in (subnet.network_address, subnet.broadcast_address, subnet[1])


def wait_gone(fn, deadline: float = 5) -> list[str]:
    """``fn()`` (a leftovers list) until it is empty or ``deadline`` passes: the kernel
    removes a deleted namespace's veth peer asynchronously."""
    def empty() -> list[str]:
        left = fn()
        assert not left, left
        return left
    try:
        return retry(empty, deadline=deadline, interval=0.1)
    except AssertionError:
        return fn()
