"""Per-image intensity normalization, shared by the input pipeline, `ldseg predict`
and the exported SavedModel so that training and serving see identical inputs."""

from __future__ import annotations

import tensorflow as tf

_EPS = 1e-6


def normalize_intensity(image, method: str = "minmax", spatial_dims: int | None = None):
    """Normalizes one image or a batch of images, each on its own.

    Args:
        image: `(H, W, C)` / `(D, H, W, C)` or a batch of them, any real or integer
            dtype.
        method: "minmax" maps each image (all channels together) to [0, 1];
            "zscore" to zero mean and unit variance; "none" only casts.
            A constant image maps to zeros.
        spatial_dims: 2 or 3. If given and `image` has rank `spatial_dims + 2`, the
            statistics are taken per batch element; by default a rank-3 input is
            one 2D image and a rank-4 input... is ambiguous, so pass it.

    Returns:
        float32 tensor of the same shape.
    """
    x = tf.cast(image, tf.float32)
    if method == "none":
        return x
    rank = x.shape.rank
    if spatial_dims is None:
        spatial_dims = rank - 1
    batched = rank == spatial_dims + 2
    if not batched and rank != spatial_dims + 1:
        raise ValueError(
            f"normalize_intensity: expected rank {spatial_dims + 1} or {spatial_dims + 2} "
            f"for {spatial_dims}D images, got shape {x.shape}."
        )
    axes = list(range(1 if batched else 0, rank))
    if method == "minmax":
        lo = tf.reduce_min(x, axis=axes, keepdims=True)
        hi = tf.reduce_max(x, axis=axes, keepdims=True)
        return tf.math.divide_no_nan(x - lo, tf.maximum(hi - lo, 0.0))
    if method == "zscore":
        mean, var = tf.nn.moments(x, axes=axes, keepdims=True)
        return (x - mean) / tf.sqrt(var + _EPS)
    raise ValueError(f"unknown normalization {method!r}; use 'minmax', 'zscore' or 'none'.")
