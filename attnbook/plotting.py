"""Figures the book draws again and again: attention heatmaps with token labels and pictures of masks.

Every function accepts NumPy arrays, torch tensors (on any device, with or without grad) or TensorFlow tensors, and
returns the matplotlib ``Axes`` or ``Figure`` it drew on, so a notebook can add to it or save it.
"""

from __future__ import annotations

import numpy as np

from . import _dispatch


def to_numpy(x):
    """A NumPy copy of an array of any of the three frameworks (bfloat16 becomes float32)."""
    fw = _dispatch.framework_of(x)
    if fw == "torch":
        x = x.detach().cpu()
        return (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
    if fw == "tensorflow":
        import tensorflow as tf

        return (tf.cast(x, tf.float32) if x.dtype == tf.bfloat16 else x).numpy()
    return np.asarray(x)


def _matrix(x, name):
    a = to_numpy(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (Lq, Lk) array, got shape {a.shape}; index batch and head first")
    return a


def _label_axes(ax, rows, cols, x_labels, y_labels):
    for labels, n, axis, what in ((x_labels, cols, "x", "x_labels"), (y_labels, rows, "y", "y_labels")):
        if labels is None:
            continue
        if len(labels) != n:
            raise ValueError(f"{what} has {len(labels)} entries for an axis of length {n}")
        getattr(ax, f"set_{axis}ticks")(range(n))
        getattr(ax, f"set_{axis}ticklabels")(labels, rotation=90 if axis == "x" else 0)


def heatmap(weights, x_labels=None, y_labels=None, *, ax=None, title=None, cmap="viridis", annotate=False,
            vmin=0.0, vmax=None, colorbar=True, xlabel="keys", ylabel="queries"):
    """Draw one ``(Lq, Lk)`` matrix of attention weights; rows are queries, columns keys.

    ``annotate=True`` writes each weight in its cell (for small matrices). Returns the ``Axes``.
    """
    import matplotlib.pyplot as plt

    a = _matrix(weights, "weights")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * a.shape[1] + 2.2, 0.45 * a.shape[0] + 1.4), constrained_layout=True)
    im = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    _label_axes(ax, *a.shape, x_labels, y_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if annotate:
        hi = np.nanmax(a) if a.size else 0
        for (i, j), value in np.ndenumerate(a):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if value > 0.6 * hi else "white")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def heatmaps(weights, titles=None, *, ncols=4, x_labels=None, y_labels=None, cmap="viridis", size=2.6,
             suptitle=None):
    """Draw a stack of matrices ``(N, Lq, Lk)`` (for example the heads of one layer) in a grid. Returns the Figure."""
    import matplotlib.pyplot as plt

    stack = to_numpy(weights)
    if stack.ndim != 3:
        raise ValueError(f"weights must be a 3-D (N, Lq, Lk) stack, got shape {stack.shape}")
    n = stack.shape[0]
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries for {n} matrices")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False,
                             constrained_layout=True)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        heatmap(stack[i], x_labels, y_labels, ax=ax, cmap=cmap, colorbar=False,
                title=None if titles is None else titles[i], xlabel="", ylabel="")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_mask(mask, x_labels=None, y_labels=None, *, ax=None, title=None):
    """Picture a boolean mask: filled cells may attend (True), empty cells are masked (False). Returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    m = _matrix(mask, "mask")
    if m.dtype != bool:
        raise TypeError(f"mask must be boolean (True = may attend), got dtype {m.dtype}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.4 * m.shape[1] + 1.6, 0.4 * m.shape[0] + 1.2), constrained_layout=True)
    ax.imshow(m, cmap=ListedColormap(["#f2f2f2", "#3b6ea5"]), vmin=0, vmax=1, aspect="auto",
              interpolation="nearest")
    ax.set_xticks(np.arange(-0.5, m.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, m.shape[0]), minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    _label_axes(ax, *m.shape, x_labels, y_labels)
    ax.set_xlabel("keys")
    ax.set_ylabel("queries")
    if title:
        ax.set_title(title)
    return ax
