"""The Transformer assembled from attnbook's attention: a block, an encoder-decoder and
a GPT, twinned in PyTorch and TensorFlow.

``attnbook.transformer.torch`` and ``attnbook.transformer.tensorflow`` define the same
classes (``Block``, ``EncoderDecoder``, ``GPT``) with the same constructor arguments,
the same parameter names and shapes, and the same training and decoding functions;
``attnbook.transformer.numpy`` is a NumPy forward pass of the same models, which the
tests use as the reference. This module holds what they share and imports NumPy only:
the checked configurations, the parameter shapes and their seeded initialisation, the
parameter-count and FLOP formulas, the size of a KV cache, the sampling rules of
generation, one step of beam search, and the argument checks (so that both twins refuse
the same inputs with the same messages). The text data and its tokenizer are in
:mod:`attnbook.transformer.text`, the training cache in
:mod:`attnbook.transformer.cache`.

One block, with ``norm="pre"`` (Xiong et al., 2020; GPT-2) or ``norm="post"`` (Vaswani
et al., 2017); the cross-attention line is in decoder blocks only::

    pre:  x = x + drop(attn(LN(x)))       post: x = LN(x + drop(attn(x)))
          x = x + drop(cross(LN(x), m))         x = LN(x + drop(cross(x, m)))
          x = x + ffn(LN(x))                    x = LN(x + ffn(x))
    ffn(x) = drop(gelu(x @ w1 + b1) @ w2 + b2),  w1 (D, m*D), w2 (m*D, D), m = ffn_mult

``attn`` and ``cross`` are attnbook's ``MultiHeadAttention`` layers (with their GQA,
RoPE and window options); the cross-attention sub-layer exists in the decoder blocks of
the encoder-decoder only. Token embeddings are scaled by ``sqrt(D)`` and tied to the
output layer (logits ``= h @ E^T``), as in Vaswani et al. (2017).

Shape letters: ``B`` batch, ``L`` sequence length, ``D`` model width, ``H`` heads,
``Hkv`` key/value heads, ``d = D/H`` head width, ``V`` vocabulary size, ``Lin`` /
``Lout`` source / target lengths of the encoder-decoder.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _checks, _params, _spec
from ..vit import LAYER_NORM_EPS, learning_rate

__all__ = [
    "POSITIONS",
    "ENCDEC_POSITIONS",
    "NORMS",
    "ROPE_BASE",
    "LAYER_NORM_EPS",
    "block_config",
    "gpt_config",
    "encdec_config",
    "param_shapes",
    "init_params",
    "check_params",
    "block_param_count",
    "param_count",
    "block_flops",
    "model_flops",
    "kv_cache_bytes",
    "KVCache",
    "next_token_distribution",
    "sample_next",
    "beam_step",
    "learning_rate",
    "lm_batches",
]

#: Position information of a GPT: rotary embeddings of the queries and keys (Su et al.,
#: 2021), a learned ``(max_len, D)`` table, or the fixed sinusoids of Vaswani et al.
#: (2017), both added to the token embeddings.
POSITIONS = ("rope", "learned", "sinusoidal")
#: The encoder-decoder adds its positions to the embeddings (rotary positions in
#: cross-attention have no meaning).
ENCDEC_POSITIONS = ("learned", "sinusoidal")
#: Where the layer normalisation sits: before each sub-layer, inside the residual
#: branch, or after the addition.
NORMS = ("pre", "post")
#: The RoPE base of RoFormer and Llama 2.
ROPE_BASE = 10000.0


# --------------------------------------------------------------------------------------
# Configurations: every constructor argument checked once, here, for both twins.


def _heads(d_model, num_heads, num_kv_heads):
    d_model = _checks.positive_int("d_model", d_model)
    num_heads = _checks.positive_int("num_heads", num_heads)
    if d_model % num_heads:
        raise ValueError(f"num_heads = {num_heads} must divide d_model = {d_model}")
    if num_kv_heads is not None:
        num_kv_heads = _spec.check_integer(
            "num_kv_heads", num_kv_heads, least=1, what="a positive integer or None"
        )
        if num_heads % num_kv_heads:
            raise ValueError(
                f"num_kv_heads = {num_kv_heads} must divide num_heads = {num_heads}"
            )
    return d_model, num_heads, num_kv_heads


def _common(cfg, ffn_mult, norm, dropout, seed):
    cfg["ffn_mult"] = _checks.positive_int("ffn_mult", ffn_mult)
    cfg["norm"] = _checks.string("norm", norm, NORMS)
    cfg["dropout"], _ = _spec.check_dropout(dropout, None)
    cfg["seed"] = _spec.check_integer("seed", seed)
    return cfg


def block_config(
    d_model,
    num_heads,
    *,
    num_kv_heads=None,
    ffn_mult=4,
    norm="pre",
    dropout=0.0,
    window=None,
    rope=None,
    cross=False,
    seed=0,
):
    """The checked arguments of a ``Block`` as a dict (Python ints, floats and tuples).

    ``window`` is ``None`` or ``(left, right)`` as in
    ``attnbook.scaled_dot_product_attention``; ``rope`` ``None`` or a RoPE base (then
    ``d_model / num_heads`` must be even); ``cross=True`` adds the cross-attention
    sub-layer of a decoder block. ``dropout`` applies to the attention weights and to
    each sub-layer's output.
    """
    d_model, num_heads, num_kv_heads = _heads(d_model, num_heads, num_kv_heads)
    cfg = _common(
        {
            "kind": "block",
            "d_model": d_model,
            "num_heads": num_heads,
            "num_kv_heads": num_kv_heads,
        },
        ffn_mult,
        norm,
        dropout,
        seed,
    )
    left, right = _spec.check_window(window)
    cfg["window"] = None if (left, right) == (None, None) else (left, right)
    if rope is not None:
        rope = _spec.check_base("rope", rope)
        if (d_model // num_heads) % 2:
            raise ValueError(
                f"rope needs an even head size d = d_model / num_heads = {d_model} / "
                f"{num_heads}"
            )
    cfg["rope"] = rope
    cfg["cross"] = _spec.check_flag("cross", cross)
    _fits(cfg)
    return cfg


def gpt_config(
    vocab_size,
    d_model,
    num_heads,
    num_layers,
    max_len,
    *,
    num_kv_heads=None,
    ffn_mult=4,
    pos="rope",
    norm="pre",
    window=None,
    dropout=0.0,
    seed=0,
):
    """The checked arguments of a ``GPT`` as a dict.

    ``window`` is ``None`` or a positive integer ``w``: each token then attends to the
    ``w`` most recent tokens, itself included (a causal sliding window, ``(w - 1, 0)``
    in attnbook's terms; Mistral's ``sliding_window``). ``pos="rope"`` needs an even
    head size. Block ``i`` is built from ``seed + i``, so ``seed + num_layers`` must
    stay below 2**63.
    """
    vocab_size = _checks.positive_int("vocab_size", vocab_size)
    d_model, num_heads, num_kv_heads = _heads(d_model, num_heads, num_kv_heads)
    cfg = {
        "kind": "gpt",
        "vocab_size": vocab_size,
        "d_model": d_model,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "num_layers": _checks.positive_int("num_layers", num_layers),
        "max_len": _checks.positive_int("max_len", max_len),
    }
    cfg["pos"] = _checks.string("pos", pos, POSITIONS)
    if cfg["pos"] == "rope" and (d_model // num_heads) % 2:
        raise ValueError(
            f"pos='rope' needs an even head size d = d_model / num_heads = {d_model} "
            f"/ {num_heads}"
        )
    _common(cfg, ffn_mult, norm, dropout, seed)
    cfg["window"] = (
        None
        if window is None
        else _spec.check_integer(
            "window",
            window,
            least=1,
            what="a positive integer (the number of keys a token sees) or None",
        )
    )
    _seeds(cfg)
    _fits(cfg)
    return cfg


def encdec_config(
    src_vocab,
    tgt_vocab,
    d_model,
    num_heads,
    num_layers,
    max_len,
    *,
    num_kv_heads=None,
    ffn_mult=4,
    pos="sinusoidal",
    norm="pre",
    dropout=0.0,
    seed=0,
):
    """The checked arguments of an ``EncoderDecoder`` as a dict: ``num_layers`` encoder
    blocks and as many decoder blocks, sources and targets of at most ``max_len`` tokens
    each."""
    src_vocab = _checks.positive_int("src_vocab", src_vocab)
    tgt_vocab = _checks.positive_int("tgt_vocab", tgt_vocab)
    d_model, num_heads, num_kv_heads = _heads(d_model, num_heads, num_kv_heads)
    cfg = {
        "kind": "encdec",
        "src_vocab": src_vocab,
        "tgt_vocab": tgt_vocab,
        "d_model": d_model,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "num_layers": _checks.positive_int("num_layers", num_layers),
        "max_len": _checks.positive_int("max_len", max_len),
    }
    cfg["pos"] = _checks.string("pos", pos, ENCDEC_POSITIONS)
    _common(cfg, ffn_mult, norm, dropout, seed)
    _seeds(cfg, 2)
    _fits(cfg)
    return cfg


def _seeds(cfg, stacks=1):
    if cfg["seed"] + stacks * cfg["num_layers"] > _spec.INDEX_MAX:
        raise ValueError(
            f"seed = {cfg['seed']} is too large: block i is built from seed + i, "
            "which must stay "
            "below 2**63"
        )


def _fits(cfg):
    _checks.fits_in_memory(
        f"the {cfg['kind']}'s float32 parameters", 4 * param_count(cfg)
    )


_BUILDERS = {"block": block_config, "gpt": gpt_config, "encdec": encdec_config}
_POSITIONAL = {
    "block": ("d_model", "num_heads"),
    "gpt": ("vocab_size", "d_model", "num_heads", "num_layers", "max_len"),
    "encdec": (
        "src_vocab",
        "tgt_vocab",
        "d_model",
        "num_heads",
        "num_layers",
        "max_len",
    ),
}


def _config(cfg):
    """A configuration dict (from one of the ``*_config`` functions) checked again, so
    that functions taking ``cfg`` refuse what the constructors refuse."""
    if not isinstance(cfg, dict) or cfg.get("kind") not in _BUILDERS:
        raise TypeError(
            "cfg must be a configuration dict from block_config, gpt_config or "
            "encdec_config, got "
            f"{type(cfg).__name__}"
        )
    kind = cfg["kind"]
    args = [cfg[k] for k in _POSITIONAL[kind]]
    return _BUILDERS[kind](
        *args,
        **{k: v for k, v in cfg.items() if k not in _POSITIONAL[kind] and k != "kind"},
    )


def block_kwargs(cfg, i, stack="blocks"):
    """The ``Block`` arguments of block ``i`` of a GPT (``stack="blocks"``) or of an
    encoder-decoder's ``"encoder"`` / ``"decoder"``."""
    kw = {k: cfg[k] for k in ("num_kv_heads", "ffn_mult", "norm", "dropout")}
    if cfg["kind"] == "gpt":
        kw.update(
            window=None if cfg["window"] is None else (cfg["window"] - 1, 0),
            rope=ROPE_BASE if cfg["pos"] == "rope" else None,
            seed=cfg["seed"] + i,
        )
    else:
        kw.update(
            cross=stack == "decoder",
            seed=cfg["seed"] + i + (cfg["num_layers"] if stack == "decoder" else 0),
        )
    return kw


# --------------------------------------------------------------------------------------
# Parameters: names, shapes, counts, and the one NumPy initialisation both twins start
# from.


def _block_shapes(d, heads, kv_heads, mult, cross):
    norm = {"gamma": (d,), "beta": (d,)}
    attn = _params.multi_head_shapes(d, heads, num_kv_heads=kv_heads)
    shapes = {f"attn_norm.{k}": s for k, s in norm.items()}
    shapes.update({f"attn.{k}": s for k, s in attn.items()})
    if cross:
        shapes.update({f"cross_norm.{k}": s for k, s in norm.items()})
        shapes.update({f"cross.{k}": s for k, s in attn.items()})
    shapes.update({f"ffn_norm.{k}": s for k, s in norm.items()})
    shapes.update(
        {
            "ffn.w1": (d, mult * d),
            "ffn.b1": (mult * d,),
            "ffn.w2": (mult * d, d),
            "ffn.b2": (d,),
        }
    )
    return shapes


def _stack(shapes, prefix, cfg, n, cross):
    block = _block_shapes(
        cfg["d_model"], cfg["num_heads"], cfg["num_kv_heads"], cfg["ffn_mult"], cross
    )
    for i in range(n):
        shapes.update({f"{prefix}.{i}.{k}": s for k, s in block.items()})


def _param_shapes(cfg):
    d, kind = cfg["d_model"], cfg["kind"]
    if kind == "block":
        return _block_shapes(
            d, cfg["num_heads"], cfg["num_kv_heads"], cfg["ffn_mult"], cfg["cross"]
        )
    final = {"gamma": (d,), "beta": (d,)} if cfg["norm"] == "pre" else {}
    if kind == "gpt":
        shapes = {"tok_embed": (cfg["vocab_size"], d)}
        if cfg["pos"] == "learned":
            shapes["pos_embed"] = (cfg["max_len"], d)
        _stack(shapes, "blocks", cfg, cfg["num_layers"], False)
        shapes.update({f"norm.{k}": s for k, s in final.items()})
        return shapes
    shapes = {"src_embed": (cfg["src_vocab"], d), "tgt_embed": (cfg["tgt_vocab"], d)}
    if cfg["pos"] == "learned":
        shapes.update(
            src_pos_embed=(cfg["max_len"], d), tgt_pos_embed=(cfg["max_len"], d)
        )
    _stack(shapes, "encoder", cfg, cfg["num_layers"], False)
    shapes.update({f"encoder_norm.{k}": s for k, s in final.items()})
    _stack(shapes, "decoder", cfg, cfg["num_layers"], True)
    shapes.update({f"decoder_norm.{k}": s for k, s in final.items()})
    return shapes


def param_shapes(cfg):
    """``{name: shape}`` of every parameter of a block, GPT or encoder-decoder
    configuration, in a fixed order.

    Linear maps are ``y = x @ w + b`` with ``w (in, out)``; layer norms hold ``gamma``
    and ``beta``; the attention sub-layers hold the parameter dict of attnbook's
    ``MultiHeadAttention`` under ``attn.`` (and ``cross.``). A GPT's block ``i`` is
    ``blocks.i.``; an encoder-decoder has ``encoder.i.`` and ``decoder.i.``.
    """
    return _param_shapes(_config(cfg))


def init_params(cfg):
    """Seeded float32 initial parameters, a dict of NumPy arrays shaped as
    :func:`param_shapes`.

    Token embeddings ``N(0, 1/D)`` (scaled by ``sqrt(D)`` on input, so tokens enter with
    unit variance, and tied to the output layer, whose logits then start with unit
    variance too), learned positions ``N(0, 0.02^2)`` (as GPT-2 and ViT), matrices
    Glorot-uniform (as attnbook's attention layers), biases and ``beta`` 0, ``gamma`` 1.
    Both twins start from this dict, so a seed means the same network in both
    frameworks.
    """
    cfg = _config(cfg)
    rng = np.random.default_rng(cfg["seed"])
    d = cfg["d_model"]
    out = {}
    for name, shape in _param_shapes(cfg).items():
        if name.endswith("gamma"):
            out[name] = np.ones(shape, np.float32)
        elif name.endswith("pos_embed"):
            out[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        elif name.endswith("_embed"):
            out[name] = (rng.standard_normal(shape) / math.sqrt(d)).astype(np.float32)
        elif len(shape) == 2:
            out[name] = _params._glorot(rng, *shape, "float32")
        else:
            out[name] = np.zeros(shape, np.float32)
    return out


def check_params(cfg, params):
    """``params`` as float32 NumPy arrays, after checking names and shapes against
    :func:`param_shapes`."""
    return {
        k: v.astype(np.float32)
        for k, v in _params.check_set(param_shapes(cfg), params).items()
    }


def block_param_count(d_model, num_heads=1, num_kv_heads=None, ffn_mult=4, cross=False):
    """Parameters of one block, by formula. With ``H = Hkv`` and ``ffn_mult = 4``: ``12
    D^2 + 13 D``.

    attention ``4 D^2 + 4 D`` (four ``D x D`` maps and their biases; with GQA the key
    and value maps have ``Hkv * d`` columns), feed-forward ``2 m D^2 + m D + D``, two
    layer norms ``4 D``; a decoder block adds a cross-attention and a third norm.
    """
    d, h = d_model, num_heads
    kv = d // h * (h if num_kv_heads is None else num_kv_heads)
    attn = 2 * (d * d + d) + 2 * (d * kv + kv)
    ffn = 2 * ffn_mult * d * d + ffn_mult * d + d
    return (2 if cross else 1) * attn + ffn + (3 if cross else 2) * 2 * d


def param_count(cfg):
    """The number of parameters of a configuration (a block, GPT or encoder-decoder), by
    arithmetic."""
    d, kind = cfg["d_model"], cfg["kind"]

    def block(cross):
        return block_param_count(
            d, cfg["num_heads"], cfg["num_kv_heads"], cfg["ffn_mult"], cross
        )

    if kind == "block":
        return block(cfg["cross"])
    final = 2 * d if cfg["norm"] == "pre" else 0
    learned = cfg["pos"] == "learned"
    if kind == "gpt":
        return (
            cfg["vocab_size"] * d
            + learned * cfg["max_len"] * d
            + cfg["num_layers"] * block(False)
            + final
        )
    return (
        (cfg["src_vocab"] + cfg["tgt_vocab"]) * d
        + learned * 2 * cfg["max_len"] * d
        + cfg["num_layers"] * (block(False) + block(True))
        + 2 * final
    )


# --------------------------------------------------------------------------------------
# FLOPs and memory: the formulas the book derives, which the notebooks check against
# measured counts.


def block_flops(
    n, d_model, *, ffn_mult=4, num_heads=1, num_kv_heads=None, causal=False
):
    """Floating-point operations of the matrix products of one self-attention block on
    one sequence of ``n`` tokens (a multiply-add counts 2; the softmax, norms, GELU and
    biases are ``O(n D)`` and left out).

    Returns ``{"projections", "attention", "ffn", "total"}``:

    * projections: ``2 n D (D + 2 Hkv d + D)``, which is ``8 n D^2`` with ``Hkv = H``
      (Q, K, V and O);
    * attention: ``4 n^2 D`` (the scores ``Q K^T`` and the weighted sum ``A V``, ``2 n^2
      D`` each, over all heads); ``causal=True`` counts the half a causal kernel
      computes, ``2 n^2 D`` (exactly, ``n (n + 1) / 2`` of the ``n^2`` scores; the
      difference is below ``1/n``);
    * ffn: ``4 m n D^2``, ``16 n D^2`` with ``ffn_mult = 4``.

    So attention costs as much as the projections at ``n = 2 D``, as the whole rest of
    the block (``24 n D^2``) at ``n = 6 D``, and, causal, at ``n = 12 D``.
    """
    n = _checks.count("n", n)
    d_model, num_heads, num_kv_heads = _heads(d_model, num_heads, num_kv_heads)
    mult = _checks.positive_int("ffn_mult", ffn_mult)
    causal = _spec.check_flag("causal", causal)
    kv = d_model // num_heads * (num_heads if num_kv_heads is None else num_kv_heads)
    out = {
        "projections": 2 * n * d_model * (2 * d_model + 2 * kv),
        "attention": (2 if causal else 4) * n * n * d_model,
        "ffn": 4 * mult * n * d_model * d_model,
    }
    out["total"] = sum(out.values())
    return out


def model_flops(cfg, n):
    """Forward FLOPs of a GPT configuration on one sequence of ``n`` tokens:
    ``num_layers`` causal blocks and the output layer ``2 n D V`` (embedding look-ups
    cost no multiplication)."""
    cfg = _config(cfg)
    if cfg["kind"] != "gpt":
        raise ValueError(
            f"model_flops counts a GPT configuration, got kind {cfg['kind']!r}"
        )
    block = block_flops(
        n,
        cfg["d_model"],
        ffn_mult=cfg["ffn_mult"],
        num_heads=cfg["num_heads"],
        num_kv_heads=cfg["num_kv_heads"],
        causal=True,
    )["total"]
    return cfg["num_layers"] * block + 2 * n * cfg["d_model"] * cfg["vocab_size"]


def kv_cache_bytes(
    num_layers, num_kv_heads, head_dim, length, *, batch=1, bytes_per_number=4
):
    """Memory of a KV cache: ``2 * layers * Hkv * d * L * bytes_per_number`` per
    sequence (keys and values), times ``batch``. Multi-head attention caches ``Hkv = H``
    heads, grouped-query attention fewer, multi-query one."""
    sizes = [
        _checks.count(n, v)
        for n, v in (
            ("num_layers", num_layers),
            ("num_kv_heads", num_kv_heads),
            ("head_dim", head_dim),
            ("length", length),
            ("batch", batch),
            ("bytes_per_number", bytes_per_number),
        )
    ]
    return 2 * math.prod(sizes)


class KVCache:
    """The keys and values a GPT has computed for the tokens it has seen, for generation
    one token at a time.

    ``keys[i]`` and ``values[i]`` are layer ``i``'s ``(B, Hkv, C, d)`` tensors (of the
    model's framework), already rotated by RoPE at their absolute positions, so they
    never change once computed; ``position`` is the number of tokens seen, the position
    of the next one. With a sliding window of ``w`` keys only the last ``keep = w - 1``
    are kept after each step: the next token sees those and itself, nothing older, so
    the cache stops growing.
    """

    def __init__(self, num_layers, keep=None):
        self.keys = [None] * _checks.positive_int("num_layers", num_layers)
        self.values = [None] * len(self.keys)
        self.keep = None if keep is None else _checks.count("keep", keep)
        self.position = 0

    def __len__(self):
        """The number of cached positions (the same in every layer)."""
        return 0 if self.keys[0] is None else int(self.keys[0].shape[-2])

    def store(self, layer, keys, values):
        """Keep layer ``layer``'s keys and values ``(B, Hkv, C, d)``, cut to the last
        ``keep`` positions."""
        if self.keep is not None:
            start = max(
                0, int(keys.shape[-2]) - self.keep
            )  # not keys[..., -keep:]: -0 would keep them all
            keys, values = keys[..., start:, :], values[..., start:, :]
        self.keys[layer], self.values[layer] = keys, values

    def nbytes(self):
        """The bytes the cached tensors occupy (of any framework)."""
        total = 0
        for t in self.keys + self.values:
            if t is not None:
                name = _checks.dtype_name(t)
                total += math.prod(int(s) for s in t.shape) * (
                    2 if name == "bfloat16" else np.dtype(name).itemsize
                )
        return total


# --------------------------------------------------------------------------------------
# Generation: the sampling rules, applied in NumPy so that both twins draw the same
# tokens from the same seed.


def check_sampling(temperature, top_k, top_p):
    """``temperature >= 0`` (0: greedy), ``top_k`` None or a positive integer, ``top_p``
    None or in ``(0, 1]``."""
    temperature = _checks.positive("temperature", temperature, zero=True)
    if top_k is not None:
        top_k = _spec.check_integer(
            "top_k", top_k, least=1, what="a positive integer or None"
        )
    if top_p is not None:
        top_p = _spec.check_real("top_p", top_p, "a number in (0, 1] or None")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be a number in (0, 1] or None, got {top_p!r}")
    return temperature, top_k, top_p


def next_token_distribution(logits, temperature=1.0, top_k=None, top_p=None):
    """The distribution the next token is sampled from: ``(B, V)`` float64 rows that sum
    to 1, for ``logits (B, V)`` (or ``(V,)``) of any framework.

    In order: the logits are divided by ``temperature`` (below 1 sharper, above 1
    flatter; 0 puts all the mass on the arg-max), only the ``top_k`` most likely tokens
    are kept, then only the smallest set of most likely tokens whose probabilities add
    up to at least ``top_p`` (nucleus sampling, Holtzman et al., 2020; the most likely
    token is always kept), and what is kept is renormalised. Ties go to the lower token
    id, as in ``argmax``.
    """
    from ..plotting import to_numpy

    temperature, top_k, top_p = check_sampling(temperature, top_k, top_p)
    x = np.asarray(to_numpy(logits), np.float64)
    single = x.ndim == 1
    x = np.atleast_2d(x)
    if x.ndim != 2 or x.shape[-1] == 0:
        raise ValueError(f"logits must have shape (B, V) or (V,), got {x.shape}")
    order = np.argsort(-x, axis=-1, kind="stable")  # (B, V), most likely first
    if temperature == 0:
        probs = np.zeros_like(x)
        np.put_along_axis(probs, order[:, :1], 1.0, axis=-1)
        return probs[0] if single else probs
    z = x / temperature
    z = z - z.max(axis=-1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=-1, keepdims=True)
    ranked = np.take_along_axis(probs, order, axis=-1)  # (B, V), descending
    keep = np.ones_like(ranked, dtype=bool)
    if top_k is not None:
        keep[:, top_k:] = False
    if top_p is not None:
        before = np.cumsum(ranked, axis=-1) - ranked  # mass of the likelier tokens
        keep &= before < top_p  # the first one: before = 0
    ranked = np.where(keep, ranked, 0.0)
    out = np.zeros_like(probs)
    np.put_along_axis(out, order, ranked / ranked.sum(axis=-1, keepdims=True), axis=-1)
    return out[0] if single else out


def sample_next(logits, rng, temperature=0.0, top_k=None, top_p=None):
    """Next token ids ``(B,)`` int64 from ``logits (B, V)``: the arg-max for
    ``temperature == 0``, else one draw per row from :func:`next_token_distribution` by
    inverting its cumulative sum at ``u ~ U[0, 1)`` from ``rng`` (one ``u`` per row,
    drawn even when greedy, so the random stream does not depend on the rows'
    contents)."""
    _checks.generator("rng", rng)
    probs = next_token_distribution(logits, temperature, top_k, top_p)
    u = rng.random(probs.shape[0])
    if temperature == 0:
        return probs.argmax(axis=-1).astype(np.int64)
    cdf = np.cumsum(probs, axis=-1)
    ids = (cdf <= u[:, None] * cdf[:, -1:]).sum(
        axis=-1
    )  # the first token whose cdf exceeds u
    # A token of probability 0 may not be drawn, not even when rounding leaves cdf[-1] a
    # hair below u.
    last = probs.shape[1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=-1)
    return np.minimum(ids, last).astype(np.int64)


def check_generate(
    cfg, idx, max_new_tokens, temperature, top_k, top_p, use_cache, seed
):
    """The arguments of both twins' ``GPT.generate``; returns ``(ids int64 NumPy (B, L),
    n, sampling, rng)``."""
    h = check_tokens(cfg, idx, "idx")
    n = _checks.count("max_new_tokens", max_new_tokens)
    sampling = check_sampling(temperature, top_k, top_p)
    _spec.check_flag("use_cache", use_cache)
    if seed is not None:
        seed = _spec.check_integer("seed", seed, what="a non-negative integer or None")
    if h.shape[1] + n > cfg["max_len"]:
        raise ValueError(
            f"idx has {h.shape[1]} tokens and max_new_tokens = {n}: together more than "
            f"max_len = {cfg['max_len']}, the longest sequence the model has "
            "positions for"
        )
    return np.asarray(h.values, np.int64), n, sampling, np.random.default_rng(seed)


def check_tokens(cfg, idx, name="idx", start=0, vocab=None):
    """Token ids ``(B, L)`` of any framework: integers in ``[0, V)`` (negative ids are
    refused, never wrapped around as indexing would), ``1 <= L`` and ``start + L <=
    max_len``. Inside a TensorFlow graph only the shape and dtype are checked. Returns
    the :class:`attnbook._checks.Host` description."""
    vocab = cfg.get("vocab_size") if vocab is None else vocab
    h = _checks.host(name, idx)
    _checks.check_shape(name, h, "(B, L)")
    _checks.check_ids(name, h, vocab, "token ids")
    length = h.shape[1]
    if length == 0:
        raise ValueError(
            f"{name} must hold at least one token per row, got shape {h.shape}"
        )
    if length is not None and start + length > cfg["max_len"]:
        at = f" after {start} cached tokens" if start else ""
        raise ValueError(
            f"{name} has {length} tokens{at}, more than max_len = {cfg['max_len']}"
        )
    return h


# --------------------------------------------------------------------------------------
# Beam search, one step, in NumPy (both twins call it, so they keep the same
# hypotheses).


def beam_step(scores, log_probs, finished, pad_id=0):
    """Extend ``K`` hypotheses per source by one token and keep the ``K`` best.

    Args:
        scores: ``(B, K)`` log-probabilities of the hypotheses so far (``-inf`` for
            beams not started yet).
        log_probs: ``(B, K, V)`` the model's log-probabilities of each hypothesis'
            next token.
        finished: ``(B, K)`` bool, the hypotheses that have produced EOS: they extend
            with ``pad_id`` at no cost, so each stays in the race as one candidate.
        pad_id: the token appended to finished hypotheses.

    Returns:
        ``(parent (B, K), token (B, K), scores (B, K))``: the beam each new hypothesis
        extends, its new token and its score, best first (ties go to the lower beam and
        token, so that both twins choose alike).
    """
    scores = np.asarray(scores, np.float64)
    log_probs = np.asarray(log_probs, np.float64)
    finished = np.asarray(finished, bool)
    b, k, v = log_probs.shape
    done = np.full(v, -np.inf)
    done[pad_id] = 0.0
    grown = np.where(finished[..., None], done, log_probs)
    cand = scores[..., None] + grown  # (B, K, V)
    flat = cand.reshape(b, k * v)
    top = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    return top // v, top % v, np.take_along_axis(flat, top, axis=1)


def check_beam(beam_size, max_len, bos_id, eos_id, vocab):
    beam_size = _checks.positive_int("beam_size", beam_size)
    max_len = _checks.positive_int("max_len", max_len)
    ids = []
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        value = _spec.check_integer(
            name, value, what=f"a target token id in [0, {vocab})"
        )
        if value >= vocab:
            raise ValueError(
                f"{name} must be a target token id in [0, {vocab}), got {value}"
            )
        ids.append(value)
    return beam_size, max_len, *ids


# --------------------------------------------------------------------------------------
# Checks of the encoder-decoder's inputs and of the training loops, shared by both
# twins.


def check_source(cfg, src, src_lengths):
    """``src (B, Lin)`` ids in ``[0, src_vocab)``, ``Lin <= max_len``; ``src_lengths
    (B,)`` integers in ``[1, Lin]`` (a source holds at least its EOS)."""
    s = check_tokens(cfg, src, "src", vocab=cfg["src_vocab"])
    n = _checks.host("src_lengths", src_lengths)
    _checks.check_shape("src_lengths", n, "(B,)")
    if n.dtype not in _checks.INTEGER_DTYPES:
        raise TypeError(f"src_lengths must be an integer array, got dtype {n.dtype}")
    if None not in (n.shape[0], s.shape[0]) and n.shape[0] != s.shape[0]:
        raise ValueError(
            f"src_lengths has {n.shape[0]} rows but src has {s.shape[0]}: one length "
            "per source"
        )
    if n.values is not None and n.values.size:
        lo, hi = n.values.min(), n.values.max()
        width = s.shape[1]
        if lo < 1 or (width is not None and hi > width):
            raise ValueError(
                f"src_lengths must lie in [1, Lin] = [1, {width}], got "
                f"{int(lo) if lo < 1 else int(hi)}"
            )
    return s


def check_target(cfg, tgt_in, src):
    """``tgt_in (B, Lout)``: ids in ``[0, tgt_vocab)``, at least one per row, ``Lout <=
    max_len``."""
    t = check_tokens(cfg, tgt_in, "tgt_in", vocab=cfg["tgt_vocab"])
    b = tuple(src.shape)[0]
    if None not in (t.shape[0], b) and t.shape[0] != b:
        raise ValueError(
            f"tgt_in has {t.shape[0]} rows but src has {b}: one target per source"
        )
    return t


def _schedule(steps, batch_size, lr, warmup, weight_decay, clip, seed, desc):
    _checks.count("steps", steps)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive("lr", lr)
    _checks.probability("warmup", warmup)
    _checks.positive("weight_decay", weight_decay, zero=True)
    _checks.positive("clip", clip, inf=True)
    _spec.check_integer("seed", seed)
    if desc is not None and not isinstance(desc, str):
        raise TypeError(f"desc must be a string or None, got {desc!r}")


def check_lm_training(
    cfg,
    ids,
    *,
    steps,
    batch_size,
    block_len,
    lr,
    warmup,
    weight_decay,
    clip,
    seed,
    valid_ids,
    eval_every,
    desc,
):
    """The arguments of both twins' GPT ``train``; returns ``(ids, block_len, valid_ids
    or None)`` (int64 NumPy)."""
    block_len = (
        cfg["max_len"]
        if block_len is None
        else _checks.positive_int("block_len", block_len)
    )
    if block_len > cfg["max_len"]:
        raise ValueError(
            f"block_len = {block_len} is more than max_len = {cfg['max_len']}"
        )
    arrays = []
    for name, x in (("ids", ids), ("valid_ids", valid_ids)):
        if x is None and name == "valid_ids":
            arrays.append(None)
            continue
        h = _checks.host(name, x)
        _checks.check_shape(name, h, "(N,)")
        _checks.check_ids(name, h, cfg["vocab_size"], "token ids")
        if h.shape[0] < block_len + 1:
            raise ValueError(
                f"{name} holds {h.shape[0]} tokens: too few for one window of "
                "block_len + 1 = "
                f"{block_len + 1} (the inputs and the next tokens)"
            )
        arrays.append(np.asarray(h.values, np.int64))
    _schedule(steps, batch_size, lr, warmup, weight_decay, clip, seed, desc)
    if eval_every is not None:
        _checks.positive_int("eval_every", eval_every)
        if valid_ids is None:
            raise ValueError("eval_every needs valid_ids to evaluate on")
    return arrays[0], block_len, arrays[1]


def lm_batches(n_tokens, block_len, batch_size, steps, seed):
    """Start offsets ``(steps, batch_size)`` of the training windows: window ``ids[s : s
    + block_len + 1]`` gives the inputs ``[:-1]`` and the next tokens ``[1:]``. Both
    twins draw them here, so they see the same text."""
    rng = np.random.default_rng([_spec.check_integer("seed", seed), 1])
    return rng.integers(0, n_tokens - block_len, size=(steps, batch_size))


def lm_windows(ids, block_len):
    """Consecutive non-overlapping windows of held-out text for evaluation: ``(x, y)``,
    each ``(N, block_len)``."""
    ids = np.asarray(ids, np.int64)
    n = (len(ids) - 1) // block_len
    x = ids[: n * block_len].reshape(n, block_len)
    y = ids[1 : n * block_len + 1].reshape(n, block_len)
    return x, y


def check_encdec_training(
    cfg,
    src,
    src_lengths,
    tgt,
    *,
    epochs,
    batch_size,
    lr,
    warmup,
    weight_decay,
    clip,
    seed,
    desc,
):
    """The arguments of both twins' encoder-decoder ``train``; returns ``(src,
    src_lengths, tgt)`` as int64 NumPy. ``tgt (N, Lout)`` starts with BOS and has at
    least one token to predict per row (``dates.encode_pairs``)."""
    from ..plotting import to_numpy

    check_source(cfg, src, src_lengths)
    src, src_lengths = (np.asarray(to_numpy(a), np.int64) for a in (src, src_lengths))
    if len(src) == 0:
        raise ValueError("src is empty: there is nothing to train on")
    h = _checks.host("tgt", tgt)
    _checks.check_shape("tgt", h, "(N, Lout)")
    if h.shape[0] != len(src):
        raise ValueError(
            f"tgt has {h.shape[0]} rows but src has {len(src)}: one target per source"
        )
    _checks.check_ids("tgt", h, cfg["tgt_vocab"], "target token ids")
    if h.shape[1] - 1 > cfg["max_len"]:
        raise ValueError(
            f"tgt has {h.shape[1]} tokens per row: the decoder reads "
            f"{h.shape[1] - 1}, more than "
            f"max_len = {cfg['max_len']}"
        )
    tgt = np.asarray(h.values, np.int64)
    lengths = (tgt != 0).sum(axis=1)
    if lengths.min() < 2:
        raise ValueError(
            f"tgt row {int(np.argmin(lengths))} has {lengths.min()} tokens before the "
            "padding; each "
            "row needs BOS and at least one token to predict "
            "(attnbook.datasets.dates.encode_pairs)"
        )
    _checks.count("epochs", epochs)
    _schedule(0, batch_size, lr, warmup, weight_decay, clip, seed, desc)
    largest = int(np.unique(lengths, return_counts=True)[1].max())
    if batch_size > largest:
        raise ValueError(
            f"batch_size = {batch_size} is more than the largest group of examples "
            "with one target "
            f"length ({largest}): no full batch could be drawn"
        )
    return src, src_lengths, tgt


def check_translation(cfg, texts, src_vocab, tgt_vocab, max_len, beam_size, batch_size):
    """The arguments of both twins' ``translate``; returns ``texts`` as a list of
    strings."""
    from ..datasets.dates import CharVocab

    texts = _checks.texts("texts", texts, single=False)
    for name, vocab, size in (
        ("src_vocab", src_vocab, cfg["src_vocab"]),
        ("tgt_vocab", tgt_vocab, cfg["tgt_vocab"]),
    ):
        if not isinstance(vocab, CharVocab):
            raise TypeError(f"{name} must be a CharVocab, got {type(vocab).__name__}")
        if len(vocab) != size:
            raise ValueError(
                f"{name} has {len(vocab)} symbols but the model was built for {size}"
            )
    max_len = _checks.positive_int("max_len", max_len)
    if max_len > cfg["max_len"]:
        raise ValueError(
            f"max_len = {max_len} is more than the model's max_len = {cfg['max_len']}"
        )
    longest = max((len(t) + 1 for t in texts), default=0)
    if longest > cfg["max_len"]:
        raise ValueError(
            f"a text has {longest - 1} characters: with its EOS more than max_len = "
            f"{cfg['max_len']}"
        )
    _checks.positive_int("beam_size", beam_size)
    _checks.positive_int("batch_size", batch_size)
    return texts


def check_block_call(cfg, memory, memory_mask, return_weights):
    """A decoder block (``cross=True``) needs a ``memory``; other blocks take none."""
    _spec.check_flag("return_weights", return_weights)
    if cfg["cross"] and memory is None:
        raise ValueError(
            "this block has a cross-attention (cross=True): pass the encoder's output "
            "as memory"
        )
    if not cfg["cross"] and (memory is not None or memory_mask is not None):
        raise ValueError(
            "memory and memory_mask need a block with cross-attention (cross=True)"
        )


def check_cache(cache, cfg):
    if not isinstance(cache, KVCache):
        raise TypeError(
            f"cache must be an attnbook.transformer.KVCache (model.new_cache()), got "
            f"{type(cache).__name__}"
        )
    if len(cache.keys) != cfg["num_layers"]:
        raise ValueError(
            f"cache has {len(cache.keys)} layers but the model has {cfg['num_layers']}"
        )


def check_lm_evaluation(cfg, ids, block_len, batch_size, max_windows):
    """The arguments of both twins' ``evaluate_lm``; returns the windows ``(x, y)``,
    each ``(N, block_len)``."""
    block_len = (
        cfg["max_len"]
        if block_len is None
        else _checks.positive_int("block_len", block_len)
    )
    if block_len > cfg["max_len"]:
        raise ValueError(
            f"block_len = {block_len} is more than max_len = {cfg['max_len']}"
        )
    h = _checks.host("ids", ids)
    _checks.check_shape("ids", h, "(N,)")
    _checks.check_ids("ids", h, cfg["vocab_size"], "token ids")
    if h.shape[0] < block_len + 1:
        raise ValueError(
            f"ids holds {h.shape[0]} tokens: too few for one window of block_len + 1 = "
            f"{block_len + 1}"
        )
    _checks.positive_int("batch_size", batch_size)
    x, y = lm_windows(h.values, block_len)
    if max_windows is not None:
        n = _checks.positive_int("max_windows", max_windows)
        x, y = x[:n], y[:n]
    return x, y


def check_text(name, text):
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string, got {type(text).__name__}")
    return [text]
