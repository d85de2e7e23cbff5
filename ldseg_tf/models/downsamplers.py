"""Parameter-free stand-ins for the label and image encoders (ablations of the
paper's Table V).

Both map to the latent's shape `(B, *spatial / 2**downsamplings, latent_channels)`
and end in the per-sample standardization used by the learned label encoder, so
the diffusion process (unit-variance latents, the sampler's x0 projection) is
unchanged. Neither has any weight: training cannot change them.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from ldseg_tf.models.layers import _check_dims

_EPS = 1e-6


def _standardize(x):
    """Per-sample standardization over all non-batch axes (as
    `ldseg_tf.models.layers.standardization`, epsilon 1e-6)."""
    axes = tuple(range(1, len(x.shape)))
    mean = ops.mean(x, axis=axes, keepdims=True)
    var = ops.mean(ops.square(x - mean), axis=axes, keepdims=True)
    return (x - mean) / ops.sqrt(var + _EPS)


@keras.saving.register_keras_serializable(package="ldseg_tf")
class LabelDownsampler(layers.Layer):
    """Label "encoder" of the ablation: nearest-neighbour down-sampling.

    The one-hot (or soft) labels are turned into a label map (argmax), which is
    down-sampled by `factor = 2**downsamplings` along every spatial axis by
    taking the pixel at offset `factor // 2` of every `factor`-block (nearest
    neighbour to the block centre), cast to float, repeated to `latent_channels`
    and standardized per sample (an all-background label gives zeros).

    Input `(B, *spatial, num_classes)`; output `(B, *spatial / factor,
    latent_channels)` float32.
    """

    def __init__(self, downsamplings=4, latent_channels=1, dims=2, **kwargs):
        super().__init__(**kwargs)
        self.downsamplings = int(downsamplings)
        self.latent_channels = int(latent_channels)
        self.dims = _check_dims(dims)

    def call(self, labels, training=None):
        f = 2**self.downsamplings
        x = ops.cast(ops.argmax(labels, axis=-1), "float32")
        o = f // 2
        if self.dims == 2:
            x = x[:, o::f, o::f]
        else:
            x = x[:, o::f, o::f, o::f]
        x = ops.repeat(ops.expand_dims(x, -1), self.latent_channels, axis=-1)
        return _standardize(x)

    def get_config(self):
        config = super().get_config()
        config.update(downsamplings=self.downsamplings, latent_channels=self.latent_channels,
                      dims=self.dims)
        return config


@keras.saving.register_keras_serializable(package="ldseg_tf")
class ImageDownsampler(layers.Layer):
    """Image "encoder" of the ablation: area down-sampling.

    The image is averaged over its channels, average-pooled by
    `factor = 2**downsamplings` (area interpolation), repeated to
    `latent_channels` and standardized per sample.

    Input `(B, *spatial, C)`; output `(B, *spatial / factor, latent_channels)`.
    """

    def __init__(self, downsamplings=4, latent_channels=1, dims=2, **kwargs):
        super().__init__(**kwargs)
        self.downsamplings = int(downsamplings)
        self.latent_channels = int(latent_channels)
        self.dims = _check_dims(dims)
        f = 2**self.downsamplings
        pool = layers.AveragePooling2D if self.dims == 2 else layers.AveragePooling3D
        self.pool = pool(pool_size=f, strides=f, padding="valid", name="area")

    def call(self, images, training=None):
        x = ops.mean(ops.cast(images, "float32"), axis=-1, keepdims=True)
        x = self.pool(x)
        x = ops.repeat(x, self.latent_channels, axis=-1)
        return _standardize(x)

    def get_config(self):
        config = super().get_config()
        config.update(downsamplings=self.downsamplings, latent_channels=self.latent_channels,
                      dims=self.dims)
        return config
