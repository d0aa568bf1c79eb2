"""Hostile input and bad luck (issue 12): special files as CNI_NETNS, kernel name templates
as interface names, results a version cannot hold, plugins delegating to themselves,
ambiguous owner keys. Each case runs real plugin processes in throwaway namespaces, with
a timeout: a hang is a failure, not a stuck test run.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers import ip_json, run_plugin, sh
from tests.test_bridge_common import BRIDGE, Host, host  # noqa: F401 - host is a fixture

TIMEOUT = 15  # seconds: every case answers in well under one


@pytest.fixture
def special_files(tmp_path):
    """Paths that are not network namespaces: a FIFO, a directory, a char device, a
    socket, a regular file."""
    import socket

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    (tmp_path / "file").write_text("x")
    yield {"fifo": str(fifo), "dir": str(tmp_path), "chardev": "/dev/null", "socket": str(tmp_path / "sock"),
           "file": str(tmp_path / "file")}
    sock.close()


def _lo(our_bin: str, verb: str, nspath: str):
    conf = {"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback"}
    return run_plugin(os.path.join(our_bin, "loopback"), verb, conf, containerid="c1", netns=nspath,
                      ifname="lo", timeout=TIMEOUT)


@pytest.mark.parametrize("kind", ["fifo", "dir", "chardev", "socket", "file"])
@pytest.mark.parametrize("verb", ["ADD", "CHECK", "DEL"])
def test_loopback_refuses_a_special_file_as_netns(our_bin, special_files, kind, verb):
    out = _lo(our_bin, verb, special_files[kind])
    assert out.rc != 0 and out.code == 8, out
    assert special_files[kind] in out.doc["msg"], out


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_bridge_refuses_a_special_file_as_netns(host, special_files, kind):
    """ADD answers code 8 at once and creates nothing; DEL (no veth of ours exists, so it
    would look into the container) answers too."""
    before = host.state()
    out = host.run("ADD", host.conf(), netns=special_files[kind])
    assert out.code == 8, out
    assert host.state() == before
    out = host.run("DEL", host.conf(), netns=special_files[kind])
    assert out.code == 8 and special_files[kind] in out.doc["msg"], out


# ---------------------------------------------------------------- name templates

@pytest.mark.parametrize("name", ["br%d", "%d", "cni%s", "a%%b"])
def test_bridge_name_template_is_refused(host, name):
    before = host.state()
    c = host.container()
    out = host.run("ADD", host.conf(bridge=name), c)
    assert out.code == 7 and "bridge" in out.doc["msg"] and "template" in out.doc["msg"], out
    assert host.state() == before, "nothing may be created"
    assert not [l for l in ip_json("link", "show", ns=host.name) if l["ifname"].startswith(("br", "cni"))]


@pytest.mark.parametrize("plugin", ["bridge", "loopback", "portmap", "host-local"])
def test_ifname_template_is_refused(host, our_bin, plugin):
    c = host.container()
    conf = host.conf() if plugin == "bridge" else {"cniVersion": "1.0.0", "name": "n", "type": plugin}
    out = run_plugin(os.path.join(our_bin, plugin), "ADD", conf, containerid="c1", netns=c.path,
                     ifname="eth%d", path=our_bin, in_netns=host.name, timeout=TIMEOUT)
    assert out.code == 4 and "template" in out.doc["msg"], out
    assert [l["ifname"] for l in ip_json("link", "show", ns=c.name)] == ["lo"]


# ---------------------------------------------------------------- results a version cannot hold

@pytest.mark.parametrize("version", [None, "0.1.0", "0.2.0"])
def test_l2_only_bridge_at_a_version_without_room_for_it(host, version):
    """An L2-only bridge has no IP address for a 0.1.0/0.2.0 result: refused before
    anything is created (it used to leave the veth pair)."""
    c = host.container()
    conf = host.conf(ipam={})
    if version is None:
        del conf["cniVersion"]
    else:
        conf["cniVersion"] = version
    before = host.state([c])
    out = host.run("ADD", conf, c)
    assert out.code == 7 and "cniVersion" in out.doc["msg"], out
    assert host.state([c]) == before
    conf["cniVersion"] = "0.3.0"
    assert host.run("ADD", conf, c).ok


# ---------------------------------------------------------------- delegation cycles

@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_bridge_delegating_to_itself_is_refused(host, verb):
    c = host.container()
    conf = host.conf(ipam={"type": "bridge"})
    if verb == "CHECK":
        conf["prevResult"] = {"cniVersion": "1.1.0", "interfaces": [{"name": BRIDGE}], "dns": {}}
    out = host.run(verb, conf, c if verb in ("ADD", "CHECK", "DEL") else None,
                   ifname="eth0" if verb in ("ADD", "CHECK", "DEL") else "")
    assert out.code == 7 and "itself" in out.doc["msg"], out


@pytest.mark.parametrize("verb", ["ADD", "DEL", "GC", "STATUS"])
def test_indirect_delegation_cycle_stops(host, src_bin, tmp_path, verb):
    """Two copies of bridge naming each other (A's ipam is B; B reads the same config, so
    B delegates to B again): the depth limit ends it with code 7 and nothing is left. (An
    ADD stops even earlier: the nested bridge finds CNI_IFNAME taken by its caller.)"""
    bindir = tmp_path / "cycle"
    bindir.mkdir()
    for name in ("brA", "brB"):
        shutil.copy(os.path.join(src_bin, "bridge"), bindir / name)
    c = host.container()
    conf = host.conf(type="brA", ipam={"type": "brB"})
    attach = verb in ("ADD", "DEL")
    out = run_plugin(str(bindir / "brA"), verb, conf, containerid="c1" if attach else "",
                     netns=c.path if attach else "", ifname="eth0" if attach else "",
                     path=str(bindir), in_netns=host.name, timeout=60)
    assert out.rc != 0, out
    if verb != "ADD":
        assert out.code == 7 and "deep" in out.doc["msg"], out
    assert [l["ifname"] for l in ip_json("link", "show", ns=c.name)] == ["lo"]
    assert not host.ports()


# ---------------------------------------------------------------- macspoofchk owner keys

def _spoof_chains(host) -> list[str]:
    text = sh("nft", "list", "table", "bridge", "nat", ns=host.name, check=False)
    return sorted(l.split()[1] for l in text.splitlines() if l.strip().startswith("chain cni-br-iface-"))


def test_macspoofchk_owner_keys_do_not_collide(host):
    """(a-b, c) and (a, b-c) wrote one chain (``cni-br-iface-a-b-c``): the second ADD
    replaced the first's allowlist and either DEL removed both."""
    c1, c2 = host.container(), host.container()
    conf = host.conf(macspoofchk=True)
    r1 = host.add(conf, c1, cid="a-b", ifname="c")
    r2 = host.add(conf, c2, cid="a", ifname="b-c")
    chains = _spoof_chains(host)
    assert len(chains) == 4, chains  # two per attachment
    assert host.check(conf, r1, c1, cid="a-b", ifname="c").ok
    assert host.check(conf, r2, c2, cid="a", ifname="b-c").ok
    host.delete(conf, c1, cid="a-b", ifname="c")
    assert len(_spoof_chains(host)) == 2
    assert host.check(conf, r2, c2, cid="a", ifname="b-c").ok, "the other attachment's spoof check must stay"
    host.delete(conf, c2, cid="a", ifname="b-c")
    assert _spoof_chains(host) == []
