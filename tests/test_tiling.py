"""Full resolution (issue 18): sliding-window inference (`ldseg_tf.models.tiling`,
`segment_tiled`), patch training (`ldseg_tf.data.patches`) and the exported
``segment_tiled`` signature."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY
from ldseg_tf.config import LDSegConfig
from ldseg_tf.models.tiling import WEIGHT_FLOOR, sliding_window, tile_grid, tile_weights


def _pixelwise(tiles):
    """A stand-in model whose outputs are a function of each pixel alone, so a
    correct stitch returns that function of the whole image."""
    p1 = tf.sigmoid(tiles[..., 0])
    return {"probs": tf.stack([1.0 - p1, p1], axis=-1), "std": 0.1 * tf.abs(tiles[..., 0])}


@pytest.mark.parametrize("shape,patch,overlap,weighting", [
    ((2, 37, 53, 1), (16, 16), 0.5, "gaussian"),   # odd sizes, several tiles
    ((1, 16, 40, 1), (16, 16), 0.25, "constant"),  # one axis exactly the patch
    ((1, 7, 9, 1), (16, 16), 0.5, "gaussian"),     # smaller than the patch: padded
    ((1, 11, 21, 13, 1), (8, 8, 8), 0.5, "gaussian"),  # 3D, odd
])
def test_tiling_reassembles_exactly(shape, patch, overlap, weighting):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = sliding_window(_pixelwise, tf.constant(x), patch, 2, overlap, weighting, 3)
    expected = 1.0 / (1.0 + np.exp(-x[..., 0]))
    assert out["probs"].shape == shape[:-1] + (2,)
    np.testing.assert_allclose(out["probs"].numpy()[..., 1], expected, atol=1e-6)
    np.testing.assert_allclose(out["std"].numpy(), 0.1 * np.abs(x[..., 0]), atol=1e-6)
    np.testing.assert_array_equal(out["labels"].numpy(), (expected > 0.5).astype(np.int32))


@pytest.mark.parametrize("size,patch", [((50, 33), (16, 16)), ((9, 20, 17), (8, 8, 8))])
def test_gaussian_weights_normalize_to_one_at_borders(size, patch):
    w = tile_weights(patch)
    assert w.max() == 1.0 and w.min() >= WEIGHT_FLOOR
    # Weights fall off from the centre towards every border, symmetrically.
    np.testing.assert_allclose(w, np.flip(w), rtol=1e-6)
    assert w[(0,) * len(patch)] < 0.01 * w[tuple(p // 2 for p in patch)]
    # A model answering 1 everywhere: the normalized weights must sum to exactly
    # one at every pixel, borders and corners (covered by few tiles) included.
    ones = lambda t: {"probs": tf.ones(tf.concat([tf.shape(t)[:-1], [2]], 0)),  # noqa: E731
                      "std": tf.ones(tf.shape(t)[:-1])}
    out = sliding_window(ones, tf.zeros((1,) + size + (1,)), patch, 2, 0.5, "gaussian", 4)
    np.testing.assert_allclose(out["probs"].numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(out["std"].numpy(), 1.0, atol=1e-6)


def test_tile_grid_covers_with_the_overlap():
    starts = tile_grid(tf.constant([37, 16]), (16, 16), 0.5).numpy()
    rows, cols = sorted(set(starts[:, 0])), sorted(set(starts[:, 1]))
    assert rows[0] == 0 and rows[-1] == 37 - 16 and cols == [0]
    assert max(np.diff(rows)) <= 8 and len(starts) == len(rows)


@pytest.fixture(scope="module")
def tiny_ldseg():
    from ldseg_tf.models import LDSeg

    return LDSeg(LDSegConfig.preset("small", image_shape=(16, 16, 3), **TINY))


def test_tiled_is_batch_and_tile_batch_independent(tiny_ldseg):
    x = np.random.default_rng(1).uniform(size=(2, 29, 23, 3)).astype(np.float32)
    a = tiny_ldseg.segment_tiled(x, samples=2, seed=3, tile_batch_size=1)
    b = tiny_ldseg.segment_tiled(x[1], samples=2, seed=3, tile_batch_size=5)
    np.testing.assert_array_equal(a["labels"][1], b["labels"])
    np.testing.assert_allclose(a["probs"][1], b["probs"], atol=1e-5)
    np.testing.assert_allclose(a["std"][1], b["std"], atol=1e-5)
    assert a["std"].mean() > 0  # two samples really differ
    c = tiny_ldseg.segment_tiled(x[1], samples=2, seed=4, tile_batch_size=5)
    assert np.abs(c["probs"] - b["probs"]).max() > 1e-3  # the seed matters


def test_one_tile_equals_segment(tiny_ldseg):
    x = np.random.default_rng(2).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    a = tiny_ldseg.segment(x, samples=2, seed=5)
    b = tiny_ldseg.segment_tiled(x, samples=2, seed=5)
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-5)
    np.testing.assert_allclose(a["std"], b["std"], atol=1e-5)
