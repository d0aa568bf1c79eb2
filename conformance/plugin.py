"""The pytest plugin behind ``python -m conformance``: options, fixtures, deviations, and
collecting the results the report shows (``conformance/report.py`` renders them).

Each check is a test function marked ``@check(id, section, level, ref)`` and run once per
plugin under test (the ``plugin`` fixture). ``@kinds(...)`` limits a check to plugin
kinds; elsewhere it is reported as not applicable. Every check gets a ``world`` (its own
host and container namespaces and directories) with a leak check around it.

With ``--cni-runtime NAME`` the checks are a runtime lane's (``conformance/lanes``): they
drive the whole plugin set under a real runtime, and are reported in one column, ``NAME``.
A check can record measurements (``measure`` fixture: name, value, unit), printed at the
end of the run, put into the HTML report and into the JUnit XML as properties.
Every plugin call a check makes is recorded (``proc.record``), so a failure in the report
carries a reproduction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from conformance import deviations, proc, report, runs
from conformance.profiles import Profile, profile_for, registry_kind
from conformance.world import World

check = pytest.mark.check
kinds = pytest.mark.kinds


@dataclass
class PluginUnderTest:
    """A plugin binary and what the harness knows about its type."""

    type: str
    binary: str
    profile: Profile | None
    implementation: str
    reference: str | None  # the reference binary of the same type, for differential checks

    @property
    def kind(self) -> str:
        return self.profile.kind if self.profile else registry_kind(self.type) or "unknown"

    @property
    def kernel_missing(self) -> str | None:
        """Why this kernel cannot run the plugin's work (it lacks the link kind the plugin
        creates, e.g. "kernel has no ipvlan (...)"), or None. Probed once per run."""
        if self.profile is None or not self.profile.link_kind:
            return None
        from conformance import kernel

        return kernel.missing(self.profile.link_kind)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("cni conformance")
    g.addoption("--cni-path", required=True, help="directory of the CNI plugin binaries under test")
    g.addoption("--cni-plugins", default="", help="comma-separated plugin types (default: every known type present)")
    g.addoption("--cni-implementation", default="", help="deviation set to apply (default: 'reference' for the reference's "
                "types in /usr/lib/cni, see conformance/deviations.py)")
    g.addoption("--cni-reference", default="/usr/lib/cni", help="reference plugins for differential checks")
    g.addoption("--cni-report", default="", help="write an HTML report here")
    g.addoption("--cni-runtime", default="", help="the runtime lane whose checks run (e.g. cri)")
    g.addoption("--cni-json", default="", help="write the JSON report here (schema: conformance/report.py)")
    g.addoption("--cni-config", default="", help="a network config (or list) for the plugins under test, with "
                "placeholders (conformance/given.py); replaces the built-in profiles of its types")
    g.addoption("--cni-kind", default="", help="interface|ipam|chained|meta|loopback, for --cni-config's plugin")
    g.addoption("--cni-single-attachment", default="", help="why --cni-config serves one attachment at a time")
    g.addoption("--cni-needs-kernel", default="", help="the kernel feature --cni-config's plugins need "
                "(a key of conformance.kernel.PROBES)")


def _selected(config: pytest.Config) -> list[PluginUnderTest]:
    cni_path = os.path.abspath(config.getoption("--cni-path"))
    wanted = [p for p in config.getoption("--cni-plugins").split(",") if p]
    given: dict[str, Profile] = {}
    if config.getoption("--cni-config"):
        from conformance import given as given_mod

        try:
            given = given_mod.load(config.getoption("--cni-config"), config.getoption("--cni-kind"),
                                   single_attachment=config.getoption("--cni-single-attachment"),
                                   needs_kernel=config.getoption("--cni-needs-kernel"))
        except given_mod.ConfigError as e:
            raise pytest.UsageError(str(e)) from None
        # The config's plugins under test: those of its types the directory holds (a list's
        # other plugins may come from elsewhere), or the ones --plugins names.
        wanted = wanted or [t for t in given if os.access(os.path.join(cni_path, t), os.X_OK)]
        if not wanted:
            raise pytest.UsageError(f"none of {', '.join(given)} (the config's types) is in {cni_path}")
    if not wanted:
        wanted = sorted(t for t in os.listdir(cni_path)
                        if (profile_for(t) or registry_kind(t)) and os.access(os.path.join(cni_path, t), os.X_OK))
    impl = config.getoption("--cni-implementation")
    ref_dir = config.getoption("--cni-reference")
    out = []
    for t in wanted:
        binary = os.path.join(cni_path, t)
        ref = os.path.join(ref_dir, t) if ref_dir else None
        if ref and (not os.access(ref, os.X_OK) or os.path.realpath(ref) == os.path.realpath(binary)):
            ref = None
        out.append(PluginUnderTest(t, binary, given.get(t) or profile_for(t),
                                   impl or deviations.implementation_of(cni_path, t), ref))
    return out


def pytest_configure(config: pytest.Config) -> None:
    # A run of its own (conformance/runs.py): SIGTERM/SIGHUP end it as Ctrl-C does, and what
    # killed runs left behind goes first.
    runs.start("harness")
    config._cni_plugins = _selected(config)  # type: ignore[attr-defined]
    config._cni_results = report.Results()  # type: ignore[attr-defined]
    config._cni_lane = config.getoption("--cni-runtime") or None  # type: ignore[attr-defined]
    config._cni_measurements = {}  # type: ignore[attr-defined]


def _columns(config: pytest.Config) -> list[str]:
    """The report's columns: the lane, or the plugin types under test."""
    lane = config._cni_lane  # type: ignore[attr-defined]
    return [lane] if lane else [p.type for p in config._cni_plugins]  # type: ignore[attr-defined]


@pytest.fixture
def measure(request: pytest.FixtureRequest, record_testsuite_property):
    """``measure(name, value, unit)``: record a measurement of this run (terminal summary,
    HTML report, and a property of the JUnit test suite)."""
    def _measure(name: str, value: float | str, unit: str = "") -> None:
        request.config._cni_measurements[name] = (value, unit)  # type: ignore[attr-defined]
        record_testsuite_property(name, f"{value}{' ' + unit if unit else ''}")
    return _measure


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "plugin" in metafunc.fixturenames:
        plugins = metafunc.config._cni_plugins  # type: ignore[attr-defined]
        metafunc.parametrize("plugin", plugins, ids=[p.type for p in plugins])


def _check_mark(item: pytest.Item) -> pytest.Mark | None:
    return item.get_closest_marker("check")


def pytest_runtest_setup(item: pytest.Item) -> None:
    proc.start_recording()  # this check's plugin calls, for a failure's reproduction
    plugin: PluginUnderTest | None = getattr(item, "callspec", None) and item.callspec.params.get("plugin")
    if plugin is None:
        return
    if not os.access(plugin.binary, os.X_OK):
        pytest.fail(f"{plugin.binary} is missing or not executable")
    km = item.get_closest_marker("kinds")
    if km and plugin.kind not in km.args:
        pytest.skip(f"not applicable: applies to {'/'.join(km.args)} plugins, {plugin.type} is {plugin.kind}")
    cm = _check_mark(item)
    if cm:
        why = deviations.reason(plugin.implementation, plugin.type, cm.args[0])
        if why:
            item.add_marker(pytest.mark.xfail(reason=f"expected deviation: {why}", strict=False))


@pytest.fixture
def world(request: pytest.FixtureRequest, plugin: PluginUnderTest):
    """The check's namespaces and dirs, with the leak check around the check body."""
    from conformance import leak

    w = World(os.path.dirname(plugin.binary), plugin.profile)
    try:
        before = w.snapshot()
        yield w
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.passed:
            allowed = plugin.profile.residue_links(w.sandbox) if plugin.profile else set()
            # Waits only while the kernel still tears down a deleted namespace's links.
            leaks = leak.settle(w, before, allowed)
            if leaks:
                what = f"leak: {plugin.type} left behind: " + " | ".join(leaks)
                deviation = request.node.get_closest_marker("xfail")
                if deviation is not None:  # the check's documented deviation is this leak
                    pytest.xfail(f"{deviation.kwargs.get('reason', '')} ({what})")
                pytest.fail(what, pytrace=False)
    finally:
        w.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
    plugin = getattr(item, "callspec", None) and item.callspec.params.get("plugin")
    cm = _check_mark(item)
    column = plugin.type if plugin else item.config._cni_lane  # type: ignore[attr-defined]
    if column is None or cm is None:
        return
    found = report.outcome_of(rep)
    if found is None:
        return
    status, detail = found
    failure = None
    if status == "fail":
        calls, total = proc.recorded()
        cid, _, level, ref = (list(cm.args) + ["", "", ""])[:4]
        expected = report.expected_of(getattr(item, "function", None), cid, level, ref)
        failure = report.Failure(item.name, rep.when, expected, detail, calls, total)
    item.config._cni_results.add(column, cm.args, item.name, rep.when, status, detail, failure)  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    runs.finish()  # whatever the teardown missed (a signal between making and recording)


def pytest_sessionfinish(session: pytest.Session) -> None:
    c = session.config
    for option, write in (("--cni-report", report.write_html), ("--cni-json", report.write_json)):
        if c.getoption(option):
            write(c.getoption(option), c._cni_plugins, c._cni_results, _columns(c), c._cni_measurements)  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    measurements = config._cni_measurements  # type: ignore[attr-defined]
    if measurements:
        terminalreporter.section("measurements")
        for name, (value, unit) in measurements.items():
            terminalreporter.write_line(f"{name}: {value}{' ' + unit if unit else ''}")
