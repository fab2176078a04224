"""Property tests: random shapes, masks (with fully masked rows), scales and causal
flags against the oracle."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle
from adapters import get

SETTINGS = dict(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@st.composite
def attention_problems(draw):
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    lq, lk = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    d, dv = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)

    # each input may drop or squeeze leading axes: they broadcast
    def bshape():
        n = draw(st.integers(0, len(batch)))
        return tuple(1 if draw(st.booleans()) else s for s in batch[len(batch) - n :])

    q = rng.normal(size=bshape() + (lq, d))
    k = rng.normal(size=bshape() + (lk, d))
    v = rng.normal(size=bshape() + (lk, dv))
    mask = None
    if draw(st.booleans()):
        full = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]) + (lq, lk)
        n = draw(st.integers(0, len(full)))
        shape = tuple(1 if draw(st.booleans()) else s for s in full[len(full) - n :])
        # includes all-False rows and all-False masks
        mask = rng.random(shape) < draw(st.floats(0.0, 1.0))
    bias = rng.normal(size=(lq, lk)) if draw(st.booleans()) else None
    scale = draw(st.one_of(st.none(), st.floats(0.05, 3.0)))
    causal = draw(st.booleans())
    return q, k, v, mask, bias, scale, causal


def _check(B, problem, dtype="float64", atol=1e-10):
    q, k, v, mask, bias, scale, causal = problem
    conv = [B.asarray(a, dtype) for a in (q, k, v)]
    out, w = B.mod.scaled_dot_product_attention(
        *conv,
        mask=None if mask is None else B.asarray(mask),
        bias=None if bias is None else B.asarray(bias, dtype),
        causal=causal,
        scale=scale,
        return_weights=True,
    )
    want_out, want_w = oracle.scaled_dot_product_attention(
        q, k, v, mask, bias, causal=causal, scale=scale
    )
    out, w = B.to_numpy(out), B.to_numpy(w)
    assert out.shape == want_out.shape
    # weights may omit leading axes that only value has (see
    # test_weights_cover_value_batch_axes)
    w = np.broadcast_to(w, want_w.shape)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(w))
    np.testing.assert_allclose(out, want_out, atol=atol)
    np.testing.assert_allclose(w, want_w, atol=atol)
    sums = w.sum(-1)
    assert np.all((np.abs(sums - 1) < 1e-6) | (sums == 0))


@settings(max_examples=40, **SETTINGS)
@given(problem=attention_problems())
def test_numpy_sdpa_matches_oracle(problem):
    _check(get("numpy"), problem)


@pytest.mark.parametrize("name", ["torch", "tensorflow"])
def test_framework_sdpa_matches_oracle(name):
    B = get(name)  # outside @given: a missing framework skips once

    @settings(max_examples=20, **SETTINGS)
    @given(problem=attention_problems())
    def run(problem):
        _check(B, problem)
        _check(B, problem, "float32", 1e-5)

    run()


@settings(max_examples=25, **SETTINGS)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 1000),
    data=st.data(),
)
def test_numpy_softmax_matches_oracle(shape, seed, data):
    B = get("numpy")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 10
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    mask = rng.random(shape) < 0.5
    got = B.mod.softmax(x, axis=axis, mask=mask)
    np.testing.assert_allclose(got, oracle.softmax(x, axis=axis, mask=mask), atol=1e-12)


@settings(max_examples=25, **SETTINGS)
@given(
    lq=st.integers(1, 5),
    lk=st.integers(1, 5),
    dq=st.integers(1, 4),
    dk=st.integers(1, 4),
    h=st.integers(1, 4),
    seed=st.integers(0, 1000),
    causal=st.booleans(),
)
def test_numpy_additive_and_bilinear_match_oracle(lq, lk, dq, dk, h, seed, causal):
    B = get("numpy")
    rng = np.random.default_rng(seed)
    q, k, v = (
        rng.normal(size=(2, lq, dq)),
        rng.normal(size=(2, lk, dk)),
        rng.normal(size=(2, lk, 3)),
    )
    mask = rng.random((lq, lk)) < 0.6
    wq, wk, vv, w = (
        rng.normal(size=(dq, h)),
        rng.normal(size=(dk, h)),
        rng.normal(size=h),
        rng.normal(size=(dq, dk)),
    )
    out = B.mod.additive_attention(q, k, v, wq, wk, vv, mask=mask, causal=causal)
    np.testing.assert_allclose(
        out,
        oracle.additive_attention(q, k, v, wq, wk, vv, mask, causal=causal)[0],
        atol=1e-10,
    )
    out = B.mod.bilinear_attention(q, k, v, w, mask=mask, causal=causal)
    np.testing.assert_allclose(
        out, oracle.bilinear_attention(q, k, v, w, mask, causal=causal)[0], atol=1e-10
    )
