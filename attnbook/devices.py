"""Which accelerators each installed framework can see."""

from __future__ import annotations

import importlib.util


def available_accelerators():
    """``{"numpy": [], "torch": [...], "tensorflow": [...]}`` with device names such
    as ``"cuda:0"`` or ``"GPU:0"``. Frameworks that are not installed map to an empty
    list. Imports torch/TensorFlow if installed."""
    found = {"numpy": [], "torch": [], "tensorflow": []}
    if importlib.util.find_spec("torch") is not None:
        import torch

        found["torch"] = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if (
            getattr(torch.backends, "mps", None) is not None
            and torch.backends.mps.is_available()
        ):
            found["torch"].append("mps")
    if importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf

        found["tensorflow"] = [
            d.name.replace("/physical_device:", "")
            for d in tf.config.list_physical_devices("GPU")
        ]
    return found


def torch_device():
    """The torch device the book's notebooks use: the first CUDA GPU when there is
    one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
