"""``python -m conformance --cni-path DIR [--plugins a,b] [--suites a,b] [--runtime cri] [--report out.html] [--junit out.xml] [--json out.json]``

Runs the conformance checks against the CNI plugins in DIR and exits non-zero if any
check fails (expected deviations and not-applicable checks do not fail the run).
Needs root (it makes network namespaces) and, for the libcni checks, Debian's golang-go
and golang-github-appc-cni-dev.

``--suites interface,lifecycle`` runs only those suites (``checks/test_<suite>.py``): a
shorter run where time is dear (an emulated VM), e.g. an interface plugin's own checks and
the differential ones (in ``lifecycle``).

``--runtime cri`` runs only the CRI lane instead (``lanes/test_cri.py``): the plugin set in
DIR (bridge, host-local, portmap, loopback; bandwidth from ``--reference`` when DIR has
none) under a private containerd driven through CRI as kubelet drives it; needs Debian's
containerd and runc. Its per-call medians are printed under "measurements".
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LANES = {"cri": os.path.join(HERE, "lanes", "test_cri.py")}  # --runtime NAME -> its checks


def suites() -> list[str]:
    """The suites of checks (``checks/test_<suite>.py``), by name."""
    return sorted(f[5:-3] for f in os.listdir(os.path.join(HERE, "checks"))
                  if f.startswith("test_") and f.endswith(".py"))


def main(argv: list[str] | None = None) -> int:
    from conformance.kernel import PROBES
    ap = argparse.ArgumentParser(prog="python -m conformance", description="CNI plugin conformance checks")
    ap.add_argument("--cni-path", required=True, help="directory of the plugin binaries under test")
    ap.add_argument("--plugins", default="", help="comma-separated plugin types (default: every known type in DIR)")
    ap.add_argument("--report", default="", help="write an HTML report (plugin x check) here")
    ap.add_argument("--junit", default="", help="write JUnit XML here")
    ap.add_argument("--json", default="", help="write the JSON report here: verdicts, checks, failures with "
                    "reproductions (schema: conformance/report.py)")
    ap.add_argument("--implementation", default="", help="deviation profile (default: 'reference' for /usr/lib/cni)")
    ap.add_argument("--reference", default="/usr/lib/cni", help="reference plugins for differential checks ('' to disable)")
    ap.add_argument("--suites", default="",
                    help=f"comma-separated suites to run (default all): {', '.join(suites())}")
    ap.add_argument("--runtime", choices=sorted(LANES), default="",
                    help="run only this runtime lane's checks (the plugin set under a real runtime)")
    ap.add_argument("--config", default="", help="a network config or conflist for the plugins under test, "
                    "with placeholders the harness fills per check (${subnet4}, ${bridge}, ${dataDir}, ...; "
                    "see conformance/given.py): every applicable check runs on a plugin it has no profile for")
    ap.add_argument("--kind", default="", choices=["", "interface", "ipam", "chained", "meta", "loopback"],
                    help="the kind of --config's plugin when the harness cannot tell (meta = chained)")
    ap.add_argument("--single-attachment", default="", metavar="REASON",
                    help="--config serves one attachment at a time (e.g. 'one device per config'): the checks "
                    "that hold several attachments of it at once are not applicable, with REASON")
    ap.add_argument("--needs-kernel", default="", choices=["", *PROBES], metavar="FEATURE",
                    help=f"--config's plugins need this kernel feature ({', '.join(PROBES)}): on a kernel "
                    "without it, the checks that need a working config are not applicable, with the kernel's reason")
    ap.add_argument("-k", default="", help="only checks matching this pytest expression")
    ap.add_argument("-q", action="store_true", help="quieter output")
    opts = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("conformance: must run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    import pytest

    if opts.runtime:
        checks = [LANES[opts.runtime]]
    elif opts.suites:
        wanted = [w.strip() for w in opts.suites.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in suites()]
        if unknown:
            print(f"conformance: unknown suite(s) {', '.join(unknown)}; known: {', '.join(suites())}", file=sys.stderr)
            return 2
        checks = [os.path.join(HERE, "checks", f"test_{w}.py") for w in wanted]
    else:
        checks = [os.path.join(HERE, "checks")]
    args = [*checks, "-c", os.path.join(HERE, "pytest.ini"), "--rootdir", HERE,
            "-p", "conformance.plugin", "--cni-path", os.path.abspath(opts.cni_path),
            "--cni-reference", opts.reference, "-rfEX"]
    if opts.runtime:
        args += ["--cni-runtime", opts.runtime]
    if opts.plugins:
        args += ["--cni-plugins", opts.plugins]
    if opts.implementation:
        args += ["--cni-implementation", opts.implementation]
    if opts.report:
        args += ["--cni-report", os.path.abspath(opts.report)]
    if opts.junit:
        args += ["--junitxml", os.path.abspath(opts.junit)]
    if opts.json:
        args += ["--cni-json", os.path.abspath(opts.json)]
    if opts.config:
        args += ["--cni-config", os.path.abspath(opts.config)]
    if opts.kind:
        args += ["--cni-kind", opts.kind]
    if opts.single_attachment:
        args += ["--cni-single-attachment", opts.single_attachment]
    if opts.needs_kernel:
        args += ["--cni-needs-kernel", opts.needs_kernel]
    if opts.k:
        args += ["-k", opts.k]
    if opts.q:
        args += ["-q"]
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main())
