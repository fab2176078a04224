"""The generated input matrix (tests/matrix.py): every public function and layer x
every argument.

For each case the three twins must do the same thing: the same result (within the
    dtype's tolerance, NaN and inf in
the same places), or the same exception type with the same message, which names the
argument that was changed and is a TypeError or ValueError (never a framework's own
error, a ZeroDivisionError or an OverflowError). Results that all three agree on are
also checked against the float64 oracle, so that three twins wrong in the same way
fail too.
"""

import collections
import concurrent.futures
import inspect
import warnings

import numpy as np
import pytest

import matrix
import oracle
from adapters import all_backends, framework, get
from attnbook import _api

CASES = matrix.every_case()
LAYER_CASES = matrix.layer_cases()
BY_FN = collections.defaultdict(list)
for _c in CASES + LAYER_CASES:
    BY_FN[_c.fn].append(_c)

# Planted extremes overflow on purpose; NumPy says so with RuntimeWarnings.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# NumPy has no bfloat16 dtype: asked for one by name (a dtype argument), the NumPy twin
# refuses with this message and the other two twins are compared with each other.
NUMPY_NO_BF16 = "dtype bfloat16 is not available in NumPy"


def _problems(case, outcomes):
    found = []
    pairs = [("numpy", "torch"), ("numpy", "tensorflow")]
    if outcomes["numpy"].kind == "raise" and NUMPY_NO_BF16 in outcomes["numpy"].message:
        pairs = [("torch", "tensorflow")]
    for a, b in pairs:
        d = matrix.differ(outcomes[a], outcomes[b], case.random, case.lenient)
        if d:
            found.append(f"{a} vs {b}: {d}")
    for name, o in outcomes.items():
        if not matrix.is_clear(o):
            found.append(
                f"{name}: not a clear TypeError/ValueError: {o.describe()[:500]}"
            )
        elif o.kind == "raise" and not matrix.names_argument(case, o.message):
            found.append(
                f"{name}: the message does not name {case.arg!r}: {o.message[:300]}"
            )
    if not found and outcomes["numpy"].kind == "ok":
        found += _against_oracle(case, outcomes["numpy"])
    return found


ORACLE = {
    "scaled_dot_product_attention": oracle.attention,
    "flash_attention": oracle.attention,
    "additive_attention": oracle.additive_attention,
    "bilinear_attention": oracle.bilinear_attention,
    "multi_head_attention": oracle.multi_head_attention,
    "softmax": oracle.softmax,
}


def _rounded(a):
    """The float64 values an array holds in the case's dtype."""
    if a.dtype == "bfloat16":
        import ml_dtypes

        return (
            np.asarray(a.value, np.float32)
            .astype(ml_dtypes.bfloat16)
            .astype(np.float64)
        )
    return np.asarray(a.value).astype(a.dtype).astype(np.float64)


def _against_oracle(case, got):
    """Compare an agreed result with the oracle when the case is plain arithmetic (no
    planted extremes, no dropout, float inputs)."""
    if (
        case.fn not in ORACLE
        or case.random
        or case.lenient
        or any(t in case.label for t in ("first=", "all=m", "all=-inf"))
    ):
        return []
    args = dict(case.args)
    floats = [v for k, v in args.items() if isinstance(v, matrix.Arr) and k != "mask"]
    if isinstance(args.get("params"), matrix.Params):
        floats += [v for _, v in args["params"].entries]
    if not floats or any(v.dtype not in matrix.FLOAT_DTYPES for v in floats):
        return []
    kw = {
        k: (
            _rounded(v)
            if isinstance(v, matrix.Arr) and v.dtype != "bool"
            else v.value
            if isinstance(v, matrix.Arr)
            else v.value
            if isinstance(v, matrix.Raw)
            else {n: _rounded(e) for n, e in v.entries}
        )
        for k, v in args.items()
    }
    fn = case.fn
    for drop in ("return_weights", "return_lse", "block_size", "dropout", "seed"):
        kw.pop(drop, None)
    if fn == "softmax":
        want = [oracle.softmax(kw["x"], axis=kw.get("axis", -1), mask=kw.get("mask"))]
    else:
        want = list(ORACLE[fn](**kw))
    n = len(got.value)
    # (output, log-sum-exp) of (output, weights, log-sum-exp)
    if fn == "flash_attention":
        want = [want[0], want[2]]
    want = want[:n]
    dtype = floats[0].dtype
    tol = (
        10 * matrix.TOLERANCE[dtype]
        if fn == "multi_head_attention" and dtype in ("float16", "bfloat16")
        else matrix.TOLERANCE[dtype]
    )
    for i, (g, w) in enumerate(zip(got.value, want, strict=False)):
        w = np.broadcast_to(w, np.shape(g))
        finite = np.isfinite(w)
        if not (
            np.array_equal(finite, np.isfinite(g))
            and np.allclose(g[finite], w[finite], rtol=tol, atol=tol)
        ):
            return [
                f"all twins agree but result {i} differs from the float64 "
                f"oracle:\n{g}\nvs\n{w}"
            ]
    return []


def _run_all(cases):
    backends = all_backends()
    failures = []
    with warnings.catch_warnings():
        # overflow in the cases that plant extreme values
        warnings.simplefilter("ignore", RuntimeWarning)
        for case in cases:
            outcomes = {B.name: matrix.run(B, case) for B in backends}
            found = _problems(case, outcomes)
            if found:
                failures.append(f"{case.id}  {case.args}\n    " + "\n    ".join(found))
    return failures


@pytest.mark.parametrize("fn", sorted(BY_FN))
def test_twins_agree(fn):
    failures = _run_all(BY_FN[fn])
    assert not failures, (
        f"{len(failures)} of {len(BY_FN[fn])} cases disagree:\n"
        + "\n".join(failures[:20])
    )


def test_matrix_size():
    """The matrix covers every function and layer, and is as large as the note says."""
    assert set(BY_FN) == set(_api.SPECS) | set(matrix.LAYERS)
    assert len(CASES) + len(LAYER_CASES) > 3500


def test_every_argument_has_a_kind():
    """A new argument of the spec or of a layer needs a kind (and so its mutations)
    before it can ship."""
    import attnbook.numpy as an

    names = {
        n for spec in _api.SPECS.values() for n in inspect.signature(spec).parameters
    }
    for sigs in matrix.layer_signatures(an).values():
        names |= set(sigs["init"].parameters) | set(sigs["call"].parameters)
    missing = sorted(n for n in names if n not in matrix.KINDS and n != "training")
    assert not missing, f"arguments without a kind in tests/matrix.py: {missing}"


def test_layer_signatures_agree():
    """The layers of the three twins take the same constructor and call arguments,
    with the same defaults."""
    sigs = {B.name: matrix.layer_signatures(B.mod) for B in all_backends()}
    for layer in matrix.LAYERS:
        for part in ("init", "call"):
            got = {name: str(s[layer][part]) for name, s in sigs.items()}
            assert len(set(got.values())) == 1, f"{layer} {part}: {got}"


# --- TensorFlow graphs: unknown sizes and unknown ranks
# ---------------------------------------------------------------

ARRAY_KINDS = {
    "input",
    "weight",
    "mask",
    "bias",
    "params",
    "lengths",
    "keep",
    "bool_array",
}
GRAPH_FUNCTIONS = sorted(
    fn
    for fn, spec in _api.SPECS.items()
    if any(matrix.KINDS[n] in ARRAY_KINDS for n in inspect.signature(spec).parameters)
)


# What changes the code a graph traces: sizes, ranks, masks, biases, sinks, the key
# structure, grouping and the float dtypes. Other mutations (planted values, scalars,
# wrong types) run the same traced code as their baseline, so the graph tests leave them
# to the eager matrix, which keeps this part of the suite to about a minute.
_GRAPH_KEEP = (
    "baseline",
    ":B=",
    ":Lq=",
    ":Lk=",
    ":d=",
    ":dv=",
    "mask=",
    "bias=",
    "sink=",
    "window=",
    "align=",
    "enable_gqa=",
    "causal=",
    ":all=float",
    ":all=bfloat16",
    "positions=",
    "segments",
    "lengths=",
    "keep=",
    "extra_axis",
    "last_axis",
    "rank1",
)
_GRAPH_SKIP = (
    "first=",
    "all=max",
    "all=min",
    "all=-inf",
    "not_array",
    "dtype_int",
    "dtype_uint",
    "dtype_bool",
    "dtype_complex",
    "python_bool",
)


# valid cases traced per changed argument (and per baseline for sizes)
_GRAPH_PER_ARGUMENT = 6


def _graph_cases(fn):
    """The cases a tf.function can take as tensors: every array argument a plain
    tensor, the case valid eagerly."""
    return [
        c
        for c in BY_FN[fn]
        if not c.random
        and "grad" not in c.label
        and all(
            not (isinstance(v, matrix.Arr) and v.flavor != "plain")
            for v in c.args.values()
        )
        and any(isinstance(v, matrix.Arr) for v in c.args.values())
        and "rank0" not in c.label
        and any(k in c.label for k in _GRAPH_KEEP)
        and not any(k in c.label for k in _GRAPH_SKIP)
    ]


@pytest.mark.parametrize("unknown", ["all", "batch"])
@pytest.mark.parametrize("fn", GRAPH_FUNCTIONS)
def test_tensorflow_graph_with_unknown_sizes(fn, unknown):
    """Inside tf.function with every size unknown (TensorSpec([None, ...])), or only
    the batch axes (all but the last two), a call that works eagerly gives the same
    result, or a clear error that says which sizes must be known when the function is
    traced (only flash_attention has one: its lengths)."""
    tf = framework("tensorflow")
    B = get("tensorflow")

    def spec(a):
        shape = (
            [None] * a.value.ndim
            if unknown == "all"
            else [None] * max(a.value.ndim - 2, 0) + list(a.value.shape[-2:])
        )
        return tf.TensorSpec(shape, _tf_dtype(tf, a))

    failures, tried, refused = [], 0, 0
    per_argument = collections.Counter()
    for case in _graph_cases(fn):
        # an argument, or a size letter
        changed = case.arg or case.label.split(":")[1].split("=")[0]
        if per_argument[changed] >= _GRAPH_PER_ARGUMENT:
            continue
        eager = matrix.run(B, case)
        if eager.kind != "ok":
            continue
        per_argument[changed] += 1
        tried += 1
        graph = _in_graph(tf, B, case, spec)
        if graph.kind == "raise":
            refused += 1
            # Two sizes must be known when the graph is traced, and say so:
            # flash_attention's lengths (its tiles are laid out in Python) and, with
            # enable_gqa, the head counts on axis -3.
            if not (
                graph.exc is ValueError
                and "when a tf.function is traced" in graph.message
                and (
                    (fn == "flash_attention" and unknown == "all")
                    or "enable_gqa" in graph.message
                )
            ):
                failures.append(f"{case.id}: {graph.describe()[:400]}")
        elif matrix.differ(eager, graph, lenient=case.lenient):
            failures.append(
                f"{case.id}: {matrix.differ(eager, graph, lenient=case.lenient)[:400]}"
            )
    assert tried > refused or (fn, unknown) == ("flash_attention", "all")
    assert not failures, f"{len(failures)} of {tried} cases:\n" + "\n".join(
        failures[:15]
    )


@pytest.mark.parametrize("fn", GRAPH_FUNCTIONS)
def test_tensorflow_graph_with_unknown_rank(fn):
    """With an unknown rank (TensorSpec(None)), every function raises a ValueError
    naming the argument."""
    tf = framework("tensorflow")
    B = get("tensorflow")
    case = next(c for c in _graph_cases(fn) if c.label.endswith("baseline"))
    got = _in_graph(tf, B, case, lambda a: tf.TensorSpec(None, _tf_dtype(tf, a)))
    assert got.exc is ValueError and "unknown rank" in got.message, got.describe()
    first = next(k for k, v in case.args.items() if isinstance(v, matrix.Arr))
    assert first in got.message


def _tf_dtype(tf, a):
    return tf.bfloat16 if a.dtype == "bfloat16" else tf.as_dtype(a.dtype)


def _in_graph(tf, B, case, spec):
    names = [k for k, v in case.args.items() if isinstance(v, matrix.Arr)]
    signature = [spec(case.args[k]) for k in names]

    def body(*tensors):
        args = dict(case.args)
        args.update({k: matrix.Given(t) for k, t in zip(names, tensors, strict=False)})
        return matrix.call_on(B, case, args)()

    fn = tf.function(body, input_signature=signature, autograph=False)
    return matrix.outcome(lambda: fn(*[matrix.native(B, case.args[k]) for k in names]))


# --- torch: meta tensors and tensors that require grad
# ------------------------------------------------------------

META_FUNCTIONS = [
    "softmax",
    "scaled_dot_product_attention",
    "flash_attention",
    "additive_attention",
    "bilinear_attention",
    "multi_head_attention",
    "mask_from_ignore",
    "mask_to_additive",
]


@pytest.mark.parametrize("fn", META_FUNCTIONS)
def test_torch_meta_tensors(fn):
    """On the meta device (shapes without data, as torch.compile and FLOP counters
    use), the attention functions give results of the same shapes and dtypes as on
    the CPU."""
    torch = framework("torch")
    B = get("torch")
    failures, tried = [], 0
    for case in BY_FN[fn]:
        cpu = matrix.run(B, case)
        if cpu.kind != "ok" or case.random:
            continue
        tried += 1

        def on_meta(B_, value):
            x = matrix.native(B_, value)
            return x.to("meta") if isinstance(x, torch.Tensor) else x

        args = {
            k: matrix.Given(on_meta(B, v))
            if isinstance(v, (matrix.Arr, matrix.Params))
            else v
            for k, v in case.args.items()
        }
        if isinstance(case.args.get("params"), matrix.Params):
            args["params"] = matrix.Given(
                {n: on_meta(B, e) for n, e in case.args["params"].entries}
            )
        meta = matrix.outcome(matrix.call_on(B, case, args))
        if meta.kind != "ok":
            failures.append(f"{case.id}: {meta.describe()[:300]}")
        elif meta.dtypes != cpu.dtypes or [np.shape(v) for v in meta.value] != [
            np.shape(v) for v in cpu.value
        ]:
            failures.append(f"{case.id}: {meta.describe()} vs {cpu.describe()}")
    assert tried > 0
    assert not failures, f"{len(failures)} of {tried} cases:\n" + "\n".join(
        failures[:15]
    )


@pytest.mark.parametrize(
    "fn",
    [
        "scaled_dot_product_attention",
        "flash_attention",
        "additive_attention",
        "bilinear_attention",
        "multi_head_attention",
    ],
)
def test_gradients_flow_for_tensors_that_require_grad(fn):
    """Every case whose inputs require grad in torch (tf.Variable in TensorFlow) can
    be differentiated, and gives finite gradients where its inputs are finite."""
    torch = framework("torch")
    B = get("torch")
    tried = 0
    for case in BY_FN[fn]:
        if "grad" not in case.label or case.lenient:
            continue
        args = {
            k: matrix.Given(matrix.native(B, v))
            if isinstance(v, (matrix.Arr, matrix.Params))
            else v
            for k, v in case.args.items()
        }
        res = matrix.call_on(B, case, args)()
        out = res[0] if isinstance(res, tuple) else res
        leaves = [
            a.value
            for a in args.values()
            if isinstance(a, matrix.Given)
            and isinstance(a.value, torch.Tensor)
            and a.value.requires_grad
        ]
        if isinstance(args.get("params"), matrix.Given):
            leaves += [t for t in args["params"].value.values() if t.requires_grad]
        grads = torch.autograd.grad(out.sum(), leaves)
        assert all(torch.isfinite(g).all() for g in grads), case.id
        tried += 1
    assert tried > 0


# --- threads and dispatchers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["numpy", "torch", "tensorflow"])
def test_concurrent_calls_from_threads(name):
    """Eight threads calling the same function at once get the results of calling it
    one at a time."""
    B = get(name)
    cases = [
        c
        for c in BY_FN["scaled_dot_product_attention"] + BY_FN["flash_attention"]
        if c.label.endswith("baseline")
    ]
    serial = [matrix.run(B, c) for c in cases] * 4
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda c: matrix.run(B, c), cases * 4))
    for c, a, b in zip(cases * 4, serial, threaded, strict=False):
        assert matrix.differ(a, b) is None, c.id


@pytest.mark.parametrize("fn", sorted(_api.SPECS))
def test_dispatcher_matches_the_twin(fn):
    """``attnbook.<fn>`` on native arrays does what the twin of their framework does,
    case by case."""
    import attnbook

    failures = []
    for B in all_backends():
        for case in [c for c in BY_FN[fn] if not c.random][:40]:
            twin = matrix.run(B, case)
            if any(isinstance(v, matrix.Arr) for v in case.args.values()):
                via = matrix.outcome(
                    lambda: matrix._call_positional(
                        getattr(attnbook, fn),
                        inspect.signature(_api.SPECS[fn]),
                        case.args,
                        B,
                    )
                )
            else:
                via = matrix.outcome(
                    lambda: matrix._call_positional(
                        lambda *a, **k: getattr(attnbook, fn)(*a, backend=B.name, **k),
                        inspect.signature(_api.SPECS[fn]),
                        case.args,
                        B,
                    )
                )
            d = matrix.differ(twin, via, lenient=case.lenient)
            if d:
                failures.append(f"{B.name} {case.id}: {d[:300]}")
    assert not failures, "\n".join(failures[:15])


@pytest.mark.parametrize(
    "backend_name,exc",
    [("jax", ValueError), ("", ValueError), (3, ValueError), ("NumPy", ValueError)],
)
def test_dispatcher_refuses_unknown_backends(backend_name, exc):
    import attnbook

    with pytest.raises(exc, match="backend"):
        attnbook.causal_mask(3, backend=backend_name)
