"""A small Vision Transformer in TensorFlow / Keras 3, built on attnbook's own
``MultiHeadAttention`` layer.

The twin of :mod:`attnbook.vit.torch`: same class name, constructor arguments,
defaults, parameter names and training recipe (see :mod:`attnbook.vit` for the
model's equations and the shared pieces). Training runs a custom loop around a
``tf.function`` step, so that it mirrors the PyTorch loop line for line.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from .. import _checks, vit
from ..tensorflow import MultiHeadAttention, sinusoidal_positional_encoding

__all__ = [
    "Linear",
    "LayerNorm",
    "MLP",
    "Block",
    "VisionTransformer",
    "train",
    "predict",
    "evaluate",
]


class _Weights(keras.layers.Layer):
    """A layer whose weights are created at construction, named like the shared
    parameter dict."""

    def _weight(self, name, shape, value=0.0):
        var = self.add_weight(
            name=name, shape=shape, initializer=keras.initializers.Constant(value)
        )
        setattr(self, name, var)
        return var

    def named_variables(self):
        """``{name: keras.Variable}`` of this layer's own weights."""
        return {name: getattr(self, name) for name in self._names}


class Linear(_Weights):
    """``y = x @ w + b`` with ``w`` of shape ``(in, out)``, the layout every attnbook
    parameter dict uses."""

    def __init__(self, d_in, d_out, **kwargs):
        super().__init__(**kwargs)
        self._names = ("w", "b")
        self._weight("w", (d_in, d_out))
        self._weight("b", (d_out,))
        self.built = True

    def call(self, x):
        return tf.tensordot(x, self.w, axes=1) + self.b


class LayerNorm(_Weights):
    """Layer normalisation over the last axis (Ba et al., 2016) with weights
    ``gamma`` and ``beta``."""

    def __init__(self, d, **kwargs):
        super().__init__(**kwargs)
        self._names = ("gamma", "beta")
        self._weight("gamma", (d,), 1.0)
        self._weight("beta", (d,))
        self.built = True

    def call(self, x):
        # biased variance, as PyTorch
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(
            var + vit.LAYER_NORM_EPS
        ) * self.gamma + self.beta


class MLP(_Weights):
    """The position-wise feed-forward network ``gelu(x @ w1 + b1) @ w2 + b2`` (exact,
    erf-based GELU)."""

    def __init__(self, d_model, mlp_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self._names = ("w1", "b1", "w2", "b2")
        self._weight("w1", (d_model, mlp_dim))
        self._weight("b1", (mlp_dim,))
        self._weight("w2", (mlp_dim, d_model))
        self._weight("b2", (d_model,))
        self.drop = keras.layers.Dropout(dropout)
        self.built = True

    def call(self, x, training=False):
        # (B, L, mlp_dim)
        h = tf.nn.gelu(tf.tensordot(x, self.w1, axes=1) + self.b1, approximate=False)
        # (B, L, D)
        return self.drop(tf.tensordot(h, self.w2, axes=1) + self.b2, training=training)


class Block(keras.layers.Layer):
    """A pre-norm Transformer encoder block: ``x + attn(norm1(x))``, then ``x +
    mlp(norm2(x))``.

    Normalising *before* each sub-layer leaves the residual path an identity from
    input to output, which is what lets Transformers train without a carefully tuned
    warm-up (Xiong et al., 2020).
    """

    def __init__(self, d_model, num_heads, mlp_dim, dropout=0.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.norm1 = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, seed=seed)
        self.norm2 = LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_dim, dropout)

    def call(self, x, return_weights=False, training=False):
        """``x (B, L, D)`` -> ``(B, L, D)``, and the attention weights ``(B, H, L,
        L)`` (or None)."""
        h = self.norm1(x)
        if return_weights:
            # every token attends to every one
            a, weights = self.attn(h, return_weights=True, training=training)
        else:
            a, weights = self.attn(h, training=training), None
        x = x + a
        x = x + self.mlp(self.norm2(x), training=training)
        return x, weights


class VisionTransformer(keras.Model):
    """A Vision Transformer for square grey images ``(B, H, W)`` (Dosovitskiy et al.,
    2021).

    Args:
        image_size: side ``H = W`` of the images.
        patch_size: side ``p`` of the square patches; must divide ``image_size``. ``N
            = (H/p)^2`` patches.
        num_classes: number of output logits.
        d_model: token width ``D``.
        num_heads: attention heads ``H`` per block (must divide ``d_model``).
        num_layers: number of Transformer blocks.
        mlp_dim: hidden width of each block's MLP.
        position: ``"learned"`` (a trained ``(N + 1, D)`` table), ``"sinusoidal"``
            (fixed, with the [CLS] token at position 0) or ``"none"`` (the model is
            then blind to where a patch was: see the book).
        dropout: dropout on the attention weights, the MLP outputs and the
            embeddings, active with ``training=True``.
        seed: seed of the shared NumPy initialisation
            (:func:`attnbook.vit.init_params`).

    Parameters are exchanged with the PyTorch twin as a dict of NumPy arrays
    (``get_params`` / ``set_params``) named as in :func:`attnbook.vit.param_shapes`.
    """

    def __init__(
        self,
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
    ):
        super().__init__()
        self.config = cfg = vit.config(
            image_size=image_size,
            patch_size=patch_size,
            num_classes=num_classes,
            d_model=d_model,
            num_heads=num_heads,
            num_layers=num_layers,
            mlp_dim=mlp_dim,
            position=position,
            dropout=dropout,
            seed=seed,
        )
        # The checked values from here on: Python ints and floats whatever NumPy scalars
        # came in.
        (
            patch_size,
            d_model,
            num_heads,
            num_layers,
            mlp_dim,
            num_classes,
            position,
            dropout,
            seed,
        ) = (
            cfg[k]
            for k in (
                "patch_size",
                "d_model",
                "num_heads",
                "num_layers",
                "mlp_dim",
                "num_classes",
                "position",
                "dropout",
                "seed",
            )
        )
        self.patch_size = patch_size
        self.cls_token = self.add_weight(
            name="cls_token", shape=(d_model,), initializer="zeros"
        )
        self.patch_embed = Linear(patch_size * patch_size, d_model)
        if position == "learned":
            self.pos_embed = self.add_weight(
                name="pos_embed",
                shape=(cfg["num_patches"] + 1, d_model),
                initializer="zeros",
            )
        elif position == "sinusoidal":
            # a constant
            self.pos_embed = sinusoidal_positional_encoding(
                cfg["num_patches"] + 1, d_model
            )
        else:
            self.pos_embed = None
        self.drop = keras.layers.Dropout(dropout)
        self.blocks = [
            Block(d_model, num_heads, mlp_dim, dropout, seed=seed + i)
            for i in range(num_layers)
        ]
        self.norm = LayerNorm(d_model)
        self.head = Linear(d_model, num_classes)
        self.set_params(vit.init_params(cfg))

    def __call__(self, images, *args, **kwargs):
        # Keras rewrites an error raised inside `call` into a message of its own:
        # checking the images here raises the PyTorch twin's error, unchanged.
        vit.check_images(self.config, images)
        return super().__call__(images, *args, **kwargs)

    def patchify(self, images):
        """``(B, H, W)`` -> ``(B, N, p*p)`` patches in reading order (as
        ``attnbook.datasets.digits.patchify``).

        ``images`` is checked (:func:`attnbook.vit.check_images`) and taken as
        float32, as the PyTorch twin does: NumPy arrays and integer grey levels are
        accepted.
        """
        vit.check_images(self.config, images)
        images = tf.cast(images, tf.float32)
        p = self.patch_size
        b, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
        x = tf.reshape(images, (b, h // p, p, w // p, p))
        x = tf.transpose(x, (0, 1, 3, 2, 4))  # (B, H/p, W/p, p, p)
        return tf.reshape(x, (b, (h // p) * (w // p), p * p))

    def call(self, images, return_weights=False, training=False):
        """Logits ``(B, num_classes)`` of images ``(B, H, W)``.

        With ``return_weights=True``, also a list with each block's attention weights
        ``(B, H, L, L)``, ``L = N + 1``; token 0 is [CLS], token ``n + 1`` is patch
        ``n``.
        """
        x = self.patch_embed(self.patchify(images))  # (B, N, D)
        # (B, 1, D)
        cls = tf.broadcast_to(self.cls_token, (tf.shape(x)[0], 1, x.shape[-1]))
        x = tf.concat([cls, x], axis=1)  # (B, L, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed  # (L, D) broadcast over the batch
        x = self.drop(x, training=training)
        weights = []
        for block in self.blocks:
            x, w = block(x, return_weights=return_weights, training=training)
            weights.append(w)
        logits = self.head(self.norm(x[:, 0]))  # (B, classes), from [CLS] only
        return (logits, weights) if return_weights else logits

    def _own_variables(self):
        out = {"cls_token": self.cls_token}
        out.update(
            {
                f"patch_embed.{k}": v
                for k, v in self.patch_embed.named_variables().items()
            }
        )
        if self.config["position"] == "learned":
            out["pos_embed"] = self.pos_embed
        for i, block in enumerate(self.blocks):
            for part in ("norm1", "norm2", "mlp"):
                out.update(
                    {
                        f"blocks.{i}.{part}.{k}": v
                        for k, v in getattr(block, part).named_variables().items()
                    }
                )
        out.update({f"norm.{k}": v for k, v in self.norm.named_variables().items()})
        out.update({f"head.{k}": v for k, v in self.head.named_variables().items()})
        return out

    def get_params(self):
        """The trainable parameters as a dict of NumPy arrays, named as
        :func:`attnbook.vit.param_shapes`."""
        out = {name: v.numpy().copy() for name, v in self._own_variables().items()}
        for i, block in enumerate(self.blocks):
            out.update(
                {f"blocks.{i}.attn.{k}": v for k, v in block.attn.get_params().items()}
            )
        return {name: out[name] for name in vit.param_shapes(self.config)}

    def set_params(self, params):
        """Load a dict of NumPy arrays (from either framework's ``get_params``);
        checks names and shapes."""
        new = vit.check_params(self.config, params)
        for name, var in self._own_variables().items():
            var.assign(new[name])
        for i, block in enumerate(self.blocks):
            prefix = f"blocks.{i}.attn."
            block.attn.set_params(
                {k[len(prefix) :]: v for k, v in new.items() if k.startswith(prefix)}
            )


def _check_model(model):
    if not isinstance(model, VisionTransformer):
        raise TypeError(
            f"model must be an attnbook.vit.tensorflow.VisionTransformer, "
            f"got {type(model).__name__}"
        )


def train(
    model,
    images,
    labels,
    *,
    epochs=30,
    batch_size=64,
    lr=3e-3,
    weight_decay=0.05,
    shift=0,
    seed=0,
    valid_images=None,
    valid_labels=None,
    progress=True,
):
    """Train with AdamW on cross-entropy, warm-up + cosine learning rate, batches
    from ``attnbook.vit.batches``.

    Args:
        model: a :class:`VisionTransformer`.
        images, labels: NumPy ``(N, H, W)`` float32 and ``(N,)`` integer arrays.
        epochs, batch_size, lr, weight_decay: the recipe (the PyTorch twin's defaults
            are the same).
        shift: data augmentation, each training image moved by up to ``shift`` pixels
            (:func:`attnbook.vit.random_shift`); 0 turns it off.
        seed: seeds the batch order, the shifts and dropout.
        valid_images, valid_labels: optional held-out set, scored after each epoch.
        progress: show one tqdm bar over the epochs.

    Returns:
        ``{"loss": [mean training loss per epoch], "valid_accuracy": [...],
        "seconds": wall time}``.
    """
    _check_model(model)
    x, y, valid = vit.check_training(
        model.config,
        images,
        labels,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        shift=shift,
        seed=seed,
        valid_images=valid_images,
        valid_labels=valid_labels,
        progress=progress,
    )
    tf.random.set_seed(seed)
    # epsilon as PyTorch's AdamW, so that both twins take the same steps from the same
    # parameters.
    opt = keras.optimizers.AdamW(
        learning_rate=lr, weight_decay=weight_decay, epsilon=1e-8
    )
    size = x.shape[1:]

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, *size), tf.float32),
            tf.TensorSpec((None,), tf.int64),
            tf.TensorSpec((), tf.float32),
        ]
    )
    def train_step(xb, yb, step_lr):
        opt.learning_rate.assign(step_lr)
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits)
            )
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=False))
        return loss

    total = epochs * -(-len(x) // batch_size)
    history = {"loss": [], "valid_accuracy": []}
    start, step = time.perf_counter(), 0
    bar = tqdm(
        range(epochs), desc="tensorflow ViT", disable=not progress, mininterval=5.0
    )
    for epoch in bar:
        rng = np.random.default_rng([seed, epoch, 1])
        losses = []
        for idx in vit.batches(len(x), batch_size, epoch, seed):
            xb = vit.random_shift(x[idx], shift, rng) if shift else x[idx]
            losses.append(
                train_step(xb, y[idx], np.float32(vit.learning_rate(step, total, lr)))
            )
            step += 1
        history["loss"].append(float(tf.reduce_mean(losses)))
        if valid:
            history["valid_accuracy"].append(evaluate(model, *valid))
        bar.set_postfix(
            refresh=False,
            loss=f"{history['loss'][-1]:.3f}",
            **({"valid": f"{history['valid_accuracy'][-1]:.3f}"} if valid else {}),
        )
    history["seconds"] = time.perf_counter() - start
    return history


def predict(model, images, batch_size=512):
    """Logits ``(N, num_classes)`` as a NumPy array, computed with ``training=False``
    (no dropout); ``(0, num_classes)`` for no image."""
    _check_model(model)
    batch_size = _checks.positive_int("batch_size", batch_size)
    if vit.check_images(model.config, images)[0] == 0:
        return np.zeros((0, model.config["num_classes"]), np.float32)
    out = [
        np.asarray(
            model(np.asarray(images[i : i + batch_size], np.float32), training=False)
        )
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def evaluate(model, images, labels):
    """Accuracy (a float in ``[0, 1]``) of the arg-max prediction; ``ValueError`` for
    no image (see :func:`attnbook.vit.check_evaluation`)."""
    _check_model(model)
    labels = vit.check_evaluation(model.config, images, labels)
    return float((predict(model, images).argmax(axis=1) == labels).mean())
