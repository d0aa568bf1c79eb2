"""Known, documented deviations of plugin implementations from the spec.

A check that fails for an implementation listed here is reported as an *expected
deviation* (pytest xfail) with its reason, not as a failure; one that passes anyway is
reported as an unexpected pass. Every reason cites the spec (checklist section and
level) or a reference-plugins issue, so the list itself can be reviewed.

Implementations are recognised by ``--cni-implementation`` or, by default, by the
directory and the type: in /usr/lib/cni, the types Debian's containernetworking-plugins
(1.1.1) ships are the reference's; anything else there (a third party's plugin installed
next to them, such as podman's dnsname) is under test like any other plugin.
"""

from __future__ import annotations

import os

REFERENCE = "reference"
UNDER_TEST = "under-test"
REFERENCE_DIR = "/usr/lib/cni"
# What Debian's containernetworking-plugins 1.1.1 installs in REFERENCE_DIR.
REFERENCE_TYPES = frozenset({"bandwidth", "bridge", "dhcp", "firewall", "host-device", "host-local", "ipvlan",
                             "loopback", "macvlan", "portmap", "ptp", "sbr", "static", "tuning", "vlan", "vrf"})


def implementation_of(cni_path: str, plugin_type: str) -> str:
    """The deviation set of ``plugin_type`` found in ``cni_path`` (see the module doc)."""
    if os.path.realpath(cni_path) == REFERENCE_DIR and plugin_type in REFERENCE_TYPES:
        return REFERENCE
    return UNDER_TEST

_PRE_1_1 = ("Debian's reference plugins (1.1.1) predate CNI 1.1.0: VERSION stops at 1.0.0, "
            "1.1.0 configs are refused with code 1 and GC/STATUS are unknown commands (code 4); "
            "spec 1.1.0, checklist C13/C17/H/I")

_ARGS = ("the reference fails on CNI_ARGS keys it does not use (K8S_POD_*) unless "
         "IgnoreUnknown=1, although CNI_ARGS is shared by every plugin of a chain "
         "(reference-plugins.md, Common)")

_FIREWALL_DEL_NEEDS_PREV = (
    "the reference firewall (1.1.1) DEL removes only the rules of the addresses in prevResult: a DEL "
    "without prevResult (a runtime that lost its cache) removes nothing, and CHECK still passes after it "
    "(more-plugins.md §7 DEL; checklist F27)")

_BANDWIDTH_DEL_KEEPS_QDISCS = (
    "the reference bandwidth (1.1.1) DEL deletes the IFB only: the TBF and ingress qdiscs (and the "
    "redirect filter) stay on the host veth until the interface plugin deletes the veth, so a veth "
    "that outlives the attachment stays shaped (more-plugins.md §8 DEL; checklist F27)")

_BRIDGE_MAC_RACE = (
    "timing-dependent, the reference bridge's (the interface plugin the chain runs behind): when the first "
    "pods are added at once to a new bridge, a pod's result can carry a bridge MAC that changes before the "
    "bridge's address is pinned (an unpinned bridge takes its ports' lowest MAC), so that pod's CHECK fails "
    "'Bridge interface ... Mac doesn't match' (seen in 1 harness run of 4, 1 pod of 12; the failure message says "
    "whether bridge's CHECK alone fails too); the same chains on our bridge pass")

_NOT_NETNS = ("the reference answers at once for a CNI_NETNS that is no namespace (it checks the file "
              "system type before opening: 'unknown FS magic'), but with code 999, not 8 (checklist A7/B10)")

_SELF_DELEGATION = (
    "the reference bridge with \"ipam\": {\"type\": \"bridge\"} execs itself without end on CHECK and DEL "
    "(its IPAM call comes first): a fork bomb, observed at 1,100 processes in 3 s until the machine ran out "
    "of memory; under the harness's limit of 32 tasks it dies of failed thread creations instead. ADD "
    "fails in the nested call ('eth0 already exists', code 999) and leaves the veth pair (issue 12)")

_DNS_DROPPED = (
    "the reference {t} (1.1.1) sets the result's dns to its own top-level \"dns\" key unconditionally, so "
    "the DNS settings its IPAM plugin returned are dropped (empty dns) unless repeated at top level "
    "(more-plugins.md §0 'DNS in main-plugin results'; checklist J44)")

_FAILED_ADD_LEAVES_LINK = (
    "the reference {t} (1.1.1) leaves the container link after an ADD that fails once IPAM ran ({what}: "
    "more-plugins.md §{s}); only the runtime's follow-up DEL removes it (checklist D21)")

_TEMP_LINK_LEFT = (
    "the reference {t} creates its link under a temporary name (veth + 8 hex digits) and, when the rename "
    "to CNI_IFNAME fails because that name exists, leaves the temporary link in the container, where no DEL "
    "finds it (more-plugins.md §0 'Creating the container link', step 3; observed for ipvlan; checklist D19/D21)")

_DEL_NEEDS_MASTER = (
    "the reference {t} (1.1.1) loads and validates the whole config on DEL, master lookup included, so "
    "DEL fails ('Link not found', code 999) once the master is gone, and the lease stays "
    "(more-plugins.md §{s}; observed; checklist F27)")

_TEMPLATE_IFNAME_L2 = (
    "the reference {t} renames its new link to CNI_IFNAME unchecked: 'eth%d' becomes eth0 in the container, "
    "then ADD fails ('failed to refetch') and leaves eth0; DEL with 'eth%d' finds nothing to delete "
    "(observed; checklist A4/D21)")

_MASTER_TEMPLATE_CODE = (
    "the reference {t} answers a master named 'cni%d' (no such link) with code 999 'Link not found', "
    "not 7 (observed; checklist B10)")

_DEL_TAKES_IFNAME = (
    "the reference {t}'s DEL deletes whatever link is called CNI_IFNAME in the container, also one "
    "its ADD refused to replace (observed; checklist D19/F28)")

_KILLED_TEMP_LINK = (
    "the reference {t} creates its link under a temporary name (veth + 8 random hex digits) and renames it "
    "to CNI_IFNAME last: an ADD killed in between leaves the temporary link in the container, and DEL, "
    "which looks for CNI_IFNAME only, never finds it (observed for macvlan, killed 5 ms after start; "
    "timing-dependent, so it may also pass; checklist F28)")

_SELF_DELEGATION_L2 = (
    "the reference {t} with \"ipam\": {{\"type\": \"{t}\"}} execs itself without end on CHECK and DEL "
    "(IPAM runs first; the harness's limit of 32 tasks stops it); its ADD fails in the nested call with "
    "code 999 (observed; issue 12)")


_STATIC_RECASED = (
    "the reference static (1.1.1) needs CIDR notation in args.cni.ips ('an entry in the 'ips' field is NOT in "
    "CIDR notation'), and the harness's config requests a bare address there (as host-local takes it), so its "
    "ADD fails before anything is compared; and with a prefix, the Go-field-case key \"Address\" of an "
    "ipam.addresses entry lands on its untagged internal field Address net.IPNet ('cannot unmarshal string into "
    "Go struct field Address.ipam.addresses.Address of type net.IPNet', observed) (more-plugins.md §5)")


def _l2(t: str, section: int, failed_add: str) -> dict[tuple[str, str, str], str]:
    """The deviations macvlan, ipvlan and vlan of the reference share (more-plugins.md §0-§3);
    ``failed_add``: what its failed ADD does with the lease."""
    return {
        (REFERENCE, t, "J44-ipam-dns-carried"): _DNS_DROPPED.format(t=t),
        (REFERENCE, t, "D21-failed-add-no-link"): _FAILED_ADD_LEAVES_LINK.format(t=t, s=section, what=failed_add),
        (REFERENCE, t, "A4-ifname-template"): _TEMPLATE_IFNAME_L2.format(t=t),
        (REFERENCE, t, "A4-ifname-template-code"): _TEMPLATE_IFNAME_L2.format(t=t),
        (REFERENCE, t, "K-ifname-template-key-code"): _MASTER_TEMPLATE_CODE.format(t=t),
        (REFERENCE, t, "A7-netns-special-file-code"): _NOT_NETNS,
        (REFERENCE, t, "F28-del-spares-foreign-interface"): _DEL_TAKES_IFNAME.format(t=t),
        (REFERENCE, t, "J-self-delegation"): _SELF_DELEGATION_L2.format(t=t),
        (REFERENCE, t, "J-self-delegation-code"): _SELF_DELEGATION_L2.format(t=t),
        (REFERENCE, t, "F28-del-after-killed-add"): _KILLED_TEMP_LINK.format(t=t),
    }


# (implementation, plugin type or "*", check id) -> reason
_PORTMAP_819_LIBCNI = ("the reference portmap (1.1.1) CHECK looks for IPv6 DNAT rules it never made on a "
                       "single-stack attachment and fails right after ADD, here through libcni behind bridge "
                       "(containernetworking/plugins#819)")

DEVIATIONS: dict[tuple[str, str, str], str] = {
    (REFERENCE, "*", "C13-version-1.1.0"): _PRE_1_1,
    (REFERENCE, "*", "C17-gc-status-gating"): _PRE_1_1,
    (REFERENCE, "*", "H34-gc"): _PRE_1_1,
    (REFERENCE, "*", "H37-gc-lists"): _PRE_1_1,
    (REFERENCE, "*", "I39-status"): _PRE_1_1,
    (REFERENCE, "*", "I39-status-not-ready"): _PRE_1_1,
    (REFERENCE, "*", "J-gc-status-forwarded"): _PRE_1_1,
    (REFERENCE, "*", "A1-cni-path-optional"): (
        "the Go skel requires CNI_PATH for ADD/CHECK/DEL/STATUS although SPEC.md lists it as "
        "optional (checklist A table, 'Go skel also requires')"),
    (REFERENCE, "host-local", "A6-well-known-cni-args"): _ARGS,
    (REFERENCE, "bridge", "A6-well-known-cni-args"): _ARGS,
    (REFERENCE, "portmap", "G29-chained-check"): (
        "the reference portmap (1.1.1) CHECK looks for IPv6 rules it never made on a "
        "single-stack attachment and fails right after ADD (containernetworking/plugins#819)"),
    # tuning, bandwidth, firewall (more-plugins.md §6-§8; profiles in conformance/profiles.py)
    (REFERENCE, "firewall", "E22-passthrough"): _FIREWALL_DEL_NEEDS_PREV,
    (REFERENCE, "firewall", "E22-effect-applied"): _FIREWALL_DEL_NEEDS_PREV,
    (REFERENCE, "firewall", "G29-chained-check"): _FIREWALL_DEL_NEEDS_PREV,
    (REFERENCE, "firewall", "A7-netns-special-file"): _FIREWALL_DEL_NEEDS_PREV,
    (REFERENCE, "firewall", "A4-ifname-template"): _FIREWALL_DEL_NEEDS_PREV,
    (REFERENCE, "firewall", "K-recased-keys-check"): _FIREWALL_DEL_NEEDS_PREV,
    (REFERENCE, "bandwidth", "K-recased-keys"): _BANDWIDTH_DEL_KEEPS_QDISCS,
    (REFERENCE, "bandwidth", "K-recased-keys-check"): _BANDWIDTH_DEL_KEEPS_QDISCS,
    (REFERENCE, "bandwidth", "E22-effect-applied"): _BANDWIDTH_DEL_KEEPS_QDISCS,
    (REFERENCE, "bandwidth", "G29-chained-check"): _BANDWIDTH_DEL_KEEPS_QDISCS,
    (REFERENCE, "bridge", "F28-del-spares-foreign-interface"): (
        "the reference bridge's DEL deletes whatever link is called CNI_IFNAME in the "
        "container, also one it refused to replace on ADD (checklist D19/F28)"),
    (REFERENCE, "*", "B10-meaningful-codes"): (
        "the reference answers code 999 for plugin-raised errors, including bad config "
        "values that SPEC.md assigns code 7 (checklist B10)"),
    (REFERENCE, "loopback", "C14-result-schema"): (
        "the reference loopback (1.1.1) prints its 1.0 result unconverted under an older "
        "cniVersion label (0.2.0 result without ip4; 0.4.0 without ips[].version), checklist C14 (M)"),
    (REFERENCE, "host-local", "D21-failed-add-no-trace"): (
        "the reference host-local advances last_reserved_ip on a failed ADD "
        "(reference-plugins.md, host-local gaps)"),
    # static (more-plugins.md §5; profile in conformance/profiles.py)
    (REFERENCE, "static", "A6-well-known-cni-args"): (
        "the reference static reads CNI_ARGS (IP, GATEWAY) with libcni's strict parser and fails on K8S_POD_* "
        "unless IgnoreUnknown=1 (more-plugins.md §0 CNI_ARGS; observed)"),
    (REFERENCE, "static", "G31-check-detects-loss"): (
        "the reference static's CHECK compares the configured gateways with prevResult only and never looks at "
        "the container: an address removed from the interface still passes (more-plugins.md §5 CHECK; checklist G31)"),
    (REFERENCE, "static", "K-recased-keys"): _STATIC_RECASED,
    (REFERENCE, "static", "K-recased-keys-check"): _STATIC_RECASED,
    # dhcp: the reference plugin with the reference's own daemon, dnsmasq on the world's LAN
    # (profile in conformance/profiles.py; README "dhcp (IPAM)", Beyond the reference)
    (REFERENCE, "dhcp", "G31-check-detects-loss"): (
        "the reference dhcp's CHECK only asks its daemon to Allocate (which acquires a lease when the "
        "attachment has none) and never looks at the container: a leased address removed from the interface "
        "still passes (plugins/ipam/dhcp/main.go cmdCheck, 1.1.1; checklist G31)"),
    (REFERENCE, "dhcp", "L50-parallel-adds"): (
        "the reference dhcp daemon (1.1.1) gives concurrent ADDs on one interface (one MAC, distinct client "
        "IDs) the same address twice from one dnsmasq (observed: 32 parallel ADDs, 25 distinct addresses); "
        "ours, against the same server, gets 32 (checklist L50)"),
    (REFERENCE, "dhcp", "L50-interleaved"): (
        "the reference dhcp daemon (1.1.1) gives concurrent ADDs on one interface the same address twice "
        "(see L50-parallel-adds; observed; checklist L50)"),
    (REFERENCE, "dhcp", "A5-long-container-id"): (
        "the reference dhcp's client ID (option 61) is '<containerID>/<network>/<ifname>' cut to what one "
        "option holds, so two 5,000-character container IDs differing only at the end are one client to the "
        "DHCP server and get one address (observed; issue 12)"),
    (REFERENCE, "dhcp", "A7-netns-special-file-code"): (
        "the reference dhcp daemon answers a CNI_NETNS that is no namespace at once, but with code 999 "
        "('unknown FS magic'), not 8 (checklist A7/B10)"),
    # Chained plugins behind a real bridge, through libcni (conformance/checks/test_chained_lifecycle.py)
    (REFERENCE, "portmap", "LC-chained-lifecycle"): _PORTMAP_819_LIBCNI,
    (REFERENCE, "portmap", "LC-chained-parallel"): _PORTMAP_819_LIBCNI,
    (REFERENCE, "portmap", "LC-chained-interleaved"): _PORTMAP_819_LIBCNI,
    **{(REFERENCE, t, "LC-chained-parallel"): _BRIDGE_MAC_RACE for t in ("tuning", "bandwidth", "firewall")},
    (REFERENCE, "bandwidth", "G31-chained-check-detects-loss"): (
        "the reference bandwidth (1.1.1) CHECK stops at the first qdisc that is not a TBF: with the host veth's "
        "TBF removed, its listing starts with the ingress qdisc and the ingress rate is not checked at all "
        "(more-plugins.md bandwidth CHECK; checklist G31)"),
    (REFERENCE, "tuning", "LC-chained-del-netns-gone"): (
        "the reference tuning (1.1.1) saves the pod's link settings in <dataDir>/<containerID>_<ifname>.json on "
        "ADD and, when DEL finds the pod's namespace gone, returns without removing that file: one file left per "
        "pod deleted after its namespace (observed)"),
    # Hostile input (issue 12, conformance/checks/test_hostile.py)
    (REFERENCE, "loopback", "A7-netns-special-file-code"): _NOT_NETNS,
    (REFERENCE, "bridge", "A7-netns-special-file-code"): _NOT_NETNS,
    (REFERENCE, "bridge", "A4-ifname-template"): (
        "the reference bridge hands CNI_IFNAME to the kernel unchecked: 'eth%d' becomes eth0 in the "
        "container, then ADD fails ('failed to make veth pair: Link not found') and leaves eth0 and its "
        "host-side veth; DEL with 'eth%d' finds nothing to delete (issue 12; checklist A4/D21)"),
    (REFERENCE, "bridge", "A4-ifname-template-code"): (
        "the reference bridge answers CNI_IFNAME 'eth%d' with code 999 after the kernel made eth0 "
        "(see A4-ifname-template; checklist B10)"),
    (REFERENCE, "bridge", "K-ifname-template-key"): (
        "the reference bridge creates the bridge its 'bridge' key names unchecked: 'cni%d' ('br%d') "
        "becomes cni0 (br0), which stays after ADD fails ('could not lookup', code 999) (issue 12, observed)"),
    (REFERENCE, "bridge", "K-ifname-template-key-code"): (
        "the reference bridge answers a '%' template in 'bridge' with code 999 after the kernel made the "
        "link (see K-ifname-template-key; checklist B10)"),
    (REFERENCE, "bridge", "J-self-delegation"): _SELF_DELEGATION,
    (REFERENCE, "bridge", "J-self-delegation-code"): _SELF_DELEGATION,
    (REFERENCE, "bridge", "J44-ipam-dns-carried"): _DNS_DROPPED.format(t="bridge"),
    (REFERENCE, "bridge", "D21-failed-add-no-link"): (
        "the reference bridge (1.1.1) leaves the container's veth after an ADD that fails once IPAM ran "
        "(reference-plugins.md, bridge gaps); only the runtime's follow-up DEL removes it (checklist D21)"),
    # macvlan, ipvlan, vlan (more-plugins.md §0-§3; the harness's profiles in conformance/profiles.py)
    **_l2("macvlan", 1, "it releases the lease, not the link"),
    (REFERENCE, "macvlan", "A6-well-known-cni-args"): (
        "the reference macvlan reads CNI_ARGS (MAC) with libcni's strict parser and fails on K8S_POD_* "
        "unless IgnoreUnknown=1 (more-plugins.md §0 CNI_ARGS)"),
    (REFERENCE, "macvlan", "F27-del-master-gone"): (
        "the reference macvlan 1.1.1 loads and validates the whole config on DEL, master lookup included, so "
        "DEL fails ('Link not found', code 999) once the master is gone, and the lease stays (observed; "
        "more-plugins.md §1 describes the newer macvlan, whose DEL no longer validates; checklist F27)"),
    **_l2("ipvlan", 2, "it releases neither the link nor the lease: its error variable is shadowed"),
    (REFERENCE, "ipvlan", "D19-ifname-exists"): _TEMP_LINK_LEFT.format(t="ipvlan"),
    (REFERENCE, "ipvlan", "J46-ipam-released"): (
        "the reference ipvlan (1.1.1) does not call IPAM DEL when ADD fails after IPAM (a route the kernel "
        "refuses): its error variable is shadowed, so only a result-conversion failure releases the address "
        "(more-plugins.md §2 ADD; observed; checklist D21/J46)"),
    **_l2("vlan", 3, "it releases the lease, not the link"),
    (REFERENCE, "vlan", "D19-ifname-exists"): _TEMP_LINK_LEFT.format(t="vlan"),
    (REFERENCE, "vlan", "J46-ipam-error-code"): (
        "the reference vlan wraps an IPAM error as 'failed to execute IPAM delegate: ...' with code 999, "
        "losing the IPAM's own code (more-plugins.md §3 ADD; checklist J46)"),
    (REFERENCE, "vlan", "F27-del-master-gone"): _DEL_NEEDS_MASTER.format(t="vlan", s="3 'DEL (BUG)'"),
}


def reason(implementation: str, plugin_type: str, check_id: str) -> str | None:
    """The documented reason ``implementation``'s ``plugin_type`` deviates on ``check_id``."""
    return (DEVIATIONS.get((implementation, plugin_type, check_id))
            or DEVIATIONS.get((implementation, "*", check_id)))
