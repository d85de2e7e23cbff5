"""Label encoder f_label-enc: one-hot mask -> standardized latent z_l0 (paper eq. 10)."""

from __future__ import annotations

import keras

from ldseg_tf.models.layers import CompositeLayer, ResidualBlock, Standardization, conv, max_pool
from ldseg_tf.models.resampling import PixelUnshuffle


@keras.saving.register_keras_serializable(package="ldseg_tf")
class LabelEncoder(CompositeLayer):
    """ResNet-style encoder without skips, ending in a per-sample standardization.

    One residual block per width; a 2x max-pool follows every block but the last,
    so `len(widths) - 1` down-samplings. A 1x1 conv maps to `latent_channels` and a
    parameter-free standardization makes every latent exactly mean 0 / std 1, so
    that the forward diffusion q(z_t | z_0) and the N(0, I) start of sampling live
    on the same scale (the paper's "standardized latent").

    With `resampling="pixel_shuffle"` the first, full-resolution level (block
    and pool) is replaced by a lossless `PixelUnshuffle` and a 1x1 conv to
    `widths[0]` at half resolution: no convolution runs at full resolution.

    Input: `(B, *spatial, num_classes)` float one-hot (or soft) labels.
    Output: float32 `(B, *spatial / 2**(len(widths)-1), latent_channels)`.
    """

    def __init__(self, widths=(16, 32, 64, 64, 32), latent_channels=1, dims=2, groups=8,
                 dropout=0.0, resampling="conv", **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.latent_channels = latent_channels
        self.dims = dims
        self.groups = groups
        self.dropout = dropout
        self.resampling = resampling
        shuffle = resampling == "pixel_shuffle"
        self.blocks = [
            conv(dims, w, kernel_size=1, name=f"block{i}") if shuffle and i == 0 else
            ResidualBlock(w, dims=dims, groups=groups, dropout=dropout, name=f"block{i}")
            for i, w in enumerate(self.widths)
        ]
        self.pools = [PixelUnshuffle(dims, name=f"pool{i}") if shuffle and i == 0 else
                      max_pool(dims, name=f"pool{i}") for i in range(len(self.widths) - 1)]
        self.to_latent = conv(dims, latent_channels, kernel_size=1, name="to_latent")
        self.standardize = Standardization(name="standardize")

    def call(self, labels, training=None):
        x = labels
        if self.resampling == "pixel_shuffle":
            x = self.blocks[0](self.pools[0](x))
            start = 1
        else:
            start = 0
        for i in range(start, len(self.blocks)):
            x = self.blocks[i](x, training=training)
            if i < len(self.pools):
                x = self.pools[i](x)
        return self.standardize(self.to_latent(x))

    def get_config(self):
        config = super().get_config()
        config.update(widths=list(self.widths), latent_channels=self.latent_channels,
                      dims=self.dims, groups=self.groups, dropout=self.dropout,
                      resampling=self.resampling)
        return config
