"""podman's own networks on our plugins alone (issue 15, end to end).

podman 4.3 with its CNI backend creates its networks itself (``podman network create``:
the chain bridge (hairpinMode, host-local with capability ``ips``) -> portmap
(``portMappings``) -> firewall (``"backend": ""``, ``ingressPolicy`` for ``--opt
isolate``) -> tuning) and runs them with only our plugins in ``cni_plugin_dirs``; no
reference plugin is reachable (``/usr/lib/cni`` and ``/opt/cni/bin`` are empty in its
mount namespace). Each test gets a throwaway node (tests/podman_node.py): podman runs in
the node's network namespace, and an "outside" namespace reaches the node over a veth,
so nothing of the machine's network changes; the busybox image and podman's storage are
made once per module.

Which build runs: ``dist/bin`` (the ``our_bin`` fixture) unless ``CNIPY_TEST_BIN_DIR``
names another directory (e.g. launchers made with ``build/launchers.py DIR``).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import tempfile
import uuid

import pytest

from tests import runtime_env as rt
from tests.podman_node import RESULTS_DIR, TUNING_DIR, PodmanNode
from tests.tuning_common import bin_dir

pytestmark = pytest.mark.root

IMAGE = f"localhost/cnipy-busybox:{rt.short_id()}"
CHAIN = ["bridge", "portmap", "firewall", "tuning"]  # what podman writes for a bridge network
PLUGINS = ("bridge", "host-local", "portmap", "firewall", "tuning")


@pytest.fixture(scope="module")
def store(request):
    """(podman's root directory holding the busybox image, the plugin directory); skips when
    podman cannot run a container here at all (checked without any network)."""
    missing = [t for t in ("podman", "runc", "conmon", "nsenter", "unshare") if not rt.tool(t)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run build/setup.sh", pytrace=False)
    plugins = bin_dir(request)
    absent = [p for p in PLUGINS if not os.path.exists(os.path.join(plugins, p))]
    if absent:
        pytest.fail(f"{plugins} lacks {', '.join(absent)}: run `make bin`", pytrace=False)
    d = tempfile.mkdtemp(prefix="cnipy-pmnet-")
    try:
        # Each plugin file copied alone, as a user installs them (never links into a build).
        plugins = rt.copy_plugins(plugins, os.path.join(d, "cni-bin"))
        root = os.path.join(d, "podman")
        try:
            first = PodmanNode(root, plugins)
        except rt.Unavailable as e:
            pytest.skip(f"podman: {e}")
        try:
            tarball = os.path.join(d, "rootfs.tar")
            rt.rootfs_tar(tarball)
            first.podman("import", "--change", 'CMD ["/bin/sh"]', tarball, IMAGE)
            p = first.podman("run", "--rm", "--network", "none", "--cgroup-parent", f"/{first.cgroup}", IMAGE,
                             "true", check=False)
            if p.returncode != 0:
                pytest.skip("podman cannot run any container on this machine (tried without a network): "
                            + (p.stderr or p.stdout).decode(errors="replace").strip()[-800:])
        finally:
            first.close()
        yield root, plugins
    finally:
        rt.remove_tree(d)


@pytest.fixture
def node(store):
    """A fresh node running podman on the module's storage; everything removed afterwards."""
    n = PodmanNode(*store)
    try:
        yield n
    finally:
        n.close()


def tag(network: str, container_id: str) -> str:
    """Our plugins' owner tag of a container on a network (veth alias, rule comments)."""
    return f"cnipy:{network}:{container_id}:eth0"


def assert_containers_left_nothing(node: PodmanNode, network: str, bridge: str, ids: list[str],
                                   port: int | None = None) -> None:
    """After ``podman rm``: no veth, lease, backup file, cache entry, IFB or rule of theirs."""
    ours = [l for l in node.links() if l.get("ifalias", "").startswith(f"cnipy:{network}:")
            or l.get("master") == bridge]
    assert ours == [], ours
    assert [l["ifname"] for l in node.links() if l.get("linkinfo", {}).get("info_kind") == "ifb"] == []
    assert node.leases(network) == {}
    assert [f for f in node.files(TUNING_DIR) if any(i in f for i in ids)] == []
    assert [f for f in node.files(RESULTS_DIR) if any(i in f for i in ids)] == []
    assert node.firewall([f"cnipy:{network}:"]) == []
    if port:
        assert rt.firewall_mentions([], port, ns=node.name) == []


def assert_network_left_nothing(node: PodmanNode, network: str, bridge: str, subnets: list[str]) -> None:
    """After ``podman network rm``: no bridge, no conflist, no rule naming the bridge or a subnet."""
    assert not rt.link_exists(bridge, ns=node.name)
    assert network not in node.text("network", "ls", "--format", "{{.Name}}").split()
    assert node.leases(network) == {}
    needles = [f'"{bridge}"', f" {bridge} "] + subnets
    assert node.firewall(needles) == [], node.firewall(needles)


def subnets(inspect: dict) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(s["subnet"]) for s in inspect["subnets"]]


def test_podman_writes_our_chain_and_finds_only_our_plugins(node, store):
    """`podman network create` (default, --opt isolate, --ipv6): the chain podman writes, and
    the plugin directories it can reach (ours only)."""
    _, plugins = store
    assert node.in_ns("find", "/usr/lib/cni", "/opt/cni/bin", "-mindepth", "1") == ""
    assert sorted(node.in_ns("ls", plugins).split()) == sorted(os.listdir(plugins))
    made = {"pn-def": node.network_create("pn-def"),
            "pn-iso": node.network_create("pn-iso", "--opt", "isolate=true"),
            "pn-six": node.network_create("pn-six", "--ipv6")}
    for name, doc in made.items():
        conf = node.conflist(name)
        assert [p["type"] for p in conf["plugins"]] == CHAIN, conf
        br, pm, fw, tu = conf["plugins"]
        assert br["hairpinMode"] is True and br["ipam"]["type"] == "host-local", br
        assert br["capabilities"] == {"ips": True} and pm["capabilities"] == {"portMappings": True}
        assert fw["backend"] == "" and tu == {"type": "tuning"}
        assert fw.get("ingressPolicy") == ("same-bridge" if name == "pn-iso" else None), fw
        assert br["bridge"] == doc["network_interface"]
        assert [n.version for n in subnets(doc)] == ([4, 6] if name == "pn-six" else [4]), doc
    for name, doc in made.items():
        node.podman("network", "rm", name)
        assert_network_left_nothing(node, name, doc["network_interface"], [str(s) for s in subnets(doc)])


def test_default_network_ports_static_ip_and_mac(node):
    """Default options: -p reached from the node and from the outside, two containers
    talking, --ip and --mac-address honoured; podman rm and network rm leave nothing."""
    net = "pn-web"
    doc = node.network_create(net)
    bridge, subnet = doc["network_interface"], subnets(doc)[0]
    gateway = str(subnet[1])
    port = rt.pick_port()
    static_ip, static_mac = str(subnet[200]), f"02:c0:ff:ee:{uuid.uuid4().hex[:2]}:{uuid.uuid4().hex[:2]}"

    id1 = node.run_container("c1", net, rt.httpd_command("hello from c1"), "-p", f"{port}:80",
                             "--ip", static_ip, "--mac-address", static_mac, image=IMAGE)
    id2 = node.run_container("c2", net, ["sleep", "600"], image=IMAGE)
    a1, a2 = node.attachment("c1", net), node.attachment("c2", net)
    ip1, ip2 = a1["IPAddress"], a2["IPAddress"]
    assert ip1 == static_ip and a1["MacAddress"] == static_mac, a1
    assert ip2 != ip1 and ipaddress.ip_address(ip2) in subnet and a2["Gateway"] == gateway, a2
    assert f"link/ether {static_mac} " in node.exec_ok("c1", ["ip", "link", "show", "eth0"])
    for name, ip in (("c1", ip1), ("c2", ip2)):
        assert f"inet {ip}/24" in node.exec_ok(name, ["ip", "-o", "-4", "addr", "show", "eth0"])
        assert f"default via {gateway} dev eth0" in node.exec_ok(name, ["ip", "route"])

    # What our plugins made in the node: tagged veths on the bridge (hairpin on), leases,
    # the firewall's and portmap's rules, tuning's backups, libcni's cache.
    ports = rt.bridge_ports(bridge, ns=node.name)
    assert sorted(p.get("ifalias", "") for p in ports) == sorted([tag(net, id1), tag(net, id2)]), ports
    assert all(p["linkinfo"]["info_slave_data"]["hairpin"] for p in ports), ports
    assert node.leases(net) == {ip1: f"{id1}\r\neth0", ip2: f"{id2}\r\neth0"}
    for cid, ip in ((id1, ip1), (id2, ip2)):
        lines = node.firewall([tag(net, cid)])
        assert any(ip in l for l in lines), lines  # the firewall's and the masquerade's elements
    assert node.firewall([f"tcp . {port} "]), "no host-port element for the mapping"
    assert set(node.files(RESULTS_DIR)) == {f"{RESULTS_DIR}/{net}-{i}-eth0" for i in (id1, id2)}
    assert f"{TUNING_DIR}/{id1}_eth0.json" in node.files(TUNING_DIR)

    # Traffic: container to container, node to container, mapped port from the node
    # (loopback and its own address), from the outside, and hairpin.
    node.exec_ok("c2", ["ping", "-c", "1", "-W", "2", ip1])
    assert "hello from c1" in rt.retry(lambda: node.exec_ok("c2", rt.nc_get(ip1)))
    assert node.http(f"http://{ip1}/") == "hello from c1\n"
    assert node.http(f"http://127.0.0.1:{port}/") == "hello from c1\n"
    assert node.http(f"http://{node.address}:{port}/") == "hello from c1\n"
    assert node.http(f"http://{node.address}:{port}/", outside=True) == "hello from c1\n"
    assert "hello from c1" in node.exec_ok("c1", rt.nc_get(gateway, port))

    node.podman("rm", "--force", "--time", "0", "c1", "c2")
    assert_containers_left_nothing(node, net, bridge, [id1, id2], port)
    node.podman("network", "rm", net)
    assert_network_left_nothing(node, net, bridge, [str(subnet)])


def test_ipv6_network(node):
    """--ipv6: both families in the container, container to container over IPv6, the
    mapped port over IPv6 from the outside; nothing left."""
    net = "pn-six"
    doc = node.network_create(net, "--ipv6")
    bridge = doc["network_interface"]
    v4, v6 = subnets(doc)
    port = rt.pick_port()
    id1 = node.run_container("s1", net, rt.httpd_command("hello over v6"), "-p", f"{port}:80", image=IMAGE)
    id2 = node.run_container("s2", net, ["sleep", "600"], image=IMAGE)
    addrs = {}
    for name in ("s1", "s2"):
        out = node.exec_ok(name, ["ip", "-o", "addr", "show", "eth0"])
        mine = [ipaddress.ip_interface(w) for line in out.splitlines() for w in line.split()
                if "/" in w and ":" in w and not w.startswith("fe80")]
        assert [i.network for i in mine] == [v6], out
        addrs[name] = str(mine[0].ip)
        assert f"default via {v6[1]} dev eth0" in node.exec_ok(name, ["ip", "-6", "route"])
    assert set(node.leases(net)) == {node.attachment(n, net)["IPAddress"] for n in ("s1", "s2")} | set(addrs.values())
    assert any(addrs["s1"] in l for l in node.firewall([tag(net, id1)])), node.firewall([tag(net, id1)])

    assert "hello over v6" in rt.retry(lambda: node.exec_ok("s2", rt.nc_get(addrs["s1"])))
    assert node.http(f"http://[{addrs['s1']}]/") == "hello over v6\n"
    assert node.http(f"http://[{node.address6}]:{port}/", outside=True) == "hello over v6\n"
    assert node.http(f"http://{node.address}:{port}/", outside=True) == "hello over v6\n"

    node.podman("rm", "--force", "--time", "0", "s1", "s2")
    assert_containers_left_nothing(node, net, bridge, [id1, id2], port)
    node.podman("network", "rm", net)
    assert_network_left_nothing(node, net, bridge, [str(v4), str(v6)])


def test_isolated_networks_do_not_talk(node):
    """--opt isolate (ingressPolicy same-bridge): two containers on one isolated network
    talk, two isolated networks do not, an open network still reaches both ways."""
    nets = {"pn-i1": node.network_create("pn-i1", "--opt", "isolate=true"),
            "pn-i2": node.network_create("pn-i2", "--opt", "isolate=true"),
            "pn-op": node.network_create("pn-op")}
    placed = {"a1": "pn-i1", "a2": "pn-i1", "b1": "pn-i2", "o1": "pn-op"}
    ids = {n: node.run_container(n, net, rt.httpd_command(f"hello from {n}"), image=IMAGE)
           for n, net in placed.items()}
    ip = {n: node.attachment(n, net)["IPAddress"] for n, net in placed.items()}

    assert "hello from a1" in rt.retry(lambda: node.exec_ok("a2", rt.nc_get(ip["a1"])))
    node.unreachable("a1", ip["b1"])
    node.unreachable("b1", ip["a1"])
    assert "hello from a1" in node.exec_ok("o1", rt.nc_get(ip["a1"]))
    assert "hello from o1" in node.exec_ok("b1", rt.nc_get(ip["o1"]))
    assert node.http(f"http://{ip['b1']}/") == "hello from b1\n"  # the node itself is not isolated

    node.podman("rm", "--force", "--time", "0", *ids)
    for net, doc in nets.items():
        assert_containers_left_nothing(node, net, doc["network_interface"], list(ids.values()))


def test_network_rm_of_an_isolated_network_leaves_no_rule(node):
    """After `podman network rm` of an isolated network, no rule names its bridge: a network
    created later with the same bridge name is not isolated by it."""
    try:
        gone = node.network_create("pn-gone", "--opt", "isolate=true")
        other = node.network_create("pn-other", "--opt", "isolate=true")
        node.run_container("g1", "pn-gone", ["sleep", "600"], image=IMAGE)
        node.run_container("x1", "pn-other", rt.httpd_command("hello from x1"), image=IMAGE)
        x1 = node.attachment("x1", "pn-other")["IPAddress"]
        node.podman("rm", "--force", "--time", "0", "g1")
        node.podman("network", "rm", "pn-gone")
        # podman hands the freed bridge name to the next network (an open one here).
        reuse = node.network_create("pn-open")
        if reuse["network_interface"] != gone["network_interface"]:
            pytest.fail(f"podman did not reuse the bridge name: {reuse} after {gone}", pytrace=False)
        node.run_container("r1", "pn-open", ["sleep", "600"], image=IMAGE)
    except AssertionError as e:  # setting up is not what is expected to fail
        pytest.fail(f"setup failed: {e}")
    reached = node.podman("exec", "r1", *rt.nc_get(x1), check=False).stdout.decode(errors="replace")
    node.podman("rm", "--force", "--time", "0", "r1", "x1")
    node.podman("network", "rm", "pn-open", "pn-other")
    bridges = [gone["network_interface"], other["network_interface"]]
    left = node.firewall([f'"{b}"' for b in bridges] + [f" {b} " for b in bridges])
    assert "hello from x1" in reached and left == [], (reached, left)


def test_network_reload_restores_rules(node):
    """`podman network reload` puts back what was deleted by hand: portmap's mapping and
    the masquerade (nftables, forwarding open), then, with the node's FORWARD policy DROP
    (the firewall then picks iptables), the firewall's accept rules too; traffic works
    again each time, and podman rm then leaves nothing."""
    net = "pn-rl"
    doc = node.network_create(net)
    bridge = doc["network_interface"]
    port = rt.pick_port()
    cid = node.run_container("r1", net, rt.httpd_command("hello from r1"), "-p", f"{port}:80", image=IMAGE)
    ip = node.attachment("r1", net)["IPAddress"]
    mapped = f"http://{node.address}:{port}/"
    assert node.http(mapped, outside=True) == "hello from r1\n"
    # The outside serves too: the container reaches it only through the masquerade (the
    # outside has no route to the container's subnet) and, under DROP, the firewall's rules.
    www = tempfile.mkdtemp(prefix="cnipy-pmnet-www-")
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("outside\n")
    outside_srv = subprocess.Popen(["ip", "netns", "exec", node.node.outside, "busybox", "httpd", "-f",
                                    "-p", f"{node.node.outside_address}:8081", "-h", www],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert "outside" in rt.retry(lambda: node.exec_ok("r1", rt.nc_get(node.node.outside_address, 8081)))

        # 1. Forwarding open (firewall on nftables): delete our tables by hand.
        for t in ("cnipy_hostport", "cnipy_nat", "cnipy_firewall"):
            rt.run(["ip", "netns", "exec", node.name, "nft", "delete", "table", "inet", t])
        assert node.firewall([tag(net, cid)]) == []
        node.http_fails(mapped, outside=True)
        node.unreachable("r1", node.node.outside_address, 8081)
        node.podman("network", "reload", "r1")
        lines = node.firewall([tag(net, cid)])
        for table in ("cnipy_hostport", "cnipy_nat", "cnipy_firewall"):
            assert table in node.in_ns("nft", "list", "tables"), lines
        assert any(ip in l for l in lines), lines
        assert node.http(mapped, outside=True) == "hello from r1\n"
        assert "outside" in rt.retry(lambda: node.exec_ok("r1", rt.nc_get(node.node.outside_address, 8081)))
        assert node.attachment("r1", net)["IPAddress"] == ip

        # 2. FORWARD policy DROP (as Docker or firewalld set it): reload moves the firewall's
        # rules to iptables; delete them and ours in nftables by hand, reload again.
        for tool in ("iptables", "ip6tables"):
            rt.run(["ip", "netns", "exec", node.name, tool, "-P", "FORWARD", "DROP"])
        node.podman("network", "reload", "--all")
        assert [l for l in node.firewall([tag(net, cid)]) if l.startswith("iptables-save: ")], "no iptables rule"
        assert "outside" in rt.retry(lambda: node.exec_ok("r1", rt.nc_get(node.node.outside_address, 8081)))
        assert node.http(f"http://127.0.0.1:{port}/") == "hello from r1\n"
        rt.run(["ip", "netns", "exec", node.name, "iptables", "-F", "CNI-FORWARD"])
        for t in ("cnipy_hostport", "cnipy_nat"):
            rt.run(["ip", "netns", "exec", node.name, "nft", "delete", "table", "inet", t])
        assert node.firewall([tag(net, cid)]) == []
        node.unreachable("r1", node.node.outside_address, 8081)
        node.http_fails(f"http://127.0.0.1:{port}/")
        node.podman("network", "reload", "--all")
        assert [l for l in node.firewall([tag(net, cid)]) if l.startswith("iptables-save: ")], "no iptables rule"
        assert "outside" in rt.retry(lambda: node.exec_ok("r1", rt.nc_get(node.node.outside_address, 8081)))
        assert node.http(f"http://127.0.0.1:{port}/") == "hello from r1\n"
        assert len(rt.bridge_ports(bridge, ns=node.name)) == 1
        assert node.leases(net) == {ip: f"{cid}\r\neth0"}
    finally:
        outside_srv.kill()
        outside_srv.wait(10)
        rt.remove_tree(www)
    node.podman("rm", "--force", "--time", "0", "r1")
    assert_containers_left_nothing(node, net, bridge, [cid], port)
    node.podman("network", "rm", net)
    assert_network_left_nothing(node, net, bridge, [str(subnets(doc)[0])])
