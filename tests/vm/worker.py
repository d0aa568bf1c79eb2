"""The VM lane's pytest plugin inside the VM: run exactly the tests the host sent, and
write every phase report of each, serialized as pytest-xdist does, for the host to replay.

Loaded with ``-p tests.vm.worker --vm-items FILE --vm-results FILE``: FILE of items holds
one node id per line; the results file gets one JSON object per line: first
``{"kernel": ...}``, then ``{"report": <serialized TestReport>}`` for each phase, and
``{"done": true}`` when the session ends.
"""

from __future__ import annotations

import json
import os

import pytest


def pytest_addoption(parser) -> None:
    parser.addoption("--vm-items", default="", help="file of node ids to run (VM lane)")
    parser.addoption("--vm-results", default="", help="file to write the phase reports to (VM lane)")


class _Writer:
    def __init__(self, config, path: str) -> None:
        self.config = config
        self.out = open(path, "a", encoding="utf-8")

    def emit(self, doc: dict) -> None:
        self.out.write(json.dumps(doc) + "\n")
        self.out.flush()  # the host reads whatever was written if the VM dies mid-run

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report) -> None:
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        self.emit({"report": data})

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        self.emit({"done": True, "exitstatus": int(exitstatus)})
        self.out.close()


def pytest_configure(config) -> None:
    path = config.getoption("--vm-results")
    if path:
        writer = _Writer(config, path)
        writer.emit({"kernel": os.uname().release})
        config.pluginmanager.register(writer, "vm-lane-writer")


def pytest_collection_modifyitems(session, config, items) -> None:
    path = config.getoption("--vm-items")
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        wanted = {line.rstrip("\n") for line in f if line.strip()}
    keep = [it for it in items if it.nodeid in wanted]
    drop = [it for it in items if it.nodeid not in wanted]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
