"""Image encoder f_image-enc: image X -> embedding z_i of the latent's size (eq. 9)."""

from __future__ import annotations

import keras

from ldseg_tf.models.layers import CompositeLayer, ResidualBlock, SpatialAttention, conv, group_norm


@keras.saving.register_keras_serializable(package="ldseg_tf")
class ImageEncoder(CompositeLayer):
    """ResNet-style encoder without skips, with multi-head self-attention in its
    deepest `attention_levels` levels.

    A 3x3 stem conv, then per level a strided 3x3 conv (one 2x down-sampling) and
    a residual block, then attention for the last levels; a 1x1 conv maps to
    `latent_channels` and a one-group GroupNormalization (per-sample, learned
    per-channel affine) keeps the embedding's scale stable.

    With `feature_widths` (multi-scale conditioning), the encoder goes on
    below the latent's resolution with one level (strided conv + residual
    block) per width, and also returns the features of the latent-resolution
    level and of each deeper one, for the denoiser's levels: the image then
    reaches the denoiser at every scale, as it reaches a U-Net's decoder through
    its skips, instead of through the one-scale embedding z_i alone. They do not
    depend on t, so sampling computes them once per image.

    Input: `(B, *spatial, C)` float images.
    Output: z_i `(B, *spatial / 2**len(widths), latent_channels)`; with
    `feature_widths`, the tuple `(z_i, features)` where `features[k]` is
    `(B, *spatial / 2**(len(widths) + k), width_k)` (width_0 = widths[-1]).
    """

    def __init__(self, widths=(32, 64, 64, 32), latent_channels=1, dims=2, groups=8,
                 attention_heads=8, attention_levels=2, dropout=0.0, feature_widths=(),
                 **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.latent_channels = latent_channels
        self.dims = dims
        self.groups = groups
        self.attention_heads = attention_heads
        self.attention_levels = attention_levels
        self.dropout = dropout
        self.feature_widths = tuple(feature_widths)
        n = len(self.widths)
        self.stem = conv(dims, self.widths[0], name="stem")
        self.downs = [conv(dims, w, strides=2, name=f"down{i}") for i, w in enumerate(self.widths)]
        self.blocks = [
            ResidualBlock(w, dims=dims, groups=groups, dropout=dropout, name=f"block{i}")
            for i, w in enumerate(self.widths)
        ]
        self.first_attention_level = max(n - attention_levels, 0)
        self.attentions = [
            SpatialAttention(attention_heads, groups=groups, name=f"attention{i}")
            for i in range(self.first_attention_level, n)
        ]
        self.to_latent = conv(dims, latent_channels, kernel_size=1, name="to_latent")
        self.norm = group_norm(latent_channels, 1, name="norm")
        self.feature_downs = [conv(dims, w, strides=2, name=f"feature_down{i}")
                              for i, w in enumerate(self.feature_widths)]
        self.feature_blocks = [
            ResidualBlock(w, dims=dims, groups=groups, dropout=dropout, name=f"feature_block{i}")
            for i, w in enumerate(self.feature_widths)
        ]

    def call(self, images, training=None):
        x = self.stem(images)
        for i, (down, block) in enumerate(zip(self.downs, self.blocks)):
            x = block(down(x), training=training)
            if i >= self.first_attention_level:
                x = self.attentions[i - self.first_attention_level](x)
        z_i = self.norm(self.to_latent(x))
        if not self.feature_widths:
            return z_i
        features = [x]
        for down, block in zip(self.feature_downs, self.feature_blocks):
            features.append(block(down(features[-1]), training=training))
        return z_i, features

    def get_config(self):
        config = super().get_config()
        config.update(widths=list(self.widths), latent_channels=self.latent_channels,
                      dims=self.dims, groups=self.groups, attention_heads=self.attention_heads,
                      attention_levels=self.attention_levels, dropout=self.dropout,
                      feature_widths=list(self.feature_widths))
        return config
