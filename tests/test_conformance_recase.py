"""The conformance harness's key re-casing (conformance.recase): what K-recased-keys sends."""

from __future__ import annotations

import json

import pytest

from conformance.recase import MAP_VALUED_KEYS, describe, go_field_case, recase, scopes

CONF = {
    "cniVersion": "1.0.0", "name": "n", "type": "portmap",
    "capabilities": {"portMappings": True},
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10"}]]},
    "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp",
                                        "hostIP": ""}],
                      "io.kubernetes.cri.pod-annotations": {"io.kubernetes.pod/uid": "u1"}},
    "args": {"cni": {"ips": ["10.1.2.15"]}},
    "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"},
    "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.5/24", "interface": 0}], "dns": {}},
}


def _keys(doc, path=()):
    """Every (path, key) of a document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield path, k
            yield from _keys(v, path + (k,))
    elif isinstance(doc, list):
        for v in doc:
            yield from _keys(v, path)


def test_go_field_case_is_containerds_casing():
    assert [go_field_case(k) for k in ("hostPort", "cniVersion", "ipMasq", "hostIP")] == \
        ["HostPort", "CniVersion", "IpMasq", "HostIP"]
    out = recase(CONF, "go-field-case")
    assert out["RuntimeConfig"]["PortMappings"] == [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp",
                                                     "HostIP": ""}]


@pytest.mark.parametrize("variant", ["go-field-case", "upper-case"])
def test_every_key_but_map_keys_recased_and_values_kept(variant):
    out = recase(CONF, variant)
    for path, k in _keys(out):
        if not any(p.lower() in MAP_VALUED_KEYS for p in path):  # a map's own keys: below
            assert k[0].isupper() and (variant != "upper-case" or k == k.upper()), (path, k)
    assert out["Capabilities" if variant == "go-field-case" else "CAPABILITIES"] == {"portMappings": True}
    assert out["Sysctl" if variant == "go-field-case" else "SYSCTL"] == CONF["sysctl"]
    rc = out["RuntimeConfig" if variant == "go-field-case" else "RUNTIMECONFIG"]
    name = "io.kubernetes.cri.pod-annotations"
    recased = go_field_case(name) if variant == "go-field-case" else name.upper()
    assert rc[recased] == {"io.kubernetes.pod/uid": "u1"}
    # Values are never changed: the same scalars in the same order.
    assert sorted(json.dumps(v) for v in _values(out)) == sorted(json.dumps(v) for v in _values(CONF))
    assert CONF["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080  # the original is untouched


def _values(doc):
    if isinstance(doc, dict):
        for v in doc.values():
            yield from _values(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _values(v)
    else:
        yield doc


def test_within_narrows_the_recasing():
    top = recase(CONF, "upper-case", ())
    assert set(top) == {k.upper() for k in CONF} and top["RUNTIMECONFIG"] == CONF["runtimeConfig"]
    inner = recase(CONF, "upper-case", ("runtimeConfig", "portMappings"))
    assert inner["runtimeConfig"]["portMappings"] == [
        {"HOSTPORT": 8080, "CONTAINERPORT": 80, "PROTOCOL": "tcp", "HOSTIP": ""}]
    assert {k for k in inner if k != "runtimeConfig"} == {k for k in CONF if k != "runtimeConfig"}
    assert "io.kubernetes.cri.pod-annotations" in inner["runtimeConfig"]


def test_scopes_skip_maps_and_scalars():
    assert scopes(CONF) == [("ipam",), ("runtimeConfig",), ("args",), ("prevResult",)]
    assert scopes(CONF, ("runtimeConfig",)) == [("runtimeConfig", "portMappings")]
    assert "hostPort -> HostPort" in describe(CONF, "go-field-case", ("runtimeConfig", "portMappings"))


def test_colliding_keys_are_refused():
    with pytest.raises(ValueError):
        recase({"ips": 1, "IPS": 2}, "upper-case")
