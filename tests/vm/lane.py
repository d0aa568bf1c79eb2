"""The VM lane: tests that need a kernel feature this machine lacks run in one throwaway VM.

A test marked ``tests.kernel_features.needs(...)`` whose features this kernel lacks is
moved to the end of the run. When pytest reaches the first of them, one VM boots on
Debian's stock kernel (tests/vm/vm-run.sh: qemu, software emulation, this machine's root
read-only and the project directory writable at the same path) and runs exactly those tests
with the same virtualenv and the same dist/bin; tests/vm/worker.py writes every phase report
there and this plugin replays them here, so they appear in the one pytest report (and
junit XML) as if run locally, each with a "ran in the VM lane" section.

Inside the VM (``CNIPY_IN_VM=1``) a test whose features are still missing is skipped,
naming them: only then may a kernel-dependent test skip. ``CNIPY_VM_LANE=off`` skips the
lane's tests instead of booting (say so when you use it); a VM that fails to boot or dies
makes its tests fail with the VM's console output, never pass or skip.

Why sequential, at the end: the VM is emulated (TCG) and takes both cores; overlapping it
with the host's tests slowed both and made timing-bound host tests (containerd's, the leak
verdict's) flaky, so the host's tests run first, then the VM once.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import uuid

import pytest

from conformance import runs
from tests.kernel_features import missing

IN_VM = "CNIPY_IN_VM"
LANE = "CNIPY_VM_LANE"
HERE = os.path.dirname(os.path.abspath(__file__))
VM_RUN = os.path.join(HERE, "vm-run.sh")
TIMEOUT = float(os.environ.get("CNIPY_VM_TIMEOUT", "1800"))  # seconds, boot included


def _features(item) -> tuple[str, ...]:
    return tuple(f for m in item.iter_markers("kernel") for f in m.args)


class Lane:
    """One VM run for a set of test items, started on first need, replayed item by item."""

    def __init__(self, config, items: list, reasons: dict[str, list[str]]) -> None:
        self.config = config
        self.items = items
        self.nodeids = {it.nodeid for it in items}
        self.reasons = reasons  # nodeid -> what this kernel lacks
        self.root = str(config.rootpath)
        self.dir = os.path.join(self.root, ".vm-lane")
        token = uuid.uuid4().hex[:8]
        self.items_file = os.path.join(self.dir, f"items-{token}.txt")
        self.results_file = os.path.join(self.dir, f"results-{token}.jsonl")
        self.log_file = os.path.join(self.dir, f"console-{token}.log")
        self.results: dict[str, list[dict]] | None = None
        self.kernel = ""
        self.error = ""
        self.seconds = 0.0

    def _command(self) -> str:
        files = sorted({n.split("::", 1)[0] for n in self.nodeids})
        env = f"{IN_VM}=1 CNIPY_NS_TAG={os.environ.get('CNIPY_NS_TAG', '')} PYTHONDONTWRITEBYTECODE=1"
        args = " ".join(_quote(a) for a in [
            sys.executable, "-m", "pytest", "-p", "tests.vm.worker", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
            "-q", "--vm-items", self.items_file, "--vm-results", self.results_file, *files])
        return f"cd {_quote(self.root)} && env {env} {args}"

    def run(self) -> None:
        """Boot the VM once, run every lane test in it, and read back the phase reports."""
        os.makedirs(self.dir, exist_ok=True)
        with open(self.items_file, "w", encoding="utf-8") as f:
            f.write("".join(n + "\n" for n in sorted(self.nodeids)))
        env = dict(os.environ, VM_TIMEOUT=str(int(TIMEOUT)))
        start = time.monotonic()
        try:
            with open(self.log_file, "w", encoding="utf-8") as log:
                # A group of its own (vm-run.sh, its timeout and qemu), killed whole when the
                # wait ends early (a timeout, or SIGTERM to this test run), and recorded so
                # that a later run's sweep kills it if this run is killed outright.
                p = subprocess.Popen(["bash", VM_RUN, self._command()], cwd=self.root, env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                runs.track_group(p.pid)
                try:
                    rc = p.wait(timeout=TIMEOUT + 120)
                finally:
                    runs.kill_group(p.pid)
                    p.wait()
        except subprocess.TimeoutExpired:
            rc = -1
        self.seconds = time.monotonic() - start
        self.results = {}
        done = False
        if os.path.exists(self.results_file):
            with open(self.results_file, encoding="utf-8") as f:
                for line in f:
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a dying VM
                    if "kernel" in doc:
                        self.kernel = doc["kernel"]
                    elif "report" in doc:
                        self.results.setdefault(doc["report"]["nodeid"], []).append(doc["report"])
                    elif doc.get("done"):
                        done = True
        if not done:
            self.error = (f"the VM lane did not finish (vm-run.sh exit {rc}, {self.seconds:.0f} s); "
                          f"console log {self.log_file}:\n{_tail(self.log_file)}")
        for path in (self.items_file, self.results_file):
            _unlink(path)
        if not self.error:
            _unlink(self.log_file)

    def replay(self, item) -> None:
        """Report ``item``'s VM outcome through this session's hooks, as if it ran here."""
        if self.results is None:
            self.run()
        hook = item.ihook
        hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reports = (self.results or {}).get(item.nodeid)
        where = (f"ran in the VM lane on Debian's kernel {self.kernel or '?'} "
                 f"(this machine's kernel lacks: {'; '.join(self.reasons[item.nodeid])})")
        if reports:
            for data in reports:
                rep = self.config.hook.pytest_report_from_serializable(config=self.config, data=data)
                rep.sections.append(("VM lane", where))
                rep.user_properties.append(("vm_lane", self.kernel))
                hook.pytest_runtest_logreport(report=rep)
        else:
            why = self.error or "the VM ran but reported nothing for this test (not collected there?)"
            for when, outcome, longrepr in (("setup", "passed", None), ("call", "failed", f"{where}\n{why}"),
                                            ("teardown", "passed", None)):
                hook.pytest_runtest_logreport(report=pytest.TestReport(
                    item.nodeid, item.location, {item.name: 1}, outcome, longrepr, when,
                    sections=[], duration=0.0, user_properties=[]))
        hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def _quote(s: str) -> str:
    return shlex.quote(s)


def _tail(path: str, lines: int = 60) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"(no console log: {e})"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "kernel(*features): needs these kernel features (tests/kernel_features.py); "
                                       "run in the VM lane when this kernel lacks them")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    """Decide, per kernel-marked test, where it runs: here, in the VM lane, or nowhere (skip)."""
    lane, reasons = [], {}
    for item in items:
        features = _features(item)
        if not features:
            continue
        lacks = missing(features)
        if not lacks:
            continue
        if os.environ.get(IN_VM):
            item.add_marker(pytest.mark.skip(
                reason=f"neither this machine's kernel nor the VM lane's has it: {'; '.join(lacks)}"))
        elif os.environ.get(LANE) == "off":
            item.add_marker(pytest.mark.skip(reason=f"VM lane turned off ({LANE}=off); {'; '.join(lacks)}"))
        else:
            lane.append(item)
            reasons[item.nodeid] = lacks
    if not lane:
        return
    ids = {id(it) for it in lane}
    items[:] = [it for it in items if id(it) not in ids] + lane  # the host's own tests first
    config.stash[_KEY] = Lane(config, lane, reasons)


_KEY = pytest.StashKey[Lane]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    lane = item.config.stash.get(_KEY, None)
    if lane is None or item.nodeid not in lane.nodeids:
        return None
    lane.replay(item)
    return True


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lane = config.stash.get(_KEY, None)
    if lane is None or lane.results is None:
        return
    ran = sum(1 for n in lane.nodeids if (lane.results or {}).get(n))
    terminalreporter.write_line(
        f"VM lane: {ran}/{len(lane.nodeids)} tests ran in one VM on Debian's kernel {lane.kernel or '?'} "
        f"in {lane.seconds:.0f} s (boot included)" + (f"; {lane.error.splitlines()[0]}" if lane.error else ""))
