"""The forward pass of :mod:`attnbook.transformer`'s models in NumPy, from a parameter
dict.

No classes and no training: functions of ``(cfg, params, inputs)`` written as plainly as
    the equations, on top of
``attnbook.numpy.multi_head_attention``. The tests run them on the parameters of the
PyTorch and TensorFlow twins (``get_params()``) to check that both compute this
function; float64 inputs give a reference free of float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np

from .. import transformer
from ..numpy import multi_head_attention, sinusoidal_positional_encoding

__all__ = [
    "layer_norm",
    "gelu",
    "block",
    "gpt",
    "encoder",
    "decoder",
    "encoder_decoder",
]


def layer_norm(x, gamma, beta, eps=transformer.LAYER_NORM_EPS):
    """Normalise the last axis to mean 0 and (biased) variance 1, then scale and
    shift."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu(x):
    """The exact GELU ``x * Phi(x)`` (SciPy's ``erf``; NumPy has none)."""
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _sub(params, prefix):
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def block(
    params,
    x,
    *,
    num_heads,
    num_kv_heads=None,
    norm="pre",
    window=None,
    rope=None,
    causal=False,
    mask=None,
    memory=None,
    memory_mask=None,
):
    """One block on ``x (B, L, D)`` (inference: no dropout); ``params`` without the
    block's prefix."""
    p = params

    def residual(x, name, sublayer):
        g, b = p[f"{name}.gamma"], p[f"{name}.beta"]
        if norm == "pre":
            return x + sublayer(layer_norm(x, g, b))
        return layer_norm(x + sublayer(x), g, b)

    def self_attention(h):
        return multi_head_attention(
            h,
            h,
            h,
            _sub(p, "attn."),
            num_heads,
            mask,
            causal=causal,
            num_kv_heads=num_kv_heads,
            window=window,
            rope=rope,
        )

    def cross_attention(h):
        return multi_head_attention(
            h,
            memory,
            memory,
            _sub(p, "cross."),
            num_heads,
            memory_mask,
            num_kv_heads=num_kv_heads,
        )

    def ffn(h):
        return gelu(h @ p["ffn.w1"] + p["ffn.b1"]) @ p["ffn.w2"] + p["ffn.b2"]

    x = residual(x, "attn_norm", self_attention)
    if memory is not None:
        x = residual(x, "cross_norm", cross_attention)
    return residual(x, "ffn_norm", ffn)


def _embed(params, ids, name, pos, d):
    x = params[f"{name}_embed"][ids] * math.sqrt(d)  # (B, L, D)
    if pos == "learned":
        x = (
            x
            + params[f"{name}_pos_embed" if name != "tok" else "pos_embed"][
                : ids.shape[1]
            ]
        )
    elif pos == "sinusoidal":
        x = x + sinusoidal_positional_encoding(ids.shape[1], d, dtype=str(x.dtype))
    return x


def _final(params, x, name, norm):
    return (
        layer_norm(x, params[f"{name}.gamma"], params[f"{name}.beta"])
        if norm == "pre"
        else x
    )


def gpt(cfg, params, idx):
    """Logits ``(B, L, V)`` of a GPT configuration ``cfg`` for token ids ``idx (B,
    L)``."""
    idx = np.asarray(idx)
    transformer.check_tokens(cfg, idx)
    d = cfg["d_model"]
    x = _embed(params, idx, "tok", cfg["pos"], d)
    for i in range(cfg["num_layers"]):
        kw = transformer.block_kwargs(cfg, i)
        x = block(
            _sub(params, f"blocks.{i}."),
            x,
            num_heads=cfg["num_heads"],
            num_kv_heads=kw["num_kv_heads"],
            norm=kw["norm"],
            window=kw["window"],
            rope=kw["rope"],
            causal=True,
        )
    return _final(params, x, "norm", cfg["norm"]) @ params["tok_embed"].T


def encoder(cfg, params, src, src_lengths):
    """``memory (B, Lin, D)`` and the key mask ``(B, 1, 1, Lin)`` of an
    encoder-decoder."""
    src, src_lengths = np.asarray(src), np.asarray(src_lengths)
    transformer.check_source(cfg, src, src_lengths)
    mask = (np.arange(src.shape[1])[None, :] < src_lengths[:, None])[:, None, None, :]
    x = _embed(params, src, "src", cfg["pos"], cfg["d_model"])
    for i in range(cfg["num_layers"]):
        x = block(
            _sub(params, f"encoder.{i}."),
            x,
            num_heads=cfg["num_heads"],
            num_kv_heads=cfg["num_kv_heads"],
            norm=cfg["norm"],
            mask=mask,
        )
    return _final(params, x, "encoder_norm", cfg["norm"]), mask


def decoder(cfg, params, tgt_in, memory, memory_mask):
    """Logits ``(B, Lout, Vt)`` of the decoder inputs ``tgt_in (B, Lout)`` given the
    encoder's output."""
    tgt_in = np.asarray(tgt_in)
    transformer.check_tokens(cfg, tgt_in, "tgt_in", vocab=cfg["tgt_vocab"])
    y = _embed(params, tgt_in, "tgt", cfg["pos"], cfg["d_model"])
    for i in range(cfg["num_layers"]):
        y = block(
            _sub(params, f"decoder.{i}."),
            y,
            num_heads=cfg["num_heads"],
            num_kv_heads=cfg["num_kv_heads"],
            norm=cfg["norm"],
            causal=True,
            memory=memory,
            memory_mask=memory_mask,
        )
    return _final(params, y, "decoder_norm", cfg["norm"]) @ params["tgt_embed"].T


def encoder_decoder(cfg, params, src, src_lengths, tgt_in):
    """Teacher-forced logits ``(B, Lout, Vt)`` of an encoder-decoder configuration."""
    memory, mask = encoder(cfg, params, src, src_lengths)
    return decoder(cfg, params, tgt_in, memory, mask)
