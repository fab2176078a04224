"""MiniLM's forward pass in NumPy, built on ``attnbook.numpy.multi_head_attention``.

The twins ``attnbook.minilm.torch`` and ``attnbook.minilm.tensorflow`` have the same
functions with the same arguments. Shapes: ``B`` batch, ``L`` tokens, ``D`` width (384),
``H`` heads (12), ``F`` feed-forward width (1536). A BERT layer is post-norm: ``x =
LayerNorm(x + Attention(x))``, then ``x = LayerNorm(x + FFN(x))``.
"""

from __future__ import annotations

import numpy as np

from .. import numpy as ab
from . import (
    Output,
    check_device,
    check_eps,
    check_inputs,
    check_params,
    check_pool_mask,
)

__all__ = [
    "from_numpy",
    "layer_norm",
    "gelu",
    "embed",
    "self_attention",
    "encoder_layer",
    "forward",
    "mean_pool",
    "l2_normalize",
    "sentence_embeddings",
]


def from_numpy(params, device=None):
    """The parameters as arrays of this framework (NumPy: unchanged, after checking
    them). ``device`` is accepted
    for symmetry with the other twins: None or ``"cpu"``."""
    check_device(device, "numpy")
    check_params(params, "numpy")
    return params


def _as_array(x, dtype):
    return np.asarray(x, dtype=dtype)


def _inputs(params, input_ids, attention_mask=None, token_type_ids=None):
    """``(input_ids, attention_mask, token_type_ids)`` checked
    (:func:`attnbook.minilm.check_inputs`) as int64 arrays; the mask is all ones and
    the segment ids all zeros where they are not given."""
    ids, mask, types = (
        None if a is None else _as_array(a, np.int64)
        for a in check_inputs(
            params, input_ids, attention_mask, token_type_ids, "numpy"
        )
    )
    return (
        ids,
        np.ones_like(ids) if mask is None else mask,
        np.zeros_like(ids) if types is None else types,
    )


def _pool_mask(hidden, attention_mask):
    """``attention_mask (B, L)`` checked against ``hidden (B, L, D)``, as 0/1 in the
    dtype of ``hidden``."""
    return _as_array(check_pool_mask(hidden, attention_mask, "numpy"), hidden.dtype)


def _dense(x, w, b):
    """``x @ w + b`` for ``x (B, L, in)``, as one 2-D matrix product: NumPy runs a
    3-D @ 2-D product as B separate small BLAS calls, which multi-threaded OpenBLAS
    makes many times slower on a busy machine."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1]) + b


def layer_norm(x, gamma, beta, eps=1e-12):
    """Normalise the last axis of ``x (..., D)`` to mean 0 and variance 1, then scale
    by ``gamma`` and shift by ``beta`` (both ``(D,)``). The variance is the biased
    one, as in BERT."""
    eps = check_eps(eps)
    mean = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mean).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu(x):
    """The exact GELU, ``x * Phi(x) = x / 2 * (1 + erf(x / sqrt 2))``, which BERT's
    ``"gelu"`` means (not the tanh approximation). NumPy has no ``erf``; SciPy
    (installed with scikit-learn) provides it."""
    from scipy.special import erf

    return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(x.dtype, copy=False)


def embed(params, input_ids, token_type_ids=None, eps=1e-12):
    """Token + position + segment embeddings, layer-normalised: ``(B, L)`` ids ->
    ``(B, L, D)``."""
    e = params["embeddings"]
    input_ids, _, token_type_ids = _inputs(params, input_ids, None, token_type_ids)
    length = input_ids.shape[1]
    # (B, L, D)
    x = e["word"][input_ids] + e["position"][:length] + e["token_type"][token_type_ids]
    return layer_norm(x, e["norm"]["gamma"], e["norm"]["beta"], eps)


def self_attention(params, x, mask, num_heads):
    """Multi-head self-attention of ``x (B, L, D)`` with attnbook's
    ``multi_head_attention``.

    ``params`` holds ``w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o``; ``mask`` is boolean
    ``(B, 1, 1, L)``, True for real tokens (keys that may be attended to). Returns
    ``(output (B, L, D), weights (B, H, L, L))``.
    """
    return ab.multi_head_attention(
        x, x, x, params, num_heads, mask, return_weights=True
    )


def encoder_layer(params, x, mask, num_heads, eps=1e-12):
    """One post-norm BERT layer: attention sub-layer, then feed-forward sub-layer,
    each with residual + norm.

    ``x (B, L, D)``, ``mask (B, 1, 1, L)``. Returns ``(x (B, L, D), attention weights
    (B, H, L, L))``.
    """
    attn, weights = self_attention(params["attention"], x, mask, num_heads)
    x = layer_norm(
        x + attn,
        params["attention_norm"]["gamma"],
        params["attention_norm"]["beta"],
        eps,
    )
    f = params["ffn"]
    # (B, L, F) -> (B, L, D)
    h = _dense(gelu(_dense(x, f["w_1"], f["b_1"])), f["w_2"], f["b_2"])
    x = layer_norm(
        x + h, params["output_norm"]["gamma"], params["output_norm"]["beta"], eps
    )
    return x, weights


def forward(
    params,
    input_ids,
    attention_mask=None,
    token_type_ids=None,
    *,
    num_heads=12,
    eps=1e-12,
):
    """The whole encoder: ids ``(B, L)`` and a Hugging Face ``attention_mask (B, L)``
    (1 = token, 0 = padding; ``None`` = no padding) ->
    :class:`attnbook.minilm.Output` with every layer's hidden states and weights."""
    input_ids, attention_mask, token_type_ids = _inputs(
        params, input_ids, attention_mask, token_type_ids
    )
    keep = ab.mask_from_keep(attention_mask)  # (B, L), True = real token
    mask = keep[:, None, None, :]  # (B, 1, 1, L): mask padded keys
    x = embed(params, input_ids, token_type_ids, eps)
    hidden, attentions = [x], []
    for layer in params["layers"]:
        x, weights = encoder_layer(layer, x, mask, num_heads, eps)
        hidden.append(x)
        attentions.append(weights)
    pooled = None
    if "pooler" in params:
        # (B, D), from [CLS]
        pooled = np.tanh(x[:, 0] @ params["pooler"]["w"] + params["pooler"]["b"])
    return Output(x, pooled, tuple(hidden), tuple(attentions))


def mean_pool(hidden, attention_mask):
    """Average ``hidden (B, L, D)`` over the real tokens of each row
    (``attention_mask (B, L)``, 1 = token).

    This is attention pooling with fixed weights ``1 / n_b`` on the ``n_b`` tokens of
    text ``b`` and 0 on padding.
    """
    m = _pool_mask(hidden, attention_mask)[:, :, None]  # (B, L, 1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def l2_normalize(x, eps=1e-12):
    """Divide each row of ``x (B, D)`` by its Euclidean norm (at least ``eps``), as
    ``torch.nn.functional.normalize``."""
    eps = check_eps(eps)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def sentence_embeddings(
    params,
    input_ids,
    attention_mask=None,
    token_type_ids=None,
    *,
    num_heads=12,
    eps=1e-12,
):
    """What sentence-transformers computes for all-MiniLM-L6-v2: the last layer's
    token states, mean-pooled over real tokens, L2-normalised. Returns ``(B, D)``
    unit vectors."""
    input_ids, attention_mask, token_type_ids = _inputs(
        params, input_ids, attention_mask, token_type_ids
    )
    out = forward(
        params, input_ids, attention_mask, token_type_ids, num_heads=num_heads, eps=eps
    )
    return l2_normalize(mean_pool(out.last_hidden_state, attention_mask))
