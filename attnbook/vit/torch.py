"""A small Vision Transformer in PyTorch, built on attnbook's own
``MultiHeadAttention``.

The twin of :mod:`attnbook.vit.tensorflow`: same class name, constructor arguments,
defaults, parameter names and training recipe (see :mod:`attnbook.vit` for the
model's equations and the shared pieces).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import _checks, vit
from ..devices import torch_device
from ..torch import MultiHeadAttention, sinusoidal_positional_encoding

__all__ = [
    "Linear",
    "LayerNorm",
    "MLP",
    "Block",
    "VisionTransformer",
    "train",
    "predict",
    "evaluate",
    "torch_device",
]


class Linear(torch.nn.Module):
    """``y = x @ w + b`` with ``w`` of shape ``(in, out)``, the layout every attnbook
    parameter dict uses."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(d_in, d_out))
        self.b = torch.nn.Parameter(torch.zeros(d_out))

    def forward(self, x):
        return x @ self.w + self.b


class LayerNorm(torch.nn.Module):
    """Layer normalisation over the last axis (Ba et al., 2016) with parameters
    ``gamma`` and ``beta``."""

    def __init__(self, d):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones(d))
        self.beta = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return F.layer_norm(
            x, x.shape[-1:], self.gamma, self.beta, eps=vit.LAYER_NORM_EPS
        )


class MLP(torch.nn.Module):
    """The position-wise feed-forward network ``gelu(x @ w1 + b1) @ w2 + b2`` (exact,
    erf-based GELU)."""

    def __init__(self, d_model, mlp_dim, dropout=0.0):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.zeros(d_model, mlp_dim))
        self.b1 = torch.nn.Parameter(torch.zeros(mlp_dim))
        self.w2 = torch.nn.Parameter(torch.zeros(mlp_dim, d_model))
        self.b2 = torch.nn.Parameter(torch.zeros(d_model))
        self.dropout = dropout

    def forward(self, x):
        h = F.gelu(x @ self.w1 + self.b1)  # (B, L, mlp_dim)
        # (B, L, D)
        return F.dropout(h @ self.w2 + self.b2, self.dropout, self.training)


class Block(torch.nn.Module):
    """A pre-norm Transformer encoder block: ``x + attn(norm1(x))``, then ``x +
    mlp(norm2(x))``.

    Normalising *before* each sub-layer leaves the residual path an identity from
    input to output, which is what lets Transformers train without a carefully tuned
    warm-up (Xiong et al., 2020).
    """

    def __init__(self, d_model, num_heads, mlp_dim, dropout=0.0, seed=0):
        super().__init__()
        self.norm1 = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, seed=seed)
        self.norm2 = LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_dim, dropout)

    def forward(self, x, return_weights=False):
        """``x (B, L, D)`` -> ``(B, L, D)``, and the attention weights ``(B, H, L,
        L)`` (or None)."""
        h = self.norm1(x)
        if return_weights:
            # every token attends to every token
            a, weights = self.attn(h, return_weights=True)
        else:
            a, weights = self.attn(h), None
        x = x + a
        x = x + self.mlp(self.norm2(x))
        return x, weights


class VisionTransformer(torch.nn.Module):
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
            embeddings, active in ``train()`` mode.
        seed: seed of the shared NumPy initialisation
            (:func:`attnbook.vit.init_params`).

    Parameters are exchanged with the TensorFlow twin as a dict of NumPy arrays
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
        self.patch_size, self.dropout = patch_size, dropout
        self.cls_token = torch.nn.Parameter(torch.zeros(d_model))
        self.patch_embed = Linear(patch_size * patch_size, d_model)
        if position == "learned":
            self.pos_embed = torch.nn.Parameter(
                torch.zeros(cfg["num_patches"] + 1, d_model)
            )
        elif position == "sinusoidal":
            self.register_buffer(
                "pos_embed",
                sinusoidal_positional_encoding(cfg["num_patches"] + 1, d_model),
            )
        else:
            self.pos_embed = None
        self.blocks = torch.nn.ModuleList(
            Block(d_model, num_heads, mlp_dim, dropout, seed=seed + i)
            for i in range(num_layers)
        )
        self.norm = LayerNorm(d_model)
        self.head = Linear(d_model, num_classes)
        self.set_params(vit.init_params(cfg))

    def patchify(self, images):
        """``(B, H, W)`` -> ``(B, N, p*p)`` patches in reading order (as
        ``attnbook.datasets.digits.patchify``).

        ``images`` is checked (:func:`attnbook.vit.check_images`) and, like the
        TensorFlow twin's input, taken as
        float32 on the model's device: NumPy arrays and integer grey levels are
            accepted.
        """
        vit.check_images(self.config, images)
        images = torch.as_tensor(
            images, dtype=torch.float32, device=self.cls_token.device
        )
        b, h, w = images.shape
        p = self.patch_size
        # (B, H/p, W/p, p, p)
        x = images.reshape(b, h // p, p, w // p, p).permute(0, 1, 3, 2, 4)
        return x.reshape(b, (h // p) * (w // p), p * p)

    def forward(self, images, return_weights=False):
        """Logits ``(B, num_classes)`` of images ``(B, H, W)``.

        With ``return_weights=True``, also a list with each block's attention weights
        ``(B, H, L, L)``, ``L = N + 1``; token 0 is [CLS], token ``n + 1`` is patch
        ``n``.
        """
        x = self.patch_embed(self.patchify(images))  # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], 1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, L, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed  # (L, D) broadcast over the batch
        x = F.dropout(x, self.dropout, self.training)
        weights = []
        for block in self.blocks:
            x, w = block(x, return_weights)
            weights.append(w)
        logits = self.head(self.norm(x[:, 0]))  # (B, classes), from [CLS] only
        return (logits, weights) if return_weights else logits

    def get_params(self):
        """The trainable parameters as a dict of NumPy arrays, named as
        :func:`attnbook.vit.param_shapes`."""
        return {
            name: p.detach().cpu().numpy().copy() for name, p in self.named_parameters()
        }

    def set_params(self, params):
        """Load a dict of NumPy arrays (from either framework's ``get_params``);
        checks names and shapes."""
        new = vit.check_params(self.config, params)
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(torch.as_tensor(new[name], device=p.device))


def _device_of(model):
    return next(model.parameters()).device


def _check_model(model):
    if not isinstance(model, VisionTransformer):
        raise TypeError(
            f"model must be an attnbook.vit.torch.VisionTransformer, got "
            f"{type(model).__name__}"
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
        model: a :class:`VisionTransformer`, already on the device to train on.
        images, labels: NumPy ``(N, H, W)`` float32 and ``(N,)`` integer arrays.
        epochs, batch_size, lr, weight_decay: the recipe (the TensorFlow twin's
            defaults are the same).
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
    device = _device_of(model)
    torch.manual_seed(seed)
    y = torch.as_tensor(y, device=device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay, eps=1e-8
    )
    total = epochs * -(-len(x) // batch_size)
    history = {"loss": [], "valid_accuracy": []}
    start, step = time.perf_counter(), 0
    bar = tqdm(range(epochs), desc="torch ViT", disable=not progress, mininterval=5.0)
    for epoch in bar:
        model.train()
        losses = []
        rng = np.random.default_rng([seed, epoch, 1])
        for idx in vit.batches(len(x), batch_size, epoch, seed):
            for group in opt.param_groups:
                group["lr"] = vit.learning_rate(step, total, lr)
            xb = vit.random_shift(x[idx], shift, rng) if shift else x[idx]
            xb = torch.as_tensor(xb, device=device)
            loss = F.cross_entropy(model(xb), y[torch.as_tensor(idx, device=device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            step += 1
        history["loss"].append(float(torch.stack(losses).mean()))
        if valid:
            history["valid_accuracy"].append(evaluate(model, *valid))
        bar.set_postfix(
            refresh=False,
            loss=f"{history['loss'][-1]:.3f}",
            **({"valid": f"{history['valid_accuracy'][-1]:.3f}"} if valid else {}),
        )
    model.eval()
    history["seconds"] = time.perf_counter() - start
    return history


@torch.no_grad()
def predict(model, images, batch_size=512):
    """Logits ``(N, num_classes)`` as a NumPy array, computed in eval mode (no
    dropout); ``(0, num_classes)`` for no image."""
    _check_model(model)
    batch_size = _checks.positive_int("batch_size", batch_size)
    if vit.check_images(model.config, images)[0] == 0:
        return np.zeros((0, model.config["num_classes"]), np.float32)
    model.eval()
    device = _device_of(model)
    out = [
        model(
            torch.as_tensor(
                np.asarray(images[i : i + batch_size], np.float32), device=device
            )
        ).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy()


def evaluate(model, images, labels):
    """Accuracy (a float in ``[0, 1]``) of the arg-max prediction; ``ValueError`` for
    no image (see :func:`attnbook.vit.check_evaluation`)."""
    _check_model(model)
    labels = vit.check_evaluation(model.config, images, labels)
    return float((predict(model, images).argmax(axis=1) == labels).mean())
