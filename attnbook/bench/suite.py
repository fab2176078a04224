"""The benchmark suite: implementations, measurements and the run loop behind
``python -m attnbook.bench``.

Method (what the numbers in ``results.json`` mean):

* **Time**: for each size ``N`` (``Lq = Lk = N``) and framework, each implementation
  is called ``--warmup`` times and then the framework's implementations are called
  round-robin ``--repeats`` times (impl 1, impl 2, ..., then impl 2, ..., impl 1: the
  order rotates each repeat), so load from other processes spreads over all of them
  alike. The frameworks take turns as groups, warm-up included, so that one runtime's
  spinning worker threads do not slow another's calls. A call shorter than 50 ms is
  repeated inside each sample (``inner_calls`` times, from the last warm-up call's time)
  and the sample divided by that count, so that millisecond calls are not timer and
  scheduler noise. ``time_s`` is the median of the per-call samples. On CUDA each call
  ends with a device synchronisation.
* **Scenarios** (``--scenarios``, see ``scenarios.py``): square multi-head attention
  (the default), 32 heads with 8 or 1 key/value heads, a causal sliding window of 256
  keys, one query decoding against N keys, and the same numbers as 3-D and 5-D
  arrays. Each framework's own attention gets the same problem in its own terms.
* **GFLOP/s**: ``4 * B * H * pairs * d / time`` (two matmuls of ``2 d`` flops per
  (query, key) pair), where ``pairs`` counts the pairs the scenario computes:
  ``N**2``, ``N (N + 1) / 2`` when causal, ``N`` per query when decoding, about ``256
  N`` for the window.
* **Fraction of GEMM**: GFLOP/s divided by the rate of a square ``(n, n) @ (n, n)``
  matmul measured in the same run with the same framework, dtype and device
  (``meta.gemm_gflops``; ``n = 2048`` on CPU, ``8192`` on CUDA). The rate of the
  attention-shaped ``(N, d) @ (d, N)`` product, which is bound by writing its ``N^2``
  output, is recorded too (``meta.gemm_qk_gflops``), for reference.
* **Peak extra memory**: one extra, untimed call. NumPy: ``tracemalloc``'s peak
  (``mem_method`` "tracemalloc").
  torch on CPU: the process's resident high-water mark (``VmHWM``, reset by writing
      ``5`` to
  ``/proc/self/clear_refs``) minus the resident size before the call, with glibc told
  to trim its free pages first and to return every block of 128 KiB or more to the
  system when it is freed, so that the high-water mark sees each allocation ("rss").
  TensorFlow pools its freed CPU buffers, which hides them from the RSS, so it is
  asked
  instead: ``tf.config.experimental.get_memory_info("CPU:0")["peak"]`` after
  ``reset_memory_stats`` ("tf_allocator").
  CUDA: ``max_memory_allocated`` (torch) or ``get_memory_info("GPU:0")["peak"]``
  (TensorFlow) minus the memory in use before the call ("cuda").
* **Error**: max absolute difference from a float64 NumPy reference computed in query
  blocks from the same (dtype-rounded) inputs.

Nothing here is imported by ``import attnbook``; each framework is imported when its
rows run.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import fnmatch
import gc
import importlib.util
import math
import os
import platform
import re
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from .. import _checks
from .scenarios import SCENARIOS, attnbook_options, shapes, visible_pairs

SCHEMA = 1
IMPLS = (
    "numpy/plain",
    "numpy/attnbook_sdpa",
    "numpy/attnbook_flash",
    "torch/attnbook_sdpa",
    "torch/attnbook_flash",
    "torch/F.sdpa",
    "torch/F.sdpa[MATH]",
    "torch/F.sdpa[FLASH]",
    "torch/F.sdpa[EFFICIENT]",
    "torch/F.sdpa[CUDNN]",
    "tensorflow/attnbook_sdpa",
    "tensorflow/attnbook_flash",
    "tensorflow/keras_dpa",
    "tensorflow/keras_dpa[xla]",
)
GPU_ONLY = ("torch/F.sdpa[FLASH]", "torch/F.sdpa[EFFICIENT]", "torch/F.sdpa[CUDNN]")
FRAMEWORKS = ("numpy", "torch", "tensorflow")
# Same-framework peers of each attnbook SDPA (the target: at least as fast as the
# fastest of them), and the materialising "naive" path that flash_attention's memory and
# time are compared with.
PEERS = {
    "numpy": ("numpy/plain",),
    "torch": ("torch/F.sdpa", "torch/F.sdpa[MATH]"),
    "tensorflow": ("tensorflow/keras_dpa",),
}
NAIVE = {
    "numpy": "numpy/plain",
    "torch": "torch/F.sdpa[MATH]",
    "tensorflow": "tensorflow/keras_dpa",
}


# --------------------------------------------------------------------------------------
# Implementations. Each factory takes the case and returns (call, to_numpy): `call()`
# runs the attention once on inputs prepared beforehand (layout changes are not timed)
# and `to_numpy(out)` gives a (B, H, N, dv) float64 array. A factory raises _Skip (or
# any exception during the first call) to record "skipped: why".


class _Skip(Exception):
    pass


def _plain_numpy(q, k, v, mask, groups=1):
    """Attention as a reader would first write it in NumPy: matmul, max-subtracted
    exp, normalise, matmul (keys and values repeated for grouped heads, as a first
    version would)."""
    if groups > 1:
        k, v = np.repeat(k, groups, axis=-3), np.repeat(v, groups, axis=-3)
    # (..., Lq, Lk)
    s = (q @ np.swapaxes(k, -1, -2)) * np.asarray(1.0 / math.sqrt(q.shape[-1]), q.dtype)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) @ v


def _mask(case):
    """The scenario's key structure as a boolean (Lq, Lk) NumPy array, or None (the
    peers get it as a mask)."""
    import attnbook.numpy as an

    kw = case["kw"]
    lq, lk = case["Lq"], case["N"]
    if "window" in kw:
        return an.window_mask(lq, lk, kw["window"], align=kw.get("align", "top_left"))
    if kw["causal"]:
        m = an.causal_mask(lq, lk, align=kw.get("align", "top_left"))
        return None if m.all() else m
    return None


def _numpy_impl(name, case):
    if case["dtype"] not in ("float16", "float32", "float64"):
        raise _Skip(f"NumPy has no {case['dtype']}")
    import attnbook.numpy as an

    q, k, v = (a.astype(case["dtype"]) for a in case["inputs"])
    if name == "numpy/plain":
        mask, groups = _mask(case), case["H"] // case["Hkv"]
        return (lambda: _plain_numpy(q, k, v, mask, groups)), np.asarray
    fn = (
        an.scaled_dot_product_attention
        if name.endswith("_sdpa")
        else an.flash_attention
    )
    kw = case["kw"]
    return (lambda: fn(q, k, v, **kw)), np.asarray


def _torch_impl(name, case, device):
    import torch
    import torch.nn.functional as F

    import attnbook.torch as at

    dtype = getattr(torch, case["dtype"])
    q, k, v = (
        torch.from_numpy(a).to(device=device, dtype=dtype) for a in case["inputs"]
    )
    kw = case["kw"]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    to_numpy = lambda out: out.detach().to("cpu", torch.float64).numpy()  # noqa: E731

    if name.startswith("torch/attnbook_"):
        fn = (
            at.scaled_dot_product_attention
            if name.endswith("_sdpa")
            else at.flash_attention
        )

        def call():
            with torch.inference_mode():
                out = fn(q, k, v, **kw)
            sync()
            return out

        return call, to_numpy
    # PyTorch's own: is_causal for top-left causal, a boolean mask for a window (or a
    # shifted causal structure), enable_gqa for grouped heads.
    mask = _mask(case)
    is_causal = kw["causal"] and mask is None and "align" not in kw
    attn_mask = None if mask is None else torch.from_numpy(mask).to(device)
    gqa = bool(kw.get("enable_gqa"))

    kernel = name[len("torch/F.sdpa[") : -1] if "[" in name else None
    if kernel is not None:
        if device.type != "cuda" and kernel != "MATH":
            raise _Skip(f"the {kernel} kernel needs a CUDA GPU")
        from torch.nn.attention import SDPBackend, sdpa_kernel

        if not hasattr(SDPBackend, kernel + "_ATTENTION") and kernel != "MATH":
            raise _Skip(f"this torch has no SDPBackend.{kernel}_ATTENTION")
        backend = (
            SDPBackend.MATH
            if kernel == "MATH"
            else getattr(SDPBackend, kernel + "_ATTENTION")
        )
        context = lambda: sdpa_kernel(backend)  # noqa: E731
    else:
        context = contextlib.nullcontext

    def call():
        with torch.inference_mode(), context():
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=is_causal, enable_gqa=gqa
            )
        sync()
        return out

    return call, to_numpy


def _tensorflow_impl(name, case, state):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    import attnbook.tensorflow as atf

    kw = case["kw"]
    dtype = tf.as_dtype(case["dtype"])
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    sync = tf.test.experimental.sync_devices if on_gpu else (lambda: None)
    q, k, v = (tf.cast(tf.constant(a), dtype) for a in case["inputs"])  # (B, H, N, d)

    if name.startswith("tensorflow/attnbook_"):
        fn = (
            atf.scaled_dot_product_attention
            if name.endswith("_sdpa")
            else atf.flash_attention
        )

        def call():
            out = fn(q, k, v, **kw)
            sync()
            return out

        return call, lambda out: np.asarray(tf.cast(out, tf.float64))

    if keras.backend.backend() != "tensorflow":
        raise _Skip(
            f"Keras runs on {keras.backend.backend()}, not TensorFlow (set "
            f"KERAS_BACKEND=tensorflow)"
        )
    if q.shape.rank != 4:
        raise _Skip(
            "keras.ops.dot_product_attention takes 4-D (B, T, N, H) arrays only"
        )
    # Keras' layout (B, N, H, d)
    kq, kk, kv = (tf.transpose(a, (0, 2, 1, 3)) for a in (q, k, v))
    dpa = keras.ops.dot_product_attention
    mask = _mask(case)
    causal = kw["causal"] and mask is None and "align" not in kw
    mask = None if mask is None else tf.constant(mask[None, None])  # (1, 1, Lq, Lk)
    if name.endswith("[xla]"):
        # One compiled function per run, traced once per shape; tracing and compiling
        # happen in the warm-up.
        if "xla" not in state:
            state["xla"] = tf.function(
                lambda a, b, c, m, is_causal: dpa(a, b, c, mask=m, is_causal=is_causal),
                jit_compile=True,
            )
        fn = lambda a, b, c: state["xla"](a, b, c, mask, causal)  # noqa: E731
    else:
        fn = lambda a, b, c: dpa(a, b, c, mask=mask, is_causal=causal)  # noqa: E731

    def call():
        out = fn(kq, kk, kv)
        sync()
        return out

    return call, lambda out: np.asarray(
        tf.cast(tf.transpose(out, (0, 2, 1, 3)), tf.float64)
    )


# --------------------------------------------------------------------------------------
# Measurements.

# A timed sample lasts at least this long (calls repeated inside it), and repeats a call
# at most _MAX_INNER times.
_MIN_SAMPLE_S, _MAX_INNER = 0.05, 200


def _median_time(call, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), times


def _gemm_rates(framework, dtype, device, n, qk_sizes, d, repeats=5):
    """GFLOP/s of a square (n, n) @ (n, n) matmul and of (N, d) @ (d, N) for each N,
    in one framework."""
    rng = np.random.default_rng(0)
    square = rng.standard_normal((n, n)).astype(np.float32)
    shapes = {"square": (square, square)}
    for size in qk_sizes:
        a = rng.standard_normal((size, d)).astype(np.float32)
        shapes[size] = (a, np.ascontiguousarray(a.T))
    if framework == "numpy":
        mm = lambda a, b: lambda: a @ b  # noqa: E731
        conv = lambda x: x.astype(dtype)  # noqa: E731
    elif framework == "torch":
        import torch

        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

        def conv(x):
            return torch.from_numpy(x).to(device=device, dtype=getattr(torch, dtype))  # noqa: E731

        mm = lambda a, b: lambda: (torch.mm(a, b), sync())  # noqa: E731
    else:
        import tensorflow as tf

        on_gpu = bool(tf.config.list_logical_devices("GPU"))
        sync = tf.test.experimental.sync_devices if on_gpu else (lambda: None)
        conv = lambda x: tf.cast(tf.constant(x), dtype)  # noqa: E731
        mm = lambda a, b: lambda: (tf.linalg.matmul(a, b), sync())  # noqa: E731
    rates = {}
    for key, (a, b) in shapes.items():
        call = mm(conv(a), conv(b))
        call()
        t, _ = _median_time(call, repeats)
        rates[key] = 2.0 * a.shape[0] * a.shape[1] * b.shape[1] / t / 1e9
    return rates


_LIBC = None


def _malloc_returns_blocks(on):
    """glibc only: with ``on``, blocks >= 128 KiB are mmap'ed and given back when
    freed (so the RSS high-water mark sees each one); off restores the largest
    threshold glibc would adapt to by itself (32 MiB)."""
    global _LIBC
    if not sys.platform.startswith("linux"):
        return
    try:
        _LIBC = _LIBC or ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        _LIBC.mallopt(m_mmap_threshold, 128 * 1024 if on else 32 * 1024 * 1024)
        _LIBC.mallopt(m_trim_threshold, 128 * 1024 if on else 64 * 1024 * 1024)
        if on:
            _LIBC.malloc_trim(0)  # free pages kept by earlier calls leave the baseline
    except (OSError, AttributeError):
        pass


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _peak_memory(call, framework, device):
    """(output, peak extra bytes, method) of one call; (output, None, why) when the
    platform cannot tell."""
    gc.collect()
    if device == "cuda" and framework == "torch":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = call()
        return out, int(torch.cuda.max_memory_allocated() - base), "cuda"
    if framework == "tensorflow":
        # TensorFlow keeps freed CPU buffers in its own pool, invisible to the RSS
        # high-water mark, but its allocator counts its peak on the CPU as on the GPU.
        import tensorflow as tf

        name = "GPU:0" if device == "cuda" else "CPU:0"
        try:
            tf.config.experimental.reset_memory_stats(name)
            base = tf.config.experimental.get_memory_info(name)["current"]
        except (ValueError, tf.errors.OpError):
            pass
        else:
            out = call()
            peak = tf.config.experimental.get_memory_info(name)["peak"]
            return out, int(peak - base), "cuda" if device == "cuda" else "tf_allocator"
    if framework == "numpy":
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            out = call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return out, int(peak - base), "tracemalloc"
    try:
        _malloc_returns_blocks(True)
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size
        base = _status_kib("VmRSS")
        out = call()
        peak = _status_kib("VmHWM")
    except OSError as err:
        return call(), None, f"unavailable: {err}"
    finally:
        _malloc_returns_blocks(False)
    return out, int(max(peak - base, 0) * 1024), "rss"


def _reference(q, k, v, kw):
    """float64 attention of the (dtype-rounded) inputs with the scenario's options:
    attnbook's NumPy twin in float64 (checked against the independent oracle of the
    tests), whose fast path works in query blocks, so that N = 16384 fits in memory."""
    import attnbook.numpy as an

    return an.scaled_dot_product_attention(
        *(a.astype(np.float64) for a in (q, k, v)), **kw
    )


# --------------------------------------------------------------------------------------
# The run.


def _versions():
    from importlib import metadata

    import attnbook

    found = {"numpy": np.__version__, "attnbook": attnbook.__version__}
    for dist in ("torch", "tensorflow", "keras"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            try:
                found[dist] = metadata.version(f"{dist}-cpu")
            except metadata.PackageNotFoundError:
                found[dist] = None
    return found


def _threads():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cuda_available():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _device_name(device):
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return name


def _heads_for(n, heads):
    """``--heads auto``: enough heads that small N is not pure call overhead, (1024
    // N)^2, at least 1."""
    return max(1, (1024 // n) ** 2) if heads == "auto" else int(heads)


PROG = "python -m attnbook.bench"
DTYPES = ("float16", "bfloat16", "float32", "float64")


def _fail(message):
    """End the command line with one line on stderr, ``python -m attnbook.bench:
    error: ...``, and exit status 2 (as
    argparse does, without the usage block above it: the message says what to change,
        ``--help`` says the rest)."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(2)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        _fail(message)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _count(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer, got {text!r}"
        )
    return value


def _sizes(text):
    items = text.split(",")
    try:
        sizes = [_positive_int(x) for x in items]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by "
            f"commas (e.g. 256,1024), got "
            f"{text!r}"
        ) from None
    if len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"{text!r} repeats a size")
    return sizes


def _heads(text):
    if text == "auto":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a positive integer, got {text!r}"
        ) from None


def _names(choices, what):
    def parse(text):
        names = text.split(",")
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} "
                f"{', '.join(map(repr, unknown))}; choose "
                f"from "
                f"{', '.join(choices)}"
            )
        return list(dict.fromkeys(names))

    return parse


def _patterns(text):
    patterns = text.split(",")
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(n, pat) or n == pat for n in IMPLS):
            raise argparse.ArgumentTypeError(
                f"{pat!r} matches no implementation; the names are {', '.join(IMPLS)}"
            )
    return patterns


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds, got {text!r}"
        ) from None
    if not value > 0:  # NaN too: it would compare false and skip nothing
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds, got {text!r}"
        )
    return value


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken install, or a module set to None
        return False


def parse_args(argv=None):
    """Parse and check the command line; a bad argument ends the program with one
    line on stderr (exit status 2) before anything is imported or timed."""
    p = _Parser(
        prog=PROG,
        description="Time attnbook's attention against each framework's own, "
        "interleaved, in one process; "
        "write results.json and plots. A bad argument ends with one line on "
        "stderr and exit status 2, "
        "before anything is timed.",
    )
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help="comma-separated sequence lengths N (default: each scenario's "
        "own; 256,1024,4096,16384 "
        "for mha)",
    )
    p.add_argument(
        "--scenarios",
        type=_scenario_names,
        default=["mha"],
        help="comma-separated scenarios, or 'all' (default mha): "
        + "; ".join(f"{sc.name}: {sc.about}" for sc in SCENARIOS.values()),
    )
    p.add_argument(
        "--d",
        type=_positive_int,
        default=None,
        help="head size d (default 64 on CPU, 128 on CUDA)",
    )
    p.add_argument(
        "--batch", type=_positive_int, default=1, help="batch size B (default 1)"
    )
    p.add_argument(
        "--heads",
        type=_heads,
        default="auto",
        help="heads H of the mha scenario, or 'auto' (default): (1024 // "
        "N)**2 so that small N is not "
        "only call overhead (the other scenarios fix their heads)",
    )
    p.add_argument(
        "--dtypes",
        type=_names(DTYPES, "dtypes"),
        default=None,
        help=f"comma-separated dtypes among {','.join(DTYPES)} (default "
        f"float32 on CPU, bfloat16,float16 "
        "on CUDA)",
    )
    p.add_argument(
        "--frameworks",
        type=_names(FRAMEWORKS, "frameworks"),
        default=list(FRAMEWORKS),
        help="comma-separated subset of numpy,torch,tensorflow (default all)",
    )
    p.add_argument(
        "--impls",
        type=_patterns,
        default=None,
        help="comma-separated implementation names or glob patterns, e.g. "
        "'torch/*,numpy/plain'",
    )
    p.add_argument(
        "--repeats",
        type=_positive_int,
        default=None,
        help="timed calls per implementation and size (default 5, 2 with --quick)",
    )
    p.add_argument(
        "--warmup",
        type=_count,
        default=None,
        help="untimed calls first (default 1, 0 with --quick)",
    )
    p.add_argument(
        "--causal",
        action="store_true",
        help="causal attention (GFLOP/s then count half the work)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto (default): CUDA when torch sees a GPU; NumPy rows always "
        "run on the CPU",
    )
    p.add_argument(
        "--out",
        default="bench-results",
        help="output folder (default ./bench-results), created if needed; "
        "checked to be writable first",
    )
    p.add_argument(
        "--no-plots",
        action="store_true",
        help="write results.json only. Without matplotlib installed the "
        "plots are skipped too: the JSON "
        "is written and one line on stderr says so (exit status 0)",
    )
    p.add_argument(
        "--max-seconds",
        type=_seconds,
        default=120.0,
        help="skip an implementation at a size where its last time, scaled "
        "by N^2, predicts more than "
        "this many seconds per call (default 120; inf: never skip)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: N = 64,128, one head, 2 repeats, no warm-up, small GEMM",
    )
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if _cuda_available() else "cpu"
    elif args.device == "cuda" and not _cuda_available():
        _fail(
            "--device cuda: torch sees no CUDA GPU (or torch is not installed); use "
            "--device cpu"
        )
    if args.quick:
        args.sizes = args.sizes or [64, 128]
        args.heads = 1 if args.heads == "auto" else args.heads
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.warmup = (0 if args.quick else 1) if args.warmup is None else args.warmup
    args.plan = {
        name: list(args.sizes or SCENARIOS[name].sizes) for name in args.scenarios
    }
    args.sizes = sorted({n for sizes in args.plan.values() for n in sizes})
    args.d = args.d or (128 if args.device == "cuda" else 64)
    args.dtypes = args.dtypes or (
        ["bfloat16", "float16"] if args.device == "cuda" else ["float32"]
    )
    missing = [f for f in args.frameworks if f != "numpy" and not _installed(f)]
    if missing:
        _fail(
            f"--frameworks {','.join(missing)}: not installed; leave "
            f"{'it' if len(missing) == 1 else 'them'} out"
        )
    for n in args.sizes:
        # Inputs (float32), their dtype-rounded float64 copies and the float64
        # reference, for the largest size first: a size beyond the memory would fail
        # after minutes of timing, in an allocator.
        heads = max(
            [_heads_for(n, args.heads)]
            + [
                sc.heads
                for name in args.scenarios
                if (sc := SCENARIOS[name]).heads is not None
            ]
        )
        elements = args.batch * heads * n * args.d
        try:
            _checks.fits_in_memory(
                f"--sizes {n} (B = {args.batch}, d = {args.d})",
                elements * (3 * 4 + 3 * 8 + 8),
            )
        except ValueError as err:
            _fail(str(err))
    return args


def _scenario_names(text):
    if text == "all":
        return list(SCENARIOS)
    return _names(tuple(SCENARIOS), "scenarios")(text)


def _selected(args):
    names = [n for n in IMPLS if n.split("/")[0] in args.frameworks]
    if args.device != "cuda":
        names = [n for n in names if n not in GPU_ONLY]
    if args.impls:
        names = [
            n
            for n in names
            if any(fnmatch.fnmatchcase(n, pat) or n == pat for pat in args.impls)
        ]
    return names


def _row(name, case, args, devices, status="ok"):
    framework = name.split("/")[0]
    return {
        "impl": name,
        "framework": framework,
        "op": "flash" if name.endswith("_flash") else "sdpa",
        "scenario": case["scenario"],
        "N": case["N"],
        "Lq": case["Lq"],
        "d": args.d,
        "B": args.batch,
        "H": case["H"],
        "Hkv": case["Hkv"],
        "window": case["kw"].get("window"),
        "align": case["kw"].get("align", "top_left"),
        "layout": case["layout"],
        "dtype": case["dtype"],
        "causal": bool(case["kw"]["causal"]),
        "device": devices[framework],
        "times_s": [],
        "time_s": None,
        "gflops": None,
        "gemm_fraction": None,
        "peak_mem_bytes": None,
        "mem_method": None,
        "max_abs_err": None,
        "status": status,
    }


def run(args, progress=True):
    """Run the suite for parsed ``args``; returns the results dict (schema 1)."""
    names = _selected(args)
    frameworks = [f for f in FRAMEWORKS if any(n.startswith(f + "/") for n in names)]
    devices = {f: ("cpu" if f == "numpy" else args.device) for f in frameworks}
    torch_device = None
    if "torch" in frameworks:
        import torch

        torch_device = torch.device(args.device)
    if "tensorflow" in frameworks:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if args.device == "cuda":
            import tensorflow as tf

            # e.g. tensorflow-cpu next to a CUDA torch
            if not tf.config.list_logical_devices("GPU"):
                devices["tensorflow"] = "cpu"

    gemm, gemm_qk = {}, {}
    gemm_n = 256 if args.quick else (8192 if args.device == "cuda" else 2048)
    for f in frameworks:
        for dtype in args.dtypes:
            if f == "numpy" and dtype == "bfloat16":
                continue
            try:
                rates = _gemm_rates(
                    f,
                    dtype,
                    torch_device if f == "torch" else devices[f],
                    gemm_n,
                    args.sizes,
                    args.d,
                )
            # a dtype the framework cannot multiply on this device
            except Exception as err:
                print(f"GEMM {f}/{dtype}: {err}", file=sys.stderr)
                continue
            gemm[f"{f}/{dtype}"] = rates.pop("square")
            gemm_qk[f"{f}/{dtype}"] = {str(n): r for n, r in rates.items()}

    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a nicety; the suite runs without it
        tqdm = None
    total = (
        sum(map(len, args.plan.values()))
        * len(args.dtypes)
        * len(names)
        * (args.warmup + args.repeats + 1)
    )
    bar = (
        tqdm(total=total, desc="attnbook.bench", mininterval=1.0, disable=not progress)
        if tqdm
        else None
    )
    tick = (lambda n=1: bar.update(n)) if bar else (lambda n=1: None)

    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results, last_time, tf_state = [], {}, {}
    for scenario, dtype, n in (
        (sc, dt, n)
        for sc in args.scenarios
        for dt in args.dtypes
        for n in sorted(args.plan[sc])
    ):
        heads = _heads_for(n, args.heads) if SCENARIOS[scenario].heads is None else None
        case = make_case(
            scenario,
            n,
            args.d,
            dtype,
            batch=args.batch,
            heads=heads,
            causal=bool(args.causal),
        )
        reference = _reference(*_rounded(case["inputs"], dtype), case["kw"])
        flops = case["flops"]
        calls, rows = {}, {}
        for name in names:
            row = rows[name] = _row(name, case, args, devices)
            prev = last_time.get((scenario, dtype, name))
            if prev is not None and prev[0] * (n / prev[1]) ** 2 > args.max_seconds:
                row["status"] = (
                    f"skipped: predicted "
                    f"{prev[0] * (n / prev[1]) ** 2:.0f} s per call "
                    f"> --max-seconds {args.max_seconds:g}"
                )
                tick(args.warmup + args.repeats + 1)
                continue
            try:
                framework = name.split("/")[0]
                if framework == "numpy":
                    call, to_numpy = _numpy_impl(name, case)
                elif framework == "torch":
                    call, to_numpy = _torch_impl(name, case, torch_device)
                else:
                    call, to_numpy = _tensorflow_impl(name, case, tf_state)
                out, peak, method = _peak_memory(call, framework, devices[framework])
                row["max_abs_err"] = (
                    float(np.max(np.abs(to_numpy(out) - reference)))
                    if out is not None
                    else None
                )
                row["peak_mem_bytes"], row["mem_method"] = peak, method
                del out
                tick()
                calls[name] = call
            # unsupported kernel/dtype/device: record why, go on
            except Exception as err:
                row["status"] = "skipped: " + _why(err)
                tick(args.warmup + args.repeats + 1)
        for framework in frameworks:
            # Round-robin within a framework: every repeat visits each of its
            # implementations, so load from other processes falls on all of them alike.
            # Frameworks take turns as whole groups: on a small machine the worker
            # threads one runtime leaves spinning (OpenBLAS, OpenMP, Eigen) would
            # otherwise slow the next framework's first calls, most of all
            # implementations made of many small ops. The warm-up calls therefore run
            # here, right before their group is timed, and not earlier with the other
            # frameworks': otherwise the group's first timed sample pays for waking its
            # threads.
            group = []
            for name, call in calls.items():
                if not name.startswith(framework + "/"):
                    continue
                took = None
                for _ in range(args.warmup):
                    t = time.perf_counter()
                    call()
                    took = time.perf_counter() - t
                    tick()
                # Calls of a few milliseconds are timed in loops lasting >=
                # _MIN_SAMPLE_S: one call that short is mostly timer, scheduler and
                # cache noise. The row records the per-call time either way.
                inner = (
                    1
                    if not took
                    else int(min(_MAX_INNER, max(1, math.ceil(_MIN_SAMPLE_S / took))))
                )
                rows[name]["inner_calls"] = inner
                group.append((name, call, inner))
            for rep in range(args.repeats):
                # Rotate the order every repeat: each implementation follows each other
                # one in turn, so none always runs right after, say, the one that just
                # freed a gigabyte of scores.
                for name, call, inner in (
                    group[rep % len(group) :] + group[: rep % len(group)]
                ):
                    t = time.perf_counter()
                    for _ in range(inner):
                        call()
                    rows[name]["times_s"].append((time.perf_counter() - t) / inner)
                    tick()
        for name in calls:
            row = rows[name]
            row["time_s"] = float(np.median(row["times_s"]))
            row["gflops"] = flops / row["time_s"] / 1e9
            rate = gemm.get(f"{row['framework']}/{dtype}")
            row["gemm_fraction"] = row["gflops"] / rate if rate else None
            last_time[(scenario, dtype, name)] = (row["time_s"], n)
        results.extend(rows.values())
        calls.clear()
        gc.collect()
    if bar:
        bar.close()

    meta = {
        "suite": "attnbook.bench",
        "schema": SCHEMA,
        "date": datetime.date.today().isoformat(),
        "device": args.device,
        "device_name": _device_name(args.device),
        "threads": _threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": _versions(),
        "gemm_gflops": gemm,
        "gemm_qk_gflops": gemm_qk,
        "gemm_method": f"square ({gemm_n}, {gemm_n}) @ ({gemm_n}, {gemm_n}) matmul, "
        f"median of 5 after one "
        "warm-up; gemm_qk_gflops: (N, d) @ (d, N) per N",
        "load_average": {
            "start": load_start,
            "end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "args": {k: v for k, v in vars(args).items()},
    }
    if "torch" in frameworks:
        import torch

        meta["torch_threads"] = torch.get_num_threads()
    out = {"meta": meta, "results": results}
    out["checks"] = checks(out)
    return out


def make_case(scenario, n, d, dtype, *, batch=1, heads=None, causal=False):
    """One problem to time: scenario ``scenario`` at ``N = n`` (``heads`` and
    ``causal`` for the scenarios that take them from the command line). Returns the
    dict the implementation factories read: float32 ``inputs`` (query, key, value),
    the attnbook options ``kw``, the shapes and the ``flops`` of one call."""
    sc = SCENARIOS[scenario]
    heads = sc.heads if sc.heads is not None else heads or 1
    kv_heads = heads if sc.kv_heads is None else sc.kv_heads
    causal = causal if sc.causal is None else sc.causal
    q_shape, kv_shape = shapes(sc, batch, heads, n, d)
    rng = np.random.default_rng(n)
    inputs = [
        rng.standard_normal(shape).astype(np.float32)
        for shape in (q_shape, kv_shape, kv_shape)
    ]
    lq = q_shape[-2]
    return {
        "scenario": scenario,
        "N": n,
        "Lq": lq,
        "H": heads,
        "Hkv": kv_heads,
        "dtype": dtype,
        "kw": attnbook_options(sc, causal),
        "layout": sc.layout,
        "inputs": inputs,
        "flops": 4.0 * batch * heads * visible_pairs(sc, lq, n, causal) * d,
    }


def _why(err):
    """One line saying why an implementation could not run: its own message for a
    _Skip, else the exception's type and the informative line of its message
    (TensorFlow's graph errors start with "in user code:")."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    text = (
        (lines[-1] if len(lines) > 1 and lines[0].endswith(":") else lines[0])
        if lines
        else ""
    )
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)[:240]
    return text if isinstance(err, _Skip) else f"{type(err).__name__}: {text}"


def _rounded(inputs, dtype):
    """The inputs as the implementations see them (rounded to ``dtype``), in float64
    numbers."""
    if dtype == "bfloat16":
        import torch

        return [
            torch.from_numpy(a).to(torch.bfloat16).to(torch.float64).numpy()
            for a in inputs
        ]
    return [a.astype(dtype).astype(np.float64) for a in inputs]


# The targets, with their thresholds (the table prints them; issues #5 and #12 set
# them).
TARGETS = {
    "sdpa_vs_peer": "attnbook SDPA time / the fastest same-framework attention's <= 1",
    "flash_vs_naive": "flash_attention vs the materialising path: memory <= 1/16 and "
    "time <= 1.2, at the largest N",
    "gemm_fraction": "the fastest attnbook path reaches >= 0.6 of the same run's GEMM "
    "rate, at N >= 4096",
    "window_linear": "a sliding window's flash time grows linearly: time(16384) / "
    "time(4096) <= 5",
    "gqa_memory": "grouped-query (32/8) and multi-query (32/1) peak memory <= the "
    "32-head MHA row's",
    "tf_memory": "TensorFlow SDPA peak memory <= 1/8 of "
    "keras.ops.dot_product_attention's, at no more time, "
    "at N = 16384",
}
# Targets are statements about long sequences: below this N a row is reported but not
# judged.
_JUDGED_FROM = 1024


def _ratio(a, b):
    return a / b if a is not None and b else None


def checks(res):
    """The targets read off a results dict (see :data:`TARGETS`); each check has
    ``met`` True/False, or None when the run cannot judge it (sizes too small for the
    target, or memory the platform did not measure)."""
    by = {
        (r.get("scenario", "mha"), r["impl"], r["dtype"], r["N"]): r
        for r in res["results"]
        if r["status"] == "ok"
    }
    found = []

    def add(kind, judged, met, **fields):
        found.append(
            {
                "check": kind,
                **fields,
                "met": (bool(met) if met is not None else None) if judged else None,
            }
        )

    largest = {}
    for (sc, impl, dtype, n), row in by.items():
        if impl.endswith("/attnbook_flash"):
            key = sc, row["framework"], dtype
            largest[key] = max(n, largest.get(key, n))
    for (sc, impl, dtype, n), row in sorted(
        by.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][3], kv[0][1])
    ):
        framework = row["framework"]
        if impl == f"{framework}/attnbook_sdpa":
            peers = [
                by[(sc, p, dtype, n)]
                for p in PEERS[framework]
                if (sc, p, dtype, n) in by
            ]
            if peers:
                best = min(peers, key=lambda r: r["time_s"])
                ratio = row["time_s"] / best["time_s"]
                add(
                    "sdpa_vs_peer",
                    n >= _JUDGED_FROM,
                    ratio <= 1.0,
                    scenario=sc,
                    framework=framework,
                    dtype=dtype,
                    N=n,
                    peer=best["impl"],
                    time_ratio=ratio,
                )
        if (
            sc == "mha"
            and impl == f"{framework}/attnbook_flash"
            and (sc, NAIVE[framework], dtype, n) in by
        ):
            naive = by[(sc, NAIVE[framework], dtype, n)]
            mem = _ratio(row["peak_mem_bytes"], naive["peak_mem_bytes"])
            ratio = row["time_s"] / naive["time_s"]
            add(
                "flash_vs_naive",
                n == largest[sc, framework, dtype] and n >= 4096,
                None if mem is None else mem <= 1 / 16 and ratio <= 1.2,
                scenario=sc,
                framework=framework,
                dtype=dtype,
                N=n,
                naive=naive["impl"],
                mem_ratio=mem,
                time_ratio=ratio,
            )
    for sc, framework, dtype, n in sorted(
        {(k[0], by[k]["framework"], k[2], k[3]) for k in by if k[0] == "mha"}
    ):
        ours = [
            by[k]
            for k in by
            if k[0] == sc
            and k[2] == dtype
            and k[3] == n
            and by[k]["framework"] == framework
            and "attnbook" in k[1]
            and by[k].get("gemm_fraction")
        ]
        if ours:
            best = max(ours, key=lambda r: r["gemm_fraction"])
            add(
                "gemm_fraction",
                n >= 4096,
                best["gemm_fraction"] >= 0.6,
                scenario=sc,
                framework=framework,
                dtype=dtype,
                N=n,
                impl=best["impl"],
                fraction=best["gemm_fraction"],
            )
    for (sc, impl, dtype, n), row in by.items():
        if (
            sc == "window256"
            and impl.endswith("/attnbook_flash")
            and n == 16384
            and (sc, impl, dtype, 4096) in by
        ):
            ratio = row["time_s"] / by[(sc, impl, dtype, 4096)]["time_s"]
            add(
                "window_linear",
                True,
                ratio <= 5,
                scenario=sc,
                framework=row["framework"],
                dtype=dtype,
                N=n,
                impl=impl,
                time_ratio=ratio,
            )
        if (
            sc in ("gqa32x8", "mqa32")
            and "attnbook" in impl
            and ("mha32", impl, dtype, n) in by
        ):
            mem = _ratio(
                row["peak_mem_bytes"], by[("mha32", impl, dtype, n)]["peak_mem_bytes"]
            )
            add(
                "gqa_memory",
                n >= _JUDGED_FROM,
                None if mem is None else mem <= 1.0,
                scenario=sc,
                framework=row["framework"],
                dtype=dtype,
                N=n,
                impl=impl,
                mem_ratio=mem,
            )
        if (
            sc == "mha"
            and impl == "tensorflow/attnbook_sdpa"
            and (sc, "tensorflow/keras_dpa", dtype, n) in by
        ):
            keras = by[(sc, "tensorflow/keras_dpa", dtype, n)]
            mem = _ratio(row["peak_mem_bytes"], keras["peak_mem_bytes"])
            ratio = row["time_s"] / keras["time_s"]
            add(
                "tf_memory",
                n >= 16384,
                None if mem is None else mem <= 1 / 8 and ratio <= 1.0,
                scenario=sc,
                framework="tensorflow",
                dtype=dtype,
                N=n,
                mem_ratio=mem,
                time_ratio=ratio,
            )
    return found


def _check_out(folder):
    """Create ``--out`` and prove it writable now, not after the run."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        _fail(f"--out {folder}: is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        _fail(f"--out {folder}: cannot write there ({err.strerror or err})")


def main(argv=None):
    """The command line: parse and check the arguments, run, write ``results.json``
    (and plots), print the table."""
    args = parse_args(argv)
    from . import report

    if not _selected(args):
        _fail(
            f"nothing to run: no implementation of --frameworks "
            f"{','.join(args.frameworks)} matches --impls "
            f"{','.join(args.impls or ['*'])} on {args.device} (FLASH, EFFICIENT and "
            f"CUDNN need --device cuda)"
        )
    _check_out(args.out)
    plots = not args.no_plots and report.can_plot()
    res = run(args)
    paths = report.write(res, args.out, plots=plots)
    print(report.table(res))
    print("wrote " + ", ".join(paths))
    if plots != (not args.no_plots):
        sys.stderr.write(
            f"{PROG}: plots skipped: matplotlib is not installed (pip "
            f"install matplotlib, or pass "
            "--no-plots)\n"
        )
    return res
