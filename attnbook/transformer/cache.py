"""A cache of training results, so that a notebook executed twice (the site build, then
nbval) trains once.

:func:`cached` runs ``train(model, *args, **kwargs)`` and stores what it produced, the
trained parameters (``model.get_params()``) and the history it returned (loss curves,
the measured training time), in one ``.npz`` file under ``$ATTNBOOK_CACHE`` (default
``~/.cache/attnbook``)/``train``. The next call with the same key loads the file into
the model instead of training, and returns the stored history with ``history["cached"] =
True``; the measured ``seconds`` are those of the run that trained.

The key is a SHA-256 of everything the result depends on:

* the training function and the model's class (module and name), the model's
  configuration (``model.config`` or ``model.shapes``) and its parameters before
  training (which fixes the architecture and the initialisation);
* every argument, arrays by their dtype, shape and bytes (the data itself, not the name
    of a data set);
* the source of attnbook that training runs: the core (``_api``, ``_spec``, ``_params``,
  the three twins, ...) and the whole sub-packages the function and the model come from,
  with the ones they import;
* NumPy's and the framework's versions and the device type (``cpu``, ``cuda``), since
  the trained numbers differ between them.

Any change to any of these trains again. ``ATTNBOOK_RETRAIN=1`` trains again regardless
(and overwrites the file); ``cache=False`` in the twins' ``train`` functions never reads
nor writes the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "cache_key", "cached", "source_files"]

_PACKAGE = Path(__file__).resolve().parents[1]
#: The modules every model runs on.
CORE = (
    "__init__.py",
    "_api.py",
    "_checks.py",
    "_dispatch.py",
    "_params.py",
    "_spec.py",
    "devices.py",
    "numpy.py",
    "torch.py",
    "tensorflow.py",
    "plotting.py",
)
#: Sub-packages whose code another one imports to train (attnbook.transformer uses
#: attnbook.vit's layers and schedule, both use attnbook.seq2seq's batching).
DEPENDS = {"transformer": ("vit", "seq2seq"), "seq2seq": (), "vit": ()}
#: Arguments that label a run without changing its numbers.
IGNORED = ("desc", "progress")


def cache_dir():
    """Where training results are kept: ``$ATTNBOOK_CACHE/train``, or
    ``~/.cache/attnbook/train``."""
    root = os.environ.get("ATTNBOOK_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "attnbook"
    )
    return Path(root) / "train"


def _subpackage(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "attnbook" else None


def source_files(*modules):
    """The attnbook source files a training run in ``modules`` (dotted module names)
    depends on, sorted."""
    packages, todo = set(), [p for p in map(_subpackage, modules) if p]
    while todo:
        p = todo.pop()
        if p not in packages:
            packages.add(p)
            todo.extend(DEPENDS.get(p, ()))
    files = [_PACKAGE / name for name in CORE]
    for p in sorted(packages):
        files += sorted((_PACKAGE / p).glob("*.py"))
    return sorted(f for f in files if f.is_file())


def _digest(h, value):
    """Feed ``value`` into the hash ``h`` unambiguously (type tags and lengths), arrays
    by dtype, shape and bytes."""
    from ..plotting import to_numpy

    if type(value).__module__.startswith(("torch", "tensorflow")):
        value = to_numpy(value)
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        a = np.ascontiguousarray(value)
        h.update(f"array:{a.dtype.str}:{a.shape}:".encode())
        h.update(a.tobytes())
    elif isinstance(value, dict):
        h.update(f"dict:{len(value)}:".encode())
        for k in sorted(value, key=str):
            _digest(h, str(k))
            _digest(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}:{len(value)}:".encode())
        for v in value:
            _digest(h, v)
    elif value is None or isinstance(value, (bool, int, float, str)):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(
            "cannot key the training cache on an argument of type "
            f"{type(value).__name__}; pass arrays, "
            "numbers, strings, or lists and dicts of them"
        )


def _environment(model, modules):
    env = {"numpy": np.__version__, "python": sys.version.split()[0]}
    if "torch" in sys.modules and hasattr(model, "parameters"):
        import torch

        env["torch"] = torch.__version__
        env["device"] = next(model.parameters()).device.type
    elif "tensorflow" in sys.modules and any(m.endswith("tensorflow") for m in modules):
        import tensorflow as tf

        env["tensorflow"] = tf.__version__
        env["device"] = "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    return env


def cache_key(train, model, args=(), kwargs=None):
    """The hex SHA-256 that names the result of ``train(model, *args, **kwargs)`` (see
    the module docstring)."""
    kwargs = {k: v for k, v in (kwargs or {}).items() if k not in IGNORED}
    modules = (train.__module__, type(model).__module__)
    h = hashlib.sha256()
    _digest(
        h, [f"{m}" for m in modules] + [train.__qualname__, type(model).__qualname__]
    )
    _digest(h, getattr(model, "config", None) or getattr(model, "shapes", None))
    _digest(h, model.get_params())
    _digest(h, list(args))
    _digest(h, kwargs)
    for f in source_files(*modules):
        _digest(h, f.relative_to(_PACKAGE).as_posix())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    _digest(h, _environment(model, modules))
    return h.hexdigest()


def cached(train, model, *args, **kwargs):
    """``train(model, *args, **kwargs)``, or its stored result: the history it returns
    (a dict of JSON values, with ``"cached"`` set to True when it was loaded) and the
    trained parameters, loaded into ``model``.

    ``model`` needs ``get_params()`` and ``set_params(dict)`` (every model of attnbook
    has them).
    """
    if not callable(train):
        raise TypeError(
            f"train must be a training function, got {type(train).__name__}"
        )
    for method in ("get_params", "set_params"):
        if not callable(getattr(model, method, None)):
            raise TypeError(
                f"model must have get_params() and set_params() to be cached, got "
                f"{type(model).__name__}"
            )
    key = cache_key(train, model, args, kwargs)
    path = (
        cache_dir()
        / f"{train.__module__.split('.')[-1]}-{type(model).__name__}-{key[:24]}.npz"
    )
    if path.is_file() and os.environ.get("ATTNBOOK_RETRAIN", "") not in (
        "1",
        "true",
        "yes",
    ):
        with np.load(path) as stored:
            history = json.loads(str(stored["history"]))
            model.set_params(
                {
                    k[len("param/") :]: stored[k]
                    for k in stored.files
                    if k.startswith("param/")
                }
            )
        history["cached"] = True
        return history
    history = train(model, *args, **kwargs)
    stored = {f"param/{k}": v for k, v in model.get_params().items()}
    stored["history"] = np.asarray(
        json.dumps({k: v for k, v in history.items() if k != "cached"})
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside, then renamed: a run killed half-way never leaves a truncated file
    # for the next one to load.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **stored)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from other users
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return {**history, "cached": False}
