"""portmap: config validation, conflicts, ownership, CHECK, DEL and GC, asserted on what
the firewall then holds in a throwaway host namespace. Traffic through the mappings is
tests/test_portmap_traffic.py. prevResults here are synthetic (portmap only reads them),
so no bridge is needed.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers import OUR_BIN, Netns, run_plugin, sh

PORTMAP = os.path.join(OUR_BIN, "portmap")
BACKENDS = ["nftables", "iptables"]


def _prev(v4: str | None = "10.88.0.5/24", v6: str | None = None, ifname: str = "eth0") -> dict:
    ips = []
    if v4:
        ips.append({"address": v4, "gateway": v4.rsplit(".", 1)[0] + ".1", "interface": 2})
    if v6:
        ips.append({"address": v6, "interface": 2})
    return {"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "02:00:00:00:00:01"},
                           {"name": "veth1", "mac": "02:00:00:00:00:02"},
                           {"name": ifname, "mac": "02:00:00:00:00:03", "sandbox": "/var/run/netns/x"}],
            "ips": ips, "dns": {}}


def _conf(mappings: list | None, backend: str | None = "nftables", prev: dict | None = None,
          name: str = "pmnet", **keys: object) -> dict:
    c: dict = {"cniVersion": "1.0.0", "name": name, "type": "portmap", "capabilities": {"portMappings": True}}
    if backend:
        c["backend"] = backend
    if mappings is not None:
        c["runtimeConfig"] = {"portMappings": mappings}
    if prev is not None:
        c["prevResult"] = prev
    c.update(keys)
    return c


TCP = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]


@pytest.fixture
def host():
    ns = Netns("pmh")
    try:
        yield ns
    finally:
        ns.delete()


def pm(host, verb: str, conf: dict, cid: str = "ctr1", ifname: str = "eth0"):
    return run_plugin(PORTMAP, verb, conf, containerid=cid, netns="/var/run/netns/x" if verb != "GC" else "",
                      ifname=ifname if verb != "GC" else "", path=OUR_BIN, in_netns=host.name)


def rules(host) -> str:
    """Everything of ours in the host namespace's firewall, both tools."""
    text = sh("nft", "list", "ruleset", ns=host.name, check=False)
    for tool in ("iptables-save", "ip6tables-save"):
        text += sh(tool, "-t", "nat", ns=host.name, check=False)
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))  # no timestamps


def elements(host) -> str:
    """Only our per-owner state: map and set elements, all commented with their owner's
    tag (nft), or entries and DNAT rules (iptables)."""
    return "\n".join(line for line in rules(host).splitlines()
                     if "cnipy:" in line or "-j DNAT" in line or "CNIPY-HOSTPORTS -" in line)


# ---- ADD / pass-through ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_add_passes_prev_result_through_and_installs_rules(host, backend):
    prev = _prev()
    out = pm(host, "ADD", _conf(TCP, backend, prev))
    assert out.ok, out
    assert out.doc == prev
    text = rules(host)
    assert "cnipy:pmnet:ctr1:eth0" in text
    assert ("10.88.0.5 . 80" if backend == "nftables" else "10.88.0.5:80") in text


def test_add_without_mappings_changes_nothing(host):
    prev = _prev()
    before = rules(host)
    out = pm(host, "ADD", _conf([], "nftables", prev))
    assert out.ok and out.doc == prev, out
    assert rules(host) == before


def test_add_without_prev_result_is_a_config_error(host):
    out = pm(host, "ADD", _conf(TCP))
    assert out.code == 7 and "chained" in out.doc["msg"], out


@pytest.mark.parametrize("mapping, key", [
    ({"hostPort": 0, "containerPort": 80, "protocol": "tcp"}, "hostPort"),
    ({"hostPort": 65536, "containerPort": 80, "protocol": "tcp"}, "hostPort"),
    ({"hostPort": "80", "containerPort": 80, "protocol": "tcp"}, "hostPort"),
    ({"hostPort": True, "containerPort": 80, "protocol": "tcp"}, "hostPort"),
    ({"hostPort": 8080, "containerPort": -1, "protocol": "tcp"}, "containerPort"),
    ({"hostPort": 8080, "containerPort": 80, "protocol": "icmp"}, "protocol"),
    ({"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "300.1.1.1"}, "hostIP"),
    ({"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": 17}, "hostIP"),
    ("8080:80", "portMappings[1]"),
])
def test_bad_mappings_are_config_errors_and_change_nothing(host, mapping, key):
    before = rules(host)
    out = pm(host, "ADD", _conf([TCP[0], mapping], "nftables", _prev()))
    assert out.code == 7, out
    assert key in out.doc["msg"], out.doc
    assert rules(host) == before


@pytest.mark.parametrize("keys, word", [
    ({"markMasqBit": 32}, "markMasqBit"),
    ({"markMasqBit": 3, "externalSetMarkChain": "KUBE-MARK-MASQ"}, "externalSetMarkChain"),
    ({"snat": "yes"}, "snat"),
    ({"conditionsV4": "-s 1.2.3.4"}, "conditionsV4"),
    ({"backend": "ebtables"}, "backend"),
    ({"backend": "nftables", "externalSetMarkChain": "KUBE-MARK-MASQ"}, "iptables"),
    ({"conditionsV4": ["ip saddr 10.0.0.0/8; flush ruleset"]}, "conditionsV4"),
    ({"backend": "iptables", "conditionsV4": ["-p", "udp"]}, "conditionsV4"),
])
def test_bad_keys_are_config_errors(host, keys, word):
    conf = _conf(TCP, None, _prev())
    conf.update(keys)
    out = pm(host, "ADD", conf)
    assert out.code == 7 and word in out.doc["msg"], out
    assert "cnipy:" not in rules(host)


def test_same_key_twice_to_different_targets_is_a_config_error(host):
    m = TCP + [{"hostPort": 18080, "containerPort": 81, "protocol": "tcp"}]
    out = pm(host, "ADD", _conf(m, "nftables", _prev()))
    assert out.code == 7 and "twice" in out.doc["msg"], out


# ---- conflicts and ownership ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_a_held_host_port_is_an_error_naming_the_holder_and_nothing_changes(host, backend):
    assert pm(host, "ADD", _conf(TCP, backend, _prev()), cid="first").ok
    before = rules(host)
    mappings = [{"hostPort": 18081, "containerPort": 81, "protocol": "tcp"}] + TCP
    out = pm(host, "ADD", _conf(mappings, backend, _prev("10.88.0.6/24")), cid="second")
    assert out.code == 101, out
    assert "tcp/18080" in out.doc["msg"] and "first" in out.doc["msg"], out.doc
    assert rules(host) == before  # 18081 was not installed either
    assert pm(host, "DEL", _conf(TCP, backend), cid="first").ok
    assert "cnipy:" not in elements(host)


@pytest.mark.parametrize("backend", BACKENDS)
def test_distinct_keys_coexist(host, backend):
    """Other protocol, other host address, other family: no conflict."""
    a = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp", "hostIP": "192.0.2.10"}]
    b = [{"hostPort": 18080, "containerPort": 80, "protocol": "udp"}]
    c = TCP  # any address: coexists with the specific one, which wins for its address
    for cid, m, ip in (("a", a, "10.88.0.5/24"), ("b", b, "10.88.0.6/24"), ("c", c, "10.88.0.7/24")):
        out = pm(host, "ADD", _conf(m, backend, _prev(ip)), cid=cid)
        assert out.ok, out
    for cid, m in (("a", a), ("b", b), ("c", c)):
        assert pm(host, "CHECK", _conf(m, backend, _prev({"a": "10.88.0.5/24", "b": "10.88.0.6/24",
                                                          "c": "10.88.0.7/24"}[cid])), cid=cid).ok
        assert pm(host, "DEL", _conf(m, backend), cid=cid).ok
    assert "cnipy:" not in elements(host)


@pytest.mark.parametrize("backend", BACKENDS)
def test_re_add_replaces_the_owners_mappings(host, backend):
    assert pm(host, "ADD", _conf(TCP, backend, _prev())).ok
    new = [{"hostPort": 18090, "containerPort": 90, "protocol": "tcp"}]
    out = pm(host, "ADD", _conf(new, backend, _prev()))
    assert out.ok, out
    text = elements(host)
    assert "18090" in text and "18080" not in text
    assert pm(host, "CHECK", _conf(new, backend, _prev())).ok
    assert pm(host, "DEL", _conf(None, backend)).ok
    assert "cnipy:" not in elements(host)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_networks_mapping_one_container_are_separate_owners(host, backend):
    """The reference's nftables rules carry only the container ID: DEL of one network
    removed the other's. Ours are owned by (network, container, ifname)."""
    m2 = [{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}]
    assert pm(host, "ADD", _conf(TCP, backend, _prev(), name="net-a")).ok
    assert pm(host, "ADD", _conf(m2, backend, _prev("10.99.0.5/24", ifname="net1"), name="net-b"),
              ifname="net1").ok
    assert pm(host, "DEL", _conf(TCP, backend, name="net-a")).ok
    assert pm(host, "CHECK", _conf(m2, backend, _prev("10.99.0.5/24", ifname="net1"), name="net-b"),
              ifname="net1").ok
    text = elements(host)
    assert "net-b" in text and "net-a" not in text
    assert pm(host, "DEL", _conf(m2, backend, name="net-b"), ifname="net1").ok


# ---- CHECK ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_dual_stack_check_passes_right_after_add(host, backend):
    """containernetworking/plugins#819."""
    prev = _prev("10.88.0.5/24", "fd00:88::5/64")
    m = TCP + [{"hostPort": 18053, "containerPort": 53, "protocol": "udp"}]
    assert pm(host, "ADD", _conf(m, backend, prev)).ok
    out = pm(host, "CHECK", _conf(m, backend, prev))
    assert out.ok, out
    text = rules(host)
    assert "fd00:88::5" in text and "10.88.0.5" in text
    assert pm(host, "DEL", _conf(m, backend)).ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_notices_a_missing_mapping(host, backend):
    assert pm(host, "ADD", _conf(TCP, backend, _prev())).ok
    more = TCP + [{"hostPort": 18081, "containerPort": 81, "protocol": "tcp"}]
    out = pm(host, "CHECK", _conf(more, backend, _prev()))
    assert out.code == 102 and "18081" in out.doc["msg"], out
    out = pm(host, "CHECK", _conf(TCP, backend, _prev("10.88.0.9/24")))
    assert out.code == 102, out  # wrong container address
    assert pm(host, "DEL", _conf(TCP, backend)).ok
    out = pm(host, "CHECK", _conf(TCP, backend, _prev()))
    assert out.code == 102, out


def test_check_without_prev_result_is_an_error(host):
    out = pm(host, "CHECK", _conf(TCP))
    assert out.code == 7, out


# ---- DEL and GC ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_del_needs_neither_prev_result_nor_mappings_and_is_idempotent(host, backend):
    assert pm(host, "ADD", _conf(TCP, backend, _prev("10.88.0.5/24", "fd00:88::5/64"))).ok
    for _ in range(2):
        out = pm(host, "DEL", _conf(None, backend))
        assert out.ok, out
    assert "cnipy:" not in elements(host)


@pytest.mark.parametrize("backend", BACKENDS)
def test_del_given_mappings_and_prev_result_removes_exactly_the_attachment(host, backend):
    """libcni passes runtimeConfig and the cached result on DEL: nftables then deletes
    without reading, but only if they name exactly the attachment's state."""
    m_a = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
           {"hostPort": 18081, "containerPort": 53, "protocol": "udp"}]
    m_b = [{"hostPort": 18082, "containerPort": 80, "protocol": "tcp"}]
    prev_a, prev_b = _prev("10.88.0.5/24", "fd00:88::5/64"), _prev("10.88.0.6/24")
    assert pm(host, "ADD", _conf(m_a, backend, prev_a), cid="a").ok
    assert pm(host, "ADD", _conf(m_b, backend, prev_b), cid="b").ok
    assert pm(host, "DEL", _conf(m_a, backend, prev_a), cid="a").ok  # exact: the fast path
    assert "cnipy:pmnet:a:" not in elements(host)
    assert pm(host, "CHECK", _conf(m_b, backend, prev_b), cid="b").ok
    # Stale or wrong knowledge (b's own mapping named on a's DEL) spares b, removes all of a.
    assert pm(host, "ADD", _conf(m_a, backend, prev_a), cid="a").ok
    assert pm(host, "DEL", _conf(m_b, backend, prev_b), cid="a").ok
    assert "cnipy:pmnet:a:" not in elements(host)
    assert pm(host, "CHECK", _conf(m_b, backend, prev_b), cid="b").ok
    assert pm(host, "DEL", _conf(m_b, backend, prev_b), cid="b").ok
    assert "cnipy:" not in elements(host)


def test_del_removes_mappings_made_with_the_other_backend(host):
    assert pm(host, "ADD", _conf(TCP, "iptables", _prev())).ok
    assert pm(host, "DEL", _conf(TCP, None)).ok  # default backend: nftables here
    assert "cnipy:" not in elements(host)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_removes_mappings_of_attachments_not_kept(host, backend):
    for i, cid in enumerate(("keep", "stale")):
        m = [{"hostPort": 18080 + i, "containerPort": 80, "protocol": "tcp"}]
        assert pm(host, "ADD", _conf(m, backend, _prev(f"10.88.0.{5 + i}/24")), cid=cid).ok
    other = [{"hostPort": 18090, "containerPort": 80, "protocol": "tcp"}]
    assert pm(host, "ADD", _conf(other, backend, _prev("10.89.0.5/24"), name="othernet"), cid="stale").ok
    gc = _conf(None, backend)
    gc["cniVersion"] = "1.1.0"
    gc["cni.dev/valid-attachments"] = [{"containerID": "keep", "ifname": "eth0"}]
    out = pm(host, "GC", gc)
    assert out.ok, out
    text = elements(host)
    assert "cnipy:pmnet:keep:eth0" in text
    assert "cnipy:pmnet:stale:eth0" not in text
    assert "cnipy:othernet:stale:eth0" in text  # another network's: not GC's business
    assert pm(host, "DEL", _conf(None, backend), cid="keep").ok
    assert pm(host, "DEL", _conf(None, backend, name="othernet"), cid="stale").ok
    assert "cnipy:" not in elements(host)


# ---- options ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_conditions_stay_in_their_own_containers_rules(host, backend):
    cond = {"nftables": ["ip saddr != 192.0.2.0/24"], "iptables": ["!", "-s", "192.0.2.0/24"]}[backend]
    m2 = [{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}]
    assert pm(host, "ADD", _conf(TCP, backend, _prev(), conditionsV4=cond), cid="a").ok
    assert pm(host, "ADD", _conf(m2, backend, _prev("10.88.0.6/24")), cid="b").ok
    if backend == "nftables":
        # a's condition sits in the chain a's element jumps to, and b's element jumps elsewhere
        doc = json.loads(sh("nft", "-j", "list", "table", "inet", "cnipy_hostport", ns=host.name))["nftables"]
        cond_chains = {i["rule"]["chain"] for i in doc if "rule" in i and "192.0.2.0" in json.dumps(i["rule"])}
        any4 = next(i["map"] for i in doc if "map" in i and i["map"]["name"] == "any4")
        target = {e[0]["elem"]["val"]["concat"][1]: e[1]["jump"]["target"] for e in any4["elem"]}
        assert cond_chains and target[18080] in cond_chains and target[18081] not in cond_chains, (cond_chains, target)
    else:
        with_cond = [line for line in rules(host).splitlines() if "192.0.2.0/24" in line]
        assert with_cond and all("10.88.0.6" not in line and "18081" not in line for line in with_cond), with_cond
        assert any("18080" in line for line in with_cond)
    assert pm(host, "CHECK", _conf(TCP, backend, _prev(), conditionsV4=cond), cid="a").ok
    for cid in ("a", "b"):
        assert pm(host, "DEL", _conf(None, backend), cid=cid).ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_mark_bit_snat_and_masq_all(host, backend):
    assert pm(host, "ADD", _conf(TCP, backend, _prev(), markMasqBit=5), cid="a").ok
    text = rules(host)
    assert "0x20" in text.replace("0x00000020", "0x20")
    m2 = [{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}]
    assert pm(host, "ADD", _conf(m2, backend, _prev("10.88.0.6/24"), snat=False), cid="b").ok
    b_lines = [line for line in rules(host).splitlines() if "cnipy:pmnet:b:" in line]
    assert b_lines and not any("mark" in line.lower() for line in b_lines), b_lines
    m3 = [{"hostPort": 18082, "containerPort": 80, "protocol": "tcp"}]
    assert pm(host, "ADD", _conf(m3, backend, _prev("10.88.0.7/24"), masqAll=True), cid="c").ok
    assert pm(host, "CHECK", _conf(m3, backend, _prev("10.88.0.7/24"), masqAll=True), cid="c").ok
    for cid in "abc":
        assert pm(host, "DEL", _conf(None, backend), cid=cid).ok
    assert "cnipy:" not in elements(host)


def test_external_set_mark_chain_uses_iptables_and_that_chain(host):
    sh("iptables", "-t", "nat", "-N", "KUBE-MARK-MASQ", ns=host.name)
    conf = _conf(TCP, None, _prev(), externalSetMarkChain="KUBE-MARK-MASQ")
    out = pm(host, "ADD", conf)
    assert out.ok, out
    text = sh("iptables-save", "-t", "nat", ns=host.name)
    assert "-j KUBE-MARK-MASQ" in text and "CNIPY-HP-SETMARK" not in text
    assert pm(host, "CHECK", conf).ok
    assert pm(host, "DEL", conf).ok
    assert "cnipy:" not in elements(host)


def test_host_ip_restricts_the_family_and_the_address(host):
    prev = _prev("10.88.0.5/24", "fd00:88::5/64")
    m = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp", "hostIP": "192.0.2.1"},
         {"hostPort": 18081, "containerPort": 80, "protocol": "tcp", "hostIP": "::"}]
    assert pm(host, "ADD", _conf(m, "nftables", prev)).ok
    text = sh("nft", "list", "table", "inet", "cnipy_hostport", ns=host.name)

    def elems(name: str) -> str:
        return text.split(f"map {name} {{")[1].split("}")[0]

    assert "192.0.2.1 . tcp . 18080" in elems("at4") and "10.88.0.5 . 80" in elems("dnat-at4")
    assert "18081" in elems("any6") and "fd00:88::5 . 80" in elems("dnat-any6")  # "::" = every IPv6 address
    assert "18080" not in elems("at6") + elems("any6")  # nothing IPv6 for an IPv4 hostIP
    assert "18081" not in elems("any4") + elems("at4")
    assert pm(host, "DEL", _conf(None, "nftables")).ok


def test_status_and_version(host):
    out = pm(host, "STATUS", {**_conf(None, "nftables"), "cniVersion": "1.1.0"})
    assert out.ok, out
    out = run_plugin(PORTMAP, "VERSION", {"cniVersion": "1.1.0"})
    assert out.ok and "1.1.0" in out.doc["supportedVersions"], out


@pytest.mark.parametrize("backend", BACKENDS)
def test_masquerade_and_host_ports_of_one_attachment_coexist(host, tmp_path, backend):
    """bridge ipMasq and portmap on one attachment, same backend: each keeps its own chain
    (they once shared a name in the iptables nat table), CHECK passes for both, bridge's GC
    leaves portmap's shared chains alone, and DEL removes everything."""
    ctr = Netns("pmc")
    try:
        br = {"cniVersion": "1.1.0", "name": "pmnet", "type": "bridge", "bridge": "pmbr0", "isGateway": True,
              "ipMasq": True, "ipMasqBackend": backend,
              "ipam": {"type": "host-local", "subnet": "10.88.7.0/24", "dataDir": str(tmp_path)}}

        def run(binary, verb, conf, cid="ctr1"):
            return run_plugin(os.path.join(OUR_BIN, binary), verb, conf, containerid=cid, netns=ctr.path,
                              ifname="eth0", path=OUR_BIN, in_netns=host.name)

        res = run("bridge", "ADD", br)
        assert res.ok, res
        pm = _conf(TCP, backend, res.doc)
        pm["cniVersion"] = "1.1.0"
        out = run("portmap", "ADD", pm)
        assert out.ok, out
        assert run("bridge", "CHECK", dict(br, prevResult=res.doc)).ok
        assert run("portmap", "CHECK", pm).ok
        # A stale host-port owner of the same network: bridge's GC must not trip over it.
        stale = _conf([{"hostPort": 18099, "containerPort": 80, "protocol": "tcp"}], backend, _prev("10.88.7.99/24"))
        assert pm_ok(host, stale, "stale")
        gc = dict(br, **{"cni.dev/valid-attachments": [{"containerID": "ctr1", "ifname": "eth0"}]})
        out = run_plugin(os.path.join(OUR_BIN, "bridge"), "GC", gc, path=OUR_BIN, in_netns=host.name)
        assert out.ok, out
        assert run("portmap", "CHECK", pm).ok, "bridge GC damaged portmap's rules"
        gc_pm = dict(pm, **{"cni.dev/valid-attachments": [{"containerID": "ctr1", "ifname": "eth0"}]})
        del gc_pm["prevResult"]
        out = run_plugin(PORTMAP, "GC", gc_pm, path=OUR_BIN, in_netns=host.name)
        assert out.ok, out
        assert "cnipy:pmnet:stale:" not in rules(host)
        assert run("bridge", "CHECK", dict(br, prevResult=res.doc)).ok, "portmap GC damaged bridge's rules"
        assert run("portmap", "DEL", pm).ok
        assert run("bridge", "DEL", br).ok
        assert "cnipy:" not in elements(host) and "10.88.7." not in rules(host)
    finally:
        ctr.delete()


def pm_ok(host, conf: dict, cid: str) -> bool:
    out = pm(host, "ADD", conf, cid=cid)
    return out.ok
