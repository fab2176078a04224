"""attnbook.datasets.digits: the split, the normalisation, and the patch order the
Vision Transformer relies on."""

import numpy as np
import pytest

from attnbook.datasets import digits


@pytest.fixture(scope="module")
def split():
    return digits.load(seed=0)


def test_split_sizes_and_disjointness(split):
    idx = [split.train_index, split.valid_index, split.test_index]
    assert [len(i) for i in idx] == [1169, 269, 359]
    allidx = np.concatenate(idx)
    # disjoint and together the whole data set
    assert len(np.unique(allidx)) == len(allidx) == 1797
    assert len(split.x_train) == len(split.y_train) == 1169
    assert split.x_test.shape == (359, 8, 8) and split.x_test.dtype == np.float32
    assert split.y_test.dtype == np.int64


def test_split_is_stratified(split):
    from sklearn.datasets import load_digits

    labels = load_digits().target
    whole = np.bincount(labels, minlength=10) / labels.size
    for y, idx in (
        (split.y_train, split.train_index),
        (split.y_valid, split.valid_index),
        (split.y_test, split.test_index),
    ):
        np.testing.assert_array_equal(y, labels[idx])  # labels travel with their images
        share = np.bincount(y, minlength=10) / y.size
        # each class within one image of its proportional share
        assert np.all(np.abs(share - whole) * y.size <= 1.0 + 1e-9), share


def test_split_is_seeded(split):
    again, other = digits.load(seed=0), digits.load(seed=1)
    np.testing.assert_array_equal(again.test_index, split.test_index)
    np.testing.assert_array_equal(again.x_train, split.x_train)
    assert not np.array_equal(other.test_index, split.test_index)


def test_normalisation_uses_training_statistics(split):
    assert abs(float(split.x_train.mean())) < 1e-5
    assert abs(float(split.x_train.std()) - 1.0) < 1e-5
    from sklearn.datasets import load_digits

    raw = load_digits().images[split.test_index] / 16.0
    np.testing.assert_allclose(split.denormalise(split.x_test), raw, atol=1e-6)


def test_bad_fractions_raise():
    with pytest.raises(ValueError):
        digits.load(test_fraction=0.0)
    with pytest.raises(ValueError):
        digits.load(valid_fraction=0.5, test_fraction=0.5)


def test_patch_order_is_reading_order():
    image = np.arange(64).reshape(8, 8)  # pixel value = row * 8 + column
    patches = digits.patchify(image[None], 2)
    assert patches.shape == (1, 16, 4)
    # top-left patch, pixels row by row
    np.testing.assert_array_equal(patches[0, 0], [0, 1, 8, 9])
    # its right-hand neighbour comes next
    np.testing.assert_array_equal(patches[0, 1], [2, 3, 10, 11])
    # then the second row of patches
    np.testing.assert_array_equal(patches[0, 4], [16, 17, 24, 25])
    np.testing.assert_array_equal(patches[0, 15], [54, 55, 62, 63])
    grid = digits.patch_grid(8, 8, 2)
    for n, (r, c) in enumerate(grid):  # patch_grid names each patch's top-left pixel
        assert patches[0, n, 0] == image[r, c]


@pytest.mark.parametrize("patch", [1, 2, 4, 8])
def test_patchify_round_trip(patch, split):
    x = split.x_train[:5]
    p = digits.patchify(x, patch)
    assert p.shape == (5, (8 // patch) ** 2, patch * patch)
    np.testing.assert_array_equal(digits.unpatchify(p, patch), x)
    # leading axes are optional
    np.testing.assert_array_equal(digits.patchify(x[0], patch), p[0])


def test_rectangular_images_and_errors():
    x = np.random.default_rng(0).standard_normal((2, 4, 6))
    p = digits.patchify(x, 2)
    assert p.shape == (2, 6, 4)
    np.testing.assert_array_equal(digits.unpatchify(p, 2, height=4), x)
    np.testing.assert_array_equal(digits.unpatchify(p, 2, width=6), x)
    with pytest.raises(ValueError, match="divide"):
        digits.patchify(x, 4)
    with pytest.raises(ValueError, match="square"):
        digits.unpatchify(p, 2)
    with pytest.raises(ValueError, match="positive integer"):
        digits.patchify(x, 0)
