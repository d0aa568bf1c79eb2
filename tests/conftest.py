"""Shared fixtures: plugin directories, throwaway namespaces, and the leak check.

Every test runs under a leak check: the set of network namespaces this run made (their
names carry its tag), the machine's own links, and the files under /var/lib/cni must be
the same after the test as before it.
"""

from __future__ import annotations

import os

import pytest

from conformance import runs
from tests.helpers import NS_TAG, OUR_BIN, REF_BIN, SRC_BIN, Netns, ip_json

# Tests needing kernel features this machine lacks run in one VM (tests/vm/lane.py).
pytest_plugins = ["tests.vm.lane"]


def pytest_configure(config: pytest.Config) -> None:
    """The session is a run of its own (conformance/runs.py), tagged NS_TAG: SIGTERM and
    SIGHUP end it as Ctrl-C does (fixtures tear down), and what killed runs left goes first.
    Not inside the VM lane's worker (the VM is thrown away whole)."""
    if not os.environ.get("CNIPY_IN_VM"):
        runs.start("tests", NS_TAG)


def pytest_unconfigure(config: pytest.Config) -> None:
    runs.finish()


def _snapshot() -> dict:
    netns = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
    netns = {n for n in netns if NS_TAG in n}  # this run's (see tests.helpers.NS_TAG)
    links = {l["ifname"] for l in ip_json("link", "show")}
    cni = set()
    if os.path.isdir("/var/lib/cni"):
        for d, _, files in os.walk("/var/lib/cni"):
            cni.update(os.path.join(d, f) for f in files)
    return {"netns": netns, "links": links, "/var/lib/cni": cni}


@pytest.fixture(autouse=True)
def leak_check(request):
    """Fail a test that leaves a namespace, a link in the machine's namespace, or a file
    under /var/lib/cni behind (its own fixtures have cleaned up by then)."""
    before = _snapshot()
    yield
    after = _snapshot()
    leaks = {k: sorted(after[k] - before[k]) for k in before if after[k] - before[k]}
    if leaks:
        pytest.fail(f"test leaked: {leaks}", pytrace=False)


def _need(path: str, what: str) -> str:
    if not os.path.exists(path):
        pytest.fail(f"{what} missing at {path}: run `make bin` / build/setup.sh", pytrace=False)
    return path


@pytest.fixture(scope="session")
def our_bin() -> str:
    """dist/bin: the drop-in binaries (built by `make bin`, which `make test` runs first)."""
    return _need(OUR_BIN, "our plugin binaries")


@pytest.fixture(scope="session")
def src_bin() -> str:
    """dist/src-bin: launchers running the plugins from source (also built by `make bin`)."""
    return _need(SRC_BIN, "our source launchers")


@pytest.fixture(scope="session")
def ref_bin() -> str:
    """The reference plugins (Debian's containernetworking-plugins)."""
    return _need(REF_BIN, "reference plugins (package containernetworking-plugins)")


@pytest.fixture
def netns():
    """A fresh network namespace, deleted after the test."""
    ns = Netns()
    try:
        yield ns
    finally:
        ns.delete()
