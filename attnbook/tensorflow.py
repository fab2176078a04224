"""Attention in TensorFlow: the twin of :mod:`attnbook.numpy`, with Keras 3 layers.

Functions take ``tf.Tensor`` or ``tf.Variable`` arguments, run eagerly or inside
``tf.function`` (unknown graph-mode sizes are accepted by the checks), and place
their work where TensorFlow puts their inputs. Signatures, docstrings and argument
checks are shared with the other twins through :mod:`attnbook._api` and
:mod:`attnbook._spec`.
"""

from __future__ import annotations

import contextlib
import inspect
import math

import numpy as np

try:
    import keras
    import tensorflow as tf
# name the extra to install, not just the missing module
except ModuleNotFoundError as err:
    if err.name not in ("keras", "tensorflow"):
        raise
    raise ModuleNotFoundError(
        "attnbook.tensorflow needs TensorFlow and Keras: pip "
        'install "attnbook[tensorflow]"',
        name=err.name,
    ) from err

from . import _params, _spec
from ._api import implements

__all__ = [
    "softmax",
    "scaled_dot_product_attention",
    "additive_attention",
    "bilinear_attention",
    "multi_head_attention",
    "flash_attention",
    "causal_mask",
    "window_mask",
    "document_mask",
    "padding_mask",
    "mask_from_keep",
    "mask_from_ignore",
    "mask_from_additive",
    "mask_to_additive",
    "sinusoidal_positional_encoding",
    "rotary_embedding",
    "alibi_slopes",
    "alibi_bias",
    "MultiHeadAttention",
    "AdditiveAttention",
]


def _device(x):
    try:
        name = x.device
    except (AttributeError, RuntimeError):  # symbolic tensors have no placement yet
        return None
    return name.rsplit("device:", 1)[-1] if name else None


def _info(name, x, optional=False):
    if x is None and optional:
        return None
    if not isinstance(x, (tf.Tensor, tf.Variable)):
        raise _spec.type_error(name, "tf.Tensor or tf.Variable", x)
    if x.shape.rank is None:
        raise ValueError(
            f"{name} has an unknown rank: attnbook.tensorflow needs the "
            f"number of axes of every array "
            "argument when it traces a tf.function (give it an "
            "input_signature with a shape, such as "
            "tf.TensorSpec([None, None, 64]); the sizes may be None)"
        )
    return _spec.Info(tuple(x.shape), x.dtype.name, _device(x))


def _compute(dtype):
    """float32 for float16/bfloat16 inputs, so softmax never runs in reduced
    precision."""
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


def _masked_softmax(x, allowed, axis=-1, sink=None):
    """Softmax over ``axis`` where ``allowed`` is True (all-masked slices -> 0);
    ``sink`` (size 1 along ``axis``) is one more logit that joins the denominator
    with no weight of its own."""
    if allowed is not None:
        x = tf.where(allowed, x, tf.constant(-np.inf, x.dtype))
    if x.shape[axis] == 0 and sink is None:
        return tf.zeros_like(x)
    m = tf.reduce_max(x, axis=axis, keepdims=True)
    if sink is not None:
        m = tf.maximum(m, sink)
    m = tf.stop_gradient(m)  # the shift changes nothing: no gradient
    m = tf.where(tf.math.is_inf(m) & (m < 0), tf.zeros_like(m), m)
    e = tf.exp(x - m)
    total = tf.reduce_sum(e, axis=axis, keepdims=True)
    if sink is not None:
        total = total + tf.exp(sink - m)
    return e / tf.where(total == 0, tf.ones_like(total), total)


def _known(*sizes):
    return all(isinstance(n, int) for n in sizes)


def _structure(plan, rows, cols):
    """The ``(rows, cols)`` tile of the causal/window structure as a bool tensor, or
    None where it masks nothing. Inside a graph that does not know the lengths,
    ``rows``, ``cols`` and ``plan.offset`` may be scalar tensors."""
    if not plan.structured:
        return None
    if _known(*rows, *cols, plan.offset) and _spec.all_visible(plan, rows, cols):
        return None
    # query positions p_i, (bq, 1)
    i = tf.range(rows[0], rows[1])[:, None] + plan.offset
    j = tf.range(cols[0], cols[1])[None, :]  # key positions, (1, bk)
    ok = []
    if plan.right is not None:
        ok.append(j <= i + plan.right)
    if plan.left is not None:
        ok.append(j >= i - plan.left)
    return ok[0] if len(ok) == 1 else tf.logical_and(*ok)


def _allowed(mask, plan, rows=None, cols=None):
    """The boolean "may attend" tile: ``mask`` AND the causal/window structure, or
    None when nothing is masked."""
    # reductions over the key axis need the (Lq, Lk) axes present
    if mask is not None and mask.shape.rank < 2:
        mask = tf.reshape(mask, [1] * (2 - mask.shape.rank) + [-1] * mask.shape.rank)
    rows, cols = rows or (0, plan.lq), cols or (0, plan.lk)
    tile = _spec.tile(mask, rows, cols) if _known(*rows, *cols) else mask
    tri = _structure(plan, rows, cols)
    if tri is None:
        return tile
    return tri if tile is None else tf.logical_and(tile, tri)


def _scores(q, k, plan, bias, rows=None, cols=None):
    """Scaled, soft-capped and biased scores ``(..., bq, bk)`` of ``q`` (already
    scaled) against ``k``."""
    s = tf.linalg.matmul(q, k, transpose_b=True)
    if plan.softcap is not None:
        c = tf.constant(plan.softcap, s.dtype)
        s = c * tf.tanh(s / c)
    if bias is not None:
        rows, cols = rows or (0, plan.lq), cols or (0, plan.lk)
        s = s + tf.cast(
            _spec.tile(bias, rows, cols) if _known(*rows, *cols) else bias, s.dtype
        )
    return s


def _attend(scores, value, allowed, dropout, seed, dtype, return_weights, sink=None):
    weights = _masked_softmax(
        scores, allowed, sink=None if sink is None else sink[..., None]
    )
    if value.shape.rank > weights.shape.rank or any(
        w == 1 and v != 1
        for w, v in zip(weights.shape[-3::-1], value.shape[-3::-1], strict=False)
    ):
        # batch axes that only `value` has: weights cover them too
        batch = tf.broadcast_dynamic_shape(tf.shape(weights)[:-2], tf.shape(value)[:-2])
        weights = tf.broadcast_to(
            weights, tf.concat([batch, tf.shape(weights)[-2:]], axis=0)
        )
    if dropout > 0:
        shape = tf.shape(weights)
        if seed is None:
            u = tf.random.uniform(shape, dtype=weights.dtype)
        else:
            u = tf.random.stateless_uniform(shape, seed=[seed, 0], dtype=weights.dtype)
        weights = tf.where(
            u >= dropout, weights / (1.0 - dropout), tf.zeros_like(weights)
        )
    out = tf.cast(tf.linalg.matmul(weights, value), dtype)  # (..., Lq, dv)
    return (out, tf.cast(weights, dtype)) if return_weights else out


def _lengths(query, key):
    """Lq and Lk, as Python ints when known and as scalar tensors inside a graph
    where they are not."""
    lq, lk = query.shape[-2], key.shape[-2]
    return (tf.shape(query)[-2] if lq is None else lq), (
        tf.shape(key)[-2] if lk is None else lk
    )


def _scale(plan, x):
    """The scale as a scalar of ``x``'s dtype: ``1/sqrt(d)`` from the running graph
    when ``d`` was not known when it was traced."""
    if plan.scale is not None:
        return tf.constant(plan.scale, x.dtype)
    d = tf.cast(tf.shape(x)[-1], x.dtype)
    return tf.where(d > 0, tf.math.rsqrt(tf.maximum(d, 1)), tf.ones((), x.dtype))


@implements
def softmax(x, axis=-1, mask=None):
    axis = _spec.check_softmax(_info("x", x), axis, _info("mask", mask, optional=True))
    return tf.cast(_masked_softmax(tf.cast(x, _compute(x.dtype)), mask, axis), x.dtype)


def _check(query, key, value, mask, bias, sink, **options):
    plan = _spec.check_attention(
        _info("query", query),
        _info("key", key),
        _info("value", value),
        _info("mask", mask, optional=True),
        _info("bias", bias, optional=True),
        sink=_info("sink", sink, optional=True),
        **options,
    )
    lq, lk = _lengths(query, key)
    # bottom-right with unknown lengths
    offset = plan.offset if plan.offset is not None else lk - lq
    return plan._replace(lq=lq, lk=lk, offset=offset)


def _group(plan, query, key, value, mask, bias, sink):
    """Grouped-query attention without repeating keys: ``query (..., H, Lq, d)``
    becomes ``(..., Hkv, H/Hkv, Lq, d)``, key and value ``(..., Hkv, 1, Lk, d)``, and
    mask/bias/sink follow."""
    g = plan.groups

    def split(x, axis):
        if x is None:
            return None
        shape = _spec.grouped_shape(x.shape, axis, g)
        dims = tf.unstack(tf.shape(x)) if None in x.shape else list(x.shape)
        at = len(x.shape) + axis if len(x.shape) >= -axis else None
        if at is None:
            return x
        new = dims[:at] + list(shape[at : at + 2]) + dims[at + 1 :]
        return tf.reshape(x, new)

    grouped = plan._replace(batch=plan.batch[:-1] + (plan.batch[-1] // g, g), groups=1)
    return (
        grouped,
        split(query, -3),
        tf.expand_dims(key, -3),
        tf.expand_dims(value, -3),
        split(mask, -3),
        split(bias, -3),
        split(sink, -2),
    )


def _ungroup(x, plan, axis):
    """``(..., Hkv, g, ...)`` back to ``(..., H, ...)``; ``axis`` (< -1) is where the
    head axis ends up."""
    dims = tf.unstack(tf.shape(x)) if None in x.shape else list(x.shape)
    return tf.reshape(x, dims[: axis - 1] + [plan.batch[-1]] + dims[axis + 1 :])


@implements
def scaled_dot_product_attention(
    query,
    key,
    value,
    mask=None,
    bias=None,
    *,
    causal=False,
    window=None,
    align="top_left",
    enable_gqa=False,
    softcap=None,
    sink=None,
    scale=None,
    dropout=0.0,
    seed=None,
    return_weights=False,
):
    plan = _check(
        query,
        key,
        value,
        mask,
        bias,
        sink,
        causal=causal,
        return_weights=return_weights,
        scale=scale,
        dropout=dropout,
        seed=seed,
        window=window,
        align=align,
        enable_gqa=enable_gqa,
        softcap=softcap,
    )
    if plan.groups > 1:
        grouped, *arrays = _group(plan, query, key, value, mask, bias, sink)
        res = _sdpa(*arrays, grouped, return_weights)
        return (
            tuple(_ungroup(r, plan, -3) for r in res)
            if return_weights
            else _ungroup(res, plan, -3)
        )
    return _sdpa(query, key, value, mask, bias, sink, plan, return_weights)


def _sdpa(query, key, value, mask, bias, sink, plan, return_weights):
    if (
        not return_weights
        and plan.dropout == 0
        and (not _known(plan.lk) or plan.lk != 0)
    ):
        compute = _compute(query.dtype)
        q, k, v = (tf.cast(a, compute) for a in (query, key, value))
        sink = None if sink is None else tf.cast(sink, compute)
        # same result, faster
        return tf.cast(_sdpa_fast(q, k, v, mask, bias, sink, plan), query.dtype)
    return _explicit(query, key, value, mask, bias, sink, plan, return_weights)


def _explicit(query, key, value, mask, bias, sink, plan, return_weights):
    """The math the book explains: every score, the masked softmax, dropout, the
    weighted sum."""
    compute = _compute(query.dtype)
    q, k, v = (tf.cast(a, compute) for a in (query, key, value))
    scores = _scores(q * _scale(plan, q), k, plan, bias)  # (..., Lq, Lk)
    allowed = _allowed(mask, plan)
    sink = None if sink is None else tf.cast(sink, compute)
    return _attend(
        scores, v, allowed, plan.dropout, plan.seed, query.dtype, return_weights, sink
    )


# Scores per query block of the fast path (32 MiB of float32), shared by every batch and
# head axis: the peak memory is the block's, not Lq * Lk (2 GiB at N = 16384), and a
# block is big enough that eager TensorFlow's per-op cost and its multithreaded kernels
# pay off.
_SCORE_BLOCK = 1 << 23


def _sdpa_fast(q, k, v, mask, bias, sink, plan):
    """``softmax(q k^T * scale + bias) v`` when no weights are asked for: the fast
    path of the TensorFlow twin.

    The arithmetic of the explicit path (the scale folded into ``q`` in both: ``Lq *
    d`` multiplications instead of ``Lq * Lk``), in fewer and fused kernels: queries
    go in blocks of a fixed number
    of scores, each block sees only the keys causal/window let one of its rows see,
    and the softmax is TensorFlow's single multithreaded ``tf.nn.softmax``. Masked
    scores become ``-inf``, so that ``exp`` makes them exactly 0 whatever the allowed
    scores are (even a bias of ``finfo.min``). That kernel turns a row of nothing but
    ``-inf`` into NaN, so the rows with no allowed key get 0 in place of ``-inf`` (a
    finite softmax, whose gradient stays finite too) and are zeroed at the end. A
    sink scales each row by ``sigmoid(lse - sink)``, its share of the denominator;
    the row's log-sum-exp ``lse = max(s) - log(max(p))`` costs no pass of ``exp``.
    """
    q = q * _scale(plan, q)
    if not _known(plan.lq, plan.lk):
        return _fast_block(q, k, v, mask, bias, sink, plan, (0, plan.lq), (0, plan.lk))
    if plan.lq == 0:
        return tf.zeros(_state_shape(plan, q, k, v)(0, None), q.dtype)
    batch = math.prod(b or 1 for b in plan.batch)
    bq = max(64, _SCORE_BLOCK // max(1, batch * plan.lk))
    state_shape = _state_shape(plan, q, k, v)
    outs = []
    for rows in _spec.block_slices(plan.lq, bq):
        cols = _spec.key_range(plan, rows)
        if cols[0] == cols[1]:  # no key for any row: zeros
            outs.append(tf.zeros(state_shape(rows[1] - rows[0], None), q.dtype))
            continue
        qb = q if rows == (0, plan.lq) else q[..., rows[0] : rows[1], :]
        outs.append(_fast_block(qb, k, v, mask, bias, sink, plan, rows, cols))
    return outs[0] if len(outs) == 1 else tf.concat(outs, axis=-2)


def _rows(x, rows, lq):
    """The rows ``rows`` of a per-row array ``x (..., Lq)`` that may have a size-1
    (broadcast) row axis."""
    if not _known(*rows) or rows == (0, lq) or x.shape.rank == 0 or x.shape[-1] == 1:
        return x
    return x[..., rows[0] : rows[1]]


def _softmax(s):
    """``tf.nn.softmax`` over the last axis; its CPU kernel takes at most 5 axes, so
    more are flattened first."""
    if s.shape.rank <= 5:
        return tf.nn.softmax(s, axis=-1)
    return tf.reshape(
        tf.nn.softmax(tf.reshape(s, [-1, tf.shape(s)[-1]]), axis=-1), tf.shape(s)
    )


def _fast_block(qb, k, v, mask, bias, sink, plan, rows, cols):
    """One query block of the fast path: rows ``rows`` against keys ``cols``."""
    compute = qb.dtype
    if _known(*cols) and cols != (0, plan.lk):
        k, v = k[..., cols[0] : cols[1], :], v[..., cols[0] : cols[1], :]
    s = _scores(qb, k, plan, bias, rows, cols)  # (..., bq, bk)
    allowed = _allowed(mask, plan, rows, cols)
    if bias is not None:
        # a -inf bias masks its key too
        finite = tf.not_equal(s, tf.constant(-np.inf, compute))
        allowed = finite if allowed is None else tf.logical_and(allowed, finite)
    live = None
    if allowed is not None:
        live = tf.reduce_any(allowed, axis=-1, keepdims=True)  # (..., bq, 1)
        s = tf.where(
            allowed,
            s,
            tf.where(live, tf.constant(-np.inf, compute), tf.zeros((), compute)),
        )
    p = _softmax(s)
    out = tf.linalg.matmul(p, v)  # (..., bq, dv)
    if sink is not None:
        sb = _rows(sink, rows, plan.lq)[..., None]
        lse = tf.reduce_max(s, axis=-1, keepdims=True) - tf.math.log(
            tf.reduce_max(p, axis=-1, keepdims=True)
        )
        if not _known(plan.lk):  # Lk may be 0 when the graph runs: no key, lse = -inf
            lse = tf.where(tf.shape(s)[-1] > 0, lse, tf.constant(-np.inf, compute))
        top = tf.stop_gradient(tf.maximum(lse, sb))
        top = tf.where(tf.math.is_inf(top) & (top < 0), tf.zeros_like(top), top)
        # the keys' share of the denominator: sigmoid(lse - sink)
        keep = tf.exp(lse - top)
        out = out * (keep / (keep + tf.exp(sb - top)))
    if live is not None:
        out = tf.where(live, out, tf.zeros((), compute))
    return out


@implements
def additive_attention(
    query,
    key,
    value,
    w_query,
    w_key,
    v,
    mask=None,
    *,
    causal=False,
    return_weights=False,
):
    infos = {
        "w_query": _info("w_query", w_query),
        "w_key": _info("w_key", w_key),
        "v": _info("v", v),
    }
    plan = _spec.check_attention(
        _info("query", query),
        _info("key", key),
        _info("value", value),
        _info("mask", mask, optional=True),
        causal=causal,
        return_weights=return_weights,
        same_d=False,
        extra=infos,
    )
    plan = plan._replace(lq=_lengths(query, key)[0], lk=_lengths(query, key)[1])
    _spec.check_additive(query, key, w_query, w_key, v)
    compute = _compute(query.dtype)
    q, k, val, wq, wk, vv = (
        tf.cast(a, compute) for a in (query, key, value, w_query, w_key, v)
    )
    # tensordot and a reduce_sum, not `@`/matvec with broadcast batch axes: TensorFlow
    # 2.21's oneDNN batched matmul corrupts the heap on CPU for shapes like (16, 1, 37,
    # 8) x (8,) (a single decoder query per step).
    hidden = tf.tanh(
        tf.expand_dims(tf.tensordot(q, wq, 1), -2)
        + tf.expand_dims(tf.tensordot(k, wk, 1), -3)
    )
    # (..., Lq, Lk); hidden (..., Lq, Lk, h)
    scores = tf.reduce_sum(hidden * vv, axis=-1)
    return _attend(
        scores, val, _allowed(mask, plan), 0.0, None, query.dtype, return_weights
    )


@implements
def bilinear_attention(
    query, key, value, w, mask=None, *, causal=False, return_weights=False
):
    plan = _spec.check_attention(
        _info("query", query),
        _info("key", key),
        _info("value", value),
        _info("mask", mask, optional=True),
        causal=causal,
        return_weights=return_weights,
        same_d=False,
        extra={"w": _info("w", w)},
    )
    plan = plan._replace(lq=_lengths(query, key)[0], lk=_lengths(query, key)[1])
    _spec.check_bilinear(query, key, w)
    compute = _compute(query.dtype)
    q, k, val, ww = (tf.cast(a, compute) for a in (query, key, value, w))
    # (..., Lq, Lk)
    scores = tf.linalg.matmul(tf.tensordot(q, ww, 1), k, transpose_b=True)
    return _attend(
        scores, val, _allowed(mask, plan), 0.0, None, query.dtype, return_weights
    )


# Default flash tiles: 2^23 scores (32 MiB of float32) over all batch and head axes
# together, at most 16384 keys wide and as many queries tall as that allows (for one
# head, 512 queries at Lk = 16384, 8192 at Lk = 1024; never fewer than 64). Large tiles
# amortise the Python loop and the per-op cost of eager TensorFlow; the tile, not the
# sequence length, sets the memory. Eager TensorFlow runs each element-wise step of a
# tile as its own multithreaded pass over the tile, so the online softmax written out
# costs four passes where the fused, multithreaded `tf.nn.softmax` costs one. Tiles that
# need no mask (no mask, no bias, and wholly visible under causal/window) therefore take
# that kernel (`_flash_tile_fused`) and are folded into the running state through their
# log-sum-exp; only the tiles that need masking pay for the written-out recurrence.
_FLASH_TILE, _FLASH_BLOCK_K = 1 << 23, 16384


def _state_shape(plan, q, k, v):
    """``shape(rows, cols)``: the shape ``batch + (rows, cols)`` of a flash state
    (``cols=None``: ``dv``), a tuple when every size is known and a shape tensor
    inside a graph that knows the batch axes or ``dv`` only when it runs."""
    if None not in plan.batch and plan.dv is not None:
        return lambda rows, cols: plan.batch + (rows, plan.dv if cols is None else cols)
    batch = tf.broadcast_dynamic_shape(
        tf.broadcast_dynamic_shape(tf.shape(q)[:-2], tf.shape(k)[:-2]), tf.shape(v)[:-2]
    )
    dv = tf.shape(v)[-1]
    return lambda rows, cols: tf.concat(
        [batch, tf.stack([rows, dv if cols is None else cols])], axis=0
    )


def _flash_tile_fused(s, vb, m, l, acc):
    """Fold an unmasked tile of scores ``s`` into the running state through one fused
    softmax.

    The tile's own softmax ``p`` and log-sum-exp ``lse_t`` make it a state of its
    own, ``(lse_t, 1, p @ vb)``, which merges with ``(m, l, acc)`` like any other.
    ``lse_t = max(s) - log(max(p))``: ``p`` peaks where ``s`` does, at ``exp(max(s) -
    lse_t)`` >= 1/bk, so the log is well conditioned and no pass of ``exp`` is spent
    on it (its gradient is ``p``, as that of a log-sum-exp must be).
    """
    p = _softmax(s)
    lse = tf.reduce_max(s, axis=-1, keepdims=True) - tf.math.log(
        tf.reduce_max(p, axis=-1, keepdims=True)
    )
    return _merge(m, l, acc, lse, tf.ones_like(lse), tf.linalg.matmul(p, vb))


def _merge(m, l, acc, m2, l2, acc2):
    """Two online-softmax states ``(max, sum, output)`` as one (the log-sum-exp merge
    of the efficient-attention chapter)."""
    m_new = tf.stop_gradient(tf.maximum(m, m2))
    m_safe = tf.where(tf.math.is_inf(m_new) & (m_new < 0), tf.zeros_like(m_new), m_new)
    alpha, beta = tf.exp(m - m_safe), tf.exp(m2 - m_safe)
    return m_new, alpha * l + beta * l2, alpha * acc + beta * acc2


def _flash_tile(qb, k, v, m, l, acc, rows, cols, mask, bias, plan):
    """Fold the key block ``cols`` into the running max ``m``, sum ``l`` and output
    ``acc`` of query block ``rows``."""
    kb, vb = k, v  # every key: no copy
    if cols != (0, k.shape[-2]):
        # (..., bk, d), (..., bk, dv)
        kb, vb = k[..., cols[0] : cols[1], :], v[..., cols[0] : cols[1], :]
    s = _scores(qb, kb, plan, bias, rows, cols)  # (..., bq, bk)
    allowed = _allowed(mask, plan, rows, cols)
    if allowed is None and bias is None:
        return _flash_tile_fused(s, vb, m, l, acc)
    if allowed is not None:
        s = tf.where(allowed, s, tf.constant(-np.inf, s.dtype))
    m_new = tf.stop_gradient(tf.maximum(m, tf.reduce_max(s, axis=-1, keepdims=True)))
    m_safe = tf.where(tf.math.is_inf(m_new) & (m_new < 0), tf.zeros_like(m_new), m_new)
    p = tf.exp(s - m_safe)
    alpha = tf.exp(m - m_safe)  # rescales what was accumulated under the old maximum
    return (
        m_new,
        alpha * l + tf.reduce_sum(p, axis=-1, keepdims=True),
        alpha * acc + tf.linalg.matmul(p, vb),
    )


@implements
def flash_attention(
    query,
    key,
    value,
    mask=None,
    bias=None,
    *,
    causal=False,
    window=None,
    align="top_left",
    enable_gqa=False,
    softcap=None,
    sink=None,
    scale=None,
    block_size=None,
    return_lse=False,
):
    plan = _check(
        query,
        key,
        value,
        mask,
        bias,
        sink,
        causal=causal,
        scale=scale,
        window=window,
        align=align,
        enable_gqa=enable_gqa,
        softcap=softcap,
    )
    return_lse = _spec.check_flag("return_lse", return_lse)
    block = _spec.check_block_size(block_size, None)
    if not _known(plan.lq, plan.lk):
        raise ValueError(
            f"flash_attention needs the lengths Lq and Lk to be known when "
            f"a tf.function is traced, "
            f"got query {tuple(query.shape)} and key {tuple(key.shape)}: "
            f"its tiles are laid out in "
            "Python. Give the input_signature static lengths, or use "
            "scaled_dot_product_attention"
        )
    if plan.groups > 1:
        grouped, *arrays = _group(plan, query, key, value, mask, bias, sink)
        out, lse = _flash(*arrays, grouped, block, return_lse)
        out, lse = (
            _ungroup(out, plan, -3),
            None if lse is None else _ungroup(lse, plan, -2),
        )
    else:
        out, lse = _flash(query, key, value, mask, bias, sink, plan, block, return_lse)
    return (out, lse) if return_lse else out


def _flash(query, key, value, mask, bias, sink, plan, block, return_lse):
    """The tiled online softmax; returns the output and the log-sum-exp ``(..., Lq)``
    (None unless asked for)."""
    block_k = block or _FLASH_BLOCK_K
    # tall tiles when the keys are few
    block_q = block or _spec.flash_block_q(_FLASH_TILE, plan, block_k)
    compute = _compute(query.dtype)
    q, k, v = (tf.cast(a, compute) for a in (query, key, value))
    q = q * _scale(plan, q)  # scale folded into q once
    sink = None if sink is None else tf.cast(sink, compute)
    state_shape = _state_shape(plan, q, k, v)
    neg_inf = tf.constant(-np.inf, compute)
    # One unmasked tile holds every key and no log-sum-exp is asked for: that tile's
    # softmax is the answer.
    lone = (
        not return_lse
        and mask is None
        and bias is None
        and sink is None
        and not plan.structured
        and 0 < plan.lk <= block_k
    )
    outs, lses = [], []
    for rows in _spec.block_slices(plan.lq, block_q):
        qb = q if rows == (0, plan.lq) else q[..., rows[0] : rows[1], :]  # (..., bq, d)
        if lone:
            outs.append(tf.linalg.matmul(_softmax(_scores(qb, k, plan, None)), v))
            continue
        m = tf.fill(state_shape(rows[1] - rows[0], 1), neg_inf)
        l = tf.zeros_like(m)
        acc = tf.zeros(state_shape(rows[1] - rows[0], None), compute)
        # only the keys causal/window let a row see
        for cols in _spec.key_tiles(plan, rows, block_k):
            m, l, acc = _flash_tile(qb, k, v, m, l, acc, rows, cols, mask, bias, plan)
        if sink is not None:  # the sink joins the denominator, with no value
            sb = tf.broadcast_to(_rows(sink, rows, plan.lq)[..., None], tf.shape(m))
            m, l, acc = _merge(m, l, acc, sb, tf.ones_like(sb), tf.zeros_like(acc))
        live = l > 0
        outs.append(acc / tf.where(live, l, tf.ones_like(l)))
        if return_lse:
            lses.append(
                tf.where(
                    live, m + tf.math.log(tf.where(live, l, tf.ones_like(l))), neg_inf
                )[..., 0]
            )
    if not outs:
        outs = [tf.zeros(state_shape(0, None), compute)]
        lses = [tf.zeros(state_shape(0, 1), compute)[..., 0]]
    out = tf.cast(outs[0] if len(outs) == 1 else tf.concat(outs, axis=-2), query.dtype)
    return out, (tf.concat(lses, axis=-1) if return_lse else None)


def _linear(x, w, b):
    y = tf.tensordot(x, w, axes=1)
    return y if b is None else y + b


def _split_heads(x, num_heads):
    b, length = tf.shape(x)[0], tf.shape(x)[1]
    x = tf.reshape(x, (b, length, num_heads, x.shape[-1] // num_heads))
    return tf.transpose(x, (0, 2, 1, 3))  # (B, H, L, D/H)


@implements
def multi_head_attention(
    query,
    key,
    value,
    params,
    num_heads,
    mask=None,
    bias=None,
    *,
    num_kv_heads=None,
    causal=False,
    window=None,
    align="top_left",
    softcap=None,
    rope=None,
    dropout=0.0,
    seed=None,
    return_weights=False,
):
    names = _spec.check_params_mapping(params)
    infos = {
        "query": _info("query", query),
        "key": _info("key", key),
        "value": _info("value", value),
    }
    p_infos = {n: _info(f"params['{n}']", params[n]) for n in names}
    heads = _spec.check_multi_head(
        *infos.values(),
        p_infos,
        num_heads,
        _info("mask", mask, optional=True),
        _info("bias", bias, optional=True),
        num_kv_heads=num_kv_heads,
        causal=causal,
        return_weights=return_weights,
        dropout=dropout,
        seed=seed,
        rope=rope,
    )
    p = params
    # (B, H, Lq, d)
    q = _split_heads(_linear(query, p["w_q"], p.get("b_q")), heads.heads)
    # (B, Hkv, Lk, d)
    k = _split_heads(_linear(key, p["w_k"], p.get("b_k")), heads.kv_heads)
    # (B, Hkv, Lk, d)
    v = _split_heads(_linear(value, p["w_v"], p.get("b_v")), heads.kv_heads)
    if heads.rope is not None:
        lq, lk = _lengths(q, k)
        offset = 0 if align != "bottom_right" else lk - lq
        q = rotary_embedding(q, tf.range(lq) + offset, base=heads.rope)
        k = rotary_embedding(k, base=heads.rope)
    res = scaled_dot_product_attention(
        q,
        k,
        v,
        mask,
        bias,
        causal=causal,
        window=window,
        align=align,
        enable_gqa=heads.kv_heads != heads.heads,
        softcap=softcap,
        dropout=dropout,
        seed=seed,
        return_weights=return_weights,
    )
    out, weights = res if return_weights else (res, None)
    out = tf.transpose(out, (0, 2, 1, 3))  # (B, Lq, H, d)
    out = tf.reshape(out, (tf.shape(out)[0], tf.shape(out)[1], p["w_o"].shape[0]))
    out = _linear(out, p["w_o"], p.get("b_o"))  # (B, Lq, Do)
    return (out, weights) if return_weights else out


def _mask_of(plan):
    """The ``(Lq, Lk)`` boolean tensor of a structure-only plan (see
    ``_spec.structure``)."""
    tri = _structure(plan, (0, plan.lq), (0, plan.lk))
    return (
        tf.ones((plan.lq, plan.lk), tf.bool)
        if tri is None
        else tf.broadcast_to(tri, (plan.lq, plan.lk))
    )


@implements
def causal_mask(lq, lk=None, *, align="top_left"):
    return _mask_of(
        _spec.structure(lq, lq if lk is None else lk, causal=True, align=align)
    )


@implements
def window_mask(lq, lk, window, *, align="top_left"):
    return _mask_of(_spec.structure(lq, lk, window=window, align=align))


@implements
def document_mask(segments_q, segments_k=None):
    _spec.check_documents(
        _info("segments_q", segments_q), _info("segments_k", segments_k, optional=True)
    )
    segments_k = segments_q if segments_k is None else segments_k
    q, k = (tf.cast(a, tf.int64) for a in (segments_q, segments_k))
    return tf.equal(q[..., :, None], k[..., None, :])  # (..., Lq, Lk)


@implements
def rotary_embedding(x, positions=None, *, base=10000.0, interleaved=False):
    base, interleaved = _spec.check_rotary(
        _info("x", x), _info("positions", positions, optional=True), base, interleaved
    )
    compute = _compute(x.dtype)
    d = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
    pos = tf.cast(
        tf.range(tf.shape(x)[-2]) if positions is None else positions, tf.float64
    )
    inv_freq = tf.constant(base, tf.float64) ** (
        -tf.range(0, d, 2, dtype=tf.float64) / tf.cast(d, tf.float64)
    )
    angles = pos[..., None] * inv_freq  # (..., L, d/2), in float64
    cos, sin = tf.cast(tf.cos(angles), compute), tf.cast(tf.sin(angles), compute)
    xc = tf.cast(x, compute)
    if interleaved:
        a, b = xc[..., 0::2], xc[..., 1::2]  # pairs (2k, 2k+1)
        out = tf.stack([a * cos - b * sin, b * cos + a * sin], axis=-1)
        out = tf.reshape(out, tf.shape(xc))
    else:
        a, b = xc[..., : d // 2], xc[..., d // 2 :]  # pairs (k, k + d/2)
        out = tf.concat([a * cos - b * sin, b * cos + a * sin], axis=-1)
    return tf.cast(out, x.dtype)


@implements
def alibi_slopes(num_heads, dtype="float32"):
    num_heads, _, dtype = _spec.check_alibi(num_heads, dtype=dtype)
    return tf.cast(
        tf.constant(_spec.alibi_slopes(num_heads), tf.float64), tf.as_dtype(dtype)
    )


@implements
def alibi_bias(num_heads, lq, lk, *, align="top_left", dtype="float32"):
    num_heads, plan, dtype = _spec.check_alibi(num_heads, lq, lk, align, dtype)
    slopes = tf.constant(_spec.alibi_slopes(num_heads), tf.float64)
    # |p_i - j|
    distance = tf.abs(
        tf.range(plan.lq)[:, None] + plan.offset - tf.range(plan.lk)[None, :]
    )
    return tf.cast(
        -slopes[:, None, None] * tf.cast(distance, tf.float64), tf.as_dtype(dtype)
    )


@implements
def padding_mask(lengths, max_len=None):
    _spec.check_lengths(_info("lengths", lengths))
    # tf.range has no kernel for int8, int16 or unsigned types
    lengths = tf.cast(lengths, tf.int64)
    if max_len is None:
        # A tensor, so that it also works inside tf.function with an unknown batch size
        # (the mask is then (B, None) until the graph runs); the 0 appended makes an
        # empty batch give max_len = 0.
        max_len = tf.reduce_max(tf.concat([lengths, tf.zeros([1], tf.int64)], axis=0))
    else:
        max_len = _spec.check_length("max_len", max_len)
    return tf.range(max_len, dtype=tf.int64)[None, :] < lengths[:, None]


@implements
def mask_from_keep(keep):
    _spec.check_keep(_info("keep", keep))
    if keep.dtype == tf.bool:
        return tf.identity(keep)
    ok = tf.reduce_all((keep == 0) | (keep == 1))
    if tf.executing_eagerly():
        if not bool(ok):
            raise ValueError("keep must contain only 0 and 1")
        return keep != 0
    # Inside a graph the values are known only when it runs: the check becomes an
    # assertion there, which raises tf.errors.InvalidArgumentError with the same
    # message.
    with tf.control_dependencies(
        [tf.debugging.Assert(ok, ["keep must contain only 0 and 1"])]
    ):
        return tf.not_equal(keep, 0)


@implements
def mask_from_ignore(ignore):
    _spec.check_bool("ignore", _info("ignore", ignore))
    return tf.logical_not(ignore)


@implements
def mask_from_additive(additive, threshold=-1e4):
    _spec.check_float("additive", _info("additive", additive))
    threshold = tf.constant(_spec.check_threshold(threshold), tf.float64)
    return tf.cast(additive, tf.float64) > threshold  # float64: exact for every dtype


@implements
def mask_to_additive(mask, dtype="float32"):
    _spec.check_bool("mask", _info("mask", mask))
    dtype = tf.as_dtype(_spec.check_dtype_name(dtype))
    return tf.where(mask, tf.constant(0.0, dtype), tf.constant(-np.inf, dtype))


@implements
def sinusoidal_positional_encoding(length, d_model, base=10000.0, dtype="float32"):
    length, d_model, base = _spec.check_positional(length, d_model, base)
    dtype = tf.as_dtype(_spec.check_dtype_name(dtype))
    position = tf.range(length, dtype=tf.float64)[:, None]  # (L, 1)
    freq = tf.constant(base, tf.float64) ** (
        -tf.range(0, d_model, 2, dtype=tf.float64) / d_model
    )
    angles = position * freq  # (L, ceil(d/2))
    # sin, cos interleaved
    pe = tf.reshape(tf.stack([tf.sin(angles), tf.cos(angles)], axis=-1), (length, -1))
    return tf.cast(pe[:, :d_model], dtype)


class _Params(keras.layers.Layer):
    """Creates the layer's weights from the shared NumPy initialisation, named like
    the parameter dict."""

    def _init_params(self, shapes, seed, dtype):
        self.shapes = shapes
        for name, value in _params.init(shapes, seed, dtype).items():
            var = self.add_weight(
                name=name,
                shape=value.shape,
                dtype=dtype,
                initializer=keras.initializers.Constant(value),
            )
            setattr(self, f"_{name}", var)
        self.built = True

    @staticmethod
    @contextlib.contextmanager
    def _plain_errors():
        """A TypeError/ValueError raised inside leaves Keras unreworded, so it reads
        as in the other twins."""
        try:
            yield
        except (TypeError, ValueError) as err:
            # Keras' marker for "already annotated": it re-raises as is
            err._keras_call_info_injected = True
            raise

    def params(self):
        """The weights as TensorFlow variables, the parameter dict that the functions
        take."""
        return {name: getattr(self, f"_{name}").value for name in self.shapes}

    def get_params(self):
        """The parameters as a dict of NumPy arrays (float32 for bfloat16 layers)."""
        return {
            name: np.asarray(tf.cast(v, tf.float32) if v.dtype == tf.bfloat16 else v)
            for name, v in self.params().items()
        }

    def set_params(self, params):
        for name, value in _params.check_set(self.shapes, params).items():
            getattr(self, f"_{name}").assign(value)

    def __call__(self, *args, mask=None, **kwargs):
        # Keras gives a call argument named `mask` a meaning of its own: it fills it in
        # from the `_keras_mask` of the inputs, a (B, L) keep-mask that would broadcast
        # wrongly against (B, H, Lq, Lk) scores. Our `mask` is the attention mask of the
        # other twins, so it travels to `call` under another name, whether it was passed
        # by keyword or by position. Keras also turns positional arguments into tensors
        # (a NumPy query, a NumPy bool flag) or refuses them with messages of its own:
        # everything but the query goes by keyword, and the query is checked first, so
        # that the layer accepts and refuses what the other twins' layers do.
        names = [n for n in inspect.signature(self.call).parameters if n != "kwargs"]
        if len(args) > len(names):
            raise TypeError(
                f"{type(self).__name__}() takes {len(names)} positional "
                f"arguments but {len(args)} "
                "were given"
            )
        named = dict(zip(names, args, strict=False))
        if "attention_mask" in named:
            if mask is not None:
                raise TypeError(
                    f"{type(self).__name__}() got multiple values for argument 'mask'"
                )
            mask = named.pop("attention_mask")
        for name in named:
            if name in kwargs:
                raise TypeError(
                    f"{type(self).__name__}() got multiple values for argument {name!r}"
                )
        kwargs.update(named)
        if "query" not in kwargs:
            raise TypeError(
                f"{type(self).__name__}() missing required argument 'query'"
            )
        query = kwargs.pop("query")
        for name, x in (
            ("query", query),
            ("key", kwargs.get("key")),
            ("value", kwargs.get("value")),
            ("mask", mask),
            ("bias", kwargs.get("bias")),
        ):
            _info(name, x, optional=name != "query")
        kwargs = {
            k: bool(v) if isinstance(v, np.bool_) else v for k, v in kwargs.items()
        }
        return super().__call__(query, attention_mask=mask, **kwargs)


class MultiHeadAttention(_Params):
    """Multi-head attention as a ``keras.layers.Layer``; the weights are ``w_q, w_k,
    w_v, w_o`` (+ biases).

    Same constructor arguments as the NumPy and torch layers; dropout is active when
    called with ``training=True`` (as ``model.fit`` does).
    """

    def __init__(
        self,
        d_model,
        num_heads,
        *,
        num_kv_heads=None,
        query_dim=None,
        key_dim=None,
        value_dim=None,
        output_dim=None,
        use_bias=True,
        window=None,
        align="top_left",
        softcap=None,
        rope=None,
        dropout=0.0,
        seed=0,
        dtype="float32",
        **kwargs,
    ):
        shapes = _params.multi_head_shapes(
            d_model,
            num_heads,
            query_dim,
            key_dim,
            value_dim,
            output_dim,
            use_bias,
            num_kv_heads,
        )
        seed, dtype, dropout = _params.check_layer(seed, dtype, dropout)
        options = _params.attention_options(
            d_model, num_heads, num_kv_heads, window, align, softcap, rope, dtype
        )
        # autocast=False: Keras would cast float32 inputs of a float64 layer silently;
        # the other twins refuse them.
        super().__init__(dtype=dtype, autocast=False, **kwargs)
        self.num_heads, self.dropout, self.options = int(num_heads), dropout, options
        self._init_params(shapes, seed, dtype)

    def call(
        self,
        query,
        key=None,
        value=None,
        attention_mask=None,
        bias=None,
        causal=False,
        return_weights=False,
        training=None,
    ):
        """``training=None`` lets Keras decide (True inside ``fit``); True applies
        the layer's dropout."""
        key = query if key is None else key
        value = key if value is None else value
        with self._plain_errors():
            training = (
                False if training is None else _spec.check_flag("training", training)
            )
            return multi_head_attention(
                query,
                key,
                value,
                self.params(),
                self.num_heads,
                attention_mask,
                bias,
                causal=causal,
                dropout=self.dropout if training else 0.0,
                return_weights=return_weights,
                **self.options,
            )


class AdditiveAttention(_Params):
    """Additive (Bahdanau) attention as a ``keras.layers.Layer`` with weights
    ``w_query, w_key, v``."""

    def __init__(
        self, query_dim, key_dim, hidden_dim, *, seed=0, dtype="float32", **kwargs
    ):
        shapes = _params.additive_shapes(query_dim, key_dim, hidden_dim)
        seed, dtype, _ = _params.check_layer(seed, dtype)
        super().__init__(dtype=dtype, autocast=False, **kwargs)
        self._init_params(shapes, seed, dtype)

    def call(
        self, query, key, value, attention_mask=None, causal=False, return_weights=False
    ):
        p = self.params()
        with self._plain_errors():
            return additive_attention(
                query,
                key,
                value,
                p["w_query"],
                p["w_key"],
                p["v"],
                attention_mask,
                causal=causal,
                return_weights=return_weights,
            )
