"""The harness's report: one verdict per plugin, failures first with a reproduction each,
the reasons of every deviation and not-applicable check, then the whole plugin x check table.

``conformance/plugin.py`` collects (``Results.add`` for each pytest report of a check) and,
at the end of the session, calls ``write_html`` (``--report``) and ``write_json``
(``--json``). This module renders only; it imports nothing of the harness but ``proc``.

Verdict per plugin (or runtime lane), from its checks' outcomes and levels (M = the spec
says MUST, S = SHOULD, D = de facto: what the reference plugins and runtimes do):

- **not conformant**: at least one MUST check failed;
- **conformant with deviations**: no MUST check failed, but a SHOULD or de-facto check
  failed, or a check deviated as its implementation's documented deviation says
  (``conformance/deviations.py``, whatever the check's level: a deviation is a known
  departure from the spec, reviewed and cited, not a pass);
- **conformant**: every check that ran passed (or passed where a deviation was documented:
  "unexpected pass", which says the deviation list is stale), the rest not applicable;
- **not assessed**: no check ran (all of them not applicable).

A check is one ``@check`` id; its parametrizations count once, with the worst outcome
(fail, then deviation, then n/a, then pass); a failing check keeps every failing test.

JSON (``--json FILE``), schema ``cni-conformance-report/1``::

    {"schema": "cni-conformance-report/1", "generated": "2024-01-01T12:00:00",
     "implementation": "under-test", "verdict_rule": "...",
     "plugins": [{"name": "host-local", "binary": "/path/host-local", "kind": "ipam",
                  "verdict": "not conformant",         # one of VERDICTS
                  "outcomes": {"pass": 9, "fail": 1, "deviation": 0, "n/a": 2, "unexpected pass": 0},
                  "failures": {"MUST": 1, "SHOULD": 0, "de facto": 0},
                  "deviations": {"MUST": 0, "SHOULD": 0, "de facto": 0}}],
     "checks": [{"plugin": "host-local", "id": "F25-del-twice", "section": "F DEL", "level": "MUST",
                 "ref": "SPEC §DEL ...", "outcome": "fail",   # pass|fail|deviation|n/a|unexpected pass
                 "reason": "...",                            # failure message, n/a or deviation reason
                 "tests": ["test_del_twice[host-local]"],
                 "failures": [{"test": "...", "phase": "call",   # setup|call|teardown (leak check)
                               "expected": "...", "happened": "...",
                               "reproduction": {"script": "#!/bin/sh ...", "calls_total": 4,
                                                "calls": [CALL, ...]}}]}],
     "measurements": {"name": {"value": 1.5, "unit": "s"}}}

    CALL = {"seq": 4, "command": "<shell snippet>", "argv": [...], "netns": "cnh-...",
            "env": {"CNI_COMMAND": "DEL", ...}, "stdin": "<text>" | null,
            "stdin_base64": "<bytes that are not UTF-8 text>" | null,
            "rc": 1 | null, "stdout": "...", "stderr": "...", "timed_out": null | seconds,
            "kill_after": null | seconds,   # the harness SIGKILLed it after that long (crash checks)
            "note": "..."}

A reproduction lists the check's last ``proc.KEEP`` plugin calls (``calls_total`` says how
many it made), oldest first; ``script`` makes the world's namespaces and directory again,
replays those calls with the same environment and stdin, printing each exit status, and
removes what it made. What a profile prepares in a world beyond empty namespaces (a
stand-in NIC, a pod, a DHCP LAN) is not in it; the script says so where that applies.
"""

from __future__ import annotations

import base64
import html
import inspect
import json
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterable

from conformance.proc import Call

LEVELS = {"M": "MUST", "S": "SHOULD", "D": "de facto"}
OUTCOMES = ("pass", "fail", "deviation", "n/a", "unexpected pass")
NOT_CONFORMANT, WITH_DEVIATIONS, CONFORMANT, NOT_ASSESSED = (
    "not conformant", "conformant with deviations", "conformant", "not assessed")
VERDICTS = (NOT_CONFORMANT, WITH_DEVIATIONS, CONFORMANT, NOT_ASSESSED)
VERDICT_RULE = ("not conformant: a MUST check failed; conformant with deviations: no MUST failure, but a "
                "SHOULD or de-facto check failed or a check showed a documented deviation; conformant: every "
                "check that ran passed, the others not applicable; not assessed: no check ran")
_RANK = {"fail": 0, "deviation": 1, "n/a": 2, "unexpected pass": 3, "pass": 4}  # worst first
_OUTPUT_LIMIT = 8000  # characters of a call's stdout/stderr kept in a report


@dataclass
class Failure:
    """One failing test of a check: the rule, what the plugin did, and its last calls."""

    test: str
    phase: str
    expected: str
    happened: str
    calls: list[Call]
    calls_total: int


@dataclass
class CheckResult:
    """A check's outcome for one plugin (or lane), over all its parametrizations."""

    column: str
    check: str
    section: str
    level: str  # M, S or D
    ref: str
    outcome: str
    reason: str
    tests: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


@dataclass
class Verdict:
    """A plugin's verdict and the counts it rests on."""

    verdict: str
    outcomes: dict[str, int]
    failures: dict[str, int]  # by level name (MUST, SHOULD, de facto)
    deviations: dict[str, int]


def outcome_of(rep) -> tuple[str, str] | None:
    """A pytest report's outcome for the report (``OUTCOMES``) and its reason or message;
    None for a phase that says nothing (a passing setup or teardown)."""
    if rep.skipped and hasattr(rep, "wasxfail"):
        return "deviation", rep.wasxfail or "documented deviation (no reason given)"
    if rep.skipped:
        why = str(rep.longrepr[2]) if isinstance(rep.longrepr, tuple) else str(rep.longrepr or "")
        why = why.removeprefix("Skipped: ").strip()
        return "n/a", why or "skipped without a stated reason (a harness defect: every skip must say why)"
    if rep.failed:
        return "fail", _failure_message(rep)
    if rep.passed and rep.when == "call":
        return ("unexpected pass" if hasattr(rep, "wasxfail") else "pass"), ""
    return None


def _failure_message(rep) -> str:
    crash = getattr(rep.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(rep.longrepr or "")
    return text.strip()[:_OUTPUT_LIMIT] or "failed (no message)"


def expected_of(function, check: str, level: str, ref: str) -> str:
    """What a check demands: its docstring's first paragraph, else its id, level and reference."""
    doc = inspect.cleandoc(function.__doc__ or "") if function is not None else ""
    first = doc.split("\n\n")[0].replace("\n", " ").strip()
    return first or f"the plugin meets {check} ({LEVELS.get(level, level)}: {ref})"


class Results:
    """The run's results by (plugin or lane, check id)."""

    def __init__(self) -> None:
        self.checks: dict[tuple[str, str], CheckResult] = {}

    def add(self, column: str, mark_args: tuple, test: str, phase: str, outcome: str, reason: str,
            failure: Failure | None = None) -> None:
        """One pytest report of a check; the worst outcome wins (a leak found at teardown
        overrides a passing call)."""
        cid, section, level, ref = (list(mark_args) + ["", "", ""])[:4]
        res = self.checks.get((column, cid))
        if res is None:
            res = self.checks[(column, cid)] = CheckResult(column, cid, section, level, ref, outcome, reason)
        elif _RANK[outcome] < _RANK[res.outcome]:
            res.outcome, res.reason = outcome, reason
        if test not in res.tests:
            res.tests.append(test)
        if failure is not None:
            res.failures.append(failure)

    def for_column(self, column: str) -> list[CheckResult]:
        return sorted((r for r in self.checks.values() if r.column == column), key=lambda r: _order(r.check))


def verdict(checks: Iterable[CheckResult]) -> Verdict:
    """The verdict rule (module docstring) applied to one plugin's checks."""
    outcomes = dict.fromkeys(OUTCOMES, 0)
    failures = dict.fromkeys(LEVELS.values(), 0)
    deviations = dict.fromkeys(LEVELS.values(), 0)
    for c in checks:
        outcomes[c.outcome] += 1
        level = LEVELS.get(c.level, "MUST")  # a check without a level counts as the strictest
        if c.outcome == "fail":
            failures[level] += 1
        elif c.outcome == "deviation":
            deviations[level] += 1
    if failures["MUST"]:
        v = NOT_CONFORMANT
    elif failures["SHOULD"] or failures["de facto"] or outcomes["deviation"]:
        v = WITH_DEVIATIONS
    elif outcomes["pass"] or outcomes["unexpected pass"]:
        v = CONFORMANT
    else:
        v = NOT_ASSESSED
    return Verdict(v, outcomes, failures, deviations)


# -- reproductions ---------------------------------------------------------------------

def _text(b: bytes | None) -> str:
    if not b:
        return ""
    t = b.decode(errors="replace")
    return t if len(t) <= _OUTPUT_LIMIT else t[:_OUTPUT_LIMIT] + f"\n[... {len(t) - _OUTPUT_LIMIT} more characters]"


def _netns_of(call: Call) -> str | None:
    """The named namespace the call ran in (``ip netns exec NAME ...``)."""
    a = call.argv
    return a[3] if len(a) > 3 and os.path.basename(a[0]) == "ip" and a[1:3] == ["netns", "exec"] else None


def _container_netns(call: Call) -> str | None:
    """The named namespace CNI_NETNS points at, when it is one (not a file a check made)."""
    path = call.env.get("CNI_NETNS", "")
    for base in ("/var/run/netns/", "/run/netns/"):
        if path.startswith(base) and "/" not in path[len(base):] and path[len(base):]:
            return path[len(base):]
    return None


def shell_command(call: Call) -> str:
    """The call as a shell snippet: exactly its environment (``env -i``), its stdin, its
    command line (the host namespace by ``ip netns exec``)."""
    argv = list(call.argv)
    if "PATH" not in call.env and argv and "/" not in argv[0]:
        argv[0] = shutil.which(argv[0]) or argv[0]  # env -i without PATH would not find it
    if call.kill_after is not None:  # as the harness did: SIGKILL after that long
        argv = [shutil.which("timeout") or "timeout", "-s", "KILL", f"{call.kill_after:g}", *argv]
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in call.env.items())
    run = f"env -i {env} \\\n    {' '.join(shlex.quote(a) for a in argv)}"
    if call.stdin is None or call.stdin == b"":
        return f"{run} </dev/null"
    try:
        text = call.stdin.decode()
        if "\0" in text:
            raise ValueError("NUL")
        feed = f"printf '%s' {shlex.quote(text)}"
    except ValueError:  # not text: fed through base64
        feed = f"printf '%s' {base64.b64encode(call.stdin).decode()} | base64 -d"
    return f"{feed} |\n  {run}"


def script(calls: list[Call], calls_total: int, title: str, prepared: bool) -> str:
    """A shell script replaying ``calls`` in a world made like the check's, then removing it."""
    hosts = list(dict.fromkeys(n for n in map(_netns_of, calls) if n))
    others = list(dict.fromkeys(n for n in map(_container_netns, calls) if n and n not in hosts))
    dirs = list(dict.fromkeys(c.workdir for c in calls if c.workdir))
    lines = ["#!/bin/sh", f"# Reproduce {title}: "
             + (f"the last {len(calls)} of the {calls_total} plugin calls" if calls_total > len(calls)
                else f"the {len(calls)} plugin call(s)") + " the check made, in order.",
             "# The check ran them in a throwaway world, deleted after it: make it again, replay, remove it."]
    if prepared:
        lines.append("# (The plugin's profile also prepares that world (Profile.prepare in "
                     "conformance/profiles.py: e.g. a stand-in NIC, a pod, a DHCP LAN); not repeated here.)")
    for n in hosts:
        lines += [f"ip netns add {shlex.quote(n)}", f"ip netns exec {shlex.quote(n)} ip link set lo up"]
    lines += [f"ip netns add {shlex.quote(n)}" for n in others]
    lines += [f"mkdir -p {shlex.quote(d)}" for d in dirs]
    for c in calls:
        lines.append("")
        lines.append(f"# call {c.seq}: {c.env.get('CNI_COMMAND', ' '.join(c.argv[4:6]))}"
                     + (f" ({c.note})" if c.note else "") + f"; the harness saw: {_ended(c)}")
        lines.append(shell_command(c))
        lines.append("printf '\\nexit %s\\n' \"$?\"")  # on a line of its own: an output may not end one
    lines.append("")
    lines += [f"ip netns delete {shlex.quote(n)}" for n in reversed(others + hosts)]
    lines += [f"rm -rf {shlex.quote(d)}" for d in dirs if os.path.basename(d).startswith("cni-conf-")]
    return "\n".join(lines) + "\n"


def _ended(c: Call) -> str:
    if c.timed_out is not None:
        return f"no answer within {c.timed_out:g} s (killed)"
    if c.rc is None:
        return "still running"
    return f"killed by signal {-c.rc}" if c.rc < 0 else f"exit {c.rc}"


def call_json(c: Call) -> dict:
    """One call in the JSON report (``CALL`` in the module docstring)."""
    stdin, stdin_b64 = None, None
    if c.stdin is not None:
        try:
            stdin = c.stdin.decode()
        except UnicodeDecodeError:
            stdin_b64 = base64.b64encode(c.stdin).decode()
    return {"seq": c.seq, "command": shell_command(c), "argv": list(c.argv), "netns": _netns_of(c),
            "env": dict(c.env), "stdin": stdin, "stdin_base64": stdin_b64, "rc": c.rc,
            "stdout": _text(c.stdout), "stderr": _text(c.stderr), "timed_out": c.timed_out,
            "kill_after": c.kill_after, "note": c.note}


# -- JSON --------------------------------------------------------------------------------

def _prepared(plugins: list, column: str) -> bool:
    p = next((p for p in plugins if getattr(p, "type", None) == column), None)
    return bool(p is not None and getattr(p.profile, "prepare", None))


def to_json(plugins: list, results: Results, columns: list[str], measurements: dict | None = None) -> dict:
    """The whole report as one JSON-able document (schema in the module docstring)."""
    by_type = {p.type: p for p in plugins}
    out_plugins, out_checks = [], []
    for col in columns:
        checks = results.for_column(col)
        v = verdict(checks)
        p = by_type.get(col)
        out_plugins.append({"name": col, "binary": getattr(p, "binary", None), "kind": getattr(p, "kind", None),
                            "verdict": v.verdict, "outcomes": v.outcomes, "failures": v.failures,
                            "deviations": v.deviations})
        for c in checks:
            out_checks.append({
                "plugin": col, "id": c.check, "section": c.section, "level": LEVELS.get(c.level, c.level),
                "ref": c.ref, "outcome": c.outcome, "reason": c.reason, "tests": c.tests,
                "failures": [{"test": f.test, "phase": f.phase, "expected": f.expected, "happened": f.happened,
                              "reproduction": {"script": script(f.calls, f.calls_total, f"{c.check} on {col}",
                                                                _prepared(plugins, col)),
                                               "calls_total": f.calls_total,
                                               "calls": [call_json(k) for k in f.calls]}}
                             for f in c.failures]})
    return {"schema": "cni-conformance-report/1", "generated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "implementation": plugins[0].implementation if plugins else "",
            "verdict_rule": VERDICT_RULE, "plugins": out_plugins, "checks": out_checks,
            "measurements": {n: {"value": v, "unit": u} for n, (v, u) in (measurements or {}).items()}}


def write_json(path: str, plugins: list, results: Results, columns: list[str],
               measurements: dict | None = None) -> None:
    """Write the JSON report (written whole to a temporary file, then renamed)."""
    _write(path, json.dumps(to_json(plugins, results, columns, measurements), indent=1) + "\n")


def _write(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".report-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# -- HTML --------------------------------------------------------------------------------

_CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222}
td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}
table{border-collapse:collapse;margin:.5em 0 1em}
pre{background:#f4f4f4;border:1px solid #ddd;padding:6px;white-space:pre-wrap;word-break:break-all;margin:.3em 0}
.verdict{display:inline-block;padding:4px 10px;border-radius:4px;color:#fff;font-weight:bold}
.v-not-conformant{background:rgb(176,32,32)} .v-conformant-with-deviations{background:rgb(176,120,0)}
.v-conformant{background:rgb(30,126,52)} .v-not-assessed{background:rgb(110,110,110)}
.o-pass{background:#c8f7c5} .o-fail{background:#f7c5c5} .o-deviation{background:#f7ecc5}
.o-na{background:#eeeeee} .o-unexpected-pass{background:#c5e0f7}
.failure{border-left:5px solid rgb(176,32,32);padding:.2em 0 .2em 1em;margin:1em 0}
.call{margin:.6em 0 .6em 1em} .small{font-size:90%;color:#555}
"""
_OUTCOME_CLASS = {"pass": "o-pass", "fail": "o-fail", "deviation": "o-deviation", "n/a": "o-na",
                  "unexpected pass": "o-unexpected-pass"}
esc = html.escape


def _verdicts_html(plugins: list, results: Results, columns: list[str]) -> str:
    rows = []
    for col in columns:
        v = verdict(results.for_column(col))
        cls = "v-" + v.verdict.replace(" ", "-")
        devs = sum(v.deviations.values())
        rows.append(
            f'<tr><td><b>{esc(col)}</b></td><td><span class="verdict {cls}" data-verdict="{esc(v.verdict)}">'
            f'{esc(v.verdict)}</span></td><td>{v.failures["MUST"]}</td><td>{v.failures["SHOULD"]}</td>'
            f'<td>{v.failures["de facto"]}</td><td>{devs}'
            + (f' <span class="small">({", ".join(f"{n} {k}" for k, n in v.deviations.items() if n)})</span>' if devs else "")
            + f'</td><td>{v.outcomes["pass"] + v.outcomes["unexpected pass"]}</td><td>{v.outcomes["n/a"]}</td></tr>')
    return ('<h2 id="verdicts">Verdicts</h2><table><tr><th>plugin</th><th>verdict</th><th>MUST failures</th>'
            '<th>SHOULD failures</th><th>de-facto failures</th><th>documented deviations</th><th>passed</th>'
            f'<th>not applicable</th></tr>{"".join(rows)}</table>'
            f'<p class="small">Rule: {esc(VERDICT_RULE)}. A check counts once per plugin, whatever its '
            'parametrizations; levels: MUST and SHOULD are the spec\'s words, de facto is what the reference '
            'plugins and runtimes do.</p>')


def _call_html(c: Call, last: bool) -> str:
    """One call: command, then exit status and output; the last call and failed ones open,
    the others folded (``<details>``: no script needed)."""
    body = f'<pre class="command">{esc(shell_command(c))}</pre>'
    body += f'<div>&rarr; <b class="rc">{esc(_ended(c))}</b></div>'
    body += f'<div class="small">stdout</div><pre class="stdout">{esc(_text(c.stdout)) or "(empty)"}</pre>'
    body += f'<div class="small">stderr</div><pre class="stderr">{esc(_text(c.stderr)) or "(empty)"}</pre>'
    what = c.env.get("CNI_COMMAND") or " ".join(c.argv[4:6])
    title = (f"<b>call {c.seq}</b>: {esc(what)} &rarr; {esc(_ended(c))}"
             + (" (the last before the failure)" if last else "")
             + (f' <span class="small">({esc(c.note)})</span>' if c.note else ""))
    opened = " open" if last or c.rc != 0 else ""
    return f'<details class="call"{opened}><summary>{title}</summary>{body}</details>'


def _failures_html(plugins: list, results: Results, columns: list[str]) -> str:
    items = []
    for col in columns:
        for c in results.for_column(col):
            if c.outcome != "fail":
                continue
            for f in c.failures or [Failure(c.tests[0] if c.tests else c.check, "", "", c.reason, [], 0)]:
                calls = (f"<p><b>Plugin calls</b>: the check's last {len(f.calls)} of {f.calls_total}, oldest "
                         "first (the failing one is usually the last):</p>"
                         + "".join(_call_html(k, i == len(f.calls) - 1) for i, k in enumerate(f.calls))
                         if f.calls else "<p>The check made no plugin call before it failed.</p>")
                repro = (f'<details class="reproduction" open><summary><b>Reproduction</b>: these calls as one '
                         f'shell script (as root; it makes the world\'s namespaces and directory, replays the '
                         f'calls printing each exit status, removes what it made)</summary><pre class="script">'
                         f'{esc(script(f.calls, f.calls_total, f"{c.check} on {col}", _prepared(plugins, col)))}'
                         '</pre></details>' if f.calls else "")
                items.append(
                    f'<div class="failure" id="fail-{esc(col)}-{esc(c.check)}"><h3>{esc(col)}: <code>{esc(c.check)}</code> '
                    f'<span class="small">({esc(LEVELS.get(c.level, c.level))}, {esc(c.section)}; {esc(c.ref)})</span></h3>'
                    f'<p class="small">test <code>{esc(f.test)}</code>'
                    + (f', failed in {esc(f.phase)}' + (" (the leak check)" if f.phase == "teardown" else "")
                       if f.phase else "") + '</p>'
                    f'<p><b>Expected:</b> <span class="expected">{esc(f.expected)}</span></p>'
                    f'<p><b>Happened:</b></p><pre class="happened">{esc(f.happened)}</pre>{calls}{repro}</div>')
    if not items:
        return '<h2 id="failures">Failures</h2><p>None.</p>'
    return f'<h2 id="failures">Failures ({len(items)})</h2>' + "".join(items)


def _reasons_html(results: Results, columns: list[str], outcome: str, title: str) -> str:
    """Every check with ``outcome``, grouped by plugin and reason (each shown)."""
    parts = []
    for col in columns:
        by_reason: dict[str, list[str]] = {}
        for c in results.for_column(col):
            if c.outcome == outcome:
                by_reason.setdefault(c.reason, []).append(c.check)
        for reason, ids in by_reason.items():
            parts.append(f"<tr><td>{esc(col)}</td><td>{', '.join(f'<code>{esc(i)}</code>' for i in ids)}</td>"
                         f"<td>{esc(reason)}</td></tr>")
    if not parts:
        return ""
    return (f'<h2>{esc(title)}</h2><table><tr><th>plugin</th><th>checks</th><th>reason</th></tr>'
            + "".join(parts) + "</table>")


def _table_html(results: Results, columns: list[str]) -> str:
    ids: dict[str, CheckResult] = {}
    for c in results.checks.values():
        ids.setdefault(c.check, c)
    rows = []
    for cid in sorted(ids, key=_order):
        meta = ids[cid]
        cells = []
        for col in columns:
            c = results.checks.get((col, cid))
            if c is None:
                cells.append("<td></td>")
                continue
            brief = c.reason.splitlines()[0][:300] if c.reason else ""
            cells.append(f'<td class="{_OUTCOME_CLASS[c.outcome]}" title="{esc(c.reason[:2000])}">{esc(c.outcome)}'
                         + (f"<br><small>{esc(brief)}</small>" if brief else "") + "</td>")
        rows.append(f"<tr><td><code>{esc(cid)}</code></td><td>{esc(meta.section)}</td><td>{esc(meta.level)}</td>"
                    f"<td>{esc(meta.ref)}</td>{''.join(cells)}</tr>")
    return ('<h2 id="checks">Every check</h2><table><tr><th>check</th><th>section</th><th>level</th><th>spec</th>'
            + "".join(f"<th>{esc(t)}</th>" for t in columns) + "</tr>" + "".join(rows) + "</table>"
            "<p class=\"small\">Levels: M = the spec says MUST, S = SHOULD, D = what the reference does "
            "(de facto).</p>")


def _measurements_html(measurements: dict) -> str:
    if not measurements:
        return ""
    rows = "".join(f"<tr><td>{esc(n)}</td><td>{esc(str(v))}</td><td>{esc(u)}</td></tr>" for n, (v, u) in measurements.items())
    return f"<h2>Measurements</h2><table><tr><th>what</th><th>value</th><th>unit</th></tr>{rows}</table>\n"


def html_text(plugins: list, results: Results, columns: list[str], measurements: dict | None = None) -> str:
    """The HTML report: self-contained (inline CSS, no script, no external reference)."""
    impl = plugins[0].implementation if plugins else ""
    what = ", ".join(f"{p.type} ({p.binary})" for p in plugins)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>CNI conformance report</title>'
            f"<style>{_CSS}</style></head><body><h1>CNI conformance report</h1>"
            f"<p>Plugins: {esc(what)}; implementation profile: {esc(impl)}; generated {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>"
            + _verdicts_html(plugins, results, columns)
            + _failures_html(plugins, results, columns)
            + _reasons_html(results, columns, "deviation", "Documented deviations")
            + _reasons_html(results, columns, "unexpected pass",
                            "Unexpected passes (a documented deviation did not happen: the list is stale)")
            + _reasons_html(results, columns, "n/a", "Not applicable")
            + _table_html(results, columns) + _measurements_html(measurements or {}) + "</body></html>\n")


def write_html(path: str, plugins: list, results: Results, columns: list[str], measurements: dict | None = None) -> None:
    """Write the HTML report (``html_text``)."""
    _write(path, html_text(plugins, results, columns, measurements))


def _order(cid: str) -> tuple:
    head = cid.split("-")[0]
    return (head[:1], int(head[1:]) if head[1:].isdigit() else 0, cid)
