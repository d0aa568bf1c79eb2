"""The benchmark: our plugins against the reference ones, whole process, alternating in one run.

Run it as ``python -m conformance.bench`` (``make bench``); its usage is ``__main__``'s
docstring (and ``--help``), its latest figures are in the README's Performance section.

The modules, bottom up. Imports run one way: each imports only modules listed above it,
never one that imports it, neither at module level nor inside a function.

    proc         processes and namespaces: one plugin process run and timed
                 (exec_plugin), peak RSS (RssMeter), threads parked in a host namespace
                 that start processes there (NetnsThread), cleanup that a second Ctrl-C
                 cannot skip. Imports nothing of the package.
    plugin_runs  single-plugin scenarios (host-local, loopback, bridge+host-local), plugin
                 processes run directly; one report row per scenario.      <- proc
    chain        bridge+host-local -> portmap through libcni's Go driver: one pod (ADD,
                 CHECK, DEL), N pods at once; their report rows.    <- proc, conformance.libcni
    scale        chain ADD as pods accumulate on one bridge: the figures, and their rows
                 in the combined report.                                   <- proc
    report       the markdown table, targets, progress lines, JSON; the scale run's text
                 and plot.                                                 <- scale (its targets)
    __main__     the command line: options, which scenarios run, the run's namespaces and
                 temp directory and their cleanup.     <- all of the above, plugins (registry)

This file imports nothing, so importing one module of the package loads only what that
module imports (``conformance.bench.proc``: no other module of the package).

What every module keeps to:

* times are whole-process (fork or vfork, exec, start-up, work, exit), as a runtime
  experiences them; the implementations alternate, the order rotated every run, so a
  noisy machine slows all alike; the report gives medians;
* plugins work only in throwaway namespaces named with the run's unique prefix
  (``cnib-<random>-...``, the scale run ``cnibs-<random>-...``), never in the machine's
  own; those namespaces and the temp directories are removed at the end, on error, on
  Ctrl-C and on SIGTERM;
* a measurement, not a test: nothing asserts a time; a scenario that fails is reported in
  the table and the run goes on (exit status 1).
"""
