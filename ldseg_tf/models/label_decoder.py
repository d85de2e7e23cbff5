"""Label decoder f_label-dec: denoised latent z_dn -> class probabilities (eq. 13)."""

from __future__ import annotations

import keras
from keras import layers

from ldseg_tf.models.layers import CompositeLayer, ResidualBlock, conv, conv_transpose
from ldseg_tf.models.resampling import PixelShuffle


@keras.saving.register_keras_serializable(package="ldseg_tf")
class LabelDecoder(CompositeLayer):
    """ResUNet-like decoder without skip connections.

    A 3x3 stem conv, then per width a stride-2 transposed conv (one 2x
    up-sampling) and a residual block; a 1x1 conv to `num_classes` and a softmax
    computed in float32 (also under mixed precision, for a stable loss).

    With `resampling="pixel_shuffle"` the last level runs its residual block
    before up-sampling, at half resolution, and the 1x1 conv predicts the class
    logits of each 2x2 (2x2x2) block of pixels, which a `PixelShuffle` puts in
    place: no convolution runs at full resolution.

    Input: `(B, *latent_spatial, latent_channels)`.
    Output: `(B, *latent_spatial * 2**len(widths), num_classes)` float32
    probabilities summing to 1 over the last axis.
    """

    def __init__(self, widths=(32, 64, 64, 32), num_classes=2, dims=2, groups=8, dropout=0.0,
                 resampling="conv", **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.num_classes = num_classes
        self.dims = dims
        self.groups = groups
        self.dropout = dropout
        self.resampling = resampling
        self.stem = conv(dims, self.widths[0], name="stem")
        shuffle = resampling == "pixel_shuffle"
        # With pixel shuffle the last level's up-sampling is the shuffle itself.
        self.ups = [conv_transpose(dims, w, name=f"up{i}")
                    for i, w in enumerate(self.widths[:len(self.widths) - shuffle])]
        self.blocks = [
            ResidualBlock(w, dims=dims, groups=groups, dropout=dropout, name=f"block{i}")
            for i, w in enumerate(self.widths)
        ]
        self.shuffle = PixelShuffle(dims, name="shuffle") if shuffle else None
        logits = num_classes * (2**dims if shuffle else 1)
        self.to_logits = conv(dims, logits, kernel_size=1, name="to_logits")
        self.softmax = layers.Softmax(axis=-1, dtype="float32", name="softmax")

    def call(self, z, training=None):
        x = self.stem(z)
        for i, block in enumerate(self.blocks):
            if i < len(self.ups):
                x = self.ups[i](x)
            x = block(x, training=training)
        x = self.to_logits(x)
        if self.shuffle is not None:
            x = self.shuffle(x)
        return self.softmax(x)

    def get_config(self):
        config = super().get_config()
        config.update(widths=list(self.widths), num_classes=self.num_classes, dims=self.dims,
                      groups=self.groups, dropout=self.dropout, resampling=self.resampling)
        return config
