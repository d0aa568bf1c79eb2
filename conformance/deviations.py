"""Known, documented deviations of plugin implementations from the spec.

A check that fails for an implementation listed here is reported as an *expected
deviation* (pytest xfail) with its reason, not as a failure; one that passes anyway is
reported as an unexpected pass. Every reason cites the spec (checklist section and
level) or a reference-plugins issue, so the list itself can be reviewed.

Implementations are recognised by ``--cni-implementation`` or, by default, by the
directory: /usr/lib/cni is Debian's build of the reference plugins (1.1.1).
"""

from __future__ import annotations

REFERENCE = "reference"

_PRE_1_1 = ("Debian's reference plugins (1.1.1) predate CNI 1.1.0: VERSION stops at 1.0.0, "
            "1.1.0 configs are refused with code 1 and GC/STATUS are unknown commands (code 4); "
            "spec 1.1.0, checklist C13/C17/H/I")

_ARGS = ("the reference fails on CNI_ARGS keys it does not use (K8S_POD_*) unless "
         "IgnoreUnknown=1, although CNI_ARGS is shared by every plugin of a chain "
         "(reference-plugins.md, Common)")

_NOT_NETNS = ("the reference answers at once for a CNI_NETNS that is no namespace (it checks the file "
              "system type before opening: 'unknown FS magic'), but with code 999, not 8 (checklist A7/B10)")

_SELF_DELEGATION = (
    "the reference bridge with \"ipam\": {\"type\": \"bridge\"} execs itself without end on CHECK and DEL "
    "(its IPAM call comes first): a fork bomb, observed at 1,100 processes in 3 s until the machine ran out "
    "of memory; under the harness's limit of 32 tasks it dies of failed thread creations instead. ADD "
    "fails in the nested call ('eth0 already exists', code 999) and leaves the veth pair (issue 12)")

# (implementation, plugin type or "*", check id) -> reason
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
}


def reason(implementation: str, plugin_type: str, check_id: str) -> str | None:
    """The documented reason ``implementation``'s ``plugin_type`` deviates on ``check_id``."""
    return (DEVIATIONS.get((implementation, plugin_type, check_id))
            or DEVIATIONS.get((implementation, "*", check_id)))
