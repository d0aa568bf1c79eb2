"""The firewall plugin (chained after bridge): its rules in the reference's iptables layout
(compared with what /usr/lib/cni/firewall makes for the same input) and in our nftables
table, real traffic under a forward policy DROP with the administrator's chain evaluated
first, ingressPolicy same-bridge/isolated between and within bridges, DEL without
prevResult, CHECK that reads only, GC, every spec version, IPv4 without ip6tables, and
hostile input. Every plugin runs as its own process inside a throwaway host namespace."""

from __future__ import annotations

import os

import pytest

from tests.firewall_common import (
    NET,
    OUT_ADDR,
    Host,
    ip_of,
    ping,
    prev_result,
    strip_tags,
    tag,
)
from tests.tuning_common import bin_dir

BACKENDS = ["iptables", "nftables"]
SUB_A, SUB_B = "10.91.1.0/24", "10.91.2.0/24"
BR_A, BR_B = "fwbra", "fwbrb"


@pytest.fixture
def host(tmp_path, request):
    d = bin_dir(request)
    if not os.path.exists(os.path.join(d, "firewall")):
        pytest.fail(f"no firewall plugin in {d}: run `make bin` or set CNIPY_TEST_BIN_DIR", pytrace=False)
    h = Host(tmp_path, d)
    try:
        yield h
    finally:
        h.close()


def _br_netfilter_on(host: Host) -> bool:
    try:
        return host.ns.run("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables").strip() == "1"
    except AssertionError:
        return False


# -- the layout --------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["", "same-bridge"])
def test_iptables_layout_is_the_references(tmp_path, request, policy):
    """Same input to the reference and to ours, each in its own host namespace: the same
    iptables and ip6tables rules, but for our owner tags."""
    keys = {"backend": "iptables"} | ({"ingressPolicy": policy} if policy else {})
    conf = Host.fw_conf(prev_result(["10.88.0.5/24", "fd00:88::5/64"], bridge="cni0"), **keys)
    outs = {}
    for who in ("ref", "ours"):
        h = Host(tmp_path / who, bin_dir(request))
        try:
            out = h.ref("ADD", conf, cid="abc") if who == "ref" else h.fw("ADD", conf, cid="abc")
            assert out.ok, (who, out)
            outs[who] = (h.iptables(4), h.iptables(6))
        finally:
            h.close()
    assert tag("abc") in outs["ours"][0] and tag("abc") in outs["ours"][1]
    assert tuple(strip_tags(t) for t in outs["ours"]) == outs["ref"]
    assert "-A CNI-FORWARD -s 10.88.0.5/32" in outs["ref"][0]
    if policy:
        assert "CNI-ISOLATION-STAGE-2" in outs["ref"][0]


def test_nftables_layout(host):
    conf = Host.fw_conf(prev_result(["10.88.0.5/24", "fd00:88::5/64"]), backend="nftables",
                        ingressPolicy="isolated")
    assert host.fw("ADD", conf, cid="abc").ok
    text = host.nft()
    for want in ("chain CNI-ADMIN", "jump CNI-ADMIN", "ip saddr @allow4 accept", "ip6 saddr @allow6 accept",
                 f'10.88.0.5 comment "{tag("abc")}"', f'fd00:88::5 comment "{tag("abc")}"',
                 '"cni0" . "cni0"', "iifname . oifname @isolated drop"):
        assert want in text, (want, text)
    assert "CNI-FORWARD" not in host.iptables_all()  # nothing in iptables
    assert host.fw("DEL", Host.fw_conf(None, backend="nftables"), cid="abc").ok
    assert tag("abc") not in host.nft()


def test_empty_backend_as_podman_writes_it_means_nftables(host):
    """podman's conflist: bridge -> portmap -> firewall {"backend": ""} -> tuning."""
    conf = Host.fw_conf(prev_result(["10.88.0.5/24"]), backend="")
    assert host.fw("ADD", conf).ok
    assert tag("c1") in host.nft() and tag("c1") not in host.iptables_all()
    assert host.fw("CHECK", conf).ok
    assert host.fw("DEL", conf).ok
    assert tag("c1") not in host.nft()


@pytest.mark.parametrize("why", ["drop-policy", "reference-rules"])
def test_automatic_backend_is_iptables_where_forwarding_is_decided_there(host, why):
    """Docker sets iptables' FORWARD policy to DROP; an nftables accept cannot override it,
    so automatic mode writes iptables rules there (and where the reference's CNI-FORWARD is
    already in use). The container then really gets out, which nftables rules could not do."""
    host.make_outside([SUB_A])
    if why == "drop-policy":
        host.ns.run("iptables", "-P", "FORWARD", "DROP")
    else:
        host.ns.run("iptables", "-N", "CNI-FORWARD")
        host.ns.run("iptables", "-A", "FORWARD", "-j", "CNI-FORWARD")
    ctr, res = host.attach(BR_A, SUB_A, "c1", backend="")
    assert tag("c1") in host.iptables_all() and tag("c1") not in host.nft()
    if why == "drop-policy":
        assert ping(ctr, OUT_ADDR), "automatic mode must open a DROP policy the way it can"
    assert host.fw("CHECK", Host.fw_conf(res, backend=""), ctr).ok
    host.detach(BR_A, SUB_A, "c1", ctr, backend="")
    assert tag("c1") not in host.iptables_all()


# -- traffic -----------------------------------------------------------------------------

def _drop_policy(host: Host, backend: str) -> None:
    if backend == "iptables":
        host.ns.run("iptables", "-P", "FORWARD", "DROP")
    else:  # in nftables an accept cannot override another table's drop: the policy goes on our chain
        host.ns.run("nft", "chain", "inet", "cnipy_firewall", "forward", "{ policy drop; }")


def _admin_drop(host: Host, backend: str, src: str, add: bool = True) -> None:
    if backend == "iptables":
        host.ns.run("iptables", "-A" if add else "-D", "CNI-ADMIN", "-s", src, "-j", "DROP")
    elif add:
        host.ns.run("nft", "add", "rule", "inet", "cnipy_firewall", "CNI-ADMIN", "ip", "saddr", src, "drop")
    else:
        host.ns.run("nft", "flush", "chain", "inet", "cnipy_firewall", "CNI-ADMIN")


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_policy_drop_opened_by_the_rules_and_admin_chain_first(host, backend):
    host.make_outside([SUB_A])
    if backend == "iptables":
        _drop_policy(host, backend)
    ctr, res = host.attach(BR_A, SUB_A, "c1", backend=backend)
    if backend == "nftables":
        _drop_policy(host, backend)  # our table exists now; ADD and DEL keep the policy
    me = ip_of(res)
    assert ping(ctr, OUT_ADDR), "the firewall plugin's rules should let the container out"
    _admin_drop(host, backend, me)
    assert not ping(ctr, OUT_ADDR), "a DROP in CNI-ADMIN must win over the plugin's accept"
    _admin_drop(host, backend, me, add=False)
    assert ping(ctr, OUT_ADDR)
    # Without the plugin's rules the policy drops: they are what opened it.
    assert host.fw("DEL", Host.fw_conf(None, backend=backend), ctr).ok
    assert not ping(ctr, OUT_ADDR)
    assert host.fw("ADD", Host.fw_conf(res, backend=backend), ctr).ok
    assert ping(ctr, OUT_ADDR)
    if backend == "nftables":
        assert "policy drop" in host.nft()
    host.detach(BR_A, SUB_A, "c1", ctr, backend=backend)
    assert tag("c1") not in host.rules(backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_bridge_blocks_between_bridges_not_within_or_outside(host, backend):
    host.make_outside([SUB_A, SUB_B])
    a1, ra1 = host.attach(BR_A, SUB_A, "a1", backend=backend, ingressPolicy="same-bridge")
    a2, ra2 = host.attach(BR_A, SUB_A, "a2", backend=backend, ingressPolicy="same-bridge")
    b1, rb1 = host.attach(BR_B, SUB_B, "b1", backend=backend)
    assert ping(a1, ip_of(rb1)), "control: while bridge B is open, the bridges reach each other"
    assert host.fw("ADD", Host.fw_conf(rb1, backend=backend, ingressPolicy="same-bridge"), b1, cid="b1").ok
    assert ping(a1, ip_of(ra2)), "within one bridge traffic flows"
    assert not ping(a1, ip_of(rb1)) and not ping(b1, ip_of(ra1)), "between the bridges it is dropped"
    assert ping(a1, OUT_ADDR) and ping(b1, OUT_ADDR), "the outside stays reachable"
    for cid, ctr, br, sub in (("a1", a1, BR_A, SUB_A), ("a2", a2, BR_A, SUB_A), ("b1", b1, BR_B, SUB_B)):
        host.detach(br, sub, cid, ctr, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_isolated_blocks_within_the_bridge_too(host, backend):
    if not _br_netfilter_on(host):
        pytest.skip("bridged traffic reaches the forward hook only with br_netfilter (bridge-nf-call-iptables=1)")
    a1, _ = host.attach(BR_A, SUB_A, "a1", backend=backend, ingressPolicy="same-bridge")
    a2, ra2 = host.attach(BR_A, SUB_A, "a2", backend=backend, ingressPolicy="same-bridge")
    assert ping(a1, ip_of(ra2)), "control: same-bridge lets the bridge's containers talk"
    assert host.fw("ADD", Host.fw_conf(ra2, backend=backend, ingressPolicy="isolated"), a2, cid="a2").ok
    assert not ping(a1, ip_of(ra2))
    for cid, ctr in (("a1", a1), ("a2", a2)):
        host.detach(BR_A, SUB_A, cid, ctr, backend=backend)


# -- DEL, CHECK, GC ----------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_del_without_prev_result_removes_the_attachments_rules(host, backend):
    conf = Host.fw_conf(prev_result(["10.88.0.5/24", "fd00:88::5/64"]), backend=backend)
    other = Host.fw_conf(prev_result(["10.88.0.6/24"]), backend=backend)
    assert host.fw("ADD", conf, cid="c1").ok and host.fw("ADD", other, cid="c2").ok
    assert tag("c1") in host.rules(backend)
    out = host.fw("DEL", Host.fw_conf(None, backend=backend), cid="c1", netns="")
    assert out.ok and out.stdout == b"", out
    text = host.rules(backend)
    assert tag("c1") not in text and "10.88.0.5" not in text and "fd00:88::5" not in text
    assert tag("c2") in text and host.fw("CHECK", other, cid="c2").ok
    assert host.fw("DEL", Host.fw_conf(None, backend=backend), cid="c1").ok  # again: nothing there, fine
    assert host.fw("DEL", Host.fw_conf(None, backend=backend), cid="c2").ok
    if backend == "iptables":  # the shared chains stay (the admin's rules live there), empty of ours
        assert host.iptables(4).count("-A CNI-FORWARD") == 1


def test_del_cleans_the_backend_add_used_whatever_the_config_says_now(host):
    prev = prev_result(["10.88.0.5/24"])
    assert host.fw("ADD", Host.fw_conf(prev, backend="nftables"), cid="n1").ok
    assert host.fw("ADD", Host.fw_conf(prev_result(["10.88.0.6/24"]), backend="iptables"), cid="i1").ok
    assert host.fw("DEL", Host.fw_conf(None, backend="iptables"), cid="n1").ok
    assert host.fw("DEL", Host.fw_conf(None, backend=""), cid="i1").ok
    assert tag("n1") not in host.nft() and tag("i1") not in host.iptables_all()


def test_del_with_prev_result_releases_a_reference_made_attachment(host):
    conf = Host.fw_conf(prev_result(["10.88.0.5/24"]), backend="iptables")
    assert host.ref("ADD", conf).ok
    assert "-A CNI-FORWARD -s 10.88.0.5/32 -j ACCEPT" in host.iptables(4)
    assert host.fw("DEL", conf).ok
    assert "10.88.0.5" not in host.iptables(4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_passes_then_fails_after_a_manual_deletion(host, backend):
    conf = Host.fw_conf(prev_result(["10.88.0.5/24"]), backend=backend, ingressPolicy="same-bridge")
    assert host.fw("ADD", conf).ok
    assert host.fw("CHECK", conf).ok
    if backend == "iptables":
        # With an ingress policy the comment also names the policy and bridge (DEL finds them).
        host.ns.run("iptables", "-D", "CNI-FORWARD", "-s", "10.88.0.5/32", "-m", "comment", "--comment",
                    tag("c1") + "/same-bridge/cni0", "-j", "ACCEPT")
    else:
        host.ns.run("nft", "delete", "element", "inet", "cnipy_firewall", "allow4", "{ 10.88.0.5 }")
    out = host.fw("CHECK", conf)
    assert out.code == 102 and "10.88.0.5" in out.doc["msg"], out
    assert host.fw("DEL", conf).ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_creates_nothing(host, backend):
    conf = Host.fw_conf(prev_result(["10.88.0.5/24"]), backend=backend)
    before = (host.nft(), host.iptables_all())
    out = host.fw("CHECK", conf)
    assert out.code == 102, out
    assert (host.nft(), host.iptables_all()) == before  # the reference's CHECK creates chains


@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_removes_rules_of_attachments_not_listed(host, backend):
    ca = Host.fw_conf(prev_result(["10.88.0.5/24"]), backend=backend)
    cb = Host.fw_conf(prev_result(["10.88.0.6/24"]), backend=backend)
    other_net = dict(Host.fw_conf(prev_result(["10.88.0.7/24"]), backend=backend), name="othernet")
    assert host.fw("ADD", ca, cid="a").ok and host.fw("ADD", cb, cid="b").ok
    assert host.fw("ADD", other_net, cid="z").ok
    gc = Host.fw_conf(None, "1.1.0", backend=backend,
                      **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]})
    out = host.fw("GC", gc)
    assert out.ok and out.stdout == b"", out
    text = host.rules(backend)
    assert tag("a") in text and tag("b") not in text and tag("z", net="othernet") in text
    assert host.fw("CHECK", ca, cid="a").ok
    for cid, c in (("a", ca), ("z", other_net)):
        assert host.fw("DEL", c, cid=cid).ok


def _isolation_of(host: Host, backend: str, bridge: str) -> list[str]:
    """The lines of the host's firewall state naming ``bridge`` (isolation entries)."""
    return [line for line in host.rules(backend).splitlines() if bridge in line]


@pytest.mark.parametrize("with_prev", [True, False], ids=["prevResult", "no-prevResult"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_del_of_the_last_attachment_removes_its_bridges_isolation(host, backend, with_prev):
    """Isolation is shared by a bridge's attachments: DEL of one keeps it, DEL of the last
    removes every entry of that bridge, so an open network reusing the name is not isolated."""
    host.make_outside([SUB_A, SUB_B])
    keys = {"backend": backend, "ingressPolicy": "same-bridge"}
    a1, ra1 = host.attach(BR_A, SUB_A, "a1", **keys)
    a2, ra2 = host.attach(BR_A, SUB_A, "a2", **keys)
    b1, rb1 = host.attach(BR_B, SUB_B, "b1", **keys)
    assert ping(a1, OUT_ADDR), "control: the outside is reachable"
    assert not ping(a1, ip_of(rb1)) and not ping(b1, ip_of(ra2)), "between the bridges it is dropped"

    def fw_del(cid: str, ctr, res: dict) -> None:
        out = host.fw("DEL", Host.fw_conf(res if with_prev else None, **keys), ctr, cid=cid,
                      netns=None if with_prev else "")
        assert out.ok and out.stdout == b"", out
        assert host.run("bridge", "DEL", host.bridge_conf(BR_A, SUB_A), ctr, cid=cid).ok

    fw_del("a1", a1, ra1)
    assert _isolation_of(host, backend, BR_A), "a2 still uses bridge A's isolation"
    assert host.fw("CHECK", Host.fw_conf(ra2, **keys), a2, cid="a2").ok
    assert not ping(a2, ip_of(rb1)) and not ping(b1, ip_of(ra2)), "still isolated after the first DEL"
    fw_del("a2", a2, ra2)
    assert _isolation_of(host, backend, BR_A) == [], "the last DEL removes the bridge's isolation"
    assert _isolation_of(host, backend, BR_B), "bridge B keeps its own"
    assert host.fw("CHECK", Host.fw_conf(rb1, **keys), b1, cid="b1").ok
    # An open network reusing bridge A's name (as podman does) reaches bridge B's containers.
    a3, _ = host.attach(BR_A, SUB_A, "a3", backend=backend)
    assert ping(a3, ip_of(rb1)), "bridge A is no longer isolating"
    host.detach(BR_A, SUB_A, "a3", a3, backend=backend)
    host.detach(BR_B, SUB_B, "b1", b1, backend=backend)
    assert _isolation_of(host, backend, BR_B) == []
    assert "cnipy:" not in host.rules(backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_isolated_policy_goes_with_its_last_attachment(host, backend):
    """A bridge's `isolated` entry goes once no remaining attachment asks for it; its
    same-bridge isolation stays while one still uses it."""
    iso = Host.fw_conf(prev_result(["10.88.0.5/24"], bridge="fwiso"), backend=backend, ingressPolicy="isolated")
    same = Host.fw_conf(prev_result(["10.88.0.6/24"], bridge="fwiso"), backend=backend, ingressPolicy="same-bridge")
    assert host.fw("ADD", iso, cid="i").ok and host.fw("ADD", same, cid="s").ok

    def state() -> tuple[bool, bool]:
        """(the bridge's isolated entry is there, its same-bridge isolation is there)"""
        if backend == "iptables":
            text = host.iptables(4)
            return "-i fwiso -o fwiso" in text, "-i fwiso ! -o fwiso" in text
        def nft_set(name: str) -> str:
            return host.ns.run("nft", "list", "set", "inet", "cnipy_firewall", name)
        return "fwiso" in nft_set("isolated"), "fwiso" in nft_set("bridges") and "fwiso" in nft_set("isolating")

    assert state() == (True, True)
    assert host.fw("DEL", Host.fw_conf(None, backend=backend), cid="i", netns="").ok
    assert host.fw("CHECK", same, cid="s").ok
    assert state() == (False, True)
    assert host.fw("DEL", Host.fw_conf(None, backend=backend), cid="s", netns="").ok
    assert _isolation_of(host, backend, "fwiso") == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_drops_isolation_of_bridges_whose_attachments_are_gone(host, backend):
    keys = {"backend": backend, "ingressPolicy": "same-bridge"}
    gone = Host.fw_conf(prev_result(["10.88.0.5/24"], bridge="fwgca"), **keys)
    kept = Host.fw_conf(prev_result(["10.88.1.5/24"], bridge="fwgcb"), **keys)
    shared = Host.fw_conf(prev_result(["10.88.2.5/24"], bridge="fwgcc"), **keys)
    other_net = dict(Host.fw_conf(prev_result(["10.88.2.6/24"], bridge="fwgcc"), **keys), name="othernet")
    for cid, c in (("g", gone), ("k", kept), ("s", shared), ("z", other_net)):
        assert host.fw("ADD", c, cid=cid).ok
    gc = Host.fw_conf(None, "1.1.0", backend=backend,
                      **{"cni.dev/valid-attachments": [{"containerID": "k", "ifname": "eth0"}]})
    out = host.fw("GC", gc)
    assert out.ok and out.stdout == b"", out
    assert _isolation_of(host, backend, "fwgca") == [], "no attachment uses bridge fwgca any more"
    assert _isolation_of(host, backend, "fwgcb") and _isolation_of(host, backend, "fwgcc")
    assert host.fw("CHECK", kept, cid="k").ok and host.fw("CHECK", other_net, cid="z").ok
    for cid, c in (("k", kept), ("z", other_net)):
        assert host.fw("DEL", c, cid=cid).ok
    for br in ("fwgcb", "fwgcc"):
        assert _isolation_of(host, backend, br) == []


# -- versions, tools ---------------------------------------------------------------------

def test_every_spec_version_including_0_3_1(host):
    for i, version in enumerate(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]):
        conf = Host.fw_conf(prev_result([f"10.88.0.{10 + i}/24"], version=version), version, backend="iptables")
        out = host.fw("ADD", conf, cid=f"v{i}")
        assert out.ok and out.doc["cniVersion"] == version, out
        assert host.fw("DEL", conf, cid=f"v{i}").ok
    conf = Host.fw_conf(prev_result(["10.88.0.9/24"], version="0.3.1"), "0.3.1", backend="iptables")
    ref = host.ref("ADD", conf)
    assert ref.code == 1, ref  # the reference refuses the version its docs' examples use


def test_ipv4_only_without_ip6tables(host):
    conf = Host.fw_conf(prev_result(["10.88.0.5/24"]), backend="iptables")
    tools = ["iptables", "iptables-save", "iptables-restore"]
    rc, doc, err = host.run_without(tools, "ADD", conf)
    assert rc == 0, (doc, err)
    assert f"-s 10.88.0.5/32 -m comment --comment {tag('c1')}" in host.iptables(4).replace('"', "")
    rc, doc, err = host.run_without(tools, "CHECK", conf)
    assert rc == 0, (doc, err)
    rc, doc, err = host.run_without(tools, "DEL", Host.fw_conf(None, backend="iptables"))
    assert rc == 0, (doc, err)
    assert tag("c1") not in host.iptables(4)
    rc, doc, _ = host.run_without(tools, "ADD", conf, binary="/usr/lib/cni/firewall")
    assert rc != 0, doc  # the reference needs ip6tables for an IPv4-only container
    # A dual-stack attachment without ip6tables: a clear error, nothing left.
    rc, doc, _ = host.run_without(tools, "ADD", Host.fw_conf(prev_result(["10.88.0.5/24", "fd00::5/64"]),
                                                                  backend="iptables"))
    assert rc != 0 and doc["code"] == 50 and "ip6tables" in doc["msg"], doc
    assert tag("c1") not in host.iptables(4)


def test_status(host):
    assert host.fw("STATUS", Host.fw_conf(None, "1.1.0")).ok
    assert host.fw("STATUS", Host.fw_conf(None, "1.1.0", backend="iptables")).ok
    out = host.fw("STATUS", Host.fw_conf(None, "1.1.0", backend="firewalld"))
    assert out.code == 50, out


# -- hostile input -----------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("backend", "pf"), ("backend", "IPTABLES"), ("backend", 7),
    ("ingressPolicy", "closed"), ("ingressPolicy", ["open"]),
    ("iptablesAdminChainName", "A B"), ("iptablesAdminChainName", "-j"), ("iptablesAdminChainName", "X" * 29),
    ("iptablesAdminChainName", "FORWARD"), ("firewalldZone", 3),
])
def test_bad_values_are_code_7_naming_key_and_value_nothing_made(host, key, value):
    conf = Host.fw_conf(prev_result(["10.88.0.5/24"]), **{key: value})
    before = (host.nft(), host.iptables_all())
    out = host.fw("ADD", conf)
    assert out.code == 7 and key in out.doc["msg"] and str(value)[:5] in out.doc["msg"], out
    assert (host.nft(), host.iptables_all()) == before


def test_firewalld_is_a_clean_error(host):
    out = host.fw("ADD", Host.fw_conf(prev_result(["10.88.0.5/24"]), backend="firewalld"))
    assert out.code == 50 and "firewalld" in out.doc["msg"] and NET in out.doc["msg"], out
    assert host.fw("DEL", Host.fw_conf(None, backend="firewalld")).ok  # DEL never blocks


def test_missing_prev_result_and_bad_bridge_names(host):
    assert host.fw("ADD", Host.fw_conf(None, backend="iptables")).code == 7
    for bridge in ("br+", 'br"x', "a b"):
        out = host.fw("ADD", Host.fw_conf(prev_result(["10.88.0.5/24"], bridge=bridge), backend="iptables",
                                          ingressPolicy="same-bridge"))
        assert out.code == 7 and "interfaces[0]" in out.doc["msg"], out
    noif = {"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.5/24"}]}
    out = host.fw("ADD", Host.fw_conf(noif, backend="iptables", ingressPolicy="same-bridge"))
    assert out.code == 7 and "bridge" in out.doc["msg"], out
    assert "CNI-FORWARD" not in host.iptables_all()


def test_re_add_replaces_the_attachments_addresses(host):
    for backend in BACKENDS:
        assert host.fw("ADD", Host.fw_conf(prev_result(["10.88.0.5/24"]), backend=backend)).ok
        conf = Host.fw_conf(prev_result(["10.88.0.8/24"]), backend=backend)
        assert host.fw("ADD", conf).ok
        text = host.rules(backend)
        assert "10.88.0.5" not in text and "10.88.0.8" in text, text
        assert host.fw("CHECK", conf).ok and host.fw("DEL", conf).ok


# -- start-up ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_firewall_imports_only_its_feature_and_no_netlink(host, request, backend):
    """Start-up is the product: ADD/CHECK/DEL load the chosen backend's forward module and
    nothing of pyroute2, netlink, masquerading, host ports or the spoof check."""
    from tests.test_lazy_firewall_imports import _has, run_traced

    conf = Host.fw_conf(prev_result(["10.88.0.5/24"]), backend=backend)
    ctr = host.container()
    for verb in ("ADD", "CHECK", "DEL"):
        # Traced from source: the launchers (not the frozen dist/bin) can run under -X importtime.
        src = os.environ.get("CNIPY_TEST_SRC_BIN_DIR") or request.getfixturevalue("src_bin")
        _, mods = run_traced(src, "firewall", verb, conf, host.ns, ctr)
        bad = _has(mods, "pyroute2", "cnilib.nl", "cnilib.link", "cnilib.firewall.nftables.masquerade",
                   "cnilib.firewall.iptables.masquerade", "cnilib.firewall.nftables.hostports",
                   "cnilib.firewall.iptables.hostports", "cnilib.firewall.nftables.spoofcheck")
        assert not bad, (verb, bad)
        if verb == "ADD":
            assert f"cnilib.firewall.{backend}.forward" in mods
