"""The harness's leak verdict (conformance.leak.settle) on real kernel state: a clean or a
stably leaked world is judged at once; only links the kernel is still tearing down with
a deleted namespace are waited for."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def test_a_rule_naming_a_gone_link_is_a_leak(world):
    """A firewall rule that names only a pod's link (dnsname's ``-i <veth> --dport 53``):
    the link is gone with the pod, the rule stays, and the world's markers (subnets, mapped
    ports) are not in it. A rule naming a link the host had before is scaffolding."""
    sh("ip", "link", "add", "keepA", "type", "veth", "peer", "name", "keepAp", ns=world.host)
    before = world.snapshot()
    sh("iptables", "-A", "INPUT", "-i", "keepA", "-j", "ACCEPT", ns=world.host)
    assert _host(leak.settle(world, before)) == []
    sh("iptables", "-A", "INPUT", "-i", "podveth9", "-p", "udp", "--dport", "53", "-j", "ACCEPT", ns=world.host)
    leaks, took = _timed_settle(world, before)
    assert any("host firewall" in l and "podveth9" in l and "keepA" not in l for l in leaks), leaks
    assert took < 1.5, took


def test_a_process_left_in_the_namespaces_is_a_leak(world):
    """A process a plugin started in the host namespace and did not stop (dnsname's
    dnsmasq): counted by name, so a profile's own processes restarted with new PIDs are not."""
    before = world.snapshot()
    p = subprocess.Popen(["ip", "netns", "exec", world.host, "sleep", "30"])
    try:
        time.sleep(0.2)
        leaks, _ = _timed_settle(world, before)
        assert "processes: host: sleep #1" in leaks, leaks
    finally:
        p.kill()
        p.wait()
    assert not any(l.startswith("processes") for l in leak.settle(world, before))


def test_state_files_naming_the_world_are_a_leak(world):
    """Files a plugin keeps outside the dirs its config names, under /run or
    /var/lib/cni, whose path names the world (its network name holds the world's tag)."""
    before = world.snapshot()
    d = f"/run/cni-conf-test-{world.tag}"
    os.makedirs(os.path.join(d, f"net-{world.tag}"))
    try:
        with open(os.path.join(d, f"net-{world.tag}", "addnhosts"), "w") as f:
            f.write("10.0.0.2 web\n")
        leaks, _ = _timed_settle(world, before)
        assert any(l.startswith("state files") and f"net-{world.tag}/addnhosts" in l for l in leaks), leaks
    finally:
        shutil.rmtree(d)
    assert not any(l.startswith("state files") for l in leak.settle(world, before))


def test_container_routes_and_rules_are_leaks(world):
    """What sbr makes in the container: a policy rule and a route in its own table, on a
    link that stays (the pod's eth0, made by the check, not the plugin)."""
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", ns=world.ctr)
    sh("ip", "link", "set", "eth0", "up", ns=world.ctr)
    sh("ip", "addr", "add", "10.99.0.2/24", "dev", "eth0", ns=world.ctr)
    before = world.snapshot()
    sh("ip", "rule", "add", "from", "10.99.0.2", "table", "100", ns=world.ctr)
    sh("ip", "route", "add", "default", "via", "10.99.0.1", "dev", "eth0", "table", "100", ns=world.ctr)
    leaks, _ = _timed_settle(world, before)
    assert any(l.startswith("container rules") and "table=100" in l for l in leaks), leaks
    assert any(l.startswith("container routes") and "table=100" in l for l in leaks), leaks


def test_machine_links_are_the_worlds_only(world):
    """In the machine's own namespace, only the world's links count: one whose peer is in
    the world's container (a plugin that made its veth in the wrong namespace), or named
    with its tag. A link someone else made there meanwhile (a test running alongside) is
    not the plugin's."""
    before = world.snapshot()
    other, mine = f"lko{world.tag[:6]}", f"lkm{world.tag[:6]}"
    try:
        sh("ip", "link", "add", other, "type", "veth", "peer", "name", other + "p")
        sh("ip", "link", "add", mine, "type", "veth", "peer", "name", "eth7", "netns", world.ctr)
        leaks = [l for l in leak.settle(world, before) if l.startswith("machine links")]
        assert leaks == [f"machine links: {mine}"], leaks
    finally:
        for name in (other, mine):
            sh("ip", "link", "delete", name, check=False)
