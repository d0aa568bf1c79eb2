"""Config keys in any case, as Go's encoding/json reads them (cnilib.gokeys), for every
plugin: the exact payloads containerd's CRI sends (capability arguments in Go field case:
``HostPort``, ``IngressRate``, ``Servers``...), and whole configs re-cased, each compared
with the lower-case config on what the kernel then holds.

Each variant runs in its own throwaway host namespace (and data dir), so both runs start
from the same state and their outcomes can be compared as they are.
"""

from __future__ import annotations

import os
import re

import pytest

from conformance.recase import VARIANTS as RECASINGS
from conformance.recase import recase  # the harness's own rules: Go maps' keys keep their case
from tests.helpers import OUR_BIN, Netns, ip_json, run_plugin, sh
from tests.test_bridge_common import Host
from tests.test_host_local_common import hl, leases, make_conf

# containerd 1.6.20's CRI (go-cni), as recorded at the plugin: every capability argument
# it passes, when the plugin's conflist entry declares them all.
CRI_RUNTIME_CONFIG = {
    "portMappings": [{"HostPort": 18080, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}],
    "bandwidth": {"IngressRate": 10000000, "IngressBurst": 4294967295,
                  "EgressRate": 10000000, "EgressBurst": 4294967295},
    "dns": {"Servers": ["10.96.0.10"], "Searches": ["default.svc.cluster.local"], "Options": ["ndots:5"]},
    "cgroupPath": "/kubepods/besteffort/pod1234",
    "io.kubernetes.cri.pod-annotations": {"kubernetes.io/ingress-bandwidth": "10M", "Some-Key": "v"},
}
CRI_CAPABILITIES = {"portMappings": True, "bandwidth": True, "dns": True, "cgroupPath": True,
                    "io.kubernetes.cri.pod-annotations": True}
CRI_ARGS = ("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
            "K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
VARIANTS = list(RECASINGS)


# ---------------------------------------------------------------- portmap

PORTMAP = os.path.join(OUR_BIN, "portmap")


def _prev(ifname: str = "eth0") -> dict:
    return {"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "02:00:00:00:00:01"},
                           {"name": "veth1", "mac": "02:00:00:00:00:02"},
                           {"name": ifname, "mac": "02:00:00:00:00:03", "sandbox": "/var/run/netns/x"}],
            "ips": [{"address": "10.88.0.5/24", "gateway": "10.88.0.1", "interface": 2}], "dns": {}}


def _pm(host: Netns, verb: str, conf: dict, *, netns: str = "/var/run/netns/x", args: str = ""):
    return run_plugin(PORTMAP, verb, conf, containerid="cri1", netns=netns, ifname="eth0",
                      args=args, path=OUR_BIN, in_netns=host.name)


def _hostport_state(host: Netns) -> str:
    """Our host-port state in the host namespace, both tools (no timestamps)."""
    text = sh("nft", "list", "ruleset", ns=host.name, check=False)
    for tool in ("iptables-save", "ip6tables-save"):
        text += sh(tool, "-t", "nat", ns=host.name, check=False)
    return "\n".join(l for l in text.splitlines() if not l.startswith("#"))


def _portmap_run(conf: dict, *, second_del: bool = True) -> tuple[object, str, str]:
    """ADD, the state it made, CHECK; then containerd's two DELs (the first with the
    cached prevResult, the second with CNI_NETNS empty and no prevResult); returns
    (ADD output, state after ADD, state after the DELs)."""
    host = Netns("kcpm")
    try:
        add = _pm(host, "ADD", dict(conf, prevResult=_prev()), args=CRI_ARGS.format(cid="cri1"))
        assert add.ok, add
        made = _hostport_state(host)
        check = _pm(host, "CHECK", dict(conf, prevResult=_prev()))
        assert check.ok, check
        d1 = _pm(host, "DEL", dict(conf, prevResult=_prev()), args=CRI_ARGS.format(cid="cri1"))
        assert d1.ok and d1.stdout == b"", d1
        if second_del:
            d2 = _pm(host, "DEL", {k: v for k, v in conf.items() if k != "runtimeConfig"}, netns="",
                     args=CRI_ARGS.format(cid="cri1"))
            assert d2.ok and d2.stdout == b"", d2
        return add.doc, made, _hostport_state(host)
    finally:
        host.delete()


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_portmap_takes_containerds_hostport_payload(backend):
    """The payload that broke RunPodSandbox for hostPort pods: the mapping is installed
    exactly as from lower-case keys, and both DELs leave what was there before."""
    base = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "portmap", "backend": backend,
            "capabilities": CRI_CAPABILITIES}
    cri = dict(base, runtimeConfig=CRI_RUNTIME_CONFIG)
    lower = dict(base, runtimeConfig={"portMappings": [
        {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp", "hostIP": ""}]})
    doc, made, after = _portmap_run(cri)
    assert doc == _prev()
    assert "18080" in made and "10.88.0.5" in made and "8080" in made, made
    assert "10.88.0.5" not in after and "18080" not in after, after
    assert _portmap_run(lower) == (doc, made, after)


@pytest.mark.parametrize("variant", VARIANTS)
def test_portmap_whole_config_recased(variant):
    conf = {"cniVersion": "1.0.0", "name": "pmnet", "type": "portmap", "backend": "nftables", "snat": True,
            "markMasqBit": 14, "conditionsV4": ["ip saddr != 192.0.2.0/24"],
            "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": [{"hostPort": 18081, "containerPort": 81, "protocol": "udp",
                                                "hostIP": "0.0.0.0"}]}}
    want = _portmap_run(conf, second_del=False)
    assert "18081" in want[1] and "0x00004000" in want[1] and "192.0.2.0/24" in want[1], want[1]
    re_cased = recase(conf, variant)
    assert _portmap_run(re_cased, second_del=False) == want


# ---------------------------------------------------------------- bridge (+ host-local)

_MAC = re.compile(r"\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b")
_VETH = re.compile(r"\bveth[0-9a-f]{8}\b")


def _norm(text: str) -> str:
    return _VETH.sub("VETH", _MAC.sub("MAC", text))


def _bridge_run(tmp_path, conf_of) -> dict:
    """ADD in a fresh host namespace, everything it made (normalised for random MACs and
    veth names), CHECK, DEL; returns what was seen."""
    h = Host(tmp_path)
    try:
        c = h.container()
        conf = conf_of(h)
        res = h.add(conf, c, args=CRI_ARGS.format(cid="c1"))
        seen = {
            "result": _norm(str(dict(res, interfaces=[dict(i, sandbox="NS") if "sandbox" in i else i
                                                   for i in res["interfaces"]]))),
            "links": _norm(str(sorted((l["ifname"], l.get("mtu"), l.get("master"), l.get("ifalias"))
                                      for l in h.links()))),
            "hairpin": [p.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin") for p in h.ports()],
            "host addrs": sorted(f"{a['local']}/{a['prefixlen']}" for l in ip_json("addr", "show", ns=h.name)
                                 for a in l.get("addr_info", []) if a.get("scope") != "link"),
            "ctr addrs": sorted(f"{a['local']}/{a['prefixlen']}" for l in ip_json("addr", "show", "dev", "eth0",
                                                                                    ns=c.name)
                                for a in l.get("addr_info", []) if a.get("scope") != "link"),
            "ctr routes": sorted(str(r) for r in ip_json("route", "show", ns=c.name)),
            "leases": h.leases(),
            "nft": _norm(h.ruleset()),
        }
        chk = h.check(conf, res, c)
        assert chk.ok, chk
        seen["check"] = chk.ok
        h.delete(conf, c)
        # containerd's second DEL: no namespace, no prevResult.
        h.delete(conf, None, netns="")
        seen["after del"] = (sorted(l["ifname"] for l in h.links()), h.leases())
        return seen
    finally:
        h.close()


BRIDGE_KEYS = dict(isGateway=True, isDefaultGateway=True, ipMasq=True, ipMasqBackend="nftables", mtu=1400,
                   hairpinMode=True, dns={"nameservers": ["10.99.0.53"], "search": ["svc.local"]})


@pytest.mark.parametrize("variant", VARIANTS)
def test_bridge_and_host_local_config_recased(tmp_path, variant):
    """Every key of the bridge and its host-local ipam, re-cased: the same result, links,
    addresses, routes, leases and masquerade rules as with the canonical keys."""
    def conf(h: Host) -> dict:
        ipam = h.ipam(routes=[{"dst": "10.200.0.0/16", "gw": "10.99.0.254"}])
        ipam["ranges"][0][0].update(rangeStart="10.99.0.10", rangeEnd="10.99.0.20")
        return h.conf("1.0.0", ipam=ipam, **BRIDGE_KEYS)

    want = _bridge_run(tmp_path / "a", conf)
    assert want["leases"] == ["10.99.0.10"] and "10.99.0.10/24" in want["ctr addrs"], want
    assert "10.99.0.10" in want["nft"] and "1400" in want["links"] and want["hairpin"] == [True], want
    assert "10.99.0.53" in want["result"] and "10.200.0.0/16" in want["result"], want
    got = _bridge_run(tmp_path / "b", lambda h: recase(conf(h), variant))
    assert got == want


# ---------------------------------------------------------------- host-local alone

@pytest.mark.parametrize("variant", VARIANTS)
def test_host_local_requests_recased(our_bin, tmp_path, variant):
    """runtimeConfig.ips / ipRanges (capabilities ips, ipRanges), args.cni.ips, routes and
    dataDir in any case."""
    def conf(data) -> dict:
        return make_conf(data, {"ranges": [[{"subnet": "10.9.0.0/24", "gateway": "10.9.0.254"}]],
                                "routes": [{"dst": "0.0.0.0/0", "priority": 7}]},
                         runtimeConfig={"ipRanges": [[{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.40"}]],
                                        "ips": ["10.10.0.50"]},
                         args={"cni": {"ips": ["10.9.0.77/24"]}})

    results = []
    for data, c in ((tmp_path / "a", conf(tmp_path / "a")),
                    (tmp_path / "b", recase(conf(tmp_path / "b"), variant))):
        out = hl(our_bin, "ADD", c)
        assert out.ok, out
        results.append((out.doc, sorted(leases(data))))
        assert hl(our_bin, "DEL", c).ok and leases(data) == {}
    assert results[0] == results[1]
    assert results[0][1] == ["10.10.0.50", "10.9.0.77"], results[0]


# ---------------------------------------------------------------- loopback

@pytest.mark.parametrize("variant", ["as sent"] + VARIANTS)
def test_loopback_as_containerd_calls_it(our_bin, netns, variant):
    """containerd calls loopback itself: 0.3.1, name cni-loopback, CNI_IFNAME lo, the
    K8S_POD_* CNI_ARGS in whatever order."""
    conf = {"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}
    if variant != "as sent":
        conf = recase(conf, variant)
    args = ("K8S_POD_UID=u;IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=c9;K8S_POD_NAME=p;"
            "K8S_POD_NAMESPACE=default")
    lo = os.path.join(our_bin, "loopback")
    out = run_plugin(lo, "ADD", conf, containerid="c9", netns=netns.path, ifname="lo", args=args)
    assert out.ok, out
    assert out.doc["cniVersion"] == "0.3.1" and out.doc["interfaces"][0]["name"] == "lo"
    assert "UP" in ip_json("link", "show", "lo", ns=netns.name)[0]["flags"]
    for nspath in (netns.path, ""):  # containerd's two DELs
        d = run_plugin(lo, "DEL", conf, containerid="c9", netns=nspath, ifname="lo", args=args)
        assert d.ok and d.stdout == b"", d
    assert "UP" not in ip_json("link", "show", "lo", ns=netns.name)[0]["flags"]
