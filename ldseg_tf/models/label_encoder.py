"""Label encoder f_label-enc: one-hot mask -> standardized latent z_l0 (paper eq. 10)."""

from __future__ import annotations

import keras
from keras import layers

from ldseg_tf.models.layers import ResidualBlock, Standardization, conv, max_pool


@keras.saving.register_keras_serializable(package="ldseg_tf")
class LabelEncoder(layers.Layer):
    """ResNet-style encoder without skips, ending in a per-sample standardization.

    One residual block per width; a 2x max-pool follows every block but the last,
    so `len(widths) - 1` down-samplings. A 1x1 conv maps to `latent_channels` and a
    parameter-free standardization makes every latent exactly mean 0 / std 1, so
    that the forward diffusion q(z_t | z_0) and the N(0, I) start of sampling live
    on the same scale (the paper's "standardized latent").

    Input: `(B, *spatial, num_classes)` float one-hot (or soft) labels.
    Output: float32 `(B, *spatial / 2**(len(widths)-1), latent_channels)`.
    """

    def __init__(self, widths=(16, 32, 64, 64, 32), latent_channels=1, dims=2, groups=8,
                 dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.latent_channels = latent_channels
        self.dims = dims
        self.groups = groups
        self.dropout = dropout
        self.blocks = [
            ResidualBlock(w, dims=dims, groups=groups, dropout=dropout, name=f"block{i}")
            for i, w in enumerate(self.widths)
        ]
        self.pools = [max_pool(dims, name=f"pool{i}") for i in range(len(self.widths) - 1)]
        self.to_latent = conv(dims, latent_channels, kernel_size=1, name="to_latent")
        self.standardize = Standardization(name="standardize")

    def call(self, labels, training=None):
        x = labels
        for i, block in enumerate(self.blocks):
            x = block(x, training=training)
            if i < len(self.pools):
                x = self.pools[i](x)
        return self.standardize(self.to_latent(x))

    def get_config(self):
        config = super().get_config()
        config.update(widths=list(self.widths), latent_channels=self.latent_channels,
                      dims=self.dims, groups=self.groups, dropout=self.dropout)
        return config
