"""The command line of the benchmark suite refuses bad arguments the way argparse
does (issue #11): one line on stderr, ``python -m attnbook.bench: error: ...`` naming
the option, exit status 2, no traceback, and nothing timed or written. Without
matplotlib the run writes its JSON and says in one line that the plots were skipped."""

import json
import subprocess
import sys

import pytest

PROG = "python -m attnbook.bench"


def bench(*args, code=None, cwd=None):
    cmd = (
        [sys.executable, "-c", code, *args]
        if code
        else [sys.executable, "-m", "attnbook.bench", *args]
    )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


# (arguments, text the error line must contain). --device cpu keeps torch from being
# imported to look for a GPU.
BAD = {
    "--batch 0": (["--batch", "0"], "--batch"),
    "--batch -1": (["--batch", "-1"], "--batch"),
    "--sizes 0 (was ZeroDivisionError in --heads auto)": (["--sizes", "0"], "--sizes"),
    "--sizes -5": (["--sizes", "-5"], "--sizes"),
    "--sizes abc": (["--sizes", "abc"], "--sizes"),
    "--sizes empty": (["--sizes", ""], "--sizes"),
    "--sizes repeated": (["--sizes", "16,16"], "--sizes"),
    "--sizes beyond the memory": (["--sizes", str(2**40)], "--sizes"),
    "--d 0 (silently became 64)": (["--d", "0"], "--d"),
    "--d abc": (["--d", "abc"], "--d"),
    "--heads abc (traceback inside the run)": (["--heads", "abc"], "--heads"),
    "--heads 0": (["--heads", "0"], "--heads"),
    "--dtypes float8 (traceback inside the run)": (["--dtypes", "float8"], "--dtypes"),
    "--dtypes with an empty item": (["--dtypes", "float32,"], "--dtypes"),
    "--frameworks jax": (["--frameworks", "jax"], "--frameworks"),
    "--impls matching nothing (ran nothing, exit 0)": (["--impls", "nope"], "--impls"),
    "--impls that need CUDA on the CPU": (
        ["--frameworks", "torch", "--impls", "torch/F.sdpa[FLASH]"],
        "--impls",
    ),
    "--repeats 0": (["--repeats", "0"], "--repeats"),
    "--repeats 0 with --quick (silently 2)": (
        ["--quick", "--repeats", "0"],
        "--repeats",
    ),
    "--warmup -1 with --quick (silently 0)": (
        ["--quick", "--warmup", "-1"],
        "--warmup",
    ),
    "--max-seconds nan (JSON error after the run)": (
        ["--max-seconds", "nan"],
        "--max-seconds",
    ),
    "--max-seconds -1": (["--max-seconds", "-1"], "--max-seconds"),
    "--device tpu": (["--device", "tpu"], "--device"),
    "an unknown option": (["--bogus"], "--bogus"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_arguments_end_with_one_line(case, tmp_path):
    args, name = BAD[case]
    out = tmp_path / "out"
    proc = (
        bench("--device", "cpu", "--no-plots", "--out", str(out), *args)
        if "--device" not in args
        else bench("--no-plots", "--out", str(out), *args)
    )
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith(f"{PROG}: error: ") and name in lines[0]
    ), proc.stderr
    assert not out.exists()  # nothing was timed or written


def test_cuda_asked_for_without_a_gpu(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    proc = bench("--device", "cuda", "--out", str(tmp_path / "out"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--device cuda" in lines[0], (
        proc.stderr
    )


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_unwritable_out_is_refused_before_the_run(where, tmp_path):
    (tmp_path / "f").write_text("")
    out = tmp_path / "f" if where == "a file" else tmp_path / "f" / "sub"
    proc = bench(
        "--device", "cpu", "--quick", "--frameworks", "numpy", "--out", str(out)
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: --out"), proc.stderr


def test_without_matplotlib_the_json_is_written_and_the_plots_skipped(tmp_path):
    """matplotlib made unimportable (``sys.modules["matplotlib"] = None``): exit 0,
    results.json, no PNG, one line."""
    code = (
        "import sys; sys.modules['matplotlib'] = None; from attnbook.bench.suite "
        "import main; "
        "main(sys.argv[1:])"
    )
    proc = bench(
        "--device",
        "cpu",
        "--quick",
        "--sizes",
        "16",
        "--frameworks",
        "numpy",
        "--impls",
        "numpy/plain",
        "--out",
        str(tmp_path),
        code=code,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (
        json.loads((tmp_path / "results.json").read_text())["results"][0]["status"]
        == "ok"
    )
    assert not list(tmp_path.glob("*.png"))
    notes = [line for line in proc.stderr.splitlines() if "matplotlib" in line]
    assert notes == [
        f"{PROG}: plots skipped: matplotlib is not installed (pip install "
        f"matplotlib, or pass "
        "--no-plots)"
    ], proc.stderr


def test_a_framework_that_is_not_installed_is_refused_before_the_run(tmp_path):
    code = (
        "import sys; sys.modules['tensorflow'] = None; "
        "from attnbook.bench.suite import main; main(sys.argv[1:])"
    )
    proc = bench(
        "--device",
        "cpu",
        "--frameworks",
        "numpy,tensorflow",
        "--out",
        str(tmp_path / "out"),
        code=code,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines == [
        f"{PROG}: error: --frameworks tensorflow: not installed; leave it out"
    ], proc.stderr


def test_help_documents_the_error_behaviour():
    out = " ".join(bench("--help").stdout.split())  # argparse wraps the lines
    assert "one line on stderr" in out and "matplotlib" in out


def test_non_finite_numbers_are_written_as_null(tmp_path):
    from attnbook.bench import report

    res = {
        "meta": {
            "device": "cpu",
            "date": "2026-01-01",
            "args": {"max_seconds": float("inf")},
        },
        "results": [{"max_abs_err": float("nan"), "times_s": [1.0, float("inf")]}],
    }
    report.write(res, str(tmp_path), plots=False)
    back = json.loads((tmp_path / "results.json").read_text())
    assert back["meta"]["args"]["max_seconds"] is None and back["results"][0] == {
        "max_abs_err": None,
        "times_s": [1.0, None],
    }


def test_load_results_refuses_a_name_that_is_not_a_string():
    from attnbook import bench

    with pytest.raises(TypeError, match="name"):  # was AttributeError: no .endswith
        bench.load_results(3)
