"""The published conformance results (docs/conformance/) still hold.

docs/conformance/README.md publishes, per plugin we did not write (Debian's reference ptp,
host-device, sbr, vrf and the third-party dnsname), the harness's verdicts with the config
in docs/conformance/configs/<plugin>.json. Here each published config runs through the
harness as users run it (``python -m conformance --config ... --json ...``) on a small, fast
selection of checks (``-k``), and the JSON report is read check by check:

- the config is still accepted (no usage error, the selected checks ran);
- each selected check the page lists as passing (it is not in the plugin's failure table)
  still passes;
- each selected check the page names as a real bug of the plugin still fails;

and the page's reproduction scripts (docs/conformance/repro/) still show the bugs found by
hand, which no check sees. So a change to the harness, the plugins or the page that contradicts the page fails here.
dnsname keeps its state under /run/containers/cni/dnsname/<network> (fixed path, see the
page); what the runs leave there is removed after each run, and a dnsmasq still running
from there fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.helpers import REF_BIN, ROOT
from tests.kernel_features import needs

DOCS = os.path.join(ROOT, "docs", "conformance")
CHECKS_DIR = os.path.join(ROOT, "conformance", "checks")
DNSNAME_STATE = "/run/containers/cni/dnsname"


# plugin -> (extra harness arguments, check ids the page says pass, check ids the page names as
# real bugs). Chosen among the checks that take well under a second each.
SELECTION: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "ptp": ((), ("A2-del-without-netns", "F25-del-twice", "F26-del-never-added", "D19-ifname-exists"),
            ("A4-ifname-template", "F28-del-spares-foreign-interface", "D21-failed-add-no-link")),
    "host-device": (("--single-attachment", "one device per config"),
                    ("A2-del-without-netns", "G29-check-after-add", "K47-tolerated-keys", "K48-runtime-config-tolerated"),
                    ("F25-del-twice", "F26-del-never-added", "F27-del-netns-gone", "D19-ifname-exists",
                     "J44-ipam-dns-carried")),
    "sbr": (("--kind", "meta"), ("E24-needs-prev-result", "B12-silent-success", "F26-del-never-added"),
            ("A2-del-without-netns", "G29-chained-check", "E23-prev-result-versions",
             "LC-chained-del-never-added", "LC-chained-lifecycle", "E22-effect-applied")),
    "dnsname": (("--kind", "meta"), ("E24-needs-prev-result", "A2-del-without-netns", "LC-chained-del-never-added"),
                ("G29-chained-check", "LC-chained-lifecycle", "E22-effect-applied", "LC-chained-del-netns-gone")),
    # The page's vrf bugs were found in the VM lane (Debian's kernel): they are pinned only on a
    # kernel with VRF (VRF_BUGS); elsewhere only checks that need no VRF device are.
    "vrf": (("--kind", "meta", "--needs-kernel", "vrf"), ("A3-unknown-command", "B11-bad-stdin",
                                                           "C15-unsupported-version"), ()),
}
VRF_BUGS = ("G29-chained-check", "LC-chained-lifecycle")


def _functions() -> dict[str, str]:
    """Check id -> the check's test function name, from conformance/checks/*.py."""
    out: dict[str, str] = {}
    for name in sorted(os.listdir(CHECKS_DIR)):
        if name.startswith("test_") and name.endswith(".py"):
            with open(os.path.join(CHECKS_DIR, name)) as f:
                for cid, fn in re.findall(r'@check\("([^"]+)".*?\ndef (\w+)\(', f.read(), re.S):
                    out[cid] = fn
    return out


def _keyword(functions: list[str], every: list[str]) -> str:
    """A -k expression selecting exactly ``functions`` (pytest -k matches substrings, so
    ``test_del_twice`` would also select a longer name containing it)."""
    parts = []
    for fn in functions:
        longer = sorted({o for o in every if o != fn and fn in o})
        parts.append(f"({fn} and not ({' or '.join(longer)}))" if longer else fn)
    return " or ".join(parts)


def _published(plugin: str) -> tuple[str, dict[str, str]]:
    """The page's section on ``plugin`` and its failure table: check id -> verdict column."""
    with open(os.path.join(DOCS, "README.md")) as f:
        text = f.read()
    m = re.search(rf"^## {re.escape(plugin)}\b.*?(?=^## |\Z)", text, re.M | re.S)
    assert m, f"docs/conformance/README.md has no section '## {plugin}'"
    section = m.group(0)
    rows = re.findall(r"^\| `([A-Za-z0-9-]+)` \| [^|]* \| ([^|]+) \|", section, re.M)
    return section, {cid: verdict.strip() for cid, verdict in rows}


def _dnsname_dirs() -> set[str]:
    return set(os.listdir(DNSNAME_STATE)) if os.path.isdir(DNSNAME_STATE) else set()


def _remove_dnsname_state(names: set[str], parents: list[str]) -> list[str]:
    """Remove what the runs left under DNSNAME_STATE (the entries ``names``, and the
    directories ``parents`` if empty: those the runs made); returns the dnsmasq processes
    that were still running from there (killed)."""
    alive = []
    for n in names:
        d = os.path.join(DNSNAME_STATE, n)
        try:
            with open(os.path.join(d, "pidfile")) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if d.encode() in f.read():
                    os.kill(pid, signal.SIGKILL)
                    alive.append(f"dnsmasq {pid} ({d})")
        except (OSError, ValueError):
            pass
        shutil.rmtree(d, ignore_errors=True)
    for d in parents:  # deepest first
        try:
            os.rmdir(d)  # only if empty: made by these runs, nothing else uses it
        except OSError:
            break
    return alive


@pytest.mark.parametrize("plugin", sorted(SELECTION))
def test_published_results_hold(plugin, tmp_path):
    """The page's verdicts on ``plugin``, for the selected checks, are still the harness's."""
    extra, passing, bugs = SELECTION[plugin]
    if plugin == "vrf" and _vrf_in_kernel():
        bugs = VRF_BUGS
    config = os.path.join(DOCS, "configs", f"{plugin}.json")
    binary = os.path.join(REF_BIN, plugin)
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} missing: run build/setup.sh (containernetworking-plugins, "
                    "golang-github-containernetworking-plugin-dnsname)", pytrace=False)
    section, failures = _published(plugin)
    assert f"configs/{plugin}.json" in section, f"the page's {plugin} section does not name its config"
    for cid in passing:
        assert cid not in failures, f"{cid} is in the page's failure table of {plugin}, not among its passes"
    for cid in bugs:
        assert failures.get(cid, "").startswith("real bug"), \
            f"the page does not name {cid} a real bug of {plugin}: {failures.get(cid)!r}"

    functions = _functions()
    wanted = [functions[c] for c in passing + bugs]
    report = tmp_path / "report.json"
    before = _dnsname_dirs()
    made = [d for d in (DNSNAME_STATE, os.path.dirname(DNSNAME_STATE), "/run/containers") if not os.path.isdir(d)]
    try:
        p = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", REF_BIN, "--config", config, *extra,
                            "--json", str(report), "-q", "-k", _keyword(wanted, list(functions.values()))],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        alive = _remove_dnsname_state(_dnsname_dirs() - before, made)
    assert not alive, f"dnsmasq still running after the harness: {alive}"
    assert p.returncode in (0, 1) and report.exists(), \
        f"the harness refused the published config (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    outcomes = {c["id"]: (c["outcome"], c.get("reason", "")) for c in json.loads(report.read_text())["checks"]}
    wrong = [f"{c}: page says pass, harness says {outcomes.get(c)}" for c in passing
             if outcomes.get(c, ("missing",))[0] != "pass"]
    wrong += [f"{c}: page says real bug, harness says {outcomes.get(c)}" for c in bugs
              if outcomes.get(c, ("missing",))[0] != "fail"]
    assert not wrong, "\n".join(wrong)


def _vrf_in_kernel() -> bool:
    """Whether this kernel can make a VRF device (the harness's probe, conformance/kernel.py)."""
    from conformance import kernel

    return kernel.missing("vrf") is None


# The page's bugs found by hand (what the harness cannot see), each a script in docs/conformance/repro
# and the lines of its output that show the bug.
REPRO: dict[str, list[str]] = {
    # DEL leaves the routes in table 100 (main empty); ADD again collides; DEL after the namespace
    # is gone fails and leaves a regular file at its path.
    "sbr-del-leaves-routes.sh": [r"^DEL:\n\n  rules: 0  main:   table 100: default via ",
                                 r"^ADD again \(same pod\):\n.*file exists",
                                 r"^DEL after the pod's namespace is gone:\n.*unknown FS magic.*\n-\S+ .* /var/run/netns/repro-sbr-c$"],
    # The NIC is left in the container after the refused ADD, and DEL never gives it back.
    "host-device-ifname-exists.sh": [r"^ADD:\n.*file exists.*\n  container links: .*\bnic0@\S+ +host links: lo nic0p@\S+ $",
                                     r"^DEL:\n.*failed to restore.*\n  container links: .*\bnic0@"],
    # CHECK fails right after ADD; DEL keeps the iptables rule; DEL without prevResult keeps dnsmasq.
    "dnsname-leaves-state.sh": [r"^CHECK .*\n.*addnhost file missing from configuration",
                                r"^DEL with prevResult:\n\n  udp/53 accept rules: 1 ",
                                r"^ADD, then DEL without prevResult:\n\n  udp/53 accept rules: 1  processes in the host netns: 1 "],
    # Needs VRF in the kernel: the default route is gone after ADD; CHECK passes after DEL.
    "vrf-loses-routes.sh": [r"^ADD:\n  links: .*vrf-blue .*  main:   1001: (?!default)",
                            r"^CHECK after DEL:\n \(exit 0\)"],
}


@pytest.mark.parametrize("script", [pytest.param(s, marks=needs("vrf")) if s.startswith("vrf") else s
                                    for s in sorted(REPRO)])
def test_published_reproductions_still_show_the_bugs(script):
    """The page's reproduction scripts still show what the page says (and clean up); the
    VRF one where the kernel has VRF (here, or the VM lane)."""
    path = os.path.join(DOCS, "repro", script)
    before = _dnsname_dirs()
    p = subprocess.run(["sh", path], capture_output=True, text=True, timeout=60)
    assert _dnsname_dirs() == before, "the script left dnsname state behind"
    assert not [l for l in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
                if l.startswith("repro-")], "the script left a namespace behind"
    missing = [pattern for pattern in REPRO[script] if not re.search(pattern, p.stdout, re.M)]
    assert not missing, f"{script} no longer shows {missing}:\n{p.stdout}\n{p.stderr}"
