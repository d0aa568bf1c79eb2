"""loopback: real processes against a real namespace; ours and the reference side by side."""

from __future__ import annotations

import os

import pytest

from tests.helpers import ip_json, run_plugin

CONF = {"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback"}


def _lo(ns) -> dict:
    return ip_json("addr", "show", "lo", ns=ns.name)[0]


def _run(bin_dir, verb, ns, conf=CONF, netns=None):
    return run_plugin(os.path.join(bin_dir, "loopback"), verb, conf, containerid="c1", path=bin_dir,
                      netns=ns.path if netns is None else netns, ifname="lo")


def test_add_brings_lo_up_and_reports_its_addresses(our_bin, netns):
    assert "UP" not in _lo(netns)["flags"]
    out = _run(our_bin, "ADD", netns)
    assert out.ok, out
    assert "UP" in _lo(netns)["flags"]
    assert out.doc == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": netns.path}],
        "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}],
        "dns": {},
    }


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_same_result_as_reference(our_bin, ref_bin, version):
    from tests.helpers import Netns

    conf = dict(CONF, cniVersion=version)
    with Netns() as a, Netns() as b:
        ours = _run(our_bin, "ADD", a, conf)
        ref = _run(ref_bin, "ADD", b, conf)
        assert ours.ok and ref.ok, (ours, ref)
        ours.doc["interfaces"][0]["sandbox"] = ref.doc["interfaces"][0]["sandbox"]
        if version != "1.0.0":
            # Debian's reference loopback (1.1.1) prints its 1.0 result unconverted, so
            # 0.3.x/0.4.0 results lack ips[].version, which those schemas require.
            assert "version" not in ref.doc["ips"][0]
            for ipc in ours.doc["ips"]:
                assert ipc.pop("version") == ("4" if "." in ipc["address"] else "6")
        assert ours.doc == ref.doc


def test_old_versions_get_their_own_schema(our_bin, netns):
    # The reference (Debian 1.1.1) prints a 1.0 layout labelled 0.2.0 here; the spec and
    # libcni's conversion give the ip4/ip6 layout.
    out = _run(our_bin, "ADD", netns, dict(CONF, cniVersion="0.2.0"))
    assert out.ok, out
    assert out.doc == {"cniVersion": "0.2.0", "ip4": {"ip": "127.0.0.1/8"}, "ip6": {"ip": "::1/128"}, "dns": {}}


def test_prev_result_passes_through(our_bin, netns):
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24"}], "dns": {}}
    out = _run(our_bin, "ADD", netns, dict(CONF, prevResult=prev))
    assert out.ok, out
    assert out.doc == prev
    assert "UP" in _lo(netns)["flags"]


def test_check_and_del(our_bin, netns):
    add = _run(our_bin, "ADD", netns)
    assert add.ok, add
    check = _run(our_bin, "CHECK", netns, dict(CONF, prevResult=add.doc))
    assert check.ok and check.stdout == b"", check
    dele = _run(our_bin, "DEL", netns)
    assert dele.ok and dele.stdout == b"", dele
    assert "UP" not in _lo(netns)["flags"]
    check = _run(our_bin, "CHECK", netns, dict(CONF, prevResult=add.doc))
    assert not check.ok and check.doc["msg"] == "loopback interface is down", check
    # DEL twice is fine.
    assert _run(our_bin, "DEL", netns).ok


def test_del_without_or_after_namespace(our_bin, netns):
    assert _run(our_bin, "DEL", netns, netns="").ok
    path = netns.path
    netns.delete()
    out = _run(our_bin, "DEL", netns, netns=path)
    assert out.ok, out


def test_add_refuses_a_path_that_is_not_a_namespace(our_bin, tmp_path, netns):
    f = tmp_path / "not-a-netns"
    f.write_text("")
    out = _run(our_bin, "ADD", netns, netns=str(f))
    assert out.rc != 0 and out.code == 8, out
    out = _run(our_bin, "ADD", netns, netns="/nonexistent/netns")
    assert out.rc != 0 and out.code == 8, out
