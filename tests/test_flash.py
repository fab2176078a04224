"""flash_attention: exact agreement with the oracle for every mask case, tile sizes,
LSE, gradients, bad input."""

import importlib

import numpy as np
import pytest

import oracle

CASES = {
    "none": {},
    "mask": {"mask": True},
    "broadcast_mask": {"mask": "broadcast"},
    "causal": {"causal": True},
    "causal_mask": {"causal": True, "mask": True},
    "bias": {"bias": True},
    "mask_bias_causal": {"causal": True, "mask": True, "bias": True},
}


def _case(name, lq, lk, seed=0, batch=(2, 3)):
    rng = np.random.default_rng(seed)
    spec = CASES[name]
    q, k, v = (
        rng.normal(size=batch + (lq, 4)),
        rng.normal(size=batch[-1:] + (lk, 4)),
        rng.normal(size=batch + (lk, 3)),
    )
    mask = bias = None
    if spec.get("mask") is True:
        mask = rng.random(batch + (lq, lk)) < 0.7
        if lq > 2:
            mask[0, 0, 2] = False  # one fully masked row
    elif spec.get("mask") == "broadcast":
        mask = rng.random((lk,)) < 0.7  # a key mask, rank 1
    if spec.get("bias"):
        bias = rng.normal(size=(lq, 1))  # broadcast over keys
    return (q, k, v), mask, bias, spec.get("causal", False)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(
    "lq,lk,block", [(7, 11, 3), (11, 7, 4), (16, 16, 16), (9, 9, 1), (5, 13, None)]
)
def test_matches_oracle(backend, name, lq, lk, block):
    (q, k, v), mask, bias, causal = _case(name, lq, lk)
    want, _ = oracle.scaled_dot_product_attention(q, k, v, mask, bias, causal=causal)

    def x(a):
        return None if a is None else backend.asarray(a)

    out, lse = backend.mod.flash_attention(
        x(q),
        x(k),
        x(v),
        x(mask),
        x(bias),
        causal=causal,
        block_size=block,
        return_lse=True,
    )
    np.testing.assert_allclose(backend.to_numpy(out), want, atol=1e-10, rtol=0)
    want_lse = _want_lse(
        q, k, 0.5, mask, bias, oracle.causal_mask(lq, lk) if causal else None
    )
    np.testing.assert_allclose(backend.to_numpy(lse), want_lse, atol=1e-10, rtol=0)


def _want_lse(q, k, scale, *masks_and_bias):
    """The log-sum-exp of the allowed, scaled scores in float64; -inf where no key is
    allowed. ``masks_and_bias``: ``mask, bias, causal_mask``, each None or
    broadcastable to the scores."""
    mask, bias, tri = (masks_and_bias + (None, None, None))[:3]
    s = (
        np.einsum(
            "...qd,...kd->...qk", q, np.broadcast_to(k, q.shape[:-2] + k.shape[-2:])
        )
        * scale
    )
    if bias is not None:
        s = s + bias
    allowed = np.ones(s.shape, bool) if mask is None else np.broadcast_to(mask, s.shape)
    if tri is not None:
        allowed = allowed & tri
    with np.errstate(divide="ignore"):
        return np.log(np.where(allowed, np.exp(s), 0).sum(-1))


@pytest.mark.parametrize("lq,lk", [(0, 4), (4, 0), (0, 0)])
def test_empty(backend, lq, lk):
    (q, k, v), *_ = _case("none", lq, lk)
    out = backend.to_numpy(
        backend.mod.flash_attention(*(backend.asarray(a) for a in (q, k, v)))
    )
    assert out.shape == (2, 3, lq, 3) and not out.any()


def test_float32_and_dtype(backend):
    (q, k, v), mask, _, _ = _case("mask", 33, 40)
    args = [backend.asarray(a, "float32") for a in (q, k, v)]
    out = backend.mod.flash_attention(
        *args, backend.asarray(mask), causal=True, block_size=8
    )
    assert "float32" in str(out.dtype)
    want, _ = oracle.scaled_dot_product_attention(q, k, v, mask, causal=True)
    np.testing.assert_allclose(backend.to_numpy(out), want, atol=1e-5, rtol=0)


def test_agrees_with_sdpa_at_large_logits(backend):
    rng = np.random.default_rng(3)
    q, k, v = (rng.normal(size=(20, 8)) * 100 for _ in range(3))
    a = [backend.asarray(x) for x in (q, k, v)]
    flash = backend.to_numpy(backend.mod.flash_attention(*a, scale=1.0, block_size=6))
    naive = backend.to_numpy(backend.mod.scaled_dot_product_attention(*a, scale=1.0))
    assert np.isfinite(flash).all()
    np.testing.assert_allclose(flash, naive, atol=1e-9, rtol=0)


def test_gradients_match_sdpa():
    torch = pytest.importorskip("torch")
    import attnbook.torch as at

    rng = np.random.default_rng(4)
    q, k, v = (
        torch.tensor(rng.normal(size=(2, 9, 4)), requires_grad=True) for _ in range(3)
    )
    mask = torch.tensor(rng.random((9, 9)) < 0.8)
    g = torch.tensor(rng.normal(size=(2, 9, 4)))
    grads = []
    for fn in (
        lambda: at.flash_attention(q, k, v, mask, causal=True, block_size=4),
        lambda: at.scaled_dot_product_attention(
            q, k, v, mask, causal=True, return_weights=True
        )[0],
    ):
        (fn() * g).sum().backward()
        grads.append([t.grad.clone() for t in (q, k, v)])
        for t in (q, k, v):
            t.grad = None
    for a, b in zip(*grads, strict=False):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_gradients_tensorflow_match_torch():
    tf = pytest.importorskip("tensorflow")
    torch = pytest.importorskip("torch")
    import attnbook.tensorflow as atf
    import attnbook.torch as at

    rng = np.random.default_rng(5)
    arrays = [rng.normal(size=(3, 7, 4)) for _ in range(3)]
    g = rng.normal(size=(3, 7, 4))
    tq = [torch.tensor(a, requires_grad=True) for a in arrays]
    (
        at.flash_attention(*tq, causal=True, block_size=3) * torch.tensor(g)
    ).sum().backward()
    fq = [tf.Variable(a) for a in arrays]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(atf.flash_attention(*fq, causal=True, block_size=3) * g)
    for t, f in zip(tq, tape.gradient(loss, fq), strict=False):
        np.testing.assert_allclose(t.grad.numpy(), f.numpy(), atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "block_size,exc",
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)],
)
def test_bad_block_size(backend, block_size, exc):
    (q, k, v), *_ = _case("none", 3, 3)
    messages = set()
    with pytest.raises(exc, match="block_size") as err:
        backend.mod.flash_attention(
            *(backend.asarray(a) for a in (q, k, v)), block_size=block_size
        )
    messages.add(str(err.value))
    assert len(messages) == 1


def test_causal_skips_blocks_above_the_diagonal(monkeypatch):
    """With causal=True and Lq = Lk = 4 blocks, only the 10 tiles on or below the
    diagonal are computed."""
    import attnbook.numpy as an

    calls = []
    real = np.exp
    monkeypatch.setattr(
        an.np, "exp", lambda x, **kw: (calls.append(np.shape(x)), real(x, **kw))[1]
    )
    q = np.random.default_rng(6).normal(size=(16, 4))
    an.flash_attention(q, q, q, causal=True, block_size=4)
    tiles = [s for s in calls if s == (4, 4)]
    assert len(tiles) == 10  # 4 + 3 + 2 + 1; the 6 tiles above the diagonal are skipped


@pytest.mark.parametrize(
    "block_size, return_lse", [(None, False), (None, True), (512, True), (256, False)]
)
def test_tensorflow_unmasked_tiles_take_the_fused_softmax(
    monkeypatch, block_size, return_lse
):
    """Tiles without mask, bias or diagonal go through ``tf.nn.softmax`` and merge by
    their log-sum-exp.

    One key tile (the default tiles) and four or eight of them; with and without
    ``return_lse``. Outputs, the log-sum-exp and the gradients through both are those
    of the oracle and of SDPA."""
    tf = pytest.importorskip("tensorflow")
    import attnbook.tensorflow as atf

    calls = []
    real = atf._flash_tile_fused
    monkeypatch.setattr(
        atf, "_flash_tile_fused", lambda *a: (calls.append(a[0].shape), real(*a))[1]
    )
    rng = np.random.default_rng(11)
    q, k, v = (
        rng.normal(size=(2, 512, 16)),
        rng.normal(size=(2, 2048, 16)),
        rng.normal(size=(2, 2048, 8)),
    )
    cotangent = tf.constant(rng.normal(size=(2, 512, 8)), tf.float32)
    lse_cotangent = tf.constant(rng.normal(size=(2, 512)), tf.float32)

    def run(fn):
        args = [tf.constant(a, tf.float32) for a in (q, k, v)]
        with tf.GradientTape() as tape:
            tape.watch(args)
            res = fn(*args)
            out, lse = res if isinstance(res, tuple) else (res, None)
            loss = tf.reduce_sum(out * cotangent)
            if lse is not None:
                loss += tf.reduce_sum(lse * lse_cotangent)
        return out.numpy(), lse, [g.numpy() for g in tape.gradient(loss, args)]

    out, lse, grads = run(
        lambda *a: atf.flash_attention(*a, block_size=block_size, return_lse=return_lse)
    )
    tiles = 1 if block_size is None else (512 // block_size) * (2048 // block_size)
    # One tile and no log-sum-exp wanted: the softmax of that tile is the answer, with
    # no state to merge into.
    assert len(calls) == (0 if tiles == 1 and not return_lse else tiles), (
        "a tile missed the fused softmax"
    )
    expected, _ = oracle.scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    if return_lse:
        np.testing.assert_allclose(lse.numpy(), _want_lse(q, k, 0.25), atol=1e-5)

        # reference gradients: SDPA for the output plus d lse / d s = softmax(s) through
        # the same scores
        def ref(qq, kk, vv):
            scores = tf.linalg.matmul(qq, kk, transpose_b=True) / 4.0
            return atf.scaled_dot_product_attention(qq, kk, vv), tf.reduce_logsumexp(
                scores, axis=-1
            )

        _, _, ref_grads = run(ref)
    else:
        _, _, ref_grads = run(atf.scaled_dot_product_attention)
    for g, r in zip(grads, ref_grads, strict=False):
        np.testing.assert_allclose(g, r, atol=1e-4)


@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
def test_default_tiles_share_one_memory_budget_across_heads(backend):
    """16 heads of N = 2048 hold 256 MiB of float32 scores. The default tiles are a
    budget of scores shared by all heads at once (8 MiB in NumPy, 32 MiB in
    TensorFlow, with the tile's exponentials alive beside it), so the peak stays
    under half of that; tiles sized per head would need the full 256 MiB and more.
    NumPy's peak is tracemalloc's, TensorFlow's its CPU allocator's."""
    from attnbook.bench import suite

    rng = np.random.default_rng(12)
    arrays = [rng.normal(size=(1, 16, 2048, 32)).astype(np.float32) for _ in range(3)]
    if backend == "tensorflow":
        tf = pytest.importorskip("tensorflow")
        arrays = [tf.constant(a) for a in arrays]
    mod = importlib.import_module(f"attnbook.{backend}")
    # as the bench
    out, peak, method = suite._peak_memory(
        lambda: mod.flash_attention(*arrays), backend, "cpu"
    )
    assert method == {"numpy": "tracemalloc", "tensorflow": "tf_allocator"}[backend]
    assert peak < 128 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    np.testing.assert_allclose(
        np.asarray(out),
        np.asarray(mod.scaled_dot_product_attention(*arrays)),
        atol=1e-6,
    )
