"""Regression tests for the defects of the hardening audit (issue #11), each in all
three twins.

Each test failed before the fix in at least one twin (the twin named in its
docstring) and passes in all three after it; tests/test_matrix.py then guards the
whole class of inputs each one belongs to.
"""

import numpy as np
import pytest

from adapters import framework, get

F32 = np.float32


def _sdpa(B, q, k, v, **kw):
    kw = {n: B.asarray(x) if isinstance(x, np.ndarray) else x for n, x in kw.items()}
    return B.to_numpy(
        B.mod.scaled_dot_product_attention(
            B.asarray(q), B.asarray(k), B.asarray(v), **kw
        )
    )


@pytest.mark.parametrize("path", ["fast", "weights", "flash"])
@pytest.mark.parametrize("extreme", ["finfo.min", "score_overflow"])
def test_1_only_allowed_key_at_finfo_min_is_still_the_only_one(backend, path, extreme):
    """#1 (TensorFlow's fast path): masked scores were replaced by finfo.min, so an
    allowed key whose score was finfo.min (the Hugging Face padding bias) or lower
    tied with them, and row 0 attended to future keys."""
    q = k = np.full((1, 3, 2), 0.1, F32)
    v = np.eye(3, dtype=F32)[None]
    bias = np.array([np.finfo(F32).min, 0, 0], F32)
    # finfo.min plus a negative score: the sum rounds back to finfo.min
    if extreme == "score_overflow":
        k = np.array([[[-1.0, -1.0], [0.1, 0.1], [0.1, 0.1]]], F32)
    kw = {"bias": bias, "causal": True}
    if path == "flash":
        out = backend.to_numpy(
            backend.mod.flash_attention(
                *(backend.asarray(a) for a in (q, k, v)),
                bias=backend.asarray(bias),
                causal=True,
            )
        )
    elif path == "weights":
        res = backend.mod.scaled_dot_product_attention(
            *(backend.asarray(a) for a in (q, k, v)),
            bias=backend.asarray(bias),
            causal=True,
            return_weights=True,
        )
        out = backend.to_numpy(res[0])
    else:
        out = _sdpa(backend, q, k, v, **kw)
    np.testing.assert_array_equal(out[0, 0], [1.0, 0.0, 0.0])


def test_2_padding_mask_inside_tf_function():
    """#2 (TensorFlow): under tf.function with an unknown batch size padding_mask
    returned an all-False (B, 0) mask; with a static shape it raised an unrelated
    TypeError. max_len is now a tensor in graph mode."""
    tf = framework("tensorflow")
    B = get("tensorflow")
    lengths = np.array([1, 3, 0, 2], np.int32)
    want = np.arange(3)[None, :] < lengths[:, None]
    for shape in ([None], [4]):
        fn = tf.function(
            B.mod.padding_mask, input_signature=[tf.TensorSpec(shape, tf.int32)]
        )
        np.testing.assert_array_equal(fn(tf.constant(lengths)).numpy(), want)
    fixed = tf.function(
        lambda x: B.mod.padding_mask(x, 5),
        input_signature=[tf.TensorSpec([None], tf.int32)],
    )
    assert fixed(tf.constant(lengths)).shape == (4, 5)


def test_2_padding_mask_agrees_across_twins(backend):
    lengths = np.array([1, 3, 0, 2], np.int32)
    got = backend.to_numpy(backend.mod.padding_mask(backend.asarray(lengths)))
    np.testing.assert_array_equal(got, np.arange(3)[None, :] < lengths[:, None])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_3_reduced_precision_fast_path_keeps_a_float32_bias(backend, dtype):
    """#3 (PyTorch's fast path): a float32 bias was cast to float16/bfloat16 before
    the fused kernel, so bfloat16 weights were off by 0.05 and a bias beyond
    float16's range turned a row to zeros. The fast path now equals the explicit path
    (softmax in float32 of the float32 bias)."""
    q = backend.asarray(np.zeros((1, 1, 2)), dtype)
    k = backend.asarray(np.zeros((1, 2, 2)), dtype)
    v = backend.asarray(np.eye(2)[None], dtype)
    for b in ([[100.0, 100.3]], [[1e5, 1e5 + 0.3]], [[-1e5, -1e5 + 0.3]]):
        bias = backend.asarray(np.array(b, F32))
        fast = backend.to_numpy(
            backend.mod.scaled_dot_product_attention(q, k, v, bias=bias)
        )
        explicit = backend.to_numpy(
            backend.mod.scaled_dot_product_attention(
                q, k, v, bias=bias, return_weights=True
            )[0]
        )
        want = np.exp([0.0, 0.3]) / np.exp([0.0, 0.3]).sum()
        np.testing.assert_allclose(fast[0, 0], explicit[0, 0], atol=0)
        np.testing.assert_allclose(
            fast[0, 0], want, atol=8e-3 if dtype == "bfloat16" else 1e-3
        )


@pytest.mark.parametrize("fn", ["scaled_dot_product_attention", "flash_attention"])
def test_4_zero_size_batch(backend, fn):
    """#4 (NumPy): the blocked fast path divided by batch * Lk, ZeroDivisionError on
    a batch of 0."""
    z = backend.asarray(np.zeros((0, 3, 4), F32))
    out = getattr(backend.mod, fn)(z, z, z)
    assert tuple(out.shape) == (0, 3, 4)


@pytest.mark.parametrize("value", [True, False])
def test_5_zero_dimensional_mask(backend, value):
    """#5 (TensorFlow): a 0-d boolean mask crashed the fast path's reduction over the
    key axis."""
    rng = np.random.default_rng(0)
    q, k, v = (
        rng.normal(size=s).astype(F32) for s in ((2, 3, 4), (2, 5, 4), (2, 5, 6))
    )
    got = _sdpa(backend, q, k, v, mask=np.array(value))
    want = _sdpa(get("numpy"), q, k, v) if value else np.zeros((2, 3, 6))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_6_tf_function_with_unknown_sizes():
    """#6 (TensorFlow): under tf.function SDPA failed when d was unknown and
    scale=None, flash_attention when the batch was unknown, an unknown rank failed
    with an unrelated message and mask_from_keep could not be traced."""
    tf = framework("tensorflow")
    B = get("tensorflow")
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(F32)
    want = _sdpa(get("numpy"), x, x, x)
    sdpa = tf.function(
        lambda t: B.mod.scaled_dot_product_attention(t, t, t),
        input_signature=[tf.TensorSpec([None, None, None], tf.float32)],
    )
    np.testing.assert_allclose(sdpa(tf.constant(x)).numpy(), want, atol=1e-6)
    flash = tf.function(
        lambda t: B.mod.flash_attention(t, t, t),
        input_signature=[tf.TensorSpec([None, 3, None], tf.float32)],
    )
    np.testing.assert_allclose(flash(tf.constant(x)).numpy(), want, atol=1e-6)
    lengths_unknown = tf.function(
        lambda t: B.mod.flash_attention(t, t, t),
        input_signature=[tf.TensorSpec([None, None, 4], tf.float32)],
    )
    with pytest.raises(ValueError, match="flash_attention needs the lengths Lq and Lk"):
        lengths_unknown(tf.constant(x))
    rank_unknown = tf.function(
        lambda t: B.mod.scaled_dot_product_attention(t, t, t),
        input_signature=[tf.TensorSpec(None, tf.float32)],
    )
    with pytest.raises(ValueError, match="query has an unknown rank"):
        rank_unknown(tf.constant(x))
    keep = tf.function(
        B.mod.mask_from_keep, input_signature=[tf.TensorSpec([None], tf.int32)]
    )
    np.testing.assert_array_equal(
        keep(tf.constant([0, 1, 1])).numpy(), [False, True, True]
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="keep must contain only 0 and 1"
    ):
        keep(tf.constant([0, 2]))


def _layer(B, **kw):
    layer = B.mod.MultiHeadAttention(6, 2, **kw)
    if B.name == "torch":
        layer.eval()
    return layer


def test_7_layers_take_a_positional_mask(backend):
    """#7 (Keras): layer(q, k, v, mask) raised "multiple values for argument
    'attention_mask'"."""
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.normal(size=(2, 3, 6)).astype(F32))
    mask = backend.asarray(np.array([True, False, True]))
    positional = backend.to_numpy(_layer(backend)(x, x, x, mask))
    keyword = backend.to_numpy(_layer(backend)(x, x, x, mask=mask))
    np.testing.assert_array_equal(positional, keyword)
    with pytest.raises(TypeError, match="multiple values for argument 'mask'"):
        _layer(backend)(x, x, x, mask, mask=mask)


def test_7_float64_layer_refuses_float32_input(backend):
    """#7 (Keras): a float64 layer silently cast float32 input up, where the other
    twins raise TypeError."""
    x = backend.asarray(np.ones((2, 3, 6), F32))
    with pytest.raises(
        TypeError, match="arrays must share one dtype, got query float32"
    ):
        _layer(backend, dtype="float64")(x)


@pytest.mark.parametrize("seed", [np.int64(3), np.uint8(3), 2**63 - 1])
def test_8_seeds_in_range_work_everywhere(backend, seed):
    """#8: torch rejected np.int64(3), which the shared check accepts; seeds >= 2**63
    worked in NumPy only."""
    x = backend.asarray(np.ones((2, 3, 4), F32))
    a = backend.mod.scaled_dot_product_attention(
        x, x, x, dropout=0.5, seed=seed, return_weights=True
    )[1]
    b = backend.mod.scaled_dot_product_attention(
        x, x, x, dropout=0.5, seed=seed, return_weights=True
    )[1]
    np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))


@pytest.mark.parametrize("seed", [2**63, 2**64, np.uint64(2**64 - 1)])
def test_8_seeds_out_of_range_are_refused_alike(backend, seed):
    x = backend.asarray(np.ones((2, 3, 4), F32))
    with pytest.raises(
        ValueError,
        match=r"seed must be a non-negative integer or None "
        r"of at most 2\*\*63 - 1",
    ):
        backend.mod.scaled_dot_product_attention(x, x, x, dropout=0.5, seed=seed)


@pytest.mark.parametrize(
    "value,exc",
    [
        (10**400, ValueError),
        (1e300, ValueError),
        (1e-60, ValueError),
        (np.float32(0.5), None),
        (np.int64(2), None),
    ],
)
def test_scalars_that_no_float32_holds_are_refused(backend, value, exc):
    """``scale=10**400`` raised OverflowError; ``1e300`` became inf in float32 and
    ``1e-60`` became 0."""
    x = backend.asarray(np.ones((1, 2, 4), F32))
    if exc is None:
        backend.mod.scaled_dot_product_attention(x, x, x, scale=value)
    else:
        with pytest.raises(exc, match="scale"):
            backend.mod.scaled_dot_product_attention(x, x, x, scale=value)
