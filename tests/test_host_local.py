"""host-local: our plugin as real processes against real stores under tmp_path.

Reference comparisons and concurrency live in test_host_local_compat.py and
test_host_local_concurrency.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from tests.test_host_local_common import NETNS, addresses, hl, leases, make_conf, read, store_dir

DUAL = {"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/64", "rangeStart": "fd00:9::10"}]]}
ROUTES = [{"dst": "0.0.0.0/0", "gw": "10.9.0.254", "mtu": 1400, "advmss": 1360, "priority": 10, "table": 100,
           "scope": 0},
          {"dst": "::/0"}]


# -- result shape ----------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.0.0", "1.1.0"])
def test_dual_stack_result_per_version(our_bin, tmp_path, version):
    out = hl(our_bin, "ADD", make_conf(tmp_path, dict(DUAL, routes=ROUTES), version=version))
    assert out.ok, out
    if version == "0.2.0":
        assert out.doc == {
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.9.0.2/24", "gateway": "10.9.0.1",
                    "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.254"}]},
            "ip6": {"ip": "fd00:9::10/64", "gateway": "fd00:9::1", "routes": [{"dst": "::/0"}]},
            "dns": {},
        }
        return
    ips = [{"address": "10.9.0.2/24", "gateway": "10.9.0.1"},
           {"address": "fd00:9::10/64", "gateway": "fd00:9::1"}]
    if version == "0.4.0":
        ips = [dict(version=v, **ip) for v, ip in zip("46", ips, strict=True)]
    # An IPAM result has no interfaces and no ips[].interface; every 1.1.0 route field is kept.
    assert out.doc == {"cniVersion": version, "ips": ips, "routes": ROUTES, "dns": {}}
    assert list(out.doc["ips"][0]) == (["version"] if version == "0.4.0" else []) + ["address", "gateway"]


def test_every_config_key(our_bin, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\n; also a comment\nnameserver 10.0.0.53\nnameserver  fd00::53 # x\n"
                      "domain example.org\nsearch a.example b.example\nsearch c.example\n"
                      "options ndots:2 edns0\nbogus\nnameserver\n")
    ipam = {
        # legacy single range: becomes set 0 of the config (after runtimeConfig.ipRanges)
        "subnet": "10.30.0.0/24", "rangeStart": "10.30.0.50", "rangeEnd": "10.30.0.60",
        "gateway": "10.30.0.254",
        "ranges": [[{"subnet": "fd00:30::/120", "gateway": "fd00:30::fe"}]],
        "routes": [{"dst": "10.40.0.0/16", "gw": "10.30.0.254"}],
        "resolvConf": str(resolv),
    }
    data = tmp_path / "data"
    ip_ranges = [[{"subnet": "10.20.0.0/24", "rangeStart": "10.20.0.100"}]]
    conf = make_conf(data, ipam, runtimeConfig={"ipRanges": ip_ranges})
    out = hl(our_bin, "ADD", conf)
    assert out.ok, out
    assert out.doc == {
        "cniVersion": "1.1.0",
        "ips": [{"address": "10.20.0.100/24", "gateway": "10.20.0.1"},
                {"address": "10.30.0.50/24", "gateway": "10.30.0.254"},
                {"address": "fd00:30::1/120", "gateway": "fd00:30::fe"}],
        "routes": [{"dst": "10.40.0.0/16", "gw": "10.30.0.254"}],
        "dns": {"nameservers": ["10.0.0.53", "fd00::53"], "domain": "example.org",
                "search": ["a.example", "b.example", "c.example"], "options": ["ndots:2", "edns0"]},
    }
    # dataDir is honoured; the round-robin files are indexed by set position.
    assert sorted(leases(data)) == ["10.20.0.100", "10.30.0.50", "fd00:30::1"]
    assert read(os.path.join(store_dir(data), "last_reserved_ip.0")) == b"10.20.0.100"
    assert read(os.path.join(store_dir(data), "last_reserved_ip.2")) == b"fd00:30::1"


def test_keys_match_case_insensitively_like_go(our_bin, tmp_path):
    # Go's encoding/json matches struct fields case-insensitively; the reference reads
    # "DataDir" as dataDir, so we must put leases in the same place.
    conf = make_conf(tmp_path / "ignored", {"DATADIR": str(tmp_path / "real"), "Subnet": "10.9.0.0/24"})
    del conf["ipam"]["dataDir"]
    assert addresses(hl(our_bin, "ADD", conf)) == ["10.9.0.2/24"]
    assert list(leases(tmp_path / "real")) == ["10.9.0.2"]


def test_default_data_dir_is_var_lib_cni_networks(our_bin, tmp_path):
    # Without dataDir the store is /var/lib/cni/networks/<name>. Run the plugin in a private
    # mount namespace with a tmpfs over /var/lib, so the machine's /var/lib/cni is untouched.
    conf = make_conf(tmp_path, {"subnet": "10.9.0.0/24"}, name="hl-default")
    del conf["ipam"]["dataDir"]
    (tmp_path / "conf.json").write_text(json.dumps(conf))
    script = (f"set -e; mount -t tmpfs cni-test /var/lib; "
              f"CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS={NETNS} CNI_IFNAME=eth0 CNI_PATH={our_bin} "
              f"{our_bin}/host-local < {tmp_path}/conf.json >/dev/null; "
              f"cat /var/lib/cni/networks/hl-default/10.9.0.2")
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True)
    assert p.returncode == 0 and p.stdout == b"c1\r\neth0", p


# -- defaults, round robin, exhaustion ---------------------------------------------------

def test_defaults_gateway_skipped_and_exhaustion(our_bin, tmp_path):
    conf = make_conf(tmp_path, {"subnet": "10.9.0.0/29"})
    got = [addresses(hl(our_bin, "ADD", conf, cid=f"c{i}"))[0] for i in range(5)]
    # gateway .1 = rangeStart (skipped), rangeEnd = broadcast-1 = .6
    assert got == [f"10.9.0.{i}/29" for i in range(2, 7)]
    out = hl(our_bin, "ADD", conf, cid="c9")
    assert out.code == 100 and "no IP addresses available in range set" in out.doc["msg"], out
    assert "10.9.0.1-10.9.0.6" in out.doc["msg"]


def test_ipv6_defaults_use_the_last_address(our_bin, tmp_path):
    conf = make_conf(tmp_path, {"subnet": "fd00:5::/125"})
    got = [addresses(hl(our_bin, "ADD", conf, cid=f"c{i}"))[0] for i in range(6)]
    assert got == [f"fd00:5::{i}/125" for i in range(2, 8)]
    assert hl(our_bin, "ADD", conf, cid="c9").code == 100


def test_gateway_inside_the_range_is_skipped(our_bin, tmp_path):
    conf = make_conf(tmp_path, {"subnet": "10.9.0.0/29", "gateway": "10.9.0.4"})
    got = [addresses(hl(our_bin, "ADD", conf, cid=f"c{i}"))[0] for i in range(5)]
    assert got == ["10.9.0.1/29", "10.9.0.2/29", "10.9.0.3/29", "10.9.0.5/29", "10.9.0.6/29"]
    assert hl(our_bin, "ADD", conf, cid="c9").code == 100


def test_gateway_outside_the_subnet_is_accepted_like_the_reference(our_bin, tmp_path):
    out = hl(our_bin, "ADD", make_conf(tmp_path, {"subnet": "10.9.0.0/24", "gateway": "10.8.0.1"}))
    assert out.ok and out.doc["ips"] == [{"address": "10.9.0.1/24", "gateway": "10.8.0.1"}], out


def test_round_robin_from_last_reserved(our_bin, tmp_path):
    conf = make_conf(tmp_path, {"ranges": [[{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.10",
                                             "rangeEnd": "10.9.0.12"}]]})
    last = os.path.join(store_dir(tmp_path), "last_reserved_ip.0")
    assert addresses(hl(our_bin, "ADD", conf, cid="a")) == ["10.9.0.10/24"]
    assert addresses(hl(our_bin, "ADD", conf, cid="b")) == ["10.9.0.11/24"]
    assert read(last) == b"10.9.0.11"
    assert hl(our_bin, "DEL", conf, cid="a").ok
    # .10 is free again, but round robin goes on from .11 first
    assert addresses(hl(our_bin, "ADD", conf, cid="c")) == ["10.9.0.12/24"]
    assert addresses(hl(our_bin, "ADD", conf, cid="d")) == ["10.9.0.10/24"]  # wrapped around
    assert read(last) == b"10.9.0.10"
    out = hl(our_bin, "ADD", conf, cid="e")
    assert out.code == 100, out


def test_round_robin_across_ranges_of_a_set(our_bin, tmp_path):
    conf = make_conf(tmp_path, {"ranges": [[
        {"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.10", "rangeEnd": "10.9.0.11"},
        {"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.1", "rangeEnd": "10.10.0.2"},  # .1 is its gateway
    ]]})
    got = [addresses(hl(our_bin, "ADD", conf, cid=f"c{i}"))[0] for i in range(3)]
    assert got == ["10.9.0.10/24", "10.9.0.11/24", "10.10.0.2/24"]
    assert hl(our_bin, "ADD", conf, cid="c9").code == 100


def test_last_reserved_outside_the_set_restarts_at_range_start(our_bin, tmp_path):
    conf = make_conf(tmp_path, {"subnet": "10.9.0.0/24"})
    os.makedirs(store_dir(tmp_path))
    with open(os.path.join(store_dir(tmp_path), "last_reserved_ip.0"), "w") as f:
        f.write("192.168.1.1")
    assert addresses(hl(our_bin, "ADD", conf)) == ["10.9.0.2/24"]


# -- requested addresses -----------------------------------------------------------------

def test_requested_ip_from_cni_args(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    # the /prefix is ignored: the subnet's prefix is what the result carries
    got = addresses(hl(our_bin, "ADD", conf, cid="a", args="IP=10.9.0.50/16"))
    assert got == ["10.9.0.50/24", "fd00:9::10/64"]
    got = addresses(hl(our_bin, "ADD", conf, cid="b", args="IP=fd00:9::99"))
    assert got == ["10.9.0.51/24", "fd00:9::99/64"]


def test_requested_ips_from_args_and_runtime_config(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL, args={"cni": {"ips": ["10.9.0.60", "fd00:9::60/64"]}})
    assert addresses(hl(our_bin, "ADD", conf, cid="a")) == ["10.9.0.60/24", "fd00:9::60/64"]
    conf = make_conf(tmp_path, DUAL, runtimeConfig={"ips": ["10.9.0.70/8"]})
    assert addresses(hl(our_bin, "ADD", conf, cid="b")) == ["10.9.0.70/24", "fd00:9::61/64"]
    # runtimeConfig.ips and args.cni.ips add up, as in the reference
    conf = make_conf(tmp_path, DUAL, runtimeConfig={"ips": ["fd00:9::80"]},
                     args={"cni": {"ips": ["10.9.0.80"]}})
    assert addresses(hl(our_bin, "ADD", conf, cid="c")) == ["10.9.0.80/24", "fd00:9::80/64"]
    # ... and so do runtimeConfig.ips and CNI_ARGS IP
    conf = make_conf(tmp_path, DUAL, runtimeConfig={"ips": ["10.9.0.90"]})
    got = addresses(hl(our_bin, "ADD", conf, cid="d", args="IP=fd00:9::90"))
    assert got == ["10.9.0.90/24", "fd00:9::90/64"]


def test_args_cni_ips_take_precedence_over_cni_args_ip(our_bin, tmp_path):
    # CONVENTIONS.md: with args.cni.ips present, CNI_ARGS IP is ignored. (The reference
    # requests both and fails: they cannot both fit in one range set.)
    conf = make_conf(tmp_path, DUAL, args={"cni": {"ips": ["10.9.0.60"]}})
    assert addresses(hl(our_bin, "ADD", conf, args="IP=10.9.0.61")) == ["10.9.0.60/24", "fd00:9::10/64"]
    assert "10.9.0.61" not in leases(tmp_path)
    # an empty args.cni.ips does not count
    conf = make_conf(tmp_path, DUAL, args={"cni": {"ips": []}})
    got = addresses(hl(our_bin, "ADD", conf, cid="c2", args="IP=10.9.0.62"))
    assert got == ["10.9.0.62/24", "fd00:9::11/64"]


@pytest.mark.parametrize("args, extra, code, words", [
    ("IP=10.99.0.1", {}, 100, ["10.99.0.1", "not in any range set"]),
    ("IP=10.9.0.12", {}, 100, ["10.9.0.12", "gateway"]),
    ("IP=10.9.0.5", {}, 100, ["10.9.0.5", "outside its range 10.9.0.10-10.9.0.20"]),
    ("", {"args": {"cni": {"ips": ["10.9.0.11", "10.9.0.13"]}}}, 100,
     ["10.9.0.13", "one address per range set"]),
    ("IP=10.9.0.15", {}, 101, ["10.9.0.15", "leased to container holder"]),
    ("IP=nonsense", {}, 4, ["CNI_ARGS IP", "nonsense"]),
    ("", {"args": {"cni": {"ips": ["10.9.0.256"]}}}, 7, ["args.cni.ips[0]", "10.9.0.256"]),
    ("", {"runtimeConfig": {"ips": ["../../etc/passwd"]}}, 7, ["runtimeConfig.ips[0]", "../../etc/passwd"]),
])
def test_requested_ip_errors(our_bin, tmp_path, args, extra, code, words):
    ipam = {"ranges": [[{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.10", "rangeEnd": "10.9.0.20",
                         "gateway": "10.9.0.12"}],
                       [{"subnet": "fd00:9::/64"}]]}
    conf = make_conf(tmp_path, ipam)
    assert hl(our_bin, "ADD", conf, cid="holder", args="IP=10.9.0.15").ok
    before = leases(tmp_path)
    last = read(os.path.join(store_dir(tmp_path), "last_reserved_ip.1"))
    out = hl(our_bin, "ADD", make_conf(tmp_path, ipam, **extra), cid="c2", args=args)
    assert not out.ok and out.code == code, out
    for w in words:
        assert w in out.doc["msg"], out
    assert leases(tmp_path) == before  # nothing taken, nothing left behind
    assert read(os.path.join(store_dir(tmp_path), "last_reserved_ip.1")) == last


def test_duplicate_allocation_is_refused(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    assert hl(our_bin, "ADD", conf).ok
    before = leases(tmp_path)
    out = hl(our_bin, "ADD", conf)
    assert out.code == 101 and "duplicate allocation is not allowed" in out.doc["msg"], out
    assert leases(tmp_path) == before
    # another ifname of the same container is another attachment
    assert addresses(hl(our_bin, "ADD", conf, ifname="eth1")) == ["10.9.0.3/24", "fd00:9::11/64"]


# -- all or nothing --------------------------------------------------------------------

def test_failed_add_releases_everything_and_keeps_last_reserved(our_bin, tmp_path):
    conf = make_conf(tmp_path, {"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "10.10.0.0/30"}]]})
    lr0 = os.path.join(store_dir(tmp_path), "last_reserved_ip.0")
    lr1 = os.path.join(store_dir(tmp_path), "last_reserved_ip.1")
    assert addresses(hl(our_bin, "ADD", conf, cid="a")) == ["10.9.0.2/24", "10.10.0.2/30"]
    before = leases(tmp_path)
    out = hl(our_bin, "ADD", conf, cid="b")  # set 0 has room, set 1 (one address) is full
    assert out.code == 100 and "range set 1" in out.doc["msg"], out
    assert leases(tmp_path) == before
    assert read(lr0) == b"10.9.0.2" and read(lr1) == b"10.10.0.2"
    assert hl(our_bin, "DEL", conf, cid="a").ok
    # the failed attempt did not advance set 0's round robin
    assert addresses(hl(our_bin, "ADD", conf, cid="b")) == ["10.9.0.3/24", "10.10.0.2/30"]


def test_failed_requested_ip_in_a_later_set_releases_earlier_sets(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    assert hl(our_bin, "ADD", conf, cid="a", args="IP=fd00:9::77").ok
    before = leases(tmp_path)
    out = hl(our_bin, "ADD", conf, cid="b", args="IP=fd00:9::77")
    assert out.code == 101 and "fd00:9::77" in out.doc["msg"], out
    assert leases(tmp_path) == before
    assert read(os.path.join(store_dir(tmp_path), "last_reserved_ip.0")) == b"10.9.0.2"


# -- DEL and CHECK ---------------------------------------------------------------------

def test_del_releases_every_lease_of_the_attachment_only(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    for cid, ifname in (("a", "eth0"), ("a", "eth1"), ("b", "eth0")):
        assert hl(our_bin, "ADD", conf, cid=cid, ifname=ifname).ok
    assert len(leases(tmp_path)) == 6
    out = hl(our_bin, "DEL", conf, cid="a", ifname="eth0")
    assert out.ok and out.stdout == b"", out
    assert sorted(leases(tmp_path).values()) == sorted([b"a\r\neth1"] * 2 + [b"b\r\neth0"] * 2)
    assert hl(our_bin, "DEL", conf, cid="a", ifname="eth0").ok  # twice is fine
    assert hl(our_bin, "DEL", conf, cid="never", ifname="eth0").ok


def test_del_without_store_creates_nothing(our_bin, tmp_path):
    data = tmp_path / "data"
    out = hl(our_bin, "DEL", make_conf(data, DUAL))
    assert out.ok and out.stdout == b"", out
    assert not data.exists()


def test_del_releases_legacy_leases(our_bin, tmp_path):
    os.makedirs(store_dir(tmp_path))
    for ip, content in (("10.9.0.7", b"old"), ("fd00:9::7", b"old\n"), ("10.9.0.8", b"other")):
        with open(os.path.join(store_dir(tmp_path), ip), "wb") as f:
            f.write(content)
    conf = make_conf(tmp_path, DUAL)
    # a legacy lease of the container counts as its allocation (no duplicate)
    assert hl(our_bin, "ADD", conf, cid="old").code == 101
    check = hl(our_bin, "CHECK", conf, cid="old")
    assert check.ok, check
    assert hl(our_bin, "DEL", conf, cid="old").ok
    assert leases(tmp_path) == {"10.9.0.8": b"other"}


def test_del_works_with_a_config_whose_ranges_became_invalid(our_bin, tmp_path):
    assert hl(our_bin, "ADD", make_conf(tmp_path, DUAL)).ok
    broken = make_conf(tmp_path, {"subnet": "10.9.0.0/32"})
    assert hl(our_bin, "ADD", broken, cid="x").code == 7
    assert hl(our_bin, "DEL", broken).ok
    assert leases(tmp_path) == {}


def test_check(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    add = hl(our_bin, "ADD", conf)
    assert add.ok, add
    check = hl(our_bin, "CHECK", dict(conf, prevResult=add.doc))
    assert check.ok and check.stdout == b"", check
    assert hl(our_bin, "CHECK", conf).ok  # without prevResult: some lease exists
    # another attachment has none
    out = hl(our_bin, "CHECK", conf, ifname="eth1")
    assert out.code == 102 and "c1" in out.doc["msg"], out
    # a prevResult address that is not (or no longer) ours fails CHECK
    os.unlink(os.path.join(store_dir(tmp_path), "fd00:9::10"))
    out = hl(our_bin, "CHECK", dict(conf, prevResult=add.doc))
    assert out.code == 102 and "fd00:9::10" in out.doc["msg"], out
    assert hl(our_bin, "DEL", conf).ok
    out = hl(our_bin, "CHECK", conf)
    assert out.code == 102, out


def test_cni_args_unknown_keys(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    out = hl(our_bin, "ADD", conf, args="FOO=bar")
    assert out.code == 2 and "FOO" in out.doc["msg"], out
    assert leases(tmp_path) == {}
    assert hl(our_bin, "ADD", conf, args="IgnoreUnknown=1;FOO=bar;K8S_POD_NAME=p").ok


# -- validation ------------------------------------------------------------------------

BAD = [
    # (id, ipam, top-level extra, expected words in msg)
    ("no-ipam", None, {}, ["ipam"]),
    ("no-ranges", {}, {}, ["ipam.ranges"]),
    ("ranges-null-and-no-subnet", {"ranges": None}, {}, ["ipam.ranges"]),
    ("v4-/31", {"subnet": "10.9.0.0/31"}, {}, ["ipam.subnet", "10.9.0.0/31", "too small"]),
    ("v4-/32", {"subnet": "10.9.0.0/32"}, {}, ["ipam.subnet", "10.9.0.0/32", "too small"]),
    ("v6-/127", {"ranges": [[{"subnet": "fd00::/127"}]]}, {}, ["ipam.ranges[0][0].subnet", "fd00::/127"]),
    ("v6-/128", {"ranges": [[{"subnet": "fd00::/128"}]]}, {}, ["ipam.ranges[0][0].subnet", "fd00::/128"]),
    ("host-bits", {"subnet": "10.9.0.1/24"}, {}, ["ipam.subnet", "10.9.0.1/24", "host bits", "10.9.0.0/24"]),
    ("subnet-garbage", {"subnet": "banana"}, {}, ["ipam.subnet", "banana"]),
    ("subnet-empty", {"subnet": ""}, {}, ["ipam.subnet", "''"]),
    ("subnet-number", {"subnet": 10}, {}, ["ipam.subnet", "10", "string"]),
    ("range-without-subnet", {"ranges": [[{"rangeStart": "10.9.0.2"}]]}, {}, ["ipam.ranges[0][0].subnet"]),
    ("start-outside", {"subnet": "10.9.0.0/24", "rangeStart": "10.9.1.5"}, {},
     ["ipam.rangeStart", "10.9.1.5"]),
    ("end-outside", {"ranges": [[{"subnet": "10.9.0.0/24", "rangeEnd": "10.8.0.5"}]]}, {},
     ["ipam.ranges[0][0].rangeEnd", "10.8.0.5"]),
    ("end-wrong-family", {"subnet": "10.9.0.0/24", "rangeEnd": "fd00::5"}, {}, ["ipam.rangeEnd", "fd00::5"]),
    ("start-after-end", {"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.20", "rangeEnd": "10.9.0.10"}, {},
     ["ipam.rangeStart", "10.9.0.20", "after rangeEnd 10.9.0.10"]),
    ("start-is-broadcast", {"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.255"}, {},
     ["ipam.rangeStart", "10.9.0.255"]),
    ("start-malformed", {"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.300"}, {},
     ["ipam.rangeStart", "10.9.0.300"]),
    ("gateway-malformed", {"subnet": "10.9.0.0/24", "gateway": "10.9.0.x"}, {}, ["ipam.gateway", "10.9.0.x"]),
    ("gateway-wrong-family", {"subnet": "10.9.0.0/24", "gateway": "fd00::1"}, {},
     ["ipam.gateway", "fd00::1"]),
    ("gateway-number", {"subnet": "10.9.0.0/24", "gateway": 1}, {}, ["ipam.gateway", "1"]),
    ("legacy-key-malformed-without-subnet",
     {"rangeStart": "nope", "ranges": [[{"subnet": "10.9.0.0/24"}]]}, {},
     ["ipam.rangeStart", "nope"]),
    ("ranges-string", {"ranges": "10.9.0.0/24"}, {}, ["ipam.ranges", "10.9.0.0/24"]),
    ("set-not-list", {"ranges": [{"subnet": "10.9.0.0/24"}]}, {}, ["ipam.ranges[0]", "10.9.0.0/24"]),
    ("set-empty", {"ranges": [[]]}, {}, ["ipam.ranges[0]", "empty range set"]),
    ("range-not-object", {"ranges": [["10.9.0.0/24"]]}, {}, ["ipam.ranges[0][0]", "10.9.0.0/24"]),
    ("mixed-families", {"ranges": [[{"subnet": "10.9.0.0/24"}, {"subnet": "fd00::/64"}]]}, {},
     ["ipam.ranges[0][1].subnet", "fd00::/64", "families"]),
    ("overlap-in-set", {"ranges": [[{"subnet": "10.9.0.0/24"}, {"subnet": "10.9.0.0/25"}]]}, {},
     ["ipam.ranges[0][1].subnet", "10.9.0.0/25", "overlaps"]),
    ("overlap-across-sets", {"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "10.9.0.128/25"}]]}, {},
     ["ipam.ranges[1][0].subnet", "10.9.0.128/25", "overlaps", "ipam.ranges[0]"]),
    ("overlap-legacy-and-ranges", {"subnet": "10.9.0.0/24", "ranges": [[{"subnet": "10.9.0.0/16"}]]}, {},
     ["ipam.ranges[0][0].subnet", "10.9.0.0/16", "overlaps"]),
    ("overlap-runtime-ipRanges", {"subnet": "10.9.0.0/24"},
     {"runtimeConfig": {"ipRanges": [[{"subnet": "10.9.0.0/24"}]]}},
     ["ipam.subnet", "10.9.0.0/24", "overlaps"]),
    ("two-v4-sets-at-0.2.0", {"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "10.10.0.0/24"}]]},
     {"cniVersion": "0.2.0"}, ["cniVersion", "0.2.0", "IPv4"]),
    ("two-v6-sets-at-0.1.0", {"ranges": [[{"subnet": "fd00:1::/64"}], [{"subnet": "fd00:2::/64"}]]},
     {"cniVersion": "0.1.0"}, ["cniVersion", "0.1.0", "IPv6"]),
    ("dataDir-number", {"subnet": "10.9.0.0/24", "dataDir": 5}, {}, ["ipam.dataDir", "5"]),
    ("resolvConf-list", {"subnet": "10.9.0.0/24", "resolvConf": ["/etc/resolv.conf"]}, {},
     ["ipam.resolvConf"]),
    ("resolvConf-missing", {"subnet": "10.9.0.0/24", "resolvConf": "/nonexistent/resolv.conf"}, {},
     ["ipam.resolvConf", "/nonexistent/resolv.conf"]),
    ("routes-string", {"subnet": "10.9.0.0/24", "routes": "0.0.0.0/0"}, {}, ["ipam.routes", "0.0.0.0/0"]),
    ("route-no-dst", {"subnet": "10.9.0.0/24", "routes": [{"gw": "10.9.0.1"}]}, {}, ["ipam.routes[0].dst"]),
    ("route-bad-dst", {"subnet": "10.9.0.0/24", "routes": [{"dst": "default"}]}, {},
     ["ipam.routes[0].dst", "default"]),
    ("route-bad-gw", {"subnet": "10.9.0.0/24", "routes": [{"dst": "0.0.0.0/0", "gw": "gw"}]}, {},
     ["ipam.routes[0].gw", "gw"]),
    ("route-mtu-string", {"subnet": "10.9.0.0/24", "routes": [{"dst": "0.0.0.0/0", "mtu": "1400"}]}, {},
     ["ipam.routes[0].mtu", "1400"]),
    ("route-table-bool", {"subnet": "10.9.0.0/24", "routes": [{"dst": "0.0.0.0/0", "table": True}]}, {},
     ["ipam.routes[0].table", "True"]),
    ("ipRanges-not-list", {}, {"runtimeConfig": {"ipRanges": {"subnet": "10.9.0.0/24"}}},
     ["runtimeConfig.ipRanges"]),
    ("runtime-ips-not-list", {"subnet": "10.9.0.0/24"}, {"runtimeConfig": {"ips": "10.9.0.5"}},
     ["runtimeConfig.ips", "10.9.0.5"]),
    ("args-cni-not-object", {"subnet": "10.9.0.0/24"}, {"args": {"cni": ["10.9.0.5"]}},
     ["args.cni", "10.9.0.5"]),
    ("args-ips-number", {"subnet": "10.9.0.0/24"}, {"args": {"cni": {"ips": [5]}}}, ["args.cni.ips[0]", "5"]),
]


@pytest.mark.parametrize("ipam, top, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_is_code_7_and_creates_nothing(our_bin, tmp_path, ipam, top, words):
    data = tmp_path / "data"
    conf = make_conf(data, ipam or {}, **top)
    if ipam is None:
        del conf["ipam"]
    if ipam and "dataDir" in ipam:
        conf["ipam"]["dataDir"] = ipam["dataDir"]
    out = hl(our_bin, "ADD", conf)
    assert not out.ok and out.code == 7, out
    for w in words:
        assert w in out.doc["msg"], (w, out.doc["msg"])
    assert not data.exists()
    assert sorted(os.listdir(tmp_path)) == []


# -- GC --------------------------------------------------------------------------------

def _gc(our_bin, conf, **keys):
    conf = dict(conf, **keys)
    out = hl(our_bin, "GC", conf)
    assert out.ok and out.stdout == b"", out
    return out


def test_gc_releases_leases_not_in_valid_attachments(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    for cid, ifname in (("a", "eth0"), ("a", "eth1"), ("b", "eth0")):
        assert hl(our_bin, "ADD", conf, cid=cid, ifname=ifname).ok
    # legacy and crash leftovers: a container-ID-only lease of "a" (kept: "a" is valid),
    # one of "gone" (removed) and an empty file from a writer that died (removed)
    for ip, content in (("10.9.0.100", b"a"), ("10.9.0.101", b"gone"), ("10.9.0.102", b"")):
        with open(os.path.join(store_dir(tmp_path), ip), "wb") as f:
            f.write(content)
    _gc(our_bin, conf, **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]})
    assert sorted(leases(tmp_path).values()) == [b"a", b"a\r\neth0", b"a\r\neth0"]
    assert hl(our_bin, "CHECK", conf, cid="a").ok
    assert hl(our_bin, "CHECK", conf, cid="b").code == 102
    # the store still works: the freed addresses are handed out again
    assert hl(our_bin, "ADD", conf, cid="b").ok


@pytest.mark.parametrize("keys", [{}, {"cni.dev/valid-attachments": None}, {"cni.dev/attachments": None}],
                         ids=["missing", "null", "legacy-null"])
def test_gc_without_a_list_removes_nothing(our_bin, tmp_path, keys):
    conf = make_conf(tmp_path, DUAL)
    assert hl(our_bin, "ADD", conf).ok
    before = leases(tmp_path)
    _gc(our_bin, conf, **keys)
    assert leases(tmp_path) == before


def test_gc_accepts_the_legacy_key_and_an_empty_list(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    assert hl(our_bin, "ADD", conf, cid="a").ok
    assert hl(our_bin, "ADD", conf, cid="b").ok
    _gc(our_bin, conf, **{"cni.dev/attachments": [{"containerID": "b", "ifname": "eth0"}]})
    assert sorted(set(leases(tmp_path).values())) == [b"b\r\neth0"]
    _gc(our_bin, conf, **{"cni.dev/valid-attachments": []})
    assert leases(tmp_path) == {}


def test_gc_edge_cases(our_bin, tmp_path):
    conf = make_conf(tmp_path / "data", DUAL)
    # no store at all: nothing to do, nothing created
    _gc(our_bin, conf, **{"cni.dev/valid-attachments": []})
    assert not (tmp_path / "data").exists()
    out = hl(our_bin, "GC", dict(conf, **{"cni.dev/valid-attachments": {"containerID": "a"}}))
    assert out.code == 7 and "cni.dev/valid-attachments" in out.doc["msg"], out
    out = hl(our_bin, "GC", dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "a"}]}))
    assert out.code == 7 and "cni.dev/valid-attachments[0]" in out.doc["msg"], out
    # GC is a 1.1.0 verb
    out = hl(our_bin, "GC", dict(conf, cniVersion="1.0.0", **{"cni.dev/valid-attachments": []}))
    assert out.code == 1, out


# -- STATUS ----------------------------------------------------------------------------

def test_status_ok_and_exhausted(our_bin, tmp_path):
    conf = make_conf(tmp_path, {"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "10.10.0.0/30"}]]})
    out = hl(our_bin, "STATUS", conf)
    assert out.ok and out.stdout == b"", out
    assert sorted(os.listdir(store_dir(tmp_path))) == ["lock"]  # the write probe is gone
    assert hl(our_bin, "ADD", conf).ok
    out = hl(our_bin, "STATUS", conf)
    assert out.code == 50 and "range set 1" in out.doc["msg"] and "10.10.0.1-10.10.0.2" in out.doc["msg"], out
    assert hl(our_bin, "DEL", conf).ok
    assert hl(our_bin, "STATUS", conf).ok


def test_status_unusable_data_dir(our_bin, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = hl(our_bin, "STATUS", make_conf(blocker / "data", DUAL))
    assert out.code == 50 and str(blocker) in out.doc["msg"], out


def test_status_read_only_data_dir(our_bin, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "cni-test-ro", str(ro)], check=True)
    try:
        out = hl(our_bin, "STATUS", make_conf(ro, DUAL))
        assert out.code == 50 and "Read-only" in out.doc["msg"], out
        out = hl(our_bin, "ADD", make_conf(ro, DUAL))
        assert out.code == 5, out
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_status_bad_config_is_code_7(our_bin, tmp_path):
    out = hl(our_bin, "STATUS", make_conf(tmp_path / "data", {"subnet": "10.9.0.0/32"}))
    assert out.code == 7, out
    assert not (tmp_path / "data").exists()


# -- files and paths -------------------------------------------------------------------

def test_store_files_are_0600_and_byte_exact(our_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL)
    assert hl(our_bin, "ADD", conf, cid="abc", ifname="net1").ok
    d = store_dir(tmp_path)
    assert sorted(os.listdir(d)) == ["10.9.0.2", "fd00:9::10", "last_reserved_ip.0", "last_reserved_ip.1",
                                     "lock"]
    for f in os.listdir(d):
        assert stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode) == 0o600, f
    assert read(os.path.join(d, "10.9.0.2")) == b"abc\r\nnet1"
    assert read(os.path.join(d, "fd00:9::10")) == b"abc\r\nnet1"
    assert read(os.path.join(d, "lock")) == b""
    assert read(os.path.join(d, "last_reserved_ip.1")) == b"fd00:9::10"


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "."])
def test_network_names_cannot_leave_the_data_dir(our_bin, tmp_path, name):
    data = tmp_path / "data"
    out = hl(our_bin, "ADD", make_conf(data, DUAL, name=name))
    assert out.code == 7 and "name" in out.doc["msg"], out
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("cid, ifname, code", [("../../etc", "eth0", 4), ("c1", "../x", 4), ("c1", "a/b", 4),
                                               ("-c", "eth0", 4), ("c1", "..", 4)])
def test_container_id_and_ifname_cannot_become_paths(our_bin, tmp_path, cid, ifname, code):
    out = hl(our_bin, "ADD", make_conf(tmp_path / "data", DUAL), cid=cid, ifname=ifname)
    assert out.code == code, out
    assert os.listdir(tmp_path) == []


def test_symlinks_in_the_store_are_never_followed(our_bin, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"c1\r\neth0")
    d = store_dir(tmp_path / "data")
    os.makedirs(d)
    # the next candidate address, the round-robin file and a lease all point outside
    os.symlink(str(victim), os.path.join(d, "10.9.0.2"))
    os.symlink(str(outside / "lr"), os.path.join(d, "last_reserved_ip.0"))
    os.symlink(str(victim), os.path.join(d, "10.9.0.9"))
    conf = make_conf(tmp_path / "data", DUAL)
    assert addresses(hl(our_bin, "ADD", conf)) == ["10.9.0.3/24", "fd00:9::10/64"]
    assert hl(our_bin, "DEL", conf).ok
    assert victim.read_bytes() == b"c1\r\neth0"
    assert sorted(os.listdir(outside)) == ["victim"]
    assert os.path.islink(os.path.join(d, "10.9.0.2")) and os.path.islink(os.path.join(d, "10.9.0.9"))
