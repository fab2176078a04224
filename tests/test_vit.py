"""attnbook.vit: the Vision Transformer twins agree with each other, attend
correctly, and learn.

Sizes are tiny (8x8 images, width 16, one or two blocks) so that the whole file runs
in seconds.
"""

import subprocess
import sys

import numpy as np
import pytest

from attnbook import vit
from attnbook.datasets import digits

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
vt = pytest.importorskip("attnbook.vit.torch")
vtf = pytest.importorskip("attnbook.vit.tensorflow")

SMALL = dict(d_model=16, num_heads=2, num_layers=2, mlp_dim=32)
FRAMEWORKS = ("torch", "tensorflow")


def build(framework, **kwargs):
    return (vt if framework == "torch" else vtf).VisionTransformer(
        **{**SMALL, **kwargs}
    )


def run(model, images, return_weights=False):
    """Logits (and weights) as NumPy, in inference mode, whatever the framework."""
    if isinstance(model, torch.nn.Module):
        model.eval()
        with torch.no_grad():
            out = model(torch.as_tensor(images), return_weights=return_weights)
        if return_weights:
            return out[0].numpy(), [w.numpy() for w in out[1]]
        return out.numpy()
    out = model(images, return_weights=return_weights, training=False)
    if return_weights:
        return np.asarray(out[0]), [np.asarray(w) for w in out[1]]
    return np.asarray(out)


def noisy_params(cfg, seed=1):
    """The seeded initial parameters plus noise everywhere, so that biases, norms and
    positions all matter."""
    rng = np.random.default_rng(seed)
    return {
        k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32)
        for k, v in vit.init_params(cfg).items()
    }


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These models are tiny: one thread is as fast, and immune to oversubscribed CI
    machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images():
    return digits.load(seed=0).x_test[:6]


def test_import_needs_no_framework():
    code = (
        "import sys, attnbook.vit, attnbook.datasets.digits; "
        "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, "
        "sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_shapes_and_weights_are_distributions(framework, images):
    model = build(framework)
    logits, weights = run(model, images, return_weights=True)
    assert logits.shape == (6, 10)
    assert len(weights) == SMALL["num_layers"]
    for w in weights:
        assert w.shape == (6, SMALL["num_heads"], 17, 17)  # L = 16 patches + [CLS]
        assert np.all(w >= 0)
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    # the fused path (no weights) agrees
    np.testing.assert_allclose(run(model, images), logits, atol=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_param_names_and_model_patchify(framework, images):
    model = build(framework)
    shapes = vit.param_shapes(model.config)
    got = model.get_params()
    assert (
        list(got) == list(shapes)
        if framework == "tensorflow"
        else sorted(got) == sorted(shapes)
    )
    assert all(got[k].shape == shapes[k] for k in shapes)
    trainable = (
        model.parameters() if framework == "torch" else model.trainable_variables
    )
    assert sum(int(np.prod(p.shape)) for p in trainable) == sum(
        int(np.prod(s)) for s in shapes.values()
    )
    patches = model.patchify(
        torch.as_tensor(images) if framework == "torch" else tf.constant(images)
    )
    np.testing.assert_array_equal(np.asarray(patches), digits.patchify(images, 2))


@pytest.mark.parametrize("position", vit.POSITIONS)
def test_torch_and_tensorflow_give_the_same_logits(position, images):
    mt, mf = (
        build("torch", position=position, seed=2),
        build("tensorflow", position=position, seed=2),
    )
    # The same seed builds the same network in both frameworks...
    lt, wt = run(mt, images, return_weights=True)
    lf, wf = run(mf, images, return_weights=True)
    np.testing.assert_allclose(lt, lf, atol=1e-5)
    for a, b in zip(wt, wf, strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # ... and parameters moved across give the same logits both ways.
    params = noisy_params(mt.config)
    mt.set_params(params)
    mf.set_params(mt.get_params())
    np.testing.assert_allclose(run(mt, images), run(mf, images), atol=1e-5)
    back = build("torch", position=position, seed=7)
    back.set_params(mf.get_params())
    np.testing.assert_allclose(run(back, images), run(mt, images), atol=1e-5)
    # the new parameters did change the output
    assert np.abs(run(mt, images) - lt).max() > 1e-2


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_without_positions_the_model_ignores_patch_order(framework, images):
    model = build(framework, position="none")
    model.set_params(noisy_params(model.config))
    perm = np.random.default_rng(0).permutation(16)
    shuffled = digits.unpatchify(digits.patchify(images, 2)[:, perm], 2)
    assert not np.allclose(shuffled, images)
    logits, weights = run(model, images, return_weights=True)
    logits_s, weights_s = run(model, shuffled, return_weights=True)
    # invariant: [CLS] sees a set of patches
    np.testing.assert_allclose(logits_s, logits, atol=1e-4)
    tokens = np.concatenate([[0], perm + 1])  # [CLS] stays token 0
    for w, w_s in zip(weights, weights_s, strict=False):
        # equivariant: shuffled token i is original token tokens[i], so A' = P A P^T
        np.testing.assert_allclose(w_s, w[:, :, tokens][:, :, :, tokens], atol=1e-5)


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_with_positions_patch_order_matters(position, images):
    model = build("torch", position=position)
    model.set_params(noisy_params(model.config))
    perm = np.random.default_rng(0).permutation(16)
    shuffled = digits.unpatchify(digits.patchify(images, 2)[:, perm], 2)
    assert np.abs(run(model, shuffled) - run(model, images)).max() > 1e-3


def test_training_reduces_the_loss_in_both_frameworks_alike():
    """Same parameters, batches and recipe: the two training loops take (nearly) the
    same steps, and learn."""
    data = digits.load(seed=0)
    x, y = data.x_train[:256], data.y_train[:256]
    mt, mf = build("torch", seed=4), build("tensorflow", seed=4)
    recipe = dict(epochs=5, batch_size=32, lr=5e-3, shift=0, seed=3, progress=False)
    ht, hf = vt.train(mt, x, y, **recipe), vtf.train(mf, x, y, **recipe)
    for history in (ht, hf):
        assert len(history["loss"]) == 5 and history["seconds"] > 0
        assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    # Float round-off differs between the frameworks and Adam amplifies it a little,
    # step after step.
    np.testing.assert_allclose(ht["loss"], hf["loss"], atol=2e-3)
    np.testing.assert_allclose(run(mt, x[:16]), run(mf, x[:16]), atol=1e-2)
    # 10 classes: chance is 0.1
    assert vt.evaluate(mt, x, y) > 0.3 and vtf.evaluate(mf, x, y) > 0.3


def test_bad_arguments_raise_the_same_errors():
    for kwargs, match in (
        (dict(position="rope"), "position"),
        (dict(patch_size=3), "divide"),
        (dict(num_heads=3), "divide"),
        (dict(dropout=1.0), "dropout"),
        (dict(d_model=0), "positive"),
    ):
        for framework in FRAMEWORKS:
            with pytest.raises(ValueError, match=match):
                build(framework, **kwargs)
    model = build("torch")
    params = model.get_params()
    del params["head.b"]
    for m in (model, build("tensorflow")):
        with pytest.raises(ValueError, match="head.b"):
            m.set_params(params)


def test_attention_rollout():
    rng = np.random.default_rng(0)
    # (B, H, L, L), rows sum to 1
    layers = [rng.dirichlet(np.ones(5), size=(2, 3, 5)) for _ in range(3)]
    r = vit.attention_rollout(layers)
    assert r.shape == (2, 5, 5)
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-12)
    one = vit.attention_rollout(layers[:1], residual=False)
    np.testing.assert_allclose(one, layers[0].mean(axis=1), atol=1e-12)
    a = [0.5 * (w.mean(axis=1) + np.eye(5)) for w in layers]
    # later layers multiply from the left
    np.testing.assert_allclose(r, a[2] @ a[1] @ a[0], atol=1e-12)
    with pytest.raises(ValueError):
        vit.attention_rollout([])


def test_random_shift_and_schedule():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(vit.random_shift(x, 0, rng), x)
    s = vit.random_shift(x, 1, rng, fill=0.0)
    assert s.shape == x.shape and s.dtype == x.dtype
    for a, b in zip(x, s, strict=False):  # each is x moved by <= 1 pixel
        candidates = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                p = np.pad(a, 1)[1 + dy : 9 + dy, 1 + dx : 9 + dx]
                candidates.append(np.array_equal(p, b))
        assert any(candidates)
    lrs = [vit.learning_rate(t, 100, 1.0) for t in range(100)]
    assert (
        lrs[0] == pytest.approx(0.1)
        and max(lrs) == pytest.approx(1.0)
        and lrs[-1] < 0.01
    )
    assert [len(b) for b in vit.batches(10, 4, 0, 0)] == [4, 4, 2]
    assert sorted(np.concatenate(vit.batches(10, 4, 3, 0))) == list(range(10))
