"""Bad inputs: every backend raises the same exception type with the same message,
naming the argument."""

import numpy as np
import pytest

import attnbook
from adapters import all_backends, get, require_gpu

F32 = "float32"


def A(B, *shape, dtype=F32, seed=0):
    """A native array of ``shape`` on backend ``B``."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return B.asarray(rng.random(shape) < 0.5, "bool")
    if dtype.startswith("int"):
        return B.asarray(rng.integers(0, 3, size=shape), dtype)
    return B.asarray(rng.normal(size=shape), dtype)


def sdpa(B, q=(2, 3, 4), k=(2, 5, 4), v=(2, 5, 6), dtypes=(F32, F32, F32), **kw):
    return B.mod.scaled_dot_product_attention(
        A(B, *q, dtype=dtypes[0]),
        A(B, *k, dtype=dtypes[1]),
        A(B, *v, dtype=dtypes[2]),
        **kw,
    )


def params(B, dq=6, dk=6, dv=6, d=6, do=6, drop=(), dtype=F32, **shapes):
    shp = {
        "w_q": (dq, d),
        "w_k": (dk, d),
        "w_v": (dv, d),
        "w_o": (d, do),
        "b_q": (d,),
        "b_k": (d,),
        "b_v": (d,),
        "b_o": (do,),
    }
    shp.update(shapes)
    return {n: A(B, *s, dtype=dtype) for n, s in shp.items() if n not in drop}


def mha(B, p=None, num_heads=2, q=(2, 3, 6), k=(2, 4, 6), v=(2, 4, 6), **kw):
    p = params(B) if p is None else p
    return B.mod.multi_head_attention(A(B, *q), A(B, *k), A(B, *v), p, num_heads, **kw)


def additive(B, wq=(4, 7), wk=(3, 7), v=(7,), **kw):
    return B.mod.additive_attention(
        A(B, 2, 3, 4),
        A(B, 2, 5, 3),
        A(B, 2, 5, 2),
        A(B, *wq),
        A(B, *wk),
        A(B, *v),
        **kw,
    )


def bilinear(B, w=(4, 3), **kw):
    return B.mod.bilinear_attention(
        A(B, 2, 3, 4), A(B, 2, 5, 3), A(B, 2, 5, 2), A(B, *w), **kw
    )


def layer_mha(B):
    layer = B.mod.MultiHeadAttention(d_model=6, num_heads=2, query_dim=4)
    if B.name == "torch":
        layer.eval()
    return layer(A(B, 2, 3, 5))


def layer_additive(B):
    layer = B.mod.AdditiveAttention(4, 3, 5)
    return layer(A(B, 2, 3, 2), A(B, 2, 5, 3), A(B, 2, 5, 2))


# id -> (exception type, substring naming the offending argument, call on backend B)
CASES = {
    # shapes and ranks
    "query_rank_1": (ValueError, "query", lambda B: sdpa(B, q=(4,))),
    "key_rank_1": (ValueError, "key", lambda B: sdpa(B, k=(4,))),
    "d_query_ne_d_key": (ValueError, "key", lambda B: sdpa(B, k=(2, 5, 3))),
    "lk_key_ne_lk_value": (ValueError, "value", lambda B: sdpa(B, v=(2, 4, 6))),
    "batch_not_broadcast": (
        ValueError,
        "key",
        lambda B: sdpa(B, k=(3, 5, 4), v=(3, 5, 6)),
    ),
    # masks and biases
    "mask_float": (TypeError, "mask", lambda B: sdpa(B, mask=A(B, 3, 5))),
    "mask_int": (TypeError, "mask", lambda B: sdpa(B, mask=A(B, 3, 5, dtype="int64"))),
    "mask_not_broadcastable": (
        ValueError,
        "mask",
        lambda B: sdpa(B, mask=A(B, 3, 4, dtype="bool")),
    ),
    "mask_adds_axes": (
        ValueError,
        "mask",
        lambda B: sdpa(B, mask=A(B, 1, 2, 3, 5, dtype="bool")),
    ),
    "bias_not_broadcastable": (ValueError, "bias", lambda B: sdpa(B, bias=A(B, 4, 5))),
    "bias_adds_axes": (ValueError, "bias", lambda B: sdpa(B, bias=A(B, 2, 2, 3, 5))),
    "bias_int": (TypeError, "bias", lambda B: sdpa(B, bias=A(B, 3, 5, dtype="int64"))),
    "bias_bool": (TypeError, "bias", lambda B: sdpa(B, bias=A(B, 3, 5, dtype="bool"))),
    # dtypes
    "int_inputs": (TypeError, "query", lambda B: sdpa(B, dtypes=("int64",) * 3)),
    "int_value": (TypeError, "value", lambda B: sdpa(B, dtypes=(F32, F32, "int32"))),
    "mixed_dtypes": (
        TypeError,
        "key float64",
        lambda B: sdpa(B, dtypes=(F32, "float64", F32)),
    ),
    "mixed_dtypes_reduced": (
        TypeError,
        "value float16",
        lambda B: sdpa(B, dtypes=(F32, F32, "float16")),
    ),
    # scalar arguments
    "scale_zero": (ValueError, "scale", lambda B: sdpa(B, scale=0.0)),
    "scale_negative": (ValueError, "scale", lambda B: sdpa(B, scale=-1.0)),
    "scale_inf": (ValueError, "scale", lambda B: sdpa(B, scale=float("inf"))),
    "scale_nan": (ValueError, "scale", lambda B: sdpa(B, scale=float("nan"))),
    "scale_string": (TypeError, "scale", lambda B: sdpa(B, scale="0.5")),
    "scale_bool": (TypeError, "scale", lambda B: sdpa(B, scale=True)),
    "dropout_negative": (ValueError, "dropout", lambda B: sdpa(B, dropout=-0.1)),
    "dropout_one": (ValueError, "dropout", lambda B: sdpa(B, dropout=1.0)),
    "dropout_above_one": (ValueError, "dropout", lambda B: sdpa(B, dropout=1.5)),
    "dropout_string": (TypeError, "dropout", lambda B: sdpa(B, dropout="0.1")),
    "seed_negative": (ValueError, "seed", lambda B: sdpa(B, dropout=0.1, seed=-1)),
    "seed_float": (TypeError, "seed", lambda B: sdpa(B, dropout=0.1, seed=1.5)),
    "causal_int": (TypeError, "causal", lambda B: sdpa(B, causal=1)),
    "causal_string": (TypeError, "causal", lambda B: sdpa(B, causal="yes")),
    "return_weights_none": (
        TypeError,
        "return_weights",
        lambda B: sdpa(B, return_weights=None),
    ),
    # multi-head attention
    "mha_heads_not_dividing": (ValueError, "num_heads", lambda B: mha(B, num_heads=4)),
    "mha_heads_zero": (ValueError, "num_heads", lambda B: mha(B, num_heads=0)),
    "mha_heads_float": (TypeError, "num_heads", lambda B: mha(B, num_heads=2.0)),
    "mha_query_rank_2": (ValueError, "query", lambda B: mha(B, q=(3, 6))),
    "mha_params_not_mapping": (TypeError, "params", lambda B: mha(B, p=[1, 2, 3])),
    "mha_params_missing_key": (
        ValueError,
        "w_k",
        lambda B: mha(B, p=params(B, drop=("w_k",))),
    ),
    "mha_params_unknown_key": (
        ValueError,
        "w_x",
        lambda B: mha(B, p=dict(params(B), w_x=A(B, 6, 6))),
    ),
    "mha_w_k_wrong_rows": (
        ValueError,
        "params['w_k']",
        lambda B: mha(B, p=params(B, w_k=(5, 6))),
    ),
    "mha_w_k_wrong_cols": (
        ValueError,
        "params['w_k']",
        lambda B: mha(B, p=params(B, w_k=(6, 4))),
    ),
    "mha_w_k_rank_1": (
        ValueError,
        "params['w_k']",
        lambda B: mha(B, p=params(B, w_k=(6,))),
    ),
    "mha_w_o_wrong_rows": (
        ValueError,
        "params['w_o']",
        lambda B: mha(B, p=params(B, w_o=(4, 6))),
    ),
    "mha_b_o_wrong_shape": (
        ValueError,
        "params['b_o']",
        lambda B: mha(B, p=params(B, b_o=(5,))),
    ),
    "mha_b_q_wrong_shape": (
        ValueError,
        "params['b_q']",
        lambda B: mha(B, p=params(B, b_q=(6, 1))),
    ),
    "mha_params_dtype": (
        TypeError,
        "params['w_q'] float64",
        lambda B: mha(B, p=params(B, dtype="float64")),
    ),
    "mha_mask_not_broadcastable": (
        ValueError,
        "mask",
        lambda B: mha(B, mask=A(B, 2, 3, 3, 4, dtype="bool")),
    ),
    "mha_mask_float": (TypeError, "mask", lambda B: mha(B, mask=A(B, 2, 1, 1, 4))),
    "mha_bias_not_broadcastable": (
        ValueError,
        "bias",
        lambda B: mha(B, bias=A(B, 1, 1, 2, 4)),
    ),
    "mha_dropout": (ValueError, "dropout", lambda B: mha(B, dropout=1.0)),
    # additive and bilinear parameters
    "additive_w_query_rows": (ValueError, "w_query", lambda B: additive(B, wq=(3, 7))),
    "additive_w_key_rows": (ValueError, "w_key", lambda B: additive(B, wk=(4, 7))),
    "additive_v_size": (ValueError, "v (", lambda B: additive(B, v=(6,))),
    "additive_v_rank_2": (ValueError, "v", lambda B: additive(B, v=(7, 1))),
    "additive_causal_int": (TypeError, "causal", lambda B: additive(B, causal=0)),
    "bilinear_w_shape": (ValueError, "w must", lambda B: bilinear(B, w=(3, 4))),
    "bilinear_w_rank_1": (ValueError, "w must", lambda B: bilinear(B, w=(12,))),
    "bilinear_mask_int": (
        TypeError,
        "mask",
        lambda B: bilinear(B, mask=A(B, 3, 5, dtype="int64")),
    ),
    # softmax
    "softmax_axis_out_of_range": (
        ValueError,
        "axis",
        lambda B: B.mod.softmax(A(B, 2, 3), axis=2),
    ),
    "softmax_axis_negative_out_of_range": (
        ValueError,
        "axis",
        lambda B: B.mod.softmax(A(B, 2, 3), axis=-3),
    ),
    "softmax_axis_float": (
        TypeError,
        "axis",
        lambda B: B.mod.softmax(A(B, 2, 3), axis=1.0),
    ),
    "softmax_float_mask": (
        TypeError,
        "mask",
        lambda B: B.mod.softmax(A(B, 2, 3), mask=A(B, 2, 3)),
    ),
    "softmax_mask_shape": (
        ValueError,
        "mask",
        lambda B: B.mod.softmax(A(B, 2, 3), mask=A(B, 3, 2, dtype="bool")),
    ),
    "softmax_int_x": (
        TypeError,
        "x",
        lambda B: B.mod.softmax(A(B, 2, 3, dtype="int64")),
    ),
    # masks and encodings
    "padding_mask_float_lengths": (
        TypeError,
        "lengths",
        lambda B: B.mod.padding_mask(A(B, 3)),
    ),
    "padding_mask_2d_lengths": (
        ValueError,
        "lengths",
        lambda B: B.mod.padding_mask(A(B, 2, 2, dtype="int64")),
    ),
    "causal_mask_negative": (ValueError, "lq", lambda B: B.mod.causal_mask(-1)),
    "causal_mask_float": (TypeError, "lq", lambda B: B.mod.causal_mask(2.0)),
    "mask_from_keep_float": (
        TypeError,
        "keep",
        lambda B: B.mod.mask_from_keep(A(B, 2, 3)),
    ),
    "mask_from_keep_value_2": (
        ValueError,
        None,
        lambda B: B.mod.mask_from_keep(B.asarray(np.array([0, 1, 2]), "int64")),
    ),
    "mask_from_ignore_float": (
        TypeError,
        "ignore",
        lambda B: B.mod.mask_from_ignore(A(B, 2, 3)),
    ),
    "mask_to_additive_float_mask": (
        TypeError,
        "mask",
        lambda B: B.mod.mask_to_additive(A(B, 2, 3)),
    ),
    "mask_to_additive_int_dtype": (
        ValueError,
        "dtype",
        lambda B: B.mod.mask_to_additive(A(B, 2, 3, dtype="bool"), dtype="int32"),
    ),
    "positional_negative_length": (
        ValueError,
        "length",
        lambda B: B.mod.sinusoidal_positional_encoding(-1, 4),
    ),
    "positional_float_d_model": (
        TypeError,
        "d_model",
        lambda B: B.mod.sinusoidal_positional_encoding(3, 4.0),
    ),
    "positional_base_zero": (
        ValueError,
        "base",
        lambda B: B.mod.sinusoidal_positional_encoding(3, 4, base=0.0),
    ),
    "positional_bad_dtype": (
        ValueError,
        "dtype",
        lambda B: B.mod.sinusoidal_positional_encoding(3, 4, dtype="int64"),
    ),
    # layers
    "layer_mha_query_width": (ValueError, "query", layer_mha),
    "layer_additive_query_width": (ValueError, "query", layer_additive),
}


def _raise(B, case):
    exc, name, build = CASES[case]
    with pytest.raises(Exception) as info:
        build(B)
    return info


@pytest.mark.parametrize("case", list(CASES))
def test_error(backend, case):
    exc, name, _ = CASES[case]
    info = _raise(backend, case)
    assert info.type is exc, f"{backend.name} raised {info.type.__name__}: {info.value}"
    if name is not None:
        assert name in str(info.value), f"{name!r} not named in: {info.value}"


@pytest.mark.parametrize("case", list(CASES))
def test_error_identical_across_backends(case):
    got = {}
    for B in all_backends():
        info = _raise(B, case)
        got[B.name] = (info.type.__name__, str(info.value))
    assert len(set(got.values())) == 1, "\n".join(
        f"{n}: {t}: {m}" for n, (t, m) in got.items()
    )


def test_at_least_thirty_cases():
    assert len(CASES) >= 30


# --- arrays of the wrong framework
# ------------------------------------------------------------------------------

FOREIGN = {"numpy": "torch", "torch": "numpy", "tensorflow": "numpy"}


@pytest.mark.parametrize("arg", ["query", "key", "value", "mask", "bias"])
def test_foreign_array_names_argument(backend, arg):
    other = get(FOREIGN[backend.name])
    args = {
        "query": A(backend, 2, 3, 4),
        "key": A(backend, 2, 5, 4),
        "value": A(backend, 2, 5, 6),
        "mask": A(backend, 3, 5, dtype="bool"),
        "bias": A(backend, 3, 5),
    }
    args[arg] = other.asarray(
        backend.to_numpy(args[arg]), "bool" if arg == "mask" else F32
    )
    with pytest.raises(TypeError, match=arg):
        backend.mod.scaled_dot_product_attention(
            args["query"],
            args["key"],
            args["value"],
            mask=args["mask"],
            bias=args["bias"],
        )


def test_foreign_params_entry(backend):
    other = get(FOREIGN[backend.name])
    p = params(backend)
    p["w_k"] = other.asarray(backend.to_numpy(p["w_k"]), F32)
    with pytest.raises(TypeError, match=r"params\['w_k'\]"):
        mha(backend, p=p)


def test_python_list_is_not_an_array(backend):
    with pytest.raises(TypeError, match="query"):
        backend.mod.scaled_dot_product_attention(
            [[1.0, 2.0]], A(backend, 3, 2), A(backend, 3, 2)
        )


def test_dispatcher_mixed_frameworks():
    N, T = get("numpy"), get("torch")
    with pytest.raises(TypeError):
        attnbook.scaled_dot_product_attention(
            N.asarray(np.ones((2, 3), F32)),
            T.asarray(np.ones((2, 3), F32)),
            N.asarray(np.ones((2, 3), F32)),
        )
    TF = get("tensorflow")
    with pytest.raises(TypeError):
        attnbook.softmax(
            T.asarray(np.ones((2, 3), F32)), mask=TF.asarray(np.ones((2, 3), bool))
        )
    with pytest.raises(TypeError):
        attnbook.multi_head_attention(
            *(T.asarray(np.ones((1, 2, 4), F32)),) * 3,
            {"w_q": N.asarray(np.ones((4, 4), F32))},
            2,
        )


# --- devices
# --------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_mixed_devices_torch():
    require_gpu("torch")
    import torch

    q = torch.ones(2, 3, 4)
    with pytest.raises(ValueError, match="device"):
        get("torch").mod.scaled_dot_product_attention(q, q.cuda(), q)


@pytest.mark.gpu
def test_mixed_devices_tensorflow():
    require_gpu("tensorflow")
    import tensorflow as tf

    with tf.device("CPU:0"):
        a = tf.ones((2, 3, 4))
    with tf.device("GPU:0"):
        b = tf.ones((2, 3, 4))
    with pytest.raises(ValueError, match="device"):
        get("tensorflow").mod.scaled_dot_product_attention(a, b, a)
