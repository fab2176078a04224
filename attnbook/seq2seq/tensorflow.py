"""The encoder-decoder of :mod:`attnbook.seq2seq` in TensorFlow / Keras 3, with
attnbook's ``AdditiveAttention``.

The twin of :mod:`attnbook.seq2seq.torch`: same class, arguments, methods and
parameter dict. The training step is a ``tf.function`` (one trace per batch shape;
batches come in as many shapes as there are target lengths).
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from .. import _params
from ..tensorflow import AdditiveAttention, padding_mask
from . import (
    check_decode,
    check_pairs,
    check_source,
    check_target,
    check_training,
    check_translation,
    crop_translations,
    exact_match,
    init_params,
    param_shapes,
    training_batches,
)

__all__ = ["Seq2Seq", "train", "translate", "evaluate", "exact_match"]

_GRUS = {"enc_fwd": "encoder_fwd", "enc_bwd": "encoder_bwd", "dec": "cell"}


def _gates_to_keras(w):
    """Neutral gate order (reset, update, candidate) -> Keras' (update, reset,
    candidate), on the last axis."""
    r, z, n = np.split(np.asarray(w), 3, axis=-1)
    return np.concatenate([z, r, n], axis=-1)


def _gates_from_keras(w):
    z, r, n = np.split(np.asarray(w), 3, axis=-1)
    return np.concatenate([r, z, n], axis=-1)


class Seq2Seq(keras.Model):
    """Bidirectional-GRU encoder, GRU decoder, Bahdanau attention (or none, with
    ``attention=False``).

    Args:
        src_vocab_size, tgt_vocab_size: ``Vs`` and ``Vt``.
        embed_dim: ``E``, the width of the character embeddings.
        hidden_dim: ``H``, the width of each encoder direction and of the decoder
            state.
        attention_dim: ``A``, the hidden width of the additive score.
        attention: if False, the decoder sees the final encoder states only (the
            classic bottleneck).
        seed: seed of the NumPy initialisation shared with the PyTorch twin.
    """

    def __init__(
        self,
        src_vocab_size,
        tgt_vocab_size,
        *,
        embed_dim=32,
        hidden_dim=64,
        attention_dim=64,
        attention=True,
        seed=0,
    ):
        super().__init__()
        self.shapes = param_shapes(
            src_vocab_size,
            tgt_vocab_size,
            embed_dim=embed_dim,
            hidden_dim=hidden_dim,
            attention_dim=attention_dim,
            attention=attention,
        )
        init = init_params(self.shapes, seed)
        # The checked sizes from here on: Python ints and bools whatever NumPy scalars
        # came in.
        (src_vocab_size, e), (tgt_vocab_size, _), (h,) = (
            self.shapes[k] for k in ("src_embedding", "tgt_embedding", "bridge_b")
        )
        self.use_attention = attention = "att_v" in self.shapes
        attention_dim = self.shapes["att_v"][0] if attention else attention_dim
        self.src_embedding = keras.layers.Embedding(src_vocab_size, e)
        self.tgt_embedding = keras.layers.Embedding(tgt_vocab_size, e)
        # reset_after=True is PyTorch's GRU: the reset gate multiplies the recurrent
        # term *with* its bias.
        self.encoder_fwd = keras.layers.GRU(h, return_sequences=True, reset_after=True)
        self.encoder_bwd = keras.layers.GRU(h, return_sequences=True, reset_after=True)
        self.bridge = keras.layers.Dense(h)
        self.cell = keras.layers.GRUCell(h, reset_after=True)
        self.attention = (
            AdditiveAttention(h, 2 * h, attention_dim) if attention else None
        )
        self.out = keras.layers.Dense(tgt_vocab_size)
        self.src_embedding.build((None, None))
        self.tgt_embedding.build((None,))
        self.encoder_fwd.build((None, None, e))
        self.encoder_bwd.build((None, None, e))
        self.bridge.build((None, 2 * h))
        self.cell.build((None, e + 2 * h))
        self.out.build((None, 3 * h + e))
        self.set_params(init)

    def __call__(self, src, src_lengths, tgt_in, *args, **kwargs):
        # Keras rewrites an error raised inside `call` into a message of its own:
        # checking the inputs here raises the PyTorch twin's error, unchanged.
        check_source(self.shapes, src, src_lengths)
        check_target(self.shapes, tgt_in, src)
        return super().__call__(src, src_lengths, tgt_in, *args, **kwargs)

    def encode(self, src, src_lengths):
        """Read the source.

        Args:
            src: ``(B, Lin)`` int64 token ids, right-padded.
            src_lengths: ``(B,)`` int64, the unpadded lengths.

        Returns:
            ``annotations (B, Lin, 2H)``, ``summary (B, 2H)`` (the last forward and
            the first backward state) and ``mask (B, Lin)``, True on real positions.
        """
        # ids < Vs and 1 <= lengths <= Lin, else ValueError
        check_source(self.shapes, src, src_lengths)
        width = src.shape[1]  # static: padding_mask wants a Python int
        x = self.src_embedding(src)  # (B, Lin, E)
        j, n = tf.range(width, dtype=src_lengths.dtype)[None, :], src_lengths[:, None]
        # (B, Lin): attnbook.seq2seq.reverse_index, in TensorFlow
        rev = tf.where(j < n, n - 1 - j, j)
        # (B, Lin, H); padding comes after the characters: it cannot leak in
        fwd = self.encoder_fwd(x)
        # reads x_T .. x_1, then padding
        bwd = self.encoder_bwd(tf.gather(x, rev, batch_dims=1))
        bwd = tf.gather(bwd, rev, batch_dims=1)  # back to source order
        annotations = tf.concat([fwd, bwd], axis=-1)  # (B, Lin, 2H)
        # h_T^fwd: the whole input, left to right
        last = tf.gather(fwd, src_lengths - 1, batch_dims=1)
        summary = tf.concat([last, bwd[:, 0]], axis=-1)  # (B, 2H)
        return annotations, summary, padding_mask(src_lengths, width)

    def decoder_step(self, y_prev, state, annotations, summary, mask):
        """One decoder step: attend with the previous state, update the state,
        predict the next token.

        Args:
            y_prev: ``(B,)`` the previous output token (BOS at the first step).
            state: ``(B, H)`` the previous decoder state ``s_{t-1}``.
            annotations: ``(B, Lin, 2H)`` and ``summary`` ``(B, 2H)`` from
                :meth:`encode`.
            mask: ``(B, Lin)`` True on real (unpadded) source positions.

        Returns:
            ``logits (B, Vt)``, the new state ``s_t (B, H)``, and the attention
            weights ``(B, Lin)`` (``None`` without attention).
        """
        emb = self.tgt_embedding(y_prev)  # (B, E)
        if self.use_attention:
            # The query is s_{t-1}: "where should I read, given what I have written so
            # far?"
            context, weights = self.attention(
                state[:, None, :],
                annotations,
                annotations,
                mask=mask[:, None, :],
                return_weights=True,
            )  # (B, 1, 2H), (B, 1, Lin)
            context, weights = context[:, 0], weights[:, 0]
        else:
            context, weights = summary, None  # the same vector at every step
        state, _ = self.cell(tf.concat([emb, context], axis=-1), state)  # s_t  (B, H)
        logits = self.out(tf.concat([state, context, emb], axis=-1))  # (B, Vt)
        return logits, state, weights

    def call(self, src, src_lengths, tgt_in):
        """Teacher forcing: ``tgt_in (B, Lout)`` are the inputs of the decoder (BOS +
        target, shifted right).

        Returns ``logits (B, Lout, Vt)`` and the weights ``(B, Lout, Lin)`` (``None``
        without attention).
        """
        check_target(self.shapes, tgt_in, src)
        annotations, summary, mask = self.encode(src, src_lengths)
        state = tf.tanh(self.bridge(summary))  # s_0  (B, H)
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state, w = self.decoder_step(
                tgt_in[:, t], state, annotations, summary, mask
            )
            logits.append(step_logits)
            weights.append(w)
        return tf.stack(logits, 1), (
            tf.stack(weights, 1) if self.use_attention else None
        )

    def greedy_decode(self, src, src_lengths, max_len, bos_id=1, eos_id=2):
        """Translate by feeding back the most likely token at each step.

        Returns ``tokens (B, max_len)`` int64 and the weights ``(B, max_len, Lin)``
        (``None`` without attention). Rows keep decoding after their EOS (the batch
        runs in lockstep); decoding stops at the first EOS.
        """
        max_len, bos_id, eos_id = check_decode(self.shapes, max_len, bos_id, eos_id)
        annotations, summary, mask = self.encode(src, src_lengths)
        state = tf.tanh(self.bridge(summary))
        y = tf.fill(tf.shape(src)[:1], tf.constant(bos_id, tf.int64))
        tokens, weights = [], []
        for _ in range(max_len):
            logits, state, w = self.decoder_step(y, state, annotations, summary, mask)
            y = tf.argmax(logits, axis=-1)
            tokens.append(y)
            weights.append(w)
        return tf.stack(tokens, 1), (
            tf.stack(weights, 1) if self.use_attention else None
        )

    def get_params(self):
        """The parameters as a dict of float32 NumPy arrays in the neutral format of
        ``attnbook.seq2seq``."""
        out = {
            "src_embedding": self.src_embedding.embeddings,
            "tgt_embedding": self.tgt_embedding.embeddings,
            "bridge_w": self.bridge.kernel,
            "bridge_b": self.bridge.bias,
            "out_w": self.out.kernel,
            "out_b": self.out.bias,
        }
        out = {k: np.asarray(v) for k, v in out.items()}
        for prefix, attr in _GRUS.items():
            cell = getattr(self, attr)
            cell = getattr(cell, "cell", cell)
            bias = np.asarray(cell.bias)  # (2, 3H): input, recurrent
            out.update(
                {
                    f"{prefix}_w_x": _gates_from_keras(cell.kernel),
                    f"{prefix}_w_h": _gates_from_keras(cell.recurrent_kernel),
                    f"{prefix}_b_x": _gates_from_keras(bias[0]),
                    f"{prefix}_b_h": _gates_from_keras(bias[1]),
                }
            )
        if self.use_attention:
            out.update({f"att_{k}": v for k, v in self.attention.get_params().items()})
        return {k: np.array(out[k], dtype=np.float32) for k in self.shapes}

    def set_params(self, params):
        """Load a dict in the format of :meth:`get_params` (for example from the
        PyTorch twin): exactly its keys, its shapes, and arrays of real numbers
        (``TypeError`` for complex, boolean, string or object arrays)."""
        p = {
            k: v.astype(np.float32)
            for k, v in _params.check_set(self.shapes, params).items()
        }
        self.src_embedding.embeddings.assign(p["src_embedding"])
        self.tgt_embedding.embeddings.assign(p["tgt_embedding"])
        self.bridge.kernel.assign(p["bridge_w"])
        self.bridge.bias.assign(p["bridge_b"])
        self.out.kernel.assign(p["out_w"])
        self.out.bias.assign(p["out_b"])
        for prefix, attr in _GRUS.items():
            cell = getattr(self, attr)
            cell = getattr(cell, "cell", cell)
            cell.kernel.assign(_gates_to_keras(p[f"{prefix}_w_x"]))
            cell.recurrent_kernel.assign(_gates_to_keras(p[f"{prefix}_w_h"]))
            cell.bias.assign(
                np.stack(
                    [
                        _gates_to_keras(p[f"{prefix}_b_x"]),
                        _gates_to_keras(p[f"{prefix}_b_h"]),
                    ]
                )
            )
        if self.use_attention:
            self.attention.set_params(
                {k: p[f"att_{k}"] for k in ("w_query", "w_key", "v")}
            )


def _check_model(model):
    if not isinstance(model, Seq2Seq):
        raise TypeError(
            f"model must be an attnbook.seq2seq.tensorflow.Seq2Seq, got "
            f"{type(model).__name__}"
        )


def _loss(logits, targets):
    """Mean cross-entropy over the non-PAD (id 0) targets, as PyTorch's
    ``ignore_index=0``."""
    # (B, Lout)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    keep = tf.cast(targets != 0, ce.dtype)
    return tf.reduce_sum(ce * keep) / tf.reduce_sum(keep)


def train(
    model,
    src,
    src_lengths,
    tgt,
    *,
    epochs=3,
    batch_size=64,
    lr=3e-3,
    clip=1.0,
    seed=0,
    desc="train",
):
    """Teacher-forced training with Adam and cross-entropy over the non-PAD target
    tokens.

    Args:
        model: a :class:`Seq2Seq`.
        src, src_lengths, tgt: NumPy arrays from
            ``attnbook.datasets.dates.encode_pairs`` (``tgt`` starts with BOS).
        epochs, batch_size, lr: the usual; gradients are clipped to global norm
            ``clip``.
        seed: seed of the batch order.
        desc: label of the tqdm progress bar (``None`` hides the bar).

    Returns:
        dict with ``loss`` (the loss of every step, a list of floats) and ``seconds``
        (wall-clock training time, graph tracing included).
    """
    _check_model(model)
    src, src_lengths, tgt = check_training(
        model.shapes,
        src,
        src_lengths,
        tgt,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        clip=clip,
        seed=seed,
        desc=desc,
    )
    opt = keras.optimizers.Adam(learning_rate=lr, global_clipnorm=clip)

    @tf.function
    def step(s, sl, t):
        with tf.GradientTape() as tape:
            logits, _ = model(s, sl, t[:, :-1])  # predict t[:, 1:] from t[:, :-1]
            loss = _loss(logits, t[:, 1:])
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=False))
        return loss

    steps = training_batches(src_lengths, tgt, batch_size, epochs, seed)
    losses, start = [], time.perf_counter()
    bar = tqdm(steps, desc=desc, disable=desc is None, mininterval=2.0, ncols=80)
    for i, (idx, src_width, tgt_width) in enumerate(bar):
        loss = step(
            tf.constant(src[idx, :src_width]),
            tf.constant(src_lengths[idx]),
            tf.constant(tgt[idx, :tgt_width]),
        )
        losses.append(float(loss))
        if i % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", refresh=False)
    bar.close()
    return {"loss": losses, "seconds": time.perf_counter() - start}


def translate(model, texts, src_vocab, tgt_vocab, *, max_len=24, batch_size=500):
    """Greedy translations of ``texts`` (a list of strings).

    Returns:
        ``(predictions, weights)``: the predicted strings, and per text the attention
        weights cropped to ``(len(prediction) + 1, len(text) + 1)`` (the ``+ 1`` are
        the EOS tokens) as NumPy arrays, or ``None`` for each text without attention.
    """
    _check_model(model)
    texts = check_translation(
        model.shapes, texts, src_vocab, tgt_vocab, max_len, batch_size
    )
    # one padded width for all chunks: one trace
    width = max((len(t) for t in texts), default=0) + 1
    decode = tf.function(
        lambda s, sl: model.greedy_decode(s, sl, max_len, tgt_vocab.BOS, tgt_vocab.EOS),
        input_signature=[
            tf.TensorSpec((None, width), tf.int64),
            tf.TensorSpec((None,), tf.int64),
        ],
    )
    preds, weights = [], []
    for i in range(0, len(texts), batch_size):
        chunk = texts[i : i + batch_size]
        src, lengths = src_vocab.encode_batch(chunk, length=width)
        tokens, w = decode(tf.constant(src), tf.constant(lengths))
        p, c = crop_translations(
            tokens.numpy(), None if w is None else w.numpy(), chunk, tgt_vocab
        )
        preds += p
        weights += c
    return preds, weights


def evaluate(model, pairs, src_vocab, tgt_vocab, **kwargs):
    """Exact-match accuracy of greedy translations of a list of ``DatePair`` (or
    ``(source, target)`` tuples); ``ValueError`` for an empty list (see
    :func:`attnbook.seq2seq.exact_match`)."""
    sources, targets = check_pairs(pairs)
    if not sources:
        raise ValueError("pairs is empty: an accuracy over no example is undefined")
    preds, _ = translate(model, sources, src_vocab, tgt_vocab, **kwargs)
    return exact_match(preds, targets)
