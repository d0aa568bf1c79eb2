"""Benchmark: our plugins against the reference ones, whole process, alternating in one run.

    python -m conformance.bench                    quick run (~2 min): the single-pod scenarios
    python -m conformance.bench --all              everything: + 32 parallel pods + the scale run
    python -m conformance.bench [--runs N] [--only host-local,loopback,bridge,macvlan,tuning,bandwidth,firewall,static,dhcp,chain,parallel,scale]
                                [--ours DIR] [--ours-bin DIR] [--ref DIR] [--impls ours,ours-bin,ref]
                                [--json OUT.json] [--report OUT.md]
    python -m conformance.bench --scale [--pods 10,100] [--impls ours,ref] [--plot PNG]

Implementations (``--impls``, default all three): ``ours`` = ``--ours`` (default
dist/src-bin: the launchers that run the source), ``ours-bin`` = ``--ours-bin`` (default
dist/bin: the self-contained binaries, one file per plugin
type; "not built" while missing, or while dist/bin still holds launchers), ``ref`` =
``--ref`` (the reference plugins, /usr/lib/cni). The scale run compares two: the first of
ours, ours-bin asked for (and built) runs as its "ours".

Scenarios (each implementation in turn, the order rotated every run, so a noisy machine
slows all alike; medians):

* host-local ADD+DEL, loopback ADD+DEL, bridge+host-local ipMasq ADD+DEL, macvlan+host-local
  ADD+DEL, tuning, bandwidth and firewall ADD+DEL behind a veth pod, static ADD, CHECK and
  DEL per call (plugin_runs.py): plugin processes run directly, in a throwaway host
  namespace (plus their peak RSS);
* dhcp (``--all`` or ``--only dhcp``; plugin_runs.py, ~1 min): bridge+dhcp ADD+DEL, each
  implementation with its own dnsmasq and its own dhcp daemon;
* chain (chain.py): bridge+host-local -> portmap with one host port, one pod, ADD, CHECK
  and DEL through libcni (the Go driver of conformance/libcni.py);
* parallel (``--all`` or ``--only parallel``; chain.py): 32 pods' chain ADDs at once, then
  32 DELs;
* scale (``--all``, ``--scale`` or ``--only scale``; scale.py): chain ADD latency as pods
  accumulate on one bridge, with a plot; the full run is ``--scale --pods 10,100,250,500``.
  ``--scale`` (or ``--only scale`` alone) prints only the scale run's own report.

The end is one markdown table (report.py: every scenario, each implementation, the ratios
ours/ref, bin/ref, bin/source, and the targets: chain ADD+DEL <= 3x the reference, binaries
<= 1.2x the source per call, the scale run's own), for the README; ``--json`` writes all
figures. Times are whole-process (fork, exec, interpreter start-up, work, exit), as a
runtime experiences them; processes are started from a thread parked in the host namespace
(proc.NetnsThread), so the harness adds a vfork+exec, not a fork of itself. A scenario that
fails is reported in the table and the run goes on (exit status 1). Everything runs in
namespaces (named ``cnib-<random>-...``) and temporary directories made here and removed
afterwards, also on error, Ctrl-C and SIGTERM; no plugin runs in the machine's own
namespace. This is a measurement, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import subprocess
import sys
import time

from conformance import runs
from conformance.bench import chain, plugin_runs, report, scale
from conformance.bench.proc import RssMeter, cleanup, cleanup_uninterrupted, delete_netns, not_built_for
from plugins import names as plugin_names

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIST_BIN = os.path.join(ROOT, "dist", "bin")  # `make bin`: the standalone binaries (earlier: the launchers)
DIST_SRC_BIN = os.path.join(ROOT, "dist", "src-bin")  # `make bin`: launchers running the source
LABELS = ("ours", "ours-bin", "ref")
QUICK = ("host-local", "loopback", "bridge", "macvlan", "tuning", "bandwidth", "firewall", "static", "chain")
# dhcp: ~1 min (the reference's bridge+dhcp ADD alone takes ~1.8 s), so not in the quick run.
EVERYTHING = QUICK + ("dhcp", "parallel", "scale")


# ---- options ----------------------------------------------------------------------------------

def _holds_launchers(d: str) -> bool:
    """True if ``d``'s plugins are scripts (build/launchers.py's), not binaries: the first
    plugin of the registry found there decides."""
    for name in plugin_names():
        try:
            with open(os.path.join(d, name), "rb") as f:
                return f.read(2) == b"#!"
        except OSError:
            continue
    return False


def resolve_dirs(opts: argparse.Namespace) -> None:
    """Defaults of --ours and --ours-bin for the layout at hand: `make bin` puts the
    launchers in dist/src-bin and the standalone binaries in dist/bin (before issue #6,
    dist/bin held the launchers). A default dist/bin holding launchers is not the binaries:
    ours-bin is then "not built" (``opts.launchers_only``)."""
    opts.launchers_only = set()
    if opts.ours is None:
        opts.ours = DIST_SRC_BIN if os.path.isdir(DIST_SRC_BIN) or not _holds_launchers(DIST_BIN) else DIST_BIN
    if opts.ours_bin is None:
        opts.ours_bin = DIST_BIN
        if _holds_launchers(DIST_BIN):
            opts.launchers_only.add("ours-bin")


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``argv``, default sys.argv[1:])."""
    ap = argparse.ArgumentParser(prog="python -m conformance.bench", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:8]))
    ap.add_argument("--ours", help="ours, source: launchers running the source (default dist/src-bin, "
                    "or dist/bin while that holds the launchers)")
    ap.add_argument("--ours-bin", help="ours, self-contained binaries: a directory with one executable (or "
                    "symlink) per plugin type (default dist/bin unless it holds launchers; 'not built' while missing)")
    ap.add_argument("--ref", default="/usr/lib/cni", help="the reference plugins (default /usr/lib/cni)")
    ap.add_argument("--impls", default=None,
                    help="comma-separated subset of ours,ours-bin,ref (default all three; "
                         "for --scale: ours,ref)")
    ap.add_argument("--runs", type=int, default=40, help="runs per single-pod scenario (default 40)")
    ap.add_argument("--only", default="", help="comma-separated scenarios: host-local, loopback, bridge, macvlan, "
                    "tuning, bandwidth, firewall, static, dhcp, chain (also: portmap), parallel, scale (default: the "
                    "first nine; dhcp takes ~1 min)")
    ap.add_argument("--all", action="store_true", help="every scenario: + parallel and the scale run (with its PNG)")
    ap.add_argument("--parallel-pods", type=int, default=32, help="pods in the parallel scenario (default 32)")
    ap.add_argument("--parallel-runs", type=int, default=5, help="runs of the parallel scenario (default 5)")
    ap.add_argument("--json", help="also write all figures to this file")
    ap.add_argument("--report", metavar="MD", help="also write the markdown report to this file "
                    "(it is always printed)")
    sc = ap.add_argument_group("scale run (--scale or --only scale; see conformance/bench/scale.py)")
    sc.add_argument("--scale", action="store_true",
                    help="only the scale run: chain ADD/DEL latency as pods accumulate on one bridge")
    sc.add_argument("--pods", default="10,100",
                    help="checkpoints, comma-separated (default 10,100; the full run: 10,100,250,500)")
    sc.add_argument("--plot", default="bench-scale.png",
                    help="PNG to write (default bench-scale.png in the cwd; 'none': no plot; needs matplotlib)")
    sc.add_argument("--backend", choices=("nftables", "iptables"),
                    help="firewall backend for bridge ipMasq and portmap (bridge, chain, parallel and scale; default: "
                         "each implementation's own; the reference 1.1.1 ignores it and uses iptables)")
    return ap.parse_args(argv)


# ---- the scale run ------------------------------------------------------------------------------

class ScalePlan:
    """Who the scale run compares: ``impls`` ((name, bin_dir) for ``ours`` and/or ``ref``),
    ``label`` (which of ours, ours-bin runs as its ``ours``) and ``ours_dir`` (its report
    names it even when ours does not run)."""

    def __init__(self, label: str, ours_dir: str, impls: list[tuple[str, str]]) -> None:
        self.label = label
        self.ours_dir = ours_dir
        self.impls = impls


def scale_plan(opts: argparse.Namespace) -> ScalePlan | None:
    """The scale run knows ``ours`` and ``ref``: the first of ours, ours-bin that is asked
    for (and built) runs as its "ours" (default: ours and ref); None if nothing is asked."""
    wanted = ["ours", "ref"] if opts.impls is None and not opts.all else opts.impl_list
    asked = [l for l in ("ours", "ours-bin") if l in wanted]
    ours = [l for l in asked if l not in opts.not_built] or asked  # none built: the scale run says so
    if not ours and "ref" not in wanted:
        return None
    ours_dir = opts.dirs[ours[0]] if ours else opts.ours
    impls = ([("ours", ours_dir)] if ours else []) + ([("ref", opts.ref)] if "ref" in wanted else [])
    return ScalePlan(ours[0] if ours else "ours", ours_dir, impls)


def run_scale(opts: argparse.Namespace, plan: ScalePlan, command: str,
              json_path: str | None) -> tuple[int, dict | None]:
    """The scale run with its own report (printed), its JSON (to ``json_path``) and plot;
    returns (exit status, its figures when it succeeded)."""
    try:
        pods = scale.checkpoints(opts.pods)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2, None
    status, data = scale.run(pods, plan.impls, opts.backend)
    if status != 0:
        return status, None
    print(report.scale_text(data, pods, opts.backend, plan.ours_dir, opts.ref))
    if json_path:
        report.write_scale_json(json_path, command, data)
    if opts.plot and opts.plot.lower() != "none":
        report.plot_scale(data, pods, opts.plot, command)
    return 0, data


# ---- main -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0, 1 (a scenario failed, or nothing to run), 2 (usage)
    or 130 (interrupted: Ctrl-C, SIGTERM or SIGHUP)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before or after the steps that catch it themselves
        return 130
    finally:
        runs.finish()  # whatever of this run a signal kept its own cleanup from removing


def _main(argv: list[str] | None) -> int:
    opts = parse(argv)
    words = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m conformance.bench"] + list(words))
    only = [w.strip() for w in opts.only.split(",") if w.strip()]
    resolve_dirs(opts)
    # A run of its own (conformance/runs.py), before anything is made: SIGTERM and SIGHUP
    # end it as Ctrl-C does, and what killed runs left goes first.
    runs.start("bench")
    opts.dirs = {"ours": opts.ours, "ours-bin": opts.ours_bin, "ref": opts.ref}
    opts.impl_list = [w.strip() for w in (opts.impls or ",".join(LABELS)).split(",") if w.strip()]
    if not opts.impl_list or any(w not in LABELS for w in opts.impl_list):
        print("--impls: a comma-separated subset of ours,ours-bin,ref", file=sys.stderr)
        return 2
    impls = [(l, opts.dirs[l]) for l in LABELS if l in opts.impl_list]
    opts.not_built = {l for l, d in impls if not os.path.isdir(d)} | opts.launchers_only

    if (opts.scale or only == ["scale"]) and not opts.all:  # the scale run alone, its own report
        plan = scale_plan(opts)
        if plan is None:
            print("nothing to run", file=sys.stderr)
            return 1
        return run_scale(opts, plan, command, opts.json)[0]

    if opts.all:
        which = set(EVERYTHING)
    elif only:
        only = ["chain" if w == "portmap" else w for w in only]
        unknown = [w for w in only if w not in EVERYTHING]
        if unknown:
            print(f"--only: unknown {', '.join(unknown)} (scenarios: {', '.join(EVERYTHING)})", file=sys.stderr)
            return 2
        which = set(only)
    else:
        which = set(QUICK)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    tag = runs.tag()  # runs.start in main(): a killed bench's namespaces are swept by the next run
    prefix = f"cnib-{tag}-"
    tmp = runs.mkdtemp(prefix="cni-bench-")
    running: list = []
    rows: list[dict] = []
    errors: list[dict] = []
    scale_doc = None
    scale_label = None
    labels = [l for l, _ in impls]
    old_term = signal.getsignal(signal.SIGTERM)  # runs.start's: SIGTERM and SIGHUP act as Ctrl-C
    started = time.monotonic()
    status = 0
    try:
        singles = [plugin_runs.host_local_scenario(tmp, prefix), plugin_runs.loopback_scenario(prefix),
                   plugin_runs.bridge_scenario(tmp, prefix, opts.backend), plugin_runs.macvlan_scenario(tmp, prefix)] + [
                       plugin_runs.chained_scenario(k, tmp, prefix) for k in plugin_runs.CHAINED] + [
                       plugin_runs.static_scenario(v, prefix) for v in plugin_runs.STATIC_VERBS] + [
                       plugin_runs.dhcp_scenario(tmp, prefix)]
        meter = RssMeter()

        def single(sc: plugin_runs.Scenario) -> list[dict]:
            nb = not_built_for(impls, sc.plugins, opts.not_built)
            built = [(l, d) for l, d in impls if l not in nb]
            if not built:
                progress(f"{sc.name}: skipped, not built in any of {', '.join(d for _, d in impls)}")
                return []
            progress(f"{sc.name}, {opts.runs} runs ...")
            r = plugin_runs.measure(sc, built, opts.runs, meter)
            r["not_built"] = nb
            progress("  " + report.progress_line(r, labels))
            return [r]

        def shown(rs: list[dict]) -> list[dict]:
            for r in rs:
                progress("  " + report.progress_line(r, labels))
            return rs

        def scale_step() -> list[dict]:
            nonlocal scale_doc, scale_label
            plan = scale_plan(opts)
            if plan is None:
                progress("scale run skipped: nothing built to run")
                return []
            scale_label = plan.label
            progress(f"scale run (pods {opts.pods}; {plan.label} as ours) ...")
            rc, data = run_scale(opts, plan, command, None)
            if rc == 130:
                raise KeyboardInterrupt
            if rc != 0:
                raise RuntimeError(f"the scale run failed (exit {rc}; its output above says why)")
            scale_doc = report.scale_document(command, data)
            return scale.scale_rows(data, plan.label)

        steps = [(sc.key, sc.name, lambda sc=sc: single(sc)) for sc in singles]
        steps += [("chain", "chain, 1 pod (libcni)",
                   lambda: shown(chain.chain_rows(impls, opts.runs, f"{prefix}c-", tmp, opts.not_built,
                                                  opts.backend, progress))),
                  ("parallel", f"{opts.parallel_pods} parallel chains (libcni)",
                   lambda: shown(chain.parallel_rows(impls, opts.parallel_pods, opts.parallel_runs, f"{prefix}p-",
                                                     tmp, opts.not_built, opts.backend, running, progress))),
                  ("scale", "scale run", scale_step)]
        for key, name, step in steps:
            if key not in which:
                continue
            try:
                rows.extend(step())
            except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
                msg = " ".join(str(e).split())
                progress(f"{name}: failed: {msg}")
                errors.append({"key": key, "scenario": name, "error": msg})
                status = 1
            finally:
                if key in ("chain", "parallel"):  # their namespaces go now, not at the end
                    delete_netns(f"{prefix}{key[0]}-")
    except KeyboardInterrupt:
        progress("\ninterrupted; cleaning up")
        status = 130
    finally:
        cleanup_uninterrupted(old_term, cleanup, prefix, running, tmp)
    if status == 130:
        return status

    partly = {l: sorted({p for r in rows for p in r.get("not_built", {}).get(l, [])})
              for l in labels if l not in opts.not_built}
    partly = {l: ps for l, ps in partly.items() if ps}
    meta = {"command": command, "date": datetime.date.today().isoformat(), "nproc": os.cpu_count(),
            "kernel": os.uname().release, "runs": opts.runs, "dirs": opts.dirs,
            "not_built": sorted(opts.not_built), "missing_plugins": partly,
            "backend": opts.backend, "scale_ours": scale_label,
            "elapsed_s": round(time.monotonic() - started, 1)}
    md = report.markdown(rows, labels, meta, errors)
    print()
    print(md)
    if opts.report:
        with open(opts.report, "w") as f:
            f.write(md + "\n")
    if opts.json:
        report.write_json(opts.json, meta, labels, rows, errors, md, scale_doc)
    return status


if __name__ == "__main__":
    sys.exit(main())
