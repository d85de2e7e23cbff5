"""Label decoder f_label-dec: denoised latent z_dn -> class probabilities (eq. 13)."""

from __future__ import annotations

import keras
from keras import layers

from ldseg_tf.models.layers import ResidualBlock, conv, conv_transpose


@keras.saving.register_keras_serializable(package="ldseg_tf")
class LabelDecoder(layers.Layer):
    """ResUNet-like decoder without skip connections.

    A 3x3 stem conv, then per width a stride-2 transposed conv (one 2x
    up-sampling) and a residual block; a 1x1 conv to `num_classes` and a softmax
    computed in float32 (also under mixed precision, for a stable loss).

    Input: `(B, *latent_spatial, latent_channels)`.
    Output: `(B, *latent_spatial * 2**len(widths), num_classes)` float32
    probabilities summing to 1 over the last axis.
    """

    def __init__(self, widths=(32, 64, 64, 32), num_classes=2, dims=2, groups=8, dropout=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.num_classes = num_classes
        self.dims = dims
        self.groups = groups
        self.dropout = dropout
        self.stem = conv(dims, self.widths[0], name="stem")
        self.ups = [conv_transpose(dims, w, name=f"up{i}") for i, w in enumerate(self.widths)]
        self.blocks = [
            ResidualBlock(w, dims=dims, groups=groups, dropout=dropout, name=f"block{i}")
            for i, w in enumerate(self.widths)
        ]
        self.to_logits = conv(dims, num_classes, kernel_size=1, name="to_logits")
        self.softmax = layers.Softmax(axis=-1, dtype="float32", name="softmax")

    def call(self, z, training=None):
        x = self.stem(z)
        for up, block in zip(self.ups, self.blocks):
            x = block(up(x), training=training)
        return self.softmax(self.to_logits(x))

    def get_config(self):
        config = super().get_config()
        config.update(widths=list(self.widths), num_classes=self.num_classes, dims=self.dims,
                      groups=self.groups, dropout=self.dropout)
        return config
