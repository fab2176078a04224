"""On a CUDA GPU: the same attention as on the CPU, and outputs stay on the input's
device. Skips without a GPU."""

import numpy as np
import pytest

from adapters import get, require_gpu
from cases import FUNCTIONS, convert, make_case

pytestmark = pytest.mark.gpu


def _to(t, device):
    import torch

    if isinstance(t, torch.Tensor):
        return t.to(device)
    if isinstance(t, dict):
        return {k: v.to(device) for k, v in t.items()}
    return t


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_torch_cuda_matches_cpu(fn):
    require_gpu("torch")
    T = get("torch")
    case = make_case(fn, "causal_mask")
    args, kwargs = convert(T, case, "float32")
    cpu = getattr(T.mod, fn)(*args, **kwargs, return_weights=True)
    gpu_args = [_to(a, "cuda") for a in args]
    gpu_kwargs = {k: _to(v, "cuda") for k, v in kwargs.items()}
    gpu = getattr(T.mod, fn)(*gpu_args, **gpu_kwargs, return_weights=True)
    for c, g in zip(cpu, gpu, strict=False):
        assert g.device.type == "cuda"
        np.testing.assert_allclose(T.to_numpy(g), T.to_numpy(c), atol=1e-4)


def test_torch_cuda_dropout_and_masks_stay_on_device():
    require_gpu("torch")
    import torch

    T = get("torch")
    q = torch.randn(2, 4, 3, device="cuda")
    out, w = T.mod.scaled_dot_product_attention(
        q, q, q, dropout=0.5, seed=1, causal=True, return_weights=True
    )
    assert out.device.type == "cuda" and w.device.type == "cuda"
    lengths = torch.tensor([1, 3], device="cuda")
    assert T.mod.padding_mask(lengths).device.type == "cuda"
    for dtype in (torch.float16, torch.bfloat16):
        out = T.mod.scaled_dot_product_attention(q.to(dtype), q.to(dtype), q.to(dtype))
        assert out.dtype == dtype and out.device.type == "cuda"


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_tensorflow_gpu_matches_cpu(fn):
    require_gpu("tensorflow")
    import tensorflow as tf

    TF = get("tensorflow")
    case = make_case(fn, "causal_mask")
    with tf.device("CPU:0"):
        args, kwargs = convert(TF, case, "float32")
        cpu = getattr(TF.mod, fn)(*args, **kwargs, return_weights=True)
    with tf.device("GPU:0"):
        args, kwargs = convert(TF, case, "float32")
        args = [tf.identity(a) if isinstance(a, tf.Tensor) else a for a in args]
        gpu = getattr(TF.mod, fn)(*args, **kwargs, return_weights=True)
    for c, g in zip(cpu, gpu, strict=False):
        assert "GPU" in g.device
        np.testing.assert_allclose(TF.to_numpy(g), TF.to_numpy(c), atol=1e-4)


def test_torch_layer_on_cuda():
    require_gpu("torch")
    import torch

    T = get("torch")
    layer = T.mod.MultiHeadAttention(d_model=4, num_heads=2).eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    cpu = layer(torch.from_numpy(x))
    layer = layer.cuda()
    gpu = layer(torch.from_numpy(x).cuda())
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(T.to_numpy(gpu), T.to_numpy(cpu), atol=1e-4)
    assert layer.get_params()["w_q"].shape == (4, 4)


@pytest.mark.parametrize("path", ["weights", "fast", "flash"])
def test_torch_cuda_modern_options_match_the_oracle(path):
    """GQA, a window, bottom-right alignment, softcap and a sink on the GPU: the
    oracle's numbers, on the device."""
    require_gpu("torch")
    import torch

    import oracle

    T = get("torch")
    rng = np.random.default_rng(0)
    q, k, v = (
        rng.normal(size=(2, 8, 40, 32)),
        rng.normal(size=(2, 2, 56, 32)),
        rng.normal(size=(2, 2, 56, 16)),
    )
    sink, bias = rng.normal(size=(8, 1)), rng.normal(size=(40, 56))
    kw = dict(
        enable_gqa=True, causal=True, window=(20, 0), align="bottom_right", softcap=4.0
    )
    want_o, want_w, want_l = oracle.attention(q, k, v, bias=bias, sink=sink, **kw)
    dev = lambda a: torch.as_tensor(a, dtype=torch.float32, device="cuda")  # noqa: E731
    args = [dev(a) for a in (q, k, v)]
    extra = {"bias": dev(bias), "sink": dev(sink), **kw}
    if path == "weights":
        got = T.mod.scaled_dot_product_attention(*args, **extra, return_weights=True)
        want = (want_o, want_w)
    elif path == "fast":
        got, want = (T.mod.scaled_dot_product_attention(*args, **extra),), (want_o,)
    else:
        got = T.mod.flash_attention(*args, **extra, block_size=16, return_lse=True)
        want = (want_o, want_l)
    for g, w in zip(got, want, strict=False):
        assert g.device.type == "cuda"
        finite = np.isfinite(w)
        np.testing.assert_allclose(T.to_numpy(g)[finite], w[finite], atol=1e-4)
    for dtype in (torch.float16, torch.bfloat16):
        out = T.mod.scaled_dot_product_attention(
            *(a.to(dtype) for a in args), **{**extra, "bias": None}
        )
        assert out.dtype == dtype and out.device.type == "cuda"
        np.testing.assert_allclose(
            T.to_numpy(out), oracle.attention(q, k, v, sink=sink, **kw)[0], atol=3e-2
        )
