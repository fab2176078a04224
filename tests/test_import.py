"""Import hygiene, the public surface, and the top-level dispatchers."""

import inspect
import subprocess
import sys

import numpy as np
import pytest

import attnbook
from adapters import BACKENDS, get
from attnbook import _api


def _fresh(code):
    """Run ``code`` in a fresh interpreter (this process has long imported torch and
    TensorFlow)."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_attnbook_imports_no_framework():
    out = _fresh(
        "import sys, attnbook\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in "
        "sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(attnbook.scaled_dot_product_attention)\n"
        "import numpy as np\n"
        "q = np.ones((2, 3), 'float32')\n"
        "attnbook.scaled_dot_product_attention(q, q, q)\n"
        "attnbook.causal_mask(3)\n"
        "assert attnbook.numpy.__name__ == 'attnbook.numpy'\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    assert out.strip() == "ok"


def test_backend_modules_reachable_as_attributes():
    import importlib

    for name in BACKENDS:
        get(name)  # skips/fails when the framework is missing
        mod = getattr(attnbook, name)
        assert mod is importlib.import_module(f"attnbook.{name}")
    with pytest.raises(AttributeError):
        attnbook.no_such_thing  # noqa: B018


@pytest.mark.parametrize("fn", list(_api.SPECS))
def test_backend_signatures_match_spec(backend, fn):
    impl = getattr(backend.mod, fn)
    assert inspect.signature(impl) == inspect.signature(_api.SPECS[fn])
    assert impl.__doc__ == _api.SPECS[fn].__doc__


@pytest.mark.parametrize("fn", list(_api.SPECS))
def test_dispatchers_exist(fn):
    d = getattr(attnbook, fn)
    sig = inspect.signature(d)
    params = list(sig.parameters.values())
    assert params[-1].name == "backend" and params[-1].default is None
    assert params[-1].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.replace(parameters=params[:-1]) == inspect.signature(_api.SPECS[fn])
    assert fn in attnbook.__all__


def test_layers_exist_in_every_backend(backend):
    for cls in ("MultiHeadAttention", "AdditiveAttention"):
        assert hasattr(backend.mod, cls)
    sig = inspect.signature(backend.mod.MultiHeadAttention)
    for p in (
        "d_model",
        "num_heads",
        "query_dim",
        "key_dim",
        "value_dim",
        "output_dim",
        "use_bias",
        "dropout",
        "seed",
    ):
        assert p in sig.parameters, p


def test_available_accelerators():
    acc = attnbook.available_accelerators()
    assert isinstance(acc, dict)
    assert set(acc) <= set(BACKENDS)
    for devices in acc.values():
        assert isinstance(devices, list) and all(isinstance(d, str) for d in devices)


# --- the dispatchers
# --------------------------------------------------------------------------------------


def test_dispatch_on_array_framework(backend):
    rng = np.random.default_rng(0)
    q, k, v = (
        rng.normal(size=(2, 3, 4)),
        rng.normal(size=(2, 5, 4)),
        rng.normal(size=(2, 5, 2)),
    )
    args = [backend.asarray(a) for a in (q, k, v)]
    out = attnbook.scaled_dot_product_attention(*args, causal=True)
    assert backend.is_native(out)
    direct = backend.mod.scaled_dot_product_attention(*args, causal=True)
    np.testing.assert_array_equal(backend.to_numpy(out), backend.to_numpy(direct))
    out = attnbook.scaled_dot_product_attention(*args, backend=backend.name)
    assert backend.is_native(out)
    # positional and keyword arguments reach the backend the same way
    out2 = attnbook.scaled_dot_product_attention(
        query=args[0], key=args[1], value=args[2]
    )
    np.testing.assert_array_equal(backend.to_numpy(out2), backend.to_numpy(out))
    sm = attnbook.softmax(args[0], axis=1)
    assert backend.is_native(sm)
    lengths = backend.asarray(np.array([1, 3]), "int64")
    assert backend.is_native(attnbook.padding_mask(lengths))


def test_dispatch_on_params_and_masks_only():
    """The framework of a params dict or a mask counts like any other array argument."""
    T = get("torch")
    m = attnbook.mask_from_ignore(T.asarray(np.array([True, False])))
    assert T.is_native(m)


def test_dispatch_without_arrays(backend):
    m = attnbook.causal_mask(3, backend=backend.name)
    assert backend.is_native(m)
    pe = attnbook.sinusoidal_positional_encoding(4, 6, backend=backend.name)
    assert backend.is_native(pe)


def test_dispatch_default_without_arrays_is_numpy():
    assert isinstance(attnbook.causal_mask(3), np.ndarray)
    assert isinstance(attnbook.sinusoidal_positional_encoding(2, 4), np.ndarray)


def test_missing_framework_skips_locally_and_fails_when_required(monkeypatch):
    import adapters

    monkeypatch.setattr(adapters, "REQUIRE_ALL", False)
    with pytest.raises(pytest.skip.Exception):
        adapters.missing("torch", ImportError("no torch"))
    monkeypatch.setattr(adapters, "REQUIRE_ALL", True)
    with pytest.raises(pytest.fail.Exception):
        adapters.missing("torch", ImportError("no torch"))
