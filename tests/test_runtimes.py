"""Real runtimes (issue #6): podman and containerd drive our plugins end to end.

Both use the chain bridge (gateway, masquerade) + host-local -> portmap from a conflist
(CNI 1.0.0) and a busybox image made offline, with private configurations and storage
(see tests/runtime_env.py). Each test starts two containers, checks their addresses,
the veths and leases our plugins made, traffic between them and from the host (podman: also
through a mapped host port), removes them, and checks that nothing of theirs is left:
no port on the bridge, no lease, no firewall rule. Everything a test makes is removed
even when it fails; the autouse leak check (tests/conftest.py) watches the machine's links.

podman runs in the machine's network namespace (unique bridge and subnet, removed
afterwards); containerd runs in a throwaway named network namespace. ``ctr run --cni``
(containerd 1.6) loads the first config file of /etc/cni/net.d, gives no runtimeConfig
(so portmap runs in its chain without mappings) and runs the DEL after the task has
ended, when the container's network namespace is already gone; loopback is chained last.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid

import pytest

from tests import runtime_env as rt
from tests.helpers import Netns, sh

pytestmark = pytest.mark.root

IMAGE = f"localhost/cnipy-busybox:{rt.short_id()}"


def need(*tools: str) -> None:
    missing = [t for t in tools if not rt.tool(t)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run build/setup.sh (Debian packages "
                    "podman, runc, containerd)", pytrace=False)


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="cnipy-rt-")
    try:
        yield d
    finally:
        rt.remove_tree(d)


@pytest.fixture(scope="module")
def plugin_dir(our_bin, workdir) -> str:
    """Our plugins as a user installs them: each file copied alone into a fresh directory."""
    return rt.copy_plugins(our_bin, os.path.join(workdir, "cni-bin"))


@pytest.fixture(scope="module")
def podman(plugin_dir, workdir):
    """Private podman with the busybox image; skips when podman cannot run a container here
    at all (checked without any network, so without our plugins)."""
    need("podman", "runc", "conmon", "nsenter", "unshare")
    try:
        pm = rt.Podman(os.path.join(workdir, "podman"), plugin_dir)
    except rt.Unavailable as e:
        pytest.skip(f"podman: {e}")
    try:
        tarball = os.path.join(workdir, "rootfs.tar")
        rt.rootfs_tar(tarball)
        pm.import_image(tarball, IMAGE)
        p = pm.podman("run", "--rm", "--network", "none", "--cgroup-parent", "/cnipy-preflight",
                      IMAGE, "true", check=False)
        rt.remove_cgroups("cnipy-preflight")
        if p.returncode != 0:
            pytest.skip("podman cannot run any container on this machine (tried without a network): "
                        + (p.stderr or p.stdout).decode(errors="replace").strip()[-800:])
        yield pm
    finally:
        pm.close()


@pytest.fixture(scope="module")
def oci_archive(podman, workdir):
    """The busybox image as an OCI archive (for ``ctr images import``)."""
    path = os.path.join(workdir, "busybox-oci.tar")
    podman.podman("save", "--format", "oci-archive", "-o", path, IMAGE)
    return path


class Net:
    def __init__(self, root: str) -> None:
        self.name = f"cnipy-{rt.short_id()}"
        self.bridge = f"cnipy{uuid.uuid4().hex[:4]}"
        self.subnet = rt.pick_subnet()
        self.gateway = str(self.subnet[1])
        self.prefix = str(self.subnet.network_address)[:-1]  # "10.x.y."
        self.data_dir = os.path.join(root, "ipam")

    def tag(self, container_id: str, ifname: str = "eth0") -> str:
        """Our plugins' owner tag (veth alias, rule comments)."""
        return f"cnipy:{self.name}:{container_id}:{ifname}"

    def leftovers(self, port: int | None = None, ns: str | None = None) -> list[str]:
        """Firewall lines naming this network: its tag, its subnet, or the host port."""
        return rt.firewall_mentions([f"cnipy:{self.name}:", self.prefix], port, ns=ns)


# ---------------------------------------------------------------------------- podman

@pytest.fixture
def podman_net(podman):
    """A CNI network of the private podman (bridge + host-local -> portmap), removed with its
    containers, bridge and idle firewall tables afterwards."""
    net = Net(podman.root)
    net.cgroup = f"/cnipy-{rt.short_id()}"
    path = os.path.join(podman.net_dir, f"{net.name}.conflist")
    with open(path, "w") as f:
        json.dump(rt.conflist(net.name, net.bridge, net.subnet, net.data_dir), f)
    tables = rt.nft_tables()
    forward = rt.sysctl_read("net.ipv4.ip_forward")
    try:
        yield net
    finally:
        rt.cleanup(lambda: podman.podman("rm", "--all", "--force", "--time", "0", check=False),
                   lambda: os.unlink(path),
                   lambda: rt.link_exists(net.bridge) and sh("ip", "link", "delete", net.bridge, check=False),
                   lambda: rt.drop_idle_tables(tables),
                   lambda: forward == "0" and rt.sysctl_write("net.ipv4.ip_forward", "0"),
                   lambda: rt.remove_cgroups(net.cgroup.strip("/")))


def podman_ip(podman, name: str, net: str) -> tuple[str, str, str]:
    """(container ID, address, gateway) as podman reports them."""
    doc = json.loads(podman.text("inspect", name))[0]
    n = doc["NetworkSettings"]["Networks"][net]
    return doc["Id"], n["IPAddress"], n["Gateway"]


def test_podman_bridge_portmap_end_to_end(podman, podman_net):
    net = podman_net
    port = rt.pick_port()
    common = ["--network", net.name, "--cgroup-parent", net.cgroup]
    assert net.name in podman.text("network", "ls", "--format", "{{.Name}}").split()

    # ADD: two containers, one serving HTTP behind a mapped host port.
    podman.podman("run", "-d", "--name", "c1", *common, "-p", f"{port}:80", IMAGE, *rt.httpd_command("hello from c1"))
    # c2 asks for its address and MAC (capabilities "ips" and "mac": runtimeConfig).
    static_ip, static_mac = str(net.subnet[200]), "02:c0:ff:ee:00:02"
    podman.podman("run", "-d", "--name", "c2", *common, "--ip", static_ip, "--mac-address", static_mac,
                  IMAGE, "sleep", "600")
    id1, ip1, gw1 = podman_ip(podman, "c1", net.name)
    id2, ip2, gw2 = podman_ip(podman, "c2", net.name)
    assert ip2 == static_ip and ip1 != ip2 and ip1 in {str(a) for a in net.subnet.hosts()}, (ip1, ip2, net.subnet)
    assert gw1 == gw2 == net.gateway
    assert static_mac in podman.text("exec", "c2", "ip", "link", "show", "eth0")
    for name, ip in (("c1", ip1), ("c2", ip2)):
        inside = podman.text("exec", name, "ip", "-o", "addr", "show")
        assert f"eth0    inet {ip}/24" in inside, inside
        assert "lo    inet 127.0.0.1/8" in inside, inside
        assert f"default via {net.gateway} dev eth0" in podman.text("exec", name, "ip", "route")

    # What our plugins made: the veths on our bridge (tagged), the leases, the NAT rules.
    ports = rt.bridge_ports(net.bridge)
    assert sorted(p.get("ifalias", "") for p in ports) == sorted([net.tag(id1), net.tag(id2)]), ports
    assert rt.leases(net.data_dir, net.name) == {ip1: f"{id1}\r\neth0", ip2: f"{id2}\r\neth0"}
    assert rt.firewall_lines([net.tag(id1)]) and rt.firewall_lines([net.tag(id2)])
    # libcni's cache and podman's namespaces (both private to podman's mount namespace).
    held = podman.ns_text("find", "/var/lib/cni", "/run/netns", "-mindepth", "1", "-not", "-type", "d").split()
    assert {f"/var/lib/cni/results/{net.name}-{i}-eth0" for i in (id1, id2)} <= set(held), held
    assert len([h for h in held if h.startswith("/run/netns/")]) == 2, held

    # Traffic: container to container, host to container, host and neighbour to the mapped port.
    podman.podman("exec", "c2", "ping", "-c", "1", "-W", "2", ip1)
    assert "hello from c1" in rt.retry(lambda: _ok(podman.podman("exec", "c2", *rt.nc_get(ip1), check=False)))
    assert rt.http_get(f"http://{ip1}/") == "hello from c1\n"
    assert rt.http_get(f"http://127.0.0.1:{port}/") == "hello from c1\n"
    assert rt.http_get(f"http://{net.gateway}:{port}/") == "hello from c1\n"
    assert "hello from c1" in _ok(podman.podman("exec", "c2", *rt.nc_get(net.gateway, port), check=False))
    # Hairpin: c1 reaches its own server through the host's address and the mapped port.
    assert "hello from c1" in _ok(podman.podman("exec", "c1", *rt.nc_get(net.gateway, port), check=False))

    # A restart is a DEL then an ADD for the same container: mapping and lease come back.
    podman.podman("restart", "--time", "0", "c1")
    _, ip1b, _ = podman_ip(podman, "c1", net.name)
    assert rt.leases(net.data_dir, net.name) == {ip1b: f"{id1}\r\neth0", ip2: f"{id2}\r\neth0"}
    assert rt.http_get(f"http://127.0.0.1:{port}/") == "hello from c1\n"
    assert len(rt.bridge_ports(net.bridge)) == 2

    # DEL: nothing of the containers is left.
    podman.podman("rm", "--force", "--time", "0", "c1", "c2")
    assert rt.bridge_ports(net.bridge) == []
    assert not any(l["ifname"].startswith("veth") and l.get("ifalias", "").startswith(f"cnipy:{net.name}:")
                   for l in rt.ip_json("-d", "link", "show"))
    assert rt.leases(net.data_dir, net.name) == {}
    assert net.leftovers(port) == []
    assert podman.ns_text("find", "/var/lib/cni", "/run/netns", "-mindepth", "1", "-not", "-type", "d") == ""


def _ok(p: subprocess.CompletedProcess) -> str:
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0 and out, f"exit {p.returncode}: {out}{p.stderr.decode(errors='replace')}"
    return out


# ---------------------------------------------------------------------------- containerd

@pytest.fixture
def containerd(plugin_dir, workdir, oci_archive):
    """A private containerd in a throwaway network namespace, with the busybox image."""
    need("containerd", "ctr", "containerd-shim-runc-v2", "runc", "nsenter", "unshare")
    ns = Netns("cnirt")
    root = tempfile.mkdtemp(prefix="containerd-", dir=workdir)
    try:
        ns.run("ip", "link", "set", "lo", "up")
        try:
            cd = rt.Containerd(root, plugin_dir, ns.name)
        except rt.Unavailable as e:
            pytest.skip(f"containerd: {e}")
        try:
            cd.ctr("images", "import", "--snapshotter", "native", oci_archive)
            p = cd.ctr("run", "--rm", "--snapshotter", "native", IMAGE, "preflight", "true", check=False)
            if p.returncode != 0:
                pytest.skip("containerd cannot run any container on this machine (tried without a network): "
                            + (p.stderr or p.stdout).decode(errors="replace").strip()[-800:])
            yield cd, ns
        finally:
            cd.close()
    finally:
        rt.cleanup(ns.delete, lambda: rt.remove_tree(root))


def ctr_ip(cd, cid: str) -> str:
    out = cd.exec(cid, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout.decode()
    return out.split(" inet ")[1].split("/")[0]


def test_containerd_ctr_cni_end_to_end(plugin_dir, containerd):
    cd, ns = containerd
    net = Net(cd.root)
    with open(os.path.join(cd.net_dir, f"10-{net.name}.conflist"), "w") as f:
        json.dump(rt.conflist(net.name, net.bridge, net.subnet, net.data_dir, loopback=True), f)
    # ctr finds plugins in /opt/cni/bin (and Debian's /usr/lib/cni): here, ours only.
    assert cd.in_ns("ls", "/opt/cni/bin").split() == sorted(os.listdir(plugin_dir))
    assert cd.in_ns("find", "/opt/cni/bin", "-mindepth", "1", "-not", "-type", "f") == ""  # files, no links
    assert cd.in_ns("find", "/usr/lib/cni", "-mindepth", "1", check=False) == ""

    # ADD (ctr runs the conflist's chain bridge -> portmap -> loopback for each container).
    cd.start(IMAGE, "c1", rt.httpd_command("hello from c1"))
    cd.start(IMAGE, "c2", ["sleep", "600"])
    ip1, ip2 = ctr_ip(cd, "c1"), ctr_ip(cd, "c2")
    assert ip1 != ip2 and {ip1, ip2} <= {str(a) for a in net.subnet.hosts()}, (ip1, ip2, net.subnet)
    for cid in ("c1", "c2"):
        assert f"default via {net.gateway} dev eth0" in cd.exec(cid, ["ip", "route"]).stdout.decode()
        lo = cd.exec(cid, ["ip", "-o", "addr", "show", "dev", "lo"]).stdout.decode()
        assert "inet 127.0.0.1/8" in lo and "UP" in cd.exec(cid, ["ip", "link", "show", "lo"]).stdout.decode()

    fid1, fid2 = cd.full_id("c1"), cd.full_id("c2")
    ports = rt.bridge_ports(net.bridge, ns=ns.name)
    assert sorted(p.get("ifalias", "") for p in ports) == sorted([net.tag(fid1), net.tag(fid2)]), ports
    assert rt.leases(net.data_dir, net.name) == {ip1: f"{fid1}\r\neth0", ip2: f"{fid2}\r\neth0"}
    assert rt.firewall_lines([net.tag(fid1)], ns=ns.name) and rt.firewall_lines([net.tag(fid2)], ns=ns.name)
    held = cd.in_ns("find", "/var/lib/cni", "-type", "f").split()  # libcni's cache, private here
    assert sorted(held) == sorted(f"/var/lib/cni/results/{net.name}-{f}-eth0" for f in (fid1, fid2)), held

    # Traffic: container to container, and from containerd's host namespace.
    cd.exec("c2", ["ping", "-c", "1", "-W", "2", ip1])
    assert "hello from c1" in rt.retry(lambda: _ok(cd.exec("c2", rt.nc_get(ip1), check=False)))
    assert rt.http_get(f"http://{ip1}/", netns=ns.name) == "hello from c1\n"

    # DEL: ctr removes the network once the task has ended (its namespace is gone by then).
    for cid in ("c1", "c2"):
        cd.stop(cid)
        assert "level=error" not in cd.run_log(cid), cd.run_log(cid)
    assert cd.text("task", "ls", "-q").split() == [] and cd.text("container", "ls", "-q").split() == []
    assert rt.bridge_ports(net.bridge, ns=ns.name) == []
    assert rt.leases(net.data_dir, net.name) == {}
    assert net.leftovers(ns=ns.name) == []
    assert cd.in_ns("find", "/var/lib/cni", "-mindepth", "1", "-not", "-type", "d", check=False) == ""
