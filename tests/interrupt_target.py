"""A test session to be stopped (tests/test_interrupted_runs.py), never collected by
itself (not a ``test_*.py`` file): run explicitly, its one test makes a namespace through
the project's fixture, starts a process in it marked by ``CNIPY_HANG_MARKER`` (as the
project's tests start servers and daemons there), and waits to be stopped."""

from __future__ import annotations

import os
import subprocess
import time


def test_hangs_holding_a_namespace(netns):
    marker = os.environ["CNIPY_HANG_MARKER"]
    subprocess.Popen(["ip", "netns", "exec", netns.name, "sh", "-c", "sleep 600; :", marker],
                     start_new_session=True)  # outside the session's process group, as servers are
    time.sleep(600)
