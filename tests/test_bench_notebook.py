"""attnbook.bench.notebook: the harness, tables and plots of the efficiency chapter.

The chapter reads the shipped benchmark, which may be an old file (rows without a
``scenario`` key) or a new one with scenario rows; both are tested here on small results
dicts built by hand, so that the page's tables do not depend on which file is shipped.
"""

import subprocess
import sys

import numpy as np
import pytest

from attnbook import bench
from attnbook.bench import notebook as bn
from attnbook.bench import suite


def row(impl, n, scenario="mha", **kw):
    """A results row as the suite writes it (schema 1).

    ``scenario=None`` leaves the key out, as files written before the scenarios do.
    """
    r = {
        "impl": impl,
        "framework": impl.split("/")[0],
        "op": "flash" if impl.endswith("_flash") else "sdpa",
        "N": n,
        "d": 64,
        "B": 1,
        "H": 1,
        "dtype": "float32",
        "causal": False,
        "device": "cpu",
        "times_s": [1e-3],
        "time_s": 1e-3,
        "gflops": 10.0,
        "gemm_fraction": 0.5,
        "peak_mem_bytes": 2**20,
        "mem_method": "tracemalloc",
        "max_abs_err": 1e-7,
        "status": "ok",
    }
    if scenario is not None:
        r["scenario"] = scenario
    r.update(kw)
    return r


META = {
    "suite": "attnbook.bench",
    "schema": 1,
    "date": "2026-01-02",
    "device": "cpu",
    "device_name": "Test CPU",
    "threads": 2,
    "platform": "Linux",
    "python": "3.11.0",
    "versions": {"numpy": "2.0"},
    "gemm_gflops": {"numpy/float32": 100.0},
}


def results(rows, **meta):
    return {"meta": dict(META, **meta), "results": rows}


# ------------------------------------------------------------------------- the harness


def test_interleaved_medians_interleaves_and_takes_medians():
    calls = []
    fns = {"a": lambda n: calls.append(("a", n)), "b": lambda n: calls.append(("b", n))}
    out = bn.interleaved_medians(fns, [1, 2], repeats=3)
    assert set(out) == {"a", "b"} and all(
        v.shape == (2,) and (v >= 0).all() for v in out.values()
    )
    warm, timed = calls[:4], calls[4:]
    assert sorted(warm) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    # each repeat visits every size and every function once, in the same order
    assert timed == [("a", 1), ("b", 1), ("a", 2), ("b", 2)] * 3


def test_interleaved_medians_without_warmup_and_with_cpu_time():
    calls = []
    out = bn.interleaved_medians(
        {"busy": lambda n: calls.append(sum(range(n)))},
        [10_000],
        repeats=5,
        warmup=False,
    )
    assert len(calls) == 5 and out["busy"][0] > 0


def test_peak_extra_bytes_measures_what_numpy_allocates():
    nbytes = bn.peak_extra_bytes(lambda: np.ones(2**18))  # 2 MiB of float64
    assert 2 * 2**20 <= nbytes < 3 * 2**20
    assert bn.peak_extra_bytes(lambda: None) < 2**16

    # the same number as the suite's measurement of the same call
    def call():
        return np.ones((512, 512)) @ np.ones((512, 512))

    suite_bytes = suite._peak_memory(call, "numpy", "cpu")[1]
    assert abs(bn.peak_extra_bytes(call) - suite_bytes) < 2**16


def test_loglog_slope_recovers_exponents_and_refuses_bad_input():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert bn.loglog_slope(x, 3 * x**2) == pytest.approx(2.0)
    assert bn.loglog_slope(x.tolist(), (1 / x).tolist()) == pytest.approx(-1.0)
    for bad in ((x, x[:3]), (x[:1], x[:1]), (x, -x), (np.zeros(2), np.ones(2))):
        with pytest.raises(ValueError):
            bn.loglog_slope(*bad)


# ------------------------------------------------------------------------------ tables


def test_markdown_table_is_gfm_and_escapes_pipes():
    table = bn.markdown_table(["name", "value"], [["a|b", 1], ["c", 2.5]])
    assert table.splitlines() == [
        "| name | value |",
        "|---|---:|",
        "| a\\|b | 1 |",
        "| c | 2.5 |",
    ]
    assert (
        bn.markdown_table(["x", "y", "z"], [], align="lcr").splitlines()[1]
        == "|---|:---:|---:|"
    )
    with pytest.raises(ValueError, match="align"):
        bn.markdown_table(["x", "y"], [], align="l")
    with pytest.raises(ValueError, match="cells"):
        bn.markdown_table(["x", "y"], [[1]])


def test_mib():
    assert bn.mib(None) == "n/a"
    assert bn.mib(3 * 2**19) == "1.5 MiB"
    assert bn.mib(2**31) == "2.00 GiB"


def test_run_summary_names_device_date_versions_and_scenarios():
    res = results(
        [
            row("numpy/plain", 256, scenario=None),
            row("numpy/plain", 512, status="skipped: why"),
        ],
        load_average={"start": [0.5, 0, 0], "end": [1.25, 0, 0]},
    )
    text = bn.run_summary(res)
    for part in (
        "**Test CPU**",
        "**2026-01-02**",
        "numpy 2.0",
        "numpy/float32 100.0 GFLOP/s",
        "0.5 and 1.2",
        "1 measurements, 1 skipped",
        "`mha`",
    ):
        assert part in text, part
    assert "Load average" not in bn.run_summary(results([row("numpy/plain", 256)]))


def test_bench_rows_reads_old_files_as_mha_and_divides_per_head():
    res = results(
        [
            row(
                "numpy/plain",
                256,
                scenario=None,
                B=2,
                H=4,
                time_s=8e-3,
                peak_mem_bytes=8 * 2**20,
            ),
            row("numpy/plain", 512, scenario=None, causal=True),
            row("numpy/plain", 1024, scenario=None, status="skipped: too slow"),
            row("numpy/plain", 256, scenario="decode", H=32),
        ]
    )
    rows = bn.bench_rows(res)
    assert [r["N"] for r in rows] == [256]
    assert (
        rows[0]["time_s"] == pytest.approx(1e-3) and rows[0]["peak_mem_bytes"] == 2**20
    )
    assert res["results"][0]["time_s"] == 8e-3  # the results are not modified
    assert [r["N"] for r in bn.bench_rows(res, causal=None)] == [256, 512]
    assert bn.bench_rows(res, "decode", causal=None, per_head=False)[0]["H"] == 32
    unmeasured = results([row("numpy/plain", 256, peak_mem_bytes=None, H=2)])
    assert bn.bench_rows(unmeasured)[0]["peak_mem_bytes"] is None


def test_grid_table_marks_missing_cells():
    rows = [
        row("numpy/plain", 256),
        row("numpy/plain", 1024),
        row("torch/F.sdpa", 1024, time_s=2e-3),
    ]
    lines = bn.grid_table(
        rows, "time", lambda r: f"{r['time_s'] * 1e3:.1f}"
    ).splitlines()
    assert lines[0] == "| time | N = 256 | N = 1024 |"
    assert lines[2:] == [
        "| `numpy/plain` | 1.0 | 1.0 |",
        "| `torch/F.sdpa` | – | 2.0 |",
    ]


def test_scenario_tables_are_empty_for_the_square_case_only():
    assert bn.scenario_tables(results([row("numpy/plain", 256, scenario=None)])) == []
    assert bn.scenario_tables(results([row("numpy/plain", 256, scenario="mha")])) == []
    shipped = bench.load_results()
    has_scenarios = any(
        r.get("scenario", "mha") != "mha" and r["status"] == "ok"
        for r in shipped["results"]
    )
    assert bool(bn.scenario_tables(shipped)) == has_scenarios


def scenario_results():
    rows = []
    for n, t in ((4096, 0.01), (16384, 0.042)):
        rows.append(row("numpy/attnbook_flash", n, "window256", causal=True, time_s=t))
    for sc, mem in (
        ("mha32", 64 * 2**20),
        ("gqa32x8", 32 * 2**20),
        ("mqa32", 16 * 2**20),
    ):
        rows.append(row("numpy/attnbook_sdpa", 1024, sc, H=32, peak_mem_bytes=mem))
        rows.append(row("numpy/attnbook_sdpa", 4096, sc, H=32, peak_mem_bytes=4 * mem))
    rows.append(
        row(
            "numpy/attnbook_flash",
            1024,
            "decode",
            causal=True,
            time_s=2e-4,
            gemm_fraction=0.004,
        )
    )
    rows.append(
        row(
            "numpy/attnbook_flash",
            4096,
            "decode",
            causal=True,
            time_s=8e-4,
            gemm_fraction=0.2,
        )
    )
    rows.append(row("numpy/attnbook_sdpa", 4096, "3d", H=4))
    rows.append(row("numpy/plain", 4096, "window256", status="skipped: too slow"))
    return results(rows)


def test_scenario_tables_show_window_growth_gqa_memory_and_decode():
    tables = bn.scenario_tables(scenario_results())
    titles = [t for t, _, _ in tables]
    assert titles[0].startswith("`window256`") and titles[1].startswith("grouped heads")
    assert titles[2].startswith("`decode`") and titles[3] == "`3d`" and len(tables) == 4
    window, note = tables[0][1], tables[0][2]
    assert "| `numpy/attnbook_flash` | 10.00 ms | 42.00 ms | 4.2 |" in window
    assert (
        "numpy/plain" not in window
        and note == "Linear time makes the last column 4, quadratic time 16."
    )
    memory = tables[1][1]
    assert (
        memory.splitlines()[0]
        == "| peak extra memory at N = 4096 | `mha32` | `gqa32x8` | `mqa32` |"
    )
    assert (
        "| `numpy/attnbook_sdpa` | 256.0 MiB | 128.0 MiB (×0.50) | 64.0 MiB (×0.25) |"
        in memory
    )
    decode = tables[2][1]
    assert (
        "| `numpy/attnbook_flash` | 0.20 ms (0.4% of GEMM) | 0.80 ms (20% of GEMM) |"
        in decode
    )
    assert "| `numpy/attnbook_sdpa` | 1.00 ms |" in tables[3][1]


def test_check_lines_are_the_suites_judged_targets():
    res = scenario_results()
    lines = bn.check_lines(res)
    judged = [c for c in suite.checks(res) if c["met"] is not None]
    assert len(lines) == len(judged) > 0
    assert any("window256" in line and "met" in line for line in lines)
    assert any("gqa32x8" in line for line in lines)
    assert not [
        line
        for line in bn.check_lines(res, exclude=("window256",))
        if "window256" in line
    ]


def test_series_sorts_by_n_and_skips_what_was_not_measured():
    rows = [
        row("a/x", 1024, time_s=2.0),
        row("a/x", 256, time_s=1.0),
        row("a/x", 512, time_s=None),
        row("b/y", 256, time_s=5.0),
    ]
    n, t = bn.series(rows, "a/x", "time_s", scale=1e3)
    assert n.tolist() == [256, 1024] and t.tolist() == [1e3, 2e3]


def test_shipped_results_make_the_chapters_tables():
    res = bench.load_results()
    rows = bn.bench_rows(res)
    assert rows and all(r["status"] == "ok" for r in rows)
    table = bn.grid_table(rows, "time", lambda r: f"{r['time_s']:.3g}")
    assert table.count("\n") == 1 + len({r["impl"] for r in rows})
    assert bn.run_summary(res).startswith("Measured on **")


# ------------------------------------------------------------------------------- plots


def test_log2_ticks_and_roofline():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.loglog([128, 3072, 4096], [1, 2, 3])
    bn.log2_ticks(ax, [128, 256, 3072, 4096])
    assert list(ax.get_xticks()) == [128, 256, 4096]
    plt.close(fig)

    fig, ax = plt.subplots()
    bn.plot_roofline(ax, 100e9, 10e9, {"softmax": (0.5, 2e9), "gemm": (100.0, 90e9)})
    roof = ax.lines[0]
    x, y = roof.get_xdata(), roof.get_ydata()
    assert np.allclose(y, np.minimum(100, 10 * x))  # GFLOP/s: min(pi, beta I)
    assert (
        ax.get_ylabel() == "GFLOP/s" and len(ax.lines) == 1 + 1 + 2
    )  # roof, ridge, two points
    assert [t.get_text() for t in ax.get_legend().get_texts()][1:] == [
        "softmax",
        "gemm",
    ]
    plt.close(fig)

    fig, ax = plt.subplots()
    bn.plot_roofline(
        ax, 312e12, 2e12, {"naive": (31.5, 63e12)}, measured=False, unit="TFLOP/s"
    )
    assert ax.get_ylabel() == "TFLOP/s" and ax.lines[
        0
    ].get_ydata().max() == pytest.approx(312)
    with pytest.raises(KeyError):
        bn.plot_roofline(ax, 1e9, 1e9, {}, unit="FLOP/s")
    plt.close(fig)


def test_import_is_light():
    code = (
        "import sys, attnbook.bench.notebook; "
        "heavy = ('torch', 'tensorflow', 'matplotlib'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
