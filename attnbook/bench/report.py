"""Output of the benchmark suite: ``results.json``, the text table and the plots."""

from __future__ import annotations

import json
import math
import os

METRICS = (  # (title, row key, format)
    ("time (ms)", "time_s", lambda x: f"{x * 1e3:.3g}"),
    ("GFLOP/s", "gflops", lambda x: f"{x:.3g}"),
    ("fraction of same-run GEMM", "gemm_fraction", lambda x: f"{x:.2f}"),
    (
        "peak extra memory (MiB)",
        "peak_mem_bytes",
        lambda x: f"{x / 2**20:.3g}" if x else "n/a",
    ),
    ("max abs error vs float64", "max_abs_err", lambda x: f"{x:.1e}"),
)


def can_plot():
    """True when matplotlib can be imported (the plots need it; the JSON and the
    table do not)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _finite(x):
    """JSON has no NaN or infinity: such floats (an output that overflowed,
    ``--max-seconds inf``) become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def write(res, folder, plots=True):
    """Write ``results.json`` (and the same file as ``<device>-<date>.json``, the
    name it is shipped under in ``attnbook/data/bench``) and, with ``plots``,
    ``time_<dtype>.png``, ``gflops_<dtype>.png``, ``memory_<dtype>.png`` into
    ``folder``; returns the paths written. NaN and infinite numbers are written as
    null (strict JSON)."""
    text = json.dumps(_finite(res), indent=1, allow_nan=False)
    paths = []
    for name in ("results.json", f"{res['meta']['device']}-{res['meta']['date']}.json"):
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(text + "\n")
        paths.append(path)
    if plots:
        paths += plot(res, folder)
    return paths


def _fmt(value, fmt):
    return "n/a" if value is None else fmt(value)


def _mem(ratio):
    """A memory ratio as "1/30"; "n/a" where a side was not measured (None) or
    measured as nothing (0)."""
    if not ratio:
        return "n/a"
    return f"1/{1 / ratio:.0f}" if ratio < 0.5 else f"x{ratio:.2f}"


def _verdict(check):
    return {True: "met", False: "NOT met", None: "not judged at this size"}[
        check["met"]
    ]


def _check_line(c):
    head = f"  {c['scenario']:<9} {c['framework']:<10} {c['dtype']} N={c['N']:<6}"
    kind = c["check"]
    if kind == "sdpa_vs_peer":
        body = f"attnbook SDPA / {c['peer']}: time x{c['time_ratio']:.2f}"
    elif kind == "flash_vs_naive":
        mem, time = _mem(c["mem_ratio"]), c["time_ratio"]
        body = f"flash / {c['naive']}: memory {mem}, time x{time:.2f}"
    elif kind == "gemm_fraction":
        body = f"{c['impl']}: {c['fraction']:.2f} of GEMM"
    elif kind == "window_linear":
        body = f"{c['impl']}: time(16384) / time(4096) = {c['time_ratio']:.2f}"
    elif kind == "gqa_memory":
        body = f"{c['impl']}: peak memory {_mem(c['mem_ratio'])} of mha32's"
    else:
        mem, time = _mem(c["mem_ratio"]), c["time_ratio"]
        body = f"SDPA / keras_dpa: memory {mem}, time x{time:.2f}"
    return f"{head} {body}  {_verdict(c)}"


def table(res):
    """The results as text: for each scenario, dtype and metric, implementations as
    rows and N as columns; then the targets with their thresholds. "skip" is a row
    that did not run (the reason is listed), "n/a" a metric that was not measured."""
    rows = res["results"]
    lines = []
    for scenario in list(dict.fromkeys(r.get("scenario", "mha") for r in rows)):
        for dtype in sorted({r["dtype"] for r in rows}):
            sub = [
                r
                for r in rows
                if r["dtype"] == dtype and r.get("scenario", "mha") == scenario
            ]
            if not sub:
                continue
            sizes = sorted({r["N"] for r in sub})
            impls = list(dict.fromkeys(r["impl"] for r in sub))
            cell = {(r["impl"], r["N"]): r for r in sub}
            width = max(len(i) for i in impls) + 2
            first = sub[0]
            for title, key, fmt in METRICS:
                lines.append(
                    f"\n{title} -- {scenario}, {dtype}, d={first['d']}, "
                    f"B={first['B']}, "
                    f"causal={first['causal']}, H per N: "
                    + ", ".join(f"{n}:{cell[(impls[0], n)]['H']}" for n in sizes)
                )
                lines.append(
                    "impl".ljust(width) + "".join(f"{'N=' + str(n):>11}" for n in sizes)
                )
                for impl in impls:
                    vals = []
                    for n in sizes:
                        r = cell.get((impl, n))
                        vals.append(
                            "skip"
                            if r is None or r["status"] != "ok"
                            else _fmt(r[key], fmt)
                        )
                    lines.append(impl.ljust(width) + "".join(f"{v:>11}" for v in vals))
    skipped = {(r["impl"], r["status"]) for r in rows if r["status"] != "ok"}
    if skipped:
        lines.append("\nskipped:")
        lines += [f"  {impl}: {why}" for impl, why in sorted(skipped)]
    if res.get("checks"):
        from .suite import TARGETS

        judged = [c for c in res["checks"] if c["met"] is not None]
        lines.append("\ntargets:")
        for kind in dict.fromkeys(c["check"] for c in res["checks"]):
            lines.append(f" {kind}: {TARGETS[kind]}")
            lines += [_check_line(c) for c in judged if c["check"] == kind]
        if len(judged) < len(res["checks"]):
            lines.append(
                f" {len(res['checks']) - len(judged)} comparisons at sizes "
                f"below those the targets are set "
                "for (N >= 1024; 4096 or 16384 where a target says so) are in "
                "results.json, not judged"
            )
    return "\n".join(lines)


def plot(res, folder):
    """Time vs N (log-log), GFLOP/s vs N and peak memory vs N (log-log), one figure
    per dtype and metric."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            f"the plots need matplotlib ({err}); install it, or write the "
            f"JSON only with "
            "write(..., plots=False)"
        ) from None

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    paths = []
    rows = [r for r in res["results"] if r["status"] == "ok"]
    for dtype in sorted({r["dtype"] for r in rows}):
        sub = [r for r in rows if r["dtype"] == dtype]
        impls = list(dict.fromkeys(r["impl"] for r in sub))
        for stem, key, label, logy, scale in (
            ("time", "time_s", "time per call (s)", True, 1.0),
            ("gflops", "gflops", "GFLOP/s", False, 1.0),
            ("memory", "peak_mem_bytes", "peak extra memory (MiB)", True, 2**-20),
        ):
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for i, impl in enumerate(impls):
                pts = sorted(
                    (r["N"], r[key] * scale)
                    for r in sub
                    if r["impl"] == impl and r[key] is not None and r[key] > 0
                )
                if pts:  # attnbook solid, the frameworks' own dashed
                    style = "-" if "attnbook" in impl else "--"
                    ax.plot(
                        *zip(*pts, strict=False),
                        style,
                        marker="o",
                        color=plt.cm.tab20(i % 20),
                        label=impl,
                    )
            ax.set_xscale("log", base=2)
            if logy:
                ax.set_yscale("log")
            ax.set_xlabel("sequence length N")
            ax.set_ylabel(label)
            meta = res["meta"]
            ax.set_title(
                f"{label} -- {dtype}, {meta['device']} "
                f"({meta['device_name']}), {meta['date']}",
                fontsize=9,
            )
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
            fig.tight_layout()
            path = os.path.join(folder, f"{stem}_{dtype}.png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths
