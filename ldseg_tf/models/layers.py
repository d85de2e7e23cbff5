"""Building blocks shared by the four LDSeg components, for 2D and 3D inputs.

Every block takes the number of spatial dimensions (`dims`, 2 or 3) as a
constructor argument instead of existing in a 2D and a 3D copy.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

_PACKAGE = "ldseg_tf"


def _check_dims(dims: int) -> int:
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3; got {dims}.")
    return dims


def conv(dims: int, filters: int, kernel_size: int = 3, strides: int = 1, **kwargs):
    """`Conv2D` or `Conv3D` with "same" padding."""
    cls = layers.Conv2D if _check_dims(dims) == 2 else layers.Conv3D
    return cls(filters, kernel_size, strides=strides, padding="same", **kwargs)


def conv_transpose(dims: int, filters: int, kernel_size: int = 3, strides: int = 2, **kwargs):
    """`Conv2DTranspose` or `Conv3DTranspose` with "same" padding."""
    cls = layers.Conv2DTranspose if _check_dims(dims) == 2 else layers.Conv3DTranspose
    return cls(filters, kernel_size, strides=strides, padding="same", **kwargs)


def max_pool(dims: int, **kwargs):
    cls = layers.MaxPooling2D if _check_dims(dims) == 2 else layers.MaxPooling3D
    return cls(pool_size=2, **kwargs)


def up_sample(dims: int, **kwargs):
    cls = layers.UpSampling2D if _check_dims(dims) == 2 else layers.UpSampling3D
    return cls(size=2, **kwargs)


def group_norm(channels: int, groups: int, **kwargs):
    """GroupNormalization with the largest group count <= `groups` that divides
    `channels` (GroupNorm needs an exact division)."""
    return layers.GroupNormalization(groups=math.gcd(groups, channels), epsilon=1e-5, **kwargs)


# Relative guard of `standardize`: a fraction of the second moment, so that
# standardize(c * x) == standardize(x) for every c > 0 (an absolute epsilon
# dominates once the variance falls below it, e.g. sqrt(alpha-bar_T)-scaled
# latents of variance ~1e-9 in the sampler); _TINY only keeps all-zero input
# finite.
_STD_EPS = 1e-6
_TINY = 1e-30


def standardize(x):
    """Per-sample standardization over all non-batch axes, scale-free.

    (x - mean) / sqrt(var + 1e-6 * mean(x^2)): mean 0 and standard deviation
    1 - O(1e-6) for every sample whose values are not all equal (those give
    zeros), whatever the scale of x. Computed in float32; `(B, ...)` in,
    float32 `(B, ...)` out.
    """
    x = ops.cast(x, "float32")
    axes = tuple(range(1, len(x.shape)))
    centred = x - ops.mean(x, axis=axes, keepdims=True)
    var = ops.mean(ops.square(centred), axis=axes, keepdims=True)
    second_moment = ops.mean(ops.square(x), axis=axes, keepdims=True)
    return centred * ops.rsqrt(var + _STD_EPS * second_moment + _TINY)


class CompositeLayer(layers.Layer):
    """Base of the LDSeg components: a layer made only of sub-layers created in
    `__init__`, which build themselves on their first call.

    A layer without a `build` method makes Keras trace its whole `call` once
    only to build it, and once more for the output: every model construction
    would trace each component twice (half the build time of a model)."""

    def build(self, input_shape):
        pass


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Standardization(layers.Layer):
    """`standardize` as a layer, without weights: every sample of the output
    has mean 0 and standard deviation 1 over all positions and channels.
    Runs and returns float32 under every dtype policy."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, x):
        return standardize(x)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResidualBlock(layers.Layer):
    """Pre-activation residual block: GN-swish-conv-GN-swish-dropout-conv + shortcut.

    With `time_conditioned=True`, `call` also takes a time embedding
    `(B, E)` which is projected to `filters` and added between the two convs,
    as in DDPM.

    Input `(B, *spatial, C_in)`, output `(B, *spatial, filters)`.
    """

    def __init__(self, filters, dims=2, groups=8, dropout=0.0, time_conditioned=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.dims = _check_dims(dims)
        self.groups = groups
        self.dropout = dropout
        self.time_conditioned = time_conditioned

    def build(self, x_shape, time_embedding_shape=None):
        # Keras passes one `<arg>_shape` per tensor argument of `call`.
        input_shape = x_shape
        in_channels = input_shape[-1]
        self.norm1 = group_norm(in_channels, self.groups)
        self.conv1 = conv(self.dims, self.filters)
        self.norm2 = group_norm(self.filters, self.groups)
        self.drop = layers.Dropout(self.dropout)
        self.conv2 = conv(self.dims, self.filters)
        self.norm1.build(input_shape)
        self.conv1.build(input_shape)
        mid_shape = tuple(input_shape[:-1]) + (self.filters,)
        self.norm2.build(mid_shape)
        self.conv2.build(mid_shape)
        if self.time_conditioned:
            self.time_proj = layers.Dense(self.filters)
            if time_embedding_shape is None:
                raise ValueError("a time-conditioned ResidualBlock needs a time embedding.")
            self.time_proj.build(time_embedding_shape)
        self.shortcut = None
        if in_channels != self.filters:
            self.shortcut = conv(self.dims, self.filters, kernel_size=1)
            self.shortcut.build(input_shape)

    def call(self, x, time_embedding=None, training=None):
        h = self.conv1(ops.silu(self.norm1(x)))
        if self.time_conditioned:
            t = self.time_proj(ops.silu(time_embedding))
            h = h + ops.reshape(t, (-1,) + (1,) * self.dims + (self.filters,))
        h = self.conv2(self.drop(ops.silu(self.norm2(h)), training=training))
        skip = x if self.shortcut is None else self.shortcut(x)
        return skip + h

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            dims=self.dims,
            groups=self.groups,
            dropout=self.dropout,
            time_conditioned=self.time_conditioned,
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpatialAttention(layers.Layer):
    """Multi-head self-attention over all spatial positions, with a residual.

    Input and output `(B, *spatial, C)`; positions are flattened to a sequence of
    length prod(spatial), so memory grows with its square: use it at low
    resolution.
    """

    def __init__(self, num_heads=8, groups=8, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.groups = groups

    def build(self, input_shape):
        channels = input_shape[-1]
        self.norm = group_norm(channels, self.groups)
        self.norm.build(input_shape)
        self.attention = layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=max(channels // self.num_heads, 1)
        )
        seq_shape = (input_shape[0], None, channels)
        self.attention.build(seq_shape, seq_shape)

    def call(self, x):
        shape = ops.shape(x)
        channels = x.shape[-1]
        h = ops.reshape(self.norm(x), (shape[0], -1, channels))
        h = self.attention(h, h)
        return x + ops.reshape(h, shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, groups=self.groups)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SinusoidalTimeEmbedding(layers.Layer):
    """Transformer-style sinusoidal embedding of integer timesteps followed by a
    two-layer MLP of the same width, as in the keras-io DDPM example.

    Input `(B,)` int or float timesteps; output `(B, dim)`.
    """

    def __init__(self, dim=64, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.dense1 = layers.Dense(dim)
        self.dense2 = layers.Dense(dim)

    def build(self, input_shape):
        self.dense1.build((input_shape[0], self.dim))
        self.dense2.build((input_shape[0], self.dim))

    def call(self, t):
        half = self.dim // 2
        # Frequencies and the angle are computed in float32 even under a mixed
        # policy: float16 cannot represent t * freq for t near 1000 precisely.
        freqs = ops.exp(
            -math.log(10000.0) * ops.arange(half, dtype="float32") / float(max(half - 1, 1))
        )
        angles = ops.cast(ops.reshape(t, (-1, 1)), "float32") * freqs[None, :]
        emb = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)
        emb = ops.cast(emb, self.compute_dtype)
        return self.dense2(ops.silu(self.dense1(emb)))

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim)
        return config
