"""Sliding-window inference: a model trained on patches segments an image of any
size, 2D or 3D, tile by tile, in TensorFlow ops that run in a graph (the numpy
`segment_tiled` and the exported ``segment_tiled`` signature share them).

- **Tiles**: along every axis, `ceil((size - patch) / (patch * (1 - overlap))) + 1`
  windows of the patch size, the first at 0 and the last flush with the end,
  evenly spaced in between (nnU-Net's rule). An axis shorter than the patch is
  padded with zeros on both sides to the patch (zero is also what patch
  training pads with) and the outputs are cropped back.
- **Weights**: "gaussian" (nnU-Net): a separable Gaussian centred on the patch,
  sigma = patch / 8 per axis, scaled to a maximum of 1 and clipped below at
  `WEIGHT_FLOOR` so that a pixel seen only by tile corners still gets a
  well-defined average. Predictions near a tile's border, where the model saw
  little context, count less. "constant": every pixel of a tile counts 1.
- **Probabilities**: the weighted mean over the tiles covering a pixel,
  `sum_i w_i p_i / sum_i w_i`; labels are their argmax.
- **SD**: the weighted mean of the *variances*, `sqrt(sum_i w_i s_i^2 / sum_i
  w_i)`. Chosen over the mixture (law of total variance) because the mixture
  adds the tiles' disagreement about the mean, which exists only where tiles
  overlap: the map would show the tile grid, and a deterministic model (SD 0)
  would get an SD from the geometry alone. The weighted mean of variances is
  the tile's own SD wherever one tile dominates, and an upper bound of the SD
  of the stitched samples (for any correlation between tiles,
  `Var(sum a_i X_i) <= (sum a_i s_i)^2 <= sum a_i s_i^2` with `sum a_i = 1`).

Each tile goes through `segment_fn` like an image of a batch, so a model whose
noise depends only on the seed (`SegmentationModel.segment_graph`) gives every
tile the same, position-independent noise: the result does not depend on the
batch or on `tile_batch_size` (up to float32 rounding).
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np
import tensorflow as tf

WEIGHTINGS = ("gaussian", "constant")
#: Smallest Gaussian weight (relative to the centre's 1).
WEIGHT_FLOOR = 1e-4


def tile_weights(patch: Sequence[int], weighting: str = "gaussian",
                 sigma_scale: float = 1.0 / 8) -> np.ndarray:
    """float32 `patch`-shaped weights of one tile (see the module docstring)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}; got {weighting!r}.")
    patch = tuple(int(p) for p in patch)
    if weighting == "constant":
        return np.ones(patch, np.float32)
    w = np.ones((), np.float64)
    for p in patch:
        x = np.arange(p) - (p - 1) / 2.0
        w = np.multiply.outer(w, np.exp(-0.5 * (x / (p * sigma_scale)) ** 2))
    w = w / w.max()
    return np.maximum(w, WEIGHT_FLOOR).astype(np.float32)


def tile_starts(size, patch: int, overlap) -> tf.Tensor:
    """Start offsets int32 `(n,)` of windows of length `patch` covering `[0, size)`.

    Args:
        size: int scalar (tensor) >= `patch`.
        patch: python int.
        overlap: float scalar (tensor) in [0, 1): the fraction of a window shared
            with the next one (at least; the windows are spread evenly).
    """
    size = tf.cast(size, tf.float32)
    stride = tf.maximum(float(patch) * (1.0 - tf.cast(overlap, tf.float32)), 1.0)
    room = size - float(patch)
    n = tf.cast(tf.math.ceil(room / stride), tf.int32) + 1
    step = tf.math.divide_no_nan(room, tf.cast(n - 1, tf.float32))
    return tf.cast(tf.round(tf.range(n, dtype=tf.float32) * step), tf.int32)


def tile_grid(spatial_size, patch: Sequence[int], overlap) -> tf.Tensor:
    """All tile starts int32 `(N, dims)` (row-major over the axes) of a padded
    image of spatial size `spatial_size` (int `(dims,)`, each >= the patch)."""
    axes = [tile_starts(spatial_size[i], p, overlap) for i, p in enumerate(patch)]
    mesh = tf.meshgrid(*axes, indexing="ij")
    return tf.reshape(tf.stack(mesh, axis=-1), [-1, len(patch)])


def _local_grid(patch: Sequence[int]) -> tf.Tensor:
    """int32 `(*patch, dims)`: the offsets of every pixel of a tile."""
    mesh = np.meshgrid(*[np.arange(p) for p in patch], indexing="ij")
    return tf.constant(np.stack(mesh, axis=-1), tf.int32)


def pad_to_patch(images, patch: Sequence[int]):
    """Pads the spatial axes of `(B, *spatial, C)` shorter than `patch` with zeros,
    evenly on both sides. Returns `(padded, before int32 (dims,), size int32
    (dims,))`: the offset and size of the original inside the padded image."""
    dims = len(patch)
    size = tf.shape(images)[1:dims + 1]
    missing = tf.maximum(tf.constant(patch, tf.int32) - size, 0)
    before = missing // 2
    pads = tf.concat([[[0, 0]], tf.stack([before, missing - before], axis=1), [[0, 0]]], 0)
    return tf.pad(images, pads), before, size


def sliding_window(segment_fn: Callable[[tf.Tensor], Dict[str, tf.Tensor]], images,
                   patch: Sequence[int], num_classes: int, overlap=0.5,
                   weighting: str = "gaussian", tile_batch_size: int = 4
                   ) -> Dict[str, tf.Tensor]:
    """Segments `images` tile by tile and stitches the tiles.

    Args:
        segment_fn: `(tiles float32 (N, *patch, C)) -> {"probs": (N, *patch, K),
            "std": (N, *patch)}`, e.g. a model's `segment_graph` with its
            sampling arguments bound.
        images: float32 `(B, *spatial, C)`, any spatial size (>= 1).
        patch: the tile's spatial shape (python ints).
        num_classes: K.
        overlap: float scalar (tensor) in [0, 1).
        weighting: "gaussian" or "constant" (python string).
        tile_batch_size: tiles per model call (python int); each call segments
            `tile_batch_size * B` tiles, which bounds the memory.

    Returns:
        dict: `labels` int32 `(B, *spatial)`, `probs` float32 `(B, *spatial, K)`,
        `std` float32 `(B, *spatial)`.
    """
    patch = tuple(int(p) for p in patch)
    dims, tb = len(patch), int(tile_batch_size)
    if tb < 1:
        raise ValueError(f"tile_batch_size must be >= 1; got {tile_batch_size}.")
    weights = tf.constant(tile_weights(patch, weighting))
    padded, before, size = pad_to_patch(tf.cast(images, tf.float32), patch)
    # Spatial axes first, so that gather_nd / scatter_nd address pixels directly.
    perm = list(range(1, dims + 1)) + [0, dims + 1]
    canvas = tf.transpose(padded, perm)
    canvas_size = tf.shape(canvas)[:dims]
    batch = tf.shape(canvas)[dims]
    starts = tile_grid(canvas_size, patch, overlap)
    n = tf.shape(starts)[0]
    rounds = (n + tb - 1) // tb
    # The last round is filled up with copies of the last tile, weighted 0.
    starts = tf.concat([starts, tf.repeat(starts[-1:], rounds * tb - n, axis=0)], 0)
    active = tf.cast(tf.range(rounds * tb) < n, tf.float32)
    local = _local_grid(patch)
    sum_w = tf.zeros(canvas_size, tf.float32)

    def one_round(i, acc_p, acc_v, acc_w):
        first = i * tb
        idx = tf.reshape(starts[first:first + tb], [tb] + [1] * dims + [dims]) + local
        tiles = tf.gather_nd(canvas, idx)  # (tb, *patch, B, C): idx is (tb, *patch, dims)
        tiles = tf.transpose(tiles, [0, dims + 1] + list(range(1, dims + 1)) + [dims + 2])
        flat = tf.reshape(tiles, tf.concat([[-1], patch, tf.shape(tiles)[-1:]], 0))
        out = segment_fn(flat)
        probs = tf.reshape(tf.cast(out["probs"], tf.float32),
                           tf.concat([[tb, batch], patch, [num_classes]], 0))
        var = tf.reshape(tf.square(tf.cast(out["std"], tf.float32)),
                         tf.concat([[tb, batch], patch], 0))
        w = weights[None] * tf.reshape(active[first:first + tb], [tb] + [1] * dims)
        back = [0] + list(range(2, dims + 2)) + [1]
        probs = tf.transpose(probs, back + [dims + 2]) * w[..., None, None]
        var = tf.transpose(var, back) * w[..., None]
        return (i + 1, tf.tensor_scatter_nd_add(acc_p, idx, probs),
                tf.tensor_scatter_nd_add(acc_v, idx, var),
                tf.tensor_scatter_nd_add(acc_w, idx, w))

    acc_p = tf.zeros(tf.concat([canvas_size, [batch, num_classes]], 0), tf.float32)
    acc_v = tf.zeros(tf.concat([canvas_size, [batch]], 0), tf.float32)
    _, acc_p, acc_v, sum_w = tf.while_loop(
        lambda i, *_: i < rounds, one_round, (tf.constant(0), acc_p, acc_v, sum_w))
    return _finish(acc_p, acc_v, sum_w, before, size, num_classes)


def _finish(acc_p, acc_v, sum_w, before, size, num_classes):
    """Normalizes the accumulators, restores the batch-first layout and crops
    the padding away."""
    dims = sum_w.shape.rank
    probs = acc_p / sum_w[..., None, None]
    std = tf.sqrt(tf.maximum(acc_v / sum_w[..., None], 0.0))
    probs = tf.transpose(probs, [dims] + list(range(dims)) + [dims + 1])
    std = tf.transpose(std, [dims] + list(range(dims)))
    begin = tf.concat([[0], before], 0)
    probs = tf.slice(probs, tf.concat([begin, [0]], 0), tf.concat([[-1], size, [-1]], 0))
    probs = tf.ensure_shape(probs, [None] * (dims + 1) + [num_classes])
    std = tf.slice(std, begin, tf.concat([[-1], size], 0))
    return {"labels": tf.argmax(probs, axis=-1, output_type=tf.int32), "probs": probs,
            "std": std}
