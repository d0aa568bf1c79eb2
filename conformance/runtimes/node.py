"""A Kubernetes-like node made of throwaway network namespaces.

The node's namespace is where the runtime runs (and so where the CNI plugins make the
bridge, the host veths and the firewall rules); it has loopback up and an address of its
own on a veth (``eth0``) whose peer sits in a second namespace, the node's "outside" (what
another machine of the cluster would be). Nothing of the machine's own namespace is used.
"""

from __future__ import annotations

import ipaddress

from conformance import runs
from conformance.runtimes.commands import cleanup, run, short_id

NODE_HOST = 10  # the node's address: <subnet>.10
OUTSIDE_HOST = 20  # the outside's address: <subnet>.20
UPLINK = "eth0"  # the node's (and the outside's) end of the veth between them


class Node:
    """Two named network namespaces (``name``, ``outside``) joined by a veth; ``address`` is
    the node's own address, ``outside_address`` the other end's."""

    def __init__(self, subnet: ipaddress.IPv4Network) -> None:
        # The run's tag (conformance/runs.py): leak checks tell ours apart, sweeps find them.
        tag = runs.tag()
        uid = short_id()
        self.name = f"cnin-{tag}-{uid}" if tag else f"cnin-{uid}"
        self.outside = f"cnio-{tag}-{uid}" if tag else f"cnio-{uid}"
        self.subnet = subnet
        self.address = str(subnet[NODE_HOST])
        self.outside_address = str(subnet[OUTSIDE_HOST])
        run(["ip", "netns", "add", self.name])
        try:
            run(["ip", "netns", "add", self.outside])
            for ns in (self.name, self.outside):
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", self.name, "link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK,
                 "netns", self.outside])
            for ns, addr in ((self.name, self.address), (self.outside, self.outside_address)):
                run(["ip", "-n", ns, "addr", "add", f"{addr}/{subnet.prefixlen}", "dev", UPLINK])
                run(["ip", "-n", ns, "link", "set", UPLINK, "up"])
        except BaseException:
            self.delete()
            raise

    @property
    def path(self) -> str:
        """The node namespace's file (for ``nsenter --net``)."""
        return f"/run/netns/{self.name}"

    def delete(self) -> None:
        """Delete both namespaces (and so the veth and whatever plugins left in them)."""
        cleanup(lambda: run(["ip", "netns", "delete", self.name], check=False),
                lambda: run(["ip", "netns", "delete", self.outside], check=False))
