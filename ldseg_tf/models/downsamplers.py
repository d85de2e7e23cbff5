"""Parameter-free stand-ins for the label and image encoders (ablations of the
paper's Table V).

Both map to the latent's shape `(B, *spatial / 2**downsamplings, latent_channels)`.
The image stand-in ends in the per-sample standardization of the learned
encoders. The label stand-in cannot: an empty mask (or objects smaller than the
stride) down-samples to a constant, which no standardization turns into a
latent of unit variance. It gives fixed codes in [-1, 1] instead (class k ->
-1 + 2k / (C - 1)), and LDSeg samples it with the pixel-diffusion x0 projection
(clip to [-1, 1]) rather than the standardization. Neither has any weight:
training cannot change them.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from ldseg_tf.models.layers import _check_dims, standardize


@keras.saving.register_keras_serializable(package="ldseg_tf")
class LabelDownsampler(layers.Layer):
    """Label "encoder" of the ablation: nearest-neighbour down-sampling.

    The one-hot (or soft) labels are turned into a label map (argmax), which is
    down-sampled by `factor = 2**downsamplings` along every spatial axis by
    taking the pixel at offset `factor // 2` of every `factor`-block (nearest
    neighbour to the block centre), coded as -1 + 2k / (C - 1) for class k of C
    (background -1, the last class +1: an empty mask is all -1) and repeated to
    `latent_channels`. Not standardized (see the module docstring).

    Input `(B, *spatial, num_classes)`; output `(B, *spatial / factor,
    latent_channels)` float32 in [-1, 1].
    """

    def __init__(self, downsamplings=4, latent_channels=1, dims=2, **kwargs):
        super().__init__(**kwargs)
        self.downsamplings = int(downsamplings)
        self.latent_channels = int(latent_channels)
        self.dims = _check_dims(dims)

    def call(self, labels, training=None):
        f = 2**self.downsamplings
        classes = labels.shape[-1]
        x = ops.cast(ops.argmax(labels, axis=-1), "float32") * (2.0 / (classes - 1)) - 1.0
        o = f // 2
        if self.dims == 2:
            x = x[:, o::f, o::f]
        else:
            x = x[:, o::f, o::f, o::f]
        return ops.repeat(ops.expand_dims(x, -1), self.latent_channels, axis=-1)

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
        return standardize(x)

    def get_config(self):
        config = super().get_config()
        config.update(downsamplings=self.downsamplings, latent_channels=self.latent_channels,
                      dims=self.dims)
        return config
