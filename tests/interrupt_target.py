"""A test session to be stopped (tests/test_interrupted_runs.py), never collected by
itself (not a ``test_*.py`` file): run explicitly, its one test makes a namespace through
the project's fixture, starts a process in it marked by ``CNIPY_HANG_MARKER`` (as the
project's tests start servers and daemons there), and then waits to be stopped inside
``subprocess.run`` of a run of its own (as tests/test_binaries.py runs the harness, with a
stripped environment: not nested in this session's tag) that holds a namespace and writes
its tag to ``CNIPY_CHILD_TAG_FILE``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.helpers import ROOT

CHILD = """
import os, subprocess, time
from conformance import runs
run = runs.start("harness")
subprocess.run(["ip", "netns", "add", run.netns_name("cnx")], check=True)
with open(os.environ["CNIPY_CHILD_TAG_FILE"] + ".tmp", "w") as f:
    f.write(run.tag)
os.rename(os.environ["CNIPY_CHILD_TAG_FILE"] + ".tmp", os.environ["CNIPY_CHILD_TAG_FILE"])
time.sleep(600)
"""


def test_hangs_holding_a_namespace(netns):
    marker = os.environ["CNIPY_HANG_MARKER"]
    subprocess.Popen(["ip", "netns", "exec", netns.name, "sh", "-c", "sleep 600; :", marker],
                     start_new_session=True)  # outside the session's process group, as servers are
    subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, timeout=600,
                   env={"PATH": os.environ["PATH"], "CNIPY_CHILD_TAG_FILE": os.environ["CNIPY_CHILD_TAG_FILE"]})
