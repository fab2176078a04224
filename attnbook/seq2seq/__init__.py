"""An RNN encoder-decoder for translation, with or without Bahdanau attention, in PyTorch and TensorFlow.

The model of Bahdanau, Cho and Bengio (2015), small enough to train on a CPU in a minute:

* **Encoder**: a bidirectional GRU reads the source characters ``x_1..x_T`` and writes one *annotation*
  ``h_j = [h_j^fwd; h_j^bwd]`` of width ``2H`` per position: the forward GRU summarises ``x_1..x_j``, the backward
  one ``x_j..x_T``, so ``h_j`` describes character ``j`` in the context of the whole input.
* **Decoder**: a GRU with state ``s_t`` of width ``H``, started from ``s_0 = tanh(W [h_T^fwd; h_1^bwd] + b)``. At
  step ``t`` the previous state ``s_{t-1}`` is the *query* of additive attention over the annotations (the keys and
  values), which returns the weights ``a_t`` ``(Lin,)`` and the context ``c_t = sum_j a_tj h_j``; then
  ``s_t = GRU([E y_{t-1}; c_t], s_{t-1})`` and ``logits_t = W_o [s_t; c_t; E y_{t-1}] + b_o``.
* ``attention=False`` gives the encoder-decoder that attention was invented to fix (Cho et al., 2014): the
  context is the same fixed vector ``c = [h_T^fwd; h_1^bwd]`` at every step, so everything the decoder learns
  about the input must pass through ``2H`` numbers. Same parameters otherwise, minus the attention layer.

``attnbook.seq2seq.torch`` and ``attnbook.seq2seq.tensorflow`` define the same ``Seq2Seq`` class (same constructor
arguments, same methods) and the same ``train`` / ``translate`` functions. Parameters are created here, in NumPy, from
the seed, so both frameworks start from identical numbers, and ``get_params()`` / ``set_params()`` move a trained
model from one framework to the other. This module imports NumPy only.

Shape letters: ``B`` batch, ``Lin`` source length (characters + EOS, padded), ``Lout`` target steps, ``E`` embedding
width, ``H`` GRU width, ``A`` attention hidden width, ``Vs`` / ``Vt`` source / target vocabulary sizes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["param_shapes", "init_params", "reverse_index", "epoch_batches", "exact_match", "crop_translations", "DEFAULTS"]

# Constructor defaults shared by both frameworks (the twins' signatures repeat them; a test checks they agree).
DEFAULTS = {"embed_dim": 32, "hidden_dim": 64, "attention_dim": 64, "attention": True, "seed": 0}


def param_shapes(src_vocab_size, tgt_vocab_size, *, embed_dim=32, hidden_dim=64, attention_dim=64, attention=True):
    """Name -> shape of every parameter, in the framework-neutral format that ``get_params`` returns.

    GRU parameters follow ``y = x @ w + b`` with ``w`` of shape ``(in, 3H)``; the three column blocks are the reset
    gate, the update gate and the candidate state, in that order (PyTorch's order). Input and recurrent biases are
    separate (``b_x``, ``b_h``) because the reset gate multiplies the recurrent part of the candidate including its
    bias (PyTorch's GRU and Keras' ``reset_after=True``).
    """
    e, h, a = embed_dim, hidden_dim, attention_dim
    shapes = {"src_embedding": (src_vocab_size, e), "tgt_embedding": (tgt_vocab_size, e)}
    for name, n_in in (("enc_fwd", e), ("enc_bwd", e), ("dec", e + 2 * h)):
        shapes.update({f"{name}_w_x": (n_in, 3 * h), f"{name}_w_h": (h, 3 * h),
                       f"{name}_b_x": (3 * h,), f"{name}_b_h": (3 * h,)})
    shapes.update(bridge_w=(2 * h, h), bridge_b=(h,))
    if attention:
        shapes.update(att_w_query=(h, a), att_w_key=(2 * h, a), att_v=(a,))
    shapes.update(out_w=(3 * h + e, tgt_vocab_size), out_b=(tgt_vocab_size,))
    return shapes


def init_params(shapes, seed=0):
    """Float32 parameters from one NumPy seed: N(0, 1) embeddings, U(-1/sqrt(H), 1/sqrt(H)) GRU weights and biases
    (PyTorch's GRU default), Glorot-uniform dense matrices with zero biases, ``v ~ U(-1/sqrt(A), 1/sqrt(A))``."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("embedding"):
            value = rng.standard_normal(shape)
        elif name.startswith(("enc_", "dec_")):
            bound = 1 / np.sqrt(shape[-1] // 3)
            value = rng.uniform(-bound, bound, shape)
        elif len(shape) == 2:
            limit = np.sqrt(6 / sum(shape))
            value = rng.uniform(-limit, limit, shape)
        elif name == "att_v":
            value = rng.uniform(-1, 1, shape) / np.sqrt(shape[0])
        else:
            value = np.zeros(shape)
        out[name] = value.astype(np.float32)
    return out


def reverse_index(lengths, width):
    """``(B, width)`` int64 indices that reverse each row's first ``lengths[b]`` entries and keep the padding.

    Gathering with them turns ``x_1..x_T, PAD..`` into ``x_T..x_1, PAD..``: the backward GRU then runs as an
    ordinary forward GRU on right-padded input, and gathering its outputs with the same indices (the permutation
    is its own inverse) puts them back in source order.
    """
    lengths = np.asarray(lengths)[:, None]
    j = np.arange(width)[None, :]
    return np.where(j < lengths, lengths - 1 - j, j).astype(np.int64)


def epoch_batches(src_lengths, tgt, batch_size, rng, pad_id=0):
    """One shuffled epoch of batches, each cut to the widths of its length bucket.

    Examples are grouped by target length (a single date and a date range have different ones), so that a batch
    of short examples is not padded to the longest example of the data set. Within a group the order is random;
    the last incomplete batch of each group is dropped; the batches of all groups are shuffled together.

    Returns:
        list of ``(indices, src_width, tgt_width)``: ``src[indices, :src_width]`` and ``tgt[indices, :tgt_width]``
        hold every non-PAD token of the batch. The widths are those of the whole group, so there are only as many
        distinct batch shapes as groups (one ``tf.function`` trace each).
    """
    src_lengths = np.asarray(src_lengths)
    tgt_lengths = (np.asarray(tgt) != pad_id).sum(axis=1)
    batches = []
    for key in np.unique(tgt_lengths):
        group = np.flatnonzero(tgt_lengths == key)
        widths = int(src_lengths[group].max()), int(key)
        perm = rng.permutation(group)
        batches += [(perm[i:i + batch_size], *widths) for i in range(0, len(perm) - batch_size + 1, batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def exact_match(predictions, targets):
    """Fraction of predicted strings equal to their target string (a whole date right, or wrong)."""
    predictions, targets = list(predictions), list(targets)
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if not targets:
        return float("nan")
    return sum(p == t for p, t in zip(predictions, targets)) / len(targets)


def crop_translations(tokens, weights, texts, tgt_vocab):
    """Decoded strings and cropped attention weights of one greedy-decoded batch (NumPy, either framework).

    ``tokens (B, max_len)``, ``weights (B, max_len, Lin)`` or ``None``; each text's weights are cropped to
    ``(len(prediction) + 1, len(text) + 1)``, the ``+ 1`` being the EOS tokens. Returns ``(predictions, weights)``.
    """
    preds = [tgt_vocab.decode(row) for row in tokens]
    crops = [None if weights is None else weights[i, :len(pred) + 1, :len(text) + 1]
             for i, (pred, text) in enumerate(zip(preds, texts))]
    return preds, crops

