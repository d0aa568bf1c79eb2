"""The CRI lane in ``make test``: our plugins and the reference's under containerd's CRI.

Runs the harness as users run it (``python -m conformance --cni-path DIR --runtime cri``)
for ours (dist/bin, our bandwidth included) and for the reference
(/usr/lib/cni): every check of the lane must pass for both (see conformance/lanes/test_cri.py:
pods made through CRI, reached on their IP, through a hostPort on 127.0.0.1 and on the
node's address, from each other; DNS config, bandwidth shaping in the kernel and measured
in TCP traffic (the annotated pod within +-20% of its rates both ways, the other over 10x
faster); nothing left after Stop + Remove, 10 pods one after another and 10 at once; a
clean teardown). The per-call medians and the measured rates of both are printed side by
side. Then the lane must catch broken plugins
(conformance/broken/flawed.py): an ADD error must surface as the failure of the pod checks,
with the plugin's own message, and a DEL that removes nothing must fail the removal check.

Skipped (with the reason) only when containerd, runc or another tool the lane needs is
not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from conformance.runtimes.cri_lane import LANE_TYPES, missing_tools
from tests.helpers import ROOT
from tests.runtime_env import copy_plugins

pytestmark = pytest.mark.root

FLAWED = os.path.join(ROOT, "conformance", "broken", "flawed.py")
CALLS = ("RunPodSandbox", "StopPodSandbox", "RemovePodSandbox")
CHECKS = 15  # the lane's checks (conformance/lanes/test_cri.py)
UNITS = (" ms", " Mbit/s")  # measurements printed side by side


@dataclass
class LaneRun:
    """One harness run of the lane: exit status, output, outcome (and message) per check,
    measurements (JUnit test suite properties)."""

    rc: int
    output: str
    cases: dict[str, tuple[str, str]]
    measurements: dict[str, str]


def run_lane(tmp_path, cni_path: str, *extra: str) -> LaneRun:
    junit = tmp_path / f"cri-{os.path.basename(cni_path)}.xml"
    report = tmp_path / f"cri-{os.path.basename(cni_path)}.html"
    p = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", cni_path, "--runtime", "cri",
                        "--junit", str(junit), "--report", str(report), *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root[0]
    cases = {}
    for case in suite.iter("testcase"):
        status, message = "pass", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, message = "fail", child.get("message") or ""
            elif child.tag == "skipped" and status == "pass":
                status, message = "skipped", child.get("message") or ""
        cases[case.get("name")] = (status, message)
    props = {pr.get("name"): pr.get("value") for pr in suite.iter("property")}
    if "<table>" not in report.read_text():
        raise AssertionError("the lane wrote no HTML report table")
    return LaneRun(p.returncode, p.stdout + p.stderr, cases, props)


@pytest.fixture(scope="module", autouse=True)
def lane_tools():
    missing = missing_tools()
    if missing:
        pytest.skip(f"CRI lane: {', '.join(missing)} not installed (Debian packages containerd, runc, "
                    "iproute2: build/setup.sh)")


@pytest.fixture(scope="module")
def runs(our_bin, ref_bin, tmp_path_factory) -> dict[str, LaneRun]:
    """The lane for ours and for the reference, one after the other."""
    tmp = tmp_path_factory.mktemp("cri")
    # Ours as a user installs them: each plugin file copied alone into a fresh directory.
    ours = copy_plugins(our_bin, str(tmp / "ours"))
    return {"ours": run_lane(tmp, ours), "reference": run_lane(tmp, ref_bin)}


def _assert_all_pass(run: LaneRun) -> None:
    failed = {n: m for n, (s, m) in run.cases.items() if s != "pass"}
    assert run.rc == 0 and not failed, f"{failed}\n{run.output[-6000:]}"
    assert len(run.cases) == CHECKS, sorted(run.cases)


def test_reference_under_cri(runs):
    _assert_all_pass(runs["reference"])


def test_ours_under_cri(runs):
    _assert_all_pass(runs["ours"])


def test_timings_side_by_side(runs, capsys):
    """The lane's timings for both (medians of 10 sequential pods, parallel wall times) and
    the throughputs it measured, printed with ours / reference."""
    timed = sorted({n for r in runs.values() for n, v in r.measurements.items() if v.endswith(UNITS)})
    rows = []
    for name in timed:
        ours, ref = (runs[i].measurements.get(name, "-") for i in ("ours", "reference"))
        try:
            ratio = f"{float(ours.split()[0]) / float(ref.split()[0]):.2f}x"
        except (ValueError, ZeroDivisionError):
            ratio = "-"
        rows.append(f"  {name:<52} {ours:>13} {ref:>13} {ratio:>8}")
    runtime = runs["reference"].measurements.get("cri runtime", "containerd")
    with capsys.disabled():
        print(f"\nCRI lane, {runtime}:\n  {'':<52} {'ours':>13} {'reference':>13} {'ours/ref':>8}")
        print("\n".join(rows))
    for call in CALLS:
        for impl in ("ours", "reference"):
            assert any(call in n for n in timed if n in runs[impl].measurements), f"{impl}: no {call} median measured"
    for impl in ("ours", "reference"):
        assert any(n.startswith("cri bandwidth") for n in timed if n in runs[impl].measurements), \
            f"{impl}: no bandwidth throughput measured"


def _flawed_set(tmp_path, our_bin: str, plugin_type: str, flaw: str) -> str:
    """Our plugin set with ``plugin_type`` wrapped by the broken plugin (flaw ``flaw``)."""
    d = tmp_path / f"flawed-{flaw}"
    d.mkdir()
    for t in LANE_TYPES:
        if os.path.exists(os.path.join(our_bin, t)) and t != plugin_type:
            shutil.copyfile(os.path.join(our_bin, t), d / t)  # each file alone, as a user copies it
            os.chmod(d / t, 0o755)
    shutil.copy(FLAWED, d / plugin_type)
    (d / ".flaw.json").write_text(json.dumps({"real": os.path.join(our_bin, plugin_type), "flaw": flaw}))
    return str(d)


def test_lane_reports_the_plugins_add_error(our_bin, tmp_path):
    """bridge delegating to an IPAM plugin it cannot find: RunPodSandbox fails, and the pod
    checks fail with bridge's own error message (through containerd's)."""
    run = run_lane(tmp_path, _flawed_set(tmp_path, our_bin, "bridge", "ignores-cni-path"),
                   "-k", "run_pod_sandbox or teardown")
    assert run.rc != 0
    status, message = run.cases["test_run_pod_sandbox"]
    assert status == "fail" and 'plugin type="bridge" failed (add)' in message and "host-local" in message, run.cases
    assert run.cases["test_teardown"][0] == "pass", run.cases


def test_lane_catches_what_del_leaves(our_bin, tmp_path):
    """portmap's DEL removing nothing: the removal check names the rules left behind."""
    run = run_lane(tmp_path, _flawed_set(tmp_path, our_bin, "portmap", "del-does-nothing"),
                   "-k", "stop_remove or teardown")
    assert run.rc != 0
    status, message = run.cases["test_stop_remove"]
    assert status == "fail" and "firewall" in message, run.cases
    assert run.cases["test_teardown"][0] == "pass", run.cases
