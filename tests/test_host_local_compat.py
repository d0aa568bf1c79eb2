"""host-local: ours and the reference (/usr/lib/cni/host-local, 1.1.1) on the same stores.

The reference speaks cniVersion up to 1.0.0 and needs CNI_PATH (the helpers set it).
"""

from __future__ import annotations

import os

import pytest

from tests.test_host_local_common import addresses, hl, leases, make_conf, read, store_dir

DUAL = {"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/64", "rangeStart": "fd00:9::10"}]],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.254"}, {"dst": "::/0"}]}


def _store_bytes(data_dir) -> dict[str, bytes]:
    """Every file of the store but ``lock`` (its mode differs; both are empty)."""
    d = store_dir(data_dir)
    return {f: read(os.path.join(d, f)) for f in sorted(os.listdir(d)) if f != "lock"}


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.0.0"])
def test_same_results_as_the_reference(our_bin, ref_bin, tmp_path, version):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.0.0.53\ndomain example.org\nsearch a.example\noptions ndots:2\n")
    ipam = dict(DUAL, resolvConf=str(resolv))
    for args in ("", "IP=10.9.0.77/24"):
        cid = "x" + str(len(args))
        ours = hl(our_bin, "ADD", make_conf(tmp_path / "ours", ipam, version=version), cid=cid, args=args)
        ref = hl(ref_bin, "ADD", make_conf(tmp_path / "ref", ipam, version=version), cid=cid, args=args)
        assert ours.ok and ref.ok, (ours, ref)
        assert ours.doc == ref.doc


def test_same_operations_give_byte_identical_stores(our_bin, ref_bin, tmp_path):
    steps = [("ADD", "a", "eth0", ""), ("ADD", "b", "eth0", "IP=10.9.0.50"), ("ADD", "a", "eth1", ""),
             ("DEL", "a", "eth0", ""), ("ADD", "c", "eth0", "IP=fd00:9::abcd"), ("DEL", "zz", "eth0", ""),
             ("ADD", "d", "eth0", "")]
    for impl, bin_dir in (("ours", our_bin), ("ref", ref_bin)):
        conf = make_conf(tmp_path / impl, DUAL, version="1.0.0")
        for verb, cid, ifname, args in steps:
            out = hl(bin_dir, verb, conf, cid=cid, ifname=ifname, args=args)
            assert out.ok, (impl, verb, cid, out)
    ours, ref = _store_bytes(tmp_path / "ours"), _store_bytes(tmp_path / "ref")
    assert ours == ref
    # round robin went on after the requested addresses (.50, then ::abcd)
    assert ours["10.9.0.51"] == b"a\r\neth1" and ours["10.9.0.53"] == b"d\r\neth0"
    assert ours["last_reserved_ip.1"] == b"fd00:9::abce"


def test_mixed_use_never_hands_out_a_leased_address(our_bin, ref_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL, version="1.0.0")
    got = []
    for i in range(6):  # alternate: each continues the other's round robin
        got.append(addresses(hl(ref_bin if i % 2 else our_bin, "ADD", conf, cid=f"c{i}")))
    assert got == [[f"10.9.0.{i + 2}/24", f"fd00:9::{i + 10}/64"] for i in range(6)]
    # requested addresses leased by the other implementation are refused by both
    assert hl(ref_bin, "ADD", conf, cid="r1", args="IP=10.9.0.2").code == 999
    out = hl(our_bin, "ADD", conf, cid="r2", args="IP=10.9.0.3")
    assert out.code == 101 and "10.9.0.3" in out.doc["msg"] and "c1" in out.doc["msg"], out
    assert len(leases(tmp_path)) == 12


def test_each_releases_and_checks_the_others_leases(our_bin, ref_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL, version="1.0.0")
    a = hl(ref_bin, "ADD", conf, cid="by-ref")
    b = hl(our_bin, "ADD", conf, cid="by-ours")
    assert a.ok and b.ok
    assert hl(our_bin, "CHECK", dict(conf, prevResult=a.doc), cid="by-ref").ok
    assert hl(ref_bin, "CHECK", dict(conf, prevResult=b.doc), cid="by-ours").ok
    assert hl(our_bin, "DEL", conf, cid="by-ref").ok
    assert sorted(set(leases(tmp_path).values())) == [b"by-ours\r\neth0"]
    assert hl(ref_bin, "DEL", conf, cid="by-ours").ok
    assert leases(tmp_path) == {}
    assert hl(ref_bin, "CHECK", conf, cid="by-ours").code == 999
    assert hl(our_bin, "CHECK", conf, cid="by-ref").code == 102


def test_exhaustion_is_shared(our_bin, ref_bin, tmp_path):
    conf = make_conf(tmp_path, {"subnet": "10.9.0.0/29"}, version="1.0.0")
    for i in range(5):
        assert hl(ref_bin if i < 3 else our_bin, "ADD", conf, cid=f"c{i}").ok
    out = hl(our_bin, "ADD", conf, cid="late")
    assert out.code == 100, out
    assert "no IP addresses available" in hl(ref_bin, "ADD", conf, cid="late").doc["msg"]
    assert hl(ref_bin, "DEL", conf, cid="c4").ok  # a lease of ours, released by the reference
    assert addresses(hl(our_bin, "ADD", conf, cid="late")) == ["10.9.0.6/29"]


def test_legacy_leases_are_released_by_both(our_bin, ref_bin, tmp_path):
    os.makedirs(store_dir(tmp_path))
    for ip in ("10.9.0.7", "10.9.0.8"):
        with open(os.path.join(store_dir(tmp_path), ip), "w") as f:
            f.write("old-" + ip[-1])
    conf = make_conf(tmp_path, DUAL, version="1.0.0")
    assert hl(our_bin, "DEL", conf, cid="old-7").ok
    assert hl(ref_bin, "DEL", conf, cid="old-8").ok
    assert leases(tmp_path) == {}


def test_reference_moves_last_reserved_on_a_failed_add_and_we_do_not(our_bin, ref_bin, tmp_path):
    ipam = {"ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "10.10.0.0/30"}]]}
    for impl, bin_dir in (("ours", our_bin), ("ref", ref_bin)):
        conf = make_conf(tmp_path / impl, ipam, version="1.0.0")
        assert hl(bin_dir, "ADD", conf, cid="a").ok
        out = hl(bin_dir, "ADD", conf, cid="b")  # set 1 is full
        assert not out.ok, out
        assert leases(tmp_path / impl) == {"10.10.0.2": b"a\r\neth0", "10.9.0.2": b"a\r\neth0"}
    assert read(os.path.join(store_dir(tmp_path / "ours"), "last_reserved_ip.0")) == b"10.9.0.2"
    assert read(os.path.join(store_dir(tmp_path / "ref"), "last_reserved_ip.0")) == b"10.9.0.3"


def test_our_gc_cleans_a_store_the_reference_wrote(our_bin, ref_bin, tmp_path):
    conf = make_conf(tmp_path, DUAL, version="1.0.0")
    for cid in ("keep", "leaked1", "leaked2"):
        assert hl(ref_bin, "ADD", conf, cid=cid).ok
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    gc = dict(conf, cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})
    out = hl(our_bin, "GC", gc)
    assert out.ok, out
    assert sorted(set(leases(tmp_path).values())) == [b"keep\r\neth0"]
    assert hl(ref_bin, "CHECK", conf, cid="keep").ok
