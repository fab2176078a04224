"""The generated input matrix: every public function and layer x every argument, from
the spec.

A *case* is one call described without any framework: its arguments are :class:`Arr`
    (a NumPy array and the dtype
each framework should hold it in), :class:`Raw` (a Python or NumPy value passed
unchanged to every twin) or :class:`Params` (a dict of arrays). :func:`run` turns a
case into a native call on one backend and records its :class:`Outcome`: the result
as NumPy, or the exception's type and message. The tests then ask that the three
twins have the same outcome.

The cases are generated, not listed: :data:`KINDS` gives each argument name of every
    ``attnbook._api`` signature
(and of the layers' constructors and calls) a *kind*, and each kind has a family of
mutations (wrong types, every dtype, NumPy scalars, zero-size axes, extreme values,
ranks, broadcasting). A new argument without a kind fails
``test_every_argument_has_a_kind``, so the matrix grows with the API.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np

from attnbook import _api

F32 = "float32"
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
ALL_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
TOLERANCE = {"float16": 2e-3, "bfloat16": 2e-2, "float32": 1e-5, "float64": 1e-10}


@dataclasses.dataclass(frozen=True)
class Arr:
    """A NumPy array that each backend receives as its native array of ``dtype``."""

    value: np.ndarray
    dtype: str
    flavor: str = "plain"  # "grad": torch requires_grad / tf.Variable

    def __repr__(self):
        flavor = "" if self.flavor == "plain" else ", " + self.flavor
        return f"Arr({self.dtype}{list(self.value.shape)}{flavor})"


@dataclasses.dataclass(frozen=True)
class Raw:
    """A value every backend receives unchanged (numbers, NumPy scalars, strings,
    lists, None)."""

    value: Any

    def __repr__(self):
        v = self.value
        return (
            f"Raw({type(v).__name__}:{v!r})"
            if isinstance(v, np.generic)
            else f"Raw({v!r})"
        )


@dataclasses.dataclass(frozen=True)
class Params:
    """A parameter dict whose entries are :class:`Arr` or :class:`Raw`."""

    entries: tuple  # ((name, Arr | Raw), ...)

    def __repr__(self):
        return "Params(" + ", ".join(f"{k}={v!r}" for k, v in self.entries) + ")"


class Given:
    """A value that is already native to one backend (a graph tensor, a meta tensor):
    passed through unchanged."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Given({type(self.value).__name__})"


@dataclasses.dataclass
class Case:
    fn: str  # a name in _api.SPECS, or "Layer.method" (see LAYERS)
    args: dict  # parameter name -> Arr | Raw | Params
    label: str  # what was changed from the baseline
    arg: str | None = None  # the argument the mutation targets (an error must name it)
    # further names an error may cite instead (e.g. "key" for a length change)
    names: tuple = ()
    # dropout > 0: only shapes and dtypes can agree across frameworks
    random: bool = False
    # NaN/inf or overflowing values in query/key/value: see `differ`
    lenient: bool = False

    @property
    def id(self):
        return f"{self.fn}[{self.label}]"


@dataclasses.dataclass
class Outcome:
    kind: str  # "ok" or "raise"
    value: Any = None  # ok: a list of NumPy arrays / Python values
    dtypes: tuple = ()  # ok: the dtype names of the native results
    exc: type | None = None
    message: str = ""

    def describe(self):
        if self.kind == "raise":
            return f"{self.exc.__name__}: {self.message}"
        return "ok " + ", ".join(
            f"{d}{list(np.shape(v))}"
            for v, d in zip(self.value, self.dtypes, strict=False)
        )


# --- the baselines: one valid call per function, sizes by letter
# -----------------------------------------------------

SIZES = {"B": 2, "Lq": 3, "Lk": 5, "d": 4, "dv": 6, "h": 7, "dk": 3, "D": 6, "Dk": 5}


def _rand(shape, seed, dtype=F32):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(np.float64)


def arr(shape, seed=0, dtype=F32):
    return Arr(_rand(shape, seed), dtype)


def _params_mha(seed=0, d=6, dq=6, dk=6, dv=6, do=6, bias=True, kv=None):
    rng = np.random.default_rng(seed)
    # the key/value width Hkv * d (grouped-query attention)
    kv = d if kv is None else kv
    shp = {"w_q": (dq, d), "w_k": (dk, kv), "w_v": (dv, kv), "w_o": (d, do)}
    if bias:
        shp.update(b_q=(d,), b_k=(kv,), b_v=(kv,), b_o=(do,))
    return Params(tuple((n, Arr(rng.normal(size=s) / 2, F32)) for n, s in shp.items()))


def _sdpa_base(causal=False, masked=False):
    b, lq, lk, d, dv = (SIZES[x] for x in ("B", "Lq", "Lk", "d", "dv"))
    args = {
        "query": arr((b, lq, d), 1),
        "key": arr((b, lk, d), 2),
        "value": arr((b, lk, dv), 3),
    }
    if masked:
        rng = np.random.default_rng(4)
        m = rng.random((lq, lk)) < 0.7
        m[:, 0] = True
        args["mask"] = Arr(m, "bool")
        args["bias"] = arr((lq, lk), 5)
    if causal:
        args["causal"] = Raw(True)
    return args


def baselines():
    """``{fn: [(label, args), ...]}``: valid calls the mutations start from.
    Arguments left out take defaults."""
    b, lq, lk, d = (SIZES[x] for x in ("B", "Lq", "Lk", "d"))
    sdpa = [
        ("plain", _sdpa_base()),
        ("masked_causal", _sdpa_base(causal=True, masked=True)),
    ]
    flash = [(lab, dict(a, block_size=Raw(2))) for lab, a in sdpa] + [
        ("default_tiles", _sdpa_base(True, True))
    ]
    attn3 = {
        "query": arr((b, lq, 4), 1),
        "key": arr((b, lk, 3), 2),
        "value": arr((b, lk, 2), 3),
    }
    return {
        "softmax": [
            ("plain", {"x": arr((b, lq, lk), 1)}),
            (
                "masked",
                {
                    "x": arr((b, lq, lk), 1),
                    "mask": Arr(
                        np.random.default_rng(2).random((lq, lk)) < 0.6, "bool"
                    ),
                },
            ),
        ],
        "scaled_dot_product_attention": sdpa
        + [("weights", dict(_sdpa_base(True, True), return_weights=Raw(True)))],
        "flash_attention": flash,
        "additive_attention": [
            (
                "plain",
                dict(
                    attn3, w_query=arr((4, 7), 4), w_key=arr((3, 7), 5), v=arr((7,), 6)
                ),
            )
        ],
        "bilinear_attention": [("plain", dict(attn3, w=arr((4, 3), 4)))],
        "multi_head_attention": [
            (
                "plain",
                {
                    "query": arr((b, lq, 6), 1),
                    "key": arr((b, 4, 6), 2),
                    "value": arr((b, 4, 6), 3),
                    "params": _params_mha(),
                    "num_heads": Raw(2),
                },
            ),
            (
                "masked_causal",
                {
                    "query": arr((b, lq, 6), 1),
                    "key": arr((b, 4, 6), 2),
                    "value": arr((b, 4, 6), 3),
                    "params": _params_mha(),
                    "num_heads": Raw(2),
                    "mask": Arr(np.array([True, True, False, True]), "bool"),
                    "bias": arr((2, lq, 4), 7),
                    "causal": Raw(True),
                },
            ),
        ],
        "causal_mask": [
            ("square", {"lq": Raw(3)}),
            ("rect", {"lq": Raw(3), "lk": Raw(5)}),
        ],
        "padding_mask": [
            ("plain", {"lengths": Arr(np.array([1, 3, 0]), "int64")}),
            (
                "max_len",
                {"lengths": Arr(np.array([1, 3, 0]), "int64"), "max_len": Raw(4)},
            ),
        ],
        "mask_from_keep": [
            ("int", {"keep": Arr(np.array([[1, 0, 1], [0, 0, 1]]), "int64")})
        ],
        "mask_from_ignore": [
            ("plain", {"ignore": Arr(np.array([[True, False, True]]), "bool")})
        ],
        "mask_from_additive": [
            (
                "plain",
                {"additive": Arr(np.array([[0.0, -np.inf, -1e9, -5e3, 1.0]]), F32)},
            )
        ],
        "mask_to_additive": [
            ("plain", {"mask": Arr(np.array([[True, False, True]]), "bool")})
        ],
        "sinusoidal_positional_encoding": [
            ("plain", {"length": Raw(5), "d_model": Raw(6)})
        ],
        "window_mask": [
            ("plain", {"lq": Raw(4), "lk": Raw(6), "window": Raw((2, 1))}),
            (
                "bottom_right",
                {
                    "lq": Raw(4),
                    "lk": Raw(6),
                    "window": Raw((1, None)),
                    "align": Raw("bottom_right"),
                },
            ),
        ],
        "document_mask": [
            ("self", {"segments_q": Arr(np.array([0, 0, 1, 1, 2]), "int64")}),
            (
                "cross",
                {
                    "segments_q": Arr(np.array([[0, 1, 1], [2, 2, 2]]), "int64"),
                    "segments_k": Arr(
                        np.array([[0, 0, 1, 1, 3], [2, 2, 0, 2, 2]]), "int64"
                    ),
                },
            ),
        ],
        "rotary_embedding": [
            ("plain", {"x": arr((b, 5, 4), 1)}),
            (
                "positions",
                {
                    "x": arr((b, 5, 4), 1),
                    "positions": Arr(np.array([3, 4, 5, 6, 7]), "int64"),
                    "base": Raw(500.0),
                    "interleaved": Raw(True),
                },
            ),
        ],
        "alibi_slopes": [("plain", {"num_heads": Raw(6)})],
        "alibi_bias": [
            ("plain", {"num_heads": Raw(3), "lq": Raw(2), "lk": Raw(4)}),
            (
                "bottom_right",
                {
                    "num_heads": Raw(5),
                    "lq": Raw(4),
                    "lk": Raw(3),
                    "align": Raw("bottom_right"),
                },
            ),
        ],
    }


def _modern_base():
    """Every option of today's models at once: GQA (4 query heads over 2), a window,
    bottom-right alignment, softcap, a sink per head and row, a mask and a bias,
    causal."""
    b, lq, lk, d, dv = (SIZES[x] for x in ("B", "Lq", "Lk", "d", "dv"))
    rng = np.random.default_rng(11)
    m = rng.random((lq, lk)) < 0.8
    m[:, -1] = True
    return {
        "query": arr((b, 4, lq, d), 1),
        "key": arr((b, 2, lk, d), 2),
        "value": arr((b, 2, lk, dv), 3),
        "mask": Arr(m, "bool"),
        "bias": arr((lq, lk), 5),
        "causal": Raw(True),
        "window": Raw((2, 1)),
        "align": Raw("bottom_right"),
        "enable_gqa": Raw(True),
        "softcap": Raw(2.0),
        "sink": arr((4, lq), 6),
    }


def _modern_mha():
    b, lq = SIZES["B"], SIZES["Lq"]
    return {
        "query": arr((b, lq, 6), 1),
        "key": arr((b, 4, 6), 2),
        "value": arr((b, 4, 6), 3),
        "params": _params_mha(d=8, dk=6, dv=6, kv=4),
        "num_heads": Raw(4),
        "num_kv_heads": Raw(2),
        "causal": Raw(True),
        "window": Raw((1, 0)),
        "align": Raw("bottom_right"),
        "softcap": Raw(3.0),
        "rope": Raw(10000.0),
    }


def _with_modern(bases):
    bases["scaled_dot_product_attention"].append(("modern", _modern_base()))
    bases["scaled_dot_product_attention"].append(
        ("modern_weights", dict(_modern_base(), return_weights=Raw(True)))
    )
    bases["flash_attention"].append(("modern", dict(_modern_base(), block_size=Raw(2))))
    bases["flash_attention"].append(
        ("modern_lse", dict(_modern_base(), return_lse=Raw(True)))
    )
    bases["multi_head_attention"].append(("modern", _modern_mha()))
    bases["causal_mask"].append(
        ("bottom_right", {"lq": Raw(4), "lk": Raw(3), "align": Raw("bottom_right")})
    )
    return bases


# Shape letters of each baseline's arrays, so that a letter set to 0 or 1 changes every
# array that uses it.
LETTERS = {
    "scaled_dot_product_attention": {
        "query": "B Lq d",
        "key": "B Lk d",
        "value": "B Lk dv",
        "mask": "Lq Lk",
        "bias": "Lq Lk",
    },
    "flash_attention": {
        "query": "B Lq d",
        "key": "B Lk d",
        "value": "B Lk dv",
        "mask": "Lq Lk",
        "bias": "Lq Lk",
    },
    "softmax": {"x": "B Lq Lk", "mask": "Lq Lk"},
    "additive_attention": {"query": "B Lq dq", "key": "B Lk dk", "value": "B Lk dv"},
    "bilinear_attention": {"query": "B Lq dq", "key": "B Lk dk", "value": "B Lk dv"},
    "multi_head_attention": {
        "query": "B Lq Dq",
        "key": "B Lk Dk",
        "value": "B Lk Dv",
        "mask": "Lk",
        "bias": "H Lq Lk",
    },
}
LETTERS_BY_BASE = {
    ("scaled_dot_product_attention", "modern"): {
        "query": "B H Lq d",
        "key": "B Hk Lk d",
        "value": "B Hk Lk dv",
        "mask": "Lq Lk",
        "bias": "Lq Lk",
        "sink": "H Lq",
    },
}
LETTERS_BY_BASE[("scaled_dot_product_attention", "modern_weights")] = LETTERS_BY_BASE[
    ("scaled_dot_product_attention", "modern")
]
LETTERS_BY_BASE[("flash_attention", "modern")] = LETTERS_BY_BASE[
    ("scaled_dot_product_attention", "modern")
]
LETTERS_BY_BASE[("flash_attention", "modern_lse")] = LETTERS_BY_BASE[
    ("scaled_dot_product_attention", "modern")
]
# The sizes a zero or one may replace (feature sizes of the additive/bilinear/MHA
# parameters stay put: a zero there is a parameter-shape mismatch, which the parameter
# mutations cover).
ZERO_LETTERS = {
    "scaled_dot_product_attention": ("B", "Lq", "Lk", "d", "dv"),
    "flash_attention": ("B", "Lq", "Lk", "d", "dv"),
    "softmax": ("B", "Lq", "Lk"),
    "additive_attention": ("B", "Lq", "Lk", "dv"),
    "bilinear_attention": ("B", "Lq", "Lk", "dv"),
    "multi_head_attention": ("B", "Lq", "Lk"),
}


# --- kinds: what each argument is, and how to get it wrong
# -----------------------------------------------------------

KINDS = {
    "query": "input",
    "key": "input",
    "value": "input",
    "x": "input",
    "w_query": "weight",
    "w_key": "weight",
    "v": "weight",
    "w": "weight",
    "mask": "mask",
    "bias": "bias",
    "params": "params",
    "causal": "flag",
    "return_weights": "flag",
    "return_lse": "flag",
    "use_bias": "flag",
    "training": "flag",
    "scale": "scale",
    "dropout": "dropout",
    "seed": "seed",
    "axis": "axis",
    "num_heads": "count",
    "lq": "size",
    "lk": "size_or_none",
    "max_len": "size_or_none",
    "length": "size",
    "d_model": "size",
    "base": "base",
    "threshold": "threshold",
    "dtype": "dtype_name",
    "block_size": "block",
    "lengths": "lengths",
    "keep": "keep",
    "ignore": "bool_array",
    "additive": "input",
    "query_dim": "size_or_none",
    "key_dim": "size_or_none",
    "value_dim": "size_or_none",
    "output_dim": "size_or_none",
    "hidden_dim": "size",
    "window": "window",
    "align": "align",
    "enable_gqa": "flag",
    "softcap": "softcap",
    "sink": "sink",
    "num_kv_heads": "count_or_none",
    "rope": "rope",
    "segments_q": "segments",
    "segments_k": "segments",
    "positions": "positions",
    "interleaved": "flag",
}
WINDOWS = [
    Raw(None),
    Raw((2, 1)),
    Raw([2, 1]),
    Raw((None, 0)),
    Raw((None, 2)),
    Raw((0, 0)),
    Raw((None, None)),
    Raw((-1, 0)),
    Raw((2,)),
    Raw(3),
    Raw((2.0, 1)),
    Raw((np.int64(2), None)),
    Raw("2"),
    Raw((2**63, 0)),
    Raw((True, 0)),
    Raw((1, 2, 3)),
    Raw((0, 10**6)),
]
ALIGNS = [
    Raw("top_left"),
    Raw("bottom_right"),
    Raw("bottom-right"),
    Raw("TOP_LEFT"),
    Raw(None),
    Raw(1),
]
ROPES = [
    Raw(None),
    Raw(10000.0),
    Raw(np.float32(500.0)),
    Raw(2),
    Raw(1.0),
    Raw(0.5),
    Raw(float("inf")),
    Raw(float("nan")),
    Raw("x"),
    Raw(True),
    Raw(10**400),
]

NOT_ARRAYS = [Raw([[1.0, 2.0]]), Raw("text"), Raw(3.0), Raw(object())]
INT_LIKE = [
    Raw(np.int64(3)),
    Raw(np.int32(2)),
    Raw(np.uint8(2)),
    Raw(np.bool_(True)),
    Raw(True),
    Raw(2.0),
    Raw(-1),
    Raw(0),
    Raw("3"),
    Raw(None),
    Raw(2**63),
    Raw(2**64),
    Raw(10**400),
    Raw(complex(2, 0)),
]
REAL_LIKE = [
    Raw(np.float32(0.5)),
    Raw(np.float64(0.25)),
    Raw(np.int64(2)),
    Raw(2),
    Raw(True),
    Raw("0.5"),
    Raw(None),
    Raw(float("inf")),
    Raw(float("-inf")),
    Raw(float("nan")),
    Raw(0.0),
    Raw(-0.5),
    Raw(10**400),
    Raw(1e-320),
    Raw(1e300),
    Raw(float(np.finfo(np.float32).max)),
    Raw(complex(0.5, 0)),
]
FLAGS = [
    Raw(True),
    Raw(False),
    Raw(np.True_),
    Raw(np.False_),
    Raw(1),
    Raw(0),
    Raw(None),
    Raw("yes"),
    Raw(1.0),
]
EXTREMES = {
    "min": np.finfo(np.float32).min,
    "max": np.finfo(np.float32).max,
    "inf": np.inf,
    "-inf": -np.inf,
    "nan": np.nan,
    "-1e9": -1e9,
    "1e5": 1e5,
}


def _with(args, **changes):
    out = dict(args)
    out.update(changes)
    return out


def _astype(a, dtype):
    v = a.value
    if dtype == "bool":
        v = v > 0
    elif dtype.startswith(("int", "uint")):
        v = np.abs(np.round(v * 2)) if dtype.startswith("uint") else np.round(v * 2)
    return Arr(np.asarray(v), dtype, a.flavor)


def _set_first(a, value):
    v = np.array(a.value, dtype=np.float64)
    if v.size:
        v.reshape(-1)[0] = value
    return Arr(v, a.dtype, a.flavor)


def _resize(a, letters, letter, size):
    """``a`` with every axis labelled ``letter`` cut (or tiled) to ``size``."""
    v = a.value
    for axis, name in enumerate(letters.split()):
        if name == letter:
            v = (
                np.take(v, np.arange(size) % max(v.shape[axis], 1), axis=axis)
                if size
                else np.take(v, [], axis)
            )
    return Arr(np.asarray(v), a.dtype, a.flavor)


def mutations(fn, label, args, name, kind, dropout_seed=True):
    """Cases that change argument ``name`` (of ``kind``) in the baseline ``args``. A
    ``seed`` of dropout comes with ``dropout=0.5`` (unless ``dropout_seed`` is False:
    a layer's initialisation seed)."""
    cur = args.get(name)
    out = []

    def add(tag, value, names=(), **kw):
        # A changed size may legitimately clash with an array (num_heads against a bias
        # of the old head count).
        names = names + (
            ("mask", "bias", "params") if kind in ("count", "count_or_none") else ()
        )
        out.append(
            Case(
                fn,
                _with(args, **{name: value}),
                f"{label}:{name}={tag}",
                name,
                names,
                **kw,
            )
        )

    arrays = (
        "input",
        "weight",
        "bias",
        "mask",
        "bool_array",
        "lengths",
        "keep",
        "sink",
        "segments",
        "positions",
    )
    if kind in arrays:
        for i, r in enumerate(NOT_ARRAYS):
            add(f"not_array{i}", r)
    if kind in arrays:
        base = cur if isinstance(cur, Arr) else None
        # an optional array left out of this baseline: build one of the score shape
        if base is None:
            base = _default_optional(fn, args, name)
        if base is not None:
            for dt in ALL_DTYPES:
                if dt != base.dtype:
                    add(f"dtype_{dt}", _astype(base, dt))
            # ranks: a scalar, a vector, one more leading axis that does not broadcast
            add(
                "rank0",
                Arr(np.asarray(base.value.reshape(-1)[:1].reshape(())), base.dtype),
            )
            if base.value.ndim > 1:
                add(
                    "rank1",
                    Arr(base.value.reshape(-1)[: base.value.shape[-1]], base.dtype),
                )
            add("extra_axis", Arr(np.stack([base.value] * 3), base.dtype))
            if base.value.ndim:
                add(
                    "last_axis_plus_1",
                    Arr(
                        np.concatenate([base.value, base.value[..., :1]], -1),
                        base.dtype,
                    ),
                )
            if kind in (
                "input",
                "weight",
                "bias",
                "sink",
                "positions",
            ) and base.dtype in FLOAT_DTYPES + ("int64",):
                lenient = kind not in ("bias", "sink") and name != "additive"
                if base.dtype == "int64":
                    base = Arr(base.value, "float64")
                for tag, x in EXTREMES.items():
                    add(f"first={tag}", _set_first(base, x), lenient=lenient)
                add(
                    "all=max",
                    Arr(
                        np.full(base.value.shape, np.finfo(np.float32).max), base.dtype
                    ),
                    lenient=lenient,
                )
            if kind == "bias":
                add(
                    "all=min",
                    Arr(
                        np.full(base.value.shape, np.finfo(np.float32).min), base.dtype
                    ),
                )
                add("all=-inf", Arr(np.full(base.value.shape, -np.inf), base.dtype))
                add("float64", Arr(base.value, "float64"))
            if kind == "mask":
                add("all_false", Arr(np.zeros(base.value.shape, bool), "bool"))
                add("scalar_true", Arr(np.array(True), "bool"))
                add("scalar_false", Arr(np.array(False), "bool"))
                add("python_bool", Raw(True))
            if kind == "lengths":
                add("negative", Arr(np.array([-1, 2, 0]), base.dtype))
                add("empty", Arr(np.zeros((0,), np.int64), base.dtype))
            if kind == "keep":
                add("value_2", Arr(np.array([[1, 2, 0]]), base.dtype))
                add("value_-1", Arr(np.array([[1, -1, 0]]), base.dtype))
                add("bool", _astype(base, "bool"))
                add("empty", Arr(np.zeros((0, 3), np.int64), base.dtype))
            if kind in ("input", "weight"):
                add("grad", dataclasses.replace(base, flavor="grad"))
            if kind == "sink":
                add("per_head", Arr(base.value[..., :1], base.dtype))
            if kind == "segments":
                add("negative", Arr(-base.value, base.dtype))
        if name in ("mask", "bias", "sink", "segments_k", "positions"):
            add("none", Raw(None))
    elif kind == "params":
        out += _params_mutations(fn, label, args)
    elif kind == "flag":
        for i, r in enumerate(FLAGS):
            add(f"v{i}", r)
    elif kind == "window":
        for i, r in enumerate(WINDOWS):
            add(f"v{i}", r)
    elif kind == "align":
        for i, r in enumerate(ALIGNS):
            add(f"v{i}", r)
    elif kind == "rope":
        for i, r in enumerate(ROPES):
            add(f"v{i}", r)
    elif kind == "count_or_none":
        for i, r in enumerate(INT_LIKE + [Raw(1), Raw(4), Raw(3)]):
            add(f"v{i}", r)
    elif kind in ("scale", "dropout", "base", "threshold", "softcap"):
        for i, r in enumerate(REAL_LIKE):
            # scores overflow
            huge = (
                kind in ("scale", "softcap")
                and isinstance(r.value, float)
                and 1e30 < r.value < 1e39
            )
            add(
                f"v{i}",
                r,
                random=(kind == "dropout" and _positive(r.value)),
                lenient=huge,
            )
        if kind == "dropout":
            add("one", Raw(1.0))
            add("half_seeded", Raw(0.5), random=True)
    elif kind == "seed":
        for i, r in enumerate(
            INT_LIKE + [Raw(2**63 - 1), Raw(np.uint64(2**64 - 1)), Raw(np.int64(-1))]
        ):
            extra = {"dropout": Raw(0.5)} if dropout_seed else {}
            out.append(
                Case(
                    fn,
                    _with(args, seed=r, **extra),
                    f"{label}:seed=v{i}",
                    "seed",
                    random=dropout_seed,
                )
            )
    elif kind in ("count", "size", "size_or_none", "block", "axis"):
        for i, r in enumerate(
            INT_LIKE + [Raw(np.int64(-1)), Raw(np.uint64(2**64 - 1))]
        ):
            # sizes >= 2**63 must be refused before anything is allocated
            add(f"v{i}", r)
        if kind == "axis":
            for ax in (0, 1, 2, -1, -3, 3):
                add(f"axis{ax}", Raw(ax))
    elif kind == "dtype_name":
        for i, r in enumerate(
            [Raw(x) for x in FLOAT_DTYPES + ("int32", "complex64", "float", "bool", "")]
            + [Raw(np.float32), Raw(np.dtype("float32")), Raw(None), Raw(3)]
        ):
            add(f"v{i}", r)
    else:
        raise AssertionError(f"unknown kind {kind} for {fn}.{name}")
    return out


def _positive(v):
    try:
        return bool(v > 0) and bool(v < 1)
    except TypeError:
        return False


def _default_optional(fn, args, name):
    """An array for an optional argument the baseline leaves out: a mask/bias of the
    score shape."""
    q, k = args.get("query"), args.get("key")
    if name in ("mask", "bias") and isinstance(q, Arr) and isinstance(k, Arr):
        shape = (q.value.shape[-2], k.value.shape[-2])
        if fn == "multi_head_attention":
            shape = (2, *shape)
        rng = np.random.default_rng(9)
        if name == "mask":
            m = rng.random(shape) < 0.7
            m[..., 0] = True
            return Arr(m, "bool")
        return Arr(rng.normal(size=shape), F32)
    if name == "mask" and isinstance(args.get("x"), Arr):
        return Arr(
            np.random.default_rng(9).random(args["x"].value.shape[-2:]) < 0.7, "bool"
        )
    return None


def _params_mutations(fn, label, args):
    entries = dict(args["params"].entries)
    out = []

    def add(tag, params, names=()):
        out.append(
            Case(
                fn, _with(args, params=params), f"{label}:params={tag}", "params", names
            )
        )

    add("list", Raw([1, 2, 3]))
    add("none", Raw(None))
    for drop in entries:
        add(
            f"missing_{drop}",
            Params(tuple((k, v) for k, v in entries.items() if k != drop)),
            (drop,),
        )
    add(
        "unknown_key",
        Params(tuple(entries.items()) + (("w_x", arr((6, 6))),)),
        ("w_x",),
    )
    for key in ("w_k", "b_o"):
        for dt in ALL_DTYPES:
            if dt != F32:
                changed = dict(entries, **{key: _astype(entries[key], dt)})
                add(f"{key}_{dt}", Params(tuple(changed.items())), (key,))
        for tag, value in (
            ("list", Raw([[1.0] * 6] * 6)),
            ("string", Raw("w")),
            ("none", Raw(None)),
            ("rank1", arr((6,))),
            ("rank3", arr((1, 6, 6))),
            ("wrong", arr((5, 6))),
        ):
            changed = dict(entries, **{key: value})
            add(f"{key}_{tag}", Params(tuple(changed.items())), (key,))
    no_bias = Params(
        tuple((k, v) for k, v in entries.items() if not k.startswith("b_"))
    )
    add("no_biases", no_bias)
    add(
        "grad",
        Params(
            tuple(
                (k, dataclasses.replace(v, flavor="grad")) for k, v in entries.items()
            )
        ),
    )
    return out


def letter_cases(fn, label, args):
    """Every array that uses a shape letter resized together: zero-size axes and
    size-one axes."""
    letters = LETTERS_BY_BASE.get((fn, label), LETTERS.get(fn))
    if not letters or (fn == "multi_head_attention" and label == "modern"):
        return []
    out = []
    for letter in ZERO_LETTERS[fn]:
        for size in (0, 1):
            new = dict(args)
            for name, lab in letters.items():
                if isinstance(new.get(name), Arr):
                    # masks/biases carry the trailing axes
                    lab = " ".join(lab.split()[-new[name].value.ndim :])
                    new[name] = _resize(new[name], lab, letter, size)
            if (
                fn == "multi_head_attention"
                and letter == "Lk"
                and isinstance(new.get("mask"), Arr)
            ):
                new["mask"] = _resize(new["mask"], "Lk", "Lk", size)
            out.append(Case(fn, new, f"{label}:{letter}={size}", None))
    return out


def dtype_cases(fn, label, args):
    """The main inputs (and parameters) together in every dtype: reduced precision,
    float64, integers."""
    names = [
        n
        for n in (
            "query",
            "key",
            "value",
            "x",
            "w_query",
            "w_key",
            "v",
            "w",
            "additive",
        )
        if n in args and isinstance(args[n], Arr)
    ]
    if not names:
        return []
    out = []
    for dt in ALL_DTYPES:
        new = {n: _astype(args[n], dt) for n in names}
        if isinstance(args.get("params"), Params):
            new["params"] = Params(
                tuple((k, _astype(v, dt)) for k, v in args["params"].entries)
            )
        out.append(
            Case(fn, _with(args, **new), f"{label}:all={dt}", names[0], tuple(names))
        )
        if dt in ("float16", "bfloat16") and "bias" in args:
            for tag, x in (
                ("1e5", 1e5),
                ("100.3", 100.3),
                ("min", np.finfo(np.float32).min),
            ):
                b = _set_first(args["bias"], x)
                out.append(
                    Case(
                        fn,
                        _with(args, **new, bias=Arr(b.value, F32)),
                        f"{label}:all={dt},bias_f32_first={tag}",
                        "bias",
                    )
                )
    return out


# --- layers: constructor, call and set_params, driven from the NumPy layers' signatures
# -----------------------------


def layer_signatures(mod):
    """``{layer: {"init": Signature, "call": Signature}}`` of a backend module's
    layers, without ``self``, the framework's own extras (``**kwargs`` of Keras
    layers) and with Keras' ``attention_mask`` read as ``mask``."""
    out = {}
    for name in LAYERS:
        cls = getattr(mod, name)
        call = (
            cls.forward
            if hasattr(cls, "forward")
            else cls.call
            if hasattr(cls, "call")
            and "attention_mask" in inspect.signature(cls.call).parameters
            else cls.__call__
        )
        sigs = {}
        for part, fn in (("init", cls.__init__), ("call", call)):
            params = [
                p.replace(name="mask") if p.name == "attention_mask" else p
                for p in inspect.signature(fn).parameters.values()
                if p.name != "self" and p.kind is not p.VAR_KEYWORD
            ]
            sigs[part] = inspect.Signature(params)
        out[name] = sigs
    return out


def _layer_baselines():
    b, lq, lk = (SIZES[x] for x in ("B", "Lq", "Lk"))
    return {
        "MultiHeadAttention": [
            (
                "self",
                {
                    "init": {"d_model": Raw(6), "num_heads": Raw(2)},
                    "call": {"query": arr((b, lq, 6), 1)},
                },
            ),
            (
                "cross",
                {
                    "init": {
                        "d_model": Raw(6),
                        "num_heads": Raw(2),
                        "query_dim": Raw(4),
                        "key_dim": Raw(5),
                        "value_dim": Raw(3),
                        "output_dim": Raw(2),
                        "seed": Raw(3),
                    },
                    "call": {
                        "query": arr((b, lq, 4), 1),
                        "key": arr((b, lk, 5), 2),
                        "value": arr((b, lk, 3), 3),
                        "mask": Arr(np.array([True, True, False, True, True]), "bool"),
                        "bias": arr((2, lq, lk), 4),
                        "causal": Raw(True),
                    },
                },
            ),
            (
                "modern",
                {
                    "init": {
                        "d_model": Raw(8),
                        "num_heads": Raw(4),
                        "num_kv_heads": Raw(2),
                        "query_dim": Raw(6),
                        "window": Raw((1, 0)),
                        "align": Raw("bottom_right"),
                        "softcap": Raw(3.0),
                        "rope": Raw(10000.0),
                    },
                    "call": {
                        "query": arr((b, lq, 6), 1),
                        "key": arr((b, lk, 6), 2),
                        "causal": Raw(True),
                    },
                },
            ),
        ],
        "AdditiveAttention": [
            (
                "plain",
                {
                    "init": {
                        "query_dim": Raw(4),
                        "key_dim": Raw(3),
                        "hidden_dim": Raw(5),
                    },
                    "call": {
                        "query": arr((b, lq, 4), 1),
                        "key": arr((b, lk, 3), 2),
                        "value": arr((b, lk, 2), 3),
                        "mask": Arr(np.array([True, False, True, True, True]), "bool"),
                    },
                },
            )
        ],
    }


LAYERS = ("MultiHeadAttention", "AdditiveAttention")


def _layer_case(fn, parts, label, arg=None, names=(), **kw):
    args = {f"{part}.{k}": v for part, d in parts.items() for k, v in d.items()}
    return Case(fn, args, label, arg, names, **kw)


def _set_params_cases(fn, label, parts):
    """``set_params`` with NumPy dicts: the layer's own shapes, then every way to get
    one wrong."""
    import attnbook.numpy as an

    init = {k: v.value for k, v in parts["init"].items()}
    good = an.__dict__[fn](**init).get_params()
    first = sorted(good)[0]
    out = []

    def add(tag, params, names=()):
        out.append(
            _layer_case(
                fn,
                {"init": parts["init"], "set": {"params": Raw(params)}},
                f"{label}:set_params={tag}",
                "params",
                names or (first,),
            )
        )

    add("own", good)
    add("float64", {k: v.astype(np.float64) for k, v in good.items()})
    add("int", {k: np.round(v).astype(np.int64) for k, v in good.items()})
    add("list", {k: v.tolist() for k, v in good.items()})
    for tag, bad in (
        ("complex", good[first].astype(np.complex64)),
        ("object", good[first].astype(object)),
        ("string", np.full(good[first].shape, "w")),
        ("bool", good[first] > 0),
        ("none", None),
        ("ragged", [[1.0], [1.0, 2.0]]),
        ("scalar", np.float32(1.0)),
        ("wrong_shape", np.zeros(good[first].shape + (1,), np.float32)),
        ("nan", np.full(good[first].shape, np.nan, np.float32)),
    ):
        add(tag, dict(good, **{first: bad}))
    add("missing", {k: v for k, v in good.items() if k != first})
    add("unknown", dict(good, w_x=np.zeros((2, 2), np.float32)), ("w_x",))
    add("not_mapping", list(good.values()), ("params",))
    return out


def layer_cases():
    cases = []
    import attnbook.numpy as an

    sigs = layer_signatures(an)
    for fn, bases in _layer_baselines().items():
        for label, parts in bases:
            cases.append(_layer_case(fn, parts, f"{label}:baseline"))
            for part in ("init", "call"):
                for name in sigs[fn][part].parameters:
                    kind = "flag" if name == "training" else KINDS[name]
                    if part == "init" and name in ("query", "key", "value"):
                        continue
                    base = dict(parts[part])
                    # A valid but different width makes the call's inputs the wrong
                    # width: the error names them.
                    names = (
                        ("query", "key", "value", "params") if part == "init" else ()
                    )
                    for c in mutations(fn, label, base, name, kind, dropout_seed=False):
                        new = dict(parts, **{part: {k: v for k, v in c.args.items()}})
                        cases.append(
                            _layer_case(
                                fn,
                                new,
                                f"{part}.{c.label}",
                                c.arg,
                                c.names + names,
                                random=c.random,
                                lenient=c.lenient,
                            )
                        )
            cases.append(
                _layer_case(
                    fn,
                    dict(parts, init=dict(parts["init"], dtype=Raw("float64"))),
                    f"{label}:float64_layer_float32_input",
                    "query",
                )
            )
            cases += _set_params_cases(fn, label, parts)
    return cases


def run_layer(B, case):
    parts = {"init": {}, "call": {}, "set": {}}
    for k, v in case.args.items():
        part, name = k.split(".", 1)
        parts[part][name] = v

    def call():
        cls = getattr(B.mod, case.fn)
        layer = cls(**{k: native(B, v) for k, v in parts["init"].items()})
        if B.name == "torch":
            layer.eval()
        if parts["set"]:
            layer.set_params(parts["set"]["params"].value)
            return layer.get_params()
        return _call_positional(layer, _layer_call_signature(case.fn), parts["call"], B)

    return outcome(call)


def _layer_call_signature(fn):
    import attnbook.numpy as an

    return layer_signatures(an)[fn]["call"]


def _call_positional(fn, sig, args, B):
    """Call ``fn`` with the arguments of ``sig`` positionally up to the first one
    left out, then by keyword."""
    pos, kw, gap = [], {}, False
    for name, p in sig.parameters.items():
        if name not in args:
            gap = True
            continue
        if gap or p.kind is p.KEYWORD_ONLY:
            kw[name] = native(B, args[name])
        else:
            pos.append(native(B, args[name]))
    return fn(*pos, **kw)


def every_case():
    """All cases of :data:`_api.SPECS`, in a stable order."""
    cases = []
    for fn, bases in _with_modern(baselines()).items():
        params = inspect.signature(_api.SPECS[fn]).parameters
        for label, args in bases:
            cases.append(Case(fn, dict(args), f"{label}:baseline"))
            for name in params:
                cases += mutations(fn, label, args, name, KINDS[name])
            cases += letter_cases(fn, label, args)
            cases += dtype_cases(fn, label, args)
    seen, unique = set(), []
    for c in cases:
        if c.id not in seen:
            seen.add(c.id)
            unique.append(c)
    return unique


# --- running a case on one backend
# -----------------------------------------------------------------------------------


def native(B, value):
    """A case value as backend ``B`` receives it."""
    if isinstance(value, (Raw, Given)):
        return value.value
    if isinstance(value, Params):
        return {k: native(B, v) for k, v in value.entries}
    x = value.value
    if B.name == "numpy":
        if value.dtype == "bfloat16":
            import ml_dtypes

            return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16)
        return np.asarray(x).astype(value.dtype)
    if B.name == "torch":
        import torch

        if value.dtype == "bfloat16":
            t = torch.from_numpy(np.asarray(x, np.float32)).to(torch.bfloat16)
        else:
            # not ascontiguousarray: it makes 0-d arrays 1-d
            t = torch.from_numpy(np.array(x, value.dtype))
        if value.flavor == "grad" and t.is_floating_point():
            t.requires_grad_(True)
        return t
    import tensorflow as tf

    if value.dtype == "bfloat16":
        t = tf.cast(tf.constant(np.asarray(x, np.float32)), tf.bfloat16)
    else:
        t = tf.constant(np.asarray(x).astype(value.dtype))
    return tf.Variable(t) if value.flavor == "grad" else t


def _dtype_name(x):
    if hasattr(x, "dtype"):
        d = x.dtype
        name = (
            getattr(d, "name", None)
            if not hasattr(d, "is_floating_point")
            else str(d).replace("torch.", "")
        )
        return str(name if name is not None else d)
    return type(x).__name__


def _to_numpy(x):
    if isinstance(x, (bool, int, float, type(None))):
        return x
    if getattr(x, "is_meta", False):  # torch's meta device: a shape, no values
        return np.empty(tuple(x.shape))
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()
        return x.numpy()
    if hasattr(x, "numpy"):
        x = x.numpy()
    x = np.asarray(x)
    if x.dtype.kind == "f" or x.dtype.name == "bfloat16":
        return x.astype(np.float64)
    return x


def outcome(call):
    """Run ``call()``; the result as NumPy, or the exception."""
    try:
        res = call()
    except Exception as err:  # noqa: BLE001 - recording every exception is the point
        return Outcome("raise", exc=type(err), message=str(err))
    items = (
        [res[k] for k in sorted(res)]
        if isinstance(res, dict)
        else list(res)
        if isinstance(res, tuple)
        else [res]
    )
    return Outcome(
        "ok", [_to_numpy(r) for r in items], tuple(_dtype_name(r) for r in items)
    )


def call_on(B, case, args=None):
    """A no-argument callable that makes the case's call on backend ``B``."""
    args = case.args if args is None else args
    fn = getattr(B.mod, case.fn)
    return lambda: _call_positional(fn, inspect.signature(_api.SPECS[case.fn]), args, B)


def run(B, case):
    if case.fn in LAYERS:
        return run_layer(B, case)
    return outcome(call_on(B, case))


# --- comparing outcomes
# --------------------------------------------------------------------------------------

_OWN_TYPES = ("numpy.ndarray", "torch.Tensor", "tf.Tensor or tf.Variable")


def normalise(message):
    """A message with each backend's own array type replaced, so that the twins'
    messages compare equal."""
    for t in _OWN_TYPES:
        message = message.replace(t, "<array>")
    for mod in (
        "numpy",
        "torch",
        "tensorflow.python.framework.ops",
        "tensorflow.python.framework.tensor",
        "tensorflow.python.ops.resource_variable_ops",
        "ml_dtypes",
    ):
        message = message.replace(mod + ".", "<fw>.")
    return message


def tolerance(dtypes):
    found = [TOLERANCE[d] for d in dtypes if d in TOLERANCE]
    return max(found) if found else 0.0


def differ(a: Outcome, b: Outcome, random=False, lenient=False):
    """A description of how two outcomes differ, or None when they agree.

    ``lenient``: the inputs hold NaN, infinity or values whose products overflow. The
    contract says that these propagate without saying into which entries (a fused
    kernel may skip a block that the explicit path multiplies by a zero weight, and
    ``0 * inf`` is NaN), so only the entries that are finite in both results must
    agree.
    """
    if a.kind != b.kind:
        return f"{a.describe()}  vs  {b.describe()}"
    if a.kind == "raise":
        if a.exc is not b.exc or normalise(a.message) != normalise(b.message):
            return f"{a.describe()}  vs  {b.describe()}"
        return None
    if len(a.value) != len(b.value):
        return f"{len(a.value)} results vs {len(b.value)}"
    for i, (x, y, dx, dy) in enumerate(
        zip(a.value, b.value, a.dtypes, b.dtypes, strict=False)
    ):
        if dx != dy:
            return f"result {i}: dtype {dx} vs {dy}"
        if np.shape(x) != np.shape(y):
            return f"result {i}: shape {np.shape(x)} vs {np.shape(y)}"
        if random or lenient:
            continue
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype.kind in "fc":
            tol = tolerance((dx,))
            finite = np.isfinite(x) & np.isfinite(y)
            same_special = np.array_equal(np.isnan(x), np.isnan(y)) and np.array_equal(
                np.where(np.isinf(x), x, 0), np.where(np.isinf(y), y, 0)
            )
            if not same_special and not lenient:
                return f"result {i}: NaN/inf in different places:\n{x}\nvs\n{y}"
            if not np.allclose(x[finite], y[finite], rtol=tol, atol=tol):
                worst = np.max(np.abs(x[finite] - y[finite]))
                return f"result {i}: values differ by {worst:.3g}:\n{x}\nvs\n{y}"
        elif not np.array_equal(x, y):
            return f"result {i}: {x} vs {y}"
    return None


def names_argument(case, message):
    """An error about a mutated argument must name it (or one of the names the case
    allows)."""
    if case.arg is None:
        return True
    return any(n in message for n in (case.arg, *case.names))


CLEAR = (TypeError, ValueError)


def is_clear(o: Outcome):
    return o.kind == "ok" or (
        o.exc in CLEAR and "Traceback" not in o.message and len(o.message) < 2000
    )


def summary(cases):
    return {"cases": len(cases), "functions": len({c.fn for c in cases})}


def finite_inputs(case):
    """True when every float array of the case is finite (no NaN/inf planted)."""
    for v in case.args.values():
        vals = (
            [v]
            if isinstance(v, Arr)
            else [e for _, e in v.entries]
            if isinstance(v, Params)
            else []
        )
        for a in vals:
            if (
                isinstance(a, Arr)
                and a.value.dtype.kind == "f"
                and not np.all(np.isfinite(a.value))
            ):
                return False
    return True


__all__ = [
    "Arr",
    "Raw",
    "Params",
    "Case",
    "Outcome",
    "every_case",
    "run",
    "differ",
    "names_argument",
    "is_clear",
    "native",
    "call_on",
    "outcome",
    "KINDS",
]
