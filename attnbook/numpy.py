"""Attention in NumPy: the reference twin, written to be read next to the book.

Every public function has the signature and docstring of its spec in
:mod:`attnbook._api`; argument checks live in :mod:`attnbook._spec`, so this file
holds only the algorithms. Shapes use the letters of ``_api``.
"""

from __future__ import annotations

import concurrent.futures
import os

import numpy as np

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


def _dtype(name):
    """A float dtype by name; NumPy has no bfloat16, so that one is refused rather
    than silently changed."""
    if _spec.check_dtype_name(name) == "bfloat16":
        raise ValueError(
            "dtype bfloat16 is not available in NumPy; use float32 here, "
            "or the torch/tensorflow twin"
        )
    return name


def _info(name, x, optional=False):
    """Describe an array argument for the shared checks; ``None`` stays ``None`` for
    the optional ones."""
    if x is None and optional:
        return None
    if not isinstance(x, np.ndarray):
        raise _spec.type_error(name, "numpy.ndarray", x)
    return _spec.Info(x.shape, x.dtype.name)


def _masked_softmax(x, allowed, axis=-1, sink=None):
    """Softmax over ``axis`` of ``x`` where ``allowed`` (bool or None) is True; empty
    or all-masked slices -> 0.

    ``sink`` (broadcastable to ``x`` with ``axis`` of size 1, or None) is one more
    logit per slice that joins the denominator and gets no weight of its own."""
    if allowed is not None:
        x = np.where(allowed, x, -np.inf)
    if x.shape[axis] == 0 and sink is None:
        return np.zeros(x.shape, x.dtype)
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    if sink is not None:
        m = np.maximum(m, sink)
    # a slice with nothing to attend to: exp(-inf - 0) = 0
    m = np.where(np.isneginf(m), 0, m)
    e = np.exp(x - m)
    total = np.sum(e, axis=axis, keepdims=True)
    if sink is not None:
        total = total + np.exp(sink - m)
    return e / np.where(total == 0, 1, total)


def _structure(plan, rows, cols):
    """The ``(rows, cols)`` tile of the causal/window structure as a bool array, or
    None where it masks nothing."""
    if not plan.structured or _spec.all_visible(plan, rows, cols):
        return None
    i = np.arange(*rows)[:, None] + plan.offset  # query positions p_i, (bq, 1)
    j = np.arange(*cols)[None, :]  # key positions, (1, bk)
    ok = np.ones((rows[1] - rows[0], cols[1] - cols[0]), bool)
    if plan.right is not None:
        ok &= j <= i + plan.right
    if plan.left is not None:
        ok &= j >= i - plan.left
    return ok


def _allowed(mask, plan, rows=None, cols=None):
    """The boolean "may attend" tile: ``mask`` AND the causal/window structure, or
    None when nothing is masked."""
    rows, cols = rows or (0, plan.lq), cols or (0, plan.lk)
    tile = _spec.tile(mask, rows, cols)
    tri = _structure(plan, rows, cols)
    if tri is None:
        return tile
    return tri if tile is None else tile & tri


def _scores(q, k, plan, bias, rows=None, cols=None):
    """Scaled, soft-capped and biased scores ``(..., bq, bk)`` of ``q (..., bq, d)``
    (already scaled) against ``k (..., bk, d)``, for the tile ``rows x cols`` of the
    bias."""
    s = q @ np.swapaxes(k, -1, -2)
    if plan.softcap is not None:
        c = np.asarray(plan.softcap, s.dtype)
        s = c * np.tanh(s / c)
    if bias is not None:
        s = s + _spec.tile(bias, rows or (0, plan.lq), cols or (0, plan.lk)).astype(
            s.dtype, copy=False
        )
    return s


def _attend(scores, value, allowed, dropout, seed, dtype, return_weights, sink=None):
    """Normalise ``scores (..., Lq, Lk)`` into weights and take the weighted sum of
    ``value (..., Lk, dv)``."""
    weights = _masked_softmax(
        scores, allowed, sink=None if sink is None else sink[..., None]
    )
    shape = (
        np.broadcast_shapes(weights.shape[:-2], value.shape[:-2]) + weights.shape[-2:]
    )
    # batch axes that only `value` has: weights cover them too
    if shape != weights.shape:
        weights = np.broadcast_to(weights, shape).copy()
    if dropout > 0:
        keep = np.random.default_rng(seed).random(weights.shape) >= dropout
        weights = np.where(keep, weights / (1.0 - dropout), 0).astype(weights.dtype)
    out = (weights @ value).astype(dtype)  # (..., Lq, dv)
    return (out, weights.astype(dtype)) if return_weights else out


@implements
def softmax(x, axis=-1, mask=None):
    axis = _spec.check_softmax(_info("x", x), axis, _info("mask", mask, optional=True))
    compute = _spec.compute_dtype(x.dtype.name)
    return _masked_softmax(x.astype(compute), mask, axis).astype(x.dtype)


def _check(query, key, value, mask, bias, sink, **options):
    return _spec.check_attention(
        _info("query", query),
        _info("key", key),
        _info("value", value),
        _info("mask", mask, optional=True),
        _info("bias", bias, optional=True),
        sink=_info("sink", sink, optional=True),
        **options,
    )


def _group(plan, query, key, value, mask, bias, sink):
    """Grouped-query attention without repeating keys: ``query (..., H, Lq, d)``
    becomes ``(..., Hkv, H/Hkv, Lq, d)``, key and value ``(..., Hkv, 1, Lk, d)``, and
    mask/bias/sink follow."""
    g = plan.groups

    def split(x, axis):
        return None if x is None else x.reshape(_spec.grouped_shape(x.shape, axis, g))

    q = split(query, -3)
    k, v = key[..., None, :, :], value[..., None, :, :]
    grouped = plan._replace(batch=plan.batch[:-1] + (plan.batch[-1] // g, g), groups=1)
    return grouped, q, k, v, split(mask, -3), split(bias, -3), split(sink, -2)


def _ungroup(x, plan, axis):
    """``(..., Hkv, g, ...)`` back to ``(..., H, ...)``; ``axis`` (< -1) is where the
    head axis ends up."""
    return x.reshape(x.shape[: axis - 1] + (plan.batch[-1],) + x.shape[axis + 1 :])


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
        if not return_weights:
            return _ungroup(res, plan, -3)
        return _ungroup(res[0], plan, -3), _ungroup(res[1], plan, -3)
    return _sdpa(query, key, value, mask, bias, sink, plan, return_weights)


def _sdpa(query, key, value, mask, bias, sink, plan, return_weights):
    if not return_weights and plan.dropout == 0:  # same result, faster
        return _sdpa_blocked(
            query,
            key,
            value,
            mask,
            bias,
            sink,
            plan,
            _spec.compute_dtype(query.dtype.name),
        )
    return _explicit(query, key, value, mask, bias, sink, plan, return_weights)


def _explicit(query, key, value, mask, bias, sink, plan, return_weights):
    """The math the book explains: every score, the masked softmax, dropout, the
    weighted sum."""
    compute = _spec.compute_dtype(query.dtype.name)
    q, k, v = (a.astype(compute, copy=False) for a in (query, key, value))
    # (..., Lq, Lk)
    scores = _scores(q * np.asarray(plan.scale, compute), k, plan, bias)
    sink = None if sink is None else sink.astype(compute, copy=False)
    return _attend(
        scores,
        v,
        _allowed(mask, plan),
        plan.dropout,
        plan.seed,
        query.dtype,
        return_weights,
        sink,
    )


# Score entries per query block of the fast path (8 MiB of float32): the block's scores
# stay in the CPU's last-level cache between the passes (max, exp, sum, matmul) that
# read them, memory no longer grows as Lq * Lk, and the blocks are few enough (8 at N =
# 4096) that each BLAS call is big enough to keep every core busy.
_SCORE_BLOCK = 1 << 21


def _sdpa_blocked(query, key, value, mask, bias, sink, plan, compute):
    """``softmax(q k^T * scale + bias) v`` when no weights are asked for: the fast
    path of the NumPy twin.

    The arithmetic of the explicit path (the scale folded into ``q`` in both: ``Lq * d``
    multiplications instead of ``Lq * Lk``), arranged for speed: queries go in blocks
    whose ``(..., bq, Lk)`` scores fit in cache; the max is subtracted and ``exp`` taken
    in place; and the normalisation divides the ``(bq, dv)`` output of the second matmul
    instead of the ``(bq, Lk)`` weights. A block computes only the keys that
    causal/window let one of its rows see (about half the work when causal with ``Lq ==
    Lk``, ``O(Lq * w)`` for a window of ``w``). The blocks run on every core at once
    (see ``_each_block``).
    """
    # (..., Lq, d), a fresh copy
    q = query.astype(compute) * np.asarray(plan.scale, compute)
    k = key.astype(compute, copy=False)  # (..., Lk, d)
    v = value.astype(compute, copy=False)  # (..., Lk, dv)
    sink = None if sink is None else sink.astype(compute, copy=False)
    out = np.zeros(plan.batch + (plan.lq, plan.dv), compute)
    batch = int(np.prod(plan.batch, dtype=np.int64))
    bq = max(1, _SCORE_BLOCK // max(1, batch * plan.lk))

    def one_block(rows):
        cols = _spec.key_range(plan, rows)  # keys any row of this block may see
        if cols[0] == cols[1]:
            return  # no key for any row: the output stays 0
        s = _scores(
            q[..., rows[0] : rows[1], :],
            k[..., cols[0] : cols[1], :],
            plan,
            bias,
            rows,
            cols,
        )
        allowed = _allowed(mask, plan, rows, cols)
        if allowed is not None:
            s = np.where(allowed, s, -np.inf)
        m = s.max(axis=-1, keepdims=True)
        sb = None if sink is None else _spec.tile(sink[..., None], rows, (0, 1))
        if sb is not None:
            m = np.maximum(m, sb)
            # batch axes that only the sink (or value) has
            if m.shape[:-1] != s.shape[:-1]:
                s = np.broadcast_to(s, m.shape[:-1] + s.shape[-1:]).copy()
        if (
            allowed is not None
            or bias is not None
            or plan.softcap is not None
            or sb is not None
        ):
            m[np.isneginf(m)] = 0  # a row with nothing to attend to: exp(-inf - 0) = 0
        s -= m
        np.exp(s, out=s)
        total = s.sum(axis=-1, keepdims=True)
        if sb is not None:
            total += np.exp(sb - m)  # the sink: in the denominator, with no value
        total[total == 0] = 1  # ... and its output stays 0
        o = s @ v[..., cols[0] : cols[1], :]  # (..., bq, dv)
        o /= total
        out[..., rows[0] : rows[1], :] = o

    _each_block(one_block, _spec.block_slices(plan.lq, bq), batch * plan.lq * plan.lk)
    return out.astype(query.dtype, copy=False)


# Threads for the query blocks. NumPy's element-wise passes (max, subtract, exp, sum)
# run on one core while BLAS uses all of them, so at d = 64, where those passes cost as
# much as the two matrix products, a serial loop over blocks leaves cores idle most of
# the time. Blocks on one thread per core, each with single-threaded BLAS, keep every
# core busy with the whole pipeline. BLAS is pinned through threadpoolctl (installed
# with scikit-learn; without it the blocks run one after the other, with multithreaded
# BLAS).
_PARALLEL_MIN = 1 << 22  # scores in a call below which threads cost more than they save
_POOL = None


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _blas_limit():
    """A context pinning BLAS to one thread, or None without threadpoolctl."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _CONTROLLER = False
        else:
            _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas") if _CONTROLLER else None


_CONTROLLER = None


def _each_block(fn, blocks, scores):
    """``fn(rows)`` for every query block ``rows``: on a pool of one thread per core
    when the call is big enough (blocks write disjoint rows of the output, and NumPy
    and BLAS release the GIL), else in a loop."""
    global _POOL
    workers = _cores()
    limit = (
        _blas_limit()
        if workers > 1 and len(blocks) > 1 and scores >= _PARALLEL_MIN
        else None
    )
    if limit is None:
        for rows in blocks:
            fn(rows)
        return
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="attnbook"
        )
    with limit:
        for _ in _POOL.map(fn, blocks):
            pass


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
    _spec.check_additive(query, key, w_query, w_key, v)
    compute = _spec.compute_dtype(query.dtype.name)
    q, k, val, wq, wk, vv = (
        a.astype(compute, copy=False) for a in (query, key, value, w_query, w_key, v)
    )
    # (..., Lq, Lk, h)
    hidden = np.tanh((q @ wq)[..., :, None, :] + (k @ wk)[..., None, :, :])
    scores = hidden @ vv  # (..., Lq, Lk)
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
    _spec.check_bilinear(query, key, w)
    compute = _spec.compute_dtype(query.dtype.name)
    q, k, val, ww = (a.astype(compute, copy=False) for a in (query, key, value, w))
    scores = (q @ ww) @ np.swapaxes(k, -1, -2)  # (..., Lq, Lk)
    return _attend(
        scores, val, _allowed(mask, plan), 0.0, None, query.dtype, return_weights
    )


# Default flash tiles: 512 queries x 4096 keys (8 MiB of float32 scores) over all batch
# and head axes together (fewer query rows, down to 64, when there are many heads).
# Large tiles amortise the Python loop and make each BLAS call big enough to keep every
# core busy; the tile, not the sequence length, sets the memory.
_FLASH_BLOCK_Q, _FLASH_BLOCK_K = 512, 4096


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
    if plan.groups > 1:
        grouped, *arrays = _group(plan, query, key, value, mask, bias, sink)
        out, lse = _flash(*arrays, grouped, block)
        out, lse = _ungroup(out, plan, -3), _ungroup(lse, plan, -2)
    else:
        out, lse = _flash(query, key, value, mask, bias, sink, plan, block)
    return (out, lse) if return_lse else out


def _flash(query, key, value, mask, bias, sink, plan, block):
    """The tiled online softmax; returns the output and the log-sum-exp ``(...,
    Lq)``."""
    block_k = block or _FLASH_BLOCK_K
    block_q = block or _spec.flash_block_q(
        _FLASH_BLOCK_Q * _FLASH_BLOCK_K, plan, block_k, most=_FLASH_BLOCK_Q
    )
    compute = _spec.compute_dtype(query.dtype.name)
    # scale folded into q once
    q = query.astype(compute) * np.asarray(plan.scale, compute)
    # so every tile has the batch axes of m, l and acc
    q = np.broadcast_to(q, plan.batch + q.shape[-2:])
    k, v = (a.astype(compute, copy=False) for a in (key, value))
    out = np.zeros(plan.batch + (plan.lq, plan.dv), compute)
    lse = np.full(plan.batch + (plan.lq,), -np.inf, compute)

    def one_block(rows):
        qb = q[..., rows[0] : rows[1], :]  # (..., bq, d)
        # running max
        m = np.full(plan.batch + (rows[1] - rows[0], 1), -np.inf, compute)
        l = np.zeros_like(m)  # running sum of exp(s - m)
        # running sum of exp(s - m) v
        acc = np.zeros(plan.batch + (rows[1] - rows[0], plan.dv), compute)
        # only the keys causal/window let a row see
        for cols in _spec.key_tiles(plan, rows, block_k):
            # (..., bq, bk)
            s = _scores(qb, k[..., cols[0] : cols[1], :], plan, bias, rows, cols)
            allowed = _allowed(mask, plan, rows, cols)
            if allowed is not None:
                s = np.where(allowed, s, -np.inf)
            m_new = np.maximum(m, s.max(axis=-1, keepdims=True))
            # rows with no key yet stay at 0
            m_safe = np.where(np.isneginf(m_new), 0, m_new)
            s -= m_safe  # in place: s is this tile's own array
            p = np.exp(s, out=s)
            # rescales what was accumulated under the old maximum
            alpha = np.exp(m - m_safe)
            l = alpha * l + p.sum(axis=-1, keepdims=True)
            acc *= alpha
            acc += p @ v[..., cols[0] : cols[1], :]
            m = m_new
        if sink is not None:  # the sink joins the denominator, with no value
            sb = np.broadcast_to(sink, plan.batch + (plan.lq,))[
                ..., rows[0] : rows[1], None
            ].astype(compute)
            m_new = np.maximum(m, sb)
            m_safe = np.where(np.isneginf(m_new), 0, m_new)
            alpha = np.exp(m - m_safe)
            l, acc, m = alpha * l + np.exp(sb - m_safe), acc * alpha, m_new
        out[..., rows[0] : rows[1], :] = acc / np.where(l == 0, 1, l)
        lse[..., rows[0] : rows[1]] = np.where(
            l > 0, m + np.log(np.where(l > 0, l, 1)), -np.inf
        )[..., 0]

    _each_block(
        one_block,
        _spec.block_slices(plan.lq, block_q),
        int(np.prod(plan.batch)) * plan.lq * plan.lk,
    )
    return out.astype(query.dtype), lse


def _split_heads(x, num_heads):
    b, length, width = x.shape
    # (B, H, L, D/H)
    return x.reshape(b, length, num_heads, width // num_heads).transpose(0, 2, 1, 3)


def _linear(x, w, b):
    """``x @ w + b`` for ``x (B, L, in)`` as one 2-D matrix product: NumPy runs a 3-D
    @ 2-D product as B small BLAS calls, many times slower than one large one."""
    y = (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])
    return y if b is None else y + b


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
        offset = 0 if align != "bottom_right" else k.shape[-2] - q.shape[-2]
        q = rotary_embedding(q, np.arange(q.shape[-2]) + offset, base=heads.rope)
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
    b, h, lq, dh = out.shape
    # (B, Lq, Do)
    out = _linear(
        out.transpose(0, 2, 1, 3).reshape(b, lq, h * dh), p["w_o"], p.get("b_o")
    )
    out = out.astype(query.dtype, copy=False)
    return (out, weights) if return_weights else out


def _mask_of(plan):
    """The ``(Lq, Lk)`` boolean array of a structure-only plan (see
    ``_spec.structure``)."""
    tri = _structure(plan, (0, plan.lq), (0, plan.lk))
    return np.ones((plan.lq, plan.lk), bool) if tri is None else tri


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
    return segments_q[..., :, None] == segments_k[..., None, :]  # (..., Lq, Lk)


@implements
def rotary_embedding(x, positions=None, *, base=10000.0, interleaved=False):
    base, interleaved = _spec.check_rotary(
        _info("x", x), _info("positions", positions, optional=True), base, interleaved
    )
    compute = _spec.compute_dtype(x.dtype.name)
    length, d = x.shape[-2:]
    pos = (
        np.arange(length, dtype=np.float64)
        if positions is None
        else positions.astype(np.float64)
    )
    inv_freq = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)  # (d/2,)
    angles = pos[..., None] * inv_freq  # (..., L, d/2), in float64
    cos, sin = np.cos(angles).astype(compute), np.sin(angles).astype(compute)
    xc = x.astype(compute, copy=False)
    if interleaved:
        a, b = xc[..., 0::2], xc[..., 1::2]  # pairs (2k, 2k+1)
        out = np.stack([a * cos - b * sin, b * cos + a * sin], axis=-1).reshape(
            np.broadcast_shapes(x.shape, cos.shape[:-1] + (d,))
        )
    else:
        a, b = xc[..., : d // 2], xc[..., d // 2 :]  # pairs (k, k + d/2)
        out = np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
    return out.astype(x.dtype, copy=False)


@implements
def alibi_slopes(num_heads, dtype="float32"):
    num_heads, _, dtype = _spec.check_alibi(num_heads, dtype=dtype)
    return np.array(_spec.alibi_slopes(num_heads), dtype=np.float64).astype(
        _dtype(dtype)
    )


@implements
def alibi_bias(num_heads, lq, lk, *, align="top_left", dtype="float32"):
    num_heads, plan, dtype = _spec.check_alibi(num_heads, lq, lk, align, dtype)
    slopes = np.array(_spec.alibi_slopes(num_heads), dtype=np.float64)
    # |p_i - j|
    distance = np.abs(
        np.arange(plan.lq)[:, None] + plan.offset - np.arange(plan.lk)[None, :]
    )
    return (-slopes[:, None, None] * distance).astype(_dtype(dtype))


@implements
def padding_mask(lengths, max_len=None):
    _spec.check_lengths(_info("lengths", lengths))
    max_len = (
        int(lengths.max(initial=0))
        if max_len is None
        else _spec.check_length("max_len", max_len)
    )
    return np.arange(max_len)[None, :] < lengths[:, None]


@implements
def mask_from_keep(keep):
    _spec.check_keep(_info("keep", keep))
    if keep.dtype != bool and not np.isin(keep, (0, 1)).all():
        raise ValueError("keep must contain only 0 and 1")
    return keep != 0


@implements
def mask_from_ignore(ignore):
    _spec.check_bool("ignore", _info("ignore", ignore))
    return ~ignore


@implements
def mask_from_additive(additive, threshold=-1e4):
    _spec.check_float("additive", _info("additive", additive))
    # float64: exact for every dtype
    return additive.astype(np.float64) > _spec.check_threshold(threshold)


@implements
def mask_to_additive(mask, dtype="float32"):
    _spec.check_bool("mask", _info("mask", mask))
    dtype = _dtype(dtype)
    return np.where(mask, 0.0, -np.inf).astype(dtype)


@implements
def sinusoidal_positional_encoding(length, d_model, base=10000.0, dtype="float32"):
    length, d_model, base = _spec.check_positional(length, d_model, base)
    dtype = _dtype(dtype)
    position = np.arange(length, dtype=np.float64)[:, None]  # (L, 1)
    # (ceil(d/2),)
    freq = base ** (-np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    pe = np.zeros((length, d_model))
    pe[:, 0::2] = np.sin(position * freq)
    pe[:, 1::2] = np.cos(position * freq[: d_model // 2])
    return pe.astype(dtype)


class MultiHeadAttention:
    """Multi-head attention layer holding its parameters as NumPy arrays (inference
    and teaching).

    Same constructor arguments as ``attnbook.torch.MultiHeadAttention`` and
    ``attnbook.tensorflow.MultiHeadAttention``; with the same ``seed`` all three
    start from identical parameters.
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
    ):
        self.shapes = _params.multi_head_shapes(
            d_model,
            num_heads,
            query_dim,
            key_dim,
            value_dim,
            output_dim,
            use_bias,
            num_kv_heads,
        )
        seed, dtype, self.dropout = _params.check_layer(seed, _dtype(dtype), dropout)
        self.num_heads = int(num_heads)
        self.options = _params.attention_options(
            d_model, num_heads, num_kv_heads, window, align, softcap, rope, dtype
        )
        self.params = _params.init(self.shapes, seed, dtype)

    def __call__(
        self,
        query,
        key=None,
        value=None,
        mask=None,
        bias=None,
        causal=False,
        return_weights=False,
        training=None,
    ):
        """``training=None`` (or False) is inference; True applies the layer's
        dropout."""
        key = query if key is None else key
        value = key if value is None else value
        training = False if training is None else _spec.check_flag("training", training)
        return multi_head_attention(
            query,
            key,
            value,
            self.params,
            self.num_heads,
            mask,
            bias,
            causal=causal,
            dropout=self.dropout if training else 0.0,
            return_weights=return_weights,
            **self.options,
        )

    def get_params(self):
        return {k: v.copy() for k, v in self.params.items()}

    def set_params(self, params):
        new = _params.check_set(self.shapes, params)
        self.params = {k: v.astype(self.params[k].dtype) for k, v in new.items()}


class AdditiveAttention:
    """Additive (Bahdanau) attention layer with parameters ``w_query (dq, h)``,
    ``w_key (dk, h)``, ``v (h,)``."""

    def __init__(self, query_dim, key_dim, hidden_dim, *, seed=0, dtype="float32"):
        self.shapes = _params.additive_shapes(query_dim, key_dim, hidden_dim)
        seed, dtype, _ = _params.check_layer(seed, _dtype(dtype))
        self.params = _params.init(self.shapes, seed, dtype)

    def __call__(
        self, query, key, value, mask=None, causal=False, return_weights=False
    ):
        p = self.params
        return additive_attention(
            query,
            key,
            value,
            p["w_query"],
            p["w_key"],
            p["v"],
            mask,
            causal=causal,
            return_weights=return_weights,
        )

    def get_params(self):
        return {k: v.copy() for k, v in self.params.items()}

    def set_params(self, params):
        new = _params.check_set(self.shapes, params)
        self.params = {k: v.astype(self.params[k].dtype) for k, v in new.items()}
