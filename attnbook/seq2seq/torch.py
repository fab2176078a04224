"""The encoder-decoder of :mod:`attnbook.seq2seq` in PyTorch, with attnbook's
``AdditiveAttention`` layer.

The model lives on ``attnbook.devices.torch_device()`` (the GPU when there is one);
``train`` and ``translate`` take NumPy arrays / strings and move each batch there.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import _params, devices
from ..torch import AdditiveAttention, padding_mask
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


class Seq2Seq(torch.nn.Module):
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
        seed: seed of the NumPy initialisation shared with the TensorFlow twin.
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
        self.src_embedding = torch.nn.Embedding(src_vocab_size, e)
        self.tgt_embedding = torch.nn.Embedding(tgt_vocab_size, e)
        self.encoder_fwd = torch.nn.GRU(e, h, batch_first=True)
        self.encoder_bwd = torch.nn.GRU(e, h, batch_first=True)
        self.bridge = torch.nn.Linear(2 * h, h)
        self.cell = torch.nn.GRUCell(e + 2 * h, h)
        self.attention = (
            AdditiveAttention(h, 2 * h, attention_dim) if attention else None
        )
        self.out = torch.nn.Linear(3 * h + e, tgt_vocab_size)
        self.set_params(init)
        self.to(devices.torch_device())

    @property
    def device(self):
        return self.out.weight.device

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
        b, width = src.shape
        x = self.src_embedding(src)  # (B, Lin, E)
        j, n = torch.arange(width, device=src.device)[None, :], src_lengths[:, None]
        # (B, Lin): attnbook.seq2seq.reverse_index, in PyTorch
        rev = torch.where(j < n, n - 1 - j, j)
        # (B, Lin, H); padding comes after the characters: it cannot leak in
        fwd, _ = self.encoder_fwd(x)
        # reads x_T .. x_1, then padding
        bwd, _ = self.encoder_bwd(x.gather(1, rev[..., None].expand_as(x)))
        bwd = bwd.gather(1, rev[..., None].expand_as(bwd))  # back to source order
        annotations = torch.cat([fwd, bwd], dim=-1)  # (B, Lin, 2H)
        # h_T^fwd: the whole input, left to right
        last = fwd[torch.arange(b, device=src.device), src_lengths - 1]
        summary = torch.cat([last, bwd[:, 0]], dim=-1)  # (B, 2H)
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
        state = self.cell(torch.cat([emb, context], dim=-1), state)  # s_t  (B, H)
        logits = self.out(torch.cat([state, context, emb], dim=-1))  # (B, Vt)
        return logits, state, weights

    def forward(self, src, src_lengths, tgt_in):
        """Teacher forcing: ``tgt_in (B, Lout)`` are the inputs of the decoder (BOS +
        target, shifted right).

        Returns ``logits (B, Lout, Vt)`` and the weights ``(B, Lout, Lin)`` (``None``
        without attention).
        """
        check_target(self.shapes, tgt_in, src)
        annotations, summary, mask = self.encode(src, src_lengths)
        state = torch.tanh(self.bridge(summary))  # s_0  (B, H)
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state, w = self.decoder_step(
                tgt_in[:, t], state, annotations, summary, mask
            )
            logits.append(step_logits)
            weights.append(w)
        return torch.stack(logits, 1), (
            torch.stack(weights, 1) if self.use_attention else None
        )

    @torch.no_grad()
    def greedy_decode(self, src, src_lengths, max_len, bos_id=1, eos_id=2):
        """Translate by feeding back the most likely token at each step.

        Returns ``tokens (B, max_len)`` int64 and the weights ``(B, max_len, Lin)``
        (``None`` without attention). Rows keep decoding after their EOS (the batch
        runs in lockstep); decoding stops at the first EOS.
        """
        max_len, bos_id, eos_id = check_decode(self.shapes, max_len, bos_id, eos_id)
        annotations, summary, mask = self.encode(src, src_lengths)
        state = torch.tanh(self.bridge(summary))
        y = torch.full((src.shape[0],), bos_id, dtype=torch.int64, device=src.device)
        tokens, weights = [], []
        for _ in range(max_len):
            logits, state, w = self.decoder_step(y, state, annotations, summary, mask)
            y = logits.argmax(-1)
            tokens.append(y)
            weights.append(w)
        return torch.stack(tokens, 1), (
            torch.stack(weights, 1) if self.use_attention else None
        )

    def get_params(self):
        """The parameters as a dict of float32 NumPy arrays in the neutral format of
        ``attnbook.seq2seq``."""
        out = {
            "src_embedding": self.src_embedding.weight,
            "tgt_embedding": self.tgt_embedding.weight,
            "bridge_w": self.bridge.weight.T,
            "bridge_b": self.bridge.bias,
            "out_w": self.out.weight.T,
            "out_b": self.out.bias,
        }
        for prefix, attr in _GRUS.items():
            gru, sfx = getattr(self, attr), ("" if attr == "cell" else "_l0")
            out.update(
                {
                    f"{prefix}_w_x": getattr(
                        gru, f"weight_ih{sfx}"
                    ).T,  # torch stores (3H, in)
                    f"{prefix}_w_h": getattr(gru, f"weight_hh{sfx}").T,
                    f"{prefix}_b_x": getattr(gru, f"bias_ih{sfx}"),
                    f"{prefix}_b_h": getattr(gru, f"bias_hh{sfx}"),
                }
            )
        if self.use_attention:
            out.update({f"att_{k}": v for k, v in self.attention.params().items()})
        return {k: out[k].detach().cpu().numpy().copy() for k in self.shapes}

    @torch.no_grad()
    def set_params(self, params):
        """Load a dict in the format of :meth:`get_params` (for example from the
        TensorFlow twin): exactly its keys, its shapes, and arrays of real numbers
        (``TypeError`` for complex, boolean, string or object arrays)."""
        p = {
            k: torch.as_tensor(v.astype(np.float32))
            for k, v in _params.check_set(self.shapes, params).items()
        }
        self.src_embedding.weight.copy_(p["src_embedding"])
        self.tgt_embedding.weight.copy_(p["tgt_embedding"])
        self.bridge.weight.copy_(p["bridge_w"].T)
        self.bridge.bias.copy_(p["bridge_b"])
        self.out.weight.copy_(p["out_w"].T)
        self.out.bias.copy_(p["out_b"])
        for prefix, attr in _GRUS.items():
            gru, sfx = getattr(self, attr), ("" if attr == "cell" else "_l0")
            getattr(gru, f"weight_ih{sfx}").copy_(p[f"{prefix}_w_x"].T)
            getattr(gru, f"weight_hh{sfx}").copy_(p[f"{prefix}_w_h"].T)
            getattr(gru, f"bias_ih{sfx}").copy_(p[f"{prefix}_b_x"])
            getattr(gru, f"bias_hh{sfx}").copy_(p[f"{prefix}_b_h"])
        if self.use_attention:
            self.attention.set_params(
                {k: p[f"att_{k}"] for k in ("w_query", "w_key", "v")}
            )


def _check_model(model):
    if not isinstance(model, Seq2Seq):
        raise TypeError(
            f"model must be an attnbook.seq2seq.torch.Seq2Seq, got "
            f"{type(model).__name__}"
        )


def _tensors(device, *arrays):
    return [torch.as_tensor(np.asarray(a), device=device) for a in arrays]


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
        (wall-clock training time).
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
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    src_t, len_t, tgt_t = _tensors(model.device, src, src_lengths, tgt)
    steps = training_batches(src_lengths, tgt, batch_size, epochs, seed)
    losses, start = [], time.perf_counter()
    model.train()
    bar = tqdm(steps, desc=desc, disable=desc is None, mininterval=2.0, ncols=80)
    for i, (idx, src_width, tgt_width) in enumerate(bar):
        idx = torch.as_tensor(idx, device=model.device)
        s, sl, t = src_t[idx, :src_width], len_t[idx], tgt_t[idx, :tgt_width]
        logits, _ = model(s, sl, t[:, :-1])  # predict t[:, 1:] from t[:, :-1]
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), ignore_index=0
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
        if i % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", refresh=False)
    bar.close()
    model.eval()
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
    preds, weights = [], []
    model.eval()
    for i in range(0, len(texts), batch_size):
        chunk = texts[i : i + batch_size]
        src, lengths = src_vocab.encode_batch(chunk)
        src_t, len_t = _tensors(model.device, src, lengths)
        tokens, w = model.greedy_decode(
            src_t, len_t, max_len, tgt_vocab.BOS, tgt_vocab.EOS
        )
        p, c = crop_translations(
            tokens.cpu().numpy(),
            None if w is None else w.cpu().numpy(),
            chunk,
            tgt_vocab,
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
