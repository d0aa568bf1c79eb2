"""static (IPAM): our plugin as real processes, against the reference and the kernel.

Every call runs in a throwaway "host" namespace. Ours runs twice per test, from source
(``dist/src-bin/static``, or ``CNIPY_TEST_SRC_BIN_DIR``) and as the built binary
(``dist/bin/static``, or ``CNIPY_TEST_BIN_DIR``: e.g. launchers made with
``build/launchers.py DIR``); the reference is /usr/lib/cni/static (Debian's 1.1.1).

* every key and every spec version, exact results;
* the address sources' precedence, differentially: the same inputs to the reference, whose
  answer is asserted too, so each difference in the table (README, "static (IPAM)") is
  one this test shows and none is accidental;
* validation (code 7 naming key and value, code 4 for CNI_ARGS), hostile inputs (wrong
  JSON types, huge lists): one error document or a result, never a traceback;
* DEL, GC, STATUS; CHECK against a real container namespace (a veth pair: this kernel has
  no dummy links), including an IPv6 address that failed duplicate address detection;
* through a real interface plugin: bridge with ``"ipam": {"type": "static"}`` gives the
  container the addresses (``ip addr`` in it), CHECKs them and fails without any;
* start-up: no verb imports pyroute2 or a heavy standard module.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.helpers import REF_BIN, Netns, ip_json, run_plugin, sh, unique

V4, GW4 = "10.1.0.5/24", "10.1.0.1"
V6, GW6 = "fd00:1::5/64", "fd00:1::1"
ADDRS = [{"address": V4, "gateway": GW4}, {"address": V6, "gateway": GW6}]
ROUTES = [{"dst": "0.0.0.0/0", "gw": "10.1.0.254", "mtu": 1400, "advmss": 1360, "priority": 10, "table": 100,
           "scope": 0},
          {"dst": "::/0"}]
DNS = {"nameservers": ["10.1.0.53", "fd00:1::53"], "domain": "example.test", "search": ["a.example.test"],
       "options": ["ndots:2"]}
VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
# ADD never enters the namespace; the variable must still be set.
UNUSED_NETNS = "/var/run/netns/static-unused"
REF = os.path.join(REF_BIN, "static")


# -- fixtures and helpers ------------------------------------------------------------------

def _ours(request, which: str) -> str:
    if which == "src":
        d = os.environ.get("CNIPY_TEST_SRC_BIN_DIR") or request.getfixturevalue("src_bin")
    else:
        d = os.environ.get("CNIPY_TEST_BIN_DIR") or request.getfixturevalue("our_bin")
    path = os.path.join(d, "static")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make bin` (or point CNIPY_TEST_{'SRC_' if which == 'src' else ''}"
                    "BIN_DIR at launchers made with build/launchers.py DIR)", pytrace=False)
    return path


@pytest.fixture(params=["src", "bin"])
def ours(request) -> str:
    """Our static: from source, then the built binary."""
    return _ours(request, request.param)


@pytest.fixture
def ref() -> str:
    if not os.access(REF, os.X_OK):
        pytest.fail(f"{REF} missing (package containernetworking-plugins)", pytrace=False)
    return REF


@pytest.fixture
def host():
    """The throwaway namespace the plugins run in."""
    ns = Netns("sth")
    try:
        yield ns
    finally:
        ns.delete()


def conf(addresses: list | None = None, version: str = "1.1.0", **top) -> dict:
    """A network config whose ``ipam`` is static with ``addresses`` (default ADDRS);
    ``ipam_extra`` adds ipam keys."""
    ipam = {"type": "static", "addresses": ADDRS if addresses is None else addresses}
    ipam.update(top.pop("ipam_extra", None) or {})
    c = {"cniVersion": version, "name": "stnet", "type": "static", "ipam": ipam}
    c.update(top)
    return c


def call(binary: str, host: Netns, verb: str, config, *, args: str = "", netns: str = UNUSED_NETNS,
         ifname: str = "eth0", cid: str = "c1", timeout: float = 60):
    """One plugin process in ``host`` (GC and STATUS without attachment variables)."""
    attach = verb in ("ADD", "DEL", "CHECK")
    return run_plugin(binary, verb, config, containerid=cid if attach else "", ifname=ifname if attach else "",
                      netns=netns if verb in ("ADD", "CHECK") else "", args=args, path=os.path.dirname(binary),
                      in_netns=host.name, timeout=timeout)


def ips(out) -> list[tuple[str, str | None]]:
    """(address, gateway) of a successful 0.3.0+ ADD (asserting it succeeded)."""
    assert out.ok, out
    return [(ipc["address"], ipc.get("gateway")) for ipc in out.doc.get("ips", [])]


def no_traceback(out) -> None:
    """A result or exactly one error document on stdout, and no Python traceback anywhere."""
    assert b"Traceback" not in out.stderr and b"Traceback" not in out.stdout, out
    assert isinstance(out.doc, dict), f"stdout is not one JSON object: {out}"
    if not out.ok:
        assert isinstance(out.doc.get("code"), int) and isinstance(out.doc.get("msg"), str), out


def assert_error(out, code: int, *mentions: str) -> None:
    """A failure with ``code`` whose message names each of ``mentions``."""
    no_traceback(out)
    assert not out.ok and out.code == code, out
    for m in mentions:
        assert m in out.doc["msg"], f"the error should name {m!r}: {out}"


# -- every key, every version ---------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_every_key_in_every_version(ours, host, version):
    out = call(ours, host, "ADD", conf(version=version, ipam_extra={"routes": ROUTES, "dns": DNS}))
    assert out.ok, out
    if version in ("0.1.0", "0.2.0"):
        assert out.doc == {
            "cniVersion": version,
            "ip4": {"ip": V4, "gateway": GW4, "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.254"}]},
            "ip6": {"ip": V6, "gateway": GW6, "routes": [{"dst": "::/0"}]},
            "dns": DNS,
        }
        return
    want = [{"address": V4, "gateway": GW4}, {"address": V6, "gateway": GW6}]
    if version.startswith("0."):
        want = [dict(version=v, **ipc) for v, ipc in zip("46", want, strict=True)]
    # An IPAM result: no interfaces, no ips[].interface; every 1.1.0 route field kept.
    assert out.doc == {"cniVersion": version, "ips": want, "routes": ROUTES, "dns": DNS}


def test_host_bits_are_kept_and_text_is_canonical(ours, host):
    out = call(ours, host, "ADD", conf([{"address": "10.1.0.200/16"}, {"address": "FD00:0:0:0::0001:5/64"},
                                        {"address": "::ffff:10.2.0.5/120", "gateway": "10.2.0.1"}]))
    # As Go prints them: the address keeps its host bits; an IPv4-mapped address is IPv4.
    assert ips(out) == [("10.1.0.200/16", None), ("fd00::1:5/64", None), ("10.2.0.5/24", "10.2.0.1")]


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_old_versions_hold_one_address_per_family(ours, host, version):
    two_v4 = [{"address": V4}, {"address": "10.2.0.5/24"}]
    assert_error(call(ours, host, "ADD", conf(two_v4, version)), 7, "cniVersion", "10.1.0.5/24", "10.2.0.5/24")
    # The limit is on what the attachment gets: a runtime source replacing them is fine.
    out = call(ours, host, "ADD", conf(two_v4, version, runtimeConfig={"ips": ["10.3.0.5/24"]}))
    assert out.ok and out.doc["ip4"] == {"ip": "10.3.0.5/24"}, out


def test_keys_match_as_go_matches_them(ours, host):
    """Go field case and upper case read as the canonical keys (containerd sends capability
    keys in Go field case); the internal ``Address`` field of the reference's struct is no
    trap here (see test_address_key_in_go_field_case_vs_reference)."""
    plain = conf(ipam_extra={"routes": ROUTES, "dns": DNS}, runtimeConfig={"ips": ["10.1.0.8/24"]},
                 args={"cni": {"ips": ["10.1.0.7/24"]}})
    recased = {"cniVersion": "1.1.0", "Name": "stnet", "TYPE": "static",
               "IPAM": {"Type": "static",
                        "Addresses": [{"Address": V4, "Gateway": GW4}, {"ADDRESS": V6, "GATEWAY": GW6}],
                        "ROUTES": [{k.upper(): v for k, v in r.items()} for r in ROUTES],
                        "Dns": {k.capitalize(): v for k, v in DNS.items()}},
               "RuntimeConfig": {"IPs": ["10.1.0.8/24"]}, "ARGS": {"Cni": {"IPS": ["10.1.0.7/24"]}}}
    a, b = call(ours, host, "ADD", plain), call(ours, host, "ADD", recased)
    assert a.ok and b.ok and a.doc == b.doc, (a, b)
    assert ips(a) == [("10.1.0.8/24", GW4)]


# -- precedence, against the reference -------------------------------------------------------

# (id, ipam.addresses, CNI_ARGS, args.cni.ips, runtimeConfig.ips, ours, reference): each
# outcome is the list of (address, gateway), or an error code (the reference's: "error").
# The README's precedence table lists every row whose two outcomes differ, by this id.
PRECEDENCE = [
    ("config-only", ADDRS, "", None, None, [(V4, GW4), (V6, GW6)], [(V4, GW4), (V6, GW6)]),
    ("cni-args-ip-replaces", ADDRS, "IP=10.1.0.6/24", None, None,
     [("10.1.0.6/24", GW4)], [(V4, GW4), (V6, GW6), ("10.1.0.6/24", None)]),
    ("cni-args-ip-same-as-config", ADDRS, "IP=10.1.0.5/24", None, None,
     [(V4, GW4)], [(V4, GW4), (V6, GW6), (V4, None)]),
    ("cni-args-ip-and-gateway", ADDRS, "IP=10.1.0.6/24;GATEWAY=10.1.0.254", None, None,
     [("10.1.0.6/24", "10.1.0.254")], [(V4, GW4), (V6, GW6), ("10.1.0.6/24", "10.1.0.254")]),
    ("cni-args-gateway-on-config-address", ADDRS, "GATEWAY=10.1.0.254", None, None,
     [(V4, "10.1.0.254"), (V6, GW6)], [(V4, GW4), (V6, GW6)]),
    ("cni-args-dual-stack", [], "IP=10.1.0.6/24,fd00:1::6/64;GATEWAY=10.1.0.1,fd00:1::1", None, None,
     [("10.1.0.6/24", GW4), ("fd00:1::6/64", GW6)], [("10.1.0.6/24", GW4), ("fd00:1::6/64", GW6)]),
    ("cni-args-gateway-covers-nothing", ADDRS, "IP=10.1.0.6/24;GATEWAY=10.9.9.9", None, None,
     4, [(V4, GW4), (V6, GW6), ("10.1.0.6/24", None)]),
    ("args-ips-replace", ADDRS, "", ["10.1.0.7/24"], None, [("10.1.0.7/24", GW4)], [("10.1.0.7/24", None)]),
    ("args-ips-over-cni-args", ADDRS, "IP=10.1.0.6/24", ["10.1.0.7/24"], None,
     [("10.1.0.7/24", GW4)], [("10.1.0.7/24", None)]),
    ("capability-over-all", ADDRS, "IP=10.1.0.6/24;GATEWAY=10.1.0.254", ["10.1.0.7/24"],
     ["10.1.0.8/24", "fd00:1::8/64"],
     [("10.1.0.8/24", "10.1.0.254"), ("fd00:1::8/64", GW6)], [("10.1.0.8/24", None), ("fd00:1::8/64", None)]),
    ("capability-outside-config-subnets", ADDRS, "", None, ["192.168.5.5/24"],
     [("192.168.5.5/24", None)], [("192.168.5.5/24", None)]),
    ("empty-lists-fall-through", ADDRS, "", [], [], [(V4, GW4), (V6, GW6)], [(V4, GW4), (V6, GW6)]),
    ("bare-address-takes-config-prefix", ADDRS, "", ["10.1.0.9"], None, [("10.1.0.9/24", GW4)], "error"),
    ("bare-address-outside-config", ADDRS, "", ["192.168.5.5"], None, 7, "error"),
    ("no-address-at-all", [], "", None, None, 7, []),
    ("config-gateway-outside-subnets", [{"address": V4, "gateway": "10.9.0.1"}], "", None, None,
     7, [(V4, "10.9.0.1")]),
    ("config-gateway-other-family", [{"address": V4, "gateway": GW6}, {"address": V6}], "", None, None,
     7, [(V4, GW6), (V6, None)]),
    ("config-address-twice", [{"address": V4, "gateway": GW4}, {"address": "10.1.0.5/16"}], "", None, None,
     7, [(V4, GW4), ("10.1.0.5/16", None)]),
    ("ipv6-link-local-gateway", [{"address": V6, "gateway": "fe80::1"}], "", None, None,
     [(V6, "fe80::1")], [(V6, "fe80::1")]),
]


@pytest.mark.parametrize("case", PRECEDENCE, ids=[c[0] for c in PRECEDENCE])
def test_precedence_vs_reference(ours, ref, host, case):
    _, addresses, env, args_ips, rc_ips, want_ours, want_ref = case
    top: dict = {}
    if args_ips is not None:
        top["args"] = {"cni": {"ips": args_ips}}
    if rc_ips is not None:
        top["capabilities"] = {"ips": True}
        top["runtimeConfig"] = {"ips": rc_ips}
    c = conf(addresses, "1.0.0", **top)  # the reference (1.1.1) stops at 1.0.0
    mine, theirs = call(ours, host, "ADD", c, args=env), call(ref, host, "ADD", c, args=env)
    if isinstance(want_ours, int):
        assert_error(mine, want_ours)
    else:
        assert ips(mine) == want_ours
    if want_ref == "error":
        assert not theirs.ok, theirs
    else:
        assert ips(theirs) == want_ref, theirs


def test_routes_keep_every_field_unlike_the_reference(ours, ref, host):
    c = conf(version="1.0.0", ipam_extra={"routes": ROUTES, "dns": DNS})
    mine, theirs = call(ours, host, "ADD", c), call(ref, host, "ADD", c)
    assert mine.ok and theirs.ok, (mine, theirs)
    assert mine.doc["routes"] == ROUTES
    # Debian's reference 1.1.1 keeps dst and gw only; everything else is the same.
    assert theirs.doc["routes"] == [{k: v for k, v in r.items() if k in ("dst", "gw")} for r in ROUTES]
    assert {k: v for k, v in mine.doc.items() if k != "routes"} == {k: v for k, v in theirs.doc.items() if k != "routes"}


def test_address_key_in_go_field_case_vs_reference(ours, ref, host):
    """The reference's Address struct has an untagged ``Address net.IPNet``: the key
    ``"Address"`` lands there and fails; ``"version"`` lands on its untagged ``Version``."""
    for entry, why in (({"Address": V4}, "Go struct field Address.ipam.addresses.Address of type net.IPNet"),
                       ({"address": V4, "version": 4}, "Go struct field Address.ipam.addresses.Version")):
        c = conf([entry], "1.0.0")
        theirs = call(ref, host, "ADD", c)
        assert not theirs.ok and why in theirs.doc["msg"], theirs
        assert ips(call(ours, host, "ADD", c)) == [(V4, None)]


def test_cni_args_strict_but_shared_keys_accepted(ours, ref, host):
    c = conf(version="1.0.0")
    assert_error(call(ours, host, "ADD", c, args="IP=10.1.0.6/24;FOO=1"), 2, "FOO")
    assert ips(call(ours, host, "ADD", c, args="IP=10.1.0.6/24;FOO=1;IgnoreUnknown=1")) == [("10.1.0.6/24", GW4)]
    k8s = "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=u"
    assert ips(call(ours, host, "ADD", c, args=k8s)) == [(V4, GW4), (V6, GW6)]
    # The reference's strict parser fails on the keys every Kubernetes runtime sends.
    theirs = call(ref, host, "ADD", c, args=k8s)
    assert not theirs.ok and "unknown args" in theirs.doc["msg"], theirs


# -- validation and hostile input ------------------------------------------------------------

BAD = [
    # (id, ipam.addresses or None for the default, extra ipam keys, top-level keys, CNI_ARGS, code, names)
    ("no-ipam", None, None, {"ipam": None}, "", 7, ["ipam"]),
    ("addresses-not-a-list", {"address": V4}, {}, {}, "", 7, ["ipam.addresses"]),
    ("entry-not-an-object", [V4], {}, {}, "", 7, ["ipam.addresses[0]"]),
    ("address-missing", [{"gateway": GW4}], {}, {}, "", 7, ["ipam.addresses[0].address"]),
    ("address-not-a-string", [{"address": 5}], {}, {}, "", 7, ["ipam.addresses[0].address", "5"]),
    ("address-without-prefix", [{"address": "10.1.0.5"}], {}, {}, "", 7, ["ipam.addresses[0].address", "10.1.0.5"]),
    ("address-bad-prefix", [{"address": "10.1.0.5/33"}], {}, {}, "", 7, ["10.1.0.5/33"]),
    ("address-garbage", [{"address": "bogus/24"}], {}, {}, "", 7, ["bogus/24"]),
    ("gateway-garbage", [{"address": V4, "gateway": "bogus"}], {}, {}, "", 7, ["ipam.addresses[0].gateway", "bogus"]),
    ("gateway-not-a-string", [{"address": V4, "gateway": ["x"]}], {}, {}, "", 7, ["ipam.addresses[0].gateway"]),
    ("gateway-outside", [{"address": V4, "gateway": "10.2.0.1"}], {}, {}, "", 7,
     ["ipam.addresses[0].gateway", "10.2.0.1", "outside the subnet"]),
    ("gateway-other-family", [{"address": V4, "gateway": GW6}, {"address": V6}], {}, {}, "", 7,
     ["ipam.addresses[0].gateway", GW6]),
    ("address-twice", [{"address": V4}, {"address": V4}], {}, {}, "", 7, ["ipam.addresses[1].address"]),
    ("routes-not-a-list", None, {"routes": {"dst": "0.0.0.0/0"}}, {}, "", 7, ["ipam.routes"]),
    ("route-dst-garbage", None, {"routes": [{"dst": "bogus"}]}, {}, "", 7, ["ipam.routes[0].dst", "bogus"]),
    ("route-gw-other-family", None, {"routes": [{"dst": "0.0.0.0/0", "gw": GW6}]}, {}, "", 7, ["ipam.routes[0].gw"]),
    ("route-mtu-string", None, {"routes": [{"dst": "0.0.0.0/0", "mtu": "1400"}]}, {}, "", 7, ["ipam.routes[0].mtu"]),
    ("dns-not-an-object", None, {"dns": ["10.1.0.53"]}, {}, "", 7, ["ipam.dns"]),
    ("dns-nameservers-string", None, {"dns": {"nameservers": "10.1.0.53"}}, {}, "", 7, ["ipam.dns.nameservers"]),
    ("dns-nameserver-not-ip", None, {"dns": {"nameservers": ["ns.example"]}}, {}, "", 7,
     ["ipam.dns.nameservers[0]", "ns.example"]),
    ("runtime-ips-not-a-list", None, {}, {"runtimeConfig": {"ips": "10.1.0.8/24"}}, "", 7, ["runtimeConfig.ips"]),
    ("runtime-ips-number", None, {}, {"runtimeConfig": {"ips": [8]}}, "", 7, ["runtimeConfig.ips[0]"]),
    ("args-cni-not-an-object", None, {}, {"args": {"cni": ["x"]}}, "", 7, ["args.cni"]),
    ("args-ips-garbage-even-if-unused", None, {}, {"args": {"cni": {"ips": ["bogus"]}},
                                                   "runtimeConfig": {"ips": ["10.1.0.8/24"]}}, "", 7,
     ["args.cni.ips[0]", "bogus"]),
    ("cni-args-ip-garbage", None, {}, {}, "IP=10.1.0.6/24,bogus", 4, ["CNI_ARGS IP[1]", "bogus"]),
    ("cni-args-ip-empty-item", None, {}, {}, "IP=10.1.0.6/24,", 4, ["CNI_ARGS IP[1]"]),
    ("cni-args-gateway-garbage", None, {}, {}, "GATEWAY=bogus", 4, ["CNI_ARGS GATEWAY", "bogus"]),
    ("cni-args-gateway-covers-nothing", None, {}, {}, "GATEWAY=192.168.0.1", 4, ["CNI_ARGS GATEWAY", "192.168.0.1"]),
    ("zero-addresses", [], {}, {}, "", 7, ["ipam.addresses", "runtimeConfig.ips", "args.cni.ips", "CNI_ARGS IP"]),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_values_are_named(ours, host, case):
    _, addresses, ipam_extra, top, env, code, names = case
    c = conf(addresses, ipam_extra=ipam_extra, **top)
    if c["ipam"] is None:
        del c["ipam"]
    for verb in ("ADD", "CHECK"):  # CHECK reads the same sources, before anything else
        cc = dict(c, prevResult={"cniVersion": "1.1.0", "ips": [{"address": V4}]}) if verb == "CHECK" else c
        assert_error(call(ours, host, verb, cc, args=env), code, *names)


def test_hostile_types_never_trace(ours, host):
    """Every key given every JSON type: a result or one error document, never a traceback."""
    values = [None, True, 0, -1, 2**70, 1.5, "", "x" * 5000, [], [None], [{}], {}, {"a": [1]}]
    keys = [("ipam", "addresses"), ("ipam", "routes"), ("ipam", "dns"), ("runtimeConfig", "ips"), ("args", "cni")]
    for parent, key in keys:
        for v in values:
            c = conf()
            c.setdefault(parent, {})[key] = v
            for verb in ("ADD", "STATUS"):
                out = call(ours, host, verb, c)
                assert b"Traceback" not in out.stderr and (out.ok or isinstance(out.doc, dict)), (parent, key, v, out)
    for v in values:
        for entry_key in ("address", "gateway"):
            no_traceback(call(ours, host, "ADD", conf([{"address": V4, entry_key: v}])))
        no_traceback(call(ours, host, "ADD", conf(ipam_extra={"routes": [{"dst": "0.0.0.0/0", "gw": v, "mtu": v}]})))
        no_traceback(call(ours, host, "ADD", conf(ipam_extra={"dns": {"nameservers": v, "search": v}})))
        no_traceback(call(ours, host, "ADD", conf(args={"cni": {"ips": v}})))


def test_huge_lists_are_linear(ours, host):
    """100,000 addresses answer in seconds (no quadratic check); 5,000 GATEWAY values over
    20,000 runtime addresses too; a duplicate at the end of a huge list is found."""
    n = 100_000
    many = [{"address": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/16", "gateway": f"10.{i >> 16 & 255}.0.1"}
            for i in range(2, n + 2)]
    t = time.monotonic()
    out = call(ours, host, "ADD", conf(many), timeout=120)
    took = time.monotonic() - t
    no_traceback(out)
    assert out.ok and len(out.doc["ips"]) == n, out.rc
    assert took < 60, f"{n} addresses took {took:.1f} s"
    out = call(ours, host, "ADD", conf(many[:-1] + [{"address": many[0]["address"]}]), timeout=120)
    assert_error(out, 7, f"ipam.addresses[{n - 1}].address", "already given by ipam.addresses[0].address")
    gws = ",".join(f"10.0.{i >> 8 & 255}.{i & 255}" for i in range(1, 5001))
    rc = [f"10.0.{i >> 8 & 255}.{i & 255}/16" for i in range(5002, 25002)]
    t = time.monotonic()
    out = call(ours, host, "ADD", conf([], runtimeConfig={"ips": rc}), args=f"GATEWAY={gws}", timeout=120)
    took = time.monotonic() - t
    assert out.ok and {ipc["gateway"] for ipc in out.doc["ips"]} == {"10.0.19.136"}, out.rc  # the last value wins
    assert took < 60, f"5,000 gateways over 20,000 addresses took {took:.1f} s"


# -- DEL, GC, STATUS, versions -------------------------------------------------------------------

def test_del_gc_status(ours, host):
    for c in (conf(), conf([{"address": "bogus"}]), {"cniVersion": "1.1.0", "name": "stnet", "type": "static"}):
        out = call(ours, host, "DEL", c)  # nothing to release; a config broken since ADD never blocks it
        assert out.ok and out.stdout == b"", out
        out = call(ours, host, "GC", dict(c, **{"cni.dev/valid-attachments": []}))
        assert out.ok and out.stdout == b"", out
    out = call(ours, host, "STATUS", conf())
    assert out.ok and out.stdout == b"", out
    out = call(ours, host, "STATUS", conf([]))  # the runtime may name the addresses
    assert out.ok, out
    assert_error(call(ours, host, "STATUS", conf([{"address": "bogus"}])), 7, "ipam.addresses[0].address")
    # Version gating, as the Go skel does it.
    assert_error(call(ours, host, "CHECK", conf(version="0.3.1")), 1)
    for verb in ("GC", "STATUS"):
        assert_error(call(ours, host, verb, conf(version="1.0.0")), 1)
    out = call(ours, host, "VERSION", {"cniVersion": "1.1.0"})
    assert out.ok and out.doc["supportedVersions"] == list(VERSIONS), out


# -- CHECK against the kernel ----------------------------------------------------------------

class Pod:
    """A container namespace whose eth0 is one end of a veth pair (the other end in the
    host namespace), as an interface plugin leaves it, holding ``addresses``."""

    def __init__(self, host: Netns, addresses: list[str]) -> None:
        self.ctr = Netns("stc")
        self.host = host
        self.peer = unique("stv")
        try:
            sh("ip", "link", "add", self.peer, "type", "veth", "peer", "name", "eth0", "netns", self.ctr.name,
               ns=host.name)
            for a in addresses:
                self.ctr.run("ip", "addr", "add", a, "dev", "eth0", *(["nodad"] if ":" in a else []))
            self.ctr.run("ip", "link", "set", "eth0", "up")
            sh("ip", "link", "set", self.peer, "up", ns=host.name)
        except BaseException:
            self.ctr.delete()
            raise

    @property
    def path(self) -> str:
        return self.ctr.path

    def addresses(self) -> set[str]:
        return {f"{a['local']}/{a['prefixlen']}" for link in ip_json("addr", "show", "dev", "eth0", ns=self.ctr.name)
                for a in link.get("addr_info", []) if a.get("scope") == "global"}


@pytest.fixture
def pod(host):
    p = Pod(host, [V4, "10.1.0.7/24", V6])  # a secondary IPv4 address too: ioctls would not see it
    try:
        yield p
    finally:
        p.ctr.delete()


def _prev(entries: list[tuple[str, str | None]], version: str = "1.1.0") -> dict:
    return {"cniVersion": version, "ips": [dict({"address": a}, **({"gateway": g} if g else {})) for a, g in entries]}


def test_check_passes_on_what_add_gave(ours, host, pod):
    for version in ("0.4.0", "1.0.0", "1.1.0"):
        c = conf(version=version)
        out = call(ours, host, "ADD", c, netns=pod.path)
        out = call(ours, host, "CHECK", dict(c, prevResult=out.doc), netns=pod.path)
        assert out.ok and out.stdout == b"", out
    # The secondary address, from a runtime source.
    c = conf(runtimeConfig={"ips": ["10.1.0.7/24"]})
    out = call(ours, host, "CHECK", dict(c, prevResult=_prev([("10.1.0.7/24", GW4)])), netns=pod.path)
    assert out.ok, out
    # An interface plugin may add a gateway static did not give (bridge's isGateway).
    c = conf([{"address": V4}])
    out = call(ours, host, "CHECK", dict(c, prevResult=_prev([(V4, "10.1.0.1")])), netns=pod.path)
    assert out.ok, out


def test_check_fails_on_prev_result_mismatch(ours, ref, host, pod):
    c = conf(version="1.0.0")
    cases = [
        (_prev([(V4, GW4)], "1.0.0"), 102, "fd00:1::5/64", True),       # an address missing from prevResult
        (_prev([(V4, GW4), (V6, "fd00:1::9")], "1.0.0"), 103, "fd00:1::9", False),  # another gateway
        (_prev([("10.1.0.5/16", GW4), (V6, GW6)], "1.0.0"), 103, "10.1.0.5/16", True),  # another prefix
    ]
    for prev, code, named, ref_passes in cases:
        cc = dict(c, prevResult=prev)
        assert_error(call(ours, host, "CHECK", cc, netns=pod.path), code, named)
        # The reference only compares gateways of the addresses it finds.
        assert call(ref, host, "CHECK", cc, netns=pod.path).ok == ref_passes
    assert_error(call(ours, host, "CHECK", c, netns=pod.path), 7, "prevResult")


def test_check_looks_at_the_kernel(ours, ref, host, pod):
    c = conf(version="1.0.0")
    cc = dict(c, prevResult=_prev([(V4, GW4), (V6, GW6)], "1.0.0"))
    assert call(ours, host, "CHECK", cc, netns=pod.path).ok
    assert_error(call(ours, host, "CHECK", cc, netns=pod.path, ifname="eth1"), 102, "eth1")
    pod.ctr.run("ip", "addr", "del", V6, "dev", "eth0")
    assert_error(call(ours, host, "CHECK", cc, netns=pod.path), 102, V6, "eth0")
    assert call(ref, host, "CHECK", cc, netns=pod.path).ok  # the reference never looks
    pod.ctr.run("ip", "addr", "add", "fd00:1::5/96", "dev", "eth0", "nodad")  # the address, another prefix
    assert_error(call(ours, host, "CHECK", cc, netns=pod.path), 102, V6)
    pod.ctr.run("ip", "addr", "del", "fd00:1::5/96", "dev", "eth0")
    pod.ctr.run("ip", "addr", "add", V6, "dev", "eth0", "nodad")
    assert call(ours, host, "CHECK", cc, netns=pod.path).ok
    # A namespace that is gone, and a path that is no namespace.
    assert_error(call(ours, host, "CHECK", cc, netns="/var/run/netns/static-gone"), 8)
    assert_error(call(ours, host, "CHECK", cc, netns="/dev/null"), 8)


def test_check_fails_on_dad_failed_address(ours, host):
    """An IPv6 address that duplicate address detection refused is on the interface but
    unusable: 103. The veth peer, in another namespace, holds the same address."""
    addr = "fd00:7::5/64"
    pod = Pod(host, [])
    other = Netns("stp")
    try:
        sh("ip", "link", "set", pod.peer, "netns", other.name, ns=host.name)
        other.run("ip", "link", "set", pod.peer, "up")
        other.run("ip", "addr", "add", addr, "dev", pod.peer, "nodad")
        pod.ctr.run("ip", "addr", "add", addr, "dev", "eth0")  # with DAD
        deadline = time.monotonic() + 20
        while "dadfailed" not in pod.ctr.run("ip", "addr", "show", "dev", "eth0") and time.monotonic() < deadline:
            time.sleep(0.2)
        c = conf([{"address": addr}], prevResult=_prev([(addr, None)]))
        assert_error(call(ours, host, "CHECK", c, netns=pod.path), 103, addr, "duplicate address detection")
    finally:
        other.delete()
        pod.ctr.delete()


# -- through a real interface plugin -----------------------------------------------------------

@pytest.fixture
def plugin_dir(ours, tmp_path) -> str:
    """CNI_PATH for an interface plugin: our static (of this run) and our bridge, plus the
    reference bridge as ``ref-bridge`` (same directory, so both find this static)."""
    d = tmp_path / "cni"
    d.mkdir()
    bridge = os.path.join(os.path.dirname(ours), "bridge")
    if not os.access(bridge, os.X_OK):
        pytest.fail(f"{bridge} missing: run `make bin`", pytrace=False)
    os.symlink(ours, d / "static")
    os.symlink(bridge, d / "bridge")
    os.symlink(os.path.join(REF_BIN, "bridge"), d / "ref-bridge")
    return str(d)


@pytest.mark.parametrize("bridge", ["bridge", "ref-bridge"])
def test_bridge_gives_the_container_the_static_addresses(host, plugin_dir, bridge):
    """bridge with ``"ipam": {"type": "static"}`` (ours, and the reference bridge exec'ing our
    static): the container's eth0 holds the addresses, the default route goes via the
    gateway, CHECK (bridge's, which runs static's) passes and notices a removed address."""
    ctr = Netns("stc")
    host.run("ip", "link", "set", "lo", "up")
    brname = unique("stb")
    c = {"cniVersion": "1.0.0", "name": "stbr", "type": "bridge", "bridge": brname, "isGateway": True,
         "ipam": {"type": "static", "addresses": ADDRS, "routes": [{"dst": "0.0.0.0/0"}]}}
    binary = os.path.join(plugin_dir, bridge)

    def run(verb: str, cc: dict):
        return run_plugin(binary, verb, cc, containerid="c1", netns=ctr.path, ifname="eth0", path=plugin_dir,
                          in_netns=host.name)

    try:
        out = run("ADD", c)
        assert out.ok, out
        assert [(i["address"], i.get("gateway")) for i in out.doc["ips"]] == [(V4, GW4), (V6, GW6)]
        held = {f"{a['local']}/{a['prefixlen']}" for link in ip_json("addr", "show", "dev", "eth0", ns=ctr.name)
                for a in link["addr_info"] if a.get("scope") == "global"}
        assert held == {V4, V6}, held
        routes = ip_json("-4", "route", "show", "default", ns=ctr.name)
        assert [r.get("gateway") for r in routes] == [GW4], routes
        check_conf = dict(c, prevResult=out.doc)
        out = run("CHECK", check_conf)
        assert out.ok, out
        ctr.run("ip", "addr", "del", V4, "dev", "eth0")
        out = run("CHECK", check_conf)
        assert not out.ok, out
        if bridge == "bridge":  # ours runs IPAM CHECK first; static names the missing address
            assert out.code == 102 and V4 in out.doc["msg"], out
        out = run("DEL", c)
        assert out.ok, out
        assert not [link for link in ip_json("link", "show", ns=host.name) if link["ifname"].startswith("veth")]
    finally:
        ctr.delete()


def test_bridge_fails_cleanly_without_addresses(host, plugin_dir):
    """Zero addresses: static's code 7 reaches the runtime through bridge, and bridge leaves
    nothing (the reference static answers an empty result, on which macvlan fails with
    'IPAM plugin returned missing IP config')."""
    ctr = Netns("stc")
    brname = unique("stb")
    c = {"cniVersion": "1.0.0", "name": "stbr", "type": "bridge", "bridge": brname,
         "ipam": {"type": "static"}}
    try:
        out = run_plugin(os.path.join(plugin_dir, "bridge"), "ADD", c, containerid="c1", netns=ctr.path,
                         ifname="eth0", path=plugin_dir, in_netns=host.name)
        assert_error(out, 7, "ipam.addresses")
        assert not [link for link in ip_json("link", "show", ns=ctr.name) if link["ifname"] != "lo"]
        assert not [link for link in ip_json("link", "show", ns=host.name) if link["ifname"].startswith("veth")]
    finally:
        run_plugin(os.path.join(plugin_dir, "bridge"), "DEL", c, containerid="c1", netns=ctr.path, ifname="eth0",
                   path=plugin_dir, in_netns=host.name)
        ctr.delete()


# -- start-up ----------------------------------------------------------------------------------

# Never imported by a static verb (README, "Start-up budget").
NETLINK_PYROUTE2 = ("pyroute2", "cnilib.link")
HEAVY = {"json", "re", "subprocess", "ipaddress", "threading", "socket", "typing", "logging", "ctypes", "os",
         "dataclasses", "enum"}


def test_no_verb_imports_pyroute2_or_heavy_modules(request, host, pod):
    src = _ours(request, "src")
    with open(src) as f:
        python = f.readline()[2:].split()[0]
    c = conf(prevResult=_prev([(V4, GW4), (V6, GW6)]))
    for verb in ("ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION"):
        attach = verb in ("ADD", "CHECK", "DEL")
        env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": verb, "CNI_CONTAINERID": "c1" if attach else "",
               "CNI_NETNS": pod.path if attach else "", "CNI_IFNAME": "eth0" if attach else "",
               "CNI_PATH": os.path.dirname(src)}
        p = subprocess.run(["ip", "netns", "exec", host.name, python, "-X", "importtime", "-IS", src],
                           input=json.dumps(c).encode(), env=env, capture_output=True, timeout=30, check=False)
        assert p.returncode == 0, (verb, p)
        imported = {line.split("|")[-1].strip() for line in p.stderr.decode().splitlines()
                    if line.startswith("import time:")}
        assert imported, "no import trace"
        bad = sorted(m for m in imported if m.startswith(NETLINK_PYROUTE2) or m in HEAVY)
        assert not bad, f"{verb} imported {bad}"
        if verb == "CHECK":
            assert "cnilib.rawaddr" in imported  # the kernel was asked, by hand
