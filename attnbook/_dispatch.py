"""Find the framework of the arrays a function was given, without importing any
framework.

Like einops' backends: an array's type is looked up once and cached; torch and
TensorFlow are recognised only if the user has already imported them (they are in
``sys.modules``), so ``import attnbook`` stays NumPy-only.
"""

from __future__ import annotations

import importlib
import sys

BACKENDS = ("numpy", "torch", "tensorflow")
_by_type: dict[type, str | None] = {}


def framework_of(x):
    """``"numpy"``, ``"torch"``, ``"tensorflow"``, or ``None`` for a non-array (a
    number, a string, None)."""
    t = type(x)
    if t not in _by_type:
        _by_type[t] = _classify(x)
    return _by_type[t]


def _classify(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        # a NumPy scalar (np.int64(3) as an axis) is a number, not an array
        return "numpy"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, (tf.Tensor, tf.Variable)):
        return "tensorflow"
    return None


def _arrays(named):
    for name, value in named.items():
        if isinstance(value, dict):
            yield from _arrays({f"{name}['{k}']": v for k, v in value.items()})
        elif value is not None:
            fw = framework_of(value)
            if fw is not None:
                yield name, fw


def module(backend):
    """The backend module for a name, imported on first use."""
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}"
        )
    return importlib.import_module(f"attnbook.{backend}")


def choose(named, backend=None):
    """Pick the backend module for arguments ``{name: value}``; ``TypeError`` if two
    frameworks are mixed."""
    if backend is not None:
        return module(backend)
    found = dict(_arrays(named))
    frameworks = set(found.values())
    if len(frameworks) > 1:
        listing = ", ".join(f"{n} is {fw}" for n, fw in found.items())
        raise TypeError(f"arrays from different frameworks cannot be mixed: {listing}")
    return module(frameworks.pop() if frameworks else "numpy")
