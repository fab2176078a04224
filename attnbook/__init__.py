"""attnbook: attention implemented identically in NumPy, PyTorch and TensorFlow.

``attnbook.<function>`` dispatches on the framework of its array arguments (or
``backend=``); the twins themselves are ``attnbook.numpy``, ``attnbook.torch`` and
``attnbook.tensorflow``, imported on first use, so that ``import attnbook`` imports
NumPy only.
"""

from __future__ import annotations

import functools
import importlib
import inspect

from . import _api, _dispatch
from .devices import available_accelerators

__version__ = "0.1.0"


def _dispatcher(spec):
    sig = inspect.signature(spec)

    @functools.wraps(spec)
    def dispatch(*args, backend=None, **kwargs):
        bound = sig.bind(*args, **kwargs)
        return getattr(_dispatch.choose(bound.arguments, backend), spec.__name__)(
            *args, **kwargs
        )

    params = list(sig.parameters.values())
    params.append(
        inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default=None)
    )
    dispatch.__signature__ = sig.replace(parameters=params)
    dispatch.__doc__ = (spec.__doc__ or "") + (
        '\n    ``backend``: ``"numpy"``, ``"torch"`` or ``"tensorflow"``; by '
        "default the framework of the array"
        "\n    arguments (NumPy when there are none). Arrays of two frameworks raise "
        "``TypeError``.\n"
    )
    return dispatch


for _name, _spec_fn in _api.SPECS.items():
    globals()[_name] = _dispatcher(_spec_fn)

_SUBMODULES = ("numpy", "torch", "tensorflow", "plotting")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"attnbook.{name}")
    raise AttributeError(f"module 'attnbook' has no attribute {name!r}")


__all__ = [*_api.SPECS, "available_accelerators", *_SUBMODULES]
