"""Parameter dicts shared by the layers of all three frameworks.

Parameters are created here in NumPy from a seed, so a layer built with the same
arguments and seed holds the same numbers in every framework, and ``get_params()`` /
``set_params()`` move them between frameworks unchanged.
"""

from __future__ import annotations

import numpy as np

from . import _spec


def _glorot(rng, fan_in, fan_out, dtype):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)


def multi_head_shapes(
    d_model,
    num_heads,
    query_dim=None,
    key_dim=None,
    value_dim=None,
    output_dim=None,
    use_bias=True,
    num_kv_heads=None,
):
    """Shapes of a MultiHeadAttention layer's parameters, after checking the
    constructor arguments.

    With ``num_kv_heads = Hkv`` the key and value projections have ``Hkv * d``
    columns, ``d = d_model / num_heads`` (grouped-query attention); the dict has the
    same keys either way."""
    d_model = _size("d_model", d_model)
    num_heads = _spec.check_integer(
        "num_heads", num_heads, least=1, what="a positive integer"
    )
    if d_model % num_heads:
        raise ValueError(
            f"num_heads = {num_heads} must be a positive integer dividing "
            f"d_model = {d_model}"
        )
    kv_heads = (
        num_heads
        if num_kv_heads is None
        else _spec.check_integer(
            "num_kv_heads", num_kv_heads, least=1, what="a positive integer or None"
        )
    )
    if num_heads % kv_heads:
        raise ValueError(
            f"num_kv_heads = {kv_heads} must divide num_heads = {num_heads}"
        )
    kv = d_model // num_heads * kv_heads
    dq = d_model if query_dim is None else _size("query_dim", query_dim)
    dk = dq if key_dim is None else _size("key_dim", key_dim)
    dv = dk if value_dim is None else _size("value_dim", value_dim)
    do = dq if output_dim is None else _size("output_dim", output_dim)
    use_bias = _spec.check_flag("use_bias", use_bias)
    shapes = {
        "w_q": (dq, d_model),
        "w_k": (dk, kv),
        "w_v": (dv, kv),
        "w_o": (d_model, do),
    }
    if use_bias:
        shapes.update(b_q=(d_model,), b_k=(kv,), b_v=(kv,), b_o=(do,))
    return shapes


def attention_options(
    d_model, num_heads, num_kv_heads, window, align, softcap, rope, dtype
):
    """The attention options a MultiHeadAttention layer passes to
    ``multi_head_attention`` on every call, checked once at construction
    (``d_model``/``num_heads`` are already checked)."""
    window = _spec.check_window(window)
    options = {
        "num_kv_heads": None if num_kv_heads is None else int(num_kv_heads),
        "window": None if window == (None, None) else window,
        "align": _spec.check_align(align),
        "softcap": _spec.check_softcap(softcap, dtype),
        "rope": None,
    }
    if rope is not None:
        options["rope"] = _spec.check_base("rope", rope)
        if (d_model // num_heads) % 2:
            raise ValueError(
                f"rope needs an even head size d = d_model / num_heads = "
                f"{d_model} / {num_heads}"
            )
    return options


def _size(name, value):
    """A layer width: a positive integer (a layer of width 0 has nothing to compute
    and no initialisation)."""
    return _spec.check_integer(name, value, least=1, what="a positive integer")


def additive_shapes(query_dim, key_dim, hidden_dim):
    dq, dk, h = (
        _size(n, x)
        for n, x in (
            ("query_dim", query_dim),
            ("key_dim", key_dim),
            ("hidden_dim", hidden_dim),
        )
    )
    return {"w_query": (dq, h), "w_key": (dk, h), "v": (h,)}


def check_layer(seed, dtype, dropout=0.0):
    """The constructor arguments every layer shares; returns ``(seed, dtype,
    dropout)`` checked."""
    seed = _spec.check_integer("seed", seed)
    dtype = _spec.check_dtype_name(dtype)
    dropout, _ = _spec.check_dropout(dropout, None)
    return seed, dtype, dropout


def init(shapes, seed, dtype):
    """Glorot-uniform matrices, zero biases, and ``v ~ U(-1/sqrt(h), 1/sqrt(h))``,
    from one NumPy seed."""
    _spec.check_dtype_name(dtype)
    rng = np.random.default_rng(_spec.check_integer("seed", seed))
    np_dtype = "float32" if dtype == "bfloat16" else dtype
    out = {}
    for name, shape in shapes.items():
        if len(shape) == 2:
            out[name] = _glorot(rng, *shape, np_dtype)
        elif name == "v":
            out[name] = rng.uniform(-1, 1, size=shape).astype(np_dtype) / np.sqrt(
                shape[0]
            ).astype(np_dtype)
        else:
            out[name] = np.zeros(shape, np_dtype)
    return out


def check_set(shapes, params):
    """Check a parameter dict given to ``set_params`` against the layer's shapes;
    returns NumPy arrays."""
    if not hasattr(params, "keys"):
        raise TypeError(
            f"params must be a mapping of parameter names to arrays, got "
            f"{type(params).__name__}"
        )
    missing = sorted(set(shapes) - set(params))
    unknown = sorted(set(params) - set(shapes))
    if missing or unknown:
        raise ValueError(
            f"params must have exactly the keys {', '.join(shapes)}; "
            f"missing {missing}, "
            f"unknown {unknown}"
        )
    out = {}
    for name, shape in shapes.items():
        try:
            value = np.asarray(params[name])
        # ragged lists, tensors that require grad, ...
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"params['{name}'] must be an array of real numbers: {err}"
            ) from None
        if value.dtype.kind not in "iuf":
            raise TypeError(
                f"params['{name}'] must be an array of real numbers, got "
                f"dtype {value.dtype}"
            )
        if value.shape != tuple(shape):
            raise ValueError(
                f"params['{name}'] must have shape {tuple(shape)}, got {value.shape}"
            )
        out[name] = value
    return out
