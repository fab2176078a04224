"""attnbook.transformer: the PyTorch and TensorFlow twins compute the NumPy forward
pass, generate the same tokens with and without their KV cache, never look ahead, count
what the formulas say, learn, and refuse the same inputs with the same messages.

Sizes are tiny (width 16, two blocks, sequences of a few dozen tokens) so that the file
runs in well under a minute.
"""

import inspect
import re
import subprocess
import sys

import numpy as np
import pytest

import attnbook.transformer as T
from adapters import framework
from attnbook.transformer import cache as tcache
from attnbook.transformer import numpy as tnp
from attnbook.transformer import text

FRAMEWORKS = ("torch", "tensorflow")
V, D, H, LAYERS, MAX_LEN = 23, 16, 4, 2, 24
# The GPT variants the tests run: every position kind, GQA and MQA, windows, post-LN.
GPTS = {
    "rope": dict(pos="rope"),
    "rope-gqa-window": dict(pos="rope", num_kv_heads=2, window=5),
    "mqa-window": dict(pos="rope", num_kv_heads=1, window=3),
    "learned-post": dict(pos="learned", norm="post"),
    "sinusoidal-gqa": dict(pos="sinusoidal", num_kv_heads=2),
}


def twin(name):
    """The framework's transformer module: skips locally, fails in CI, when the "
    "framework is missing."""
    framework(name)
    import importlib

    return importlib.import_module(f"attnbook.transformer.{name}")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The models are tiny: one thread is as fast, and immune to oversubscribed "
    "machines."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gpt(name, seed=0, **kwargs):
    return twin(name).GPT(V, D, H, LAYERS, MAX_LEN, seed=seed, **kwargs)


def noisy(params, seed=1, scale=0.1):
    """Parameters plus noise, so that biases, norms and positions all matter."""
    rng = np.random.default_rng(seed)
    return {
        k: (v + scale * rng.standard_normal(v.shape)).astype(np.float32)
        for k, v in params.items()
    }


def as_numpy(x):
    from attnbook.plotting import to_numpy

    return np.asarray(to_numpy(x))


def logits_of(model, idx):
    if type(model).__module__.endswith("torch"):
        import torch

        with torch.no_grad():
            return as_numpy(model.eval()(idx))
    return as_numpy(model(idx, training=False))


def tokens(shape, seed=0, high=V):
    return np.random.default_rng(seed).integers(0, high, shape)


def test_import_needs_no_framework():
    code = (
        "import sys, attnbook.transformer, attnbook.transformer.numpy, "
        "attnbook.transformer.text, "
        "attnbook.transformer.cache; "
        "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, "
        "sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------
# One function in three frameworks.


@pytest.mark.parametrize("variant", GPTS)
def test_gpt_twins_compute_the_numpy_forward_from_shared_weights(variant):
    kw = GPTS[variant]
    mt, mf = gpt("torch", seed=2, **kw), gpt("tensorflow", seed=2, **kw)
    idx = tokens((3, 17))
    # The same seed builds the same network in both frameworks ...
    np.testing.assert_allclose(logits_of(mt, idx), logits_of(mf, idx), atol=2e-5)
    # ... and one dict of NumPy arrays gives the NumPy reference's logits (float64) in
    # both.
    params = noisy(mt.get_params())
    mt.set_params(params)
    mf.set_params(mt.get_params())
    want = tnp.gpt(mt.config, {k: v.astype(np.float64) for k, v in params.items()}, idx)
    for model in (mt, mf):
        np.testing.assert_allclose(logits_of(model, idx), want, atol=2e-5, rtol=1e-5)
    back = gpt("torch", seed=9, **kw)
    back.set_params(mf.get_params())
    np.testing.assert_allclose(logits_of(back, idx), want, atol=2e-5, rtol=1e-5)
    assert list(mf.get_params()) == list(T.param_shapes(mt.config))


def _dates_batch(cfg, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([11, 7, 3, 9])
    src = rng.integers(4, cfg["src_vocab"], (4, 11))
    src[np.arange(11)[None, :] >= lengths[:, None]] = 0
    tgt_in = rng.integers(3, cfg["tgt_vocab"], (4, 6))
    tgt_in[:, 0] = 1
    return src, lengths, tgt_in


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(pos="learned", norm="post", num_kv_heads=2)],
    ids=["pre", "post-gqa"],
)
def test_encoder_decoder_twins_compute_the_numpy_forward(kw):
    models = [
        twin(f).EncoderDecoder(30, 12, D, H, LAYERS, MAX_LEN, seed=3, **kw)
        for f in FRAMEWORKS
    ]
    params = noisy(models[0].get_params())
    for m in models:
        m.set_params(params)
    src, lengths, tgt_in = _dates_batch(models[0].config)
    want = tnp.encoder_decoder(
        models[0].config,
        {k: v.astype(np.float64) for k, v in params.items()},
        src,
        lengths,
        tgt_in,
    )
    mt, mf = models
    import torch

    with torch.no_grad():
        got_t, w_t = mt.eval()(src, lengths, tgt_in, return_weights=True)
    got_f, w_f = mf(src, lengths, tgt_in, return_weights=True, training=False)
    for got in (got_t, got_f):
        np.testing.assert_allclose(as_numpy(got), want, atol=2e-5, rtol=1e-5)
    for a, b in zip(w_t, w_f, strict=True):  # cross-attention (B, H, Lout, Lin)
        a, b = as_numpy(a), as_numpy(b)
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
        assert np.all(
            a[np.broadcast_to(np.arange(11) >= lengths[:, None, None, None], a.shape)]
            == 0
        )


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_block_pre_and_post_norm_match_numpy(name):
    mod = twin(name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, D)).astype(np.float32)
    memory = rng.standard_normal((2, 5, D)).astype(np.float32)
    for kw in (
        dict(norm="pre", rope=T.ROPE_BASE, window=(2, 0), num_kv_heads=2),
        dict(norm="post", cross=True),
    ):
        block = mod.Block(D, H, seed=4, **kw)
        params = noisy(block.get_params())
        block.set_params(params)
        extra = dict(memory=memory) if kw.get("cross") else {}
        if name == "torch":
            import torch

            with torch.no_grad():
                out, _ = block.eval()(
                    torch.as_tensor(x),
                    causal=True,
                    **{k: torch.as_tensor(v) for k, v in extra.items()},
                )
        else:
            out, _ = block(x, causal=True, training=False, **extra)
        want = tnp.block(
            {k: v.astype(np.float64) for k, v in params.items()},
            x.astype(np.float64),
            num_heads=H,
            num_kv_heads=kw.get("num_kv_heads"),
            norm=kw["norm"],
            window=kw.get("window"),
            rope=kw.get("rope"),
            causal=True,
            memory=None if not extra else memory.astype(np.float64),
        )
        np.testing.assert_allclose(as_numpy(out), want, atol=2e-5)


def test_twins_have_the_same_signatures():
    mt, mf = twin("torch"), twin("tensorflow")
    for name in (
        "GPT",
        "EncoderDecoder",
        "train_lm",
        "evaluate_lm",
        "train_seq2seq",
        "translate",
        "evaluate",
        "alignments",
    ):
        assert inspect.signature(getattr(mt, name)) == inspect.signature(
            getattr(mf, name)
        ), name
    for cls, method in (
        ("GPT", "generate"),
        ("GPT", "decode"),
        ("EncoderDecoder", "beam_search"),
        ("EncoderDecoder", "greedy_decode"),
    ):
        assert inspect.signature(
            getattr(getattr(mt, cls), method)
        ) == inspect.signature(getattr(getattr(mf, cls), method)), (cls, method)
    assert inspect.signature(mt.Block.__init__) == inspect.signature(
        mf.Block.__init__
    ).replace(
        parameters=[
            p
            for p in inspect.signature(mf.Block.__init__).parameters.values()
            if p.name != "kwargs"
        ]
    )


# --------------------------------------------------------------------------------------
# Generation and the KV cache.


@pytest.mark.parametrize("name", FRAMEWORKS)
@pytest.mark.parametrize(
    "variant", ["rope-gqa-window", "mqa-window", "learned-post", "sinusoidal-gqa"]
)
def test_cached_decoding_gives_the_logits_of_the_full_forward(name, variant):
    model = gpt(name, seed=5, **GPTS[variant])
    model.set_params(noisy(model.get_params(), seed=2))
    idx = tokens((2, 20), seed=3)
    full = logits_of(model, idx)  # (B, L, V)
    cache = model.new_cache()
    steps = [
        as_numpy(model.decode(idx[:, :7], cache))
    ]  # a prompt longer than the windows
    for t in range(7, 20):
        steps.append(as_numpy(model.decode(idx[:, t : t + 1], cache)))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=2e-5)
    cfg = model.config
    kv = cfg["num_kv_heads"] or cfg["num_heads"]
    kept = (
        20 if cfg["window"] is None else cfg["window"] - 1
    )  # a window drops the keys it will never see
    assert cache.position == 20 and len(cache) == kept
    assert cache.nbytes() == T.kv_cache_bytes(LAYERS, kv, D // H, kept, batch=2)


@pytest.mark.parametrize(
    "variant", ["rope", "rope-gqa-window", "mqa-window", "learned-post"]
)
def test_generation_with_and_without_cache_and_in_both_twins_is_the_same(variant):
    mt, mf = (
        gpt("torch", seed=6, **GPTS[variant]),
        gpt("tensorflow", seed=6, **GPTS[variant]),
    )
    params = noisy(mt.get_params(), seed=4, scale=0.3)
    mt.set_params(params)
    mf.set_params(params)
    prompt = tokens((3, 4), seed=5)
    samplings = (
        dict(),
        dict(temperature=1.0, seed=11),
        dict(temperature=0.7, top_k=5, seed=3),
        dict(temperature=1.3, top_p=0.8, seed=7),
    )
    for i, sampling in enumerate(samplings):
        models = (
            (mt, mf) if i in (0, 3) else (mt,)
        )  # TensorFlow's eager steps are slow: two of four
        runs = [
            as_numpy(m.generate(prompt, 12, use_cache=c, **sampling))
            for m in models
            for c in (True, False)
        ]
        for r in runs:
            assert r.shape == (3, 16) and r.dtype == np.int64
            np.testing.assert_array_equal(r[:, :4], prompt)
            np.testing.assert_array_equal(r, runs[0])
    greedy = as_numpy(mt.generate(prompt, 12))
    sampled = as_numpy(mt.generate(prompt, 12, temperature=1.0, seed=11))
    assert not np.array_equal(greedy, sampled)  # sampling did sample


def test_generation_does_not_change_the_training_mode():
    model = gpt("torch", dropout=0.1)
    model.train()
    model.generate(tokens((1, 3)), 2)
    assert model.training


# --------------------------------------------------------------------------------------
# Causality.


@pytest.mark.parametrize("name", FRAMEWORKS)
@pytest.mark.parametrize("variant", ["rope-gqa-window", "learned-post"])
def test_changing_a_future_token_never_changes_an_earlier_logit(name, variant):
    model = gpt(name, **GPTS[variant])
    model.set_params(noisy(model.get_params()))
    idx = tokens((1, 16), seed=8)
    base = logits_of(model, idx)
    for t in (0, 5, 15):
        changed = idx.copy()
        changed[0, t] = (changed[0, t] + 1) % V
        out = logits_of(model, changed)
        np.testing.assert_array_equal(
            out[:, :t], base[:, :t]
        )  # exactly: no path from t to earlier positions
        assert np.abs(out[:, t] - base[:, t]).max() > 1e-4


def test_the_decoder_never_reads_a_later_target_token():
    model = twin("torch").EncoderDecoder(30, 12, D, H, LAYERS, MAX_LEN)
    model.set_params(noisy(model.get_params()))
    src, lengths, tgt_in = _dates_batch(model.config)
    import torch

    with torch.no_grad():
        base = model.eval()(src, lengths, tgt_in).numpy()
        changed = tgt_in.copy()
        changed[:, 3] = (changed[:, 3] + 1) % 12
        out = model(src, lengths, changed).numpy()
        src_changed = src.copy()
        src_changed[2, 5] = 7  # a padding position of row 2 (length 3)
        same = model(src_changed, lengths, tgt_in).numpy()
    np.testing.assert_array_equal(out[:, :3], base[:, :3])
    np.testing.assert_allclose(same, base, atol=1e-6)  # padding is never attended to


# --------------------------------------------------------------------------------------
# Counts.


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_parameter_counts_match_the_formulas(name):
    mod = twin(name)

    def count(model):
        ps = model.parameters() if name == "torch" else model.trainable_variables
        return sum(int(np.prod(p.shape)) for p in ps)

    for kw in (dict(), dict(num_kv_heads=2), dict(num_kv_heads=1, cross=True)):
        block = mod.Block(D, H, **kw)
        assert count(block) == T.block_param_count(
            D, H, kw.get("num_kv_heads"), 4, kw.get("cross", False)
        )
    assert T.block_param_count(64) == 12 * 64**2 + 13 * 64
    for kw in (
        dict(),
        dict(pos="learned", num_kv_heads=2),
        dict(norm="post", ffn_mult=2),
    ):
        model = gpt(name, **kw)
        assert (
            count(model)
            == T.param_count(model.config)
            == sum(int(np.prod(s)) for s in T.param_shapes(model.config).values())
        )
    model = mod.EncoderDecoder(30, 12, D, H, LAYERS, MAX_LEN, pos="learned")
    assert count(model) == T.param_count(model.config)


def test_flop_formulas_match_the_counted_matrix_products():
    torch = framework("torch")
    from torch.utils.flop_counter import FlopCounterMode

    mod = twin("torch")
    for n, kv in ((24, None), (40, 2)):
        block = mod.Block(D, H, num_kv_heads=kv).eval()
        x = torch.randn(1, n, D)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            block(x, return_weights=True)  # the explicit path: every product counted
        want = T.block_flops(n, D, num_heads=H, num_kv_heads=kv)
        assert counter.get_total_flops() == want["total"]
        if kv is None:
            assert want == {
                "projections": 8 * n * D * D,
                "attention": 4 * n * n * D,
                "ffn": 16 * n * D * D,
                "total": 24 * n * D * D + 4 * n * n * D,
            }
    # Where attention overtakes: the projections at N = 2D, the whole block at N = 6D,
    # causal at N = 12D.
    f = T.block_flops
    assert f(2 * D, D)["attention"] == f(2 * D, D)["projections"]
    assert f(6 * D, D)["attention"] == f(6 * D, D)["projections"] + f(6 * D, D)["ffn"]
    assert (
        f(12 * D, D, causal=True)["attention"]
        == f(12 * D, D)["projections"] + f(12 * D, D)["ffn"]
    )
    assert T.kv_cache_bytes(2, 4, 16, 10) == 2 * 2 * 4 * 16 * 10 * 4


# --------------------------------------------------------------------------------------
# Sampling and beam search (NumPy, shared by the twins).


def test_next_token_distribution_filters_as_documented():
    logits = np.log(np.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    np.testing.assert_allclose(
        T.next_token_distribution(logits), [[0.5, 0.2, 0.15, 0.1, 0.05]]
    )
    np.testing.assert_array_equal(
        T.next_token_distribution(logits, temperature=0), [[1, 0, 0, 0, 0]]
    )
    np.testing.assert_allclose(
        T.next_token_distribution(logits, top_k=2), [[5 / 7, 2 / 7, 0, 0, 0]]
    )
    # top_p keeps the most likely tokens until their mass reaches p: 0.5 < 0.65, 0.5 +
    # 0.2 >= 0.65.
    np.testing.assert_allclose(
        T.next_token_distribution(logits, top_p=0.65), [[5 / 7, 2 / 7, 0, 0, 0]]
    )
    np.testing.assert_allclose(
        T.next_token_distribution(logits, top_p=0.75),
        [[0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0]],
    )
    np.testing.assert_allclose(
        T.next_token_distribution(logits, top_p=0.1), [[1, 0, 0, 0, 0]]
    )
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    np.testing.assert_allclose(
        T.next_token_distribution(logits, temperature=0.5)[0], p**2 / (p**2).sum()
    )
    # Sampling follows the distribution (50,000 draws: each frequency within 1 % of its
    # probability).
    rng = np.random.default_rng(0)
    draws = T.sample_next(np.repeat(logits, 50_000, 0), rng, temperature=1.0, top_k=3)
    np.testing.assert_allclose(
        np.bincount(draws, minlength=5) / 50_000,
        [0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0],
        atol=0.01,
    )


def test_beam_search_with_enough_beams_finds_the_most_likely_sequence():
    """A Markov 'model' over 4 tokens (EOS = 3) for 3 steps: 16 beams keep every
    hypothesis, so the result is the exhaustive search's."""
    rng = np.random.default_rng(0)
    table = np.log(rng.dirichlet(np.ones(4), size=4))  # log p(next | previous)
    k, steps = 16, 3
    seqs, scores, finished = (
        np.zeros((1, k, 1), int),
        np.where(np.arange(k) == 0, 0.0, -np.inf)[None],
        np.zeros((1, k), bool),
    )
    for _ in range(steps):
        logp = table[seqs[0, :, -1]][None]  # (1, K, 4)
        parent, tok, scores = T.beam_step(scores, logp, finished, pad_id=0)
        seqs = np.concatenate(
            [np.take_along_axis(seqs, parent[..., None], 1), tok[..., None]], -1
        )
        finished = np.take_along_axis(finished, parent, 1) | (tok == 3)
    best = -np.inf
    for a in range(4):
        for b in range(4):
            for c in range(4):
                path, s = [0, a, b, c], 0.0
                for t in range(3):
                    s += table[path[t], path[t + 1]]
                    if path[t + 1] == 3:
                        break
                best = max(best, s)
    assert scores.max() == pytest.approx(best)


def test_beam_search_twins_agree_and_one_beam_is_greedy():
    mt = twin("torch").EncoderDecoder(30, 12, D, H, LAYERS, MAX_LEN, seed=1)
    mf = twin("tensorflow").EncoderDecoder(30, 12, D, H, LAYERS, MAX_LEN, seed=1)
    params = noisy(mt.get_params(), scale=0.5)
    mt.set_params(params)
    mf.set_params(params)
    src, lengths, _ = _dates_batch(mt.config)
    greedy = as_numpy(mt.greedy_decode(src, lengths, 8))
    assert greedy.shape == (4, 8)
    np.testing.assert_array_equal(as_numpy(mf.greedy_decode(src, lengths, 8)), greedy)
    bt, st = mt.beam_search(src, lengths, 8, beam_size=3)
    bf, sf = mf.beam_search(src, lengths, 8, beam_size=3)
    np.testing.assert_array_equal(as_numpy(bt), as_numpy(bf))
    np.testing.assert_allclose(st, sf, atol=1e-4)


# --------------------------------------------------------------------------------------
# Training (without the cache), and the cache.


def _lm_data():
    """A text with structure to learn: a repeated pattern of tokens with random "
    "interruptions."""
    rng = np.random.default_rng(0)
    ids = np.tile(np.arange(V), 40)
    noise = rng.random(ids.size) < 0.1
    ids[noise] = rng.integers(0, V, size=noise.sum())
    return ids


def test_gpt_training_lowers_the_loss_in_both_frameworks_alike():
    ids = _lm_data()
    recipe = dict(
        steps=25,
        batch_size=8,
        block_len=16,
        lr=1e-2,
        warmup=0.2,
        seed=1,
        desc=None,
        valid_ids=ids[:200],
        eval_every=25,
    )
    mt, mf = (
        gpt("torch", seed=3, pos="rope", num_kv_heads=2),
        gpt("tensorflow", seed=3, pos="rope", num_kv_heads=2),
    )
    ht, hf = (
        twin("torch").train_lm(mt, ids, **recipe),
        twin("tensorflow").train_lm(mf, ids, **recipe),
    )
    for h in (ht, hf):
        assert len(h["loss"]) == 25 and h["seconds"] > 0 and h["valid_step"] == [25]
        assert np.mean(h["loss"][-5:]) < 0.5 * h["loss"][0], h["loss"]
        assert h["valid_loss"][0] < 0.5 * h["loss"][0]
    # The same windows, in the same order, from the same parameters: the same first
    # loss, then round-off.
    assert ht["loss"][0] == pytest.approx(hf["loss"][0], abs=1e-5)
    np.testing.assert_allclose(ht["loss"][:10], hf["loss"][:10], atol=2e-2)
    assert twin("torch").evaluate_lm(mt, ids[:200], 16) == pytest.approx(
        ht["valid_loss"][0], abs=1e-5
    )


def test_encoder_decoder_training_lowers_the_loss_in_both_frameworks():
    from attnbook.datasets import dates

    pairs = dates.generate(256, seed=0, formats=["num_dd.mm.yyyy", "num_yyyymmdd"])
    src, lengths, tgt = dates.encode_pairs(pairs)
    sv, tv = dates.source_vocab(), dates.target_vocab()
    recipe = dict(epochs=3, batch_size=32, lr=5e-3, seed=0, desc=None)
    for name in FRAMEWORKS:
        mod = twin(name)
        model = mod.EncoderDecoder(len(sv), len(tv), D, H, 1, 32, seed=0)
        h = mod.train_seq2seq(model, src, lengths, tgt, **recipe)
        assert len(h["loss"]) == 24 and np.mean(h["loss"][-3:]) < 0.7 * h["loss"][0], h[
            "loss"
        ]
        preds = mod.translate(model, [p.source for p in pairs[:4]], sv, tv, max_len=12)
        assert all(isinstance(p, str) for p in preds)
        w = mod.alignments(model, pairs[0].source, preds[0], sv, tv)
        assert w.shape == (1, H, len(preds[0]) + 1, len(pairs[0].source) + 1)
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)


def test_the_training_cache_stores_loads_and_tells_configurations_apart(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ATTNBOOK_CACHE", str(tmp_path))
    monkeypatch.delenv("ATTNBOOK_RETRAIN", raising=False)
    mod = twin("torch")
    ids = _lm_data()
    recipe = dict(steps=3, batch_size=4, block_len=8, seed=0, desc=None)
    first = gpt("torch", seed=1)
    h1 = mod.train_lm(first, ids, cache=True, **recipe)
    assert h1["cached"] is False and len(list((tmp_path / "train").glob("*.npz"))) == 1
    second = gpt("torch", seed=1)
    h2 = mod.train_lm(
        second, ids, cache=True, **{**recipe, "desc": "a label changes nothing"}
    )
    assert (
        h2["cached"] is True
        and h2["loss"] == h1["loss"]
        and h2["seconds"] == h1["seconds"]
    )
    for k, v in first.get_params().items():
        np.testing.assert_array_equal(second.get_params()[k], v)
    # Another learning rate, another initialisation, other data: each is trained, not
    # loaded.
    for model, kw in (
        (gpt("torch", seed=1), dict(lr=1e-2)),
        (gpt("torch", seed=2), {}),
        (gpt("torch", seed=1), dict(ids=ids[::-1].copy())),
    ):
        data = kw.pop("ids", ids)
        assert (
            mod.train_lm(model, data, cache=True, **{**recipe, **kw})["cached"] is False
        )
    monkeypatch.setenv("ATTNBOOK_RETRAIN", "1")
    assert (
        mod.train_lm(gpt("torch", seed=1), ids, cache=True, **recipe)["cached"] is False
    )
    # The key covers the source the training runs.
    files = {f.name for f in tcache.source_files("attnbook.transformer.torch")}
    assert {"torch.py", "_spec.py", "__init__.py", "cache.py"} <= files
    assert any(
        f.parent.name == "vit"
        for f in tcache.source_files("attnbook.transformer.torch")
    )


# --------------------------------------------------------------------------------------
# Data.


def test_text_data_and_tokenizer():
    train, valid = text.python_docs()
    assert len(train) > 300_000 and len(valid) > 20_000
    assert valid.split("\n\n")[0] not in train
    tok = text.train_tokenizer(train[:50_000], 300)
    assert tok.vocab_size == 300
    sample = valid[:500]
    ids = tok.encode(sample)
    assert (
        ids.dtype == np.int64 and tok.decode(ids) == sample and len(ids) < len(sample)
    )
    with pytest.raises(
        ValueError, match=r"ids must hold token ids in \[0, 300\), got -1"
    ):
        tok.decode([-1])
    ids = tok.encode(train[:40_000])
    cut = len(ids) * 3 // 4
    uni = text.ngram_loss(ids[:cut], ids[cut:], 300, order=1)
    bi = text.ngram_loss(ids[:cut], ids[cut:], 300, order=2)
    assert bi < uni < np.log(300)


# --------------------------------------------------------------------------------------
# Bad inputs: the same exception, with the same message, from both twins.

BAD_MODELS = [
    (dict(d_model=0), ValueError, "d_model must be a positive integer, got 0"),
    (dict(num_heads=3), ValueError, "num_heads = 3 must divide d_model = 16"),
    (dict(num_kv_heads=3), ValueError, "num_kv_heads = 3 must divide num_heads = 4"),
    (
        dict(pos="alibi"),
        ValueError,
        "pos must be one of 'rope', 'learned', 'sinusoidal', got 'alibi'",
    ),
    (
        dict(pos=1),
        TypeError,
        "pos must be a string ('rope', 'learned', 'sinusoidal'), got 1",
    ),
    (
        dict(norm="sandwich"),
        ValueError,
        "norm must be one of 'pre', 'post', got 'sandwich'",
    ),
    (dict(window=0), ValueError, "window must be a positive integer"),
    (dict(window=(3, 0)), TypeError, "window must be a positive integer"),
    (dict(dropout=1.0), ValueError, "dropout must be in [0, 1), got 1.0"),
    (dict(vocab_size=2.5), TypeError, "vocab_size must be a positive integer, got 2.5"),
    (
        dict(d_model=12, num_heads=4, pos="rope"),
        ValueError,
        "pos='rope' needs an even head size",
    ),
]


@pytest.mark.parametrize(
    "kw, error, message", BAD_MODELS, ids=[m for _, _, m in BAD_MODELS]
)
def test_bad_constructor_arguments(kw, error, message):
    args = dict(
        vocab_size=V, d_model=D, num_heads=H, num_layers=LAYERS, max_len=MAX_LEN
    )
    args.update({k: v for k, v in kw.items() if k in args})
    rest = {k: v for k, v in kw.items() if k not in args}
    for name in FRAMEWORKS:
        with pytest.raises(error, match=re.escape(message)):
            twin(name).GPT(*args.values(), **rest)


BAD_CALLS = [
    (
        "forward",
        dict(idx=np.array([[1, -1, 2]])),
        ValueError,
        "idx must hold token ids in [0, 23), got -1",
    ),
    (
        "forward",
        dict(idx=np.array([[1, 23]])),
        ValueError,
        "idx must hold token ids in [0, 23), got 23",
    ),
    (
        "forward",
        dict(idx=np.zeros((1, 25), int)),
        ValueError,
        "idx has 25 tokens, more than max_len = 24",
    ),
    (
        "forward",
        dict(idx=np.zeros((1, 0), int)),
        ValueError,
        "idx must hold at least one token per row",
    ),
    (
        "forward",
        dict(idx=np.zeros((1, 3))),
        TypeError,
        "idx must be an integer array of token ids, got dtype float64",
    ),
    (
        "forward",
        dict(idx=np.zeros(3, int)),
        ValueError,
        "idx must have shape (B, L), got shape (3,)",
    ),
    (
        "generate",
        dict(top_p=0.0),
        ValueError,
        "top_p must be a number in (0, 1] or None, got 0.0",
    ),
    (
        "generate",
        dict(top_p=1.5),
        ValueError,
        "top_p must be a number in (0, 1] or None, got 1.5",
    ),
    (
        "generate",
        dict(top_k=0),
        ValueError,
        "top_k must be a positive integer or None, got 0",
    ),
    (
        "generate",
        dict(top_k=2.0),
        TypeError,
        "top_k must be a positive integer or None, got 2.0",
    ),
    (
        "generate",
        dict(temperature=-0.5),
        ValueError,
        "temperature must be a non-negative finite number, got -0.5",
    ),
    (
        "generate",
        dict(temperature="hot"),
        TypeError,
        "temperature must be a non-negative finite number",
    ),
    (
        "generate",
        dict(max_new_tokens=22),
        ValueError,
        "idx has 3 tokens and max_new_tokens = 22: together more than max_len = 24",
    ),
    (
        "generate",
        dict(max_new_tokens=-1),
        ValueError,
        "max_new_tokens must be a non-negative integer, got -1",
    ),
    (
        "generate",
        dict(use_cache=1),
        TypeError,
        "use_cache must be True or False, got 1",
    ),
    (
        "generate",
        dict(seed=-3),
        ValueError,
        "seed must be a non-negative integer or None, got -3",
    ),
    (
        "train",
        dict(steps=-1),
        ValueError,
        "steps must be a non-negative integer, got -1",
    ),
    (
        "train",
        dict(block_len=30),
        ValueError,
        "block_len = 30 is more than max_len = 24",
    ),
    (
        "train",
        dict(ids=np.array([1, 2, 3])),
        ValueError,
        "ids holds 3 tokens: too few for one window",
    ),
    ("train", dict(lr=0.0), ValueError, "lr must be a positive finite number, got 0.0"),
    (
        "train",
        dict(eval_every=5),
        ValueError,
        "eval_every needs valid_ids to evaluate on",
    ),
    (
        "decode",
        dict(cache="nope"),
        TypeError,
        "cache must be an attnbook.transformer.KVCache",
    ),
]


@pytest.mark.parametrize(
    "method, kw, error, message", BAD_CALLS, ids=[m for *_, m in BAD_CALLS]
)
def test_bad_calls_raise_the_same_error_in_both_twins(method, kw, error, message):
    for name in FRAMEWORKS:
        mod, model, args = twin(name), gpt(name), dict(kw)
        with pytest.raises(error, match=re.escape(message)):
            if method == "forward":
                model(args["idx"])
            elif method == "generate":
                model.generate(
                    np.array([[1, 2, 3]]), args.pop("max_new_tokens", 4), **args
                )
            elif method == "decode":
                model.decode(np.array([[1]]), args["cache"])
            else:
                args = {**dict(steps=2, batch_size=2, block_len=8, desc=None), **args}
                mod.train_lm(model, args.pop("ids", np.arange(100) % V), **args)


def test_bad_encoder_decoder_and_block_calls():
    from attnbook.datasets import dates

    sv, tv = dates.source_vocab(), dates.target_vocab()
    for name in FRAMEWORKS:
        mod = twin(name)
        model = mod.EncoderDecoder(30, 12, D, H, 1, MAX_LEN)
        src, lengths, tgt_in = _dates_batch(model.config)
        with pytest.raises(
            ValueError,
            match=re.escape("src_lengths must lie in [1, Lin] = [1, 11], got 12"),
        ):
            model(src, lengths + 1, tgt_in)
        with pytest.raises(
            ValueError, match=re.escape("src must hold token ids in [0, 30), got -2")
        ):
            model(np.where(src == 0, -2, src), lengths, tgt_in)
        with pytest.raises(
            ValueError, match=re.escape("tgt_in has 2 rows but src has 4")
        ):
            model(src, lengths, tgt_in[:2])
        with pytest.raises(
            ValueError,
            match=re.escape("src_vocab has 82 symbols but the model was built for 30"),
        ):
            mod.translate(model, ["21.11.26"], sv, tv)
        with pytest.raises(
            ValueError, match=re.escape("beam_size must be a positive integer, got 0")
        ):
            model.beam_search(src, lengths, 4, beam_size=0)
        block = mod.Block(D, H, cross=True)
        x = np.zeros((1, 3, D), np.float32)
        with pytest.raises(ValueError, match="pass the encoder's output as memory"):
            block(x if name == "tensorflow" else __import__("torch").as_tensor(x))
    for name in FRAMEWORKS:
        with pytest.raises(
            ValueError, match=re.escape("ffn_mult must be a positive integer, got 0")
        ):
            twin(name).Block(D, H, ffn_mult=0)
        with pytest.raises(ValueError, match=re.escape("rope needs an even head size")):
            twin(name).Block(12, 4, rope=T.ROPE_BASE)
