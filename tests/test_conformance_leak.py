"""The harness's leak verdict (conformance.leak.settle) on real kernel state: a clean or a
stably leaked world is judged at once; only links the kernel is still tearing down with
a deleted namespace are waited for."""

from __future__ import annotations

import os
import threading
import time

import pytest

from conformance import leak
from conformance.profiles import profile_for
from conformance.proc import sh
from conformance.world import World
from tests.helpers import SRC_BIN


@pytest.fixture
def world():
    w = World(SRC_BIN, profile_for("host-local"))
    try:
        yield w
    finally:
        w.close()


def _timed_settle(world: World, before: dict, timeout: float = 5.0) -> tuple[list[str], float]:
    t0 = time.monotonic()
    leaks = leak.settle(world, before, timeout=timeout)
    return leaks, time.monotonic() - t0


def _host(leaks: list[str]) -> list[str]:
    # The machine's own links may change under other processes; the world's are ours.
    return [l for l in leaks if l.startswith("host ")]


def test_clean_world_is_judged_at_once(world):
    leaks, took = _timed_settle(world, world.snapshot())
    assert _host(leaks) == [] and took < 1.0, (leaks, took)


def test_a_stable_leak_is_reported_at_once(world):
    """A link left in the host namespace (both ends there): no waiting for a deadline."""
    before = world.snapshot()
    sh("ip", "link", "add", "lkA", "type", "veth", "peer", "name", "lkAp", ns=world.host)
    leaks, took = _timed_settle(world, before)
    assert any("lkA" in l for l in _host(leaks)), leaks
    assert took < 1.5, f"a stable leak took {took:.2f} s to report (the deadline is 5 s)"


def test_a_link_going_with_its_namespace_is_waited_for(world):
    """A host veth whose peer's namespace has lost its name is what the kernel removes
    asynchronously when that namespace goes: the verdict waits for it (here the namespace
    is kept alive by an open file for 0.6 s, then released) and is clean."""
    before = world.snapshot()
    ns = world.new_netns()
    sh("ip", "link", "add", "pkA", "type", "veth", "peer", "name", "pkAp", "netns", os.path.basename(ns),
       ns=world.host)
    fd = os.open(ns, os.O_RDONLY)  # the namespace lives on without its name while this is open
    world.drop_netns(ns)
    threading.Timer(0.6, os.close, [fd]).start()
    leaks, took = _timed_settle(world, before)
    assert _host(leaks) == [], leaks
    assert 0.5 < took < 5.0, took


def test_a_link_that_does_not_go_is_reported_at_the_deadline(world):
    """The same, but the namespace stays: reported once the deadline has passed."""
    before = world.snapshot()
    ns = world.new_netns()
    sh("ip", "link", "add", "pkB", "type", "veth", "peer", "name", "pkBp", "netns", os.path.basename(ns),
       ns=world.host)
    fd = os.open(ns, os.O_RDONLY)
    try:
        world.drop_netns(ns)
        leaks, took = _timed_settle(world, before, timeout=1.0)
    finally:
        os.close(fd)
    assert any("pkB" in l for l in _host(leaks)), leaks
    assert took >= 1.0, took
