"""The options of today's models (alignment, windows, GQA, softcap, sinks, RoPE,
ALiBi, packed sequences).

Every option is checked against the float64 oracle (tests/oracle.py, written entry by
entry) in all three twins and in each of their paths (the explicit math with weights,
the fast path, the tiled flash path), against each library that has the same feature
(PyTorch's SDPA and FlexAttention, Keras, Hugging Face transformers), and through its
gradients (autograd, GradientTape and finite differences).
"""

import itertools
import warnings

import numpy as np
import pytest

import oracle
from adapters import all_backends, framework, get

WINDOWS = [None, (2, 1), (None, 0), (3, None), (0, 0), (None, 2)]
ALIGNS = ["top_left", "bottom_right"]
# (Lq, Lk): Lq < Lk (decoding), Lq > Lk, one query, square
SHAPES = [(5, 7), (7, 4), (1, 9), (6, 6)]


def _case(rng, lq, lk, *, gqa, mask, bias, sink, dtype=np.float64):
    h, hkv = (4, 2) if gqa else (3, 3)
    q = rng.normal(size=(2, h, lq, 4))
    k = rng.normal(size=(2, hkv, lk, 4))
    v = rng.normal(size=(2, hkv, lk, 3))
    kw = {"enable_gqa": gqa}
    if mask:
        m = rng.random((h, lq, lk)) < 0.7
        kw["mask"] = m
    if bias:
        kw["bias"] = rng.normal(size=(lq, lk))
    if sink:
        kw["sink"] = rng.normal(size=(h, 1))
    return (q.astype(dtype), k.astype(dtype), v.astype(dtype)), kw


def _native(B, kw, dtype=None):
    out = {}
    for k, v in kw.items():
        if isinstance(v, np.ndarray):
            out[k] = B.asarray(
                v, "bool" if v.dtype == bool else (dtype or str(v.dtype))
            )
        else:
            out[k] = v
    return out


COMBOS = list(itertools.product(SHAPES, [False, True], WINDOWS, ALIGNS, [None, 1.5]))


@pytest.mark.parametrize("path", ["weights", "fast", "flash", "flash_tiles"])
def test_every_option_matches_the_oracle(backend, path):
    """Lq vs Lk x causal x window x align x softcap, each with GQA, a mask, a bias
    and a sink drawn at random: output, weights and log-sum-exp equal the oracle's in
    float64, fully masked rows included."""
    rng = np.random.default_rng(0)
    B = backend
    worst = 0.0
    for (lq, lk), causal, window, align, softcap in COMBOS:
        flags = rng.random(4) < 0.5
        (q, k, v), kw = _case(
            rng, lq, lk, gqa=flags[0], mask=flags[1], bias=flags[2], sink=flags[3]
        )
        kw.update(causal=causal, window=window, align=align, softcap=softcap)
        want_o, want_w, want_l = oracle.attention(q, k, v, **kw)
        args = [B.asarray(a) for a in (q, k, v)]
        nat = _native(B, kw)
        if path == "weights":
            o, w = B.mod.scaled_dot_product_attention(*args, **nat, return_weights=True)
            got = [(o, want_o), (w, want_w)]
        elif path == "fast":
            got = [(B.mod.scaled_dot_product_attention(*args, **nat), want_o)]
        else:
            o, lse = B.mod.flash_attention(
                *args,
                **nat,
                return_lse=True,
                block_size=2 if path == "flash_tiles" else None,
            )
            got = [(o, want_o), (lse, want_l)]
        for g, w in got:
            g = B.to_numpy(g)
            assert g.shape == w.shape
            assert np.array_equal(np.isfinite(g), np.isfinite(w)), (kw, g, w)
            with np.errstate(invalid="ignore"):
                worst = max(
                    worst, np.max(np.abs(g - w), where=np.isfinite(w), initial=0.0)
                )
    assert worst < 1e-10, worst


@pytest.mark.parametrize(
    "dtype,tol", [("float32", 2e-6), ("float16", 3e-3), ("bfloat16", 2.5e-2)]
)
def test_reduced_precision_against_the_oracle(backend, dtype, tol):
    """The same options in float32, float16 and bfloat16, against the oracle on the
    inputs as the dtype holds them (scores and softmax run in float32 for the reduced
    dtypes)."""
    if backend.name == "numpy" and dtype == "bfloat16":
        pytest.skip("NumPy has no bfloat16")
    rng = np.random.default_rng(1)
    for (lq, lk), causal, window, align, softcap in COMBOS[::7]:
        (q, k, v), kw = _case(rng, lq, lk, gqa=True, mask=True, bias=True, sink=True)
        kw.update(causal=causal, window=window, align=align, softcap=softcap)
        q, k, v = (backend.round_trip(a, dtype) for a in (q, k, v))
        want = oracle.attention(
            q,
            k,
            v,
            **{
                **kw,
                "bias": backend.round_trip(kw["bias"], "float32"),
                "sink": backend.round_trip(kw["sink"], "float32"),
            },
        )[0]
        nat = _native(backend, kw, "float32")
        nat["mask"] = backend.asarray(kw["mask"], "bool")
        args = [backend.asarray(a, dtype) for a in (q, k, v)]
        for fn in (
            backend.mod.scaled_dot_product_attention,
            backend.mod.flash_attention,
        ):
            out = fn(*args, **nat)
            assert backend.dtype_name(out) == dtype
            np.testing.assert_allclose(backend.to_numpy(out), want, atol=tol, rtol=0)


def test_bottom_right_rows_without_keys(backend):
    """Bottom-right causal with Lq > Lk: the first Lq - Lk rows see no key. Weights
    0, output 0, log-sum-exp -inf (or the sink, which then takes all the mass) -
    never NaN, in every path."""
    q = backend.asarray(np.random.default_rng(2).normal(size=(1, 6, 4)))
    k = backend.asarray(np.random.default_rng(3).normal(size=(1, 3, 4)))
    kw = {"causal": True, "align": "bottom_right"}
    o, w = backend.mod.scaled_dot_product_attention(q, k, k, **kw, return_weights=True)
    fast = backend.mod.scaled_dot_product_attention(q, k, k, **kw)
    flash, lse = backend.mod.flash_attention(q, k, k, **kw, return_lse=True)
    for a in (o, w, fast, flash):
        a = backend.to_numpy(a)
        assert np.all(np.isfinite(a)) and np.all(a[0, :3] == 0)
    assert np.all(np.isneginf(backend.to_numpy(lse)[0, :3])) and np.all(
        np.isfinite(backend.to_numpy(lse)[0, 3:])
    )
    sink = backend.asarray(np.full((6,), 0.5))
    _, lse_sink = backend.mod.flash_attention(q, k, k, **kw, sink=sink, return_lse=True)
    np.testing.assert_allclose(backend.to_numpy(lse_sink)[0, :3], 0.5)


def test_sink_weights_sum_to_one_minus_the_sink_share(backend):
    """With a sink, a row's weights sum to 1 - sigmoid(sink - lse_keys): the mass the
    sink absorbs."""
    rng = np.random.default_rng(4)
    q, k, v = (
        backend.asarray(rng.normal(size=s)) for s in ((2, 5, 4), (2, 6, 4), (2, 6, 3))
    )
    # one sink per batch entry, shape (2, 1)
    sink = backend.asarray(np.array([[-1.0], [2.0]]))
    _, w = backend.mod.scaled_dot_product_attention(
        q, k, v, sink=sink, return_weights=True
    )
    _, lse_keys = backend.mod.flash_attention(q, k, v, return_lse=True)
    share = 1 / (1 + np.exp(-(np.array([[-1.0], [2.0]]) - backend.to_numpy(lse_keys))))
    np.testing.assert_allclose(backend.to_numpy(w).sum(-1), 1 - share, atol=1e-12)


# --- the helpers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("lq,lk", SHAPES + [(0, 3), (3, 0)])
@pytest.mark.parametrize("align", ALIGNS)
def test_mask_helpers(backend, lq, lk, align):
    got = backend.to_numpy(backend.mod.causal_mask(lq, lk, align=align))
    np.testing.assert_array_equal(got, oracle.allowed(lq, lk, causal=True, align=align))
    for window in WINDOWS:
        got = backend.to_numpy(backend.mod.window_mask(lq, lk, window, align=align))
        np.testing.assert_array_equal(
            got, oracle.allowed(lq, lk, window=window, align=align)
        )


def test_window_mask_is_what_window_applies(backend):
    """``window=`` and ``mask=window_mask(...)`` are the same attention."""
    rng = np.random.default_rng(5)
    q, k = (backend.asarray(rng.normal(size=s)) for s in ((2, 6, 4), (2, 9, 4)))
    for window, align in itertools.product(WINDOWS[1:], ALIGNS):
        a = backend.mod.scaled_dot_product_attention(
            q, k, k, window=window, align=align
        )
        b = backend.mod.scaled_dot_product_attention(
            q, k, k, mask=backend.mod.window_mask(6, 9, window, align=align)
        )
        np.testing.assert_allclose(backend.to_numpy(a), backend.to_numpy(b), atol=1e-12)


def test_document_mask_packs_sequences(backend):
    """Packed documents with causal=True equal each document attended on its own."""
    rng = np.random.default_rng(6)
    seg = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    x = rng.normal(size=(9, 4))
    m = backend.mod.document_mask(backend.asarray(seg))
    np.testing.assert_array_equal(backend.to_numpy(m), seg[:, None] == seg[None, :])
    packed = backend.to_numpy(
        backend.mod.scaled_dot_product_attention(
            *(backend.asarray(x),) * 3, mask=m, causal=True
        )
    )
    for doc in range(3):
        part = x[seg == doc]
        alone = backend.to_numpy(
            backend.mod.scaled_dot_product_attention(
                *(backend.asarray(part),) * 3, causal=True
            )
        )
        np.testing.assert_allclose(packed[seg == doc], alone, atol=1e-12)
    cross = backend.mod.document_mask(
        backend.asarray(np.array([[0, 1]])), backend.asarray(np.array([[1, 1, 0]]))
    )
    np.testing.assert_array_equal(
        backend.to_numpy(cross), [[[False, False, True], [True, True, False]]]
    )


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_embedding(backend, interleaved):
    """RoPE equals the explicit 2x2 rotations, and <R_m q, R_n k> depends only on n -
    m."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 7, 8))
    got = backend.to_numpy(
        backend.mod.rotary_embedding(
            backend.asarray(x), interleaved=interleaved, base=100.0
        )
    )
    np.testing.assert_allclose(
        got, oracle.rotary(x, base=100.0, interleaved=interleaved), atol=1e-12
    )
    pos = np.array([3, 10, 4, 0, 7, 7, 2])
    got = backend.to_numpy(
        backend.mod.rotary_embedding(
            backend.asarray(x), backend.asarray(pos), interleaved=interleaved
        )
    )
    np.testing.assert_allclose(
        got, oracle.rotary(x, pos, interleaved=interleaved), atol=1e-12
    )
    q, k = rng.normal(size=(1, 8)), rng.normal(size=(1, 8))

    def dot(m, n):
        rq = backend.to_numpy(
            backend.mod.rotary_embedding(
                backend.asarray(q),
                backend.asarray(np.array([m])),
                interleaved=interleaved,
            )
        )
        rk = backend.to_numpy(
            backend.mod.rotary_embedding(
                backend.asarray(k),
                backend.asarray(np.array([n])),
                interleaved=interleaved,
            )
        )
        return (rq @ rk.T).item()

    for m, n in [(0, 3), (5, 8), (100, 103), (1000, 1003)]:
        assert abs(dot(m, n) - dot(0, 3)) < 1e-9
    assert abs(dot(0, 4) - dot(0, 3)) > 1e-3


@pytest.mark.parametrize("heads", [1, 2, 3, 5, 6, 8, 12, 16, 20])
def test_alibi(backend, heads):
    """Press et al.'s slopes, geometric for powers of two and interleaved otherwise;
    the bias is -slope |p_i - j|."""
    np.testing.assert_allclose(
        backend.to_numpy(backend.mod.alibi_slopes(heads, dtype="float64")),
        oracle.alibi_slopes(heads),
        rtol=1e-12,
    )
    for align in ALIGNS:
        got = backend.to_numpy(
            backend.mod.alibi_bias(heads, 4, 6, align=align, dtype="float64")
        )
        pos = np.arange(4)[:, None] + (2 if align == "bottom_right" else 0)
        want = -oracle.alibi_slopes(heads)[:, None, None] * np.abs(
            pos - np.arange(6)[None, :]
        )
        np.testing.assert_allclose(got, want, rtol=1e-12)


# --- the same features in other libraries
# ----------------------------------------------------------------------------


def test_against_torch_sdpa_gqa_and_lower_right(backend):
    """PyTorch's own answers: ``F.scaled_dot_product_attention(enable_gqa=True)`` and
    the lower-right causal bias ``torch.nn.attention.bias.causal_lower_right`` (where
    every row has a key)."""
    torch = framework("torch")
    import torch.nn.functional as F
    from torch.nn.attention.bias import causal_lower_right

    rng = np.random.default_rng(8)
    q, k, v = (
        rng.normal(size=(2, 8, 5, 16)),
        rng.normal(size=(2, 2, 9, 16)),
        rng.normal(size=(2, 2, 9, 16)),
    )
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    want = F.scaled_dot_product_attention(tq, tk, tv, enable_gqa=True).numpy()
    got = backend.mod.scaled_dot_product_attention(
        *(backend.asarray(a) for a in (q, k, v)), enable_gqa=True
    )
    np.testing.assert_allclose(backend.to_numpy(got), want, atol=1e-12)
    bias = causal_lower_right(5, 9)
    want = F.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=bias, enable_gqa=True
    ).numpy()
    got = backend.mod.flash_attention(
        *(backend.asarray(a) for a in (q, k, v)),
        enable_gqa=True,
        causal=True,
        align="bottom_right",
        block_size=2,
    )
    np.testing.assert_allclose(backend.to_numpy(got), want, atol=1e-12)


def test_against_flex_attention(backend):
    """FlexAttention (PyTorch's score_mod / mask_mod API, unfused on the CPU):
    softcap and ALiBi as score_mods, a causal sliding window and packed documents as
    mask_mods."""
    torch = framework("torch")
    from torch.nn.attention.flex_attention import (
        and_masks,
        create_block_mask,
        flex_attention,
    )

    rng = np.random.default_rng(9)
    H, L, w, cap = 4, 12, 4, 2.0
    q, k, v = (rng.normal(size=(1, H, L, 8)) for _ in range(3))
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    seg = np.array([0] * 5 + [1] * 4 + [2] * 3)
    tseg = torch.from_numpy(seg)
    slopes = torch.from_numpy(oracle.alibi_slopes(H))
    mods = {
        "softcap": (
            lambda s, b, h, i, j: cap * torch.tanh(s / cap),
            None,
            {"softcap": cap},
        ),
        "alibi": (
            lambda s, b, h, i, j: s - slopes[h] * (i - j).abs(),
            None,
            {"bias": backend.mod.alibi_bias(H, L, L, dtype="float64")},
        ),
        "window": (
            None,
            and_masks(lambda b, h, i, j: i >= j, lambda b, h, i, j: i - j < w),
            {"causal": True, "window": (w - 1, 0)},
        ),
        "documents": (
            None,
            lambda b, h, i, j: (tseg[i] == tseg[j]) & (i >= j),
            {"causal": True, "mask": backend.mod.document_mask(backend.asarray(seg))},
        ),
    }
    with warnings.catch_warnings():
        # "flex_attention called without torch.compile()"
        warnings.simplefilter("ignore", UserWarning)
        for name, (score_mod, mask_mod, ours) in mods.items():
            block = (
                None
                if mask_mod is None
                else create_block_mask(mask_mod, 1, 1, L, L, device="cpu")
            )
            want = flex_attention(
                tq, tk, tv, score_mod=score_mod, block_mask=block
            ).numpy()
            for fn in (
                backend.mod.scaled_dot_product_attention,
                backend.mod.flash_attention,
            ):
                got = fn(*(backend.asarray(a) for a in (q, k, v)), **ours)
                np.testing.assert_allclose(
                    backend.to_numpy(got), want, atol=1e-6, err_msg=name
                )


def test_against_keras_gqa(backend):
    """``keras.ops.dot_product_attention`` (layout (B, T, N, H)) with grouped heads
    and ``is_causal``. (Its ``attn_logits_soft_cap`` runs only with JAX on a TPU:
    Keras refuses it here.)"""
    framework("tensorflow")
    import keras

    rng = np.random.default_rng(10)
    q, k, v = (
        rng.normal(size=(2, 6, 8, 4)),
        rng.normal(size=(2, 6, 2, 4)),
        rng.normal(size=(2, 6, 2, 4)),
    )

    def t(a):
        return np.swapaxes(a, 1, 2)  # (B, T, N, H) -> (B, N, T, H)

    for causal in (False, True):
        want = keras.ops.convert_to_numpy(
            keras.ops.dot_product_attention(
                *(a.astype(np.float32) for a in (q, k, v)), is_causal=causal
            )
        )
        got = backend.mod.scaled_dot_product_attention(
            *(backend.asarray(t(a), "float32") for a in (q, k, v)),
            enable_gqa=True,
            causal=causal,
        )
        np.testing.assert_allclose(t(backend.to_numpy(got)), want, atol=2e-5)


def test_against_transformers_rotary_sinks_softcap_and_windows(backend):
    """Hugging Face transformers: Llama's rotary embedding (rotate half), GPT-OSS'
    attention sinks, Gemma 2's softcap, and the window conventions of its mask
    functions (a causal ``sliding_window = w`` keeps w keys, ``window=(w - 1, 0)``;
    the bidirectional overlay keeps ``|i - j| <= w``, ``window=(w, w)``)."""
    torch = framework("torch")
    pytest.importorskip("transformers")
    from transformers import LlamaConfig
    from transformers.masking_utils import (
        sliding_window_bidirectional_overlay,
        sliding_window_causal_mask_function,
    )
    from transformers.models.gemma2.modeling_gemma2 import (
        eager_attention_forward as gemma2_attention,
    )
    from transformers.models.gpt_oss.modeling_gpt_oss import (
        eager_attention_forward as gpt_oss_attention,
    )
    from transformers.models.llama.modeling_llama import (
        LlamaRotaryEmbedding,
        apply_rotary_pos_emb,
    )

    rng = np.random.default_rng(11)
    cfg = LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        head_dim=16,
        rope_theta=500000.0,
        max_position_embeddings=64,
    )
    rope = LlamaRotaryEmbedding(cfg)
    x = rng.normal(size=(1, 4, 10, 16)).astype(np.float32)
    pos = torch.arange(3, 13)[None]
    cos, sin = rope(torch.from_numpy(x), pos)
    want, _ = apply_rotary_pos_emb(torch.from_numpy(x), torch.from_numpy(x), cos, sin)
    got = backend.mod.rotary_embedding(
        backend.asarray(x), backend.asarray(np.arange(3, 13)), base=500000.0
    )
    np.testing.assert_allclose(backend.to_numpy(got), want.numpy(), atol=2e-5)

    q, k, v = (
        rng.normal(size=(2, 4, 5, 8)),
        rng.normal(size=(2, 2, 5, 8)),
        rng.normal(size=(2, 2, 5, 8)),
    )
    sinks = rng.normal(size=4)
    module = torch.nn.Module()
    module.num_key_value_groups, module.sinks, module.training = (
        2,
        torch.from_numpy(sinks),
        False,
    )
    module.head_dim = 8
    causal = torch.from_numpy(np.where(np.tril(np.ones((5, 5))) > 0, 0.0, -np.inf))
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    want = (
        gpt_oss_attention(module, tq, tk, tv, causal, scaling=8**-0.5)[0]
        .transpose(1, 2)
        .numpy()
    )
    got = backend.mod.scaled_dot_product_attention(
        *(backend.asarray(a) for a in (q, k, v)),
        enable_gqa=True,
        causal=True,
        sink=backend.asarray(sinks[:, None]),
    )
    np.testing.assert_allclose(backend.to_numpy(got), want, atol=1e-12)
    want = (
        gemma2_attention(module, tq, tk, tv, causal, softcap=0.7)[0]
        .transpose(1, 2)
        .numpy()
    )
    got = backend.mod.flash_attention(
        *(backend.asarray(a) for a in (q, k, v)),
        enable_gqa=True,
        causal=True,
        softcap=0.7,
        block_size=2,
    )
    # Gemma 2 does its softmax in float32
    np.testing.assert_allclose(backend.to_numpy(got), want, atol=1e-6)

    for w in (1, 3, 6):
        # the mask functions broadcast
        i, j = torch.arange(8)[:, None], torch.arange(8)[None, :]
        causal_w = sliding_window_causal_mask_function(w)(0, 0, i, j).numpy()
        np.testing.assert_array_equal(
            backend.to_numpy(backend.mod.window_mask(8, 8, (w - 1, 0))), causal_w
        )
        both = np.broadcast_to(
            sliding_window_bidirectional_overlay(w)(0, 0, i, j).numpy(), (8, 8)
        )
        np.testing.assert_array_equal(
            backend.to_numpy(backend.mod.window_mask(8, 8, (w, w))), both
        )


def test_against_transformers_alibi_slopes():
    """BLOOM's ALiBi slopes in transformers, non-powers of two included."""
    torch = framework("torch")
    pytest.importorskip("transformers")
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    import attnbook.numpy as an

    for heads in (4, 6, 12, 20):
        # slope_h * position
        alibi = build_alibi_tensor(torch.ones(1, 3), heads, torch.float64)
        np.testing.assert_allclose(
            alibi[:, 0, 1].numpy(), an.alibi_slopes(heads, dtype="float64"), rtol=1e-6
        )


# --- gradients
# --------------------------------------------------------------------------------------

GRAD_OPTIONS = [
    {"causal": True, "window": (2, 0), "align": "bottom_right"},
    {"softcap": 1.5, "enable_gqa": True},
    {"sink": True, "enable_gqa": True, "causal": True},
    {"window": (1, 1), "softcap": 2.0, "sink": True},
]


def _grad_inputs(rng, opts):
    h, hkv = (4, 2) if opts.get("enable_gqa") else (2, 2)
    arrays = {
        "query": rng.normal(size=(1, h, 4, 3)),
        "key": rng.normal(size=(1, hkv, 6, 3)),
        "value": rng.normal(size=(1, hkv, 6, 2)),
    }
    if opts.get("sink"):
        arrays["sink"] = rng.normal(size=(h, 1))
    kw = {k: v for k, v in opts.items() if k != "sink"}
    return arrays, kw


def _loss_np(arrays, kw, cot):
    out = oracle.attention(
        arrays["query"], arrays["key"], arrays["value"], sink=arrays.get("sink"), **kw
    )[0]
    return float(np.sum(out * cot))


@pytest.mark.parametrize("opts", GRAD_OPTIONS, ids=lambda o: "-".join(o))
def test_gradients_torch_tensorflow_and_finite_differences(opts):
    """d(sum(out * c))/d(query, key, value, sink) in torch (fast path and flash) and
    TensorFlow (fast path and flash) equal central finite differences of the float64
    oracle."""
    torch = framework("torch")
    tf = framework("tensorflow")
    T, TF = get("torch"), get("tensorflow")
    rng = np.random.default_rng(12)
    arrays, kw = _grad_inputs(rng, opts)
    cot = rng.normal(
        size=oracle.attention(
            arrays["query"],
            arrays["key"],
            arrays["value"],
            sink=arrays.get("sink"),
            **kw,
        )[0].shape
    )
    want = {}
    eps = 1e-6
    for name, a in arrays.items():
        g = np.zeros_like(a)
        for idx in np.ndindex(*a.shape):
            plus, minus = dict(arrays), dict(arrays)
            plus[name], minus[name] = a.copy(), a.copy()
            plus[name][idx] += eps
            minus[name][idx] -= eps
            g[idx] = (_loss_np(plus, kw, cot) - _loss_np(minus, kw, cot)) / (2 * eps)
        want[name] = g
    for fn in ("scaled_dot_product_attention", "flash_attention"):
        leaves = {n: torch.tensor(a, requires_grad=True) for n, a in arrays.items()}
        out = getattr(T.mod, fn)(
            leaves["query"],
            leaves["key"],
            leaves["value"],
            sink=leaves.get("sink"),
            **kw,
        )
        (out * torch.from_numpy(cot)).sum().backward()
        for n in arrays:
            np.testing.assert_allclose(
                leaves[n].grad.numpy(), want[n], atol=1e-6, err_msg=f"torch {fn} {n}"
            )
        variables = {n: tf.Variable(a) for n, a in arrays.items()}
        with tf.GradientTape() as tape:
            out = getattr(TF.mod, fn)(
                variables["query"],
                variables["key"],
                variables["value"],
                sink=variables.get("sink"),
                **kw,
            )
            loss = tf.reduce_sum(out * cot)
        grads = tape.gradient(loss, list(variables.values()))
        for n, g in zip(variables, grads, strict=False):
            np.testing.assert_allclose(
                g.numpy(), want[n], atol=1e-6, err_msg=f"tensorflow {fn} {n}"
            )


# --- multi-head attention with the options
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kv_heads,rope,window,align",
    [
        (4, None, None, "top_left"),
        (2, 10000.0, (2, 0), "top_left"),
        (1, 500000.0, None, "bottom_right"),
        (2, 100.0, (1, 1), "bottom_right"),
    ],
)
def test_multi_head_options_match_the_oracle(backend, kv_heads, rope, window, align):
    from cases import mha_params

    rng = np.random.default_rng(13)
    H, D = 4, 16
    p = mha_params(rng, 6, 5, 5, D, 7)
    p["w_k"], p["w_v"] = (
        p["w_k"][:, : kv_heads * D // H],
        p["w_v"][:, : kv_heads * D // H],
    )
    p["b_k"], p["b_v"] = p["b_k"][: kv_heads * D // H], p["b_v"][: kv_heads * D // H]
    q, k = rng.normal(size=(2, 3, 6)), rng.normal(size=(2, 5, 5))
    kw = {
        "num_kv_heads": kv_heads,
        "rope": rope,
        "window": window,
        "align": align,
        "causal": True,
        "softcap": 4.0,
    }
    want_o, want_w = oracle.multi_head_attention(q, k, k, p, H, **kw)
    out, w = backend.mod.multi_head_attention(
        backend.asarray(q),
        backend.asarray(k),
        backend.asarray(k),
        backend.params(p),
        H,
        return_weights=True,
        **kw,
    )
    np.testing.assert_allclose(backend.to_numpy(out), want_o, atol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(w), want_w, atol=1e-10)
    fast = backend.mod.multi_head_attention(
        backend.asarray(q),
        backend.asarray(k),
        backend.asarray(k),
        backend.params(p),
        H,
        **kw,
    )
    np.testing.assert_allclose(backend.to_numpy(fast), want_o, atol=1e-10)


# --- the cost of a window
# --------------------------------------------------------------------------------------


def test_flash_computes_only_the_window(monkeypatch):
    """A causal window of w keys with tiles of b: every query block computes at most
    ceil((w + b) / b) + 1 tiles, so the work grows as Lq * w, not Lq * Lk."""
    import attnbook.numpy as an

    shapes = []
    real = an._scores
    monkeypatch.setattr(
        an,
        "_scores",
        lambda q, k, *a, **kw: (shapes.append(k.shape[-2]), real(q, k, *a, **kw))[1],
    )
    x = np.random.default_rng(14).normal(size=(256, 8))
    for n in (64, 256):
        shapes.clear()
        an.flash_attention(
            x[:n], x[:n], x[:n], causal=True, window=(15, 0), block_size=16
        )
        keys = sum(shapes)
        # about three tiles of 16 keys per block of 16 queries
        assert keys <= (n // 16) * (16 + 16 + 16)
    assert keys < 256 * 256 / 4


def test_all_backends_agree_on_a_large_gqa_window_call():
    """One larger call (GQA 8/2 heads, a window, bottom-right, softcap, sink) in
    float32 in every twin and path."""
    rng = np.random.default_rng(15)
    q, k, v = (
        rng.normal(size=(2, 8, 100, 32)),
        rng.normal(size=(2, 2, 130, 32)),
        rng.normal(size=(2, 2, 130, 16)),
    )
    sink = rng.normal(size=(8, 1))
    kw = dict(
        enable_gqa=True, causal=True, window=(40, 0), align="bottom_right", softcap=5.0
    )
    want = oracle.attention(q, k, v, sink=sink, **kw)[0]
    for B in all_backends():
        args = [B.asarray(a, "float32") for a in (q, k, v)]
        s = B.asarray(sink, "float32")
        for out in (
            B.mod.scaled_dot_product_attention(*args, sink=s, **kw),
            B.mod.flash_attention(*args, sink=s, **kw),
            B.mod.flash_attention(*args, sink=s, block_size=32, **kw),
        ):
            np.testing.assert_allclose(B.to_numpy(out), want, atol=3e-6)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"causal": True},
        {"window": (100, 0), "causal": True, "enable_gqa": True},
        {"softcap": 3.0, "align": "bottom_right", "causal": True},
    ],
)
def test_numpy_blocks_on_threads_equal_the_serial_loop(monkeypatch, kw):
    """The NumPy twin runs its query blocks on one thread per core (BLAS pinned to
    one thread each); the result is the serial loop's, in both fast paths."""
    pytest.importorskip("threadpoolctl")
    import attnbook.numpy as an

    rng = np.random.default_rng(16)
    h = 4 if kw.get("enable_gqa") else 2
    q = rng.normal(size=(1, h, 700, 16)).astype(np.float32)
    k, v = (rng.normal(size=(1, 2, 900, 16)).astype(np.float32) for _ in range(2))
    results = {}
    for mode in ("serial", "threads"):
        monkeypatch.setattr(an, "_PARALLEL_MIN", 0 if mode == "threads" else 1 << 62)
        monkeypatch.setattr(an, "_cores", lambda: 2)
        monkeypatch.setattr(an, "_SCORE_BLOCK", 1 << 16)  # several blocks at this size
        results[mode] = (
            an.scaled_dot_product_attention(q, k, v, **kw),
            an.flash_attention(q, k, v, **kw, block_size=128),
        )
    for a, b in zip(results["serial"], results["threads"], strict=False):
        np.testing.assert_allclose(a, b, atol=2e-6)
    want = oracle.attention(q, k, v, **kw)[0]
    np.testing.assert_allclose(results["threads"][0], want, atol=2e-5)


@pytest.mark.parametrize("window", [(None, 2), (None, 0), (2, None), (0, None)])
@pytest.mark.parametrize("causal", [False, True])
def test_one_sided_windows_without_mask_or_bias(backend, window, causal):
    """One-sided windows with nothing else masking: the call PyTorch's fused path
    takes (a look-ahead window (None, r > 0) once went to the kernel's is_causal
    there)."""
    rng = np.random.default_rng(17)
    q, k = rng.normal(size=(1, 2, 5, 4)), rng.normal(size=(1, 2, 7, 4))
    for align in ALIGNS:
        want = oracle.attention(q, k, k, window=window, causal=causal, align=align)[0]
        for fn in (
            backend.mod.scaled_dot_product_attention,
            backend.mod.flash_attention,
        ):
            got = fn(
                backend.asarray(q),
                backend.asarray(k),
                backend.asarray(k),
                window=window,
                causal=causal,
                align=align,
            )
            np.testing.assert_allclose(backend.to_numpy(got), want, atol=1e-12)


@pytest.mark.parametrize("lk, path", [(2048, "_fused"), (2100, "_flash_grouped")])
def test_torch_window_goes_to_the_kernel_as_a_mask_up_to_2_22_scores(lk, path):
    """A window with a left edge is a mask for PyTorch's kernel while the call has at
    most 2**22 scores (2 heads x 1024 x 2048 is exactly that), and the tiled path above;
    both give the oracle's output, bottom-right aligned, with a look-ahead."""
    torch = pytest.importorskip("torch")
    from unittest import mock

    import attnbook.torch as at

    rng = np.random.default_rng(7)
    q, k, v = (
        rng.standard_normal((1, 2, n, 16)).astype(np.float32) for n in (1024, lk, lk)
    )
    window = (300, 2)
    with (
        mock.patch.object(at, "_fused", wraps=at._fused) as fused,
        mock.patch.object(at, "_flash_grouped", wraps=at._flash_grouped) as tiled,
    ):
        out = at.scaled_dot_product_attention(
            *map(torch.from_numpy, (q, k, v)), window=window, align="bottom_right"
        )
        taken = {"_fused": fused.called, "_flash_grouped": tiled.called}
    assert taken == {name: name == path for name in taken}
    allowed = oracle.allowed(1024, lk, window=window, align="bottom_right")
    want, _ = oracle.scaled_dot_product_attention(q, k, v, mask=allowed)
    np.testing.assert_allclose(out.numpy(), want, atol=2e-5, rtol=1e-4)
