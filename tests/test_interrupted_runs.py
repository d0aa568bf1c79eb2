"""A stopped run leaves nothing behind (conformance/runs.py).

The harness is started on a plugin that hangs in ADD and whose ADD also leaves a process of
its own in the world's host namespace (a child it forks, as a plugin starting a helper
would). Stopped by SIGTERM mid-run, the harness must leave nothing of that run: no
namespace, no directory, no process, no record. Killed by SIGKILL, it leaves all of that,
and the next run sweeps it at start, while a third run, alive, keeps everything of its own.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conformance import runs
from tests.helpers import ROOT, SRC_BIN

# ADD hangs; before it does, it forks a shell that sleeps, marked by its $0 (in its
# command line), which lives in the namespace the plugin runs in: the world's host one.
HANGING_PLUGIN = """#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
    cat >/dev/null
    sh -c 'sleep 600; :' {marker} &
    exec sleep 600
fi
exec /usr/lib/cni/loopback
"""


def _hanging_dir(tmp_path, marker: str) -> str:
    d = tmp_path / f"bin-{uuid.uuid4().hex[:8]}"  # not the marker: every call's command line names it
    d.mkdir()
    p = d / "loopback"
    p.write_text(HANGING_PLUGIN.format(marker=marker))
    p.chmod(0o755)
    return str(d)


def _start_harness(cni_path: str, *extra: str) -> subprocess.Popen:
    """The harness as a user runs it, in a session of its own (so signals reach it alone)."""
    return subprocess.Popen([sys.executable, "-m", "conformance", "--cni-path", cni_path, "--plugins", "loopback",
                             "--implementation", "under-test", "--reference", "", "-q", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _marked(marker: str) -> list[int]:
    """PIDs of the processes whose command line names ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def _tag_of(pid: int) -> str | None:
    """The tag of the run whose owner is ``pid`` (its record in runs.RUNS_DIR)."""
    for owner in glob.glob(os.path.join(runs.RUNS_DIR, "*", "owner")):
        try:
            with open(owner) as f:
                if json.load(f)["pid"] == pid:
                    return os.path.basename(os.path.dirname(owner))
        except (OSError, ValueError, KeyError):
            pass
    return None


def _traces(tag: str, marker: str) -> dict:
    """Everything of run ``tag`` still on the machine."""
    return {"namespaces": runs.namespaces_of(tag), "record": os.path.isdir(os.path.join(runs.RUNS_DIR, tag)),
            "dirs": glob.glob(f"/tmp/cni-conf-*-{tag}-*"), "processes": _marked(marker)}


def _hung(p: subprocess.Popen, marker: str) -> str:
    """Wait until the harness ``p`` is stuck in the hanging ADD; returns its run's tag."""
    tag = _wait(lambda: _tag_of(p.pid), 60, "the harness's run record")
    _wait(lambda: _marked(marker), 90, "the hanging ADD")
    t = _traces(tag, marker)
    assert t["namespaces"] and t["dirs"] and t["processes"], t
    return tag


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _sweep_by_hand(tag: str, marker: str) -> None:
    """What the test must leave clean even when an assertion failed."""
    for pid in _marked(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    runs._remove(runs.Run(tag, "test-cleanup"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stopped_mid_run_leaves_nothing(sig, tmp_path):
    """SIGTERM (a CI timeout, a supervisor) or SIGHUP (a closed terminal) mid-ADD: the run
    ends as on Ctrl-C, non-zero, and nothing of it is left."""
    marker = f"cnipy-hang-{uuid.uuid4().hex[:8]}"
    p = _start_harness(_hanging_dir(tmp_path, marker), "-k", "del_twice")
    tag = ""
    try:
        tag = _hung(p, marker)
        p.send_signal(sig)
        out, _ = p.communicate(timeout=60)
        assert p.returncode != 0, out.decode(errors="replace")[-2000:]
        assert _traces(tag, marker) == {"namespaces": [], "record": False, "dirs": [], "processes": []}
    finally:
        _stop(p)
        if tag:
            _sweep_by_hand(tag, marker)


def test_next_run_sweeps_a_killed_run_but_not_a_live_one(tmp_path):
    killed_marker, live_marker = f"cnipy-hang-{uuid.uuid4().hex[:8]}", f"cnipy-hang-{uuid.uuid4().hex[:8]}"
    killed = _start_harness(_hanging_dir(tmp_path, killed_marker), "-k", "del_twice")
    live = _start_harness(_hanging_dir(tmp_path, live_marker), "-k", "del_twice")
    tags: list[tuple[str, str]] = []
    try:
        killed_tag = _hung(killed, killed_marker)
        tags.append((killed_tag, killed_marker))
        live_tag = _hung(live, live_marker)
        tags.append((live_tag, live_marker))
        os.kill(killed.pid, signal.SIGKILL)  # the harness alone: its hanging plugin lives on
        killed.wait()
        time.sleep(0.5)
        left = _traces(killed_tag, killed_marker)
        assert left["namespaces"] and left["record"] and left["dirs"] and left["processes"], left

        # The next run: a short one on our loopback; it sweeps at start.
        nxt = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", SRC_BIN, "--plugins", "loopback",
                              "--reference", "", "-q", "-k", "test_version_"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert nxt.returncode == 0, nxt.stdout[-2000:]
        assert _traces(killed_tag, killed_marker) == {"namespaces": [], "record": False, "dirs": [],
                                                      "processes": []}
        still = _traces(live_tag, live_marker)
        assert live.poll() is None and still["namespaces"] and still["record"] and still["dirs"] \
            and still["processes"], still

        live.send_signal(signal.SIGTERM)
        live.communicate(timeout=60)
        assert _traces(live_tag, live_marker) == {"namespaces": [], "record": False, "dirs": [], "processes": []}
    finally:
        for p in (killed, live):
            _stop(p)
        for tag, marker in tags:
            _sweep_by_hand(tag, marker)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_bench_stopped_leaves_nothing(sig, tmp_path):
    """The benchmark, stopped by ``sig`` mid-scenario, removes its namespaces and directories."""
    p = subprocess.Popen([sys.executable, "-m", "conformance.bench", "--only", "bridge", "--runs", "400",
                          "--impls", "ours"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    tag = ""
    try:
        tag = _wait(lambda: _tag_of(p.pid), 60, "the bench's run record")
        _wait(lambda: runs.namespaces_of(tag), 60, "the bench's namespaces")
        time.sleep(1)
        p.send_signal(sig)
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 130, out.decode(errors="replace")[-2000:]
        assert runs.namespaces_of(tag) == []
        assert not os.path.isdir(os.path.join(runs.RUNS_DIR, tag))
        assert glob.glob(f"/tmp/cni-bench-{tag}-*") == []
    finally:
        _stop(p)
        if tag:
            runs._remove(runs.Run(tag, "test-cleanup"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_test_session_stopped(sig, tmp_path):
    """The project's own test session (``make test``): SIGTERM ends it as Ctrl-C does, its
    fixtures delete what they made and the session removes the rest, including what a run
    it started and killed on its way out left (``subprocess.run`` SIGKILLs its child on the
    interrupt); after a SIGKILL of the whole process group, the next session (this one's
    next run stands in: a sweep, as every run's start does) removes both runs' leftovers."""
    marker = f"cnipy-hang-{uuid.uuid4().hex[:8]}"
    # A nested tag: this session's leak check sees the inner session's namespaces.
    tag = f"{os.environ[runs.TAG_ENV]}s{uuid.uuid4().hex[:3]}"
    child_tag_file = tmp_path / "child-tag"
    env = dict(os.environ, CNIPY_HANG_MARKER=marker, CNIPY_CHILD_TAG_FILE=str(child_tag_file),
               **{runs.TAG_ENV: tag})
    p = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/interrupt_target.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    child = ""
    try:
        _wait(lambda: _marked(marker) and runs.namespaces_of(tag) and child_tag_file.exists(), 60,
              "the inner session's namespace and process, and its child run")
        child = child_tag_file.read_text()
        assert runs.namespaces_of(child)
        assert os.path.isdir(os.path.join(runs.RUNS_DIR, tag))
        if sig == signal.SIGKILL:
            os.killpg(p.pid, sig)
        else:
            os.kill(p.pid, sig)
        out, _ = p.communicate(timeout=60)
        if sig == signal.SIGKILL:
            assert runs.namespaces_of(tag) and runs.namespaces_of(child) and _marked(marker)  # left behind ...
            assert {tag, child} <= set(runs.sweep())  # ... until a run starts
        gone = {"namespaces": runs.namespaces_of(tag), "record": os.path.isdir(os.path.join(runs.RUNS_DIR, tag)),
                "processes": _marked(marker), "child namespaces": runs.namespaces_of(child),
                "child record": os.path.isdir(os.path.join(runs.RUNS_DIR, child))}
        assert gone == {"namespaces": [], "record": False, "processes": [], "child namespaces": [],
                        "child record": False}, out.decode(errors="replace")[-2000:]
    finally:
        _stop(p)
        _sweep_by_hand(tag, marker)
        if child:
            runs._remove(runs.Run(child, "test-cleanup"))
