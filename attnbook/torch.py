"""Attention in PyTorch: the twin of :mod:`attnbook.numpy`, running on the device of
its inputs.

``scaled_dot_product_attention`` uses PyTorch's fused kernel
(:func:`torch.nn.functional.scaled_dot_product_attention`) whenever the call allows
it (no weights requested, no dropout) and otherwise the explicit math below, which is
what the book explains. Signatures, docstrings and argument checks are shared with
the other twins through :mod:`attnbook._api` and :mod:`attnbook._spec`.
"""

from __future__ import annotations

import math

try:
    import torch
    import torch.nn.functional as F
# name the extra to install, not just the missing module
except ModuleNotFoundError as err:
    if err.name != "torch":
        raise
    raise ModuleNotFoundError(
        'attnbook.torch needs PyTorch: pip install "attnbook[torch]"', name="torch"
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


def _info(name, x, optional=False):
    if x is None and optional:
        return None
    if not isinstance(x, torch.Tensor):
        raise _spec.type_error(name, "torch.Tensor", x)
    return _spec.Info(
        tuple(x.shape), str(x.dtype).removeprefix("torch."), str(x.device)
    )


def _compute(dtype):
    """float32 for float16/bfloat16 inputs, so softmax never runs in reduced
    precision."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _masked_softmax(x, allowed, dim=-1, sink=None):
    """Softmax over ``dim`` where ``allowed`` is True (all-masked slices -> 0);
    ``sink`` (size 1 along ``dim``) is one more logit that joins the denominator with
    no weight of its own."""
    if allowed is not None:
        x = x.masked_fill(~allowed, float("-inf"))
    if x.shape[dim] == 0 and sink is None:
        return torch.zeros_like(x)
    m = (
        x.amax(dim=dim, keepdim=True)
        if x.shape[dim]
        else torch.full_like(x.sum(dim, keepdim=True), -torch.inf)
    )
    if sink is not None:
        m = torch.maximum(m, sink)
    m = m.detach()  # the shift changes nothing mathematically: no gradient
    m = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    e = torch.exp(x - m)
    total = e.sum(dim=dim, keepdim=True)
    if sink is not None:
        total = total + torch.exp(sink - m)
    return e / torch.where(total == 0, torch.ones_like(total), total)


def _structure(plan, rows, cols, device):
    """The ``(rows, cols)`` tile of the causal/window structure as a bool tensor, or
    None where it masks nothing."""
    if not plan.structured or _spec.all_visible(plan, rows, cols):
        return None
    # query positions p_i, (bq, 1)
    i = torch.arange(*rows, device=device)[:, None] + plan.offset
    j = torch.arange(*cols, device=device)[None, :]  # key positions, (1, bk)
    ok = torch.ones(
        rows[1] - rows[0], cols[1] - cols[0], dtype=torch.bool, device=device
    )
    if plan.right is not None:
        ok &= j <= i + plan.right
    if plan.left is not None:
        ok &= j >= i - plan.left
    return ok


def _allowed(mask, plan, device, rows=None, cols=None):
    """The boolean "may attend" tile: ``mask`` AND the causal/window structure, or
    None when nothing is masked."""
    rows, cols = rows or (0, plan.lq), cols or (0, plan.lk)
    tile = _spec.tile(mask, rows, cols)
    tri = _structure(plan, rows, cols, device)
    if tri is None:
        return tile
    return tri if tile is None else tile & tri


def _scores(q, k, plan, bias, rows=None, cols=None):
    """Scaled, soft-capped and biased scores ``(..., bq, bk)`` of ``q`` (already
    scaled) against ``k``."""
    s = q @ k.transpose(-2, -1)
    if plan.softcap is not None:
        s = plan.softcap * torch.tanh(s / plan.softcap)
    if bias is not None:
        s = s + _spec.tile(bias, rows or (0, plan.lq), cols or (0, plan.lk)).to(s.dtype)
    return s


def _attend(scores, value, allowed, dropout, seed, dtype, return_weights, sink=None):
    weights = _masked_softmax(
        scores, allowed, sink=None if sink is None else sink[..., None]
    )
    shape = (
        torch.broadcast_shapes(weights.shape[:-2], value.shape[:-2])
        + weights.shape[-2:]
    )
    # batch axes that only `value` has: weights cover them too
    if shape != weights.shape:
        weights = weights.expand(shape)
    if dropout > 0:
        gen = None
        if seed is not None:
            gen = torch.Generator(device=weights.device).manual_seed(seed)
        keep = (
            torch.rand(weights.shape, generator=gen, device=weights.device) >= dropout
        )
        weights = torch.where(
            keep, weights / (1.0 - dropout), torch.zeros_like(weights)
        )
    out = (weights @ value).to(dtype)  # (..., Lq, dv)
    return (out, weights.to(dtype)) if return_weights else out


@implements
def softmax(x, axis=-1, mask=None):
    axis = _spec.check_softmax(_info("x", x), axis, _info("mask", mask, optional=True))
    return _masked_softmax(x.to(_compute(x.dtype)), mask, axis).to(x.dtype)


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
    becomes ``(..., Hkv, H/Hkv, Lq, d)``, key and value ``(..., Hkv, 1, Lk, d)``
    (views), and mask/bias/sink follow."""
    g = plan.groups

    def split(x, axis):
        return None if x is None else x.reshape(_spec.grouped_shape(x.shape, axis, g))

    grouped = plan._replace(batch=plan.batch[:-1] + (plan.batch[-1] // g, g), groups=1)
    return (
        grouped,
        split(query, -3),
        key.unsqueeze(-3),
        value.unsqueeze(-3),
        split(mask, -3),
        split(bias, -3),
        split(sink, -2),
    )


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
    if not return_weights and plan.dropout == 0 and plan.lk > 0:
        if _fusable(plan, sink):
            return _fused(query, key, value, mask, bias, plan)
        # softcap, sinks and large windows: the tiled path computes them in O(Lq)
        # memory (and a window in O(Lq * w) time).
        return _flash_grouped(query, key, value, mask, bias, sink, plan, None)[0]
    if plan.groups > 1:
        grouped, *arrays = _group(plan, query, key, value, mask, bias, sink)
        res = _explicit(*arrays, grouped, return_weights)
        return (
            tuple(_ungroup(r, plan, -3) for r in res)
            if return_weights
            else _ungroup(res, plan, -3)
        )
    return _explicit(query, key, value, mask, bias, sink, plan, return_weights)


def _explicit(query, key, value, mask, bias, sink, plan, return_weights):
    """The math the book explains: every score, the masked softmax, dropout, the
    weighted sum."""
    compute = _compute(query.dtype)
    q, k, v = (a.to(compute) for a in (query, key, value))
    scores = _scores(q * plan.scale, k, plan, bias)  # (..., Lq, Lk)
    allowed = _allowed(mask, plan, query.device)
    sink = None if sink is None else sink.to(compute)
    return _attend(
        scores, v, allowed, plan.dropout, plan.seed, query.dtype, return_weights, sink
    )


# The kernel takes a window only as a full Lq x Lk mask and computes every score; the
# tiled path computes only the band, but pays a fixed cost per tile. Up to this many
# scores in the call (all batch and head axes) the mask is cheaper: 1.6 against 7.3 ms
# for one head at N = 1024 and a window of 256 on two CPU cores, 43 against 18 ms at
# N = 4096 (the benchmark's window256 scenario measures both).
_FUSED_WINDOW_SCORES = 2**22


def _fusable(plan, sink):
    """Whether PyTorch's fused kernel computes this call: it has no softcap and no
    sink; a causal structure, bottom-right or with a look-ahead, becomes the kernel's
    mask, and so does a window with a left edge when the call has at most
    ``_FUSED_WINDOW_SCORES`` scores (above, the tiled path computes the band only, in
    O(Lq * w))."""
    if plan.softcap is not None or sink is not None:
        return False
    scores = math.prod(plan.batch) * plan.lq * plan.lk
    return plan.left is None or scores <= _FUSED_WINDOW_SCORES


def _as_4d(x, lead, tail=2):
    """``x`` (batch axes broadcastable to ``lead + (h,)``, then ``tail`` axes) as
    ``(prod(lead), h, ...)``: the 4-D layout PyTorch's fused CPU kernel needs (3-D
    and 5-D inputs fall back to its math path). A view when ``x`` already has the
    leading axes, a copy only when they must be broadcast first."""
    if x.dim() < tail + 1:
        x = x.reshape((1,) * (tail + 1 - x.dim()) + tuple(x.shape))
    if not lead:
        return x.unsqueeze(0)
    h = x.shape[-tail - 1]
    full = tuple(lead) + (h,) + tuple(x.shape[-tail:])
    if tuple(x.shape) != full:
        if all(n == 1 for n in x.shape[: -tail - 1]):
            # only size-1 leading axes: they broadcast
            return x.reshape((1, h) + tuple(x.shape[-tail:]))
        x = x.expand(full)
    return x.reshape((math.prod(lead), h) + tuple(x.shape[-tail:]))


def _fused(query, key, value, mask, bias, plan):
    """PyTorch's fused SDPA (flash / memory-efficient / C++ math kernels) with the
    contract's edge cases.

    Leading axes are flattened into the kernel's 4-D ``(B, H, L, d)``; grouped heads go
    to its ``enable_gqa`` (the twin repeats no keys; PyTorch's math fallback does); the
    causal/window structure becomes a boolean mask, except the plain top-left causal
    case, which is the kernel's own ``is_causal``.
    """
    lead = plan.batch[:-1]
    q, k, v = (_as_4d(a, lead) for a in (query, key, value))
    if (
        bias is not None
        and bias.dtype != query.dtype
        and query.dtype != _compute(query.dtype)
    ):
        # The kernel adds attn_mask in the inputs' dtype: a float32 bias would be
        # rounded to float16/bfloat16 (or overflow to inf) first. The contract computes
        # reduced-precision scores in float32, so the kernel does.
        q, k, v = (a.to(_compute(query.dtype)) for a in (q, k, v))
    # The kernel's own causal path is top-left, j <= i: exactly right = 0 with no left
    # bound and no offset.
    is_causal = (
        plan.right == 0
        and plan.left is None
        and plan.offset == 0
        and mask is None
        and bias is None
    )
    allowed = None if is_causal else _allowed(mask, plan, query.device)
    attn_mask = allowed
    if bias is not None:
        attn_mask = bias.to(q.dtype)
        if allowed is not None:
            attn_mask = attn_mask.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        attn_mask = _as_4d(attn_mask, lead)
    out = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=attn_mask,
        is_causal=is_causal,
        scale=plan.scale,
        enable_gqa=plan.groups > 1,
    )
    if attn_mask is not None:
        # Rows with no key left: the contract says 0, and fused kernels are not all
        # documented to guarantee it. Only a mask, a bias (-inf) or a bottom-right
        # structure can empty a row, so only they pay for this check, which reads the
        # mask before it is broadcast to the scores.
        live = (
            ~torch.isneginf(attn_mask) if attn_mask.dtype != torch.bool else attn_mask
        )
        out = out.masked_fill(~live.any(dim=-1, keepdim=True), 0.0)
    return out.reshape(plan.batch + (plan.lq, plan.dv)).to(query.dtype)


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
    compute = _compute(query.dtype)
    q, k, val, wq, wk, vv = (
        a.to(compute) for a in (query, key, value, w_query, w_key, v)
    )
    # (..., Lq, Lk, h)
    hidden = torch.tanh((q @ wq).unsqueeze(-2) + (k @ wk).unsqueeze(-3))
    scores = hidden @ vv  # (..., Lq, Lk)
    return _attend(
        scores,
        val,
        _allowed(mask, plan, query.device),
        0.0,
        None,
        query.dtype,
        return_weights,
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
    compute = _compute(query.dtype)
    q, k, val, ww = (a.to(compute) for a in (query, key, value, w))
    scores = (q @ ww) @ k.transpose(-2, -1)  # (..., Lq, Lk)
    return _attend(
        scores,
        val,
        _allowed(mask, plan, query.device),
        0.0,
        None,
        query.dtype,
        return_weights,
    )


# Default flash tiles: 1024 queries x 2048 keys (8 MiB of float32 scores) over all batch
# and head axes together (fewer query rows, down to 64, when there are many heads).
# Large tiles amortise the Python loop and keep torch's multi-threaded kernels busy; the
# tile, not the sequence length, sets the memory.
_FLASH_BLOCK_Q, _FLASH_BLOCK_K = 1024, 2048


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
    out, lse = _flash_grouped(
        query,
        key,
        value,
        mask,
        bias,
        sink,
        plan,
        _spec.check_block_size(block_size, None),
    )
    return (out, lse) if return_lse else out


def _flash_grouped(query, key, value, mask, bias, sink, plan, block):
    if plan.groups > 1:
        grouped, *arrays = _group(plan, query, key, value, mask, bias, sink)
        out, lse = _flash(*arrays, grouped, block)
        return _ungroup(out, plan, -3), _ungroup(lse, plan, -2)
    return _flash(query, key, value, mask, bias, sink, plan, block)


def _flash(query, key, value, mask, bias, sink, plan, block):
    """The tiled online softmax; returns the output and the log-sum-exp ``(...,
    Lq)``."""
    block_k = block or _FLASH_BLOCK_K
    block_q = block or _spec.flash_block_q(
        _FLASH_BLOCK_Q * _FLASH_BLOCK_K, plan, block_k, most=_FLASH_BLOCK_Q
    )
    compute = _compute(query.dtype)
    q = query.to(compute) * plan.scale  # scale folded into q once
    k, v = (a.to(compute) for a in (key, value))
    if sink is not None:
        sink = sink.to(compute).expand(plan.batch + (plan.lq,))
    dev = query.device
    outs, lses = [], []
    for rows in _spec.block_slices(plan.lq, block_q):
        qb = q[..., rows[0] : rows[1], :]  # (..., bq, d)
        m = torch.full(
            plan.batch + (rows[1] - rows[0], 1),
            float("-inf"),
            dtype=compute,
            device=dev,
        )
        l = torch.zeros_like(m)
        acc = torch.zeros(
            plan.batch + (rows[1] - rows[0], plan.dv), dtype=compute, device=dev
        )
        # only the keys causal/window let a row see
        for cols in _spec.key_tiles(plan, rows, block_k):
            # (..., bq, bk)
            s = _scores(qb, k[..., cols[0] : cols[1], :], plan, bias, rows, cols)
            allowed = _allowed(mask, plan, dev, rows, cols)
            if allowed is not None:
                s = s.masked_fill(~allowed, float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True)).detach()
            m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
            p = torch.exp(s - m_safe)
            # rescales what was accumulated under the old maximum
            alpha = torch.exp(m - m_safe)
            l = alpha * l + p.sum(dim=-1, keepdim=True)
            acc = alpha * acc + p @ v[..., cols[0] : cols[1], :]
            m = m_new
        if sink is not None:  # the sink joins the denominator, with no value
            sb = sink[..., rows[0] : rows[1], None]
            m_new = torch.maximum(m, sb).detach()
            m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
            alpha = torch.exp(m - m_safe)
            l, acc, m = alpha * l + torch.exp(sb - m_safe), alpha * acc, m_new
        outs.append(acc / torch.where(l == 0, torch.ones_like(l), l))
        lses.append(
            torch.where(
                l > 0,
                m + torch.log(torch.where(l > 0, l, torch.ones_like(l))),
                torch.full_like(l, float("-inf")),
            )[..., 0]
        )
    if not outs:
        outs = [torch.zeros(plan.batch + (0, plan.dv), dtype=compute, device=dev)]
        lses = [torch.zeros(plan.batch + (0,), dtype=compute, device=dev)]
    return torch.cat(outs, dim=-2).to(query.dtype), torch.cat(lses, dim=-1)


def _split_heads(x, num_heads):
    b, length, width = x.shape
    # (B, H, L, D/H)
    return x.view(b, length, num_heads, width // num_heads).transpose(1, 2)


def _linear(x, w, b):
    return (
        x @ w
        if b is None
        else torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(
            *x.shape[:-1], w.shape[1]
        )
    )


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
        q = rotary_embedding(
            q, torch.arange(q.shape[-2], device=q.device) + offset, base=heads.rope
        )
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
    out = _linear(out.transpose(1, 2).reshape(b, lq, h * dh), p["w_o"], p.get("b_o"))
    return (out, weights) if return_weights else out


def _mask_of(plan):
    """The ``(Lq, Lk)`` boolean tensor of a structure-only plan (see
    ``_spec.structure``)."""
    tri = _structure(plan, (0, plan.lq), (0, plan.lk), None)
    return torch.ones(plan.lq, plan.lk, dtype=torch.bool) if tri is None else tri


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
    # (..., Lq, Lk)
    return segments_q.long()[..., :, None] == segments_k.long()[..., None, :]


@implements
def rotary_embedding(x, positions=None, *, base=10000.0, interleaved=False):
    base, interleaved = _spec.check_rotary(
        _info("x", x), _info("positions", positions, optional=True), base, interleaved
    )
    compute = _compute(x.dtype)
    length, d = x.shape[-2:]
    if positions is None:
        pos = torch.arange(length, dtype=torch.float64, device=x.device)
    else:
        pos = positions.to(torch.float64)
    # (d/2,)
    inv_freq = base ** (
        -torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d
    )
    angles = pos[..., None] * inv_freq  # (..., L, d/2), in float64
    cos, sin = torch.cos(angles).to(compute), torch.sin(angles).to(compute)
    xc = x.to(compute)
    if interleaved:
        a, b = xc[..., 0::2], xc[..., 1::2]  # pairs (2k, 2k+1)
        out = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)
    else:
        a, b = xc[..., : d // 2], xc[..., d // 2 :]  # pairs (k, k + d/2)
        out = torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
    return out.to(x.dtype)


@implements
def alibi_slopes(num_heads, dtype="float32"):
    num_heads, _, dtype = _spec.check_alibi(num_heads, dtype=dtype)
    return torch.tensor(_spec.alibi_slopes(num_heads), dtype=torch.float64).to(
        getattr(torch, dtype)
    )


@implements
def alibi_bias(num_heads, lq, lk, *, align="top_left", dtype="float32"):
    num_heads, plan, dtype = _spec.check_alibi(num_heads, lq, lk, align, dtype)
    slopes = torch.tensor(_spec.alibi_slopes(num_heads), dtype=torch.float64)
    # |p_i - j|
    distance = (
        torch.arange(plan.lq)[:, None] + plan.offset - torch.arange(plan.lk)[None, :]
    ).abs()
    return (-slopes[:, None, None] * distance).to(getattr(torch, dtype))


@implements
def padding_mask(lengths, max_len=None):
    _spec.check_lengths(_info("lengths", lengths))
    lengths = lengths.long()  # torch has no max or comparison kernels for uint16/32/64
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    max_len = _spec.check_length("max_len", max_len)
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


@implements
def mask_from_keep(keep):
    _spec.check_keep(_info("keep", keep))
    if keep.dtype != torch.bool and not ((keep == 0) | (keep == 1)).all():
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
    return additive.double() > _spec.check_threshold(threshold)


@implements
def mask_to_additive(mask, dtype="float32"):
    _spec.check_bool("mask", _info("mask", mask))
    dtype = getattr(torch, _spec.check_dtype_name(dtype))
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(
        mask, zero, torch.full((), float("-inf"), dtype=dtype, device=mask.device)
    )


@implements
def sinusoidal_positional_encoding(length, d_model, base=10000.0, dtype="float32"):
    length, d_model, base = _spec.check_positional(length, d_model, base)
    dtype = getattr(torch, _spec.check_dtype_name(dtype))
    position = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    # (ceil(d/2),)
    freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq[: d_model // 2])
    return pe.to(dtype)


class _Params(torch.nn.Module):
    """Registers a parameter dict as ``nn.Parameter`` attributes named like the
    dict's keys."""

    def _init_params(self, shapes, seed, dtype):
        self.shapes = shapes
        for name, value in _params.init(shapes, seed, dtype).items():
            self.register_parameter(
                name,
                torch.nn.Parameter(torch.from_numpy(value).to(getattr(torch, dtype))),
            )

    def params(self):
        return {name: getattr(self, name) for name in self.shapes}

    def get_params(self):
        """The parameters as a dict of NumPy arrays (float32 for bfloat16 layers)."""
        return {
            name: (p.detach().float() if p.dtype == torch.bfloat16 else p.detach())
            .cpu()
            .numpy()
            .copy()
            for name, p in self.params().items()
        }

    def set_params(self, params):
        new = _params.check_set(self.shapes, params)
        with torch.no_grad():
            for name, value in new.items():
                getattr(self, name).copy_(torch.as_tensor(value))


class MultiHeadAttention(_Params):
    """Multi-head attention as a ``torch.nn.Module``; the parameters are ``w_q, w_k,
    w_v, w_o`` (+ biases).

    Same constructor arguments as the NumPy and Keras layers; dropout is active in
    ``train()`` mode.
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
        super().__init__()
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
        seed, dtype, self.dropout = _params.check_layer(seed, dtype, dropout)
        self.num_heads = int(num_heads)
        self.options = _params.attention_options(
            d_model, num_heads, num_kv_heads, window, align, softcap, rope, dtype
        )
        self._init_params(shapes, seed, dtype)

    def forward(
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
        """``training=None`` follows the module's mode (``train()`` / ``eval()``);
        True or False overrides it."""
        key = query if key is None else key
        value = key if value is None else value
        training = (
            self.training
            if training is None
            else _spec.check_flag("training", training)
        )
        return multi_head_attention(
            query,
            key,
            value,
            self.params(),
            self.num_heads,
            mask,
            bias,
            causal=causal,
            dropout=self.dropout if training else 0.0,
            return_weights=return_weights,
            **self.options,
        )


class AdditiveAttention(_Params):
    """Additive (Bahdanau) attention as a ``torch.nn.Module`` with parameters
    ``w_query, w_key, v``."""

    def __init__(self, query_dim, key_dim, hidden_dim, *, seed=0, dtype="float32"):
        super().__init__()
        shapes = _params.additive_shapes(query_dim, key_dim, hidden_dim)
        seed, dtype, _ = _params.check_layer(seed, dtype)
        self._init_params(shapes, seed, dtype)

    def forward(self, query, key, value, mask=None, causal=False, return_weights=False):
        return additive_attention(
            query,
            key,
            value,
            self.w_query,
            self.w_key,
            self.v,
            mask,
            causal=causal,
            return_weights=return_weights,
        )
