"""Text for a GPT to learn, with nothing to download: the Python reference documentation
that CPython ships.

``pydoc_data.topics`` (in the standard library since Python 3.2) holds the text that
``help("while")`` prints: about 80 topics of the language reference ("The while
statement", "Comparisons", ...), some 460,000 characters of English prose, grammar rules
and code. The split holds whole topics out, so the held-out loss measures text the model
has never seen a line of. The text differs a little between Python versions (the
reference is edited), so the numbers of a notebook move a little with the Python it runs
on.

The tokenizer is a byte-level BPE (Sennrich et al., 2016; GPT-2's variant, Radford et
al., 2019) trained on the training split with Hugging Face ``tokenizers``, in a fraction
of a second and deterministically: the same text gives the same vocabulary and the same
ids on every run.
"""

from __future__ import annotations

import numpy as np

from .. import _checks

__all__ = ["python_docs", "Tokenizer", "train_tokenizer", "ngram_loss"]


def python_docs(holdout_every=10):
    """``(train_text, valid_text)``: the topics of ``pydoc_data.topics`` sorted by name,
    every ``holdout_every``-th one (the 1st, the 11th, ...) held out, each split's
    topics joined by blank lines."""
    from pydoc_data.topics import topics

    every = _checks.positive_int("holdout_every", holdout_every)
    if every < 2:
        raise ValueError(
            "holdout_every must be at least 2 (1 would hold out every topic), got "
            f"{every}"
        )
    names = sorted(topics)
    valid = [topics[n].strip() for i, n in enumerate(names) if i % every == 0]
    train = [topics[n].strip() for i, n in enumerate(names) if i % every != 0]
    return "\n\n".join(train), "\n\n".join(valid)


class Tokenizer:
    """Text <-> int64 token ids with a trained ``tokenizers.Tokenizer`` (byte-level: any
    text encodes, and decoding the ids gives the text back exactly)."""

    def __init__(self, tokenizer):
        self._tok = tokenizer

    @property
    def vocab_size(self):
        return self._tok.get_vocab_size()

    def encode(self, text):
        """``text`` as a ``(N,)`` int64 array."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        return np.asarray(self._tok.encode(text).ids, np.int64)

    def decode(self, ids):
        """The text of a sequence of ids (negative or too large ids are refused)."""
        h = _checks.host("ids", ids)
        _checks.check_shape("ids", h, "(N,)")
        if h.shape[0] == 0:
            return ""
        _checks.check_ids("ids", h, self.vocab_size, "token ids")
        return self._tok.decode(h.values.tolist())

    def tokens(self, ids):
        """Each id decoded on its own, for labels (a token may be part of a multi-byte
        character: then it shows as the replacement character)."""
        return [self.decode(np.asarray([i])) for i in np.asarray(ids).tolist()]

    def to_str(self):
        """The tokenizer as JSON, which identifies it (the training cache hashes the
        data, not this)."""
        return self._tok.to_str()


def train_tokenizer(texts, vocab_size=512):
    """A byte-level BPE :class:`Tokenizer` of ``vocab_size`` ids (256 bytes + merges)
    trained on ``texts`` (a string or a list of strings)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    texts = _checks.texts("texts", texts)
    vocab_size = _checks.positive_int("vocab_size", vocab_size)
    if vocab_size < 256:
        raise ValueError(
            f"vocab_size must be at least 256 (one id per byte), got {vocab_size}"
        )
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return Tokenizer(tok)


def ngram_loss(train_ids, valid_ids, vocab_size, *, order=2, alpha=0.1):
    """Held-out cross-entropy (nats per token) of an add-``alpha`` smoothed n-gram model
    counted on ``train_ids``: ``order=1`` unigram frequencies, ``order=2`` bigram, ``p(b
    | a) = (count(a b) + alpha) / (count(a) + alpha V)``. The baseline a language model
    must beat to have learned anything beyond token frequencies and pairs."""
    vocab_size = _checks.positive_int("vocab_size", vocab_size)
    order = _checks.positive_int("order", order)
    if order > 2:
        raise ValueError(f"order must be 1 or 2, got {order}")
    alpha = _checks.positive("alpha", alpha)
    train = np.asarray(train_ids, np.int64)
    valid = np.asarray(valid_ids, np.int64)
    if order == 1:
        counts = np.bincount(train, minlength=vocab_size) + alpha
        return float(-np.log(counts[valid] / counts.sum()).mean())
    pairs = np.zeros((vocab_size, vocab_size))
    np.add.at(pairs, (train[:-1], train[1:]), 1.0)
    pairs += alpha
    probs = pairs[valid[:-1], valid[1:]] / pairs.sum(axis=1)[valid[:-1]]
    return float(-np.log(probs).mean())
