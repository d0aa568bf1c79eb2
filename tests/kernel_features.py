"""Kernel features some tests need, probed for real, and the marker that sends such tests
to the VM lane when this machine's kernel lacks them.

    from tests.kernel_features import needs

    @needs("ipvlan")
    def test_ipvlan_l2_traffic(...): ...

A test marked ``needs(...)`` runs here when this kernel has every feature it names;
otherwise ``make test`` runs it inside one throwaway VM on Debian's stock kernel
(tests/vm/lane.py) and reports its outcome in the same pytest report. It is skipped only
when neither this machine nor the VM can run it, with the reason.

The probes are the conformance harness's (conformance/kernel.py): each creates the link
kind in a throwaway network namespace and deletes it with the namespace; results are cached
for the whole pytest process.
"""

from __future__ import annotations

import pytest

from conformance import kernel

PROBES = kernel.PROBES


def probe(feature: str) -> tuple[bool, str]:
    """(present, reason): does this kernel have ``feature`` (a key of PROBES)?"""
    why = kernel.missing(feature)
    return why is None, f"this {why}" if why else ""


def missing(features: tuple[str, ...] | list[str]) -> list[str]:
    """The reasons for each of ``features`` this kernel lacks (empty: it has them all)."""
    return [why for ok, why in (probe(f) for f in features) if not ok]


def needs(*features: str):
    """Mark a test as needing these kernel features (keys of PROBES)."""
    unknown = [f for f in features if f not in PROBES]
    if unknown:
        raise ValueError(f"unknown kernel feature(s) {unknown}; known: {sorted(PROBES)}")
    return pytest.mark.kernel(*features)
