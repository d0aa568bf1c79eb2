"""Kernel features some tests need, probed for real, and the marker that sends such tests
to the VM lane when this machine's kernel lacks them.

    from tests.kernel_features import needs

    @needs("ipvlan")
    def test_ipvlan_l2_traffic(...): ...

A test marked ``needs(...)`` runs here when this kernel has every feature it names;
otherwise ``make test`` runs it inside one throwaway VM on Debian's stock kernel
(tests/vm/lane.py) and reports its outcome in the same pytest report. It is skipped only
when neither this machine nor the VM can run it, with the reason.

Each probe creates the link kind in a throwaway network namespace and deletes it with the
namespace; results are cached for the whole pytest process.
"""

from __future__ import annotations

import functools
import subprocess
import uuid

import pytest

# feature -> (what it is, the `ip link add` commands that need it, run in a fresh namespace
# whose "p0" is one end of a veth pair)
PROBES: dict[str, tuple[str, list[list[str]]]] = {
    "ipvlan": ("ipvlan links", [["link", "add", "link", "p0", "name", "t0", "type", "ipvlan", "mode", "l2"]]),
    "vlan": ("802.1Q VLAN links", [["link", "add", "link", "p0", "name", "t0", "type", "vlan", "id", "5"]]),
    "dummy": ("dummy links", [["link", "add", "t0", "type", "dummy"]]),
    "macvlan": ("macvlan links", [["link", "add", "link", "p0", "name", "t0", "type", "macvlan", "mode", "bridge"]]),
    "bridge_vlan": ("bridge VLAN filtering (802.1Q)",
                    [["link", "add", "t0", "type", "bridge", "vlan_filtering", "1"]]),
}


@functools.cache
def probe(feature: str) -> tuple[bool, str]:
    """(present, reason): does this kernel have ``feature`` (a key of PROBES)?"""
    what, commands = PROBES[feature]
    ns = f"cnkp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"],
                       check=True, capture_output=True)
        for cmd in commands:
            p = subprocess.run(["ip", "-n", ns, *cmd], capture_output=True, text=True)
            if p.returncode != 0:
                return False, f"this kernel has no {what} ({p.stderr.strip()})"
        return True, ""
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def missing(features: tuple[str, ...] | list[str]) -> list[str]:
    """The reasons for each of ``features`` this kernel lacks (empty: it has them all)."""
    return [why for ok, why in (probe(f) for f in features) if not ok]


def needs(*features: str):
    """Mark a test as needing these kernel features (keys of PROBES)."""
    unknown = [f for f in features if f not in PROBES]
    if unknown:
        raise ValueError(f"unknown kernel feature(s) {unknown}; known: {sorted(PROBES)}")
    return pytest.mark.kernel(*features)
