"""Gradients: torch autograd and TF GradientTape against each other and against
central finite differences taken through the NumPy backend (float64)."""

import numpy as np
import pytest

from adapters import framework, get
from cases import make_case

EPS = 1e-6
ATOL = 1e-6


@pytest.fixture(scope="module")
def fws():
    framework("torch")
    framework("tensorflow")
    return get("numpy"), get("torch"), get("tensorflow")


PROBLEMS = ["sdpa", "sdpa_mask_bias_causal", "additive", "bilinear", "mha"]


def _setup(problem):
    """Returns (fn, inputs: {name: array}, call(mod, conv, inputs) -> output)."""
    if problem.startswith("sdpa"):
        case = make_case(
            "scaled_dot_product_attention",
            "mask_bias" if "mask" in problem else "none",
            seed=20,
            lq=3,
            lk=4,
            batch=(2,),
        )
        q, k, v = case["args"]
        inputs = {"query": q, "key": k, "value": v}
        if case["bias"] is not None:
            inputs["bias"] = case["bias"]
        mask, causal = case["mask"], "causal" in problem

        def call(B, t):
            m = None if mask is None else B.asarray(mask)
            return B.mod.scaled_dot_product_attention(
                t["query"],
                t["key"],
                t["value"],
                mask=m,
                bias=t.get("bias"),
                causal=causal,
                scale=0.8,
            )
    elif problem == "additive":
        case = make_case("additive_attention", "mask", seed=21, lq=3, lk=4, batch=(2,))
        names = ["query", "key", "value", "w_query", "w_key", "v"]
        inputs = dict(zip(names, case["args"], strict=False))
        mask = case["mask"]

        def call(B, t):
            return B.mod.additive_attention(
                *[t[n] for n in names], mask=B.asarray(mask), causal=True
            )
    elif problem == "bilinear":
        case = make_case("bilinear_attention", "mask", seed=22, lq=3, lk=4, batch=(2,))
        names = ["query", "key", "value", "w"]
        inputs = dict(zip(names, case["args"], strict=False))
        mask = case["mask"]

        def call(B, t):
            return B.mod.bilinear_attention(
                *[t[n] for n in names], mask=B.asarray(mask)
            )
    else:
        case = make_case(
            "multi_head_attention", "mask_bias", seed=23, lq=3, lk=4, batch=(2,)
        )
        q, k, v, params = case["args"]
        inputs = {"query": q, "key": k, "value": v, "bias": case["bias"], **params}
        mask = case["mask"]

        def call(B, t):
            p = {n: t[n] for n in params}
            return B.mod.multi_head_attention(
                t["query"],
                t["key"],
                t["value"],
                p,
                2,
                mask=B.asarray(mask),
                bias=t["bias"],
                causal=True,
            )

    return inputs, call


def _cotangent(out_shape):
    return np.random.default_rng(99).normal(size=out_shape)


def _finite_differences(inputs, call):
    N = get("numpy")
    base = {n: a.copy() for n, a in inputs.items()}
    ct = _cotangent(call(N, base).shape)

    def f(t):
        return float(np.sum(call(N, t) * ct))

    grads = {}
    for name, a in inputs.items():
        g = np.zeros_like(a)
        for idx in np.ndindex(*a.shape):
            plus = dict(base, **{name: a.copy()})
            minus = dict(base, **{name: a.copy()})
            plus[name][idx] += EPS
            minus[name][idx] -= EPS
            g[idx] = (f(plus) - f(minus)) / (2 * EPS)
        grads[name] = g
    return grads, ct


def _torch_grads(T, inputs, call, ct):
    import torch

    t = {
        n: torch.tensor(a, dtype=torch.float64, requires_grad=True)
        for n, a in inputs.items()
    }
    out = call(T, t)
    (out * torch.from_numpy(ct)).sum().backward()
    return {
        n: x.grad.numpy() if x.grad is not None else np.zeros_like(inputs[n])
        for n, x in t.items()
    }


def _tf_grads(TF, inputs, call, ct):
    import tensorflow as tf

    t = {n: tf.Variable(a, dtype=tf.float64) for n, a in inputs.items()}
    with tf.GradientTape() as tape:
        out = call(TF, t)
        y = tf.reduce_sum(out * tf.constant(ct))
    grads = tape.gradient(y, list(t.values()))
    return {
        n: (g.numpy() if g is not None else np.zeros_like(inputs[n]))
        for n, g in zip(t, grads, strict=False)
    }


@pytest.mark.parametrize("problem", PROBLEMS)
def test_gradients_match_finite_differences(fws, problem):
    _, T, TF = fws
    inputs, call = _setup(problem)
    fd, ct = _finite_differences(inputs, call)
    gt = _torch_grads(T, inputs, call, ct)
    gf = _tf_grads(TF, inputs, call, ct)
    for name in inputs:
        assert np.all(np.isfinite(gt[name])) and np.all(np.isfinite(gf[name])), name
        np.testing.assert_allclose(
            gt[name], fd[name], atol=ATOL, err_msg=f"torch d/d{name}"
        )
        np.testing.assert_allclose(
            gf[name], fd[name], atol=ATOL, err_msg=f"tensorflow d/d{name}"
        )
        np.testing.assert_allclose(
            gt[name], gf[name], atol=1e-10, err_msg=f"torch vs tensorflow d/d{name}"
        )


@pytest.mark.parametrize("how", ["mask", "bias_inf", "no_keys"])
def test_gradients_of_empty_rows_are_zero_and_finite(fws, how):
    _, T, TF = fws
    rng = np.random.default_rng(24)
    lk = 0 if how == "no_keys" else 4
    inputs = {
        "query": rng.normal(size=(2, 3, 3)),
        "key": rng.normal(size=(2, lk, 3)),
        "value": rng.normal(size=(2, lk, 2)),
    }
    mask = np.ones((3, lk), bool)
    if how == "bias_inf":
        bias = np.zeros((3, lk))
        bias[1] = -np.inf
        mask = None
    else:
        bias = None
        mask[1] = False

    def call(B, t):
        return B.mod.scaled_dot_product_attention(
            t["query"],
            t["key"],
            t["value"],
            mask=None if mask is None else B.asarray(mask),
            bias=None if bias is None else B.asarray(bias),
        )

    ct = _cotangent((2, 3, 2))
    for grads in (_torch_grads(T, inputs, call, ct), _tf_grads(TF, inputs, call, ct)):
        for name, g in grads.items():
            assert g.shape == inputs[name].shape
            assert np.all(np.isfinite(g)), name
        assert np.all(grads["query"][:, 1] == 0)
        if how == "no_keys":
            assert np.all(grads["query"] == 0)


def test_torch_layer_gradients_match_tf_layer(fws):
    """Same parameters in both layers: the same loss and the same parameter
    gradients."""
    import tensorflow as tf
    import torch

    _, T, TF = fws
    kw = dict(
        d_model=4,
        num_heads=2,
        query_dim=3,
        key_dim=3,
        value_dim=3,
        output_dim=2,
        dtype="float64",
    )
    lt, lf = (
        T.mod.MultiHeadAttention(**kw, seed=1),
        TF.mod.MultiHeadAttention(**kw, seed=1),
    )
    x = np.random.default_rng(25).normal(size=(2, 4, 3))
    ct = _cotangent((2, 4, 2))
    lt.eval()
    (lt(torch.from_numpy(x), causal=True) * torch.from_numpy(ct)).sum().backward()
    gt = {n.split(".")[-1]: p.grad.numpy() for n, p in lt.named_parameters()}
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(lf(tf.constant(x), causal=True) * ct)
    gf = {
        w.path.split("/")[-1]: g.numpy()
        for w, g in zip(
            lf.trainable_weights, tape.gradient(y, lf.trainable_weights), strict=False
        )
    }
    assert set(gt) == set(gf), (set(gt), set(gf))
    for n in gt:
        np.testing.assert_allclose(gt[n], gf[n], atol=1e-10, err_msg=n)
