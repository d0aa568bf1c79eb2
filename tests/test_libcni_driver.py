"""The libcni driver (conformance/libcni.py + cnidriver): real plugins, real namespaces.

Plugins run as a runtime runs them: through libcni 1.1.2 (Debian), here with the
reference plugins in /usr/lib/cni and a spy plugin. Anything that creates host-side
links runs with the driver inside a throwaway "host" namespace, so the machine's own
namespace is never touched; libcni's cache goes to a temporary CNI_CACHE_DIR.
"""

from __future__ import annotations

import json
import os
import random
import stat
import textwrap
import time
import uuid

import pytest

from conformance import libcni
from conformance.libcni import LibCNI, build, cnitool_container_id, write_conflist
from tests.helpers import Netns, ip_json, unique

pytestmark = pytest.mark.root


@pytest.fixture(scope="session")
def driver() -> str:
    """The built cnidriver (never an upstream cnitool: these tests need its additions)."""
    return build()


@pytest.fixture
def dirs(tmp_path):
    """conf dir, libcni cache dir and host-local data dir, all under tmp_path."""
    return {k: str(tmp_path / k) for k in ("conf", "cache", "ipam")}


@pytest.fixture
def host_ns():
    """A throwaway "host" namespace the driver runs in (bridge, veth ends live there)."""
    ns = Netns("cndh")
    try:
        yield ns
    finally:
        ns.delete()


def _cache_file(cache_dir: str, network: str, cid: str, ifname: str = "eth0") -> str:
    return os.path.join(cache_dir, "results", f"{network}-{cid}-{ifname}")


def _addrs(ns: Netns, ifname: str) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for link in ip_json("addr", "show", "dev", ifname, ns=ns.name)
            for a in link.get("addr_info", [])]


def test_build_is_cached(driver):
    t = time.monotonic()
    assert build() == driver
    assert time.monotonic() - t < 1
    assert os.access(driver, os.X_OK)
    assert driver.startswith(libcni.CACHE_ROOT)


def test_driver_path_prefers_named_cnitool(monkeypatch, driver):
    monkeypatch.setenv("CNITOOL", "/opt/x/cnitool")
    assert libcni.driver_path() == "/opt/x/cnitool"
    monkeypatch.setenv("CNITOOL", "")
    assert libcni.driver_path() == driver
    assert libcni.is_upstream("/opt/x/cnitool") and not libcni.is_upstream(driver)


def test_loopback_add_check_del(driver, dirs, netns):
    write_conflist(dirs["conf"], "lo-net", [{"type": "loopback"}])
    cni = LibCNI(["/usr/lib/cni"], dirs["conf"], dirs["cache"], driver=driver)
    cid = unique("ctr")

    out = cni.add("lo-net", netns.path, ifname="lo", container_id=cid)
    assert out.ok, out
    assert out.doc["cniVersion"] == "1.0.0"
    assert {ip["address"] for ip in out.doc["ips"]} >= {"127.0.0.1/8"}
    assert "UP" in ip_json("link", "show", "lo", ns=netns.name)[0]["flags"]
    cached = json.load(open(_cache_file(dirs["cache"], "lo-net", cid, "lo")))
    assert cached["kind"] == "cniCacheV1" and cached["result"] == out.doc

    assert cni.check("lo-net", netns.path, ifname="lo", container_id=cid).ok
    out = cni.delete("lo-net", netns.path, ifname="lo", container_id=cid)
    assert out.ok, out
    assert os.listdir(os.path.join(dirs["cache"], "results")) == []


def test_default_container_id_is_cnitools(driver, dirs, netns):
    write_conflist(dirs["conf"], "lo-net", [{"type": "loopback"}])
    cni = LibCNI("/usr/lib/cni", dirs["conf"], dirs["cache"], driver=driver)
    assert cni.add("lo-net", netns.path, ifname="lo").ok
    assert os.path.exists(_cache_file(dirs["cache"], "lo-net", cnitool_container_id(netns.path), "lo"))
    assert cni.delete("lo-net", netns.path, ifname="lo").ok


def test_bridge_host_local_in_throwaway_host_namespace(driver, dirs, host_ns, netns):
    bridge = unique("cnd")
    subnet = f"10.201.{random.randint(1, 254)}"
    write_conflist(dirs["conf"], "br-net", [{
        "type": "bridge", "bridge": bridge, "isGateway": True,
        "ipam": {"type": "host-local", "dataDir": dirs["ipam"], "subnet": f"{subnet}.0/24"},
    }])
    cni = LibCNI(["/usr/lib/cni"], dirs["conf"], dirs["cache"], driver=driver, in_netns=host_ns.name)
    cid = unique("ctr")

    out = cni.add("br-net", netns.path, container_id=cid)
    assert out.ok, out
    assert out.doc["cniVersion"] == "1.0.0"
    assert [ip["address"] for ip in out.doc["ips"]] == [f"{subnet}.2/24"]
    assert out.doc["ips"][0]["gateway"] == f"{subnet}.1"
    assert f"{subnet}.2/24" in _addrs(netns, "eth0")
    # The bridge and the host end of the veth are in the host namespace, not the machine's.
    assert f"{subnet}.1/24" in _addrs(host_ns, bridge)
    assert bridge not in {l["ifname"] for l in ip_json("link", "show")}
    cache = _cache_file(dirs["cache"], "br-net", cid)
    assert json.load(open(cache))["result"] == out.doc

    out = cni.check("br-net", netns.path, container_id=cid)
    assert out.ok, out
    out = cni.delete("br-net", netns.path, container_id=cid)
    assert out.ok, out
    assert not os.path.exists(cache)
    assert not any(l["ifname"] == "eth0" for l in ip_json("link", "show", ns=netns.name))
    # A second DEL (no cached result any more) still succeeds.
    assert cni.delete("br-net", netns.path, container_id=cid).ok


def test_plugin_error_keeps_its_code(driver, dirs, netns):
    write_conflist(dirs["conf"], "bad-ver", [{"type": "loopback"}], cni_version="0.99.0")
    cni = LibCNI(["/usr/lib/cni"], dirs["conf"], dirs["cache"], driver=driver)
    out = cni.add("bad-ver", netns.path, ifname="lo", container_id=unique("ctr"))
    assert not out.ok and out.rc == 1
    assert out.code == 1, out
    assert "incompatible" in out.message.lower() or "0.99.0" in out.message, out
    assert not os.path.exists(os.path.join(dirs["cache"], "results"))


def test_missing_plugin_binary(driver, dirs, netns):
    write_conflist(dirs["conf"], "ghost", [{"type": "no-such-plugin"}])
    cni = LibCNI(["/usr/lib/cni"], dirs["conf"], dirs["cache"], driver=driver)
    out = cni.add("ghost", netns.path, container_id=unique("ctr"))
    assert not out.ok and out.code == 0, out
    assert "no-such-plugin" in out.message
    out = cni.validate("ghost")
    assert not out.ok and "no-such-plugin" in out.message, out


def test_check_refused_by_libcni_before_0_4_0(driver, dirs, netns):
    write_conflist(dirs["conf"], "old", [{"type": "loopback"}], cni_version="0.3.1")
    cni = LibCNI(["/usr/lib/cni"], dirs["conf"], dirs["cache"], driver=driver)
    out = cni.check("old", netns.path, ifname="lo", container_id="c1")
    assert not out.ok and out.code == 0
    assert "does not support the CHECK command" in out.message


SPY = textwrap.dedent("""\
    #!/usr/bin/python3
    import json, os, sys
    data = sys.stdin.read()
    with open({log!r}, "a") as f:
        f.write(json.dumps({{"env": dict(os.environ), "stdin": data}}) + "\\n")
    cmd = os.environ.get("CNI_COMMAND")
    if cmd == "VERSION":
        print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}}))
    elif cmd == "ADD":
        print(json.dumps({{"cniVersion": json.loads(data)["cniVersion"],
                          "ips": [{{"address": "192.0.2.7/24"}}]}}))
    """)


@pytest.fixture
def spy(tmp_path):
    """A plugin ``spy`` in tmp_path/bin that logs every call (env, stdin) to tmp_path/spy.log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "spy.log"
    bin_dir.mkdir()
    path = bin_dir / "spy"
    path.write_text(SPY.format(log=str(log)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return str(bin_dir), calls


def test_cni_args_and_capability_args_reach_the_plugin(driver, dirs, netns, spy):
    bin_dir, calls = spy
    write_conflist(dirs["conf"], "spy-net", [{"type": "spy", "capabilities": {"portMappings": True}}])
    cni = LibCNI([bin_dir], dirs["conf"], dirs["cache"], driver=driver)
    cid = f"ctr-{uuid.uuid4().hex[:8]}"
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    caps = {"portMappings": ports, "bandwidth": {"ingressRate": 1}}
    args = {"IgnoreUnknown": "1", "K8S_POD_NAME": "p1"}

    out = cni.add("spy-net", netns.path, ifname="net1", container_id=cid, args=args, cap_args=caps)
    assert out.ok, out
    # libcni re-encodes the result (types/100): what runtimes see, cache and pass on as
    # prevResult is that form, e.g. with an empty "dns" the plugin never printed.
    assert out.doc == {"cniVersion": "1.0.0", "ips": [{"address": "192.0.2.7/24"}], "dns": {}}
    (add,) = calls()
    env, conf = add["env"], json.loads(add["stdin"])
    assert env["CNI_COMMAND"] == "ADD"
    assert env["CNI_ARGS"] == "IgnoreUnknown=1;K8S_POD_NAME=p1"
    assert (env["CNI_CONTAINERID"], env["CNI_IFNAME"], env["CNI_NETNS"]) == (cid, "net1", netns.path)
    assert env["CNI_PATH"] == bin_dir
    # Only the capabilities the plugin declares are passed on.
    assert conf["runtimeConfig"] == {"portMappings": ports}
    assert conf["name"] == "spy-net" and conf["cniVersion"] == "1.0.0"
    assert "prevResult" not in conf
    # libcni execs plugins with its own process environment plus the CNI_* variables.
    assert env["NETCONFPATH"] == dirs["conf"] and "CAP_ARGS" in env

    assert cni.check("spy-net", netns.path, ifname="net1", container_id=cid, args=args, cap_args=caps).ok
    assert cni.delete("spy-net", netns.path, ifname="net1", container_id=cid).ok
    check, dele = calls()[1:]
    assert json.loads(check["stdin"])["prevResult"] == out.doc
    # DEL gets the cached result as prevResult, and the CNI_ARGS/capability arguments of
    # *this* call (here none), not those cached at ADD.
    dconf = json.loads(dele["stdin"])
    assert dele["env"]["CNI_COMMAND"] == "DEL" and dconf["prevResult"] == out.doc
    assert dele["env"]["CNI_ARGS"] == "" and "runtimeConfig" not in dconf


def test_version_and_validate(driver, dirs, spy):
    bin_dir, _ = spy
    cni = LibCNI([bin_dir, "/usr/lib/cni"], dirs["conf"], dirs["cache"], driver=driver)
    out = cni.version("bridge")
    assert out.ok, out
    assert out.doc["cniVersion"] == "1.0.0" and "1.0.0" in out.doc["supportedVersions"]
    assert cni.version("spy").doc == {"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}

    write_conflist(dirs["conf"], "ok-net", [{"type": "spy", "capabilities": {"portMappings": True}},
                                            {"type": "loopback"}])
    out = cni.validate("ok-net")
    assert out.ok, out
    assert out.doc["capabilities"] == ["portMappings"]
    assert [p["type"] for p in out.doc["plugins"]] == ["spy", "loopback"]

    write_conflist(dirs["conf"], "old-net", [{"type": "spy"}], cni_version="0.3.1")
    out = cni.validate("old-net")
    assert not out.ok and "does not support config version" in out.message, out
