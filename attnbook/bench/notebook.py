"""What the efficiency chapter of the book measures with: a timing harness, peak memory,
slopes, tables and plots.

The chapter times small problems live (milliseconds each, on a machine shared with other
programs) and reads the large ones from the shipped benchmark
(:func:`attnbook.bench.load_results`). The harness and the table rendering live here,
tested, so that the page shows its measurements and not its plumbing:

* :func:`interleaved_medians` times functions over sizes, interleaved, keeping medians;
* :func:`peak_extra_bytes` measures a NumPy call with ``tracemalloc``, as the suite;
* :func:`loglog_slope` fits the exponent of a power law;
* :func:`markdown_table` writes a GitHub-flavoured Markdown table (for
  ``display(Markdown(...))``);
* :func:`run_summary`, :func:`bench_rows`, :func:`grid_table`, :func:`scenario_tables`
  and :func:`check_lines` turn a results dict into the sentences and tables of the page;
* :func:`series`, :func:`log2_ticks` and :func:`plot_roofline` help draw its figures.

Result files of schema 1 written before the suite had scenarios have no ``scenario`` key
in their rows: they are all the square multi-head case, and are read as ``"mha"``.

Importing this module imports NumPy only; the plot helpers import matplotlib when they
are called, and PyTorch is imported only to synchronise a GPU.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from . import report, suite

__all__ = [
    "interleaved_medians",
    "peak_extra_bytes",
    "loglog_slope",
    "markdown_table",
    "mib",
    "run_summary",
    "bench_rows",
    "grid_table",
    "scenario_tables",
    "check_lines",
    "series",
    "log2_ticks",
    "plot_roofline",
]


def _cuda_sync():
    import torch

    torch.cuda.synchronize()


def interleaved_medians(fns, sizes, repeats=7, warmup=True, cuda=False):
    """Median seconds of ``fns[name](n)`` for every name and size ``n``.

    Each repeat visits every size and every function once, so that a burst of load
    from other programs on a shared machine hits all of them alike instead of
    spoiling one point. On a CPU the clock is this process's CPU time
    (``time.process_time``), which does not count the time other programs ran; with
    ``cuda=True`` it is the wall clock, read after synchronising the GPU, because GPU
    kernels run asynchronously. ``warmup`` first calls each function once per size,
    untimed (first calls allocate memory and pick kernels).

    Returns:
        ``{name: array of medians, one per size}``.
    """
    sync = _cuda_sync if cuda else (lambda: None)
    clock = time.perf_counter if cuda else time.process_time
    if warmup:
        for fn in fns.values():
            for n in sizes:
                fn(n)
    runs = {(name, n): [] for name in fns for n in sizes}
    for _ in range(repeats):
        for n in sizes:
            for name, fn in fns.items():
                sync()
                t0 = clock()
                fn(n)
                sync()
                runs[name, n].append(clock() - t0)
    return {name: np.array([np.median(runs[name, n]) for n in sizes]) for name in fns}


def peak_extra_bytes(fn):
    """Peak bytes NumPy allocates while ``fn()`` runs, beyond what was allocated before.

    The benchmark's NumPy measurement (``tracemalloc``: NumPy reports its buffers to it,
    PyTorch does not), without the full garbage collection the suite runs first: that
    costs about a tenth of a second a call, and a page measures dozens of calls.
    """
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return int(peak - base)


def loglog_slope(x, y):
    """The exponent ``p`` of a power law ``y ~ x**p``, least squares on log-log axes."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(
            "need two 1-D arrays of the same length >= 2, "
            f"got shapes {x.shape} and {y.shape}"
        )
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("a power law is fitted to positive numbers only")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _escape(cell):
    return str(cell).replace("|", "\\|").replace("\n", " ")


def markdown_table(header, rows, align=None):
    """A GitHub-flavoured Markdown table.

    ``header`` is a list of column titles, ``rows`` a list of lists of cells (anything
    ``str`` accepts; a ``|`` inside a cell is escaped), ``align`` a string of ``l``,
    ``r`` or ``c`` per column (default: the first column left, the others right).
    """
    header = list(header)
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align has {len(align)} letters for {len(header)} columns")
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(map(_escape, header)) + " |",
        "|" + "|".join(rule[a] for a in align) + "|",
    ]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(
                f"a row has {len(row)} cells for {len(header)} columns: {row}"
            )
        lines.append("| " + " | ".join(map(_escape, row)) + " |")
    return "\n".join(lines)


def mib(nbytes):
    """Bytes as MiB (GiB from 1 GiB on); "n/a" for a memory not measured (None)."""
    if nbytes is None:
        return "n/a"
    return (
        f"{nbytes / 2**20:,.1f} MiB" if nbytes < 2**30 else f"{nbytes / 2**30:,.2f} GiB"
    )


def _ms(seconds):
    return f"{seconds * 1e3:,.2f} ms"


def _scenario(row):
    return row.get("scenario", "mha")


def run_summary(res):
    """A paragraph of Markdown: where, when and with what a run was measured."""
    meta, rows = res["meta"], res["results"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    gemm = ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in meta["gemm_gflops"].items())
    text = (
        f"Measured on **{meta['device_name']}** ({meta['device']}, "
        f"{meta['threads']} threads, {meta['platform']}, Python {meta['python']}) "
        f"on **{meta['date']}**, with {versions}. "
        f"Matrix-product rate of that run: {gemm}. "
    )
    load = meta.get("load_average") or {}
    if load.get("start") and load.get("end"):
        text += (
            "Load average (1 min) at the start and end of the run: "
            f"{load['start'][0]:.1f} and {load['end'][0]:.1f}. "
        )
    ok = sum(r["status"] == "ok" for r in rows)
    scenarios = list(dict.fromkeys(_scenario(r) for r in rows))
    return text + (
        f"{ok} measurements, {len(rows) - ok} skipped, scenarios: "
        + ", ".join(f"`{s}`" for s in scenarios)
        + "."
    )


def bench_rows(res, scenario="mha", dtype="float32", causal=False, per_head=True):
    """The rows of one scenario and dtype that ran (``status`` "ok"), in run order.

    With ``per_head`` (for the ``mha`` scenario, whose heads per call vary with N) time
    and memory are divided by ``B * H``, so that every number is for one (batch, head)
    slice; the other scenarios fix their heads and are read per call
    (``per_head=False``). ``causal`` selects the causal or the unmasked rows; None keeps
    both (``window256`` and ``decode`` are causal by definition).
    """
    out = []
    for r in res["results"]:
        if (
            _scenario(r) != scenario
            or r["dtype"] != dtype
            or r["status"] != "ok"
            or (causal is not None and bool(r["causal"]) != causal)
        ):
            continue
        if per_head:
            n = r["B"] * r["H"]
            mem = r["peak_mem_bytes"]
            r = dict(
                r,
                time_s=r["time_s"] / n,
                peak_mem_bytes=None if mem is None else mem / n,
            )
        out.append(r)
    return out


def grid_table(rows, title, fmt):
    """Implementations as rows, sizes N as columns, ``fmt(row)`` in each cell.

    A cell is "–" where the implementation did not run at that size.
    """
    sizes = sorted({r["N"] for r in rows})
    cell = {(r["impl"], r["N"]): r for r in rows}
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    body = [
        [f"`{name}`"]
        + [fmt(cell[name, n]) if (name, n) in cell else "–" for n in sizes]
        for name in impls
    ]
    return markdown_table([title] + [f"N = {n}" for n in sizes], body)


def _of_gemm(r):
    x = r.get("gemm_fraction")
    if x is None:
        return ""
    return f" ({x:.0%} of GEMM)" if x >= 0.095 else f" ({x:.1%} of GEMM)"


def _window_table(rows):
    sizes = sorted({r["N"] for r in rows})
    cell = {(r["impl"], r["N"]): r for r in rows}
    lo, hi = sizes[0], sizes[-1]
    body = []
    for name in dict.fromkeys(r["impl"] for r in rows):
        times = [
            _ms(cell[name, n]["time_s"]) if (name, n) in cell else "–" for n in sizes
        ]
        grow = (
            "–"
            if (name, lo) not in cell or (name, hi) not in cell or lo == hi
            else f"{cell[name, hi]['time_s'] / cell[name, lo]['time_s']:.1f}"
        )
        body.append([f"`{name}`", *times, grow])
    head = (
        ["implementation"] + [f"N = {n}" for n in sizes] + [f"time({hi}) / time({lo})"]
    )
    note = (
        f"Linear time makes the last column {hi // lo}, "
        f"quadratic time {(hi // lo) ** 2}."
        if lo != hi
        else ""
    )
    return markdown_table(head, body), note


def _memory_table(groups):
    """Peak memory of each implementation in the 32-head MHA, GQA and MQA scenarios."""
    sizes = sorted({r["N"] for rows in groups.values() for r in rows})
    n = sizes[-1]
    cell = {
        (sc, r["impl"]): r for sc, rows in groups.items() for r in rows if r["N"] == n
    }
    names = list(dict.fromkeys(impl for (_, impl) in cell))
    body = []
    for name in names:
        base = cell.get(("mha32", name), {}).get("peak_mem_bytes")
        cells = []
        for sc in groups:
            mem = cell.get((sc, name), {}).get("peak_mem_bytes")
            ratio = (
                f" (×{mem / base:.2f})"
                if mem is not None and base and sc != "mha32"
                else ""
            )
            cells.append("–" if (sc, name) not in cell else mib(mem) + ratio)
        body.append([f"`{name}`", *cells])
    head = [f"peak extra memory at N = {n}"] + [f"`{sc}`" for sc in groups]
    return markdown_table(
        head, body
    ), "In parentheses: the ratio to the same implementation's `mha32` row."


def _decode_table(rows):
    sizes = sorted({r["N"] for r in rows})
    cell = {(r["impl"], r["N"]): r for r in rows}
    body = [
        [f"`{name}`"]
        + [
            (_ms(cell[name, n]["time_s"]) + _of_gemm(cell[name, n]))
            if (name, n) in cell
            else "–"
            for n in sizes
        ]
        for name in dict.fromkeys(r["impl"] for r in rows)
    ]
    head = ["one query, N cached keys"] + [f"N = {n}" for n in sizes]
    return markdown_table(head, body), (
        "Time per call for all heads; in parentheses the rate as a "
        "fraction of the run's GEMM rate."
    )


def scenario_tables(res, dtype="float32"):
    """Tables of the scenario rows of a results dict: ``[(title, table, note)]``.

    * ``window256``: time against N, and its growth from the smallest to the largest N
      (linear time: the ratio of the sizes; quadratic: its square);
    * ``mha32``, ``gqa32x8``, ``mqa32``: peak extra memory at the largest N, and its
      ratio to the 32-head MHA row of the same implementation;
    * ``decode``: time per call against N, with the fraction of the GEMM rate reached;
    * any other scenario (``3d``, ``5d``): time per call against N.

    An empty list when the results have only the square multi-head scenario (``mha``).
    """
    rows = [
        r
        for r in res["results"]
        if r["status"] == "ok" and r["dtype"] == dtype and _scenario(r) != "mha"
    ]
    by = {}
    for r in rows:
        by.setdefault(_scenario(r), []).append(r)
    out = []
    if "window256" in by:
        table, note = _window_table(by.pop("window256"))
        out.append(("`window256`: a causal sliding window of 256 keys", table, note))
    groups = {sc: by.pop(sc) for sc in ("mha32", "gqa32x8", "mqa32") if sc in by}
    if groups:
        table, note = _memory_table(groups)
        out.append(
            (
                "grouped heads: 32 query heads with 32, 8 or 1 key/value heads",
                table,
                note,
            )
        )
    if "decode" in by:
        table, note = _decode_table(by.pop("decode"))
        out.append(("`decode`: one query against N cached keys, 32 heads", table, note))
    for sc, sub in by.items():
        out.append(
            (
                f"`{sc}`",
                grid_table(sub, "time per call", lambda r: _ms(r["time_s"])),
                "",
            )
        )
    return out


def check_lines(res, exclude=()):
    """The suite's targets that a results dict can judge (``met`` True or False).

    One line each, in the suite's own wording, leaving out the scenarios in ``exclude``.
    """
    found = [
        c
        for c in suite.checks(res)
        if c["met"] is not None and c["scenario"] not in exclude
    ]
    return [report._check_line(c) for c in found]


def series(rows, impl, key, scale=1.0):
    """``(N, value * scale)`` arrays of one implementation, where it was measured."""
    pts = sorted((r["N"], r[key]) for r in rows if r["impl"] == impl and r.get(key))
    n = np.array([p[0] for p in pts], dtype=float)
    return n, np.array([p[1] for p in pts], dtype=float) * scale


def log2_ticks(ax, sizes):
    """Label a log x axis at the powers of two among ``sizes``, and nowhere else."""
    sizes = np.asarray(sizes, dtype=int)
    ticks = sizes[(sizes & (sizes - 1)) == 0]
    from matplotlib.ticker import NullLocator

    ax.set_xticks(ticks, [str(n) for n in ticks], minor=False)
    ax.xaxis.set_minor_locator(NullLocator())


def plot_roofline(ax, pi, bw, points, measured=True, unit="GFLOP/s"):
    """Draw the roofline ``min(pi, bw * I)`` on log-log axes, its ridge and points.

    ``pi`` is the peak rate in FLOP/s, ``bw`` the bandwidth in bytes/s, ``points`` is
    ``{label: (I, FLOP/s)}`` with ``I`` in FLOPs per byte; rates are drawn in ``unit``
    (GFLOP/s or TFLOP/s). ``measured`` chooses the marker: circles for measured rates,
    squares for rates read off the roof.
    """
    scale = {"GFLOP/s": 1e9, "TFLOP/s": 1e12}[unit]
    ridge = pi / bw
    intensities = [i for i, _ in points.values()]
    x = np.geomspace(
        min([*intensities, ridge]) / 4, max([*intensities, ridge]) * 4, 200
    )
    ax.loglog(
        x, np.minimum(pi, bw * x) / scale, "k-", lw=1.5, label="roof: min(π, BW·I)"
    )
    ax.axvline(ridge, color="0.5", ls=":", lw=1)
    ax.annotate(
        f"ridge π/BW = {ridge:.3g}",
        (ridge, pi / scale),
        xytext=(6, -14),
        textcoords="offset points",
        fontsize=9,
    )
    marker = "o" if measured else "s"
    for k, (label, (i, rate)) in enumerate(points.items()):
        ax.loglog(i, rate / scale, marker, ms=7, color=f"C{k}", label=label)
    ax.set(xlabel="arithmetic intensity I (FLOP per byte)", ylabel=unit)
    ax.legend(fontsize=8, loc="lower right")
