"""Argument checks shared by the application modules (minilm, vit, seq2seq, datasets,
bench, plotting).

The scalar checks of the core (:mod:`attnbook._spec`) do the numbers; this module
adds what the applications need on
top of them: the shape, dtype name and NumPy values of an array of any framework
(without importing a framework), integer id arrays, texts and random generators. Every
check raises ``TypeError`` (the wrong kind of thing) or ``ValueError`` (the right kind,
a bad value) with a message that names the argument, so that the framework twins of an
application raise the same error for the same mistake.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from . import _dispatch, _spec

INTEGER_DTYPES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
)


class Host(NamedTuple):
    """An array argument as the checks see it: its shape (a size is None where a
    TensorFlow graph does not know it yet), its dtype name, and its values as a NumPy
    array (None inside a TensorFlow graph)."""

    shape: tuple
    dtype: str
    values: np.ndarray | None


def host(name, x, values=True):
    """Describe ``x`` (a NumPy array, a torch tensor, a TensorFlow tensor, or
    anything ``np.asarray`` accepts); without ``values`` the values of a tensor are
    not copied to the host (``Host.values`` is None)."""
    fw = _dispatch.framework_of(x)
    if fw == "torch":
        dtype = str(x.dtype).removeprefix("torch.")
        if not values:
            return Host(tuple(x.shape), dtype, None)
        t = x.detach().cpu()
        return Host(
            tuple(t.shape),
            dtype,
            t.float().numpy() if dtype == "bfloat16" else t.numpy(),
        )
    if fw == "tensorflow":
        import tensorflow as tf

        shape = tuple(x.shape) if x.shape.rank is not None else None
        if shape is None:
            raise ValueError(
                f"{name} has an unknown rank; give the tf.function an "
                f"input_signature with a shape"
            )
        known = None
        if values:
            try:
                known = x.numpy()  # an eager tensor or variable
            except (AttributeError, NotImplementedError, TypeError, ValueError):
                try:
                    # a graph constant; None for a value not known yet
                    known = tf.get_static_value(x)
                except (TypeError, ValueError, NotImplementedError):
                    known = None
        return Host(shape, x.dtype.name, None if known is None else np.asarray(known))
    if fw != "numpy":
        try:
            x = np.asarray(x)
        # ragged nested lists, ...
        except (TypeError, ValueError, OverflowError) as err:
            raise TypeError(
                f"{name} must be an array, got {type(x).__name__} that "
                f"NumPy cannot read: {err}"
            ) from None
    return Host(tuple(x.shape), str(x.dtype), x)


def dtype_name(x):
    """The dtype of an array of any framework as a plain name: ``"float32"``,
    ``"int64"``, ``"complex64"``, ..."""
    fw = _dispatch.framework_of(x)
    if fw == "torch":
        return str(x.dtype).removeprefix("torch.")
    if fw == "tensorflow":
        return x.dtype.name
    return str(np.asarray(x).dtype)


def check_shape(name, h, layout):
    """``h.shape`` must have ``len(layout)`` axes; ``layout`` is a string such as
    ``"(B, L)"``."""
    rank = len([a for a in layout.strip("()").split(",") if a.strip()])
    if len(h.shape) != rank:
        raise ValueError(f"{name} must have shape {layout}, got shape {h.shape}")


def check_same_shape(name, h, other_name, other_shape):
    if any(
        a is not None and b is not None and a != b
        for a, b in zip(h.shape, other_shape, strict=False)
    ) or len(h.shape) != len(other_shape):
        raise ValueError(
            f"{name} must have the shape of {other_name} {other_shape}, "
            f"got shape {h.shape}"
        )


def check_ids(name, h, high, what):
    """An integer array of ids in ``[0, high)`` (``what`` says what the ids index).
    Negative ids are refused, never wrapped around as NumPy indexing would."""
    if h.dtype not in INTEGER_DTYPES:
        raise TypeError(
            f"{name} must be an integer array of {what}, got dtype {h.dtype}"
        )
    if h.values is None or h.values.size == 0:
        return
    lo, hi = h.values.min(), h.values.max()
    if lo < 0 or hi >= high:
        bad = int(lo) if lo < 0 else int(hi)
        raise ValueError(f"{name} must hold {what} in [0, {high}), got {bad}")


def check_binary(name, h, meaning="1 = keep, 0 = ignore"):
    """A boolean, integer or float array of 0s and 1s only (``meaning`` is put in the
    message)."""
    if (
        h.dtype != "bool"
        and h.dtype not in INTEGER_DTYPES
        and h.dtype not in _spec.FLOAT_DTYPES
    ):
        raise TypeError(
            f"{name} must be a boolean or 0/1 array ({meaning}), got dtype {h.dtype}"
        )
    if h.values is None or h.dtype == "bool" or h.values.size == 0:
        return
    bad = h.values[(h.values != 0) & (h.values != 1)]
    if bad.size:
        raise ValueError(
            f"{name} must hold only 0 and 1 ({meaning}), got {bad.flat[0].item()!r}"
        )


def positive(name, value, *, zero=False, inf=False):
    """A real number (a NumPy scalar too) above 0 (or at 0 with ``zero``), finite (or
    ``inf`` too with ``inf``), never NaN; returns a Python float. ``ValueError``
    rather than ``OverflowError`` for an integer such as ``10**400``."""
    what = (
        ("a non-negative" if zero else "a positive")
        + ("" if inf else " finite")
        + " number"
    )
    x = _spec.check_real(name, value, what)
    if math.isnan(x) or (math.isinf(x) and not inf) or x < 0 or (x == 0 and not zero):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return x


def probability(name, value, *, closed=True):
    """A number in ``[0, 1]`` (``[0, 1)`` with ``closed=False``); returns a Python
    float."""
    what = "a number in [0, 1]" if closed else "a number in [0, 1)"
    x = _spec.check_real(name, value, what)
    if not (0.0 <= x <= 1.0) or (not closed and x == 1.0):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return x


def positive_int(name, value):
    return _spec.check_integer(name, value, least=1, what="a positive integer")


def count(name, value):
    return _spec.check_integer(name, value, what="a non-negative integer")


def string(name, value, choices=None):
    """A string, one of ``choices`` if given."""
    if not isinstance(value, str):
        listing = "" if choices is None else f" ({', '.join(map(repr, choices))})"
        raise TypeError(f"{name} must be a string{listing}, got {value!r}")
    if choices is not None and value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )
    return value


def texts(name, value, *, single=True):
    """A list of strings from a list/tuple/iterable of strings, or from one string
    when ``single`` (a one-item list).

    Without ``single`` a lone string is refused: iterating over it would silently
    treat each character as a text.
    """
    if isinstance(value, str):
        if single:
            return [value]
        raise TypeError(
            f"{name} must be a list of strings, not a string (wrap one text "
            f"in a list: [{value!r}])"
        )
    try:
        out = list(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a list of strings, got {type(value).__name__}"
        ) from None
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(
                f"{name} must be a list of strings, got {type(t).__name__} "
                f"at position {i}: {t!r}"
            )
    return out


def generator(name, rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{name} must be a numpy.random.Generator "
            f"(np.random.default_rng(seed)), got "
            f"{type(rng).__name__}"
        )
    return rng


def memory_bytes():
    """This machine's physical memory in bytes, or None where the platform does not
    tell."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def fits_in_memory(what, nbytes):
    """``ValueError`` when ``nbytes`` exceed the physical memory: sizes that large
    would fail later, inside an allocator, with a message that names no argument (or
    bring the machine to a crawl first)."""
    total = memory_bytes()
    if total is not None and nbytes > total:
        raise ValueError(
            f"{what} would need {nbytes / 2**30:,.1f} GiB, more than the "
            f"{total / 2**30:,.1f} GiB of "
            "memory of this machine"
        )


def same_length(named):
    """``{name: length}``: all lengths equal, else ``ValueError`` listing them."""
    if len(set(named.values())) > 1:
        listing = ", ".join(f"{n} has {k}" for n, k in named.items())
        raise ValueError(
            f"{' and '.join(named)} must have the same length, got: {listing}"
        )
