"""Shared fixtures: every test that takes ``backend`` runs once per framework."""

import sys

import numpy as np
import pytest

from adapters import BACKENDS, get, require_gpu  # noqa: F401  (re-exported for the tests)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """An :class:`adapters.Adapter`: ``.mod`` is the attnbook backend module, ``.asarray`` / ``.to_numpy``."""
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
    """Seed the frameworks a test has imported, without importing one a test does not need."""
    torch, tf = sys.modules.get("torch"), sys.modules.get("tensorflow")
    if torch is not None:
        torch.manual_seed(0)
    if tf is not None:
        tf.random.set_seed(0)
    yield
