"""One small adapter per backend: NumPy in, framework tensor out, and back.

Test modules use :func:`get` (or the ``backend`` fixture in conftest.py) so that one
NumPy case runs on every backend and is compared back in NumPy.
"""

import importlib
import os

import numpy as np
import pytest

BACKENDS = ["numpy", "torch", "tensorflow"]
FRAMEWORK = {"numpy": "numpy", "torch": "torch", "tensorflow": "tensorflow"}
REQUIRE_ALL = os.environ.get("ATTNBOOK_REQUIRE_ALL") == "1"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def missing(what, err):
    """Skip locally, fail where every backend is required (CI sets
    ATTNBOOK_REQUIRE_ALL=1)."""
    msg = f"{what} is not importable: {err}"
    if REQUIRE_ALL:
        pytest.fail(msg + " (ATTNBOOK_REQUIRE_ALL=1)")
    pytest.skip(msg)


def framework(name):
    """Import and return the framework module itself (numpy, torch, tensorflow), or
    skip/fail."""
    try:
        return importlib.import_module(FRAMEWORK[name])
    except ImportError as err:
        missing(name, err)


class Adapter:
    def __init__(self, name):
        self.name = name
        self.fw = framework(name)
        # A missing framework skips; a missing or broken attnbook backend is a test
        # error, never a skip.
        self.mod = importlib.import_module(f"attnbook.{name}")

    def __repr__(self):
        return f"Adapter({self.name})"

    # --- conversions
    # ----------------------------------------------------------------------------------
    def asarray(self, x, dtype=None):
        """NumPy (or Python) -> native tensor; ``dtype`` is a name ("float32",
        "bfloat16", "bool", "int64")."""
        x = np.asarray(x)
        dtype = dtype or str(x.dtype)
        if self.name == "numpy":
            if dtype == "bfloat16":
                pytest.skip("NumPy has no bfloat16")
            return x.astype(dtype)
        if self.name == "torch":
            import torch

            if dtype == "bfloat16":
                return torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
            # np.ascontiguousarray would make 0-d arrays 1-d
            return torch.from_numpy(np.array(x, dtype))
        import tensorflow as tf

        if dtype == "bfloat16":
            return tf.cast(tf.constant(x.astype(np.float32)), tf.bfloat16)
        return tf.constant(x.astype(dtype))

    def to_numpy(self, t):
        """Native tensor -> NumPy: floats as float64, bool and integers unchanged."""
        if self.name == "torch":
            t = t.detach().cpu()
            if t.is_floating_point():
                t = t.double()
            a = t.numpy()
        elif self.name == "tensorflow":
            a = np.asarray(t.numpy())
        else:
            a = np.asarray(t)
        if a.dtype.kind == "f" or str(a.dtype) == "bfloat16":
            return a.astype(np.float64)
        return a

    def round_trip(self, x, dtype):
        """The float64 values a tensor of ``dtype`` made from ``x`` actually holds
        (for reduced precision)."""
        return self.to_numpy(self.asarray(x, dtype))

    def dtype_name(self, t):
        """Normalised dtype name of a native tensor: "float32", "bfloat16", "bool",
        "int64"..."""
        if self.name == "torch":
            return str(t.dtype).replace("torch.", "")
        if self.name == "tensorflow":
            return t.dtype.name
        return str(np.asarray(t).dtype)

    def is_native(self, t):
        if self.name == "torch":
            import torch

            return isinstance(t, torch.Tensor)
        if self.name == "tensorflow":
            import tensorflow as tf

            return isinstance(t, (tf.Tensor, tf.Variable))
        return isinstance(t, np.ndarray)

    def params(self, p, dtype=None):
        """A params dict of NumPy arrays -> the same dict of native tensors."""
        return {k: self.asarray(v, dtype) for k, v in p.items()}

    def seed(self, s=0):
        if self.name == "torch":
            self.fw.manual_seed(s)
        elif self.name == "tensorflow":
            self.fw.random.set_seed(s)


_CACHE = {}


def get(name):
    if name not in _CACHE:
        _CACHE[name] = Adapter(name)
    return _CACHE[name]


def all_backends():
    """Every backend's adapter (for cross-backend comparisons): skips/fails when one
    is missing."""
    return [get(n) for n in BACKENDS]


def cuda_devices(name):
    """Names of the GPUs the framework sees (empty without one or without the
    framework)."""
    try:
        if name == "torch":
            import torch

            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if name == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_logical_devices("GPU")]
    except ImportError:
        return []
    return []


def require_gpu(name):
    """Skip the calling test unless ``name`` sees a CUDA GPU (never fails: most
    machines have none)."""
    if name == "numpy":
        pytest.skip("NumPy has no GPU")
    framework(name)
    if not cuda_devices(name):
        pytest.skip(f"{name} sees no GPU")
