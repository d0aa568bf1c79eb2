"""A throwaway node running a private podman, for tests/test_podman_networks.py.

``PodmanNode``: two named network namespaces, the node and its "outside", joined by a veth
holding an IPv4 and an IPv6 address at each end (``conformance.runtimes.node.Node``, plus
a random ULA /64), and podman (``runtime_env.Podman``) running in the node's network
namespace inside a private mount namespace: its bridges, veths, firewall rules and host
ports are the node's; libcni's cache, host-local's leases (``/var/lib/cni``), tuning's
backups (``/run/cni``) and the containers' namespaces (``/run/netns``) are private to its
mount namespace; its plugin directory is the one under test, and the reference plugins
(``/usr/lib/cni``, ``/opt/cni/bin``) are empty there.

The readers below say what the node holds: links, firewall lines, files of the private
directories, and HTTP answers from the node or the outside.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import sys

from conformance.runtimes.node import NODE_HOST, OUTSIDE_HOST, UPLINK, Node
from tests import runtime_env as rt

LEASE_DIR = "/var/lib/cni/networks"  # host-local's default dataDir (podman's conflists set none)
RESULTS_DIR = "/var/lib/cni/results"  # libcni's cache
TUNING_DIR = "/run/cni/tuning"  # tuning's default dataDir (its backups)


def _ula64() -> ipaddress.IPv6Network:
    """A random fdXX:XXXX:XXXX:XXXX::/64 (unique local: never routed anywhere)."""
    return ipaddress.IPv6Network((0xFD << 120 | random.getrandbits(56) << 64, 64))


class PodmanNode:
    """A node (network namespace), its outside, and podman running in the node on the
    storage under ``root`` with the plugins of ``cni_bin``."""

    def __init__(self, root: str, cni_bin: str) -> None:
        self.node = Node(rt.pick_subnet())
        self.name = self.node.name
        self.address = self.node.address
        v6 = _ula64()
        self.address6, self.outside_address6 = str(v6[NODE_HOST]), str(v6[OUTSIDE_HOST])
        self.cgroup = f"cnipy-pm-{rt.short_id()}"
        self.pm: rt.Podman | None = None
        try:
            for ns, addr in ((self.node.name, self.address6), (self.node.outside, self.outside_address6)):
                rt.run(["ip", "-n", ns, "addr", "add", f"{addr}/64", "dev", UPLINK, "nodad"])
            self.pm = rt.Podman(root, cni_bin, netns=self.node.name)
        except BaseException:
            self.node.delete()
            raise

    # -- podman ------------------------------------------------------------------------------
    def podman(self, *args: str, check: bool = True, timeout: float = 60):
        assert self.pm is not None
        return self.pm.podman(*args, check=check, timeout=timeout)

    def text(self, *args: str, check: bool = True) -> str:
        return self.podman(*args, check=check).stdout.decode()

    def run_container(self, name: str, network: str, argv: list[str], *opts: str, image: str) -> str:
        """``podman run -d`` on ``network``; returns the container's full ID."""
        return self.text("run", "-d", "--name", name, "--network", network, "--cgroup-parent", f"/{self.cgroup}",
                         *opts, image, *argv).strip()

    def network_create(self, name: str, *opts: str) -> dict:
        """``podman network create [opts] name``; returns ``podman network inspect``'s document."""
        self.podman("network", "create", *opts, name)
        return json.loads(self.text("network", "inspect", name))[0]

    def conflist(self, network: str) -> dict:
        """The conflist podman wrote for ``network``."""
        assert self.pm is not None
        with open(os.path.join(self.pm.net_dir, f"{network}.conflist")) as f:
            return json.load(f)

    def attachment(self, container: str, network: str) -> dict:
        """podman's record of ``container`` on ``network`` (IPAddress, MacAddress, ...)."""
        return json.loads(self.text("inspect", container))[0]["NetworkSettings"]["Networks"][network]

    def exec_ok(self, container: str, argv: list[str]) -> str:
        """stdout of ``podman exec``, which must succeed with some output."""
        p = self.podman("exec", container, *argv, check=False)
        out = p.stdout.decode(errors="replace")
        assert p.returncode == 0 and out, f"exec {container} {argv}: exit {p.returncode}: {out}{p.stderr.decode()}"
        return out

    def unreachable(self, container: str, ip: str, port: int = 80) -> None:
        """An HTTP GET from ``container`` to ``ip``:``port`` must get no answer within 1 s."""
        argv = ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 {ip} {port}"]
        p = self.podman("exec", container, *argv, check=False)
        assert p.returncode != 0 and not p.stdout, \
            f"{container} reached {ip}:{port}: {p.stdout.decode(errors='replace')}"

    # -- what the node holds -----------------------------------------------------------------
    def in_ns(self, *argv: str) -> str:
        """stdout of a command run in podman's mount and network namespaces (status ignored)."""
        assert self.pm is not None
        return self.pm.ns_text(*argv)

    def links(self) -> list[dict]:
        return rt.ip_json("-d", "link", "show", ns=self.name)

    def firewall(self, needles: list[str]) -> list[str]:
        """The node's nftables, iptables and ip6tables lines holding a needle."""
        return rt.firewall_lines(needles, ns=self.name)

    def files(self, directory: str) -> list[str]:
        """Every non-directory under ``directory`` of podman's mount namespace."""
        return sorted(self.in_ns("find", directory, "-mindepth", "1", "-not", "-type", "d").split())

    def leases(self, network: str) -> dict[str, str]:
        """host-local's leases of ``network``: address -> file content."""
        out = {}
        for path in self.files(os.path.join(LEASE_DIR, network)):
            name = os.path.basename(path)
            if name != "lock" and not name.startswith("last_reserved_ip"):
                out[name] = self.in_ns("cat", path)
        return out

    def http(self, url: str, *, outside: bool = False) -> str:
        """GET ``url`` from the node (or from the outside)."""
        return rt.http_get(url, netns=self.node.outside if outside else self.name)

    def http_fails(self, url: str, *, outside: bool = False) -> None:
        """GET ``url`` must get no answer (one try, 1 s)."""
        ns = self.node.outside if outside else self.name
        get = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=1).read())"
        p = rt.run(["ip", "netns", "exec", ns, sys.executable, "-I", "-c", get, url], check=False)
        assert p.returncode != 0 and not p.stdout, f"GET {url} answered {p.stdout.decode(errors='replace')!r}"

    # -- the end -----------------------------------------------------------------------------
    def close(self) -> None:
        """Remove every container and network, end podman's namespace, delete the node (and
        so whatever is left in it)."""
        pm = self.pm

        def remove_networks() -> None:
            if pm is None:
                return
            for n in self.text("network", "ls", "--format", "{{.Name}}", check=False).split():
                if n != "podman":
                    self.podman("network", "rm", "--force", n, check=False)

        rt.cleanup(lambda: pm and pm.podman("rm", "--all", "--force", "--time", "0", check=False),
                   remove_networks,
                   lambda: pm and pm.ns.stop(),
                   lambda: rt.remove_cgroups(self.cgroup),
                   self.node.delete)
