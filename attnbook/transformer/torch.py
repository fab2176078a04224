"""The Transformer of :mod:`attnbook.transformer` in PyTorch, built on attnbook's
``MultiHeadAttention``.

The twin of :mod:`attnbook.transformer.tensorflow`: same classes, constructor arguments,
parameter names, training and decoding functions (see :mod:`attnbook.transformer` for
the equations and the shared pieces). Models are built on the CPU; move them with
``.to(attnbook.devices.torch_device())``, and ``train_*`` / ``generate`` / ``translate``
follow the device of the model's parameters.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import _spec, seq2seq, transformer
from ..datasets.dates import CharVocab
from ..torch import (
    MultiHeadAttention,
    padding_mask,
    rotary_embedding,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)
from ..vit.torch import MLP, LayerNorm
from . import cache as _cache

__all__ = [
    "Block",
    "GPT",
    "EncoderDecoder",
    "train_lm",
    "evaluate_lm",
    "train_seq2seq",
    "translate",
    "evaluate",
    "alignments",
]


def _linear(x, w, b):
    return x @ w + b


def _split(x, heads):
    b, length, width = x.shape
    return x.view(b, length, heads, width // heads).transpose(1, 2)  # (B, heads, L, d)


class Block(torch.nn.Module):
    """A Transformer block: attnbook's ``MultiHeadAttention``, a GELU feed-forward
    network, residual connections and layer norms, pre-LN or post-LN (see
    :mod:`attnbook.transformer`).

    Args:
        d_model: width ``D`` of the tokens.
        num_heads: attention heads ``H`` (must divide ``D``).
        num_kv_heads: key/value heads ``Hkv`` of the self-attention (GQA; ``None``:
            ``H``).
        ffn_mult: the feed-forward network's hidden width is ``ffn_mult * D``.
        norm: ``"pre"`` (norm inside each residual branch) or ``"post"`` (after each
            addition).
        dropout: on the attention weights and on each sub-layer's output, in ``train()``
            mode.
        window: ``None`` or ``(left, right)``, the self-attention's window.
        rope: ``None`` or the RoPE base of the self-attention.
        cross: add a cross-attention sub-layer over a ``memory`` (a decoder block).
        seed: seed of the shared NumPy initialisation
            (:func:`attnbook.transformer.init_params`).
    """

    def __init__(
        self,
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
        super().__init__()
        self.config = cfg = transformer.block_config(
            d_model,
            num_heads,
            num_kv_heads=num_kv_heads,
            ffn_mult=ffn_mult,
            norm=norm,
            dropout=dropout,
            window=window,
            rope=rope,
            cross=cross,
            seed=seed,
        )
        d, h = cfg["d_model"], cfg["num_heads"]
        common = dict(
            num_kv_heads=cfg["num_kv_heads"], dropout=cfg["dropout"], seed=cfg["seed"]
        )
        self.attn_norm = LayerNorm(d)
        self.attn = MultiHeadAttention(
            d, h, window=cfg["window"], rope=cfg["rope"], **common
        )
        if cfg["cross"]:
            self.cross_norm = LayerNorm(d)
            self.cross = MultiHeadAttention(d, h, **common)
        self.ffn_norm = LayerNorm(d)
        self.ffn = MLP(
            d, cfg["ffn_mult"] * d, cfg["dropout"]
        )  # its output dropout included
        self.set_params(transformer.init_params(cfg))

    def _drop(self, x):
        return F.dropout(x, self.config["dropout"], self.training)

    def _residual(self, x, norm, sublayer):
        if self.config["norm"] == "pre":
            return x + sublayer(norm(x))  # input to output: an identity path
        return norm(x + sublayer(x))  # every path passes through the norm

    def forward(
        self,
        x,
        mask=None,
        *,
        causal=False,
        memory=None,
        memory_mask=None,
        return_weights=False,
    ):
        """``x (B, L, D)`` -> ``(B, L, D)``, and the weights ``{"self": (B, H, L, L),
        "cross": (B, H, L, Lm)}`` (or None).

        ``mask`` and ``causal`` restrict the self-attention; ``memory (B, Lm, D)`` is
        what a decoder block's cross-attention reads, ``memory_mask`` broadcastable to
        ``(B, H, L, Lm)``.
        """
        transformer.check_block_call(self.config, memory, memory_mask, return_weights)
        weights = {} if return_weights else None

        def attend(layer, name, kv, kv_mask, is_causal):
            def sublayer(h):
                kv_in = h if kv is None else kv
                if not return_weights:
                    return self._drop(layer(h, kv_in, mask=kv_mask, causal=is_causal))
                out, weights[name] = layer(
                    h, kv_in, mask=kv_mask, causal=is_causal, return_weights=True
                )
                return self._drop(out)

            return sublayer

        x = self._residual(
            x, self.attn_norm, attend(self.attn, "self", None, mask, causal)
        )
        if self.config["cross"]:
            x = self._residual(
                x,
                self.cross_norm,
                attend(self.cross, "cross", memory, memory_mask, False),
            )
        x = self._residual(x, self.ffn_norm, self.ffn)
        return x, weights

    def decode(self, x, cache, layer):
        """Causal self-attention of new tokens ``x (B, Lq, D)`` against the keys and
        values of the tokens before them, kept in ``cache`` (an
        :class:`attnbook.transformer.KVCache`) for layer ``layer``; the new tokens sit
        at positions ``cache.position ..``. Returns ``(B, Lq, D)``; adds the new keys
        and values to the cache.
        """
        cfg, p = self.config, self.attn.params()
        heads = cfg["num_heads"]
        kv_heads = cfg["num_kv_heads"] or heads

        def attention(h):
            q = _split(_linear(h, p["w_q"], p["b_q"]), heads)  # (B, H, Lq, d)
            k = _split(_linear(h, p["w_k"], p["b_k"]), kv_heads)  # (B, Hkv, Lq, d)
            v = _split(_linear(h, p["w_v"], p["b_v"]), kv_heads)  # (B, Hkv, Lq, d)
            if cfg["rope"] is not None:  # rotated once, at absolute positions
                pos = torch.arange(q.shape[-2], device=q.device) + cache.position
                q = rotary_embedding(q, pos, base=cfg["rope"])
                k = rotary_embedding(k, pos, base=cfg["rope"])
            if cache.keys[layer] is not None:
                k = torch.cat([cache.keys[layer], k], dim=-2)  # (B, Hkv, C + Lq, d)
                v = torch.cat([cache.values[layer], v], dim=-2)
            # bottom_right: the Lq new queries are the last Lq of the C + Lq positions.
            out = scaled_dot_product_attention(
                q,
                k,
                v,
                causal=True,
                align="bottom_right",
                window=cfg["window"],
                enable_gqa=kv_heads != heads,
            )  # (B, H, Lq, d)
            cache.store(layer, k, v)  # Hkv heads only; a window drops old keys
            b, _, lq, d = out.shape
            out = out.transpose(1, 2).reshape(b, lq, heads * d)  # (B, Lq, D)
            return _linear(out, p["w_o"], p["b_o"])

        x = self._residual(x, self.attn_norm, attention)
        return self._residual(x, self.ffn_norm, self.ffn)

    def get_params(self):
        """The parameters as a dict of NumPy arrays, named as
        :func:`attnbook.transformer.param_shapes`."""
        return _numpy(self)

    def set_params(self, params):
        """Load a dict of NumPy arrays (from either twin's ``get_params``); checks names
        and shapes."""
        _load(self, params)


# Module attribute names -> the names of the shared parameter dict (the rest are the
# same).
_RENAME = {
    "embed.weight": "tok_embed",
    "embed.pos": "pos_embed",
    "src.weight": "src_embed",
    "src.pos": "src_pos_embed",
    "tgt.weight": "tgt_embed",
    "tgt.pos": "tgt_pos_embed",
}


def _named(model):
    return {_RENAME.get(name, name): p for name, p in model.named_parameters()}


def _numpy(model):
    own = {k: p.detach().cpu().numpy().copy() for k, p in _named(model).items()}
    return {name: own[name] for name in transformer.param_shapes(model.config)}


@torch.no_grad()
def _load(model, params):
    new = transformer.check_params(model.config, params)
    for name, p in _named(model).items():
        p.copy_(torch.as_tensor(new[name], device=p.device))


class TokenEmbedding(torch.nn.Module):
    """Token embeddings scaled by ``sqrt(D)``, plus learned or sinusoidal positions (or
    none, for RoPE)."""

    def __init__(self, vocab, d_model, max_len, pos, dropout):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(vocab, d_model))
        if pos == "learned":
            self.pos = torch.nn.Parameter(torch.zeros(max_len, d_model))
        elif pos == "sinusoidal":
            self.register_buffer(
                "pos",
                sinusoidal_positional_encoding(max_len, d_model),
                persistent=False,
            )
        else:
            self.pos = None
        self.scale, self.dropout = math.sqrt(d_model), dropout

    def forward(self, ids, start=0):
        x = F.embedding(ids, self.weight) * self.scale  # (B, L, D)
        if self.pos is not None:
            x = x + self.pos[start : start + ids.shape[1]]  # (L, D), broadcast
        return F.dropout(x, self.dropout, self.training)

    def logits(self, h):
        return h @ self.weight.T  # tied: (B, L, V)


def _ids(model, x):
    return torch.as_tensor(
        np.asarray(x) if isinstance(x, (list, tuple)) else x, device=model.device
    ).long()


class GPT(torch.nn.Module):
    """A decoder-only Transformer language model (Radford et al., 2018, 2019).

    Args:
        vocab_size: ``V``.
        d_model, num_heads, num_layers: width ``D``, heads ``H`` per block, number of
            blocks.
        max_len: the longest sequence (prompt and generated tokens together).
        num_kv_heads: key/value heads (``None``: ``H``, multi-head; ``1``: multi-query;
            between: grouped-query attention).
        ffn_mult, norm, dropout: as :class:`Block`.
        pos: ``"rope"`` (rotary queries and keys), ``"learned"`` or ``"sinusoidal"``
            (added to the token embeddings).
        window: ``None`` or ``w``: each token attends to the ``w`` most recent tokens
            (itself included).
        seed: seed of the shared NumPy initialisation.

    Called on token ids ``(B, L)`` it returns next-token logits ``(B, L, V)``: position
    ``t`` sees tokens ``0..t`` only.
    """

    def __init__(
        self,
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
        super().__init__()
        self.config = cfg = transformer.gpt_config(
            vocab_size,
            d_model,
            num_heads,
            num_layers,
            max_len,
            num_kv_heads=num_kv_heads,
            ffn_mult=ffn_mult,
            pos=pos,
            norm=norm,
            window=window,
            dropout=dropout,
            seed=seed,
        )
        d = cfg["d_model"]
        self.embed = TokenEmbedding(
            cfg["vocab_size"], d, cfg["max_len"], cfg["pos"], cfg["dropout"]
        )
        self.blocks = torch.nn.ModuleList(
            Block(d, cfg["num_heads"], **transformer.block_kwargs(cfg, i))
            for i in range(cfg["num_layers"])
        )
        self.norm = LayerNorm(d) if cfg["norm"] == "pre" else None
        self.set_params(transformer.init_params(cfg))

    @property
    def device(self):
        return self.embed.weight.device

    def _head(self, x):
        return self.embed.logits(x if self.norm is None else self.norm(x))

    def forward(self, idx, return_weights=False):
        """Logits ``(B, L, V)`` of token ids ``idx (B, L)``, ``1 <= L <= max_len``; with
        ``return_weights=True`` also each block's attention weights ``(B, H, L, L)``."""
        transformer.check_tokens(self.config, idx)
        x = self.embed(_ids(self, idx))  # (B, L, D)
        weights = []
        for block in self.blocks:
            x, w = block(x, causal=True, return_weights=return_weights)
            weights.append(w and w["self"])
        logits = self._head(x)
        return (logits, weights) if return_weights else logits

    def new_cache(self):
        """An empty :class:`attnbook.transformer.KVCache` for :meth:`decode`."""
        w = self.config["window"]
        return transformer.KVCache(
            self.config["num_layers"], keep=None if w is None else w - 1
        )

    def decode(self, idx, cache):
        """Logits ``(B, Lq, V)`` of new tokens ``idx (B, Lq)`` that follow the
        ``cache.position`` tokens whose keys and values ``cache`` holds (an empty cache:
        a prompt); updates the cache."""
        transformer.check_cache(cache, self.config)
        transformer.check_tokens(self.config, idx, start=cache.position)
        x = self.embed(_ids(self, idx), start=cache.position)
        for i, block in enumerate(self.blocks):
            x = block.decode(x, cache, i)
        cache.position += x.shape[1]
        return self._head(x)

    @torch.no_grad()
    def generate(
        self,
        idx,
        max_new_tokens,
        *,
        temperature=0.0,
        top_k=None,
        top_p=None,
        use_cache=True,
        seed=None,
    ):
        """Continue each row of ``idx (B, L)`` by ``max_new_tokens`` tokens; returns
        ``(B, L + n)`` int64 ids.

        ``temperature=0`` is greedy decoding; otherwise each token is drawn from
        :func:`attnbook.transformer.next_token_distribution` (``temperature``,
        ``top_k``, ``top_p``) with a NumPy generator seeded by ``seed``, so that a seed
        draws the same tokens with and without the KV cache, and in both twins.
        ``use_cache=False`` runs the whole sequence through the model for every new
        token: the reference.
        """
        ids, n, sampling, rng = transformer.check_generate(
            self.config, idx, max_new_tokens, temperature, top_k, top_p, use_cache, seed
        )
        was_training = self.training
        self.eval()
        cache = self.new_cache() if use_cache else None
        for step in range(n):
            if cache is None:
                logits = self(ids)[:, -1]  # (B, V), from scratch
            else:
                new = ids if step == 0 else ids[:, -1:]  # the prompt, then one token
                logits = self.decode(new, cache)[:, -1]
            nxt = transformer.sample_next(logits.float().cpu().numpy(), rng, *sampling)
            ids = np.concatenate([ids, nxt[:, None]], axis=1)
        self.train(was_training)
        return torch.as_tensor(ids, device=self.device)

    def get_params(self):
        """The parameters as a dict of NumPy arrays, named as
        :func:`attnbook.transformer.param_shapes`."""
        return _numpy(self)

    def set_params(self, params):
        """Load a dict of NumPy arrays (from either twin's ``get_params``); checks names
        and shapes."""
        _load(self, params)


class EncoderDecoder(torch.nn.Module):
    """The encoder-decoder Transformer of Vaswani et al. (2017), for token sequences
    such as the characters of :mod:`attnbook.datasets.dates` (PAD = 0).

    Args:
        src_vocab, tgt_vocab: vocabulary sizes; the target embedding is tied to the
            output layer.
        d_model, num_heads: as :class:`Block`.
        num_layers: encoder blocks, and as many decoder blocks.
        max_len: the longest source and the longest target.
        num_kv_heads, ffn_mult, norm, dropout, seed: as :class:`GPT`.
        pos: ``"sinusoidal"`` (Vaswani et al.) or ``"learned"`` positions.

    ``model(src, src_lengths, tgt_in)`` gives teacher-forced logits ``(B, Lout, Vt)``:
    the encoder reads the source (self-attention that ignores padding), the decoder its
    own past (causal self-attention) and the encoder's output (cross-attention).
    """

    def __init__(
        self,
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
        super().__init__()
        self.config = cfg = transformer.encdec_config(
            src_vocab,
            tgt_vocab,
            d_model,
            num_heads,
            num_layers,
            max_len,
            num_kv_heads=num_kv_heads,
            ffn_mult=ffn_mult,
            pos=pos,
            norm=norm,
            dropout=dropout,
            seed=seed,
        )
        d, h, n = cfg["d_model"], cfg["num_heads"], cfg["num_layers"]
        self.src = TokenEmbedding(
            cfg["src_vocab"], d, cfg["max_len"], cfg["pos"], cfg["dropout"]
        )
        self.tgt = TokenEmbedding(
            cfg["tgt_vocab"], d, cfg["max_len"], cfg["pos"], cfg["dropout"]
        )
        self.encoder = torch.nn.ModuleList(
            Block(d, h, **transformer.block_kwargs(cfg, i, "encoder")) for i in range(n)
        )
        self.encoder_norm = LayerNorm(d) if cfg["norm"] == "pre" else None
        self.decoder = torch.nn.ModuleList(
            Block(d, h, **transformer.block_kwargs(cfg, i, "decoder")) for i in range(n)
        )
        self.decoder_norm = LayerNorm(d) if cfg["norm"] == "pre" else None
        self.set_params(transformer.init_params(cfg))

    @property
    def device(self):
        return self.src.weight.device

    def encode(self, src, src_lengths):
        """``src (B, Lin)`` ids, ``src_lengths (B,)`` -> ``memory (B, Lin, D)`` and the
        key mask ``(B, 1, 1, Lin)`` (True on real positions) of the attention over
        it."""
        transformer.check_source(self.config, src, src_lengths)
        src = _ids(self, src)
        lengths = _ids(self, src_lengths)
        mask = padding_mask(lengths, src.shape[1])[:, None, None, :]  # (B, 1, 1, Lin)
        x = self.src(src)
        for block in self.encoder:
            x, _ = block(x, mask)
        return (x if self.encoder_norm is None else self.encoder_norm(x)), mask

    def decode(self, tgt_in, memory, memory_mask, return_weights=False):
        """Logits ``(B, Lout, Vt)`` of the decoder inputs ``tgt_in (B, Lout)`` (BOS
        first); with ``return_weights=True`` also each decoder block's cross-attention
        weights ``(B, H, Lout, Lin)``."""
        cfg = self.config
        transformer.check_tokens(cfg, tgt_in, "tgt_in", vocab=cfg["tgt_vocab"])
        y = self.tgt(_ids(self, tgt_in))
        cross = []
        for block in self.decoder:
            y, w = block(
                y,
                causal=True,
                memory=memory,
                memory_mask=memory_mask,
                return_weights=return_weights,
            )
            cross.append(w and w["cross"])
        y = y if self.decoder_norm is None else self.decoder_norm(y)
        logits = self.tgt.logits(y)  # tied: (B, Lout, Vt)
        return (logits, cross) if return_weights else logits

    def forward(self, src, src_lengths, tgt_in, return_weights=False):
        """Teacher forcing: logits ``(B, Lout, Vt)`` (and the cross-attention
        weights)."""
        transformer.check_target(self.config, tgt_in, src)
        memory, mask = self.encode(src, src_lengths)
        return self.decode(tgt_in, memory, mask, return_weights)

    @torch.no_grad()
    def greedy_decode(self, src, src_lengths, max_len, bos_id=1, eos_id=2):
        """The most likely token at each step, fed back: ``tokens (B, max_len)`` int64
        (rows go on after their EOS, the batch runs in lockstep)."""
        return self.beam_search(
            src, src_lengths, max_len, beam_size=1, bos_id=bos_id, eos_id=eos_id
        )[0]

    @torch.no_grad()
    def beam_search(
        self, src, src_lengths, max_len, *, beam_size=4, bos_id=1, eos_id=2
    ):
        """Keep the ``beam_size`` most likely partial translations at each step
        (:func:`attnbook.transformer.beam_step`); returns the best ``tokens (B,
        max_len)`` int64 and its log-probability ``(B,)``. ``beam_size=1`` is greedy
        decoding."""
        k, max_len, bos_id, eos_id = transformer.check_beam(
            beam_size, max_len, bos_id, eos_id, self.config["tgt_vocab"]
        )
        was_training = self.training
        self.eval()
        memory, mask = self.encode(src, src_lengths)
        b = memory.shape[0]
        memory, mask = (
            memory.repeat_interleave(k, 0),
            mask.repeat_interleave(k, 0),
        )  # (B*K, ...)
        tokens = np.full((b, k, 1), bos_id, np.int64)
        scores = np.where(np.arange(k) == 0, 0.0, -np.inf) * np.ones(
            (b, 1)
        )  # one live beam
        finished = np.zeros((b, k), bool)
        for _ in range(max_len):
            logits = self.decode(tokens.reshape(b * k, -1), memory, mask)[
                :, -1
            ]  # (B*K, V)
            logp = F.log_softmax(logits.float(), -1).cpu().numpy().reshape(b, k, -1)
            parent, token, scores = transformer.beam_step(scores, logp, finished)
            tokens = np.concatenate(
                [np.take_along_axis(tokens, parent[..., None], 1), token[..., None]],
                axis=-1,
            )
            finished = np.take_along_axis(finished, parent, 1) | (token == eos_id)
            if k > 1 and finished.all():
                break
        self.train(was_training)
        best = tokens[np.arange(b), scores.argmax(1), 1:]
        best = np.pad(
            best, ((0, 0), (0, max_len - best.shape[1]))
        )  # PAD after an early stop
        return torch.as_tensor(best, device=self.device), scores.max(1)

    def get_params(self):
        """The parameters as a dict of NumPy arrays (see
        :func:`attnbook.transformer.param_shapes`)."""
        return _numpy(self)

    def set_params(self, params):
        """Load a dict of NumPy arrays (from either twin's ``get_params``); checks names
        and shapes."""
        _load(self, params)


# --------------------------------------------------------------------------------------
# Training and evaluation.


def _check_model(model, cls):
    if not isinstance(model, cls):
        raise TypeError(
            f"model must be an attnbook.transformer.torch.{cls.__name__}, got "
            f"{type(model).__name__}"
        )


def _optimizer(model, lr, weight_decay):
    # eps as Keras' AdamW is given in the TensorFlow twin, so both take the same steps.
    return torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay, eps=1e-8
    )


def _step(model, opt, loss, clip, lr):
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return norm


def train_lm(
    model,
    ids,
    *,
    steps=300,
    batch_size=32,
    block_len=None,
    lr=3e-3,
    warmup=0.1,
    weight_decay=0.0,
    clip=1.0,
    seed=0,
    valid_ids=None,
    eval_every=None,
    desc="GPT",
    cache=False,
):
    """Train a :class:`GPT` on next-token prediction with AdamW, warm-up and cosine
    decay.

    Args:
        model: a :class:`GPT` (on the device to train on).
        ids: ``(N,)`` integer token ids of the training text; each step reads
            ``batch_size`` random windows of ``block_len + 1`` tokens
            (:func:`attnbook.transformer.lm_batches`).
        steps, batch_size, lr, weight_decay: the usual; ``block_len`` defaults to
            ``max_len``.
        warmup: the share of the steps with a linearly rising learning rate (0: none).
        clip: gradients are clipped to this global norm (``inf``: not clipped).
        seed: seeds the windows and dropout.
        valid_ids, eval_every: held-out ids, scored every ``eval_every`` steps (first 32
            windows).
        desc: label of the tqdm bar (None: no bar).
        cache: if True, load the result of an identical earlier run when there is one
            (:func:`attnbook.transformer.cache.cached`).

    Returns:
        ``{"loss": [per step], "grad_norm": [per step, before clipping], "valid_step":
        [...], "valid_loss": [...], "seconds": wall time, "cached": bool}``.
    """
    _check_model(model, GPT)
    if _spec.check_flag("cache", cache):
        return _cache.cached(
            train_lm,
            model,
            ids,
            steps=steps,
            batch_size=batch_size,
            block_len=block_len,
            lr=lr,
            warmup=warmup,
            weight_decay=weight_decay,
            clip=clip,
            seed=seed,
            valid_ids=valid_ids,
            eval_every=eval_every,
            desc=desc,
        )
    ids, block_len, valid = transformer.check_lm_training(
        model.config,
        ids,
        steps=steps,
        batch_size=batch_size,
        block_len=block_len,
        lr=lr,
        warmup=warmup,
        weight_decay=weight_decay,
        clip=clip,
        seed=seed,
        valid_ids=valid_ids,
        eval_every=eval_every,
        desc=desc,
    )
    device, vocab = model.device, model.config["vocab_size"]
    torch.manual_seed(seed)
    opt = _optimizer(model, lr, weight_decay)
    data = torch.as_tensor(ids, device=device)
    span = torch.arange(block_len + 1, device=device)
    starts = torch.as_tensor(
        transformer.lm_batches(len(ids), block_len, batch_size, steps, seed),
        device=device,
    )
    history = {"loss": [], "grad_norm": [], "valid_step": [], "valid_loss": []}
    losses, norms = [], []
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=desc is None, mininterval=2.0, ncols=80)
    for step in bar:
        window = data[starts[step][:, None] + span]  # (B, block_len + 1)
        logits = model(window[:, :-1])  # (B, block_len, V)
        loss = F.cross_entropy(logits.reshape(-1, vocab), window[:, 1:].reshape(-1))
        norms.append(
            _step(
                model,
                opt,
                loss,
                clip,
                transformer.learning_rate(step, steps, lr, warmup),
            ).detach()
        )
        losses.append(loss.detach())
        if eval_every and (step + 1) % eval_every == 0:
            history["valid_step"].append(step + 1)
            history["valid_loss"].append(
                evaluate_lm(model, valid, block_len, max_windows=32)
            )
            model.train()
            bar.set_postfix(
                refresh=False,
                loss=f"{losses[-1].item():.3f}",
                valid=f"{history['valid_loss'][-1]:.3f}",
            )
    bar.close()
    model.eval()
    history["loss"] = torch.stack(losses).tolist() if losses else []
    history["grad_norm"] = torch.stack(norms).tolist() if norms else []
    history["seconds"] = time.perf_counter() - start
    return history


@torch.no_grad()
def evaluate_lm(model, ids, block_len=None, *, batch_size=32, max_windows=None):
    """Mean next-token cross-entropy (nats per token) over consecutive windows of
    ``ids`` (:func:`attnbook.transformer.lm_windows`), in eval mode; the first
    ``max_windows`` only if given."""
    _check_model(model, GPT)
    x, y = transformer.check_lm_evaluation(
        model.config, ids, block_len, batch_size, max_windows
    )
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = (
            torch.as_tensor(a[i : i + batch_size], device=model.device) for a in (x, y)
        )
        logits = model(xb)
        total += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum"
        ).item()
    model.train(was_training)
    return total / y.size


def train_seq2seq(
    model,
    src,
    src_lengths,
    tgt,
    *,
    epochs=3,
    batch_size=64,
    lr=1e-3,
    warmup=0.1,
    weight_decay=0.0,
    clip=1.0,
    seed=0,
    desc="Transformer",
    cache=False,
):
    """Teacher-forced training of an :class:`EncoderDecoder` with AdamW, warm-up and
    cosine decay, cross-entropy over the non-PAD target tokens, and the batches of
    :func:`attnbook.seq2seq.epoch_batches` (grouped by target length).

    ``src, src_lengths, tgt`` are NumPy arrays from
    ``attnbook.datasets.dates.encode_pairs``; the other arguments are those of
    :func:`train_lm`. Returns ``{"loss": [per step], "seconds": wall time, "cached":
    bool}``.
    """
    _check_model(model, EncoderDecoder)
    if _spec.check_flag("cache", cache):
        return _cache.cached(
            train_seq2seq,
            model,
            src,
            src_lengths,
            tgt,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            warmup=warmup,
            weight_decay=weight_decay,
            clip=clip,
            seed=seed,
            desc=desc,
        )
    src, src_lengths, tgt = transformer.check_encdec_training(
        model.config,
        src,
        src_lengths,
        tgt,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup=warmup,
        weight_decay=weight_decay,
        clip=clip,
        seed=seed,
        desc=desc,
    )
    steps = seq2seq.training_batches(src_lengths, tgt, batch_size, epochs, seed)
    torch.manual_seed(seed)
    opt = _optimizer(model, lr, weight_decay)
    device = model.device
    src_t, len_t, tgt_t = (
        torch.as_tensor(a, device=device) for a in (src, src_lengths, tgt)
    )
    losses, start = [], time.perf_counter()
    model.train()
    bar = tqdm(steps, desc=desc, disable=desc is None, mininterval=2.0, ncols=80)
    for i, (idx, src_width, tgt_width) in enumerate(bar):
        idx = torch.as_tensor(idx, device=device)
        s, n, t = src_t[idx, :src_width], len_t[idx], tgt_t[idx, :tgt_width]
        logits = model(s, n, t[:, :-1])  # predict t[:, 1:]
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            t[:, 1:].reshape(-1),
            ignore_index=CharVocab.PAD,
        )
        _step(
            model, opt, loss, clip, transformer.learning_rate(i, len(steps), lr, warmup)
        )
        losses.append(loss.detach())
    bar.close()
    model.eval()
    return {
        "loss": torch.stack(losses).tolist() if losses else [],
        "seconds": time.perf_counter() - start,
    }


def translate(
    model, texts, src_vocab, tgt_vocab, *, max_len=24, beam_size=1, batch_size=500
):
    """Translations of ``texts`` (a list of strings): greedy with ``beam_size=1``, else
    beam search."""
    _check_model(model, EncoderDecoder)
    texts = transformer.check_translation(
        model.config, texts, src_vocab, tgt_vocab, max_len, beam_size, batch_size
    )
    out = []
    for i in range(0, len(texts), batch_size):
        src, lengths = src_vocab.encode_batch(texts[i : i + batch_size])
        tokens, _ = model.beam_search(
            src,
            lengths,
            max_len,
            beam_size=beam_size,
            bos_id=tgt_vocab.BOS,
            eos_id=tgt_vocab.EOS,
        )
        out += tgt_vocab.decode_batch(tokens.cpu().numpy())
    return out


def evaluate(model, pairs, src_vocab, tgt_vocab, **kwargs):
    """Exact-match accuracy of the translations of ``pairs`` (``DatePair`` or ``(source,
    target)``)."""
    sources, targets = seq2seq.check_pairs(pairs)
    if not sources:
        raise ValueError("pairs is empty: an accuracy over no example is undefined")
    return seq2seq.exact_match(
        translate(model, sources, src_vocab, tgt_vocab, **kwargs), targets
    )


@torch.no_grad()
def alignments(model, text, prediction, src_vocab, tgt_vocab):
    """The cross-attention weights of each decoder block while it writes ``prediction``
    for ``text``: ``(num_layers, H, len(prediction) + 1, len(text) + 1)`` NumPy (the ``+
    1`` are the EOS)."""
    _check_model(model, EncoderDecoder)
    src, lengths = src_vocab.encode_batch(transformer.check_text("text", text))
    tgt_in, _ = tgt_vocab.encode_batch(
        transformer.check_text("prediction", prediction), bos=True, eos=False
    )
    was_training = model.training
    model.eval()
    _, weights = model(src, lengths, tgt_in, return_weights=True)
    model.train(was_training)
    return np.stack([w[0].cpu().numpy() for w in weights])
