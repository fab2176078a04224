"""The encoder-decoder twins of attnbook.seq2seq: shapes, attention over unpadded
inputs, torch == TF, training.

The TensorFlow checks run once, in a module fixture, and the tests read their
results.
"""

import inspect
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from attnbook import seq2seq
from attnbook.datasets import dates as D

torch = pytest.importorskip("torch")
S = pytest.importorskip("attnbook.seq2seq.torch")

SMALL = {"embed_dim": 8, "hidden_dim": 16, "attention_dim": 8}


@pytest.fixture(scope="module")
def data():
    pairs = D.generate(96, seed=7, intervals=0.4)
    return pairs, D.source_vocab(), D.target_vocab(), *D.encode_pairs(pairs)


def _tensors(*arrays):
    return [torch.as_tensor(a) for a in arrays]


def test_init_imports_no_framework():
    code = "import sys, attnbook.seq2seq; assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reverse_index_reverses_the_unpadded_part_only():
    rev = seq2seq.reverse_index(np.array([3, 1, 5]), 5)
    assert rev.tolist() == [[2, 1, 0, 3, 4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]
    # its own inverse
    assert np.array_equal(
        np.take_along_axis(rev, rev, 1), np.tile(np.arange(5), (3, 1))
    )


def test_epoch_batches_group_by_target_length(data):
    _, _, _, src, src_len, tgt = data
    batches = seq2seq.epoch_batches(src_len, tgt, 8, np.random.default_rng(0))
    seen = np.concatenate([idx for idx, _, _ in batches])
    assert len(seen) == len(set(seen.tolist()))
    for idx, w_src, w_tgt in batches:
        assert len(idx) == 8 and src_len[idx].max() <= w_src
        # one target length per batch
        assert np.all(tgt[idx, w_tgt:] == 0) and np.all(tgt[idx, w_tgt - 1] != 0)


def test_exact_match():
    assert seq2seq.exact_match(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 0.5
    with pytest.raises(ValueError):
        seq2seq.exact_match(["a"], [])


@pytest.mark.parametrize("attention", [True, False])
def test_shapes_and_attention_weights(data, attention):
    pairs, sv, tv, src, src_len, tgt = data
    model = S.Seq2Seq(len(sv), len(tv), attention=attention, **SMALL)
    s, sl, t = _tensors(src, src_len, tgt)
    logits, weights = model(
        s.to(model.device), sl.to(model.device), t[:, :-1].to(model.device)
    )
    assert logits.shape == (len(pairs), tgt.shape[1] - 1, len(tv))
    tokens, w_greedy = model.greedy_decode(s.to(model.device), sl.to(model.device), 7)
    assert tokens.shape == (len(pairs), 7) and tokens.dtype == torch.int64
    if not attention:
        assert weights is None and w_greedy is None
        assert not any(k.startswith("att_") for k in model.get_params())
        return
    for w in (weights, w_greedy):
        w = w.detach().cpu().numpy()
        assert w.shape[:1] == (len(pairs),) and w.shape[2] == src.shape[1]
        real = np.arange(src.shape[1])[None, None, :] < src_len[:, None, None]
        assert np.all(w[~np.broadcast_to(real, w.shape)] == 0)  # nothing on padding
        # a distribution over the input
        assert np.allclose(w.sum(-1), 1, atol=1e-5) and np.all(w >= 0)


def test_padding_does_not_change_the_translation(data):
    """Extra PAD columns change neither logits nor weights (the backward GRU starts
    at the last real character)."""
    _, sv, tv, src, src_len, tgt = data
    model = S.Seq2Seq(len(sv), len(tv), **SMALL)
    wide = np.concatenate([src, np.zeros((len(src), 6), np.int64)], axis=1)
    a = model(*[x.to(model.device) for x in _tensors(src, src_len, tgt[:, :-1])])
    b = model(*[x.to(model.device) for x in _tensors(wide, src_len, tgt[:, :-1])])
    assert torch.allclose(a[0], b[0], atol=1e-5)
    assert (
        torch.allclose(a[1], b[1][..., : src.shape[1]], atol=1e-6)
        and b[1][..., src.shape[1] :].abs().max() == 0
    )


def test_params_round_trip_and_seed():
    m1 = S.Seq2Seq(20, 14, seed=1, **SMALL)
    p = m1.get_params()
    assert {k: v.shape for k, v in p.items()} == seq2seq.param_shapes(20, 14, **SMALL)
    ref = seq2seq.init_params(seq2seq.param_shapes(20, 14, **SMALL), seed=1)
    assert all(np.array_equal(p[k], ref[k]) for k in p)
    m2 = S.Seq2Seq(20, 14, seed=2, **SMALL)
    assert not np.array_equal(m2.get_params()["dec_w_x"], p["dec_w_x"])
    m2.set_params(p)
    assert all(np.array_equal(m2.get_params()[k], p[k]) for k in p)
    with pytest.raises(ValueError):
        m2.set_params({k: v for k, v in p.items() if k != "out_b"})


def test_training_reduces_the_loss(data):
    _, sv, tv, src, src_len, tgt = data
    model = S.Seq2Seq(len(sv), len(tv), **SMALL)
    hist = S.train(
        model, src, src_len, tgt, epochs=4, batch_size=16, lr=1e-2, desc=None
    )
    first, last = np.mean(hist["loss"][:3]), np.mean(hist["loss"][-3:])
    assert last < 0.8 * first, (first, last)
    preds, weights = S.translate(
        model, ["21.11.26", "from 1 May 2001 to 3 May 2001"], sv, tv
    )
    assert len(preds) == 2 and all(isinstance(p, str) for p in preds)
    assert (
        weights[0].shape[0] in (len(preds[0]), len(preds[0]) + 1)
        and weights[0].shape[1] == len("21.11.26") + 1
    )


_TF_SCRIPT = textwrap.dedent("""
    import numpy as np
    from attnbook.seq2seq import tensorflow as T
    from attnbook.seq2seq import torch as P
    from attnbook.datasets import dates as D
    import tensorflow as tf, torch
    small = dict(embed_dim=8, hidden_dim=16, attention_dim=8)
    pairs = D.generate(24, seed=11, intervals=0.5)
    sv, tv = D.source_vocab(), D.target_vocab()
    src, sl, tgt = D.encode_pairs(pairs)
    out = {}
    for att in (True, False):
        pt = P.Seq2Seq(len(sv), len(tv), attention=att, seed=5, **small)
        rng = np.random.default_rng(0)      # not the initial weights: as if trained
        params = {k: v + 0.3 * rng.standard_normal(v.shape).astype(np.float32) for k, v in pt.get_params().items()}
        pt.set_params(params)
        tfm = T.Seq2Seq(len(sv), len(tv), attention=att, seed=99, **small)
        tfm.set_params(pt.get_params())  # transfer torch -> TF
        lt, wt = pt(*[torch.as_tensor(a, device=pt.device) for a in (src, sl, tgt[:, :-1])])
        lf, wf = tfm(tf.constant(src), tf.constant(sl), tf.constant(tgt[:, :-1]))
        gt, _ = pt.greedy_decode(*[torch.as_tensor(a, device=pt.device) for a in (src, sl)], 12)
        gf, _ = tfm.greedy_decode(tf.constant(src), tf.constant(sl), 12)
        back = tfm.get_params()
        out[str(att)] = {
            "logits": float(np.abs(lt.detach().cpu().numpy() - lf.numpy()).max()),
            "scale": float(np.abs(lf.numpy()).max()),
            "weights": None if wt is None else float(np.abs(wt.detach().cpu().numpy() - wf.numpy()).max()),
            "tf_weights_none": wf is None,
            "greedy_equal": bool(np.array_equal(gt.cpu().numpy(), gf.numpy())),
            "round_trip": float(max(np.abs(back[k] - params[k]).max() for k in params)),
        }
    m = T.Seq2Seq(len(sv), len(tv), **small)
    hist = T.train(m, src, sl, tgt, epochs=6, batch_size=8, lr=1e-2, desc=None)
    out["loss_first"], out["loss_last"] = float(np.mean(hist["loss"][:2])), float(np.mean(hist["loss"][-2:]))
    preds, w = T.translate(m, ["21.11.26"], sv, tv)
    import inspect
    out["signatures"] = {n: str(inspect.signature(getattr(T, n)))
                         for n in ["Seq2Seq", "train", "translate", "evaluate"]}
    out["signatures"].update({"Seq2Seq." + n: str(inspect.signature(getattr(T.Seq2Seq, n)))
                              for n in ["encode", "decoder_step", "greedy_decode", "get_params", "set_params"]})
    out["tf_weights_shape"] = list(w[0].shape)
    out["tf_pred_len"] = len(preds[0])
    RESULT = out
""")


@pytest.fixture(scope="module")
def tf_results():
    pytest.importorskip("tensorflow")
    scope = {}
    exec(_TF_SCRIPT, scope)
    return scope["RESULT"]


@pytest.mark.parametrize("attention", ["True", "False"])
def test_torch_and_tensorflow_agree_given_the_same_weights(tf_results, attention):
    r = tf_results[attention]
    # get_params(set_params(p)) == p, gate reordering included
    assert r["round_trip"] == 0.0
    assert r["logits"] < 1e-5 * max(1.0, r["scale"]), r
    assert r["greedy_equal"]
    if attention == "True":
        assert r["weights"] < 1e-6
    else:
        assert r["weights"] is None and r["tf_weights_none"]


def test_twins_have_the_same_signatures(tf_results):
    for name, sig in tf_results["signatures"].items():
        obj = S
        for part in name.split("."):
            obj = getattr(obj, part)
        assert str(inspect.signature(obj)) == sig, name
    ctor = inspect.signature(S.Seq2Seq).parameters
    assert {k: ctor[k].default for k in seq2seq.DEFAULTS} == seq2seq.DEFAULTS


def test_tensorflow_training_reduces_the_loss(tf_results):
    assert tf_results["loss_last"] < 0.8 * tf_results["loss_first"], tf_results
    # One row per decoder step: the prediction's characters, plus EOS unless decoding
    # stopped at the length limit.
    rows, cols = tf_results["tf_weights_shape"]
    assert (
        rows in (tf_results["tf_pred_len"], tf_results["tf_pred_len"] + 1)
        and cols == len("21.11.26") + 1
    )


def test_training_batches_are_the_epochs_of_one_generator():
    # Every training loop draws its batches here: epoch after epoch of epoch_batches
    # from one generator seeded once, the same for every twin and model.
    from attnbook.seq2seq import epoch_batches, training_batches

    src_lengths = np.array([3, 5, 4, 6, 2, 5, 7, 3])
    tgt = np.array([[1, 4, 2, 0]] * 5 + [[1, 4, 4, 2]] * 3)
    rng = np.random.default_rng(3)
    want = [b for _ in range(2) for b in epoch_batches(src_lengths, tgt, 2, rng)]
    got = training_batches(src_lengths, tgt, 2, 2, 3)
    assert len(got) == len(want) == 6
    for (i, s, t), (j, s2, t2) in zip(got, want, strict=True):
        assert np.array_equal(i, j) and (s, t) == (s2, t2)
