"""Pixel (un)shuffle: lossless 2x resampling by moving pixels to channels.

Used by the label encoder and decoder when `config.label_resampling` is
"pixel_shuffle": the full-resolution level then costs one reshape instead of a
residual block at full resolution (the most expensive part of the `fine`
preset's training step on a CPU), with no information lost: a 2x2 (2x2x2)
block of pixels becomes 4 (8) channels and back.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from ldseg_tf.models.layers import _check_dims


def space_to_depth(x, dims: int, block: int = 2):
    """`(B, *spatial, C)` -> `(B, *spatial / block, C * block**dims)`.

    Channel index of the output: `(offset_0, ..., offset_{dims-1}, c)` in
    row-major order, as `tf.nn.space_to_depth` for 2D."""
    shape = ops.shape(x)
    spatial = [s // block for s in shape[1:1 + dims]]
    channels = x.shape[-1]
    split = [shape[0]]
    for s in spatial:
        split += [s, block]
    x = ops.reshape(x, split + [channels])
    perm = [0] + [1 + 2 * i for i in range(dims)] + [2 + 2 * i for i in range(dims)]
    x = ops.transpose(x, perm + [1 + 2 * dims])
    return ops.reshape(x, [shape[0]] + spatial + [channels * block**dims])


def depth_to_space(x, dims: int, block: int = 2):
    """Inverse of `space_to_depth`: `(B, *spatial, C * block**dims)` ->
    `(B, *spatial * block, C)`."""
    shape = ops.shape(x)
    spatial = list(shape[1:1 + dims])
    channels = x.shape[-1] // block**dims
    x = ops.reshape(x, [shape[0]] + spatial + [block] * dims + [channels])
    perm = [0]
    for i in range(dims):
        perm += [1 + i, 1 + dims + i]
    x = ops.transpose(x, perm + [1 + 2 * dims])
    return ops.reshape(x, [shape[0]] + [s * block for s in spatial] + [channels])


@keras.saving.register_keras_serializable(package="ldseg_tf")
class PixelUnshuffle(layers.Layer):
    """`space_to_depth` as a layer: `(B, *spatial, C)` -> `(B, *spatial/2, C*2**dims)`."""

    def __init__(self, dims=2, **kwargs):
        super().__init__(**kwargs)
        self.dims = _check_dims(dims)

    def call(self, x):
        return space_to_depth(x, self.dims)

    def compute_output_shape(self, input_shape):
        spatial = [None if s is None else s // 2 for s in input_shape[1:-1]]
        return (input_shape[0], *spatial, input_shape[-1] * 2**self.dims)

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


@keras.saving.register_keras_serializable(package="ldseg_tf")
class PixelShuffle(layers.Layer):
    """`depth_to_space` as a layer: `(B, *spatial, C*2**dims)` -> `(B, *spatial*2, C)`."""

    def __init__(self, dims=2, **kwargs):
        super().__init__(**kwargs)
        self.dims = _check_dims(dims)

    def call(self, x):
        return depth_to_space(x, self.dims)

    def compute_output_shape(self, input_shape):
        spatial = [None if s is None else s * 2 for s in input_shape[1:-1]]
        return (input_shape[0], *spatial, input_shape[-1] // 2**self.dims)

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}
