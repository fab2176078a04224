"""The benchmark suite (attnbook.bench): the CLI runs, writes results.json in schema
1 and the plots, every
implementation computes attention correctly, and the shipped results load. No timing
    is asserted here: speed targets
are read off the suite's own table."""

import json
import subprocess
import sys

import pytest

from attnbook import bench
from attnbook.bench import suite

ROW_KEYS = {
    "impl",
    "framework",
    "op",
    "N",
    "d",
    "B",
    "H",
    "dtype",
    "causal",
    "device",
    "times_s",
    "time_s",
    "gflops",
    "gemm_fraction",
    "peak_mem_bytes",
    "mem_method",
    "max_abs_err",
    "status",
}
META_KEYS = {
    "suite",
    "schema",
    "date",
    "device",
    "device_name",
    "threads",
    "platform",
    "python",
    "versions",
    "gemm_gflops",
    "args",
}
CPU_IMPLS = [n for n in suite.IMPLS if n not in suite.GPU_ONLY]


def check_schema(res):
    assert META_KEYS <= set(res["meta"])
    meta = res["meta"]
    assert meta["suite"] == "attnbook.bench" and meta["schema"] == 1
    assert meta["device"] in ("cpu", "cuda")
    assert isinstance(meta["threads"], int) and meta["threads"] >= 1
    assert {"numpy", "torch", "tensorflow", "keras", "attnbook"} <= set(
        meta["versions"]
    )
    for row in res["results"]:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["op"] in ("sdpa", "flash") and row["impl"].startswith(
            row["framework"] + "/"
        )
        assert row["status"] == "ok" or row["status"].startswith("skipped: ")
        if row["status"] == "ok":
            assert row["time_s"] > 0 and len(row["times_s"]) >= 1
            assert row["mem_method"] in ("tracemalloc", "rss", "cuda", "tf_allocator")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    res = bench.main(["--quick", "--sizes", "32", "--out", str(out)])
    return res, out


def test_quick_cli_writes_json_and_plots(quick_run):
    res, out = quick_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    assert (
        out / f"{res['meta']['device']}-{res['meta']['date']}.json"
    ).read_text() == (out / "results.json").read_text()
    check_schema(on_disk)
    for stem in ("time", "gflops", "memory"):
        png = out / f"{stem}_float32.png"
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_quick_cli_runs_every_cpu_impl_correctly(quick_run):
    res, _ = quick_run
    rows = {(r["impl"], r["N"]): r for r in res["results"]}
    for impl in CPU_IMPLS:
        for n in (32,):
            row = rows[(impl, n)]
            assert row["status"] == "ok", (impl, row["status"])
            assert len(row["times_s"]) == 2  # --quick: 2 repeats
            assert row["max_abs_err"] < 1e-5, (impl, n, row["max_abs_err"])
            assert row["gflops"] > 0 and row["peak_mem_bytes"] >= 0
    assert {"numpy/float32", "torch/float32", "tensorflow/float32"} <= set(
        res["meta"]["gemm_gflops"]
    )
    # Every attnbook SDPA is compared with a peer and every flash with its naive path,
    # at each size.
    kinds = {(c["check"], c["framework"], c["N"]) for c in res["checks"]}
    assert {
        (k, f, n)
        for k in ("sdpa_vs_peer", "flash_vs_naive")
        for f in suite.FRAMEWORKS
        for n in (32,)
    } <= kinds


def test_gpu_kernels_are_skipped_with_a_reason_on_cpu():
    args = suite.parse_args(
        ["--quick", "--device", "cpu", "--impls", "torch/F.sdpa[FLASH]"]
    )
    assert suite._selected(args) == []  # not listed on a CPU run at all
    case = suite.make_case("mha", 8, 4, "float32")
    torch = pytest.importorskip("torch")
    with pytest.raises(suite._Skip, match="CUDA"):
        suite._torch_impl("torch/F.sdpa[FLASH]", case, torch.device("cpu"))


def test_causal_and_impl_filter(tmp_path):
    res = bench.main(
        [
            "--quick",
            "--sizes",
            "16",
            "--causal",
            "--frameworks",
            "numpy",
            "--impls",
            "numpy/*",
            "--no-plots",
            "--out",
            str(tmp_path),
        ]
    )
    assert sorted(r["impl"] for r in res["results"]) == [
        "numpy/attnbook_flash",
        "numpy/attnbook_sdpa",
        "numpy/plain",
    ]
    for row in res["results"]:
        assert row["causal"] and row["status"] == "ok" and row["max_abs_err"] < 1e-5
        # causal attention counts the N (N + 1) / 2 pairs it computes, 4 d flops each
        assert row["gflops"] == pytest.approx(
            4 * (16 * 17 // 2) * 64 / row["time_s"] / 1e9
        )
    assert not list(tmp_path.glob("*.png"))


def test_checks_read_the_targets():
    def row(impl, t, mem):
        return {
            "impl": impl,
            "framework": impl.split("/")[0],
            "dtype": "float32",
            "N": 4096,
            "status": "ok",
            "time_s": t,
            "peak_mem_bytes": mem,
        }

    res = {
        "results": [
            row("numpy/plain", 2.0, 1600),
            row("numpy/attnbook_sdpa", 1.0, 50),
            row("numpy/attnbook_flash", 2.2, 100),
        ]
    }
    (flash, sdpa) = sorted(suite.checks(res), key=lambda c: c["check"])
    assert sdpa["check"] == "sdpa_vs_peer" and sdpa["time_ratio"] == 0.5 and sdpa["met"]
    assert (
        flash["mem_ratio"] == 1 / 16
        and flash["time_ratio"] == pytest.approx(1.1)
        and flash["met"]
    )
    res["results"][2]["time_s"] = 2.5  # 1.25x the naive time: not met
    assert [c for c in suite.checks(res) if c["check"] == "flash_vs_naive"][0][
        "met"
    ] is False
    # At a smaller N in the same run the ratios are reported, and the target is not
    # judged there.
    res["results"] += [dict(r, N=256) for r in res["results"]]
    small = [
        c for c in suite.checks(res) if c["check"] == "flash_vs_naive" and c["N"] == 256
    ]
    assert (
        len(small) == 1
        and small[0]["met"] is None
        and small[0]["time_ratio"] == pytest.approx(1.25)
    )


def test_shipped_results_load():
    names = bench.list_results()
    assert names and all(n.count("-") >= 3 for n in names)  # <device>-YYYY-MM-DD
    res = bench.load_results()
    check_schema(res)
    assert res == bench.load_results(
        names[-1] if names[-1].startswith("cpu-") else None
    )
    assert res == bench.load_results(
        [n for n in names if n.startswith("cpu-")][-1] + ".json"
    )
    impls = {r["impl"] for r in res["results"]}
    assert set(CPU_IMPLS) <= impls
    assert {r["N"] for r in res["results"]} == {256, 1024, 4096, 16384}
    with pytest.raises(FileNotFoundError, match="shipped"):
        bench.load_results("no-such-run")


def test_help_and_light_import():
    """``--help`` works, and importing the suite imports neither torch nor
    TensorFlow."""
    out = subprocess.run(
        [sys.executable, "-m", "attnbook.bench", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--sizes" in out and "--quick" in out and "--frameworks" in out
    code = (
        "import sys, attnbook.bench, attnbook.bench.suite, attnbook.bench.report; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "[]"
    )


@pytest.mark.parametrize("causal", [False, True])
def test_numpy_fast_path_query_blocks_match_the_oracle(monkeypatch, causal):
    """The speed work the suite measures: NumPy's query-blocked SDPA path (tiny
    blocks forced here, where the unit tests' sizes fit one block) agrees with the
    float64 oracle, with masks, biases, broadcast batch axes, rows with no key, and
    causal blocks that skip the keys after their last query."""
    import numpy as np

    import attnbook.numpy as an
    import oracle

    monkeypatch.setattr(an, "_SCORE_BLOCK", 8)
    rng = np.random.default_rng(7)
    q, k, v = (
        rng.normal(size=(2, 9, 4)),
        rng.normal(size=(1, 6, 4)),
        rng.normal(size=(3, 1, 6, 5)),
    )
    mask = rng.random((9, 6)) < 0.6
    mask[4] = False  # one row with nothing to attend to
    bias = rng.normal(size=(2, 9, 1))
    for m, b in ((None, None), (mask, None), (None, bias), (mask, bias)):
        want, _ = oracle.scaled_dot_product_attention(q, k, v, m, b, causal=causal)
        got = an.scaled_dot_product_attention(q, k, v, m, b, causal=causal)
        assert got.shape == want.shape == (3, 2, 9, 5)
        np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)


def test_every_scenario_runs(tmp_path):
    """Each scenario (GQA, MQA, a window, decoding, 3-D and 5-D layouts) runs in
    every framework at smoke-test size, every attnbook row close to the float64
    reference, the peers given the same problem."""
    res = bench.main(
        [
            "--quick",
            "--sizes",
            "64",
            "--scenarios",
            "all",
            "--no-plots",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    got = {(r["scenario"], r["impl"]): r for r in res["results"]}
    assert {sc for sc, _ in got} == set(suite.SCENARIOS)
    for (sc, impl), row in got.items():
        if "attnbook" in impl or impl in ("numpy/plain", "torch/F.sdpa"):
            assert row["status"] == "ok", (sc, impl, row["status"])
            assert row["max_abs_err"] < 1e-4, (sc, impl)
    assert (
        got["decode", "numpy/attnbook_sdpa"]["Lq"] == 1
        and got["gqa32x8", "torch/F.sdpa"]["Hkv"] == 8
    )
    assert got["window256", "numpy/attnbook_flash"]["window"] == [255, 0] or got[
        "window256", "numpy/attnbook_flash"
    ]["window"] == (255, 0)
    pairs = {
        sc: suite.visible_pairs(
            suite.SCENARIOS[sc], 1 if sc == "decode" else 64, 64, True
        )
        for sc in ("window256", "decode")
    }
    assert pairs == {"window256": 64 * 65 // 2, "decode": 64}


def test_targets_of_today_s_attention():
    """The targets of issue #12 read off the rows: linear window time, GQA memory,
    TensorFlow's memory."""

    def row(sc, impl, n, t, mem, frac=None):
        return {
            "scenario": sc,
            "impl": impl,
            "framework": impl.split("/")[0],
            "dtype": "float32",
            "N": n,
            "status": "ok",
            "time_s": t,
            "peak_mem_bytes": mem,
            "gemm_fraction": frac,
        }

    res = {
        "results": [
            row("window256", "numpy/attnbook_flash", 4096, 1.0, 10),
            row("window256", "numpy/attnbook_flash", 16384, 4.5, 10),
            row("mha32", "torch/attnbook_sdpa", 4096, 1.0, 100),
            row("gqa32x8", "torch/attnbook_sdpa", 4096, 1.0, 60),
            row("mqa32", "torch/attnbook_sdpa", 4096, 1.0, 120),
            row("mha", "tensorflow/attnbook_sdpa", 16384, 0.9, 64, 0.5),
            row("mha", "tensorflow/keras_dpa", 16384, 1.0, 2048),
        ]
    }
    found = {(c["check"], c.get("scenario")): c for c in suite.checks(res)}
    assert (
        found["window_linear", "window256"]["met"]
        and found["window_linear", "window256"]["time_ratio"] == 4.5
    )
    assert (
        found["gqa_memory", "gqa32x8"]["met"]
        and found["gqa_memory", "mqa32"]["met"] is False
    )
    assert (
        found["tf_memory", "mha"]["met"]
        and found["tf_memory", "mha"]["mem_ratio"] == 1 / 32
    )
    assert (
        found["gemm_fraction", "mha"]["met"] is False
        and found["sdpa_vs_peer", "mha"]["met"]
    )
    from attnbook.bench import report

    text = report.table(
        {
            "results": [
                dict(r, d=64, B=1, H=1, causal=False, max_abs_err=0.0, gflops=1.0)
                for r in res["results"]
            ],
            "checks": suite.checks(res),
        }
    )
    assert (
        "NOT met" in text
        and "1/32" in text
        and "window_linear: a sliding window" in text
    )
