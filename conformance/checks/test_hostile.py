"""Hostile input (issue 12): special files as CNI_NETNS, interface names the kernel expands
as templates, very long container IDs, and a plugin asked to delegate to itself.

Every plugin call here has a short deadline: a plugin that hangs fails its check instead
of stopping the run. A plugin that may delegate to itself runs under a hard process limit
(conformance/contain.py), and everything it started is killed when the call is over.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from conformance import contain
from conformance.checks.common import (
    CID, add_ok, assert_error, del_ok, ifname, need_many_attachments, need_profile, newest, prev_result, run,
    with_prev,
)
from conformance.leak import _links
from conformance.plugin import check, kinds
from conformance.proc import Outcome
from conformance.world import World

# How long a plugin has to answer where it must answer promptly: 20 times its slowest of
# three VERSION calls (its start-up here: ~3 ms for a Go plugin, ~30 ms for ours; ten
# times that under the VM lane's emulation), at least PROMPT_MIN and at most PROMPT_MAX
# seconds. A hanging plugin then costs a run seconds, not a fixed 10 s per call, on a fast
# machine, and a slow one still gets the margin it needs.
PROMPT_MIN, PROMPT_MAX, PROMPT_FACTOR = 2.0, 30.0, 20
IFNAME_TEMPLATE = "eth%d"  # the kernel would create eth0, eth1...
KEY_TEMPLATE = "cni%d"  # for config keys naming an interface: would become cni0
LONG_ID = 5000  # characters in the long container IDs


def _conf(plugin, world: World, version: str) -> dict:
    """A valid config for the plugin (with a prevResult for a chained one); for a type
    the harness has no profile of, the bare minimum."""
    if plugin.profile is None:
        return {"cniVersion": version, "name": f"net-{world.tag}", "type": plugin.type}
    conf = world.conf(version)
    if plugin.kind == "chained":
        conf = with_prev(conf, prev_result(world, version))
    return conf


def prompt(plugin, world: World) -> float:
    """The plugin's deadline in seconds for calls that must answer promptly (PROMPT_*),
    measured once per plugin under test."""
    cached = getattr(plugin, "_prompt", None)
    if cached is None:
        slowest = 0.0
        for _ in range(3):
            start = time.monotonic()
            world.exec(plugin.binary, "VERSION", {"cniVersion": "1.0.0"}, timeout=PROMPT_MAX)
            slowest = max(slowest, time.monotonic() - start)
        cached = min(PROMPT_MAX, max(PROMPT_MIN, PROMPT_FACTOR * slowest))
        plugin._prompt = cached
    return cached


def _timed(world: World, plugin, verb: str, conf: dict, **kw) -> Outcome | None:
    """``run`` with the plugin's prompt deadline; None if the plugin did not answer."""
    try:
        return run(world, plugin, verb, conf, timeout=prompt(plugin, world), **kw)
    except subprocess.TimeoutExpired:
        return None


def _no_prev(conf: dict) -> dict:
    return {k: v for k, v in conf.items() if k != "prevResult"}


def _error_problem(out: Outcome) -> str | None:
    """Why ``out`` is not a proper failure (non-zero exit, one error document), or None."""
    try:
        assert_error(out)
    except (AssertionError, pytest.fail.Exception) as e:
        return str(e).splitlines()[0]
    return None


# ---------------------------------------------------------------- special files as CNI_NETNS

def _special_files(world: World) -> dict[str, str]:
    fifo = os.path.join(world.tmp, "netns-fifo")
    os.mkfifo(fifo)
    return {"a FIFO": fifo, "a character device": "/dev/null"}


def _unblock(fifo: str) -> None:
    """Release whatever still waits in open() on the FIFO (a reader gets end of file, a
    writer a broken pipe), so no process of the plugin stays blocked after the check."""
    for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
        try:
            os.close(os.open(fifo, flags))
        except OSError:
            pass  # nobody waiting on that side


def _hang(verb: str, what: str, seconds: float) -> str:
    return (f"{verb} with {what} as CNI_NETNS did not answer within {seconds:.1f} s: a plugin must look at "
            f"CNI_NETNS before opening it (opening a FIFO to read waits for a writer)")


@check("A7-netns-special-file", "A Environment", "M", "SPEC §Parameters (CNI_NETNS: a namespace path); checklist A7; issue 12")
def test_special_file_as_netns(plugin, world):
    """A FIFO or a device as CNI_NETNS: ADD, CHECK and DEL answer promptly; a failure is an
    error document, and a plugin that uses the namespace fails ADD and CHECK. An ADD that
    succeeded anyway (an IPAM plugin never looks) is deleted again; nothing is left."""
    version = newest(plugin, world, "1.0.0")
    conf = _conf(plugin, world, version)
    needs_netns = plugin.profile is not None and plugin.profile.needs_netns
    files = _special_files(world)
    added = False
    try:
        for what, path in files.items():
            for verb in ("ADD", "CHECK", "DEL"):
                c = conf
                if verb == "CHECK" and "prevResult" not in c:
                    c = with_prev(conf, {"cniVersion": version, "dns": {}, "ips": [],
                                         "interfaces": [{"name": ifname(plugin), "sandbox": path}]})
                out = _timed(world, plugin, verb, c if verb != "DEL" else _no_prev(c), netns=path)
                assert out is not None, _hang(verb, what, prompt(plugin, world))
                if out.ok:
                    assert not (needs_netns and verb in ("ADD", "CHECK")), \
                        f"{verb} with {what} as CNI_NETNS succeeded: {out}"
                    added = added or verb == "ADD"
                else:
                    problem = _error_problem(out)
                    assert problem is None, f"{verb} with {what} as CNI_NETNS: {problem}"
    finally:
        _unblock(files["a FIFO"])
        if added:  # release what it made, as a runtime would, with the real namespace
            _timed(world, plugin, "DEL", _no_prev(conf))


@check("A7-netns-special-file-code", "A Environment", "S", "Go skel/ns: code 8 for a CNI_NETNS that is no namespace; checklist A7")
def test_special_file_as_netns_code(plugin, world):
    """ADD with a FIFO as CNI_NETNS fails with code 8 (invalid namespace), as the Go
    library's plugins answer for a path that is no namespace."""
    need_profile(plugin)
    if not plugin.profile.needs_netns:
        pytest.skip(f"not applicable: {plugin.type} does not use the container's namespace")
    fifo = _special_files(world)["a FIFO"]
    try:
        out = _timed(world, plugin, "ADD", _conf(plugin, world, newest(plugin, world, "1.0.0")), netns=fifo)
    finally:
        _unblock(fifo)
    assert out is not None, _hang("ADD", "a FIFO", prompt(plugin, world))
    assert_error(out, 8)


# ---------------------------------------------------------------- name templates

def _all_links(world: World) -> dict[str, set[str]]:
    return {"container": _links(world.ctr), "host": _links(world.host), "machine": _links(None)}


def _expanded(world: World, before: dict[str, set[str]], template: str) -> list[str]:
    """New links (in the world's namespaces or the machine's) whose name the kernel could
    have made from ``template`` ("eth%d" -> eth0)."""
    pattern = re.compile("^" + r"\d+".join(re.escape(p) for p in template.split("%d")) + "$")
    now = _all_links(world)
    return [f"{n} in the {where} namespace" for where in now for n in sorted(now[where] - before[where])
            if pattern.match(n)]


def _template_add(plugin, world: World, conf: dict, ifname_: str, template: str) -> tuple[Outcome | None, list[str]]:
    """ADD, see which links the template became, DEL (as a runtime does after a failed
    ADD, whatever it answers): (ADD's outcome, the expanded links)."""
    before = _all_links(world)
    out = _timed(world, plugin, "ADD", conf, ifname_=ifname_)
    made = _expanded(world, before, template)
    _timed(world, plugin, "DEL", _no_prev(conf), ifname_=ifname_)
    return out, made


@check("A4-ifname-template", "A Environment", "M", "SPEC §Parameters (CNI_IFNAME: that name, or an error); checklist A4; issue 12")
@kinds("ipam", "interface", "loopback", "chained")
def test_ifname_template(plugin, world):
    """CNI_IFNAME ``eth%d``: the kernel expands ``%d`` when it creates or renames a link,
    so a plugin passing the name on creates ``eth0``, which the runtime never asked for.
    An interface plugin must refuse the name; no plugin may leave an expanded link."""
    need_profile(plugin)
    conf = _conf(plugin, world, newest(plugin, world, "1.0.0"))
    out, made = _template_add(plugin, world, conf, IFNAME_TEMPLATE, IFNAME_TEMPLATE)
    assert out is not None, f"ADD with CNI_IFNAME {IFNAME_TEMPLATE!r} did not answer within {prompt(plugin, world):.1f} s"
    assert not made, f"ADD with CNI_IFNAME {IFNAME_TEMPLATE!r} created {', '.join(made)} (the kernel expanded the name)"
    if plugin.kind == "interface":
        problem = _error_problem(out)
        assert problem is None, f"ADD with CNI_IFNAME {IFNAME_TEMPLATE!r} must be refused: {problem}"


@check("A4-ifname-template-code", "A Environment", "S", "SPEC §Error codes (4: invalid environment); checklist A4")
@kinds("interface")
def test_ifname_template_code(plugin, world):
    """The refusal of CNI_IFNAME ``eth%d`` has code 4 (invalid environment variable)."""
    need_profile(plugin)
    out, _ = _template_add(plugin, world, _conf(plugin, world, newest(plugin, world, "1.0.0")),
                           IFNAME_TEMPLATE, IFNAME_TEMPLATE)
    assert out is not None, f"ADD with CNI_IFNAME {IFNAME_TEMPLATE!r} did not answer within {prompt(plugin, world):.1f} s"
    assert_error(out, 4)


def _interface_keys(plugin) -> tuple[str, ...]:
    need_profile(plugin)
    if not plugin.profile.interface_keys:
        pytest.skip(f"not applicable: the harness knows no config key of {plugin.type} naming an interface")
    return plugin.profile.interface_keys


@check("K-ifname-template-key", "K Configuration", "M", "issue 12: a config value naming an interface is a name, not a template")
def test_interface_key_template(plugin, world):
    """A config key naming an interface (bridge's ``bridge``) set to ``cni%d``: refused
    with an error document, and no ``cni0`` made by the kernel's template expansion."""
    version = newest(plugin, world, "1.0.0")
    for key in _interface_keys(plugin):
        conf = _conf(plugin, world, version)
        conf[key] = KEY_TEMPLATE
        out, made = _template_add(plugin, world, conf, ifname(plugin), KEY_TEMPLATE)
        assert out is not None, f"ADD with {key}={KEY_TEMPLATE!r} did not answer within {prompt(plugin, world):.1f} s"
        assert not made, f"ADD with {key}={KEY_TEMPLATE!r} created {', '.join(made)} (the kernel expanded the name)"
        problem = _error_problem(out)
        assert problem is None, f"ADD with {key}={KEY_TEMPLATE!r} must be refused: {problem}"


@check("K-ifname-template-key-code", "K Configuration", "S", "SPEC §Error codes (7: invalid network config)")
def test_interface_key_template_code(plugin, world):
    """The refusal of an interface-naming key set to ``cni%d`` has code 7."""
    version = newest(plugin, world, "1.0.0")
    for key in _interface_keys(plugin):
        conf = _conf(plugin, world, version)
        conf[key] = KEY_TEMPLATE
        out, _ = _template_add(plugin, world, conf, ifname(plugin), KEY_TEMPLATE)
        assert out is not None, f"ADD with {key}={KEY_TEMPLATE!r} did not answer within {prompt(plugin, world):.1f} s"
        assert_error(out, 7)


# ---------------------------------------------------------------- long container IDs

def _long_ids() -> tuple[str, str]:
    """Two valid container IDs of LONG_ID characters that differ only in the last one."""
    body = ("0123456789abcdef" * (LONG_ID // 16 + 1))[:LONG_ID - 3]
    return f"L{body}-a", f"L{body}-b"


def _addresses(result: dict) -> set[str]:
    return {ipc.get("address") for ipc in result.get("ips", [])}


def _check_ok(world: World, plugin, conf: dict, result: dict, cid: str, when: str, **kw) -> None:
    out = run(world, plugin, "CHECK", with_prev(conf, result), cid=cid, **kw)
    assert out.ok, f"CHECK of the long-ID attachment {cid[-2:]!r} {when}: {out}"


@check("A5-long-container-id", "A Environment", "M", "SPEC §Parameters (CNI_CONTAINERID), §Attachments; issue 12")
@kinds("ipam", "interface", "loopback")
def test_long_container_ids(plugin, world):
    """Container IDs of 5,000 valid characters, two of them differing only in the last:
    a repeated ADD hands out no second attachment, the other ID gets its own, CHECK
    passes throughout, GC listing both keeps both, DEL frees everything (leak check)."""
    need_many_attachments(plugin)
    version = newest(plugin, world, "1.1.0")
    conf = world.conf(version)
    a, b = _long_ids()
    netns_b = world.new_netns() if plugin.kind == "interface" else world.ctr_path
    distinct = plugin.kind in ("ipam", "interface")  # loopback's address is 127.0.0.1 for all

    ra = add_ok(world, plugin, conf, cid=a)
    again = run(world, plugin, "ADD", conf, cid=a)
    if again.ok:
        assert _addresses(again.doc) == _addresses(ra), (
            f"a second ADD of the same long ID handed out another attachment: {_addresses(ra)} then {_addresses(again.doc)}")
    else:
        problem = _error_problem(again)
        assert problem is None, f"the second ADD of the same long ID: {problem}"
    _check_ok(world, plugin, conf, ra, a, "after the repeated ADD")

    out = run(world, plugin, "ADD", conf, cid=b, netns=netns_b)
    assert out.ok, (f"ADD of a second long ID (the first {LONG_ID - 2} characters the same, then '-b' "
                    f"instead of '-a') failed, as if the IDs were cut short: {out}")
    rb = out.doc
    if distinct:
        assert not _addresses(ra) & _addresses(rb), f"two long IDs got the same addresses: {_addresses(rb)}"
    _check_ok(world, plugin, conf, ra, a, "after ADD of the other long ID")
    _check_ok(world, plugin, conf, rb, b, "after its ADD", netns=netns_b)

    if version == "1.1.0":
        valid = [{"containerID": a, "ifname": ifname(plugin)}, {"containerID": b, "ifname": ifname(plugin)}]
        out = world.exec(plugin.binary, "GC", dict(conf, **{"cni.dev/valid-attachments": valid}),
                         containerid="", ifname="", netns="")
        assert out.ok, f"GC listing both long IDs: {out}"
        _check_ok(world, plugin, conf, ra, a, "after GC listed it as valid")
        _check_ok(world, plugin, conf, rb, b, "after GC listed it as valid", netns=netns_b)

    del_ok(world, plugin, conf, cid=a)
    del_ok(world, plugin, conf, cid=b, netns=netns_b)


# ---------------------------------------------------------------- delegation to itself

SELF_VERBS = ("ADD", "CHECK", "DEL", "GC", "STATUS")


def _self_delegating(plugin, world: World, verb: str, version: str) -> tuple[Outcome | None, int]:
    """``verb`` with a config whose ``ipam.type`` is the plugin's own type, run in a cage
    (a pids cgroup, swept afterwards): (the outcome or None if no answer within its prompt deadline,
    how many forks the cage's process limit refused)."""
    try:
        cage = contain.open_cage()
    except contain.Unavailable as e:
        pytest.skip(f"not applicable: no process containment on this machine ({e}); a plugin delegating to "
                    f"itself may fork without end, so it is not run unconfined")
    conf = world.conf("1.1.0" if verb in ("GC", "STATUS") else version, ipam={"type": plugin.type})
    attach = verb in ("ADD", "CHECK", "DEL")
    if verb == "CHECK":
        conf["prevResult"] = {"cniVersion": conf["cniVersion"], "dns": {}, "ips": [],
                              "interfaces": [{"name": ifname(plugin), "sandbox": world.ctr_path}]}
    if verb == "GC":
        conf["cni.dev/valid-attachments"] = []
    with cage:
        try:
            out = world.exec(plugin.binary, verb, conf, containerid=CID if attach else "",
                             ifname=ifname(plugin) if attach else "", netns=None if attach else "",
                             timeout=prompt(plugin, world), wrap=cage.wrap)
        except subprocess.TimeoutExpired:
            out = None
        return out, cage.limit_hits()


@check("J-self-delegation", "J Delegation", "M", "SPEC §Delegated plugins; issue 12 (ipam.type naming the plugin itself)")
@kinds("interface")
def test_self_delegation(plugin, world):
    """``"ipam": {"type": <its own type>}``: ADD, CHECK, DEL, GC and STATUS are refused
    promptly with an error document, without the plugin running itself again and again
    (run under a limit of contain.PIDS_MAX tasks), and nothing is left (leak check)."""
    need_profile(plugin)
    version = newest(plugin, world, "1.1.0")
    problems = []
    for verb in SELF_VERBS:
        out, refused = _self_delegating(plugin, world, verb, version)
        if refused:
            problems.append(f"{verb} ran away: it kept starting processes until the limit of {contain.PIDS_MAX} "
                            f"tasks refused {refused} more (it delegates to itself without end)")
        elif out is None:
            problems.append(f"{verb} did not answer within {prompt(plugin, world):.1f} s")
        elif _error_problem(out):
            problems.append(f"{verb}: {_error_problem(out)}")
    assert not problems, "; ".join(problems)


@check("J-self-delegation-code", "J Delegation", "S", "SPEC §Error codes (7: invalid network config); issue 12")
@kinds("interface")
def test_self_delegation_code(plugin, world):
    """The refusal of a config delegating to the plugin itself has code 7, for every verb
    the plugin knows."""
    need_profile(plugin)
    version = newest(plugin, world, "1.1.0")
    verbs = SELF_VERBS if version == "1.1.0" else SELF_VERBS[:3]
    for verb in verbs:
        out, refused = _self_delegating(plugin, world, verb, version)
        assert not refused and out is not None, f"{verb} ran away or did not answer (see J-self-delegation)"
        assert_error(out, 7)
