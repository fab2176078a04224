"""A small Vision Transformer (Dosovitskiy et al., 2021), twinned in PyTorch and TensorFlow.

``attnbook.vit.torch.VisionTransformer`` and ``attnbook.vit.tensorflow.VisionTransformer`` take the same constructor
arguments with the same defaults, hold parameters under the same names and shapes (see :func:`param_shapes`), and
exchange them as a flat dict of NumPy arrays with ``get_params()`` / ``set_params()``: the same dict gives the same
logits in both frameworks. This module holds what the twins share and needs NumPy only: the parameter shapes and
their seeded initialisation, the learning-rate schedule and batch order of the training loops, and attention rollout.

The model, for images ``(B, H, W)`` cut into ``N = HW / p^2`` patches of ``p*p`` pixels (reading order, as in
:func:`attnbook.datasets.digits.patchify`), with ``L = N + 1`` tokens and width ``D``::

    z = [cls ; patches @ patch_embed.w + patch_embed.b] + pos          # (B, L, D); pos: learned, sinusoidal or 0
    for each block:                                                     # pre-norm Transformer block
        z = z + attn(norm1(z))                                          # attnbook's MultiHeadAttention
        z = z + mlp.w2 . gelu(norm2(z) @ mlp.w1 + mlp.b1) + mlp.b2
    logits = norm(z)[:, 0] @ head.w + head.b                            # (B, num_classes), read off the [CLS] token
"""

from __future__ import annotations

import math

import numpy as np

from .. import _params

__all__ = ["POSITIONS", "DEFAULTS", "config", "param_shapes", "init_params", "learning_rate", "batches",
           "random_shift", "attention_rollout"]

#: The kinds of position embedding: trained parameters, the fixed sinusoids of Vaswani et al. (2017), or none.
POSITIONS = ("learned", "sinusoidal", "none")

#: The constructor's defaults, the same in both frameworks (sized for 8x8 digits: 16 patches of 2x2 pixels).
DEFAULTS = dict(image_size=8, patch_size=2, num_classes=10, d_model=64, num_heads=4, num_layers=2, mlp_dim=128,
                position="learned", dropout=0.0, seed=0)

#: ``epsilon`` of every layer normalisation (PyTorch's default; Keras' own default is 1e-3).
LAYER_NORM_EPS = 1e-5


def config(**kwargs):
    """The checked constructor arguments as a dict (defaults from :data:`DEFAULTS`); raises on bad values."""
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown VisionTransformer arguments {unknown}")
    cfg = {**DEFAULTS, **kwargs}
    for name in ("image_size", "patch_size", "num_classes", "d_model", "num_heads", "num_layers", "mlp_dim"):
        value = cfg[name]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if cfg["image_size"] % cfg["patch_size"]:
        raise ValueError(f"patch_size = {cfg['patch_size']} must divide image_size = {cfg['image_size']}")
    if cfg["d_model"] % cfg["num_heads"]:
        raise ValueError(f"num_heads = {cfg['num_heads']} must divide d_model = {cfg['d_model']}")
    if cfg["position"] not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {cfg['position']!r}")
    if not 0 <= cfg["dropout"] < 1:
        raise ValueError(f"dropout must be in [0, 1), got {cfg['dropout']!r}")
    cfg["num_patches"] = (cfg["image_size"] // cfg["patch_size"]) ** 2
    return cfg


def param_shapes(cfg):
    """``{name: shape}`` of every trainable parameter, in a fixed order, for a :func:`config` dict.

    Linear maps are ``y = x @ w + b`` with ``w`` of shape ``(in, out)``; layer norms have ``gamma`` and ``beta``;
    block ``i``'s attention holds the parameters of attnbook's ``MultiHeadAttention`` under ``blocks.i.attn.``.
    """
    d, n, pp = cfg["d_model"], cfg["num_patches"], cfg["patch_size"] ** 2
    shapes = {"cls_token": (d,), "patch_embed.w": (pp, d), "patch_embed.b": (d,)}
    if cfg["position"] == "learned":
        shapes["pos_embed"] = (n + 1, d)
    for i in range(cfg["num_layers"]):
        p = f"blocks.{i}."
        shapes.update({p + "norm1.gamma": (d,), p + "norm1.beta": (d,)})
        shapes.update({p + "attn." + k: s for k, s in _params.multi_head_shapes(d, cfg["num_heads"]).items()})
        shapes.update({p + "norm2.gamma": (d,), p + "norm2.beta": (d,),
                       p + "mlp.w1": (d, cfg["mlp_dim"]), p + "mlp.b1": (cfg["mlp_dim"],),
                       p + "mlp.w2": (cfg["mlp_dim"], d), p + "mlp.b2": (d,)})
    shapes.update({"norm.gamma": (d,), "norm.beta": (d,), "head.w": (d, cfg["num_classes"]),
                   "head.b": (cfg["num_classes"],)})
    return shapes


def init_params(cfg):
    """Seeded float32 initial parameters, a dict of NumPy arrays shaped as :func:`param_shapes`.

    Matrices are Glorot-uniform (as attnbook's attention layers), biases and ``beta`` zero, ``gamma`` one, the
    [CLS] token and learned positions ``N(0, 0.02^2)`` (as in the ViT reference code). Both frameworks start from
    this dict, so a seed means the same network everywhere.
    """
    rng = np.random.default_rng(cfg["seed"])
    out = {}
    for name, shape in param_shapes(cfg).items():
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
    """``params`` as float32 NumPy arrays after checking names and shapes against :func:`param_shapes`."""
    return {k: v.astype(np.float32) for k, v in _params.check_set(param_shapes(cfg), params).items()}


def learning_rate(step, total_steps, peak, warmup=0.1):
    """Linear warm-up over the first ``warmup`` share of the steps, then cosine decay to 0 (both frameworks).

    The warm-up keeps the first Adam steps, taken with poorly estimated second moments, from throwing the freshly
    initialised attention into saturated (one-hot) softmax rows.
    """
    warm = max(1, int(warmup * total_steps))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total_steps - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batches(n, batch_size, epoch, seed):
    """Index arrays of the mini-batches of one epoch: a permutation of ``range(n)`` drawn from ``(seed, epoch)``.

    Both training loops draw their batches here, so with the same seed they see the same images in the same order.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def random_shift(images, max_shift, rng, fill=None):
    """Translate each image by its own random offset of up to ``max_shift`` pixels along each axis.

    Args:
        images: ``(B, H, W)`` NumPy array.
        max_shift: largest offset in pixels; offsets are drawn uniformly from ``-max_shift..max_shift``.
        rng: a ``numpy.random.Generator``.
        fill: value of the pixels shifted in; ``None`` uses each image's minimum (the background of a digit).

    Returns:
        ``(B, H, W)`` array of the same dtype. A ViT has no built-in notion that a digit moved by one pixel is the
        same digit (a convolutional network has it by construction); showing it shifted copies teaches it.
    """
    images = np.asarray(images)
    b, h, w = images.shape
    m = max_shift
    fill_values = images.reshape(b, -1).min(axis=1) if fill is None else np.full(b, fill, images.dtype)
    padded = np.broadcast_to(fill_values[:, None, None], (b, h + 2 * m, w + 2 * m)).copy()
    padded[:, m:m + h, m:m + w] = images
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, b))
    rows = dy[:, None] + np.arange(h)[None, :]                               # (B, H) rows of the crop
    cols = dx[:, None] + np.arange(w)[None, :]                               # (B, W)
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def attention_rollout(weights, residual=True):
    """Attention rollout (Abnar & Zuidema, 2020): how much each token's final state draws on each input token.

    Args:
        weights: a sequence of the layers' attention weights, each ``(B, H, L, L)`` (NumPy, or anything
            ``np.asarray`` accepts), first layer first.
        residual: if True, account for the residual connection by using ``(A + I) / 2`` for each layer's
            head-averaged weights ``A``; if False, multiply the raw head averages.

    Returns:
        ``(B, L, L)`` row-stochastic matrix ``R = A_K ... A_2 A_1``: row ``i`` is how the last layer's token ``i``
        mixes the *input* tokens. Row 0 is the [CLS] token's view of the image.
    """
    rollout = None
    for w in weights:
        a = np.asarray(w, dtype=np.float64).mean(axis=1)                    # (B, L, L), average over heads
        if residual:
            a = 0.5 * (a + np.eye(a.shape[-1]))
        a = a / a.sum(axis=-1, keepdims=True)
        rollout = a if rollout is None else a @ rollout
    if rollout is None:
        raise ValueError("weights must hold at least one layer")
    return rollout
