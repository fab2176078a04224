"""A small Vision Transformer (Dosovitskiy et al., 2021), twinned in PyTorch and
TensorFlow.

``attnbook.vit.torch.VisionTransformer`` and
``attnbook.vit.tensorflow.VisionTransformer`` take the same constructor arguments with
the same defaults, hold parameters under the same names and shapes (see
:func:`param_shapes`), and exchange them as a flat dict of NumPy arrays with
``get_params()`` / ``set_params()``: the same dict gives the same logits in both
frameworks. This module holds what the twins share and needs NumPy only: the parameter
shapes and their seeded initialisation, the learning-rate schedule and batch order of
the training loops, and attention rollout.

The model, for images ``(B, H, W)`` cut into ``N = HW / p^2`` patches of ``p*p``
pixels (reading order, as in
:func:`attnbook.datasets.digits.patchify`), with ``L = N + 1`` tokens and width ``D``::

    # (B, L, D); pos: learned, sinusoidal or 0
    z = [cls ; patches @ patch_embed.w + patch_embed.b] + pos
    for each block:  # pre-norm Transformer block
        z = z + attn(norm1(z))  # attnbook's MultiHeadAttention
        z = z + mlp.w2 . gelu(norm2(z) @ mlp.w1 + mlp.b1) + mlp.b2
    # (B, num_classes), read off the [CLS] token
    logits = norm(z)[:, 0] @ head.w + head.b
"""

from __future__ import annotations

import math

import numpy as np

from .. import _checks, _params, _spec

__all__ = [
    "POSITIONS",
    "DEFAULTS",
    "config",
    "param_shapes",
    "init_params",
    "learning_rate",
    "batches",
    "random_shift",
    "attention_rollout",
    "check_images",
    "check_labels",
    "check_evaluation",
    "check_training",
]

# : The kinds of position embedding: trained parameters, the fixed sinusoids of Vaswani
# et al. (2017), or none.
POSITIONS = ("learned", "sinusoidal", "none")

# : The constructor's defaults, the same in both frameworks (sized for 8x8 digits: 16
# patches of 2x2 pixels).
DEFAULTS = dict(
    image_size=8,
    patch_size=2,
    num_classes=10,
    d_model=64,
    num_heads=4,
    num_layers=2,
    mlp_dim=128,
    position="learned",
    dropout=0.0,
    seed=0,
)

# : ``epsilon`` of every layer normalisation (PyTorch's default; Keras' own default is
# 1e-3).
LAYER_NORM_EPS = 1e-5


_SIZES = (
    "image_size",
    "patch_size",
    "num_classes",
    "d_model",
    "num_heads",
    "num_layers",
    "mlp_dim",
)


def config(**kwargs):
    """The checked constructor arguments as a dict (defaults from :data:`DEFAULTS`);
    raises on bad values.

    Sizes are positive integers (NumPy integers too; ``TypeError`` for another type,
    ``ValueError`` below 1), ``position`` one of :data:`POSITIONS`, ``dropout`` in
    ``[0, 1)``, ``seed`` a non-negative integer (block ``i`` is seeded with ``seed +
    i``, so ``seed + num_layers - 1`` must stay below 2**63). A configuration whose
    float32 parameters would not fit in this machine's memory is refused with
    ``ValueError`` before anything is allocated. The values come back as Python ints
    and floats.
    """
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown VisionTransformer arguments {unknown}")
    cfg = {**DEFAULTS, **kwargs}
    for name in _SIZES:
        cfg[name] = _checks.positive_int(name, cfg[name])
    if cfg["image_size"] % cfg["patch_size"]:
        raise ValueError(
            f"patch_size = {cfg['patch_size']} must divide image_size = "
            f"{cfg['image_size']}"
        )
    if cfg["d_model"] % cfg["num_heads"]:
        raise ValueError(
            f"num_heads = {cfg['num_heads']} must divide d_model = {cfg['d_model']}"
        )
    _checks.string("position", cfg["position"], POSITIONS)
    cfg["dropout"], _ = _spec.check_dropout(cfg["dropout"], None)
    cfg["seed"] = _spec.check_integer("seed", cfg["seed"])
    if cfg["seed"] + cfg["num_layers"] - 1 > _spec.INDEX_MAX:
        raise ValueError(
            f"seed = {cfg['seed']} is too large: block i is seeded with "
            f"seed + i, and seed + "
            f"num_layers - 1 must be at most 2**63 - 1"
        )
    cfg["num_patches"] = (cfg["image_size"] // cfg["patch_size"]) ** 2
    _checks.fits_in_memory(
        "the VisionTransformer's float32 parameters", 4 * _param_count(cfg)
    )
    return cfg


def _param_count(cfg):
    """The number of parameters of :func:`param_shapes`, by arithmetic
    (``num_layers`` may be huge)."""
    d, m, c = cfg["d_model"], cfg["mlp_dim"], cfg["num_classes"]
    block = 4 * d + 4 * d * d + 4 * d + 2 * d * m + m + d  # norms, attention, MLP
    pos = (cfg["num_patches"] + 1) * d if cfg["position"] == "learned" else 0
    return (
        d
        + cfg["patch_size"] ** 2 * d
        + d
        + pos
        + cfg["num_layers"] * block
        + 2 * d
        + d * c
        + c
    )


def _config(cfg):
    """A configuration dict (from :func:`config`, or a hand-made one: missing keys
    take :data:`DEFAULTS`) checked again, so that the functions taking ``cfg`` refuse
    what the constructor refuses."""
    if not isinstance(cfg, dict):
        raise TypeError(
            f"cfg must be a configuration dict (attnbook.vit.config(...)), "
            f"got {type(cfg).__name__}"
        )
    return config(**{k: v for k, v in cfg.items() if k != "num_patches"})


def param_shapes(cfg):
    """``{name: shape}`` of every trainable parameter, in a fixed order, for a
    :func:`config` dict.

    Linear maps are ``y = x @ w + b`` with ``w`` of shape ``(in, out)``; layer norms
    have ``gamma`` and ``beta``; block ``i``'s attention holds the parameters of
    attnbook's ``MultiHeadAttention`` under ``blocks.i.attn.``.
    """
    return _param_shapes(_config(cfg))


def _param_shapes(cfg):
    d, n, pp = cfg["d_model"], cfg["num_patches"], cfg["patch_size"] ** 2
    shapes = {"cls_token": (d,), "patch_embed.w": (pp, d), "patch_embed.b": (d,)}
    if cfg["position"] == "learned":
        shapes["pos_embed"] = (n + 1, d)
    for i in range(cfg["num_layers"]):
        p = f"blocks.{i}."
        shapes.update({p + "norm1.gamma": (d,), p + "norm1.beta": (d,)})
        shapes.update(
            {
                p + "attn." + k: s
                for k, s in _params.multi_head_shapes(d, cfg["num_heads"]).items()
            }
        )
        shapes.update(
            {
                p + "norm2.gamma": (d,),
                p + "norm2.beta": (d,),
                p + "mlp.w1": (d, cfg["mlp_dim"]),
                p + "mlp.b1": (cfg["mlp_dim"],),
                p + "mlp.w2": (cfg["mlp_dim"], d),
                p + "mlp.b2": (d,),
            }
        )
    shapes.update(
        {
            "norm.gamma": (d,),
            "norm.beta": (d,),
            "head.w": (d, cfg["num_classes"]),
            "head.b": (cfg["num_classes"],),
        }
    )
    return shapes


def init_params(cfg):
    """Seeded float32 initial parameters, a dict of NumPy arrays shaped as
    :func:`param_shapes`.

    Matrices are Glorot-uniform (as attnbook's attention layers), biases and ``beta``
    zero, ``gamma`` one, the [CLS] token and learned positions ``N(0, 0.02^2)`` (as
    in the ViT reference code). Both frameworks start from this dict, so a seed means
    the same network everywhere.
    """
    cfg = _config(cfg)
    rng = np.random.default_rng(cfg["seed"])
    out = {}
    for name, shape in _param_shapes(cfg).items():
        if name.endswith("gamma"):
            out[name] = np.ones(shape, np.float32)
        elif name in ("cls_token", "pos_embed"):
            out[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        elif len(shape) == 2:
            out[name] = _params._glorot(rng, *shape, "float32")
        else:
            out[name] = np.zeros(shape, np.float32)
    return out


def check_params(cfg, params):
    """``params`` as float32 NumPy arrays after checking names and shapes against
    :func:`param_shapes`."""
    return {
        k: v.astype(np.float32)
        for k, v in _params.check_set(param_shapes(cfg), params).items()
    }


def check_images(cfg, images, name="images"):
    """Check a batch of images for a model of configuration ``cfg``: a real (integer
    or floating) array of any framework with shape ``(B, image_size, image_size)``,
    ``B`` possibly 0 or unknown inside a TensorFlow graph. Returns its shape."""
    h = _checks.host(name, images, values=False)
    if h.dtype not in _checks.INTEGER_DTYPES and h.dtype not in _spec.FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be an array of real numbers (grey levels), got "
            f"dtype {h.dtype}"
        )
    s = cfg["image_size"]
    if len(h.shape) != 3 or any(n is not None and n != s for n in h.shape[1:]):
        raise ValueError(
            f"{name} must have shape (B, {s}, {s}) for image_size = {s}, "
            f"got shape {h.shape}"
        )
    return h.shape


def check_labels(cfg, labels, n, name="labels"):
    """Class labels for ``n`` images: an integer array ``(n,)`` in ``[0,
    num_classes)``; returns int64 NumPy."""
    h = _checks.host(name, labels)
    if len(h.shape) != 1 or h.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},), one label per image, got shape {h.shape}"
        )
    _checks.check_ids(name, h, cfg["num_classes"], "class labels")
    return np.asarray(h.values, np.int64)


def check_evaluation(cfg, images, labels):
    """The arguments of both twins' ``evaluate``: at least one image (an accuracy
    over no image is undefined, and a NaN would travel silently into a table) and one
    label in ``[0, num_classes)`` per image; returns the labels."""
    n = check_images(cfg, images)[0]
    if n == 0:
        raise ValueError("images is empty: an accuracy over no image is undefined")
    return check_labels(cfg, labels, n)


def check_training(
    cfg,
    images,
    labels,
    *,
    epochs,
    batch_size,
    lr,
    weight_decay,
    shift,
    seed,
    valid_images,
    valid_labels,
    progress,
):
    """The arguments of both twins' ``train``, checked in one order so that they
    raise the same errors; returns ``(images float32, labels int64, valid or None)``
    as NumPy, ``valid`` being ``(images, labels)``."""
    from ..plotting import to_numpy

    n = check_images(cfg, images)[0]
    if n == 0:
        raise ValueError("images is empty: there is nothing to train on")
    y = check_labels(cfg, labels, n)
    _checks.count("epochs", epochs)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive("lr", lr)
    _checks.positive("weight_decay", weight_decay, zero=True)
    _checks.count("shift", shift)
    _spec.check_integer("seed", seed)
    _spec.check_flag("progress", progress)
    if (valid_images is None) != (valid_labels is None):
        raise ValueError("give valid_images and valid_labels together, or neither")
    valid = None
    if valid_images is not None:
        m = check_images(cfg, valid_images, "valid_images")[0]
        if m == 0:
            raise ValueError(
                "valid_images is empty: an accuracy over no image is undefined"
            )
        valid = (valid_images, check_labels(cfg, valid_labels, m, "valid_labels"))
    return np.asarray(to_numpy(images), np.float32), y, valid


def learning_rate(step, total_steps, peak, warmup=0.1):
    """Linear warm-up over the first ``warmup`` share of the steps, then cosine decay
    to 0 (both frameworks).

    The warm-up keeps the first Adam steps, taken with poorly estimated second
    moments, from throwing the freshly initialised attention into saturated (one-hot)
    softmax rows. ``step`` and ``total_steps`` are non-negative integers, ``peak`` a
    non-negative finite number, ``warmup`` a fraction in ``[0, 1]``; past
    ``total_steps`` the rate stays 0.
    """
    step, total_steps = (
        _checks.count("step", step),
        _checks.count("total_steps", total_steps),
    )
    peak, warmup = (
        _checks.positive("peak", peak, zero=True),
        _checks.probability("warmup", warmup),
    )
    warm = max(1, int(warmup * total_steps))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total_steps - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batches(n, batch_size, epoch, seed):
    """Index arrays of the mini-batches of one epoch: a permutation of ``range(n)``
    drawn from ``(seed, epoch)``.

    Both training loops draw their batches here, so with the same seed they see the
    same images in the same order.
    """
    n, batch_size = (
        _checks.count("n", n),
        _checks.positive_int("batch_size", batch_size),
    )
    epoch, seed = _checks.count("epoch", epoch), _spec.check_integer("seed", seed)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def random_shift(images, max_shift, rng, fill=None):
    """Translate each image by its own random offset of up to ``max_shift`` pixels
    along each axis.

    Args:
        images: ``(B, H, W)`` NumPy array.
        max_shift: largest offset in pixels; offsets are drawn uniformly from
            ``-max_shift..max_shift``.
        rng: a ``numpy.random.Generator``.
        fill: value of the pixels shifted in; ``None`` uses each image's minimum (the
            background of a digit).

    Returns:
        ``(B, H, W)`` array of the same dtype. A ViT has no built-in notion that a
        digit moved by one pixel is the same digit (a convolutional network has it by
        construction); showing it shifted copies teaches it.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype.kind not in "iuf":
        raise ValueError(
            f"images must be a real array of shape (B, H, W), got shape "
            f"{images.shape} and dtype "
            f"{images.dtype}"
        )
    m = _checks.count("max_shift", max_shift)
    _checks.generator("rng", rng)
    if fill is not None:
        fill = _spec.check_real("fill", fill, "a number or None")
    b, h, w = images.shape
    fill_values = (
        images.reshape(b, -1).min(axis=1)
        if fill is None
        else np.full(b, fill, images.dtype)
    )
    padded = np.broadcast_to(
        fill_values[:, None, None], (b, h + 2 * m, w + 2 * m)
    ).copy()
    padded[:, m : m + h, m : m + w] = images
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, b))
    rows = dy[:, None] + np.arange(h)[None, :]  # (B, H) rows of the crop
    cols = dx[:, None] + np.arange(w)[None, :]  # (B, W)
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def attention_rollout(weights, residual=True):
    """Attention rollout (Abnar & Zuidema, 2020): how much each token's final state
    draws on each input token.

    Args:
        weights: a sequence of the layers' attention weights, each ``(B, H, L, L)``
            (NumPy, or anything ``np.asarray`` accepts), first layer first.
        residual: if True, account for the residual connection by using ``(A + I) /
            2`` for each layer's head-averaged weights ``A``; if False, multiply the
            raw head averages.

    Returns:
        ``(B, L, L)`` row-stochastic matrix ``R = A_K ... A_2 A_1``: row ``i`` is how
        the last layer's token ``i`` mixes the *input* tokens. Row 0 is the [CLS]
        token's view of the image.
    """
    residual = _spec.check_flag("residual", residual)
    if isinstance(weights, np.ndarray) and weights.ndim == 4:
        raise ValueError(
            f"weights must be a sequence of layers' weights (B, H, L, L), "
            f"got one array of shape "
            f"{weights.shape}; for a single layer pass [weights]"
        )
    rollout, shape = None, None
    for i, w in enumerate(weights):
        a = np.asarray(w, dtype=np.float64)
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(
                f"weights[{i}] must have shape (B, H, L, L), got shape {a.shape}"
            )
        if shape is not None and a.shape != shape:
            raise ValueError(
                f"weights[{i}] has shape {a.shape}, but weights[0] has shape {shape}"
            )
        if not (np.isfinite(a).all() and (a >= 0).all()):
            raise ValueError(
                f"weights[{i}] must hold finite non-negative attention weights"
            )
        shape = a.shape
        a = a.mean(axis=1)  # (B, L, L), average over heads
        if residual:
            a = 0.5 * (a + np.eye(a.shape[-1]))
        if (a.sum(axis=-1) == 0).any():
            raise ValueError(
                f"weights[{i}] has a row of zeros in every head: it does "
                f"not mix any token"
            )
        a = a / a.sum(axis=-1, keepdims=True)
        rollout = a if rollout is None else a @ rollout
    if rollout is None:
        raise ValueError("weights must hold at least one layer")
    return rollout
