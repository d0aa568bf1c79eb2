"""Interface plugin checks on what an attachment leaves and carries when things go wrong or
come from IPAM: a failed ADD without the runtime's follow-up DEL, DEL after the host link
the attachment hangs on is gone, and the IPAM's DNS in the result (checklist D21, F27, J44).

The reference macvlan, ipvlan and vlan fail some of these for known reasons
(more-plugins.md §0-§3), documented in conformance/deviations.py.
"""

from __future__ import annotations

import os

import pytest

from conformance.checks.common import add_ok, assert_error, del_ok, need_profile, newest, run
from conformance.leak import _links
from conformance.plugin import check, kinds

# A route whose gateway no address of the attachment reaches: the kernel refuses it after
# the plugin made the link and IPAM leased the address, so ADD fails late.
UNREACHABLE_ROUTE = {"dst": "192.0.2.0/24", "gw": "198.51.100.1"}
IPAM_DNS = {"nameservers": ["192.0.2.53"], "domain": "ipam.example", "search": ["ipam.example"],
            "options": ["ndots:2"]}
CONF_DNS = {"nameservers": ["192.0.2.54"], "search": ["conf.example"]}


def _leases(world) -> set[str]:
    """host-local's lease files in the world's data dir (bookkeeping files left out)."""
    return {f for _, _, fs in os.walk(world.sandbox.data_dir) for f in fs
            if f != "lock" and not f.startswith("last_reserved_ip")}


def _host_local(conf: dict) -> bool:
    ipam = conf.get("ipam")
    return isinstance(ipam, dict) and ipam.get("type") == "host-local"


@check("D21-failed-add-no-link", "D ADD", "M", "SPEC §ADD (a failed ADD leaves nothing); checklist D21/J46")
@kinds("interface")
def test_failed_add_leaves_no_link_or_lease(plugin, world):
    """ADD that fails after the link was made and the address leased (IPAM hands out a
    route the kernel refuses) leaves no link in the container and no lease, before any
    DEL: a runtime that crashes after the failed ADD never sends one."""
    need_profile(plugin)
    conf = world.conf(newest(plugin, world, "1.0.0"))
    if not _host_local(conf):
        pytest.skip("not applicable: the harness's profile for this type does not use host-local")
    conf["ipam"] = dict(conf["ipam"], routes=[UNREACHABLE_ROUTE])
    assert_error(run(world, plugin, "ADD", conf))
    left = sorted(_links(world.ctr) - {"lo"})
    leases = sorted(_leases(world))
    del_ok(world, plugin, conf)  # what a runtime does next; releases what ADD left, if anything
    assert not left, f"the failed ADD left links in the container: {left}"
    assert not leases, f"the failed ADD left leases: {leases}"


@check("F27-del-master-gone", "F DEL", "M", "SPEC §DEL (complete without error when resources are missing); checklist F27")
@kinds("interface")
def test_del_after_master_removed(plugin, world):
    """The host link the attachment hangs on (macvlan's, ipvlan's, vlan's ``master``)
    disappears, as a NIC does when unplugged or renamed, and the kernel deletes the
    container's link with it: DEL still succeeds and releases the lease."""
    need_profile(plugin)
    if plugin.profile.drop_parent is None:
        pytest.skip(f"not applicable: {plugin.type}'s attachment hangs on no host link the harness can remove")
    conf = world.conf(newest(plugin, world, "1.0.0"))
    add_ok(world, plugin, conf)
    plugin.profile.drop_parent(world)
    out = run(world, plugin, "DEL", conf)
    assert out.ok and out.stdout.strip() == b"", f"DEL after the master was removed: {out}"
    assert not _leases(world), f"DEL after the master was removed kept the leases: {sorted(_leases(world))}"


@check("J44-ipam-dns-carried", "J Delegation", "M", "SPEC §Delegated plugins; checklist J44 (routes and dns carried over)")
@kinds("interface")
def test_ipam_dns_in_result(plugin, world):
    """The DNS settings the IPAM plugin returns are in the result when the config has no
    ``dns`` of its own; a config ``dns`` replaces them."""
    need_profile(plugin)
    v = newest(plugin, world, "1.0.0")
    conf = world.conf(v, ipam=world.spy_ipam(dns=IPAM_DNS))
    res = add_ok(world, plugin, conf, path=world.spy_path)
    del_ok(world, plugin, conf, path=world.spy_path)
    assert res.get("dns") == IPAM_DNS, f"the IPAM's dns {IPAM_DNS} did not come back: dns = {res.get('dns')}"
    conf = world.conf(v, ipam=world.spy_ipam(dns=IPAM_DNS), dns=CONF_DNS)
    res = add_ok(world, plugin, conf, path=world.spy_path)
    del_ok(world, plugin, conf, path=world.spy_path)
    assert res.get("dns") == CONF_DNS, f"the config's dns {CONF_DNS} should replace the IPAM's: dns = {res.get('dns')}"
