"""The conformance harness on the plugins that hang a link on a host NIC: macvlan, ipvlan, vlan.

Each run is the harness as users run it (``python -m conformance``), against ours and
against the reference, and its JUnit file is read check by check: against ours every
check passes or is not applicable, against the reference every failure is a documented
deviation (conformance/deviations.py), and either way the interface checks, the
differential ones included, really ran for the plugin (not skipped).

This machine's kernel has macvlan but neither ipvlan nor 802.1Q: those runs are marked
``needs(...)`` and go to the VM lane (tests/kernel_features.py), limited to the suites that
exercise an interface plugin, since the VM is slow. Here the harness must instead report
them cleanly, as not applicable with the kernel's reason.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from tests.helpers import ROOT
from tests.kernel_features import missing, needs

# What an interface plugin's VM run covers, ours and the reference alike: the interface suite
# (checks/test_interface.py and test_interface_teardown.py: the link, the result, IPAM
# delegation, teardown after failures); for ours also the differential checks against the
# reference (from the lifecycle suite; they run the reference too). The rest of the harness
# (DEL twice, GC, 32 containers at once, hostile input, re-cased keys...) exercises code shared
# by every interface plugin and runs here on macvlan: under emulation each check costs ~20 s,
# and the whole harness took 15-27 min per plugin.
VM_SUITES = "interface,interface_teardown,lifecycle"
VM_SELECT = "test_interface or same_shape_as_reference or same_kernel_state_as_reference"
VM_SUITES_REFERENCE = "interface,interface_teardown"
# Checks that must have run (passed, or deviated on the reference) for any of the three.
MUST_RUN = ("test_interface_and_addresses_in_namespace", "test_existing_interface_is_an_error",
            "test_result_layout", "test_ipam_gets_same_env_and_whole_config", "test_ipam_sees_check_and_del",
            "test_ipam_released_when_add_fails_later", "test_gc_and_status_reach_ipam",
            "test_del_after_master_removed", "test_failed_add_leaves_no_link_or_lease", "test_ipam_dns_in_result")
DIFFERENTIAL = ("test_same_shape_as_reference", "test_same_kernel_state_as_reference")


@dataclass
class HarnessRun:
    """One harness run: its process and each check's status ("pass", "skipped",
    "failure", "error") with the message, by JUnit test name (``check[plugin-...]``)."""

    proc: subprocess.CompletedProcess
    cases: dict[str, tuple[str, str]]

    def status(self, check: str, plugin: str) -> tuple[str, str]:
        """The status of ``check`` for ``plugin`` (a check without parameters)."""
        return self.cases.get(f"{check}[{plugin}]", ("absent", ""))

    def problems(self) -> list[str]:
        return [f"{n}: {st}: {msg[:300]}" for n, (st, msg) in self.cases.items() if st in ("failure", "error")]


def _harness(tmp_path, cni_path: str, plugin: str, suites: str = "", select: str = "") -> HarnessRun:
    """``python -m conformance`` on ``plugin`` in ``cni_path`` (only ``suites`` and the checks
    matching ``select``, when given), its JUnit file read."""
    junit = tmp_path / f"{plugin}.xml"
    argv = [sys.executable, "-m", "conformance", "--cni-path", cni_path, "--plugins", plugin,
            "--junit", str(junit), "-q"] + (["--suites", suites] if suites else []) + (["-k", select] if select else [])
    # A bound far above a normal run (~2 min here, ~10 in the VM) that still ends a hung one.
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert junit.exists(), f"the harness wrote no JUnit file: {p.stdout[-3000:]}{p.stderr[-2000:]}"
    cases = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        st, msg = "pass", ""
        for child in tc:
            if child.tag in ("skipped", "failure", "error"):
                st, msg = child.tag, child.get("message", "") or (child.text or "")
        cases[tc.get("name")] = (st, msg)
    return HarnessRun(p, cases)


def _assert_ours(run: HarnessRun, plugin: str) -> None:
    """Ours: exit 0, nothing failed, the interface and differential checks passed."""
    assert run.proc.returncode == 0 and not run.problems(), \
        "\n".join(run.problems()) or run.proc.stdout[-5000:] + run.proc.stderr[-2000:]
    for check in MUST_RUN + DIFFERENTIAL:
        st, msg = run.status(check, plugin)
        assert st == "pass", f"{check}[{plugin}] did not pass: {st} {msg[:300]}"


def _assert_reference(run: HarnessRun, plugin: str) -> None:
    """The reference: exit 0, nothing failed but documented deviations, which were reported
    as such; the checks it passes really ran."""
    assert run.proc.returncode == 0 and not run.problems(), \
        "\n".join(run.problems()) or run.proc.stdout[-5000:] + run.proc.stderr[-2000:]
    deviations = [n for n, (st, msg) in run.cases.items() if st == "skipped" and "expected deviation" in msg]
    assert any(n.startswith("test_failed_add_leaves_no_link_or_lease[") for n in deviations), \
        f"the reference {plugin} is known to leave its link after a failed ADD; deviations reported: {deviations}"
    st, msg = run.status("test_interface_and_addresses_in_namespace", plugin)
    assert st == "pass", f"the reference {plugin} does not even make its link: {st} {msg[:300]}"
    for check in MUST_RUN:  # each ran: passed, or deviated for its documented reason
        st, msg = run.status(check, plugin)
        assert st == "pass" or (st == "skipped" and "expected deviation" in msg), \
            f"{check}[{plugin}] on the reference: {st} {msg[:300]}"


# ---- macvlan: this kernel has it, so the whole harness runs here -----------------------------

def test_macvlan_ours(our_bin, tmp_path):
    """Every suite on our macvlan, the differential checks against the reference included."""
    _assert_ours(_harness(tmp_path, our_bin, "macvlan"), "macvlan")


def test_macvlan_reference(ref_bin, tmp_path):
    """Every suite on the reference macvlan: only documented deviations."""
    run = _harness(tmp_path, ref_bin, "macvlan")
    _assert_reference(run, "macvlan")
    st, msg = run.status("test_del_after_master_removed", "macvlan")
    assert st == "skipped" and "expected deviation" in msg, f"DEL without the master: {st} {msg[:300]}"


# ---- ipvlan and vlan: in the VM lane, the interface suite (VM_SELECT) ------------------------------

@needs("ipvlan")
def test_ipvlan_ours(our_bin, tmp_path):
    _assert_ours(_harness(tmp_path, our_bin, "ipvlan", VM_SUITES, VM_SELECT), "ipvlan")


@needs("ipvlan")
def test_ipvlan_reference(ref_bin, tmp_path):
    _assert_reference(_harness(tmp_path, ref_bin, "ipvlan", VM_SUITES_REFERENCE), "ipvlan")


@needs("vlan")
def test_vlan_ours(our_bin, tmp_path):
    _assert_ours(_harness(tmp_path, our_bin, "vlan", VM_SUITES, VM_SELECT), "vlan")


@needs("vlan")
def test_vlan_reference(ref_bin, tmp_path):
    run = _harness(tmp_path, ref_bin, "vlan", VM_SUITES_REFERENCE)
    _assert_reference(run, "vlan")
    st, msg = run.status("test_del_after_master_removed", "vlan")
    assert st == "skipped" and "expected deviation" in msg, f"DEL without the master: {st} {msg[:300]}"


# ---- here, without ipvlan and 802.1Q: a clean report ------------------------------------------

@pytest.mark.parametrize("plugin,feature", [("ipvlan", "ipvlan"), ("vlan", "vlan")])
def test_missing_kernel_feature_reported_cleanly(ref_bin, tmp_path, plugin, feature):
    """On a kernel without the link kind, the harness exits 0: the checks that need the
    plugin to work are not applicable, with the kernel's reason; the others (environment,
    stdin, versions) still run and pass."""
    if not missing([feature]):
        pytest.skip(f"this kernel has {feature}: the harness runs the plugin for real (test_{plugin}_*)")
    run = _harness(tmp_path, ref_bin, plugin, "generic,interface")
    assert run.proc.returncode == 0 and not run.problems(), "\n".join(run.problems()) or run.proc.stdout[-3000:]
    st, msg = run.status("test_interface_and_addresses_in_namespace", plugin)
    what = "802.1Q vlan" if feature == "vlan" else feature
    assert st == "skipped" and f"kernel has no {what}" in msg, f"{st}: {msg[:300]}"
    assert run.status("test_version_answer", plugin)[0] == "pass", run.status("test_version_answer", plugin)
    assert run.status("test_unknown_command", plugin)[0] == "pass", run.status("test_unknown_command", plugin)
