"""The harness's process containment (conformance/contain.py), tried on harmless fork
chains of our own before any plugin runs in it: a chain stops at the cage's limit, and
the sweep leaves no process and no cgroup, also of chains that hang or double-fork.

Each script bounds itself (at most 100 or 63 processes), so it is harmless even where the
cage did not work; the tests then fail instead of the machine.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from conformance import contain

# A chain: level N records its pid and waits for level N+1; the last level ($3, at most
# 100) sleeps.
CHAIN = """#!/bin/sh
n=$1; d=$2; last=$3
echo $$ > "$d/pid-$$"
[ "$n" -ge "$last" ] || [ "$n" -ge 100 ] && exec sleep 1000
"$0" $((n+1)) "$d" "$last"
"""
# A fan: each level starts two detached children (double fork, reparented away from
# us) down to depth 5 (63 processes at most), and every process then sleeps.
FAN = """#!/bin/sh
n=$1; d=$2
echo $$ > "$d/pid-$$"
if [ "$n" -lt 5 ]; then
  ( "$0" $((n+1)) "$d" & ) ; ( "$0" $((n+1)) "$d" & )
fi
exec sleep 1000
"""


@pytest.fixture
def cage():
    try:
        c = contain.open_cage(16)
    except contain.Unavailable as e:
        pytest.skip(f"no process containment on this machine: {e}")
    try:
        yield c
    finally:
        c.close()


def _script(tmp_path, text: str) -> tuple[str, str]:
    path = tmp_path / "script.sh"
    path.write_text(text)
    path.chmod(0o755)
    marks = tmp_path / "pids"
    marks.mkdir()
    return str(path), str(marks)


def _started(marks: str) -> list[int]:
    return [int(name.split("-")[1]) for name in os.listdir(marks)]


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie waiting to be reaped is not)."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":
            out.append(pid)
    return out


def test_a_fork_chain_stops_at_the_limit(tmp_path, cage):
    script, marks = _script(tmp_path, CHAIN)
    t0 = time.monotonic()
    p = subprocess.run(cage.wrap([script, "0", marks, "100"]), capture_output=True, timeout=30, check=False)
    assert time.monotonic() - t0 < 10
    assert p.returncode != 0, "the chain should have failed to fork"
    started = _started(marks)
    assert 1 < len(started) <= 16, f"{len(started)} processes ran in a cage of 16"
    assert cage.limit_hits() >= 1
    cage.close()
    assert not _alive(started)
    assert not os.path.exists(cage.pids_dir) and not contain.leftover_cages()


@pytest.mark.parametrize("text", [CHAIN, FAN], ids=["hanging-chain", "detached-fan"])
def test_the_sweep_kills_everything(tmp_path, cage, text):
    """Processes that hang (a chain of 10 whose last level sleeps) or detached themselves
    from their parents (the fan, stopped at the limit) are all gone after the sweep, and
    so is the cgroup."""
    script, marks = _script(tmp_path, text)
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(cage.wrap([script, "0", marks, "10"]), capture_output=True, timeout=1, check=False)
    started = _started(marks)
    assert started and _alive(started), "the script should still be running here"
    assert set(_alive(started)) <= set(cage.procs()), "a process escaped the cage"
    cage.close()
    assert not _alive(started), f"the sweep left {_alive(started)}"
    assert not contain.leftover_cages()


def test_wrapped_command_runs_inside(cage):
    """A wrapped command is in the cage's cgroup from its first instruction on."""
    out = subprocess.run(cage.wrap(["cat", "/proc/self/cgroup"]), capture_output=True, text=True, check=True).stdout
    assert os.path.basename(cage.pids_dir) in out, out
