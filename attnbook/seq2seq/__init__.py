"""An RNN encoder-decoder for translation, with or without Bahdanau attention, in
PyTorch and TensorFlow.

The model of Bahdanau, Cho and Bengio (2015), small enough to train on a CPU in a
minute:

* **Encoder**: a bidirectional GRU reads the source characters ``x_1..x_T`` and
  writes one *annotation* ``h_j = [h_j^fwd; h_j^bwd]`` of width ``2H`` per position:
  the forward GRU summarises ``x_1..x_j``, the backward one ``x_j..x_T``, so ``h_j``
  describes character ``j`` in the context of the whole input.
* **Decoder**: a GRU with state ``s_t`` of width ``H``, started from ``s_0 = tanh(W
  [h_T^fwd; h_1^bwd] + b)``. At step ``t`` the previous state ``s_{t-1}`` is the
  *query* of additive attention over the annotations (the keys and values), which
  returns the weights ``a_t`` ``(Lin,)`` and the context ``c_t = sum_j a_tj h_j``;
  then ``s_t = GRU([E y_{t-1}; c_t], s_{t-1})`` and ``logits_t = W_o [s_t; c_t; E
  y_{t-1}] + b_o``.
* ``attention=False`` gives the encoder-decoder that attention was invented to fix
  (Cho et al., 2014): the context is the same fixed vector ``c = [h_T^fwd; h_1^bwd]``
  at every step, so everything the decoder learns about the input must pass through
  ``2H`` numbers. Same parameters otherwise, minus the attention layer.

``attnbook.seq2seq.torch`` and ``attnbook.seq2seq.tensorflow`` define the same
``Seq2Seq`` class (same constructor arguments, same methods) and the same ``train`` /
``translate`` functions. Parameters are created here, in NumPy, from the seed, so
both frameworks start from identical numbers, and ``get_params()`` / ``set_params()``
move a trained model from one framework to the other. This module imports NumPy only.

Shape letters: ``B`` batch, ``Lin`` source length (characters + EOS, padded), ``Lout``
target steps, ``E`` embedding width, ``H`` GRU width, ``A`` attention hidden width,
``Vs`` / ``Vt`` source / target vocabulary sizes.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _checks, _spec

__all__ = [
    "param_shapes",
    "init_params",
    "reverse_index",
    "epoch_batches",
    "training_batches",
    "exact_match",
    "crop_translations",
    "DEFAULTS",
    "check_source",
    "check_target",
    "check_decode",
    "check_training",
    "check_translation",
    "check_pairs",
]

# Constructor defaults shared by both frameworks (the twins' signatures repeat them; a
# test checks they agree).
DEFAULTS = {
    "embed_dim": 32,
    "hidden_dim": 64,
    "attention_dim": 64,
    "attention": True,
    "seed": 0,
}


def param_shapes(
    src_vocab_size,
    tgt_vocab_size,
    *,
    embed_dim=32,
    hidden_dim=64,
    attention_dim=64,
    attention=True,
):
    """Name -> shape of every parameter, in the framework-neutral format that
    ``get_params`` returns.

    GRU parameters follow ``y = x @ w + b`` with ``w`` of shape ``(in, 3H)``; the
    three column blocks are the reset gate, the update gate and the candidate state,
    in that order (PyTorch's order). Input and recurrent biases are separate
    (``b_x``, ``b_h``) because the reset gate multiplies the recurrent part of the
    candidate including its bias (PyTorch's GRU and Keras' ``reset_after=True``).

    Sizes are positive integers (NumPy integers too) and come back as Python ints;
    ``attention`` is True or False. Sizes whose float32 parameters would not fit in
    this machine's memory raise ``ValueError``.
    """
    src_vocab_size = _checks.positive_int("src_vocab_size", src_vocab_size)
    tgt_vocab_size = _checks.positive_int("tgt_vocab_size", tgt_vocab_size)
    e, h, a = (
        _checks.positive_int(n, v)
        for n, v in (
            ("embed_dim", embed_dim),
            ("hidden_dim", hidden_dim),
            ("attention_dim", attention_dim),
        )
    )
    attention = _spec.check_flag("attention", attention)
    shapes = {
        "src_embedding": (src_vocab_size, e),
        "tgt_embedding": (tgt_vocab_size, e),
    }
    for name, n_in in (("enc_fwd", e), ("enc_bwd", e), ("dec", e + 2 * h)):
        shapes.update(
            {
                f"{name}_w_x": (n_in, 3 * h),
                f"{name}_w_h": (h, 3 * h),
                f"{name}_b_x": (3 * h,),
                f"{name}_b_h": (3 * h,),
            }
        )
    shapes.update(bridge_w=(2 * h, h), bridge_b=(h,))
    if attention:
        shapes.update(att_w_query=(h, a), att_w_key=(2 * h, a), att_v=(a,))
    shapes.update(out_w=(3 * h + e, tgt_vocab_size), out_b=(tgt_vocab_size,))
    _checks.fits_in_memory(
        "the Seq2Seq model's float32 parameters",
        4 * sum(math.prod(s) for s in shapes.values()),
    )
    return shapes


def init_params(shapes, seed=0):
    """Float32 parameters from one NumPy seed: N(0, 1) embeddings, U(-1/sqrt(H),
    1/sqrt(H)) GRU weights and biases (PyTorch's GRU default), Glorot-uniform dense
    matrices with zero biases, ``v ~ U(-1/sqrt(A), 1/sqrt(A))``."""
    if not isinstance(shapes, dict):
        raise TypeError(
            f"shapes must be a dict from param_shapes(...), got {type(shapes).__name__}"
        )
    rng = np.random.default_rng(_spec.check_integer("seed", seed))
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
    """``(B, width)`` int64 indices that reverse each row's first ``lengths[b]``
    entries and keep the padding.

    Gathering with them turns ``x_1..x_T, PAD..`` into ``x_T..x_1, PAD..``: the
    backward GRU then runs as an ordinary forward GRU on right-padded input, and
    gathering its outputs with the same indices (the permutation is its own inverse)
    puts them back in source order. ``lengths`` must lie in ``[0, width]``.
    """
    width = _checks.count("width", width)
    h = _checks.host("lengths", lengths)
    _checks.check_shape("lengths", h, "(B,)")
    if h.dtype not in _checks.INTEGER_DTYPES:
        raise TypeError(f"lengths must be an integer array, got dtype {h.dtype}")
    if h.values.size and (h.values.min() < 0 or h.values.max() > width):
        bad = h.values.min() if h.values.min() < 0 else h.values.max()
        raise ValueError(f"lengths must lie in [0, width] = [0, {width}], got {bad}")
    lengths = np.asarray(h.values)[:, None]
    j = np.arange(width)[None, :]
    return np.where(j < lengths, lengths - 1 - j, j).astype(np.int64)


def epoch_batches(src_lengths, tgt, batch_size, rng, pad_id=0):
    """One shuffled epoch of batches, each cut to the widths of its length bucket.

    Examples are grouped by target length (a single date and a date range have
    different ones), so that a batch of short examples is not padded to the longest
    example of the data set. Within a group the order is random; the last incomplete
    batch of each group is dropped; the batches of all groups are shuffled together.

    Returns:
        list of ``(indices, src_width, tgt_width)``: ``src[indices, :src_width]`` and
        ``tgt[indices, :tgt_width]`` hold every non-PAD token of the batch. The
        widths are those of the whole group, so there are only as many distinct batch
        shapes as groups (one ``tf.function`` trace each).
    """
    batch_size = _checks.positive_int("batch_size", batch_size)
    _checks.generator("rng", rng)
    pad_id = _spec.check_integer(
        "pad_id", pad_id, least=-_spec.INDEX_MAX, what="an integer"
    )
    src_lengths, tgt = np.asarray(src_lengths), np.asarray(tgt)
    if src_lengths.ndim != 1 or tgt.ndim != 2 or len(src_lengths) != len(tgt):
        raise ValueError(
            f"src_lengths must have shape (N,) and tgt shape (N, Lout), "
            f"got {src_lengths.shape} and "
            f"{tgt.shape}"
        )
    tgt_lengths = (tgt != pad_id).sum(axis=1)
    batches = []
    for key in np.unique(tgt_lengths):
        group = np.flatnonzero(tgt_lengths == key)
        widths = int(src_lengths[group].max()), int(key)
        perm = rng.permutation(group)
        batches += [
            (perm[i : i + batch_size], *widths)
            for i in range(0, len(perm) - batch_size + 1, batch_size)
        ]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def training_batches(src_lengths, tgt, batch_size, epochs, seed):
    """The batches of a whole training run: ``epochs`` epochs of
    :func:`epoch_batches`, drawn from one generator seeded with ``seed``, so that
    every training loop (both twins, GRU or Transformer) sees the same batches in
    the same order for one seed."""
    rng = np.random.default_rng(seed)
    return [
        b
        for _ in range(epochs)
        for b in epoch_batches(src_lengths, tgt, batch_size, rng)
    ]


def exact_match(predictions, targets):
    """Fraction of predicted strings equal to their target string (a whole date
    right, or wrong).

    Both are lists of strings of the same, non-zero length: an accuracy over no
    example is undefined, and a NaN would travel silently into a table, so an empty
    list raises ``ValueError``.
    """
    predictions = _checks.texts("predictions", predictions, single=False)
    targets = _checks.texts("targets", targets, single=False)
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if not targets:
        raise ValueError(
            "no predictions and no targets: an accuracy over no example is undefined"
        )
    return sum(p == t for p, t in zip(predictions, targets, strict=False)) / len(
        targets
    )


def crop_translations(tokens, weights, texts, tgt_vocab):
    """Decoded strings and cropped attention weights of one greedy-decoded batch
    (NumPy, either framework).

    ``tokens (B, max_len)``, ``weights (B, max_len, Lin)`` or ``None``; each text's
    weights are cropped to ``(len(prediction) + 1, len(text) + 1)``, the ``+ 1``
    being the EOS tokens. Returns ``(predictions, weights)``.
    """
    texts = _checks.texts("texts", texts, single=False)
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or len(tokens) != len(texts):
        raise ValueError(
            f"tokens must have shape (B, max_len) with B = {len(texts)} "
            f"texts, got {tokens.shape}"
        )
    if weights is not None and (np.ndim(weights) != 3 or len(weights) != len(texts)):
        raise ValueError(
            f"weights must be None or (B, max_len, Lin) with B = "
            f"{len(texts)}, got shape "
            f"{np.shape(weights)}"
        )
    preds = [tgt_vocab.decode(row) for row in tokens]
    crops = [
        None if weights is None else weights[i, : len(pred) + 1, : len(text) + 1]
        for i, (pred, text) in enumerate(zip(preds, texts, strict=False))
    ]
    return preds, crops


# --------------------------------------------------------------------------------------
# Checks shared by the two twins, so that they refuse the same inputs with the same
# messages. Inside a TensorFlow graph the values of a tensor are not known yet: there
# only shapes and dtypes are checked (train and translate check their NumPy inputs
# before they trace).


def _sizes(shapes):
    """``(Vs, Vt)``: the vocabulary sizes of a model's ``shapes``."""
    return shapes["src_embedding"][0], shapes["tgt_embedding"][0]


def _rows(name, n, other, m):
    if n is not None and m is not None and n != m:
        raise ValueError(
            f"{name} has {n} rows but {other} has {m}: one row per example"
        )


def check_source(shapes, src, src_lengths):
    """``src (B, Lin)``: integer ids in ``[0, Vs)``; ``src_lengths (B,)``: integers
    in ``[1, Lin]`` (every source has at least its EOS). Arrays of any framework."""
    vs, _ = _sizes(shapes)
    s = _checks.host("src", src)
    _checks.check_shape("src", s, "(B, Lin)")
    _checks.check_ids("src", s, vs, "source token ids")
    n = _checks.host("src_lengths", src_lengths)
    _checks.check_shape("src_lengths", n, "(B,)")
    _rows("src_lengths", n.shape[0], "src", s.shape[0])
    if n.dtype not in _checks.INTEGER_DTYPES:
        raise TypeError(f"src_lengths must be an integer array, got dtype {n.dtype}")
    if n.values is not None and n.values.size:
        width = s.shape[1]
        lo, hi = n.values.min(), n.values.max()
        if lo < 1 or (width is not None and hi > width):
            raise ValueError(
                f"src_lengths must lie in [1, Lin] = [1, {width}] (a "
                f"source holds at least its EOS, "
                f"and at most the width of src), got "
                f"{int(lo) if lo < 1 else int(hi)}"
            )


def check_target(shapes, tgt_in, src):
    """``tgt_in (B, Lout)``, ``Lout >= 1``: integer ids in ``[0, Vt)``, one row per
    row of ``src``."""
    _, vt = _sizes(shapes)
    t = _checks.host("tgt_in", tgt_in)
    _checks.check_shape("tgt_in", t, "(B, Lout)")
    _rows("tgt_in", t.shape[0], "src", tuple(src.shape)[0])
    if t.shape[1] == 0:
        raise ValueError(
            f"tgt_in must hold at least one decoder input (BOS) per row, "
            f"got shape {t.shape}"
        )
    _checks.check_ids("tgt_in", t, vt, "target token ids")


def check_decode(shapes, max_len, bos_id, eos_id):
    """``greedy_decode``'s scalars: ``max_len >= 1`` steps, ``bos_id`` and ``eos_id``
    target ids; returns them."""
    _, vt = _sizes(shapes)
    max_len = _checks.positive_int("max_len", max_len)
    ids = []
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        value = _spec.check_integer(name, value, what=f"a target token id in [0, {vt})")
        if value >= vt:
            raise ValueError(
                f"{name} must be a target token id in [0, {vt}), got {value}"
            )
        ids.append(value)
    return max_len, *ids


def check_training(
    shapes, src, src_lengths, tgt, *, epochs, batch_size, lr, clip, seed, desc
):
    """The arguments of both twins' ``train``; returns ``(src, src_lengths, tgt)`` as
    int64 NumPy arrays.

    Besides the checks of :func:`check_source`: ``tgt (N, Lout)`` with ``Lout >= 2``
    holds target ids whose rows have at least two tokens before the padding (BOS and
    one token to predict); ``N >= 1``; ``batch_size`` is at most the size of the
    largest group of examples with one target length, else :func:`epoch_batches`,
    which drops incomplete batches, would draw none and nothing would be trained.
    """
    from ..plotting import to_numpy

    check_source(shapes, src, src_lengths)
    src, src_lengths = (np.asarray(to_numpy(a), np.int64) for a in (src, src_lengths))
    if len(src) == 0:
        raise ValueError("src is empty: there is nothing to train on")
    h = _checks.host("tgt", tgt)
    _checks.check_shape("tgt", h, "(N, Lout)")
    _rows("tgt", h.shape[0], "src", src.shape[0])
    _checks.check_ids("tgt", h, _sizes(shapes)[1], "target token ids")
    tgt = np.asarray(h.values, np.int64)
    lengths = (tgt != 0).sum(axis=1)
    if lengths.min() < 2:
        raise ValueError(
            f"tgt row {int(np.argmin(lengths))} has {lengths.min()} tokens "
            f"before the padding; each "
            "row needs BOS and at least one token to predict "
            "(attnbook.datasets.dates.encode_pairs)"
        )
    _checks.count("epochs", epochs)
    batch_size = _checks.positive_int("batch_size", batch_size)
    largest = int(np.unique(lengths, return_counts=True)[1].max())
    if batch_size > largest:
        raise ValueError(
            f"batch_size = {batch_size} is more than the largest group of "
            f"examples with one target "
            f"length ({largest}): no full batch could be drawn "
            f"(epoch_batches drops incomplete ones)"
        )
    _checks.positive("lr", lr)
    _checks.positive("clip", clip)
    _spec.check_integer("seed", seed)
    if desc is not None and not isinstance(desc, str):
        raise TypeError(f"desc must be a string or None, got {desc!r}")
    return src, src_lengths, tgt


def check_translation(shapes, texts, src_vocab, tgt_vocab, max_len, batch_size):
    """The arguments of both twins' ``translate``; returns ``texts`` as a list of
    strings.

    ``texts`` is a list of strings (one string is refused: its characters would be
    translated one by one), the vocabularies are
    :class:`attnbook.datasets.dates.CharVocab` of exactly the model's sizes ``Vs``
    and ``Vt`` (a swapped or different vocabulary would translate into nonsense
    without an error).
    """
    from ..datasets.dates import CharVocab

    texts = _checks.texts("texts", texts, single=False)
    for name, vocab, size in (
        ("src_vocab", src_vocab, _sizes(shapes)[0]),
        ("tgt_vocab", tgt_vocab, _sizes(shapes)[1]),
    ):
        if not isinstance(vocab, CharVocab):
            raise TypeError(
                f"{name} must be an attnbook.datasets.dates.CharVocab, got "
                f"{type(vocab).__name__}"
            )
        if len(vocab) != size:
            raise ValueError(
                f"{name} has {len(vocab)} ids, but the model was built for {size}"
            )
    _checks.positive_int("max_len", max_len)
    _checks.positive_int("batch_size", batch_size)
    return texts


def check_pairs(pairs):
    """``pairs`` for ``evaluate``: a list of ``DatePair`` or ``(source, target)``
    string pairs; returns the sources and the targets as two lists."""
    if isinstance(pairs, str) or not hasattr(pairs, "__iter__"):
        raise TypeError(
            f"pairs must be a list of (source, target) pairs such as "
            f"DatePair, got {type(pairs).__name__}"
        )
    pairs = list(pairs)
    for i, p in enumerate(pairs):
        if (
            isinstance(p, str)
            or not isinstance(p, (tuple, list))
            or len(p) < 2
            or not (isinstance(p[0], str) and isinstance(p[1], str))
        ):
            raise TypeError(
                f"pairs must hold (source, target) string pairs such as "
                f"DatePair, got {p!r} at "
                f"position {i}"
            )
    return [p[0] for p in pairs], [p[1] for p in pairs]
