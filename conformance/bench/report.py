"""What the benchmark prints and writes: the markdown table, JSON, the scale run's text and plot.

The combined report is one table of rows (dicts; the scenario modules make them):
``key`` (the ``--only`` word), ``scenario``, ``unit`` ("ms" or "x"), ``values`` {label:
value or None}, optionally ``runs``, ``rss_kib``, ``not_built`` {label: missing plugins},
``failed`` {label: why, a footnote} and ``targets`` [{"what", "num", "den" (optional),
"limit"}]. Every row with times also gets the target "bin/source <= 1.2x" when both of
ours are measured. Labels are ``ours`` (source), ``ours-bin`` (binaries) and ``ref``.

Nothing here measures anything; this module imports only the scale run's targets.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics

from conformance.bench.scale import TARGET_GROWTH, TARGET_VS_REF

TITLES = {"ours": "ours (source)", "ours-bin": "ours (binaries)", "ref": "reference"}
SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹"
TARGET_BIN_VS_SOURCE = 1.2  # a self-contained binary at most 1.2x the launcher, per call


# ---- the combined table ---------------------------------------------------------------------

def fmt(v: float | None, unit: str, seconds: bool | None = None) -> str:
    """``v`` in ``unit`` ("ms" or "x"); ms as seconds when ``seconds`` (default: v >= 1 s)."""
    if v is None:
        return "—"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v / 1000:.2f} s" if (v >= 1000 if seconds is None else seconds) else f"{v:.1f} ms"


def ratio(row: dict, num: str, den: str) -> float | None:
    """``num``'s time over ``den``'s in a row of times (None if either is missing)."""
    v = row.get("values", {})
    if row.get("unit") != "ms" or v.get(num) is None or not v.get(den):
        return None
    return v[num] / v[den]


def targets_of(row: dict, labels: list[str]) -> list[dict]:
    """The row's targets, evaluated: [{"what", "limit", "value" (None: not measurable),
    "met" (None: not evaluated), "why"}]."""
    out = []
    for t in row.get("targets", []):
        if t["num"] not in labels or (t.get("den") and t["den"] not in labels):
            continue
        v = row["values"]
        if t.get("den"):
            value = v[t["num"]] / v[t["den"]] if v.get(t["num"]) is not None and v.get(t["den"]) else None
        else:
            value = v.get(t["num"])
        out.append({"what": t["what"], "limit": t["limit"], "value": value,
                    "met": None if value is None else value <= t["limit"],
                    "why": "" if value is not None else _absent(row, [t["num"], t.get("den")])})
    if row.get("unit") == "ms" and row.get("key") != "scale" and "ours" in labels and "ours-bin" in labels:
        value = ratio(row, "ours-bin", "ours")
        out.append({"what": "bin/source", "limit": TARGET_BIN_VS_SOURCE, "value": value,
                    "met": None if value is None else value <= TARGET_BIN_VS_SOURCE,
                    "why": "" if value is not None else _absent(row, ["ours-bin", "ours"])})
    return out


def _absent(row: dict, labels: list) -> str:
    nb = row.get("not_built", {})
    return "not built" if any(label and label in nb for label in labels) else "not measured"


def _target_text(t: dict) -> str:
    what, _, note = t["what"].partition(" (")
    head = f"{what} ≤ {t['limit']:g}x" + (f" ({note}" if note else "")
    if t["met"] is None:
        return f"{head}: {t['why']}"
    digits = 3 if abs(t["value"] - t["limit"]) < 0.005 else 2  # 1.204 is not "1.20x not met"
    return f"{head}: {t['value']:.{digits}f}x {'met' if t['met'] else '**not met**'}"


def markdown(rows: list[dict], labels: list[str], meta: dict, errors: list[dict] = ()) -> str:
    """One table: every row, each implementation, the ratios, RSS and targets; then the
    footnotes and one paragraph on how it was measured (``meta``: date, nproc, kernel,
    command, dirs, not_built, missing_plugins, backend, scale_ours)."""
    ratio_cols = [(n, d) for n, d in (("ours", "ref"), ("ours-bin", "ref"), ("ours-bin", "ours"))
                  if n in labels and d in labels]
    names = {"ours": "ours", "ours-bin": "bin", "ref": "ref"}
    head = (["scenario"] + [TITLES[l] for l in labels]
            + [f"{names[n]}/{'source' if d == 'ours' else names[d]}" for n, d in ratio_cols]
            + ["peak RSS MB (" + " / ".join(names[l] for l in labels) + ")", "targets"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fails = []  # footnotes, in order of appearance
    for r in rows:
        for why in r.get("failed", {}).values():
            if why not in fails:
                fails.append(why)

    def mark(r: dict, ls) -> str:
        return "".join(SUPERSCRIPTS[fails.index(r["failed"][l]) % len(SUPERSCRIPTS)]
                       for l in ls if l in r.get("failed", {}))

    for r in rows:
        cells = [r["scenario"]]
        secs = any(v >= 1000 for v in r["values"].values() if v is not None)  # one unit per row
        for l in labels:
            if l in r.get("not_built", {}):
                cells.append("not built")
            else:
                cells.append(fmt(r["values"].get(l), r["unit"], secs)
                             + (f" (fails{mark(r, [l])})" if l in r.get("failed", {}) else ""))
        for n, d in ratio_cols:
            x = ratio(r, n, d)
            cells.append("—" if x is None else f"{x:.2f}x{mark(r, [n, d])}")
        rss = r.get("rss_kib")
        cells.append(" / ".join(f"{rss[l] / 1024:.1f}" if rss.get(l) else "—" for l in labels) if rss else "—")
        cells.append("; ".join(_target_text(t) for t in targets_of(r, labels)) or "—")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{TITLES[l]}: `{meta['dirs'][l]}`"
             + (" (not built)" if l in meta.get("not_built", ()) else
                f" (not built there: {', '.join(meta['missing_plugins'][l])})" if l in meta.get("missing_plugins", {})
                else "") for l in labels]
    for e in errors:
        cells = [e["scenario"], f"**failed**: {e['error'][:400]}"] + [""] * (len(head) - 2)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    for i, why in enumerate(fails):
        lines.append(f"{SUPERSCRIPTS[i % len(SUPERSCRIPTS)]} {why}.")
    keys = {r["key"] for r in rows}
    how = []
    singles = {"host-local", "loopback", "bridge", "macvlan", "tuning", "bandwidth", "firewall", "static", "dhcp"}
    if keys & (singles | {"chain"}):
        runs = next(r["runs"] for r in rows if r["key"] in singles | {"chain"})
        how.append(f"single-pod rows: medians of {runs} run{'s' if runs != 1 else ''}, implementations alternating")
    if keys & singles:
        how.append("plugin rows: the plugin processes run directly, in a throwaway host namespace")
    if "macvlan" in keys:
        how.append("macvlan row: bridge mode on a veth end standing in for the NIC, host-local IPv4 lease")
    if keys & {"tuning", "bandwidth", "firewall"}:
        how.append("tuning/bandwidth/firewall rows: one pod per implementation (a veth pair, prevResult in "
                   "ADD and DEL as libcni sends it)")
    if "static" in keys:
        how.append("static rows: one call each, a dual-stack config for a pod (a veth pair) holding its addresses; "
                   "our CHECK reads them from the container's eth0, the reference's compares prevResult only")
    if "dhcp" in keys:
        how.append("dhcp row: bridge (not a gateway) execs dhcp; each implementation its own LAN (dnsmasq "
                   "--no-ping on the bridge) and its own daemon, already running")
    if keys & {"chain", "parallel"}:
        how.append("chain rows: bridge (isGateway, ipMasq, host-local) -> portmap (one host port, as "
                   "capability args) through libcni's Go driver (its start-up included), in a throwaway "
                   "host namespace per implementation")
    if "parallel" in keys:
        r = next(r for r in rows if r["key"] == "parallel")
        how.append(f"parallel rows: all pods' driver runs launched at once, wall time until the last exits, "
                   f"medians of {r['runs']} run{'s' if r['runs'] != 1 else ''} (after one warm-up)")
    if "scale" in keys:
        how.append(f"scale rows: conformance/bench/scale.py with {TITLES.get(meta.get('scale_ours'), 'ours')} as "
                   "its ours (pods added one by one, medians per checkpoint)")
    backend = meta.get("backend") or "each implementation's default (ours nftables, reference iptables)"
    lines.append(f"{meta['date']}, {meta['nproc']} CPUs, kernel {meta['kernel']}; `{meta['command']}`; "
                 "whole-process times; " + "; ".join(how) + f"; firewall backend: {backend}. "
                 + "; ".join(notes) + ".")
    return "\n".join(lines)


def progress_line(r: dict, labels: list[str]) -> str:
    """A row in one line, for the progress output."""
    parts = []
    for l in labels:
        parts.append(f"{l} " + ("not built" if l in r.get("not_built", {}) else fmt(r["values"].get(l), r["unit"])))
    x = ratio(r, "ours", "ref")
    return f"{r['scenario']}: " + ", ".join(parts) + (f" (ours/ref {x:.2f}x)" if x else "")


def write_json(path: str, meta: dict, labels: list[str], rows: list[dict], errors: list[dict], md: str,
               scale: dict | None) -> None:
    """Every figure of the combined run: ``meta``, the rows (with their targets evaluated),
    the errors, the markdown and the scale run's document (:func:`scale_document`)."""
    for r in rows:
        r["targets_evaluated"] = targets_of(r, labels)
    with open(path, "w") as f:
        json.dump({**meta, "impls": labels, "rows": rows, "errors": errors, "markdown": md, "scale": scale},
                  f, indent=2)


# ---- the scale run's own report ------------------------------------------------------------

def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def scale_text(data: dict, pods: list[int], backend: str | None, ours_dir: str, ref_dir: str) -> str:
    """The scale run's text report (conformance.bench.scale.run's figures ``data``): its
    checkpoints, the DEL median, its targets and how it ran."""
    by = data["impls"]
    total = pods[-1]
    lines = ["", ("chain ADD (bridge+host-local -> portmap), ms; first = median over pods 1..k, "
                  "last = median over pods N-k+1..N, k = max(5, 10% of N)"),
             f"{'impl':<5} {'pods N':>6} {'k':>4} {'first ms':>9} {'last ms':>9} {'last/first':>10} {'ours/ref':>9}"]
    for name, im in by.items():
        for r in im["checkpoints"]:
            vs = f"{r['ours_over_ref']:.2f}x" if "ours_over_ref" in r else ""
            lines.append(f"{name:<5} {r['pods']:>6} {r['window']:>4} {r['first_ms']:>9.1f} {r['last_ms']:>9.1f} "
                         f"{r['growth']:>9.2f}x {vs:>9}")
    lines.append("")
    lines.append("chain DEL (portmap, then bridge+host-local), median over all pods: " + ", ".join(
        f"{name} {statistics.median(im['del_ms']):.1f} ms" for name, im in by.items())
        + (f"; ours/ref {statistics.median(by['ours']['del_ms']) / statistics.median(by['ref']['del_ms']):.2f}x"
           if len(by) == 2 else ""))

    lo, hi = pods[0], pods[-1]
    lines.append("")
    lines.append(f"targets (defined for 10 and 500 pods; evaluated here at {lo} and {hi}):")
    if "ours" in by:
        a, b = by["ours"]["checkpoints"][0]["last_ms"], by["ours"]["checkpoints"][-1]["last_ms"]
        if lo == hi:
            lines.append(f"  ours growth: not evaluated (one checkpoint; give two, e.g. --pods 10,{hi})")
        else:
            lines.append(f"  ours at {hi} / ours at {lo}: {b:.1f} / {a:.1f} ms = {b / a:.2f}x "
                         f"(target <= {TARGET_GROWTH}x) {_verdict(b / a <= TARGET_GROWTH)}")
        if "ref" in by:
            r = by["ref"]["checkpoints"][-1]["last_ms"]
            lines.append(f"  ours at {hi} / ref at {hi}: {b:.1f} / {r:.1f} ms = {b / r:.2f}x "
                         f"(target <= {TARGET_VS_REF}x) {_verdict(b / r <= TARGET_VS_REF)}")
        else:
            lines.append("  ours vs ref: not evaluated (ref not in --impls)")
    else:
        why = "not built" if "ours" in data["not_built"] else "not in --impls"
        lines.append(f"  not evaluated: ours {why}")
    backends = backend or ("each implementation's default "
                           "(ours: nftables if nft works; ref 1.1.1: iptables)")
    lines.append(f"(firewall backend: {backends}; {len(by)} x {total} pods, alternating; "
                 f"run took {data['elapsed_s']:.0f} s; ours={ours_dir}, ref={ref_dir})")
    return "\n".join(lines)


def scale_document(command: str, data: dict) -> dict:
    """The scale run's JSON document: the command, then its figures."""
    return {"command": command, "elapsed_s": data["elapsed_s"], "not_built": data["not_built"],
            "impls": data["impls"]}


def write_scale_json(path: str, command: str, data: dict) -> None:
    """The scale run's figures (:func:`scale_document`) to ``path``."""
    with open(path, "w") as f:
        json.dump(scale_document(command, data), f, indent=2)


def rolling_median(ys: list[float], w: int) -> list[float]:
    """The median of each point's window of ``w`` around it."""
    h = w // 2
    return [statistics.median(ys[max(0, i - h):i + h + 1]) for i in range(len(ys))]


def plot_scale(data: dict, pods: list[int], path: str, command: str) -> None:
    """PNG of every pod's chain ADD per implementation (points and a rolling median), the
    checkpoints marked; says so and returns when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print("plot skipped: matplotlib is not installed (`make bench` installs it, or "
              "`.venv/bin/pip install -e '.[bench]'`)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = f"CNI chain ADD latency vs pods on one bridge — {datetime.date.today().isoformat()}\n{command}"
    colours = {"ours": "tab:blue", "ref": "tab:orange"}
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    for name, im in data["impls"].items():
        xs = list(range(1, len(im["add_ms"]) + 1))
        c = colours.get(name)
        ax.scatter(xs, im["add_ms"], s=9, alpha=0.3, color=c, linewidths=0)
        w = max(5, len(xs) // 25) | 1
        ax.plot(xs, rolling_median(im["add_ms"], w), color=c, linewidth=2,
                label=f"{name} ({im['bin_dir']}), rolling median of {w}")
    for n in pods:
        ax.axvline(n, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("pods on the bridge (index of the pod being added)")
    ax.set_ylabel("chain ADD latency, ms (bridge+host-local, then portmap)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"plot written to {os.path.abspath(path)}")
