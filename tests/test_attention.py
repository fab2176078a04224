"""Every attention function on every backend against the float64 oracle, and the
backends against each other."""

import numpy as np
import pytest

import oracle
from adapters import all_backends
from cases import FUNCTIONS, HAS_BIAS, VARIANTS, make_case, reference, rounded, run

# Max absolute error against the float64 oracle (run on the inputs as rounded to the
# dtype), unit-scale inputs, shapes of a few elements per axis. Reduced-precision rows:
# about 2x the maxima measured over test_reduced_precision's cases with seeds 2..11 on
# all backends (CPU): float16:  sdpa 5.0e-4, additive 7.0e-4, bilinear 8.9e-4,
# multi-head 2.2e-3 bfloat16: sdpa 7.3e-3, additive 5.0e-3, bilinear 7.5e-3, multi-head
# 1.6e-2 Multi-head attention gets its own row because its projections also round to the
# reduced dtype. The package documentation quotes this table.
TOLERANCES = {
    "float64": 1e-10,
    "float32": 1e-5,
    "float16": 2e-3,
    "bfloat16": 1.5e-2,
}
MHA_TOLERANCES = dict(TOLERANCES, float16=4e-3, bfloat16=3e-2)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def check(got, want, dtype, what=""):
    assert got.shape == want.shape, f"{what} shape {got.shape} != {want.shape}"
    assert np.all(np.isfinite(got)), f"{what} has non-finite entries"
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCES[dtype], err_msg=what)


def case_or_skip(fn, variant, **kw):
    case = make_case(fn, variant, **kw)
    assert case is not None
    return case


def fn_variants(variants):
    """(function, variant) pairs, leaving out biases for the functions that take
    none."""
    return [
        (fn, v)
        for fn in FUNCTIONS
        for v in variants
        if "bias" not in v or fn in HAS_BIAS
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn,variant", fn_variants(VARIANTS))
def test_matches_oracle(backend, fn, variant, dtype):
    case = case_or_skip(fn, variant)
    out, weights, native_out, native_w = run(backend, case, dtype)
    want_out, want_w = reference(case)
    check(out, want_out, dtype, "output")
    check(weights, want_w, dtype, "weights")
    assert backend.is_native(native_out) and backend.is_native(native_w)
    assert backend.dtype_name(native_out) == dtype
    assert backend.dtype_name(native_w) == dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "fn,variant", fn_variants(["none", "mask", "causal_mask", "mask_bias"])
)
def test_backends_agree(fn, variant, dtype):
    """One NumPy case converted to each framework and compared back in NumPy."""
    case = case_or_skip(fn, variant, seed=1)
    results = {B.name: run(B, case, dtype)[:2] for B in all_backends()}
    first_out, first_w = results["numpy"]
    for name, (out, weights) in results.items():
        check(out, first_out, dtype, f"{name} output vs numpy")
        check(weights, first_w, dtype, f"{name} weights vs numpy")


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_without_return_weights(backend, fn):
    from cases import convert

    case = make_case(fn, "mask")
    args, kwargs = convert(backend, case, "float64")
    out = getattr(backend.mod, fn)(*args, **kwargs)
    assert backend.is_native(out)
    np.testing.assert_allclose(backend.to_numpy(out), reference(case)[0], atol=1e-10)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    "fn,variant", fn_variants(["none", "causal_mask", "mask_bias"])
)
def test_reduced_precision(backend, fn, variant, dtype):
    case = case_or_skip(fn, variant, seed=2)
    out, weights, native_out, native_w = run(backend, case, dtype)
    want_out, want_w = reference(rounded(backend, case, dtype))
    assert backend.dtype_name(native_out) == dtype
    assert backend.dtype_name(native_w) == dtype
    tol = MHA_TOLERANCES if fn == "multi_head_attention" else TOLERANCES
    np.testing.assert_allclose(out, want_out, rtol=0, atol=tol[dtype], err_msg="output")
    np.testing.assert_allclose(
        weights, want_w, rtol=0, atol=tol[dtype], err_msg="weights"
    )


def test_no_batch_axes_and_broadcast_batch(backend):
    rng = np.random.default_rng(3)
    # rank 2 inputs: no batch axes at all
    q, k, v = rng.normal(size=(4, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    out, w = backend.mod.scaled_dot_product_attention(
        *map(backend.asarray, (q, k, v)), return_weights=True
    )
    want_out, want_w = oracle.scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(backend.to_numpy(out), want_out, atol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(w), want_w, atol=1e-10)
    # leading axes broadcast between query, key and value
    q, k, v = (
        rng.normal(size=(2, 1, 4, 3)),
        rng.normal(size=(1, 3, 5, 3)),
        rng.normal(size=(3, 5, 2)),
    )
    mask = rng.random((3, 4, 5)) < 0.8
    mask[..., 0] = True
    out, w = backend.mod.scaled_dot_product_attention(
        *map(backend.asarray, (q, k, v)),
        mask=backend.asarray(mask),
        return_weights=True,
    )
    want_out, want_w = oracle.scaled_dot_product_attention(q, k, v, mask)
    assert tuple(out.shape) == (2, 3, 4, 2) and tuple(w.shape) == (2, 3, 4, 5)
    np.testing.assert_allclose(backend.to_numpy(out), want_out, atol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(w), want_w, atol=1e-10)


def test_weights_cover_value_batch_axes(backend):
    """weights are (..., Lq, Lk) with ``...`` broadcast over all arguments, the score
    shape the mask is checked against (a mask (2, 3, 4) is accepted here), even when
    only value has the leading axis."""
    rng = np.random.default_rng(14)
    q, k, v = (
        rng.normal(size=(3, 2)),
        rng.normal(size=(4, 2)),
        rng.normal(size=(2, 4, 2)),
    )
    out, w = backend.mod.scaled_dot_product_attention(
        *map(backend.asarray, (q, k, v)), return_weights=True
    )
    assert tuple(out.shape) == (2, 3, 2)
    assert tuple(w.shape) == (2, 3, 4)


@pytest.mark.parametrize("scale", [0.1, 1.0, 2.5])
def test_explicit_scale(backend, scale):
    rng = np.random.default_rng(4)
    q, k, v = (
        rng.normal(size=(2, 4, 3)),
        rng.normal(size=(2, 5, 3)),
        rng.normal(size=(2, 5, 2)),
    )
    out = backend.mod.scaled_dot_product_attention(
        *map(backend.asarray, (q, k, v)), scale=scale
    )
    np.testing.assert_allclose(
        backend.to_numpy(out),
        oracle.scaled_dot_product_attention(q, k, v, scale=scale)[0],
        atol=1e-10,
    )


def test_causal_more_queries_than_keys(backend):
    rng = np.random.default_rng(5)
    q, k, v = rng.normal(size=(6, 3)), rng.normal(size=(3, 3)), rng.normal(size=(3, 2))
    out, w = backend.mod.scaled_dot_product_attention(
        *map(backend.asarray, (q, k, v)), causal=True, return_weights=True
    )
    w = backend.to_numpy(w)
    np.testing.assert_array_equal(w == 0, ~oracle.causal_mask(6, 3))
    np.testing.assert_allclose(
        backend.to_numpy(out),
        oracle.scaled_dot_product_attention(q, k, v, causal=True)[0],
        atol=1e-10,
    )


# --- dropout
# --------------------------------------------------------------------------------------


def _dropout_inputs(B):
    rng = np.random.default_rng(6)
    q, k, v = (
        rng.normal(size=(4, 16, 3)),
        rng.normal(size=(4, 16, 3)),
        rng.normal(size=(4, 16, 5)),
    )
    return [B.asarray(a, "float64") for a in (q, k, v)]


def test_dropout_reproducible_and_scaled(backend):
    args = _dropout_inputs(backend)
    sdpa = backend.mod.scaled_dot_product_attention
    out1, w1 = (
        backend.to_numpy(t)
        for t in sdpa(*args, dropout=0.5, seed=1234, return_weights=True)
    )
    out2, w2 = (
        backend.to_numpy(t)
        for t in sdpa(*args, dropout=0.5, seed=1234, return_weights=True)
    )
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(out1, out2)
    _, w0 = (backend.to_numpy(t) for t in sdpa(*args, return_weights=True))
    assert np.all(w0 > 0)
    dropped = w1 == 0
    assert 0.4 < dropped.mean() < 0.6, dropped.mean()
    np.testing.assert_allclose(w1[~dropped], 2 * w0[~dropped], rtol=1e-12)
    # the output is the weighted sum with the dropped-out weights
    np.testing.assert_allclose(out1, w1 @ backend.to_numpy(args[2]), atol=1e-10)
    _, w3 = (
        backend.to_numpy(t)
        for t in sdpa(*args, dropout=0.5, seed=99, return_weights=True)
    )
    assert not np.array_equal(w1, w3), (
        "a different seed should give a different dropout pattern"
    )


def test_dropout_without_seed_runs(backend):
    args = _dropout_inputs(backend)
    out, w = backend.mod.scaled_dot_product_attention(
        *args, dropout=0.25, return_weights=True
    )
    w = backend.to_numpy(w)
    assert np.all(np.isfinite(w)) and 0.1 < (w == 0).mean() < 0.4


def test_dropout_zero_is_no_dropout(backend):
    args = _dropout_inputs(backend)
    sdpa = backend.mod.scaled_dot_product_attention
    a = sdpa(*args, dropout=0.0, seed=3, return_weights=True)
    b = sdpa(*args, return_weights=True)
    for x, y in zip(a, b, strict=False):
        np.testing.assert_array_equal(backend.to_numpy(x), backend.to_numpy(y))


def test_mha_dropout_reproducible(backend):
    case = make_case("multi_head_attention", "none", lq=8, lk=8)
    from cases import convert

    args, kwargs = convert(backend, case, "float64")
    f = backend.mod.multi_head_attention
    o1, w1 = f(*args, **kwargs, dropout=0.5, seed=7, return_weights=True)
    o2, w2 = f(*args, **kwargs, dropout=0.5, seed=7, return_weights=True)
    np.testing.assert_array_equal(backend.to_numpy(w1), backend.to_numpy(w2))
    np.testing.assert_array_equal(backend.to_numpy(o1), backend.to_numpy(o2))
    w1 = backend.to_numpy(w1)
    assert 0.3 < (w1 == 0).mean() < 0.7
    _, w0 = f(*args, **kwargs, return_weights=True)
    w0 = backend.to_numpy(w0)
    np.testing.assert_allclose(w1[w1 != 0], 2 * w0[w1 != 0], rtol=1e-12)


# --- rows with nothing to attend to
# -----------------------------------------------------------------------------


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_fully_masked_rows_are_zero(backend, fn):
    case = make_case(fn, "mask", lq=4, lk=5)
    mask = case["mask"].copy()
    mask[..., 1, :] = False  # query 1 sees no key, in every batch/head
    case["mask"] = mask
    out, weights, _, _ = run(backend, case, "float32")
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(weights))
    assert np.all(weights[..., 1, :] == 0)
    want_out, want_w = reference(case)
    np.testing.assert_allclose(weights, want_w, atol=1e-5)
    np.testing.assert_allclose(out, want_out, atol=1e-5)
    if fn != "multi_head_attention":
        assert np.all(out[..., 1, :] == 0)


def test_all_masked_by_bias(backend):
    rng = np.random.default_rng(7)
    q, k, v = rng.normal(size=(3, 2)), rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    bias = np.zeros((3, 4))
    bias[0] = -np.inf
    bias[1, :2] = -np.inf
    out, w = backend.mod.scaled_dot_product_attention(
        *map(
            backend.asarray,
            (
                q,
                k,
                v,
            ),
        ),
        bias=backend.asarray(bias),
        return_weights=True,
    )
    out, w = backend.to_numpy(out), backend.to_numpy(w)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(w))
    want_out, want_w = oracle.scaled_dot_product_attention(q, k, v, bias=bias)
    np.testing.assert_allclose(w, want_w, atol=1e-10)
    np.testing.assert_allclose(out, want_out, atol=1e-10)
    assert np.all(w[0] == 0) and np.all(out[0] == 0)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_no_keys(backend, fn):
    case = make_case(fn, "none", lq=3, lk=0)
    out, weights, _, _ = run(backend, case, "float32")
    want_out, want_w = reference(case)
    assert out.shape == want_out.shape and weights.shape == want_w.shape
    np.testing.assert_allclose(out, want_out, atol=1e-6)
    if fn != "multi_head_attention":
        assert out.shape == (2, 3, 3, 2) and np.all(out == 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_logits(backend, dtype):
    """Scores of magnitude 1e4 (scale=1, entries ~100) stay finite and one-hot, as in
    the oracle."""
    q = 100 * np.eye(4)
    k = 100 * np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1], [0.5, 0, 0, 0]]
    )
    v = np.random.default_rng(8).normal(size=(5, 3))
    out, w = backend.mod.scaled_dot_product_attention(
        *[backend.asarray(a, dtype) for a in (q, k, v)], scale=1.0, return_weights=True
    )
    out, w = backend.to_numpy(out), backend.to_numpy(w)
    want_out, want_w = oracle.scaled_dot_product_attention(q, k, v, scale=1.0)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(w))
    np.testing.assert_allclose(w, want_w, atol=TOLERANCES[dtype])
    np.testing.assert_allclose(out, want_out, atol=TOLERANCES[dtype])
    assert w[0, 0] == 1 and w[3, 3] == 0


# --- softmax
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax(backend, dtype):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 3, 5)) * 3
    mask = rng.random((3, 5)) < 0.6
    mask[1] = False  # a fully masked slice
    mask[0, 0] = True
    sm = backend.mod.softmax
    got = backend.to_numpy(sm(backend.asarray(x, dtype), mask=backend.asarray(mask)))
    np.testing.assert_allclose(
        got, oracle.softmax(x, mask=mask), atol=TOLERANCES[dtype]
    )
    assert np.all(got[:, ~mask] == 0), "masked entries must be exactly 0"
    sums = got.sum(-1)
    np.testing.assert_allclose(sums[:, [0, 2]], 1, atol=TOLERANCES[dtype])
    assert np.all(sums[:, 1] == 0)
    shifted = backend.to_numpy(
        sm(backend.asarray(x + 1000.0, dtype), mask=backend.asarray(mask))
    )
    np.testing.assert_allclose(shifted, got, atol=1e-4 if dtype == "float32" else 1e-10)
    plain = sm(backend.asarray(x, dtype))
    assert backend.dtype_name(plain) == dtype
    np.testing.assert_allclose(
        backend.to_numpy(plain), oracle.softmax(x), atol=TOLERANCES[dtype]
    )


@pytest.mark.parametrize("axis", [0, 1, -2, 2])
def test_softmax_axis(backend, axis):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(3, 4, 2))
    mask = rng.random((3, 4, 2)) < 0.7
    got = backend.to_numpy(
        backend.mod.softmax(backend.asarray(x), axis=axis, mask=backend.asarray(mask))
    )
    np.testing.assert_allclose(got, oracle.softmax(x, axis=axis, mask=mask), atol=1e-12)
    got = backend.to_numpy(backend.mod.softmax(backend.asarray(x), axis=axis))
    np.testing.assert_allclose(got.sum(axis), 1, atol=1e-12)


def test_softmax_extremes(backend):
    x = np.array(
        [
            [1e4, -1e4, 0.0],
            [-np.inf, -np.inf, -np.inf],
            [-np.inf, 0.0, 0.0],
            [-1e30, -1e30, -1e30],
        ]
    )
    got = backend.to_numpy(backend.mod.softmax(backend.asarray(x, "float32")))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, oracle.softmax(x), atol=1e-6)
    np.testing.assert_array_equal(got[1], 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_softmax_reduced(backend, dtype):
    x = np.random.default_rng(11).normal(size=(3, 7)) * 4
    t = backend.asarray(x, dtype)
    got = backend.mod.softmax(t)
    assert backend.dtype_name(got) == dtype
    np.testing.assert_allclose(
        backend.to_numpy(got),
        oracle.softmax(backend.to_numpy(t)),
        atol=TOLERANCES[dtype],
    )


# --- masks and positional encodings
# ------------------------------------------------------------------------------


@pytest.mark.parametrize("lq,lk", [(3, None), (3, 5), (5, 3), (1, 1), (0, 2)])
def test_causal_mask(backend, lq, lk):
    m = backend.mod.causal_mask(lq, lk)
    assert backend.is_native(m) and backend.dtype_name(m) == "bool"
    np.testing.assert_array_equal(backend.to_numpy(m), oracle.causal_mask(lq, lk))


def test_padding_mask(backend):
    lengths = backend.asarray(np.array([2, 0, 3]), "int64")
    m = backend.mod.padding_mask(lengths)
    assert backend.dtype_name(m) == "bool"
    want = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]], bool)
    np.testing.assert_array_equal(backend.to_numpy(m), want)
    m = backend.to_numpy(backend.mod.padding_mask(lengths, max_len=5))
    np.testing.assert_array_equal(
        m, np.arange(5)[None, :] < np.array([2, 0, 3])[:, None]
    )
    m32 = backend.to_numpy(
        backend.mod.padding_mask(backend.asarray(np.array([1, 2]), "int32"), max_len=2)
    )
    np.testing.assert_array_equal(m32, [[True, False], [True, True]])


def test_padding_mask_drives_attention(backend):
    """The documented recipe m[:, None, :] masks padded keys of (B, Lq, Lk) scores."""
    rng = np.random.default_rng(12)
    q, k, v = (
        rng.normal(size=(3, 2, 4)),
        rng.normal(size=(3, 5, 4)),
        rng.normal(size=(3, 5, 2)),
    )
    lengths = np.array([5, 2, 1])
    m = backend.mod.padding_mask(backend.asarray(lengths, "int64"))
    m = m[:, None, :]
    out = backend.mod.scaled_dot_product_attention(
        *map(backend.asarray, (q, k, v)), mask=m
    )
    want = oracle.scaled_dot_product_attention(
        q, k, v, mask=np.arange(5)[None, None, :] < lengths[:, None, None]
    )
    np.testing.assert_allclose(backend.to_numpy(out), want[0], atol=1e-10)


def test_mask_conversions(backend):
    keep = np.array([[1, 0, 1], [0, 0, 1]])
    m = backend.mod.mask_from_keep(backend.asarray(keep, "int64"))
    assert backend.dtype_name(m) == "bool"
    np.testing.assert_array_equal(backend.to_numpy(m), keep == 1)
    m = backend.mod.mask_from_keep(backend.asarray(keep == 1))
    np.testing.assert_array_equal(backend.to_numpy(m), keep == 1)
    with pytest.raises(ValueError):
        backend.mod.mask_from_keep(backend.asarray(np.array([0, 1, 2]), "int64"))

    ignore = np.array([[True, False], [False, False]])
    m = backend.mod.mask_from_ignore(backend.asarray(ignore))
    assert backend.dtype_name(m) == "bool"
    np.testing.assert_array_equal(backend.to_numpy(m), ~ignore)

    add = np.array([0.0, -np.inf, -1e9, -1e4, np.finfo(np.float32).min, -5.0, -0.5])
    m = backend.mod.mask_from_additive(backend.asarray(add, "float32"))
    assert backend.dtype_name(m) == "bool"
    np.testing.assert_array_equal(
        backend.to_numpy(m), [True, False, False, False, False, True, True]
    )
    m = backend.mod.mask_from_additive(backend.asarray(add, "float32"), threshold=-1.0)
    np.testing.assert_array_equal(
        backend.to_numpy(m), [True, False, False, False, False, False, True]
    )


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_mask_to_additive_round_trip(backend, dtype):
    mask = np.array([[True, False, True], [False, False, True]])
    if backend.name == "numpy" and dtype == "bfloat16":
        with pytest.raises(ValueError, match="bfloat16 is not available in NumPy"):
            backend.mod.mask_to_additive(mask, dtype=dtype)
        return
    add = backend.mod.mask_to_additive(backend.asarray(mask), dtype=dtype)
    assert backend.dtype_name(add) == dtype
    a = backend.to_numpy(add)
    np.testing.assert_array_equal(a, np.where(mask, 0.0, -np.inf))
    back = backend.mod.mask_from_additive(add)
    np.testing.assert_array_equal(backend.to_numpy(back), mask)
    default = backend.mod.mask_to_additive(backend.asarray(mask))
    assert backend.dtype_name(default) == "float32"


def test_additive_mask_as_bias_equals_mask(backend):
    rng = np.random.default_rng(13)
    q, k, v = rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    mask = rng.random((4, 5)) < 0.6
    mask[:, 0] = True
    args = [backend.asarray(a, "float32") for a in (q, k, v)]
    bias = backend.mod.mask_to_additive(backend.asarray(mask))
    a = backend.mod.scaled_dot_product_attention(*args, bias=bias)
    b = backend.mod.scaled_dot_product_attention(*args, mask=backend.asarray(mask))
    np.testing.assert_allclose(backend.to_numpy(a), backend.to_numpy(b), atol=1e-6)


@pytest.mark.parametrize("length,d_model", [(7, 8), (5, 7), (1, 1), (0, 4), (6, 3)])
def test_sinusoidal_positional_encoding(backend, length, d_model):
    pe = backend.mod.sinusoidal_positional_encoding(length, d_model)
    assert backend.dtype_name(pe) == "float32"
    np.testing.assert_allclose(
        backend.to_numpy(pe),
        oracle.sinusoidal_positional_encoding(length, d_model),
        atol=1e-6,
    )


def test_sinusoidal_base_and_dtype(backend):
    pe = backend.mod.sinusoidal_positional_encoding(9, 6, base=100.0, dtype="float64")
    assert backend.dtype_name(pe) == "float64"
    np.testing.assert_allclose(
        backend.to_numpy(pe),
        oracle.sinusoidal_positional_encoding(9, 6, base=100.0),
        atol=1e-12,
    )
    # the formula by hand for one entry: p = 3, column 3 = cos(3 / 100^(2/6))
    np.testing.assert_allclose(
        backend.to_numpy(pe)[3, 3], np.cos(3 / 100 ** (2 / 6)), atol=1e-12
    )
