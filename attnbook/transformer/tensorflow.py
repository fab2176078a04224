"""The Transformer of :mod:`attnbook.transformer` in TensorFlow / Keras 3, built on
attnbook's ``MultiHeadAttention``.

The twin of :mod:`attnbook.transformer.torch`: same classes, constructor arguments,
parameter names, training and decoding functions (see :mod:`attnbook.transformer` for
the equations and the shared pieces). The training steps are ``tf.function``s; decoding
runs eagerly, one step at a time, with the sampling and beam bookkeeping in NumPy as in
the PyTorch twin.
"""

from __future__ import annotations

import contextlib
import math
import time

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from .. import _spec, seq2seq, transformer
from ..datasets.dates import CharVocab
from ..tensorflow import (
    MultiHeadAttention,
    padding_mask,
    rotary_embedding,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)
from ..vit.tensorflow import MLP, LayerNorm
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
    return tf.tensordot(x, w, axes=1) + b


def _split(x, heads):
    b, length = tf.shape(x)[0], tf.shape(x)[1]
    x = tf.reshape(x, (b, length, heads, x.shape[-1] // heads))
    return tf.transpose(x, (0, 2, 1, 3))  # (B, heads, L, d)


@contextlib.contextmanager
def _plain_errors():
    """A TypeError/ValueError raised inside a ``call`` leaves Keras unreworded, so that
    it reads as in the PyTorch twin."""
    try:
        yield
    except (TypeError, ValueError) as err:
        err._keras_call_info_injected = True  # Keras' marker for "already annotated"
        raise


class Block(keras.layers.Layer):
    """A Transformer block: attnbook's ``MultiHeadAttention``, a GELU feed-forward
    network, residual connections and layer norms, pre-LN or post-LN. Arguments as
    :class:`attnbook.transformer.torch.Block`."""

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
        **kwargs,
    ):
        cfg = transformer.block_config(
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
        super().__init__(**kwargs)
        self._cfg = cfg
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
        self.drop = keras.layers.Dropout(cfg["dropout"])
        self.set_params(transformer.init_params(cfg))

    @property
    def config(self):
        return dict(self._cfg)

    def _residual(self, x, norm, sublayer):
        if self._cfg["norm"] == "pre":
            return x + sublayer(norm(x))  # input to output: an identity path
        return norm(x + sublayer(x))  # every path passes through the norm

    def __call__(
        self,
        x,
        mask=None,
        *,
        causal=False,
        memory=None,
        memory_mask=None,
        return_weights=False,
        training=False,
    ):
        # Checked here, before Keras wraps `call`: the PyTorch twin's errors, unchanged.
        # The mask travels as `attention_mask`: Keras reads an argument named `mask` as
        # a padding mask of its own and attaches it to the outputs.
        transformer.check_block_call(self._cfg, memory, memory_mask, return_weights)
        return super().__call__(
            x,
            attention_mask=mask,
            causal=causal,
            memory=memory,
            memory_mask=memory_mask,
            return_weights=return_weights,
            training=training,
        )

    def call(
        self,
        x,
        attention_mask=None,
        causal=False,
        memory=None,
        memory_mask=None,
        return_weights=False,
        training=False,
    ):
        """``x (B, L, D)`` -> ``(B, L, D)``, and ``{"self": (B, H, L, L), "cross": (B,
        H, L, Lm)}`` weights (or None), as the PyTorch twin's ``forward``
        (``attention_mask`` is its ``mask``)."""
        with _plain_errors():
            return self._forward(
                x, attention_mask, causal, memory, memory_mask, return_weights, training
            )

    def _forward(self, x, mask, causal, memory, memory_mask, return_weights, training):
        weights = {} if return_weights else None

        def attend(layer, name, kv, kv_mask, is_causal):
            def sublayer(h):
                kv_in = h if kv is None else kv
                res = layer(
                    h,
                    key=kv_in,
                    mask=kv_mask,
                    causal=is_causal,
                    return_weights=return_weights,
                    training=training,
                )
                if return_weights:
                    res, weights[name] = res
                return self.drop(res, training=training)

            return sublayer

        x = self._residual(
            x, self.attn_norm, attend(self.attn, "self", None, mask, causal)
        )
        if self._cfg["cross"]:
            x = self._residual(
                x,
                self.cross_norm,
                attend(self.cross, "cross", memory, memory_mask, False),
            )
        x = self._residual(x, self.ffn_norm, lambda h: self.ffn(h, training=training))
        return x, weights

    def decode(self, x, cache, layer):
        """Causal self-attention of new tokens ``x (B, Lq, D)`` against the cached keys
        and values of layer ``layer``, as the PyTorch twin's ``decode``: ``(B, Lq, D)``.
        """
        cfg, p = self._cfg, self.attn.params()
        heads = cfg["num_heads"]
        kv_heads = cfg["num_kv_heads"] or heads

        def attention(h):
            q = _split(_linear(h, p["w_q"], p["b_q"]), heads)  # (B, H, Lq, d)
            k = _split(_linear(h, p["w_k"], p["b_k"]), kv_heads)  # (B, Hkv, Lq, d)
            v = _split(_linear(h, p["w_v"], p["b_v"]), kv_heads)
            if cfg["rope"] is not None:  # rotated once, at absolute positions
                pos = tf.range(q.shape[-2]) + cache.position
                q = rotary_embedding(q, pos, base=cfg["rope"])
                k = rotary_embedding(k, pos, base=cfg["rope"])
            if cache.keys[layer] is not None:
                k = tf.concat([cache.keys[layer], k], axis=-2)  # (B, Hkv, C + Lq, d)
                v = tf.concat([cache.values[layer], v], axis=-2)
            out = scaled_dot_product_attention(
                q,
                k,
                v,
                causal=True,
                align="bottom_right",
                window=cfg["window"],
                enable_gqa=kv_heads != heads,
            )  # (B, H, Lq, d)
            cache.store(layer, k, v)
            out = tf.transpose(out, (0, 2, 1, 3))  # (B, Lq, H, d)
            out = tf.reshape(out, (tf.shape(out)[0], tf.shape(out)[1], cfg["d_model"]))
            return _linear(out, p["w_o"], p["b_o"])

        x = self._residual(x, self.attn_norm, attention)
        return self._residual(x, self.ffn_norm, lambda h: self.ffn(h, training=False))

    def _variables(self):
        out = {}
        for part in ("attn_norm", "cross_norm", "ffn_norm", "ffn"):
            if hasattr(self, part):
                out.update(
                    {
                        f"{part}.{k}": v
                        for k, v in getattr(self, part).named_variables().items()
                    }
                )
        return out

    def _attention_layers(self):
        return {
            "attn": self.attn,
            **({"cross": self.cross} if self._cfg["cross"] else {}),
        }

    def get_params(self):
        """The parameters as a dict of NumPy arrays, named as
        :func:`attnbook.transformer.param_shapes`."""
        return _get(self, self._cfg)

    def set_params(self, params):
        """Load a dict of NumPy arrays (from either twin's ``get_params``); checks names
        and shapes."""
        _set(self, self._cfg, params)


def _get(layer, cfg, prefix=""):
    out = {prefix + k: v.numpy().copy() for k, v in layer._variables().items()}
    for name, attn in layer._attention_layers().items():
        out.update({f"{prefix}{name}.{k}": v for k, v in attn.get_params().items()})
    if cfg is not None:
        return {name: out[name] for name in transformer.param_shapes(cfg)}
    return out


def _set(layer, cfg, params, prefix=""):
    new = transformer.check_params(cfg, params) if cfg is not None else params
    for name, var in layer._variables().items():
        var.assign(new[prefix + name])
    for name, attn in layer._attention_layers().items():
        head = f"{prefix}{name}."
        attn.set_params(
            {k[len(head) :]: v for k, v in new.items() if k.startswith(head)}
        )


class TokenEmbedding(keras.layers.Layer):
    """Token embeddings scaled by ``sqrt(D)``, plus learned or sinusoidal positions (or
    none, for RoPE)."""

    def __init__(self, vocab, d_model, max_len, pos, dropout, **kwargs):
        super().__init__(**kwargs)
        self.weight = self.add_weight(
            name="weight", shape=(vocab, d_model), initializer="zeros"
        )
        if pos == "learned":
            self.pos = self.add_weight(
                name="pos", shape=(max_len, d_model), initializer="zeros"
            )
        elif pos == "sinusoidal":
            self.pos = sinusoidal_positional_encoding(max_len, d_model)  # a constant
        else:
            self.pos = None
        self.learned = pos == "learned"
        self.scale = math.sqrt(d_model)
        self.drop = keras.layers.Dropout(dropout)
        self.built = True

    def call(self, ids, start=0, training=False):
        x = tf.gather(self.weight, ids) * self.scale  # (B, L, D)
        if self.pos is not None:
            x = x + self.pos[start : start + tf.shape(ids)[1]]  # (L, D), broadcast
        return self.drop(x, training=training)

    def logits(self, h):
        return tf.matmul(h, self.weight, transpose_b=True)  # tied: (B, L, V)

    def named_variables(self, prefix):
        out = {f"{prefix}_embed": self.weight}
        if self.learned:
            out[f"{prefix}_pos_embed" if prefix != "tok" else "pos_embed"] = self.pos
        return out


def _ids(x):
    return tf.cast(
        tf.convert_to_tensor(np.asarray(x) if isinstance(x, (list, tuple)) else x),
        tf.int64,
    )


class _Model(keras.Model):
    """What the GPT and the encoder-decoder share: named variables, blocks,
    get/set_params."""

    def _stacks(self):
        raise NotImplementedError

    def _variables(self):
        out = {}
        for prefix, embed in self._embeddings().items():
            out.update(embed.named_variables(prefix))
        for name, norm in self._norms().items():
            if norm is not None:
                out.update(
                    {f"{name}.{k}": v for k, v in norm.named_variables().items()}
                )
        return out

    def get_params(self):
        """The parameters as a dict of NumPy arrays (see
        :func:`attnbook.transformer.param_shapes`)."""
        out = {k: v.numpy().copy() for k, v in self._variables().items()}
        for prefix, blocks in self._stacks().items():
            for i, block in enumerate(blocks):
                out.update(_get(block, None, f"{prefix}.{i}."))
        return {name: out[name] for name in transformer.param_shapes(self.config)}

    def set_params(self, params):
        """Load a dict of NumPy arrays (from either twin's ``get_params``); checks names
        and shapes."""
        new = transformer.check_params(self.config, params)
        for name, var in self._variables().items():
            var.assign(new[name])
        for prefix, blocks in self._stacks().items():
            for i, block in enumerate(blocks):
                _set(block, None, new, f"{prefix}.{i}.")


class GPT(_Model):
    """A decoder-only Transformer language model; arguments, methods and parameters as
    :class:`attnbook.transformer.torch.GPT`."""

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
        cfg = transformer.gpt_config(
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
        super().__init__()
        self._cfg = cfg
        d = cfg["d_model"]
        self.embed = TokenEmbedding(
            cfg["vocab_size"], d, cfg["max_len"], cfg["pos"], cfg["dropout"]
        )
        self.blocks = [
            Block(d, cfg["num_heads"], **transformer.block_kwargs(cfg, i))
            for i in range(cfg["num_layers"])
        ]
        self.norm = LayerNorm(d) if cfg["norm"] == "pre" else None
        self.set_params(transformer.init_params(cfg))

    @property
    def config(self):
        return dict(self._cfg)

    def _embeddings(self):
        return {"tok": self.embed}

    def _norms(self):
        return {"norm": self.norm}

    def _stacks(self):
        return {"blocks": self.blocks}

    def _head(self, x):
        return self.embed.logits(x if self.norm is None else self.norm(x))

    def __call__(self, idx, *args, **kwargs):
        # Checked before Keras converts and wraps: the PyTorch twin's errors, unchanged.
        transformer.check_tokens(self._cfg, idx)
        return super().__call__(_ids(idx), *args, **kwargs)

    def call(self, idx, return_weights=False, training=False):
        """Logits ``(B, L, V)`` of token ids ``(B, L)``; with ``return_weights=True``
        also each block's attention weights ``(B, H, L, L)``."""
        with _plain_errors():
            x = self.embed(idx, training=training)  # (B, L, D)
            weights = []
            for block in self.blocks:
                x, w = block(
                    x, causal=True, return_weights=return_weights, training=training
                )
                weights.append(w and w["self"])
            logits = self._head(x)
        return (logits, weights) if return_weights else logits

    def new_cache(self):
        """An empty :class:`attnbook.transformer.KVCache` for :meth:`decode`."""
        w = self._cfg["window"]
        return transformer.KVCache(
            self._cfg["num_layers"], keep=None if w is None else w - 1
        )

    def decode(self, idx, cache):
        """Logits ``(B, Lq, V)`` of new tokens that follow the tokens ``cache`` holds;
        updates it."""
        transformer.check_cache(cache, self._cfg)
        transformer.check_tokens(self._cfg, idx, start=cache.position)
        x = self.embed(_ids(idx), start=cache.position)
        for i, block in enumerate(self.blocks):
            x = block.decode(x, cache, i)
        cache.position += int(x.shape[1])
        return self._head(x)

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
        """Continue ``idx (B, L)`` by ``max_new_tokens`` tokens; returns ``(B, L + n)``
        int64, as the PyTorch twin (the same seed draws the same tokens there)."""
        ids, n, sampling, rng = transformer.check_generate(
            self._cfg, idx, max_new_tokens, temperature, top_k, top_p, use_cache, seed
        )
        cache = self.new_cache() if use_cache else None
        for step in range(n):
            if cache is None:
                logits = self(ids, training=False)[:, -1]
            else:
                logits = self.decode(ids if step == 0 else ids[:, -1:], cache)[:, -1]
            nxt = transformer.sample_next(logits.numpy(), rng, *sampling)
            ids = np.concatenate([ids, nxt[:, None]], axis=1)
        return tf.constant(ids, tf.int64)


class EncoderDecoder(_Model):
    """The encoder-decoder Transformer; arguments, methods and parameters as
    :class:`attnbook.transformer.torch.EncoderDecoder`."""

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
        cfg = transformer.encdec_config(
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
        super().__init__()
        self._cfg = cfg
        d, h, n = cfg["d_model"], cfg["num_heads"], cfg["num_layers"]
        self.src = TokenEmbedding(
            cfg["src_vocab"], d, cfg["max_len"], cfg["pos"], cfg["dropout"]
        )
        self.tgt = TokenEmbedding(
            cfg["tgt_vocab"], d, cfg["max_len"], cfg["pos"], cfg["dropout"]
        )
        self.encoder = [
            Block(d, h, **transformer.block_kwargs(cfg, i, "encoder")) for i in range(n)
        ]
        self.encoder_norm = LayerNorm(d) if cfg["norm"] == "pre" else None
        self.decoder = [
            Block(d, h, **transformer.block_kwargs(cfg, i, "decoder")) for i in range(n)
        ]
        self.decoder_norm = LayerNorm(d) if cfg["norm"] == "pre" else None
        self.set_params(transformer.init_params(cfg))

    @property
    def config(self):
        return dict(self._cfg)

    def _embeddings(self):
        return {"src": self.src, "tgt": self.tgt}

    def _norms(self):
        return {"encoder_norm": self.encoder_norm, "decoder_norm": self.decoder_norm}

    def _stacks(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    def encode(self, src, src_lengths, training=False):
        """``memory (B, Lin, D)`` and the key mask ``(B, 1, 1, Lin)``, as in PyTorch."""
        transformer.check_source(self._cfg, src, src_lengths)
        src, lengths = _ids(src), _ids(src_lengths)
        width = src.shape[1]
        if width is None:  # a graph of unknown widths: the mask written out
            positions = tf.range(tf.shape(src)[1], dtype=tf.int64)
            mask = positions[None, :] < lengths[:, None]
        else:
            mask = padding_mask(lengths, width)
        mask = mask[:, None, None, :]  # (B, 1, 1, Lin)
        x = self.src(src, training=training)
        for block in self.encoder:
            x, _ = block(x, mask=mask, training=training)
        return (x if self.encoder_norm is None else self.encoder_norm(x)), mask

    def decode(self, tgt_in, memory, memory_mask, return_weights=False, training=False):
        """Logits ``(B, Lout, Vt)`` (and each decoder block's cross-attention weights
        ``(B, H, Lout, Lin)``), as in PyTorch."""
        cfg = self._cfg
        transformer.check_tokens(cfg, tgt_in, "tgt_in", vocab=cfg["tgt_vocab"])
        y = self.tgt(_ids(tgt_in), training=training)
        cross = []
        for block in self.decoder:
            y, w = block(
                y,
                causal=True,
                memory=memory,
                memory_mask=memory_mask,
                return_weights=return_weights,
                training=training,
            )
            cross.append(w and w["cross"])
        y = y if self.decoder_norm is None else self.decoder_norm(y)
        logits = self.tgt.logits(y)  # tied: (B, Lout, Vt)
        return (logits, cross) if return_weights else logits

    def __call__(self, src, src_lengths, tgt_in, *args, **kwargs):
        transformer.check_target(self._cfg, tgt_in, src)
        transformer.check_source(self._cfg, src, src_lengths)
        return super().__call__(
            _ids(src), _ids(src_lengths), _ids(tgt_in), *args, **kwargs
        )

    def call(self, src, src_lengths, tgt_in, return_weights=False, training=False):
        """Teacher forcing: logits ``(B, Lout, Vt)`` (and the cross-attention
        weights)."""
        with _plain_errors():
            memory, mask = self.encode(src, src_lengths, training=training)
            return self.decode(tgt_in, memory, mask, return_weights, training=training)

    def greedy_decode(self, src, src_lengths, max_len, bos_id=1, eos_id=2):
        """``tokens (B, max_len)`` int64, the arg-max fed back at each step."""
        return self.beam_search(
            src, src_lengths, max_len, beam_size=1, bos_id=bos_id, eos_id=eos_id
        )[0]

    def beam_search(
        self, src, src_lengths, max_len, *, beam_size=4, bos_id=1, eos_id=2
    ):
        """The best of ``beam_size`` hypotheses, ``tokens (B, max_len)`` int64 and its
        log-probability ``(B,)``, as the PyTorch twin (the same NumPy bookkeeping)."""
        k, max_len, bos_id, eos_id = transformer.check_beam(
            beam_size, max_len, bos_id, eos_id, self._cfg["tgt_vocab"]
        )
        memory, mask = self.encode(src, src_lengths)
        b = int(memory.shape[0])
        memory, mask = (
            tf.repeat(memory, k, axis=0),
            tf.repeat(mask, k, axis=0),
        )  # (B*K, ...)
        tokens = np.full((b, k, 1), bos_id, np.int64)
        scores = np.where(np.arange(k) == 0, 0.0, -np.inf) * np.ones((b, 1))
        finished = np.zeros((b, k), bool)
        for _ in range(max_len):
            logits = self.decode(tokens.reshape(b * k, -1), memory, mask)[
                :, -1
            ]  # (B*K, V)
            logp = tf.nn.log_softmax(logits, -1).numpy().reshape(b, k, -1)
            parent, token, scores = transformer.beam_step(scores, logp, finished)
            tokens = np.concatenate(
                [np.take_along_axis(tokens, parent[..., None], 1), token[..., None]],
                axis=-1,
            )
            finished = np.take_along_axis(finished, parent, 1) | (token == eos_id)
            if k > 1 and finished.all():
                break
        best = tokens[np.arange(b), scores.argmax(1), 1:]
        best = np.pad(best, ((0, 0), (0, max_len - best.shape[1])))
        return tf.constant(best, tf.int64), scores.max(1)


# --------------------------------------------------------------------------------------
# Training and evaluation.


def _check_model(model, cls):
    if not isinstance(model, cls):
        raise TypeError(
            f"model must be an attnbook.transformer.tensorflow.{cls.__name__}, got "
            f"{type(model).__name__}"
        )


def _apply(model, opt, tape, loss, clip):
    grads = tape.gradient(loss, model.trainable_variables)
    if math.isinf(clip):  # tf.clip_by_global_norm(inf) would multiply by inf * 0 = NaN
        norm = tf.linalg.global_norm(grads)
    else:
        grads, norm = tf.clip_by_global_norm(grads, clip)
    opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
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
    """Train a :class:`GPT` on next-token prediction; arguments, recipe and result as
    :func:`attnbook.transformer.torch.train_lm` (the same windows in the same order)."""
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
    tf.random.set_seed(seed)
    opt = keras.optimizers.AdamW(
        learning_rate=lr, weight_decay=weight_decay, epsilon=1e-8
    )
    clip = float(clip)

    @tf.function(
        input_signature=[
            tf.TensorSpec((batch_size, block_len + 1), tf.int64),
            tf.TensorSpec((), tf.float32),
        ]
    )
    def train_step(window, step_lr):
        opt.learning_rate.assign(step_lr)
        with tf.GradientTape() as tape:
            logits = model(window[:, :-1], training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(window[:, 1:], logits)
            )
        return loss, _apply(model, opt, tape, loss, clip)

    starts = transformer.lm_batches(len(ids), block_len, batch_size, steps, seed)
    span = np.arange(block_len + 1)
    history = {"loss": [], "grad_norm": [], "valid_step": [], "valid_loss": []}
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=desc is None, mininterval=2.0, ncols=80)
    for step in bar:
        lr_step = np.float32(transformer.learning_rate(step, steps, lr, warmup))
        loss, norm = train_step(ids[starts[step][:, None] + span], lr_step)
        history["loss"].append(float(loss))
        history["grad_norm"].append(float(norm))
        if eval_every and (step + 1) % eval_every == 0:
            history["valid_step"].append(step + 1)
            history["valid_loss"].append(
                evaluate_lm(model, valid, block_len, max_windows=32)
            )
            bar.set_postfix(
                refresh=False,
                loss=f"{history['loss'][-1]:.3f}",
                valid=f"{history['valid_loss'][-1]:.3f}",
            )
    bar.close()
    history["seconds"] = time.perf_counter() - start
    return history


def evaluate_lm(model, ids, block_len=None, *, batch_size=32, max_windows=None):
    """Mean next-token cross-entropy (nats per token), as
    :func:`attnbook.transformer.torch.evaluate_lm`."""
    _check_model(model, GPT)
    x, y = transformer.check_lm_evaluation(
        model.config, ids, block_len, batch_size, max_windows
    )
    total = 0.0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size], training=False)
        total += float(
            tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    y[i : i + batch_size], logits
                )
            )
        )
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
    """Teacher-forced training of an :class:`EncoderDecoder`; arguments, recipe and
    result as :func:`attnbook.transformer.torch.train_seq2seq` (the same batches in the
    same order)."""
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
    tf.random.set_seed(seed)
    opt = keras.optimizers.AdamW(
        learning_rate=lr, weight_decay=weight_decay, epsilon=1e-8
    )
    clip = float(clip)

    @tf.function  # one trace per batch shape (one per target length)
    def train_step(s, n, t, step_lr):
        opt.learning_rate.assign(step_lr)
        with tf.GradientTape() as tape:
            logits = model(s, n, t[:, :-1], training=True)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(t[:, 1:], logits)
            real = tf.cast(t[:, 1:] != CharVocab.PAD, ce.dtype)  # ignore PAD targets
            loss = tf.reduce_sum(ce * real) / tf.reduce_sum(real)
        _apply(model, opt, tape, loss, clip)
        return loss

    losses, start = [], time.perf_counter()
    bar = tqdm(steps, desc=desc, disable=desc is None, mininterval=2.0, ncols=80)
    for i, (idx, src_width, tgt_width) in enumerate(bar):
        lr_step = np.float32(transformer.learning_rate(i, len(steps), lr, warmup))
        losses.append(
            float(
                train_step(
                    tf.constant(src[idx, :src_width]),
                    tf.constant(src_lengths[idx]),
                    tf.constant(tgt[idx, :tgt_width]),
                    lr_step,
                )
            )
        )
    bar.close()
    return {"loss": losses, "seconds": time.perf_counter() - start}


def translate(
    model, texts, src_vocab, tgt_vocab, *, max_len=24, beam_size=1, batch_size=500
):
    """Translations of ``texts``: greedy with ``beam_size=1``, else beam search."""
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
        out += tgt_vocab.decode_batch(tokens.numpy())
    return out


def evaluate(model, pairs, src_vocab, tgt_vocab, **kwargs):
    """Exact-match accuracy of the translations of ``pairs``."""
    sources, targets = seq2seq.check_pairs(pairs)
    if not sources:
        raise ValueError("pairs is empty: an accuracy over no example is undefined")
    return seq2seq.exact_match(
        translate(model, sources, src_vocab, tgt_vocab, **kwargs), targets
    )


def alignments(model, text, prediction, src_vocab, tgt_vocab):
    """Each decoder block's cross-attention while writing ``prediction`` for ``text``:
    ``(num_layers, H, len(prediction) + 1, len(text) + 1)`` NumPy."""
    _check_model(model, EncoderDecoder)
    src, lengths = src_vocab.encode_batch(transformer.check_text("text", text))
    tgt_in, _ = tgt_vocab.encode_batch(
        transformer.check_text("prediction", prediction), bos=True, eos=False
    )
    _, weights = model(src, lengths, tgt_in, return_weights=True, training=False)
    return np.stack([w[0].numpy() for w in weights])
