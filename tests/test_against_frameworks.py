"""attnbook against the frameworks' own attention, and the attnbook layers across
frameworks."""

import numpy as np
import pytest

import oracle
from adapters import BACKENDS, all_backends, framework, get
from cases import mha_params

ATOL32 = 2e-5


def _qkv(seed, b=2, h=2, lq=4, lk=5, d=3, dv=4):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(b, h, lq, d)).astype("float32"),
        rng.normal(size=(b, h, lk, d)).astype("float32"),
        rng.normal(size=(b, h, lk, dv)).astype("float32"),
        rng,
    )


def _mask(rng, shape):
    m = rng.random(shape) < 0.6
    # frameworks give NaN or a uniform average on fully masked rows; ours gives 0
    m[..., 0] = True
    return m


# --- torch
# --------------------------------------------------------------------------------------


@pytest.fixture
def torch_():
    framework("torch")
    import torch

    return torch


@pytest.mark.parametrize(
    "kind",
    [
        "plain",
        "bool_mask",
        "broadcast_mask",
        "causal",
        "causal_lq_gt_lk",
        "bias",
        "scale",
    ],
)
def test_torch_sdpa(torch_, kind):
    F = torch_.nn.functional
    T = get("torch")
    lq, lk = (6, 4) if kind == "causal_lq_gt_lk" else (4, 5)
    q, k, v, rng = _qkv(0, lq=lq, lk=lk)
    ours, theirs = {}, {}
    if kind == "bool_mask":
        m = _mask(rng, (2, 2, lq, lk))
        ours["mask"] = theirs["attn_mask"] = torch_.from_numpy(m)
    elif kind == "broadcast_mask":
        m = _mask(rng, (2, 1, 1, lk))
        ours["mask"] = theirs["attn_mask"] = torch_.from_numpy(m)
    elif kind.startswith("causal"):
        ours["causal"] = theirs["is_causal"] = True
    elif kind == "bias":
        b = rng.normal(size=(1, 2, lq, lk)).astype("float32")
        ours["bias"] = theirs["attn_mask"] = torch_.from_numpy(b)
    elif kind == "scale":
        ours["scale"] = theirs["scale"] = 0.7
    tq, tk, tv = map(torch_.from_numpy, (q, k, v))
    want = F.scaled_dot_product_attention(tq, tk, tv, **theirs)
    got = T.mod.scaled_dot_product_attention(tq, tk, tv, **ours)
    np.testing.assert_allclose(T.to_numpy(got), T.to_numpy(want), atol=ATOL32)


def _torch_mha(torch_, D, H, seed, kdim=None, vdim=None):
    torch_.manual_seed(seed)
    m = torch_.nn.MultiheadAttention(
        D, H, batch_first=True, kdim=kdim, vdim=vdim
    ).eval()
    with torch_.no_grad():  # nonzero biases so the test sees them
        m.in_proj_bias.normal_()
        m.out_proj.bias.normal_()
    return m


def _params_from_torch(m, D):
    def np_(t):
        return t.detach().numpy().copy()

    if m._qkv_same_embed_dim:
        w = np_(m.in_proj_weight)
        wq, wk, wv = w[:D].T, w[D : 2 * D].T, w[2 * D :].T
    else:
        wq, wk, wv = (
            np_(m.q_proj_weight).T,
            np_(m.k_proj_weight).T,
            np_(m.v_proj_weight).T,
        )
    b = np_(m.in_proj_bias)
    return {
        "w_q": wq,
        "w_k": wk,
        "w_v": wv,
        "w_o": np_(m.out_proj.weight).T,
        "b_q": b[:D],
        "b_k": b[D : 2 * D],
        "b_v": b[2 * D :],
        "b_o": np_(m.out_proj.bias),
    }


@pytest.mark.parametrize("kind", ["plain", "key_padding", "causal", "cross_dims"])
def test_torch_multihead(torch_, kind):
    T = get("torch")
    D, H, B, lq, lk = 8, 2, 3, 4, 5
    kdim = vdim = None
    if kind == "cross_dims":
        kdim, vdim = 5, 3
    if kind == "causal":
        lk = lq
    m = _torch_mha(torch_, D, H, 0, kdim, vdim)
    params = {k: torch_.from_numpy(v) for k, v in _params_from_torch(m, D).items()}
    rng = np.random.default_rng(1)
    q = torch_.from_numpy(rng.normal(size=(B, lq, D)).astype("float32"))
    k = torch_.from_numpy(rng.normal(size=(B, lk, kdim or D)).astype("float32"))
    v = torch_.from_numpy(rng.normal(size=(B, lk, vdim or D)).astype("float32"))
    theirs, ours = {}, {}
    if kind == "key_padding":
        kpm = np.zeros((B, lk), bool)
        kpm[0, 3:] = kpm[2, 1:] = True  # True = ignore (torch)
        theirs["key_padding_mask"] = torch_.from_numpy(kpm)
        ours["mask"] = T.mod.mask_from_ignore(torch_.from_numpy(kpm))[:, None, None, :]
    elif kind == "causal":
        # True = ignore (torch)
        theirs["attn_mask"] = torch_.from_numpy(~oracle.causal_mask(lq, lk))
        theirs["is_causal"] = True
        ours["causal"] = True
    with torch_.no_grad():
        want_out, want_w = m(
            q, k, v, need_weights=True, average_attn_weights=False, **theirs
        )
    got_out, got_w = T.mod.multi_head_attention(
        q, k, v, params, H, return_weights=True, **ours
    )
    np.testing.assert_allclose(T.to_numpy(got_out), T.to_numpy(want_out), atol=ATOL32)
    np.testing.assert_allclose(T.to_numpy(got_w), T.to_numpy(want_w), atol=ATOL32)


# --- keras / TensorFlow
# --------------------------------------------------------------------------------------


@pytest.fixture
def keras_():
    framework("tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("keras is not running on TensorFlow")
    return keras


@pytest.mark.parametrize(
    "kind", ["plain", "bool_mask", "broadcast_mask", "causal", "bias", "scale"]
)
def test_keras_dot_product_attention(keras_, kind):
    TF = get("tensorflow")
    q, k, v, rng = _qkv(2)
    ours, theirs = {}, {}
    if kind == "bool_mask":
        m = _mask(rng, (2, 2, 4, 5))
        ours["mask"] = theirs["mask"] = TF.asarray(m)
    elif kind == "broadcast_mask":
        m = _mask(rng, (2, 1, 1, 5))
        ours["mask"] = theirs["mask"] = TF.asarray(m)
    elif kind == "causal":
        ours["causal"] = theirs["is_causal"] = True
    elif kind == "bias":
        b = rng.normal(size=(1, 2, 4, 5)).astype("float32")
        ours["bias"] = theirs["bias"] = TF.asarray(b)
    elif kind == "scale":
        ours["scale"] = theirs["scale"] = 0.7

    def blhd(x):  # keras' layout is (B, L, H, d)
        return TF.asarray(np.swapaxes(x, 1, 2))

    want = keras_.ops.dot_product_attention(blhd(q), blhd(k), blhd(v), **theirs)
    got = TF.mod.scaled_dot_product_attention(*map(TF.asarray, (q, k, v)), **ours)
    np.testing.assert_allclose(
        TF.to_numpy(got), np.swapaxes(TF.to_numpy(want), 1, 2), atol=ATOL32
    )


@pytest.mark.parametrize("kind", ["plain", "mask", "causal"])
def test_keras_multihead(keras_, kind):
    TF = get("tensorflow")
    H, dh, B, lq, lk, Dq, Dk, Dv, Do = 2, 3, 2, 4, 5, 6, 5, 4, 7
    if kind == "causal":
        lk = lq
    layer = keras_.layers.MultiHeadAttention(
        num_heads=H, key_dim=dh, value_dim=dh, output_shape=Do
    )
    rng = np.random.default_rng(3)
    q = rng.normal(size=(B, lq, Dq)).astype("float32")
    k = rng.normal(size=(B, lk, Dk)).astype("float32")
    v = rng.normal(size=(B, lk, Dv)).astype("float32")
    layer(q, v, key=k)  # build
    p = mha_params(rng, Dq, Dk, Dv, H * dh, Do)
    p = {n: a.astype("float32") for n, a in p.items()}
    for dense, w, b in (
        (layer._query_dense, "w_q", "b_q"),
        (layer._key_dense, "w_k", "b_k"),
        (layer._value_dense, "w_v", "b_v"),
    ):
        dense.kernel.assign(p[w].reshape(-1, H, dh))
        dense.bias.assign(p[b].reshape(H, dh))
    layer._output_dense.kernel.assign(p["w_o"].reshape(H, dh, Do))
    layer._output_dense.bias.assign(p["b_o"])
    theirs, ours = {}, {}
    if kind == "mask":
        m = _mask(rng, (B, lq, lk))
        theirs["attention_mask"] = m
        ours["mask"] = TF.asarray(m[:, None])
    elif kind == "causal":
        theirs["use_causal_mask"] = True
        ours["causal"] = True
    want_out, want_w = layer(q, v, key=k, return_attention_scores=True, **theirs)
    got_out, got_w = TF.mod.multi_head_attention(
        *map(TF.asarray, (q, k, v)), TF.params(p), H, return_weights=True, **ours
    )
    np.testing.assert_allclose(TF.to_numpy(got_out), np.asarray(want_out), atol=ATOL32)
    np.testing.assert_allclose(TF.to_numpy(got_w), np.asarray(want_w), atol=ATOL32)


# --- attnbook layers across frameworks
# --------------------------------------------------------------------------

LAYER_KW = dict(
    d_model=6, num_heads=3, query_dim=4, key_dim=5, value_dim=2, output_dim=3
)


def _layer_inputs(B, seed=4):
    rng = np.random.default_rng(seed)
    q, k, v = (
        rng.normal(size=(2, 3, 4)),
        rng.normal(size=(2, 5, 5)),
        rng.normal(size=(2, 5, 2)),
    )
    mask = _mask(rng, (2, 1, 3, 5))
    return (
        [B.asarray(a, "float32") for a in (q, k, v)],
        B.asarray(mask),
        (q, k, v, mask),
    )


def test_layers_same_seed_same_params():
    layers = {
        B.name: B.mod.MultiHeadAttention(**LAYER_KW, seed=11) for B in all_backends()
    }
    ps = {n: layer.get_params() for n, layer in layers.items()}
    assert set(ps["numpy"]) == {"w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v", "b_o"}
    assert ps["numpy"]["w_q"].shape == (4, 6) and ps["numpy"]["w_o"].shape == (6, 3)
    for name, p in ps.items():
        assert set(p) == set(ps["numpy"])
        for k in p:
            assert isinstance(p[k], np.ndarray), (name, k, type(p[k]))
            np.testing.assert_array_equal(p[k], ps["numpy"][k], err_msg=f"{name} {k}")
    other = get("numpy").mod.MultiHeadAttention(**LAYER_KW, seed=12).get_params()
    assert not np.array_equal(other["w_q"], ps["numpy"]["w_q"])
    adds = {
        B.name: B.mod.AdditiveAttention(4, 5, 7, seed=3).get_params()
        for B in all_backends()
    }
    for name, p in adds.items():
        assert set(p) == {"w_query", "w_key", "v"}
        for k in p:
            np.testing.assert_array_equal(p[k], adds["numpy"][k], err_msg=f"{name} {k}")


def _call(B, layer, *args, **kwargs):
    if B.name == "torch":
        layer.eval()
    return layer(*args, **kwargs)


@pytest.mark.parametrize("causal", [False, True])
def test_layers_agree_across_frameworks(causal):
    rng = np.random.default_rng(5)
    p = {k: v.astype("float32") for k, v in mha_params(rng, 4, 5, 2, 6, 3).items()}
    results = {}
    for B in all_backends():
        layer = B.mod.MultiHeadAttention(**LAYER_KW, seed=0)
        layer.set_params(p)
        (q, k, v), mask, raw = _layer_inputs(B)
        out, w = _call(
            B, layer, q, key=k, value=v, mask=mask, causal=causal, return_weights=True
        )
        results[B.name] = (B.to_numpy(out), B.to_numpy(w))
        want_out, want_w = oracle.multi_head_attention(
            *raw[:3], p, 3, mask=raw[3], causal=causal
        )
        np.testing.assert_allclose(
            results[B.name][0], want_out, atol=ATOL32, err_msg=B.name
        )
        np.testing.assert_allclose(
            results[B.name][1], want_w, atol=ATOL32, err_msg=B.name
        )
    for name, (out, _) in results.items():
        np.testing.assert_allclose(out, results["numpy"][0], atol=ATOL32, err_msg=name)


@pytest.mark.parametrize("name", BACKENDS)
def test_layer_self_attention_defaults(name):
    """key defaults to query and value to key."""
    B = get(name)
    layer = B.mod.MultiHeadAttention(d_model=4, num_heads=2, seed=1)
    x = np.random.default_rng(6).normal(size=(2, 3, 4)).astype("float32")
    t = B.asarray(x)
    a = B.to_numpy(_call(B, layer, t))
    b = B.to_numpy(_call(B, layer, t, key=t, value=t))
    np.testing.assert_allclose(a, b, atol=0)
    want, _ = oracle.multi_head_attention(x, x, x, layer.get_params(), 2)
    np.testing.assert_allclose(a, want, atol=ATOL32)


@pytest.mark.parametrize("name", BACKENDS)
def test_layer_params_round_trip(name):
    B = get(name)
    layer = B.mod.MultiHeadAttention(**LAYER_KW, seed=2)
    new = {
        k: v.astype("float32")
        for k, v in mha_params(np.random.default_rng(7), 4, 5, 2, 6, 3).items()
    }
    layer.set_params(new)
    got = layer.get_params()
    assert set(got) == set(new)
    for k in new:
        np.testing.assert_array_equal(got[k], new[k], err_msg=k)
    # get_params returns copies: changing them does not change the layer
    got["w_q"][...] = 0
    assert not np.all(layer.get_params()["w_q"] == 0)
    # the layer computes with what set_params gave it
    (q, k, v), mask, raw = _layer_inputs(B)
    out = B.to_numpy(_call(B, layer, q, key=k, value=v, mask=mask))
    np.testing.assert_allclose(
        out, oracle.multi_head_attention(*raw[:3], new, 3, mask=raw[3])[0], atol=ATOL32
    )
    no_bias = B.mod.MultiHeadAttention(**LAYER_KW, use_bias=False)
    assert set(no_bias.get_params()) == {"w_q", "w_k", "w_v", "w_o"}


@pytest.mark.parametrize("name", BACKENDS)
def test_additive_layer(name):
    B = get(name)
    layer = B.mod.AdditiveAttention(3, 2, 4, seed=5)
    rng = np.random.default_rng(8)
    p = {
        "w_query": rng.normal(size=(3, 4)),
        "w_key": rng.normal(size=(2, 4)),
        "v": rng.normal(size=4),
    }
    p = {k: v.astype("float32") for k, v in p.items()}
    layer.set_params(p)
    for k in p:
        np.testing.assert_array_equal(layer.get_params()[k], p[k])
    q, k, v = (
        rng.normal(size=(2, 4, 3)),
        rng.normal(size=(2, 5, 2)),
        rng.normal(size=(2, 5, 3)),
    )
    mask = _mask(rng, (2, 4, 5))
    out, w = layer(
        *[B.asarray(a, "float32") for a in (q, k, v)],
        mask=B.asarray(mask),
        causal=True,
        return_weights=True,
    )
    want_out, want_w = oracle.additive_attention(
        q, k, v, p["w_query"], p["w_key"], p["v"], mask, causal=True
    )
    np.testing.assert_allclose(B.to_numpy(out), want_out, atol=ATOL32)
    np.testing.assert_allclose(B.to_numpy(w), want_w, atol=ATOL32)


def test_torch_layer_is_module_with_parameters(torch_):
    layer = get("torch").mod.MultiHeadAttention(d_model=4, num_heads=2)
    assert isinstance(layer, torch_.nn.Module)
    names = {n.split(".")[-1] for n, _ in layer.named_parameters()}
    assert {"w_q", "w_k", "w_v", "w_o"} <= names or len(list(layer.parameters())) == 8
    x = torch_.randn(2, 3, 4)
    layer(x).sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_keras_layer_is_layer_with_weights(keras_):
    layer = get("tensorflow").mod.MultiHeadAttention(d_model=4, num_heads=2)
    assert isinstance(layer, keras_.layers.Layer)
    assert len(layer.trainable_weights) == 8
    import tensorflow as tf

    x = tf.random.normal((2, 3, 4))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x))
    grads = tape.gradient(y, layer.trainable_weights)
    assert all(g is not None for g in grads)


def test_keras_layer_mask_argument_is_not_a_keras_mask(keras_):
    """Our ``mask`` is an attention mask; Keras must not treat it as a propagated
    input mask (and warn)."""
    import warnings

    TF = get("tensorflow")
    layer = TF.mod.MultiHeadAttention(d_model=4, num_heads=2)
    x = TF.asarray(np.zeros((2, 3, 4), "float32"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(x, mask=TF.asarray(np.ones((2, 1, 3, 3), bool)))
    assert not [w for w in caught if "mask" in str(w.message)], [
        str(w.message) for w in caught
    ]


@pytest.mark.parametrize("name", BACKENDS)
def test_layer_dropout_only_when_training(name):
    B = get(name)
    layer = B.mod.MultiHeadAttention(d_model=4, num_heads=2, dropout=0.5, seed=0)
    x = B.asarray(np.random.default_rng(9).normal(size=(2, 8, 4)), "float32")
    if name == "torch":
        _, w_eval = layer.eval()(x, return_weights=True)
        _, w_train = layer.train()(x, return_weights=True)
    else:
        _, w_eval = layer(x, return_weights=True)
        _, w_train = layer(x, return_weights=True, training=True)
    w_eval, w_train = B.to_numpy(w_eval), B.to_numpy(w_train)
    assert np.all(w_eval > 0)
    assert 0.3 < (w_train == 0).mean() < 0.7
