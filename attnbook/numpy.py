"""Attention in NumPy: the reference twin, written to be read next to the book.

Every public function has the signature and docstring of its spec in :mod:`attnbook._api`; argument checks live in
:mod:`attnbook._spec`, so this file holds only the algorithms. Shapes use the letters of ``_api``.
"""

from __future__ import annotations

import numpy as np

from . import _params, _spec
from ._api import implements

__all__ = [
    "softmax", "scaled_dot_product_attention", "additive_attention", "bilinear_attention",
    "multi_head_attention", "flash_attention", "causal_mask", "padding_mask", "mask_from_keep", "mask_from_ignore",
    "mask_from_additive", "mask_to_additive", "sinusoidal_positional_encoding",
    "MultiHeadAttention", "AdditiveAttention",
]


def _dtype(name):
    """A float dtype by name; NumPy has no bfloat16, so that one is refused rather than silently changed."""
    if _spec.check_dtype_name(name) == "bfloat16":
        raise ValueError("dtype bfloat16 is not available in NumPy; use float32 here, or the torch/tensorflow twin")
    return name


def _info(name, x, optional=False):
    """Describe an array argument for the shared checks; ``None`` stays ``None`` for the optional ones."""
    if x is None and optional:
        return None
    if not isinstance(x, np.ndarray):
        raise _spec.type_error(name, "numpy.ndarray", x)
    return _spec.Info(x.shape, x.dtype.name)


def _masked_softmax(x, allowed, axis=-1):
    """Softmax over ``axis`` of ``x`` where ``allowed`` (bool or None) is True; empty or all-masked slices -> 0."""
    if allowed is not None:
        x = np.where(allowed, x, -np.inf)
    if x.shape[axis] == 0:
        return np.zeros(x.shape, x.dtype)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isneginf(m), 0, m)          # a slice with nothing to attend to: exp(-inf - 0) = 0
    e = np.exp(x - m)
    total = np.sum(e, axis=axis, keepdims=True)
    return e / np.where(total == 0, 1, total)


def _allowed(mask, causal, lq, lk):
    """The boolean "may attend" array: mask AND the top-left causal triangle, or None when nothing is masked."""
    if causal:
        tri = np.arange(lq)[:, None] >= np.arange(lk)[None, :]          # (Lq, Lk)
        return tri if mask is None else mask & tri
    return mask


def _attend(scores, value, allowed, dropout, seed, dtype, return_weights):
    """Normalise ``scores (..., Lq, Lk)`` into weights and take the weighted sum of ``value (..., Lk, dv)``."""
    weights = _masked_softmax(scores, allowed)
    shape = np.broadcast_shapes(weights.shape[:-2], value.shape[:-2]) + weights.shape[-2:]
    if shape != weights.shape:                  # batch axes that only `value` has: weights cover them too
        weights = np.broadcast_to(weights, shape).copy()
    if dropout > 0:
        keep = np.random.default_rng(seed).random(weights.shape) >= dropout
        weights = np.where(keep, weights / (1.0 - dropout), 0).astype(weights.dtype)
    out = (weights @ value).astype(dtype)                               # (..., Lq, dv)
    return (out, weights.astype(dtype)) if return_weights else out


@implements
def softmax(x, axis=-1, mask=None):
    axis = _spec.check_softmax(_info("x", x), axis, _info("mask", mask, optional=True))
    compute = _spec.compute_dtype(x.dtype.name)
    return _masked_softmax(x.astype(compute), mask, axis).astype(x.dtype)


@implements
def scaled_dot_product_attention(query, key, value, mask=None, bias=None, *, causal=False, scale=None,
                                 dropout=0.0, seed=None, return_weights=False):
    plan = _spec.check_attention(_info("query", query), _info("key", key), _info("value", value),
                                 _info("mask", mask, optional=True), _info("bias", bias, optional=True), causal=causal,
                                 return_weights=return_weights, scale=scale, dropout=dropout, seed=seed)
    compute = _spec.compute_dtype(query.dtype.name)
    if not return_weights and plan.dropout == 0 and plan.lk > 0:
        return _sdpa_blocked(query, key, value, mask, bias, plan, compute)    # same result, faster
    q, k, v = (a.astype(compute, copy=False) for a in (query, key, value))
    scores = (q @ np.swapaxes(k, -1, -2)) * np.asarray(plan.scale, compute)   # (..., Lq, Lk)
    if bias is not None:
        scores = scores + bias.astype(compute, copy=False)
    allowed = _allowed(mask, plan.causal, plan.lq, plan.lk)
    return _attend(scores, v, allowed, plan.dropout, plan.seed, query.dtype, return_weights)


# Score entries per query block of the fast path (8 MiB of float32): the block's scores stay in the CPU's last-level
# cache between the passes (max, exp, sum, matmul) that read them, memory no longer grows as Lq * Lk, and the blocks
# are few enough (8 at N = 4096) that each BLAS call is big enough to keep every core busy.
_SCORE_BLOCK = 1 << 21


def _sdpa_blocked(query, key, value, mask, bias, plan, compute):
    """``softmax(q k^T * scale + bias) v`` when no weights are asked for: the fast path of the NumPy twin.

    The same arithmetic as the explicit path, arranged for speed: the scale is folded into ``q`` (``Lq * d``
    multiplications instead of ``Lq * Lk``); queries go in blocks whose ``(..., bq, Lk)`` scores fit in cache; the
    max is subtracted and ``exp`` taken in place; and the normalisation divides the ``(bq, dv)`` output of the
    second matmul instead of the ``(bq, Lk)`` weights. With ``causal=True`` a block never computes the keys after
    its last query, which no row of the block may see (about half the work when ``Lq == Lk``).
    """
    q = query.astype(compute) * np.asarray(plan.scale, compute)           # (..., Lq, d), a fresh copy
    kt = np.swapaxes(key.astype(compute, copy=False), -1, -2)              # (..., d, Lk)
    v = value.astype(compute, copy=False)                                  # (..., Lk, dv)
    out = np.empty(plan.batch + (plan.lq, plan.dv), compute)
    causal = plan.causal
    batch = int(np.prod(plan.batch, dtype=np.int64))
    bq = max(1, _SCORE_BLOCK // max(1, batch * plan.lk))
    for start in range(0, plan.lq, bq):
        rows = (start, min(start + bq, plan.lq))
        lk = min(plan.lk, rows[1]) if causal else plan.lk                  # keys any row of this block may see
        s = q[..., rows[0]:rows[1], :] @ kt[..., :lk]                      # (..., bq, lk)
        if bias is not None:
            s = s + _spec.tile(bias, rows, (0, lk)).astype(compute, copy=False)
        allowed = _spec.tile(mask, rows, (0, lk))
        if causal:
            tri = np.arange(*rows)[:, None] >= np.arange(lk)[None, :]
            allowed = tri if allowed is None else allowed & tri
        if allowed is not None:
            s = np.where(allowed, s, -np.inf)
        m = s.max(axis=-1, keepdims=True)
        if allowed is not None or bias is not None:
            m[np.isneginf(m)] = 0                       # a row with nothing to attend to: exp(-inf - 0) = 0
        s -= m
        np.exp(s, out=s)
        total = s.sum(axis=-1, keepdims=True)
        total[total == 0] = 1                           # ... and its output stays 0
        o = s @ v[..., :lk, :]                                             # (..., bq, dv)
        o /= total
        out[..., rows[0]:rows[1], :] = o
    return out.astype(query.dtype, copy=False)


@implements
def additive_attention(query, key, value, w_query, w_key, v, mask=None, *, causal=False,
                       return_weights=False):
    infos = {"w_query": _info("w_query", w_query), "w_key": _info("w_key", w_key), "v": _info("v", v)}
    plan = _spec.check_attention(_info("query", query), _info("key", key), _info("value", value),
                                 _info("mask", mask, optional=True), causal=causal, return_weights=return_weights,
                                 same_d=False, extra=infos)
    _spec.check_additive(query, key, w_query, w_key, v)
    compute = _spec.compute_dtype(query.dtype.name)
    q, k, val, wq, wk, vv = (a.astype(compute, copy=False) for a in (query, key, value, w_query, w_key, v))
    hidden = np.tanh((q @ wq)[..., :, None, :] + (k @ wk)[..., None, :, :])  # (..., Lq, Lk, h)
    scores = hidden @ vv                                                   # (..., Lq, Lk)
    return _attend(scores, val, _allowed(mask, plan.causal, plan.lq, plan.lk), 0.0, None, query.dtype,
                   return_weights)


@implements
def bilinear_attention(query, key, value, w, mask=None, *, causal=False, return_weights=False):
    plan = _spec.check_attention(_info("query", query), _info("key", key), _info("value", value),
                                 _info("mask", mask, optional=True), causal=causal, return_weights=return_weights,
                                 same_d=False, extra={"w": _info("w", w)})
    _spec.check_bilinear(query, key, w)
    compute = _spec.compute_dtype(query.dtype.name)
    q, k, val, ww = (a.astype(compute, copy=False) for a in (query, key, value, w))
    scores = (q @ ww) @ np.swapaxes(k, -1, -2)                             # (..., Lq, Lk)
    return _attend(scores, val, _allowed(mask, plan.causal, plan.lq, plan.lk), 0.0, None, query.dtype,
                   return_weights)


# Default flash tiles: 512 queries x 4096 keys (8 MiB of float32 scores) over all batch and head axes together
# (fewer query rows, down to 64, when there are many heads). Large tiles amortise the Python loop and make each
# BLAS call big enough to keep every core busy; the tile, not the sequence length, sets the memory.
_FLASH_BLOCK_Q, _FLASH_BLOCK_K = 512, 4096


@implements
def flash_attention(query, key, value, mask=None, bias=None, *, causal=False, scale=None, block_size=None,
                    return_lse=False):
    plan = _spec.check_attention(_info("query", query), _info("key", key), _info("value", value),
                                 _info("mask", mask, optional=True), _info("bias", bias, optional=True), causal=causal, scale=scale)
    return_lse, causal = _spec.check_flag("return_lse", return_lse), plan.causal
    block = _spec.check_block_size(block_size, None)
    block_k = block or _FLASH_BLOCK_K
    block_q = block or _spec.flash_block_q(_FLASH_BLOCK_Q * _FLASH_BLOCK_K, plan, block_k, most=_FLASH_BLOCK_Q)
    compute = _spec.compute_dtype(query.dtype.name)
    q = query.astype(compute) * np.asarray(plan.scale, compute)            # scale folded into q once
    q = np.broadcast_to(q, plan.batch + q.shape[-2:])   # so every tile has the batch axes of m, l and acc
    k, v = (a.astype(compute, copy=False) for a in (key, value))
    out = np.zeros(plan.batch + (plan.lq, plan.dv), compute)
    lse = np.full(plan.batch + (plan.lq,), -np.inf, compute)
    for rows in _spec.block_slices(plan.lq, block_q):
        qb = q[..., rows[0]:rows[1], :]                                     # (..., bq, d)
        m = np.full(plan.batch + (rows[1] - rows[0], 1), -np.inf, compute)  # running max
        l = np.zeros_like(m)                                                # running sum of exp(s - m)
        acc = np.zeros(plan.batch + (rows[1] - rows[0], plan.dv), compute)   # running sum of exp(s - m) v
        for cols in _spec.block_slices(plan.lk, block_k):
            if causal and cols[0] > rows[1] - 1:
                break                                   # this and every later key block lies above the diagonal
            s = qb @ np.swapaxes(k[..., cols[0]:cols[1], :], -1, -2)        # (..., bq, bk)
            if bias is not None:
                s = s + _spec.tile(bias, rows, cols).astype(compute, copy=False)
            allowed = _spec.tile(mask, rows, cols)
            if causal and cols[1] - 1 > rows[0]:        # the tile straddles the diagonal
                tri = np.arange(*rows)[:, None] >= np.arange(*cols)[None, :]
                allowed = tri if allowed is None else allowed & tri
            if allowed is not None:
                s = np.where(allowed, s, -np.inf)
            m_new = np.maximum(m, s.max(axis=-1, keepdims=True))
            m_safe = np.where(np.isneginf(m_new), 0, m_new)                # rows with no key yet stay at 0
            s -= m_safe                                 # in place: s is this tile's own array
            p = np.exp(s)
            alpha = np.exp(m - m_safe)                  # rescales what was accumulated under the old maximum
            l = alpha * l + p.sum(axis=-1, keepdims=True)
            acc *= alpha
            acc += p @ v[..., cols[0]:cols[1], :]
            m = m_new
        out[..., rows[0]:rows[1], :] = acc / np.where(l == 0, 1, l)
        lse[..., rows[0]:rows[1]] = np.where(l > 0, m + np.log(np.where(l > 0, l, 1)), -np.inf)[..., 0]
    out = out.astype(query.dtype)
    return (out, lse) if return_lse else out


def _split_heads(x, num_heads):
    b, length, width = x.shape
    return x.reshape(b, length, num_heads, width // num_heads).transpose(0, 2, 1, 3)   # (B, H, L, D/H)


def _linear(x, w, b):
    """``x @ w + b`` for ``x (B, L, in)`` as one 2-D matrix product: NumPy runs a 3-D @ 2-D product as B small
    BLAS calls, many times slower than one large one."""
    y = (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])
    return y if b is None else y + b


@implements
def multi_head_attention(query, key, value, params, num_heads, mask=None, bias=None, *, causal=False,
                         dropout=0.0, seed=None, return_weights=False):
    names = _spec.check_params_mapping(params)
    infos = {"query": _info("query", query), "key": _info("key", key), "value": _info("value", value)}
    p_infos = {n: _info(f"params['{n}']", params[n]) for n in names}
    *_, num_heads = _spec.check_multi_head(*infos.values(), p_infos, num_heads, _info("mask", mask, optional=True),
                                           _info("bias", bias, optional=True), causal=causal, return_weights=return_weights,
                                           dropout=dropout, seed=seed)
    p = params
    q = _linear(query, p["w_q"], p.get("b_q"))                              # (B, Lq, D)
    k = _linear(key, p["w_k"], p.get("b_k"))                                # (B, Lk, D)
    v = _linear(value, p["w_v"], p.get("b_v"))                              # (B, Lk, D)
    q, k, v = (_split_heads(a, num_heads) for a in (q, k, v))              # (B, H, L, D/H)
    out, weights = scaled_dot_product_attention(q, k, v, mask, bias, causal=causal, dropout=dropout,
                                                seed=seed, return_weights=True)
    b, h, lq, dh = out.shape
    out = _linear(out.transpose(0, 2, 1, 3).reshape(b, lq, h * dh), p["w_o"], p.get("b_o"))   # (B, Lq, Do)
    out = out.astype(query.dtype, copy=False)
    return (out, weights) if return_weights else out


@implements
def causal_mask(lq, lk=None):
    lq = _spec.check_length("lq", lq)
    lk = lq if lk is None else _spec.check_length("lk", lk)
    return np.arange(lq)[:, None] >= np.arange(lk)[None, :]


@implements
def padding_mask(lengths, max_len=None):
    _spec.check_lengths(_info("lengths", lengths))
    max_len = int(lengths.max(initial=0)) if max_len is None else _spec.check_length("max_len", max_len)
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
    return additive.astype(np.float64) > _spec.check_threshold(threshold)     # float64: exact for every dtype


@implements
def mask_to_additive(mask, dtype="float32"):
    _spec.check_bool("mask", _info("mask", mask))
    dtype = _dtype(dtype)
    return np.where(mask, 0.0, -np.inf).astype(dtype)


@implements
def sinusoidal_positional_encoding(length, d_model, base=10000.0, dtype="float32"):
    length, d_model, base = _spec.check_positional(length, d_model, base)
    dtype = _dtype(dtype)
    position = np.arange(length, dtype=np.float64)[:, None]                # (L, 1)
    freq = base ** (-np.arange(0, d_model, 2, dtype=np.float64) / d_model)  # (ceil(d/2),)
    pe = np.zeros((length, d_model))
    pe[:, 0::2] = np.sin(position * freq)
    pe[:, 1::2] = np.cos(position * freq[: d_model // 2])
    return pe.astype(dtype)


class MultiHeadAttention:
    """Multi-head attention layer holding its parameters as NumPy arrays (inference and teaching).

    Same constructor arguments as ``attnbook.torch.MultiHeadAttention`` and ``attnbook.tensorflow.MultiHeadAttention``;
    with the same ``seed`` all three start from identical parameters.
    """

    def __init__(self, d_model, num_heads, *, query_dim=None, key_dim=None, value_dim=None, output_dim=None,
                 use_bias=True, dropout=0.0, seed=0, dtype="float32"):
        self.shapes = _params.multi_head_shapes(d_model, num_heads, query_dim, key_dim, value_dim, output_dim,
                                                use_bias)
        seed, dtype, self.dropout = _params.check_layer(seed, _dtype(dtype), dropout)
        self.num_heads = int(num_heads)
        self.params = _params.init(self.shapes, seed, dtype)

    def __call__(self, query, key=None, value=None, mask=None, bias=None, causal=False, return_weights=False,
                 training=None):
        """``training=None`` (or False) is inference; True applies the layer's dropout."""
        key = query if key is None else key
        value = key if value is None else value
        training = False if training is None else _spec.check_flag("training", training)
        return multi_head_attention(query, key, value, self.params, self.num_heads, mask, bias, causal=causal,
                                    dropout=self.dropout if training else 0.0, return_weights=return_weights)

    def get_params(self):
        return {k: v.copy() for k, v in self.params.items()}

    def set_params(self, params):
        new = _params.check_set(self.shapes, params)
        self.params = {k: v.astype(self.params[k].dtype) for k, v in new.items()}


class AdditiveAttention:
    """Additive (Bahdanau) attention layer with parameters ``w_query (dq, h)``, ``w_key (dk, h)``, ``v (h,)``."""

    def __init__(self, query_dim, key_dim, hidden_dim, *, seed=0, dtype="float32"):
        self.shapes = _params.additive_shapes(query_dim, key_dim, hidden_dim)
        seed, dtype, _ = _params.check_layer(seed, _dtype(dtype))
        self.params = _params.init(self.shapes, seed, dtype)

    def __call__(self, query, key, value, mask=None, causal=False, return_weights=False):
        p = self.params
        return additive_attention(query, key, value, p["w_query"], p["w_key"], p["v"], mask, causal=causal,
                                  return_weights=return_weights)

    def get_params(self):
        return {k: v.copy() for k, v in self.params.items()}

    def set_params(self, params):
        new = _params.check_set(self.shapes, params)
        self.params = {k: v.astype(self.params[k].dtype) for k, v in new.items()}
