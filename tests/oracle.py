"""An independent float64 NumPy reference for attention, written from the math.

Nothing here imports attnbook: the package is checked against these few lines, not
    against itself.
Every function takes and returns NumPy arrays and computes in float64.
"""

import numpy as np


def causal_mask(lq, lk=None):
    """(lq, lk) bool, True where key j <= query i (top-left aligned)."""
    lk = lq if lk is None else lk
    return np.array(
        [[j <= i for j in range(lk)] for i in range(lq)], dtype=bool
    ).reshape(lq, lk)


def softmax(x, axis=-1, mask=None):
    """Softmax over ``axis``; masked (False) or -inf entries get 0; a slice with
    nothing left is all 0."""
    x = np.asarray(x, dtype=np.float64)
    keep = (
        np.ones(x.shape, dtype=bool)
        if mask is None
        else np.broadcast_to(np.asarray(mask, bool), x.shape)
    )
    keep = keep & (x > -np.inf)
    x = np.moveaxis(x, axis, -1)
    keep = np.moveaxis(keep, axis, -1)
    out = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(*x.shape[:-1]):
        row, k = x[idx], keep[idx]
        if not k.any():
            continue
        m = row[k].max()
        e = np.where(k, np.exp(np.where(k, row - m, 0.0)), 0.0)
        out[idx] = e / e.sum()
    return np.moveaxis(out, -1, axis)


def _attend(scores, value, mask, causal):
    """Shared tail: mask + causal, softmax over keys, weights @ value; returns
    (output, weights)."""
    lq, lk = scores.shape[-2:]
    keep = np.ones(scores.shape, dtype=bool)
    if mask is not None:
        keep = keep & np.asarray(mask, dtype=bool)
    if causal:
        keep = keep & causal_mask(lq, lk)
    batch = np.broadcast_shapes(keep.shape[:-2], scores.shape[:-2], value.shape[:-2])
    scores = np.broadcast_to(scores, batch + (lq, lk))
    keep = np.broadcast_to(keep, batch + (lq, lk))
    weights = softmax(scores, axis=-1, mask=keep)
    value = np.broadcast_to(value, batch + value.shape[-2:])
    out = np.einsum("...qk,...kv->...qv", weights, value)
    return out, weights


def _f64(*arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def scaled_dot_product_attention(
    query, key, value, mask=None, bias=None, *, causal=False, scale=None
):
    """softmax(q k^T * scale + bias) v; returns (output (..., Lq, dv), weights (...,
    Lq, Lk))."""
    query, key, value, bias = _f64(query, key, value, bias)
    d = query.shape[-1]
    scale = (1.0 / np.sqrt(d) if d > 0 else 1.0) if scale is None else float(scale)
    scores = np.einsum("...qd,...kd->...qk", query, key) * scale
    if bias is not None:
        scores = scores + bias
    return _attend(scores, value, mask, causal)


def additive_attention(
    query, key, value, w_query, w_key, v, mask=None, *, causal=False
):
    """score[i, j] = sum_h v[h] tanh((q_i @ w_query)[h] + (k_j @ w_key)[h]); no
    scaling."""
    query, key, value, w_query, w_key, v = _f64(query, key, value, w_query, w_key, v)
    qh = query @ w_query  # (..., Lq, h)
    kh = key @ w_key  # (..., Lk, h)
    scores = np.tanh(qh[..., :, None, :] + kh[..., None, :, :]) @ v  # (..., Lq, Lk)
    return _attend(scores, value, mask, causal)


def bilinear_attention(query, key, value, w, mask=None, *, causal=False):
    """score[i, j] = q_i @ w @ k_j; no scaling."""
    query, key, value, w = _f64(query, key, value, w)
    scores = np.einsum("...qa,ab,...kb->...qk", query, w, key)
    return _attend(scores, value, mask, causal)


def multi_head_attention(
    query,
    key,
    value,
    params,
    num_heads,
    mask=None,
    bias=None,
    *,
    causal=False,
    num_kv_heads=None,
    window=None,
    align="top_left",
    softcap=None,
    rope=None,
):
    """Project, split D into contiguous head slices, attend per head, merge, project.

    With ``num_kv_heads`` the keys and values have that many heads of the same size d
    = D / H; ``rope`` rotates queries (at their aligned positions) and keys. Returns
    (output (B, Lq, Do), weights (B, H, Lq, Lk)).
    """
    query, key, value = _f64(query, key, value)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}

    def proj(x, w, b):
        y = x @ p[w]
        return y + p[b] if b in p else y

    q, k, v = (
        proj(query, "w_q", "b_q"),
        proj(key, "w_k", "b_k"),
        proj(value, "w_v", "b_v"),
    )
    D = q.shape[-1]
    dh = D // num_heads

    def split(x):  # (B, L, n*dh) -> (B, n, L, dh), head h = columns h*dh:(h+1)*dh
        return np.stack(
            [x[..., h * dh : (h + 1) * dh] for h in range(x.shape[-1] // dh)], axis=1
        )

    q, k, v = split(q), split(k), split(v)
    if rope is not None:
        lq, lk = q.shape[-2], k.shape[-2]
        q = rotary(
            q, np.arange(lq) + (lk - lq if align == "bottom_right" else 0), base=rope
        )
        k = rotary(k, base=rope)
    out, weights, _ = attention(
        q,
        k,
        v,
        mask,
        bias,
        causal=causal,
        window=window,
        align=align,
        enable_gqa=num_kv_heads not in (None, num_heads),
        softcap=softcap,
    )
    # (B, Lq, D)
    merged = np.concatenate([out[:, h] for h in range(num_heads)], axis=-1)
    return proj(merged, "w_o", "b_o"), weights


def sinusoidal_positional_encoding(length, d_model, base=10000.0):
    pe = np.zeros((length, d_model))
    for p in range(length):
        for c in range(d_model):
            i = c // 2
            angle = p / base ** (2 * i / d_model)
            pe[p, c] = np.sin(angle) if c % 2 == 0 else np.cos(angle)
    return pe


# --- the options of today's models, written out entry by entry
# ------------------------------------------------------


def allowed(lq, lk, *, causal=False, window=None, align="top_left"):
    """(lq, lk) bool: query i at position p_i (i, or i + lk - lq bottom-right) may
    see key j iff j <= p_i when causal and p_i - left <= j <= p_i + right for window
    = (left, right) (None: unbounded)."""
    left, right = window if window is not None else (None, None)
    out = np.zeros((lq, lk), dtype=bool)
    for i in range(lq):
        p = i if align == "top_left" else i + lk - lq
        for j in range(lk):
            ok = True
            if causal and j > p:
                ok = False
            if left is not None and j < p - left:
                ok = False
            if right is not None and j > p + right:
                ok = False
            out[i, j] = ok
    return out


def attention(
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
):
    """Every option of scaled_dot_product_attention, in float64, one row at a time.

    Returns (output (..., Lq, dv), weights (..., Lq, Lk), lse (..., Lq)). GQA repeats
    the key/value heads (the oracle may spend memory); the sink is one more logit in
    each row's softmax whose value is zero.
    """
    query, key, value, bias, sink = _f64(query, key, value, bias, sink)
    if enable_gqa:
        g = query.shape[-3] // key.shape[-3]
        key, value = np.repeat(key, g, axis=-3), np.repeat(value, g, axis=-3)
    d = query.shape[-1]
    scale = (1.0 / np.sqrt(d) if d > 0 else 1.0) if scale is None else float(scale)
    scores = np.einsum("...qd,...kd->...qk", query, key) * scale
    if softcap is not None:
        scores = softcap * np.tanh(scores / softcap)
    if bias is not None:
        scores = scores + bias
    lq, lk = scores.shape[-2:]
    keep = allowed(lq, lk, causal=causal, window=window, align=align)
    if mask is not None:
        keep = keep & np.asarray(mask, dtype=bool)
    batch = np.broadcast_shapes(
        keep.shape[:-2],
        scores.shape[:-2],
        value.shape[:-2],
        () if sink is None else np.shape(sink)[:-1],
    )
    scores = np.broadcast_to(scores, batch + (lq, lk))
    keep = np.broadcast_to(keep, batch + (lq, lk)) & (scores > -np.inf)
    sinks = (
        np.full(batch + (lq,), -np.inf)
        if sink is None
        else np.broadcast_to(sink, batch + (lq,))
    )
    weights = np.zeros(batch + (lq, lk))
    lse = np.full(batch + (lq,), -np.inf)
    for idx in np.ndindex(*batch, lq):
        row, k, s = scores[idx], keep[idx], sinks[idx]
        logits = np.concatenate([row[k], [s]]) if s > -np.inf else row[k]
        if logits.size == 0:
            continue
        m = logits.max()
        total = np.exp(logits - m).sum()
        weights[idx][k] = np.exp(row[k] - m) / total
        lse[idx] = m + np.log(total)
    value = np.broadcast_to(value, batch + value.shape[-2:])
    return np.einsum("...qk,...kv->...qv", weights, value), weights, lse


def rotary(x, positions=None, base=10000.0, interleaved=False):
    """RoPE by explicit 2x2 rotations of each feature pair, in float64."""
    x = np.asarray(x, dtype=np.float64)
    length, d = x.shape[-2:]
    pos = (
        np.arange(length, dtype=np.float64)
        if positions is None
        else np.asarray(positions, np.float64)
    )
    pos = np.broadcast_to(pos, x.shape[:-1])
    out = np.empty_like(x)
    for k in range(d // 2):
        a, b = (2 * k, 2 * k + 1) if interleaved else (k, k + d // 2)
        theta = pos * base ** (-2.0 * k / d)
        c, s = np.cos(theta), np.sin(theta)
        out[..., a] = c * x[..., a] - s * x[..., b]
        out[..., b] = s * x[..., a] + c * x[..., b]
    return out


def alibi_slopes(n):
    """Press et al.'s slopes: geometric for a power of two, interleaved from the next
    power otherwise."""

    def power_of_two(m):
        start = 2 ** (-8.0 / m)
        return [start ** (i + 1) for i in range(m)]

    if n & (n - 1) == 0:
        return np.array(power_of_two(n))
    m = 2 ** int(np.floor(np.log2(n)))
    return np.array(power_of_two(m) + power_of_two(2 * m)[0::2][: n - m])
