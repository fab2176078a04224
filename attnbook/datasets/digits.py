"""scikit-learn's bundled 8x8 handwritten digits, split and cut into patches for a
Vision Transformer.

The 1,797 images of ``sklearn.datasets.load_digits`` ship inside scikit-learn
(nothing is downloaded). Each is an 8x8 grid of grey levels 0..16. :func:`load`
splits them into stratified, seeded train / validation / test sets and normalises
them with statistics of the training set only; :func:`patchify` cuts images into
square patches, the "tokens" a Vision Transformer attends over, and
:func:`unpatchify` glues them back.

Patch order (used by the models in :mod:`attnbook.vit` and by every figure of the book):
patches are numbered in reading order, left to right along the top row of patches, then
the next row, and so on, so patch ``n`` covers rows ``(n // (W/p)) * p ...`` and columns
``(n % (W/p)) * p ...``. Inside a patch the ``p*p`` pixels are flattened in the same
reading (row-major) order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks, _spec

__all__ = ["DigitsSplit", "load", "patchify", "unpatchify", "patch_grid", "CLASSES"]

#: Class ``k`` is the digit ``k``.
CLASSES = tuple(str(k) for k in range(10))


@dataclass(frozen=True)
class DigitsSplit:
    """Train / validation / test arrays of the digits data set.

    Images are float32 ``(N, 8, 8)``, normalised as ``(pixel / 16 - mean) / std``
    with the scalar ``mean`` and ``std`` of the training images; labels are int64
    ``(N,)`` in ``0..9``. ``*_index`` are the positions of each image in
    ``sklearn.datasets.load_digits()``, so the three splits are provably disjoint.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    valid_index: np.ndarray
    test_index: np.ndarray
    mean: float
    std: float

    def denormalise(self, images):
        """Back to grey levels in ``[0, 1]`` (for display): the inverse of the
        normalisation."""
        return np.asarray(images) * self.std + self.mean


def _stratified_split(labels, fraction, rng):
    """Indices ``(rest, taken)``: ``taken`` holds ``round(fraction * n_k)`` random
    items of every class ``k``."""
    taken = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        taken.append(rng.permutation(idx)[: int(round(fraction * idx.size))])
    taken = np.sort(np.concatenate(taken))
    rest = np.setdiff1d(np.arange(labels.size), taken)
    return rest, taken


def load(seed=0, valid_fraction=0.15, test_fraction=0.2):
    """The digits, split per class so that every split has the class proportions of
    the whole set.

    Args:
        seed: seed of the NumPy generator that draws the split (the same seed gives
            the same split everywhere).
        valid_fraction: share of each class that goes to the validation set, in ``[0,
            1)``.
        test_fraction: share of each class that goes to the test set, in ``(0, 1)``.

    Returns:
        A :class:`DigitsSplit`. With the defaults: 1,169 training, 269 validation and
        359 test images.
    """
    from sklearn.datasets import load_digits

    seed = _spec.check_integer("seed", seed)
    valid_fraction = _spec.check_real(
        "valid_fraction", valid_fraction, "a number in [0, 1)"
    )
    test_fraction = _spec.check_real(
        "test_fraction", test_fraction, "a number in (0, 1)"
    )
    if (
        not 0 < test_fraction < 1
        or not 0 <= valid_fraction < 1
        or valid_fraction + test_fraction >= 1
    ):
        raise ValueError(
            f"need 0 < test_fraction, 0 <= valid_fraction and a sum below "
            f"1, got test_fraction = "
            f"{test_fraction}, valid_fraction = {valid_fraction}"
        )
    digits = load_digits()
    # (1797, 8, 8), grey levels in [0, 1]
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    rest, test = _stratified_split(labels, test_fraction, rng)
    # The validation share is of the whole set, so take it from `rest` with the fraction
    # rescaled.
    sub_train, sub_valid = _stratified_split(
        labels[rest], valid_fraction / (1 - test_fraction), rng
    )
    train, valid = rest[sub_train], rest[sub_valid]
    # A share that rounds to no image in every class leaves a split empty: its
    # statistics would be NaN.
    for name, split, fraction in (
        ("test", test, "test_fraction"),
        ("training", train, "1 - valid_fraction - test_fraction"),
    ):
        if not split.size:
            raise ValueError(
                f"the {name} set would be empty ({fraction} rounds to no "
                f"image of any class); use "
                "fractions that leave each split some images"
            )
    # Statistics of the training images only: the test set must not leak into the
    # preprocessing.
    mean = float(images[train].mean())
    std = float(images[train].std())

    def norm(i):
        return ((images[i] - mean) / std).astype(np.float32)

    return DigitsSplit(
        norm(train),
        labels[train],
        norm(valid),
        labels[valid],
        norm(test),
        labels[test],
        train,
        valid,
        test,
        mean,
        std,
    )


def _check_patch(height, width, patch):
    patch = _checks.positive_int("patch", patch)
    if height % patch or width % patch:
        raise ValueError(f"patch = {patch} must divide the image size {height}x{width}")


def patchify(images, patch):
    """Cut images into non-overlapping ``patch x patch`` squares, in reading order.

    Args:
        images: ``(..., H, W)`` array; ``patch`` must divide ``H`` and ``W``.
        patch: side ``p`` of a square patch.

    Returns:
        ``(..., N, p*p)`` with ``N = (H/p) * (W/p)``: row ``n`` is patch ``n``
        (reading order, see the module docstring), its pixels flattened row by row.
    """
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(
            f"images must have shape (..., H, W), got shape {images.shape}"
        )
    *lead, height, width = images.shape
    _check_patch(height, width, patch)
    gh, gw = height // patch, width // patch
    x = images.reshape(*lead, gh, patch, gw, patch)  # (..., gh, p, gw, p)
    x = np.moveaxis(x, -3, -2)  # (..., gh, gw, p, p)
    return x.reshape(*lead, gh * gw, patch * patch)


def unpatchify(patches, patch, height=None, width=None):
    """The inverse of :func:`patchify`: ``(..., N, p*p)`` patches back to ``(..., H,
    W)`` images.

    ``height`` and ``width`` default to a square image (``N`` must then be a perfect
    square); give one of them for a rectangular image.
    """
    patches = np.asarray(patches)
    patch = _checks.positive_int("patch", patch)
    if patches.ndim < 2:
        raise ValueError(
            f"patches must have shape (..., N, p*p), got shape {patches.shape}"
        )
    height = None if height is None else _checks.positive_int("height", height)
    width = None if width is None else _checks.positive_int("width", width)
    *lead, n, pp = patches.shape
    if pp != patch * patch:
        raise ValueError(
            f"patches have {pp} pixels each, expected patch * patch = {patch * patch}"
        )
    if height is None and width is None:
        side = int(round(np.sqrt(n)))
        if side * side != n:
            raise ValueError(
                f"{n} patches do not form a square grid: give height or width"
            )
        height = width = side * patch
    elif height is None:
        height = n * patch * patch // width
    elif width is None:
        width = n * patch * patch // height
    _check_patch(height, width, patch)
    gh, gw = height // patch, width // patch
    if gh * gw != n:
        raise ValueError(
            f"{n} patches cannot fill a {height}x{width} image with patch = {patch}"
        )
    x = patches.reshape(*lead, gh, gw, patch, patch)
    x = np.moveaxis(x, -2, -3)  # (..., gh, p, gw, p)
    return x.reshape(*lead, height, width)


def patch_grid(height, width, patch):
    """``(N, 2)`` integer array: the (row, column) of the top-left pixel of each
    patch, in patch order."""
    height, width = (
        _checks.positive_int("height", height),
        _checks.positive_int("width", width),
    )
    _check_patch(height, width, patch)
    rows, cols = np.divmod(
        np.arange((height // patch) * (width // patch)), width // patch
    )
    return np.stack([rows * patch, cols * patch], axis=1)
