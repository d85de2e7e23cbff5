"""Patch training: random crops of full-resolution examples (2D and 3D), for
`make_dataset(..., patch_size=...)`.

An image smaller than the patch along an axis is padded evenly on both sides:
the image with zeros (after normalization; the same value sliding-window
inference pads with), the mask with `IGNORE_LABEL`, which the losses
(`ldseg_tf.losses.segmentation_losses`) and the streaming metrics skip, so
padding never counts as background.

Foreground oversampling: each patch is, with probability
`foreground_fraction` (default 1/3, nnU-Net's share), centred on a voxel drawn
uniformly from the example's foreground (any label > 0); otherwise, or when
the example has no foreground, its position is uniform. nnU-Net forces the
last third of every batch instead; a per-example draw gives the same share in
expectation and keeps the crop a function of the example and its seed alone
(no batch state in `tf.data`). Thin structures (DRIVE's vessels: ~10% of the
pixels, knee cartilage) are exactly where uniform crops see too few positives.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from ldseg_tf.config import IGNORE_LABEL

DEFAULT_FOREGROUND_FRACTION = 1.0 / 3.0


def pad_example(image, mask, patch: Sequence[int]):
    """Pads `image` `(*spatial, C)` with zeros and `mask` `(*spatial)` with
    `IGNORE_LABEL` evenly on both sides up to `patch` where they are smaller."""
    dims = len(patch)
    size = tf.shape(mask)[:dims]
    missing = tf.maximum(tf.constant(list(patch), tf.int32) - size, 0)
    pads = tf.stack([missing // 2, missing - missing // 2], axis=1)
    image = tf.pad(image, tf.concat([pads, [[0, 0]]], 0))
    mask = tf.pad(mask, pads, constant_values=IGNORE_LABEL)
    return image, mask


def crop_start(mask, patch: Sequence[int], seed, foreground_fraction: float):
    """int32 `(dims,)` start of a random patch in `mask` (at least the patch's
    size), centred on a random foreground voxel with probability
    `foreground_fraction` (see the module docstring). `seed`: int (2,)."""
    dims = len(patch)
    patch_t = tf.constant(list(patch), tf.int32)
    room = tf.shape(mask)[:dims] - patch_t
    u = tf.random.stateless_uniform([dims + 2], seed)
    uniform = tf.minimum(tf.cast(u[:dims] * tf.cast(room + 1, tf.float32), tf.int32), room)
    foreground = tf.cast(tf.where(mask > 0), tf.int32)  # (K, dims)
    count = tf.shape(foreground)[0]
    pick = tf.minimum(tf.cast(u[dims] * tf.cast(count, tf.float32), tf.int32),
                      tf.maximum(count - 1, 0))
    centre = tf.gather(tf.concat([foreground, tf.zeros([1, dims], tf.int32)], 0), pick)
    centred = tf.clip_by_value(centre - patch_t // 2, 0, room)
    use_foreground = tf.logical_and(u[dims + 1] < foreground_fraction, count > 0)
    return tf.where(use_foreground, centred, uniform)


def random_patch(image, mask, patch: Sequence[int], seed,
                 foreground_fraction: float = DEFAULT_FOREGROUND_FRACTION):
    """One random patch of a full-resolution example.

    Args:
        image: float32 `(*spatial, C)` (2D or 3D), normalized.
        mask: int32 `(*spatial)`.
        patch: the patch's spatial shape (python ints).
        seed: int32/int64 `(2,)` stateless seed; the patch is a pure function of
            `(image, mask, seed)`.
        foreground_fraction: probability of a foreground-centred patch.

    Returns:
        `(image (*patch, C), mask (*patch))`, padding marked `IGNORE_LABEL`.
    """
    patch = tuple(int(p) for p in patch)
    image, mask = pad_example(image, mask, patch)
    start = crop_start(mask, patch, seed, foreground_fraction)
    image = tf.slice(image, tf.concat([start, [0]], 0), list(patch) + [-1])
    mask = tf.slice(mask, start, list(patch))
    return (tf.ensure_shape(image, patch + (image.shape[-1],)), tf.ensure_shape(mask, patch))
