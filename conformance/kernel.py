"""Which link kinds this machine's kernel can create, probed for real.

A plugin that creates an ipvlan or 802.1Q VLAN link cannot pass a single check on a kernel
without that link kind, and would fail every check with the kernel's terse "Operation not
supported" or "Unknown device type". The harness asks here first and reports such a
plugin's checks as not applicable, with the reason, instead.

Each probe creates the link kind on one end of a veth pair in a throwaway network
namespace (so it also loads the kernel module when one is needed), then deletes the
namespace; the answer is cached for the run.
"""

from __future__ import annotations

import functools

from conformance import runs
from conformance.proc import sh

# feature -> (what it is, in words; the `ip link add` arguments needing it, run in a fresh
# namespace whose "p0" is one end of a veth pair). The project's tests ask here too
# (tests/kernel_features.py).
PROBES: dict[str, tuple[str, list[str]]] = {
    "macvlan": ("macvlan", ["link", "add", "link", "p0", "name", "t0", "type", "macvlan", "mode", "bridge"]),
    "ipvlan": ("ipvlan", ["link", "add", "link", "p0", "name", "t0", "type", "ipvlan", "mode", "l2"]),
    "vlan": ("802.1Q vlan", ["link", "add", "link", "p0", "name", "t0", "type", "vlan", "id", "5"]),
    "dummy": ("dummy", ["link", "add", "t0", "type", "dummy"]),
    "bridge_vlan": ("bridge VLAN filtering (802.1Q)", ["link", "add", "t0", "type", "bridge", "vlan_filtering", "1"]),
    "vrf": ("VRF", ["link", "add", "t0", "type", "vrf", "table", "10"]),
}


@functools.lru_cache(maxsize=None)
def missing(kind: str) -> str | None:
    """Why this kernel cannot do ``kind`` (a key of PROBES), e.g. "kernel has no ipvlan
    (Unknown device type)"; None when it can."""
    what, argv = PROBES[kind]
    ns = runs.netns_name("cnk")  # carries the run's tag (conformance/runs.py)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1", ns=ns)
        try:
            sh("ip", *argv, ns=ns)
        except RuntimeError as e:
            detail = str(e).rsplit("failed: ", 1)[-1]
            return f"kernel has no {what} ({detail})"
        return None
    finally:
        sh("ip", "netns", "delete", ns, check=False)
