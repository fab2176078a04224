"""Shared fixtures: every test that takes ``backend`` runs once per framework."""

import sys

import numpy as np
import pytest

from adapters import BACKENDS, get, require_gpu  # noqa: F401  (re-exported for the tests)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """An :class:`adapters.Adapter`: ``.mod`` is the attnbook backend module,
    ``.asarray`` / ``.to_numpy``."""
    return get(request.param)


@pytest.fixture
def gpu():
    """``gpu(name)`` skips the test unless the framework ``name`` sees a CUDA GPU."""
    return require_gpu


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _deterministic_frameworks():
    """Seed the frameworks a test has imported, without importing one a test does not
    need."""
    torch, tf = sys.modules.get("torch"), sys.modules.get("tensorflow")
    if torch is not None:
        torch.manual_seed(0)
    if tf is not None:
        tf.random.set_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    """NumPy has no bfloat16: those combinations do not exist, so they are deselected
    rather than skipped (a skip in CI would read as a missing framework)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        dtype = params.get("dtype")
        (
            drop
            if params.get("backend") == "numpy"
            and dtype == "bfloat16"
            and "mask_to_additive" not in item.name
            else keep
        ).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
